/* SPDX-License-Identifier: MIT */
/* batonctl's requests on baton.rpc: one table of verbs, an authorization gate
 * for the mutating ones (broker-validated user_id against [security]
 * operators), and the reply through direct reply-to. */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "controller.h"
#include "log.h"
#include "rpc-internal.h"
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

int rpc_fail(RpcContext *x, Baton__V1__Status status, const char *fmt, ...) {
        va_list ap;

        free(x->error);
        va_start(ap, fmt);
        if (vasprintf(&x->error, fmt, ap) < 0)
                x->error = NULL;
        va_end(ap);
        x->response.status = status;
        x->response.error = x->error ? x->error : (char *) "out of memory";
        return 0;
}

int rpc_set_json(RpcContext *x, json_t *doc) {
        if (!doc)
                return -ENOMEM;
        free(x->json);
        x->json = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(doc);
        if (!x->json)
                return -ENOMEM;
        x->response.result_case = BATON__V1__RESPONSE__RESULT_JSON;
        x->response.json = x->json;
        return 0;
}

static int verb_ping(RpcContext *x) {
        Controller *c = x->c;
        static const char *const counter_names[] = {
                "status_received", "heartbeats",      "rpc_received",   "rpc_answered",
                "alerts_raised",   "alerts_resolved", "publish_failed", "store_errors",
                "refused_total",   "status_lag_ms",
        };
        uint64_t refused_total = 0;
        size_t n = ELEMENTSOF(counter_names) + _REFUSE_REASON_MAX, k = 0;

        for (size_t i = 0; i < _REFUSE_REASON_MAX; i++)
                refused_total += c->counters.refused[i];
        const uint64_t values[] = {
                c->counters.status_received,
                c->counters.heartbeats,
                c->counters.rpc_received,
                c->counters.rpc_answered,
                c->counters.alerts_raised,
                c->counters.alerts_resolved,
                c->counters.publish_failed,
                c->counters.store_errors,
                refused_total,
                c->status_lag / USEC_PER_MSEC,
        };
        _Static_assert(ELEMENTSOF(values) == ELEMENTSOF(counter_names), "counter table");

        x->counters = calloc(n, sizeof(Baton__V1__Counter));
        x->counter_ptrs = calloc(n, sizeof(Baton__V1__Counter *));
        if (!x->counters || !x->counter_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(counter_names); i++, k++) {
                baton__v1__counter__init(&x->counters[k]);
                x->counters[k].name = (char *) counter_names[i];
                x->counters[k].value = values[i];
                x->counter_ptrs[k] = &x->counters[k];
        }
        /* One counter per refusal reason, named so dashboards can split them. */
        static char refused_names[_REFUSE_REASON_MAX][32];
        for (size_t i = 0; i < _REFUSE_REASON_MAX; i++)
                if (!refused_names[i][0])
                        snprintf(refused_names[i], sizeof(refused_names[i]), "refused.%s",
                                 refuse_reason_to_string((RefuseReason) i));
        for (size_t i = 0; i < _REFUSE_REASON_MAX; i++, k++) {
                baton__v1__counter__init(&x->counters[k]);
                x->counters[k].name = (char *) refused_names[i];
                x->counters[k].value = c->counters.refused[i];
                x->counter_ptrs[k] = &x->counters[k];
        }

        baton__v1__pong__init(&x->pong);
        x->pong.controller_id = c->config.id;
        x->pong.version = (char *) BATON_VERSION;
        x->pong.epoch = c->epoch;
        x->pong.started_at_us = c->started_at_us;
        x->pong.now_us = now_realtime_usec();
        x->pong.hosts_up = (uint32_t) (host_table_count(&c->hosts, HOST_UP) +
                                       host_table_count(&c->hosts, HOST_DRAINED));
        x->pong.hosts_total = (uint32_t) c->hosts.n_hosts;
        x->pong.n_counters = k;
        x->pong.counters = x->counter_ptrs;
        x->pong.user = (char *) strempty(x->user);

        x->response.result_case = BATON__V1__RESPONSE__RESULT_PONG;
        x->response.pong = &x->pong;
        return 0;
}

