/* SPDX-License-Identifier: MIT */
/* The test gateway's configuration, identify pacer, planned schedule and
 * StatusText. Pure: no clock, no I/O; the program baton-test-gateway.c is
 * the shell around it. */
#include "gateway-schedule.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "error-set.h"
#include "workload.h"

typedef struct GatewayBucket {
        usec_t next;     /* earliest start of this bucket's next identify */
        uint32_t *queue; /* shards waiting, ascending */
        size_t n_queue;
        size_t head; /* queue[head..n_queue) are still waiting */
} GatewayBucket;

struct GatewayPacer {
        unsigned concurrency;
        usec_t spacing; /* MAX(interval, identify) */
        GatewayBucket *buckets;
        size_t n_queued;
};

void gateway_config_init(GatewayConfig *c) {
        assert(c);
        *c = (GatewayConfig){
                .concurrency = 1,
                .interval = GATEWAY_INTERVAL_DEFAULT,
                .service = "-",
                .instance = "-",
                .host = "-",
        };
        rangelist_init(&c->shards);
        rangelist_init(&c->fail);
        rangelist_init(&c->fail_any);
}

void gateway_config_done(GatewayConfig *c) {
        assert(c);
        rangelist_done(&c->shards);
        rangelist_done(&c->fail);
        rangelist_done(&c->fail_any);
}

/* Every shard of l below the count; `what` names where l came from. */
static int check_below_count(const RangeList *l, uint32_t count, const char *what,
                             char **ret_error) {
        if (l->n_ranges > 0 && l->ranges[l->n_ranges - 1].hi >= count)
                return error_set(ret_error, -EINVAL,
                                 "%s has shard %" PRIu32 ", not below BATON_SHARD_COUNT=%" PRIu32,
                                 what, l->ranges[l->n_ranges - 1].hi, count);
        return 0;
}

/* An optional number: *ret untouched when the variable is unset or empty. */
static int load_uint(GatewayLookup lookup, void *userdata, const char *name, uint64_t min,
                     uint64_t max, uint64_t *ret, char **ret_error) {
        const char *v = lookup(name, userdata);
        uint64_t u;
        int r;

        if (isempty(v))
                return 0;
        r = workload_parse_uint(v, max, &u);
        if (r == -EINVAL)
                return error_set(ret_error, r, "%s=\"%s\" is not a decimal number", name, v);
        if (r < 0 || u < min)
                return error_set(ret_error, -ERANGE,
                                 "%s=%s is out of range (%" PRIu64 "..%" PRIu64 ")", name, v, min,
                                 max);
        *ret = u;
        return 0;
}

static int load_word(GatewayLookup lookup, void *userdata, const char *name, const char **ret,
                     char **ret_error) {
        const char *v = lookup(name, userdata);

        if (isempty(v))
                return 0;
        if (!workload_word_ok(v))
                return error_set(ret_error, -EINVAL,
                                 "%s=\"%s\" must not contain spaces or control characters", name,
                                 v);
        *ret = v;
        return 0;
}

