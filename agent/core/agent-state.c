/* SPDX-License-Identifier: MIT */
/* The agent's persistent state as text: a strict line parser (a damaged file
 * must be noticed, not half-read), a formatter that only writes what the
 * parser accepts, and the bookkeeping of managed units and Restart ids. */
#include "agent-state.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "unit-name.h"

#define HEADER "baton-agent-state"
#define TOKENS_MAX 6

static void unit_rec_done(ManagedUnitRec *u) {
        free(u->name);
        free(u->file_name);
        free(u->config_hash);
}

void agent_state_done(AgentState *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_units; i++)
                unit_rec_done(&s->units[i]);
        free(s->units);
        for (size_t i = 0; i < s->n_restarts; i++)
                free(s->restarts[i].id);
        free(s->restarts);
        *s = (AgentState){ 0 };
}

bool agent_state_restart_id_is_valid(const char *id) {
        size_t n;

        if (!id)
                return false;
        n = strnlen(id, AGENT_STATE_RESTART_ID_MAX + 1);
        if (n == 0 || n > AGENT_STATE_RESTART_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = id[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-'))
                        return false;
        }
        return true;
}

/* NULL if (name, file, hash) may be recorded, else what is wrong. */
static const char *unit_problem(const char *name, const char *file, const char *hash) {
        _cleanup_free_ char *want = NULL;
        int r;

        r = converge_unit_file_name(name, &want);
        if (r == -ENOMEM)
                return "out of memory";
        if (r < 0)
                return "invalid unit name";
        if (!streq_ptr(file, want))
                return "unit file does not match the unit name";
        if (!config_hash_is_valid(hash))
                return "invalid config hash";
        return NULL;
}

typedef struct NameIndex {
        const char *name;
        size_t index;
} NameIndex;

static int name_index_cmp(const void *x, const void *y) {
        const NameIndex *a = x, *b = y;
        int c = strcmp(a->name, b->name);

        if (c != 0)
                return c;
        return a->index < b->index ? -1 : a->index > b->index;
}

/* -EEXIST if a name occurs twice, with *ret_second the position of the
 * earliest second occurrence (the line to blame). */
static int find_duplicate(const char *const *names, size_t n, size_t *ret_second) {
        _cleanup_free_ NameIndex *v = NULL;
        size_t best = SIZE_MAX;

        if (n < 2)
                return 0;
        v = calloc(n, sizeof(NameIndex));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                v[i] = (NameIndex){ names[i], i };
        qsort(v, n, sizeof(NameIndex), name_index_cmp);
        for (size_t i = 1; i < n; i++)
                if (streq(v[i - 1].name, v[i].name))
                        best = MIN(best, v[i].index);
        if (best == SIZE_MAX)
                return 0;
        *ret_second = best;
        return -EEXIST;
}

/* A token safe to put in an error message: printable ASCII, shortened. */
static void token_sanitize(const char *t, size_t len, char out[static 40]) {
        size_t n = MIN(len, (size_t) 32), j = 0;

        for (size_t i = 0; i < n; i++)
                out[j++] = t[i] >= 0x20 && t[i] < 0x7f ? t[i] : '?';
        if (len > n) {
                memcpy(out + j, "...", 3);
                j += 3;
        }
        out[j] = '\0';
}

_printf_(3, 4) static int parse_error(char **ret_error, unsigned line, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int r;

        if (!ret_error)
                return -EINVAL;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (asprintf(ret_error, "line %u: %s", line, msg) < 0)
                return -ENOMEM;
        return -EINVAL;
}

/* Decimal, no sign, no leading zeros, fits in 64 bits. */
static int parse_u64(const char *s, size_t len, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t) (s[i] - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        *ret = v;
        return 0;
}

typedef struct Token {
        const char *p;
        size_t len;
} Token;

static bool token_is(const Token *t, const char *s) {
        return t->len == strlen(s) && memcmp(t->p, s, t->len) == 0;
}

static char *token_dup(const Token *t) {
        return strndup(t->p, t->len);
}

/* Splits a line at single spaces. -EINVAL on an empty token (leading,
 * trailing or doubled space) or more than TOKENS_MAX tokens. */
static int tokenize(const char *line, size_t len, Token tokens[static TOKENS_MAX], size_t *ret_n) {
        size_t n = 0, start = 0;

        for (size_t i = 0; i <= len; i++) {
                if (i < len && line[i] != ' ')
                        continue;
                if (i == start || n >= TOKENS_MAX)
                        return -EINVAL;
                tokens[n++] = (Token){ line + start, i - start };
                start = i + 1;
        }
        *ret_n = n;
        return 0;
}

typedef struct Parser {
        AgentState s;
        size_t units_allocated, restarts_allocated;
        unsigned *unit_lines, *restart_lines;
        bool seen_epoch, seen_applied;
} Parser;

static void parser_done(Parser *p) {
        agent_state_done(&p->s);
        free(p->unit_lines);
        free(p->restart_lines);
}

static int grow(void **arr, unsigned **lines, size_t *allocated, size_t n, size_t size) {
        size_t a;
        void *q;
        unsigned *l;

        if (n < *allocated)
                return 0;
        a = MAX(*allocated * 2, (size_t) 8);
        q = reallocarray(*arr, a, size);
        if (!q)
                return -ENOMEM;
        *arr = q;
        l = reallocarray(*lines, a, sizeof(unsigned));
        if (!l)
                return -ENOMEM;
        *lines = l;
        *allocated = a;
        return 0;
}

static int parse_numbers(const Token *t, size_t n, uint64_t *out, char **ret_error, unsigned line) {
        for (size_t i = 0; i < n; i++) {
                char tok[40];
                int r = parse_u64(t[i].p, t[i].len, &out[i]);

                if (r < 0) {
                        token_sanitize(t[i].p, t[i].len, tok);
                        return parse_error(ret_error, line, "%s \"%s\"",
                                           r == -ERANGE ? "number out of range" : "invalid number",
                                           tok);
                }
        }
        return 0;
}

static int parse_line(Parser *p, const Token *t, size_t n, unsigned line, char **ret_error) {
        char tok[40];
        uint64_t v[2];
        int r;

        if (token_is(&t[0], "epoch")) {
                if (n != 2)
                        return parse_error(ret_error, line, "expected \"epoch N\"");
                if (p->seen_epoch)
                        return parse_error(ret_error, line, "\"epoch\" given twice");
                r = parse_numbers(t + 1, 1, v, ret_error, line);
                if (r < 0)
                        return r;
                p->s.max_epoch_seen = v[0];
                p->seen_epoch = true;
                return 0;
        }

        if (token_is(&t[0], "applied")) {
                if (n != 3)
                        return parse_error(ret_error, line,
                                           "expected \"applied EPOCH GENERATION\"");
                if (p->seen_applied)
                        return parse_error(ret_error, line, "\"applied\" given twice");
                r = parse_numbers(t + 1, 2, v, ret_error, line);
                if (r < 0)
                        return r;
                p->s.applied_epoch = v[0];
                p->s.applied_generation = v[1];
                p->seen_applied = true;
                return 0;
        }

        if (token_is(&t[0], "unit")) {
                _cleanup_free_ char *name = NULL, *file = NULL, *hash = NULL;
                const char *problem;

                if ((n != 5 && !(n == 6 && token_is(&t[5], "pending"))) ||
                    !(token_is(&t[4], "0") || token_is(&t[4], "1")))
                        return parse_error(ret_error, line,
                                           "expected \"unit NAME FILE HASH 0|1 [pending]\"");
                if (p->s.n_units >= AGENT_STATE_UNITS_MAX)
                        return parse_error(ret_error, line, "more than %d units",
                                           AGENT_STATE_UNITS_MAX);
                name = token_dup(&t[1]);
                file = token_dup(&t[2]);
                hash = token_dup(&t[3]);
                if (!name || !file || !hash)
                        return -ENOMEM;
                problem = unit_problem(name, file, hash);
                if (problem) {
                        token_sanitize(t[1].p, t[1].len, tok);
                        return parse_error(ret_error, line, "unit \"%s\": %s", tok, problem);
                }
                r = grow((void **) &p->s.units, &p->unit_lines, &p->units_allocated, p->s.n_units,
                         sizeof(ManagedUnitRec));
                if (r < 0)
                        return r;
                p->unit_lines[p->s.n_units] = line;
                p->s.units[p->s.n_units++] = (ManagedUnitRec){
                        .name = TAKE_PTR(name),
                        .file_name = TAKE_PTR(file),
                        .config_hash = TAKE_PTR(hash),
                        .has_dropin = token_is(&t[4], "1"),
                        .pending = n == 6,
                };
                return 0;
        }

        if (token_is(&t[0], "restart")) {
                _cleanup_free_ char *id = NULL;

                if (n != 3)
                        return parse_error(ret_error, line, "expected \"restart ID NOT_AFTER_US\"");
                if (p->s.n_restarts >= AGENT_STATE_RESTARTS_MAX)
                        return parse_error(ret_error, line, "more than %d restart records",
                                           AGENT_STATE_RESTARTS_MAX);
                id = token_dup(&t[1]);
                if (!id)
                        return -ENOMEM;
                if (!agent_state_restart_id_is_valid(id)) {
                        token_sanitize(t[1].p, t[1].len, tok);
                        return parse_error(ret_error, line, "invalid restart id \"%s\"", tok);
                }
                r = parse_numbers(t + 2, 1, v, ret_error, line);
                if (r < 0)
                        return r;
                r = grow((void **) &p->s.restarts, &p->restart_lines, &p->restarts_allocated,
                         p->s.n_restarts, sizeof(RestartRec));
                if (r < 0)
                        return r;
                p->restart_lines[p->s.n_restarts] = line;
                p->s.restarts[p->s.n_restarts++] = (RestartRec){
                        .id = TAKE_PTR(id),
                        .not_after_us = v[0],
                };
                return 0;
        }

        if (token_is(&t[0], HEADER))
                return parse_error(ret_error, line, "header repeated");

        token_sanitize(t[0].p, t[0].len, tok);
        return parse_error(ret_error, line, "unknown keyword \"%s\"", tok);
}

static int parse_header(const char *line, size_t len, char **ret_error) {
        Token t[TOKENS_MAX];
        char tok[40];
        size_t n;

        if (tokenize(line, len, t, &n) < 0 || n != 2 || !token_is(&t[0], HEADER))
                return parse_error(ret_error, 1, "not an agent state file (expected \"%s %d\")",
                                   HEADER, AGENT_STATE_VERSION);
        if (!token_is(&t[1], "1")) {
                token_sanitize(t[1].p, t[1].len, tok);
                return parse_error(ret_error, 1, "unsupported version \"%s\" (expected %d)", tok,
                                   AGENT_STATE_VERSION);
        }
        return 0;
}

/* Names and ids once each: checked at the end, in O(n log n). */
static int check_duplicates(const Parser *p, char **ret_error) {
        _cleanup_free_ const char **names = NULL;
        size_t n = MAX(p->s.n_units, p->s.n_restarts), dup;
        int r;

        names = calloc(MAX(n, (size_t) 1), sizeof(char *));
        if (!names)
                return -ENOMEM;

        for (size_t i = 0; i < p->s.n_units; i++)
                names[i] = p->s.units[i].name;
        r = find_duplicate(names, p->s.n_units, &dup);
        if (r == -EEXIST)
                return parse_error(ret_error, p->unit_lines[dup], "unit %s listed twice",
                                   p->s.units[dup].name);
        if (r < 0)
                return r;

        for (size_t i = 0; i < p->s.n_restarts; i++)
                names[i] = p->s.restarts[i].id;
        r = find_duplicate(names, p->s.n_restarts, &dup);
        if (r == -EEXIST)
                return parse_error(ret_error, p->restart_lines[dup], "restart %s listed twice",
                                   p->s.restarts[dup].id);
        return r;
}

int agent_state_parse(const char *text, AgentState *ret, char **ret_error) {
        _cleanup_(parser_done) Parser p = { 0 };
        _cleanup_free_ char *error = NULL;
        unsigned line = 0;
        int r;

        assert(text);
        assert(ret);

        for (const char *s = text; *s;) {
                const char *nl = strchr(s, '\n');
                size_t len = nl ? (size_t) (nl - s) : strlen(s);
                Token t[TOKENS_MAX];
                size_t n;

                line++;
                if (line == 1)
                        r = parse_header(s, len, &error);
                else if (len == 0)
                        r = parse_error(&error, line, "empty line");
                else if (tokenize(s, len, t, &n) < 0)
                        r = parse_error(&error, line, "fields must be separated by single spaces");
                else
                        r = parse_line(&p, t, n, line, &error);
                if (r < 0)
                        goto fail;

                s += len;
                if (*s == '\n')
                        s++;
        }
        if (line == 0) {
                r = parse_error(&error, 1, "missing header \"%s %d\"", HEADER, AGENT_STATE_VERSION);
                goto fail;
        }

        r = check_duplicates(&p, &error);
        if (r < 0)
                goto fail;

        *ret = p.s;
        p.s = (AgentState){ 0 };
        return 0;

fail:
        if (ret_error)
                *ret_error = TAKE_PTR(error);
        return r;
}

int agent_state_format(const AgentState *s, char **ret) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ const char **names = NULL;
        size_t size = 0, dup;
        FILE *f;
        int r;

        assert(s);
        assert(ret);

        /* Refuse what agent_state_parse() would refuse. */
        if (s->n_units > AGENT_STATE_UNITS_MAX || s->n_restarts > AGENT_STATE_RESTARTS_MAX)
                return -EINVAL;
        for (size_t i = 0; i < s->n_units; i++) {
                const char *problem = unit_problem(s->units[i].name, s->units[i].file_name,
                                                   s->units[i].config_hash);
                if (problem)
                        return streq(problem, "out of memory") ? -ENOMEM : -EINVAL;
        }
        for (size_t i = 0; i < s->n_restarts; i++)
                if (!agent_state_restart_id_is_valid(s->restarts[i].id))
                        return -EINVAL;
        names = calloc(MAX(MAX(s->n_units, s->n_restarts), (size_t) 1), sizeof(char *));
        if (!names)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_units; i++)
                names[i] = s->units[i].name;
        r = find_duplicate(names, s->n_units, &dup);
        if (r < 0)
                return r == -EEXIST ? -EINVAL : r;
        for (size_t i = 0; i < s->n_restarts; i++)
                names[i] = s->restarts[i].id;
        r = find_duplicate(names, s->n_restarts, &dup);
        if (r < 0)
                return r == -EEXIST ? -EINVAL : r;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fprintf(f, "%s %d\nepoch %" PRIu64 "\napplied %" PRIu64 " %" PRIu64 "\n", HEADER,
                AGENT_STATE_VERSION, s->max_epoch_seen, s->applied_epoch, s->applied_generation);
        for (size_t i = 0; i < s->n_units; i++)
                fprintf(f, "unit %s %s %s %d%s\n", s->units[i].name, s->units[i].file_name,
                        s->units[i].config_hash, s->units[i].has_dropin ? 1 : 0,
                        s->units[i].pending ? " pending" : "");
        for (size_t i = 0; i < s->n_restarts; i++)
                fprintf(f, "restart %s %" PRIu64 "\n", s->restarts[i].id,
                        s->restarts[i].not_after_us);
        if (ferror(f)) {
                fclose(f);
                return -ENOMEM;
        }
        if (fclose(f) != 0)
                return -ENOMEM;

        *ret = TAKE_PTR(buf);
        return 0;
}

