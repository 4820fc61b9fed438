/* SPDX-License-Identifier: MIT */
/* Text that came over the network, made safe for a terminal or a log line.
 * Pure. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at p (1–4; p is NUL-terminated), or 0
 * if it is not one. Overlong forms, surrogates and code points above
 * U+10FFFF are invalid. */
size_t text_utf8_len(const char *p, uint32_t *ret_cp);

/* A malloc'ed copy of `s` (NULL reads as "") in which every character that
 * can move a terminal's cursor, change its state or reorder what is shown is
 * replaced by '?': C0 controls and DEL (a tab becomes a space), C1 controls
 * (U+0080–U+009F), the bidirectional formatting characters (U+061C,
 * U+200E–U+200F, U+202A–U+202E, U+2066–U+2069), and every byte that is not
 * part of valid UTF-8. Printable UTF-8 is kept. NULL on OOM. */
char *text_sanitize(const char *s);

/* The same, in place, for a buffer the caller owns (the result is never
 * longer than the input). Returns how many characters were replaced. */
size_t text_sanitize_inplace(char *s);
