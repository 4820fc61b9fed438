/* SPDX-License-Identifier: MIT */
/* Carrying out commands. A Placement is checked (host, epoch fencing,
 * (epoch, generation) order), turned into a plan by agent/core/converge, and
 * executed group by group: stops, file removals, file writes, one
 * daemon-reload, enables, starts and restarts; actions of one group run
 * concurrently. The state file is updated only for what succeeded, then a
 * CommandResult goes out and the delivery is acked. A Placement that arrives
 * meanwhile waits; a newer one replaces it. A Restart id runs at most once:
 * it is recorded durably before the job starts. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "agent.h"
#include "commands.pb-c.h"
#include "converge.h"
#include "dropin.h"
#include "log.h"
#include "status.pb-c.h"
#include "topology.h"
#include "unit-name.h"
#include "util.h"

typedef struct Outcome {
        char *unit;
        const char *action;
        bool ok;
        char *result;
} Outcome;

struct Apply {
        Agent *a;
        CodecDecoded decoded;
        const Baton__V1__Placement *p;
        uint64_t delivery_tag;

        DesiredUnit *desired;
        size_t n_desired;
        char **dropins;
        char (*hashes)[17];
        ManagedUnit *managed; /* borrowed from a->state at planning time */
        size_t n_managed;
        Plan plan;

        size_t next;
        size_t in_flight;
        Outcome *outcomes;
        size_t n_outcomes;
        size_t n_failed;
};

typedef struct ActionCtx {
        Apply *x;
        const Action *action;
} ActionCtx;

static void apply_start(Agent *a, CodecDecoded *d, uint64_t tag);
static void run_next(Apply *x);

/* ---- outcomes ------------------------------------------------------------ */

static Outcome *outcome_for(Apply *x, const char *unit) {
        Outcome *p;

        for (size_t i = 0; i < x->n_outcomes; i++)
                if (streq(x->outcomes[i].unit, unit))
                        return &x->outcomes[i];
        p = realloc(x->outcomes, (x->n_outcomes + 1) * sizeof(Outcome));
        if (!p)
                return NULL;
        x->outcomes = p;
        p = &x->outcomes[x->n_outcomes];
        *p = (Outcome){ .unit = strdup(unit), .action = "unchanged", .ok = true };
        if (!p->unit)
                return NULL;
        x->n_outcomes++;
        return p;
}

/* Records what happened to a unit; a failure sticks. */
static void record(Apply *x, const char *unit, const char *action, bool ok, const char *result) {
        Outcome *o = outcome_for(x, unit);

        if (!o)
                return;
        if (!o->ok && ok)
                return;
        if (o->ok && !ok && !streq(action, "refused"))
                x->n_failed++;
        o->action = action;
        o->ok = ok;
        if (result) {
                free(o->result);
                o->result = strdup(result);
        }
}

static bool failed(Apply *x, const char *unit) {
        for (size_t i = 0; i < x->n_outcomes; i++)
                if (streq(x->outcomes[i].unit, unit))
                        return !x->outcomes[i].ok;
        return false;
}

static const char *action_word(ActionType t) {
        switch (t) {
        case ACTION_REFUSE:
                return "refused";
        case ACTION_STOP:
                return "stopped";
        case ACTION_DISABLE:
                return "disabled";
        case ACTION_REMOVE_DROPIN:
        case ACTION_REMOVE_FILE:
                return "removed";
        case ACTION_WRITE_FILE:
        case ACTION_WRITE_DROPIN:
                return "installed";
        case ACTION_ENABLE:
                return "enabled";
        case ACTION_START:
                return "started";
        case ACTION_RESTART:
                return "restarted";
        default:
                return "reloaded";
        }
}

/* ---- results ------------------------------------------------------------- */

