/* SPDX-License-Identifier: MIT */
/* The controller's outgoing messages: envelope, signature, properties. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "commands.pb-c.h"
#include "events.pb-c.h"
#include "log.h"
#include "publish.h"
#include "topology.h"
#include "util.h"

/* Placements are level-triggered and ordered by generation, so a late one
 * cannot roll a host back; the expiration only keeps queues short. */
#define PLACEMENT_EXPIRATION_MS "600000"
/* A Restart that waited a minute is void: the agent refuses it. */
#define RESTART_VALID_US (60 * USEC_PER_SEC)
#define RESTART_EXPIRATION_MS "60000"

static void on_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Publisher *p = userdata;

        /* On shutdown whatever is unconfirmed ends DROPPED: expected. */
        if (outcome == BROKER_CONFIRMED || p->stopping)
                return;
        p->failed++;
        log_warning("A published message ended %s, ignoring.", broker_outcome_to_string(outcome));
}

int publish_body(Publisher *p, uint64_t epoch, const char *exchange, const char *routing_key,
                 const ProtobufCMessage *body, const PublishOptions *o) {
        _cleanup_free_ uint8_t *buf = NULL;
        char message_id[33];
        usec_t now = now_realtime_usec();
        size_t len;
        int r;

        r = codec_encode(body, p->sender, epoch, now, p->key, &buf, &len);
        if (r < 0)
                return r;
        r = random_id(message_id);
        if (r < 0)
                return r;

        BrokerMessage m = {
                .exchange = exchange,
                .routing_key = routing_key,
                .message_id = message_id,
                .type = body->descriptor->name,
                .content_type = CODEC_CONTENT_TYPE,
                .correlation_id = o->correlation_id,
                .expiration = o->expiration,
                .timestamp = now / USEC_PER_SEC,
                .persistent = o->persistent,
                .headers = o->headers,
                .n_headers = o->n_headers,
                .body = buf,
                .body_len = len,
        };
        return broker_publish(p->broker, &m, o->flags, on_confirm, p);
}

int publish_placement(Publisher *p, uint64_t epoch, const PlanSend *send) {
        Baton__V1__Placement pl = BATON__V1__PLACEMENT__INIT;
        _cleanup_free_ Baton__V1__PlacedUnit *units = calloc(send->n_units + 1, sizeof(*units));
        _cleanup_free_ Baton__V1__PlacedUnit **ptrs = calloc(send->n_units + 1, sizeof(*ptrs));
        _cleanup_free_ Baton__V1__ShardAssignment *shards =
                calloc(send->n_units + 1, sizeof(*shards));

        if (!units || !ptrs || !shards)
                return -ENOMEM;
        for (size_t i = 0; i < send->n_units; i++) {
                const PlanUnit *pu = &send->units[i];
                Baton__V1__PlacedUnit *u = &units[i];

                baton__v1__placed_unit__init(u);
                u->name = pu->name;
                u->unit_text = (char *) pu->unit_text;
                u->template_name = (char *) pu->template_name;
                u->service = (char *) pu->service;
                u->instance = pu->instance;
                u->running = pu->running;
                /* A changed unit rolls out: the agent keeps the process. */
                u->defer_restart = true;
                u->config_hash = (char *) pu->config_hash;
                if (pu->sharded) {
                        baton__v1__shard_assignment__init(&shards[i]);
                        shards[i].shards = pu->shards;
                        shards[i].shard_count = pu->shard_count;
                        shards[i].shard_epoch = pu->shard_epoch;
                        u->shards = &shards[i];
                        u->shards_reload = pu->shards_reload;
                }
                ptrs[i] = u;
        }
        pl.host = send->host;
        pl.epoch = epoch;
        pl.generation = send->generation;
        pl.n_units = send->n_units;
        pl.units = ptrs;
        return publish_body(
                p, epoch, TOPOLOGY_EXCHANGE_CMD, send->host, &pl.base,
                &(PublishOptions){ .persistent = true, .expiration = PLACEMENT_EXPIRATION_MS });
}

int publish_restart(Publisher *p, uint64_t epoch, const PlanRestart *rs, uint64_t now) {
        Baton__V1__Restart m = BATON__V1__RESTART__INIT;

        m.id = rs->id;
        m.host = rs->host;
        m.epoch = epoch;
        m.unit = rs->unit;
        m.mode = (char *) "restart";
        m.not_after_us = now + RESTART_VALID_US;
        return publish_body(p, epoch, TOPOLOGY_EXCHANGE_CMD, rs->host, &m.base,
                            &(PublishOptions){ .persistent = true,
                                               .flags = BROKER_PUBLISH_MANDATORY,
                                               .expiration = RESTART_EXPIRATION_MS });
}

int publish_alert(Publisher *p, uint64_t epoch, const PlanAlert *a, uint64_t raised_at_us,
                  uint64_t now) {
        _cleanup_free_ char *key = NULL, *id = alert_id(a->kind, a->service, a->host);
        Baton__V1__Alert m = BATON__V1__ALERT__INIT;
        int severity = alert_kind_severity(a->kind);
        bool resolved = !a->raise;
        const char *kind = alert_kind_to_string(a->kind);

        if (!id || asprintf(&key, "alert.%s.%s", alert_severity_to_string(severity), kind) < 0)
                return -ENOMEM;
        m.id = id;
        m.kind = (char *) kind;
        m.severity = severity;
        m.service = (char *) strempty(a->service);
        m.host = (char *) strempty(a->host);
        m.summary = a->summary;
        m.resolved = resolved;
        m.raised_at_us = raised_at_us;
        m.resolved_at_us = resolved ? now : 0;

        const BrokerHeader headers[] = {
                { "severity", alert_severity_to_string(severity) },
                { "kind", kind },
                { "service", strempty(a->service) },
                { "host", strempty(a->host) },
                { "summary", a->summary },
                { "resolved", resolved ? "true" : "false" },
        };
        return publish_body(p, epoch, TOPOLOGY_EXCHANGE_EVENTS, key, &m.base,
                            &(PublishOptions){ .headers = headers,
                                               .n_headers = ELEMENTSOF(headers),
                                               .persistent = true });
}

int publish_event(Publisher *p, uint64_t epoch, const char *kind, const char *service,
                  const char *host, const char *summary, const char *detail_json) {
        _cleanup_free_ char *key = NULL;
        Baton__V1__Event e = BATON__V1__EVENT__INIT;

        e.kind = (char *) kind;
        e.service = (char *) strempty(service);
        e.host = (char *) strempty(host);
        e.summary = (char *) summary;
        e.at_us = now_realtime_usec();
        e.detail_json = (char *) strempty(detail_json);

        const BrokerHeader headers[] = {
                { "kind", kind },
                { "service", strempty(service) },
                { "host", strempty(host) },
                { "summary", summary },
        };
        if (asprintf(&key, "event.%s", kind) < 0)
                return -ENOMEM;
        return publish_body(p, epoch, TOPOLOGY_EXCHANGE_EVENTS, key, &e.base,
                            &(PublishOptions){ .headers = headers,
                                               .n_headers = ELEMENTSOF(headers),
                                               .persistent = true });
}
