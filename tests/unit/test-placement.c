/* SPDX-License-Identifier: MIT */
/* Placement: every rule of placement.h checked on thousands of generated
 * fleets (fixed seeds) against a slow, literal model of the rules, the
 * stability promises checked by perturbing those fleets, and a hand-written
 * case for each rule and each kind of problem. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "placement.h"
#include "tap.h"

#define G (UINT64_C(1) << 30)
#define M (UINT64_C(1) << 20)

#define N_FLEETS 2500
#define MAX_HOSTS 32
#define MAX_SERVICES 8
#define MAX_HOST_LABELS 4
#define MAX_REQUIRE 2
#define MAX_CURRENT 64

/* ---- randomness: splitmix64, seeded per fleet so a failure names its fleet ---- */

static uint64_t rng_state;
static uint64_t fleet_seed;

static uint64_t rnd(void) {
        uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint32_t rnd_below(uint32_t n) {
        return n == 0 ? 0 : (uint32_t) (rnd() % n);
}

static bool chance(unsigned percent) {
        return rnd_below(100) < percent;
}

static void seed(uint64_t s) {
        fleet_seed = s;
        rng_state = s * UINT64_C(0x2545f4914f6cdd1d) + 1;
}

/* Like ASSERT_TRUE, but names the fleet so a failure can be replayed. */
#define CHECK(e)                                                                                   \
        do {                                                                                       \
                if (!(e)) {                                                                        \
                        printf("# fleet seed %" PRIu64 "\n", fleet_seed);                          \
                        ASSERT_TRUE(e);                                                            \
                }                                                                                  \
        } while (0)

/* ---- fleets: hosts, specs and a current placement, all in one struct ---- */

typedef struct Fleet {
        PlacementHost hosts[MAX_HOSTS];
        size_t n_hosts;
        char host_ids[MAX_HOSTS][16];
        SpecLabel host_labels[MAX_HOSTS][MAX_HOST_LABELS];

        ServiceSpec specs[MAX_SERVICES];
        const ServiceSpec *services[MAX_SERVICES];
        size_t n_services;
        char names[MAX_SERVICES][16];
        SpecLabel require[MAX_SERVICES][MAX_REQUIRE];

        Assignment current[MAX_CURRENT];
        size_t n_current;
} Fleet;

static char *const racks[] = { "r0", "r1", "r2", "r3", "r4", "r5" };
static char *const zones[] = { "eu", "us", "ap" };
static char *const roles[] = { "gateway", "worker", "db" };

static void random_name(char *buf, size_t len, const char *prefix) {
        snprintf(buf, len, "%s%c%c%c", prefix, 'a' + rnd_below(26), 'a' + rnd_below(26),
                 'a' + rnd_below(26));
}

static bool host_id_taken(const Fleet *f, size_t upto, const char *id) {
        for (size_t i = 0; i < upto; i++)
                if (streq(f->host_ids[i], id))
                        return true;
        return false;
}

static void fleet_add_host(Fleet *f, bool schedulable, uint64_t memory) {
        size_t k = f->n_hosts++;
        PlacementHost *h = f->hosts + k;
        SpecLabel *l = f->host_labels[k];
        size_t n = 0;

        assert(k < MAX_HOSTS);
        do
                random_name(f->host_ids[k], sizeof f->host_ids[k], "h-");
        while (host_id_taken(f, k, f->host_ids[k]));

        if (chance(70))
                l[n++] = (SpecLabel){ "rack", racks[rnd_below(ELEMENTSOF(racks))] };
        if (chance(70))
                l[n++] = (SpecLabel){ "zone", zones[rnd_below(ELEMENTSOF(zones))] };
        if (chance(50))
                l[n++] = (SpecLabel){ "role", roles[rnd_below(ELEMENTSOF(roles))] };
        if (chance(30))
                l[n++] = (SpecLabel){ "ssd", "yes" };

        *h = (PlacementHost){
                .id = f->host_ids[k],
                .schedulable = schedulable,
                .labels = l,
                .n_labels = n,
                .memory_total = memory,
        };
}

static uint64_t random_host_memory(void) {
        static const uint64_t sizes[] = { 2 * G, 4 * G, 8 * G, 16 * G, 32 * G };

        return chance(15) ? 0 : sizes[rnd_below(ELEMENTSOF(sizes))];
}

static uint64_t random_service_memory(void) {
        static const uint64_t sizes[] = { 256 * M, 512 * M, 1 * G, 2 * G, 4 * G, 8 * G };

        return chance(50) ? 0 : sizes[rnd_below(ELEMENTSOF(sizes))];
}

static void random_require(SpecLabel *l, size_t *n) {
        static const SpecLabel pool[] = {
                { "role", "gateway" }, { "role", "worker" }, { "zone", "eu" },
                { "zone", "us" },      { "ssd", "yes" },     { "role", "quantum" },
        };
        unsigned r = rnd_below(100);

        *n = r < 50 ? 0 : r < 85 ? 1 : 2;
        for (size_t i = 0; i < *n; i++)
                l[i] = pool[rnd_below(ELEMENTSOF(pool))];
}

static char *random_spread(void) {
        unsigned r = rnd_below(100);

        return r < 50 ? NULL : r < 85 ? "rack" : "zone";
}

static uint32_t random_count(ServiceKind kind) {
        switch (kind) {
        case SERVICE_SINGLETON:
                return 1;
        case SERVICE_STATELESS:
                return rnd_below(13);
        default:
                return 1 + rnd_below(10);
        }
}

static void fleet_add_service(Fleet *f) {
        size_t k = f->n_services++;
        ServiceSpec *s = f->specs + k;
        bool taken;

        assert(k < MAX_SERVICES);
        do {
                random_name(f->names[k], sizeof f->names[k], "svc-");
                taken = false;
                for (size_t i = 0; i < k; i++)
                        taken = taken || streq(f->names[i], f->names[k]);
        } while (taken);

        *s = (ServiceSpec){
                .name = f->names[k],
                .kind = (ServiceKind) rnd_below(_SERVICE_KIND_MAX),
                .max_per_host = chance(50) ? 0 : 1 + rnd_below(3),
                .require_labels = f->require[k],
                .spread = random_spread(),
                .memory = random_service_memory(),
        };
        s->count = random_count(s->kind);
        random_require(f->require[k], &s->n_require_labels);
        f->services[k] = s;
}

static uint32_t count_of(const ServiceSpec *s) {
        return s->kind == SERVICE_SINGLETON ? 1 : s->count;
}

/* A `current` of anything a confused controller might hold: real entries,
 * ghosts of deleted services, ordinals past the count, unknown hosts,
 * duplicates. */
static void fleet_random_current(Fleet *f) {
        f->n_current = rnd_below(41);
        for (size_t i = 0; i < f->n_current; i++) {
                const ServiceSpec *s = f->services[rnd_below((uint32_t) f->n_services)];
                Assignment *a = f->current + i;

                a->service = chance(90) ? s->name : "ghost";
                a->instance = rnd_below(count_of(s) + 2);
                a->host = chance(85)   ? f->hosts[rnd_below((uint32_t) f->n_hosts)].id
                          : chance(90) ? "gone-host"
                                       : NULL;
        }
}

static void fleet_generate(Fleet *f, uint64_t s) {
        size_t n_hosts, n_services;

        seed(s);
        *f = (Fleet){ 0 };
        n_hosts = 1 + rnd_below(30);
        n_services = 1 + rnd_below(8);
        for (size_t i = 0; i < n_hosts; i++)
                fleet_add_host(f, chance(85), random_host_memory());
        for (size_t i = 0; i < n_services; i++)
                fleet_add_service(f);
        fleet_random_current(f);
}

static int fleet_compute(const Fleet *f, const Assignment *current, size_t n_current,
                         PlacementResult *ret) {
        return placement_compute(f->services, f->n_services, f->hosts, f->n_hosts, current,
                                 n_current, ret);
}

/* ---- an independent, slow reading of the rules ---- */

static uint64_t fnv1a(const void *data, size_t n) {
        const unsigned char *b = data;
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (size_t i = 0; i < n; i++)
                h = (h ^ b[i]) * UINT64_C(0x100000001b3);
        return h;
}

/* Rule 2's tie-break: the service and the host, not the instance. */
static uint64_t tie_hash(const char *service, const char *host) {
        char buf[256];
        int n;

        n = snprintf(buf, sizeof buf, "%s%c%s", service, 0, host);
        assert(n > 0 && (size_t) n < sizeof buf);
        return fnv1a(buf, (size_t) n);
}

static bool has_labels(const PlacementHost *h, const SpecLabel *l, size_t n) {
        for (size_t i = 0; i < n; i++) {
                size_t j;

                for (j = 0; j < h->n_labels; j++)
                        if (streq(h->labels[j].key, l[i].key) &&
                            streq(h->labels[j].value, l[i].value))
                                break;
                if (j == h->n_labels)
                        return false;
        }
        return true;
}

static const char *label_value(const PlacementHost *h, const char *key) {
        for (size_t j = 0; j < h->n_labels; j++)
                if (streq(h->labels[j].key, key))
                        return h->labels[j].value;
        return "";
}

static const ServiceSpec *spec_by_name(const ServiceSpec *const *s, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(s[i]->name, name))
                        return s[i];
        return NULL;
}

