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
#include "hosts.h"
#include "notify.h"
#include "store.h"

/* Why a message was refused; each has a counter (and shows in `batonctl ping`). */
typedef enum RefuseReason {
        REFUSE_MALFORMED,    /* does not decode or validate */
        REFUSE_WRONG_TYPE,   /* a valid message of a type not expected here */
        REFUSE_MISMATCH,     /* routing key, AMQP type and body disagree */
        REFUSE_UNAUTHORIZED, /* mutating request from a user not in operators */
        _REFUSE_REASON_MAX,
        _REFUSE_REASON_INVALID = -EINVAL,
} RefuseReason;

const char *refuse_reason_to_string(RefuseReason r) _pure_;

/* What the controller knows of a host beyond liveness (Host.userdata). */
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
        uint64_t max_epoch_seen;
        uint64_t first_seen_us; /* wall clock, for display and the store */
        uint64_t last_seen_us;
        uint64_t state_since_us;
        bool dirty; /* changed since the last flush to the store */
} HostView;

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

        uv_timer_t expire_timer;
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

/* Publishes a signed protobuf body to `exchange` with the standard properties.
 * `headers` may be NULL. */
int controller_publish(Controller *c, const char *exchange, const char *routing_key,
                       const ProtobufCMessage *body, const BrokerHeader *headers, size_t n_headers,
                       bool persistent, unsigned flags, const char *correlation_id);

/* rpc.c */
void rpc_handle(Controller *c, const BrokerMessage *m);
