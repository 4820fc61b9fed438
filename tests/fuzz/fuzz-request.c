/* SPDX-License-Identifier: MIT */
/* A Request (batonctl's RPC) as the controller receives it, then the pure
 * code each verb hands its arguments to, against the example fleet: apply
 * and plan parse every spec file and place the fleet as it would be; scale
 * places the new count; reshard plans the gateway's reshard, estimates it
 * through the start gate and the budget and runs it to the end, whose
 * layout must read back; drain checks the host id; rollout controls a
 * running reshard. */
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "fuzz-fleet.h"
#include "fuzz-wire.h"
#include "rpc.pb-c.h"
#include "shardplan.h"
#include "topology.h"

/* controller/rpc.c's verb table. */
static const char *const verbs[] = {
        "ping",   "hosts",   "status", "plan",    "shards", "alerts",  "audit",   "apply",
        "delete", "restart", "scale",  "reshard", "drain",  "undrain", "rollout", "backup",
};

static PlacementHost hosts[FUZZ_FLEET_N_HOSTS];

static void load_hosts(void) {
        static SpecLabel labels[FUZZ_FLEET_N_HOSTS][8];
        static char bufs[FUZZ_FLEET_N_HOSTS][64];
        static bool loaded;

        if (loaded)
                return;
        for (size_t i = 0; i < FUZZ_FLEET_N_HOSTS; i++) {
                size_t n = 0;

                strncpy(bufs[i], fuzz_fleet_hosts[i].labels, sizeof(bufs[i]) - 1);
                for (char *tok = strtok(bufs[i], " "); tok && n < 8; tok = strtok(NULL, " ")) {
                        char *eq = strchr(tok, '=');

                        *eq = '\0';
                        labels[i][n++] = (SpecLabel){ tok, eq + 1 };
                }
                hosts[i] = (PlacementHost){ .id = fuzz_fleet_hosts[i].id,
                                            .schedulable = true,
                                            .labels = labels[i],
                                            .n_labels = n,
                                            .memory_total = fuzz_fleet_hosts[i].memory };
        }
        loaded = true;
}

static const ServiceSpec *fleet_service(const char *name) {
        const ServiceSpec *const *specs = fuzz_fleet_load();

        for (size_t i = 0; i < FUZZ_FLEET_N_SPECS; i++)
                if (streq(specs[i]->name, name))
                        return specs[i];
        return NULL;
}

/* rpc-fleet.c's rpc_verb_apply(): all files or none, then the fleet as it
 * would be. */
static void apply(const Baton__V1__ApplyRequest *req) {
        const ServiceSpec *const *fleet = fuzz_fleet_load();
        ServiceSpec **parsed = calloc(req->n_files + 1, sizeof(ServiceSpec *));
        const ServiceSpec **next =
                calloc(req->n_files + FUZZ_FLEET_N_SPECS + 1, sizeof(ServiceSpec *));
        size_t n_parsed = 0, n_next = 0;
        bool refused = false;
        uint64_t instances = 0;

        if (!parsed || !next)
                abort();
        for (size_t i = 0; i < req->n_files; i++) {
                _cleanup_free_ char *error = NULL;
                ServiceSpec *s = NULL;
                const ServiceSpec *old;
                int r;

                r = spec_parse(req->files[i]->name, req->files[i]->text, &s, &error);
                if (r < 0) {
                        FUZZ_ASSERT(!s && (r != -EINVAL || error));
                        refused = true;
                        continue;
                }
                FUZZ_ASSERT(s && !error);
                for (size_t k = 0; k < n_parsed; k++)
                        refused = refused || streq(parsed[k]->name, s->name);
                /* check_sharded_change(): a running sharded service keeps
                 * its layout. */
                old = fleet_service(s->name);
                if (old && old->kind == SERVICE_SHARDED && s->kind == SERVICE_SHARDED &&
                    (old->count != s->count || old->shards != s->shards))
                        refused = true;
                parsed[n_parsed++] = s;
        }
        if (refused)
                goto finish;

        for (size_t i = 0; i < FUZZ_FLEET_N_SPECS; i++) {
                bool replaced = false;

                for (size_t k = 0; k < n_parsed; k++)
                        replaced = replaced || streq(parsed[k]->name, fleet[i]->name);
                if (!replaced)
                        next[n_next++] = fleet[i];
        }
        for (size_t k = 0; k < n_parsed; k++)
                next[n_next++] = parsed[k];
        for (size_t i = 0; i < n_next; i++)
                instances += next[i]->count;
        /* Placement is linear in instances × hosts; 65536 × files of them
         * prove nothing more than a few thousand. */
        if (instances <= 4096)
                fuzz_place_and_check(next, n_next, hosts, FUZZ_FLEET_N_HOSTS);

finish:
        for (size_t k = 0; k < n_parsed; k++)
                service_spec_free(parsed[k]);
        free(parsed);
        free(next);
}

