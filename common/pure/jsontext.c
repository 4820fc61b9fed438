/* SPDX-License-Identifier: MIT */
/* JSON text into one growing buffer, with sticky failure. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsontext.h"
#include "text.h"

void json_text_done(JsonText *t) {
        free(t->buf);
        *t = (JsonText){ 0 };
}

/* Room for `more` bytes and the NUL after them. */
static bool reserve(JsonText *t, size_t more) {
        size_t want;
        char *p;

        if (t->failed)
                return false;
        if (t->len + more < t->allocated)
                return true;
        want = t->allocated ? t->allocated : 4096;
        while (want <= t->len + more) {
                if (want > SIZE_MAX / 2) {
                        t->failed = true;
                        return false;
                }
                want *= 2;
        }
        p = realloc(t->buf, want);
        if (!p) {
                t->failed = true;
                return false;
        }
        t->buf = p;
        t->allocated = want;
        return true;
}

static void append(JsonText *t, const char *s, size_t n) {
        if (!reserve(t, n))
                return;
        memcpy(t->buf + t->len, s, n);
        t->len += n;
        t->buf[t->len] = '\0';
}

void json_text_raw(JsonText *t, const char *s) {
        append(t, s, strlen(s));
}

void json_text_string(JsonText *t, const char *s) {
        static const char hex[] = "0123456789abcdef";
        const char *run;

        if (!s) {
                append(t, "null", 4);
                return;
        }
        append(t, "\"", 1);
        /* Runs of characters that need nothing are copied at once. */
        run = s;
        while (*s) {
                unsigned char c = (unsigned char) *s;
                char esc[7];
                uint32_t cp;
                size_t n = 1;

                if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
                        s++;
                        continue;
                }
                if (c >= 0x80) {
                        n = text_utf8_len(s, &cp);
                        if (n > 0) {
                                s += n;
                                continue;
                        }
                }
                append(t, run, (size_t) (s - run));
                if (c == '"' || c == '\\') {
                        esc[0] = '\\';
                        esc[1] = (char) c;
                        append(t, esc, 2);
                } else if (c < 0x20) {
                        memcpy(esc, "\\u00", 4);
                        esc[4] = hex[c >> 4];
                        esc[5] = hex[c & 0xf];
                        append(t, esc, 6);
                } else
                        append(t, "\\ufffd", 6); /* not UTF-8: one byte at a time */
                s++;
                run = s;
        }
        append(t, run, (size_t) (s - run));
        append(t, "\"", 1);
}

void json_text_key(JsonText *t, bool *first, const char *key) {
        if (!*first)
                append(t, ",", 1);
        *first = false;
        json_text_string(t, key);
        append(t, ":", 1);
}

void json_text_int(JsonText *t, int64_t v) {
        char b[24];
        int n = snprintf(b, sizeof(b), "%" PRId64, v);

        append(t, b, (size_t) n);
}

void json_text_bool(JsonText *t, bool v) {
        if (v)
                append(t, "true", 4);
        else
                append(t, "false", 5);
}

char *json_text_steal(JsonText *t) {
        char *s;

        if (t->failed) {
                json_text_done(t);
                return NULL;
        }
        s = t->buf ? t->buf : strdup("");
        *t = (JsonText){ 0 };
        return s;
}
