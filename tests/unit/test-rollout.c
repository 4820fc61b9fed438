/* SPDX-License-Identifier: MIT */
/* Tests of the rolling-restart state machine: one hand-written case per rule,
 * format/parse round trips and malformed texts, and a seeded simulator driving
 * over a thousand random rollouts through slow, dead and flapping instances,
 * an operator who pauses, resumes and aborts, and controller crashes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rollout.h"
#include "tap.h"

#define SEC(x) (USEC_PER_SEC * (usec_t) (x))
#define MSEC(x) (USEC_PER_MSEC * (usec_t) (x))
#define T0 UINT64_C(1700000000000000)

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

static void fill(InstanceHealth *h, uint32_t n, bool healthy, bool restarted) {
        for (uint32_t i = 0; i < n; i++)
                h[i] = (InstanceHealth){ .instance = i,
                                         .healthy = healthy,
                                         .restarted_since_issue = restarted };
}

#define ACTS_MAX 64

static size_t step(Rollout *r, const InstanceHealth *h, size_t nh, usec_t now, RolloutAction *a) {
        size_t n = rollout_step(r, h, nh, now, UINT32_MAX, a, r->n_items + 2);

        ASSERT_LE_UINT(n, r->n_items + 2);
        return n;
}

static size_t count_kind(const RolloutAction *a, size_t n, RolloutActionKind kind) {
        size_t c = 0;

        for (size_t i = 0; i < n; i++)
                c += a[i].kind == kind;
        return c;
}

static bool has_restart(const RolloutAction *a, size_t n, uint32_t instance) {
        for (size_t i = 0; i < n; i++)
                if (a[i].kind == ROLLOUT_ACTION_RESTART && a[i].instance == instance)
                        return true;
        return false;
}

static char *fmt(const Rollout *r) {
        char *s = NULL;

        ASSERT_OK(rollout_format(r, &s));
        ASSERT_NOT_NULL(s);
        return s;
}

/* Format, parse back, and check the copy formats the same. */
static Rollout *reparse(const Rollout *r) {
        _cleanup_free_ char *text = fmt(r), *again = NULL, *error = NULL;
        Rollout *copy = NULL;
        int k;

        k = rollout_parse(text, &copy, &error);
        if (k < 0)
                printf("# parse of \"%s\" failed: %s\n", text, strna(error));
        ASSERT_OK(k);
        again = fmt(copy);
        ASSERT_STREQ(again, text);
        return copy;
}

static Rollout *new_rollout(uint32_t n, uint32_t max_unavailable, usec_t healthy_for,
                            usec_t health_timeout) {
        Rollout *r = NULL;

        ASSERT_OK(rollout_new("gateway", 42, n, max_unavailable, healthy_for, health_timeout, &r));
        return r;
}

/* Runs item `i` from RESTARTING to DONE: down, then healthy for healthy_for. */
static usec_t settle(Rollout *r, InstanceHealth *h, uint32_t i, usec_t now, RolloutAction *a) {
        h[i].healthy = false;
        h[i].restarted_since_issue = true;
        step(r, h, r->n_items, now += SEC(1), a);
        h[i].healthy = true;
        step(r, h, r->n_items, now += SEC(1), a);
        ASSERT_EQ_INT(r->items[i].state, ITEM_SETTLING);
        step(r, h, r->n_items, now += r->healthy_for, a);
        ASSERT_EQ_INT(r->items[i].state, ITEM_DONE);
        h[i].restarted_since_issue = false; /* for whoever comes next */
        return now;
}

TEST(string_tables) {
        for (int s = 0; s < _ROLLOUT_STATE_MAX; s++) {
                ASSERT_NOT_NULL(rollout_state_to_string(s));
                ASSERT_EQ_INT(rollout_state_from_string(rollout_state_to_string(s)), s);
        }
        for (int s = 0; s < _ITEM_STATE_MAX; s++) {
                ASSERT_NOT_NULL(rollout_item_state_to_string(s));
                ASSERT_EQ_INT(rollout_item_state_from_string(rollout_item_state_to_string(s)), s);
        }
        ASSERT_STREQ(rollout_state_to_string(ROLLOUT_FAILED), "failed");
        ASSERT_STREQ(rollout_item_state_to_string(ITEM_SETTLING), "settling");
        ASSERT_NULL(rollout_state_to_string(_ROLLOUT_STATE_MAX));
        ASSERT_NULL(rollout_state_to_string(_ROLLOUT_STATE_INVALID));
        ASSERT_NULL(rollout_item_state_to_string(_ITEM_STATE_MAX));
        ASSERT_EQ_INT(rollout_state_from_string("Running"), _ROLLOUT_STATE_INVALID);
        ASSERT_EQ_INT(rollout_state_from_string(""), _ROLLOUT_STATE_INVALID);
        ASSERT_EQ_INT(rollout_state_from_string(NULL), _ROLLOUT_STATE_INVALID);
        ASSERT_EQ_INT(rollout_item_state_from_string("running"), _ITEM_STATE_INVALID);
}

