/* SPDX-License-Identifier: MIT */
/* The test gateway's pure logic: its environment (what it refuses and why),
 * the identify pacer (no bucket ever starts more than one identify per
 * interval, whatever the wake-up jitter), the planned schedule (each shard
 * once, each bucket as early as the limit allows) and its StatusText. */
#include <errno.h>
#include <inttypes.h>

#include "gateway-schedule.h"
#include "macro.h"
#include "rangelist.h"
#include "tap.h"
#include "workload.h"

#define MSEC USEC_PER_MSEC

/* A fake environment: a NULL-terminated list of "NAME=value". */
static const char *lookup(const char *name, void *userdata) {
        const char *const *env = userdata;
        size_t n = strlen(name);

        for (; *env; env++)
                if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
                        return *env + n + 1;
        return NULL;
}

static char *load_error;

/* Loads env into c (initialised here); returns the result, the message in
 * load_error. */
static int load(GatewayConfig *c, const char *const *env) {
        free(load_error);
        load_error = NULL;
        gateway_config_init(c);
        return gateway_config_load(c, lookup, (void *) env, &load_error);
}

#define ASSERT_REFUSED(env, err, needle)                                                           \
        do {                                                                                       \
                GatewayConfig c_;                                                                  \
                ASSERT_ERR(load(&c_, (const char *const[]) env), err);                             \
                ASSERT_CONTAINS(load_error, needle);                                               \
                ASSERT_EQ_UINT(c_.shards.n_ranges, 0);                                             \
                gateway_config_done(&c_);                                                          \
        } while (0)
#define ENV(...)                                                                                   \
        { __VA_ARGS__, NULL }

static char *fmt(const RangeList *l) {
        static char buf[8][256];
        static size_t i;
        char *s = rangelist_format(l);

        i = (i + 1) % ELEMENTSOF(buf);
        snprintf(buf[i], sizeof(buf[i]), "%s", s ? s : "(oom)");
        free(s);
        return buf[i];
}

TEST(config_defaults) {
        GatewayConfig c;

        ASSERT_OK(load(&c, (const char *const[]) ENV("BATON_SHARDS=0-4", "BATON_SHARD_COUNT=5")));
        ASSERT_STREQ(fmt(&c.shards), "0-4");
        ASSERT_EQ_UINT(c.shard_count, 5);
        ASSERT_EQ_UINT(c.concurrency, 1);
        ASSERT_EQ_UINT(c.interval, 5000 * MSEC);
        ASSERT_EQ_UINT(c.identify, 0);
        ASSERT_EQ_UINT(c.epoch, 0);
        ASSERT_STREQ(fmt(&c.fail), "");
        ASSERT_STREQ(c.service, "-");
        ASSERT_STREQ(c.instance, "-");
        ASSERT_STREQ(c.host, "-");
        ASSERT_NULL(c.log_path);
        gateway_config_done(&c);
}

TEST(config_everything) {
        GatewayConfig c;

        ASSERT_OK(load(&c,
                       (const char *const[]) ENV(
                               "BATON_SERVICE=gw", "BATON_INSTANCE=3", "BATON_HOST=h1",
                               "BATON_SHARDS=90-91,0-13", "BATON_SHARD_COUNT=96",
                               "BATON_SHARD_EPOCH=18446744073709551615",
                               "GATEWAY_IDENTIFY_CONCURRENCY=16", "GATEWAY_IDENTIFY_INTERVAL_MS=20",
                               "GATEWAY_IDENTIFY_MS=7", "GATEWAY_IDENTIFY_LOG=/tmp/x.log",
                               "GATEWAY_FAIL_SHARDS=13-20,91,95")));
        ASSERT_STREQ(fmt(&c.shards), "0-13,90-91");
        ASSERT_EQ_UINT(c.shard_count, 96);
        ASSERT_EQ_UINT(c.epoch, UINT64_MAX);
        ASSERT_EQ_UINT(c.concurrency, 16);
        ASSERT_EQ_UINT(c.interval, 20 * MSEC);
        ASSERT_EQ_UINT(c.identify, 7 * MSEC);
        /* Only the shards this instance owns can fail. */
        ASSERT_STREQ(fmt(&c.fail), "13,91");
        ASSERT_STREQ(c.service, "gw");
        ASSERT_STREQ(c.instance, "3");
        ASSERT_STREQ(c.host, "h1");
        ASSERT_STREQ(c.log_path, "/tmp/x.log");
        gateway_config_done(&c);
}

