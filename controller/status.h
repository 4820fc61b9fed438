/* SPDX-License-Identifier: MIT */
/* The status queue: heartbeats, unit events, shard reports, command results
 * and the controller's own liveness markers. Each message is checked
 * (size, rate, type, that its routing key, envelope and body name one
 * host), folded into the model's observed state (controller/core/observe)
 * and run through the pipeline as one event. */
#pragma once

#include "broker.h"

/* BrokerConsumeFn; userdata is the Controller. */
void status_on_message(Broker *b, const BrokerMessage *m, void *userdata);
