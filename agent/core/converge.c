/* SPDX-License-Identifier: MIT */
/* The convergence planner: decides, per unit, whether a Placement entry is
 * acceptable and what it takes to get there, then orders the actions so the
 * shell can carry them out in one pass with one daemon-reload. Pure. */
#include "converge.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "macro.h"
#include "unit-name.h"

static const char *const action_type_table[_ACTION_TYPE_MAX] = {
        [ACTION_REFUSE] = "refuse",
        [ACTION_STOP] = "stop",
        [ACTION_DISABLE] = "disable",
        [ACTION_REMOVE_DROPIN] = "remove-dropin",
        [ACTION_REMOVE_FILE] = "remove-file",
        [ACTION_REMOVE_SHARDS] = "remove-shards",
        [ACTION_WRITE_FILE] = "write-file",
        [ACTION_WRITE_DROPIN] = "write-dropin",
        [ACTION_WRITE_SHARDS] = "write-shards",
        [ACTION_DAEMON_RELOAD] = "daemon-reload",
        [ACTION_ENABLE] = "enable",
        [ACTION_START] = "start",
        [ACTION_RESTART] = "restart",
        [ACTION_RELOAD] = "reload",
};

const char *action_type_to_string(ActionType t) {
        if (t < 0 || t >= _ACTION_TYPE_MAX)
                return NULL;
        return action_type_table[t];
}

ActionType action_type_from_string(const char *s) {
        if (!s)
                return _ACTION_TYPE_INVALID;
        for (int i = 0; i < _ACTION_TYPE_MAX; i++)
                if (streq(action_type_table[i], s))
                        return (ActionType) i;
        return _ACTION_TYPE_INVALID;
}

int placement_order(uint64_t epoch_a, uint64_t gen_a, uint64_t epoch_b, uint64_t gen_b) {
        if (epoch_a != epoch_b)
                return epoch_a < epoch_b ? -1 : 1;
        if (gen_a != gen_b)
                return gen_a < gen_b ? -1 : 1;
        return 0;
}

int config_hash(const char *unit_text, const char *dropin_text, char ret[static 17]) {
        const char *u = strempty(unit_text), *d = strempty(dropin_text);
        uint64_t h = FNV1A64_OFFSET;

        assert(ret);

        /* Neither text can contain a NUL, so it separates them unambiguously. */
        h = fnv1a64(h, u, strlen(u));
        h = fnv1a64(h, "", 1);
        h = fnv1a64(h, d, strlen(d));
        snprintf(ret, 17, "%016llx", (unsigned long long) h);
        return 0;
}

bool config_hash_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, CONFIG_HASH_MAX + 1);
        if (n == 0 || n > CONFIG_HASH_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr("._:+/=-", c)))
                        return false;
        }
        return true;
}

int converge_unit_file_name(const char *unit, char **ret) {
        _cleanup_free_ char *prefix = NULL, *instance = NULL, *suffix = NULL;
        char *file;
        int r;

        assert(ret);

        if (!unit_name_is_valid(unit, UNIT_NAME_PLAIN | UNIT_NAME_INSTANCE))
                return -EINVAL;

        r = unit_name_split(unit, &prefix, &instance, &suffix);
        if (r < 0)
                return r;

        if (instance)
                r = asprintf(&file, "%s@.%s", prefix, suffix);
        else
                r = asprintf(&file, "%s", unit);
        if (r < 0)
                return -ENOMEM;

        *ret = file;
        return 0;
}

int converge_dropin_file_name(const char *unit, char **ret) {
        char *file;

        assert(ret);

        if (!unit_name_is_valid(unit, UNIT_NAME_PLAIN | UNIT_NAME_INSTANCE))
                return -EINVAL;
        if (asprintf(&file, "%s.d/%s", unit, BATON_DROPIN_FILE) < 0)
                return -ENOMEM;

        *ret = file;
        return 0;
}

