/* SPDX-License-Identifier: MIT */
/* Where every instance runs: keep what may stay, then place the rest one by
 * one on the least loaded eligible host, with a fixed hash to break ties.
 * Inputs are sorted internally, so the answer never depends on their order.
 * Pure. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "duration.h"
#include "fnv.h"
#include "placement.h"

#define NONE SIZE_MAX

static const char *const placement_problem_kind_table[_PLACEMENT_PROBLEM_MAX] = {
        [PLACEMENT_NO_HOST] = "no-host",
        [PLACEMENT_NO_CAPACITY] = "no-capacity",
};

DEFINE_STRING_TABLE_LOOKUP(placement_problem_kind, PlacementProblemKind, _PLACEMENT_PROBLEM_MAX)

/* A host as the algorithm sees it, in id order. The per-service fields are
 * reset for every service. */
typedef struct Node {
        const PlacementHost *host;
        uint64_t memory_used;
        size_t n_instances; /* of every service, kept or placed so far */
        uint32_t n_service; /* of the service being settled */
        size_t group;       /* its Spread= group, for the service being placed */
        bool fits;          /* schedulable and has the service's labels */
        bool keeps;         /* schedulable or keeps, and has the service's labels */
        uint64_t hash;      /* the tie-break of rule 2, for the service being placed */
} Node;

/* One service, in name order, and where its instances live in the flat
 * per-instance arrays. */
typedef struct Svc {
        const ServiceSpec *spec;
        uint32_t count;
        size_t first;
} Svc;

/* A usable entry of `current`, by index into the sorted services and hosts. */
typedef struct Current {
        size_t svc;
        uint32_t instance;
        size_t node; /* NONE: a host we do not know */
} Current;

typedef struct Placer {
        Svc *svcs;
        size_t n_svcs;
        Node *nodes;
        size_t n_nodes;
        Current *current;
        size_t n_current;
        size_t n_instances;
        size_t *where;  /* per instance: node index or NONE */
        bool *kept;     /* per instance: stayed on its current host */
        bool *had_host; /* per instance: listed in `current` */
        size_t *groups; /* per-group instance counts of the service being placed */
        size_t *heap;   /* node indices, least loaded first (rule 2 without Spread=) */
        size_t n_heap;
        size_t *slots; /* node indices by hash of the host id (open addressing), or NONE */
        size_t slot_mask;
        PlacementProblem *problems;
        size_t n_problems;
} Placer;

/* Also a _cleanup_ function: it takes the Placer's address. */
static void placer_done(Placer *p) {
        for (size_t i = 0; i < p->n_problems; i++)
                free(p->problems[i].reason);
        free(p->problems);
        free(p->svcs);
        free(p->nodes);
        free(p->current);
        free(p->where);
        free(p->kept);
        free(p->had_host);
        free(p->groups);
        free(p->heap);
        free(p->slots);
}

/* Rule 2's tie-break for `service` on every node: FNV-1a of
 * "<service>\0<host id>". */
static void nodes_hash_for(Placer *p, const ServiceSpec *s) {
        uint64_t prefix = fnv1a64(FNV1A64_OFFSET, s->name, strlen(s->name) + 1);

        for (size_t i = 0; i < p->n_nodes; i++)
                p->nodes[i].hash =
                        fnv1a64(prefix, p->nodes[i].host->id, strlen(p->nodes[i].host->id));
}

bool placement_labels_match(const PlacementHost *h, const SpecLabel *require, size_t n) {
        assert(h);
        assert(require || n == 0);

        for (size_t i = 0; i < n; i++) {
                bool found = false;

                for (size_t j = 0; j < h->n_labels && !found; j++)
                        found = streq_ptr(h->labels[j].key, require[i].key) &&
                                streq_ptr(h->labels[j].value, require[i].value);
                if (!found)
                        return false;
        }
        return true;
}

static const char *host_label(const PlacementHost *h, const char *key) {
        for (size_t j = 0; j < h->n_labels; j++)
                if (streq_ptr(h->labels[j].key, key))
                        return strempty(h->labels[j].value);
        return NULL;
}

static uint32_t svc_count(const ServiceSpec *s) {
        return s->kind == SERVICE_SINGLETON ? 1 : s->count;
}

