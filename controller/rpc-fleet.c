/* SPDX-License-Identifier: MIT */
/* The verbs that read or change desired state: apply and plan (all files or
 * none), delete, status, scale within bounds, drain and undrain, restart of
 * one instance, alerts and the audit log. Each answers with one JSON
 * document (README.md documents the fields). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "commands.pb-c.h"
#include "log.h"
#include "placement.h"
#include "rollout.h"
#include "rpc-internal.h"
#include "spec.h"
#include "topology.h"
#include "util.h"

static const FleetInstance *current_instance(Controller *c, const char *service,
                                             uint32_t instance) {
        return fleet_find_instance(c, service, instance);
}

/* Assignments are sorted by (service, instance): a binary search. */
static bool assigned(const PlacementResult *r, const char *service, uint32_t instance) {
        size_t lo = 0, hi = r->n_assignments;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const Assignment *a = &r->assignments[mid];
                int k = strcmp(a->service, service);

                if (k == 0)
                        k = (a->instance > instance) - (a->instance < instance);
                if (k == 0)
                        return true;
                if (k < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return false;
}

static json_t *unit_json(const ServiceSpec *s, uint32_t instance) {
        _cleanup_free_ char *unit = NULL;

        if (!s || service_instance_unit(s, instance, &unit) < 0)
                return json_null();
        return json_string(unit);
}

/* The placement document shared by apply and plan: every instance and how it
 * changes against what is placed now. */
static json_t *placements_json(Controller *c, ServiceSpec *const *services, size_t n,
                               const PlacementResult *r) {
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < r->n_assignments; i++) {
                const Assignment *a = &r->assignments[i];
                const FleetInstance *cur = current_instance(c, a->service, a->instance);
                const ServiceSpec *s = NULL, *old = fleet_service(c, a->service);
                const char *change = !cur ? "add" : !streq(cur->host, a->host) ? "move" : "keep";

                for (size_t k = 0; k < n; k++)
                        if (streq(services[k]->name, a->service))
                                s = services[k];
                /* A changed unit file restarts the instances that stay. */
                if (streq(change, "keep") && s && old &&
                    spec_systemd_hash(s->unit_text) != spec_systemd_hash(old->unit_text))
                        change = "restart";
                json_array_append_new(arr, json_pack("{s:s, s:i, s:o, s:s, s:s, s:o}", "service",
                                                     a->service, "instance", (int) a->instance,
                                                     "unit", unit_json(s, a->instance), "host",
                                                     a->host, "change", change, "from",
                                                     cur && !streq(cur->host, a->host)
                                                             ? json_string(cur->host)
                                                             : json_null()));
        }
        for (size_t i = 0; arr && i < c->n_instances; i++) {
                const FleetInstance *cur = &c->instances[i];

                if (assigned(r, cur->service, cur->instance))
                        continue;
                json_array_append_new(
                        arr, json_pack("{s:s, s:i, s:o, s:n, s:s, s:s}", "service", cur->service,
                                       "instance", (int) cur->instance, "unit",
                                       unit_json(fleet_service(c, cur->service), cur->instance),
                                       "host", "change", "remove", "from", cur->host));
        }
        return arr;
}

static json_t *problems_json(const PlacementResult *r) {
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < r->n_problems; i++)
                json_array_append_new(arr, json_pack("{s:s, s:i, s:s}", "service",
                                                     r->problems[i].service, "instance",
                                                     (int) r->problems[i].instance, "reason",
                                                     r->problems[i].reason));
        return arr;
}

static void specs_free(ServiceSpec **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                service_spec_free(v[i]);
        free(v);
}

/* A running sharded service keeps its shard layout: Instances= and Shards=
 * change only through `batonctl reshard` (re-applying the file as it was
 * keeps what earlier reshards made of it), and its kind stays. */
