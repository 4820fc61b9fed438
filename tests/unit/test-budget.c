/* SPDX-License-Identifier: MIT */
/* Tests of the start budget: the daily ledger against a brute-force model
 * through thousands of charges with clock steps, its store text, the verdict
 * arithmetic near UINT64_MAX and the low-budget hysteresis, and a simulator
 * that starts random fleets through the StartGate and checks the identify
 * rate, progress and the duration estimate. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "tap.h"

#define SEC(x) (USEC_PER_SEC * (usec_t) (x))
#define MINUTE(x) (BUDGET_SLOT_USEC * (usec_t) (x))
#define DAY BUDGET_WINDOW_USEC
/* A minute boundary in 2023, so that the window never reaches before 0. */
#define M0 UINT64_C(28333334)
#define T0 (M0 * BUDGET_SLOT_USEC)
#define MINUTE_MAX (UINT64_MAX / BUDGET_SLOT_USEC)

__extension__ typedef unsigned __int128 u128;

/* splitmix64: small, seedable, good enough to generate test worlds. */
static uint64_t rnd(uint64_t *s) {
        uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n) {
        return n == 0 ? 0 : rnd(s) % n;
}

static uint64_t between(uint64_t *s, uint64_t lo, uint64_t hi) {
        if (lo == 0 && hi == UINT64_MAX)
                return rnd(s);
        return lo + below(s, hi - lo + 1);
}

static bool one_in(uint64_t *s, unsigned n) {
        return below(s, n) == 0;
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* What every ledger must look like between calls. */
static void check_ledger(const BudgetLedger *l) {
        ASSERT_LE_UINT(l->n_slots, BUDGET_SLOTS_MAX);
        if (l->n_slots > 0)
                ASSERT_NOT_NULL(l->slots);
        for (size_t i = 0; i < l->n_slots; i++) {
                ASSERT_GE_UINT(l->slots[i].spent, 1);
                ASSERT_LE_UINT(l->slots[i].minute, MINUTE_MAX);
                if (i > 0)
                        ASSERT_TRUE(l->slots[i - 1].minute < l->slots[i].minute);
        }
        /* The allocation itself never holds more than one slot beyond a day. */
        if (l->slots)
                ASSERT_LE_UINT(malloc_usable_size(l->slots),
                               (BUDGET_SLOTS_MAX + 1) * sizeof(BudgetSlot));
}

static void charge(BudgetLedger *l, usec_t now, uint64_t n) {
        ASSERT_OK(budget_charge(l, now, n));
        check_ledger(l);
}

/* ---- ledger: hand-written cases ------------------------------------------ */

TEST(ledger_empty) {
        BudgetLedger l;

        budget_ledger_init(&l);
        ASSERT_EQ_UINT(budget_spent(&l, T0), 0);
        ASSERT_EQ_UINT(budget_spent(&l, 0), 0);
        charge(&l, T0, 0);
        ASSERT_EQ_UINT(l.n_slots, 0);
        ASSERT_EQ_UINT(budget_spent(&l, T0), 0);
        budget_ledger_done(&l);
        ASSERT_NULL(l.slots);
        ASSERT_EQ_UINT(l.n_slots, 0);
        budget_ledger_done(&l); /* twice is fine */
}

TEST(ledger_minute_boundaries) {
        BudgetLedger l;

        budget_ledger_init(&l);
        charge(&l, T0, 3);
        charge(&l, T0 + SEC(59) + 999999, 4); /* last µs of the same minute */
        ASSERT_EQ_UINT(l.n_slots, 1);
        ASSERT_EQ_UINT(l.slots[0].minute, M0);
        ASSERT_EQ_UINT(l.slots[0].spent, 7);
        charge(&l, T0 + MINUTE(1), 5); /* first µs of the next one */
        ASSERT_EQ_UINT(l.n_slots, 2);
        ASSERT_EQ_UINT(l.slots[1].minute, M0 + 1);
        ASSERT_EQ_UINT(l.slots[1].spent, 5);
        charge(&l, T0 + MINUTE(1) + SEC(30), 0); /* zero adds no slot */
        ASSERT_EQ_UINT(l.n_slots, 2);
        charge(&l, T0 + MINUTE(10) - 1, 1);
        ASSERT_EQ_UINT(l.n_slots, 3);
        ASSERT_EQ_UINT(l.slots[2].minute, M0 + 9);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + MINUTE(10)), 13);
        /* Queries before the charges still count them. */
        ASSERT_EQ_UINT(budget_spent(&l, T0 - DAY), 13);
        budget_ledger_done(&l);
}

TEST(ledger_window_expiry_exactly_24h) {
        BudgetLedger l;

        budget_ledger_init(&l);
        charge(&l, T0, 10);                  /* minute M0, on its boundary */
        charge(&l, T0 + SEC(30), 1);         /* same minute */
        charge(&l, T0 + MINUTE(1) + 1, 100); /* minute M0 + 1 */
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY - 1), 111);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY), 100);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY + MINUTE(1) - 1), 100);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY + MINUTE(1)), 0);

        /* A charge drops what left the window. */
        charge(&l, T0 + DAY - 1, 1); /* minute M0 + 1439 */
        ASSERT_EQ_UINT(l.n_slots, 3);
        ASSERT_EQ_UINT(l.slots[0].minute, M0);
        ASSERT_EQ_UINT(l.slots[2].minute, M0 + 1439);
        charge(&l, T0 + DAY, 2); /* minute M0 + 1440 */
        ASSERT_EQ_UINT(l.n_slots, 3);
        ASSERT_EQ_UINT(l.slots[0].minute, M0 + 1);
        ASSERT_EQ_UINT(l.slots[1].minute, M0 + 1439);
        ASSERT_EQ_UINT(l.slots[2].minute, M0 + 1440);
        ASSERT_EQ_UINT(l.slots[2].spent, 2);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY), 103);
        /* A zero charge prunes too, down to nothing. */
        charge(&l, T0 + 3 * DAY, 0);
        ASSERT_EQ_UINT(l.n_slots, 0);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + 3 * DAY), 0);
        budget_ledger_done(&l);
}

TEST(ledger_near_time_zero) {
        BudgetLedger l;

        budget_ledger_init(&l);
        charge(&l, 0, 1);
        charge(&l, MINUTE(1), 2);
        ASSERT_EQ_UINT(l.slots[0].minute, 0);
        /* The window reaches before 0: everything counts. */
        ASSERT_EQ_UINT(budget_spent(&l, 0), 3);
        ASSERT_EQ_UINT(budget_spent(&l, DAY - 1), 3);
        ASSERT_EQ_UINT(budget_spent(&l, DAY), 2);
        ASSERT_EQ_UINT(budget_spent(&l, DAY + MINUTE(1)), 0);
        budget_ledger_done(&l);
}