static void send_result(Agent *a, uint64_t epoch, bool is_restart, uint64_t generation,
                        const char *restart_id, bool ok, const char *error, const Outcome *outcomes,
                        size_t n) {
        Baton__V1__CommandResult res = BATON__V1__COMMAND_RESULT__INIT;
        _cleanup_free_ Baton__V1__UnitOutcome *uo = calloc(n ? n : 1, sizeof(*uo));
        _cleanup_free_ Baton__V1__UnitOutcome **up = calloc(n ? n : 1, sizeof(*up));
        int r;

        if (!uo || !up)
                return;
        for (size_t i = 0; i < n; i++) {
                baton__v1__unit_outcome__init(&uo[i]);
                uo[i].unit = outcomes[i].unit;
                uo[i].action = (char *) outcomes[i].action;
                uo[i].ok = outcomes[i].ok;
                uo[i].result = (char *) strempty(outcomes[i].result);
                up[i] = &uo[i];
        }
        res.host = a->config.host;
        res.epoch = epoch;
        if (is_restart) {
                res.command_case = BATON__V1__COMMAND_RESULT__COMMAND_RESTART_ID;
                res.restart_id = (char *) restart_id;
        } else {
                res.command_case = BATON__V1__COMMAND_RESULT__COMMAND_GENERATION;
                res.generation = generation;
        }
        res.ok = ok;
        res.error = (char *) strempty(error);
        res.n_units = n;
        res.units = up;
        res.at_us = now_realtime_usec();
        r = agent_publish_status(a, TOPOLOGY_KIND_RESULT, &res.base, false);
        if (r < 0)
                log_warning_errno(r, "Failed to queue a command result: %s, ignoring.",
                                  STRERROR(r));
}

/* ---- paths --------------------------------------------------------------- */

static char *unit_path(Agent *a, const char *file_name) {
        char *p;

        if (asprintf(&p, "%s/%s", a->unit_dir, file_name) < 0)
                return NULL;
        return p;
}

/* A file is foreign when it exists and baton did not write it. */
static int check_foreign(Agent *a, const char *file_name, char ***list, size_t *n) {
        _cleanup_free_ char *path = unit_path(a, file_name), *text = NULL;
        char **p;
        int r;

        if (!path)
                return -ENOMEM;
        for (size_t i = 0; i < *n; i++)
                if (streq((*list)[i], file_name))
                        return 0;
        r = read_full_file(path, 1024 * 1024, &text, NULL);
        if (r == -ENOENT)
                return 0;
        if (r >= 0 && (managed_file_is_managed(text) || dropin_text_is_managed(text)))
                return 0;
        /* Unreadable counts as foreign: never overwrite what we cannot vouch for. */
        p = realloc(*list, (*n + 1) * sizeof(char *));
        if (!p)
                return -ENOMEM;
        *list = p;
        p[*n] = strdup(file_name);
        if (!p[*n])
                return -ENOMEM;
        (*n)++;
        return 0;
}

static int collect_foreign(Agent *a, const char *unit, char ***list, size_t *n) {
        _cleanup_free_ char *file = NULL, *dropin = NULL;
        int r;

        if (converge_unit_file_name(unit, &file) < 0 ||
            converge_dropin_file_name(unit, &dropin) < 0)
                return 0; /* invalid names are refused by the planner */
        r = check_foreign(a, file, list, n);
        if (r >= 0)
                r = check_foreign(a, dropin, list, n);
        return r;
}

/* ---- carrying out actions ------------------------------------------------ */

static void action_done(Apply *x, const Action *act, bool ok, const char *result) {
        record(x, act->unit ? act->unit : "", action_word(act->type), ok, result);
        if (!ok)
                log_warning("%s %s failed: %s", action_type_to_string(act->type), strna(act->unit),
                            strna(result));
}

static void on_job_done(Systemd *s, const char *unit, const char *result, int error,
                        const char *message, void *userdata) {
        ActionCtx *c = userdata;
        Apply *x = c->x;

        if (x->a->stopping) {
                free(c);
                return;
        }
        if (result)
                action_done(x, c->action, streq(result, "done"), result);
        else
                action_done(x, c->action, false, message ? message : STRERROR(error));
        free(c);
        assert(x->in_flight > 0);
        if (--x->in_flight == 0)
                run_next(x);
}

