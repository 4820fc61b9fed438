/* SPDX-License-Identifier: MIT */
/* baton-test-gateway: a Type=notify stand-in for a sharded Discord gateway.
 * It identifies the shards of BATON_SHARDS (or of the file BATON_SHARDS_FILE
 * names, re-read on SIGHUP: ShardChange=reload) at Discord's pace (the pacer
 * in gateway-schedule.c), logs every identify, and reports per-shard
 * readiness in STATUS= as baton's agent reads it (docs/DESIGN.md §6,
 * docs/workload-contract.md). */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "error-set.h"
#include "gateway-schedule.h"
#include "macro.h"
#include "rangelist.h"
#include "workload.h"

#define PROGRAM "baton-test-gateway"
#define EXIT_CONFIG 2
#define SHARDS_FILE_MAX (1024 * 1024)

typedef struct InFlight {
        uint32_t shard;
        usec_t done;
} InFlight;

typedef struct Gateway {
        GatewayConfig config;
        GatewayPacer *pacer;
        WorkloadClock clock;
        RangeList ready;
        RangeList connecting;
        RangeList failed;
        /* Identifies under way, in start order, which is also done order since
         * every identify takes the same time. Reset at each round. Room for
         * n_shards: what is under way and what is queued are owned shards. */
        InFlight *in_flight;
        size_t in_flight_head;
        size_t n_in_flight;
        size_t n_shards;
        int log_fd;
        int signal_fd;
        char *status; /* the last STATUS= sent */
        bool notify;  /* under a service manager (NOTIFY_SOCKET set) */
} Gateway;

static void gateway_done(Gateway *g) {
        gateway_config_done(&g->config);
        gateway_pacer_free(g->pacer);
        rangelist_done(&g->ready);
        rangelist_done(&g->connecting);
        rangelist_done(&g->failed);
        free(g->in_flight);
        free(g->status);
        closep(&g->log_fd);
        closep(&g->signal_fd);
}

static const char *lookup_env(const char *name, void *userdata) {
        return getenv(name);
}

static int fail_errno(int r, const char *what) {
        fprintf(stderr, PROGRAM ": %s: %s\n", what, STRERROR(r));
        return r;
}

/* Sends STATUS= when it changed, with READY=1 the first time: the unit is
 * active at once and readiness is per shard, in the tokens. */
static int send_status(Gateway *g) {
        _cleanup_free_ char *status = NULL;
        bool first = !g->status;
        int r;

        r = gateway_status_format(&g->ready, &g->connecting, &g->failed, &status);
        if (r < 0)
                return r;
        if (g->status && streq(g->status, status))
                return 0;

        if (g->notify) {
                r = sd_notifyf(0, "%sSTATUS=%s", first ? "READY=1\n" : "", status);
                if (r < 0)
                        fprintf(stderr, PROGRAM ": sd_notify failed: %s, ignoring.\n", STRERROR(r));
        } else {
                /* Run by hand: show what systemd would get. */
                printf("%sSTATUS=%s\n", first ? "READY=1 " : "", status);
                fflush(stdout);
        }
        free(g->status);
        g->status = TAKE_PTR(status);
        return 0;
}

/* Every shard connecting again and queued for an identify; the pacer keeps
 * each bucket's last identify time, so a round right after another does not
 * break the rate limit. */
static int start_round(Gateway *g) {
        int r;

        r = rangelist_copy(&g->connecting, &g->config.shards);
        if (r < 0)
                return r;
        rangelist_clear(&g->ready);
        rangelist_clear(&g->failed);
        g->in_flight_head = g->n_in_flight = 0;
        return gateway_pacer_queue(g->pacer, &g->config.shards);
}

/* The shards file's text as the set: at start, and on SIGHUP. */
static int load_shards_file(GatewayConfig *c, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = workload_read_file(c->shards_file, SHARDS_FILE_MAX, &text);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return error_set(ret_error, r, "BATON_SHARDS_FILE=%s: %s", c->shards_file,
                                 STRERROR(r));
        return gateway_config_set_shards(c, text, ret_error);
}

