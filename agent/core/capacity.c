/* SPDX-License-Identifier: MIT */
/* Parsers for the /proc and /sys texts the agent reports as capacity. Strict
 * about numbers (no silent zero on junk), lenient about unknown lines. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "macro.h"
#include "rangelist.h"

/* Value in kB of "Key:   1234 kB" at the start of a line, or -ENOENT. */
static int meminfo_field(const char *text, const char *key, uint64_t *ret) {
        size_t klen = strlen(key);

        for (const char *line = text; line && *line;) {
                const char *next = strchr(line, '\n');

                if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
                        const char *p = line + klen + 1;
                        char *end;
                        unsigned long long v;

                        while (*p == ' ' || *p == '\t')
                                p++;
                        if (!isdigit((unsigned char) *p))
                                return -EINVAL;
                        errno = 0;
                        v = strtoull(p, &end, 10);
                        if (errno != 0 || v > UINT64_MAX / 1024)
                                return -ERANGE;
                        while (*end == ' ')
                                end++;
                        if (strncmp(end, "kB", 2) != 0)
                                return -EINVAL;
                        *ret = (uint64_t) v * 1024;
                        return 0;
                }
                line = next ? next + 1 : NULL;
        }
        return -ENOENT;
}

int capacity_parse_meminfo(const char *text, uint64_t *ret_total, uint64_t *ret_available) {
        uint64_t total, avail, free_, buffers = 0, cached = 0;
        int r;

        assert(text);

        r = meminfo_field(text, "MemTotal", &total);
        if (r < 0)
                return r == -ENOENT ? -EINVAL : r;

        r = meminfo_field(text, "MemAvailable", &avail);
        if (r == -ENOENT) {
                r = meminfo_field(text, "MemFree", &free_);
                if (r < 0)
                        return r == -ENOENT ? -EINVAL : r;
                (void) meminfo_field(text, "Buffers", &buffers);
                (void) meminfo_field(text, "Cached", &cached);
                avail = free_ + buffers + cached;
        } else if (r < 0)
                return r;

        if (avail > total)
                avail = total;
        *ret_total = total;
        *ret_available = avail;
        return 0;
}

/* "12.34" → 1234; at most two decimals are kept. */
static int parse_load(const char **p, uint32_t *ret) {
        const char *s = *p;
        uint64_t whole = 0, frac = 0;
        int digits = 0;

        while (*s == ' ')
                s++;
        if (!isdigit((unsigned char) *s))
                return -EINVAL;
        for (; isdigit((unsigned char) *s); s++) {
                whole = whole * 10 + (uint64_t) (*s - '0');
                if (whole > 1000000)
                        return -ERANGE;
        }
        if (*s == '.') {
                s++;
                for (; isdigit((unsigned char) *s); s++)
                        if (digits < 2) {
                                frac = frac * 10 + (uint64_t) (*s - '0');
                                digits++;
                        }
        }
        if (*s != ' ' && *s != '\n' && *s != 0)
                return -EINVAL;
        while (digits++ < 2)
                frac *= 10;
        *ret = (uint32_t) (whole * 100 + frac);
        *p = s;
        return 0;
}

int capacity_parse_loadavg(const char *text, uint32_t *ret_load1, uint32_t *ret_load5,
                           uint32_t *ret_load15) {
        const char *p = text;
        uint32_t l[3];
        int r;

        assert(text);

        for (size_t i = 0; i < 3; i++) {
                r = parse_load(&p, &l[i]);
                if (r < 0)
                        return r;
        }
        *ret_load1 = l[0];
        *ret_load5 = l[1];
        *ret_load15 = l[2];
        return 0;
}

int capacity_parse_cpu_list(const char *text, uint32_t *ret) {
        _cleanup_(rangelist_done) RangeList l = { 0 };
        size_t len;
        char buf[1024];
        uint64_t n;
        int r;

        assert(text);

        /* /sys files end in a newline; rangelist_parse() wants none */
        len = strcspn(text, "\n");
        if (len == 0 || len >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, text, len);
        buf[len] = 0;

        r = rangelist_parse(&l, buf);
        if (r < 0)
                return r;
        n = rangelist_count(&l);
        if (n == 0 || n > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t) n;
        return 0;
}
