/* SPDX-License-Identifier: MIT */
/* 64-bit FNV-1a, the one non-cryptographic hash baton uses (placement tie
 * breaks, config hashes, Placement digests). Fixed forever: changing it would
 * reshuffle tie-broken placements and restart units whose hash changed. Pure. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FNV1A64_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV1A64_PRIME UINT64_C(0x100000001b3)

/* FNV-1a over n bytes, continuing from h (FNV1A64_OFFSET to start). */
static inline uint64_t fnv1a64(uint64_t h, const void *data, size_t n) {
        const unsigned char *b = data;

        for (size_t i = 0; i < n; i++) {
                h ^= b[i];
                h *= FNV1A64_PRIME;
        }
        return h;
}

/* The same over a NUL-terminated string (without its NUL); NULL is "". */
static inline uint64_t fnv1a64_str(uint64_t h, const char *s) {
        return s ? fnv1a64(h, s, strlen(s)) : h;
}