TEST(config_empty_optional_is_unset) {
        GatewayConfig c;

        ASSERT_OK(load(&c, (const char *const[]) ENV(
                                   "BATON_SHARDS=1", "BATON_SHARD_COUNT=2", "BATON_SERVICE=",
                                   "GATEWAY_IDENTIFY_CONCURRENCY=", "GATEWAY_IDENTIFY_LOG=",
                                   "GATEWAY_FAIL_SHARDS=", "BATON_SHARD_EPOCH=")));
        ASSERT_EQ_UINT(c.concurrency, 1);
        ASSERT_STREQ(c.service, "-");
        ASSERT_NULL(c.log_path);
        gateway_config_done(&c);
}

TEST(config_empty_shards_is_no_shard) {
        GatewayConfig c;

        ASSERT_OK(load(&c, (const char *const[]) ENV("BATON_SHARDS=", "BATON_SHARD_COUNT=8")));
        ASSERT_EQ_UINT(rangelist_count(&c.shards), 0);
        gateway_config_done(&c);
}

TEST(config_refuses_missing) {
        ASSERT_REFUSED(ENV("BATON_SHARD_COUNT=5"), -EINVAL, "BATON_SHARDS is not set");
        ASSERT_REFUSED(ENV("BATON_SHARDS=0-4"), -EINVAL, "BATON_SHARD_COUNT is not set");
        ASSERT_REFUSED(ENV("BATON_SHARDS=0-4", "BATON_SHARD_COUNT="), -EINVAL,
                       "BATON_SHARD_COUNT is not set");
}

TEST(config_refuses_malformed_shards) {
        ASSERT_REFUSED(ENV("BATON_SHARDS=0-x", "BATON_SHARD_COUNT=5"), -EINVAL,
                       "BATON_SHARDS=\"0-x\" is not a shard range list");
        ASSERT_REFUSED(ENV("BATON_SHARDS=4-2", "BATON_SHARD_COUNT=5"), -EINVAL, "BATON_SHARDS");
        ASSERT_REFUSED(ENV("BATON_SHARDS=-1", "BATON_SHARD_COUNT=5"), -EINVAL, "BATON_SHARDS");
        ASSERT_REFUSED(ENV("BATON_SHARDS=a", "BATON_SHARD_COUNT=5"), -EINVAL, "BATON_SHARDS");
        ASSERT_REFUSED(ENV("BATON_SHARDS=99999999999", "BATON_SHARD_COUNT=5"), -EINVAL,
                       "BATON_SHARDS");
}

TEST(config_refuses_shard_not_below_count) {
        ASSERT_REFUSED(ENV("BATON_SHARDS=0-5", "BATON_SHARD_COUNT=5"), -EINVAL,
                       "BATON_SHARDS=0-5 has shard 5, not below BATON_SHARD_COUNT=5");
        ASSERT_REFUSED(ENV("BATON_SHARDS=0,1000", "BATON_SHARD_COUNT=96"), -EINVAL,
                       "has shard 1000");
}

TEST(config_refuses_bad_count) {
        ASSERT_REFUSED(ENV("BATON_SHARDS=", "BATON_SHARD_COUNT=0"), -ERANGE,
                       "BATON_SHARD_COUNT=0 is out of range");
        ASSERT_REFUSED(ENV("BATON_SHARDS=0", "BATON_SHARD_COUNT=99999999"), -ERANGE,
                       "BATON_SHARD_COUNT=99999999 is out of range");
        ASSERT_REFUSED(ENV("BATON_SHARDS=0", "BATON_SHARD_COUNT=ten"), -EINVAL,
                       "BATON_SHARD_COUNT=\"ten\" is not a decimal number");
        ASSERT_REFUSED(ENV("BATON_SHARDS=0", "BATON_SHARD_COUNT= 5"), -EINVAL, "BATON_SHARD_COUNT");
}

