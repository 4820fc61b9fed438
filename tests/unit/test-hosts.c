/* SPDX-License-Identifier: MIT */
/* Host liveness: timeouts, recovery, restore after a controller restart, and
 * a randomized check against a simple model of what "down" means. */
#include <errno.h>
#include <stdio.h>

#include "hosts.h"
#include "tap.h"

#define S USEC_PER_SEC

TEST(state_strings_round_trip) {
        for (int s = 0; s < _HOST_STATE_MAX; s++)
                ASSERT_EQ_INT(host_state_from_string(host_state_to_string((HostState) s)), s);
        ASSERT_EQ_INT(host_state_from_string("sideways"), _HOST_STATE_INVALID);
        ASSERT_EQ_INT(host_state_from_string(NULL), _HOST_STATE_INVALID);
        ASSERT_NULL(host_state_to_string(_HOST_STATE_MAX));
}

TEST(first_heartbeat_is_a_transition_to_up) {
        HostTable t;
        HostTransition tr;
        Host *h;

        host_table_init(&t, 10 * S);
        ASSERT_EQ_INT(host_table_heartbeat(&t, "a", 1 * S, &h, &tr), 1);
        ASSERT_STREQ(tr.id, "a");
        ASSERT_EQ_INT(tr.from, _HOST_STATE_INVALID);
        ASSERT_EQ_INT(tr.to, HOST_UP);
        ASSERT_EQ_INT(host_table_heartbeat(&t, "a", 2 * S, &h, &tr), 0);
        ASSERT_EQ_UINT(h->heartbeats, 2);
        host_table_done(&t, NULL);
}

TEST(silent_host_goes_down_after_timeout_not_before) {
        HostTable t;
        HostTransition tr[4];

        host_table_init(&t, 10 * S);
        ASSERT_EQ_INT(host_table_heartbeat(&t, "a", 100 * S, NULL, NULL), 1);
        ASSERT_EQ_UINT(host_table_expire(&t, 110 * S, tr, 4), 0); /* exactly the timeout */
        ASSERT_EQ_UINT(host_table_expire(&t, 110 * S + 1, tr, 4), 1);
        ASSERT_EQ_INT(tr[0].from, HOST_UP);
        ASSERT_EQ_INT(tr[0].to, HOST_DOWN);
        /* Down once: no repeated transition. */
        ASSERT_EQ_UINT(host_table_expire(&t, 200 * S, tr, 4), 0);
        ASSERT_EQ_UINT(host_table_count(&t, HOST_DOWN), 1);
        host_table_done(&t, NULL);
}

TEST(host_comes_back) {
        HostTable t;
        HostTransition tr[4], back;

        host_table_init(&t, 5 * S);
        host_table_heartbeat(&t, "a", 0, NULL, NULL);
        ASSERT_EQ_UINT(host_table_expire(&t, 6 * S, tr, 4), 1);
        ASSERT_EQ_INT(host_table_heartbeat(&t, "a", 7 * S, NULL, &back), 1);
        ASSERT_EQ_INT(back.from, HOST_DOWN);
        ASSERT_EQ_INT(back.to, HOST_UP);
        ASSERT_EQ_UINT(host_table_count(&t, HOST_UP), 1);
        host_table_done(&t, NULL);
}

TEST(late_heartbeat_never_moves_last_seen_back) {
        HostTable t;
        HostTransition tr[1];
        Host *h;

        host_table_init(&t, 5 * S);
        host_table_heartbeat(&t, "a", 10 * S, &h, NULL);
        host_table_heartbeat(&t, "a", 3 * S, &h, NULL);
        ASSERT_EQ_UINT(h->last_seen, 10 * S);
        ASSERT_EQ_UINT(host_table_expire(&t, 14 * S, tr, 1), 0);
        host_table_done(&t, NULL);
}