static ssize_t unit_index(const AgentState *s, const char *name) {
        for (size_t i = 0; i < s->n_units; i++)
                if (streq(s->units[i].name, name))
                        return (ssize_t) i;
        return -1;
}

int agent_state_copy(const AgentState *s, AgentState *ret) {
        _cleanup_(agent_state_done) AgentState c = { 0 };

        assert(s);
        assert(ret);

        c.max_epoch_seen = s->max_epoch_seen;
        c.applied_epoch = s->applied_epoch;
        c.applied_generation = s->applied_generation;
        if (s->n_units > 0) {
                c.units = calloc(s->n_units, sizeof(ManagedUnitRec));
                if (!c.units)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < s->n_units; i++) {
                const ManagedUnitRec *u = &s->units[i];
                ManagedUnitRec *v = &c.units[c.n_units++];

                *v = (ManagedUnitRec){ .has_dropin = u->has_dropin, .pending = u->pending };
                v->name = strdup(u->name);
                v->file_name = strdup(u->file_name);
                v->config_hash = strdup(u->config_hash);
                if (!v->name || !v->file_name || !v->config_hash)
                        return -ENOMEM;
        }
        if (s->n_restarts > 0) {
                c.restarts = calloc(s->n_restarts, sizeof(RestartRec));
                if (!c.restarts)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < s->n_restarts; i++) {
                RestartRec *v = &c.restarts[c.n_restarts++];

                *v = (RestartRec){ .id = strdup(s->restarts[i].id),
                                   .not_after_us = s->restarts[i].not_after_us };
                if (!v->id)
                        return -ENOMEM;
        }

        *ret = c;
        c = (AgentState){ 0 };
        return 0;
}

