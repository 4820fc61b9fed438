/* SPDX-License-Identifier: MIT */
/* batonctl's requests on baton.rpc: one table of verbs, an authorization gate
 * for the mutating ones (broker-validated user_id against [security]
 * operators), the audit log, and the reply through direct reply-to. */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "log.h"
#include "rpc-internal.h"
#include "rpc.h"
#include "topology.h"
#include "util.h"

/* Who may call a verb. Decided by the verb alone, never by which argument
 * block a request carries: a request cannot make itself look harmless. */
typedef enum RpcAuthority {
        RPC_READ_ONLY,  /* anyone the broker lets publish a request */
        RPC_MUTATING,   /* operators; audited, refused or not */
        RPC_PRIVILEGED, /* operators; reads what is secret (the whole database); audited */
        _RPC_AUTHORITY_MAX,
        _RPC_AUTHORITY_INVALID = -EINVAL,
} RpcAuthority;

static const char *const rpc_authority_table[_RPC_AUTHORITY_MAX] = {
        [RPC_READ_ONLY] = "read-only",
        [RPC_MUTATING] = "mutating",
        [RPC_PRIVILEGED] = "privileged",
};

/* The argument blocks (Request.args) a verb accepts; anything else is a
 * usage error before its handler runs. */
#define ARG(c) (1u << (BATON__V1__REQUEST__ARGS_##c))
#define ARG_NONE (1u << BATON__V1__REQUEST__ARGS__NOT_SET)

typedef struct RpcVerb {
        const char *name;
        RpcAuthority authority;
        unsigned args;
        int (*handler)(RpcContext *x);
} RpcVerb;

/* Every verb, with its authority and argument blocks. The read-only
 * variants of mutating commands are verbs of their own (`plan`,
 * `reshard-plan`, `restart-plan`, `rollout-status`), so no argument can turn a mutating
 * verb into a read-only one. */
/* clang-format off */
static const RpcVerb verbs[] = {
        { "ping",           RPC_READ_ONLY,  ARG_NONE | ARG(PING),     rpc_verb_ping },
        { "hosts",          RPC_READ_ONLY,  ARG_NONE | ARG(HOSTS),    rpc_verb_hosts },
        { "status",         RPC_READ_ONLY,  ARG_NONE | ARG(SERVICE),  rpc_verb_status },
        { "plan",           RPC_READ_ONLY,  ARG(APPLY),               rpc_verb_apply },
        { "shards",         RPC_READ_ONLY,  ARG(SERVICE),             rpc_verb_shards },
        { "reshard-plan",   RPC_READ_ONLY,  ARG(SERVICE),             rpc_verb_reshard },
        { "restart-plan",   RPC_READ_ONLY,  ARG(SERVICE),             rpc_verb_restart },
        { "rollout-status", RPC_READ_ONLY,  ARG_NONE | ARG(ROLLOUT),  rpc_verb_rollout_status },
        { "alerts",         RPC_READ_ONLY,  ARG_NONE,                 rpc_verb_alerts },
        { "audit",          RPC_READ_ONLY,  ARG_NONE | ARG(SERVICE),  rpc_verb_audit },
        { "apply",          RPC_MUTATING,   ARG(APPLY),               rpc_verb_apply },
        { "delete",         RPC_MUTATING,   ARG(SERVICE),             rpc_verb_delete },
        { "restart",        RPC_MUTATING,   ARG(SERVICE),             rpc_verb_restart },
        { "scale",          RPC_MUTATING,   ARG(SERVICE),             rpc_verb_scale },
        { "reshard",        RPC_MUTATING,   ARG(SERVICE),             rpc_verb_reshard },
        { "drain",          RPC_MUTATING,   ARG(HOST),                rpc_verb_drain },
        { "undrain",        RPC_MUTATING,   ARG(HOST),                rpc_verb_drain },
        { "confirm-down",   RPC_MUTATING,   ARG(HOST),                rpc_verb_confirm_down },
        { "rollout",        RPC_MUTATING,   ARG(ROLLOUT),             rpc_verb_rollout },
        { "backup",         RPC_PRIVILEGED, ARG_NONE,                 rpc_verb_backup },
};
/* clang-format on */

static const RpcVerb *find_verb(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        return &verbs[i];
        return NULL;
}

