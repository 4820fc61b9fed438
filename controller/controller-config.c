/* SPDX-License-Identifier: MIT */
/* Every controller option declared once, with its default and bounds. */
#include <stdio.h>

#include "controller-config.h"
#include "util.h"

#define O(section, name, type, field, def, min, max, flags, help)                                  \
        { section, name, type, offsetof(ControllerConfig, field), def, min, max, flags, NULL, help }

const ConfigOption controller_config_options[] = {
        BROKER_CONFIG_OPTIONS(ControllerConfig, broker),
        O("controller", "id", CONFIG_STRING, id, NULL, 0, 0, 0,
          "controller id in messages and the audit log (default: hostname)"),
        O("controller", "database", CONFIG_STRING, database, "/var/lib/baton/controller.db", 0, 0,
          CONFIG_REQUIRED, "SQLite database (WAL)"),
        O("controller", "host_timeout", CONFIG_DURATION, host_timeout, "30s", USEC_PER_SEC / 10,
          24 * 3600 * USEC_PER_SEC, 0, "a host without heartbeats this long is down"),
        O("controller", "flush_interval", CONFIG_DURATION, flush_interval, "2s", USEC_PER_SEC / 100,
          600 * USEC_PER_SEC, 0,
          "observed state (last seen, capacity) is written to the database this often"),
        O("controller", "shard_unowned_after", CONFIG_DURATION, shard_unowned_after, "30s",
          USEC_PER_SEC / 10, 24 * 3600 * USEC_PER_SEC, 0,
          "a shard without a ready owner this long raises shard-unowned"),
        O("controller", "metrics_listen", CONFIG_STRING, metrics_listen, NULL, 0, 0, 0,
          "address:port for Prometheus metrics (not implemented yet: must stay empty)"),
        O("security", "signing_key", CONFIG_STRING, signing_key, NULL, 0, 0, 0,
          "Ed25519 secret key file (0600) that signs commands"),
        O("security", "operators", CONFIG_STRING, operators, NULL, 0, 0, 0,
          "broker users allowed to make changes (space-separated); empty: read-only"),
};
const size_t controller_config_n_options = ELEMENTSOF(controller_config_options);

int controller_config_load(const char *path, ControllerConfig *ret, char **ret_error) {
        ControllerConfig c = { 0 };
        int r;

        r = config_load(controller_config_options, controller_config_n_options, &c, path,
                        ret_error);
        if (r < 0) {
                controller_config_done(&c);
                return r;
        }
        if (!isempty(c.metrics_listen)) {
                controller_config_done(&c);
                return error_set(ret_error, -EOPNOTSUPP,
                                 "%s: [controller] metrics_listen: not implemented yet",
                                 path ? path : "(defaults)");
        }
        if (isempty(c.id)) {
                free(c.id);
                r = hostname_get(&c.id);
                if (r < 0) {
                        controller_config_done(&c);
                        return r;
                }
        }
        *ret = c;
        return 0;
}

void controller_config_done(ControllerConfig *c) {
        config_done(controller_config_options, controller_config_n_options, c);
}