TEST(restore_gives_a_whole_timeout_to_report) {
        HostTable t;
        HostTransition tr[4];

        host_table_init(&t, 30 * S);
        ASSERT_OK(host_table_restore(&t, "a", true, false, 1000 * S, NULL));
        ASSERT_OK(host_table_restore(&t, "b", false, true, 1000 * S, NULL));
        ASSERT_EQ_UINT(host_table_count(&t, HOST_UP), 1);
        ASSERT_EQ_UINT(host_table_count(&t, HOST_DOWN), 1);
        ASSERT_EQ_UINT(host_table_expire(&t, 1029 * S, tr, 4), 0);
        ASSERT_EQ_UINT(host_table_expire(&t, 1031 * S, tr, 4), 1);
        ASSERT_STREQ(tr[0].id, "a");
        host_table_done(&t, NULL);
}

TEST(drain_is_a_state_of_live_hosts) {
        HostTable t;
        HostTransition tr, ex[1];

        host_table_init(&t, 5 * S);
        host_table_heartbeat(&t, "a", 0, NULL, NULL);
        ASSERT_EQ_INT(host_table_set_drained(&t, "a", true, &tr), 1);
        ASSERT_EQ_INT(tr.from, HOST_UP);
        ASSERT_EQ_INT(tr.to, HOST_DRAINED);
        ASSERT_EQ_INT(host_table_set_drained(&t, "a", true, &tr), 0);
        ASSERT_EQ_INT(host_table_set_drained(&t, "nope", true, &tr), -ENOENT);
        ASSERT_EQ_UINT(host_table_expire(&t, 6 * S, ex, 1), 1);
        ASSERT_EQ_INT(ex[0].from, HOST_DRAINED);
        ASSERT_EQ_INT(ex[0].to, HOST_DOWN);
        host_table_done(&t, NULL);
}

TEST(next_deadline_follows_the_oldest_live_host) {
        HostTable t;
        HostTransition tr[2];

        host_table_init(&t, 10 * S);
        ASSERT_EQ_UINT(host_table_next_deadline(&t), USEC_INFINITY);
        host_table_heartbeat(&t, "a", 5 * S, NULL, NULL);
        host_table_heartbeat(&t, "b", 2 * S, NULL, NULL);
        ASSERT_EQ_UINT(host_table_next_deadline(&t), 12 * S + 1);
        ASSERT_EQ_UINT(host_table_expire(&t, 12 * S + 1, tr, 2), 1);
        ASSERT_EQ_UINT(host_table_next_deadline(&t), 15 * S + 1);
        host_table_done(&t, NULL);
}

TEST(table_stays_sorted_and_finds_everything) {
        HostTable t;
        char id[32];

        host_table_init(&t, 10 * S);
        ASSERT_NULL(host_table_get(&t, "host-000"));
        for (int i = 999; i >= 0; i--) {
                snprintf(id, sizeof(id), "host-%03d", (i * 7919) % 1000);
                ASSERT_OK(host_table_heartbeat(&t, id, (usec_t) i, NULL, NULL));
        }
        ASSERT_EQ_UINT(t.n_hosts, 1000);
        for (size_t i = 1; i < t.n_hosts; i++)
                ASSERT_TRUE(strcmp(t.hosts[i - 1]->id, t.hosts[i]->id) < 0);
        for (size_t i = 0; i < t.n_hosts; i++)
                ASSERT_EQ_UINT(t.hosts[i]->at, i);
        for (int i = 0; i < 1000; i++) {
                Host *h;

                snprintf(id, sizeof(id), "host-%03d", i);
                h = host_table_get(&t, id);
                ASSERT_NOT_NULL(h);
                ASSERT_STREQ(h->id, id);
                ASSERT_TRUE(t.hosts[h->at] == h);
        }
        ASSERT_NULL(host_table_get(&t, "host-1000"));
        ASSERT_NULL(host_table_get(&t, ""));
        ASSERT_NULL(host_table_get(&t, NULL));
        host_table_done(&t, NULL);
}

TEST(expire_batches_when_many_go_down_at_once) {
        HostTable t;
        HostTransition tr[16];
        char id[32];
        size_t total = 0, n;

        host_table_init(&t, 1 * S);
        for (int i = 0; i < 100; i++) {
                snprintf(id, sizeof(id), "h%d", i);
                host_table_heartbeat(&t, id, 0, NULL, NULL);
        }
        do {
                n = host_table_expire(&t, 5 * S, tr, ELEMENTSOF(tr));
                total += n;
        } while (n == ELEMENTSOF(tr));
        ASSERT_EQ_UINT(total, 100);
        ASSERT_EQ_UINT(host_table_count(&t, HOST_DOWN), 100);
        host_table_done(&t, NULL);
}

