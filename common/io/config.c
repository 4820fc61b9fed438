/* SPDX-License-Identifier: MIT */
/* Strict INI configuration from a declarative option table: defaults, the
 * file (through inih), command-line overrides, required keys and a dump of
 * the effective values. Every error names the file, the line and the key. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "duration.h"
#include "error-set.h"

/* Longest value quoted back in an error message. */
#define VALUE_QUOTE_MAX 64
/* Bytes read at most from a file (or string). */
#define CONFIG_FILE_MAX (1024 * 1024)

typedef union Value {
        char *s;
        bool b;
        uint64_t u;
} Value;

typedef struct Parser {
        const ConfigOption *table;
        size_t n;
        void *target;
        const char *name; /* file name for messages */

        /* Input: a FILE, or a string; text_pos counts the bytes read either way. */
        FILE *f;
        const char *text;
        size_t text_len, text_pos;

        unsigned lineno;  /* line inih is looking at: our reader counts them */
        unsigned *set_on; /* per option: line that set it, 0 = not set by the file */
        bool *assigned;   /* per option: holds a non-empty value from default or file */

        /* The first error wins; inih keeps going after one. */
        char *error;
        unsigned error_line;
        int read_errno;
} Parser;

static void *field_of(const ConfigOption *o, const void *target) {
        return (char *) target + o->offset;
}

/* A value is quoted back to the user, but never a secret one. */
static const char *value_shown(const ConfigOption *o, const char *value) {
        return (o->flags & CONFIG_SECRET) ? "(secret)" : value;
}

static bool parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return true;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return true;
                }
        }
        return false;
}