static const char *args_name(Baton__V1__Request__ArgsCase c) {
        switch (c) {
        case BATON__V1__REQUEST__ARGS__NOT_SET:
                return "none";
        case BATON__V1__REQUEST__ARGS_PING:
                return "ping";
        case BATON__V1__REQUEST__ARGS_HOSTS:
                return "hosts";
        case BATON__V1__REQUEST__ARGS_APPLY:
                return "apply";
        case BATON__V1__REQUEST__ARGS_SERVICE:
                return "service";
        case BATON__V1__REQUEST__ARGS_HOST:
                return "host";
        case BATON__V1__REQUEST__ARGS_ROLLOUT:
                return "rollout";
        default:
                return "unknown";
        }
}

/* "service, host" for an error message: the blocks a verb takes. */
static void args_list(unsigned mask, char *buf, size_t len) {
        size_t n = 0;

        buf[0] = '\0';
        for (unsigned c = 0; c < 32 && n < len; c++)
                if (mask & (1u << c))
                        n += (size_t) snprintf(buf + n, len - n, "%s%s", n ? ", " : "",
                                               args_name((Baton__V1__Request__ArgsCase) c));
}

/* Operators are space-separated broker user names. */
static bool is_operator(const char *operators, const char *user) {
        size_t ulen;

        if (isempty(user) || isempty(operators))
                return false;
        ulen = strlen(user);
        for (const char *p = operators; *p;) {
                size_t len;
                while (*p == ' ')
                        p++;
                len = strcspn(p, " ");
                if (len == ulen && strncmp(p, user, len) == 0)
                        return true;
                p += len;
        }
        return false;
}

/* What the answer to `m` carries as its correlation id. */
static const char *correlation_of(const BrokerMessage *m) {
        return m->correlation_id ? m->correlation_id : m->message_id;
}

static void send_reply(Controller *c, const BrokerMessage *m, const Baton__V1__Response *resp) {
        if (isempty(m->reply_to)) {
                log_debug("Request %s has no reply_to; not answering.", strna(m->message_id));
                return;
        }
        rpc_send_answer(c, m->reply_to, correlation_of(m), resp);
}

static void ack(Controller *c, const BrokerMessage *m) {
        int r = broker_ack(c->broker, m->delivery_tag);

        /* The channel is gone: the broker delivers the request again. */
        if (r < 0)
                log_debug("Could not acknowledge request %s: %s", strna(m->message_id),
                          STRERROR(r));
}

static const ProtobufCMessageDescriptor *const request_types[] = {
        &baton__v1__request__descriptor,
};

/* Decides what to do with a decoded request: refusals for authority and
 * arguments, else the verb's handler. */
static void dispatch(RpcContext *x, const RpcVerb *verb) {
        Controller *c = x->c;
        char allowed[128];
        int r;

        if (!verb) {
                rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "unknown verb '%s'", x->request->verb);
                return;
        }
        if (verb->authority != RPC_READ_ONLY && isempty(x->user)) {
                intake_count(&c->intake, REFUSE_UNAUTHORIZED, 1);
                rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                         "'%s' is %s and the request carries no user_id", verb->name,
                         rpc_authority_table[verb->authority]);
                return;
        }
        if (verb->authority != RPC_READ_ONLY && !is_operator(c->config.operators, x->user)) {
                intake_count(&c->intake, REFUSE_UNAUTHORIZED, 1);
                rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                         "'%s' is %s: user '%s' is not an operator ([security] operators)",
                         verb->name, rpc_authority_table[verb->authority], x->user);
                return;
        }
        if (!(verb->args & (1u << x->request->args_case))) {
                args_list(verb->args, allowed, sizeof(allowed));
                rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE,
                         "'%s' takes arguments of kind %s, not %s", verb->name, allowed,
                         args_name(x->request->args_case));
                return;
        }
        r = verb->handler(x);
        if (r < 0)
                rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED, "internal error: %s", strerror(-r));
}

