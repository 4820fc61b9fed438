/* SPDX-License-Identifier: MIT */
/* The controller's whole state as plain data: what hosts report (observed),
 * what operators asked for (desired: services and their placement, shard
 * layouts, reshards, rollouts) and what the controller did about it (the
 * Placements sent, the start gate and budget ledgers, the open alerts). The
 * shell owns one Model; reconcile.c reads it and says what changes, as a
 * Plan; model_apply() makes the change once the shell has stored it. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "budget.h"
#include "flap.h"
#include "hosts.h"
#include "placement.h"
#include "rangelist.h"
#include "ratelimit.h"
#include "rollout.h"
#include "shardplan.h"
#include "spec.h"

/* ---- what hosts report ----------------------------------------------------- */

/* One managed unit as its host last reported it (heartbeat or unit event). */
typedef struct UnitObs {
        char *name;
        char *active_state;
        char *sub_state;
        uint32_t n_restarts;
        uint32_t main_pid;
        uint64_t state_change_us; /* systemd's StateChangeTimestamp */
} UnitObs;

/* One sharded copy as its host reported it, cut to what the controller placed
 * there (a host vouches only for its own copies and shards). */
typedef struct CopyObs {
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
        uint64_t seen_at; /* when the report was taken in (wall µs) */
} CopyObs;

typedef struct FlapEntry {
        char *unit;
        FlapTracker tracker;
} FlapEntry;

/* (service, instance): a key into Model.instances. `service` borrows the
 * Instance's own string. */
typedef struct InstanceKey {
        const char *service;
        uint32_t instance;
} InstanceKey;

/* Host.userdata of the model's host table. */
typedef struct HostModel {
        /* Facts from heartbeats, terminal-safe. */
        char *boot_id;
        char *agent_version;
        char *labels; /* "k=v k=v" */
        char *systemd_version;
        char *system_state;
        SpecLabel *label_list; /* labels parsed, pointing into label_buf */
        size_t n_labels;
        char *label_buf;
        uint32_t cores;
        uint64_t memory_total;
        uint64_t memory_available;
        uint32_t load1_x100;
        uint64_t applied_epoch;
        uint64_t applied_generation;
        uint64_t max_epoch_seen;
        uint64_t first_seen_us; /* wall clock */
        uint64_t last_seen_us;
        uint64_t state_since_us;
        bool dirty; /* facts changed since the last flush to the store */
        /* The shell's: its Placement waits in the controller's SyncQueue. */
        bool sync_queued;
        /* A pass left its Placement to a later one, to be sent even if
         * unchanged (plan_apply() sets it, a Placement sent clears it):
         * every pass that computes the host's units sends it. */
        bool sync_resend;

        UnitObs *units; /* sorted by name, no duplicates */
        size_t n_units;
        uint32_t units_active;
        CopyObs *copies;
        size_t n_copies;
        FlapEntry *flaps; /* sorted by unit */
        size_t n_flaps;

        /* The instances placed here (sorted), and the memory they reserve:
         * what the host's Placement is made of, kept as placement changes. */
        InstanceKey *placed;
        size_t n_placed;
        size_t n_incoming; /* plan_reserve()'s count of what a plan adds; 0 between plans */
        uint64_t memory_reserved;

        /* The Placement sent: its generation (persisted), a digest of its
         * units (a new generation only when they change) and when it went. */
        uint64_t generation;
        uint64_t digest;
        bool sent;
        usec_t sent_at;   /* wall clock */
        uint32_t resends; /* of this generation: each waits twice as long */

        /* status_rate_limit (the shell's). */
        TokenBucket status_bucket;
        uint64_t status_dropped;
        usec_t status_dropped_logged;
} HostModel;

HostModel *host_model_free(HostModel *v);
void host_model_free_void(void *v);
/* The unit `name` as last reported (binary search), or NULL. */
const UnitObs *host_model_unit(const HostModel *v, const char *name);
/* Whether a unit in `active_state` runs its process: active, or reloading
 * (a live shard change is a reload). */
bool unit_state_runs(const char *active_state) _pure_;
UnitObs *host_model_unit_mut(HostModel *v, const char *name);
void unit_obs_done(UnitObs *u);
void copy_obs_done(CopyObs *c);
void host_model_clear_units(HostModel *v);
void host_model_clear_copies(HostModel *v);
/* Replaces the labels (text and parsed list). -ENOMEM leaves them. */
int host_model_set_labels(HostModel *v, const char *labels);

/* ---- desired state -------------------------------------------------------- */

/* Where one instance runs. */
typedef struct Instance {
        char *service;
        uint32_t instance;
        char *host;
} Instance;

/* A copy's start under way: the gate is held for its shards until it is
 * ready, gone, or past HealthTimeout. */
