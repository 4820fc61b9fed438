/* SPDX-License-Identifier: MIT */
/* The horizon hosts are judged by (controller/liveness.c): markers read
 * back move it; a controller that reads its queue so late that heartbeats
 * may have expired in it judges no host, and gives every host a fresh
 * timeout once it reads in time again. */
#include "liveness.h"
#include "tap.h"
#include "util.h"

#define S USEC_PER_SEC

/* A marker of this run sent at `sent` (monotonic µs), read at `read`. */
static bool read_marker(Liveness *l, usec_t sent, usec_t read) {
        Baton__V1__ControllerMarker mk;

        liveness_marker(l, "test", &mk);
        mk.sent_mono_us = sent;
        return liveness_marker_read(l, &mk, read);
}

TEST(blind_until_connected_and_a_marker_is_back) {
        Liveness l;
        usec_t h;

        ASSERT_OK(liveness_init(&l, 30 * S));
        ASSERT_FALSE(liveness_horizon(&l, &h));
        liveness_set_blind(&l, false);
        ASSERT_FALSE(liveness_horizon(&l, &h));
        ASSERT_TRUE(read_marker(&l, 100 * S, 101 * S));
        ASSERT_TRUE(liveness_horizon(&l, &h));
        ASSERT_EQ_UINT(h, 100 * S);
        liveness_set_blind(&l, true);
        ASSERT_FALSE(liveness_horizon(&l, &h));
}

TEST(another_runs_or_a_stale_marker_moves_nothing) {
        Baton__V1__ControllerMarker mk;
        Liveness l;
        usec_t h;

        ASSERT_OK(liveness_init(&l, 30 * S));
        liveness_set_blind(&l, false);
        ASSERT_TRUE(read_marker(&l, 100 * S, 101 * S));
        ASSERT_FALSE(read_marker(&l, 90 * S, 102 * S)); /* older than the horizon */
        liveness_marker(&l, "test", &mk);
        mk.nonce = (char *) "0123456789abcdef0123456789abcdef";
        mk.sent_mono_us = 110 * S;
        ASSERT_FALSE(liveness_marker_read(&l, &mk, 111 * S));
        ASSERT_TRUE(liveness_horizon(&l, &h));
        ASSERT_EQ_UINT(h, 100 * S);
}

TEST(a_lag_below_the_heartbeat_expiry_judges_as_of_the_horizon) {
        Liveness l;
        usec_t h;

        ASSERT_OK(liveness_init(&l, 30 * S));
        liveness_set_blind(&l, false);
        /* 20 s behind with a 30 s timeout, but never as late as a heartbeat
         * may expire: judged as of the marker. */
        ASSERT_TRUE(read_marker(&l, 100 * S, 100 * S + LIVENESS_OVERRUN_LAG - 1));
        ASSERT_TRUE(liveness_horizon(&l, &h));
        ASSERT_EQ_UINT(h, 100 * S);
        ASSERT_FALSE(liveness_take_regained(&l));
}

TEST(reading_later_than_heartbeats_live_judges_no_host_until_caught_up) {
        Liveness l;
        usec_t h;

        ASSERT_OK(liveness_init(&l, 30 * S));
        liveness_set_blind(&l, false);
        ASSERT_TRUE(read_marker(&l, 100 * S, 101 * S));
        /* A steady 35 s behind (a slow broker): the horizon keeps moving, but
         * heartbeats sent meanwhile may have expired unread, so no host may be
         * judged by its silence, however long it lasts. */
        for (usec_t t = 136 * S; t < 400 * S; t += S) {
                ASSERT_TRUE(read_marker(&l, t - 35 * S, t));
                ASSERT_FALSE(liveness_horizon(&l, &h));
                ASSERT_FALSE(liveness_take_regained(&l));
        }
        /* Caught up: judged again, once every host got a whole timeout. */
        ASSERT_TRUE(read_marker(&l, 399 * S, 400 * S));
        ASSERT_TRUE(liveness_take_regained(&l));
        ASSERT_FALSE(liveness_take_regained(&l));
        ASSERT_TRUE(liveness_horizon(&l, &h));
        ASSERT_EQ_UINT(h, 399 * S);
}

TEST(the_overrun_lag_is_below_the_shortest_heartbeat_expiry) {
        ASSERT_LT_INT((long long) LIVENESS_OVERRUN_LAG, (long long) TOPOLOGY_HEARTBEAT_MIN_EXPIRY);
        ASSERT_EQ_UINT(TOPOLOGY_HEARTBEAT_EXPIRY(1 * S), TOPOLOGY_HEARTBEAT_MIN_EXPIRY);
        ASSERT_EQ_UINT(TOPOLOGY_HEARTBEAT_EXPIRY(5 * S), 25 * S);
}

int main(void) {
        return tap_run(TESTS(blind_until_connected_and_a_marker_is_back,
                             another_runs_or_a_stale_marker_moves_nothing,
                             a_lag_below_the_heartbeat_expiry_judges_as_of_the_horizon,
                             reading_later_than_heartbeats_live_judges_no_host_until_caught_up,
                             the_overrun_lag_is_below_the_shortest_heartbeat_expiry));
}
