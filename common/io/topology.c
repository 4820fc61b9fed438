/* SPDX-License-Identifier: MIT */
/* Declares the baton topology. Durable queues dead-letter to baton.dlx so a
 * refused message is kept for operators instead of vanishing. */
#include <ctype.h>
#include <stdio.h>

#include "topology.h"

static const BrokerQueueArgs dead_lettered = {
        .dead_letter_exchange = TOPOLOGY_EXCHANGE_DLX,
};

int topology_add_common(Broker *b) {
        int r;

        r = broker_add_exchange(b, TOPOLOGY_EXCHANGE_DLX, "fanout", BROKER_DURABLE);
        if (r < 0)
                return r;
        r = broker_add_queue(b, TOPOLOGY_QUEUE_DEAD, BROKER_DURABLE, NULL);
        if (r < 0)
                return r;
        r = broker_add_binding(b, TOPOLOGY_QUEUE_DEAD, TOPOLOGY_EXCHANGE_DLX, "");
        if (r < 0)
                return r;
        r = broker_add_exchange(b, TOPOLOGY_EXCHANGE_CMD, "direct", BROKER_DURABLE);
        if (r < 0)
                return r;
        r = broker_add_exchange(b, TOPOLOGY_EXCHANGE_STATUS, "topic", BROKER_DURABLE);
        if (r < 0)
                return r;
        r = broker_add_exchange(b, TOPOLOGY_EXCHANGE_RPC, "direct", BROKER_DURABLE);
        if (r < 0)
                return r;
        return broker_add_exchange(b, TOPOLOGY_EXCHANGE_EVENTS, "topic", BROKER_DURABLE);
}

int topology_add_controller(Broker *b, BrokerDeliverFn on_status, BrokerDeliverFn on_rpc,
                            void *userdata) {
        /* Single active consumer: a standby controller may consume too and
         * takes over the moment the active one's connection dies. */
        static const BrokerQueueArgs controller_args = {
                .dead_letter_exchange = TOPOLOGY_EXCHANGE_DLX,
                .single_active_consumer = true,
        };
        int r;

        r = broker_add_queue(b, TOPOLOGY_QUEUE_CONTROLLER, BROKER_DURABLE, &controller_args);
        if (r < 0)
                return r;
        r = broker_add_binding(b, TOPOLOGY_QUEUE_CONTROLLER, TOPOLOGY_EXCHANGE_STATUS, "#");
        if (r < 0)
                return r;
        r = broker_add_queue(b, TOPOLOGY_QUEUE_RPC, BROKER_DURABLE, &controller_args);
        if (r < 0)
                return r;
        r = broker_add_binding(b, TOPOLOGY_QUEUE_RPC, TOPOLOGY_EXCHANGE_RPC, TOPOLOGY_QUEUE_RPC);
        if (r < 0)
                return r;
        r = broker_add_consumer(b, TOPOLOGY_QUEUE_CONTROLLER, 0, on_status, userdata);
        if (r < 0)
                return r;
        return broker_add_consumer(b, TOPOLOGY_QUEUE_RPC, 0, on_rpc, userdata);
}

int topology_add_agent(Broker *b, const char *host, bool declare, BrokerDeliverFn on_command,
                       void *userdata) {
        _cleanup_free_ char *queue = NULL;
        int r;

        if (!topology_host_id_is_valid(host))
                return -EINVAL;
        if (asprintf(&queue, TOPOLOGY_QUEUE_AGENT_PREFIX "%s", host) < 0)
                return -ENOMEM;

        if (declare) {
                r = broker_add_queue(b, queue, BROKER_DURABLE, &dead_lettered);
                if (r >= 0)
                        r = broker_add_binding(b, queue, TOPOLOGY_EXCHANGE_CMD, host);
        } else {
                /* Passive declarations need no permission and fail with
                 * NOT_FOUND, naming what the set-up script has not created
                 * yet, instead of the first publish failing later. */
                r = broker_add_exchange(b, TOPOLOGY_EXCHANGE_STATUS, "topic",
                                        BROKER_DURABLE | BROKER_PASSIVE);
                if (r >= 0)
                        r = broker_add_queue(b, queue, BROKER_DURABLE | BROKER_PASSIVE, NULL);
        }
        if (r < 0)
                return r;
        return broker_add_consumer(b, queue, 0, on_command, userdata);
}

bool topology_host_id_is_valid(const char *id) {
        size_t n = 0;

        if (isempty(id) || !isalnum((unsigned char) id[0]))
                return false;
        for (const char *p = id; *p; p++, n++)
                if (!isalnum((unsigned char) *p) && *p != '-' && *p != '_')
                        return false;
        return n <= TOPOLOGY_HOST_ID_MAX;
}