static void check_sharded_change(Controller *c, const char *file, ServiceSpec *s, FILE *ef) {
        const ServiceSpec *old = fleet_service(c, s->name);
        _cleanup_(service_spec_freep) ServiceSpec *was = NULL;

        if (!old || (old->kind != SERVICE_SHARDED && s->kind != SERVICE_SHARDED))
                return;
        if (old->kind != s->kind) {
                fprintf(ef, "%s%s: %s is %s and cannot become %s; delete it first",
                        ftell(ef) > 0 ? "\n" : "", file, s->name, service_kind_to_string(old->kind),
                        service_kind_to_string(s->kind));
                return;
        }
        /* What the stored file said (old->count is the effective count). */
        if (spec_parse(old->file_name, old->unit_text, &was, NULL) < 0)
                return;
        if (was->count != s->count || was->shards != s->shards) {
                fprintf(ef,
                        "%s%s: [X-Baton] Instances=/Shards= of the running sharded service %s "
                        "change with `batonctl reshard %s --instances N --shards S` (it has %u "
                        "instances over %u shards now)",
                        ftell(ef) > 0 ? "\n" : "", file, s->name, s->name, old->count,
                        shards_summary_total(c, old));
                return;
        }
        s->count = old->count;
}

/* A plan's entry for one service. A sharded service that starts (created)
 * or restarts everywhere (its unit changed) also shows the identifies it
 * spends and how long its starts take through the start gate. */
static json_t *service_change_json(Controller *c, const ServiceSpec *s, const char *action) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:i}", "service", s->name, "action", action, "kind",
                              service_kind_to_string(s->kind), "count", (int) s->count);
        _cleanup_free_ const RangeList **sets = NULL;
        _cleanup_free_ RangeList *owned = NULL;
        usec_t duration = 0;
        uint64_t identifies = 0;
        BudgetVerdict v;

        if (!o || s->kind != SERVICE_SHARDED || streq(action, "unchanged"))
                return o;
        sets = calloc(s->count + 1, sizeof(RangeList *));
        owned = calloc(s->count + 1, sizeof(RangeList));
        if (!sets || !owned)
                return o;
        for (uint32_t i = 0; i < s->count; i++) {
                _cleanup_free_ char *text = NULL;

                rangelist_init(&owned[i]);
                if (service_default_shards(s->shards, s->count, i, &text) >= 0)
                        (void) rangelist_parse(&owned[i], text);
                sets[i] = &owned[i];
        }
        if (start_gate_estimate(s->identify_concurrency, s->identify_interval, sets, s->count,
                                &duration, &identifies) >= 0) {
                v = shards_budget_check(c, s, identifies);
                json_object_set_new(o, "identifies", json_integer((json_int_t) identifies));
                json_object_set_new(o, "estimated_duration_us",
                                    json_integer((json_int_t) duration));
                json_object_set_new(o, "budget_allowed", json_boolean(v.allowed));
        }
        for (uint32_t i = 0; i < s->count; i++)
                rangelist_done(&owned[i]);
        return o;
}

/* A changed unit reaches the hosts with defer_restart: the agents write it
 * and keep the old process; this rollout restarts the instances with the
 * service's policy (for a sharded one, through the start gate, each ready
 * again before the next). Its id, or why there is none, goes in the plan's
 * entry for the service. */
static void rolling_update(Controller *c, const char *service, json_t *services) {
        json_t *entry = NULL, *e;
        uint64_t id;
        size_t i;
        int r;

        json_array_foreach(services, i, e) {
                if (streq_ptr(json_string_value(json_object_get(e, "service")), service))
                        entry = e;
        }
        if (shards_reshard_of(c, service))
                r = -EBUSY;
        else
                r = rollouts_start(c, service, &id);
        if (r >= 0) {
                log_info("Unit of %s changed: rolling update %" PRIu64 ".", service, id);
                if (entry)
                        json_object_set_new(entry, "rollout", json_integer((json_int_t) id));
                return;
        }
        log_warning("Unit of %s changed, but no rolling update could start (%s); its instances "
                    "run the old unit until restarted.",
                    service, r == -EBUSY ? "a rollout or reshard is under way" : STRERROR(r));
        if (entry)
                json_object_set_new(
                        entry, "rollout_error",
                        json_string(r == -EBUSY ? "a rollout or reshard is under way: restart "
                                                  "the service once it is done"
                                                : STRERROR(r)));
}