TEST(new_validates) {
        Rollout *r = NULL;

        ASSERT_OK(rollout_new("gateway", 7, 4, 2, SEC(10), SEC(900), &r));
        ASSERT_STREQ(r->service, "gateway");
        ASSERT_EQ_UINT(r->id, 7);
        ASSERT_EQ_INT(r->state, ROLLOUT_RUNNING);
        ASSERT_EQ_UINT(r->n_items, 4);
        ASSERT_EQ_UINT(r->max_unavailable, 2);
        ASSERT_NULL(r->reason);
        ASSERT_FALSE(r->alert_raised);
        for (uint32_t i = 0; i < 4; i++) {
                ASSERT_EQ_UINT(r->items[i].instance, i);
                ASSERT_EQ_INT(r->items[i].state, ITEM_PENDING);
                ASSERT_EQ_UINT(r->items[i].attempts, 0);
                ASSERT_EQ_UINT(r->items[i].started_at, 0);
        }
        r = rollout_free(r);
        ASSERT_NULL(rollout_free(NULL));

        ASSERT_OK(rollout_new("a", 0, ROLLOUT_ITEMS_MAX, 1, 0, USEC_INFINITY, &r));
        ASSERT_EQ_UINT(r->n_items, ROLLOUT_ITEMS_MAX);
        r = rollout_free(r);

        r = (Rollout *) 0x1; /* untouched on failure */
        ASSERT_ERR(rollout_new(NULL, 1, 3, 1, 0, SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new("", 1, 3, 1, 0, SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new("gateway@1", 1, 3, 1, 0, SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new("a/b", 1, 3, 1, 0, SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new("a b", 1, 3, 1, 0, SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new(".hidden", 1, 3, 1, 0, SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new("gateway", 1, 0, 1, 0, SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new("gateway", 1, ROLLOUT_ITEMS_MAX + 1, 1, 0, SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new("gateway", 1, 3, 0, 0, SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new("gateway", 1, 3, 1, SEC(1), SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new("gateway", 1, 3, 1, SEC(2), SEC(1), &r), -EINVAL);
        ASSERT_ERR(rollout_new("gateway", 1, 3, 1, 0, 0, &r), -EINVAL);
        ASSERT_TRUE(r == (Rollout *) 0x1);
}

TEST(first_step_restarts_up_to_max_unavailable) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(5, 2, SEC(10), SEC(60));
        InstanceHealth h[5];
        RolloutAction a[ACTS_MAX];
        size_t n;

        fill(h, 5, true, false);
        n = step(r, h, 5, T0, a);
        ASSERT_EQ_UINT(n, 2);
        ASSERT_TRUE(a[0].kind == ROLLOUT_ACTION_RESTART && a[0].instance == 0);
        ASSERT_TRUE(a[1].kind == ROLLOUT_ACTION_RESTART && a[1].instance == 1);
        for (uint32_t i = 0; i < 2; i++) {
                ASSERT_EQ_INT(r->items[i].state, ITEM_RESTARTING);
                ASSERT_EQ_UINT(r->items[i].started_at, T0);
                ASSERT_EQ_UINT(r->items[i].attempts, 1);
        }
        for (uint32_t i = 2; i < 5; i++)
                ASSERT_EQ_INT(r->items[i].state, ITEM_PENDING);

        /* Same health later: the two in flight use up the budget. */
        ASSERT_EQ_UINT(step(r, h, 5, T0 + SEC(1), a), 0);
}

TEST(healthy_without_restart_evidence_is_not_done) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(2, 1, SEC(5), SEC(60));
        InstanceHealth h[2];
        RolloutAction a[ACTS_MAX];

        fill(h, 2, true, false);
        ASSERT_EQ_UINT(step(r, h, 2, T0, a), 1);
        /* Still healthy from before the restart: not progress. */
        for (usec_t t = T0 + SEC(1); t < T0 + SEC(30); t += SEC(1)) {
                ASSERT_EQ_UINT(step(r, h, 2, t, a), 0);
                ASSERT_EQ_INT(r->items[0].state, ITEM_RESTARTING);
        }
        h[0].restarted_since_issue = true;
        ASSERT_EQ_UINT(step(r, h, 2, T0 + SEC(31), a), 0);
        ASSERT_EQ_INT(r->items[0].state, ITEM_SETTLING);
        ASSERT_EQ_UINT(r->items[0].healthy_since, T0 + SEC(31));
}

TEST(settles_for_healthy_for_then_next) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(3, 1, SEC(10), SEC(120));
        InstanceHealth h[3];
        RolloutAction a[ACTS_MAX];
        size_t n;

        fill(h, 3, true, false);
        ASSERT_EQ_UINT(step(r, h, 3, T0, a), 1);
        h[0].healthy = false;
        h[0].restarted_since_issue = true;
        ASSERT_EQ_UINT(step(r, h, 3, T0 + SEC(2), a), 0);
        ASSERT_EQ_INT(r->items[0].state, ITEM_RESTARTING);
        h[0].healthy = true;
        ASSERT_EQ_UINT(step(r, h, 3, T0 + SEC(5), a), 0);
        ASSERT_EQ_INT(r->items[0].state, ITEM_SETTLING);
        ASSERT_EQ_UINT(step(r, h, 3, T0 + SEC(15) - 1, a), 0);
        ASSERT_EQ_INT(r->items[0].state, ITEM_SETTLING);
        n = step(r, h, 3, T0 + SEC(15), a);
        ASSERT_EQ_INT(r->items[0].state, ITEM_DONE);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_TRUE(a[0].kind == ROLLOUT_ACTION_RESTART && a[0].instance == 1);
        ASSERT_EQ_UINT(r->items[1].started_at, T0 + SEC(15));
}

TEST(settling_drops_back_when_health_is_lost) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(2, 1, SEC(10), SEC(120));
        InstanceHealth h[2];
        RolloutAction a[ACTS_MAX];

        fill(h, 2, true, false);
        step(r, h, 2, T0, a);
        h[0].restarted_since_issue = true;
        step(r, h, 2, T0 + SEC(1), a);
        ASSERT_EQ_INT(r->items[0].state, ITEM_SETTLING);
        h[0].healthy = false;
        ASSERT_EQ_UINT(step(r, h, 2, T0 + SEC(9), a), 0);
        ASSERT_EQ_INT(r->items[0].state, ITEM_RESTARTING);
        ASSERT_EQ_UINT(r->items[0].healthy_since, 0);
        h[0].healthy = true;
        step(r, h, 2, T0 + SEC(12), a);
        ASSERT_EQ_UINT(r->items[0].healthy_since, T0 + SEC(12));
        /* The clock of HealthyFor starts again. */
        ASSERT_EQ_UINT(step(r, h, 2, T0 + SEC(21), a), 0);
        ASSERT_EQ_INT(r->items[0].state, ITEM_SETTLING);
        ASSERT_EQ_UINT(step(r, h, 2, T0 + SEC(22), a), 1);
        ASSERT_EQ_INT(r->items[0].state, ITEM_DONE);
}

TEST(healthy_for_zero_is_done_at_first_health) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(2, 1, 0, SEC(60));
        InstanceHealth h[2];
        RolloutAction a[ACTS_MAX];
        size_t n;

        fill(h, 2, true, false);
        step(r, h, 2, T0, a);
        h[0].restarted_since_issue = true;
        n = step(r, h, 2, T0 + SEC(1), a);
        ASSERT_EQ_INT(r->items[0].state, ITEM_DONE);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_TRUE(has_restart(a, n, 1));
}

TEST(unhealthy_outsider_uses_up_max_unavailable) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(3, 1, SEC(1), SEC(60));
        InstanceHealth h[4];
        RolloutAction a[ACTS_MAX];

        fill(h, 4, true, false);
        h[3].instance = 9; /* not in the rollout (e.g. just scaled up) */
        h[3].healthy = false;
        ASSERT_EQ_UINT(step(r, h, 4, T0, a), 0);
        ASSERT_EQ_INT(r->items[0].state, ITEM_PENDING);
        h[3].healthy = true;
        ASSERT_EQ_UINT(step(r, h, 4, T0 + SEC(1), a), 1);
        ASSERT_TRUE(has_restart(a, 1, 0));
}

TEST(unhealthy_done_item_blocks_the_next) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(3, 1, SEC(2), SEC(60));
        InstanceHealth h[3];
        RolloutAction a[ACTS_MAX];
        usec_t now = T0;

        fill(h, 3, true, false);
        step(r, h, 3, now, a);
        h[0].healthy = false;
        h[0].restarted_since_issue = true;
        step(r, h, 3, now += SEC(1), a);
        h[0].healthy = true;
        step(r, h, 3, now += SEC(1), a);
        /* Instance 0 crashes right when it would be done: nothing new. */
        h[0].healthy = false;
        ASSERT_EQ_UINT(step(r, h, 3, now += SEC(5), a), 0);
        ASSERT_EQ_INT(r->items[0].state, ITEM_RESTARTING);
        h[0].healthy = true;
        step(r, h, 3, now += SEC(1), a);
        ASSERT_EQ_UINT(step(r, h, 3, now += SEC(2), a), 1);
        ASSERT_EQ_INT(r->items[0].state, ITEM_DONE);
        ASSERT_EQ_INT(r->items[1].state, ITEM_RESTARTING);
        /* Done, then down for another reason: it counts like any other. */
        h[0].healthy = false;
        h[1].healthy = false;
        h[1].restarted_since_issue = true;
        step(r, h, 3, now += SEC(1), a);
        h[1].healthy = true;
        step(r, h, 3, now += SEC(1), a);
        ASSERT_EQ_UINT(step(r, h, 3, now += SEC(2), a), 0);
        ASSERT_EQ_INT(r->items[1].state, ITEM_DONE);
        ASSERT_EQ_INT(r->items[2].state, ITEM_PENDING);
        h[0].healthy = true;
        ASSERT_EQ_UINT(step(r, h, 3, now += SEC(1), a), 1);
        ASSERT_TRUE(has_restart(a, 1, 2));
}

TEST(down_pending_instance_is_restarted_at_no_extra_cost) {
        InstanceHealth h[4];
        RolloutAction a[ACTS_MAX];
        Rollout *r;
        size_t n;

        /* max 1, instance 3 down: restarting it takes nothing more down. */
        r = new_rollout(4, 1, SEC(1), SEC(60));
        fill(h, 4, true, false);
        h[3].healthy = false;
        n = step(r, h, 4, T0, a);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_TRUE(has_restart(a, n, 3));
        r = rollout_free(r);

        /* max 2: one healthy one and the down one; the order does not block. */
        r = new_rollout(4, 2, SEC(1), SEC(60));
        n = step(r, h, 4, T0, a);
        ASSERT_EQ_UINT(n, 2);
        ASSERT_TRUE(has_restart(a, n, 0));
        ASSERT_TRUE(has_restart(a, n, 3));
        r = rollout_free(r);

        /* Missing health is down too (unknown), and is handled the same way. */
        r = new_rollout(4, 1, SEC(1), SEC(60));
        fill(h, 4, true, false);
        n = step(r, h, 3, T0, a);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_TRUE(has_restart(a, n, 3));
        ASSERT_EQ_UINT(step(r, h, 3, T0 + SEC(1), a), 0);
        r = rollout_free(r);

        /* Two down with max 1: neither may go first, the other is down too. */
        r = new_rollout(4, 1, SEC(1), SEC(60));
        fill(h, 4, true, false);
        h[1].healthy = h[2].healthy = false;
        ASSERT_EQ_UINT(step(r, h, 4, T0, a), 0);
        rollout_free(r);
}

TEST(duplicate_health_entries_are_merged_conservatively) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(2, 1, 0, SEC(60));
        InstanceHealth h[3];
        RolloutAction a[ACTS_MAX];

        fill(h, 2, true, false);
        h[2] = (InstanceHealth){ .instance = 1, .healthy = false };
        /* Instance 1 is reported both up and down: down. */
        ASSERT_EQ_UINT(step(r, h, 3, T0, a), 1);
        ASSERT_TRUE(has_restart(a, 1, 1));
        h[1].restarted_since_issue = true;
        h[2].healthy = true;
        /* One entry still says "not restarted": not up yet. */
        ASSERT_EQ_UINT(step(r, h, 3, T0 + SEC(1), a), 0);
        ASSERT_EQ_INT(r->items[1].state, ITEM_RESTARTING);
        h[2].restarted_since_issue = true;
        ASSERT_EQ_UINT(step(r, h, 3, T0 + SEC(2), a), 1);
        ASSERT_EQ_INT(r->items[1].state, ITEM_DONE);
}

TEST(timeout_fails_with_one_alert_and_stops) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(3, 1, SEC(5), SEC(30));
        _cleanup_free_ char *before = NULL, *after = NULL;
        InstanceHealth h[3];
        RolloutAction a[ACTS_MAX];
        size_t n;

        fill(h, 3, true, false);
        step(r, h, 3, T0, a);
        h[0].healthy = false;
        h[0].restarted_since_issue = true;
        ASSERT_EQ_UINT(step(r, h, 3, T0 + SEC(30), a), 0);
        ASSERT_EQ_INT(r->items[0].state, ITEM_RESTARTING);
        n = step(r, h, 3, T0 + SEC(30) + 1, a);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_ALERT);
        ASSERT_EQ_INT(r->items[0].state, ITEM_FAILED);
        ASSERT_EQ_INT(r->state, ROLLOUT_FAILED);
        ASSERT_TRUE(r->alert_raised);
        ASSERT_STREQ(r->reason, "instance 0 not healthy within 30s");

        /* No more restarts, no second alert, whatever happens. */
        before = fmt(r);
        for (int i = 0; i < 20; i++) {
                fill(h, 3, i % 2, i % 3);
                ASSERT_EQ_UINT(step(r, h, 3, T0 + SEC(31 + i * 10), a), 0);
        }
        after = fmt(r);
        ASSERT_STREQ(after, before);
}

