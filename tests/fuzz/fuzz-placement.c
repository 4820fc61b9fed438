/* SPDX-License-Identifier: MIT */
/* A Placement as the agent receives it: a signed envelope, verified with the
 * test key, then what agent/apply.c does with it in pure code: each unit's
 * drop-in validated, rendered and read back (its shards file too, with
 * ShardChange=reload), its config hash, and the convergence plan against a
 * host that already runs two units. The plan is then "carried out" on an
 * agent state and the shards files as the shell would, and planning again
 * must change nothing (converge.h's idempotence promise). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent-state.h"
#include "commands.pb-c.h"
#include "converge.h"
#include "dropin.h"
#include "fuzz-wire.h"
#include "shards.h"
#include "unit-name.h"

/* Where agent/agent.c puts shards files for the default state_dir. */
#define FUZZ_SHARDS_DIR "/var/lib/baton-agent/shards"

/* What this host ran before the Placement arrived. */
static const struct {
        const char *name, *file, *hash, *active;
} before[] = {
        { "core.service", "core.service", "0123456789abcdef", "active" },
        { "gateway@9.service", "gateway@.service", "fedcba9876543210", "active" },
};

static void check_plan(const Plan *p) {
        size_t reloads = 0, files = 0;

        FUZZ_ASSERT(p->n_refused <= p->n_actions);
        for (size_t i = 0; i < p->n_actions; i++) {
                const Action *a = &p->actions[i];

                FUZZ_ASSERT(a->type >= 0 && a->type < _ACTION_TYPE_MAX);
                FUZZ_ASSERT(a->reason);
                FUZZ_ASSERT((a->type == ACTION_REFUSE) == (i < p->n_refused));
                if (i > 0)
                        FUZZ_ASSERT(p->actions[i - 1].type <= a->type);
                switch (a->type) {
                case ACTION_DAEMON_RELOAD:
                        reloads++;
                        break;
                case ACTION_WRITE_FILE:
                case ACTION_WRITE_DROPIN:
                case ACTION_REMOVE_FILE:
                case ACTION_REMOVE_DROPIN:
                        FUZZ_ASSERT(a->file_name && a->unit);
                        FUZZ_ASSERT(a->content || a->type == ACTION_REMOVE_FILE ||
                                    a->type == ACTION_REMOVE_DROPIN);
                        FUZZ_ASSERT(!strstr(a->file_name, "..") && a->file_name[0] != '/');
                        files++;
                        break;
                case ACTION_WRITE_SHARDS:
                case ACTION_REMOVE_SHARDS:
                        /* one file per unit, named after it; not systemd's */
                        FUZZ_ASSERT(a->unit && streq_ptr(a->file_name, a->unit));
                        FUZZ_ASSERT(
                                unit_name_is_valid(a->unit, UNIT_NAME_PLAIN | UNIT_NAME_INSTANCE));
                        FUZZ_ASSERT(!a->content == (a->type == ACTION_REMOVE_SHARDS));
                        break;
                case ACTION_REFUSE:
                        FUZZ_ASSERT(a->unit);
                        break;
                default:
                        FUZZ_ASSERT(
                                a->unit &&
                                unit_name_is_valid(a->unit, UNIT_NAME_PLAIN | UNIT_NAME_INSTANCE));
                        break;
                }
        }
        FUZZ_ASSERT(reloads == (files > 0));
}

/* How systemd reads one Environment="…" line: unquote and C-unescape (the
 * drop-in only ever has \\ and \"), then %-specifiers (only %% may be
 * left). NULL if it would read as something else. */
static char *systemd_assignment(const char *line) {
        const char *p = line + strlen("Environment=\""), *end = strrchr(line, '"');
        char *out, *o;

        if (end <= p)
                return NULL;
        out = o = malloc((size_t) (end - p) + 1);
        if (!out)
                abort();
        for (; p < end; p++) {
                if (*p == '\\') {
                        p++;
                        if (p == end || (*p != '\\' && *p != '"'))
                                return mfree(out);
                } else if (*p == '"' || ((unsigned char) *p < 0x20 && *p != '\t'))
                        return mfree(out);
                else if (*p == '%') {
                        p++;
                        if (p == end || *p != '%')
                                return mfree(out); /* a specifier systemd would expand */
                }
                *o++ = *p;
        }
        *o = '\0';
        return out;
}

