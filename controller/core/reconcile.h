/* SPDX-License-Identifier: MIT */
/* The controller's one decision point. reconcile() takes the whole model and
 * one event (a heartbeat, a unit change, a shard report, hosts judged up or
 * down, a request, a tick for timeouts) and returns what changes as a Plan:
 * the placement of every instance it touches, each affected host's unit set
 * with its digest (a Placement to send when it changed), the restarts to
 * issue, the start gate and budget ledger, rollouts and reshards advanced,
 * alerts raised and resolved. It never changes the model: the shell stores
 * the plan's records in one transaction, applies it (plan_apply()) and
 * publishes. Steps of rollouts, reshards and drains advance on the event that
 * makes them possible; ticks only time things out. Pure: time and randomness
 * come in the event. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hosts.h"
#include "model.h"
#include "plan.h"

typedef enum EventKind {
        EVENT_TICK,         /* timeouts: every rollout, reshard, gate and shard alert */
        EVENT_CONNECTED,    /* the broker is back: every host's Placement again */
        EVENT_HOSTS,        /* liveness transitions (transitions[]) */
        EVENT_HEARTBEAT,    /* host's facts and units were refreshed */
        EVENT_UNITS,        /* units of host changed state (units[]) */
        EVENT_SHARD_REPORT, /* host reported its sharded copies */
        EVENT_RESULT,       /* host's result of a command */
        EVENT_APPLY,        /* specs[] (taken over), or only planned when dry_run */
        EVENT_DELETE,       /* service */
        EVENT_SCALE,        /* service to count */
        EVENT_DRAIN,        /* host, drained */
        EVENT_RESTART,      /* service, instance (-1: a rolling restart of all) */
        EVENT_RESHARD,      /* service to instances/shards (0: unchanged), or dry_run */
        EVENT_ROLLOUT,      /* action ("pause", "resume", "abort") on service ("" = all) */
        EVENT_CONFIRM_DOWN, /* hosts[] held by mass-host-loss are down for good (all: every one) */
        EVENT_SYNC,         /* hosts[] and services[] earlier passes left (Plan.later…) */
        _EVENT_KIND_MAX,
} EventKind;

/* "tick", "hosts", "apply", …: for logs. */
const char *event_kind_to_string(EventKind k) _pure_;

/* unit-flapping: this many automatic restarts within the window. */
#define FLAP_WINDOW_US (60 * USEC_PER_SEC)
#define FLAP_THRESHOLD 3

/* A unit whose state moved (EVENT_UNITS, or from a heartbeat). */
typedef struct UnitChange {
        const char *unit;
        const char *service;   /* as reported; may be "" */
        uint32_t new_restarts; /* automatic restarts since last seen */
        int flap;              /* 1: started flapping, -1: stopped (or gone), 0 */
        bool failed;           /* unit events: now failed */
        bool active;           /* unit events: now active */
        const char *result;    /* systemd's Result, for unit-failed */
} UnitChange;

typedef struct Event {
        EventKind kind;
        uint64_t now; /* wall clock µs */
        /* Wall clock µs: a report read now was sent after this (the newest
         * marker read back before it); 0: unknown, taken as `now`. */
        uint64_t sent_after;
        const char *nonce; /* random, hex: makes restart ids unique */

        const char *host;
        const char *service;
        const HostTransition *transitions;
        const usec_t *since; /* per transition: how long the host was in its old state */
        size_t n_transitions;
        const UnitChange *units;
        size_t n_units;
        bool labels_changed; /* EVENT_HEARTBEAT: the host's labels changed */
        /* Place every service, not only those the event may change: the
         * periodic check (with EVENT_TICK, which then places), and tests
         * that compare the two. */
        bool full_placement;
        const char *const *hosts; /* EVENT_CONFIRM_DOWN, EVENT_SYNC */
        size_t n_hosts;
        const char *const *services; /* EVENT_SYNC: services to place */
        size_t n_services;
        /* The most hosts whose Placements this pass computes; the rest go
         * to Plan.later for passes of their own (EVENT_SYNC), so no pass
         * of a large fleet holds the loop for all of them. 0: no limit. */
        size_t sync_max;
        /* The most instances this pass places, counted by service (the
         * larger of its count and the instances it has); the services past
         * it, in name order, go to Plan.later_services for passes of their
         * own. A pass places at least one service (an apply or scale pass
         * need not, unless `place_now`: it places half as many and leaves
         * a service larger than that to a pass of its own), and always a
         * sharded one (the start gate counts on it) and one whose instances
         * it already moved. A dry run places everything. 0: no limit. */
        size_t place_max;
        /* EVENT_APPLY that lists every placement it makes (`apply --all`):
         * it places at least one service, to list it. */
        bool place_now;
        bool all;
        ServiceSpec **specs; /* EVENT_APPLY: taken over by reconcile() */
        size_t n_specs;
        const char *errors; /* EVENT_APPLY: the files that did not parse, one per line */
        bool dry_run;
        uint32_t count;
        uint32_t instances;
        uint32_t shards;
        int32_t instance;
        /* EVENT_RESTART of a sharded service: stop and start its copies in
         * place (their shards dark while they identify) instead of starting
         * replacements beside them (MaxSurge=). */
        bool in_place;
        bool drained;
        const char *action;

        /* EVENT_RESULT */
        bool ok;
        bool restart;     /* of a Restart (else of a Placement) */
        const char *what; /* "placement 3/17", "restart ID" */
        const char *error;
        const char *details; /* the failed units, for the alert */
} Event;

