/* SPDX-License-Identifier: MIT */
/* What one pass of reconcile() decided, as data: the desired state that
 * changes (services, instances, hosts' administrative state, shard states,
 * rollouts, the epoch), the alerts raised and resolved, and what goes out
 * (Placements, Restarts, shard-map events). The shell stores the records a
 * plan implies in one transaction, then plan_apply() makes it the model's
 * state, then the shell publishes. A plan owns everything it holds. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* A service created or replaced (spec) or deleted (spec NULL). `store`: its
 * row changes (its text or count); an [X-Baton]-free count change from a
 * reshard stores too. */
typedef struct PlanService {
        char *name;
        ServiceSpec *spec;
        bool store;
} PlanService;

/* An instance placed, moved, or removed / unplaced (host NULL). */
typedef struct PlanInstance {
        char *service;
        uint32_t instance;
        char *host;
} PlanInstance;

/* A host's administrative state (drain, undrain) to set and store. */
typedef struct PlanHost {
        char *host;
        bool drained;
} PlanHost;

/* One unit of a Placement. Strings are owned, but unit_text and
 * template_name point into the spec (in the model or in the plan's
 * services, which outlive the plan's publication). */
typedef struct PlanUnit {
        char *name;
        const char *unit_text;
        uint64_t text_hash; /* FNV-1a of unit_text, for the host's digest */
        size_t text_len;
        const char *template_name; /* "" for a singleton */
        const char *service;
        uint32_t instance;
        bool running;
        char config_hash[17];
        bool sharded;
        char *shards; /* range list */
        uint32_t shard_count;
        uint64_t shard_epoch;
        bool shards_reload; /* ShardChange=reload: a shard change reloads the unit */
} PlanUnit;

/* A Placement to send to `host`: a new generation when `new_generation`
 * (stored), else the same one again. */
typedef struct PlanSend {
        char *host;
        uint64_t generation;
        uint64_t digest;
        bool new_generation;
        PlanUnit *units;
        size_t n_units;
} PlanSend;

typedef struct PlanRestart {
        char *id;
        char *host;
        char *unit;
        char *service;
        uint32_t instance;
} PlanRestart;

/* An alert raised (kept open and published), resolved (closed and published
 * with resolved set) or, for a notice kind, published once. */
typedef struct PlanAlert {
        AlertKind kind;
        bool raise;
        char *service;
        char *host;
        char *summary;
        OpenAlert open;        /* made by plan_reserve() for a raise, moved by plan_apply() */
        uint64_t raised_at_us; /* a resolution: when it was raised (plan_reserve()) */
} PlanAlert;

/* A rollout created or changed (rollout), or forgotten (NULL). */
typedef struct PlanRollout {
        char *service;
        Rollout *rollout;
} PlanRollout;

/* A shard state created or changed (state), or forgotten (NULL). `store`:
 * its layout, reshard or ledger changed (the gate and holds are not stored). */
typedef struct PlanShards {
        char *service;
        ShardState *state;
        bool store;
} PlanShards;

/* A host whose Placement a later pass computes (Event.sync_max). */
typedef struct PlanLater {
        char *host;
        bool resend; /* send it even if unchanged */
} PlanLater;

/* What the shell logs, once, at the level given (LOG_* numbers). */
typedef struct PlanLog {
        int level;
        char *text;
} PlanLog;

typedef struct Plan {
        PlanService *services;
        size_t n_services;
        PlanInstance *instances; /* sorted by (service, instance) */
        size_t n_instances;
        PlanHost *hosts;
        size_t n_hosts;
        PlanSend *sends;
        size_t n_sends;
        PlanLater *later; /* hosts to sync in passes of their own, in order */
        size_t n_later;
        /* Services to place in passes of their own (Event.place_max), in
         * name order. */
        char **later_services;
        size_t n_later_services;
        PlanRestart *restarts;
        size_t n_restarts;
        PlanAlert *alerts;
        size_t n_alerts;
        PlanRollout *rollouts;
        size_t n_rollouts;
        PlanShards *shards;
        size_t n_shards;
        char **map_changed; /* services whose shard map changed: an event each */
        size_t n_map_changed;
        char **store_hosts; /* hosts whose record (liveness, drain) to store */
        size_t n_store_hosts;
        PlanLog *logs;
        size_t n_logs;
        uint64_t epoch;           /* raised to this (stored), 0: unchanged */
        uint64_t next_rollout_id; /* 0: unchanged */
        size_t n_moved;           /* instances that changed host (for the log) */
        /* Placement problems as the placement left them (for answers). */
        PlacementProblem *problems;
        size_t n_problems;
} Plan;

/* The plan's change of (service, instance), or NULL: p->instances is kept
 * sorted by (service, instance), so a binary search. */
const PlanInstance *plan_find_instance(const Plan *p, const char *service, uint32_t instance);
/* The plan's instances of `service` (contiguous: they are sorted) in *ret,
 * and how many. */
size_t plan_service_instances(const Plan *p, const char *service, const PlanInstance **ret);

void plan_init(Plan *p);
void plan_done(Plan *p);
/* Whether the plan changes anything that must be stored. */
bool plan_has_records(const Plan *p);

/* Makes the plan the model's state: takes over the new specs, shard states
 * and rollouts (the plan keeps nothing of them), moves instances, sets hosts'
 * drain flags and sent generations, opens and closes alerts. Cannot fail
 * for lack of memory beyond what plan_reserve() allocated: call that first. */
void plan_apply(Plan *p, Model *m, uint64_t now_us);
/* Allocates what plan_apply() will need (bigger arrays), so that applying
 * after a successful commit never fails. -ENOMEM. */
int plan_reserve(Plan *p, Model *m);

/* Builders (reconcile.c). Each returns -ENOMEM or 0; strings are copied. */
int plan_store_host(Plan *p, const char *host);
int plan_log(Plan *p, int level, const char *fmt, ...) _printf_(3, 4);
int plan_alert(Plan *p, AlertKind kind, bool raise, const char *service, const char *host,
               const char *fmt, ...) _printf_(6, 7);
