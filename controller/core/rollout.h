/* SPDX-License-Identifier: MIT */
/* A rolling restart of one service as a pure state machine: which instances
 * to restart now, given their health and the clock, honouring MaxUnavailable,
 * HealthyFor and HealthTimeout, with pause, resume and abort. The controller
 * persists the Rollout after every step and carries out the restarts; a
 * controller killed at any moment resumes from the persisted state and never
 * restarts an instance twice. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef enum RolloutState {
        ROLLOUT_RUNNING,
        ROLLOUT_PAUSED, /* by an operator, or by a failed step */
        ROLLOUT_DONE,
        ROLLOUT_FAILED, /* a step failed; paused until resume or abort */
        ROLLOUT_ABORTED,
        _ROLLOUT_STATE_MAX,
        _ROLLOUT_STATE_INVALID = -EINVAL,
} RolloutState;

typedef enum RolloutItemState {
        ITEM_PENDING,    /* not restarted yet */
        ITEM_RESTARTING, /* restart issued (its id: rollout_restart_id()), not yet healthy */
        ITEM_SETTLING,   /* healthy since healthy_since; done after HealthyFor */
        ITEM_DONE,
        ITEM_FAILED, /* not healthy by HealthTimeout (or not DONE by then) */
        _ITEM_STATE_MAX,
        _ITEM_STATE_INVALID = -EINVAL,
} RolloutItemState;

const char *rollout_state_to_string(RolloutState s) _pure_;
RolloutState rollout_state_from_string(const char *s) _pure_;
const char *rollout_item_state_to_string(RolloutItemState s) _pure_;
RolloutItemState rollout_item_state_from_string(const char *s) _pure_;

typedef struct RolloutItem {
        uint32_t instance;
        RolloutItemState state;
        usec_t started_at;    /* when the restart was issued (wall µs), 0 if not */
        usec_t healthy_since; /* 0 if not healthy now */
        uint32_t attempts;    /* restarts issued for it (1 normally; resume may retry) */
} RolloutItem;

typedef struct Rollout {
        char *service;
        uint64_t id;
        RolloutState state;
        uint32_t max_unavailable;
        usec_t healthy_for;
        usec_t health_timeout;
        RolloutItem *items; /* one per instance, in order */
        size_t n_items;
        char *reason; /* why failed/paused/aborted, NULL otherwise */
        /* True while the rollout-failed alert is raised: an ALERT was issued and
         * no RESOLVE since. Alerts are level-triggered on it, so a step replayed
         * after a crash never raises or resolves twice. */
        bool alert_raised;
} Rollout;

/* Most items a rollout holds (rollout_new() and rollout_parse() refuse more). */
#define ROLLOUT_ITEMS_MAX 65536U

/* Observed health of one instance: up = active and (for sharded) all its
 * shards ready; baseline_unavailable counts instances down for other reasons
 * (they use up MaxUnavailable too). */
typedef struct InstanceHealth {
        uint32_t instance;
        bool healthy;
        /* True once the instance has gone through a restart since started_at
         * (its unit's start time is after it, or its NRestarts moved): a unit
         * still reporting healthy from before the restart is not done. */
        bool restarted_since_issue;
} InstanceHealth;

typedef enum RolloutActionKind {
        ROLLOUT_ACTION_RESTART,  /* issue a Restart for instance */
        ROLLOUT_ACTION_ALERT,    /* raise rollout-failed (reason) */
        ROLLOUT_ACTION_RESOLVE,  /* resolve rollout-failed */
        ROLLOUT_ACTION_FINISHED, /* event: rollout done */
        _ROLLOUT_ACTION_MAX,
} RolloutActionKind;

typedef struct RolloutAction {
        RolloutActionKind kind;
        uint32_t instance;
} RolloutAction;

/* New rollout over instances 0…n-1 of a service, RUNNING, every item PENDING.
 * -EINVAL unless: service is a valid service name ("gateway", no "@"),
 * 1 ≤ n_instances ≤ ROLLOUT_ITEMS_MAX, max_unavailable ≥ 1, and
 * healthy_for < health_timeout (an instance must be able to settle before it
 * times out; USEC_INFINITY = no timeout). */
int rollout_new(const char *service, uint64_t id, uint32_t n_instances, uint32_t max_unavailable,
                usec_t healthy_for, usec_t health_timeout, Rollout **ret);
Rollout *rollout_free(Rollout *r);
/* A deep copy. -ENOMEM. */
int rollout_copy(const Rollout *r, Rollout **ret);
DEFINE_TRIVIAL_CLEANUP_FUNC(Rollout *, rollout_free)

