/* SPDX-License-Identifier: MIT */
/* baton-test-service: a Type=notify stand-in for a stateless audio node or
 * the singleton core. Ready at once (or after SERVICE_READY_DELAY_MS), a
 * STATUS= with its name and uptime every second, an optional crash after
 * SERVICE_EXIT_AFTER_MS for restart tests, and start/stop lines in
 * SERVICE_LOG. Exits 0 on SIGTERM. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "macro.h"
#include "workload.h"

#define PROGRAM "baton-test-service"
#define EXIT_CONFIG 2
#define MS_MAX (24ULL * 3600 * 1000)

typedef struct Service {
        char name[256]; /* BATON_SERVICE@BATON_INSTANCE, or BATON_SERVICE alone */
        const char *host;
        usec_t exit_after; /* USEC_INFINITY: never */
        usec_t ready_delay;
        WorkloadClock clock;
        usec_t started;
        int log_fd;
        int signal_fd;
        bool notify; /* under a service manager (NOTIFY_SOCKET set) */
} Service;

static void service_done(Service *s) {
        closep(&s->log_fd);
        closep(&s->signal_fd);
}

/* An optional *_MS variable in µs; *ret untouched when unset or empty. */
static int env_ms(const char *name, usec_t *ret) {
        const char *v = getenv(name);
        uint64_t ms;
        int r;

        if (isempty(v))
                return 0;
        r = workload_parse_uint(v, MS_MAX, &ms);
        if (r < 0) {
                fprintf(stderr,
                        PROGRAM ": refusing to start: %s=\"%s\" is not a number of "
                                "milliseconds (0..%llu)\n",
                        name, v, MS_MAX);
                return r;
        }
        *ret = ms * USEC_PER_MSEC;
        return 0;
}