static void on_call_done(Systemd *s, int error, const char *message, void *userdata) {
        ActionCtx *c = userdata;
        Apply *x = c->x;

        if (x->a->stopping) {
                free(c);
                return;
        }
        if (c->action->type == ACTION_DAEMON_RELOAD) {
                if (error < 0)
                        log_warning("daemon-reload failed: %s", strna(message));
                /* LoadState changes without a signal on reload; the replies
                 * arrive before those of the jobs that follow. */
                (void) systemd_refresh(x->a->systemd);
        } else
                action_done(x, c->action, error >= 0, error >= 0 ? "done" : message);
        free(c);
        assert(x->in_flight > 0);
        if (--x->in_flight == 0)
                run_next(x);
}

static int write_action(Apply *x, const Action *act) {
        Agent *a = x->a;
        _cleanup_free_ char *path = unit_path(a, act->file_name), *text = NULL;
        int r;

        if (!path)
                return -ENOMEM;
        if (act->type == ACTION_WRITE_FILE) {
                r = managed_file_render(act->content, &text);
                if (r < 0)
                        return r;
        } else {
                _cleanup_free_ char *dir = strdup(path);
                if (!dir)
                        return -ENOMEM;
                *strrchr(dir, '/') = 0;
                if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                        return negative_errno();
                text = strdup(act->content);
                if (!text)
                        return -ENOMEM;
        }
        return write_file_atomic(path, text, strlen(text), 0644);
}

static int remove_action(Apply *x, const Action *act) {
        _cleanup_free_ char *path = unit_path(x->a, act->file_name);

        if (!path)
                return -ENOMEM;
        if (unlink(path) < 0 && errno != ENOENT)
                return negative_errno();
        if (act->type == ACTION_REMOVE_DROPIN) {
                *strrchr(path, '/') = 0;
                (void) rmdir(path); /* only if empty: other drop-ins are not ours */
        }
        return 0;
}

/* Launches one action. Returns 1 if it completes asynchronously. */
static int launch(Apply *x, const Action *act) {
        Agent *a = x->a;
        ActionCtx *c;
        int r;

        switch (act->type) {
        case ACTION_REFUSE:
                record(x, act->unit ? act->unit : "", "refused", false, act->reason);
                return 0;
        case ACTION_WRITE_FILE:
        case ACTION_WRITE_DROPIN:
                r = write_action(x, act);
                action_done(x, act, r >= 0, r >= 0 ? act->reason : STRERROR(r));
                return 0;
        case ACTION_REMOVE_FILE:
        case ACTION_REMOVE_DROPIN:
                r = remove_action(x, act);
                action_done(x, act, r >= 0, r >= 0 ? act->reason : STRERROR(r));
                return 0;
        default:
                break;
        }

        /* A unit whose files could not be written is not started on old ones. */
        if (act->type == ACTION_START || act->type == ACTION_RESTART ||
            act->type == ACTION_ENABLE) {
                _cleanup_free_ char *file = NULL;

                if (failed(x, act->unit) ||
                    (converge_unit_file_name(act->unit, &file) >= 0 && failed(x, file)))
                        return 0;
        }

        c = calloc(1, sizeof(ActionCtx));
        if (!c)
                return -ENOMEM;
        *c = (ActionCtx){ .x = x, .action = act };
        switch (act->type) {
        case ACTION_DAEMON_RELOAD:
                r = systemd_reload(a->systemd, on_call_done, c);
                break;
        case ACTION_ENABLE:
        case ACTION_DISABLE:
                r = systemd_enable(a->systemd, (const char *const[]){ act->unit }, 1,
                                   act->type == ACTION_ENABLE, a->wants_target, on_call_done, c);
                break;
        case ACTION_START:
                r = systemd_job(a->systemd, JOB_START, act->unit, on_job_done, c);
                break;
        case ACTION_RESTART:
                r = systemd_job(a->systemd, JOB_RESTART, act->unit, on_job_done, c);
                break;
        case ACTION_STOP:
                r = systemd_job(a->systemd, JOB_STOP, act->unit, on_job_done, c);
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                free(c);
                action_done(x, act, false, STRERROR(r));
                return 0;
        }
        return 1;
}