int converge_shards_file_name(const char *unit, char **ret) {
        char *file;

        assert(ret);

        /* The unit name alone: it is a valid file name, and one per unit. */
        if (!unit_name_is_valid(unit, UNIT_NAME_PLAIN | UNIT_NAME_INSTANCE))
                return -EINVAL;
        file = strdup(unit);
        if (!file)
                return -ENOMEM;

        *ret = file;
        return 0;
}

void plan_done(Plan *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_actions; i++) {
                free(p->actions[i].unit);
                free(p->actions[i].file_name);
                free(p->actions[i].reason);
        }
        free(p->actions);
        *p = (Plan){ 0 };
}

bool plan_refuses(const Plan *p, const char *unit) {
        if (!p || !unit)
                return false;
        for (size_t i = 0; i < p->n_actions; i++)
                if (p->actions[i].type == ACTION_REFUSE && streq_ptr(p->actions[i].unit, unit))
                        return true;
        return false;
}

/* One unit under consideration: a desired entry, a managed unit that is no
 * longer desired, or both at once. */
typedef struct Entry {
        const char *name; /* never NULL: "" for a nameless desired entry */
        const DesiredUnit *d;
        const ManagedUnit *m;
        const ObservedUnit *o;
        size_t index; /* position in `desired`, to keep sorting total */
        char *file;   /* derived unit file name, NULL if the name is invalid */
        char *dropin; /* derived drop-in file name, NULL if the name is invalid */
        char *shards; /* derived shards file name, NULL if the name is invalid */
        const char *hash;
        char computed_hash[CONFIG_HASH_HEX_LEN + 1];
        char *refused; /* reason, NULL if acceptable */
        bool duplicate;
} Entry;

typedef struct Builder {
        Plan plan;
        size_t n_allocated;
} Builder;

static void builder_done(Builder *b) {
        plan_done(&b->plan);
}

static void entries_free(Entry *e, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(e[i].file);
                free(e[i].dropin);
                free(e[i].shards);
                free(e[i].refused);
        }
        free(e);
}

_printf_(6, 7) static int emit(Builder *b, ActionType type, const char *unit, const char *file,
                               const char *content, const char *reason_fmt, ...) {
        _cleanup_free_ char *u = NULL, *f = NULL, *reason = NULL;
        va_list ap;
        int r;

        if (b->plan.n_actions >= b->n_allocated) {
                size_t n = MAX(b->n_allocated * 2, (size_t) 16);
                Action *a = reallocarray(b->plan.actions, n, sizeof(Action));

                if (!a)
                        return -ENOMEM;
                b->plan.actions = a;
                b->n_allocated = n;
        }

        if (unit) {
                u = strdup(unit);
                if (!u)
                        return -ENOMEM;
        }
        if (file) {
                f = strdup(file);
                if (!f)
                        return -ENOMEM;
        }
        va_start(ap, reason_fmt);
        r = vasprintf(&reason, reason_fmt, ap);
        va_end(ap);
        if (r < 0) {
                reason = NULL; /* unspecified on failure */
                return -ENOMEM;
        }

        b->plan.actions[b->plan.n_actions++] = (Action){
                .type = type,
                .unit = TAKE_PTR(u),
                .file_name = TAKE_PTR(f),
                .content = content,
                .reason = TAKE_PTR(reason),
        };
        return 0;
}

_printf_(2, 3) static int entry_refuse(Entry *e, const char *fmt, ...) {
        va_list ap;
        int r;

        if (e->refused)
                return 0; /* the first reason found is the one reported */

        va_start(ap, fmt);
        r = vasprintf(&e->refused, fmt, ap);
        va_end(ap);
        if (r < 0) {
                e->refused = NULL;
                return -ENOMEM;
        }
        return 0;
}

static int cmp_str(const char *a, const char *b) {
        return strcmp(strempty(a), strempty(b));
}

static int entry_cmp(const void *x, const void *y) {
        const Entry *a = x, *b = y;
        int c = strcmp(a->name, b->name);

        if (c != 0)
                return c;
        return a->index < b->index ? -1 : a->index > b->index;
}