/* Splits "k=v k=v" into a NULL-terminated array of words (one allocation). */
static char **split_words(const char *s, size_t *ret_n) {
        size_t n = 0, len = strlen(strempty(s));
        char **v, *copy;

        for (const char *p = strempty(s); *p; p++)
                if (*p != ' ' && (p == s || p[-1] == ' '))
                        n++;
        v = malloc((n + 1) * sizeof(char *) + len + 1);
        if (!v)
                return NULL;
        copy = (char *) (v + n + 1);
        memcpy(copy, strempty(s), len + 1);
        n = 0;
        for (char *tok = strtok(copy, " "); tok; tok = strtok(NULL, " "))
                v[n++] = tok;
        v[n] = NULL;
        *ret_n = n;
        return v;
}

static int verb_hosts(RpcContext *x) {
        const HostTable *t = &x->c->hosts;
        size_t n = t->n_hosts;

        x->host_infos = calloc(n ? n : 1, sizeof(Baton__V1__HostInfo));
        x->host_ptrs = calloc(n ? n : 1, sizeof(Baton__V1__HostInfo *));
        x->host_labels = calloc(n ? n : 1, sizeof(char **));
        if (!x->host_infos || !x->host_ptrs || !x->host_labels)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                const Host *h = t->hosts[i];
                const HostView *v = h->userdata;
                Baton__V1__HostInfo *hi = &x->host_infos[i];

                baton__v1__host_info__init(hi);
                hi->host = h->id;
                hi->state = (char *) host_state_to_string(host_state(h));
                if (v) {
                        hi->last_seen_us = v->last_seen_us;
                        hi->state_since_us = v->state_since_us;
                        hi->boot_id = (char *) strempty(v->boot_id);
                        hi->agent_version = (char *) strempty(v->agent_version);
                        hi->cores = v->cores;
                        hi->memory_total_bytes = v->memory_total;
                        hi->memory_available_bytes = v->memory_available;
                        hi->load1_x100 = v->load1_x100;
                        hi->units_total = v->units_total;
                        hi->units_active = v->units_active;
                        hi->applied_generation = v->applied_generation;
                        hi->max_epoch_seen = v->max_epoch_seen;
                        hi->systemd_version = (char *) strempty(v->systemd_version);
                        hi->system_state = (char *) strempty(v->system_state);
                        x->host_labels[i] = split_words(v->labels, &hi->n_labels);
                        if (!x->host_labels[i])
                                return -ENOMEM;
                        hi->labels = x->host_labels[i];
                }
                x->host_ptrs[i] = hi;
        }

        baton__v1__host_list__init(&x->host_list);
        x->host_list.n_hosts = n;
        x->host_list.hosts = x->host_ptrs;
        x->response.result_case = BATON__V1__RESPONSE__RESULT_HOSTS;
        x->response.hosts = &x->host_list;
        return 0;
}

/* Every verb of DESIGN.md §7, with its authority and argument blocks. The
 * read-only variants of mutating commands are verbs of their own (`plan`,
 * `reshard-plan`, `rollout-status`), so no argument can turn a mutating
 * verb into a read-only one. */