TEST(config_refuses_bad_numbers) {
#define BASE "BATON_SHARDS=0-4", "BATON_SHARD_COUNT=5"
        ASSERT_REFUSED(ENV(BASE, "GATEWAY_IDENTIFY_CONCURRENCY=0"), -ERANGE,
                       "GATEWAY_IDENTIFY_CONCURRENCY=0 is out of range (1..1024)");
        ASSERT_REFUSED(ENV(BASE, "GATEWAY_IDENTIFY_CONCURRENCY=1025"), -ERANGE,
                       "GATEWAY_IDENTIFY_CONCURRENCY");
        ASSERT_REFUSED(ENV(BASE, "GATEWAY_IDENTIFY_CONCURRENCY=-1"), -EINVAL,
                       "GATEWAY_IDENTIFY_CONCURRENCY=\"-1\" is not a decimal number");
        ASSERT_REFUSED(ENV(BASE, "GATEWAY_IDENTIFY_INTERVAL_MS=1.5"), -EINVAL,
                       "GATEWAY_IDENTIFY_INTERVAL_MS");
        ASSERT_REFUSED(ENV(BASE, "GATEWAY_IDENTIFY_INTERVAL_MS=5s"), -EINVAL,
                       "GATEWAY_IDENTIFY_INTERVAL_MS");
        ASSERT_REFUSED(ENV(BASE, "GATEWAY_IDENTIFY_INTERVAL_MS=86400001"), -ERANGE,
                       "GATEWAY_IDENTIFY_INTERVAL_MS");
        ASSERT_REFUSED(ENV(BASE, "GATEWAY_IDENTIFY_MS=99999999999999999999999"), -ERANGE,
                       "GATEWAY_IDENTIFY_MS");
        ASSERT_REFUSED(ENV(BASE, "BATON_SHARD_EPOCH=x1"), -EINVAL, "BATON_SHARD_EPOCH");
        ASSERT_REFUSED(ENV(BASE, "GATEWAY_FAIL_SHARDS=4-"), -EINVAL, "GATEWAY_FAIL_SHARDS");
#undef BASE
}

TEST(config_refuses_words_that_break_the_log) {
        ASSERT_REFUSED(ENV("BATON_SHARDS=0", "BATON_SHARD_COUNT=1", "BATON_SERVICE=a b"), -EINVAL,
                       "BATON_SERVICE=\"a b\" must not contain spaces");
        ASSERT_REFUSED(ENV("BATON_SHARDS=0", "BATON_SHARD_COUNT=1", "BATON_HOST=h\n1"), -EINVAL,
                       "BATON_HOST");
}

TEST(config_failure_leaves_config) {
        GatewayConfig c;

        ASSERT_OK(load(&c, (const char *const[]) ENV("BATON_SHARDS=3", "BATON_SHARD_COUNT=4")));
        ASSERT_ERR(gateway_config_load(&c, lookup,
                                       (void *) (const char *const[]) ENV("BATON_SHARDS=0-9",
                                                                          "BATON_SHARD_COUNT=4"),
                                       NULL),
                   -EINVAL);
        ASSERT_STREQ(fmt(&c.shards), "3");
        ASSERT_EQ_UINT(c.shard_count, 4);
        gateway_config_done(&c);
}

TEST(config_shards_file) {
        _cleanup_free_ char *e1 = NULL, *e2 = NULL;
        GatewayConfig c;

        /* the set comes later, from the file's text */
        ASSERT_OK(load(&c, (const char *const[]) ENV("BATON_SHARDS_FILE=/run/s/gw@3.service",
                                                     "BATON_SHARD_COUNT=16",
                                                     "GATEWAY_FAIL_SHARDS=1,9,20")));
        ASSERT_STREQ(c.shards_file, "/run/s/gw@3.service");
        ASSERT_EQ_UINT(c.shards.n_ranges, 0);
        ASSERT_STREQ(fmt(&c.fail), "");
        ASSERT_OK(gateway_config_set_shards(&c, "8-11,0-3\n", NULL));
        ASSERT_STREQ(fmt(&c.shards), "0-3,8-11");
        ASSERT_STREQ(fmt(&c.fail), "1,9"); /* only ours fail, whatever the set */
        ASSERT_OK(gateway_config_set_shards(&c, "2-5\n", NULL));
        ASSERT_STREQ(fmt(&c.shards), "2-5");
        ASSERT_STREQ(fmt(&c.fail), "");

        /* what is refused leaves the set */
        ASSERT_ERR(gateway_config_set_shards(&c, "0-3", &e1), -EINVAL);
        ASSERT_STREQ(e1, "BATON_SHARDS_FILE=/run/s/gw@3.service does not hold a shard range "
                         "list and a newline, like 0-13,90-91");
        ASSERT_ERR(gateway_config_set_shards(&c, "15-16\n", &e2), -EINVAL);
        ASSERT_STREQ(e2, "BATON_SHARDS_FILE=/run/s/gw@3.service has shard 16, not below "
                         "BATON_SHARD_COUNT=16");
        ASSERT_ERR(gateway_config_set_shards(&c, "1\n2\n", NULL), -EINVAL);
        ASSERT_STREQ(fmt(&c.shards), "2-5");

        ASSERT_OK(gateway_config_set_shards(&c, "\n", NULL));
        ASSERT_EQ_UINT(c.shards.n_ranges, 0);
        gateway_config_done(&c);

        /* an empty BATON_SHARDS_FILE is unset; both forms at once are refused */
        ASSERT_REFUSED(ENV("BATON_SHARDS_FILE=", "BATON_SHARD_COUNT=5"), -EINVAL,
                       "BATON_SHARDS is not set");
        ASSERT_REFUSED(ENV("BATON_SHARDS_FILE=/s", "BATON_SHARDS=0-4", "BATON_SHARD_COUNT=5"),
                       -EINVAL, "BATON_SHARDS and BATON_SHARDS_FILE are both set");
        ASSERT_REFUSED(ENV("BATON_SHARDS_FILE=/s", "BATON_SHARDS=", "BATON_SHARD_COUNT=5"), -EINVAL,
                       "both set");
}

