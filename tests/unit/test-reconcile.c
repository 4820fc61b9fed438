/* SPDX-License-Identifier: MIT */
/* A model-based test of reconcile(): random sequences of events (apply,
 * scale, delete, hosts lost and back, drains, rolling restarts, reshards,
 * rollout controls, mass losses confirmed, status arriving late or twice,
 * and controller restarts modelled as "reload from the records and
 * reconcile again") against simulated agents that carry out every
 * Placement and Restart. After every step the invariants hold:
 *
 *  - placement: MaxPerHost=, RequireLabels= and Memory= are never exceeded;
 *  - the incremental placement equals placing everything from scratch;
 *  - a rollout never has more instances restarting than MaxUnavailable=;
 *  - the start gate: no two copies of a service identify in one bucket at
 *    once, and a bucket is used again only one IdentifyInterval after the
 *    copy before it was seen ready (or gone);
 *  - the daily budget: an operator's restart or reshard is accepted only
 *    when it leaves the reserve;
 *  - no Restart id is issued twice, across restarts too;
 *  - every shard of the serving epoch belongs to an instance, and to a
 *    placed copy when every instance is placed.
 *
 * BATON_RECONCILE_SEQUENCES and BATON_RECONCILE_SEED change how many
 * sequences run and from where (CI runs more). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "observe.h"
#include "plan.h"
#include "reconcile.h"
#include "tap.h"

#define N_HOSTS 5
#define EVENTS_PER_SEQUENCE 120
#define MEMORY_TOTAL (8ULL << 30)

/* ---- a small deterministic random source ------------------------------------- */

static uint64_t rng_state, rng_sync_state;
/* Passes that left services to later ones, over all sequences: the test
 * says how many, and fails if none did. */
static size_t passes_left_services;
/* Restarts of the sharded service made make-before-break (a replace), and
 * how many of them got to the end: the test fails if none did. */
static size_t replaces_started, replaces_done, moves_off_silent, live_gains;

static uint32_t rnd_from(uint64_t *state, uint32_t n) {
        /* xorshift64* */
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        return n == 0 ? 0 : (uint32_t) ((*state * 0x2545F4914F6CDD1DULL) >> 33) % n;
}

static uint32_t rnd(uint32_t n) {
        return rnd_from(&rng_state, n);
}

/* When passes leave Placements to later ones, and when those run: a source
 * of its own, so a sequence's events stay those of its seed. */
static uint32_t rnd_sync(uint32_t n) {
        return rnd_from(&rng_sync_state, n);
}

/* ---- the simulated fleet ---------------------------------------------------------- */

typedef struct SimUnit {
        char *name;
        char *service;
        uint32_t instance;
        bool sharded;
        bool running;
        bool ready; /* sharded: every assigned shard identified */
        char *shards;
        char *ident; /* while !ready: the shards it identifies, NULL = all of them (a
                      * live change identifies only what it gained) */
        uint32_t shard_count;
        uint64_t epoch;
        uint64_t changed; /* state change, wall µs */
        bool reloading;   /* reports ActiveState=reloading (ExecReload= runs) */
} SimUnit;

typedef struct SimHost {
        char id[8];
        const char *labels;
        bool up; /* the agent runs and hears its queue */
        SimUnit *units;
        size_t n_units;
} SimHost;

/* When each bucket of a sharded service was last freed (a copy seen ready or
 * gone); 0: never used. */
typedef struct BucketLog {
        char service[32];
        uint64_t end[64];
        uint64_t started[64];
        bool busy[64];
} BucketLog;

typedef struct Sim {
        Model m;
        SimHost hosts[N_HOSTS];
        uint64_t now; /* wall µs */
        usec_t mono;  /* monotonic µs */
        uint64_t seq; /* events so far, for nonces */
        char **ids;   /* every Restart id issued */
        size_t n_ids;
        BucketLog buckets[4];
        size_t n_buckets;
        unsigned seed;
        unsigned step;
        bool trace; /* BATON_RECONCILE_TRACE: each event and its logs */
        /* Hosts whose Placements passes left to later ones (Plan.later), as
         * the controller's SyncQueue keeps them: once each (whether to resend is the model's). */
        char *later[N_HOSTS];
        size_t n_later;
        int sync_max; /* Event.sync_max of every pass; -1: at random */
        /* Services whose placement passes left to later ones
         * (Plan.later_services), once each. */
        char *later_services[8];
        size_t n_later_services;
        int place_max; /* Event.place_max of every pass; -1: at random */
        const char *what;
        unsigned web_version, gw_version;
        bool gw_reload; /* gw has ShardChange=reload */
} Sim;

#define CHECK(s, cond, ...)                                                                        \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "# seed %u, step %u (%s): ", (s)->seed, (s)->step,         \
                                (s)->what);                                                        \
                        fprintf(stderr, __VA_ARGS__);                                              \
                        fprintf(stderr, "\n");                                                     \
                        TAP_FAIL_("invariant: %s", #cond);                                         \
                }                                                                                  \
        } while (0)

static SimHost *sim_host(Sim *s, const char *id) {
        for (size_t i = 0; i < N_HOSTS; i++)
                if (streq(s->hosts[i].id, id))
                        return &s->hosts[i];
        return NULL;
}

static void sim_unit_done(SimUnit *u) {
        free(u->name);
        free(u->service);
        free(u->shards);
        free(u->ident);
}

static void sim_host_clear(SimHost *h) {
        for (size_t i = 0; i < h->n_units; i++)
                sim_unit_done(&h->units[i]);
        free(h->units);
        h->units = NULL;
        h->n_units = 0;
}

static BucketLog *bucket_log(Sim *s, const char *service) {
        for (size_t i = 0; i < s->n_buckets; i++)
                if (streq(s->buckets[i].service, service))
                        return &s->buckets[i];
        ASSERT_TRUE(s->n_buckets < ELEMENTSOF(s->buckets));
        snprintf(s->buckets[s->n_buckets].service, sizeof(s->buckets[0].service), "%s", service);
        return &s->buckets[s->n_buckets++];
}

static uint32_t concurrency_of(Sim *s, const char *service) {
        const ServiceSpec *spec = model_service(&s->m, service);
        return spec ? spec->identify_concurrency : 1;
}

/* The buckets (bit k: sh % c % 64) of the shards in `text`. */
static uint64_t buckets_of(Sim *s, const char *service, const char *text) {
        _cleanup_(rangelist_done) RangeList set = { 0 };
        uint32_t c = concurrency_of(s, service);
        uint64_t mask = 0;

        ASSERT_OK(rangelist_parse(&set, text));
        for (size_t g = 0; g < set.n_ranges; g++)
                for (uint32_t sh = set.ranges[g].lo; sh <= set.ranges[g].hi; sh++)
                        mask |= UINT64_C(1) << (sh % c % 64);
        return mask;
}

/* The buckets in `mask` are free, as of now. */
static void buckets_free(Sim *s, const char *service, uint64_t mask) {
        BucketLog *b = bucket_log(s, service);

        for (uint32_t k = 0; k < 64; k++)
                if (mask & (UINT64_C(1) << k)) {
                        b->end[k] = s->now;
                        b->busy[k] = false;
                }
}

/* `u` starts identifying in the buckets of `mask`: none may be in use, and
 * each must have been free for an interval. */
