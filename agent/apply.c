/* SPDX-License-Identifier: MIT */
/* Carrying out commands. A Placement is checked (host, epoch fencing,
 * (epoch, generation) order); systemd is asked where each unit comes from;
 * agent/core/converge turns it into a plan; the units about to be written or
 * started are recorded in the state file as pending before anything is done
 * (the intent); then the plan is executed group by group: stops, file
 * removals, file writes, one daemon-reload, enables, starts, restarts and
 * reloads (a new shard set in a shards file); actions of one group run
 * concurrently. The state file is updated for what
 * succeeded, then a CommandResult goes out and the delivery is acked. A
 * Placement that arrives meanwhile waits; a newer one replaces it. Restarts
 * wait too, and are checked again once the Placement is done.
 *
 * Nothing is lost and nothing is started unrecorded: when the state cannot be
 * saved or memory runs out, a command is held (not acked, not refused) and
 * tried again on a timer. A Restart id runs at most once: everything the job
 * needs is allocated, then the id is recorded durably, then the job starts. */
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

/* Held commands are tried again after this, doubling up to the maximum. */
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 10000

typedef struct Outcome {
        char *unit;
        const char *action;
        bool ok;
        char *result;
} Outcome;

typedef enum ApplyPhase {
        APPLY_PROBING, /* asking systemd where each unit comes from */
        APPLY_RUNNING, /* the intent is saved; actions under way */
        APPLY_HELD,    /* nothing done; planned again when the retry timer fires */
        APPLY_SAVING,  /* all done but the final state save; saved again on the timer */
} ApplyPhase;

struct Apply {
        Agent *a;
        CodecDecoded decoded;
        const Baton__V1__Placement *p;
        uint64_t delivery_tag;
        ApplyPhase phase;
        bool failure_reported; /* one CommandResult per Placement for a held one */

        DesiredUnit *desired;
        size_t n_desired;
        char **dropins;
        char **shards_texts; /* DesiredUnit.shards_text */
        char (*hashes)[17];
        char **origins; /* ObservedUnit.origin strings, while planning */
        size_t n_origins;
        Plan plan;

        size_t next;
        size_t in_flight;
        Outcome *outcomes;
        size_t n_outcomes;
        size_t n_failed;
        bool outcomes_lost; /* an outcome could not be recorded (out of memory) */
};

typedef struct ActionCtx {
        Apply *x;
        const Action *action;
} ActionCtx;

static void apply_start(Agent *a, CodecDecoded *d, uint64_t tag);
static void apply_plan(Apply *x);
static void run_next(Apply *x);
static void run_waiting(Agent *a);

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

        if (!o) {
                /* The result then says so rather than claim success. */
                x->outcomes_lost = true;
                return;
        }
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
        case ACTION_REMOVE_SHARDS:
                return "removed";
        case ACTION_WRITE_FILE:
        case ACTION_WRITE_DROPIN:
        case ACTION_WRITE_SHARDS:
                return "installed";
        case ACTION_ENABLE:
                return "enabled";
        case ACTION_START:
                return "started";
        case ACTION_RESTART:
                return "restarted";
        case ACTION_RELOAD: /* the unit's process re-read its shards file */
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

        if (!uo || !up) {
                log_warning("Out of memory sending a command result, ignoring.");
                return;
        }
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

/* ---- the state file ------------------------------------------------------ */

/* Writes `s` as the agent's state file. The caller decides what a failure
 * means; it is logged here, once. */
static int state_write(Agent *a, const AgentState *s) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = agent_state_format(s, &text);
        if (r >= 0)
                r = write_file_atomic(a->state_path, text, strlen(text), 0600);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %s", a->state_path, STRERROR(r));
        a->retry_attempt = 0; /* the disk works again: retries start over */
        return 0;
}

/* Makes `next` the agent's state if, and only if, it is saved. Takes over
 * `next` either way. */
static int state_commit(Agent *a, AgentState *next) {
        int r;

        r = state_write(a, next);
        if (r < 0) {
                agent_state_done(next);
                return r;
        }
        agent_state_done(&a->state);
        a->state = *next;
        *next = (AgentState){ 0 };
        return 0;
}

/* ---- holding commands ---------------------------------------------------- */

static uint64_t retry_delay_ms(unsigned attempt) {
        return MIN((uint64_t) RETRY_MIN_MS << MIN(attempt, 16u), (uint64_t) RETRY_MAX_MS);
}

static void on_retry_timer(uv_timer_t *t);

/* (Re)arms the one retry timer; an earlier deadline already set is kept. */
static void arm_retry(Agent *a) {
        uint64_t ms = retry_delay_ms(a->retry_attempt);

        if (a->stopping)
                return;
        if (uv_is_active((uv_handle_t *) &a->retry_timer) &&
            uv_timer_get_due_in(&a->retry_timer) <= ms)
                return;
        a->retry_attempt++;
        /* cannot fail on an initialized timer */
        (void) uv_timer_start(&a->retry_timer, on_retry_timer, ms, 0);
}

