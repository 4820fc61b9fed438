/* SPDX-License-Identifier: MIT */
/* Sets of shard ids kept as sorted, merged ranges, their canonical text
 * ("0-13,90-91"), set algebra, and the shard readiness tokens a service puts
 * in its StatusText ("ready=0-12 connecting=13"). Pure. */
#include "rangelist.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

typedef __typeof__(*((RangeList *) NULL)->ranges) Range;

#define WHITESPACE " \t\n\r"

void rangelist_init(RangeList *l) {
        assert(l);
        *l = (RangeList){ 0 };
}

void rangelist_done(RangeList *l) {
        assert(l);
        free(l->ranges);
        *l = (RangeList){ 0 };
}

void rangelist_clear(RangeList *l) {
        assert(l);
        l->n_ranges = 0;
}

static int reserve(RangeList *l, size_t n) {
        Range *p;
        size_t want;

        if (n <= l->n_allocated)
                return 0;
        if (n > SIZE_MAX / 2 / sizeof(Range))
                return -ENOMEM;

        want = MAX(n, MAX(l->n_allocated * 2, (size_t) 4));
        p = realloc(l->ranges, want * sizeof(Range));
        if (!p)
                return -ENOMEM;
        l->ranges = p;
        l->n_allocated = want;
        return 0;
}

/* Swaps the contents: used to commit a result built on the side, so that the
 * target stays unchanged when building fails. */
static void swap(RangeList *a, RangeList *b) {
        RangeList t = *a;
        *a = *b;
        *b = t;
}

/* Appends [lo, hi], which must not start before the last range does; merges
 * with the last range when they touch. */
static int append(RangeList *l, uint32_t lo, uint32_t hi) {
        int r;

        if (l->n_ranges > 0) {
                Range *last = &l->ranges[l->n_ranges - 1];

                assert(lo >= last->lo);
                if ((uint64_t) lo <= (uint64_t) last->hi + 1) {
                        last->hi = MAX(last->hi, hi);
                        return 0;
                }
        }

        r = reserve(l, l->n_ranges + 1);
        if (r < 0)
                return r;
        l->ranges[l->n_ranges++] = (Range){ lo, hi };
        return 0;
}

/* Index of the first range whose hi + 1 >= v, i.e. the first range that
 * contains v, touches v from below, or lies after it. */
static size_t lower_bound(const RangeList *l, uint64_t v) {
        size_t a = 0, b = l->n_ranges;

        while (a < b) {
                size_t m = a + (b - a) / 2;

                if ((uint64_t) l->ranges[m].hi + 1 < v)
                        a = m + 1;
                else
                        b = m;
        }
        return a;
}

static int parse_id(const char **p, uint32_t *ret) {
        const char *s = *p;
        uint64_t v = 0;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        for (; *s >= '0' && *s <= '9'; s++) {
                v = v * 10 + (uint64_t) (*s - '0');
                if (v >= RANGELIST_MAX_SHARD)
                        return -ERANGE;
        }

        *p = s;
        *ret = (uint32_t) v;
        return 0;
}