static void buckets_take(Sim *s, const SimUnit *u, uint64_t mask) {
        const ServiceSpec *spec = model_service(&s->m, u->service);
        BucketLog *b = bucket_log(s, u->service);

        for (uint32_t k = 0; k < 64; k++) {
                if (!(mask & (UINT64_C(1) << k)))
                        continue;
                /* A copy not ready by HealthTimeout has failed: the
                 * controller stops waiting for it, and so do we. */
                if (b->busy[k] && spec && s->now >= b->started[k] + spec->health_timeout) {
                        b->busy[k] = false;
                        b->end[k] = b->started[k] + spec->health_timeout;
                }
                CHECK(s, !b->busy[k], "%s starts in bucket %u, which another copy uses", u->name,
                      k);
                CHECK(s, b->end[k] == 0 || !spec || s->now >= b->end[k] + spec->identify_interval,
                      "%s starts in bucket %u %" PRIu64 " µs after it was freed", u->name, k,
                      s->now - b->end[k]);
        }
        for (uint32_t k = 0; k < 64; k++)
                if (mask & (UINT64_C(1) << k)) {
                        b->busy[k] = true;
                        b->started[k] = s->now;
                }
}

/* What a copy that is not ready identifies: its gain after a live change,
 * or all of its shards. */
static const char *identifying(const SimUnit *u) {
        return u->ident ? u->ident : u->shards;
}

/* A sharded copy stops identifying (ready, or gone): its buckets are free,
 * as of now. */
static void copy_ends(Sim *s, SimUnit *u) {
        if (!u->sharded || !u->running || u->ready)
                return;
        if (s->trace)
                printf("#     %s stops identifying %s\n", u->name, identifying(u));
        buckets_free(s, u->service, buckets_of(s, u->service, identifying(u)));
        u->ident = mfree(u->ident);
}

/* A sharded copy starts identifying. */
static void copy_starts(Sim *s, const SimUnit *u) {
        if (!u->sharded)
                return;
        if (s->trace)
                printf("#     %s starts identifying %s\n", u->name, identifying(u));
        buckets_take(s, u, buckets_of(s, u->service, identifying(u)));
}

static SimUnit *find_unit(SimHost *h, const char *name) {
        for (size_t i = 0; i < h->n_units; i++)
                if (streq(h->units[i].name, name))
                        return &h->units[i];
        return NULL;
}

static void unit_start(Sim *s, SimUnit *u) {
        copy_ends(s, u); /* a restart of a copy still identifying */
        u->ident = mfree(u->ident);
        u->running = true;
        u->ready = !u->sharded;
        u->changed = s->now;
        copy_starts(s, u);
}

/* ShardChange=reload: the running copy `old` takes the set of `u` in
 * place. What it gained it identifies (through free buckets, like a
 * start); what it keeps stays ready, or identifying in the buckets it
 * already holds; what it lost it drops, freeing buckets nothing else of it
 * identifies in. */
static void copy_reloads(Sim *s, SimUnit *old, SimUnit *u) {
        _cleanup_(rangelist_done) RangeList gain = { 0 }, before = { 0 }, still = { 0 };
        _cleanup_free_ char *gain_text = NULL, *still_text = NULL, *ident = NULL;
        uint64_t held = 0, kept = 0, taken;

        ASSERT_OK(rangelist_parse(&gain, u->shards));
        ASSERT_OK(rangelist_parse(&before, old->shards));
        if (!old->ready) {
                held = buckets_of(s, u->service, identifying(old));
                ASSERT_OK(rangelist_parse(&still, identifying(old)));
                ASSERT_OK(rangelist_intersect(&still, &gain));
        }
        ASSERT_OK(rangelist_subtract(&gain, &before));
        gain_text = rangelist_format(&gain);
        still_text = rangelist_format(&still);
        ASSERT_TRUE(gain_text && still_text);
        if (s->trace)
                printf("#     %s reloads: %s -> %s, gains %s\n", u->name, old->shards, u->shards,
                       gain_text);
        kept = buckets_of(s, u->service, still_text);
        taken = buckets_of(s, u->service, gain_text);
        /* Buckets it no longer identifies in are free; new ones it takes. */
        buckets_free(s, u->service, held & ~(kept | taken));
        buckets_take(s, u, taken & ~held);
        ASSERT_OK(rangelist_union(&still, &gain));
        u->ident = mfree(u->ident);
        u->ready = rangelist_count(&still) == 0;
        if (u->ready)
                return;
        ident = rangelist_format(&still);
        ASSERT_NOT_NULL(ident);
        u->ident = TAKE_PTR(ident);
}

/* The agent carries out a Placement: what is no longer placed stops, what
 * runs and did not starts; a unit that keeps running keeps its process. */
static void agent_placement(Sim *s, SimHost *h, const PlanSend *send) {
        SimUnit *next = calloc(send->n_units + 1, sizeof(SimUnit));

        ASSERT_NOT_NULL(next);
        for (size_t i = 0; i < send->n_units; i++) {
                const PlanUnit *pu = &send->units[i];
                SimUnit *old = find_unit(h, pu->name), *u = &next[i];

                *u = (SimUnit){
                        .name = strdup(pu->name),
                        .service = strdup(pu->service),
                        .instance = pu->instance,
                        .sharded = pu->sharded,
                        .shards = strdup(pu->shards ? pu->shards : ""),
                        .shard_count = pu->shard_count,
                        .epoch = pu->shard_epoch,
                };
                ASSERT_TRUE(u->name && u->service && u->shards);
                if (old && old->running && pu->running) {
                        u->running = true;
                        u->ready = old->ready;
                        u->changed = old->changed;
                        if (old->ident)
                                ASSERT_NOT_NULL(u->ident = strdup(old->ident));
                        if (pu->shards_reload && !streq(old->shards, u->shards))
                                copy_reloads(s, old, u);
                } else if (old && old->running) {
                        copy_ends(s, old);
                        u->changed = s->now;
                } else if (pu->running)
                        unit_start(s, u);
        }
        for (size_t i = 0; i < h->n_units; i++) {
                bool kept = false;
                for (size_t j = 0; j < send->n_units; j++)
                        kept = kept || streq(send->units[j].name, h->units[i].name);
                if (!kept)
                        copy_ends(s, &h->units[i]);
        }
        sim_host_clear(h);
        h->units = next;
        h->n_units = send->n_units;
}

static void carry_out(Sim *s, const Plan *p) {
        for (size_t i = 0; i < p->n_sends; i++) {
                SimHost *h = sim_host(s, p->sends[i].host);
                ASSERT_NOT_NULL(h);
                if (h->up)
                        agent_placement(s, h, &p->sends[i]);
        }
        for (size_t i = 0; i < p->n_restarts; i++) {
                const PlanRestart *rs = &p->restarts[i];
                SimHost *h = sim_host(s, rs->host);
                SimUnit *u = h && h->up ? find_unit(h, rs->unit) : NULL;

                /* Its Placement went first, in this plan or before. */
                CHECK(s, !h || !h->up || u, "Restart %s of %s on %s, which was never sent it",
                      rs->id, rs->unit, rs->host);

                for (size_t k = 0; k < s->n_ids; k++)
                        CHECK(s, !streq(s->ids[k], rs->id), "Restart id %s issued twice", rs->id);
                s->ids = realloc(s->ids, (s->n_ids + 1) * sizeof(char *));
                ASSERT_NOT_NULL(s->ids);
                s->ids[s->n_ids++] = strdup(rs->id);
                if (u && u->running)
                        unit_start(s, u);
        }
}

/* ---- reports ------------------------------------------------------------------------ */

static void run(Sim *s, Event *ev, Answer *ret_answer);

