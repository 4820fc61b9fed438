/* SPDX-License-Identifier: MIT */
/* baton-controller's configuration: one option table (docs/DESIGN.md §9). */
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
        uint64_t status_rate; /* status messages per second per host (burst 10×) */
        uint64_t rpc_rate;    /* requests per second per broker user (burst 5×) */
        uint64_t mass_loss_percent;
        uint64_t answer_part_size;     /* bytes of one part of a large answer */
        usec_t answer_step_time;       /* of one turn, for an answer written in steps */
        uint64_t sync_step_hosts;      /* Placements computed a turn (Event.sync_max) */
        uint64_t place_step_instances; /* instances placed a turn (Event.place_max) */
        usec_t check_interval;
        uint64_t audit_max_entries;
        usec_t audit_max_age;
        char *signing_key;
        bool insecure_unsigned; /* send commands unsigned (tests only) */
        char *operators;
} ControllerConfig;

extern const ConfigOption controller_config_options[];
extern const size_t controller_config_n_options;

/* Loads defaults and `path`; fills in `id` from the hostname when unset. */
int controller_config_load(const char *path, ControllerConfig *ret, char **ret_error);
void controller_config_done(ControllerConfig *c);
