/* SPDX-License-Identifier: MIT */
/* Desired state and the reconciler: the parsed specs, the placement of every
 * instance (controller/core/placement decides), and one level-triggered
 * Placement per host, sent with a new generation only when the host's units
 * change, and re-sent while the host has not applied it. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "commands.pb-c.h"
#include "controller.h"
#include "events.pb-c.h"
#include "fnv.h"
#include "log.h"
#include "placement.h"
#include "spec.h"
#include "topology.h"
#include "util.h"

/* A Placement not applied after this long is sent again. */
#define RESEND_AFTER_US (5 * USEC_PER_SEC)
/* Placements are level-triggered and ordered by generation, so a late one
 * cannot roll a host back; the expiration only keeps queues short. */
#define PLACEMENT_EXPIRATION_MS "600000"

ServiceSpec *fleet_service(Controller *c, const char *name) {
        for (size_t i = 0; i < c->n_services; i++)
                if (streq(c->services[i]->name, name))
                        return c->services[i];
        return NULL;
}

static void instances_free(FleetInstance *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(v[i].service);
                free(v[i].host);
        }
        free(v);
}

void fleet_done(Controller *c) {
        for (size_t i = 0; i < c->n_services; i++)
                service_spec_free(c->services[i]);
        free(c->services);
        c->services = NULL;
        c->n_services = 0;
        instances_free(c->instances, c->n_instances);
        c->instances = NULL;
        c->n_instances = 0;
}

/* ---- loading ------------------------------------------------------------- */

static int load_service(const char *name, const char *file_name, const char *text, uint32_t count,
                        void *userdata) {
        Controller *c = userdata;
        _cleanup_free_ char *error = NULL;
        ServiceSpec *spec, **p;
        int r;

        r = spec_parse(file_name, text, &spec, &error);
        if (r < 0) {
                /* Applied by an older baton that accepted it: keep running, say so. */
                log_error("Stored service %s no longer parses (%s); ignoring it.", name,
                          error ? error : STRERROR(r));
                return 0;
        }
        spec->count = count;
        p = realloc(c->services, (c->n_services + 1) * sizeof(ServiceSpec *));
        if (!p) {
                service_spec_free(spec);
                return -ENOMEM;
        }
        c->services = p;
        c->services[c->n_services++] = spec;
        return 0;
}

static int load_instance(const char *service, uint32_t instance, const char *host, void *userdata) {
        Controller *c = userdata;
        FleetInstance *p;

        p = realloc(c->instances, (c->n_instances + 1) * sizeof(FleetInstance));
        if (!p)
                return -ENOMEM;
        c->instances = p;
        p[c->n_instances] = (FleetInstance){ strdup(service), instance, strdup(host) };
        if (!p[c->n_instances].service || !p[c->n_instances].host)
                return -ENOMEM;
        c->n_instances++;
        return 0;
}

int fleet_load(Controller *c) {
        int r;

        r = store_load_services(c->store, load_service, c);
        if (r < 0)
                return log_error_errno(r, "Failed to load services: %s", store_error(c->store));
        r = store_load_instances(c->store, load_instance, c);
        if (r < 0)
                return log_error_errno(r, "Failed to load instances: %s", store_error(c->store));
        for (size_t i = 0; i < c->hosts.n_hosts; i++) {
                Host *h = c->hosts.hosts[i];
                HostView *v = h->userdata;
                if (v)
                        (void) store_get_host_generation(c->store, h->id, &v->generation);
        }
        log_info("Loaded %zu services with %zu placed instances.", c->n_services, c->n_instances);
        return 0;
}

/* ---- placement messages -------------------------------------------------- */

typedef struct HostUnits {
        Baton__V1__PlacedUnit *units;
        Baton__V1__PlacedUnit **ptrs;
        Baton__V1__ShardAssignment *shards;
        char **strings; /* owned */
        size_t n, n_strings;
} HostUnits;

static void host_units_done(HostUnits *hu) {
        for (size_t i = 0; i < hu->n_strings; i++)
                free(hu->strings[i]);
        free(hu->strings);
        free(hu->units);
        free(hu->ptrs);
        free(hu->shards);
        *hu = (HostUnits){ 0 };
}

static char *keep(HostUnits *hu, char *s) {
        if (s)
                hu->strings[hu->n_strings++] = s;
        return s;
}