typedef enum Verdict {
        VERDICT_OK,
        VERDICT_USAGE,
        VERDICT_REFUSED,
        VERDICT_FAILED,
} Verdict;

/* What a request learns beyond the plan. */
typedef struct Answer {
        Verdict verdict;
        char *error; /* why, when not OK */
        /* apply: per spec, what it does ("create", "update", "unchanged") and
         * whether a rolling update started (its id) or why not. */
        struct AnswerService {
                char *service;
                const char *action;
                uint64_t rollout;
                char *rollout_error;
                uint64_t identifies; /* sharded and (re)started: its starts */
                usec_t duration;
                bool budget_allowed;
                bool have_identifies;
        } * services;
        size_t n_services;
        uint64_t rollout; /* restart: the rollout started */
        bool replace;     /* ...as a make-before-break restart (a reshard that
                           * replaces each copy with one owning the same shards) */
        char *restart_id; /* restart SERVICE@N */
        char *restart_host;
        uint32_t previous; /* scale: the count before */
        size_t removed;    /* delete: instances removed; drain: moved; confirm-down: moved */
        /* reshard: the plan's figures */
        struct {
                uint32_t from_instances, from_shards, to_instances, to_shards;
                uint64_t from_epoch, to_epoch;
                uint64_t identifies, moves;
                usec_t duration;
                BudgetVerdict budget;
                Reshard *reshard; /* owned: the reshard as planned */
        } reshard;
        /* restart of a sharded service: what it costs (`restart --dry-run`) */
        struct {
                bool sharded;
                uint64_t identifies;
                uint32_t surge; /* replacement copies at once beside live ones */
                /* Shards × time without a ready owner the plan expects: 0
                 * make-before-break; in place, each shard from its copy's stop
                 * until its identify slot ends. */
                usec_t dark_shard_us;
                usec_t duration;
                BudgetVerdict budget;
        } restart_plan;
} Answer;

void answer_done(Answer *a);

/* One pass. On -ENOMEM nothing is decided (the plan is empty). A request
 * that is refused gives a verdict and an empty plan. */
int reconcile(const Model *m, const Event *ev, Plan *ret, Answer *ret_answer);

/* What an agent sends for one instance: the units of its copies (1 or 2 for
 * a sharded instance during a reshard, else 1). For `batonctl status` and
 * the placement messages. */
int reconcile_instance_unit(const Model *m, const ServiceSpec *s, uint32_t instance, char **ret);
/* Whether an instance is active where it is placed (and, sharded, every shard
 * it owns ready). */
bool reconcile_instance_healthy(const Model *m, const Instance *in);

/* A mass-host-loss is open: hosts that are down keep their instances until
 * they return or an operator confirms them down. */
bool reconcile_holding(const Model *m);
/* Host h is down and keeps its instances because of an open mass-host-loss
 * (for `status`, `hosts` and `plan`: what confirm-down would move). */
bool reconcile_host_held(const Model *m, const Host *h);

/* The serving epoch and shard total of a sharded service (a new-total reshard
 * serves its new epoch once cut over). */
void reconcile_serving(const ShardState *s, uint64_t *ret_epoch, uint32_t *ret_count);
/* Ready owners per shard of the serving epoch (owners[total], saturating)
 * and the shards reported failed. */
int reconcile_count_owners(const Model *m, const char *service, uint64_t epoch, uint32_t total,
                           uint8_t *owners, RangeList *failed);
/* The shards of the serving epoch without a ready owner (owners[sh] == 0)
 * whose last known owner is on a silent host: one down since no more than
 * `within` before `now` (0: any), whose last report had them ready. Their
 * copy may still serve: the agent may be what stopped. */
int reconcile_unknown_shards(const Model *m, const char *service, uint64_t epoch, uint32_t total,
                             const uint8_t *owners, usec_t now, usec_t within, RangeList *ret);
/* The copies of an instance to place: unit, shards, count, epoch, running. */
typedef struct CopyPlan {
        char *unit;
        char *shards;
        uint32_t shard_count;
        uint64_t epoch;
        bool running;
        /* Where it runs when not on the instance's host (a moved instance's
         * live copy until its replacement is ready); borrowed from the
         * reshard item. NULL: the instance's host. */
        const char *host;
} CopyPlan;
int reconcile_copies(const ShardState *ss, const char *service, uint32_t instance, CopyPlan ret[2],
                     size_t *ret_n);
void copy_plan_done(CopyPlan *c);
/* The copy `unit` of a sharded service as `host` reported it (alive hosts
 * only), or NULL. */
const CopyObs *reconcile_copy_report(const Model *m, const char *host, const char *unit);
