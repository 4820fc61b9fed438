/* SPDX-License-Identifier: MIT */
/* The flapping decision, kept out of the shell so it can be tested against
 * any clock. */
#include <assert.h>

#include "flap.h"

static void prune(FlapTracker *t, usec_t now, usec_t window) {
        unsigned keep = 0;

        for (unsigned i = 0; i < t->n; i++)
                if (now < window || t->times[i] > now - window)
                        t->times[keep++] = t->times[i];
        t->n = keep;
}

int flap_observe(FlapTracker *t, uint32_t n_restarts, bool active, usec_t now, usec_t window,
                 unsigned threshold) {
        assert(t);
        assert(threshold > 0 && threshold <= FLAP_MAX_EVENTS);

        if (!t->known) {
                t->known = true;
                t->last_restarts = n_restarts;
                return 0;
        }
        if (n_restarts > t->last_restarts) {
                uint32_t k = MIN(n_restarts - t->last_restarts, (uint32_t) FLAP_MAX_EVENTS);

                for (uint32_t i = 0; i < k; i++) {
                        if (t->n == FLAP_MAX_EVENTS) {
                                for (unsigned j = 1; j < t->n; j++)
                                        t->times[j - 1] = t->times[j];
                                t->n--;
                        }
                        t->times[t->n++] = now;
                }
        }
        t->last_restarts = n_restarts;
        prune(t, now, window);

        if (!t->flapping && t->n >= threshold) {
                t->flapping = true;
                return 1;
        }
        if (t->flapping && t->n == 0 && active) {
                t->flapping = false;
                return -1;
        }
        return 0;
}
