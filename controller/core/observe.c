/* SPDX-License-Identifier: MIT */
/* Folding reports into the model: units sorted (lookups are binary
 * searches, a heartbeat of n units costs O(n log n)), flap trackers merged
 * along, copies trusted only for what was placed. */
#include <stdlib.h>
#include <string.h>

#include "observe.h"
#include "text.h"

void observed_done(Observed *o) {
        for (size_t i = 0; i < o->n_strings; i++)
                free(o->strings[i]);
        free(o->strings);
        free(o->changes);
        *o = (Observed){ 0 };
}

/* Room for one more element in *v (n used, *allocated of them allocated),
 * doubling: a heartbeat of many units is not quadratic. */
static int grow(void **v, size_t n, size_t *allocated, size_t size) {
        size_t want;
        void *p;

        if (n < *allocated)
                return 0;
        want = MAX(*allocated * 2, (size_t) 16);
        p = reallocarray(*v, want, size);
        if (!p)
                return -ENOMEM;
        *v = p;
        *allocated = want;
        return 0;
}

/* Keeps a copy of s in o; NULL on OOM. */
static const char *keep(Observed *o, const char *s) {
        char *c;

        if (grow((void **) &o->strings, o->n_strings, &o->strings_allocated, sizeof(char *)) < 0)
                return NULL;
        c = strdup(strempty(s));
        if (!c)
                return NULL;
        o->strings[o->n_strings++] = c;
        return c;
}

static int add_change(Observed *o, const UnitChange *c) {
        UnitChange *v;

        if (grow((void **) &o->changes, o->n_changes, &o->changes_allocated, sizeof(UnitChange)) <
            0)
                return -ENOMEM;
        v = o->changes;
        v[o->n_changes] = *c;
        v[o->n_changes].unit = keep(o, c->unit);
        v[o->n_changes].service = keep(o, c->service);
        v[o->n_changes].result = keep(o, c->result);
        if (!v[o->n_changes].unit || !v[o->n_changes].service || !v[o->n_changes].result)
                return -ENOMEM;
        o->n_changes++;
        return 0;
}

/* Replaces *dst with a terminal-safe copy of src. */
static int set_text(char **dst, const char *src) {
        char *c = src ? text_sanitize(src) : NULL;

        if (src && !c)
                return -ENOMEM;
        free(*dst);
        *dst = c;
        return 0;
}

static int unit_obs_cmp(const void *a, const void *b) {
        return strcmp(((const UnitObs *) a)->name, ((const UnitObs *) b)->name);
}

/* One observation of a unit's restart count, into a change when it matters. */
static int flap_step(Observed *o, FlapEntry *e, uint32_t n_restarts, bool active, usec_t now_mono,
                     const char *service) {
        UnitChange c = { .unit = e->unit, .service = service };
        uint32_t before = e->tracker.last_restarts;
        bool known = e->tracker.known;

        c.flap = flap_observe(&e->tracker, n_restarts, active, now_mono, FLAP_WINDOW_US,
                              FLAP_THRESHOLD);
        if (known && n_restarts > before)
                c.new_restarts = n_restarts - before;
        if (c.flap == 0 && c.new_restarts == 0)
                return 0;
        return add_change(o, &c);
}