TEST(ledger_clock_steps_back) {
        BudgetLedger l;

        budget_ledger_init(&l);
        charge(&l, T0 + MINUTE(60), 5);
        /* An hour back: counted in the newest slot, not before it. */
        charge(&l, T0, 7);
        ASSERT_EQ_UINT(l.n_slots, 1);
        ASSERT_EQ_UINT(l.slots[0].minute, M0 + 60);
        ASSERT_EQ_UINT(l.slots[0].spent, 12);
        /* From the stepped-back clock the future slot counts... */
        ASSERT_EQ_UINT(budget_spent(&l, T0), 12);
        ASSERT_EQ_UINT(budget_spent(&l, T0 - 2 * DAY), 12);
        /* ...and the charge expires with the slot it went to, not earlier. */
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY), 12);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY + MINUTE(60) - 1), 12);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY + MINUTE(60)), 0);

        /* A step back of days keeps everything too. */
        charge(&l, T0 + MINUTE(61), 1);
        charge(&l, T0 - 5 * DAY, 1);
        ASSERT_EQ_UINT(l.n_slots, 2);
        ASSERT_EQ_UINT(l.slots[1].minute, M0 + 61);
        ASSERT_EQ_UINT(l.slots[1].spent, 2);
        ASSERT_EQ_UINT(budget_spent(&l, T0 - 5 * DAY), 14);
        budget_ledger_done(&l);
}

TEST(ledger_step_back_after_everything_expired) {
        BudgetLedger l;

        budget_ledger_init(&l);
        charge(&l, T0, 4);
        charge(&l, T0 + 2 * DAY, 0); /* drops the old slot */
        ASSERT_EQ_UINT(l.n_slots, 0);
        /* Nothing newer is left, so the charge gets its own minute. */
        charge(&l, T0 + MINUTE(5), 3);
        ASSERT_EQ_UINT(l.n_slots, 1);
        ASSERT_EQ_UINT(l.slots[0].minute, M0 + 5);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + MINUTE(5)), 3);
        budget_ledger_done(&l);
}

TEST(ledger_saturates) {
        BudgetLedger l;

        budget_ledger_init(&l);
        charge(&l, T0, UINT64_MAX - 1);
        charge(&l, T0 + 1, 5);
        ASSERT_EQ_UINT(l.n_slots, 1);
        ASSERT_EQ_UINT(l.slots[0].spent, UINT64_MAX);
        charge(&l, T0 + 2, UINT64_MAX);
        ASSERT_EQ_UINT(l.slots[0].spent, UINT64_MAX);
        charge(&l, T0 + MINUTE(1), 1);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + MINUTE(1)), UINT64_MAX);
        /* The sum saturates across slots too. */
        budget_ledger_done(&l);
        charge(&l, T0, UINT64_MAX / 2 + 1);
        charge(&l, T0 + MINUTE(1), UINT64_MAX / 2 + 1);
        ASSERT_EQ_UINT(l.n_slots, 2);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + MINUTE(1)), UINT64_MAX);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY), UINT64_MAX / 2 + 1);
        budget_ledger_done(&l);
}

TEST(ledger_extreme_times) {
        BudgetLedger l;

        budget_ledger_init(&l);
        charge(&l, UINT64_MAX, 1);
        ASSERT_EQ_UINT(l.slots[0].minute, MINUTE_MAX);
        ASSERT_EQ_UINT(budget_spent(&l, UINT64_MAX), 1);
        ASSERT_EQ_UINT(budget_spent(&l, 0), 1);
        charge(&l, 0, 1); /* a step back to the epoch */
        ASSERT_EQ_UINT(l.n_slots, 1);
        ASSERT_EQ_UINT(l.slots[0].spent, 2);
        budget_ledger_done(&l);
}

TEST(ledger_at_most_a_day_of_slots) {
        BudgetLedger l;

        budget_ledger_init(&l);
        for (unsigned m = 0; m < 3 * 1440; m++) {
                charge(&l, T0 + MINUTE(m) + SEC(m % 60), 1 + m % 3);
                ASSERT_EQ_UINT(l.n_slots, MIN(m + 1, BUDGET_SLOTS_MAX));
                ASSERT_EQ_UINT(l.slots[l.n_slots - 1].minute, M0 + m);
        }
        /* Exactly the last day: 1440 minutes of 1 + m % 3, which sums to 2880. */
        ASSERT_EQ_UINT(l.slots[0].minute, M0 + 2 * 1440);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + MINUTE(3 * 1440 - 1)), 2880);
        /* Every minute of a full day, then one more after a step back. */
        charge(&l, T0, 1);
        ASSERT_EQ_UINT(l.n_slots, BUDGET_SLOTS_MAX);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + MINUTE(3 * 1440 - 1)), 2881);
        budget_ledger_done(&l);
}

/* ---- ledger: against a brute-force model --------------------------------- */

/* The model keeps every charge on its own with the minute it was counted in,
 * and answers by summing them all. */
typedef struct ModelCharge {
        uint64_t minute;
        uint64_t n;
} ModelCharge;

typedef struct Model {
        ModelCharge *c;
        size_t n, allocated;
} Model;

static bool in_window(uint64_t minute, usec_t now) {
        return now < DAY || minute > (now - DAY) / BUDGET_SLOT_USEC;
}

static void model_charge(Model *m, usec_t now, uint64_t n) {
        uint64_t minute = now / BUDGET_SLOT_USEC;
        size_t keep = 0;

        for (size_t i = 0; i < m->n; i++)
                if (in_window(m->c[i].minute, now))
                        m->c[keep++] = m->c[i];
        m->n = keep;
        if (n == 0)
                return;
        /* Never counted before the newest charge still remembered. */
        for (size_t i = 0; i < m->n; i++)
                minute = MAX(minute, m->c[i].minute);
        if (m->n == m->allocated) {
                m->allocated = m->allocated ? 2 * m->allocated : 64;
                m->c = realloc(m->c, m->allocated * sizeof(ModelCharge));
                ASSERT_NOT_NULL(m->c);
        }
        m->c[m->n++] = (ModelCharge){ .minute = minute, .n = n };
}

static uint64_t model_spent(const Model *m, usec_t now) {
        uint64_t sum = 0;

        for (size_t i = 0; i < m->n; i++)
                if (in_window(m->c[i].minute, now))
                        sum = sat_add(sum, m->c[i].n);
        return sum;
}

/* The ledger holds exactly the model's charges summed per minute. */
static void model_compare(const Model *m, const BudgetLedger *l) {
        size_t k = 0;

        for (size_t i = 0; i < m->n;) {
                uint64_t minute = m->c[i].minute, sum = 0;

                for (; i < m->n && m->c[i].minute == minute; i++)
                        sum = sat_add(sum, m->c[i].n);
                ASSERT_TRUE(k < l->n_slots);
                ASSERT_EQ_UINT(l->slots[k].minute, minute);
                ASSERT_EQ_UINT(l->slots[k].spent, sum);
                k++;
        }
        ASSERT_EQ_UINT(k, l->n_slots);
}