TEST(settling_past_timeout_fails) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(2, 1, SEC(20), SEC(30));
        InstanceHealth h[2];
        RolloutAction a[ACTS_MAX];
        size_t n;

        fill(h, 2, true, false);
        step(r, h, 2, T0, a);
        h[0].restarted_since_issue = true;
        step(r, h, 2, T0 + SEC(15), a);
        ASSERT_EQ_INT(r->items[0].state, ITEM_SETTLING);
        n = step(r, h, 2, T0 + SEC(31), a);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_ALERT);
        ASSERT_EQ_INT(r->items[0].state, ITEM_FAILED);
        ASSERT_EQ_UINT(r->items[0].healthy_since, 0);

        /* But done in the very step the timeout passes is done. */
        r = rollout_free(r);
        r = new_rollout(2, 1, SEC(20), SEC(30));
        fill(h, 2, true, false);
        step(r, h, 2, T0, a);
        h[0].restarted_since_issue = true;
        step(r, h, 2, T0 + SEC(11), a);
        n = step(r, h, 2, T0 + SEC(31), a);
        ASSERT_EQ_INT(r->items[0].state, ITEM_DONE);
        ASSERT_EQ_INT(r->state, ROLLOUT_RUNNING);
        ASSERT_TRUE(has_restart(a, n, 1));
}

TEST(resume_retries_failed_item_and_resolves) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(3, 1, SEC(5), SEC(30));
        _cleanup_free_ char *id = NULL;
        InstanceHealth h[3];
        RolloutAction a[ACTS_MAX];
        size_t n;

        fill(h, 3, true, false);
        step(r, h, 3, T0, a);
        ASSERT_OK(rollout_restart_id(r, 0, &id));
        ASSERT_STREQ(id, "rollout/gateway/42/0/1");
        id = mfree(id);
        h[0].healthy = false;
        h[0].restarted_since_issue = true;
        step(r, h, 3, T0 + SEC(40), a);
        ASSERT_EQ_INT(r->state, ROLLOUT_FAILED);

        ASSERT_OK(rollout_resume(r));
        ASSERT_EQ_INT(r->state, ROLLOUT_RUNNING);
        ASSERT_NULL(r->reason);
        ASSERT_EQ_INT(r->items[0].state, ITEM_PENDING);
        ASSERT_EQ_UINT(r->items[0].attempts, 1);
        ASSERT_EQ_UINT(r->items[0].started_at, 0);
        ASSERT_TRUE(r->alert_raised);

        /* Instance 0 is still down: its retry goes first, for free. */
        h[0].restarted_since_issue = false;
        n = step(r, h, 3, T0 + SEC(50), a);
        ASSERT_EQ_UINT(n, 2);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_RESOLVE);
        ASSERT_TRUE(a[1].kind == ROLLOUT_ACTION_RESTART && a[1].instance == 0);
        ASSERT_FALSE(r->alert_raised);
        ASSERT_EQ_UINT(r->items[0].attempts, 2);
        ASSERT_EQ_UINT(r->items[0].started_at, T0 + SEC(50));
        ASSERT_OK(rollout_restart_id(r, 0, &id));
        ASSERT_STREQ(id, "rollout/gateway/42/0/2");
        ASSERT_ERR(rollout_restart_id(r, 1, &id), -ENOENT);
        ASSERT_ERR(rollout_restart_id(r, 3, &id), -ENOENT);
        ASSERT_EQ_UINT(step(r, h, 3, T0 + SEC(51), a), 0);
}

TEST(failure_of_second_item_keeps_one_alert) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(3, 2, 0, SEC(30));
        InstanceHealth h[3];
        RolloutAction a[ACTS_MAX];
        size_t n;

        /* 0 and 1 go, 0 is done at once and 2 follows one second later. */
        fill(h, 3, true, false);
        step(r, h, 3, T0, a);
        h[0].restarted_since_issue = true;
        h[1].healthy = false;
        n = step(r, h, 3, T0 + SEC(1), a);
        ASSERT_TRUE(has_restart(a, n, 2));
        h[2].healthy = false;

        /* 1 times out: one ALERT. */
        n = step(r, h, 3, T0 + SEC(31), a);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_ALERT);
        ASSERT_EQ_INT(r->items[1].state, ITEM_FAILED);
        ASSERT_EQ_INT(r->items[2].state, ITEM_RESTARTING);
        ASSERT_STREQ(r->reason, "instance 1 not healthy within 30s");

        /* Resumed, and 2 times out before the RESOLVE went out: the alert that
         * is still raised stays raised, no RESOLVE/ALERT pair. */
        ASSERT_OK(rollout_resume(r));
        n = step(r, h, 3, T0 + SEC(32), a);
        ASSERT_EQ_UINT(n, 0);
        ASSERT_EQ_INT(r->state, ROLLOUT_FAILED);
        ASSERT_TRUE(r->alert_raised);
        ASSERT_STREQ(r->reason, "instance 2 not healthy within 30s");
        ASSERT_EQ_INT(r->items[1].state, ITEM_PENDING);

        /* Resumed again: RESOLVE, and both down ones are retried together. */
        ASSERT_OK(rollout_resume(r));
        n = step(r, h, 3, T0 + SEC(33), a);
        ASSERT_EQ_UINT(n, 3);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_RESOLVE);
        ASSERT_TRUE(has_restart(a, n, 1));
        ASSERT_TRUE(has_restart(a, n, 2));
        ASSERT_EQ_UINT(r->items[1].attempts, 2);
        ASSERT_EQ_UINT(r->items[2].attempts, 2);
}

TEST(pause_holds_but_tracks_in_flight) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(3, 1, SEC(5), SEC(60));
        InstanceHealth h[3];
        RolloutAction a[ACTS_MAX];
        usec_t now = T0;

        fill(h, 3, true, false);
        step(r, h, 3, now, a);
        ASSERT_OK(rollout_pause(r, "maintenance window"));
        ASSERT_EQ_INT(r->state, ROLLOUT_PAUSED);
        ASSERT_STREQ(r->reason, "maintenance window");
        now = settle(r, h, 0, now, a);
        for (int i = 0; i < 50; i++)
                ASSERT_EQ_UINT(step(r, h, 3, now += SEC(10), a), 0);
        ASSERT_EQ_INT(r->items[1].state, ITEM_PENDING);
        ASSERT_OK(rollout_resume(r));
        ASSERT_NULL(r->reason);
        ASSERT_EQ_UINT(step(r, h, 3, now += SEC(1), a), 1);
        ASSERT_TRUE(has_restart(a, 1, 1));

        /* NULL reason: a default one. */
        ASSERT_OK(rollout_pause(r, NULL));
        ASSERT_STREQ(r->reason, "paused by operator");
}

TEST(timeout_while_paused_fails) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(3, 1, SEC(5), SEC(30));
        InstanceHealth h[3];
        RolloutAction a[ACTS_MAX];

        fill(h, 3, true, false);
        step(r, h, 3, T0, a);
        ASSERT_OK(rollout_pause(r, NULL));
        h[0].healthy = false;
        h[0].restarted_since_issue = true;
        ASSERT_EQ_UINT(step(r, h, 3, T0 + SEC(31), a), 1);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_ALERT);
        ASSERT_EQ_INT(r->state, ROLLOUT_FAILED);
        ASSERT_ERR(rollout_pause(r, NULL), -EBUSY);
}

TEST(done_while_paused) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(1, 1, SEC(5), SEC(30));
        InstanceHealth h[1];
        RolloutAction a[ACTS_MAX];

        fill(h, 1, true, false);
        step(r, h, 1, T0, a);
        ASSERT_OK(rollout_pause(r, NULL));
        h[0].restarted_since_issue = true;
        step(r, h, 1, T0 + SEC(1), a);
        ASSERT_EQ_UINT(step(r, h, 1, T0 + SEC(6), a), 1);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_FINISHED);
        ASSERT_EQ_INT(r->state, ROLLOUT_DONE);
        ASSERT_NULL(r->reason);
}

TEST(done_finishes_once) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(3, 1, SEC(3), SEC(60));
        _cleanup_free_ char *text = NULL, *again = NULL;
        InstanceHealth h[3];
        RolloutAction a[ACTS_MAX];
        usec_t now = T0;
        size_t n, finished = 0;

        fill(h, 3, true, false);
        step(r, h, 3, now, a);
        for (uint32_t i = 0; i < 3; i++) {
                h[i].healthy = false;
                h[i].restarted_since_issue = true;
                step(r, h, 3, now += SEC(1), a);
                h[i].healthy = true;
                step(r, h, 3, now += SEC(1), a);
                n = step(r, h, 3, now += SEC(3), a);
                finished += count_kind(a, n, ROLLOUT_ACTION_FINISHED);
                ASSERT_EQ_UINT(n, 1);
                ASSERT_EQ_INT(a[0].kind, i < 2 ? ROLLOUT_ACTION_RESTART : ROLLOUT_ACTION_FINISHED);
        }
        ASSERT_EQ_UINT(finished, 1);
        ASSERT_EQ_INT(r->state, ROLLOUT_DONE);
        for (uint32_t i = 0; i < 3; i++)
                ASSERT_EQ_UINT(r->items[i].attempts, 1);
        text = fmt(r);
        fill(h, 3, false, false);
        for (int i = 0; i < 10; i++)
                ASSERT_EQ_UINT(step(r, h, 3, now += SEC(100), a), 0);
        again = fmt(r);
        ASSERT_STREQ(again, text);
}

