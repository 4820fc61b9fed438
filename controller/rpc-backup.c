/* SPDX-License-Identifier: MIT */
/* The controller's side of `batonctl backup`: a consistent copy of the live
 * SQLite database, taken with SQLite's online backup API into memory and sent
 * whole in Response.backup; refused with the figures when it cannot fit in
 * one reply. */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "backup.h"
#include "log.h"
#include "rpc-internal.h"
#include "store.h"
#include "util.h"

static int pragma_int(sqlite3 *db, const char *sql, int64_t *ret) {
        sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        *ret = sqlite3_column_int64(st, 0);
                        rc = SQLITE_OK;
                }
        }
        sqlite3_finalize(st);
        return rc;
}

static void db_closep(sqlite3 **db) {
        if (*db)
                (void) sqlite3_close(*db);
}

/* Copies `src` into a new in-memory database and serializes that. Both run
 * in one call, on the controller's own connection, so no write of ours can
 * land in the middle: the copy is one committed state. On success
 * *ret_image is sqlite3_malloc()ed. */
static int copy_database(sqlite3 *src, int64_t page_size, unsigned char **ret_image,
                         sqlite3_int64 *ret_size, char **ret_error) {
        _cleanup_(db_closep) sqlite3 *mem = NULL;
        sqlite3_backup *b;
        unsigned char *image;
        sqlite3_int64 size = 0;
        char pragma[64];
        int rc;

        rc = sqlite3_open(":memory:", &mem);
        if (rc != SQLITE_OK)
                return error_set(ret_error, -ENOMEM, "cannot open an in-memory database: %s",
                                 mem ? sqlite3_errmsg(mem) : sqlite3_errstr(rc));
        /* An in-memory destination must have the source's page size. */
        snprintf(pragma, sizeof(pragma), "PRAGMA page_size = %" PRId64, page_size);
        rc = sqlite3_exec(mem, pragma, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return error_set(ret_error, -EIO, "cannot set the page size: %s",
                                 sqlite3_errmsg(mem));

        b = sqlite3_backup_init(mem, "main", src, "main");
        if (!b)
                return error_set(ret_error, -EIO, "cannot start the backup: %s",
                                 sqlite3_errmsg(mem));
        rc = sqlite3_backup_step(b, -1);
        (void) sqlite3_backup_finish(b);
        if (rc != SQLITE_DONE)
                return error_set(ret_error,
                                 rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? -EBUSY : -EIO,
                                 "cannot copy the database: %s", sqlite3_errstr(rc));

        image = sqlite3_serialize(mem, "main", &size, 0);
        if (!image)
                return error_set(ret_error, -ENOMEM, "cannot serialize the copy");
        *ret_image = image;
        *ret_size = size;
        return 0;
}

int rpc_verb_backup(RpcContext *x) {
        Controller *c = x->c;
        sqlite3 *db = store_db(c->store);
        _cleanup_free_ char *error = NULL;
        unsigned char *image = NULL;
        sqlite3_int64 size = 0;
        int64_t pages = 0, page_size = 0;
        uint8_t *copy;
        int rc, r;

        /* The observed state is written in batches; a batch left open would
         * put uncommitted rows into the copy. */
        if (!sqlite3_get_autocommit(db))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "the database is in the middle of a write; try again");

        /* The figures first: no copy is made of what cannot be sent. */
        rc = pragma_int(db, "PRAGMA page_count", &pages);
        if (rc == SQLITE_OK)
                rc = pragma_int(db, "PRAGMA page_size", &page_size);
        if (rc != SQLITE_OK)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "cannot read the database size: %s", sqlite3_errmsg(db));
        if (pages < 0 || page_size <= 0 || pages > (int64_t) BACKUP_MAX_SIZE / page_size)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "the database is %" PRId64 " bytes (%" PRId64 " pages of %" PRId64
                                "); a backup travels in one reply of at most %u bytes. Copy "
                                "the database file of a stopped controller instead",
                                pages * page_size, pages, page_size, BACKUP_MAX_SIZE);

        r = copy_database(db, page_size, &image, &size, &error);
        if (r < 0) {
                log_warning("Backup failed: %s", strna(error));
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED, "backup failed: %s",
                                strna(error));
        }
        if (size <= 0 || (uint64_t) size > BACKUP_MAX_SIZE) {
                sqlite3_free(image);
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "the copy of the database is %lld bytes; a backup travels in "
                                "one reply of at most %u bytes",
                                (long long) size, BACKUP_MAX_SIZE);
        }

        /* The response's storage is freed with free() once it is sent; the
         * context's one spare buffer for that is `json`, which a backup does
         * not otherwise use. */
        copy = malloc((size_t) size);
        if (!copy) {
                sqlite3_free(image);
                return -ENOMEM;
        }
        memcpy(copy, image, (size_t) size);
        sqlite3_free(image);
        free(x->json);
        x->json = (char *) copy;

        if (asprintf(&x->audit_request, "%lld bytes, epoch %" PRIu64, (long long) size,
                     c->model.epoch) < 0)
                x->audit_request = NULL;
        log_info("Backup of the database (%lld bytes, epoch %" PRIu64 ") for %s.", (long long) size,
                 c->model.epoch, strna(x->user));

        x->response.result_case = BATON__V1__RESPONSE__RESULT_BACKUP;
        x->response.backup.data = copy;
        x->response.backup.len = (size_t) size;
        return 0;
}
