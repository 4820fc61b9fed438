/* SPDX-License-Identifier: MIT */
/* batonctl delete: remove a service; the controller stops and removes its
 * units on every host. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "ctl-verbs.h"

static int run(Ctl *ctl, int argc, char *argv[]) {
        Baton__V1__Request req;
        Baton__V1__ServiceRequest sr;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        const char *service;
        int64_t removed;
        int r;

        r = ctl_parse_positional(&ctl_command_delete, argc, argv, 1, 1, "no service given");
        if (r != CTL_CONTINUE)
                return r;
        if (isempty(argv[optind]))
                return ctl_usage_error(&ctl_command_delete, "the service name is empty");

        ctl_service_request_init(&req, &sr, "delete", argv[optind]);
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (ctl->json)
                return ctl_print_document(doc);

        /* The controller's spelling of the name, should it have normalized ours. */
        service = ctl_json_string(doc, "service");
        if (isempty(service))
                service = argv[optind];
        if (ctl_json_int(doc, "removed_instances", &removed) >= 0)
                printf("Deleted %s: %" PRId64 " instance%s removed.\n", service, removed,
                       removed == 1 ? "" : "s");
        else
                printf("Deleted %s.\n", service);
        return CTL_EXIT_OK;
}

const CtlCommand ctl_command_delete = {
        .name = "delete",
        .usage = "SERVICE",
        .summary = "remove a service and its units everywhere",
        .run = run,
};
