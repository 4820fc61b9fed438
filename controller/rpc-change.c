/* SPDX-License-Identifier: MIT */
/* The verbs that change the fleet (and their read-only plans: plan,
 * reshard-plan). Each makes an event, runs it through the pipeline (decide,
 * store with its audit entry in one transaction, apply, publish) and answers
 * with one JSON document (README.md documents the fields). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "pipeline.h"
#include "rpc-internal.h"
#include "util.h"
#include "views.h"

typedef json_t *(*RpcView)(RpcContext *x, const Event *ev, const Plan *p, const Answer *a);

static Baton__V1__Status verdict_status(Verdict v) {
        switch (v) {
        case VERDICT_USAGE:
                return BATON__V1__STATUS__STATUS_USAGE;
        case VERDICT_REFUSED:
                return BATON__V1__STATUS__STATUS_REFUSED;
        default:
                return BATON__V1__STATUS__STATUS_FAILED;
        }
}

/* Runs a request's event. Refused: the core's reason (and, for a refused
 * reshard, its figures). A plan only: `before`'s document of the plan. Else
 * the change is stored with its audit entry, then answered by `before` (the
 * model as it was, the plan beside it) or `after` (the model as it is). */
/* What a request that could not be stored could not do, for its error. */
static const char *change_what(const RpcContext *x, const Event *ev, char *buf, size_t len) {
        switch (ev->kind) {
        case EVENT_APPLY:
                return "store the services and their placement";
        case EVENT_DELETE:
        case EVENT_SCALE:
        case EVENT_RESTART:
                snprintf(buf, len, "%s %s", x->verb, strna(ev->service));
                return buf;
        case EVENT_DRAIN:
                snprintf(buf, len, "%s %s", x->verb, strna(ev->host));
                return buf;
        case EVENT_CONFIRM_DOWN:
                return "confirm the hosts down";
        case EVENT_RESHARD:
                return "store the reshard";
        case EVENT_ROLLOUT:
                return "store the rollout";
        default:
                return "store the change";
        }
}

/* Decides the request into p and a; true when that is the end of it (an
 * error, or a refusal answered here, with a reshard's figures where
 * `before` gives them), with what to return in *ret. */
static bool decide_or_refuse(RpcContext *x, Event *ev, Plan *p, Answer *a, RpcView before,
                             int *ret) {
        *ret = pipeline_decide(x->c, ev, p, a);
        if (*ret < 0)
                return true;
        if (a->verdict == VERDICT_OK)
                return false;
        if (a->reshard.reshard && before)
                (void) rpc_set_json(x, before(x, ev, p, a)); /* figures, if they fit */
        *ret = rpc_fail(x, verdict_status(a->verdict), "%s", strna(a->error));
        return true;
}

static int run_request(RpcContext *x, Event *ev, bool dry_run, RpcView before, RpcView after) {
        _cleanup_(plan_done) Plan p = { 0 };
        _cleanup_(answer_done) Answer a = { 0 };
        const char *error;
        json_t *doc = NULL;
        int r;

        if (decide_or_refuse(x, ev, &p, &a, before, &r))
                return r;
        if (dry_run)
                return rpc_set_json(x, before(x, ev, &p, &a));
        r = pipeline_commit(x->c, &p,
                            &(PipelineAudit){ .user = x->user,
                                              .verb = x->verb,
                                              .request = x->audit_request,
                                              .outcome = "ok" },
                            &error);
        if (r < 0) {
                char what[128];

                log_error_errno(r, "Failed to store '%s' of %s: %s", x->verb, strempty(x->user),
                                strna(error));
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "cannot %s: %s; nothing changed",
                                change_what(x, ev, what, sizeof(what)), strna(error));
        }
        x->audited = true;
        if (before)
                doc = before(x, ev, &p, &a);
        pipeline_carry_out(x->c, &p, now_monotonic_usec());
        if (after)
                doc = after(x, ev, &p, &a);
        if (rpc_set_json(x, doc) < 0)
                /* Made, stored and sent: only the answer is missing. */
                return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED,
                                "'%s' was done, but its answer could not be built (out of memory)",
                                x->verb);
        return 0;
}

static const Baton__V1__ServiceRequest *service_request(RpcContext *x) {
        return x->request->args_case == BATON__V1__REQUEST__ARGS_SERVICE ? x->request->service
                                                                         : NULL;
}

/* ---- apply, plan ---------------------------------------------------------------- */

