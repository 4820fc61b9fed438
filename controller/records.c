/* SPDX-License-Identifier: MIT */
/* Model ⇄ store. Loading parses what is stored with the cores' own strict
 * parsers; writing formats with them, so a record round-trips exactly. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "records.h"
#include "util.h"

/* ---- loading ----------------------------------------------------------------- */

typedef struct Loading {
        Model *m;
        Store *s;
        usec_t now_mono;
        uint64_t now;
} Loading;

static HostModel *ensure_host_model(Host *h) {
        if (!h->userdata)
                h->userdata = calloc(1, sizeof(HostModel));
        return h->userdata;
}

static int load_host(const StoreHost *sh, void *userdata) {
        Loading *x = userdata;
        HostModel *v;
        Host *h;
        int r;

        r = host_table_restore(&x->m->hosts, sh->id, sh->alive, sh->drained, x->now_mono, &h);
        if (r < 0)
                return r;
        v = ensure_host_model(h);
        if (!v)
                return -ENOMEM;
        v->first_seen_us = sh->first_seen_us;
        v->last_seen_us = sh->last_seen_us;
        v->state_since_us = sh->state_since_us;
        if ((sh->boot_id && !(v->boot_id = strdup(sh->boot_id))) ||
            (sh->agent_version && !(v->agent_version = strdup(sh->agent_version))))
                return -ENOMEM;
        return host_model_set_labels(v, sh->labels);
}

static int load_alert(const StoreAlert *a, void *userdata) {
        Loading *x = userdata;
        OpenAlert o = {
                .id = strdup(a->id),
                .kind = alert_kind_from_string(a->kind),
                .severity = a->severity,
                .service = a->service ? strdup(a->service) : NULL,
                .host = a->host ? strdup(a->host) : NULL,
                .summary = strdup(a->summary),
                .raised_at_us = a->raised_at_us,
        };

        if (!o.id || !o.summary || (a->service && !o.service) || (a->host && !o.host)) {
                open_alert_done(&o);
                return -ENOMEM;
        }
        if (o.kind < 0) {
                log_warning("Stored alert %s is of a kind this baton does not know; dropping it.",
                            a->id);
                open_alert_done(&o);
                return 0;
        }
        return model_add_alert(x->m, &o);
}

static int load_service(const char *name, const char *file_name, const char *text, uint32_t count,
                        void *userdata) {
        Loading *x = userdata;
        _cleanup_free_ char *error = NULL;
        ServiceSpec *spec;
        int r;

        r = spec_parse(file_name, text, &spec, &error);
        if (r < 0) {
                /* Applied by an older baton that accepted it: keep running, say so. */
                log_error("Stored service %s no longer parses (%s); ignoring it.", name,
                          error ? error : STRERROR(r));
                return 0;
        }
        spec->count = count;
        return model_add_service(x->m, spec);
}

static int load_instance(const char *service, uint32_t instance, const char *host, void *userdata) {
        Loading *x = userdata;
        Host *h = host_table_get(&x->m->hosts, host);
        int r;

        /* A host the store forgot: known again, as down. */
        if (!h) {
                r = host_table_restore(&x->m->hosts, host, false, false, x->now_mono, &h);
                if (r < 0)
                        return r;
        }
        if (!ensure_host_model(h))
                return -ENOMEM;
        return model_add_instance(x->m, service, instance, host);
}

static int load_shards(const char *service, const char *layout, const char *reshard,
                       const char *ledger, const char *waiting, void *userdata) {
        Loading *x = userdata;
        const ServiceSpec *s = model_service(x->m, service);
        _cleanup_free_ char *error = NULL;
        _cleanup_(shard_layout_done) ShardLayout l = { 0 };
        _cleanup_(budget_ledger_done) BudgetLedger b = { 0 };
        _cleanup_(reshard_freep) Reshard *rs = NULL;
        _cleanup_(rangelist_done) RangeList w = { 0 };
        ShardState *ss;
        int r;

        if (!s || s->kind != SERVICE_SHARDED) {
                log_warning("Stored shard state of %s, which is not a sharded service; ignoring.",
                            service);
                return 0;
        }
        budget_ledger_init(&b);
        r = shard_layout_parse(layout, &l, &error);
        if (r >= 0 && reshard)
                r = reshard_parse(reshard, &rs, &error);
        if (r >= 0 && ledger)
                r = budget_ledger_parse(ledger, &b, &error);
        if (r >= 0 && waiting && rangelist_parse(&w, waiting) < 0) {
                r = -EINVAL;
                error = strdup("the instances waiting for the gate do not parse");
        }
        if (r >= 0)
                r = shard_state_restore(s, &l, TAKE_PTR(rs), &b, &w, x->now, &ss);
        if (r < 0) {
                log_error("Stored shard state of %s does not load (%s); starting it afresh.",
                          service, error ? error : STRERROR(r));
                return r == -ENOMEM ? r : 0;
        }
        if (shard_state_resharding(ss))
                log_info("Resuming reshard %" PRIu64 " of %s.", ss->reshard->id, service);
        return model_add_shards(x->m, ss);
}

