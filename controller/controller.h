/* SPDX-License-Identifier: MIT */
/* The controller process: owns the loop's handles, the store, the broker
 * connection and the in-memory view of the fleet. The deciding logic lives in
 * controller/core; this shell receives, asks the core, persists and
 * publishes. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "broker.h"
#include "controller-config.h"
#include "flap.h"
#include "hosts.h"
#include "notify.h"
#include "placement.h"
#include "ratelimit.h"
#include "shards.h"
#include "sign.h"
#include "store.h"

/* Why a message was refused; each has a counter (and shows in `batonctl ping`). */
typedef enum RefuseReason {
        REFUSE_MALFORMED,    /* does not decode or validate */
        REFUSE_WRONG_TYPE,   /* a valid message of a type not expected here */
        REFUSE_MISMATCH,     /* routing key, AMQP type and body disagree */
        REFUSE_UNAUTHORIZED, /* mutating request from a user not in operators */
        REFUSE_RATE_LIMITED, /* over status_rate_limit (per host) or rpc_rate_limit (per user) */
        REFUSE_NOT_OWNED,    /* a report about units or shards not placed on that host */
        _REFUSE_REASON_MAX,
        _REFUSE_REASON_INVALID = -EINVAL,
} RefuseReason;

const char *refuse_reason_to_string(RefuseReason r) _pure_;

/* What the controller knows of a host beyond liveness (Host.userdata). */
struct FlapEntry {
        char *unit;
        FlapTracker tracker;
        bool seen; /* in the last heartbeat */
};

typedef struct HostView {
        char *boot_id;
        char *agent_version;
        char *labels; /* "k=v k=v" */
        char *systemd_version;
        char *system_state;
        uint32_t cores;
        uint64_t memory_total;
        uint64_t memory_available;
        uint32_t load1_x100;
        uint32_t units_total;
        uint32_t units_active;
        uint64_t applied_generation;
        uint64_t applied_epoch;
        uint64_t max_epoch_seen;
        uint64_t first_seen_us; /* wall clock, for display and the store */
        uint64_t last_seen_us;
        uint64_t state_since_us;
        bool dirty; /* changed since the last flush to the store */

        /* The units the host reported in its last heartbeat (or since, from
         * unit events): what `batonctl status` shows. */
        struct ObservedUnitState {
                char *name;
                char *active_state;
                char *sub_state;
                uint32_t n_restarts;
                uint32_t main_pid;
                uint64_t state_change_us; /* systemd's StateChangeTimestamp */
        } * units;
        size_t n_units;
        /* Per unit restart history, across heartbeats, for unit-flapping. */
        struct FlapEntry *flaps;
        size_t n_flaps;

        /* Placement sent: its generation, a digest of its units (to send a
         * new generation only on change), and when it was last (re)sent. */
        /* The sharded copies the host reported in its last ShardReport. */
        ShardCopyReport *shard_reports;
        size_t n_shard_reports;

        uint64_t generation;
        char *sent_digest;
        uint64_t sent_at_us;
        bool resend; /* send the Placement on the next reconcile even if unchanged */

        /* status_rate_limit: beyond it only liveness counts. */
        TokenBucket status_bucket;
        uint64_t status_dropped;
        usec_t status_dropped_logged; /* monotonic; a line a minute at most */
} HostView;

/* rpc_rate_limit, per broker user. */
typedef struct RpcUserBucket {
        char *user;
        TokenBucket bucket;
} RpcUserBucket;

/* An instance and its host, as decided by the last reconcile. */
typedef struct FleetInstance {
        char *service;
        uint32_t instance;
        char *host;
} FleetInstance;

typedef struct OpenAlert {
        char *id;
        char *kind;
        char *host;
        char *service;
        char *summary;
        int severity;
        uint64_t raised_at_us;
} OpenAlert;

typedef struct Controller {
        uv_loop_t *loop;
        ControllerConfig config;
        Store *store;
        Broker *broker;
        HostTable hosts;
        uint64_t epoch;
        uint64_t started_at_us;

        OpenAlert *alerts;
        size_t n_alerts;
        RpcUserBucket *rpc_users;
        size_t n_rpc_users;

        /* Desired state: parsed specs (count is the effective count) and the
         * current placement of every instance. */
        struct ServiceSpec **services;
        size_t n_services;
        FleetInstance *instances;
        size_t n_instances;
        size_t drain_waiting;          /* instances on drained hosts waiting for their turn */
        ShardService **shard_services; /* one per sharded service */
        size_t n_shard_services;
        struct Rollout **rollouts; /* at most one per service */
        size_t n_rollouts;
        uint64_t next_rollout_id;
        uv_timer_t rollout_timer;
        SignKey signing_key;
        bool have_signing_key;

        /* Liveness (controller.c): markers through our own status queue and
         * the horizon they give. */
        uv_timer_t marker_timer;
        char marker_nonce[33];
        uint64_t marker_seq;
        usec_t horizon;    /* monotonic: everything sent before it has been read */
        usec_t status_lag; /* how long the last marker took to come back */
        usec_t lag_logged;
        uv_timer_t flush_timer;
        uv_signal_t sigterm;
        uv_signal_t sigint;
        Notifier notifier;
        bool stopping;
        /* Not connected to the broker: heartbeats cannot arrive, so no host is
         * declared down until we are back and have waited a timeout. */
        bool blind;

        struct {
                uint64_t status_received;
                uint64_t heartbeats;
                uint64_t rpc_received;
                uint64_t rpc_answered;
                uint64_t refused[_REFUSE_REASON_MAX];
                uint64_t alerts_raised;
                uint64_t alerts_resolved;
                uint64_t publish_failed;
                uint64_t store_errors;
        } counters;
} Controller;

