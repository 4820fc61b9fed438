/* SPDX-License-Identifier: MIT */
/* JSON written as text, straight into one growing buffer: for answers too
 * large to build as a tree first (a status of every instance of a large
 * fleet), and to build in steps. Pure.
 *
 * Errors are sticky: after an allocation fails every call does nothing and
 * json_text_steal() returns NULL, so a writer checks once, at the end. The
 * caller writes the structure ("{", ",", "]") with json_text_raw(); strings
 * go through json_text_string(), which always yields valid JSON. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct JsonText {
        char *buf; /* NUL-terminated while not failed */
        size_t len;
        size_t allocated;
        bool failed;
} JsonText;

void json_text_done(JsonText *t);

/* `s` as it is: structure, or JSON made elsewhere. */
void json_text_raw(JsonText *t, const char *s);
/* A JSON string: quoted, with '"', '\\' and control characters escaped and
 * every byte that is not part of valid UTF-8 written as U+FFFD. NULL: null. */
void json_text_string(JsonText *t, const char *s);
/* `"key":` preceded by a comma unless *first (which it then clears). */
void json_text_key(JsonText *t, bool *first, const char *key);
void json_text_int(JsonText *t, int64_t v);
void json_text_bool(JsonText *t, bool v);

/* The text (the caller frees it), or NULL if anything failed; `t` is empty
 * afterwards. */
char *json_text_steal(JsonText *t);