static int parse_uint(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (*s == '\0')
                return -EINVAL;
        for (; *s; s++) {
                unsigned d;

                if (*s < '0' || *s > '9')
                        return -EINVAL;
                d = (unsigned) (*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

static void value_format(const ConfigOption *o, uint64_t v, char *buf, size_t len) {
        if (o->type == CONFIG_DURATION)
                duration_format(buf, len, v);
        else if (o->type == CONFIG_SIZE)
                size_format(buf, len, v);
        else
                snprintf(buf, len, "%" PRIu64, v);
}

static int check_bounds(const ConfigOption *o, uint64_t v, char **ret_error) {
        char lo[DURATION_MAX_LEN], hi[DURATION_MAX_LEN];

        if (v >= o->min && (o->max == 0 || v <= o->max))
                return 0;

        value_format(o, o->min, lo, sizeof(lo));
        value_format(o, o->max, hi, sizeof(hi));
        if (o->max == 0)
                return error_set(ret_error, -ERANGE,
                                 "[%s] %s: value out of bounds, must be at least %s", o->section,
                                 o->name, lo);
        return error_set(ret_error, -ERANGE,
                         "[%s] %s: value out of bounds, must be between %s and %s", o->section,
                         o->name, lo, hi);
}

int config_parse_value(const ConfigOption *o, const char *value, void *field, char **ret_error) {
        static const char *const type_names[_CONFIG_TYPE_MAX] = {
                [CONFIG_STRING] = "string",
                [CONFIG_BOOL] = "boolean",
                [CONFIG_UINT] = "unsigned integer",
                [CONFIG_DURATION] = "duration",
                [CONFIG_SIZE] = "size",
        };
        Value v = { 0 };
        int r = 0;

        assert(o);
        assert(field);

        if ((unsigned) o->type >= _CONFIG_TYPE_MAX)
                return error_set(ret_error, -EINVAL, "[%s] %s: unknown option type %d", o->section,
                                 o->name, (int) o->type);

        /* Empty is the zero value; the caller decides what empty means. */
        if (!isempty(value)) {
                switch (o->type) {
                case CONFIG_STRING:
                        v.s = strdup(value);
                        if (!v.s)
                                return -ENOMEM;
                        break;
                case CONFIG_BOOL:
                        r = parse_bool(value, &v.b) ? 0 : -EINVAL;
                        break;
                case CONFIG_UINT:
                        r = parse_uint(value, &v.u);
                        break;
                case CONFIG_DURATION:
                        r = duration_parse(value, &v.u);
                        break;
                case CONFIG_SIZE:
                        r = size_parse(value, &v.u);
                        break;
                default:
                        assert(false);
                }
                if (r == -ERANGE)
                        return error_set(ret_error, -EINVAL, "[%s] %s: value '%.*s' is too large",
                                         o->section, o->name, VALUE_QUOTE_MAX,
                                         value_shown(o, value));
                if (r < 0)
                        return error_set(ret_error, -EINVAL, "[%s] %s: invalid %s '%.*s'",
                                         o->section, o->name, type_names[o->type], VALUE_QUOTE_MAX,
                                         value_shown(o, value));

                if ((o->type == CONFIG_UINT || o->type == CONFIG_DURATION ||
                     o->type == CONFIG_SIZE) &&
                    check_bounds(o, v.u, ret_error) < 0)
                        return -EINVAL;

                if (o->validate) {
                        _cleanup_free_ char *reason = NULL;

                        r = o->validate(&v, &reason);
                        if (r < 0) {
                                free(v.s);
                                return error_set(ret_error, r == -ENOMEM ? r : -EINVAL,
                                                 "[%s] %s: %s", o->section, o->name,
                                                 reason ? reason : "invalid value");
                        }
                }
        }

        switch (o->type) {
        case CONFIG_STRING:
                free(*(char **) field);
                *(char **) field = v.s;
                break;
        case CONFIG_BOOL:
                *(bool *) field = v.b;
                break;
        default:
                *(uint64_t *) field = v.u;
                break;
        }
        return 0;
}

/* The value the file, an override or the default gives: empty means "back
 * to the default", as in systemd. */
static int option_assign(const ConfigOption *o, const char *value, void *target, bool *ret_assigned,
                         char **ret_error) {
        int r;

        if (isempty(value))
                value = o->default_value;
        r = config_parse_value(o, value, field_of(o, target), ret_error);
        if (r < 0)
                return r;
        *ret_assigned = !isempty(value);
        return 0;
}

static const ConfigOption *option_find(const ConfigOption *table, size_t n, const char *section,
                                       size_t section_len, const char *name,
                                       bool *ret_section_known) {
        bool known = false;

        for (size_t i = 0; i < n; i++) {
                if (strlen(table[i].section) != section_len ||
                    memcmp(table[i].section, section, section_len) != 0)
                        continue;
                known = true;
                if (streq(table[i].name, name)) {
                        *ret_section_known = true;
                        return &table[i];
                }
        }
        *ret_section_known = known;
        return NULL;
}

_printf_(2, 3) static void parser_error(Parser *p, const char *fmt, ...) {
        va_list ap;

        if (p->error)
                return;
        va_start(ap, fmt);
        if (vasprintf(&p->error, fmt, ap) < 0)
                p->error = NULL;
        va_end(ap);
        p->error_line = p->lineno;
        if (!p->error) /* out of memory: still stop at this line */
                p->read_errno = ENOMEM;
}

static int parser_getc(Parser *p) {
        /* A config is small; /dev/zero or a runaway file is not one. */
        if (p->text_pos >= CONFIG_FILE_MAX) {
                p->read_errno = EFBIG;
                return EOF;
        }
        if (p->f) {
                p->text_pos++;
                return getc(p->f);
        }
        if (p->text_pos >= p->text_len)
                return EOF;
        return (unsigned char) p->text[p->text_pos++];
}

/* inih's reader: hands over exactly one physical line per call, so that our
 * line count is inih's, and catches what inih would get silently wrong: a
 * line longer than its buffer (it would split it), a NUL byte (it would cut
 * the line), and indentation (it would join the line to the previous value). */
static char *parser_read_line(char *str, int num, void *userdata) {
        Parser *p = userdata;
        bool any = false, too_long = false, nul = false;
        size_t k = 0;
        int c;

        assert(num > 1);

        while ((c = parser_getc(p)) != EOF) {
                any = true;
                if (c == '\n')
                        break;
                if (c == '\0') {
                        nul = true;
                        c = ' ';
                }
                if (k + 1 < (size_t) num)
                        str[k++] = (char) c;
                else
                        too_long = true;
        }
        if (p->read_errno != 0)
                return NULL;
        if (p->f && ferror(p->f)) {
                p->read_errno = errno > 0 ? errno : EIO;
                return NULL;
        }
        if (!any)
                return NULL;

        str[k] = '\0';
        p->lineno++;

        if (nul)
                parser_error(p, "line contains a NUL byte");
        else if (too_long)
                parser_error(p, "line too long (at most %d characters)", num - 1);
        else if (str[0] == ' ' || str[0] == '\t') {
                const char *s = str + strspn(str, " \t\r");

                if (*s != '\0' && *s != ';' && *s != '#')
                        parser_error(p, "line starts with whitespace (indentation and "
                                        "continuation lines are not supported)");
        }
        return str;
}

static int parser_handle(void *userdata, const char *section, const char *name, const char *value) {
        _cleanup_free_ char *reason = NULL;
        Parser *p = userdata;
        const ConfigOption *o;
        const char *sec;
        size_t sec_len, i;
        bool section_known;
        int r;

        if (p->error) /* only the first error is reported */
                return 1;

        /* inih passes "[ agent ]" on as " agent ". */
        sec = section + strspn(section, " \t");
        sec_len = strlen(sec);
        while (sec_len > 0 && (sec[sec_len - 1] == ' ' || sec[sec_len - 1] == '\t'))
                sec_len--;

        if (sec_len == 0) {
                parser_error(p, "key '%s' outside of any section", name);
                return 0;
        }
        if (name[0] == '\0') {
                parser_error(p, "empty key in section [%.*s]", (int) sec_len, sec);
                return 0;
        }

        o = option_find(p->table, p->n, sec, sec_len, name, &section_known);
        if (!o) {
                if (section_known)
                        parser_error(p, "unknown key '%s' in section [%.*s]", name, (int) sec_len,
                                     sec);
                else
                        parser_error(p, "unknown section [%.*s] (key '%s')", (int) sec_len, sec,
                                     name);
                return 0;
        }

        i = (size_t) (o - p->table);
        if (p->set_on[i] > 0) {
                parser_error(p, "duplicate key '%s' in section [%s] (first set on line %u)", name,
                             o->section, p->set_on[i]);
                return 0;
        }

        r = option_assign(o, value, p->target, &p->assigned[i], &reason);
        if (r < 0) {
                parser_error(p, "%s", reason ? reason : strerror(-r));
                return 0;
        }
        p->set_on[i] = p->lineno;
        return 1;
}

static int check_required(const ConfigOption *table, size_t n, const void *target,
                          const bool *assigned, const char *path, char **ret_error) {
        for (size_t i = 0; i < n; i++) {
                const ConfigOption *o = &table[i];
                bool empty;

                if (!(o->flags & CONFIG_REQUIRED))
                        continue;
                if (o->type == CONFIG_STRING)
                        empty = isempty(*(char *const *) field_of(o, target));
                else
                        empty = !assigned[i];
                if (!empty)
                        continue;

                if (path)
                        return error_set(ret_error, -EINVAL, "%s: [%s] %s is required but not set",
                                         path, o->section, o->name);
                return error_set(ret_error, -EINVAL, "[%s] %s is required but not set", o->section,
                                 o->name);
        }
        return 0;
}

static int load(Parser *p, char **ret_error) {
        _cleanup_free_ unsigned *set_on = NULL;
        _cleanup_free_ bool *assigned = NULL;
        bool parse = p->f || p->text;
        int r;

        set_on = calloc(p->n + 1, sizeof(unsigned));
        assigned = calloc(p->n + 1, sizeof(bool));
        if (!set_on || !assigned)
                return -ENOMEM;
        p->set_on = set_on;
        p->assigned = assigned;

        /* Defaults go through the same parser as the file. */
        for (size_t i = 0; i < p->n; i++) {
                _cleanup_free_ char *reason = NULL;

                r = option_assign(&p->table[i], NULL, p->target, &assigned[i], &reason);
                if (r < 0)
                        return error_set(ret_error, r, "default of %s",
                                         reason ? reason : strerror(-r));
        }

        if (parse) {
                r = ini_parse_stream(parser_read_line, p, parser_handle, p);
                if (p->read_errno != 0)
                        r = error_set(ret_error, -p->read_errno, "%s: %s", p->name,
                                      strerror(p->read_errno));
                else if (r == -2)
                        r = -ENOMEM;
                else if (r > 0 && (!p->error || (unsigned) r < p->error_line))
                        r = error_set(ret_error, -EINVAL,
                                      "%s:%d: syntax error, expected '[section]' or 'key = value'",
                                      p->name, r);
                else if (p->error)
                        r = error_set(ret_error, -EINVAL, "%s:%u: %s", p->name, p->error_line,
                                      p->error);
                else if (r != 0)
                        r = error_set(ret_error, -EINVAL, "%s: parse error %d", p->name, r);
                free(p->error);
                p->error = NULL;
                if (r < 0)
                        return r;
        }

        return check_required(p->table, p->n, p->target, assigned, parse ? p->name : NULL,
                              ret_error);
}

int config_load(const ConfigOption *table, size_t n, void *target, const char *path,
                char **ret_error) {
        Parser p = {
                .table = table,
                .n = n,
                .target = target,
                .name = path,
        };
        int r;

        assert(table || n == 0);
        assert(target);

        if (path) {
                p.f = fopen(path, "re");
                if (!p.f) {
                        r = negative_errno();
                        return error_set(ret_error, r, "%s: %s", path, strerror(-r));
                }
        }

        r = load(&p, ret_error);
        if (p.f)
                fclose(p.f);
        return r;
}

int config_load_string(const ConfigOption *table, size_t n, void *target, const char *name,
                       const char *text, size_t len, char **ret_error) {
        Parser p = {
                .table = table,
                .n = n,
                .target = target,
                .name = name ? name : "<string>",
                .text = text ? text : "",
                .text_len = text ? len : 0,
        };

        assert(table || n == 0);
        assert(target);

        return load(&p, ret_error);
}

int config_set(const ConfigOption *table, size_t n, void *target, const char *assignment,
               char **ret_error) {
        _cleanup_free_ char *reason = NULL;
        const ConfigOption *o;
        const char *eq, *dot;
        bool section_known, assigned;
        _cleanup_free_ char *name = NULL;
        int r;

        assert(table || n == 0);
        assert(target);
        assert(assignment);

        eq = strchr(assignment, '=');
        dot = eq ? memchr(assignment, '.', (size_t) (eq - assignment)) : NULL;
        if (!eq || !dot || dot == assignment || dot + 1 == eq)
                return error_set(
                        ret_error, -EINVAL, "override '%.*s': expected 'section.key=value'",
                        (int) (eq ? eq - assignment : (ptrdiff_t) strlen(assignment)), assignment);

        name = strndup(dot + 1, (size_t) (eq - dot - 1));
        if (!name)
                return -ENOMEM;
        o = option_find(table, n, assignment, (size_t) (dot - assignment), name, &section_known);
        if (!o) {
                if (section_known)
                        return error_set(ret_error, -EINVAL,
                                         "override '%.*s': unknown key '%s' in section [%.*s]",
                                         (int) (eq - assignment), assignment, name,
                                         (int) (dot - assignment), assignment);
                return error_set(ret_error, -EINVAL, "override '%.*s': unknown section [%.*s]",
                                 (int) (eq - assignment), assignment, (int) (dot - assignment),
                                 assignment);
        }

        r = option_assign(o, eq + 1, target, &assigned, &reason);
        if (r < 0)
                return error_set(ret_error, r, "override '%.*s': %s", (int) (eq - assignment),
                                 assignment, reason ? reason : strerror(-r));
        return 0;
}

void config_done(const ConfigOption *table, size_t n, void *target) {
        assert(table || n == 0);

        if (!target)
                return;
        for (size_t i = 0; i < n; i++)
                if (table[i].type == CONFIG_STRING) {
                        char **s = field_of(&table[i], target);
                        *s = mfree(*s);
                }
}

static void dump_value(const ConfigOption *o, const void *target, FILE *f) {
        const void *field = field_of(o, target);
        char buf[DURATION_MAX_LEN];

        switch (o->type) {
        case CONFIG_STRING:
                if (o->flags & CONFIG_SECRET)
                        fputs(isempty(*(char *const *) field) ? "(unset)" : "(set)", f);
                else
                        fputs(strempty(*(char *const *) field), f);
                return;
        case CONFIG_BOOL:
                fputs(*(const bool *) field ? "yes" : "no", f);
                return;
        default:
                if (o->flags & CONFIG_SECRET) {
                        fputs(*(const uint64_t *) field != 0 ? "(set)" : "(unset)", f);
                        return;
                }
                value_format(o, *(const uint64_t *) field, buf, sizeof(buf));
                fputs(buf, f);
                return;
        }
}

/* inih reads ';' after whitespace as the start of a comment, so a string that
 * begins with one (loaded from "key =;…") goes right after the '=', where it
 * reads back as itself. */
static const char *dump_separator(const ConfigOption *o, const void *target) {
        if (o->type == CONFIG_STRING && !(o->flags & CONFIG_SECRET) &&
            strempty(*(char *const *) field_of(o, target))[0] == ';')
                return " =";
        return " = ";
}

int config_dump(const ConfigOption *table, size_t n, const void *target, FILE *f) {
        assert(table || n == 0);
        assert(target);
        assert(f);

        /* Sections in the order the table first names them. */
        for (size_t i = 0; i < n; i++) {
                bool seen = false;

                for (size_t j = 0; j < i && !seen; j++)
                        seen = streq(table[j].section, table[i].section);
                if (seen)
                        continue;

                fprintf(f, "%s[%s]\n", i > 0 ? "\n" : "", table[i].section);
                for (size_t j = i; j < n; j++) {
                        if (!streq(table[j].section, table[i].section))
                                continue;
                        fprintf(f, "%s%s", table[j].name, dump_separator(&table[j], target));
                        dump_value(&table[j], target, f);
                        fputc('\n', f);
                }
        }

        if (fflush(f) != 0 || ferror(f))
                return -EIO;
        return 0;
}