static int managed_ptr_cmp(const void *x, const void *y) {
        const ManagedUnit *a = *(const ManagedUnit *const *) x,
                          *b = *(const ManagedUnit *const *) y;
        int c = cmp_str(a->name, b->name);

        if (c != 0)
                return c;
        /* keep the first record of a name first, so it is the one that counts */
        return a < b ? -1 : a > b;
}

static int observed_ptr_cmp(const void *x, const void *y) {
        const ObservedUnit *a = *(const ObservedUnit *const *) x,
                           *b = *(const ObservedUnit *const *) y;
        int c = cmp_str(a->name, b->name);

        if (c != 0)
                return c;
        return a < b ? -1 : a > b;
}

static int str_ptr_cmp(const void *x, const void *y) {
        return cmp_str(*(const char *const *) x, *(const char *const *) y);
}

/* Orders instances of the same template next to each other. */
static int entry_ptr_file_cmp(const void *x, const void *y) {
        const Entry *a = *(Entry *const *) x, *b = *(Entry *const *) y;
        int c = cmp_str(a->file, b->file);

        if (c != 0)
                return c;
        return strcmp(a->name, b->name);
}

static int action_cmp(const void *x, const void *y) {
        const Action *a = x, *b = y;
        int c;

        if (a->type != b->type)
                return a->type < b->type ? -1 : 1;
        c = cmp_str(a->unit, b->unit);
        if (c != 0)
                return c;
        c = cmp_str(a->file_name, b->file_name);
        if (c != 0)
                return c;
        return cmp_str(a->reason, b->reason);
}