static const Assignment *find_assignment(const PlacementResult *r, const char *service,
                                         uint32_t instance) {
        for (size_t i = 0; i < r->n_assignments; i++)
                if (streq(r->assignments[i].service, service) &&
                    r->assignments[i].instance == instance)
                        return r->assignments + i;
        return NULL;
}

static const PlacementProblem *find_problem(const PlacementResult *r, const char *service,
                                            uint32_t instance) {
        for (size_t i = 0; i < r->n_problems; i++)
                if (streq(r->problems[i].service, service) && r->problems[i].instance == instance)
                        return r->problems + i;
        return NULL;
}

static int cmp_assignment(const char *s1, uint32_t i1, const char *s2, uint32_t i2) {
        int c = strcmp(s1, s2);

        return c != 0 ? c : i1 < i2 ? -1 : i1 > i2 ? 1 : 0;
}

/* What must hold of any result, whatever the current placement was: each
 * instance placed at most once and either placed or reported, assignments
 * borrowing the inputs' strings, every constraint satisfied. */
static void check_invariants(const ServiceSpec *const *services, size_t n_services,
                             const PlacementHost *hosts, size_t n_hosts, const PlacementResult *r) {
        _cleanup_free_ uint64_t *used = calloc(n_hosts + 1, sizeof(uint64_t));
        _cleanup_free_ uint32_t *same = calloc(n_hosts + 1, sizeof(uint32_t));
        size_t total = 0;

        ASSERT_NOT_NULL(used);
        ASSERT_NOT_NULL(same);
        for (size_t i = 0; i < n_services; i++)
                total += count_of(services[i]);
        CHECK(r->n_assignments + r->n_problems == total);

        for (size_t i = 0; i < r->n_assignments; i++) {
                const Assignment *a = r->assignments + i;
                const ServiceSpec *s = NULL;
                size_t h = n_hosts;

                /* Sorted strictly: nothing placed twice. */
                if (i > 0)
                        CHECK(cmp_assignment(r->assignments[i - 1].service,
                                             r->assignments[i - 1].instance, a->service,
                                             a->instance) < 0);
                for (size_t k = 0; k < n_services; k++)
                        if (services[k]->name == a->service)
                                s = services[k];
                for (size_t k = 0; k < n_hosts; k++)
                        if (hosts[k].id == a->host)
                                h = k;
                CHECK(s);           /* borrowed from the spec */
                CHECK(h < n_hosts); /* borrowed from the host */
                CHECK(a->instance < count_of(s));
                CHECK(!find_problem(r, a->service, a->instance));

                CHECK(hosts[h].schedulable);
                CHECK(has_labels(hosts + h, s->require_labels, s->n_require_labels));
                if (i == 0 || !streq(r->assignments[i - 1].service, a->service))
                        memset(same, 0, (n_hosts + 1) * sizeof(uint32_t));
                same[h]++;
                CHECK(s->max_per_host == 0 || same[h] <= s->max_per_host);
                used[h] += s->memory;
                /* A host of unknown memory takes no Memory= service anew, but
                 * keeps what it has. */
                CHECK(used[h] <= hosts[h].memory_total || used[h] == 0 ||
                      hosts[h].memory_total == 0);
        }

        for (size_t i = 0; i < r->n_problems; i++) {
                const PlacementProblem *p = r->problems + i;
                const ServiceSpec *s = spec_by_name(services, n_services, p->service);

                if (i > 0)
                        CHECK(cmp_assignment(r->problems[i - 1].service,
                                             r->problems[i - 1].instance, p->service,
                                             p->instance) < 0);
                CHECK(s && s->name == p->service);
                CHECK(p->instance < count_of(s));
                CHECK(p->kind == PLACEMENT_NO_HOST || p->kind == PLACEMENT_NO_CAPACITY);
                CHECK(p->reason && p->reason[0]);
        }
}

static bool listed(const Assignment *cur, size_t n_cur, const char *service, uint32_t instance,
                   const char *host) {
        for (size_t i = 0; i < n_cur; i++)
                if (streq_ptr(cur[i].service, service) && cur[i].instance == instance &&
                    (!host || streq_ptr(cur[i].host, host)))
                        return true;
        return false;
}

typedef struct Model {
        const ServiceSpec *const *services;
        size_t n_services;
        const PlacementHost *hosts;
        size_t n_hosts;
        size_t order[MAX_HOSTS]; /* host indices by id */
        const ServiceSpec *sorted[MAX_SERVICES];
        uint64_t used[MAX_HOSTS];
        size_t total[MAX_HOSTS];
        uint32_t same[MAX_HOSTS]; /* of the service being looked at */
} Model;

static bool model_fits(const Model *m, const ServiceSpec *s, size_t h) {
        return m->hosts[h].schedulable &&
               has_labels(m->hosts + h, s->require_labels, s->n_require_labels);
}

static bool model_room(const Model *m, const ServiceSpec *s, size_t h) {
        return s->max_per_host == 0 || m->same[h] < s->max_per_host;
}

static bool model_memory(const Model *m, const ServiceSpec *s, size_t h) {
        return s->memory == 0 || m->used[h] + s->memory <= m->hosts[h].memory_total;
}

static bool model_eligible(const Model *m, const ServiceSpec *s, size_t h) {
        return model_fits(m, s, h) && model_room(m, s, h) && model_memory(m, s, h);
}

/* Rule 1: a host of unknown memory keeps what it has. */
static bool model_keepable(const Model *m, const ServiceSpec *s, size_t h) {
        return model_fits(m, s, h) && model_room(m, s, h) &&
               (m->hosts[h].memory_total == 0 || model_memory(m, s, h));
}

static void model_add(Model *m, const ServiceSpec *s, size_t h) {
        m->used[h] += s->memory;
        m->total[h]++;
        m->same[h]++;
}

static size_t model_spread(const Model *m, const ServiceSpec *s, size_t h) {
        size_t n = 0;

        if (!s->spread)
                return 0;
        for (size_t k = 0; k < m->n_hosts; k++)
                if (streq(label_value(m->hosts + k, s->spread),
                          label_value(m->hosts + h, s->spread)))
                        n += m->same[k];
        return n;
}

/* Rule 2 read literally: the lexicographic minimum of the four keys. */
static bool model_better(const Model *m, const ServiceSpec *s, uint32_t instance, size_t a,
                         size_t b) {
        size_t sa = model_spread(m, s, a), sb = model_spread(m, s, b);

        if (sa != sb)
                return sa < sb;
        if (m->same[a] != m->same[b])
                return m->same[a] < m->same[b];
        if (m->total[a] != m->total[b])
                return m->total[a] < m->total[b];
        return tie_hash(s->name, m->hosts[a].id) < tie_hash(s->name, m->hosts[b].id);
}

static void model_init(Model *m, const ServiceSpec *const *services, size_t n_services,
                       const PlacementHost *hosts, size_t n_hosts) {
        *m = (Model){
                .services = services, .n_services = n_services, .hosts = hosts, .n_hosts = n_hosts
        };
        assert(n_hosts <= MAX_HOSTS && n_services <= MAX_SERVICES);
        /* Insertion sorts: small, and obviously right. */
        for (size_t i = 0; i < n_hosts; i++) {
                size_t j = i;

                for (; j > 0 && strcmp(hosts[m->order[j - 1]].id, hosts[i].id) > 0; j--)
                        m->order[j] = m->order[j - 1];
                m->order[j] = i;
        }
        for (size_t i = 0; i < n_services; i++) {
                size_t j = i;

                for (; j > 0 && strcmp(m->sorted[j - 1]->name, services[i]->name) > 0; j--)
                        m->sorted[j] = m->sorted[j - 1];
                m->sorted[j] = services[i];
        }
}

