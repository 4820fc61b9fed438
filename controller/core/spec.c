/* SPDX-License-Identifier: MIT */
/* Service specs: a strict reader of unit files with an [X-Baton] section. It
 * owns the line syntax of unit files as systemd reads them (continuations,
 * comments, repeated keys), the table of [X-Baton] keys with their types and
 * bounds, and the rules that tie the keys together. Pure. */
#include "spec.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <strings.h>

#include "duration.h"
#include "fnv.h"
#include "rangelist.h"
#include "unit-name.h"

static const char *const service_kind_table[_SERVICE_KIND_MAX] = {
        [SERVICE_STATELESS] = "stateless",
        [SERVICE_SINGLETON] = "singleton",
        [SERVICE_SHARDED] = "sharded",
};

DEFINE_STRING_TABLE_LOOKUP(service_kind, ServiceKind, _SERVICE_KIND_MAX)

#define BLANKS " \t"
#define XBATON "X-Baton"
/* The digits of the largest instance ordinal, for the name length check. */
#define ORDINAL_DIGITS_MAX 10
/* Values quoted in messages are cut here: a message names, it does not echo. */
#define QUOTE_MAX 48

typedef enum SpecKey {
        KEY_KIND,
        KEY_INSTANCES,
        KEY_REPLICAS,
        KEY_SHARDS,
        KEY_MIN_REPLICAS,
        KEY_MAX_REPLICAS,
        KEY_MAX_PER_HOST,
        KEY_REQUIRE_LABELS,
        KEY_SPREAD,
        KEY_MEMORY,
        KEY_MAX_UNAVAILABLE,
        KEY_MAX_SURGE,
        KEY_HEALTHY_FOR,
        KEY_HEALTH_TIMEOUT,
        KEY_IDENTIFY_CONCURRENCY,
        KEY_IDENTIFY_INTERVAL,
        KEY_DAILY_START_BUDGET,
        KEY_SHARD_CHANGE,
        _KEY_MAX,
} SpecKey;

typedef enum ValueType {
        VALUE_KIND,
        VALUE_UINT32,
        VALUE_LABELS,
        VALUE_LABEL_KEY,
        VALUE_SIZE,
        VALUE_DURATION,
        VALUE_SHARD_CHANGE,
} ValueType;

#define KINDS_ALL ((1u << SERVICE_STATELESS) | (1u << SERVICE_SINGLETON) | (1u << SERVICE_SHARDED))
#define KINDS_SCALABLE ((1u << SERVICE_STATELESS) | (1u << SERVICE_SHARDED))
#define KINDS_STATELESS (1u << SERVICE_STATELESS)
#define KINDS_SHARDED (1u << SERVICE_SHARDED)

/* Every [X-Baton] key once: where it goes, what it takes, for which kinds. */
typedef struct KeyInfo {
        const char *name;
        ValueType type;
        size_t offset; /* of the field in ServiceSpec */
        uint64_t min, max;
        unsigned kinds; /* bit mask of the kinds that take the key */
        const char *kinds_text;
} KeyInfo;