/* Which instances run on which host: c->instances indices ordered by
 * (host, index), so each host's share is one run, found by binary search.
 * Built once per reconcile: scanning every instance for every host would be
 * O(hosts × instances), 20 million comparisons for 1,000 hosts × 20 units. */
typedef struct HostIndexEntry {
        const char *host;
        size_t i;
} HostIndexEntry;

typedef struct HostIndex {
        HostIndexEntry *entries;
        size_t n;
} HostIndex;

static int host_index_compare(const void *a, const void *b) {
        const HostIndexEntry *x = a, *y = b;
        int k = strcmp(x->host, y->host);

        return k != 0 ? k : (x->i > y->i) - (x->i < y->i);
}

static int host_index_build(Controller *c, HostIndex *ret) {
        HostIndexEntry *v = calloc(c->n_instances + 1, sizeof(HostIndexEntry));

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_instances; i++)
                v[i] = (HostIndexEntry){ c->instances[i].host, i };
        qsort(v, c->n_instances, sizeof(HostIndexEntry), host_index_compare);
        *ret = (HostIndex){ v, c->n_instances };
        return 0;
}

/* The run of `host` in the index: [*ret_first, *ret_first + return value). */
static size_t host_index_find(const HostIndex *x, const char *host, size_t *ret_first) {
        size_t lo = 0, hi = x->n, end;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(x->entries[mid].host, host) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (end = lo; end < x->n && streq(x->entries[end].host, host); end++)
                ;
        *ret_first = lo;
        return end - lo;
}

/* What decides whether the agent restarts a unit on a new Placement: what
 * systemd reads of its file (not [X-Baton]: changing Replicas= restarts
 * nothing) and its shard assignment. NULL on OOM (the agent then hashes
 * the text itself). */
static char *unit_config_hash(const ServiceSpec *s, const ShardCopy *copy) {
        uint64_t h = spec_systemd_hash(s->unit_text);
        char extra[64], *ret = NULL;

        snprintf(extra, sizeof(extra), "|%" PRIu32 "|%" PRIu64 "|", copy->shard_count, copy->epoch);
        h = fnv1a64_str(h, extra);
        h = fnv1a64_str(h, copy->shards);
        if (asprintf(&ret, "%016" PRIx64, h) < 0)
                return NULL;
        return ret;
}

/* The PlacedUnits of one host, in (service, instance) order, from its
 * `n` entries of the host index. */
static int host_units(Controller *c, const HostIndexEntry *entries, size_t n, HostUnits *ret) {
        HostUnits hu = { 0 };
        /* A sharded instance has two copies while it is resharded. */
        size_t max = 2 * n;

        hu.units = calloc(max + 1, sizeof(*hu.units));
        hu.ptrs = calloc(max + 1, sizeof(*hu.ptrs));
        hu.shards = calloc(max + 1, sizeof(*hu.shards));
        hu.strings = calloc(3 * max + 1, sizeof(char *));
        if (!hu.units || !hu.ptrs || !hu.shards || !hu.strings) {
                host_units_done(&hu);
                return -ENOMEM;
        }
        for (size_t k = 0; k < n; k++) {
                const FleetInstance *fi = &c->instances[entries[k].i];
                const ServiceSpec *s;
                ShardCopy copies[2];
                size_t n_copies = 0;

                if (!(s = fleet_service(c, fi->service)))
                        continue;
                if (s->kind == SERVICE_SHARDED) {
                        if (shards_copies(c, s, fi->instance, copies, &n_copies) < 0) {
                                host_units_done(&hu);
                                return -ENOMEM;
                        }
                } else {
                        copies[0] = (ShardCopy){ .running = true };
                        if (service_instance_unit(s, fi->instance, &copies[0].unit) < 0) {
                                host_units_done(&hu);
                                return -ENOMEM;
                        }
                        n_copies = 1;
                }
                for (size_t j = 0; j < n_copies; j++) {
                        Baton__V1__PlacedUnit *u = &hu.units[hu.n];

                        baton__v1__placed_unit__init(u);
                        u->name = keep(&hu, TAKE_PTR(copies[j].unit));
                        u->unit_text = s->unit_text;
                        u->template_name = s->is_template ? s->file_name : (char *) "";
                        u->service = s->name;
                        u->instance = fi->instance;
                        u->running = copies[j].running;
                        /* A changed unit rolls out (rpc-fleet.c's rolling_update()). */
                        u->defer_restart = true;
                        u->config_hash = keep(&hu, unit_config_hash(s, &copies[j]));
                        if (s->kind == SERVICE_SHARDED) {
                                baton__v1__shard_assignment__init(&hu.shards[hu.n]);
                                hu.shards[hu.n].shards = keep(&hu, TAKE_PTR(copies[j].shards));
                                hu.shards[hu.n].shard_count = copies[j].shard_count;
                                hu.shards[hu.n].shard_epoch = copies[j].epoch;
                                u->shards = &hu.shards[hu.n];
                        }
                        shard_copy_done(&copies[j]);
                        hu.ptrs[hu.n] = u;
                        hu.n++;
                }
        }
        *ret = hu;
        return 0;
}

