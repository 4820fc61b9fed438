/* SPDX-License-Identifier: MIT */
/* The controller shell: status in (heartbeats → host liveness), alerts out,
 * observed state flushed to SQLite in batches, host transitions written at
 * once. RPC verbs live in rpc.c. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "controller.h"
#include "duration.h"
#include "events.pb-c.h"
#include "log.h"
#include "loop.h"
#include "status.pb-c.h"
#include "text.h"
#include "topology.h"
#include "util.h"

static const char *const refuse_reason_table[_REFUSE_REASON_MAX] = {
        [REFUSE_MALFORMED] = "malformed",       [REFUSE_WRONG_TYPE] = "wrong-type",
        [REFUSE_MISMATCH] = "mismatch",         [REFUSE_UNAUTHORIZED] = "unauthorized",
        [REFUSE_RATE_LIMITED] = "rate-limited", [REFUSE_NOT_OWNED] = "not-owned",
};

const char *refuse_reason_to_string(RefuseReason r) {
        if (r < 0 || r >= _REFUSE_REASON_MAX)
                return NULL;
        return refuse_reason_table[r];
}

static void observed_units_clear(HostView *v) {
        for (size_t i = 0; i < v->n_units; i++) {
                free(v->units[i].name);
                free(v->units[i].active_state);
                free(v->units[i].sub_state);
        }
        free(v->units);
        v->units = NULL;
        v->n_units = 0;
}

static HostView *host_view_free(HostView *v) {
        if (!v)
                return NULL;
        observed_units_clear(v);
        shard_reports_clear(v);
        for (size_t i = 0; i < v->n_flaps; i++)
                free(v->flaps[i].unit);
        free(v->flaps);
        free(v->sent_digest);
        free(v->boot_id);
        free(v->agent_version);
        free(v->labels);
        free(v->systemd_version);
        free(v->system_state);
        free(v);
        return NULL;
}

static void host_view_free_void(void *v) {
        host_view_free(v);
}

static HostView *host_view_of(Host *h) {
        if (!h->userdata)
                h->userdata = calloc(1, sizeof(HostView));
        return h->userdata;
}

/* Replaces *dst with a terminal-safe copy of src (text an agent reported)
 * if they differ; returns true if changed. */
static bool update_str(char **dst, const char *src) {
        char *copy;

        copy = src ? text_sanitize(src) : NULL;
        if (src && !copy)
                return false; /* keep the old value on OOM; the next heartbeat retries */
        if (streq_ptr(*dst, copy)) {
                free(copy);
                return false;
        }
        free(*dst);
        *dst = copy;
        return true;
}

/* ---- publishing ---------------------------------------------------------- */

static void on_publish_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Controller *c = userdata;

        /* On shutdown whatever is unconfirmed ends DROPPED: expected. */
        if (outcome == BROKER_CONFIRMED || c->stopping)
                return;
        c->counters.publish_failed++;
        log_warning("A published message ended %s, ignoring.", broker_outcome_to_string(outcome));
}

int controller_publish(Controller *c, const char *exchange, const char *routing_key,
                       const ProtobufCMessage *body, const PublishOptions *o) {
        _cleanup_free_ uint8_t *buf = NULL;
        char message_id[33];
        usec_t now = now_realtime_usec();
        size_t len;
        int r;

        r = codec_encode(body, c->config.id, c->epoch, now,
                         c->have_signing_key ? &c->signing_key : NULL, &buf, &len);
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
        return broker_publish(c->broker, &m, o->flags, on_publish_confirm, c);
}

/* ---- alerts -------------------------------------------------------------- */

const char *alert_severity_name(int severity) {
        switch (severity) {
        case BATON__V1__SEVERITY__SEVERITY_CRITICAL:
                return "critical";
        case BATON__V1__SEVERITY__SEVERITY_WARNING:
                return "warning";
        default:
                return "info";
        }
}

static int publish_alert(Controller *c, const char *id, const char *kind, int severity,
                         const char *service, const char *host, const char *summary, bool resolved,
                         uint64_t raised_at_us) {
        _cleanup_free_ char *key = NULL;
        Baton__V1__Alert a = BATON__V1__ALERT__INIT;
        uint64_t now = now_realtime_usec();

        a.id = (char *) id;
        a.kind = (char *) kind;
        a.severity = severity;
        a.service = (char *) strempty(service);
        a.host = (char *) strempty(host);
        a.summary = (char *) summary;
        a.resolved = resolved;
        a.raised_at_us = raised_at_us;
        a.resolved_at_us = resolved ? now : 0;

        const BrokerHeader headers[] = {
                { "severity", alert_severity_name(severity) },
                { "kind", kind },
                { "service", strempty(service) },
                { "host", strempty(host) },
                { "summary", summary },
                { "resolved", resolved ? "true" : "false" },
        };

        if (asprintf(&key, "alert.%s.%s", alert_severity_name(severity), kind) < 0)
                return -ENOMEM;
        return controller_publish(c, TOPOLOGY_EXCHANGE_EVENTS, key, &a.base,
                                  &(PublishOptions){ .headers = headers,
                                                     .n_headers = ELEMENTSOF(headers),
                                                     .persistent = true });
}

int controller_event(Controller *c, const char *kind, const char *service, const char *host,
                     const char *summary, const char *detail_json) {
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
        return controller_publish(c, TOPOLOGY_EXCHANGE_EVENTS, key, &e.base,
                                  &(PublishOptions){ .headers = headers,
                                                     .n_headers = ELEMENTSOF(headers),
                                                     .persistent = true });
}

static OpenAlert *find_alert(Controller *c, const char *id) {
        for (size_t i = 0; i < c->n_alerts; i++)
                if (streq(c->alerts[i].id, id))
                        return &c->alerts[i];
        return NULL;
}

static void open_alert_done(OpenAlert *a) {
        free(a->id);
        free(a->kind);
        free(a->host);
        free(a->service);
        free(a->summary);
}