/* Advances the rollout at `now` with the observed health of every instance
 * and writes the actions to carry out (at most n_instances + 2) into ret,
 * returning how many. Rules:
 *  - RESTARTING becomes SETTLING when restarted_since_issue && healthy,
 *    SETTLING becomes DONE after HealthyFor of continuous health (it drops
 *    back to RESTARTING if health is lost while settling);
 *  - an item RESTARTING or SETTLING for longer than HealthTimeout since
 *    started_at becomes FAILED: the rollout becomes FAILED (paused) with an
 *    ALERT;
 *  - while RUNNING, PENDING items are restarted in order as long as
 *    (items RESTARTING or SETTLING) + (unhealthy instances that are not in
 *    the rollout's hands) < max_unavailable, and at most `may_start` of them
 *    in this step (what the caller's start gate allows now; UINT32_MAX for
 *    no limit); each gets started_at = now and a RESTART action — exactly
 *    once per item unless a resume retries a FAILED one;
 *  - when every item is DONE the rollout is DONE with a FINISHED action.
 * Never restarts an instance whose item is not PENDING (or FAILED on resume):
 * replaying the same step after a crash issues nothing new.
 * Details:
 *  - health may come in any order; an item with no entry is unhealthy (unknown
 *    counts as down); entries for instances outside the rollout count only
 *    towards the unhealthy ones;
 *  - a PENDING item that is itself unhealthy may be restarted without using
 *    up more of MaxUnavailable (it is down already): the test is
 *    (items RESTARTING or SETTLING) + 1 + (other unhealthy instances)
 *    ≤ max_unavailable, "other" not counting the item itself;
 *  - PENDING items are tried in order, and one that does not fit does not
 *    block a later one that does;
 *  - items in flight are still tracked while PAUSED or FAILED (a timeout while
 *    PAUSED makes the rollout FAILED); DONE and ABORTED rollouts are frozen;
 *  - ALERT is issued while the rollout is FAILED and !alert_raised, RESOLVE
 *    while it is not FAILED (resumed, aborted) and alert_raised: at most one of
 *    them per step, never twice for one failure;
 *  - if `max` is too small, the actions that do not fit are not taken (no item
 *    leaves PENDING without its RESTART in ret, DONE waits for room for
 *    FINISHED) and a later step takes them;
 *  - on allocation failure nothing changes and 0 is returned. */
size_t rollout_step(Rollout *r, const InstanceHealth *health, size_t n_health, usec_t now,
                    uint32_t may_start, RolloutAction *ret, size_t max);

/* Operator controls. pause: RUNNING → PAUSED. resume: PAUSED or FAILED →
 * RUNNING (FAILED items go back to PENDING and a RESOLVE action is due on the
 * next step). abort: anything but DONE (or ABORTED) → ABORTED; an ALERT still
 * raised is resolved by the next step. -EBUSY if not allowed in the current
 * state, -ENOMEM, with nothing changed either way. reason NULL gives a default
 * ("paused by operator", "aborted by operator"). */
int rollout_pause(Rollout *r, const char *reason);
int rollout_resume(Rollout *r);
int rollout_abort(Rollout *r, const char *reason);

/* Serialization for the store: a compact single-line text, strict parse.
 *
 *   baton-rollout/1 service=gateway id=42 state=running max_unavailable=1
 *   healthy_for=10000000 health_timeout=900000000 alert=0 items=3
 *   0:done:1000:2000:1 1:restarting:3000:0:1 2:pending:0:0:0 reason=-
 *
 * (one line; times in µs; items are instance:state:started_at:healthy_since:
 * attempts; reason is "-" for none, else a double-quoted string where \\, \",
 * \n, \t, \r and \xHH (lower case) escape everything outside printable ASCII).
 * Fields come in this order, separated by one space, nothing before or after;
 * numbers without leading zeros; every rollout has exactly one spelling, and
 * any proper prefix of a valid text is invalid. rollout_parse() also refuses
 * states the machine cannot reach (e.g. DONE with an item not DONE, attempts
 * 0 on a restarted item, more items in flight than max_unavailable, instances
 * not increasing). -EINVAL with *ret_error (if not NULL) = "column N: what is
 * wrong" (printable ASCII), or -ENOMEM. */
int rollout_format(const Rollout *r, char **ret);
int rollout_parse(const char *text, Rollout **ret, char **ret_error);

/* The id of the Restart command for the current attempt of `instance`:
 * "rollout/<service>/<id>/<instance>/<attempt>". The same after a crash, so a
 * shell that re-sends the command for a RESTARTING item gets it executed at
 * most once by the agent. -ENOENT if the instance is not in the rollout or
 * was never restarted, -ENOMEM. */
int rollout_restart_id(const Rollout *r, uint32_t instance, char **ret);
