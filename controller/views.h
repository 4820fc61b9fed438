/* SPDX-License-Identifier: MIT */
/* The model as batonctl and event consumers see it: one JSON document per
 * read verb (README.md documents the fields). Reading changes nothing. */
#pragma once

#include <jansson.h>

#include "model.h"
#include "plan.h"
#include "reconcile.h"

/* JSON null, or while a mass-host-loss is held {"held_hosts": [...],
 * "held_instances": N}: what `batonctl hosts confirm-down` would move. */
json_t *view_mass_loss(const Model *m);
/* `batonctl status [SERVICE]`: services with their instances, or (more
 * than instances_max of them in all, when it is not 0) with how many are
 * healthy only: "instances_total" and "instances_listed" say which. */
json_t *view_status(const Model *m, const char *only, size_t instances_max);
/* The shard map of a sharded service (`batonctl shards`); NULL on OOM or
 * when it has no shard state. */
json_t *view_shards(const Model *m, const ServiceSpec *s, uint64_t now);
/* {"epoch", "total", "ready", "resharding"}, or JSON null if not sharded. */
json_t *view_shards_summary(const Model *m, const ServiceSpec *s);
json_t *view_reshard(const Reshard *r);
json_t *view_budget(const BudgetVerdict *v);
json_t *view_rollouts(const Model *m, const char *only);
json_t *view_alerts(const Model *m);
/* apply/plan: services, placements (every instance and how it changes
 * against the model; only when there are at most placements_max, unless
 * that is 0), "changes" (how many of each kind), "placements_listed",
 * problems. */
json_t *view_apply(const Model *m, const Plan *p, const Answer *a, bool dry_run,
                   size_t placements_max);
/* reshard/reshard-plan. */
json_t *view_reshard_plan(const ServiceSpec *s, const Answer *a, bool dry_run);
