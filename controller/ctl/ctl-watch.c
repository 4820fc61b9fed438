/* SPDX-License-Identifier: MIT */
/* batonctl watch: alerts and events as they are published on baton.events,
 * one line each (or one JSON object each), through a private queue that lives
 * as long as this process. Not an RPC: it needs the broker, not the
 * controller, and survives broker restarts. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "broker.h"
#include "ctl-verbs.h"
#include "duration.h"
#include "events.pb-c.h"
#include "pbjson.h"
#include "topology.h"
#include "util.h"

typedef struct Watch {
        Ctl *ctl;
        const char *pattern;
        uint64_t max_count; /* 0 = no limit */
        usec_t duration;    /* USEC_INFINITY = no limit */

        uv_loop_t loop;
        uv_timer_t timer;
        uv_signal_t sigint, sigterm;
        Broker *broker;
        uint64_t count;
        bool connected;      /* now: a lost connection is reported once, not per retry */
        bool connected_once; /* ever: before that, failing to connect ends the watch */
        bool done;
        int exit_code;
} Watch;

static const ProtobufCMessageDescriptor *const event_types[] = {
        &baton__v1__alert__descriptor,
        &baton__v1__event__descriptor,
};

static void on_broker_closed(void *userdata) {
        Watch *w = userdata;

        w->broker = NULL;
}

/* Ends the watch with exit_code after saying why (fmt may be NULL); the loop
 * runs on until the broker and every handle are closed. */
static void finish(Watch *w, int exit_code, const char *fmt, ...) _printf_(3, 4);
static void finish(Watch *w, int exit_code, const char *fmt, ...) {
        if (w->done)
                return;
        w->done = true;
        w->exit_code = exit_code;
        if (fmt) {
                va_list ap;

                va_start(ap, fmt);
                ctl_verror(fmt, ap);
                va_end(ap);
        }
        uv_close((uv_handle_t *) &w->timer, NULL);
        uv_close((uv_handle_t *) &w->sigint, NULL);
        uv_close((uv_handle_t *) &w->sigterm, NULL);
        if (w->broker)
                broker_close(w->broker, on_broker_closed, w);
}