TEST(parse_uint) {
        uint64_t u = 7;

        ASSERT_OK(workload_parse_uint("0", 10, &u));
        ASSERT_EQ_UINT(u, 0);
        ASSERT_OK(workload_parse_uint("010", 10, &u));
        ASSERT_EQ_UINT(u, 10);
        ASSERT_OK(workload_parse_uint("18446744073709551615", UINT64_MAX, &u));
        ASSERT_EQ_UINT(u, UINT64_MAX);
        u = 7;
        ASSERT_ERR(workload_parse_uint("18446744073709551616", UINT64_MAX, &u), -ERANGE);
        ASSERT_ERR(workload_parse_uint("11", 10, &u), -ERANGE);
        ASSERT_ERR(workload_parse_uint("", 10, &u), -EINVAL);
        ASSERT_ERR(workload_parse_uint("+1", 10, &u), -EINVAL);
        ASSERT_ERR(workload_parse_uint(" 1", 10, &u), -EINVAL);
        ASSERT_ERR(workload_parse_uint("1 ", 10, &u), -EINVAL);
        ASSERT_ERR(workload_parse_uint("0x1", 10, &u), -EINVAL);
        ASSERT_EQ_UINT(u, 7);
}

/* Everything a schedule must be, checked without the pacer's own code. */
static void check_schedule(const GatewayConfig *c, const GatewaySchedule *s) {
        usec_t spacing = MAX(c->interval, c->identify);
        usec_t last[64];
        size_t per_bucket[64] = { 0 };
        RangeList seen;

        ASSERT_LE_UINT(c->concurrency, ELEMENTSOF(last));
        ASSERT_EQ_UINT(s->n_identifies, rangelist_count(&c->shards));
        rangelist_init(&seen);
        for (size_t i = 0; i < s->n_identifies; i++) {
                const GatewayIdentify *id = &s->identifies[i];

                if (rangelist_contains(&seen, id->shard))
                        TAP_FAIL_("shard %" PRIu32 " identifies twice", id->shard);
                ASSERT_OK(rangelist_add(&seen, id->shard));
                ASSERT_EQ_UINT(id->bucket, id->shard % c->concurrency);
                ASSERT_EQ_UINT(id->done, id->start + c->identify);
                ASSERT_EQ_INT(id->fails, rangelist_contains(&c->fail, id->shard));
                if (i > 0) {
                        const GatewayIdentify *prev = &s->identifies[i - 1];

                        ASSERT_GE_UINT(id->start, prev->start);
                        if (id->start == prev->start)
                                ASSERT_GT_INT(id->shard, prev->shard);
                }

                /* The limit: one identify per bucket per interval, one at a time. */
                if (per_bucket[id->bucket] > 0 && id->start - last[id->bucket] < spacing)
                        TAP_FAIL_("bucket %u: shard %" PRIu32 " at %" PRIu64 " only %" PRIu64
                                  "µs after the previous",
                                  id->bucket, id->shard, id->start, id->start - last[id->bucket]);
                /* And no slower than it: the k-th of a bucket starts at k × spacing. */
                ASSERT_EQ_UINT(id->start, per_bucket[id->bucket] * spacing);
                last[id->bucket] = id->start;
                per_bucket[id->bucket]++;
        }
        if (!rangelist_equal(&seen, &c->shards))
                TAP_FAIL_("identified %s, owned %s", fmt(&seen), fmt(&c->shards));
        rangelist_done(&seen);

        /* Fleet-wide: any window of one interval holds at most `concurrency`. */
        if (c->interval > 0)
                for (size_t i = 0, j = 0; i < s->n_identifies; i++) {
                        while (s->identifies[j].start + c->interval <= s->identifies[i].start)
                                j++;
                        ASSERT_LE_UINT(i - j + 1, c->concurrency);
                }
}

