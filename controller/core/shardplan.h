/* SPDX-License-Identifier: MIT */
/* Shard assignment and resharding of a sharded service (docs/DESIGN.md §6), as
 * pure data and a pure state machine; the controller persists and carries
 * out. Pure.
 *
 * Each instance i of a sharded service runs as one unit, its *copy*, in one
 * of two unit slots: slot 0 is "name@<i>.service", slot 1 "name@<i>b.service".
 * A reshard is blue/green per instance: the instance's new copy starts in the
 * other slot with its new shard set and becomes ready while the old (live)
 * copy still serves; only then is the live copy retired. So no shard is ever
 * without a ready owner, and a shard owned by both copies (or by an old and a
 * new owner) is a *handoff*, bounded by the steps below.
 *
 *  - Same total (`--instances N`): the target is balanced with as few shards
 *    moving owner as possible; only instances whose set changes get a new
 *    copy; instances that gain shards go first, then the ones that lose
 *    shards; a live copy is retired once its new copy is ready and every
 *    shard it gives away is ready at its new owner. The epoch stays.
 *  - New total (`--shards S`): every instance of the new layout gets a new
 *    copy under epoch + 1; all of them come up while the old set serves;
 *    then one CUTOVER retires the whole old set at once.
 *
 * Starts go through a caller-supplied gate (budget.h's StartGate), so the
 * identify rate is never exceeded. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "rangelist.h"

/* ---- layout: who owns what at rest --------------------------------------- */

typedef struct ShardLayout {
        uint64_t epoch;       /* ≥ 1 */
        uint32_t shard_count; /* the total, ≥ 1 */
        uint32_t n_instances; /* ≥ 1 */
        uint8_t *slots;       /* per instance: 0 or 1 */
        RangeList *sets;      /* per instance: a partition of 0…shard_count-1 */
} ShardLayout;

void shard_layout_done(ShardLayout *l);
/* A deep copy into *dst, which is overwritten, not freed first (like a ret
 * parameter: untouched on -ENOMEM). */
int shard_layout_copy(ShardLayout *dst, const ShardLayout *src);

/* The initial layout: epoch 1, every slot 0, instance i owns the contiguous
 * [i*S/N, (i+1)*S/N) (the same as service_default_shards()). -EINVAL for
 * N = 0, S = 0, S ≥ RANGELIST_MAX_SHARD or N > S; -ENOMEM. */
int shard_layout_default(uint32_t shards, uint32_t n_instances, ShardLayout *ret);

/* Text for the store, one line:
 *   baton-shards/1 epoch=1 count=96 instances=6 0:0:0-15 1:0:16-31 … 5:1:80-95
 * (per instance "i:slot:rangelist", i in order from 0). Strict parse: one
 * spelling per layout, the sets a partition of the total, every set non-empty.
 * -EINVAL with *ret_error = "column N: what", or -ENOMEM. */
int shard_layout_format(const ShardLayout *l, char **ret);
int shard_layout_parse(const char *text, ShardLayout *ret, char **ret_error);

/* "gateway", 3, 1 → "gateway@3b.service"; slot 0 → "gateway@3.service".
 * -EINVAL for slot > 1; -ENOMEM. */
int shard_copy_unit(const char *service, uint32_t instance, uint8_t slot, char **ret);
/* The inverse: "gateway@3b.service" → instance 3, slot 1 (for `service`
 * "gateway"). -EINVAL when `unit` is not a copy of `service`. Instances have
 * no leading zeros ("gateway@03.service" is not a copy). */
int shard_copy_parse(const char *service, const char *unit, uint32_t *ret_instance,
                     uint8_t *ret_slot);

/* Same total, n_to instances: the target sets (n_to of them, into ret[0…n_to),
 * each initialised by the callee; the caller frees each with rangelist_done()):
 *  - balanced: sizes differ by at most one (every set non-empty: -EINVAL if
 *    n_to = 0 or n_to > shard_count);
 *  - minimal movement: the number of shards whose owner changes is the least
 *    possible among balanced targets (instances ≥ n_to lose all their shards);
 *  - every instance only keeps or loses shards, or only keeps or gains:
 *    ret[i] ⊆ sets[i] or ret[i] ⊇ sets[i] (instances ≥ old n_instances start
 *    empty and gain);
 *  - deterministic; an instance keeps its lowest shards when it loses some,
 *    and gained shards go to the lowest instance with room first.
 * With n_to equal to the current count and a balanced layout, nothing moves. */
