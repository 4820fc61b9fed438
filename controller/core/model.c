/* SPDX-License-Identifier: MIT */
/* The model's containers: lifetimes, ordered lookups, loading. */
#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* ---- hosts ----------------------------------------------------------------- */

void unit_obs_done(UnitObs *u) {
        free(u->name);
        free(u->active_state);
        free(u->sub_state);
        *u = (UnitObs){ 0 };
}

void copy_obs_done(CopyObs *c) {
        free(c->unit);
        free(c->service);
        rangelist_done(&c->assigned);
        rangelist_done(&c->ready);
        rangelist_done(&c->connecting);
        rangelist_done(&c->failed);
        *c = (CopyObs){ 0 };
}

void host_model_clear_units(HostModel *v) {
        for (size_t i = 0; i < v->n_units; i++)
                unit_obs_done(&v->units[i]);
        v->units = mfree(v->units);
        v->n_units = 0;
        v->units_active = 0;
}

void host_model_clear_copies(HostModel *v) {
        for (size_t i = 0; i < v->n_copies; i++)
                copy_obs_done(&v->copies[i]);
        v->copies = mfree(v->copies);
        v->n_copies = 0;
}

HostModel *host_model_free(HostModel *v) {
        if (!v)
                return NULL;
        host_model_clear_units(v);
        host_model_clear_copies(v);
        for (size_t i = 0; i < v->n_flaps; i++)
                free(v->flaps[i].unit);
        free(v->flaps);
        free(v->placed);
        free(v->boot_id);
        free(v->agent_version);
        free(v->labels);
        free(v->label_list);
        free(v->label_buf);
        free(v->systemd_version);
        free(v->system_state);
        free(v);
        return NULL;
}

void host_model_free_void(void *v) {
        host_model_free(v);
}

