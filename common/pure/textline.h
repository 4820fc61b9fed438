/* SPDX-License-Identifier: MIT */
/* The one-line texts the store keeps (rollouts, reshards, shard layouts, the
 * start budget's ledger): a growing string to write them, and the pieces of a
 * strict reader that accepts exactly one spelling and reports "column N: what
 * is wrong". Shared so that every such text quotes and refuses alike. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* ---- writing ------------------------------------------------------------- */

/* A growing string; the first failed allocation sticks and is reported once,
 * by textline_finish(). Start from TextLine t = { 0 }. */
typedef struct TextLine {
        char *s;
        size_t len, size;
        bool oom;
} TextLine;

_printf_(2, 3) void textline_printf(TextLine *t, const char *fmt, ...);
/* "…" with \\, \", \n, \t, \r and \xHH (lower case) for everything outside
 * printable ASCII. */
void textline_put_quoted(TextLine *t, const char *s);
/* "reason=-" for NULL, else "reason=" and the quoted text. */
void textline_put_reason(TextLine *t, const char *reason);
/* Hands the text over (*ret), or -ENOMEM (and frees it) if an append failed. */
int textline_finish(TextLine *t, char **ret);

/* ---- reading ------------------------------------------------------------- */

typedef struct TextParser {
        const char *text;
        const char *p; /* where the next token starts; errors name its column */
        char *error;   /* the first error */
        bool oom;
} TextParser;

/* Records the first error as "column N: …" (N: 1-based, of ps->p) and
 * returns -EINVAL (or -ENOMEM, setting ps->oom). */
_printf_(2, 3) int textline_fail(TextParser *ps, const char *fmt, ...);
/* For a caller's own allocation failure: sets ps->oom, returns -ENOMEM. */
int textline_oom(TextParser *ps);

/* Up to 32 bytes of the input for an error message, with anything that is
 * not printable ASCII shown as '?': junk must not reach a log as is. */
typedef struct TextSnippet {
        char s[33];
} TextSnippet;
TextSnippet textline_snippet(const char *p, size_t len);

/* The literal, or an error naming it. */
int textline_expect(TextParser *ps, const char *literal);
/* A decimal without sign, spaces or leading zeros, at most `limit`; `what`
 * names it in errors. */
int textline_parse_uint(TextParser *ps, const char *what, uint64_t limit, uint64_t *ret);
int textline_parse_u32(TextParser *ps, const char *what, uint32_t *ret);
/* " key=NUMBER"; *ret_value_pos (may be NULL) is where the number starts,
 * for errors found later. */
int textline_parse_field(TextParser *ps, const char *key, uint64_t limit, uint64_t *ret,
                         const char **ret_value_pos);
/* A word of [a-z] looked up in a state table (`lookup` returns < 0 for an
 * unknown word). */
int textline_parse_state(TextParser *ps, const char *what, int (*lookup)(const char *), int *ret);
/* "reason=-" (NULL) or "reason=" and a quoted string as textline_put_quoted()
 * writes it, and nothing else: escapes with a shorter spelling and NUL bytes
 * are refused. */
int textline_parse_reason(TextParser *ps, char **ret);

/* Ends a parse: -ENOMEM if ps->oom, else `k` (< 0: the error goes to
 * *ret_error if not NULL, and is freed otherwise); ps->error is consumed. */
int textline_parse_finish(TextParser *ps, int k, char **ret_error);