static usec_t next_time(uint64_t *seed, usec_t now, const Model *m) {
        switch (below(seed, 16)) {
        case 0: /* the clock steps back, by up to two days */
                return now - MIN(now, below(seed, 2 * DAY));
        case 1: /* a small step back */
                return now - MIN(now, below(seed, MINUTE(3)));
        case 2: /* exactly 24 h after a remembered charge's minute, or just before */
                if (m->n > 0) {
                        usec_t t = m->c[below(seed, m->n)].minute * BUDGET_SLOT_USEC + DAY;

                        return one_in(seed, 2) ? t : t - 1;
                }
                return now;
        case 3: /* the next minute boundary, or the µs before it */
                return (now / BUDGET_SLOT_USEC + 1) * BUDGET_SLOT_USEC - below(seed, 2);
        case 4: /* hours of silence */
                return now + between(seed, MINUTE(60), DAY + MINUTE(60));
        case 5:
                return now;
        default: /* busy: seconds to minutes */
                return now + below(seed, MINUTE(one_in(seed, 2) ? 1 : 15));
        }
}

static uint64_t next_amount(uint64_t *seed) {
        switch (below(seed, 40)) {
        case 0:
        case 1:
        case 2:
                return 0;
        case 3:
                return between(seed, UINT64_MAX / 4, UINT64_MAX);
        default:
                return between(seed, 1, one_in(seed, 4) ? 1000 : 16);
        }
}

TEST(ledger_matches_model) {
        unsigned ops = 0, expired = 0, stepped_back = 0;

        for (uint64_t run = 0; run < 4; run++) {
                uint64_t seed = 1000 + run;
                BudgetLedger l;
                Model m = { 0 };
                usec_t now = T0, prev = T0;

                budget_ledger_init(&l);
                for (unsigned op = 0; op < 3000; op++, ops++) {
                        uint64_t n = next_amount(&seed);
                        size_t before = m.n;

                        now = next_time(&seed, now, &m);
                        stepped_back += now < prev;
                        prev = now;
                        charge(&l, now, n);
                        model_charge(&m, now, n);
                        expired += m.n < before;
                        model_compare(&m, &l);
                        ASSERT_EQ_UINT(budget_spent(&l, now), model_spent(&m, now));
                        /* Right after a charge it is part of what was spent. */
                        ASSERT_GE_UINT(budget_spent(&l, now), n);

                        for (unsigned q = 0; q < 3; q++) {
                                usec_t t = next_time(&seed, now, &m);

                                ASSERT_EQ_UINT(budget_spent(&l, t), model_spent(&m, t));
                        }
                }
                budget_ledger_done(&l);
                free(m.c);
        }
        /* The walk did what it is for. */
        ASSERT_EQ_UINT(ops, 12000);
        ASSERT_GE_UINT(expired, 500);
        ASSERT_GE_UINT(stepped_back, 500);
}

/* ---- format / parse ------------------------------------------------------ */

static void assert_roundtrip(const BudgetLedger *l, const char *expect) {
        _cleanup_free_ char *text = NULL, *again = NULL, *error = NULL;
        BudgetLedger back;

        ASSERT_OK(budget_ledger_format(l, &text));
        if (expect)
                ASSERT_STREQ(text, expect);
        ASSERT_OK(budget_ledger_parse(text, &back, &error));
        ASSERT_NULL(error);
        check_ledger(&back);
        ASSERT_EQ_UINT(back.n_slots, l->n_slots);
        for (size_t i = 0; i < l->n_slots; i++) {
                ASSERT_EQ_UINT(back.slots[i].minute, l->slots[i].minute);
                ASSERT_EQ_UINT(back.slots[i].spent, l->slots[i].spent);
        }
        ASSERT_OK(budget_ledger_format(&back, &again));
        ASSERT_STREQ(again, text);
        budget_ledger_done(&back);
}

TEST(format_examples) {
        BudgetLedger l;

        budget_ledger_init(&l);
        assert_roundtrip(&l, "baton-budget/1");
        charge(&l, T0, 16);
        assert_roundtrip(&l, "baton-budget/1 28333334:16");
        charge(&l, T0 + MINUTE(1439), UINT64_MAX);
        assert_roundtrip(&l, "baton-budget/1 28333334:16 28334773:18446744073709551615");
        budget_ledger_done(&l);

        charge(&l, 0, 1);
        charge(&l, UINT64_MAX, 1);
        assert_roundtrip(&l, "baton-budget/1 307445734561:1");
        budget_ledger_done(&l);
}

TEST(format_parse_roundtrip_random) {
        uint64_t seed = 77;

        for (unsigned run = 0; run < 200; run++) {
                BudgetLedger l;
                Model m = { 0 };
                usec_t now = between(&seed, 0, T0);
                unsigned ops = (unsigned) below(&seed, run < 190 ? 60 : 2000);

                budget_ledger_init(&l);
                for (unsigned op = 0; op < ops; op++) {
                        now = next_time(&seed, now, &m);
                        charge(&l, now, next_amount(&seed));
                }
                assert_roundtrip(&l, NULL);
                budget_ledger_done(&l);
        }
}

TEST(parse_full_day_and_not_more) {
        _cleanup_free_ char *text = NULL, *error = NULL;
        BudgetLedger l;
        size_t len;

        budget_ledger_init(&l);
        for (unsigned m = 0; m < BUDGET_SLOTS_MAX; m++)
                charge(&l, T0 + MINUTE(m), 1);
        assert_roundtrip(&l, NULL);
        ASSERT_OK(budget_ledger_format(&l, &text));
        budget_ledger_done(&l);

        /* One more slot: refused where it starts. */
        len = strlen(text);
        text = realloc(text, len + 32);
        ASSERT_NOT_NULL(text);
        strcpy(text + len, " 28334774:1");
        ASSERT_ERR(budget_ledger_parse(text, &l, &error), -EINVAL);
        {
                char expect[64];

                snprintf(expect, sizeof(expect), "column %zu: more than 1440 slots", len + 2);
                ASSERT_STREQ(error, expect);
        }
}

