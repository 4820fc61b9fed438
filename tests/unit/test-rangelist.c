/* SPDX-License-Identifier: MIT */
/* Range lists: parsing and canonical text, set algebra at the edges of
 * uint32_t, a randomized check against a plain bitmap, and the StatusText
 * shard tokens. */
#include <errno.h>

#include "macro.h"
#include "rangelist.h"
#include "tap.h"

static char *fmt_free_later[64];
static size_t n_fmt;

/* The canonical text of l; freed at the end of the test program. */
static const char *fmt(const RangeList *l) {
        char *s = rangelist_format(l);

        if (!s)
                return "(oom)";
        if (n_fmt == ELEMENTSOF(fmt_free_later))
                n_fmt = 0;
        free(fmt_free_later[n_fmt]);
        fmt_free_later[n_fmt++] = s;
        return s;
}

static void check_invariants(const RangeList *l) {
        for (size_t i = 0; i < l->n_ranges; i++) {
                if (l->ranges[i].lo > l->ranges[i].hi)
                        TAP_FAIL_("range %zu reversed: %s", i, fmt(l));
                if (i > 0 && (uint64_t) l->ranges[i - 1].hi + 1 >= l->ranges[i].lo)
                        TAP_FAIL_("ranges %zu and %zu overlap or touch: %s", i - 1, i, fmt(l));
        }
        if (l->n_ranges > l->n_allocated)
                TAP_FAIL_("n_ranges %zu > n_allocated %zu", l->n_ranges, l->n_allocated);
}

static const char *canon(const char *in) {
        RangeList l;
        const char *s;
        int r;

        rangelist_init(&l);
        r = rangelist_parse(&l, in);
        if (r < 0) {
                rangelist_done(&l);
                return "(error)";
        }
        check_invariants(&l);
        s = fmt(&l);
        rangelist_done(&l);
        return s;
}

TEST(parse_and_format) {
        ASSERT_STREQ(canon(""), "");
        ASSERT_STREQ(canon("5"), "5");
        ASSERT_STREQ(canon("0"), "0");
        ASSERT_STREQ(canon("0-13,90-91"), "0-13,90-91");
        ASSERT_STREQ(canon("3-3"), "3");
        ASSERT_STREQ(canon("90-91,0-13"), "0-13,90-91");
        ASSERT_STREQ(canon("0-5,3-9"), "0-9");
        ASSERT_STREQ(canon("0-5,6-9"), "0-9");
        ASSERT_STREQ(canon("1,2,3,5"), "1-3,5");
        ASSERT_STREQ(canon("7,7,7"), "7");
        ASSERT_STREQ(canon("10-20,0-100"), "0-100");
        ASSERT_STREQ(canon("0007"), "7");
        ASSERT_STREQ(canon("16777215"), "16777215");
        ASSERT_STREQ(canon("0-16777215"), "0-16777215");
}

TEST(parse_rejects_junk) {
        static const char *const bad[] = {
                ",",  "1,",  ",1",   "1,,2",  "-",   "-1", "1-",  "5-3", "1 ",   " 1", "1, 2", "a",
                "1a", "1-a", "1--2", "1-2-3", "0x1", "+1", "1.5", "1;2", "1-2,", "\t", "１",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                RangeList l;
                int r;

                rangelist_init(&l);
                ASSERT_OK(rangelist_parse(&l, "42"));
                r = rangelist_parse(&l, bad[i]);
                if (r != -EINVAL)
                        TAP_FAIL_("rangelist_parse(\"%s\") = %d", bad[i], r);
                /* unchanged on error */
                ASSERT_STREQ(fmt(&l), "42");
                rangelist_done(&l);
        }
}

TEST(parse_range_errors) {
        RangeList l;

        rangelist_init(&l);
        ASSERT_OK(rangelist_parse(&l, "1-3"));
        ASSERT_ERR(rangelist_parse(&l, "16777216"), -ERANGE);
        ASSERT_ERR(rangelist_parse(&l, "0-16777216"), -ERANGE);
        ASSERT_ERR(rangelist_parse(&l, "99999999999999999999999"), -ERANGE);
        ASSERT_ERR(rangelist_parse(&l, "1,4294967296"), -ERANGE);
        ASSERT_STREQ(fmt(&l), "1-3");
        rangelist_done(&l);
}

