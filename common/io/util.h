/* SPDX-License-Identifier: MIT */
/* Small I/O helpers shared by the daemons and the CLI: clocks, files, ids,
 * host facts. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error-set.h" /* error_set(), which callers of these have always found here */
#include "macro.h"

usec_t now_realtime_usec(void);
usec_t now_monotonic_usec(void);
/* CPU time the calling thread has used (0 where the clock is missing). */
usec_t thread_cpu_usec(void);
/* Time the calling thread has waited for a CPU while runnable, read from
 * its open /proc/thread-self/schedstat; -EOPNOTSUPP where the kernel keeps
 * no scheduler statistics (kernel.task_delayacct=0 and no schedstats). */
int thread_run_delay_usec(int fd, usec_t *ret);

/* Reads a whole file (at most max bytes, -EFBIG beyond), NUL-terminated. */
int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* Writes atomically and durably: temp file in the same directory, fsync,
 * rename, fsync of the directory. An error after the rename (the directory
 * sync) leaves the new file in place but not known to be durable. */
int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* fsync()s the directory holding `path`, making a rename or unlink there durable. */
int fsync_directory_of(const char *path);
int mkdir_p(const char *path, unsigned mode);

/* 32 hex characters from the kernel's RNG (message ids, request ids). */
int random_id(char ret[33]);
int hostname_get(char **ret);
int boot_id_get(char ret[37]);
