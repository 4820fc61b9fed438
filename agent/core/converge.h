/* SPDX-License-Identifier: MIT */
/* The agent's convergence planner: a level-triggered Placement (what must run
 * here), what this agent installed before and what systemd reports now go in;
 * an ordered list of actions comes out. Pure: the shell writes the files,
 * calls systemd and updates the agent state. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The drop-in the agent owns for a unit: "<unit>.d/" BATON_DROPIN_FILE. */
#define BATON_DROPIN_FILE "50-baton.conf"

/* config_hash() output and anything stored as a config hash: 1..128 of
 * [A-Za-z0-9._:+/=-], so it is one token in the state file and in logs. */
#define CONFIG_HASH_MAX 128
#define CONFIG_HASH_HEX_LEN 16

typedef struct DesiredUnit {
        /* one entry of the Placement, already converted by the shell */
        const char *name;          /* "gateway@3.service", "core.service" */
        const char *unit_text;     /* the unit file text (for an instance: the template's text) */
        const char *template_name; /* "gateway@.service" for instances, NULL or "" otherwise */
        const char *service;
        uint32_t instance;
        const char *dropin_text; /* rendered by dropin_render(); NULL or "": no drop-in */
        const char
                *config_hash; /* a change means restart; NULL or "": config_hash() of the texts */
        bool running;
        /* On a config change of a unit that is up: write the files, leave
         * the restart to a later Restart command (a rolling update). */
        bool defer_restart;
        /* ShardChange=reload: what the unit's shards file must hold
         * (dropin_shards_text(), "0-13,90-91\n"); NULL or "": it has none.
         * Not covered by the config hash: a new set is written to the file
         * and a running unit reloaded, not restarted (rule 8). */
        const char *shards_text;
} DesiredUnit;

/* From AgentState: what this agent installed. file_name is the unit file it
 * wrote (the template's file for an instance); NULL means the derived one. */
typedef struct ManagedUnit {
        const char *name;
        const char *file_name;
        const char *config_hash;
        bool has_dropin;
        /* Recorded before the agent acted on it and not confirmed since (a
         * crash, a failed job): its files and run state are unknown, so it
         * never counts as unchanged. */
        bool pending;
        /* Not from AgentState: what the unit's shards file holds now, as the
         * shell just read it. NULL: there is none; "": it exists but could
         * not be read (never equal to a desired text). */
        const char *shards_text;
} ManagedUnit;

/* Live from systemd. A unit systemd does not know is simply absent. */
typedef struct ObservedUnit {
        const char *name;
        const char *load_state;   /* "loaded", "not-found", … */
        const char *active_state; /* "active", "inactive", "failed", "activating", … */
        /* Set by the shell when the unit (or its template) exists somewhere
         * other than a file baton wrote in its unit directory: a vendor or
         * runtime unit directory, a generator, a mask, a transient unit. The
         * path (or what systemd said) is quoted in the refusal. */
        const char *origin;
} ObservedUnit;

/* The order of this enum is the order of actions in a plan. */
typedef enum ActionType {
        ACTION_REFUSE,
        ACTION_STOP,
        ACTION_DISABLE,
        ACTION_REMOVE_DROPIN,
        ACTION_REMOVE_FILE,
        ACTION_REMOVE_SHARDS,
        ACTION_WRITE_FILE,
        ACTION_WRITE_DROPIN,
        ACTION_WRITE_SHARDS,
        ACTION_DAEMON_RELOAD,
        ACTION_ENABLE,
        ACTION_START,
        ACTION_RESTART,
        ACTION_RELOAD,
        _ACTION_TYPE_MAX,
        _ACTION_TYPE_INVALID = -EINVAL,
} ActionType;

const char *action_type_to_string(ActionType t);
ActionType action_type_from_string(const char *s);

