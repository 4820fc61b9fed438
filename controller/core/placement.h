/* SPDX-License-Identifier: MIT */
/* Where every instance runs. Deterministic (same input, same output, whatever
 * the input order) and stable: an instance that may stay where it is stays;
 * adding a host or changing one service moves nothing else; losing a host
 * moves only that host's instances. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec.h"

typedef struct PlacementHost {
        const char *id;
        bool schedulable; /* up and not drained */
        /* Not schedulable but keeps the instances `current` lists on it (a
         * host being drained step by step: the caller leaves out of `current`
         * the instances that may move now). */
        bool keeps;
        const SpecLabel *labels;
        size_t n_labels;
        uint64_t memory_total; /* bytes; 0 = unknown (Memory= then cannot fit) */
        /* What instances of services not given to this computation use
         * there (placing some services among others, as they stay). */
        uint64_t memory_used;
        size_t n_instances;
} PlacementHost;

/* One instance on one host. In a PlacementResult both strings are borrowed:
 * `service` is the ServiceSpec's name and `host` the PlacementHost's id passed
 * to placement_compute(), so a result is valid only while those live. */
typedef struct Assignment {
        const char *service; /* borrowed (from the specs or the caller) */
        uint32_t instance;   /* ordinal; 0 for a singleton */
        const char *host;
} Assignment;

typedef enum PlacementProblemKind {
        PLACEMENT_NO_HOST,     /* no schedulable host satisfies the constraints */
        PLACEMENT_NO_CAPACITY, /* constraints hold somewhere, memory does not fit */
        _PLACEMENT_PROBLEM_MAX,
        _PLACEMENT_PROBLEM_INVALID = -EINVAL,
} PlacementProblemKind;

/* "no-host", "no-capacity" (for alerts and `--json`). */
const char *placement_problem_kind_to_string(PlacementProblemKind k) _pure_;
PlacementProblemKind placement_problem_kind_from_string(const char *s) _pure_;

typedef struct PlacementProblem {
        const char *service; /* borrowed, as in Assignment */
        uint32_t instance;
        PlacementProblemKind kind;
        /* Owned. Names the constraint that rules out every host, the first
         * in the order schedulable, RequireLabels=, MaxPerHost=, Memory=:
         *   "none of the 4 hosts is schedulable"
         *   "no schedulable host has label role=gateway"
         *   "MaxPerHost=2 reached on all 3 schedulable hosts with the required labels"
         *   "Memory=16G fits on none of the 3 hosts that satisfy the constraints (most free: 8G)" */
        char *reason;
} PlacementProblem;

typedef struct PlacementResult {
        Assignment *assignments; /* sorted by (service, instance) */
        size_t n_assignments;
        PlacementProblem *problems; /* instances left unplaced, sorted by (service, instance) */
        size_t n_problems;
        /* Instances whose host changed: newly placed, moved, or unplaced though
         * they had a host in `current`. Instances that no longer exist (service
         * gone, ordinal ≥ count) are not counted. */
        size_t n_moved;
} PlacementResult;

/* Computes the assignment of every instance 0…count-1 of every service.
 * Rules, in order:
 *  1. A current assignment is kept when its host is schedulable (or keeps), the service
 *     still has that instance, and the host still satisfies RequireLabels=,
 *     MaxPerHost= and Memory= (memory counted over everything kept or placed
 *     there). Kept ones are settled first, in (service, instance) order.
 *  2. Every other instance goes to the eligible host (schedulable, labels,
 *     MaxPerHost, memory) that minimizes, in order: instances of the same
 *     service in the same Spread= value, instances of the same service on the
 *     host, total instances on the host, a stable hash of (service, host
 *     id) — so ties break the same way every time without piling onto the
 *     alphabetically first host, each service in an order of its own. (The
 *     hash leaves out the instance: then placing an instance changes the
 *     rank of one host only, and a choice costs O(log hosts), not O(hosts).)
 *  3. None eligible: a problem, the instance stays unplaced (no assignment).
 *     Its reason is diagnosed against the fleet as the result leaves it, so
 *     the same input gives the same text and recomputing from the result
 *     repeats it.
 * Services are placed in name order, instances in ordinal order.
 *
 * Details:
 *  - A singleton has exactly one instance, 0, whatever its count says.
 *  - `current` may hold anything: entries of unknown services, of ordinals
 *    ≥ count or on unknown hosts are never kept (an unknown host counts as a
 *    host change for n_moved). An instance listed on several hosts is kept on
 *    the first of them, in host id order, that satisfies rule 1; the others
 *    are dropped.
 *  - Spread=: hosts without that label form one group of their own (value
 *    ""). Spread= is a preference among eligible hosts, never a reason to
 *    leave an instance unplaced or to move a kept one.
 *  - Memory=: a host with memory_total 0 (unknown) takes only services
 *    without Memory=, and keeps what it has (rule 1: its memory is not
 *    known to be short).
 *  - The stable hash is 64-bit FNV-1a over the bytes of
 *    "<service>\0<host id>".
 *  - Stability has one limit: raising one service's Memory= may overfill a
 *    host; its kept instances are then settled in (service, instance) order
 *    like any others, so an instance of another service may be the one that
 *    moves. Every other change of one service moves none of the others.
 *
 * Returns 0, -ENOMEM, or -EINVAL if two services share a name or two hosts
 * share an id (the caller's bug: the result would depend on input order).
 * Other bad input is the caller's (specs are validated). On failure *ret is
 * untouched. */
int placement_compute(const ServiceSpec *const *services, size_t n_services,
                      const PlacementHost *hosts, size_t n_hosts, const Assignment *current,
                      size_t n_current, PlacementResult *ret);

/* Frees what the result owns and zeroes it; safe on a zeroed result and twice. */
void placement_result_done(PlacementResult *r);

/* The assignment of (service, instance), or NULL if it is unplaced or unknown.
 * Binary search: the assignments are sorted. */
const Assignment *placement_result_find(const PlacementResult *r, const char *service,
                                        uint32_t instance);

/* True if host `h` has every label of `require`. */
bool placement_labels_match(const PlacementHost *h, const SpecLabel *require, size_t n);