/* Every extra variable reaches the service as it was given, in order. */
static void check_environment(const DropinInput *in, const char *text) {
        _cleanup_free_ char *copy = strdup(text);
        size_t k = 0;

        if (!copy)
                abort();
        for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
                _cleanup_free_ char *a = NULL, *want = NULL;

                if (strncmp(line, "Environment=", 12) != 0)
                        continue;
                a = systemd_assignment(line);
                if (!a)
                        fuzz_fail("systemd would not read this as written: %s", line);
                if (strncmp(a, "BATON_", 6) == 0)
                        continue;
                FUZZ_ASSERT(k < in->n_env);
                if (asprintf(&want, "%s=%s", in->env[k].name, in->env[k].value) < 0)
                        abort();
                if (!streq(a, want))
                        fuzz_fail("variable %zu reads as \"%s\", not \"%s\"", k, a, want);
                k++;
        }
        FUZZ_ASSERT(k == in->n_env);
}

/* The drop-in as the agent renders it reads back as what went in. */
static void check_dropin(const DropinInput *in, const char *text) {
        DropinInfo info = { 0 };
        RangeList a, b;

        FUZZ_ASSERT(dropin_text_is_managed(text));
        if (dropin_parse(text, &info) < 0)
                fuzz_fail("a rendered drop-in does not parse:\n%s", text);
        FUZZ_ASSERT(streq(info.service, in->service) && streq(info.host, in->host));
        FUZZ_ASSERT(info.has_instance == in->has_instance);
        FUZZ_ASSERT(!in->has_instance || info.instance == in->instance);
        FUZZ_ASSERT(info.has_shards == in->has_shards);
        if (in->has_shards) {
                _cleanup_free_ char *file = NULL, *back = NULL;

                FUZZ_ASSERT(info.shard_count == in->shard_count);
                FUZZ_ASSERT(info.shard_epoch == in->shard_epoch);
                /* the set is in the drop-in or, with a file, only in the file */
                FUZZ_ASSERT(streq_ptr(info.shards_file, in->shards_file));
                FUZZ_ASSERT(!info.shards == !!in->shards_file);
                if (in->shards_file) {
                        FUZZ_ASSERT(dropin_shards_text(in, &file) >= 0);
                        FUZZ_ASSERT(dropin_shards_parse(file, &back) >= 0);
                }
                rangelist_init(&a);
                rangelist_init(&b);
                FUZZ_ASSERT(rangelist_parse(&a, strempty(in->shards)) >= 0);
                FUZZ_ASSERT(rangelist_parse(&b, in->shards_file ? back : info.shards) >= 0);
                FUZZ_ASSERT(rangelist_equal(&a, &b));
                rangelist_done(&a);
                rangelist_done(&b);
        }
        dropin_info_done(&info);
        check_environment(in, text);
}

static void check_shards(const Baton__V1__ShardAssignment *s) {
        ShardReadiness r;
        RangeList want;

        rangelist_init(&want);
        FUZZ_ASSERT(rangelist_parse(&want, s->shards) >= 0);
        /* Active without tokens: every assigned shard is ready. */
        FUZZ_ASSERT(shard_readiness_compute(s->shards, "active", "", &r) >= 0);
        FUZZ_ASSERT(rangelist_equal(&r.ready, &want) && !r.has_tokens && !r.foreign);
        shard_readiness_done(&r);
        FUZZ_ASSERT(shard_readiness_compute(s->shards, "inactive", "ready=0-3", &r) >= 0);
        FUZZ_ASSERT(r.ready.n_ranges == 0);
        shard_readiness_done(&r);
        rangelist_done(&want);
}