int rpc_verb_apply(RpcContext *x) {
        Controller *c = x->c;
        const Baton__V1__ApplyRequest *req = x->request->apply;
        _cleanup_(fleet_change_done) FleetChange change = { 0 };
        _cleanup_free_ char *errors = NULL, *names = NULL;
        ServiceSpec **parsed = NULL, **next = NULL;
        _cleanup_free_ bool *updated = NULL;
        size_t n_parsed = 0, n_next = 0, errlen = 0, nameslen = 0;
        json_t *services = NULL;
        FILE *ef = NULL, *nf = NULL;
        bool dry = streq(x->request->verb, "plan") || (req && req->dry_run);
        int r = -ENOMEM;

        if (x->request->args_case != BATON__V1__REQUEST__ARGS_APPLY || req->n_files == 0)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "%s needs spec files",
                                x->request->verb);

        parsed = calloc(req->n_files, sizeof(ServiceSpec *));
        ef = open_memstream(&errors, &errlen);
        nf = open_memstream(&names, &nameslen);
        if (!parsed || !ef || !nf)
                goto finish;

        /* All files or none: every error is collected before anything changes. */
        for (size_t i = 0; i < req->n_files; i++) {
                _cleanup_free_ char *error = NULL;
                ServiceSpec *s = NULL;

                fprintf(nf, "%s%s", i ? " " : "", req->files[i]->name);
                r = spec_parse(req->files[i]->name, req->files[i]->text, &s, &error);
                if (r < 0) {
                        fprintf(ef, "%s%s", ftell(ef) > 0 ? "\n" : "", error ? error : STRERROR(r));
                        continue;
                }
                for (size_t k = 0; k < n_parsed; k++)
                        if (streq(parsed[k]->name, s->name))
                                fprintf(ef, "%s%s: service %s is given twice",
                                        ftell(ef) > 0 ? "\n" : "", req->files[i]->name, s->name);
                check_sharded_change(c, req->files[i]->name, s, ef);
                parsed[n_parsed++] = s;
        }
        fclose(TAKE_PTR(ef));
        fclose(TAKE_PTR(nf));
        free(x->audit_request);
        x->audit_request = strdup(strempty(names));
        if (!isempty(errors)) {
                r = rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "%s", errors);
                goto finish;
        }

        /* The fleet as it would be: current services, replaced or added. */
        next = calloc(c->n_services + n_parsed + 1, sizeof(ServiceSpec *));
        updated = calloc(c->n_services + n_parsed + 1, sizeof(bool));
        services = json_array();
        if (!next || !services || !updated)
                goto finish;
        for (size_t i = 0; i < c->n_services; i++) {
                bool replaced = false;
                for (size_t k = 0; k < n_parsed; k++)
                        replaced = replaced || streq(parsed[k]->name, c->services[i]->name);
                if (replaced)
                        continue;
                r = service_spec_copy(c->services[i], &next[n_next]);
                if (r < 0)
                        goto finish;
                n_next++;
        }
        for (size_t k = 0; k < n_parsed; k++) {
                const ServiceSpec *old = fleet_service(c, parsed[k]->name);
                const char *action = !old ? "create"
                                     : streq(old->unit_text, parsed[k]->unit_text) &&
                                                     old->count == parsed[k]->count
                                             ? "unchanged"
                                             : "update";
                json_array_append_new(services, service_change_json(c, parsed[k], action));
                next[n_next++] = parsed[k];
                parsed[k] = NULL;
        }

        /* Placed once: the same computation is the plan shown and, for apply,
         * the placement adopted. */
        r = fleet_change_prepare(c, next, n_next, &change);
        if (r < 0)
                goto finish;
        json_t *doc =
                json_pack("{s:b, s:b, s:O, s:o, s:o}", "dry_run", dry, "applied", !dry, "services",
                          services, "placements", placements_json(c, next, n_next, &change.res),
                          "problems", problems_json(&change.res));

        if (!dry) {
                uint64_t now = now_realtime_usec();

                /* The services and their placement in one transaction; nothing
                 * changes in memory or goes out unless it commits. */
                r = store_begin(c->store);
                for (size_t k = 0; r >= 0 && k < n_next; k++)
                        if (!fleet_service(c, next[k]->name) ||
                            !streq(fleet_service(c, next[k]->name)->unit_text,
                                   next[k]->unit_text) ||
                            fleet_service(c, next[k]->name)->count != next[k]->count)
                                r = store_put_service(c->store, next[k]->name, next[k]->file_name,
                                                      next[k]->unit_text, next[k]->count, now);
                if (r >= 0)
                        r = fleet_change_write(c, &change);
                if (r >= 0)
                        r = store_commit(c->store);
                if (r < 0) {
                        store_rollback(c->store);
                        c->counters.store_errors++;
                        json_decref(doc);
                        log_error_errno(r, "Failed to store apply of %s: %s", strempty(names),
                                        store_error(c->store));
                        r = rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                     "cannot store the services and their placement: %s; nothing "
                                     "changed",
                                     store_error(c->store));
                        goto finish;
                }
                /* Services whose unit changed for systemd (not just [X-Baton])
                 * and that run already: a rolling update, below. */
                for (size_t k = 0; k < n_next; k++) {
                        const ServiceSpec *old = fleet_service(c, next[k]->name);
                        updated[k] = old && spec_systemd_hash(old->unit_text) !=
                                                    spec_systemd_hash(next[k]->unit_text);
                }
                specs_free(c->services, c->n_services);
                c->services = TAKE_PTR(next);
                c->n_services = n_next;
                fleet_change_adopt(c, &change, "apply");
                for (size_t k = 0; k < n_next; k++)
                        if (updated[k])
                                rolling_update(c, c->services[k]->name, services);
                n_next = 0;
        }
        r = rpc_set_json(x, doc);

