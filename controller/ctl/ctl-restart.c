/* SPDX-License-Identifier: MIT */
/* batonctl restart: one instance (SERVICE@N) at once, or every instance of a
 * service as a rolling restart that the controller paces by MaxUnavailable
 * and HealthyFor. A sharded service's copies are replaced make-before-break
 * (each new copy starts beside the live one and takes over once its shards
 * are ready) unless --in-place. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "ctl-verbs.h"
#include "duration.h"

/* "gateway" → instance -1, "gateway@3" → 3; an exit code. *ret_service is
 * malloc'ed. */
static int parse_target(const char *arg, char **ret_service, int32_t *ret_instance) {
        const char *at = strrchr(arg, '@');
        uint64_t n = 0;
        char *service;
        int r;

        if (at) {
                r = ctl_parse_uint(at + 1, INT32_MAX, &n);
                if (r < 0)
                        return ctl_usage_error(&ctl_command_restart,
                                               "'%s': expected SERVICE@N with N an instance "
                                               "number (0, 1, ...)",
                                               arg);
        }
        service = strndup(arg, at ? (size_t) (at - arg) : strlen(arg));
        if (!service) {
                fprintf(stderr, "batonctl: out of memory\n");
                return CTL_EXIT_FAILED;
        }
        if (isempty(service)) {
                free(service);
                return ctl_usage_error(&ctl_command_restart, "'%s': the service name is empty",
                                       arg);
        }
        *ret_service = service;
        *ret_instance = at ? (int32_t) n : -1;
        return CTL_EXIT_OK;
}

static void print_result(json_t *doc, const char *service, int32_t instance) {
        const char *rollout, *restart_id, *host = ctl_json_string(doc, "host");
        char buf[64];
        int64_t n;

        if (!isempty(ctl_json_string(doc, "service")))
                service = ctl_json_string(doc, "service");
        rollout = ctl_json_text(doc, "rollout", buf, sizeof(buf));
        restart_id = ctl_json_string(doc, "restart_id");
        if (ctl_json_int(doc, "instances", &n) < 0)
                n = -1;

        if (rollout && ctl_json_true(doc, "make_before_break")) {
                printf("Restarting %s make-before-break as rollout %s", service, rollout);
                if (n >= 0)
                        printf(" (%" PRId64 " cop%s)", n, n == 1 ? "y" : "ies");
                printf(": each new copy starts beside the live one and takes over once every "
                       "shard it owns is ready.\nFollow it with: batonctl shards %s\n",
                       service);
        } else if (rollout) {
                printf("Rolling restart of %s started as rollout %s", service, rollout);
                if (n >= 0)
                        printf(" (%" PRId64 " instance%s)", n, n == 1 ? "" : "s");
                printf(".\nFollow it with: batonctl rollout status --follow %s\n", service);
        } else if (instance >= 0) {
                printf("Restarting %s@%" PRIi32, service, instance);
                if (!isempty(host))
                        printf(" on %s", host);
                if (!isempty(restart_id))
                        printf(" (restart id %s)", restart_id);
                printf(".\n");
        } else if (n >= 0)
                printf("Restarting %s (%" PRId64 " instance%s).\n", service, n, n == 1 ? "" : "s");
        else
                printf("Restarting %s.\n", service);
}

/* restart --dry-run: what it would do and, for a sharded service, cost. */
static void print_plan(json_t *doc, const char *service) {
        int64_t n = 0, ids = 0, resumes = 0, surge = 0, dur = 0;
        double dark = 0;
        char d[64];

        (void) ctl_json_int(doc, "instances", &n);
        printf("Would restart %s%s (%" PRId64 " cop%s).\n", service,
               ctl_json_true(doc, "make_before_break") ? " make-before-break" : "", n,
               n == 1 ? "y" : "ies");
        if (ctl_json_int(doc, "identifies", &ids) < 0)
                return;
        (void) ctl_json_int(doc, "resumes", &resumes);
        (void) ctl_json_int(doc, "surge_copies", &surge);
        (void) ctl_json_int(doc, "estimated_duration_us", &dur);
        dark = json_number_value(json_object_get(doc, "dark_shard_seconds"));
        printf("%" PRId64 " identifies, %" PRId64 " resumes, %" PRId64
               " surge cop%s at a time, %.1f shard-seconds without a ready owner, about %s.\n",
               ids, resumes, surge, surge == 1 ? "y" : "ies", dark,
               duration_format(d, sizeof(d), dur > 0 ? (usec_t) dur : 0));
}

static int run(Ctl *ctl, int argc, char *argv[]) {
        static const struct option options[] = {
                { "in-place", no_argument, NULL, 'p' },
                { "dry-run", no_argument, NULL, 'n' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        Baton__V1__Request req;
        Baton__V1__ServiceRequest sr;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        _cleanup_free_ char *service = NULL;
        int32_t instance = -1;
        bool in_place = false, dry_run = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        in_place = true;
                        break;
                case 'n':
                        dry_run = true;
                        break;
                case 'h':
                        return ctl_command_help(&ctl_command_restart);
                default:
                        return ctl_option_error(&ctl_command_restart, c, argv);
                }
        if (optind >= argc)
                return ctl_usage_error(&ctl_command_restart, "no service given");
        if (argc - optind > 1)
                return ctl_usage_error(&ctl_command_restart, "one service at a time");
        r = parse_target(argv[optind], &service, &instance);
        if (r != CTL_EXIT_OK)
                return r;

        /* The plan alone is a read-only verb of its own: anyone may ask. */
        ctl_service_request_init(&req, &sr, dry_run ? "restart-plan" : "restart", service);
        sr.instance = instance;
        sr.in_place = in_place;
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (ctl->json)
                return ctl_print_document(doc);
        if (dry_run)
                print_plan(doc, argv[optind]);
        else
                print_result(doc, service, instance);
        return CTL_EXIT_OK;
}

const CtlCommand ctl_command_restart = {
        .name = "restart",
        .usage = "SERVICE[@N] [--in-place] [--dry-run]",
        .summary = "restart one instance, or all as a rolling restart",
        .help = "A sharded service (MaxSurge= ≥ 1, the default) is restarted make-before-break:\n"
                "each copy's replacement starts beside it through the start gate and the old\n"
                "copy stops once every shard it owns is ready at the new one. Refused (exit 4)\n"
                "when a host cannot take the replacement copy (MaxPerHost=, Memory=).\n"
                "  --in-place      stop and start the copies where they are instead: their\n"
                "                  shards are without a ready owner while they identify\n"
                "  --dry-run       show what it would do: identifies, surge copies, the\n"
                "                  shard-seconds it leaves without a ready owner, duration\n",
        .run = run,
};
