/* SPDX-License-Identifier: MIT */
/* The verbs that read: ping, hosts, status, shards, alerts, audit and
 * rollout-status. They read the model and the store, and change nothing. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "rpc-internal.h"
#include "util.h"
#include "views.h"

int rpc_verb_ping(RpcContext *x) {
        const Controller *c = x->c;
        uint64_t refused_total = 0;
        struct {
                const char *name;
                uint64_t value;
        } fixed[] = {
                { "status_received", c->intake.status_received },
                { "heartbeats", c->intake.heartbeats },
                { "markers", c->intake.markers },
                { "rpc_received", c->intake.rpc_received },
                { "rpc_answered", c->intake.rpc_answered },
                { "events", c->counters.events },
                { "alerts_raised", c->counters.alerts_raised },
                { "alerts_resolved", c->counters.alerts_resolved },
                { "placements_sent", c->outbox.placements_sent },
                { "restarts_sent", c->outbox.restarts_sent },
                { "commands_waiting", outbox_depth(&c->outbox) },
                { "commands_waiting_peak", c->outbox.peak },
                { "placements_deferred", c->counters.placements_deferred },
                { "placements_waiting", c->syncq.n - c->syncq.head },
                { "services_deferred", c->counters.services_deferred },
                { "services_waiting", c->syncq.n_services },
                { "publish_failed", c->pub.failed },
                { "store_errors", c->counters.store_errors },
                { "refused_total", 0 },
                { "status_lag_ms", c->live.lag / USEC_PER_MSEC },
                { "longest_step_ms", c->counters.longest_step / USEC_PER_MSEC },
                { "longest_busy_ms", c->counters.longest_busy / USEC_PER_MSEC },
                { "busy_over_100ms", c->counters.busy_long },
                { "longest_busy_cpu_ms", c->counters.longest_busy_cpu / USEC_PER_MSEC },
                { "busy_cpu_over_100ms", c->counters.busy_long_cpu },
                { "longest_busy_own_ms", c->counters.longest_busy_own / USEC_PER_MSEC },
                { "busy_own_over_100ms", c->counters.busy_long_own },
        };
        size_t n = ELEMENTSOF(fixed) + _REFUSE_REASON_MAX;

        for (size_t i = 0; i < _REFUSE_REASON_MAX; i++)
                refused_total += c->intake.refused[i];
        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                if (streq(fixed[i].name, "refused_total"))
                        fixed[i].value = refused_total;

        x->counters = calloc(n, sizeof(Baton__V1__Counter));
        x->counter_ptrs = calloc(n, sizeof(Baton__V1__Counter *));
        x->counter_names = calloc(n, sizeof(char *));
        if (!x->counters || !x->counter_ptrs || !x->counter_names)
                return -ENOMEM;
        x->n_counters = n;
        for (size_t i = 0; i < n; i++) {
                Baton__V1__Counter *k = &x->counters[i];

                baton__v1__counter__init(k);
                if (i < ELEMENTSOF(fixed)) {
                        k->name = (char *) fixed[i].name;
                        k->value = fixed[i].value;
                } else {
                        /* One counter per refusal reason, named so dashboards can split them. */
                        RefuseReason why = (RefuseReason) (i - ELEMENTSOF(fixed));
                        if (asprintf(&x->counter_names[i], "refused.%s",
                                     refuse_reason_to_string(why)) < 0) {
                                x->counter_names[i] = NULL;
                                return -ENOMEM;
                        }
                        k->name = x->counter_names[i];
                        k->value = c->intake.refused[why];
                }
                x->counter_ptrs[i] = k;
        }

        baton__v1__pong__init(&x->pong);
        x->pong.controller_id = c->config.id;
        x->pong.version = (char *) BATON_VERSION;
        x->pong.epoch = c->model.epoch;
        x->pong.started_at_us = c->started_at_us;
        x->pong.now_us = now_realtime_usec();
        x->pong.hosts_up = (uint32_t) (host_table_count(&c->model.hosts, HOST_UP) +
                                       host_table_count(&c->model.hosts, HOST_DRAINED));
        x->pong.hosts_total = (uint32_t) c->model.hosts.n_hosts;
        x->pong.n_counters = n;
        x->pong.counters = x->counter_ptrs;
        x->pong.user = (char *) strempty(x->user);
        x->response.result_case = BATON__V1__RESPONSE__RESULT_PONG;
        x->response.pong = &x->pong;
        return 0;
}