static void check_problem(const Model *m, const ServiceSpec *s, const PlacementProblem *p) {
        bool any_sched = false, any_fits = false, any_room = false;

        for (size_t h = 0; h < m->n_hosts; h++) {
                any_sched = any_sched || m->hosts[h].schedulable;
                any_fits = any_fits || model_fits(m, s, h);
                any_room = any_room || (model_fits(m, s, h) && model_room(m, s, h));
        }
        CHECK(p);
        if (any_room) {
                CHECK(p->kind == PLACEMENT_NO_CAPACITY);
                CHECK(strstr(p->reason, "Memory="));
        } else {
                CHECK(p->kind == PLACEMENT_NO_HOST);
                if (m->n_hosts == 0)
                        CHECK(streq(p->reason, "no host is known"));
                else if (!any_sched)
                        CHECK(strstr(p->reason, "schedulable"));
                else if (!any_fits)
                        CHECK(strstr(p->reason, "label"));
                else
                        CHECK(strstr(p->reason, "MaxPerHost="));
        }
}

/* Replays rules 1–3 step by step on a model and checks that the result made
 * the same decision at every step: what was kept, where each other instance
 * went, that an instance is left unplaced only when no host was eligible at
 * its turn, and what n_moved says. */
static void check_rules(const ServiceSpec *const *services, size_t n_services,
                        const PlacementHost *hosts, size_t n_hosts, const Assignment *cur,
                        size_t n_cur, const PlacementResult *r) {
        Model m;
        bool kept[MAX_SERVICES][128] = { { false } };
        size_t moved = 0;

        model_init(&m, services, n_services, hosts, n_hosts);

        /* Rule 1. */
        for (size_t si = 0; si < n_services; si++) {
                const ServiceSpec *s = m.sorted[si];

                memset(m.same, 0, sizeof m.same);
                assert(count_of(s) <= ELEMENTSOF(kept[0]));
                for (uint32_t i = 0; i < count_of(s); i++) {
                        const Assignment *got = find_assignment(r, s->name, i);
                        size_t keep = SIZE_MAX;

                        for (size_t k = 0; k < n_hosts && keep == SIZE_MAX; k++) {
                                size_t h = m.order[k];

                                if (listed(cur, n_cur, s->name, i, hosts[h].id) &&
                                    model_keepable(&m, s, h))
                                        keep = h;
                        }
                        if (keep == SIZE_MAX) {
                                CHECK(!got || !listed(cur, n_cur, s->name, i, got->host));
                                continue;
                        }
                        CHECK(got && got->host == hosts[keep].id);
                        kept[si][i] = true;
                        model_add(&m, s, keep);
                }
        }

        /* Rules 2 and 3. */
        for (size_t si = 0; si < n_services; si++) {
                const ServiceSpec *s = m.sorted[si];

                memset(m.same, 0, sizeof m.same);
                for (uint32_t i = 0; i < count_of(s); i++)
                        if (kept[si][i])
                                for (size_t h = 0; h < n_hosts; h++)
                                        if (find_assignment(r, s->name, i)->host == hosts[h].id)
                                                m.same[h]++;

                for (uint32_t i = 0; i < count_of(s); i++) {
                        const Assignment *got = find_assignment(r, s->name, i);
                        size_t best = SIZE_MAX;

                        if (kept[si][i])
                                continue;
                        for (size_t h = 0; h < n_hosts; h++)
                                if (model_eligible(&m, s, h) &&
                                    (best == SIZE_MAX || model_better(&m, s, i, h, best)))
                                        best = h;
                        if (best == SIZE_MAX) {
                                CHECK(!got);
                                CHECK(find_problem(r, s->name, i));
                                if (listed(cur, n_cur, s->name, i, NULL))
                                        moved++;
                                continue;
                        }
                        CHECK(got && got->host == hosts[best].id);
                        model_add(&m, s, best);
                        moved++;
                }
        }
        CHECK(r->n_moved == moved);

        /* Problems are diagnosed against the fleet as the result leaves it. */
        for (size_t si = 0; si < n_services; si++) {
                const ServiceSpec *s = m.sorted[si];

                memset(m.same, 0, sizeof m.same);
                for (size_t i = 0; i < r->n_assignments; i++)
                        if (r->assignments[i].service == s->name)
                                for (size_t h = 0; h < n_hosts; h++)
                                        m.same[h] += r->assignments[i].host == hosts[h].id;
                for (uint32_t i = 0; i < count_of(s); i++)
                        if (!find_assignment(r, s->name, i))
                                check_problem(&m, s, find_problem(r, s->name, i));
        }
}

static void check_same_result(const PlacementResult *a, const PlacementResult *b) {
        CHECK(a->n_assignments == b->n_assignments);
        CHECK(a->n_problems == b->n_problems);
        CHECK(a->n_moved == b->n_moved);
        for (size_t i = 0; i < a->n_assignments; i++) {
                CHECK(streq(a->assignments[i].service, b->assignments[i].service));
                CHECK(a->assignments[i].instance == b->assignments[i].instance);
                CHECK(streq(a->assignments[i].host, b->assignments[i].host));
        }
        for (size_t i = 0; i < a->n_problems; i++) {
                CHECK(streq(a->problems[i].service, b->problems[i].service));
                CHECK(a->problems[i].instance == b->problems[i].instance);
                CHECK(a->problems[i].kind == b->problems[i].kind);
                CHECK(streq(a->problems[i].reason, b->problems[i].reason));
        }
}

#define SHUFFLE(a, n)                                                                              \
        do {                                                                                       \
                for (size_t i_ = (n); i_ > 1; i_--) {                                              \
                        size_t j_ = rnd_below((uint32_t) i_);                                      \
                        __typeof__((a)[0]) t_ = (a)[i_ - 1];                                       \
                        (a)[i_ - 1] = (a)[j_];                                                     \
                        (a)[j_] = t_;                                                              \
                }                                                                                  \
        } while (0)

/* Determinism: the same fleet with services, hosts, their labels and the
 * current placement in another order gives the identical result. */
static void check_shuffled(const Fleet *f, const Assignment *cur, size_t n_cur,
                           const PlacementResult *expected) {
        const ServiceSpec *services[MAX_SERVICES];
        PlacementHost hosts[MAX_HOSTS];
        SpecLabel labels[MAX_HOSTS][MAX_HOST_LABELS];
        Assignment current[MAX_CURRENT * 2];
        PlacementResult r = { 0 };

        assert(n_cur <= ELEMENTSOF(current));
        memcpy(services, f->services, f->n_services * sizeof(services[0]));
        memcpy(hosts, f->hosts, f->n_hosts * sizeof(hosts[0]));
        if (n_cur > 0)
                memcpy(current, cur, n_cur * sizeof(current[0]));
        SHUFFLE(services, f->n_services);
        SHUFFLE(hosts, f->n_hosts);
        SHUFFLE(current, n_cur);
        for (size_t h = 0; h < f->n_hosts; h++) {
                memcpy(labels[h], hosts[h].labels, hosts[h].n_labels * sizeof(SpecLabel));
                SHUFFLE(labels[h], hosts[h].n_labels);
                hosts[h].labels = labels[h];
        }

        ASSERT_OK(
                placement_compute(services, f->n_services, hosts, f->n_hosts, current, n_cur, &r));
        check_same_result(expected, &r);
        placement_result_done(&r);
}

/* Everything above, for one fleet and one current placement. */
static void check_all(const Fleet *f, const Assignment *cur, size_t n_cur,
                      const PlacementResult *r) {
        check_invariants(f->services, f->n_services, f->hosts, f->n_hosts, r);
        check_rules(f->services, f->n_services, f->hosts, f->n_hosts, cur, n_cur, r);
        check_shuffled(f, cur, n_cur, r);
}

/* ---- properties over generated fleets ---- */

TEST(generated_fleets_follow_the_rules) {
        size_t placed = 0, problems = 0, capacity = 0, moved = 0;

        for (uint64_t k = 0; k < N_FLEETS; k++) {
                Fleet f;
                PlacementResult fresh = { 0 }, r = { 0 };

                fleet_generate(&f, 1000 + k);
                ASSERT_OK(fleet_compute(&f, NULL, 0, &fresh));
                check_all(&f, NULL, 0, &fresh);
                ASSERT_OK(fleet_compute(&f, f.current, f.n_current, &r));
                check_all(&f, f.current, f.n_current, &r);

                placed += r.n_assignments;
                problems += r.n_problems;
                moved += r.n_moved;
                for (size_t i = 0; i < r.n_problems; i++)
                        capacity += r.problems[i].kind == PLACEMENT_NO_CAPACITY;
                placement_result_done(&fresh);
                placement_result_done(&r);
        }
        /* The generator must reach every branch, or the checks above prove little. */
        printf("# %zu placed, %zu unplaced (%zu for memory), %zu moved\n", placed, problems,
               capacity, moved);
        ASSERT_GT_INT(placed, 10 * N_FLEETS);
        ASSERT_GT_INT(problems, N_FLEETS);
        ASSERT_GT_INT(capacity, N_FLEETS / 10);
}