TEST(parse_refusals) {
        static const struct {
                const char *text;
                const char *error;
        } cases[] = {
                { "", "column 1: expected \"baton-budget/1\"" },
                { " baton-budget/1", "column 1: expected \"baton-budget/1\"" },
                { "baton-budget", "column 1: expected \"baton-budget/1\"" },
                { "BATON-BUDGET/1", "column 1: expected \"baton-budget/1\"" },
                { "baton-budget/", "column 1: unsupported version (expected \"baton-budget/1\")" },
                { "baton-budget/2 1:1",
                  "column 1: unsupported version (expected \"baton-budget/1\")" },
                { "baton-budget/10",
                  "column 1: unsupported version (expected \"baton-budget/1\")" },
                { "baton-budget/01",
                  "column 1: unsupported version (expected \"baton-budget/1\")" },
                { "baton-budget/1x", "column 15: expected \" \" or the end of the text" },
                { "baton-budget/1\t1:1", "column 15: expected \" \" or the end of the text" },
                { "baton-budget/1 ", "column 15: trailing space" },
                { "baton-budget/1 5:3 ", "column 19: trailing space" },
                { "baton-budget/1  5:3", "column 16: minute: expected a number" },
                { "baton-budget/1 5:3\n", "column 19: expected \" \" or the end of the text" },
                { "baton-budget/1 5:3,6:1", "column 19: expected \" \" or the end of the text" },
                { "baton-budget/1 05:3", "column 16: minute: leading zero" },
                { "baton-budget/1 00:3", "column 16: minute: leading zero" },
                { "baton-budget/1 5:03", "column 18: spent: leading zero" },
                { "baton-budget/1 5:0", "column 18: spent must be positive" },
                { "baton-budget/1 5:00", "column 18: spent: leading zero" },
                { "baton-budget/1 +5:3", "column 16: minute: expected a number" },
                { "baton-budget/1 -5:3", "column 16: minute: expected a number" },
                { "baton-budget/1 5:-3", "column 18: spent: expected a number" },
                { "baton-budget/1 5", "column 17: expected \":\" after the minute" },
                { "baton-budget/1 5 3", "column 17: expected \":\" after the minute" },
                { "baton-budget/1 5:", "column 18: spent: expected a number" },
                { "baton-budget/1 :3", "column 16: minute: expected a number" },
                { "baton-budget/1 5:3:4", "column 19: expected \" \" or the end of the text" },
                { "baton-budget/1 5:3 4:1", "column 20: minute 4 is before 5" },
                { "baton-budget/1 5:3 6:1 5:1", "column 24: minute 5 is before 6" },
                { "baton-budget/1 5:3 5:1", "column 20: duplicate minute 5" },
                { "baton-budget/1 5:18446744073709551616",
                  "column 18: spent: out of range (at most 18446744073709551615)" },
                { "baton-budget/1 5:99999999999999999999999",
                  "column 18: spent: out of range (at most 18446744073709551615)" },
                { "baton-budget/1 307445734562:1",
                  "column 16: minute: out of range (at most 307445734561)" },
                { "baton-budget/1 18446744073709551615:1",
                  "column 16: minute: out of range (at most 307445734561)" },
                { "baton-budget/1 5:\xff", "column 18: spent: expected a number" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *error = NULL;
                BudgetLedger l = { .slots = (BudgetSlot *) &l, .n_slots = 4242 };

                ASSERT_ERR(budget_ledger_parse(cases[i].text, &l, &error), -EINVAL);
                ASSERT_STREQ(error, cases[i].error);
                /* ret is untouched on failure */
                ASSERT_TRUE(l.slots == (BudgetSlot *) &l);
                ASSERT_EQ_UINT(l.n_slots, 4242);
                /* ret_error is optional */
                ASSERT_ERR(budget_ledger_parse(cases[i].text, &l, NULL), -EINVAL);
        }
}

TEST(parse_accepts_the_extremes) {
        static const char *const good[] = {
                "baton-budget/1",
                "baton-budget/1 0:1",
                "baton-budget/1 307445734561:18446744073709551615",
                "baton-budget/1 0:1 1:1 307445734561:1",
                "baton-budget/1 10:1 100:20",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_free_ char *text = NULL;
                char *error = (char *) "untouched";
                BudgetLedger l;

                ASSERT_OK(budget_ledger_parse(good[i], &l, &error));
                ASSERT_STREQ(error, "untouched");
                check_ledger(&l);
                ASSERT_OK(budget_ledger_format(&l, &text));
                ASSERT_STREQ(text, good[i]);
                budget_ledger_done(&l);
        }
}

TEST(parsed_ledger_keeps_charging) {
        _cleanup_free_ char *error = NULL;
        BudgetLedger l;

        /* A ledger from the store spans more than the window: the first
         * charge drops what is out of it. */
        ASSERT_OK(
                budget_ledger_parse("baton-budget/1 28333334:5 28334000:6 28334773:7", &l, &error));
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY + MINUTE(1)), 13);
        charge(&l, T0 + DAY + MINUTE(666), 1);
        ASSERT_EQ_UINT(l.n_slots, 2);
        ASSERT_EQ_UINT(l.slots[0].minute, 28334773);
        ASSERT_EQ_UINT(budget_spent(&l, T0 + DAY + MINUTE(666)), 8);
        budget_ledger_done(&l);
}

/* ---- verdicts ------------------------------------------------------------ */

TEST(check_boundaries) {
        BudgetVerdict v;

        v = budget_check(100, 10, 80, 10);
        ASSERT_TRUE(v.allowed); /* 80 + 10 + 10 = 100 */
        ASSERT_EQ_UINT(v.limit, 100);
        ASSERT_EQ_UINT(v.spent, 80);
        ASSERT_EQ_UINT(v.cost, 10);
        ASSERT_EQ_UINT(v.reserve, 10);
        ASSERT_EQ_UINT(v.remaining_after, 10);

        v = budget_check(100, 10, 80, 11);
        ASSERT_FALSE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 9);
        v = budget_check(100, 11, 80, 10);
        ASSERT_FALSE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 10);
        v = budget_check(100, 0, 80, 20);
        ASSERT_TRUE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 0);
        v = budget_check(100, 0, 80, 21);
        ASSERT_FALSE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 0);
        v = budget_check(100, 0, 150, 0); /* already over */
        ASSERT_FALSE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 0);
        v = budget_check(100, 0, 100, 0);
        ASSERT_TRUE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 0);
        v = budget_check(100, 0, 100, 1);
        ASSERT_FALSE(v.allowed);
        v = budget_check(1, 0, 0, 1);
        ASSERT_TRUE(v.allowed);
        v = budget_check(1, 1, 0, 0);
        ASSERT_TRUE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 1);
}

TEST(check_limit_zero_is_unlimited) {
        BudgetVerdict v;

        v = budget_check(0, UINT64_MAX, UINT64_MAX, UINT64_MAX);
        ASSERT_TRUE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, UINT64_MAX);
        ASSERT_EQ_UINT(v.limit, 0);
        ASSERT_EQ_UINT(v.spent, UINT64_MAX);
        ASSERT_EQ_UINT(v.cost, UINT64_MAX);
        ASSERT_EQ_UINT(v.reserve, UINT64_MAX);
        v = budget_check(0, 0, 0, 0);
        ASSERT_TRUE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, UINT64_MAX);
}

TEST(check_near_uint64_max) {
        const uint64_t M = UINT64_MAX;
        BudgetVerdict v;

        v = budget_check(M, 0, M - 1, 1);
        ASSERT_TRUE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 0);
        v = budget_check(M, 1, M - 1, 1);
        ASSERT_FALSE(v.allowed);
        v = budget_check(M, 0, M, 0);
        ASSERT_TRUE(v.allowed);
        /* Each of these sums wraps in 64 bits to something small. */
        v = budget_check(M, 0, M / 2 + 1, M / 2 + 1);
        ASSERT_FALSE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 0);
        v = budget_check(1000, M, 1, 1);
        ASSERT_FALSE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 998);
        v = budget_check(1000, 2, M, 3);
        ASSERT_FALSE(v.allowed);
        v = budget_check(1000, 2, 3, M);
        ASSERT_FALSE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, 0);
        v = budget_check(M, M, 0, 0);
        ASSERT_TRUE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, M);
        v = budget_check(M, M, 0, 1);
        ASSERT_FALSE(v.allowed);
        ASSERT_EQ_UINT(v.remaining_after, M - 1);
}

static uint64_t interesting(uint64_t *seed) {
        switch (below(seed, 5)) {
        case 0:
                return below(seed, 20);
        case 1:
                return UINT64_MAX - below(seed, 20);
        case 2:
                return UINT64_MAX / 2 + below(seed, 3) - 1;
        case 3:
                return below(seed, 5000);
        default:
                return rnd(seed);
        }
}