static int wait_restart(Agent *a, CodecDecoded *d, uint64_t tag) {
        WaitingRestart *w;

        w = reallocarray(a->waiting, a->n_waiting + 1, sizeof(WaitingRestart));
        if (!w)
                return -ENOMEM;
        a->waiting = w;
        a->waiting[a->n_waiting++] = (WaitingRestart){ .decoded = *d, .delivery_tag = tag };
        *d = (CodecDecoded){ 0 };
        return 0;
}

/* A Placement that could not even be taken on waits in a->pending, which is
 * free whenever nothing is being applied. */
static void hold_unstarted_placement(Agent *a, CodecDecoded *d, uint64_t tag) {
        assert(!a->apply);
        assert(!a->pending.set);

        a->pending.decoded = *d;
        a->pending.delivery_tag = tag;
        a->pending.set = true;
        *d = (CodecDecoded){ 0 };
        arm_retry(a);
}

/* Frees the first n strings of v (NULLs allowed) and v. */
static void strings_free(char **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

/* ---- paths --------------------------------------------------------------- */

static char *unit_path(Agent *a, const char *file_name) {
        char *p;

        if (asprintf(&p, "%s/%s", a->unit_dir, file_name) < 0)
                return NULL;
        return p;
}

static char *shards_path(Agent *a, const char *file_name) {
        char *p;

        if (asprintf(&p, "%s/%s", a->shards_dir, file_name) < 0)
                return NULL;
        return p;
}

/* Where an action's file is: shards files have a directory of their own. */
static char *action_path(Apply *x, const Action *act) {
        if (act->type == ACTION_WRITE_SHARDS || act->type == ACTION_REMOVE_SHARDS)
                return shards_path(x->a, act->file_name);
        return unit_path(x->a, act->file_name);
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
        if (r == -ENOMEM)
                return r;
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

        r = converge_unit_file_name(unit, &file);
        if (r >= 0)
                r = converge_dropin_file_name(unit, &dropin);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return 0; /* invalid names are refused by the planner */
        r = check_foreign(a, file, list, n);
        if (r >= 0)
                r = check_foreign(a, dropin, list, n);
        return r;
}

static bool same_file(const char *a, const char *b) {
        struct stat sa, sb;

        if (streq(a, b))
                return true;
        return stat(a, &sa) >= 0 && stat(b, &sb) >= 0 && sa.st_dev == sb.st_dev &&
               sa.st_ino == sb.st_ino;
}

/* Where, other than a file in our unit directory, systemd has `unit` from:
 * *ret is NULL when nowhere. Asked of systemd (FragmentPath, LoadState),
 * then of every other directory on its search path, where a unit of that
 * name or its template would be shadowed by ours now and come back (or be
 * broken: its enablement removed) when ours goes. */
static int unit_origin(Agent *a, const UnitProbe *u, char *const *search_path, char **ret) {
        _cleanup_free_ char *file = NULL, *ours = NULL;
        struct stat unit_dir_st;
        bool have_unit_dir;
        int r;

        *ret = NULL;
        if (u->error)
                return asprintf(ret, "systemd cannot say where it comes from: %s", u->error) < 0
                               ? -ENOMEM
                               : 0;
        if (streq(u->load_state, "masked"))
                return asprintf(ret, "masked%s%s", isempty(u->fragment_path) ? "" : " by ",
                                strempty(u->fragment_path)) < 0
                               ? -ENOMEM
                               : 0;
        r = converge_unit_file_name(u->name, &file);
        if (r < 0)
                return r;
        ours = unit_path(a, file);
        if (!ours)
                return -ENOMEM;
        if (!isempty(u->fragment_path) && !same_file(u->fragment_path, ours))
                return (*ret = strdup(u->fragment_path)) ? 0 : -ENOMEM;

        have_unit_dir = stat(a->unit_dir, &unit_dir_st) >= 0;
        for (char *const *d = search_path; d && *d; d++) {
                const char *names[] = { file, streq(file, u->name) ? NULL : u->name };
                struct stat st;

                if (stat(*d, &st) < 0)
                        continue; /* systemd lists directories that need not exist */
                if (have_unit_dir && st.st_dev == unit_dir_st.st_dev &&
                    st.st_ino == unit_dir_st.st_ino)
                        continue;
                for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                        _cleanup_free_ char *p = NULL;

                        if (!names[i])
                                continue;
                        if (asprintf(&p, "%s/%s", *d, names[i]) < 0)
                                return -ENOMEM;
                        if (lstat(p, &st) >= 0) {
                                *ret = TAKE_PTR(p);
                                return 0;
                        }
                        if (errno != ENOENT && errno != ENOTDIR)
                                /* Cannot tell: do not touch it. */
                                return asprintf(ret, "cannot check %s: %s", p, strerror(errno)) < 0
                                               ? -ENOMEM
                                               : 0;
                }
        }
        return 0;
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
        else if (error == -ENOENT && c->action->type == ACTION_STOP)
                /* systemd knows no such unit: nothing runs that could be stopped
                 * (a unit recorded as pending and never written, for one). */
                action_done(x, c->action, true, "not loaded");
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
        } else if (error == -ENOENT && c->action->type == ACTION_DISABLE)
                /* no unit file, so nothing can be enabled */
                action_done(x, c->action, true, "no unit file");
        else
                action_done(x, c->action, error >= 0, error >= 0 ? "done" : message);
        free(c);
        assert(x->in_flight > 0);
        if (--x->in_flight == 0)
                run_next(x);
}

