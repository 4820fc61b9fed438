/* SPDX-License-Identifier: MIT */
/* batonctl's RPC client: one connection, a Request on baton.rpc with direct
 * reply-to, one Response back, all within --timeout. Every way this can fail
 * (broker down, no controller, controller silent) ends in exit code 3 with a
 * sentence saying which. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "duration.h"
#include "log.h"
#include "topology.h"
#include "util.h"

typedef struct Call {
        Ctl *ctl;
        uv_loop_t loop;
        uv_timer_t timer;
        Broker *broker;
        Baton__V1__Request *request;
        char id[33];
        usec_t sent_at;
        bool sent;
        bool done;
        int exit_code;
        CodecDecoded response;
        /* An answer in parts (Response.part), joined as they come. */
        uint8_t *parts;
        size_t parts_len;
        uint32_t parts_seen, parts_count;
} Call;

static void on_closed(void *userdata) {
        Call *call = userdata;

        call->broker = NULL;
        if (!uv_is_closing((uv_handle_t *) &call->timer))
                uv_close((uv_handle_t *) &call->timer, NULL);
}

static void finish(Call *call, int exit_code, const char *fmt, ...) _printf_(3, 4);
static void finish(Call *call, int exit_code, const char *fmt, ...) {
        if (call->done)
                return;
        call->done = true;
        call->exit_code = exit_code;
        if (fmt) {
                va_list ap;

                va_start(ap, fmt);
                ctl_verror(fmt, ap);
                va_end(ap);
        }
        (void) uv_timer_stop(&call->timer);
        if (call->broker)
                broker_close(call->broker, on_closed, call);
}

static const ProtobufCMessageDescriptor *const response_types[] = {
        &baton__v1__response__descriptor,
};

/* One part of an answer in parts (now in call->response): appended, in
 * order. 1 once the last is in (then call->response is the joined
 * Response), 0 while more are to come, < 0 for parts that do not fit
 * together. */
static int take_part(Call *call, char **ret_error) {
        const Baton__V1__ResponsePart *part =
                ((const Baton__V1__Response *) call->response.body)->part;
        uint8_t *p;
        int r;

        if (part->count == 0 || part->index != call->parts_seen ||
            (call->parts_seen > 0 && part->count != call->parts_count))
                r = error_set(ret_error, -EBADMSG,
                              "part %" PRIu32 " of %" PRIu32 " after %" PRIu32 " parts of %" PRIu32,
                              part->index, part->count, call->parts_seen, call->parts_count);
        else if (call->parts_len + part->data.len > CODEC_MAX_ANSWER_SIZE)
                r = error_set(ret_error, -EMSGSIZE, "an answer in parts larger than %u bytes",
                              (unsigned) CODEC_MAX_ANSWER_SIZE);
        else if (!(p = realloc(call->parts, call->parts_len + part->data.len + 1)))
                r = -ENOMEM;
        else {
                memcpy(p + call->parts_len, part->data.data, part->data.len);
                call->parts = p;
                call->parts_len += part->data.len;
                call->parts_count = part->count;
                call->parts_seen++;
                r = call->parts_seen == call->parts_count;
        }
        codec_decoded_done(&call->response);
        if (r <= 0)
                return r;
        r = codec_decode_body(&baton__v1__response__descriptor, call->parts, call->parts_len,
                              &call->response, ret_error);
        call->parts = mfree(call->parts);
        return r < 0 ? r : 1;
}

static void on_reply(Broker *b, const BrokerMessage *m, void *userdata) {
        Call *call = userdata;
        _cleanup_free_ char *error = NULL;
        int r;

        /* A late reply to an earlier request on a reused name: not ours. */
        if (!streq_ptr(m->correlation_id, call->id) || call->done)
                return;

        r = codec_decode(m->body, m->body_len, response_types, ELEMENTSOF(response_types), m->type,
                         NULL, &call->response, &error);
        if (r < 0) {
                finish(call, CTL_EXIT_FAILED, "the controller's reply is malformed: %s",
                       error ? error : strerror(-r));
                return;
        }
        if (((const Baton__V1__Response *) call->response.body)->part) {
                r = take_part(call, &error);
                if (r < 0) {
                        finish(call, CTL_EXIT_FAILED, "the controller's reply is malformed: %s",
                               error ? error : strerror(-r));
                        return;
                }
                if (r == 0)
                        return; /* more to come */
        }
        call->ctl->round_trip = now_monotonic_usec() - call->sent_at;
        finish(call, CTL_EXIT_OK, NULL);
}

