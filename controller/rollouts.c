/* SPDX-License-Identifier: MIT */
/* Rolling restarts: controller/core/rollout decides, this file observes
 * health, persists and sends. The rollout is written to SQLite after every
 * step and before any Restart goes out, so a controller killed at any moment
 * resumes it and never restarts an instance twice (at worst an issued
 * restart that never went out times the step out, which pauses the rollout
 * for an operator). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "controller.h"
#include "events.pb-c.h"
#include "log.h"
#include "rollout.h"
#include "spec.h"
#include "util.h"

#define STEP_INTERVAL_MS 250

static int save(Controller *c, Rollout *r) {
        _cleanup_free_ char *text = NULL;
        int k;

        k = rollout_format(r, &text);
        if (k >= 0)
                k = store_put_rollout(c->store, r->service, r->id, text);
        if (k < 0) {
                c->counters.store_errors++;
                return log_error_errno(k, "Failed to persist the rollout of %s: %s", r->service,
                                       store_error(c->store));
        }
        return 0;
}

static Rollout *find(Controller *c, const char *service, size_t *ret_i) {
        for (size_t i = 0; i < c->n_rollouts; i++)
                if (streq(c->rollouts[i]->service, service)) {
                        if (ret_i)
                                *ret_i = i;
                        return c->rollouts[i];
                }
        return NULL;
}

static int add(Controller *c, Rollout *r) {
        Rollout **p = realloc(c->rollouts, (c->n_rollouts + 1) * sizeof(Rollout *));

        if (!p)
                return -ENOMEM;
        c->rollouts = p;
        c->rollouts[c->n_rollouts++] = r;
        if (r->id >= c->next_rollout_id)
                c->next_rollout_id = r->id + 1;
        return 0;
}

static int load_one(const char *text, void *userdata) {
        Controller *c = userdata;
        _cleanup_free_ char *error = NULL;
        Rollout *r;
        int k;

        k = rollout_parse(text, &r, &error);
        if (k < 0) {
                log_error("A stored rollout does not parse (%s); ignoring it.",
                          error ? error : STRERROR(k));
                return 0;
        }
        k = add(c, r);
        if (k < 0)
                rollout_free(r);
        return k;
}

static void on_timer(uv_timer_t *t) {
        Controller *c = t->data;

        if (c->blind || c->stopping)
                return;
        rollouts_step(c);
        shards_step(c);
        fleet_drain_step(c);
}

bool rollouts_active(Controller *c, const char *service) {
        const Rollout *r = find(c, service, NULL);
        return r && (r->state == ROLLOUT_RUNNING || r->state == ROLLOUT_PAUSED ||
                     r->state == ROLLOUT_FAILED);
}

int rollouts_load(Controller *c) {
        int r;

        c->next_rollout_id = 1;
        r = store_load_rollouts(c->store, load_one, c);
        if (r < 0)
                return log_error_errno(r, "Failed to load rollouts: %s", store_error(c->store));
        for (size_t i = 0; i < c->n_rollouts; i++)
                if (c->rollouts[i]->state == ROLLOUT_RUNNING)
                        log_info("Resuming the rollout %" PRIu64 " of %s.", c->rollouts[i]->id,
                                 c->rollouts[i]->service);
        r = uv_timer_init(c->loop, &c->rollout_timer);
        if (r < 0)
                return r;
        c->rollout_timer.data = c;
        return uv_timer_start(&c->rollout_timer, on_timer, STEP_INTERVAL_MS, STEP_INTERVAL_MS);
}

void rollouts_done(Controller *c) {
        for (size_t i = 0; i < c->n_rollouts; i++)
                rollout_free(c->rollouts[i]);
        free(c->rollouts);
        c->rollouts = NULL;
        c->n_rollouts = 0;
}

int rollouts_start(Controller *c, const char *service, uint64_t *ret_id) {
        const ServiceSpec *s = fleet_service(c, service);
        Rollout *old, *r;
        size_t i;
        int k;

        if (!s)
                return -ENOENT;
        old = find(c, service, &i);
        if (old && (old->state == ROLLOUT_RUNNING || old->state == ROLLOUT_PAUSED ||
                    old->state == ROLLOUT_FAILED))
                return -EBUSY;
        k = rollout_new(service, c->next_rollout_id, s->count, s->max_unavailable, s->healthy_for,
                        s->health_timeout, &r);
        if (k < 0)
                return k;
        k = save(c, r);
        if (k < 0) {
                rollout_free(r);
                return k;
        }
        if (old) {
                rollout_free(old);
                c->rollouts[i] = c->rollouts[--c->n_rollouts];
        }
        k = add(c, r);
        if (k < 0) {
                rollout_free(r);
                return k;
        }
        log_info("Rolling restart %" PRIu64 " of %s: %u instances, MaxUnavailable=%u.", r->id,
                 service, s->count, s->max_unavailable);
        if (ret_id)
                *ret_id = r->id;
        rollouts_step(c);
        return 0;
}

/* An instance is healthy when its unit is active where it is placed; it has
 * been restarted since the rollout issued its restart when systemd's last
 * state change on it came after that. */