typedef struct Action {
        ActionType type;
        /* The unit acted on. For WRITE_FILE/REMOVE_FILE it is the owner of the
         * file: the unit itself, or the template ("gateway@.service") whose
         * file all its instances share. "" for a REFUSE of a nameless entry,
         * NULL for DAEMON_RELOAD. */
        char *unit;
        /* Relative to the unit directory: "gateway@.service" or
         * "gateway@3.service.d/50-baton.conf"; for WRITE_SHARDS and
         * REMOVE_SHARDS relative to the agent's shards directory
         * (converge_shards_file_name()); NULL for non-file actions. */
        char *file_name;
        /* What to write (borrowed from the DesiredUnit): the unit text for
         * WRITE_FILE, to be wrapped by managed_file_render(); the drop-in text
         * for WRITE_DROPIN; the shards text for WRITE_SHARDS. NULL otherwise. */
        const char *content;
        /* Why, in words for logs and the CommandResult ("new unit", "config
         * changed", "not allowed by manage_units", …). Never NULL. */
        char *reason;
} Action;

typedef struct Plan {
        Action *actions;
        size_t n_actions;
        size_t n_refused; /* the leading REFUSE actions */
} Plan;

typedef enum ConvergeFlags {
        /* Set by the shell on a new generation or on the first sync after a
         * start: also reconcile the run state of unchanged units with what
         * systemd observes (see rule 7 below). Without it an unchanged unit is
         * left alone, so a crash-looping unit is systemd's and the
         * controller's business, not the agent's. */
        CONVERGE_START_INACTIVE = 1 << 0,
} ConvergeFlags;

/* Computes the actions that take this host from (managed, observed) to
 * `desired`. Rules:
 *
 *  1. A desired entry is refused (one ACTION_REFUSE with a reason, nothing
 *     else for that name) when: its name is not a valid plain or instance
 *     unit name; an instance lacks a template_name equal to its own template
 *     ("gateway@3.service" needs "gateway@.service"), or a plain unit has one;
 *     it has no unit text; its config_hash is not a valid token; the name
 *     does not match `allow_globs` ("not allowed by manage_units"); the name
 *     is listed more than once (every entry of that name is refused); the
 *     instances of one template disagree on the template text (all of them
 *     are refused); or its unit file or its drop-in is in `foreign_files`
 *     (exists on disk, not written by baton: "… exists and is not managed by
 *     baton; refusing to overwrite"). The allow-list is checked on the unit
 *     name and, for an instance, on its template too: the template file
 *     changes every instance, so "foo@1.service" alone does not allow
 *     writing "foo@.service" ("foo@*.service" does). Refused as well when
 *     systemd has the unit from elsewhere: its ObservedUnit has an origin.
 *  2. A unit that is neither desired nor managed is never acted on.
 *  3. Managed but not desired: STOP, DISABLE, REMOVE_DROPIN (if it has one),
 *     REMOVE_FILE. A template file is removed only when no unit that stays
 *     managed after this plan still uses it. Refused instead (and left
 *     entirely alone) when its name is invalid, it or its template no longer
 *     matches `allow_globs`, its recorded file is not the one its name
 *     implies, one of its files is foreign, or it has an origin.
 *  4. Desired and not managed: WRITE_FILE (a template file once for all its
 *     instances), WRITE_DROPIN if it has drop-in text, then after the reload
 *     ENABLE + START if running (RESTART if systemd reports it up: active,
 *     activating, reloading, refreshing; a START would leave it on its old
 *     files); if not running, STOP only when systemd reports it up.
 *  5. Desired and managed with a different config_hash, or a drop-in where
 *     there was none or the reverse, or pending: rewrite its file and
 *     drop-in (the hash covers both, so the core cannot tell which changed;
 *     rewriting the same bytes is harmless), REMOVE_DROPIN if it no longer
 *     has one; then
 *     ENABLE + RESTART if running, else STOP + DISABLE. Only that unit is
 *     restarted, even when it shares a template file with others.
 *  6. Desired and managed with the same hash: nothing.
 *  7. With CONVERGE_START_INACTIVE, for units under rule 6: a running unit
 *     that systemd reports inactive, failed or deactivating, or does not know
 *     at all, gets ENABLE + START; a stopped unit that systemd reports up gets
 *     STOP + DISABLE; a unit whose load_state is "not-found" (its files
 *     vanished) is treated as changed (rule 5).
 *  8. Shards files (ShardChange=reload), besides rules 4-7: a desired unit
 *     with shards_text gets WRITE_SHARDS when its file does not hold that
 *     text (it is new, or its ManagedUnit.shards_text differs), so a unit
 *     always starts on its current set; and then RELOAD, so that its process
 *     re-reads the file (ExecReload=), when it had a file before, should
 *     run, systemd reports it "active" or "reloading", and this plan neither
 *     starts nor restarts it. A unit that had no file was not started
 *     reading one (it runs an older config, its restart deferred): a reload
 *     would tell it nothing. A managed unit that is removed (rule 3) and has
 *     a shards file gets REMOVE_SHARDS; a desired unit keeps its file even
 *     without shards_text, since what runs may still read it.
 *
 * Order: every REFUSE, then STOP, DISABLE, REMOVE_DROPIN, REMOVE_FILE,
 * REMOVE_SHARDS, WRITE_FILE, WRITE_DROPIN, WRITE_SHARDS, exactly one
 * DAEMON_RELOAD iff a unit file or drop-in is written or removed (shards
 * files are not systemd's), then ENABLE, START, RESTART, RELOAD; sorted by
 * unit (then file) name within each group, so equal inputs give equal plans
 * whatever their order. Enabled follows running: a unit is enabled exactly
 * when it should run.
 *
 * Idempotence: once the shell has carried out a plan and updated its state
 * (for every desired entry not refused: agent_state_set_unit() with the
 * derived file name, the hash (config_hash() of the texts if the entry has
 * none) and whether it has drop-in text; for every managed unit not desired
 * and not refused: agent_state_remove_unit()) and read the shards files
 * again, a new plan on the same input contains nothing but the same REFUSE
 * actions.
 *
 * `foreign_files` are relative file names as in Action.file_name. The shell
 * reports the files of desired and managed units that exist without the
 * baton marker. -ENOMEM is the only error; bad input becomes REFUSE. */