static bool memory_fits(const Node *n, uint64_t memory) {
        if (memory == 0)
                return true;
        return n->memory_used <= n->host->memory_total &&
               memory <= n->host->memory_total - n->memory_used;
}

static bool eligible(const Node *n, const ServiceSpec *s) {
        return n->fits && (s->max_per_host == 0 || n->n_service < s->max_per_host) &&
               memory_fits(n, s->memory);
}

/* Rule 1: as eligible(), on a host that keeps what it has too. A host whose
 * memory is not known (yet: a restarted controller before its heartbeat)
 * keeps what it has. */
static bool keepable(const Node *n, const ServiceSpec *s) {
        return n->keeps && (s->max_per_host == 0 || n->n_service < s->max_per_host) &&
               (n->host->memory_total == 0 || memory_fits(n, s->memory));
}

static void node_add(Node *n, const ServiceSpec *s) {
        n->memory_used += s->memory;
        n->n_instances++;
        n->n_service++;
}

/* Sets fits and clears n_service on every node for service s. */
static void nodes_reset_for(Placer *p, const ServiceSpec *s) {
        for (size_t i = 0; i < p->n_nodes; i++) {
                Node *n = p->nodes + i;

                bool labels =
                        placement_labels_match(n->host, s->require_labels, s->n_require_labels);

                n->fits = n->host->schedulable && labels;
                n->keeps = (n->host->schedulable || n->host->keeps) && labels;
                n->n_service = 0;
                n->group = 0;
        }
}

static int cmp_svc(const void *a, const void *b) {
        return strcmp(((const Svc *) a)->spec->name, ((const Svc *) b)->spec->name);
}

static int cmp_node(const void *a, const void *b) {
        return strcmp(((const Node *) a)->host->id, ((const Node *) b)->host->id);
}

static int cmp_size(size_t a, size_t b) {
        return a < b ? -1 : a > b ? 1 : 0;
}

static int cmp_current(const void *a, const void *b) {
        const Current *x = a, *y = b;
        int c;

        c = cmp_size(x->svc, y->svc);
        if (c != 0)
                return c;
        c = cmp_size(x->instance, y->instance);
        if (c != 0)
                return c;
        return cmp_size(x->node, y->node);
}

static size_t find_svc(const Placer *p, const char *name) {
        size_t lo = 0, hi = p->n_svcs;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(p->svcs[mid].spec->name, name);

                if (c == 0)
                        return mid;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NONE;
}

/* Every current assignment names its host: a hash lookup, not a binary
 * search of string compares (200,000 of them at 10,000 hosts). */
static int nodes_index(Placer *p) {
        size_t n = 2;

        while (n < 2 * p->n_nodes)
                n *= 2;
        p->slots = malloc(n * sizeof(size_t));
        if (!p->slots)
                return -ENOMEM;
        p->slot_mask = n - 1;
        for (size_t i = 0; i < n; i++)
                p->slots[i] = NONE;
        for (size_t i = 0; i < p->n_nodes; i++) {
                size_t k = fnv1a64_str(FNV1A64_OFFSET, p->nodes[i].host->id) & p->slot_mask;

                while (p->slots[k] != NONE)
                        k = (k + 1) & p->slot_mask;
                p->slots[k] = i;
        }
        return 0;
}

static size_t find_node(const Placer *p, const char *id) {
        size_t k = fnv1a64_str(FNV1A64_OFFSET, id) & p->slot_mask;

        for (; p->slots[k] != NONE; k = (k + 1) & p->slot_mask)
                if (streq(p->nodes[p->slots[k]].host->id, id))
                        return p->slots[k];
        return NONE;
}

