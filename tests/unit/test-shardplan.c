/* SPDX-License-Identifier: MIT */
/* Tests of the shard planner: layouts and their text, copy unit names, the
 * minimal-movement rebalance against a brute-force optimum over thousands of
 * generated layouts, hand-written cases for each reshard rule, and a seeded
 * simulator that drives reshards through a model fleet (slow, dead and
 * refused starts, operators, crashes) checking at every step that every
 * shard of the serving epoch has a ready owner. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardplan.h"
#include "spec.h"
#include "tap.h"

#define SEC(x) (USEC_PER_SEC * (usec_t) (x))
#define T0 UINT64_C(1700000000000000)
#define TIMEOUT SEC(10)

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
        return lo + below(s, hi - lo + 1);
}

static bool one_in(uint64_t *s, unsigned n) {
        return below(s, n) == 0;
}

/* ---- helpers ------------------------------------------------------------- */

static char *set_text(const RangeList *l) {
        char *s = rangelist_format(l);

        ASSERT_NOT_NULL(s);
        return s;
}

static void assert_set(const RangeList *l, const char *want) {
        _cleanup_free_ char *s = set_text(l);

        ASSERT_STREQ(s, want);
}

static char *layout_text(const ShardLayout *l) {
        char *s = NULL;

        ASSERT_OK(shard_layout_format(l, &s));
        ASSERT_NOT_NULL(s);
        return s;
}

/* A layout from an owner per shard (every instance must own something). */
static void layout_from_owners(uint64_t epoch, uint32_t shards, uint32_t n, const uint32_t *owner,
                               const uint8_t *slots, ShardLayout *ret) {
        ShardLayout l = { .epoch = epoch, .shard_count = shards, .n_instances = n };

        l.slots = calloc(n, 1);
        l.sets = calloc(n, sizeof(RangeList));
        ASSERT_TRUE(l.slots && l.sets);
        for (uint32_t i = 0; i < n; i++)
                l.slots[i] = slots ? slots[i] : 0;
        for (uint32_t s = 0; s < shards; s++)
                ASSERT_OK(rangelist_add(l.sets + owner[s], s));
        *ret = l;
}

/* owner[s] for every shard of n sets over `shards`; asserts a partition. */
static void owners_of(const RangeList *sets, uint32_t n, uint32_t shards, uint32_t *owner) {
        for (uint32_t s = 0; s < shards; s++)
                owner[s] = UINT32_MAX;
        for (uint32_t i = 0; i < n; i++)
                for (size_t j = 0; j < sets[i].n_ranges; j++)
                        for (uint64_t s = sets[i].ranges[j].lo; s <= sets[i].ranges[j].hi; s++) {
                                if (s >= shards)
                                        TAP_FAIL_("shard %ju of instance %u beyond %u",
                                                  (uintmax_t) s, i, shards);
                                if (owner[s] != UINT32_MAX)
                                        TAP_FAIL_("shard %ju owned by %u and %u", (uintmax_t) s,
                                                  owner[s], i);
                                owner[s] = i;
                        }
        for (uint32_t s = 0; s < shards; s++)
                if (owner[s] == UINT32_MAX)
                        TAP_FAIL_("shard %u has no owner", s);
}

static void assert_layout_equal(const ShardLayout *a, const ShardLayout *b) {
        ASSERT_EQ_UINT(a->epoch, b->epoch);
        ASSERT_EQ_UINT(a->shard_count, b->shard_count);
        ASSERT_EQ_UINT(a->n_instances, b->n_instances);
        for (uint32_t i = 0; i < a->n_instances; i++) {
                ASSERT_EQ_UINT(a->slots[i], b->slots[i]);
                ASSERT_TRUE(rangelist_equal(a->sets + i, b->sets + i));
        }
}

/* A random layout: the default one, a random partition, or one that went
 * through a few rebalances (non-contiguous sets), with random slots. */
static void random_layout(uint64_t *seed, uint32_t shards, uint32_t n, ShardLayout *ret) {
        ShardLayout l;

        switch (below(seed, 3)) {
        case 0:
                ASSERT_OK(shard_layout_default(shards, n, &l));
                break;
        case 1: {
                _cleanup_free_ uint32_t *owner = calloc(shards, sizeof(uint32_t));

                ASSERT_NOT_NULL(owner);
                /* Every instance gets one shard, the rest at random. */
                for (uint32_t s = 0; s < shards; s++)
                        owner[s] = s < n ? s : (uint32_t) below(seed, n);
                for (uint32_t s = shards; s > 1; s--) {
                        uint32_t j = (uint32_t) below(seed, s), t = owner[s - 1];

                        owner[s - 1] = owner[j];
                        owner[j] = t;
                }
                layout_from_owners(1, shards, n, owner, NULL, &l);
                break;
        }
        default: {
                uint32_t m = (uint32_t) between(seed, 1, MIN(shards, 2 * n + 3));

                ASSERT_OK(shard_layout_default(shards, m, &l));
                for (unsigned hop = 0; hop < 3 && m != n; hop++) {
                        uint32_t next = hop == 2 ? n : (uint32_t) between(seed, 1, MIN(shards, 24));
                        RangeList *sets = calloc(next, sizeof(RangeList));

                        ASSERT_NOT_NULL(sets);
                        ASSERT_OK(shard_rebalance(&l, next, sets));
                        shard_layout_done(&l);
                        l = (ShardLayout){ .epoch = 1, .shard_count = shards, .n_instances = next };
                        l.slots = calloc(next, 1);
                        ASSERT_NOT_NULL(l.slots);
                        l.sets = sets;
                        m = next;
                }
                if (m != n) {
                        shard_layout_done(&l);
                        ASSERT_OK(shard_layout_default(shards, n, &l));
                }
        }
        }
        l.epoch = between(seed, 1, 5);
        for (uint32_t i = 0; i < n; i++)
                l.slots[i] = one_in(seed, 3);
        *ret = l;
}

/* ---- layouts ------------------------------------------------------------- */

TEST(string_tables) {
        for (ReshardState s = 0; s < _RESHARD_STATE_MAX; s++) {
                ASSERT_NOT_NULL(reshard_state_to_string(s));
                ASSERT_EQ_INT(reshard_state_from_string(reshard_state_to_string(s)), s);
        }
        for (ReshardItemState s = 0; s < _RITEM_STATE_MAX; s++) {
                ASSERT_NOT_NULL(reshard_item_state_to_string(s));
                ASSERT_EQ_INT(reshard_item_state_from_string(reshard_item_state_to_string(s)), s);
        }
        ASSERT_STREQ(reshard_state_to_string(RESHARD_ABORTED), "aborted");
        ASSERT_STREQ(reshard_item_state_to_string(RITEM_STARTING), "starting");
        ASSERT_EQ_INT(reshard_state_from_string("Running"), -EINVAL);
        ASSERT_EQ_INT(reshard_item_state_from_string(NULL), -EINVAL);
        ASSERT_NULL(reshard_state_to_string(_RESHARD_STATE_MAX));
        ASSERT_NULL(reshard_item_state_to_string(-1));
}

static void check_default(uint32_t shards, uint32_t n) {
        ShardLayout l;

        ASSERT_OK(shard_layout_default(shards, n, &l));
        ASSERT_EQ_UINT(l.epoch, 1);
        ASSERT_EQ_UINT(l.shard_count, shards);
        ASSERT_EQ_UINT(l.n_instances, n);
        for (uint32_t i = 0; i < n; i++) {
                _cleanup_free_ char *want = NULL, *got = set_text(l.sets + i);

                ASSERT_OK(service_default_shards(shards, n, i, &want));
                if (strcmp(want, got) != 0)
                        TAP_FAIL_("S=%u N=%u i=%u: layout \"%s\", spec \"%s\"", shards, n, i, got,
                                  want);
                ASSERT_EQ_UINT(l.slots[i], 0);
        }
        shard_layout_done(&l);
}

TEST(default_layout_is_the_spec_split) {
        uint64_t seed = 11;
        ShardLayout l = { 0 };

        for (uint32_t shards = 1; shards <= 150; shards++)
                for (uint32_t n = 1; n <= MIN(shards, 40); n++)
                        check_default(shards, n);
        for (unsigned k = 0; k < 60; k++) {
                uint32_t n = (uint32_t) between(&seed, 1, 300);

                check_default((uint32_t) between(&seed, n, RANGELIST_MAX_SHARD - 1), n);
        }
        check_default(RANGELIST_MAX_SHARD - 1, 7);

        ASSERT_ERR(shard_layout_default(0, 1, &l), -EINVAL);
        ASSERT_ERR(shard_layout_default(8, 0, &l), -EINVAL);
        ASSERT_ERR(shard_layout_default(5, 6, &l), -EINVAL);
        ASSERT_ERR(shard_layout_default(RANGELIST_MAX_SHARD, 1, &l), -EINVAL);
        ASSERT_NULL(l.sets);
}

TEST(layout_format_is_exact) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        ShardLayout l, back;
        uint32_t owner[10] = { 0, 0, 1, 1, 1, 0, 2, 2, 1, 0 };
        uint8_t slots[3] = { 0, 1, 0 };

        ASSERT_OK(shard_layout_default(96, 6, &l));
        a = layout_text(&l);
        ASSERT_STREQ(a, "baton-shards/1 epoch=1 count=96 instances=6 0:0:0-15 1:0:16-31 2:0:32-47 "
                        "3:0:48-63 4:0:64-79 5:0:80-95");
        shard_layout_done(&l);

        layout_from_owners(7, 10, 3, owner, slots, &l);
        b = layout_text(&l);
        ASSERT_STREQ(b,
                     "baton-shards/1 epoch=7 count=10 instances=3 0:0:0-1,5,9 1:1:2-4,8 2:0:6-7");
        ASSERT_OK(shard_layout_parse(b, &back, NULL));
        assert_layout_equal(&l, &back);
        shard_layout_done(&back);

        /* A copy is deep and equal. */
        ASSERT_OK(shard_layout_copy(&back, &l));
        ASSERT_TRUE(back.sets != l.sets);
        assert_layout_equal(&l, &back);
        shard_layout_done(&l);
        shard_layout_done(&back);
        ASSERT_NULL(back.sets);
        shard_layout_done(NULL);
}

TEST(layout_round_trip_random) {
        uint64_t seed = 12;

        for (unsigned k = 0; k < 1000; k++) {
                uint32_t shards = (uint32_t) (one_in(&seed, 10) ? between(&seed, 1, 3000)
                                                                : between(&seed, 1, 120));
                uint32_t n = (uint32_t) between(&seed, 1, MIN(shards, 30));
                _cleanup_free_ char *text = NULL, *again = NULL, *error = NULL;
                ShardLayout l, back;

                random_layout(&seed, shards, n, &l);
                text = layout_text(&l);
                if (shard_layout_parse(text, &back, &error) < 0)
                        TAP_FAIL_("\"%s\" refused: %s", text, error);
                assert_layout_equal(&l, &back);
                again = layout_text(&back);
                ASSERT_STREQ(again, text);
                shard_layout_done(&l);
                shard_layout_done(&back);
        }
}

typedef struct BadText {
        const char *text;
        const char *at; /* where the error points: the first occurrence; NULL: the end */
        const char *message;
        size_t column; /* instead of `at`, if not 0 */
} BadText;

/* The error names the last character. */
#define AT_LAST(text, message)                                                                     \
        { text, NULL, message, sizeof(text) - 1 }

static void check_refused(const BadText *c, bool layout) {
        _cleanup_free_ char *error = NULL, *want = NULL;
        const char *text = c->text, *at = c->at, *message = c->message;
        size_t column;
        int k;

        if (c->column > 0)
                column = c->column;
        else if (at) {
                const char *p = strstr(text, at);

                if (!p)
                        TAP_FAIL_("marker \"%s\" not in \"%s\"", at, text);
                column = (size_t) (p - text) + 1;
        } else
                column = strlen(text) + 1;
        ASSERT_TRUE(asprintf(&want, "column %zu: %s", column, message) > 0);

        if (layout) {
                ShardLayout l = { 0 };

                k = shard_layout_parse(text, &l, &error);
                ASSERT_NULL(l.sets);
        } else {
                Reshard *r = NULL;

                k = reshard_parse(text, &r, &error);
                ASSERT_NULL(r);
        }
        if (k != -EINVAL)
                TAP_FAIL_("\"%s\": accepted (%d), expected \"%s\"", text, k, want);
        if (!error || strcmp(error, want) != 0)
                TAP_FAIL_("\"%s\":\n#     got  \"%s\"\n#     want \"%s\"", text,
                          error ? error : "(null)", want);
}

#define L0 "baton-shards/1 epoch=1 count=4 instances=2 "