static int write_action(Apply *x, const Action *act) {
        _cleanup_free_ char *path = action_path(x, act), *text = NULL;
        int r;

        if (!path)
                return -ENOMEM;
        if (act->type == ACTION_WRITE_FILE) {
                r = managed_file_render(act->content, &text);
                if (r < 0)
                        return r;
        } else if (act->type == ACTION_WRITE_SHARDS) {
                /* Read by the unit's process, which need not run as root:
                 * 0755 whatever the agent's umask (the package sets 0077). */
                r = mkdir_p(x->a->shards_dir, 0755);
                if (r >= 0 && chmod(x->a->shards_dir, 0755) < 0)
                        r = negative_errno();
                if (r < 0)
                        return r;
                text = strdup(act->content);
                if (!text)
                        return -ENOMEM;
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
        _cleanup_free_ char *path = action_path(x, act), *dir = NULL;
        int r;

        if (!path)
                return -ENOMEM;
        if (unlink(path) < 0) {
                if (errno == ENOENT)
                        return 0;
                return negative_errno();
        }
        /* Gone for good, also after a crash. */
        r = fsync_directory_of(path);
        if (r < 0 || act->type != ACTION_REMOVE_DROPIN)
                return r;
        dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        /* only if empty: other drop-ins are not ours */
        if (rmdir(dir) < 0)
                return 0;
        return fsync_directory_of(dir);
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
        case ACTION_WRITE_SHARDS:
                r = write_action(x, act);
                action_done(x, act, r >= 0, r >= 0 ? act->reason : STRERROR(r));
                return 0;
        case ACTION_REMOVE_FILE:
        case ACTION_REMOVE_DROPIN:
        case ACTION_REMOVE_SHARDS:
                r = remove_action(x, act);
                action_done(x, act, r >= 0, r >= 0 ? act->reason : STRERROR(r));
                return 0;
        default:
                break;
        }

        /* A unit whose files could not be written is not started on old ones,
         * nor reloaded to re-read an old shards file. */
        if (act->type == ACTION_START || act->type == ACTION_RESTART ||
            act->type == ACTION_ENABLE || act->type == ACTION_RELOAD) {
                _cleanup_free_ char *file = NULL;

                if (failed(x, act->unit) ||
                    (converge_unit_file_name(act->unit, &file) >= 0 && failed(x, file)))
                        return 0;
        }

        c = calloc(1, sizeof(ActionCtx));
        if (!c) {
                action_done(x, act, false, STRERROR(-ENOMEM));
                return 0;
        }
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
        case ACTION_RELOAD:
                r = systemd_job(a->systemd, JOB_RELOAD, act->unit, on_job_done, c);
                break;
        case ACTION_STOP:
                r = systemd_job(a->systemd, JOB_STOP, act->unit, on_job_done, c);
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                free(c);
                if (act->type == ACTION_DAEMON_RELOAD)
                        log_warning_errno(r, "Failed to ask for a daemon-reload: %s", STRERROR(r));
                else
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
                while (x->next < x->plan.n_actions && x->plan.actions[x->next].type == group)
                        if (launch(x, &x->plan.actions[x->next++]) > 0)
                                x->in_flight++;
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

/* The Placement is done and its state saved: report, ack, go on. */
static void complete(Apply *x) {
        Agent *a = x->a;
        const Baton__V1__Placement *p = x->p;
        _cleanup_free_ char *error = NULL;
        size_t n_refused = x->plan.n_refused;
        bool ok = n_refused == 0 && x->n_failed == 0 && !x->outcomes_lost;
        int r;

        a->counters.placements_applied++;
        if (!ok && asprintf(&error, "%zu unit(s) refused, %zu action(s) failed%s", n_refused,
                            x->n_failed, x->outcomes_lost ? ", some outcomes lost" : "") < 0)
                error = NULL;
        log_info("Applied placement %" PRIu64 "/%" PRIu64 ": %zu units, %zu actions%s%s.", p->epoch,
                 p->generation, x->n_desired, x->plan.n_actions, error ? "; " : "",
                 strempty(error));
        send_result(a, p->epoch, false, p->generation, NULL, ok,
                    ok      ? NULL
                    : error ? error
                            : "some units failed",
                    x->outcomes, x->n_outcomes);
        agent_ack(a, x->delivery_tag);
        (void) agent_send_shard_report(a); /* logs its own failure; retried on the next change */
        r = agent_send_heartbeat(a);
        if (r < 0)
                log_warning_errno(r, "Failed to send a heartbeat: %s, ignoring.", STRERROR(r));

        a->apply = apply_free(x);
        a->retry_attempt = 0;
        if (a->pending.set) {
                CodecDecoded next = a->pending.decoded;
                uint64_t tag = a->pending.delivery_tag;

                a->pending.decoded = (CodecDecoded){ 0 };
                a->pending.set = false;
                apply_start(a, &next, tag);
        }
        run_waiting(a);
}

/* Reports a held Placement's trouble once, so the controller hears of it. */
static void report_held(Apply *x, const char *why) {
        if (x->failure_reported)
                return;
        x->failure_reported = true;
        send_result(x->a, x->p->epoch, false, x->p->generation, NULL, false, why, NULL, 0);
}

static void finish(Apply *x) {
        Agent *a = x->a;
        const Baton__V1__Placement *p = x->p;
        size_t i;
        int r;

        /* The state records exactly what now runs as baton installed it; a
         * unit whose change failed keeps its pending record (or its old one),
         * so it is neither forgotten nor taken as done. */
        for (i = 0; i < x->n_desired; i++) {
                const DesiredUnit *d = &x->desired[i];
                const Baton__V1__PlacedUnit *u = p->units[i];
                _cleanup_free_ char *file = NULL;

                if (plan_refuses(&x->plan, d->name) || failed(x, d->name) ||
                    (d->template_name && failed(x, d->template_name)))
                        continue;
                if (converge_unit_file_name(d->name, &file) < 0)
                        continue;
                if (!outcome_for(x, d->name))
                        x->outcomes_lost = true;
                r = agent_state_set_unit(&a->state, d->name, file, x->hashes[i],
                                         !isempty(d->dropin_text));
                if (r < 0) {
                        log_warning_errno(r,
                                          "Failed to record %s as installed: %s; it stays "
                                          "pending.",
                                          d->name, STRERROR(r));
                        continue;
                }
                r = systemd_watch(a->systemd, d->name);
                if (r < 0)
                        log_warning_errno(r, "Failed to watch %s: %s, ignoring.", d->name,
                                          STRERROR(r));
                if (u->shards && u->shards->shard_count > 0)
                        r = agent_set_shard_info(a, d->name, u->service, u->instance,
                                                 u->shards->shards, u->shards->shard_count,
                                                 u->shards->shard_epoch);
                else
                        agent_forget_shard_info(a, d->name);
                if (r < 0)
                        log_warning_errno(r, "Failed to keep the shards of %s: %s, ignoring.",
                                          d->name, STRERROR(r));
        }
        /* What was managed, is no longer desired and was removed cleanly. */
        for (i = 0; i < a->state.n_units;) {
                _cleanup_free_ char *name = strdup(a->state.units[i].name);

                if (!name || desired_has(x, name) || plan_refuses(&x->plan, name) ||
                    failed(x, name)) {
                        i++;
                        continue;
                }
                (void) agent_state_remove_unit(&a->state, name); /* it is there */
                systemd_unwatch(a->systemd, name);
                agent_forget_shard_info(a, name);
        }

        a->state.applied_epoch = p->epoch;
        a->state.applied_generation = p->generation;
        r = state_write(a, &a->state);
        if (r < 0) {
                _cleanup_free_ char *why = NULL;

                /* Done, but not durable: the delivery stays unacked until it is. */
                x->phase = APPLY_SAVING;
                if (asprintf(&why,
                             "placement %" PRIu64 "/%" PRIu64 " applied, but the agent state "
                             "could not be saved (%s); retrying",
                             p->epoch, p->generation, STRERROR(r)) < 0)
                        why = NULL;
                log_warning("%s", why ? why : "State not saved; retrying.");
                report_held(x, why ? why : "agent state could not be saved");
                arm_retry(a);
                return;
        }
        complete(x);
}

/* What build_desired() made. */
static void desired_free(Apply *x) {
        for (size_t i = 0; i < x->n_desired; i++) {
                free(x->dropins ? x->dropins[i] : NULL);
                free(x->shards_texts ? x->shards_texts[i] : NULL);
        }
        x->dropins = mfree(x->dropins);
        x->shards_texts = mfree(x->shards_texts);
        x->hashes = mfree(x->hashes);
        x->desired = mfree(x->desired);
        x->n_desired = 0;
}

Apply *apply_free(Apply *x) {
        if (!x)
                return NULL;
        desired_free(x);
        for (size_t i = 0; i < x->n_origins; i++)
                free(x->origins[i]);
        free(x->origins);
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

/* ---- planning ------------------------------------------------------------ */

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
        x->shards_texts = calloc(p->n_units ? p->n_units : 1, sizeof(char *));
        if (!x->desired || !x->dropins || !x->hashes || !x->shards_texts)
                return -ENOMEM;

        for (size_t i = 0; i < p->n_units; i++) {
                const Baton__V1__PlacedUnit *u = p->units[i];
                _cleanup_free_ DropinEnv *env = calloc(u->n_env ? u->n_env : 1, sizeof(DropinEnv));
                _cleanup_free_ char *why = NULL, *shards_name = NULL, *shards_file = NULL;
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
                /* ShardChange=reload: the set goes to a file of its own, so
                 * that a new one changes neither the drop-in nor the hash. A
                 * unit whose name is invalid is refused by the planner. */
                if (in.has_shards && u->shards_reload) {
                        r = converge_shards_file_name(u->name, &shards_name);
                        if (r == -ENOMEM)
                                return r;
                        if (r >= 0) {
                                shards_file = shards_path(a, shards_name);
                                if (!shards_file)
                                        return -ENOMEM;
                                in.shards_file = shards_file;
                        }
                }
                /* A unit without a service name is refused by the planner
                 * (it has no drop-in); otherwise the environment must render. */
                if (!isempty(u->service)) {
                        r = dropin_validate(&in, &why);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                return error_set(ret_error, r, "unit %s: %s", strna(u->name),
                                                 why ? why : STRERROR(r));
                        r = dropin_render(&in, &x->dropins[i]);
                        if (r >= 0 && in.shards_file)
                                r = dropin_shards_text(&in, &x->shards_texts[i]);
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
                        .shards_text = x->shards_texts[i],
                };
        }
        return 0;
}

/* Back to "nothing done": what planning made is dropped, the Placement kept. */
static void reset_plan(Apply *x) {
        for (size_t i = 0; i < x->n_origins; i++)
                free(x->origins[i]);
        x->origins = mfree(x->origins);
        x->n_origins = 0;
        plan_done(&x->plan);
        for (size_t i = 0; i < x->n_outcomes; i++) {
                free(x->outcomes[i].unit);
                free(x->outcomes[i].result);
        }
        x->outcomes = mfree(x->outcomes);
        x->n_outcomes = x->n_failed = x->next = x->in_flight = 0;
        x->outcomes_lost = false;
}

/* Nothing was done: hold the Placement and plan it again later. */
static void hold(Apply *x, int error, const char *what) {
        _cleanup_free_ char *why = NULL;

        reset_plan(x);
        x->phase = APPLY_HELD;
        if (asprintf(&why,
                     "placement %" PRIu64 "/%" PRIu64 " not applied: %s (%s); nothing was "
                     "changed, retrying",
                     x->p->epoch, x->p->generation, what, STRERROR(error)) < 0)
                why = NULL;
        log_warning("%s", why ? why : "Placement held; retrying.");
        report_held(x, why ? why : what);
        arm_retry(x->a);
}

/* Records every unit about to be written or started as pending, durably,
 * before anything is done: a crash or a failed save can then never leave a
 * unit running that the state does not know. */
static int save_intent(Apply *x) {
        Agent *a = x->a;
        _cleanup_(agent_state_done) AgentState next = { 0 };
        int r;

        r = agent_state_copy(&a->state, &next);
        if (r < 0)
                return r;
        for (size_t i = 0; i < x->n_desired; i++) {
                const DesiredUnit *d = &x->desired[i];
                bool want_dropin = !isempty(d->dropin_text);
                _cleanup_free_ char *file = NULL;
                const ManagedUnitRec *m = NULL;

                if (plan_refuses(&x->plan, d->name))
                        continue;
                for (size_t k = 0; k < next.n_units; k++)
                        if (streq(next.units[k].name, d->name))
                                m = &next.units[k];
                if (m && !m->pending && streq(m->config_hash, x->hashes[i]) &&
                    m->has_dropin == want_dropin)
                        continue; /* its files are right: at most started or stopped */
                r = converge_unit_file_name(d->name, &file);
                if (r >= 0)
                        r = agent_state_mark_pending(&next, d->name, file, x->hashes[i],
                                                     want_dropin);
                if (r < 0)
                        return r;
        }
        return state_commit(a, &next);
}

/* What each managed unit's shards file holds now, for the planner: NULL
 * when there is none, "" when it cannot be read (then it is rewritten, or
 * removed). The texts go to *ret_texts, which the caller frees. */
static int read_shards_files(Apply *x, ManagedUnit *managed, size_t n, char ***ret_texts) {
        char **texts = calloc(n + 1, sizeof(char *));

        if (!texts)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *name = NULL, *path = NULL;
                int r;

                r = converge_shards_file_name(managed[i].name, &name);
                if (r == -EINVAL)
                        continue; /* refused by the planner */
                if (r >= 0) {
                        path = shards_path(x->a, name);
                        r = path ? read_full_file(path, DROPIN_SHARDS_FILE_MAX, &texts[i], NULL)
                                 : -ENOMEM;
                }
                if (r == -ENOENT)
                        continue;
                if (r == -ENOMEM) {
                        strings_free(texts, n);
                        return r;
                }
                if (r < 0) {
                        log_warning_errno(r, "Failed to read %s: %s; taking it as out of date.",
                                          path, STRERROR(r));
                        texts[i] = strdup("");
                        if (!texts[i]) {
                                strings_free(texts, n);
                                return -ENOMEM;
                        }
                }
                managed[i].shards_text = texts[i];
        }
        *ret_texts = texts;
        return 0;
}