static int set_unit(AgentState *s, const char *name, const char *file_name, const char *config_hash,
                    bool has_dropin, bool pending) {
        _cleanup_free_ char *n = NULL, *f = NULL, *h = NULL;
        const char *problem;
        ManagedUnitRec *units;
        ssize_t idx;
        size_t pos;

        assert(s);

        problem = unit_problem(name, file_name, config_hash);
        if (problem)
                return streq(problem, "out of memory") ? -ENOMEM : -EINVAL;

        f = strdup(file_name);
        h = strdup(config_hash);
        if (!f || !h)
                return -ENOMEM;

        idx = unit_index(s, name);
        if (idx >= 0) {
                ManagedUnitRec *u = &s->units[idx];

                free(u->file_name);
                free(u->config_hash);
                u->file_name = TAKE_PTR(f);
                u->config_hash = TAKE_PTR(h);
                u->has_dropin = has_dropin || (pending && u->has_dropin);
                u->pending = pending;
                return 0;
        }

        if (s->n_units >= AGENT_STATE_UNITS_MAX)
                return -E2BIG;
        n = strdup(name);
        if (!n)
                return -ENOMEM;
        units = reallocarray(s->units, s->n_units + 1, sizeof(ManagedUnitRec));
        if (!units)
                return -ENOMEM;
        s->units = units;

        for (pos = 0; pos < s->n_units && strcmp(s->units[pos].name, name) < 0; pos++)
                ;
        memmove(s->units + pos + 1, s->units + pos, (s->n_units - pos) * sizeof(ManagedUnitRec));
        s->units[pos] = (ManagedUnitRec){
                .name = TAKE_PTR(n),
                .file_name = TAKE_PTR(f),
                .config_hash = TAKE_PTR(h),
                .has_dropin = has_dropin,
                .pending = pending,
        };
        s->n_units++;
        return 0;
}

