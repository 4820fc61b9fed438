/* SPDX-License-Identifier: MIT */
/* Renders the baton environment drop-in and the managed-file marker. Quoting
 * follows how systemd reads Environment=: unquote and C-unescape first, then
 * expand %-specifiers; nothing else. Pure. */
#include "dropin.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "rangelist.h"

typedef struct Buf {
        char *data;
        size_t len, allocated;
} Buf;

static void buf_done(Buf *b) {
        free(b->data);
        *b = (Buf){ 0 };
}

static int buf_put(Buf *b, const char *s, size_t n) {
        if (b->len + n + 1 > b->allocated) {
                size_t a = MAX(b->allocated * 2, b->len + n + 1);
                char *d = realloc(b->data, MAX(a, (size_t) 256));

                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->allocated = MAX(a, (size_t) 256);
        }
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

static int buf_puts(Buf *b, const char *s) {
        return buf_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
        uint32_t cp;
        size_t len;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                len = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                len = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                len = 4, cp = s[0] & 0x07;
        else
                return 0;
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

/* NULL if fine, else what is wrong with the value. */
static const char *value_problem(const char *v) {
        size_t n;

        if (!v)
                return "missing value";
        n = strnlen(v, DROPIN_ENV_VALUE_MAX + 1);
        if (n > DROPIN_ENV_VALUE_MAX)
                return "value too long";
        for (size_t i = 0; i < n;) {
                unsigned char c = (unsigned char) v[i];
                size_t l;

                if (c == '\n' || c == '\r')
                        return "value contains a line break";
                if ((c < 0x20 && c != '\t') || c == 0x7f)
                        return "value contains a control character";
                l = utf8_seq_len((const unsigned char *) v + i, n - i);
                if (l == 0)
                        return "value is not valid UTF-8";
                i += l;
        }
        return NULL;
}

static const char *name_problem(const char *name) {
        size_t n;

        if (isempty(name))
                return "empty name";
        n = strnlen(name, DROPIN_ENV_NAME_MAX + 1);
        if (n > DROPIN_ENV_NAME_MAX)
                return "name too long";
        if (!((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z') ||
              name[0] == '_'))
                return "invalid name";
        for (size_t i = 1; i < n; i++) {
                char c = name[i];

                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '_'))
                        return "invalid name";
        }
        if (strncmp(name, "BATON_", 6) == 0)
                return "the BATON_ prefix is reserved for the agent";
        return NULL;
}

/* A name as it may appear in an error message: printable ASCII, shortened. */
static void name_sanitize(const char *s, char out[static 40]) {
        size_t j = 0;

        for (s = strempty(s); *s && j < 32; s++)
                out[j++] = *s >= 0x20 && *s < 0x7f ? *s : '?';
        if (*s) {
                memcpy(out + j, "...", 3);
                j += 3;
        }
        out[j] = '\0';
}

_printf_(2, 3) static int fail(char **ret_error, const char *fmt, ...) {
        va_list ap;

        if (ret_error) {
                char *m;
                int r;

                va_start(ap, fmt);
                r = vasprintf(&m, fmt, ap);
                va_end(ap);
                if (r < 0)
                        return -ENOMEM;
                *ret_error = m;
        }
        return -EINVAL;
}

/* Parses and checks the shard list; returns its canonical text in *ret_text
 * if that is non-NULL. */
static int check_shards(const DropinInput *in, char **ret_text, char **ret_error) {
        RangeList l;
        int r;

        rangelist_init(&l);
        r = rangelist_parse(&l, strempty(in->shards));
        if (r < 0) {
                char text[40];

                rangelist_done(&l);
                name_sanitize(in->shards, text);
                return fail(ret_error, "invalid shard list \"%s\"", text);
        }
        if (in->shard_count == 0) {
                rangelist_done(&l);
                return fail(ret_error, "shard count is 0");
        }
        if (l.n_ranges > 0 && l.ranges[l.n_ranges - 1].hi >= in->shard_count) {
                uint32_t hi = l.ranges[l.n_ranges - 1].hi;

                rangelist_done(&l);
                return fail(ret_error, "shard %" PRIu32 " is not below the shard count %" PRIu32,
                            hi, in->shard_count);
        }
        if (ret_text) {
                *ret_text = rangelist_format(&l);
                if (!*ret_text) {
                        rangelist_done(&l);
                        return -ENOMEM;
                }
        }
        rangelist_done(&l);
        return 0;
}

int dropin_validate(const DropinInput *in, char **ret_error) {
        const char *p;

        assert(in);

        if (isempty(in->service))
                return fail(ret_error, "missing service name");
        p = value_problem(in->service);
        if (p)
                return fail(ret_error, "service name: %s", p);
        if (isempty(in->host))
                return fail(ret_error, "missing host name");
        p = value_problem(in->host);
        if (p)
                return fail(ret_error, "host name: %s", p);

        if (in->n_env > 0 && !in->env)
                return fail(ret_error, "environment missing");
        if (in->n_env > DROPIN_ENV_MAX)
                return fail(ret_error, "too many environment variables (%zu, at most %d)",
                            in->n_env, DROPIN_ENV_MAX);
        for (size_t i = 0; i < in->n_env; i++) {
                const DropinEnv *e = &in->env[i];

                p = name_problem(e->name);
                if (p) {
                        char name[40];

                        name_sanitize(e->name, name);
                        return fail(ret_error, "environment variable %zu (\"%s\"): %s", i + 1, name,
                                    p);
                }
                p = value_problem(e->value);
                if (p)
                        return fail(ret_error, "environment variable %s: %s", e->name, p);
                for (size_t j = 0; j < i; j++)
                        if (streq(in->env[j].name, e->name))
                                return fail(ret_error, "environment variable %s: set twice",
                                            e->name);
        }

        if (!isempty(in->shards_file)) {
                if (!in->has_shards)
                        return fail(ret_error, "shards file given without a shard assignment");
                p = value_problem(in->shards_file);
                if (p)
                        return fail(ret_error, "shards file: %s", p);
                if (in->shards_file[0] != '/')
                        return fail(ret_error, "shards file: not an absolute path");
        }
        if (in->has_shards)
                return check_shards(in, NULL, ret_error);
        return 0;
}

/* Environment="NAME=value" with systemd's quoting. */
static int put_assignment(Buf *b, const char *name, const char *value) {
        int r;

        r = buf_puts(b, "Environment=\"");
        if (r < 0)
                return r;
        r = buf_puts(b, name);
        if (r < 0)
                return r;
        r = buf_puts(b, "=");
        if (r < 0)
                return r;
        for (const char *p = value; *p; p++) {
                switch (*p) {
                case '\\':
                        r = buf_puts(b, "\\\\");
                        break;
                case '"':
                        r = buf_puts(b, "\\\"");
                        break;
                case '%':
                        r = buf_puts(b, "%%");
                        break;
                default:
                        r = buf_put(b, p, 1);
                }
                if (r < 0)
                        return r;
        }
        return buf_puts(b, "\"\n");
}

int dropin_render(const DropinInput *in, char **ret) {
        _cleanup_(buf_done) Buf b = { 0 };
        _cleanup_free_ char *shards = NULL;
        char num[24];
        int r;

        assert(in);
        assert(ret);

        r = dropin_validate(in, NULL);
        if (r < 0)
                return r;
        if (in->has_shards) {
                r = check_shards(in, &shards, NULL);
                if (r < 0)
                        return r;
        }

        r = buf_puts(&b, BATON_MANAGED_MARKER "\n[Service]\n");
        if (r < 0)
                return r;
        r = put_assignment(&b, "BATON_SERVICE", in->service);
        if (r < 0)
                return r;
        if (in->has_instance) {
                snprintf(num, sizeof(num), "%" PRIu32, in->instance);
                r = put_assignment(&b, "BATON_INSTANCE", num);
                if (r < 0)
                        return r;
        }
        r = put_assignment(&b, "BATON_HOST", in->host);
        if (r < 0)
                return r;
        if (in->has_shards) {
                if (isempty(in->shards_file))
                        r = put_assignment(&b, "BATON_SHARDS", shards);
                else
                        r = put_assignment(&b, "BATON_SHARDS_FILE", in->shards_file);
                if (r < 0)
                        return r;
                snprintf(num, sizeof(num), "%" PRIu32, in->shard_count);
                r = put_assignment(&b, "BATON_SHARD_COUNT", num);
                if (r < 0)
                        return r;
                snprintf(num, sizeof(num), "%" PRIu64, in->shard_epoch);
                r = put_assignment(&b, "BATON_SHARD_EPOCH", num);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < in->n_env; i++) {
                r = put_assignment(&b, in->env[i].name, in->env[i].value);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(b.data);
        return 0;
}

int dropin_shards_text(const DropinInput *in, char **ret) {
        _cleanup_free_ char *shards = NULL;
        char *text;
        int r;

        assert(in);
        assert(ret);

        if (!in->has_shards)
                return -EINVAL;
        r = dropin_validate(in, NULL);
        if (r < 0)
                return r;
        r = check_shards(in, &shards, NULL);
        if (r < 0)
                return r;
        if (asprintf(&text, "%s\n", shards) < 0)
                return -ENOMEM;

        *ret = text;
        return 0;
}

int dropin_shards_parse(const char *text, char **ret) {
        _cleanup_(rangelist_done) RangeList l = { 0 };
        char *shards;
        int r;

        assert(ret);

        if (!text)
                return -EINVAL;
        r = rangelist_parse_line(&l, text);
        if (r < 0)
                return r == -ENOMEM ? r : -EINVAL;
        shards = rangelist_format(&l);
        if (!shards)
                return -ENOMEM;

        *ret = shards;
        return 0;
}

static bool starts_with_marker(const char *text) {
        size_t n = strlen(BATON_MANAGED_MARKER);

        if (!text || strncmp(text, BATON_MANAGED_MARKER, n) != 0)
                return false;
        /* The whole first line, not a longer line that begins the same way. */
        return text[n] == '\0' || text[n] == '\n' || (text[n] == '\r' && text[n + 1] == '\n');
}

bool dropin_text_is_managed(const char *text) {
        return starts_with_marker(text);
}

bool managed_file_is_managed(const char *text) {
        return starts_with_marker(text);
}

int managed_file_render(const char *unit_text, char **ret) {
        char *s;

        assert(ret);

        if (!unit_text)
                return -EINVAL;
        if (starts_with_marker(unit_text))
                s = strdup(unit_text);
        else if (asprintf(&s, "%s\n%s", BATON_MANAGED_MARKER, unit_text) < 0)
                s = NULL;
        if (!s)
                return -ENOMEM;

        *ret = s;
        return 0;
}

/* ---- reading a drop-in back ---------------------------------------------- */

/* Undoes the quoting of one Environment="…" assignment: '\' escapes the next
 * character, "%%" is '%'. Returns the malloc'ed "NAME=value" or NULL. */
static char *unquote_assignment(const char *p, const char *end) {
        char *out = malloc((size_t) (end - p) + 1), *o = out;

        if (!out)
                return NULL;
        while (p < end) {
                if (*p == '\\' && p + 1 < end)
                        p++;
                else if (*p == '%' && p + 1 < end && p[1] == '%')
                        p++;
                *o++ = *p++;
        }
        *o = 0;
        return out;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s[0] || s[0] == '-' || s[0] == '+' || (s[0] == '0' && s[1]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int dup_value(char **dst, const char *v) {
        char *c = strdup(v);

        if (!c)
                return -ENOMEM;
        free(*dst);
        *dst = c;
        return 0;
}

int dropin_parse(const char *text, DropinInfo *ret) {
        DropinInfo info = { 0 };
        const char *line = text;
        int r = 0;

        assert(ret);

        if (!text || !dropin_text_is_managed(text))
                return -EINVAL;

        while (line && *line && r >= 0) {
                const char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line);
                static const char prefix[] = "Environment=\"";
                _cleanup_free_ char *kv = NULL;
                uint64_t v;
                char *eq;

                if ((size_t) (end - line) > sizeof(prefix) && end[-1] == '"' &&
                    strncmp(line, prefix, sizeof(prefix) - 1) == 0) {
                        kv = unquote_assignment(line + sizeof(prefix) - 1, end - 1);
                        if (!kv) {
                                r = -ENOMEM;
                                break;
                        }
                        eq = strchr(kv, '=');
                        if (eq) {
                                *eq++ = 0;
                                if (streq(kv, "BATON_SERVICE"))
                                        r = dup_value(&info.service, eq);
                                else if (streq(kv, "BATON_HOST"))
                                        r = dup_value(&info.host, eq);
                                else if (streq(kv, "BATON_INSTANCE")) {
                                        r = parse_u64(eq, UINT32_MAX, &v);
                                        info.instance = (uint32_t) v;
                                        info.has_instance = r >= 0;
                                } else if (streq(kv, "BATON_SHARDS")) {
                                        RangeList l;
                                        rangelist_init(&l);
                                        r = rangelist_parse(&l, eq);
                                        rangelist_done(&l);
                                        if (r >= 0)
                                                r = dup_value(&info.shards, eq);
                                        info.has_shards = r >= 0;
                                } else if (streq(kv, "BATON_SHARDS_FILE")) {
                                        r = eq[0] == '/' ? dup_value(&info.shards_file, eq)
                                                         : -EINVAL;
                                        info.has_shards = r >= 0;
                                } else if (streq(kv, "BATON_SHARD_COUNT")) {
                                        r = parse_u64(eq, UINT32_MAX, &v);
                                        info.shard_count = (uint32_t) v;
                                } else if (streq(kv, "BATON_SHARD_EPOCH"))
                                        r = parse_u64(eq, UINT64_MAX, &info.shard_epoch);
                        }
                }
                line = nl ? nl + 1 : NULL;
        }
        if (r >= 0 && (!info.service || (info.has_shards && info.shard_count == 0) ||
                       (info.shards && info.shards_file)))
                r = -EINVAL;
        if (r < 0) {
                dropin_info_done(&info);
                return r;
        }
        *ret = info;
        return 0;
}

void dropin_info_done(DropinInfo *i) {
        free(i->service);
        free(i->host);
        free(i->shards);
        free(i->shards_file);
        *i = (DropinInfo){ 0 };
}