static const KeyInfo key_table[_KEY_MAX] = {
        [KEY_KIND] = { "Kind", VALUE_KIND, offsetof(ServiceSpec, kind), 0, 0, KINDS_ALL, NULL },
        [KEY_INSTANCES] = { "Instances", VALUE_UINT32, offsetof(ServiceSpec, count), 1,
                            SPEC_COUNT_MAX, KINDS_SHARDED, "only for Kind=sharded" },
        [KEY_REPLICAS] = { "Replicas", VALUE_UINT32, offsetof(ServiceSpec, count), 0,
                           SPEC_COUNT_MAX, KINDS_STATELESS, "only for Kind=stateless" },
        [KEY_SHARDS] = { "Shards", VALUE_UINT32, offsetof(ServiceSpec, shards), 1,
                         RANGELIST_MAX_SHARD, KINDS_SHARDED, "only for Kind=sharded" },
        [KEY_MIN_REPLICAS] = { "MinReplicas", VALUE_UINT32, offsetof(ServiceSpec, min_replicas), 0,
                               SPEC_COUNT_MAX, KINDS_SCALABLE,
                               "only for Kind=stateless and Kind=sharded" },
        [KEY_MAX_REPLICAS] = { "MaxReplicas", VALUE_UINT32, offsetof(ServiceSpec, max_replicas), 1,
                               UINT32_MAX, KINDS_SCALABLE,
                               "only for Kind=stateless and Kind=sharded" },
        [KEY_MAX_PER_HOST] = { "MaxPerHost", VALUE_UINT32, offsetof(ServiceSpec, max_per_host), 0,
                               UINT32_MAX, KINDS_ALL, NULL },
        [KEY_REQUIRE_LABELS] = { "RequireLabels", VALUE_LABELS,
                                 offsetof(ServiceSpec, require_labels), 0, 0, KINDS_ALL, NULL },
        [KEY_SPREAD] = { "Spread", VALUE_LABEL_KEY, offsetof(ServiceSpec, spread), 0, 0, KINDS_ALL,
                         NULL },
        [KEY_MEMORY] = { "Memory", VALUE_SIZE, offsetof(ServiceSpec, memory), 0, SPEC_MEMORY_MAX,
                         KINDS_ALL, NULL },
        [KEY_MAX_UNAVAILABLE] = { "MaxUnavailable", VALUE_UINT32,
                                  offsetof(ServiceSpec, max_unavailable), 1, UINT32_MAX, KINDS_ALL,
                                  NULL },
        [KEY_MAX_SURGE] = { "MaxSurge", VALUE_UINT32, offsetof(ServiceSpec, max_surge), 0,
                            SPEC_COUNT_MAX, KINDS_SHARDED, "only for Kind=sharded" },
        [KEY_HEALTHY_FOR] = { "HealthyFor", VALUE_DURATION, offsetof(ServiceSpec, healthy_for), 0,
                              SPEC_DURATION_MAX, KINDS_ALL, NULL },
        [KEY_HEALTH_TIMEOUT] = { "HealthTimeout", VALUE_DURATION,
                                 offsetof(ServiceSpec, health_timeout), 1, SPEC_DURATION_MAX,
                                 KINDS_ALL, NULL },
        [KEY_IDENTIFY_CONCURRENCY] = { "IdentifyConcurrency", VALUE_UINT32,
                                       offsetof(ServiceSpec, identify_concurrency), 1,
                                       SPEC_COUNT_MAX, KINDS_SHARDED, "only for Kind=sharded" },
        [KEY_IDENTIFY_INTERVAL] = { "IdentifyInterval", VALUE_DURATION,
                                    offsetof(ServiceSpec, identify_interval), 1, SPEC_DURATION_MAX,
                                    KINDS_SHARDED, "only for Kind=sharded" },
        [KEY_DAILY_START_BUDGET] = { "DailyStartBudget", VALUE_UINT32,
                                     offsetof(ServiceSpec, daily_start_budget), 0, UINT32_MAX,
                                     KINDS_ALL, NULL },
        [KEY_SHARD_CHANGE] = { "ShardChange", VALUE_SHARD_CHANGE,
                               offsetof(ServiceSpec, shard_reload), 0, 0, KINDS_SHARDED,
                               "only for Kind=sharded" },
};

typedef enum Section {
        SECTION_NONE, /* before the first header */
        SECTION_SYSTEMD,
        SECTION_XBATON,
        SECTION_OTHER_X, /* someone else's extension: not ours to read */
} Section;

typedef struct Parser {
        const char *file;
        ServiceSpec *spec;
        char **ret_error;
        Section section;
        unsigned service_line; /* first [Service], 0 = none yet */
        unsigned xbaton_line;
        unsigned key_line[_KEY_MAX]; /* where each key was given, 0 = not given */
        unsigned exec_reload_line;   /* ExecReload= in [Service], 0 = none */
        bool in_service;
} Parser;

static bool is_label_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '/' || c == ':' || c == '-';
}