/* SIGHUP with a shards file: the set is read again. A shard no longer ours
 * is dropped at once, wherever it was; a new one is queued and identifies at
 * the pacer's pace behind those already waiting; a kept one is left as it is,
 * so a ready shard never leaves ready=. An unreadable or bad file keeps the
 * set it had. Only -ENOMEM is an error. */
static int reload_shards(Gateway *g) {
        _cleanup_(rangelist_done) RangeList old = { 0 }, added = { 0 }, removed = { 0 },
                                            queued = { 0 };
        _cleanup_free_ char *error = NULL;
        size_t n_shards, w = 0;
        InFlight *in_flight;
        int r;

        r = rangelist_copy(&old, &g->config.shards);
        if (r < 0)
                return r;
        r = load_shards_file(&g->config, &error);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                fprintf(stderr, PROGRAM ": reload: %s; keeping the shards it has.\n",
                        error ? error : STRERROR(r));
                return 0;
        }

        r = rangelist_copy(&added, &g->config.shards);
        if (r >= 0)
                r = rangelist_subtract(&added, &old);
        if (r >= 0)
                r = rangelist_copy(&removed, &old);
        if (r >= 0)
                r = rangelist_subtract(&removed, &g->config.shards);
        if (r >= 0)
                r = rangelist_subtract(&g->ready, &removed);
        if (r >= 0)
                r = rangelist_subtract(&g->failed, &removed);
        if (r >= 0)
                r = rangelist_subtract(&g->connecting, &removed);
        if (r >= 0)
                r = rangelist_union(&g->connecting, &added);
        if (r >= 0)
                r = gateway_pacer_queued_shards(g->pacer, &queued);
        if (r >= 0)
                r = rangelist_subtract(&queued, &removed);
        if (r >= 0)
                r = rangelist_union(&queued, &added);
        if (r >= 0)
                r = gateway_pacer_queue(g->pacer, &queued);
        if (r < 0)
                return r;

        /* Identifies of dropped shards are forgotten; room for the new set. */
        n_shards = (size_t) rangelist_count(&g->config.shards);
        for (size_t i = g->in_flight_head; i < g->n_in_flight; i++)
                if (!rangelist_contains(&removed, g->in_flight[i].shard))
                        g->in_flight[w++] = g->in_flight[i];
        g->in_flight_head = 0;
        g->n_in_flight = w;
        in_flight = reallocarray(g->in_flight, MAX(n_shards, (size_t) 1), sizeof(InFlight));
        if (!in_flight)
                return -ENOMEM;
        g->in_flight = in_flight;
        g->n_shards = n_shards;

        fprintf(stderr, PROGRAM ": reload: +%" PRIu64 " -%" PRIu64 " shards\n",
                rangelist_count(&added), rangelist_count(&removed));
        return 0;
}

static int finish_identify(Gateway *g, uint32_t shard) {
        bool fails = rangelist_contains(&g->config.fail, shard);
        int r;

        r = rangelist_remove_range(&g->connecting, shard, shard);
        if (r < 0)
                return r;
        return rangelist_add(fails ? &g->failed : &g->ready, shard);
}

static int begin_identify(Gateway *g, uint32_t shard, usec_t now) {
        const GatewayConfig *c = &g->config;
        int r;

        if (g->log_fd >= 0) {
                r = workload_log_append(
                        g->log_fd,
                        "%" PRIu64 " %s@%s shard=%" PRIu32 " bucket=%u epoch=%" PRIu64 " host=%s",
                        workload_unix_usec(&g->clock, now), c->service, c->instance, shard,
                        gateway_bucket(shard, c->concurrency), c->epoch, c->host);
                if (r < 0)
                        fprintf(stderr, PROGRAM ": cannot append to %s: %s, ignoring.\n",
                                c->log_path, STRERROR(r));
        }

        if (c->identify == 0)
                return finish_identify(g, shard);
        assert(g->n_in_flight < g->n_shards);
        g->in_flight[g->n_in_flight++] = (InFlight){ .shard = shard, .done = now + c->identify };
        return 0;
}

