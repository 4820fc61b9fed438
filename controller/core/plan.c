/* SPDX-License-Identifier: MIT */
/* Plans: building, freeing, and applying one to the model. Applying is split
 * in two so that it cannot fail after the shell committed the records:
 * plan_reserve() allocates, plan_apply() only moves. */
#include <assert.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

void plan_init(Plan *p) {
        *p = (Plan){ 0 };
}

static void plan_unit_done(PlanUnit *u) {
        free(u->name);
        free(u->shards);
}

void plan_done(Plan *p) {
        for (size_t i = 0; i < p->n_services; i++) {
                free(p->services[i].name);
                service_spec_free(p->services[i].spec);
        }
        free(p->services);
        for (size_t i = 0; i < p->n_instances; i++) {
                free(p->instances[i].service);
                free(p->instances[i].host);
        }
        free(p->instances);
        for (size_t i = 0; i < p->n_hosts; i++)
                free(p->hosts[i].host);
        free(p->hosts);
        for (size_t i = 0; i < p->n_sends; i++) {
                free(p->sends[i].host);
                for (size_t k = 0; k < p->sends[i].n_units; k++)
                        plan_unit_done(&p->sends[i].units[k]);
                free(p->sends[i].units);
        }
        free(p->sends);
        for (size_t i = 0; i < p->n_later; i++)
                free(p->later[i].host);
        free(p->later);
        for (size_t i = 0; i < p->n_later_services; i++)
                free(p->later_services[i]);
        free(p->later_services);
        for (size_t i = 0; i < p->n_restarts; i++) {
                free(p->restarts[i].id);
                free(p->restarts[i].host);
                free(p->restarts[i].unit);
                free(p->restarts[i].service);
        }
        free(p->restarts);
        for (size_t i = 0; i < p->n_alerts; i++) {
                free(p->alerts[i].service);
                free(p->alerts[i].host);
                free(p->alerts[i].summary);
                open_alert_done(&p->alerts[i].open);
        }
        free(p->alerts);
        for (size_t i = 0; i < p->n_rollouts; i++) {
                free(p->rollouts[i].service);
                rollout_free(p->rollouts[i].rollout);
        }
        free(p->rollouts);
        for (size_t i = 0; i < p->n_shards; i++) {
                free(p->shards[i].service);
                shard_state_free(p->shards[i].state);
        }
        free(p->shards);
        for (size_t i = 0; i < p->n_map_changed; i++)
                free(p->map_changed[i]);
        free(p->map_changed);
        for (size_t i = 0; i < p->n_store_hosts; i++)
                free(p->store_hosts[i]);
        free(p->store_hosts);
        for (size_t i = 0; i < p->n_logs; i++)
                free(p->logs[i].text);
        free(p->logs);
        for (size_t i = 0; i < p->n_problems; i++)
                free(p->problems[i].reason);
        free(p->problems);
        *p = (Plan){ 0 };
}

bool plan_has_records(const Plan *p) {
        if (p->n_services > 0 || p->n_instances > 0 || p->n_hosts > 0 || p->n_rollouts > 0 ||
            p->epoch > 0 || p->n_store_hosts > 0)
                return true;
        for (size_t i = 0; i < p->n_sends; i++)
                if (p->sends[i].new_generation)
                        return true;
        for (size_t i = 0; i < p->n_shards; i++)
                if (p->shards[i].store)
                        return true;
        for (size_t i = 0; i < p->n_alerts; i++)
                if (!alert_kind_is_notice(p->alerts[i].kind))
                        return true;
        return false;
}

