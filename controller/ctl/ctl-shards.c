/* SPDX-License-Identifier: MIT */
/* batonctl shards SERVICE: the shard map of a sharded service — which copy
 * owns which shards on which host in which epoch, and how many are ready —
 * with a reshard under way and the start budget. */
#include <inttypes.h>
#include <stdio.h>

#include "ctl-verbs.h"

static int print_copies(json_t *doc) {
        static const char *const headers[] = { "INSTANCE", "UNIT",   "HOST",  "ROLE",
                                               "EPOCH",    "SHARDS", "READY", "STATE" };
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new(ELEMENTSOF(headers), headers);
        json_t *cp;
        size_t i;

        if (!t)
                return CTL_EXIT_FAILED;
        json_array_foreach(ctl_json_array(doc, "copies"), i, cp) {
                char inst[32], epoch[32];
                const char *state = ctl_json_string(cp, "active_state");

                if (!json_is_object(cp))
                        continue;
                if (!ctl_json_true(cp, "running"))
                        state = "waiting for the start gate";
                const char *row[] = {
                        ctl_json_text(cp, "instance", inst, sizeof(inst)),
                        ctl_json_string(cp, "unit"),
                        ctl_json_nonempty(cp, "host"),
                        ctl_json_string(cp, "role"),
                        ctl_json_text(cp, "epoch", epoch, sizeof(epoch)),
                        ctl_json_nonempty(cp, "shards"),
                        ctl_json_nonempty(cp, "ready"),
                        state,
                };
                if (ctl_table_add(t, row) < 0)
                        return CTL_EXIT_FAILED;
        }
        ctl_table_print(t, stdout);
        return CTL_EXIT_OK;
}

static int run(Ctl *ctl, int argc, char *argv[]) {
        Baton__V1__Request req;
        Baton__V1__ServiceRequest sr;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        json_t *rs, *budget;
        int64_t ready = 0, total = 0, epoch = 0, copies = 0;
        size_t listed;
        bool all = false;
        int r;

        r = ctl_parse_positional_all(&ctl_command_shards, argc, argv, 1, 1, "no service given",
                                     &all);
        if (r != CTL_CONTINUE)
                return r;
        if (isempty(argv[optind]))
                return ctl_usage_error(&ctl_command_shards, "the service name is empty");

        ctl_service_request_init(&req, &sr, "shards", argv[optind]);
        /* Above a screenful or so, the copies that need a look and no list of
         * every shard (--all: everything). */
        sr.instances_max = all ? 0 : CTL_DETAILS_MAX;
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (ctl->json)
                return ctl_print_document(doc);

        listed = json_array_size(ctl_json_array(doc, "copies"));
        if (listed > 0) {
                r = print_copies(doc);
                if (r != CTL_EXIT_OK)
                        return r;
        }
        if (json_is_false(json_object_get(doc, "copies_listed")) &&
            ctl_json_int(doc, "copies_total", &copies) >= 0)
                printf("%s%" PRId64 " copies in all; %s. `batonctl shards --all %s` lists "
                       "every one.\n",
                       listed > 0 ? "\n" : "", copies,
                       listed > 0 ? "those listed are not running with every shard ready"
                                  : "every one runs with every shard ready",
                       argv[optind]);
        (void) ctl_json_int(doc, "ready", &ready);
        (void) ctl_json_int(doc, "shard_count", &total);
        (void) ctl_json_int(doc, "epoch", &epoch);
        printf("\n%s: %" PRId64 "/%" PRId64 " shards ready in epoch %" PRId64 ".\n",
               strna(ctl_json_string(doc, "service")), ready, total, epoch);
        if (ctl_json_nonempty(doc, "unowned"))
                printf("Without a ready owner: %s\n", ctl_json_string(doc, "unowned"));
        if (ctl_json_nonempty(doc, "unknown"))
                printf("Unknown (last owner on a silent host, may still serve): %s\n",
                       ctl_json_string(doc, "unknown"));
        if (ctl_json_nonempty(doc, "owned_twice"))
                printf("Owned twice (a handoff: a new copy ready, the old one not yet stopped): "
                       "%s\n",
                       ctl_json_string(doc, "owned_twice"));
        if (ctl_json_nonempty(doc, "failed"))
                printf("Identify failed: %s\n", ctl_json_string(doc, "failed"));
        rs = json_object_get(doc, "reshard");
        if (json_is_object(rs)) {
                int64_t done = 0, n = 0, fi = 0, ti = 0, fs = 0, ts = 0;
                (void) ctl_json_int(rs, "done", &done);
                (void) ctl_json_int(rs, "total", &n);
                (void) ctl_json_int(rs, "from_instances", &fi);
                (void) ctl_json_int(rs, "to_instances", &ti);
                (void) ctl_json_int(rs, "from_shards", &fs);
                (void) ctl_json_int(rs, "to_shards", &ts);
                if (streq_ptr(ctl_json_string(rs, "kind"), "move")) {
                        json_t *items = json_object_get(rs, "items"), *it;
                        size_t i, off = 0;

                        printf("Move %s (make-before-break): %" PRId64 "/%" PRId64 " copies moved",
                               strna(ctl_json_string(rs, "state")), done, n);
                        /* The copies still serving where they were. */
                        json_array_foreach(items, i, it) {
                                int64_t instance = -1;

                                if (streq_ptr(ctl_json_string(it, "state"), "done"))
                                        continue;
                                (void) ctl_json_int(it, "instance", &instance);
                                printf("%s %s@%" PRId64 " off %s", off++ == 0 ? ";" : ",",
                                       strna(ctl_json_string(doc, "service")), instance,
                                       strna(ctl_json_string(it, "from_host")));
                        }
                        printf(".\n");
                } else if (streq_ptr(ctl_json_string(rs, "kind"), "restart"))
                        printf("Restart %s (make-before-break): %" PRId64 "/%" PRId64
                               " copies replaced.\n",
                               strna(ctl_json_string(rs, "state")), done, n);
                else
                        printf("Reshard %s: %" PRId64 "→%" PRId64 " instances, %" PRId64 "→%" PRId64
                               " shards, %" PRId64 "/%" PRId64 " steps done.\n",
                               strna(ctl_json_string(rs, "state")), fi, ti, fs, ts, done, n);
        }
        budget = json_object_get(doc, "budget");
        if (json_is_object(budget)) {
                int64_t limit = 0, spent = 0;
                (void) ctl_json_int(budget, "daily_limit", &limit);
                (void) ctl_json_int(budget, "spent_24h", &spent);
                if (limit > 0)
                        printf("Start budget: %" PRId64 " of %" PRId64
                               " identifies spent in the last 24 h.\n",
                               spent, limit);
        }
        return CTL_EXIT_OK;
}

const CtlCommand ctl_command_shards = {
        .name = "shards",
        .usage = "SERVICE [--all]",
        .summary = "the shard map of a sharded service",
        .run = run,
};
