/* SPDX-License-Identifier: MIT */
/* Range lists and StatusText tokens on arbitrary bytes: never crash, the
 * canonical text round-trips, and the set operations obey the identities a
 * bitmap would; the shards-file form agrees with the plain one. The input is
 * split at its first '|' into two lists. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rangelist.h"

const char *const fuzz_tokens[] = {
        "0", "1", "2", "3", "5", "9", "13",     "90",          "16777215", "16777216", "4294967295",
        "-", ",", ",", "-", "|", " ", "ready=", "connecting=", "failed=",  "text",     "\n",
};
const size_t fuzz_n_tokens = sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]);

static void check_canonical(const RangeList *l) {
        for (size_t i = 0; i < l->n_ranges; i++) {
                if (l->ranges[i].lo > l->ranges[i].hi)
                        abort();
                if (i > 0 && (uint64_t) l->ranges[i - 1].hi + 1 >= l->ranges[i].lo)
                        abort();
        }
}

static void check_roundtrip(const RangeList *l) {
        RangeList back;
        char *s = rangelist_format(l);

        if (!s)
                return;
        rangelist_init(&back);
        if (rangelist_parse(&back, s) < 0 || !rangelist_equal(&back, l))
                abort();
        rangelist_done(&back);
        free(s);
}

static void check_algebra(const RangeList *a, const RangeList *b) {
        RangeList u, i, d, x;

        rangelist_init(&u);
        rangelist_init(&i);
        rangelist_init(&d);
        rangelist_init(&x);
        if (rangelist_copy(&u, a) < 0 || rangelist_union(&u, b) < 0 || rangelist_copy(&i, a) < 0 ||
            rangelist_intersect(&i, b) < 0 || rangelist_copy(&d, a) < 0 ||
            rangelist_subtract(&d, b) < 0)
                goto finish;
        check_canonical(&u);
        check_canonical(&i);
        check_canonical(&d);

        /* |A ∪ B| + |A ∩ B| = |A| + |B| */
        if (rangelist_count(&u) + rangelist_count(&i) != rangelist_count(a) + rangelist_count(b))
                abort();
        /* (A − B) ∪ (A ∩ B) = A, and (A − B) ∩ B = ∅ */
        if (rangelist_copy(&x, &d) < 0 || rangelist_union(&x, &i) < 0)
                goto finish;
        if (!rangelist_equal(&x, a))
                abort();
        if (rangelist_intersect(&d, b) < 0)
                goto finish;
        if (d.n_ranges != 0)
                abort();
        /* membership at the edges agrees with the parts */
        for (size_t k = 0; k < a->n_ranges && k < 16; k++) {
                uint32_t v = a->ranges[k].hi;

                if (!rangelist_contains(&u, v) ||
                    rangelist_contains(&i, v) != rangelist_contains(b, v))
                        abort();
        }

finish:
        rangelist_done(&u);
        rangelist_done(&i);
        rangelist_done(&d);
        rangelist_done(&x);
}

/* The shards-file form is a list and one newline: it parses exactly when the
 * text without its last byte, a newline, parses as a list, to the same set. */
static void check_line(const char *s) {
        size_t len = strlen(s);
        bool has_nl = len > 0 && s[len - 1] == '\n' && !memchr(s, '\n', len - 1);
        RangeList a, b;
        char *head;
        int r;

        rangelist_init(&a);
        rangelist_init(&b);
        r = rangelist_parse_line(&a, s);
        head = has_nl ? strndup(s, len - 1) : NULL;
        if (has_nl && !head)
                goto finish;
        if (!has_nl && r != -EINVAL)
                abort();
        if (has_nl && r != -ENOMEM) {
                int q = rangelist_parse(&b, head);

                if (q == -ENOMEM)
                        goto finish;
                if ((q < 0) != (r < 0) || (r >= 0 && !rangelist_equal(&a, &b)))
                        abort();
        }

finish:
        free(head);
        rangelist_done(&a);
        rangelist_done(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        RangeList a, b;
        ShardStatus st;
        char *s, *bar;

        if (size > 8192)
                return 0;
        s = fuzz_strdup(data, size);
        if (!s)
                return 0;

        shard_status_init(&st);
        if (shard_status_parse(&st, s) >= 0) {
                check_canonical(&st.ready);
                check_canonical(&st.connecting);
                check_canonical(&st.failed);
                if (!st.other)
                        abort();
        }
        shard_status_done(&st);
        check_line(s);

        rangelist_init(&a);
        rangelist_init(&b);
        bar = strchr(s, '|');
        if (bar)
                *bar = '\0';
        if (rangelist_parse(&a, s) >= 0) {
                check_canonical(&a);
                check_roundtrip(&a);
                if (bar && rangelist_parse(&b, bar + 1) >= 0)
                        check_algebra(&a, &b);
        }
        rangelist_done(&a);
        rangelist_done(&b);
        free(s);
        return 0;
}