static int remember_alert(Controller *c, const char *id, const char *kind, int severity,
                          const char *service, const char *host, const char *summary,
                          uint64_t raised_at_us) {
        OpenAlert *p, *a;

        p = realloc(c->alerts, (c->n_alerts + 1) * sizeof(OpenAlert));
        if (!p)
                return -ENOMEM;
        c->alerts = p;
        a = &c->alerts[c->n_alerts];
        *a = (OpenAlert){
                .id = strdup(id),
                .kind = strdup(kind),
                .host = host ? strdup(host) : NULL,
                .service = service ? strdup(service) : NULL,
                .summary = strdup(summary),
                .severity = severity,
                .raised_at_us = raised_at_us,
        };
        if (!a->id || !a->kind || !a->summary || (host && !a->host) || (service && !a->service)) {
                open_alert_done(a);
                return -ENOMEM;
        }
        c->n_alerts++;
        return 0;
}

/* Raises an alert once: a condition already open is not raised again, also
 * across controller restarts (open alerts are persisted). */
int alert_raise(Controller *c, const char *kind, int severity, const char *service_text,
                const char *host, const char *summary_text) {
        /* Summaries quote what agents and workloads report (unit names, job
         * results): make them safe for every terminal they reach. */
        _cleanup_free_ char *id = NULL, *summary = text_sanitize(summary_text),
                            *service = service_text ? text_sanitize(service_text) : NULL;
        uint64_t now = now_realtime_usec();
        int r;

        if (!summary || (service_text && !service))
                return -ENOMEM;
        if (asprintf(&id, "%s/%s/%s", kind, strempty(service), strempty(host)) < 0)
                return -ENOMEM;
        if (find_alert(c, id))
                return 0;

        r = remember_alert(c, id, kind, severity, service, host, summary, now);
        if (r < 0)
                return r;
        r = store_put_alert(c->store, &(StoreAlert){ .id = id,
                                                     .kind = kind,
                                                     .severity = severity,
                                                     .service = service,
                                                     .host = host,
                                                     .summary = summary,
                                                     .raised_at_us = now });
        if (r < 0) {
                c->counters.store_errors++;
                log_warning_errno(r, "Failed to persist alert %s: %s, ignoring.", id,
                                  store_error(c->store));
        }
        c->counters.alerts_raised++;
        log_fields(severity == BATON__V1__SEVERITY__SEVERITY_CRITICAL ? LOG_ERR : LOG_WARNING, 0,
                   LOG_FIELDS({ "BATON_ALERT", kind }, { "BATON_HOST", strempty(host) }),
                   "Alert %s: %s", kind, summary);
        return publish_alert(c, id, kind, severity, service, host, summary, false, now);
}

int alert_resolve(Controller *c, const char *kind, const char *service_text, const char *host,
                  const char *summary_text) {
        _cleanup_free_ char *id = NULL, *summary = text_sanitize(summary_text),
                            *service = service_text ? text_sanitize(service_text) : NULL;
        OpenAlert *a;
        uint64_t raised;
        int severity, r;

        if (!summary || (service_text && !service))
                return -ENOMEM;
        if (asprintf(&id, "%s/%s/%s", kind, strempty(service), strempty(host)) < 0)
                return -ENOMEM;
        a = find_alert(c, id);
        if (!a)
                return 0;

        severity = a->severity;
        raised = a->raised_at_us;
        open_alert_done(a);
        *a = c->alerts[--c->n_alerts];

        r = store_delete_alert(c->store, id);
        if (r < 0) {
                c->counters.store_errors++;
                log_warning_errno(r, "Failed to delete alert %s: %s, ignoring.", id,
                                  store_error(c->store));
        }
        c->counters.alerts_resolved++;
        log_notice("Resolved %s: %s", kind, summary);
        return publish_alert(c, id, kind, severity, service, host, summary, true, raised);
}

void alerts_resolve_service(Controller *c, const char *service) {
        for (size_t i = c->n_alerts; i > 0; i--) {
                _cleanup_free_ char *kind = NULL, *host = NULL, *summary = NULL;
                const OpenAlert *a = &c->alerts[i - 1];

                if (!streq_ptr(a->service, service))
                        continue;
                kind = strdup(a->kind);
                host = a->host ? strdup(a->host) : NULL;
                if (!kind || asprintf(&summary, "%s was deleted", service) < 0)
                        continue;
                (void) alert_resolve(c, kind, service, host, summary);
        }
}

/* An informational notice that is never open (no resolution follows). */
static int alert_notice(Controller *c, const char *kind, const char *service, const char *host,
                        const char *summary) {
        _cleanup_free_ char *id = NULL;
        uint64_t now = now_realtime_usec();

        if (asprintf(&id, "%s/%s/%s", kind, strempty(service), strempty(host)) < 0)
                return -ENOMEM;
        log_info("%s", summary);
        return publish_alert(c, id, kind, BATON__V1__SEVERITY__SEVERITY_INFO, service, host,
                             summary, false, now);
}

/* ---- flapping ------------------------------------------------------------ */

#define FLAP_WINDOW (60 * USEC_PER_SEC)
#define FLAP_THRESHOLD 3

static void flap_alert(Controller *c, const char *host, const char *unit, int change) {
        _cleanup_free_ char *summary = NULL;

        /* The unit stands in the alert's service field: two flapping units
         * of one service on one host are two alerts. */
        if (change > 0) {
                if (asprintf(&summary, "%s on %s restarted %d times within %ds", unit, host,
                             FLAP_THRESHOLD, (int) (FLAP_WINDOW / USEC_PER_SEC)) >= 0)
                        (void) alert_raise(c, "unit-flapping",
                                           BATON__V1__SEVERITY__SEVERITY_WARNING, unit, host,
                                           summary);
        } else if (change < 0) {
                if (asprintf(&summary, "%s on %s is stable again", unit, host) >= 0)
                        (void) alert_resolve(c, "unit-flapping", unit, host, summary);
        }
}

/* One observation of a unit's restart count: charges automatic restarts of
 * a sharded copy to its budget and raises or resolves unit-flapping. */