TEST(layout_parse_refusals) {
        static const BadText cases[] = {
                { "", "", "expected \"baton-shards/1\"" },
                { "baton-shards/2 epoch=1", "baton",
                  "unsupported version \"baton-shards/2\" (this is baton-shards/1)" },
                { "baton-shards/1  epoch=1", " ", "expected \" epoch=\"" },
                { "baton-shards/1 epoch=0 count=4", "0 count", "epoch must be at least 1" },
                { "baton-shards/1 epoch=01 count=4", "01", "epoch: leading zero" },
                { "baton-shards/1 epoch=1 count=0 instances=1 0:0:0", "0 inst",
                  "count must be at least 1" },
                { "baton-shards/1 epoch=1 count=16777216 instances=1 0:0:0", "16777216",
                  "count: out of range (at most 16777215)" },
                { "baton-shards/1 epoch=1 count=4 instances=5 0:0:0", "5 0",
                  "instances: 5 is not within 1..4" },
                { "baton-shards/1 epoch=1 count=4 instances=0 0:0:0", "0 0",
                  "instances: 0 is not within 1..4" },
                { "baton-shards/1 epoch=1 count=400 instances=300 0:0:0", "300",
                  "instances: text too short for 300 instances" },
                { L0 "0:0:0-1 1:0:3", NULL, "not a partition: shard 2 of 4 has no owner" },
                { L0 "0:0:1-2 1:0:3", NULL, "not a partition: shard 0 of 4 has no owner" },
                { L0 "0:0:0-2 1:0:2-3", "2-3",
                  "instance 1: shard 2 is already owned by instance 0" },
                { L0 "0:0:0,2 1:0:1-3", "1-3",
                  "instance 1: shard 2 is already owned by instance 0" },
                { L0 "0:0: 1:0:0-3", " 1:", "instance 0: empty shard set" },
                { L0 "0:0:0-1 1:0:", NULL, "instance 1: empty shard set" },
                { L0 "0:0:- 1:0:0-3", "- 1:0", "instance 0 shards: expected a number" },
                { L0 "0:2:0-1 1:0:2-3", "2:0-1", "instance 0 slot: out of range (at most 1)" },
                { L0 "0:b:0-1 1:0:2-3", "b:0-1", "instance 0 slot: expected a number" },
                { L0 "0:0:00-1 1:0:2-3", "00", "instance 0 shards: leading zero" },
                { L0 "0:0:0-01 1:0:2-3", "01", "instance 0 shards: leading zero" },
                { L0 "00:0:0-1 1:0:2-3", "00", "instance 0: leading zero" },
                { L0 "0:00:0-1 1:0:2-3", "00:0-1", "instance 0 slot: leading zero" },
                { L0 "1:0:0-1 0:0:2-3", "1:0:0", "expected instance 0, not 1" },
                AT_LAST(L0 "0:0:0-1 1:0:2-3 ", "unexpected text after the last instance"),
                { L0 "0:0:0-1 1:0:2-3x", "x", "unexpected text after the last instance" },
                { L0 "0:0:0-1 1:0:2-3\n", "\n", "unexpected text after the last instance" },
                { L0 "0:0:0-1 1:0:2-3 2:0:4", " 2:", "unexpected text after the last instance" },
                { L0 "0:0:0-1  1:0:2-3", " 1:", "instance 1: expected a number" },
                { L0 "0:0:0-1:1:0:2-3", ":1:0:2-3", "expected \" \"" },
                { L0 "0:0:0-1,2 1:0:3", "2 1:0:3",
                  "instance 0 shards: range touches the one before (merge them)" },
                { L0 "0:0:2,0-1 1:0:3", "0-1",
                  "instance 0 shards: ranges not in increasing order" },
                { L0 "0:0:1-1 1:0:0,2-3", "1 1:", "instance 0 shards: write \"1\", not a range" },
                { L0 "0:0:1-0 1:0:2-3", "0 1:", "instance 0 shards: range 1-0 goes backwards" },
                { L0 "0:0:0-1 1:0:2-4", "2-4",
                  "instance 1 shards: shard 4 is not below the total 4" },
                { L0 "0:0:0-1 1:0:2-99999999999", "99999999999",
                  "instance 1 shards: out of range (at most 4294967295)" },
                { L0 "0:0:0-1 1:0:2-3,", NULL, "instance 1 shards: expected a number" },
                { L0 "0:0:0-1 1:0:2,,3", ",3", "instance 1 shards: expected a number" },
                { L0 "0:0:0-1 1:0:2--3", "-3", "instance 1 shards: expected a number" },
        };

        for (size_t k = 0; k < ELEMENTSOF(cases); k++)
                check_refused(cases + k, true);
}

TEST(layout_prefixes_and_mutations_are_refused_or_canonical) {
        static const char alphabet[] = "0123456789-,: =abx";
        uint64_t seed = 13;

        for (unsigned k = 0; k < 200; k++) {
                uint32_t shards = (uint32_t) between(&seed, 1, 40);
                _cleanup_free_ char *text = NULL;
                ShardLayout l;
                size_t len;

                random_layout(&seed, shards, (uint32_t) between(&seed, 1, MIN(shards, 8)), &l);
                text = layout_text(&l);
                shard_layout_done(&l);
                len = strlen(text);

                /* One spelling: no proper prefix is a layout. */
                for (size_t cut = 0; cut < len; cut++) {
                        _cleanup_free_ char *p = strndup(text, cut), *error = NULL;

                        ASSERT_NOT_NULL(p);
                        if (shard_layout_parse(p, &l, &error) >= 0)
                                TAP_FAIL_("prefix \"%s\" of \"%s\" accepted", p, text);
                        ASSERT_NOT_NULL(error);
                        ASSERT_TRUE(strncmp(error, "column ", 7) == 0);
                }
                /* A changed byte is refused, or it is the canonical text of
                 * what it parses to. */
                for (unsigned m = 0; m < 20; m++) {
                        _cleanup_free_ char *t = strdup(text), *error = NULL, *again = NULL;

                        ASSERT_NOT_NULL(t);
                        t[below(&seed, len)] = alphabet[below(&seed, sizeof(alphabet) - 1)];
                        if (shard_layout_parse(t, &l, &error) < 0) {
                                ASSERT_NOT_NULL(error);
                                continue;
                        }
                        again = layout_text(&l);
                        ASSERT_STREQ(again, t);
                        shard_layout_done(&l);
                }
        }
}

TEST(copy_units) {
        static const char *const not_copies[] = {
                "gateway@03.service",
                "gateway@3c.service",
                "gateway@.service",
                "gateway@3b",
                "gateway@3bb.service",
                "gatewa@3.service",
                "gateway2@3.service",
                "gateway@3.socket",
                "gateway@-1.service",
                "gateway@+1.service",
                "gateway@3b.service.d",
                "gateway@4294967296.service",
                "gateway@b.service",
                "gateway.service",
                "gateway@3 .service",
                "gateway@ 3.service",
                "",
                "gateway@00.service",
                "xgateway@3.service",
                "gateway@3B.service",
        };
        static const char *const bad_services[] = {
                "", "a b", "gate@way", "x/y", ".hidden", "a\n"
        };
        uint64_t seed = 14;
        char *u = NULL;
        uint32_t instance = 77;
        uint8_t slot = 9;

        ASSERT_OK(shard_copy_unit("gateway", 3, 1, &u));
        ASSERT_STREQ(u, "gateway@3b.service");
        free(u);
        ASSERT_OK(shard_copy_unit("gateway", 3, 0, &u));
        ASSERT_STREQ(u, "gateway@3.service");
        free(u);
        ASSERT_OK(shard_copy_unit("gateway", 0, 1, &u));
        ASSERT_STREQ(u, "gateway@0b.service");
        free(u);
        u = NULL;
        ASSERT_ERR(shard_copy_unit("gateway", 3, 2, &u), -EINVAL);
        for (size_t k = 0; k < ELEMENTSOF(bad_services); k++)
                ASSERT_ERR(shard_copy_unit(bad_services[k], 3, 0, &u), -EINVAL);
        ASSERT_NULL(u);

        ASSERT_OK(shard_copy_parse("gateway", "gateway@3b.service", &instance, &slot));
        ASSERT_EQ_UINT(instance, 3);
        ASSERT_EQ_UINT(slot, 1);
        ASSERT_OK(shard_copy_parse("gateway", "gateway@0.service", &instance, &slot));
        ASSERT_EQ_UINT(instance, 0);
        ASSERT_EQ_UINT(slot, 0);
        ASSERT_OK(shard_copy_parse("gateway", "gateway@4294967295b.service", &instance, &slot));
        ASSERT_EQ_UINT(instance, UINT32_MAX);
        ASSERT_EQ_UINT(slot, 1);

        instance = 77;
        slot = 9;
        for (size_t k = 0; k < ELEMENTSOF(not_copies); k++)
                if (shard_copy_parse("gateway", not_copies[k], &instance, &slot) != -EINVAL)
                        TAP_FAIL_("\"%s\" taken for a copy of gateway", not_copies[k]);
        ASSERT_ERR(shard_copy_parse("gate@way", "gate@way@3.service", &instance, &slot), -EINVAL);
        /* Untouched on failure. */
        ASSERT_EQ_UINT(instance, 77);
        ASSERT_EQ_UINT(slot, 9);

        for (unsigned k = 0; k < 3000; k++) {
                uint32_t i = (uint32_t) (one_in(&seed, 4) ? rnd(&seed) : below(&seed, 1000));
                uint8_t s = (uint8_t) below(&seed, 2);
                const char *service = k % 3 == 0 ? "gw" : k % 3 == 1 ? "a-b_c.d" : "sentinel";
                _cleanup_free_ char *unit = NULL;

                ASSERT_OK(shard_copy_unit(service, i, s, &unit));
                ASSERT_OK(shard_copy_parse(service, unit, &instance, &slot));
                ASSERT_EQ_UINT(instance, i);
                ASSERT_EQ_UINT(slot, s);
                /* Not a copy of a service whose name is a prefix of this one. */
                ASSERT_ERR(shard_copy_parse("g", unit, NULL, NULL), -EINVAL);
        }
}

/* ---- rebalance ----------------------------------------------------------- */

static void rebalance(const ShardLayout *from, uint32_t n_to, RangeList **ret) {
        RangeList *sets = calloc(n_to, sizeof(RangeList));

        ASSERT_NOT_NULL(sets);
        ASSERT_OK(shard_rebalance(from, n_to, sets));
        *ret = sets;
}

static void sets_free(RangeList *sets, uint32_t n) {
        for (uint32_t i = 0; i < n; i++)
                rangelist_done(sets + i);
        free(sets);
}

TEST(rebalance_examples) {
        ShardLayout l, bad;
        RangeList *sets, dummy[8];
        uint32_t owner[8] = { 0, 0, 0, 0, 0, 0, 1, 2 };

        /* 6 → 7: five instances keep 14, the fifth 13, the new one takes
         * the 13 freed shards, lowest first. */
        ASSERT_OK(shard_layout_default(96, 6, &l));
        rebalance(&l, 7, &sets);
        assert_set(sets + 0, "0-13");
        assert_set(sets + 1, "16-29");
        assert_set(sets + 4, "64-77");
        assert_set(sets + 5, "80-92");
        assert_set(sets + 6, "14-15,30-31,46-47,62-63,78-79,93-95");
        sets_free(sets, 7);

        /* 6 → 5: instance 5's shards go, in order, to 0 (which gets the one
         * extra) then 1…4. */
        rebalance(&l, 5, &sets);
        assert_set(sets + 0, "0-15,80-83");
        assert_set(sets + 1, "16-31,84-86");
        assert_set(sets + 2, "32-47,87-89");
        assert_set(sets + 3, "48-63,90-92");
        assert_set(sets + 4, "64-79,93-95");
        sets_free(sets, 5);

        /* Same count, balanced: nothing moves. */
        rebalance(&l, 6, &sets);
        for (uint32_t i = 0; i < 6; i++)
                ASSERT_TRUE(rangelist_equal(sets + i, l.sets + i));
        sets_free(sets, 6);

        ASSERT_ERR(shard_rebalance(&l, 0, dummy), -EINVAL);
        ASSERT_ERR(shard_rebalance(&l, 97, dummy), -EINVAL);
        rebalance(&l, 96, &sets);
        for (uint32_t i = 0; i < 96; i++)
                ASSERT_EQ_UINT(rangelist_count(sets + i), 1);
        sets_free(sets, 96);
        shard_layout_done(&l);

        /* Unbalanced at the same count: the largest set gives, the one
         * extra stays with the largest (instance 0 keeps 3 of its 6). */
        layout_from_owners(1, 8, 3, owner, NULL, &l);
        rebalance(&l, 3, &sets);
        assert_set(sets + 0, "0-2");
        assert_set(sets + 1, "3-4,6");
        assert_set(sets + 2, "5,7");
        sets_free(sets, 3);

        /* Not a partition. */
        ASSERT_OK(shard_layout_copy(&bad, &l));
        ASSERT_OK(rangelist_add(bad.sets + 2, 0));
        ASSERT_ERR(shard_rebalance(&bad, 2, dummy), -EINVAL);
        rangelist_clear(bad.sets + 2);
        ASSERT_ERR(shard_rebalance(&bad, 2, dummy), -EINVAL);
        shard_layout_done(&bad);
        shard_layout_done(&l);
}

