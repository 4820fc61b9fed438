/* SPDX-License-Identifier: MIT */
/* baton-agent: parses the command line and wires the Agent to a libuv loop.
 * Everything else lives in agent.c. */
#include <stdio.h>
#include <stdlib.h>

#include "agent.h"
#include "daemon.h"
#include "log.h"

int main(int argc, char *argv[]) {
        _cleanup_free_ char *error = NULL;
        AgentConfig config = { 0 };
        Agent a = { 0 };
        DaemonArgs args = { .config = "/etc/baton/agent.conf" };
        uv_loop_t loop;
        int r;

        log_setup("baton-agent");
        r = daemon_parse_argv(argc, argv, "baton-agent",
                              "The baton agent: converges systemd on this host to the controller's "
                              "placement\nand reports health and shard ownership.",
                              &args);
        if (r <= 0)
                return r < 0 ? 2 : 0;

        r = agent_config_load(args.config, &config, &error);
        if (r < 0) {
                log_error("Invalid configuration: %s", error ? error : strerror(-r));
                return 1;
        }
        if (args.check_config) {
                config_dump(agent_config_options, agent_config_n_options, &config, stdout);
                printf("# %s: configuration is valid (host %s)\n", args.config, config.host);
                agent_config_done(&config);
                return 0;
        }

        r = uv_loop_init(&loop);
        if (r < 0) {
                agent_config_done(&config);
                return log_error_errno(r, "Failed to create the event loop: %s", STRERROR(r)), 1;
        }

        r = agent_start(&a, &loop, &config);
        if (r < 0)
                agent_stop(&a);
        (void) uv_run(&loop, UV_RUN_DEFAULT);
        agent_done(&a);
        (void) uv_loop_close(&loop);
        if (r >= 0)
                log_info("Stopped.");
        return r < 0 ? 1 : 0;
}
