/* SPDX-License-Identifier: MIT */
/* Sharded operations at Discord's real pace, computed from the plans the
 * controller makes (issue 12): the example's 96 shards over 6 instances with
 * IdentifyConcurrency=1 and IdentifyInterval=5s. For a rolling restart, a
 * reshard 6 → 7 (new copies, and live with ShardChange=reload) and a total
 * change 96 → 128 it gives the identifies the plan spends, the resumes, the
 * duration the start gate gives it, and the identify-limited minimum
 * ceil(identifies / concurrency) × interval, side by side. Nothing is waited
 * for: these are the figures `batonctl restart --dry-run` and `reshard
 * --dry-run` give, from the same code (shardplan.h, start_gate_estimate()).
 *
 *   baton-bench-shards [--shards N] [--instances N] [--concurrency N]
 *                      [--interval-ms N] [--json FILE]
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "macro.h"
#include "rangelist.h"
#include "shardplan.h"

typedef struct Figures {
        const char *operation;
        uint64_t identifies;
        uint64_t resumes;
        usec_t duration;
        usec_t minimum;
} Figures;

static usec_t minimum_of(uint64_t identifies, uint32_t concurrency, usec_t interval) {
        return (usec_t) ((identifies + concurrency - 1) / concurrency) * interval;
}

/* The gate's estimate for starts identifying `sets`, in order. */
static int estimate(uint32_t concurrency, usec_t interval, const RangeList *const *sets, size_t n,
                    const char *operation, Figures *ret) {
        uint64_t identifies = 0;
        usec_t duration = 0;
        int k;

        k = start_gate_estimate(concurrency, interval, sets, n, &duration, &identifies);
        if (k < 0)
                return k;
        *ret = (Figures){
                .operation = operation,
                .identifies = identifies,
                .duration = duration,
                .minimum = minimum_of(identifies, concurrency, interval),
        };
        return 0;
}

/* A reshard's figures: what each of its starts identifies, in its order. */
static int reshard_figures(const Reshard *r, uint32_t concurrency, usec_t interval,
                           const char *operation, Figures *ret) {
        _cleanup_free_ const RangeList **sets = calloc(r->n_items + 1, sizeof(RangeList *));
        _cleanup_free_ RangeList *ids = calloc(r->n_items + 1, sizeof(RangeList));
        size_t n = 0;
        int k = 0;

        if (!sets || !ids)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_items && k >= 0; i++) {
                k = reshard_item_identifies(r, &r->items[i], &ids[i]);
                if (k >= 0 && rangelist_count(&ids[i]) > 0)
                        sets[n++] = &ids[i];
        }
        if (k >= 0)
                k = estimate(concurrency, interval, sets, n, operation, ret);
        for (size_t i = 0; i < r->n_items; i++)
                rangelist_done(&ids[i]);
        if (k >= 0 && ret->identifies != reshard_cost(r))
                k = -EPROTO; /* the plan and its cost disagree */
        return k;
}

