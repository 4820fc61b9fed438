/* SPDX-License-Identifier: MIT */
/* batonctl's requests on baton.rpc (docs/DESIGN.md §2, README "Security"). */
#pragma once

#include "broker.h"

/* BrokerConsumeFn; userdata is the Controller. */
void rpc_on_message(Broker *b, const BrokerMessage *m, void *userdata);
