/* SPDX-License-Identifier: MIT */
/* A UnitEvent as the controller's status consumer receives it, then what
 * controller.c does with it in pure code: the host id check, the flap
 * tracker fed with the unit's NRestarts (starting to flap at the third
 * restart within a minute, stopping after a quiet, active minute), and the
 * unit name read as a copy of a sharded service. */
#include <stdlib.h>
#include <string.h>

#include "flap.h"
#include "fuzz-wire.h"
#include "shardplan.h"
#include "status.pb-c.h"
#include "topology.h"
#include "unit-name.h"

#define WINDOW (60 * USEC_PER_SEC)

static void check_flap(uint32_t n_restarts, bool active) {
        FlapTracker t = { 0 };
        usec_t now = 1000 * USEC_PER_SEC;

        /* The first report is the baseline, whatever it says. */
        FUZZ_ASSERT(flap_observe(&t, n_restarts, active, now, WINDOW, 3) == 0);
        if (n_restarts > UINT32_MAX - 3)
                return;
        FUZZ_ASSERT(flap_observe(&t, n_restarts + 1, false, now + 1, WINDOW, 3) == 0);
        FUZZ_ASSERT(flap_observe(&t, n_restarts + 2, false, now + 2, WINDOW, 3) == 0);
        FUZZ_ASSERT(flap_observe(&t, n_restarts + 3, false, now + 3, WINDOW, 3) == 1);
        FUZZ_ASSERT(flap_observe(&t, n_restarts + 3, false, now + 4, WINDOW, 3) == 0);
        /* Quiet for a window: stops only once active. */
        FUZZ_ASSERT(flap_observe(&t, n_restarts + 3, false, now + 4 + WINDOW, WINDOW, 3) == 0);
        FUZZ_ASSERT(flap_observe(&t, n_restarts + 3, true, now + 5 + WINDOW, WINDOW, 3) == -1);
        /* A manual restart resets NRestarts: a new baseline, not restarts. */
        FUZZ_ASSERT(flap_observe(&t, 0, true, now + 6 + WINDOW, WINDOW, 3) == 0);
}

static void check_copy(const char *service, const char *unit) {
        _cleanup_free_ char *again = NULL;
        uint32_t instance;
        uint8_t slot;

        if (shard_copy_parse(service, unit, &instance, &slot) < 0)
                return;
        FUZZ_ASSERT(unit_name_is_valid(unit, UNIT_NAME_INSTANCE));
        FUZZ_ASSERT(slot <= 1);
        FUZZ_ASSERT(shard_copy_unit(service, instance, slot, &again) >= 0);
        if (!streq(again, unit))
                fuzz_fail("copy %s of %s reads as %u/%u, which is %s", unit, service, instance,
                          slot, again);
}

static void drive(const CodecDecoded *d) {
        const Baton__V1__UnitEvent *ev = (const Baton__V1__UnitEvent *) d->body;
        const Baton__V1__UnitState *u = ev->unit;

        if (!topology_host_id_is_valid(ev->host) || !u)
                return;
        check_flap(u->n_restarts, streq(u->active_state, "active"));
        check_copy(u->service, u->name);
        check_copy("gateway", u->name);
}

const FuzzWireTarget fuzz_wire_target = {
        .rx = &fuzz_rx_status,
        .body = &baton__v1__unit_event__descriptor,
        .drive = drive,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        return fuzz_wire_run(&fuzz_wire_target, data, size);
}
