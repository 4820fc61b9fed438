/* SPDX-License-Identifier: MIT */
/* The model in SQLite: loading it at start, and writing what a plan changes
 * (inside the caller's transaction), so that what is on disk is always a
 * whole state the controller decided. */
#pragma once

#include <stdint.h>

#include "model.h"
#include "plan.h"
#include "store.h"

/* Loads everything the store holds into m (whose config is set): hosts
 * (alive as they were, each given a whole timeout from `now_mono`), open
 * alerts, services (a stored spec that no longer parses is logged and
 * skipped), instances, each host's last generation, shard states (the gate
 * held for every copy until it reports ready: nothing says which were still
 * identifying), rollouts. Logs what fails, naming it. */
int records_load(Store *s, Model *m, usec_t now_mono, uint64_t now);

/* Writes the records `p` implies, as `m` stands before it is applied: service
 * rows, instance rows (only those that change), hosts' records, the
 * generations of new Placements, rollouts, shard states, open and closed
 * alerts, the epoch. Inside a transaction of the caller's. */
int records_write(Store *s, const Plan *p, const Model *m);

/* The observed facts of one host (last seen, labels, versions): flushed in
 * batches, outside of any plan. */
int records_write_host(Store *s, const Model *m, const char *host);
