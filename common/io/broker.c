/* SPDX-License-Identifier: MIT */
/* The AMQP client of every baton process: rabbitmq-c driven from one uv_loop_t.
 * Owns the connection life cycle (connect and declare on a worker thread, run
 * on the loop, reconnect with backoff), the outgoing buffer with publisher
 * confirms, and the assembly of deliveries from frames. */

/*
 * How it works
 *
 * Threads. Everything that may wait on the network for long runs on a libuv
 * worker (uv_queue_work): TCP/TLS connect, login, channel setup, declarations
 * and basic.consume (JOB_CONNECT); reopening a channel the broker closed
 * (JOB_REOPEN); the polite connection.close on broker_close() (JOB_CLOSE).
 * While a job owns a connection the loop does not touch it (Conn.busy) and its
 * uv_poll_t is stopped. The worker reads only what is immutable after
 * broker_start(): the config, the parsed URL and the topology.
 *
 * Run phase. A uv_poll_t watches a dup() of the socket, so rabbitmq-c closing
 * its own descriptor (it does on heartbeat and RPC timeouts) can never pull a
 * reused descriptor number out from under the loop. pump() is the one place
 * that reads: drain() takes frames with a zero timeout until rabbitmq-c says
 * AMQP_STATUS_TIMEOUT, and assembles messages itself (method, content header,
 * body frames). pump() runs from the poll callback, the heartbeat timer (at
 * half the negotiated heartbeat, since rabbitmq-c only sends and checks
 * heartbeats inside frame waits) and a uv_idle_t that any API call arms:
 * broker_publish() and broker_ack() write, and a write may pull frames into
 * rabbitmq-c's queue without making the socket readable, so the next loop turn
 * drains again. Callbacks (deliveries, confirms, state) are only ever made
 * from pump() or uv callbacks, never from inside a broker_*() call, so a
 * callback may call any broker_*() function, broker_close() included.
 *
 * Publishing. broker_publish() copies the message into an Outgoing entry on
 * the unsent list. When connected, flush() writes entries in order while the
 * socket's send queue has room (SIOCOUTQ), else it waits for POLLOUT, so a
 * frozen broker cannot block the loop in a write. A written entry gets the
 * next confirm sequence number (1, 2, ... per channel) and moves to the
 * unconfirmed list until basic.ack / basic.nack settles it. A basic.return
 * marks the oldest unconfirmed, not yet returned, mandatory entry with the
 * same exchange and routing key (and message_id when both have one): RabbitMQ
 * sends a publish's return before its ack on the same channel, and that ack
 * then reports BROKER_RETURNED. The buffer is bounded (max_pending,
 * max_pending_bytes over unsent + unconfirmed): a publish into a full buffer
 * drops the oldest DROPPABLE entries (BROKER_DROPPED) or fails with -ENOBUFS.
 *
 * Re-send. When a channel or connection dies, its unconfirmed entries go back
 * to the front of the unsent list in their original order (NO_RETRY ones end
 * BROKER_DROPPED) and are written again on the next channel. When the broker
 * names basic.publish as the method that killed the channel (class 60, method
 * 40 in channel.close, e.g. a bad `expiration`), every entry that was in
 * flight is a suspect: suspects are then written one at a time, each alone on
 * the wire until confirmed, so the poison one is found (once a suspect kills
 * a channel alone, the other suspects are cleared), and an entry that has been
 * written on MAX_ATTEMPTS channels that died of a publish ends BROKER_DROPPED
 * instead of killing channels forever. Lost connections (socket error,
 * heartbeat, broker restart) never use up attempts.
 *
 * Tag staleness. Delivery tags handed to the application carry the channel
 * generation in their top TAG_GEN_BITS bits. The generation grows on every
 * channel the broker closes and every connection lost, so broker_ack() of a
 * tag from a dead channel returns -ESTALE without writing anything: the broker
 * has already requeued that message.
 *
 * Reconnect. After a failed attempt or a lost connection the next attempt
 * waits a random time in [backoff_min / 2, min(backoff_max, backoff_min *
 * 2^n)] (full jitter with a floor), n counting failures since the last
 * connection that reached CONNECTED. Each attempt declares the whole topology
 * again (server-named queues get fresh names), re-consumes, then writes the
 * unsent list. With reconnect = false there is one attempt.
 */

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "broker.h"

#define CHANNEL 1
#define FRAME_MAX 131072
/* A publish written on this many channels that a publish killed is dropped. */
#define MAX_ATTEMPTS 3
#define TAG_GEN_BITS 20
#define TAG_SEQ_BITS (64 - TAG_GEN_BITS)
#define TAG_SEQ_MASK ((UINT64_C(1) << TAG_SEQ_BITS) - 1)
#define TAG_GEN_MASK ((UINT32_C(1) << TAG_GEN_BITS) - 1)
/* Properties of one publish must fit in one frame of FRAME_MAX. */
#define MAX_PROPERTIES_SIZE (64u * 1024u)
#define SHORTSTR_MAX 255
#define CLOSE_TIMEOUT_USEC (1 * USEC_PER_SEC)
#define DEFAULT_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define CONSUMER_TAG_PREFIX "baton."
#define DRAIN_BUDGET 1024 /* frames per loop turn */

/* ---------------------------------------------------------------------------------------- */
/* Types */

typedef struct Outgoing Outgoing;

typedef struct OutList {
        Outgoing *head, *tail;
        size_t n;
        size_t bytes;
} OutList;

struct Outgoing {
        Outgoing *prev, *next;
        OutList *list;

        uint64_t seq; /* confirm sequence number on the current channel; 0 = not written */
        unsigned flags;
        unsigned attempts; /* channels it was written on */
        bool returned;
        bool suspect;
        BrokerOutcome outcome; /* once on the done list */
        BrokerConfirmFn fn;
        void *userdata;

        size_t bytes; /* body plus strings, counted against max_pending_bytes */
        amqp_bytes_t exchange;
        amqp_bytes_t routing_key;
        amqp_bytes_t body;
        amqp_basic_properties_t props;
        /* the header table entries, the strings and the body follow in the same allocation */
};

typedef enum ItemKind {
        ITEM_EXCHANGE,
        ITEM_QUEUE,
        ITEM_BINDING,
        ITEM_CONSUMER,
} ItemKind;

/* One declaration of the topology, in the order given. */
typedef struct Item {
        ItemKind kind;
        unsigned flags;
        char *name; /* exchange or queue; for bindings and consumers the queue; NULL = server-named */
        size_t sn;  /* index of the server-named queue when name is NULL */
        char *type; /* exchange type */
        char *exchange;
        char *routing_key;
        /* queue arguments */
        char *dead_letter_exchange;
        char *dead_letter_routing_key;
        char *queue_type;
        char *overflow;
        uint64_t message_ttl_ms;
        uint64_t max_length;
        bool single_active_consumer;
        /* consumer */
        BrokerDeliverFn fn;
        void *userdata;
        char tag[32];
} Item;

typedef struct Broker Broker;

/* One AMQP connection. Owned by a worker while busy, by the loop otherwise. */
typedef struct Conn {
        Broker *broker;
        amqp_connection_state_t amqp;
        uv_poll_t poll;
        bool poll_init;
        int poll_events;
        int fd; /* our dup() of rabbitmq-c's socket, watched by poll */
        unsigned heartbeat;
        bool channel_open;
        bool busy;
        bool failed;
        bool charge; /* the failure was caused by a publish: charge attempts */
        int error;
        char *reason;
        char **sn_names; /* server-named queues as named on this connection */
        size_t n_sn;
} Conn;

typedef enum JobKind {
        JOB_CONNECT,
        JOB_REOPEN,
        JOB_CLOSE,
} JobKind;

typedef struct Job {
        uv_work_t work;
        Broker *broker;
        JobKind kind;
        Conn *conn;                   /* CONNECT: made by the worker; REOPEN: given */
        amqp_connection_state_t amqp; /* CLOSE */
        int error;
        char *reason;
        bool broken; /* the connection no longer talks AMQP: no polite close */
} Job;

typedef enum AsmKind {
        ASM_NONE,
        ASM_DELIVER,
        ASM_RETURN,
} AsmKind;

/* A message being put together from its method, header and body frames. Every
 * field is a private copy: frames live in rabbitmq-c's pools. */
typedef struct Assembly {
        AsmKind kind;
        bool have_header;
        bool oversized;
        size_t consumer;
        uint64_t delivery_tag;
        bool redelivered;
        char *exchange;
        char *routing_key;
        uint64_t body_size;
        uint64_t received;
        char *body;
        char *message_id;
        char *type;
        char *content_type;
        char *reply_to;
        char *correlation_id;
        char *user_id;
        char *expiration;
        uint64_t timestamp;
        bool persistent;
        BrokerHeader *headers;
        size_t n_headers;
} Assembly;

struct Broker {
        uv_loop_t *loop;
        char last_close[256]; /* "403 ACCESS_REFUSED - …" of the last channel.close */
        BrokerConfig config;
        char *ca_file;
        char *connection_name;
        char *url_buf; /* amqp_parse_url() points url's strings into it */
        struct amqp_connection_info url;
        BrokerStateFn state_cb;
        void *userdata;

        Item *items;
        size_t n_items;
        size_t *consumers; /* consumer number → index in items */
        size_t n_consumers;
        size_t n_server_named;

        BrokerState state;
        int error;
        bool started;
        bool closing;
        bool close_started;
        void (*closed_cb)(void *userdata);
        void *closed_userdata;

        Conn *conn;
        Job *job; /* the CONNECT or REOPEN job in flight */
        unsigned n_jobs;
        unsigned n_handles;
        uv_idle_t idle;
        uv_timer_t heartbeat_timer;
        uv_timer_t reconnect_timer;

        unsigned backoff_attempt;
        uint32_t channel_gen;
        uint64_t next_seq;

        /* Acks, gathered: while the deliveries of one read are handled in
         * order, one basic.ack with multiple set settles them all when the
         * read ends (one frame and one write, not one per message). */
        uint64_t settled_upto; /* every delivery up to this one is settled */
        uint64_t ack_pending;  /* to ack with multiple set; 0: none */
        uint64_t *ooo;         /* settled out of order, above settled_upto + 1, sorted */
        size_t n_ooo;
        bool dispatching; /* inside drain(): acks may wait for its end */

        OutList unsent;
        OutList unconfirmed;
        OutList done;
        size_t n_suspects_inflight;

        Assembly assembly;
        BrokerStats stats;
};

/* ---------------------------------------------------------------------------------------- */
/* String tables */

static const char *const broker_state_table[_BROKER_STATE_MAX] = {
        [BROKER_IDLE] = "idle",           [BROKER_CONNECTING] = "connecting",
        [BROKER_CONNECTED] = "connected", [BROKER_DISCONNECTED] = "disconnected",
        [BROKER_CLOSED] = "closed",
};

DEFINE_STRING_TABLE_LOOKUP(broker_state, BrokerState, _BROKER_STATE_MAX)

static const char *const broker_outcome_table[_BROKER_OUTCOME_MAX] = {
        [BROKER_CONFIRMED] = "confirmed",
        [BROKER_NACKED] = "nacked",
        [BROKER_RETURNED] = "returned",
        [BROKER_DROPPED] = "dropped",
};

DEFINE_STRING_TABLE_LOOKUP(broker_outcome, BrokerOutcome, _BROKER_OUTCOME_MAX)

