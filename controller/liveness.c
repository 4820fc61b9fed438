/* SPDX-License-Identifier: MIT */
/* Markers and the horizon (liveness.h). */
#include "liveness.h"
#include "log.h"
#include "util.h"

int liveness_init(Liveness *l, usec_t host_timeout) {
        *l = (Liveness){
                .timeout = host_timeout,
                .interval = MIN(MAX(host_timeout / 10, 100 * USEC_PER_MSEC), USEC_PER_SEC),
                .blind = true, /* until the first connect */
        };
        return random_id(l->nonce);
}

void liveness_marker(Liveness *l, const char *controller_id, Baton__V1__ControllerMarker *ret) {
        baton__v1__controller_marker__init(ret);
        ret->controller_id = (char *) controller_id;
        ret->nonce = l->nonce;
        ret->seq = ++l->seq;
        ret->sent_mono_us = now_monotonic_usec();
}

bool liveness_marker_read(Liveness *l, const Baton__V1__ControllerMarker *mk, usec_t now) {
        /* Another controller's, or an earlier run's: not a statement about us. */
        if (!streq_ptr(mk->nonce, l->nonce) || mk->sent_mono_us <= l->horizon ||
            mk->sent_mono_us > now)
                return false;
        l->horizon = mk->sent_mono_us;
        l->lag = now - l->horizon;
        if (l->lag >= LIVENESS_OVERRUN_LAG) {
                if (!l->overrun || now - l->lag_logged >= 60 * USEC_PER_SEC) {
                        log_warning("Reading status %.1fs behind: heartbeats may expire in the "
                                    "queue unread, so no host is judged until the controller "
                                    "is less than %.0fs behind.",
                                    (double) l->lag / USEC_PER_SEC,
                                    (double) LIVENESS_OVERRUN_LAG / USEC_PER_SEC);
                        l->lag_logged = now;
                }
                l->overrun = true;
        } else if (l->overrun) {
                log_notice("Reading status %.1fs behind again; every live host gets a whole "
                           "timeout from now.",
                           (double) l->lag / USEC_PER_SEC);
                l->overrun = false;
                l->regained = true;
        } else if (l->lag > l->timeout / 2 && now - l->lag_logged >= 60 * USEC_PER_SEC) {
                log_warning("Reading status %.1fs behind; hosts are judged as of then.",
                            (double) l->lag / USEC_PER_SEC);
                l->lag_logged = now;
        }
        return true;
}

bool liveness_sent_after(const Liveness *l, usec_t *ret) {
        if (l->horizon == 0)
                return false;
        *ret = l->horizon;
        return true;
}

bool liveness_take_regained(Liveness *l) {
        bool r = l->regained;

        l->regained = false;
        return r;
}

void liveness_set_blind(Liveness *l, bool blind) {
        l->blind = blind;
}

bool liveness_horizon(const Liveness *l, usec_t *ret) {
        if (l->blind || l->overrun || l->horizon == 0)
                return false;
        *ret = l->horizon;
        return true;
}
