/* SPDX-License-Identifier: MIT */
/* baton-controller's configuration: one option table, DESIGN.md §7. */
#pragma once

#include "broker-settings.h"
#include "config.h"

typedef struct ControllerConfig {
        BrokerSettings broker;
        char *id;
        char *database;
        usec_t host_timeout;
        usec_t flush_interval;
        usec_t shard_unowned_after;
        char *metrics_listen;
        char *signing_key;
        char *operators;
} ControllerConfig;

extern const ConfigOption controller_config_options[];
extern const size_t controller_config_n_options;

/* Loads defaults and `path`; fills in `id` from the hostname when unset. */
int controller_config_load(const char *path, ControllerConfig *ret, char **ret_error);
void controller_config_done(ControllerConfig *c);
