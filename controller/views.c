/* SPDX-License-Identifier: MIT */
/* JSON documents of the model, built fresh for each answer. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"
#include "views.h"

json_t *view_budget(const BudgetVerdict *v) {
        return json_pack("{s:I, s:I, s:I, s:I, s:I, s:b}", "daily_limit", (json_int_t) v->limit,
                         "spent_24h", (json_int_t) v->spent, "reserve", (json_int_t) v->reserve,
                         "cost", (json_int_t) v->cost, "remaining_after",
                         (json_int_t) MIN(v->remaining_after, (uint64_t) INT64_MAX), "allowed",
                         v->allowed);
}

json_t *view_reshard(const Reshard *r) {
        json_t *items = json_array();
        size_t done = 0;

        if (!r || !items) {
                json_decref(items);
                return json_null();
        }
        for (size_t i = 0; i < r->n_items; i++) {
                const ReshardItem *it = &r->items[i];
                _cleanup_free_ char *from = rangelist_format(&it->from),
                                    *to = rangelist_format(&it->to);

                done += it->state == RITEM_DONE;
                json_array_append_new(items, json_pack("{s:i, s:s, s:s, s:s, s:s?}", "instance",
                                                       (int) it->instance, "state",
                                                       reshard_item_state_to_string(it->state),
                                                       "from", strempty(from), "to", strempty(to),
                                                       "from_host", it->from_host));
        }
        return json_pack(
                "{s:I, s:s, s:s, s:b, s:s, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:i, s:i, s:o, "
                "s:s?}",
                "id", (json_int_t) r->id, "service", r->service, "kind", reshard_kind(r), "live",
                r->reload, "state", reshard_state_to_string(r->state), "from_instances",
                (int) r->from_instances, "to_instances", (int) r->to_instances, "from_shards",
                (int) r->from_count, "to_shards", (int) r->to_count, "from_epoch",
                (json_int_t) r->from_epoch, "to_epoch", (json_int_t) r->to_epoch, "identifies",
                (json_int_t) reshard_cost(r), "done", (int) done, "total", (int) r->n_items,
                "items", items, "reason", r->reason);
}

json_t *view_shards_summary(const Model *m, const ServiceSpec *s) {
        const ShardState *ss = s->kind == SERVICE_SHARDED ? model_shards(m, s->name) : NULL;
        _cleanup_free_ uint8_t *owners = NULL;
        const char *kind;
        uint64_t epoch;
        uint32_t total, ready = 0;

        if (!ss)
                return json_null();
        reconcile_serving(ss, &epoch, &total);
        owners = calloc(total + 1, 1);
        if (!owners || reconcile_count_owners(m, s->name, epoch, total, owners, NULL) < 0)
                return json_null();
        for (uint32_t sh = 0; sh < total; sh++)
                ready += owners[sh] > 0;
        /* A make-before-break restart or move runs as a reshard that keeps
         * the layout. */
        kind = shard_state_resharding(ss) ? reshard_kind(ss->reshard) : "";
        return json_pack("{s:I, s:i, s:i, s:b, s:b, s:b}", "epoch", (json_int_t) epoch, "total",
                         (int) total, "ready", (int) ready, "resharding", streq(kind, "reshard"),
                         "restarting", streq(kind, "restart"), "moving", streq(kind, "move"));
}

json_t *view_mass_loss(const Model *m) {
        json_t *hosts;
        size_t n = 0;

        if (!reconcile_holding(m))
                return json_null();
        hosts = json_array();
        for (size_t i = 0; hosts && i < m->hosts.n_hosts; i++) {
                const Host *h = m->hosts.hosts[i];
                const HostModel *v = h->userdata;

                if (!reconcile_host_held(m, h))
                        continue;
                n += v->n_placed;
                json_array_append_new(hosts, json_string(h->id));
        }
        return json_pack("{s:o, s:I}", "held_hosts", hosts ? hosts : json_null(), "held_instances",
                         (json_int_t) n);
}

size_t view_status_instances(const Model *m, const char *only) {
        size_t total = 0;

        for (size_t i = 0; i < m->n_services; i++)
                if (isempty(only) || streq(only, m->services[i]->name))
                        total += m->services[i]->count;
        return total;
}