static void plan(GatewayConfig *c, const char *shards, unsigned concurrency, usec_t interval,
                 usec_t identify, GatewaySchedule *ret) {
        gateway_config_init(c);
        ASSERT_OK(rangelist_parse(&c->shards, shards));
        c->shard_count = 1u << 20;
        c->concurrency = concurrency;
        c->interval = interval;
        c->identify = identify;
        ASSERT_OK(gateway_schedule_plan(c, ret));
        check_schedule(c, ret);
}

TEST(schedule_one_bucket) {
        GatewayConfig c;
        GatewaySchedule s;

        plan(&c, "0-9", 1, 100 * MSEC, 0, &s);
        ASSERT_EQ_UINT(s.n_identifies, 10);
        for (size_t i = 0; i < 10; i++) {
                ASSERT_EQ_UINT(s.identifies[i].shard, i);
                ASSERT_EQ_UINT(s.identifies[i].start, i * 100 * MSEC);
        }
        gateway_schedule_done(&s);
        gateway_config_done(&c);
}

TEST(schedule_buckets_run_side_by_side) {
        GatewayConfig c;
        GatewaySchedule s;

        plan(&c, "0-15", 4, 100 * MSEC, 20 * MSEC, &s);
        /* Shards 0-3 (one per bucket) at once, then 4-7 an interval later... */
        for (size_t i = 0; i < 16; i++) {
                ASSERT_EQ_UINT(s.identifies[i].shard, i);
                ASSERT_EQ_UINT(s.identifies[i].start, (i / 4) * 100 * MSEC);
                ASSERT_EQ_UINT(s.identifies[i].done, (i / 4) * 100 * MSEC + 20 * MSEC);
        }
        gateway_schedule_done(&s);
        gateway_config_done(&c);
}

TEST(schedule_discord_sized) {
        GatewayConfig c;
        GatewaySchedule s;

        /* 96 shards, max_concurrency 16, 5 s: six rounds, the last at 25 s. */
        plan(&c, "0-95", 16, 5 * USEC_PER_SEC, 0, &s);
        ASSERT_EQ_UINT(s.n_identifies, 96);
        ASSERT_EQ_UINT(s.identifies[95].start, 25 * USEC_PER_SEC);
        gateway_schedule_done(&s);
        gateway_config_done(&c);
}

TEST(schedule_sparse_buckets) {
        GatewayConfig c;
        GatewaySchedule s;

        /* Every owned shard in bucket 2 of 4: strictly one after another. */
        plan(&c, "2,6,10,14", 4, 50 * MSEC, 0, &s);
        for (size_t i = 0; i < 4; i++) {
                ASSERT_EQ_UINT(s.identifies[i].bucket, 2);
                ASSERT_EQ_UINT(s.identifies[i].start, i * 50 * MSEC);
        }
        gateway_schedule_done(&s);
        gateway_config_done(&c);
}

TEST(schedule_slow_identify_holds_the_bucket) {
        GatewayConfig c;
        GatewaySchedule s;

        plan(&c, "0-3", 2, 100 * MSEC, 250 * MSEC, &s);
        ASSERT_EQ_UINT(s.identifies[2].shard, 2);
        ASSERT_EQ_UINT(s.identifies[2].start, 250 * MSEC);
        ASSERT_EQ_UINT(s.identifies[3].done, 500 * MSEC);
        gateway_schedule_done(&s);
        gateway_config_done(&c);
}

TEST(schedule_no_interval) {
        GatewayConfig c;
        GatewaySchedule s;

        plan(&c, "0-4", 1, 0, 0, &s);
        for (size_t i = 0; i < 5; i++)
                ASSERT_EQ_UINT(s.identifies[i].start, 0);
        gateway_schedule_done(&s);
        gateway_config_done(&c);
}

