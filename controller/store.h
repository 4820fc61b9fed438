/* SPDX-License-Identifier: MIT */
/* The controller's durable state in SQLite (WAL): the epoch, hosts, open
 * alerts and the audit log, behind versioned migrations. Observed state that
 * changes every heartbeat is written by the caller in batches, inside one
 * store_begin()/store_commit() pair. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

typedef struct Store Store;

#define STORE_SCHEMA_VERSION 3

typedef struct StoreHost {
        const char *id;
        bool alive;
        bool drained;
        uint64_t first_seen_us; /* wall clock */
        uint64_t last_seen_us;
        uint64_t state_since_us;
        const char *boot_id;
        const char *agent_version;
        const char *labels;
} StoreHost;

typedef struct StoreAlert {
        const char *id;
        const char *kind;
        int severity;
        const char *service;
        const char *host;
        const char *summary;
        uint64_t raised_at_us;
} StoreAlert;

/* Opens (creating) the database, sets WAL and foreign keys, runs pending
 * migrations in one transaction each. -EPROTO for a database from a newer
 * baton (schema version above ours). *ret_error explains failures. */
int store_open(const char *path, Store **ret, char **ret_error);
Store *store_close(Store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_close)

int store_schema_version(Store *s, int *ret);

/* Raises the persisted epoch by one and returns it. Durable before return
 * (synchronous=FULL for this transaction), so no two controller runs ever
 * share an epoch. */
int store_bump_epoch(Store *s, uint64_t *ret);

/* Raises the persisted epoch to `epoch` if it is lower (durably, like
 * store_bump_epoch()); never lowers it. Outside a transaction. */
int store_raise_epoch(Store *s, uint64_t epoch);

int store_begin(Store *s);
int store_commit(Store *s);
void store_rollback(Store *s);

int store_upsert_host(Store *s, const StoreHost *h);
int store_load_hosts(Store *s, int (*fn)(const StoreHost *h, void *userdata), void *userdata);

int store_put_alert(Store *s, const StoreAlert *a);
int store_delete_alert(Store *s, const char *id);
int store_load_alerts(Store *s, int (*fn)(const StoreAlert *a, void *userdata), void *userdata);

/* Services as applied: the spec text is the source of truth, re-parsed on
 * load; `count` is the effective instance count (the spec's, or the last
 * `batonctl scale`; re-applying the spec resets it). */
int store_put_service(Store *s, const char *name, const char *file_name, const char *text,
                      uint32_t count, uint64_t updated_at_us);
int store_delete_service(Store *s, const char *name);
int store_load_services(Store *s,
                        int (*fn)(const char *name, const char *file_name, const char *text,
                                  uint32_t count, void *userdata),
                        void *userdata);

/* Where each instance is placed; the reconciler writes only the rows that
 * change. */
int store_clear_instances(Store *s);
int store_put_instance(Store *s, const char *service, uint32_t instance, const char *host);
int store_delete_instance(Store *s, const char *service, uint32_t instance);
int store_load_instances(Store *s,
                         int (*fn)(const char *service, uint32_t instance, const char *host,
                                   void *userdata),
                         void *userdata);

/* The last Placement generation sent to a host (so generations never repeat
 * across controller restarts). */
int store_set_host_generation(Store *s, const char *host, uint64_t generation);
int store_get_host_generation(Store *s, const char *host, uint64_t *ret);

/* Rolling restarts, one per service, as rollout_format() text. Written after
 * every step, so a killed controller resumes exactly where it stopped. */
int store_put_rollout(Store *s, const char *service, uint64_t id, const char *text);
int store_delete_rollout(Store *s, const char *service);
int store_load_rollouts(Store *s, int (*fn)(const char *text, void *userdata), void *userdata);

/* The newest `limit` audit entries, newest first. */
int store_load_audit(Store *s, unsigned limit,
                     int (*fn)(int64_t seq, uint64_t at_us, const char *user, const char *verb,
                               const char *request, const char *outcome, void *userdata),
                     void *userdata);

/* Appends an entry; every 64th entry also prunes the log to its newest
 * `max_entries` (0: unbounded) and to entries younger than `max_age_us`. */
int store_audit(Store *s, uint64_t at_us, const char *user, const char *verb, const char *request,
                const char *outcome, uint64_t max_entries, uint64_t max_age_us);

/* Last SQLite error message, for logs. */
/* Sharded services: layout text, reshard text (NULL: none) and budget
 * ledger text (NULL: nothing spent), one row per service. */
int store_put_shard_state(Store *s, const char *service, const char *layout, const char *reshard,
                          const char *budget);
int store_delete_shard_state(Store *s, const char *service);
typedef int (*StoreShardStateFn)(const char *service, const char *layout, const char *reshard,
                                 const char *budget, void *userdata);
int store_load_shard_states(Store *s, StoreShardStateFn fn, void *userdata);

const char *store_error(Store *s);

/* The database handle, for the backup verb (sqlite3_backup); NULL never. */
struct sqlite3 *store_db(Store *s);
