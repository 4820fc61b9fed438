/* SPDX-License-Identifier: MIT */
/* The agent process: one systemd manager over sd-bus, one broker connection,
 * all on one uv loop. It reports its host and, above all, never disturbs the
 * units running there when the broker or the controller goes away. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <uv.h>

#include "agent-config.h"
#include "broker.h"
#include "bus.h"
#include "notify.h"
#include "sign.h"

typedef struct Agent {
        uv_loop_t *loop;
        AgentConfig config;
        Broker *broker;
        sd_bus *bus;
        BusLoop *bus_loop;
        SignPublicKey controller_key;
        bool have_controller_key;

        char boot_id[37];
        char *systemd_version;
        char *system_state;
        bool synced; /* first successful read from systemd done */
        uint64_t started_at_us;
        uint64_t heartbeat_seq;
        uint64_t max_epoch_seen;
        uint64_t applied_generation;
        uint64_t applied_epoch;

        uv_timer_t heartbeat_timer;
        uv_signal_t sigterm;
        uv_signal_t sigint;
        Notifier notifier;
        bool stopping;

        struct {
                uint64_t heartbeats_sent;
                uint64_t heartbeats_dropped;
                uint64_t commands_received;
                uint64_t refused;
        } counters;
} Agent;

int agent_start(Agent *a, uv_loop_t *loop, AgentConfig *config);
void agent_stop(Agent *a);
void agent_done(Agent *a);