static int placer_load(Placer *p, const ServiceSpec *const *services, size_t n_services,
                       const PlacementHost *hosts, size_t n_hosts, const Assignment *current,
                       size_t n_current) {
        size_t n_instances = 0, s_last = NONE;

        p->svcs = calloc(n_services ? n_services : 1, sizeof(Svc));
        p->nodes = calloc(n_hosts ? n_hosts : 1, sizeof(Node));
        p->groups = calloc(n_hosts + 1, sizeof(size_t));
        p->heap = calloc(n_hosts + 1, sizeof(size_t));
        p->current = calloc(n_current ? n_current : 1, sizeof(Current));
        if (!p->svcs || !p->nodes || !p->groups || !p->heap || !p->current)
                return -ENOMEM;

        for (size_t i = 0; i < n_services; i++) {
                assert(services[i] && services[i]->name);
                p->svcs[i].spec = services[i];
        }
        p->n_svcs = n_services;
        qsort(p->svcs, p->n_svcs, sizeof(Svc), cmp_svc);
        for (size_t i = 0; i < p->n_svcs; i++) {
                uint32_t c = svc_count(p->svcs[i].spec);

                if (i > 0 && streq(p->svcs[i - 1].spec->name, p->svcs[i].spec->name))
                        return -EINVAL;
                p->svcs[i].count = c;
                p->svcs[i].first = n_instances;
                if (n_instances > SIZE_MAX / sizeof(size_t) - c)
                        return -ENOMEM;
                n_instances += c;
        }
        p->n_instances = n_instances;

        for (size_t i = 0; i < n_hosts; i++) {
                assert(hosts[i].id);
                assert(hosts[i].labels || hosts[i].n_labels == 0);
                p->nodes[i].host = hosts + i;
                p->nodes[i].memory_used = hosts[i].memory_used;
                p->nodes[i].n_instances = hosts[i].n_instances;
        }
        p->n_nodes = n_hosts;
        /* Callers pass the host table's order, by id: checked, not sorted. */
        for (size_t i = 1; i < p->n_nodes; i++)
                if (strcmp(p->nodes[i - 1].host->id, p->nodes[i].host->id) >= 0) {
                        qsort(p->nodes, p->n_nodes, sizeof(Node), cmp_node);
                        break;
                }
        for (size_t i = 1; i < p->n_nodes; i++)
                if (streq(p->nodes[i - 1].host->id, p->nodes[i].host->id))
                        return -EINVAL;
        if (nodes_index(p) < 0)
                return -ENOMEM;

        for (size_t i = 0; i < n_current; i++) {
                const Assignment *a = current + i;
                size_t s;

                if (!a->service)
                        continue;
                /* Assignments come by service: the last one found first. */
                s = s_last != NONE && streq(p->svcs[s_last].spec->name, a->service)
                            ? s_last
                            : find_svc(p, a->service);
                s_last = s;
                if (s == NONE || a->instance >= p->svcs[s].count)
                        continue;
                p->current[p->n_current++] = (Current){
                        .svc = s,
                        .instance = a->instance,
                        .node = a->host ? find_node(p, a->host) : NONE,
                };
        }
        qsort(p->current, p->n_current, sizeof(Current), cmp_current);

        p->where = malloc((n_instances ? n_instances : 1) * sizeof(size_t));
        p->kept = calloc(n_instances ? n_instances : 1, sizeof(bool));
        p->had_host = calloc(n_instances ? n_instances : 1, sizeof(bool));
        if (!p->where || !p->kept || !p->had_host)
                return -ENOMEM;
        for (size_t i = 0; i < n_instances; i++)
                p->where[i] = NONE;
        return 0;
}

/* Rule 1, for every service in name order: each instance stays on the first
 * of its current hosts (in id order) that still takes it. */
static void placer_keep(Placer *p) {
        size_t c = 0;

        for (size_t si = 0; si < p->n_svcs; si++) {
                const Svc *svc = p->svcs + si;

                nodes_reset_for(p, svc->spec);
                for (; c < p->n_current && p->current[c].svc == si; c++) {
                        const Current *cur = p->current + c;
                        size_t idx = svc->first + cur->instance;

                        p->had_host[idx] = true;
                        if (p->where[idx] != NONE || cur->node == NONE)
                                continue;
                        if (!keepable(p->nodes + cur->node, svc->spec))
                                continue;
                        p->where[idx] = cur->node;
                        p->kept[idx] = true;
                        node_add(p->nodes + cur->node, svc->spec);
                }
        }
}

typedef struct SpreadValue {
        const char *value;
        size_t node;
} SpreadValue;

static int cmp_spread_value(const void *a, const void *b) {
        return strcmp(((const SpreadValue *) a)->value, ((const SpreadValue *) b)->value);
}

/* Numbers the distinct values of the Spread= label over all nodes; nodes
 * without it share the group of "". */
