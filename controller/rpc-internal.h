/* SPDX-License-Identifier: MIT */
/* Shared by rpc.c (dispatch, authorization, reply) and rpc-fleet.c (the
 * verbs that read or change desired state). */
#pragma once

#include <jansson.h>

#include "controller.h"
#include "rpc.pb-c.h"

typedef struct RpcContext {
        Controller *c;
        const Baton__V1__Request *request;
        const char *user; /* AMQP user_id, validated by the broker; NULL if absent */
        Baton__V1__Response response;
        /* storage the response points into, freed after sending */
        Baton__V1__Pong pong;
        Baton__V1__Counter *counters;
        Baton__V1__Counter **counter_ptrs;
        Baton__V1__HostList host_list;
        Baton__V1__HostInfo *host_infos;
        Baton__V1__HostInfo **host_ptrs;
        char ***host_labels;
        char *error;
        char *json;
        char *audit_request; /* what the audit log records of the request */
} RpcContext;

/* Sets the response status and error text; returns 0 (the verb ran). */
int rpc_fail(RpcContext *x, Baton__V1__Status status, const char *fmt, ...) _printf_(3, 4);
/* Makes `doc` (stolen) the response's JSON result. */
int rpc_set_json(RpcContext *x, json_t *doc);

int rpc_verb_apply(RpcContext *x);
int rpc_verb_delete(RpcContext *x);
int rpc_verb_status(RpcContext *x);
int rpc_verb_scale(RpcContext *x);
int rpc_verb_drain(RpcContext *x);
int rpc_verb_restart(RpcContext *x);
int rpc_verb_alerts(RpcContext *x);
int rpc_verb_audit(RpcContext *x);
int rpc_verb_rollout(RpcContext *x);
int rpc_verb_backup(RpcContext *x);
int rpc_verb_shards(RpcContext *x);
int rpc_verb_reshard(RpcContext *x);
