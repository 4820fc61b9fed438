/* SPDX-License-Identifier: MIT */
/* What both test workloads share: strict parsing of the numbers in their
 * environment, one clock for pacing and for log stamps, whole-line appends to
 * a log that several instances share, a small file read whole, and signals
 * as a file descriptor. libc only. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

/* Decimal digits only (no sign, space, or base prefix), at most max.
 * -EINVAL on junk or an empty string, -ERANGE above max. */
int workload_parse_uint(const char *s, uint64_t max, uint64_t *ret);

/* True if s is non-empty and has no whitespace or control character, so it
 * can stand as one word of a log line. */
bool workload_word_ok(const char *s);

/* Log stamps are derived from the monotonic clock plus an offset taken once,
 * so the spacing two stamps show is exactly the spacing the pacing used. */
typedef struct WorkloadClock {
        usec_t unix_offset; /* CLOCK_REALTIME - CLOCK_MONOTONIC at start */
} WorkloadClock;

void workload_clock_init(WorkloadClock *c);
usec_t workload_now(void); /* CLOCK_MONOTONIC in µs */
usec_t workload_unix_usec(const WorkloadClock *c, usec_t monotonic);

/* Opens path for appending (created 0644 if missing). */
int workload_log_open(const char *path, int *ret_fd);
/* Formats one line (a newline is added) and appends it with a single write(),
 * so lines of concurrent writers never interleave. -EIO on a short write. */
int workload_log_append(int fd, const char *format, ...) _printf_(2, 3);

/* Reads a whole file of at most max bytes (-EFBIG beyond) into a
 * NUL-terminated string; a NUL inside is -EINVAL. */
int workload_read_file(const char *path, size_t max, char **ret);

/* Blocks SIGTERM, SIGINT and SIGHUP and returns a signalfd for them. */
int workload_signals_open(int *ret_fd);
/* Waits for one of those signals until the monotonic time `until`
 * (USEC_INFINITY: no limit). 1 with *ret_signo set when one came, 0 when the
 * time is reached. */
int workload_signals_wait(int fd, usec_t until, int *ret_signo);