/* clang-format off */
static const RpcVerb verbs[] = {
        { "ping",           RPC_READ_ONLY,  ARG_NONE | ARG(PING),     verb_ping },
        { "hosts",          RPC_READ_ONLY,  ARG_NONE | ARG(HOSTS),    verb_hosts },
        { "status",         RPC_READ_ONLY,  ARG_NONE | ARG(SERVICE),  rpc_verb_status },
        { "plan",           RPC_READ_ONLY,  ARG(APPLY),               rpc_verb_apply },
        { "shards",         RPC_READ_ONLY,  ARG(SERVICE),             rpc_verb_shards },
        { "reshard-plan",   RPC_READ_ONLY,  ARG(SERVICE),             rpc_verb_reshard },
        { "rollout-status", RPC_READ_ONLY,  ARG_NONE | ARG(ROLLOUT),  rpc_verb_rollout },
        { "alerts",         RPC_READ_ONLY,  ARG_NONE,                 rpc_verb_alerts },
        { "audit",          RPC_READ_ONLY,  ARG_NONE | ARG(SERVICE),  rpc_verb_audit },
        { "apply",          RPC_MUTATING,   ARG(APPLY),               rpc_verb_apply },
        { "delete",         RPC_MUTATING,   ARG(SERVICE),             rpc_verb_delete },
        { "restart",        RPC_MUTATING,   ARG(SERVICE),             rpc_verb_restart },
        { "scale",          RPC_MUTATING,   ARG(SERVICE),             rpc_verb_scale },
        { "reshard",        RPC_MUTATING,   ARG(SERVICE),             rpc_verb_reshard },
        { "drain",          RPC_MUTATING,   ARG(HOST),                rpc_verb_drain },
        { "undrain",        RPC_MUTATING,   ARG(HOST),                rpc_verb_drain },
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

static void rpc_context_done(RpcContext *x) {
        free(x->counters);
        free(x->counter_ptrs);
        if (x->host_labels)
                for (size_t i = 0; i < x->c->hosts.n_hosts; i++)
                        free(x->host_labels[i]);
        free(x->host_labels);
        free(x->host_infos);
        free(x->host_ptrs);
        free(x->error);
        free(x->json);
        free(x->audit_request);
}

static void send_reply(Controller *c, const BrokerMessage *m, const Baton__V1__Response *resp) {
        const char *correlation = m->correlation_id ? m->correlation_id : m->message_id;
        int r;

        if (isempty(m->reply_to)) {
                log_debug("Request %s has no reply_to; not answering.", strna(m->message_id));
                return;
        }
        /* Direct reply-to only lives as long as the requester's connection:
         * never re-send a reply after a reconnect. */
        r = controller_publish(c, "", m->reply_to, &resp->base,
                               &(PublishOptions){ .flags = BROKER_PUBLISH_NO_RETRY,
                                                  .correlation_id = correlation });
        if (r == -EMSGSIZE) {
                /* Say so rather than leave batonctl waiting for its timeout;
                 * what the request changed stays changed. */
                Baton__V1__Response small = BATON__V1__RESPONSE__INIT;
                _cleanup_free_ char *why = NULL;

                if (asprintf(&why,
                             "the answer (%zu bytes) is larger than a message may be (%zu "
                             "bytes)%s; ask for less, e.g. `batonctl status SERVICE`",
                             protobuf_c_message_get_packed_size(&resp->base),
                             (size_t) CODEC_MAX_MESSAGE_SIZE,
                             resp->status == BATON__V1__STATUS__STATUS_OK
                                     ? " though the request itself succeeded"
                                     : "") < 0)
                        why = NULL;
                small.status = BATON__V1__STATUS__STATUS_FAILED;
                small.error = why ? why : (char *) "the answer is too large for a message";
                log_warning("Reply to %s too large; answering with an error instead.", m->reply_to);
                r = controller_publish(c, "", m->reply_to, &small.base,
                                       &(PublishOptions){ .flags = BROKER_PUBLISH_NO_RETRY,
                                                          .correlation_id = correlation });
        }
        if (r < 0)
                log_warning_errno(r, "Failed to send reply to %s: %s, ignoring.", m->reply_to,
                                  STRERROR(r));
        else
                c->counters.rpc_answered++;
}

static const ProtobufCMessageDescriptor *const request_types[] = {
        &baton__v1__request__descriptor,
};

/* Per broker user: rpc_rate_limit requests per second, bursts of five
 * times that. Users are broker accounts, so the table stays small; it is
 * still bounded, evicting the longest idle. */
#define RPC_USERS_MAX 4096

static bool rpc_rate_ok(Controller *c, const char *user) {
        RateLimit l = { .rate = (uint32_t) c->config.rpc_rate,
                        .burst = (uint32_t) c->config.rpc_rate * 5 };
        usec_t now = now_monotonic_usec();
        RpcUserBucket *u = NULL, *p;
        size_t oldest = 0;

        user = strempty(user);
        for (size_t i = 0; i < c->n_rpc_users; i++) {
                if (streq(c->rpc_users[i].user, user)) {
                        u = &c->rpc_users[i];
                        break;
                }
                if (c->rpc_users[i].bucket.last < c->rpc_users[oldest].bucket.last)
                        oldest = i;
        }
        if (!u && c->n_rpc_users >= RPC_USERS_MAX) {
                u = &c->rpc_users[oldest];
                free(u->user);
                *u = (RpcUserBucket){ .user = strdup(user) };
        } else if (!u) {
                p = realloc(c->rpc_users, (c->n_rpc_users + 1) * sizeof(RpcUserBucket));
                if (!p)
                        return true; /* out of memory: do not punish the user for it */
                c->rpc_users = p;
                u = &c->rpc_users[c->n_rpc_users++];
                *u = (RpcUserBucket){ .user = strdup(user) };
        }
        if (!u->user) {
                c->n_rpc_users -= u == &c->rpc_users[c->n_rpc_users - 1];
                return true;
        }
        return token_bucket_take(&u->bucket, &l, now);
}

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
                c->counters.refused[REFUSE_UNAUTHORIZED]++;
                rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                         "'%s' is %s and the request carries no user_id", verb->name,
                         rpc_authority_table[verb->authority]);
                return;
        }
        if (verb->authority != RPC_READ_ONLY && !is_operator(c->config.operators, x->user)) {
                c->counters.refused[REFUSE_UNAUTHORIZED]++;
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

void rpc_handle(Controller *c, const BrokerMessage *m) {
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL;
        RpcContext x = { .c = c, .user = m->user_id };
        const RpcVerb *verb;
        int r;

        c->counters.rpc_received++;
        baton__v1__response__init(&x.response);

        /* Replies go only to direct reply-to: a reply_to naming a queue would
         * make the controller publish a signed Response into it. */
        if (!startswith(strempty(m->reply_to), TOPOLOGY_REPLY_TO_PREFIX)) {
                controller_refuse(c, m, REFUSE_MALFORMED,
                                  "reply_to is not direct reply-to (amq.rabbitmq.reply-to)");
                return;
        }
        /* Requests come through baton.requests; operators may not write to
         * any other exchange, so anything else is not a request. */
        if (!streq_ptr(m->exchange, TOPOLOGY_EXCHANGE_RPC)) {
                controller_refuse(c, m, REFUSE_MISMATCH,
                                  "request not published to exchange " TOPOLOGY_EXCHANGE_RPC);
                rpc_fail(&x, BATON__V1__STATUS__STATUS_USAGE,
                         "requests go to exchange %s (this batonctl is older than the "
                         "controller?)",
                         TOPOLOGY_EXCHANGE_RPC);
                send_reply(c, m, &x.response);
                rpc_context_done(&x);
                return;
        }
        if (!rpc_rate_ok(c, x.user)) {
                c->counters.refused[REFUSE_RATE_LIMITED]++;
                log_warning("Refusing a request of '%s': more than %" PRIu64
                            " requests per second (rpc_rate_limit).",
                            strempty(x.user), c->config.rpc_rate);
                rpc_fail(&x, BATON__V1__STATUS__STATUS_REFUSED,
                         "too many requests from '%s': at most %" PRIu64
                         " per second ([controller] rpc_rate_limit); try again shortly",
                         strempty(x.user), c->config.rpc_rate);
                send_reply(c, m, &x.response);
                (void) broker_ack(c->broker, m->delivery_tag);
                rpc_context_done(&x);
                return;
        }

        r = codec_decode(m->body, m->body_len, request_types, ELEMENTSOF(request_types), m->type,
                         NULL, &d, &error);
        if (r < 0) {
                const char *why = error ? error : strerror(-r);
                controller_refuse(c, m, r == -EPROTOTYPE ? REFUSE_WRONG_TYPE : REFUSE_MALFORMED,
                                  why);
                /* Still tell the requester, so batonctl does not wait for a timeout. */
                rpc_fail(&x, BATON__V1__STATUS__STATUS_USAGE, "malformed request: %s", why);
                send_reply(c, m, &x.response);
                rpc_context_done(&x);
                return;
        }
        x.request = (const Baton__V1__Request *) d.body;
        verb = find_verb(x.request->verb);
        dispatch(&x, verb);

        /* Every call that may change the fleet or read its secrets is in the
         * audit log, refused or not. A privileged answer is not given unless
         * it is recorded. */
        if (verb && verb->authority != RPC_READ_ONLY) {
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

        send_reply(c, m, &x.response);
        (void) broker_ack(c->broker, m->delivery_tag);
        rpc_context_done(&x);
}
