/* SPDX-License-Identifier: MIT */
/* Liveness judged as of what has been read. A heartbeat waiting in the
 * controller's queue proves its host alive just as one already read does, so
 * hosts are not judged by the clock but by the horizon: the send time of the
 * newest marker the controller published to its own status queue and has
 * read back, before which it has read everything. A controller that falls
 * behind (a burst, a slow disk, a flooding host, a stop) judges the world as
 * it was when it is reading, so it never declares a host down for its own
 * lag; a host that really stopped is declared down one timeout after its
 * last heartbeat, as of the horizon. While the broker is away (blind) no
 * host is judged at all, nor while the controller reads its queue so late
 * that the broker may have dropped heartbeats as expired (overrun: silence
 * is no evidence then either); when the lag is short again, every live host
 * gets a whole timeout from then (liveness_take_regained()). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "duration.h"
#include "status.pb-c.h"
#include "topology.h"

typedef struct Liveness {
        char nonce[33]; /* this run's markers */
        uint64_t seq;
        usec_t interval;   /* between markers */
        usec_t horizon;    /* monotonic: everything sent before it has been read */
        usec_t lag;        /* how long the last marker took to come back */
        usec_t lag_logged; /* a warning a minute at most */
        usec_t timeout;    /* host_timeout */
        bool blind;        /* not connected: nothing can be heard */
        bool overrun;      /* the lag reached LIVENESS_OVERRUN_LAG */
        bool regained;     /* overrun ended: hosts to be given a fresh timeout */
} Liveness;

/* At this lag heartbeats may have expired unread (topology.h): a margin
 * below the shortest expiry agents give them. */
#define LIVENESS_OVERRUN_LAG (TOPOLOGY_HEARTBEAT_MIN_EXPIRY - 2 * USEC_PER_SEC)

int liveness_init(Liveness *l, usec_t host_timeout);

/* The marker to publish now (its nonce points into l). */
void liveness_marker(Liveness *l, const char *controller_id, Baton__V1__ControllerMarker *ret);

/* A marker read back at `now`: returns true when it moved the horizon
 * (another controller's, an earlier run's or a stale one does not). */
bool liveness_marker_read(Liveness *l, const Baton__V1__ControllerMarker *mk, usec_t now);

/* The broker came back (hosts get a whole timeout from now) or went away. */
void liveness_set_blind(Liveness *l, bool blind);
/* Whether hosts may be judged now, and as of when. */
bool liveness_horizon(const Liveness *l, usec_t *ret);
/* What was read from now on was sent after this (monotonic; the queue
 * is FIFO): false before the first marker came back. Unlike the horizon it
 * holds while blind or overrun too. */
bool liveness_sent_after(const Liveness *l, usec_t *ret);
/* True once after an overrun ended: the caller gives every live host a
 * fresh timeout (heartbeats of the overrun may have been dropped). */
bool liveness_take_regained(Liveness *l);