/* "2026-11-21T06:00:00.123Z": milliseconds are what a person correlates. */
static char *format_time_ms(char *buf, size_t len, uint64_t usec) {
        time_t sec = (time_t) (usec / USEC_PER_SEC);
        char base[32];
        struct tm tm;

        if (!gmtime_r(&sec, &tm) || strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
                snprintf(base, sizeof(base), "@%" PRIu64, (uint64_t) (usec / USEC_PER_SEC));
        snprintf(buf, len, "%s.%03uZ", base, (unsigned) (usec % USEC_PER_SEC / USEC_PER_MSEC));
        return buf;
}

static const char *severity_label(const Baton__V1__Alert *a) {
        if (a->resolved)
                return "RESOLVED";
        switch (a->severity) {
        case BATON__V1__SEVERITY__SEVERITY_INFO:
                return "INFO";
        case BATON__V1__SEVERITY__SEVERITY_WARNING:
                return "WARNING";
        case BATON__V1__SEVERITY__SEVERITY_CRITICAL:
                return "CRITICAL";
        default:
                return "ALERT";
        }
}

/* `TIME LABEL KIND service=S host=H: SUMMARY`, the words that are empty left
 * out. Every string came over the network: control characters are masked. */
static int print_line(const CodecDecoded *d) {
        _cleanup_free_ char *kind = NULL, *service = NULL, *host = NULL, *summary = NULL;
        const char *label;
        char at[48];
        uint64_t at_us;

        if (d->descriptor == &baton__v1__alert__descriptor) {
                const Baton__V1__Alert *a = (const Baton__V1__Alert *) d->body;

                label = severity_label(a);
                at_us = a->resolved && a->resolved_at_us > 0 ? a->resolved_at_us : a->raised_at_us;
                kind = ctl_sanitize(a->kind);
                service = ctl_sanitize(a->service);
                host = ctl_sanitize(a->host);
                summary = ctl_sanitize(a->summary);
        } else {
                const Baton__V1__Event *e = (const Baton__V1__Event *) d->body;

                label = "EVENT";
                at_us = e->at_us;
                kind = ctl_sanitize(e->kind);
                service = ctl_sanitize(e->service);
                host = ctl_sanitize(e->host);
                summary = ctl_sanitize(e->summary);
        }
        if (!kind || !service || !host || !summary)
                return -ENOMEM;
        /* The body's own time is when it happened; the envelope's when it was sent. */
        if (at_us == 0)
                at_us = d->envelope->sent_at_us;
        if (at_us == 0)
                at_us = now_realtime_usec();

        printf("%s %s %s", format_time_ms(at, sizeof(at), at_us), label,
               isempty(kind) ? "-" : kind);
        if (!isempty(service))
                printf(" service=%s", service);
        if (!isempty(host))
                printf(" host=%s", host);
        if (!isempty(summary))
                printf(": %s", summary);
        printf("\n");
        return fflush(stdout) == 0 ? 0 : negative_errno();
}

/* {"routing_key": …, "type": "baton.v1.Alert", <the body's fields>} on one line. */
static int print_json_line(const BrokerMessage *m, const CodecDecoded *d) {
        _cleanup_(json_decrefp) json_t *line = NULL, *body = NULL;
        int r;

        line = json_object();
        body = pbjson_from_message(d->body);
        if (!line || !body)
                return -ENOMEM;
        if (json_object_set_new(line, "routing_key", pbjson_string(strempty(m->routing_key))) < 0 ||
            json_object_set_new(line, "type", json_string(d->descriptor->name)) < 0 ||
            json_object_update(line, body) < 0)
                return -ENOMEM;
        r = json_dumpf(line, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (r < 0)
                return -EIO;
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : negative_errno();
}

static void on_message(Broker *b, const BrokerMessage *m, void *userdata) {
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL;
        Watch *w = userdata;
        int r;

        if (w->done)
                return;
        /* Signatures are not checked: watch shows what was published, and
         * only the agents act on the controller's word. */
        r = codec_decode(m->body, m->body_len, event_types, ELEMENTSOF(event_types), m->type, NULL,
                         &d, &error);
        if (r < 0) {
                _cleanup_free_ char *key = ctl_sanitize(m->routing_key),
                                    *type = ctl_sanitize(m->type), *why = ctl_sanitize(error);

                fprintf(stderr,
                        "batonctl: undecodable message (routing key '%s', type '%s'): %s, "
                        "ignoring\n",
                        strempty(key), strempty(type), isempty(why) ? STRERROR(r) : why);
                return;
        }

        r = w->ctl->json ? print_json_line(m, &d) : print_line(&d);
        if (r < 0) {
                finish(w, CTL_EXIT_FAILED, "cannot print the message: %s", STRERROR(r));
                return;
        }
        w->count++;
        if (w->max_count > 0 && w->count >= w->max_count)
                finish(w, CTL_EXIT_OK, NULL);
}

static void on_state(Broker *b, BrokerState state, const char *reason, void *userdata) {
        Watch *w = userdata;

        if (w->done)
                return;
        if (state == BROKER_CONNECTED) {
                /* Said on stderr so that a script knows from when on it sees
                 * everything, and a person after a reconnect what was lost. */
                if (!w->connected_once)
                        fprintf(stderr, "batonctl: watching %s for '%s'\n",
                                TOPOLOGY_EXCHANGE_EVENTS, w->pattern);
                else
                        fprintf(stderr, "batonctl: reconnected; what was published meanwhile "
                                        "was missed\n");
                w->connected_once = w->connected = true;
        } else if (state == BROKER_DISCONNECTED) {
                if (!w->connected_once)
                        finish(w, CTL_EXIT_UNREACHABLE, "cannot watch %s: %s",
                               TOPOLOGY_EXCHANGE_EVENTS, strna(reason));
                else if (w->connected)
                        fprintf(stderr, "batonctl: lost the broker (%s), reconnecting\n",
                                strna(reason));
                w->connected = false;
        }
}

static void on_timer(uv_timer_t *t) {
        finish(t->data, CTL_EXIT_OK, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
        finish(s->data, CTL_EXIT_OK, NULL);
}

static int watch_run(Watch *w) {
        BrokerConfig bc;
        int r;

        r = uv_loop_init(&w->loop);
        if (r < 0) {
                fprintf(stderr, "batonctl: cannot create an event loop: %s\n", uv_strerror(r));
                return CTL_EXIT_FAILED;
        }
        (void) uv_timer_init(&w->loop, &w->timer);
        (void) uv_signal_init(&w->loop, &w->sigint);
        (void) uv_signal_init(&w->loop, &w->sigterm);
        w->timer.data = w->sigint.data = w->sigterm.data = w;
        w->exit_code = CTL_EXIT_OK;

        broker_config_init(&bc);
        broker_settings_apply(&w->ctl->broker, &bc);
        bc.reconnect = true;
        bc.connect_timeout = w->ctl->timeout;
        bc.connection_name = "batonctl watch";
        r = broker_new(&w->loop, &bc, on_state, w, &w->broker);
        /* A queue of our own, gone with the connection: a watcher that is
         * not there leaves nothing behind to fill up. */
        if (r >= 0)
                r = broker_add_queue(w->broker, NULL, BROKER_EXCLUSIVE | BROKER_AUTO_DELETE, NULL);
        if (r >= 0)
                r = broker_add_binding(w->broker, NULL, TOPOLOGY_EXCHANGE_EVENTS, w->pattern);
        if (r >= 0)
                r = broker_add_consumer(w->broker, NULL, BROKER_NO_ACK, on_message, w);
        if (r >= 0)
                r = broker_start(w->broker);
        if (r >= 0)
                r = uv_signal_start(&w->sigint, on_signal, SIGINT);
        if (r >= 0)
                r = uv_signal_start(&w->sigterm, on_signal, SIGTERM);
        if (r >= 0 && w->duration != USEC_INFINITY)
                r = uv_timer_start(&w->timer, on_timer, MAX(w->duration / USEC_PER_MSEC, 1), 0);
        if (r < 0)
                finish(w, CTL_EXIT_FAILED, "cannot set up the broker connection: %s", STRERROR(r));

        (void) uv_run(&w->loop, UV_RUN_DEFAULT);
        (void) uv_loop_close(&w->loop);
        return w->exit_code;
}

static int run(Ctl *ctl, int argc, char *argv[]) {
        enum {
                ARG_COUNT = 0x100,
                ARG_FOR,
        };
        static const struct option options[] = {
                { "count", required_argument, NULL, ARG_COUNT },
                { "for", required_argument, NULL, ARG_FOR },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        Watch w = {
                .ctl = ctl,
                .pattern = "#",
                .duration = USEC_INFINITY,
        };
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":n:h", options, NULL)) >= 0)
                switch (c) {
                case 'n':
                case ARG_COUNT:
                        r = ctl_parse_uint(optarg, UINT64_MAX, &w.max_count);
                        if (r < 0 || w.max_count == 0)
                                return ctl_usage_error(&ctl_command_watch,
                                                       "--count: '%s' is not a positive integer",
                                                       optarg);
                        break;
                case ARG_FOR:
                        r = duration_parse(optarg, &w.duration);
                        if (r < 0 || w.duration == 0)
                                return ctl_usage_error(&ctl_command_watch,
                                                       "--for: '%s' is not a duration (e.g. 500ms, "
                                                       "5s, 2min)",
                                                       optarg);
                        break;
                case 'h':
                        return ctl_command_help(&ctl_command_watch);
                default:
                        return ctl_option_error(&ctl_command_watch, c, argv);
                }
        if (argc - optind > 1)
                return ctl_usage_error(&ctl_command_watch, "unexpected argument '%s'",
                                       argv[optind + 1]);
        if (optind < argc) {
                w.pattern = argv[optind];
                /* A routing key is an AMQP short string. */
                if (isempty(w.pattern) || strlen(w.pattern) > 255)
                        return ctl_usage_error(&ctl_command_watch,
                                               "PATTERN must be 1 to 255 characters, e.g. "
                                               "'alert.critical.*' or 'event.#'");
        }
        return watch_run(&w);
}

const CtlCommand ctl_command_watch = {
        .name = "watch",
        .usage = "[PATTERN] [--count N] [--for DURATION]",
        .summary = "print alerts and events live (PATTERN: alert.#, ...)",
        .run = run,
};