static json_t *apply_view(RpcContext *x, const Event *ev, const Plan *p, const Answer *a) {
        char *placements;
        json_t *doc = view_apply(&x->c->model, p, a, ev->dry_run, x->request->apply->placements_max,
                                 &placements);

        rpc_set_json_member(x, "placements", placements);
        return doc;
}

static int plan_step(void *cursor, const Model *m, JsonText *out, size_t budget) {
        return plan_cursor_step(cursor, m, out, budget);
}

static void plan_free(void *cursor) {
        plan_cursor_done(cursor);
        free(cursor);
}

/* A dry run that lists every placement: written in steps, however many
 * there are (`batonctl plan --all` of 10,000 hosts × 20 services lists
 * 200,000). */
static int run_plan(RpcContext *x, Event *ev) {
        _cleanup_(plan_done) Plan p = { 0 };
        _cleanup_(answer_done) Answer a = { 0 };
        PlanCursor *cur;
        int r;

        if (decide_or_refuse(x, ev, &p, &a, NULL, &r))
                return r;
        cur = calloc(1, sizeof(PlanCursor));
        if (cur)
                plan_cursor_init(cur, &p, &a, true);
        return rpc_answer_in_steps(x, cur, plan_step, plan_free);
}

int rpc_verb_apply(RpcContext *x) {
        const Baton__V1__ApplyRequest *req = x->request->apply;
        _cleanup_free_ char *errors = NULL, *names = NULL;
        _cleanup_free_ ServiceSpec **specs = NULL;
        size_t n = 0, errlen = 0, nameslen = 0;
        FILE *ef = NULL, *nf = NULL;
        Event ev = { .kind = EVENT_APPLY };
        int r = -ENOMEM;

        if (req->n_files == 0)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "%s needs spec files", x->verb);
        specs = calloc(req->n_files, sizeof(ServiceSpec *));
        ef = open_memstream(&errors, &errlen);
        nf = open_memstream(&names, &nameslen);
        if (!specs || !ef || !nf)
                goto finish;
        /* All files or none: every error is collected before anything changes. */
        for (size_t i = 0; i < req->n_files; i++) {
                _cleanup_free_ char *error = NULL;

                fprintf(nf, "%s%s", i ? " " : "", req->files[i]->name);
                r = spec_parse(req->files[i]->name, req->files[i]->text, &specs[n], &error);
                if (r == -ENOMEM)
                        goto finish;
                if (r < 0)
                        fprintf(ef, "%s\n", error ? error : STRERROR(r));
                else
                        n++;
        }
        r = -ENOMEM;
        if (fclose(TAKE_PTR(ef)) != 0 || fclose(TAKE_PTR(nf)) != 0)
                goto finish;
        free(x->audit_request);
        x->audit_request = TAKE_PTR(names);
        /* One per line, without the last newline. */
        if (errlen > 0 && errors[errlen - 1] == '\n')
                errors[errlen - 1] = '\0';
        ev.specs = specs;
        ev.n_specs = n;
        ev.errors = errors;
        /* `plan` never changes anything, whatever its arguments say; an
         * operator's `apply` may ask for a dry run too. */
        ev.dry_run = streq(x->verb, "plan") || req->dry_run;
        ev.place_now = req->placements_max == 0;
        if (ev.dry_run && req->placements_max == 0)
                r = run_plan(x, &ev);
        else
                r = run_request(x, &ev, ev.dry_run, apply_view, NULL);

finish:
        if (ef)
                fclose(ef);
        if (nf)
                fclose(nf);
        /* What reconcile() did not take over. */
        for (size_t i = 0; specs && i < n; i++)
                service_spec_free(specs[i]);
        return r;
}

/* ---- delete, scale ----------------------------------------------------------------- */

static json_t *delete_view(RpcContext *x, const Event *ev, const Plan *p, const Answer *a) {
        return json_pack("{s:s, s:i}", "service", ev->service, "removed_instances",
                         (int) a->removed);
}

int rpc_verb_delete(RpcContext *x) {
        const Baton__V1__ServiceRequest *req = service_request(x);
        Event ev = { .kind = EVENT_DELETE };

        if (!req || isempty(req->service))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "delete needs a service");
        x->audit_request = strdup(req->service);
        ev.service = req->service;
        return run_request(x, &ev, false, delete_view, NULL);
}

static json_t *scale_view(RpcContext *x, const Event *ev, const Plan *p, const Answer *a) {
        return json_pack("{s:s, s:i, s:i}", "service", ev->service, "count", (int) ev->count,
                         "previous", (int) a->previous);
}