/* rpc_verb_scale(): a count within bounds, placed. */
static void scale(const Baton__V1__ServiceRequest *req) {
        const ServiceSpec *const *fleet = fuzz_fleet_load();
        const ServiceSpec *s = fleet_service(req->service);
        const ServiceSpec *next[FUZZ_FLEET_N_SPECS];
        ServiceSpec *copy = NULL;

        if (!s || s->kind != SERVICE_STATELESS || req->count < s->min_replicas ||
            req->count > s->max_replicas)
                return;
        if (service_spec_copy(s, &copy) < 0)
                return;
        copy->count = req->count;
        for (size_t i = 0; i < FUZZ_FLEET_N_SPECS; i++)
                next[i] = fleet[i] == s ? copy : fleet[i];
        fuzz_place_and_check(next, FUZZ_FLEET_N_SPECS, hosts, FUZZ_FLEET_N_HOSTS);
        service_spec_free(copy);
}

static bool gate_open(uint32_t instance, const RangeList *shards, void *userdata) {
        return true;
}

/* Runs a reshard to the end with every new copy ready at once. */
static void run_to_end(Reshard *r, const ShardLayout *from) {
        ReshardAction acts[2 * 24 + 3];
        ReshardObserved obs[24];
        ShardLayout res;
        char *text = NULL;
        usec_t now = FUZZ_NOW_US;

        if (r->n_items > 24)
                return;
        for (size_t i = 0; i < r->n_items; i++)
                obs[i] = (ReshardObserved){ .instance = r->items[i].instance, .new_ready = true };
        for (unsigned step = 0; step < 4 * 24 && r->state != RESHARD_DONE; step++) {
                (void) reshard_step(r, obs, r->n_items, now, gate_open, NULL, acts,
                                    ELEMENTSOF(acts));
                now += USEC_PER_SEC;
        }
        if (r->state != RESHARD_DONE)
                fuzz_fail("a reshard with every copy ready is %s after 96 steps",
                          reshard_state_to_string(r->state));
        FUZZ_ASSERT(reshard_result(r, from, &res) >= 0);
        FUZZ_ASSERT(res.n_instances == r->to_instances && res.shard_count == r->to_count);
        if (shard_layout_format(&res, &text) >= 0) {
                ShardLayout back;

                FUZZ_ASSERT(shard_layout_parse(text, &back, NULL) >= 0);
                shard_layout_done(&back);
                free(text);
        }
        shard_layout_done(&res);
}