int converge_plan(const DesiredUnit *desired, size_t n_desired, const ManagedUnit *managed,
                  size_t n_managed, const ObservedUnit *observed, size_t n_observed,
                  const char *const *foreign_files, size_t n_foreign, const char *allow_globs,
                  unsigned flags, Plan *ret);

void plan_done(Plan *p);

/* True if the plan refuses `unit` (a desired entry or a managed unit): the
 * shell keeps its state record as it is. */
bool plan_refuses(const Plan *p, const char *unit);

/* The unit file a unit lives in: "core.service" → "core.service",
 * "gateway@3.service" → "gateway@.service". -EINVAL for anything but a valid
 * plain or instance name. */
int converge_unit_file_name(const char *unit, char **ret);

/* "gateway@3.service" → "gateway@3.service.d/50-baton.conf". -EINVAL for
 * anything but a valid plain or instance name. */
int converge_dropin_file_name(const char *unit, char **ret);

/* A unit's shards file, relative to the agent's shards directory:
 * "gateway@3.service" → "gateway@3.service". -EINVAL for anything but a
 * valid plain or instance name. */
int converge_shards_file_name(const char *unit, char **ret);

/* <0, 0, >0 as placement (epoch_a, gen_a) is older than, the same as or newer
 * than (epoch_b, gen_b): the epoch counts first, so a controller restored
 * from an old database cannot roll a host back with high generations. */
int placement_order(uint64_t epoch_a, uint64_t gen_a, uint64_t epoch_b, uint64_t gen_b);

/* A stable 64-bit FNV-1a over the unit text, a NUL separator and the drop-in
 * text (NULL counts as ""), as 16 lowercase hex digits. The same on every
 * host and every version, since it is persisted. */
int config_hash(const char *unit_text, const char *dropin_text, char ret[static 17]);

/* 1..CONFIG_HASH_MAX characters of [A-Za-z0-9._:+/=-]. */
bool config_hash_is_valid(const char *s);