/* Splits "k=v k=v" into a NULL-terminated array of words (one allocation). */
static char **split_words(const char *s, size_t *ret_n) {
        size_t n = 0, len = strlen(strempty(s));
        char **v, *copy;

        for (const char *p = strempty(s); *p; p++)
                if (*p != ' ' && (p == s || p[-1] == ' '))
                        n++;
        v = malloc((n + 1) * sizeof(char *) + len + 1);
        if (!v)
                return NULL;
        copy = (char *) (v + n + 1);
        memcpy(copy, strempty(s), len + 1);
        n = 0;
        for (char *tok = strtok(copy, " "); tok; tok = strtok(NULL, " "))
                v[n++] = tok;
        v[n] = NULL;
        *ret_n = n;
        return v;
}

static int host_info(RpcContext *x, const Host *h, Baton__V1__HostInfo *hi, size_t i) {
        const HostModel *v = h->userdata;

        baton__v1__host_info__init(hi);
        hi->host = h->id;
        hi->state = (char *) host_state_to_string(host_state(h));
        if (!v)
                return 0;
        hi->last_seen_us = v->last_seen_us;
        hi->state_since_us = v->state_since_us;
        hi->boot_id = (char *) strempty(v->boot_id);
        hi->agent_version = (char *) strempty(v->agent_version);
        hi->cores = v->cores;
        hi->memory_total_bytes = v->memory_total;
        hi->memory_available_bytes = v->memory_available;
        hi->load1_x100 = v->load1_x100;
        hi->units_total = (uint32_t) v->n_units;
        hi->units_active = v->units_active;
        hi->applied_generation = v->applied_generation;
        hi->max_epoch_seen = v->max_epoch_seen;
        hi->systemd_version = (char *) strempty(v->systemd_version);
        hi->system_state = (char *) strempty(v->system_state);
        if (reconcile_host_held(&x->c->model, h))
                hi->held_instances = (uint32_t) v->n_placed;
        x->host_labels[i] = split_words(v->labels, &hi->n_labels);
        if (!x->host_labels[i])
                return -ENOMEM;
        hi->labels = x->host_labels[i];
        return 0;
}

/* Every host, or above hosts_max a summary: counts by state and the hosts
 * that are not up (at most hosts_max of them), which is what an operator of
 * a large fleet looks for. */
int rpc_verb_hosts(RpcContext *x) {
        const HostTable *t = &x->c->model.hosts;
        size_t max = x->request->args_case == BATON__V1__REQUEST__ARGS_HOSTS
                             ? x->request->hosts->hosts_max
                             : 0,
               n = t->n_hosts, listed = 0, by_state[_HOST_STATE_MAX] = { 0 };
        bool summary = max > 0 && n > max;
        uint64_t held = 0;

        x->host_infos = calloc(n + 1, sizeof(Baton__V1__HostInfo));
        x->host_ptrs = calloc(n + 1, sizeof(Baton__V1__HostInfo *));
        x->host_labels = calloc(n + 1, sizeof(char **));
        if (!x->host_infos || !x->host_ptrs || !x->host_labels)
                return -ENOMEM;
        x->n_host_labels = n;
        for (size_t i = 0; i < n; i++) {
                const Host *h = t->hosts[i];
                const HostModel *v = h->userdata;
                HostState st = host_state(h);
                int r;

                if (st >= 0 && st < _HOST_STATE_MAX)
                        by_state[st]++;
                if (v && reconcile_host_held(&x->c->model, h))
                        held += v->n_placed;
                if (summary && (st == HOST_UP || listed >= max))
                        continue;
                r = host_info(x, h, &x->host_infos[listed], listed);
                if (r < 0)
                        return r;
                x->host_ptrs[listed] = &x->host_infos[listed];
                listed++;
        }
        baton__v1__host_list__init(&x->host_list);
        for (HostState st = 0; st < _HOST_STATE_MAX; st++) {
                baton__v1__counter__init(&x->host_states[st]);
                x->host_states[st].name = (char *) host_state_to_string(st);
                x->host_states[st].value = by_state[st];
                x->host_state_ptrs[st] = &x->host_states[st];
        }
        x->host_list.n_hosts = listed;
        x->host_list.hosts = x->host_ptrs;
        x->host_list.summary = summary;
        x->host_list.hosts_total = (uint32_t) n;
        x->host_list.n_states = _HOST_STATE_MAX;
        x->host_list.states = x->host_state_ptrs;
        x->host_list.held_instances = held;
        x->response.result_case = BATON__V1__RESPONSE__RESULT_HOSTS;
        x->response.hosts = &x->host_list;
        return 0;
}

