/* SPDX-License-Identifier: MIT */
/* Service specs: systemd unit files with an [X-Baton] section (docs/DESIGN.md §9),
 * parsed strictly. The service name is the file name without ".service"; a
 * template ("gateway@.service") has stable ordinal instances gateway@0 … @N-1.
 * Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef enum ServiceKind {
        SERVICE_STATELESS,
        SERVICE_SINGLETON,
        SERVICE_SHARDED,
        _SERVICE_KIND_MAX,
        _SERVICE_KIND_INVALID = -EINVAL,
} ServiceKind;

const char *service_kind_to_string(ServiceKind k) _pure_;
ServiceKind service_kind_from_string(const char *s) _pure_;

typedef struct SpecLabel {
        char *key;
        char *value;
} SpecLabel;

typedef struct ServiceSpec {
        char *name;      /* "gateway" (no "@", no ".service") */
        char *file_name; /* "gateway@.service" or "core.service" */
        bool is_template;
        char *unit_text; /* the whole file, [X-Baton] included (systemd ignores X- sections) */

        ServiceKind kind;      /* default: stateless for templates, singleton otherwise */
        uint32_t count;        /* Instances= (sharded) or Replicas= (stateless); 1 for singleton */
        uint32_t shards;       /* Shards= (sharded only, required there) */
        uint32_t min_replicas; /* MinReplicas=, default 0 (sharded: 1) */
        uint32_t max_replicas; /* MaxReplicas=, default UINT32_MAX */
        uint32_t max_per_host; /* MaxPerHost=, 0 = unlimited */
        SpecLabel *require_labels; /* RequireLabels=k=v k=v: all must match */
        size_t n_require_labels;
        char *spread;                  /* Spread=label key, NULL = none */
        uint64_t memory;               /* Memory= bytes reserved per instance, 0 = none */
        uint32_t max_unavailable;      /* MaxUnavailable=, default 1, ≥ 1 */
        uint32_t max_surge;            /* MaxSurge= (sharded): replacement copies started beside the
                             * live ones at once, default 1; 0: restarts and updates
                             * replace in place (the copy's shards dark meanwhile) */
        usec_t healthy_for;            /* HealthyFor=, default 10s */
        usec_t health_timeout;         /* HealthTimeout=, default 15min */
        uint32_t identify_concurrency; /* IdentifyConcurrency=, default 1 (sharded) */
        usec_t identify_interval;      /* IdentifyInterval=, default 5s */
        uint32_t daily_start_budget;   /* DailyStartBudget=, default 1000; 0 = unlimited */
        bool shard_reload; /* ShardChange=reload (sharded): a copy's shards change in the
                            * running process (file + ExecReload=), not by a new copy */
} ServiceSpec;

/* Bounds beyond the types, so that a spec cannot make the planner allocate or
 * add without limit: the file, instance counts (Replicas=, Instances=,
 * MinReplicas=, IdentifyConcurrency=), RequireLabels= words, durations and
 * Memory=. Shards= is bounded by RANGELIST_MAX_SHARD (rangelist.h). */
#define SPEC_TEXT_MAX (256u * 1024u)
#define SPEC_COUNT_MAX 65536u
#define SPEC_LABELS_MAX 64u
#define SPEC_DURATION_MAX (365ULL * 24 * 3600 * USEC_PER_SEC)
#define SPEC_MEMORY_MAX (UINT64_C(1) << 50)

