/* SPDX-License-Identifier: MIT */
/* The answer being built (rpc-internal.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "log.h"
#include "rpc-internal.h"
#include "util.h"

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

void rpc_set_json_member(RpcContext *x, const char *key, char *value) {
        free(x->json_member);
        x->json_member_key = key;
        x->json_member = value;
}

int rpc_set_json(RpcContext *x, json_t *doc) {
        _cleanup_free_ char *member = TAKE_PTR(x->json_member);

        if (!doc)
                return -ENOMEM;
        free(x->json);
        x->json = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(doc);
        if (!x->json)
                return -ENOMEM;
        /* {…} becomes {…,"key":value}, the value copied once. */
        if (member) {
                size_t len = strlen(x->json), klen = strlen(x->json_member_key),
                       vlen = strlen(member), at = len - 1;
                char *p = realloc(x->json, len + klen + vlen + 5);

                if (!p)
                        return -ENOMEM;
                x->json = p;
                if (len > 2) /* not {} */
                        p[at++] = ',';
                at += (size_t) sprintf(p + at, "\"%s\":", x->json_member_key);
                memcpy(p + at, member, vlen);
                memcpy(p + at + vlen, "}", 2);
        }
        x->response.result_case = BATON__V1__RESPONSE__RESULT_JSON;
        x->response.json = x->json;
        return 0;
}

void rpc_steps_done(RpcSteps *s) {
        if (s->cursor && s->free)
                s->free(s->cursor);
        *s = (RpcSteps){ 0 };
}

void rpc_context_done(RpcContext *x) {
        rpc_steps_done(&x->steps);
        free(x->counters);
        free(x->counter_ptrs);
        for (size_t i = 0; x->counter_names && i < x->n_counters; i++)
                free(x->counter_names[i]);
        free(x->counter_names);
        for (size_t i = 0; x->host_labels && i < x->n_host_labels; i++)
                free(x->host_labels[i]);
        free(x->host_labels);
        free(x->host_infos);
        free(x->host_ptrs);
        free(x->error);
        free(x->json);
        free(x->json_member);
        free(x->audit_request);
}

uint32_t rpc_answer_parts(Controller *c, size_t len) {
        /* answer_part_size leaves room for the envelope around a part. */
        size_t size = (size_t) c->config.answer_part_size;

        return (uint32_t) ((len + size - 1) / size);
}

int rpc_send_part(Controller *c, const char *reply_to, const char *correlation, const uint8_t *buf,
                  size_t len, uint32_t index) {
        Baton__V1__Response msg = BATON__V1__RESPONSE__INIT;
        Baton__V1__ResponsePart part = BATON__V1__RESPONSE_PART__INIT;
        size_t size = (size_t) c->config.answer_part_size, off = (size_t) index * size;

        part.index = index;
        part.count = rpc_answer_parts(c, len);
        part.data.data = (uint8_t *) buf + off;
        part.data.len = MIN(size, len - off);
        msg.part = &part;
        return publish_body(&c->pub, c->model.epoch, "", reply_to, &msg.base,
                            &(PublishOptions){ .flags = BROKER_PUBLISH_NO_RETRY,
                                               .correlation_id = correlation });
}

/* An answer larger than a message: the packed Response in slices, in order
 * (batonctl joins them). Backups are refused above one message instead. */
static int send_parts(Controller *c, const char *reply_to, const char *correlation,
                      const Baton__V1__Response *resp) {
        size_t len = protobuf_c_message_get_packed_size(&resp->base);
        _cleanup_free_ uint8_t *buf = NULL;
        uint32_t count = rpc_answer_parts(c, len);
        int r = 0;

        if (len > CODEC_MAX_ANSWER_SIZE)
                return -EMSGSIZE;
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        protobuf_c_message_pack(&resp->base, buf);
        for (uint32_t i = 0; r >= 0 && i < count; i++)
                r = rpc_send_part(c, reply_to, correlation, buf, len, i);
        if (r >= 0)
                log_debug("Answered %s in %" PRIu32 " parts (%zu bytes).", reply_to, count, len);
        return r;
}

void rpc_send_answer(Controller *c, const char *reply_to, const char *correlation,
                     const Baton__V1__Response *resp) {
        int r;

        /* Direct reply-to only lives as long as the requester's connection:
         * never re-send a reply after a reconnect. */
        if (protobuf_c_message_get_packed_size(&resp->base) > c->config.answer_part_size &&
            resp->result_case != BATON__V1__RESPONSE__RESULT_BACKUP)
                r = send_parts(c, reply_to, correlation, resp);
        else
                r = publish_body(&c->pub, c->model.epoch, "", reply_to, &resp->base,
                                 &(PublishOptions){ .flags = BROKER_PUBLISH_NO_RETRY,
                                                    .correlation_id = correlation });
        if (r == -EMSGSIZE) {
                /* Say so rather than leave batonctl waiting for its timeout;
                 * what the request changed stays changed. */
                Baton__V1__Response small = BATON__V1__RESPONSE__INIT;
                _cleanup_free_ char *why = NULL;

                if (asprintf(&why,
                             "the answer (%zu bytes) is larger than an answer may be (%zu "
                             "bytes, in parts)%s; ask for less, e.g. `batonctl status SERVICE`",
                             protobuf_c_message_get_packed_size(&resp->base),
                             (size_t) CODEC_MAX_ANSWER_SIZE,
                             resp->status == BATON__V1__STATUS__STATUS_OK
                                     ? " though the request itself succeeded"
                                     : "") < 0)
                        why = NULL;
                small.status = BATON__V1__STATUS__STATUS_FAILED;
                small.error = why ? why : (char *) "the answer is too large for a message";
                log_warning("Reply to %s too large; answering with an error instead.", reply_to);
                r = publish_body(&c->pub, c->model.epoch, "", reply_to, &small.base,
                                 &(PublishOptions){ .flags = BROKER_PUBLISH_NO_RETRY,
                                                    .correlation_id = correlation });
        }
        if (r < 0)
                log_warning_errno(r, "Failed to send reply to %s: %s, ignoring.", reply_to,
                                  STRERROR(r));
        else
                c->intake.rpc_answered++;
}