/* The least number of shards that must change owner among balanced targets,
 * by trying every choice of which instances get the larger size. */
static uint64_t brute_force_min_moves(const uint64_t *cur, uint32_t n_to, uint32_t shards) {
        uint32_t q = shards / n_to, rem = shards % n_to;
        uint64_t best = 0;

        for (uint32_t mask = 0; mask < (1u << n_to); mask++) {
                uint64_t kept = 0;

                if ((uint32_t) __builtin_popcount(mask) != rem)
                        continue;
                for (uint32_t i = 0; i < n_to; i++)
                        kept += MIN(cur[i], (uint64_t) q + ((mask >> i) & 1));
                best = MAX(best, kept);
        }
        return shards - best;
}

static void check_rebalance(const ShardLayout *from, uint32_t n_to, RangeList *sets) {
        uint32_t shards = from->shard_count, q = shards / n_to;
        _cleanup_free_ uint32_t *before = calloc(shards, sizeof(uint32_t)),
                                *after = calloc(shards, sizeof(uint32_t));
        _cleanup_free_ uint64_t *cur = calloc(n_to, sizeof(uint64_t));
        uint64_t moved = 0, last_gain = 0;
        bool any_gain = false;
        RangeList *again;

        ASSERT_TRUE(before && after && cur);
        owners_of(from->sets, from->n_instances, shards, before);
        owners_of(sets, n_to, shards, after);

        for (uint32_t i = 0; i < n_to; i++) {
                uint64_t size = rangelist_count(sets + i);
                const RangeList *old = i < from->n_instances ? from->sets + i : NULL;
                RangeList tmp;

                /* Balanced. */
                if (size != q && size != q + 1)
                        TAP_FAIL_("instance %u has %ju shards, not %u or %u", i, (uintmax_t) size,
                                  q, q + 1);
                cur[i] = old ? rangelist_count(old) : 0;
                if (!old)
                        continue;

                /* Only keeps or only gains; a loser keeps its lowest. */
                rangelist_init(&tmp);
                ASSERT_OK(rangelist_copy(&tmp, sets + i));
                ASSERT_OK(rangelist_intersect(&tmp, old));
                if (!rangelist_equal(&tmp, sets + i) && !rangelist_equal(&tmp, old))
                        TAP_FAIL_("instance %u both gains and loses", i);
                if (size < cur[i] && rangelist_count(&tmp) == size) {
                        /* Every kept shard is below every given-away one. */
                        RangeList gone;

                        rangelist_init(&gone);
                        ASSERT_OK(rangelist_copy(&gone, old));
                        ASSERT_OK(rangelist_subtract(&gone, sets + i));
                        ASSERT_TRUE(sets[i].ranges[sets[i].n_ranges - 1].hi < gone.ranges[0].lo);
                        rangelist_done(&gone);
                }
                rangelist_done(&tmp);
        }

        /* Gained shards, in instance order, are increasing. */
        for (uint32_t i = 0; i < n_to; i++) {
                RangeList gain;

                rangelist_init(&gain);
                ASSERT_OK(rangelist_copy(&gain, sets + i));
                if (i < from->n_instances)
                        ASSERT_OK(rangelist_subtract(&gain, from->sets + i));
                if (gain.n_ranges > 0) {
                        if (any_gain && gain.ranges[0].lo <= last_gain)
                                TAP_FAIL_("instance %u gains %u, not after %ju", i,
                                          gain.ranges[0].lo, (uintmax_t) last_gain);
                        last_gain = gain.ranges[gain.n_ranges - 1].hi;
                        any_gain = true;
                }
                rangelist_done(&gain);
        }

        for (uint32_t s = 0; s < shards; s++)
                moved += before[s] != after[s];
        if (n_to <= 12) {
                uint64_t best = brute_force_min_moves(cur, n_to, shards);

                if (moved != best)
                        TAP_FAIL_("S=%u %u→%u instances: %ju shards moved, %ju would do", shards,
                                  from->n_instances, n_to, (uintmax_t) moved, (uintmax_t) best);
        }

        /* Deterministic. */
        rebalance(from, n_to, &again);
        for (uint32_t i = 0; i < n_to; i++)
                ASSERT_TRUE(rangelist_equal(again + i, sets + i));
        sets_free(again, n_to);
}

TEST(rebalance_properties) {
        uint64_t seed = 15, cases = 0, noops = 0;

        for (unsigned chain = 0; chain < 500; chain++) {
                uint32_t shards = (uint32_t) (one_in(&seed, 20) ? between(&seed, 1, 3000)
                                                                : between(&seed, 1, 80));
                uint32_t n = (uint32_t) between(&seed, 1, MIN(shards, 14));
                ShardLayout l;

                random_layout(&seed, shards, n, &l);
                /* A chain of rebalances, growing and shrinking, each from
                 * the sets the one before produced. */
                for (unsigned hop = 0; hop < 8; hop++) {
                        uint32_t n_to = (uint32_t) between(&seed, 1, MIN(shards, 16));
                        RangeList *sets;

                        if (one_in(&seed, 6))
                                n_to = l.n_instances;
                        rebalance(&l, n_to, &sets);
                        check_rebalance(&l, n_to, sets);
                        cases++;

                        /* Balanced already at the same count: nothing moves. */
                        if (one_in(&seed, 2)) {
                                RangeList *same;
                                ShardLayout b = { .epoch = 1,
                                                  .shard_count = shards,
                                                  .n_instances = n_to,
                                                  .sets = sets };

                                b.slots = calloc(n_to, 1);
                                ASSERT_NOT_NULL(b.slots);
                                rebalance(&b, n_to, &same);
                                for (uint32_t i = 0; i < n_to; i++)
                                        ASSERT_TRUE(rangelist_equal(same + i, sets + i));
                                sets_free(same, n_to);
                                free(b.slots);
                                noops++;
                        }

                        shard_layout_done(&l);
                        l = (ShardLayout){ .epoch = 1, .shard_count = shards, .n_instances = n_to };
                        l.slots = calloc(n_to, 1);
                        ASSERT_NOT_NULL(l.slots);
                        l.sets = sets;
                }
                shard_layout_done(&l);
        }
        printf("# %ju rebalances checked against the brute-force optimum, %ju no-ops\n",
               (uintmax_t) cases, (uintmax_t) noops);
}

/* ---- reshard: hand-written cases ----------------------------------------- */

#define ACTS_MAX 512

static char *reshard_text(const Reshard *r) {
        char *s = NULL;

        ASSERT_OK(reshard_format(r, &s));
        ASSERT_NOT_NULL(s);
        return s;
}

/* Format, parse back, check it formats the same: the store round trip. */
static Reshard *reparse(const Reshard *r) {
        _cleanup_free_ char *text = reshard_text(r), *again = NULL, *error = NULL;
        Reshard *back = NULL;

        if (reshard_parse(text, &back, &error) < 0)
                TAP_FAIL_("\"%s\" refused: %s", text, error);
        again = reshard_text(back);
        ASSERT_STREQ(again, text);
        return back;
}

static bool gate_yes(uint32_t instance, const RangeList *shards, void *userdata) {
        (void) shards;
        (void) userdata;
        return true;
}

static bool gate_no(uint32_t instance, const RangeList *shards, void *userdata) {
        (void) shards;
        (void) userdata;
        return false;
}

/* Agrees `*budget` times. */
static bool gate_count(uint32_t instance, const RangeList *shards, void *userdata) {
        unsigned *budget = userdata;

        (void) shards;
        if (*budget == 0)
                return false;
        (*budget)--;
        return true;
}

static size_t step(Reshard *r, const ReshardObserved *o, size_t n_o, usec_t now,
                   ReshardMayStart gate, void *userdata, ReshardAction *a) {
        size_t max = 2 * r->n_items + 3, n = reshard_step(r, o, n_o, now, gate, userdata, a, max);

        ASSERT_LE_UINT(n, max);
        return n;
}

/* "start 2, retire 0, …" for comparing a step's actions. */
static char *acts(const ReshardAction *a, size_t n) {
        static const char *const names[] = { "start", "retire",  "discard", "cutover",
                                             "alert", "resolve", "finished" };
        char *s = strdup("");

        ASSERT_NOT_NULL(s);
        for (size_t i = 0; i < n; i++) {
                char *t = NULL;
                int k;

                if (a[i].kind <= RESHARD_ACTION_DISCARD)
                        k = asprintf(&t, "%s%s%s %u", s, i ? ", " : "", names[a[i].kind],
                                     a[i].instance);
                else
                        k = asprintf(&t, "%s%s%s", s, i ? ", " : "", names[a[i].kind]);
                ASSERT_TRUE(k > 0);
                free(s);
                s = t;
        }
        return s;
}

#define ASSERT_ACTS(a, n, want)                                                                    \
        do {                                                                                       \
                _cleanup_free_ char *got_ = acts(a, n);                                            \
                ASSERT_STREQ(got_, want);                                                          \
        } while (0)

static ReshardObserved ready(uint32_t instance) {
        return (ReshardObserved){ .instance = instance, .new_ready = true };
}

static ReshardObserved not_ready(uint32_t instance) {
        return (ReshardObserved){ .instance = instance, .new_ready = false };
}

static Reshard *plan(uint32_t shards, uint32_t n_from, uint32_t n_to, uint32_t to_count,
                     uint32_t max_starting, ShardLayout *ret_from) {
        ShardLayout l;
        Reshard *r = NULL;

        ASSERT_OK(shard_layout_default(shards, n_from, &l));
        ASSERT_OK(reshard_new("gateway", 3, &l, n_to, to_count, max_starting, TIMEOUT, &r));
        if (ret_from)
                *ret_from = l;
        else
                shard_layout_done(&l);
        return r;
}