void status_cursor_done(StatusCursor *cur) {
        for (size_t i = 0; i < cur->n_services; i++)
                free(cur->services[i]);
        free(cur->services);
        *cur = (StatusCursor){ 0 };
}

int status_cursor_init(StatusCursor *cur, const Model *m, const char *only, bool list) {
        *cur = (StatusCursor){ .first_service = true, .list = list };
        cur->services = calloc(m->n_services + 1, sizeof(char *));
        if (!cur->services)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_services; i++) {
                if (!isempty(only) && !streq(only, m->services[i]->name))
                        continue;
                cur->services[cur->n_services] = strdup(m->services[i]->name);
                if (!cur->services[cur->n_services]) {
                        status_cursor_done(cur);
                        return -ENOMEM;
                }
                cur->n_services++;
        }
        return 0;
}

/* JSON made by jansson (small), appended as text. */
static void append_doc(JsonText *out, json_t *doc) {
        _cleanup_free_ char *text =
                doc ? json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER) : NULL;

        json_decref(doc);
        if (!text)
                out->failed = true;
        else
                json_text_raw(out, text);
}

static void write_instance(const Model *m, const ServiceSpec *s, uint32_t k, JsonText *out,
                           bool first, int *healthy) {
        const Instance *in = model_instance(m, s->name, k);
        const HostModel *v = in ? model_host(m, in->host) : NULL;
        const Host *h = in ? host_table_get(&m->hosts, in->host) : NULL;
        _cleanup_free_ char *unit = NULL;
        const UnitObs *o;
        bool ok, f = true;

        if (reconcile_instance_unit(m, s, k, &unit) < 0) {
                out->failed = true;
                return;
        }
        o = v ? host_model_unit(v, unit) : NULL;
        ok = in && reconcile_instance_healthy(m, in);
        *healthy += ok;
        json_text_raw(out, first ? "{" : ",{");
        json_text_key(out, &f, "instance");
        json_text_int(out, k);
        json_text_key(out, &f, "unit");
        json_text_string(out, unit);
        json_text_key(out, &f, "host");
        json_text_string(out, in ? in->host : NULL);
        json_text_key(out, &f, "active_state");
        json_text_string(out, o ? o->active_state : "unknown");
        json_text_key(out, &f, "sub_state");
        json_text_string(out, o ? o->sub_state : "unknown");
        json_text_key(out, &f, "n_restarts");
        json_text_int(out, o ? (int64_t) o->n_restarts : 0);
        json_text_key(out, &f, "healthy");
        json_text_bool(out, ok);
        json_text_key(out, &f, "held");
        json_text_bool(out, h && reconcile_host_held(m, h));
        json_text_raw(out, "}");
}

static void open_service(StatusCursor *cur, const ServiceSpec *s, JsonText *out) {
        bool f = true;

        json_text_raw(out, cur->first_service ? "{" : ",{");
        cur->first_service = false;
        json_text_key(out, &f, "service");
        json_text_string(out, s ? s->name : NULL);
        json_text_key(out, &f, "kind");
        json_text_string(out, s ? service_kind_to_string(s->kind) : NULL);
}

/* After the list (or in a summary, all of it): the count as listed (or
 * counted), how many healthy, the shards. */
static void close_service(StatusCursor *cur, const Model *m, const ServiceSpec *s, JsonText *out) {
        if (cur->list)
                json_text_raw(out, "]");
        else if (s)
                open_service(cur, s, out);
        else
                return; /* deleted meanwhile, nothing written of it */
        json_text_raw(out, ",\"count\":");
        json_text_int(out, cur->instance);
        json_text_raw(out, ",\"healthy\":");
        json_text_int(out, cur->healthy);
        json_text_raw(out, ",\"shards\":");
        if (s)
                append_doc(out, view_shards_summary(m, s));
        else
                json_text_raw(out, "null");
        json_text_raw(out, "}");
        cur->open = false;
}

