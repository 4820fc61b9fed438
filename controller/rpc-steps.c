/* SPDX-License-Identifier: MIT */
/* Answers written in steps: a read verb whose answer is large (`status` of
 * every instance of a large fleet) writes what fits in a few milliseconds in
 * the turn its request came in; the rest is queued and written a few
 * milliseconds per turn on an idle handle, so heartbeats and other requests
 * are served in between. One answer at a time, in the order they came. The
 * request is acknowledged when it is queued: an answer goes to direct
 * reply-to, which lives only as long as the requester's connection, so it is
 * never sent twice anyway. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "log.h"
#include "loop.h"
#include "rpc-internal.h"
#include "rpc.h"
#include "util.h"

/* Entries per call of a step function between looks at the clock. */
#define STEP_BUDGET 256

struct RpcJob {
        RpcJob *next;
        char *reply_to;
        char *correlation;
        const char *verb; /* static */
        char *user;
        RpcSteps steps;
        JsonText text;
        /* Complete and larger than a message: the packed Response, sent a
         * part a turn. */
        uint8_t *packed;
        size_t packed_len;
        uint32_t next_part;
        usec_t queued_at;        /* monotonic */
        usec_t longest;          /* of the turns it took */
        const char *longest_was; /* what that turn did */
};

static void on_idle(uv_idle_t *h);

static void job_free(RpcJob *j) {
        if (!j)
                return;
        rpc_steps_done(&j->steps);
        json_text_done(&j->text);
        free(j->packed);
        free(j->reply_to);
        free(j->correlation);
        free(j->user);
        free(j);
}

int rpc_answer_in_steps(RpcContext *x, void *cursor,
                        int (*step)(void *cursor, const Model *m, JsonText *out, size_t budget),
                        void (*free_fn)(void *cursor)) {
        if (!cursor)
                return -ENOMEM;
        rpc_steps_done(&x->steps);
        x->steps = (RpcSteps){ .cursor = cursor, .step = step, .free = free_fn };
        return 0;
}

/* Steps until the document is complete or `until` (monotonic) has passed:
 * 1 complete, 0 more to come, < 0 failed. */
static int run_steps(RpcSteps *s, const Model *m, JsonText *out, usec_t until) {
        int r;

        do
                r = s->step(s->cursor, m, out, STEP_BUDGET);
        while (r == 0 && now_monotonic_usec() < until);
        return r;
}

/* The complete document (or the failure) as the response's result. */
static void set_result(RpcContext *x, JsonText *text, int r) {
        if (r >= 0) {
                free(x->json);
                x->json = json_text_steal(text);
                if (x->json) {
                        x->response.result_case = BATON__V1__RESPONSE__RESULT_JSON;
                        x->response.json = x->json;
                        return;
                }
                r = -ENOMEM;
        }
        rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED, "internal error: %s", strerror(-r));
}

int rpc_steps_start(RpcContext *x, const char *reply_to, const char *correlation) {
        Controller *c = x->c;
        RpcQueue *q = &c->rpcq;
        JsonText text = { 0 };
        RpcJob *j;
        int r;

        /* Answers wait their turn behind those already queued. */
        r = q->head ? 0
                    : run_steps(&x->steps, &c->model, &text,
                                now_monotonic_usec() + c->config.answer_step_time);
        if (r != 0) {
                set_result(x, &text, r);
                json_text_done(&text);
                rpc_steps_done(&x->steps);
                return 1;
        }
        if (q->n >= RPC_QUEUE_MAX || !q->on || isempty(reply_to)) {
                json_text_done(&text);
                rpc_steps_done(&x->steps);
                rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED,
                         "the controller is writing %zu large answers already; try again "
                         "shortly",
                         q->n);
                return 1;
        }
        j = calloc(1, sizeof(RpcJob));
        if (j) {
                j->reply_to = strdup(reply_to);
                j->correlation = correlation ? strdup(correlation) : NULL;
                j->user = strdup(strempty(x->user));
        }
        if (!j || !j->reply_to || (correlation && !j->correlation) || !j->user) {
                job_free(j);
                json_text_done(&text);
                rpc_steps_done(&x->steps);
                rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED, "internal error: %s",
                         strerror(ENOMEM));
                return 1;
        }
        j->verb = x->verb;
        j->steps = x->steps;
        x->steps = (RpcSteps){ 0 };
        j->text = text;
        j->queued_at = now_monotonic_usec();
        if (q->tail)
                q->tail->next = j;
        else
                q->head = j;
        q->tail = j;
        q->n++;
        if (uv_idle_start(&q->idle, on_idle) < 0)
                log_error("Failed to start writing the queued answers.");
        return 0;
}

