/* SPDX-License-Identifier: MIT */
/* INI configuration through one declarative table per program: every option
 * is declared once with its section, name, type, default and bounds. Parsing
 * is strict: an unknown section or key, a duplicate key, a value out of
 * bounds, each is an error naming file, line and key. Uses inih. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"

typedef enum ConfigType {
        CONFIG_STRING,   /* char *, strdup'ed */
        CONFIG_BOOL,     /* bool: yes/no, true/false, on/off, 1/0 */
        CONFIG_UINT,     /* uint64_t, decimal */
        CONFIG_DURATION, /* usec_t, duration_parse() */
        CONFIG_SIZE,     /* uint64_t bytes, size_parse() */
        _CONFIG_TYPE_MAX,
} ConfigType;

enum {
        CONFIG_SECRET = 1 << 0,   /* never printed by config_dump() */
        CONFIG_REQUIRED = 1 << 1, /* an empty value after loading is an error */
};

typedef struct ConfigOption {
        const char *section;
        const char *name;
        ConfigType type;
        size_t offset;             /* of the field in the target struct */
        const char *default_value; /* parsed like a value from the file; NULL = empty/0 */
        uint64_t min, max; /* bounds for UINT (value), DURATION (µs), SIZE (bytes); max 0 = none */
        unsigned flags;
        /* Optional extra check run after parsing (e.g. a URL or a glob list):
         * returns 0, or -EINVAL with *ret_error set to a malloc'ed reason.
         * `field` points at the parsed value, laid out like the target field
         * (a `char *const *` for strings), before it is stored; it is not
         * called for an empty value. */
        int (*validate)(const void *field, char **ret_error);
        const char *help;
} ConfigOption;

/* Sets every default, then, if path is not NULL, parses the file. On error
 * returns -EINVAL (or -errno for I/O, e.g. -ENOENT) and sets *ret_error to a
 * malloc'ed message "PATH:LINE: …" (or "PATH: …"). `target` must be zeroed or
 * hold values of an earlier load (its strings are replaced and freed).
 * An empty value ("key =") puts the option back to its default, as in
 * systemd. Lines are at most 199 characters and must not be indented (inih
 * would take an indented line as the continuation of the previous value). */
int config_load(const ConfigOption *table, size_t n, void *target, const char *path,
                char **ret_error);

/* The same, from `len` bytes of text; `name` stands for the file name in
 * messages (NULL: "<string>"). For tests, fuzzing and embedded defaults. */
int config_load_string(const ConfigOption *table, size_t n, void *target, const char *name,
                       const char *text, size_t len, char **ret_error);

/* Sets one option from "section.name=value" text (command-line overrides).
 * Same errors, message names the override (never a secret value). Runs after
 * config_load(), so it cannot satisfy a CONFIG_REQUIRED check there. */
int config_set(const ConfigOption *table, size_t n, void *target, const char *assignment,
               char **ret_error);

/* Frees the strings the table owns in target. */
void config_done(const ConfigOption *table, size_t n, void *target);

/* Writes the effective configuration as INI (secrets as "(set)"/"(unset)"). */
int config_dump(const ConfigOption *table, size_t n, const void *target, FILE *f);

/* Parses one value of `type` (used for defaults, files and overrides), checks
 * bounds and o->validate, and only then stores it in `field` (freeing a
 * previous string). NULL or "" stores the zero value (NULL string, false, 0).
 * *ret_error (may be NULL) gets "[section] name: reason". */
int config_parse_value(const ConfigOption *o, const char *value, void *field, char **ret_error);