int status_cursor_step(StatusCursor *cur, const Model *m, JsonText *out, size_t budget) {
        if (cur->complete)
                return 1;
        if (!cur->begun)
                json_text_raw(out, "{\"services\":[");
        cur->begun = true;
        while (cur->next < cur->n_services) {
                const ServiceSpec *s = model_service(m, cur->services[cur->next]);

                if (!s) { /* deleted meanwhile */
                        if (cur->open)
                                close_service(cur, m, NULL, out);
                        cur->open = false;
                        cur->next++;
                        continue;
                }
                if (!cur->open) {
                        if (cur->list) {
                                open_service(cur, s, out);
                                json_text_raw(out, ",\"instances\":[");
                        }
                        cur->open = true;
                        cur->instance = 0;
                        cur->healthy = 0;
                }
                for (; cur->instance < s->count; cur->instance++) {
                        if (budget == 0)
                                return out->failed ? -ENOMEM : 0;
                        budget--;
                        if (cur->list)
                                write_instance(m, s, cur->instance, out, cur->instance == 0,
                                               &cur->healthy);
                        else {
                                const Instance *in = model_instance(m, s->name, cur->instance);
                                cur->healthy += in && reconcile_instance_healthy(m, in);
                        }
                        cur->total++;
                }
                close_service(cur, m, s, out);
                cur->next++;
                if (out->failed)
                        return -ENOMEM;
        }
        json_text_raw(out, "],\"instances_total\":");
        json_text_int(out, (int64_t) cur->total);
        json_text_raw(out, cur->list ? ",\"instances_listed\":true,\"mass_host_loss\":"
                                     : ",\"instances_listed\":false,\"mass_host_loss\":");
        append_doc(out, view_mass_loss(m));
        json_text_raw(out, "}");
        cur->complete = true;
        return out->failed ? -ENOMEM : 1;
}

static const char *shard_state_word(const CopyObs *rep, uint32_t shard) {
        if (!rep || !rep->active)
                return "down";
        if (rangelist_contains(&rep->ready, shard))
                return "ready";
        if (rangelist_contains(&rep->failed, shard))
                return "failed";
        if (rangelist_contains(&rep->connecting, shard))
                return "connecting";
        return "starting";
}

/* A copy that needs no operator's look: running, active, every shard it
 * is assigned ready, and the only copy of its instance. */
static bool copy_settled(const CopyPlan *cp, size_t n, const CopyObs *rep) {
        _cleanup_(rangelist_done) RangeList assigned = { 0 };

        if (n != 1 || !cp->running || !rep || !rep->active ||
            rangelist_parse(&assigned, cp->shards) < 0)
                return false;
        return rangelist_equal(&assigned, &rep->ready);
}

static json_t *copy_json(uint32_t i, const char *host, const CopyPlan *cp, bool is_new,
                         const CopyObs *rep) {
        _cleanup_free_ char *rd = rep ? rangelist_format(&rep->ready) : NULL,
                            *cn = rep ? rangelist_format(&rep->connecting) : NULL,
                            *fl = rep ? rangelist_format(&rep->failed) : NULL;

        return json_pack("{s:i, s:s, s:s?, s:s, s:I, s:s, s:i, s:b, s:s, s:s, s:s, s:s}",
                         "instance", (int) i, "unit", cp->unit, "host", host, "role",
                         is_new ? "new" : "live", "epoch", (json_int_t) cp->epoch, "shards",
                         cp->shards, "shard_count", (int) cp->shard_count, "running", cp->running,
                         "active_state",
                         !rep          ? "unknown"
                         : rep->active ? "active"
                                       : "inactive",
                         "ready", strempty(rd), "connecting", strempty(cn), "failed", strempty(fl));
}

/* Per shard of the serving epoch that `cp` holds: its state at this copy. */
static int shard_entries(json_t *shard_list, uint32_t i, const char *host, const CopyPlan *cp,
                         const CopyObs *rep, uint64_t epoch, uint32_t total,
                         const uint8_t *owners) {
        _cleanup_(rangelist_done) RangeList set = { 0 };

        if (cp->epoch != epoch || rangelist_parse(&set, cp->shards) < 0)
                return 0;
        for (size_t g = 0; g < set.n_ranges; g++)
                for (uint32_t sh = set.ranges[g].lo; sh <= set.ranges[g].hi && sh < total; sh++)
                        if (json_array_append_new(shard_list,
                                                  json_pack("{s:i, s:i, s:s?, s:s, s:I, s:i}",
                                                            "shard", (int) sh, "instance", (int) i,
                                                            "host", host, "state",
                                                            shard_state_word(rep, sh), "epoch",
                                                            (json_int_t) epoch, "ready_owners",
                                                            (int) owners[sh])) < 0)
                                return -ENOMEM;
        return 0;
}

