/* SPDX-License-Identifier: MIT */
/* SQLite behind the Store API. Migrations are an append-only list of SQL
 * scripts; user_version records how many have run. Errors map to -errno:
 * busy/locked → -EBUSY, constraint → -EEXIST, corrupt → -EUCLEAN, else -EIO. */
#include <assert.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "store.h"
#include "util.h"

/* Statements are prepared once and kept (keyed by their SQL, a literal at
 * each call site): an apply at 10,000 hosts writes 200,000 instance rows, and
 * preparing each statement again cost more than running it. */
typedef struct StoreStmt {
        const char *sql;
        sqlite3_stmt *st;
} StoreStmt;

struct Store {
        sqlite3 *db;
        bool in_tx;
        StoreStmt *stmts;
        size_t n_stmts;
};

/* Append only: never edit a released migration, add a new one. */
static const char *const migrations[] = {
        /* 1: the walking skeleton */
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;"
        "INSERT INTO meta (key, value) VALUES ('epoch', '0');"
        "CREATE TABLE hosts ("
        "  id TEXT PRIMARY KEY,"
        "  alive INTEGER NOT NULL,"
        "  drained INTEGER NOT NULL DEFAULT 0,"
        "  first_seen_us INTEGER NOT NULL,"
        "  last_seen_us INTEGER NOT NULL,"
        "  state_since_us INTEGER NOT NULL,"
        "  boot_id TEXT,"
        "  agent_version TEXT,"
        "  labels TEXT"
        ") STRICT;"
        "CREATE TABLE alerts ("
        "  id TEXT PRIMARY KEY,"
        "  kind TEXT NOT NULL,"
        "  severity INTEGER NOT NULL,"
        "  service TEXT,"
        "  host TEXT,"
        "  summary TEXT NOT NULL,"
        "  raised_at_us INTEGER NOT NULL"
        ") STRICT;"
        "CREATE TABLE audit ("
        "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  at_us INTEGER NOT NULL,"
        "  user TEXT NOT NULL,"
        "  verb TEXT NOT NULL,"
        "  request TEXT,"
        "  outcome TEXT NOT NULL"
        ") STRICT;",
        /* 2: desired state */
        "CREATE TABLE services ("
        "  name TEXT PRIMARY KEY,"
        "  file_name TEXT NOT NULL,"
        "  spec_text TEXT NOT NULL,"
        "  count INTEGER NOT NULL,"
        "  updated_at_us INTEGER NOT NULL"
        ") STRICT;"
        "CREATE TABLE instances ("
        "  service TEXT NOT NULL,"
        "  instance INTEGER NOT NULL,"
        "  host TEXT NOT NULL,"
        "  PRIMARY KEY (service, instance)"
        ") STRICT;"
        "CREATE TABLE host_generations ("
        "  host TEXT PRIMARY KEY,"
        "  generation INTEGER NOT NULL"
        ") STRICT;"
        "CREATE TABLE rollouts ("
        "  service TEXT PRIMARY KEY,"
        "  id INTEGER NOT NULL,"
        "  state_text TEXT NOT NULL"
        ") STRICT;",
        /* 3: sharded services: the shard layout, a reshard under way, and the
         * daily start budget spent (controller/core/shardplan.h, budget.h). */
        "CREATE TABLE shard_state ("
        "  service TEXT PRIMARY KEY,"
        "  layout TEXT NOT NULL,"
        "  reshard TEXT,"
        "  budget TEXT"
        ") STRICT;",
        /* 4: the instances of a sharded service not yet let through the start
         * gate (a range list of instance numbers; NULL: none), so that a
         * restarted controller does not start them all at once. */
        "ALTER TABLE shard_state ADD COLUMN waiting TEXT;",
};

_Static_assert(ELEMENTSOF(migrations) == STORE_SCHEMA_VERSION, "schema version mismatch");

static int sqlite_to_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_DONE:
        case SQLITE_ROW:
                return 0;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EUCLEAN;
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_FULL:
                return -ENOSPC;
        default:
                return -EIO;
        }
}

