/* SPDX-License-Identifier: MIT */
/* Every agent option declared once, with its default, bounds and check. */
#include <stdio.h>

#include "agent-config.h"
#include "labels.h"
#include "topology.h"
#include "unit-name.h"
#include "util.h"

static int validate_host(const void *field, char **ret_error) {
        const char *s = *(char *const *) field;

        if (isempty(s) || topology_host_id_is_valid(s))
                return 0;
        return error_set(ret_error, -EINVAL,
                         "'%s' is not a valid host id (1-64 of A-Z a-z 0-9 - _, starting with a "
                         "letter or digit)",
                         s);
}

static int validate_labels(const void *field, char **ret_error) {
        const char *bad;

        if (labels_validate(*(char *const *) field, &bad) < 0)
                return error_set(ret_error, -EINVAL,
                                 "bad label near '%.40s': expected key=value words",
                                 bad ? bad : "");
        return 0;
}

static int validate_scope(const void *field, char **ret_error) {
        const char *s = *(char *const *) field;

        if (bus_scope_from_string(s) < 0)
                return error_set(ret_error, -EINVAL, "'%s' is not a scope: expected system or user",
                                 strempty(s));
        return 0;
}

static int validate_globs(const void *field, char **ret_error) {
        const char *bad;

        if (unit_globs_validate(*(char *const *) field, &bad) < 0)
                return error_set(ret_error, -EINVAL, "bad unit pattern near '%.40s'",
                                 bad ? bad : "");
        return 0;
}

#define O(section, name, type, field, def, min, max, flags, validate, help)                        \
        { section, name, type, offsetof(AgentConfig, field), def, min, max, flags, validate, help }

const ConfigOption agent_config_options[] = {
        BROKER_CONFIG_OPTIONS(AgentConfig, broker),
        O("agent", "host", CONFIG_STRING, host, NULL, 0, 0, 0, validate_host,
          "host id (default: the hostname)"),
        O("agent", "labels", CONFIG_STRING, labels, NULL, 0, 0, 0, validate_labels,
          "k=v k=v, matched by RequireLabels= and Spread="),
        O("agent", "scope", CONFIG_STRING, scope, "system", 0, 0, 0, validate_scope,
          "system, or user (the user manager at $XDG_RUNTIME_DIR/systemd/private)"),
        O("agent", "bus_address", CONFIG_STRING, bus_address, NULL, 0, 0, 0, NULL,
          "D-Bus address of the manager, overriding the scope's default"),
        O("agent", "manage_units", CONFIG_STRING, manage_units, NULL, 0, 0, 0, validate_globs,
          "glob patterns of the units this agent may touch; empty: none"),
        O("agent", "unit_dir", CONFIG_STRING, unit_dir, NULL, 0, 0, 0, NULL,
          "where unit files are written (default: /etc/systemd/system, or "
          "$XDG_CONFIG_HOME/systemd/user for scope=user)"),
        O("agent", "heartbeat_interval", CONFIG_DURATION, heartbeat_interval, "5s",
          USEC_PER_SEC / 10, 3600 * USEC_PER_SEC, 0, NULL, "how often to send a heartbeat"),
        O("agent", "state_dir", CONFIG_STRING, state_dir, "/var/lib/baton-agent", 0, 0,
          CONFIG_REQUIRED, NULL, "persistent state (epoch, applied placement)"),
        O("agent", "declare_topology", CONFIG_BOOL, declare_topology, "yes", 0, 0, 0, NULL,
          "declare exchanges, the host's queue and its binding; no: only check that they exist "
          "(a broker user limited by baton-broker-setup may not declare them)"),
        O("agent", "command_max_age", CONFIG_DURATION, command_max_age, "10min", 10 * USEC_PER_SEC,
          24 * 3600 * USEC_PER_SEC, 0, NULL,
          "a command sent longer ago than this (by the signed send time), or that far in the "
          "future, is refused: a dead-lettered command cannot be replayed later"),
        O("security", "controller_public_key", CONFIG_STRING, controller_public_key, NULL, 0, 0, 0,
          NULL, "the controller's Ed25519 public key (file or base64); required"),
        O("security", "insecure_unsigned", CONFIG_BOOL, insecure_unsigned, "no", 0, 0, 0, NULL,
          "without controller_public_key, obey unsigned commands from anyone who can publish to "
          "this host's queue (for tests only; logged at every start)"),
};
const size_t agent_config_n_options = ELEMENTSOF(agent_config_options);

int agent_config_load(const char *path, AgentConfig *ret, char **ret_error) {
        AgentConfig c = { 0 };
        int r;

        r = config_load(agent_config_options, agent_config_n_options, &c, path, ret_error);
        if (r < 0)
                goto fail;

        if (isempty(c.host)) {
                free(c.host);
                r = hostname_get(&c.host);
                if (r < 0)
                        goto fail;
                /* A hostname like "web1.example.org" is not a routing key word. */
                c.host[strcspn(c.host, ".")] = 0;
                if (!topology_host_id_is_valid(c.host)) {
                        r = error_set(ret_error, -EINVAL,
                                      "the hostname '%s' is not a valid host id; set [agent] host=",
                                      c.host);
                        goto fail;
                }
        }
        /* Fail closed: a root agent without the controller's key would obey
         * anyone who can publish to its queue. */
        if (isempty(c.controller_public_key) && !c.insecure_unsigned) {
                r = error_set(ret_error, -ENOKEY,
                              "%s: [security] controller_public_key is not set: the agent would "
                              "obey unsigned commands from anyone who can publish to its queue. "
                              "Set it to the controller's public key (file or base64), or "
                              "insecure_unsigned = yes for a test set-up",
                              path ? path : "(defaults)");
                goto fail;
        }
        c.bus_scope = bus_scope_from_string(c.scope);
        *ret = c;
        return 0;

fail:
        agent_config_done(&c);
        return r;
}

void agent_config_done(AgentConfig *c) {
        config_done(agent_config_options, agent_config_n_options, c);
}
