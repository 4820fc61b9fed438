/* SPDX-License-Identifier: MIT */
/* STATUS= parsing as the agent does it for a ShardReport:
 * shard_readiness_compute() on an assignment, an ActiveState and the
 * service's StatusText, checked against shards.h's rules: everything
 * reported lies inside the assignment, the three sets are disjoint, nothing
 * is ready unless the unit is up, an up unit without tokens is ready
 * everywhere, and `foreign` says whether tokens named other shards. The
 * result then travels as range list text and must parse back.
 * The input is "ASSIGNED\nACTIVE_STATE\nSTATUS_TEXT". */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "rangelist.h"
#include "shards.h"

const char *const fuzz_tokens[] = {
        "0-15",   "\n",          "active",  "activating", "reloading", "inactive", "failed",
        "ready=", "connecting=", "failed=", " ",          ",",         "-",        "0",
        "3",      "15",          "16",      "95",         "16777215",  "16777216", "Serving",
};
const size_t fuzz_n_tokens = ELEMENTSOF(fuzz_tokens);

static bool subset(const RangeList *a, const RangeList *b) {
        RangeList x;
        bool ok;

        rangelist_init(&x);
        if (rangelist_copy(&x, a) < 0 || rangelist_subtract(&x, b) < 0) {
                rangelist_done(&x);
                return true; /* out of memory: no verdict */
        }
        ok = x.n_ranges == 0;
        rangelist_done(&x);
        return ok;
}

static bool disjoint(const RangeList *a, const RangeList *b) {
        RangeList x;
        bool ok;

        rangelist_init(&x);
        if (rangelist_copy(&x, a) < 0 || rangelist_intersect(&x, b) < 0) {
                rangelist_done(&x);
                return true;
        }
        ok = x.n_ranges == 0;
        rangelist_done(&x);
        return ok;
}

static void check_text(const RangeList *l) {
        _cleanup_free_ char *text = rangelist_format(l);
        RangeList back;

        if (!text)
                return;
        rangelist_init(&back);
        FUZZ_ASSERT(rangelist_parse(&back, text) >= 0 && rangelist_equal(&back, l));
        rangelist_done(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = NULL;
        char *active, *status;
        RangeList want;
        ShardStatus st;
        ShardReadiness r;
        bool up, parsed;
        int k, p;

        if (size > 8192)
                return 0;
        s = fuzz_strdup(data, size);
        if (!s)
                return 0;
        active = strchr(s, '\n');
        if (active)
                *active++ = '\0';
        else
                active = s + strlen(s);
        status = strchr(active, '\n');
        if (status)
                *status++ = '\0';
        else
                status = active + strlen(active);
        up = streq(active, "active") || streq(active, "reloading");

        rangelist_init(&want);
        k = shard_readiness_compute(s, active, status, &r);
        p = rangelist_parse(&want, s);
        if (p < 0) {
                /* The assignment's own error: -EINVAL, -ERANGE past the
                 * largest shard id. */
                FUZZ_ASSERT(k == p || k == -ENOMEM);
                rangelist_done(&want);
                return 0;
        }
        if (k == -ENOMEM) {
                rangelist_done(&want);
                return 0;
        }
        FUZZ_ASSERT(k == 0 && r.status);

        FUZZ_ASSERT(subset(&r.ready, &want) && subset(&r.connecting, &want) &&
                    subset(&r.failed, &want));
        FUZZ_ASSERT(disjoint(&r.ready, &r.connecting) && disjoint(&r.ready, &r.failed) &&
                    disjoint(&r.connecting, &r.failed));
        if (!up)
                FUZZ_ASSERT(r.ready.n_ranges == 0);

        shard_status_init(&st);
        parsed = shard_status_parse(&st, status) >= 0;
        FUZZ_ASSERT(r.has_tokens == (parsed && st.has_tokens));
        if (!r.has_tokens) {
                FUZZ_ASSERT(r.connecting.n_ranges == 0 && r.failed.n_ranges == 0 && !r.foreign);
                if (up && parsed)
                        FUZZ_ASSERT(rangelist_equal(&r.ready, &want));
                if (!parsed)
                        FUZZ_ASSERT(r.ready.n_ranges == 0 && streq(r.status, status));
        } else {
                /* Tokens outside the assignment are foreign: failed and
                 * connecting always count, ready only while up. */
                bool outside = !subset(&st.failed, &want) || !subset(&st.connecting, &want) ||
                               (up && !subset(&st.ready, &want));

                FUZZ_ASSERT(r.foreign == outside);
                /* Failed wins over connecting over ready, inside the assignment. */
                FUZZ_ASSERT(subset(&r.failed, &st.failed) &&
                            subset(&r.connecting, &st.connecting) && subset(&r.ready, &st.ready));
        }
        shard_status_done(&st);

        check_text(&r.ready);
        check_text(&r.connecting);
        check_text(&r.failed);
        shard_readiness_done(&r);
        rangelist_done(&want);
        return 0;
}