const char *store_error(Store *s) {
        return s && s->db ? sqlite3_errmsg(s->db) : "no database";
}

static int exec(Store *s, const char *sql) {
        return sqlite_to_errno(sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

/* Done with a kept statement: it ends its read, forgets its values. */
static void stmt_release(sqlite3_stmt *st) {
        if (!st)
                return;
        (void) sqlite3_reset(st); /* repeats the step's error, already handled */
        sqlite3_clear_bindings(st);
}

static void stmt_releasep(sqlite3_stmt **st) {
        stmt_release(*st);
}
#define _cleanup_stmt_ _cleanup_(stmt_releasep)

/* The statement for `sql` (a string literal): prepared at its first use,
 * kept until store_close(). Released by _cleanup_stmt_. */
static int prepare(Store *s, const char *sql, sqlite3_stmt **ret) {
        StoreStmt *k;
        sqlite3_stmt *st;
        int r;

        for (size_t i = 0; i < s->n_stmts; i++)
                if (s->stmts[i].sql == sql) {
                        *ret = s->stmts[i].st;
                        return 0;
                }
        r = sqlite_to_errno(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL));
        if (r < 0)
                return r;
        k = reallocarray(s->stmts, s->n_stmts + 1, sizeof(StoreStmt));
        if (!k) {
                sqlite3_finalize(st);
                return -ENOMEM;
        }
        s->stmts = k;
        s->stmts[s->n_stmts++] = (StoreStmt){ .sql = sql, .st = st };
        *ret = st;
        return 0;
}

static int bind_text(sqlite3_stmt *st, int i, const char *v) {
        return sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

int store_schema_version(Store *s, int *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s, "PRAGMA user_version", &st);
        if (r < 0)
                return r;
        if (sqlite3_step(st) != SQLITE_ROW)
                return -EIO;
        *ret = sqlite3_column_int(st, 0);
        return 0;
}

static int migrate(Store *s, char **ret_error) {
        int version, r;

        r = store_schema_version(s, &version);
        if (r < 0)
                return r;
        if (version > (int) ELEMENTSOF(migrations))
                return error_set(ret_error, -EPROTO,
                                 "database schema version %d is newer than this baton (%d); "
                                 "refusing to touch it",
                                 version, STORE_SCHEMA_VERSION);

        for (int v = version; v < (int) ELEMENTSOF(migrations); v++) {
                char pragma[64];

                r = exec(s, "BEGIN IMMEDIATE");
                if (r < 0)
                        return r;
                snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
                r = exec(s, migrations[v]);
                if (r >= 0)
                        r = exec(s, pragma);
                if (r >= 0)
                        r = exec(s, "COMMIT");
                if (r < 0) {
                        (void) error_set(ret_error, r, "migration to schema %d failed: %s", v + 1,
                                         sqlite3_errmsg(s->db));
                        (void) exec(s, "ROLLBACK");
                        return r;
                }
        }
        return 0;
}

int store_open(const char *path, Store **ret, char **ret_error) {
        _cleanup_(store_closep) Store *s = NULL;
        int rc, r;

        assert(path);
        assert(ret);

        s = calloc(1, sizeof(Store));
        if (!s)
                return -ENOMEM;

        rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                     SQLITE_OPEN_EXRESCODE,
                             NULL);
        if (rc != SQLITE_OK) {
                return error_set(ret_error, sqlite_to_errno(rc), "cannot open database %s: %s",
                                 path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        }
        /* A held lock (another controller on the same file) fails fast rather
         * than stalling the event loop. */
        sqlite3_busy_timeout(s->db, 200);

        r = exec(s, "PRAGMA journal_mode = WAL");
        if (r >= 0)
                r = exec(s, "PRAGMA synchronous = NORMAL");
        if (r >= 0)
                r = exec(s, "PRAGMA foreign_keys = ON");
        if (r < 0) {
                return error_set(ret_error, r, "cannot set up database %s: %s", path,
                                 sqlite3_errmsg(s->db));
        }

        r = migrate(s, ret_error);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

Store *store_close(Store *s) {
        if (!s)
                return NULL;
        if (s->in_tx)
                store_rollback(s);
        for (size_t i = 0; i < s->n_stmts; i++)
                sqlite3_finalize(s->stmts[i].st);
        free(s->stmts);
        /* Checkpoint so the main file is complete for backups taken cold. */
        (void) sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close_v2(s->db);
        free(s);
        return NULL;
}

int store_begin(Store *s) {
        int r;

        assert(!s->in_tx);
        r = exec(s, "BEGIN IMMEDIATE");
        if (r >= 0)
                s->in_tx = true;
        return r;
}

int store_commit(Store *s) {
        int r;

        assert(s->in_tx);
        r = exec(s, "COMMIT");
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        s->in_tx = false;
        return 0;
}

void store_rollback(Store *s) {
        if (!s->in_tx)
                return;
        (void) exec(s, "ROLLBACK");
        s->in_tx = false;
}

int store_bump_epoch(Store *s, uint64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        uint64_t epoch;
        int r;

        r = exec(s, "PRAGMA synchronous = FULL");
        if (r < 0)
                return r;
        r = store_begin(s);
        if (r < 0)
                goto finish;
        r = prepare(s,
                    "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                    "WHERE key = 'epoch' RETURNING CAST(value AS INTEGER)",
                    &st);
        if (r < 0) {
                store_rollback(s);
                goto finish;
        }
        if (sqlite3_step(st) != SQLITE_ROW) {
                r = sqlite_to_errno(sqlite3_errcode(s->db));
                if (r == 0)
                        r = -EIO;
                stmt_release(TAKE_PTR(st));
                store_rollback(s);
                goto finish;
        }
        epoch = (uint64_t) sqlite3_column_int64(st, 0);
        stmt_release(TAKE_PTR(st));
        r = store_commit(s);
        if (r >= 0)
                *ret = epoch;
finish:
        (void) exec(s, "PRAGMA synchronous = NORMAL");
        return r;
}

static int step_done(Store *s, sqlite3_stmt *st);

int store_put_epoch(Store *s, uint64_t epoch) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s,
                    "UPDATE meta SET value = CAST(?1 AS TEXT) "
                    "WHERE key = 'epoch' AND CAST(value AS INTEGER) < ?1",
                    &st);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, (sqlite3_int64) epoch);
        return step_done(s, st);
}

