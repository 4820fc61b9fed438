/* SPDX-License-Identifier: MIT */
/* batonctl's requests on baton.rpc (DESIGN.md, README "Security"). */
#pragma once

#include "broker.h"

/* BrokerConsumeFn; userdata is the Controller. */
void rpc_on_message(Broker *b, const BrokerMessage *m, void *userdata);