/* Assignments of `before` for which keep(a) holds are all in `after`, on the
 * same host; returns how many there were. */
static size_t check_unmoved(const PlacementResult *before, const PlacementResult *after,
                            bool (*keep)(const Assignment *a, const void *userdata),
                            const void *userdata) {
        size_t n = 0;

        for (size_t i = 0; i < before->n_assignments; i++) {
                const Assignment *a = before->assignments + i, *b;

                if (!keep(a, userdata))
                        continue;
                b = find_assignment(after, a->service, a->instance);
                CHECK(b && streq(a->host, b->host));
                n++;
        }
        return n;
}

static bool always(const Assignment *a, const void *userdata) {
        return true;
}

static bool other_service(const Assignment *a, const void *userdata) {
        return !streq(a->service, (const char *) userdata);
}

static bool other_host(const Assignment *a, const void *userdata) {
        return !streq(a->host, (const char *) userdata);
}

TEST(recomputing_moves_nothing) {
        for (uint64_t k = 0; k < N_FLEETS; k++) {
                Fleet f;
                PlacementResult r1 = { 0 }, r2 = { 0 };

                fleet_generate(&f, 5000 + k);
                ASSERT_OK(fleet_compute(&f, f.current, f.n_current, &r1));
                ASSERT_OK(fleet_compute(&f, r1.assignments, r1.n_assignments, &r2));
                CHECK(r2.n_moved == 0);
                check_same_result(&(PlacementResult){ .assignments = r1.assignments,
                                                      .n_assignments = r1.n_assignments,
                                                      .problems = r1.problems,
                                                      .n_problems = r1.n_problems },
                                  &r2);
                check_all(&f, r1.assignments, r1.n_assignments, &r2);
                placement_result_done(&r1);
                placement_result_done(&r2);
        }
}

TEST(adding_a_host_moves_nothing) {
        size_t used_new = 0;

        for (uint64_t k = 0; k < N_FLEETS; k++) {
                Fleet f;
                PlacementResult r1 = { 0 }, r2 = { 0 };

                fleet_generate(&f, 9000 + k);
                ASSERT_OK(fleet_compute(&f, f.current, f.n_current, &r1));
                fleet_add_host(&f, chance(90), random_host_memory());
                ASSERT_OK(fleet_compute(&f, r1.assignments, r1.n_assignments, &r2));
                CHECK(check_unmoved(&r1, &r2, always, NULL) == r1.n_assignments);
                /* Only instances unplaced before may have gone to the new host. */
                CHECK(r2.n_moved == r2.n_assignments - r1.n_assignments);
                used_new += r2.n_moved;
                check_all(&f, r1.assignments, r1.n_assignments, &r2);
                placement_result_done(&r1);
                placement_result_done(&r2);
        }
        ASSERT_GT_INT(used_new, 0);
}

/* One change of one service: its count, or any of its constraints (Memory=
 * only downwards: see the limit documented in placement.h). */
static void mutate_service(Fleet *f, ServiceSpec *s) {
        switch (rnd_below(6)) {
        case 0:
                if (s->kind != SERVICE_SINGLETON)
                        s->count = s->kind == SERVICE_STATELESS ? rnd_below(15) : 1 + rnd_below(12);
                break;
        case 1:
                s->max_per_host = rnd_below(4);
                break;
        case 2:
                random_require(s->require_labels, &s->n_require_labels);
                break;
        case 3:
                s->spread = random_spread();
                break;
        case 4:
                s->memory = s->memory ? rnd_below((uint32_t) (s->memory / M)) * M : 0;
                break;
        default:
                if (s->kind != SERVICE_SINGLETON)
                        s->count = rnd_below(15) + (s->kind == SERVICE_SHARDED);
                s->max_per_host = rnd_below(4);
                random_require(s->require_labels, &s->n_require_labels);
                s->spread = random_spread();
                break;
        }
}

TEST(changing_one_service_moves_no_other) {
        for (uint64_t k = 0; k < N_FLEETS; k++) {
                Fleet f;
                PlacementResult r1 = { 0 }, r2 = { 0 };
                ServiceSpec *s;

                fleet_generate(&f, 13000 + k);
                ASSERT_OK(fleet_compute(&f, f.current, f.n_current, &r1));
                s = f.specs + rnd_below((uint32_t) f.n_services);
                mutate_service(&f, s);
                ASSERT_OK(fleet_compute(&f, r1.assignments, r1.n_assignments, &r2));
                check_unmoved(&r1, &r2, other_service, s->name);
                check_all(&f, r1.assignments, r1.n_assignments, &r2);
                placement_result_done(&r1);
                placement_result_done(&r2);
        }
}

/* Drain step by step: a host that keeps (not schedulable) holds on to what
 * `current` still lists on it, takes nothing new, and only the instances left
 * out of `current` move. */
TEST(a_draining_host_releases_only_what_it_is_told) {
        for (uint64_t k = 0; k < N_FLEETS; k++) {
                Fleet f;
                PlacementResult r1 = { 0 }, r2 = { 0 };
                _cleanup_free_ Assignment *cur = NULL;
                size_t h, n_cur = 0, released = 0;
                const char *draining;

                fleet_generate(&f, 23000 + k);
                ASSERT_OK(fleet_compute(&f, f.current, f.n_current, &r1));
                if (r1.n_assignments == 0) {
                        placement_result_done(&r1);
                        continue;
                }
                draining = r1.assignments[rnd_below((uint32_t) r1.n_assignments)].host;
                for (h = 0; f.hosts[h].id != draining; h++)
                        ;
                f.hosts[h].schedulable = false;
                f.hosts[h].keeps = true;
                cur = calloc(r1.n_assignments, sizeof(Assignment));
                ASSERT_TRUE(cur);
                for (size_t i = 0; i < r1.n_assignments; i++) {
                        if (streq(r1.assignments[i].host, draining) && chance(40)) {
                                released++;
                                continue;
                        }
                        cur[n_cur++] = r1.assignments[i];
                }
                ASSERT_OK(fleet_compute(&f, cur, n_cur, &r2));
                /* Everything still listed stays where it was, on the draining
                 * host too; the released ones are not on it any more. */
                for (size_t i = 0; i < n_cur; i++) {
                        const Assignment *b = find_assignment(&r2, cur[i].service, cur[i].instance);
                        CHECK(b && streq(b->host, cur[i].host));
                }
                for (size_t i = 0; i < r2.n_assignments; i++)
                        if (streq(r2.assignments[i].host, draining))
                                CHECK(listed(cur, n_cur, r2.assignments[i].service,
                                             r2.assignments[i].instance, draining));
                /* A released instance moves unless nothing else takes it
                 * (then it is a problem); nothing else moves. */
                for (size_t i = 0; i < r1.n_assignments; i++)
                        if (!listed(cur, n_cur, r1.assignments[i].service,
                                    r1.assignments[i].instance, NULL) &&
                            !find_assignment(&r2, r1.assignments[i].service,
                                             r1.assignments[i].instance))
                                released--;
                CHECK(r2.n_moved == released);
                placement_result_done(&r1);
                placement_result_done(&r2);
        }
}

TEST(losing_a_host_moves_only_its_instances) {
        size_t evicted = 0;

        for (uint64_t k = 0; k < N_FLEETS; k++) {
                Fleet f;
                PlacementResult r1 = { 0 }, r2 = { 0 };
                size_t h, on_it;
                const char *lost;

                fleet_generate(&f, 17000 + k);
                ASSERT_OK(fleet_compute(&f, f.current, f.n_current, &r1));
                /* Mostly a host that runs something. */
                lost = r1.n_assignments > 0 && chance(90)
                               ? r1.assignments[rnd_below((uint32_t) r1.n_assignments)].host
                               : f.hosts[rnd_below((uint32_t) f.n_hosts)].id;
                for (h = 0; f.hosts[h].id != lost; h++)
                        ;
                on_it = 0;
                for (size_t i = 0; i < r1.n_assignments; i++)
                        on_it += streq(r1.assignments[i].host, lost);

                if (chance(50)) {
                        f.hosts[h].schedulable = false; /* down or drained */
                } else {
                        memmove(f.hosts + h, f.hosts + h + 1,
                                (f.n_hosts - h - 1) * sizeof(PlacementHost));
                        f.n_hosts--;
                }
                ASSERT_OK(fleet_compute(&f, r1.assignments, r1.n_assignments, &r2));
                CHECK(check_unmoved(&r1, &r2, other_host, lost) == r1.n_assignments - on_it);
                for (size_t i = 0; i < r2.n_assignments; i++)
                        CHECK(!streq(r2.assignments[i].host, lost));
                /* Nothing else moves, and nothing unplaced before gets placed:
                 * losing a host frees no room anywhere else. */
                CHECK(r2.n_moved == on_it);
                CHECK(r2.n_assignments <= r1.n_assignments);
                evicted += on_it;
                check_all(&f, r1.assignments, r1.n_assignments, &r2);
                placement_result_done(&r1);
                placement_result_done(&r2);
        }
        ASSERT_GT_INT(evicted, N_FLEETS);
}

