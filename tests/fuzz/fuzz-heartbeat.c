/* SPDX-License-Identifier: MIT */
/* A Heartbeat as the controller's status consumer receives it, then what
 * controller.c and fleet.c do with it in pure code: the host id check, the
 * host table (new host, up, expiry), flap tracking per unit, and the host's
 * labels and memory as placement input: the example fleet is placed over
 * this host and two others, and must come out valid and stable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flap.h"
#include "fuzz-fleet.h"
#include "fuzz-wire.h"
#include "hosts.h"
#include "status.pb-c.h"
#include "topology.h"

#define TIMEOUT (30 * USEC_PER_SEC)

/* controller.c's labels_to_text() and fleet.c's split_labels(): "k=v k=v"
 * and back, the strings pointing into *ret_buf. */
static char *labels_text(const Baton__V1__Heartbeat *hb) {
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);

        if (!f)
                abort();
        for (size_t i = 0; i < hb->n_labels; i++)
                fprintf(f, "%s%s=%s", i ? " " : "", hb->labels[i]->key, hb->labels[i]->value);
        if (fclose(f) != 0)
                abort();
        return s;
}

static SpecLabel *split_labels(char *buf, size_t *ret_n) {
        SpecLabel *v;
        size_t n = 0, max = 1;

        for (const char *p = buf; *p; p++)
                max += *p == ' ';
        v = calloc(max, sizeof(SpecLabel));
        if (!v)
                abort();
        for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
                char *eq = strchr(tok, '=');

                if (!eq)
                        continue;
                *eq = 0;
                v[n++] = (SpecLabel){ tok, eq + 1 };
        }
        *ret_n = n;
        return v;
}

static void place(const Baton__V1__Heartbeat *hb, const Host *const *table, size_t n_table) {
        PlacementHost *hosts = calloc(n_table + 1, sizeof(PlacementHost));
        SpecLabel **labels = calloc(n_table + 1, sizeof(SpecLabel *));
        char **bufs = calloc(n_table + 1, sizeof(char *));

        if (!hosts || !labels || !bufs)
                abort();
        for (size_t i = 0; i < n_table; i++) {
                const char *id = table[i]->id;

                hosts[i] = (PlacementHost){ .id = id, .schedulable = true };
                if (streq(id, hb->host)) {
                        bufs[i] = labels_text(hb);
                        hosts[i].memory_total = hb->capacity ? hb->capacity->memory_total_bytes : 0;
                } else
                        for (size_t k = 0; k < FUZZ_FLEET_N_HOSTS; k++)
                                if (streq(fuzz_fleet_hosts[k].id, id)) {
                                        bufs[i] = strdup(fuzz_fleet_hosts[k].labels);
                                        hosts[i].memory_total = fuzz_fleet_hosts[k].memory;
                                }
                if (!bufs[i])
                        abort();
                labels[i] = split_labels(bufs[i], &hosts[i].n_labels);
                hosts[i].labels = labels[i];
        }

        fuzz_place_and_check(fuzz_fleet_load(), FUZZ_FLEET_N_SPECS, hosts, n_table);

        for (size_t i = 0; i < n_table; i++) {
                free(labels[i]);
                free(bufs[i]);
        }
        free(labels);
        free(bufs);
        free(hosts);
}

static void drive(const CodecDecoded *d) {
        const Baton__V1__Heartbeat *hb = (const Baton__V1__Heartbeat *) d->body;
        FlapTracker *flaps;
        HostTransition t, expired[8];
        HostTable table;
        Host *h;
        usec_t now = 5 * USEC_PER_SEC;

        /* controller.c's on_status(): the routing key names the host. */
        if (!topology_host_id_is_valid(hb->host))
                return;
        FUZZ_ASSERT(!strchr(hb->host, '.') && strlen(hb->host) <= 64);

        host_table_init(&table, TIMEOUT);
        for (size_t i = 0; i < FUZZ_FLEET_N_HOSTS; i++)
                if (!streq(fuzz_fleet_hosts[i].id, hb->host))
                        FUZZ_ASSERT(host_table_restore(&table, fuzz_fleet_hosts[i].id, true, false,
                                                       now, &h) >= 0);
        FUZZ_ASSERT(host_table_heartbeat(&table, hb->host, now, &h, &t) == 1);
        FUZZ_ASSERT(streq(t.id, hb->host) && t.from == _HOST_STATE_INVALID && t.to == HOST_UP);
        FUZZ_ASSERT(host_table_heartbeat(&table, hb->host, now + 1, &h, &t) == 0);
        FUZZ_ASSERT(host_table_get(&table, hb->host) == h && host_state(h) == HOST_UP);

        place(hb, (const Host *const *) table.hosts, table.n_hosts);

        /* Every unit's NRestarts through the flap tracker, twice: the second
         * report of the same numbers starts nothing. */
        flaps = calloc(hb->n_units + 1, sizeof(FlapTracker));
        if (!flaps)
                abort();
        for (unsigned pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < hb->n_units; i++) {
                        const Baton__V1__UnitState *u = hb->units[i];
                        int r = flap_observe(&flaps[i], u->n_restarts,
                                             streq(u->active_state, "active"), now + pass,
                                             60 * USEC_PER_SEC, 3);

                        FUZZ_ASSERT(r >= -1 && r <= 1);
                        FUZZ_ASSERT(pass == 0 ? r == 0 : r != 1);
                }
        free(flaps);

        /* Silent for longer than the timeout: down, every host once. */
        FUZZ_ASSERT(host_table_expire(&table, now + 2 * TIMEOUT, expired, ELEMENTSOF(expired)) ==
                    table.n_hosts);
        FUZZ_ASSERT(host_state(host_table_get(&table, hb->host)) == HOST_DOWN);
        host_table_done(&table, NULL);
}

const FuzzWireTarget fuzz_wire_target = {
        .rx = &fuzz_rx_status,
        .body = &baton__v1__heartbeat__descriptor,
        .drive = drive,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        return fuzz_wire_run(&fuzz_wire_target, data, size);
}