/* What makes two Placements of a host the same: unit names, texts, shards. */
static char *digest(const HostUnits *hu) {
        _cleanup_free_ char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);
        uint64_t h = FNV1A64_OFFSET;

        if (!f)
                return NULL;
        for (size_t i = 0; i < hu->n; i++) {
                const Baton__V1__PlacedUnit *u = hu->ptrs[i];
                h = fnv1a64_str(h, u->unit_text);
                fprintf(f, "%s:%s:%" PRIu64 ":%d;", u->name, u->shards ? u->shards->shards : "",
                        u->shards ? u->shards->shard_epoch : 0, u->running);
        }
        fprintf(f, "#%016" PRIx64, h);
        if (fclose(f) != 0)
                return NULL;
        return TAKE_PTR(s);
}

static void placement_init(Controller *c, const char *host, uint64_t generation,
                           const HostUnits *hu, Baton__V1__Placement *p) {
        baton__v1__placement__init(p);
        p->host = (char *) host;
        p->epoch = c->epoch;
        p->generation = generation;
        p->n_units = hu->n;
        p->units = hu->ptrs;
}

static size_t placement_size(Controller *c, const char *host, uint64_t generation,
                             const HostUnits *hu) {
        Baton__V1__Placement p;

        placement_init(c, host, generation, hu, &p);
        return protobuf_c_message_get_packed_size(&p.base);
}

static int publish_placement(Controller *c, const char *host, uint64_t generation,
                             const HostUnits *hu) {
        Baton__V1__Placement p;

        placement_init(c, host, generation, hu, &p);
        return controller_publish(
                c, TOPOLOGY_EXCHANGE_CMD, host, &p.base,
                &(PublishOptions){ .persistent = true, .expiration = PLACEMENT_EXPIRATION_MS });
}

/* Sends `host` its Placement: a new generation if its units changed since
 * the last one sent, else the same generation again when `resend`. */
static int sync_host(Controller *c, Host *h, const HostIndex *index, bool resend) {
        HostView *v = h->userdata;
        _cleanup_(host_units_done) HostUnits hu = { 0 };
        _cleanup_free_ char *d = NULL;
        size_t first, n;
        bool changed;
        int r;

        if (!v)
                return 0;
        n = host_index_find(index, h->id, &first);
        r = host_units(c, index->entries + first, n, &hu);
        if (r < 0)
                return r;
        d = digest(&hu);
        if (!d)
                return -ENOMEM;
        changed = !streq_ptr(d, v->sent_digest);
        if (!changed && !resend)
                return 0;
        if (changed) {
                v->generation++;
                r = store_set_host_generation(c->store, h->id, v->generation);
                if (r < 0)
                        return log_error_errno(r, "Failed to persist the generation of %s: %s",
                                               h->id, store_error(c->store));
                free(v->sent_digest);
                v->sent_digest = TAKE_PTR(d);
        }
        r = publish_placement(c, h->id, v->generation, &hu);
        if (r == -EMSGSIZE) {
                _cleanup_free_ char *summary = NULL;

                /* It will not fit next time either: say so where operators look,
                 * naming host and size, instead of retrying in the log. */
                if (asprintf(&summary,
                             "the placement of %s (%zu units, %zu bytes) is larger than a message "
                             "may be (%u bytes); the host keeps what it runs. Move services "
                             "off it (fewer or smaller units) or drain it",
                             h->id, hu.n, placement_size(c, h->id, v->generation, &hu),
                             (unsigned) CODEC_MAX_MESSAGE_SIZE) >= 0)
                        (void) alert_raise(c, "placement-too-large",
                                           BATON__V1__SEVERITY__SEVERITY_CRITICAL, NULL, h->id,
                                           summary);
                return log_error_errno(r, "The placement of %s is too large to send.", h->id);
        }
        if (r < 0)
                return log_warning_errno(r, "Failed to send the placement of %s: %s", h->id,
                                         STRERROR(r));
        {
                _cleanup_free_ char *summary = NULL;
                if (asprintf(&summary, "the placement of %s fits in a message again", h->id) >= 0)
                        (void) alert_resolve(c, "placement-too-large", NULL, h->id, summary);
        }
        v->sent_at_us = now_realtime_usec();
        log_info("%s placement %" PRIu64 "/%" PRIu64 " to %s: %zu units.",
                 changed ? "Sent" : "Re-sent", c->epoch, v->generation, h->id, hu.n);
        return 1;
}

