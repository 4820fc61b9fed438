/* SPDX-License-Identifier: MIT */
/* batonctl reshard SERVICE [--instances N] [--shards S] [--dry-run] [--wait]:
 * plans a reshard (shards moving, identifies spent, estimated duration,
 * budget) and starts it; --wait follows it to the end, as a progress line
 * on a terminal and a line per step otherwise. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "ctl-verbs.h"
#include "duration.h"

static void print_plan(json_t *plan) {
        json_t *from = json_object_get(plan, "from"), *to = json_object_get(plan, "to");
        int64_t fi = 0, ti = 0, fs = 0, ts = 0, fe = 0, te = 0, ids = 0, moving = 0, dur = 0,
                resumes = 0, surge = 0;
        char d[64];

        (void) ctl_json_int(from, "instances", &fi);
        (void) ctl_json_int(from, "shards", &fs);
        (void) ctl_json_int(from, "epoch", &fe);
        (void) ctl_json_int(to, "instances", &ti);
        (void) ctl_json_int(to, "shards", &ts);
        (void) ctl_json_int(to, "epoch", &te);
        (void) ctl_json_int(plan, "identifies", &ids);
        (void) ctl_json_int(plan, "shards_moving", &moving);
        (void) ctl_json_int(plan, "estimated_duration_us", &dur);
        printf("%s %s: %" PRId64 " → %" PRId64 " instances, %" PRId64 " → %" PRId64
               " shards, epoch %" PRId64 " → %" PRId64 ".\n",
               ctl_json_true(plan, "dry_run") ? "Would reshard" : "Resharding",
               strna(ctl_json_string(plan, "service")), fi, ti, fs, ts, fe, te);
        (void) ctl_json_int(plan, "resumes", &resumes);
        (void) ctl_json_int(plan, "surge_copies", &surge);
        if (ctl_json_true(json_object_get(plan, "reshard"), "live"))
                printf("%" PRId64 " shard(s) change owner, live (ShardChange=reload): the "
                       "running copies take their new shards, spending %" PRId64
                       " identifies and %" PRId64 " resumes; no process restarts, %.1f "
                       "shard-seconds without a ready owner, about %s.\n",
                       moving, ids, resumes,
                       json_number_value(json_object_get(plan, "dark_shard_seconds")),
                       duration_format(d, sizeof(d), dur > 0 ? (usec_t) dur : 0));
        else
                printf("%" PRId64 " shard(s) change owner; the new copies spend %" PRId64
                       " identifies and %" PRId64 " resumes, start %" PRId64
                       " at a time beside the live ones, leave %.1f shard-seconds without a "
                       "ready owner and take about %s.\n",
                       moving, ids, resumes, surge,
                       json_number_value(json_object_get(plan, "dark_shard_seconds")),
                       duration_format(d, sizeof(d), dur > 0 ? (usec_t) dur : 0));
}

static void sleep_usec(usec_t u) {
        struct timespec ts = { .tv_sec = (time_t) (u / USEC_PER_SEC),
                               .tv_nsec = (long) (u % USEC_PER_SEC * 1000) };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Polls the shard map until no reshard is under way. 0 when it ended with
 * the requested layout, 1 when it failed or was aborted. */
