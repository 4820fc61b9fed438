/* SPDX-License-Identifier: MIT */
/* Sharded services in the controller: the shard layout and reshards
 * (controller/core/shardplan decides), the start gate and the daily start
 * budget (controller/core/budget decides), the shard map built from the
 * agents' ShardReports, and its alerts (shard-unowned, shard-duplicate,
 * shard-failed, budget-low) and shard-map events. Persisted in the store's
 * shard_state table whenever it changes. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "controller.h"
#include "events.pb-c.h"
#include "log.h"
#include "placement.h"
#include "shards.h"
#include "spec.h"
#include "util.h"

static ShardService *find(Controller *c, const char *service, size_t *ret_i) {
        for (size_t i = 0; i < c->n_shard_services; i++)
                if (streq(c->shard_services[i]->service, service)) {
                        if (ret_i)
                                *ret_i = i;
                        return c->shard_services[i];
                }
        return NULL;
}

static void holds_clear(ShardService *ss) {
        for (size_t i = 0; i < ss->n_holds; i++)
                rangelist_done(&ss->holds[i].shards);
        free(ss->holds);
        ss->holds = NULL;
        ss->n_holds = 0;
}

static ShardService *shard_service_free(ShardService *ss) {
        if (!ss)
                return NULL;
        free(ss->service);
        shard_layout_done(&ss->layout);
        reshard_free(ss->reshard);
        budget_ledger_done(&ss->ledger);
        start_gate_done(&ss->gate);
        free(ss->waiting);
        holds_clear(ss);
        free(ss->map_digest);
        free(ss);
        return NULL;
}

static bool reshard_active(const ShardService *ss) {
        return ss->reshard && ss->reshard->state != RESHARD_DONE &&
               ss->reshard->state != RESHARD_ABORTED;
}

static int save(Controller *c, ShardService *ss) {
        _cleanup_free_ char *layout = NULL, *reshard = NULL, *ledger = NULL;
        int r;

        r = shard_layout_format(&ss->layout, &layout);
        if (r >= 0 && ss->reshard)
                r = reshard_format(ss->reshard, &reshard);
        if (r >= 0 && ss->ledger.n_slots > 0)
                r = budget_ledger_format(&ss->ledger, &ledger);
        if (r >= 0)
                r = store_put_shard_state(c->store, ss->service, layout, reshard, ledger);
        if (r < 0) {
                c->counters.store_errors++;
                return log_error_errno(r, "Failed to persist the shard state of %s: %s",
                                       ss->service, store_error(c->store));
        }
        ss->dirty = false;
        return 0;
}

static int waiting_resize(ShardService *ss, uint32_t n, bool value) {
        bool *w = calloc(n + 1, sizeof(bool));

        if (!w)
                return -ENOMEM;
        for (uint32_t i = 0; i < n; i++)
                w[i] = value;
        free(ss->waiting);
        ss->waiting = w;
        ss->n_waiting = n;
        return 0;
}

static int add(Controller *c, ShardService *ss) {
        ShardService **p =
                realloc(c->shard_services, (c->n_shard_services + 1) * sizeof(ShardService *));

        if (!p)
                return -ENOMEM;
        c->shard_services = p;
        c->shard_services[c->n_shard_services++] = ss;
        return 0;
}

static ShardService *shard_service_new(const ServiceSpec *s) {
        ShardService *ss = calloc(1, sizeof(ShardService));

        if (!ss)
                return NULL;
        budget_ledger_init(&ss->ledger);
        ss->service = strdup(s->name);
        if (!ss->service || start_gate_init(&ss->gate, s->identify_concurrency,
                                            s->identify_interval, now_realtime_usec()) < 0)
                return shard_service_free(ss);
        return ss;
}

static int load_one(const char *service, const char *layout, const char *reshard,
                    const char *ledger, void *userdata) {
        Controller *c = userdata;
        const ServiceSpec *s = fleet_service(c, service);
        _cleanup_free_ char *error = NULL;
        ShardService *ss;
        int r;

        if (!s || s->kind != SERVICE_SHARDED) {
                log_warning("Stored shard state of %s, which is not a sharded service; ignoring.",
                            service);
                return 0;
        }
        ss = shard_service_new(s);
        if (!ss)
                return -ENOMEM;
        r = shard_layout_parse(layout, &ss->layout, &error);
        if (r >= 0 && reshard)
                r = reshard_parse(reshard, &ss->reshard, &error);
        if (r >= 0 && ledger)
                r = budget_ledger_parse(ledger, &ss->ledger, &error);
        /* What runs was let through the gate before the restart. */
        if (r >= 0)
                r = waiting_resize(ss, ss->layout.n_instances, false);
        if (r >= 0)
                r = add(c, ss);
        if (r < 0) {
                log_error("Stored shard state of %s does not load (%s); starting it afresh.",
                          service, error ? error : STRERROR(r));
                shard_service_free(ss);
                return r == -ENOMEM ? r : 0;
        }
        if (reshard_active(ss))
                log_info("Resuming reshard %" PRIu64 " of %s.", ss->reshard->id, service);
        return 0;
}

static int hold_add(ShardService *ss, uint32_t instance, bool new_copy, const RangeList *set,
                    usec_t now);

/* After a restart nothing says which copies were still identifying: the gate
 * is held for every copy until its host reports it ready (or settled), its
 * host is down, or HealthTimeout passes, so no start can overlap one that
 * was under way. */
static void hold_everything(ShardService *ss) {
        usec_t now = now_realtime_usec();

        for (uint32_t i = 0; i < ss->layout.n_instances; i++)
                if (hold_add(ss, i, false, &ss->layout.sets[i], now) >= 0)
                        start_gate_take(&ss->gate, &ss->layout.sets[i]);
        for (size_t i = 0; reshard_active(ss) && i < ss->reshard->n_items; i++) {
                const ReshardItem *it = &ss->reshard->items[i];
                if (it->state == RITEM_STARTING &&
                    hold_add(ss, it->instance, true, &it->to, now) >= 0)
                        start_gate_take(&ss->gate, &it->to);
        }
}

int shards_load(Controller *c) {
        int r = store_load_shard_states(c->store, load_one, c);

        if (r < 0)
                return log_error_errno(r, "Failed to load shard states: %s", store_error(c->store));
        for (size_t i = 0; i < c->n_shard_services; i++)
                hold_everything(c->shard_services[i]);
        return 0;
}

void shards_done(Controller *c) {
        for (size_t i = 0; i < c->n_shard_services; i++)
                shard_service_free(c->shard_services[i]);
        free(c->shard_services);
        c->shard_services = NULL;
        c->n_shard_services = 0;
}