static void finish(Apply *x);

static void run_next(Apply *x) {
        while (x->in_flight == 0 && x->next < x->plan.n_actions) {
                ActionType group = x->plan.actions[x->next].type;

                /* One group at a time, all of it at once. */
                while (x->next < x->plan.n_actions && x->plan.actions[x->next].type == group) {
                        int r = launch(x, &x->plan.actions[x->next++]);
                        if (r > 0)
                                x->in_flight++;
                        else if (r < 0)
                                log_warning_errno(r, "Failed to launch an action: %s", STRERROR(r));
                }
        }
        if (x->in_flight == 0 && x->next >= x->plan.n_actions)
                finish(x);
}

/* ---- completion ---------------------------------------------------------- */

static bool desired_has(const Apply *x, const char *unit) {
        for (size_t i = 0; i < x->n_desired; i++)
                if (streq(x->desired[i].name, unit))
                        return true;
        return false;
}

static void finish(Apply *x) {
        Agent *a = x->a;
        const Baton__V1__Placement *p = x->p;
        _cleanup_free_ char *error = NULL;
        size_t n_refused = x->plan.n_refused, i;
        char **gone = NULL;
        size_t n_gone = 0;

        /* x->managed borrows strings from the state, which the updates below
         * free: first note which managed units are gone. */
        for (i = 0; i < x->n_managed; i++) {
                const char *name = x->managed[i].name;
                char **q;

                if (desired_has(x, name) || plan_refuses(&x->plan, name) || failed(x, name))
                        continue;
                q = realloc(gone, (n_gone + 1) * sizeof(char *));
                if (!q)
                        break;
                gone = q;
                gone[n_gone] = strdup(name);
                if (gone[n_gone])
                        n_gone++;
        }
        x->managed = mfree(x->managed);
        x->n_managed = 0;

        /* The state records exactly what now runs as baton installed it. */
        for (i = 0; i < x->n_desired; i++) {
                const DesiredUnit *d = &x->desired[i];
                const Baton__V1__PlacedUnit *u = p->units[i];
                _cleanup_free_ char *file = NULL;

                if (plan_refuses(&x->plan, d->name) || failed(x, d->name) ||
                    (d->template_name && failed(x, d->template_name)))
                        continue;
                if (converge_unit_file_name(d->name, &file) < 0)
                        continue;
                (void) outcome_for(x, d->name);
                if (agent_state_set_unit(&a->state, d->name, file, x->hashes[i],
                                         !isempty(d->dropin_text)) < 0)
                        continue;
                (void) systemd_watch(a->systemd, d->name);
                if (u->shards && u->shards->shard_count > 0)
                        (void) agent_set_shard_info(a, d->name, u->service, u->instance,
                                                    u->shards->shards, u->shards->shard_count,
                                                    u->shards->shard_epoch);
                else
                        agent_forget_shard_info(a, d->name);
        }
        for (i = 0; i < n_gone; i++) {
                (void) agent_state_remove_unit(&a->state, gone[i]);
                systemd_unwatch(a->systemd, gone[i]);
                agent_forget_shard_info(a, gone[i]);
                free(gone[i]);
        }
        free(gone);

        a->state.applied_epoch = p->epoch;
        a->state.applied_generation = p->generation;
        (void) agent_save_state(a);
        a->counters.placements_applied++;

        if (n_refused > 0 || x->n_failed > 0)
                (void) asprintf(&error, "%zu unit(s) refused, %zu action(s) failed", n_refused,
                                x->n_failed);
        log_info("Applied placement %" PRIu64 "/%" PRIu64 ": %zu units, %zu actions%s%s.", p->epoch,
                 p->generation, x->n_desired, x->plan.n_actions, error ? "; " : "",
                 strempty(error));
        send_result(a, p->epoch, false, p->generation, NULL, n_refused == 0 && x->n_failed == 0,
                    error, x->outcomes, x->n_outcomes);
        agent_ack(a, x->delivery_tag);
        (void) agent_send_shard_report(a);
        (void) agent_send_heartbeat(a);

        a->apply = apply_free(x);
        if (a->pending.set) {
                CodecDecoded next = a->pending.decoded;
                uint64_t tag = a->pending.delivery_tag;

                a->pending.decoded = (CodecDecoded){ 0 };
                a->pending.set = false;
                apply_start(a, &next, tag);
        }
}