/* ---------------------------------------------------------------------------------------- */
/* Errors: rabbitmq-c status codes and AMQP reply codes to -errno and text */

static bool is_socket_errno(int e) {
        switch (e) {
        case ECONNREFUSED:
        case ECONNRESET:
        case ECONNABORTED:
        case ETIMEDOUT:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case ENETDOWN:
        case EADDRNOTAVAIL:
        case EPIPE:
        case EACCES:
        case EPERM:
                return true;
        default:
                return false;
        }
}

/* rabbitmq-c reports every socket failure as AMQP_STATUS_SOCKET_ERROR; errno,
 * saved right after the call, often still says which. Only trust it when it
 * is an errno a socket call can produce. */
static int status_to_errno(int status, int saved_errno) {
        switch (status) {
        case AMQP_STATUS_OK:
                return 0;
        case AMQP_STATUS_NO_MEMORY:
                return -ENOMEM;
        case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED:
                return -EHOSTUNREACH;
        case AMQP_STATUS_INCOMPATIBLE_AMQP_VERSION:
                return -EPROTONOSUPPORT;
        case AMQP_STATUS_CONNECTION_CLOSED:
        case AMQP_STATUS_SOCKET_CLOSED:
                return -ECONNRESET;
        case AMQP_STATUS_BAD_URL:
        case AMQP_STATUS_INVALID_PARAMETER:
                return -EINVAL;
        case AMQP_STATUS_TABLE_TOO_BIG:
                return -EMSGSIZE;
        case AMQP_STATUS_TIMEOUT:
        case AMQP_STATUS_HEARTBEAT_TIMEOUT:
                return -ETIMEDOUT;
        case AMQP_STATUS_SOCKET_ERROR:
        case AMQP_STATUS_TCP_ERROR:
                return is_socket_errno(saved_errno) ? -saved_errno : -EIO;
        case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED:
        case AMQP_STATUS_SSL_PEER_VERIFY_FAILED:
                return -EPERM;
        case AMQP_STATUS_BAD_AMQP_DATA:
        case AMQP_STATUS_UNKNOWN_CLASS:
        case AMQP_STATUS_UNKNOWN_METHOD:
        case AMQP_STATUS_WRONG_METHOD:
        case AMQP_STATUS_UNEXPECTED_STATE:
        case AMQP_STATUS_SSL_ERROR:
        case AMQP_STATUS_SSL_CONNECTION_FAILED:
                return -EPROTO;
        case AMQP_STATUS_BROKER_UNSUPPORTED_SASL_METHOD:
        case AMQP_STATUS_UNSUPPORTED:
                return -EOPNOTSUPP;
        default:
                return -EIO;
        }
}

/* strerror() in lower case, to read well after a colon. */
static const char *errno_to_text(int e, char *buf, size_t size) {
        snprintf(buf, size, "%s", strerror(e));
        buf[0] = (char) tolower((unsigned char) buf[0]);
        return buf;
}

/* Text for a rabbitmq-c status, in a caller's buffer: "connection refused"
 * rather than "a socket error occurred" where errno tells. */
static const char *status_to_text(int status, int saved_errno, char *buf, size_t size) {
        if ((status == AMQP_STATUS_SOCKET_ERROR || status == AMQP_STATUS_TCP_ERROR) &&
            is_socket_errno(saved_errno))
                return errno_to_text(saved_errno, buf, size);
        return amqp_error_string2(status);
}

static int reply_code_to_errno(uint16_t code) {
        switch (code) {
        case AMQP_CONTENT_TOO_LARGE:
                return -EMSGSIZE;
        case AMQP_NO_ROUTE:
                return -EHOSTUNREACH;
        case AMQP_CONNECTION_FORCED:
                return -ECONNRESET;
        case AMQP_INVALID_PATH:
        case AMQP_PRECONDITION_FAILED:
                return -EINVAL;
        case AMQP_ACCESS_REFUSED:
                return -EACCES;
        case AMQP_NOT_FOUND:
        case AMQP_NO_CONSUMERS:
                return -ENOENT;
        case AMQP_RESOURCE_LOCKED:
                return -EBUSY;
        case AMQP_NOT_ALLOWED:
                return -EPERM;
        case AMQP_NOT_IMPLEMENTED:
                return -EOPNOTSUPP;
        case AMQP_RESOURCE_ERROR:
                return -ENOBUFS;
        case AMQP_FRAME_ERROR:
        case AMQP_SYNTAX_ERROR:
        case AMQP_COMMAND_INVALID:
        case AMQP_CHANNEL_ERROR:
        case AMQP_UNEXPECTED_FRAME:
                return -EPROTO;
        default:
                return -EIO;
        }
}

/* Did the broker close the channel or connection because of a basic.publish? */
static bool caused_by_publish(uint16_t class_id, uint16_t method_id) {
        return class_id == AMQP_BASIC_CLASS && method_id == (AMQP_BASIC_PUBLISH_METHOD & 0xFFFF);
}

static char *strdup_vprintf(const char *fmt, va_list ap) _printf_(1, 0);
static char *strdup_vprintf(const char *fmt, va_list ap) {
        char *s;

        if (vasprintf(&s, fmt, ap) < 0)
                return NULL;
        return s;
}

static char *strdup_printf(const char *fmt, ...) _printf_(1, 2);
static char *strdup_printf(const char *fmt, ...) {
        va_list ap;
        char *s;

        va_start(ap, fmt);
        s = strdup_vprintf(fmt, ap);
        va_end(ap);
        return s;
}

/* Turns a failed RPC reply into -errno and "what: why" text. */
static int describe_reply(amqp_rpc_reply_t reply, int saved_errno, const char *what,
                          char **ret_reason) {
        char buf[128];
        int r;

        switch (reply.reply_type) {
        case AMQP_RESPONSE_NORMAL:
                return 0;
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
                r = status_to_errno(reply.library_error, saved_errno);
                if (r == 0)
                        r = -EIO;
                *ret_reason = strdup_printf(
                        "%s: %s", what,
                        status_to_text(reply.library_error, saved_errno, buf, sizeof(buf)));
                return r;
        case AMQP_RESPONSE_SERVER_EXCEPTION:
                if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                        const amqp_connection_close_t *m = reply.reply.decoded;
                        *ret_reason = strdup_printf("%s: broker closed the connection: %u %.*s",
                                                    what, m->reply_code, (int) m->reply_text.len,
                                                    (const char *) m->reply_text.bytes);
                        return reply_code_to_errno(m->reply_code);
                }
                if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                        const amqp_channel_close_t *m = reply.reply.decoded;
                        *ret_reason = strdup_printf("%s: broker closed the channel: %u %.*s", what,
                                                    m->reply_code, (int) m->reply_text.len,
                                                    (const char *) m->reply_text.bytes);
                        return reply_code_to_errno(m->reply_code);
                }
                *ret_reason = strdup_printf("%s: unexpected reply %s", what,
                                            amqp_method_name(reply.reply.id));
                return -EPROTO;
        case AMQP_RESPONSE_NONE:
        default:
                *ret_reason = strdup_printf("%s: no reply", what);
                return -EPROTO;
        }
}

static struct timeval usec_to_timeval(usec_t u) {
        return (struct timeval){
                .tv_sec = (time_t) (u / USEC_PER_SEC),
                .tv_usec = (suseconds_t) (u % USEC_PER_SEC),
        };
}

static amqp_bytes_t bytes_of(const char *s) {
        return amqp_cstring_bytes(s ? (char *) s : (char *) "");
}

static char *bytes_dup(amqp_bytes_t b) {
        char *s = malloc(b.len + 1);

        if (!s)
                return NULL;
        if (b.len > 0)
                memcpy(s, b.bytes, b.len);
        s[b.len] = 0;
        return s;
}

static bool bytes_eq(amqp_bytes_t a, const char *s) {
        size_t n = strlen(strempty(s));
        return a.len == n && (n == 0 || memcmp(a.bytes, s, n) == 0);
}

static bool shortstr_ok(const char *s) {
        return !s || strlen(s) <= SHORTSTR_MAX;
}

/* ---------------------------------------------------------------------------------------- */
/* Outgoing lists */

static void outlist_append(OutList *l, Outgoing *e) {
        assert(!e->list);
        e->prev = l->tail;
        e->next = NULL;
        if (l->tail)
                l->tail->next = e;
        else
                l->head = e;
        l->tail = e;
        l->n++;
        l->bytes += e->bytes;
        e->list = l;
}

static void outlist_remove(Outgoing *e) {
        OutList *l = e->list;

        assert(l);
        if (e->prev)
                e->prev->next = e->next;
        else
                l->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                l->tail = e->prev;
        l->n--;
        l->bytes -= e->bytes;
        e->prev = e->next = NULL;
        e->list = NULL;
}

/* Moves every entry of src, in order, in front of dst's. */
static void outlist_prepend_all(OutList *dst, OutList *src) {
        Outgoing *e;

        if (!src->head)
                return;
        for (e = src->head; e; e = e->next)
                e->list = dst;
        src->tail->next = dst->head;
        if (dst->head)
                dst->head->prev = src->tail;
        else
                dst->tail = src->tail;
        dst->head = src->head;
        dst->n += src->n;
        dst->bytes += src->bytes;
        *src = (OutList){ 0 };
}

static size_t pending_n(const Broker *b) {
        return b->unsent.n + b->unconfirmed.n;
}

static size_t pending_bytes(const Broker *b) {
        return b->unsent.bytes + b->unconfirmed.bytes;
}

/* Copies a message into one allocation: the entry, its header table, its
 * strings and its body. */
