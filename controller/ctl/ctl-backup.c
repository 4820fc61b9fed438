/* SPDX-License-Identifier: MIT */
/* batonctl backup: fetch a consistent copy of the controller's database and
 * write it to FILE atomically (a temporary file in the same directory, fsync,
 * rename, mode 0600), never over an existing FILE unless --force. */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup.h"
#include "ctl-verbs.h"
#include "util.h"

#define BACKUP_MODE 0600

_Static_assert(BACKUP_MAX_SIZE == 4080u * 1024u, "the --help text names the limit");

/* The directory part of path, for the temporary file and the fsync that
 * makes the rename durable. malloc'ed. */
static char *dir_of(const char *path) {
        const char *slash = strrchr(path, '/');

        if (!slash)
                return strdup(".");
        if (slash == path)
                return strdup("/");
        return strndup(path, (size_t) (slash - path));
}

/* A temporary file that is removed unless it was renamed into place. */
typedef struct TempFile {
        char *path;
        int fd;
} TempFile;

static void temp_file_done(TempFile *t) {
        if (t->fd >= 0)
                (void) close(t->fd);
        if (t->path)
                (void) unlink(t->path);
        free(t->path);
        *t = (TempFile){ .fd = -EBADF };
}

static int write_all(int fd, const uint8_t *p, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

/* Renames without replacing what is there: -EEXIST then. Falls back to
 * link()+unlink() on file systems without RENAME_NOREPLACE. */
static int rename_noreplace(const char *from, const char *to) {
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) >= 0)
                return 0;
        if (errno != EINVAL && errno != ENOSYS)
                return negative_errno();
        if (link(from, to) < 0)
                return negative_errno();
        (void) unlink(from);
        return 0;
}

static int fsync_dir(const char *dir) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 || fsync(fd) < 0)
                return negative_errno();
        return 0;
}

static uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static int run(Ctl *ctl, int argc, char *argv[]) {
        static const struct option options[] = {
                { "force", no_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        Baton__V1__Request req = BATON__V1__REQUEST__INIT;
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_(temp_file_done) TempFile tmp = { .fd = -EBADF };
        _cleanup_free_ char *dir = NULL;
        const Baton__V1__Response *resp;
        const char *file;
        bool force = false;
        struct stat st;
        char size[32];
        uint32_t schema;
        uint64_t epoch;
        size_t len;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":fh", options, NULL)) >= 0)
                switch (c) {
                case 'f':
                        force = true;
                        break;
                case 'h':
                        return ctl_command_help(&ctl_command_backup);
                default:
                        return ctl_option_error(&ctl_command_backup, c, argv);
                }
        if (optind >= argc)
                return ctl_usage_error(&ctl_command_backup, "no file given");
        if (argc - optind > 1)
                return ctl_usage_error(&ctl_command_backup, "unexpected argument '%s'",
                                       argv[optind + 1]);
        file = argv[optind];
        if (isempty(file) || file[strlen(file) - 1] == '/' ||
            (stat(file, &st) >= 0 && S_ISDIR(st.st_mode)))
                return ctl_usage_error(&ctl_command_backup, "'%s' is a directory, not a file",
                                       file);
        /* lstat: a dangling symlink is something there too. */
        if (!force && lstat(file, &st) >= 0) {
                fprintf(stderr, "batonctl: refused: %s exists; give --force to replace it\n", file);
                return CTL_EXIT_REFUSED;
        }

        /* The temporary file first: a directory we cannot write to fails
         * here, before the controller copies anything. */
        dir = dir_of(file);
        if (!dir || asprintf(&tmp.path, "%s/.batonctl-backup.XXXXXX", dir) < 0) {
                tmp.path = NULL;
                fprintf(stderr, "batonctl: out of memory\n");
                return CTL_EXIT_FAILED;
        }
        tmp.fd = mkostemp(tmp.path, O_CLOEXEC);
        if (tmp.fd < 0) {
                r = negative_errno();
                free(tmp.path);
                tmp.path = NULL;
                fprintf(stderr, "batonctl: cannot create a file in %s: %s\n", dir, STRERROR(r));
                return CTL_EXIT_FAILED;
        }

        req.verb = (char *) "backup";
        r = ctl_request(ctl, &req, BATON__V1__RESPONSE__RESULT_BACKUP, &d, &resp);
        if (r != CTL_EXIT_OK)
                return r;
        len = resp->backup.len;
        if (len < BACKUP_SQLITE_HEADER_SIZE ||
            memcmp(resp->backup.data, BACKUP_SQLITE_MAGIC, sizeof(BACKUP_SQLITE_MAGIC)) != 0) {
                fprintf(stderr,
                        "batonctl: the controller's backup (%zu bytes) is not an SQLite database; "
                        "nothing written\n",
                        len);
                return CTL_EXIT_FAILED;
        }
        /* The header's user_version is the schema version (store.c); the
         * copy holds the epoch the controller runs with, which its envelope
         * carries. */
        schema = be32(resp->backup.data + 60);
        epoch = d.envelope ? d.envelope->epoch : 0; /* backups never come in parts */

        r = write_all(tmp.fd, resp->backup.data, len);
        if (r >= 0 && (fchmod(tmp.fd, BACKUP_MODE) < 0 || fsync(tmp.fd) < 0))
                r = negative_errno();
        if (r >= 0) {
                int fd = tmp.fd;

                tmp.fd = -EBADF;
                if (close(fd) < 0)
                        r = negative_errno();
        }
        if (r < 0) {
                fprintf(stderr, "batonctl: cannot write %s: %s\n", tmp.path, STRERROR(r));
                return CTL_EXIT_FAILED;
        }

        r = force ? (rename(tmp.path, file) < 0 ? negative_errno() : 0)
                  : rename_noreplace(tmp.path, file);
        if (r == -EEXIST) {
                fprintf(stderr,
                        "batonctl: refused: %s appeared meanwhile; give --force to replace "
                        "it\n",
                        file);
                return CTL_EXIT_REFUSED;
        }
        if (r < 0) {
                fprintf(stderr, "batonctl: cannot write %s: %s\n", file, STRERROR(r));
                return CTL_EXIT_FAILED;
        }
        free(tmp.path);
        tmp.path = NULL;
        r = fsync_dir(dir);
        if (r < 0) {
                fprintf(stderr, "batonctl: wrote %s, but cannot sync %s: %s\n", file, dir,
                        STRERROR(r));
                return CTL_EXIT_FAILED;
        }

        if (ctl->json)
                return ctl_print_json(json_pack("{s:s, s:I, s:i, s:I}", "file", file, "bytes",
                                                (json_int_t) len, "schema_version", (int) schema,
                                                "epoch", (json_int_t) epoch)) < 0
                               ? CTL_EXIT_FAILED
                               : CTL_EXIT_OK;

        printf("Wrote %zu bytes (%s) to %s: schema %" PRIu32 ", controller epoch %" PRIu64 ".\n",
               len, ctl_format_bytes(size, sizeof(size), len), file, schema, epoch);
        return CTL_EXIT_OK;
}

const CtlCommand ctl_command_backup = {
        .name = "backup",
        .usage = "FILE [--force]",
        .summary = "copy the controller's database to FILE",
        .help = "Options:\n"
                "  -f --force   replace FILE if it exists\n"
                "\n"
                "The copy is consistent (SQLite's online backup) and taken while the\n"
                "controller runs. It travels in one reply, so the database may be at most\n"
                "4080 KiB (4177920 bytes); a larger one is refused with its size. FILE is\n"
                "written atomically with mode 0600. Only operators may back up; the backup\n"
                "is recorded in the audit log.\n"
                "\n"
                "To restore: stop baton-controller, remove its database and the -wal and\n"
                "-shm files beside it, copy FILE in its place and start baton-controller.\n"
                "It raises the epoch at start, so the agents accept its commands.\n",
        .run = run,
};