TEST(controls_are_refused_in_the_wrong_state) {
        RolloutAction a[ACTS_MAX];
        InstanceHealth h[1];
        Rollout *r;

        fill(h, 1, true, false);
        for (int s = 0; s < _ROLLOUT_STATE_MAX; s++) {
                _cleanup_free_ char *before = NULL, *after = NULL;

                r = new_rollout(1, 1, SEC(1), SEC(10));
                switch (s) {
                case ROLLOUT_RUNNING:
                        break;
                case ROLLOUT_PAUSED:
                        ASSERT_OK(rollout_pause(r, "x"));
                        break;
                case ROLLOUT_DONE:
                        step(r, h, 1, T0, a);
                        h[0].restarted_since_issue = true;
                        step(r, h, 1, T0 + SEC(1), a);
                        step(r, h, 1, T0 + SEC(2), a);
                        h[0].restarted_since_issue = false;
                        break;
                case ROLLOUT_FAILED:
                        step(r, h, 1, T0, a);
                        step(r, h, 1, T0 + SEC(11), a);
                        break;
                case ROLLOUT_ABORTED:
                        ASSERT_OK(rollout_abort(r, "x"));
                        break;
                }
                ASSERT_EQ_INT(r->state, s);
                before = fmt(r);
                ASSERT_ERR(rollout_pause(r, "p"), s == ROLLOUT_RUNNING ? 0 : -EBUSY);
                if (s == ROLLOUT_RUNNING) {
                        ASSERT_ERR(rollout_resume(r), 0);
                        free(before);
                        before = fmt(r);
                }
                ASSERT_ERR(rollout_resume(r),
                           s == ROLLOUT_PAUSED || s == ROLLOUT_FAILED ? 0 : -EBUSY);
                if (s == ROLLOUT_PAUSED || s == ROLLOUT_FAILED) {
                        ASSERT_EQ_INT(r->state, ROLLOUT_RUNNING);
                        ASSERT_ERR(rollout_resume(r), -EBUSY);
                        free(before);
                        before = fmt(r);
                }
                if (s == ROLLOUT_DONE || s == ROLLOUT_ABORTED) {
                        ASSERT_ERR(rollout_abort(r, "a"), -EBUSY);
                        after = fmt(r);
                        ASSERT_STREQ(after, before);
                } else {
                        ASSERT_OK(rollout_abort(r, NULL));
                        ASSERT_EQ_INT(r->state, ROLLOUT_ABORTED);
                        ASSERT_STREQ(r->reason, "aborted by operator");
                }
                rollout_free(r);
        }
}

TEST(abort_stops_everything) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(4, 2, SEC(3), SEC(20));
        _cleanup_free_ char *before = NULL, *after = NULL;
        InstanceHealth h[4];
        RolloutAction a[ACTS_MAX];
        uint64_t seed = 7;

        fill(h, 4, true, false);
        step(r, h, 4, T0, a);
        ASSERT_OK(rollout_abort(r, "bad release"));
        ASSERT_STREQ(r->reason, "bad release");
        before = fmt(r);
        for (int i = 0; i < 200; i++) {
                for (uint32_t k = 0; k < 4; k++) {
                        h[k].healthy = one_in(&seed, 2);
                        h[k].restarted_since_issue = one_in(&seed, 2);
                }
                ASSERT_EQ_UINT(step(r, h, 4, T0 + SEC(i), a), 0);
        }
        after = fmt(r);
        ASSERT_STREQ(after, before);
}

TEST(abort_resolves_a_raised_alert_once) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(2, 1, SEC(3), SEC(20));
        InstanceHealth h[2];
        RolloutAction a[ACTS_MAX];

        fill(h, 2, true, false);
        step(r, h, 2, T0, a);
        ASSERT_EQ_UINT(step(r, h, 2, T0 + SEC(21), a), 1);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_ALERT);
        ASSERT_OK(rollout_abort(r, NULL));
        ASSERT_EQ_UINT(step(r, h, 2, T0 + SEC(22), a), 1);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_RESOLVE);
        for (int i = 0; i < 10; i++)
                ASSERT_EQ_UINT(step(r, h, 2, T0 + SEC(23 + i), a), 0);
}

TEST(replayed_step_issues_nothing) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(6, 2, SEC(2), SEC(20));
        InstanceHealth h[6];
        RolloutAction a[ACTS_MAX];
        uint64_t seed = 99;
        usec_t now = T0;

        for (int i = 0; i < 400 && r->state != ROLLOUT_DONE; i++) {
                _cleanup_free_ char *text = NULL, *again = NULL;
                Rollout *copy;

                for (uint32_t k = 0; k < 6; k++) {
                        h[k].instance = k;
                        h[k].healthy = !one_in(&seed, 4);
                        h[k].restarted_since_issue =
                                r->items[k].state != ITEM_PENDING && r->items[k].started_at < now;
                }
                step(r, h, 6, now, a);
                text = fmt(r);
                /* The same step again, on this copy and on a parsed one. */
                copy = reparse(r);
                ASSERT_EQ_UINT(step(r, h, 6, now, a), 0);
                ASSERT_EQ_UINT(step(copy, h, 6, now, a), 0);
                again = fmt(copy);
                ASSERT_STREQ(again, text);
                free(again);
                again = fmt(r);
                ASSERT_STREQ(again, text);
                rollout_free(copy);
                if (r->state == ROLLOUT_FAILED)
                        ASSERT_OK(rollout_resume(r));
                now += SEC(1);
        }
        ASSERT_EQ_INT(r->state, ROLLOUT_DONE);
}

TEST(small_action_buffer_takes_nothing_it_cannot_report) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(5, 3, 0, SEC(10));
        InstanceHealth h[5];
        RolloutAction a[ACTS_MAX];
        size_t n;

        fill(h, 5, true, false);
        ASSERT_EQ_UINT(rollout_step(r, h, 5, T0, UINT32_MAX, NULL, 0), 0);
        for (uint32_t i = 0; i < 5; i++)
                ASSERT_EQ_INT(r->items[i].state, ITEM_PENDING);
        for (uint32_t i = 0; i < 3; i++) {
                n = rollout_step(r, h, 5, T0 + i, UINT32_MAX, a, 1);
                ASSERT_EQ_UINT(n, 1);
                ASSERT_TRUE(has_restart(a, 1, i));
        }
        ASSERT_EQ_UINT(rollout_step(r, h, 5, T0 + 3, UINT32_MAX, a, 1), 0);

        /* A failure found with no room: FAILED now, the alert on the next step. */
        ASSERT_EQ_UINT(rollout_step(r, h, 5, T0 + SEC(11), UINT32_MAX, NULL, 0), 0);
        ASSERT_EQ_INT(r->state, ROLLOUT_FAILED);
        ASSERT_FALSE(r->alert_raised);
        n = rollout_step(r, h, 5, T0 + SEC(12), UINT32_MAX, a, 1);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_ALERT);
        ASSERT_EQ_UINT(rollout_step(r, h, 5, T0 + SEC(13), UINT32_MAX, a, 1), 0);

        /* Resumed: RESOLVE takes the only slot, restarts wait. */
        ASSERT_OK(rollout_resume(r));
        n = rollout_step(r, h, 5, T0 + SEC(14), UINT32_MAX, a, 1);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_RESOLVE);
        ASSERT_EQ_INT(r->items[0].state, ITEM_PENDING);
        n = rollout_step(r, h, 5, T0 + SEC(15), UINT32_MAX, a, 1);
        ASSERT_EQ_UINT(n, 1);
        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_RESTART);
}

TEST(clock_going_back_causes_no_timeout) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(2, 1, SEC(5), SEC(30));
        InstanceHealth h[2];
        RolloutAction a[ACTS_MAX];

        fill(h, 2, true, false);
        step(r, h, 2, T0, a);
        h[0].restarted_since_issue = true;
        step(r, h, 2, T0 + SEC(3), a);
        ASSERT_EQ_INT(r->items[0].state, ITEM_SETTLING);
        ASSERT_EQ_UINT(step(r, h, 2, T0 - SEC(3600), a), 0);
        ASSERT_EQ_INT(r->items[0].state, ITEM_SETTLING);
        ASSERT_EQ_UINT(step(r, h, 2, 0, a), 0);
        ASSERT_EQ_INT(r->state, ROLLOUT_RUNNING);
        ASSERT_EQ_UINT(step(r, h, 2, T0 + SEC(8), a), 1);
        ASSERT_EQ_INT(r->items[0].state, ITEM_DONE);
}

TEST(format_is_exact) {
        _cleanup_(rollout_freep) Rollout *r = new_rollout(3, 1, SEC(10), SEC(900));
        _cleanup_free_ char *s1 = NULL, *s2 = NULL, *s3 = NULL;
        InstanceHealth h[3];
        RolloutAction a[ACTS_MAX];

        s1 = fmt(r);
        ASSERT_STREQ(s1, "baton-rollout/1 service=gateway id=42 state=running max_unavailable=1 "
                         "healthy_for=10000000 health_timeout=900000000 alert=0 items=3 "
                         "0:pending:0:0:0 1:pending:0:0:0 2:pending:0:0:0 reason=-");
        fill(h, 3, true, false);
        step(r, h, 3, 1000, a);
        h[0].restarted_since_issue = true;
        step(r, h, 3, 2000, a);
        ASSERT_OK(rollout_pause(r, "say \"hi\"\\\n\t\r\x01\x7f\xc3\xa9 ok"));
        s2 = fmt(r);
        ASSERT_STREQ(s2, "baton-rollout/1 service=gateway id=42 state=paused max_unavailable=1 "
                         "healthy_for=10000000 health_timeout=900000000 alert=0 items=3 "
                         "0:settling:1000:2000:1 1:pending:0:0:0 2:pending:0:0:0 "
                         "reason=\"say \\\"hi\\\"\\\\\\n\\t\\r\\x01\\x7f\\xc3\\xa9 ok\"");
        ASSERT_OK(rollout_resume(r));
        h[0].healthy = false;
        step(r, h, 3, 1000 + SEC(901), a);
        s3 = fmt(r);
        ASSERT_STREQ(s3, "baton-rollout/1 service=gateway id=42 state=failed max_unavailable=1 "
                         "healthy_for=10000000 health_timeout=900000000 alert=1 items=3 "
                         "0:failed:1000:0:1 1:pending:0:0:0 2:pending:0:0:0 "
                         "reason=\"instance 0 not healthy within 15min\"");
}

static const char *const service_names[] = {
        "gateway",
        "a",
        "audio-node",
        "x_y.z:1",
        "core",
        "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll"
        "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll"
        "lllllllllllllllllllllllllllllllllllllllllllllllllllllll",
};