ShardService *shards_service(Controller *c, const ServiceSpec *s) {
        ShardService *ss;

        if (!s || s->kind != SERVICE_SHARDED)
                return NULL;
        ss = find(c, s->name, NULL);
        if (ss)
                return ss;
        ss = shard_service_new(s);
        if (!ss)
                return NULL;
        /* A new sharded service: every instance starts through the gate. */
        if (shard_layout_default(s->shards, s->count, &ss->layout) < 0 ||
            waiting_resize(ss, s->count, true) < 0 || add(c, ss) < 0)
                return shard_service_free(ss);
        (void) save(c, ss);
        return ss;
}

void shards_forget(Controller *c, const char *service) {
        size_t i;
        ShardService *ss = find(c, service, &i);

        if (!ss)
                return;
        (void) store_delete_shard_state(c->store, service);
        shard_service_free(ss);
        c->shard_services[i] = c->shard_services[--c->n_shard_services];
}

/* ---- copies -------------------------------------------------------------- */

void shard_copy_done(ShardCopy *copy) {
        free(copy->unit);
        free(copy->shards);
        *copy = (ShardCopy){ 0 };
}

static const ReshardItem *reshard_item(const Reshard *r, uint32_t instance) {
        for (size_t i = 0; r && i < r->n_items; i++)
                if (r->items[i].instance == instance)
                        return &r->items[i];
        return NULL;
}

static int copy_make(const char *service, uint32_t instance, uint8_t slot, const RangeList *set,
                     uint32_t count, uint64_t epoch, bool running, ShardCopy *ret) {
        ShardCopy cp = { .shard_count = count, .epoch = epoch, .running = running };
        int r;

        r = shard_copy_unit(service, instance, slot, &cp.unit);
        if (r < 0)
                return r;
        cp.shards = rangelist_format(set);
        if (!cp.shards) {
                free(cp.unit);
                return -ENOMEM;
        }
        *ret = cp;
        return 0;
}

int shards_copies(Controller *c, const ServiceSpec *s, uint32_t instance, ShardCopy ret[2],
                  size_t *ret_n) {
        ShardService *ss = shards_service(c, s);
        const Reshard *rs;
        const ReshardItem *item;
        bool waiting;
        size_t n = 0;
        int r = 0;

        *ret_n = 0;
        if (!ss)
                return -ENOMEM;
        rs = reshard_active(ss) ? ss->reshard : NULL;
        item = reshard_item(rs, instance);
        waiting = instance < ss->n_waiting && ss->waiting[instance];
        if (item) {
                if (rangelist_count(&item->from) > 0 && item->state != RITEM_DONE)
                        r = copy_make(s->name, instance, item->from_slot, &item->from,
                                      rs->from_count, rs->from_epoch, !waiting, &ret[n++]);
                if (r >= 0 && rangelist_count(&item->to) > 0 && item->state != RITEM_PENDING)
                        r = copy_make(s->name, instance, item->to_slot, &item->to, rs->to_count,
                                      rs->to_epoch, true, &ret[n++]);
        } else if (instance < ss->layout.n_instances)
                r = copy_make(s->name, instance, ss->layout.slots[instance],
                              &ss->layout.sets[instance], ss->layout.shard_count, ss->layout.epoch,
                              !waiting, &ret[n++]);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        shard_copy_done(&ret[i]);
                return r;
        }
        *ret_n = n;
        return 0;
}

static void hold_release(ShardService *ss, size_t i, usec_t now) {
        start_gate_release(&ss->gate, &ss->holds[i].shards, now);
        rangelist_done(&ss->holds[i].shards);
        ss->holds[i] = ss->holds[--ss->n_holds];
        /* A bucket stays held while any other hold covers it (after a
         * restart every copy holds the gate at once). */
        for (size_t k = 0; k < ss->n_holds; k++)
                start_gate_take(&ss->gate, &ss->holds[k].shards);
}

static int hold_add(ShardService *ss, uint32_t instance, bool new_copy, const RangeList *set,
                    usec_t now) {
        ShardHold *p = realloc(ss->holds, (ss->n_holds + 1) * sizeof(ShardHold));

        if (!p)
                return -ENOMEM;
        ss->holds = p;
        p[ss->n_holds] = (ShardHold){ .instance = instance, .new_copy = new_copy, .since = now };
        rangelist_init(&p[ss->n_holds].shards);
        if (rangelist_copy(&p[ss->n_holds].shards, set) < 0)
                return -ENOMEM;
        ss->n_holds++;
        return 0;
}

/* Through the gate: taken, charged, held until ready. */
static void admit(ShardService *ss, uint32_t instance, bool new_copy, const RangeList *set,
                  usec_t now) {
        start_gate_take(&ss->gate, set);
        (void) budget_charge(&ss->ledger, now, rangelist_count(set));
        (void) hold_add(ss, instance, new_copy, set, now);
        ss->dirty = true;
}

void shards_placed(Controller *c, const ServiceSpec *s, uint32_t instance) {
        ShardService *ss = shards_service(c, s);

        if (!ss || instance >= ss->n_waiting)
                return;
        /* A copy moved while starting no longer holds its old place. */
        for (size_t i = 0; i < ss->n_holds; i++)
                if (ss->holds[i].instance == instance && !ss->holds[i].new_copy) {
                        hold_release(ss, i, now_realtime_usec());
                        break;
                }
        ss->waiting[instance] = true;
}

/* ---- readiness ----------------------------------------------------------- */