int shard_rebalance(const ShardLayout *from, uint32_t n_to, RangeList *ret);

/* ---- the reshard state machine ------------------------------------------- */

typedef enum ReshardState {
        RESHARD_RUNNING,
        RESHARD_PAUSED, /* by an operator */
        RESHARD_FAILED, /* a new copy was not ready by HealthTimeout: paused, alert */
        RESHARD_DONE,
        RESHARD_ABORTED, /* new copies discarded; the old layout serves */
        _RESHARD_STATE_MAX,
        _RESHARD_STATE_INVALID = -EINVAL,
} ReshardState;

typedef enum ReshardItemState {
        RITEM_PENDING,  /* new copy not started */
        RITEM_STARTING, /* new copy started (started_at), not ready yet */
        RITEM_READY,    /* new copy ready since ready_at; live copy still there */
        RITEM_DONE,     /* live copy retired (or there was none): the new one is live */
        RITEM_FAILED,   /* new copy not ready by HealthTimeout */
        _RITEM_STATE_MAX,
        _RITEM_STATE_INVALID = -EINVAL,
} ReshardItemState;

const char *reshard_state_to_string(ReshardState s) _pure_;
ReshardState reshard_state_from_string(const char *s) _pure_;
const char *reshard_item_state_to_string(ReshardItemState s) _pure_;
ReshardItemState reshard_item_state_from_string(const char *s) _pure_;

/* One instance whose copy changes. An instance that goes away (its `to` is
 * empty) has no new copy: it goes PENDING → DONE when its live copy is
 * retired. A new instance (its `from` is empty) has no live copy. */
typedef struct ReshardItem {
        uint32_t instance;
        ReshardItemState state;
        RangeList from; /* live copy's set (empty: none) */
        RangeList to;   /* new copy's set (empty: none) */
        uint8_t from_slot;
        uint8_t to_slot; /* 1 - from_slot; 0 for a new instance */
        usec_t started_at;
        usec_t ready_at;
        /* A replace's move (reshard_replace_move()): the live copy runs on
         * this host, not on the instance's, until it is retired; owned.
         * NULL: both copies on the instance's host. */
        char *from_host;
} ReshardItem;

typedef struct Reshard {
        char *service;
        uint64_t id;
        ReshardState state;
        uint64_t from_epoch;
        uint64_t to_epoch;             /* from_epoch (same total) or from_epoch + 1 (new total) */
        uint32_t from_count, to_count; /* shard totals */
        uint32_t from_instances, to_instances; /* instance counts */
        uint32_t max_starting;                 /* new copies STARTING at once (MaxUnavailable) */
        usec_t health_timeout;
        ReshardItem *items; /* in the order they are carried out (see reshard_new) */
        size_t n_items;
        char *reason; /* why paused/failed/aborted, NULL otherwise */
        bool alert_raised;
        /* A make-before-break restart (reshard_replace()): every item's new
         * copy owns its live copy's set; nothing moves between instances. */
        bool replace;
        /* ShardChange=reload (reshard_make_reload()): a changed instance
         * keeps its copy, which takes its new set in place (a reload): a
         * gainer identifies only what it gains, through the gate; a loser
         * drops what it gives away once the gainers are ready. */
        bool reload;
} Reshard;

/* What a reshard does, in lower case: "reshard" (the layout changes),
 * "restart" (each copy replaced by one beside it) or "move" (each copy
 * replaced by one on another host: a drain's). */
const char *reshard_kind(const Reshard *r) _pure_;

