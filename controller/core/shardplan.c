/* SPDX-License-Identifier: MIT */
/* Who owns which shard of a sharded service at rest (the layout and its text),
 * the minimal-movement rebalance, and the blue/green reshard as a state
 * machine with the text the store keeps of it. Pure: readiness, time and the
 * start gate come in as arguments. */
#include "shardplan.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "opstate.h"
#include "textline.h"
#include "unit-name.h"

#define LAYOUT_TEXT_VERSION "baton-shards/1"
#define RESHARD_TEXT_VERSION "baton-reshard/1"

typedef __typeof__(*((RangeList *) NULL)->ranges) Range;

static const char *const reshard_state_table[_RESHARD_STATE_MAX] = {
        [RESHARD_RUNNING] = "running", [RESHARD_PAUSED] = "paused",   [RESHARD_FAILED] = "failed",
        [RESHARD_DONE] = "done",       [RESHARD_ABORTED] = "aborted",
};

DEFINE_STRING_TABLE_LOOKUP(reshard_state, ReshardState, _RESHARD_STATE_MAX)

static const char *const reshard_item_state_table[_RITEM_STATE_MAX] = {
        [RITEM_PENDING] = "pending", [RITEM_STARTING] = "starting", [RITEM_READY] = "ready",
        [RITEM_DONE] = "done",       [RITEM_FAILED] = "failed",
};

DEFINE_STRING_TABLE_LOOKUP(reshard_item_state, ReshardItemState, _RITEM_STATE_MAX)

const char *reshard_kind(const Reshard *r) {
        bool moves = r->n_items > 0;

        if (!r->replace)
                return "reshard";
        for (size_t i = 0; i < r->n_items; i++)
                moves = moves && r->items[i].from_host;
        return moves ? "move" : "restart";
}

/* A sharded service is a template, so its name is valid exactly when
 * "name@.service" is a valid template unit name. */
static bool service_is_valid(const char *service) {
        char unit[UNIT_NAME_MAX + 1];
        int k;

        if (isempty(service))
                return false;
        k = snprintf(unit, sizeof(unit), "%s@.service", service);
        return k > 0 && (size_t) k < sizeof(unit) && unit_name_is_valid(unit, UNIT_NAME_TEMPLATE);
}

/* Time since `since`; a clock that went back counts as no time at all, so it
 * can delay a timeout but never cause one. */
static usec_t elapsed(usec_t now, usec_t since) {
        return now > since ? now - since : 0;
}

/* ---- sets ---------------------------------------------------------------- */

/* Index of the first range of l that ends at or after v (n_ranges if none). */
static size_t set_lower_bound(const RangeList *l, uint32_t v) {
        size_t a = 0, b = l->n_ranges;

        while (a < b) {
                size_t m = a + (b - a) / 2;

                if (l->ranges[m].hi < v)
                        a = m + 1;
                else
                        b = m;
        }
        return a;
}

/* The lowest shard of [lo, hi] that is in l, if any. */
static bool set_first_in(const RangeList *l, uint32_t lo, uint32_t hi, uint32_t *ret) {
        size_t i = set_lower_bound(l, lo);

        if (i >= l->n_ranges || l->ranges[i].lo > hi)
                return false;
        *ret = MAX(l->ranges[i].lo, lo);
        return true;
}

/* a ⊆ b. b is merged, so each range of a must lie inside one range of b. */
static bool set_within(const RangeList *a, const RangeList *b) {
        for (size_t i = 0; i < a->n_ranges; i++) {
                size_t j = set_lower_bound(b, a->ranges[i].lo);

                if (j >= b->n_ranges || b->ranges[j].lo > a->ranges[i].lo ||
                    b->ranges[j].hi < a->ranges[i].hi)
                        return false;
        }
        return true;
}

/* Appends the shards of src from its `skip`-th on, at most `take` of them,
 * to dst (in increasing order). */
static int set_add_slice(RangeList *dst, const RangeList *src, uint64_t skip, uint64_t take) {
        for (size_t i = 0; i < src->n_ranges && take > 0; i++) {
                uint64_t lo = src->ranges[i].lo, size = (uint64_t) src->ranges[i].hi - lo + 1, n;
                int k;

                if (skip >= size) {
                        skip -= size;
                        continue;
                }
                lo += skip;
                size -= skip;
                skip = 0;
                n = MIN(size, take);
                k = rangelist_add_range(dst, (uint32_t) lo, (uint32_t) (lo + n - 1));
                if (k < 0)
                        return k;
                take -= n;
        }
        return 0;
}

static int range_compare(const void *a, const void *b) {
        uint32_t x = ((const Range *) a)->lo, y = ((const Range *) b)->lo;

        return x < y ? -1 : x > y ? 1 : 0;
}

/* [i*S/N, (i+1)*S/N): the static split, as service_default_shards() has it. */
static void default_bounds(uint32_t shards, uint32_t n, uint32_t i, uint64_t *lo, uint64_t *hi) {
        /* 64-bit products: i * shards overflows 32 bits for large fleets. */
        *lo = (uint64_t) i * shards / n;
        *hi = ((uint64_t) i + 1) * shards / n;
}

static int set_default(RangeList *set, uint32_t shards, uint32_t n, uint32_t i) {
        uint64_t lo, hi;

        default_bounds(shards, n, i, &lo, &hi);
        if (lo == hi)
                return 0;
        return rangelist_add_range(set, (uint32_t) lo, (uint32_t) (hi - 1));
}

static bool set_is_default(const RangeList *set, uint32_t shards, uint32_t n, uint32_t i) {
        uint64_t lo, hi;

        if (i >= n)
                return set->n_ranges == 0;
        default_bounds(shards, n, i, &lo, &hi);
        if (lo == hi)
                return set->n_ranges == 0;
        return set->n_ranges == 1 && set->ranges[0].lo == lo && set->ranges[0].hi == hi - 1;
}

/* ---- layout -------------------------------------------------------------- */

void shard_layout_done(ShardLayout *l) {
        if (!l)
                return;
        if (l->sets)
                for (uint32_t i = 0; i < l->n_instances; i++)
                        rangelist_done(l->sets + i);
        free(l->sets);
        free(l->slots);
        *l = (ShardLayout){ 0 };
}

static int layout_alloc(ShardLayout *l, uint32_t n_instances) {
        *l = (ShardLayout){ 0 };
        l->slots = calloc(n_instances, sizeof(uint8_t));
        l->sets = calloc(n_instances, sizeof(RangeList));
        if (!l->slots || !l->sets) {
                free(l->slots);
                free(l->sets);
                *l = (ShardLayout){ 0 };
                return -ENOMEM;
        }
        l->n_instances = n_instances;
        return 0;
}

/* A well-formed layout: the sets a partition of 0…shard_count-1, each
 * non-empty. -EINVAL, or -ENOMEM. */
static int layout_check(const ShardLayout *l) {
        _cleanup_free_ Range *all = NULL;
        size_t n_all = 0, k = 0;
        uint64_t total = 0;

        if (!l || l->epoch == 0 || l->shard_count == 0 || l->shard_count >= RANGELIST_MAX_SHARD ||
            l->n_instances == 0 || l->n_instances > l->shard_count || !l->slots || !l->sets)
                return -EINVAL;

        for (uint32_t i = 0; i < l->n_instances; i++) {
                const RangeList *s = l->sets + i;

                if (l->slots[i] > 1 || s->n_ranges == 0 ||
                    s->ranges[s->n_ranges - 1].hi >= l->shard_count)
                        return -EINVAL;
                total += rangelist_count(s);
                n_all += s->n_ranges;
        }
        if (total != l->shard_count)
                return -EINVAL;

        /* Disjoint as well as adding up to the total: a partition. */
        all = malloc(n_all * sizeof(Range));
        if (!all)
                return -ENOMEM;
        for (uint32_t i = 0; i < l->n_instances; i++)
                for (size_t j = 0; j < l->sets[i].n_ranges; j++)
                        all[k++] = l->sets[i].ranges[j];
        qsort(all, n_all, sizeof(Range), range_compare);
        for (size_t j = 1; j < n_all; j++)
                if (all[j].lo <= all[j - 1].hi)
                        return -EINVAL;
        return 0;
}

int shard_layout_copy(ShardLayout *dst, const ShardLayout *src) {
        ShardLayout t;
        int k;

        assert(dst);
        assert(src);
        assert(src->n_instances == 0 || (src->slots && src->sets));

        k = layout_alloc(&t, src->n_instances);
        if (k < 0)
                return k;
        t.epoch = src->epoch;
        t.shard_count = src->shard_count;
        for (uint32_t i = 0; i < src->n_instances; i++) {
                t.slots[i] = src->slots[i];
                k = rangelist_copy(t.sets + i, src->sets + i);
                if (k < 0) {
                        shard_layout_done(&t);
                        return k;
                }
        }
        *dst = t;
        return 0;
}

