/* SPDX-License-Identifier: MIT */
/* The one place rabbitmq-c is used: an AMQP 0-9-1 client bridged into a
 * uv_loop_t. Topology is declared as data before start and re-declared on
 * every (re)connect; publishes are confirmed and survive reconnects; deliveries
 * arrive as whole messages through callbacks. All calls are made on the loop
 * thread. Errors are returned as -errno. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "macro.h"

typedef struct Broker Broker;

typedef enum BrokerState {
        BROKER_IDLE,         /* created, not started */
        BROKER_CONNECTING,   /* connect, login and declarations under way */
        BROKER_CONNECTED,    /* topology declared, consumers running */
        BROKER_DISCONNECTED, /* lost; a reconnect is scheduled (or not, see BrokerConfig.reconnect) */
        BROKER_CLOSED,       /* broker_close() called */
        _BROKER_STATE_MAX,
        _BROKER_STATE_INVALID = -EINVAL,
} BrokerState;

const char *broker_state_to_string(BrokerState s) _pure_;
BrokerState broker_state_from_string(const char *s) _pure_;

/* Outcome of one publish, reported once through its BrokerConfirmFn. */
typedef enum BrokerOutcome {
        BROKER_CONFIRMED, /* the broker took responsibility (publisher confirm ack) */
        BROKER_NACKED,    /* the broker refused it (confirm nack) */
        BROKER_RETURNED,  /* mandatory and unroutable (basic.return before the ack) */
        BROKER_DROPPED,   /* never confirmed: buffer overflow, too many attempts, or closed */
        _BROKER_OUTCOME_MAX,
        _BROKER_OUTCOME_INVALID = -EINVAL,
} BrokerOutcome;

const char *broker_outcome_to_string(BrokerOutcome o) _pure_;
BrokerOutcome broker_outcome_from_string(const char *s) _pure_;

/* A string-valued entry of the AMQP headers table. */
typedef struct BrokerHeader {
        const char *key;
        const char *value;
} BrokerHeader;

/* A message to publish, or one delivered. Every pointer may be NULL (absent
 * property). For deliveries all memory belongs to the broker and is valid only
 * during the callback: copy what you keep. */
typedef struct BrokerMessage {
        const char *exchange;    /* "" = default exchange */
        const char *routing_key; /* NULL = "" */

        const char *message_id;
        const char *type;
        const char *content_type;
        const char *reply_to;
        const char *correlation_id;
        const char *user_id;
        const char *expiration; /* milliseconds, decimal string */
        uint64_t timestamp;     /* AMQP timestamp: seconds since the epoch; 0 = absent */
        bool persistent;        /* delivery_mode 2 */
        const BrokerHeader *headers;
        size_t n_headers;

        const void *body;
        size_t body_len;

        /* deliveries only */
        /* Larger than max_body_size: not read, already rejected (dead-lettered);
         * body is "" and body_len its announced size, delivery_tag 0. A decoder
         * refuses it for its size, and the consumer counts and logs that. */
        bool oversized;
        uint64_t delivery_tag; /* opaque; see broker_ack() */
        bool redelivered;
        const char *queue; /* the queue this consumer was registered on */
} BrokerMessage;

/* Flags for broker_add_exchange() and broker_add_queue(). */
enum {
        BROKER_DURABLE = 1u << 0,
        BROKER_PASSIVE = 1u << 1, /* only check that it exists */
        BROKER_EXCLUSIVE = 1u << 2,
        BROKER_AUTO_DELETE = 1u << 3,
        BROKER_INTERNAL = 1u << 4,
};

/* Flags for broker_add_consumer(). */
enum {
        BROKER_NO_ACK = 1u << 0, /* required for "amq.rabbitmq.reply-to" */
        BROKER_CONSUME_EXCLUSIVE = 1u << 1,
};

/* Flags for broker_publish(). */
enum {
        BROKER_PUBLISH_MANDATORY = 1u << 0, /* unroutable → BROKER_RETURNED */
        BROKER_PUBLISH_DROPPABLE = 1u << 1, /* dropped first when the outgoing buffer is full */
        BROKER_PUBLISH_NO_RETRY = 1u << 2,  /* not re-sent after a reconnect (e.g. RPC replies) */
};

typedef struct BrokerQueueArgs {
        const char *dead_letter_exchange; /* x-dead-letter-exchange */
        const char *dead_letter_routing_key;
        uint64_t message_ttl_ms; /* x-message-ttl; 0 = none */
        uint64_t max_length;     /* x-max-length; 0 = none */
        const char *queue_type;  /* x-queue-type ("classic", "quorum"); NULL = default */
        bool single_active_consumer;
        const char *overflow; /* x-overflow ("drop-head", "reject-publish", "reject-publish-dlx") */
} BrokerQueueArgs;

typedef struct BrokerConfig {
        const char *url;        /* amqp[s]://user:pass@host:port/vhost (rabbitmq-c URL rules) */
        const char *ca_file;    /* amqps: CA bundle; hostname verification stays on */
        usec_t heartbeat;       /* negotiated AMQP heartbeat; 0 = off. Whole seconds. */
        usec_t connect_timeout; /* TCP connect + AMQP handshake + login */
        usec_t rpc_timeout;     /* every synchronous AMQP method */
        uint16_t prefetch;      /* basic.qos on the consuming channel; 0 = unlimited */
        const char *connection_name; /* client property, shown by rabbitmqctl */
        usec_t backoff_min;          /* first reconnect delay */
        usec_t backoff_max;          /* cap; delays double up to it, with full jitter */
        size_t max_pending; /* messages buffered while unconfirmed or disconnected; 0 = no limit */
        size_t max_pending_bytes; /* 0 = no limit */
        bool reconnect;           /* false: one attempt only (batonctl) */
        /* A delivery whose content header announces a larger body is rejected
         * (dead-lettered) unread: nothing is allocated for it. */
        size_t max_body_size;
} BrokerConfig;

