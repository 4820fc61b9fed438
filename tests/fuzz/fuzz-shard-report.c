/* SPDX-License-Identifier: MIT */
/* A ShardReport as the controller's status consumer receives it, then what
 * controller/shards.c does with it in pure code: each instance's range lists
 * parsed (a bad one owns nothing), its unit read as a copy of its service,
 * and the ready owners of each shard counted against a layout, as the shard
 * map does, which must agree with the set algebra. */
#include <stdlib.h>
#include <string.h>

#include "fuzz-wire.h"
#include "rangelist.h"
#include "shardplan.h"
#include "status.pb-c.h"
#include "topology.h"

/* The shard map counts owners per shard of the serving layout. */
#define TOTAL 96u

static void check_canonical(const RangeList *l) {
        _cleanup_free_ char *text = rangelist_format(l);
        RangeList back;

        if (!text)
                return;
        rangelist_init(&back);
        FUZZ_ASSERT(rangelist_parse(&back, text) >= 0 && rangelist_equal(&back, l));
        rangelist_done(&back);
        for (size_t i = 0; i < l->n_ranges; i++) {
                FUZZ_ASSERT(l->ranges[i].lo <= l->ranges[i].hi);
                FUZZ_ASSERT(l->ranges[i].hi < RANGELIST_MAX_SHARD);
                if (i > 0)
                        FUZZ_ASSERT((uint64_t) l->ranges[i - 1].hi + 1 < l->ranges[i].lo);
        }
}

/* controller/shards.c's count_owners() for one copy, and the same by sets. */
static void check_owners(const RangeList *assigned, const RangeList *ready) {
        RangeList both, all;
        uint64_t owned = 0;

        for (size_t k = 0; k < ready->n_ranges; k++)
                for (uint32_t sh = ready->ranges[k].lo; sh <= ready->ranges[k].hi && sh < TOTAL;
                     sh++)
                        owned += rangelist_contains(assigned, sh);

        rangelist_init(&both);
        rangelist_init(&all);
        if (rangelist_copy(&both, ready) >= 0 && rangelist_intersect(&both, assigned) >= 0 &&
            rangelist_add_range(&all, 0, TOTAL - 1) >= 0 && rangelist_intersect(&both, &all) >= 0)
                FUZZ_ASSERT(rangelist_count(&both) == owned);
        rangelist_done(&both);
        rangelist_done(&all);
}

static void drive(const CodecDecoded *d) {
        const Baton__V1__ShardReport *rep = (const Baton__V1__ShardReport *) d->body;

        if (!topology_host_id_is_valid(rep->host))
                return;
        for (size_t i = 0; i < rep->n_instances; i++) {
                const Baton__V1__ShardInstanceReport *in = rep->instances[i];
                RangeList assigned, ready, connecting, failed;
                uint32_t instance;
                uint8_t slot;

                rangelist_init(&assigned);
                rangelist_init(&ready);
                rangelist_init(&connecting);
                rangelist_init(&failed);
                if (rangelist_parse(&assigned, in->assigned) >= 0 &&
                    rangelist_parse(&ready, in->ready) >= 0 &&
                    rangelist_parse(&connecting, in->connecting) >= 0 &&
                    rangelist_parse(&failed, in->failed) >= 0) {
                        check_canonical(&assigned);
                        check_canonical(&ready);
                        check_canonical(&connecting);
                        check_canonical(&failed);
                        check_owners(&assigned, &ready);
                }
                if (shard_copy_parse(in->service, in->unit, &instance, &slot) >= 0) {
                        _cleanup_free_ char *unit = NULL;

                        FUZZ_ASSERT(shard_copy_unit(in->service, instance, slot, &unit) >= 0);
                        FUZZ_ASSERT(streq(unit, in->unit));
                }
                rangelist_done(&assigned);
                rangelist_done(&ready);
                rangelist_done(&connecting);
                rangelist_done(&failed);
        }
}

const FuzzWireTarget fuzz_wire_target = {
        .rx = &fuzz_rx_status,
        .body = &baton__v1__shard_report__descriptor,
        .drive = drive,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        return fuzz_wire_run(&fuzz_wire_target, data, size);
}