static void report_heartbeat(Sim *s, SimHost *h) {
        HostModel *v = model_host(&s->m, h->id);
        UnitReport *units;
        Observed o = { 0 };
        Host *host;
        HostTransition t;
        int k;

        k = host_table_heartbeat(&s->m.hosts, h->id, s->mono, &host, &t);
        ASSERT_OK(k);
        if (!host->userdata)
                host->userdata = calloc(1, sizeof(HostModel));
        v = host->userdata;
        ASSERT_NOT_NULL(v);
        units = calloc(h->n_units + 1, sizeof(UnitReport));
        ASSERT_NOT_NULL(units);
        for (size_t i = 0; i < h->n_units; i++)
                units[i] = (UnitReport){
                        .name = h->units[i].name,
                        .active_state = h->units[i].running ? "active" : "inactive",
                        .sub_state = h->units[i].running ? "running" : "dead",
                        .result = "success",
                        .service = h->units[i].service,
                        .state_change_us = h->units[i].changed,
                };
        ASSERT_OK(observe_heartbeat(v,
                                    &(HeartbeatReport){ .boot_id = "b",
                                                        .agent_version = "t",
                                                        .labels = h->labels,
                                                        .have_capacity = true,
                                                        .cores = 4,
                                                        .memory_total = MEMORY_TOTAL,
                                                        .memory_available = MEMORY_TOTAL,
                                                        .applied_epoch = s->m.epoch,
                                                        .applied_generation = v->generation,
                                                        .max_epoch_seen = s->m.epoch,
                                                        .units = units,
                                                        .n_units = h->n_units },
                                    s->mono, s->now, &o));
        /* As in the shell: the heartbeat is taken in before the transition's
         * reconcile (host transitions are gathered into one wave). */
        if (k > 0) {
                Event ev = { .kind = EVENT_HOSTS, .transitions = &t, .n_transitions = 1 };
                v->state_since_us = s->now;
                s->what = "host up";
                run(s, &ev, NULL);
        }
        {
                Event ev = { .kind = EVENT_HEARTBEAT,
                             .host = h->id,
                             .units = o.changes,
                             .n_units = o.n_changes,
                             .labels_changed = o.labels_changed };
                s->what = "heartbeat";
                run(s, &ev, NULL);
        }
        observed_done(&o);
        free(units);
}

static void report_shards(Sim *s, SimHost *h) {
        HostModel *v = model_host(&s->m, h->id);
        CopyReport *copies = calloc(h->n_units + 1, sizeof(CopyReport));
        char **kept = NULL;
        Observed o = { 0 };
        size_t n = 0, n_kept;

        ASSERT_NOT_NULL(copies);
        if (!v) {
                free(copies);
                return;
        }
        /* (The pass below may send h a Placement, which replaces its units.) */
        n_kept = h->n_units;
        kept = calloc(n_kept + 1, sizeof(char *));
        ASSERT_NOT_NULL(kept);
        for (size_t i = 0; i < h->n_units; i++) {
                const SimUnit *u = &h->units[i];
                if (!u->sharded)
                        continue;
                /* A live change keeps serving what it kept. */
                if (u->ident) {
                        _cleanup_(rangelist_done) RangeList set = { 0 }, ident = { 0 };

                        ASSERT_OK(rangelist_parse(&set, u->shards));
                        ASSERT_OK(rangelist_parse(&ident, u->ident));
                        ASSERT_OK(rangelist_subtract(&set, &ident));
                        ASSERT_NOT_NULL(kept[i] = rangelist_format(&set));
                }
                copies[n++] = (CopyReport){
                        .unit = u->name,
                        .service = u->service,
                        .instance = u->instance,
                        .epoch = u->epoch,
                        .shard_count = u->shard_count,
                        .assigned = u->shards,
                        .ready = u->running && u->ready   ? u->shards
                                 : u->running && u->ident ? kept[i]
                                                          : "",
                        .connecting =
                                u->running && !u->ready ? (u->ident ? u->ident : u->shards) : "",
                        .failed = "",
                        .active_state = !u->running    ? "inactive"
                                        : u->reloading ? "reloading"
                                                       : "active",
                };
        }
        ASSERT_OK(observe_copies(&s->m, h->id, v, copies, n, s->now, &o));
        {
                Event ev = { .kind = EVENT_SHARD_REPORT, .host = h->id };
                s->what = "shard report";
                run(s, &ev, NULL);
        }
        observed_done(&o);
        for (size_t i = 0; i < n_kept; i++)
                free(kept[i]);
        free(kept);
        free(copies);
}

/* Some copies still identifying on h are done, and say so. */
static void copies_ready(Sim *s, SimHost *h) {
        for (size_t i = 0; i < h->n_units; i++) {
                SimUnit *u = &h->units[i];
                if (u->sharded && u->running && !u->ready && rnd(3) > 0) {
                        copy_ends(s, u);
                        u->ready = true;
                }
        }
        report_shards(s, h);
}

/* ---- invariants ------------------------------------------------------------------- */

static bool host_has_labels(const HostModel *v, const ServiceSpec *s) {
        for (size_t i = 0; i < s->n_require_labels; i++) {
                bool found = false;
                for (size_t j = 0; v && j < v->n_labels && !found; j++)
                        found = streq(v->label_list[j].key, s->require_labels[i].key) &&
                                streq(v->label_list[j].value, s->require_labels[i].value);
                if (!found)
                        return false;
        }
        return true;
}

static void check_placement(Sim *s) {
        const Model *m = &s->m;

        for (size_t i = 0; i < m->n_instances; i++) {
                const Instance *in = &m->instances[i];
                const ServiceSpec *spec = model_service(m, in->service);
                const HostModel *v = model_host(m, in->host);
                uint32_t same = 0;
                uint64_t memory = 0;

                CHECK(s, spec, "%s@%u placed but the service is gone", in->service, in->instance);
                CHECK(s, in->instance < (spec->kind == SERVICE_SINGLETON ? 1 : spec->count),
                      "%s@%u placed beyond its count %u", in->service, in->instance, spec->count);
                CHECK(s, host_has_labels(v, spec), "%s@%u on %s without its labels", in->service,
                      in->instance, in->host);
                for (size_t j = 0; j < m->n_instances; j++) {
                        const ServiceSpec *o = model_service(m, m->instances[j].service);
                        if (!streq(m->instances[j].host, in->host))
                                continue;
                        same += streq(m->instances[j].service, in->service);
                        memory += o ? o->memory : 0;
                }
                CHECK(s, spec->max_per_host == 0 || same <= spec->max_per_host,
                      "%u instances of %s on %s, MaxPerHost=%u", same, in->service, in->host,
                      spec->max_per_host);
                CHECK(s, memory == 0 || memory <= MEMORY_TOTAL, "%" PRIu64 " bytes reserved on %s",
                      memory, in->host);
        }
        /* Sorted, and the hosts' lists agree with it. */
        for (size_t i = 1; i < m->n_instances; i++)
                CHECK(s,
                      instance_key_cmp(m->instances[i - 1].service, m->instances[i - 1].instance,
                                       m->instances[i].service, m->instances[i].instance) < 0,
                      "instances out of order at %zu", i);
        {
                size_t placed = 0;
                for (size_t h = 0; h < m->hosts.n_hosts; h++) {
                        const HostModel *v = m->hosts.hosts[h]->userdata;
                        placed += v ? v->n_placed : 0;
                }
                CHECK(s, placed == m->n_instances, "hosts list %zu instances, the model %zu",
                      placed, m->n_instances);
        }
}