static int outgoing_new(const BrokerMessage *m, unsigned flags, BrokerConfirmFn fn, void *userdata,
                        Outgoing **ret) {
        const char *strs[] = { m->exchange,       m->routing_key,  m->message_id,
                               m->type,           m->content_type, m->reply_to,
                               m->correlation_id, m->user_id,      m->expiration };
        size_t strings = 0, props = 0, size;
        Outgoing *e;
        amqp_table_entry_t *entries;
        char *p;

        if (m->body_len > 0 && !m->body)
                return -EINVAL;
        if (m->n_headers > 0 && !m->headers)
                return -EINVAL;
        if (m->n_headers > INT32_MAX)
                return -EINVAL;

        for (size_t i = 0; i < ELEMENTSOF(strs); i++) {
                if (!shortstr_ok(strs[i]))
                        return -EINVAL;
                /* exchange and routing key are always there, the others when set */
                if (strs[i] || i < 2)
                        strings += strlen(strempty(strs[i])) + 1;
        }
        props = strings;
        for (size_t i = 0; i < m->n_headers; i++) {
                const BrokerHeader *h = &m->headers[i];
                size_t kl, vl;

                if (!h->key || !h->value)
                        return -EINVAL;
                kl = strlen(h->key);
                vl = strlen(h->value);
                if (kl == 0 || kl > SHORTSTR_MAX || vl > MAX_PROPERTIES_SIZE)
                        return -EINVAL;
                strings += kl + vl + 2;
                props += kl + vl + 7; /* key length, kind, value length */
        }
        if (props > MAX_PROPERTIES_SIZE)
                return -EINVAL;

        size = sizeof(Outgoing) + m->n_headers * sizeof(amqp_table_entry_t) + strings + m->body_len;
        e = calloc(1, size);
        if (!e)
                return -ENOMEM;

        e->flags = flags;
        e->fn = fn;
        e->userdata = userdata;
        e->bytes = strings + m->body_len;

        /* sizeof(Outgoing) is a multiple of its alignment, which is that of its
         * uint64_t and pointer members: enough for the table entries. */
        entries = (amqp_table_entry_t *) (e + 1);
        p = (char *) (entries + m->n_headers);

#define PUT(field, src)                                                                            \
        do {                                                                                       \
                size_t _l = strlen(strempty(src));                                                 \
                memcpy(p, strempty(src), _l);                                                      \
                p[_l] = 0;                                                                         \
                (field) = (amqp_bytes_t){ .len = _l, .bytes = p };                                 \
                p += _l + 1;                                                                       \
        } while (0)

        PUT(e->exchange, m->exchange);
        PUT(e->routing_key, m->routing_key);
        if (m->message_id) {
                PUT(e->props.message_id, m->message_id);
                e->props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        }
        if (m->type) {
                PUT(e->props.type, m->type);
                e->props._flags |= AMQP_BASIC_TYPE_FLAG;
        }
        if (m->content_type) {
                PUT(e->props.content_type, m->content_type);
                e->props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        }
        if (m->reply_to) {
                PUT(e->props.reply_to, m->reply_to);
                e->props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
        }
        if (m->correlation_id) {
                PUT(e->props.correlation_id, m->correlation_id);
                e->props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        }
        if (m->user_id) {
                PUT(e->props.user_id, m->user_id);
                e->props._flags |= AMQP_BASIC_USER_ID_FLAG;
        }
        if (m->expiration) {
                PUT(e->props.expiration, m->expiration);
                e->props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        }
        if (m->timestamp != 0) {
                e->props.timestamp = m->timestamp;
                e->props._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        }
        if (m->persistent) {
                e->props.delivery_mode = 2;
                e->props._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        }
        if (m->n_headers > 0) {
                for (size_t i = 0; i < m->n_headers; i++) {
                        PUT(entries[i].key, m->headers[i].key);
                        entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
                        PUT(entries[i].value.value.bytes, m->headers[i].value);
                }
                e->props.headers =
                        (amqp_table_t){ .num_entries = (int) m->n_headers, .entries = entries };
                e->props._flags |= AMQP_BASIC_HEADERS_FLAG;
        }
#undef PUT

        if (m->body_len > 0)
                memcpy(p, m->body, m->body_len);
        e->body = (amqp_bytes_t){ .len = m->body_len, .bytes = p };

        *ret = e;
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Assembly */

static void assembly_reset(Assembly *a) {
        free(a->exchange);
        free(a->routing_key);
        free(a->body);
        free(a->message_id);
        free(a->type);
        free(a->content_type);
        free(a->reply_to);
        free(a->correlation_id);
        free(a->user_id);
        free(a->expiration);
        for (size_t i = 0; i < a->n_headers; i++) {
                free((char *) a->headers[i].key);
                free((char *) a->headers[i].value);
        }
        free(a->headers);
        *a = (Assembly){ 0 };
}

/* Header values as text: strings as they are, numbers and booleans printed,
 * nested tables, arrays, decimals and voids left out. */
static char *field_to_string(const amqp_field_value_t *v) {
        switch (v->kind) {
        case AMQP_FIELD_KIND_UTF8:
        case AMQP_FIELD_KIND_BYTES:
                return bytes_dup(v->value.bytes);
        case AMQP_FIELD_KIND_BOOLEAN:
                return strdup(v->value.boolean ? "true" : "false");
        case AMQP_FIELD_KIND_I8:
                return strdup_printf("%" PRIi8, v->value.i8);
        case AMQP_FIELD_KIND_U8:
                return strdup_printf("%" PRIu8, v->value.u8);
        case AMQP_FIELD_KIND_I16:
                return strdup_printf("%" PRIi16, v->value.i16);
        case AMQP_FIELD_KIND_U16:
                return strdup_printf("%" PRIu16, v->value.u16);
        case AMQP_FIELD_KIND_I32:
                return strdup_printf("%" PRIi32, v->value.i32);
        case AMQP_FIELD_KIND_U32:
                return strdup_printf("%" PRIu32, v->value.u32);
        case AMQP_FIELD_KIND_I64:
                return strdup_printf("%" PRIi64, v->value.i64);
        case AMQP_FIELD_KIND_U64:
        case AMQP_FIELD_KIND_TIMESTAMP:
                return strdup_printf("%" PRIu64, v->value.u64);
        case AMQP_FIELD_KIND_F32:
                return strdup_printf("%g", (double) v->value.f32);
        case AMQP_FIELD_KIND_F64:
                return strdup_printf("%.17g", v->value.f64);
        default:
                errno = 0;
                return NULL;
        }
}

static int copy_opt(amqp_flags_t flags, amqp_flags_t flag, amqp_bytes_t b, char **ret) {
        if (!(flags & flag))
                return 0;
        *ret = bytes_dup(b);
        return *ret ? 0 : -ENOMEM;
}

static int assembly_copy_properties(Assembly *a, const amqp_basic_properties_t *p) {
        amqp_flags_t f = p->_flags;

        if (copy_opt(f, AMQP_BASIC_MESSAGE_ID_FLAG, p->message_id, &a->message_id) < 0 ||
            copy_opt(f, AMQP_BASIC_TYPE_FLAG, p->type, &a->type) < 0 ||
            copy_opt(f, AMQP_BASIC_CONTENT_TYPE_FLAG, p->content_type, &a->content_type) < 0 ||
            copy_opt(f, AMQP_BASIC_REPLY_TO_FLAG, p->reply_to, &a->reply_to) < 0 ||
            copy_opt(f, AMQP_BASIC_CORRELATION_ID_FLAG, p->correlation_id, &a->correlation_id) <
                    0 ||
            copy_opt(f, AMQP_BASIC_USER_ID_FLAG, p->user_id, &a->user_id) < 0 ||
            copy_opt(f, AMQP_BASIC_EXPIRATION_FLAG, p->expiration, &a->expiration) < 0)
                return -ENOMEM;
        if (f & AMQP_BASIC_TIMESTAMP_FLAG)
                a->timestamp = p->timestamp;
        if (f & AMQP_BASIC_DELIVERY_MODE_FLAG)
                a->persistent = p->delivery_mode == 2;
        if ((f & AMQP_BASIC_HEADERS_FLAG) && p->headers.num_entries > 0) {
                a->headers = calloc((size_t) p->headers.num_entries, sizeof(BrokerHeader));
                if (!a->headers)
                        return -ENOMEM;
                for (int i = 0; i < p->headers.num_entries; i++) {
                        const amqp_table_entry_t *t = &p->headers.entries[i];
                        _cleanup_free_ char *key = NULL, *value = NULL;

                        value = field_to_string(&t->value);
                        if (!value) {
                                if (errno == ENOMEM)
                                        return -ENOMEM;
                                continue;
                        }
                        key = bytes_dup(t->key);
                        if (!key)
                                return -ENOMEM;
                        a->headers[a->n_headers++] =
                                (BrokerHeader){ .key = TAKE_PTR(key), .value = TAKE_PTR(value) };
                }
        }
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Small helpers on the loop side */

static void on_idle(uv_idle_t *h);
static void on_poll(uv_poll_t *h, int status, int events);
static void pump(Broker *b);

/* Runs pump() on the next loop turn without blocking in poll first. */
static void acks_reset(Broker *b);
static int acks_flush(Broker *b);
static void acks_settled(Broker *b, uint64_t seq);

static void kick(Broker *b) {
        if (b->close_started)
                return;
        (void) uv_idle_start(&b->idle, on_idle);
}

static bool conn_usable(const Broker *b) {
        const Conn *c = b->conn;
        return c && !b->closing && !c->busy && !c->failed && c->channel_open;
}

/* Marks the connection failed; pump() tears it down on the next turn. */
static void conn_fail(Broker *b, int error, bool charge, const char *fmt, ...) _printf_(4, 5);
static void conn_fail(Broker *b, int error, bool charge, const char *fmt, ...) {
        Conn *c = b->conn;
        va_list ap;

        if (!c || c->failed)
                return;
        c->failed = true;
        c->error = error < 0 ? error : -EIO;
        c->charge = charge;
        va_start(ap, fmt);
        c->reason = strdup_vprintf(fmt, ap);
        va_end(ap);
        kick(b);
}

static void conn_fail_status(Broker *b, int status, int saved_errno, const char *what) {
        char buf[128];
        int r = status_to_errno(status, saved_errno);

        conn_fail(b, r == 0 ? -EIO : r, false, "connection to %s:%d lost (%s): %s", b->url.host,
                  b->url.port, what, status_to_text(status, saved_errno, buf, sizeof(buf)));
}

static void set_state(Broker *b, BrokerState state, int error, const char *reason) {
        if (b->closing)
                return;
        b->state = state;
        if (state == BROKER_DISCONNECTED)
                b->error = error;
        if (b->state_cb)
                b->state_cb(b, state, state == BROKER_DISCONNECTED ? strna(reason) : NULL,
                            b->userdata);
}

/* Moves an entry to the done list with its outcome; pump() calls back. */
static void outgoing_finish(Broker *b, Outgoing *e, BrokerOutcome outcome) {
        if (e->list) {
                if (e->list == &b->unconfirmed && e->suspect)
                        b->n_suspects_inflight--;
                outlist_remove(e);
        }
        e->outcome = outcome;
        switch (outcome) {
        case BROKER_CONFIRMED:
                b->stats.confirmed++;
                break;
        case BROKER_NACKED:
                b->stats.nacked++;
                break;
        case BROKER_RETURNED:
                b->stats.returned++;
                break;
        case BROKER_DROPPED:
        default:
                b->stats.dropped++;
                break;
        }
        outlist_append(&b->done, e);
}

static void dispatch_done(Broker *b) {
        Outgoing *e;

        while ((e = b->done.head)) {
                outlist_remove(e);
                if (e->fn)
                        e->fn(b, e->outcome, e->userdata);
                free(e);
        }
}

/* The channel the unconfirmed entries were written on is gone: put them back
 * in front of the unsent ones, in order. */
static void requeue_unconfirmed(Broker *b, bool charge) {
        OutList keep = { 0 };
        Outgoing *e;

        /* A suspect that killed a channel while alone on it is the culprit: the
         * other suspects are innocent and may be pipelined again. */
        if (charge && b->unconfirmed.n == 1 && b->unconfirmed.head->suspect)
                for (e = b->unsent.head; e; e = e->next)
                        e->suspect = false;

        while ((e = b->unconfirmed.head)) {
                if (e->suspect)
                        b->n_suspects_inflight--;
                outlist_remove(e);
                e->seq = 0;
                e->returned = false;
                if (e->flags & BROKER_PUBLISH_NO_RETRY) {
                        outgoing_finish(b, e, BROKER_DROPPED);
                        continue;
                }
                if (charge) {
                        if (e->attempts >= MAX_ATTEMPTS) {
                                outgoing_finish(b, e, BROKER_DROPPED);
                                continue;
                        }
                        e->suspect = true;
                }
                outlist_append(&keep, e);
        }
        assert(b->n_suspects_inflight == 0);
        outlist_prepend_all(&b->unsent, &keep);
}

static void poll_set_events(Conn *c, int events) {
        if (!c->poll_init || c->busy || c->failed || c->poll_events == events)
                return;
        c->poll_events = events;
        if (events == 0)
                (void) uv_poll_stop(&c->poll);
        else
                (void) uv_poll_start(&c->poll, events, on_poll);
}

/* Is there room in the socket's send queue for this entry? Writes with
 * rabbitmq-c block until done, so the loop only writes what the kernel can
 * take now; a frozen broker then cannot freeze the loop. */
static bool socket_has_room(const Conn *c, const Outgoing *e) {
        int outq = 0, sndbuf = 0;
        socklen_t l = sizeof(sndbuf);
        size_t need;

        if (ioctl(c->fd, SIOCOUTQ, &outq) < 0 || outq <= 0)
                return true;
        if (getsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &l) < 0 || sndbuf <= 0)
                return true;
        need = e->bytes + 256 + (e->body.len / (FRAME_MAX - 8) + 1) * 8;
        return (size_t) outq + need <= (size_t) sndbuf / 2;
}

/* Writes unsent entries in order. `forced`: the socket just reported
 * writable, so one entry goes out whatever the room estimate says. */
static void flush(Broker *b, bool forced) {
        Conn *c = b->conn;
        bool wrote = false, blocked = false;
        Outgoing *e;

        if (!conn_usable(b))
                return;

        while ((e = b->unsent.head)) {
                int r, saved;

                /* A suspect goes alone: nothing else in flight before or with it. */
                if (b->n_suspects_inflight > 0 || (e->suspect && b->unconfirmed.n > 0))
                        break;
                if (!(forced && !wrote) && !socket_has_room(c, e)) {
                        blocked = true;
                        break;
                }
                errno = 0;
                r = amqp_basic_publish(c->amqp, CHANNEL, e->exchange, e->routing_key,
                                       !!(e->flags & BROKER_PUBLISH_MANDATORY), false, &e->props,
                                       e->body);
                saved = errno;
                if (r != AMQP_STATUS_OK) {
                        conn_fail_status(b, r, saved, "publish");
                        return;
                }
                outlist_remove(e);
                e->seq = b->next_seq++;
                e->attempts++;
                outlist_append(&b->unconfirmed, e);
                if (e->suspect)
                        b->n_suspects_inflight++;
                b->stats.published++;
                wrote = true;
        }

        poll_set_events(c, UV_READABLE | (blocked ? UV_WRITABLE : 0));
        if (wrote)
                kick(b); /* the publish may have pulled frames into rabbitmq-c's queue */
}

/* ---------------------------------------------------------------------------------------- */
/* Frames */

static void start_reopen(Broker *b, Conn *c);

static void handle_confirm(Broker *b, uint64_t tag, bool multiple, bool ack) {
        Outgoing *e, *next;

        for (e = b->unconfirmed.head; e && e->seq <= tag; e = next) {
                next = e->next;
                if (!multiple && e->seq != tag)
                        continue;
                outgoing_finish(b, e,
                                !ack          ? BROKER_NACKED
                                : e->returned ? BROKER_RETURNED
                                              : BROKER_CONFIRMED);
                if (!multiple)
                        break;
        }
        if (b->unsent.head)
                flush(b, false);
}

static void handle_return(Broker *b) {
        Assembly *a = &b->assembly;

        for (Outgoing *e = b->unconfirmed.head; e; e = e->next) {
                if (!(e->flags & BROKER_PUBLISH_MANDATORY) || e->returned)
                        continue;
                if (!bytes_eq(e->exchange, a->exchange) ||
                    !bytes_eq(e->routing_key, a->routing_key))
                        continue;
                if (a->message_id && (e->props._flags & AMQP_BASIC_MESSAGE_ID_FLAG) &&
                    !bytes_eq(e->props.message_id, a->message_id))
                        continue;
                e->returned = true;
                return;
        }
}

static void handle_delivery(Broker *b, Conn *c) {
        Assembly *a = &b->assembly;
        const Item *it = &b->items[b->consumers[a->consumer]];
        bool no_ack = it->flags & BROKER_NO_ACK;
        BrokerMessage m;

        if (a->oversized) {
                /* Never allocated: refuse it so it is dead-lettered rather than
                 * redelivered, then tell the consumer (which counts and logs it)
                 * with its properties, an empty body and its announced size. */
                if (!no_ack) {
                        int r, saved;

                        errno = 0;
                        r = amqp_basic_reject(c->amqp, CHANNEL, a->delivery_tag, false);
                        saved = errno;
                        if (r != AMQP_STATUS_OK) {
                                conn_fail_status(b, r, saved, "reject");
                                return;
                        }
                        b->stats.rejected++;
                        /* Settled: acks behind it may still be gathered. */
                        acks_settled(b, a->delivery_tag);
                }
                b->stats.oversized++;
        }

        m = (BrokerMessage){
                .exchange = a->exchange,
                .routing_key = a->routing_key,
                .message_id = a->message_id,
                .type = a->type,
                .content_type = a->content_type,
                .reply_to = a->reply_to,
                .correlation_id = a->correlation_id,
                .user_id = a->user_id,
                .expiration = a->expiration,
                .timestamp = a->timestamp,
                .persistent = a->persistent,
                .headers = a->headers,
                .n_headers = a->n_headers,
                .body = a->body ? a->body : "",
                .body_len = (size_t) MIN(a->body_size, (uint64_t) SIZE_MAX),
                .oversized = a->oversized,
                .delivery_tag = no_ack || a->oversized ? 0
                                                       : ((uint64_t) (b->channel_gen & TAG_GEN_MASK)
                                                          << TAG_SEQ_BITS) |
                                                                 a->delivery_tag,
                .redelivered = a->redelivered,
                .queue = it->name ? it->name : c->sn_names[it->sn],
        };
        b->stats.delivered++;
        it->fn(b, &m, it->userdata);
}

static void assembly_complete(Broker *b, Conn *c) {
        if (b->assembly.kind == ASM_DELIVER)
                handle_delivery(b, c);
        else if (b->assembly.kind == ASM_RETURN)
                handle_return(b);
        assembly_reset(&b->assembly);
}

static int consumer_from_tag(const Broker *b, amqp_bytes_t tag, size_t *ret) {
        char buf[32], *end;
        unsigned long n;

        if (tag.len >= sizeof(buf))
                return -ENOENT;
        memcpy(buf, tag.bytes, tag.len);
        buf[tag.len] = 0;
        if (strncmp(buf, CONSUMER_TAG_PREFIX, strlen(CONSUMER_TAG_PREFIX)) != 0)
                return -ENOENT;
        errno = 0;
        n = strtoul(buf + strlen(CONSUMER_TAG_PREFIX), &end, 10);
        if (errno != 0 || *end != 0 || n >= b->n_consumers)
                return -ENOENT;
        *ret = n;
        return 0;
}

static void handle_channel_close(Broker *b, Conn *c, const amqp_channel_close_t *m) {
        amqp_channel_close_ok_t ok = { 0 };
        bool charge = caused_by_publish(m->class_id, m->method_id);
        int r, saved;

        b->stats.channel_closes++;
        snprintf(b->last_close, sizeof(b->last_close), "%u %.*s", m->reply_code,
                 (int) MIN(m->reply_text.len, (size_t) 200), (const char *) m->reply_text.bytes);
        /* rabbitmq-c never answers a channel.close itself. */
        errno = 0;
        r = amqp_send_method(c->amqp, CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        saved = errno;
        if (r != AMQP_STATUS_OK) {
                conn_fail_status(b, r, saved, "channel.close-ok");
                return;
        }

        b->channel_gen++; /* every tag of the dead channel is stale now */
        acks_reset(b);
        c->channel_open = false;
        assembly_reset(&b->assembly);
        requeue_unconfirmed(b, charge);
        start_reopen(b, c);
}

static void handle_method(Broker *b, Conn *c, amqp_channel_t channel, const amqp_method_t *m) {
        Assembly *a = &b->assembly;

        if (channel == 0) {
                if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
                        const amqp_connection_close_t *cl = m->decoded;
                        amqp_connection_close_ok_t ok = { 0 };

                        (void) amqp_send_method(c->amqp, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
                        conn_fail(b, reply_code_to_errno(cl->reply_code),
                                  caused_by_publish(cl->class_id, cl->method_id),
                                  "broker %s:%d closed the connection: %u %.*s", b->url.host,
                                  b->url.port, cl->reply_code, (int) cl->reply_text.len,
                                  (const char *) cl->reply_text.bytes);
                }
                /* connection.blocked and the like: not asked for, ignored */
                return;
        }
        if (channel != CHANNEL)
                return;

        switch (m->id) {
        case AMQP_BASIC_DELIVER_METHOD: {
                const amqp_basic_deliver_t *d = m->decoded;

                assembly_reset(a);
                if (consumer_from_tag(b, d->consumer_tag, &a->consumer) < 0) {
                        conn_fail(b, -EPROTO, false, "delivery for unknown consumer tag '%.*s'",
                                  (int) d->consumer_tag.len, (const char *) d->consumer_tag.bytes);
                        return;
                }
                if (d->delivery_tag == 0 || d->delivery_tag > TAG_SEQ_MASK) {
                        conn_fail(b, -EOVERFLOW, false, "delivery tag %" PRIu64 " out of range",
                                  d->delivery_tag);
                        return;
                }
                a->kind = ASM_DELIVER;
                a->delivery_tag = d->delivery_tag;
                a->redelivered = d->redelivered;
                a->exchange = bytes_dup(d->exchange);
                a->routing_key = bytes_dup(d->routing_key);
                break;
        }
        case AMQP_BASIC_RETURN_METHOD: {
                const amqp_basic_return_t *rt = m->decoded;

                assembly_reset(a);
                a->kind = ASM_RETURN;
                a->exchange = bytes_dup(rt->exchange);
                a->routing_key = bytes_dup(rt->routing_key);
                break;
        }
        case AMQP_BASIC_ACK_METHOD: {
                const amqp_basic_ack_t *ack = m->decoded;
                handle_confirm(b, ack->delivery_tag, ack->multiple, true);
                return;
        }
        case AMQP_BASIC_NACK_METHOD: {
                const amqp_basic_nack_t *nack = m->decoded;
                handle_confirm(b, nack->delivery_tag, nack->multiple, false);
                return;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
                handle_channel_close(b, c, m->decoded);
                return;
        }
        case AMQP_BASIC_CANCEL_METHOD: {
                const amqp_basic_cancel_t *cancel = m->decoded;
                size_t n;
                const char *queue = "?";

                if (consumer_from_tag(b, cancel->consumer_tag, &n) >= 0) {
                        const Item *it = &b->items[b->consumers[n]];
                        queue = it->name ? it->name : c->sn_names[it->sn];
                }
                /* The queue was deleted (or its node went away): declare it all again. */
                conn_fail(b, -ECANCELED, false, "broker cancelled the consumer of queue '%s'",
                          queue);
                return;
        }
        default:
                return;
        }

        if (!a->exchange || !a->routing_key) {
                assembly_reset(a);
                conn_fail(b, -ENOMEM, false, "out of memory");
        }
}

static void handle_header(Broker *b, Conn *c, const amqp_frame_t *f) {
        Assembly *a = &b->assembly;
        uint64_t size = f->payload.properties.body_size;

        if (a->kind == ASM_NONE || a->have_header) {
                conn_fail(b, -EPROTO, false, "unexpected content header frame");
                return;
        }
        a->have_header = true;
        a->body_size = size;
        if (assembly_copy_properties(a, f->payload.properties.decoded) < 0) {
                conn_fail(b, -ENOMEM, false, "out of memory");
                return;
        }
        if (size > b->config.max_body_size)
                a->oversized = true;
        else if (size > 0) {
                a->body = malloc((size_t) size);
                if (!a->body) {
                        conn_fail(b, -ENOMEM, false, "out of memory");
                        return;
                }
        }
        if (size == 0)
                assembly_complete(b, c);
}

static void handle_body(Broker *b, Conn *c, const amqp_frame_t *f) {
        Assembly *a = &b->assembly;
        amqp_bytes_t frag = f->payload.body_fragment;

        if (a->kind == ASM_NONE || !a->have_header || frag.len > a->body_size - a->received) {
                conn_fail(b, -EPROTO, false, "unexpected content body frame");
                return;
        }
        if (!a->oversized && frag.len > 0)
                memcpy(a->body + a->received, frag.bytes, frag.len);
        a->received += frag.len;
        if (a->received == a->body_size)
                assembly_complete(b, c);
}

static void handle_frame(Broker *b, Conn *c, const amqp_frame_t *f) {
        switch (f->frame_type) {
        case AMQP_FRAME_METHOD:
                handle_method(b, c, f->channel, &f->payload.method);
                break;
        case AMQP_FRAME_HEADER:
                if (f->channel == CHANNEL)
                        handle_header(b, c, f);
                break;
        case AMQP_FRAME_BODY:
                if (f->channel == CHANNEL)
                        handle_body(b, c, f);
                break;
        default:
                break;
        }
}

/* Reads and handles every frame rabbitmq-c has or can read without waiting
 * (rabbitmq-c's queue first, then its buffer, then the socket). */
static void drain_frames(Broker *b) {
        Conn *c = b->conn;
        const struct timeval zero = { 0 };
        unsigned budget = DRAIN_BUDGET;

        while (conn_usable(b) && b->conn == c) {
                amqp_frame_t f;
                int r, saved;

                /* A broker that never stops sending must not starve the rest
                 * of the loop: go on at the next turn. */
                if (budget-- == 0) {
                        kick(b);
                        break;
                }

                errno = 0;
                r = amqp_simple_wait_frame_noblock(c->amqp, &f, &zero);
                saved = errno;
                if (r == AMQP_STATUS_TIMEOUT)
                        break;
                if (r != AMQP_STATUS_OK) {
                        conn_fail_status(b, r, saved, "receive");
                        break;
                }
                handle_frame(b, c, &f);
                /* Everything of the frame is copied by now; give rabbitmq-c its
                 * pool memory back unless a worker owns the connection now. */
                if (!c->busy)
                        amqp_maybe_release_buffers(c->amqp);
                dispatch_done(b);
        }
}

/* Reads and handles what the broker sent, then sends the acks gathered. */
static void drain(Broker *b) {
        b->dispatching = true;
        drain_frames(b);
        b->dispatching = false;
        /* A failure closes the connection, which says so itself. */
        (void) acks_flush(b);
}

/* ---------------------------------------------------------------------------------------- */
/* Worker side: runs on a libuv thread, owns the connection it works on */

static void job_fail(Job *j, int error, const char *fmt, ...) _printf_(3, 4);
static void job_fail(Job *j, int error, const char *fmt, ...) {
        va_list ap;

        j->error = error < 0 ? error : -EIO;
        free(j->reason);
        va_start(ap, fmt);
        j->reason = strdup_vprintf(fmt, ap);
        va_end(ap);
}

/* Checks the reply of the last RPC; on failure records "what: why" in the job. */
static int job_check(Job *j, Conn *c, int saved_errno, const char *fmt, ...) _printf_(4, 5);
static int job_check(Job *j, Conn *c, int saved_errno, const char *fmt, ...) {
        amqp_rpc_reply_t reply = amqp_get_rpc_reply(c->amqp);
        _cleanup_free_ char *what = NULL;
        va_list ap;
        int r;

        if (reply.reply_type == AMQP_RESPONSE_NORMAL)
                return 0;
        va_start(ap, fmt);
        what = strdup_vprintf(fmt, ap);
        va_end(ap);
        free(j->reason);
        j->reason = NULL;
        r = describe_reply(reply, saved_errno, strna(what), &j->reason);
        j->error = r < 0 ? r : -EIO;
        if (reply.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION)
                j->broken = true;
        else if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                amqp_connection_close_ok_t ok = { 0 };
                (void) amqp_send_method(c->amqp, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
                j->broken = true;
        }
        return j->error;
}

static void conn_free(Conn *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_sn; i++)
                free(c->sn_names[i]);
        free(c->sn_names);
        free(c->reason);
        free(c);
}

static amqp_table_entry_t entry_string(const char *key, const char *value) {
        return (amqp_table_entry_t){
                .key = amqp_cstring_bytes((char *) key),
                .value = { .kind = AMQP_FIELD_KIND_UTF8,
                           .value.bytes = amqp_cstring_bytes((char *) value) },
        };
}

static amqp_table_entry_t entry_i64(const char *key, uint64_t value) {
        return (amqp_table_entry_t){
                .key = amqp_cstring_bytes((char *) key),
                .value = { .kind = AMQP_FIELD_KIND_I64,
                           .value.i64 = value > INT64_MAX ? INT64_MAX : (int64_t) value },
        };
}

static amqp_table_entry_t entry_bool(const char *key, bool value) {
        return (amqp_table_entry_t){
                .key = amqp_cstring_bytes((char *) key),
                .value = { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = value },
        };
}

static const char *item_queue(const Item *it, const Conn *c) {
        return it->name ? it->name : c->sn_names[it->sn];
}

static int worker_declare(Job *j, Conn *c, const Item *it) {
        amqp_connection_state_t a = c->amqp;
        unsigned f = it->flags;
        int saved;

        switch (it->kind) {
        case ITEM_EXCHANGE:
                errno = 0;
                (void) amqp_exchange_declare(a, CHANNEL, bytes_of(it->name), bytes_of(it->type),
                                             !!(f & BROKER_PASSIVE), !!(f & BROKER_DURABLE),
                                             !!(f & BROKER_AUTO_DELETE), !!(f & BROKER_INTERNAL),
                                             amqp_empty_table);
                saved = errno;
                return job_check(j, c, saved, "declare exchange '%s'", it->name);

        case ITEM_QUEUE: {
                amqp_table_entry_t args[7];
                amqp_table_t table = { .num_entries = 0, .entries = args };
                amqp_queue_declare_ok_t *ok;
                int r;

                if (it->dead_letter_exchange)
                        args[table.num_entries++] =
                                entry_string("x-dead-letter-exchange", it->dead_letter_exchange);
                if (it->dead_letter_routing_key)
                        args[table.num_entries++] = entry_string("x-dead-letter-routing-key",
                                                                 it->dead_letter_routing_key);
                if (it->message_ttl_ms > 0)
                        args[table.num_entries++] = entry_i64("x-message-ttl", it->message_ttl_ms);
                if (it->max_length > 0)
                        args[table.num_entries++] = entry_i64("x-max-length", it->max_length);
                if (it->queue_type)
                        args[table.num_entries++] = entry_string("x-queue-type", it->queue_type);
                if (it->single_active_consumer)
                        args[table.num_entries++] = entry_bool("x-single-active-consumer", true);
                if (it->overflow)
                        args[table.num_entries++] = entry_string("x-overflow", it->overflow);

                errno = 0;
                ok = amqp_queue_declare(a, CHANNEL, bytes_of(it->name), !!(f & BROKER_PASSIVE),
                                        !!(f & BROKER_DURABLE), !!(f & BROKER_EXCLUSIVE),
                                        !!(f & BROKER_AUTO_DELETE), table);
                saved = errno;
                if (it->name)
                        return job_check(j, c, saved, "declare queue '%s'", it->name);
                r = job_check(j, c, saved, "declare server-named queue #%zu", it->sn);
                if (r < 0)
                        return r;
                if (!ok) {
                        job_fail(j, -EPROTO, "declare server-named queue #%zu: no reply", it->sn);
                        return j->error;
                }
                c->sn_names[it->sn] = bytes_dup(ok->queue);
                if (!c->sn_names[it->sn]) {
                        job_fail(j, -ENOMEM, "out of memory");
                        return j->error;
                }
                return 0;
        }

        case ITEM_BINDING:
                errno = 0;
                (void) amqp_queue_bind(a, CHANNEL, bytes_of(item_queue(it, c)),
                                       bytes_of(it->exchange), bytes_of(it->routing_key),
                                       amqp_empty_table);
                saved = errno;
                return job_check(j, c, saved, "bind queue '%s' to exchange '%s' with key '%s'",
                                 item_queue(it, c), it->exchange, strempty(it->routing_key));

        case ITEM_CONSUMER:
                errno = 0;
                (void) amqp_basic_consume(a, CHANNEL, bytes_of(item_queue(it, c)),
                                          amqp_cstring_bytes((char *) it->tag), false,
                                          !!(f & BROKER_NO_ACK), !!(f & BROKER_CONSUME_EXCLUSIVE),
                                          amqp_empty_table);
                saved = errno;
                return job_check(j, c, saved, "consume from queue '%s'", item_queue(it, c));
        }
        return 0;
}

/* Opens channel 1 with confirms and prefetch, then declares the topology
 * (all of it after a connect, only the consumers after a channel reopen). */
static int worker_setup_channel(Job *j, Conn *c, bool full) {
        const Broker *b = j->broker;
        int r, saved;

        errno = 0;
        (void) amqp_channel_open(c->amqp, CHANNEL);
        saved = errno;
        r = job_check(j, c, saved, "open channel");
        if (r < 0)
                return r;
        errno = 0;
        (void) amqp_confirm_select(c->amqp, CHANNEL);
        saved = errno;
        r = job_check(j, c, saved, "enable publisher confirms");
        if (r < 0)
                return r;
        errno = 0;
        (void) amqp_basic_qos(c->amqp, CHANNEL, 0, b->config.prefetch, false);
        saved = errno;
        r = job_check(j, c, saved, "set prefetch %u", b->config.prefetch);
        if (r < 0)
                return r;

        for (size_t i = 0; i < b->n_items; i++) {
                if (!full && b->items[i].kind != ITEM_CONSUMER)
                        continue;
                r = worker_declare(j, c, &b->items[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Gives up a connection made on the worker: a polite connection.close when
 * the connection still works, then the socket goes. */
static void worker_abandon(Conn *c, bool polite) {
        if (!c)
                return;
        if (c->amqp) {
                if (polite) {
                        struct timeval t = usec_to_timeval(CLOSE_TIMEOUT_USEC);
                        (void) amqp_set_rpc_timeout(c->amqp, &t);
                        (void) amqp_connection_close(c->amqp, AMQP_REPLY_SUCCESS);
                }
                (void) amqp_destroy_connection(c->amqp);
        }
        conn_free(c);
}

/* rabbitmq-c turns every failed connect into AMQP_STATUS_SOCKET_ERROR and
 * reads SO_ERROR without passing it on. To say "connection refused" rather
 * than "a socket error occurred", a failed connect is tried once more here,
 * by hand, and its errno kept (0 if it now works or cannot tell). */
static int probe_connect_errno(const char *host, int port, usec_t timeout) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP };
        struct addrinfo *ai = NULL;
        char service[16];
        int err = 0;

        snprintf(service, sizeof(service), "%d", port);
        if (getaddrinfo(host, service, &hints, &ai) != 0)
                return 0;
        for (struct addrinfo *p = ai; p; p = p->ai_next) {
                struct pollfd pfd;
                socklen_t l = sizeof(err);
                int fd, r;

                fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            p->ai_protocol);
                if (fd < 0) {
                        err = errno;
                        continue;
                }
                r = connect(fd, p->ai_addr, p->ai_addrlen);
                if (r < 0 && errno == EINPROGRESS) {
                        pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
                        r = poll(&pfd, 1, (int) MIN(timeout / USEC_PER_MSEC, (usec_t) INT_MAX));
                        if (r == 0)
                                err = ETIMEDOUT;
                        else if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                                err = errno;
                } else
                        err = r < 0 ? errno : 0;
                (void) close(fd);
                if (err == 0)
                        break;
        }
        freeaddrinfo(ai);
        return err;
}

static void worker_connect(Job *j) {
        const Broker *b = j->broker;
        const struct amqp_connection_info *u = &b->url;
        struct timeval ct = usec_to_timeval(b->config.connect_timeout);
        struct timeval rt = usec_to_timeval(b->config.rpc_timeout);
        amqp_table_entry_t caps[] = {
                entry_bool("consumer_cancel_notify", true),
                entry_bool("publisher_confirms", true),
                entry_bool("basic.nack", true),
        };
        amqp_table_entry_t props[2];
        amqp_table_t props_table = { .num_entries = 2, .entries = props };
        amqp_socket_t *sock;
        amqp_rpc_reply_t reply;
        char buf[128];
        bool logged_in = false;
        Conn *c;
        int r, saved;

        c = calloc(1, sizeof(Conn));
        if (!c) {
                job_fail(j, -ENOMEM, "out of memory");
                return;
        }
        c->fd = -EBADF;
        if (b->n_server_named > 0) {
                c->sn_names = calloc(b->n_server_named, sizeof(char *));
                if (!c->sn_names) {
                        job_fail(j, -ENOMEM, "out of memory");
                        goto fail;
                }
                c->n_sn = b->n_server_named;
        }

        c->amqp = amqp_new_connection();
        if (!c->amqp) {
                job_fail(j, -ENOMEM, "out of memory");
                goto fail;
        }
        sock = u->ssl ? amqp_ssl_socket_new(c->amqp) : amqp_tcp_socket_new(c->amqp);
        if (!sock) {
                job_fail(j, -ENOMEM, "create %s socket: out of memory", u->ssl ? "TLS" : "TCP");
                goto fail;
        }
        if (u->ssl) {
                const char *ca = b->ca_file ? b->ca_file : DEFAULT_CA_BUNDLE;

                amqp_ssl_socket_set_verify_peer(sock, true);
                amqp_ssl_socket_set_verify_hostname(sock, true);
                /* OpenSSL would only say "a SSL error occurred" for a missing file. */
                if (access(ca, R_OK) < 0) {
                        saved = errno;
                        job_fail(j, -saved, "load CA bundle %s: %s", ca,
                                 errno_to_text(saved, buf, sizeof(buf)));
                        goto fail;
                }
                errno = 0;
                r = amqp_ssl_socket_set_cacert(sock, ca);
                saved = errno;
                if (r != AMQP_STATUS_OK) {
                        job_fail(j, status_to_errno(r, saved), "load CA bundle %s: %s", ca,
                                 status_to_text(r, saved, buf, sizeof(buf)));
                        goto fail;
                }
        }
        (void) amqp_set_handshake_timeout(c->amqp, &ct);
        (void) amqp_set_rpc_timeout(c->amqp, &rt);

        errno = 0;
        r = amqp_socket_open_noblock(sock, u->host, u->port, &ct);
        saved = errno;
        if ((r == AMQP_STATUS_SOCKET_ERROR || r == AMQP_STATUS_TCP_ERROR) &&
            !is_socket_errno(saved))
                saved = probe_connect_errno(u->host, u->port, b->config.connect_timeout);
        if (r != AMQP_STATUS_OK) {
                job_fail(j, status_to_errno(r, saved), "connect to %s:%d: %s", u->host, u->port,
                         status_to_text(r, saved, buf, sizeof(buf)));
                goto fail;
        }

        props[0] = entry_string("connection_name", b->connection_name);
        props[1] = (amqp_table_entry_t){
                .key = amqp_cstring_bytes((char *) "capabilities"),
                .value = { .kind = AMQP_FIELD_KIND_TABLE,
                           .value.table = { .num_entries = (int) ELEMENTSOF(caps),
                                            .entries = caps } },
        };
        errno = 0;
        reply = amqp_login_with_properties(
                c->amqp, u->vhost, 0, FRAME_MAX,
                (int) ((b->config.heartbeat + USEC_PER_SEC - 1) / USEC_PER_SEC), &props_table,
                AMQP_SASL_METHOD_PLAIN, u->user, u->password);
        saved = errno;
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
                _cleanup_free_ char *what = strdup_printf("log in to %s:%d as '%s' (vhost '%s')",
                                                          u->host, u->port, u->user, u->vhost);
                free(j->reason);
                j->reason = NULL;
                r = describe_reply(reply, saved, strna(what), &j->reason);
                j->error = r < 0 ? r : -EIO;
                goto fail;
        }
        logged_in = true;
        c->heartbeat = (unsigned) amqp_get_heartbeat(c->amqp);

        if (worker_setup_channel(j, c, true) < 0)
                goto fail;

        j->conn = c;
        return;

fail:
        /* Polite only when the broker still talks to us: after a library error
         * (timeout, socket) or its connection.close there is no one to tell. */
        worker_abandon(c, logged_in && !j->broken);
}

static void on_work(uv_work_t *req) {
        Job *j = req->data;

        switch (j->kind) {
        case JOB_CONNECT:
                worker_connect(j);
                break;
        case JOB_REOPEN:
                (void) worker_setup_channel(j, j->conn, false);
                break;
        case JOB_CLOSE: {
                struct timeval t = usec_to_timeval(CLOSE_TIMEOUT_USEC);
                (void) amqp_set_rpc_timeout(j->amqp, &t);
                (void) amqp_connection_close(j->amqp, AMQP_REPLY_SUCCESS);
                (void) amqp_destroy_connection(j->amqp);
                j->amqp = NULL;
                break;
        }
        }
}

/* ---------------------------------------------------------------------------------------- */
/* Loop side: connection life cycle */

static void on_after_work(uv_work_t *req, int status);
static void on_heartbeat_timer(uv_timer_t *t);
static void maybe_finish(Broker *b);

static Job *job_new(Broker *b, JobKind kind) {
        Job *j = calloc(1, sizeof(Job));

        if (!j)
                return NULL;
        j->broker = b;
        j->kind = kind;
        j->work.data = j;
        return j;
}

static void job_free(Job *j) {
        if (!j)
                return;
        free(j->reason);
        free(j);
}

static int job_queue(Broker *b, Job *j) {
        int r = uv_queue_work(b->loop, &j->work, on_work, on_after_work);
        if (r < 0)
                return r;
        b->n_jobs++;
        if (j->kind != JOB_CLOSE)
                b->job = j;
        return 0;
}

static void on_conn_poll_closed(uv_handle_t *h) {
        Conn *c = h->data;
        Broker *b = c->broker;

        if (c->fd >= 0)
                (void) close(c->fd);
        conn_free(c);
        b->n_handles--;
        maybe_finish(b);
}

/* Lets go of a connection the loop owns. The poll handle is closed before
 * rabbitmq-c closes its socket; our dup() goes once the handle is closed. */
static void conn_release(Broker *b, Conn *c, bool polite) {
        amqp_connection_state_t amqp = TAKE_PTR(c->amqp);

        if (c->poll_init)
                uv_close((uv_handle_t *) &c->poll, on_conn_poll_closed);
        else {
                if (c->fd >= 0)
                        (void) close(c->fd);
                conn_free(c);
        }
        if (!amqp)
                return;
        if (polite) {
                Job *j = job_new(b, JOB_CLOSE);
                if (j) {
                        j->amqp = amqp;
                        if (job_queue(b, j) >= 0)
                                return;
                        job_free(j);
                }
        }
        (void) amqp_destroy_connection(amqp);
}

static usec_t backoff_delay(Broker *b) {
        usec_t min = b->config.backoff_min, max = MAX(b->config.backoff_max, min);
        usec_t cap = min, floor = min / 2;
        uint64_t rnd;

        for (unsigned i = 0; i < b->backoff_attempt && cap < max; i++)
                cap = cap > max / 2 ? max : cap * 2;
        cap = MIN(cap, max);
        if (cap <= floor)
                return floor;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t) sizeof(rnd))
                rnd = (uint64_t) random() << 31 ^ (uint64_t) random();
        return floor + rnd % (cap - floor + 1);
}