static int run(Gateway *g) {
        int r;

        r = start_round(g);
        if (r < 0)
                return fail_errno(r, "cannot queue the shards");
        r = send_status(g);
        if (r < 0)
                return fail_errno(r, "cannot format the status");

        for (;;) {
                usec_t now = workload_now(), wake = USEC_INFINITY;
                int signo;

                while (g->in_flight_head < g->n_in_flight &&
                       g->in_flight[g->in_flight_head].done <= now) {
                        r = finish_identify(g, g->in_flight[g->in_flight_head++].shard);
                        if (r < 0)
                                return fail_errno(r, "cannot record an identify");
                }

                for (;;) {
                        uint32_t shard;
                        usec_t next;

                        r = gateway_pacer_next(g->pacer, now, &shard, &next);
                        if (r == 0) {
                                wake = next;
                                break;
                        }
                        r = begin_identify(g, shard, now);
                        if (r < 0)
                                return fail_errno(r, "cannot record an identify");
                }
                if (g->in_flight_head < g->n_in_flight)
                        wake = MIN(wake, g->in_flight[g->in_flight_head].done);

                r = send_status(g);
                if (r < 0)
                        return fail_errno(r, "cannot format the status");

                r = workload_signals_wait(g->signal_fd, wake, &signo);
                if (r < 0)
                        return fail_errno(r, "cannot wait for signals");
                if (r == 0)
                        continue;
                if (signo == SIGHUP) {
                        /* ExecReload= with a shards file: a new set; without
                         * one: every session again. */
                        r = g->config.shards_file ? reload_shards(g) : start_round(g);
                        if (r < 0)
                                return fail_errno(r, "cannot queue the shards");
                        continue;
                }
                /* SIGTERM or SIGINT: nothing to hand over, leave at once. */
                if (g->notify)
                        (void) sd_notify(0, "STOPPING=1");
                return 0;
        }
}

static void print_usec(const char *prefix, usec_t u) {
        printf("%s+%" PRIu64 ".%06" PRIu64 "s", prefix, (uint64_t) (u / USEC_PER_SEC),
               (uint64_t) (u % USEC_PER_SEC));
}

/* The plan for this environment, at once: what the service would do with
 * every wake-up on time. */
static int self_test(const GatewayConfig *c) {
        _cleanup_(rangelist_done) RangeList ready = { 0 }, connecting = { 0 };
        _cleanup_free_ char *status = NULL, *shards = NULL;
        _cleanup_free_ usec_t *last = NULL;
        _cleanup_(gateway_schedule_done) GatewaySchedule s = { 0 };
        usec_t settled = 0, min_spacing = USEC_INFINITY;
        int r;

        r = gateway_schedule_plan(c, &s);
        if (r < 0)
                return fail_errno(r, "cannot plan the identifies");

        shards = rangelist_format(&c->shards);
        last = malloc(c->concurrency * sizeof(*last));
        if (last)
                for (unsigned b = 0; b < c->concurrency; b++)
                        last[b] = USEC_INFINITY; /* no identify yet */
        r = rangelist_copy(&ready, &c->shards);
        if (r >= 0)
                r = rangelist_subtract(&ready, &c->fail);
        if (r >= 0)
                r = gateway_status_format(&ready, &connecting, &c->fail, &status);
        if (r >= 0 && (!shards || !last))
                r = -ENOMEM;
        if (r < 0)
                return fail_errno(r, "cannot plan the identifies");

        printf(PROGRAM " self-test: %s@%s host=%s shards=%s count=%" PRIu32 " epoch=%" PRIu64
                       " concurrency=%u",
               c->service, c->instance, c->host, shards, c->shard_count, c->epoch, c->concurrency);
        /* Both come from *_MS variables: whole milliseconds. */
        printf(" interval=%" PRIu64 "ms identify=%" PRIu64 "ms\n",
               (uint64_t) (c->interval / USEC_PER_MSEC), (uint64_t) (c->identify / USEC_PER_MSEC));

        for (size_t i = 0; i < s.n_identifies; i++) {
                const GatewayIdentify *id = &s.identifies[i];

                if (last[id->bucket] != USEC_INFINITY)
                        min_spacing = MIN(min_spacing, id->start - last[id->bucket]);
                last[id->bucket] = id->start;
                settled = MAX(settled, id->done);

                print_usec("", id->start);
                printf(" identify shard=%" PRIu32 " bucket=%u", id->shard, id->bucket);
                print_usec(" done=", id->done);
                printf(" %s\n", id->fails ? "failed" : "ready");
        }

        printf("identifies=%zu", s.n_identifies);
        if (min_spacing != USEC_INFINITY)
                print_usec(" min_bucket_spacing=", min_spacing);
        print_usec(" settled=", settled);
        printf(" status=%s\n", status);
        return 0;
}