static void check_rollouts(Sim *s) {
        for (size_t i = 0; i < s->m.n_rollouts; i++) {
                const Rollout *r = s->m.rollouts[i];
                uint32_t busy = 0;

                if (r->state != ROLLOUT_RUNNING)
                        continue;
                for (size_t k = 0; k < r->n_items; k++)
                        busy += r->items[k].state == ITEM_RESTARTING;
                CHECK(s, busy <= r->max_unavailable,
                      "rollout %" PRIu64 " of %s restarts %u at once, MaxUnavailable=%u", r->id,
                      r->service, busy, r->max_unavailable);
        }
}

static void check_shards(Sim *s) {
        for (size_t i = 0; i < s->m.n_shards; i++) {
                const ShardState *ss = s->m.shards[i];
                const ServiceSpec *spec = model_service(&s->m, ss->service);
                RangeList all, placed;
                uint64_t epoch;
                uint32_t total;
                bool every_placed = true;

                CHECK(s, spec, "shard state of %s without its service", ss->service);
                rangelist_init(&all);
                rangelist_init(&placed);
                for (uint32_t k = 0; k < ss->layout.n_instances; k++)
                        ASSERT_OK(rangelist_union(&all, &ss->layout.sets[k]));
                CHECK(s, rangelist_count(&all) == ss->layout.shard_count,
                      "the layout of %s covers %" PRIu64 " of %u shards", ss->service,
                      rangelist_count(&all), ss->layout.shard_count);
                reconcile_serving(ss, &epoch, &total);
                for (uint32_t k = 0; k < spec->count; k++) {
                        CopyPlan cp[2];
                        size_t n = 0;

                        if (!model_instance(&s->m, ss->service, k)) {
                                every_placed = false;
                                continue;
                        }
                        ASSERT_OK(reconcile_copies(ss, ss->service, k, cp, &n));
                        for (size_t c = 0; c < n; c++) {
                                RangeList set;
                                rangelist_init(&set);
                                if (cp[c].epoch == epoch) {
                                        ASSERT_OK(rangelist_parse(&set, cp[c].shards));
                                        ASSERT_OK(rangelist_union(&placed, &set));
                                }
                                rangelist_done(&set);
                                copy_plan_done(&cp[c]);
                        }
                }
                CHECK(s, !every_placed || rangelist_count(&placed) == total,
                      "placed copies of %s own %" PRIu64 " of the %u shards of epoch %" PRIu64,
                      ss->service, rangelist_count(&placed), total, epoch);
                rangelist_done(&all);
                rangelist_done(&placed);
        }
}

/* ---- one event ------------------------------------------------------------------------- */

static bool plan_left(const Plan *p, const char *service) {
        for (size_t i = 0; i < p->n_later_services; i++)
                if (streq(p->later_services[i], service))
                        return true;
        return false;
}

/* The same changes, but of the services `left` left to later passes. */
static bool plans_place_alike(const Plan *a, const Plan *b, const Plan *left) {
        size_t i = 0, k = 0;

        for (;;) {
                while (i < a->n_instances && plan_left(left, a->instances[i].service))
                        i++;
                while (k < b->n_instances && plan_left(left, b->instances[k].service))
                        k++;
                if (i == a->n_instances || k == b->n_instances)
                        break;
                if (!streq(a->instances[i].service, b->instances[k].service) ||
                    a->instances[i].instance != b->instances[k].instance ||
                    !streq_ptr(a->instances[i].host, b->instances[k].host))
                        return false;
                i++;
                k++;
        }
        if (i != a->n_instances || k != b->n_instances)
                return false;
        /* Problems are of every service placed: only where none was left. */
        return left->n_later_services > 0 || a->n_problems == b->n_problems;
}

static ServiceSpec **specs_copy(ServiceSpec **v, size_t n) {
        ServiceSpec **c = calloc(n + 1, sizeof(ServiceSpec *));

        ASSERT_NOT_NULL(c);
        for (size_t i = 0; i < n; i++)
                ASSERT_OK(service_spec_copy(v[i], &c[i]));
        return c;
}

/* Runs ev twice, placing incrementally and from scratch; they must agree.
 * Then applies the first and lets the agents carry it out. */
static void run(Sim *s, Event *ev, Answer *ret_answer) {
        Plan p, full;
        Answer a = { 0 }, af = { 0 };
        ServiceSpec **copies = ev->n_specs > 0 ? specs_copy(ev->specs, ev->n_specs) : NULL;
        Event ef = *ev;
        char nonce[32];
        const ShardState *gw = model_shards(&s->m, "gw");
        bool replacing =
                gw && gw->reshard && gw->reshard->replace && gw->reshard->state == RESHARD_RUNNING;

        snprintf(nonce, sizeof(nonce), "n%" PRIu64, ++s->seq);
        ev->now = ef.now = s->now;
        ev->nonce = ef.nonce = nonce;
        /* Now and then a pass computes only a host or two of the Placements
         * it changes and leaves the rest to passes of their own. */
        if (s->sync_max >= 0)
                ev->sync_max = ev->kind != EVENT_SYNC ? (size_t) s->sync_max : 0;
        else
                ev->sync_max = ev->kind != EVENT_SYNC && rnd_sync(3) == 0 ? 1 + rnd_sync(2) : 0;
        ef.sync_max = 0;
        /* And now and then one places a service and leaves the others. */
        if (s->place_max >= 0)
                ev->place_max = (size_t) s->place_max;
        else
                ev->place_max = rnd_sync(3) == 0 ? 1 + rnd_sync(6) : 0;
        ef.place_max = 0;
        /* A tick places only for the periodic check, which is full anyway. */
        ef.full_placement = ev->kind == EVENT_TICK ? ev->full_placement : true;
        ef.specs = copies;
        ASSERT_OK(reconcile(&s->m, &ef, &full, &af));
        ASSERT_OK(reconcile(&s->m, ev, &p, &a));
        CHECK(s, a.verdict == af.verdict, "verdicts differ");
        CHECK(s, plans_place_alike(&p, &full, &p),
              "incremental placement differs from a full one (%zu vs %zu changes)", p.n_instances,
              full.n_instances);
        for (size_t i = 0; i < p.n_later; i++)
                for (size_t k = 0; k < ev->n_hosts && ev->kind == EVENT_SYNC; k++)
                        CHECK(s, !streq(p.later[i].host, ev->hosts[k]),
                              "a sync pass left %s, one it was given", ev->hosts[k]);
        if (p.n_later == 0 && p.n_later_services == 0)
                CHECK(s, p.n_sends == full.n_sends, "%zu vs %zu Placements", p.n_sends,
                      full.n_sends);
        else if (p.n_later_services == 0)
                CHECK(s, p.n_sends <= full.n_sends && p.n_sends + p.n_later >= full.n_sends,
                      "%zu Placements and %zu left vs %zu at once", p.n_sends, p.n_later,
                      full.n_sends);

        for (size_t i = 0; copies && i < ev->n_specs; i++)
                service_spec_free(copies[i]);
        free(copies);
        plan_done(&full);
        answer_done(&af);

        if (s->trace) {
                printf("# step %u %s @%" PRIu64 " ms\n", s->step, s->what,
                       (s->now / 1000) % 10000000);
                for (size_t i = 0; i < p.n_logs; i++)
                        printf("#   %s\n", p.logs[i].text);
                if (a.error)
                        printf("#   refused: %s\n", a.error);
                for (size_t i = 0; i < p.n_sends; i++)
                        printf("#   Placement %" PRIu64 " to %s\n", p.sends[i].generation,
                               p.sends[i].host);
                for (size_t i = 0; i < p.n_later; i++)
                        printf("#   later: %s%s\n", p.later[i].host,
                               p.later[i].resend ? " (resend)" : "");
        }
        ASSERT_OK(plan_reserve(&p, &s->m));
        plan_apply(&p, &s->m, s->now);
        carry_out(s, &p);
        for (size_t i = 0; i < p.n_later; i++) {
                size_t k = 0;

                while (k < s->n_later && !streq(s->later[k], p.later[i].host))
                        k++;
                if (k == s->n_later) {
                        ASSERT_TRUE(k < N_HOSTS);
                        s->later[k] = strdup(p.later[i].host);
                        ASSERT_NOT_NULL(s->later[k]);
                        s->n_later++;
                }
        }
        passes_left_services += p.n_later_services > 0;
        gw = model_shards(&s->m, "gw");
        replaces_done += replacing && gw && !gw->reshard;
        /* A live reshard's copy identifying what it gained. */
        for (size_t i = 0; gw && gw->reshard && gw->reshard->reload && i < gw->reshard->n_items;
             i++)
                live_gains += gw->reshard->items[i].state == RITEM_STARTING &&
                              gw->reshard->items[i].from.n_ranges > 0;
        /* A copy kept serving on a host that went silent, its replacement
         * started elsewhere. */
        for (size_t i = 0; gw && gw->reshard && i < gw->reshard->n_items; i++) {
                const char *from = gw->reshard->items[i].from_host;
                const Host *fh = from ? host_table_get(&s->m.hosts, from) : NULL;

                moves_off_silent += fh && !fh->alive && gw->reshard->items[i].state != RITEM_DONE;
        }
        for (size_t i = 0; i < p.n_later_services; i++) {
                size_t k = 0;

                while (k < s->n_later_services && !streq(s->later_services[k], p.later_services[i]))
                        k++;
                if (k == s->n_later_services) {
                        ASSERT_TRUE(k < ELEMENTSOF(s->later_services));
                        s->later_services[k] = strdup(p.later_services[i]);
                        ASSERT_NOT_NULL(s->later_services[k]);
                        s->n_later_services++;
                }
        }
        plan_done(&p);
        for (size_t i = 0; s->trace && i < s->m.n_shards; i++)
                for (size_t k = 0; k < s->m.shards[i]->n_holds; k++)
                        printf("#     hold %s@%u%s since %" PRIu64 " ms\n", s->m.shards[i]->service,
                               s->m.shards[i]->holds[k].instance,
                               s->m.shards[i]->holds[k].new_copy ? " (new copy)" : "",
                               (s->m.shards[i]->holds[k].since / 1000) % 10000000);
        check_placement(s);
        check_rollouts(s);
        check_shards(s);
        if (ret_answer)
                *ret_answer = a;
        else
                answer_done(&a);
}