static void on_reconnect_timer(uv_timer_t *t);

static void schedule_reconnect(Broker *b) {
        usec_t delay;

        if (b->closing || !b->config.reconnect)
                return;
        delay = backoff_delay(b);
        b->backoff_attempt++;
        (void) uv_timer_start(&b->reconnect_timer, on_reconnect_timer,
                              (delay + USEC_PER_MSEC - 1) / USEC_PER_MSEC, 0);
}

static void connect_failed(Broker *b, int error, const char *reason) {
        b->stats.connect_failures++;
        set_state(b, BROKER_DISCONNECTED, error, reason);
        schedule_reconnect(b);
}

static void start_connect(Broker *b) {
        Job *j;
        int r;

        set_state(b, BROKER_CONNECTING, 0, NULL);
        if (b->closing)
                return;
        j = job_new(b, JOB_CONNECT);
        if (!j) {
                connect_failed(b, -ENOMEM, "out of memory");
                return;
        }
        r = job_queue(b, j);
        if (r < 0) {
                _cleanup_free_ char *reason = strdup_printf("start connect: %s", uv_strerror(r));
                job_free(j);
                connect_failed(b, r, strna(reason));
        }
}

static void on_reconnect_timer(uv_timer_t *t) {
        Broker *b = t->data;

        if (!b->closing && !b->conn && !b->job)
                start_connect(b);
}

