/* SPDX-License-Identifier: MIT */
/* The controller's one straight line: an event → reconcile() → the plan's
 * records in one SQLite transaction → the plan made the model's state → its
 * messages published. Every change of the model goes through here. */
#pragma once

#include <stdbool.h>

#include "controller.h"
#include "reconcile.h"

/* What the audit log records of a request, written in the plan's
 * transaction (so a change is never made unaudited). */
typedef struct PipelineAudit {
        const char *user;
        const char *verb;
        const char *request;
        const char *outcome;
} PipelineAudit;

/* Runs an event through the line. Failures are logged once here (naming the
 * event) and returned: -ENOMEM from reconcile (nothing decided), or the
 * store's error (nothing changed). */
int pipeline_run(Controller *c, Event *ev);

/* The same in steps, for a request that answers from the plan before it is
 * applied: decide (sets the event's time and nonce); commit (stores the
 * plan's records and `audit`, if any, in one transaction; on failure nothing
 * changed, *ret_error says why); carry out (apply and publish, or queue in
 * the outbox; cannot fail: what does not go out is counted and logged, and
 * goes out again on the next event that concerns it). */
int pipeline_decide(Controller *c, Event *ev, Plan *ret, Answer *ret_answer);
int pipeline_commit(Controller *c, Plan *p, const PipelineAudit *audit, const char **ret_error);
/* `start` (monotonic µs) begins the slice in which commands go out at once
 * (outbox.h). */
void pipeline_carry_out(Controller *c, Plan *p, usec_t start);

/* A host's liveness changed (a heartbeat of a new or returning host, an
 * expiry sweep): the transitions found in one turn of the loop go through
 * reconcile() together, once. */
void pipeline_host_transition(Controller *c, const HostTransition *t);
/* Runs the transitions gathered so far now (an expiry sweep ends with it). */
void pipeline_transitions_flush(Controller *c);

/* Hosts' observed facts (last seen, labels, versions) in one transaction. */
void pipeline_flush_hosts(Controller *c);

int pipeline_init(Controller *c);
void pipeline_done(Controller *c);