static void usage(FILE *f) {
        fprintf(f, "usage: " PROGRAM " [--self-test]\n"
                   "A sharded gateway for baton's tests (Type=notify). Environment:\n"
                   "  BATON_SHARDS or BATON_SHARDS_FILE, BATON_SHARD_COUNT (required),\n"
                   "  BATON_SHARD_EPOCH, BATON_SERVICE, BATON_INSTANCE, BATON_HOST,\n"
                   "  GATEWAY_IDENTIFY_CONCURRENCY (1), GATEWAY_IDENTIFY_INTERVAL_MS (5000),\n"
                   "  GATEWAY_IDENTIFY_MS (0), GATEWAY_IDENTIFY_LOG, GATEWAY_FAIL_SHARDS.\n"
                   "--self-test prints the identify schedule for this environment and exits.\n"
                   "SIGHUP reads BATON_SHARDS_FILE again (identifies new shards, drops\n"
                   "removed ones), or without it identifies every shard again; SIGTERM stops.\n");
}

int main(int argc, char *argv[]) {
        _cleanup_(gateway_done) Gateway g = { .log_fd = -EBADF, .signal_fd = -EBADF };
        _cleanup_free_ char *error = NULL;
        bool self = false;
        uint64_t n_shards;
        int r;

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--self-test"))
                        self = true;
                else if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        usage(stdout);
                        return 0;
                } else {
                        fprintf(stderr, PROGRAM ": unknown argument \"%s\"\n", argv[i]);
                        usage(stderr);
                        return EXIT_CONFIG;
                }
        }

        gateway_config_init(&g.config);
        r = gateway_config_load(&g.config, lookup_env, NULL, &error);
        if (r >= 0 && g.config.shards_file)
                r = load_shards_file(&g.config, &error);
        if (r < 0) {
                fprintf(stderr, PROGRAM ": refusing to start: %s\n", error ? error : STRERROR(r));
                return EXIT_CONFIG;
        }

        if (self)
                return self_test(&g.config) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        if (g.config.log_path) {
                r = workload_log_open(g.config.log_path, &g.log_fd);
                if (r < 0) {
                        fprintf(stderr,
                                PROGRAM ": refusing to start: GATEWAY_IDENTIFY_LOG=%s: %s\n",
                                g.config.log_path, STRERROR(r));
                        return EXIT_CONFIG;
                }
        }

        n_shards = rangelist_count(&g.config.shards);
        g.n_shards = (size_t) n_shards;
        g.in_flight = calloc(MAX(g.n_shards, (size_t) 1), sizeof(*g.in_flight));
        if (!g.in_flight) {
                fail_errno(-ENOMEM, "cannot start");
                return EXIT_FAILURE;
        }
        r = gateway_pacer_new(g.config.concurrency, g.config.interval, g.config.identify, &g.pacer);
        if (r < 0) {
                fail_errno(r, "cannot start");
                return EXIT_FAILURE;
        }
        r = workload_signals_open(&g.signal_fd);
        if (r < 0) {
                fail_errno(r, "cannot set up signals");
                return EXIT_FAILURE;
        }

        workload_clock_init(&g.clock);
        g.notify = !isempty(getenv("NOTIFY_SOCKET"));

        return run(&g) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