static void on_probed(Systemd *s, int error, const UnitProbe *units, size_t n,
                      char *const *search_path, void *userdata) {
        Apply *x = userdata;
        Agent *a = x->a;
        _cleanup_free_ ObservedUnit *observed = NULL;
        _cleanup_free_ ManagedUnit *managed = NULL;
        char **foreign = NULL, **shards_texts = NULL;
        size_t n_foreign = 0, n_observed = 0, n_managed = 0;
        int r;

        if (a->stopping || error == -ECANCELED)
                return; /* agent_done() frees the Apply */
        if (error < 0) {
                hold(x, error, "cannot ask systemd about the units");
                return;
        }

        observed = calloc(n + 1, sizeof(ObservedUnit));
        x->origins = calloc(n + 1, sizeof(char *));
        if (!observed || !x->origins) {
                hold(x, -ENOMEM, "out of memory while planning");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                char *origin;

                r = unit_origin(a, &units[i], search_path, &origin);
                if (r == -ENOMEM) {
                        hold(x, r, "out of memory while planning");
                        return;
                }
                if (r < 0 && asprintf(&origin, "cannot tell: %s", STRERROR(r)) < 0) {
                        hold(x, -ENOMEM, "out of memory while planning");
                        return;
                }
                if (origin)
                        x->origins[x->n_origins++] = origin;
                observed[n_observed++] = (ObservedUnit){
                        .name = units[i].name,
                        .load_state = units[i].load_state,
                        .active_state = units[i].active_state,
                        .origin = origin,
                };
        }

        r = agent_state_managed_units(&a->state, &managed, &n_managed);
        if (r >= 0)
                r = read_shards_files(x, managed, n_managed, &shards_texts);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = collect_foreign(a, units[i].name, &foreign, &n_foreign);
        if (r >= 0)
                r = converge_plan(x->desired, x->n_desired, managed, n_managed, observed,
                                  n_observed, (const char *const *) foreign, n_foreign,
                                  a->config.manage_units, CONVERGE_START_INACTIVE, &x->plan);
        strings_free(foreign, n_foreign);
        strings_free(shards_texts, n_managed);
        if (r < 0) {
                hold(x, r, "cannot plan");
                return;
        }

        r = save_intent(x);
        if (r < 0) {
                hold(x, r, "cannot record the units it installs in the agent state");
                return;
        }

        for (size_t i = 0; i < x->plan.n_refused; i++)
                log_fields(LOG_WARNING, 0,
                           LOG_FIELDS({ "BATON_UNIT", strempty(x->plan.actions[i].unit) }),
                           "Refusing unit %s: %s", strempty(x->plan.actions[i].unit),
                           x->plan.actions[i].reason);
        /* Watch before acting: the replies to these reads come before any job
         * result on this connection, so the result and the next heartbeat
         * see the units' real states. */
        for (size_t i = 0; i < x->n_desired; i++)
                if (!plan_refuses(&x->plan, x->desired[i].name)) {
                        r = systemd_watch(a->systemd, x->desired[i].name);
                        if (r < 0)
                                log_warning_errno(r, "Failed to watch %s: %s, ignoring.",
                                                  x->desired[i].name, STRERROR(r));
                }
        log_info("Applying placement %" PRIu64 "/%" PRIu64 ": %zu units, %zu actions.", x->p->epoch,
                 x->p->generation, x->n_desired, x->plan.n_actions);
        x->phase = APPLY_RUNNING;
        run_next(x);
}