int gateway_config_load(GatewayConfig *c, GatewayLookup lookup, void *userdata, char **ret_error) {
        _cleanup_(rangelist_done) RangeList shards = { 0 }, fail = { 0 }, fail_any = { 0 };
        _cleanup_free_ char *what = NULL;
        GatewayConfig n;
        const char *v;
        uint64_t u;
        int r;

        assert(c);
        assert(lookup);

        n = *c;

        v = lookup("BATON_SHARD_COUNT", userdata);
        if (isempty(v))
                return error_set(ret_error, -EINVAL, "BATON_SHARD_COUNT is not set");
        r = workload_parse_uint(v, GATEWAY_SHARD_COUNT_MAX, &u);
        if (r == -EINVAL)
                return error_set(ret_error, r, "BATON_SHARD_COUNT=\"%s\" is not a decimal number",
                                 v);
        if (r < 0 || u == 0)
                return error_set(ret_error, -ERANGE, "BATON_SHARD_COUNT=%s is out of range (1..%u)",
                                 v, GATEWAY_SHARD_COUNT_MAX);
        n.shard_count = (uint32_t) u;

        v = lookup("BATON_SHARDS_FILE", userdata);
        n.shards_file = isempty(v) ? NULL : v;
        v = lookup("BATON_SHARDS", userdata);
        if (n.shards_file && v)
                return error_set(ret_error, -EINVAL,
                                 "BATON_SHARDS and BATON_SHARDS_FILE are both set; the agent "
                                 "gives one or the other");
        if (!n.shards_file && !v)
                return error_set(ret_error, -EINVAL, "BATON_SHARDS is not set");
        if (v) {
                r = rangelist_parse(&shards, v);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return error_set(
                                ret_error, -EINVAL,
                                "BATON_SHARDS=\"%s\" is not a shard range list like 0-13,90-91", v);
                if (asprintf(&what, "BATON_SHARDS=%s", v) < 0)
                        return -ENOMEM;
                r = check_below_count(&shards, n.shard_count, what, ret_error);
                if (r < 0)
                        return r;
        }

        u = n.concurrency;
        r = load_uint(lookup, userdata, "GATEWAY_IDENTIFY_CONCURRENCY", 1, GATEWAY_CONCURRENCY_MAX,
                      &u, ret_error);
        if (r < 0)
                return r;
        n.concurrency = (unsigned) u;

        u = n.interval / USEC_PER_MSEC;
        r = load_uint(lookup, userdata, "GATEWAY_IDENTIFY_INTERVAL_MS", 0, GATEWAY_MS_MAX, &u,
                      ret_error);
        if (r < 0)
                return r;
        n.interval = u * USEC_PER_MSEC;

        u = n.identify / USEC_PER_MSEC;
        r = load_uint(lookup, userdata, "GATEWAY_IDENTIFY_MS", 0, GATEWAY_MS_MAX, &u, ret_error);
        if (r < 0)
                return r;
        n.identify = u * USEC_PER_MSEC;

        r = load_uint(lookup, userdata, "BATON_SHARD_EPOCH", 0, UINT64_MAX, &n.epoch, ret_error);
        if (r < 0)
                return r;

        v = lookup("GATEWAY_FAIL_SHARDS", userdata);
        if (!isempty(v)) {
                r = rangelist_parse(&fail_any, v);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return error_set(ret_error, -EINVAL,
                                         "GATEWAY_FAIL_SHARDS=\"%s\" is not a shard range list", v);
                /* A template may name shards other instances own: only ours fail. */
                r = rangelist_copy(&fail, &fail_any);
                if (r >= 0)
                        r = rangelist_intersect(&fail, &shards);
                if (r < 0)
                        return r;
        }

        r = load_word(lookup, userdata, "BATON_SERVICE", &n.service, ret_error);
        if (r < 0)
                return r;
        r = load_word(lookup, userdata, "BATON_INSTANCE", &n.instance, ret_error);
        if (r < 0)
                return r;
        r = load_word(lookup, userdata, "BATON_HOST", &n.host, ret_error);
        if (r < 0)
                return r;

        v = lookup("GATEWAY_IDENTIFY_LOG", userdata);
        n.log_path = isempty(v) ? NULL : v;

        /* Commit: the old lists go with the cleanups. */
        n.shards = shards;
        shards = c->shards;
        n.fail = fail;
        fail = c->fail;
        n.fail_any = fail_any;
        fail_any = c->fail_any;
        *c = n;
        return 0;
}

int gateway_config_set_shards(GatewayConfig *c, const char *text, char **ret_error) {
        _cleanup_(rangelist_done) RangeList shards = { 0 }, fail = { 0 };
        _cleanup_free_ char *what = NULL;
        int r;

        assert(c);
        assert(text);

        r = rangelist_parse_line(&shards, text);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return error_set(ret_error, -EINVAL,
                                 "BATON_SHARDS_FILE=%s does not hold a shard range list and a "
                                 "newline, like 0-13,90-91",
                                 strna(c->shards_file));
        if (asprintf(&what, "BATON_SHARDS_FILE=%s", strna(c->shards_file)) < 0)
                return -ENOMEM;
        r = check_below_count(&shards, c->shard_count, what, ret_error);
        if (r < 0)
                return r;
        r = rangelist_copy(&fail, &c->fail_any);
        if (r >= 0)
                r = rangelist_intersect(&fail, &shards);
        if (r < 0)
                return r;

        /* Commit: the old lists go with the cleanups. */
        rangelist_done(&c->shards);
        c->shards = shards;
        shards = (RangeList){ 0 };
        rangelist_done(&c->fail);
        c->fail = fail;
        fail = (RangeList){ 0 };
        return 0;
}