json_t *view_shards(const Model *m, const ServiceSpec *s, uint64_t now, size_t max,
                    bool per_shard) {
        const ShardState *ss = model_shards(m, s->name);
        _cleanup_free_ uint8_t *owners = NULL;
        _cleanup_(rangelist_done) RangeList failed = { 0 }, unowned = { 0 }, dup = { 0 },
                                            unknown = { 0 };
        _cleanup_free_ char *failed_text = NULL, *unowned_text = NULL, *dup_text = NULL,
                            *unknown_text = NULL;
        json_t *copies = json_array(), *shard_list = per_shard ? json_array() : NULL;
        BudgetVerdict budget;
        uint64_t epoch;
        uint32_t total, ready = 0;
        size_t n_copies = 0, listed = 0;
        bool all_copies;

        if (!ss || !copies || (per_shard && !shard_list))
                goto fail;
        reconcile_serving(ss, &epoch, &total);
        owners = calloc(total + 1, 1);
        if (!owners || reconcile_count_owners(m, s->name, epoch, total, owners, &failed) < 0)
                goto fail;

        /* Above `max` copies, only those that are not settled (at most max). */
        all_copies = max == 0 || (size_t) s->count * 2 <= max;
        for (uint32_t i = 0; i < s->count; i++) {
                const Instance *in = model_instance(m, s->name, i);
                const char *host = in ? in->host : NULL;
                CopyPlan cp[2];
                size_t n = 0;
                int r = 0;

                if (reconcile_copies(ss, s->name, i, cp, &n) < 0)
                        goto fail;
                n_copies += n;
                for (size_t k = 0; r >= 0 && k < n; k++) {
                        const char *at = cp[k].host ? cp[k].host : host;
                        const CopyObs *rep = reconcile_copy_report(m, at, cp[k].unit);

                        if (all_copies || (listed < max && !copy_settled(&cp[k], n, rep))) {
                                r = json_array_append_new(
                                        copies, copy_json(i, at, &cp[k], n == 2 && k == 1, rep));
                                listed++;
                        }
                        if (r >= 0 && per_shard)
                                r = shard_entries(shard_list, i, at, &cp[k], rep, epoch, total,
                                                  owners);
                }
                for (size_t k = 0; k < n; k++)
                        copy_plan_done(&cp[k]);
                if (r < 0)
                        goto fail;
        }
        if (reconcile_unknown_shards(m, s->name, epoch, total, owners, now, 0, &unknown) < 0)
                goto fail;
        for (uint32_t sh = 0; sh < total; sh++) {
                ready += owners[sh] > 0;
                if (owners[sh] == 0 && !rangelist_contains(&unknown, sh) &&
                    rangelist_add(&unowned, sh) < 0)
                        goto fail;
                if (owners[sh] > 1 && rangelist_add(&dup, sh) < 0)
                        goto fail;
        }
        failed_text = rangelist_format(&failed);
        unowned_text = rangelist_format(&unowned);
        dup_text = rangelist_format(&dup);
        unknown_text = rangelist_format(&unknown);
        if (!failed_text || !unowned_text || !dup_text || !unknown_text)
                goto fail;
        budget = budget_check(s->daily_start_budget,
                              budget_reserve(s->daily_start_budget, ss->layout.shard_count),
                              budget_spent(&ss->ledger, now), 0);
        return json_pack("{s:s, s:I, s:i, s:i, s:i, s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:b, s:o, "
                         "s:b, s:o*}",
                         "service", s->name, "epoch", (json_int_t) epoch, "shard_count",
                         (int) total, "instances", (int) ss->layout.n_instances, "ready",
                         (int) ready, "unowned", strempty(unowned_text), "unknown",
                         strempty(unknown_text), "owned_twice", strempty(dup_text), "failed",
                         strempty(failed_text), "reshard",
                         shard_state_resharding(ss) ? view_reshard(ss->reshard) : json_null(),
                         "budget", view_budget(&budget), "copies_total", (json_int_t) n_copies,
                         "copies_listed", listed == n_copies, "copies", copies, "shards_listed",
                         per_shard, "shards", shard_list);
fail:
        json_decref(copies);
        json_decref(shard_list);
        return NULL;
}

