/* SPDX-License-Identifier: MIT */
/* What comes in before it is believed: refusals (counted by reason, logged,
 * dead-lettered), status_rate_limit per host and rpc_rate_limit per broker
 * user. Owns its counters; changes nothing else. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "model.h"
#include "ratelimit.h"

/* Why a message was refused; each has a counter (and shows in `batonctl ping`). */
typedef enum RefuseReason {
        REFUSE_MALFORMED,    /* does not decode or validate */
        REFUSE_WRONG_TYPE,   /* a valid message of a type not expected here */
        REFUSE_MISMATCH,     /* routing key, AMQP type and body disagree */
        REFUSE_UNAUTHORIZED, /* mutating request from a user not in operators */
        REFUSE_RATE_LIMITED, /* over status_rate_limit (per host) or rpc_rate_limit (per user) */
        REFUSE_NOT_OWNED,    /* a report about units or shards not placed on that host */
        _REFUSE_REASON_MAX,
        _REFUSE_REASON_INVALID = -EINVAL,
} RefuseReason;

const char *refuse_reason_to_string(RefuseReason r) _pure_;

typedef struct RpcUserBucket {
        char *user;
        TokenBucket bucket;
} RpcUserBucket;

typedef struct Intake {
        uint64_t status_rate; /* per host and second; 0: unlimited */
        uint64_t rpc_rate;    /* per user and second; 0: unlimited */
        RpcUserBucket *rpc_users;
        size_t n_rpc_users;

        uint64_t status_received;
        uint64_t heartbeats;
        uint64_t markers; /* the controller's own liveness markers, read back */
        uint64_t rpc_received;
        uint64_t rpc_answered;
        uint64_t refused[_REFUSE_REASON_MAX];
} Intake;

void intake_init(Intake *in, uint64_t status_rate, uint64_t rpc_rate);
void intake_done(Intake *in);

/* Counts and logs a refused message and dead-letters it (reject, no requeue). */
void intake_refuse(Intake *in, Broker *b, const BrokerMessage *m, RefuseReason reason,
                   const char *detail);
/* Counts `n` refusals that are not whole messages (parts of one). */
void intake_count(Intake *in, RefuseReason reason, uint64_t n);

/* The host a status routing key names ("HOST.kind"), or false. */
bool intake_status_host(const BrokerMessage *m, char *ret, size_t size);

/* status_rate_limit: whether `host` (v) may send this message now. Each KiB
 * costs as much as a message. When it may not, counts and logs (a line a
 * minute) and returns false. */
bool intake_status_allowed(Intake *in, const char *host, HostModel *v, size_t body_len, usec_t now);

/* rpc_rate_limit: whether `user` may make a request now. The table of users
 * is bounded (the longest idle is forgotten). */
bool intake_rpc_allowed(Intake *in, const char *user, usec_t now);