/* Sets up everything from a loaded configuration (takes it over), opens the
 * store, raises the epoch and starts connecting. */
int controller_start(Controller *c, uv_loop_t *loop, ControllerConfig *config);
/* Graceful stop: flush, close the broker and every handle; the loop then
 * ends by itself. */
void controller_stop(Controller *c);
void controller_done(Controller *c);

/* Counts and logs a refused message and dead-letters it (reject, no requeue). */
void controller_refuse(Controller *c, const BrokerMessage *m, RefuseReason reason,
                       const char *detail);

/* How a message goes out; zeroes are the defaults. */
typedef struct PublishOptions {
        const BrokerHeader *headers;
        size_t n_headers;
        bool persistent;
        unsigned flags; /* BROKER_PUBLISH_* */
        const char *correlation_id;
        const char *expiration; /* milliseconds as text */
} PublishOptions;

/* Publishes a protobuf body in an Envelope with the standard properties,
 * signed when a signing key is configured (every controller-issued message
 * is). */
int controller_publish(Controller *c, const char *exchange, const char *routing_key,
                       const ProtobufCMessage *body, const PublishOptions *o);

/* Alerts (controller.c): raised once, resolved once, persisted while open. */
/* "critical", "warning", "info": as in routing keys, headers and --json. */
const char *alert_severity_name(int severity);
/* Resolves every open alert about `service` (it was deleted). */
void alerts_resolve_service(Controller *c, const char *service);
int alert_raise(Controller *c, const char *kind, int severity, const char *service,
                const char *host, const char *summary);
int alert_resolve(Controller *c, const char *kind, const char *service, const char *host,
                  const char *summary);

/* Publishes an event on baton.events with key event.<kind> and readable
 * headers; detail_json may be NULL. */
int controller_event(Controller *c, const char *kind, const char *service, const char *host,
                     const char *summary, const char *detail_json);

/* The unit `unit` as the host last reported it (v->units is sorted by
 * name), or NULL. */
const struct ObservedUnitState *host_view_unit(const HostView *v, const char *unit);

/* fleet.c: desired state and the reconciler. */
int fleet_load(Controller *c);
void fleet_done(Controller *c);
/* Recomputes placement, persists it, and sends every host whose units
 * changed a new Placement generation. `why` is logged. Returns the number of
 * instances that moved, or -errno (then nothing changed). */
int fleet_reconcile(Controller *c, const char *why);

/* The same in three steps, so that a verb can write its own records and the
 * placement in one transaction and change nothing in memory unless that
 * commits: prepare (compute; may fail), write (the instance rows that
 * change, inside the caller's transaction), adopt (after the commit: the
 * new placement, alerts and Placements; cannot fail). */
struct PlacementResult;
typedef struct FleetChange {
        struct PlacementResult res;
        FleetInstance *next;
        size_t n_next;
} FleetChange;
int fleet_change_prepare(Controller *c, struct ServiceSpec *const *services, size_t n_services,
                         FleetChange *ret);
int fleet_change_write(Controller *c, const FleetChange *ch);
void fleet_change_adopt(Controller *c, FleetChange *ch, const char *why);
void fleet_change_done(FleetChange *ch);
/* Whether an instance is active where it is placed (and, for a sharded one,
 * every shard it owns is ready). */
bool fleet_instance_healthy(Controller *c, const FleetInstance *fi);
/* Moves the next instances off drained hosts when their turn has come (see
 * fleet.c); cheap when no drain is under way. */
void fleet_drain_step(Controller *c);
/* Where an instance is placed (c->instances is sorted by (service,
 * instance): a binary search), or NULL. */
const FleetInstance *fleet_find_instance(Controller *c, const char *service, uint32_t instance);
/* The unit an instance runs as now: "web@3.service"; for a sharded instance
 * its live copy ("gateway@3b.service" in slot 1). */
int fleet_instance_unit(Controller *c, const struct ServiceSpec *s, uint32_t instance, char **ret);
/* Sends every host whose units changed (without re-placing anything). */
void fleet_sync(Controller *c);
/* A heartbeat arrived: resend the host's Placement if it lags behind. */
void fleet_check_host(Controller *c, Host *h);
struct ServiceSpec *fleet_service(Controller *c, const char *name);
/* Placement of `services` on the current hosts, starting from the current
 * instances; changes nothing (apply uses it for plans too). */
struct PlacementResult;
int fleet_compute(Controller *c, struct ServiceSpec *const *services, size_t n_services,
                  struct PlacementResult *ret);
/* Writes a host's record now (drain, transitions). */
int controller_persist_host(Controller *c, Host *h);

/* rollouts.c: rolling restarts driven by controller/core/rollout. */
int rollouts_load(Controller *c);
void rollouts_done(Controller *c);
/* Starts a rolling restart of every instance of `service`. -EBUSY if one is
 * running, -ENOENT for an unknown service. */
int rollouts_start(Controller *c, const char *service, uint64_t *ret_id);
/* A rolling restart of `service` is running, paused or failed. */
bool rollouts_active(Controller *c, const char *service);
/* Advances every rollout now (also called from a timer). */
void rollouts_step(Controller *c);
/* Sends a Restart of one instance; *ret_id (33 bytes) gets its id. */
int fleet_send_restart(Controller *c, const char *service, uint32_t instance, char *ret_id,
                       const char **ret_host);

/* rpc.c */
void rpc_handle(Controller *c, const BrokerMessage *m);