/* Defaults: heartbeat 10s, connect_timeout 5s, rpc_timeout 10s, prefetch 64,
 * backoff 100ms..30s, max_pending 10000, max_pending_bytes 16 MiB, reconnect,
 * max_body_size BROKER_DEFAULT_MAX_BODY_SIZE. */
#define BROKER_DEFAULT_MAX_BODY_SIZE (4u * 1024u * 1024u)
void broker_config_init(BrokerConfig *c);

typedef struct BrokerStats {
        uint64_t connects; /* successful connects (1 + reconnects) */
        uint64_t connect_failures;
        uint64_t published; /* written to the socket, counting re-sends */
        uint64_t confirmed;
        uint64_t nacked;
        uint64_t returned;
        uint64_t oversized; /* deliveries rejected unread for max_body_size */
        uint64_t dropped;
        uint64_t delivered;
        uint64_t acked;
        uint64_t rejected;
        size_t pending;          /* buffered now: unsent + sent-but-unconfirmed */
        size_t pending_bytes;    /* body plus property and header strings of those */
        uint64_t channel_closes; /* channels the broker closed (each one reopened) */
} BrokerStats;

/* Called after every state change. On BROKER_CONNECTED the topology is declared
 * and every consumer is running. `reason` is set for DISCONNECTED (what failed,
 * with the broker's reply text where there was one), NULL otherwise. Changes
 * are reported from the loop, never from inside a broker_*() call: the first
 * CONNECTING comes on the loop turn after broker_start(). CLOSED is not
 * reported here; broker_close()'s closed_cb is. */
typedef void (*BrokerStateFn)(Broker *b, BrokerState state, const char *reason, void *userdata);

/* One delivered message. Unless the consumer is BROKER_NO_ACK, the callee must
 * call broker_ack() or broker_reject() for m->delivery_tag, now or later. For a
 * BROKER_NO_ACK consumer the delivery_tag is 0. */
typedef void (*BrokerDeliverFn)(Broker *b, const BrokerMessage *m, void *userdata);

/* Final outcome of one publish. Called exactly once per accepted publish
 * (also with BROKER_DROPPED when the broker is closed with it still pending). */
typedef void (*BrokerConfirmFn)(Broker *b, BrokerOutcome outcome, void *userdata);

int broker_new(uv_loop_t *loop, const BrokerConfig *config, BrokerStateFn state_cb, void *userdata,
               Broker **ret);

/* Topology, declared in the order given on every connect. Only before
 * broker_start() (-EBUSY after). A queue name of NULL or "" asks the broker
 * for a server-named queue; a binding or consumer with queue NULL or ""
 * refers to the most recently added server-named queue. */
int broker_add_exchange(Broker *b, const char *name, const char *type, unsigned flags);
int broker_add_queue(Broker *b, const char *name, unsigned flags, const BrokerQueueArgs *args);
int broker_add_binding(Broker *b, const char *queue, const char *exchange, const char *routing_key);
int broker_add_consumer(Broker *b, const char *queue, unsigned flags, BrokerDeliverFn fn,
                        void *userdata);

/* Starts connecting in the background. Never blocks the loop: connect, login
 * and declarations run on a worker thread. */
int broker_start(Broker *b);

/* Copies the message and queues it. Written at once when connected, else on
 * the next connect (after declarations). Kept until confirmed; re-sent after a
 * reconnect unless BROKER_PUBLISH_NO_RETRY. Returns -ENOBUFS when the buffer is
 * full and nothing droppable can make room, -EMSGSIZE when the message alone
 * is larger than max_pending_bytes, -ESHUTDOWN after broker_close(), -EINVAL
 * for a message rabbitmq-c cannot encode (a short string over 255 bytes,
 * properties over 64 KiB, a NULL header key or value). `fn` may be NULL and is
 * never called from inside broker_publish(). */
int broker_publish(Broker *b, const BrokerMessage *m, unsigned flags, BrokerConfirmFn fn,
                   void *userdata);

/* Settle a delivery. A tag from an earlier connection or channel (one the
 * broker closed) is stale: the broker has already requeued that message, so
 * this returns -ESTALE and does nothing. -EINVAL for tag 0 (no-ack). */
int broker_ack(Broker *b, uint64_t delivery_tag);
int broker_reject(Broker *b, uint64_t delivery_tag, bool requeue);

BrokerState broker_get_state(const Broker *b);
/* -errno of the failure behind the last DISCONNECTED (e.g. -ECONNREFUSED,
 * -EACCES for a refused login, -ETIMEDOUT), 0 before any. */
int broker_get_error(const Broker *b);
void broker_get_stats(const Broker *b, BrokerStats *ret);
/* Why the broker last closed the channel ("403 ACCESS_REFUSED - …"), or
 * NULL if it never did. */
const char *broker_last_channel_close(const Broker *b);
const char *broker_get_user(const Broker *b); /* login user from the URL */
const char *broker_get_vhost(const Broker *b);
/* Name of the n-th server-named queue as the broker named it on the current
 * connection; NULL when not connected. */
const char *broker_get_server_named_queue(const Broker *b, size_t n);

/* Close gracefully (connection.close with a short timeout), fail every pending
 * publish with BROKER_DROPPED, close every uv handle; when the last one is
 * closed, free the Broker and call closed_cb. Safe in any state, also from
 * inside a Broker callback; the Broker must not be used afterwards. The loop
 * must keep running until closed_cb. A second call is ignored. */
void broker_close(Broker *b, void (*closed_cb)(void *userdata), void *userdata);