static uint64_t random_u64(uint64_t *s) {
        switch (below(s, 4)) {
        case 0:
                return 0;
        case 1:
                return UINT64_MAX - below(s, 2);
        case 2:
                return below(s, 1000);
        default:
                return rnd(s);
        }
}

/* A random rollout that satisfies every rule rollout_parse() checks. */
static Rollout *random_rollout(uint64_t *s) {
        Rollout *r = calloc(1, sizeof(Rollout));
        size_t in_flight = 0, failed = 0;
        uint32_t instance = (uint32_t) below(s, 3);

        ASSERT_NOT_NULL(r);
        r->service = strdup(service_names[below(s, ELEMENTSOF(service_names))]);
        r->id = random_u64(s);
        r->state = (RolloutState) below(s, _ROLLOUT_STATE_MAX);
        r->max_unavailable = one_in(s, 5) ? UINT32_MAX : (uint32_t) between(s, 1, 4);
        r->healthy_for = random_u64(s);
        if (r->healthy_for == UINT64_MAX)
                r->healthy_for--;
        switch (below(s, 3)) {
        case 0:
                r->health_timeout = USEC_INFINITY;
                break;
        case 1:
                r->health_timeout = r->healthy_for + 1;
                break;
        default:
                r->health_timeout = r->healthy_for > UINT64_MAX - SEC(101)
                                            ? UINT64_MAX
                                            : r->healthy_for + 1 + below(s, SEC(100));
        }
        r->alert_raised = one_in(s, 2);
        r->n_items = one_in(s, 20) ? between(s, 100, 400) : between(s, 1, 12);
        r->items = calloc(r->n_items, sizeof(RolloutItem));
        ASSERT_NOT_NULL(r->items);

        for (size_t k = 0; k < r->n_items; k++) {
                RolloutItem *it = r->items + k;
                RolloutItemState st;

                it->instance = instance;
                instance += one_in(s, 4) ? (uint32_t) between(s, 2, 1000) : 1;
                if (k == r->n_items - 1 && one_in(s, 4))
                        it->instance = UINT32_MAX;

                if (r->state == ROLLOUT_DONE)
                        st = ITEM_DONE;
                else {
                        st = (RolloutItemState) below(s, _ITEM_STATE_MAX);
                        if (st == ITEM_FAILED &&
                            (r->state == ROLLOUT_RUNNING || r->state == ROLLOUT_PAUSED))
                                st = ITEM_PENDING;
                        if ((st == ITEM_RESTARTING || st == ITEM_SETTLING) &&
                            in_flight >= r->max_unavailable)
                                st = ITEM_DONE;
                        if (r->state == ROLLOUT_FAILED && failed == 0 && k == r->n_items - 1)
                                st = ITEM_FAILED;
                }
                it->state = st;
                in_flight += st == ITEM_RESTARTING || st == ITEM_SETTLING;
                failed += st == ITEM_FAILED;
                it->attempts = st == ITEM_PENDING && one_in(s, 2) ? 0
                               : one_in(s, 8)                     ? UINT32_MAX
                                                                  : (uint32_t) between(s, 1, 3);
                if (st != ITEM_PENDING) {
                        it->started_at = random_u64(s);
                        if (st == ITEM_SETTLING || st == ITEM_DONE)
                                it->healthy_since = random_u64(s);
                }
        }
        if (!one_in(s, 3)) {
                size_t len = below(s, 40);

                r->reason = calloc(len + 1, 1);
                for (size_t i = 0; i < len; i++)
                        r->reason[i] = (char) between(s, 1, 255);
        }
        return r;
}

static void assert_same_item(const RolloutItem *a, const RolloutItem *b) {
        ASSERT_EQ_UINT(a->instance, b->instance);
        ASSERT_EQ_INT(a->state, b->state);
        ASSERT_EQ_UINT(a->started_at, b->started_at);
        ASSERT_EQ_UINT(a->healthy_since, b->healthy_since);
        ASSERT_EQ_UINT(a->attempts, b->attempts);
}

static void assert_same_rollout(const Rollout *a, const Rollout *b) {
        ASSERT_STREQ(a->service, b->service);
        ASSERT_EQ_UINT(a->id, b->id);
        ASSERT_EQ_INT(a->state, b->state);
        ASSERT_EQ_UINT(a->max_unavailable, b->max_unavailable);
        ASSERT_EQ_UINT(a->healthy_for, b->healthy_for);
        ASSERT_EQ_UINT(a->health_timeout, b->health_timeout);
        ASSERT_EQ_INT(a->alert_raised, b->alert_raised);
        ASSERT_TRUE(streq_ptr(a->reason, b->reason));
        ASSERT_EQ_UINT(a->n_items, b->n_items);
        for (size_t k = 0; k < a->n_items; k++)
                assert_same_item(a->items + k, b->items + k);
}

TEST(format_parse_round_trip_random) {
        uint64_t seed = 0x0123456789abcdefULL;

        for (int i = 0; i < 3000; i++) {
                _cleanup_(rollout_freep) Rollout *r = random_rollout(&seed), *copy = NULL;
                _cleanup_free_ char *text = fmt(r);

                for (const char *p = text; *p; p++)
                        ASSERT_TRUE(*p >= 0x20 && *p < 0x7f);
                copy = reparse(r);
                assert_same_rollout(r, copy);
        }
}

TEST(every_proper_prefix_is_refused) {
        uint64_t seed = 42;

        for (int i = 0; i < 300; i++) {
                _cleanup_(rollout_freep) Rollout *r = random_rollout(&seed);
                _cleanup_free_ char *text = fmt(r);
                size_t len = strlen(text);

                if (len > 2000)
                        continue;
                for (size_t cut = 0; cut < len; cut++) {
                        _cleanup_free_ char *prefix = strndup(text, cut), *error = NULL;
                        Rollout *bad = NULL;

                        ASSERT_ERR(rollout_parse(prefix, &bad, &error), -EINVAL);
                        ASSERT_NULL(bad);
                        ASSERT_NOT_NULL(error);
                        ASSERT_TRUE(strncmp(error, "column ", 7) == 0);
                }
        }
}

TEST(mutated_texts_are_refused_or_canonical) {
        static const char alphabet[] = " :=\"\\-0123456789abcdefinrstxy@/\t\n\x01\xff";
        uint64_t seed = 4242;
        size_t accepted = 0;

        for (int i = 0; i < 40000; i++) {
                _cleanup_(rollout_freep) Rollout *r = random_rollout(&seed), *back = NULL;
                _cleanup_free_ char *text = fmt(r), *error = NULL;
                size_t len = strlen(text), pos;
                int k;

                for (int m = (int) between(&seed, 1, 3); m > 0; m--) {
                        pos = below(&seed, len);
                        switch (below(&seed, 3)) {
                        case 0:
                                text[pos] = alphabet[below(&seed, sizeof(alphabet) - 1)];
                                break;
                        case 1:
                                memmove(text + pos, text + pos + 1, len - pos);
                                len--;
                                break;
                        default:
                                text = realloc(text, len + 2);
                                memmove(text + pos + 1, text + pos, len - pos + 1);
                                text[pos] = alphabet[below(&seed, sizeof(alphabet) - 1)];
                                len++;
                        }
                        if (len == 0)
                                break;
                }
                k = rollout_parse(text, &back, &error);
                if (k == 0) {
                        _cleanup_free_ char *again = fmt(back);

                        /* Strict means one spelling per rollout. */
                        ASSERT_STREQ(again, text);
                        accepted++;
                } else {
                        ASSERT_ERR(k, -EINVAL);
                        ASSERT_NULL(back);
                        ASSERT_NOT_NULL(error);
                        for (const char *p = error; *p; p++)
                                ASSERT_TRUE(*p >= 0x20 && *p < 0x7f);
                }
        }
        printf("# %zu of 40000 mutated texts still valid (and canonical)\n", accepted);
}

TEST(random_junk_never_crashes) {
        uint64_t seed = 1;
        char buf[512];

        for (int i = 0; i < 20000; i++) {
                _cleanup_free_ char *error = NULL;
                Rollout *r = NULL;
                size_t len = below(&seed, sizeof(buf) - 1);
                int k;

                if (one_in(&seed, 2)) {
                        strcpy(buf, "baton-rollout/1 service=gateway id=1 state=running ");
                        for (size_t j = strlen(buf); j < len; j++)
                                buf[j] = (char) between(&seed, 1, 255);
                        buf[MAX(len, strlen(buf))] = 0;
                } else {
                        for (size_t j = 0; j < len; j++)
                                buf[j] = (char) between(&seed, 1, 255);
                        buf[len] = 0;
                }
                k = rollout_parse(buf, &r, &error);
                ASSERT_ERR(k, -EINVAL);
                ASSERT_NOT_NULL(error);
                for (const char *p = error; *p; p++)
                        ASSERT_TRUE(*p >= 0x20 && *p < 0x7f);
        }
}

#define GOOD_HEAD "baton-rollout/1 service=gw id=1 state=running max_unavailable=1 "
#define GOOD_TIMES "healthy_for=0 health_timeout=1 alert=0 "