static void health_of(Controller *c, const Rollout *r, const ServiceSpec *s, uint32_t instance,
                      const char *host, InstanceHealth *ret) {
        _cleanup_free_ char *unit = NULL;
        usec_t started = instance < r->n_items ? r->items[instance].started_at : 0;
        Host *h = host ? host_table_get(&c->hosts, host) : NULL;
        HostView *v = h && h->alive ? h->userdata : NULL;
        const struct ObservedUnitState *o;

        *ret = (InstanceHealth){ .instance = instance };
        if (!v || fleet_instance_unit(c, s, instance, &unit) < 0)
                return;
        o = host_view_unit(v, unit);
        if (o) {
                /* Sharded: healthy once every shard it owns is ready again. */
                ret->healthy =
                        streq_ptr(o->active_state, "active") &&
                        (s->kind != SERVICE_SHARDED || shards_instance_ready(c, s, instance, host));
                ret->restarted_since_issue = started > 0 && o->state_change_us > started;
        }
}

/* A sharded service restarts through its start gate, one instance at a time:
 * the rollout core is shown unhealthy stand-ins outside the rollout (they
 * use up MaxUnavailable) so that it restarts nothing while the gate is
 * closed for the next instance, and at most one when it is open. Returns
 * how many it wrote to ret. */
static size_t gate_stand_ins(Controller *c, const Rollout *r, const ServiceSpec *s,
                             InstanceHealth *ret) {
        uint32_t in_flight = 0, fake;
        const RolloutItem *next = NULL;

        for (size_t i = 0; i < r->n_items; i++) {
                in_flight +=
                        r->items[i].state == ITEM_RESTARTING || r->items[i].state == ITEM_SETTLING;
                if (!next && r->items[i].state == ITEM_PENDING)
                        next = &r->items[i];
        }
        if (!next)
                return 0;
        if (!shards_may_restart(c, (ServiceSpec *) s, next->instance, false))
                fake = r->max_unavailable;
        else
                fake = r->max_unavailable > in_flight + 1 ? r->max_unavailable - in_flight - 1 : 0;
        for (uint32_t k = 0; k < fake; k++)
                ret[k] = (InstanceHealth){ .instance = UINT32_MAX - k, .healthy = false };
        return fake;
}

static void step_one(Controller *c, Rollout *r) {
        const ServiceSpec *s = fleet_service(c, r->service);
        _cleanup_free_ InstanceHealth *health = NULL;
        _cleanup_free_ RolloutAction *actions = NULL;
        _cleanup_free_ const char **host_of = NULL;
        _cleanup_free_ char *before = NULL, *after = NULL;
        size_t n, n_health, max = r->n_items + 2;

        if (!s) {
                (void) rollout_abort(r, "the service was deleted");
                (void) save(c, r);
                return;
        }
        /* Room for the stand-ins of a closed start gate (below). */
        health = calloc(r->n_items + r->max_unavailable + 1, sizeof(InstanceHealth));
        actions = calloc(max, sizeof(RolloutAction));
        host_of = calloc(r->n_items + 1, sizeof(char *));
        if (!health || !actions || !host_of)
                return;
        /* Where each instance runs, in one pass (items are instances 0…n-1). */
        for (size_t i = 0; i < c->n_instances; i++)
                if (streq(c->instances[i].service, s->name) &&
                    c->instances[i].instance < r->n_items)
                        host_of[c->instances[i].instance] = c->instances[i].host;
        for (size_t i = 0; i < r->n_items; i++)
                health_of(c, r, s, r->items[i].instance,
                          r->items[i].instance < r->n_items ? host_of[r->items[i].instance] : NULL,
                          &health[i]);

        n_health = r->n_items;
        if (s->kind == SERVICE_SHARDED)
                n_health += gate_stand_ins(c, r, s, health + r->n_items);

        (void) rollout_format(r, &before);
        n = rollout_step(r, health, n_health, now_realtime_usec(), actions, max);
        (void) rollout_format(r, &after);
        /* Durable before anything goes out: never a restart twice. */
        if (!streq_ptr(before, after) && save(c, r) < 0)
                return;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *summary = NULL;
                char id[33];

                switch (actions[i].kind) {
                case ROLLOUT_ACTION_RESTART:
                        if (s->kind == SERVICE_SHARDED)
                                (void) shards_may_restart(c, s, actions[i].instance, true);
                        if (fleet_send_restart(c, r->service, actions[i].instance, id, NULL) < 0)
                                log_warning("Rollout %" PRIu64 ": could not send the restart of "
                                            "%s@%u; the step will time out.",
                                            r->id, r->service, actions[i].instance);
                        break;
                case ROLLOUT_ACTION_ALERT:
                        if (asprintf(&summary, "rolling restart %" PRIu64 " of %s paused: %s",
                                     r->id, r->service, strna(r->reason)) >= 0)
                                (void) alert_raise(c, "rollout-failed",
                                                   BATON__V1__SEVERITY__SEVERITY_CRITICAL,
                                                   r->service, NULL, summary);
                        break;
                case ROLLOUT_ACTION_RESOLVE:
                        if (asprintf(&summary, "rolling restart %" PRIu64 " of %s resumed", r->id,
                                     r->service) >= 0)
                                (void) alert_resolve(c, "rollout-failed", r->service, NULL,
                                                     summary);
                        break;
                case ROLLOUT_ACTION_FINISHED:
                        log_info("Rolling restart %" PRIu64 " of %s is done.", r->id, r->service);
                        break;
                default:
                        break;
                }
        }
}

void rollouts_step(Controller *c) {
        if (c->blind || c->stopping)
                return;
        /* Paused and failed rollouts are stepped too: the core keeps tracking
         * restarts in flight and resolves alerts, and issues restarts only
         * while running. */
        for (size_t i = 0; i < c->n_rollouts; i++) {
                Rollout *r = c->rollouts[i];
                if (r->state != ROLLOUT_DONE && (r->state != ROLLOUT_ABORTED || r->alert_raised))
                        step_one(c, r);
        }
}