static void on_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Call *call = userdata;

        switch (outcome) {
        case BROKER_CONFIRMED:
                break;
        case BROKER_RETURNED:
                finish(call, CTL_EXIT_UNREACHABLE,
                       "no controller: nothing takes requests on exchange %s in vhost %s (is "
                       "baton-controller running?)",
                       TOPOLOGY_EXCHANGE_RPC, strna(broker_get_vhost(b)));
                break;
        default:
                /* A permission refusal closes the channel: say what the broker said. */
                if (outcome == BROKER_DROPPED && broker_last_channel_close(b) &&
                    strncmp(broker_last_channel_close(b), "403 ", 4) == 0)
                        finish(call, CTL_EXIT_REFUSED, "the broker refused the request: %s",
                               broker_last_channel_close(b));
                else if (outcome == BROKER_DROPPED && broker_last_channel_close(b) &&
                         strncmp(broker_last_channel_close(b), "404 ", 4) == 0)
                        finish(call, CTL_EXIT_UNREACHABLE,
                               "no controller: exchange %s does not exist in vhost %s (is "
                               "baton-controller running, or baton-broker-setup run?)",
                               TOPOLOGY_EXCHANGE_RPC, strna(broker_get_vhost(b)));
                else
                        finish(call, CTL_EXIT_UNREACHABLE,
                               "the broker did not accept the request (%s%s%s)",
                               broker_outcome_to_string(outcome),
                               broker_last_channel_close(b) ? ": " : "",
                               strempty(broker_last_channel_close(b)));
                break;
        }
}

static void send_request(Call *call) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *sender = NULL;
        char expiration[32];
        usec_t now = now_realtime_usec();
        const char *user = broker_get_user(call->broker);
        size_t len;
        int r;

        if (asprintf(&sender, "batonctl:%s", strempty(user)) < 0) {
                finish(call, CTL_EXIT_FAILED, "out of memory");
                return;
        }
        r = codec_encode(&call->request->base, sender, 0, now, NULL, &buf, &len);
        if (r < 0) {
                finish(call, CTL_EXIT_FAILED, "cannot encode the request: %s", strerror(-r));
                return;
        }
        /* A request nobody took within our timeout must not act later. */
        snprintf(expiration, sizeof(expiration), "%" PRIu64,
                 (uint64_t) MAX(call->ctl->timeout / USEC_PER_MSEC, 1));

        BrokerMessage m = {
                .exchange = TOPOLOGY_EXCHANGE_RPC,
                .routing_key = TOPOLOGY_QUEUE_RPC,
                .message_id = call->id,
                .correlation_id = call->id,
                .type = call->request->base.descriptor->name,
                .content_type = CODEC_CONTENT_TYPE,
                .reply_to = TOPOLOGY_REPLY_TO,
                /* The broker checks it equals the login user: the controller
                 * can trust it for authorization and the audit log. */
                .user_id = user,
                .expiration = expiration,
                .timestamp = now / USEC_PER_SEC,
                .body = buf,
                .body_len = len,
        };
        call->sent_at = now_monotonic_usec();
        r = broker_publish(call->broker, &m, BROKER_PUBLISH_MANDATORY | BROKER_PUBLISH_NO_RETRY,
                           on_confirm, call);
        if (r < 0) {
                finish(call, CTL_EXIT_UNREACHABLE, "cannot send the request: %s", strerror(-r));
                return;
        }
        call->sent = true;
}

static void on_state(Broker *b, BrokerState state, const char *reason, void *userdata) {
        Call *call = userdata;

        if (state == BROKER_CONNECTED && !call->sent)
                send_request(call);
        else if (state == BROKER_DISCONNECTED)
                finish(call, CTL_EXIT_UNREACHABLE, "cannot reach the broker: %s", strna(reason));
}