static const UnitObs *find_unit(const HostModel *v, const char *name) {
        size_t lo = 0, hi = v ? v->n_units : 0;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int k = strcmp(v->units[mid].name, name);

                if (k == 0)
                        return &v->units[mid];
                if (k < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

bool unit_state_runs(const char *active_state) {
        return streq_ptr(active_state, "active") || streq_ptr(active_state, "reloading");
}

const UnitObs *host_model_unit(const HostModel *v, const char *name) {
        return find_unit(v, name);
}

UnitObs *host_model_unit_mut(HostModel *v, const char *name) {
        return (UnitObs *) find_unit(v, name);
}

int host_model_set_labels(HostModel *v, const char *labels) {
        _cleanup_free_ char *text = strdup(strempty(labels)), *buf = strdup(strempty(labels));
        SpecLabel *list;
        size_t n = 0, max = 1;

        if (!text || !buf)
                return -ENOMEM;
        for (const char *p = buf; *p; p++)
                max += *p == ' ';
        list = calloc(max, sizeof(SpecLabel));
        if (!list)
                return -ENOMEM;
        for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok;
             tok = strtok_r(NULL, " ", &save)) {
                char *eq = strchr(tok, '=');
                if (!eq)
                        continue;
                *eq = '\0';
                list[n++] = (SpecLabel){ tok, eq + 1 };
        }
        free(v->labels);
        free(v->label_list);
        free(v->label_buf);
        v->labels = TAKE_PTR(text);
        v->label_buf = TAKE_PTR(buf);
        v->label_list = list;
        v->n_labels = n;
        return 0;
}

/* ---- shard states ---------------------------------------------------------- */

ShardState *shard_state_free(ShardState *s) {
        if (!s)
                return NULL;
        free(s->service);
        shard_layout_done(&s->layout);
        reshard_free(s->reshard);
        budget_ledger_done(&s->ledger);
        start_gate_done(&s->gate);
        free(s->waiting);
        for (size_t i = 0; i < s->n_holds; i++)
                rangelist_done(&s->holds[i].shards);
        free(s->holds);
        free(s);
        return NULL;
}

static int hold_one(ShardState *ss, uint32_t instance, bool new_copy, const RangeList *set,
                    usec_t now) {
        ShardHold *h = &ss->holds[ss->n_holds];

        if (rangelist_count(set) == 0)
                return 0;
        *h = (ShardHold){ .instance = instance, .new_copy = new_copy, .since = now };
        if (rangelist_copy(&h->shards, set) < 0)
                return -ENOMEM;
        start_gate_take(&ss->gate, set);
        ss->n_holds++;
        return 0;
}

/* Every copy that runs holds its buckets, from `now`, until it reports
 * ready: the live copies of the layout, and during a reshard both copies of
 * each instance it changes (a new copy that is live already counts as the
 * live one). A live copy not let through the gate yet holds nothing. */
static int hold_everything(ShardState *ss, usec_t now) {
        const Reshard *rs = shard_state_resharding(ss) ? ss->reshard : NULL;
        size_t n = ss->layout.n_instances + 2 * (rs ? rs->n_items : 0);
        int k = 0;

        ss->holds = calloc(n + 1, sizeof(ShardHold));
        if (!ss->holds)
                return -ENOMEM;
        for (uint32_t i = 0; k >= 0 && i < ss->layout.n_instances; i++) {
                bool waiting = i < ss->n_waiting && ss->waiting[i];
                bool changed = false;

                for (size_t j = 0; rs && j < rs->n_items; j++)
                        changed = changed || rs->items[j].instance == i;
                if (!changed && !waiting)
                        k = hold_one(ss, i, false, &ss->layout.sets[i], now);
        }
        for (size_t j = 0; k >= 0 && rs && j < rs->n_items; j++) {
                const ReshardItem *it = &rs->items[j];
                bool waiting = it->instance < ss->n_waiting && ss->waiting[it->instance];

                if (it->state != RITEM_DONE && !waiting)
                        k = hold_one(ss, it->instance, false, &it->from, now);
                if (k >= 0 && (it->state == RITEM_STARTING || it->state == RITEM_READY))
                        k = hold_one(ss, it->instance, true, &it->to, now);
                else if (k >= 0 && it->state == RITEM_DONE && !waiting)
                        k = hold_one(ss, it->instance, false, &it->to, now);
        }
        return k;
}

int shard_state_restore(const ServiceSpec *s, ShardLayout *layout, Reshard *reshard,
                        BudgetLedger *ledger, const RangeList *waiting, usec_t now,
                        ShardState **ret) {
        _cleanup_(shard_state_freep) ShardState *ss = calloc(1, sizeof(ShardState));
        int r;

        if (!ss) {
                shard_layout_done(layout);
                reshard_free(reshard);
                budget_ledger_done(ledger);
                return -ENOMEM;
        }
        ss->layout = *layout;
        *layout = (ShardLayout){ 0 };
        ss->reshard = reshard;
        ss->ledger = *ledger;
        *ledger = (BudgetLedger){ 0 };
        ss->service = strdup(s->name);
        if (!ss->service)
                return -ENOMEM;
        /* Nothing says when the last identify was: every bucket waits one
         * interval. */
        r = start_gate_init(&ss->gate, s->identify_concurrency, s->identify_interval,
                            now > USEC_INFINITY - s->identify_interval
                                    ? USEC_INFINITY
                                    : now + s->identify_interval);
        if (r < 0)
                return r;
        ss->n_waiting = ss->layout.n_instances;
        if (shard_state_resharding(ss))
                ss->n_waiting = MAX(ss->n_waiting, ss->reshard->to_instances);
        ss->waiting = calloc(ss->n_waiting + 1, sizeof(bool));
        if (!ss->waiting)
                return -ENOMEM;
        for (uint32_t i = 0; waiting && i < ss->n_waiting; i++)
                ss->waiting[i] = rangelist_contains(waiting, i);
        r = hold_everything(ss, now);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ss);
        return 0;
}

int shard_state_waiting(const ShardState *s, RangeList *ret) {
        rangelist_init(ret);
        for (uint32_t i = 0; i < s->n_waiting; i++)
                if (s->waiting[i] && rangelist_add(ret, i) < 0) {
                        rangelist_done(ret);
                        return -ENOMEM;
                }
        return 0;
}

bool shard_state_resharding(const ShardState *s) {
        return s && s->reshard && s->reshard->state != RESHARD_DONE &&
               s->reshard->state != RESHARD_ABORTED;
}