static const ShardCopyReport *report_of(Controller *c, const char *host, const char *unit) {
        Host *h = host ? host_table_get(&c->hosts, host) : NULL;
        HostView *v = h && h->alive ? h->userdata : NULL;

        for (size_t i = 0; v && i < v->n_shard_reports; i++)
                if (streq(v->shard_reports[i].unit, unit))
                        return &v->shard_reports[i];
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
static bool copy_ready(Controller *c, const char *host, const ShardCopy *cp, bool settled) {
        _cleanup_(rangelist_done) RangeList want = { 0 }, done = { 0 };
        const ShardCopyReport *rep = report_of(c, host, cp->unit);

        if (!rep || !rep->active || rep->epoch != cp->epoch)
                return false;
        if (rangelist_parse(&want, cp->shards) < 0 || !rangelist_equal(&want, &rep->assigned))
                return false;
        if (rangelist_copy(&done, &rep->ready) < 0 ||
            (settled && rangelist_union(&done, &rep->failed) < 0))
                return false;
        return covers(&done, &want);
}

static const char *host_of(Controller *c, const char *service, uint32_t instance) {
        const FleetInstance *fi = fleet_find_instance(c, service, instance);
        return fi ? fi->host : NULL;
}

/* Whether the live (or, want_new, the new) copy of `instance` is ready (or
 * settled: see copy_ready()). An instance with one copy has just that one. */
static bool serving_ready(Controller *c, const ServiceSpec *s, uint32_t instance, const char *host,
                          bool want_new, bool settled) {
        ShardCopy copies[2];
        size_t n = 0;
        bool ready = false;

        if (shards_copies(c, s, instance, copies, &n) < 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                bool is_new = n == 2 ? i == 1 : false;
                if (is_new == want_new || n == 1)
                        ready = copy_ready(c, host, &copies[i], settled);
        }
        for (size_t i = 0; i < n; i++)
                shard_copy_done(&copies[i]);
        return ready;
}

bool shards_instance_ready(Controller *c, const ServiceSpec *s, uint32_t instance,
                           const char *host) {
        return serving_ready(c, s, instance, host, false, false);
}

bool shards_may_restart(Controller *c, const ServiceSpec *s, uint32_t instance, bool take) {
        ShardService *ss = shards_service(c, s);
        usec_t now = now_realtime_usec();

        if (!ss || reshard_active(ss) || instance >= ss->layout.n_instances)
                return false;
        if (!start_gate_may_start(&ss->gate, &ss->layout.sets[instance], now))
                return false;
        if (take)
                admit(ss, instance, false, &ss->layout.sets[instance], now);
        return true;
}

void shards_charge_restarts(Controller *c, const char *host, const char *unit, uint32_t restarts) {
        for (size_t i = 0; i < c->n_shard_services; i++) {
                ShardService *ss = c->shard_services[i];
                const ShardCopyReport *rep;
                uint32_t instance;
                uint8_t slot;
                uint64_t cost;

                if (shard_copy_parse(ss->service, unit, &instance, &slot) < 0)
                        continue;
                rep = report_of(c, host, unit);
                cost = rep ? rangelist_count(&rep->assigned)
                       : instance < ss->layout.n_instances
                               ? rangelist_count(&ss->layout.sets[instance])
                               : 0;
                (void) budget_charge(&ss->ledger, now_realtime_usec(), cost * restarts);
                ss->dirty = true;
                log_info("%s on %s restarted %u time(s) by itself: %" PRIu64
                         " identifies charged to %s.",
                         unit, host, restarts, cost * restarts, ss->service);
                return;
        }
}

/* ---- reports ------------------------------------------------------------- */

static void report_done(ShardCopyReport *r) {
        free(r->unit);
        free(r->service);
        rangelist_done(&r->assigned);
        rangelist_done(&r->ready);
        rangelist_done(&r->connecting);
        rangelist_done(&r->failed);
}

void shard_reports_clear(HostView *v) {
        for (size_t i = 0; i < v->n_shard_reports; i++)
                report_done(&v->shard_reports[i]);
        free(v->shard_reports);
        v->shard_reports = NULL;
        v->n_shard_reports = 0;
}

/* What the controller itself placed as `unit` on `host`: the copy's shards
 * and epoch. -ENOENT if that unit of that instance is not placed there. */
static int placed_copy(Controller *c, const char *host, const char *service, uint32_t instance,
                       const char *unit, RangeList *ret_shards, uint64_t *ret_epoch) {
        const ServiceSpec *s = fleet_service(c, service);
        const FleetInstance *fi = fleet_find_instance(c, service, instance);
        ShardCopy copies[2];
        size_t n = 0;
        int r = -ENOENT;

        if (!s || s->kind != SERVICE_SHARDED || !fi || !streq(fi->host, host))
                return -ENOENT;
        if (shards_copies(c, s, instance, copies, &n) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (r == -ENOENT && streq(copies[i].unit, unit)) {
                        r = rangelist_parse(ret_shards, copies[i].shards);
                        *ret_epoch = copies[i].epoch;
                }
        for (size_t i = 0; i < n; i++)
                shard_copy_done(&copies[i]);
        return r;
}

/* A host vouches only for what the controller placed there: a copy it was
 * not given counts for nothing, and of a copy it was given only the shards
 * the controller assigned to it (in the epoch it assigned them) count,
 * whatever the report claims. Returns -ENOENT for a copy not placed there. */
static int trust_report(Controller *c, const char *host, ShardCopyReport *r) {
        _cleanup_(rangelist_done) RangeList mine = { 0 };
        uint64_t epoch = 0;
        size_t claimed;
        int k;

        k = placed_copy(c, host, r->service, r->instance, r->unit, &mine, &epoch);
        if (k < 0)
                return k;
        if (r->epoch != epoch)
                rangelist_clear(&mine);
        claimed = rangelist_count(&r->ready) + rangelist_count(&r->connecting) +
                  rangelist_count(&r->failed) + rangelist_count(&r->assigned);
        if (rangelist_intersect(&r->assigned, &mine) < 0 ||
            rangelist_intersect(&r->ready, &mine) < 0 ||
            rangelist_intersect(&r->connecting, &mine) < 0 ||
            rangelist_intersect(&r->failed, &mine) < 0)
                return -ENOMEM;
        return claimed > rangelist_count(&r->ready) + rangelist_count(&r->connecting) +
                                       rangelist_count(&r->failed) + rangelist_count(&r->assigned)
                       ? 1
                       : 0;
}

void shards_handle_report(Controller *c, HostView *v, const Baton__V1__ShardReport *rep) {
        ShardCopyReport *next = calloc(rep->n_instances + 1, sizeof(ShardCopyReport));
        size_t n = 0;
        int k;

        if (!next)
                return;
        for (size_t i = 0; i < rep->n_instances; i++) {
                const Baton__V1__ShardInstanceReport *in = rep->instances[i];
                ShardCopyReport *r = &next[n];

                rangelist_init(&r->assigned);
                rangelist_init(&r->ready);
                rangelist_init(&r->connecting);
                rangelist_init(&r->failed);
                r->unit = strdup(strempty(in->unit));
                r->service = strdup(strempty(in->service));
                r->instance = in->instance;
                r->epoch = in->shard_epoch;
                r->shard_count = in->shard_count;
                r->active = streq_ptr(in->active_state, "active");
                /* Validated by the codec as range lists; a bad one owns nothing. */
                if (!r->unit || !r->service || rangelist_parse(&r->assigned, in->assigned) < 0 ||
                    rangelist_parse(&r->ready, in->ready) < 0 ||
                    rangelist_parse(&r->connecting, in->connecting) < 0 ||
                    rangelist_parse(&r->failed, in->failed) < 0) {
                        log_warning("Shard report of %s from %s does not parse; ignoring it.",
                                    strna(in->unit), strna(rep->host));
                        report_done(r);
                        continue;
                }
                k = trust_report(c, rep->host, r);
                if (k != 0) {
                        /* Right after a move or a reshard step a host may still
                         * report what it ran before: common, so not a warning,
                         * but counted. */
                        c->counters.refused[REFUSE_NOT_OWNED]++;
                        log_debug("Shard report of %s from %s: %s.", r->unit, rep->host,
                                  k == -ENOENT ? "not placed there, ignored"
                                  : k > 0      ? "claims shards it was not assigned, cut to its "
                                                 "assignment"
                                               : "out of memory, ignored");
                        if (k < 0) {
                                report_done(r);
                                continue;
                        }
                }
                n++;
        }
        shard_reports_clear(v);
        v->shard_reports = next;
        v->n_shard_reports = n;
}

/* ---- budget -------------------------------------------------------------- */

BudgetVerdict shards_budget_check(Controller *c, const ServiceSpec *s, uint64_t cost) {
        ShardService *ss = shards_service(c, s);
        uint64_t spent = ss ? budget_spent(&ss->ledger, now_realtime_usec()) : 0;
        uint32_t total = ss ? ss->layout.shard_count : s->shards;

        return budget_check(s->daily_start_budget, budget_reserve(s->daily_start_budget, total),
                            spent, cost);
}

static char *verdict_text(const BudgetVerdict *v) {
        char *s = NULL;

        if (asprintf(&s,
                     "it would spend %" PRIu64 " identifies; %" PRIu64 " of the daily %" PRIu64
                     " are spent in the last 24 h and %" PRIu64 " must stay in reserve, so %" PRIu64
                     " would remain",
                     v->cost, v->spent, v->limit, v->reserve, v->remaining_after) < 0)
                return NULL;
        return s;
}

static json_t *verdict_json(const BudgetVerdict *v) {
        return json_pack("{s:I, s:I, s:I, s:I, s:I, s:b}", "daily_limit", (json_int_t) v->limit,
                         "spent_24h", (json_int_t) v->spent, "reserve", (json_int_t) v->reserve,
                         "cost", (json_int_t) v->cost, "remaining_after",
                         (json_int_t) MIN(v->remaining_after, (uint64_t) INT64_MAX), "allowed",
                         v->allowed);
}

/* ---- reshard ------------------------------------------------------------- */

Reshard *shards_reshard_of(Controller *c, const char *service) {
        ShardService *ss = find(c, service, NULL);
        return ss && reshard_active(ss) ? ss->reshard : NULL;
}

json_t *reshard_json(const Reshard *r) {
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
                json_array_append_new(items, json_pack("{s:i, s:s, s:s, s:s}", "instance",
                                                       (int) it->instance, "state",
                                                       reshard_item_state_to_string(it->state),
                                                       "from", strempty(from), "to", strempty(to)));
        }
        return json_pack(
                "{s:I, s:s, s:s, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:i, s:i, s:o, s:s?}", "id",
                (json_int_t) r->id, "service", r->service, "state",
                reshard_state_to_string(r->state), "from_instances", (int) r->from_instances,
                "to_instances", (int) r->to_instances, "from_shards", (int) r->from_count,
                "to_shards", (int) r->to_count, "from_epoch", (json_int_t) r->from_epoch,
                "to_epoch", (json_int_t) r->to_epoch, "identifies", (json_int_t) reshard_cost(r),
                "done", (int) done, "total", (int) r->n_items, "items", items, "reason", r->reason);
}

/* Would the service fit with `count` instances? The reason if not. */
static int capacity_check(Controller *c, const ServiceSpec *s, uint32_t count, char **ret_error) {
        _cleanup_(placement_result_done) PlacementResult res = { 0 };
        _cleanup_free_ ServiceSpec **next = calloc(c->n_services + 1, sizeof(ServiceSpec *));
        _cleanup_(service_spec_freep) ServiceSpec *copy = NULL;
        int r;

        if (!next)
                return -ENOMEM;
        r = service_spec_copy(s, &copy);
        if (r < 0)
                return r;
        copy->count = count;
        for (size_t i = 0; i < c->n_services; i++)
                next[i] = c->services[i] == s ? copy : c->services[i];
        r = fleet_compute(c, next, c->n_services, &res);
        if (r < 0)
                return r;
        for (size_t i = 0; i < res.n_problems; i++)
                if (streq(res.problems[i].service, s->name)) {
                        if (asprintf(ret_error, "%u instances of %s do not fit: %s", count, s->name,
                                     res.problems[i].reason) < 0)
                                return -ENOMEM;
                        return -ENOSPC;
                }
        return 0;
}

static int set_count(Controller *c, ServiceSpec *s, uint32_t count) {
        int r;

        if (s->count == count)
                return 0;
        r = store_put_service(c->store, s->name, s->file_name, s->unit_text, count,
                              now_realtime_usec());
        if (r < 0)
                return log_error_errno(r, "Failed to store the instance count of %s: %s", s->name,
                                       store_error(c->store));
        s->count = count;
        return 0;
}

int shards_reshard(Controller *c, const char *service, uint32_t instances, uint32_t shards,
                   bool dry_run, json_t **ret_plan, char **ret_error) {
        ServiceSpec *s = fleet_service(c, service);
        _cleanup_(reshard_freep) Reshard *rs = NULL;
        ShardService *ss;
        BudgetVerdict verdict;
        usec_t duration = 0;
        uint64_t identifies = 0, moves = 0;
        uint32_t n_to, to_count;
        int r;

        if (!s)
                return -ENOENT;
        if (s->kind != SERVICE_SHARDED)
                return error_set(ret_error, -EINVAL, "%s is %s, not sharded", s->name,
                                 service_kind_to_string(s->kind));
        ss = shards_service(c, s);
        if (!ss)
                return -ENOMEM;
        if (reshard_active(ss))
                return error_set(ret_error, -EBUSY,
                                 "reshard %" PRIu64 " of %s is under way (%s); see `batonctl "
                                 "shards %s`",
                                 ss->reshard->id, s->name,
                                 reshard_state_to_string(ss->reshard->state), s->name);
        if (rollouts_active(c, s->name))
                return error_set(ret_error, -EBUSY, "a rolling restart of %s is under way",
                                 s->name);
        n_to = instances > 0 ? instances : ss->layout.n_instances;
        to_count = shards > 0 ? shards : ss->layout.shard_count;
        if (n_to < s->min_replicas || n_to > s->max_replicas)
                return error_set(ret_error, -EINVAL,
                                 "%s: %u instances is outside MinReplicas=%u…MaxReplicas=%u",
                                 s->name, n_to, s->min_replicas, s->max_replicas);
        if (n_to > to_count)
                return error_set(ret_error, -EINVAL,
                                 "%s: %u instances cannot share %u shards (each needs one)",
                                 s->name, n_to, to_count);
        r = reshard_new(s->name, c->next_rollout_id, &ss->layout, n_to, to_count,
                        s->max_unavailable, s->health_timeout, &rs);
        if (r == -EALREADY)
                return error_set(ret_error, r, "%s already has %u instances over %u shards",
                                 s->name, n_to, to_count);
        if (r < 0)
                return error_set(ret_error, r, "cannot plan the reshard of %s: %s", s->name,
                                 STRERROR(r));

        identifies = reshard_cost(rs);
        {
                _cleanup_free_ const RangeList **sets =
                        calloc(rs->n_items + 1, sizeof(RangeList *));
                size_t n = 0;

                if (!sets)
                        return -ENOMEM;
                for (size_t i = 0; i < rs->n_items; i++) {
                        RangeList moved;

                        if (rangelist_count(&rs->items[i].to) > 0)
                                sets[n++] = &rs->items[i].to;
                        rangelist_init(&moved);
                        if (rangelist_copy(&moved, &rs->items[i].to) >= 0 &&
                            rangelist_subtract(&moved, &rs->items[i].from) >= 0)
                                moves += rangelist_count(&moved);
                        rangelist_done(&moved);
                }
                uint64_t unused;
                r = start_gate_estimate(s->identify_concurrency, s->identify_interval, sets, n,
                                        &duration, &unused);
                if (r < 0)
                        return r;
        }
        /* A new total moves every shard to the new set. */
        if (rs->to_epoch != rs->from_epoch)
                moves = to_count;
        verdict = shards_budget_check(c, s, identifies);
        r = capacity_check(c, s, MAX(n_to, ss->layout.n_instances), ret_error);
        if (r < 0)
                return r;
        if (!verdict.allowed && !dry_run) {
                _cleanup_free_ char *why = verdict_text(&verdict);
                return error_set(ret_error, -EDQUOT, "%s: not enough start budget: %s", s->name,
                                 strna(why));
        }

        if (ret_plan)
                *ret_plan = json_pack(
                        "{s:s, s:b, s:{s:i, s:i, s:I}, s:{s:i, s:i, s:I}, s:I, s:I, s:I, s:o, "
                        "s:o}",
                        "service", s->name, "dry_run", dry_run, "from", "instances",
                        (int) ss->layout.n_instances, "shards", (int) ss->layout.shard_count,
                        "epoch", (json_int_t) ss->layout.epoch, "to", "instances", (int) n_to,
                        "shards", (int) to_count, "epoch", (json_int_t) rs->to_epoch, "identifies",
                        (json_int_t) identifies, "estimated_duration_us", (json_int_t) duration,
                        "shards_moving", (json_int_t) moves, "budget", verdict_json(&verdict),
                        "reshard", reshard_json(rs));
        if (dry_run)
                return 0;

        /* The count, the reshard and the placement they cause in one
         * transaction; undone in memory unless it commits. */
        {
                _cleanup_(fleet_change_done) FleetChange change = { 0 };
                Reshard *before = ss->reshard;
                uint32_t count_before = s->count, count = MAX(n_to, ss->layout.n_instances);

                s->count = count;
                ss->reshard = rs;
                r = fleet_change_prepare(c, c->services, c->n_services, &change);
                if (r >= 0) {
                        r = store_begin(c->store);
                        if (r >= 0 && count != count_before)
                                r = store_put_service(c->store, s->name, s->file_name, s->unit_text,
                                                      count, now_realtime_usec());
                        if (r >= 0)
                                r = save(c, ss);
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
                        s->count = count_before;
                        ss->reshard = before;
                        ss->dirty = true;
                        /* -EIO whatever SQLite said (a lock is -EBUSY, which means
                         * "one under way" here): the caller reports a failure. */
                        return error_set(ret_error, r == -ENOMEM ? r : -EIO,
                                         "cannot store the reshard: %s; nothing changed",
                                         r == -ENOMEM ? "out of memory" : store_error(c->store));
                }
                TAKE_PTR(rs);
                reshard_free(before);
                c->next_rollout_id++;
                fleet_change_adopt(c, &change, "reshard");
        }
        log_info("Reshard %" PRIu64 " of %s: %u → %u instances, %u → %u shards, %" PRIu64
                 " identifies.",
                 ss->reshard->id, s->name, ss->layout.n_instances, n_to, ss->layout.shard_count,
                 to_count, identifies);
        return 0;
}

int shards_reshard_control(Controller *c, const char *service, const char *action) {
        ShardService *ss = find(c, service, NULL);
        int r;

        _cleanup_free_ char *before = NULL, *error = NULL;
        Reshard *was = NULL;

        if (!ss || !reshard_active(ss))
                return 0;
        r = reshard_format(ss->reshard, &before);
        if (r < 0)
                return r;
        if (streq(action, "pause"))
                r = reshard_pause(ss->reshard, NULL);
        else if (streq(action, "resume"))
                r = reshard_resume(ss->reshard);
        else if (streq(action, "abort"))
                r = reshard_abort(ss->reshard, NULL);
        else
                return -EINVAL;
        if (r < 0)
                return 0; /* not in a state for it */
        r = save(c, ss);
        if (r < 0) {
                /* Not stored: not done. Back to what is on disk. */
                if (reshard_parse(before, &was, &error) >= 0) {
                        reshard_free(ss->reshard);
                        ss->reshard = was;
                }
                return r;
        }
        shards_step(c);
        return 1;
}

/* ---- the map ------------------------------------------------------------- */

/* Ready owners per shard of `epoch` over every copy reported on a live host. */
static int count_owners(Controller *c, const char *service, uint64_t epoch, uint32_t total,
                        uint8_t *owners, RangeList *failed) {
        for (size_t h = 0; h < c->hosts.n_hosts; h++) {
                const Host *host = c->hosts.hosts[h];
                const HostView *v = host->alive ? host->userdata : NULL;

                for (size_t i = 0; v && i < v->n_shard_reports; i++) {
                        const ShardCopyReport *rep = &v->shard_reports[i];

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

/* The serving epoch and total: the live layout's, until a new-total reshard
 * cuts over (its items are then all DONE). */
static void serving(const ShardService *ss, uint64_t *ret_epoch, uint32_t *ret_count) {
        const Reshard *r = reshard_active(ss) ? ss->reshard : NULL;
        bool cut = r && r->to_epoch != r->from_epoch && r->n_items > 0;

        for (size_t i = 0; cut && i < r->n_items; i++)
                cut = r->items[i].state == RITEM_DONE;
        *ret_epoch = cut ? r->to_epoch : ss->layout.epoch;
        *ret_count = cut ? r->to_count : ss->layout.shard_count;
}

static const char *shard_state_word(const ShardCopyReport *rep, uint32_t shard) {
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

json_t *shards_map_json(Controller *c, const ServiceSpec *s) {
        ShardService *ss = shards_service(c, s);
        _cleanup_free_ uint8_t *owners = NULL;
        _cleanup_(rangelist_done) RangeList failed = { 0 }, unowned = { 0 }, dup = { 0 };
        _cleanup_free_ char *failed_text = NULL, *unowned_text = NULL, *dup_text = NULL;
        json_t *copies = json_array(), *shard_list = json_array();
        uint64_t epoch;
        uint32_t total, ready = 0;
        usec_t now = now_realtime_usec();
        BudgetVerdict budget;

        if (!ss || !copies || !shard_list)
                goto fail;
        serving(ss, &epoch, &total);
        owners = calloc(total + 1, 1);
        if (!owners || count_owners(c, s->name, epoch, total, owners, &failed) < 0)
                goto fail;

        for (uint32_t i = 0; i < s->count; i++) {
                const char *host = host_of(c, s->name, i);
                ShardCopy cp[2];
                size_t n = 0;

                if (shards_copies(c, s, i, cp, &n) < 0)
                        goto fail;
                for (size_t k = 0; k < n; k++) {
                        const ShardCopyReport *rep = report_of(c, host, cp[k].unit);
                        _cleanup_(rangelist_done) RangeList set = { 0 };
                        _cleanup_free_ char *rd = rep ? rangelist_format(&rep->ready) : NULL,
                                            *cn = rep ? rangelist_format(&rep->connecting) : NULL,
                                            *fl = rep ? rangelist_format(&rep->failed) : NULL;

                        json_array_append_new(
                                copies,
                                json_pack("{s:i, s:s, s:s?, s:s, s:I, s:s, s:i, s:b, s:s, s:s, "
                                          "s:s, s:s}",
                                          "instance", (int) i, "unit", cp[k].unit, "host", host,
                                          "role", n == 2 && k == 1 ? "new" : "live", "epoch",
                                          (json_int_t) cp[k].epoch, "shards", cp[k].shards,
                                          "shard_count", (int) cp[k].shard_count, "running",
                                          cp[k].running, "active_state",
                                          !rep          ? "unknown"
                                          : rep->active ? "active"
                                                        : "inactive",
                                          "ready", strempty(rd), "connecting", strempty(cn),
                                          "failed", strempty(fl)));
                        /* Per shard of the serving epoch: its (first) owner. */
                        if (cp[k].epoch == epoch && rangelist_parse(&set, cp[k].shards) >= 0)
                                for (size_t g = 0; g < set.n_ranges; g++)
                                        for (uint32_t sh = set.ranges[g].lo;
                                             sh <= set.ranges[g].hi && sh < total; sh++)
                                                json_array_append_new(
                                                        shard_list,
                                                        json_pack("{s:i, s:i, s:s?, s:s, s:I, "
                                                                  "s:i}",
                                                                  "shard", (int) sh, "instance",
                                                                  (int) i, "host", host, "state",
                                                                  shard_state_word(rep, sh),
                                                                  "epoch", (json_int_t) epoch,
                                                                  "ready_owners",
                                                                  (int) owners[sh]));
                }
                for (size_t k = 0; k < n; k++)
                        shard_copy_done(&cp[k]);
        }
        for (uint32_t sh = 0; sh < total; sh++) {
                ready += owners[sh] > 0;
                if (owners[sh] == 0)
                        (void) rangelist_add(&unowned, sh);
                else if (owners[sh] > 1)
                        (void) rangelist_add(&dup, sh);
        }
        failed_text = rangelist_format(&failed);
        unowned_text = rangelist_format(&unowned);
        dup_text = rangelist_format(&dup);
        budget = budget_check(s->daily_start_budget,
                              budget_reserve(s->daily_start_budget, ss->layout.shard_count),
                              budget_spent(&ss->ledger, now), 0);
        return json_pack("{s:s, s:I, s:i, s:i, s:i, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "service",
                         s->name, "epoch", (json_int_t) epoch, "shard_count", (int) total,
                         "instances", (int) ss->layout.n_instances, "ready", (int) ready, "unowned",
                         strempty(unowned_text), "owned_twice", strempty(dup_text), "failed",
                         strempty(failed_text), "reshard",
                         reshard_active(ss) ? reshard_json(ss->reshard) : json_null(), "budget",
                         verdict_json(&budget), "copies", copies, "shards", shard_list);
fail:
        json_decref(copies);
        json_decref(shard_list);
        return NULL;
}

uint32_t shards_summary_total(Controller *c, const ServiceSpec *s) {
        ShardService *ss = shards_service(c, s);
        uint64_t epoch;
        uint32_t total = s->shards;

        if (ss)
                serving(ss, &epoch, &total);
        return total;
}

json_t *shards_summary_json(Controller *c, const ServiceSpec *s) {
        ShardService *ss = s->kind == SERVICE_SHARDED ? shards_service(c, s) : NULL;
        _cleanup_free_ uint8_t *owners = NULL;
        uint64_t epoch;
        uint32_t total, ready = 0;

        if (!ss)
                return json_null();
        serving(ss, &epoch, &total);
        owners = calloc(total + 1, 1);
        if (!owners || count_owners(c, s->name, epoch, total, owners, NULL) < 0)
                return json_null();
        for (uint32_t sh = 0; sh < total; sh++)
                ready += owners[sh] > 0;
        return json_pack("{s:I, s:i, s:i, s:b}", "epoch", (json_int_t) epoch, "total", (int) total,
                         "ready", (int) ready, "resharding", reshard_active(ss));
}

/* ---- the step ------------------------------------------------------------ */

typedef struct MayStartContext {
        ShardService *ss;
        const Reshard *r;
        usec_t now;
} MayStartContext;

static bool reshard_may_start(const RangeList *shards, void *userdata) {
        MayStartContext *x = userdata;

        if (!start_gate_may_start(&x->ss->gate, shards, x->now))
                return false;
        /* The item is the first PENDING one with this set (items start in order). */
        for (size_t i = 0; i < x->r->n_items; i++)
                if (x->r->items[i].state == RITEM_PENDING &&
                    rangelist_equal(&x->r->items[i].to, shards)) {
                        admit(x->ss, x->r->items[i].instance, true, shards, x->now);
                        return true;
                }
        return false;
}

static void release_ready(Controller *c, ShardService *ss, const ServiceSpec *s, usec_t now) {
        for (size_t i = 0; i < ss->n_holds;) {
                const ShardHold *hd = &ss->holds[i];
                const char *host = host_of(c, s->name, hd->instance);
                Host *h = host ? host_table_get(&c->hosts, host) : NULL;

                /* Nothing identifies for us on a host that is down. */
                if (!h || !h->alive ||
                    serving_ready(c, s, hd->instance, host, hd->new_copy, true) ||
                    now - hd->since > s->health_timeout)
                        hold_release(ss, i, now);
                else
                        i++;
        }
}

/* Lets the next waiting live copies through the gate, in instance order. */
static bool admit_waiting(Controller *c, ShardService *ss, const ServiceSpec *s, usec_t now) {
        bool any = false;

        if (reshard_active(ss))
                return false;
        for (uint32_t i = 0; i < ss->n_waiting && i < ss->layout.n_instances; i++) {
                if (!ss->waiting[i] || !host_of(c, s->name, i))
                        continue;
                if (!start_gate_may_start(&ss->gate, &ss->layout.sets[i], now))
                        break;
                admit(ss, i, false, &ss->layout.sets[i], now);
                ss->waiting[i] = false;
                any = true;
                log_info("Starting %s@%u (%" PRIu64 " shards) through the start gate.", s->name, i,
                         rangelist_count(&ss->layout.sets[i]));
        }
        return any;
}

/* Returns true when the fleet must be reconciled (the instance count changed). */
static bool step_reshard(Controller *c, ShardService *ss, ServiceSpec *s, usec_t now,
                         bool *ret_sync) {
        Reshard *r = ss->reshard;
        _cleanup_free_ ReshardObserved *obs = NULL;
        _cleanup_free_ ReshardAction *actions = NULL;
        _cleanup_free_ char *before = NULL, *after = NULL;
        size_t n, max;
        bool reconcile = false;

        if (!r)
                return false;
        max = 2 * r->n_items + 3;
        obs = calloc(r->n_items + 1, sizeof(ReshardObserved));
        actions = calloc(max, sizeof(ReshardAction));
        if (!obs || !actions)
                return false;
        for (size_t i = 0; i < r->n_items; i++) {
                const char *host = host_of(c, s->name, r->items[i].instance);
                obs[i] = (ReshardObserved){
                        .instance = r->items[i].instance,
                        .new_ready = host && r->items[i].state == RITEM_STARTING &&
                                     serving_ready(c, s, r->items[i].instance, host, true, false),
                };
        }
        (void) reshard_format(r, &before);
        n = reshard_step(r, obs, r->n_items, now, reshard_may_start,
                         &(MayStartContext){ ss, r, now }, actions, max);
        (void) reshard_format(r, &after);
        if (!streq_ptr(before, after))
                ss->dirty = true;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *summary = NULL;

                switch (actions[i].kind) {
                case RESHARD_ACTION_START:
                        log_info("Reshard %" PRIu64 ": starting the new copy of %s@%u.", r->id,
                                 s->name, actions[i].instance);
                        *ret_sync = true;
                        break;
                case RESHARD_ACTION_RETIRE:
                        log_info("Reshard %" PRIu64 ": retiring the old copy of %s@%u.", r->id,
                                 s->name, actions[i].instance);
                        *ret_sync = true;
                        break;
                case RESHARD_ACTION_DISCARD:
                        *ret_sync = true;
                        break;
                case RESHARD_ACTION_CUTOVER:
                        log_info("Reshard %" PRIu64 ": cut-over of %s to epoch %" PRIu64 ".", r->id,
                                 s->name, r->to_epoch);
                        *ret_sync = true;
                        break;
                case RESHARD_ACTION_ALERT:
                        if (asprintf(&summary, "reshard %" PRIu64 " of %s paused: %s", r->id,
                                     s->name, strna(r->reason)) >= 0)
                                (void) alert_raise(c, "rollout-failed",
                                                   BATON__V1__SEVERITY__SEVERITY_CRITICAL, s->name,
                                                   NULL, summary);
                        break;
                case RESHARD_ACTION_RESOLVE:
                        if (asprintf(&summary, "reshard %" PRIu64 " of %s resumed", r->id,
                                     s->name) >= 0)
                                (void) alert_resolve(c, "rollout-failed", s->name, NULL, summary);
                        break;
                default:
                        break;
                }
        }

        if (r->state == RESHARD_DONE) {
                ShardLayout next = { 0 };

                if (reshard_result(r, &ss->layout, &next) >= 0) {
                        shard_layout_done(&ss->layout);
                        ss->layout = next;
                        (void) waiting_resize(ss, next.n_instances, false);
                        (void) set_count(c, s, next.n_instances);
                        log_info("Reshard %" PRIu64 " of %s is done: %u instances, %u shards, "
                                 "epoch %" PRIu64 ".",
                                 r->id, s->name, next.n_instances, next.shard_count, next.epoch);
                } else
                        log_error("Reshard %" PRIu64 " of %s is done but its result does not "
                                  "apply; keeping the old layout.",
                                  r->id, s->name);
                ss->reshard = reshard_free(ss->reshard);
                ss->dirty = true;
                reconcile = *ret_sync = true;
        } else if (r->state == RESHARD_ABORTED && !r->alert_raised) {
                (void) set_count(c, s, ss->layout.n_instances);
                ss->reshard = reshard_free(ss->reshard);
                ss->dirty = true;
                reconcile = *ret_sync = true;
        }
        return reconcile;
}

static void alert_level(Controller *c, const char *kind, int severity, const char *service, bool on,
                        const char *raise_text, const char *resolve_text) {
        if (on)
                (void) alert_raise(c, kind, severity, service, NULL, raise_text);
        else
                (void) alert_resolve(c, kind, service, NULL, resolve_text);
}

static void check_alerts(Controller *c, ShardService *ss, const ServiceSpec *s, usec_t now) {
        _cleanup_free_ uint8_t *owners = NULL;
        _cleanup_(rangelist_done) RangeList failed = { 0 }, unowned = { 0 }, dup = { 0 },
                                            excused = { 0 };
        _cleanup_free_ char *a = NULL, *b = NULL, *text = NULL;
        uint64_t epoch, spent;
        uint32_t total, limit = s->daily_start_budget;
        bool low;

        serving(ss, &epoch, &total);
        owners = calloc(total + 1, 1);
        if (!owners || count_owners(c, s->name, epoch, total, owners, &failed) < 0)
                return;
        /* Shards whose owner is starting or waiting for the gate are expected down. */
        for (uint32_t i = 0; i < ss->n_waiting && i < ss->layout.n_instances; i++)
                if (ss->waiting[i])
                        (void) rangelist_union(&excused, &ss->layout.sets[i]);
        for (size_t i = 0; i < ss->n_holds; i++)
                (void) rangelist_union(&excused, &ss->holds[i].shards);
        for (uint32_t sh = 0; sh < total; sh++) {
                if (owners[sh] == 0 && !rangelist_contains(&excused, sh))
                        (void) rangelist_add(&unowned, sh);
                if (owners[sh] > 1)
                        (void) rangelist_add(&dup, sh);
        }

        if (rangelist_count(&unowned) == 0)
                ss->unowned_since = 0;
        else if (ss->unowned_since == 0)
                ss->unowned_since = now;
        text = rangelist_format(&unowned);
        if (asprintf(&a, "%" PRIu64 " shard(s) of %s without a ready owner for %" PRIu64 "s: %s",
                     rangelist_count(&unowned), s->name,
                     (uint64_t) (ss->unowned_since ? (now - ss->unowned_since) / USEC_PER_SEC : 0),
                     strempty(text)) >= 0 &&
            asprintf(&b, "every shard of %s has a ready owner", s->name) >= 0) {
                if (ss->unowned_since && now - ss->unowned_since >= c->config.shard_unowned_after)
                        alert_level(c, "shard-unowned", BATON__V1__SEVERITY__SEVERITY_CRITICAL,
                                    s->name, true, a, b);
                else if (!ss->unowned_since)
                        alert_level(c, "shard-unowned", BATON__V1__SEVERITY__SEVERITY_CRITICAL,
                                    s->name, false, a, b);
        }
        a = mfree(a);
        b = mfree(b);
        text = mfree(text);

        /* Two ready owners in one epoch are a handoff while a reshard runs. */
        text = rangelist_format(&dup);
        if (asprintf(&a,
                     "%" PRIu64 " shard(s) of %s have two ready owners in epoch %" PRIu64
                     " outside a handoff: %s",
                     rangelist_count(&dup), s->name, epoch, strempty(text)) >= 0 &&
            asprintf(&b, "no shard of %s has two owners", s->name) >= 0)
                alert_level(c, "shard-duplicate", BATON__V1__SEVERITY__SEVERITY_CRITICAL, s->name,
                            rangelist_count(&dup) > 0 && !reshard_active(ss), a, b);
        a = mfree(a);
        b = mfree(b);
        text = mfree(text);

        text = rangelist_format(&failed);
        if (asprintf(&a, "identify failed for %" PRIu64 " shard(s) of %s: %s",
                     rangelist_count(&failed), s->name, strempty(text)) >= 0 &&
            asprintf(&b, "no identify of %s is failing", s->name) >= 0)
                alert_level(c, "shard-failed", BATON__V1__SEVERITY__SEVERITY_WARNING, s->name,
                            rangelist_count(&failed) > 0, a, b);
        a = mfree(a);
        b = mfree(b);

        spent = budget_spent(&ss->ledger, now);
        low = budget_low(limit, budget_reserve(limit, ss->layout.shard_count), spent,
                         ss->budget_low);
        if (low != ss->budget_low &&
            asprintf(&a, "%s has spent %" PRIu64 " of its daily %u identifies", s->name, spent,
                     limit) >= 0) {
                alert_level(c, "budget-low", BATON__V1__SEVERITY__SEVERITY_WARNING, s->name, low, a,
                            a);
                ss->budget_low = low;
        }
}

/* The ownership part of the map: who should own what, where. */
static char *map_digest(Controller *c, const ServiceSpec *s) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        if (!f)
                return NULL;
        for (uint32_t i = 0; i < s->count; i++) {
                ShardCopy cp[2];
                size_t n = 0;

                if (shards_copies(c, s, i, cp, &n) < 0)
                        continue;
                for (size_t k = 0; k < n; k++) {
                        fprintf(f, "%s@%s:%" PRIu64 ":%s:%d;", cp[k].unit,
                                strna(host_of(c, s->name, i)), cp[k].epoch, cp[k].shards,
                                cp[k].running);
                        shard_copy_done(&cp[k]);
                }
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

static void publish_map(Controller *c, ShardService *ss, const ServiceSpec *s) {
        _cleanup_free_ char *d = map_digest(c, s), *detail = NULL, *summary = NULL;
        json_t *doc;
        uint64_t epoch;
        uint32_t total;

        if (!d || streq_ptr(d, ss->map_digest))
                return;
        doc = shards_map_json(c, s);
        if (doc) {
                /* Consumers route by owner: the per-shard list is in `batonctl shards`. */
                json_object_del(doc, "shards");
                detail = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(doc);
        }
        serving(ss, &epoch, &total);
        if (asprintf(&summary,
                     "shard map of %s changed: epoch %" PRIu64 ", %u shards, %u instances", s->name,
                     epoch, total, s->count) < 0)
                return;
        if (controller_event(c, "shard-map", s->name, NULL, summary, detail) >= 0) {
                free(ss->map_digest);
                ss->map_digest = TAKE_PTR(d);
        }
}

void shards_step(Controller *c) {
        usec_t now = now_realtime_usec();
        bool sync = false, reconcile = false;

        for (size_t i = 0; i < c->n_shard_services; i++) {
                ShardService *ss = c->shard_services[i];
                ServiceSpec *s = fleet_service(c, ss->service);

                if (!s || s->kind != SERVICE_SHARDED)
                        continue;
                release_ready(c, ss, s, now);
                if (admit_waiting(c, ss, s, now))
                        sync = true;
                if (reshard_active(ss) || (ss->reshard && ss->reshard->state == RESHARD_ABORTED))
                        reconcile |= step_reshard(c, ss, s, now, &sync);
                check_alerts(c, ss, s, now);
                if (ss->dirty)
                        (void) save(c, ss);
        }
        if (reconcile)
                (void) fleet_reconcile(c, "reshard step");
        else if (sync)
                fleet_sync(c);
        for (size_t i = 0; i < c->n_shard_services; i++) {
                ShardService *ss = c->shard_services[i];
                const ServiceSpec *s = fleet_service(c, ss->service);
                if (s && s->kind == SERVICE_SHARDED)
                        publish_map(c, ss, s);
        }
}