int plan_store_host(Plan *p, const char *host) {
        char **v;

        for (size_t i = 0; i < p->n_store_hosts; i++)
                if (streq(p->store_hosts[i], host))
                        return 0;
        v = realloc(p->store_hosts, (p->n_store_hosts + 1) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        p->store_hosts = v;
        v[p->n_store_hosts] = strdup(host);
        if (!v[p->n_store_hosts])
                return -ENOMEM;
        p->n_store_hosts++;
        return 0;
}

int plan_log(Plan *p, int level, const char *fmt, ...) {
        PlanLog *v = realloc(p->logs, (p->n_logs + 1) * sizeof(PlanLog));
        va_list ap;
        char *text;
        int r;

        if (!v)
                return -ENOMEM;
        p->logs = v;
        va_start(ap, fmt);
        r = vasprintf(&text, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        p->logs[p->n_logs++] = (PlanLog){ level, text };
        return 0;
}

int plan_alert(Plan *p, AlertKind kind, bool raise, const char *service, const char *host,
               const char *fmt, ...) {
        PlanAlert *v = realloc(p->alerts, (p->n_alerts + 1) * sizeof(PlanAlert));
        PlanAlert a = { .kind = kind, .raise = raise };
        va_list ap;
        int r;

        if (!v)
                return -ENOMEM;
        p->alerts = v;
        va_start(ap, fmt);
        r = vasprintf(&a.summary, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        a.service = service ? strdup(service) : NULL;
        a.host = host ? strdup(host) : NULL;
        if ((service && !a.service) || (host && !a.host)) {
                free(a.summary);
                free(a.service);
                free(a.host);
                return -ENOMEM;
        }
        p->alerts[p->n_alerts++] = a;
        return 0;
}

/* ---- applying -------------------------------------------------------------- */

static int reserve(void **v, size_t n, size_t size) {
        void *q = realloc(*v, MAX(n, (size_t) 1) * size);

        if (!q)
                return -ENOMEM;
        *v = q;
        return 0;
}

int plan_reserve(Plan *p, Model *m) {
        size_t alerts = m->n_alerts;
        int r;

        r = reserve((void **) &m->services, m->n_services + p->n_services, sizeof(ServiceSpec *));
        if (r >= 0)
                r = reserve((void **) &m->instances, m->n_instances + p->n_instances,
                            sizeof(Instance));
        if (r >= 0)
                r = reserve((void **) &m->rollouts, m->n_rollouts + p->n_rollouts,
                            sizeof(Rollout *));
        if (r >= 0)
                r = reserve((void **) &m->shards, m->n_shards + p->n_shards, sizeof(ShardState *));
        for (size_t i = 0; i < p->n_alerts; i++)
                alerts += p->alerts[i].raise;
        if (r >= 0)
                r = reserve((void **) &m->alerts, alerts, sizeof(OpenAlert));
        /* Each host's list may take every instance the plan places on it:
         * counted first, so that a plan placing 200,000 instances reserves
         * what each host gets, not 200,000 entries on each. */
        for (size_t i = 0; i < p->n_instances; i++) {
                HostModel *v = p->instances[i].host ? model_host(m, p->instances[i].host) : NULL;
                if (v)
                        v->n_incoming++;
        }
        for (size_t i = 0; i < p->n_instances; i++) {
                HostModel *v = p->instances[i].host ? model_host(m, p->instances[i].host) : NULL;
                if (!v || v->n_incoming == 0)
                        continue;
                if (r >= 0)
                        r = reserve((void **) &v->placed, v->n_placed + v->n_incoming,
                                    sizeof(InstanceKey));
                v->n_incoming = 0;
        }
        /* The alerts' strings: made now, so that opening one cannot fail. */
        for (size_t i = 0; r >= 0 && i < p->n_alerts; i++) {
                PlanAlert *a = &p->alerts[i];

                if (!a->raise && !alert_kind_is_notice(a->kind)) {
                        _cleanup_free_ char *id = alert_id(a->kind, a->service, a->host);
                        const OpenAlert *o = id ? model_alert(m, id) : NULL;

                        if (!id)
                                r = -ENOMEM;
                        else if (o)
                                a->raised_at_us = o->raised_at_us;
                        continue;
                }
                if (!a->raise || alert_kind_is_notice(a->kind) || a->open.id)
                        continue;
                a->open = (OpenAlert){
                        .id = alert_id(a->kind, a->service, a->host),
                        .kind = a->kind,
                        .severity = alert_kind_severity(a->kind),
                        .service = a->service ? strdup(a->service) : NULL,
                        .host = a->host ? strdup(a->host) : NULL,
                        .summary = strdup(a->summary),
                };
                if (!a->open.id || !a->open.summary || (a->service && !a->open.service) ||
                    (a->host && !a->open.host)) {
                        open_alert_done(&a->open);
                        r = -ENOMEM;
                }
        }
        return r;
}

/* Insertion into / removal from a sorted array, in place (capacity reserved). */
static void insert_at(void *base, size_t *n, size_t at, const void *elem, size_t size) {
        uint8_t *b = base;

        memmove(b + (at + 1) * size, b + at * size, (*n - at) * size);
        memcpy(b + at * size, elem, size);
        (*n)++;
}

static void remove_at(void *base, size_t *n, size_t at, size_t size) {
        uint8_t *b = base;

        memmove(b + at * size, b + (at + 1) * size, (*n - at - 1) * size);
        (*n)--;
}

/* Index of the first element of a sorted array of pointers to named structs
 * whose name is ≥ name; *ret_found if equal. */
static size_t named_lower_bound(void *const *v, size_t n, const char *name, bool *ret_found) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(*(char *const *) v[mid], name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = lo < n && streq(*(char *const *) v[lo], name);
        return lo;
}

/* Puts obj (owned; NULL removes) as the element named `name`; the element
 * it replaces is freed with free_fn. */
static void replace_named(void **v, size_t *n, const char *name, void *obj,
                          void (*free_fn)(void *)) {
        bool found;
        size_t at = named_lower_bound(v, *n, name, &found);

        if (found) {
                free_fn(v[at]);
                if (obj)
                        v[at] = obj;
                else
                        remove_at(v, n, at, sizeof(void *));
        } else if (obj)
                insert_at(v, n, at, &obj, sizeof(void *));
}

static void spec_free_void(void *p) {
        service_spec_free(p);
}

static void rollout_free_void(void *p) {
        rollout_free(p);
}

static void shards_free_void(void *p) {
        shard_state_free(p);
}

static size_t key_lower_bound(const InstanceKey *v, size_t n, const char *service,
                              uint32_t instance) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (instance_key_cmp(v[mid].service, v[mid].instance, service, instance) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static void unplace(Model *m, const Instance *in) {
        HostModel *v = model_host(m, in->host);
        const ServiceSpec *s = model_service(m, in->service);
        size_t at;

        if (!v)
                return;
        at = key_lower_bound(v->placed, v->n_placed, in->service, in->instance);
        if (at < v->n_placed && v->placed[at].instance == in->instance &&
            streq(v->placed[at].service, in->service)) {
                remove_at(v->placed, &v->n_placed, at, sizeof(InstanceKey));
                v->memory_reserved -= MIN(v->memory_reserved, s ? s->memory : 0);
        }
}

static void place(Model *m, const Instance *in) {
        HostModel *v = model_host(m, in->host);
        const ServiceSpec *s = model_service(m, in->service);
        InstanceKey key = { in->service, in->instance };
        size_t at;

        if (!v)
                return;
        at = key_lower_bound(v->placed, v->n_placed, in->service, in->instance);
        insert_at(v->placed, &v->n_placed, at, &key, sizeof(InstanceKey));
        v->memory_reserved += s ? s->memory : 0;
}

static Instance *find_instance(Model *m, const char *service, uint32_t instance) {
        size_t at = model_instance_index(m, service, instance);

        if (at < m->n_instances && m->instances[at].instance == instance &&
            streq(m->instances[at].service, service))
                return &m->instances[at];
        return NULL;
}

/* Off their hosts' lists, with the specs they were placed with. */
static void unplace_changed(Plan *p, Model *m) {
        for (size_t i = 0; i < p->n_instances; i++) {
                Instance *in = find_instance(m, p->instances[i].service, p->instances[i].instance);
                if (in)
                        unplace(m, in);
        }
}

/* The new hosts, onto their lists, with the new specs. */
static void place_changed(Plan *p, Model *m) {
        for (size_t i = 0; i < p->n_instances; i++) {
                PlanInstance *pi = &p->instances[i];
                size_t at = model_instance_index(m, pi->service, pi->instance);
                Instance *in = at < m->n_instances && m->instances[at].instance == pi->instance &&
                                               streq(m->instances[at].service, pi->service)
                                       ? &m->instances[at]
                                       : NULL;

                if (in && pi->host) {
                        free(in->host);
                        in->host = TAKE_PTR(pi->host);
                        place(m, in);
                } else if (in) {
                        free(in->service);
                        free(in->host);
                        remove_at(m->instances, &m->n_instances, at, sizeof(Instance));
                } else if (pi->host) {
                        Instance n = { TAKE_PTR(pi->service), pi->instance, TAKE_PTR(pi->host) };

                        insert_at(m->instances, &m->n_instances, at, &n, sizeof(Instance));
                        place(m, &m->instances[at]);
                }
        }
}

/* Memory= of a service changed: every host's reservation again. */
static void recount_memory(Model *m) {
        for (size_t i = 0; i < m->hosts.n_hosts; i++) {
                HostModel *v = m->hosts.hosts[i]->userdata;
                if (v)
                        v->memory_reserved = 0;
        }
        for (size_t i = 0; i < m->n_instances; i++) {
                HostModel *v = model_host(m, m->instances[i].host);
                const ServiceSpec *s = model_service(m, m->instances[i].service);
                if (v && s)
                        v->memory_reserved += s->memory;
        }
}

static void apply_alert(PlanAlert *a, Model *m, uint64_t now_us) {
        _cleanup_free_ char *id = NULL;
        const char *key;
        size_t lo = 0, hi = m->n_alerts;

        if (alert_kind_is_notice(a->kind))
                return;
        key = a->open.id;
        if (!key) {
                id = alert_id(a->kind, a->service, a->host);
                if (!id)
                        return; /* a resolution not recorded: resolved again next time */
                key = id;
        }
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(m->alerts[mid].id, key) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo < m->n_alerts && streq(m->alerts[lo].id, key)) {
                if (!a->raise) {
                        open_alert_done(&m->alerts[lo]);
                        remove_at(m->alerts, &m->n_alerts, lo, sizeof(OpenAlert));
                }
                return;
        }
        if (a->raise && a->open.id) {
                a->open.raised_at_us = now_us;
                insert_at(m->alerts, &m->n_alerts, lo, &a->open, sizeof(OpenAlert));
                a->open = (OpenAlert){ 0 };
        }
}

void plan_apply(Plan *p, Model *m, uint64_t now_us) {
        bool memory_changed = false;

        unplace_changed(p, m);
        for (size_t i = 0; i < p->n_services; i++) {
                PlanService *ps = &p->services[i];
                const ServiceSpec *old = model_service(m, ps->name);

                memory_changed =
                        memory_changed || (old && (!ps->spec || ps->spec->memory != old->memory));
                replace_named((void **) m->services, &m->n_services, ps->name, TAKE_PTR(ps->spec),
                              spec_free_void);
        }
        place_changed(p, m);
        if (memory_changed)
                recount_memory(m);
        for (size_t i = 0; i < p->n_hosts; i++) {
                HostTransition t;
                (void) host_table_set_drained(&m->hosts, p->hosts[i].host, p->hosts[i].drained, &t);
        }
        for (size_t i = 0; i < p->n_sends; i++) {
                HostModel *v = model_host(m, p->sends[i].host);
                if (!v)
                        continue;
                v->resends = p->sends[i].new_generation ? 0 : v->resends + 1;
                v->generation = p->sends[i].generation;
                v->digest = p->sends[i].digest;
                v->sent = true;
                v->sent_at = now_us;
                v->sync_resend = false;
        }
        for (size_t i = 0; i < p->n_later; i++) {
                HostModel *v = model_host(m, p->later[i].host);
                if (v && p->later[i].resend)
                        v->sync_resend = true;
        }
        for (size_t i = 0; i < p->n_rollouts; i++)
                replace_named((void **) m->rollouts, &m->n_rollouts, p->rollouts[i].service,
                              TAKE_PTR(p->rollouts[i].rollout), rollout_free_void);
        for (size_t i = 0; i < p->n_shards; i++)
                replace_named((void **) m->shards, &m->n_shards, p->shards[i].service,
                              TAKE_PTR(p->shards[i].state), shards_free_void);
        for (size_t i = 0; i < p->n_alerts; i++)
                apply_alert(&p->alerts[i], m, now_us);
        if (p->epoch > m->epoch)
                m->epoch = p->epoch;
        if (p->next_rollout_id > m->next_rollout_id)
                m->next_rollout_id = p->next_rollout_id;
}

_Static_assert(offsetof(PlanInstance, service) == 0, "service_run() reads the service first");

size_t plan_service_instances(const Plan *p, const char *service, const PlanInstance **ret) {
        size_t first, n = service_run(p->instances, p->n_instances, sizeof(PlanInstance), service,
                                      &first);

        *ret = first < p->n_instances ? &p->instances[first] : NULL;
        return n;
}

const PlanInstance *plan_find_instance(const Plan *p, const char *service, uint32_t instance) {
        size_t lo = 0, hi = p->n_instances;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int k = instance_key_cmp(p->instances[mid].service, p->instances[mid].instance,
                                         service, instance);
                if (k == 0)
                        return &p->instances[mid];
                if (k < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}
