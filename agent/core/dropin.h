/* SPDX-License-Identifier: MIT */
/* The environment drop-in the agent writes for each unit (BATON_SERVICE,
 * BATON_INSTANCE, BATON_HOST, shard assignment, extra env; docs/DESIGN.md §8) and
 * the marker that says a file in the unit directory was written by baton.
 * Pure: text in, text out. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* First line of every file the agent writes. A file without it is not
 * baton's and is never overwritten or removed. */
#define BATON_MANAGED_MARKER "# Managed by baton-agent; do not edit."

/* Bounds on what goes into one drop-in, far above any real use, so a bad
 * Placement cannot make the agent write megabytes of environment. */
#define DROPIN_ENV_NAME_MAX 128
#define DROPIN_ENV_VALUE_MAX 16384
#define DROPIN_ENV_MAX 256
/* What the agent reads of a shards file: far above the text of any real set. */
#define DROPIN_SHARDS_FILE_MAX (1024 * 1024)

typedef struct DropinEnv {
        const char *name;
        const char *value;
} DropinEnv;

typedef struct DropinInput {
        const char *host;    /* BATON_HOST */
        const char *service; /* BATON_SERVICE */
        uint32_t instance;   /* BATON_INSTANCE, if has_instance */
        bool has_instance;
        const DropinEnv *env; /* extra variables, in this order */
        size_t n_env;
        const char *shards; /* range list text, e.g. "0-13,90-91"; "" is an empty set */
        uint32_t shard_count;
        uint64_t shard_epoch;
        bool has_shards; /* BATON_SHARDS, BATON_SHARD_COUNT, BATON_SHARD_EPOCH */
        /* ShardChange=reload: the absolute path of the unit's shards file,
         * rendered as BATON_SHARDS_FILE in place of BATON_SHARDS, so that a
         * new set changes the file and not the drop-in; NULL or "": none. */
        const char *shards_file;
} DropinInput;

/* Checks everything dropin_render() checks, and says what is wrong: host and
 * service non-empty; extra names match [A-Za-z_][A-Za-z0-9_]*, do not start
 * with BATON_ and appear once; values are valid UTF-8 without control
 * characters other than TAB; the shard list parses and every shard is below
 * shard_count, which is non-zero; a shards file comes with has_shards and is
 * an absolute path. -EINVAL with *ret_error (may be NULL) set
 * to a message such as "environment variable 2 (\"1FOO\"): invalid name";
 * -ENOMEM. */
int dropin_validate(const DropinInput *in, char **ret_error);

/* The drop-in text:
 *
 *     # Managed by baton-agent; do not edit.
 *     [Service]
 *     Environment="BATON_SERVICE=gateway"
 *     Environment="BATON_INSTANCE=3"         (only with has_instance)
 *     Environment="BATON_HOST=host-a"
 *     Environment="BATON_SHARDS=0-13,90-91"  (these three only with has_shards;
 *     Environment="BATON_SHARD_COUNT=96"      the list in canonical form)
 *     Environment="BATON_SHARD_EPOCH=2"
 *     Environment="EXTRA=…"                  (the extra env, in order)
 *
 * With a shards_file, in place of BATON_SHARDS:
 *
 *     Environment="BATON_SHARDS_FILE=/var/lib/baton-agent/shards/gateway@3.service"
 *
 * Each assignment is double-quoted with '\' and '"' escaped by a backslash and
 * '%' doubled, because systemd unquotes, C-unescapes and then expands
 * specifiers; '$' is left alone since Environment= does not expand variables.
 * -EINVAL on anything dropin_validate() refuses; -ENOMEM. */
int dropin_render(const DropinInput *in, char **ret);

/* What the shards file of a unit with has_shards holds: the list in
 * canonical form and a newline, "0-13,90-91\n" ("\n" for the empty set).
 * -EINVAL on anything dropin_validate() refuses or without has_shards;
 * -ENOMEM. */
int dropin_shards_text(const DropinInput *in, char **ret);

/* The list in a shards file's text, in canonical form ("0-13,90-91"): -EINVAL
 * unless it is a range list and one newline (rangelist_parse_line()). */
int dropin_shards_parse(const char *text, char **ret);

/* What a rendered drop-in says, read back: the agent's own record of how a
 * unit was started (shard assignment included), valid across agent restarts
 * without asking the controller. Strings are owned. */
typedef struct DropinInfo {
        char *service;
        char *host;
        uint32_t instance;
        bool has_instance;
        char *shards;      /* BATON_SHARDS; NULL with a shards file */
        char *shards_file; /* BATON_SHARDS_FILE: the set is in that file */
        uint32_t shard_count;
        uint64_t shard_epoch;
        bool has_shards; /* either of the two */
} DropinInfo;

/* Parses text produced by dropin_render() (other Environment= variables are
 * skipped). -EINVAL if it is not a baton drop-in, a BATON_ value is
 * malformed, or it has both BATON_SHARDS and BATON_SHARDS_FILE; -ENOMEM. */
int dropin_parse(const char *text, DropinInfo *ret);
void dropin_info_done(DropinInfo *i);

/* True if the text starts with the BATON_MANAGED_MARKER line. */
bool dropin_text_is_managed(const char *text);

/* A unit file as the agent writes it: the marker line, then the unit text
 * unchanged (not doubled if the text already starts with the marker). */
int managed_file_render(const char *unit_text, char **ret);

/* True if a file's text starts with the marker line: baton wrote it and may
 * rewrite or remove it. */
bool managed_file_is_managed(const char *text);