int store_set_durable(Store *s, bool durable) {
        return exec(s, durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
}

int store_raise_epoch(Store *s, uint64_t epoch) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r, k;

        r = exec(s, "PRAGMA synchronous = FULL");
        if (r < 0)
                return r;
        r = prepare(s,
                    "UPDATE meta SET value = CAST(?1 AS TEXT) "
                    "WHERE key = 'epoch' AND CAST(value AS INTEGER) < ?1",
                    &st);
        if (r >= 0) {
                sqlite3_bind_int64(st, 1, (sqlite3_int64) epoch);
                r = step_done(s, st);
        }
        k = exec(s, "PRAGMA synchronous = NORMAL");
        return r < 0 ? r : k;
}

static int step_done(Store *s, sqlite3_stmt *st) {
        int rc = sqlite3_step(st), r;

        if (rc == SQLITE_DONE)
                return 0;
        r = sqlite_to_errno(rc);
        return r < 0 ? r : -EIO;
}

int store_upsert_host(Store *s, const StoreHost *h) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s,
                    "INSERT INTO hosts (id, alive, drained, first_seen_us, last_seen_us, "
                    "state_since_us, boot_id, agent_version, labels) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                    "ON CONFLICT (id) DO UPDATE SET alive = ?2, drained = ?3, "
                    "last_seen_us = ?5, state_since_us = ?6, boot_id = ?7, "
                    "agent_version = ?8, labels = ?9",
                    &st);
        if (r < 0)
                return r;
        bind_text(st, 1, h->id);
        sqlite3_bind_int(st, 2, h->alive);
        sqlite3_bind_int(st, 3, h->drained);
        sqlite3_bind_int64(st, 4, (sqlite3_int64) h->first_seen_us);
        sqlite3_bind_int64(st, 5, (sqlite3_int64) h->last_seen_us);
        sqlite3_bind_int64(st, 6, (sqlite3_int64) h->state_since_us);
        bind_text(st, 7, h->boot_id);
        bind_text(st, 8, h->agent_version);
        bind_text(st, 9, h->labels);
        return step_done(s, st);
}

