/* SPDX-License-Identifier: MIT */
/* The example fleet for targets that hand a message to the planner, and
 * what every placement of it must satisfy. */
#include <stdlib.h>

#include "fuzz-fleet.h"
#include "fuzz-wire.h"

const ServiceSpec *const *fuzz_fleet_load(void) {
        static ServiceSpec *specs[FUZZ_FLEET_N_SPECS];
        static bool loaded;

        if (loaded)
                return (const ServiceSpec *const *) specs;
        for (size_t i = 0; i < FUZZ_FLEET_N_SPECS; i++)
                if (spec_parse(fuzz_fleet_specs[i].name, fuzz_fleet_specs[i].text, &specs[i],
                               NULL) < 0)
                        fuzz_fail("example spec %s does not parse", fuzz_fleet_specs[i].name);
        loaded = true;
        return (const ServiceSpec *const *) specs;
}

static void check(const ServiceSpec *const *specs, size_t n_specs, const PlacementHost *hosts,
                  size_t n_hosts, const PlacementResult *res) {
        uint64_t total = 0;

        for (size_t i = 0; i < n_specs; i++)
                total += specs[i]->kind == SERVICE_SINGLETON ? 1 : specs[i]->count;
        FUZZ_ASSERT(res->n_assignments + res->n_problems == total);
        for (size_t i = 0; i < res->n_assignments; i++) {
                const Assignment *a = &res->assignments[i];
                const ServiceSpec *s = NULL;
                const PlacementHost *h = NULL;
                size_t on_host = 0;

                for (size_t k = 0; k < n_specs; k++)
                        if (streq(specs[k]->name, a->service))
                                s = specs[k];
                for (size_t k = 0; k < n_hosts; k++)
                        if (streq(hosts[k].id, a->host))
                                h = &hosts[k];
                FUZZ_ASSERT(s && h && h->schedulable);
                FUZZ_ASSERT(placement_labels_match(h, s->require_labels, s->n_require_labels));
                FUZZ_ASSERT(a->instance < (s->kind == SERVICE_SINGLETON ? 1 : s->count));
                if (s->max_per_host > 0) {
                        for (size_t k = 0; k < res->n_assignments && on_host <= s->max_per_host;
                             k++)
                                on_host += streq(res->assignments[k].service, s->name) &&
                                           streq(res->assignments[k].host, h->id);
                        FUZZ_ASSERT(on_host <= s->max_per_host);
                }
                FUZZ_ASSERT(placement_result_find(res, a->service, a->instance) == a);
        }
        for (size_t i = 0; i < res->n_problems; i++)
                FUZZ_ASSERT(res->problems[i].reason);
}

/* Deterministic whatever the input order: the same result with the specs
 * and the hosts in reverse. */
static void check_order(const ServiceSpec *const *specs, size_t n_specs, const PlacementHost *hosts,
                        size_t n_hosts, const PlacementResult *res) {
        const ServiceSpec **rspecs = calloc(n_specs + 1, sizeof(ServiceSpec *));
        PlacementHost *rhosts = calloc(n_hosts + 1, sizeof(PlacementHost));
        PlacementResult other = { 0 };
        int r;

        if (!rspecs || !rhosts)
                abort();
        for (size_t i = 0; i < n_specs; i++)
                rspecs[i] = specs[n_specs - 1 - i];
        for (size_t i = 0; i < n_hosts; i++)
                rhosts[i] = hosts[n_hosts - 1 - i];
        r = placement_compute(rspecs, n_specs, rhosts, n_hosts, NULL, 0, &other);
        if (r >= 0) {
                FUZZ_ASSERT(other.n_assignments == res->n_assignments &&
                            other.n_problems == res->n_problems);
                for (size_t i = 0; i < res->n_assignments; i++)
                        FUZZ_ASSERT(
                                streq(res->assignments[i].service, other.assignments[i].service) &&
                                res->assignments[i].instance == other.assignments[i].instance &&
                                streq(res->assignments[i].host, other.assignments[i].host));
                for (size_t i = 0; i < res->n_problems; i++)
                        FUZZ_ASSERT(streq(res->problems[i].reason, other.problems[i].reason));
        } else
                FUZZ_ASSERT(r == -ENOMEM);
        placement_result_done(&other);
        free(rspecs);
        free(rhosts);
}

void fuzz_place_and_check(const ServiceSpec *const *specs, size_t n_specs,
                          const PlacementHost *hosts, size_t n_hosts) {
        PlacementResult res = { 0 }, again = { 0 };
        int r;

        r = placement_compute(specs, n_specs, hosts, n_hosts, NULL, 0, &res);
        if (r == -ENOMEM)
                return;
        if (r < 0)
                fuzz_fail("placement refused the fleet: %d", r);
        check(specs, n_specs, hosts, n_hosts, &res);
        check_order(specs, n_specs, hosts, n_hosts, &res);

        /* Stable: placing again from the result moves nothing. */
        r = placement_compute(specs, n_specs, hosts, n_hosts, res.assignments, res.n_assignments,
                              &again);
        if (r == -ENOMEM)
                goto finish;
        FUZZ_ASSERT(r == 0);
        check(specs, n_specs, hosts, n_hosts, &again);
        FUZZ_ASSERT(again.n_moved == 0 && again.n_assignments == res.n_assignments);
        for (size_t i = 0; i < res.n_assignments; i++)
                FUZZ_ASSERT(streq(res.assignments[i].service, again.assignments[i].service) &&
                            res.assignments[i].instance == again.assignments[i].instance &&
                            streq(res.assignments[i].host, again.assignments[i].host));
finish:
        placement_result_done(&res);
        placement_result_done(&again);
}