static json_t *rollout_json(const Rollout *r) {
        json_t *items = json_array();

        for (size_t i = 0; items && i < r->n_items; i++)
                json_array_append_new(
                        items,
                        json_pack("{s:i, s:s, s:I, s:i}", "instance", (int) r->items[i].instance,
                                  "state", rollout_item_state_to_string(r->items[i].state),
                                  "started_at_us", (json_int_t) r->items[i].started_at, "attempts",
                                  (int) r->items[i].attempts));
        return json_pack("{s:s, s:I, s:s, s:s?, s:i, s:o}", "service", r->service, "id",
                         (json_int_t) r->id, "state", rollout_state_to_string(r->state), "reason",
                         r->reason, "max_unavailable", (int) r->max_unavailable, "items", items);
}

json_t *view_rollouts(const Model *m, const char *only) {
        json_t *arr = json_array(), *reshards = json_array();

        for (size_t i = 0; arr && i < m->n_rollouts; i++)
                if (isempty(only) || streq(m->rollouts[i]->service, only))
                        json_array_append_new(arr, rollout_json(m->rollouts[i]));
        for (size_t i = 0; reshards && i < m->n_shards; i++) {
                const ShardState *ss = m->shards[i];
                if (shard_state_resharding(ss) && (isempty(only) || streq(ss->service, only)))
                        json_array_append_new(reshards, view_reshard(ss->reshard));
        }
        return json_pack("{s:o, s:o}", "rollouts", arr, "reshards", reshards);
}

json_t *view_alerts(const Model *m) {
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < m->n_alerts; i++) {
                const OpenAlert *a = &m->alerts[i];
                json_array_append_new(
                        arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "id", a->id, "kind",
                                       alert_kind_to_string(a->kind), "severity",
                                       alert_severity_to_string(a->severity), "service",
                                       strempty(a->service), "host", strempty(a->host), "summary",
                                       a->summary, "raised_at_us", (json_int_t) a->raised_at_us));
        }
        return json_pack("{s:o}", "alerts", arr);
}

/* The spec of `service` as the plan leaves it. */
static const ServiceSpec *plan_spec(const Model *m, const Plan *p, const char *service) {
        for (size_t i = 0; i < p->n_services; i++)
                if (streq(p->services[i].name, service))
                        return p->services[i].spec;
        return model_service(m, service);
}

/* One placement as JSON text (written directly: 200,000 of them at 10,000
 * hosts × 20 services). */
static void placement_entry(JsonText *t, bool first, const ServiceSpec *s, const char *service,
                            uint32_t instance, const char *host, const char *change,
                            const char *from) {
        _cleanup_free_ char *unit = NULL;
        bool f = true;

        if (s && service_instance_unit(s, instance, &unit) < 0)
                unit = NULL;
        json_text_raw(t, first ? "{" : ",{");
        json_text_key(t, &f, "service");
        json_text_string(t, service);
        json_text_key(t, &f, "instance");
        json_text_int(t, instance);
        json_text_key(t, &f, "unit");
        json_text_string(t, unit);
        json_text_key(t, &f, "host");
        json_text_string(t, host);
        json_text_key(t, &f, "change");
        json_text_string(t, change);
        json_text_key(t, &f, "from");
        json_text_string(t, from);
        json_text_raw(t, "}");
}

static void placement_out(PlanCursor *o, JsonText *list, const ServiceSpec *s, const char *service,
                          uint32_t instance, const char *host, const char *change,
                          const char *from) {
        size_t *n = streq(change, "add")       ? &o->add
                    : streq(change, "move")    ? &o->move
                    : streq(change, "restart") ? &o->restart
                    : streq(change, "remove")  ? &o->remove
                                               : &o->keep;

        (*n)++;
        if (list)
                placement_entry(list, o->listed++ == 0, s, service, instance, host, change, from);
}

/* How many entries view_apply() would list: every instance there is, and
 * every one the plan adds. */
static size_t placements_count(const Model *m, const Plan *p) {
        size_t n = m->n_instances;

        for (size_t i = 0; i < p->n_instances; i++)
                n += p->instances[i].host &&
                     !model_instance(m, p->instances[i].service, p->instances[i].instance);
        return n;
}

