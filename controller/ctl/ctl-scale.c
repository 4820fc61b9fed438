/* SPDX-License-Identifier: MIT */
/* batonctl scale: set a service's instance count; the controller checks it
 * against MinReplicas and MaxReplicas and places or removes instances. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "ctl-verbs.h"

static int run(Ctl *ctl, int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        Baton__V1__Request req;
        Baton__V1__ServiceRequest sr;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        const char *service;
        int64_t count, previous;
        uint64_t n;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return ctl_command_help(&ctl_command_scale);
                default:
                        /* "scale gateway -1" reads as an option; say what is wrong. */
                        if (c == '?' && optopt >= '0' && optopt <= '9')
                                return ctl_usage_error(&ctl_command_scale,
                                                       "N must be a non-negative integer");
                        return ctl_option_error(&ctl_command_scale, c, argv);
                }
        if (argc - optind < 2)
                return ctl_usage_error(&ctl_command_scale,
                                       optind < argc ? "no count given" : "no service given");
        if (argc - optind > 2)
                return ctl_usage_error(&ctl_command_scale, "unexpected argument '%s'",
                                       argv[optind + 2]);
        if (isempty(argv[optind]))
                return ctl_usage_error(&ctl_command_scale, "the service name is empty");
        r = ctl_parse_uint(argv[optind + 1], UINT32_MAX, &n);
        if (r == -ERANGE)
                return ctl_usage_error(&ctl_command_scale, "count '%s' is too large",
                                       argv[optind + 1]);
        if (r < 0)
                return ctl_usage_error(&ctl_command_scale,
                                       "count '%s' is not a non-negative integer",
                                       argv[optind + 1]);

        ctl_service_request_init(&req, &sr, "scale", argv[optind]);
        sr.count = (uint32_t) n;
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (ctl->json)
                return ctl_print_document(doc);

        service = ctl_json_string(doc, "service");
        if (isempty(service))
                service = argv[optind];
        if (ctl_json_int(doc, "count", &count) < 0)
                count = (int64_t) n;
        if (ctl_json_int(doc, "previous", &previous) < 0)
                printf("Scaled %s to %" PRId64 " instances.\n", service, count);
        else if (previous == count)
                printf("%s already has %" PRId64 " instances.\n", service, count);
        else
                printf("Scaled %s from %" PRId64 " to %" PRId64 " instances.\n", service, previous,
                       count);
        return CTL_EXIT_OK;
}

const CtlCommand ctl_command_scale = {
        .name = "scale",
        .usage = "SERVICE N",
        .summary = "set the number of instances of a service",
        .run = run,
};
