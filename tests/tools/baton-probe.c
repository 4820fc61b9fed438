/* SPDX-License-Identifier: MIT */
/* baton-probe: the integration tests' hands on the wire. It makes keys,
 * publishes any baton message (given as JSON) in a real, optionally signed
 * envelope, and prints every message on chosen bindings as one JSON line,
 * all through the project's own codec, signing and broker client. */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker-settings.h"
#include "broker.h"
#include "codec.h"
#include "duration.h"
#include "log.h"
#include "pbjson.h"
#include "sign.h"
#include "topology.h"
#include "util.h"

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,
        EXIT_USAGE = 2,
};

#define MAX_BINDS 32
#define MAX_HEADERS 32
/* Larger than any envelope the codec accepts, so oversized bodies can be tried. */
#define MAX_INPUT_FILE (2 * CODEC_MAX_MESSAGE_SIZE)
/* How much of an undecodable body an error line shows. */
#define MAX_HEX_BYTES 256
#define DEFAULT_TIMEOUT (10 * USEC_PER_SEC)

typedef struct Bind {
        char *exchange;
        const char *key;
} Bind;

typedef struct Probe {
        uv_loop_t loop;
        uv_timer_t timer;
        uv_signal_t sigint, sigterm;
        Broker *broker;
        bool done;
        int exit_code;
        bool is_listen;

        /* send */
        BrokerMessage msg;
        BrokerHeader headers[MAX_HEADERS];
        unsigned publish_flags;
        bool sent;
        uint64_t repeat;    /* copies to publish */
        uint64_t confirmed; /* of them */
        char copy_id[33];   /* message id of the latest copy */
        bool await_reply;   /* a request: wait for its reply on direct reply-to */
        bool got_reply;

        /* listen */
        Bind binds[MAX_BINDS];
        size_t n_binds;
        uint64_t count; /* 0 = no limit */
        uint64_t received;
        usec_t duration; /* USEC_INFINITY = no limit */
        const char *ready_file;
        bool ready;     /* bound once: the ready file is written */
        bool connected; /* bound now */
        int out_fd;
        bool have_verify;
        SignPublicKey verify;
} Probe;

static void help(void) {
        printf("Usage:\n"
               "  baton-probe keygen SECRET_FILE PUBLIC_FILE\n"
               "  baton-probe send [OPTIONS] --type TYPE --exchange X --routing-key K\n"
               "  baton-probe listen [OPTIONS] --bind EXCHANGE:KEY [--bind ...]\n\n"
               "A test tool: publishes baton messages given as JSON, prints what arrives\n"
               "as JSON lines, with the project's own codec, signatures and broker client.\n\n"
               "keygen: writes an Ed25519 key pair and prints the public key (base64).\n\n"
               "encode: prints the envelope send would publish, as hex (send's options\n"
               "without a broker).\n\n"
               "Common options:\n"
               "  --broker URL          amqp://user:pass@host:port/vhost ($BATON_BROKER)\n"
               "  --no-declare          do not declare baton's exchanges first\n"
               "  --timeout DURATION    connect (and for send: confirm) deadline (10s)\n\n"
               "send options (exits 0 once the broker confirmed the message, else 1):\n"
               "  --type NAME           body type, e.g. baton.v1.Placement\n"
               "  --json JSON|@FILE     the body as JSON (default {})\n"
               "  --raw-body HEX|@FILE  publish these bytes instead of an encoded envelope\n"
               "  --exchange NAME       \"\" is the default exchange\n"
               "  --routing-key KEY\n"
               "  --epoch N             envelope epoch (default: the body's epoch field, or 0)\n"
               "  --sender S            envelope sender (default controller)\n"
               "  --age DURATION        envelope send time this long ago (signed; default 0)\n"
               "  --future DURATION     envelope send time this far ahead (signed)\n"
               "  --key SECRET_FILE     sign the body with this key\n"
               "  --expiration MS       AMQP expiration\n"
               "  --user-id U           AMQP user_id (the broker checks it)\n"
               "  --message-id ID       AMQP message_id (default: random)\n"
               "  --header KEY=VALUE    AMQP header (repeatable)\n"
               "  --persistent          delivery mode 2\n"
               "  --mandatory           fail when no queue takes the message\n"
               "  --reply-to Q          AMQP reply_to\n"
               "  --await-reply         wait for a reply on direct reply-to (reply_to is\n"
               "                        amq.rabbitmq.reply-to unless given) and print it\n"
               "                        as a JSON line; exit 1 if none comes in time\n"
               "  --repeat N            publish N copies (fresh message ids), wait for all\n\n"
               "listen options (a server-named exclusive queue bound as given):\n"
               "  --bind EXCHANGE:KEY   binding (repeatable, at least one)\n"
               "  --count N             exit 0 after N messages (1 if fewer by --for)\n"
               "  --for DURATION        exit after this long\n"
               "  --ready-file PATH     written once the queue is bound\n"
               "  --verify PUBLIC       check signatures with this key (base64 or file)\n"
               "  --output PATH         append the JSON lines to PATH, not stdout\n\n"
               "Exit codes: 0 ok, 1 failed, 2 usage.\n");
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n < 0)
                msg = NULL; /* undefined after a failure */
        log_error("%s (see baton-probe --help)", msg ? msg : fmt);
        return EXIT_USAGE;
}

