/* SPDX-License-Identifier: MIT */
/* duration_parse/size_parse on arbitrary bytes: never crash, and whatever
 * parses formats to text that parses back to the same value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "fuzz.h"

const char *const fuzz_tokens[] = {
        "0",        "1",
        "5",        "9",
        ".",        ".5",
        "1.5",      " ",
        "us",       "ms",
        "s",        "min",
        "h",        "d",
        "w",        "sec",
        "hours",    "\xc2\xb5s",
        "K",        "M",
        "G",        "T",
        "B",        "iB",
        "infinity", "18446744073709551615",
        "30500568", "99999999999",
};
const size_t fuzz_n_tokens = sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s, small[8];
        usec_t u, u2;
        uint64_t b, b2;

        if (size > 4096)
                return 0;
        s = fuzz_strdup(data, size);
        if (!s)
                return 0;

        if (duration_parse(s, &u) >= 0) {
                char buf[DURATION_MAX_LEN];

                duration_format(buf, sizeof(buf), u);
                if (duration_parse(buf, &u2) < 0 || u2 != u)
                        abort();
                /* truncation keeps the NUL inside the buffer */
                duration_format(small, 1 + (size % sizeof(small)), u);
                if (!memchr(small, '\0', 1 + (size % sizeof(small))))
                        abort();
        }

        if (size_parse(s, &b) >= 0) {
                char buf[SIZE_MAX_LEN];

                size_format(buf, sizeof(buf), b);
                if (size_parse(buf, &b2) < 0 || b2 != b)
                        abort();
        }

        free(s);
        return 0;
}