TEST(spread_takes_every_value_before_doubling_up) {
        for (uint64_t k = 0; k < N_FLEETS; k++) {
                Fleet f = { 0 };
                PlacementResult r = { 0 };
                size_t per_rack[ELEMENTSOF(racks)] = { 0 }, n_racks = 0, lo = SIZE_MAX, hi = 0;
                uint32_t n_values;

                seed(21000 + k);
                n_values = 2 + rnd_below(ELEMENTSOF(racks) - 1);
                for (size_t i = 1 + rnd_below(30); i > 0; i--) {
                        fleet_add_host(&f, true, 64 * G);
                        /* Every host in exactly one rack, some racks much bigger. */
                        f.host_labels[f.n_hosts - 1][0] =
                                (SpecLabel){ "rack", racks[rnd_below(n_values)] };
                        f.hosts[f.n_hosts - 1].n_labels = 1;
                }
                fleet_add_service(&f);
                f.specs[0] = (ServiceSpec){ .name = f.names[0],
                                            .kind = SERVICE_STATELESS,
                                            .count = 1 + rnd_below(20),
                                            .spread = "rack" };
                for (size_t i = 0; i < ELEMENTSOF(racks); i++)
                        for (size_t h = 0; h < f.n_hosts; h++)
                                if (streq(f.hosts[h].labels[0].value, racks[i])) {
                                        n_racks++;
                                        break;
                                }

                ASSERT_OK(fleet_compute(&f, NULL, 0, &r));
                CHECK(r.n_assignments == f.specs[0].count);
                for (size_t i = 0; i < r.n_assignments; i++)
                        for (size_t h = 0; h < f.n_hosts; h++)
                                if (f.hosts[h].id == r.assignments[i].host)
                                        per_rack[f.hosts[h].labels[0].value[1] - '0']++;
                for (size_t i = 0; i < ELEMENTSOF(racks); i++) {
                        bool exists = false;

                        for (size_t h = 0; h < f.n_hosts; h++)
                                exists = exists || streq(f.hosts[h].labels[0].value, racks[i]);
                        if (!exists)
                                continue;
                        lo = MIN(lo, per_rack[i]);
                        hi = MAX(hi, per_rack[i]);
                }
                /* count ≤ racks: all distinct; more: as even as can be. */
                CHECK(hi - lo <= 1);
                if (f.specs[0].count <= n_racks)
                        CHECK(hi == 1);
                check_all(&f, NULL, 0, &r);
                placement_result_done(&r);
        }
}

TEST(one_unconstrained_service_is_balanced) {
        for (uint64_t k = 0; k < N_FLEETS; k++) {
                Fleet f = { 0 };
                PlacementResult r = { 0 };
                size_t per_host[MAX_HOSTS] = { 0 }, lo = SIZE_MAX, hi = 0, n_sched = 0;

                seed(25000 + k);
                for (size_t i = 1 + rnd_below(30); i > 0; i--)
                        fleet_add_host(&f, chance(85), random_host_memory());
                fleet_add_service(&f);
                f.specs[0] = (ServiceSpec){ .name = f.names[0],
                                            .kind = SERVICE_STATELESS,
                                            .count = rnd_below(100) };

                ASSERT_OK(fleet_compute(&f, NULL, 0, &r));
                for (size_t i = 0; i < r.n_assignments; i++)
                        for (size_t h = 0; h < f.n_hosts; h++)
                                per_host[h] += f.hosts[h].id == r.assignments[i].host;
                for (size_t h = 0; h < f.n_hosts; h++) {
                        if (!f.hosts[h].schedulable) {
                                CHECK(per_host[h] == 0);
                                continue;
                        }
                        n_sched++;
                        lo = MIN(lo, per_host[h]);
                        hi = MAX(hi, per_host[h]);
                }
                if (n_sched > 0) {
                        CHECK(r.n_assignments == f.specs[0].count);
                        CHECK(hi - lo <= 1);
                } else
                        CHECK(r.n_problems == f.specs[0].count);
                check_all(&f, NULL, 0, &r);
                placement_result_done(&r);
        }
}

/* ---- hand-written cases, one per rule ---- */

static ServiceSpec service(const char *name, ServiceKind kind, uint32_t count) {
        return (ServiceSpec){ .name = (char *) name, .kind = kind, .count = count };
}

static PlacementHost host(const char *id) {
        return (PlacementHost){ .id = id, .schedulable = true, .memory_total = 64 * G };
}

static const char *host_of(const PlacementResult *r, const char *service, uint32_t instance) {
        const Assignment *a = placement_result_find(r, service, instance);

        return a ? a->host : NULL;
}

TEST(problem_kind_strings_round_trip) {
        for (int k = 0; k < _PLACEMENT_PROBLEM_MAX; k++)
                ASSERT_EQ_INT(placement_problem_kind_from_string(
                                      placement_problem_kind_to_string((PlacementProblemKind) k)),
                              k);
        ASSERT_STREQ(placement_problem_kind_to_string(PLACEMENT_NO_CAPACITY), "no-capacity");
        ASSERT_EQ_INT(placement_problem_kind_from_string("no-luck"), _PLACEMENT_PROBLEM_INVALID);
        ASSERT_NULL(placement_problem_kind_to_string(_PLACEMENT_PROBLEM_MAX));
}

TEST(fnv1a_is_the_standard_one) {
        /* Published FNV-1a 64 test vectors: the tie hash is the real thing. */
        ASSERT_EQ_UINT(fnv1a("", 0), UINT64_C(0xcbf29ce484222325));
        ASSERT_EQ_UINT(fnv1a("a", 1), UINT64_C(0xaf63dc4c8601ec8c));
        ASSERT_EQ_UINT(fnv1a("foobar", 6), UINT64_C(0x85944171f73967e8));
}

TEST(labels_match) {
        SpecLabel have[] = { { "role", "gateway" }, { "zone", "eu" } };
        PlacementHost h = { .id = "a", .labels = have, .n_labels = 2 };
        SpecLabel both[] = { { "zone", "eu" }, { "role", "gateway" } };
        SpecLabel wrong[] = { { "role", "gateway" }, { "zone", "us" } };
        SpecLabel missing[] = { { "rack", "r1" } };

        ASSERT_TRUE(placement_labels_match(&h, NULL, 0));
        ASSERT_TRUE(placement_labels_match(&h, both, 2));
        ASSERT_TRUE(placement_labels_match(&h, both + 1, 1));
        ASSERT_FALSE(placement_labels_match(&h, wrong, 2));
        ASSERT_FALSE(placement_labels_match(&h, missing, 1));
        h.n_labels = 0;
        ASSERT_TRUE(placement_labels_match(&h, NULL, 0));
        ASSERT_FALSE(placement_labels_match(&h, both, 1));
}

TEST(empty_inputs) {
        ServiceSpec s = service("web", SERVICE_STATELESS, 2);
        const ServiceSpec *svcs[] = { &s };
        PlacementResult r = { 0 };

        ASSERT_OK(placement_compute(NULL, 0, NULL, 0, NULL, 0, &r));
        ASSERT_EQ_UINT(r.n_assignments, 0);
        ASSERT_EQ_UINT(r.n_problems, 0);
        placement_result_done(&r);

        ASSERT_OK(placement_compute(svcs, 1, NULL, 0, NULL, 0, &r));
        ASSERT_EQ_UINT(r.n_assignments, 0);
        ASSERT_EQ_UINT(r.n_problems, 2);
        ASSERT_EQ_INT(r.problems[1].kind, PLACEMENT_NO_HOST);
        ASSERT_EQ_UINT(r.problems[1].instance, 1);
        ASSERT_STREQ(r.problems[1].reason, "no host is known");
        ASSERT_EQ_UINT(r.n_moved, 0);
        placement_result_done(&r);
}

TEST(singleton_has_one_instance_and_zero_count_none) {
        ServiceSpec one = service("core", SERVICE_SINGLETON, 5);
        ServiceSpec none = service("idle", SERVICE_STATELESS, 0);
        const ServiceSpec *svcs[] = { &one, &none };
        PlacementHost hosts[] = { host("a"), host("b") };
        PlacementResult r = { 0 };

        ASSERT_OK(placement_compute(svcs, 2, hosts, 2, NULL, 0, &r));
        ASSERT_EQ_UINT(r.n_assignments, 1);
        ASSERT_STREQ(r.assignments[0].service, "core");
        ASSERT_EQ_UINT(r.assignments[0].instance, 0);
        ASSERT_TRUE(r.assignments[0].service == one.name); /* borrowed */
        ASSERT_EQ_UINT(r.n_moved, 1);
        placement_result_done(&r);
}