int shard_layout_default(uint32_t shards, uint32_t n_instances, ShardLayout *ret) {
        ShardLayout t;
        int k;

        assert(ret);

        if (n_instances == 0 || shards == 0 || shards >= RANGELIST_MAX_SHARD ||
            n_instances > shards)
                return -EINVAL;

        k = layout_alloc(&t, n_instances);
        if (k < 0)
                return k;
        t.epoch = 1;
        t.shard_count = shards;
        for (uint32_t i = 0; i < n_instances; i++) {
                k = set_default(t.sets + i, shards, n_instances, i);
                if (k < 0) {
                        shard_layout_done(&t);
                        return k;
                }
        }
        *ret = t;
        return 0;
}

/* A range list as it goes into the store: canonical, "-" for empty (reshard
 * items only; a layout never has an empty set). */
static void put_set(TextLine *t, const RangeList *set, bool dash_if_empty) {
        if (set->n_ranges == 0 && dash_if_empty) {
                textline_printf(t, "-");
                return;
        }
        for (size_t i = 0; i < set->n_ranges; i++) {
                const char *sep = i > 0 ? "," : "";

                if (set->ranges[i].lo == set->ranges[i].hi)
                        textline_printf(t, "%s%" PRIu32, sep, set->ranges[i].lo);
                else
                        textline_printf(t, "%s%" PRIu32 "-%" PRIu32, sep, set->ranges[i].lo,
                                        set->ranges[i].hi);
        }
}

int shard_layout_format(const ShardLayout *l, char **ret) {
        TextLine t = { 0 };

        assert(l);
        assert(ret);
        assert(l->n_instances == 0 || (l->slots && l->sets));

        textline_printf(
                &t, LAYOUT_TEXT_VERSION " epoch=%" PRIu64 " count=%" PRIu32 " instances=%" PRIu32,
                l->epoch, l->shard_count, l->n_instances);
        for (uint32_t i = 0; i < l->n_instances; i++) {
                textline_printf(&t, " %" PRIu32 ":%u:", i, (unsigned) l->slots[i]);
                put_set(&t, l->sets + i, false);
        }
        return textline_finish(&t, ret);
}

/* A range list in its canonical spelling only ("0-13,90-91": increasing,
 * ranges not touching, "a-b" only for a < b, no leading zeros), every shard
 * below `limit` and none in `taken` (may be NULL). Appends to `set`, which
 * must be empty. On a clash with `taken`, *ret_clash is the shard. */
static int parse_set(TextParser *ps, const char *what, uint32_t limit, const RangeList *taken,
                     RangeList *set, uint32_t *ret_clash) {
        for (;;) {
                const char *pos = ps->p;
                uint64_t lo = 0, hi = 0;
                uint32_t clash;
                int k;

                k = textline_parse_uint(ps, what, UINT32_MAX, &lo);
                if (k < 0)
                        return k;
                hi = lo;
                if (*ps->p == '-') {
                        const char *hi_pos;

                        ps->p++;
                        hi_pos = ps->p;
                        k = textline_parse_uint(ps, what, UINT32_MAX, &hi);
                        if (k < 0)
                                return k;
                        if (hi <= lo) {
                                ps->p = hi_pos;
                                if (hi == lo)
                                        return textline_fail(
                                                ps, "%s: write \"%" PRIu64 "\", not a range", what,
                                                lo);
                                if (hi < lo)
                                        return textline_fail(ps,
                                                             "%s: range %" PRIu64 "-%" PRIu64
                                                             " goes backwards",
                                                             what, lo, hi);
                        }
                }
                if (hi >= limit) {
                        ps->p = pos;
                        return textline_fail(
                                ps, "%s: shard %" PRIu64 " is not below the total %" PRIu32, what,
                                hi, limit);
                }
                if (set->n_ranges > 0) {
                        uint32_t last = set->ranges[set->n_ranges - 1].hi;

                        if (lo <= (uint64_t) last + 1) {
                                ps->p = pos;
                                return textline_fail(
                                        ps,
                                        lo <= last
                                                ? "%s: ranges not in increasing order"
                                                : "%s: range touches the one before (merge them)",
                                        what);
                        }
                }
                if (taken && set_first_in(taken, (uint32_t) lo, (uint32_t) hi, &clash)) {
                        ps->p = pos;
                        if (ret_clash)
                                *ret_clash = clash;
                        return -EEXIST; /* the caller names the owner */
                }
                k = rangelist_add_range(set, (uint32_t) lo, (uint32_t) hi);
                if (k < 0)
                        return textline_oom(ps);

                if (*ps->p != ',')
                        return 0;
                ps->p++;
        }
}

/* A layout line has at least " 0:0:0" per instance. */
#define LAYOUT_INSTANCE_TEXT_MIN 6

static int layout_instance_owning(const ShardLayout *l, uint32_t before, uint32_t shard) {
        for (uint32_t j = 0; j < before; j++)
                if (rangelist_contains(l->sets + j, shard))
                        return (int) j;
        return -1;
}

static int parse_layout(TextParser *ps, ShardLayout *l) {
        _cleanup_(rangelist_done) RangeList taken = { 0 };
        const char *start;
        uint64_t v = 0;
        size_t len;
        int k;

        len = strcspn(ps->p, " ");
        if (strncmp(ps->p, "baton-shards/", strlen("baton-shards/")) == 0 &&
            (len != strlen(LAYOUT_TEXT_VERSION) || strncmp(ps->p, LAYOUT_TEXT_VERSION, len) != 0))
                return textline_fail(ps, "unsupported version \"%s\" (this is %s)",
                                     textline_snippet(ps->p, len).s, LAYOUT_TEXT_VERSION);
        k = textline_expect(ps, LAYOUT_TEXT_VERSION);
        if (k < 0)
                return k;

        if ((k = textline_parse_field(ps, "epoch", UINT64_MAX, &v, &start)) < 0)
                return k;
        if (v == 0) {
                ps->p = start;
                return textline_fail(ps, "epoch must be at least 1");
        }
        l->epoch = v;

        if ((k = textline_parse_field(ps, "count", RANGELIST_MAX_SHARD - 1, &v, &start)) < 0)
                return k;
        if (v == 0) {
                ps->p = start;
                return textline_fail(ps, "count must be at least 1");
        }
        l->shard_count = (uint32_t) v;

        if ((k = textline_parse_field(ps, "instances", UINT32_MAX, &v, &start)) < 0)
                return k;
        if (v == 0 || v > l->shard_count) {
                ps->p = start;
                return textline_fail(ps, "instances: %" PRIu64 " is not within 1..%" PRIu32, v,
                                     l->shard_count);
        }
        /* Refuse a count the rest of the text cannot hold before allocating. */
        if (strlen(ps->p) / LAYOUT_INSTANCE_TEXT_MIN < v) {
                ps->p = start;
                return textline_fail(ps, "instances: text too short for %" PRIu64 " instances", v);
        }
        l->slots = calloc(v, sizeof(uint8_t));
        l->sets = calloc(v, sizeof(RangeList));
        if (!l->slots || !l->sets)
                return textline_oom(ps);
        l->n_instances = (uint32_t) v;

        for (uint32_t i = 0; i < l->n_instances; i++) {
                char what[48];
                uint32_t clash = 0;

                if ((k = textline_expect(ps, " ")) < 0)
                        return k;
                start = ps->p;
                snprintf(what, sizeof(what), "instance %" PRIu32, i);
                if ((k = textline_parse_uint(ps, what, UINT32_MAX, &v)) < 0)
                        return k;
                if (v != i) {
                        ps->p = start;
                        return textline_fail(ps, "expected instance %" PRIu32 ", not %" PRIu64, i,
                                             v);
                }
                if ((k = textline_expect(ps, ":")) < 0)
                        return k;
                snprintf(what, sizeof(what), "instance %" PRIu32 " slot", i);
                if ((k = textline_parse_uint(ps, what, 1, &v)) < 0)
                        return k;
                l->slots[i] = (uint8_t) v;
                if ((k = textline_expect(ps, ":")) < 0)
                        return k;
                if (*ps->p == ' ' || *ps->p == 0)
                        return textline_fail(ps, "instance %" PRIu32 ": empty shard set", i);
                snprintf(what, sizeof(what), "instance %" PRIu32 " shards", i);
                k = parse_set(ps, what, l->shard_count, &taken, l->sets + i, &clash);
                if (k == -EEXIST)
                        return textline_fail(ps,
                                             "instance %" PRIu32 ": shard %" PRIu32
                                             " is already owned by instance %d",
                                             i, clash, layout_instance_owning(l, i, clash));
                if (k < 0)
                        return k;
                if (rangelist_union(&taken, l->sets + i) < 0)
                        return textline_oom(ps);
        }
        if (*ps->p != 0)
                return textline_fail(ps, "unexpected text after the last instance");

        if (rangelist_count(&taken) != l->shard_count) {
                uint32_t missing = taken.ranges[0].lo > 0 ? 0 : taken.ranges[0].hi + 1;

                return textline_fail(
                        ps, "not a partition: shard %" PRIu32 " of %" PRIu32 " has no owner",
                        missing, l->shard_count);
        }
        return 0;
}