int store_load_hosts(Store *s, int (*fn)(const StoreHost *h, void *userdata), void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc, r;

        r = prepare(s,
                    "SELECT id, alive, drained, first_seen_us, last_seen_us, state_since_us, "
                    "boot_id, agent_version, labels FROM hosts ORDER BY id",
                    &st);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                StoreHost h = {
                        .id = (const char *) sqlite3_column_text(st, 0),
                        .alive = sqlite3_column_int(st, 1),
                        .drained = sqlite3_column_int(st, 2),
                        .first_seen_us = (uint64_t) sqlite3_column_int64(st, 3),
                        .last_seen_us = (uint64_t) sqlite3_column_int64(st, 4),
                        .state_since_us = (uint64_t) sqlite3_column_int64(st, 5),
                        .boot_id = (const char *) sqlite3_column_text(st, 6),
                        .agent_version = (const char *) sqlite3_column_text(st, 7),
                        .labels = (const char *) sqlite3_column_text(st, 8),
                };
                r = fn(&h, userdata);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : sqlite_to_errno(rc);
}

int store_put_alert(Store *s, const StoreAlert *a) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s,
                    "INSERT OR REPLACE INTO alerts (id, kind, severity, service, host, summary, "
                    "raised_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    &st);
        if (r < 0)
                return r;
        bind_text(st, 1, a->id);
        bind_text(st, 2, a->kind);
        sqlite3_bind_int(st, 3, a->severity);
        bind_text(st, 4, a->service);
        bind_text(st, 5, a->host);
        bind_text(st, 6, a->summary);
        sqlite3_bind_int64(st, 7, (sqlite3_int64) a->raised_at_us);
        return step_done(s, st);
}

int store_delete_alert(Store *s, const char *id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s, "DELETE FROM alerts WHERE id = ?1", &st);
        if (r < 0)
                return r;
        bind_text(st, 1, id);
        return step_done(s, st);
}

int store_load_alerts(Store *s, int (*fn)(const StoreAlert *a, void *userdata), void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc, r;

        r = prepare(s,
                    "SELECT id, kind, severity, service, host, summary, raised_at_us FROM alerts "
                    "ORDER BY raised_at_us, id",
                    &st);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                StoreAlert a = {
                        .id = (const char *) sqlite3_column_text(st, 0),
                        .kind = (const char *) sqlite3_column_text(st, 1),
                        .severity = sqlite3_column_int(st, 2),
                        .service = (const char *) sqlite3_column_text(st, 3),
                        .host = (const char *) sqlite3_column_text(st, 4),
                        .summary = (const char *) sqlite3_column_text(st, 5),
                        .raised_at_us = (uint64_t) sqlite3_column_int64(st, 6),
                };
                r = fn(&a, userdata);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : sqlite_to_errno(rc);
}