TEST(valid_assignment_stays_even_when_unbalanced) {
        ServiceSpec s = service("web", SERVICE_STATELESS, 3);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b"), host("c") };
        Assignment cur[] = { { "web", 0, "c" }, { "web", 1, "c" }, { "web", 2, "c" } };
        PlacementResult r = { 0 };

        ASSERT_OK(placement_compute(svcs, 1, hosts, 3, cur, 3, &r));
        ASSERT_EQ_UINT(r.n_moved, 0);
        for (uint32_t i = 0; i < 3; i++)
                ASSERT_STREQ(host_of(&r, "web", i), "c");
        placement_result_done(&r);
}

TEST(unschedulable_host_loses_its_instances) {
        ServiceSpec s = service("web", SERVICE_STATELESS, 2);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b"), host("c") };
        Assignment cur[] = { { "web", 0, "a" }, { "web", 1, "b" } };
        PlacementResult r = { 0 };

        hosts[0].schedulable = false;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 3, cur, 2, &r));
        ASSERT_STREQ(host_of(&r, "web", 1), "b");
        /* web@1 on b already: c has none of web, so web@0 goes there. */
        ASSERT_STREQ(host_of(&r, "web", 0), "c");
        ASSERT_EQ_UINT(r.n_moved, 1);
        placement_result_done(&r);
}

TEST(host_without_the_labels_loses_its_instances) {
        SpecLabel gw[] = { { "role", "gateway" } };
        ServiceSpec s = service("edge", SERVICE_STATELESS, 1);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b") };
        Assignment cur[] = { { "edge", 0, "a" } };
        PlacementResult r = { 0 };

        s.require_labels = gw;
        s.n_require_labels = 1;
        hosts[1].labels = gw;
        hosts[1].n_labels = 1;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 2, cur, 1, &r));
        ASSERT_STREQ(host_of(&r, "edge", 0), "b");
        ASSERT_EQ_UINT(r.n_moved, 1);
        placement_result_done(&r);
}

TEST(lower_max_per_host_moves_the_highest_ordinals) {
        ServiceSpec s = service("web", SERVICE_STATELESS, 3);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b"), host("c") };
        Assignment cur[] = { { "web", 2, "a" }, { "web", 0, "a" }, { "web", 1, "a" } };
        PlacementResult r = { 0 };

        s.max_per_host = 1;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 3, cur, 3, &r));
        ASSERT_STREQ(host_of(&r, "web", 0), "a");
        ASSERT_TRUE(!streq(host_of(&r, "web", 1), "a"));
        ASSERT_TRUE(!streq(host_of(&r, "web", 2), "a"));
        ASSERT_TRUE(!streq(host_of(&r, "web", 1), host_of(&r, "web", 2)));
        ASSERT_EQ_UINT(r.n_moved, 2);
        placement_result_done(&r);
}

TEST(overfull_host_keeps_in_service_order) {
        ServiceSpec a = service("alpha", SERVICE_SINGLETON, 1);
        ServiceSpec b = service("beta", SERVICE_SINGLETON, 1);
        const ServiceSpec *svcs[] = { &b, &a };
        PlacementHost hosts[] = { host("x"), host("y") };
        Assignment cur[] = { { "beta", 0, "x" }, { "alpha", 0, "x" } };
        PlacementResult r = { 0 };

        a.memory = 4 * G;
        b.memory = 6 * G;
        hosts[0].memory_total = 8 * G; /* the host reports less than before */
        ASSERT_OK(placement_compute(svcs, 2, hosts, 2, cur, 2, &r));
        ASSERT_STREQ(host_of(&r, "alpha", 0), "x");
        ASSERT_STREQ(host_of(&r, "beta", 0), "y");
        ASSERT_EQ_UINT(r.n_moved, 1);
        placement_result_done(&r);
}

TEST(memory_counts_every_service_on_the_host) {
        ServiceSpec a = service("alpha", SERVICE_STATELESS, 3);
        ServiceSpec b = service("beta", SERVICE_STATELESS, 2);
        const ServiceSpec *svcs[] = { &a, &b };
        PlacementHost hosts[] = { host("x") };
        PlacementResult r = { 0 };

        a.memory = 2 * G;
        b.memory = 3 * G;
        hosts[0].memory_total = 10 * G;
        ASSERT_OK(placement_compute(svcs, 2, hosts, 1, NULL, 0, &r));
        /* 3 × 2G + 1 × 3G = 9G; a second beta would need 12G. */
        ASSERT_EQ_UINT(r.n_assignments, 4);
        ASSERT_EQ_UINT(r.n_problems, 1);
        ASSERT_STREQ(r.problems[0].service, "beta");
        ASSERT_EQ_UINT(r.problems[0].instance, 1);
        ASSERT_EQ_INT(r.problems[0].kind, PLACEMENT_NO_CAPACITY);
        ASSERT_STREQ(r.problems[0].reason, "Memory=3G fits on none of the 1 hosts that satisfy "
                                           "the constraints (most free: 1G)");
        placement_result_done(&r);
}

TEST(scaled_down_and_deleted_instances_disappear) {
        ServiceSpec s = service("web", SERVICE_STATELESS, 2);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b") };
        Assignment cur[] = { { "web", 0, "a" },
                             { "web", 1, "b" },
                             { "web", 2, "a" },
                             { "web", 3, "b" },
                             { "old", 0, "a" } };
        PlacementResult r = { 0 };

        ASSERT_OK(placement_compute(svcs, 1, hosts, 2, cur, ELEMENTSOF(cur), &r));
        ASSERT_EQ_UINT(r.n_assignments, 2);
        ASSERT_STREQ(host_of(&r, "web", 0), "a");
        ASSERT_STREQ(host_of(&r, "web", 1), "b");
        ASSERT_EQ_UINT(r.n_moved, 0);
        placement_result_done(&r);
}

TEST(unknown_host_in_current_is_a_move) {
        ServiceSpec s = service("web", SERVICE_STATELESS, 2);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a") };
        Assignment cur[] = { { "web", 0, "gone" }, { "web", 1, NULL } };
        PlacementResult r = { 0 };

        ASSERT_OK(placement_compute(svcs, 1, hosts, 1, cur, 2, &r));
        ASSERT_STREQ(host_of(&r, "web", 0), "a");
        ASSERT_STREQ(host_of(&r, "web", 1), "a");
        ASSERT_EQ_UINT(r.n_moved, 2);
        placement_result_done(&r);
}

TEST(duplicate_current_keeps_the_first_eligible_host_by_id) {
        ServiceSpec s = service("core", SERVICE_SINGLETON, 1);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("c"), host("b"), host("a") };
        Assignment cur[] = { { "core", 0, "c" }, { "core", 0, "b" }, { "core", 0, "a" } };
        PlacementResult r = { 0 };

        ASSERT_OK(placement_compute(svcs, 1, hosts, 3, cur, 3, &r));
        ASSERT_EQ_UINT(r.n_assignments, 1);
        ASSERT_STREQ(host_of(&r, "core", 0), "a");
        ASSERT_EQ_UINT(r.n_moved, 0);
        placement_result_done(&r);

        hosts[2].schedulable = false; /* "a" */
        ASSERT_OK(placement_compute(svcs, 1, hosts, 3, cur, 3, &r));
        ASSERT_STREQ(host_of(&r, "core", 0), "b");
        ASSERT_EQ_UINT(r.n_moved, 0);
        placement_result_done(&r);
}

TEST(ties_break_by_the_fnv_hash) {
        static const char *const ids[] = { "a", "b", "c", "d", "e" };
        PlacementHost hosts[ELEMENTSOF(ids)];
        size_t chosen[ELEMENTSOF(ids)] = { 0 }, distinct = 0;
        char name[32];

        for (size_t h = 0; h < ELEMENTSOF(ids); h++)
                hosts[h] = host(ids[h]);

        for (unsigned k = 0; k < 200; k++) {
                ServiceSpec s;
                const ServiceSpec *svcs[] = { &s };
                PlacementResult r = { 0 };
                size_t best = 0;

                snprintf(name, sizeof name, "svc%u", k);
                s = service(name, SERVICE_SINGLETON, 1);
                for (size_t h = 1; h < ELEMENTSOF(ids); h++)
                        if (tie_hash(name, ids[h]) < tie_hash(name, ids[best]))
                                best = h;
                ASSERT_OK(placement_compute(svcs, 1, hosts, ELEMENTSOF(hosts), NULL, 0, &r));
                ASSERT_STREQ(host_of(&r, name, 0), ids[best]);
                chosen[best]++;
                placement_result_done(&r);
        }
        /* Not piled onto "a". */
        for (size_t h = 0; h < ELEMENTSOF(ids); h++)
                distinct += chosen[h] > 0;
        ASSERT_EQ_UINT(distinct, ELEMENTSOF(ids));
        ASSERT_LT_INT(chosen[0], 100);
}