/* Lookups in the sorted views; the first record of a name wins. */
static const ManagedUnit *managed_find(const ManagedUnit *const *v, size_t n, const char *name) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (cmp_str(v[mid]->name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < n && cmp_str(v[lo]->name, name) == 0 ? v[lo] : NULL;
}

static const ObservedUnit *observed_find(const ObservedUnit *const *v, size_t n, const char *name) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (cmp_str(v[mid]->name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < n && cmp_str(v[lo]->name, name) == 0 ? v[lo] : NULL;
}

static bool strv_sorted_contains(const char *const *v, size_t n, const char *s) {
        if (!s || n == 0)
                return false;
        return bsearch(&s, v, n, sizeof(char *), str_ptr_cmp) != NULL;
}

static const Entry *entries_find(const Entry *e, size_t n, const char *name) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(e[mid].name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < n && streq(e[lo].name, name) ? &e[lo] : NULL;
}

static bool observed_is_up(const ObservedUnit *o) {
        static const char *const up[] = { "active", "activating", "reloading", "refreshing" };

        if (!o || !o->active_state)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(up); i++)
                if (streq(o->active_state, up[i]))
                        return true;
        return false;
}

/* Whether a reload job would reach the process now: systemd merges one into
 * a start job under way (so "activating" would not re-read), and runs one
 * after a reload under way. */
static bool observed_can_reload(const ObservedUnit *o) {
        return o &&
               (streq_ptr(o->active_state, "active") || streq_ptr(o->active_state, "reloading"));
}

static bool observed_not_found(const ObservedUnit *o) {
        return o && streq_ptr(o->load_state, "not-found");
}

static int derive_files(Entry *e) {
        int r;

        r = converge_unit_file_name(e->name, &e->file);
        if (r < 0)
                return r;
        r = converge_dropin_file_name(e->name, &e->dropin);
        if (r < 0)
                return r;
        return converge_shards_file_name(e->name, &e->shards);
}

/* Rule 1 for one desired entry, except the checks that need its siblings. */
static int validate_desired(Entry *e, const char *allow_globs) {
        const DesiredUnit *d = e->d;
        int r;

        r = derive_files(e);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return entry_refuse(e, "invalid unit name");

        if (e->duplicate)
                return entry_refuse(e, "listed more than once in the placement");

        if (unit_name_is_valid(e->name, UNIT_NAME_INSTANCE)) {
                if (isempty(d->template_name))
                        return entry_refuse(e, "instance without a template name");
                if (!streq(d->template_name, e->file))
                        return entry_refuse(
                                e, "template name does not match the instance (want %s)", e->file);
        } else if (!isempty(d->template_name))
                return entry_refuse(e, "template name given for a unit that is not an instance");

        if (isempty(d->unit_text))
                return entry_refuse(e, "no unit text");

        if (isempty(d->config_hash))
                e->hash = e->computed_hash;
        else if (!config_hash_is_valid(d->config_hash))
                return entry_refuse(e, "invalid config hash");
        else
                e->hash = d->config_hash;

        if (!unit_name_matches_globs(e->name, allow_globs))
                return entry_refuse(e, "not allowed by manage_units");
        /* The template file is shared by every instance, allowed or not. */
        if (!streq(e->file, e->name) && !unit_name_matches_globs(e->file, allow_globs))
                return entry_refuse(e,
                                    "its template %s is not allowed by manage_units (writing it "
                                    "would change every instance); refusing to write it",
                                    e->file);

        return 0;
}

/* Rule 3's refusals for a managed unit that is no longer desired. */
static int validate_removal(Entry *e, const char *allow_globs) {
        int r;

        r = derive_files(e);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return entry_refuse(e, "invalid unit name in the agent state; leaving it alone");

        if (e->m->file_name && !streq(e->m->file_name, e->file))
                return entry_refuse(e, "agent state records file %s for it; leaving it alone",
                                    e->m->file_name);

        if (!unit_name_matches_globs(e->name, allow_globs))
                return entry_refuse(e, "no longer allowed by manage_units; leaving it installed");
        if (!streq(e->file, e->name) && !unit_name_matches_globs(e->file, allow_globs))
                return entry_refuse(e,
                                    "its template %s is not allowed by manage_units; leaving it "
                                    "installed",
                                    e->file);

        return 0;
}

static int refuse_foreign(Entry *e, const char *const *foreign, size_t n_foreign) {
        const char *verb = e->d ? "overwrite" : "remove";

        if (e->refused || !e->file)
                return 0;
        /* systemd has it from elsewhere: ours would shadow it, and stopping,
         * disabling or removing it later would break what is not ours. */
        if (e->o && e->o->origin)
                return entry_refuse(
                        e, "%s is also provided by %s, outside baton's unit directory; %s", e->name,
                        e->o->origin, e->d ? "refusing to take it over" : "leaving it alone");
        if (strv_sorted_contains(foreign, n_foreign, e->file))
                return entry_refuse(e, "%s exists and is not managed by baton; refusing to %s",
                                    e->file, verb);
        if (strv_sorted_contains(foreign, n_foreign, e->dropin))
                return entry_refuse(e, "%s exists and is not managed by baton; refusing to %s",
                                    e->dropin, verb);
        return 0;
}

/* Instances of one template share its file, so they must agree on its text;
 * which one is right is not the agent's call, so all of them are refused. */
static int refuse_template_conflicts(Entry *e, size_t n) {
        _cleanup_free_ Entry **inst = NULL;
        size_t n_inst = 0;
        int r;

        inst = calloc(MAX(n, (size_t) 1), sizeof(Entry *));
        if (!inst)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (e[i].d && !e[i].refused && unit_name_is_valid(e[i].name, UNIT_NAME_INSTANCE))
                        inst[n_inst++] = &e[i];
        qsort(inst, n_inst, sizeof(Entry *), entry_ptr_file_cmp);

        for (size_t i = 0; i < n_inst;) {
                size_t j = i + 1;
                bool conflict = false;

                while (j < n_inst && streq(inst[j]->file, inst[i]->file)) {
                        if (!streq(inst[j]->d->unit_text, inst[i]->d->unit_text))
                                conflict = true;
                        j++;
                }
                for (size_t k = i; conflict && k < j; k++) {
                        r = entry_refuse(inst[k], "instances of %s disagree on its text",
                                         inst[k]->file);
                        if (r < 0)
                                return r;
                }
                i = j;
        }
        return 0;
}

static bool action_is_file_change(ActionType t) {
        return t == ACTION_REMOVE_DROPIN || t == ACTION_REMOVE_FILE || t == ACTION_WRITE_FILE ||
               t == ACTION_WRITE_DROPIN;
}

static int emit_for_removal(Builder *b, const Entry *e, const char *const *in_use,
                            size_t n_in_use) {
        const char *reason = "no longer placed on this host";
        int r;

        r = emit(b, ACTION_STOP, e->name, NULL, NULL, "%s", reason);
        if (r < 0)
                return r;
        r = emit(b, ACTION_DISABLE, e->name, NULL, NULL, "%s", reason);
        if (r < 0)
                return r;
        if (e->m->has_dropin) {
                r = emit(b, ACTION_REMOVE_DROPIN, e->name, e->dropin, NULL, "%s", reason);
                if (r < 0)
                        return r;
        }
        if (!strv_sorted_contains(in_use, n_in_use, e->file)) {
                r = emit(b, ACTION_REMOVE_FILE, e->file, e->file, NULL, "%s",
                         streq(e->file, e->name) ? reason
                                                 : "no instance uses the template any more");
                if (r < 0)
                        return r;
        }
        if (e->m->shards_text)
                return emit(b, ACTION_REMOVE_SHARDS, e->name, e->shards, NULL, "%s", reason);
        return 0;
}

/* Rule 8 for a desired unit, after its other actions; `started` says whether
 * this plan starts or restarts it. */
static int emit_shards(Builder *b, const Entry *e, bool started) {
        const DesiredUnit *d = e->d;
        const char *now = e->m ? e->m->shards_text : NULL;
        int r;

        if (isempty(d->shards_text) || streq_ptr(now, d->shards_text))
                return 0;
        r = emit(b, ACTION_WRITE_SHARDS, e->name, e->shards, d->shards_text, "%s",
                 now ? "shards changed" : "new shards file");
        if (r < 0)
                return r;
        if (!now || started || !d->running || !observed_can_reload(e->o))
                return 0;
        return emit(b, ACTION_RELOAD, e->name, NULL, NULL, "shards changed");
}

/* Rules 4 to 7; *ret_started says whether it is started or restarted. */
static int emit_unit(Builder *b, const Entry *e, unsigned flags, bool *ret_started) {
        const DesiredUnit *d = e->d;
        const ManagedUnit *m = e->m;
        bool want_dropin = !isempty(d->dropin_text), up = observed_is_up(e->o);
        bool same = m && !m->pending && streq_ptr(m->config_hash, e->hash) &&
                    m->has_dropin == want_dropin;
        const char *why;
        int r;

        if (same && !((flags & CONVERGE_START_INACTIVE) && observed_not_found(e->o))) {
                /* Rules 6 and 7. */
                if (!(flags & CONVERGE_START_INACTIVE))
                        return 0;
                if (d->running && !up) {
                        r = emit(b, ACTION_ENABLE, e->name, NULL, NULL, "should be running");
                        if (r < 0)
                                return r;
                        r = emit(b, ACTION_START, e->name, NULL, NULL, "should be running");
                        if (r >= 0)
                                *ret_started = true;
                        return r;
                }
                if (!d->running && up) {
                        r = emit(b, ACTION_STOP, e->name, NULL, NULL, "should not be running");
                        if (r < 0)
                                return r;
                        return emit(b, ACTION_DISABLE, e->name, NULL, NULL,
                                    "should not be running");
                }
                return 0;
        }

        why = !m           ? "new unit"
              : same       ? "unit not found"
              : m->pending ? "finishing an interrupted change"
                           : "config changed";

        r = emit(b, ACTION_WRITE_FILE, e->file, e->file, d->unit_text, "%s", why);
        if (r < 0)
                return r;
        if (want_dropin)
                r = emit(b, ACTION_WRITE_DROPIN, e->name, e->dropin, d->dropin_text, "%s", why);
        else if (m && m->has_dropin)
                r = emit(b, ACTION_REMOVE_DROPIN, e->name, e->dropin, NULL, "%s", why);
        if (r < 0)
                return r;

        if (d->running) {
                r = emit(b, ACTION_ENABLE, e->name, NULL, NULL, "%s", why);
                if (r < 0)
                        return r;
                /* A rolling update: the controller restarts it when its turn
                 * comes; it keeps running the old config meanwhile. */
                if (d->defer_restart && m && up && !same)
                        return 0;
                /* A new unit that systemd already runs (from another directory,
                 * or installed before the agent lost its state) must restart to
                 * pick up the files just written; START would be a no-op. */
                r = emit(b, m || up ? ACTION_RESTART : ACTION_START, e->name, NULL, NULL, "%s",
                         why);
                if (r >= 0)
                        *ret_started = true;
                return r;
        }
        if (!m)
                return up ? emit(b, ACTION_STOP, e->name, NULL, NULL, "should not be running") : 0;

        r = emit(b, ACTION_STOP, e->name, NULL, NULL, "should not be running");
        if (r < 0)
                return r;
        return emit(b, ACTION_DISABLE, e->name, NULL, NULL, "should not be running");
}

static int emit_for_desired(Builder *b, const Entry *e, unsigned flags) {
        bool started = false;
        int r;

        r = emit_unit(b, e, flags, &started);
        if (r < 0)
                return r;
        return emit_shards(b, e, started);
}

/* Sorts, drops repeated writes/removals of a shared template file and
 * repeated refusals of a name, and adds the reload. */
static int builder_finish(Builder *b) {
        Plan *p = &b->plan;
        bool files_changed = false;
        size_t w = 0;
        int r;

        for (size_t i = 0; i < p->n_actions; i++)
                if (action_is_file_change(p->actions[i].type))
                        files_changed = true;
        if (files_changed) {
                r = emit(b, ACTION_DAEMON_RELOAD, NULL, NULL, NULL, "unit files changed");
                if (r < 0)
                        return r;
        }

        if (p->n_actions > 0)
                qsort(p->actions, p->n_actions, sizeof(Action), action_cmp);

        for (size_t i = 0; i < p->n_actions; i++) {
                Action *a = &p->actions[i];

                if (w > 0) {
                        Action *prev = &p->actions[w - 1];
                        bool same_file =
                                (a->type == ACTION_WRITE_FILE || a->type == ACTION_REMOVE_FILE) &&
                                prev->type == a->type && streq_ptr(prev->file_name, a->file_name);
                        bool same_refusal = a->type == ACTION_REFUSE && prev->type == a->type &&
                                            streq_ptr(prev->unit, a->unit);

                        if (same_file || same_refusal) {
                                free(a->unit);
                                free(a->file_name);
                                free(a->reason);
                                continue;
                        }
                }
                p->actions[w++] = *a;
        }
        p->n_actions = w;

        p->n_refused = 0;
        while (p->n_refused < p->n_actions && p->actions[p->n_refused].type == ACTION_REFUSE)
                p->n_refused++;
        return 0;
}

int converge_plan(const DesiredUnit *desired, size_t n_desired, const ManagedUnit *managed,
                  size_t n_managed, const ObservedUnit *observed, size_t n_observed,
                  const char *const *foreign_files, size_t n_foreign, const char *allow_globs,
                  unsigned flags, Plan *ret) {
        _cleanup_(builder_done) Builder b = { 0 };
        _cleanup_free_ const ManagedUnit **ms = NULL;
        _cleanup_free_ const ObservedUnit **os = NULL;
        _cleanup_free_ const char **foreign = NULL, **in_use = NULL;
        Entry *e = NULL;
        size_t n_e = 0, n_ms = 0, n_os = 0, n_fg = 0, n_in_use = 0;
        int r;

        assert(desired || n_desired == 0);
        assert(managed || n_managed == 0);
        assert(observed || n_observed == 0);
        assert(foreign_files || n_foreign == 0);
        assert(ret);

        /* Sorted views for lookups; entries without a name can match nothing. */
        ms = calloc(MAX(n_managed, (size_t) 1), sizeof(*ms));
        os = calloc(MAX(n_observed, (size_t) 1), sizeof(*os));
        foreign = calloc(MAX(n_foreign, (size_t) 1), sizeof(*foreign));
        e = calloc(MAX(n_desired + n_managed, (size_t) 1), sizeof(Entry));
        if (!ms || !os || !foreign || !e) {
                free(e);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_managed; i++)
                ms[n_ms++] = &managed[i];
        qsort(ms, n_ms, sizeof(*ms), managed_ptr_cmp);
        for (size_t i = 0; i < n_observed; i++)
                if (observed[i].name)
                        os[n_os++] = &observed[i];
        qsort(os, n_os, sizeof(*os), observed_ptr_cmp);
        for (size_t i = 0; i < n_foreign; i++)
                if (foreign_files[i])
                        foreign[n_fg++] = foreign_files[i];
        qsort(foreign, n_fg, sizeof(*foreign), str_ptr_cmp);

        for (size_t i = 0; i < n_desired; i++) {
                const DesiredUnit *d = &desired[i];

                e[n_e++] = (Entry){ .name = strempty(d->name), .d = d, .index = i };
                config_hash(d->unit_text, d->dropin_text, e[n_e - 1].computed_hash);
        }
        qsort(e, n_e, sizeof(Entry), entry_cmp);
        for (size_t i = 0; i + 1 < n_e; i++)
                if (streq(e[i].name, e[i + 1].name))
                        e[i].duplicate = e[i + 1].duplicate = true;

        for (size_t i = 0; i < n_e; i++) {
                if (e[i].name[0]) {
                        e[i].m = managed_find(ms, n_ms, e[i].name);
                        e[i].o = observed_find(os, n_os, e[i].name);
                }
                r = validate_desired(&e[i], allow_globs);
                if (r < 0)
                        goto finish;
        }

        /* Managed units that are no longer desired; the first record of a name counts. */
        for (size_t i = 0, n_d = n_e; i < n_ms; i++) {
                Entry *x;

                if (i > 0 && cmp_str(ms[i]->name, ms[i - 1]->name) == 0)
                        continue;
                if (!isempty(ms[i]->name) && entries_find(e, n_d, ms[i]->name))
                        continue;
                x = &e[n_e++];
                *x = (Entry){ .name = strempty(ms[i]->name), .m = ms[i], .index = SIZE_MAX };
                if (x->name[0])
                        x->o = observed_find(os, n_os, x->name);
                r = validate_removal(x, allow_globs);
                if (r < 0)
                        goto finish;
        }

        r = refuse_template_conflicts(e, n_e);
        if (r < 0)
                goto finish;
        for (size_t i = 0; i < n_e; i++) {
                r = refuse_foreign(&e[i], foreign, n_fg);
                if (r < 0)
                        goto finish;
        }

        /* Files that some unit still needs after this plan: those of accepted
         * desired units and of managed units that are refused and so stay. */
        in_use = calloc(MAX(n_e, (size_t) 1), sizeof(*in_use));
        if (!in_use) {
                r = -ENOMEM;
                goto finish;
        }
        for (size_t i = 0; i < n_e; i++)
                if (e[i].file && ((e[i].d && !e[i].refused) || (e[i].m && e[i].refused)))
                        in_use[n_in_use++] = e[i].file;
        qsort(in_use, n_in_use, sizeof(*in_use), str_ptr_cmp);

        for (size_t i = 0; i < n_e; i++) {
                if (e[i].refused)
                        r = emit(&b, ACTION_REFUSE, e[i].name, NULL, NULL, "%s", e[i].refused);
                else if (e[i].d)
                        r = emit_for_desired(&b, &e[i], flags);
                else
                        r = emit_for_removal(&b, &e[i], in_use, n_in_use);
                if (r < 0)
                        goto finish;
        }

        r = builder_finish(&b);
        if (r < 0)
                goto finish;

        *ret = b.plan;
        b.plan = (Plan){ 0 };
        r = 0;
finish:
        entries_free(e, n_e);
        return r;
}