typedef struct ShardHold {
        uint32_t instance;
        bool new_copy; /* the reshard's new copy, else the live one */
        RangeList shards;
        usec_t since; /* wall clock */
} ShardHold;

/* A sharded service's shard state. */
typedef struct ShardState {
        char *service;
        ShardLayout layout;
        Reshard *reshard; /* NULL: none under way */
        BudgetLedger ledger;
        StartGate gate;
        /* Per instance of the layout: its live copy is placed but not yet let
         * through the gate, so it is sent installed but stopped. */
        bool *waiting;
        uint32_t n_waiting;
        ShardHold *holds;
        size_t n_holds;
        bool budget_low;
        usec_t unowned_since; /* some shard without a ready owner since (0: none) */
        uint64_t map_digest;  /* of the last shard-map event; 0: none sent */
} ShardState;

ShardState *shard_state_free(ShardState *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ShardState *, shard_state_free)
int shard_state_copy(const ShardState *s, ShardState **ret);
/* A sharded service's state as a restarted controller loads it: the
 * instances in `waiting` (NULL: none) wait for the gate as they did, and
 * every other copy holds its buckets until it reports ready (nothing says
 * which were still identifying), and every bucket waits one IdentifyInterval
 * (nor when the last identify was). Takes over layout, reshard and ledger, also
 * on failure. */
int shard_state_restore(const ServiceSpec *s, ShardLayout *layout, Reshard *reshard,
                        BudgetLedger *ledger, const RangeList *waiting, usec_t now,
                        ShardState **ret);
/* The instances waiting for the gate, as a range list (for the store). */
int shard_state_waiting(const ShardState *s, RangeList *ret);
/* A reshard that is neither DONE nor ABORTED. */
bool shard_state_resharding(const ShardState *s);

typedef struct OpenAlert {
        char *id; /* alert_id() */
        AlertKind kind;
        int severity;
        char *service;
        char *host;
        char *summary;
        uint64_t raised_at_us;
} OpenAlert;

void open_alert_done(OpenAlert *a);

/* What decides, beyond the specs. */
typedef struct ModelConfig {
        usec_t host_timeout;
        usec_t shard_unowned_after;
        /* More than this share (per mille) of the hosts down within one
         * host_timeout holds re-placement (mass-host-loss). */
        uint32_t mass_loss_permille;
        size_t max_message_size; /* a Placement must fit (the codec's limit) */
} ModelConfig;

typedef struct Model {
        ModelConfig config;
        HostTable hosts;        /* Host.userdata: HostModel */
        ServiceSpec **services; /* sorted by name */
        size_t n_services;
        Instance *instances; /* sorted by (service, instance) */
        size_t n_instances;
        ShardState **shards; /* sorted by service */
        size_t n_shards;
        Rollout **rollouts; /* sorted by service; at most one per service */
        size_t n_rollouts;
        OpenAlert *alerts; /* sorted by id */
        size_t n_alerts;
        uint64_t epoch;
        uint64_t next_rollout_id;
} Model;

void model_init(Model *m, const ModelConfig *config);
void model_done(Model *m);

const ServiceSpec *model_service(const Model *m, const char *name);
const Instance *model_instance(const Model *m, const char *service, uint32_t instance);
/* The first instance of `service` in m->instances (they are contiguous), and
 * how many there are. */
size_t model_service_instances(const Model *m, const char *service, const Instance **ret);
/* Index into m->instances of the first instance at or after (service,
 * instance) in their order; m->n_instances if none. */
size_t model_instance_index(const Model *m, const char *service, uint32_t instance);
const ShardState *model_shards(const Model *m, const char *service);
const Rollout *model_rollout(const Model *m, const char *service);
const OpenAlert *model_alert(const Model *m, const char *id);
HostModel *model_host(const Model *m, const char *id);
/* Compare (service, instance) keys: for bsearch and merges. */
int instance_key_cmp(const char *s1, uint32_t i1, const char *s2, uint32_t i2);
/* The run of one service's entries in an array sorted by (service,
 * instance) of `size`-byte structs whose first member is the `char *`
 * service (Instance, PlanInstance): how many, the first at *ret_first. */
size_t service_run(const void *base, size_t n, size_t size, const char *service, size_t *ret_first);

/* Loading (from the store, at start). Each takes ownership of what it is
 * given, also on failure. */
int model_add_service(Model *m, ServiceSpec *s);
int model_add_instance(Model *m, const char *service, uint32_t instance, const char *host);
int model_add_shards(Model *m, ShardState *s);
int model_add_rollout(Model *m, Rollout *r);
int model_add_alert(Model *m, OpenAlert *a);
/* After loading: sorts everything (loading order does not matter) and
 * indexes instances by host (HostModel.placed). Hosts of instances must be
 * in the host table. -ENOMEM. */
int model_index(Model *m);