TEST(malformed_texts_name_what_and_where) {
        static const struct {
                const char *text;
                const char *error;
        } cases[] = {
                { "", "column 1: expected \"baton-rollout/1\"" },
                { " baton-rollout/1", "column 1: expected \"baton-rollout/1\"" },
                { "baton-rollout/2 service=gw",
                  "column 1: unsupported version \"baton-rollout/2\"" },
                { "baton-rollout/10 service=gw", "unsupported version" },
                { "baton-rollout/1", "column 16: expected \" service=\"" },
                { "baton-rollout/", "column 1: unsupported version \"baton-rollout/\"" },
                { "BATON-ROLLOUT/1 service=gw", "column 1: expected" },
                { "baton-rollout/1  service=gw", "column 16: expected \" service=\"" },
                { "baton-rollout/1 service=gw@1 id=1",
                  "column 25: service: invalid service name \"gw@1\"" },
                { "baton-rollout/1 service= id=1", "invalid service name" },
                { "baton-rollout/1 service=../x id=1", "invalid service name" },
                { "baton-rollout/1 service=a\nb\x01"
                  "c id=1",
                  "invalid service name \"a?b?c\"" },
                { "baton-rollout/1 service=gw id=1 state=ru\xffn ", "unknown state \"ru?n\"" },
                { "baton-rollout/1 service=gw id=-1", "column 31: id: expected a number" },
                { "baton-rollout/1 service=gw id=01", "id: leading zero" },
                { "baton-rollout/1 service=gw id=18446744073709551616", "id: out of range" },
                { "baton-rollout/1 service=gw id=1 state=runnin ",
                  "state: unknown state \"runnin\"" },
                { "baton-rollout/1 service=gw id=1 state=RUNNING ",
                  "state: unknown state \"RUNNING\"" },
                { "baton-rollout/1 service=gw id=1 state=runningx ", "unknown state \"runningx\"" },
                { "baton-rollout/1 service=gw id=1 state=abcdefghijklmnopqrstuvwxyz ",
                  "unknown state \"abcdefghijklmnopqrstuvwxyz\"" },
                { "baton-rollout/1 service=gw id=1 state=running  max_unavailable=1",
                  "expected \" max_unavailable=\"" },
                { GOOD_HEAD
                  "healthy_for=0 health_timeout=1 alert=0 items=1 0:pending:0:0:0 reason=-"
                  " ",
                  "unexpected text after the reason" },
                { "baton-rollout/1 service=gw id=1 state=running max_unavailable=0 ",
                  "column 63: max_unavailable must be at least 1" },
                { "baton-rollout/1 service=gw id=1 state=running max_unavailable=4294967296 ",
                  "max_unavailable: out of range (at most 4294967295)" },
                { GOOD_HEAD "healthy_for=5 health_timeout=5 alert=0",
                  "health_timeout must be longer than healthy_for" },
                { GOOD_HEAD "healthy_for=0 health_timeout=1 alert=2", "alert: expected 0 or 1" },
                { GOOD_HEAD GOOD_TIMES "items=0 reason=-", "items: 0 is not within 1..65536" },
                { GOOD_HEAD GOOD_TIMES "items=65537 0:pending:0:0:0",
                  "items: 65537 is not within" },
                { GOOD_HEAD GOOD_TIMES "items=2 0:pending:0:0:0 reason=-",
                  "text too short for 2 items" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 1:pending:0:0:0 reason=-",
                  "expected \"reason=\"" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:5:0:0 reason=-",
                  "item 0: pending but has started_at/healthy_since" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:restarting:5:0:0 reason=-",
                  "item 0: restarting but never restarted (attempts 0)" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:restarting:5:6:1 reason=-",
                  "item 0: restarting but healthy_since is set" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:bogus:0:0:0 reason=-",
                  "item 0 state: unknown state \"bogus\"" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0 reason=-", "expected \":\"" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:4294967296 reason=-",
                  "item 0 attempts: out of range" },
                { GOOD_HEAD GOOD_TIMES "items=1 x:pending:0:0:0 reason=-",
                  "item 0 instance: expected a number" },
                { GOOD_HEAD GOOD_TIMES "items=2 1:pending:0:0:0 0:pending:0:0:0 reason=-",
                  "item 1: instance 0 not after 1" },
                { GOOD_HEAD GOOD_TIMES "items=2 0:pending:0:0:0 0:pending:0:0:0 reason=-",
                  "item 1: instance 0 not after 0" },
                { GOOD_HEAD GOOD_TIMES "items=2 0:restarting:1:0:1 1:settling:1:2:1 reason=-",
                  "2 items in flight, more than max_unavailable 1" },
                { "baton-rollout/1 service=gw id=1 state=done max_unavailable=1 " GOOD_TIMES
                  "items=2 0:done:1:1:1 1:pending:0:0:0 reason=-",
                  "state done but 1 of 2 items are not" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:failed:1:0:1 reason=-",
                  "state running with 1 failed items" },
                { "baton-rollout/1 service=gw id=1 state=failed max_unavailable=1 " GOOD_TIMES
                  "items=1 0:done:1:1:1 reason=-",
                  "state failed without a failed item" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=x",
                  "reason: expected \"-\" or a quoted string" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"abc",
                  "reason: missing closing quote" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"a\\q\"",
                  "reason: unknown escape \"\\q\"" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"a\\x4\"",
                  "reason: \\x needs two lower-case hex digits" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"a\\xC3\"",
                  "reason: \\x needs two lower-case hex digits" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"a\\x41\"",
                  "reason: needless escape \\x41" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"a\\x0a\"",
                  "reason: needless escape \\x0a" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"a\\x00\"",
                  "reason: NUL byte" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"a\\",
                  "reason: backslash at end of text" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"a\tb\"",
                  "reason: unescaped byte 0x09" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"\xc3\xa9\"",
                  "reason: unescaped byte 0xc3" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=\"a\"b",
                  "unexpected text after the reason" },
                { GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=-\n",
                  "unexpected text after the reason" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *error = NULL;
                Rollout *r = NULL;
                int k;

                k = rollout_parse(cases[i].text, &r, &error);
                if (k != -EINVAL || !error || !strstr(error, cases[i].error))
                        printf("# case %zu: \"%s\" → %d \"%s\"\n", i, cases[i].text, k,
                               strna(error));
                ASSERT_ERR(k, -EINVAL);
                ASSERT_NULL(r);
                ASSERT_CONTAINS(error, cases[i].error);
        }

        /* The same texts, with the mistakes fixed, are fine; no error asked for. */
        {
                Rollout *r = NULL;

                ASSERT_OK(rollout_parse(GOOD_HEAD GOOD_TIMES "items=1 0:pending:0:0:0 reason=-", &r,
                                        NULL));
                ASSERT_EQ_UINT(r->n_items, 1);
                ASSERT_NULL(r->reason);
                rollout_free(r);
                ASSERT_OK(rollout_parse(GOOD_HEAD GOOD_TIMES
                                        "items=1 0:pending:0:0:0 reason=\"\\xc3\\xa9\\x7f\"",
                                        &r, NULL));
                ASSERT_STREQ(r->reason, "\xc3\xa9\x7f");
                rollout_free(r);
                ASSERT_ERR(rollout_parse("junk", &r, NULL), -EINVAL);
        }
}

TEST(parse_accepts_the_item_cap) {
        _cleanup_(rollout_freep) Rollout *r = NULL, *copy = NULL;
        _cleanup_free_ char *text = NULL;

        ASSERT_OK(rollout_new("big", 1, ROLLOUT_ITEMS_MAX, 3, SEC(1), SEC(2), &r));
        text = fmt(r);
        copy = reparse(r);
        ASSERT_EQ_UINT(copy->n_items, ROLLOUT_ITEMS_MAX);
        ASSERT_EQ_UINT(copy->items[ROLLOUT_ITEMS_MAX - 1].instance, ROLLOUT_ITEMS_MAX - 1);
}

/* ---- The simulator ------------------------------------------------------ */

#define SIM_MAX_N 20
#define SIM_EXTRA 2 /* instances outside the rollout, reported too */

typedef struct SimInst {
        usec_t bg_until; /* down for a reason of its own until then */
        bool exec_pending;
        usec_t exec_at; /* when the agent gets to the last RESTART */
        bool executed;
        usec_t last_exec;
        usec_t up_at; /* down after its restart until then; USEC_INFINITY: dead */
        bool dead;    /* the next restart never comes back */
        unsigned restarts, retries;
        bool run; /* observed healthy and restarted at every step since run_since */
        usec_t run_since;
} SimInst;

typedef struct SimStats {
        unsigned rollouts, done, aborted, item_failures, retries, pauses, crashes, restarts, busy,
                failed_while_paused, omitted, blocked_by_outsider, free_restarts;
} SimStats;

typedef struct Sim {
        uint64_t rng;
        uint32_t n;
        bool extras;
        bool final; /* winding down: the world heals, the operator resumes */
        bool alert_open;
        usec_t now;
        Rollout *r;
        SimInst inst[SIM_MAX_N + SIM_EXTRA];
        SimStats *st;
} Sim;

static bool sim_healthy(const Sim *s, uint32_t i) {
        const SimInst *in = s->inst + i;

        return in->bg_until <= s->now && !(in->executed && s->now < in->up_at);
}

/* What the controller's shell reports: the unit started after started_at. */
static bool sim_restarted(const Sim *s, const Rollout *r, uint32_t i) {
        const SimInst *in = s->inst + i;

        return i < s->n && r->items[i].attempts > 0 && in->executed && !in->exec_pending &&
               in->last_exec >= r->items[i].started_at;
}

static void sim_advance(Sim *s) {
        for (uint32_t i = 0; i < s->n + SIM_EXTRA; i++) {
                SimInst *in = s->inst + i;

                if (in->exec_pending && in->exec_at <= s->now) {
                        in->exec_pending = false;
                        in->executed = true;
                        in->last_exec = in->exec_at;
                        /* Most come back well in time, some too late, some never. */
                        if (in->dead)
                                in->up_at = USEC_INFINITY;
                        else if (s->final)
                                in->up_at = in->exec_at + below(&s->rng, SEC(1));
                        else if (one_in(&s->rng, 6))
                                in->up_at =
                                        in->exec_at + below(&s->rng, s->r->health_timeout * 3 / 2);
                        else
                                in->up_at = in->exec_at + below(&s->rng, s->r->health_timeout / 2);
                }
                if (!s->final && in->bg_until <= s->now && one_in(&s->rng, 300))
                        in->bg_until = s->now + between(&s->rng, SEC(1), SEC(30));
        }
}

static size_t sim_health(Sim *s, InstanceHealth *h) {
        size_t m = 0;

        for (uint32_t i = 0; i < s->n; i++) {
                if (!s->final && one_in(&s->rng, 150)) {
                        s->st->omitted++;
                        continue;
                }
                h[m++] = (InstanceHealth){ .instance = i,
                                           .healthy = sim_healthy(s, i),
                                           .restarted_since_issue = sim_restarted(s, s->r, i) };
        }
        if (s->extras)
                for (uint32_t i = s->n; i < s->n + SIM_EXTRA; i++)
                        h[m++] = (InstanceHealth){ .instance = i, .healthy = sim_healthy(s, i) };
        for (size_t i = m; i > 1; i--) {
                size_t j = below(&s->rng, i);
                InstanceHealth t = h[i - 1];

                h[i - 1] = h[j];
                h[j] = t;
        }
        return m;
}

enum {
        CTL_PAUSE,
        CTL_RESUME,
        CTL_ABORT
};

static void sim_control(Sim *s, int ctl) {
        static const char *const reasons[] = { NULL, "maintenance", "say \"why\"\n\x01\xff", "" };
        _cleanup_free_ char *before = fmt(s->r), *after = NULL;
        RolloutState pre = s->r->state;
        bool was_failed[SIM_MAX_N], ok;
        const char *reason = reasons[below(&s->rng, ELEMENTSOF(reasons))];
        int k;

        for (uint32_t i = 0; i < s->n; i++)
                was_failed[i] = s->r->items[i].state == ITEM_FAILED;

        switch (ctl) {
        case CTL_PAUSE:
                k = rollout_pause(s->r, reason);
                ok = pre == ROLLOUT_RUNNING;
                break;
        case CTL_RESUME:
                k = rollout_resume(s->r);
                ok = pre == ROLLOUT_PAUSED || pre == ROLLOUT_FAILED;
                break;
        default:
                k = rollout_abort(s->r, reason);
                ok = pre != ROLLOUT_DONE && pre != ROLLOUT_ABORTED;
        }
        if (!ok) {
                ASSERT_ERR(k, -EBUSY);
                after = fmt(s->r);
                ASSERT_STREQ(after, before);
                s->st->busy++;
                return;
        }
        ASSERT_OK(k);
        switch (ctl) {
        case CTL_PAUSE:
                ASSERT_EQ_INT(s->r->state, ROLLOUT_PAUSED);
                ASSERT_STREQ(s->r->reason, reason ? reason : "paused by operator");
                s->st->pauses++;
                break;
        case CTL_RESUME:
                ASSERT_EQ_INT(s->r->state, ROLLOUT_RUNNING);
                ASSERT_NULL(s->r->reason);
                for (uint32_t i = 0; i < s->n; i++) {
                        ASSERT_FALSE(s->r->items[i].state == ITEM_FAILED);
                        if (was_failed[i]) {
                                ASSERT_EQ_INT(s->r->items[i].state, ITEM_PENDING);
                                ASSERT_EQ_UINT(s->r->items[i].attempts, s->inst[i].restarts);
                                s->inst[i].retries++;
                                s->st->retries++;
                        }
                }
                break;
        default:
                ASSERT_EQ_INT(s->r->state, ROLLOUT_ABORTED);
                ASSERT_STREQ(s->r->reason, reason ? reason : "aborted by operator");
        }
}

static void sim_operator(Sim *s) {
        RolloutState st = s->r->state;

        if (s->final) {
                if (st == ROLLOUT_PAUSED || st == ROLLOUT_FAILED)
                        sim_control(s, CTL_RESUME);
                return;
        }
        if (st == ROLLOUT_RUNNING && one_in(&s->rng, 150))
                sim_control(s, CTL_PAUSE);
        else if (st == ROLLOUT_PAUSED && one_in(&s->rng, 20))
                sim_control(s, CTL_RESUME);
        else if (st == ROLLOUT_FAILED && one_in(&s->rng, 15))
                sim_control(s, CTL_RESUME);
        else if (one_in(&s->rng, 2500))
                sim_control(s, CTL_ABORT);
        else if (one_in(&s->rng, 300)) {
                /* Whatever the state; an abort only where it must be refused. */
                int ctl = (int) below(&s->rng, 3);

                if (ctl != CTL_ABORT || st == ROLLOUT_DONE || st == ROLLOUT_ABORTED)
                        sim_control(s, ctl);
        }
}

static bool in_flight(RolloutItemState st) {
        return st == ITEM_RESTARTING || st == ITEM_SETTLING;
}

/* Every invariant of one step, given the state before it and what it saw. */
static void sim_check(Sim *s, const RolloutItem *pre, RolloutState pre_state, bool pre_alert,
                      const char *pre_reason, const InstanceHealth *h, size_t nh,
                      const RolloutAction *a, size_t na) {
        const Rollout *r = s->r;
        bool seen[SIM_MAX_N] = { false }, healthy[SIM_MAX_N], up[SIM_MAX_N], restarted[SIM_MAX_N];
        size_t outsiders_down = 0, n_restart = 0, n_alert = 0, n_resolve = 0, n_finished = 0;
        size_t flight = 0, down = 0, done = 0;

        ASSERT_LE_UINT(na, s->n + 2);
        for (uint32_t i = 0; i < s->n; i++)
                healthy[i] = restarted[i] = true;
        for (size_t j = 0; j < nh; j++) {
                if (h[j].instance >= s->n) {
                        outsiders_down += !h[j].healthy;
                        continue;
                }
                seen[h[j].instance] = true;
                healthy[h[j].instance] &= h[j].healthy;
                restarted[h[j].instance] &= h[j].restarted_since_issue;
        }
        for (uint32_t i = 0; i < s->n; i++) {
                SimInst *in = s->inst + i;

                healthy[i] &= seen[i];
                up[i] = healthy[i] && restarted[i];
                if (!up[i])
                        in->run = false;
                else if (!in->run) {
                        in->run = true;
                        in->run_since = s->now;
                }
        }

        if (pre_state == ROLLOUT_DONE || pre_state == ROLLOUT_ABORTED) {
                /* Frozen: at most the RESOLVE of an alert still raised. */
                ASSERT_LE_UINT(na, pre_alert ? 1 : 0);
                if (na == 1)
                        ASSERT_EQ_INT(a[0].kind, ROLLOUT_ACTION_RESOLVE);
                ASSERT_EQ_INT(r->state, pre_state);
                ASSERT_TRUE(streq_ptr(r->reason, pre_reason));
                for (uint32_t i = 0; i < s->n; i++)
                        assert_same_item(pre + i, r->items + i);
        }

        for (size_t j = 0; j < na; j++)
                switch (a[j].kind) {
                case ROLLOUT_ACTION_RESTART: {
                        uint32_t i = a[j].instance;

                        ASSERT_LT_INT(i, s->n);
                        ASSERT_EQ_INT(pre_state, ROLLOUT_RUNNING);
                        ASSERT_EQ_INT(pre[i].state, ITEM_PENDING);
                        ASSERT_EQ_INT(r->items[i].state, ITEM_RESTARTING);
                        ASSERT_EQ_UINT(r->items[i].attempts, pre[i].attempts + 1);
                        ASSERT_EQ_UINT(r->items[i].started_at, s->now);
                        n_restart++;
                        s->st->free_restarts += !healthy[i];
                        break;
                }
                case ROLLOUT_ACTION_ALERT:
                        ASSERT_FALSE(s->alert_open);
                        ASSERT_EQ_INT(r->state, ROLLOUT_FAILED);
                        s->alert_open = true;
                        n_alert++;
                        break;
                case ROLLOUT_ACTION_RESOLVE:
                        ASSERT_TRUE(s->alert_open);
                        ASSERT_NE_INT(r->state, ROLLOUT_FAILED);
                        s->alert_open = false;
                        n_resolve++;
                        break;
                case ROLLOUT_ACTION_FINISHED:
                        ASSERT_NE_INT(pre_state, ROLLOUT_DONE);
                        ASSERT_EQ_INT(r->state, ROLLOUT_DONE);
                        n_finished++;
                        break;
                default:
                        ASSERT_TRUE(false);
                }
        ASSERT_LE_UINT(n_alert + n_resolve, 1);
        ASSERT_LE_UINT(n_finished, 1);
        /* With room for every action, the alert is raised exactly while FAILED. */
        ASSERT_EQ_INT(r->alert_raised, s->alert_open);
        ASSERT_EQ_INT(s->alert_open, r->state == ROLLOUT_FAILED);

        switch (pre_state) {
        case ROLLOUT_RUNNING:
        case ROLLOUT_PAUSED:
                ASSERT_TRUE(r->state == pre_state || r->state == ROLLOUT_FAILED ||
                            r->state == ROLLOUT_DONE);
                if (pre_state == ROLLOUT_PAUSED && r->state == ROLLOUT_FAILED)
                        s->st->failed_while_paused++;
                break;
        default:
                ASSERT_EQ_INT(r->state, pre_state);
        }

        for (uint32_t i = 0; i < s->n; i++) {
                const RolloutItem *was = pre + i, *it = r->items + i;
                bool restarted_now = has_restart(a, na, i);

                ASSERT_EQ_UINT(it->instance, i);
                ASSERT_EQ_UINT(it->attempts, s->inst[i].restarts + restarted_now);
                ASSERT_LE_UINT(it->attempts, 1 + s->inst[i].retries);
                if (was->state == ITEM_PENDING)
                        ASSERT_TRUE(it->state == ITEM_PENDING || restarted_now);
                if (was->state == ITEM_DONE || was->state == ITEM_FAILED)
                        ASSERT_EQ_INT(it->state, was->state);
                if (it->state == ITEM_FAILED && was->state != ITEM_FAILED) {
                        /* Failed exactly when the timeout passed, not before. */
                        ASSERT_GT_INT(s->now - it->started_at, r->health_timeout);
                        ASSERT_EQ_INT(r->state, ROLLOUT_FAILED);
                        ASSERT_EQ_UINT(n_restart, 0);
                        s->st->item_failures++;
                }
                if (it->state == ITEM_DONE && was->state != ITEM_DONE) {
                        ASSERT_TRUE(s->inst[i].run);
                        ASSERT_GE_UINT(s->now - s->inst[i].run_since, r->healthy_for);
                }
                if (it->state == ITEM_SETTLING && pre_state != ROLLOUT_ABORTED) {
                        ASSERT_TRUE(up[i]);
                        if (was->state == ITEM_RESTARTING)
                                ASSERT_EQ_UINT(it->healthy_since, s->now);
                }
                if (it->state == ITEM_RESTARTING)
                        ASSERT_EQ_UINT(it->healthy_since, 0);
                if (in_flight(it->state) && r->state != ROLLOUT_ABORTED) {
                        /* No timeout missed. */
                        ASSERT_LE_UINT(s->now - it->started_at, r->health_timeout);
                        flight++;
                }
                if (it->state == ITEM_RESTARTING || (it->state == ITEM_SETTLING && !healthy[i]) ||
                    (!in_flight(it->state) && !healthy[i]))
                        down++;
                done += it->state == ITEM_DONE;
        }
        ASSERT_LE_UINT(flight, r->max_unavailable);
        if (n_restart > 0)
                ASSERT_LE_UINT(down + outsiders_down, r->max_unavailable);
        else if (pre_state == ROLLOUT_RUNNING && outsiders_down > 0)
                s->st->blocked_by_outsider++;
        if (r->state != ROLLOUT_ABORTED)
                ASSERT_EQ_INT(r->state == ROLLOUT_DONE, done == s->n);
}

static void sim_apply(Sim *s, const RolloutAction *a, size_t na) {
        for (size_t j = 0; j < na; j++) {
                SimInst *in;

                if (a[j].kind != ROLLOUT_ACTION_RESTART)
                        continue;
                in = s->inst + a[j].instance;
                in->restarts++;
                in->exec_pending = true;
                in->exec_at = s->now + below(&s->rng, SEC(2) + 1);
                s->st->restarts++;
        }
}

/* The controller dies after persisting and comes back: it parses what it
 * stored, asks for health again (same clock) and steps: nothing new. */
static void sim_crash(Sim *s, const InstanceHealth *h, size_t nh) {
        _cleanup_free_ char *text = fmt(s->r), *again = NULL;
        InstanceHealth h2[SIM_MAX_N + SIM_EXTRA];
        RolloutAction a[SIM_MAX_N + 2];
        Rollout *copy = reparse(s->r);

        assert_same_rollout(s->r, copy);
        memcpy(h2, h, nh * sizeof(InstanceHealth));
        for (size_t j = 0; j < nh; j++)
                if (h2[j].instance < s->n)
                        h2[j].restarted_since_issue = sim_restarted(s, copy, h2[j].instance);
        ASSERT_EQ_UINT(rollout_step(copy, h2, nh, s->now, UINT32_MAX, a, ELEMENTSOF(a)), 0);
        again = fmt(copy);
        ASSERT_STREQ(again, text);
        rollout_free(s->r);
        s->r = copy;
        s->st->crashes++;
}

static void sim_tick(Sim *s) {
        InstanceHealth h[SIM_MAX_N + SIM_EXTRA];
        RolloutAction a[SIM_MAX_N + 2];
        RolloutItem pre[SIM_MAX_N];
        _cleanup_free_ char *pre_reason = NULL;
        RolloutState pre_state;
        bool pre_alert;
        size_t nh, na;

        s->now += one_in(&s->rng, 10) ? 0 : between(&s->rng, MSEC(1), SEC(3));
        sim_advance(s);
        sim_operator(s);
        nh = sim_health(s, h);

        memcpy(pre, s->r->items, s->n * sizeof(RolloutItem));
        pre_state = s->r->state;
        pre_alert = s->r->alert_raised;
        if (s->r->reason)
                ASSERT_NOT_NULL(pre_reason = strdup(s->r->reason));
        na = rollout_step(s->r, h, nh, s->now, UINT32_MAX, a, s->n + 2);
        sim_check(s, pre, pre_state, pre_alert, pre_reason, h, nh, a, na);
        sim_apply(s, a, na);

        if (one_in(&s->rng, 8))
                sim_crash(s, h, nh);
}

static void sim_run(uint64_t seed, SimStats *st) {
        Sim s = { .rng = seed, .st = st };
        usec_t healthy_for, health_timeout;
        uint32_t max_unavailable;
        unsigned tick;

        s.n = (uint32_t) between(&s.rng, 2, SIM_MAX_N);
        max_unavailable = (uint32_t) between(&s.rng, 1, 3);
        healthy_for = one_in(&s.rng, 5) ? 0 : between(&s.rng, MSEC(1), SEC(20));
        /* Long enough to settle once the world heals, so every run can end. */
        health_timeout = healthy_for + SEC(15) + below(&s.rng, SEC(60));
        s.extras = one_in(&s.rng, 4);
        s.now = T0 + below(&s.rng, SEC(100000));
        for (uint32_t i = 0; i < s.n; i++)
                s.inst[i].dead = one_in(&s.rng, 15);
        ASSERT_OK(rollout_new("gateway", seed, s.n, max_unavailable, healthy_for, health_timeout,
                              &s.r));
        st->rollouts++;

        for (tick = 0; s.r->state != ROLLOUT_DONE && s.r->state != ROLLOUT_ABORTED; tick++) {
                if (tick == 700) {
                        s.final = true;
                        for (uint32_t i = 0; i < s.n; i++)
                                s.inst[i].dead = false;
                }
                ASSERT_LT_INT(tick, 20000);
                sim_tick(&s);
        }
        /* Frozen from here on; a raised alert gets resolved. */
        for (int i = 0; i < 3; i++)
                sim_tick(&s);
        sim_control(&s, CTL_ABORT);
        ASSERT_FALSE(s.alert_open);
        ASSERT_FALSE(s.r->alert_raised);

        for (uint32_t i = 0; i < s.n; i++) {
                /* One RESTART per instance, plus one per resume that retried it. */
                if (s.r->state == ROLLOUT_DONE)
                        ASSERT_EQ_UINT(s.inst[i].restarts, 1 + s.inst[i].retries);
                else
                        ASSERT_LE_UINT(s.inst[i].restarts, 1 + s.inst[i].retries);
                ASSERT_EQ_UINT(s.inst[i].restarts, s.r->items[i].attempts);
        }
        if (s.r->state == ROLLOUT_DONE)
                st->done++;
        else
                st->aborted++;
        rollout_free(s.r);
}

TEST(simulator) {
        SimStats st = { 0 };

        for (uint64_t k = 0; k < 1200; k++)
                sim_run(UINT64_C(0x5eed0000) + k, &st);

        printf("# %u rollouts: %u done, %u aborted; %u restarts (%u of down instances), "
               "%u item failures, %u retries, %u pauses, %u failed while paused, %u refused "
               "controls, %u crashes replayed, %u omitted reports, %u steps with an outsider "
               "down\n",
               st.rollouts, st.done, st.aborted, st.restarts, st.free_restarts, st.item_failures,
               st.retries, st.pauses, st.failed_while_paused, st.busy, st.crashes, st.omitted,
               st.blocked_by_outsider);
        ASSERT_EQ_UINT(st.rollouts, 1200);
        ASSERT_EQ_UINT(st.done + st.aborted, st.rollouts);
        /* The seeds must reach every rule, or the invariants prove little. */
        ASSERT_GT_INT(st.done, 600);
        ASSERT_GT_INT(st.aborted, 10);
        ASSERT_GT_INT(st.item_failures, 100);
        ASSERT_GT_INT(st.retries, 100);
        ASSERT_GT_INT(st.pauses, 100);
        ASSERT_GT_INT(st.failed_while_paused, 0);
        ASSERT_GT_INT(st.busy, 100);
        ASSERT_GT_INT(st.crashes, 1000);
        ASSERT_GT_INT(st.free_restarts, 10);
        ASSERT_GT_INT(st.omitted, 100);
        ASSERT_GT_INT(st.blocked_by_outsider, 10);
}

int main(void) {
        return tap_run(TESTS(
                string_tables, new_validates, first_step_restarts_up_to_max_unavailable,
                healthy_without_restart_evidence_is_not_done, settles_for_healthy_for_then_next,
                settling_drops_back_when_health_is_lost, healthy_for_zero_is_done_at_first_health,
                unhealthy_outsider_uses_up_max_unavailable, unhealthy_done_item_blocks_the_next,
                down_pending_instance_is_restarted_at_no_extra_cost,
                duplicate_health_entries_are_merged_conservatively,
                timeout_fails_with_one_alert_and_stops, settling_past_timeout_fails,
                resume_retries_failed_item_and_resolves, failure_of_second_item_keeps_one_alert,
                pause_holds_but_tracks_in_flight, timeout_while_paused_fails, done_while_paused,
                done_finishes_once, controls_are_refused_in_the_wrong_state, abort_stops_everything,
                abort_resolves_a_raised_alert_once, replayed_step_issues_nothing,
                small_action_buffer_takes_nothing_it_cannot_report,
                clock_going_back_causes_no_timeout, format_is_exact, format_parse_round_trip_random,
                every_proper_prefix_is_refused, mutated_texts_are_refused_or_canonical,
                random_junk_never_crashes, malformed_texts_name_what_and_where,
                parse_accepts_the_item_cap, simulator));
}