/* Lists (into `list`, or only counts when NULL) about `budget` more
 * placements (0: all): every instance of the model after the plan, then
 * every one the plan adds. 1 when done, 0 when there are more, -ENOMEM.
 * The instances come by service: what a service's change means for them is
 * worked out once per service. */
static int placements_step(PlanCursor *o, const Model *m, JsonText *list, size_t budget) {
        const Plan *p = &o->plan;
        const ServiceSpec *old = NULL, *s = NULL;
        const char *last = NULL;
        bool text_changed = false;
        size_t done = 0, i;

        i = o->service ? model_instance_index(m, o->service, o->instance) : 0;
        for (; !o->models_done && i < m->n_instances; i++) {
                const Instance *in = &m->instances[i];
                const PlanInstance *pi;
                const char *change = "keep";

                if (list && list->failed)
                        return -ENOMEM;
                if (budget > 0 && done++ == budget) {
                        if (!streq_ptr(o->service, in->service)) {
                                free(o->service);
                                o->service = strdup(in->service);
                                if (!o->service)
                                        return -ENOMEM;
                        }
                        o->instance = in->instance;
                        return 0;
                }
                if (!streq_ptr(last, in->service)) {
                        last = in->service;
                        old = model_service(m, in->service);
                        s = plan_spec(m, p, in->service);
                        text_changed = s && old &&
                                       spec_systemd_hash(s->unit_text) !=
                                               spec_systemd_hash(old->unit_text);
                }
                pi = plan_find_instance(p, in->service, in->instance);
                if (pi && !pi->host) {
                        placement_out(o, list, old, in->service, in->instance, NULL, "remove",
                                      in->host);
                        continue;
                }
                if (pi)
                        change = "move";
                /* A changed unit file restarts the instances that stay. */
                else if (text_changed)
                        change = "restart";
                placement_out(o, list, s, in->service, in->instance, pi ? pi->host : in->host,
                              change, pi ? in->host : NULL);
        }
        o->models_done = true;
        for (; o->added < p->n_instances; o->added++) {
                const PlanInstance *pi = &p->instances[o->added];

                if (!pi->host || model_instance(m, pi->service, pi->instance))
                        continue;
                if (list && list->failed)
                        return -ENOMEM;
                if (budget > 0 && done++ == budget)
                        return 0;
                placement_out(o, list, plan_spec(m, p, pi->service), pi->service, pi->instance,
                              pi->host, "add", NULL);
        }
        return 1;
}

/* The services the plan left to later passes (placed in the next turns). */
static json_t *later_services(const Plan *p) {
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < p->n_later_services; i++)
                json_array_append_new(arr, json_string(p->later_services[i]));
        return arr;
}

/* Everything but the list of placements. */
static json_t *apply_summary(const PlanCursor *o, const Model *m, bool list) {
        json_t *services = json_array(), *problems = json_array();
        const Plan *p = &o->plan;
        const Answer *a = o->answer;

        for (size_t i = 0; services && i < a->n_services; i++) {
                const struct AnswerService *as = &a->services[i];
                const ServiceSpec *s = plan_spec(m, p, as->service);
                json_t *e = json_pack("{s:s, s:s, s:s, s:i}", "service", as->service, "action",
                                      as->action, "kind",
                                      s ? service_kind_to_string(s->kind) : "unknown", "count",
                                      s ? (int) s->count : 0);

                if (e && as->have_identifies) {
                        json_object_set_new(e, "identifies",
                                            json_integer((json_int_t) as->identifies));
                        json_object_set_new(e, "estimated_duration_us",
                                            json_integer((json_int_t) as->duration));
                        json_object_set_new(e, "budget_allowed", json_boolean(as->budget_allowed));
                }
                if (e && as->rollout > 0)
                        json_object_set_new(e, "rollout", json_integer((json_int_t) as->rollout));
                if (e && as->rollout_error)
                        json_object_set_new(e, "rollout_error", json_string(as->rollout_error));
                json_array_append_new(services, e);
        }
        for (size_t i = 0; problems && i < p->n_problems; i++)
                json_array_append_new(problems, json_pack("{s:s?, s:i, s:s}", "service",
                                                          p->problems[i].service, "instance",
                                                          (int) p->problems[i].instance, "reason",
                                                          p->problems[i].reason));
        return json_pack("{s:b, s:b, s:o, s:{s:I, s:I, s:I, s:I, s:I}, s:b, s:o, s:o, s:o}",
                         "dry_run", o->dry_run, "applied", !o->dry_run, "services", services,
                         "changes", "add", (json_int_t) o->add, "move", (json_int_t) o->move,
                         "keep", (json_int_t) o->keep, "restart", (json_int_t) o->restart, "remove",
                         (json_int_t) o->remove, "placements_listed", list, "problems", problems,
                         "placed_later", later_services(p), "mass_host_loss", view_mass_loss(m));
}