/* Handles one request; returns the verb's name (static) once known. */
static const char *rpc_handle(Broker *b, const BrokerMessage *m, Controller *c) {
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL;
        RpcContext x = { .c = c, .user = m->user_id };
        const RpcVerb *verb;
        int r;

        c->intake.rpc_received++;
        baton__v1__response__init(&x.response);

        /* Replies go only to direct reply-to: a reply_to naming a queue would
         * make the controller publish a signed Response into it. */
        if (!startswith(strempty(m->reply_to), TOPOLOGY_REPLY_TO_PREFIX)) {
                intake_refuse(&c->intake, b, m, REFUSE_MALFORMED,
                              "reply_to is not direct reply-to (amq.rabbitmq.reply-to)");
                return NULL;
        }
        /* Requests come through baton.requests; operators may not write to
         * any other exchange, so anything else is not a request. */
        if (!streq_ptr(m->exchange, TOPOLOGY_EXCHANGE_RPC)) {
                intake_refuse(&c->intake, b, m, REFUSE_MISMATCH,
                              "request not published to exchange " TOPOLOGY_EXCHANGE_RPC);
                rpc_fail(&x, BATON__V1__STATUS__STATUS_USAGE,
                         "requests go to exchange %s (this batonctl is older than the "
                         "controller?)",
                         TOPOLOGY_EXCHANGE_RPC);
                send_reply(c, m, &x.response);
                rpc_context_done(&x);
                return NULL;
        }
        if (!intake_rpc_allowed(&c->intake, x.user, now_monotonic_usec())) {
                log_warning("Refusing a request of '%s': more than %" PRIu64
                            " requests per second (rpc_rate_limit).",
                            strempty(x.user), c->intake.rpc_rate);
                rpc_fail(&x, BATON__V1__STATUS__STATUS_REFUSED,
                         "too many requests from '%s': at most %" PRIu64
                         " per second ([controller] rpc_rate_limit); try again shortly",
                         strempty(x.user), c->intake.rpc_rate);
                send_reply(c, m, &x.response);
                ack(c, m);
                rpc_context_done(&x);
                return NULL;
        }

        r = codec_decode(m->body, m->body_len, request_types, ELEMENTSOF(request_types), m->type,
                         NULL, &d, &error);
        if (r < 0) {
                const char *why = error ? error : strerror(-r);
                intake_refuse(&c->intake, b, m,
                              r == -EPROTOTYPE ? REFUSE_WRONG_TYPE : REFUSE_MALFORMED, why);
                /* Still tell the requester, so batonctl does not wait for a timeout. */
                rpc_fail(&x, BATON__V1__STATUS__STATUS_USAGE, "malformed request: %s", why);
                send_reply(c, m, &x.response);
                rpc_context_done(&x);
                return NULL;
        }
        x.request = (const Baton__V1__Request *) d.body;
        verb = find_verb(x.request->verb);
        x.verb = verb ? verb->name : NULL;
        dispatch(&x, verb);

        /* Every call that may change the fleet or read its secrets is in the
         * audit log, refused or not. A privileged answer is not given unless
         * it is recorded. */
        if (verb && verb->authority != RPC_READ_ONLY && !x.audited) {
                _cleanup_free_ char *what = NULL;

                if (!x.audit_request &&
                    asprintf(&what, "(arguments: %s)", args_name(x.request->args_case)) < 0)
                        what = NULL;
                r = store_audit(c->store, now_realtime_usec(), strempty(x.user), verb->name,
                                x.audit_request ? x.audit_request : what,
                                x.response.status == 0 ? "ok" : strempty(x.response.error),
                                c->config.audit_max_entries, c->config.audit_max_age);
                if (r < 0) {
                        c->counters.store_errors++;
                        log_error_errno(r, "Failed to write the audit log for '%s' of %s: %s",
                                        verb->name, strempty(x.user), store_error(c->store));
                        if (verb->authority == RPC_PRIVILEGED) {
                                x.response.result_case = BATON__V1__RESPONSE__RESULT__NOT_SET;
                                rpc_fail(&x, BATON__V1__STATUS__STATUS_FAILED,
                                         "'%s' is not served: the audit log cannot be written "
                                         "(%s)",
                                         verb->name, store_error(c->store));
                        }
                }
        }

        /* An answer written in steps goes out when it is complete. */
        if (x.steps.step && rpc_steps_start(&x, m->reply_to, correlation_of(m)) == 0) {
                ack(c, m);
                rpc_context_done(&x);
                return verb->name;
        }
        send_reply(c, m, &x.response);
        ack(c, m);
        rpc_context_done(&x);
        return verb ? verb->name : NULL;
}

void rpc_on_message(Broker *b, const BrokerMessage *m, void *userdata) {
        Controller *c = userdata;
        usec_t start = now_monotonic_usec();
        const char *verb = rpc_handle(b, m, c);
        usec_t took = now_monotonic_usec() - start;

        loop_probe_part(&c->probe, verb ? verb : "a request refused", took);
        /* What a request costs the loop (heartbeats wait meanwhile). */
        if (took >= LOOP_BUSY_LONG)
                log_info("Request '%s' of %s kept the loop busy for %" PRIu64 " ms.", strna(verb),
                         strempty(m->user_id), (uint64_t) (took / USEC_PER_MSEC));
}
