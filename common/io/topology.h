/* SPDX-License-Identifier: MIT */
/* Names of the broker topology (docs/DESIGN.md §2) and its declaration, shared by
 * every program so the arguments of each queue and exchange are written once
 * (re-declaring with other arguments is a 406 from the broker). */
#pragma once

#include <stdbool.h>

#include "broker.h"

#define TOPOLOGY_EXCHANGE_CMD "baton.cmd"       /* direct, key = host id */
#define TOPOLOGY_EXCHANGE_STATUS "baton.status" /* topic, key = <host>.<kind> */
#define TOPOLOGY_EXCHANGE_EVENTS "baton.events" /* topic, alert.<sev>.<kind> | event.<kind> */
#define TOPOLOGY_EXCHANGE_DLX "baton.dlx"       /* fanout → baton.dead */
/* Requests of batonctl: a direct exchange bound to baton.rpc with key
 * baton.rpc, so operators need write on it and not on amq.default (which
 * would let them put messages into any queue, an agent's among them). */
#define TOPOLOGY_EXCHANGE_RPC "baton.requests"
#define TOPOLOGY_QUEUE_DEAD "baton.dead"
#define TOPOLOGY_QUEUE_CONTROLLER "baton.controller"
#define TOPOLOGY_QUEUE_RPC "baton.rpc"
#define TOPOLOGY_QUEUE_AGENT_PREFIX "baton.agent."
#define TOPOLOGY_REPLY_TO "amq.rabbitmq.reply-to"

/* A heartbeat expires in the queue after five heartbeat intervals, never
 * sooner than this: the broker drops it rather than replay minutes of
 * heartbeats to a controller that fell behind. A controller reading its
 * queue later than this may be missing heartbeats that were sent. */
#define TOPOLOGY_HEARTBEAT_MIN_EXPIRY (10 * USEC_PER_SEC)
#define TOPOLOGY_HEARTBEAT_EXPIRY(interval) MAX(5 * (interval), TOPOLOGY_HEARTBEAT_MIN_EXPIRY)
/* What reply_to looks like on a request that used direct reply-to: the
 * controller answers nothing else (a reply to a named queue would let a
 * requester make the controller publish into any queue). */
#define TOPOLOGY_REPLY_TO_PREFIX "amq.rabbitmq.reply-to."

/* Status routing key kinds. */
#define TOPOLOGY_KIND_HEARTBEAT "heartbeat"
#define TOPOLOGY_KIND_UNIT "unit"
#define TOPOLOGY_KIND_SHARD "shard"
#define TOPOLOGY_KIND_RESULT "result"

/* The dead-letter exchange and queue, and the exchanges every party uses. */
int topology_add_common(Broker *b);
/* The controller's queues (status and RPC) and their bindings and consumers. */
int topology_add_controller(Broker *b, BrokerDeliverFn on_status, BrokerDeliverFn on_rpc,
                            void *userdata);
/* One agent's command queue, bound to baton.cmd with its host id. With
 * `declare` false the agent only checks (passively) that baton.status and its
 * queue exist and binds nothing: an administrator declared them, so the
 * agent's broker user needs neither configure permission nor read on
 * baton.cmd (which would let it bind its queue to any host's commands). */
int topology_add_agent(Broker *b, const char *host, bool declare, BrokerDeliverFn on_command,
                       void *userdata);

/* A host id usable in queue names and routing keys: 1–64 of [A-Za-z0-9_-],
 * first character alphanumeric. (No '.', which separates routing key words.) */
#define TOPOLOGY_HOST_ID_MAX 64
bool topology_host_id_is_valid(const char *id);
