/* SPDX-License-Identifier: MIT */
/* baton-controller: parses the command line and wires the Controller to a
 * libuv loop. Everything else lives in controller.c. */
#include <stdio.h>
#include <stdlib.h>

#include "controller.h"
#include "daemon.h"
#include "log.h"

int main(int argc, char *argv[]) {
        _cleanup_free_ char *error = NULL;
        ControllerConfig config = { 0 };
        Controller c = { 0 };
        DaemonArgs args = { .config = "/etc/baton/controller.conf" };
        uv_loop_t loop;
        int r;

        log_setup("baton-controller");
        r = daemon_parse_argv(
                argc, argv, "baton-controller",
                "The baton controller: decides where services run and tells the agents.", &args);
        if (r <= 0)
                return r < 0 ? 2 : 0;

        r = controller_config_load(args.config, &config, &error);
        if (r < 0) {
                log_error("Invalid configuration: %s", error ? error : strerror(-r));
                return 1;
        }
        if (args.check_config) {
                config_dump(controller_config_options, controller_config_n_options, &config,
                            stdout);
                printf("# %s: configuration is valid\n", args.config);
                controller_config_done(&config);
                return 0;
        }

        r = uv_loop_init(&loop);
        if (r < 0) {
                controller_config_done(&config);
                return log_error_errno(r, "Failed to create the event loop: %s", STRERROR(r)), 1;
        }

        r = controller_start(&c, &loop, &config);
        if (r < 0)
                controller_stop(&c);
        (void) uv_run(&loop, UV_RUN_DEFAULT);
        controller_done(&c);
        (void) uv_loop_close(&loop);
        if (r >= 0)
                log_info("Stopped.");
        return r < 0 ? 1 : 0;
}