TEST(check_and_low_against_wide_arithmetic) {
        uint64_t seed = 31337;
        unsigned allowed = 0, low = 0;

        for (unsigned i = 0; i < 100000; i++) {
                uint64_t limit = interesting(&seed), reserve = interesting(&seed),
                         spent = interesting(&seed), cost = interesting(&seed);
                bool was_low = one_in(&seed, 2);
                BudgetVerdict v = budget_check(limit, reserve, spent, cost);
                u128 sum = (u128) spent + cost + reserve, after;
                u128 remaining = spent < limit ? (u128) limit - spent : 0;
                u128 threshold = MAX((u128) 2 * reserve, (u128) (limit / 10));

                if (limit == 0) {
                        ASSERT_TRUE(v.allowed);
                        ASSERT_EQ_UINT(v.remaining_after, UINT64_MAX);
                        ASSERT_FALSE(budget_low(limit, reserve, spent, was_low));
                        continue;
                }
                ASSERT_EQ_INT(v.allowed, sum <= limit);
                after = (u128) spent + cost <= limit ? limit - ((u128) spent + cost) : 0;
                ASSERT_EQ_UINT(v.remaining_after, (uint64_t) after);
                allowed += v.allowed;

                if (was_low)
                        threshold += limit / 20;
                ASSERT_EQ_INT(budget_low(limit, reserve, spent, was_low), remaining < threshold);
                low += remaining < threshold;
        }
        ASSERT_GE_UINT(allowed, 1000);
        ASSERT_GE_UINT(low, 1000);
}

TEST(reserve_is_one_start_capped_at_half) {
        ASSERT_EQ_UINT(budget_reserve(1000, 16), 16);
        ASSERT_EQ_UINT(budget_reserve(1000, 500), 500);
        ASSERT_EQ_UINT(budget_reserve(1000, 501), 500);
        ASSERT_EQ_UINT(budget_reserve(10, 16), 5);
        ASSERT_EQ_UINT(budget_reserve(11, 16), 5);
        ASSERT_EQ_UINT(budget_reserve(1, 16), 0);
        ASSERT_EQ_UINT(budget_reserve(0, 16), 0);
        ASSERT_EQ_UINT(budget_reserve(1000, 0), 0);
        ASSERT_EQ_UINT(budget_reserve(UINT64_MAX, UINT32_MAX), UINT32_MAX);
        /* A tiny budget stays usable: one start of 16 shards fits in 20. */
        ASSERT_TRUE(budget_check(20, budget_reserve(20, 16), 0, 10).allowed);
        ASSERT_FALSE(budget_check(20, budget_reserve(20, 16), 0, 11).allowed);
}

TEST(low_thresholds) {
        /* limit 1000, reserve 16: low below max(32, 100) = 100, clear at 150 */
        ASSERT_FALSE(budget_low(1000, 16, 900, false));
        ASSERT_TRUE(budget_low(1000, 16, 901, false));
        ASSERT_TRUE(budget_low(1000, 16, 851, true));
        ASSERT_FALSE(budget_low(1000, 16, 850, true));
        ASSERT_TRUE(budget_low(1000, 16, 5000, false));
        ASSERT_TRUE(budget_low(1000, 16, UINT64_MAX, true));
        ASSERT_FALSE(budget_low(1000, 16, 0, true));
        /* reserve 80: low below 160, clear at 210 */
        ASSERT_FALSE(budget_low(1000, 80, 840, false));
        ASSERT_TRUE(budget_low(1000, 80, 841, false));
        ASSERT_TRUE(budget_low(1000, 80, 791, true));
        ASSERT_FALSE(budget_low(1000, 80, 790, true));
        /* tiny limits: limit / 10 and limit / 20 are 0 */
        ASSERT_FALSE(budget_low(5, 2, 1, false)); /* 4 left, threshold 4 */
        ASSERT_TRUE(budget_low(5, 2, 2, false));
        ASSERT_FALSE(budget_low(5, 2, 1, true));
        ASSERT_FALSE(budget_low(5, 0, 5, false)); /* threshold 0: never low */
        /* unlimited */
        ASSERT_FALSE(budget_low(0, 16, UINT64_MAX, false));
        ASSERT_FALSE(budget_low(0, 16, UINT64_MAX, true));
        /* thresholds beyond 64 bits are compared exactly, not saturated */
        ASSERT_TRUE(budget_low(UINT64_MAX, UINT64_MAX, 0, false));         /* 2^64 - 1 < 2^65 - 2 */
        ASSERT_TRUE(budget_low(UINT64_MAX, UINT64_MAX / 2 + 1, 0, false)); /* < 2^64 */
        ASSERT_FALSE(budget_low(UINT64_MAX, UINT64_MAX / 2, 0, false));    /* = 2^64 - 2 */
        ASSERT_TRUE(budget_low(UINT64_MAX, UINT64_MAX / 2, 2, false));
        ASSERT_TRUE(budget_low(UINT64_MAX, UINT64_MAX / 2, 0, true)); /* + limit / 20 */
        ASSERT_FALSE(budget_low(UINT64_MAX, UINT64_MAX / 2 - UINT64_MAX / 40, 0, true));
        ASSERT_TRUE(budget_low(UINT64_MAX, UINT64_MAX / 2 - UINT64_MAX / 40 + 1, 0, true));
}

TEST(low_does_not_flap) {
        const uint64_t limit = 1000, reserve = 16; /* raise below 100, clear at 150 */
        uint64_t seed = 5;
        unsigned transitions = 0;
        bool low = false;

        /* Jitter around the raise threshold: one alert, never resolved. */
        for (unsigned i = 0; i < 200; i++) {
                uint64_t remaining = 99 + i % 2;
                bool now_low = budget_low(limit, reserve, limit - remaining, low);

                transitions += now_low != low;
                low = now_low;
        }
        ASSERT_TRUE(low);
        ASSERT_EQ_UINT(transitions, 1);
        /* Jitter around the clear threshold: resolved once, not raised again. */
        for (unsigned i = 0; i < 200; i++) {
                uint64_t remaining = 150 - i % 2;
                bool now_low = budget_low(limit, reserve, limit - remaining, low);

                transitions += now_low != low;
                low = now_low;
        }
        ASSERT_FALSE(low);
        ASSERT_EQ_UINT(transitions, 2);

        /* A random walk: every change crosses the whole band. */
        transitions = 0;
        for (unsigned i = 0; i < 20000; i++) {
                uint64_t remaining = between(&seed, 60, 190);
                bool now_low = budget_low(limit, reserve, limit - remaining, low);

                if (now_low && !low)
                        ASSERT_LE_UINT(remaining, 99);
                if (!now_low && low)
                        ASSERT_GE_UINT(remaining, 150);
                if (now_low == low)
                        ASSERT_TRUE(low ? remaining < 150 : remaining >= 100);
                transitions += now_low != low;
                low = now_low;
        }
        ASSERT_GE_UINT(transitions, 100);
}

/* ---- start gate ---------------------------------------------------------- */

static void set_parse(RangeList *l, const char *s) {
        rangelist_init(l);
        ASSERT_OK(rangelist_parse(l, s));
}

