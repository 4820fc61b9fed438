/* SPDX-License-Identifier: MIT */
/* The controller's side of sharded services (shards.c): layouts and reshards
 * (controller/core/shardplan), the start gate and the daily budget
 * (controller/core/budget), the shard map built from the agents'
 * ShardReports, its alerts and its events. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "budget.h"
#include "rangelist.h"
#include "shardplan.h"
#include "status.pb-c.h"

struct Controller;
struct HostView;
struct ServiceSpec;

/* One sharded copy as its host last reported it (kept in the HostView). */
typedef struct ShardCopyReport {
        char *unit;
        char *service;
        uint32_t instance;
        uint64_t epoch;
        uint32_t shard_count;
        RangeList assigned;
        RangeList ready;
        RangeList connecting;
        RangeList failed;
        bool active;
} ShardCopyReport;

/* A copy's start under way: the gate is held for its shards until it is
 * ready, gone, or past HealthTimeout. */
typedef struct ShardHold {
        uint32_t instance;
        bool new_copy; /* the reshard's new copy, else the live one */
        RangeList shards;
        usec_t since;
} ShardHold;

typedef struct ShardService {
        char *service;
        ShardLayout layout;
        Reshard *reshard; /* NULL: none under way */
        BudgetLedger ledger;
        StartGate gate;
        /* Per instance of the layout: its live copy is placed on a host but
         * not yet let through the gate, so it is sent installed but stopped. */
        bool *waiting;
        uint32_t n_waiting;
        ShardHold *holds;
        size_t n_holds;
        bool budget_low;
        usec_t unowned_since; /* some shard without a ready owner since (0: none) */
        char *map_digest;     /* of the last shard-map event */
        bool dirty;           /* layout/reshard/ledger changed: persist */
} ShardService;

/* What a host runs of one sharded instance: its live copy and, during a
 * reshard, the new one. */
typedef struct ShardCopy {
        char *unit;   /* owned */
        char *shards; /* owned, range list text */
        uint32_t shard_count;
        uint64_t epoch;
        bool running;
} ShardCopy;

int shards_load(struct Controller *c);
void shards_done(struct Controller *c);

/* The ShardService of a sharded service, created with the default layout
 * (every instance waiting for the gate) when new. NULL on OOM or for a spec
 * that is not sharded. */
ShardService *shards_service(struct Controller *c, const struct ServiceSpec *s);
/* The service was deleted: forget its shard state. */
void shards_forget(struct Controller *c, const char *service);

/* The copies of `instance` to place (0, 1 or 2) into ret[0…1]; free each
 * with shard_copy_done(). */
int shards_copies(struct Controller *c, const struct ServiceSpec *s, uint32_t instance,
                  ShardCopy ret[2], size_t *ret_n);
void shard_copy_done(ShardCopy *copy);

/* Placement moved or created the live copy of an instance: it waits for the
 * gate before it starts. */
void shards_placed(struct Controller *c, const struct ServiceSpec *s, uint32_t instance);

/* Every instance of a sharded service ready: active and every shard it owns
 * reported ready in the serving epoch. */
bool shards_instance_ready(struct Controller *c, const struct ServiceSpec *s, uint32_t instance,
                           const char *host);
/* May a rollout restart `instance` now (the gate agrees)? If `take`, the
 * gate is taken and the budget charged for it. */
bool shards_may_restart(struct Controller *c, const struct ServiceSpec *s, uint32_t instance,
                        bool take);

/* Identifies `restarts` automatic restarts of `unit` on `host` cost. */
void shards_charge_restarts(struct Controller *c, const char *host, const char *unit,
                            uint32_t restarts);

/* An agent's ShardReport: replaces what the host reported before. */
void shards_handle_report(struct Controller *c, struct HostView *v,
                          const Baton__V1__ShardReport *rep);
void shard_reports_clear(struct HostView *v);

/* Budget verdict for spending `cost` on service s now. */
BudgetVerdict shards_budget_check(struct Controller *c, const struct ServiceSpec *s, uint64_t cost);

/* Starts a reshard: -ENOENT unknown service, -EINVAL not sharded or bad
 * numbers (*ret_error says why), -EBUSY one (or a rollout) under way,
 * -EALREADY nothing to change, -EDQUOT over budget (*ret_error has the
 * numbers), -EIO when it could not be stored (then nothing changed). */
int shards_reshard(struct Controller *c, const char *service, uint32_t instances, uint32_t shards,
                   bool dry_run, json_t **ret_plan, char **ret_error);
/* Operator controls of a reshard under way (rollout pause/resume/abort):
 * 1 done (and stored), 0 nothing to do (no reshard, or not in a state for
 * it), -errno when it could not be stored (then nothing changed). */
int shards_reshard_control(struct Controller *c, const char *service, const char *action);
Reshard *shards_reshard_of(struct Controller *c, const char *service);

/* The shard map of a service as `batonctl shards` shows it. */
json_t *shards_map_json(struct Controller *c, const struct ServiceSpec *s);
json_t *reshard_json(const Reshard *r);
/* {"epoch", "total", "ready", "resharding"} for `batonctl status`; JSON null
 * for a service that is not sharded. */
json_t *shards_summary_json(struct Controller *c, const struct ServiceSpec *s);
/* The shard total that serves now. */
uint32_t shards_summary_total(struct Controller *c, const struct ServiceSpec *s);

/* Gate, reshards, alerts and map events; from the 250 ms timer. */
void shards_step(struct Controller *c);
