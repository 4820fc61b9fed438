/* SPDX-License-Identifier: MIT */
/* The agent's view of one systemd manager over sd-bus: jobs (start, stop,
 * restart, reload) whose completion is matched from JobRemoved, daemon-reload,
 * enable/disable, and a pushed cache of the properties of every watched unit
 * (PropertiesChanged, never polled, except memory which systemd does not
 * signal). Subscribe and matches are set up before any job is started. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "bus.h"
#include "macro.h"

typedef struct Systemd Systemd;

typedef enum JobKind {
        JOB_START,
        JOB_STOP,
        JOB_RESTART,
        JOB_TRY_RESTART,
        JOB_RELOAD, /* ExecReload=: the unit's process re-reads what it was given */
        _JOB_KIND_MAX,
        _JOB_KIND_INVALID = -EINVAL,
} JobKind;

const char *job_kind_to_string(JobKind k) _pure_;
JobKind job_kind_from_string(const char *s) _pure_;

/* What the agent reports of a unit (a UnitEvent, docs/DESIGN.md §2). */
typedef struct UnitInfo {
        char *name;
        char *load_state;
        char *active_state;
        char *sub_state;
        char *result;
        char *status_text;
        uint32_t n_restarts;
        uint32_t main_pid;
        uint64_t memory_current;    /* UINT64_MAX: unknown */
        uint64_t state_change_usec; /* ActiveEnterTimestamp & co, wall clock µs */
        bool known;                 /* properties read at least once */
        /* Went active and its StatusText was not read since: systemd sends
         * ActiveState (Unit) and StatusText (Service) in separate signals,
         * so a workload's first readiness tokens may not be here yet. */
        bool status_pending;
} UnitInfo;

typedef struct SystemdCallbacks {
        /* A watched unit's ActiveState, SubState, NRestarts, Result,
         * StatusText or status_pending changed; `old` has the previous
         * values. */
        void (*unit_changed)(Systemd *s, const UnitInfo *now, const UnitInfo *old, void *userdata);
} SystemdCallbacks;

/* `result` is systemd's job result ("done", "failed", "canceled",
 * "timeout", "dependency", "skipped"), or NULL when the call itself failed
 * (then `error` is -errno and `message` says why). */
typedef void (*JobDoneFn)(Systemd *s, const char *unit, const char *result, int error,
                          const char *message, void *userdata);
/* For reload and enable/disable: error 0 or -errno with a message. */
typedef void (*CallDoneFn)(Systemd *s, int error, const char *message, void *userdata);

int systemd_new(sd_bus *bus, BusLoop *loop, const SystemdCallbacks *cb, void *userdata,
                Systemd **ret);
Systemd *systemd_free(Systemd *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Systemd *, systemd_free)

/* Manager.Subscribe and the JobRemoved match. Completes asynchronously;
 * jobs may be queued right away (they are sent after it). */
int systemd_subscribe(Systemd *s);

/* Starts a job; `fn` is called exactly once. */
int systemd_job(Systemd *s, JobKind kind, const char *unit, JobDoneFn fn, void *userdata);

/* The same in two steps, for a caller with a point of no return in between
 * (a Restart id recorded durably): systemd_job_new() allocates everything
 * the job needs, systemd_job_send() then fails only if the bus does. A job
 * that is not sent must be freed with systemd_job_free(); a job that was
 * sent calls `fn` exactly once, one that failed to send never does and is
 * freed. */
typedef struct Job SystemdJob;
int systemd_job_new(Systemd *s, JobKind kind, const char *unit, JobDoneFn fn, void *userdata,
                    SystemdJob **ret);
int systemd_job_send(SystemdJob *j);
SystemdJob *systemd_job_free(SystemdJob *j);

int systemd_reload(Systemd *s, CallDoneFn fn, void *userdata);
/* Persistent enablement, so a reboot brings the units back without the
 * controller. Enabling adds a Wants= from `target` (AddDependencyUnitFiles,
 * like `systemctl add-wants`), which works whether or not the unit file has
 * an [Install] section; disabling removes every symlink to the unit
 * (DisableUnitFiles). Unit names, not paths. */
int systemd_enable(Systemd *s, const char *const *units, size_t n, bool enable, const char *target,
                   CallDoneFn fn, void *userdata);

/* Adds a PropertiesChanged match for the unit and reads all its properties
 * once. Idempotent. */
int systemd_watch(Systemd *s, const char *unit);
void systemd_unwatch(Systemd *s, const char *unit);
/* Cached view of a watched unit, NULL if not watched. */
const UnitInfo *systemd_unit(Systemd *s, const char *unit);
/* Re-reads every property of every watched unit: for what systemd does not
 * signal (MemoryCurrent; LoadState after a daemon-reload). */
int systemd_refresh(Systemd *s);

/* What systemd says of a unit when asked to load it (as Manager.LoadUnit
 * does: a unit it has no file for comes back "not-found", and one whose file
 * appeared since it last looked is found). */
typedef struct UnitProbe {
        char *name;
        char *load_state;    /* "loaded", "not-found", "masked", …; NULL on error */
        char *active_state;  /* NULL on error */
        char *fragment_path; /* "" when it has no unit file */
        char *error;         /* why systemd could not answer, else NULL */
} UnitProbe;

/* Called once: with error 0, every unit's answer (in the order asked) and
 * the manager's unit search path (UnitPath, NULL-terminated, highest
 * priority first); or with -errno and nothing else when the search path
 * could not be read, -ECANCELED when the Systemd is freed first. */
typedef void (*ProbeDoneFn)(Systemd *s, int error, const UnitProbe *units, size_t n,
                            char *const *unit_path, void *userdata);

/* Loads each unit and reads its LoadState, ActiveState and FragmentPath,
 * and the manager's UnitPath, all at once. */
int systemd_probe(Systemd *s, const char *const *units, size_t n, ProbeDoneFn fn, void *userdata);

size_t systemd_n_watched(Systemd *s);
const UnitInfo *systemd_watched(Systemd *s, size_t i);
/* Jobs started and not yet finished. */
size_t systemd_jobs_pending(Systemd *s);

void unit_info_done(UnitInfo *u);