static void on_timeout(uv_timer_t *t) {
        Call *call = t->data;
        char d[DURATION_MAX_LEN];

        duration_format(d, sizeof(d), call->ctl->timeout);
        if (call->sent)
                finish(call, CTL_EXIT_UNREACHABLE,
                       "the controller did not answer within %s (is baton-controller running?)", d);
        else
                finish(call, CTL_EXIT_UNREACHABLE, "could not connect to the broker within %s", d);
}

int ctl_call(Ctl *ctl, Baton__V1__Request *request, CodecDecoded *ret) {
        Call call = { .ctl = ctl, .request = request };
        BrokerConfig bc;
        int r;

        r = random_id(call.id);
        if (r < 0)
                return CTL_EXIT_FAILED;
        r = uv_loop_init(&call.loop);
        if (r < 0) {
                fprintf(stderr, "batonctl: cannot create an event loop: %s\n", uv_strerror(r));
                return CTL_EXIT_FAILED;
        }
        (void) uv_timer_init(&call.loop, &call.timer);
        call.timer.data = &call;

        broker_config_init(&bc);
        broker_settings_apply(&ctl->broker, &bc);
        bc.reconnect = false;
        bc.heartbeat = 0;
        bc.connect_timeout = ctl->timeout;
        bc.rpc_timeout = ctl->timeout;
        bc.connection_name = "batonctl";
        r = broker_new(&call.loop, &bc, on_state, &call, &call.broker);
        if (r >= 0)
                r = broker_add_consumer(call.broker, TOPOLOGY_REPLY_TO, BROKER_NO_ACK, on_reply,
                                        &call);
        if (r >= 0)
                r = broker_start(call.broker);
        if (r < 0) {
                fprintf(stderr, "batonctl: cannot set up the broker connection: %s\n",
                        strerror(-r));
                call.exit_code = CTL_EXIT_FAILED;
                call.done = true;
                if (call.broker)
                        broker_close(call.broker, on_closed, &call);
                else
                        uv_close((uv_handle_t *) &call.timer, NULL);
        } else
                (void) uv_timer_start(&call.timer, on_timeout, ctl->timeout / USEC_PER_MSEC, 0);

        (void) uv_run(&call.loop, UV_RUN_DEFAULT);
        (void) uv_loop_close(&call.loop);
        free(call.parts);

        if (call.exit_code == CTL_EXIT_OK)
                *ret = call.response;
        else
                codec_decoded_done(&call.response);
        return call.exit_code;
}

int ctl_request(Ctl *ctl, Baton__V1__Request *request, Baton__V1__Response__ResultCase expect,
                CodecDecoded *ret, const Baton__V1__Response **ret_resp) {
        const Baton__V1__Response *resp;
        int r;

        r = ctl_call(ctl, request, ret);
        if (r != CTL_EXIT_OK)
                return r;
        resp = (const Baton__V1__Response *) ret->body;
        r = ctl_exit_for_response(resp);
        if (r != CTL_EXIT_OK)
                return r;
        if (resp->result_case != expect) {
                fprintf(stderr, "batonctl: the controller's answer to '%s' lacks its result\n",
                        request->verb);
                return CTL_EXIT_FAILED;
        }
        *ret_resp = resp;
        return CTL_EXIT_OK;
}

int ctl_exit_for_response(const Baton__V1__Response *resp) {
        switch (resp->status) {
        case BATON__V1__STATUS__STATUS_OK:
                return CTL_EXIT_OK;
        case BATON__V1__STATUS__STATUS_USAGE:
                fprintf(stderr, "batonctl: %s\n", strna(resp->error));
                return CTL_EXIT_USAGE;
        case BATON__V1__STATUS__STATUS_REFUSED:
                fprintf(stderr, "batonctl: refused: %s\n", strna(resp->error));
                return CTL_EXIT_REFUSED;
        default:
                fprintf(stderr, "batonctl: failed: %s\n", strna(resp->error));
                return CTL_EXIT_FAILED;
        }
}

int ctl_usage_error(const CtlCommand *cmd, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "batonctl %s: ", cmd->name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nUsage: batonctl [OPTIONS] %s%s%s\n", cmd->name,
                isempty(cmd->usage) ? "" : " ", strempty(cmd->usage));
        return CTL_EXIT_USAGE;
}
