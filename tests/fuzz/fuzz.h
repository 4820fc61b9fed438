/* SPDX-License-Identifier: MIT */
/* What every fuzz target shares: the libFuzzer entry point, the optional
 * token list for fuzz-main.c's generator, and the input as a C string. */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

/* Aborts with a message on stderr: a broken promise, for the fuzzer to keep. */
__attribute__((noreturn, format(printf, 1, 2), unused)) static void fuzz_fail(const char *fmt,
                                                                              ...) {
        va_list ap;

        va_start(ap, fmt);
        fputs("fuzz: broken promise: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        abort();
}

#define FUZZ_ASSERT(expr)                                                                          \
        do {                                                                                       \
                if (!(expr))                                                                       \
                        fuzz_fail("%s:%d: %s", __FILE__, __LINE__, #expr);                         \
        } while (0)
