/* SPDX-License-Identifier: MIT */
/* Shard readiness: what an agent reports for a sharded instance from its
 * assignment, ActiveState and StatusText tokens. */
#include <errno.h>
#include <stdlib.h>

#include "shards.h"
#include "tap.h"

/* Computes and returns the three lists as text: "ready|connecting|failed". */
static char *readiness(const char *assigned, const char *state, const char *status) {
        ShardReadiness r;
        char *ready, *conn, *failed, *s = NULL;

        if (shard_readiness_compute(assigned, state, status, &r) < 0)
                return NULL;
        ready = rangelist_format(&r.ready);
        conn = rangelist_format(&r.connecting);
        failed = rangelist_format(&r.failed);
        if (asprintf(&s, "%s|%s|%s", ready, conn, failed) < 0)
                s = NULL;
        free(ready);
        free(conn);
        free(failed);
        shard_readiness_done(&r);
        return s;
}

#define ASSERT_READINESS(assigned, state, status, expect)                                          \
        do {                                                                                       \
                char *got_ = readiness(assigned, state, status);                                   \
                ASSERT_STREQ(got_, expect);                                                        \
                free(got_);                                                                        \
        } while (0)

TEST(active_without_tokens_is_all_ready) {
        ASSERT_READINESS("0-13,90-91", "active", NULL, "0-13,90-91||");
        ASSERT_READINESS("0-13,90-91", "active", "Serving 16 guilds", "0-13,90-91||");
        ASSERT_READINESS("0-3", "reloading", "", "0-3||");
}

TEST(inactive_is_never_ready) {
        ASSERT_READINESS("0-13", "inactive", NULL, "||");
        ASSERT_READINESS("0-13", "activating", NULL, "||");
        ASSERT_READINESS("0-13", "failed", "ready=0-13", "||");
        ASSERT_READINESS("0-13", "deactivating", "ready=0-3 connecting=4", "|4|");
}

TEST(tokens_say_exactly_what_is_ready) {
        ASSERT_READINESS("0-4", "active", "ready=0-3 connecting=4", "0-3|4|");
        ASSERT_READINESS("0-4", "active", "ready=0-1 failed=4", "0-1||4");
        ASSERT_READINESS("0-4", "active", "connecting=0-4", "|0-4|");
}

TEST(precedence_failed_connecting_ready) {
        ASSERT_READINESS("0-9", "active", "ready=0-9 connecting=5-6 failed=6-7", "0-4,8-9|5|6-7");
}

TEST(tokens_outside_the_assignment_are_ignored) {
        ShardReadiness r;

        ASSERT_OK(shard_readiness_compute("10-19", "active", "ready=0-15 failed=30", &r));
        ASSERT_EQ_UINT(rangelist_count(&r.ready), 6);
        ASSERT_EQ_UINT(rangelist_count(&r.failed), 0);
        ASSERT_TRUE(r.foreign);
        ASSERT_TRUE(r.has_tokens);
        shard_readiness_done(&r);
}

TEST(other_text_is_kept_for_display) {
        ShardReadiness r;

        ASSERT_OK(shard_readiness_compute("0-3", "active", "ready=0-3 guilds=1200 up", &r));
        ASSERT_STREQ(r.status, "guilds=1200 up");
        ASSERT_FALSE(r.foreign);
        shard_readiness_done(&r);
}

TEST(malformed_tokens_claim_nothing) {
        ShardReadiness r;

        ASSERT_OK(shard_readiness_compute("0-3", "active", "ready=3-1", &r));
        ASSERT_EQ_UINT(rangelist_count(&r.ready), 0);
        ASSERT_STREQ(r.status, "ready=3-1");
        shard_readiness_done(&r);
}

TEST(bad_assignment_is_an_error) {
        ShardReadiness r;

        ASSERT_ERR(shard_readiness_compute("zero", "active", NULL, &r), -EINVAL);
        ASSERT_ERR(shard_readiness_compute("5-2", "active", NULL, &r), -EINVAL);
}

TEST(empty_assignment) {
        ASSERT_READINESS("", "active", NULL, "||");
        ASSERT_READINESS("", "active", "ready=0-3", "||");
}

int main(void) {
        return tap_run(TESTS(active_without_tokens_is_all_ready, inactive_is_never_ready,
                             tokens_say_exactly_what_is_ready, precedence_failed_connecting_ready,
                             tokens_outside_the_assignment_are_ignored,
                             other_text_is_kept_for_display, malformed_tokens_claim_nothing,
                             bad_assignment_is_an_error, empty_assignment));
}