finish:
        if (ef)
                fclose(ef);
        if (nf)
                fclose(nf);
        json_decref(services);
        specs_free(parsed, n_parsed);
        specs_free(next, n_next);
        return r;
}

int rpc_verb_delete(RpcContext *x) {
        Controller *c = x->c;
        _cleanup_(fleet_change_done) FleetChange change = { 0 };
        _cleanup_free_ ServiceSpec **rest = NULL;
        const char *name;
        size_t removed = 0, i, n_rest = 0;
        int r;

        if (x->request->args_case != BATON__V1__REQUEST__ARGS_SERVICE ||
            isempty(x->request->service->service))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "delete needs a service");
        name = x->request->service->service;
        x->audit_request = strdup(name);
        for (i = 0; i < c->n_services; i++)
                if (streq(c->services[i]->name, name))
                        break;
        if (i == c->n_services)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "no service '%s'", name);

        /* The fleet without it, placed; then its rows, its shard state and
         * the placement in one transaction. */
        rest = calloc(c->n_services + 1, sizeof(ServiceSpec *));
        if (!rest)
                return -ENOMEM;
        for (size_t k = 0; k < c->n_services; k++)
                if (k != i)
                        rest[n_rest++] = c->services[k];
        r = fleet_change_prepare(c, rest, n_rest, &change);
        if (r < 0)
                return r;
        r = store_begin(c->store);
        if (r >= 0)
                r = store_delete_service(c->store, name);
        if (r >= 0)
                r = store_delete_shard_state(c->store, name);
        if (r >= 0)
                r = fleet_change_write(c, &change);
        if (r >= 0)
                r = store_commit(c->store);
        if (r < 0) {
                store_rollback(c->store);
                c->counters.store_errors++;
                log_error_errno(r, "Failed to store the deletion of %s: %s", name,
                                store_error(c->store));
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "cannot delete %s: %s; nothing changed", name,
                                store_error(c->store));
        }

        for (size_t k = 0; k < c->n_instances; k++)
                removed += streq(c->instances[k].service, name);
        shards_forget(c, name);
        alerts_resolve_service(c, name);
        service_spec_free(c->services[i]);
        c->services[i] = c->services[--c->n_services];
        fleet_change_adopt(c, &change, "delete");
        return rpc_set_json(
                x, json_pack("{s:s, s:i}", "service", name, "removed_instances", (int) removed));
}

static const struct ObservedUnitState *observed(Controller *c, const char *host, const char *unit) {
        Host *h = host_table_get(&c->hosts, host);
        HostView *v = h ? h->userdata : NULL;

        return host_view_unit(v, unit);
}

