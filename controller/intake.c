/* SPDX-License-Identifier: MIT */
/* Refusals and rate limits (intake.h). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "intake.h"
#include "log.h"
#include "topology.h"
#include "util.h"

static const char *const refuse_reason_table[_REFUSE_REASON_MAX] = {
        [REFUSE_MALFORMED] = "malformed",       [REFUSE_WRONG_TYPE] = "wrong-type",
        [REFUSE_MISMATCH] = "mismatch",         [REFUSE_UNAUTHORIZED] = "unauthorized",
        [REFUSE_RATE_LIMITED] = "rate-limited", [REFUSE_NOT_OWNED] = "not-owned",
};

const char *refuse_reason_to_string(RefuseReason r) {
        if (r < 0 || r >= _REFUSE_REASON_MAX)
                return NULL;
        return refuse_reason_table[r];
}

void intake_init(Intake *in, uint64_t status_rate, uint64_t rpc_rate) {
        *in = (Intake){ .status_rate = status_rate, .rpc_rate = rpc_rate };
}

void intake_done(Intake *in) {
        for (size_t i = 0; i < in->n_rpc_users; i++)
                free(in->rpc_users[i].user);
        free(in->rpc_users);
        *in = (Intake){ 0 };
}

void intake_refuse(Intake *in, Broker *b, const BrokerMessage *m, RefuseReason reason,
                   const char *detail) {
        int r;

        in->refused[reason]++;
        log_fields(LOG_WARNING, 0,
                   LOG_FIELDS({ "BATON_QUEUE", strempty(m->queue) },
                              { "BATON_REFUSED", refuse_reason_to_string(reason) }),
                   "Refusing message %s (type %s, routing key %s) on %s: %s; dead-lettered.",
                   strna(m->message_id), strna(m->type), strna(m->routing_key), strna(m->queue),
                   detail);
        r = broker_reject(b, m->delivery_tag, false);
        if (r < 0)
                /* The channel is gone: the broker redelivers it, and it is
                 * refused again then. */
                log_debug("Could not reject message %s: %s", strna(m->message_id), STRERROR(r));
}

void intake_count(Intake *in, RefuseReason reason, uint64_t n) {
        in->refused[reason] += n;
}

bool intake_status_host(const BrokerMessage *m, char *ret, size_t size) {
        const char *key = strempty(m->routing_key), *dot = strchr(key, '.');

        if (!dot || (size_t) (dot - key) > TOPOLOGY_HOST_ID_MAX || (size_t) (dot - key) >= size)
                return false;
        memcpy(ret, key, (size_t) (dot - key));
        ret[dot - key] = '\0';
        return true;
}

bool intake_status_allowed(Intake *in, const char *host, HostModel *v, size_t body_len,
                           usec_t now) {
        /* Each KiB costs as much as a message: a few huge messages cannot do
         * what many small ones may not. The burst lets one message of the
         * largest size through a full bucket. */
        RateLimit l = { .rate = (uint32_t) in->status_rate,
                        .burst = (uint32_t) in->status_rate * 10 + CODEC_MAX_MESSAGE_SIZE / 1024 +
                                 1 };
        uint32_t cost = 1 + (uint32_t) (MIN(body_len, (size_t) CODEC_MAX_MESSAGE_SIZE) / 1024);

        if (token_bucket_take_n(&v->status_bucket, &l, now, cost))
                return true;
        v->status_dropped++;
        in->refused[REFUSE_RATE_LIMITED]++;
        if (now - v->status_dropped_logged >= 60 * USEC_PER_SEC) {
                log_warning("Host %s sends more than %" PRIu64 " status messages per second "
                            "(status_rate_limit): dropping the excess (%" PRIu64 " so far), "
                            "heartbeats only keep it alive.",
                            host, in->status_rate, v->status_dropped);
                v->status_dropped_logged = now;
        }
        return false;
}

/* Per broker user: rpc_rate_limit requests per second, bursts of five times
 * that. Users are broker accounts, so the table stays small; it is still
 * bounded, forgetting the longest idle. */
#define RPC_USERS_MAX 4096

bool intake_rpc_allowed(Intake *in, const char *user, usec_t now) {
        RateLimit l = { .rate = (uint32_t) in->rpc_rate, .burst = (uint32_t) in->rpc_rate * 5 };
        RpcUserBucket *u = NULL;
        size_t oldest = 0;
        char *name;

        user = strempty(user);
        for (size_t i = 0; i < in->n_rpc_users; i++) {
                if (streq(in->rpc_users[i].user, user)) {
                        u = &in->rpc_users[i];
                        break;
                }
                if (in->rpc_users[i].bucket.last < in->rpc_users[oldest].bucket.last)
                        oldest = i;
        }
        if (!u) {
                name = strdup(user);
                if (!name)
                        return true; /* out of memory: do not punish the user for it */
                if (in->n_rpc_users >= RPC_USERS_MAX) {
                        u = &in->rpc_users[oldest];
                        free(u->user);
                } else {
                        RpcUserBucket *p = realloc(in->rpc_users,
                                                   (in->n_rpc_users + 1) * sizeof(RpcUserBucket));
                        if (!p) {
                                free(name);
                                return true;
                        }
                        in->rpc_users = p;
                        u = &in->rpc_users[in->n_rpc_users++];
                }
                *u = (RpcUserBucket){ .user = name };
        }
        if (token_bucket_take(&u->bucket, &l, now))
                return true;
        in->refused[REFUSE_RATE_LIMITED]++;
        return false;
}