Apply *apply_free(Apply *x) {
        if (!x)
                return NULL;
        for (size_t i = 0; i < x->n_desired; i++)
                free(x->dropins[i]);
        free(x->dropins);
        free(x->hashes);
        free(x->desired);
        free(x->managed);
        plan_done(&x->plan);
        for (size_t i = 0; i < x->n_outcomes; i++) {
                free(x->outcomes[i].unit);
                free(x->outcomes[i].result);
        }
        free(x->outcomes);
        codec_decoded_done(&x->decoded);
        free(x);
        return NULL;
}

/* ---- starting ------------------------------------------------------------ */

/* Builds the desired units; -EINVAL with *ret_error for a unit whose
 * environment cannot be rendered (the whole Placement is refused then: a
 * partial one would remove what it failed to describe). */
static int build_desired(Apply *x, char **ret_error) {
        Agent *a = x->a;
        const Baton__V1__Placement *p = x->p;
        int r;

        x->n_desired = p->n_units;
        x->desired = calloc(p->n_units ? p->n_units : 1, sizeof(DesiredUnit));
        x->dropins = calloc(p->n_units ? p->n_units : 1, sizeof(char *));
        x->hashes = calloc(p->n_units ? p->n_units : 1, sizeof(*x->hashes));
        if (!x->desired || !x->dropins || !x->hashes)
                return -ENOMEM;

        for (size_t i = 0; i < p->n_units; i++) {
                const Baton__V1__PlacedUnit *u = p->units[i];
                _cleanup_free_ DropinEnv *env = calloc(u->n_env ? u->n_env : 1, sizeof(DropinEnv));
                _cleanup_free_ char *why = NULL;
                DropinInput in = {
                        .host = a->config.host,
                        .service = u->service,
                        .instance = u->instance,
                        .has_instance = !isempty(u->template_name),
                };

                if (!env)
                        return -ENOMEM;
                for (size_t k = 0; k < u->n_env; k++)
                        env[k] = (DropinEnv){ u->env[k]->name, u->env[k]->value };
                in.env = env;
                in.n_env = u->n_env;
                if (u->shards && u->shards->shard_count > 0) {
                        in.shards = u->shards->shards;
                        in.shard_count = u->shards->shard_count;
                        in.shard_epoch = u->shards->shard_epoch;
                        in.has_shards = true;
                }
                /* A unit without a service name is refused by the planner
                 * (it has no drop-in); otherwise the environment must render. */
                if (!isempty(u->service)) {
                        r = dropin_validate(&in, &why);
                        if (r < 0)
                                return error_set(ret_error, r, "unit %s: %s", strna(u->name),
                                                 why ? why : STRERROR(r));
                        r = dropin_render(&in, &x->dropins[i]);
                        if (r < 0)
                                return r;
                }
                /* The controller's hash says what of the unit text matters
                 * (not its [X-Baton] section); the drop-in always does. */
                r = config_hash(config_hash_is_valid(u->config_hash) ? u->config_hash
                                                                     : u->unit_text,
                                x->dropins[i], x->hashes[i]);
                if (r < 0)
                        return r;
                x->desired[i] = (DesiredUnit){
                        .name = u->name,
                        .unit_text = u->unit_text,
                        .template_name = isempty(u->template_name) ? NULL : u->template_name,
                        .service = u->service,
                        .instance = u->instance,
                        .dropin_text = x->dropins[i],
                        .config_hash = x->hashes[i],
                        .running = u->running,
                        .defer_restart = u->defer_restart,
                };
        }
        return 0;
}