int rpc_verb_status(RpcContext *x) {
        Controller *c = x->c;
        const char *only = x->request->args_case == BATON__V1__REQUEST__ARGS_SERVICE
                                   ? x->request->service->service
                                   : NULL;
        json_t *arr = json_array();

        if (!isempty(only) && !fleet_service(c, only)) {
                json_decref(arr);
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "no service '%s'", only);
        }
        for (size_t i = 0; arr && i < c->n_services; i++) {
                const ServiceSpec *s = c->services[i];
                json_t *insts = json_array();
                int healthy = 0;

                if (!isempty(only) && !streq(only, s->name)) {
                        json_decref(insts);
                        continue;
                }
                for (uint32_t k = 0; insts && k < s->count; k++) {
                        const FleetInstance *fi = current_instance(c, s->name, k);
                        _cleanup_free_ char *unit = NULL;
                        const struct ObservedUnitState *o;
                        bool ok;

                        if (fleet_instance_unit(c, s, k, &unit) < 0)
                                continue;
                        o = fi ? observed(c, fi->host, unit) : NULL;
                        ok = o && streq_ptr(o->active_state, "active") &&
                             (s->kind != SERVICE_SHARDED ||
                              shards_instance_ready(c, s, k, fi->host));
                        healthy += ok;
                        json_array_append_new(
                                insts,
                                json_pack("{s:i, s:s, s:o, s:s, s:s, s:i, s:b}", "instance",
                                          (int) k, "unit", unit, "host",
                                          fi ? json_string(fi->host) : json_null(), "active_state",
                                          o ? o->active_state : "unknown", "sub_state",
                                          o ? o->sub_state : "unknown", "n_restarts",
                                          o ? (int) o->n_restarts : 0, "healthy", ok));
                }
                json_array_append_new(
                        arr, json_pack("{s:s, s:s, s:i, s:i, s:o, s:o}", "service", s->name, "kind",
                                       service_kind_to_string(s->kind), "count", (int) s->count,
                                       "healthy", healthy, "instances", insts, "shards",
                                       shards_summary_json(c, s)));
        }
        return rpc_set_json(x, json_pack("{s:o}", "services", arr));
}

int rpc_verb_scale(RpcContext *x) {
        Controller *c = x->c;
        const Baton__V1__ServiceRequest *req = x->request->service;
        _cleanup_(fleet_change_done) FleetChange change = { 0 };
        ServiceSpec *s;
        uint32_t previous;
        int r;

        if (x->request->args_case != BATON__V1__REQUEST__ARGS_SERVICE || isempty(req->service))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "scale needs SERVICE N");
        if (asprintf(&x->audit_request, "%s %u", req->service, req->count) < 0)
                x->audit_request = NULL;
        s = fleet_service(c, req->service);
        if (!s)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "no service '%s'",
                                req->service);
        if (s->kind == SERVICE_SINGLETON)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                                "%s is a singleton: it always has one instance", s->name);
        if (s->kind == SERVICE_SHARDED)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                                "%s is sharded: change its instances with `batonctl reshard`",
                                s->name);
        if (req->count < s->min_replicas)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                                "%s: %u is below MinReplicas=%u", s->name, req->count,
                                s->min_replicas);
        if (req->count > s->max_replicas)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                                "%s: %u is above MaxReplicas=%u", s->name, req->count,
                                s->max_replicas);
        previous = s->count;
        /* The new count and its placement in one transaction. */
        s->count = req->count;
        r = fleet_change_prepare(c, c->services, c->n_services, &change);
        if (r >= 0) {
                r = store_begin(c->store);
                if (r >= 0)
                        r = store_put_service(c->store, s->name, s->file_name, s->unit_text,
                                              req->count, now_realtime_usec());
                if (r >= 0)
                        r = fleet_change_write(c, &change);
                if (r >= 0)
                        r = store_commit(c->store);
                if (r < 0) {
                        store_rollback(c->store);
                        c->counters.store_errors++;
                        log_error_errno(r, "Failed to store the scale of %s: %s", s->name,
                                        store_error(c->store));
                }
        }
        if (r < 0) {
                s->count = previous;
                if (r == -ENOMEM)
                        return r;
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "cannot scale %s: %s; nothing changed", s->name,
                                store_error(c->store));
        }
        fleet_change_adopt(c, &change, "scale");
        return rpc_set_json(x, json_pack("{s:s, s:i, s:i}", "service", s->name, "count",
                                         (int) s->count, "previous", (int) previous));
}

