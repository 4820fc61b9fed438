/* SPDX-License-Identifier: MIT */
/* What the agent persists in its state_dir: the highest controller epoch
 * seen (fencing), the placement it applied last, the units it installed and
 * the Restart ids it has executed. Pure: the text format and its rules; the
 * shell reads the file and writes it atomically. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "converge.h"

#define AGENT_STATE_VERSION 1
#define AGENT_STATE_RESTARTS_MAX 4096
#define AGENT_STATE_UNITS_MAX 65536
#define AGENT_STATE_RESTART_ID_MAX 64
/* A Restart id is kept this long past its not_after, to ride out clock skew
 * between controller and agent; after that the command is void anyway. */
#define AGENT_STATE_RESTART_GRACE_US (3600ULL * 1000000ULL)

typedef struct ManagedUnitRec {
        char *name;        /* "gateway@3.service" */
        char *file_name;   /* the unit file written for it: "gateway@.service" */
        char *config_hash; /* config_hash_is_valid(); when pending, the config being applied */
        bool has_dropin;   /* when pending: it may have one */
        /* Recorded before its files are written or it is started, cleared once
         * that is done: a crash in between leaves a unit the agent knows it
         * may have installed, in an unknown state (converge: "pending"). */
        bool pending;
} ManagedUnitRec;

typedef struct RestartRec {
        char *id; /* [A-Za-z0-9_-]{1,64} */
        uint64_t not_after_us;
} RestartRec;

typedef struct AgentState {
        uint64_t max_epoch_seen;
        uint64_t applied_epoch, applied_generation;
        ManagedUnitRec *units; /* sorted by name when built by agent_state_set_unit() */
        size_t n_units;
        RestartRec *restarts;
        size_t n_restarts;
} AgentState;

/* Text format, one record per line, single spaces, every line ending in
 * "\n" (the last one may lack it):
 *
 *     baton-agent-state 1
 *     epoch 7
 *     applied 7 42
 *     unit gateway@3.service gateway@.service 9f86d081884c7d65 1
 *     unit audio@1.service audio@.service 2c26b46b68ffc68f 1 pending
 *     restart r-1234 1700000000000000
 *
 * The header comes first; "epoch" and "applied" at most once each (0 when
 * absent); units and restarts in any order, each name/id at most once, a
 * unit's file being the one its name implies (converge_unit_file_name()).
 * Numbers are decimal without sign or leading zeros. Anything else, an
 * empty line included, is an error.
 *
 * Parses `text` into *ret (untouched on failure). -EINVAL with *ret_error
 * (may be NULL) set to "line N: …"; -ENOMEM. */
int agent_state_parse(const char *text, AgentState *ret, char **ret_error);

/* The text of `s`, records in their order, such that parsing it gives `s`
 * back. -EINVAL if `s` holds something the parser would refuse (so a state
 * that cannot be read back is never written); -ENOMEM. */
int agent_state_format(const AgentState *s, char **ret);

void agent_state_done(AgentState *s);

/* A deep copy, for changes that must be saved before they count. */
int agent_state_copy(const AgentState *s, AgentState *ret);

/* Adds or replaces the record of `name` (not pending), keeping units sorted
 * by name. -EINVAL for an invalid name, a file_name other than the implied
 * one, or an invalid hash; -E2BIG beyond AGENT_STATE_UNITS_MAX; -ENOMEM. */
int agent_state_set_unit(AgentState *s, const char *name, const char *file_name,
                         const char *config_hash, bool has_dropin);

/* Records the intent to install `name` with this config before acting on it:
 * adds or replaces its record as pending; has_dropin sticks once set, since
 * a drop-in written before may still be there. Errors as set_unit. */
int agent_state_mark_pending(AgentState *s, const char *name, const char *file_name,
                             const char *config_hash, bool has_dropin);

/* -ENOENT if there is no record of `name`. */
int agent_state_remove_unit(AgentState *s, const char *name);

/* The records as converge_plan() input, borrowing the strings of `s`:
 * valid until `s` changes. *ret is NULL when there are no units. */
int agent_state_managed_units(const AgentState *s, ManagedUnit **ret, size_t *ret_n);

/* A Restart id runs at most once: the shell asks before executing and
 * records after. */
bool agent_state_restart_seen(const AgentState *s, const char *id);

/* Records that `id` ran. First drops every entry whose not_after_us is more
 * than AGENT_STATE_RESTART_GRACE_US before now_us, then, if the list is full,
 * the entries with the oldest not_after_us (never the new one). A
 * not_after_us of 0 (no deadline) is stored as now_us. Returns 1 if added, 0
 * if the id was already there (its not_after_us is raised if later);
 * -EINVAL for an invalid id; -ENOMEM. */
int agent_state_restart_record(AgentState *s, const char *id, uint64_t not_after_us,
                               uint64_t now_us);

/* Takes back a record whose job could not be launched after all. -ENOENT. */
int agent_state_restart_forget(AgentState *s, const char *id);

/* [A-Za-z0-9_-]{1,64} */
bool agent_state_restart_id_is_valid(const char *id);
