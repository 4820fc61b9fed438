/* SPDX-License-Identifier: MIT */
/* The controller process. Each part owns its own state: the model (what is
 * observed and desired, controller/core/model.h) is changed only by
 * pipeline.c, which runs every event through reconcile() and carries out the
 * plan; intake.c owns refusals and rate limits; liveness.c the markers and
 * the horizon hosts are judged by; publish.c the outgoing messages. This file
 * holds them together with the loop's handles; controller.c starts and stops
 * them. Nothing deciding lives in the shell. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "broker.h"
#include "controller-config.h"
#include "intake.h"
#include "liveness.h"
#include "model.h"
#include "notify.h"
#include "outbox.h"
#include "publish.h"
#include "sign.h"
#include "store.h"

/* What the pipeline did, for `batonctl ping`. */
typedef struct PipelineCounters {
        uint64_t events;
        uint64_t alerts_raised;
        uint64_t alerts_resolved;
        uint64_t store_errors;
        usec_t longest_step; /* the longest reconcile + store + publish, monotonic µs */
        /* The longest turn of the loop spent running callbacks (not waiting
         * for input), and how many took over LOOP_BUSY_LONG: what blocks
         * heartbeats and requests, whatever the callback was. */
        usec_t longest_busy;
        uint64_t busy_long;
        /* The same in CPU time of the loop's thread. */
        usec_t longest_busy_cpu;
        uint64_t busy_long_cpu;
        /* The turn less the time it waited for a CPU (its own work and what
         * it blocked on: disk, sockets), where the kernel keeps run-queue
         * time (LoopProbe.sched_fd); else the whole turn. */
        usec_t longest_busy_own;
        uint64_t busy_long_own;
        /* Hosts whose Placements a pass left to later ones (SyncQueue). */
        uint64_t placements_deferred;
        /* Services whose placement a pass left to later ones. */
        uint64_t services_deferred;
} PipelineCounters;

#define LOOP_BUSY_LONG (100 * USEC_PER_MSEC)

/* Measures each turn of the loop (controller.c): from one uv_prepare to the
 * next, less the time the loop waited in poll (uv_metrics_idle_time). */
typedef struct LoopProbe {
        uv_prepare_t prepare;
        uint64_t at_ns;   /* uv_hrtime() at the last prepare; 0: none yet */
        uint64_t idle_ns; /* uv_metrics_idle_time() then */
        usec_t cpu_us;    /* the thread's CPU time then: a turn's own work, not the time
                           * it was descheduled on a busy machine */
        usec_t delay_us;  /* the thread's time waiting for a CPU then (sched_fd) */
        int sched_fd;     /* /proc/thread-self/schedstat; -EBADF: the kernel keeps no
                           * run-queue time (kernel.task_delayacct=0) */
        /* The longest part of this turn that said what it was (a pass, a
         * request): named when a turn is long. */
        usec_t part_took;
        const char *part; /* a static string */
        usec_t warned_at; /* monotonic: a warning a minute at most */
        usec_t noted_at;  /* monotonic: a long turn noted, one a second at most */
        uint64_t unnoted; /* long turns since, not noted */
        bool on;
} LoopProbe;

/* A turn of the loop this long is logged, naming its longest part. */
#define LOOP_BUSY_WARN (1 * USEC_PER_SEC)

/* Called by what runs in a turn (pipeline.c, rpc.c) with what it was and
 * how long it took; `what` must be static. */
static inline void loop_probe_part(LoopProbe *p, const char *what, usec_t took) {
        if (took >= p->part_took) {
                p->part_took = took;
                p->part = what;
        }
}

/* Host transitions gathered in one turn of the loop (pipeline.c). */
typedef struct HostWave {
        HostTransition *transitions;
        usec_t *since;
        size_t n;
        size_t n_allocated;
        uv_timer_t timer;
        bool armed;
} HostWave;

/* Hosts whose Placements a pass left to later ones (Plan.later), computed
 * config.sync_step_hosts a turn of the loop on an idle handle (pipeline.c),
 * and services whose placement it left (Plan.later_services).
 * A host is in it once (HostModel.sync_queued); ids point into the host
 * table, whose hosts are never removed. */
typedef struct SyncQueue {
        const char **hosts;
        size_t head, n, n_allocated;
        /* Services a pass left to later ones (Plan.later_services): owned
         * names, each once; the next sync pass places them, in steps of
         * config.place_step_instances. */
        char **services;
        size_t n_services;
        uv_idle_t idle;
        bool on; /* idle is initialized */
} SyncQueue;

/* Answers being written in steps (rpc-steps.c), one at a time, a few
 * milliseconds per turn of the loop, on an idle handle. */
typedef struct RpcJob RpcJob;
typedef struct RpcQueue {
        RpcJob *head, *tail;
        size_t n;
        uv_idle_t idle;
        bool on; /* idle is initialized */
} RpcQueue;

/* At most this many answers wait to be written; more are refused. */
#define RPC_QUEUE_MAX 8

typedef struct Controller {
        uv_loop_t *loop;
        ControllerConfig config;
        uint64_t started_at_us;

        Store *store;
        Broker *broker;
        Model model;
        Publisher pub;
        Outbox outbox;
        SignKey signing_key;
        Intake intake;
        Liveness live;
        PipelineCounters counters;
        HostWave wave;
        SyncQueue syncq;
        LoopProbe probe;
        RpcQueue rpcq;
        char run_nonce[33]; /* random, made at start: restart ids (pipeline.c) */

        uv_timer_t marker_timer;
        uv_timer_t flush_timer;
        uv_timer_t tick_timer;
        uv_signal_t sigterm;
        uv_signal_t sigint;
        Notifier notifier;
        usec_t last_check; /* monotonic: the last full placement check */
        bool handles;      /* the loop's handles are initialized */
        bool stopping;
} Controller;

/* Sets up everything from a loaded configuration (takes it over), opens the
 * store, raises the epoch, loads the model and starts connecting. */
int controller_start(Controller *c, uv_loop_t *loop, ControllerConfig *config);
/* Graceful stop: flush, close the broker and every handle; the loop then
 * ends by itself. */
void controller_stop(Controller *c);
void controller_done(Controller *c);