/* ---------------------------------------------------------------------------------------- */
/* Shared loop plumbing */

static void on_handle_closed(uv_handle_t *h) {
}

static void close_handles(Probe *p) {
        uv_handle_t *hs[] = { (uv_handle_t *) &p->timer, (uv_handle_t *) &p->sigint,
                              (uv_handle_t *) &p->sigterm };

        for (size_t i = 0; i < ELEMENTSOF(hs); i++)
                if (!uv_is_closing(hs[i]))
                        uv_close(hs[i], on_handle_closed);
}

static void on_broker_closed(void *userdata) {
        Probe *p = userdata;

        p->broker = NULL;
        close_handles(p);
}

static void finish(Probe *p, int exit_code) {
        if (p->done)
                return;
        p->done = true;
        p->exit_code = exit_code;
        (void) uv_timer_stop(&p->timer);
        if (p->broker)
                broker_close(p->broker, on_broker_closed, p);
        else
                close_handles(p);
}

static void on_signal(uv_signal_t *s, int signum) {
        Probe *p = s->data;

        /* Stopping a listener is how a test ends it; a send cut short failed. */
        log_debug("Got signal %d, stopping.", signum);
        finish(p, p->is_listen ? EXIT_OK : EXIT_FAILED);
}

/* The loop and its handles, once the arguments are known to be good. */
static int probe_init(Probe *p) {
        int r;

        r = uv_loop_init(&p->loop);
        if (r < 0) {
                log_error("Cannot create an event loop: %s", uv_strerror(r));
                return -EIO;
        }
        (void) uv_timer_init(&p->loop, &p->timer);
        (void) uv_signal_init(&p->loop, &p->sigint);
        (void) uv_signal_init(&p->loop, &p->sigterm);
        p->timer.data = p->sigint.data = p->sigterm.data = p;
        (void) uv_signal_start(&p->sigint, on_signal, SIGINT);
        (void) uv_signal_start(&p->sigterm, on_signal, SIGTERM);
        return 0;
}

static int probe_run(Probe *p) {
        (void) uv_run(&p->loop, UV_RUN_DEFAULT);
        (void) uv_loop_close(&p->loop);
        return p->exit_code;
}

static int broker_setup(Probe *p, const char *url, usec_t timeout, bool reconnect,
                        BrokerStateFn state_cb) {
        BrokerConfig bc;

        broker_config_init(&bc);
        bc.url = url;
        bc.reconnect = reconnect;
        bc.connect_timeout = timeout;
        bc.rpc_timeout = timeout;
        bc.connection_name = p->is_listen ? "baton-probe listen" : "baton-probe send";
        /* A short-lived sender needs no heartbeat; a listener keeps the
         * default so a dead broker is noticed, and comes back soon after a
         * broker restart in a fault test rather than after a backoff of 30s. */
        if (!reconnect)
                bc.heartbeat = 0;
        else
                bc.backoff_max = USEC_PER_SEC;
        /* A sender floods on purpose (--repeat): buffer all of it. A listener
         * takes whatever arrives, up to what any broker may carry. */
        bc.max_pending = 0;
        bc.max_pending_bytes = 0;
        bc.max_body_size = MAX_INPUT_FILE;
        return broker_new(&p->loop, &bc, state_cb, p, &p->broker);
}

