/* SPDX-License-Identifier: MIT */
/* The controller's decisions in one place (reconcile.h). One pass reads the
 * model through an overlay of what the pass itself decided (the plan), so
 * that each step sees the ones before it: an event's own change (a spec, a
 * drain, a reshard), then placement, then the shard gates and reshards, then
 * rollouts, then each affected host's unit set. Nothing here does I/O. */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "fnv.h"
#include "reconcile.h"

/* Log levels (syslog's numbers; the shell maps them). */
#define L_ERR 3
#define L_WARNING 4
#define L_NOTICE 5
#define L_INFO 6
#define L_DEBUG 7

/* A Placement not applied after this long is sent again. */
#define RESEND_AFTER_US (5 * USEC_PER_SEC)
/* Each resend of one generation waits twice as long as the one before, up
 * to 5 s << 5 (160 s): an agent behind a slow broker is not sent the same
 * Placement every few seconds. */
#define RESEND_BACKOFF_MAX 5
/* A claim of an epoch this far above ours is not believed. */
#define EPOCH_JUMP_MAX (UINT64_C(1) << 20)

/* A set of strings that remembers the order they were added in: a vector
 * and an open-addressing index into it, so adding and looking up cost O(1)
 * however many hosts or units a pass touches. */
typedef struct StrSet {
        char **v;
        size_t n;
        size_t *slots; /* index + 1 into v; 0: free */
        size_t n_slots;
} StrSet;

typedef struct Rec {
        const Model *m;
        Plan *p;
        const Event *ev;
        Answer *ans;
        uint64_t now;
        unsigned restart_seq;

        /* What to settle at the end of the pass. */
        bool place;           /* compute placement */
        bool step_all;        /* step every service */
        StrSet step;          /* services whose rollouts and shard states to step */
        bool sync_all;        /* recompute every host's units */
        StrSet sync;          /* hosts whose units to recompute */
        bool resend_all;      /* send every host its Placement even if unchanged */
        StrSet resend;        /* hosts to send it to even if unchanged */
        StrSet sync_services; /* services whose instances' hosts to recompute */
        StrSet relabeled;     /* hosts whose labels changed: their services are placed */
        StrSet released;      /* down hosts an operator confirmed: no longer held */
        bool holding;         /* mass-host-loss is open: down hosts keep their instances */
        bool full_place;      /* place every service (the periodic check, tests) */
        StrSet place_given;   /* EVENT_SYNC: services an earlier pass left */
        /* Placement in steps (Event.place_max): the instances this pass may
         * still place, whether it placed a service (or need not place
         * one: see reconcile()), and the services it
         * leaves to later passes (from the first it leaves on, every one
         * that may wait: they go in name order). */
        size_t place_left;
        bool placed_one;
        bool deferring;
        StrSet place_later;
        /* Hosts whose Placements go in this pass whatever Event.sync_max:
         * those where a sharded copy starts or stops (the start gate counts
         * on it happening now), those a Restart goes to. */
        StrSet urgent;

        /* While hosts are synced: the plan's placed instances by host, and
         * every instance the plan names by the hash of (service, instance):
         * index + 1 into Plan.instances, 0: free. */
        struct HostIndex *by_host;
        size_t n_by_host;
        size_t *in_plan;
        size_t in_plan_size;
        /* spec_systemd_hash() of the specs whose units were listed, once
         * each per pass rather than once per unit. */
        struct SpecHash *spec_hashes;
        size_t n_spec_hashes;

        /* The pass's alerts by (kind, service, host): index + 1 of the newest
         * into Plan.alerts, 0: free; those from alerts_indexed on are not in
         * it yet. A wave of 5,000 host-down alerts, and a sync of each host
         * asking after its placement-too-large, looked through them all. */
        size_t *alert_slots;
        size_t n_alert_slots;
        size_t n_alert_keys;
        size_t alerts_indexed;
} Rec;

typedef struct SpecHash {
        const ServiceSpec *spec;
        uint64_t hash;      /* spec_systemd_hash() */
        uint64_t text_hash; /* FNV-1a of the whole text */
        size_t text_len;
        char config_hash[17]; /* of an unsharded unit of it */
} SpecHash;

typedef struct HostIndex {
        const char *host;
        size_t at; /* into Plan.instances */
} HostIndex;

static const char *const event_kind_table[_EVENT_KIND_MAX] = {
        [EVENT_TICK] = "tick",
        [EVENT_CONNECTED] = "connected",
        [EVENT_HOSTS] = "hosts",
        [EVENT_HEARTBEAT] = "heartbeat",
        [EVENT_UNITS] = "units",
        [EVENT_SHARD_REPORT] = "shard-report",
        [EVENT_RESULT] = "result",
        [EVENT_APPLY] = "apply",
        [EVENT_DELETE] = "delete",
        [EVENT_SCALE] = "scale",
        [EVENT_DRAIN] = "drain",
        [EVENT_RESTART] = "restart",
        [EVENT_RESHARD] = "reshard",
        [EVENT_ROLLOUT] = "rollout",
        [EVENT_CONFIRM_DOWN] = "confirm-down",
        [EVENT_SYNC] = "sync",
};

const char *event_kind_to_string(EventKind k) {
        if (k < 0 || k >= _EVENT_KIND_MAX)
                return NULL;
        return event_kind_table[k];
}

/* ---- small sets ------------------------------------------------------------ */

static size_t strset_slot(const StrSet *s, const char *x, bool *ret_found) {
        size_t i = fnv1a64_str(FNV1A64_OFFSET, x) & (s->n_slots - 1);

        for (;; i = (i + 1) & (s->n_slots - 1)) {
                size_t at = s->slots[i];
                if (at == 0 || streq(s->v[at - 1], x)) {
                        *ret_found = at != 0;
                        return i;
                }
        }
}

static bool strset_has(const StrSet *s, const char *x) {
        bool found;

        if (!x || s->n == 0)
                return false;
        (void) strset_slot(s, x, &found);
        return found;
}