void fleet_check_host(Controller *c, Host *h) {
        HostView *v = h->userdata;
        uint64_t now = now_realtime_usec();
        _cleanup_free_ HostIndexEntry *mine = NULL;
        size_t n = 0;

        /* Nothing placed yet, or the host is at what we sent: (epoch,
         * generation) as the agent orders Placements. (Past it means another
         * run of this controller used our epoch: learn_epoch() raises it.) */
        if (!v || !v->sent_digest || h->alive == false ||
            (v->applied_epoch == c->epoch && v->applied_generation >= v->generation) ||
            v->applied_epoch > c->epoch)
                return;
        if (now - v->sent_at_us < RESEND_AFTER_US)
                return;
        mine = calloc(c->n_instances + 1, sizeof(HostIndexEntry));
        if (!mine)
                return;
        /* One host: its entries by a scan, in index order. */
        for (size_t i = 0; i < c->n_instances; i++)
                if (streq(c->instances[i].host, h->id)) {
                        mine[n++] = (HostIndexEntry){ c->instances[i].host, i };
                }
        (void) sync_host(c, h, &(HostIndex){ mine, n }, true);
}

/* ---- reconcile ----------------------------------------------------------- */

/* "k=v k=v" → labels (strings point into a copy kept in *ret_buf). */
static int split_labels(const char *text, SpecLabel **ret, size_t *ret_n, char **ret_buf) {
        _cleanup_free_ char *buf = strdup(strempty(text));
        SpecLabel *v;
        size_t n = 0, max = 1;

        if (!buf)
                return -ENOMEM;
        for (const char *p = buf; *p; p++)
                max += *p == ' ';
        v = calloc(max, sizeof(SpecLabel));
        if (!v)
                return -ENOMEM;
        for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
                char *eq = strchr(tok, '=');
                if (!eq)
                        continue;
                *eq = 0;
                v[n++] = (SpecLabel){ tok, eq + 1 };
        }
        *ret = v;
        *ret_n = n;
        *ret_buf = TAKE_PTR(buf);
        return 0;
}

static const char *problem_word(PlacementProblemKind k) {
        return k == PLACEMENT_NO_CAPACITY ? "no capacity" : "no eligible host";
}

bool fleet_instance_healthy(Controller *c, const FleetInstance *fi) {
        const ServiceSpec *s = fleet_service(c, fi->service);
        Host *h = host_table_get(&c->hosts, fi->host);
        HostView *v = h && h->alive ? h->userdata : NULL;
        const struct ObservedUnitState *o;
        _cleanup_free_ char *unit = NULL;

        if (!s || !v || fleet_instance_unit(c, s, fi->instance, &unit) < 0)
                return false;
        if (s->kind == SERVICE_SHARDED)
                return shards_instance_ready(c, s, fi->instance, fi->host);
        o = host_view_unit(v, unit);
        return o && streq_ptr(o->active_state, "active");
}

/* Drains go step by step: a drained host keeps its instances except, per
 * service, as many as MaxUnavailable allows beyond the instances of that
 * service that are not healthy now (one just moved and still starting
 * counts). So a drain never takes more of a service down at once than a
 * rolling restart would. Marks in *released (per c->instances entry) the
 * instances that may leave now; returns how many instances wait. */