int gateway_pacer_new(unsigned concurrency, usec_t interval, usec_t identify, GatewayPacer **ret) {
        _cleanup_(gateway_pacer_freep) GatewayPacer *p = NULL;

        assert(ret);

        if (concurrency == 0 || concurrency > GATEWAY_CONCURRENCY_MAX)
                return -EINVAL;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->concurrency = concurrency;
        p->spacing = MAX(interval, identify);
        p->buckets = calloc(concurrency, sizeof(*p->buckets));
        if (!p->buckets)
                return -ENOMEM;

        *ret = TAKE_PTR(p);
        return 0;
}

GatewayPacer *gateway_pacer_free(GatewayPacer *p) {
        if (!p)
                return NULL;
        if (p->buckets)
                for (unsigned b = 0; b < p->concurrency; b++)
                        free(p->buckets[b].queue);
        free(p->buckets);
        return mfree(p);
}

int gateway_pacer_queue(GatewayPacer *p, const RangeList *shards) {
        _cleanup_free_ size_t *counts = NULL;
        _cleanup_free_ uint32_t **queues = NULL;
        size_t total = 0;
        int r = 0;

        assert(p);
        assert(shards);

        if (rangelist_count(shards) > GATEWAY_SHARD_COUNT_MAX)
                return -E2BIG;

        /* Build the new queues on the side, so a failure leaves the old ones. */
        counts = calloc(p->concurrency, sizeof(*counts));
        queues = calloc(p->concurrency, sizeof(*queues));
        if (!counts || !queues)
                return -ENOMEM;

        for (size_t i = 0; i < shards->n_ranges; i++)
                for (uint64_t s = shards->ranges[i].lo; s <= shards->ranges[i].hi; s++) {
                        counts[gateway_bucket((uint32_t) s, p->concurrency)]++;
                        total++;
                }

        for (unsigned b = 0; b < p->concurrency; b++) {
                if (counts[b] == 0)
                        continue;
                queues[b] = calloc(counts[b], sizeof(uint32_t));
                if (!queues[b]) {
                        r = -ENOMEM;
                        goto finish;
                }
                counts[b] = 0;
        }

        /* Ascending input gives ascending queues. */
        for (size_t i = 0; i < shards->n_ranges; i++)
                for (uint64_t s = shards->ranges[i].lo; s <= shards->ranges[i].hi; s++) {
                        unsigned b = gateway_bucket((uint32_t) s, p->concurrency);

                        queues[b][counts[b]++] = (uint32_t) s;
                }

        for (unsigned b = 0; b < p->concurrency; b++) {
                GatewayBucket *k = &p->buckets[b];

                free(k->queue);
                k->queue = TAKE_PTR(queues[b]);
                k->n_queue = counts[b];
                k->head = 0;
        }
        p->n_queued = total;

finish:
        for (unsigned b = 0; b < p->concurrency; b++)
                free(queues[b]);
        return r;
}

int gateway_pacer_next(GatewayPacer *p, usec_t now, uint32_t *ret_shard, usec_t *ret_next) {
        GatewayBucket *best = NULL;
        usec_t next = USEC_INFINITY;

        assert(p);
        assert(ret_shard);
        assert(ret_next);

        for (unsigned b = 0; b < p->concurrency; b++) {
                GatewayBucket *k = &p->buckets[b];

                if (k->head >= k->n_queue)
                        continue;
                if (k->next <= now) {
                        if (!best || k->queue[k->head] < best->queue[best->head])
                                best = k;
                } else
                        next = MIN(next, k->next);
        }

        if (!best) {
                *ret_next = next;
                return 0;
        }

        best->next = now > USEC_INFINITY - 1 - p->spacing ? USEC_INFINITY - 1 : now + p->spacing;
        p->n_queued--;
        *ret_shard = best->queue[best->head++];
        return 1;
}

