/* SPDX-License-Identifier: MIT */
/* batonctl alerts: the alerts raised now and not yet resolved, as the
 * controller holds them. */
#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "ctl-verbs.h"
#include "util.h"

/* "CRITICAL" from "critical", "SEVERITY_CRITICAL" or 3: the controller's
 * choice of spelling should not show. */
static const char *format_severity(json_t *alert, char *buf, size_t len) {
        static const char *const names[] = { "UNSPECIFIED", "INFO", "WARNING", "CRITICAL" };
        const char *s = ctl_json_string(alert, "severity");
        int64_t n;
        size_t i;

        if (!s) {
                if (ctl_json_int(alert, "severity", &n) < 0)
                        return NULL;
                if (n >= 0 && n < (int64_t) ELEMENTSOF(names))
                        return names[n];
                snprintf(buf, len, "%" PRId64, n);
                return buf;
        }
        if (strncmp(s, "SEVERITY_", 9) == 0)
                s += 9;
        for (i = 0; s[i] && i + 1 < len; i++)
                buf[i] = (char) toupper((unsigned char) s[i]);
        buf[i] = '\0';
        return buf;
}

static int print_table(json_t *alerts) {
        static const char *const headers[] = { "SEVERITY", "KIND",  "SERVICE",
                                               "HOST",     "SINCE", "SUMMARY" };
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new(ELEMENTSOF(headers), headers);
        uint64_t now = now_realtime_usec();
        json_t *a;
        size_t i;

        if (!t)
                return CTL_EXIT_FAILED;
        if (json_array_size(alerts) == 0) {
                printf("No alerts.\n");
                return CTL_EXIT_OK;
        }
        json_array_foreach(alerts, i, a) {
                _cleanup_free_ char *summary = ctl_sanitize(ctl_json_string(a, "summary"));
                char severity[32], since[48];
                int64_t raised;

                if (!json_is_object(a))
                        continue;
                if (ctl_json_int(a, "raised_at_us", &raised) < 0 || raised < 0)
                        raised = 0;
                const char *row[] = {
                        format_severity(a, severity, sizeof(severity)),
                        ctl_json_string(a, "kind"),
                        ctl_json_nonempty(a, "service"),
                        ctl_json_nonempty(a, "host"),
                        ctl_format_ago(since, sizeof(since), (uint64_t) raised, now),
                        isempty(summary) ? NULL : summary,
                };
                if (ctl_table_add(t, row) < 0)
                        return CTL_EXIT_FAILED;
        }
        ctl_table_print(t, stdout);
        return CTL_EXIT_OK;
}

static int run(Ctl *ctl, int argc, char *argv[]) {
        Baton__V1__Request req = BATON__V1__REQUEST__INIT;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        int r;

        r = ctl_parse_positional(&ctl_command_alerts, argc, argv, 0, 0, NULL);
        if (r != CTL_CONTINUE)
                return r;

        req.verb = (char *) "alerts";
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (ctl->json)
                return ctl_print_document(doc);
        return print_table(ctl_json_array(doc, "alerts"));
}

const CtlCommand ctl_command_alerts = {
        .name = "alerts",
        .usage = "",
        .summary = "list the alerts raised now",
        .run = run,
};