int rpc_verb_scale(RpcContext *x) {
        const Baton__V1__ServiceRequest *req = service_request(x);
        Event ev = { .kind = EVENT_SCALE };

        if (!req || isempty(req->service))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "scale needs SERVICE N");
        if (asprintf(&x->audit_request, "%s %u", req->service, req->count) < 0)
                x->audit_request = NULL;
        ev.service = req->service;
        ev.count = req->count;
        return run_request(x, &ev, false, scale_view, NULL);
}

/* ---- drain, undrain, confirm-down -------------------------------------------------- */

/* Instances the plan moves off `host`. */
static size_t moved_off(const Model *m, const Plan *p, const char *host) {
        size_t n = 0;

        for (size_t i = 0; i < p->n_instances; i++) {
                const Instance *in =
                        model_instance(m, p->instances[i].service, p->instances[i].instance);
                n += in && streq(in->host, host) && !streq_ptr(p->instances[i].host, host);
        }
        return n;
}

static json_t *drain_view(RpcContext *x, const Event *ev, const Plan *p, const Answer *a) {
        const Host *h = host_table_get(&x->c->model.hosts, ev->host);
        const char *state = !h || !h->alive ? "down" : ev->drained ? "drained" : "up";

        return json_pack("{s:s, s:s, s:i}", "host", ev->host, "state", state, "moved",
                         (int) moved_off(&x->c->model, p, ev->host));
}

static const char *host_arg(RpcContext *x) {
        return x->request->args_case == BATON__V1__REQUEST__ARGS_HOST ? x->request->host->host
                                                                      : NULL;
}

int rpc_verb_drain(RpcContext *x) {
        const char *host = host_arg(x);
        Event ev = { .kind = EVENT_DRAIN, .drained = streq(x->verb, "drain") };

        if (isempty(host))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "%s needs a host", x->verb);
        x->audit_request = strdup(host);
        ev.host = host;
        return run_request(x, &ev, false, drain_view, NULL);
}

static json_t *confirm_view(RpcContext *x, const Event *ev, const Plan *p, const Answer *a) {
        json_t *hosts = json_array();

        for (size_t i = 0; hosts && i < ev->n_hosts; i++)
                json_array_append_new(hosts, json_string(ev->hosts[i]));
        return json_pack("{s:o, s:b, s:i}", "hosts", hosts, "all", ev->all, "moved",
                         (int) p->n_moved);
}

int rpc_verb_confirm_down(RpcContext *x) {
        const Baton__V1__HostRequest *req = x->request->host;
        _cleanup_free_ const char **hosts = NULL;
        Event ev = { .kind = EVENT_CONFIRM_DOWN, .all = req->all };
        size_t n = 0, len = 0;
        FILE *f;

        hosts = calloc(req->n_hosts + 2, sizeof(char *));
        if (!hosts)
                return -ENOMEM;
        if (!isempty(req->host))
                hosts[n++] = req->host;
        for (size_t i = 0; i < req->n_hosts; i++)
                hosts[n++] = req->hosts[i];
        f = open_memstream(&x->audit_request, &len);
        if (!f)
                return -ENOMEM;
        fputs(req->all ? "--all" : "", f);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s%s", ftell(f) > 0 ? " " : "", hosts[i]);
        if (fclose(f) != 0)
                return -ENOMEM;
        if (n > 0 && req->all)
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE,
                                "confirm-down takes hosts or --all, not both");
        ev.hosts = hosts;
        ev.n_hosts = n;
        return run_request(x, &ev, false, confirm_view, NULL);
}

/* ---- restart ---------------------------------------------------------------------- */

static json_t *restart_view(RpcContext *x, const Event *ev, const Plan *p, const Answer *a) {
        const ServiceSpec *s = model_service(&x->c->model, ev->service);

        if (a->replace)
                return json_pack("{s:s, s:I, s:n, s:i, s:b}", "service", ev->service, "rollout",
                                 (json_int_t) a->rollout, "restart_id", "instances",
                                 ev->instance < 0 && s ? (int) s->count : 1, "make_before_break",
                                 true);
        if (ev->instance < 0)
                return json_pack("{s:s, s:I, s:n, s:i, s:b}", "service", ev->service, "rollout",
                                 (json_int_t) a->rollout, "restart_id", "instances",
                                 s ? (int) s->count : 0, "make_before_break", false);
        return json_pack("{s:s, s:n, s:s, s:s, s:i, s:b}", "service", ev->service, "rollout",
                         "restart_id", strempty(a->restart_id), "host", strempty(a->restart_host),
                         "instances", 1, "make_before_break", false);
}