TEST(gate_init_refusals) {
        StartGate g = { .concurrency = 7 };

        ASSERT_ERR(start_gate_init(&g, 0, SEC(5), T0), -EINVAL);
        ASSERT_ERR(start_gate_init(&g, 65537, SEC(5), T0), -EINVAL);
        ASSERT_ERR(start_gate_init(&g, UINT32_MAX, SEC(5), T0), -EINVAL);
        ASSERT_ERR(start_gate_init(&g, 1, 0, T0), -EINVAL);
        ASSERT_EQ_UINT(g.concurrency, 7); /* untouched */
        ASSERT_NULL(g.held);

        ASSERT_OK(start_gate_init(&g, 65536, 1, T0));
        ASSERT_EQ_UINT(g.concurrency, 65536);
        ASSERT_EQ_UINT(g.interval, 1);
        for (uint32_t b = 0; b < g.concurrency; b++) {
                ASSERT_FALSE(g.held[b]);
                ASSERT_EQ_UINT(g.free_at[b], T0);
        }
        start_gate_done(&g);
        ASSERT_NULL(g.held);
        ASSERT_NULL(g.free_at);
        ASSERT_OK(start_gate_init(&g, 1, UINT64_MAX, 0));
        start_gate_done(&g);

        {
                usec_t d = 1;
                uint64_t ids = 1;

                ASSERT_ERR(start_gate_estimate(0, SEC(5), NULL, 0, &d, &ids), -EINVAL);
                ASSERT_ERR(start_gate_estimate(65537, SEC(5), NULL, 0, &d, &ids), -EINVAL);
                ASSERT_ERR(start_gate_estimate(1, 0, NULL, 0, &d, &ids), -EINVAL);
                ASSERT_EQ_UINT(d, 1);
                ASSERT_EQ_UINT(ids, 1);
                ASSERT_OK(start_gate_estimate(1, SEC(5), NULL, 0, &d, &ids));
                ASSERT_EQ_UINT(d, 0);
                ASSERT_EQ_UINT(ids, 0);
        }
}

TEST(gate_buckets) {
        RangeList a, b, c, odd, empty, all;
        StartGate g;

        set_parse(&a, "0");         /* bucket 0 */
        set_parse(&b, "2");         /* bucket 0 too */
        set_parse(&c, "1");         /* bucket 1 */
        set_parse(&odd, "1,3,5,7"); /* non-contiguous, bucket 1 only */
        set_parse(&empty, "");
        set_parse(&all, "10-11"); /* both buckets */

        ASSERT_OK(start_gate_init(&g, 2, SEC(5), T0));
        ASSERT_TRUE(start_gate_may_start(&g, &a, T0));
        ASSERT_FALSE(start_gate_may_start(&g, &a, T0 - 1)); /* free from T0 */
        start_gate_take(&g, &a);
        ASSERT_FALSE(start_gate_may_start(&g, &a, T0));
        ASSERT_FALSE(start_gate_may_start(&g, &b, T0 + DAY)); /* held until released */
        ASSERT_FALSE(start_gate_may_start(&g, &all, T0));
        ASSERT_TRUE(start_gate_may_start(&g, &c, T0));
        ASSERT_TRUE(start_gate_may_start(&g, &odd, T0));
        ASSERT_TRUE(start_gate_may_start(&g, &empty, T0));
        start_gate_take(&g, &odd);
        ASSERT_FALSE(start_gate_may_start(&g, &c, T0));
        ASSERT_TRUE(start_gate_may_start(&g, &empty, T0)); /* identifies nothing */

        start_gate_release(&g, &a, T0 + SEC(20));
        ASSERT_FALSE(start_gate_may_start(&g, &b, T0 + SEC(20)));
        ASSERT_FALSE(start_gate_may_start(&g, &b, T0 + SEC(25) - 1));
        ASSERT_TRUE(start_gate_may_start(&g, &b, T0 + SEC(25)));
        ASSERT_FALSE(start_gate_may_start(&g, &all, T0 + SEC(25))); /* bucket 1 held */

        /* A release seen late, or twice with an older time, never shortens
         * the pause. */
        start_gate_release(&g, &odd, T0 + SEC(40));
        start_gate_release(&g, &odd, T0 + SEC(30));
        ASSERT_FALSE(start_gate_may_start(&g, &c, T0 + SEC(45) - 1));
        ASSERT_TRUE(start_gate_may_start(&g, &c, T0 + SEC(45)));
        ASSERT_TRUE(start_gate_may_start(&g, &all, T0 + SEC(45)));

        /* Releasing a set nobody took only pushes free_at. */
        start_gate_release(&g, &a, T0 + SEC(100));
        ASSERT_TRUE(start_gate_may_start(&g, &c, T0 + SEC(45)));
        ASSERT_FALSE(start_gate_may_start(&g, &b, T0 + SEC(104)));
        ASSERT_TRUE(start_gate_may_start(&g, &b, T0 + SEC(105)));

        /* A release at the end of time saturates instead of wrapping. */
        start_gate_release(&g, &c, UINT64_MAX - 1);
        ASSERT_FALSE(start_gate_may_start(&g, &c, UINT64_MAX - 1));
        ASSERT_TRUE(start_gate_may_start(&g, &c, UINT64_MAX));

        start_gate_done(&g);
        rangelist_done(&a);
        rangelist_done(&b);
        rangelist_done(&c);
        rangelist_done(&odd);
        rangelist_done(&empty);
        rangelist_done(&all);
}

TEST(gate_wide_ranges) {
        RangeList huge, wrap, one;
        StartGate g;

        rangelist_init(&huge);
        rangelist_init(&wrap);
        ASSERT_OK(rangelist_add_range(&huge, 0, UINT32_MAX));
        /* 65534..65537 covers buckets 65534, 65535, 0, 1 of 65536 */
        ASSERT_OK(rangelist_add_range(&wrap, 65534, 65537));
        set_parse(&one, "2");

        ASSERT_OK(start_gate_init(&g, 65536, SEC(5), T0));
        ASSERT_TRUE(start_gate_may_start(&g, &wrap, T0));
        start_gate_take(&g, &wrap);
        ASSERT_TRUE(g.held[65534] && g.held[65535] && g.held[0] && g.held[1]);
        ASSERT_FALSE(g.held[2] || g.held[65533]);
        ASSERT_TRUE(start_gate_may_start(&g, &one, T0));
        ASSERT_FALSE(start_gate_may_start(&g, &huge, T0));
        start_gate_release(&g, &wrap, T0);
        ASSERT_TRUE(start_gate_may_start(&g, &huge, T0 + SEC(5)));
        start_gate_take(&g, &huge);
        for (uint32_t b = 0; b < g.concurrency; b++)
                ASSERT_TRUE(g.held[b]);
        start_gate_release(&g, &huge, T0 + SEC(6));
        for (uint32_t b = 0; b < g.concurrency; b++)
                ASSERT_EQ_UINT(g.free_at[b], T0 + SEC(11));
        start_gate_done(&g);

        rangelist_done(&huge);
        rangelist_done(&wrap);
        rangelist_done(&one);
}

