/* SPDX-License-Identifier: MIT */
/* Type=notify for the daemons: READY=1 once, STATUS= lines, STOPPING=1, and
 * WATCHDOG=1 from a timer at half the interval systemd asked for. */
#include <systemd/sd-daemon.h>

#include "notify.h"

static void on_watchdog(uv_timer_t *t) {
        (void) sd_notify(0, "WATCHDOG=1");
}

int notifier_init(Notifier *n, uv_loop_t *loop) {
        uint64_t usec = 0;
        int r;

        *n = (Notifier){ 0 };
        r = uv_timer_init(loop, &n->watchdog);
        if (r < 0)
                return r;
        /* Unreferenced: the watchdog alone must not keep the loop alive. */
        uv_unref((uv_handle_t *) &n->watchdog);

        r = sd_watchdog_enabled(0, &usec);
        if (r > 0 && usec > 0) {
                uint64_t ms = usec / 2000;
                r = uv_timer_start(&n->watchdog, on_watchdog, ms ? ms : 1, ms ? ms : 1);
                if (r < 0)
                        return r;
                n->watchdog_armed = true;
        }
        return 0;
}

void notifier_ready(Notifier *n, const char *status) {
        if (n->ready_sent) {
                notifier_status(n, status);
                return;
        }
        n->ready_sent = true;
        if (status)
                (void) sd_notifyf(0, "READY=1\nSTATUS=%s", status);
        else
                (void) sd_notify(0, "READY=1");
}

void notifier_status(Notifier *n, const char *status) {
        if (status)
                (void) sd_notifyf(0, "STATUS=%s", status);
}

void notifier_stopping(Notifier *n) {
        (void) sd_notify(0, "STOPPING=1");
}

void notifier_done(Notifier *n) {
        if (n->watchdog.loop && !uv_is_closing((uv_handle_t *) &n->watchdog))
                uv_close((uv_handle_t *) &n->watchdog, NULL);
}
