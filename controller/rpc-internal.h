/* SPDX-License-Identifier: MIT */
/* Shared by the RPC files: rpc.c (dispatch, authorization, audit, reply),
 * rpc-reply.c (the answer being built), rpc-read.c (verbs that read the
 * model), rpc-change.c (verbs that run an event through the pipeline) and
 * rpc-backup.c. */
#pragma once

#include <jansson.h>

#include "controller.h"
#include "jsontext.h"
#include "rpc.pb-c.h"

/* A read verb's JSON answer written in steps, over as many turns of the loop
 * as it takes (rpc-steps.c): `step` writes about `budget` entries more and
 * returns 1 when the document is complete, 0 when more is to come, < 0 on
 * failure. */
typedef struct RpcSteps {
        void *cursor;
        int (*step)(void *cursor, const Model *m, JsonText *out, size_t budget);
        void (*free)(void *cursor);
} RpcSteps;

/* Frees the cursor, if any, and empties `s`. */
void rpc_steps_done(RpcSteps *s);

typedef struct RpcContext {
        Controller *c;
        const Baton__V1__Request *request;
        const char *verb;
        const char *user; /* AMQP user_id, validated by the broker; NULL if absent */
        Baton__V1__Response response;
        /* storage the response points into, freed after sending */
        Baton__V1__Pong pong;
        Baton__V1__Counter *counters;
        Baton__V1__Counter **counter_ptrs;
        char **counter_names;
        size_t n_counters;
        Baton__V1__HostList host_list;
        Baton__V1__HostInfo *host_infos;
        Baton__V1__HostInfo **host_ptrs;
        char ***host_labels;
        size_t n_host_labels;
        Baton__V1__Counter host_states[_HOST_STATE_MAX];
        Baton__V1__Counter *host_state_ptrs[_HOST_STATE_MAX];
        char *error;
        char *json;
        RpcSteps steps;              /* set by a verb that answers in steps */
        const char *json_member_key; /* static; with json_member, what rpc_set_json() adds */
        char *json_member;           /* its value, JSON text */
        char *audit_request;         /* what the audit log records of the request */
        bool audited;                /* the change and its audit entry were stored together */
} RpcContext;

/* Sets the response status and error text; returns 0 (the verb ran). */
int rpc_fail(RpcContext *x, Baton__V1__Status status, const char *fmt, ...) _printf_(3, 4);
/* Makes `doc` (stolen; NULL: out of memory) the response's JSON result. */
int rpc_set_json(RpcContext *x, json_t *doc);
/* A member for the next rpc_set_json() to add: `key` (static) and its value
 * as JSON text (stolen; NULL: none), written apart because it is large. */
void rpc_set_json_member(RpcContext *x, const char *key, char *value);
void rpc_context_done(RpcContext *x);
/* Sends `resp` to reply_to (direct reply-to), in parts when it is larger
 * than a message; an answer too large even then is replaced by an error
 * saying so. */
void rpc_send_answer(Controller *c, const char *reply_to, const char *correlation,
                     const Baton__V1__Response *resp);
/* A packed Response of `len` bytes goes in this many parts … */
uint32_t rpc_answer_parts(Controller *c, size_t len);
/* … each sent by itself (rpc-steps.c sends one a turn). */
int rpc_send_part(Controller *c, const char *reply_to, const char *correlation, const uint8_t *buf,
                  size_t len, uint32_t index);

/* For a read verb: its answer is written in steps (takes over `cursor`,
 * freed with free_fn; cursor NULL: out of memory). */
int rpc_answer_in_steps(RpcContext *x, void *cursor,
                        int (*step)(void *cursor, const Model *m, JsonText *out, size_t budget),
                        void (*free_fn)(void *cursor));
/* After the verb (rpc.c): writes what fits in this turn. Returns 1 when the
 * answer is complete (x->response holds it), 0 when the rest was queued for
 * later turns (the queue answers reply_to itself), or an error set on
 * x->response (the queue is full, out of memory) as 1. */
int rpc_steps_start(RpcContext *x, const char *reply_to, const char *correlation);

int rpc_verb_ping(RpcContext *x);
int rpc_verb_hosts(RpcContext *x);
int rpc_verb_status(RpcContext *x);
int rpc_verb_shards(RpcContext *x);
int rpc_verb_alerts(RpcContext *x);
int rpc_verb_audit(RpcContext *x);
int rpc_verb_rollout_status(RpcContext *x);

int rpc_verb_apply(RpcContext *x); /* and plan */
int rpc_verb_delete(RpcContext *x);
int rpc_verb_scale(RpcContext *x);
int rpc_verb_drain(RpcContext *x);   /* and undrain */
int rpc_verb_restart(RpcContext *x); /* and restart-plan */
int rpc_verb_reshard(RpcContext *x); /* and reshard-plan */
int rpc_verb_rollout(RpcContext *x);
int rpc_verb_confirm_down(RpcContext *x);

int rpc_verb_backup(RpcContext *x);