int agent_state_set_unit(AgentState *s, const char *name, const char *file_name,
                         const char *config_hash, bool has_dropin) {
        return set_unit(s, name, file_name, config_hash, has_dropin, false);
}

int agent_state_mark_pending(AgentState *s, const char *name, const char *file_name,
                             const char *config_hash, bool has_dropin) {
        return set_unit(s, name, file_name, config_hash, has_dropin, true);
}

int agent_state_remove_unit(AgentState *s, const char *name) {
        ssize_t idx;

        assert(s);

        if (!name)
                return -ENOENT;
        idx = unit_index(s, name);
        if (idx < 0)
                return -ENOENT;
        unit_rec_done(&s->units[idx]);
        memmove(s->units + idx, s->units + idx + 1,
                (s->n_units - (size_t) idx - 1) * sizeof(ManagedUnitRec));
        s->n_units--;
        return 0;
}

int agent_state_managed_units(const AgentState *s, ManagedUnit **ret, size_t *ret_n) {
        ManagedUnit *m = NULL;

        assert(s);
        assert(ret);
        assert(ret_n);

        if (s->n_units > 0) {
                m = calloc(s->n_units, sizeof(ManagedUnit));
                if (!m)
                        return -ENOMEM;
                for (size_t i = 0; i < s->n_units; i++)
                        m[i] = (ManagedUnit){
                                .name = s->units[i].name,
                                .file_name = s->units[i].file_name,
                                .config_hash = s->units[i].config_hash,
                                .has_dropin = s->units[i].has_dropin,
                                .pending = s->units[i].pending,
                        };
        }
        *ret = m;
        *ret_n = s->n_units;
        return 0;
}