size_t gateway_pacer_queued(const GatewayPacer *p) {
        assert(p);
        return p->n_queued;
}

int gateway_pacer_queued_shards(const GatewayPacer *p, RangeList *ret) {
        _cleanup_(rangelist_done) RangeList l = { 0 };
        int r;

        assert(p);
        assert(ret);

        for (unsigned b = 0; b < p->concurrency; b++) {
                const GatewayBucket *k = &p->buckets[b];

                for (size_t i = k->head; i < k->n_queue; i++) {
                        r = rangelist_add(&l, k->queue[i]);
                        if (r < 0)
                                return r;
                }
        }
        rangelist_done(ret);
        *ret = l;
        l = (RangeList){ 0 };
        return 0;
}

int gateway_schedule_plan(const GatewayConfig *c, GatewaySchedule *ret) {
        _cleanup_(gateway_pacer_freep) GatewayPacer *p = NULL;
        _cleanup_free_ GatewayIdentify *ids = NULL;
        uint64_t n_shards;
        size_t n = 0;
        usec_t now = 0;
        int r;

        assert(c);
        assert(ret);

        n_shards = rangelist_count(&c->shards);
        if (n_shards > GATEWAY_SHARD_COUNT_MAX)
                return -E2BIG;

        r = gateway_pacer_new(c->concurrency, c->interval, c->identify, &p);
        if (r < 0)
                return r;
        r = gateway_pacer_queue(p, &c->shards);
        if (r < 0)
                return r;

        ids = calloc(MAX(n_shards, (uint64_t) 1), sizeof(*ids));
        if (!ids)
                return -ENOMEM;

        for (;;) {
                uint32_t shard;
                usec_t next;

                r = gateway_pacer_next(p, now, &shard, &next);
                if (r == 0) {
                        if (next == USEC_INFINITY)
                                break;
                        now = next;
                        continue;
                }
                assert(n < n_shards);
                ids[n++] = (GatewayIdentify){
                        .shard = shard,
                        .bucket = gateway_bucket(shard, c->concurrency),
                        .start = now,
                        .done = now + c->identify,
                        .fails = rangelist_contains(&c->fail, shard),
                };
        }

        *ret = (GatewaySchedule){ .identifies = TAKE_PTR(ids), .n_identifies = n };
        return 0;
}

void gateway_schedule_done(GatewaySchedule *s) {
        assert(s);
        free(s->identifies);
        *s = (GatewaySchedule){ 0 };
}

int gateway_status_format(const RangeList *ready, const RangeList *connecting,
                          const RangeList *failed, char **ret) {
        const RangeList *lists[] = { ready, connecting, failed };
        static const char *const keys[] = { "ready", "connecting", "failed" };
        char *texts[ELEMENTSOF(lists)] = { 0 };
        size_t len = 0;
        char *buf, *p;
        int r = 0;

        assert(ready);
        assert(connecting);
        assert(failed);
        assert(ret);

        for (size_t i = 0; i < ELEMENTSOF(lists); i++) {
                if (lists[i]->n_ranges == 0)
                        continue;
                texts[i] = rangelist_format(lists[i]);
                if (!texts[i]) {
                        r = -ENOMEM;
                        goto finish;
                }
                len += strlen(keys[i]) + 2 + strlen(texts[i]);
        }

        buf = malloc(len + sizeof("ready="));
        if (!buf) {
                r = -ENOMEM;
                goto finish;
        }
        p = buf;
        *p = '\0';
        for (size_t i = 0; i < ELEMENTSOF(lists); i++)
                if (texts[i])
                        p += sprintf(p, "%s%s=%s", p == buf ? "" : " ", keys[i], texts[i]);
        if (p == buf)
                strcpy(buf, "ready=");
        *ret = buf;

finish:
        for (size_t i = 0; i < ELEMENTSOF(lists); i++)
                free(texts[i]);
        return r;
}