int store_audit(Store *s, uint64_t at_us, const char *user, const char *verb, const char *request,
                const char *outcome, uint64_t max_entries, uint64_t max_age_us) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL, *prune = NULL;
        sqlite3_int64 seq;
        int r;

        r = prepare(s,
                    "INSERT INTO audit (at_us, user, verb, request, outcome) "
                    "VALUES (?1, ?2, ?3, ?4, ?5)",
                    &st);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, (sqlite3_int64) at_us);
        bind_text(st, 2, user);
        bind_text(st, 3, verb);
        bind_text(st, 4, request);
        bind_text(st, 5, outcome);
        r = step_done(s, st);
        if (r < 0)
                return r;
        seq = sqlite3_last_insert_rowid(s->db);

        /* Bounded by count and age. Sequence numbers only grow, so the
         * count bound is one indexed range delete; run it now and then. */
        if (max_entries == 0 || seq % 64 != 0)
                return 0;
        r = prepare(s, "DELETE FROM audit WHERE seq <= ?1 OR at_us < ?2", &prune);
        if (r < 0)
                return r;
        sqlite3_bind_int64(prune, 1,
                           seq > (sqlite3_int64) max_entries ? seq - (sqlite3_int64) max_entries
                                                             : 0);
        sqlite3_bind_int64(prune, 2, at_us > max_age_us ? (sqlite3_int64) (at_us - max_age_us) : 0);
        return step_done(s, prune);
}

int store_put_service(Store *s, const char *name, const char *file_name, const char *text,
                      uint32_t count, uint64_t updated_at_us) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s,
                    "INSERT INTO services (name, file_name, spec_text, count, updated_at_us) "
                    "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO UPDATE SET "
                    "file_name = ?2, spec_text = ?3, count = ?4, updated_at_us = ?5",
                    &st);
        if (r < 0)
                return r;
        bind_text(st, 1, name);
        bind_text(st, 2, file_name);
        bind_text(st, 3, text);
        sqlite3_bind_int64(st, 4, count);
        sqlite3_bind_int64(st, 5, (sqlite3_int64) updated_at_us);
        return step_done(s, st);
}

int store_delete_service(Store *s, const char *name) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s, "DELETE FROM services WHERE name = ?1", &st);
        if (r < 0)
                return r;
        bind_text(st, 1, name);
        return step_done(s, st);
}

int store_load_services(Store *s,
                        int (*fn)(const char *name, const char *file_name, const char *text,
                                  uint32_t count, void *userdata),
                        void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc, r;

        r = prepare(s, "SELECT name, file_name, spec_text, count FROM services ORDER BY name", &st);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = fn((const char *) sqlite3_column_text(st, 0),
                       (const char *) sqlite3_column_text(st, 1),
                       (const char *) sqlite3_column_text(st, 2),
                       (uint32_t) sqlite3_column_int64(st, 3), userdata);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : sqlite_to_errno(rc);
}

int store_clear_instances(Store *s) {
        return exec(s, "DELETE FROM instances");
}

int store_put_instance(Store *s, const char *service, uint32_t instance, const char *host) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s,
                    "INSERT OR REPLACE INTO instances (service, instance, host) "
                    "VALUES (?1, ?2, ?3)",
                    &st);
        if (r < 0)
                return r;
        bind_text(st, 1, service);
        sqlite3_bind_int64(st, 2, instance);
        bind_text(st, 3, host);
        return step_done(s, st);
}

int store_delete_instance(Store *s, const char *service, uint32_t instance) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s, "DELETE FROM instances WHERE service = ?1 AND instance = ?2", &st);
        if (r < 0)
                return r;
        bind_text(st, 1, service);
        sqlite3_bind_int64(st, 2, instance);
        return step_done(s, st);
}

int store_load_instances(Store *s,
                         int (*fn)(const char *service, uint32_t instance, const char *host,
                                   void *userdata),
                         void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc, r;

        r = prepare(s, "SELECT service, instance, host FROM instances ORDER BY service, instance",
                    &st);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = fn((const char *) sqlite3_column_text(st, 0),
                       (uint32_t) sqlite3_column_int64(st, 1),
                       (const char *) sqlite3_column_text(st, 2), userdata);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : sqlite_to_errno(rc);
}

