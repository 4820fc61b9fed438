/* SPDX-License-Identifier: MIT */
/* The operator's controls over a change that runs for a while (a rollout, a
 * reshard): pause, resume and abort, which states allow each, and the reason
 * each leaves behind. Written once so that every such change answers the
 * operator alike; each core maps its own states onto these. Pure. */
#pragma once

#include <assert.h>
#include <errno.h>

typedef enum OpControl {
        OP_CONTROL_PAUSE,
        OP_CONTROL_RESUME,
        OP_CONTROL_ABORT,
        _OP_CONTROL_MAX,
        _OP_CONTROL_INVALID = -EINVAL,
} OpControl;

/* A core's own values for the states the controls know. */
typedef struct OpStates {
        int running;
        int paused;
        int failed; /* stopped by a failure: paused until resume or abort */
        int done;
        int aborted;
} OpStates;

/* Applies `control` to a change in `state` (one of `states`) whose reason is
 * *reason (malloc'ed, or NULL):
 *   pause:  running → paused, the reason `why` or "paused by operator";
 *   resume: paused or failed → running, no reason;
 *   abort:  anything but done or aborted → aborted, the reason `why` or
 *           "aborted by operator".
 * Returns the new state, or -EBUSY if the control does not apply in `state`,
 * or -ENOMEM; *reason is untouched on error. */
int opstate_apply(const OpStates *states, int state, OpControl control, const char *why,
                  char **reason);

/* Defines `static int name(Type *x, OpControl control, const char *why)`:
 * opstate_apply() on x->state and x->reason for a core whose states are
 * PREFIX_RUNNING, PREFIX_PAUSED, PREFIX_FAILED, PREFIX_DONE and
 * PREFIX_ABORTED; 0 or the error, with nothing changed on error. */
#define DEFINE_OPSTATE_CONTROL(name, Type, PREFIX)                                                 \
        static int name(Type *x, OpControl control, const char *why) {                             \
                static const OpStates states = {                                                   \
                        .running = PREFIX##_RUNNING,                                               \
                        .paused = PREFIX##_PAUSED,                                                 \
                        .failed = PREFIX##_FAILED,                                                 \
                        .done = PREFIX##_DONE,                                                     \
                        .aborted = PREFIX##_ABORTED,                                               \
                };                                                                                 \
                int k;                                                                             \
                                                                                                   \
                assert(x);                                                                         \
                                                                                                   \
                k = opstate_apply(&states, x->state, control, why, &x->reason);                    \
                if (k < 0)                                                                         \
                        return k;                                                                  \
                x->state = k;                                                                      \
                return 0;                                                                          \
        }