TEST(spread_comes_before_per_host_balance) {
        SpecLabel r1[] = { { "rack", "r1" } }, r2[] = { { "rack", "r2" } };
        ServiceSpec s = service("web", SERVICE_STATELESS, 4);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b"), host("c") };
        PlacementResult r = { 0 };
        size_t on_a = 0;

        s.spread = "rack";
        hosts[0].labels = r1;
        hosts[0].n_labels = 1;
        hosts[1].labels = hosts[2].labels = r2;
        hosts[1].n_labels = hosts[2].n_labels = 1;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 3, NULL, 0, &r));
        /* Two per rack: the lone host of r1 takes two, b and c one each. */
        for (uint32_t i = 0; i < 4; i++)
                on_a += streq(host_of(&r, "web", i), "a");
        ASSERT_EQ_UINT(on_a, 2);
        placement_result_done(&r);

        /* Without Spread=, per-host balance: a, b and c before any doubles. */
        s.spread = NULL;
        s.count = 3;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 3, NULL, 0, &r));
        ASSERT_TRUE(!streq(host_of(&r, "web", 0), host_of(&r, "web", 1)));
        ASSERT_TRUE(!streq(host_of(&r, "web", 0), host_of(&r, "web", 2)));
        ASSERT_TRUE(!streq(host_of(&r, "web", 1), host_of(&r, "web", 2)));
        placement_result_done(&r);
}

TEST(hosts_without_the_spread_label_form_one_group) {
        SpecLabel r1[] = { { "rack", "r1" } };
        ServiceSpec s = service("web", SERVICE_STATELESS, 2);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b"), host("c") };
        PlacementResult r = { 0 };

        s.spread = "rack";
        hosts[0].labels = r1;
        hosts[0].n_labels = 1;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 3, NULL, 0, &r));
        /* b and c are one unlabelled group: one instance there, one on a. */
        ASSERT_EQ_UINT(r.n_assignments, 2);
        ASSERT_TRUE(streq(host_of(&r, "web", 0), "a") != streq(host_of(&r, "web", 1), "a"));
        placement_result_done(&r);
}

TEST(same_service_count_comes_before_total_load) {
        ServiceSpec busy = service("busy", SERVICE_STATELESS, 3);
        ServiceSpec web = service("web", SERVICE_STATELESS, 2);
        const ServiceSpec *svcs[] = { &busy, &web };
        PlacementHost hosts[] = { host("a"), host("b") };
        Assignment cur[] = {
                { "busy", 0, "a" }, { "busy", 1, "a" }, { "busy", 2, "a" }, { "web", 0, "b" }
        };
        PlacementResult r = { 0 };

        ASSERT_OK(placement_compute(svcs, 2, hosts, 2, cur, ELEMENTSOF(cur), &r));
        /* b has fewer instances in total, but already one of web. */
        ASSERT_STREQ(host_of(&r, "web", 1), "a");
        placement_result_done(&r);

        /* Otherwise the host with the least total load. */
        web.count = 1;
        {
                ServiceSpec fresh = service("fresh", SERVICE_SINGLETON, 1);
                const ServiceSpec *three[] = { &busy, &web, &fresh };

                ASSERT_OK(placement_compute(three, 3, hosts, 2, cur, 3, &r));
                ASSERT_STREQ(host_of(&r, "web", 0), "b");
                ASSERT_STREQ(host_of(&r, "fresh", 0), "b");
                placement_result_done(&r);
        }
}

TEST(problem_no_schedulable_host) {
        ServiceSpec s = service("web", SERVICE_STATELESS, 1);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b") };
        Assignment cur[] = { { "web", 0, "a" } };
        PlacementResult r = { 0 };

        hosts[0].schedulable = hosts[1].schedulable = false;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 2, cur, 1, &r));
        ASSERT_EQ_UINT(r.n_assignments, 0);
        ASSERT_EQ_UINT(r.n_problems, 1);
        ASSERT_EQ_INT(r.problems[0].kind, PLACEMENT_NO_HOST);
        ASSERT_STREQ(r.problems[0].reason, "none of the 2 hosts is schedulable");
        ASSERT_TRUE(r.problems[0].service == s.name);
        ASSERT_EQ_UINT(r.n_moved, 1); /* it had a host and lost it */
        placement_result_done(&r);
}

TEST(problem_names_the_missing_label) {
        SpecLabel need[] = { { "zone", "eu" }, { "role", "gateway" } };
        SpecLabel have_a[] = { { "zone", "eu" }, { "role", "worker" } };
        SpecLabel have_b[] = { { "zone", "us" }, { "role", "gateway" } };
        ServiceSpec s = service("edge", SERVICE_STATELESS, 1);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b") };
        PlacementResult r = { 0 };

        s.require_labels = need;
        s.n_require_labels = 2;
        hosts[0].labels = have_a;
        hosts[0].n_labels = 2;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 2, NULL, 0, &r));
        ASSERT_EQ_INT(r.problems[0].kind, PLACEMENT_NO_HOST);
        ASSERT_STREQ(r.problems[0].reason, "no schedulable host has label role=gateway");
        placement_result_done(&r);

        /* Each label exists somewhere, never together. */
        hosts[1].labels = have_b;
        hosts[1].n_labels = 2;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 2, NULL, 0, &r));
        ASSERT_STREQ(r.problems[0].reason,
                     "no schedulable host has all of the labels zone=eu role=gateway");
        placement_result_done(&r);

        /* The label on an unschedulable host does not count. */
        hosts[1].labels = need;
        hosts[1].schedulable = false;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 2, NULL, 0, &r));
        ASSERT_STREQ(r.problems[0].reason, "no schedulable host has label role=gateway");
        placement_result_done(&r);
}

TEST(problem_max_per_host) {
        SpecLabel gw[] = { { "role", "gateway" } };
        ServiceSpec s = service("web", SERVICE_STATELESS, 3);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b") };
        PlacementResult r = { 0 };

        s.max_per_host = 1;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 2, NULL, 0, &r));
        ASSERT_EQ_UINT(r.n_assignments, 2);
        ASSERT_EQ_UINT(r.n_problems, 1);
        ASSERT_EQ_UINT(r.problems[0].instance, 2);
        ASSERT_EQ_INT(r.problems[0].kind, PLACEMENT_NO_HOST);
        ASSERT_STREQ(r.problems[0].reason, "MaxPerHost=1 reached on all 2 schedulable hosts");
        placement_result_done(&r);

        s.require_labels = gw;
        s.n_require_labels = 1;
        hosts[0].labels = hosts[1].labels = gw;
        hosts[0].n_labels = hosts[1].n_labels = 1;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 2, NULL, 0, &r));
        ASSERT_STREQ(r.problems[0].reason,
                     "MaxPerHost=1 reached on all 2 schedulable hosts with the required labels");
        placement_result_done(&r);
}

TEST(problem_memory) {
        ServiceSpec s = service("db", SERVICE_SINGLETON, 1);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b"), host("c") };
        PlacementResult r = { 0 };

        s.memory = 16 * G;
        hosts[0].memory_total = 8 * G;
        hosts[1].memory_total = 4 * G;
        hosts[2].memory_total = 0; /* unknown */
        ASSERT_OK(placement_compute(svcs, 1, hosts, 3, NULL, 0, &r));
        ASSERT_EQ_INT(r.problems[0].kind, PLACEMENT_NO_CAPACITY);
        ASSERT_STREQ(r.problems[0].reason, "Memory=16G fits on none of the 3 hosts that satisfy "
                                           "the constraints (most free: 8G)");
        placement_result_done(&r);

        ASSERT_OK(placement_compute(svcs, 1, hosts + 2, 1, NULL, 0, &r));
        ASSERT_STREQ(r.problems[0].reason, "Memory=16G fits on none of the 1 hosts that satisfy "
                                           "the constraints (their memory is unknown)");
        placement_result_done(&r);

        /* Exactly full fits; a service without Memory= fits on unknown memory. */
        hosts[0].memory_total = 16 * G;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 3, NULL, 0, &r));
        ASSERT_STREQ(host_of(&r, "db", 0), "a");
        placement_result_done(&r);
        s.memory = 0;
        ASSERT_OK(placement_compute(svcs, 1, hosts + 2, 1, NULL, 0, &r));
        ASSERT_STREQ(host_of(&r, "db", 0), "c");
        placement_result_done(&r);
}