/* ---- the events ---------------------------------------------------------------------------- */

static ServiceSpec *make_spec(const char *file, const char *text) {
        ServiceSpec *spec = NULL;
        char *error = NULL;
        int r = spec_parse(file, text, &spec, &error);

        if (r < 0)
                fprintf(stderr, "# %s: %s\n", file, error);
        ASSERT_OK(r);
        free(error);
        return spec;
}

static void apply(Sim *s, const char *file, const char *text) {
        ServiceSpec *specs[1] = { make_spec(file, text) };
        Event ev = { .kind = EVENT_APPLY, .specs = specs, .n_specs = 1 };
        Answer a;

        s->what = file;
        run(s, &ev, &a);
        service_spec_free(specs[0]);
        answer_done(&a);
}

static void apply_web(Sim *s) {
        char text[512];

        snprintf(text, sizeof(text),
                 "[Service]\nExecStart=/bin/web %u\n\n[X-Baton]\nReplicas=%u\nMaxPerHost=2\n"
                 "MaxReplicas=8\nMinReplicas=1\nHealthyFor=%s\n%s%s",
                 s->web_version, 1 + rnd(6), rnd(2) ? "0" : "1s",
                 rnd(3) == 0 ? "RequireLabels=zone=a\n" : "", rnd(2) ? "Spread=zone\n" : "");
        apply(s, "web@.service", text);
}

static void apply_cache(Sim *s) {
        char text[256];

        snprintf(text, sizeof(text), "[Service]\nExecStart=/bin/cache\n\n[X-Baton]\nMemory=%s\n",
                 rnd(2) ? "2G" : "3G");
        apply(s, "cache.service", text);
}

static void apply_gw(Sim *s) {
        char text[512];

        /* Now and then the way copies take a new set changes (a rolling
         * update of every copy). */
        if (rnd(3) == 0)
                s->gw_reload = !s->gw_reload;
        snprintf(text, sizeof(text),
                 "[Service]\nExecStart=/bin/gw %u\nExecReload=/bin/kill -HUP $MAINPID\n\n"
                 "[X-Baton]\nKind=sharded\nInstances=3\n"
                 "Shards=12\nMaxReplicas=6\nMinReplicas=1\nIdentifyConcurrency=2\n"
                 "IdentifyInterval=1s\nHealthyFor=0\nMaxPerHost=2\nDailyStartBudget=%u\n%s",
                 s->gw_version, rnd(2) ? 1000 : 60, s->gw_reload ? "ShardChange=reload\n" : "");
        apply(s, "gw@.service", text);
}

static SimHost *random_host(Sim *s, bool up) {
        size_t n = 0;
        SimHost *pick[N_HOSTS];

        for (size_t i = 0; i < N_HOSTS; i++)
                if (s->hosts[i].up == up)
                        pick[n++] = &s->hosts[i];
        return n > 0 ? pick[rnd((uint32_t) n)] : NULL;
}

static size_t hosts_up(Sim *s) {
        size_t n = 0;
        for (size_t i = 0; i < N_HOSTS; i++)
                n += s->hosts[i].up;
        return n;
}

/* Whether every sharded copy on h is done identifying. */
static bool copies_settled(const SimHost *h) {
        for (size_t i = 0; i < h->n_units; i++)
                if (h->units[i].sharded && h->units[i].running && !h->units[i].ready)
                        return false;
        return true;
}

/* The host stops (its agent and units are gone) or, agent_only, its agent
 * stops and systemd keeps its units running (taken only while none
 * identifies: the gate lets go of a silent host's copies); the controller
 * notices only that it went silent, and keeps what it last heard. */
static void host_lost(Sim *s, SimHost *h, bool agent_only) {
        Host *host = host_table_get(&s->m.hosts, h->id);
        HostModel *v = host ? host->userdata : NULL;

        if (s->trace)
                printf("# %s is lost%s\n", h->id, agent_only ? " (its agent only)" : "");
        if (!agent_only) {
                for (size_t i = 0; i < h->n_units; i++)
                        copy_ends(s, &h->units[i]);
                sim_host_clear(h);
        }
        h->up = false;
        if (!host || !host->alive)
                return;
        host->alive = false;
        {
                HostTransition t = { host->id, host->drained ? HOST_DRAINED : HOST_UP, HOST_DOWN };
                Event ev = { .kind = EVENT_HOSTS, .transitions = &t, .n_transitions = 1 };
                usec_t since = 0;

                ev.since = &since;
                if (v)
                        v->state_since_us = s->now;
                s->what = agent_only ? "agent lost" : "host lost";
                run(s, &ev, NULL);
        }
}