static void flap_update(Controller *c, const char *host, struct FlapEntry *e, uint32_t n_restarts,
                        bool active) {
        /* Automatic restarts of a sharded copy spend identifies. */
        if (e->tracker.known && n_restarts > e->tracker.last_restarts)
                shards_charge_restarts(c, host, e->unit, n_restarts - e->tracker.last_restarts);
        flap_alert(c, host, e->unit,
                   flap_observe(&e->tracker, n_restarts, active, now_monotonic_usec(), FLAP_WINDOW,
                                FLAP_THRESHOLD));
}

/* A unit no longer reported (removed from the host) stops flapping there. */
static void flap_forget(Controller *c, const char *host, struct FlapEntry *e) {
        if (e->tracker.flapping)
                flap_alert(c, host, e->unit, -1);
        free(e->unit);
}

/* v->flaps and v->units are sorted by unit name: a lookup is a binary
 * search, so a heartbeat or event costs O(log n) per unit, never O(n). */
static size_t flap_position(const HostView *v, const char *unit, bool *ret_found) {
        size_t lo = 0, hi = v->n_flaps;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int k = strcmp(v->flaps[mid].unit, unit);
                if (k == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (k < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = false;
        return lo;
}

/* A unit event: the one unit's entry, inserted in order when new. */
static void observe_flap(Controller *c, const char *host, HostView *v, const char *unit,
                         uint32_t n_restarts, bool active) {
        struct FlapEntry *p;
        bool found;
        size_t i = flap_position(v, unit, &found);

        if (!found) {
                char *name = strdup(unit);

                p = name ? realloc(v->flaps, (v->n_flaps + 1) * sizeof(*p)) : NULL;
                if (!p) {
                        free(name);
                        return;
                }
                v->flaps = p;
                memmove(&v->flaps[i + 1], &v->flaps[i], (v->n_flaps - i) * sizeof(*p));
                v->flaps[i] = (struct FlapEntry){ .unit = name };
                v->n_flaps++;
        }
        flap_update(c, host, &v->flaps[i], n_restarts, active);
}

static int observed_unit_cmp(const void *a, const void *b) {
        return strcmp(((const struct ObservedUnitState *) a)->name,
                      ((const struct ObservedUnitState *) b)->name);
}

/* A heartbeat lists every unit: the flap entries follow it in one merge of
 * two sorted lists (v->units, already sorted, and the old entries). */
static void observe_flaps(Controller *c, const char *host, HostView *v) {
        struct FlapEntry *next = calloc(v->n_units + 1, sizeof(struct FlapEntry));
        size_t j = 0, n = 0;

        if (!next)
                return; /* keep the old entries; the next heartbeat retries */
        for (size_t i = 0; i < v->n_units; i++) {
                const struct ObservedUnitState *u = &v->units[i];
                int k = 1;

                while (j < v->n_flaps && (k = strcmp(v->flaps[j].unit, u->name)) < 0)
                        flap_forget(c, host, &v->flaps[j++]);
                if (j < v->n_flaps && k == 0)
                        next[n] = v->flaps[j++];
                else {
                        next[n] = (struct FlapEntry){ .unit = strdup(u->name) };
                        if (!next[n].unit)
                                continue;
                }
                flap_update(c, host, &next[n++], u->n_restarts, streq(u->active_state, "active"));
        }
        while (j < v->n_flaps)
                flap_forget(c, host, &v->flaps[j++]);
        free(v->flaps);
        v->flaps = next;
        v->n_flaps = n;
}

const struct ObservedUnitState *host_view_unit(const HostView *v, const char *unit) {
        size_t lo = 0, hi = v ? v->n_units : 0;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int k = strcmp(v->units[mid].name, unit);
                if (k == 0)
                        return &v->units[mid];
                if (k < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

/* ---- hosts --------------------------------------------------------------- */

int controller_persist_host(Controller *c, Host *h) {
        HostView *v = h->userdata;
        int r;

        if (!v)
                return 0;
        r = store_upsert_host(c->store, &(StoreHost){
                                                .id = h->id,
                                                .alive = h->alive,
                                                .drained = h->drained,
                                                .first_seen_us = v->first_seen_us,
                                                .last_seen_us = v->last_seen_us,
                                                .state_since_us = v->state_since_us,
                                                .boot_id = v->boot_id,
                                                .agent_version = v->agent_version,
                                                .labels = v->labels,
                                        });
        if (r < 0) {
                c->counters.store_errors++;
                return log_warning_errno(r, "Failed to store host %s: %s", h->id,
                                         store_error(c->store));
        }
        v->dirty = false;
        return 0;
}

static void on_transition(Controller *c, const HostTransition *t) {
        Host *h = host_table_get(&c->hosts, t->id);
        HostView *v = h ? h->userdata : NULL;
        uint64_t now = now_realtime_usec();
        _cleanup_free_ char *summary = NULL;
        char since[DURATION_MAX_LEN];

        if (!h)
                return;
        if (v) {
                if (t->from != _HOST_STATE_INVALID && v->state_since_us > 0 &&
                    now > v->state_since_us)
                        duration_format(since, sizeof(since),
                                        (now - v->state_since_us) / USEC_PER_MSEC * USEC_PER_MSEC);
                else
                        strcpy(since, "0");
                v->state_since_us = now;
        }
        (void) controller_persist_host(c, h);

        /* Where instances may run changed: re-place. A host that comes back
         * is sent its current Placement by that reconcile even if unchanged,
         * which stops what moved away meanwhile. */
        if (v && t->to != HOST_DOWN)
                v->resend = true;
        (void) fleet_reconcile(c, t->to == HOST_DOWN ? "host down" : "host up");

        switch (t->to) {
        case HOST_DOWN: {
                char timeout[DURATION_MAX_LEN];
                duration_format(timeout, sizeof(timeout), c->hosts.timeout);
                if (asprintf(&summary, "host %s is down: no heartbeat for %s", t->id, timeout) < 0)
                        return;
                (void) alert_raise(c, "host-down", BATON__V1__SEVERITY__SEVERITY_CRITICAL, NULL,
                                   t->id, summary);
                break;
        }
        case HOST_UP:
        case HOST_DRAINED:
                if (t->from == HOST_DOWN) {
                        if (asprintf(&summary, "host %s is up again after %s down", t->id, since) <
                            0)
                                return;
                        (void) alert_resolve(c, "host-down", NULL, t->id, summary);
                        (void) alert_notice(c, "host-up", NULL, t->id, summary);
                } else if (t->from == _HOST_STATE_INVALID) {
                        if (asprintf(&summary, "host %s joined", t->id) < 0)
                                return;
                        (void) alert_notice(c, "host-up", NULL, t->id, summary);
                }
                break;
        default:
                break;
        }
}

/* ---- liveness, judged as of what has been read ----------------------------
 *
 * A heartbeat waiting in the controller's queue proves its host alive just
 * as one already read does. So hosts are not judged by the clock but by the
 * horizon: the send time of the newest marker the controller published to
 * its own status queue and has read back, before which it has read
 * everything. A controller that falls behind (a burst, a slow disk, a
 * flooding host) judges the world as it was when it is reading, so it never
 * declares a host down for its own lag; a host that really stopped is
 * declared down one timeout after its last heartbeat, as of the horizon. */

static usec_t marker_interval(const Controller *c) {
        return MIN(MAX(c->config.host_timeout / 10, 100 * USEC_PER_MSEC), USEC_PER_SEC);
}

static void judge_hosts(Controller *c) {
        HostTransition tr[64];
        size_t n;

        if (c->blind || c->horizon == 0)
                return;
        do {
                n = host_table_expire(&c->hosts, c->horizon, tr, ELEMENTSOF(tr));
                for (size_t i = 0; i < n; i++)
                        on_transition(c, &tr[i]);
        } while (n == ELEMENTSOF(tr));
}

static void on_marker_timer(uv_timer_t *t) {
        Controller *c = t->data;
        Baton__V1__ControllerMarker mk = BATON__V1__CONTROLLER_MARKER__INIT;
        int r;

        if (c->blind || c->stopping)
                return;
        mk.controller_id = c->config.id;
        mk.nonce = c->marker_nonce;
        mk.seq = ++c->marker_seq;
        mk.sent_mono_us = now_monotonic_usec();
        r = controller_publish(c, "", TOPOLOGY_QUEUE_CONTROLLER, &mk.base,
                               &(PublishOptions){ .flags = BROKER_PUBLISH_NO_RETRY });
        if (r < 0)
                log_debug("Failed to publish a marker: %s", STRERROR(r));
}

static void handle_marker(Controller *c, const BrokerMessage *m) {
        static const ProtobufCMessageDescriptor *const marker_type[] = {
                &baton__v1__controller_marker__descriptor,
        };
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL;
        const Baton__V1__ControllerMarker *mk;
        usec_t now = now_monotonic_usec(), lag;
        int r;

        r = codec_decode(m->body, m->body_len, marker_type, ELEMENTSOF(marker_type), m->type, NULL,
                         &d, &error);
        if (r < 0) {
                controller_refuse(c, m, r == -EPROTOTYPE ? REFUSE_WRONG_TYPE : REFUSE_MALFORMED,
                                  error ? error : STRERROR(r));
                return;
        }
        mk = (const Baton__V1__ControllerMarker *) d.body;
        (void) broker_ack(c->broker, m->delivery_tag);
        /* Another controller's, or an earlier run's: not a statement about us. */
        if (!streq(mk->nonce, c->marker_nonce) || mk->sent_mono_us <= c->horizon ||
            mk->sent_mono_us > now)
                return;
        c->horizon = mk->sent_mono_us;
        lag = now - c->horizon;
        c->status_lag = lag;
        if (lag > c->config.host_timeout / 2 && now - c->lag_logged >= 60 * USEC_PER_SEC) {
                log_warning("Reading status %.1fs behind; hosts are judged as of then.",
                            (double) lag / USEC_PER_SEC);
                c->lag_logged = now;
        }
        judge_hosts(c);
}

/* An agent refuses commands from an epoch below the highest it has seen,
 * and ignores a Placement not newer than the one it applied. A controller
 * whose database was restored from a backup may stand below what agents
 * saw (two or more restarts since the backup), or reuse an epoch another
 * run of it already used (one restart: the agent applied a generation of
 * "our" epoch that we never sent). Either way it rises above, durably, and
 * sends every host its Placement again under the new epoch. A claim far
 * above our epoch is not believed: no run of this controller made it. */
#define EPOCH_JUMP_MAX (UINT64_C(1) << 20)

static void learn_epoch(Controller *c, Host *h) {
        HostView *v = h->userdata;
        uint64_t next;
        int r;

        if (v->max_epoch_seen > c->epoch && v->max_epoch_seen - c->epoch > EPOCH_JUMP_MAX) {
                log_warning("Host %s claims to have seen epoch %" PRIu64
                            ", far above ours (%" PRIu64 "); not believed, ignoring.",
                            h->id, v->max_epoch_seen, c->epoch);
                return;
        }
        if (v->max_epoch_seen > c->epoch)
                next = v->max_epoch_seen + 1;
        else if (v->applied_epoch == c->epoch && v->applied_generation > v->generation)
                next = c->epoch + 1;
        else
                return;
        r = store_raise_epoch(c->store, next);
        if (r < 0) {
                c->counters.store_errors++;
                log_error_errno(r,
                                "Failed to raise the epoch to %" PRIu64 ": %s; hosts refuse our "
                                "commands until it is raised.",
                                next, store_error(c->store));
                return;
        }
        log_notice("Host %s has seen epoch %" PRIu64 " (applied %" PRIu64 "/%" PRIu64
                   ", we sent generation %" PRIu64 " in epoch %" PRIu64
                   "): this database was restored or reused. Raised the epoch to %" PRIu64
                   " and sending every host its placement again.",
                   h->id, v->max_epoch_seen, v->applied_epoch, v->applied_generation, v->generation,
                   c->epoch, next);
        c->epoch = next;
        for (size_t i = 0; i < c->hosts.n_hosts; i++) {
                HostView *o = c->hosts.hosts[i]->userdata;
                if (o)
                        o->resend = true;
        }
        fleet_sync(c);
}

static void labels_to_text(const Baton__V1__Heartbeat *hb, char **ret) {
        _cleanup_free_ char *s = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&s, &len);
        if (!f)
                return;
        for (size_t i = 0; i < hb->n_labels; i++)
                fprintf(f, "%s%s=%s", i ? " " : "", hb->labels[i]->key, hb->labels[i]->value);
        if (fclose(f) == 0)
                *ret = TAKE_PTR(s);
}

static void handle_heartbeat(Controller *c, const Baton__V1__Heartbeat *hb) {
        HostTransition t;
        HostView *v;
        Host *h;
        uint64_t now = now_realtime_usec();
        _cleanup_free_ char *labels = NULL;
        size_t keep;
        int r;

        c->counters.heartbeats++;
        r = host_table_heartbeat(&c->hosts, hb->host, now_monotonic_usec(), &h, &t);
        if (r < 0) {
                log_warning_errno(r, "Failed to record heartbeat of %s: %s, ignoring.", hb->host,
                                  STRERROR(r));
                return;
        }
        v = host_view_of(h);
        if (!v)
                return;

        if (v->first_seen_us == 0)
                v->first_seen_us = now;
        if (v->last_seen_us < now)
                v->last_seen_us = now;
        if (hb->boot_id && v->boot_id && !streq(v->boot_id, hb->boot_id))
                log_notice("Host %s rebooted (boot id %s → %s).", hb->host, v->boot_id,
                           hb->boot_id);
        update_str(&v->boot_id, hb->boot_id);
        update_str(&v->agent_version, hb->agent_version);
        update_str(&v->systemd_version, hb->systemd_version);
        update_str(&v->system_state, hb->system_state);
        labels_to_text(hb, &labels);
        update_str(&v->labels, labels);
        if (hb->capacity) {
                v->cores = hb->capacity->cores;
                v->memory_total = hb->capacity->memory_total_bytes;
                v->memory_available = hb->capacity->memory_available_bytes;
                v->load1_x100 = hb->capacity->load1_x100;
        }
        /* Sorted by name, without duplicates: lookups are binary searches
         * and a hostile list of n units costs O(n log n), not O(n²). */
        observed_units_clear(v);
        v->units = calloc(hb->n_units + 1, sizeof(*v->units));
        for (size_t i = 0; v->units && i < hb->n_units; i++) {
                const Baton__V1__UnitState *u = hb->units[i];
                struct ObservedUnitState o = {
                        .name = text_sanitize(u->name),
                        .active_state = text_sanitize(u->active_state),
                        .sub_state = text_sanitize(u->sub_state),
                        .n_restarts = u->n_restarts,
                        .main_pid = u->main_pid,
                        .state_change_us = u->state_change_us,
                };
                if (!o.name || !o.active_state || !o.sub_state) {
                        free(o.name);
                        free(o.active_state);
                        free(o.sub_state);
                        continue;
                }
                v->units[v->n_units++] = o;
        }
        if (v->units)
                qsort(v->units, v->n_units, sizeof(*v->units), observed_unit_cmp);
        keep = 0;
        for (size_t i = 0; i < v->n_units; i++) {
                if (keep > 0 && streq(v->units[keep - 1].name, v->units[i].name)) {
                        free(v->units[i].name);
                        free(v->units[i].active_state);
                        free(v->units[i].sub_state);
                } else
                        v->units[keep++] = v->units[i];
        }
        v->n_units = keep;
        v->units_total = (uint32_t) v->n_units;
        v->units_active = 0;
        for (size_t i = 0; i < v->n_units; i++)
                v->units_active += streq(v->units[i].active_state, "active");
        observe_flaps(c, hb->host, v);
        v->applied_generation = hb->applied_generation;
        v->applied_epoch = hb->applied_epoch;
        v->max_epoch_seen = hb->max_epoch_seen;
        v->dirty = true;
        learn_epoch(c, h);

        if (r > 0)
                on_transition(c, &t);
        else
                fleet_check_host(c, h);
}

/* A unit changed on a host: update what `status` shows at once, and alert
 * on failure. */
static void handle_unit_event(Controller *c, const Baton__V1__UnitEvent *ev) {
        Host *h = host_table_get(&c->hosts, ev->host);
        HostView *v = h ? h->userdata : NULL;
        const Baton__V1__UnitState *u = ev->unit;
        _cleanup_free_ char *summary = NULL, *name = NULL;
        struct ObservedUnitState *o;

        if (!v || !u)
                return;
        name = text_sanitize(u->name);
        if (!name)
                return;
        o = (struct ObservedUnitState *) host_view_unit(v, name);
        if (o) {
                char *a = text_sanitize(u->active_state), *s = text_sanitize(u->sub_state);
                if (a && s) {
                        free(o->active_state);
                        free(o->sub_state);
                        o->active_state = a;
                        o->sub_state = s;
                        o->n_restarts = u->n_restarts;
                        o->main_pid = u->main_pid;
                        o->state_change_us = u->state_change_us;
                } else {
                        free(a);
                        free(s);
                }
        }
        observe_flap(c, ev->host, v, name, u->n_restarts, streq(u->active_state, "active"));
        if (streq(u->active_state, "failed")) {
                if (asprintf(&summary, "%s failed on %s (%s)", u->name, ev->host,
                             strna(u->result)) >= 0)
                        (void) alert_raise(c, "unit-failed", BATON__V1__SEVERITY__SEVERITY_WARNING,
                                           u->service, ev->host, summary);
        } else if (streq(u->active_state, "active")) {
                if (asprintf(&summary, "%s is active again on %s", u->name, ev->host) >= 0)
                        (void) alert_resolve(c, "unit-failed", u->service, ev->host, summary);
        }
}

static void handle_shard_report(Controller *c, const Baton__V1__ShardReport *rep) {
        Host *h = host_table_get(&c->hosts, rep->host);
        HostView *v = h ? h->userdata : NULL;

        if (v)
                shards_handle_report(c, v, rep);
}

/* An agent's result: refusals and failures are alerted (command-refused, per
 * host), a clean result resolves that. */
static void handle_command_result(Controller *c, const Baton__V1__CommandResult *res) {
        _cleanup_free_ char *what = NULL, *summary = NULL;

        if (res->command_case == BATON__V1__COMMAND_RESULT__COMMAND_RESTART_ID)
                (void) asprintf(&what, "restart %s", res->restart_id);
        else
                (void) asprintf(&what, "placement %" PRIu64 "/%" PRIu64, res->epoch,
                                res->generation);
        if (res->ok) {
                log_debug("%s on %s: ok.", strna(what), res->host);
                if (asprintf(&summary, "%s applied cleanly on %s", strna(what), res->host) >= 0)
                        (void) alert_resolve(c, "command-refused", NULL, res->host, summary);
                return;
        }
        log_warning("%s on %s: %s", strna(what), res->host, strna(res->error));
        /* A superseded or already-applied Placement is not a problem. */
        if (strstr(strempty(res->error), "superseded") || strstr(strempty(res->error), "older"))
                return;
        {
                _cleanup_free_ char *details = NULL;
                size_t len = 0, shown = 0;
                FILE *f = open_memstream(&details, &len);

                /* Name what went wrong, not just how much. */
                for (size_t i = 0; f && i < res->n_units && shown < 3; i++)
                        if (!res->units[i]->ok) {
                                fprintf(f, "; %s %s: %s", res->units[i]->unit,
                                        res->units[i]->action, res->units[i]->result);
                                shown++;
                        }
                if (f)
                        fclose(f);
                if (asprintf(&summary, "%s on %s: %s%s", strna(what), res->host, strna(res->error),
                             strempty(details)) >= 0)
                        (void) alert_raise(c, "command-refused",
                                           BATON__V1__SEVERITY__SEVERITY_WARNING, NULL, res->host,
                                           summary);
        }
}

/* ---- status consumer ----------------------------------------------------- */

void controller_refuse(Controller *c, const BrokerMessage *m, RefuseReason reason,
                       const char *detail) {
        c->counters.refused[reason]++;
        log_fields(LOG_WARNING, 0,
                   LOG_FIELDS({ "BATON_QUEUE", strempty(m->queue) },
                              { "BATON_REFUSED", refuse_reason_to_string(reason) }),
                   "Refusing message %s (type %s, routing key %s) on %s: %s; dead-lettered.",
                   strna(m->message_id), strna(m->type), strna(m->routing_key), strna(m->queue),
                   detail);
        (void) broker_reject(c->broker, m->delivery_tag, false);
}

static const ProtobufCMessageDescriptor *const status_types[] = {
        &baton__v1__heartbeat__descriptor,
        &baton__v1__unit_event__descriptor,
        &baton__v1__shard_report__descriptor,
        &baton__v1__command_result__descriptor,
};

static const char *const status_kinds[] = {
        TOPOLOGY_KIND_HEARTBEAT,
        TOPOLOGY_KIND_UNIT,
        TOPOLOGY_KIND_SHARD,
        TOPOLOGY_KIND_RESULT,
};

/* Every status body names its host as its first field. */
static const char *status_host(const CodecDecoded *d) {
        if (d->descriptor == &baton__v1__heartbeat__descriptor)
                return ((Baton__V1__Heartbeat *) d->body)->host;
        if (d->descriptor == &baton__v1__unit_event__descriptor)
                return ((Baton__V1__UnitEvent *) d->body)->host;
        if (d->descriptor == &baton__v1__shard_report__descriptor)
                return ((Baton__V1__ShardReport *) d->body)->host;
        return ((Baton__V1__CommandResult *) d->body)->host;
}

/* status_rate_limit per host, judged before decoding: the routing key
 * names the host, and the broker's topic permissions make sure an agent can
 * only use its own. Beyond the limit a heartbeat still proves the host alive
 * (cheap) and everything else is dropped and counted, so one chatty or
 * hostile host cannot delay the others' heartbeats. Returns true when the
 * message was dealt with here. */
static bool status_over_limit(Controller *c, const BrokerMessage *m) {
        const char *key = strempty(m->routing_key), *dot = strchr(key, '.');
        char host[TOPOLOGY_HOST_ID_MAX + 1];
        /* Each KiB costs as much as a message: a few huge messages cannot
         * do what many small ones may not. The burst lets one message of the
         * largest size through a full bucket. */
        RateLimit l = { .rate = (uint32_t) c->config.status_rate,
                        .burst = (uint32_t) c->config.status_rate * 10 +
                                 CODEC_MAX_MESSAGE_SIZE / 1024 + 1 };
        uint32_t cost = 1 + (uint32_t) (MIN(m->body_len, (size_t) CODEC_MAX_MESSAGE_SIZE) / 1024);
        usec_t now = now_monotonic_usec();
        HostTransition t;
        HostView *v;
        Host *h;
        int r;

        if (!dot || (size_t) (dot - key) > TOPOLOGY_HOST_ID_MAX)
                return false; /* decoded and refused as a mismatch below */
        memcpy(host, key, (size_t) (dot - key));
        host[dot - key] = '\0';
        h = host_table_get(&c->hosts, host);
        v = h ? h->userdata : NULL;
        if (!v || token_bucket_take_n(&v->status_bucket, &l, now, cost))
                return false;

        v->status_dropped++;
        c->counters.refused[REFUSE_RATE_LIMITED]++;
        if (now - v->status_dropped_logged >= 60 * USEC_PER_SEC) {
                log_warning("Host %s sends more than %" PRIu64 " status messages per second "
                            "(status_rate_limit): dropping the excess (%" PRIu64 " so far), "
                            "heartbeats only keep it alive.",
                            host, c->config.status_rate, v->status_dropped);
                v->status_dropped_logged = now;
        }
        if (streq(dot + 1, TOPOLOGY_KIND_HEARTBEAT)) {
                r = host_table_heartbeat(&c->hosts, host, now, &h, &t);
                if (r > 0)
                        on_transition(c, &t);
        }
        (void) broker_ack(c->broker, m->delivery_tag);
        return true;
}

static void on_status(Broker *b, const BrokerMessage *m, void *userdata) {
        Controller *c = userdata;
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL, *expected_key = NULL;
        const char *host;
        size_t i;
        int r;

        c->counters.status_received++;
        /* Never read (common/broker.c): refused for its size before anything else. */
        if (m->oversized) {
                _cleanup_free_ char *why = NULL;
                if (asprintf(&why, "message of %zu bytes exceeds the limit of %u bytes",
                             m->body_len, (unsigned) CODEC_MAX_MESSAGE_SIZE) < 0)
                        why = NULL;
                controller_refuse(c, m, REFUSE_MALFORMED, why ? why : "oversized");
                return;
        }
        /* The controller's own marker: only it may publish through the
         * default exchange to this queue. */
        if (isempty(m->exchange) && streq_ptr(m->routing_key, TOPOLOGY_QUEUE_CONTROLLER)) {
                handle_marker(c, m);
                return;
        }
        if (status_over_limit(c, m))
                return;
        r = codec_decode(m->body, m->body_len, status_types, ELEMENTSOF(status_types), m->type,
                         NULL, &d, &error);
        if (r < 0) {
                controller_refuse(c, m, r == -EPROTOTYPE ? REFUSE_WRONG_TYPE : REFUSE_MALFORMED,
                                  error ? error : strerror(-r));
                return;
        }

        for (i = 0; i < ELEMENTSOF(status_types); i++)
                if (d.descriptor == status_types[i])
                        break;
        assert(i < ELEMENTSOF(status_types));

        host = status_host(&d);
        if (!topology_host_id_is_valid(host)) {
                controller_refuse(c, m, REFUSE_MALFORMED, "invalid host id in body");
                return;
        }
        /* The routing key is what the broker's permissions restrict per agent
         * user, so a body must agree with it and with its envelope. */
        if (asprintf(&expected_key, "%s.%s", host, status_kinds[i]) < 0) {
                (void) broker_reject(c->broker, m->delivery_tag, true);
                return;
        }
        if (!streq_ptr(m->routing_key, expected_key) || !streq_ptr(d.envelope->sender, host)) {
                _cleanup_free_ char *why = NULL;
                if (asprintf(&why, "body is %s from host '%s' (sender '%s'), routing key '%s'",
                             d.descriptor->name, host, strna(d.envelope->sender),
                             strna(m->routing_key)) < 0)
                        why = NULL;
                controller_refuse(c, m, REFUSE_MISMATCH, why ? why : "mismatch");
                return;
        }

        if (d.descriptor == &baton__v1__heartbeat__descriptor)
                handle_heartbeat(c, (Baton__V1__Heartbeat *) d.body);
        else if (d.descriptor == &baton__v1__unit_event__descriptor)
                handle_unit_event(c, (Baton__V1__UnitEvent *) d.body);
        else if (d.descriptor == &baton__v1__command_result__descriptor)
                handle_command_result(c, (Baton__V1__CommandResult *) d.body);
        else
                handle_shard_report(c, (Baton__V1__ShardReport *) d.body);

        (void) broker_ack(b, m->delivery_tag);
}

static void on_rpc(Broker *b, const BrokerMessage *m, void *userdata) {
        rpc_handle(userdata, m);
}

static void on_broker_state(Broker *b, BrokerState state, const char *reason, void *userdata) {
        Controller *c = userdata;

        switch (state) {
        case BROKER_CONNECTED:
                log_info("Connected to the broker as %s, vhost %s.", strna(broker_get_user(b)),
                         strna(broker_get_vhost(b)));
                notifier_status(&c->notifier, "connected to the broker");
                /* Hosts get a whole timeout to report in from now on. */
                c->blind = false;
                host_table_grace(&c->hosts, now_monotonic_usec());
                /* Re-assert every host's Placement (idempotent on the agents). */
                (void) fleet_reconcile(c, "connected");
                break;
        case BROKER_DISCONNECTED:
                log_warning("Lost the broker: %s; reconnecting. Hosts are not judged "
                            "meanwhile.",
                            strna(reason));
                notifier_status(&c->notifier, "broker unreachable, reconnecting");
                c->blind = true;
                break;
        default:
                break;
        }
}

/* ---- batching ------------------------------------------------------------ */

static void flush_hosts(Controller *c) {
        size_t n = 0;
        int r;

        for (size_t i = 0; i < c->hosts.n_hosts; i++) {
                HostView *v = c->hosts.hosts[i]->userdata;
                if (v && v->dirty)
                        n++;
        }
        if (n == 0)
                return;

        /* One transaction (one fsync) for all hosts seen since the last flush. */
        r = store_begin(c->store);
        if (r < 0) {
                c->counters.store_errors++;
                log_warning_errno(r, "Failed to begin flush: %s, retrying later.",
                                  store_error(c->store));
                return;
        }
        for (size_t i = 0; i < c->hosts.n_hosts; i++) {
                HostView *v = c->hosts.hosts[i]->userdata;
                if (v && v->dirty)
                        (void) controller_persist_host(c, c->hosts.hosts[i]);
        }
        r = store_commit(c->store);
        if (r < 0) {
                c->counters.store_errors++;
                log_warning_errno(r, "Failed to commit flush: %s, retrying later.",
                                  store_error(c->store));
                for (size_t i = 0; i < c->hosts.n_hosts; i++) {
                        HostView *v = c->hosts.hosts[i]->userdata;
                        if (v)
                                v->dirty = true;
                }
        }
}

static void on_flush(uv_timer_t *t) {
        flush_hosts(t->data);
}

/* ---- start and stop ------------------------------------------------------ */

static int restore_host(const StoreHost *sh, void *userdata) {
        Controller *c = userdata;
        HostView *v;
        Host *h;
        int r;

        r = host_table_restore(&c->hosts, sh->id, sh->alive, sh->drained, now_monotonic_usec(), &h);
        if (r < 0)
                return r;
        v = host_view_of(h);
        if (!v)
                return -ENOMEM;
        v->first_seen_us = sh->first_seen_us;
        v->last_seen_us = sh->last_seen_us;
        v->state_since_us = sh->state_since_us;
        update_str(&v->boot_id, sh->boot_id);
        update_str(&v->agent_version, sh->agent_version);
        update_str(&v->labels, sh->labels);
        return 0;
}

static int restore_alert(const StoreAlert *a, void *userdata) {
        return remember_alert(userdata, a->id, a->kind, a->severity, a->service, a->host,
                              a->summary, a->raised_at_us);
}

static void on_signal(uv_signal_t *s, int signum) {
        Controller *c = s->data;

        log_info("Received %s, stopping.", strsignal(signum));
        controller_stop(c);
}

int controller_start(Controller *c, uv_loop_t *loop, ControllerConfig *config) {
        _cleanup_free_ char *error = NULL;
        BrokerConfig bc;
        int r;

        *c = (Controller){
                .loop = loop,
                .config = *config,
                .started_at_us = now_realtime_usec(),
                .blind = true, /* until the first connect */
        };
        *config = (ControllerConfig){ 0 };
        host_table_init(&c->hosts, c->config.host_timeout);

        r = store_open(c->config.database, &c->store, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to open the database: %s",
                                       error ? error : strerror(-r));
        r = store_bump_epoch(c->store, &c->epoch);
        if (r < 0)
                return log_error_errno(r, "Failed to raise the epoch in %s: %s", c->config.database,
                                       store_error(c->store));
        r = store_load_hosts(c->store, restore_host, c);
        if (r < 0)
                return log_error_errno(r, "Failed to load hosts: %s", store_error(c->store));
        r = store_load_alerts(c->store, restore_alert, c);
        if (r < 0)
                return log_error_errno(r, "Failed to load open alerts: %s", store_error(c->store));
        r = fleet_load(c);
        if (r < 0)
                return r;
        r = shards_load(c);
        if (r < 0)
                return r;
        r = rollouts_load(c);
        if (r < 0)
                return r;
        if (!isempty(c->config.signing_key)) {
                _cleanup_free_ char *kerr = NULL;
                r = sign_key_load(c->config.signing_key, &c->signing_key, &kerr);
                if (r < 0)
                        return log_error_errno(r, "Failed to load signing_key: %s",
                                               kerr ? kerr : STRERROR(r));
                c->have_signing_key = true;
        } else
                /* Only reachable with insecure_unsigned = yes (controller-config.c). */
                log_error("INSECURE: no [security] signing_key and insecure_unsigned = yes: "
                          "commands go out unsigned, and agents that verify refuse them. Never "
                          "run it like this outside a test.");
        log_info("Controller %s starting with epoch %" PRIu64 ", %zu known hosts, %zu open alerts.",
                 c->config.id, c->epoch, c->hosts.n_hosts, c->n_alerts);

        broker_config_init(&bc);
        broker_settings_apply(&c->config.broker, &bc);
        bc.connection_name = "baton-controller";
        r = broker_new(loop, &bc, on_broker_state, c, &c->broker);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the broker client: %s", STRERROR(r));
        r = topology_add_common(c->broker);
        if (r >= 0)
                r = topology_add_controller(c->broker, on_status, on_rpc, c);
        if (r < 0)
                return log_error_errno(r, "Failed to declare the topology: %s", STRERROR(r));

        r = random_id(c->marker_nonce);
        if (r < 0)
                return log_error_errno(r, "Failed to make a marker nonce: %s", STRERROR(r));
        if (uv_timer_init(loop, &c->marker_timer) < 0 || uv_timer_init(loop, &c->flush_timer) < 0 ||
            uv_signal_init(loop, &c->sigterm) < 0 || uv_signal_init(loop, &c->sigint) < 0)
                return log_error_errno(-ENOMEM, "Failed to set up event loop handles.");
        c->marker_timer.data = c->flush_timer.data = c->sigterm.data = c->sigint.data = c;
        (void) uv_signal_start(&c->sigterm, on_signal, SIGTERM);
        (void) uv_signal_start(&c->sigint, on_signal, SIGINT);
        (void) uv_timer_start(&c->flush_timer, on_flush, c->config.flush_interval / USEC_PER_MSEC,
                              c->config.flush_interval / USEC_PER_MSEC);
        (void) uv_timer_start(&c->marker_timer, on_marker_timer, marker_interval(c) / USEC_PER_MSEC,
                              marker_interval(c) / USEC_PER_MSEC);
        (void) notifier_init(&c->notifier, loop);

        r = broker_start(c->broker);
        if (r < 0)
                return log_error_errno(r, "Failed to start the broker client: %s", STRERROR(r));

        /* Ready once local state is loaded: a controller whose broker is
         * down still starts (and keeps retrying) rather than failing. */
        notifier_ready(&c->notifier, "running");
        return 0;
}

static void on_broker_closed(void *userdata) {
        Controller *c = userdata;

        c->broker = NULL;
        loop_close_handle((uv_handle_t *) &c->marker_timer);
        loop_close_handle((uv_handle_t *) &c->flush_timer);
        loop_close_handle((uv_handle_t *) &c->rollout_timer);
        loop_close_handle((uv_handle_t *) &c->sigterm);
        loop_close_handle((uv_handle_t *) &c->sigint);
        notifier_done(&c->notifier);
}

void controller_stop(Controller *c) {
        if (c->stopping)
                return;
        c->stopping = true;
        notifier_stopping(&c->notifier);
        if (c->store)
                flush_hosts(c);
        if (c->broker)
                broker_close(c->broker, on_broker_closed, c);
        else
                on_broker_closed(c);
}

void controller_done(Controller *c) {
        for (size_t i = 0; i < c->n_alerts; i++)
                open_alert_done(&c->alerts[i]);
        free(c->alerts);
        for (size_t i = 0; i < c->n_rpc_users; i++)
                free(c->rpc_users[i].user);
        free(c->rpc_users);
        rollouts_done(c);
        shards_done(c);
        fleet_done(c);
        host_table_done(&c->hosts, host_view_free_void);
        c->store = store_close(c->store);
        controller_config_done(&c->config);
}
