/* SPDX-License-Identifier: MIT */
/* The external start budget: the per-minute ledger of identifies spent in the
 * last 24 h with its store text, the verdicts and the low-budget alert built
 * on it, and the start gate that keeps each identify bucket to one starting
 * instance per interval, with the duration estimate `plan` shows. Pure. */
#include "budget.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "textline.h"

#define BUDGET_TEXT_PREFIX "baton-budget/"
#define BUDGET_TEXT_VERSION BUDGET_TEXT_PREFIX "1"
#define BUDGET_MINUTE_MAX (UINT64_MAX / BUDGET_SLOT_USEC) /* the minute of the last usec_t */
#define START_GATE_CONCURRENCY_MAX 65536U

static uint64_t add_sat(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t mul_sat(uint64_t a, uint64_t b) {
        return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* ---- daily ledger -------------------------------------------------------- */

/* The struct has no capacity field, so the allocation follows the slot count:
 * at least slots_capacity(n_slots) slots are always allocated. Doubling keeps
 * a charge per minute from reallocating every minute; the cap keeps a full
 * day at exactly BUDGET_SLOTS_MAX slots. */
static size_t slots_capacity(size_t n) {
        size_t c = 8;

        if (n == 0)
                return 0;
        while (c < n)
                c *= 2;
        return MIN(c, (size_t) BUDGET_SLOTS_MAX);
}

static int slots_reserve(BudgetSlot **slots, size_t n, size_t need) {
        BudgetSlot *p;

        assert(need <= BUDGET_SLOTS_MAX);

        if (need <= slots_capacity(n))
                return 0;
        p = reallocarray(*slots, slots_capacity(need), sizeof(BudgetSlot));
        if (!p)
                return -ENOMEM;
        *slots = p;
        return 0;
}

/* The first slot still inside the window at `now`: slots at or before the
 * cutoff minute are out of it. Slots are sorted, so a binary search. */
static size_t first_in_window(const BudgetLedger *l, usec_t now) {
        size_t lo = 0, hi = l->n_slots;
        uint64_t cutoff;

        if (now < BUDGET_WINDOW_USEC)
                return 0; /* the window reaches before time 0: everything counts */
        cutoff = (now - BUDGET_WINDOW_USEC) / BUDGET_SLOT_USEC;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (l->slots[mid].minute <= cutoff)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

void budget_ledger_init(BudgetLedger *l) {
        assert(l);
        *l = (BudgetLedger){ 0 };
}

void budget_ledger_done(BudgetLedger *l) {
        assert(l);
        l->slots = mfree(l->slots);
        l->n_slots = 0;
}

int budget_ledger_copy(const BudgetLedger *l, BudgetLedger *ret) {
        BudgetLedger c = { 0 };
        int r;

        assert(l);
        assert(ret);

        r = slots_reserve(&c.slots, 0, l->n_slots);
        if (r < 0)
                return r;
        if (l->n_slots > 0)
                memcpy(c.slots, l->slots, l->n_slots * sizeof(BudgetSlot));
        c.n_slots = l->n_slots;
        *ret = c;
        return 0;
}

int budget_charge(BudgetLedger *l, usec_t now, uint64_t identifies) {
        uint64_t minute = now / BUDGET_SLOT_USEC;
        size_t first, kept;
        bool append;
        int r;

        assert(l);

        first = first_in_window(l, now);
        kept = l->n_slots - first;
        /* A charge in or before the newest minute goes to the newest slot: a
         * clock stepped back must neither reorder the ledger nor let the
         * charge expire before what was already spent. That slot is never
         * dropped here: its minute is at least now's, inside the window. */
        append = identifies > 0 && (kept == 0 || minute > l->slots[l->n_slots - 1].minute);

        /* Allocate before touching anything, for -ENOMEM to leave l as it was;
         * dropping first means the ledger never holds more than a day. */
        r = slots_reserve(&l->slots, l->n_slots, kept + append);
        if (r < 0)
                return r;

        if (first > 0) {
                memmove(l->slots, l->slots + first, kept * sizeof(BudgetSlot));
                l->n_slots = kept;
        }
        if (append)
                l->slots[l->n_slots++] = (BudgetSlot){ .minute = minute, .spent = identifies };
        else if (identifies > 0)
                l->slots[l->n_slots - 1].spent =
                        add_sat(l->slots[l->n_slots - 1].spent, identifies);
        return 0;
}

uint64_t budget_spent(const BudgetLedger *l, usec_t now) {
        uint64_t sum = 0;

        assert(l);

        for (size_t i = first_in_window(l, now); i < l->n_slots; i++)
                sum = add_sat(sum, l->slots[i].spent);
        return sum;
}

int budget_ledger_format(const BudgetLedger *l, char **ret) {
        TextLine t = { 0 };

        assert(l);
        assert(ret);

        textline_printf(&t, "%s", BUDGET_TEXT_VERSION);
        for (size_t i = 0; i < l->n_slots; i++)
                textline_printf(&t, " %" PRIu64 ":%" PRIu64, l->slots[i].minute, l->slots[i].spent);
        return textline_finish(&t, ret);
}

/* "baton-budget/1"; a later version gets a message saying so, not a syntax
 * error. */
static int parse_version(TextParser *ps) {
        size_t n = strlen(BUDGET_TEXT_PREFIX);

        if (startswith(ps->p, BUDGET_TEXT_PREFIX) &&
            (ps->p[n] != '1' || strspn(ps->p + n, "0123456789") != 1))
                return textline_fail(ps, "unsupported version (expected \"%s\")",
                                     BUDGET_TEXT_VERSION);
        return textline_expect(ps, BUDGET_TEXT_VERSION);
}

static int parse_ledger(TextParser *ps, BudgetLedger *l) {
        int k;

        k = parse_version(ps);
        if (k < 0)
                return k;

        while (*ps->p != '\0') {
                const char *slot_start, *spent_start;
                BudgetSlot s;

                if (*ps->p != ' ')
                        return textline_fail(ps, "expected \" \" or the end of the text");
                if (ps->p[1] == '\0')
                        return textline_fail(ps, "trailing space");
                ps->p++;
                slot_start = ps->p;
                if (l->n_slots >= BUDGET_SLOTS_MAX)
                        return textline_fail(ps, "more than %u slots", BUDGET_SLOTS_MAX);

                k = textline_parse_uint(ps, "minute", BUDGET_MINUTE_MAX, &s.minute);
                if (k < 0)
                        return k;
                if (*ps->p != ':')
                        return textline_fail(ps, "expected \":\" after the minute");
                ps->p++;
                spent_start = ps->p;
                k = textline_parse_uint(ps, "spent", UINT64_MAX, &s.spent);
                if (k < 0)
                        return k;
                if (s.spent == 0) {
                        ps->p = spent_start;
                        return textline_fail(ps, "spent must be positive");
                }
                if (l->n_slots > 0 && s.minute <= l->slots[l->n_slots - 1].minute) {
                        uint64_t prev = l->slots[l->n_slots - 1].minute;

                        ps->p = slot_start;
                        if (s.minute == prev)
                                return textline_fail(ps, "duplicate minute %" PRIu64, s.minute);
                        return textline_fail(ps, "minute %" PRIu64 " is before %" PRIu64, s.minute,
                                             prev);
                }

                if (slots_reserve(&l->slots, l->n_slots, l->n_slots + 1) < 0)
                        return textline_oom(ps);
                l->slots[l->n_slots++] = s;
        }
        return 0;
}

int budget_ledger_parse(const char *text, BudgetLedger *ret, char **ret_error) {
        TextParser ps = { .text = text, .p = text };
        BudgetLedger l = { 0 };
        int k;

        assert(text);
        assert(ret);

        k = parse_ledger(&ps, &l);
        k = textline_parse_finish(&ps, k, ret_error);
        if (k < 0) {
                budget_ledger_done(&l);
                return k;
        }
        *ret = l;
        return 0;
}

BudgetVerdict budget_check(uint64_t limit, uint64_t reserve, uint64_t spent, uint64_t cost) {
        BudgetVerdict v = {
                .limit = limit,
                .spent = spent,
                .cost = cost,
                .reserve = reserve,
        };

        if (limit == 0) {
                v.allowed = true;
                v.remaining_after = UINT64_MAX;
                return v;
        }
        /* Each subtraction only after checking it cannot wrap. */
        if (spent <= limit && cost <= limit - spent) {
                v.remaining_after = limit - spent - cost;
                v.allowed = reserve <= v.remaining_after;
        }
        return v;
}

uint64_t budget_reserve(uint64_t limit, uint32_t shards) {
        return MIN((uint64_t) shards, limit / 2);
}

bool budget_low(uint64_t limit, uint64_t reserve, uint64_t spent, bool was_low) {
        uint64_t remaining, margin;

        if (limit == 0)
                return false;
        remaining = spent < limit ? limit - spent : 0;
        margin = was_low ? limit / 20 : 0;
        if (remaining < limit / 10 + margin) /* at most 15% of limit: no overflow */
                return true;
        /* remaining < 2 × reserve + margin, exactly even where that does not
         * fit in 64 bits: x < 2r ⟺ x / 2 < r. */
        return remaining < margin || (remaining - margin) / 2 < reserve;
}

/* ---- rate: the start gate ------------------------------------------------ */

/* Calls fn on the bucket of every shard in `shards`, each bucket at least
 * once: a range visits at most `concurrency` buckets whatever its length. */
static void buckets_walk(uint32_t concurrency, const RangeList *shards,
                         void (*fn)(uint32_t bucket, void *userdata), void *userdata) {
        for (size_t i = 0; i < shards->n_ranges; i++) {
                uint64_t len = (uint64_t) shards->ranges[i].hi - shards->ranges[i].lo + 1;
                uint32_t b = shards->ranges[i].lo % concurrency;

                for (uint64_t k = MIN(len, (uint64_t) concurrency); k > 0; k--) {
                        fn(b, userdata);
                        b = b + 1 == concurrency ? 0 : b + 1;
                }
        }
}

int start_gate_init(StartGate *g, uint32_t concurrency, usec_t interval, usec_t now) {
        _cleanup_free_ bool *held = NULL;
        _cleanup_free_ usec_t *free_at = NULL;

        assert(g);

        if (concurrency == 0 || concurrency > START_GATE_CONCURRENCY_MAX || interval == 0)
                return -EINVAL;
        held = calloc(concurrency, sizeof(bool));
        free_at = malloc(concurrency * sizeof(usec_t)); /* at most 512 KiB */
        if (!held || !free_at)
                return -ENOMEM;
        for (uint32_t b = 0; b < concurrency; b++)
                free_at[b] = now;

        *g = (StartGate){
                .concurrency = concurrency,
                .interval = interval,
                .held = TAKE_PTR(held),
                .free_at = TAKE_PTR(free_at),
        };
        return 0;
}

int start_gate_copy(StartGate *dst, const StartGate *src) {
        bool *held = malloc(src->concurrency * sizeof(bool));
        usec_t *free_at = malloc(src->concurrency * sizeof(usec_t));

        if (!held || !free_at) {
                free(held);
                free(free_at);
                return -ENOMEM;
        }
        memcpy(held, src->held, src->concurrency * sizeof(bool));
        memcpy(free_at, src->free_at, src->concurrency * sizeof(usec_t));
        *dst = (StartGate){ .concurrency = src->concurrency,
                            .interval = src->interval,
                            .held = held,
                            .free_at = free_at };
        return 0;
}

void start_gate_done(StartGate *g) {
        assert(g);
        g->held = mfree(g->held);
        g->free_at = mfree(g->free_at);
}

typedef struct GateQuery {
        const StartGate *gate;
        usec_t now;
        bool ok;
} GateQuery;

static void bucket_check(uint32_t b, void *userdata) {
        GateQuery *q = userdata;

        if (q->gate->held[b] || q->gate->free_at[b] > q->now)
                q->ok = false;
}

bool start_gate_may_start(const StartGate *g, const RangeList *shards, usec_t now) {
        GateQuery q = { .gate = g, .now = now, .ok = true };

        assert(g);
        assert(shards);

        buckets_walk(g->concurrency, shards, bucket_check, &q);
        return q.ok;
}

static void bucket_take(uint32_t b, void *userdata) {
        StartGate *g = userdata;

        g->held[b] = true;
}

void start_gate_take(StartGate *g, const RangeList *shards) {
        assert(g);
        assert(shards);

        buckets_walk(g->concurrency, shards, bucket_take, g);
}

typedef struct GateRelease {
        StartGate *gate;
        usec_t free_at;
} GateRelease;

static void bucket_release(uint32_t b, void *userdata) {
        GateRelease *rel = userdata;

        rel->gate->held[b] = false;
        /* Never earlier than promised before: a release seen with a clock
         * stepped back, or twice, must not shorten the pause. */
        rel->gate->free_at[b] = MAX(rel->gate->free_at[b], rel->free_at);
}

void start_gate_release(StartGate *g, const RangeList *shards, usec_t now) {
        GateRelease rel = { .gate = g, .free_at = add_sat(now, g->interval) };

        assert(g);
        assert(shards);

        buckets_walk(g->concurrency, shards, bucket_release, &rel);
}

/* The estimate replays the gate without a StartGate: per bucket the time it
 * is free again, and for the instance being placed the number of its shards
 * in each bucket (`base` for every bucket plus `extra` for some). */
typedef struct Estimate {
        uint32_t concurrency;
        usec_t *free_at; /* effective value: MAX(floor, free_at[b]) */
        usec_t floor;    /* set by an instance using every bucket */
        usec_t max_free_at;
        uint64_t *extra;
        uint32_t *touched; /* buckets with extra > 0 */
        uint32_t n_touched;
} Estimate;

static usec_t estimate_free_at(const Estimate *e, uint32_t b) {
        return MAX(e->floor, e->free_at[b]);
}

/* Counts the shards of one range per bucket: every bucket gets len / C, and
 * the len % C buckets from lo's bucket on get one more. */
static void estimate_count_range(Estimate *e, uint32_t lo, uint32_t hi, uint64_t *base) {
        uint64_t len = (uint64_t) hi - lo + 1;
        uint32_t b = lo % e->concurrency;

        *base += len / e->concurrency;
        for (uint64_t k = len % e->concurrency; k > 0; k--) {
                if (e->extra[b]++ == 0)
                        e->touched[e->n_touched++] = b;
                b = b + 1 == e->concurrency ? 0 : b + 1;
        }
}

int start_gate_estimate(uint32_t concurrency, usec_t interval, const RangeList *const *sets,
                        size_t n, usec_t *ret_duration, uint64_t *ret_identifies) {
        _cleanup_free_ usec_t *free_at = NULL;
        _cleanup_free_ uint64_t *extra = NULL;
        _cleanup_free_ uint32_t *touched = NULL;
        usec_t start = 0, end = 0;
        uint64_t identifies = 0;
        Estimate e;

        assert(sets || n == 0);

        if (concurrency == 0 || concurrency > START_GATE_CONCURRENCY_MAX || interval == 0)
                return -EINVAL;
        free_at = calloc(concurrency, sizeof(usec_t));
        extra = calloc(concurrency, sizeof(uint64_t));
        touched = calloc(concurrency, sizeof(uint32_t));
        if (!free_at || !extra || !touched)
                return -ENOMEM;
        e = (Estimate){
                .concurrency = concurrency,
                .free_at = free_at,
                .extra = extra,
                .touched = touched,
        };

        for (size_t i = 0; i < n; i++) {
                const RangeList *s = sets[i];
                uint64_t base = 0, max_extra = 0;
                usec_t ready, next_free;
                bool all;

                assert(s);

                e.n_touched = 0;
                for (size_t j = 0; j < s->n_ranges; j++)
                        estimate_count_range(&e, s->ranges[j].lo, s->ranges[j].hi, &base);
                identifies = add_sat(identifies, rangelist_count(s));
                all = base > 0;

                /* In order: never before the previous start, and once every
                 * bucket it identifies in is free. */
                if (all)
                        start = MAX(start, e.max_free_at);
                for (uint32_t k = 0; k < e.n_touched; k++) {
                        uint32_t b = e.touched[k];

                        start = MAX(start, estimate_free_at(&e, b));
                        max_extra = MAX(max_extra, e.extra[b]);
                }

                ready = add_sat(start, mul_sat(add_sat(base, max_extra), interval));
                end = MAX(end, ready);
                next_free = add_sat(ready, interval);
                if (all)
                        e.floor = MAX(e.floor, next_free);
                for (uint32_t k = 0; k < e.n_touched; k++) {
                        uint32_t b = e.touched[k];

                        e.free_at[b] = MAX(estimate_free_at(&e, b), next_free);
                        e.extra[b] = 0;
                }
                if (all || e.n_touched > 0)
                        e.max_free_at = MAX(e.max_free_at, next_free);
        }

        /* The first instance starts at 0, when every bucket is free. */
        if (ret_duration)
                *ret_duration = end;
        if (ret_identifies)
                *ret_identifies = identifies;
        return 0;
}