int observe_heartbeat(HostModel *v, const HeartbeatReport *hb, usec_t now_mono, uint64_t now,
                      Observed *ret) {
        _cleanup_free_ char *labels = NULL;
        UnitObs *units;
        FlapEntry *flaps;
        size_t n = 0, keep_n = 0, j = 0, nf = 0;
        int k;

        if (v->first_seen_us == 0)
                v->first_seen_us = now;
        if (v->last_seen_us < now)
                v->last_seen_us = now;
        k = set_text(&v->boot_id, hb->boot_id);
        if (k >= 0)
                k = set_text(&v->agent_version, hb->agent_version);
        if (k >= 0)
                k = set_text(&v->systemd_version, hb->systemd_version);
        if (k >= 0)
                k = set_text(&v->system_state, hb->system_state);
        if (k >= 0) {
                labels = text_sanitize(hb->labels);
                k = labels ? 0 : -ENOMEM;
        }
        if (k >= 0 && !streq_ptr(labels, v->labels)) {
                k = host_model_set_labels(v, labels);
                ret->labels_changed = k >= 0;
        }
        if (k < 0)
                return k;
        if (hb->have_capacity) {
                v->cores = hb->cores;
                v->memory_total = hb->memory_total;
                v->memory_available = hb->memory_available;
                v->load1_x100 = hb->load1_x100;
        }
        v->applied_epoch = hb->applied_epoch;
        v->applied_generation = hb->applied_generation;
        v->max_epoch_seen = hb->max_epoch_seen;
        v->dirty = true;

        /* Units: sorted by name, without duplicates. */
        units = calloc(hb->n_units + 1, sizeof(UnitObs));
        if (!units)
                return -ENOMEM;
        for (size_t i = 0; i < hb->n_units; i++) {
                const UnitReport *u = &hb->units[i];
                UnitObs o = {
                        .name = text_sanitize(u->name),
                        .active_state = text_sanitize(u->active_state),
                        .sub_state = text_sanitize(u->sub_state),
                        .n_restarts = u->n_restarts,
                        .main_pid = u->main_pid,
                        .state_change_us = u->state_change_us,
                };
                if (!o.name || !o.active_state || !o.sub_state) {
                        unit_obs_done(&o);
                        continue;
                }
                units[n++] = o;
        }
        qsort(units, n, sizeof(UnitObs), unit_obs_cmp);
        for (size_t i = 0; i < n; i++) {
                if (keep_n > 0 && streq(units[keep_n - 1].name, units[i].name))
                        unit_obs_done(&units[i]);
                else
                        units[keep_n++] = units[i];
        }
        /* Units whose state moved since the last report (a unit event may
         * have been missed, or come before the unit was known): what waits
         * on their health steps on this. One merge of two sorted lists. */
        for (size_t i = 0, o = 0; i < keep_n && k >= 0; i++) {
                int cmp = 1;

                while (o < v->n_units && (cmp = strcmp(v->units[o].name, units[i].name)) < 0)
                        o++;
                if (o < v->n_units && cmp == 0 &&
                    streq(v->units[o].active_state, units[i].active_state))
                        continue;
                k = add_change(ret, &(UnitChange){ .unit = units[i].name, .service = "" });
        }
        if (k < 0) {
                for (size_t i = 0; i < keep_n; i++)
                        unit_obs_done(&units[i]);
                free(units);
                return k;
        }
        host_model_clear_units(v);
        v->units = units;
        v->n_units = keep_n;
        for (size_t i = 0; i < keep_n; i++)
                v->units_active += streq(units[i].active_state, "active");

        /* Flap entries follow the units: one merge of two sorted lists. */
        flaps = calloc(keep_n + 1, sizeof(FlapEntry));
        if (!flaps)
                return -ENOMEM;
        k = 0;
        for (size_t i = 0; i < keep_n && k >= 0; i++) {
                const UnitObs *u = &units[i];
                int cmp = 1;

                while (j < v->n_flaps && (cmp = strcmp(v->flaps[j].unit, u->name)) < 0) {
                        /* Removed from the host: it stops flapping there. */
                        if (v->flaps[j].tracker.flapping)
                                k = add_change(ret, &(UnitChange){ .unit = v->flaps[j].unit,
                                                                   .service = "",
                                                                   .flap = -1 });
                        free(v->flaps[j++].unit);
                }
                if (j < v->n_flaps && cmp == 0)
                        flaps[nf] = v->flaps[j++];
                else {
                        flaps[nf] = (FlapEntry){ .unit = strdup(u->name) };
                        if (!flaps[nf].unit)
                                continue;
                }
                if (k >= 0)
                        k = flap_step(ret, &flaps[nf], u->n_restarts,
                                      streq(u->active_state, "active"), now_mono, "");
                nf++;
        }
        while (j < v->n_flaps) {
                if (k >= 0 && v->flaps[j].tracker.flapping)
                        k = add_change(ret, &(UnitChange){ .unit = v->flaps[j].unit,
                                                           .service = "",
                                                           .flap = -1 });
                free(v->flaps[j++].unit);
        }
        free(v->flaps);
        v->flaps = flaps;
        v->n_flaps = nf;
        return k;
}

