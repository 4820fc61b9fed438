/* SPDX-License-Identifier: MIT */
/* Shard range lists ("0-13,90-91") as sorted, merged half-open intervals.
 * Used for shard assignments and for readiness tokens parsed from StatusText
 * ("ready=0-12 connecting=13"). Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct RangeList {
        /* sorted, non-overlapping, non-adjacent [lo, hi] inclusive pairs */
        struct {
                uint32_t lo, hi;
        } * ranges;
        size_t n_ranges;
        size_t n_allocated;
} RangeList;

#define RANGELIST_MAX_SHARD (1u << 24) /* upper bound on any shard id we accept */

void rangelist_init(RangeList *l);
void rangelist_done(RangeList *l);
void rangelist_clear(RangeList *l);

/* Parses "0-13,90-91" (also "5", "", and overlapping or unsorted input which
 * is normalised). Shard ids must be < RANGELIST_MAX_SHARD. On error returns
 * -EINVAL (-ERANGE for a too large id) and leaves *l unchanged. */
int rangelist_parse(RangeList *l, const char *s);
/* A shards file of ShardChange=reload (docs/workload-contract.md): one range
 * list as rangelist_parse() takes it, then a newline, and nothing else. A
 * text without its newline is -EINVAL: it may have been cut short. */
int rangelist_parse_line(RangeList *l, const char *text);
/* Canonical text; "" for an empty list. Caller frees. NULL on OOM. */
char *rangelist_format(const RangeList *l);

/* The whole uint32_t range is allowed here (RANGELIST_MAX_SHARD bounds only
 * parsing); lo > hi is -EINVAL. Set operations leave dst unchanged on
 * -ENOMEM and accept dst == src. */
int rangelist_add_range(RangeList *l, uint32_t lo, uint32_t hi);
int rangelist_add(RangeList *l, uint32_t v);
int rangelist_remove_range(RangeList *l, uint32_t lo, uint32_t hi);
bool rangelist_contains(const RangeList *l, uint32_t v);
uint64_t rangelist_count(const RangeList *l);
int rangelist_copy(RangeList *dst, const RangeList *src);
int rangelist_union(RangeList *dst, const RangeList *src);
int rangelist_subtract(RangeList *dst, const RangeList *src);
int rangelist_intersect(RangeList *dst, const RangeList *src);
bool rangelist_equal(const RangeList *a, const RangeList *b);

/* Shard readiness parsed from a unit's StatusText. */
typedef struct ShardStatus {
        RangeList ready;
        RangeList connecting;
        RangeList failed;
        bool has_tokens; /* at least one ready=/connecting=/failed= token seen */
        char *other;     /* the remaining words, space-joined, for display ("" if none) */
} ShardStatus;

void shard_status_init(ShardStatus *s);
void shard_status_done(ShardStatus *s);
/* Parses space-separated "key=rangelist" tokens; keys ready, connecting,
 * failed (repeated keys add up; "ready=" is an empty but present token).
 * Other words go to `other`. NULL text is empty text. A known key with a bad
 * range list is -EINVAL (the status is left cleared, `other` NULL). */
int shard_status_parse(ShardStatus *s, const char *status_text);
