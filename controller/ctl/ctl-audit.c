/* SPDX-License-Identifier: MIT */
/* batonctl audit: the latest entries of the controller's audit log, who asked
 * for which change and what came of it. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "ctl-verbs.h"

#define DEFAULT_LIMIT 50

/* The request as recorded: text as is, a JSON value compact. malloc'ed. */
static char *format_request(json_t *entry) {
        json_t *v = json_object_get(entry, "request");

        if (!v || json_is_null(v))
                return NULL;
        if (json_is_string(v))
                return ctl_sanitize(json_string_value(v));
        return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
}

static int print_table(json_t *entries) {
        static const char *const headers[] = {
                "SEQ", "TIME", "USER", "VERB", "OUTCOME", "REQUEST"
        };
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new(ELEMENTSOF(headers), headers);
        json_t *e;
        size_t i;

        if (!t)
                return CTL_EXIT_FAILED;
        if (json_array_size(entries) == 0) {
                printf("The audit log is empty.\n");
                return CTL_EXIT_OK;
        }
        json_array_foreach(entries, i, e) {
                _cleanup_free_ char *request = format_request(e),
                                    *outcome = ctl_sanitize(ctl_json_string(e, "outcome"));
                char seq[32], at[40];
                int64_t at_us;

                if (!json_is_object(e))
                        continue;
                if (ctl_json_int(e, "at_us", &at_us) < 0 || at_us < 0)
                        at_us = 0;
                const char *row[] = {
                        ctl_json_text(e, "seq", seq, sizeof(seq)),
                        ctl_format_time(at, sizeof(at), (uint64_t) at_us),
                        ctl_json_nonempty(e, "user"),
                        ctl_json_string(e, "verb"),
                        isempty(outcome) ? NULL : outcome,
                        isempty(request) ? NULL : request,
                };
                if (ctl_table_add(t, row) < 0)
                        return CTL_EXIT_FAILED;
        }
        ctl_table_print(t, stdout);
        return CTL_EXIT_OK;
}

static int run(Ctl *ctl, int argc, char *argv[]) {
        enum {
                ARG_LIMIT = 0x100,
        };
        static const struct option options[] = {
                { "limit", required_argument, NULL, ARG_LIMIT },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        Baton__V1__Request req;
        Baton__V1__ServiceRequest sr;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        uint64_t limit = DEFAULT_LIMIT;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":n:h", options, NULL)) >= 0)
                switch (c) {
                case 'n':
                case ARG_LIMIT:
                        r = ctl_parse_uint(optarg, UINT32_MAX, &limit);
                        if (r < 0 || limit == 0)
                                return ctl_usage_error(&ctl_command_audit,
                                                       "--limit: '%s' is not a positive integer",
                                                       optarg);
                        break;
                case 'h':
                        return ctl_command_help(&ctl_command_audit);
                default:
                        return ctl_option_error(&ctl_command_audit, c, argv);
                }
        if (optind < argc)
                return ctl_usage_error(&ctl_command_audit, "unexpected argument '%s'",
                                       argv[optind]);

        ctl_service_request_init(&req, &sr, "audit", "");
        sr.count = (uint32_t) limit;
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (ctl->json)
                return ctl_print_document(doc);
        return print_table(ctl_json_array(doc, "entries"));
}

const CtlCommand ctl_command_audit = {
        .name = "audit",
        .usage = "[--limit N]",
        .summary = "show the latest audit log entries (default 50)",
        .run = run,
};