static int nodes_group(Placer *p, const char *key) {
        _cleanup_free_ SpreadValue *v = NULL;
        size_t g = 0;

        if (p->n_nodes == 0)
                return 0;
        v = calloc(p->n_nodes, sizeof(SpreadValue));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_nodes; i++)
                v[i] = (SpreadValue){ .value = strempty(host_label(p->nodes[i].host, key)),
                                      .node = i };
        qsort(v, p->n_nodes, sizeof(SpreadValue), cmp_spread_value);
        for (size_t i = 0; i < p->n_nodes; i++) {
                if (i > 0 && !streq(v[i - 1].value, v[i].value))
                        g++;
                p->nodes[v[i].node].group = g;
        }
        return 0;
}

static int label_list(const ServiceSpec *s, char **ret) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_require_labels; i++)
                fprintf(f, "%s%s=%s", i > 0 ? " " : "", strempty(s->require_labels[i].key),
                        strempty(s->require_labels[i].value));
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

/* Why no node takes another instance of s: the first constraint, in the
 * order schedulable, labels, MaxPerHost, memory, that rules out every host. */
static int diagnose(const Placer *p, const ServiceSpec *s, PlacementProblemKind *ret_kind,
                    char **ret_reason) {
        size_t n_sched = 0, n_fits = 0, n_room = 0, n_unknown = 0;
        uint64_t most_free = 0;
        _cleanup_free_ char *labels = NULL;
        char *reason = NULL;
        PlacementProblemKind kind = PLACEMENT_NO_HOST;
        int r;

        for (size_t i = 0; i < p->n_nodes; i++) {
                const Node *n = p->nodes + i;

                if (!n->host->schedulable)
                        continue;
                n_sched++;
                if (!n->fits)
                        continue;
                n_fits++;
                if (s->max_per_host != 0 && n->n_service >= s->max_per_host)
                        continue;
                n_room++;
                if (n->host->memory_total == 0)
                        n_unknown++;
                else if (n->memory_used < n->host->memory_total)
                        most_free = MAX(most_free, n->host->memory_total - n->memory_used);
        }

        if (p->n_nodes == 0)
                r = asprintf(&reason, "no host is known");
        else if (n_sched == 0)
                r = asprintf(&reason, "none of the %zu hosts is schedulable", p->n_nodes);
        else if (n_fits == 0) {
                const SpecLabel *missing = NULL;

                /* Name one label no schedulable host has, if there is one:
                 * that is the one to fix. */
                for (size_t l = 0; l < s->n_require_labels && !missing; l++) {
                        bool any = false;

                        for (size_t i = 0; i < p->n_nodes && !any; i++)
                                any = p->nodes[i].host->schedulable &&
                                      placement_labels_match(p->nodes[i].host,
                                                             s->require_labels + l, 1);
                        if (!any)
                                missing = s->require_labels + l;
                }
                if (missing)
                        r = asprintf(&reason, "no schedulable host has label %s=%s",
                                     strempty(missing->key), strempty(missing->value));
                else {
                        r = label_list(s, &labels);
                        if (r < 0)
                                return r;
                        r = asprintf(&reason, "no schedulable host has all of the labels %s",
                                     labels);
                }
        } else if (n_room == 0)
                r = asprintf(&reason,
                             "MaxPerHost=%" PRIu32 " reached on all %zu schedulable hosts%s",
                             s->max_per_host, n_fits,
                             s->n_require_labels > 0 ? " with the required labels" : "");
        else {
                char need[SIZE_MAX_LEN], most[SIZE_MAX_LEN];

                kind = PLACEMENT_NO_CAPACITY;
                size_format(need, sizeof need, s->memory);
                if (n_unknown == n_room)
                        r = asprintf(&reason,
                                     "Memory=%s fits on none of the %zu hosts that satisfy the "
                                     "constraints (their memory is unknown)",
                                     need, n_room);
                else
                        r = asprintf(&reason,
                                     "Memory=%s fits on none of the %zu hosts that satisfy the "
                                     "constraints (most free: %s)",
                                     need, n_room, size_format(most, sizeof most, most_free));
        }
        if (r < 0)
                return -ENOMEM;

        *ret_kind = kind;
        *ret_reason = reason;
        return 0;
}

/* The key rule 2 minimizes, without the hash. */
static int cmp_load(const Placer *p, const ServiceSpec *s, const Node *a, const Node *b) {
        int c;

        if (s->spread) {
                c = cmp_size(p->groups[a->group], p->groups[b->group]);
                if (c != 0)
                        return c;
        }
        c = cmp_size(a->n_service, b->n_service);
        if (c != 0)
                return c;
        return cmp_size(a->n_instances, b->n_instances);
}

