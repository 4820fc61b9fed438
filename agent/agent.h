/* SPDX-License-Identifier: MIT */
/* The agent process: one systemd manager over sd-bus, one broker connection,
 * all on one uv loop. It converges its host to the controller's Placement,
 * reports what happens, and above all never disturbs the units running there
 * when the broker or the controller goes away. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <uv.h>

#include "agent-config.h"
#include "agent-state.h"
#include "broker.h"
#include "bus.h"
#include "codec.h"
#include "notify.h"
#include "sign.h"
#include "systemd.h"

/* The shard assignment a sharded unit runs with, as written in its drop-in. */
typedef struct ShardInfo {
        char *unit;
        char *service;
        uint32_t instance;
        char *shards;
        uint32_t shard_count;
        uint64_t shard_epoch;
} ShardInfo;

typedef struct Apply Apply;

/* report.c: one watched unit's UnitEvents. At most one is in flight; changes
 * meanwhile coalesce into the next one, which carries the latest state. */
typedef struct UnitReport {
        char *unit;
        char *reported_active_state; /* in the last UnitEvent sent */
        uint64_t in_flight;          /* its sequence number until confirmed, else 0 */
        bool dirty;                  /* changed since: send the latest once confirmed */
} UnitReport;

/* A Restart held until the Placement being applied is done, or until it can
 * be recorded (apply.c). */
typedef struct WaitingRestart {
        CodecDecoded decoded;
        uint64_t delivery_tag;
} WaitingRestart;

typedef struct Agent {
        uv_loop_t *loop;
        AgentConfig config;
        Broker *broker;
        sd_bus *bus;
        BusLoop *bus_loop;
        Systemd *systemd;
        SignPublicKey controller_key;
        bool have_controller_key;

        AgentState state;
        char *state_path;
        char *unit_dir;           /* where unit files and drop-ins are written */
        char *shards_dir;         /* shards files (ShardChange=reload): "shards" beside the state */
        const char *wants_target; /* what enabled units are wanted by */
        ShardInfo *shards;
        size_t n_shards;

        Apply *apply; /* the Placement being carried out, if any */
        struct {
                CodecDecoded decoded; /* the newest Placement received meanwhile */
                uint64_t delivery_tag;
                bool set;
        } pending;
        WaitingRestart *waiting; /* in arrival order */
        size_t n_waiting;
        uv_timer_t retry_timer; /* held commands: state not saved, out of memory */
        unsigned retry_attempt; /* backoff; reset by a successful state write */

        char boot_id[37];
        char *systemd_version;
        char *system_state;
        bool synced; /* first successful read from systemd done */
        uint64_t started_at_us;
        uint64_t heartbeat_seq;

        uv_timer_t heartbeat_timer;
        uv_timer_t memory_timer;
        struct {
                UnitReport *units;
                size_t n_units;
                uint64_t seq;
                uv_timer_t shard_timer; /* paced ShardReports: StatusText churn */
                uint64_t shard_sent_us; /* monotonic */
                bool shard_in_flight, shard_dirty;
                bool shard_urgent;  /* not paced: ActiveState changed, reconnect, new placement */
                uint64_t logged_us; /* when the coalescing counters were last logged */
                uint64_t logged_events, logged_shard_reports;
        } report;
        uv_signal_t sigterm;
        uv_signal_t sigint;
        Notifier notifier;
        bool stopping;

        struct {
                uint64_t heartbeats_sent;
                uint64_t heartbeats_dropped;
                uint64_t commands_received;
                uint64_t refused;
                uint64_t placements_applied;
                uint64_t restarts_run;
                uint64_t unit_events;
                uint64_t unit_events_coalesced;
                uint64_t status_malformed; /* STATUS= of sharded units that do not parse */
                uint64_t shard_reports;
                uint64_t shard_reports_coalesced;
                uint64_t publish_failed;
        } counters;
} Agent;

int agent_start(Agent *a, uv_loop_t *loop, AgentConfig *config);
void agent_stop(Agent *a);
void agent_done(Agent *a);

/* Publishes a body on baton.status with key "<host>.<kind>". Status other
 * than heartbeats is kept while the broker is away (not droppable). */
int agent_publish_status(Agent *a, const char *kind, const ProtobufCMessage *body, bool droppable);
/* Counts, logs and dead-letters a command. */
void agent_refuse(Agent *a, uint64_t delivery_tag, const char *what, const char *why);
void agent_ack(Agent *a, uint64_t delivery_tag);
/* Reports every sharded unit's readiness: at once, or, when a report is in
 * flight, as soon as it is confirmed, with the latest readiness. (Reports
 * for StatusText changes alone are also paced to one per
 * SHARD_REPORT_INTERVAL.) */
int agent_send_shard_report(Agent *a);
int agent_send_heartbeat(Agent *a);
/* Fills a UnitState from the systemd cache (strings borrowed). */
void agent_unit_state(Agent *a, const char *unit, void *ret_unit_state);

/* systemd callback: a watched unit changed → UnitEvent (and ShardReport). */
void agent_on_unit_changed(Systemd *s, const UnitInfo *now, const UnitInfo *old, void *userdata);
/* Frees what report.c keeps. */
void report_done(Agent *a);

/* Shard assignments: set from an applied Placement or read from a drop-in. */
int agent_set_shard_info(Agent *a, const char *unit, const char *service, uint32_t instance,
                         const char *shards, uint32_t shard_count, uint64_t shard_epoch);
void agent_forget_shard_info(Agent *a, const char *unit);

/* apply.c: Placement and Restart. Both take over `d`. */
void apply_placement(Agent *a, CodecDecoded *d, uint64_t delivery_tag);
void apply_restart(Agent *a, CodecDecoded *d, uint64_t delivery_tag);
Apply *apply_free(Apply *x);
/* Frees every command apply.c holds (unacked: the broker redelivers them). */
void apply_done(Agent *a);