/* A restarted controller knows a host's memory only from its next
 * heartbeat: meanwhile the host keeps its Memory= instances (nothing says
 * they do not fit) but takes none anew. */
TEST(unknown_memory_keeps_what_it_has_and_takes_nothing_new) {
        ServiceSpec s = service("db", SERVICE_STATELESS, 2);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b") };
        Assignment current[] = { { "db", 0, "a" } };
        PlacementResult r = { 0 };

        s.memory = 4 * G;
        hosts[0].memory_total = 0; /* unknown */
        hosts[1].memory_total = 2 * G;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 2, current, 1, &r));
        ASSERT_STREQ(host_of(&r, "db", 0), "a");
        ASSERT_EQ_UINT(r.n_assignments, 1);
        ASSERT_EQ_UINT(r.n_problems, 1);
        ASSERT_EQ_UINT(r.problems[0].instance, 1);
        ASSERT_EQ_UINT(r.n_moved, 0);
        placement_result_done(&r);
}

TEST(problem_memory_only_where_the_constraints_hold) {
        SpecLabel gw[] = { { "role", "gateway" } };
        ServiceSpec s = service("edge", SERVICE_SINGLETON, 1);
        const ServiceSpec *svcs[] = { &s };
        PlacementHost hosts[] = { host("a"), host("b") };
        PlacementResult r = { 0 };

        /* b has room but not the label; a has the label but not the room. */
        s.memory = 32 * G;
        s.require_labels = gw;
        s.n_require_labels = 1;
        hosts[0].labels = gw;
        hosts[0].n_labels = 1;
        hosts[0].memory_total = 16 * G;
        hosts[1].memory_total = 128 * G;
        ASSERT_OK(placement_compute(svcs, 1, hosts, 2, NULL, 0, &r));
        ASSERT_EQ_INT(r.problems[0].kind, PLACEMENT_NO_CAPACITY);
        ASSERT_STREQ(r.problems[0].reason, "Memory=32G fits on none of the 1 hosts that satisfy "
                                           "the constraints (most free: 16G)");
        placement_result_done(&r);
}

TEST(duplicate_names_are_refused) {
        ServiceSpec a = service("web", SERVICE_STATELESS, 1);
        ServiceSpec b = service("web", SERVICE_SINGLETON, 1);
        ServiceSpec c = service("api", SERVICE_SINGLETON, 1);
        const ServiceSpec *dup[] = { &a, &c, &b };
        const ServiceSpec *ok[] = { &a, &c };
        PlacementHost hosts[] = { host("x"), host("y"), host("x") };
        PlacementResult r = { .n_moved = 42 };

        ASSERT_ERR(placement_compute(dup, 3, hosts, 2, NULL, 0, &r), -EINVAL);
        ASSERT_ERR(placement_compute(ok, 2, hosts, 3, NULL, 0, &r), -EINVAL);
        ASSERT_EQ_UINT(r.n_moved, 42); /* untouched */
        ASSERT_NULL(r.assignments);
}

TEST(result_find_and_done) {
        ServiceSpec a = service("web", SERVICE_STATELESS, 5);
        ServiceSpec b = service("api", SERVICE_STATELESS, 3);
        const ServiceSpec *svcs[] = { &a, &b };
        PlacementHost hosts[] = { host("x"), host("y") };
        PlacementResult r = { 0 };

        placement_result_done(&r); /* zeroed: nothing to do */
        ASSERT_OK(placement_compute(svcs, 2, hosts, 2, NULL, 0, &r));
        ASSERT_EQ_UINT(r.n_assignments, 8);
        ASSERT_STREQ(r.assignments[0].service, "api"); /* name order */
        for (uint32_t i = 0; i < 5; i++)
                ASSERT_TRUE(placement_result_find(&r, "web", i) == find_assignment(&r, "web", i));
        ASSERT_NULL(placement_result_find(&r, "web", 5));
        ASSERT_NULL(placement_result_find(&r, "zzz", 0));
        ASSERT_NULL(placement_result_find(&r, "", 0));
        ASSERT_NULL(placement_result_find(&r, NULL, 0));
        placement_result_done(&r);
        placement_result_done(&r);
        ASSERT_NULL(r.assignments);
        ASSERT_EQ_UINT(r.n_assignments, 0);
}

/* The size the controller is built for: 1,000 hosts, 20 units each. */
TEST(thousand_hosts) {
        enum {
                N_HOSTS = 1000,
                N_SERVICES = 100,
                PER_SERVICE = 200
        };
        static PlacementHost hosts[N_HOSTS];
        static char ids[N_HOSTS][16], names[N_SERVICES][16];
        static ServiceSpec specs[N_SERVICES];
        static const ServiceSpec *svcs[N_SERVICES];
        static SpecLabel rack[N_HOSTS][1];
        PlacementResult r1 = { 0 }, r2 = { 0 };
        size_t on_it = 0;

        seed(424242);
        for (size_t h = 0; h < N_HOSTS; h++) {
                snprintf(ids[h], sizeof ids[h], "host-%04zu", (h * 7919) % N_HOSTS);
                rack[h][0] = (SpecLabel){ "rack", racks[h % ELEMENTSOF(racks)] };
                hosts[h] = host(ids[h]);
                hosts[h].labels = rack[h];
                hosts[h].n_labels = 1;
        }
        for (size_t s = 0; s < N_SERVICES; s++) {
                snprintf(names[s], sizeof names[s], "svc-%03zu", s);
                specs[s] = service(names[s], SERVICE_STATELESS, PER_SERVICE);
                specs[s].max_per_host = s % 3;
                specs[s].spread = s % 2 ? "rack" : NULL;
                specs[s].memory = (s % 4) * 256 * M;
                svcs[s] = specs + s;
        }
        ASSERT_OK(placement_compute(svcs, N_SERVICES, hosts, N_HOSTS, NULL, 0, &r1));
        ASSERT_EQ_UINT(r1.n_assignments, N_SERVICES * PER_SERVICE);
        check_invariants(svcs, N_SERVICES, hosts, N_HOSTS, &r1);

        /* A host dies: only its instances move. */
        hosts[N_HOSTS / 2].schedulable = false;
        ASSERT_OK(placement_compute(svcs, N_SERVICES, hosts, N_HOSTS, r1.assignments,
                                    r1.n_assignments, &r2));
        ASSERT_EQ_UINT(r2.n_assignments, N_SERVICES * PER_SERVICE);
        for (size_t i = 0; i < r1.n_assignments; i++) {
                const Assignment *a = r1.assignments + i, *b = r2.assignments + i;

                ASSERT_TRUE(a->service == b->service && a->instance == b->instance);
                if (a->host == hosts[N_HOSTS / 2].id) {
                        ASSERT_TRUE(b->host != a->host);
                        on_it++;
                } else
                        ASSERT_TRUE(b->host == a->host);
        }
        ASSERT_GT_INT(on_it, 0);
        ASSERT_EQ_UINT(r2.n_moved, on_it);
        check_invariants(svcs, N_SERVICES, hosts, N_HOSTS, &r2);
        placement_result_done(&r1);
        placement_result_done(&r2);
}

int main(void) {
        return tap_run(TESTS(
                generated_fleets_follow_the_rules, recomputing_moves_nothing,
                adding_a_host_moves_nothing, changing_one_service_moves_no_other,
                losing_a_host_moves_only_its_instances,
                a_draining_host_releases_only_what_it_is_told,
                spread_takes_every_value_before_doubling_up, one_unconstrained_service_is_balanced,
                problem_kind_strings_round_trip, fnv1a_is_the_standard_one, labels_match,
                empty_inputs, singleton_has_one_instance_and_zero_count_none,
                valid_assignment_stays_even_when_unbalanced, unschedulable_host_loses_its_instances,
                host_without_the_labels_loses_its_instances,
                lower_max_per_host_moves_the_highest_ordinals, overfull_host_keeps_in_service_order,
                memory_counts_every_service_on_the_host,
                scaled_down_and_deleted_instances_disappear, unknown_host_in_current_is_a_move,
                duplicate_current_keeps_the_first_eligible_host_by_id, ties_break_by_the_fnv_hash,
                spread_comes_before_per_host_balance, hosts_without_the_spread_label_form_one_group,
                same_service_count_comes_before_total_load, problem_no_schedulable_host,
                problem_names_the_missing_label, problem_max_per_host, problem_memory,
                unknown_memory_keeps_what_it_has_and_takes_nothing_new,
                problem_memory_only_where_the_constraints_hold, duplicate_names_are_refused,
                result_find_and_done, thousand_hosts));
}
