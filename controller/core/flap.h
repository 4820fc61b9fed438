/* SPDX-License-Identifier: MIT */
/* Whether a unit is flapping: systemd keeps restarting it. Fed with the
 * unit's NRestarts as reported, it says when the unit starts flapping
 * (`threshold` automatic restarts within `window`) and when it stops (no
 * restart within a window, and active). Pure. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

#define FLAP_MAX_EVENTS 16

typedef struct FlapTracker {
        usec_t times[FLAP_MAX_EVENTS]; /* restarts seen within the window, oldest first */
        unsigned n;
        uint32_t last_restarts;
        bool known;
        bool flapping;
} FlapTracker;

/* Returns 1 when the unit just started flapping, -1 when it just stopped,
 * 0 otherwise. NRestarts going down (a manual restart resets it) is taken as
 * the new baseline, not as restarts. */
int flap_observe(FlapTracker *t, uint32_t n_restarts, bool active, usec_t now, usec_t window,
                 unsigned threshold);