TEST(parse_line) {
        static const char *const bad[] = {
                "",       "\n\n",   "0-3",    "0-3\n\n", "0-3\r\n",
                "0-3 \n", " 0-3\n", "0\n1\n", "\n0-3",   "x\n",
        };
        RangeList l;

        rangelist_init(&l);
        ASSERT_OK(rangelist_parse_line(&l, "90-91,0-13\n"));
        ASSERT_STREQ(fmt(&l), "0-13,90-91");
        ASSERT_OK(rangelist_parse_line(&l, "\n")); /* the empty set */
        ASSERT_EQ_UINT(l.n_ranges, 0);
        ASSERT_OK(rangelist_parse_line(&l, "5\n"));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = rangelist_parse_line(&l, bad[i]);

                if (r != -EINVAL)
                        TAP_FAIL_("rangelist_parse_line(bad[%zu]) = %d", i, r);
                ASSERT_STREQ(fmt(&l), "5"); /* unchanged on error */
        }
        ASSERT_ERR(rangelist_parse_line(&l, "16777216\n"), -ERANGE);
        ASSERT_STREQ(fmt(&l), "5");
        rangelist_done(&l);
}

TEST(add_and_remove) {
        RangeList l;

        rangelist_init(&l);
        ASSERT_OK(rangelist_add(&l, 5));
        ASSERT_OK(rangelist_add(&l, 7));
        ASSERT_STREQ(fmt(&l), "5,7");
        ASSERT_OK(rangelist_add(&l, 6));
        ASSERT_STREQ(fmt(&l), "5-7");
        ASSERT_OK(rangelist_add_range(&l, 20, 30));
        ASSERT_OK(rangelist_add_range(&l, 0, 3));
        ASSERT_STREQ(fmt(&l), "0-3,5-7,20-30");
        ASSERT_OK(rangelist_add(&l, 4));
        ASSERT_STREQ(fmt(&l), "0-7,20-30");
        ASSERT_OK(rangelist_add_range(&l, 8, 19));
        ASSERT_STREQ(fmt(&l), "0-30");
        ASSERT_ERR(rangelist_add_range(&l, 9, 8), -EINVAL);

        ASSERT_OK(rangelist_remove_range(&l, 10, 12));
        ASSERT_STREQ(fmt(&l), "0-9,13-30");
        ASSERT_OK(rangelist_remove_range(&l, 0, 0));
        ASSERT_STREQ(fmt(&l), "1-9,13-30");
        ASSERT_OK(rangelist_remove_range(&l, 30, 100));
        ASSERT_STREQ(fmt(&l), "1-9,13-29");
        ASSERT_OK(rangelist_remove_range(&l, 5, 20));
        ASSERT_STREQ(fmt(&l), "1-4,21-29");
        ASSERT_OK(rangelist_remove_range(&l, 200, 300));
        ASSERT_STREQ(fmt(&l), "1-4,21-29");
        ASSERT_OK(rangelist_remove_range(&l, 0, UINT32_MAX));
        ASSERT_STREQ(fmt(&l), "");
        ASSERT_ERR(rangelist_remove_range(&l, 2, 1), -EINVAL);
        ASSERT_OK(rangelist_remove_range(&l, 0, 10));
        rangelist_done(&l);
}

TEST(uint32_edges) {
        RangeList l, m;

        rangelist_init(&l);
        rangelist_init(&m);
        ASSERT_OK(rangelist_add(&l, UINT32_MAX));
        ASSERT_OK(rangelist_add(&l, 0));
        ASSERT_OK(rangelist_add(&l, UINT32_MAX - 1));
        ASSERT_STREQ(fmt(&l), "0,4294967294-4294967295");
        ASSERT_TRUE(rangelist_contains(&l, UINT32_MAX));
        ASSERT_FALSE(rangelist_contains(&l, UINT32_MAX - 2));
        ASSERT_EQ_UINT(rangelist_count(&l), 3);

        ASSERT_OK(rangelist_add_range(&l, 0, UINT32_MAX));
        ASSERT_EQ_UINT(l.n_ranges, 1);
        ASSERT_EQ_UINT(rangelist_count(&l), UINT64_C(1) << 32);
        ASSERT_OK(rangelist_remove_range(&l, 1, UINT32_MAX - 1));
        ASSERT_STREQ(fmt(&l), "0,4294967295");

        ASSERT_OK(rangelist_add_range(&m, UINT32_MAX - 5, UINT32_MAX));
        ASSERT_OK(rangelist_subtract(&l, &m));
        ASSERT_STREQ(fmt(&l), "0");
        ASSERT_OK(rangelist_add_range(&l, UINT32_MAX - 9, UINT32_MAX));
        ASSERT_OK(rangelist_subtract(&l, &m));
        ASSERT_STREQ(fmt(&l), "0,4294967286-4294967289");
        ASSERT_OK(rangelist_intersect(&m, &(RangeList){ 0 }));
        ASSERT_EQ_UINT(m.n_ranges, 0);
        rangelist_done(&l);
        rangelist_done(&m);
}