/* Plans a reshard of `from` (the live layout) to n_to instances and a total
 * of to_count shards. to_count == from->shard_count: same total
 * (shard_rebalance()), items only for instances whose set changes, gainers
 * (and new instances) first in instance order, then losers (and instances
 * going away) in instance order; -EALREADY when nothing would change. Else
 * new total under from->epoch + 1: to = shard_layout_default(to_count, n_to),
 * an item for every instance below max(old, new count), in instance order.
 * -EINVAL: service not a valid service name, n_to = 0, to_count = 0,
 * n_to > to_count, to_count ≥ RANGELIST_MAX_SHARD, max_starting = 0,
 * health_timeout = 0; -ENOMEM. RUNNING, every item PENDING. */
int reshard_new(const char *service, uint64_t id, const ShardLayout *from, uint32_t n_to,
                uint32_t to_count, uint32_t max_starting, usec_t health_timeout, Reshard **ret);
/* A make-before-break restart of instance `instance` of `from` (UINT32_MAX:
 * every instance, in instance order): each gets an item whose new copy, in
 * the other slot, owns the same set under the same epoch, and its live copy
 * is retired once the new one is ready — so a restart or an update of the
 * unit never leaves a shard without a ready owner. `replace` is set.
 * -EINVAL for an invalid service, an instance beyond the layout,
 * max_starting = 0 or health_timeout = 0; -ENOMEM. */
/* Turns a fresh same-total reshard (every item pending) into a live one
 * (Reshard.reload): each instance with a live copy keeps its slot. -EINVAL
 * for a new total, a replace or one under way. */
int reshard_make_reload(Reshard *r);

/* Spreads what each gainer of a fresh same-total reshard gains over the
 * `concurrency` identify buckets (shard s is in bucket s % concurrency),
 * so that its starts identify in parallel: a gained shard in a bucket the
 * gainer has more of than its share is swapped with a shard its loser
 * keeps in a bucket it has less of. Every instance still only gains or only
 * loses, the same number of shards move. Nothing changes on -ENOMEM;
 * -EINVAL for a reshard under way, a new total or a replace. */
int reshard_spread_gains(Reshard *r, uint32_t concurrency);

/* The shards item `it` identifies when it starts: its new set, or for a
 * live reshard what it gains (its new set less its old one). */
int reshard_item_identifies(const Reshard *r, const ReshardItem *it, RangeList *ret);

int reshard_replace(const char *service, uint64_t id, const ShardLayout *from, uint32_t instance,
                    uint32_t max_starting, usec_t health_timeout, Reshard **ret);
/* Adds to replace `r` (or makes, *r NULL) an item moving instance
 * `instance` of `layout`: its live copy stays on `from_host` while the new
 * copy, in the other slot with the same shards, starts at the instance's
 * new host; the live copy is retired once the new one is ready. Items stay
 * in instance order. -EEXIST when the instance has an item already;
 * -EINVAL for an instance beyond the layout, an invalid host, a `r` that is
 * not a running replace; -ENOMEM. */
int reshard_replace_move(Reshard **r, const char *service, uint64_t id, const ShardLayout *layout,
                         uint32_t instance, const char *from_host, uint32_t max_starting,
                         usec_t health_timeout);
/* A host id as items carry it: [A-Za-z0-9_-], at most 253 characters. */
bool reshard_host_is_valid(const char *host) _pure_;
Reshard *reshard_free(Reshard *r);
/* A deep copy. -ENOMEM. */
int reshard_copy(const Reshard *r, Reshard **ret);
DEFINE_TRIVIAL_CLEANUP_FUNC(Reshard *, reshard_free)

/* Observed state of one item's copies. new_ready: the new copy's unit is
 * active and every shard of `to` reports ready under to_epoch. */
typedef struct ReshardObserved {
        uint32_t instance;
        bool new_ready;
} ReshardObserved;

typedef enum ReshardActionKind {
        RESHARD_ACTION_START,   /* start the new copy of instance (gate already taken) */
        RESHARD_ACTION_RETIRE,  /* stop and remove the live copy of instance */
        RESHARD_ACTION_DISCARD, /* abort: stop and remove the new copy of instance */
        RESHARD_ACTION_CUTOVER, /* new total: every live copy is retired at once, the
                                   new epoch serves (no RETIRE actions for them) */
        RESHARD_ACTION_ALERT,   /* raise rollout-failed for the reshard (reason) */
        RESHARD_ACTION_RESOLVE,
        RESHARD_ACTION_FINISHED,
        _RESHARD_ACTION_MAX,
} ReshardActionKind;