TEST(schedule_empty_and_failing) {
        GatewayConfig c;
        GatewaySchedule s;

        plan(&c, "", 3, 10 * MSEC, 0, &s);
        ASSERT_EQ_UINT(s.n_identifies, 0);
        gateway_schedule_done(&s);
        gateway_config_done(&c);

        gateway_config_init(&c);
        ASSERT_OK(rangelist_parse(&c.shards, "0-4"));
        ASSERT_OK(rangelist_parse(&c.fail, "4"));
        c.shard_count = 5;
        c.interval = 10 * MSEC;
        ASSERT_OK(gateway_schedule_plan(&c, &s));
        check_schedule(&c, &s);
        ASSERT_TRUE(s.identifies[4].fails);
        ASSERT_FALSE(s.identifies[3].fails);
        gateway_schedule_done(&s);
        gateway_config_done(&c);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(uint64_t n) {
        /* xorshift64*: fixed seed, so a failure repeats. */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return n ? (rng_state * 0x2545f4914f6cdd1dULL) % n : 0;
}

static void random_shards(RangeList *l, uint32_t count) {
        unsigned n = (unsigned) rnd(6);

        rangelist_clear(l);
        for (unsigned i = 0; i < n; i++) {
                uint32_t lo = (uint32_t) rnd(count), hi = lo + (uint32_t) rnd(count - lo);

                ASSERT_OK(rangelist_add_range(l, lo, hi));
        }
}

TEST(schedule_random) {
        for (unsigned round = 0; round < 2000; round++) {
                GatewayConfig c;
                GatewaySchedule s;
                uint32_t count = 1 + (uint32_t) rnd(300);

                gateway_config_init(&c);
                c.shard_count = count;
                random_shards(&c.shards, count);
                random_shards(&c.fail, count);
                ASSERT_OK(rangelist_intersect(&c.fail, &c.shards));
                c.concurrency = 1 + (unsigned) rnd(64);
                c.interval = rnd(4) == 0 ? 0 : rnd(10 * USEC_PER_SEC);
                c.identify = rnd(3) == 0 ? 0 : rnd(10 * USEC_PER_SEC);
                ASSERT_OK(gateway_schedule_plan(&c, &s));
                check_schedule(&c, &s);
                gateway_schedule_done(&s);
                gateway_config_done(&c);
        }
}

/* Drives the pacer the way the program does, but with every wake-up late by
 * a random amount, some spurious early wake-ups, and time passing while a
 * line is logged: the spacing per bucket must still hold. */
TEST(pacer_holds_with_jitter) {
        for (unsigned round = 0; round < 500; round++) {
                _cleanup_(gateway_pacer_freep) GatewayPacer *p = NULL;
                unsigned concurrency = 1 + (unsigned) rnd(16);
                usec_t interval = rnd(200 * MSEC), identify = rnd(300 * MSEC);
                usec_t spacing = MAX(interval, identify), now = rnd(USEC_PER_SEC);
                usec_t last[16];
                bool any[16] = { false };
                RangeList shards, seen;

                rangelist_init(&shards);
                rangelist_init(&seen);
                random_shards(&shards, 200);
                ASSERT_OK(gateway_pacer_new(concurrency, interval, identify, &p));
                ASSERT_OK(gateway_pacer_queue(p, &shards));
                ASSERT_EQ_UINT(gateway_pacer_queued(p), rangelist_count(&shards));

                for (;;) {
                        uint32_t shard;
                        usec_t next;
                        int r = gateway_pacer_next(p, now, &shard, &next);

                        if (r == 1) {
                                unsigned b = shard % concurrency;

                                if (any[b] && now - last[b] < spacing)
                                        TAP_FAIL_("bucket %u: %" PRIu64 "µs between identifies,"
                                                  " limit %" PRIu64,
                                                  b, now - last[b], spacing);
                                ASSERT_FALSE(rangelist_contains(&seen, shard));
                                ASSERT_OK(rangelist_add(&seen, shard));
                                any[b] = true;
                                last[b] = now;
                                now += rnd(3 * MSEC); /* the log write */
                                continue;
                        }
                        ASSERT_EQ_INT(r, 0);
                        if (next == USEC_INFINITY)
                                break;
                        ASSERT_TRUE(next > now);
                        if (rnd(5) == 0) {
                                /* Woken early (a signal): still nothing to do. */
                                uint32_t s2;
                                usec_t early = now + rnd(next - now), n2;

                                ASSERT_EQ_INT(gateway_pacer_next(p, early, &s2, &n2), 0);
                                ASSERT_EQ_UINT(n2, next);
                        }
                        now = next + (rnd(2) ? rnd(2 * interval + 1) : 0);
                }
                ASSERT_EQ_UINT(gateway_pacer_queued(p), 0);
                ASSERT_TRUE(rangelist_equal(&seen, &shards));
                rangelist_done(&shards);
                rangelist_done(&seen);
        }
}

TEST(pacer_requeue_keeps_the_limit) {
        _cleanup_(gateway_pacer_freep) GatewayPacer *p = NULL;
        RangeList shards;
        uint32_t shard = 99;
        usec_t next = 0;

        rangelist_init(&shards);
        ASSERT_OK(rangelist_parse(&shards, "0-2"));
        ASSERT_OK(gateway_pacer_new(1, 100 * MSEC, 0, &p));
        ASSERT_OK(gateway_pacer_queue(p, &shards));
        ASSERT_EQ_INT(gateway_pacer_next(p, 1000 * MSEC, &shard, &next), 1);
        ASSERT_EQ_UINT(shard, 0);
        ASSERT_EQ_INT(gateway_pacer_next(p, 1000 * MSEC, &shard, &next), 0);
        ASSERT_EQ_UINT(next, 1100 * MSEC);

        /* SIGHUP 10 ms later: everything again, from shard 0, but not before 1.1 s. */
        ASSERT_OK(gateway_pacer_queue(p, &shards));
        ASSERT_EQ_UINT(gateway_pacer_queued(p), 3);
        ASSERT_EQ_INT(gateway_pacer_next(p, 1010 * MSEC, &shard, &next), 0);
        ASSERT_EQ_UINT(next, 1100 * MSEC);
        ASSERT_EQ_INT(gateway_pacer_next(p, 1100 * MSEC, &shard, &next), 1);
        ASSERT_EQ_UINT(shard, 0);
        rangelist_done(&shards);
}

TEST(pacer_requeue_replaces_the_queue) {
        _cleanup_(gateway_pacer_freep) GatewayPacer *p = NULL;
        RangeList shards;
        uint32_t shard;
        usec_t next;

        rangelist_init(&shards);
        ASSERT_OK(rangelist_parse(&shards, "0-9"));
        ASSERT_OK(gateway_pacer_new(2, 0, 0, &p));
        ASSERT_OK(gateway_pacer_queue(p, &shards));
        ASSERT_OK(rangelist_parse(&shards, "7"));
        ASSERT_OK(gateway_pacer_queue(p, &shards));
        ASSERT_EQ_UINT(gateway_pacer_queued(p), 1);
        ASSERT_EQ_INT(gateway_pacer_next(p, 0, &shard, &next), 1);
        ASSERT_EQ_UINT(shard, 7);
        ASSERT_EQ_INT(gateway_pacer_next(p, 0, &shard, &next), 0);
        ASSERT_EQ_UINT(next, USEC_INFINITY);
        rangelist_done(&shards);
}

TEST(pacer_queued_shards) {
        /* what the gateway takes on a reload: the queue as a set, changed,
         * queued again; the buckets keep their pace */
        _cleanup_(gateway_pacer_freep) GatewayPacer *p = NULL;
        _cleanup_(rangelist_done) RangeList shards = { 0 }, queued = { 0 };
        uint32_t shard = 99;
        usec_t next = 0;

        ASSERT_OK(rangelist_parse(&shards, "0-5,9"));
        ASSERT_OK(gateway_pacer_new(2, 100 * MSEC, 0, &p));
        ASSERT_OK(gateway_pacer_queued_shards(p, &queued));
        ASSERT_EQ_UINT(queued.n_ranges, 0);
        ASSERT_OK(gateway_pacer_queue(p, &shards));
        ASSERT_EQ_INT(gateway_pacer_next(p, 0, &shard, &next), 1);
        ASSERT_EQ_UINT(shard, 0);
        ASSERT_EQ_INT(gateway_pacer_next(p, 0, &shard, &next), 1);
        ASSERT_EQ_UINT(shard, 1);
        ASSERT_OK(rangelist_parse(&queued, "77")); /* replaced */
        ASSERT_OK(gateway_pacer_queued_shards(p, &queued));
        ASSERT_STREQ(fmt(&queued), "2-5,9");

        ASSERT_OK(rangelist_remove_range(&queued, 3, 4));
        ASSERT_OK(rangelist_add(&queued, 7));
        ASSERT_OK(gateway_pacer_queue(p, &queued));
        ASSERT_OK(gateway_pacer_queued_shards(p, &queued));
        ASSERT_STREQ(fmt(&queued), "2,5,7,9");
        ASSERT_EQ_INT(gateway_pacer_next(p, 50 * MSEC, &shard, &next), 0);
        ASSERT_EQ_UINT(next, 100 * MSEC);
        ASSERT_EQ_INT(gateway_pacer_next(p, 100 * MSEC, &shard, &next), 1);
        ASSERT_EQ_UINT(shard, 2);
        ASSERT_EQ_INT(gateway_pacer_next(p, 100 * MSEC, &shard, &next), 1);
        ASSERT_EQ_UINT(shard, 5);
}

TEST(pacer_bounds) {
        _cleanup_(gateway_pacer_freep) GatewayPacer *p = NULL;
        GatewayPacer *q = NULL;
        RangeList big;

        ASSERT_ERR(gateway_pacer_new(0, 1, 1, &q), -EINVAL);
        ASSERT_ERR(gateway_pacer_new(GATEWAY_CONCURRENCY_MAX + 1, 1, 1, &q), -EINVAL);
        ASSERT_NULL(q);
        ASSERT_NULL(gateway_pacer_free(NULL));

        rangelist_init(&big);
        ASSERT_OK(rangelist_add_range(&big, 0, GATEWAY_SHARD_COUNT_MAX));
        ASSERT_OK(gateway_pacer_new(1, 1, 1, &p));
        ASSERT_ERR(gateway_pacer_queue(p, &big), -E2BIG);
        ASSERT_EQ_UINT(gateway_pacer_queued(p), 0);
        rangelist_done(&big);
}

static const char *status(const char *ready, const char *connecting, const char *failed) {
        static char buf[256];
        RangeList l[3];
        const char *in[3] = { ready, connecting, failed };
        char *s = NULL;

        for (size_t i = 0; i < 3; i++) {
                rangelist_init(&l[i]);
                ASSERT_OK(rangelist_parse(&l[i], in[i]));
        }
        ASSERT_OK(gateway_status_format(&l[0], &l[1], &l[2], &s));
        snprintf(buf, sizeof(buf), "%s", s);
        free(s);
        for (size_t i = 0; i < 3; i++)
                rangelist_done(&l[i]);
        return buf;
}

TEST(status_text) {
        ASSERT_STREQ(status("", "0-4", ""), "connecting=0-4");
        ASSERT_STREQ(status("0-1", "2-4", ""), "ready=0-1 connecting=2-4");
        ASSERT_STREQ(status("0-4", "", ""), "ready=0-4");
        ASSERT_STREQ(status("0-3", "", "4"), "ready=0-3 failed=4");
        ASSERT_STREQ(status("0,2", "3", "1,4"), "ready=0,2 connecting=3 failed=1,4");
        ASSERT_STREQ(status("", "", "0-4"), "failed=0-4");
        /* An instance without shards still says something baton can read. */
        ASSERT_STREQ(status("", "", ""), "ready=");
}

TEST(status_text_reads_back) {
        /* What the gateway writes is what baton's agent parses. */
        ShardStatus st;

        shard_status_init(&st);
        ASSERT_OK(shard_status_parse(&st, status("0-12,90", "13", "91")));
        ASSERT_TRUE(st.has_tokens);
        ASSERT_STREQ(fmt(&st.ready), "0-12,90");
        ASSERT_STREQ(fmt(&st.connecting), "13");
        ASSERT_STREQ(fmt(&st.failed), "91");
        ASSERT_STREQ(st.other, "");
        shard_status_done(&st);

        shard_status_init(&st);
        ASSERT_OK(shard_status_parse(&st, status("", "", "")));
        ASSERT_TRUE(st.has_tokens);
        ASSERT_EQ_UINT(rangelist_count(&st.ready), 0);
        shard_status_done(&st);
}

TEST(word_ok) {
        ASSERT_TRUE(workload_word_ok("gw"));
        ASSERT_TRUE(workload_word_ok("audio-node_3.eu"));
        ASSERT_FALSE(workload_word_ok(""));
        ASSERT_FALSE(workload_word_ok(NULL));
        ASSERT_FALSE(workload_word_ok("a b"));
        ASSERT_FALSE(workload_word_ok("a\tb"));
        ASSERT_FALSE(workload_word_ok("a\x7f"));
}

int main(void) {
        int r = tap_run(TESTS(config_defaults, config_everything, config_empty_optional_is_unset,
                              config_empty_shards_is_no_shard, config_refuses_missing,
                              config_refuses_malformed_shards, config_refuses_shard_not_below_count,
                              config_refuses_bad_count, config_refuses_bad_numbers,
                              config_refuses_words_that_break_the_log, config_failure_leaves_config,
                              config_shards_file, parse_uint, schedule_one_bucket,
                              schedule_buckets_run_side_by_side, schedule_discord_sized,
                              schedule_sparse_buckets, schedule_slow_identify_holds_the_bucket,
                              schedule_no_interval, schedule_empty_and_failing, schedule_random,
                              pacer_holds_with_jitter, pacer_requeue_keeps_the_limit,
                              pacer_requeue_replaces_the_queue, pacer_queued_shards, pacer_bounds,
                              status_text, status_text_reads_back, word_ok));

        free(load_error);
        return r;
}