/* Asks systemd about every unit the Placement names or the agent manages;
 * planning goes on in on_probed(). */
static void apply_plan(Apply *x) {
        Agent *a = x->a;
        _cleanup_free_ char *error = NULL;
        _cleanup_free_ const char **names = NULL;
        size_t n = 0;
        int r;

        x->phase = APPLY_PROBING;
        if (!x->desired) {
                r = build_desired(x, &error);
                if (r == -ENOMEM) {
                        desired_free(x);
                        {
                                hold(x, r, "out of memory");
                                return;
                        }
                }
                if (r < 0) {
                        _cleanup_free_ char *why = NULL;

                        if (asprintf(&why, "placement %" PRIu64 "/%" PRIu64 " refused: %s",
                                     x->p->epoch, x->p->generation,
                                     error ? error : STRERROR(r)) < 0)
                                why = NULL;
                        send_result(a, x->p->epoch, false, x->p->generation, NULL, false, why, NULL,
                                    0);
                        agent_refuse(a, x->delivery_tag, "Placement",
                                     why ? why : "invalid placement");
                        a->apply = apply_free(x);
                        run_waiting(a);
                        return;
                }
        }

        names = calloc(x->n_desired + a->state.n_units + 1, sizeof(char *));
        if (!names) {
                hold(x, -ENOMEM, "out of memory");
                return;
        }
        for (size_t i = 0; i < x->n_desired + a->state.n_units; i++) {
                const char *name = i < x->n_desired ? x->desired[i].name
                                                    : a->state.units[i - x->n_desired].name;

                /* what systemd would refuse to load is refused by the planner */
                if (!unit_name_is_valid(name, UNIT_NAME_PLAIN | UNIT_NAME_INSTANCE))
                        continue;
                if (i >= x->n_desired && desired_has(x, name))
                        continue; /* asked once is enough */
                names[n++] = name;
        }
        r = systemd_probe(a->systemd, names, n, on_probed, x);
        if (r < 0) {
                hold(x, r, "cannot ask systemd about the units");
                return;
        }
}

