/* SPDX-License-Identifier: MIT */
/* batonctl drain and undrain: take a host out of placement (its instances
 * move elsewhere) and put it back. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "ctl-verbs.h"
#include "topology.h"

static int run_host_verb(Ctl *ctl, const CtlCommand *cmd, int argc, char *argv[]) {
        Baton__V1__Request req = BATON__V1__REQUEST__INIT;
        Baton__V1__HostRequest hr = BATON__V1__HOST_REQUEST__INIT;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        const char *host, *state;
        int64_t moved;
        int r;

        r = ctl_parse_positional(cmd, argc, argv, 1, 1, "no host given");
        if (r != CTL_CONTINUE)
                return r;
        /* Checked here too so a typo gets a usage error, not a lookup. */
        if (!topology_host_id_is_valid(argv[optind]))
                return ctl_usage_error(cmd,
                                       "'%s' is not a host id (1-64 of A-Z a-z 0-9 _ -, starting "
                                       "with a letter or digit)",
                                       argv[optind]);

        hr.host = argv[optind];
        req.verb = (char *) cmd->name;
        req.args_case = BATON__V1__REQUEST__ARGS_HOST;
        req.host = &hr;
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (ctl->json)
                return ctl_print_document(doc);

        host = ctl_json_string(doc, "host");
        if (isempty(host))
                host = argv[optind];
        state = ctl_json_string(doc, "state");
        printf("%s is %s", host, isempty(state) ? "unknown" : state);
        if (ctl_json_int(doc, "moved", &moved) >= 0)
                printf("; %" PRId64 " instance%s moved", moved, moved == 1 ? "" : "s");
        printf(".\n");
        return CTL_EXIT_OK;
}

static int run_drain(Ctl *ctl, int argc, char *argv[]) {
        return run_host_verb(ctl, &ctl_command_drain, argc, argv);
}

static int run_undrain(Ctl *ctl, int argc, char *argv[]) {
        return run_host_verb(ctl, &ctl_command_undrain, argc, argv);
}

const CtlCommand ctl_command_drain = {
        .name = "drain",
        .usage = "HOST",
        .summary = "move instances off a host, place nothing there",
        .run = run_drain,
};

const CtlCommand ctl_command_undrain = {
        .name = "undrain",
        .usage = "HOST",
        .summary = "allow placement on a drained host again",
        .run = run_undrain,
};