/* Checked before anything else, so a typo is a usage error with a reason. */
static int check_url(const char *url) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = broker_settings_validate_url(&url, &error);
        if (r < 0) {
                (void) usage_error("--broker: %s", error ? error : STRERROR(r));
                return r;
        }
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Arguments */

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        uint64_t v;

        if (isempty(s) || s[0] < '0' || s[0] > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* "@FILE" → the file's contents, else the argument itself (copied). */
static int read_arg(const char *arg, char **ret, size_t *ret_len) {
        int r;

        if (arg[0] == '@') {
                r = read_full_file(arg + 1, MAX_INPUT_FILE, ret, ret_len);
                if (r < 0)
                        return log_error_errno(r, "Cannot read %s: %s", arg + 1, STRERROR(r));
                return 0;
        }
        *ret = strdup(arg);
        if (!*ret)
                return log_error_errno(-ENOMEM, "Out of memory");
        *ret_len = strlen(arg);
        return 0;
}

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* --raw-body: "@FILE" (bytes as they are) or hex digits. */
static int read_raw_body(const char *arg, uint8_t **ret, size_t *ret_len) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;
        int r;

        if (arg[0] == '@') {
                char *data;

                r = read_full_file(arg + 1, MAX_INPUT_FILE, &data, &n);
                if (r < 0)
                        return log_error_errno(r, "Cannot read %s: %s", arg + 1, STRERROR(r));
                *ret = (uint8_t *) data;
                *ret_len = n;
                return 0;
        }

        n = strlen(arg);
        if (n % 2 != 0)
                return -EINVAL;
        buf = malloc(MAX(n / 2, 1u));
        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < n / 2; i++) {
                int hi = unhex(arg[2 * i]), lo = unhex(arg[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                buf[i] = (uint8_t) (hi << 4 | lo);
        }
        *ret = TAKE_PTR(buf);
        *ret_len = n / 2;
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* keygen */

static int verb_keygen(int argc, char *argv[]) {
        _cleanup_free_ char *pub = NULL;
        SignKey key;
        int r;

        if (argc != 3)
                return usage_error("keygen takes SECRET_FILE PUBLIC_FILE");

        r = sign_key_generate(&key);
        if (r < 0) {
                log_error_errno(r, "Cannot generate a key: %s", STRERROR(r));
                return EXIT_FAILED;
        }
        r = sign_key_save(&key, argv[1], argv[2]);
        pub = sign_public_key_to_base64(&key.pub);
        explicit_bzero(&key, sizeof(key));
        if (r < 0) {
                log_error_errno(r, "Cannot write %s and %s: %s", argv[1], argv[2], STRERROR(r));
                return EXIT_FAILED;
        }
        if (!pub) {
                log_error("Out of memory");
                return EXIT_FAILED;
        }
        printf("%s\n", pub);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
}

/* ---------------------------------------------------------------------------------------- */
/* send */

static void on_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Probe *p = userdata;
        BrokerStats stats;

        if (outcome == BROKER_CONFIRMED) {
                if (++p->confirmed < p->repeat)
                        return;
                if (!p->await_reply) {
                        printf("%s\n", p->msg.message_id);
                        (void) fflush(stdout);
                        finish(p, EXIT_OK);
                }
                return;
        }
        if (outcome == BROKER_RETURNED)
                log_error("Not routed: no queue is bound to exchange '%s' with key '%s'.",
                          p->msg.exchange, strempty(p->msg.routing_key));
        else if (outcome == BROKER_DROPPED && (broker_get_stats(b, &stats), stats.channel_closes))
                /* broker.c reopened the channel; the reason is only in its debug log. */
                log_error("The broker refused the message and closed the channel (a --user-id "
                          "other than the login user, a missing exchange or a bad "
                          "--expiration?).");
        else
                log_error("The broker did not confirm the message: %s.",
                          broker_outcome_to_string(outcome));
        finish(p, EXIT_FAILED);
}

static void send_on_state(Broker *b, BrokerState state, const char *reason, void *userdata) {
        Probe *p = userdata;
        int r;

        if (state == BROKER_CONNECTED && !p->sent) {
                p->sent = true;
                for (uint64_t i = 0; i < p->repeat; i++) {
                        /* Copies are distinct messages, as a flooding sender's would be. */
                        if (i > 0 && random_id(p->copy_id) >= 0)
                                p->msg.message_id = p->copy_id;
                        r = broker_publish(b, &p->msg, p->publish_flags, on_confirm, p);
                        if (r < 0) {
                                log_error_errno(r, "Cannot publish: %s", STRERROR(r));
                                finish(p, EXIT_FAILED);
                                return;
                        }
                }
        } else if (state == BROKER_DISCONNECTED) {
                log_error("Lost the broker: %s", strna(reason));
                finish(p, EXIT_FAILED);
        }
}

static void send_on_timeout(uv_timer_t *t) {
        Probe *p = t->data;

        log_error("%s within the timeout.", !p->sent ? "Could not connect"
                                            : p->confirmed < p->repeat
                                                    ? "The broker did not confirm the message"
                                                    : "No reply came");
        finish(p, EXIT_FAILED);
}

static json_t *delivery_json(Probe *p, const BrokerMessage *m);
static int write_line(Probe *p, json_t *line);

static void on_reply(Broker *b, const BrokerMessage *m, void *userdata) {
        Probe *p = userdata;
        _cleanup_(json_decrefp) json_t *line = NULL;

        if (p->got_reply)
                return;
        p->got_reply = true;
        line = delivery_json(p, m);
        if (!line || write_line(p, line) < 0) {
                log_error("Cannot print the reply.");
                finish(p, EXIT_FAILED);
                return;
        }
        finish(p, EXIT_OK);
}

/* The envelope epoch defaults to the body's own `epoch` field (Placement and
 * Restart have one) so a test writes it once. */
static uint64_t body_epoch(const ProtobufCMessage *m) {
        const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field_by_name(m->descriptor, "epoch");
        uint64_t v;

        if (!f || f->type != PROTOBUF_C_TYPE_UINT64 || f->label != PROTOBUF_C_LABEL_NONE ||
            (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
                return 0;
        memcpy(&v, (const uint8_t *) m + f->offset, sizeof(v));
        return v;
}

static void messagep(ProtobufCMessage **m) {
        if (*m)
                protobuf_c_message_free_unpacked(*m, NULL);
}

static int verb_send(int argc, char *argv[], bool encode_only) {
        enum {
                ARG_BROKER = 0x100,
                ARG_TYPE,
                ARG_JSON,
                ARG_RAW_BODY,
                ARG_EXCHANGE,
                ARG_ROUTING_KEY,
                ARG_EPOCH,
                ARG_SENDER,
                ARG_AGE,
                ARG_FUTURE,
                ARG_KEY,
                ARG_EXPIRATION,
                ARG_USER_ID,
                ARG_MESSAGE_ID,
                ARG_HEADER,
                ARG_PERSISTENT,
                ARG_MANDATORY,
                ARG_REPLY_TO,
                ARG_AWAIT_REPLY,
                ARG_REPEAT,
                ARG_NO_DECLARE,
                ARG_TIMEOUT,
        };
        static const struct option options[] = {
                { "broker", required_argument, NULL, ARG_BROKER },
                { "type", required_argument, NULL, ARG_TYPE },
                { "json", required_argument, NULL, ARG_JSON },
                { "raw-body", required_argument, NULL, ARG_RAW_BODY },
                { "exchange", required_argument, NULL, ARG_EXCHANGE },
                { "routing-key", required_argument, NULL, ARG_ROUTING_KEY },
                { "epoch", required_argument, NULL, ARG_EPOCH },
                { "sender", required_argument, NULL, ARG_SENDER },
                { "age", required_argument, NULL, ARG_AGE },
                { "future", required_argument, NULL, ARG_FUTURE },
                { "key", required_argument, NULL, ARG_KEY },
                { "expiration", required_argument, NULL, ARG_EXPIRATION },
                { "user-id", required_argument, NULL, ARG_USER_ID },
                { "message-id", required_argument, NULL, ARG_MESSAGE_ID },
                { "header", required_argument, NULL, ARG_HEADER },
                { "persistent", no_argument, NULL, ARG_PERSISTENT },
                { "mandatory", no_argument, NULL, ARG_MANDATORY },
                { "reply-to", required_argument, NULL, ARG_REPLY_TO },
                { "await-reply", no_argument, NULL, ARG_AWAIT_REPLY },
                { "repeat", required_argument, NULL, ARG_REPEAT },
                { "no-declare", no_argument, NULL, ARG_NO_DECLARE },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *url = getenv("BATON_BROKER"), *type = NULL, *json_arg = NULL, *raw_arg = NULL,
                   *exchange = NULL, *routing_key = NULL, *sender = "controller", *key_path = NULL,
                   *expiration = NULL, *user_id = NULL, *message_id = NULL, *reply_to = NULL;
        _cleanup_(messagep) ProtobufCMessage *body = NULL;
        _cleanup_free_ uint8_t *wire = NULL;
        _cleanup_free_ char *json_text = NULL, *error = NULL;
        _cleanup_(json_decrefp) json_t *json = NULL;
        const ProtobufCMessageDescriptor *desc = NULL;
        bool have_epoch = false, persistent = false, declare = true;
        usec_t timeout = DEFAULT_TIMEOUT, now, age = 0, future = 0;
        char id[33];
        uint64_t epoch = 0;
        size_t wire_len = 0, json_len;
        SignKey key;
        Probe p = { .out_fd = STDOUT_FILENO, .duration = USEC_INFINITY, .repeat = 1 };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_BROKER:
                        url = optarg;
                        break;
                case ARG_REPLY_TO:
                        reply_to = optarg;
                        break;
                case ARG_AWAIT_REPLY:
                        p.await_reply = true;
                        break;
                case ARG_REPEAT:
                        if (parse_u64(optarg, &p.repeat) < 0 || p.repeat == 0 || p.repeat > 1000000)
                                return usage_error("--repeat: 1..1000000, not %s", optarg);
                        break;
                case ARG_TYPE:
                        type = optarg;
                        break;
                case ARG_JSON:
                        json_arg = optarg;
                        break;
                case ARG_RAW_BODY:
                        raw_arg = optarg;
                        break;
                case ARG_EXCHANGE:
                        exchange = optarg;
                        break;
                case ARG_ROUTING_KEY:
                        routing_key = optarg;
                        break;
                case ARG_EPOCH:
                        if (parse_u64(optarg, &epoch) < 0)
                                return usage_error("--epoch: not a number: %s", optarg);
                        have_epoch = true;
                        break;
                case ARG_SENDER:
                        sender = optarg;
                        break;
                case ARG_AGE:
                        if (duration_parse(optarg, &age) < 0 || age == USEC_INFINITY)
                                return usage_error("--age: not a duration: %s", optarg);
                        break;
                case ARG_FUTURE:
                        if (duration_parse(optarg, &future) < 0 || future == USEC_INFINITY)
                                return usage_error("--future: not a duration: %s", optarg);
                        break;
                case ARG_KEY:
                        key_path = optarg;
                        break;
                case ARG_EXPIRATION:
                        expiration = optarg;
                        break;
                case ARG_USER_ID:
                        user_id = optarg;
                        break;
                case ARG_MESSAGE_ID:
                        message_id = optarg;
                        break;
                case ARG_HEADER: {
                        char *eq = strchr(optarg, '=');

                        if (!eq || eq == optarg)
                                return usage_error("--header: expected KEY=VALUE: %s", optarg);
                        if (p.msg.n_headers >= MAX_HEADERS)
                                return usage_error("--header: at most %d", MAX_HEADERS);
                        *eq = '\0';
                        p.headers[p.msg.n_headers++] =
                                (BrokerHeader){ .key = optarg, .value = eq + 1 };
                        break;
                }
                case ARG_PERSISTENT:
                        persistent = true;
                        break;
                case ARG_MANDATORY:
                        p.publish_flags |= BROKER_PUBLISH_MANDATORY;
                        break;
                case ARG_NO_DECLARE:
                        declare = false;
                        break;
                case ARG_TIMEOUT:
                        if (duration_parse(optarg, &timeout) < 0 || timeout == 0 ||
                            timeout == USEC_INFINITY)
                                return usage_error("--timeout: not a duration: %s", optarg);
                        break;
                case 'h':
                        help();
                        return EXIT_OK;
                default:
                        return EXIT_USAGE;
                }
        }
        if (optind < argc)
                return usage_error("send: unexpected argument: %s", argv[optind]);
        if (encode_only && raw_arg)
                return usage_error("encode: --raw-body makes no sense here");
        if (!encode_only && isempty(url))
                return usage_error("send: --broker is required (or $BATON_BROKER)");
        if (!encode_only && check_url(url) < 0)
                return EXIT_USAGE;
        if (!encode_only && (!exchange || !routing_key))
                return usage_error("send: --exchange and --routing-key are required");
        if (raw_arg && json_arg)
                return usage_error("send: --raw-body and --json exclude each other");
        if (!raw_arg && !type)
                return usage_error("send: --type is required");
        if (type) {
                desc = pbjson_find_descriptor(type);
                if (!desc && !raw_arg)
                        return usage_error("send: unknown message type: %s", type);
        }

        if (raw_arg) {
                r = read_raw_body(raw_arg, &wire, &wire_len);
                if (r < 0)
                        return r == -EINVAL ? usage_error("--raw-body: not hex digits: %s", raw_arg)
                                            : EXIT_FAILED;
        } else {
                json_error_t e;

                r = read_arg(json_arg ? json_arg : "{}", &json_text, &json_len);
                if (r < 0)
                        return EXIT_FAILED;
                json = json_loadb(json_text, json_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
                if (!json)
                        return usage_error("--json: line %d, column %d: %s", e.line, e.column,
                                           e.text);
                r = pbjson_to_message(desc, json, &body, &error);
                if (r < 0)
                        return usage_error("--json: %s", error ? error : STRERROR(r));

                if (key_path) {
                        _cleanup_free_ char *key_error = NULL;

                        r = sign_key_load(key_path, &key, &key_error);
                        if (r < 0)
                                return usage_error("--key: %s",
                                                   key_error ? key_error : STRERROR(r));
                }
                if (!have_epoch)
                        epoch = body_epoch(body);
                r = codec_encode(body, sender, epoch, now_realtime_usec() - age + future,
                                 key_path ? &key : NULL, &wire, &wire_len);
                explicit_bzero(&key, sizeof(key));
                if (r < 0) {
                        _cleanup_free_ char *why = NULL;

                        if (r == -EINVAL)
                                (void) codec_validate(body, &why);
                        log_error_errno(r, "Cannot encode the %s: %s", desc->name,
                                        why ? why : STRERROR(r));
                        return EXIT_FAILED;
                }
        }

        if (encode_only) {
                for (size_t i = 0; i < wire_len; i++)
                        printf("%02x", wire[i]);
                printf("\n");
                return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
        }

        if (!message_id) {
                r = random_id(id);
                if (r < 0) {
                        log_error_errno(r, "Cannot make a message id: %s", STRERROR(r));
                        return EXIT_FAILED;
                }
                message_id = id;
        }
        now = now_realtime_usec();
        p.msg.exchange = exchange;
        p.msg.routing_key = routing_key;
        p.msg.message_id = message_id;
        p.msg.type = type;
        p.msg.content_type = CODEC_CONTENT_TYPE;
        p.msg.user_id = user_id;
        p.msg.reply_to = reply_to ? reply_to : p.await_reply ? TOPOLOGY_REPLY_TO : NULL;
        p.msg.correlation_id = p.await_reply ? message_id : NULL;
        p.msg.expiration = expiration;
        p.msg.timestamp = now / USEC_PER_SEC;
        p.msg.persistent = persistent;
        p.msg.headers = p.msg.n_headers > 0 ? p.headers : NULL;
        p.msg.body = wire;
        p.msg.body_len = wire_len;
        /* One attempt: a probe reports what happened instead of retrying. */
        p.publish_flags |= BROKER_PUBLISH_NO_RETRY;

        if (probe_init(&p) < 0)
                return EXIT_FAILED;
        r = broker_setup(&p, url, timeout, false, send_on_state);
        if (r >= 0 && declare)
                r = topology_add_common(p.broker);
        if (r >= 0 && p.await_reply)
                r = broker_add_consumer(p.broker, TOPOLOGY_REPLY_TO, BROKER_NO_ACK, on_reply, &p);
        if (r >= 0)
                r = broker_start(p.broker);
        if (r < 0) {
                log_error_errno(r, "Cannot start the broker connection: %s", STRERROR(r));
                finish(&p, EXIT_FAILED);
        } else
                (void) uv_timer_start(&p.timer, send_on_timeout, timeout / USEC_PER_MSEC, 0);

        return probe_run(&p);
}

/* ---------------------------------------------------------------------------------------- */
/* listen */

static int write_line(Probe *p, json_t *line) {
        _cleanup_free_ char *text = NULL;
        size_t len, done = 0;
        char *nl;

        text = json_dumps(line, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        len = strlen(text);
        nl = realloc(text, len + 2);
        if (!nl)
                return -ENOMEM;
        text = nl;
        text[len++] = '\n';
        text[len] = '\0';

        /* One write() for the line and its newline: a reader polling the file
         * sees whole lines (short of a very large one). */
        while (done < len) {
                ssize_t n = write(p->out_fd, text + done, len - done);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                done += (size_t) n;
        }
        return 0;
}

/* AMQP strings come from the network and need not be UTF-8, which jansson
 * insists on. */
static json_t *amqp_string(const char *s) {
        return s ? pbjson_string(s) : json_null();
}

static json_t *message_common(const BrokerMessage *m) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        json_t *headers;

        o = json_object();
        headers = json_object();
        if (!o || !headers || json_object_set_new(o, "headers", headers) < 0)
                return NULL;
        /* A key that is not UTF-8 is refused by jansson: the others are kept. */
        for (size_t i = 0; i < m->n_headers; i++)
                (void) json_object_set_new(headers, m->headers[i].key,
                                           amqp_string(m->headers[i].value));

        if (json_object_set_new(o, "routing_key", amqp_string(strempty(m->routing_key))) < 0 ||
            json_object_set_new(o, "exchange", amqp_string(strempty(m->exchange))) < 0 ||
            json_object_set_new(o, "type", amqp_string(m->type)) < 0 ||
            json_object_set_new(o, "message_id", amqp_string(m->message_id)) < 0 ||
            json_object_set_new(o, "persistent", json_boolean(m->persistent)) < 0 ||
            json_object_set_new(o, "redelivered", json_boolean(m->redelivered)) < 0 ||
            json_object_set_new(o, "body_len", json_integer((json_int_t) m->body_len)) < 0 ||
            json_object_set_new(o, "received_at_us",
                                json_integer((json_int_t) now_realtime_usec())) < 0)
                return NULL;

        /* The other properties only when the message has them. */
        const struct {
                const char *key;
                const char *value;
        } opt[] = {
                { "content_type", m->content_type }, { "user_id", m->user_id },
                { "expiration", m->expiration },     { "correlation_id", m->correlation_id },
                { "reply_to", m->reply_to },
        };
        for (size_t i = 0; i < ELEMENTSOF(opt); i++)
                if (opt[i].value &&
                    json_object_set_new(o, opt[i].key, amqp_string(opt[i].value)) < 0)
                        return NULL;
        if (m->timestamp > 0 &&
            json_object_set_new(o, "timestamp", json_integer((json_int_t) m->timestamp)) < 0)
                return NULL;

        return TAKE_PTR(o);
}

static json_t *envelope_json(const Baton__V1__Envelope *env) {
        _cleanup_(json_decrefp) json_t *o = pbjson_from_message(&env->base);

        if (!o)
                return NULL;
        /* The body is shown decoded; the signature's bytes tell a test nothing. */
        (void) json_object_del(o, "body");
        (void) json_object_del(o, "signature");
        if (json_object_set_new(o, "signed", json_boolean(env->signature.len > 0)) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static json_t *hex_json(const void *data, size_t len) {
        static const char hex[] = "0123456789abcdef";
        _cleanup_free_ char *s = NULL;
        const uint8_t *b = data;
        size_t n = MIN(len, (size_t) MAX_HEX_BYTES);

        s = malloc(n * 2 + 1);
        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                s[2 * i] = hex[b[i] >> 4];
                s[2 * i + 1] = hex[b[i] & 0xf];
        }
        s[2 * n] = '\0';
        return json_string(s);
}

static json_t *delivery_json(Probe *p, const BrokerMessage *m) {
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_(json_decrefp) json_t *o = NULL;
        _cleanup_free_ char *error = NULL;
        const ProtobufCMessageDescriptor *const *all;
        size_t n_all;
        json_t *body;
        int r;

        o = message_common(m);
        if (!o)
                return NULL;

        all = pbjson_descriptors(&n_all);
        r = codec_decode(m->body, m->body_len, all, n_all, m->type, NULL, &d, &error);
        if (r < 0) {
                if (json_object_set_new(o, "error", amqp_string(error ? error : STRERROR(r))) < 0 ||
                    json_object_set_new(o, "body_hex", hex_json(m->body, m->body_len)) < 0)
                        return NULL;
                return TAKE_PTR(o);
        }

        body = pbjson_from_message(d.body);
        if (json_object_set_new(o, "envelope", envelope_json(d.envelope)) < 0 ||
            json_object_set_new(o, "body", body) < 0)
                return NULL;

        if (p->have_verify) {
                _cleanup_(codec_decoded_done) CodecDecoded again = { 0 };
                _cleanup_free_ char *why = NULL;

                /* The codec's own check, as an agent runs it: key id, then signature. */
                r = codec_decode(m->body, m->body_len, all, n_all, m->type, &p->verify, &again,
                                 &why);
                if (json_object_set_new(o, "verified", json_boolean(r >= 0)) < 0)
                        return NULL;
                if (r < 0 && json_object_set_new(o, "verify_error",
                                                 amqp_string(why ? why : STRERROR(r))) < 0)
                        return NULL;
        }

        return TAKE_PTR(o);
}

static void on_deliver(Broker *b, const BrokerMessage *m, void *userdata) {
        _cleanup_(json_decrefp) json_t *line = NULL;
        Probe *p = userdata;
        int r;

        if (p->done)
                return;

        line = delivery_json(p, m);
        if (!line) {
                log_error("Out of memory");
                finish(p, EXIT_FAILED);
                return;
        }
        r = write_line(p, line);
        if (r < 0) {
                log_error_errno(r, "Cannot write the message: %s", STRERROR(r));
                finish(p, EXIT_FAILED);
                return;
        }
        p->received++;
        if (p->count > 0 && p->received >= p->count)
                finish(p, EXIT_OK);
}

static void listen_on_timeout(uv_timer_t *t) {
        Probe *p = t->data;
        char d[DURATION_MAX_LEN];

        if (!p->ready) {
                log_error("Could not connect and bind within the timeout.");
                finish(p, EXIT_FAILED);
                return;
        }
        if (p->count > 0 && p->received < p->count) {
                log_error("Only %" PRIu64 " of %" PRIu64 " messages within %s.", p->received,
                          p->count, duration_format(d, sizeof(d), p->duration));
                finish(p, EXIT_FAILED);
                return;
        }
        finish(p, EXIT_OK);
}

static int write_ready_file(Probe *p) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        _cleanup_free_ char *text = NULL;
        const char *queue = broker_get_server_named_queue(p->broker, 0);

        o = json_pack("{s:s?,s:i}", "queue", queue, "pid", (int) getpid());
        if (!o)
                return -ENOMEM;
        text = json_dumps(o, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        return write_file_atomic(p->ready_file, text, strlen(text), 0644);
}

static void listen_on_state(Broker *b, BrokerState state, const char *reason, void *userdata) {
        Probe *p = userdata;
        int r;

        if (state == BROKER_CONNECTED) {
                p->connected = true;
                if (p->ready) {
                        log_warning("Reconnected to the broker on queue %s; messages published "
                                    "while disconnected were missed.",
                                    strna(broker_get_server_named_queue(b, 0)));
                        return;
                }
                p->ready = true;
                log_debug("Listening on queue %s.", strna(broker_get_server_named_queue(b, 0)));
                if (p->ready_file) {
                        r = write_ready_file(p);
                        if (r < 0) {
                                log_error_errno(r, "Cannot write %s: %s", p->ready_file,
                                                STRERROR(r));
                                finish(p, EXIT_FAILED);
                                return;
                        }
                }
                /* --for counts from the moment the queue is bound; until then the
                 * timer is the connect timeout. */
                (void) uv_timer_stop(&p->timer);
                if (p->duration != USEC_INFINITY)
                        (void) uv_timer_start(&p->timer, listen_on_timeout,
                                              MAX(p->duration / USEC_PER_MSEC, 1u), 0);
        } else if (state == BROKER_DISCONNECTED) {
                /* Fail fast when the broker was never reached; once listening,
                 * ride out a broker restart (the reconnect is scheduled). */
                if (!p->ready) {
                        log_error("Cannot reach the broker: %s", strna(reason));
                        finish(p, EXIT_FAILED);
                } else if (p->connected)
                        log_warning("Lost the broker (%s), reconnecting.", strna(reason));
                else
                        log_debug("Reconnect failed: %s", strna(reason));
                p->connected = false;
        }
}

static int verb_listen(int argc, char *argv[]) {
        enum {
                ARG_BROKER = 0x100,
                ARG_BIND,
                ARG_COUNT,
                ARG_FOR,
                ARG_READY_FILE,
                ARG_VERIFY,
                ARG_OUTPUT,
                ARG_NO_DECLARE,
                ARG_TIMEOUT,
        };
        static const struct option options[] = {
                { "broker", required_argument, NULL, ARG_BROKER },
                { "bind", required_argument, NULL, ARG_BIND },
                { "count", required_argument, NULL, ARG_COUNT },
                { "for", required_argument, NULL, ARG_FOR },
                { "ready-file", required_argument, NULL, ARG_READY_FILE },
                { "verify", required_argument, NULL, ARG_VERIFY },
                { "output", required_argument, NULL, ARG_OUTPUT },
                { "no-declare", no_argument, NULL, ARG_NO_DECLARE },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *url = getenv("BATON_BROKER"), *output = NULL;
        _cleanup_close_ int out_fd = -EBADF;
        usec_t timeout = DEFAULT_TIMEOUT;
        bool declare = true;
        Probe p = { .is_listen = true, .out_fd = STDOUT_FILENO, .duration = USEC_INFINITY };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_BROKER:
                        url = optarg;
                        break;
                case ARG_BIND: {
                        char *colon = strchr(optarg, ':');

                        if (!colon || colon == optarg)
                                return usage_error("--bind: expected EXCHANGE:KEY: %s", optarg);
                        if (p.n_binds >= MAX_BINDS)
                                return usage_error("--bind: at most %d", MAX_BINDS);
                        *colon = '\0';
                        p.binds[p.n_binds++] = (Bind){ .exchange = optarg, .key = colon + 1 };
                        break;
                }
                case ARG_COUNT:
                        if (parse_u64(optarg, &p.count) < 0 || p.count == 0)
                                return usage_error("--count: not a positive number: %s", optarg);
                        break;
                case ARG_FOR:
                        if (duration_parse(optarg, &p.duration) < 0)
                                return usage_error("--for: not a duration: %s", optarg);
                        break;
                case ARG_READY_FILE:
                        p.ready_file = optarg;
                        break;
                case ARG_VERIFY: {
                        _cleanup_free_ char *error = NULL;

                        r = sign_public_key_load(optarg, &p.verify, &error);
                        if (r < 0)
                                return usage_error("--verify: %s", error ? error : STRERROR(r));
                        p.have_verify = true;
                        break;
                }
                case ARG_OUTPUT:
                        output = optarg;
                        break;
                case ARG_NO_DECLARE:
                        declare = false;
                        break;
                case ARG_TIMEOUT:
                        if (duration_parse(optarg, &timeout) < 0 || timeout == 0 ||
                            timeout == USEC_INFINITY)
                                return usage_error("--timeout: not a duration: %s", optarg);
                        break;
                case 'h':
                        help();
                        return EXIT_OK;
                default:
                        return EXIT_USAGE;
                }
        }
        if (optind < argc)
                return usage_error("listen: unexpected argument: %s", argv[optind]);
        if (isempty(url))
                return usage_error("listen: --broker is required (or $BATON_BROKER)");
        if (check_url(url) < 0)
                return EXIT_USAGE;
        if (p.n_binds == 0)
                return usage_error("listen: at least one --bind is required");

        if (output) {
                out_fd = open(output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
                if (out_fd < 0) {
                        r = negative_errno();
                        log_error_errno(r, "Cannot open %s: %s", output, STRERROR(r));
                        return EXIT_FAILED;
                }
                p.out_fd = out_fd;
        }

        if (probe_init(&p) < 0)
                return EXIT_FAILED;
        r = broker_setup(&p, url, timeout, true, listen_on_state);
        if (r >= 0 && declare)
                r = topology_add_common(p.broker);
        if (r >= 0)
                r = broker_add_queue(p.broker, NULL, BROKER_EXCLUSIVE | BROKER_AUTO_DELETE, NULL);
        for (size_t i = 0; r >= 0 && i < p.n_binds; i++)
                r = broker_add_binding(p.broker, NULL, p.binds[i].exchange, p.binds[i].key);
        if (r >= 0)
                r = broker_add_consumer(p.broker, NULL, BROKER_NO_ACK, on_deliver, &p);
        if (r >= 0)
                r = broker_start(p.broker);
        if (r < 0) {
                log_error_errno(r, "Cannot start the broker connection: %s", STRERROR(r));
                finish(&p, EXIT_FAILED);
        } else
                (void) uv_timer_start(&p.timer, listen_on_timeout, timeout / USEC_PER_MSEC, 0);

        return probe_run(&p);
}

int main(int argc, char *argv[]) {
        const char *verb;

        log_setup("baton-probe");
        /* A reader that went away is a write error, not a silent death. */
        (void) signal(SIGPIPE, SIG_IGN);

        if (argc < 2)
                return usage_error("a verb is required: keygen, send, encode or listen");
        verb = argv[1];
        if (streq(verb, "-h") || streq(verb, "--help")) {
                help();
                return EXIT_OK;
        }

        /* The verb's options start after it. */
        if (streq(verb, "keygen"))
                return verb_keygen(argc - 1, argv + 1);
        if (streq(verb, "send"))
                return verb_send(argc - 1, argv + 1, false);
        if (streq(verb, "encode"))
                return verb_send(argc - 1, argv + 1, true);
        if (streq(verb, "listen"))
                return verb_listen(argc - 1, argv + 1);
        return usage_error("unknown verb: %s", verb);
}
