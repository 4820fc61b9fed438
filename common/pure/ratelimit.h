/* SPDX-License-Identifier: MIT */
/* Token buckets: `rate` events per second on average, bursts of up to
 * `burst`. Pure: the time comes in as an argument. Used to keep one host or
 * one RPC user from stalling the controller. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "duration.h"

typedef struct RateLimit {
        uint32_t rate;  /* events per second; 0 = unlimited */
        uint32_t burst; /* bucket size; at least 1 when rate > 0 */
} RateLimit;

typedef struct TokenBucket {
        uint64_t tokens_us; /* tokens × USEC_PER_SEC, so refills need no division */
        usec_t last;        /* monotonic time of the last refill; 0 = never used (full) */
} TokenBucket;

/* Takes `n` tokens if there are that many (returns true), after refilling
 * for the time since the last call. A new (zeroed) bucket starts full. A
 * cost above the burst is never granted. */
bool token_bucket_take_n(TokenBucket *b, const RateLimit *l, usec_t now, uint32_t n);

static inline bool token_bucket_take(TokenBucket *b, const RateLimit *l, usec_t now) {
        return token_bucket_take_n(b, l, now, 1);
}