TEST(new_plans) {
        ShardLayout l, res;
        Reshard *r = NULL;
        _cleanup_free_ char *text = NULL;

        ASSERT_OK(shard_layout_default(96, 6, &l));

        /* Same total, one more instance: the new one first, then the five
         * that give shards away. */
        ASSERT_OK(reshard_new("gateway", 3, &l, 7, 96, 1, TIMEOUT, &r));
        ASSERT_EQ_UINT(r->n_items, 7);
        ASSERT_EQ_UINT(r->items[0].instance, 6);
        ASSERT_EQ_UINT(r->items[0].from.n_ranges, 0);
        ASSERT_EQ_UINT(r->items[0].to_slot, 0);
        for (uint32_t i = 1; i < 7; i++) {
                ASSERT_EQ_UINT(r->items[i].instance, i - 1);
                ASSERT_EQ_UINT(r->items[i].from_slot, 0);
                ASSERT_EQ_UINT(r->items[i].to_slot, 1);
                ASSERT_EQ_UINT(r->items[i].state, RITEM_PENDING);
        }
        ASSERT_EQ_UINT(r->to_epoch, 1);
        ASSERT_EQ_UINT(r->state, RESHARD_RUNNING);
        ASSERT_EQ_UINT(reshard_cost(r), 96);
        ASSERT_ERR(reshard_result(r, &l, &res), -EINVAL); /* not done */
        r = reshard_free(r);

        /* A new total: every instance, under the next epoch. */
        l.slots[2] = 1;
        ASSERT_OK(reshard_new("gateway", 4, &l, 8, 128, 2, TIMEOUT, &r));
        ASSERT_EQ_UINT(r->n_items, 8);
        ASSERT_EQ_UINT(r->to_epoch, 2);
        ASSERT_EQ_UINT(r->from_count, 96);
        ASSERT_EQ_UINT(r->to_count, 128);
        for (uint32_t i = 0; i < 8; i++) {
                ASSERT_EQ_UINT(r->items[i].instance, i);
                ASSERT_EQ_UINT(rangelist_count(&r->items[i].to), 16);
                ASSERT_EQ_UINT(r->items[i].to_slot, i == 2 ? 0 : i < 6 ? 1 : 0);
        }
        ASSERT_EQ_UINT(reshard_cost(r), 128);
        r = reshard_free(r);

        /* Fewer instances and a smaller total. */
        ASSERT_OK(reshard_new("gateway", 5, &l, 2, 10, 1, TIMEOUT, &r));
        ASSERT_EQ_UINT(r->n_items, 6);
        assert_set(&r->items[1].to, "5-9");
        ASSERT_EQ_UINT(r->items[5].to.n_ranges, 0);
        text = reshard_text(r);
        ASSERT_STREQ(text, "baton-reshard/1 service=gateway id=5 state=running from_epoch=1 "
                           "to_epoch=2 from_count=96 to_count=10 from_instances=6 to_instances=2 "
                           "max_starting=1 health_timeout=10000000 alert=0 items=6 "
                           "0:pending:0-15:0-4:0:1:0:0 1:pending:16-31:5-9:0:1:0:0 "
                           "2:pending:32-47:-:1:0:0:0 3:pending:48-63:-:0:1:0:0 "
                           "4:pending:64-79:-:0:1:0:0 5:pending:80-95:-:0:1:0:0 reason=-");
        r = reshard_free(r);
        l.slots[2] = 0;

        ASSERT_ERR(reshard_new("gateway", 3, &l, 6, 96, 1, TIMEOUT, &r), -EALREADY);
        ASSERT_ERR(reshard_new("gate way", 3, &l, 7, 96, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_new("gateway@1", 3, &l, 7, 96, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_new("", 3, &l, 7, 96, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_new("gateway", 3, &l, 0, 96, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_new("gateway", 3, &l, 7, 0, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_new("gateway", 3, &l, 97, 96, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_new("gateway", 3, &l, 9, 8, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_new("gateway", 3, &l, 7, RANGELIST_MAX_SHARD, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_new("gateway", 3, &l, 7, 96, 0, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_new("gateway", 3, &l, 7, 96, 1, 0, &r), -EINVAL);
        ASSERT_OK(rangelist_add(l.sets + 0, 40));
        ASSERT_ERR(reshard_new("gateway", 3, &l, 7, 96, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_NULL(r);
        shard_layout_done(&l);
}

TEST(same_total_retires_after_the_new_owner_is_ready) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[3];
        ShardLayout from, res;
        Reshard *r = plan(8, 2, 3, 8, 1, &from);
        size_t n;

        /* 0: 0-3 → 0-2, 1: 4-7 → 4-6, new 2 takes 3 and 7; it goes first. */
        assert_set(&r->items[0].to, "3,7");
        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 2");
        ASSERT_EQ_UINT(r->items[0].started_at, T0);

        /* Not ready yet: nothing moves, and max_starting holds the rest. */
        o[0] = not_ready(2);
        n = step(r, o, 1, T0 + SEC(1), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");

        /* Ready: no live copy to retire, the next one starts. */
        o[0] = ready(2);
        n = step(r, o, 1, T0 + SEC(2), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 0");
        ASSERT_EQ_UINT(r->items[0].state, RITEM_DONE);
        ASSERT_EQ_UINT(r->items[0].ready_at, T0 + SEC(2));

        /* 0's new copy ready; shard 3 it gives away is ready at 2: retire. */
        o[1] = ready(0);
        n = step(r, o, 2, T0 + SEC(3), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 1, retire 0");
        o[2] = ready(1);
        n = step(r, o, 3, T0 + SEC(4), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "retire 1, finished");
        ASSERT_EQ_UINT(r->state, RESHARD_DONE);
        n = step(r, o, 3, T0 + SEC(5), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");

        ASSERT_OK(reshard_result(r, &from, &res));
        ASSERT_EQ_UINT(res.n_instances, 3);
        ASSERT_EQ_UINT(res.epoch, 1);
        assert_set(res.sets + 0, "0-2");
        assert_set(res.sets + 1, "4-6");
        assert_set(res.sets + 2, "3,7");
        ASSERT_EQ_UINT(res.slots[0], 1);
        ASSERT_EQ_UINT(res.slots[1], 1);
        ASSERT_EQ_UINT(res.slots[2], 0);
        shard_layout_done(&res);

        /* Only with the layout it was planned from. */
        from.slots[1] = 1;
        ASSERT_ERR(reshard_result(r, &from, &res), -EINVAL);
        from.slots[1] = 0;
        from.epoch = 2;
        ASSERT_ERR(reshard_result(r, &from, &res), -EINVAL);
        from.epoch = 1;
        ASSERT_OK(rangelist_remove_range(from.sets + 0, 3, 3));
        ASSERT_OK(rangelist_add(from.sets + 1, 3));
        ASSERT_ERR(reshard_result(r, &from, &res), -EINVAL);
        shard_layout_done(&from);
        reshard_free(r);
}

static void refused_with(const char *text, const char *want) {
        _cleanup_free_ char *error = NULL;
        Reshard *r = NULL;

        ASSERT_ERR(reshard_parse(text, &r, &error), -EINVAL);
        ASSERT_NULL(r);
        ASSERT_TRUE(strstr(error, want) != NULL);
}

/* A make-before-break restart: every copy is replaced by one in its other
 * slot with the same shards; the live copy is retired in the step that sees
 * the new one ready, never before; MaxSurge (max_starting) at once. */
TEST(replace_retires_each_copy_once_its_replacement_is_ready) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[3];
        ShardLayout from, res;
        Reshard *r = NULL, *back;
        _cleanup_free_ char *text = NULL;
        size_t n;

        ASSERT_OK(shard_layout_default(9, 3, &from));
        from.slots[1] = 1;
        ASSERT_ERR(reshard_replace("gateway", 4, &from, 3, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_replace("gateway", 4, &from, UINT32_MAX, 0, TIMEOUT, &r), -EINVAL);
        ASSERT_ERR(reshard_replace("gate way", 4, &from, UINT32_MAX, 1, TIMEOUT, &r), -EINVAL);
        ASSERT_OK(reshard_replace("gateway", 4, &from, UINT32_MAX, 1, TIMEOUT, &r));
        ASSERT_TRUE(r->replace);
        ASSERT_EQ_UINT(r->n_items, 3);
        ASSERT_EQ_UINT(r->to_epoch, r->from_epoch);
        ASSERT_EQ_UINT(reshard_cost(r), 9);
        for (uint32_t i = 0; i < 3; i++) {
                ASSERT_EQ_UINT(r->items[i].instance, i);
                ASSERT_TRUE(rangelist_equal(&r->items[i].from, &r->items[i].to));
                ASSERT_EQ_UINT(r->items[i].to_slot, 1 - from.slots[i]);
        }
        text = reshard_text(r);
        ASSERT_TRUE(strstr(text, " id=4 kind=replace state=running ") != NULL);

        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 0");
        o[0] = not_ready(0);
        n = step(r, o, 1, T0 + SEC(1), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        back = reparse(r);
        reshard_free(back);
        o[0] = ready(0);
        n = step(r, o, 1, T0 + SEC(2), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 1, retire 0");
        o[1] = ready(1);
        n = step(r, o, 2, T0 + SEC(3), gate_no, NULL, a);
        ASSERT_ACTS(a, n, "retire 1");
        o[2] = ready(2);
        n = step(r, o, 3, T0 + SEC(4), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 2");
        n = step(r, o, 3, T0 + SEC(5), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "retire 2, finished");
        ASSERT_OK(reshard_result(r, &from, &res));
        ASSERT_EQ_UINT(res.epoch, from.epoch);
        for (uint32_t i = 0; i < 3; i++) {
                ASSERT_TRUE(rangelist_equal(res.sets + i, from.sets + i));
                ASSERT_EQ_UINT(res.slots[i], 1 - from.slots[i]);
        }
        shard_layout_done(&res);
        reshard_free(r);

        /* One instance: one item. */
        ASSERT_OK(reshard_replace("gateway", 5, &from, 2, 1, TIMEOUT, &r));
        ASSERT_EQ_UINT(r->n_items, 1);
        ASSERT_EQ_UINT(r->items[0].instance, 2);
        reshard_free(r);

        /* The text refuses a replace whose item changes its set, and any
         * other kind. */
        refused_with("baton-reshard/1 service=gateway id=4 kind=replace state=running "
                     "from_epoch=1 to_epoch=1 from_count=9 to_count=9 from_instances=3 "
                     "to_instances=3 max_starting=1 health_timeout=1000000 alert=0 items=2 "
                     "0:pending:0-2:0-3:0:1:0:0 1:pending:3-5:4-5:1:0:0:0 reason=-",
                     "a replace keeps a set");
        refused_with("baton-reshard/1 service=gateway id=4 kind=swap state=running "
                     "from_epoch=1 to_epoch=1 from_count=9 to_count=9 from_instances=3 "
                     "to_instances=3 max_starting=1 health_timeout=1000000 alert=0 items=1 "
                     "0:pending:0-2:0-2:0:1:0:0 reason=-",
                     "kind=replace");
        shard_layout_done(&from);
}

TEST(moves_keep_the_old_copy_where_it_was_until_the_new_one_is_ready) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[2];
        ShardLayout from;
        Reshard *r = NULL, *back;
        _cleanup_free_ char *text = NULL, *again = NULL;
        size_t n;

        ASSERT_OK(shard_layout_default(9, 3, &from));
        ASSERT_ERR(reshard_replace_move(&r, "gateway", 6, &from, 1, "not a host!", 1, TIMEOUT),
                   -EINVAL);
        ASSERT_ERR(reshard_replace_move(&r, "gateway", 6, &from, 3, "charlie", 1, TIMEOUT),
                   -EINVAL);
        ASSERT_NULL(r);
        /* The first move makes the reshard; a second joins it in instance
         * order; the same instance twice is refused. */
        ASSERT_OK(reshard_replace_move(&r, "gateway", 6, &from, 2, "charlie", 1, TIMEOUT));
        ASSERT_NOT_NULL(r);
        ASSERT_STREQ(reshard_kind(r), "move");
        ASSERT_OK(reshard_replace_move(&r, "gateway", 6, &from, 0, "charlie", 1, TIMEOUT));
        ASSERT_ERR(reshard_replace_move(&r, "gateway", 6, &from, 2, "bravo", 1, TIMEOUT), -EEXIST);
        ASSERT_EQ_UINT(r->n_items, 2);
        ASSERT_EQ_UINT(r->items[0].instance, 0);
        ASSERT_EQ_UINT(r->items[1].instance, 2);
        ASSERT_STREQ(r->items[0].from_host, "charlie");
        ASSERT_EQ_UINT(reshard_cost(r), 6);
        text = reshard_text(r);
        ASSERT_TRUE(strstr(text, " kind=replace ") != NULL);
        ASSERT_TRUE(strstr(text, "@charlie") != NULL);
        back = reparse(r);
        again = reshard_text(back);
        ASSERT_STREQ(again, text);
        ASSERT_STREQ(reshard_kind(back), "move");
        reshard_free(back);

        /* Each new copy starts in turn; its old copy (on charlie) retires
         * once it is ready. */
        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 0");
        o[0] = ready(0);
        n = step(r, o, 1, T0 + SEC(1), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 2, retire 0");
        o[1] = ready(2);
        n = step(r, o, 2, T0 + SEC(2), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "retire 2, finished");
        reshard_free(r);

        /* A restart's items name no host: a move joining it makes it a
         * restart still. */
        ASSERT_OK(reshard_replace("gateway", 7, &from, 1, 1, TIMEOUT, &r));
        ASSERT_STREQ(reshard_kind(r), "restart");
        ASSERT_OK(reshard_replace_move(&r, "gateway", 7, &from, 0, "charlie", 1, TIMEOUT));
        ASSERT_STREQ(reshard_kind(r), "restart");
        reshard_free(r);
        r = plan(8, 2, 3, 8, 1, NULL);
        ASSERT_STREQ(reshard_kind(r), "reshard");
        /* Only a replace takes a move. */
        ASSERT_ERR(reshard_replace_move(&r, "gateway", 3, &from, 0, "charlie", 1, TIMEOUT),
                   -EINVAL);
        reshard_free(r);
        shard_layout_done(&from);
}

/* Records what each start identifies: "3:9-11 0:2;" */
static bool gate_log(uint32_t instance, const RangeList *shards, void *userdata) {
        char **log = userdata, *next = NULL;
        _cleanup_free_ char *set = rangelist_format(shards);

        ASSERT_NOT_NULL(set);
        ASSERT_TRUE(asprintf(&next, "%s%" PRIu32 ":%s;", *log, instance, set) >= 0);
        free(*log);
        *log = next;
        return true;
}

TEST(live_reshard_identifies_only_what_changes_owner) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[3];
        ShardLayout from, res;
        Reshard *r, *back;
        _cleanup_free_ char *text = NULL, *log = strdup("");
        size_t n;

        ASSERT_NOT_NULL(log);
        /* 3 → 4 instances of 12 shards: the new instance gains 3, the
         * others lose 1 each; only the 3 identify. */
        r = plan(12, 3, 4, 12, 1, &from);
        ASSERT_EQ_UINT(reshard_cost(r), 12);
        ASSERT_OK(reshard_make_reload(r));
        ASSERT_ERR(reshard_make_reload(r), -EINVAL);
        ASSERT_TRUE(r->reload);
        ASSERT_EQ_UINT(reshard_cost(r), 3);
        ASSERT_STREQ(reshard_kind(r), "reshard");
        for (size_t k = 0; k < r->n_items; k++)
                if (r->items[k].from.n_ranges > 0)
                        ASSERT_EQ_UINT(r->items[k].to_slot, r->items[k].from_slot);
        text = reshard_text(r);
        ASSERT_TRUE(strstr(text, " kind=reload ") != NULL);
        back = reparse(r);
        ASSERT_TRUE(back->reload);
        reshard_free(back);

        /* The gainer identifies its set; the losers wait for it, then drop
         * what it took (no start, no new copy). */
        n = step(r, NULL, 0, T0, gate_log, &log, a);
        ASSERT_ACTS(a, n, "start 3");
        ASSERT_STREQ(log, "3:3,7,11;");
        o[0] = ready(3);
        n = step(r, o, 1, T0 + SEC(1), gate_log, &log, a);
        ASSERT_ACTS(a, n, "retire 0, retire 1, retire 2, finished");
        back = reparse(r);
        reshard_free(back);
        ASSERT_OK(reshard_result(r, &from, &res));
        for (uint32_t i = 0; i < 3; i++)
                ASSERT_EQ_UINT(res.slots[i], from.slots[i]);
        shard_layout_done(&res);
        reshard_free(r);
        shard_layout_done(&from);

        /* 4 → 3: the instances that stay gain what the fourth gives away;
         * each identifies only its gain, through the gate. */
        free(log);
        log = strdup("");
        ASSERT_NOT_NULL(log);
        r = plan(12, 4, 3, 12, 1, &from);
        ASSERT_OK(reshard_make_reload(r));
        ASSERT_EQ_UINT(reshard_cost(r), 3);
        n = step(r, NULL, 0, T0, gate_log, &log, a);
        ASSERT_ACTS(a, n, "start 0");
        ASSERT_STREQ(log, "0:9;");
        o[0] = ready(0);
        n = step(r, o, 1, T0 + SEC(1), gate_log, &log, a);
        ASSERT_ACTS(a, n, "start 1, retire 0");
        o[1] = ready(1);
        n = step(r, o, 2, T0 + SEC(2), gate_log, &log, a);
        ASSERT_ACTS(a, n, "start 2, retire 1");
        o[2] = ready(2);
        n = step(r, o, 3, T0 + SEC(3), gate_log, &log, a);
        ASSERT_ACTS(a, n, "retire 2, retire 3, finished");
        ASSERT_STREQ(log, "0:9;1:10;2:11;");
        reshard_free(r);
        shard_layout_done(&from);

        /* Only at the same total, only before it runs. */
        r = plan(8, 2, 3, 16, 1, NULL);
        ASSERT_ERR(reshard_make_reload(r), -EINVAL);
        reshard_free(r);
        /* A live change keeps its slot: the text says so. */
        refused_with("baton-reshard/1 service=gateway id=4 kind=reload state=running "
                     "from_epoch=1 to_epoch=1 from_count=8 to_count=8 from_instances=2 "
                     "to_instances=3 max_starting=1 health_timeout=1000000 alert=0 items=3 "
                     "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:0:0:0 "
                     "reason=-",
                     "a live change keeps the slot");
}

/* The most shards of the gain of item k in one bucket. */
static uint64_t gain_peak(const Reshard *r, size_t k, uint32_t concurrency) {
        _cleanup_(rangelist_done) RangeList gain = { 0 };
        _cleanup_free_ uint64_t *count = calloc(concurrency, sizeof(uint64_t));
        uint64_t peak = 0;

        ASSERT_NOT_NULL(count);
        ASSERT_OK(rangelist_copy(&gain, &r->items[k].to));
        ASSERT_OK(rangelist_subtract(&gain, &r->items[k].from));
        for (size_t g = 0; g < gain.n_ranges; g++)
                for (uint32_t s = gain.ranges[g].lo; s <= gain.ranges[g].hi; s++) {
                        count[s % concurrency]++;
                        peak = MAX(peak, count[s % concurrency]);
                }
        return peak;
}

TEST(gains_are_spread_over_the_buckets) {
        uint64_t seed = 23;
        ShardLayout l;
        Reshard *r = NULL, *back;

        /* 160 instances of 16 shards, 16 buckets, one more instance: the
         * rebalance takes each old instance's last shard, all in bucket 15;
         * spread, the new instance gains one shard per bucket. */
        ASSERT_OK(shard_layout_default(2560, 160, &l));
        ASSERT_OK(reshard_new("gateway", 1, &l, 161, 2560, 1, TIMEOUT, &r));
        ASSERT_EQ_UINT(gain_peak(r, 0, 16), 15);
        ASSERT_OK(reshard_spread_gains(r, 16));
        ASSERT_EQ_UINT(r->items[0].instance, 160);
        ASSERT_EQ_UINT(gain_peak(r, 0, 16), 1);
        ASSERT_EQ_UINT(reshard_cost(r), 240); /* new copies: the 16 changed sets */
        ASSERT_OK(reshard_make_reload(r));
        ASSERT_EQ_UINT(reshard_cost(r), 15);
        back = reparse(r); /* each still only gains or only loses */
        reshard_free(back);
        ASSERT_ERR(reshard_spread_gains(r, 0), -EINVAL);
        reshard_free(r);
        shard_layout_done(&l);

        /* Random layouts: the text checks hold, the same shards move, and no
         * gainer's busiest bucket got busier. */
        for (unsigned i = 0; i < 300; i++) {
                uint32_t shards = (uint32_t) between(&seed, 2, 400);
                uint32_t n = (uint32_t) between(&seed, 1, MIN(shards, 20));
                uint32_t n_to = (uint32_t) between(&seed, 1, MIN(shards, 24));
                uint32_t c = (uint32_t) between(&seed, 1, 20);
                uint64_t before[32];

                random_layout(&seed, shards, n, &l);
                if (n_to == n) {
                        shard_layout_done(&l);
                        continue;
                }
                ASSERT_OK(reshard_new("gateway", 1, &l, n_to, shards, 1, TIMEOUT, &r));
                ASSERT_TRUE(r->n_items <= ELEMENTSOF(before));
                for (size_t k = 0; k < r->n_items; k++)
                        before[k] = gain_peak(r, k, c);
                ASSERT_OK(reshard_spread_gains(r, c));
                for (size_t k = 0; k < r->n_items; k++) {
                        uint64_t peak = gain_peak(r, k, c);
                        uint64_t gained = rangelist_count(&r->items[k].to) -
                                          MIN(rangelist_count(&r->items[k].to),
                                              rangelist_count(&r->items[k].from));

                        ASSERT_LE_UINT(peak, before[k]);
                        ASSERT_TRUE(peak >= (gained + c - 1) / c);
                }
                back = reparse(r);
                reshard_free(back);
                reshard_free(r);
                shard_layout_done(&l);
        }
}

TEST(loser_waits_for_the_gainer) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[2];
        Reshard *r = plan(8, 2, 3, 8, 2, NULL), *copy;
        size_t n;

        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 2, start 0");
        /* The loser's new copy is ready first: it keeps its live copy (shard
         * 3 has no other ready owner) while the next one starts. */
        o[0] = not_ready(2);
        o[1] = ready(0);
        n = step(r, o, 2, T0 + SEC(1), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 1");
        ASSERT_EQ_UINT(r->items[1].state, RITEM_READY);
        n = step(r, o, 2, T0 + SEC(2), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        /* Nothing retired yet: it may still go back. */
        copy = reparse(r);
        ASSERT_OK(reshard_abort(copy, NULL));
        reshard_free(copy);

        o[0] = ready(2);
        n = step(r, o, 2, T0 + SEC(3), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "retire 0");
        reshard_free(r);
}

TEST(going_away_instance_retires_without_a_new_copy) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[3];
        ShardLayout from, res;
        Reshard *r = plan(9, 3, 2, 9, 3, &from);
        size_t n;

        /* 0: 0-2 → 0-2,6-7 (gets the extra), 1: 3-5 → 3-5,8; 2 goes. */
        ASSERT_EQ_UINT(r->n_items, 3);
        assert_set(&r->items[0].to, "0-2,6-7");
        assert_set(&r->items[1].to, "3-5,8");
        ASSERT_EQ_UINT(r->items[2].instance, 2);
        ASSERT_EQ_UINT(r->items[2].to.n_ranges, 0);
        ASSERT_EQ_UINT(reshard_cost(r), 9);

        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 0, start 1");
        o[0] = ready(0);
        o[1] = not_ready(1);
        o[2] = ready(2); /* not a new copy: ignored */
        n = step(r, o, 3, T0 + SEC(1), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "retire 0");
        o[1] = ready(1);
        n = step(r, o, 2, T0 + SEC(2), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "retire 1, retire 2, finished");
        ASSERT_OK(reshard_result(r, &from, &res));
        ASSERT_EQ_UINT(res.n_instances, 2);
        assert_set(res.sets + 1, "3-5,8");
        shard_layout_done(&res);
        shard_layout_done(&from);
        reshard_free(r);
}

TEST(new_total_cuts_over_once_all_are_ready) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[3];
        ShardLayout from, res;
        Reshard *r = plan(8, 2, 3, 12, 3, &from);
        size_t n;

        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 0, start 1, start 2");
        o[0] = ready(0);
        o[1] = ready(1);
        o[2] = not_ready(2);
        n = step(r, o, 3, T0 + SEC(1), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        ASSERT_EQ_UINT(r->items[0].state, RITEM_READY);

        /* Paused: the cut-over waits for the operator. */
        ASSERT_OK(reshard_pause(r, "hold the cut-over"));
        o[2] = ready(2);
        n = step(r, o, 3, T0 + SEC(2), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        ASSERT_EQ_UINT(r->items[2].state, RITEM_READY);
        ASSERT_OK(reshard_resume(r));
        n = step(r, o, 3, T0 + SEC(3), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "cutover, finished");
        for (size_t k = 0; k < r->n_items; k++)
                ASSERT_EQ_UINT(r->items[k].state, RITEM_DONE);

        ASSERT_OK(reshard_result(r, &from, &res));
        ASSERT_EQ_UINT(res.epoch, 2);
        ASSERT_EQ_UINT(res.shard_count, 12);
        assert_set(res.sets + 0, "0-3");
        assert_set(res.sets + 2, "8-11");
        ASSERT_EQ_UINT(res.slots[0], 1);
        ASSERT_EQ_UINT(res.slots[2], 0);
        shard_layout_done(&res);
        shard_layout_done(&from);
        reshard_free(r);
}

/* Refuses the new copy that would own shard 0. */
static bool gate_not_zero(uint32_t instance, const RangeList *shards, void *userdata) {
        (void) userdata;
        return !rangelist_contains(shards, 0);
}

TEST(gate_refusal_keeps_start_order) {
        ReshardAction a[ACTS_MAX];
        Reshard *r = plan(12, 4, 4, 16, 4, NULL);
        unsigned budget = 2;
        size_t n;

        /* The first refused: the later ones, which the gate would take, wait. */
        n = step(r, NULL, 0, T0, gate_not_zero, NULL, a);
        ASSERT_ACTS(a, n, "");

        n = step(r, NULL, 0, T0, gate_count, &budget, a);
        ASSERT_ACTS(a, n, "start 0, start 1");
        n = step(r, NULL, 0, T0 + SEC(1), gate_no, NULL, a);
        ASSERT_ACTS(a, n, "");
        budget = 1;
        n = step(r, NULL, 0, T0 + SEC(2), gate_count, &budget, a);
        ASSERT_ACTS(a, n, "start 2");
        ASSERT_EQ_UINT(r->items[3].state, RITEM_PENDING);
        reshard_free(r);
}

TEST(timeout_fails_once_and_resume_retries) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[2] = { not_ready(0), not_ready(1) };
        Reshard *r = plan(8, 2, 2, 10, 1, NULL), *back;
        size_t n;

        n = step(r, o, 2, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 0");
        /* Exactly the timeout is not past it. */
        n = step(r, o, 2, T0 + TIMEOUT, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        n = step(r, o, 2, T0 + TIMEOUT + 1, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "alert");
        ASSERT_EQ_UINT(r->state, RESHARD_FAILED);
        ASSERT_EQ_UINT(r->items[0].state, RITEM_FAILED);
        ASSERT_STREQ(r->reason, "instance 0: new copy not ready within 10s");
        ASSERT_TRUE(r->alert_raised);

        /* Failed: nothing starts, no second alert, also after a crash. */
        n = step(r, o, 2, T0 + SEC(30), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        back = reparse(r);
        reshard_free(r);
        r = back;
        n = step(r, o, 2, T0 + SEC(31), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        ASSERT_ERR(reshard_pause(r, NULL), -EBUSY);

        ASSERT_OK(reshard_resume(r));
        ASSERT_NULL(r->reason);
        ASSERT_EQ_UINT(r->items[0].state, RITEM_PENDING);
        ASSERT_EQ_UINT(r->items[0].started_at, 0);
        n = step(r, o, 2, T0 + SEC(40), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "resolve, start 0");
        n = step(r, o, 2, T0 + SEC(41), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");

        /* A second failure is a second alert, resolved once by the abort. */
        n = step(r, o, 2, T0 + SEC(60), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "alert");
        ASSERT_OK(reshard_abort(r, "no good"));
        n = step(r, o, 2, T0 + SEC(61), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "resolve, discard 0");
        n = step(r, o, 2, T0 + SEC(62), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        reshard_free(r);
}

TEST(timeout_while_paused_fails) {
        ReshardAction a[ACTS_MAX];
        Reshard *r = plan(8, 2, 3, 8, 1, NULL);
        size_t n;

        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 2");
        ASSERT_OK(reshard_pause(r, NULL));
        ASSERT_STREQ(r->reason, "paused by operator");
        ASSERT_ERR(reshard_pause(r, NULL), -EBUSY);
        n = step(r, NULL, 0, T0 + SEC(11), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "alert");
        ASSERT_EQ_UINT(r->state, RESHARD_FAILED);
        ASSERT_STREQ(r->reason, "instance 2: new copy not ready within 10s");
        reshard_free(r);
}

TEST(pause_holds_starts_but_not_retires) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[2] = { ready(2), ready(0) };
        Reshard *r = plan(8, 2, 3, 8, 2, NULL);
        size_t n;

        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 2, start 0");
        ASSERT_OK(reshard_pause(r, "lunch"));
        n = step(r, o, 2, T0 + SEC(1), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "retire 0");
        ASSERT_EQ_UINT(r->items[2].state, RITEM_PENDING);
        ASSERT_STREQ(r->reason, "lunch");
        ASSERT_ERR(reshard_abort(r, NULL), -EBUSY); /* a live copy is gone */
        ASSERT_EQ_UINT(r->state, RESHARD_PAUSED);
        ASSERT_OK(reshard_resume(r));
        ASSERT_ERR(reshard_resume(r), -EBUSY);
        n = step(r, o, 2, T0 + SEC(2), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 1");
        reshard_free(r);
}

TEST(abort_rules) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[3] = { ready(0), ready(1), ready(2) };
        Reshard *r = plan(8, 2, 3, 8, 3, NULL);
        size_t n;

        /* The new instance's copy is up (DONE, it had no live copy) and two
         * more are starting: all three are discarded. */
        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 2, start 0, start 1");
        n = step(r, o + 2, 1, T0 + SEC(1), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        ASSERT_EQ_UINT(r->items[0].state, RITEM_DONE);
        ASSERT_OK(reshard_abort(r, NULL));
        ASSERT_STREQ(r->reason, "aborted by operator");
        ASSERT_ERR(reshard_abort(r, NULL), -EBUSY);
        ASSERT_ERR(reshard_resume(r), -EBUSY);
        ASSERT_ERR(reshard_pause(r, NULL), -EBUSY);
        n = step(r, o, 3, T0 + SEC(2), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "discard 2, discard 0, discard 1");
        n = step(r, o, 3, T0 + SEC(3), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        reshard_free(r);

        /* After a cut-over, and when done, there is no way back. */
        r = plan(8, 2, 2, 10, 2, NULL);
        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 0, start 1");
        n = reshard_step(r, o, 2, T0 + SEC(1), gate_yes, NULL, a, 1);
        ASSERT_ACTS(a, n, "cutover");
        ASSERT_EQ_UINT(r->state, RESHARD_RUNNING);
        ASSERT_ERR(reshard_abort(r, NULL), -EBUSY);
        n = step(r, o, 2, T0 + SEC(2), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "finished");
        ASSERT_ERR(reshard_abort(r, NULL), -EBUSY);
        ASSERT_ERR(reshard_pause(r, NULL), -EBUSY);
        ASSERT_ERR(reshard_resume(r), -EBUSY);
        reshard_free(r);

        /* Before any start. */
        r = plan(8, 2, 2, 10, 2, NULL);
        ASSERT_OK(reshard_abort(r, "changed my mind"));
        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        reshard_free(r);
}

TEST(replayed_step_issues_nothing) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[3] = { ready(2), ready(0), not_ready(1) };
        Reshard *r = plan(8, 2, 3, 8, 2, NULL), *back;
        size_t n;

        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 2, start 0");
        n = step(r, o, 3, T0 + SEC(1), gate_no, NULL, a);
        ASSERT_ACTS(a, n, "retire 0");
        /* The controller dies after persisting; the same step again. */
        back = reparse(r);
        n = step(back, o, 3, T0 + SEC(1), gate_no, NULL, a);
        ASSERT_ACTS(a, n, "");
        n = step(back, o, 3, T0 + SEC(1), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 1");
        reshard_free(back);
        reshard_free(r);
}

TEST(small_action_buffer_takes_nothing_it_cannot_report) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[3] = { ready(0), ready(1), ready(2) };
        Reshard *r = plan(8, 2, 3, 8, 3, NULL);
        size_t n;

        n = reshard_step(r, NULL, 0, T0, gate_yes, NULL, a, 1);
        ASSERT_ACTS(a, n, "start 2");
        n = reshard_step(r, NULL, 0, T0, gate_yes, NULL, a, 0);
        ASSERT_EQ_UINT(n, 0);
        ASSERT_EQ_UINT(r->items[1].state, RITEM_PENDING);
        n = reshard_step(r, NULL, 0, T0, gate_yes, NULL, a, 2);
        ASSERT_ACTS(a, n, "start 0, start 1");
        n = reshard_step(r, o, 3, T0 + SEC(1), gate_yes, NULL, a, 1);
        ASSERT_ACTS(a, n, "retire 0");
        ASSERT_EQ_UINT(r->items[2].state, RITEM_READY);
        n = reshard_step(r, o, 3, T0 + SEC(2), gate_yes, NULL, a, 1);
        ASSERT_ACTS(a, n, "retire 1");
        ASSERT_EQ_UINT(r->state, RESHARD_RUNNING);
        n = reshard_step(r, o, 3, T0 + SEC(3), gate_yes, NULL, a, 1);
        ASSERT_ACTS(a, n, "finished");
        reshard_free(r);
}

TEST(observations_are_merged_conservatively) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[3] = { ready(0), not_ready(0), ready(7) };
        Reshard *r = plan(8, 2, 2, 10, 1, NULL);
        size_t n;

        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 0");
        n = step(r, o, 3, T0 + SEC(1), gate_yes, NULL, a);
        ASSERT_EQ_UINT(r->items[0].state, RITEM_STARTING);
        n = step(r, o, 1, T0 + SEC(2), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "start 1");
        ASSERT_EQ_UINT(r->items[0].state, RITEM_READY);
        /* A clock that went back causes no timeout. */
        n = step(r, NULL, 0, T0 - SEC(100), gate_yes, NULL, a);
        ASSERT_ACTS(a, n, "");
        reshard_free(r);
}

/* ---- reshard text -------------------------------------------------------- */

#define RH(state)                                                                                  \
        "baton-reshard/1 service=gateway id=3 state=" state " from_epoch=1 to_epoch=1 "            \
        "from_count=8 to_count=8 from_instances=2 to_instances=3 max_starting=1 "                  \
        "health_timeout=10000000 alert=0 items=3 "
#define R0 RH("running")
#define N0                                                                                         \
        "baton-reshard/1 service=gateway id=3 state=running from_epoch=1 to_epoch=2 "              \
        "from_count=8 to_count=10 from_instances=2 to_instances=2 max_starting=2 "                 \
        "health_timeout=10000000 alert=0 items=2 "

TEST(reshard_format_is_exact) {
        Reshard *r = plan(8, 2, 3, 8, 1, NULL), *back;
        ReshardAction a[ACTS_MAX];
        ReshardObserved o = ready(2);
        _cleanup_free_ char *t1 = NULL, *t2 = NULL, *t3 = NULL;
        size_t n;

        t1 = reshard_text(r);
        ASSERT_STREQ(t1, R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 "
                            "1:pending:4-7:4-6:0:1:0:0 reason=-");
        n = step(r, NULL, 0, T0, gate_yes, NULL, a);
        n = step(r, &o, 1, T0 + 5, gate_yes, NULL, a);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_OK(reshard_pause(r, "a \"quoted\"\\ reason\n\x01\xff"));
        t2 = reshard_text(r);
        ASSERT_STREQ(t2, "baton-reshard/1 service=gateway id=3 state=paused from_epoch=1 "
                         "to_epoch=1 from_count=8 to_count=8 from_instances=2 to_instances=3 "
                         "max_starting=1 health_timeout=10000000 alert=0 items=3 "
                         "2:done:-:3,7:0:0:1700000000000000:1700000000000005 "
                         "0:starting:0-3:0-2:0:1:1700000000000005:0 1:pending:4-7:4-6:0:1:0:0 "
                         "reason=\"a \\\"quoted\\\"\\\\ reason\\n\\x01\\xff\"");
        back = reparse(r);
        ASSERT_STREQ(back->reason, r->reason);
        t3 = reshard_text(back);
        ASSERT_STREQ(t3, t2);
        reshard_free(back);
        reshard_free(r);
}

TEST(reshard_parse_refusals) {
        static const BadText cases[] = {
                { "", "", "expected \"baton-reshard/1\"" },
                { "baton-reshard/10 service=x", "baton",
                  "unsupported version \"baton-reshard/10\" (this is baton-reshard/1)" },
                { "baton-reshard/1 service=gate@way id=1", "gate@",
                  "service: invalid service name \"gate@way\"" },
                { "baton-reshard/1 service= id=1", " id", "service: invalid service name \"\"" },
                { "baton-reshard/1 service=gw id=1 state=runnin from_epoch=1", "runnin",
                  "state: unknown state \"runnin\"" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=0", "0",
                  "from_epoch must be at least 1" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=2 "
                  "from_count=8 to_count=8",
                  "2 from", "to_epoch must equal from_epoch (same total)" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                  "from_count=8 to_count=9",
                  "1 from_count", "to_epoch must be from_epoch + 1 (new total)" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                  "from_count=8 to_count=8 from_instances=9",
                  "9", "from_instances: 9 is not within 1..8" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                  "from_count=8 to_count=8 from_instances=2 to_instances=3 max_starting=0",
                  "0", "max_starting must be at least 1" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                  "from_count=8 to_count=8 from_instances=2 to_instances=3 max_starting=1 "
                  "health_timeout=0",
                  "0", "health_timeout must be at least 1" },
                AT_LAST("baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                        "from_count=8 to_count=8 from_instances=2 to_instances=3 max_starting=1 "
                        "health_timeout=1 alert=x",
                        "alert: expected 0 or 1"),
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                  "from_count=8 to_count=8 from_instances=2 to_instances=3 max_starting=1 "
                  "health_timeout=1 alert=0 items=4",
                  "4", "items: 4 is not within 1..3" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                  "from_count=8 to_count=8 from_instances=2 to_instances=3 max_starting=1 "
                  "health_timeout=1 alert=0 items=3 0:pending:0-3:0-2:0:1:0:0 reason=-",
                  "3 0:", "items: text too short for 3 items" },
                AT_LAST(R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 "
                           "1:pending:4-7:4-6:0:1:0:0 reason=- ",
                        "unexpected text after the reason"),
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=\"\\x41\"",
                  "\\x41", "reason: needless escape \\x41" },
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=\"a",
                  NULL, "reason: missing closing quote" },
                { R0 "3:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "3:pending", "item 0: instance 3 is in neither layout (2 and 3 instances)" },
                { R0 "2:pendin:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "pendin:", "item 0 state: unknown state \"pendin\"" },
                { R0 "2:pending:3:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "3:3,7", "item 0: instance 2 was not in the old layout but has a from set" },
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:-:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "-:0-2", "item 1: instance 0 was in the old layout but has no from set" },
                { R0 "2:pending:-:-:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "-:0:0:0:0", "item 0: instance 2 is in the new layout but has no to set" },
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-3:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "0-3:0:1", "item 1 to: shard 3 is already in the to set of instance 2" },
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:3-7:4-6:0:1:0:0 "
                     "reason=-",
                  "3-7", "item 2 from: shard 3 is already in the from set of instance 0" },
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-8:0:1:0:0 "
                     "reason=-",
                  "4-8", "item 2 to: shard 8 is not below the total 8" },
                { R0 "2:pending:-:3,7:0:1:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "1:0:0 0:", "item 0: a new instance uses slot 0" },
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:1:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "1:0:0 1:", "item 1: to_slot must be the other slot" },
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:2:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "2:0:0 1:", "item 1 to_slot: out of range (at most 1)" },
                { R0 "0:pending:0-3:0-2:0:1:0:0 2:pending:-:3,7:0:0:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "2:pending", "item 1: gainers come before losers" },
                { R0 "2:pending:-:3,7:0:0:0:0 1:pending:4-7:4-6:0:1:0:0 0:pending:0-3:0-2:0:1:0:0 "
                     "reason=-",
                  "0:pending", "item 2: instance 0 not after 1" },
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2,4:0:1:0:0 "
                     "1:pending:4-7:5-6:0:1:0:0 reason=-",
                  "0:pending", "item 1: an instance either only gains or only loses shards" },
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-5:0:1:0:0 "
                     "reason=-",
                  " reason", "the items' old and new sets differ in shards" },
                { R0 "2:pending:-:3,7:0:0:5:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "2:pending", "item 0: pending but has started_at/ready_at" },
                { R0 "2:starting:-:3,7:0:0:5:6 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "2:starting", "item 0: starting but has ready_at" },
                { R0 "2:starting:-:3,7:0:0:5:0 0:starting:0-3:0-2:0:1:5:0 "
                     "1:pending:4-7:4-6:0:1:0:0 reason=-",
                  " reason", "2 items starting, more than max_starting 1" },
                { R0 "2:starting:-:3,7:0:0:5:0 0:done:0-3:0-2:0:1:5:6 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  "0:done", "item 1: retired while shards it gave away were not ready elsewhere" },
                { RH("done") "2:done:-:3,7:0:0:5:6 0:done:0-3:0-2:0:1:5:6 "
                             "1:pending:4-7:4-6:0:1:0:0 reason=-",
                  " reason", "state done but 1 of 3 items are not" },
                { R0 "2:failed:-:3,7:0:0:5:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=-",
                  " reason", "state running with 1 failed items" },
                { R0 "2:pending:-:3,7:0:0:0:0 0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 "
                     "reason=\"x\"",
                  "reason=", "state running has no reason" },
                { N0 "0:ready:0-3:0-4:0:1:5:6 1:ready:4-7:5-9:0:1:5:6 reason=-", NULL, "" },
                { N0 "0:ready:0-3:0-3:0:1:5:6 1:ready:4-7:5-9:0:1:5:6 reason=-", "0:ready",
                  "item 0: the new set is not the even split of 10 shards" },
                { N0 "1:ready:0-3:0-4:0:1:5:6 0:ready:4-7:5-9:0:1:5:6 reason=-", "1:ready",
                  "item 0: expected instance 0" },
                { N0 "0:done:0-3:0-4:0:1:5:6 1:ready:4-7:5-9:0:1:5:6 reason=-", " reason",
                  "a new total cuts over all items at once" },
                { N0 "0:pending:0-2:0-4:0:1:0:0 1:pending:4-7:5-9:0:1:0:0 reason=-", " reason",
                  "the old sets do not cover the 8 shards" },
        };

        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                if (cases[k].message[0] == 0) {
                        /* The base texts themselves are fine. */
                        Reshard *r = NULL;
                        _cleanup_free_ char *error = NULL;

                        if (reshard_parse(cases[k].text, &r, &error) < 0)
                                TAP_FAIL_("\"%s\" refused: %s", cases[k].text, error);
                        reshard_free(r);
                        continue;
                }
                check_refused(cases + k, false);
        }
}

TEST(reshard_states_the_machine_cannot_reach) {
        static const BadText cases[] = {
                { "baton-reshard/1 service=gw id=1 state=failed from_epoch=1 to_epoch=2 "
                  "from_count=8 to_count=10 from_instances=2 to_instances=2 max_starting=2 "
                  "health_timeout=1 alert=1 items=2 0:ready:0-3:0-4:0:1:5:6 "
                  "1:ready:4-7:5-9:0:1:5:6 reason=-",
                  " reason", "state failed without a failed item" },
                { "baton-reshard/1 service=gw id=1 state=paused from_epoch=1 to_epoch=2 "
                  "from_count=8 to_count=10 from_instances=2 to_instances=2 max_starting=2 "
                  "health_timeout=1 alert=1 items=2 0:ready:0-3:0-4:0:1:5:6 "
                  "1:ready:4-7:5-9:0:1:5:6 reason=-",
                  "reason=", "state paused needs a reason" },
                { "baton-reshard/1 service=gw id=1 state=aborted from_epoch=1 to_epoch=1 "
                  "from_count=8 to_count=8 from_instances=2 to_instances=3 max_starting=1 "
                  "health_timeout=1 alert=0 items=3 2:done:-:3,7:0:0:5:6 0:done:0-3:0-2:0:1:5:6 "
                  "1:pending:4-7:4-6:0:1:0:0 reason=\"x\"",
                  " reason", "state aborted after a live copy was retired" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                  "from_count=8 to_count=8 from_instances=3 to_instances=2 max_starting=1 "
                  "health_timeout=1 alert=0 items=3 0:pending:0-2:0-2,6-7:0:1:0:0 "
                  "1:pending:3-5:3-5,8:0:1:0:0 2:ready:6-8:-:0:1:0:0 reason=-",
                  "8:0:1", "item 1 to: shard 8 is not below the total 8" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                  "from_count=9 to_count=9 from_instances=3 to_instances=2 max_starting=1 "
                  "health_timeout=1 alert=0 items=3 0:pending:0-2:0-2,6-7:0:1:0:0 "
                  "1:pending:3-5:3-5,8:0:1:0:0 2:ready:6-8:-:0:1:0:0 reason=-",
                  "2:ready", "item 2: ready without a new copy" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                  "from_count=9 to_count=9 from_instances=3 to_instances=2 max_starting=1 "
                  "health_timeout=1 alert=0 items=3 0:pending:0-2:0-2,6-7:0:1:0:0 "
                  "1:pending:3-5:3-5,8:0:1:0:0 2:done:6-8:-:0:1:0:0 reason=-",
                  "2:done", "item 2: retired while shards it gave away were not ready elsewhere" },
                { "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=1 "
                  "from_count=9 to_count=9 from_instances=3 to_instances=2 max_starting=1 "
                  "health_timeout=1 alert=0 items=3 0:pending:0-2:0-2,6-7:0:1:0:0 "
                  "1:pending:3-5:3-5,8:0:1:0:0 2:pending:6-8:-:0:1:7:0 reason=-",
                  "2:pending", "item 2: pending but has started_at/ready_at" },
        };

        for (size_t k = 0; k < ELEMENTSOF(cases); k++)
                check_refused(cases + k, false);
}

/* ---- the simulator ------------------------------------------------------- */

/* The model fleet: per instance its live copy (from the old layout) and its
 * new copy (started by START, ready some steps later or never, gone with
 * DISCARD). */
typedef struct World {
        uint64_t seed;
        const ShardLayout *from;
        Reshard *r;
        uint32_t n_max;
        bool same;
        bool *live;      /* live copy running */
        bool *fresh;     /* new copy running */
        bool *ready;     /* new copy ready */
        int *countdown;  /* steps until ready; -1 never */
        bool *startable; /* a START is allowed: not started in this attempt */
        bool *stale;     /* the new copy is one whose item failed (still running) */
        bool cutover, finished, alert_open, any_retired, any_failure;
        uint64_t charged;
        /* The gate's consents in this step, to match against the STARTs. */
        RangeList consents[64];
        size_t n_consents;
        bool refused;
        unsigned refuse_percent;
        /* What happened, for the summary. */
        uint64_t steps, starts, retires, discards, alerts, resolves, crashes, replays, refusals,
                pauses, aborts, small_buffers;
} World;

static bool world_gate(uint32_t instance, const RangeList *shards, void *userdata) {
        World *w = userdata;

        /* A refusal ends the scan: starts keep their order. */
        if (w->refused)
                TAP_FAIL_("the gate was asked again after a refusal in the same step");
        if (below(&w->seed, 100) < w->refuse_percent) {
                w->refusals++;
                w->refused = true;
                return false;
        }
        ASSERT_TRUE(w->n_consents < ELEMENTSOF(w->consents));
        rangelist_init(w->consents + w->n_consents);
        ASSERT_OK(rangelist_copy(w->consents + w->n_consents, shards));
        w->n_consents++;
        return true;
}

static ReshardItem *world_item(World *w, uint32_t instance) {
        for (size_t k = 0; k < w->r->n_items; k++)
                if (w->r->items[k].instance == instance)
                        return w->r->items + k;
        return NULL;
}

static void world_apply(World *w, const ReshardAction *a, size_t n) {
        size_t consent = 0;

        for (size_t i = 0; i < n; i++) {
                uint32_t inst = a[i].instance;
                ReshardItem *it = world_item(w, inst);

                switch (a[i].kind) {
                case RESHARD_ACTION_START:
                        ASSERT_NOT_NULL(it);
                        if (consent >= w->n_consents)
                                TAP_FAIL_("start %u without the gate's consent", inst);
                        ASSERT_TRUE(rangelist_equal(w->consents + consent, &it->to));
                        consent++;
                        if (!w->startable[inst])
                                TAP_FAIL_("instance %u started twice in one attempt", inst);
                        w->startable[inst] = false;
                        w->stale[inst] = false;
                        w->fresh[inst] = true;
                        w->ready[inst] = false;
                        w->countdown[inst] = one_in(&w->seed, 12) ? -1 : (int) below(&w->seed, 6);
                        w->charged += rangelist_count(&it->to);
                        w->starts++;
                        break;
                case RESHARD_ACTION_RETIRE:
                        ASSERT_TRUE(w->same);
                        if (!w->live[inst])
                                TAP_FAIL_("retire of instance %u, which has no live copy", inst);
                        w->live[inst] = false;
                        w->any_retired = true;
                        w->retires++;
                        break;
                case RESHARD_ACTION_DISCARD:
                        if (!w->fresh[inst])
                                TAP_FAIL_("discard of instance %u, which has no new copy", inst);
                        w->fresh[inst] = w->ready[inst] = w->stale[inst] = false;
                        w->discards++;
                        break;
                case RESHARD_ACTION_CUTOVER:
                        ASSERT_FALSE(w->same);
                        ASSERT_FALSE(w->cutover);
                        for (uint32_t i2 = 0; i2 < w->n_max; i2++)
                                w->live[i2] = false;
                        w->cutover = w->any_retired = true;
                        break;
                case RESHARD_ACTION_ALERT:
                        ASSERT_FALSE(w->alert_open);
                        ASSERT_NOT_NULL(w->r->reason);
                        w->alert_open = true;
                        w->alerts++;
                        break;
                case RESHARD_ACTION_RESOLVE:
                        ASSERT_TRUE(w->alert_open);
                        w->alert_open = false;
                        w->resolves++;
                        break;
                case RESHARD_ACTION_FINISHED:
                        ASSERT_FALSE(w->finished);
                        w->finished = true;
                        break;
                default:
                        TAP_FAIL_("unknown action %d", (int) a[i].kind);
                }
        }
        /* Every consent is a gate taken: it must have been used. */
        ASSERT_EQ_UINT(consent, w->n_consents);
        for (size_t i = 0; i < w->n_consents; i++)
                rangelist_done(w->consents + i);
        w->n_consents = 0;
        w->refused = false;
}

/* At every step: every shard of the serving epoch has a ready owner — a
 * live copy not yet retired, or a new copy the reshard holds READY or DONE
 * (and that is ready in the world). */
static void world_check(World *w) {
        uint32_t serving = w->cutover ? w->r->to_count : w->r->from_count, starting = 0;
        _cleanup_free_ uint8_t *owned = calloc(serving, 1);

        ASSERT_NOT_NULL(owned);
        for (uint32_t i = 0; i < w->n_max; i++) {
                const ReshardItem *it = world_item(w, i);
                const RangeList *set = NULL;

                if (!w->cutover && w->live[i] && i < w->from->n_instances)
                        set = w->from->sets + i;
                for (int pass = 0; pass < 2; pass++) {
                        if (set)
                                for (size_t j = 0; j < set->n_ranges; j++)
                                        for (uint32_t s = set->ranges[j].lo; s <= set->ranges[j].hi;
                                             s++) {
                                                ASSERT_TRUE(s < serving);
                                                owned[s] = 1;
                                        }
                        set = NULL;
                        /* New copies serve the old epoch only for a same total. */
                        if (pass == 0 && it && it->to.n_ranges > 0 && (w->same || w->cutover) &&
                            (it->state == RITEM_READY || it->state == RITEM_DONE)) {
                                if (!w->fresh[i] || !w->ready[i])
                                        TAP_FAIL_("instance %u %s but its new copy is not ready", i,
                                                  reshard_item_state_to_string(it->state));
                                set = &it->to;
                        }
                }
                if (it && it->state == RITEM_STARTING)
                        starting++;
        }
        for (uint32_t s = 0; s < serving; s++)
                if (!owned[s])
                        TAP_FAIL_("shard %u of epoch %ju has no ready owner (%s)", s,
                                  (uintmax_t) (w->cutover ? w->r->to_epoch : w->r->from_epoch),
                                  reshard_state_to_string(w->r->state));
        ASSERT_LE_UINT(starting, w->r->max_starting);
}

/* A step's report without the copies it started: their starts made what
 * was seen of them stale (the shell's reports follow the current start). */
static size_t world_drop_started(World *w, ReshardObserved *o, size_t n_o, usec_t now) {
        size_t n = 0;

        for (size_t i = 0; i < n_o; i++) {
                const ReshardItem *it = world_item(w, o[i].instance);

                if (!(it && it->state == RITEM_STARTING && it->started_at == now))
                        o[n++] = o[i];
        }
        return n;
}

/* The world before the step (`tick`: time passed, copies come up); the
 * reshard sees a shuffled, sometimes partial, sometimes duplicated report.
 * Like the shell's, a report reflects the current start of a copy. */
static size_t world_observe(World *w, ReshardObserved *o, bool tick) {
        size_t n = 0;

        for (uint32_t i = 0; i < w->n_max; i++) {
                if (tick && w->fresh[i] && !w->ready[i] && w->countdown[i] >= 0 &&
                    w->countdown[i]-- == 0)
                        w->ready[i] = true;
                if (!w->fresh[i] || one_in(&w->seed, 10))
                        continue;
                o[n++] = (ReshardObserved){ .instance = i, .new_ready = w->ready[i] };
                if (one_in(&w->seed, 20))
                        o[n++] = (ReshardObserved){ .instance = i, .new_ready = w->ready[i] };
        }
        if (one_in(&w->seed, 8))
                o[n++] = (ReshardObserved){ .instance = w->n_max + 3, .new_ready = false };
        for (size_t i = n; i > 1; i--) {
                size_t j = below(&w->seed, i);
                ReshardObserved t = o[i - 1];

                o[i - 1] = o[j];
                o[j] = t;
        }
        return n;
}

static void world_expected(const World *w, ShardLayout *ret) {
        const ShardLayout *from = w->from;
        ShardLayout t = { .epoch = w->r->to_epoch,
                          .shard_count = w->r->to_count,
                          .n_instances = w->r->to_instances };

        t.slots = calloc(t.n_instances, 1);
        t.sets = calloc(t.n_instances, sizeof(RangeList));
        ASSERT_TRUE(t.slots && t.sets);
        if (w->same)
                ASSERT_OK(shard_rebalance(from, t.n_instances, t.sets));
        else {
                ShardLayout d;

                ASSERT_OK(shard_layout_default(t.shard_count, t.n_instances, &d));
                for (uint32_t i = 0; i < t.n_instances; i++)
                        ASSERT_OK(rangelist_copy(t.sets + i, d.sets + i));
                shard_layout_done(&d);
        }
        for (uint32_t i = 0; i < t.n_instances; i++) {
                bool changed = !w->same || i >= from->n_instances ||
                               !rangelist_equal(t.sets + i, from->sets + i);

                t.slots[i] = i >= from->n_instances ? 0
                             : changed              ? 1 - from->slots[i]
                                                    : from->slots[i];
        }
        *ret = t;
}

/* The end: the planned layout is what runs, each instance one copy, no
 * shard owned twice. */
static void world_check_done(World *w) {
        ShardLayout got, want;
        _cleanup_free_ uint32_t *owner = NULL;
        RangeList *running;

        ASSERT_OK(reshard_result(w->r, w->from, &got));
        world_expected(w, &want);
        assert_layout_equal(&got, &want);

        running = calloc(w->n_max, sizeof(RangeList));
        owner = calloc(got.shard_count, sizeof(uint32_t));
        ASSERT_TRUE(running && owner);
        for (uint32_t i = 0; i < w->n_max; i++) {
                const ReshardItem *it = world_item(w, i);
                bool live = w->live[i], fresh = w->fresh[i];

                if (live && fresh)
                        TAP_FAIL_("instance %u still runs two copies", i);
                if (i >= got.n_instances) {
                        ASSERT_FALSE(live || fresh);
                        continue;
                }
                ASSERT_TRUE(live || fresh);
                ASSERT_TRUE(fresh == (it != NULL));
                ASSERT_OK(rangelist_copy(running + i, fresh ? &it->to : w->from->sets + i));
                ASSERT_TRUE(rangelist_equal(running + i, got.sets + i));
        }
        owners_of(running, got.n_instances, got.shard_count, owner);
        sets_free(running, w->n_max);
        if (!w->any_failure)
                ASSERT_EQ_UINT(w->charged, reshard_cost(w->r));
        ASSERT_FALSE(w->alert_open);
        shard_layout_done(&got);
        shard_layout_done(&want);
}

/* Aborted: the old layout serves and every new copy the reshard knows of is
 * gone. A copy whose item failed and was resumed but not started again is
 * PENDING, indistinguishable from never started: the level-triggered
 * Placement removes it, not a DISCARD. */
static void world_check_aborted(World *w) {
        for (uint32_t i = 0; i < w->n_max; i++) {
                const ReshardItem *it = world_item(w, i);

                if (w->fresh[i] && !(w->stale[i] && it && it->state == RITEM_PENDING))
                        TAP_FAIL_("instance %u: new copy not discarded", i);
                ASSERT_TRUE(w->live[i] == (i < w->from->n_instances));
        }
        ASSERT_FALSE(w->alert_open);
}

static void simulate(World *w) {
        ReshardAction a[ACTS_MAX];
        ReshardObserved o[ACTS_MAX];
        usec_t now = T0;
        bool aborted = false;

        for (unsigned guard = 0;; guard++) {
                size_t n_o, n, max = 2 * w->r->n_items + 3;

                if (guard > 3000)
                        TAP_FAIL_("reshard not finished after %u steps: %s", guard,
                                  reshard_state_to_string(w->r->state));
                now += between(&w->seed, 1, 3) * SEC(1);
                n_o = world_observe(w, o, true);

                if (one_in(&w->seed, 12)) {
                        max = below(&w->seed, 3);
                        w->small_buffers++;
                }
                n = reshard_step(w->r, o, n_o, now, world_gate, w, a, max);
                ASSERT_LE_UINT(n, max);
                world_apply(w, a, n);
                w->steps++;

                for (size_t k = 0; k < w->r->n_items; k++)
                        if (w->r->items[k].state == RITEM_FAILED) {
                                /* The failed copy may start again after a resume. */
                                w->startable[w->r->items[k].instance] = true;
                                w->stale[w->r->items[k].instance] = true;
                                w->any_failure = true;
                        }
                world_check(w);

                /* The controller persisted and died: the same step again
                 * issues nothing, and the parsed copy carries on. */
                if (one_in(&w->seed, 5)) {
                        Reshard *back = reparse(w->r);
                        _cleanup_free_ char *before = NULL, *after = NULL;
                        size_t full = 2 * back->n_items + 3;

                        before = reshard_text(back);
                        n_o = world_drop_started(w, o, n_o, now);
                        n = reshard_step(back, o, n_o, now, gate_no, NULL, a, full);
                        after = reshard_text(back);
                        if (max >= full) {
                                if (n != 0) {
                                        _cleanup_free_ char *x = acts(a, n);
                                        TAP_FAIL_("replay of \"%s\" gave %s", before, x);
                                }
                                ASSERT_STREQ(after, before);
                        } else
                                world_apply(w, a, n); /* what did not fit before */
                        reshard_free(w->r);
                        w->r = back;
                        world_check(w);
                        w->crashes++;
                } else if (one_in(&w->seed, 8)) {
                        /* Replayed with a willing gate: new starts at most. */
                        n_o = world_drop_started(w, o, n_o, now);
                        n = reshard_step(w->r, o, n_o, now, world_gate, w, a,
                                         2 * w->r->n_items + 3);
                        world_apply(w, a, n);
                        world_check(w);
                        w->replays++;
                }

                if (w->r->state == RESHARD_DONE || w->r->state == RESHARD_ABORTED) {
                        bool settled = !w->alert_open;

                        for (size_t k = 0; k < w->r->n_items && w->r->state == RESHARD_ABORTED; k++)
                                settled = settled && w->r->items[k].state == RITEM_PENDING;
                        if (!settled)
                                continue;
                        /* Settled: nothing more happens. */
                        n = reshard_step(w->r, o, n_o, now + SEC(100), world_gate, w, a,
                                         2 * w->r->n_items + 3);
                        ASSERT_EQ_UINT(n, 0);
                        break;
                }

                /* The operator. */
                if (w->r->state == RESHARD_RUNNING && one_in(&w->seed, 25)) {
                        ASSERT_OK(reshard_pause(w->r, one_in(&w->seed, 2) ? NULL : "ops\tcheck"));
                        w->pauses++;
                } else if (w->r->state == RESHARD_PAUSED && one_in(&w->seed, 3))
                        ASSERT_OK(reshard_resume(w->r));
                else if (w->r->state == RESHARD_FAILED && one_in(&w->seed, 2))
                        ASSERT_OK(reshard_resume(w->r));
                else if (one_in(&w->seed, 60)) {
                        int k = reshard_abort(w->r, NULL);

                        if (w->any_retired)
                                ASSERT_ERR(k, -EBUSY);
                        else {
                                ASSERT_OK(k);
                                aborted = true;
                                w->aborts++;
                        }
                }
        }

        if (aborted) {
                ASSERT_EQ_UINT(w->r->state, RESHARD_ABORTED);
                world_check_aborted(w);
        } else {
                ASSERT_EQ_UINT(w->r->state, RESHARD_DONE);
                ASSERT_TRUE(w->finished);
                world_check_done(w);
        }
}

TEST(simulator) {
        World totals = { 0 };
        unsigned same_up = 0, same_down = 0, new_up = 0, new_down = 0;

        for (unsigned k = 0; k < 900; k++) {
                World w = { .seed = 1000 + k };
                uint32_t shards = (uint32_t) (one_in(&w.seed, 10) ? between(&w.seed, 1, 600)
                                                                  : between(&w.seed, 1, 120));
                uint32_t n_from = (uint32_t) between(&w.seed, 1, MIN(shards, 12)), n_to, to_count;
                ShardLayout from;
                int e;

                random_layout(&w.seed, shards, n_from, &from);
                if (one_in(&w.seed, 2)) {
                        to_count = shards;
                        n_to = (uint32_t) between(&w.seed, 1, MIN(shards, 14));
                } else {
                        to_count = (uint32_t) between(&w.seed, 1, 150);
                        if (to_count == shards)
                                to_count++;
                        n_to = (uint32_t) between(&w.seed, 1, MIN(to_count, 14));
                }
                e = reshard_new("gateway", k, &from, n_to, to_count,
                                (uint32_t) between(&w.seed, 1, 4), TIMEOUT, &w.r);
                if (e == -EALREADY) {
                        ASSERT_EQ_UINT(to_count, shards);
                        ASSERT_EQ_UINT(n_to, n_from);
                        shard_layout_done(&from);
                        continue;
                }
                ASSERT_OK(e);
                w.from = &from;
                w.same = to_count == shards;
                w.n_max = MAX(n_from, n_to);
                w.refuse_percent = (unsigned) below(&w.seed, 40);
                w.live = calloc(w.n_max, sizeof(bool));
                w.fresh = calloc(w.n_max, sizeof(bool));
                w.ready = calloc(w.n_max, sizeof(bool));
                w.countdown = calloc(w.n_max, sizeof(int));
                w.startable = calloc(w.n_max, sizeof(bool));
                w.stale = calloc(w.n_max, sizeof(bool));
                ASSERT_TRUE(w.live && w.fresh && w.ready && w.countdown && w.startable && w.stale);
                for (uint32_t i = 0; i < w.n_max; i++) {
                        w.live[i] = i < n_from;
                        w.startable[i] = true;
                }
                if (w.same)
                        *(n_to > n_from ? &same_up : &same_down) += 1;
                else
                        *(to_count > shards ? &new_up : &new_down) += 1;

                simulate(&w);

                totals.steps += w.steps;
                totals.starts += w.starts;
                totals.retires += w.retires;
                totals.discards += w.discards;
                totals.alerts += w.alerts;
                totals.crashes += w.crashes;
                totals.replays += w.replays;
                totals.refusals += w.refusals;
                totals.pauses += w.pauses;
                totals.aborts += w.aborts;
                totals.small_buffers += w.small_buffers;
                ASSERT_EQ_UINT(w.alerts, w.resolves);
                free(w.live);
                free(w.fresh);
                free(w.ready);
                free(w.countdown);
                free(w.startable);
                free(w.stale);
                reshard_free(w.r);
                shard_layout_done(&from);
        }
        ASSERT_TRUE(same_up > 50 && same_down > 50 && new_up > 50 && new_down > 50);
        ASSERT_TRUE(totals.alerts > 50 && totals.aborts > 10 && totals.crashes > 1000);
        printf("# reshards: %u same-total up, %u down, %u new-total up, %u down; %ju steps, "
               "%ju starts, %ju retires, %ju discards, %ju alerts, %ju gate refusals, "
               "%ju pauses, %ju aborts, %ju crashes, %ju replays, %ju small buffers\n",
               same_up, same_down, new_up, new_down, (uintmax_t) totals.steps,
               (uintmax_t) totals.starts, (uintmax_t) totals.retires, (uintmax_t) totals.discards,
               (uintmax_t) totals.alerts, (uintmax_t) totals.refusals, (uintmax_t) totals.pauses,
               (uintmax_t) totals.aborts, (uintmax_t) totals.crashes, (uintmax_t) totals.replays,
               (uintmax_t) totals.small_buffers);
}

int main(void) {
        return tap_run(TESTS(
                string_tables, default_layout_is_the_spec_split, layout_format_is_exact,
                layout_round_trip_random, layout_parse_refusals,
                layout_prefixes_and_mutations_are_refused_or_canonical, copy_units,
                rebalance_examples, rebalance_properties, new_plans,
                same_total_retires_after_the_new_owner_is_ready,
                replace_retires_each_copy_once_its_replacement_is_ready,
                moves_keep_the_old_copy_where_it_was_until_the_new_one_is_ready,
                live_reshard_identifies_only_what_changes_owner, gains_are_spread_over_the_buckets,
                loser_waits_for_the_gainer, going_away_instance_retires_without_a_new_copy,
                new_total_cuts_over_once_all_are_ready, gate_refusal_keeps_start_order,
                timeout_fails_once_and_resume_retries, timeout_while_paused_fails,
                pause_holds_starts_but_not_retires, abort_rules, replayed_step_issues_nothing,
                small_action_buffer_takes_nothing_it_cannot_report,
                observations_are_merged_conservatively, reshard_format_is_exact,
                reshard_parse_refusals, reshard_states_the_machine_cannot_reach, simulator));
}