static bool same_plan(const Plan *a, const Plan *b) {
        if (a->n_actions != b->n_actions || a->n_refused != b->n_refused)
                return false;
        for (size_t i = 0; i < a->n_actions; i++)
                if (a->actions[i].type != b->actions[i].type ||
                    !streq_ptr(a->actions[i].unit, b->actions[i].unit) ||
                    !streq_ptr(a->actions[i].file_name, b->actions[i].file_name) ||
                    !streq_ptr(a->actions[i].content, b->actions[i].content) ||
                    !streq(a->actions[i].reason, b->actions[i].reason))
                        return false;
        return true;
}

/* "Equal inputs give equal plans whatever their order": the same Placement
 * with its units in reverse. */
static void check_order(const DesiredUnit *desired, size_t n, const ManagedUnit *managed,
                        size_t n_managed, const ObservedUnit *observed, size_t n_observed,
                        const char *const *foreign, size_t n_foreign, const char *globs,
                        const Plan *plan) {
        DesiredUnit *rev = calloc(n + 1, sizeof(DesiredUnit));
        Plan other = { 0 };

        if (!rev)
                abort();
        for (size_t i = 0; i < n; i++)
                rev[i] = desired[n - 1 - i];
        if (converge_plan(rev, n, managed, n_managed, observed, n_observed, foreign, n_foreign,
                          globs, CONVERGE_START_INACTIVE, &other) >= 0 &&
            !same_plan(plan, &other))
                fuzz_fail("the plan depends on the order of the Placement's units");
        plan_done(&other);
        free(rev);
}

static const DesiredUnit *desired_find(const DesiredUnit *d, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(d[i].name, name))
                        return &d[i];
        return NULL;
}