int shard_layout_parse(const char *text, ShardLayout *ret, char **ret_error) {
        TextParser ps = { .text = text, .p = text };
        ShardLayout l = { 0 };
        int k;

        assert(text);
        assert(ret);

        k = parse_layout(&ps, &l);
        k = textline_parse_finish(&ps, k, ret_error);
        if (k < 0) {
                shard_layout_done(&l);
                return k;
        }
        *ret = l;
        return 0;
}

/* ---- copies -------------------------------------------------------------- */

int shard_copy_unit(const char *service, uint32_t instance, uint8_t slot, char **ret) {
        char *u;

        assert(ret);

        if (slot > 1 || !service_is_valid(service))
                return -EINVAL;
        if (asprintf(&u, "%s@%" PRIu32 "%s.service", service, instance, slot ? "b" : "") < 0)
                return -ENOMEM;
        if (!unit_name_is_valid(u, UNIT_NAME_INSTANCE)) {
                /* Only a name at the length limit gets here. */
                free(u);
                return -EINVAL;
        }
        *ret = u;
        return 0;
}

int shard_copy_parse(const char *service, const char *unit, uint32_t *ret_instance,
                     uint8_t *ret_slot) {
        const char *p;
        uint64_t v = 0;
        uint8_t slot = 0;
        size_t n;

        if (!service_is_valid(service) || !unit)
                return -EINVAL;
        n = strlen(service);
        if (strncmp(unit, service, n) != 0 || unit[n] != '@')
                return -EINVAL;
        p = unit + n + 1;
        if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
                v = v * 10 + (uint64_t) (*p - '0');
                if (v > UINT32_MAX)
                        return -EINVAL;
        }
        if (*p == 'b') {
                slot = 1;
                p++;
        }
        if (!streq(p, ".service"))
                return -EINVAL;

        if (ret_instance)
                *ret_instance = (uint32_t) v;
        if (ret_slot)
                *ret_slot = slot;
        return 0;
}

/* ---- rebalance ----------------------------------------------------------- */

typedef struct SizeRank {
        uint64_t size;
        uint32_t instance;
} SizeRank;

/* Largest set first, ties to the lowest instance. */
static int size_rank_compare(const void *a, const void *b) {
        const SizeRank *x = a, *y = b;

        if (x->size != y->size)
                return x->size > y->size ? -1 : 1;
        return x->instance < y->instance ? -1 : x->instance > y->instance ? 1 : 0;
}

static void sets_free(RangeList *sets, uint32_t n) {
        if (!sets)
                return;
        for (uint32_t i = 0; i < n; i++)
                rangelist_done(sets + i);
        free(sets);
}

int shard_rebalance(const ShardLayout *from, uint32_t n_to, RangeList *ret) {
        _cleanup_free_ SizeRank *rank = NULL;
        _cleanup_free_ uint64_t *target = NULL;
        _cleanup_free_ Range *freed = NULL;
        RangeList *sets = NULL;
        size_t n_freed = 0, n_freed_max = 0, cursor = 0;
        uint64_t cursor_lo = 0;
        uint32_t shards, q, rem;
        int k;

        assert(from);
        assert(ret);

        k = layout_check(from);
        if (k < 0)
                return k;
        shards = from->shard_count;
        if (n_to == 0 || n_to > shards)
                return -EINVAL;
        q = shards / n_to;
        rem = shards % n_to;

        /* The q+1 targets go to the largest current sets: pairing larger
         * targets with larger sets maximises Σ min(|set|, target), the
         * shards that stay where they are. */
        rank = calloc(n_to, sizeof(SizeRank));
        target = calloc(n_to, sizeof(uint64_t));
        for (uint32_t i = 0; i < from->n_instances; i++)
                n_freed_max += from->sets[i].n_ranges;
        freed = calloc(n_freed_max, sizeof(Range));
        sets = calloc(n_to, sizeof(RangeList));
        if (!rank || !target || !freed || !sets) {
                free(sets);
                return -ENOMEM;
        }
        for (uint32_t i = 0; i < n_to; i++)
                rank[i] =
                        (SizeRank){ .size = i < from->n_instances ? rangelist_count(from->sets + i)
                                                                  : 0,
                                    .instance = i };
        qsort(rank, n_to, sizeof(SizeRank), size_rank_compare);
        for (uint32_t j = 0; j < n_to; j++)
                target[rank[j].instance] = q + (j < rem ? 1 : 0);

        /* Everyone keeps their lowest shards up to the target; the rest is freed. */
        for (uint32_t i = 0; i < from->n_instances; i++) {
                const RangeList *s = from->sets + i;
                uint64_t keep = i < n_to ? MIN(rangelist_count(s), target[i]) : 0;

                if (i < n_to && set_add_slice(sets + i, s, 0, keep) < 0)
                        goto oom;
                for (size_t j = 0; j < s->n_ranges; j++) {
                        uint64_t size = (uint64_t) s->ranges[j].hi - s->ranges[j].lo + 1;

                        if (keep >= size) {
                                keep -= size;
                                continue;
                        }
                        freed[n_freed++] =
                                (Range){ (uint32_t) (s->ranges[j].lo + keep), s->ranges[j].hi };
                        keep = 0;
                }
        }
        qsort(freed, n_freed, sizeof(Range), range_compare);

        /* The freed shards, lowest first, fill the gainers in instance order. */
        for (uint32_t i = 0; i < n_to; i++) {
                uint64_t have = rangelist_count(sets + i);

                while (have < target[i]) {
                        uint64_t lo, n;

                        assert(cursor < n_freed);
                        lo = MAX(cursor_lo, (uint64_t) freed[cursor].lo);
                        n = MIN((uint64_t) freed[cursor].hi - lo + 1, target[i] - have);
                        if (rangelist_add_range(sets + i, (uint32_t) lo, (uint32_t) (lo + n - 1)) <
                            0)
                                goto oom;
                        have += n;
                        cursor_lo = lo + n;
                        if (cursor_lo > freed[cursor].hi)
                                cursor++;
                }
        }

        memcpy(ret, sets, n_to * sizeof(RangeList));
        free(sets);
        return 0;

oom:
        sets_free(sets, n_to);
        return -ENOMEM;
}

/* ---- the reshard --------------------------------------------------------- */

static bool reshard_same_total(const Reshard *r) {
        return r->from_count == r->to_count;
}

static bool item_had_live_copy(const ReshardItem *it) {
        return it->from.n_ranges > 0;
}

static bool item_has_new_copy(const ReshardItem *it) {
        return it->to.n_ranges > 0;
}

/* Whether the item starts through the gate: a new copy, or for a live
 * reshard a copy that gains shards (an instance only gains or only loses). */
static bool item_starts(const Reshard *r, const ReshardItem *it) {
        if (r->reload && item_had_live_copy(it))
                return rangelist_count(&it->to) > rangelist_count(&it->from);
        return item_has_new_copy(it);
}

/* A live reshard's loser (or an instance that goes away): its live copy
 * keeps serving what it keeps, no start needed. */
static bool item_keeps_serving(const Reshard *r, const ReshardItem *it) {
        return r->reload && item_had_live_copy(it) && !item_starts(r, it);
}

static void items_free(ReshardItem *items, size_t n) {
        if (!items)
                return;
        for (size_t k = 0; k < n; k++) {
                rangelist_done(&items[k].from);
                rangelist_done(&items[k].to);
                free(items[k].from_host);
        }
        free(items);
}

Reshard *reshard_free(Reshard *r) {
        if (!r)
                return NULL;
        free(r->service);
        items_free(r->items, r->n_items);
        free(r->reason);
        return mfree(r);
}