static int strset_add(StrSet *s, const char *x) {
        bool found;
        char **v;

        if (!x || strset_has(s, x))
                return 0;
        /* At most half full. */
        if ((s->n + 1) * 2 > s->n_slots) {
                size_t n = MAX(s->n_slots * 2, (size_t) 16);
                size_t *slots = calloc(n, sizeof(size_t));

                if (!slots)
                        return -ENOMEM;
                free(s->slots);
                s->slots = slots;
                s->n_slots = n;
                for (size_t i = 0; i < s->n; i++)
                        s->slots[strset_slot(s, s->v[i], &found)] = i + 1;
        }
        v = realloc(s->v, (s->n + 1) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        s->v = v;
        s->v[s->n] = strdup(x);
        if (!s->v[s->n])
                return -ENOMEM;
        s->slots[strset_slot(s, x, &found)] = s->n + 1;
        s->n++;
        return 0;
}

static void strset_done(StrSet *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
        free(s->slots);
        *s = (StrSet){ 0 };
}

void answer_done(Answer *a) {
        free(a->error);
        for (size_t i = 0; i < a->n_services; i++) {
                free(a->services[i].service);
                free(a->services[i].rollout_error);
        }
        free(a->services);
        free(a->restart_id);
        free(a->restart_host);
        reshard_free(a->reshard.reshard);
        *a = (Answer){ 0 };
}

static int refuse(Rec *r, Verdict v, const char *fmt, ...) _printf_(3, 4);
static int refuse(Rec *r, Verdict v, const char *fmt, ...) {
        va_list ap;
        int k;

        free(r->ans->error);
        va_start(ap, fmt);
        k = vasprintf(&r->ans->error, fmt, ap);
        va_end(ap);
        if (k < 0) {
                r->ans->error = NULL;
                return -ENOMEM;
        }
        r->ans->verdict = v;
        return 0;
}

/* ---- the overlay: the model as this pass has changed it --------------------- */

static PlanService *find_plan_service(Plan *p, const char *name) {
        for (size_t i = 0; i < p->n_services; i++)
                if (streq(p->services[i].name, name))
                        return &p->services[i];
        return NULL;
}

static const ServiceSpec *rec_spec(Rec *r, const char *name) {
        const PlanService *ps = find_plan_service(r->p, name);

        return ps ? ps->spec : model_service(r->m, name);
}

/* Replaces (spec owned; NULL deletes) the service `name` in the plan. */
static int rec_put_service(Rec *r, const char *name, ServiceSpec *spec, bool store) {
        PlanService *ps = find_plan_service(r->p, name), *v;

        if (ps) {
                service_spec_free(ps->spec);
                ps->spec = spec;
                ps->store = ps->store || store;
                return 0;
        }
        v = realloc(r->p->services, (r->p->n_services + 1) * sizeof(PlanService));
        if (!v) {
                service_spec_free(spec);
                return -ENOMEM;
        }
        r->p->services = v;
        v[r->p->n_services] = (PlanService){ .name = strdup(name), .spec = spec, .store = store };
        if (!v[r->p->n_services].name) {
                service_spec_free(spec);
                return -ENOMEM;
        }
        r->p->n_services++;
        return 0;
}

/* Every service as the pass sees it, sorted by name (borrowed). */
static int rec_services(Rec *r, const ServiceSpec ***ret, size_t *ret_n) {
        const ServiceSpec **v = calloc(r->m->n_services + r->p->n_services + 1, sizeof(void *));
        size_t n = 0;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < r->m->n_services; i++)
                if (!find_plan_service(r->p, r->m->services[i]->name))
                        v[n++] = r->m->services[i];
        for (size_t i = 0; i < r->p->n_services; i++)
                if (r->p->services[i].spec)
                        v[n++] = r->p->services[i].spec;
        /* Few services: an insertion sort keeps it simple. */
        for (size_t i = 1; i < n; i++)
                for (size_t k = i; k > 0 && strcmp(v[k - 1]->name, v[k]->name) > 0; k--) {
                        const ServiceSpec *t = v[k];
                        v[k] = v[k - 1];
                        v[k - 1] = t;
                }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* Where an instance runs as the pass sees it; NULL: unplaced. */
static const char *rec_host_of(Rec *r, const char *service, uint32_t instance) {
        const PlanInstance *pi = plan_find_instance(r->p, service, instance);
        const Instance *in;

        if (pi)
                return pi->host;
        in = model_instance(r->m, service, instance);
        return in ? in->host : NULL;
}

static PlanShards *find_plan_shards(Plan *p, const char *service) {
        for (size_t i = 0; i < p->n_shards; i++)
                if (streq(p->shards[i].service, service))
                        return &p->shards[i];
        return NULL;
}

static const ShardState *rec_shards(Rec *r, const char *service) {
        const PlanShards *ps = find_plan_shards(r->p, service);

        return ps ? ps->state : model_shards(r->m, service);
}

/* Puts (owned; NULL forgets) the shard state of `service` into the plan. */
static int rec_put_shards(Rec *r, const char *service, ShardState *s, bool store) {
        PlanShards *ps = find_plan_shards(r->p, service), *v;

        if (ps) {
                if (ps->state != s)
                        shard_state_free(ps->state);
                ps->state = s;
                ps->store = ps->store || store;
                return 0;
        }
        v = realloc(r->p->shards, (r->p->n_shards + 1) * sizeof(PlanShards));
        if (!v) {
                shard_state_free(s);
                return -ENOMEM;
        }
        r->p->shards = v;
        v[r->p->n_shards] = (PlanShards){ .service = strdup(service), .state = s, .store = store };
        if (!v[r->p->n_shards].service) {
                shard_state_free(s);
                return -ENOMEM;
        }
        r->p->n_shards++;
        return 0;
}

/* The shard state of `service`, copied into the plan to be changed (it is
 * the pass's from then on). NULL on OOM or when there is none. `store`
 * marks that its stored part (layout, reshard, ledger) changes. */
static ShardState *rec_shards_mut(Rec *r, const char *service, bool store) {
        PlanShards *ps = find_plan_shards(r->p, service);
        const ShardState *cur;
        ShardState *copy;

        if (ps) {
                ps->store = ps->store || store;
                return ps->state;
        }
        cur = model_shards(r->m, service);
        if (!cur || shard_state_copy(cur, &copy) < 0)
                return NULL;
        if (rec_put_shards(r, service, copy, store) < 0)
                return NULL;
        return copy;
}

static PlanRollout *find_plan_rollout(Plan *p, const char *service) {
        for (size_t i = 0; i < p->n_rollouts; i++)
                if (streq(p->rollouts[i].service, service))
                        return &p->rollouts[i];
        return NULL;
}

static const Rollout *rec_rollout(Rec *r, const char *service) {
        const PlanRollout *pr = find_plan_rollout(r->p, service);

        return pr ? pr->rollout : model_rollout(r->m, service);
}

static int rec_put_rollout(Rec *r, const char *service, Rollout *ro) {
        PlanRollout *pr = find_plan_rollout(r->p, service), *v;

        if (pr) {
                if (pr->rollout != ro)
                        rollout_free(pr->rollout);
                pr->rollout = ro;
                return 0;
        }
        v = realloc(r->p->rollouts, (r->p->n_rollouts + 1) * sizeof(PlanRollout));
        if (!v) {
                rollout_free(ro);
                return -ENOMEM;
        }
        r->p->rollouts = v;
        v[r->p->n_rollouts] = (PlanRollout){ .service = strdup(service), .rollout = ro };
        if (!v[r->p->n_rollouts].service) {
                rollout_free(ro);
                return -ENOMEM;
        }
        r->p->n_rollouts++;
        return 0;
}

static Rollout *rec_rollout_mut(Rec *r, const char *service) {
        PlanRollout *pr = find_plan_rollout(r->p, service);
        const Rollout *cur;
        Rollout *copy;

        if (pr)
                return pr->rollout;
        cur = model_rollout(r->m, service);
        if (!cur || rollout_copy(cur, &copy) < 0)
                return NULL;
        if (rec_put_rollout(r, service, copy) < 0)
                return NULL;
        return copy;
}

static const PlanHost *find_plan_host(const Plan *p, const char *host) {
        for (size_t i = 0; i < p->n_hosts; i++)
                if (streq(p->hosts[i].host, host))
                        return &p->hosts[i];
        return NULL;
}

/* A host's state as the pass sees it (a drain this pass decided counts). */
static HostState rec_host_state(Rec *r, const Host *h) {
        const PlanHost *ph = find_plan_host(r->p, h->id);

        if (!h->alive)
                return HOST_DOWN;
        if (ph)
                return ph->drained ? HOST_DRAINED : HOST_UP;
        return host_state(h);
}

static bool rec_host_alive(Rec *r, const char *host) {
        const Host *h = host ? host_table_get(&r->m->hosts, host) : NULL;
        return h && h->alive;
}

static uint64_t rec_epoch(Rec *r) {
        return r->p->epoch > 0 ? r->p->epoch : r->m->epoch;
}

/* ---- alerts: only changes are published ------------------------------------ */

static bool alert_is(const PlanAlert *a, AlertKind kind, const char *service, const char *host) {
        return a->kind == kind && streq_ptr(a->service, service) && streq_ptr(a->host, host);
}

static size_t alert_slot(const Rec *r, AlertKind kind, const char *service, const char *host) {
        unsigned char k = (unsigned char) kind;
        uint64_t h = fnv1a64(FNV1A64_OFFSET, &k, 1);
        size_t mask = r->n_alert_slots - 1, i;

        h = fnv1a64(h, service ? "s" : "-", 1);
        h = fnv1a64(fnv1a64_str(h, service), "", 1);
        h = fnv1a64_str(fnv1a64(h, host ? "h" : "-", 1), host);
        for (i = h & mask;; i = (i + 1) & mask) {
                size_t at = r->alert_slots[i];
                if (at == 0 || alert_is(&r->p->alerts[at - 1], kind, service, host))
                        return i;
        }
}

/* Takes the alerts planned since the last look into the index (newest
 * wins); at most half full. */
static int alert_index_catch_up(Rec *r) {
        while (r->alerts_indexed < r->p->n_alerts) {
                const PlanAlert *a;
                size_t i;

                if ((r->n_alert_keys + 1) * 2 > r->n_alert_slots) {
                        size_t n = MAX(r->n_alert_slots * 2, (size_t) 64), upto = r->alerts_indexed;
                        size_t *slots = calloc(n, sizeof(size_t));

                        if (!slots)
                                return -ENOMEM;
                        free(r->alert_slots);
                        r->alert_slots = slots;
                        r->n_alert_slots = n;
                        r->n_alert_keys = r->alerts_indexed = 0;
                        while (r->alerts_indexed < upto) {
                                a = &r->p->alerts[r->alerts_indexed];
                                i = alert_slot(r, a->kind, a->service, a->host);
                                r->n_alert_keys += r->alert_slots[i] == 0;
                                r->alert_slots[i] = ++r->alerts_indexed;
                        }
                }
                a = &r->p->alerts[r->alerts_indexed];
                i = alert_slot(r, a->kind, a->service, a->host);
                r->n_alert_keys += r->alert_slots[i] == 0;
                r->alert_slots[i] = ++r->alerts_indexed;
        }
        return 0;
}

/* Whether the alert is open as the pass sees it. */
static bool rec_alert_open(Rec *r, AlertKind kind, const char *service, const char *host) {
        _cleanup_free_ char *id = NULL;
        bool open;

        /* The pass's own decisions, newest last: by the index, or (out of
         * memory for it) by looking through them. */
        if (alert_index_catch_up(r) >= 0 && r->n_alert_slots > 0) {
                size_t at = r->alert_slots[alert_slot(r, kind, service, host)];
                if (at > 0)
                        return r->p->alerts[at - 1].raise;
        } else
                for (size_t i = r->p->n_alerts; i > 0; i--) {
                        const PlanAlert *a = &r->p->alerts[i - 1];
                        if (alert_is(a, kind, service, host))
                                return a->raise;
                }
        id = alert_id(kind, service, host);
        open = id && model_alert(r->m, id);
        return open;
}

/* Raises or resolves an alert only when that changes it (a notice always
 * goes out). The summary is a format. */
static int rec_alert(Rec *r, AlertKind kind, bool raise, const char *service, const char *host,
                     const char *fmt, ...) _printf_(6, 7);
static int rec_alert(Rec *r, AlertKind kind, bool raise, const char *service, const char *host,
                     const char *fmt, ...) {
        _cleanup_free_ char *text = NULL;
        va_list ap;
        int k;

        if (!alert_kind_is_notice(kind) && rec_alert_open(r, kind, service, host) == raise)
                return 0;
        va_start(ap, fmt);
        k = vasprintf(&text, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        return plan_alert(r->p, kind, raise, service, host, "%s", text);
}

/* Resolves every open alert about `service` (deleted). */
static int resolve_service_alerts(Rec *r, const char *service) {
        for (size_t i = 0; i < r->m->n_alerts; i++) {
                const OpenAlert *a = &r->m->alerts[i];
                int k;

                if (!streq_ptr(a->service, service))
                        continue;
                k = rec_alert(r, a->kind, false, a->service, a->host, "%s was deleted", service);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* ---- sharded copies ---------------------------------------------------------- */

void copy_plan_done(CopyPlan *c) {
        free(c->unit);
        free(c->shards);
        *c = (CopyPlan){ 0 };
}

static const ReshardItem *reshard_item(const Reshard *rs, uint32_t instance) {
        for (size_t i = 0; rs && i < rs->n_items; i++)
                if (rs->items[i].instance == instance)
                        return &rs->items[i];
        return NULL;
}

static int copy_make(const char *service, uint32_t instance, uint8_t slot, const RangeList *set,
                     uint32_t count, uint64_t epoch, bool running, CopyPlan *ret) {
        CopyPlan cp = { .shard_count = count, .epoch = epoch, .running = running };
        int k;

        k = shard_copy_unit(service, instance, slot, &cp.unit);
        if (k < 0)
                return k;
        cp.shards = rangelist_format(set);
        if (!cp.shards) {
                free(cp.unit);
                return -ENOMEM;
        }
        *ret = cp;
        return 0;
}

int reconcile_copies(const ShardState *ss, const char *service, uint32_t instance, CopyPlan ret[2],
                     size_t *ret_n) {
        const Reshard *rs = shard_state_resharding(ss) ? ss->reshard : NULL;
        const ReshardItem *item = reshard_item(rs, instance);
        bool waiting = instance < ss->n_waiting && ss->waiting[instance];
        size_t n = 0;
        int k = 0;

        *ret_n = 0;
        if (item && rs->reload && rangelist_count(&item->from) > 0) {
                /* A live change: the one copy takes its new set once its
                 * gain is let through the gate (a loser: once done). */
                const RangeList *set = item->state == RITEM_PENDING ? &item->from : &item->to;

                if (rangelist_count(set) > 0) {
                        k = copy_make(service, instance, item->from_slot, set, rs->to_count,
                                      rs->to_epoch, !waiting, &ret[n]);
                        n += k >= 0;
                }
        } else if (item) {
                if (rangelist_count(&item->from) > 0 && item->state != RITEM_DONE) {
                        /* A moved copy runs where it was: it was let through
                         * the gate there. */
                        k = copy_make(service, instance, item->from_slot, &item->from,
                                      rs->from_count, rs->from_epoch, item->from_host || !waiting,
                                      &ret[n]);
                        if (k >= 0)
                                ret[n++].host = item->from_host;
                }
                /* A new copy already live (DONE) that moved waits like a live one. */
                if (k >= 0 && rangelist_count(&item->to) > 0 && item->state != RITEM_PENDING) {
                        k = copy_make(service, instance, item->to_slot, &item->to, rs->to_count,
                                      rs->to_epoch, item->state != RITEM_DONE || !waiting, &ret[n]);
                        n += k >= 0;
                }
        } else if (instance < ss->layout.n_instances) {
                k = copy_make(service, instance, ss->layout.slots[instance],
                              &ss->layout.sets[instance], ss->layout.shard_count, ss->layout.epoch,
                              !waiting, &ret[n]);
                n += k >= 0;
        }
        if (k < 0) {
                for (size_t i = 0; i < n; i++)
                        copy_plan_done(&ret[i]);
                return k;
        }
        *ret_n = n;
        return 0;
}

int reconcile_instance_unit(const Model *m, const ServiceSpec *s, uint32_t instance, char **ret) {
        const ShardState *ss = s->kind == SERVICE_SHARDED ? model_shards(m, s->name) : NULL;
        CopyPlan cp[2];
        size_t n = 0;
        int k;

        if (!ss)
                return service_instance_unit(s, instance, ret);
        k = reconcile_copies(ss, s->name, instance, cp, &n);
        if (k < 0)
                return k;
        if (n == 0)
                return service_instance_unit(s, instance, ret);
        /* The live copy (the first) while a new one starts beside it. */
        *ret = TAKE_PTR(cp[0].unit);
        for (size_t i = 0; i < n; i++)
                copy_plan_done(&cp[i]);
        return 0;
}

const CopyObs *reconcile_copy_report(const Model *m, const char *host, const char *unit) {
        const Host *h = host ? host_table_get(&m->hosts, host) : NULL;
        const HostModel *v = h && h->alive ? h->userdata : NULL;

        for (size_t i = 0; v && i < v->n_copies; i++)
                if (streq(v->copies[i].unit, unit))
                        return &v->copies[i];
        return NULL;
}

static bool covers(const RangeList *have, const RangeList *want) {
        RangeList both;
        bool ok;

        rangelist_init(&both);
        if (rangelist_copy(&both, want) < 0 || rangelist_intersect(&both, have) < 0) {
                rangelist_done(&both);
                return false;
        }
        ok = rangelist_count(&both) == rangelist_count(want);
        rangelist_done(&both);
        return ok;
}

/* Every shard of the copy ready; or, `settled`, ready or failed: done
 * identifying (what the start gate waits for). */
static bool copy_ready(const Model *m, const char *host, const CopyPlan *cp, bool settled,
                       uint64_t after) {
        _cleanup_(rangelist_done) RangeList want = { 0 }, done = { 0 };
        const CopyObs *rep = reconcile_copy_report(m, host, cp->unit);

        if (!rep || !rep->active || rep->epoch != cp->epoch || rep->seen_at < after)
                return false;
        if (rangelist_parse(&want, cp->shards) < 0 || !rangelist_equal(&want, &rep->assigned))
                return false;
        if (rangelist_copy(&done, &rep->ready) < 0 ||
            (settled && rangelist_union(&done, &rep->failed) < 0))
                return false;
        return covers(&done, &want);
}

/* Whether the live (or, want_new, the new) copy of `instance` is ready (or
 * settled), by a report taken in at or after `after` (a copy started at
 * `after` is judged by what it said since, not by what it said before its
 * restart). An instance with one copy has just that one. */
static bool serving_ready(const Model *m, const ShardState *ss, const char *service,
                          uint32_t instance, const char *host, bool want_new, bool settled,
                          uint64_t after) {
        CopyPlan cp[2];
        size_t n = 0;
        bool ready = false;

        if (reconcile_copies(ss, service, instance, cp, &n) < 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                bool is_new = n == 2 && i == 1;
                if (is_new == want_new || n == 1)
                        ready = copy_ready(m, cp[i].host ? cp[i].host : host, &cp[i], settled,
                                           after);
        }
        for (size_t i = 0; i < n; i++)
                copy_plan_done(&cp[i]);
        return ready;
}

bool reconcile_instance_healthy(const Model *m, const Instance *in) {
        const ServiceSpec *s = model_service(m, in->service);
        const Host *h = host_table_get(&m->hosts, in->host);
        const HostModel *v = h && h->alive ? h->userdata : NULL;
        _cleanup_free_ char *unit = NULL;
        const UnitObs *u;

        if (!s || !v || reconcile_instance_unit(m, s, in->instance, &unit) < 0)
                return false;
        if (s->kind == SERVICE_SHARDED) {
                const ShardState *ss = model_shards(m, s->name);
                return ss && serving_ready(m, ss, s->name, in->instance, in->host, false, false, 0);
        }
        u = host_model_unit(v, unit);
        return u && streq_ptr(u->active_state, "active");
}

void reconcile_serving(const ShardState *s, uint64_t *ret_epoch, uint32_t *ret_count) {
        const Reshard *r = shard_state_resharding(s) ? s->reshard : NULL;
        bool cut = r && r->to_epoch != r->from_epoch && r->n_items > 0;

        for (size_t i = 0; cut && i < r->n_items; i++)
                cut = r->items[i].state == RITEM_DONE;
        *ret_epoch = cut ? r->to_epoch : s->layout.epoch;
        *ret_count = cut ? r->to_count : s->layout.shard_count;
}

int reconcile_count_owners(const Model *m, const char *service, uint64_t epoch, uint32_t total,
                           uint8_t *owners, RangeList *failed) {
        for (size_t h = 0; h < m->hosts.n_hosts; h++) {
                const Host *host = m->hosts.hosts[h];
                const HostModel *v = host->alive ? host->userdata : NULL;

                for (size_t i = 0; v && i < v->n_copies; i++) {
                        const CopyObs *rep = &v->copies[i];

                        if (!streq(rep->service, service))
                                continue;
                        if (failed && rangelist_union(failed, &rep->failed) < 0)
                                return -ENOMEM;
                        if (!rep->active || rep->epoch != epoch)
                                continue;
                        for (size_t k = 0; k < rep->ready.n_ranges; k++)
                                for (uint32_t sh = rep->ready.ranges[k].lo;
                                     sh <= rep->ready.ranges[k].hi && sh < total; sh++)
                                        if (rangelist_contains(&rep->assigned, sh) &&
                                            owners[sh] < UINT8_MAX)
                                                owners[sh]++;
                }
        }
        return 0;
}

int reconcile_unknown_shards(const Model *m, const char *service, uint64_t epoch, uint32_t total,
                             const uint8_t *owners, usec_t now, usec_t within, RangeList *ret) {
        for (size_t h = 0; h < m->hosts.n_hosts; h++) {
                const Host *host = m->hosts.hosts[h];
                const HostModel *v = host->userdata;

                if (host->alive || !v || (within > 0 && now - v->state_since_us > within))
                        continue;
                for (size_t i = 0; i < v->n_copies; i++) {
                        const CopyObs *rep = &v->copies[i];

                        if (!streq(rep->service, service) || !rep->active || rep->epoch != epoch)
                                continue;
                        for (size_t k = 0; k < rep->ready.n_ranges; k++)
                                for (uint32_t sh = rep->ready.ranges[k].lo;
                                     sh <= rep->ready.ranges[k].hi && sh < total; sh++)
                                        if (owners[sh] == 0 &&
                                            rangelist_contains(&rep->assigned, sh) &&
                                            rangelist_add(ret, sh) < 0)
                                                return -ENOMEM;
                }
        }
        return 0;
}

/* ---- the start gate ---------------------------------------------------------- */

static int hold_add(ShardState *ss, uint32_t instance, bool new_copy, const RangeList *set,
                    usec_t now) {
        ShardHold *v = realloc(ss->holds, (ss->n_holds + 1) * sizeof(ShardHold));

        if (!v)
                return -ENOMEM;
        ss->holds = v;
        v[ss->n_holds] = (ShardHold){ .instance = instance, .new_copy = new_copy, .since = now };
        rangelist_init(&v[ss->n_holds].shards);
        if (rangelist_copy(&v[ss->n_holds].shards, set) < 0)
                return -ENOMEM;
        ss->n_holds++;
        return 0;
}

static void hold_release(ShardState *ss, size_t i, usec_t now) {
        start_gate_release(&ss->gate, &ss->holds[i].shards, now);
        rangelist_done(&ss->holds[i].shards);
        ss->holds[i] = ss->holds[--ss->n_holds];
        /* A bucket stays held while any other hold covers it (after a restart
         * every copy holds the gate at once). */
        for (size_t k = 0; k < ss->n_holds; k++)
                start_gate_take(&ss->gate, &ss->holds[k].shards);
}

/* Through the gate: taken, charged, held until ready. */
static int admit(ShardState *ss, uint32_t instance, bool new_copy, const RangeList *set,
                 usec_t now) {
        int k;

        start_gate_take(&ss->gate, set);
        k = budget_charge(&ss->ledger, now, rangelist_count(set));
        if (k < 0)
                return k;
        return hold_add(ss, instance, new_copy, set, now);
}

/* May `instance`'s live copy start now (the gate agrees)? Taken when it may. */
static int may_restart_take(Rec *r, const char *service, uint32_t instance, bool *ret) {
        const ShardState *cur = rec_shards(r, service);
        ShardState *ss;
        int k;

        *ret = false;
        if (!cur || shard_state_resharding(cur) || instance >= cur->layout.n_instances ||
            !start_gate_may_start(&cur->gate, &cur->layout.sets[instance], r->now))
                return 0;
        ss = rec_shards_mut(r, service, true);
        if (!ss)
                return -ENOMEM;
        k = admit(ss, instance, false, &ss->layout.sets[instance], r->now);
        if (k < 0)
                return k;
        *ret = true;
        return 0;
}

/* Automatic restarts of a sharded copy spend identifies. */
static int charge_restarts(Rec *r, const char *host, const char *unit, uint32_t restarts) {
        for (size_t i = 0; i < r->m->n_shards; i++) {
                const ShardState *cur = r->m->shards[i];
                const CopyObs *rep;
                ShardState *ss;
                uint32_t instance;
                uint8_t slot;
                uint64_t cost;
                int k;

                if (shard_copy_parse(cur->service, unit, &instance, &slot) < 0)
                        continue;
                rep = reconcile_copy_report(r->m, host, unit);
                cost = rep ? rangelist_count(&rep->assigned)
                       : instance < cur->layout.n_instances
                               ? rangelist_count(&cur->layout.sets[instance])
                               : 0;
                ss = rec_shards_mut(r, cur->service, true);
                if (!ss)
                        return -ENOMEM;
                k = budget_charge(&ss->ledger, r->now, cost * restarts);
                if (k < 0)
                        return k;
                return plan_log(r->p, L_INFO,
                                "%s on %s restarted %u time(s) by itself: %" PRIu64
                                " identifies charged to %s.",
                                unit, host, restarts, cost * restarts, cur->service);
        }
        return 0;
}

/* ---- health --------------------------------------------------------------------- */

/* The unit an instance runs as now, as the pass sees it. */
static int rec_instance_unit(Rec *r, const ServiceSpec *s, uint32_t instance, char **ret) {
        const ShardState *ss = s->kind == SERVICE_SHARDED ? rec_shards(r, s->name) : NULL;
        CopyPlan cp[2];
        size_t n = 0;
        int k;

        if (!ss)
                return service_instance_unit(s, instance, ret);
        k = reconcile_copies(ss, s->name, instance, cp, &n);
        if (k < 0)
                return k;
        if (n == 0)
                return service_instance_unit(s, instance, ret);
        *ret = TAKE_PTR(cp[0].unit);
        for (size_t i = 0; i < n; i++)
                copy_plan_done(&cp[i]);
        return 0;
}

/* Active where it is placed (and, sharded, every shard it owns ready), and
 * the unit's last state change, for rollouts. */
static bool rec_healthy(Rec *r, const ServiceSpec *s, uint32_t instance, const char *host,
                        uint64_t *ret_changed) {
        const Host *h = host ? host_table_get(&r->m->hosts, host) : NULL;
        const HostModel *v = h && h->alive ? h->userdata : NULL;
        _cleanup_free_ char *unit = NULL;
        const UnitObs *u;

        if (ret_changed)
                *ret_changed = 0;
        if (!v || rec_instance_unit(r, s, instance, &unit) < 0)
                return false;
        u = host_model_unit(v, unit);
        if (!u)
                return false;
        if (ret_changed)
                *ret_changed = u->state_change_us;
        if (!streq_ptr(u->active_state, "active"))
                return false;
        if (s->kind == SERVICE_SHARDED) {
                const ShardState *ss = rec_shards(r, s->name);
                return ss && serving_ready(r->m, ss, s->name, instance, host, false, false, 0);
        }
        return true;
}

/* ---- placement -------------------------------------------------------------- */

static const char *problem_word(PlacementProblemKind k) {
        return k == PLACEMENT_NO_CAPACITY ? "no capacity" : "no eligible host";
}

/* ---- placement, incremental ------------------------------------------------------
 *
 * Placement (placement.h) is stable: an instance that may stay stays, and
 * a service whose instances all may stay keeps every one of them. So a pass
 * places only the services whose instances may not all stay — changed by
 * the pass, short of instances, with an instance on a host that is down
 * (and not held), drained or relabelled — among the others as they are;
 * the result is what placing everything would give (test-reconcile checks
 * it on random fleets). Everything is placed when Memory= of a service
 * grows, which may overfill a host (placement.h: the one limit of
 * stability). The cost is that of the services placed, plus one look at
 * every host. */

bool reconcile_holding(const Model *m) {
        _cleanup_free_ char *id = alert_id(ALERT_MASS_HOST_LOSS, NULL, NULL);
        return id && model_alert(m, id);
}

bool reconcile_host_held(const Model *m, const Host *h) {
        const HostModel *v = h->userdata;
        return !h->alive && v && v->n_placed > 0 && reconcile_holding(m);
}

/* Whether down hosts keep their instances: a mass-host-loss wave is held
 * until the hosts return or an operator confirms (released hosts). */
static bool rec_holding(Rec *r) {
        return rec_alert_open(r, ALERT_MASS_HOST_LOSS, NULL, NULL);
}

static bool rec_host_held(Rec *r, const Host *h) {
        return !h->alive && r->holding && !strset_has(&r->released, h->id);
}

static uint32_t instances_wanted(const ServiceSpec *s) {
        return s->kind == SERVICE_SINGLETON ? 1 : s->count;
}

/* Index of `name` in the sorted services, or SIZE_MAX. */
static size_t service_index(const ServiceSpec *const *services, size_t n, const char *name) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int k = strcmp(services[mid]->name, name);
                if (k == 0)
                        return mid;
                if (k < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return SIZE_MAX;
}

static bool plan_has_service_instances(const Plan *p, const char *service) {
        const PlanInstance *first;

        return plan_service_instances(p, service, &first) > 0;
}

/* Marks in touched[] the services to place (see above). */
static void touched_services(Rec *r, const ServiceSpec *const *services, size_t n, bool *touched) {
        const Model *m = r->m;
        bool all = r->full_place;

        for (size_t i = 0; !all && i < r->p->n_services; i++) {
                const ServiceSpec *old = model_service(m, r->p->services[i].name),
                                  *now = r->p->services[i].spec;
                all = old && now && now->memory > old->memory;
        }
        for (size_t i = 0; i < n; i++) {
                const ServiceSpec *s = services[i];
                const Instance *first;

                touched[i] = all || find_plan_service(r->p, s->name) ||
                             strset_has(&r->place_given, s->name) ||
                             model_service_instances(m, s->name, &first) != instances_wanted(s) ||
                             plan_has_service_instances(r->p, s->name);
        }
        if (all)
                return;
        for (size_t h = 0; h < m->hosts.n_hosts; h++) {
                const Host *host = m->hosts.hosts[h];
                const HostModel *v = host->userdata;
                HostState st = rec_host_state(r, host);

                if (!v || v->n_placed == 0)
                        continue;
                if ((st == HOST_UP && !strset_has(&r->relabeled, host->id)) ||
                    rec_host_held(r, host))
                        continue;
                for (size_t k = 0; k < v->n_placed; k++) {
                        size_t si = service_index(services, n, v->placed[k].service);
                        if (si != SIZE_MAX)
                                touched[si] = true;
                }
        }
}

/* Index of host `id` in the host table, or SIZE_MAX. */
static size_t host_index(const HostTable *t, const char *id) {
        const Host *h = host_table_get(t, id);

        return h ? h->at : SIZE_MAX;
}

/* Drains go step by step: a drained host keeps its instances except, per
 * service, as many as MaxUnavailable allows beyond the instances of that
 * service that are not healthy now (one just moved and still starting
 * counts). Marks in released[] those of `cur` (one service's) that may go. */
static void drain_release(Rec *r, const ServiceSpec *s, const Assignment *cur, size_t n,
                          bool *released) {
        uint32_t unhealthy = 0, allowance;
        bool any_drained = false;

        /* No host drained, none draining in this pass: nothing to release
         * (and no host to look up per instance). */
        if (r->m->hosts.n_drained == 0) {
                for (size_t i = 0; i < r->p->n_hosts && !any_drained; i++)
                        any_drained = r->p->hosts[i].drained;
                if (!any_drained)
                        return;
                any_drained = false;
        }
        for (size_t k = 0; k < n; k++) {
                const Host *h = host_table_get(&r->m->hosts, cur[k].host);
                any_drained = any_drained || (h && rec_host_state(r, h) == HOST_DRAINED);
        }
        if (!any_drained)
                return;
        for (size_t k = 0; k < n; k++)
                unhealthy += !rec_healthy(r, s, cur[k].instance, cur[k].host, NULL);
        allowance = unhealthy < s->max_unavailable ? s->max_unavailable - unhealthy : 0;
        for (size_t k = 0; k < n; k++) {
                const Host *h = host_table_get(&r->m->hosts, cur[k].host);

                if (!h || rec_host_state(r, h) != HOST_DRAINED)
                        continue;
                /* An instance that is down anyway costs nothing to move. */
                if (!rec_healthy(r, s, cur[k].instance, cur[k].host, NULL))
                        released[k] = true;
                else if (allowance > 0) {
                        released[k] = true;
                        allowance--;
                }
        }
}

/* n instances: those it had keep whether they wait, new ones do not. */
static int waiting_resize(ShardState *ss, uint32_t n) {
        bool *w = calloc(n + 1, sizeof(bool));

        if (!w)
                return -ENOMEM;
        for (uint32_t i = 0; i < n && i < ss->n_waiting; i++)
                w[i] = ss->waiting[i];
        free(ss->waiting);
        ss->waiting = w;
        ss->n_waiting = n;
        return 0;
}

/* The new copy of `instance` that had started (a reshard's, a restart's or
 * a move's) is not running where it is placed: it starts again through
 * the gate, in its turn. */
static void new_copy_restarts(ShardState *ss, uint32_t instance, usec_t now) {
        for (size_t i = 0; shard_state_resharding(ss) && i < ss->reshard->n_items; i++) {
                ReshardItem *it = &ss->reshard->items[i];

                if (it->instance != instance ||
                    (it->state != RITEM_STARTING && it->state != RITEM_READY))
                        continue;
                for (size_t h = 0; h < ss->n_holds; h++)
                        if (ss->holds[h].instance == instance && ss->holds[h].new_copy) {
                                hold_release(ss, h, now);
                                break;
                        }
                it->state = RITEM_PENDING;
                it->started_at = it->ready_at = 0;
        }
}

/* A sharded instance placed anew or moved starts through the gate: its live
 * copy waits, a reshard's new copy goes back to pending, and a start under
 * way at its old place holds nothing. */
static int shards_placed(Rec *r, const char *service, uint32_t instance) {
        ShardState *ss = rec_shards_mut(r, service, true);
        const ReshardItem *item;

        if (!ss)
                return -ENOMEM;
        item = reshard_item(shard_state_resharding(ss) ? ss->reshard : NULL, instance);
        /* A reshard's new copy that had started at the old place starts
         * again, through the gate, in its turn. (One already live waits like
         * any live copy, below.) */
        new_copy_restarts(ss, instance, r->now);
        /* A moved instance's live copy keeps serving where it was, and its
         * hold (if it still identifies) is for that copy. */
        if (item && item->from_host && item->state != RITEM_DONE)
                return 0;
        for (size_t i = 0; i < ss->n_holds; i++)
                if (ss->holds[i].instance == instance && !ss->holds[i].new_copy) {
                        hold_release(ss, i, r->now);
                        break;
                }
        /* Waiting is for the copy that is live: none yet for a reshard's new
         * instance until its new copy is. */
        if (item && item->state != RITEM_DONE && rangelist_count(&item->from) == 0)
                return 0;
        if (instance >= ss->n_waiting) {
                int k = waiting_resize(ss, instance + 1);
                if (k < 0)
                        return k;
        }
        ss->waiting[instance] = true;
        return 0;
}

/* Whether `unit` is active by the last report of the host `v` is of (up
 * or not). */
static bool unit_active(const HostModel *v, const char *unit) {
        const UnitObs *u = v ? host_model_unit(v, unit) : NULL;
        return u && unit_state_runs(u->active_state);
}

/* Whether the live copy of `instance` may still serve at `host`: the host
 * is up or drained, or it went silent (its agent may be what stopped:
 * systemd keeps the units) while its last report had the copy active. A
 * host an operator confirmed down has nothing running. */
static bool copy_may_serve(Rec *r, const ServiceSpec *s, uint32_t instance, const Host *host) {
        _cleanup_free_ char *unit = NULL;

        if (host->alive && rec_host_state(r, host) != HOST_DOWN)
                return true;
        if (strset_has(&r->released, host->id) || rec_instance_unit(r, s, instance, &unit) < 0)
                return false;
        return unit_active(host->userdata, unit);
}

/* A sharded instance moved off a host whose copy may still serve there
 * (copy_may_serve()): the copy keeps running there while its replacement
 * starts at the new host (a replace item naming the old host), and stops
 * once the replacement is ready (make-before-break), unless MaxSurge=0 or
 * another reshard runs. Otherwise it starts anew through the gate
 * (shards_placed()). */
static int shards_moved(Rec *r, const ServiceSpec *s, uint32_t instance) {
        const Instance *in = model_instance(r->m, s->name, instance);
        const Host *from = in ? host_table_get(&r->m->hosts, in->host) : NULL;
        const ShardState *cur = rec_shards(r, s->name);
        const Reshard *rs = cur && shard_state_resharding(cur) ? cur->reshard : NULL;
        const ReshardItem *item = reshard_item(rs, instance);
        uint64_t id;
        ShardState *ss;
        int k;

        if (item && item->from_host)
                /* Moved again: its replacement starts over at the new place;
                 * the copy where it was keeps serving. */
                return shards_placed(r, s->name, instance);
        /* A reshard this pass installs replaces the copies itself. */
        if (s->max_surge == 0 || !cur || !from || r->ev->kind == EVENT_RESHARD ||
            !copy_may_serve(r, s, instance, from) || instance >= cur->layout.n_instances ||
            (instance < cur->n_waiting && cur->waiting[instance]) ||
            (rs && (!rs->replace || item || rs->state != RESHARD_RUNNING)))
                return shards_placed(r, s->name, instance);
        ss = rec_shards_mut(r, s->name, true);
        if (!ss)
                return -ENOMEM;
        id = r->p->next_rollout_id > 0 ? r->p->next_rollout_id : r->m->next_rollout_id;
        k = reshard_replace_move(&ss->reshard, s->name, rs ? rs->id : id, &ss->layout, instance,
                                 in->host, s->max_surge, s->health_timeout);
        if (k < 0)
                return k;
        if (!rs)
                r->p->next_rollout_id = id + 1;
        /* (diff_service() syncs the host it left: its copy stays there.) */
        k = strset_add(&r->step, s->name);
        if (k >= 0)
                k = plan_log(r->p, L_INFO,
                             "Moving %s@%u off %s make-before-break: its copy there serves until "
                             "the new one is ready (%s %" PRIu64 ").",
                             s->name, instance, in->host, reshard_kind(ss->reshard),
                             ss->reshard->id);
        return k;
}

static int cmp_plan_instance(const void *a, const void *b) {
        const PlanInstance *x = a, *y = b;
        return instance_key_cmp(x->service, x->instance, y->service, y->instance);
}

static void plan_instance_done(PlanInstance *pi) {
        free(pi->service);
        free(pi->host);
}

/* One service's new placement against the model: plan entries for what
 * differs, hosts to sync, sharded starts. `result` is the service's run of
 * the assignments. */
typedef struct PlaceDiff {
        PlanInstance *v;
        size_t n;
        size_t allocated;
} PlaceDiff;

static int diff_add(PlaceDiff *d, const char *service, uint32_t instance, const char *host) {
        if (d->n == d->allocated) {
                size_t n = MAX(d->allocated * 2, (size_t) 16);
                PlanInstance *v = realloc(d->v, n * sizeof(PlanInstance));
                if (!v)
                        return -ENOMEM;
                d->v = v;
                d->allocated = n;
        }
        d->v[d->n] = (PlanInstance){ strdup(service), instance, host ? strdup(host) : NULL };
        if (!d->v[d->n].service || (host && !d->v[d->n].host)) {
                plan_instance_done(&d->v[d->n]);
                return -ENOMEM;
        }
        d->n++;
        return 0;
}

/* Adds `host` to the hosts to sync, and to the urgent ones for a sharded
 * service. */
static int sync_add(Rec *r, const char *host, bool sharded) {
        int e = strset_add(&r->sync, host);

        return e >= 0 && sharded ? strset_add(&r->urgent, host) : e;
}

static bool rec_sharded(Rec *r, const char *service) {
        const ServiceSpec *s = rec_spec(r, service), *old = model_service(r->m, service);

        return (s && s->kind == SERVICE_SHARDED) || (old && old->kind == SERVICE_SHARDED);
}

static int diff_service(Rec *r, PlaceDiff *d, const ServiceSpec *s, const char *name,
                        const Assignment *res, size_t n_res) {
        const Instance *old;
        size_t n_old = model_service_instances(r->m, name, &old), i = 0, k = 0;
        bool sharded = rec_sharded(r, name);
        int e = 0;

        while (e >= 0 && (i < n_old || k < n_res)) {
                int cmp = i >= n_old   ? 1
                          : k >= n_res ? -1
                                       : (old[i].instance > res[k].instance) -
                                                 (old[i].instance < res[k].instance);

                if (cmp < 0) {
                        e = diff_add(d, name, old[i].instance, NULL);
                        if (e >= 0)
                                e = sync_add(r, old[i].host, sharded);
                        i++;
                } else if (cmp > 0 || !streq(old[i].host, res[k].host)) {
                        e = diff_add(d, name, res[k].instance, res[k].host);
                        if (e >= 0)
                                e = sync_add(r, res[k].host, sharded);
                        if (e >= 0 && cmp == 0)
                                e = sync_add(r, old[i].host, sharded);
                        i += cmp == 0;
                        k++;
                } else {
                        i++;
                        k++;
                }
        }
        /* Moved since the last placement of this pass, or placed anew: a
         * sharded instance starts through the gate again. Where it went
         * back to where the model has it, the earlier move is undone. */
        for (size_t j = 0; e >= 0 && s && s->kind == SERVICE_SHARDED && j < n_res; j++) {
                const char *before = rec_host_of(r, name, res[j].instance);

                if (!streq_ptr(before, res[j].host))
                        e = shards_moved(r, s, res[j].instance);
        }
        return e;
}

/* Whether `s` must be placed in this pass whatever Event.place_max: it is
 * sharded (the start gate counts on its moves happening now), the pass
 * changed it (no instance runs beyond its count or off its labels; one it
 * creates may wait), or the pass already moved some of its instances. */
static bool place_must(Rec *r, const ServiceSpec *s) {
        return s->kind == SERVICE_SHARDED ||
               (find_plan_service(r->p, s->name) && model_service(r->m, s->name)) ||
               plan_has_service_instances(r->p, s->name);
}

/* The touched services this pass places: in name order, as many as
 * Event.place_max allows (at least one, but in an apply or scale), and
 * every one up to the last that
 * must be placed now; the others are left to later passes, in name order
 * too, so what a pass places is what a pass placing everything would do
 * with them. */
static int choose_services(Rec *r, const ServiceSpec *const *services, size_t n,
                           const bool *touched, const ServiceSpec **chosen, size_t *ret_n,
                           size_t *ret_current) {
        bool limited = r->ev->place_max > 0 && !r->ev->dry_run;
        size_t last_must = SIZE_MAX;
        int k;

        for (size_t i = 0; limited && i < n; i++)
                if (touched[i] && place_must(r, services[i]))
                        last_must = i;
        for (size_t i = 0; i < n; i++) {
                const Instance *first;
                size_t have, cost;

                if (!touched[i])
                        continue;
                have = model_service_instances(r->m, services[i]->name, &first);
                cost = MAX(have, (size_t) instances_wanted(services[i]));
                if (limited && r->placed_one && (last_must == SIZE_MAX || i > last_must) &&
                    (r->deferring || cost > r->place_left)) {
                        r->deferring = true;
                        k = strset_add(&r->place_later, services[i]->name);
                        if (k < 0)
                                return k;
                        continue;
                }
                r->placed_one = true;
                r->place_left -= MIN(r->place_left, cost);
                chosen[(*ret_n)++] = services[i];
                *ret_current += have;
        }
        return 0;
}

static int place(Rec *r) {
        _cleanup_free_ const ServiceSpec **services = NULL, **chosen = NULL;
        _cleanup_free_ bool *touched = NULL, *released = NULL;
        _cleanup_free_ PlacementHost *hosts = NULL;
        _cleanup_free_ Assignment *current = NULL;
        _cleanup_(placement_result_done) PlacementResult res = { 0 };
        PlaceDiff d = { 0 };
        const Model *m = r->m;
        size_t n_services, n_chosen = 0, n_current = 0, max_current = 0, at = 0, n_others = 0;
        int e;

        r->holding = rec_holding(r);
        e = rec_services(r, &services, &n_services);
        if (e < 0)
                return e;
        touched = calloc(n_services + 1, sizeof(bool));
        chosen = calloc(n_services + 1, sizeof(ServiceSpec *));
        if (!touched || !chosen)
                return -ENOMEM;
        touched_services(r, services, n_services, touched);
        e = choose_services(r, services, n_services, touched, chosen, &n_chosen, &max_current);
        if (e < 0)
                return e;
        max_current += r->p->n_instances;

        if (n_chosen > 0) {
                hosts = calloc(m->hosts.n_hosts + 1, sizeof(PlacementHost));
                current = calloc(max_current + 1, sizeof(Assignment));
                released = calloc(max_current + 1, sizeof(bool));
                if (!hosts || !current || !released)
                        return -ENOMEM;
        }
        /* Every host, with what the services not placed here use on it: when
         * the placed (and deleted) services are all the model has (a wave of
         * lost hosts, an apply of everything), nothing; else less what they
         * use there now, instance by instance. */
        for (size_t i = 0; i < m->n_services; i++) {
                const PlanService *ps = find_plan_service(r->p, m->services[i]->name);
                bool placed_here = ps && !ps->spec;

                for (size_t k = 0; !placed_here && k < n_chosen; k++)
                        placed_here = streq(chosen[k]->name, m->services[i]->name);
                n_others += !placed_here;
        }
        for (size_t h = 0; n_chosen > 0 && h < m->hosts.n_hosts; h++) {
                const Host *host = m->hosts.hosts[h];
                const HostModel *v = host->userdata;
                HostState st = rec_host_state(r, host);

                hosts[h] = (PlacementHost){
                        .id = host->id,
                        .schedulable = st == HOST_UP,
                        .keeps = st == HOST_DRAINED || rec_host_held(r, host),
                        .labels = v ? v->label_list : NULL,
                        .n_labels = v ? v->n_labels : 0,
                        .memory_total = v ? v->memory_total : 0,
                        .memory_used = v && n_others > 0 ? v->memory_reserved : 0,
                        .n_instances = v && n_others > 0 ? v->n_placed : 0,
                };
        }
        for (size_t i = 0; n_chosen > 0 && n_others > 0 && i < n_chosen + r->p->n_services; i++) {
                const char *name =
                        i < n_chosen ? chosen[i]->name : r->p->services[i - n_chosen].name;
                const ServiceSpec *old = model_service(m, name);
                const Instance *first;
                size_t n = model_service_instances(m, name, &first);

                if (i >= n_chosen && r->p->services[i - n_chosen].spec)
                        continue; /* changed, not deleted: among the chosen */
                for (size_t k = 0; k < n; k++) {
                        size_t hi = host_index(&m->hosts, first[k].host);
                        if (hi == SIZE_MAX)
                                continue;
                        hosts[hi].n_instances -= MIN(hosts[hi].n_instances, (size_t) 1);
                        hosts[hi].memory_used -= MIN(hosts[hi].memory_used, old ? old->memory : 0);
                }
        }
        /* Where the placed services' instances are, as the pass sees them,
         * less what a drain lets go now. */
        for (size_t i = 0; i < n_chosen; i++) {
                const char *name = chosen[i]->name;
                const Instance *first;
                size_t n = model_service_instances(m, name, &first), start = n_current;

                for (size_t k = 0; k < n; k++) {
                        /* rec_host_of(), without looking up what is at hand. */
                        const PlanInstance *pi = plan_find_instance(r->p, name, first[k].instance);
                        const char *host = pi ? pi->host : first[k].host;
                        if (host)
                                current[n_current++] =
                                        (Assignment){ first[k].service, first[k].instance, host };
                }
                const PlanInstance *planned;
                size_t n_planned = plan_service_instances(r->p, name, &planned);

                for (size_t k = 0; k < n_planned; k++) {
                        const PlanInstance *pi = &planned[k];
                        if (pi->host && !model_instance(m, name, pi->instance))
                                current[n_current++] =
                                        (Assignment){ pi->service, pi->instance, pi->host };
                }
                drain_release(r, chosen[i], current + start, n_current - start, released + start);
        }
        {
                size_t j = 0;
                for (size_t k = 0; k < n_current; k++)
                        if (!released[k])
                                current[j++] = current[k];
                n_current = j;
        }
        if (n_chosen > 0) {
                e = placement_compute(chosen, n_chosen, hosts, m->hosts.n_hosts, current, n_current,
                                      &res);
                if (e < 0)
                        return e;
        }

        /* The differences from the model, of every service placed and every
         * deleted one; they replace what the plan said of them. */
        for (size_t i = 0; e >= 0 && i < n_chosen; i++) {
                size_t start = at;

                while (at < res.n_assignments &&
                       streq(res.assignments[at].service, chosen[i]->name))
                        at++;
                e = diff_service(r, &d, chosen[i], chosen[i]->name, res.assignments + start,
                                 at - start);
        }
        for (size_t i = 0; e >= 0 && i < r->p->n_services; i++)
                if (!r->p->services[i].spec)
                        e = diff_service(r, &d, NULL, r->p->services[i].name, NULL, 0);
        if (e < 0) {
                for (size_t i = 0; i < d.n; i++)
                        plan_instance_done(&d.v[i]);
                free(d.v);
                return e;
        }
        for (size_t i = 0; i < r->p->n_instances; i++)
                plan_instance_done(&r->p->instances[i]);
        free(r->p->instances);
        if (d.n > 0)
                qsort(d.v, d.n, sizeof(PlanInstance), cmp_plan_instance);
        r->p->instances = d.v;
        r->p->n_instances = d.n;
        r->p->n_moved = res.n_moved;
        if (n_chosen > 0)
                e = plan_log(r->p, res.n_moved > 0 ? L_INFO : L_DEBUG,
                             "Placed %zu of %zu services: %zu instances moved, %zu unplaced.",
                             n_chosen, n_services, res.n_moved, res.n_problems);
        if (e < 0)
                return e;

        /* placement-impossible: one alert per service, resolved once placed.
         * A service not placed here has every instance placed. */
        for (size_t j = 0; j < n_services; j++) {
                const char *svc = services[j]->name;
                const PlacementProblem *first = NULL;
                size_t unplaced = 0;

                for (size_t q = 0; q < res.n_problems; q++)
                        if (streq(res.problems[q].service, svc)) {
                                unplaced++;
                                if (!first)
                                        first = &res.problems[q];
                        }
                if (unplaced > 0)
                        e = rec_alert(r, ALERT_PLACEMENT_IMPOSSIBLE, true, svc, NULL,
                                      "%zu instance(s) of %s cannot be placed: %s (%s)", unplaced,
                                      svc, first->reason, problem_word(first->kind));
                else
                        e = rec_alert(r, ALERT_PLACEMENT_IMPOSSIBLE, false, svc, NULL,
                                      "every instance of %s is placed", svc);
                if (e < 0)
                        return e;
        }
        /* The problems, for answers; the names point at the specs the plan
         * or the model keeps. */
        for (size_t q = 0; q < r->p->n_problems; q++)
                free(r->p->problems[q].reason);
        free(r->p->problems);
        r->p->n_problems = 0;
        r->p->problems = calloc(res.n_problems + 1, sizeof(PlacementProblem));
        if (!r->p->problems)
                return -ENOMEM;
        for (size_t q = 0; q < res.n_problems; q++) {
                const ServiceSpec *s = rec_spec(r, res.problems[q].service);

                r->p->problems[q] = res.problems[q];
                r->p->problems[q].service = s ? s->name : NULL;
                r->p->problems[q].reason = TAKE_PTR(res.problems[q].reason);
        }
        r->p->n_problems = res.n_problems;
        return 0;
}

/* ---- each host's unit set ----------------------------------------------------- */

/* What decides whether the agent restarts a unit on a new Placement: what
 * systemd reads of its file (not [X-Baton]: changing Replicas= restarts
 * nothing) and its shard assignment. */
static void unit_config_hash(const SpecHash *sh, const PlanUnit *u, char ret[17]) {
        char extra[64];
        uint64_t h = sh->hash;

        snprintf(extra, sizeof(extra), "|%" PRIu32 "|%" PRIu64 "|", u ? u->shard_count : 0,
                 u ? u->shard_epoch : 0);
        h = fnv1a64_str(h, extra);
        /* ShardChange=reload: a new set reloads the unit, it does not
         * restart it. */
        if (u && u->shards_reload)
                h = fnv1a64_str(h, "reload");
        else
                h = fnv1a64_str(h, u && u->shards ? u->shards : "");
        snprintf(ret, 17, "%016" PRIx64, h);
}

/* What the pass hashed of `s` already, or hashes it now. */
static const SpecHash *rec_spec_hash(Rec *r, const ServiceSpec *s) {
        SpecHash *v;

        for (size_t i = 0; i < r->n_spec_hashes; i++)
                if (r->spec_hashes[i].spec == s)
                        return &r->spec_hashes[i];
        v = realloc(r->spec_hashes, (r->n_spec_hashes + 1) * sizeof(SpecHash));
        if (!v)
                return NULL;
        r->spec_hashes = v;
        v[r->n_spec_hashes] = (SpecHash){
                .spec = s,
                .hash = spec_systemd_hash(s->unit_text),
                .text_hash = fnv1a64_str(FNV1A64_OFFSET, s->unit_text),
                .text_len = strlen(s->unit_text),
        };
        unit_config_hash(&v[r->n_spec_hashes], NULL, v[r->n_spec_hashes].config_hash);
        return &v[r->n_spec_hashes++];
}

static int host_index_cmp(const void *a, const void *b) {
        const HostIndex *x = a, *y = b;
        int k = strcmp(x->host, y->host);

        return k != 0 ? k : (x->at > y->at) - (x->at < y->at);
}

static size_t in_plan_hash(const char *service, uint32_t instance) {
        return (size_t) fnv1a64(fnv1a64_str(FNV1A64_OFFSET, service), &instance, sizeof(instance));
}

/* The slot of (service, instance) in Rec.in_plan: its entry, or the free
 * slot where it would go. */
static size_t in_plan_slot(const Rec *r, const char *service, uint32_t instance) {
        size_t mask = r->in_plan_size - 1, i = in_plan_hash(service, instance) & mask;

        for (;; i = (i + 1) & mask) {
                const PlanInstance *pi;

                if (r->in_plan[i] == 0)
                        return i;
                pi = &r->p->instances[r->in_plan[i] - 1];
                if (pi->instance == instance && streq(pi->service, service))
                        return i;
        }
}

/* Whether the plan names (service, instance): one hash instead of a binary
 * search of strings (a host's sync asks it of each of its instances). */
static bool rec_in_plan(const Rec *r, const char *service, uint32_t instance) {
        return r->in_plan_size > 0 && r->in_plan[in_plan_slot(r, service, instance)] != 0;
}

/* Indexes the plan's instances for the hosts' sync: the placed ones by host
 * (Rec.by_host), all by key (Rec.in_plan). */
static int host_index_build(Rec *r) {
        size_t size = 16;

        free(r->by_host);
        free(r->in_plan);
        r->n_by_host = r->in_plan_size = 0;
        r->in_plan = NULL;
        r->by_host = calloc(r->p->n_instances + 1, sizeof(HostIndex));
        if (!r->by_host)
                return -ENOMEM;
        for (size_t i = 0; i < r->p->n_instances; i++)
                if (r->p->instances[i].host)
                        r->by_host[r->n_by_host++] =
                                (HostIndex){ .host = r->p->instances[i].host, .at = i };
        qsort(r->by_host, r->n_by_host, sizeof(HostIndex), host_index_cmp);

        while (size < 2 * r->p->n_instances)
                size *= 2;
        r->in_plan = calloc(size, sizeof(size_t));
        if (!r->in_plan)
                return -ENOMEM;
        r->in_plan_size = size;
        for (size_t i = 0; i < r->p->n_instances; i++) {
                const PlanInstance *pi = &r->p->instances[i];

                r->in_plan[in_plan_slot(r, pi->service, pi->instance)] = i + 1;
        }
        return 0;
}

/* The first entry of Rec.by_host on `host`, and how many there are. */
static size_t host_index_find(const Rec *r, const char *host, size_t *ret_n) {
        size_t lo = 0, hi = r->n_by_host, first;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(r->by_host[mid].host, host) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        first = lo;
        while (lo < r->n_by_host && streq(r->by_host[lo].host, host))
                lo++;
        *ret_n = lo - first;
        return first;
}

/* The instances on `host` as the pass sees them, sorted. */
static int rec_host_instances(Rec *r, const char *host, InstanceKey **ret, size_t *ret_n) {
        const HostModel *v = model_host(r->m, host);
        size_t n = 0, n_moved, first = host_index_find(r, host, &n_moved);
        size_t max = (v ? v->n_placed : 0) + n_moved;
        InstanceKey *keys = calloc(max + 1, sizeof(InstanceKey));

        if (!keys)
                return -ENOMEM;
        for (size_t i = 0; v && i < v->n_placed; i++)
                if (!rec_in_plan(r, v->placed[i].service, v->placed[i].instance))
                        keys[n++] = v->placed[i];
        for (size_t i = first; i < first + n_moved; i++) {
                const PlanInstance *pi = &r->p->instances[r->by_host[i].at];

                keys[n++] = (InstanceKey){ pi->service, pi->instance };
        }
        /* Two sorted runs: merge them by sorting the lot (they are short). */
        for (size_t i = 1; i < n; i++)
                for (size_t k = i;
                     k > 0 && instance_key_cmp(keys[k - 1].service, keys[k - 1].instance,
                                               keys[k].service, keys[k].instance) > 0;
                     k--) {
                        InstanceKey t = keys[k];
                        keys[k] = keys[k - 1];
                        keys[k - 1] = t;
                }
        *ret = keys;
        *ret_n = n;
        return 0;
}

static void plan_units_free(PlanUnit *u, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(u[i].name);
                free(u[i].shards);
        }
        free(u);
}

/* The instances placed on `host` in `keys` (sorted), then the moved ones
 * whose live copy still runs there (a replace item's from_host), inserted
 * in order and flagged in *ret_away (allocated, one per key). */
static int host_keys_with_moved(Rec *r, const char *host, InstanceKey **keys, size_t *n_keys,
                                bool **ret_away) {
        size_t n_moved = 0, n = *n_keys;
        InstanceKey *v;
        bool *away;

        for (size_t i = 0; i < r->m->n_shards; i++) {
                const ShardState *ss = rec_shards(r, r->m->shards[i]->service);
                const Reshard *rs = ss && shard_state_resharding(ss) ? ss->reshard : NULL;

                for (size_t j = 0; rs && j < rs->n_items; j++)
                        n_moved += streq_ptr(rs->items[j].from_host, host);
        }
        away = calloc(n + n_moved + 1, sizeof(bool));
        if (!away)
                return -ENOMEM;
        if (n_moved > 0) {
                v = realloc(*keys, (n + n_moved + 1) * sizeof(InstanceKey));
                if (!v) {
                        free(away);
                        return -ENOMEM;
                }
                *keys = v;
        }
        for (size_t i = 0; n_moved > 0 && i < r->m->n_shards; i++) {
                const ShardState *ss = rec_shards(r, r->m->shards[i]->service);
                const Reshard *rs = ss && shard_state_resharding(ss) ? ss->reshard : NULL;

                for (size_t j = 0; rs && j < rs->n_items; j++) {
                        size_t at = n;

                        if (!streq_ptr(rs->items[j].from_host, host))
                                continue;
                        while (at > 0 &&
                               instance_key_cmp((*keys)[at - 1].service, (*keys)[at - 1].instance,
                                                ss->service, rs->items[j].instance) > 0)
                                at--;
                        memmove(*keys + at + 1, *keys + at, (n - at) * sizeof(InstanceKey));
                        memmove(away + at + 1, away + at, (n - at) * sizeof(bool));
                        (*keys)[at] = (InstanceKey){ ss->service, rs->items[j].instance };
                        away[at] = true;
                        n++;
                }
        }
        *n_keys = n;
        *ret_away = away;
        return 0;
}

/* The units of a host's Placement, in (service, instance) order. */
static int host_units(Rec *r, const char *host, PlanUnit **ret, size_t *ret_n) {
        _cleanup_free_ InstanceKey *keys = NULL;
        _cleanup_free_ bool *away = NULL;
        PlanUnit *units;
        size_t n_keys, n = 0;
        int k;

        k = rec_host_instances(r, host, &keys, &n_keys);
        if (k >= 0)
                k = host_keys_with_moved(r, host, &keys, &n_keys, &away);
        if (k < 0)
                return k;
        /* A sharded instance has two copies while it is resharded. */
        units = calloc(2 * n_keys + 1, sizeof(PlanUnit));
        if (!units)
                return -ENOMEM;
        for (size_t i = 0; i < n_keys; i++) {
                const ServiceSpec *s = rec_spec(r, keys[i].service);
                const SpecHash *sh;
                CopyPlan cp[2];
                size_t n_cp = 0;

                if (!s)
                        continue;
                sh = rec_spec_hash(r, s);
                if (!sh) {
                        plan_units_free(units, n);
                        return -ENOMEM;
                }
                if (s->kind == SERVICE_SHARDED) {
                        const ShardState *ss = rec_shards(r, s->name);
                        if (!ss)
                                continue;
                        k = reconcile_copies(ss, s->name, keys[i].instance, cp, &n_cp);
                } else {
                        cp[0] = (CopyPlan){ .running = true };
                        k = service_instance_unit(s, keys[i].instance, &cp[0].unit);
                        n_cp = k >= 0;
                }
                if (k < 0) {
                        plan_units_free(units, n);
                        return k;
                }
                for (size_t j = 0; j < n_cp; j++) {
                        PlanUnit *u;

                        /* A copy running away from its instance's host goes to
                         * that host (a key of its own here), not this one. */
                        if (away[i] != (cp[j].host != NULL) ||
                            (cp[j].host && !streq(cp[j].host, host))) {
                                copy_plan_done(&cp[j]);
                                continue;
                        }
                        u = &units[n++];
                        *u = (PlanUnit){
                                .unit_text = s->unit_text,
                                .text_hash = sh->text_hash,
                                .text_len = sh->text_len,
                                .template_name = s->is_template ? s->file_name : "",
                                .service = s->name,
                                .instance = keys[i].instance,
                                .running = cp[j].running,
                                .sharded = s->kind == SERVICE_SHARDED,
                                .shard_count = cp[j].shard_count,
                                .shard_epoch = cp[j].epoch,
                                .shards_reload = s->kind == SERVICE_SHARDED && s->shard_reload,
                        };
                        u->name = TAKE_PTR(cp[j].unit);
                        u->shards = TAKE_PTR(cp[j].shards);
                        copy_plan_done(&cp[j]);
                        if (s->kind == SERVICE_SHARDED)
                                unit_config_hash(sh, u, u->config_hash);
                        else
                                memcpy(u->config_hash, sh->config_hash, sizeof(u->config_hash));
                }
        }
        *ret = units;
        *ret_n = n;
        return 0;
}

/* What makes two Placements of a host the same: unit names, texts (by their
 * hash: a host's sync hashes each text once per pass, not once per unit),
 * shards, whether each runs. Kept in memory only, so the formula may change
 * between versions. */
static uint64_t units_digest(const PlanUnit *u, size_t n) {
        uint64_t h = FNV1A64_OFFSET;

        for (size_t i = 0; i < n; i++) {
                uint8_t running = u[i].running;

                h = fnv1a64_str(h, u[i].name);
                h = fnv1a64(h, "", 1);
                h = fnv1a64(h, &u[i].text_hash, sizeof(u[i].text_hash));
                h = fnv1a64_str(h, u[i].shards);
                h = fnv1a64(h, "", 1);
                h = fnv1a64(h, &u[i].shard_epoch, sizeof(u[i].shard_epoch));
                h = fnv1a64(h, &u[i].shard_count, sizeof(u[i].shard_count));
                h = fnv1a64(h, &running, sizeof(running));
                h = fnv1a64(h, &u[i].shards_reload, sizeof(u[i].shards_reload));
        }
        return h;
}

/* An upper bound of the encoded Placement's size, envelope and signature
 * included: every string with its tag and length, every number at its
 * widest. */
static size_t placement_size(const char *host, const PlanUnit *u, size_t n) {
        size_t size = 512 + strlen(host);

        for (size_t i = 0; i < n; i++)
                size += 96 + strlen(u[i].name) + u[i].text_len + strlen(u[i].template_name) +
                        strlen(u[i].service) + 16 + (u[i].shards ? strlen(u[i].shards) : 0);
        return size;
}

/* Sends `host` its Placement: a new generation when its units changed since
 * the last one sent (or the epoch rose), else the same again when `resend`. */
static int sync_host(Rec *r, const Host *h, bool resend) {
        const HostModel *v = h->userdata;
        PlanUnit *units = NULL;
        PlanSend *sends;
        size_t n = 0, size;
        uint64_t d;
        bool changed;
        int k;

        if (!v)
                return 0;
        resend = resend || v->sync_resend;
        k = host_units(r, h->id, &units, &n);
        if (k < 0)
                return k;
        /* It will not fit in a message: say so where operators look, naming
         * host and size, and send nothing (the host keeps what it runs). */
        size = placement_size(h->id, units, n);
        if (size > r->m->config.max_message_size) {
                plan_units_free(units, n);
                return rec_alert(r, ALERT_PLACEMENT_TOO_LARGE, true, NULL, h->id,
                                 "the placement of %s (%zu units, %zu bytes) is larger than a "
                                 "message may be (%zu bytes); the host keeps what it runs. Move "
                                 "services off it (fewer or smaller units) or drain it",
                                 h->id, n, size, r->m->config.max_message_size);
        }
        k = rec_alert(r, ALERT_PLACEMENT_TOO_LARGE, false, NULL, h->id,
                      "the placement of %s fits in a message again", h->id);
        if (k < 0) {
                plan_units_free(units, n);
                return k;
        }
        d = units_digest(units, n);
        changed = !v->sent || d != v->digest || r->p->epoch > 0;
        if (!changed && !resend) {
                plan_units_free(units, n);
                return 0;
        }
        sends = realloc(r->p->sends, (r->p->n_sends + 1) * sizeof(PlanSend));
        if (!sends) {
                plan_units_free(units, n);
                return -ENOMEM;
        }
        r->p->sends = sends;
        sends[r->p->n_sends] = (PlanSend){
                .host = strdup(h->id),
                .generation = changed ? v->generation + 1 : v->generation,
                .digest = d,
                .new_generation = changed,
                .units = units,
                .n_units = n,
        };
        if (!sends[r->p->n_sends].host) {
                plan_units_free(units, n);
                return -ENOMEM;
        }
        r->p->n_sends++;
        return 0;
}

/* Hosts running an instance of `service`, as the pass sees it: to recompute. */
static int sync_service_hosts(Rec *r, const char *service) {
        const Instance *first;
        size_t n = model_service_instances(r->m, service, &first);
        bool sharded = rec_sharded(r, service);
        int k;

        for (size_t i = 0; i < n; i++) {
                k = sync_add(r, rec_host_of(r, service, first[i].instance), sharded);
                if (k < 0)
                        return k;
        }
        for (size_t i = 0; i < r->p->n_instances; i++)
                if (streq(r->p->instances[i].service, service)) {
                        k = sync_add(r, r->p->instances[i].host, sharded);
                        if (k < 0)
                                return k;
                }
        return 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Syncs `h` now, or leaves it to a later pass once this one has synced
 * Event.sync_max hosts, or at once when the pass left services to place
 * (the hosts it touches would get another Placement as each of those is
 * placed: they get one, once all are); never an urgent one (its Placement
 * must go now), nor under a new epoch (every host gets a new generation of
 * it now). */
static int sync_or_defer(Rec *r, const Host *h, bool resend, size_t *synced) {
        size_t max = r->p->n_later_services > 0 ? 0 : r->ev->sync_max;
        PlanLater *v;

        if (r->ev->sync_max == 0 || *synced < max || r->p->epoch > 0 ||
            strset_has(&r->urgent, h->id)) {
                (*synced)++;
                return sync_host(r, h, resend);
        }
        v = realloc(r->p->later, (r->p->n_later + 1) * sizeof(PlanLater));
        if (!v)
                return -ENOMEM;
        r->p->later = v;
        v[r->p->n_later] = (PlanLater){ .host = strdup(h->id), .resend = resend };
        if (!v[r->p->n_later].host)
                return -ENOMEM;
        r->p->n_later++;
        return 0;
}

static int sync_hosts(Rec *r) {
        _cleanup_free_ const char **ids = NULL;
        size_t n = 0, synced = 0;
        int k;

        for (size_t i = 0; i < r->sync_services.n; i++) {
                k = sync_service_hosts(r, r->sync_services.v[i]);
                if (k < 0)
                        return k;
        }
        /* A host a Restart goes to gets what it should run first, now, if
         * that is not what it was sent last (an earlier pass left it). */
        for (size_t i = 0; i < r->p->n_restarts; i++) {
                k = sync_add(r, r->p->restarts[i].host, true);
                if (k < 0)
                        return k;
        }
        if (r->sync_all || r->resend_all || r->p->epoch > 0) {
                k = host_index_build(r);
                if (k < 0)
                        return k;
                for (size_t i = 0; i < r->m->hosts.n_hosts; i++) {
                        const Host *h = r->m->hosts.hosts[i];

                        k = sync_or_defer(r, h, r->resend_all || strset_has(&r->resend, h->id),
                                          &synced);
                        if (k < 0)
                                return k;
                }
                return 0;
        }
        /* Only the hosts the pass touched, in the table's order (by id): an
         * event that touches nothing costs nothing however large the fleet. */
        if (r->sync.n + r->resend.n == 0)
                return 0;
        ids = calloc(r->sync.n + r->resend.n, sizeof(char *));
        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < r->sync.n; i++)
                ids[n++] = r->sync.v[i];
        for (size_t i = 0; i < r->resend.n; i++)
                if (!strset_has(&r->sync, r->resend.v[i]))
                        ids[n++] = r->resend.v[i];
        qsort(ids, n, sizeof(char *), cmp_str_ptr);
        k = host_index_build(r);
        if (k < 0)
                return k;
        for (size_t i = 0; i < n; i++) {
                const Host *h = host_table_get(&r->m->hosts, ids[i]);

                if (!h)
                        continue;
                k = sync_or_defer(r, h, strset_has(&r->resend, h->id), &synced);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* Hosts an earlier pass left to this one: each synced as that pass would
 * have, from the model as it is now. */
static int on_sync(Rec *r) {
        const Event *ev = r->ev;
        int k = 0;

        /* The hosts given go now, whatever else the pass syncs: each pass
         * gets through its part of the queue. */
        for (size_t i = 0; k >= 0 && i < ev->n_hosts; i++) {
                k = strset_add(&r->sync, ev->hosts[i]);
                if (k >= 0)
                        k = strset_add(&r->urgent, ev->hosts[i]);
        }
        for (size_t i = 0; k >= 0 && i < ev->n_services; i++)
                k = strset_add(&r->place_given, ev->services[i]);
        r->place = ev->n_services > 0;
        return k;
}

/* ---- restarts ------------------------------------------------------------------ */

/* A Restart of one instance: its id is unique (the event's random nonce and
 * a counter), so no id is ever issued twice, across controller restarts too. */
static int plan_restart(Rec *r, const ServiceSpec *s, uint32_t instance, const char **ret_id,
                        const char **ret_host) {
        const char *host = rec_host_of(r, s->name, instance);
        _cleanup_free_ char *unit = NULL;
        PlanRestart *v;
        int k;

        if (!host)
                return -ENOENT;
        k = rec_instance_unit(r, s, instance, &unit);
        if (k < 0)
                return k;
        v = realloc(r->p->restarts, (r->p->n_restarts + 1) * sizeof(PlanRestart));
        if (!v)
                return -ENOMEM;
        r->p->restarts = v;
        v = &v[r->p->n_restarts];
        *v = (PlanRestart){ .instance = instance };
        if (asprintf(&v->id, "%.32s-%u", strempty(r->ev->nonce), r->restart_seq++) < 0) {
                v->id = NULL;
                return -ENOMEM;
        }
        v->host = strdup(host);
        v->unit = TAKE_PTR(unit);
        v->service = strdup(s->name);
        r->p->n_restarts++;
        if (!v->host || !v->service)
                return -ENOMEM;
        if (ret_id)
                *ret_id = v->id;
        if (ret_host)
                *ret_host = v->host;
        return 0;
}

/* ---- rollouts ----------------------------------------------------------------- */

static int step_rollout(Rec *r, const ServiceSpec *s) {
        const Rollout *cur = rec_rollout(r, s->name);
        _cleanup_free_ InstanceHealth *health = NULL;
        _cleanup_free_ RolloutAction *actions = NULL;
        Rollout *ro;
        size_t n, max;
        uint32_t may_start = UINT32_MAX;
        int k;

        if (!cur || cur->state == ROLLOUT_DONE ||
            (cur->state == ROLLOUT_ABORTED && !cur->alert_raised))
                return 0;
        ro = rec_rollout_mut(r, s->name);
        if (!ro)
                return -ENOMEM;
        max = ro->n_items + 2;
        health = calloc(ro->n_items + 1, sizeof(InstanceHealth));
        actions = calloc(max, sizeof(RolloutAction));
        if (!health || !actions)
                return -ENOMEM;
        for (size_t i = 0; i < ro->n_items; i++) {
                uint32_t in = ro->items[i].instance;
                uint64_t changed;
                usec_t started = ro->items[i].started_at;

                health[i] = (InstanceHealth){ .instance = in };
                health[i].healthy = rec_healthy(r, s, in, rec_host_of(r, s->name, in), &changed);
                health[i].restarted_since_issue = started > 0 && changed > started;
        }
        /* A sharded service restarts through its start gate: one at a time,
         * and only when the gate is open for the next instance. */
        if (s->kind == SERVICE_SHARDED) {
                const ShardState *ss = rec_shards(r, s->name);
                const RolloutItem *next = NULL;

                for (size_t i = 0; i < ro->n_items && !next; i++)
                        if (ro->items[i].state == ITEM_PENDING)
                                next = &ro->items[i];
                may_start = ss && next && !shard_state_resharding(ss) &&
                                            next->instance < ss->layout.n_instances &&
                                            start_gate_may_start(&ss->gate,
                                                                 &ss->layout.sets[next->instance],
                                                                 r->now)
                                    ? 1
                                    : 0;
        }
        n = rollout_step(ro, health, ro->n_items, r->now, may_start, actions, max);

        for (size_t i = 0; i < n; i++) {
                switch (actions[i].kind) {
                case ROLLOUT_ACTION_RESTART: {
                        bool taken = true;

                        if (s->kind == SERVICE_SHARDED) {
                                k = may_restart_take(r, s->name, actions[i].instance, &taken);
                                if (k < 0)
                                        return k;
                        }
                        k = plan_restart(r, s, actions[i].instance, NULL, NULL);
                        if (k == -ENOENT)
                                k = plan_log(r->p, L_WARNING,
                                             "Rollout %" PRIu64 ": %s@%u is placed nowhere; the "
                                             "step will time out.",
                                             ro->id, s->name, actions[i].instance);
                        if (k < 0)
                                return k;
                        break;
                }
                case ROLLOUT_ACTION_ALERT:
                        k = rec_alert(r, ALERT_ROLLOUT_FAILED, true, s->name, NULL,
                                      "rolling restart %" PRIu64 " of %s paused: %s", ro->id,
                                      s->name, strna(ro->reason));
                        if (k < 0)
                                return k;
                        break;
                case ROLLOUT_ACTION_RESOLVE:
                        k = rec_alert(r, ALERT_ROLLOUT_FAILED, false, s->name, NULL,
                                      "rolling restart %" PRIu64 " of %s resumed", ro->id, s->name);
                        if (k < 0)
                                return k;
                        break;
                case ROLLOUT_ACTION_FINISHED:
                        k = plan_log(r->p, L_INFO, "Rolling restart %" PRIu64 " of %s is done.",
                                     ro->id, s->name);
                        if (k < 0)
                                return k;
                        break;
                default:
                        break;
                }
        }
        return 0;
}

/* Whether the hosts of the instances `rs` replaces can take the copies it
 * starts beside them, MaxSurge= at once: MaxPerHost= and Memory= count
 * them. If not, why (the first host that cannot) in *ret_why. */
static int surge_fits(Rec *r, const ServiceSpec *s, const Reshard *rs, char **ret_why) {
        for (size_t i = 0; i < rs->n_items; i++) {
                const char *host = rec_host_of(r, s->name, rs->items[i].instance);
                const Host *h = host ? host_table_get(&r->m->hosts, host) : NULL;
                const HostModel *v = h ? h->userdata : NULL;
                uint32_t here = 0, replaced = 0, extra;

                if (!host)
                        continue; /* not placed: it starts where it is placed, through the gate */
                for (uint32_t k = 0; k < s->count; k++)
                        here += streq_ptr(rec_host_of(r, s->name, k), host);
                for (size_t j = 0; j < rs->n_items; j++)
                        replaced += streq_ptr(rec_host_of(r, s->name, rs->items[j].instance), host);
                extra = MIN(replaced, s->max_surge);
                if (s->max_per_host > 0 && here + extra > s->max_per_host)
                        return asprintf(ret_why,
                                        "%s runs %u copies of %s and MaxPerHost=%u leaves no room "
                                        "for a replacement copy beside them",
                                        host, here, s->name, s->max_per_host) < 0
                                       ? -ENOMEM
                                       : 0;
                if (s->memory > 0 &&
                    (!v || v->memory_total < v->memory_reserved + (uint64_t) extra * s->memory))
                        return asprintf(ret_why,
                                        "%s has no memory for a replacement copy of %s beside "
                                        "the live one (Memory=%" PRIu64 " bytes)",
                                        host, s->name, s->memory) < 0
                                       ? -ENOMEM
                                       : 0;
        }
        *ret_why = NULL;
        return 1;
}

/* Starts a make-before-break restart of instance `instance` of sharded `s`
 * (-1: all): a reshard that replaces each copy with one owning the same
 * shards, started beside it through the gate, MaxSurge= at once. -EBUSY if
 * a rollout or reshard is under way; -ENOSPC with *ret_why when a host
 * cannot take a replacement copy. */
static int start_replace(Rec *r, const ServiceSpec *s, int32_t instance, uint64_t *ret_id,
                         char **ret_why) {
        const ShardState *cur = rec_shards(r, s->name);
        uint64_t id = r->p->next_rollout_id > 0 ? r->p->next_rollout_id : r->m->next_rollout_id;
        _cleanup_(reshard_freep) Reshard *rs = NULL;
        ShardState *ss;
        int k;

        *ret_why = NULL;
        if (!cur)
                return -ENOMEM;
        /* Both callers refuse a restart while a reshard runs. */
        assert(!shard_state_resharding(cur));
        if (instance >= 0 && (uint32_t) instance >= cur->layout.n_instances)
                return -ENOENT;
        k = reshard_replace(s->name, id, &cur->layout,
                            instance < 0 ? UINT32_MAX : (uint32_t) instance, s->max_surge,
                            s->health_timeout, &rs);
        if (k < 0)
                return k;
        k = surge_fits(r, s, rs, ret_why);
        if (k <= 0)
                return k < 0 ? k : -ENOSPC;
        ss = rec_shards_mut(r, s->name, true);
        if (!ss)
                return -ENOMEM;
        reshard_free(ss->reshard);
        ss->reshard = TAKE_PTR(rs);
        r->p->next_rollout_id = id + 1;
        *ret_id = id;
        k = plan_log(r->p, L_INFO,
                     "Restart %" PRIu64 " of %s: %zu cop%s replaced make-before-break, "
                     "MaxSurge=%u.",
                     id, s->name, ss->reshard->n_items, ss->reshard->n_items == 1 ? "y" : "ies",
                     s->max_surge);
        if (k >= 0)
                k = strset_add(&r->step, s->name);
        if (k >= 0)
                k = strset_add(&r->sync_services, s->name);
        return k;
}

/* Whether a restart of `s` replaces its copies make-before-break. */
static bool restarts_by_replace(const ServiceSpec *s, bool in_place) {
        return s->kind == SERVICE_SHARDED && s->max_surge > 0 && !in_place;
}

/* Starts a rolling restart of every instance of `s`: -EBUSY if one (or a
 * reshard) is under way. A sharded service with MaxSurge= replaces its
 * copies make-before-break instead (start_replace(): -ENOSPC, *ret_why). */
static int start_rollout(Rec *r, const ServiceSpec *s, bool in_place, uint64_t *ret_id,
                         char **ret_why) {
        const Rollout *old = rec_rollout(r, s->name);
        const ShardState *ss = rec_shards(r, s->name);
        uint64_t id = r->p->next_rollout_id > 0 ? r->p->next_rollout_id : r->m->next_rollout_id;
        Rollout *ro;
        int k;

        *ret_why = NULL;
        if (old && (old->state == ROLLOUT_RUNNING || old->state == ROLLOUT_PAUSED ||
                    old->state == ROLLOUT_FAILED))
                return -EBUSY;
        if (shard_state_resharding(ss))
                return -EBUSY;
        if (restarts_by_replace(s, in_place))
                return start_replace(r, s, -1, ret_id, ret_why);
        k = rollout_new(s->name, id, s->count, s->max_unavailable, s->healthy_for,
                        s->health_timeout, &ro);
        if (k < 0)
                return k;
        k = rec_put_rollout(r, s->name, ro);
        if (k < 0)
                return k;
        r->p->next_rollout_id = id + 1;
        *ret_id = id;
        k = plan_log(r->p, L_INFO,
                     "Rolling restart %" PRIu64 " of %s: %u instances, "
                     "MaxUnavailable=%u.",
                     id, s->name, s->count, s->max_unavailable);
        if (k < 0)
                return k;
        return strset_add(&r->step, s->name);
}

/* ---- shard states ------------------------------------------------------------ */

/* A count the pass sets for a service (a reshard's, or its end): the spec
 * copied into the plan with it, stored. */
static int set_count(Rec *r, const char *service, uint32_t count) {
        const ServiceSpec *s = rec_spec(r, service);
        ServiceSpec *copy;
        int k;

        if (!s || s->count == count)
                return 0;
        k = service_spec_copy(s, &copy);
        if (k < 0)
                return k;
        copy->count = count;
        r->place = true;
        return rec_put_service(r, service, copy, true);
}

/* The host of the copy a hold is for: a moved instance's live copy stays on
 * the host it is moved off (its replace item's from_host) until its
 * replacement is ready. */
static const char *hold_host(Rec *r, const ShardState *ss, const char *service,
                             const ShardHold *hd) {
        const ReshardItem *item =
                reshard_item(shard_state_resharding(ss) ? ss->reshard : NULL, hd->instance);

        if (!hd->new_copy && item && item->from_host && item->state != RITEM_DONE)
                return item->from_host;
        return rec_host_of(r, service, hd->instance);
}

/* Holds of copies that are ready (or settled), gone, or past HealthTimeout
 * let go of the gate. */
static int release_ready(Rec *r, const ServiceSpec *s) {
        const ShardState *cur = rec_shards(r, s->name);
        ShardState *ss = NULL;

        for (size_t i = 0; cur && i < cur->n_holds; i++) {
                const ShardHold *hd = &cur->holds[i];
                const char *host = hold_host(r, cur, s->name, hd);

                if (!rec_host_alive(r, host) ||
                    serving_ready(r->m, cur, s->name, hd->instance, host, hd->new_copy, true,
                                  hd->since + 1) ||
                    r->now - hd->since > s->health_timeout) {
                        ss = rec_shards_mut(r, s->name, false);
                        if (!ss)
                                return -ENOMEM;
                        break;
                }
        }
        if (!ss)
                return 0;
        for (size_t i = 0; i < ss->n_holds;) {
                const ShardHold *hd = &ss->holds[i];
                const char *host = hold_host(r, ss, s->name, hd);

                /* Nothing identifies for us on a host that is down. */
                if (!rec_host_alive(r, host) ||
                    serving_ready(r->m, ss, s->name, hd->instance, host, hd->new_copy, true,
                                  hd->since + 1) ||
                    r->now - hd->since > s->health_timeout)
                        hold_release(ss, i, r->now);
                else
                        i++;
        }
        return 0;
}

/* The shards a waiting live copy of instance i identifies when it starts:
 * its layout's, or during a reshard its new copy's once that is live. NULL
 * for one that waits for the reshard to end (its old copy, which the
 * reshard's new copy replaces). */
static const RangeList *waiting_set(const ShardState *ss, uint32_t i) {
        const Reshard *rs = shard_state_resharding(ss) ? ss->reshard : NULL;
        const ReshardItem *item = reshard_item(rs, i);

        if (item)
                return item->state == RITEM_DONE && rangelist_count(&item->to) > 0 ? &item->to
                                                                                   : NULL;
        return i < ss->layout.n_instances ? &ss->layout.sets[i] : NULL;
}

/* Lets the next waiting live copies through the gate, in instance order. */
static int admit_waiting(Rec *r, const ServiceSpec *s) {
        const ShardState *cur = rec_shards(r, s->name);
        ShardState *ss;
        int k;

        if (!cur)
                return 0;
        for (uint32_t i = 0; i < cur->n_waiting; i++) {
                const RangeList *set = waiting_set(cur, i);

                if (!cur->waiting[i] || !set || !rec_host_of(r, s->name, i))
                        continue;
                if (!start_gate_may_start(&cur->gate, set, r->now))
                        break;
                ss = rec_shards_mut(r, s->name, true);
                if (!ss)
                        return -ENOMEM;
                set = waiting_set(ss, i);
                k = admit(ss, i, false, set, r->now);
                if (k < 0)
                        return k;
                ss->waiting[i] = false;
                cur = ss;
                k = sync_add(r, rec_host_of(r, s->name, i), true);
                if (k >= 0)
                        k = plan_log(r->p, L_INFO,
                                     "Starting %s@%u (%" PRIu64 " shards) through the start gate.",
                                     s->name, i, rangelist_count(set));
                if (k < 0)
                        return k;
        }
        return 0;
}

typedef struct MayStart {
        Rec *r;
        ShardState *ss;
        int error;
} MayStart;

static bool reshard_may_start(uint32_t instance, const RangeList *shards, void *userdata) {
        MayStart *x = userdata;
        const ReshardItem *item = reshard_item(x->ss->reshard, instance);
        bool waiting = instance < x->ss->n_waiting && x->ss->waiting[instance];
        int k;

        /* A live change of a copy that is not running (it waits for the
         * gate) starts it: it identifies its whole new set. */
        if (x->ss->reshard->reload && waiting && item)
                shards = &item->to;
        if (!start_gate_may_start(&x->ss->gate, shards, x->r->now))
                return false;
        /* A copy on a host that is down would start when it returns,
         * outside the gate: it waits. */
        if (!rec_host_alive(x->r, rec_host_of(x->r, x->ss->service, instance)))
                return false;
        k = admit(x->ss, instance, true, shards, x->r->now);
        if (k < 0) {
                x->error = k;
                return false;
        }
        if (x->ss->reshard->reload && waiting)
                x->ss->waiting[instance] = false;
        return true;
}

static bool rec_copy_ready(Rec *r, const ShardState *ss, const char *service, uint32_t instance,
                           uint64_t after) {
        const char *host = rec_host_of(r, service, instance);
        return host && serving_ready(r->m, ss, service, instance, host, true, false, after);
}

static int step_reshard(Rec *r, const ServiceSpec *s) {
        const ShardState *cur = rec_shards(r, s->name);
        _cleanup_free_ ReshardObserved *obs = NULL;
        _cleanup_free_ ReshardAction *actions = NULL;
        _cleanup_free_ bool *was_done = NULL;
        ShardState *ss;
        Reshard *rs;
        char what[16];
        size_t n, max;
        int k;

        if (!cur || !cur->reshard ||
            (!shard_state_resharding(cur) && !(cur->reshard->state == RESHARD_ABORTED)))
                return 0;
        ss = rec_shards_mut(r, s->name, true);
        if (!ss)
                return -ENOMEM;
        rs = ss->reshard;
        /* "Reshard 3: ...", "Restart 4: ...", "Move 5: ..." */
        snprintf(what, sizeof(what), "%s", reshard_kind(rs));
        what[0] = (char) (what[0] - 'a' + 'A');
        max = 2 * rs->n_items + 3;
        obs = calloc(rs->n_items + 1, sizeof(ReshardObserved));
        actions = calloc(max, sizeof(ReshardAction));
        if (!obs || !actions)
                return -ENOMEM;
        for (size_t i = 0; i < rs->n_items; i++)
                obs[i] = (ReshardObserved){
                        .instance = rs->items[i].instance,
                        .new_ready = rs->items[i].state == RITEM_STARTING &&
                                     rec_copy_ready(r, ss, s->name, rs->items[i].instance,
                                                    rs->items[i].started_at + 1),
                };
        was_done = calloc(rs->n_items + 1, sizeof(bool));
        if (!was_done)
                return -ENOMEM;
        for (size_t i = 0; i < rs->n_items; i++)
                was_done[i] = rs->items[i].state == RITEM_DONE;
        MayStart ctx = { r, ss, 0 };
        n = reshard_step(rs, obs, rs->n_items, r->now, reshard_may_start, &ctx, actions, max);
        if (ctx.error < 0)
                return ctx.error;
        /* An instance whose new copy became the live one: that copy runs
         * (the old one it replaces waited, if it had moved). */
        for (size_t i = 0; i < rs->n_items; i++)
                if (!was_done[i] && rs->items[i].state == RITEM_DONE &&
                    rs->items[i].instance < ss->n_waiting &&
                    /* (a live change's copy still waits for the gate) */
                    !(rs->reload && rangelist_count(&rs->items[i].from) > 0))
                        ss->waiting[rs->items[i].instance] = false;

        for (size_t i = 0; i < n; i++) {
                switch (actions[i].kind) {
                case RESHARD_ACTION_START:
                        k = plan_log(
                                r->p, L_INFO,
                                rs->reload && reshard_item(rs, actions[i].instance)->from.n_ranges
                                        ? "%s %" PRIu64 ": %s@%u takes its new shards live "
                                          "(reload)."
                                        : "%s %" PRIu64 ": starting the new copy of %s@%u.",
                                what, rs->id, s->name, actions[i].instance);
                        break;
                case RESHARD_ACTION_RETIRE: {
                        const ReshardItem *it = reshard_item(rs, actions[i].instance);

                        /* A moved copy stops where it ran. */
                        k = it && it->from_host ? sync_add(r, it->from_host, true) : 0;
                        if (k < 0)
                                return k;
                }
                        k = plan_log(r->p, L_INFO,
                                     rs->reload ? "%s %" PRIu64 ": %s@%u serves its new set."
                                                : "%s %" PRIu64 ": retiring the old copy of %s@%u.",
                                     what, rs->id, s->name, actions[i].instance);
                        break;
                case RESHARD_ACTION_CUTOVER:
                        k = plan_log(r->p, L_INFO,
                                     "Reshard %" PRIu64 ": cut-over of %s to epoch %" PRIu64 ".",
                                     rs->id, s->name, rs->to_epoch);
                        break;
                case RESHARD_ACTION_ALERT:
                        k = rec_alert(r, ALERT_ROLLOUT_FAILED, true, s->name, NULL,
                                      "%s %" PRIu64 " of %s paused: %s", reshard_kind(rs), rs->id,
                                      s->name, strna(rs->reason));
                        break;
                case RESHARD_ACTION_RESOLVE:
                        k = rec_alert(r, ALERT_ROLLOUT_FAILED, false, s->name, NULL,
                                      "%s %" PRIu64 " of %s resumed", reshard_kind(rs), rs->id,
                                      s->name);
                        break;
                default:
                        k = 0;
                        break;
                }
                if (k < 0)
                        return k;
        }
        if (n > 0) {
                k = strset_add(&r->sync_services, s->name);
                if (k < 0)
                        return k;
        }

        if (rs->state == RESHARD_DONE) {
                ShardLayout next = { 0 };

                k = reshard_result(rs, &ss->layout, &next);
                if (k >= 0) {
                        shard_layout_done(&ss->layout);
                        ss->layout = next;
                        k = waiting_resize(ss, next.n_instances);
                        if (k >= 0)
                                k = set_count(r, s->name, next.n_instances);
                        if (k >= 0)
                                k = plan_log(r->p, L_INFO,
                                             "%s %" PRIu64 " of %s is done: %u instances, "
                                             "%u shards, epoch %" PRIu64 ".",
                                             what, rs->id, s->name, next.n_instances,
                                             next.shard_count, next.epoch);
                } else
                        k = plan_log(r->p, L_ERR,
                                     "%s %" PRIu64 " of %s is done but its result does not "
                                     "apply; keeping the old layout.",
                                     what, rs->id, s->name);
                ss->reshard = reshard_free(ss->reshard);
                if (k >= 0)
                        k = strset_add(&r->sync_services, s->name);
                return k;
        }
        if (rs->state == RESHARD_ABORTED && !rs->alert_raised) {
                /* A move that was not done stops its copy where it was and
                 * starts anew at its place, through the gate. */
                for (size_t i = 0; i < rs->n_items; i++) {
                        const ReshardItem *it = &rs->items[i];

                        if (!it->from_host || it->state == RITEM_DONE)
                                continue;
                        k = sync_add(r, it->from_host, true);
                        if (k >= 0)
                                k = shards_placed(r, s->name, it->instance);
                        if (k < 0)
                                return k;
                }
                ss->reshard = reshard_free(ss->reshard);
                k = set_count(r, s->name, ss->layout.n_instances);
                if (k >= 0)
                        k = strset_add(&r->sync_services, s->name);
                return k;
        }
        return 0;
}

/* shard-unowned, shard-duplicate, shard-failed and budget-low, level-triggered. */
static int check_shard_alerts(Rec *r, const ServiceSpec *s) {
        const ShardState *cur = rec_shards(r, s->name);
        _cleanup_free_ uint8_t *owners = NULL;
        _cleanup_(rangelist_done) RangeList failed = { 0 }, unowned = { 0 }, dup = { 0 },
                                            excused = { 0 };
        _cleanup_free_ char *text_unowned = NULL, *text_dup = NULL, *text_failed = NULL;
        uint64_t epoch, spent;
        uint32_t total, limit = s->daily_start_budget;
        usec_t since;
        bool low;
        int k;

        if (!cur)
                return 0;
        reconcile_serving(cur, &epoch, &total);
        k = 0;
        owners = calloc(total + 1, 1);
        if (!owners)
                return -ENOMEM;
        k = reconcile_count_owners(r->m, s->name, epoch, total, owners, &failed);
        if (k < 0)
                return k;
        /* Shards whose owner is starting or waiting for the gate are expected down. */
        for (uint32_t i = 0; i < cur->n_waiting && i < cur->layout.n_instances; i++)
                if (cur->waiting[i] && rangelist_union(&excused, &cur->layout.sets[i]) < 0)
                        return -ENOMEM;
        for (size_t i = 0; i < cur->n_holds; i++)
                if (rangelist_union(&excused, &cur->holds[i].shards) < 0)
                        return -ENOMEM;
        /* So are those whose owner may still serve on a silent host, while
         * its replacement has HealthTimeout to become ready. */
        k = reconcile_unknown_shards(r->m, s->name, epoch, total, owners, r->now, s->health_timeout,
                                     &excused);
        if (k < 0)
                return k;
        for (uint32_t sh = 0; sh < total; sh++) {
                if (owners[sh] == 0 && !rangelist_contains(&excused, sh) &&
                    rangelist_add(&unowned, sh) < 0)
                        return -ENOMEM;
                if (owners[sh] > 1 && rangelist_add(&dup, sh) < 0)
                        return -ENOMEM;
        }

        since = rangelist_count(&unowned) == 0 ? 0
                : cur->unowned_since           ? cur->unowned_since
                                               : r->now;
        if (since != cur->unowned_since) {
                ShardState *ss = rec_shards_mut(r, s->name, false);
                if (!ss)
                        return -ENOMEM;
                ss->unowned_since = since;
        }
        text_unowned = rangelist_format(&unowned);
        text_dup = rangelist_format(&dup);
        text_failed = rangelist_format(&failed);
        if (!text_unowned || !text_dup || !text_failed)
                return -ENOMEM;
        if (since && r->now - since >= r->m->config.shard_unowned_after)
                k = rec_alert(r, ALERT_SHARD_UNOWNED, true, s->name, NULL,
                              "%" PRIu64 " shard(s) of %s without a ready owner for %" PRIu64
                              "s: %s",
                              rangelist_count(&unowned), s->name,
                              (uint64_t) ((r->now - since) / USEC_PER_SEC), text_unowned);
        else if (!since)
                k = rec_alert(r, ALERT_SHARD_UNOWNED, false, s->name, NULL,
                              "every shard of %s has a ready owner", s->name);
        if (k < 0)
                return k;
        /* Two ready owners in one epoch are a handoff while a reshard runs. */
        if (rangelist_count(&dup) > 0 && !shard_state_resharding(cur))
                k = rec_alert(r, ALERT_SHARD_DUPLICATE, true, s->name, NULL,
                              "%" PRIu64 " shard(s) of %s have two ready owners in epoch %" PRIu64
                              " outside a handoff: %s",
                              rangelist_count(&dup), s->name, epoch, text_dup);
        else
                k = rec_alert(r, ALERT_SHARD_DUPLICATE, false, s->name, NULL,
                              "no shard of %s has two owners", s->name);
        if (k < 0)
                return k;
        if (rangelist_count(&failed) > 0)
                k = rec_alert(r, ALERT_SHARD_FAILED, true, s->name, NULL,
                              "identify failed for %" PRIu64 " shard(s) of %s: %s",
                              rangelist_count(&failed), s->name, text_failed);
        else
                k = rec_alert(r, ALERT_SHARD_FAILED, false, s->name, NULL,
                              "no identify of %s is failing", s->name);
        if (k < 0)
                return k;

        spent = budget_spent(&cur->ledger, r->now);
        low = budget_low(limit, budget_reserve(limit, cur->layout.shard_count), spent,
                         cur->budget_low);
        if (low != cur->budget_low) {
                ShardState *ss = rec_shards_mut(r, s->name, false);
                if (!ss)
                        return -ENOMEM;
                ss->budget_low = low;
                k = rec_alert(r, ALERT_BUDGET_LOW, low, s->name, NULL,
                              "%s has spent %" PRIu64 " of its daily %u identifies", s->name, spent,
                              limit);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* The ownership part of the map (who should own what, where): an event when
 * it changes. */
static int check_map(Rec *r, const ServiceSpec *s) {
        const ShardState *cur = rec_shards(r, s->name);
        uint64_t h = FNV1A64_OFFSET;
        char buf[96];
        char **v;

        if (!cur)
                return 0;
        for (uint32_t i = 0; i < s->count; i++) {
                CopyPlan cp[2];
                size_t n = 0;

                if (reconcile_copies(cur, s->name, i, cp, &n) < 0)
                        return -ENOMEM;
                for (size_t k = 0; k < n; k++) {
                        h = fnv1a64_str(h, cp[k].unit);
                        h = fnv1a64_str(
                                h, strempty(cp[k].host ? cp[k].host : rec_host_of(r, s->name, i)));
                        h = fnv1a64_str(h, cp[k].shards);
                        snprintf(buf, sizeof(buf), ":%" PRIu64 ":%d;", cp[k].epoch, cp[k].running);
                        h = fnv1a64_str(h, buf);
                        copy_plan_done(&cp[k]);
                }
        }
        if (h == 0)
                h = 1;
        if (h == cur->map_digest)
                return 0;
        {
                ShardState *ss = rec_shards_mut(r, s->name, false);
                if (!ss)
                        return -ENOMEM;
                ss->map_digest = h;
        }
        v = realloc(r->p->map_changed, (r->p->n_map_changed + 1) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        r->p->map_changed = v;
        v[r->p->n_map_changed] = strdup(s->name);
        if (!v[r->p->n_map_changed])
                return -ENOMEM;
        r->p->n_map_changed++;
        return 0;
}

static int step_shards(Rec *r, const ServiceSpec *s) {
        int k;

        k = release_ready(r, s);
        if (k >= 0)
                k = admit_waiting(r, s);
        if (k >= 0)
                k = step_reshard(r, s);
        return k;
}

/* ---- budget ------------------------------------------------------------------ */

static BudgetVerdict budget_verdict(Rec *r, const ServiceSpec *s, uint64_t cost) {
        const ShardState *ss = rec_shards(r, s->name);
        uint64_t spent = ss ? budget_spent(&ss->ledger, r->now) : 0;
        uint32_t total = ss ? ss->layout.shard_count : s->shards;

        return budget_check(s->daily_start_budget, budget_reserve(s->daily_start_budget, total),
                            spent, cost);
}

static int refuse_budget(Rec *r, const char *service, const BudgetVerdict *v) {
        return refuse(r, VERDICT_REFUSED,
                      "%s: not enough start budget: it would spend %" PRIu64 " identifies; %" PRIu64
                      " of the daily %" PRIu64 " are spent in the last 24 h and %" PRIu64
                      " must stay in reserve, so %" PRIu64 " would remain",
                      service, v->cost, v->spent, v->limit, v->reserve, v->remaining_after);
}

/* A new sharded service's shard state: the default layout, every instance
 * waiting for the gate. */
static int new_shard_state(const ServiceSpec *s, usec_t now, ShardState **ret) {
        _cleanup_(shard_state_freep) ShardState *ss = calloc(1, sizeof(ShardState));
        int k;

        if (!ss)
                return -ENOMEM;
        budget_ledger_init(&ss->ledger);
        ss->service = strdup(s->name);
        if (!ss->service)
                return -ENOMEM;
        k = start_gate_init(&ss->gate, s->identify_concurrency, s->identify_interval, now);
        if (k >= 0)
                k = shard_layout_default(s->shards, s->count, &ss->layout);
        if (k >= 0)
                k = waiting_resize(ss, s->count);
        for (uint32_t i = 0; k >= 0 && i < s->count; i++)
                ss->waiting[i] = true;
        if (k < 0)
                return k;
        *ret = TAKE_PTR(ss);
        return 0;
}

/* What starting every instance of a sharded service spends, and how long. */
static int start_figures(const ServiceSpec *s, uint64_t *ret_identifies, usec_t *ret_duration) {
        _cleanup_free_ const RangeList **sets = calloc(s->count + 1, sizeof(RangeList *));
        _cleanup_free_ RangeList *owned = calloc(s->count + 1, sizeof(RangeList));
        int k = 0;

        if (!sets || !owned)
                return -ENOMEM;
        for (uint32_t i = 0; i < s->count; i++) {
                _cleanup_free_ char *text = NULL;

                rangelist_init(&owned[i]);
                sets[i] = &owned[i];
                if (k >= 0)
                        k = service_default_shards(s->shards, s->count, i, &text);
                if (k >= 0)
                        k = rangelist_parse(&owned[i], text);
        }
        if (k >= 0)
                k = start_gate_estimate(s->identify_concurrency, s->identify_interval, sets,
                                        s->count, ret_duration, ret_identifies);
        for (uint32_t i = 0; i < s->count; i++)
                rangelist_done(&owned[i]);
        return k;
}

/* ---- requests ---------------------------------------------------------------- */

/* A running sharded service keeps its shard layout: Instances= and Shards=
 * change only through a reshard, and its kind stays. */
static int check_sharded_change(Rec *r, ServiceSpec *s, FILE *errors) {
        const ServiceSpec *old = rec_spec(r, s->name);
        _cleanup_(service_spec_freep) ServiceSpec *was = NULL;
        uint64_t epoch;
        uint32_t total = 0;

        if (!old || (old->kind != SERVICE_SHARDED && s->kind != SERVICE_SHARDED))
                return 0;
        if (old->kind != s->kind) {
                fprintf(errors, "%s%s: %s is %s and cannot become %s; delete it first",
                        ftell(errors) > 0 ? "\n" : "", s->file_name, s->name,
                        service_kind_to_string(old->kind), service_kind_to_string(s->kind));
                return 0;
        }
        /* What the stored file said (old->count is the effective count). */
        if (spec_parse(old->file_name, old->unit_text, &was, NULL) < 0)
                return 0;
        if (was->count != s->count || was->shards != s->shards) {
                const ShardState *ss = rec_shards(r, s->name);

                if (ss)
                        reconcile_serving(ss, &epoch, &total);
                fprintf(errors,
                        "%s%s: [X-Baton] Instances=/Shards= of the running sharded service %s "
                        "change with `batonctl reshard %s --instances N --shards S` (it has %u "
                        "instances over %u shards now)",
                        ftell(errors) > 0 ? "\n" : "", s->file_name, s->name, s->name, old->count,
                        ss ? total : old->shards);
                return 0;
        }
        s->count = old->count;
        return 0;
}

static int answer_service(Rec *r, const ServiceSpec *s, const char *action) {
        struct AnswerService *v = realloc(r->ans->services, (r->ans->n_services + 1) * sizeof(*v));

        if (!v)
                return -ENOMEM;
        r->ans->services = v;
        v = &v[r->ans->n_services];
        *v = (struct AnswerService){ .service = strdup(s->name), .action = action };
        if (!v->service)
                return -ENOMEM;
        r->ans->n_services++;
        /* A sharded service that starts (created) or restarts everywhere (its
         * unit changed) spends identifies, through the start gate. */
        if (s->kind == SERVICE_SHARDED && !streq(action, "unchanged") &&
            start_figures(s, &v->identifies, &v->duration) >= 0) {
                BudgetVerdict b = budget_verdict(r, s, v->identifies);
                v->budget_allowed = b.allowed;
                v->have_identifies = true;
        }
        return 0;
}

static int do_apply(Rec *r) {
        const Event *ev = r->ev;
        _cleanup_free_ char *errors = NULL;
        _cleanup_free_ bool *updated = NULL;
        size_t errlen = 0;
        FILE *f;
        int k = 0;

        if (ev->n_specs == 0 && isempty(ev->errors))
                return refuse(r, VERDICT_USAGE, "apply needs spec files");
        f = open_memstream(&errors, &errlen);
        if (!f)
                return -ENOMEM;
        /* The files that do not parse, then what is wrong with the others. */
        if (!isempty(ev->errors))
                fputs(ev->errors, f);
        /* All files or none: every error is collected before anything changes. */
        for (size_t i = 0; i < ev->n_specs; i++) {
                for (size_t j = 0; j < i; j++)
                        if (streq(ev->specs[j]->name, ev->specs[i]->name))
                                fprintf(f, "%s%s: service %s is given twice",
                                        ftell(f) > 0 ? "\n" : "", ev->specs[i]->file_name,
                                        ev->specs[i]->name);
                check_sharded_change(r, ev->specs[i], f);
        }
        if (fclose(f) != 0)
                return -ENOMEM;
        if (!isempty(errors))
                return refuse(r, VERDICT_REFUSED, "%s", errors);

        updated = calloc(ev->n_specs + 1, sizeof(bool));
        if (!updated)
                return -ENOMEM;
        for (size_t i = 0; i < ev->n_specs; i++) {
                ServiceSpec *s = ev->specs[i];
                const ServiceSpec *old = rec_spec(r, s->name);
                const char *action = !old ? "create"
                                     : streq(old->unit_text, s->unit_text) && old->count == s->count
                                             ? "unchanged"
                                             : "update";

                /* A changed unit (for systemd, not just [X-Baton]) of a running
                 * service rolls out; the agents keep the old process meanwhile. */
                updated[i] = old && (spec_systemd_hash(old->unit_text) !=
                                             spec_systemd_hash(s->unit_text) ||
                                     /* how the copies learn their shards */
                                     old->shard_reload != s->shard_reload);
                k = answer_service(r, s, action);
                if (k >= 0 && s->kind == SERVICE_SHARDED && !rec_shards(r, s->name)) {
                        ShardState *ss;
                        k = new_shard_state(s, r->now, &ss);
                        if (k >= 0)
                                k = rec_put_shards(r, s->name, ss, true);
                }
                if (k >= 0)
                        k = rec_put_service(r, s->name, TAKE_PTR(ev->specs[i]),
                                            !streq(action, "unchanged"));
                if (k < 0)
                        return k;
        }
        r->place = true;
        if (ev->dry_run)
                return 0;
        for (size_t i = 0; i < ev->n_specs; i++) {
                struct AnswerService *as = &r->ans->services[i];
                const ServiceSpec *s = rec_spec(r, as->service);
                _cleanup_free_ char *why = NULL;
                uint64_t id;

                if (!updated[i] || !s)
                        continue;
                k = start_rollout(r, s, false, &id, &why);
                if (k == -ENOSPC) {
                        if (asprintf(&as->rollout_error,
                                     "no rolling update: %s; update it in place (its shards dark "
                                     "while they identify) with `batonctl restart --in-place %s`",
                                     why, s->name) < 0) {
                                as->rollout_error = NULL;
                                return -ENOMEM;
                        }
                        k = plan_log(r->p, L_WARNING,
                                     "Unit of %s changed, but no rolling update: %s; its copies "
                                     "run the old unit until restarted.",
                                     s->name, why);
                } else if (k == -EBUSY) {
                        as->rollout_error = strdup("a rollout or reshard is under way: restart "
                                                   "the service once it is done");
                        if (!as->rollout_error)
                                return -ENOMEM;
                        k = plan_log(r->p, L_WARNING,
                                     "Unit of %s changed, but a rollout or reshard is under way; "
                                     "its instances run the old unit until restarted.",
                                     s->name);
                } else if (k >= 0) {
                        as->rollout = id;
                        k = plan_log(r->p, L_INFO,
                                     "Unit of %s changed: rolling update %" PRIu64 ".", s->name,
                                     id);
                }
                if (k < 0)
                        return k;
        }
        return 0;
}

static int do_delete(Rec *r) {
        const ServiceSpec *s = rec_spec(r, strempty(r->ev->service));
        const Instance *first;
        int k;

        if (isempty(r->ev->service))
                return refuse(r, VERDICT_USAGE, "delete needs a service");
        if (!s)
                return refuse(r, VERDICT_REFUSED, "no service '%s'", r->ev->service);
        r->ans->removed = model_service_instances(r->m, s->name, &first);
        k = resolve_service_alerts(r, s->name);
        if (k >= 0 && rec_shards(r, s->name))
                k = rec_put_shards(r, s->name, NULL, true);
        if (k >= 0 && rec_rollout(r, s->name))
                k = rec_put_rollout(r, s->name, NULL);
        if (k >= 0)
                k = rec_put_service(r, r->ev->service, NULL, true);
        r->place = true;
        return k;
}

static int do_scale(Rec *r) {
        const ServiceSpec *s = rec_spec(r, strempty(r->ev->service));
        uint32_t n = r->ev->count;

        if (isempty(r->ev->service))
                return refuse(r, VERDICT_USAGE, "scale needs SERVICE N");
        if (!s)
                return refuse(r, VERDICT_REFUSED, "no service '%s'", r->ev->service);
        if (s->kind == SERVICE_SINGLETON)
                return refuse(r, VERDICT_REFUSED, "%s is a singleton: it always has one instance",
                              s->name);
        if (s->kind == SERVICE_SHARDED)
                return refuse(r, VERDICT_REFUSED,
                              "%s is sharded: change its instances with `batonctl reshard`",
                              s->name);
        if (n < s->min_replicas)
                return refuse(r, VERDICT_REFUSED, "%s: %u is below MinReplicas=%u", s->name, n,
                              s->min_replicas);
        if (n > s->max_replicas)
                return refuse(r, VERDICT_REFUSED, "%s: %u is above MaxReplicas=%u", s->name, n,
                              s->max_replicas);
        r->ans->previous = s->count;
        return set_count(r, s->name, n);
}

static int do_drain(Rec *r) {
        const Host *h = host_table_get(&r->m->hosts, strempty(r->ev->host));
        PlanHost *v;

        if (isempty(r->ev->host))
                return refuse(r, VERDICT_USAGE, "%s needs a host",
                              r->ev->drained ? "drain" : "undrain");
        if (!h)
                return refuse(r, VERDICT_REFUSED, "no host '%s'", r->ev->host);
        if (h->drained == r->ev->drained)
                return 0;
        v = realloc(r->p->hosts, (r->p->n_hosts + 1) * sizeof(PlanHost));
        if (!v)
                return -ENOMEM;
        r->p->hosts = v;
        v[r->p->n_hosts] = (PlanHost){ .host = strdup(h->id), .drained = r->ev->drained };
        if (!v[r->p->n_hosts].host)
                return -ENOMEM;
        r->p->n_hosts++;
        r->place = true;
        return plan_store_host(r->p, h->id);
}

/* What a restart of sharded `s` (instance `instance`, -1: all) costs:
 * identifies, surge copies, the shard-time it leaves without a ready owner
 * and how long it takes through the gate (Answer.restart_plan). */
static int restart_figures(Rec *r, const ServiceSpec *s, const ShardState *ss, int32_t instance,
                           bool in_place) {
        _cleanup_free_ const RangeList **sets = NULL;
        bool replace = restarts_by_replace(s, in_place);
        uint32_t buckets = MAX(s->identify_concurrency, 1u);
        _cleanup_free_ uint32_t *slot = NULL;
        size_t n = 0;
        uint64_t unused;
        int k;

        r->ans->restart_plan.sharded = true;
        r->ans->restart_plan.budget = budget_verdict(r, s, 0);
        if (!ss)
                return 0;
        sets = calloc(ss->layout.n_instances + 1, sizeof(RangeList *));
        slot = calloc(buckets, sizeof(uint32_t));
        if (!sets || !slot)
                return -ENOMEM;
        for (uint32_t i = 0; i < ss->layout.n_instances; i++) {
                const RangeList *set = &ss->layout.sets[i];

                if (instance >= 0 && (uint32_t) instance != i)
                        continue;
                sets[n++] = set;
                r->ans->restart_plan.identifies += rangelist_count(set);
                /* In place, the k-th shard of a bucket is back one interval
                 * after its identify, k intervals after the copy's start. */
                memset(slot, 0, buckets * sizeof(uint32_t));
                for (size_t j = 0; !replace && j < set->n_ranges; j++)
                        for (uint32_t sh = set->ranges[j].lo; sh <= set->ranges[j].hi; sh++)
                                r->ans->restart_plan.dark_shard_us +=
                                        (usec_t) ++slot[sh % buckets] * s->identify_interval;
        }
        r->ans->restart_plan.surge = replace ? (uint32_t) MIN((size_t) s->max_surge, n) : 0;
        k = start_gate_estimate(s->identify_concurrency, s->identify_interval, sets, n,
                                &r->ans->restart_plan.duration, &unused);
        if (k < 0)
                return k;
        r->ans->restart_plan.budget = budget_verdict(r, s, r->ans->restart_plan.identifies);
        return 0;
}

static int do_restart(Rec *r) {
        const Event *ev = r->ev;
        const ServiceSpec *s = rec_spec(r, strempty(ev->service));
        const char *id, *host;
        uint64_t rollout;
        int k;

        if (isempty(ev->service))
                return refuse(r, VERDICT_USAGE, "restart needs SERVICE[@N]");
        if (!s)
                return refuse(r, VERDICT_REFUSED, "no service '%s'", ev->service);
        if (s->kind == SERVICE_SHARDED) {
                const ShardState *ss = rec_shards(r, s->name);

                k = restart_figures(r, s, ss, ev->instance, ev->in_place);
                if (k < 0)
                        return k;
                if (shard_state_resharding(ss))
                        return refuse(r, VERDICT_REFUSED,
                                      "%s %" PRIu64 " of %s is under way; restart %s once it "
                                      "is done (batonctl shards %s)",
                                      reshard_kind(ss->reshard), ss->reshard->id, s->name,
                                      ev->service, s->name);
                if (!r->ans->restart_plan.budget.allowed)
                        return refuse_budget(r, s->name, &r->ans->restart_plan.budget);
        }
        if (ev->instance >= 0 && (uint32_t) ev->instance >= s->count)
                return refuse(r, VERDICT_REFUSED, "%s has no instance %d", s->name, ev->instance);
        if (ev->instance < 0 || restarts_by_replace(s, ev->in_place)) {
                _cleanup_free_ char *why = NULL;

                k = ev->instance < 0 ? start_rollout(r, s, ev->in_place, &rollout, &why)
                                     : start_replace(r, s, ev->instance, &rollout, &why);
                if (k == -EBUSY)
                        return refuse(r, VERDICT_REFUSED,
                                      "%s already has a rollout in progress (batonctl rollout "
                                      "status)",
                                      s->name);
                if (k == -ENOSPC)
                        return refuse(r, VERDICT_REFUSED,
                                      "no room to restart %s make-before-break: %s; restart it in "
                                      "place (its shards dark while they identify) with "
                                      "`batonctl restart --in-place %s`",
                                      s->name, why, ev->service);
                if (k == -ENOENT)
                        return refuse(r, VERDICT_FAILED, "%s@%d is not placed on any host", s->name,
                                      ev->instance);
                if (k < 0)
                        return k;
                r->ans->rollout = rollout;
                r->ans->replace = restarts_by_replace(s, ev->in_place);
                return 0;
        }
        /* One instance of a sharded service restarts through the start gate too. */
        if (s->kind == SERVICE_SHARDED) {
                bool taken;

                k = may_restart_take(r, s->name, (uint32_t) ev->instance, &taken);
                if (k < 0)
                        return k;
                if (!taken)
                        return refuse(r, VERDICT_REFUSED,
                                      "%s@%d cannot start now: another start of %s is identifying "
                                      "in its buckets (the start gate is closed); try again "
                                      "shortly",
                                      s->name, ev->instance, s->name);
        }
        k = plan_restart(r, s, (uint32_t) ev->instance, &id, &host);
        if (k == -ENOENT)
                return refuse(r, VERDICT_FAILED, "%s@%d is not placed on any host", s->name,
                              ev->instance);
        if (k < 0)
                return k;
        r->ans->restart_id = strdup(id);
        r->ans->restart_host = strdup(host);
        if (!r->ans->restart_id || !r->ans->restart_host)
                return -ENOMEM;
        return plan_log(r->p, L_INFO, "Sent restart %s of %s@%d to %s.", id, s->name, ev->instance,
                        host);
}

static int do_reshard(Rec *r) {
        const Event *ev = r->ev;
        const ServiceSpec *s = rec_spec(r, strempty(ev->service));
        const ShardState *cur;
        _cleanup_(reshard_freep) Reshard *rs = NULL;
        _cleanup_free_ const RangeList **sets = NULL;
        _cleanup_free_ RangeList *ids = NULL;
        uint32_t n_to, to_count, count;
        uint64_t id;
        size_t n = 0;
        int k;

        if (isempty(ev->service))
                return refuse(r, VERDICT_USAGE, "reshard needs SERVICE");
        if (!s)
                return refuse(r, VERDICT_REFUSED, "no service '%s'", ev->service);
        if (s->kind != SERVICE_SHARDED)
                return refuse(r, VERDICT_REFUSED, "%s is %s, not sharded", s->name,
                              service_kind_to_string(s->kind));
        if (ev->instances == 0 && ev->shards == 0)
                return refuse(r, VERDICT_USAGE, "reshard needs --instances N and/or --shards S");
        cur = rec_shards(r, s->name);
        if (!cur)
                return -ENOMEM;
        if (shard_state_resharding(cur))
                return refuse(r, VERDICT_REFUSED,
                              "reshard %" PRIu64 " of %s is under way (%s); see `batonctl shards "
                              "%s`",
                              cur->reshard->id, s->name,
                              reshard_state_to_string(cur->reshard->state), s->name);
        {
                const Rollout *ro = rec_rollout(r, s->name);
                if (ro && (ro->state == ROLLOUT_RUNNING || ro->state == ROLLOUT_PAUSED ||
                           ro->state == ROLLOUT_FAILED))
                        return refuse(r, VERDICT_REFUSED, "a rolling restart of %s is under way",
                                      s->name);
        }
        n_to = ev->instances > 0 ? ev->instances : cur->layout.n_instances;
        to_count = ev->shards > 0 ? ev->shards : cur->layout.shard_count;
        if (n_to < s->min_replicas || n_to > s->max_replicas)
                return refuse(r, VERDICT_REFUSED,
                              "%s: %u instances is outside MinReplicas=%u…MaxReplicas=%u", s->name,
                              n_to, s->min_replicas, s->max_replicas);
        if (n_to > to_count)
                return refuse(r, VERDICT_REFUSED,
                              "%s: %u instances cannot share %u shards (each needs one)", s->name,
                              n_to, to_count);
        id = r->p->next_rollout_id > 0 ? r->p->next_rollout_id : r->m->next_rollout_id;
        k = reshard_new(s->name, id, &cur->layout, n_to, to_count, s->max_unavailable,
                        s->health_timeout, &rs);
        if (k == -EALREADY)
                return refuse(r, VERDICT_REFUSED, "%s already has %u instances over %u shards",
                              s->name, n_to, to_count);
        if (k < 0)
                return k;
        /* At the same total, what each gainer gains is spread over the
         * identify buckets, so its identifies run in parallel; with
         * ShardChange=reload each changed instance keeps its process and
         * takes its new set live. */
        if (to_count == cur->layout.shard_count) {
                k = reshard_spread_gains(rs, s->identify_concurrency);
                if (k >= 0 && s->shard_reload)
                        k = reshard_make_reload(rs);
                if (k < 0)
                        return k;
        }

        r->ans->reshard.from_instances = cur->layout.n_instances;
        r->ans->reshard.from_shards = cur->layout.shard_count;
        r->ans->reshard.from_epoch = cur->layout.epoch;
        r->ans->reshard.to_instances = n_to;
        r->ans->reshard.to_shards = to_count;
        r->ans->reshard.to_epoch = rs->to_epoch;
        r->ans->reshard.identifies = reshard_cost(rs);
        sets = calloc(rs->n_items + 1, sizeof(RangeList *));
        ids = calloc(rs->n_items + 1, sizeof(RangeList));
        if (!sets || !ids)
                return -ENOMEM;
        for (size_t i = 0; i < rs->n_items && k >= 0; i++) {
                RangeList moved;

                /* What each start identifies: a new copy's set, or a live
                 * change's gain. */
                k = reshard_item_identifies(rs, &rs->items[i], &ids[i]);
                if (k >= 0 && rangelist_count(&ids[i]) > 0)
                        sets[n++] = &ids[i];
                rangelist_init(&moved);
                if (rangelist_copy(&moved, &rs->items[i].to) >= 0 &&
                    rangelist_subtract(&moved, &rs->items[i].from) >= 0)
                        r->ans->reshard.moves += rangelist_count(&moved);
                rangelist_done(&moved);
        }
        if (k >= 0) {
                uint64_t unused;
                k = start_gate_estimate(s->identify_concurrency, s->identify_interval, sets, n,
                                        &r->ans->reshard.duration, &unused);
        }
        for (size_t i = 0; i < rs->n_items; i++)
                rangelist_done(&ids[i]);
        if (k < 0)
                return k;
        /* A new total moves every shard to the new set. */
        if (rs->to_epoch != rs->from_epoch)
                r->ans->reshard.moves = to_count;
        r->ans->reshard.budget = budget_verdict(r, s, r->ans->reshard.identifies);
        k = reshard_copy(rs, &r->ans->reshard.reshard);
        if (k < 0)
                return k;

        /* The hosts must take every copy the reshard runs at once. */
        count = MAX(n_to, cur->layout.n_instances);
        k = set_count(r, s->name, count);
        if (k < 0)
                return k;
        k = place(r);
        if (k < 0)
                return k;
        for (size_t i = 0; i < r->p->n_problems; i++)
                if (streq_ptr(r->p->problems[i].service, s->name))
                        return refuse(r, VERDICT_REFUSED, "%u instances of %s do not fit: %s",
                                      count, s->name, r->p->problems[i].reason);
        if (!r->ans->reshard.budget.allowed && !ev->dry_run)
                return refuse_budget(r, s->name, &r->ans->reshard.budget);
        if (ev->dry_run)
                return 0;

        {
                ShardState *ss = rec_shards_mut(r, s->name, true);
                if (!ss)
                        return -ENOMEM;
                reshard_free(ss->reshard);
                ss->reshard = TAKE_PTR(rs);
                r->p->next_rollout_id = id + 1;
                k = strset_add(&r->step, s->name);
                if (k >= 0)
                        k = strset_add(&r->sync_services, s->name);
                if (k >= 0)
                        k = plan_log(r->p, L_INFO,
                                     "Reshard %" PRIu64
                                     " of %s: %u → %u instances, %u → %u shards, "
                                     "%" PRIu64 " identifies.",
                                     id, s->name, cur->layout.n_instances, n_to,
                                     cur->layout.shard_count, to_count, r->ans->reshard.identifies);
                return k;
        }
}

static int do_rollout(Rec *r) {
        const char *action = strempty(r->ev->action), *svc = r->ev->service;
        size_t n = 0;
        int k;

        if (!streq(action, "pause") && !streq(action, "resume") && !streq(action, "abort"))
                return refuse(r, VERDICT_USAGE,
                              "unknown rollout action '%s' (pause, resume, abort)", action);
        for (size_t i = 0; i < r->m->n_rollouts; i++) {
                const Rollout *cur = r->m->rollouts[i];
                Rollout *ro;

                if (!isempty(svc) && !streq(cur->service, svc))
                        continue;
                ro = rec_rollout_mut(r, cur->service);
                if (!ro)
                        return -ENOMEM;
                if (streq(action, "pause"))
                        k = rollout_pause(ro, "paused by an operator");
                else if (streq(action, "resume"))
                        k = rollout_resume(ro);
                else
                        k = rollout_abort(ro, "aborted by an operator");
                if (k == -EBUSY)
                        continue;
                if (k < 0)
                        return k;
                n++;
                k = strset_add(&r->step, cur->service);
                if (k < 0)
                        return k;
        }
        /* A reshard is a rollout of its service too. */
        for (size_t i = 0; i < r->m->n_shards; i++) {
                const ShardState *cur = r->m->shards[i];
                ShardState *ss;

                if ((!isempty(svc) && !streq(cur->service, svc)) || !shard_state_resharding(cur))
                        continue;
                ss = rec_shards_mut(r, cur->service, true);
                if (!ss)
                        return -ENOMEM;
                if (streq(action, "pause"))
                        k = reshard_pause(ss->reshard, NULL);
                else if (streq(action, "resume"))
                        k = reshard_resume(ss->reshard);
                else
                        k = reshard_abort(ss->reshard, NULL);
                if (k == -EBUSY)
                        continue;
                if (k < 0)
                        return k;
                n++;
                k = strset_add(&r->step, cur->service);
                if (k < 0)
                        return k;
        }
        if (n == 0)
                return refuse(r, VERDICT_REFUSED, "no rollout%s%s can be %s now",
                              isempty(svc) ? "" : " of ", strempty(svc),
                              streq(action, "pause")    ? "paused"
                              : streq(action, "resume") ? "resumed"
                                                        : "aborted");
        return 0;
}

/* ---- what hosts say ------------------------------------------------------------ */

/* A service's rollouts, gate and reshard advance when one of its units
 * changes: its service from the unit's name. */
static int step_unit_service(Rec *r, const char *unit) {
        _cleanup_free_ char *name = strdup(unit);
        char *at;

        if (!name)
                return -ENOMEM;
        at = strchr(name, '@');
        if (!at)
                at = strstr(name, ".service");
        if (at)
                *at = '\0';
        if (!rec_spec(r, name))
                return 0;
        return strset_add(&r->step, name);
}

/* Whether a live drained host still has instances (a drain to step on).
 * Without drained hosts, the usual case, it costs nothing. */
static bool drain_pending(const Rec *r) {
        if (r->m->hosts.n_drained == 0)
                return false;
        for (size_t i = 0; i < r->m->hosts.n_hosts; i++) {
                const Host *h = r->m->hosts.hosts[i];
                const HostModel *v = h->userdata;

                if (h->alive && h->drained && v && v->n_placed > 0)
                        return true;
        }
        return false;
}

static int units_changed(Rec *r) {
        const Event *ev = r->ev;
        int k;

        for (size_t i = 0; i < ev->n_units; i++) {
                const UnitChange *u = &ev->units[i];

                if (u->new_restarts > 0) {
                        k = charge_restarts(r, ev->host, u->unit, u->new_restarts);
                        if (k < 0)
                                return k;
                }
                /* The unit stands in the alert's service field: two flapping
                 * units of one service on one host are two alerts. */
                if (u->flap > 0)
                        k = rec_alert(r, ALERT_UNIT_FLAPPING, true, u->unit, ev->host,
                                      "%s on %s restarted %d times within %ds", u->unit, ev->host,
                                      FLAP_THRESHOLD, (int) (FLAP_WINDOW_US / USEC_PER_SEC));
                else if (u->flap < 0)
                        k = rec_alert(r, ALERT_UNIT_FLAPPING, false, u->unit, ev->host,
                                      "%s on %s is stable again", u->unit, ev->host);
                else
                        k = 0;
                if (k >= 0 && u->failed)
                        k = rec_alert(r, ALERT_UNIT_FAILED, true, u->service, ev->host,
                                      "%s failed on %s (%s)", u->unit, ev->host, strna(u->result));
                else if (k >= 0 && u->active)
                        k = rec_alert(r, ALERT_UNIT_FAILED, false, u->service, ev->host,
                                      "%s is active again on %s", u->unit, ev->host);
                if (k >= 0)
                        k = step_unit_service(r, u->unit);
                if (k < 0)
                        return k;
        }
        /* A drain moves the next instance when the last one is healthy. */
        if (ev->n_units > 0 && drain_pending(r))
                r->place = true;
        return 0;
}

/* An agent refuses commands from an epoch below the highest it has seen, and
 * ignores a Placement not newer than the one it applied. A controller whose
 * database was restored may stand below what agents saw, or reuse an epoch
 * another run of it used (an agent applied a generation of "our" epoch that
 * we never sent): it rises above and sends every host its Placement again. */
static int learn_epoch(Rec *r, const Host *h) {
        const HostModel *v = h->userdata;
        uint64_t epoch = rec_epoch(r), next;

        if (v->max_epoch_seen > epoch && v->max_epoch_seen - epoch > EPOCH_JUMP_MAX)
                return plan_log(r->p, L_WARNING,
                                "Host %s claims to have seen epoch %" PRIu64
                                ", far above ours (%" PRIu64 "); not believed, ignoring.",
                                h->id, v->max_epoch_seen, epoch);
        if (v->max_epoch_seen > epoch)
                next = v->max_epoch_seen + 1;
        else if (v->applied_epoch == epoch && v->applied_generation > v->generation)
                next = epoch + 1;
        else
                return 0;
        r->p->epoch = next;
        r->resend_all = true;
        return plan_log(r->p, L_NOTICE,
                        "Host %s has seen epoch %" PRIu64 " (applied %" PRIu64 "/%" PRIu64
                        ", we sent generation %" PRIu64 " in epoch %" PRIu64
                        "): this database was restored or reused. Raised the epoch to %" PRIu64
                        " and sending every host its placement again.",
                        h->id, v->max_epoch_seen, v->applied_epoch, v->applied_generation,
                        v->generation, epoch, next);
}

static int on_heartbeat(Rec *r) {
        const Host *h = host_table_get(&r->m->hosts, strempty(r->ev->host));
        const HostModel *v = h ? h->userdata : NULL;
        int k;

        if (!v)
                return 0;
        k = learn_epoch(r, h);
        if (k < 0)
                return k;
        /* Not at what we sent, in a heartbeat sent a while after it: send it
         * again. (Past it means another run used our epoch: learn_epoch()
         * raised it.) By when the heartbeat was sent, not read: a controller
         * reading its queue late would otherwise resend to every host it
         * sent to within its lag, and the resends make it later still. */
        if (h->alive && v->sent && r->p->epoch == 0 &&
            !(v->applied_epoch == r->m->epoch && v->applied_generation >= v->generation) &&
            v->applied_epoch <= r->m->epoch &&
            (r->ev->sent_after ? r->ev->sent_after : r->now) >=
                    v->sent_at + (RESEND_AFTER_US << MIN(v->resends, RESEND_BACKOFF_MAX))) {
                k = strset_add(&r->resend, h->id);
                if (k < 0)
                        return k;
        }
        /* RequireLabels= may no longer hold for what runs there, or now
         * hold for what could not be placed. */
        if (r->ev->labels_changed) {
                k = strset_add(&r->relabeled, h->id);
                if (k < 0)
                        return k;
                r->place = true;
        }
        return units_changed(r);
}

static int on_shard_report(Rec *r) {
        const HostModel *v = model_host(r->m, strempty(r->ev->host));
        int k;

        for (size_t i = 0; v && i < v->n_copies; i++) {
                k = strset_add(&r->step, v->copies[i].service);
                if (k < 0)
                        return k;
        }
        /* Copies that stopped reporting (stopped, removed) matter too. */
        for (size_t i = 0; i < r->m->n_shards; i++) {
                k = strset_add(&r->step, r->m->shards[i]->service);
                if (k < 0)
                        return k;
        }
        if (drain_pending(r))
                r->place = true;
        return 0;
}

/* An agent's result: refusals and failures are alerted (command-refused, per
 * host), a clean result resolves that. */
static int on_result(Rec *r) {
        const Event *ev = r->ev;
        const char *error = strempty(ev->error);

        if (ev->ok)
                return rec_alert(r, ALERT_COMMAND_REFUSED, false, NULL, ev->host,
                                 "%s applied cleanly on %s", strna(ev->what), ev->host);
        /* A superseded or already-applied Placement is not a problem. */
        if (strstr(error, "superseded") || strstr(error, "older"))
                return 0;
        return rec_alert(r, ALERT_COMMAND_REFUSED, true, NULL, ev->host, "%s on %s: %s%s",
                         strna(ev->what), ev->host, strna(ev->error), strempty(ev->details));
}

/* mass-host-loss: more than mass_loss_permille of the hosts down within one
 * host_timeout (and at least this many) looks more like the controller's
 * side of a partition than like hosts dying: re-placement is held. Hosts
 * that stopped at the same moment expire a little apart (each by its last
 * heartbeat), so a host silent for half the timeout counts as going down
 * with them: the wave is held from its first host on, not from the host
 * that happens to cross the share. */
#define MASS_LOSS_MIN_HOSTS 2

static int check_mass_loss(Rec *r) {
        const Model *m = r->m;
        char timeout[DURATION_MAX_LEN];
        size_t down = 0, total = 0;

        if (m->config.mass_loss_permille == 0 || m->config.mass_loss_permille >= 1000)
                return 0;
        for (size_t i = 0; i < m->hosts.n_hosts; i++) {
                const Host *h = m->hosts.hosts[i];
                const HostModel *v = h->userdata;

                if (h->alive) {
                        total++;
                        down += v && v->last_seen_us > 0 &&
                                v->last_seen_us + m->config.host_timeout / 2 < r->now;
                } else if (v && v->state_since_us + m->config.host_timeout >= r->now) {
                        down++;
                        total++;
                }
        }
        if (down < MASS_LOSS_MIN_HOSTS || down * 1000 <= m->config.mass_loss_permille * total)
                return 0;
        duration_format(timeout, sizeof(timeout), m->config.host_timeout);
        return rec_alert(r, ALERT_MASS_HOST_LOSS, true, NULL, NULL,
                         "%zu of %zu hosts went down within %s (more than %u%%): this looks like "
                         "the controller's side of a partition, so their instances stay where "
                         "they are until the hosts return or an operator confirms them down "
                         "(batonctl hosts confirm-down)",
                         down, total, timeout, m->config.mass_loss_permille / 10);
}

/* Held hosts that still have instances; none left (back, or confirmed):
 * mass-host-loss is over. */
static int check_mass_loss_over(Rec *r) {
        const Model *m = r->m;

        if (!rec_holding(r))
                return 0;
        for (size_t i = 0; i < m->hosts.n_hosts; i++) {
                const Host *h = m->hosts.hosts[i];
                const HostModel *v = h->userdata;

                if (v && v->n_placed > 0 && !h->alive && !strset_has(&r->released, h->id))
                        return 0;
        }
        return rec_alert(r, ALERT_MASS_HOST_LOSS, false, NULL, NULL,
                         "every host lost in the wave is back or confirmed down");
}

/* The moves whose old copy ran on `host`, which came back without it
 * (it stopped with the host) or which an operator confirmed down: that
 * copy is gone (and must not start again outside the gate), so the
 * instance's live copy is the one at its place, installed and waiting,
 * while the replacement keeps starting there. A copy the host reports
 * active keeps serving until its replacement is ready. */
static int moves_gone(Rec *r, const char *host, bool confirmed) {
        const Host *h = host_table_get(&r->m->hosts, host);
        const HostModel *v = h ? h->userdata : NULL;

        for (size_t i = 0; i < r->m->n_shards; i++) {
                const ShardState *cur = r->m->shards[i];
                const char *service = cur->service;
                ShardState *ss;
                bool any = false;

                cur = rec_shards(r, service);
                for (size_t j = 0; cur && shard_state_resharding(cur) && j < cur->reshard->n_items;
                     j++)
                        any = any || (streq_ptr(cur->reshard->items[j].from_host, host) &&
                                      cur->reshard->items[j].state != RITEM_DONE);
                if (!any)
                        continue;
                ss = rec_shards_mut(r, service, true);
                if (!ss)
                        return -ENOMEM;
                for (size_t j = 0; j < ss->reshard->n_items; j++) {
                        ReshardItem *it = &ss->reshard->items[j];
                        _cleanup_free_ char *unit = NULL;
                        int k;

                        if (!streq_ptr(it->from_host, host) || it->state == RITEM_DONE)
                                continue;
                        k = shard_copy_unit(service, it->instance, it->from_slot, &unit);
                        if (k < 0)
                                return k;
                        if (!confirmed && unit_active(v, unit))
                                continue;
                        it->from_host = mfree(it->from_host);
                        if (it->instance >= ss->n_waiting) {
                                k = waiting_resize(ss, it->instance + 1);
                                if (k < 0)
                                        return k;
                        }
                        ss->waiting[it->instance] = true;
                        k = strset_add(&r->sync_services, service);
                        if (k < 0)
                                return k;
                }
        }
        return 0;
}

static int do_confirm_down(Rec *r) {
        const Event *ev = r->ev;
        int k;

        if (!rec_holding(r))
                return refuse(r, VERDICT_REFUSED,
                              "no mass-host-loss is held: hosts that go down are re-placed at "
                              "once");
        if (!ev->all && ev->n_hosts == 0)
                return refuse(r, VERDICT_USAGE, "confirm-down needs hosts, or all");
        for (size_t i = 0; i < ev->n_hosts; i++) {
                const Host *h = host_table_get(&r->m->hosts, strempty(ev->hosts[i]));

                if (!h)
                        return refuse(r, VERDICT_REFUSED, "no host '%s'", ev->hosts[i]);
                if (h->alive)
                        return refuse(r, VERDICT_REFUSED, "host %s is up", h->id);
        }
        for (size_t i = 0; i < r->m->hosts.n_hosts; i++) {
                const Host *h = r->m->hosts.hosts[i];
                const HostModel *v = h->userdata;
                bool named = ev->all;

                for (size_t j = 0; !named && j < ev->n_hosts; j++)
                        named = streq(ev->hosts[j], h->id);
                if (!named || h->alive)
                        continue;
                k = strset_add(&r->released, h->id);
                if (k >= 0)
                        k = moves_gone(r, h->id, true);
                if (k < 0)
                        return k;
                r->ans->removed += v ? v->n_placed : 0;
                if (v && v->n_placed > 0) {
                        k = plan_log(r->p, L_NOTICE,
                                     "Host %s confirmed down: its %zu instances are placed "
                                     "elsewhere.",
                                     h->id, v->n_placed);
                        if (k < 0)
                                return k;
                }
        }
        r->place = true;
        return 0;
}

/* A host back from down that was left its instances (a mass loss, or ones
 * nowhere else could take): a sharded live copy it does not report running
 * starts again, through the gate, like one placed anew, and so does a new
 * copy that had started there. One still running (the host was cut off,
 * not stopped) keeps serving. */
static int host_returned(Rec *r, const char *host) {
        const Host *h = host_table_get(&r->m->hosts, host);
        const HostModel *v = h ? h->userdata : NULL;
        int k = 0;

        for (size_t i = 0; k >= 0 && i < r->m->n_instances; i++) {
                const Instance *in = &r->m->instances[i];
                const ServiceSpec *s;
                const ShardState *cur;
                ShardState *ss;
                CopyPlan cp[2];
                size_t n = 0;

                if (!streq(in->host, host))
                        continue;
                s = rec_spec(r, in->service);
                cur = s && s->kind == SERVICE_SHARDED ? rec_shards(r, s->name) : NULL;
                if (!cur)
                        continue;
                k = reconcile_copies(cur, s->name, in->instance, cp, &n);
                if (k < 0)
                        return k;
                if (n > 0 && !cp[0].host && !unit_active(v, cp[0].unit))
                        k = shards_placed(r, in->service, in->instance);
                else if (n == 2 && cp[1].running && !unit_active(v, cp[1].unit)) {
                        /* Its new copy had started here, and stopped with it. */
                        ss = rec_shards_mut(r, s->name, true);
                        if (ss)
                                new_copy_restarts(ss, in->instance, r->now);
                        else
                                k = -ENOMEM;
                }
                for (size_t c = 0; c < n; c++)
                        copy_plan_done(&cp[c]);
        }
        return k;
}

static int on_hosts(Rec *r) {
        const Event *ev = r->ev;
        char timeout[DURATION_MAX_LEN];
        int k;

        duration_format(timeout, sizeof(timeout), r->m->config.host_timeout);
        for (size_t i = 0; i < ev->n_transitions; i++) {
                const HostTransition *t = &ev->transitions[i];
                char since[DURATION_MAX_LEN];

                k = plan_store_host(r->p, t->id);
                if (k < 0)
                        return k;
                duration_format(since, sizeof(since),
                                ev->since ? ev->since[i] / USEC_PER_MSEC * USEC_PER_MSEC : 0);
                switch (t->to) {
                case HOST_DOWN:
                        k = rec_alert(r, ALERT_HOST_DOWN, true, NULL, t->id,
                                      "host %s is down: no heartbeat for %s", t->id, timeout);
                        break;
                case HOST_UP:
                case HOST_DRAINED:
                        /* A host that comes back is sent its current Placement even
                         * if unchanged, which stops what moved away meanwhile. */
                        k = strset_add(&r->resend, t->id);
                        if (k >= 0 && t->from == HOST_DOWN)
                                k = host_returned(r, t->id);
                        if (k >= 0 && t->from == HOST_DOWN)
                                k = moves_gone(r, t->id, false);
                        if (k >= 0 && t->from == HOST_DOWN) {
                                k = rec_alert(r, ALERT_HOST_DOWN, false, NULL, t->id,
                                              "host %s is up again after %s down", t->id, since);
                                if (k >= 0)
                                        k = rec_alert(r, ALERT_HOST_UP, true, NULL, t->id,
                                                      "host %s is up again after %s down", t->id,
                                                      since);
                        } else if (k >= 0 && t->from == _HOST_STATE_INVALID)
                                k = rec_alert(r, ALERT_HOST_UP, true, NULL, t->id, "host %s joined",
                                              t->id);
                        break;
                default:
                        k = 0;
                        break;
                }
                if (k < 0)
                        return k;
        }
        r->place = true;
        return check_mass_loss(r);
}

/* ---- the pass ------------------------------------------------------------------ */

/* The services left to later passes, in name order, but for one a later
 * round placed after all. Only existing ones: a deleted one needs none. */
static int place_later(Rec *r) {
        char **v;

        if (r->place_later.n == 0)
                return 0;
        v = calloc(r->place_later.n, sizeof(char *));
        if (!v)
                return -ENOMEM;
        r->p->later_services = v;
        for (size_t i = 0; i < r->place_later.n; i++) {
                const char *name = r->place_later.v[i];

                if (plan_has_service_instances(r->p, name) || !rec_spec(r, name))
                        continue;
                v[r->p->n_later_services] = strdup(name);
                if (!v[r->p->n_later_services])
                        return -ENOMEM;
                r->p->n_later_services++;
        }
        qsort(v, r->p->n_later_services, sizeof(char *), cmp_str_ptr);
        return 0;
}

static int settle(Rec *r) {
        _cleanup_free_ const ServiceSpec **services = NULL;
        size_t n_services;
        int k;

        /* A reshard's end changes a count, which places again: at most a few rounds. */
        for (unsigned round = 0; round < 3; round++) {
                bool placed = r->place;

                if (r->place) {
                        r->place = false;
                        k = place(r);
                        if (k < 0)
                                return k;
                }
                free(services);
                services = NULL;
                k = rec_services(r, &services, &n_services);
                if (k < 0)
                        return k;
                for (size_t i = 0; i < n_services; i++) {
                        const ServiceSpec *s = services[i];

                        if (!placed && !r->step_all && !strset_has(&r->step, s->name))
                                continue;
                        if (s->kind == SERVICE_SHARDED) {
                                k = step_shards(r, s);
                                if (k < 0)
                                        return k;
                        }
                }
                if (!r->place)
                        break;
        }
        k = place_later(r);
        if (k >= 0)
                k = check_mass_loss_over(r);
        if (k < 0)
                return k;
        for (size_t i = 0; i < n_services; i++) {
                const ServiceSpec *s = services[i];
                bool step = r->step_all || strset_has(&r->step, s->name) || r->p->n_instances > 0;

                if (!step)
                        continue;
                k = step_rollout(r, s);
                if (k >= 0 && s->kind == SERVICE_SHARDED)
                        k = check_shard_alerts(r, s);
                if (k >= 0 && s->kind == SERVICE_SHARDED)
                        k = check_map(r, s);
                if (k < 0)
                        return k;
        }
        /* Rollouts of services that were deleted end with them. */
        for (size_t i = 0; i < r->p->n_shards; i++)
                if (r->p->shards[i].state) {
                        k = strset_add(&r->sync_services, r->p->shards[i].service);
                        if (k < 0)
                                return k;
                }
        return sync_hosts(r);
}

/* Whether the pass is an operator's apply or scale that may leave every
 * service it places to later passes. */
static bool rec_defers_requests(const Event *ev) {
        return (ev->kind == EVENT_APPLY && !ev->place_now) || ev->kind == EVENT_SCALE;
}

int reconcile(const Model *m, const Event *ev, Plan *ret, Answer *ret_answer) {
        Answer scratch = { 0 };
        Rec r = {
                .m = m,
                .p = ret,
                .ev = ev,
                .ans = ret_answer ? ret_answer : &scratch,
                .now = ev->now,
                .full_place = ev->full_placement,
                /* An operator's apply or scale places half a step (its turn
                 * also parses, stores and answers) and leaves a service
                 * larger than that to a pass of its own on the next turn.
                 * A sync pass places at least one service, as does an apply
                 * that lists every placement (it lists them). */
                .place_left = rec_defers_requests(ev) && ev->place_max > 1 ? ev->place_max / 2
                                                                           : ev->place_max,
                .placed_one = rec_defers_requests(ev),
        };
        int k;

        plan_init(ret);
        switch (ev->kind) {
        case EVENT_TICK:
                r.step_all = true;
                r.place = ev->full_placement;
                /* The periodic check looks at every host's units too: a
                 * Placement that never went out (a failed pass) goes now. */
                r.sync_all = ev->full_placement;
                k = 0;
                break;
        case EVENT_CONFIRM_DOWN:
                k = do_confirm_down(&r);
                break;
        case EVENT_SYNC:
                k = on_sync(&r);
                break;
        case EVENT_CONNECTED:
                r.resend_all = true;
                r.place = true;
                r.step_all = true;
                k = 0;
                break;
        case EVENT_HOSTS:
                k = on_hosts(&r);
                break;
        case EVENT_HEARTBEAT:
                k = on_heartbeat(&r);
                break;
        case EVENT_UNITS:
                k = units_changed(&r);
                break;
        case EVENT_SHARD_REPORT:
                k = on_shard_report(&r);
                break;
        case EVENT_RESULT:
                k = on_result(&r);
                break;
        case EVENT_APPLY:
                k = do_apply(&r);
                break;
        case EVENT_DELETE:
                k = do_delete(&r);
                break;
        case EVENT_SCALE:
                k = do_scale(&r);
                break;
        case EVENT_DRAIN:
                k = do_drain(&r);
                break;
        case EVENT_RESTART:
                k = do_restart(&r);
                break;
        case EVENT_RESHARD:
                k = do_reshard(&r);
                break;
        case EVENT_ROLLOUT:
                k = do_rollout(&r);
                break;
        default:
                k = -EINVAL;
        }
        if (k >= 0 && r.ans->verdict == VERDICT_OK)
                k = settle(&r);
        strset_done(&r.step);
        strset_done(&r.sync);
        strset_done(&r.resend);
        strset_done(&r.sync_services);
        strset_done(&r.urgent);
        strset_done(&r.relabeled);
        strset_done(&r.released);
        strset_done(&r.place_given);
        strset_done(&r.place_later);
        free(r.by_host);
        free(r.in_plan);
        free(r.spec_hashes);
        free(r.alert_slots);
        answer_done(&scratch);
        if (k < 0 || r.ans->verdict != VERDICT_OK) {
                /* Refused or out of memory: nothing is decided. */
                plan_done(ret);
                plan_init(ret);
        }
        return k;
}
