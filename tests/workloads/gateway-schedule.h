/* SPDX-License-Identifier: MIT */
/* The test gateway's logic, without I/O: its configuration from the
 * environment, the identify pacer (Discord's max_concurrency buckets), the
 * schedule the pacer gives under perfect timing, and the StatusText it
 * reports. Time is passed in, in µs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "rangelist.h"

#define GATEWAY_SHARD_COUNT_MAX (1u << 20)
#define GATEWAY_CONCURRENCY_MAX 1024u
#define GATEWAY_MS_MAX (24ULL * 3600 * 1000) /* bound of every *_MS variable: one day */
#define GATEWAY_INTERVAL_DEFAULT (5 * USEC_PER_SEC)

/* Discord puts shard s in rate-limit bucket s % max_concurrency. */
static inline unsigned gateway_bucket(uint32_t shard, unsigned concurrency) {
        return shard % concurrency;
}

typedef struct GatewayConfig {
        RangeList shards;   /* BATON_SHARDS or the shards file: owned shards, each < shard_count */
        RangeList fail;     /* GATEWAY_FAIL_SHARDS ∩ shards: these end failed */
        RangeList fail_any; /* GATEWAY_FAIL_SHARDS as given, for sets to come */
        uint32_t shard_count; /* BATON_SHARD_COUNT */
        uint64_t epoch;       /* BATON_SHARD_EPOCH, 0 if unset */
        unsigned concurrency; /* GATEWAY_IDENTIFY_CONCURRENCY, default 1 */
        usec_t interval;      /* GATEWAY_IDENTIFY_INTERVAL_MS, default 5 s */
        usec_t identify;      /* GATEWAY_IDENTIFY_MS, default 0 */
        /* Borrowed from the lookup's strings; "-" when unset. */
        const char *service;
        const char *instance;
        const char *host;
        const char *log_path; /* GATEWAY_IDENTIFY_LOG, NULL if unset or empty */
        /* BATON_SHARDS_FILE (ShardChange=reload), NULL if unset or empty: the
         * set is read from it with gateway_config_set_shards(), at start and
         * on SIGHUP, and BATON_SHARDS must not be set. */
        const char *shards_file;
} GatewayConfig;

/* Returns the value of an environment variable, NULL if unset. */
typedef const char *(*GatewayLookup)(const char *name, void *userdata);

void gateway_config_init(GatewayConfig *c);
void gateway_config_done(GatewayConfig *c);
/* Fills c from the variables lookup gives, over what c holds (the defaults
 * after gateway_config_init()). Missing or malformed BATON_SHARDS
 * or BATON_SHARD_COUNT, a shard ≥ the count, or any malformed optional
 * variable is -EINVAL (-ERANGE for a number out of bounds, -ENOMEM) with
 * *ret_error (if not NULL) set to a malloc'ed sentence naming the variable
 * and its value; c is then left as it was. Empty optional variables count as
 * unset; an empty BATON_SHARDS is an instance that owns no shard. With
 * BATON_SHARDS_FILE set, BATON_SHARDS must be unset and c->shards is empty
 * until the file's text is given to gateway_config_set_shards(). */
int gateway_config_load(GatewayConfig *c, GatewayLookup lookup, void *userdata, char **ret_error);

/* Takes the text of the shards file as the set: a range list and a newline
 * ("0-13,90-91\n"), each shard below the count; fail becomes
 * GATEWAY_FAIL_SHARDS ∩ the set. -EINVAL with *ret_error (if not NULL) set to
 * a sentence naming the file, -ENOMEM; c is then left as it was. */
int gateway_config_set_shards(GatewayConfig *c, const char *text, char **ret_error);

/* Hands out identifies: every bucket starts at most one per interval, and
 * one at a time (the next waits for the previous to finish, as a client
 * waits for READY before its next IDENTIFY in a bucket). So a bucket's
 * consecutive starts are at least MAX(interval, identify) apart, wherever
 * the caller's clock is late. */
typedef struct GatewayPacer GatewayPacer;

int gateway_pacer_new(unsigned concurrency, usec_t interval, usec_t identify, GatewayPacer **ret);
GatewayPacer *gateway_pacer_free(GatewayPacer *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(GatewayPacer *, gateway_pacer_free)

/* Queues every shard of `shards` for an identify, replacing whatever was
 * still queued. Buckets keep the time of their last identify, so a queue
 * right after an identify does not start the next one early. More than
 * GATEWAY_SHARD_COUNT_MAX shards is -E2BIG. Unchanged on failure. */
int gateway_pacer_queue(GatewayPacer *p, const RangeList *shards);
/* At monotonic time `now`: returns 1 and the shard that identifies now (its
 * bucket is charged at now; the lowest shard first when several buckets
 * are free), or 0 and in *ret_next the earliest time one can start
 * (USEC_INFINITY when nothing is queued). Only the out-parameter that goes
 * with the return value is written. */
int gateway_pacer_next(GatewayPacer *p, usec_t now, uint32_t *ret_shard, usec_t *ret_next);
size_t gateway_pacer_queued(const GatewayPacer *p);
/* The shards still queued, as a set (into *ret, replacing what it held). */
int gateway_pacer_queued_shards(const GatewayPacer *p, RangeList *ret);

typedef struct GatewayIdentify {
        uint32_t shard;
        unsigned bucket;
        usec_t start; /* from the gateway's start */
        usec_t done;  /* start + identify: the shard is then ready, or failed */
        bool fails;
} GatewayIdentify;

typedef struct GatewaySchedule {
        GatewayIdentify *identifies; /* in start order, then shard order */
        size_t n_identifies;
} GatewaySchedule;

/* What the pacer does for c's shards when every wake-up is on time, from
 * time 0: the plan `--self-test` prints. */
int gateway_schedule_plan(const GatewayConfig *c, GatewaySchedule *ret);
void gateway_schedule_done(GatewaySchedule *s);

/* "ready=<list> connecting=<list> failed=<list>" in that order, empty tokens
 * left out, but "ready=" when all three are empty so that a token is always
 * there. Caller frees. */
int gateway_status_format(const RangeList *ready, const RangeList *connecting,
                          const RangeList *failed, char **ret);
