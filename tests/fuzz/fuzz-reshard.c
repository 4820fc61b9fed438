/* SPDX-License-Identifier: MIT */
/* Shard layouts and reshards on arbitrary bytes: shard_layout_parse() and
 * reshard_parse() never crash, and whatever they accept formats back to the
 * very same text. The bytes also drive a small program (a layout, a reshard
 * of it, steps with made-up reports, gate answers and operator controls),
 * so that every state the machine reaches is checked to parse back, and
 * its text, with one byte changed, is parsed again. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "shardplan.h"

const char *const fuzz_tokens[] = {
        "baton-shards/1",
        "baton-shards/1 epoch=1 count=8 instances=2 0:0:0-3 1:1:4-7",
        "baton-shards/1 epoch=3 count=10 instances=3 0:0:0-1,5,9 1:1:2-4,8 2:0:6-7",
        " epoch=",
        " count=",
        " instances=",
        "baton-reshard/1 service=gateway id=",
        "baton-reshard/1 service=gateway id=3 state=running from_epoch=1 to_epoch=1 "
        "from_count=8 to_count=8 from_instances=2 to_instances=3 max_starting=1 "
        "health_timeout=10000000 alert=0 items=3 2:pending:-:3,7:0:0:0:0 "
        "0:pending:0-3:0-2:0:1:0:0 1:pending:4-7:4-6:0:1:0:0 reason=-",
        "baton-reshard/1 service=gw id=1 state=running from_epoch=1 to_epoch=2 from_count=8 "
        "to_count=10 from_instances=2 to_instances=2 max_starting=2 health_timeout=1 alert=0 "
        "items=2 0:ready:0-3:0-4:0:1:5:6 1:ready:4-7:5-9:0:1:5:6 reason=-",
        " state=",
        "running",
        "paused",
        "failed",
        "done",
        "aborted",
        ":pending:",
        ":starting:",
        ":ready:",
        ":done:",
        ":failed:",
        " from_epoch=",
        " to_epoch=",
        " from_count=",
        " to_count=",
        " from_instances=",
        " to_instances=",
        " max_starting=",
        " health_timeout=",
        " alert=",
        " items=",
        " reason=-",
        " reason=\"",
        "\\x01",
        "\\\"",
        ":-:",
        "0",
        "1",
        "2",
        "3",
        "7",
        "8",
        "16777215",
        "16777216",
        "4294967295",
        "18446744073709551615",
        "-",
        ",",
        ":",
        " ",
        "0-3",
        "4-7",
};
const size_t fuzz_n_tokens = sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]);

/* The bytes as a stream of small numbers; zeros once they run out. */
typedef struct Bytes {
        const uint8_t *p;
        size_t n;
} Bytes;

static unsigned take(Bytes *b, unsigned below) {
        unsigned v;

        if (b->n == 0 || below == 0)
                return 0;
        v = *b->p++;
        b->n--;
        return v % below;
}

static void check_layout_text(const char *text) {
        ShardLayout l;
        char *error = NULL, *again = NULL;

        if (shard_layout_parse(text, &l, &error) < 0) {
                /* Every refusal says where. */
                if (error && strncmp(error, "column ", 7) != 0)
                        abort();
                free(error);
                return;
        }
        if (error)
                abort();
        if (shard_layout_format(&l, &again) >= 0) {
                if (strcmp(again, text) != 0)
                        abort();
                free(again);
        }
        /* An accepted layout is one the planner takes. */
        for (uint32_t n_to = 1; n_to <= 3 && n_to <= l.shard_count; n_to++) {
                RangeList sets[3];
                uint64_t total = 0;

                if (shard_rebalance(&l, n_to, sets) < 0)
                        abort();
                for (uint32_t i = 0; i < n_to; i++) {
                        total += rangelist_count(sets + i);
                        rangelist_done(sets + i);
                }
                if (total != l.shard_count)
                        abort();
        }
        shard_layout_done(&l);
}

/* Returns the parsed reshard (or NULL) after checking the round trip. */
static Reshard *check_reshard_text(const char *text) {
        Reshard *r = NULL;
        char *error = NULL, *again = NULL;

        if (reshard_parse(text, &r, &error) < 0) {
                if (error && strncmp(error, "column ", 7) != 0)
                        abort();
                free(error);
                return NULL;
        }
        if (error || !r)
                abort();
        if (reshard_format(r, &again) >= 0) {
                if (strcmp(again, text) != 0)
                        abort();
                free(again);
        }
        return r;
}

