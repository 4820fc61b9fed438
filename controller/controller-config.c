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
        O("controller", "status_rate_limit", CONFIG_UINT, status_rate, "100", 1, 1000000, 0,
          "status messages per second one host may send, each KiB of a message counting as one "
          "more (bursts of ten times as many); beyond it a heartbeat only proves the host alive "
          "and the rest is dropped and counted"),
        O("controller", "rpc_rate_limit", CONFIG_UINT, rpc_rate, "20", 1, 100000, 0,
          "requests per second one broker user may make (bursts of five times as many); beyond "
          "it requests are refused"),
        O("controller", "mass_loss_percent", CONFIG_UINT, mass_loss_percent, "50", 1, 100, 0,
          "more than this share of the hosts down within one host_timeout raises "
          "mass-host-loss and holds their re-placement until they return or an operator "
          "confirms them down; 100 turns it off"),
        O("controller", "check_interval", CONFIG_DURATION, check_interval, "5min",
          10 * USEC_PER_SEC, 24 * 3600 * USEC_PER_SEC, 0,
          "this often every service is placed from scratch, a check of the incremental "
          "placement"),
        O("controller", "answer_part_size", CONFIG_UINT, answer_part_size, "4128768", 16384,
          4128768, 0,
          "an answer larger than this goes to batonctl in parts of this many bytes (for brokers "
          "with a smaller max_message_size)"),
        O("controller", "answer_step_time", CONFIG_DURATION, answer_step_time, "10ms", 0,
          USEC_PER_SEC, 0,
          "a large answer (status of every instance) is written this long per turn of the loop, "
          "heartbeats and other requests being served in between; 0: 256 entries per turn"),
        O("controller", "sync_step_hosts", CONFIG_UINT, sync_step_hosts, "500", 0, 1000000, 0,
          "a change that gives more hosts new Placements than this computes and sends the rest "
          "this many a turn of the loop, heartbeats and requests being served in between; 0: "
          "all at once"),
        O("controller", "place_step_instances", CONFIG_UINT, place_step_instances, "10000", 0,
          100000000, 0,
          "a change that places services of more instances than this (counted by service) "
          "places the rest in steps of this many a turn of the loop, heartbeats and requests "
          "being served in between; 0: all at once"),
        O("controller", "audit_max_entries", CONFIG_UINT, audit_max_entries, "100000", 10,
          100000000, 0, "the audit log keeps at most this many newest entries"),
        O("controller", "audit_max_age", CONFIG_DURATION, audit_max_age, "365d",
          3600 * USEC_PER_SEC, UINT64_C(100) * 365 * 24 * 3600 * USEC_PER_SEC, 0,
          "audit entries older than this are removed"),
        O("controller", "metrics_listen", CONFIG_STRING, metrics_listen, NULL, 0, 0, 0,
          "address:port for Prometheus metrics (not implemented yet: must stay empty)"),
        O("security", "signing_key", CONFIG_STRING, signing_key, NULL, 0, 0, 0,
          "Ed25519 secret key file (0600) that signs commands; required"),
        O("security", "insecure_unsigned", CONFIG_BOOL, insecure_unsigned, "no", 0, 0, 0,
          "without signing_key, send commands unsigned (agents then refuse them unless they are "
          "insecure too; for tests only, logged at every start)"),
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
        if (isempty(c.signing_key) && !c.insecure_unsigned) {
                controller_config_done(&c);
                return error_set(ret_error, -ENOKEY,
                                 "%s: [security] signing_key is not set: agents refuse unsigned "
                                 "commands. Set it to the controller's secret key file "
                                 "(baton-keygen makes one), or insecure_unsigned = yes for a test "
                                 "set-up",
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