static void parse_or_fail(RangeList *l, const char *s) {
        if (rangelist_parse(l, s) < 0)
                TAP_FAIL_("cannot parse \"%s\"", s);
}

TEST(set_operations) {
        RangeList a, b;

        rangelist_init(&a);
        rangelist_init(&b);

        parse_or_fail(&a, "0-10,20-30,40");
        parse_or_fail(&b, "5-25,31,39-45");
        ASSERT_OK(rangelist_union(&a, &b));
        ASSERT_STREQ(fmt(&a), "0-31,39-45");

        parse_or_fail(&a, "0-10,20-30,40");
        ASSERT_OK(rangelist_intersect(&a, &b));
        ASSERT_STREQ(fmt(&a), "5-10,20-25,40");

        parse_or_fail(&a, "0-10,20-30,40");
        ASSERT_OK(rangelist_subtract(&a, &b));
        ASSERT_STREQ(fmt(&a), "0-4,26-30");

        /* with itself */
        parse_or_fail(&a, "1-3,7");
        ASSERT_OK(rangelist_union(&a, &a));
        ASSERT_STREQ(fmt(&a), "1-3,7");
        ASSERT_OK(rangelist_intersect(&a, &a));
        ASSERT_STREQ(fmt(&a), "1-3,7");
        ASSERT_OK(rangelist_subtract(&a, &a));
        ASSERT_STREQ(fmt(&a), "");

        /* with empty */
        rangelist_clear(&b);
        parse_or_fail(&a, "1-3,7");
        ASSERT_OK(rangelist_union(&a, &b));
        ASSERT_OK(rangelist_subtract(&a, &b));
        ASSERT_STREQ(fmt(&a), "1-3,7");
        ASSERT_OK(rangelist_union(&b, &a));
        ASSERT_STREQ(fmt(&b), "1-3,7");
        ASSERT_OK(rangelist_intersect(&a, &(RangeList){ 0 }));
        ASSERT_STREQ(fmt(&a), "");

        rangelist_done(&a);
        rangelist_done(&b);
}

TEST(copy_equal_count_clear) {
        RangeList a, b;

        rangelist_init(&a);
        rangelist_init(&b);
        parse_or_fail(&a, "0-13,90-91");
        parse_or_fail(&b, "5");
        ASSERT_FALSE(rangelist_equal(&a, &b));
        ASSERT_OK(rangelist_copy(&b, &a));
        ASSERT_TRUE(rangelist_equal(&a, &b));
        ASSERT_TRUE(a.ranges != b.ranges);
        ASSERT_EQ_UINT(rangelist_count(&b), 16);

        ASSERT_OK(rangelist_add(&b, 50));
        ASSERT_FALSE(rangelist_equal(&a, &b));
        ASSERT_STREQ(fmt(&a), "0-13,90-91");

        rangelist_clear(&b);
        ASSERT_EQ_UINT(rangelist_count(&b), 0);
        ASSERT_STREQ(fmt(&b), "");
        ASSERT_OK(rangelist_copy(&a, &b));
        ASSERT_TRUE(rangelist_equal(&a, &b));
        ASSERT_TRUE(rangelist_equal(&(RangeList){ 0 }, &b));

        rangelist_done(&a);
        rangelist_done(&b);
        rangelist_done(&a); /* twice is fine */
}

/* The model: a plain bitmap over a window of WINDOW ids starting at base. */
#define WINDOW 300

static uint64_t rnd_state = 0x2545f4914f6cdd1dULL;
static uint64_t rnd(void) {
        rnd_state ^= rnd_state >> 12;
        rnd_state ^= rnd_state << 25;
        rnd_state ^= rnd_state >> 27;
        return rnd_state * 2685821657736338717ULL;
}

