/* SPDX-License-Identifier: MIT */
/* The straight line (pipeline.h): decide, store, apply, publish. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pipeline.h"
#include "records.h"
#include "util.h"
#include "views.h"

int pipeline_decide(Controller *c, Event *ev, Plan *ret, Answer *ret_answer) {
        char nonce[33];
        usec_t horizon;
        int r;

        /* Restart ids are the nonce and a counter: unique across runs (the
         * run's random half) and events (the event's number). */
        snprintf(nonce, sizeof(nonce), "%.16s%016" PRIx64, c->run_nonce, c->counters.events);
        ev->now = now_realtime_usec();
        ev->sent_after = 0;
        if (liveness_sent_after(&c->live, &horizon)) {
                usec_t mono = now_monotonic_usec();
                usec_t ago = mono > horizon ? mono - horizon : 0;
                ev->sent_after = ev->now > ago ? ev->now - ago : 0;
        }
        ev->nonce = nonce;
        ev->sync_max = c->config.sync_step_hosts;
        ev->place_max = c->config.place_step_instances;
        r = reconcile(&c->model, ev, ret, ret_answer);
        ev->nonce = NULL;
        c->counters.events++;
        return r;
}

int pipeline_commit(Controller *c, Plan *p, const PipelineAudit *audit, const char **ret_error) {
        bool durable = p->epoch > c->model.epoch;
        int r;

        *ret_error = NULL;
        r = plan_reserve(p, &c->model);
        if (r < 0) {
                *ret_error = "out of memory";
                return r;
        }
        if (!plan_has_records(p) && !audit)
                return 0;
        /* A new epoch is a promise to every agent: it reaches the disk
         * before anything goes out under it. */
        r = durable ? store_set_durable(c->store, true) : 0;
        if (r >= 0)
                r = store_begin(c->store);
        if (r >= 0) {
                r = records_write(c->store, p, &c->model);
                if (r >= 0 && audit)
                        r = store_audit(c->store, now_realtime_usec(), strempty(audit->user),
                                        audit->verb, audit->request, audit->outcome,
                                        c->config.audit_max_entries, c->config.audit_max_age);
                if (r >= 0)
                        r = store_commit(c->store);
                if (r < 0)
                        store_rollback(c->store);
        }
        if (r < 0) {
                c->counters.store_errors++;
                *ret_error = r == -ENOMEM ? "out of memory" : store_error(c->store);
        }
        if (durable && store_set_durable(c->store, false) < 0)
                log_warning("Failed to make commits cheap again after raising the epoch: %s; "
                            "every commit is synchronous until restarted.",
                            store_error(c->store));
        return r;
}

static void publish_shard_map(Controller *c, const char *service) {
        const ServiceSpec *s = model_service(&c->model, service);
        const ShardState *ss = model_shards(&c->model, service);
        _cleanup_free_ char *detail = NULL, *summary = NULL;
        uint64_t epoch;
        uint32_t total;
        json_t *doc;
        int r;

        if (!s || !ss)
                return;
        /* Consumers route by owner: the per-shard list is in `batonctl shards`. */
        doc = view_shards(&c->model, s, now_realtime_usec(), 0, false);
        if (doc) {
                detail = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(doc);
        }
        reconcile_serving(ss, &epoch, &total);
        if (!detail || asprintf(&summary,
                                "shard map of %s changed: epoch %" PRIu64 ", %u shards, %u "
                                "instances",
                                s->name, epoch, total, s->count) < 0) {
                log_error("Out of memory: the shard-map event of %s is not published.", s->name);
                return;
        }
        r = publish_event(&c->pub, c->model.epoch, "shard-map", s->name, NULL, summary, detail);
        if (r < 0)
                log_warning_errno(r, "Failed to publish the shard map of %s: %s", s->name,
                                  STRERROR(r));
}

