/* SPDX-License-Identifier: MIT */
/* Everything the controller sends: each body in a signed Envelope with the
 * standard AMQP properties, published with confirms; Placements and Restarts
 * to baton.cmd, alerts and events to baton.events, replies to direct
 * reply-to. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "plan.h"
#include "sign.h"

typedef struct Publisher {
        Broker *broker;
        const char *sender; /* the controller's id */
        const SignKey *key; /* NULL: unsigned (insecure_unsigned) */
        uint64_t failed;    /* publishes that ended other than confirmed */
        bool stopping;      /* what ends DROPPED on shutdown is expected */
} Publisher;

/* How a message goes out; zeroes are the defaults. */
typedef struct PublishOptions {
        const BrokerHeader *headers;
        size_t n_headers;
        bool persistent;
        unsigned flags; /* BROKER_PUBLISH_* */
        const char *correlation_id;
        const char *expiration; /* milliseconds as text */
} PublishOptions;

int publish_body(Publisher *p, uint64_t epoch, const char *exchange, const char *routing_key,
                 const ProtobufCMessage *body, const PublishOptions *o);
/* A host's Placement. -EMSGSIZE when it does not fit in a message. */
int publish_placement(Publisher *p, uint64_t epoch, const PlanSend *send);
int publish_restart(Publisher *p, uint64_t epoch, const PlanRestart *rs, uint64_t now);
/* An alert raised, resolved (raised_at_us is when it was raised) or a notice. */
int publish_alert(Publisher *p, uint64_t epoch, const PlanAlert *a, uint64_t raised_at_us,
                  uint64_t now);
/* event.<kind> with readable headers; detail_json may be NULL. */
int publish_event(Publisher *p, uint64_t epoch, const char *kind, const char *service,
                  const char *host, const char *summary, const char *detail_json);
