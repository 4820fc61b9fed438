/* SPDX-License-Identifier: MIT */
/* baton-agent's configuration: one option table (docs/DESIGN.md §9). */
#pragma once

#include "broker-settings.h"
#include "bus.h"
#include "config.h"

typedef struct AgentConfig {
        BrokerSettings broker;
        char *host;
        char *labels;
        char *scope;
        char *bus_address;
        char *manage_units;
        char *unit_dir;
        usec_t heartbeat_interval;
        char *state_dir;
        char *controller_public_key;
        bool insecure_unsigned; /* accept unsigned commands (tests only) */
        usec_t command_max_age; /* signed commands older (or newer) than this are refused */
        bool declare_topology;  /* no: only check the queue the set-up script made */
        BusScope bus_scope;     /* parsed from scope */
} AgentConfig;

extern const ConfigOption agent_config_options[];
extern const size_t agent_config_n_options;

/* Loads defaults and `path`, then checks what needs more than one option or
 * the host: host id (default: the hostname), scope. */
int agent_config_load(const char *path, AgentConfig *ret, char **ret_error);
void agent_config_done(AgentConfig *c);
