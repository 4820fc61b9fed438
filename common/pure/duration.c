/* SPDX-License-Identifier: MIT */
/* Time spans and byte sizes as people write them in config files and on the
 * command line, in systemd's spelling. Parsing is strict (junk is -EINVAL,
 * overflow -ERANGE) and formatting round-trips through parsing. Pure. */
#include "duration.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct Unit {
        const char *name;
        uint64_t factor;
} Unit;

#define USEC_PER_MINUTE (60 * USEC_PER_SEC)
#define USEC_PER_HOUR (60 * USEC_PER_MINUTE)
#define USEC_PER_DAY (24 * USEC_PER_HOUR)
#define USEC_PER_WEEK (7 * USEC_PER_DAY)

static const Unit unit_second = { "s", USEC_PER_SEC };

static const Unit time_units[] = {
        { "us", 1 },
        { "usec", 1 },
        { "\xc2\xb5s", 1 }, /* U+00B5 MICRO SIGN */
        { "\xce\xbcs", 1 }, /* U+03BC GREEK SMALL LETTER MU, which systemd accepts too */
        { "ms", USEC_PER_MSEC },
        { "msec", USEC_PER_MSEC },
        { "s", USEC_PER_SEC },
        { "sec", USEC_PER_SEC },
        { "second", USEC_PER_SEC },
        { "seconds", USEC_PER_SEC },
        { "m", USEC_PER_MINUTE },
        { "min", USEC_PER_MINUTE },
        { "minute", USEC_PER_MINUTE },
        { "minutes", USEC_PER_MINUTE },
        { "h", USEC_PER_HOUR },
        { "hr", USEC_PER_HOUR },
        { "hour", USEC_PER_HOUR },
        { "hours", USEC_PER_HOUR },
        { "d", USEC_PER_DAY },
        { "day", USEC_PER_DAY },
        { "days", USEC_PER_DAY },
        { "w", USEC_PER_WEEK },
        { "week", USEC_PER_WEEK },
        { "weeks", USEC_PER_WEEK },
};

/* Largest first: the formatter takes as many of each as fit. */
static const Unit format_units[] = {
        { "w", USEC_PER_WEEK },
        { "d", USEC_PER_DAY },
        { "h", USEC_PER_HOUR },
        { "min", USEC_PER_MINUTE },
        { "s", USEC_PER_SEC },
        { "ms", USEC_PER_MSEC },
        { "us", 1 },
};

static const Unit size_units[] = {
        { "K", UINT64_C(1) << 10 },
        { "M", UINT64_C(1) << 20 },
        { "G", UINT64_C(1) << 30 },
        { "T", UINT64_C(1) << 40 },
};

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool is_unit_char(char c) {
        /* Letters, plus the bytes of the UTF-8 micro signs. */
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (unsigned char) c >= 0x80;
}

static const char *skip_space(const char *p) {
        while (is_space(*p))
                p++;
        return p;
}

/* Parses "123" or "1.5" (at least one digit; a '.' needs digits after it) and
 * multiplies by `factor`, which the caller learns only after the number: so
 * the integer part and the fraction digits are returned separately. */
typedef struct Number {
        uint64_t integer;
        const char *frac; /* first fraction digit, or NULL */
        size_t n_frac;
} Number;

