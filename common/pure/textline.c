/* SPDX-License-Identifier: MIT */
/* Writing and strictly reading the one-line texts of the store: the growing
 * string, reason quoting and unquoting, numbers without leading zeros, and
 * the "column N: …" errors every such parser gives. Pure. */
#include "textline.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool textline_reserve(TextLine *t, size_t extra) {
        size_t want;
        char *p;

        if (t->oom)
                return false;
        if (t->len + extra < t->size)
                return true;
        want = MAX(MAX(t->size * 2, t->len + extra + 1), (size_t) 256);
        p = realloc(t->s, want);
        if (!p) {
                t->oom = true;
                return false;
        }
        t->s = p;
        t->size = want;
        return true;
}

void textline_printf(TextLine *t, const char *fmt, ...) {
        va_list ap;
        int k = 0;

        assert(t);

        /* Mostly it fits the first time; otherwise grow and print again. */
        for (int pass = 0; pass < 2; pass++) {
                if (!textline_reserve(t, pass == 0 ? 0 : (size_t) k))
                        return;
                va_start(ap, fmt);
                k = vsnprintf(t->s + t->len, t->size - t->len, fmt, ap);
                va_end(ap);
                if (k < 0) {
                        t->oom = true;
                        return;
                }
                if ((size_t) k < t->size - t->len) {
                        t->len += (size_t) k;
                        return;
                }
        }
}

void textline_put_quoted(TextLine *t, const char *s) {
        assert(s);

        textline_printf(t, "\"");
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                switch (*p) {
                case '"':
                case '\\':
                        textline_printf(t, "\\%c", *p);
                        break;
                case '\n':
                        textline_printf(t, "\\n");
                        break;
                case '\t':
                        textline_printf(t, "\\t");
                        break;
                case '\r':
                        textline_printf(t, "\\r");
                        break;
                default:
                        /* Printable ASCII only, so the line stays one line of
                         * plain text in any store, log or terminal. */
                        if (*p >= 0x20 && *p < 0x7f)
                                textline_printf(t, "%c", *p);
                        else
                                textline_printf(t, "\\x%02x", *p);
                }
        textline_printf(t, "\"");
}

void textline_put_reason(TextLine *t, const char *reason) {
        textline_printf(t, "reason=");
        if (reason)
                textline_put_quoted(t, reason);
        else
                textline_printf(t, "-");
}

int textline_finish(TextLine *t, char **ret) {
        assert(t);
        assert(ret);

        if (t->oom || !t->s) {
                t->s = mfree(t->s);
                return -ENOMEM;
        }
        *ret = TAKE_PTR(t->s);
        return 0;
}

int textline_fail(TextParser *ps, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int k;

        if (ps->error || ps->oom)
                return ps->oom ? -ENOMEM : -EINVAL;
        va_start(ap, fmt);
        k = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (k < 0 ||
            asprintf(&ps->error, "column %zu: %s", (size_t) (ps->p - ps->text) + 1, msg) < 0) {
                ps->error = NULL;
                ps->oom = true;
                return -ENOMEM;
        }
        return -EINVAL;
}

int textline_oom(TextParser *ps) {
        ps->oom = true;
        return -ENOMEM;
}