static void apply_start(Agent *a, CodecDecoded *d, uint64_t tag) {
        _cleanup_free_ ObservedUnit *observed = NULL;
        _cleanup_free_ char *error = NULL;
        char **foreign = NULL;
        size_t n_foreign = 0, n_observed = 0;
        Apply *x;
        int r;

        x = calloc(1, sizeof(Apply));
        if (!x) {
                codec_decoded_done(d);
                return;
        }
        x->a = a;
        x->decoded = *d;
        *d = (CodecDecoded){ 0 };
        x->p = (const Baton__V1__Placement *) x->decoded.body;
        x->delivery_tag = tag;
        a->apply = x;

        r = build_desired(x, &error);
        if (r < 0) {
                _cleanup_free_ char *why = NULL;
                (void) asprintf(&why, "placement %" PRIu64 "/%" PRIu64 " refused: %s", x->p->epoch,
                                x->p->generation, error ? error : STRERROR(r));
                send_result(a, x->p->epoch, false, x->p->generation, NULL, false, why, NULL, 0);
                agent_refuse(a, tag, "Placement", why ? why : "invalid placement");
                a->apply = apply_free(x);
                return;
        }

        r = agent_state_managed_units(&a->state, &x->managed, &x->n_managed);
        if (r < 0)
                goto oom;
        observed = calloc(x->n_desired + x->n_managed + 1, sizeof(ObservedUnit));
        if (!observed)
                goto oom;
        for (size_t i = 0; i < x->n_desired + x->n_managed; i++) {
                const char *name =
                        i < x->n_desired ? x->desired[i].name : x->managed[i - x->n_desired].name;
                const UnitInfo *u = systemd_unit(a->systemd, strempty(name));

                if (isempty(name))
                        continue;
                if (collect_foreign(a, name, &foreign, &n_foreign) < 0)
                        goto oom;
                if (u && u->known)
                        observed[n_observed++] =
                                (ObservedUnit){ u->name, u->load_state, u->active_state };
        }

        r = converge_plan(x->desired, x->n_desired, x->managed, x->n_managed, observed, n_observed,
                          (const char *const *) foreign, n_foreign, a->config.manage_units,
                          CONVERGE_START_INACTIVE, &x->plan);
        for (size_t i = 0; i < n_foreign; i++)
                free(foreign[i]);
        free(foreign);
        foreign = NULL;
        if (r < 0)
                goto oom;

        for (size_t i = 0; i < x->plan.n_refused; i++)
                log_fields(LOG_WARNING, 0,
                           LOG_FIELDS({ "BATON_UNIT", strempty(x->plan.actions[i].unit) }),
                           "Refusing unit %s: %s", strempty(x->plan.actions[i].unit),
                           x->plan.actions[i].reason);
        /* Watch before acting: the replies to these reads come before any job
         * result on this connection, so the result and the next heartbeat
         * see the units' real states. */
        for (size_t i = 0; i < x->n_desired; i++)
                if (!plan_refuses(&x->plan, x->desired[i].name))
                        (void) systemd_watch(a->systemd, x->desired[i].name);
        log_info("Applying placement %" PRIu64 "/%" PRIu64 ": %zu units, %zu actions.", x->p->epoch,
                 x->p->generation, x->n_desired, x->plan.n_actions);
        run_next(x);
        return;

oom:
        for (size_t i = 0; i < n_foreign; i++)
                free(foreign[i]);
        free(foreign);
        log_error("Out of memory while planning; the placement will be redelivered.");
        (void) broker_reject(a->broker, tag, true);
        a->apply = apply_free(x);
}

/* ---- entry points -------------------------------------------------------- */

/* Raises and persists the highest epoch seen, before anything is acted on. */
static void see_epoch(Agent *a, uint64_t epoch) {
        if (epoch <= a->state.max_epoch_seen)
                return;
        log_info("Controller epoch is now %" PRIu64 " (was %" PRIu64 ").", epoch,
                 a->state.max_epoch_seen);
        a->state.max_epoch_seen = epoch;
        (void) agent_save_state(a);
}