/* shards.c's shards_reshard(), and reshard_control() for rollout actions. */
static void reshard(const Baton__V1__ServiceRequest *req, const char *action) {
        const ServiceSpec *s = fleet_service(req->service);
        ShardLayout layout;
        Reshard *r = NULL;
        uint32_t n_to, to_count;
        uint64_t identifies, counted = 0;
        usec_t duration = 0;
        const RangeList **sets;
        size_t n = 0;
        BudgetVerdict v;
        int k;

        if (!s || s->kind != SERVICE_SHARDED || (req->instances == 0 && req->shards == 0))
                return;
        FUZZ_ASSERT(shard_layout_default(s->shards, s->count, &layout) >= 0);
        n_to = req->instances > 0 ? req->instances : layout.n_instances;
        to_count = req->shards > 0 ? req->shards : layout.shard_count;
        if (n_to < s->min_replicas || n_to > s->max_replicas || n_to > to_count)
                goto finish;
        k = reshard_new(s->name, 1, &layout, n_to, to_count, s->max_unavailable, s->health_timeout,
                        &r);
        if (k < 0) {
                FUZZ_ASSERT(k == -EALREADY || k == -EINVAL || k == -ENOMEM);
                FUZZ_ASSERT(k != -EINVAL || to_count >= RANGELIST_MAX_SHARD);
                goto finish;
        }

        identifies = reshard_cost(r);
        sets = calloc(r->n_items + 1, sizeof(RangeList *));
        if (!sets)
                abort();
        for (size_t i = 0; i < r->n_items; i++)
                if (rangelist_count(&r->items[i].to) > 0)
                        sets[n++] = &r->items[i].to;
        FUZZ_ASSERT(start_gate_estimate(s->identify_concurrency, s->identify_interval, sets, n,
                                        &duration, &counted) >= 0);
        free(sets);
        FUZZ_ASSERT(counted == identifies);
        if (r->to_epoch != r->from_epoch)
                FUZZ_ASSERT(identifies == to_count);
        v = budget_check(s->daily_start_budget, budget_reserve(s->daily_start_budget, to_count), 0,
                         identifies);
        FUZZ_ASSERT(v.cost == identifies && v.spent == 0);

        if (action) {
                if (streq(action, "pause"))
                        (void) reshard_pause(r, NULL);
                else if (streq(action, "resume"))
                        (void) reshard_resume(r);
                else if (streq(action, "abort"))
                        (void) reshard_abort(r, NULL);
                (void) reshard_resume(r);
        }
        if (r->state == RESHARD_RUNNING)
                run_to_end(r, &layout);

finish:
        reshard_free(r);
        shard_layout_done(&layout);
}

static void drive(const CodecDecoded *d) {
        const Baton__V1__Request *req = (const Baton__V1__Request *) d->body;
        bool known = false;

        load_hosts();
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                known = known || streq(verbs[i], req->verb);
        if (!known)
                return; /* "unknown verb" */

        switch (req->args_case) {
        case BATON__V1__REQUEST__ARGS_APPLY:
                FUZZ_ASSERT(req->apply);
                if ((streq(req->verb, "apply") || streq(req->verb, "plan")) &&
                    req->apply->n_files > 0)
                        apply(req->apply);
                break;
        case BATON__V1__REQUEST__ARGS_SERVICE:
                FUZZ_ASSERT(req->service);
                if (isempty(req->service->service))
                        break;
                if (streq(req->verb, "scale"))
                        scale(req->service);
                else if (streq(req->verb, "reshard"))
                        reshard(req->service, NULL);
                break;
        case BATON__V1__REQUEST__ARGS_HOST:
                FUZZ_ASSERT(req->host);
                if (topology_host_id_is_valid(req->host->host))
                        FUZZ_ASSERT(!strchr(req->host->host, '.'));
                break;
        case BATON__V1__REQUEST__ARGS_ROLLOUT: {
                Baton__V1__ServiceRequest sr = BATON__V1__SERVICE_REQUEST__INIT;

                FUZZ_ASSERT(req->rollout);
                /* A reshard of the gateway to 7 instances, controlled. */
                sr.service = req->rollout->service;
                sr.instances = 7;
                if (streq(req->verb, "rollout"))
                        reshard(&sr, req->rollout->action);
                break;
        }
        default:
                break;
        }
}

const FuzzWireTarget fuzz_wire_target = {
        .rx = &fuzz_rx_rpc,
        .body = &baton__v1__request__descriptor,
        .drive = drive,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        return fuzz_wire_run(&fuzz_wire_target, data, size);
}
