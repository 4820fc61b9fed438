/* SPDX-License-Identifier: MIT */
/* Commands waiting to go out. A plan that sends many Placements (an apply
 * over a large fleet, a wave of lost hosts) would hold the loop for as long
 * as signing and publishing them takes, and heartbeats and requests would
 * wait behind it. The outbox publishes what fits in a slice of the loop's
 * time at once and the rest in further slices, one turn of the loop apart,
 * in the order the plans made them (a host's Placement before a Restart that
 * needs it). What it holds it owns: the specs a Placement's units were made
 * from may be replaced meanwhile. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "plan.h"
#include "publish.h"

/* How long one slice publishes before the loop gets a turn. */
#define OUTBOX_SLICE_USEC (10 * USEC_PER_MSEC)
/* The outbox waits while the broker client holds this many messages or
 * bytes not yet confirmed (its buffer is larger: the rest is for replies,
 * alerts and events, which cannot wait), and looks again after
 * OUTBOX_RETRY_MS. */
#define OUTBOX_MAX_PENDING 4000u
#define OUTBOX_MAX_PENDING_BYTES (8u * 1024u * 1024u)
#define OUTBOX_RETRY_MS 10

typedef struct OutboxItem OutboxItem;
typedef struct OutboxStrings OutboxStrings;
typedef struct OutboxSlot OutboxSlot;

typedef struct Outbox {
        uv_idle_t idle;
        uv_timer_t retry;
        bool handle;
        Publisher *pub;
        OutboxItem *items; /* a ring: n from head; the item at head is number head_seq */
        size_t head, n, n_allocated;
        uint64_t head_seq;
        /* The waiting Placement of each host, by host: a newer one takes its
         * place (and its turn), so a host never waits for two. */
        OutboxSlot *slots;
        size_t n_slots, n_used;

        uint64_t placements_sent;
        uint64_t restarts_sent;
        size_t peak; /* the most ever waiting */
} Outbox;

int outbox_init(Outbox *o, uv_loop_t *loop, Publisher *pub);
void outbox_done(Outbox *o);
/* Closes the idle handle (with the loop's other handles). */
void outbox_close(Outbox *o);

/* Publishes the plan's Placements and Restarts under `epoch`: at once while
 * nothing waits and the slice that began at `start` (monotonic µs) lasts,
 * the rest later. Takes over what it keeps from the plan. */
void outbox_send(Outbox *o, Plan *p, uint64_t epoch, usec_t start);
/* Publishes everything waiting now (a graceful stop). */
void outbox_flush(Outbox *o);
static inline size_t outbox_depth(const Outbox *o) {
        return o->n;
}
