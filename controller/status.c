/* SPDX-License-Identifier: MIT */
/* Status in (status.h). */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "log.h"
#include "observe.h"
#include "pipeline.h"
#include "status.h"
#include "status.pb-c.h"
#include "text.h"
#include "topology.h"
#include "util.h"

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

static void ack(Controller *c, const BrokerMessage *m) {
        int r = broker_ack(c->broker, m->delivery_tag);

        /* The channel is gone: the broker redelivers it and it is read again. */
        if (r < 0)
                log_debug("Could not acknowledge message %s: %s", strna(m->message_id),
                          STRERROR(r));
}

/* ---- liveness --------------------------------------------------------------------- */

/* Every host silent for a timeout as of the horizon: one wave, one reconcile. */
static void judge_hosts(Controller *c) {
        HostTransition tr[64];
        usec_t horizon;
        size_t n;

        if (!liveness_horizon(&c->live, &horizon))
                return;
        do {
                n = host_table_expire(&c->model.hosts, horizon, tr, ELEMENTSOF(tr));
                for (size_t i = 0; i < n; i++)
                        pipeline_host_transition(c, &tr[i]);
        } while (n == ELEMENTSOF(tr));
        pipeline_transitions_flush(c);
}

static void handle_marker(Controller *c, const BrokerMessage *m) {
        static const ProtobufCMessageDescriptor *const marker_type[] = {
                &baton__v1__controller_marker__descriptor,
        };
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL;
        int r;

        r = codec_decode(m->body, m->body_len, marker_type, ELEMENTSOF(marker_type), m->type, NULL,
                         &d, &error);
        if (r < 0) {
                intake_refuse(&c->intake, c->broker, m,
                              r == -EPROTOTYPE ? REFUSE_WRONG_TYPE : REFUSE_MALFORMED,
                              error ? error : STRERROR(r));
                return;
        }
        ack(c, m);
        c->intake.markers++;
        if (!liveness_marker_read(&c->live, (const Baton__V1__ControllerMarker *) d.body,
                                  now_monotonic_usec()))
                return;
        if (liveness_take_regained(&c->live))
                host_table_grace(&c->model.hosts, now_monotonic_usec());
        judge_hosts(c);
}

/* ---- reports ---------------------------------------------------------------------- */

static HostModel *host_model_of(Host *h) {
        if (!h->userdata)
                h->userdata = calloc(1, sizeof(HostModel));
        return h->userdata;
}

static int labels_text(const Baton__V1__Heartbeat *hb, char **ret) {
        _cleanup_free_ char *s = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&s, &len);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < hb->n_labels; i++)
                fprintf(f, "%s%s=%s", i ? " " : "", hb->labels[i]->key, hb->labels[i]->value);
        if (fclose(f) != 0)
                return -ENOMEM;
        *ret = TAKE_PTR(s);
        return 0;
}

static UnitReport unit_report(const Baton__V1__UnitState *u) {
        return (UnitReport){
                .name = u->name,
                .active_state = u->active_state,
                .sub_state = u->sub_state,
                .result = u->result,
                .service = u->service,
                .n_restarts = u->n_restarts,
                .main_pid = u->main_pid,
                .state_change_us = u->state_change_us,
        };
}

/* Runs what a report changed as one event; out of memory while folding it
 * in leaves the model consistent, and the next report retries. */
static void run_observed(Controller *c, EventKind kind, const char *host, int r, Observed *o) {
        Event ev = { .kind = kind,
                     .host = host,
                     .units = o->changes,
                     .n_units = o->n_changes,
                     .labels_changed = o->labels_changed };

        if (r < 0)
                log_warning_errno(r, "Failed to take in the %s of %s: %s; the next one retries.",
                                  event_kind_to_string(kind), host, STRERROR(r));
        (void) pipeline_run(c, &ev); /* logs its own failure */
}

