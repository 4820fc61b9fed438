/* SPDX-License-Identifier: MIT */
/* Shard readiness from assignment, ActiveState and StatusText. The one place
 * that decides what "ready" means, so the agent and its tests agree. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "shards.h"

void shard_readiness_init(ShardReadiness *r) {
        *r = (ShardReadiness){ 0 };
        rangelist_init(&r->ready);
        rangelist_init(&r->connecting);
        rangelist_init(&r->failed);
}

void shard_readiness_done(ShardReadiness *r) {
        rangelist_done(&r->ready);
        rangelist_done(&r->connecting);
        rangelist_done(&r->failed);
        r->status = mfree(r->status);
}

static bool is_up(const char *active_state) {
        return streq_ptr(active_state, "active") || streq_ptr(active_state, "reloading");
}

/* dst ∩= assigned; sets *foreign if anything was cut. */
static int limit(RangeList *dst, const RangeList *assigned, bool *foreign) {
        uint64_t before = rangelist_count(dst);
        int r = rangelist_intersect(dst, assigned);

        if (r < 0)
                return r;
        if (rangelist_count(dst) != before)
                *foreign = true;
        return 0;
}

int shard_readiness_compute(const char *assigned, const char *active_state, const char *status_text,
                            ShardReadiness *ret) {
        _cleanup_(rangelist_done) RangeList want = { 0 };
        _cleanup_(shard_status_done) ShardStatus st = { 0 };
        ShardReadiness out;
        int r;

        assert(ret);

        rangelist_init(&want);
        r = rangelist_parse(&want, strempty(assigned));
        if (r < 0)
                return r;

        shard_readiness_init(&out);
        shard_status_init(&st);
        if (shard_status_parse(&st, strempty(status_text)) < 0) {
                /* Unreadable tokens: show the text, claim nothing. */
                out.status = strdup(strempty(status_text));
                if (!out.status) {
                        shard_readiness_done(&out);
                        return -ENOMEM;
                }
                *ret = out;
                return 0;
        }

        out.has_tokens = st.has_tokens;
        out.status = strdup(strempty(st.other));
        if (!out.status)
                goto oom;

        if (st.has_tokens) {
                if (rangelist_copy(&out.failed, &st.failed) < 0 ||
                    rangelist_copy(&out.connecting, &st.connecting) < 0 ||
                    limit(&out.failed, &want, &out.foreign) < 0 ||
                    limit(&out.connecting, &want, &out.foreign) < 0 ||
                    rangelist_subtract(&out.connecting, &out.failed) < 0)
                        goto oom;
                if (is_up(active_state)) {
                        if (rangelist_copy(&out.ready, &st.ready) < 0 ||
                            limit(&out.ready, &want, &out.foreign) < 0 ||
                            rangelist_subtract(&out.ready, &out.failed) < 0 ||
                            rangelist_subtract(&out.ready, &out.connecting) < 0)
                                goto oom;
                }
        } else if (is_up(active_state)) {
                if (rangelist_copy(&out.ready, &want) < 0)
                        goto oom;
        }

        *ret = out;
        return 0;

oom:
        shard_readiness_done(&out);
        return -ENOMEM;
}