/* Random heartbeats and clock steps against a model: a host is down exactly
 * when it has been silent for longer than the timeout at the last expiry. */
TEST(random_against_model) {
        enum {
                N = 20,
                STEPS = 20000
        };
        HostTable t;
        usec_t model_seen[N] = { 0 };
        bool model_known[N] = { 0 }, model_alive[N] = { 0 };
        uint64_t seed = 0x9e3779b97f4a7c15ULL;
        usec_t now = 0, timeout = 3 * S;
        HostTransition tr[N];
        char id[16];

        host_table_init(&t, timeout);
        for (int step = 0; step < STEPS; step++) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                int h = (int) (seed % N);
                now += (seed >> 20) % (S / 2);
                snprintf(id, sizeof(id), "h%02d", h);

                if ((seed >> 40) % 3 == 0) {
                        HostTransition one;
                        int r = host_table_heartbeat(&t, id, now, NULL, &one);
                        ASSERT_EQ_INT(r, !model_known[h] || !model_alive[h]);
                        model_known[h] = model_alive[h] = true;
                        model_seen[h] = now;
                } else {
                        size_t n = host_table_expire(&t, now, tr, N);
                        size_t expect = 0;
                        for (int i = 0; i < N; i++)
                                if (model_known[i] && model_alive[i] &&
                                    now - model_seen[i] > timeout) {
                                        model_alive[i] = false;
                                        expect++;
                                }
                        ASSERT_EQ_UINT(n, expect);
                }
        }
        for (int i = 0; i < N; i++) {
                snprintf(id, sizeof(id), "h%02d", i);
                Host *h = host_table_get(&t, id);
                ASSERT_EQ_INT(h != NULL, model_known[i]);
                if (h)
                        ASSERT_EQ_INT(h->alive, model_alive[i]);
        }
        host_table_done(&t, NULL);
}

TEST(grace_after_controller_blindness) {
        HostTable t;
        HostTransition tr[2];

        host_table_init(&t, 10 * S);
        host_table_heartbeat(&t, "a", 0, NULL, NULL);
        host_table_heartbeat(&t, "b", 0, NULL, NULL);
        ASSERT_EQ_UINT(host_table_expire(&t, 11 * S, tr, 2), 2);
        host_table_heartbeat(&t, "a", 12 * S, NULL, NULL);
        /* the controller was blind from 13s to 30s */
        host_table_grace(&t, 30 * S);
        ASSERT_EQ_UINT(host_table_expire(&t, 39 * S, tr, 2), 0);
        ASSERT_EQ_UINT(host_table_count(&t, HOST_DOWN), 1); /* b stays down */
        ASSERT_EQ_UINT(host_table_expire(&t, 41 * S, tr, 2), 1);
        ASSERT_STREQ(tr[0].id, "a");
        host_table_done(&t, NULL);
}

static int freed;
static void count_free(void *p) {
        freed++;
        free(p);
}

TEST(done_frees_userdata) {
        HostTable t;
        Host *h;

        host_table_init(&t, S);
        host_table_heartbeat(&t, "a", 0, &h, NULL);
        h->userdata = malloc(8);
        host_table_heartbeat(&t, "b", 0, NULL, NULL);
        freed = 0;
        host_table_done(&t, count_free);
        ASSERT_EQ_INT(freed, 1);
}

int main(void) {
        return tap_run(TESTS(
                state_strings_round_trip, first_heartbeat_is_a_transition_to_up,
                silent_host_goes_down_after_timeout_not_before, host_comes_back,
                late_heartbeat_never_moves_last_seen_back, restore_gives_a_whole_timeout_to_report,
                drain_is_a_state_of_live_hosts, next_deadline_follows_the_oldest_live_host,
                table_stays_sorted_and_finds_everything, expire_batches_when_many_go_down_at_once,
                random_against_model, grace_after_controller_blindness, done_frees_userdata));
}
