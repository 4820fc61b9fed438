/* SPDX-License-Identifier: MIT */
/* batonctl's requests on baton.rpc (docs/DESIGN.md §2, README "Security"). */
#pragma once

#include "broker.h"
#include "controller.h"

/* BrokerConsumeFn; userdata is the Controller. */
void rpc_on_message(Broker *b, const BrokerMessage *m, void *userdata);

/* The queue of answers written in steps: its idle handle (rpc-steps.c). */
int rpc_queue_init(Controller *c);
/* Closes the handle; what is still queued is dropped (its requesters time
 * out) and freed by rpc_queue_done(). */
void rpc_queue_close(Controller *c);
void rpc_queue_done(Controller *c);