void apply_placement(Agent *a, CodecDecoded *d, uint64_t tag) {
        const Baton__V1__Placement *p = (const Baton__V1__Placement *) d->body;
        _cleanup_free_ char *why = NULL;
        int order;

        if (!streq_ptr(p->host, a->config.host)) {
                (void) asprintf(&why, "placement for host '%s' delivered to %s", strna(p->host),
                                a->config.host);
                agent_refuse(a, tag, "Placement", why ? why : "wrong host");
                codec_decoded_done(d);
                return;
        }
        /* The signature covers the body, so fencing uses the body's epoch. */
        if (p->epoch < a->state.max_epoch_seen) {
                (void) asprintf(&why,
                                "stale epoch %" PRIu64 " (highest seen %" PRIu64
                                "): a controller from the past",
                                p->epoch, a->state.max_epoch_seen);
                send_result(a, p->epoch, false, p->generation, NULL, false, why, NULL, 0);
                agent_refuse(a, tag, "Placement", why ? why : "stale epoch");
                codec_decoded_done(d);
                return;
        }
        see_epoch(a, p->epoch);

        order = placement_order(p->epoch, p->generation, a->state.applied_epoch,
                                a->state.applied_generation);
        if (order <= 0 && !a->apply) {
                /* Level-triggered: a re-delivered or older Placement changes nothing. */
                (void) asprintf(
                        &why, "generation %" PRIu64 "/%" PRIu64 " %s", p->epoch, p->generation,
                        order == 0 ? "is already applied" : "is older than the one applied");
                log_info("Placement %s; nothing to do.", strna(why));
                send_result(a, p->epoch, false, p->generation, NULL, order == 0, why, NULL, 0);
                agent_ack(a, tag);
                codec_decoded_done(d);
                return;
        }

        if (a->apply) {
                const Baton__V1__Placement *cur = a->apply->p;
                const Baton__V1__Placement *pend =
                        a->pending.set ? (const Baton__V1__Placement *) a->pending.decoded.body
                                       : NULL;

                /* Only the newest waiting Placement matters. */
                if (placement_order(p->epoch, p->generation, cur->epoch, cur->generation) <= 0 ||
                    (pend && placement_order(p->epoch, p->generation, pend->epoch,
                                             pend->generation) <= 0)) {
                        send_result(a, p->epoch, false, p->generation, NULL, false,
                                    "superseded by a newer placement", NULL, 0);
                        agent_ack(a, tag);
                        codec_decoded_done(d);
                        return;
                }
                if (pend) {
                        send_result(a, pend->epoch, false, pend->generation, NULL, false,
                                    "superseded by a newer placement", NULL, 0);
                        agent_ack(a, a->pending.delivery_tag);
                        codec_decoded_done(&a->pending.decoded);
                }
                a->pending.decoded = *d;
                a->pending.delivery_tag = tag;
                a->pending.set = true;
                *d = (CodecDecoded){ 0 };
                return;
        }
        apply_start(a, d, tag);
}

typedef struct RestartCtx {
        Agent *a;
        uint64_t tag;
        uint64_t epoch;
        char *id;
} RestartCtx;

static void on_restart_done(Systemd *s, const char *unit, const char *result, int error,
                            const char *message, void *userdata) {
        RestartCtx *c = userdata;

        if (c->a->stopping) {
                free(c->id);
                free(c);
                return;
        }
        Outcome o = {
                .unit = (char *) unit,
                .action = "restarted",
                .ok = result && streq(result, "done"),
                .result = (char *) (result    ? result
                                    : message ? message
                                              : STRERROR(error)),
        };

        log_info("Restart %s of %s: %s.", c->id, unit, o.result);
        c->a->counters.restarts_run++;
        send_result(c->a, c->epoch, true, 0, c->id, o.ok, o.ok ? NULL : o.result, &o, 1);
        agent_ack(c->a, c->tag);
        free(c->id);
        free(c);
}