static const char *service_arg(RpcContext *x) {
        return x->request->args_case == BATON__V1__REQUEST__ARGS_SERVICE
                       ? x->request->service->service
                       : NULL;
}

static int status_step(void *cursor, const Model *m, JsonText *out, size_t budget) {
        return status_cursor_step(cursor, m, out, budget);
}

static void status_free(void *cursor) {
        status_cursor_done(cursor);
        free(cursor);
}

int rpc_verb_status(RpcContext *x) {
        const char *only = service_arg(x);

        if (!isempty(only) && !model_service(&x->c->model, only))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "no service '%s'", only);
        size_t max = x->request->args_case == BATON__V1__REQUEST__ARGS_SERVICE
                             ? x->request->service->instances_max
                             : 0;
        StatusCursor *cur;

        /* Written in steps, however many instances there are: listed, or
         * above instances_max counted. */
        cur = calloc(1, sizeof(StatusCursor));
        if (cur &&
            status_cursor_init(cur, &x->c->model, only,
                               max == 0 || view_status_instances(&x->c->model, only) <= max) < 0)
                cur = mfree(cur);
        return rpc_answer_in_steps(x, cur, status_step, status_free);
}

int rpc_verb_shards(RpcContext *x) {
        const char *name = service_arg(x);
        const ServiceSpec *s;

        if (isempty(name))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "shards needs SERVICE");
        s = model_service(&x->c->model, name);
        if (!s)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "no service '%s'", name);
        if (s->kind != SERVICE_SHARDED)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "%s is %s, not sharded",
                                s->name, service_kind_to_string(s->kind));
        /* Above instances_max: the copies that are not settled, and no list of
         * every shard (the ranges without an owner or owned twice stay). */
        const ShardState *ss = model_shards(&x->c->model, s->name);
        size_t max = x->request->service->instances_max;
        uint64_t epoch = 0;
        uint32_t total = 0;

        if (ss)
                reconcile_serving(ss, &epoch, &total);
        return rpc_set_json(x, view_shards(&x->c->model, s, now_realtime_usec(), max,
                                           max == 0 || total <= max));
}

int rpc_verb_alerts(RpcContext *x) {
        return rpc_set_json(x, view_alerts(&x->c->model));
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
        unsigned limit = 50;
        json_t *arr = json_array();
        int r;

        if (x->request->args_case == BATON__V1__REQUEST__ARGS_SERVICE &&
            x->request->service->count > 0)
                limit = MIN(x->request->service->count, 10000u);
        if (!arr)
                return -ENOMEM;
        r = store_load_audit(x->c->store, limit, audit_entry, arr);
        if (r < 0) {
                json_decref(arr);
                if (r == -ENOMEM)
                        return r;
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "cannot read the audit log: %s", store_error(x->c->store));
        }
        return rpc_set_json(x, json_pack("{s:o}", "entries", arr));
}

int rpc_verb_rollout_status(RpcContext *x) {
        const Baton__V1__RolloutRequest *req =
                x->request->args_case == BATON__V1__REQUEST__ARGS_ROLLOUT ? x->request->rollout
                                                                          : NULL;

        if (req && !isempty(req->action) && !streq(req->action, "status"))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE,
                                "rollout-status only reads; '%s' is the verb rollout", req->action);
        return rpc_set_json(x, view_rollouts(&x->c->model, req ? req->service : NULL));
}
