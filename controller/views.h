/* SPDX-License-Identifier: MIT */
/* The model as batonctl and event consumers see it: one JSON document per
 * read verb (README.md documents the fields). Reading changes nothing. */
#pragma once

#include <jansson.h>

#include "jsontext.h"
#include "model.h"
#include "plan.h"
#include "reconcile.h"

/* JSON null, or while a mass-host-loss is held {"held_hosts": [...],
 * "held_instances": N}: what `batonctl hosts confirm-down` would move. */
json_t *view_mass_loss(const Model *m);
/* How many instances `batonctl status [SERVICE]` would list. */
size_t view_status_instances(const Model *m, const char *only);

/* `batonctl status [SERVICE]`, written as text in steps so that a large
 * fleet's answer does not hold the loop: every service with its instances
 * (`list`), or with how many are healthy only ("instances_listed" false).
 * The services are those of the moment it began, each looked up again at
 * every step (one deleted meanwhile is left out, one scaled is listed or
 * counted as far as it then goes). */
typedef struct StatusCursor {
        char **services; /* names */
        bool begun;      /* the document is open */
        bool complete;   /* and closed */
        size_t n_services;
        size_t next; /* index into services */
        bool open;   /* services[next]'s instance list is being written */
        bool first_service;
        uint32_t instance; /* the next one of services[next] */
        int healthy;       /* of services[next], so far */
        bool list;         /* the instances, not only counts */
        size_t total;      /* instances written */
} StatusCursor;

int status_cursor_init(StatusCursor *cur, const Model *m, const char *only, bool list);
/* Writes about `budget` more instances: 1 when the document is complete, 0
 * when there is more to write, -ENOMEM. */
int status_cursor_step(StatusCursor *cur, const Model *m, JsonText *out, size_t budget);
void status_cursor_done(StatusCursor *cur);
/* The shard map of a sharded service (`batonctl shards`); NULL on OOM or
 * when it has no shard state. Above `max` copies (0: no limit) only those
 * that are not settled, at most max ("copies_listed": false); the list of
 * every shard only with `per_shard`. */
json_t *view_shards(const Model *m, const ServiceSpec *s, uint64_t now, size_t max, bool per_shard);
/* {"epoch", "total", "ready", "resharding"}, or JSON null if not sharded. */
json_t *view_shards_summary(const Model *m, const ServiceSpec *s);
json_t *view_reshard(const Reshard *r);
json_t *view_budget(const BudgetVerdict *v);
json_t *view_rollouts(const Model *m, const char *only);
json_t *view_alerts(const Model *m);
/* apply/plan: services, "changes" (how many of each kind),
 * "placements_listed", problems, "placed_later" (services a later pass
 * places: Plan.later_services); and in *ret_placements, as JSON text, the
 * array of placements (every instance and how it changes against the model)
 * when there are at most placements_max, unless that is 0 (else NULL). */
json_t *view_apply(const Model *m, const Plan *p, const Answer *a, bool dry_run,
                   size_t placements_max, char **ret_placements);

/* The same document with every placement listed, written as text in steps
 * (`batonctl plan --all` of a large fleet): the cursor owns the dry run's
 * plan and answer; the model's instances are looked up again by key at
 * every step (the plan is of the moment it was made, the listing of the
 * model as each step finds it). "placements" comes first. */
typedef struct PlanCursor {
        Plan plan;
        const Answer *answer; /* &owned_answer, or view_apply()'s */
        Answer owned_answer;
        bool dry_run;
        bool begun;
        char *service; /* the next model instance to list: (service, instance) */
        uint32_t instance;
        bool models_done; /* then the plan's additions, from `added` */
        size_t added;
        size_t add, move, keep, restart, remove, listed;
} PlanCursor;

/* Takes over the plan and the answer (zeroing them). */
void plan_cursor_init(PlanCursor *cur, Plan *p, Answer *a, bool dry_run);
/* Writes about `budget` more placements: 1 when the document is complete,
 * 0 when there is more to write, -ENOMEM. */
int plan_cursor_step(PlanCursor *cur, const Model *m, JsonText *out, size_t budget);
void plan_cursor_done(PlanCursor *cur);
/* reshard/reshard-plan. */
json_t *view_reshard_plan(const ServiceSpec *s, const Answer *a, bool dry_run);