bool agent_state_restart_seen(const AgentState *s, const char *id) {
        assert(s);

        if (!id)
                return false;
        for (size_t i = 0; i < s->n_restarts; i++)
                if (streq(s->restarts[i].id, id))
                        return true;
        return false;
}

static void restart_remove(AgentState *s, size_t i);

int agent_state_restart_forget(AgentState *s, const char *id) {
        assert(s);

        for (size_t i = 0; i < s->n_restarts; i++)
                if (streq_ptr(s->restarts[i].id, id)) {
                        restart_remove(s, i);
                        return 0;
                }
        return -ENOENT;
}

static void restart_remove(AgentState *s, size_t i) {
        free(s->restarts[i].id);
        memmove(s->restarts + i, s->restarts + i + 1, (s->n_restarts - i - 1) * sizeof(RestartRec));
        s->n_restarts--;
}

int agent_state_restart_record(AgentState *s, const char *id, uint64_t not_after_us,
                               uint64_t now_us) {
        _cleanup_free_ char *copy = NULL;
        RestartRec *r;
        size_t w = 0;

        assert(s);

        if (!agent_state_restart_id_is_valid(id))
                return -EINVAL;
        if (not_after_us == 0)
                not_after_us = now_us;

        /* Expired long enough ago that a re-delivery would be refused as void. */
        for (size_t i = 0; i < s->n_restarts; i++) {
                RestartRec *x = &s->restarts[i];

                if (now_us > x->not_after_us &&
                    now_us - x->not_after_us > AGENT_STATE_RESTART_GRACE_US) {
                        free(x->id);
                        continue;
                }
                s->restarts[w++] = *x;
        }
        s->n_restarts = w;

        for (size_t i = 0; i < s->n_restarts; i++)
                if (streq(s->restarts[i].id, id)) {
                        s->restarts[i].not_after_us =
                                MAX(s->restarts[i].not_after_us, not_after_us);
                        return 0;
                }

        copy = strdup(id);
        if (!copy)
                return -ENOMEM;

        while (s->n_restarts >= AGENT_STATE_RESTARTS_MAX) {
                size_t oldest = 0;

                for (size_t i = 1; i < s->n_restarts; i++)
                        if (s->restarts[i].not_after_us < s->restarts[oldest].not_after_us)
                                oldest = i;
                restart_remove(s, oldest);
        }

        r = reallocarray(s->restarts, s->n_restarts + 1, sizeof(RestartRec));
        if (!r)
                return -ENOMEM;
        s->restarts = r;
        s->restarts[s->n_restarts++] =
                (RestartRec){ .id = TAKE_PTR(copy), .not_after_us = not_after_us };
        return 1;
}
