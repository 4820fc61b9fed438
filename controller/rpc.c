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
#include "util.h"

typedef struct RpcVerb {
        const char *name;
        bool mutating;
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
                "status_received", "heartbeats",    "rpc_received",
                "rpc_answered",    "alerts_raised", "alerts_resolved",
                "publish_failed",  "store_errors",  "refused_total",
        };
        uint64_t refused_total = 0;
        size_t n = ELEMENTSOF(counter_names) + _REFUSE_REASON_MAX, k = 0;

        for (size_t i = 0; i < _REFUSE_REASON_MAX; i++)
                refused_total += c->counters.refused[i];
        const uint64_t values[] = {
                c->counters.status_received, c->counters.heartbeats,    c->counters.rpc_received,
                c->counters.rpc_answered,    c->counters.alerts_raised, c->counters.alerts_resolved,
                c->counters.publish_failed,  c->counters.store_errors,  refused_total,
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
        static const char *const refused_names[_REFUSE_REASON_MAX] = {
                [REFUSE_MALFORMED] = "refused.malformed",
                [REFUSE_WRONG_TYPE] = "refused.wrong-type",
                [REFUSE_MISMATCH] = "refused.mismatch",
                [REFUSE_UNAUTHORIZED] = "refused.unauthorized",
        };
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

/* Every verb of DESIGN.md §7. A verb without a handler is answered with a
 * clear "not implemented yet", never with a fake success. */
/* clang-format off */
static const RpcVerb verbs[] = {
        { "ping",    false, verb_ping },
        { "hosts",   false, verb_hosts },
        { "status",  false, rpc_verb_status },
        { "plan",    false, rpc_verb_apply },
        { "shards",  false, rpc_verb_shards },
        { "alerts",  false, rpc_verb_alerts },
        { "audit",   false, rpc_verb_audit },
        { "apply",   true,  rpc_verb_apply },
        { "delete",  true,  rpc_verb_delete },
        { "restart", true,  rpc_verb_restart },
        { "scale",   true,  rpc_verb_scale },
        { "reshard", true,  rpc_verb_reshard },
        { "drain",   true,  rpc_verb_drain },
        { "undrain", true,  rpc_verb_drain },
        { "rollout", true,  rpc_verb_rollout },
        { "backup",  true,  rpc_verb_backup },
};
/* clang-format on */

static const RpcVerb *find_verb(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        return &verbs[i];
        return NULL;
}

/* `rollout status` and `apply --dry-run` change nothing: no operator needed,
 * nothing to audit. */
static bool request_is_read_only(const Baton__V1__Request *req) {
        if (req->args_case == BATON__V1__REQUEST__ARGS_ROLLOUT)
                return streq(req->rollout->action, "status");
        if (req->args_case == BATON__V1__REQUEST__ARGS_APPLY)
                return req->apply->dry_run;
        return false;
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

void rpc_handle(Controller *c, const BrokerMessage *m) {
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL;
        RpcContext x = { .c = c, .user = m->user_id };
        const RpcVerb *verb;
        bool mutating;
        int r;

        c->counters.rpc_received++;
        baton__v1__response__init(&x.response);

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
        mutating = verb && verb->mutating && !request_is_read_only(x.request);
        if (!verb)
                rpc_fail(&x, BATON__V1__STATUS__STATUS_USAGE, "unknown verb '%s'", x.request->verb);
        else if (mutating && isempty(x.user)) {
                c->counters.refused[REFUSE_UNAUTHORIZED]++;
                rpc_fail(&x, BATON__V1__STATUS__STATUS_REFUSED,
                         "'%s' changes the fleet and the request carries no user_id", verb->name);
        } else if (mutating && !is_operator(c->config.operators, x.user)) {
                c->counters.refused[REFUSE_UNAUTHORIZED]++;
                rpc_fail(&x, BATON__V1__STATUS__STATUS_REFUSED,
                         "user '%s' is not an operator ([security] operators)", x.user);
        } else if (!verb->handler)
                rpc_fail(&x, BATON__V1__STATUS__STATUS_FAILED,
                         "'%s' is not implemented by this controller (baton %s) yet", verb->name,
                         BATON_VERSION);
        else {
                r = verb->handler(&x);
                if (r < 0)
                        rpc_fail(&x, BATON__V1__STATUS__STATUS_FAILED, "internal error: %s",
                                 strerror(-r));
        }

        if (mutating) {
                r = store_audit(c->store, now_realtime_usec(), strempty(x.user), verb->name,
                                x.audit_request,
                                x.response.status == 0 ? "ok" : strempty(x.response.error));
                if (r < 0)
                        log_warning_errno(r, "Failed to write the audit log: %s, ignoring.",
                                          store_error(c->store));
        }

        send_reply(c, m, &x.response);
        (void) broker_ack(c->broker, m->delivery_tag);
        rpc_context_done(&x);
}