static void start_reopen(Broker *b, Conn *c) {
        Job *j = job_new(b, JOB_REOPEN);
        int r;

        if (!j) {
                conn_fail(b, -ENOMEM, false, "reopen channel: out of memory");
                return;
        }
        j->conn = c;
        poll_set_events(c, 0);
        c->busy = true;
        r = job_queue(b, j);
        if (r < 0) {
                c->busy = false;
                job_free(j);
                conn_fail(b, r, false, "reopen channel: %s", uv_strerror(r));
        }
}

/* A connection from the worker becomes the loop's. */
static int conn_takeover(Broker *b, Conn *c) {
        int r;

        c->broker = b;
        c->fd = fcntl(amqp_get_sockfd(c->amqp), F_DUPFD_CLOEXEC, 3);
        if (c->fd < 0)
                return -errno;
        r = uv_poll_init(b->loop, &c->poll, c->fd);
        if (r < 0)
                return r;
        c->poll.data = c;
        c->poll_init = true;
        b->n_handles++;
        r = uv_poll_start(&c->poll, UV_READABLE, on_poll);
        if (r < 0)
                return r;
        c->poll_events = UV_READABLE;
        c->channel_open = true;
        if (c->heartbeat > 0) {
                uint64_t ms = MAX((uint64_t) c->heartbeat * 1000 / 2, 100);
                (void) uv_timer_start(&b->heartbeat_timer, on_heartbeat_timer, ms, ms);
        }
        return 0;
}