static int wait_for(Ctl *ctl, const char *service, int64_t want_instances, int64_t want_shards) {
        bool tty = isatty(STDOUT_FILENO) && !ctl->json;
        _cleanup_free_ char *last = NULL;

        for (;;) {
                Baton__V1__Request req;
                Baton__V1__ServiceRequest sr;
                _cleanup_(json_decrefp) json_t *doc = NULL;
                _cleanup_free_ char *line = NULL;
                json_t *rs;
                int64_t ready = 0, total = 0, done = 0, n = 0, instances = 0;
                int r;

                ctl_service_request_init(&req, &sr, "shards", service);
                r = ctl_request_json(ctl, &req, &doc);
                if (r != CTL_EXIT_OK)
                        return r;
                (void) ctl_json_int(doc, "ready", &ready);
                (void) ctl_json_int(doc, "shard_count", &total);
                (void) ctl_json_int(doc, "instances", &instances);
                rs = json_object_get(doc, "reshard");
                if (!json_is_object(rs)) {
                        bool ok = (want_instances == 0 || instances == want_instances) &&
                                  (want_shards == 0 || total == want_shards);
                        if (tty)
                                printf("\n");
                        if (ctl->json) {
                                r = ctl_print_document(doc);
                                return r != CTL_EXIT_OK ? r : ok ? CTL_EXIT_OK : CTL_EXIT_FAILED;
                        }
                        printf("%s: %s: %" PRId64 " instances, %" PRId64 "/%" PRId64
                               " shards ready.\n",
                               service, ok ? "reshard done" : "reshard ended without the change",
                               instances, ready, total);
                        return ok ? CTL_EXIT_OK : CTL_EXIT_FAILED;
                }
                (void) ctl_json_int(rs, "done", &done);
                (void) ctl_json_int(rs, "total", &n);
                if (asprintf(&line,
                             "%s: reshard %s, %" PRId64 "/%" PRId64 " steps, %" PRId64 "/%" PRId64
                             " shards ready%s%s",
                             service, strna(ctl_json_string(rs, "state")), done, n, ready, total,
                             ctl_json_nonempty(rs, "reason") ? " - " : "",
                             strempty(ctl_json_nonempty(rs, "reason"))) < 0)
                        return CTL_EXIT_FAILED;
                if (!ctl->json && !streq_ptr(line, last)) {
                        if (tty)
                                printf("\r\033[K%s", line);
                        else
                                printf("%s\n", line);
                        fflush(stdout);
                }
                free(last);
                last = TAKE_PTR(line);
                if (streq_ptr(ctl_json_string(rs, "state"), "failed")) {
                        if (tty)
                                printf("\n");
                        fprintf(stderr, "batonctl: the reshard of %s failed and is paused: %s\n",
                                service, strna(ctl_json_string(rs, "reason")));
                        return CTL_EXIT_FAILED;
                }
                sleep_usec(USEC_PER_SEC / 2);
        }
}

static int run(Ctl *ctl, int argc, char *argv[]) {
        static const struct option options[] = {
                { "instances", required_argument, NULL, 'i' },
                { "shards", required_argument, NULL, 's' },
                { "dry-run", no_argument, NULL, 'n' },
                { "wait", no_argument, NULL, 'w' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        Baton__V1__Request req;
        Baton__V1__ServiceRequest sr;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        uint64_t instances = 0, shards = 0;
        bool dry_run = false, wait = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
                switch (c) {
                case 'i':
                        if (ctl_parse_uint(optarg, UINT32_MAX, &instances) < 0 || instances == 0)
                                return ctl_usage_error(&ctl_command_reshard,
                                                       "--instances takes a count ≥ 1, not '%s'",
                                                       optarg);
                        break;
                case 's':
                        if (ctl_parse_uint(optarg, UINT32_MAX, &shards) < 0 || shards == 0)
                                return ctl_usage_error(&ctl_command_reshard,
                                                       "--shards takes a count ≥ 1, not '%s'",
                                                       optarg);
                        break;
                case 'n':
                        dry_run = true;
                        break;
                case 'w':
                        wait = true;
                        break;
                case 'h':
                        return ctl_command_help(&ctl_command_reshard);
                default:
                        return ctl_option_error(&ctl_command_reshard, c, argv);
                }
        if (optind >= argc)
                return ctl_usage_error(&ctl_command_reshard, "no service given");
        if (argc - optind > 1)
                return ctl_usage_error(&ctl_command_reshard, "one service at a time");
        if (isempty(argv[optind]))
                return ctl_usage_error(&ctl_command_reshard, "the service name is empty");
        if (instances == 0 && shards == 0)
                return ctl_usage_error(&ctl_command_reshard,
                                       "say what to change: --instances N and/or --shards S");

        /* The plan alone is a read-only verb of its own: anyone may ask. */
        ctl_service_request_init(&req, &sr, dry_run ? "reshard-plan" : "reshard", argv[optind]);
        sr.instances = (uint32_t) instances;
        sr.shards = (uint32_t) shards;
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (!wait || dry_run) {
                if (ctl->json)
                        return ctl_print_document(doc);
                print_plan(doc);
                return CTL_EXIT_OK;
        }
        if (!ctl->json)
                print_plan(doc);
        return wait_for(ctl, argv[optind], (int64_t) instances, (int64_t) shards);
}

const CtlCommand ctl_command_reshard = {
        .name = "reshard",
        .usage = "SERVICE [--instances N] [--shards S] [--dry-run] [--wait]",
        .summary = "change a sharded service's instances or shard total without an outage",
        .help = "  --instances N   spread the same shards over N instances (moves as few as\n"
                "                  possible; each new owner is ready before the old lets go)\n"
                "  --shards S      bring up a new set of S shards under a new epoch, cut over\n"
                "                  in one step once it is ready, then stop the old set\n"
                "  --dry-run       show the plan: shards moving, identifies, duration, budget\n"
                "  --wait          follow the reshard until it is done (exit 1 if it fails)\n"
                "Refused (exit 4) when the start budget or the hosts' capacity would not do.\n",
        .run = run,
};