static void plan_and_carry_out(const Baton__V1__Placement *p, const DesiredUnit *desired,
                               const char (*hashes)[17], size_t n) {
        /* Half of the runs with the agent's usual allow-list, half with all. */
        const char *globs = p->generation % 2 ? FUZZ_MANAGE_UNITS : "*";
        ObservedUnit *observed = calloc(n + ELEMENTSOF(before) + 1, sizeof(ObservedUnit));
        const char *foreign[2];
        size_t n_foreign = 0, n_observed = 0;
        AgentState st = { 0 }, back = { 0 };
        ManagedUnit *managed = NULL;
        size_t n_managed = 0;
        char **gone = NULL, *text = NULL, *file = NULL, *dropin = NULL;
        size_t n_gone = 0;
        Plan plan = { 0 }, again = { 0 };

        if (!observed)
                abort();
        for (size_t i = 0; i < ELEMENTSOF(before); i++) {
                FUZZ_ASSERT(agent_state_set_unit(&st, before[i].name, before[i].file,
                                                 before[i].hash, true) >= 0);
                observed[n_observed++] =
                        (ObservedUnit){ before[i].name, "loaded", before[i].active };
        }
        /* Now and then a file of the first unit exists without baton's marker. */
        if (n > 0 && p->generation % 3 == 2 &&
            converge_unit_file_name(desired[0].name, &file) >= 0 &&
            converge_dropin_file_name(desired[0].name, &dropin) >= 0) {
                foreign[n_foreign++] = file;
                foreign[n_foreign++] = dropin;
        }

        FUZZ_ASSERT(agent_state_managed_units(&st, &managed, &n_managed) >= 0);
        if (converge_plan(desired, n, managed, n_managed, observed, n_observed, foreign, n_foreign,
                          globs, CONVERGE_START_INACTIVE, &plan) < 0)
                goto finish;
        check_plan(&plan);
        check_order(desired, n, managed, n_managed, observed, n_observed, foreign, n_foreign, globs,
                    &plan);

        /* Carry it out as agent/apply.c's finish() records it: first note
         * which managed units go (managed borrows from st). */
        gone = calloc(n_managed + 1, sizeof(char *));
        if (!gone)
                abort();
        for (size_t i = 0; i < n_managed; i++)
                if (!desired_find(desired, n, managed[i].name) &&
                    !plan_refuses(&plan, managed[i].name))
                        gone[n_gone++] = strdup(managed[i].name);
        managed = mfree(managed);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *f = NULL;
                int r;

                if (plan_refuses(&plan, desired[i].name))
                        continue;
                FUZZ_ASSERT(converge_unit_file_name(desired[i].name, &f) >= 0);
                r = agent_state_set_unit(&st, desired[i].name, f, hashes[i],
                                         !isempty(desired[i].dropin_text));
                if (r == -E2BIG || r == -ENOMEM)
                        goto finish;
                if (r < 0)
                        fuzz_fail("a unit the plan accepted is refused by the state: %s",
                                  desired[i].name);
        }
        for (size_t i = 0; i < n_gone; i++)
                FUZZ_ASSERT(gone[i] && agent_state_remove_unit(&st, gone[i]) >= 0);
        st.applied_epoch = p->epoch;
        st.applied_generation = p->generation;
        if (p->epoch > st.max_epoch_seen)
                st.max_epoch_seen = p->epoch;

        /* systemd now runs what should run; the rest it left as it was. */
        n_observed = 0;
        for (size_t i = 0; i < st.n_units; i++) {
                const DesiredUnit *d = desired_find(desired, n, st.units[i].name);
                const char *active = "inactive";

                if (d && !plan_refuses(&plan, d->name))
                        active = d->running ? "active" : "inactive";
                else
                        for (size_t k = 0; k < ELEMENTSOF(before); k++)
                                if (streq(before[k].name, st.units[i].name))
                                        active = before[k].active;
                observed[n_observed++] = (ObservedUnit){ st.units[i].name, "loaded", active };
        }
        FUZZ_ASSERT(agent_state_managed_units(&st, &managed, &n_managed) >= 0);
        /* The shards files are what the plan wrote (the host had none). */
        for (size_t i = 0; i < n_managed; i++)
                for (size_t k = 0; k < plan.n_actions; k++)
                        if (plan.actions[k].type == ACTION_WRITE_SHARDS &&
                            streq(plan.actions[k].unit, managed[i].name))
                                managed[i].shards_text = plan.actions[k].content;
        if (converge_plan(desired, n, managed, n_managed, observed, n_observed, foreign, n_foreign,
                          globs, CONVERGE_START_INACTIVE, &again) < 0)
                goto finish;
        check_plan(&again);
        if (again.n_actions != again.n_refused || again.n_refused != plan.n_refused) {
                for (size_t i = 0; i < again.n_actions; i++)
                        fprintf(stderr, "  %s %s: %s\n",
                                action_type_to_string(again.actions[i].type),
                                strna(again.actions[i].unit), again.actions[i].reason);
                fuzz_fail("planning a carried-out placement again changes things");
        }

        /* What the agent saves it reads back. */
        if (agent_state_format(&st, &text) >= 0) {
                FUZZ_ASSERT(agent_state_parse(text, &back, NULL) >= 0);
                FUZZ_ASSERT(back.n_units == st.n_units && back.applied_epoch == p->epoch &&
                            back.applied_generation == p->generation);
        }

finish:
        for (size_t i = 0; i < n_gone; i++)
                free(gone[i]);
        free(gone);
        free(managed);
        free(observed);
        free(text);
        free(file);
        free(dropin);
        plan_done(&plan);
        plan_done(&again);
        agent_state_done(&st);
        agent_state_done(&back);
}