json_t *view_apply(const Model *m, const Plan *p, const Answer *a, bool dry_run,
                   size_t placements_max, char **ret_placements) {
        bool list = placements_max == 0 || placements_count(m, p) <= placements_max;
        PlanCursor o = { .plan = *p, .answer = a, .dry_run = dry_run };
        JsonText text = { 0 };
        json_t *doc;
        int r;

        *ret_placements = NULL;
        json_text_raw(&text, "[");
        r = placements_step(&o, m, list ? &text : NULL, 0);
        free(o.service);
        json_text_raw(&text, "]");
        doc = r >= 0 ? apply_summary(&o, m, list) : NULL;
        if (list)
                *ret_placements = json_text_steal(&text);
        json_text_done(&text);
        if (doc && list && !*ret_placements) {
                json_decref(doc);
                return NULL;
        }
        return doc;
}

void plan_cursor_init(PlanCursor *cur, Plan *p, Answer *a, bool dry_run) {
        *cur = (PlanCursor){ .plan = *p, .owned_answer = *a, .dry_run = dry_run };
        cur->answer = &cur->owned_answer;
        plan_init(p);
        *a = (Answer){ 0 };
}

void plan_cursor_done(PlanCursor *cur) {
        free(cur->service);
        plan_done(&cur->plan);
        answer_done(&cur->owned_answer);
        *cur = (PlanCursor){ 0 };
}

int plan_cursor_step(PlanCursor *cur, const Model *m, JsonText *out, size_t budget) {
        _cleanup_free_ char *summary = NULL;
        json_t *doc;
        int r;

        if (!cur->begun) {
                json_text_raw(out, "{\"placements\":[");
                cur->begun = true;
        }
        r = placements_step(cur, m, out, budget);
        if (r <= 0)
                return r;
        /* The rest of the document after the list: the summary's members. */
        doc = apply_summary(cur, m, true);
        summary = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(doc);
        if (!summary)
                return -ENOMEM;
        json_text_raw(out, "],");
        json_text_raw(out, summary + 1);
        return out->failed ? -ENOMEM : 1;
}

json_t *view_reshard_plan(const ServiceSpec *s, const Answer *a, bool dry_run) {
        /* A reshard starts its new copies beside the live ones (max_starting
         * at once) and retires none before what it gives away is ready
         * elsewhere: no shard is planned dark; resumes come with Handoff=. */
        uint32_t surge = a->reshard.reshard && !a->reshard.reshard->reload
                                 ? a->reshard.reshard->max_starting
                                 : 0;

        return json_pack(
                "{s:s, s:b, s:{s:i, s:i, s:I}, s:{s:i, s:i, s:I}, s:I, s:I, s:I, s:o, s:o, s:i, "
                "s:i, s:f}",
                "service", s->name, "dry_run", dry_run, "from", "instances",
                (int) a->reshard.from_instances, "shards", (int) a->reshard.from_shards, "epoch",
                (json_int_t) a->reshard.from_epoch, "to", "instances",
                (int) a->reshard.to_instances, "shards", (int) a->reshard.to_shards, "epoch",
                (json_int_t) a->reshard.to_epoch, "identifies", (json_int_t) a->reshard.identifies,
                "estimated_duration_us", (json_int_t) a->reshard.duration, "shards_moving",
                (json_int_t) a->reshard.moves, "budget", view_budget(&a->reshard.budget), "reshard",
                view_reshard(a->reshard.reshard), "resumes", 0, "surge_copies", (int) surge,
                "dark_shard_seconds", 0.0);
}
