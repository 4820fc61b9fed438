/* SPDX-License-Identifier: MIT */
/* The answer being built (rpc-internal.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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

void rpc_context_done(RpcContext *x) {
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
        free(x->audit_request);
}