int store_set_host_generation(Store *s, const char *host, uint64_t generation) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s,
                    "INSERT OR REPLACE INTO host_generations (host, generation) "
                    "VALUES (?1, ?2)",
                    &st);
        if (r < 0)
                return r;
        bind_text(st, 1, host);
        sqlite3_bind_int64(st, 2, (sqlite3_int64) generation);
        return step_done(s, st);
}

int store_get_host_generation(Store *s, const char *host, uint64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc, r;

        r = prepare(s, "SELECT generation FROM host_generations WHERE host = ?1", &st);
        if (r < 0)
                return r;
        bind_text(st, 1, host);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
                *ret = 0;
                return 0;
        }
        if (rc != SQLITE_ROW)
                return sqlite_to_errno(rc);
        *ret = (uint64_t) sqlite3_column_int64(st, 0);
        return 0;
}

int store_load_audit(Store *s, unsigned limit,
                     int (*fn)(int64_t seq, uint64_t at_us, const char *user, const char *verb,
                               const char *request, const char *outcome, void *userdata),
                     void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc, r;

        r = prepare(s,
                    "SELECT seq, at_us, user, verb, request, outcome FROM audit "
                    "ORDER BY seq DESC LIMIT ?1",
                    &st);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, limit);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = fn(sqlite3_column_int64(st, 0), (uint64_t) sqlite3_column_int64(st, 1),
                       (const char *) sqlite3_column_text(st, 2),
                       (const char *) sqlite3_column_text(st, 3),
                       (const char *) sqlite3_column_text(st, 4),
                       (const char *) sqlite3_column_text(st, 5), userdata);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : sqlite_to_errno(rc);
}

int store_put_rollout(Store *s, const char *service, uint64_t id, const char *text) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s,
                    "INSERT OR REPLACE INTO rollouts (service, id, state_text) "
                    "VALUES (?1, ?2, ?3)",
                    &st);
        if (r < 0)
                return r;
        bind_text(st, 1, service);
        sqlite3_bind_int64(st, 2, (sqlite3_int64) id);
        bind_text(st, 3, text);
        return step_done(s, st);
}

int store_delete_rollout(Store *s, const char *service) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s, "DELETE FROM rollouts WHERE service = ?1", &st);
        if (r < 0)
                return r;
        bind_text(st, 1, service);
        return step_done(s, st);
}

int store_load_rollouts(Store *s, int (*fn)(const char *text, void *userdata), void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc, r;

        r = prepare(s, "SELECT state_text FROM rollouts ORDER BY service", &st);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = fn((const char *) sqlite3_column_text(st, 0), userdata);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : sqlite_to_errno(rc);
}

int store_put_shard_state(Store *s, const char *service, const char *layout, const char *reshard,
                          const char *budget, const char *waiting) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(
                s,
                "INSERT OR REPLACE INTO shard_state (service, layout, reshard, budget, waiting) "
                "VALUES (?1, ?2, ?3, ?4, ?5)",
                &st);
        if (r < 0)
                return r;
        bind_text(st, 1, service);
        bind_text(st, 2, layout);
        bind_text(st, 3, reshard);
        bind_text(st, 4, budget);
        bind_text(st, 5, waiting);
        return step_done(s, st);
}

int store_delete_shard_state(Store *s, const char *service) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        r = prepare(s, "DELETE FROM shard_state WHERE service = ?1", &st);
        if (r < 0)
                return r;
        bind_text(st, 1, service);
        return step_done(s, st);
}

int store_load_shard_states(Store *s, StoreShardStateFn fn, void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc, r;

        r = prepare(s,
                    "SELECT service, layout, reshard, budget, waiting FROM shard_state "
                    "ORDER BY service",
                    &st);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = fn((const char *) sqlite3_column_text(st, 0),
                       (const char *) sqlite3_column_text(st, 1),
                       (const char *) sqlite3_column_text(st, 2),
                       (const char *) sqlite3_column_text(st, 3),
                       (const char *) sqlite3_column_text(st, 4), userdata);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : sqlite_to_errno(rc);
}

struct sqlite3 *store_db(Store *s) {
        return s->db;
}