static int range_cmp(const void *a, const void *b) {
        const Range *x = a, *y = b;
        return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Parses the first `len` bytes of s. */
static int parse_n(RangeList *l, const char *s, size_t len) {
        _cleanup_(rangelist_done) RangeList t = { 0 }, raw = { 0 };
        _cleanup_free_ char *copy = NULL;
        const char *p;
        bool sorted = true;
        int r;

        copy = strndup(s, len);
        if (!copy)
                return -ENOMEM;

        /* Collected as written, then sorted once and merged: a hostile list
         * in descending order costs O(n log n), not O(n²). */
        p = copy;
        while (*p) {
                uint32_t lo, hi;

                r = parse_id(&p, &lo);
                if (r < 0)
                        return r;
                hi = lo;
                if (*p == '-') {
                        p++;
                        r = parse_id(&p, &hi);
                        if (r < 0)
                                return r;
                        if (hi < lo)
                                return -EINVAL;
                }

                r = reserve(&raw, raw.n_ranges + 1);
                if (r < 0)
                        return r;
                sorted = sorted && (raw.n_ranges == 0 || lo >= raw.ranges[raw.n_ranges - 1].lo);
                raw.ranges[raw.n_ranges++] = (Range){ lo, hi };

                if (*p == ',') {
                        p++;
                        if (*p == '\0') /* "1," */
                                return -EINVAL;
                } else if (*p != '\0')
                        return -EINVAL;
        }

        if (!sorted)
                qsort(raw.ranges, raw.n_ranges, sizeof(Range), range_cmp);
        for (size_t i = 0; i < raw.n_ranges; i++) {
                r = append(&t, raw.ranges[i].lo, raw.ranges[i].hi);
                if (r < 0)
                        return r;
        }
        swap(l, &t);
        return 0;
}

int rangelist_parse(RangeList *l, const char *s) {
        assert(l);
        assert(s);

        return parse_n(l, s, strlen(s));
}

int rangelist_parse_line(RangeList *l, const char *text) {
        size_t len;

        assert(l);
        assert(text);

        len = strlen(text);
        if (len == 0 || text[len - 1] != '\n' || memchr(text, '\n', len - 1))
                return -EINVAL;
        return parse_n(l, text, len - 1);
}

char *rangelist_format(const RangeList *l) {
        /* "4294967295-4294967295," is the longest item. */
        const size_t item_max = 2 * 10 + 2;
        char *buf, *p;

        assert(l);

        if (l->n_ranges > (SIZE_MAX - 1) / item_max)
                return NULL;
        buf = malloc(l->n_ranges * item_max + 1);
        if (!buf)
                return NULL;

        p = buf;
        *p = '\0';
        for (size_t i = 0; i < l->n_ranges; i++) {
                const char *sep = i > 0 ? "," : "";

                if (l->ranges[i].lo == l->ranges[i].hi)
                        p += sprintf(p, "%s%" PRIu32, sep, l->ranges[i].lo);
                else
                        p += sprintf(p, "%s%" PRIu32 "-%" PRIu32, sep, l->ranges[i].lo,
                                     l->ranges[i].hi);
        }
        return buf;
}

int rangelist_add_range(RangeList *l, uint32_t lo, uint32_t hi) {
        size_t i, j;
        int r;

        assert(l);

        if (lo > hi)
                return -EINVAL;

        /* In order (a parser, a loop over shards): O(1). */
        if (l->n_ranges == 0 || lo >= l->ranges[l->n_ranges - 1].lo)
                return append(l, lo, hi);

        /* Ranges i..j-1 overlap or touch [lo, hi] and merge into one. */
        i = lower_bound(l, lo);
        j = i;
        while (j < l->n_ranges && (uint64_t) l->ranges[j].lo <= (uint64_t) hi + 1)
                j++;

        if (i == j) {
                r = reserve(l, l->n_ranges + 1);
                if (r < 0)
                        return r;
                memmove(l->ranges + i + 1, l->ranges + i, (l->n_ranges - i) * sizeof(Range));
                l->ranges[i] = (Range){ lo, hi };
                l->n_ranges++;
                return 0;
        }

        l->ranges[i].lo = MIN(lo, l->ranges[i].lo);
        l->ranges[i].hi = MAX(hi, l->ranges[j - 1].hi);
        memmove(l->ranges + i + 1, l->ranges + j, (l->n_ranges - j) * sizeof(Range));
        l->n_ranges -= j - i - 1;
        return 0;
}

int rangelist_add(RangeList *l, uint32_t v) {
        return rangelist_add_range(l, v, v);
}

int rangelist_remove_range(RangeList *l, uint32_t lo, uint32_t hi) {
        Range left, right;
        bool has_left, has_right;
        size_t i, j, k;
        int r;

        assert(l);

        if (lo > hi)
                return -EINVAL;

        /* Ranges i..j-1 intersect [lo, hi]. */
        i = lower_bound(l, (uint64_t) lo + 1);
        j = i;
        while (j < l->n_ranges && l->ranges[j].lo <= hi)
                j++;
        if (i == j)
                return 0;

        /* What sticks out on either side survives. */
        has_left = l->ranges[i].lo < lo;
        has_right = l->ranges[j - 1].hi > hi;
        left = (Range){ l->ranges[i].lo, has_left ? lo - 1 : 0 };
        right = (Range){ has_right ? hi + 1 : 0, l->ranges[j - 1].hi };
        k = (size_t) has_left + (size_t) has_right;

        if (k > j - i) {
                /* Splitting one range in two: the only case that grows. */
                r = reserve(l, l->n_ranges + 1);
                if (r < 0)
                        return r;
        }

        memmove(l->ranges + i + k, l->ranges + j, (l->n_ranges - j) * sizeof(Range));
        l->n_ranges = l->n_ranges - (j - i) + k;
        if (has_left)
                l->ranges[i++] = left;
        if (has_right)
                l->ranges[i] = right;
        return 0;
}

bool rangelist_contains(const RangeList *l, uint32_t v) {
        size_t i;

        assert(l);

        i = lower_bound(l, (uint64_t) v + 1);
        return i < l->n_ranges && l->ranges[i].lo <= v;
}

uint64_t rangelist_count(const RangeList *l) {
        uint64_t n = 0;

        assert(l);

        for (size_t i = 0; i < l->n_ranges; i++)
                n += (uint64_t) l->ranges[i].hi - l->ranges[i].lo + 1;
        return n;
}

int rangelist_copy(RangeList *dst, const RangeList *src) {
        _cleanup_(rangelist_done) RangeList t = { 0 };
        int r;

        assert(dst);
        assert(src);

        r = reserve(&t, src->n_ranges);
        if (r < 0)
                return r;
        if (src->n_ranges > 0)
                memcpy(t.ranges, src->ranges, src->n_ranges * sizeof(Range));
        t.n_ranges = src->n_ranges;

        swap(dst, &t);
        return 0;
}

/* The set operations build their result on the side and swap it in, so dst
 * may also be src, and dst is unchanged on -ENOMEM. */

int rangelist_union(RangeList *dst, const RangeList *src) {
        _cleanup_(rangelist_done) RangeList t = { 0 };
        size_t i = 0, j = 0;
        int r;

        assert(dst);
        assert(src);

        while (i < dst->n_ranges || j < src->n_ranges) {
                const Range *next;

                if (j >= src->n_ranges ||
                    (i < dst->n_ranges && dst->ranges[i].lo <= src->ranges[j].lo))
                        next = &dst->ranges[i++];
                else
                        next = &src->ranges[j++];

                r = append(&t, next->lo, next->hi);
                if (r < 0)
                        return r;
        }

        swap(dst, &t);
        return 0;
}

int rangelist_intersect(RangeList *dst, const RangeList *src) {
        _cleanup_(rangelist_done) RangeList t = { 0 };
        size_t i = 0, j = 0;
        int r;

        assert(dst);
        assert(src);

        while (i < dst->n_ranges && j < src->n_ranges) {
                uint32_t lo = MAX(dst->ranges[i].lo, src->ranges[j].lo);
                uint32_t hi = MIN(dst->ranges[i].hi, src->ranges[j].hi);

                if (lo <= hi) {
                        r = append(&t, lo, hi);
                        if (r < 0)
                                return r;
                }
                if (dst->ranges[i].hi < src->ranges[j].hi)
                        i++;
                else
                        j++;
        }

        swap(dst, &t);
        return 0;
}

int rangelist_subtract(RangeList *dst, const RangeList *src) {
        _cleanup_(rangelist_done) RangeList t = { 0 };
        size_t j = 0;
        int r;

        assert(dst);
        assert(src);

        for (size_t i = 0; i < dst->n_ranges; i++) {
                /* cur is 64-bit: it steps past a range ending at UINT32_MAX. */
                uint64_t cur = dst->ranges[i].lo, hi = dst->ranges[i].hi;

                while (j < src->n_ranges && src->ranges[j].hi < cur)
                        j++;
                for (size_t k = j; k < src->n_ranges && src->ranges[k].lo <= hi; k++) {
                        if (src->ranges[k].lo > cur) {
                                r = append(&t, (uint32_t) cur, src->ranges[k].lo - 1);
                                if (r < 0)
                                        return r;
                        }
                        cur = MAX(cur, (uint64_t) src->ranges[k].hi + 1);
                        if (cur > hi)
                                break;
                }
                if (cur <= hi) {
                        r = append(&t, (uint32_t) cur, (uint32_t) hi);
                        if (r < 0)
                                return r;
                }
        }

        swap(dst, &t);
        return 0;
}

bool rangelist_equal(const RangeList *a, const RangeList *b) {
        assert(a);
        assert(b);

        if (a->n_ranges != b->n_ranges)
                return false;
        for (size_t i = 0; i < a->n_ranges; i++)
                if (a->ranges[i].lo != b->ranges[i].lo || a->ranges[i].hi != b->ranges[i].hi)
                        return false;
        return true;
}

void shard_status_init(ShardStatus *s) {
        assert(s);

        rangelist_init(&s->ready);
        rangelist_init(&s->connecting);
        rangelist_init(&s->failed);
        s->has_tokens = false;
        s->other = NULL;
}

void shard_status_done(ShardStatus *s) {
        assert(s);

        rangelist_done(&s->ready);
        rangelist_done(&s->connecting);
        rangelist_done(&s->failed);
        s->has_tokens = false;
        s->other = mfree(s->other);
}

static void shard_status_clear(ShardStatus *s) {
        rangelist_clear(&s->ready);
        rangelist_clear(&s->connecting);
        rangelist_clear(&s->failed);
        s->has_tokens = false;
        s->other = mfree(s->other);
}

static RangeList *shard_status_key(ShardStatus *s, const char *word, size_t len,
                                   size_t *ret_key_len) {
        static const struct {
                const char *key;
                size_t offset;
        } keys[] = {
                { "ready=", offsetof(ShardStatus, ready) },
                { "connecting=", offsetof(ShardStatus, connecting) },
                { "failed=", offsetof(ShardStatus, failed) },
        };

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                size_t k = strlen(keys[i].key);

                if (len >= k && memcmp(word, keys[i].key, k) == 0) {
                        *ret_key_len = k;
                        return (RangeList *) ((char *) s + keys[i].offset);
                }
        }
        return NULL;
}

int shard_status_parse(ShardStatus *s, const char *status_text) {
        _cleanup_free_ char *other = NULL;
        size_t n_other = 0;
        const char *p;
        int r;

        assert(s);

        shard_status_clear(s);

        p = strempty(status_text);
        other = malloc(strlen(p) + 1); /* the other words never need more */
        if (!other)
                return -ENOMEM;

        for (;;) {
                _cleanup_(rangelist_done) RangeList t = { 0 };
                RangeList *target;
                size_t len, key_len;

                p += strspn(p, WHITESPACE);
                len = strcspn(p, WHITESPACE);
                if (len == 0)
                        break;

                target = shard_status_key(s, p, len, &key_len);
                if (target) {
                        r = parse_n(&t, p + key_len, len - key_len);
                        if (r == 0)
                                r = rangelist_union(target, &t);
                        if (r < 0) {
                                shard_status_clear(s);
                                return r == -ENOMEM ? r : -EINVAL;
                        }
                        s->has_tokens = true;
                } else {
                        if (n_other > 0)
                                other[n_other++] = ' ';
                        memcpy(other + n_other, p, len);
                        n_other += len;
                }
                p += len;
        }

        other[n_other] = '\0';
        s->other = TAKE_PTR(other);
        return 0;
}
