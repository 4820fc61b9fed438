/* SPDX-License-Identifier: MIT */
/* The shard verbs of baton.rpc: `shards SERVICE` (the shard map) and
 * `reshard SERVICE [--instances N] [--shards S]` (plan and start a reshard;
 * shards.c carries it out). */
#include <stdio.h>

#include "rpc-internal.h"
#include "spec.h"
#include "util.h"

static const ServiceSpec *sharded(RpcContext *x, const char *verb) {
        const Baton__V1__ServiceRequest *req = x->request->service;
        const ServiceSpec *s;

        if (x->request->args_case != BATON__V1__REQUEST__ARGS_SERVICE || isempty(req->service)) {
                (void) rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "%s needs SERVICE", verb);
                return NULL;
        }
        s = fleet_service(x->c, req->service);
        if (!s) {
                (void) rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "no service '%s'",
                                req->service);
                return NULL;
        }
        if (s->kind != SERVICE_SHARDED) {
                (void) rpc_fail(x, BATON__V1__STATUS__STATUS_REFUSED, "%s is %s, not sharded",
                                s->name, service_kind_to_string(s->kind));
                return NULL;
        }
        return s;
}

int rpc_verb_shards(RpcContext *x) {
        const ServiceSpec *s = sharded(x, "shards");
        json_t *doc;

        if (!s)
                return 0;
        doc = shards_map_json(x->c, s);
        if (!doc)
                return -ENOMEM;
        return rpc_set_json(x, doc);
}

int rpc_verb_reshard(RpcContext *x) {
        const Baton__V1__ServiceRequest *req = x->request->service;
        const ServiceSpec *s;
        _cleanup_free_ char *error = NULL;
        json_t *plan = NULL;
        bool dry_run;
        int r;

        /* The plan only is the read-only verb reshard-plan (batonctl reshard
         * --dry-run); the verb, not an argument, says which. */
        dry_run = streq(x->request->verb, "reshard-plan");
        if (x->request->args_case == BATON__V1__REQUEST__ARGS_SERVICE &&
            asprintf(&x->audit_request, "%s --instances %u --shards %u", req->service,
                     req->instances, req->shards) < 0)
                x->audit_request = NULL;
        s = sharded(x, x->request->verb);
        if (!s)
                return 0;
        if (req->instances == 0 && req->shards == 0)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE,
                                "%s needs --instances N and/or --shards S", x->request->verb);
        r = shards_reshard(x->c, s->name, req->instances, req->shards, dry_run, &plan, &error);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                Baton__V1__Status st = r == -ENOENT || r == -EIO
                                               ? BATON__V1__STATUS__STATUS_FAILED
                                               : BATON__V1__STATUS__STATUS_REFUSED;
                if (plan)
                        (void) rpc_set_json(x, plan);
                return rpc_fail(x, st, "%s", error ? error : STRERROR(r));
        }
        return rpc_set_json(x, plan ? plan : json_object());
}
