/* SPDX-License-Identifier: MIT */
/* The external start budget of a sharded service (docs/DESIGN.md §6): every start
 * of an instance spends one identify per shard it owns. Two limits:
 *
 *  - the rate: shards in bucket `shard % IdentifyConcurrency` may identify one
 *    per IdentifyInterval, fleet-wide. The StartGate sequences starts so that
 *    no bucket is ever used by two starting instances at once, and a bucket is
 *    free again one interval after the instance that used it was seen ready;
 *  - the daily budget: DailyStartBudget identifies per sliding 24 h. The
 *    BudgetLedger counts what was spent (starts, restarts, crash restarts),
 *    refuses operations that would leave less than a reserve, and says when
 *    the budget runs low.
 *
 * Pure: time comes in as arguments (wall clock µs). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "rangelist.h"

#define BUDGET_WINDOW_USEC (24ULL * 3600 * USEC_PER_SEC)
/* The ledger counts per minute: at most this many slots (one day). */
#define BUDGET_SLOT_USEC (60ULL * USEC_PER_SEC)
#define BUDGET_SLOTS_MAX 1440U

/* ---- daily ledger -------------------------------------------------------- */

typedef struct BudgetSlot {
        uint64_t minute; /* time / BUDGET_SLOT_USEC */
        uint64_t spent;
} BudgetSlot;

typedef struct BudgetLedger {
        BudgetSlot *slots; /* increasing minute, no two equal, no zero spent */
        size_t n_slots;
} BudgetLedger;

void budget_ledger_init(BudgetLedger *l);
void budget_ledger_done(BudgetLedger *l);
/* A copy that budget_charge() may grow (the ledger keeps spare capacity). */
int budget_ledger_copy(const BudgetLedger *l, BudgetLedger *ret);

/* Records `identifies` spent at `now` and drops slots older than the window.
 * A charge older than the newest slot (a clock step back) is counted in the
 * newest slot. Sums saturate at UINT64_MAX. -ENOMEM leaves l unchanged. */
int budget_charge(BudgetLedger *l, usec_t now, uint64_t identifies);

/* Identifies spent within the 24 h before `now`: slots whose minute is
 * > (now - BUDGET_WINDOW_USEC) / BUDGET_SLOT_USEC. Slots in the future of
 * `now` (a clock step back) count too: spending is never forgotten early. */
uint64_t budget_spent(const BudgetLedger *l, usec_t now);

/* Text for the store: "baton-budget/1" then " MINUTE:SPENT" per slot, in
 * order (no leading zeros). budget_ledger_parse() is strict (one spelling per
 * ledger, slots increasing, spent > 0, at most BUDGET_SLOTS_MAX slots):
 * -EINVAL with *ret_error = "column N: what", or -ENOMEM. */
int budget_ledger_format(const BudgetLedger *l, char **ret);
int budget_ledger_parse(const char *text, BudgetLedger *ret, char **ret_error);

/* The verdict on spending `cost` more identifies. `limit` 0 = unlimited
 * (always allowed, remaining = UINT64_MAX). Otherwise allowed when
 * spent + cost + reserve ≤ limit (no overflow); remaining_after =
 * limit - spent - cost, or 0 when that is negative. */
typedef struct BudgetVerdict {
        bool allowed;
        uint64_t limit;
        uint64_t spent;
        uint64_t cost;
        uint64_t reserve;
        uint64_t remaining_after;
} BudgetVerdict;

BudgetVerdict budget_check(uint64_t limit, uint64_t reserve, uint64_t spent, uint64_t cost);

/* The reserve an operation must leave: the identifies of one full start of
 * the service (shards), capped at limit / 2 so that a tiny budget stays usable. */
uint64_t budget_reserve(uint64_t limit, uint32_t shards);

/* The budget is low when limit > 0 and the remaining budget
 * (limit - spent, 0 if negative) is below max(2 × reserve, limit / 10).
 * It is no longer low only once the remaining budget is at least that
 * threshold plus limit / 20 (hysteresis, so an alert does not flap). `was_low`
 * is the previous answer. */
bool budget_low(uint64_t limit, uint64_t reserve, uint64_t spent, bool was_low);

/* ---- rate: the start gate ------------------------------------------------ */

typedef struct StartGate {
        uint32_t concurrency; /* buckets: IdentifyConcurrency ≥ 1 */
        usec_t interval;      /* IdentifyInterval > 0 */
        /* Per bucket: held by a starting instance (not yet seen ready), and
         * otherwise the time from which a new start may use it. */
        bool *held;
        usec_t *free_at;
} StartGate;

/* -EINVAL for concurrency 0 or > 65536 or interval 0; -ENOMEM. Every bucket
 * free from `now`. */
int start_gate_init(StartGate *g, uint32_t concurrency, usec_t interval, usec_t now);
void start_gate_done(StartGate *g);
/* A deep copy into *dst (overwritten, not freed first). -ENOMEM. */
int start_gate_copy(StartGate *dst, const StartGate *src);

/* Whether an instance owning `shards` may start at `now`: every bucket one of
 * its shards falls in is not held and free_at ≤ now. An empty set may always
 * start (it identifies nothing). */
bool start_gate_may_start(const StartGate *g, const RangeList *shards, usec_t now);

/* The start happened (call only when may_start said yes): its buckets are
 * held until start_gate_release(). */
void start_gate_take(StartGate *g, const RangeList *shards);

/* The instance that took `shards` is ready (or failed, or was stopped) at
 * `now`: its buckets are no longer held and free from now + interval. Each
 * identify happens before readiness is reported, so a start after that is at
 * least one interval after the last identify in each bucket. Releasing a set
 * that was not taken only pushes free_at (harmless). */
void start_gate_release(StartGate *g, const RangeList *shards, usec_t now);

/* How long starting `n` instances one after another through the gate takes,
 * from the first start until the last is ready, assuming each instance
 * identifies the shards it owns in each bucket one per interval (so it is
 * ready `max over buckets of (shards in the bucket) × interval` after its
 * start) and the gate admits instances in the order given as soon as their
 * buckets are free (an instance whose buckets are disjoint from the ones in
 * use starts at once). For `plan`: the estimated duration of an operation.
 * Also sums the identifies (shards over all instances) into *ret_identifies.
 * -EINVAL for bad gate parameters, -ENOMEM. */
int start_gate_estimate(uint32_t concurrency, usec_t interval, const RangeList *const *sets,
                        size_t n, usec_t *ret_duration, uint64_t *ret_identifies);