static void carry_out_alert(Controller *c, const PlanAlert *a, uint64_t now) {
        const char *kind = alert_kind_to_string(a->kind);
        int severity = alert_kind_severity(a->kind);
        int r;

        if (a->raise && !alert_kind_is_notice(a->kind)) {
                c->counters.alerts_raised++;
                log_fields(severity == ALERT_CRITICAL ? LOG_ERR : LOG_WARNING, 0,
                           LOG_FIELDS({ "BATON_ALERT", kind }, { "BATON_HOST", strempty(a->host) }),
                           "Alert %s: %s", kind, a->summary);
        } else if (a->raise)
                log_info("%s", a->summary);
        else {
                c->counters.alerts_resolved++;
                log_notice("Resolved %s: %s", kind, a->summary);
        }
        r = publish_alert(&c->pub, c->model.epoch, a, a->raise ? now : a->raised_at_us, now);
        if (r < 0)
                log_warning_errno(r, "Failed to publish alert %s about %s%s%s: %s", kind,
                                  strempty(a->service), a->service && a->host ? " on " : "",
                                  strempty(a->host), STRERROR(r));
}

/* ---- Placements left to later passes ---------------------------------------------- */

static void on_sync_idle(uv_idle_t *h);

/* Queues `id`'s Placement, once (HostModel.sync_queued; whether to send it
 * even if unchanged is the model's, HostModel.sync_resend); starts the idle
 * handle. */
static void sync_queue_push(Controller *c, const char *id) {
        SyncQueue *q = &c->syncq;
        const Host *h = host_table_get(&c->model.hosts, id);
        HostModel *v = h ? h->userdata : NULL;

        if (!v || v->sync_queued)
                return;
        if (q->head > 0 && q->n == q->n_allocated) {
                memmove(q->hosts, q->hosts + q->head, (q->n - q->head) * sizeof(char *));
                q->n -= q->head;
                q->head = 0;
        }
        if (q->n == q->n_allocated) {
                size_t m = MAX(q->n_allocated * 2, (size_t) 256);
                const char **hv = realloc(q->hosts, m * sizeof(char *));

                if (!hv) {
                        log_error("Out of memory: the Placement of %s waits for the periodic "
                                  "check.",
                                  h->id);
                        return;
                }
                q->hosts = hv;
                q->n_allocated = m;
        }
        q->hosts[q->n++] = h->id;
        v->sync_queued = true;
        c->counters.placements_deferred++;
        if (q->on)
                (void) uv_idle_start(&q->idle, on_sync_idle); /* cannot fail: initialized */
}

/* Queues service `name` to be placed by the next sync pass, once. */
static void sync_queue_push_service(Controller *c, const char *name) {
        SyncQueue *q = &c->syncq;
        char **v;

        for (size_t i = 0; i < q->n_services; i++)
                if (streq(q->services[i], name))
                        return;
        v = realloc(q->services, (q->n_services + 1) * sizeof(char *));
        if (v)
                q->services = v;
        if (!v || !(q->services[q->n_services] = strdup(name))) {
                log_error("Out of memory: %s is placed at the next change or periodic check.",
                          name);
                return;
        }
        q->n_services++;
        c->counters.services_deferred++;
        if (q->on)
                (void) uv_idle_start(&q->idle, on_sync_idle); /* cannot fail: initialized */
}