static size_t drain_release(Controller *c, bool *released) {
        size_t waiting = 0;

        for (size_t i = 0; i < c->n_services; i++) {
                const ServiceSpec *s = c->services[i];
                uint32_t unhealthy = 0, allowance;

                for (size_t k = 0; k < c->n_instances; k++) {
                        const FleetInstance *fi = &c->instances[k];
                        if (streq(fi->service, s->name) && !fleet_instance_healthy(c, fi))
                                unhealthy++;
                }
                allowance = unhealthy < s->max_unavailable ? s->max_unavailable - unhealthy : 0;
                for (size_t k = 0; k < c->n_instances; k++) {
                        const FleetInstance *fi = &c->instances[k];
                        Host *h;

                        if (!streq(fi->service, s->name))
                                continue;
                        h = host_table_get(&c->hosts, fi->host);
                        if (!h || host_state(h) != HOST_DRAINED)
                                continue;
                        /* An instance that is down anyway costs nothing to move. */
                        if (!fleet_instance_healthy(c, fi))
                                released[k] = true;
                        else if (allowance > 0) {
                                released[k] = true;
                                allowance--;
                        } else
                                waiting++;
                }
        }
        return waiting;
}

int fleet_compute(Controller *c, ServiceSpec *const *services, size_t n_services,
                  PlacementResult *ret) {
        size_t n_hosts = c->hosts.n_hosts;
        _cleanup_free_ PlacementHost *hosts = calloc(n_hosts + 1, sizeof(PlacementHost));
        _cleanup_free_ Assignment *current = calloc(c->n_instances + 1, sizeof(Assignment));
        _cleanup_free_ char **bufs = calloc(n_hosts + 1, sizeof(char *));
        _cleanup_free_ SpecLabel **labels = calloc(n_hosts + 1, sizeof(SpecLabel *));
        _cleanup_free_ bool *released = calloc(c->n_instances + 1, sizeof(bool));
        size_t n_current = 0;
        int r = 0;

        if (!hosts || !current || !bufs || !labels || !released)
                return -ENOMEM;
        for (size_t i = 0; i < n_hosts; i++) {
                const Host *h = c->hosts.hosts[i];
                const HostView *v = h->userdata;

                hosts[i].id = h->id;
                hosts[i].schedulable = host_state(h) == HOST_UP;
                hosts[i].keeps = host_state(h) == HOST_DRAINED;
                hosts[i].memory_total = v ? v->memory_total : 0;
                r = split_labels(v ? v->labels : NULL, &labels[i], &hosts[i].n_labels, &bufs[i]);
                if (r < 0)
                        goto finish;
                hosts[i].labels = labels[i];
        }
        c->drain_waiting = drain_release(c, released);
        for (size_t i = 0; i < c->n_instances; i++)
                if (!released[i])
                        current[n_current++] =
                                (Assignment){ c->instances[i].service, c->instances[i].instance,
                                              c->instances[i].host };
        r = placement_compute((const ServiceSpec *const *) services, n_services, hosts, n_hosts,
                              current, n_current, ret);
finish:
        for (size_t i = 0; i < n_hosts; i++) {
                free(labels[i]);
                free(bufs[i]);
        }
        return r;
}

void fleet_sync(Controller *c) {
        HostIndex index;
        int r;

        r = host_index_build(c, &index);
        if (r < 0) {
                log_error_errno(r, "Failed to index the placement: %s", STRERROR(r));
                return;
        }
        for (size_t i = 0; i < c->hosts.n_hosts; i++) {
                Host *h = c->hosts.hosts[i];
                HostView *v = h->userdata;
                bool resend = v && v->resend;

                if (sync_host(c, h, &index, resend) >= 0 && v)
                        v->resend = false;
        }
        free(index.entries);
}

static int instance_cmp(const FleetInstance *x, const Assignment *a) {
        int k = strcmp(x->service, a->service);

        return k != 0 ? k : (x->instance > a->instance) - (x->instance < a->instance);
}

