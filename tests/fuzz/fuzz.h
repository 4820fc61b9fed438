/* SPDX-License-Identifier: MIT */
/* What every fuzz target shares: the libFuzzer entry point, the optional
 * token list for fuzz-main.c's generator, and the input as a C string. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Defined by a target to steer fuzz-main.c's generator (weak there). */
extern const char *const fuzz_tokens[];
extern const size_t fuzz_n_tokens;

/* The input NUL-terminated (an embedded NUL ends it early); NULL on OOM. */
static inline char *fuzz_strdup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (s) {
                memcpy(s, data, size);
                s[size] = '\0';
        }
        return s;
}