static bool gate(uint32_t instance, const RangeList *shards, void *userdata) {
        (void) shards;
        return take(userdata, 4) != 0;
}

/* Steps a reshard with reports and controls from the bytes; every state
 * reached must format and parse back, and a one-byte change of its text
 * must not crash the parser. */
static void drive(Reshard *r, Bytes *b) {
        ReshardAction acts[64];
        ReshardObserved obs[16];
        usec_t now = 1000;

        if (r->n_items > 16)
                return;
        for (unsigned s = 0; s < 24 && b->n > 0; s++) {
                size_t n_obs = 0, max = 2 * r->n_items + 3;
                char *text = NULL;
                Reshard *back;

                for (size_t k = 0; k < r->n_items; k++)
                        if (take(b, 2))
                                obs[n_obs++] = (ReshardObserved){ .instance = r->items[k].instance,
                                                                  .new_ready = take(b, 3) != 0 };
                now += take(b, 4) * r->health_timeout / 2;
                if (take(b, 8) == 0)
                        max = take(b, 3);
                if (reshard_step(r, obs, n_obs, now, gate, b, acts, max) > max)
                        abort();

                switch (take(b, 12)) {
                case 0:
                        (void) reshard_pause(r, take(b, 2) ? NULL : "why\n\xff");
                        break;
                case 1:
                        (void) reshard_resume(r);
                        break;
                case 2:
                        (void) reshard_abort(r, NULL);
                        break;
                default:
                        break;
                }

                if (reshard_format(r, &text) < 0)
                        return;
                back = check_reshard_text(text);
                if (!back)
                        abort(); /* a reachable state the parser refuses */
                reshard_free(back);
                if (b->n > 0) {
                        size_t at = take(b, (unsigned) strlen(text));
                        char c = (char) take(b, 256);

                        text[at] = c ? c : ':';
                        reshard_free(check_reshard_text(text));
                }
                free(text);
        }
}

static void program(Bytes *b) {
        uint32_t shards = 1 + take(b, 40), n = 1 + take(b, MIN(shards, 8u));
        ShardLayout l;
        char *text = NULL;
        Reshard *r = NULL;

        if (shard_layout_default(shards, n, &l) < 0)
                return;
        /* Non-contiguous sets: a rebalance first. */
        if (take(b, 2)) {
                uint32_t m = 1 + take(b, MIN(shards, 8u));
                RangeList *sets = calloc(m, sizeof(RangeList));

                if (!sets || shard_rebalance(&l, m, sets) < 0) {
                        free(sets);
                        shard_layout_done(&l);
                        return;
                }
                shard_layout_done(&l);
                l = (ShardLayout){ .epoch = 1 + take(b, 4),
                                   .shard_count = shards,
                                   .n_instances = m };
                l.slots = calloc(m, 1);
                l.sets = sets;
                if (!l.slots) {
                        for (uint32_t i = 0; i < m; i++)
                                rangelist_done(sets + i);
                        free(sets);
                        l.sets = NULL;
                        l.n_instances = 0;
                        return;
                }
                for (uint32_t i = 0; i < m; i++)
                        l.slots[i] = (uint8_t) take(b, 2);
        }
        if (shard_layout_format(&l, &text) >= 0) {
                check_layout_text(text);
                free(text);
        }

        if (reshard_new("gateway", take(b, 100), &l, 1 + take(b, 10),
                        take(b, 2) ? shards : 1 + take(b, 48), 1 + take(b, 3), 1 + take(b, 5),
                        &r) >= 0) {
                /* Half of the same-total ones run live (ShardChange=reload). */
                if (take(b, 2) && reshard_make_reload(r) < 0 && r->to_count == r->from_count)
                        abort();
                drive(r, b);
                if (r->state == RESHARD_DONE) {
                        ShardLayout res;

                        if (reshard_result(r, &l, &res) < 0)
                                abort();
                        shard_layout_done(&res);
                }
                reshard_free(r);
        }
        shard_layout_done(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Bytes b = { data, size };
        char *s;

        if (size > 8192)
                return 0;
        s = fuzz_strdup(data, size);
        if (!s)
                return 0;
        check_layout_text(s);
        reshard_free(check_reshard_text(s));
        free(s);

        program(&b);
        return 0;
}