/* The document is complete (r > 0) or failed: 1 when the answer went out
 * whole, 0 when it is packed to go in parts, from this turn on. */
static int complete(Controller *c, RpcJob *j, int r) {
        RpcContext x = { .c = c, .verb = j->verb };
        size_t len;

        baton__v1__response__init(&x.response);
        set_result(&x, &j->text, r);
        len = protobuf_c_message_get_packed_size(&x.response.base);
        if (len > c->config.answer_part_size && len <= CODEC_MAX_ANSWER_SIZE)
                j->packed = malloc(len);
        if (!j->packed) { /* one message, or an error saying why not */
                rpc_send_answer(c, j->reply_to, j->correlation, &x.response);
                rpc_context_done(&x);
                return 1;
        }
        protobuf_c_message_pack(&x.response.base, j->packed);
        j->packed_len = len;
        rpc_context_done(&x);
        return 0;
}

/* One part more: 1 when the last went, 0 when more are to go, < 0 failed. */
static int send_part(Controller *c, RpcJob *j) {
        uint32_t count = rpc_answer_parts(c, j->packed_len);
        int r = rpc_send_part(c, j->reply_to, j->correlation, j->packed, j->packed_len,
                              j->next_part++);

        if (r < 0) {
                log_warning_errno(r, "Failed to send part %" PRIu32 " of the answer to %s: %s.",
                                  j->next_part, j->reply_to, STRERROR(r));
                return r;
        }
        if (j->next_part < count)
                return 0;
        c->intake.rpc_answered++;
        log_debug("Answered %s in %" PRIu32 " parts (%zu bytes).", j->reply_to, count,
                  j->packed_len);
        return 1;
}

static void finished(RpcJob *j) {
        log_debug("Answered '%s' in steps, %" PRIu64 " ms after it came.", strna(j->verb),
                  (uint64_t) ((now_monotonic_usec() - j->queued_at) / USEC_PER_MSEC));
        /* As rpc.c logs a request that held the loop, by its longest turn. */
        if (j->longest >= LOOP_BUSY_LONG)
                log_info("Request '%s' of %s kept the loop busy for %" PRIu64
                         " ms (its longest turn, of those that wrote it in steps: %s).",
                         strna(j->verb), j->user, (uint64_t) (j->longest / USEC_PER_MSEC),
                         strna(j->longest_was));
}

static void on_idle(uv_idle_t *h) {
        Controller *c = h->data;
        RpcQueue *q = &c->rpcq;
        usec_t start = now_monotonic_usec(), until = start + c->config.answer_step_time;

        /* At least one step a turn, however short answer_step_time is; a
         * part sent ends the turn. */
        while (q->head) {
                RpcJob *j = q->head;
                usec_t at = now_monotonic_usec();
                const char *did = "writing";
                int r;

                if (j->packed) {
                        r = send_part(c, j);
                        did = "sending a part";
                } else {
                        r = run_steps(&j->steps, &c->model, &j->text, until);
                        if (r != 0 && complete(c, j, r) == 0) {
                                r = send_part(c, j);
                                did = "packing, sending the first part";
                        } else if (r != 0)
                                did = "writing, sending";
                }
                if (now_monotonic_usec() - at >= j->longest) {
                        j->longest = now_monotonic_usec() - at;
                        j->longest_was = did;
                }
                if (r == 0)
                        break;
                q->head = j->next;
                if (!q->head)
                        q->tail = NULL;
                q->n--;
                finished(j);
                job_free(j);
                if (now_monotonic_usec() >= until)
                        break;
        }
        if (!q->head)
                uv_idle_stop(&q->idle);
        loop_probe_part(&c->probe, "an answer in steps", now_monotonic_usec() - start);
}

int rpc_queue_init(Controller *c) {
        if (uv_idle_init(c->loop, &c->rpcq.idle) < 0)
                return -ENOMEM;
        c->rpcq.idle.data = c;
        c->rpcq.on = true;
        return 0;
}

void rpc_queue_close(Controller *c) {
        if (!c->rpcq.on)
                return;
        if (c->rpcq.n > 0)
                log_info("Stopping with %zu answers unwritten; their requesters time out.",
                         c->rpcq.n);
        loop_close_handle((uv_handle_t *) &c->rpcq.idle);
        c->rpcq.on = false;
}

void rpc_queue_done(Controller *c) {
        RpcQueue *q = &c->rpcq;

        while (q->head) {
                RpcJob *j = q->head;
                q->head = j->next;
                job_free(j);
        }
        q->tail = NULL;
        q->n = 0;
}