/* Parses one spec. `file_name` must be "<name>.service" or "<name>@.service"
 * with a valid unit name. Rules:
 *  - the file must be a unit file with a [Service] section; systemd's own
 *    sections are not interpreted beyond that, but a line that is neither a
 *    section, a comment, blank, nor KEY=VALUE (after continuation lines with a
 *    trailing backslash) is an error;
 *  - [X-Baton] may appear once; every key in it is known (listed above), at
 *    most once, with a value of the right type and range; unknown keys are
 *    errors;
 *  - consistency: Kind=sharded needs Shards= ≥ Instances= ≥ 1 and a template;
 *    Kind=stateless needs a template; Kind=singleton takes no Replicas=/
 *    Instances=/Shards=; Replicas= only for stateless, Instances= and Shards=
 *    only for sharded; MinReplicas ≤ count ≤ MaxReplicas; Identify* only for
 *    sharded; durations are systemd's ("10s", "15min").
 * Also (beyond the above):
 *  - lines end in "\n", "\r\n" or "\r", as systemd reads them; a leading
 *    UTF-8 BOM is skipped; the text must be valid UTF-8 (it travels in
 *    protobuf strings) and at most SPEC_TEXT_MAX bytes;
 *  - comment lines inside a continuation are skipped, as systemd does; a
 *    continued line is reported at the line where it starts;
 *  - sections other than [Unit], [Service], [Install] and [X-…] are errors
 *    (systemd would ignore e.g. a misspelt [Unti] with only a warning), and
 *    so is [X-baton] or any other case variant of [X-Baton];
 *  - in [X-Baton] only, "#" after white space starts a comment, so the
 *    annotated example of docs/DESIGN.md §9 parses ("Kind=sharded   # …");
 *  - an empty value is an error, except RequireLabels= and Spread= where it
 *    means none; numbers are plain decimal; label keys and values are
 *    non-empty [A-Za-z0-9._/:-]; RequireLabels= names a key at most once;
 *  - ranges: Replicas= 0…SPEC_COUNT_MAX, Instances= 1…SPEC_COUNT_MAX,
 *    Shards= 1…RANGELIST_MAX_SHARD, MaxReplicas= ≥ 1, MaxUnavailable= ≥ 1,
 *    IdentifyConcurrency= 1…SPEC_COUNT_MAX, Memory= ≤ SPEC_MEMORY_MAX;
 *    durations are finite and ≤ SPEC_DURATION_MAX, HealthTimeout= and
 *    IdentifyInterval= > 0; sharded MinReplicas= ≥ 1;
 *  - MinReplicas=/MaxReplicas= are refused for Kind=singleton (always one
 *    instance); Kind=singleton may be a template (one instance, name@0);
 *  - defaults: Replicas=1 (stateless), Instances=1 (sharded); the Identify*
 *    and DailyStartBudget defaults are filled in for every kind;
 *  - syntax and value errors are reported at the first bad line; the
 *    consistency rules are checked after the whole file (an error between
 *    two keys names the later key's line).
 * Every error is -EINVAL with *ret_error = "FILE:LINE: [X-Baton] Key: reason"
 * (or "FILE: reason" when no line applies; errors outside [X-Baton] are
 * "FILE:LINE: reason"). ret_error may be NULL; it is set only on -EINVAL
 * (-ENOMEM leaves it untouched); *ret is set only on success. */
int spec_parse(const char *file_name, const char *text, ServiceSpec **ret, char **ret_error);

ServiceSpec *service_spec_free(ServiceSpec *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ServiceSpec *, service_spec_free)
int service_spec_copy(const ServiceSpec *s, ServiceSpec **ret);

/* A 64-bit FNV-1a hash of what systemd reads of a unit file: every line
 * outside [X-…] sections (so changing Replicas= or any [X-Baton] key does
 * not count as a change of the unit that would restart it). */
uint64_t spec_systemd_hash(const char *unit_text);

/* "gateway" + 3 → "gateway@3.service"; a non-template → "core.service"
 * (instance ignored). */
int service_instance_unit(const ServiceSpec *s, uint32_t instance, char **ret);

/* The shards instance `i` of `n` owns in a balanced static split of
 * `shards`: [i*shards/n, (i+1)*shards/n) as a range list text ("0-13").
 * Issue 6 replaces this with minimal-movement assignment. An empty share
 * (shards < n) is "". -EINVAL if n == 0 or i ≥ n. */
int service_default_shards(uint32_t shards, uint32_t n, uint32_t i, char **ret);
