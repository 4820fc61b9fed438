/* SPDX-License-Identifier: MIT */
/* opstate_apply(): every control in every state, the reasons it leaves, and
 * nothing changed when a control does not apply; with state values of the
 * test's own, as a core maps its enum. */
#include <errno.h>

#include "opstate.h"
#include "tap.h"

enum {
        RUNNING = 10,
        PAUSED = 11,
        FAILED = 12,
        DONE = 13,
        ABORTED = 14
};

static const OpStates states = {
        .running = RUNNING,
        .paused = PAUSED,
        .failed = FAILED,
        .done = DONE,
        .aborted = ABORTED,
};

/* The transition table the rollout and the reshard both document: the state
 * each control leads to, or -EBUSY. */
static const struct {
        int from;
        OpControl control;
        int to;
} table[] = {
        { RUNNING, OP_CONTROL_PAUSE, PAUSED },  { PAUSED, OP_CONTROL_PAUSE, -EBUSY },
        { FAILED, OP_CONTROL_PAUSE, -EBUSY },   { DONE, OP_CONTROL_PAUSE, -EBUSY },
        { ABORTED, OP_CONTROL_PAUSE, -EBUSY },  { RUNNING, OP_CONTROL_RESUME, -EBUSY },
        { PAUSED, OP_CONTROL_RESUME, RUNNING }, { FAILED, OP_CONTROL_RESUME, RUNNING },
        { DONE, OP_CONTROL_RESUME, -EBUSY },    { ABORTED, OP_CONTROL_RESUME, -EBUSY },
        { RUNNING, OP_CONTROL_ABORT, ABORTED }, { PAUSED, OP_CONTROL_ABORT, ABORTED },
        { FAILED, OP_CONTROL_ABORT, ABORTED },  { DONE, OP_CONTROL_ABORT, -EBUSY },
        { ABORTED, OP_CONTROL_ABORT, -EBUSY },
};

TEST(opstate_transitions) {
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                char *reason = strdup("before");

                ASSERT_NOT_NULL(reason);
                ASSERT_EQ_INT(
                        opstate_apply(&states, table[i].from, table[i].control, NULL, &reason),
                        table[i].to);
                if (table[i].to < 0)
                        ASSERT_STREQ(reason, "before");
                else if (table[i].control == OP_CONTROL_RESUME)
                        ASSERT_NULL(reason);
                else
                        ASSERT_STREQ(reason, table[i].control == OP_CONTROL_PAUSE
                                                     ? "paused by operator"
                                                     : "aborted by operator");
                free(reason);
        }
}

TEST(opstate_reason_is_copied) {
        char why[] = "maintenance window";
        char *reason = NULL;

        ASSERT_EQ_INT(opstate_apply(&states, RUNNING, OP_CONTROL_PAUSE, why, &reason), PAUSED);
        ASSERT_TRUE(reason != why);
        why[0] = 'X';
        ASSERT_STREQ(reason, "maintenance window");

        /* A new reason replaces the old one (abort while paused). */
        ASSERT_EQ_INT(opstate_apply(&states, PAUSED, OP_CONTROL_ABORT, "bad build", &reason),
                      ABORTED);
        ASSERT_STREQ(reason, "bad build");

        /* A refused control keeps it; resume clears it. */
        ASSERT_EQ_INT(opstate_apply(&states, ABORTED, OP_CONTROL_RESUME, NULL, &reason), -EBUSY);
        ASSERT_STREQ(reason, "bad build");
        ASSERT_EQ_INT(opstate_apply(&states, FAILED, OP_CONTROL_RESUME, "ignored", &reason),
                      RUNNING);
        ASSERT_NULL(reason);
}

int main(void) {
        return tap_run(TESTS(opstate_transitions, opstate_reason_is_copied));
}