static void model_check(const RangeList *l, const bool *bits, uint32_t base, int step) {
        uint64_t n = 0;

        check_invariants(l);
        for (uint32_t i = 0; i < WINDOW; i++) {
                if (rangelist_contains(l, base + i) != bits[i])
                        TAP_FAIL_("step %d: contains(%u) = %d, model says %d: %s", step, base + i,
                                  !bits[i], bits[i], fmt(l));
                n += bits[i];
        }
        if (rangelist_count(l) != n)
                TAP_FAIL_("step %d: count %ju, model %ju", step, (uintmax_t) rangelist_count(l),
                          (uintmax_t) n);
        if (l->n_ranges > 0 &&
            (l->ranges[0].lo < base || l->ranges[l->n_ranges - 1].hi >= (uint64_t) base + WINDOW))
                TAP_FAIL_("step %d: ranges outside the window: %s", step, fmt(l));
}

/* A random list inside the window, with its own bitmap. */
static void random_list(RangeList *l, bool *bits, uint32_t base) {
        size_t n = rnd() % 6;

        rangelist_clear(l);
        memset(bits, 0, WINDOW * sizeof(bool));
        for (size_t k = 0; k < n; k++) {
                uint32_t lo = (uint32_t) (rnd() % WINDOW), len = (uint32_t) (rnd() % 40);
                uint32_t hi = (uint32_t) MIN((uint64_t) lo + len, WINDOW - 1);

                if (rangelist_add_range(l, base + lo, base + hi) < 0)
                        TAP_FAIL_("add_range failed");
                for (uint32_t i = lo; i <= hi; i++)
                        bits[i] = true;
        }
}

static void random_ops(uint32_t base, int n_ops) {
        bool bits[WINDOW] = { false }, other_bits[WINDOW];
        RangeList l, other;

        rangelist_init(&l);
        rangelist_init(&other);

        for (int step = 0; step < n_ops; step++) {
                uint32_t lo = (uint32_t) (rnd() % WINDOW), len = (uint32_t) (rnd() % 50);
                uint32_t hi = (uint32_t) MIN((uint64_t) lo + len, WINDOW - 1);
                unsigned op = (unsigned) (rnd() % 9);

                switch (op) {
                case 0:
                case 1:
                        ASSERT_OK(rangelist_add_range(&l, base + lo, base + hi));
                        for (uint32_t i = lo; i <= hi; i++)
                                bits[i] = true;
                        break;
                case 2:
                        ASSERT_OK(rangelist_add(&l, base + lo));
                        bits[lo] = true;
                        break;
                case 3:
                case 4:
                        ASSERT_OK(rangelist_remove_range(&l, base + lo, base + hi));
                        for (uint32_t i = lo; i <= hi; i++)
                                bits[i] = false;
                        break;
                case 5:
                        random_list(&other, other_bits, base);
                        ASSERT_OK(rangelist_union(&l, &other));
                        for (uint32_t i = 0; i < WINDOW; i++)
                                bits[i] |= other_bits[i];
                        break;
                case 6:
                        random_list(&other, other_bits, base);
                        ASSERT_OK(rangelist_subtract(&l, &other));
                        for (uint32_t i = 0; i < WINDOW; i++)
                                bits[i] &= !other_bits[i];
                        break;
                case 7:
                        random_list(&other, other_bits, base);
                        /* intersecting with a small random list empties l
                         * fast: mix in most of l itself half the time */
                        if (rnd() % 2)
                                for (uint32_t i = 0; i < WINDOW; i++)
                                        if (bits[i] && rnd() % 4) {
                                                ASSERT_OK(rangelist_add(&other, base + i));
                                                other_bits[i] = true;
                                        }
                        ASSERT_OK(rangelist_intersect(&l, &other));
                        for (uint32_t i = 0; i < WINDOW; i++)
                                bits[i] &= other_bits[i];
                        break;
                case 8:
                        /* copy, and the text form round-trips (parse only
                         * accepts ids below RANGELIST_MAX_SHARD) */
                        ASSERT_OK(rangelist_copy(&other, &l));
                        ASSERT_TRUE(rangelist_equal(&other, &l));
                        if ((uint64_t) base + WINDOW <= RANGELIST_MAX_SHARD) {
                                char *s = rangelist_format(&l);

                                ASSERT_NOT_NULL(s);
                                rangelist_clear(&other);
                                ASSERT_OK(rangelist_parse(&other, s));
                                free(s);
                                ASSERT_TRUE(rangelist_equal(&other, &l));
                        }
                        break;
                }
                model_check(&l, bits, base, step);
        }

        rangelist_done(&l);
        rangelist_done(&other);
}