int shard_state_copy(const ShardState *s, ShardState **ret) {
        _cleanup_(shard_state_freep) ShardState *c = NULL;
        int r;

        c = calloc(1, sizeof(ShardState));
        if (!c)
                return -ENOMEM;
        budget_ledger_init(&c->ledger);
        c->service = strdup(s->service);
        if (!c->service)
                return -ENOMEM;
        r = shard_layout_copy(&c->layout, &s->layout);
        if (r < 0)
                return r;
        if (s->reshard) {
                r = reshard_copy(s->reshard, &c->reshard);
                if (r < 0)
                        return r;
        }
        r = budget_ledger_copy(&s->ledger, &c->ledger);
        if (r < 0)
                return r;
        r = start_gate_copy(&c->gate, &s->gate);
        if (r < 0)
                return r;
        if (s->n_waiting > 0) {
                c->waiting = malloc(s->n_waiting * sizeof(bool));
                if (!c->waiting)
                        return -ENOMEM;
                memcpy(c->waiting, s->waiting, s->n_waiting * sizeof(bool));
        }
        c->n_waiting = s->n_waiting;
        if (s->n_holds > 0) {
                c->holds = calloc(s->n_holds, sizeof(ShardHold));
                if (!c->holds)
                        return -ENOMEM;
                for (size_t i = 0; i < s->n_holds; i++) {
                        c->holds[i] = s->holds[i];
                        rangelist_init(&c->holds[i].shards);
                        c->n_holds++;
                        r = rangelist_copy(&c->holds[i].shards, &s->holds[i].shards);
                        if (r < 0)
                                return r;
                }
        }
        c->budget_low = s->budget_low;
        c->unowned_since = s->unowned_since;
        c->map_digest = s->map_digest;
        *ret = TAKE_PTR(c);
        return 0;
}

void open_alert_done(OpenAlert *a) {
        free(a->id);
        free(a->service);
        free(a->host);
        free(a->summary);
        *a = (OpenAlert){ 0 };
}

/* ---- the model ------------------------------------------------------------- */

void model_init(Model *m, const ModelConfig *config) {
        *m = (Model){ .config = *config, .next_rollout_id = 1 };
        host_table_init(&m->hosts, config->host_timeout);
}

void model_done(Model *m) {
        host_table_done(&m->hosts, host_model_free_void);
        for (size_t i = 0; i < m->n_services; i++)
                service_spec_free(m->services[i]);
        free(m->services);
        for (size_t i = 0; i < m->n_instances; i++) {
                free(m->instances[i].service);
                free(m->instances[i].host);
        }
        free(m->instances);
        for (size_t i = 0; i < m->n_shards; i++)
                shard_state_free(m->shards[i]);
        free(m->shards);
        for (size_t i = 0; i < m->n_rollouts; i++)
                rollout_free(m->rollouts[i]);
        free(m->rollouts);
        for (size_t i = 0; i < m->n_alerts; i++)
                open_alert_done(&m->alerts[i]);
        free(m->alerts);
        *m = (Model){ 0 };
}

int instance_key_cmp(const char *s1, uint32_t i1, const char *s2, uint32_t i2) {
        int k = strcmp(s1, s2);

        return k != 0 ? k : (i1 > i2) - (i1 < i2);
}

/* Binary search over a sorted array of pointers to structs whose first
 * member is a `char *` name. */