/* restart-plan (batonctl restart --dry-run): what the restart would do and
 * cost; for a sharded service the figures of Answer.restart_plan. */
static json_t *restart_plan_view(RpcContext *x, const Event *ev, const Plan *p, const Answer *a) {
        const ServiceSpec *s = model_service(&x->c->model, ev->service);
        json_t *doc = json_pack("{s:s, s:b, s:i, s:b}", "service", ev->service, "dry_run", true,
                                "instances", ev->instance < 0 && s ? (int) s->count : 1,
                                "make_before_break", a->replace);

        if (doc && a->restart_plan.sharded &&
            json_object_update_new(
                    doc,
                    json_pack("{s:I, s:i, s:i, s:f, s:I, s:o}", "identifies",
                              (json_int_t) a->restart_plan.identifies, "resumes", 0, "surge_copies",
                              (int) a->restart_plan.surge, "dark_shard_seconds",
                              (double) a->restart_plan.dark_shard_us / USEC_PER_SEC,
                              "estimated_duration_us", (json_int_t) a->restart_plan.duration,
                              "budget", view_budget(&a->restart_plan.budget))) < 0) {
                json_decref(doc);
                return NULL;
        }
        return doc;
}

int rpc_verb_restart(RpcContext *x) {
        const Baton__V1__ServiceRequest *req = service_request(x);
        Event ev = { .kind = EVENT_RESTART };

        if (!req || isempty(req->service))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "restart needs SERVICE[@N]");
        if (asprintf(&x->audit_request, "%s@%d%s", req->service, req->instance,
                     req->in_place ? " --in-place" : "") < 0)
                x->audit_request = NULL;
        ev.service = req->service;
        ev.instance = req->instance;
        ev.in_place = req->in_place;
        /* The plan only is the read-only verb restart-plan (batonctl restart
         * --dry-run). */
        ev.dry_run = streq(x->verb, "restart-plan");
        if (ev.dry_run)
                return run_request(x, &ev, true, restart_plan_view, NULL);
        return run_request(x, &ev, false, NULL, restart_view);
}

/* ---- reshard, reshard-plan ------------------------------------------------------- */

static json_t *reshard_view(RpcContext *x, const Event *ev, const Plan *p, const Answer *a) {
        const ServiceSpec *s = model_service(&x->c->model, ev->service);

        if (!s || !a->reshard.reshard)
                return json_object();
        return view_reshard_plan(s, a, ev->dry_run);
}

int rpc_verb_reshard(RpcContext *x) {
        const Baton__V1__ServiceRequest *req = service_request(x);
        Event ev = { .kind = EVENT_RESHARD };

        /* The plan only is the read-only verb reshard-plan (batonctl reshard
         * --dry-run); the verb, not an argument, says which. */
        ev.dry_run = streq(x->verb, "reshard-plan");
        if (!req || isempty(req->service))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE, "%s needs SERVICE", x->verb);
        if (asprintf(&x->audit_request, "%s --instances %u --shards %u", req->service,
                     req->instances, req->shards) < 0)
                x->audit_request = NULL;
        ev.service = req->service;
        ev.instances = req->instances;
        ev.shards = req->shards;
        return run_request(x, &ev, ev.dry_run, reshard_view, NULL);
}

/* ---- rollout pause, resume, abort ------------------------------------------------ */

static json_t *rollout_view(RpcContext *x, const Event *ev, const Plan *p, const Answer *a) {
        return view_rollouts(&x->c->model, ev->service);
}

int rpc_verb_rollout(RpcContext *x) {
        const Baton__V1__RolloutRequest *req = x->request->rollout;
        Event ev = { .kind = EVENT_ROLLOUT };

        /* `rollout-status` reads; `rollout` changes (rpc.c's table decides
         * who may call which). */
        if (streq(req->action, "status"))
                return rpc_fail(x, BATON__V1__STATUS__STATUS_USAGE,
                                "the status of rollouts is the read-only verb rollout-status");
        if (asprintf(&x->audit_request, "%s %s", req->action, strempty(req->service)) < 0)
                x->audit_request = NULL;
        ev.action = req->action;
        ev.service = req->service;
        return run_request(x, &ev, false, NULL, rollout_view);
}
