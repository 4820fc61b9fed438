/* SPDX-License-Identifier: MIT */
/* Token bucket arithmetic in integer microtokens: no floating point, no
 * overflow however long a bucket sat unused. */
#include <assert.h>

#include "ratelimit.h"

bool token_bucket_take_n(TokenBucket *b, const RateLimit *l, usec_t now, uint32_t n) {
        uint64_t full, cost = (uint64_t) n * USEC_PER_SEC;

        assert(b);
        assert(l);

        if (l->rate == 0)
                return true;
        full = (uint64_t) (l->burst > 0 ? l->burst : 1) * USEC_PER_SEC;
        if (b->last == 0 || now < b->last)
                b->tokens_us = full; /* new, or the clock went back: start full */
        else {
                usec_t gap = now - b->last;
                /* Past this gap the bucket is full anyway; capping it keeps
                 * gap × rate from overflowing. */
                if (gap >= full / l->rate)
                        b->tokens_us = full;
                else
                        b->tokens_us = b->tokens_us + gap * l->rate > full
                                               ? full
                                               : b->tokens_us + gap * l->rate;
        }
        b->last = now;
        if (b->tokens_us < cost)
                return false;
        b->tokens_us -= cost;
        return true;
}