static int env_word(const char *name, const char **ret) {
        const char *v = getenv(name);

        if (isempty(v))
                return 0;
        if (!workload_word_ok(v)) {
                fprintf(stderr,
                        PROGRAM ": refusing to start: %s=\"%s\" must not contain spaces or "
                                "control characters\n",
                        name, v);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int service_load(Service *s) {
        const char *service = "baton-test-service", *instance = NULL, *log_path = NULL;
        int r;

        if (env_word("BATON_SERVICE", &service) < 0 || env_word("BATON_INSTANCE", &instance) < 0 ||
            env_word("BATON_HOST", &s->host) < 0)
                return -EINVAL;
        if (env_ms("SERVICE_EXIT_AFTER_MS", &s->exit_after) < 0 ||
            env_ms("SERVICE_READY_DELAY_MS", &s->ready_delay) < 0)
                return -EINVAL;

        r = snprintf(s->name, sizeof(s->name), "%s%s%s", service, instance ? "@" : "",
                     strempty(instance));
        if (r < 0 || (size_t) r >= sizeof(s->name)) {
                fprintf(stderr, PROGRAM ": refusing to start: BATON_SERVICE@BATON_INSTANCE "
                                        "is longer than 255 characters\n");
                return -EINVAL;
        }

        log_path = getenv("SERVICE_LOG");
        if (!isempty(log_path)) {
                r = workload_log_open(log_path, &s->log_fd);
                if (r < 0) {
                        fprintf(stderr, PROGRAM ": refusing to start: SERVICE_LOG=%s: %s\n",
                                log_path, STRERROR(r));
                        return r;
                }
        }
        return 0;
}

static void log_event(Service *s, usec_t now, const char *event, const char *detail) {
        int r;

        if (s->log_fd < 0)
                return;
        r = workload_log_append(s->log_fd,
                                "%" PRIu64 " %s %s pid=%d host=%s uptime_ms=%" PRIu64 "%s%s",
                                workload_unix_usec(&s->clock, now), s->name, event, (int) getpid(),
                                s->host, (uint64_t) ((now - s->started) / USEC_PER_MSEC),
                                detail ? " " : "", strempty(detail));
        if (r < 0)
                fprintf(stderr, PROGRAM ": cannot append to SERVICE_LOG: %s, ignoring.\n",
                        STRERROR(r));
}

static void notify(Service *s, const char *text) {
        int r;

        if (!s->notify) {
                /* Run by hand: show what systemd would get. */
                printf("%s\n", text);
                fflush(stdout);
                return;
        }
        r = sd_notify(0, text);
        if (r < 0)
                fprintf(stderr, PROGRAM ": sd_notify failed: %s, ignoring.\n", STRERROR(r));
}

static void send_status(Service *s, usec_t now, bool ready) {
        char text[sizeof(s->name) + 64];

        /* No "key=" words: baton reads a status without shard tokens as all ready. */
        snprintf(text, sizeof(text), "%sSTATUS=%s up %" PRIu64 "s", ready ? "READY=1\n" : "",
                 s->name, (uint64_t) ((now - s->started) / USEC_PER_SEC));
        notify(s, text);
}

static int run(Service *s) {
        usec_t next_status = s->started + s->ready_delay;
        bool ready = false;
        int r;

        log_event(s, s->started, "start", NULL);

        for (;;) {
                usec_t now = workload_now(), exit_at, wake;
                int signo;

                exit_at =
                        s->exit_after == USEC_INFINITY ? USEC_INFINITY : s->started + s->exit_after;
                if (now >= exit_at) {
                        /* A crash as systemd sees one: a non-zero exit it did not ask for. */
                        log_event(s, now, "crash", "exit=1");
                        fprintf(stderr,
                                PROGRAM ": exiting with 1 after %" PRIu64
                                        "ms (SERVICE_EXIT_AFTER_MS)\n",
                                (uint64_t) (s->exit_after / USEC_PER_MSEC));
                        return 1;
                }

                if (now >= next_status) {
                        send_status(s, now, !ready);
                        if (!ready)
                                log_event(s, now, "ready", NULL);
                        ready = true;
                        /* On the second boundaries of the uptime, not drifting. */
                        next_status =
                                s->started + ((now - s->started) / USEC_PER_SEC + 1) * USEC_PER_SEC;
                }

                wake = MIN(next_status, exit_at);
                r = workload_signals_wait(s->signal_fd, wake, &signo);
                if (r < 0) {
                        fprintf(stderr, PROGRAM ": cannot wait for signals: %s\n", STRERROR(r));
                        return 1;
                }
                if (r == 0)
                        continue;
                now = workload_now();
                if (signo == SIGHUP) {
                        log_event(s, now, "reload", NULL);
                        continue;
                }
                if (s->notify)
                        (void) sd_notify(0, "STOPPING=1");
                log_event(s, now, "stop", signo == SIGTERM ? "signal=TERM" : "signal=INT");
                return 0;
        }
}

int main(int argc, char *argv[]) {
        _cleanup_(service_done) Service s = {
                .host = "-",
                .exit_after = USEC_INFINITY,
                .log_fd = -EBADF,
                .signal_fd = -EBADF,
        };
        int r;

        if (argc > 1) {
                bool help = streq(argv[1], "--help") || streq(argv[1], "-h");

                if (!help)
                        fprintf(stderr, PROGRAM ": unknown argument \"%s\"\n", argv[1]);
                fprintf(help ? stdout : stderr,
                        "usage: " PROGRAM "\n"
                        "A generic Type=notify service for baton's tests. Environment:\n"
                        "  BATON_SERVICE, BATON_INSTANCE, BATON_HOST, SERVICE_LOG,\n"
                        "  SERVICE_EXIT_AFTER_MS (exit 1 after that long),\n"
                        "  SERVICE_READY_DELAY_MS (READY=1 after that long).\n");
                return help ? 0 : EXIT_CONFIG;
        }

        if (service_load(&s) < 0)
                return EXIT_CONFIG;

        r = workload_signals_open(&s.signal_fd);
        if (r < 0) {
                fprintf(stderr, PROGRAM ": cannot set up signals: %s\n", STRERROR(r));
                return 1;
        }
        workload_clock_init(&s.clock);
        s.started = workload_now();
        s.notify = !isempty(getenv("NOTIFY_SOCKET"));

        return run(&s);
}