static size_t instances_on(Controller *c, const char *host) {
        size_t n = 0;

        for (size_t i = 0; i < c->n_instances; i++)
                n += streq(c->instances[i].host, host);
        return n;
}

int rpc_verb_drain(RpcContext *x) {
        Controller *c = x->c;
        bool drain = streq(x->request->verb, "drain");
        _cleanup_(fleet_change_done) FleetChange change = { 0 };
        const char *host;
        HostTransition t;
        size_t before;
        Host *h;
        int r;

        if (x->request->args_case != BATON__V1__REQUEST__ARGS_HOST ||
            isempty(x->request->host->host))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "%s needs a host",
                                x->request->verb);
        host = x->request->host->host;
        x->audit_request = strdup(host);
        h = host_table_get(&c->hosts, host);
        if (!h)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "no host '%s'", host);
        before = instances_on(c, host);
        r = host_table_set_drained(&c->hosts, host, drain, &t);
        if (r > 0) {
                /* The host's state and the placement it causes in one
                 * transaction; undone in memory if that fails. */
                r = fleet_change_prepare(c, c->services, c->n_services, &change);
                if (r >= 0) {
                        r = store_begin(c->store);
                        if (r >= 0)
                                r = controller_persist_host(c, h);
                        if (r >= 0)
                                r = fleet_change_write(c, &change);
                        if (r >= 0)
                                r = store_commit(c->store);
                        if (r < 0) {
                                store_rollback(c->store);
                                c->counters.store_errors++;
                        }
                }
                if (r < 0) {
                        (void) host_table_set_drained(&c->hosts, host, !drain, &t);
                        if (r == -ENOMEM)
                                return r;
                        return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                        "cannot %s %s: %s; nothing changed", x->request->verb, host,
                                        store_error(c->store));
                }
                fleet_change_adopt(c, &change, drain ? "drain" : "undrain");
        }
        return rpc_set_json(
                x, json_pack("{s:s, s:s, s:i}", "host", host, "state",
                             host_state_to_string(host_state(h)), "moved",
                             (int) (before > instances_on(c, host) ? before - instances_on(c, host)
                                                                   : 0)));
}

int rpc_verb_restart(RpcContext *x) {
        Controller *c = x->c;
        const Baton__V1__ServiceRequest *req = x->request->service;
        const ServiceSpec *s;
        const char *host = NULL;
        char id[33];
        uint64_t rollout;
        int r;

        if (x->request->args_case != BATON__V1__REQUEST__ARGS_SERVICE || isempty(req->service))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "restart needs SERVICE[@N]");
        if (asprintf(&x->audit_request, "%s@%d", req->service, req->instance) < 0)
                x->audit_request = NULL;
        s = fleet_service(c, req->service);
        if (!s)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "no service '%s'",
                                req->service);
        if (s->kind == SERVICE_SHARDED) {
                BudgetVerdict v;
                uint64_t cost = 0;
                _cleanup_free_ char *why = NULL;
                json_t *doc = shards_map_json(c, s);
                json_t *copies = doc ? json_object_get(doc, "copies") : NULL;
                size_t k;
                json_t *cp;

                json_array_foreach(copies, k, cp) {
                        _cleanup_(rangelist_done) RangeList set = { 0 };
                        json_int_t inst = json_integer_value(json_object_get(cp, "instance"));
                        if ((req->instance < 0 || inst == req->instance) &&
                            rangelist_parse(&set,
                                            json_string_value(json_object_get(cp, "shards"))) >= 0)
                                cost += rangelist_count(&set);
                }
                json_decref(doc);
                if (shards_reshard_of(c, s->name))
                        return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                                        "%s is being resharded; restart it once the reshard is "
                                        "done (batonctl shards %s)",
                                        s->name, s->name);
                v = shards_budget_check(c, s, cost);
                if (!v.allowed)
                        return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                                        "%s: not enough start budget: it would spend %" PRIu64
                                        " identifies; %" PRIu64 " of the daily %" PRIu64
                                        " are spent in the last 24 h and %" PRIu64
                                        " must stay in reserve",
                                        s->name, v.cost, v.spent, v.limit, v.reserve);
        }
        if (req->instance < 0) {
                r = rollouts_start(c, s->name, &rollout);
                if (r == -EBUSY)
                        return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                                        "%s already has a rollout in progress (batonctl rollout "
                                        "status)",
                                        s->name);
                if (r < 0)
                        return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                        "cannot start a rollout: %s", STRERROR(r));
                return rpc_set_json(x, json_pack("{s:s, s:I, s:n, s:i}", "service", s->name,
                                                 "rollout", (json_int_t) rollout, "restart_id",
                                                 "instances", (int) s->count));
        }
        if ((uint32_t) req->instance >= s->count)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "%s has no instance %d",
                                s->name, req->instance);
        /* One instance of a sharded service restarts through the start gate too. */
        if (s->kind == SERVICE_SHARDED && !shards_may_restart(c, s, (uint32_t) req->instance, true))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                                "%s@%d cannot start now: another start of %s is identifying in "
                                "its buckets (the start gate is closed); try again shortly",
                                s->name, req->instance, s->name);
        r = fleet_send_restart(c, s->name, (uint32_t) req->instance, id, &host);
        if (r == -ENOENT)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "%s@%d is not placed on any host", s->name, req->instance);
        if (r < 0)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED, "cannot send: %s",
                                STRERROR(r));
        return rpc_set_json(x, json_pack("{s:s, s:n, s:s, s:s, s:i}", "service", s->name, "rollout",
                                         "restart_id", id, "host", host, "instances", 1));
}