static void *find_named(void *const *v, size_t n, const char *name) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int k = strcmp(*(char *const *) v[mid], name);

                if (k == 0)
                        return v[mid];
                if (k < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

const ServiceSpec *model_service(const Model *m, const char *name) {
        return find_named((void *const *) m->services, m->n_services, name);
}

const ShardState *model_shards(const Model *m, const char *service) {
        return find_named((void *const *) m->shards, m->n_shards, service);
}

const Rollout *model_rollout(const Model *m, const char *service) {
        return find_named((void *const *) m->rollouts, m->n_rollouts, service);
}

size_t model_instance_index(const Model *m, const char *service, uint32_t instance) {
        size_t lo = 0, hi = m->n_instances;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const Instance *in = &m->instances[mid];

                if (instance_key_cmp(in->service, in->instance, service, instance) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

const Instance *model_instance(const Model *m, const char *service, uint32_t instance) {
        size_t i = model_instance_index(m, service, instance);

        if (i < m->n_instances && m->instances[i].instance == instance &&
            streq(m->instances[i].service, service))
                return &m->instances[i];
        return NULL;
}

static const char *service_at(const void *base, size_t size, size_t i) {
        return *(char *const *) (const void *) ((const char *) base + i * size);
}

size_t service_run(const void *base, size_t n, size_t size, const char *service,
                   size_t *ret_first) {
        size_t lo = 0, hi = n, first;

        /* Two binary searches, not a walk: a service of 10,000 instances is
         * asked after many times a pass. */
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(service_at(base, size, mid), service) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        first = lo;
        hi = n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(service_at(base, size, mid), service) <= 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_first = first;
        return lo - first;
}

_Static_assert(offsetof(Instance, service) == 0, "service_run() reads the service first");

size_t model_service_instances(const Model *m, const char *service, const Instance **ret) {
        size_t first,
                n = service_run(m->instances, m->n_instances, sizeof(Instance), service, &first);

        *ret = first < m->n_instances ? &m->instances[first] : NULL;
        return n;
}

const OpenAlert *model_alert(const Model *m, const char *id) {
        size_t lo = 0, hi = m->n_alerts;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int k = strcmp(m->alerts[mid].id, id);

                if (k == 0)
                        return &m->alerts[mid];
                if (k < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

HostModel *model_host(const Model *m, const char *id) {
        Host *h = host_table_get(&m->hosts, id);
        return h ? h->userdata : NULL;
}

/* ---- loading --------------------------------------------------------------- */

static int grow(void **v, size_t n, size_t size) {
        void *p = realloc(*v, (n + 1) * size);

        if (!p)
                return -ENOMEM;
        *v = p;
        return 0;
}

int model_add_service(Model *m, ServiceSpec *s) {
        if (grow((void **) &m->services, m->n_services, sizeof(ServiceSpec *)) < 0) {
                service_spec_free(s);
                return -ENOMEM;
        }
        m->services[m->n_services++] = s;
        return 0;
}

int model_add_instance(Model *m, const char *service, uint32_t instance, const char *host) {
        Instance in = { strdup(service), instance, strdup(host) };

        if (!in.service || !in.host ||
            grow((void **) &m->instances, m->n_instances, sizeof(Instance)) < 0) {
                free(in.service);
                free(in.host);
                return -ENOMEM;
        }
        m->instances[m->n_instances++] = in;
        return 0;
}

int model_add_shards(Model *m, ShardState *s) {
        if (grow((void **) &m->shards, m->n_shards, sizeof(ShardState *)) < 0) {
                shard_state_free(s);
                return -ENOMEM;
        }
        m->shards[m->n_shards++] = s;
        /* Reshards and rollouts share their ids. */
        if (s->reshard && s->reshard->id >= m->next_rollout_id)
                m->next_rollout_id = s->reshard->id + 1;
        return 0;
}

int model_add_rollout(Model *m, Rollout *r) {
        if (grow((void **) &m->rollouts, m->n_rollouts, sizeof(Rollout *)) < 0) {
                rollout_free(r);
                return -ENOMEM;
        }
        m->rollouts[m->n_rollouts++] = r;
        if (r->id >= m->next_rollout_id)
                m->next_rollout_id = r->id + 1;
        return 0;
}

int model_add_alert(Model *m, OpenAlert *a) {
        if (grow((void **) &m->alerts, m->n_alerts, sizeof(OpenAlert)) < 0) {
                open_alert_done(a);
                return -ENOMEM;
        }
        m->alerts[m->n_alerts++] = *a;
        *a = (OpenAlert){ 0 };
        return 0;
}

static int named_cmp(const void *a, const void *b) {
        return strcmp(**(char *const *const *) a, **(char *const *const *) b);
}

static int instance_cmp(const void *a, const void *b) {
        const Instance *x = a, *y = b;
        return instance_key_cmp(x->service, x->instance, y->service, y->instance);
}

static int alert_cmp(const void *a, const void *b) {
        return strcmp(((const OpenAlert *) a)->id, ((const OpenAlert *) b)->id);
}

/* qsort() of nothing may be given no array at all. */
static void sort_any(void *v, size_t n, size_t size, int (*cmp)(const void *, const void *)) {
        if (n > 1)
                qsort(v, n, size, cmp);
}

int model_index(Model *m) {
        sort_any(m->services, m->n_services, sizeof(ServiceSpec *), named_cmp);
        sort_any(m->instances, m->n_instances, sizeof(Instance), instance_cmp);
        sort_any(m->shards, m->n_shards, sizeof(ShardState *), named_cmp);
        sort_any(m->rollouts, m->n_rollouts, sizeof(Rollout *), named_cmp);
        sort_any(m->alerts, m->n_alerts, sizeof(OpenAlert), alert_cmp);

        for (size_t i = 0; i < m->hosts.n_hosts; i++) {
                HostModel *v = m->hosts.hosts[i]->userdata;
                if (v) {
                        v->placed = mfree(v->placed);
                        v->n_placed = 0;
                        v->memory_reserved = 0;
                }
        }
        /* Instances are sorted, so each host's list comes out sorted too. */
        for (size_t i = 0; i < m->n_instances; i++) {
                const Instance *in = &m->instances[i];
                const ServiceSpec *s = model_service(m, in->service);
                HostModel *v = model_host(m, in->host);

                if (!v)
                        return -ENOENT;
                if (grow((void **) &v->placed, v->n_placed, sizeof(InstanceKey)) < 0)
                        return -ENOMEM;
                v->placed[v->n_placed++] = (InstanceKey){ in->service, in->instance };
                v->memory_reserved += s ? s->memory : 0;
        }
        return 0;
}