static int number_parse(const char **p, Number *ret) {
        const char *s = *p;
        Number n = { 0 };
        bool any = false;

        while (is_digit(*s)) {
                unsigned d = (unsigned) (*s - '0');

                if (n.integer > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                n.integer = n.integer * 10 + d;
                any = true;
                s++;
        }
        if (*s == '.') {
                s++;
                if (!is_digit(*s))
                        return -EINVAL;
                n.frac = s;
                while (is_digit(*s))
                        s++;
                n.n_frac = (size_t) (s - n.frac);
                any = true;
        }
        if (!any)
                return -EINVAL;

        *p = s;
        *ret = n;
        return 0;
}

/* integer * factor + fraction * factor, the fraction truncated below 1. */
static int number_scale(const Number *n, uint64_t factor, uint64_t *ret) {
        uint64_t v, frac = 0, div = 1;

        if (factor != 0 && n->integer > UINT64_MAX / factor)
                return -ERANGE;
        v = n->integer * factor;

        /* Digit by digit; once 10^k exceeds the factor the remaining digits
         * cannot add a whole unit any more, so stop there. */
        for (size_t i = 0; i < n->n_frac && div <= factor; i++) {
                div *= 10;
                frac += (uint64_t) (n->frac[i] - '0') * factor / div;
        }
        if (v > UINT64_MAX - frac)
                return -ERANGE;

        *ret = v + frac;
        return 0;
}

static const Unit *unit_lookup(const Unit *table, size_t n, const char *word, size_t len) {
        for (size_t i = 0; i < n; i++)
                if (strlen(table[i].name) == len && memcmp(table[i].name, word, len) == 0)
                        return &table[i];
        return NULL;
}

int duration_parse(const char *s, usec_t *ret) {
        usec_t total = 0;
        const char *p;
        int r;

        assert(s);
        assert(ret);

        p = skip_space(s);
        if (*p == '\0')
                return -EINVAL;

        if (strncmp(p, "infinity", 8) == 0 && *skip_space(p + 8) == '\0') {
                *ret = USEC_INFINITY;
                return 0;
        }

        while (*p != '\0') {
                const Unit *u;
                const char *word, *num_end;
                Number n;
                uint64_t v;

                r = number_parse(&p, &n);
                if (r < 0)
                        return r;
                num_end = p;

                p = skip_space(p);
                word = p;
                while (is_unit_char(*p))
                        p++;

                if (p == word) /* a bare number counts seconds, as in systemd */
                        u = &unit_second;
                else {
                        u = unit_lookup(time_units, ELEMENTSOF(time_units), word,
                                        (size_t) (p - word));
                        if (!u)
                                return -EINVAL;
                }

                r = number_scale(&n, u->factor, &v);
                if (r < 0)
                        return r;
                if (total > UINT64_MAX - v)
                        return -ERANGE;
                total += v;

                /* "1h30min" needs no space, but "5.5.5" or "5s.5" is junk. */
                if (p == word ? p == num_end && *p != '\0'
                              : *p != '\0' && !is_space(*p) && !is_digit(*p))
                        return -EINVAL;
                p = skip_space(p);
        }

        /* UINT64_MAX means "infinity" and must be asked for by name. */
        if (total == USEC_INFINITY)
                return -ERANGE;

        *ret = total;
        return 0;
}

/* Appends to buf at *pos, never past len - 1, keeping the NUL. */
static void append(char *buf, size_t len, size_t *pos, uint64_t v, const char *suffix) {
        int k;

        if (*pos >= len - 1)
                return;
        k = snprintf(buf + *pos, len - *pos, "%s%" PRIu64 "%s", *pos > 0 ? " " : "", v, suffix);
        if (k < 0)
                return;
        *pos = MIN(*pos + (size_t) k, len - 1);
}

char *duration_format(char *buf, size_t len, usec_t u) {
        size_t pos = 0;

        assert(buf);

        if (len == 0)
                return buf;
        buf[0] = '\0';

        if (u == USEC_INFINITY) {
                snprintf(buf, len, "infinity");
                return buf;
        }
        if (u == 0) {
                snprintf(buf, len, "0");
                return buf;
        }

        for (size_t i = 0; i < ELEMENTSOF(format_units) && u > 0; i++) {
                uint64_t n = u / format_units[i].factor;

                if (n == 0)
                        continue;
                append(buf, len, &pos, n, format_units[i].name);
                u -= n * format_units[i].factor;
        }

        return buf;
}

int size_parse(const char *s, uint64_t *ret) {
        const Unit *u = NULL;
        const char *p, *word;
        Number n;
        uint64_t v;
        size_t len;
        int r;

        assert(s);
        assert(ret);

        p = skip_space(s);
        r = number_parse(&p, &n);
        if (r < 0)
                return r;

        p = skip_space(p);
        word = p;
        while (is_unit_char(*p))
                p++;
        len = (size_t) (p - word);
        if (*skip_space(p) != '\0')
                return -EINVAL;

        /* "16G", "16GB", "16GiB", "512B", "512". */
        if (len > 0 && word[0] != 'B') {
                u = unit_lookup(size_units, ELEMENTSOF(size_units), word, 1);
                if (!u)
                        return -EINVAL;
                word++;
                len--;
        }
        if (!(len == 0 || (len == 1 && word[0] == 'B') ||
              (u && len == 2 && word[0] == 'i' && word[1] == 'B')))
                return -EINVAL;

        /* A fraction of a byte is meaningless: "1.5" needs a suffix. */
        if (!u && n.n_frac > 0)
                return -EINVAL;

        r = number_scale(&n, u ? u->factor : 1, &v);
        if (r < 0)
                return r;

        *ret = v;
        return 0;
}

char *size_format(char *buf, size_t len, uint64_t bytes) {
        assert(buf);

        if (len == 0)
                return buf;

        /* The largest suffix that represents the value exactly. */
        for (size_t i = ELEMENTSOF(size_units); i > 0; i--) {
                uint64_t f = size_units[i - 1].factor;

                if (bytes >= f && bytes % f == 0) {
                        snprintf(buf, len, "%" PRIu64 "%s", bytes / f, size_units[i - 1].name);
                        return buf;
                }
        }

        snprintf(buf, len, "%" PRIu64, bytes);
        return buf;
}