void apply_restart(Agent *a, CodecDecoded *d, uint64_t tag) {
        const Baton__V1__Restart *rs = (const Baton__V1__Restart *) d->body;
        _cleanup_free_ char *why = NULL;
        uint64_t now = now_realtime_usec();
        bool managed = false;
        RestartCtx *c;
        JobKind kind = JOB_RESTART;
        int r;

        if (!streq_ptr(rs->host, a->config.host))
                (void) asprintf(&why, "restart for host '%s' delivered to %s", strna(rs->host),
                                a->config.host);
        else if (rs->epoch < a->state.max_epoch_seen)
                (void) asprintf(&why, "stale epoch %" PRIu64 " (highest seen %" PRIu64 ")",
                                rs->epoch, a->state.max_epoch_seen);
        else if (!agent_state_restart_id_is_valid(rs->id))
                (void) asprintf(&why, "invalid restart id");
        else if (rs->not_after_us > 0 && rs->not_after_us < now)
                (void) asprintf(&why, "expired %.1fs ago",
                                (double) (now - rs->not_after_us) / USEC_PER_SEC);
        else if (!unit_name_is_valid(rs->unit, UNIT_NAME_PLAIN | UNIT_NAME_INSTANCE))
                (void) asprintf(&why, "invalid unit name");
        else if (!unit_name_matches_globs(rs->unit, a->config.manage_units))
                (void) asprintf(&why, "%s is not allowed by manage_units", rs->unit);
        else if ((kind = job_kind_from_string(isempty(rs->mode) ? "restart" : rs->mode)) !=
                         JOB_RESTART &&
                 kind != JOB_TRY_RESTART)
                (void) asprintf(&why, "unknown mode '%s'", rs->mode);
        if (why) {
                if (agent_state_restart_id_is_valid(rs->id))
                        send_result(a, rs->epoch, true, 0, rs->id, false, why, NULL, 0);
                agent_refuse(a, tag, "Restart", why);
                codec_decoded_done(d);
                return;
        }
        see_epoch(a, rs->epoch);

        for (size_t i = 0; i < a->state.n_units; i++)
                if (streq(a->state.units[i].name, rs->unit))
                        managed = true;
        if (!managed) {
                (void) asprintf(&why, "%s is not managed by this agent", rs->unit);
                send_result(a, rs->epoch, true, 0, rs->id, false, why, NULL, 0);
                agent_refuse(a, tag, "Restart", why ? why : "unit not managed");
                codec_decoded_done(d);
                return;
        }

        if (agent_state_restart_seen(&a->state, rs->id)) {
                Outcome o = { .unit = rs->unit,
                              .action = "unchanged",
                              .ok = true,
                              .result = (char *) "already executed" };
                log_info("Restart %s was already executed; not running it again.", rs->id);
                send_result(a, rs->epoch, true, 0, rs->id, true, NULL, &o, 1);
                agent_ack(a, tag);
                codec_decoded_done(d);
                return;
        }

        /* At most once: durable before the job starts, so a crash in between
         * means not run rather than run twice. */
        r = agent_state_restart_record(&a->state, rs->id, rs->not_after_us, now);
        if (r >= 0)
                r = agent_save_state(a);
        if (r < 0) {
                log_error_errno(r, "Failed to record restart %s: %s; it will be redelivered.",
                                rs->id, STRERROR(r));
                (void) broker_reject(a->broker, tag, true);
                codec_decoded_done(d);
                return;
        }

        c = calloc(1, sizeof(RestartCtx));
        if (c)
                c->id = strdup(rs->id);
        if (!c || !c->id) {
                free(c);
                codec_decoded_done(d);
                return;
        }
        c->a = a;
        c->tag = tag;
        c->epoch = rs->epoch;
        r = systemd_job(a->systemd, kind, rs->unit, on_restart_done, c);
        if (r < 0)
                on_restart_done(a->systemd, rs->unit, NULL, r, STRERROR(r), c);
        codec_decoded_done(d);
}
