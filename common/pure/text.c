/* SPDX-License-Identifier: MIT */
/* Terminal-safe text: one pass over UTF-8, each sequence kept or replaced by
 * one '?'. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

static size_t utf8_len(const unsigned char *p, uint32_t *ret_cp) {
        unsigned char c = p[0];
        unsigned char lo = 0x80, hi = 0xbf;
        uint32_t cp;
        size_t n;

        if (c < 0x80) {
                *ret_cp = c;
                return 1;
        }
        if (c >= 0xc2 && c <= 0xdf) {
                n = 2;
                cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                cp = c & 0x0f;
                if (c == 0xe0)
                        lo = 0xa0;
                else if (c == 0xed)
                        hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                cp = c & 0x07;
                if (c == 0xf0)
                        lo = 0x90;
                else if (c == 0xf4)
                        hi = 0x8f;
        } else
                return 0;
        if (p[1] < lo || p[1] > hi)
                return 0;
        cp = (cp << 6) | (p[1] & 0x3f);
        for (size_t i = 2; i < n; i++) {
                if (p[i] < 0x80 || p[i] > 0xbf)
                        return 0;
                cp = (cp << 6) | (p[i] & 0x3f);
        }
        *ret_cp = cp;
        return n;
}

size_t text_utf8_len(const char *p, uint32_t *ret_cp) {
        return utf8_len((const unsigned char *) p, ret_cp);
}

static bool unsafe(uint32_t cp) {
        return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c ||
               cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
               (cp >= 0x2066 && cp <= 0x2069);
}

size_t text_sanitize_inplace(char *s) {
        unsigned char *in = (unsigned char *) s, *out = (unsigned char *) s;
        size_t replaced = 0;

        while (*in) {
                uint32_t cp = 0;
                size_t n = utf8_len(in, &cp);

                if (n == 0) {
                        *out++ = '?';
                        in++;
                        replaced++;
                } else if (cp == '\t') {
                        *out++ = ' ';
                        in++;
                } else if (unsafe(cp)) {
                        *out++ = '?';
                        in += n;
                        replaced++;
                } else {
                        memmove(out, in, n);
                        out += n;
                        in += n;
                }
        }
        *out = '\0';
        return replaced;
}

char *text_sanitize(const char *s) {
        char *copy = strdup(s ? s : "");

        if (copy)
                (void) text_sanitize_inplace(copy);
        return copy;
}