/* A mass loss: most hosts at once, one wave. */
static void hosts_lost(Sim *s) {
        HostTransition t[N_HOSTS];
        size_t n = 0;

        for (size_t i = 0; i + 1 < N_HOSTS; i++) {
                SimHost *h = &s->hosts[i];
                Host *host = host_table_get(&s->m.hosts, h->id);

                if (!h->up)
                        continue;
                for (size_t k = 0; k < h->n_units; k++)
                        copy_ends(s, &h->units[k]);
                sim_host_clear(h);
                h->up = false;
                if (!host || !host->alive)
                        continue;
                host->alive = false;
                if (host->userdata) {
                        HostModel *v = host->userdata;
                        v->state_since_us = s->now;
                }
                t[n++] = (HostTransition){ host->id, host->drained ? HOST_DRAINED : HOST_UP,
                                           HOST_DOWN };
        }
        if (n > 0) {
                Event ev = { .kind = EVENT_HOSTS, .transitions = t, .n_transitions = n };
                s->what = "mass loss";
                run(s, &ev, NULL);
        }
}

static uint64_t spent(Sim *s, const char *service) {
        const ShardState *ss = model_shards(&s->m, service);
        return ss ? budget_spent(&ss->ledger, s->now) : 0;
}

/* An operator's restart is accepted only when the budget keeps its reserve. */
static void restart(Sim *s) {
        const char *service = rnd(2) ? "gw" : "web";
        const ServiceSpec *spec = model_service(&s->m, service);
        const ShardState *ss = model_shards(&s->m, service);
        Event ev = { .kind = EVENT_RESTART, .service = service };
        uint64_t before = spent(s, service), cost = 0;
        uint32_t limit, total;
        bool sharded;
        Answer a;

        if (!spec)
                return;
        /* The pass replaces what it changes: keep what the check needs. */
        limit = spec->daily_start_budget;
        sharded = spec->kind == SERVICE_SHARDED;
        total = ss ? ss->layout.shard_count : 0;
        ev.instance = rnd(3) == 0 ? -1 : (int32_t) rnd(spec->count + 1);
        for (uint32_t i = 0; ss && i < ss->layout.n_instances; i++)
                if (ev.instance < 0 || (uint32_t) ev.instance == i)
                        cost += rangelist_count(&ss->layout.sets[i]);
        s->what = "restart";
        run(s, &ev, &a);
        if (a.verdict == VERDICT_OK && a.replace)
                replaces_started++;
        if (a.verdict == VERDICT_OK && sharded)
                CHECK(s, budget_check(limit, budget_reserve(limit, total), before, cost).allowed,
                      "a restart of %s costing %" PRIu64 " accepted with %" PRIu64 " spent of %u",
                      service, cost, before, limit);
        answer_done(&a);
}

static void reshard(Sim *s) {
        const ServiceSpec *spec = model_service(&s->m, "gw");
        Event ev = { .kind = EVENT_RESHARD, .service = "gw" };
        uint64_t before = spent(s, "gw");
        uint32_t limit;
        Answer a;

        if (!spec)
                return;
        limit = spec->daily_start_budget; /* the pass replaces the spec */
        ev.instances = 1 + rnd(5);
        ev.shards = rnd(2) ? 0 : 6 + rnd(3) * 6;
        s->what = "reshard";
        run(s, &ev, &a);
        if (a.verdict == VERDICT_OK)
                CHECK(s,
                      budget_check(limit, budget_reserve(limit, a.reshard.from_shards), before,
                                   a.reshard.identifies)
                              .allowed,
                      "a reshard costing %" PRIu64 " accepted with %" PRIu64 " spent of %u",
                      a.reshard.identifies, before, limit);
        answer_done(&a);
}

/* The controller restarts: what it loads is what the records hold (the
 * texts the store keeps, parsed again), hosts as they were with a whole
 * timeout, every copy's buckets held until it reports ready. */
static void controller_restart(Sim *s) {
        Model m;

        model_init(&m, &s->m.config);
        m.epoch = s->m.epoch + 1;
        for (size_t i = 0; i < s->m.hosts.n_hosts; i++) {
                const Host *old = s->m.hosts.hosts[i];
                const HostModel *ov = old->userdata;
                HostModel *v;
                Host *h;

                ASSERT_OK(host_table_restore(&m.hosts, old->id, old->alive, old->drained, s->mono,
                                             &h));
                v = h->userdata = calloc(1, sizeof(HostModel));
                ASSERT_NOT_NULL(v);
                if (ov) {
                        v->generation = ov->generation;
                        v->state_since_us = ov->state_since_us;
                        ASSERT_OK(host_model_set_labels(v, ov->labels));
                }
        }
        for (size_t i = 0; i < s->m.n_alerts; i++) {
                const OpenAlert *a = &s->m.alerts[i];
                OpenAlert c = { .id = strdup(a->id),
                                .kind = a->kind,
                                .severity = a->severity,
                                .service = a->service ? strdup(a->service) : NULL,
                                .host = a->host ? strdup(a->host) : NULL,
                                .summary = strdup(a->summary),
                                .raised_at_us = a->raised_at_us };
                ASSERT_OK(model_add_alert(&m, &c));
        }
        for (size_t i = 0; i < s->m.n_services; i++) {
                const ServiceSpec *old = s->m.services[i];
                ServiceSpec *spec = make_spec(old->file_name, old->unit_text);
                spec->count = old->count;
                ASSERT_OK(model_add_service(&m, spec));
        }
        ASSERT_OK(model_index(&m));
        for (size_t i = 0; i < s->m.n_instances; i++)
                ASSERT_OK(model_add_instance(&m, s->m.instances[i].service,
                                             s->m.instances[i].instance, s->m.instances[i].host));
        for (size_t i = 0; i < s->m.n_shards; i++) {
                const ShardState *old = s->m.shards[i];
                char *layout = NULL, *rs_text = NULL, *ledger = NULL;
                ShardLayout l;
                BudgetLedger b;
                Reshard *rs = NULL;
                ShardState *ss;

                ASSERT_OK(shard_layout_format(&old->layout, &layout));
                ASSERT_OK(shard_layout_parse(layout, &l, NULL));
                if (old->reshard) {
                        ASSERT_OK(reshard_format(old->reshard, &rs_text));
                        ASSERT_OK(reshard_parse(rs_text, &rs, NULL));
                }
                budget_ledger_init(&b);
                if (old->ledger.n_slots > 0) {
                        ASSERT_OK(budget_ledger_format(&old->ledger, &ledger));
                        ASSERT_OK(budget_ledger_parse(ledger, &b, NULL));
                }
                {
                        RangeList w, back;
                        char *text;

                        ASSERT_OK(shard_state_waiting(old, &w));
                        text = rangelist_format(&w);
                        ASSERT_NOT_NULL(text);
                        rangelist_init(&back);
                        ASSERT_OK(rangelist_parse(&back, text));
                        ASSERT_OK(shard_state_restore(model_service(&m, old->service), &l, rs, &b,
                                                      &back, s->now, &ss));
                        rangelist_done(&w);
                        rangelist_done(&back);
                        free(text);
                }
                ASSERT_OK(model_add_shards(&m, ss));
                free(layout);
                free(rs_text);
                free(ledger);
        }
        for (size_t i = 0; i < s->m.n_rollouts; i++) {
                char *text = NULL;
                Rollout *r;

                ASSERT_OK(rollout_format(s->m.rollouts[i], &text));
                ASSERT_OK(rollout_parse(text, &r, NULL));
                ASSERT_OK(model_add_rollout(&m, r));
                free(text);
        }
        ASSERT_OK(model_index(&m));
        model_done(&s->m);
        s->m = m;
        /* What the restarted controller hears first: everything once more. */
        {
                Event ev = { .kind = EVENT_CONNECTED };
                s->what = "connected";
                run(s, &ev, NULL);
        }
}