static bool label_is_valid(const char *s, size_t len) {
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!is_label_char(s[i]))
                        return false;
        return true;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_is_valid(const char *s, size_t n) {
        const unsigned char *u = (const unsigned char *) s;

        for (size_t i = 0; i < n;) {
                uint32_t cp, min;
                size_t k;

                if (u[i] < 0x80) {
                        i++;
                        continue;
                }
                if ((u[i] & 0xe0) == 0xc0) {
                        k = 1;
                        cp = u[i] & 0x1f;
                        min = 0x80;
                } else if ((u[i] & 0xf0) == 0xe0) {
                        k = 2;
                        cp = u[i] & 0x0f;
                        min = 0x800;
                } else if ((u[i] & 0xf8) == 0xf0) {
                        k = 3;
                        cp = u[i] & 0x07;
                        min = 0x10000;
                } else
                        return false;

                if (n - i <= k)
                        return false;
                for (size_t j = 1; j <= k; j++) {
                        if ((u[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (u[i + j] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += k + 1;
        }
        return true;
}

/* A printable, bounded copy of user text for a message: control bytes (and,
 * unless the text is known to be UTF-8, any non-ASCII byte) become '?', and
 * a long text is cut at a character boundary with "...". */
static const char *quote(char buf[static QUOTE_MAX + 4], const char *s, bool utf8) {
        size_t n = strlen(s), cut = MIN(n, (size_t) QUOTE_MAX);

        /* Do not split a multi-byte character. */
        while (utf8 && cut < n && cut > 0 && ((unsigned char) s[cut] & 0xc0) == 0x80)
                cut--;
        for (size_t i = 0; i < cut; i++) {
                unsigned char c = (unsigned char) s[i];
                buf[i] = c < 0x20 || c == 0x7f || (!utf8 && c >= 0x80) ? '?' : (char) c;
        }
        if (cut < n) {
                memcpy(buf + cut, "...", 3);
                cut += 3;
        }
        buf[cut] = '\0';
        return buf;
}

/* Sets the error message "FILE:LINE: …" (or "FILE: …" for line 0) and
 * returns -EINVAL, or -ENOMEM if the message cannot be built. */
_printf_(3, 4) static int fail(Parser *p, unsigned line, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        char *e;
        va_list ap;
        int r;

        if (!p->ret_error)
                return -EINVAL;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;

        if (line > 0)
                r = asprintf(&e, "%s:%u: %s", p->file, line, msg);
        else
                r = asprintf(&e, "%s: %s", p->file, msg);
        if (r < 0)
                return -ENOMEM;

        *p->ret_error = e;
        return -EINVAL;
}

/* asprintf() leaves the pointer undefined on failure: make it NULL. */
_printf_(2, 3) static void asprintf_or_null(char **ret, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(ret, fmt, ap) < 0)
                *ret = NULL;
        va_end(ap);
}

static char *strip(char *s) {
        size_t n;

        s += strspn(s, BLANKS);
        n = strlen(s);
        while (n > 0 && strchr(BLANKS, s[n - 1]))
                n--;
        s[n] = '\0';
        return s;
}

static uint32_t *field_u32(ServiceSpec *s, SpecKey k) {
        return (uint32_t *) ((char *) s + key_table[k].offset);
}

static uint64_t *field_u64(ServiceSpec *s, SpecKey k) {
        return (uint64_t *) ((char *) s + key_table[k].offset);
}

static int fail_range(Parser *p, unsigned line, SpecKey k, const char *value, uint64_t v) {
        const KeyInfo *ki = &key_table[k];
        char q[QUOTE_MAX + 4], bound[MAX(DURATION_MAX_LEN, SIZE_MAX_LEN)];
        bool small = v < ki->min;
        uint64_t b = small ? ki->min : ki->max;

        if (ki->type == VALUE_DURATION)
                duration_format(bound, sizeof(bound), b);
        else if (ki->type == VALUE_SIZE)
                size_format(bound, sizeof(bound), b);
        else
                snprintf(bound, sizeof(bound), "%" PRIu64, b);

        return fail(p, line, "[" XBATON "] %s: '%s' is too %s (at %s %s)", ki->name,
                    quote(q, value, true), small ? "small" : "large", small ? "least" : "most",
                    bound);
}

/* Plain decimal digits; anything else (sign, blanks, hex) is not a number. */
static int parse_u32(Parser *p, unsigned line, SpecKey k, const char *value) {
        const KeyInfo *ki = &key_table[k];
        char q[QUOTE_MAX + 4];
        uint64_t v = 0;
        bool overflow = false;

        if (value[strspn(value, "0123456789")] != '\0')
                return fail(p, line, "[" XBATON "] %s: '%s' is not a number", ki->name,
                            quote(q, value, true));
        for (const char *c = value; *c; c++) {
                if (v > (UINT64_MAX - 9) / 10) {
                        overflow = true;
                        break;
                }
                v = v * 10 + (uint64_t) (*c - '0');
        }
        if (overflow || v < ki->min || v > ki->max)
                return fail_range(p, line, k, value, overflow ? UINT64_MAX : v);

        *field_u32(p->spec, k) = (uint32_t) v;
        return 0;
}

static int parse_duration(Parser *p, unsigned line, SpecKey k, const char *value) {
        const KeyInfo *ki = &key_table[k];
        char q[QUOTE_MAX + 4];
        usec_t u;
        int r;

        r = duration_parse(value, &u);
        if (r == -ERANGE)
                return fail_range(p, line, k, value, UINT64_MAX);
        if (r < 0)
                return fail(p, line, "[" XBATON "] %s: '%s' is not a duration", ki->name,
                            quote(q, value, true));
        /* Planners add these to clocks; infinity would wrap around. */
        if (u == USEC_INFINITY)
                return fail(p, line, "[" XBATON "] %s: must be finite", ki->name);
        if (u < ki->min || u > ki->max)
                return fail_range(p, line, k, value, u);

        *field_u64(p->spec, k) = u;
        return 0;
}

static int parse_size(Parser *p, unsigned line, SpecKey k, const char *value) {
        const KeyInfo *ki = &key_table[k];
        char q[QUOTE_MAX + 4];
        uint64_t v;
        int r;

        r = size_parse(value, &v);
        if (r == -ERANGE)
                return fail_range(p, line, k, value, UINT64_MAX);
        if (r < 0)
                return fail(p, line, "[" XBATON "] %s: '%s' is not a size", ki->name,
                            quote(q, value, true));
        if (v < ki->min || v > ki->max)
                return fail_range(p, line, k, value, v);

        *field_u64(p->spec, k) = v;
        return 0;
}

static int parse_kind(Parser *p, unsigned line, const char *value) {
        char q[QUOTE_MAX + 4];
        ServiceKind kind;

        kind = service_kind_from_string(value);
        if (kind < 0)
                return fail(p, line,
                            "[" XBATON "] Kind: '%s' is not a kind (stateless, singleton, sharded)",
                            quote(q, value, true));
        p->spec->kind = kind;
        return 0;
}

static int parse_shard_change(Parser *p, unsigned line, const char *value) {
        char q[QUOTE_MAX + 4];

        if (streq(value, "restart"))
                p->spec->shard_reload = false;
        else if (streq(value, "reload"))
                p->spec->shard_reload = true;
        else
                return fail(p, line, "[" XBATON "] ShardChange: '%s' is not restart or reload",
                            quote(q, value, true));
        return 0;
}

static int parse_label_key(Parser *p, unsigned line, const char *value) {
        char q[QUOTE_MAX + 4];
        char *copy;

        if (isempty(value))
                return 0;
        if (!label_is_valid(value, strlen(value)))
                return fail(p, line,
                            "[" XBATON "] Spread: '%s' is not a label key (A-Z a-z 0-9 . _ / : -)",
                            quote(q, value, true));
        copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        p->spec->spread = copy;
        return 0;
}

static void labels_free(SpecLabel *l, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(l[i].key);
                free(l[i].value);
        }
        free(l);
}

/* "k=v k=v": every word a label, every key once (all must match, so a key
 * required with two values could never be placed). */
static int parse_labels(Parser *p, unsigned line, char *value) {
        char q[QUOTE_MAX + 4];
        SpecLabel *labels = NULL;
        size_t n = 0;
        int r = 0;

        for (char *w = value + strspn(value, BLANKS); *w; w += strspn(w, BLANKS)) {
                size_t len = strcspn(w, BLANKS);
                char saved = w[len], *eq;

                w[len] = '\0';
                eq = strchr(w, '=');
                if (!eq) {
                        r = fail(p, line, "[" XBATON "] RequireLabels: '%s' is not KEY=VALUE",
                                 quote(q, w, true));
                        goto finish;
                }
                if (!label_is_valid(w, (size_t) (eq - w)) ||
                    !label_is_valid(eq + 1, strlen(eq + 1))) {
                        r = fail(p, line,
                                 "[" XBATON "] RequireLabels: '%s' is not KEY=VALUE with a "
                                 "non-empty key and value of A-Z a-z 0-9 . _ / : -",
                                 quote(q, w, true));
                        goto finish;
                }
                for (size_t i = 0; i < n; i++)
                        if (strlen(labels[i].key) == (size_t) (eq - w) &&
                            memcmp(labels[i].key, w, (size_t) (eq - w)) == 0) {
                                r = fail(p, line,
                                         "[" XBATON "] RequireLabels: label '%s' given twice",
                                         labels[i].key);
                                goto finish;
                        }
                if (n >= SPEC_LABELS_MAX) {
                        r = fail(p, line, "[" XBATON "] RequireLabels: more than %u labels",
                                 SPEC_LABELS_MAX);
                        goto finish;
                }

                SpecLabel *nl = realloc(labels, (n + 1) * sizeof(SpecLabel));
                if (!nl) {
                        r = -ENOMEM;
                        goto finish;
                }
                labels = nl;
                labels[n] = (SpecLabel){
                        .key = strndup(w, (size_t) (eq - w)),
                        .value = strdup(eq + 1),
                };
                n++;
                if (!labels[n - 1].key || !labels[n - 1].value) {
                        r = -ENOMEM;
                        goto finish;
                }

                w[len] = saved;
                w += len;
        }

finish:
        if (r < 0) {
                labels_free(labels, n);
                return r;
        }
        p->spec->require_labels = labels;
        p->spec->n_require_labels = n;
        return 0;
}

static int parse_xbaton(Parser *p, unsigned line, const char *key, char *value) {
        char q[QUOTE_MAX + 4];
        SpecKey k;

        /* Our own section may carry trailing comments: no value of ours
         * contains '#', and the annotated example in docs/DESIGN.md §9 should parse. */
        for (char *c = value; *c; c++)
                if (*c == '#' && (c == value || strchr(BLANKS, c[-1]))) {
                        *c = '\0';
                        value = strip(value);
                        break;
                }

        for (k = 0; k < _KEY_MAX; k++)
                if (streq(key_table[k].name, key))
                        break;
        if (k == _KEY_MAX)
                return fail(p, line, "[" XBATON "] %s: unknown key", quote(q, key, true));

        if (p->key_line[k] > 0)
                return fail(p, line, "[" XBATON "] %s: given twice (first at line %u)",
                            key_table[k].name, p->key_line[k]);
        p->key_line[k] = line;

        switch (key_table[k].type) {
        case VALUE_LABELS:
                return parse_labels(p, line, value);
        case VALUE_LABEL_KEY:
                return parse_label_key(p, line, value);
        default:
                break;
        }

        if (isempty(value))
                return fail(p, line, "[" XBATON "] %s: empty value", key_table[k].name);

        switch (key_table[k].type) {
        case VALUE_KIND:
                return parse_kind(p, line, value);
        case VALUE_SHARD_CHANGE:
                return parse_shard_change(p, line, value);
        case VALUE_UINT32:
                return parse_u32(p, line, k, value);
        case VALUE_SIZE:
                return parse_size(p, line, k, value);
        case VALUE_DURATION:
                return parse_duration(p, line, k, value);
        default:
                assert(false);
                return -EINVAL;
        }
}

static int parse_section(Parser *p, unsigned line, char *l) {
        char q[QUOTE_MAX + 4];
        size_t len = strlen(l);
        const char *name;

        if (len < 3 || l[len - 1] != ']')
                return fail(p, line, "invalid section header '%s'", quote(q, l, true));
        l[len - 1] = '\0';
        name = l + 1;

        if (streq(name, XBATON)) {
                if (p->xbaton_line > 0)
                        return fail(p, line, "[" XBATON "] section given twice (first at line %u)",
                                    p->xbaton_line);
                p->xbaton_line = line;
                p->section = SECTION_XBATON;
                return 0;
        }
        /* systemd would ignore a misspelt [x-baton] silently, and with it
         * every setting the operator meant. */
        if (strcasecmp(name, XBATON) == 0)
                return fail(p, line,
                            "section [%s] is not [" XBATON "] (section names are case-sensitive)",
                            quote(q, name, true));
        p->in_service = streq(name, "Service");
        if (streq(name, "Service")) {
                if (p->service_line == 0)
                        p->service_line = line;
                p->section = SECTION_SYSTEMD;
                return 0;
        }
        if (streq(name, "Unit") || streq(name, "Install")) {
                p->section = SECTION_SYSTEMD;
                return 0;
        }
        if (strncmp(name, "X-", 2) == 0) {
                p->section = SECTION_OTHER_X;
                return 0;
        }
        return fail(p, line,
                    "unknown section [%s] (a service has [Unit], [Service], [Install] and "
                    "[X-...] sections)",
                    quote(q, name, true));
}

/* One logical line: continuations joined, not yet stripped. */
static int parse_line(Parser *p, unsigned line, char *l) {
        char q[QUOTE_MAX + 4];
        char *eq, *key, *value;

        l = strip(l);
        if (*l == '\0' || *l == '#' || *l == ';')
                return 0;
        if (*l == '[')
                return parse_section(p, line, l);

        eq = strchr(l, '=');
        if (!eq)
                return fail(p, line, "'%s' is not KEY=VALUE, a [Section] header or a comment",
                            quote(q, l, true));
        if (p->section == SECTION_NONE)
                return fail(p, line, "assignment outside of any section");

        *eq = '\0';
        key = strip(l);
        value = strip(eq + 1);
        if (*key == '\0')
                return fail(p, line, "assignment without a key");

        if (p->in_service && streq(key, "ExecReload") && !isempty(value))
                p->exec_reload_line = line;
        if (p->section != SECTION_XBATON)
                return 0;
        return parse_xbaton(p, line, key, value);
}

/* Splits the text into lines as systemd reads unit files: "\n", "\r\n" and
 * "\r" end a line; a line whose first non-blank is '#' or ';' is a comment,
 * even in the middle of a continuation; an unescaped trailing backslash
 * joins the next line, standing for a space. */
static int parse_lines(Parser *p, const char *text) {
        _cleanup_free_ char *buf = NULL;
        unsigned line = 0, first_line = 0;
        bool continued = false;
        size_t len = 0;
        int r;

        buf = malloc(strlen(text) + 1);
        if (!buf)
                return -ENOMEM;

        if (strncmp(text, "\xef\xbb\xbf", 3) == 0)
                text += 3;

        for (const char *l = text; *l != '\0';) {
                const char *eol = l + strcspn(l, "\r\n"), *next;
                const char *first;
                bool escaped = false;

                if (eol[0] == '\r' && eol[1] == '\n')
                        next = eol + 2;
                else
                        next = *eol ? eol + 1 : eol;
                line++;

                if (!utf8_is_valid(l, (size_t) (eol - l)))
                        return fail(p, line, "not valid UTF-8");

                first = l + strspn(l, BLANKS);
                if (first < eol && (*first == '#' || *first == ';')) {
                        l = next;
                        continue;
                }

                if (!continued) {
                        first_line = line;
                        len = 0;
                }
                memcpy(buf + len, l, (size_t) (eol - l));
                len += (size_t) (eol - l);
                for (const char *c = l; c < eol; c++)
                        escaped = escaped ? false : *c == '\\';
                l = next;

                if (escaped) {
                        buf[len - 1] = ' ';
                        continued = true;
                        continue;
                }
                continued = false;
                buf[len] = '\0';
                r = parse_line(p, first_line, buf);
                if (r < 0)
                        return r;
        }

        /* A backslash on the last line continues into nothing. */
        if (continued) {
                buf[len] = '\0';
                r = parse_line(p, first_line, buf);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The line to blame for a conflict between two keys: the later one given. */
static unsigned later(const Parser *p, SpecKey a, SpecKey b) {
        return MAX(p->key_line[a], p->key_line[b]);
}

static int check_consistency(Parser *p) {
        ServiceSpec *s = p->spec;
        const unsigned *at = p->key_line;
        SpecKey count_key, worst = _KEY_MAX;
        const char *count_name, *dflt;

        if (p->service_line == 0)
                return fail(p, 0, "no [Service] section");

        if (at[KEY_KIND] == 0)
                s->kind = s->is_template ? SERVICE_STATELESS : SERVICE_SINGLETON;
        if (s->kind != SERVICE_SINGLETON && !s->is_template)
                return fail(p, at[KEY_KIND],
                            "[" XBATON "] Kind: Kind=%s needs a template unit (%s@.service)",
                            service_kind_to_string(s->kind), s->name);

        /* Of the keys this kind does not take, report the first in the file. */
        for (SpecKey k = 0; k < _KEY_MAX; k++)
                if (at[k] > 0 && !(key_table[k].kinds & (1u << s->kind)) &&
                    (worst == _KEY_MAX || at[k] < at[worst]))
                        worst = k;
        if (worst != _KEY_MAX)
                return fail(p, at[worst], "[" XBATON "] %s: %s (this is Kind=%s)",
                            key_table[worst].name, key_table[worst].kinds_text,
                            service_kind_to_string(s->kind));

        switch (s->kind) {
        case SERVICE_SINGLETON:
                s->count = 1;
                return 0;
        case SERVICE_STATELESS:
                count_key = KEY_REPLICAS;
                break;
        case SERVICE_SHARDED:
                count_key = KEY_INSTANCES;
                if (at[KEY_SHARDS] == 0)
                        return fail(p, at[KEY_KIND],
                                    "[" XBATON "] Shards: required for Kind=sharded");
                /* A live shard change is announced with a reload: the
                 * unit must say what a reload does. */
                if (s->shard_reload && p->exec_reload_line == 0)
                        return fail(p, at[KEY_SHARD_CHANGE],
                                    "[" XBATON "] ShardChange=reload needs ExecReload= in "
                                    "[Service] (for example ExecReload=kill -HUP $MAINPID)");
                if (at[KEY_MIN_REPLICAS] == 0)
                        s->min_replicas = 1;
                else if (s->min_replicas == 0)
                        return fail(p, at[KEY_MIN_REPLICAS],
                                    "[" XBATON "] MinReplicas: must be at least 1 for "
                                    "Kind=sharded (every shard needs an owner)");
                break;
        default:
                assert(false);
                return -EINVAL;
        }

        count_name = key_table[count_key].name;
        dflt = at[count_key] > 0 ? "" : " (the default)";
        if (at[count_key] == 0)
                s->count = 1;

        if (s->kind == SERVICE_SHARDED && s->count > s->shards)
                return fail(p, later(p, count_key, KEY_SHARDS),
                            "[" XBATON "] %s=%" PRIu32 "%s is above Shards=%" PRIu32, count_name,
                            s->count, dflt, s->shards);
        if (s->min_replicas > s->max_replicas)
                return fail(p, later(p, KEY_MIN_REPLICAS, KEY_MAX_REPLICAS),
                            "[" XBATON "] MinReplicas=%" PRIu32 " is above MaxReplicas=%" PRIu32,
                            s->min_replicas, s->max_replicas);
        if (s->count < s->min_replicas)
                return fail(p, later(p, count_key, KEY_MIN_REPLICAS),
                            "[" XBATON "] %s=%" PRIu32 "%s is below MinReplicas=%" PRIu32,
                            count_name, s->count, dflt, s->min_replicas);
        if (s->count > s->max_replicas)
                return fail(p, later(p, count_key, KEY_MAX_REPLICAS),
                            "[" XBATON "] %s=%" PRIu32 "%s is above MaxReplicas=%" PRIu32,
                            count_name, s->count, dflt, s->max_replicas);
        return 0;
}

/* "name.service" or "name@.service": the service name and whether it is a
 * template. */
static int parse_file_name(Parser *p, const char *file_name) {
        _cleanup_free_ char *prefix = NULL, *instance = NULL, *suffix = NULL;
        char q[QUOTE_MAX + 4];
        int r;

        if (!unit_name_is_valid(file_name, UNIT_NAME_PLAIN | UNIT_NAME_TEMPLATE)) {
                /* The name is not safe to print as it is. */
                p->file = quote(q, file_name, false);
                r = fail(p, 0, "not a service unit name (NAME.service or NAME@.service)");
                p->file = file_name;
                return r;
        }
        r = unit_name_split(file_name, &prefix, &instance, &suffix);
        if (r < 0)
                return r == -EINVAL ? fail(p, 0, "not a service unit name") : r;
        if (!streq(suffix, "service"))
                return fail(p, 0, "not a service unit name (NAME.service or NAME@.service)");
        if (instance && strlen(file_name) + ORDINAL_DIGITS_MAX > UNIT_NAME_MAX)
                return fail(p, 0, "name too long: its instance names would exceed %d bytes",
                            UNIT_NAME_MAX);

        p->spec->name = TAKE_PTR(prefix);
        p->spec->is_template = instance != NULL;
        return 0;
}

int spec_parse(const char *file_name, const char *text, ServiceSpec **ret, char **ret_error) {
        _cleanup_(service_spec_freep) ServiceSpec *s = NULL;
        Parser p;
        int r;

        assert(file_name);
        assert(text);
        assert(ret);

        s = malloc(sizeof(ServiceSpec));
        if (!s)
                return -ENOMEM;
        *s = (ServiceSpec){
                .kind = _SERVICE_KIND_INVALID,
                .count = 1,
                .min_replicas = 0,
                .max_replicas = UINT32_MAX,
                .max_unavailable = 1,
                .max_surge = 1,
                .healthy_for = 10 * USEC_PER_SEC,
                .health_timeout = 15 * 60 * USEC_PER_SEC,
                .identify_concurrency = 1,
                .identify_interval = 5 * USEC_PER_SEC,
                .daily_start_budget = 1000,
        };
        p = (Parser){ .file = file_name, .spec = s, .ret_error = ret_error };

        r = parse_file_name(&p, file_name);
        if (r < 0)
                return r;
        if (strnlen(text, SPEC_TEXT_MAX + 1) > SPEC_TEXT_MAX)
                return fail(&p, 0, "larger than %u KiB", SPEC_TEXT_MAX / 1024);

        s->file_name = strdup(file_name);
        s->unit_text = strdup(text);
        if (!s->file_name || !s->unit_text)
                return -ENOMEM;

        r = parse_lines(&p, text);
        if (r < 0)
                return r;
        r = check_consistency(&p);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

ServiceSpec *service_spec_free(ServiceSpec *s) {
        if (!s)
                return NULL;
        free(s->name);
        free(s->file_name);
        free(s->unit_text);
        labels_free(s->require_labels, s->n_require_labels);
        free(s->spread);
        free(s);
        return NULL;
}

int service_spec_copy(const ServiceSpec *s, ServiceSpec **ret) {
        _cleanup_(service_spec_freep) ServiceSpec *c = NULL;

        assert(s);
        assert(ret);

        c = malloc(sizeof(ServiceSpec));
        if (!c)
                return -ENOMEM;
        *c = *s;
        /* Nothing shared: a half-built copy must free only what it owns. */
        c->name = c->file_name = c->unit_text = c->spread = NULL;
        c->require_labels = NULL;
        c->n_require_labels = 0;

        if ((s->name && !(c->name = strdup(s->name))) ||
            (s->file_name && !(c->file_name = strdup(s->file_name))) ||
            (s->unit_text && !(c->unit_text = strdup(s->unit_text))) ||
            (s->spread && !(c->spread = strdup(s->spread))))
                return -ENOMEM;

        if (s->n_require_labels > 0) {
                c->require_labels = calloc(s->n_require_labels, sizeof(SpecLabel));
                if (!c->require_labels)
                        return -ENOMEM;
                for (size_t i = 0; i < s->n_require_labels; i++) {
                        c->n_require_labels++;
                        c->require_labels[i].key = strdup(s->require_labels[i].key);
                        c->require_labels[i].value = strdup(s->require_labels[i].value);
                        if (!c->require_labels[i].key || !c->require_labels[i].value)
                                return -ENOMEM;
                }
        }

        *ret = TAKE_PTR(c);
        return 0;
}

int service_instance_unit(const ServiceSpec *s, uint32_t instance, char **ret) {
        char *u;

        assert(s);
        assert(s->name);
        assert(ret);

        if (s->is_template) {
                if (asprintf(&u, "%s@%" PRIu32 ".service", s->name, instance) < 0)
                        return -ENOMEM;
        } else if (asprintf(&u, "%s.service", s->name) < 0)
                return -ENOMEM;

        *ret = u;
        return 0;
}

int service_default_shards(uint32_t shards, uint32_t n, uint32_t i, char **ret) {
        uint64_t lo, hi;
        char *text;

        assert(ret);

        if (n == 0 || i >= n)
                return -EINVAL;

        /* 64-bit products: i * shards overflows 32 bits for large fleets. */
        lo = (uint64_t) i * shards / n;
        hi = ((uint64_t) i + 1) * shards / n;

        /* Range list syntax ("0-13", "5", "" when the share is empty), so
         * that it goes into BATON_SHARDS as it is. */
        if (lo == hi)
                text = strdup("");
        else if (hi - lo == 1)
                asprintf_or_null(&text, "%" PRIu64, lo);
        else
                asprintf_or_null(&text, "%" PRIu64 "-%" PRIu64, lo, hi - 1);
        if (!text)
                return -ENOMEM;

        *ret = text;
        return 0;
}

uint64_t spec_systemd_hash(const char *unit_text) {
        uint64_t h = FNV1A64_OFFSET;
        bool skip = false;

        for (const char *p = strempty(unit_text); *p;) {
                size_t n = strcspn(p, "\n");
                const char *q = p;

                /* A section header starts a line, after optional white space. */
                while (q < p + n && (*q == ' ' || *q == '\t'))
                        q++;
                if (*q == '[')
                        skip = strncmp(q, "[X-", 3) == 0;
                /* The line with its newline, if it has one. */
                if (!skip)
                        h = fnv1a64(h, p, n + (p[n] == '\n'));
                p += n + (p[n] == '\n');
        }
        return h;
}
