/* SPDX-License-Identifier: MIT */
/* Host liveness and administrative state, decided from heartbeats and the
 * clock. Pure: time comes in as an argument (monotonic µs), transitions come
 * out for the shell to persist, alert on and act upon. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef enum HostState {
        HOST_UP,
        HOST_DOWN,
        HOST_DRAINED,
        _HOST_STATE_MAX,
        _HOST_STATE_INVALID = -EINVAL,
} HostState;

const char *host_state_to_string(HostState s) _pure_;
HostState host_state_from_string(const char *s) _pure_;

typedef struct Host {
        char *id;
        bool alive;         /* heartbeats arrive within the timeout */
        bool drained;       /* operator asked for no instances here */
        usec_t last_seen;   /* monotonic µs of the last heartbeat */
        usec_t state_since; /* monotonic µs of the last liveness change */
        uint64_t heartbeats;
        void *userdata; /* the shell's observed state; the core never reads it */
        size_t at;      /* where it is in HostTable.hosts (kept as hosts join) */
} Host;

/* What a host's state became. The shell alerts on UP/DOWN. */
typedef struct HostTransition {
        const char *id; /* points into the table; valid until the host is removed */
        HostState from; /* _HOST_STATE_INVALID for a host seen for the first time */
        HostState to;
} HostTransition;

typedef struct HostTable {
        Host **hosts; /* sorted by id */
        size_t n_hosts;
        size_t n_allocated;
        /* The same hosts by the hash of their id (open addressing, a power
         * of two, at most half full): a lookup costs one hash and one
         * string compare however large the fleet. Hosts are never removed. */
        Host **by_id;
        size_t by_id_size;
        size_t n_drained; /* hosts with the drain flag: most events need not look */
        usec_t timeout;
} HostTable;

void host_table_init(HostTable *t, usec_t timeout);
/* Frees every host; calls free_userdata (may be NULL) on each userdata. */
void host_table_done(HostTable *t, void (*free_userdata)(void *));

Host *host_table_get(const HostTable *t, const char *id);
HostState host_state(const Host *h) _pure_;

/* Adds a host known from storage (a restarted controller), alive or not as it
 * was, with last_seen = now: a host gets a whole timeout to report in before
 * it is declared down, so a controller restart never marks the fleet down. */
int host_table_restore(HostTable *t, const char *id, bool alive, bool drained, usec_t now,
                       Host **ret);

/* Records a heartbeat. *ret_transition is set (and 1 returned) when the host
 * is new or was down; 0 otherwise. */
int host_table_heartbeat(HostTable *t, const char *id, usec_t now, Host **ret_host,
                         HostTransition *ret_transition);

/* Declares down every alive host silent for longer than the timeout. Writes
 * at most max transitions and returns how many; call again if it returns max. */
size_t host_table_expire(HostTable *t, usec_t now, HostTransition *ret, size_t max);

/* Sets or clears the drain flag; returns the transition, or 0 if unchanged. */
int host_table_set_drained(HostTable *t, const char *id, bool drained, HostTransition *ret);

/* Gives every live host a fresh timeout from `now`. For when the controller
 * itself was blind (lost the broker): silence it could not hear is no
 * evidence that a host died. Liveness is unchanged. */
void host_table_grace(HostTable *t, usec_t now);

/* When the next expiry check is due (USEC_INFINITY if no host is alive). */
usec_t host_table_next_deadline(const HostTable *t);

size_t host_table_count(const HostTable *t, HostState s);
