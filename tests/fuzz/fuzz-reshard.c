/* SPDX-License-Identifier: MIT */
/* Placeholder: being written. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz.h"

const char *const fuzz_tokens[] = { "x" };
const size_t fuzz_n_tokens = 1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        (void) data;
        (void) size;
        return 0;
}