static int load_rollout(const char *text, void *userdata) {
        Loading *x = userdata;
        _cleanup_free_ char *error = NULL;
        Rollout *r;
        int k;

        k = rollout_parse(text, &r, &error);
        if (k < 0) {
                log_error("A stored rollout does not parse (%s); ignoring it.",
                          error ? error : STRERROR(k));
                return 0;
        }
        if (r->state == ROLLOUT_RUNNING)
                log_info("Resuming the rollout %" PRIu64 " of %s.", r->id, r->service);
        return model_add_rollout(x->m, r);
}

int records_load(Store *s, Model *m, usec_t now_mono, uint64_t now) {
        Loading x = { m, s, now_mono, now };
        int r;

        r = store_load_hosts(s, load_host, &x);
        if (r < 0)
                return log_error_errno(r, "Failed to load hosts: %s", store_error(s));
        r = store_load_alerts(s, load_alert, &x);
        if (r < 0)
                return log_error_errno(r, "Failed to load open alerts: %s", store_error(s));
        r = store_load_services(s, load_service, &x);
        if (r < 0)
                return log_error_errno(r, "Failed to load services: %s", store_error(s));
        /* Shard states are matched with the services: sorted first. */
        r = model_index(m);
        if (r < 0)
                return log_error_errno(r, "Failed to index the model: %s", STRERROR(r));
        r = store_load_instances(s, load_instance, &x);
        if (r < 0)
                return log_error_errno(r, "Failed to load instances: %s", store_error(s));
        r = store_load_shard_states(s, load_shards, &x);
        if (r < 0)
                return log_error_errno(r, "Failed to load shard states: %s", store_error(s));
        r = store_load_rollouts(s, load_rollout, &x);
        if (r < 0)
                return log_error_errno(r, "Failed to load rollouts: %s", store_error(s));
        r = model_index(m);
        if (r < 0)
                return log_error_errno(r, "Failed to index the model: %s", STRERROR(r));
        for (size_t i = 0; i < m->hosts.n_hosts; i++) {
                Host *h = m->hosts.hosts[i];
                HostModel *v = ensure_host_model(h);

                if (!v)
                        return log_error_errno(-ENOMEM, "Out of memory.");
                r = store_get_host_generation(s, h->id, &v->generation);
                if (r < 0 && r != -ENOENT)
                        return log_error_errno(r, "Failed to load the generation of %s: %s", h->id,
                                               store_error(s));
        }
        log_info("Loaded %zu hosts, %zu services with %zu placed instances, %zu shard states, "
                 "%zu rollouts, %zu open alerts.",
                 m->hosts.n_hosts, m->n_services, m->n_instances, m->n_shards, m->n_rollouts,
                 m->n_alerts);
        return 0;
}

/* ---- writing ----------------------------------------------------------------- */

int records_write_host(Store *s, const Model *m, const char *host) {
        const Host *h = host_table_get(&m->hosts, host);
        const HostModel *v = h ? h->userdata : NULL;

        if (!v)
                return 0;
        return store_upsert_host(s, &(StoreHost){
                                            .id = h->id,
                                            .alive = h->alive,
                                            .drained = h->drained,
                                            .first_seen_us = v->first_seen_us,
                                            .last_seen_us = v->last_seen_us,
                                            .state_since_us = v->state_since_us,
                                            .boot_id = v->boot_id,
                                            .agent_version = v->agent_version,
                                            .labels = v->labels,
                                    });
}