static void names_free(char **names, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

static void sync_queue_services_free(SyncQueue *q) {
        names_free(q->services, q->n_services);
        q->services = NULL;
        q->n_services = 0;
}

/* One step, in a pass of its own: the services waiting (the pass places as
 * many as place_step_instances allows and leaves the rest again, with the
 * hosts it touches), else the next sync_step_hosts hosts. They leave the
 * queue first: the pass may queue them again. */
static void on_sync_idle(uv_idle_t *h) {
        Controller *c = h->data;
        SyncQueue *q = &c->syncq;
        size_t n = q->n_services > 0
                           ? 0
                           : MIN(q->n - q->head, (size_t) MAX(c->config.sync_step_hosts, 1));
        _cleanup_free_ const char **hosts = calloc(n + 1, sizeof(char *));
        char **services = q->services;
        size_t n_services = q->n_services;
        Event ev = { .kind = EVENT_SYNC, .n_hosts = n };

        if (!hosts) {
                log_error("Out of memory: %zu Placements wait for the next turn.", n);
                return;
        }
        q->services = NULL;
        q->n_services = 0;
        for (size_t i = 0; i < n; i++) {
                HostModel *v = model_host(&c->model, q->hosts[q->head + i]);

                hosts[i] = q->hosts[q->head + i];
                if (v)
                        v->sync_queued = false;
        }
        q->head += n;
        if (q->head == q->n) {
                q->head = q->n = 0;
                (void) uv_idle_stop(&q->idle);
        }
        ev.hosts = hosts;
        ev.services = (const char *const *) services;
        ev.n_services = n_services;
        /* A failure is logged by the pipeline; the periodic check (every
         * host's units, every service) does what did not happen. */
        (void) pipeline_run(c, &ev);
        names_free(services, n_services);
}

void pipeline_carry_out(Controller *c, Plan *p, usec_t start) {
        uint64_t now = now_realtime_usec();

        for (size_t i = 0; i < p->n_logs; i++)
                log_full(p->logs[i].level, "%s", p->logs[i].text);
        plan_apply(p, &c->model, now);
        outbox_send(&c->outbox, p, c->model.epoch, start);
        for (size_t i = 0; i < p->n_later; i++)
                sync_queue_push(c, p->later[i].host);
        for (size_t i = 0; i < p->n_later_services; i++)
                sync_queue_push_service(c, p->later_services[i]);
        for (size_t i = 0; i < p->n_alerts; i++)
                carry_out_alert(c, &p->alerts[i], now);
        for (size_t i = 0; i < p->n_map_changed; i++)
                publish_shard_map(c, p->map_changed[i]);
}

int pipeline_run(Controller *c, Event *ev) {
        _cleanup_(plan_done) Plan p = { 0 };
        _cleanup_(answer_done) Answer a = { 0 };
        const char *kind = event_kind_to_string(ev->kind), *error;
        usec_t start = now_monotonic_usec(), took;
        int r;

        r = pipeline_decide(c, ev, &p, &a);
        if (r < 0) {
                log_error_errno(r, "Failed to reconcile the %s event: %s; nothing changed.", kind,
                                STRERROR(r));
                return r;
        }
        if (a.verdict != VERDICT_OK)
                /* Only requests are refused; an event the core refuses is a bug. */
                log_warning("The %s event was refused: %s", kind, strna(a.error));
        r = pipeline_commit(c, &p, NULL, &error);
        if (r < 0) {
                log_error_errno(r,
                                "Failed to store what the %s event decided: %s; nothing changed "
                                "(the next event or the periodic check decides again).",
                                kind, strna(error));
                return r;
        }
        pipeline_carry_out(c, &p, start);
        took = now_monotonic_usec() - start;
        if (took > c->counters.longest_step)
                c->counters.longest_step = took;
        loop_probe_part(&c->probe, kind, took);
        return 0;
}

/* ---- host transitions, coalesced ----------------------------------------------- */

void pipeline_transitions_flush(Controller *c) {
        HostWave *w = &c->wave;
        Event ev = { .kind = EVENT_HOSTS };

        if (w->armed) {
                (void) uv_timer_stop(&w->timer);
                w->armed = false;
        }
        if (w->n == 0)
                return;
        ev.transitions = w->transitions;
        ev.since = w->since;
        ev.n_transitions = w->n;
        /* Failures are logged by the pipeline; the hosts' state is in the
         * table either way and the periodic check places again. */
        (void) pipeline_run(c, &ev);
        w->n = 0;
}

static void on_wave(uv_timer_t *t) {
        Controller *c = t->data;

        c->wave.armed = false;
        pipeline_transitions_flush(c);
}

void pipeline_host_transition(Controller *c, const HostTransition *t) {
        HostWave *w = &c->wave;
        HostModel *v = model_host(&c->model, t->id);
        uint64_t now = now_realtime_usec();
        usec_t since = 0;

        if (v) {
                if (t->from != _HOST_STATE_INVALID && v->state_since_us > 0 &&
                    now > v->state_since_us)
                        since = now - v->state_since_us;
                v->state_since_us = now;
                v->dirty = true;
        }
        if (w->n == w->n_allocated) {
                size_t n = MAX(w->n_allocated * 2, (size_t) 64);
                HostTransition *tv = realloc(w->transitions, n * sizeof(HostTransition));
                usec_t *sv = tv ? realloc(w->since, n * sizeof(usec_t)) : NULL;

                if (tv)
                        w->transitions = tv;
                if (sv)
                        w->since = sv;
                if (!tv || !sv) {
                        /* Out of memory: what is gathered goes now, this one alone. */
                        Event ev = { .kind = EVENT_HOSTS,
                                     .transitions = t,
                                     .since = &since,
                                     .n_transitions = 1 };
                        pipeline_transitions_flush(c);
                        (void) pipeline_run(c, &ev);
                        return;
                }
                w->n_allocated = n;
        }
        w->transitions[w->n] = *t;
        w->since[w->n] = since;
        w->n++;
        /* Once the loop has read what it has: a burst of returns, or a
         * sweep, is one reconcile. */
        if (!w->armed && uv_timer_start(&w->timer, on_wave, 0, 0) >= 0)
                w->armed = true;
        else if (!w->armed)
                pipeline_transitions_flush(c);
}

/* ---- observed facts, in batches -------------------------------------------------- */

void pipeline_flush_hosts(Controller *c) {
        const HostTable *t = &c->model.hosts;
        size_t n = 0;
        int r;

        for (size_t i = 0; i < t->n_hosts; i++) {
                const HostModel *v = t->hosts[i]->userdata;
                n += v && v->dirty;
        }
        if (n == 0)
                return;
        /* One transaction (one fsync) for all hosts seen since the last flush. */
        r = store_begin(c->store);
        for (size_t i = 0; r >= 0 && i < t->n_hosts; i++) {
                const HostModel *v = t->hosts[i]->userdata;
                if (v && v->dirty)
                        r = records_write_host(c->store, &c->model, t->hosts[i]->id);
        }
        if (r >= 0)
                r = store_commit(c->store);
        if (r < 0) {
                store_rollback(c->store);
                c->counters.store_errors++;
                log_warning_errno(r,
                                  "Failed to store what %zu hosts reported: %s; retrying at "
                                  "the next flush.",
                                  n, store_error(c->store));
                return;
        }
        for (size_t i = 0; i < t->n_hosts; i++) {
                HostModel *v = t->hosts[i]->userdata;
                if (v)
                        v->dirty = false;
        }
}

int pipeline_init(Controller *c) {
        int r = random_id(c->run_nonce);

        if (r < 0)
                return r;
        r = uv_timer_init(c->loop, &c->wave.timer);
        c->wave.timer.data = c;
        if (r < 0)
                return r;
        r = uv_idle_init(c->loop, &c->syncq.idle);
        c->syncq.idle.data = c;
        c->syncq.on = r >= 0;
        return r;
}

void pipeline_done(Controller *c) {
        free(c->wave.transitions);
        free(c->wave.since);
        c->wave = (HostWave){ 0 };
        free(c->syncq.hosts);
        c->syncq.hosts = NULL;
        sync_queue_services_free(&c->syncq);
        c->syncq.head = c->syncq.n = c->syncq.n_allocated = 0;
}