static void drive(const CodecDecoded *d) {
        const Baton__V1__Placement *p = (const Baton__V1__Placement *) d->body;
        size_t n = p->n_units;
        DesiredUnit *desired = calloc(n + 1, sizeof(DesiredUnit));
        char **dropins = calloc(n + 1, sizeof(char *));
        char **shards_texts = calloc(n + 1, sizeof(char *));
        char(*hashes)[17] = calloc(n + 1, sizeof(*hashes));
        bool refused = false;

        if (!desired || !dropins || !shards_texts || !hashes)
                abort();
        /* agent.c refuses a stale command before it looks at it. */
        if (codec_check_age(d->envelope, FUZZ_NOW_US, FUZZ_COMMAND_MAX_AGE_US, NULL) < 0)
                goto finish;
        FUZZ_ASSERT(placement_order(p->epoch, p->generation, p->epoch, p->generation) == 0);
        if (p->generation < UINT64_MAX)
                FUZZ_ASSERT(placement_order(p->epoch, p->generation + 1, p->epoch, p->generation) >
                            0);

        /* agent/apply.c's build_desired(). */
        for (size_t i = 0; i < n && !refused; i++) {
                const Baton__V1__PlacedUnit *u = p->units[i];
                _cleanup_free_ DropinEnv *env = calloc(u->n_env + 1, sizeof(DropinEnv));
                _cleanup_free_ char *why = NULL, *managed = NULL, *shards_name = NULL,
                                    *shards_file = NULL;
                DropinInput in = {
                        .host = FUZZ_HOST,
                        .service = u->service,
                        .instance = u->instance,
                        .has_instance = !isempty(u->template_name),
                };
                int r, v;

                if (!env)
                        abort();
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
                if (in.has_shards && u->shards_reload) {
                        r = converge_shards_file_name(u->name, &shards_name);
                        if (r == -ENOMEM)
                                abort();
                        if (r >= 0 &&
                            asprintf(&shards_file, FUZZ_SHARDS_DIR "/%s", shards_name) < 0)
                                abort();
                        in.shards_file = shards_file;
                }
                if (!isempty(u->service)) {
                        v = dropin_validate(&in, &why);
                        r = dropin_render(&in, &dropins[i]);
                        if (v == -ENOMEM || r == -ENOMEM) {
                                refused = true;
                                break;
                        }
                        /* dropin_render() refuses exactly what dropin_validate() does. */
                        if ((v < 0) != (r < 0))
                                fuzz_fail("dropin_validate() %d but dropin_render() %d (%s)", v, r,
                                          strna(why));
                        if (v < 0) {
                                FUZZ_ASSERT(v == -EINVAL && why);
                                refused = true; /* the whole Placement is refused */
                                break;
                        }
                        check_dropin(&in, dropins[i]);
                        if (in.has_shards)
                                check_shards(u->shards);
                        if (in.shards_file) {
                                r = dropin_shards_text(&in, &shards_texts[i]);
                                if (r == -ENOMEM) {
                                        refused = true;
                                        break;
                                }
                                FUZZ_ASSERT(r >= 0);
                        }
                }
                FUZZ_ASSERT(config_hash(config_hash_is_valid(u->config_hash) ? u->config_hash
                                                                             : u->unit_text,
                                        dropins[i], hashes[i]) >= 0);
                FUZZ_ASSERT(config_hash_is_valid(hashes[i]));
                if (!isempty(u->unit_text) && managed_file_render(u->unit_text, &managed) >= 0)
                        FUZZ_ASSERT(managed_file_is_managed(managed));
                desired[i] = (DesiredUnit){
                        .name = u->name,
                        .unit_text = u->unit_text,
                        .template_name = isempty(u->template_name) ? NULL : u->template_name,
                        .service = u->service,
                        .instance = u->instance,
                        .dropin_text = dropins[i],
                        .config_hash = hashes[i],
                        .running = u->running,
                        .defer_restart = u->defer_restart,
                        .shards_text = shards_texts[i],
                };
        }
        if (!refused)
                plan_and_carry_out(p, desired, (const char(*)[17]) hashes, n);
finish:
        for (size_t i = 0; i < n; i++) {
                free(dropins[i]);
                free(shards_texts[i]);
        }
        free(dropins);
        free(shards_texts);
        free(hashes);
        free(desired);
}

const FuzzWireTarget fuzz_wire_target = {
        .rx = &fuzz_rx_agent,
        .body = &baton__v1__placement__descriptor,
        .drive = drive,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        return fuzz_wire_run(&fuzz_wire_target, data, size);
}