TextSnippet textline_snippet(const char *p, size_t len) {
        TextSnippet sn = { { 0 } };

        len = MIN(len, sizeof(sn.s) - 1);
        for (size_t i = 0; i < len; i++)
                sn.s[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
        return sn;
}

int textline_expect(TextParser *ps, const char *literal) {
        size_t n = strlen(literal);

        if (strncmp(ps->p, literal, n) != 0)
                return textline_fail(ps, "expected \"%s\"", literal);
        ps->p += n;
        return 0;
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

int textline_parse_uint(TextParser *ps, const char *what, uint64_t limit, uint64_t *ret) {
        const char *start = ps->p;
        uint64_t v = 0;

        if (!is_digit(*ps->p))
                return textline_fail(ps, "%s: expected a number", what);
        if (ps->p[0] == '0' && is_digit(ps->p[1]))
                return textline_fail(ps, "%s: leading zero", what);
        for (; is_digit(*ps->p); ps->p++) {
                uint64_t d = (uint64_t) (*ps->p - '0');

                if (d > limit || v > (limit - d) / 10) {
                        /* The column of the number, not of the digit too many. */
                        ps->p = start;
                        return textline_fail(ps, "%s: out of range (at most %" PRIu64 ")", what,
                                             limit);
                }
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int textline_parse_u32(TextParser *ps, const char *what, uint32_t *ret) {
        uint64_t v = 0;
        int k;

        k = textline_parse_uint(ps, what, UINT32_MAX, &v);
        if (k < 0)
                return k;
        *ret = (uint32_t) v;
        return 0;
}

int textline_parse_field(TextParser *ps, const char *key, uint64_t limit, uint64_t *ret,
                         const char **ret_value_pos) {
        char literal[32];
        int k;

        snprintf(literal, sizeof(literal), " %s=", key);
        k = textline_expect(ps, literal);
        if (k < 0)
                return k;
        if (ret_value_pos)
                *ret_value_pos = ps->p;
        return textline_parse_uint(ps, key, limit, ret);
}

int textline_parse_state(TextParser *ps, const char *what, int (*lookup)(const char *), int *ret) {
        char word[16];
        size_t n = 0;
        const char *start = ps->p;
        int v;

        while (ps->p[n] >= 'a' && ps->p[n] <= 'z' && n < sizeof(word) - 1) {
                word[n] = ps->p[n];
                n++;
        }
        word[n] = 0;
        v = n > 0 && !(ps->p[n] >= 'a' && ps->p[n] <= 'z') ? lookup(word) : -EINVAL;
        if (v < 0) {
                size_t len = strcspn(start, " :");

                return textline_fail(ps, "%s: unknown state \"%s\"", what,
                                     textline_snippet(start, len).s);
        }
        ps->p += n;
        *ret = v;
        return 0;
}

/* Lower case only: the parser accepts exactly what textline_put_quoted()
 * writes. */
static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

int textline_parse_reason(TextParser *ps, char **ret) {
        _cleanup_free_ char *s = NULL;
        size_t n = 0;
        int k;

        k = textline_expect(ps, "reason=");
        if (k < 0)
                return k;
        if (ps->p[0] == '-') {
                ps->p++;
                *ret = NULL;
                return 0;
        }
        if (ps->p[0] != '"')
                return textline_fail(ps, "reason: expected \"-\" or a quoted string");
        ps->p++;

        /* Unescaping only shrinks. */
        s = malloc(strlen(ps->p) + 1);
        if (!s)
                return textline_oom(ps);

        for (;;) {
                unsigned char c = (unsigned char) *ps->p;

                if (c == 0)
                        return textline_fail(ps, "reason: missing closing quote");
                if (c == '"')
                        break;
                if (c < 0x20 || c >= 0x7f)
                        return textline_fail(ps, "reason: unescaped byte 0x%02x", c);
                if (c != '\\') {
                        s[n++] = (char) c;
                        ps->p++;
                        continue;
                }

                switch (ps->p[1]) {
                case '\\':
                case '"':
                        s[n++] = ps->p[1];
                        ps->p += 2;
                        break;
                case 'n':
                        s[n++] = '\n';
                        ps->p += 2;
                        break;
                case 't':
                        s[n++] = '\t';
                        ps->p += 2;
                        break;
                case 'r':
                        s[n++] = '\r';
                        ps->p += 2;
                        break;
                case 'x': {
                        int hi = hex_value(ps->p[2]), lo = hi < 0 ? -1 : hex_value(ps->p[3]), b;

                        if (hi < 0 || lo < 0)
                                return textline_fail(ps,
                                                     "reason: \\x needs two lower-case hex digits");
                        b = hi * 16 + lo;
                        if (b == 0)
                                return textline_fail(ps, "reason: NUL byte");
                        /* One spelling per text: what has a shorter form must use it. */
                        if ((b >= 0x20 && b < 0x7f) || b == '\n' || b == '\t' || b == '\r')
                                return textline_fail(ps, "reason: needless escape \\x%02x",
                                                     (unsigned) b);
                        s[n++] = (char) b;
                        ps->p += 4;
                        break;
                }
                case 0:
                        return textline_fail(ps, "reason: backslash at end of text");
                default:
                        return textline_fail(ps, "reason: unknown escape \"\\%c\"",
                                             ps->p[1] >= 0x20 && ps->p[1] < 0x7f ? ps->p[1] : '?');
                }
        }
        ps->p++; /* closing quote */
        s[n] = 0;
        *ret = TAKE_PTR(s);
        return 0;
}

int textline_parse_finish(TextParser *ps, int k, char **ret_error) {
        _cleanup_free_ char *error = TAKE_PTR(ps->error);

        if (ps->oom)
                return -ENOMEM;
        if (k < 0 && ret_error)
                *ret_error = TAKE_PTR(error);
        return k < 0 ? k : 0;
}
