/* SPDX-License-Identifier: MIT */
/* pause, resume and abort for the changes an operator steers (rollouts,
 * reshards): the transitions they allow and the reasons they leave. Pure. */
#include "opstate.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

int opstate_apply(const OpStates *states, int state, OpControl control, const char *why,
                  char **reason) {
        const char *default_why;
        char *s;
        int to;

        assert(states);
        assert(reason);

        switch (control) {
        case OP_CONTROL_PAUSE:
                if (state != states->running)
                        return -EBUSY;
                to = states->paused;
                default_why = "paused by operator";
                break;
        case OP_CONTROL_RESUME:
                if (state != states->paused && state != states->failed)
                        return -EBUSY;
                *reason = mfree(*reason);
                return states->running;
        case OP_CONTROL_ABORT:
                if (state == states->done || state == states->aborted)
                        return -EBUSY;
                to = states->aborted;
                default_why = "aborted by operator";
                break;
        default:
                assert(false);
                return -EINVAL;
        }

        s = strdup(why ? why : default_why);
        if (!s)
                return -ENOMEM;
        free(*reason);
        *reason = s;
        return to;
}