static void apply_start(Agent *a, CodecDecoded *d, uint64_t tag) {
        Apply *x;

        x = calloc(1, sizeof(Apply));
        if (!x) {
                log_warning("Out of memory taking on a placement; holding it, retrying.");
                {
                        hold_unstarted_placement(a, d, tag);
                        return;
                }
        }
        x->a = a;
        x->decoded = *d;
        *d = (CodecDecoded){ 0 };
        x->p = (const Baton__V1__Placement *) x->decoded.body;
        x->delivery_tag = tag;
        a->apply = x;
        apply_plan(x);
}

/* ---- retries ------------------------------------------------------------- */

static void on_retry_timer(uv_timer_t *t) {
        Agent *a = t->data;
        Apply *x = a->apply;

        if (a->stopping)
                return;
        if (x && x->phase == APPLY_SAVING) {
                if (state_write(a, &a->state) < 0) {
                        arm_retry(a);
                        return;
                }
                log_info("Saved the agent state at last.");
                {
                        complete(x);
                        return;
                }
        }
        if (x && x->phase == APPLY_HELD) {
                const Baton__V1__Placement *pend =
                        a->pending.set ? (const Baton__V1__Placement *) a->pending.decoded.body
                                       : NULL;

                if (pend && placement_order(pend->epoch, pend->generation, x->p->epoch,
                                            x->p->generation) > 0) {
                        /* Nothing of it was done: the newer one goes instead. */
                        CodecDecoded next = a->pending.decoded;
                        uint64_t tag = a->pending.delivery_tag;

                        send_result(a, x->p->epoch, false, x->p->generation, NULL, false,
                                    "superseded by a newer placement", NULL, 0);
                        agent_ack(a, x->delivery_tag);
                        a->apply = apply_free(x);
                        a->pending.decoded = (CodecDecoded){ 0 };
                        a->pending.set = false;
                        {
                                apply_start(a, &next, tag);
                                return;
                        }
                }
                {
                        apply_plan(x);
                        return;
                }
        }
        if (!x && a->pending.set) {
                CodecDecoded next = a->pending.decoded;
                uint64_t tag = a->pending.delivery_tag;

                a->pending.decoded = (CodecDecoded){ 0 };
                a->pending.set = false;
                {
                        apply_start(a, &next, tag);
                        return;
                }
        }
        run_waiting(a);
}