/* Rule 2's whole order: load, then the hash, then (on a freak equal hash)
 * the smaller id, which is the smaller index. */
static int cmp_rank(const Placer *p, const ServiceSpec *s, size_t a, size_t b) {
        int c = cmp_load(p, s, p->nodes + a, p->nodes + b);

        if (c != 0)
                return c;
        if (p->nodes[a].hash != p->nodes[b].hash)
                return p->nodes[a].hash < p->nodes[b].hash ? -1 : 1;
        return cmp_size(a, b);
}

/* Rule 2 with Spread=: placing one instance changes the rank of every node
 * of its group, so each choice looks at every node. */
static size_t choose_scan(const Placer *p, const ServiceSpec *s) {
        size_t best = NONE;

        for (size_t n = 0; n < p->n_nodes; n++)
                if (eligible(p->nodes + n, s) && (best == NONE || cmp_rank(p, s, n, best) < 0))
                        best = n;
        return best;
}

/* Rule 2 without Spread=: placing an instance changes the rank of the chosen
 * node only, so the eligible nodes wait in a heap by rank and each choice
 * costs O(log nodes). */
static void heap_down(Placer *p, const ServiceSpec *s, size_t i) {
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i, t;

                if (l < p->n_heap && cmp_rank(p, s, p->heap[l], p->heap[m]) < 0)
                        m = l;
                if (r < p->n_heap && cmp_rank(p, s, p->heap[r], p->heap[m]) < 0)
                        m = r;
                if (m == i)
                        return;
                t = p->heap[i];
                p->heap[i] = p->heap[m];
                p->heap[m] = t;
                i = m;
        }
}

static void heap_build(Placer *p, const ServiceSpec *s) {
        p->n_heap = 0;
        for (size_t n = 0; n < p->n_nodes; n++)
                if (eligible(p->nodes + n, s))
                        p->heap[p->n_heap++] = n;
        for (size_t i = p->n_heap / 2; i-- > 0;)
                heap_down(p, s, i);
}

/* The least ranked eligible node; a node that stopped being eligible (a
 * MaxPerHost= or Memory= reached: load only grows) leaves for good. */
static size_t choose_heap(Placer *p, const ServiceSpec *s) {
        while (p->n_heap > 0 && !eligible(p->nodes + p->heap[0], s)) {
                p->heap[0] = p->heap[--p->n_heap];
                heap_down(p, s, 0);
        }
        return p->n_heap > 0 ? p->heap[0] : NONE;
}

/* Rules 2 and 3 for every instance not kept, services in name order. */
static int placer_place(Placer *p) {
        bool unplaced;
        int r;

        for (size_t si = 0; si < p->n_svcs; si++) {
                const Svc *svc = p->svcs + si;
                const ServiceSpec *s = svc->spec;

                nodes_reset_for(p, s);
                if (s->spread) {
                        r = nodes_group(p, s->spread);
                        if (r < 0)
                                return r;
                }
                memset(p->groups, 0, (p->n_nodes + 1) * sizeof(size_t));
                unplaced = false;
                for (uint32_t i = 0; i < svc->count; i++) {
                        size_t w = p->where[svc->first + i];

                        if (w == NONE) {
                                unplaced = true;
                                continue;
                        }
                        p->nodes[w].n_service++;
                        p->groups[p->nodes[w].group]++;
                }
                if (!unplaced)
                        continue;
                nodes_hash_for(p, s);
                if (!s->spread)
                        heap_build(p, s);

                for (uint32_t i = 0; i < svc->count; i++) {
                        size_t idx = svc->first + i, best;

                        if (p->where[idx] != NONE)
                                continue;

                        best = s->spread ? choose_scan(p, s) : choose_heap(p, s);
                        if (best == NONE)
                                continue; /* rule 3: reported by placer_report() */
                        p->where[idx] = best;
                        node_add(p->nodes + best, s);
                        p->groups[p->nodes[best].group]++;
                        if (!s->spread)
                                heap_down(p, s, 0); /* the root's rank only grew */
                }
        }
        return 0;
}