TEST(random_against_bitmap_model) {
        /* 10,000 operations in all: half near 0, half against UINT32_MAX. */
        random_ops(0, 5000);
        random_ops(UINT32_MAX - (WINDOW - 1), 5000);
}

TEST(shard_status_tokens) {
        ShardStatus s;

        shard_status_init(&s);
        ASSERT_OK(shard_status_parse(&s, "ready=0-12 connecting=13 failed=14"));
        ASSERT_TRUE(s.has_tokens);
        ASSERT_STREQ(fmt(&s.ready), "0-12");
        ASSERT_STREQ(fmt(&s.connecting), "13");
        ASSERT_STREQ(fmt(&s.failed), "14");
        ASSERT_STREQ(s.other, "");

        /* repeated keys add up; other words are kept, space-joined */
        ASSERT_OK(shard_status_parse(&s, "  Serving   ready=0-3  guilds: 1200 ready=10,4\tok "));
        ASSERT_TRUE(s.has_tokens);
        ASSERT_STREQ(fmt(&s.ready), "0-4,10");
        ASSERT_STREQ(fmt(&s.connecting), "");
        ASSERT_STREQ(fmt(&s.failed), "");
        ASSERT_STREQ(s.other, "Serving guilds: 1200 ok");

        /* an empty list is still a token */
        ASSERT_OK(shard_status_parse(&s, "ready= connecting=0-95"));
        ASSERT_TRUE(s.has_tokens);
        ASSERT_EQ_UINT(rangelist_count(&s.ready), 0);
        ASSERT_EQ_UINT(rangelist_count(&s.connecting), 96);
        shard_status_done(&s);
}

TEST(shard_status_without_tokens) {
        ShardStatus s;

        shard_status_init(&s);
        ASSERT_OK(shard_status_parse(&s, "Listening on port 8080"));
        ASSERT_FALSE(s.has_tokens);
        ASSERT_STREQ(s.other, "Listening on port 8080");

        /* look-alikes are other text */
        ASSERT_OK(shard_status_parse(&s, "ready readyness=5 READY=1 Ready=3 unready=2"));
        ASSERT_FALSE(s.has_tokens);
        ASSERT_STREQ(s.other, "ready readyness=5 READY=1 Ready=3 unready=2");

        ASSERT_OK(shard_status_parse(&s, ""));
        ASSERT_FALSE(s.has_tokens);
        ASSERT_STREQ(s.other, "");
        ASSERT_OK(shard_status_parse(&s, NULL));
        ASSERT_STREQ(s.other, "");
        ASSERT_OK(shard_status_parse(&s, " \t\n "));
        ASSERT_STREQ(s.other, "");
        shard_status_done(&s);
        shard_status_done(&s);
}

TEST(shard_status_bad_list_clears) {
        static const char *const bad[] = {
                "ready=0-12 connecting=x", "ready=5-3",           "failed=1,",
                "connecting=16777216",     "ready=0-12 ready=1-", "ready==1",
        };
        ShardStatus s;

        shard_status_init(&s);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r;

                ASSERT_OK(shard_status_parse(&s, "ready=1 hello"));
                r = shard_status_parse(&s, bad[i]);
                if (r != -EINVAL)
                        TAP_FAIL_("shard_status_parse(\"%s\") = %d", bad[i], r);
                ASSERT_FALSE(s.has_tokens);
                ASSERT_EQ_UINT(s.ready.n_ranges + s.connecting.n_ranges + s.failed.n_ranges, 0);
                ASSERT_NULL(s.other);
        }
        shard_status_done(&s);
}

int main(void) {
        int r = tap_run(TESTS(parse_and_format, parse_rejects_junk, parse_range_errors, parse_line,
                              add_and_remove, uint32_edges, set_operations, copy_equal_count_clear,
                              random_against_bitmap_model, shard_status_tokens,
                              shard_status_without_tokens, shard_status_bad_list_clears));

        for (size_t i = 0; i < ELEMENTSOF(fmt_free_later); i++)
                free(fmt_free_later[i]);
        return r;
}