typedef struct ReshardAction {
        ReshardActionKind kind;
        uint32_t instance;
} ReshardAction;

/* Asked before each start, in item order: may instance `instance` start
 * identifying `shards` now (its new copy's set, or for a live reshard what
 * its copy gains)? Returning true means the caller has taken the gate for
 * it. */
typedef bool (*ReshardMayStart)(uint32_t instance, const RangeList *shards, void *userdata);

/* Advances the reshard at `now`; writes the actions to carry out (at most
 * 2 × n_items + 3) into ret and returns how many. Rules:
 *  - STARTING → READY when observed new_ready; STARTING for longer than
 *    health_timeout → FAILED, the reshard FAILED with an ALERT (the live
 *    copies keep serving);
 *  - while RUNNING: PENDING items with a non-empty `to` start in item order
 *    while fewer than max_starting are STARTING, each only if may_start()
 *    agrees (a refusal stops the scan for this step: starts keep their order);
 *    each gets started_at = now and a START action;
 *  - same total, while RUNNING or PAUSED or FAILED: a READY item, or a PENDING
 *    one with an empty `to`, is retired (RETIRE action if it has a live copy,
 *    → DONE) once every shard of its `from` that is not in its `to` is in the
 *    `to` of an item that is READY or DONE. A READY item with an empty `from`
 *    just becomes DONE;
 *  - new total: once every item with a non-empty `to` is READY, one CUTOVER
 *    action and every item becomes DONE;
 *  - every item DONE → DONE with FINISHED;
 *  - ALERT while FAILED and !alert_raised; RESOLVE while not FAILED and
 *    alert_raised (at most one of them per step);
 *  - replaying a step after a crash issues nothing twice: an action is only
 *    produced by a state change recorded in the Reshard;
 *  - on allocation failure nothing changes and 0 is returned.
 * `observed` may come in any order; a missing entry is not ready. */
size_t reshard_step(Reshard *r, const ReshardObserved *observed, size_t n_observed, usec_t now,
                    ReshardMayStart may_start, void *userdata, ReshardAction *ret, size_t max);

/* pause: RUNNING → PAUSED. resume: PAUSED or FAILED → RUNNING (FAILED items
 * back to PENDING, started_at 0). abort: only while no live copy has been
 * retired (no item DONE that had a live copy, no CUTOVER) — else -EBUSY —
 * → ABORTED with a DISCARD for every STARTING/READY/FAILED new copy returned
 * by the next step. -EBUSY when not allowed in the current state; -ENOMEM;
 * nothing changed on error. */
int reshard_pause(Reshard *r, const char *reason);
int reshard_resume(Reshard *r);
int reshard_abort(Reshard *r, const char *reason);

/* The layout once the reshard is DONE: n_to instances, epoch to_epoch, total
 * to_count, each instance in the slot of its new copy (or its old slot if it
 * did not change). -EINVAL unless r is DONE and `from` is the layout it was
 * planned from. */
int reshard_result(const Reshard *r, const ShardLayout *from, ShardLayout *ret);

/* Identifies a reshard spends (the sum of its new copies' sets), for the
 * budget check and for `plan`. */
uint64_t reshard_cost(const Reshard *r);

/* Serialization for the store, strict like rollout_format()/rollout_parse():
 *   baton-reshard/1 service=gateway id=3 [kind=replace] state=running from_epoch=1 to_epoch=1
 *   from_count=96 to_count=96 from_instances=6 to_instances=7 max_starting=1
 *   health_timeout=900000000 alert=0 items=N
 *   I:STATE:FROM:TO:FROMSLOT:TOSLOT:STARTED:READY[@FROMHOST] … reason=-
 * (one line; FROM/TO range lists, "-" for empty; reason "-" or a quoted
 * string escaped as in rollout.h; `kind=replace` only for a replace, whose
 * items must each keep their set, in instance order). Refuses states the
 * machine cannot reach. */
int reshard_format(const Reshard *r, char **ret);
int reshard_parse(const char *text, Reshard **ret, char **ret_error);