int observe_unit(HostModel *v, const UnitReport *u, usec_t now_mono, Observed *ret) {
        _cleanup_free_ char *name = text_sanitize(u->name);
        UnitObs *o;
        FlapEntry *e = NULL;
        size_t lo = 0, hi;
        int k;

        if (!name)
                return -ENOMEM;
        /* A unit new since the last heartbeat (just placed) is known from
         * its first event on: what decides on its health sees it at once. */
        o = host_model_unit_mut(v, name);
        if (!o) {
                UnitObs *p = realloc(v->units, (v->n_units + 1) * sizeof(UnitObs));
                size_t at = 0, top;

                if (!p)
                        return -ENOMEM;
                v->units = p;
                top = v->n_units;
                while (at < top) {
                        size_t mid = at + (top - at) / 2;
                        if (strcmp(p[mid].name, name) < 0)
                                at = mid + 1;
                        else
                                top = mid;
                }
                memmove(&p[at + 1], &p[at], (v->n_units - at) * sizeof(UnitObs));
                p[at] = (UnitObs){ .name = strdup(name),
                                   .active_state = strdup("unknown"),
                                   .sub_state = strdup("unknown") };
                v->n_units++;
                o = &p[at];
                if (!o->name || !o->active_state || !o->sub_state) {
                        unit_obs_done(o);
                        memmove(&p[at], &p[at + 1], (v->n_units - at - 1) * sizeof(UnitObs));
                        v->n_units--;
                        return -ENOMEM;
                }
        }
        {
                char *a = text_sanitize(u->active_state), *s = text_sanitize(u->sub_state);

                if (!a || !s) {
                        free(a);
                        free(s);
                        return -ENOMEM;
                }
                v->units_active -= streq(o->active_state, "active");
                free(o->active_state);
                free(o->sub_state);
                o->active_state = a;
                o->sub_state = s;
                o->n_restarts = u->n_restarts;
                o->main_pid = u->main_pid;
                o->state_change_us = u->state_change_us;
                v->units_active += streq(a, "active");
        }

        /* Its flap entry, inserted in order when new. */
        hi = v->n_flaps;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(v->flaps[mid].unit, name);
                if (c == 0) {
                        e = &v->flaps[mid];
                        break;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (!e) {
                FlapEntry *p = realloc(v->flaps, (v->n_flaps + 1) * sizeof(FlapEntry));

                if (!p)
                        return -ENOMEM;
                v->flaps = p;
                memmove(&v->flaps[lo + 1], &v->flaps[lo], (v->n_flaps - lo) * sizeof(FlapEntry));
                v->flaps[lo] = (FlapEntry){ .unit = TAKE_PTR(name) };
                v->n_flaps++;
                e = &v->flaps[lo];
        }
        {
                _cleanup_free_ char *service = text_sanitize(u->service),
                                    *result = text_sanitize(u->result);
                UnitChange c = { .unit = e->unit, .service = service, .result = result };
                uint32_t before = e->tracker.last_restarts;
                bool known = e->tracker.known;

                if (!service || !result)
                        return -ENOMEM;
                c.flap = flap_observe(&e->tracker, u->n_restarts,
                                      streq_ptr(u->active_state, "active"), now_mono,
                                      FLAP_WINDOW_US, FLAP_THRESHOLD);
                if (known && u->n_restarts > before)
                        c.new_restarts = u->n_restarts - before;
                c.failed = streq_ptr(u->active_state, "failed");
                c.active = streq_ptr(u->active_state, "active");
                k = add_change(ret, &c);
        }
        return k;
}

/* What the controller itself placed as `unit` on `host`: the copy's shards
 * and epoch. -ENOENT if that unit of that instance is not placed there. */
static int placed_copy(const Model *m, const char *host, const char *service, uint32_t instance,
                       const char *unit, RangeList *ret_shards, uint64_t *ret_epoch) {
        const ServiceSpec *s = model_service(m, service);
        const Instance *in = model_instance(m, service, instance);
        const ShardState *ss = model_shards(m, service);
        CopyPlan cp[2];
        size_t n = 0;
        int k = -ENOENT;

        if (!s || s->kind != SERVICE_SHARDED || !ss || !in)
                return -ENOENT;
        if (reconcile_copies(ss, service, instance, cp, &n) < 0)
                return -ENOMEM;
        /* A copy runs on its instance's host, or (moved, until replaced) on
         * the host its item names. */
        for (size_t i = 0; i < n; i++)
                if (k == -ENOENT && streq(cp[i].unit, unit) &&
                    streq(cp[i].host ? cp[i].host : in->host, host)) {
                        k = rangelist_parse(ret_shards, cp[i].shards);
                        *ret_epoch = cp[i].epoch;
                }
        for (size_t i = 0; i < n; i++)
                copy_plan_done(&cp[i]);
        return k;
}

int observe_copies(const Model *m, const char *host, HostModel *v, const CopyReport *copies,
                   size_t n, uint64_t now, Observed *ret) {
        CopyObs *next = calloc(n + 1, sizeof(CopyObs));
        size_t kept = 0;

        if (!next)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const CopyReport *in = &copies[i];
                _cleanup_(rangelist_done) RangeList mine = { 0 };
                CopyObs *c = &next[kept];
                uint64_t epoch = 0, claimed;
                int k;

                *c = (CopyObs){
                        .unit = text_sanitize(in->unit),
                        .service = text_sanitize(in->service),
                        .instance = in->instance,
                        .epoch = in->epoch,
                        .shard_count = in->shard_count,
                        .active = unit_state_runs(in->active_state),
                        .seen_at = now,
                };
                if (!c->unit || !c->service ||
                    rangelist_parse(&c->assigned, strempty(in->assigned)) < 0 ||
                    rangelist_parse(&c->ready, strempty(in->ready)) < 0 ||
                    rangelist_parse(&c->connecting, strempty(in->connecting)) < 0 ||
                    rangelist_parse(&c->failed, strempty(in->failed)) < 0) {
                        ret->malformed_copies++;
                        copy_obs_done(c);
                        continue;
                }
                /* A host vouches only for what the controller placed there: a
                 * copy it was not given counts for nothing, and of a copy it
                 * was given only the shards the controller assigned to it (in
                 * the epoch it assigned them) count. */
                k = placed_copy(m, host, c->service, c->instance, c->unit, &mine, &epoch);
                if (k < 0) {
                        ret->refused_copies++;
                        copy_obs_done(c);
                        if (k == -ENOMEM) {
                                for (size_t q = 0; q < kept; q++)
                                        copy_obs_done(&next[q]);
                                free(next);
                                return k;
                        }
                        continue;
                }
                if (c->epoch != epoch)
                        rangelist_clear(&mine);
                claimed = rangelist_count(&c->ready) + rangelist_count(&c->connecting) +
                          rangelist_count(&c->failed) + rangelist_count(&c->assigned);
                if (rangelist_intersect(&c->assigned, &mine) < 0 ||
                    rangelist_intersect(&c->ready, &mine) < 0 ||
                    rangelist_intersect(&c->connecting, &mine) < 0 ||
                    rangelist_intersect(&c->failed, &mine) < 0) {
                        copy_obs_done(c);
                        for (size_t q = 0; q < kept; q++)
                                copy_obs_done(&next[q]);
                        free(next);
                        return -ENOMEM;
                }
                if (claimed > rangelist_count(&c->ready) + rangelist_count(&c->connecting) +
                                      rangelist_count(&c->failed) + rangelist_count(&c->assigned))
                        ret->refused_copies++;
                kept++;
        }
        host_model_clear_copies(v);
        v->copies = next;
        v->n_copies = kept;
        return 0;
}
