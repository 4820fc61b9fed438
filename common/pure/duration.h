/* SPDX-License-Identifier: MIT */
/* systemd-style time spans ("500ms", "5s", "2min", "1h 30min", "1.5s") and
 * sizes ("512M", "16G"). Pure. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* A bare number means seconds, as in systemd. "infinity" gives USEC_INFINITY.
 * Units: us usec µs, ms msec, s sec second(s), m min minute(s), h hr hour(s),
 * d day(s), w week(s). Components add up: "1h 30min", "1h30min"; fractions
 * are cut to whole µs ("1.5s"). -EINVAL on junk, -ERANGE on overflow (and on
 * a finite value equal to USEC_INFINITY). */
int duration_parse(const char *s, usec_t *ret);

/* Formats the largest exact units, e.g. "1h 30min", "500ms", "0"; "infinity".
 * Always NUL-terminates; returns buf. */
char *duration_format(char *buf, size_t len, usec_t u);
#define DURATION_MAX_LEN 64

/* Bytes with optional K, M, G, T suffix (powers of 1024), optionally followed
 * by "B"/"iB"; a fraction needs a suffix ("1.5G", cut to whole bytes).
 * -EINVAL on junk, -ERANGE on overflow. size_format() gives the largest
 * suffix that is exact ("1536M", "1K", "1000"). */
int size_parse(const char *s, uint64_t *ret);
char *size_format(char *buf, size_t len, uint64_t bytes);
#define SIZE_MAX_LEN 32