static usec_t estimate(uint32_t concurrency, usec_t interval, const char *const *texts, size_t n,
                       uint64_t *ret_identifies) {
        const RangeList *sets[16];
        RangeList l[16];
        usec_t d = 0;

        ASSERT_LE_UINT(n, 16);
        for (size_t i = 0; i < n; i++) {
                set_parse(&l[i], texts[i]);
                sets[i] = &l[i];
        }
        ASSERT_OK(start_gate_estimate(concurrency, interval, sets, n, &d, ret_identifies));
        for (size_t i = 0; i < n; i++)
                rangelist_done(&l[i]);
        return d;
}

TEST(estimate_examples) {
        uint64_t ids = 0;

        /* One bucket: 4 shards take 20 s each, then 5 s pause: 0, 25, 50. */
        {
                const char *const s[] = { "0-3", "4-7", "8-11" };

                ASSERT_EQ_UINT(estimate(1, SEC(5), s, 3, &ids), SEC(70));
                ASSERT_EQ_UINT(ids, 12);
        }
        /* Two buckets, two shards each per instance. */
        {
                const char *const s[] = { "0-3", "4-7" };

                ASSERT_EQ_UINT(estimate(2, SEC(5), s, 2, &ids), SEC(25));
                ASSERT_EQ_UINT(ids, 8);
        }
        /* Disjoint buckets start at once. */
        {
                const char *const s[] = { "0", "1", "2", "3" };

                ASSERT_EQ_UINT(estimate(4, SEC(5), s, 4, &ids), SEC(5));
                ASSERT_EQ_UINT(ids, 4);
        }
        /* In order: "1" waits behind "2", which waits for "0". */
        {
                const char *const s[] = { "0", "2", "1" };

                ASSERT_EQ_UINT(estimate(2, SEC(5), s, 3, &ids), SEC(15));
        }
        /* The busiest bucket decides: 0,4,8 are all bucket 0 of 4. */
        {
                const char *const s[] = { "0,4,8,1" };

                ASSERT_EQ_UINT(estimate(4, SEC(5), s, 1, &ids), SEC(15));
                ASSERT_EQ_UINT(ids, 4);
        }
        /* Instances without shards take no time and block nothing. */
        {
                const char *const s[] = { "", "0", "", "1" };

                ASSERT_EQ_UINT(estimate(2, SEC(5), s, 4, &ids), SEC(5));
                ASSERT_EQ_UINT(ids, 2);
        }
        {
                const char *const s[] = { "", "" };

                ASSERT_EQ_UINT(estimate(2, SEC(5), s, 2, &ids), 0);
                ASSERT_EQ_UINT(ids, 0);
        }
        /* A range longer than the concurrency covers every bucket. */
        {
                const char *const s[] = { "0-9", "100" };

                /* buckets of 4: 3,3,2,2 → 15 s; "100" waits until 20 s */
                ASSERT_EQ_UINT(estimate(4, SEC(5), s, 2, &ids), SEC(25));
                ASSERT_EQ_UINT(ids, 11);
        }
        /* Optional outputs. */
        {
                const RangeList *none[1] = { NULL };

                ASSERT_OK(start_gate_estimate(3, SEC(1), none, 0, NULL, NULL));
        }
}

TEST(estimate_wide_and_saturating) {
        RangeList huge, big;
        const RangeList *sets[3];
        usec_t d = 0;
        uint64_t ids = 0;

        rangelist_init(&huge);
        rangelist_init(&big);
        ASSERT_OK(rangelist_add_range(&huge, 0, UINT32_MAX));
        ASSERT_OK(rangelist_add_range(&big, 0, (1u << 20) - 1));

        sets[0] = &big;
        ASSERT_OK(start_gate_estimate(4, SEC(5), sets, 1, &d, &ids));
        ASSERT_EQ_UINT(d, (uint64_t) (1u << 18) * SEC(5));
        ASSERT_EQ_UINT(ids, 1u << 20);

        sets[0] = &huge;
        sets[1] = &huge;
        sets[2] = &huge;
        ASSERT_OK(start_gate_estimate(65536, SEC(5), sets, 3, &d, &ids));
        ASSERT_EQ_UINT(d, 3 * 65536 * SEC(5) + 2 * SEC(5));
        ASSERT_EQ_UINT(ids, 3 * (UINT64_C(1) << 32));

        ASSERT_OK(start_gate_estimate(1, UINT64_MAX / 2, sets, 3, &d, &ids));
        ASSERT_EQ_UINT(d, UINT64_MAX);

        rangelist_done(&huge);
        rangelist_done(&big);
}

/* ---- start gate: simulated fleets ---------------------------------------- */

typedef struct SimInstance {
        RangeList shards;
        usec_t delta, delay; /* start latency; readiness after the model says */
        usec_t start, ready;
        bool started, released;
} SimInstance;

typedef struct Identify {
        uint32_t bucket;
        usec_t at;
        size_t instance;
} Identify;

typedef struct Sim {
        uint64_t cross_pairs; /* consecutive identifies of two instances in one bucket */
        uint64_t tight_pairs; /* … exactly one interval apart */
        uint64_t fleets, instances, compared_estimates;
        Identify *ids;
        size_t n_ids, allocated;
} Sim;

enum {
        SIM_EXACT, /* no latency: readiness exactly when the estimate model says */
        SIM_LATE,  /* random start latency and ready delay */
        SIM_TIGHT, /* ready right at the last identify: the least the gate may assume */
        _SIM_MODE_MAX,
};

static void random_shards(uint64_t *seed, RangeList *l) {
        rangelist_init(l);
        switch (below(seed, 10)) {
        case 0:
                break; /* owns nothing */
        case 1:
        case 2:
        case 3:
        case 4: {
                uint32_t lo = (uint32_t) below(seed, 200);

                ASSERT_OK(rangelist_add_range(l, lo, lo + (uint32_t) between(seed, 1, 24) - 1));
                break;
        }
        case 5:
        case 6:
        case 7:
                for (unsigned k = (unsigned) between(seed, 2, 5); k > 0; k--) {
                        uint32_t lo = (uint32_t) below(seed, 256);

                        ASSERT_OK(rangelist_add_range(l, lo, lo + (uint32_t) below(seed, 6)));
                }
                break;
        default:
                for (unsigned k = (unsigned) between(seed, 1, 12); k > 0; k--)
                        ASSERT_OK(rangelist_add(l, (uint32_t) below(seed, 128)));
        }
}

static void sim_identify(Sim *sim, uint32_t bucket, usec_t at, size_t instance) {
        if (sim->n_ids == sim->allocated) {
                sim->allocated = sim->allocated ? 2 * sim->allocated : 1024;
                sim->ids = realloc(sim->ids, sim->allocated * sizeof(Identify));
                ASSERT_NOT_NULL(sim->ids);
        }
        sim->ids[sim->n_ids++] = (Identify){ .bucket = bucket, .at = at, .instance = instance };
}

static int identify_compare(const void *a, const void *b) {
        const Identify *x = a, *y = b;

        if (x->bucket != y->bucket)
                return x->bucket < y->bucket ? -1 : 1;
        if (x->at != y->at)
                return x->at < y->at ? -1 : 1;
        return 0;
}

