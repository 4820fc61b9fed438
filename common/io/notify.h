/* SPDX-License-Identifier: MIT */
/* The daemons' side of Type=notify: READY=1, STATUS=, and WATCHDOG=1 from a
 * uv timer at half of $WATCHDOG_USEC. No-ops when not under systemd. */
#pragma once

#include <stdbool.h>
#include <uv.h>

typedef struct Notifier {
        uv_timer_t watchdog;
        bool watchdog_armed;
        bool ready_sent;
} Notifier;

/* Arms the watchdog timer if the service manager asked for one. */
int notifier_init(Notifier *n, uv_loop_t *loop);
void notifier_ready(Notifier *n, const char *status);
void notifier_status(Notifier *n, const char *status);
void notifier_stopping(Notifier *n);
/* Closes the timer handle (embedded in the owner; no callback needed). */
void notifier_done(Notifier *n);