/* Tears down a failed connection and schedules the next attempt. */
static void connection_lost(Broker *b) {
        Conn *c = TAKE_PTR(b->conn);
        _cleanup_free_ char *reason = TAKE_PTR(c->reason);
        int error = c->error;
        bool charge = c->charge;

        (void) uv_timer_stop(&b->heartbeat_timer);
        assembly_reset(&b->assembly);
        b->channel_gen++;
        acks_reset(b);
        conn_release(b, c, false);
        requeue_unconfirmed(b, charge);
        set_state(b, BROKER_DISCONNECTED, error, reason ? reason : "out of memory");
        schedule_reconnect(b);
}

static void close_step(Broker *b);

static void on_after_work(uv_work_t *req, int status) {
        Job *j = req->data;
        Broker *b = j->broker;
        Conn *c = TAKE_PTR(j->conn);
        int r;

        b->n_jobs--;
        if (b->job == j)
                b->job = NULL;

        if (status == UV_ECANCELED && j->error == 0)
                job_fail(j, -ECANCELED, "cancelled");

        switch (j->kind) {
        case JOB_CLOSE:
                if (j->amqp) /* cancelled before it ran */
                        (void) amqp_destroy_connection(j->amqp);
                break;

        case JOB_CONNECT:
                if (b->closing) {
                        if (c) {
                                c->broker = b;
                                conn_release(b, c, true);
                        }
                        break;
                }
                if (j->error < 0 || !c) {
                        connect_failed(b, j->error < 0 ? j->error : -EIO,
                                       j->reason ? j->reason : "out of memory");
                        break;
                }
                b->conn = c;
                r = conn_takeover(b, c);
                if (r < 0) {
                        _cleanup_free_ char *reason =
                                strdup_printf("connected to %s:%d, but cannot watch the socket: %s",
                                              b->url.host, b->url.port, uv_strerror(r));
                        b->conn = NULL;
                        conn_release(b, c, true);
                        connect_failed(b, r, strna(reason));
                        break;
                }
                b->channel_gen++;
                acks_reset(b);
                b->next_seq = 1;
                b->backoff_attempt = 0;
                b->stats.connects++;
                set_state(b, BROKER_CONNECTED, 0, NULL);
                pump(b); /* write what waited, read what the declarations left queued */
                break;

        case JOB_REOPEN:
                c->busy = false;
                if (b->closing) {
                        if (b->conn == c) {
                                b->conn = NULL;
                                conn_release(b, c, j->error == 0);
                        }
                        break;
                }
                if (j->error < 0) {
                        c->failed = true;
                        c->error = j->error;
                        c->reason = strdup_printf("reopen the channel the broker closed: %s",
                                                  strna(j->reason));
                } else {
                        c->channel_open = true;
                        b->next_seq = 1;
                        poll_set_events(c, UV_READABLE);
                }
                pump(b);
                break;
        }

        job_free(j);
        maybe_finish(b);
}