/* The instance starts at `now`: it identifies the k-th of its shards in each
 * bucket at now + δ + k·interval and reports ready per the mode. */
static void sim_start(Sim *sim, SimInstance *in, size_t index, const StartGate *g, int mode,
                      usec_t now) {
        uint64_t per_bucket[8] = { 0 }, most = 0;
        usec_t last = now + in->delta;

        in->started = true;
        in->start = now;
        for (size_t r = 0; r < in->shards.n_ranges; r++)
                for (uint32_t s = in->shards.ranges[r].lo; s <= in->shards.ranges[r].hi; s++) {
                        uint32_t b = s % g->concurrency;
                        usec_t at = now + in->delta + per_bucket[b]++ * g->interval;

                        sim_identify(sim, b, at, index);
                        last = MAX(last, at);
                        most = MAX(most, per_bucket[b]);
                }
        if (mode == SIM_TIGHT)
                in->ready = last + in->delay;
        else
                in->ready = now + in->delta + most * g->interval + in->delay;
        ASSERT_GE_UINT(in->ready, last);
}

static void sim_fleet(Sim *sim, uint64_t *seed, int mode) {
        uint32_t concurrency = (uint32_t) between(seed, 1, 8);
        usec_t interval = one_in(seed, 2) ? SEC(between(seed, 1, 10)) : between(seed, 1, SEC(10));
        size_t n = (size_t) between(seed, 1, 10), head = 0, n_released = 0;
        SimInstance in[10];
        const RangeList *sets[10];
        StartGate g;
        usec_t now = T0, end = T0;
        unsigned steps = 0;

        for (size_t i = 0; i < n; i++) {
                random_shards(seed, &in[i].shards);
                in[i].delta = mode == SIM_LATE ? below(seed, 3 * interval + 1) : 0;
                in[i].delay = mode == SIM_EXACT ? 0
                              : one_in(seed, 2) ? 0
                                                : below(seed, 2 * interval + 1);
                in[i].started = in[i].released = false;
        }
        /* A random admission order. */
        for (size_t i = n - 1; i > 0; i--) {
                size_t j = (size_t) below(seed, i + 1);
                SimInstance t = in[i];

                in[i] = in[j];
                in[j] = t;
        }
        sim->n_ids = 0;

        ASSERT_OK(start_gate_init(&g, concurrency, interval, T0));
        for (;;) {
                usec_t next = UINT64_MAX;

                ASSERT_LE_UINT(++steps, 1000); /* progress */
                for (size_t i = 0; i < head; i++)
                        if (!in[i].released && in[i].ready <= now) {
                                ASSERT_EQ_UINT(in[i].ready, now);
                                start_gate_release(&g, &in[i].shards, now);
                                in[i].released = true;
                                n_released++;
                        }
                /* In order, as many as the gate lets through now. */
                while (head < n && start_gate_may_start(&g, &in[head].shards, now)) {
                        start_gate_take(&g, &in[head].shards);
                        sim_start(sim, &in[head], head, &g, mode, now);
                        end = MAX(end, in[head].ready);
                        head++;
                }
                if (head == n && n_released == n)
                        break;

                for (size_t i = 0; i < head; i++)
                        if (!in[i].released)
                                next = MIN(next, in[i].ready);
                if (head < n) {
                        /* The head waits for a release, or for its buckets' pause. */
                        bool held = false;
                        usec_t free_at = now;

                        for (size_t r = 0; r < in[head].shards.n_ranges; r++)
                                for (uint32_t s = in[head].shards.ranges[r].lo;
                                     s <= in[head].shards.ranges[r].hi; s++) {
                                        held = held || g.held[s % concurrency];
                                        free_at = MAX(free_at, g.free_at[s % concurrency]);
                                }
                        if (!held) {
                                ASSERT_TRUE(free_at > now);
                                next = MIN(next, free_at);
                        }
                }
                ASSERT_TRUE(next != UINT64_MAX); /* something is still to happen */
                ASSERT_GE_UINT(next, now);
                now = next;
        }
        start_gate_done(&g);

        /* Every instance started, and the rate held fleet-wide. */
        ASSERT_EQ_UINT(head, n);
        qsort(sim->ids, sim->n_ids, sizeof(Identify), identify_compare);
        for (size_t i = 1; i < sim->n_ids; i++) {
                const Identify *a = &sim->ids[i - 1], *b = &sim->ids[i];

                if (a->bucket != b->bucket)
                        continue;
                if (b->at - a->at < interval)
                        printf("# bucket %u: identifies at +%llu (instance %zu) and +%llu "
                               "(instance %zu), interval %llu\n",
                               (unsigned) a->bucket, (unsigned long long) (a->at - T0), a->instance,
                               (unsigned long long) (b->at - T0), b->instance,
                               (unsigned long long) interval);
                ASSERT_GE_UINT(b->at - a->at, interval);
                if (a->instance != b->instance) {
                        sim->cross_pairs++;
                        sim->tight_pairs += b->at - a->at == interval;
                }
        }

        if (mode == SIM_EXACT) {
                usec_t d = 0;
                uint64_t ids = 0;

                for (size_t i = 0; i < n; i++)
                        sets[i] = &in[i].shards;
                ASSERT_OK(start_gate_estimate(concurrency, interval, sets, n, &d, &ids));
                ASSERT_EQ_UINT(d, end - T0);
                ASSERT_EQ_UINT(ids, sim->n_ids);
                sim->compared_estimates++;
        }

        sim->fleets++;
        sim->instances += n;
        for (size_t i = 0; i < n; i++)
                rangelist_done(&in[i].shards);
}

TEST(gate_simulated_fleets) {
        Sim sim = { 0 };
        uint64_t seed = 2024;

        for (unsigned f = 0; f < 3000; f++)
                sim_fleet(&sim, &seed, (int) (f % _SIM_MODE_MAX));
        free(sim.ids);

        ASSERT_EQ_UINT(sim.fleets, 3000);
        ASSERT_EQ_UINT(sim.compared_estimates, 1000);
        ASSERT_GE_UINT(sim.instances, 10000);
        /* The property was put to the test: buckets were handed over often,
         * and often with no time to spare. */
        ASSERT_GE_UINT(sim.cross_pairs, 10000);
        ASSERT_GE_UINT(sim.tight_pairs, 1000);
}

int main(void) {
        return tap_run(TESTS(ledger_empty, ledger_minute_boundaries,
                             ledger_window_expiry_exactly_24h, ledger_near_time_zero,
                             ledger_clock_steps_back, ledger_step_back_after_everything_expired,
                             ledger_saturates, ledger_extreme_times, ledger_at_most_a_day_of_slots,
                             ledger_matches_model, format_examples, format_parse_roundtrip_random,
                             parse_full_day_and_not_more, parse_refusals,
                             parse_accepts_the_extremes, parsed_ledger_keeps_charging,
                             check_boundaries, check_limit_zero_is_unlimited, check_near_uint64_max,
                             check_and_low_against_wide_arithmetic,
                             reserve_is_one_start_capped_at_half, low_thresholds, low_does_not_flap,
                             gate_init_refusals, gate_buckets, gate_wide_ranges, estimate_examples,
                             estimate_wide_and_saturating, gate_simulated_fleets));
}