/* Rule 3's problems, diagnosed once everything is placed rather than at each
 * instance's turn: the reason then describes the fleet the result leaves, so
 * recomputing from the result reports the very same text and an alert keyed
 * on it does not flap. Whatever ruled out every host at an instance's turn
 * still does at the end, as load only grows. */
static int placer_report(Placer *p) {
        size_t n = 0;
        int r;

        for (size_t i = 0; i < p->n_instances; i++)
                n += p->where[i] == NONE;
        if (n == 0)
                return 0;
        p->problems = calloc(n, sizeof(PlacementProblem));
        if (!p->problems)
                return -ENOMEM;

        for (size_t si = 0; si < p->n_svcs; si++) {
                const Svc *svc = p->svcs + si;
                _cleanup_free_ char *reason = NULL;
                PlacementProblemKind kind;
                bool any = false;

                for (uint32_t i = 0; i < svc->count && !any; i++)
                        any = p->where[svc->first + i] == NONE;
                if (!any)
                        continue;

                nodes_reset_for(p, svc->spec);
                for (uint32_t i = 0; i < svc->count; i++)
                        if (p->where[svc->first + i] != NONE)
                                p->nodes[p->where[svc->first + i]].n_service++;
                r = diagnose(p, svc->spec, &kind, &reason);
                if (r < 0)
                        return r;

                for (uint32_t i = 0; i < svc->count; i++) {
                        char *copy;

                        if (p->where[svc->first + i] != NONE)
                                continue;
                        copy = strdup(reason);
                        if (!copy)
                                return -ENOMEM;
                        p->problems[p->n_problems++] = (PlacementProblem){
                                .service = svc->spec->name,
                                .instance = i,
                                .kind = kind,
                                .reason = copy,
                        };
                }
        }
        return 0;
}

int placement_compute(const ServiceSpec *const *services, size_t n_services,
                      const PlacementHost *hosts, size_t n_hosts, const Assignment *current,
                      size_t n_current, PlacementResult *ret) {
        _cleanup_(placer_done) Placer p = { 0 };
        _cleanup_free_ Assignment *assignments = NULL;
        size_t n_assignments = 0, n_moved = 0, k = 0;
        int r;

        assert(services || n_services == 0);
        assert(hosts || n_hosts == 0);
        assert(current || n_current == 0);
        assert(ret);

        r = placer_load(&p, services, n_services, hosts, n_hosts, current, n_current);
        if (r < 0)
                return r;
        placer_keep(&p);
        r = placer_place(&p);
        if (r < 0)
                return r;
        r = placer_report(&p);
        if (r < 0)
                return r;

        for (size_t i = 0; i < p.n_instances; i++) {
                if (p.where[i] != NONE)
                        n_assignments++;
                if (!p.kept[i] && (p.where[i] != NONE || p.had_host[i]))
                        n_moved++;
        }
        assignments = calloc(n_assignments ? n_assignments : 1, sizeof(Assignment));
        if (!assignments)
                return -ENOMEM;
        /* The flat arrays are already in (service name, ordinal) order. */
        for (size_t si = 0; si < p.n_svcs; si++)
                for (uint32_t i = 0; i < p.svcs[si].count; i++) {
                        size_t w = p.where[p.svcs[si].first + i];

                        if (w == NONE)
                                continue;
                        assignments[k++] = (Assignment){
                                .service = p.svcs[si].spec->name,
                                .instance = i,
                                .host = p.nodes[w].host->id,
                        };
                }

        *ret = (PlacementResult){
                .assignments = TAKE_PTR(assignments),
                .n_assignments = n_assignments,
                .problems = TAKE_PTR(p.problems),
                .n_problems = p.n_problems,
                .n_moved = n_moved,
        };
        p.n_problems = 0; /* the reasons are the result's now */
        return 0;
}

void placement_result_done(PlacementResult *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n_problems; i++)
                free(r->problems[i].reason);
        free(r->problems);
        free(r->assignments);
        *r = (PlacementResult){ 0 };
}

const Assignment *placement_result_find(const PlacementResult *r, const char *service,
                                        uint32_t instance) {
        size_t lo = 0, hi;

        assert(r);
        if (!service)
                return NULL;
        hi = r->n_assignments;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const Assignment *a = r->assignments + mid;
                int c = strcmp(a->service, service);

                if (c == 0)
                        c = a->instance < instance ? -1 : a->instance > instance ? 1 : 0;
                if (c == 0)
                        return a;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}