/* The controller's SyncQueue: the hosts left so far, a step of one or two. */
static void sync_step(Sim *s) {
        char *hosts[N_HOSTS];
        char *services[ELEMENTSOF(s->later_services)];
        size_t step = 1 + rnd_sync(2), n = MIN(s->n_later, step), n_services = s->n_later_services;
        Event ev = { .kind = EVENT_SYNC,
                     .hosts = (const char *const *) hosts,
                     .n_hosts = n,
                     .services = (const char *const *) services,
                     .n_services = n_services };

        memcpy(services, s->later_services, n_services * sizeof(char *));
        s->n_later_services = 0;

        for (size_t i = 0; i < n; i++) {
                hosts[i] = s->later[i];
        }
        memmove(s->later, s->later + n, (s->n_later - n) * sizeof(char *));
        s->n_later -= n;
        s->what = "sync";
        run(s, &ev, NULL);
        for (size_t i = 0; i < n; i++)
                free(hosts[i]);
        for (size_t i = 0; i < n_services; i++)
                free(services[i]);
}

static void one_event(Sim *s) {
        uint32_t pick = rnd(100);
        SimHost *h;

        while (s->n_later + s->n_later_services > 0 && rnd_sync(2) == 0)
                sync_step(s);

        s->now += 50 * USEC_PER_MSEC + rnd(3000) * USEC_PER_MSEC;
        s->mono = s->now;
        if (pick < 22) {
                h = random_host(s, true);
                if (h)
                        report_heartbeat(s, h);
        } else if (pick < 32) {
                h = random_host(s, true);
                if (h)
                        report_shards(s, h);
        } else if (pick < 48) {
                h = random_host(s, true);
                if (h)
                        copies_ready(s, h);
        } else if (pick < 55) {
                Event ev = { .kind = EVENT_TICK, .full_placement = rnd(5) == 0 };
                s->what = "tick";
                run(s, &ev, NULL);
        } else if (pick < 60) {
                s->web_version += rnd(2);
                apply_web(s);
        } else if (pick < 62) {
                apply_cache(s);
        } else if (pick < 65) {
                s->gw_version += rnd(3) == 0;
                apply_gw(s);
        } else if (pick < 68) {
                Event ev = { .kind = EVENT_SCALE, .service = "web", .count = 1 + rnd(7) };
                s->what = "scale";
                run(s, &ev, NULL);
        } else if (pick < 69) {
                Event ev = { .kind = EVENT_DELETE, .service = rnd(2) ? "web" : "cache" };
                s->what = "delete";
                run(s, &ev, NULL);
        } else if (pick < 73) {
                h = random_host(s, true);
                if (h && hosts_up(s) > 2)
                        host_lost(s, h, copies_settled(h) && rnd(2) == 0);
        } else if (pick < 78) {
                h = random_host(s, false);
                if (h) {
                        h->up = true;
                        report_heartbeat(s, h);
                }
        } else if (pick < 79) {
                if (hosts_up(s) == N_HOSTS)
                        hosts_lost(s);
        } else if (pick < 81) {
                Event ev = { .kind = EVENT_CONFIRM_DOWN, .all = true };
                s->what = "confirm-down";
                run(s, &ev, NULL);
        } else if (pick < 84) {
                Event ev = { .kind = EVENT_DRAIN, .drained = rnd(2) };
                ev.host = s->hosts[rnd(N_HOSTS)].id;
                s->what = ev.drained ? "drain" : "undrain";
                run(s, &ev, NULL);
        } else if (pick < 89) {
                restart(s);
        } else if (pick < 92) {
                reshard(s);
        } else if (pick < 95) {
                static const char *const actions[] = { "pause", "resume", "abort" };
                Event ev = { .kind = EVENT_ROLLOUT, .action = actions[rnd(3)] };
                s->what = "rollout";
                run(s, &ev, NULL);
        } else if (pick < 97) {
                controller_restart(s);
        } else {
                /* A late or repeated report: the same heartbeat twice. */
                h = random_host(s, true);
                if (h) {
                        report_heartbeat(s, h);
                        report_heartbeat(s, h);
                }
        }
}

static void sim_done(Sim *s) {
        for (size_t i = 0; i < s->n_later; i++)
                free(s->later[i]);
        for (size_t i = 0; i < s->n_later_services; i++)
                free(s->later_services[i]);
        for (size_t i = 0; i < N_HOSTS; i++)
                sim_host_clear(&s->hosts[i]);
        for (size_t i = 0; i < s->n_ids; i++)
                free(s->ids[i]);
        free(s->ids);
        model_done(&s->m);
}

static void sim_init(Sim *s, unsigned seed) {
        static const char *const labels[] = { "zone=a", "zone=b", "zone=a role=x", "zone=c",
                                              "zone=b" };
        ModelConfig config = {
                .host_timeout = 5 * USEC_PER_SEC,
                .shard_unowned_after = 30 * USEC_PER_SEC,
                .mass_loss_permille = 500,
                .max_message_size = 4u << 20,
        };

        *s = (Sim){
                .seed = seed, .now = 1700000000ULL * USEC_PER_SEC, .sync_max = -1, .place_max = -1
        };
        s->trace = getenv("BATON_RECONCILE_TRACE") != NULL;
        rng_state = 0x9E3779B97F4A7C15ULL ^ ((uint64_t) seed * 0x100000001B3ULL);
        rng_sync_state = rng_state ^ 0xD1B54A32D192ED03ULL;
        model_init(&s->m, &config);
        s->m.epoch = 1;
        for (size_t i = 0; i < N_HOSTS; i++) {
                snprintf(s->hosts[i].id, sizeof(s->hosts[i].id), "h%zu", i);
                s->hosts[i].labels = labels[i];
                s->hosts[i].up = true;
                s->mono = s->now;
                report_heartbeat(s, &s->hosts[i]);
        }
}

static void sequence(unsigned seed) {
        Sim s;

        sim_init(&s, seed);
        apply_web(&s);
        apply_gw(&s);
        for (s.step = 0; s.step < EVENTS_PER_SEQUENCE; s.step++)
                one_event(&s);
        sim_done(&s);
}

/* Placements left to later passes whose pass never ran (it failed: out of
 * memory, the store) are not lost: the periodic check looks at every host's
 * units and sends them. */
TEST(placements_left_and_lost_go_out_at_the_periodic_check) {
        Event tick = { .kind = EVENT_TICK, .full_placement = true };
        size_t lost = 0, behind = 0;
        Sim s;

        sim_init(&s, 7);
        s.sync_max = 1;
        s.what = "apply";
        apply(&s, "web@.service",
              "[Service]\nExecStart=/bin/web\n\n[X-Baton]\nReplicas=8\nMaxPerHost=2\n");
        ASSERT_TRUE(s.n_later > 0);
        for (size_t i = 0; i < s.n_later; i++) {
                const HostModel *v = model_host(&s.m, s.later[i]);
                SimHost *h = sim_host(&s, s.later[i]);

                ASSERT_NOT_NULL(v);
                ASSERT_NOT_NULL(h);
                behind += h->n_units != v->n_placed;
                free(s.later[i]);
        }
        lost = s.n_later;
        s.n_later = 0;
        ASSERT_TRUE(behind > 0);

        s.sync_max = 0;
        s.what = "tick";
        run(&s, &tick, NULL);
        ASSERT_EQ_UINT(s.n_later, 0);
        for (size_t i = 0; i < N_HOSTS; i++) {
                const HostModel *v = model_host(&s.m, s.hosts[i].id);

                ASSERT_NOT_NULL(v);
                ASSERT_EQ_UINT(s.hosts[i].n_units, v->n_placed);
        }
        printf("# %zu hosts' Placements left, %zu of them behind, all sent by the check\n", lost,
               behind);
        sim_done(&s);
}

