/* SPDX-License-Identifier: MIT */
/* What hosts report, folded into the model's observed state: a heartbeat's
 * facts and units, a unit's change, a host's sharded copies. Text that came
 * over the network is made terminal-safe here. Each returns what changed
 * that reconcile() must know (restarts to charge, units that started or
 * stopped flapping, failed or active again). Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "reconcile.h"

typedef struct UnitReport {
        const char *name;
        const char *active_state;
        const char *sub_state;
        const char *result;
        const char *service;
        uint32_t n_restarts;
        uint32_t main_pid;
        uint64_t state_change_us;
} UnitReport;

typedef struct HeartbeatReport {
        const char *boot_id;
        const char *agent_version;
        const char *systemd_version;
        const char *system_state;
        const char *labels; /* "k=v k=v" */
        bool have_capacity;
        uint32_t cores;
        uint64_t memory_total;
        uint64_t memory_available;
        uint32_t load1_x100;
        uint64_t applied_epoch;
        uint64_t applied_generation;
        uint64_t max_epoch_seen;
        const UnitReport *units;
        size_t n_units;
} HeartbeatReport;

typedef struct CopyReport {
        const char *unit;
        const char *service;
        uint32_t instance;
        uint64_t epoch;
        uint32_t shard_count;
        const char *assigned;
        const char *ready;
        const char *connecting;
        const char *failed;
        const char *active_state;
} CopyReport;

/* What changed, for reconcile(): the changes point into `strings`. */
typedef struct Observed {
        UnitChange *changes;
        size_t n_changes, changes_allocated;
        char **strings;
        size_t n_strings, strings_allocated;
        size_t refused_copies; /* copies or shards a host claimed that were not its */
        size_t malformed_copies;
        bool labels_changed; /* a heartbeat's labels differ from the last */
} Observed;

void observed_done(Observed *o);

/* A heartbeat of a host whose model is v, at `now_mono` (for flapping) and
 * `now` (wall). Units are kept sorted and without duplicates; flap trackers
 * follow them in one merge. -ENOMEM leaves v partly updated but consistent. */
int observe_heartbeat(HostModel *v, const HeartbeatReport *hb, usec_t now_mono, uint64_t now,
                      Observed *ret);
/* One unit's change (a UnitEvent). */
int observe_unit(HostModel *v, const UnitReport *u, usec_t now_mono, Observed *ret);
/* A host's sharded copies, replacing what it reported before, each cut to
 * what the controller placed there (see model.h CopyObs), taken in at `now`
 * (wall). */
int observe_copies(const Model *m, const char *host, HostModel *v, const CopyReport *copies,
                   size_t n, uint64_t now, Observed *ret);