int rpc_verb_alerts(RpcContext *x) {
        Controller *c = x->c;
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < c->n_alerts; i++) {
                const OpenAlert *a = &c->alerts[i];
                json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "id",
                                                     a->id, "kind", a->kind, "severity",
                                                     alert_severity_name(a->severity), "service",
                                                     strempty(a->service), "host",
                                                     strempty(a->host), "summary", a->summary,
                                                     "raised_at_us", (json_int_t) a->raised_at_us));
        }
        return rpc_set_json(x, json_pack("{s:o}", "alerts", arr));
}

static int audit_entry(int64_t seq, uint64_t at_us, const char *user, const char *verb,
                       const char *request, const char *outcome, void *userdata) {
        return json_array_append_new(
                       userdata,
                       json_pack("{s:I, s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t) seq, "at_us",
                                 (json_int_t) at_us, "user", strempty(user), "verb", strempty(verb),
                                 "request", strempty(request), "outcome", strempty(outcome))) < 0
                       ? -ENOMEM
                       : 0;
}

int rpc_verb_audit(RpcContext *x) {
        Controller *c = x->c;
        unsigned limit = 50;
        json_t *arr = json_array();
        int r;

        if (x->request->args_case == BATON__V1__REQUEST__ARGS_SERVICE &&
            x->request->service->count > 0)
                limit = MIN(x->request->service->count, 10000u);
        if (!arr)
                return -ENOMEM;
        r = store_load_audit(c->store, limit, audit_entry, arr);
        if (r < 0) {
                json_decref(arr);
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "cannot read the audit log: %s", store_error(c->store));
        }
        return rpc_set_json(x, json_pack("{s:o}", "entries", arr));
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

