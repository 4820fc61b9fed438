/* SPDX-License-Identifier: MIT */
/* token_bucket_take(): bursts, steady rate, long idle gaps, a clock that
 * goes back, and no overflow at extreme rates and times. */
#include "ratelimit.h"
#include "tap.h"

static unsigned take_n(TokenBucket *b, const RateLimit *l, usec_t now, unsigned n) {
        unsigned ok = 0;

        for (unsigned i = 0; i < n; i++)
                ok += token_bucket_take(b, l, now);
        return ok;
}

TEST(ratelimit_burst_then_refuses) {
        RateLimit l = { .rate = 10, .burst = 20 };
        TokenBucket b = { 0 };

        ASSERT_EQ_UINT(take_n(&b, &l, 1000 * USEC_PER_SEC, 100), 20);
        ASSERT_FALSE(token_bucket_take(&b, &l, 1000 * USEC_PER_SEC));
}

TEST(ratelimit_refills_at_rate) {
        RateLimit l = { .rate = 10, .burst = 5 };
        TokenBucket b = { 0 };
        usec_t t = 5 * USEC_PER_SEC;

        ASSERT_EQ_UINT(take_n(&b, &l, t, 5), 5);
        /* 100 ms later: exactly one more token. */
        t += 100 * USEC_PER_MSEC;
        ASSERT_EQ_UINT(take_n(&b, &l, t, 5), 1);
        /* 50 ms: half a token, none to take; another 50 ms: one. */
        t += 50 * USEC_PER_MSEC;
        ASSERT_FALSE(token_bucket_take(&b, &l, t));
        t += 50 * USEC_PER_MSEC;
        ASSERT_TRUE(token_bucket_take(&b, &l, t));
        /* Over ten seconds a steady caller gets rate × seconds (and the burst). */
        unsigned got = 0;
        for (int i = 0; i < 1000; i++) {
                t += 10 * USEC_PER_MSEC;
                got += take_n(&b, &l, t, 3);
        }
        ASSERT_EQ_UINT(got, 100);
}

TEST(ratelimit_idle_fills_to_burst_only) {
        RateLimit l = { .rate = 1000, .burst = 3 };
        TokenBucket b = { 0 };

        ASSERT_EQ_UINT(take_n(&b, &l, USEC_PER_SEC, 10), 3);
        ASSERT_EQ_UINT(take_n(&b, &l, UINT64_MAX / 2, 10), 3);
        ASSERT_EQ_UINT(take_n(&b, &l, UINT64_MAX - 1, 10), 3);
}

TEST(ratelimit_clock_back_and_unlimited) {
        RateLimit l = { .rate = 1, .burst = 1 }, none = { 0 };
        TokenBucket b = { 0 };

        ASSERT_TRUE(token_bucket_take(&b, &l, 100 * USEC_PER_SEC));
        ASSERT_FALSE(token_bucket_take(&b, &l, 100 * USEC_PER_SEC));
        /* A clock that went back restarts the bucket full rather than stalling. */
        ASSERT_TRUE(token_bucket_take(&b, &l, 50 * USEC_PER_SEC));
        ASSERT_EQ_UINT(take_n(&b, &none, 50 * USEC_PER_SEC, 1000), 1000);
        /* burst 0 with a rate counts as 1. */
        RateLimit zero_burst = { .rate = 5, .burst = 0 };
        TokenBucket c = { 0 };
        ASSERT_EQ_UINT(take_n(&c, &zero_burst, USEC_PER_SEC, 10), 1);
}

TEST(ratelimit_costs) {
        RateLimit l = { .rate = 100, .burst = 1000 };
        TokenBucket b = { 0 };
        usec_t t = USEC_PER_SEC;

        ASSERT_TRUE(token_bucket_take_n(&b, &l, t, 600));
        ASSERT_FALSE(token_bucket_take_n(&b, &l, t, 401));
        ASSERT_TRUE(token_bucket_take_n(&b, &l, t, 400));
        /* More than the burst never passes, however long one waits. */
        ASSERT_FALSE(token_bucket_take_n(&b, &l, t + 3600 * USEC_PER_SEC, 1001));
        ASSERT_TRUE(token_bucket_take_n(&b, &l, t + 3600 * USEC_PER_SEC, 1000));
        /* Four seconds refill 400. */
        ASSERT_FALSE(token_bucket_take_n(&b, &l, t + 3603 * USEC_PER_SEC, 400));
        ASSERT_TRUE(token_bucket_take_n(&b, &l, t + 3604 * USEC_PER_SEC, 100));
}

int main(void) {
        return tap_run(TESTS(ratelimit_burst_then_refuses, ratelimit_refills_at_rate,
                             ratelimit_idle_fills_to_burst_only, ratelimit_clock_back_and_unlimited,
                             ratelimit_costs));
}