static void on_poll(uv_poll_t *h, int status, int events) {
        Conn *c = h->data;
        Broker *b = c->broker;

        if (b->conn != c || c->busy)
                return;
        if (status < 0) {
                /* Let rabbitmq-c read the error first: its text is better. */
                drain(b);
                conn_fail(b, status, false, "connection to %s:%d lost: %s", b->url.host,
                          b->url.port, uv_strerror(status));
        } else if (events & UV_WRITABLE)
                flush(b, true);
        pump(b);
}

static void on_heartbeat_timer(uv_timer_t *t) {
        pump(t->data);
}

static void on_idle(uv_idle_t *h) {
        Broker *b = h->data;

        (void) uv_idle_stop(h);
        pump(b);
}

/* The one driver: everything that reads, tears down or calls back runs here,
 * from a uv callback, never nested in a broker_*() call. */
static void pump(Broker *b) {
        for (;;) {
                if (b->closing) {
                        close_step(b);
                        return;
                }
                if (b->conn && b->conn->failed && !b->conn->busy) {
                        connection_lost(b);
                        dispatch_done(b);
                        continue;
                }
                if (b->started && b->state == BROKER_IDLE) {
                        start_connect(b);
                        continue;
                }
                if (conn_usable(b)) {
                        flush(b, false);
                        drain(b);
                }
                dispatch_done(b);
                if (b->closing || (b->conn && b->conn->failed && !b->conn->busy))
                        continue;
                return;
        }
}

/* ---------------------------------------------------------------------------------------- */
/* Closing */

static void on_handle_closed(uv_handle_t *h) {
        Broker *b = h->data;

        b->n_handles--;
        maybe_finish(b);
}

static void close_step(Broker *b) {
        if (b->close_started)
                return;
        b->close_started = true;

        (void) uv_timer_stop(&b->heartbeat_timer);
        (void) uv_timer_stop(&b->reconnect_timer);
        uv_close((uv_handle_t *) &b->idle, on_handle_closed);
        uv_close((uv_handle_t *) &b->heartbeat_timer, on_handle_closed);
        uv_close((uv_handle_t *) &b->reconnect_timer, on_handle_closed);

        /* A job that has not started yet can be cancelled; a running one is
         * waited for, and its after-work callback lets go of what it made. */
        if (b->job)
                (void) uv_cancel((uv_req_t *) &b->job->work);
        if (b->conn && !b->conn->busy) {
                Conn *c = TAKE_PTR(b->conn);
                conn_release(b, c, !c->failed && c->channel_open);
        }
}

static void items_free(Broker *b) {
        for (size_t i = 0; i < b->n_items; i++) {
                Item *it = &b->items[i];
                free(it->name);
                free(it->type);
                free(it->exchange);
                free(it->routing_key);
                free(it->dead_letter_exchange);
                free(it->dead_letter_routing_key);
                free(it->queue_type);
                free(it->overflow);
        }
        free(b->items);
        free(b->consumers);
}

static void maybe_finish(Broker *b) {
        void (*cb)(void *userdata);
        void *userdata;
        Outgoing *e;

        if (!b->close_started || b->n_handles > 0 || b->n_jobs > 0)
                return;

        while ((e = b->unconfirmed.head))
                outgoing_finish(b, e, BROKER_DROPPED);
        while ((e = b->unsent.head))
                outgoing_finish(b, e, BROKER_DROPPED);
        dispatch_done(b);
        /* A callback may have published (refused: -ESHUTDOWN); nothing new is pending. */
        assert(!b->unsent.head && !b->unconfirmed.head && !b->done.head);

        cb = b->closed_cb;
        userdata = b->closed_userdata;
        assembly_reset(&b->assembly);
        items_free(b);
        free(b->ooo);
        free(b->ca_file);
        free(b->connection_name);
        free(b->url_buf);
        free(b);
        if (cb)
                cb(userdata);
}

void broker_close(Broker *b, void (*closed_cb)(void *userdata), void *userdata) {
        if (!b || b->closing)
                return;
        /* What was handled is acked before the connection goes. */
        (void) acks_flush(b); /* a failure closes the connection anyway */
        b->closing = true;
        b->state = BROKER_CLOSED;
        b->closed_cb = closed_cb;
        b->closed_userdata = userdata;
        /* The work happens on the next loop turn, outside any callback of ours. */
        (void) uv_idle_start(&b->idle, on_idle);
}

/* ---------------------------------------------------------------------------------------- */
/* Public API */

void broker_config_init(BrokerConfig *c) {
        assert(c);
        *c = (BrokerConfig){
                .heartbeat = 10 * USEC_PER_SEC,
                .connect_timeout = 5 * USEC_PER_SEC,
                .rpc_timeout = 10 * USEC_PER_SEC,
                .prefetch = 64,
                .backoff_min = 100 * USEC_PER_MSEC,
                .backoff_max = 30 * USEC_PER_SEC,
                .max_pending = 10000,
                .max_pending_bytes = 16 * 1024 * 1024,
                .max_body_size = BROKER_DEFAULT_MAX_BODY_SIZE,
                .reconnect = true,
        };
}