int rpc_verb_rollout(RpcContext *x) {
        Controller *c = x->c;
        const Baton__V1__RolloutRequest *req =
                x->request->args_case == BATON__V1__REQUEST__ARGS_ROLLOUT ? x->request->rollout
                                                                          : NULL;
        bool status_verb = streq(x->request->verb, "rollout-status");
        const char *action, *svc;
        json_t *arr, *reshards;
        int r = 0;

        /* `rollout-status` reads; `rollout` changes (rpc.c's table decides
         * who may call which). */
        action = status_verb ? "status" : req ? req->action : "";
        svc = req ? req->service : NULL;
        if (!status_verb && streq(action, "status"))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE,
                                "the status of rollouts is the read-only verb rollout-status");
        if (!status_verb && !streq(action, "pause") && !streq(action, "resume") &&
            !streq(action, "abort"))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE,
                                "unknown rollout action '%s' (pause, resume, abort)", action);
        if (status_verb && req && !isempty(req->action) && !streq(req->action, "status"))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE,
                                "rollout-status only reads; '%s' is the verb rollout", req->action);
        if (asprintf(&x->audit_request, "%s %s", action, strempty(svc)) < 0)
                x->audit_request = NULL;

        if (!streq(action, "status")) {
                size_t n = 0, n_changed = 0;
                _cleanup_free_ char **before = calloc(c->n_rollouts + 1, sizeof(char *));
                _cleanup_free_ Rollout **changed = calloc(c->n_rollouts + 1, sizeof(Rollout *));
                int k = 0;

                if (!before || !changed)
                        return -ENOMEM;
                for (size_t i = 0; i < c->n_rollouts; i++) {
                        Rollout *ro = c->rollouts[i];

                        if (!isempty(svc) && !streq(ro->service, svc))
                                continue;
                        r = rollout_format(ro, &before[n_changed]);
                        if (r < 0)
                                break;
                        if (streq(action, "pause"))
                                r = rollout_pause(ro, "paused by an operator");
                        else if (streq(action, "resume"))
                                r = rollout_resume(ro);
                        else
                                r = rollout_abort(ro, "aborted by an operator");
                        if (r == -EBUSY) {
                                free(before[n_changed]);
                                before[n_changed] = NULL;
                                r = 0;
                                continue;
                        }
                        if (r < 0)
                                break;
                        changed[n_changed++] = ro;
                }
                /* Every changed rollout stored in one transaction, or none
                 * changed: on failure each goes back to what is on disk. */
                if (r >= 0 && n_changed > 0) {
                        r = store_begin(c->store);
                        for (size_t i = 0; r >= 0 && i < n_changed; i++) {
                                _cleanup_free_ char *text = NULL;
                                r = rollout_format(changed[i], &text);
                                if (r >= 0)
                                        r = store_put_rollout(c->store, changed[i]->service,
                                                              changed[i]->id, text);
                        }
                        if (r >= 0)
                                r = store_commit(c->store);
                        if (r < 0)
                                store_rollback(c->store);
                }
                if (r < 0) {
                        for (size_t i = 0; i < n_changed; i++) {
                                Rollout *back = NULL;
                                if (rollout_parse(before[i], &back, NULL) >= 0) {
                                        for (size_t j = 0; j < c->n_rollouts; j++)
                                                if (c->rollouts[j] == changed[i]) {
                                                        rollout_free(c->rollouts[j]);
                                                        c->rollouts[j] = back;
                                                }
                                }
                        }
                        for (size_t i = 0; i <= n_changed; i++)
                                free(before[i]);
                        c->counters.store_errors++;
                        if (r == -ENOMEM)
                                return r;
                        return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                        "cannot store the rollout: %s; nothing changed",
                                        store_error(c->store));
                }
                for (size_t i = 0; i <= n_changed; i++)
                        free(before[i]);
                n = n_changed;
                /* A reshard is a rollout of its service too. */
                for (size_t i = 0; i < c->n_shard_services; i++) {
                        const char *name = c->shard_services[i]->service;
                        if (!isempty(svc) && !streq(name, svc))
                                continue;
                        k = shards_reshard_control(c, name, action);
                        if (k > 0)
                                n++;
                        else if (k < 0)
                                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                                "cannot %s the reshard of %s: %s%s", action, name,
                                                k == -ENOMEM ? "out of memory"
                                                             : store_error(c->store),
                                                n > 0 ? " (rollouts were changed)" : "");
                }
                if (n == 0)
                        return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                                        "no rollout%s%s can be %s now", isempty(svc) ? "" : " of ",
                                        strempty(svc),
                                        streq(action, "pause")    ? "paused"
                                        : streq(action, "resume") ? "resumed"
                                                                  : "aborted");
                rollouts_step(c);
        }

        arr = json_array();
        for (size_t i = 0; arr && i < c->n_rollouts; i++)
                if (isempty(svc) || streq(c->rollouts[i]->service, svc))
                        json_array_append_new(arr, rollout_json(c->rollouts[i]));
        reshards = json_array();
        for (size_t i = 0; reshards && i < c->n_shard_services; i++) {
                const Reshard *rs = shards_reshard_of(c, c->shard_services[i]->service);
                if (rs && (isempty(svc) || streq(rs->service, svc)))
                        json_array_append_new(reshards, reshard_json(rs));
        }
        return rpc_set_json(x, json_pack("{s:o, s:o}", "rollouts", arr, "reshards", reshards));
}
