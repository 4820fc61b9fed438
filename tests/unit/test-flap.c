/* SPDX-License-Identifier: MIT */
/* Flapping: raised once when restarts pile up in the window, resolved once
 * when the unit has been quiet and active for a window. */
#include "flap.h"
#include "tap.h"

#define S USEC_PER_SEC
#define W (60 * S)

TEST(first_observation_is_a_baseline) {
        FlapTracker t = { 0 };

        ASSERT_EQ_INT(flap_observe(&t, 40, true, 100 * S, W, 3), 0);
        ASSERT_EQ_UINT(t.n, 0);
}

TEST(three_restarts_in_a_minute_flap_once) {
        FlapTracker t = { 0 };

        flap_observe(&t, 0, true, 0, W, 3);
        ASSERT_EQ_INT(flap_observe(&t, 1, true, 1 * S, W, 3), 0);
        ASSERT_EQ_INT(flap_observe(&t, 2, true, 2 * S, W, 3), 0);
        ASSERT_EQ_INT(flap_observe(&t, 3, false, 3 * S, W, 3), 1);
        ASSERT_EQ_INT(flap_observe(&t, 4, false, 4 * S, W, 3), 0); /* raised once */
}

TEST(slow_restarts_do_not_flap) {
        FlapTracker t = { 0 };

        flap_observe(&t, 0, true, 0, W, 3);
        for (uint32_t i = 1; i <= 20; i++)
                ASSERT_EQ_INT(flap_observe(&t, i, true, i * 40 * S, W, 3), 0);
}

TEST(burst_counts_every_restart) {
        FlapTracker t = { 0 };

        flap_observe(&t, 5, true, 0, W, 3);
        ASSERT_EQ_INT(flap_observe(&t, 9, true, S, W, 3), 1);
}

TEST(quiet_and_active_for_a_window_resolves_once) {
        FlapTracker t = { 0 };

        flap_observe(&t, 0, true, 0, W, 3);
        ASSERT_EQ_INT(flap_observe(&t, 3, false, S, W, 3), 1);
        ASSERT_EQ_INT(flap_observe(&t, 3, false, 70 * S, W, 3), 0); /* quiet but not active */
        ASSERT_EQ_INT(flap_observe(&t, 3, true, 71 * S, W, 3), -1);
        ASSERT_EQ_INT(flap_observe(&t, 3, true, 72 * S, W, 3), 0);
}

TEST(manual_restart_resets_the_baseline) {
        FlapTracker t = { 0 };

        flap_observe(&t, 7, true, 0, W, 3);
        ASSERT_EQ_INT(flap_observe(&t, 0, true, S, W, 3), 0);
        ASSERT_EQ_UINT(t.n, 0);
        ASSERT_EQ_INT(flap_observe(&t, 1, true, 2 * S, W, 3), 0);
        ASSERT_EQ_UINT(t.n, 1);
}

/* Random observations against a model that keeps every restart time. */
TEST(random_against_model) {
        uint64_t seed = 12345;
        for (int run = 0; run < 200; run++) {
                FlapTracker t = { 0 };
                usec_t model[4096];
                size_t m = 0;
                uint32_t restarts = 0;
                usec_t now = 0;
                bool flapping = false;

                flap_observe(&t, restarts, true, now, W, 3);
                for (int step = 0; step < 300; step++) {
                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        now += (seed >> 33) % (30 * S);
                        uint32_t add = (uint32_t) ((seed >> 20) % 3);
                        bool active = (seed >> 40) & 1;
                        for (uint32_t i = 0; i < add && m < 4096; i++)
                                model[m++] = now;
                        restarts += add;
                        size_t recent = 0;
                        for (size_t i = 0; i < m; i++)
                                recent += model[i] > now - W || now < W;
                        int r = flap_observe(&t, restarts, active, now, W, 3);
                        int expect = 0;
                        if (!flapping && MIN(recent, (size_t) FLAP_MAX_EVENTS) >= 3)
                                expect = 1, flapping = true;
                        else if (flapping && recent == 0 && active)
                                expect = -1, flapping = false;
                        ASSERT_EQ_INT(r, expect);
                }
        }
}

int main(void) {
        return tap_run(TESTS(first_observation_is_a_baseline, three_restarts_in_a_minute_flap_once,
                             slow_restarts_do_not_flap, burst_counts_every_restart,
                             quiet_and_active_for_a_window_resolves_once,
                             manual_restart_resets_the_baseline, random_against_model));
}