static int strdup_opt(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static void broker_free_unstarted(Broker *b) {
        items_free(b);
        free(b->ooo);
        free(b->ca_file);
        free(b->connection_name);
        free(b->url_buf);
        free(b);
}

int broker_new(uv_loop_t *loop, const BrokerConfig *config, BrokerStateFn state_cb, void *userdata,
               Broker **ret) {
        Broker *b;
        int r;

        assert(loop);
        assert(config);
        assert(ret);

        if (isempty(config->url) || config->connect_timeout == 0 || config->rpc_timeout == 0 ||
            config->heartbeat > 65535 * USEC_PER_SEC || config->backoff_min == 0 ||
            config->backoff_max < config->backoff_min)
                return -EINVAL;

        b = calloc(1, sizeof(Broker));
        if (!b)
                return -ENOMEM;
        b->loop = loop;
        b->config = *config;
        b->state_cb = state_cb;
        b->userdata = userdata;
        b->state = BROKER_IDLE;

        if (strdup_opt(config->ca_file, &b->ca_file) < 0 ||
            strdup_opt(config->connection_name ? config->connection_name
                                               : program_invocation_short_name,
                       &b->connection_name) < 0 ||
            strdup_opt(config->url, &b->url_buf) < 0) {
                broker_free_unstarted(b);
                return -ENOMEM;
        }
        b->config.url = NULL; /* not kept; the parsed form is */
        b->config.ca_file = b->ca_file;
        b->config.connection_name = b->connection_name;

        /* amqp_parse_url() writes into the string and percent-decodes the
         * vhost (%2Fbaton → /baton). An empty vhost ("amqp://host/") cannot
         * exist on RabbitMQ: refuse it now rather than at every login. */
        amqp_default_connection_info(&b->url);
        r = amqp_parse_url(b->url_buf, &b->url);
        if (r != AMQP_STATUS_OK || isempty(b->url.host) || isempty(b->url.vhost) ||
            b->url.port <= 0 || b->url.port > 65535) {
                broker_free_unstarted(b);
                return -EINVAL;
        }

        (void) uv_idle_init(loop, &b->idle);
        (void) uv_timer_init(loop, &b->heartbeat_timer);
        (void) uv_timer_init(loop, &b->reconnect_timer);
        b->idle.data = b->heartbeat_timer.data = b->reconnect_timer.data = b;
        b->n_handles = 3;

        *ret = b;
        return 0;
}

static int item_add(Broker *b, Item **ret) {
        Item *n;

        if (b->started || b->closing)
                return -EBUSY;
        n = reallocarray(b->items, b->n_items + 1, sizeof(Item));
        if (!n)
                return -ENOMEM;
        b->items = n;
        *ret = &b->items[b->n_items];
        **ret = (Item){ 0 };
        return 0;
}

static void item_clear(Item *it) {
        free(it->name);
        free(it->type);
        free(it->exchange);
        free(it->routing_key);
        free(it->dead_letter_exchange);
        free(it->dead_letter_routing_key);
        free(it->queue_type);
        free(it->overflow);
        *it = (Item){ 0 };
}

/* A queue reference: a name, or NULL / "" for the last server-named queue. */
static int queue_ref(Broker *b, const char *queue, Item *it) {
        if (isempty(queue)) {
                if (b->n_server_named == 0)
                        return -EINVAL;
                it->sn = b->n_server_named - 1;
                return 0;
        }
        if (!shortstr_ok(queue))
                return -EINVAL;
        it->name = strdup(queue);
        return it->name ? 0 : -ENOMEM;
}

int broker_add_exchange(Broker *b, const char *name, const char *type, unsigned flags) {
        Item *it;
        int r;

        assert(b);
        if (isempty(name) || isempty(type) || !shortstr_ok(name) || !shortstr_ok(type) ||
            (flags &
             ~(unsigned) (BROKER_DURABLE | BROKER_PASSIVE | BROKER_AUTO_DELETE | BROKER_INTERNAL)))
                return -EINVAL;
        r = item_add(b, &it);
        if (r < 0)
                return r;
        it->kind = ITEM_EXCHANGE;
        it->flags = flags;
        it->name = strdup(name);
        it->type = strdup(type);
        if (!it->name || !it->type) {
                item_clear(it);
                return -ENOMEM;
        }
        b->n_items++;
        return 0;
}

int broker_add_queue(Broker *b, const char *name, unsigned flags, const BrokerQueueArgs *args) {
        Item *it;
        int r;

        assert(b);
        if (!shortstr_ok(name) || (flags & ~(unsigned) (BROKER_DURABLE | BROKER_PASSIVE |
                                                        BROKER_EXCLUSIVE | BROKER_AUTO_DELETE)))
                return -EINVAL;
        if (args && (!shortstr_ok(args->dead_letter_exchange) ||
                     !shortstr_ok(args->dead_letter_routing_key) ||
                     !shortstr_ok(args->queue_type) || !shortstr_ok(args->overflow)))
                return -EINVAL;
        r = item_add(b, &it);
        if (r < 0)
                return r;
        it->kind = ITEM_QUEUE;
        it->flags = flags;
        if (!isempty(name))
                r = strdup_opt(name, &it->name);
        if (r >= 0 && args) {
                it->message_ttl_ms = args->message_ttl_ms;
                it->max_length = args->max_length;
                it->single_active_consumer = args->single_active_consumer;
                if (strdup_opt(args->dead_letter_exchange, &it->dead_letter_exchange) < 0 ||
                    strdup_opt(args->dead_letter_routing_key, &it->dead_letter_routing_key) < 0 ||
                    strdup_opt(args->queue_type, &it->queue_type) < 0 ||
                    strdup_opt(args->overflow, &it->overflow) < 0)
                        r = -ENOMEM;
        }
        if (r < 0) {
                item_clear(it);
                return r;
        }
        if (isempty(name))
                it->sn = b->n_server_named++;
        b->n_items++;
        return 0;
}

int broker_add_binding(Broker *b, const char *queue, const char *exchange,
                       const char *routing_key) {
        Item *it;
        int r;

        assert(b);
        /* The default exchange ("") cannot be bound to. */
        if (isempty(exchange) || !shortstr_ok(exchange) || !shortstr_ok(routing_key))
                return -EINVAL;
        r = item_add(b, &it);
        if (r < 0)
                return r;
        it->kind = ITEM_BINDING;
        r = queue_ref(b, queue, it);
        if (r >= 0)
                r = strdup_opt(exchange, &it->exchange);
        if (r >= 0)
                r = strdup_opt(strempty(routing_key), &it->routing_key);
        if (r < 0) {
                item_clear(it);
                return r;
        }
        b->n_items++;
        return 0;
}

int broker_add_consumer(Broker *b, const char *queue, unsigned flags, BrokerDeliverFn fn,
                        void *userdata) {
        size_t *consumers;
        Item *it;
        int r;

        assert(b);
        if (!fn || (flags & ~(unsigned) (BROKER_NO_ACK | BROKER_CONSUME_EXCLUSIVE)))
                return -EINVAL;
        r = item_add(b, &it);
        if (r < 0)
                return r;
        it->kind = ITEM_CONSUMER;
        it->flags = flags;
        it->fn = fn;
        it->userdata = userdata;
        snprintf(it->tag, sizeof(it->tag), CONSUMER_TAG_PREFIX "%zu", b->n_consumers);
        r = queue_ref(b, queue, it);
        if (r < 0) {
                item_clear(it);
                return r;
        }
        consumers = reallocarray(b->consumers, b->n_consumers + 1, sizeof(size_t));
        if (!consumers) {
                item_clear(it);
                return -ENOMEM;
        }
        b->consumers = consumers;
        b->consumers[b->n_consumers++] = b->n_items;
        b->n_items++;
        return 0;
}

int broker_start(Broker *b) {
        assert(b);
        if (b->closing)
                return -ESHUTDOWN;
        if (b->started)
                return -EBUSY;
        b->started = true;
        kick(b); /* CONNECTING is reported from the loop */
        return 0;
}

/* Makes room for `need` more bytes and one more entry by dropping the oldest
 * droppable entries, or fails without dropping anything. */
static int make_room(Broker *b, size_t need) {
        size_t max_n = b->config.max_pending ? b->config.max_pending : SIZE_MAX;
        size_t max_bytes = b->config.max_pending_bytes ? b->config.max_pending_bytes : SIZE_MAX;
        size_t n = pending_n(b), bytes = pending_bytes(b), victims = 0;
        OutList *lists[] = { &b->unconfirmed, &b->unsent };

        if (need > max_bytes)
                return -EMSGSIZE;

        /* Oldest first: the unconfirmed entries were all written before any unsent one. */
        for (size_t l = 0; l < ELEMENTSOF(lists) && (n >= max_n || bytes > max_bytes - need); l++)
                for (Outgoing *e = lists[l]->head; e && (n >= max_n || bytes > max_bytes - need);
                     e = e->next)
                        if (e->flags & BROKER_PUBLISH_DROPPABLE) {
                                n--;
                                bytes -= e->bytes;
                                victims++;
                        }
        if (n >= max_n || bytes > max_bytes - need)
                return -ENOBUFS;

        for (size_t l = 0; l < ELEMENTSOF(lists) && victims > 0; l++) {
                Outgoing *e, *next;
                for (e = lists[l]->head; e && victims > 0; e = next) {
                        next = e->next;
                        if (e->flags & BROKER_PUBLISH_DROPPABLE) {
                                outgoing_finish(b, e, BROKER_DROPPED);
                                victims--;
                        }
                }
        }
        return 0;
}

int broker_publish(Broker *b, const BrokerMessage *m, unsigned flags, BrokerConfirmFn fn,
                   void *userdata) {
        Outgoing *e;
        int r;

        assert(b);
        assert(m);

        if (b->closing)
                return -ESHUTDOWN;
        if (flags & ~(unsigned) (BROKER_PUBLISH_MANDATORY | BROKER_PUBLISH_DROPPABLE |
                                 BROKER_PUBLISH_NO_RETRY))
                return -EINVAL;
        r = outgoing_new(m, flags, fn, userdata, &e);
        if (r < 0)
                return r;
        r = make_room(b, e->bytes);
        if (r < 0) {
                free(e);
                return r;
        }
        outlist_append(&b->unsent, e);
        flush(b, false);
        kick(b); /* drain what the write pulled in, and call back for anything dropped */
        return 0;
}

/* A new channel numbers its deliveries from 1 again; acks gathered for the
 * old one are void (the broker requeued what they were for). */
static void acks_reset(Broker *b) {
        b->settled_upto = 0;
        b->ack_pending = 0;
        b->n_ooo = 0;
}

/* Sends the gathered ack, if any. */
static int acks_flush(Broker *b) {
        int r, saved;

        if (b->ack_pending == 0 || !conn_usable(b))
                return 0;
        errno = 0;
        r = amqp_basic_ack(b->conn->amqp, CHANNEL, b->ack_pending, true);
        saved = errno;
        b->ack_pending = 0;
        if (r != AMQP_STATUS_OK) {
                conn_fail_status(b, r, saved, "ack");
                r = status_to_errno(r, saved);
                return r < 0 ? r : -EIO;
        }
        kick(b);
        return 0;
}

/* `seq` is settled: moves settled_upto over it and over what was settled
 * out of order just above it, or remembers it as out of order. */
static void acks_settled(Broker *b, uint64_t seq) {
        if (seq != b->settled_upto + 1) {
                size_t i = b->n_ooo;

                /* At most the prefetch window; beyond it, forgotten: acks are then
                 * sent one by one, which is only slower. */
                if (b->n_ooo >= 4096)
                        return;
                if (!b->ooo) {
                        b->ooo = calloc(4096, sizeof(uint64_t));
                        if (!b->ooo)
                                return;
                }
                while (i > 0 && b->ooo[i - 1] > seq) {
                        b->ooo[i] = b->ooo[i - 1];
                        i--;
                }
                b->ooo[i] = seq;
                b->n_ooo++;
                return;
        }
        b->settled_upto = seq;
        while (b->n_ooo > 0 && b->ooo[0] == b->settled_upto + 1) {
                b->settled_upto++;
                memmove(b->ooo, b->ooo + 1, (b->n_ooo - 1) * sizeof(uint64_t));
                b->n_ooo--;
        }
}

static int settle(Broker *b, uint64_t tag, bool ack, bool requeue) {
        uint64_t seq = tag & TAG_SEQ_MASK;
        int r, saved;

        assert(b);
        if (tag == 0 || seq == 0)
                return -EINVAL;
        if (!conn_usable(b) || (tag >> TAG_SEQ_BITS) != (b->channel_gen & TAG_GEN_MASK))
                return -ESTALE;
        if (ack && seq == b->settled_upto + 1) {
                /* In order: gathered (while a read is handled), sent at its end. */
                acks_settled(b, seq);
                b->ack_pending = seq;
                b->stats.acked++;
                return b->dispatching ? 0 : acks_flush(b);
        }
        /* Out of order, or a reject: what is gathered goes first. */
        r = acks_flush(b);
        if (r < 0)
                return r;
        errno = 0;
        r = ack ? amqp_basic_ack(b->conn->amqp, CHANNEL, seq, false)
                : amqp_basic_reject(b->conn->amqp, CHANNEL, seq, requeue);
        saved = errno;
        if (r == AMQP_STATUS_OK)
                acks_settled(b, seq);
        if (r != AMQP_STATUS_OK) {
                conn_fail_status(b, r, saved, ack ? "ack" : "reject");
                r = status_to_errno(r, saved);
                return r < 0 ? r : -EIO;
        }
        if (ack)
                b->stats.acked++;
        else
                b->stats.rejected++;
        kick(b);
        return 0;
}

int broker_ack(Broker *b, uint64_t delivery_tag) {
        return settle(b, delivery_tag, true, false);
}

int broker_reject(Broker *b, uint64_t delivery_tag, bool requeue) {
        return settle(b, delivery_tag, false, requeue);
}

BrokerState broker_get_state(const Broker *b) {
        assert(b);
        return b->state;
}

int broker_get_error(const Broker *b) {
        assert(b);
        return b->error;
}

void broker_get_stats(const Broker *b, BrokerStats *ret) {
        assert(b);
        assert(ret);
        *ret = b->stats;
        ret->pending = pending_n(b);
        ret->pending_bytes = pending_bytes(b);
}

const char *broker_get_user(const Broker *b) {
        assert(b);
        return b->url.user;
}

const char *broker_get_vhost(const Broker *b) {
        assert(b);
        return b->url.vhost;
}

const char *broker_get_server_named_queue(const Broker *b, size_t n) {
        assert(b);
        if (b->state != BROKER_CONNECTED || !b->conn || n >= b->conn->n_sn)
                return NULL;
        return b->conn->sn_names[n];
}

const char *broker_last_channel_close(const Broker *b) {
        return b->last_close[0] ? b->last_close : NULL;
}