/* A host behind what it was sent gets it again, judged by when its
 * heartbeat was sent (Event.sent_after), not when it is read: a controller
 * reading its queue late resends nothing for heartbeats older than a
 * Placement's first five seconds, however late it reads them. */
static size_t resends_for(Sim *s, uint64_t read_at, uint64_t sent_after) {
        Event ev = { .kind = EVENT_HEARTBEAT,
                     .host = "h0",
                     .now = read_at,
                     .sent_after = sent_after,
                     .nonce = "n" };
        Plan p;
        Answer a = { 0 };
        size_t n;

        ASSERT_OK(reconcile(&s->m, &ev, &p, &a));
        n = p.n_sends;
        for (size_t i = 0; i < p.n_sends; i++) {
                ASSERT_STREQ(p.sends[i].host, "h0");
                ASSERT_FALSE(p.sends[i].new_generation);
        }
        plan_done(&p);
        answer_done(&a);
        return n;
}

/* A copy whose unit reloads (a live shard change runs ExecReload=) keeps
 * its process: its ready shards still have an owner. */
TEST(a_reloading_copy_still_owns_its_ready_shards) {
        uint8_t owners[12] = { 0 };
        uint64_t epoch;
        uint32_t total, owned = 0;
        Sim s;

        sim_init(&s, 11);
        for (size_t i = 0; i < N_HOSTS; i++) {
                s.hosts[i].up = true;
                report_heartbeat(&s, &s.hosts[i]);
        }
        apply_gw(&s);
        for (unsigned round = 0; round < 40; round++) {
                Event tick = { .kind = EVENT_TICK };

                s.now += 2 * USEC_PER_SEC;
                s.what = "tick";
                run(&s, &tick, NULL);
                for (size_t i = 0; i < N_HOSTS; i++)
                        copies_ready(&s, &s.hosts[i]);
        }
        for (size_t i = 0; i < N_HOSTS; i++)
                for (size_t k = 0; k < s.hosts[i].n_units; k++)
                        s.hosts[i].units[k].reloading = true;
        for (size_t i = 0; i < N_HOSTS; i++)
                report_shards(&s, &s.hosts[i]);
        reconcile_serving(model_shards(&s.m, "gw"), &epoch, &total);
        ASSERT_EQ_UINT(total, 12);
        ASSERT_OK(reconcile_count_owners(&s.m, "gw", epoch, total, owners, NULL));
        for (uint32_t sh = 0; sh < total; sh++)
                owned += owners[sh] > 0;
        ASSERT_EQ_UINT(owned, 12);
        sim_done(&s);
}

TEST(a_late_read_heartbeat_is_judged_by_when_it_was_sent) {
        Sim s = { .seed = 0, .now = 1700000000ULL * USEC_PER_SEC };
        ModelConfig config = { .host_timeout = 30 * USEC_PER_SEC,
                               .mass_loss_permille = 500,
                               .max_message_size = 4u << 20 };
        HostModel *v;
        uint64_t sent;

        model_init(&s.m, &config);
        s.m.epoch = 1;
        snprintf(s.hosts[0].id, sizeof(s.hosts[0].id), "h0");
        s.hosts[0].labels = "zone=a";
        s.hosts[0].up = true;
        s.mono = s.now;
        report_heartbeat(&s, &s.hosts[0]);
        apply(&s, "one.service", "[Service]\nExecStart=/bin/one\n");
        v = model_host(&s.m, "h0");
        ASSERT_NOT_NULL(v);
        ASSERT_TRUE(v->sent);
        sent = v->sent_at;
        /* The agent has not applied it (its heartbeats say generation 0). */
        v->applied_generation = 0;

        /* Read a minute later, sent a second after the Placement: not yet. */
        ASSERT_EQ_UINT(resends_for(&s, sent + 60 * USEC_PER_SEC, sent + USEC_PER_SEC), 0);
        /* Sent six seconds after it, still behind: again. */
        ASSERT_EQ_UINT(resends_for(&s, sent + 60 * USEC_PER_SEC, sent + 6 * USEC_PER_SEC), 1);
        /* When it was sent is unknown (no marker read back yet): as read. */
        ASSERT_EQ_UINT(resends_for(&s, sent + 6 * USEC_PER_SEC, 0), 1);
        ASSERT_EQ_UINT(resends_for(&s, sent + USEC_PER_SEC, 0), 0);

        /* Sent again (and still not applied): the next one waits 10 s, then 20 s. */
        for (unsigned k = 1; k <= 2; k++) {
                Event ev = { .kind = EVENT_HEARTBEAT,
                             .host = "h0",
                             .sent_after = sent + (5u << (k - 1)) * USEC_PER_SEC };
                uint64_t wait = (5u << k) * USEC_PER_SEC;

                s.now = sent + (5u << (k - 1)) * USEC_PER_SEC + USEC_PER_SEC;
                s.what = "heartbeat behind";
                run(&s, &ev, NULL);
                ASSERT_EQ_UINT(v->resends, k);
                sent = v->sent_at;
                v->applied_generation = 0; /* the simulated agent applied it: not here */
                ASSERT_EQ_UINT(resends_for(&s, sent + 300 * USEC_PER_SEC, sent + wait - 1), 0);
                ASSERT_EQ_UINT(resends_for(&s, sent + 300 * USEC_PER_SEC, sent + wait), 1);
        }
        sim_done(&s);
}

static unsigned env_unsigned(const char *name, unsigned def) {
        const char *v = getenv(name);
        return v && *v ? (unsigned) strtoul(v, NULL, 10) : def;
}

TEST(random_sequences_keep_the_invariants) {
        unsigned n = env_unsigned("BATON_RECONCILE_SEQUENCES", 500),
                 first = env_unsigned("BATON_RECONCILE_SEED", 1);

        for (unsigned seed = first; seed < first + n; seed++)
                sequence(seed);
        printf("# %u sequences of %u events from seed %u; %zu passes left services to later "
               "ones; %zu make-before-break restarts, %zu of them done; %zu passes with a "
               "copy serving on a silent host, %zu with a live change gaining shards\n",
               n, EVENTS_PER_SEQUENCE, first, passes_left_services, replaces_started, replaces_done,
               moves_off_silent, live_gains);
        ASSERT_TRUE(n < 50 || passes_left_services > 0);
        ASSERT_TRUE(n < 50 || replaces_done > 0);
        ASSERT_TRUE(n < 50 || moves_off_silent > 0);
        ASSERT_TRUE(n < 50 || live_gains > 0);
}

int main(void) {
        return tap_run(TESTS(random_sequences_keep_the_invariants,
                             placements_left_and_lost_go_out_at_the_periodic_check,
                             a_late_read_heartbeat_is_judged_by_when_it_was_sent,
                             a_reloading_copy_still_owns_its_ready_shards));
}