const FleetInstance *fleet_find_instance(Controller *c, const char *service, uint32_t instance) {
        size_t lo = 0, hi = c->n_instances;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const FleetInstance *fi = &c->instances[mid];
                int k = strcmp(fi->service, service);

                if (k == 0)
                        k = (fi->instance > instance) - (fi->instance < instance);
                if (k == 0)
                        return fi;
                if (k < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

int fleet_instance_unit(Controller *c, const ServiceSpec *s, uint32_t instance, char **ret) {
        ShardCopy copies[2];
        size_t n = 0;
        int r;

        if (s->kind != SERVICE_SHARDED)
                return service_instance_unit(s, instance, ret);
        r = shards_copies(c, s, instance, copies, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return service_instance_unit(s, instance, ret);
        /* The live copy (the first) while a new one starts beside it. */
        *ret = TAKE_PTR(copies[0].unit);
        for (size_t i = 0; i < n; i++)
                shard_copy_done(&copies[i]);
        return 0;
}

/* Sharded instances placed anew or moved start through the gate. */
static void mark_moved_shards(Controller *c, const PlacementResult *res) {
        size_t k = 0;

        /* Both lists are sorted by (service, instance). */
        for (size_t i = 0; i < res->n_assignments; i++) {
                const Assignment *a = &res->assignments[i];
                const ServiceSpec *s = fleet_service(c, a->service);
                int cmp = 1;

                if (!s || s->kind != SERVICE_SHARDED)
                        continue;
                while (k < c->n_instances && (cmp = instance_cmp(&c->instances[k], a)) < 0)
                        k++;
                if (k >= c->n_instances || cmp != 0 || !streq(c->instances[k].host, a->host))
                        shards_placed(c, s, a->instance);
        }
}

void fleet_change_done(FleetChange *ch) {
        placement_result_done(&ch->res);
        instances_free(ch->next, ch->n_next);
        *ch = (FleetChange){ 0 };
}

int fleet_change_prepare(Controller *c, ServiceSpec *const *services, size_t n_services,
                         FleetChange *ret) {
        FleetChange ch = { 0 };
        int r;

        r = fleet_compute(c, services, n_services, &ch.res);
        if (r < 0)
                return log_error_errno(r, "Failed to compute placement: %s", STRERROR(r));
        ch.next = calloc(ch.res.n_assignments + 1, sizeof(FleetInstance));
        if (!ch.next) {
                fleet_change_done(&ch);
                return -ENOMEM;
        }
        for (size_t i = 0; i < ch.res.n_assignments; i++) {
                const Assignment *a = &ch.res.assignments[i];

                ch.next[i] = (FleetInstance){ strdup(a->service), a->instance, strdup(a->host) };
                ch.n_next++;
                if (!ch.next[i].service || !ch.next[i].host) {
                        fleet_change_done(&ch);
                        return -ENOMEM;
                }
        }
        *ret = ch;
        return 0;
}

int fleet_change_write(Controller *c, const FleetChange *ch) {
        size_t i = 0, k = 0;
        int r = 0;

        /* Both sorted by (service, instance): one merge finds what changed. */
        while (r >= 0 && (i < c->n_instances || k < ch->n_next)) {
                const FleetInstance *old = i < c->n_instances ? &c->instances[i] : NULL;
                const FleetInstance *nw = k < ch->n_next ? &ch->next[k] : NULL;
                int cmp = !old ? 1 : !nw ? -1 : strcmp(old->service, nw->service);

                if (cmp == 0)
                        cmp = (old->instance > nw->instance) - (old->instance < nw->instance);
                if (cmp < 0) {
                        r = store_delete_instance(c->store, old->service, old->instance);
                        i++;
                } else if (cmp > 0) {
                        r = store_put_instance(c->store, nw->service, nw->instance, nw->host);
                        k++;
                } else {
                        if (!streq(old->host, nw->host))
                                r = store_put_instance(c->store, nw->service, nw->instance,
                                                       nw->host);
                        i++;
                        k++;
                }
        }
        return r;
}

void fleet_change_adopt(Controller *c, FleetChange *ch, const char *why) {
        const PlacementResult *res = &ch->res;

        mark_moved_shards(c, res);
        instances_free(c->instances, c->n_instances);
        c->instances = TAKE_PTR(ch->next);
        c->n_instances = ch->n_next;
        ch->n_next = 0;

        /* placement-impossible: one alert per service, resolved once placed. */
        for (size_t i = 0; i < c->n_services; i++) {
                const char *svc = c->services[i]->name;
                _cleanup_free_ char *summary = NULL;
                size_t unplaced = 0;
                const PlacementProblem *first = NULL;

                for (size_t k = 0; k < res->n_problems; k++)
                        if (streq(res->problems[k].service, svc)) {
                                unplaced++;
                                if (!first)
                                        first = &res->problems[k];
                        }
                if (unplaced > 0) {
                        if (asprintf(&summary, "%zu instance(s) of %s cannot be placed: %s (%s)",
                                     unplaced, svc, first->reason, problem_word(first->kind)) < 0)
                                continue;
                        (void) alert_raise(c, "placement-impossible",
                                           BATON__V1__SEVERITY__SEVERITY_CRITICAL, svc, NULL,
                                           summary);
                } else {
                        if (asprintf(&summary, "every instance of %s is placed", svc) < 0)
                                continue;
                        (void) alert_resolve(c, "placement-impossible", svc, NULL, summary);
                }
        }

        fleet_sync(c);

        log_info("Reconciled (%s): %zu instances placed, %zu moved, %zu unplaced.", why,
                 res->n_assignments, res->n_moved, res->n_problems);
}

int fleet_reconcile(Controller *c, const char *why) {
        _cleanup_(fleet_change_done) FleetChange ch = { 0 };
        size_t moved;
        int r;

        r = fleet_change_prepare(c, c->services, c->n_services, &ch);
        if (r < 0)
                return r;
        moved = ch.res.n_moved;

        /* One transaction: the placement on disk is always a whole one. */
        r = store_begin(c->store);
        if (r >= 0)
                r = fleet_change_write(c, &ch);
        if (r >= 0)
                r = store_commit(c->store);
        if (r < 0) {
                store_rollback(c->store);
                c->counters.store_errors++;
                return log_error_errno(r, "Failed to persist the placement (%s): %s", why,
                                       store_error(c->store));
        }
        fleet_change_adopt(c, &ch, why);
        return (int) MIN(moved, (size_t) INT32_MAX);
}

void fleet_drain_step(Controller *c) {
        _cleanup_free_ bool *released = NULL;
        bool any = false;

        if (c->drain_waiting == 0)
                return;
        released = calloc(c->n_instances + 1, sizeof(bool));
        if (!released)
                return;
        (void) drain_release(c, released);
        for (size_t i = 0; i < c->n_instances && !any; i++) {
                Host *h = host_table_get(&c->hosts, c->instances[i].host);
                /* Released and still on the drained host: its turn has come. */
                any = released[i] && h && host_state(h) == HOST_DRAINED;
        }
        if (any)
                (void) fleet_reconcile(c, "drain step");
}

/* A Restart that waited a minute is void: the agent refuses it. */
#define RESTART_VALID_US (60 * USEC_PER_SEC)
#define RESTART_EXPIRATION_MS "60000"

int fleet_send_restart(Controller *c, const char *service, uint32_t instance, char *ret_id,
                       const char **ret_host) {
        Baton__V1__Restart rs = BATON__V1__RESTART__INIT;
        _cleanup_free_ char *unit = NULL;
        const FleetInstance *fi = NULL;
        const ServiceSpec *s = fleet_service(c, service);
        int r;

        fi = fleet_find_instance(c, service, instance);
        if (!s || !fi)
                return -ENOENT;
        r = fleet_instance_unit(c, s, instance, &unit);
        if (r >= 0)
                r = random_id(ret_id);
        if (r < 0)
                return r;

        rs.id = ret_id;
        rs.host = fi->host;
        rs.epoch = c->epoch;
        rs.unit = unit;
        rs.mode = (char *) "restart";
        rs.not_after_us = now_realtime_usec() + RESTART_VALID_US;
        r = controller_publish(c, TOPOLOGY_EXCHANGE_CMD, fi->host, &rs.base,
                               &(PublishOptions){ .persistent = true,
                                                  .flags = BROKER_PUBLISH_MANDATORY,
                                                  .expiration = RESTART_EXPIRATION_MS });
        if (r < 0)
                return r;
        log_info("Sent restart %s of %s to %s.", ret_id, unit, fi->host);
        if (ret_host)
                *ret_host = fi->host;
        return 0;
}