static void handle_heartbeat(Controller *c, const Baton__V1__Heartbeat *hb) {
        _cleanup_(observed_done) Observed o = { 0 };
        _cleanup_free_ UnitReport *units = NULL;
        _cleanup_free_ char *labels = NULL, *old_boot = NULL;
        HeartbeatReport rep = {
                .boot_id = hb->boot_id,
                .agent_version = hb->agent_version,
                .systemd_version = hb->systemd_version,
                .system_state = hb->system_state,
                .applied_epoch = hb->applied_epoch,
                .applied_generation = hb->applied_generation,
                .max_epoch_seen = hb->max_epoch_seen,
        };
        HostTransition t;
        HostModel *v;
        Host *h;
        int r, k;

        c->intake.heartbeats++;
        k = host_table_heartbeat(&c->model.hosts, hb->host, now_monotonic_usec(), &h, &t);
        if (k < 0) {
                log_warning_errno(k, "Failed to record the heartbeat of %s: %s", hb->host,
                                  STRERROR(k));
                return;
        }
        v = host_model_of(h);
        if (!v) {
                log_warning("Out of memory recording the heartbeat of %s.", hb->host);
                return;
        }
        if (k > 0)
                pipeline_host_transition(c, &t);

        units = calloc(hb->n_units + 1, sizeof(UnitReport));
        r = units ? labels_text(hb, &labels) : -ENOMEM;
        if (r >= 0) {
                for (size_t i = 0; i < hb->n_units; i++)
                        units[i] = unit_report(hb->units[i]);
                rep.units = units;
                rep.n_units = hb->n_units;
                rep.labels = labels;
                if (hb->capacity) {
                        rep.have_capacity = true;
                        rep.cores = hb->capacity->cores;
                        rep.memory_total = hb->capacity->memory_total_bytes;
                        rep.memory_available = hb->capacity->memory_available_bytes;
                        rep.load1_x100 = hb->capacity->load1_x100;
                }
                if (v->boot_id && !isempty(hb->boot_id) && !streq(v->boot_id, hb->boot_id))
                        old_boot = strdup(v->boot_id);
                r = observe_heartbeat(v, &rep, now_monotonic_usec(), now_realtime_usec(), &o);
                if (old_boot)
                        log_notice("Host %s rebooted (boot id %s → %s).", h->id, old_boot,
                                   strna(v->boot_id));
        }
        run_observed(c, EVENT_HEARTBEAT, h->id, r, &o);
}

static void handle_unit_event(Controller *c, const Baton__V1__UnitEvent *ev) {
        _cleanup_(observed_done) Observed o = { 0 };
        HostModel *v = model_host(&c->model, ev->host);
        UnitReport u;
        int r;

        /* A host that never sent a heartbeat has nothing placed on it. */
        if (!v || !ev->unit)
                return;
        u = unit_report(ev->unit);
        r = observe_unit(v, &u, now_monotonic_usec(), &o);
        run_observed(c, EVENT_UNITS, ev->host, r, &o);
}

static void handle_shard_report(Controller *c, const Baton__V1__ShardReport *rep) {
        _cleanup_(observed_done) Observed o = { 0 };
        _cleanup_free_ CopyReport *copies = NULL;
        HostModel *v = model_host(&c->model, rep->host);
        int r;

        if (!v)
                return;
        copies = calloc(rep->n_instances + 1, sizeof(CopyReport));
        if (!copies) {
                log_warning("Out of memory taking in the shard report of %s.", rep->host);
                return;
        }
        for (size_t i = 0; i < rep->n_instances; i++) {
                const Baton__V1__ShardInstanceReport *in = rep->instances[i];
                copies[i] = (CopyReport){
                        .unit = in->unit,
                        .service = in->service,
                        .instance = in->instance,
                        .epoch = in->shard_epoch,
                        .shard_count = in->shard_count,
                        .assigned = in->assigned,
                        .ready = in->ready,
                        .connecting = in->connecting,
                        .failed = in->failed,
                        .active_state = in->active_state,
                };
        }
        r = observe_copies(&c->model, rep->host, v, copies, rep->n_instances, now_realtime_usec(),
                           &o);
        /* Right after a move or a reshard step a host may still report what
         * it ran before: common, so not a warning, but counted. */
        if (o.refused_copies > 0) {
                intake_count(&c->intake, REFUSE_NOT_OWNED, o.refused_copies);
                log_debug("Shard report from %s: %zu copies or shard claims not placed there, "
                          "ignored or cut to what was.",
                          rep->host, o.refused_copies);
        }
        if (o.malformed_copies > 0)
                log_warning("Shard report from %s: %zu copies do not parse; ignored.", rep->host,
                            o.malformed_copies);
        run_observed(c, EVENT_SHARD_REPORT, rep->host, r, &o);
}

/* An agent's result: refusals and failures become command-refused alerts,
 * a clean result resolves that. Names what went wrong, not just how much. */