int reshard_copy(const Reshard *r, Reshard **ret) {
        _cleanup_(reshard_freep) Reshard *c = calloc(1, sizeof(Reshard));
        int k;

        if (!c)
                return -ENOMEM;
        *c = *r;
        c->service = NULL;
        c->items = NULL;
        c->n_items = 0;
        c->reason = NULL;
        c->service = strdup(r->service);
        c->items = calloc(MAX(r->n_items, (size_t) 1), sizeof(ReshardItem));
        if (!c->service || !c->items || (r->reason && !(c->reason = strdup(r->reason))))
                return -ENOMEM;
        for (size_t i = 0; i < r->n_items; i++) {
                c->items[i] = r->items[i];
                rangelist_init(&c->items[i].from);
                rangelist_init(&c->items[i].to);
                c->items[i].from_host = NULL;
                c->n_items++;
                k = rangelist_copy(&c->items[i].from, &r->items[i].from);
                if (k >= 0)
                        k = rangelist_copy(&c->items[i].to, &r->items[i].to);
                if (k >= 0 && r->items[i].from_host &&
                    !(c->items[i].from_host = strdup(r->items[i].from_host)))
                        k = -ENOMEM;
                if (k < 0)
                        return k;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

/* Item `k` of a new reshard for instance i: its live copy's set from the old
 * layout (none beyond it), its new set `to` (taken over). */
static int item_init(ReshardItem *it, const ShardLayout *from, uint32_t i, RangeList *to) {
        int k;

        *it = (ReshardItem){ .instance = i, .state = RITEM_PENDING };
        if (i < from->n_instances) {
                k = rangelist_copy(&it->from, from->sets + i);
                if (k < 0)
                        return k;
                it->from_slot = from->slots[i];
                it->to_slot = 1 - from->slots[i];
        }
        it->to = *to;
        *to = (RangeList){ 0 };
        return 0;
}

int reshard_new(const char *service, uint64_t id, const ShardLayout *from, uint32_t n_to,
                uint32_t to_count, uint32_t max_starting, usec_t health_timeout, Reshard **ret) {
        _cleanup_(reshard_freep) Reshard *r = NULL;
        _cleanup_free_ uint8_t *kind = NULL;
        RangeList *targets = NULL;
        uint32_t n_max;
        bool same;
        int k;

        assert(from);
        assert(ret);

        if (!service_is_valid(service) || n_to == 0 || to_count == 0 || n_to > to_count ||
            to_count >= RANGELIST_MAX_SHARD || max_starting == 0 || health_timeout == 0)
                return -EINVAL;
        k = layout_check(from);
        if (k < 0)
                return k;
        same = to_count == from->shard_count;
        if (!same && from->epoch == UINT64_MAX)
                return -EINVAL;
        n_max = MAX(from->n_instances, n_to);

        r = calloc(1, sizeof(Reshard));
        if (!r)
                return -ENOMEM;
        r->service = strdup(service);
        r->items = calloc(n_max, sizeof(ReshardItem));
        targets = calloc(n_max, sizeof(RangeList));
        kind = calloc(n_max, sizeof(uint8_t));
        if (!r->service || !r->items || !targets || !kind) {
                free(targets);
                return -ENOMEM;
        }

        if (same)
                k = shard_rebalance(from, n_to, targets);
        else
                for (uint32_t i = 0; i < n_to && k >= 0; i++)
                        k = set_default(targets + i, to_count, n_to, i);
        if (k < 0) {
                sets_free(targets, n_max);
                return k;
        }

        /* Same total: gainers (and new instances) first, so that what the
         * losers give away is ready elsewhere by the time they are retired;
         * only instances whose set changes (shard_rebalance() only lets an
         * instance gain or lose, so a change shows in the size). New total:
         * every instance. */
        for (uint32_t i = 0; i < n_max; i++) {
                uint64_t had = i < from->n_instances ? rangelist_count(from->sets + i) : 0,
                         gets = rangelist_count(targets + i);

                kind[i] = !same || gets > had ? 0 : gets < had ? 1 : 2;
        }
        for (uint8_t pass = 0; pass < 2 && k >= 0; pass++)
                for (uint32_t i = 0; i < n_max && k >= 0; i++) {
                        if (kind[i] != pass)
                                continue;
                        k = item_init(r->items + r->n_items, from, i, targets + i);
                        r->n_items++;
                }
        sets_free(targets, n_max);
        if (k < 0)
                return k;
        if (r->n_items == 0)
                return -EALREADY;

        r->id = id;
        r->state = RESHARD_RUNNING;
        r->from_epoch = from->epoch;
        r->to_epoch = same ? from->epoch : from->epoch + 1;
        r->from_count = from->shard_count;
        r->to_count = to_count;
        r->from_instances = from->n_instances;
        r->to_instances = n_to;
        r->max_starting = max_starting;
        r->health_timeout = health_timeout;

        *ret = TAKE_PTR(r);
        return 0;
}

int reshard_replace(const char *service, uint64_t id, const ShardLayout *from, uint32_t instance,
                    uint32_t max_starting, usec_t health_timeout, Reshard **ret) {
        _cleanup_(reshard_freep) Reshard *r = NULL;
        int k;

        assert(from);
        assert(ret);

        if (!service_is_valid(service) || max_starting == 0 || health_timeout == 0)
                return -EINVAL;
        k = layout_check(from);
        if (k < 0)
                return k;
        if (instance != UINT32_MAX && instance >= from->n_instances)
                return -EINVAL;
        r = calloc(1, sizeof(Reshard));
        if (!r)
                return -ENOMEM;
        *r = (Reshard){
                .id = id,
                .state = RESHARD_RUNNING,
                .from_epoch = from->epoch,
                .to_epoch = from->epoch,
                .from_count = from->shard_count,
                .to_count = from->shard_count,
                .from_instances = from->n_instances,
                .to_instances = from->n_instances,
                .max_starting = max_starting,
                .health_timeout = health_timeout,
                .replace = true,
        };
        r->service = strdup(service);
        r->items = calloc(from->n_instances, sizeof(ReshardItem));
        if (!r->service || !r->items)
                return -ENOMEM;
        for (uint32_t i = 0; i < from->n_instances; i++) {
                RangeList same = { 0 };

                if (instance != UINT32_MAX && i != instance)
                        continue;
                k = rangelist_copy(&same, from->sets + i);
                if (k < 0)
                        return k;
                k = item_init(r->items + r->n_items, from, i, &same);
                r->n_items++;
                if (k < 0)
                        return k;
        }
        *ret = TAKE_PTR(r);
        return 0;
}

bool reshard_host_is_valid(const char *host) {
        size_t n = 0;

        if (!host || !*host)
                return false;
        for (const char *p = host; *p; p++, n++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
                        return false;
        return n <= 253;
}

int reshard_replace_move(Reshard **r, const char *service, uint64_t id, const ShardLayout *layout,
                         uint32_t instance, const char *from_host, uint32_t max_starting,
                         usec_t health_timeout) {
        _cleanup_(reshard_freep) Reshard *made = NULL;
        Reshard *rs = *r;
        ReshardItem *v, it;
        RangeList same = { 0 };
        size_t at;
        int k;

        assert(r);
        assert(layout);

        if (!reshard_host_is_valid(from_host) || instance >= layout->n_instances)
                return -EINVAL;
        if (!rs) {
                k = reshard_replace(service, id, layout, instance, max_starting, health_timeout,
                                    &made);
                if (k < 0)
                        return k;
                made->items[0].from_host = strdup(from_host);
                if (!made->items[0].from_host)
                        return -ENOMEM;
                *r = TAKE_PTR(made);
                return 0;
        }
        if (!rs->replace || rs->state != RESHARD_RUNNING || rs->from_epoch != layout->epoch ||
            rs->from_instances != layout->n_instances)
                return -EINVAL;
        for (at = 0; at < rs->n_items && rs->items[at].instance <= instance; at++)
                if (rs->items[at].instance == instance)
                        return -EEXIST;
        v = realloc(rs->items, (rs->n_items + 1) * sizeof(ReshardItem));
        if (!v)
                return -ENOMEM;
        rs->items = v;
        k = rangelist_copy(&same, layout->sets + instance);
        if (k < 0)
                return k;
        k = item_init(&it, layout, instance, &same);
        if (k >= 0 && !(it.from_host = strdup(from_host)))
                k = -ENOMEM;
        if (k < 0) {
                rangelist_done(&it.from);
                rangelist_done(&it.to);
                rangelist_done(&same);
                return k;
        }
        memmove(rs->items + at + 1, rs->items + at, (rs->n_items - at) * sizeof(ReshardItem));
        rs->items[at] = it;
        rs->n_items++;
        return 0;
}

static int order_compare(const void *a, const void *b, void *userdata) {
        const ReshardItem *items = userdata;
        uint32_t x = items[*(const uint32_t *) a].instance,
                 y = items[*(const uint32_t *) b].instance;

        return x < y ? -1 : x > y ? 1 : 0;
}

/* Item indices sorted by instance: same-total items are in the order they are
 * carried out, not by instance. */
static uint32_t *reshard_order(const Reshard *r) {
        uint32_t *order = malloc(MAX(r->n_items, (size_t) 1) * sizeof(uint32_t));

        if (!order)
                return NULL;
        for (size_t k = 0; k < r->n_items; k++)
                order[k] = (uint32_t) k;
        qsort_r(order, r->n_items, sizeof(uint32_t), order_compare, r->items);
        return order;
}

static ReshardItem *reshard_find(const Reshard *r, const uint32_t *order, uint32_t instance) {
        size_t a = 0, b = r->n_items;

        while (a < b) {
                size_t m = a + (b - a) / 2;
                uint32_t x = r->items[order[m]].instance;

                if (x == instance)
                        return r->items + order[m];
                if (x < instance)
                        a = m + 1;
                else
                        b = m;
        }
        return NULL;
}

/* What the step saw of one item, merged over every entry for it: an instance
 * reported twice is ready only if every report says so. */
enum {
        SEEN_ = 1 << 0,
        NOT_READY_ = 1 << 1,
};

static void push(ReshardAction *ret, size_t *n, ReshardActionKind kind, uint32_t instance) {
        ret[(*n)++] = (ReshardAction){ .kind = kind, .instance = instance };
}

/* The alert follows the state: raised while FAILED, resolved otherwise. */
static void reshard_sync_alert(Reshard *r, ReshardAction *ret, size_t max, size_t *n) {
        bool want = r->state == RESHARD_FAILED;

        if (want == r->alert_raised || *n >= max)
                return;
        push(ret, n, want ? RESHARD_ACTION_ALERT : RESHARD_ACTION_RESOLVE, 0);
        r->alert_raised = want;
}

/* Aborted: every new copy still around goes, one DISCARD each; the item is
 * PENDING again, which records that the DISCARD was issued. */
static size_t reshard_step_aborted(Reshard *r, ReshardAction *ret, size_t max) {
        size_t n = 0;

        reshard_sync_alert(r, ret, max, &n);
        for (size_t k = 0; k < r->n_items && n < max; k++) {
                ReshardItem *it = r->items + k;

                if (it->state == RITEM_PENDING ||
                    (it->state == RITEM_DONE && item_had_live_copy(it)))
                        continue;
                it->state = RITEM_PENDING;
                it->started_at = 0;
                it->ready_at = 0;
                push(ret, &n, RESHARD_ACTION_DISCARD, it->instance);
        }
        return n;
}

int reshard_make_reload(Reshard *r) {
        assert(r);

        if (r->replace || r->reload || !reshard_same_total(r) || r->state != RESHARD_RUNNING)
                return -EINVAL;
        for (size_t k = 0; k < r->n_items; k++)
                if (r->items[k].state != RITEM_PENDING)
                        return -EINVAL;
        r->reload = true;
        for (size_t k = 0; k < r->n_items; k++)
                if (item_had_live_copy(r->items + k))
                        r->items[k].to_slot = r->items[k].from_slot;
        return 0;
}

/* The item whose old set holds shard `s`, or -1. */
static ssize_t item_owning(const Reshard *r, uint32_t s) {
        for (size_t k = 0; k < r->n_items; k++)
                if (rangelist_contains(&r->items[k].from, s))
                        return (ssize_t) k;
        return -1;
}

/* A shard `loser` keeps (in `kept`) in a bucket below `share` in `count`,
 * or -1. */
static int64_t kept_in_light_bucket(const RangeList *kept, const uint64_t *count,
                                    uint32_t concurrency, uint64_t share) {
        for (size_t g = 0; g < kept->n_ranges; g++)
                for (uint32_t s = kept->ranges[g].lo; s <= kept->ranges[g].hi; s++)
                        if (count[s % concurrency] < share)
                                return s;
        return -1;
}

int reshard_spread_gains(Reshard *r, uint32_t concurrency) {
        _cleanup_free_ uint64_t *count = NULL;
        RangeList *to = NULL;
        int k = 0;

        assert(r);

        if (concurrency == 0 || r->replace || !reshard_same_total(r) || r->state != RESHARD_RUNNING)
                return -EINVAL;
        for (size_t i = 0; i < r->n_items; i++)
                if (r->items[i].state != RITEM_PENDING)
                        return -EINVAL;
        if (concurrency == 1)
                return 0;
        count = calloc(concurrency, sizeof(uint64_t));
        to = calloc(r->n_items + 1, sizeof(RangeList));
        if (!count || !to) {
                free(to);
                return -ENOMEM;
        }
        /* Work on copies: an allocation failure changes nothing. */
        for (size_t i = 0; i < r->n_items && k >= 0; i++)
                k = rangelist_copy(&to[i], &r->items[i].to);

        for (size_t i = 0; i < r->n_items && k >= 0; i++) {
                _cleanup_(rangelist_done) RangeList gain = { 0 };
                uint64_t share;

                if (rangelist_count(&r->items[i].to) <= rangelist_count(&r->items[i].from))
                        continue; /* a loser */
                k = rangelist_copy(&gain, &to[i]);
                if (k >= 0)
                        k = rangelist_subtract(&gain, &r->items[i].from);
                if (k < 0)
                        break;
                share = (rangelist_count(&gain) + concurrency - 1) / concurrency;
                memset(count, 0, concurrency * sizeof(uint64_t));
                for (size_t g = 0; g < gain.n_ranges; g++)
                        for (uint32_t s = gain.ranges[g].lo; s <= gain.ranges[g].hi; s++)
                                count[s % concurrency]++;
                for (size_t g = 0; g < gain.n_ranges && k >= 0; g++)
                        for (uint32_t s = gain.ranges[g].lo; s <= gain.ranges[g].hi && k >= 0;
                             s++) {
                                ssize_t l = item_owning(r, s);
                                int64_t other;

                                if (count[s % concurrency] <= share || l < 0)
                                        continue;
                                other = kept_in_light_bucket(&to[l], count, concurrency, share);
                                if (other < 0)
                                        continue;
                                /* The gainer takes `other`; its loser keeps `s`. */
                                k = rangelist_remove_range(&to[i], s, s);
                                if (k >= 0)
                                        k = rangelist_add(&to[i], (uint32_t) other);
                                if (k >= 0)
                                        k = rangelist_remove_range(&to[l], (uint32_t) other,
                                                                   (uint32_t) other);
                                if (k >= 0)
                                        k = rangelist_add(&to[l], s);
                                count[s % concurrency]--;
                                count[other % concurrency]++;
                        }
        }
        if (k >= 0)
                for (size_t i = 0; i < r->n_items; i++) {
                        rangelist_done(&r->items[i].to);
                        r->items[i].to = to[i];
                        to[i] = (RangeList){ 0 };
                }
        for (size_t i = 0; i < r->n_items; i++)
                rangelist_done(&to[i]);
        free(to);
        return k < 0 ? k : 0;
}

int reshard_item_identifies(const Reshard *r, const ReshardItem *it, RangeList *ret) {
        int k;

        assert(r);
        assert(it);
        assert(ret);

        k = rangelist_copy(ret, &it->to);
        if (k >= 0 && r->reload)
                k = rangelist_subtract(ret, &it->from);
        return k;
}

size_t reshard_step(Reshard *r, const ReshardObserved *observed, size_t n_observed, usec_t now,
                    ReshardMayStart may_start, void *userdata, ReshardAction *ret, size_t max) {
        _cleanup_(rangelist_done) RangeList covered = { 0 };
        _cleanup_free_ uint8_t *seen = NULL;
        _cleanup_free_ uint32_t *order = NULL;
        _cleanup_free_ char *reason = NULL;
        const ReshardItem *first_failure = NULL;
        bool same, all_done = true, all_ready = true;
        size_t n = 0, starting = 0;

        assert(r);
        assert(observed || n_observed == 0);
        assert(ret || max == 0);

        if (r->state == RESHARD_DONE) {
                reshard_sync_alert(r, ret, max, &n);
                return n;
        }
        if (r->state == RESHARD_ABORTED)
                return reshard_step_aborted(r, ret, max);

        same = reshard_same_total(r);

        /* Everything that can fail to allocate happens before anything
         * changes, so a failure leaves the reshard as it was. */
        seen = calloc(MAX(r->n_items, (size_t) 1), 1);
        order = reshard_order(r);
        if (!seen || !order)
                return 0;
        for (size_t i = 0; i < n_observed; i++) {
                ReshardItem *it = reshard_find(r, order, observed[i].instance);

                if (it)
                        seen[it - r->items] |= SEEN_ | (observed[i].new_ready ? 0 : NOT_READY_);
        }
        for (size_t k = 0; k < r->n_items; k++) {
                const ReshardItem *it = r->items + k;
                bool ready = it->state == RITEM_READY || it->state == RITEM_DONE ||
                             (it->state == RITEM_STARTING && seen[k] == SEEN_) ||
                             item_keeps_serving(r, it);

                if (it->state == RITEM_STARTING && !ready &&
                    elapsed(now, it->started_at) > r->health_timeout && !first_failure)
                        first_failure = it;
                /* The shards that are ready at a new owner: what a live copy
                 * may hand over. */
                if (same && ready && rangelist_union(&covered, &it->to) < 0)
                        return 0;
        }
        if (first_failure && r->state != RESHARD_FAILED) {
                char d[DURATION_MAX_LEN];

                if (asprintf(&reason, "instance %" PRIu32 ": new copy not ready within %s",
                             first_failure->instance,
                             duration_format(d, sizeof(d), r->health_timeout)) < 0)
                        return 0;
        }

        /* Readiness and timeouts of the new copies in flight. */
        for (size_t k = 0; k < r->n_items; k++) {
                ReshardItem *it = r->items + k;

                if (it->state != RITEM_STARTING)
                        continue;
                if (seen[k] == SEEN_) {
                        it->state = RITEM_READY;
                        it->ready_at = now;
                } else if (elapsed(now, it->started_at) > r->health_timeout)
                        it->state = RITEM_FAILED;
                else
                        starting++;
        }
        if (first_failure && r->state != RESHARD_FAILED) {
                /* The live copies keep serving; an operator decides. */
                r->state = RESHARD_FAILED;
                free(r->reason);
                r->reason = TAKE_PTR(reason);
        }

        reshard_sync_alert(r, ret, max, &n);

        /* Starts, in item order; a refusal of the gate ends the scan so that
         * a later, smaller item cannot overtake the one it refused. */
        if (r->state == RESHARD_RUNNING)
                for (size_t k = 0; k < r->n_items && starting < r->max_starting && n < max; k++) {
                        ReshardItem *it = r->items + k;

                        _cleanup_(rangelist_done) RangeList set = { 0 };

                        if (it->state != RITEM_PENDING || !item_starts(r, it))
                                continue;
                        if (reshard_item_identifies(r, it, &set) < 0)
                                break;
                        if (may_start && !may_start(it->instance, &set, userdata))
                                break;
                        it->state = RITEM_STARTING;
                        it->started_at = now;
                        it->ready_at = 0;
                        starting++;
                        push(ret, &n, RESHARD_ACTION_START, it->instance);
                }

        /* Same total: a live copy goes once every shard it gives away is
         * ready at its new owner (its own new copy covers what it keeps).
         * Retiring only shrinks the handoff, so it goes on while paused or
         * failed too. Covered only grew since it was computed (DONE and
         * READY items stay so), so the check is safe with the old value. */
        if (same)
                for (size_t k = 0; k < r->n_items; k++) {
                        ReshardItem *it = r->items + k;

                        if (!(it->state == RITEM_READY ||
                              (it->state == RITEM_PENDING && !item_starts(r, it))))
                                continue;
                        if (!item_had_live_copy(it)) {
                                it->state = RITEM_DONE;
                                continue;
                        }
                        if (n >= max || !set_within(&it->from, &covered))
                                continue;
                        it->state = RITEM_DONE;
                        push(ret, &n, RESHARD_ACTION_RETIRE, it->instance);
                }

        for (size_t k = 0; k < r->n_items; k++) {
                const ReshardItem *it = r->items + k;

                if (it->state != RITEM_DONE)
                        all_done = false;
                if (item_starts(r, it) && it->state != RITEM_READY)
                        all_ready = false;
        }

        /* New total: the new set is all up under the new epoch; the old one
         * goes at once. Held while paused: the last point to abort. */
        if (!same && all_ready && !all_done && r->state == RESHARD_RUNNING && n < max) {
                for (size_t k = 0; k < r->n_items; k++)
                        r->items[k].state = RITEM_DONE;
                push(ret, &n, RESHARD_ACTION_CUTOVER, 0);
                all_done = true;
        }

        if (all_done && (r->state == RESHARD_RUNNING || r->state == RESHARD_PAUSED) && n < max) {
                r->state = RESHARD_DONE;
                r->reason = mfree(r->reason);
                push(ret, &n, RESHARD_ACTION_FINISHED, 0);
        }

        return n;
}

DEFINE_OPSTATE_CONTROL(reshard_control, Reshard, RESHARD)

int reshard_pause(Reshard *r, const char *reason) {
        return reshard_control(r, OP_CONTROL_PAUSE, reason);
}

int reshard_resume(Reshard *r) {
        int e;

        e = reshard_control(r, OP_CONTROL_RESUME, NULL);
        if (e < 0)
                return e;

        /* A failed new copy gets another start (the gate is asked again). */
        for (size_t k = 0; k < r->n_items; k++)
                if (r->items[k].state == RITEM_FAILED) {
                        r->items[k].state = RITEM_PENDING;
                        r->items[k].started_at = 0;
                        r->items[k].ready_at = 0;
                }
        return 0;
}

/* Once a live copy is gone (retired, or the cut-over), going back would take
 * shards down: the old layout no longer exists to return to. */
static bool reshard_retired_any(const Reshard *r) {
        for (size_t k = 0; k < r->n_items; k++)
                if (r->items[k].state == RITEM_DONE && item_had_live_copy(r->items + k))
                        return true;
        return false;
}

int reshard_abort(Reshard *r, const char *reason) {
        assert(r);

        if (reshard_retired_any(r))
                return -EBUSY;
        return reshard_control(r, OP_CONTROL_ABORT, reason);
}

int reshard_result(const Reshard *r, const ShardLayout *from, ShardLayout *ret) {
        _cleanup_free_ uint32_t *order = NULL;
        ShardLayout t;
        int k;

        assert(r);
        assert(from);
        assert(ret);

        if (r->state != RESHARD_DONE)
                return -EINVAL;
        k = layout_check(from);
        if (k < 0)
                return k;
        if (from->epoch != r->from_epoch || from->shard_count != r->from_count ||
            from->n_instances != r->from_instances)
                return -EINVAL;
        /* The reshard's idea of the live copies must be this layout's. */
        for (size_t j = 0; j < r->n_items; j++) {
                const ReshardItem *it = r->items + j;

                if (it->instance >= from->n_instances) {
                        if (item_had_live_copy(it))
                                return -EINVAL;
                } else if (!rangelist_equal(&it->from, from->sets + it->instance) ||
                           it->from_slot != from->slots[it->instance])
                        return -EINVAL;
        }

        order = reshard_order(r);
        if (!order)
                return -ENOMEM;
        k = layout_alloc(&t, r->to_instances);
        if (k < 0)
                return k;
        t.epoch = r->to_epoch;
        t.shard_count = r->to_count;
        for (uint32_t i = 0; i < r->to_instances; i++) {
                const ReshardItem *it = reshard_find(r, order, i);

                if (it) {
                        t.slots[i] = it->to_slot;
                        k = rangelist_copy(t.sets + i, &it->to);
                } else if (i < from->n_instances) {
                        t.slots[i] = from->slots[i];
                        k = rangelist_copy(t.sets + i, from->sets + i);
                } else
                        k = -EINVAL;
                if (k < 0)
                        goto fail;
        }
        k = layout_check(&t);
        if (k < 0)
                goto fail;
        *ret = t;
        return 0;

fail:
        shard_layout_done(&t);
        return k;
}

uint64_t reshard_cost(const Reshard *r) {
        uint64_t sum = 0;

        assert(r);

        /* Live: an instance only gains or only loses, so what it
         * identifies is how many more it owns. */
        for (size_t k = 0; k < r->n_items; k++) {
                uint64_t to = rangelist_count(&r->items[k].to),
                         from = r->reload ? rangelist_count(&r->items[k].from) : 0;
                sum += to > from ? to - from : 0;
        }
        return sum;
}

/* ---- reshard text -------------------------------------------------------- */

int reshard_format(const Reshard *r, char **ret) {
        TextLine t = { 0 };

        assert(r);
        assert(ret);
        assert(r->service);
        assert(r->state >= 0 && r->state < _RESHARD_STATE_MAX);

        textline_printf(&t,
                        RESHARD_TEXT_VERSION
                        " service=%s id=%" PRIu64 "%s state=%s from_epoch=%" PRIu64
                        " to_epoch=%" PRIu64 " from_count=%" PRIu32 " to_count=%" PRIu32
                        " from_instances=%" PRIu32 " to_instances=%" PRIu32 " max_starting=%" PRIu32
                        " health_timeout=%" PRIu64 " alert=%d items=%zu",
                        r->service, r->id,
                        r->replace  ? " kind=replace"
                        : r->reload ? " kind=reload"
                                    : "",
                        reshard_state_to_string(r->state), r->from_epoch, r->to_epoch,
                        r->from_count, r->to_count, r->from_instances, r->to_instances,
                        r->max_starting, (uint64_t) r->health_timeout, r->alert_raised ? 1 : 0,
                        r->n_items);
        for (size_t k = 0; k < r->n_items; k++) {
                const ReshardItem *it = r->items + k;

                assert(it->state >= 0 && it->state < _RITEM_STATE_MAX);
                textline_printf(&t, " %" PRIu32 ":%s:", it->instance,
                                reshard_item_state_to_string(it->state));
                put_set(&t, &it->from, true);
                textline_printf(&t, ":");
                put_set(&t, &it->to, true);
                textline_printf(&t, ":%u:%u:%" PRIu64 ":%" PRIu64, (unsigned) it->from_slot,
                                (unsigned) it->to_slot, (uint64_t) it->started_at,
                                (uint64_t) it->ready_at);
                if (it->from_host)
                        textline_printf(&t, "@%s", it->from_host);
        }
        textline_printf(&t, " ");
        textline_put_reason(&t, r->reason);
        return textline_finish(&t, ret);
}

static int lookup_reshard_state(const char *s) {
        return reshard_state_from_string(s);
}

static int lookup_item_state(const char *s) {
        return reshard_item_state_from_string(s);
}

/* An item's set: "-" for none, else a canonical range list below `limit`
 * and disjoint from the same side of the items before it (`taken`). */
static int parse_item_set(TextParser *ps, const Reshard *r, size_t k, const char *side,
                          uint32_t limit, RangeList *taken, RangeList *set) {
        char what[48];
        uint32_t clash = 0;
        int e;

        if (*ps->p == '-') {
                ps->p++;
                return 0;
        }
        snprintf(what, sizeof(what), "item %zu %s", k, side);
        e = parse_set(ps, what, limit, taken, set, &clash);
        if (e == -EEXIST) {
                uint32_t owner = 0;

                for (size_t j = 0; j < k; j++)
                        if (rangelist_contains(streq(side, "from") ? &r->items[j].from
                                                                   : &r->items[j].to,
                                               clash)) {
                                owner = r->items[j].instance;
                                break;
                        }
                return textline_fail(ps,
                                     "%s: shard %" PRIu32 " is already in the %s set of "
                                     "instance %" PRIu32,
                                     what, clash, side, owner);
        }
        if (e < 0)
                return e;
        if (rangelist_union(taken, set) < 0)
                return textline_oom(ps);
        return 0;
}

static int parse_item(TextParser *ps, const Reshard *r, size_t k, RangeList *taken_from,
                      RangeList *taken_to, ReshardItem *it) {
        uint32_t n_max = MAX(r->from_instances, r->to_instances);
        const char *pos;
        char what[48];
        uint64_t v = 0;
        int state = 0, e;

        snprintf(what, sizeof(what), "item %zu instance", k);
        pos = ps->p;
        if ((e = textline_parse_u32(ps, what, &it->instance)) < 0)
                return e;
        if (it->instance >= n_max) {
                ps->p = pos;
                return textline_fail(ps,
                                     "item %zu: instance %" PRIu32 " is in neither layout (%" PRIu32
                                     " and %" PRIu32 " instances)",
                                     k, it->instance, r->from_instances, r->to_instances);
        }
        snprintf(what, sizeof(what), "item %zu state", k);
        if ((e = textline_expect(ps, ":")) < 0 ||
            (e = textline_parse_state(ps, what, lookup_item_state, &state)) < 0)
                return e;
        it->state = state;

        if ((e = textline_expect(ps, ":")) < 0)
                return e;
        pos = ps->p;
        if ((e = parse_item_set(ps, r, k, "from", r->from_count, taken_from, &it->from)) < 0)
                return e;
        if (item_had_live_copy(it) != (it->instance < r->from_instances)) {
                ps->p = pos;
                return textline_fail(ps,
                                     item_had_live_copy(it)
                                             ? "item %zu: instance %" PRIu32
                                               " was not in the old layout but has a from set"
                                             : "item %zu: instance %" PRIu32
                                               " was in the old layout but has no from set",
                                     k, it->instance);
        }
        if ((e = textline_expect(ps, ":")) < 0)
                return e;
        pos = ps->p;
        if ((e = parse_item_set(ps, r, k, "to", r->to_count, taken_to, &it->to)) < 0)
                return e;
        if (item_has_new_copy(it) != (it->instance < r->to_instances)) {
                ps->p = pos;
                return textline_fail(ps,
                                     item_has_new_copy(it)
                                             ? "item %zu: instance %" PRIu32
                                               " is not in the new layout but has a to set"
                                             : "item %zu: instance %" PRIu32
                                               " is in the new layout but has no to set",
                                     k, it->instance);
        }

        snprintf(what, sizeof(what), "item %zu from_slot", k);
        if ((e = textline_expect(ps, ":")) < 0 || (e = textline_parse_uint(ps, what, 1, &v)) < 0)
                return e;
        it->from_slot = (uint8_t) v;
        snprintf(what, sizeof(what), "item %zu to_slot", k);
        pos = ps->p + 1;
        if ((e = textline_expect(ps, ":")) < 0 || (e = textline_parse_uint(ps, what, 1, &v)) < 0)
                return e;
        it->to_slot = (uint8_t) v;
        if (item_had_live_copy(it) ? it->to_slot != (r->reload ? it->from_slot : 1 - it->from_slot)
                                   : it->from_slot != 0 || it->to_slot != 0) {
                ps->p = pos;
                return textline_fail(ps,
                                     !item_had_live_copy(it)
                                             ? "item %zu: a new instance uses slot 0"
                                     : r->reload ? "item %zu: a live change keeps the slot"
                                                 : "item %zu: to_slot must be the other slot",
                                     k);
        }

        snprintf(what, sizeof(what), "item %zu started_at", k);
        if ((e = textline_expect(ps, ":")) < 0 ||
            (e = textline_parse_uint(ps, what, UINT64_MAX, &v)) < 0)
                return e;
        it->started_at = v;
        snprintf(what, sizeof(what), "item %zu ready_at", k);
        if ((e = textline_expect(ps, ":")) < 0 ||
            (e = textline_parse_uint(ps, what, UINT64_MAX, &v)) < 0)
                return e;
        it->ready_at = v;
        if (*ps->p == '@') {
                size_t len = strcspn(++ps->p, " ");

                it->from_host = strndup(ps->p, len);
                if (!it->from_host)
                        return textline_oom(ps);
                if (!r->replace || !reshard_host_is_valid(it->from_host))
                        return textline_fail(ps,
                                             !r->replace ? "item %zu: a host only in a replace"
                                                         : "item %zu: invalid host",
                                             k);
                ps->p += len;
        }
        return 0;
}

/* Refuses what no sequence of steps and operator controls can produce, so a
 * corrupted row is reported instead of acted upon. */
static int reshard_check(TextParser *ps, const Reshard *r, const char *const *item_pos,
                         const char *reason_pos, const RangeList *taken_from,
                         const RangeList *taken_to) {
        _cleanup_(rangelist_done) RangeList covered = { 0 };
        bool same = reshard_same_total(r);
        size_t starting = 0, failed = 0, done = 0, retired = 0;
        bool losers = false;

        for (size_t k = 0; k < r->n_items; k++) {
                const ReshardItem *it = r->items + k;
                const char *state = reshard_item_state_to_string(it->state);

                ps->p = item_pos[k];
                if (r->replace) {
                        /* Each keeps its set; in instance order. */
                        if (!rangelist_equal(&it->from, &it->to) || rangelist_count(&it->from) == 0)
                                return textline_fail(ps, "item %zu: a replace keeps a set", k);
                        if (k > 0 && it->instance <= r->items[k - 1].instance)
                                return textline_fail(
                                        ps, "item %zu: instance %" PRIu32 " not after %" PRIu32, k,
                                        it->instance, r->items[k - 1].instance);
                } else if (same) {
                        /* Gainers first, then losers, each in instance order. */
                        bool gains = rangelist_count(&it->to) > rangelist_count(&it->from);

                        if (rangelist_equal(&it->from, &it->to))
                                return textline_fail(ps, "item %zu: nothing changes", k);
                        if (gains ? !set_within(&it->from, &it->to)
                                  : !set_within(&it->to, &it->from))
                                return textline_fail(ps,
                                                     "item %zu: an instance either only gains or "
                                                     "only loses shards",
                                                     k);
                        if (gains && losers)
                                return textline_fail(ps, "item %zu: gainers come before losers", k);
                        if (k > 0 && gains == !losers && it->instance <= r->items[k - 1].instance)
                                return textline_fail(
                                        ps, "item %zu: instance %" PRIu32 " not after %" PRIu32, k,
                                        it->instance, r->items[k - 1].instance);
                        losers = losers || !gains;
                } else {
                        if (it->instance != k)
                                return textline_fail(ps, "item %zu: expected instance %zu", k, k);
                        if (!set_is_default(&it->to, r->to_count, r->to_instances, it->instance))
                                return textline_fail(ps,
                                                     "item %zu: the new set is not the even "
                                                     "split of %" PRIu32 " shards",
                                                     k, r->to_count);
                }

                if ((it->state == RITEM_PENDING && (it->started_at != 0 || it->ready_at != 0)) ||
                    (!item_starts(r, it) && (it->started_at != 0 || it->ready_at != 0)))
                        return textline_fail(ps, "item %zu: %s but has started_at/ready_at", k,
                                             it->state == RITEM_PENDING ? "pending"
                                                                        : "no new copy");
                if ((it->state == RITEM_STARTING || it->state == RITEM_FAILED) && it->ready_at != 0)
                        return textline_fail(ps, "item %zu: %s but has ready_at", k, state);
                if (!item_starts(r, it) && it->state != RITEM_PENDING && it->state != RITEM_DONE)
                        return textline_fail(ps, "item %zu: %s without a new copy", k, state);

                starting += it->state == RITEM_STARTING;
                failed += it->state == RITEM_FAILED;
                done += it->state == RITEM_DONE;
                retired += it->state == RITEM_DONE && item_had_live_copy(it);
                if ((it->state == RITEM_READY || it->state == RITEM_DONE ||
                     item_keeps_serving(r, it)) &&
                    rangelist_union(&covered, &it->to) < 0)
                        return textline_oom(ps);
        }

        ps->p = item_pos[r->n_items];
        if (same) {
                /* Shards only move between the instances that change. */
                if (!rangelist_equal(taken_from, taken_to))
                        return textline_fail(ps, "the items' old and new sets differ in shards");
        } else if (r->n_items != MAX(r->from_instances, r->to_instances))
                return textline_fail(ps, "a new total needs an item for each instance");
        else if (rangelist_count(taken_from) != r->from_count)
                return textline_fail(ps, "the old sets do not cover the %" PRIu32 " shards",
                                     r->from_count);

        if (starting > r->max_starting)
                return textline_fail(ps, "%zu items starting, more than max_starting %" PRIu32,
                                     starting, r->max_starting);
        if (!same && done != 0 && done != r->n_items)
                return textline_fail(ps, "a new total cuts over all items at once");
        /* No shard was ever without a ready owner: a retired live copy's
         * shards are all ready at new owners. */
        for (size_t k = 0; same && k < r->n_items; k++)
                if (r->items[k].state == RITEM_DONE && item_had_live_copy(r->items + k) &&
                    !set_within(&r->items[k].from, &covered)) {
                        ps->p = item_pos[k];
                        return textline_fail(ps,
                                             "item %zu: retired while shards it gave away were "
                                             "not ready elsewhere",
                                             k);
                }

        ps->p = item_pos[r->n_items];
        if (r->state == RESHARD_DONE && done != r->n_items)
                return textline_fail(ps, "state done but %zu of %zu items are not",
                                     r->n_items - done, r->n_items);
        if ((r->state == RESHARD_RUNNING || r->state == RESHARD_PAUSED) && failed > 0)
                return textline_fail(ps, "state %s with %zu failed items",
                                     reshard_state_to_string(r->state), failed);
        if (r->state == RESHARD_FAILED && failed == 0)
                return textline_fail(ps, "state failed without a failed item");
        if (r->state == RESHARD_ABORTED && retired > 0)
                return textline_fail(ps, "state aborted after a live copy was retired");

        ps->p = reason_pos;
        if ((r->state == RESHARD_RUNNING || r->state == RESHARD_DONE) && r->reason)
                return textline_fail(ps, "state %s has no reason",
                                     reshard_state_to_string(r->state));
        if ((r->state == RESHARD_PAUSED || r->state == RESHARD_ABORTED) && !r->reason)
                return textline_fail(ps, "state %s needs a reason",
                                     reshard_state_to_string(r->state));
        return 0;
}

/* An item takes at least " 0:done:-:0:0:0:0:0" of text. */
#define RESHARD_ITEM_TEXT_MIN 19

static int parse_reshard(TextParser *ps, Reshard **ret) {
        _cleanup_(reshard_freep) Reshard *r = NULL;
        _cleanup_(rangelist_done) RangeList taken_from = { 0 }, taken_to = { 0 };
        _cleanup_free_ const char **item_pos = NULL;
        const char *start, *to_epoch_pos, *reason_pos;
        uint64_t v = 0;
        int state = 0, k;
        size_t len;

        r = calloc(1, sizeof(Reshard));
        if (!r)
                return textline_oom(ps);

        /* A later format gets a message saying so, not a syntax error. */
        len = strcspn(ps->p, " ");
        if (strncmp(ps->p, "baton-reshard/", strlen("baton-reshard/")) == 0 &&
            (len != strlen(RESHARD_TEXT_VERSION) || strncmp(ps->p, RESHARD_TEXT_VERSION, len) != 0))
                return textline_fail(ps, "unsupported version \"%s\" (this is %s)",
                                     textline_snippet(ps->p, len).s, RESHARD_TEXT_VERSION);
        if ((k = textline_expect(ps, RESHARD_TEXT_VERSION)) < 0 ||
            (k = textline_expect(ps, " service=")) < 0)
                return k;

        start = ps->p;
        len = strcspn(ps->p, " ");
        r->service = strndup(ps->p, len);
        if (!r->service)
                return textline_oom(ps);
        if (!service_is_valid(r->service))
                return textline_fail(ps, "service: invalid service name \"%s\"",
                                     textline_snippet(start, len).s);
        ps->p += len;
        if ((k = textline_parse_field(ps, "id", UINT64_MAX, &v, NULL)) < 0)
                return k;
        r->id = v;
        if (startswith(ps->p, " kind=reload"))
                r->reload = (k = textline_expect(ps, " kind=reload")) >= 0;
        else if (startswith(ps->p, " kind="))
                r->replace = (k = textline_expect(ps, " kind=replace")) >= 0;
        if (k < 0)
                return k;
        if ((k = textline_expect(ps, " state=")) < 0 ||
            (k = textline_parse_state(ps, "state", lookup_reshard_state, &state)) < 0)
                return k;
        r->state = state;

        if ((k = textline_parse_field(ps, "from_epoch", UINT64_MAX, &v, &start)) < 0)
                return k;
        if (v == 0) {
                ps->p = start;
                return textline_fail(ps, "from_epoch must be at least 1");
        }
        r->from_epoch = v;
        if ((k = textline_parse_field(ps, "to_epoch", UINT64_MAX, &v, &to_epoch_pos)) < 0)
                return k;
        r->to_epoch = v;

        if ((k = textline_parse_field(ps, "from_count", RANGELIST_MAX_SHARD - 1, &v, &start)) < 0)
                return k;
        if (v == 0) {
                ps->p = start;
                return textline_fail(ps, "from_count must be at least 1");
        }
        r->from_count = (uint32_t) v;
        if ((k = textline_parse_field(ps, "to_count", RANGELIST_MAX_SHARD - 1, &v, &start)) < 0)
                return k;
        if (v == 0) {
                ps->p = start;
                return textline_fail(ps, "to_count must be at least 1");
        }
        r->to_count = (uint32_t) v;
        /* The epoch moves exactly when the total does. */
        if (reshard_same_total(r)
                    ? r->to_epoch != r->from_epoch
                    : r->from_epoch == UINT64_MAX || r->to_epoch != r->from_epoch + 1) {
                ps->p = to_epoch_pos;
                return textline_fail(ps, reshard_same_total(r)
                                                 ? "to_epoch must equal from_epoch (same total)"
                                                 : "to_epoch must be from_epoch + 1 (new total)");
        }

        if ((k = textline_parse_field(ps, "from_instances", UINT32_MAX, &v, &start)) < 0)
                return k;
        if (v == 0 || v > r->from_count) {
                ps->p = start;
                return textline_fail(ps, "from_instances: %" PRIu64 " is not within 1..%" PRIu32, v,
                                     r->from_count);
        }
        r->from_instances = (uint32_t) v;
        if ((k = textline_parse_field(ps, "to_instances", UINT32_MAX, &v, &start)) < 0)
                return k;
        if (v == 0 || v > r->to_count) {
                ps->p = start;
                return textline_fail(ps, "to_instances: %" PRIu64 " is not within 1..%" PRIu32, v,
                                     r->to_count);
        }
        r->to_instances = (uint32_t) v;

        if ((k = textline_parse_field(ps, "max_starting", UINT32_MAX, &v, &start)) < 0)
                return k;
        if (v == 0) {
                ps->p = start;
                return textline_fail(ps, "max_starting must be at least 1");
        }
        r->max_starting = (uint32_t) v;
        if ((k = textline_parse_field(ps, "health_timeout", UINT64_MAX, &v, &start)) < 0)
                return k;
        if (v == 0) {
                ps->p = start;
                return textline_fail(ps, "health_timeout must be at least 1");
        }
        r->health_timeout = v;

        if ((k = textline_expect(ps, " alert=")) < 0)
                return k;
        if ((ps->p[0] != '0' && ps->p[0] != '1') || (ps->p[1] >= '0' && ps->p[1] <= '9'))
                return textline_fail(ps, "alert: expected 0 or 1");
        r->alert_raised = *ps->p++ == '1';

        if ((k = textline_parse_field(ps, "items", UINT64_MAX, &v, &start)) < 0)
                return k;
        if (v == 0 || v > MAX(r->from_instances, r->to_instances)) {
                ps->p = start;
                return textline_fail(ps, "items: %" PRIu64 " is not within 1..%" PRIu32, v,
                                     MAX(r->from_instances, r->to_instances));
        }
        /* Refuse a count the rest of the text cannot hold before allocating. */
        if (strlen(ps->p) / RESHARD_ITEM_TEXT_MIN < v) {
                ps->p = start;
                return textline_fail(ps, "items: text too short for %" PRIu64 " items", v);
        }
        r->items = calloc(v, sizeof(ReshardItem));
        item_pos = calloc(v + 1, sizeof(char *));
        if (!r->items || !item_pos)
                return textline_oom(ps);
        for (size_t i = 0; i < v; i++) {
                if ((k = textline_expect(ps, " ")) < 0)
                        return k;
                item_pos[i] = ps->p;
                r->n_items = i + 1;
                if ((k = parse_item(ps, r, i, &taken_from, &taken_to, r->items + i)) < 0)
                        return k;
        }
        item_pos[v] = ps->p;

        if ((k = textline_expect(ps, " ")) < 0)
                return k;
        reason_pos = ps->p;
        if ((k = textline_parse_reason(ps, &r->reason)) < 0)
                return k;
        if (*ps->p != 0)
                return textline_fail(ps, "unexpected text after the reason");

        k = reshard_check(ps, r, item_pos, reason_pos, &taken_from, &taken_to);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(r);
        return 0;
}

int reshard_parse(const char *text, Reshard **ret, char **ret_error) {
        TextParser ps = { .text = text, .p = text };
        Reshard *r = NULL;
        int k;

        assert(text);
        assert(ret);

        k = parse_reshard(&ps, &r);
        k = textline_parse_finish(&ps, k, ret_error);
        if (k < 0) {
                reshard_free(r);
                return k;
        }
        *ret = r;
        return 0;
}