static int write_shards(Store *s, const PlanShards *ps) {
        _cleanup_free_ char *layout = NULL, *reshard = NULL, *ledger = NULL, *waiting = NULL;
        _cleanup_(rangelist_done) RangeList w = { 0 };
        const ShardState *ss = ps->state;
        int r;

        if (!ss)
                return store_delete_shard_state(s, ps->service);
        r = shard_layout_format(&ss->layout, &layout);
        if (r >= 0 && ss->reshard)
                r = reshard_format(ss->reshard, &reshard);
        if (r >= 0 && ss->ledger.n_slots > 0)
                r = budget_ledger_format(&ss->ledger, &ledger);
        if (r >= 0)
                r = shard_state_waiting(ss, &w);
        if (r >= 0 && rangelist_count(&w) > 0) {
                waiting = rangelist_format(&w);
                r = waiting ? 0 : -ENOMEM;
        }
        if (r >= 0)
                r = store_put_shard_state(s, ps->service, layout, reshard, ledger, waiting);
        return r;
}

int records_write(Store *s, const Plan *p, const Model *m) {
        uint64_t now = now_realtime_usec();
        int r = 0;

        if (p->epoch > m->epoch)
                r = store_put_epoch(s, p->epoch);
        for (size_t i = 0; r >= 0 && i < p->n_services; i++) {
                const PlanService *ps = &p->services[i];

                if (!ps->spec)
                        r = store_delete_service(s, ps->name);
                else if (ps->store)
                        r = store_put_service(s, ps->name, ps->spec->file_name, ps->spec->unit_text,
                                              ps->spec->count, now);
        }
        for (size_t i = 0; r >= 0 && i < p->n_instances; i++) {
                const PlanInstance *pi = &p->instances[i];

                if (pi->host)
                        r = store_put_instance(s, pi->service, pi->instance, pi->host);
                else
                        r = store_delete_instance(s, pi->service, pi->instance);
        }
        for (size_t i = 0; r >= 0 && i < p->n_sends; i++)
                if (p->sends[i].new_generation)
                        r = store_set_host_generation(s, p->sends[i].host, p->sends[i].generation);
        for (size_t i = 0; r >= 0 && i < p->n_rollouts; i++) {
                const PlanRollout *pr = &p->rollouts[i];
                _cleanup_free_ char *text = NULL;

                if (!pr->rollout)
                        r = store_delete_rollout(s, pr->service);
                else {
                        r = rollout_format(pr->rollout, &text);
                        if (r >= 0)
                                r = store_put_rollout(s, pr->service, pr->rollout->id, text);
                }
        }
        for (size_t i = 0; r >= 0 && i < p->n_shards; i++)
                if (p->shards[i].store || !p->shards[i].state)
                        r = write_shards(s, &p->shards[i]);
        for (size_t i = 0; r >= 0 && i < p->n_alerts; i++) {
                const PlanAlert *a = &p->alerts[i];
                _cleanup_free_ char *id = NULL;

                if (alert_kind_is_notice(a->kind))
                        continue;
                id = alert_id(a->kind, a->service, a->host);
                if (!id)
                        return -ENOMEM;
                if (a->raise)
                        r = store_put_alert(s,
                                            &(StoreAlert){ .id = id,
                                                           .kind = alert_kind_to_string(a->kind),
                                                           .severity = alert_kind_severity(a->kind),
                                                           .service = a->service,
                                                           .host = a->host,
                                                           .summary = a->summary,
                                                           .raised_at_us = now });
                else
                        r = store_delete_alert(s, id);
        }
        /* Host records last: a drain the plan decides is in them. */
        for (size_t i = 0; r >= 0 && i < p->n_store_hosts; i++) {
                const Host *h = host_table_get(&m->hosts, p->store_hosts[i]);
                const HostModel *v = h ? h->userdata : NULL;
                bool drained = h && h->drained;

                for (size_t k = 0; k < p->n_hosts; k++)
                        if (streq(p->hosts[k].host, p->store_hosts[i]))
                                drained = p->hosts[k].drained;
                if (!v)
                        continue;
                r = store_upsert_host(s, &(StoreHost){
                                                 .id = h->id,
                                                 .alive = h->alive,
                                                 .drained = drained,
                                                 .first_seen_us = v->first_seen_us,
                                                 .last_seen_us = v->last_seen_us,
                                                 .state_since_us = v->state_since_us,
                                                 .boot_id = v->boot_id,
                                                 .agent_version = v->agent_version,
                                                 .labels = v->labels,
                                         });
        }
        return r;
}