static void handle_command_result(Controller *c, const Baton__V1__CommandResult *res) {
        _cleanup_free_ char *what = NULL, *raw_details = NULL, *details = NULL, *error = NULL;
        Event ev = { .kind = EVENT_RESULT, .host = res->host, .ok = res->ok };
        size_t len = 0, shown = 0;
        FILE *f;
        int r;

        if (res->command_case == BATON__V1__COMMAND_RESULT__COMMAND_RESTART_ID)
                r = asprintf(&what, "restart %s", res->restart_id);
        else
                r = asprintf(&what, "placement %" PRIu64 "/%" PRIu64, res->epoch, res->generation);
        f = r >= 0 ? open_memstream(&raw_details, &len) : NULL;
        for (size_t i = 0; f && i < res->n_units && shown < 3; i++)
                if (!res->units[i]->ok) {
                        fprintf(f, "; %s %s: %s", res->units[i]->unit, res->units[i]->action,
                                res->units[i]->result);
                        shown++;
                }
        if (!f || fclose(f) != 0) {
                log_warning("Out of memory taking in a result of %s.", res->host);
                return;
        }
        /* What the agent and its workloads wrote reaches terminals. */
        error = text_sanitize(strempty(res->error));
        details = text_sanitize(raw_details);
        if (!error || !details) {
                log_warning("Out of memory taking in a result of %s.", res->host);
                return;
        }
        if (res->ok)
                log_debug("%s on %s: ok.", what, res->host);
        else
                log_warning("%s on %s: %s%s", what, res->host, error, details);
        ev.restart = res->command_case == BATON__V1__COMMAND_RESULT__COMMAND_RESTART_ID;
        ev.what = what;
        ev.error = error;
        ev.details = details;
        (void) pipeline_run(c, &ev); /* logs its own failure */
}

/* ---- the consumer ----------------------------------------------------------------- */

/* status_rate_limit, judged before decoding: the routing key names the host,
 * and the broker's topic permissions make sure an agent can only use its
 * own. Beyond the limit a heartbeat still proves the host alive (cheap) and
 * everything else is dropped and counted, so one chatty or hostile host
 * cannot delay the others' heartbeats. Returns true when the message was
 * dealt with here. */
static bool over_limit(Controller *c, const BrokerMessage *m) {
        char host[TOPOLOGY_HOST_ID_MAX + 1];
        usec_t now = now_monotonic_usec();
        HostTransition t;
        HostModel *v;
        Host *h;

        if (!intake_status_host(m, host, sizeof(host)))
                return false; /* decoded and refused as a mismatch below */
        h = host_table_get(&c->model.hosts, host);
        v = h ? h->userdata : NULL;
        if (!v || intake_status_allowed(&c->intake, host, v, m->body_len, now))
                return false;
        if (streq(strchr(m->routing_key, '.') + 1, TOPOLOGY_KIND_HEARTBEAT) &&
            host_table_heartbeat(&c->model.hosts, host, now, &h, &t) > 0)
                pipeline_host_transition(c, &t);
        ack(c, m);
        return true;
}

void status_on_message(Broker *b, const BrokerMessage *m, void *userdata) {
        Controller *c = userdata;
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL, *expected_key = NULL;
        const char *host;
        size_t i;
        int r;

        c->intake.status_received++;
        /* Never read (common/io/broker.c): refused for its size before anything else. */
        if (m->oversized) {
                _cleanup_free_ char *why = NULL;
                if (asprintf(&why, "message of %zu bytes exceeds the limit of %u bytes",
                             m->body_len, (unsigned) CODEC_MAX_MESSAGE_SIZE) < 0)
                        why = NULL;
                intake_refuse(&c->intake, b, m, REFUSE_MALFORMED, why ? why : "oversized");
                return;
        }
        /* The controller's own marker: only it may publish through the
         * default exchange to this queue. */
        if (isempty(m->exchange) && streq_ptr(m->routing_key, TOPOLOGY_QUEUE_CONTROLLER)) {
                handle_marker(c, m);
                return;
        }
        if (over_limit(c, m))
                return;
        r = codec_decode(m->body, m->body_len, status_types, ELEMENTSOF(status_types), m->type,
                         NULL, &d, &error);
        if (r < 0) {
                intake_refuse(&c->intake, b, m,
                              r == -EPROTOTYPE ? REFUSE_WRONG_TYPE : REFUSE_MALFORMED,
                              error ? error : STRERROR(r));
                return;
        }
        for (i = 0; i < ELEMENTSOF(status_types); i++)
                if (d.descriptor == status_types[i])
                        break;
        assert(i < ELEMENTSOF(status_types));

        host = status_host(&d);
        if (!topology_host_id_is_valid(host)) {
                intake_refuse(&c->intake, b, m, REFUSE_MALFORMED, "invalid host id in body");
                return;
        }
        /* The routing key is what the broker's permissions restrict per agent
         * user, so a body must agree with it and with its envelope. */
        if (asprintf(&expected_key, "%s.%s", host, status_kinds[i]) < 0) {
                log_warning("Out of memory checking a status message; it is delivered again.");
                (void) broker_reject(b, m->delivery_tag, true);
                return;
        }
        if (!streq_ptr(m->routing_key, expected_key) || !streq_ptr(d.envelope->sender, host)) {
                _cleanup_free_ char *why = NULL;
                if (asprintf(&why, "body is %s from host '%s' (sender '%s'), routing key '%s'",
                             d.descriptor->name, host, strna(d.envelope->sender),
                             strna(m->routing_key)) < 0)
                        why = NULL;
                intake_refuse(&c->intake, b, m, REFUSE_MISMATCH, why ? why : "mismatch");
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
        ack(c, m);
}