/* ---- entry points -------------------------------------------------------- */

/* Raises the highest epoch seen and saves it. A failed save (logged there)
 * decides nothing: the epoch is saved again by the write that comes before
 * anything is acted on (the intent, a Restart record), or by the next one. */
static void see_epoch(Agent *a, uint64_t epoch) {
        if (epoch <= a->state.max_epoch_seen)
                return;
        log_info("Controller epoch is now %" PRIu64 " (was %" PRIu64 ").", epoch,
                 a->state.max_epoch_seen);
        a->state.max_epoch_seen = epoch;
        (void) state_write(a, &a->state);
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
        if (order <= 0 && !a->apply && !a->pending.set) {
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

        if (a->apply || a->pending.set) {
                const Baton__V1__Placement *cur = a->apply ? a->apply->p : NULL;
                const Baton__V1__Placement *pend =
                        a->pending.set ? (const Baton__V1__Placement *) a->pending.decoded.body
                                       : NULL;

                /* Only the newest waiting Placement matters. */
                if ((cur &&
                     placement_order(p->epoch, p->generation, cur->epoch, cur->generation) <= 0) ||
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

static RestartCtx *restart_ctx_free(RestartCtx *c) {
        if (c) {
                free(c->id);
                free(c);
        }
        return NULL;
}

static void on_restart_done(Systemd *s, const char *unit, const char *result, int error,
                            const char *message, void *userdata) {
        RestartCtx *c = userdata;

        if (c->a->stopping) {
                restart_ctx_free(c);
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
        restart_ctx_free(c);
}

/* Holds a Restart for the retry timer. False if it cannot even be held. */
static bool hold_restart(Agent *a, CodecDecoded *d, uint64_t tag) {
        if (wait_restart(a, d, tag) < 0) {
                /* Not even room to hold it: the broker keeps it for us. */
                log_warning("Out of memory holding a restart; it will be redelivered.");
                if (a->broker)
                        (void) broker_reject(a->broker, tag, true);
                codec_decoded_done(d);
                return false;
        }
        arm_retry(a);
        return true;
}

void apply_restart(Agent *a, CodecDecoded *d, uint64_t tag) {
        const Baton__V1__Restart *rs = (const Baton__V1__Restart *) d->body;
        _cleanup_(agent_state_done) AgentState next = { 0 };
        _cleanup_free_ char *why = NULL;
        uint64_t now = now_realtime_usec();
        bool managed = false;
        RestartCtx *c = NULL;
        SystemdJob *job = NULL;
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

        /* A Placement being applied may remove the unit: wait for it, then
         * check again whether it is still ours. */
        if (a->apply) {
                log_info("Restart %s of %s waits for the placement being applied.", rs->id,
                         rs->unit);
                if (wait_restart(a, d, tag) < 0)
                        (void) hold_restart(a, d, tag); /* says why, lets the broker keep it */
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

        /* Everything the job needs first, so that once the id is recorded
         * nothing but the bus itself can keep the job from starting. */
        c = calloc(1, sizeof(RestartCtx));
        if (c) {
                *c = (RestartCtx){ .a = a, .tag = tag, .epoch = rs->epoch, .id = strdup(rs->id) };
                r = c->id ? systemd_job_new(a->systemd, kind, rs->unit, on_restart_done, c, &job)
                          : -ENOMEM;
        } else
                r = -ENOMEM;
        if (r >= 0)
                r = agent_state_copy(&a->state, &next);
        if (r >= 0)
                r = agent_state_restart_record(&next, rs->id, rs->not_after_us, now);
        if (r < 0) {
                log_warning_errno(r, "Cannot prepare restart %s of %s: %s; holding it, retrying.",
                                  rs->id, rs->unit, STRERROR(r));
                goto hold;
        }
        /* At most once: durable before the job starts, so a crash in between
         * means not run rather than run twice. */
        r = state_commit(a, &next);
        if (r < 0) {
                log_warning("Restart %s of %s is held until the state can be saved.", rs->id,
                            rs->unit);
                goto hold;
        }
        r = systemd_job_send(job);
        job = NULL; /* freed by systemd_job_send() on failure */
        if (r < 0) {
                AgentState back = { 0 };

                /* Recorded but not launched: take the record back if we can, and
                 * try again later; if not, at most once wins and we say so. */
                log_warning_errno(r, "Failed to start restart %s of %s: %s.", rs->id, rs->unit,
                                  STRERROR(r));
                if (agent_state_copy(&a->state, &back) >= 0 &&
                    agent_state_restart_forget(&back, rs->id) >= 0 && state_commit(a, &back) >= 0)
                        goto hold;
                agent_state_done(&back);
                codec_decoded_done(d);
                on_restart_done(a->systemd, rs->unit, NULL, r, STRERROR(r), c);
                return;
        }
        codec_decoded_done(d);
        return;

hold:
        systemd_job_free(job);
        restart_ctx_free(c);
        (void) hold_restart(a, d, tag);
}

/* Restarts held back by a Placement or a failure, in arrival order; each is
 * checked again from the start. */
static void run_waiting(Agent *a) {
        WaitingRestart *w = a->waiting;
        size_t n = a->n_waiting;

        if (a->apply || n == 0)
                return;
        a->waiting = NULL;
        a->n_waiting = 0;
        for (size_t i = 0; i < n; i++) {
                if (a->stopping || a->apply) {
                        /* put the rest back, in order */
                        if (wait_restart(a, &w[i].decoded, w[i].delivery_tag) < 0) {
                                if (a->broker)
                                        (void) broker_reject(a->broker, w[i].delivery_tag, true);
                                codec_decoded_done(&w[i].decoded);
                        }
                        continue;
                }
                apply_restart(a, &w[i].decoded, w[i].delivery_tag);
        }
        free(w);
}

void apply_done(Agent *a) {
        /* Unacked deliveries go back to the broker when the connection closes. */
        a->apply = apply_free(a->apply);
        codec_decoded_done(&a->pending.decoded);
        a->pending.set = false;
        for (size_t i = 0; i < a->n_waiting; i++)
                codec_decoded_done(&a->waiting[i].decoded);
        a->waiting = mfree(a->waiting);
        a->n_waiting = 0;
}