static int parse_u32(const char *s, uint32_t min, uint32_t *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v < min || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

static void print_duration(FILE *f, usec_t u) {
        if (u >= 3600 * USEC_PER_SEC)
                fprintf(f, "%5.2f h  ", (double) u / (3600.0 * USEC_PER_SEC));
        else if (u >= 60 * USEC_PER_SEC)
                fprintf(f, "%5.1f min", (double) u / (60.0 * USEC_PER_SEC));
        else
                fprintf(f, "%5.1f s  ", (double) u / USEC_PER_SEC);
}

int main(int argc, char **argv) {
        uint32_t shards = 96, instances = 6, concurrency = 1, interval_ms = 5000;
        const char *json = NULL;
        ShardLayout layout = { 0 };
        Reshard *r = NULL;
        Figures f[5];
        size_t n = 0;
        usec_t interval;
        int k;

        for (int i = 1; i < argc; i++) {
                uint32_t *dst = streq(argv[i], "--shards")        ? &shards
                                : streq(argv[i], "--instances")   ? &instances
                                : streq(argv[i], "--concurrency") ? &concurrency
                                : streq(argv[i], "--interval-ms") ? &interval_ms
                                                                  : NULL;

                if (streq(argv[i], "--json") && i + 1 < argc)
                        json = argv[++i];
                else if (!dst || i + 1 >= argc || parse_u32(argv[++i], 1, dst) < 0) {
                        fprintf(stderr,
                                "usage: %s [--shards N] [--instances N] [--concurrency N] "
                                "[--interval-ms N] [--json FILE]\n",
                                argv[0]);
                        return 2;
                }
        }
        interval = (usec_t) interval_ms * USEC_PER_MSEC;
        if (instances + 1 > shards) {
                fprintf(stderr, "%u instances + 1 do not fit %u shards\n", instances, shards);
                return 2;
        }

        k = shard_layout_default(shards, instances, &layout);
        if (k < 0)
                goto fail;
        /* A rolling restart replaces every copy, make-before-break, one at a
         * time (MaxSurge=1): each new copy identifies its whole set. */
        {
                _cleanup_free_ const RangeList **sets = calloc(instances, sizeof(RangeList *));

                if (!sets) {
                        k = -ENOMEM;
                        goto fail;
                }
                for (uint32_t i = 0; i < instances; i++)
                        sets[i] = &layout.sets[i];
                k = estimate(concurrency, interval, sets, instances, "rolling restart", &f[n++]);
                if (k < 0)
                        goto fail;
        }
        /* One more instance, each changed instance a new copy; then live. */
        for (int live = 0; live < 2; live++) {
                k = reshard_new("gateway", 1, &layout, instances + 1, shards, 1,
                                15 * 60 * USEC_PER_SEC, &r);
                if (k >= 0)
                        k = reshard_spread_gains(r, concurrency);
                if (k >= 0 && live)
                        k = reshard_make_reload(r);
                if (k >= 0)
                        k = reshard_figures(r, concurrency, interval,
                                            live ? "reshard +1 instance, ShardChange=reload"
                                                 : "reshard +1 instance, new copies",
                                            &f[n++]);
                r = reshard_free(r);
                if (k < 0)
                        goto fail;
        }
        /* A third more shards: a whole new set under a new epoch. */
        k = reshard_new("gateway", 1, &layout, instances, shards + shards / 3, 1,
                        15 * 60 * USEC_PER_SEC, &r);
        if (k >= 0)
                k = reshard_figures(r, concurrency, interval, "new total (+1/3 shards)", &f[n++]);
        r = reshard_free(r);
        if (k < 0)
                goto fail;

        printf("Sharded operations at %u identify(s) per %u ms, %u shards over %u instances "
               "(computed from the plans):\n\n",
               concurrency, interval_ms, shards, instances);
        printf("%-40s %10s %8s %12s %12s %7s\n", "operation", "identifies", "resumes", "duration",
               "minimum", "ratio");
        for (size_t i = 0; i < n; i++) {
                printf("%-40s %10" PRIu64 " %8" PRIu64 "    ", f[i].operation, f[i].identifies,
                       f[i].resumes);
                print_duration(stdout, f[i].duration);
                printf("    ");
                print_duration(stdout, f[i].minimum);
                printf(" %6.2f×\n",
                       f[i].minimum > 0 ? (double) f[i].duration / (double) f[i].minimum : 0.0);
        }
        printf("\nminimum = ceil(identifies / concurrency) × interval; resumes stay 0 until "
               "Handoff=resume.\n");

        if (json) {
                FILE *out = fopen(json, "we");

                if (!out) {
                        k = -errno;
                        goto fail;
                }
                fprintf(out,
                        "{\"shards\": %u, \"instances\": %u, \"concurrency\": %u, "
                        "\"interval_us\": %" PRIu64 ", \"operations\": [",
                        shards, instances, concurrency, (uint64_t) interval);
                for (size_t i = 0; i < n; i++)
                        fprintf(out,
                                "%s{\"operation\": \"%s\", \"identifies\": %" PRIu64
                                ", \"resumes\": %" PRIu64 ", \"duration_us\": %" PRIu64
                                ", \"minimum_us\": %" PRIu64 "}",
                                i ? ", " : "", f[i].operation, f[i].identifies, f[i].resumes,
                                (uint64_t) f[i].duration, (uint64_t) f[i].minimum);
                fprintf(out, "]}\n");
                if (fclose(out) != 0) {
                        k = -errno;
                        goto fail;
                }
        }
        shard_layout_done(&layout);
        return 0;

fail:
        fprintf(stderr, "baton-bench-shards: %s\n", strerror(-k));
        shard_layout_done(&layout);
        reshard_free(r);
        return 1;
}
