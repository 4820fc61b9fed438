/* SPDX-License-Identifier: MIT */
/* What the agent tells the controller on baton.status: heartbeats (host
 * facts and the compact state of every managed unit), unit events pushed from
 * PropertiesChanged, shard reports from StatusText readiness tokens. While the
 * broker is away the broker client buffers them; heartbeats are droppable so
 * they go first when the buffer fills, events and results are kept.
 *
 * A workload may change its StatusText thousands of times a second, so
 * events coalesce: at most one UnitEvent per unit is in flight (published,
 * not yet confirmed), changes meanwhile are folded into the next one, which
 * carries the latest state; ShardReports go out at most every
 * SHARD_REPORT_INTERVAL, one at a time, with the latest readiness. What is
 * buffered then stays small whatever the workloads do, and heartbeats are
 * never crowded out by events.
 *
 * It also keeps the shard table the reports are made from (set by apply.c
 * from a Placement, by agent.c from the drop-ins at start) and tells the
 * broker a command's outcome (ack, or counted and dead-lettered): both are
 * called from the agent's shell and its command handlers alike. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent.h"
#include "capacity.h"
#include "log.h"
#include "shards.h"
#include "status.pb-c.h"
#include "text.h"
#include "topology.h"
#include "util.h"

#define SHARD_REPORT_INTERVAL (200 * USEC_PER_MSEC)
/* How often the coalescing counters may be logged while they move. */
#define COALESCED_LOG_INTERVAL (10 * USEC_PER_SEC)

static void flush_unit_events(Agent *a);

static void on_status_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Agent *a = userdata;

        if (a->stopping)
                return;
        if (outcome != BROKER_CONFIRMED)
                a->counters.publish_failed++;
        /* Room in the buffer again: events that could not be queued go now. */
        flush_unit_events(a);
}

static void on_heartbeat_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Agent *a = userdata;

        if (outcome == BROKER_DROPPED && !a->stopping)
                a->counters.heartbeats_dropped++;
}

static int publish_status(Agent *a, const char *kind, const ProtobufCMessage *body, bool droppable,
                          BrokerConfirmFn fn, void *userdata) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *key = NULL;
        char message_id[33], expiration[32];
        usec_t now = now_realtime_usec();
        size_t len;
        int r;

        if (!a->broker)
                return -ESHUTDOWN;
        r = codec_encode(body, a->config.host, a->state.max_epoch_seen, now, NULL, &buf, &len);
        if (r < 0)
                return r;
        r = random_id(message_id);
        if (r < 0)
                return r;
        if (asprintf(&key, "%s.%s", a->config.host, kind) < 0)
                return -ENOMEM;
        /* A heartbeat is only news for a few intervals: let the broker drop
         * stale ones rather than replay minutes of them to a slow controller. */
        snprintf(expiration, sizeof(expiration), "%" PRIu64,
                 (uint64_t) (TOPOLOGY_HEARTBEAT_EXPIRY(a->config.heartbeat_interval) /
                             USEC_PER_MSEC));

        BrokerMessage m = {
                .exchange = TOPOLOGY_EXCHANGE_STATUS,
                .routing_key = key,
                .message_id = message_id,
                .type = body->descriptor->name,
                .content_type = CODEC_CONTENT_TYPE,
                .expiration = droppable ? expiration : NULL,
                .timestamp = now / USEC_PER_SEC,
                .persistent = !droppable,
                .body = buf,
                .body_len = len,
        };
        return broker_publish(a->broker, &m, droppable ? BROKER_PUBLISH_DROPPABLE : 0, fn,
                              userdata);
}

int agent_publish_status(Agent *a, const char *kind, const ProtobufCMessage *body, bool droppable) {
        return publish_status(a, kind, body, droppable,
                              droppable ? on_heartbeat_confirm : on_status_confirm, a);
}

static const ShardInfo *shard_info(Agent *a, const char *unit) {
        for (size_t i = 0; i < a->n_shards; i++)
                if (streq(a->shards[i].unit, unit))
                        return &a->shards[i];
        return NULL;
}

static const ManagedUnitRec *managed(Agent *a, const char *unit) {
        for (size_t i = 0; i < a->state.n_units; i++)
                if (streq(a->state.units[i].name, unit))
                        return &a->state.units[i];
        return NULL;
}

void agent_unit_state(Agent *a, const char *unit, void *ret_unit_state) {
        Baton__V1__UnitState *us = ret_unit_state;
        const UnitInfo *u = systemd_unit(a->systemd, unit);
        const ShardInfo *si = shard_info(a, unit);
        const ManagedUnitRec *m = managed(a, unit);

        baton__v1__unit_state__init(us);
        us->name = (char *) unit;
        us->memory_bytes = UINT64_MAX;
        if (u && u->known) {
                us->active_state = (char *) strempty(u->active_state);
                us->sub_state = (char *) strempty(u->sub_state);
                us->n_restarts = u->n_restarts;
                us->main_pid = u->main_pid;
                us->result = (char *) strempty(u->result);
                us->status_text = (char *) strempty(u->status_text);
                us->memory_bytes = u->memory_current;
                us->state_change_us = u->state_change_usec;
        }
        if (si) {
                us->service = si->service;
                us->instance = si->instance;
        }
        /* A pending record's config is not known to be in place yet. */
        if (m && !m->pending)
                us->config_hash = m->config_hash;
}

/* ---- heartbeat ----------------------------------------------------------- */

static void read_capacity(Baton__V1__Capacity *cap) {
        _cleanup_free_ char *meminfo = NULL, *loadavg = NULL, *cpus = NULL;
        uint64_t total, avail;
        uint32_t l1, l5, l15, n;

        if (read_full_file("/proc/meminfo", 64 * 1024, &meminfo, NULL) >= 0 &&
            capacity_parse_meminfo(meminfo, &total, &avail) >= 0) {
                cap->memory_total_bytes = total;
                cap->memory_available_bytes = avail;
        }
        if (read_full_file("/proc/loadavg", 4096, &loadavg, NULL) >= 0 &&
            capacity_parse_loadavg(loadavg, &l1, &l5, &l15) >= 0) {
                cap->load1_x100 = l1;
                cap->load5_x100 = l5;
                cap->load15_x100 = l15;
        }
        if (read_full_file("/sys/devices/system/cpu/online", 4096, &cpus, NULL) >= 0 &&
            capacity_parse_cpu_list(cpus, &n) >= 0)
                cap->cores = n;
        else {
                long c = sysconf(_SC_NPROCESSORS_ONLN);
                cap->cores = c > 0 ? (uint32_t) c : 1;
        }
}

/* Forgets the event bookkeeping of units no longer watched. */
static void prune_unit_reports(Agent *a) {
        size_t w = 0;

        for (size_t i = 0; i < a->report.n_units; i++) {
                UnitReport *ur = &a->report.units[i];

                if (ur->in_flight == 0 && !ur->dirty && !systemd_unit(a->systemd, ur->unit)) {
                        free(ur->unit);
                        free(ur->reported_active_state);
                        continue;
                }
                a->report.units[w++] = *ur;
        }
        a->report.n_units = w;
}

/* What was coalesced, now and then while it moves. */
static void log_coalesced(Agent *a) {
        uint64_t now = now_monotonic_usec();
        uint64_t events = a->counters.unit_events_coalesced,
                 reports = a->counters.shard_reports_coalesced;
        char ev[21], rp[21];

        if (events == a->report.logged_events && reports == a->report.logged_shard_reports)
                return;
        if (a->report.logged_us != 0 && now - a->report.logged_us < COALESCED_LOG_INTERVAL)
                return;
        snprintf(ev, sizeof(ev), "%" PRIu64, events);
        snprintf(rp, sizeof(rp), "%" PRIu64, reports);
        log_fields(LOG_INFO, 0,
                   LOG_FIELDS({ "BATON_COALESCED_EVENTS", ev },
                              { "BATON_COALESCED_SHARD_REPORTS", rp }),
                   "Coalesced %" PRIu64 " unit events and %" PRIu64
                   " shard reports so far (%" PRIu64 " and %" PRIu64
                   " sent); the latest state always goes out.",
                   events, reports, a->counters.unit_events, a->counters.shard_reports);
        a->report.logged_us = now;
        a->report.logged_events = events;
        a->report.logged_shard_reports = reports;
}

int agent_send_heartbeat(Agent *a) {
        Baton__V1__Heartbeat hb = BATON__V1__HEARTBEAT__INIT;
        Baton__V1__Capacity cap = BATON__V1__CAPACITY__INIT;
        size_t n_units = a->state.n_units, n_labels = 0, max_labels = 1;
        _cleanup_free_ Baton__V1__UnitState *units = calloc(n_units + 1, sizeof(*units));
        _cleanup_free_ Baton__V1__UnitState **unit_ptrs = calloc(n_units + 1, sizeof(*unit_ptrs));
        _cleanup_free_ Baton__V1__Label *labels = NULL;
        _cleanup_free_ Baton__V1__Label **label_ptrs = NULL;
        _cleanup_free_ char *label_copy = NULL;
        int r;

        if (!units || !unit_ptrs)
                return -ENOMEM;
        /* Until the agent is in sync with systemd it does not know its units'
         * states: a heartbeat then would tell the controller that copies still
         * serving had stopped. The first goes out once it is (mark_synced()). */
        if (!a->synced)
                return 0;
        /* events that could not be queued before, and bookkeeping of the gone */
        flush_unit_events(a);
        prune_unit_reports(a);
        read_capacity(&cap);

        /* Labels were validated at load time: "k=v k=v". */
        for (const char *p = strempty(a->config.labels); *p; p++)
                max_labels += *p == ' ' || *p == '\t';
        label_copy = strdup(strempty(a->config.labels));
        labels = calloc(max_labels, sizeof(Baton__V1__Label));
        label_ptrs = calloc(max_labels, sizeof(Baton__V1__Label *));
        if (!label_copy || !labels || !label_ptrs)
                return -ENOMEM;
        for (char *tok = strtok(label_copy, " \t"); tok && n_labels < max_labels;
             tok = strtok(NULL, " \t")) {
                char *eq = strchr(tok, '=');
                if (!eq)
                        continue;
                *eq = 0;
                baton__v1__label__init(&labels[n_labels]);
                labels[n_labels].key = tok;
                labels[n_labels].value = eq + 1;
                label_ptrs[n_labels] = &labels[n_labels];
                n_labels++;
        }

        for (size_t i = 0; i < n_units; i++) {
                agent_unit_state(a, a->state.units[i].name, &units[i]);
                unit_ptrs[i] = &units[i];
        }

        hb.host = a->config.host;
        hb.boot_id = a->boot_id;
        hb.agent_version = (char *) BATON_VERSION;
        hb.applied_generation = a->state.applied_generation;
        hb.applied_epoch = a->state.applied_epoch;
        hb.max_epoch_seen = a->state.max_epoch_seen;
        hb.capacity = &cap;
        hb.n_labels = n_labels;
        hb.labels = label_ptrs;
        hb.n_units = n_units;
        hb.units = unit_ptrs;
        hb.interval_us = a->config.heartbeat_interval;
        hb.seq = ++a->heartbeat_seq;
        hb.systemd_version = (char *) strempty(a->systemd_version);
        hb.system_state = (char *) strempty(a->system_state);
        hb.agent_started_us = a->started_at_us;
        hb.refused_total = a->counters.refused;
        hb.status_malformed = a->counters.status_malformed;

        log_coalesced(a);
        r = agent_publish_status(a, TOPOLOGY_KIND_HEARTBEAT, &hb.base, true);
        if (r == -ENOBUFS) {
                a->counters.heartbeats_dropped++;
                return 0;
        }
        if (r < 0)
                return r;
        a->counters.heartbeats_sent++;
        return 0;
}

/* ---- shard reports ------------------------------------------------------- */

static void on_shard_timer(uv_timer_t *t);
static int flush_shard_report(Agent *a);

static void on_shard_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Agent *a = userdata;

        if (a->stopping)
                return;
        if (outcome != BROKER_CONFIRMED)
                a->counters.publish_failed++;
        a->report.shard_in_flight = false;
        (void) flush_shard_report(a); /* logs its own failure */
        flush_unit_events(a);
}

/* Publishes the readiness of every sharded unit as it is now. */
static int publish_shard_report(Agent *a) {
        Baton__V1__ShardReport rep = BATON__V1__SHARD_REPORT__INIT;
        size_t n = a->n_shards;
        _cleanup_free_ Baton__V1__ShardInstanceReport *inst = calloc(n + 1, sizeof(*inst));
        _cleanup_free_ Baton__V1__ShardInstanceReport **ptrs = calloc(n + 1, sizeof(*ptrs));
        _cleanup_free_ ShardReadiness *ready = calloc(n + 1, sizeof(*ready));
        _cleanup_free_ char **texts = calloc(3 * n + 1, sizeof(char *));
        int r = 0;

        if (!inst || !ptrs || !ready || !texts)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                const ShardInfo *si = &a->shards[i];
                const UnitInfo *u = systemd_unit(a->systemd, si->unit);
                const char *state = u && u->known ? u->active_state : "unknown";

                baton__v1__shard_instance_report__init(&inst[i]);
                shard_readiness_init(&ready[i]);
                /* Active, but its tokens may not have arrived yet: not ready
                 * until they are read (else "no tokens" would claim all). */
                if (u && u->status_pending)
                        state = "activating";
                if (shard_readiness_compute(si->shards, state, u ? u->status_text : NULL,
                                            &ready[i]) < 0)
                        continue;
                texts[3 * i] = rangelist_format(&ready[i].ready);
                texts[3 * i + 1] = rangelist_format(&ready[i].connecting);
                texts[3 * i + 2] = rangelist_format(&ready[i].failed);
                inst[i].unit = si->unit;
                inst[i].service = si->service;
                inst[i].instance = si->instance;
                inst[i].assigned = si->shards;
                inst[i].shard_count = si->shard_count;
                inst[i].shard_epoch = si->shard_epoch;
                inst[i].ready = (char *) strempty(texts[3 * i]);
                inst[i].connecting = (char *) strempty(texts[3 * i + 1]);
                inst[i].failed = (char *) strempty(texts[3 * i + 2]);
                inst[i].active_state = (char *) strempty(state);
                inst[i].has_tokens = ready[i].has_tokens;
                ptrs[i] = &inst[i];
        }

        rep.host = a->config.host;
        rep.n_instances = n;
        rep.instances = ptrs;
        rep.at_us = now_realtime_usec();
        for (size_t i = 0; i < n; i++)
                if (!ptrs[i]) {
                        /* a bad stored assignment: report it as owning nothing */
                        ptrs[i] = &inst[i];
                        inst[i].unit = a->shards[i].unit;
                        inst[i].service = a->shards[i].service;
                }
        if (!a->broker)
                r = -ESHUTDOWN;
        else
                r = publish_status(a, TOPOLOGY_KIND_SHARD, &rep.base, false, on_shard_confirm, a);

        for (size_t i = 0; i < n; i++) {
                shard_readiness_done(&ready[i]);
                free(texts[3 * i]);
                free(texts[3 * i + 1]);
                free(texts[3 * i + 2]);
        }
        return r;
}

/* Sends what was asked for, once nothing is in flight: an urgent report at
 * once, one for StatusText churn no sooner than SHARD_REPORT_INTERVAL after
 * the last such one. */
static int flush_shard_report(Agent *a) {
        uint64_t now = now_monotonic_usec(), due;
        int r;

        if (!a->report.shard_dirty || a->report.shard_in_flight || a->stopping)
                return 0; /* on_shard_confirm() comes back */
        due = a->report.shard_sent_us + SHARD_REPORT_INTERVAL;
        if (!a->report.shard_urgent && a->report.shard_sent_us != 0 && now < due) {
                if (!uv_is_active((uv_handle_t *) &a->report.shard_timer))
                        (void) uv_timer_start(&a->report.shard_timer, on_shard_timer,
                                              (due - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC, 0);
                return 0;
        }

        r = publish_shard_report(a);
        if (r < 0)
                /* still dirty: tried again with the next change or confirm */
                return log_warning_errno(r, "Failed to queue a shard report: %s", STRERROR(r));
        a->counters.shard_reports++;
        a->report.shard_in_flight = true;
        /* Only churn paces churn: a unit going active is reported at once, and
         * so is the StatusText that usually follows it a moment later. */
        if (!a->report.shard_urgent)
                a->report.shard_sent_us = now;
        a->report.shard_dirty = a->report.shard_urgent = false;
        return 0;
}

static int request_shard_report(Agent *a, bool urgent) {
        if (a->n_shards == 0)
                return 0;
        if (a->report.shard_dirty)
                a->counters.shard_reports_coalesced++;
        a->report.shard_dirty = true;
        a->report.shard_urgent |= urgent;
        return flush_shard_report(a);
}

int agent_send_shard_report(Agent *a) {
        return request_shard_report(a, true);
}

static void on_shard_timer(uv_timer_t *t) {
        (void) flush_shard_report(t->data); /* logs its own failure */
}

/* ---- unit events --------------------------------------------------------- */

typedef struct EventCtx {
        Agent *a;
        uint64_t seq;
        char unit[];
} EventCtx;

static UnitReport *unit_report(Agent *a, const char *unit, bool create) {
        UnitReport *p;

        for (size_t i = 0; i < a->report.n_units; i++)
                if (streq(a->report.units[i].unit, unit))
                        return &a->report.units[i];
        if (!create)
                return NULL;
        p = reallocarray(a->report.units, a->report.n_units + 1, sizeof(UnitReport));
        if (!p)
                return NULL;
        a->report.units = p;
        p = &a->report.units[a->report.n_units];
        *p = (UnitReport){ .unit = strdup(unit) };
        if (!p->unit)
                return NULL;
        a->report.n_units++;
        return p;
}

static void send_unit_event(Agent *a, UnitReport *ur);

static void on_event_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        EventCtx *c = userdata;
        Agent *a = c->a;
        UnitReport *ur;

        if (a->stopping) {
                free(c);
                return;
        }
        if (outcome != BROKER_CONFIRMED)
                a->counters.publish_failed++;
        ur = unit_report(a, c->unit, false);
        if (ur && ur->in_flight == c->seq) {
                ur->in_flight = 0;
                if (ur->dirty)
                        send_unit_event(a, ur);
        }
        free(c);
        flush_unit_events(a);
}

/* Publishes the unit's state as it is now; on failure it stays dirty and
 * goes with the next confirm, reconnect or change. */
static void send_unit_event(Agent *a, UnitReport *ur) {
        Baton__V1__UnitEvent ev = BATON__V1__UNIT_EVENT__INIT;
        Baton__V1__UnitState us;
        size_t len = strlen(ur->unit);
        EventCtx *c;
        int r;

        c = malloc(sizeof(EventCtx) + len + 1);
        if (!c) {
                r = -ENOMEM;
                goto fail;
        }
        *c = (EventCtx){ .a = a, .seq = ++a->report.seq };
        memcpy(c->unit, ur->unit, len + 1);

        agent_unit_state(a, ur->unit, &us);
        ev.host = a->config.host;
        ev.unit = &us;
        ev.previous_active_state = (char *) strempty(ur->reported_active_state);
        ev.at_us = now_realtime_usec();
        r = a->broker ? publish_status(a, TOPOLOGY_KIND_UNIT, &ev.base, false, on_event_confirm, c)
                      : -ESHUTDOWN;
        if (r < 0) {
                free(c);
                goto fail;
        }
        a->counters.unit_events++;
        ur->in_flight = c->seq;
        ur->dirty = false;
        if (!streq_ptr(ur->reported_active_state, us.active_state)) {
                char *s = strdup(strempty(us.active_state));

                if (s) {
                        free(ur->reported_active_state);
                        ur->reported_active_state = s;
                }
        }
        return;

fail:
        /* Logged once per run of failures, not once per change. */
        if (!ur->dirty)
                log_warning_errno(r,
                                  "Failed to queue a unit event for %s: %s; the latest "
                                  "state goes with the next one.",
                                  ur->unit, STRERROR(r));
        ur->dirty = true;
}

/* Sends what is due and not in flight: events that could not be queued. */
static void flush_unit_events(Agent *a) {
        for (size_t i = 0; i < a->report.n_units && !a->stopping; i++) {
                UnitReport *ur = &a->report.units[i];

                if (ur->dirty && ur->in_flight == 0)
                        send_unit_event(a, ur);
        }
}

void agent_on_unit_changed(Systemd *s, const UnitInfo *now, const UnitInfo *old, void *userdata) {
        Agent *a = userdata;
        UnitReport *ur;

        /* StatusText alone may change thousands of times a second: not logged. */
        if (!streq_ptr(now->active_state, old->active_state) ||
            !streq_ptr(now->sub_state, old->sub_state) || now->n_restarts != old->n_restarts ||
            !streq_ptr(now->result, old->result))
                log_fields(LOG_INFO, 0,
                           LOG_FIELDS({ "BATON_UNIT", now->name },
                                      { "BATON_ACTIVE_STATE", strempty(now->active_state) }),
                           "Unit %s: %s/%s (was %s/%s), restarts %u.", now->name,
                           strna(now->active_state), strna(now->sub_state),
                           strna(old->active_state), strna(old->sub_state), now->n_restarts);

        /* Its StatusText read after it went active: only readiness can have
         * changed, which the shard report below carries. */
        if (now->status_pending != old->status_pending &&
            streq_ptr(now->active_state, old->active_state) &&
            streq_ptr(now->sub_state, old->sub_state) && streq_ptr(now->result, old->result) &&
            streq_ptr(now->status_text, old->status_text) && now->n_restarts == old->n_restarts &&
            now->main_pid == old->main_pid) {
                /* Once per start, not churn: at once. */
                if (shard_info(a, now->name))
                        (void) request_shard_report(a, true); /* logs failures */
                return;
        }

        ur = unit_report(a, now->name, true);
        if (!ur)
                log_warning("Out of memory tracking the events of %s; the next heartbeat "
                            "carries its state.",
                            now->name);
        else if (ur->in_flight) {
                /* folded into the one sent when this one is confirmed */
                a->counters.unit_events_coalesced++;
                if (!ur->reported_active_state && old->active_state)
                        ur->reported_active_state = strdup(old->active_state);
                ur->dirty = true;
        } else {
                if (!ur->reported_active_state && old->active_state)
                        ur->reported_active_state = strdup(old->active_state);
                send_unit_event(a, ur);
        }

        /* A workload's readiness tokens that do not parse claim nothing (its
         * shards count as not ready); counted and said once per new text. */
        if (shard_info(a, now->name) && !streq_ptr(now->status_text, old->status_text) &&
            !isempty(now->status_text)) {
                _cleanup_(shard_status_done) ShardStatus st = { 0 };

                shard_status_init(&st);
                if (shard_status_parse(&st, now->status_text) < 0) {
                        _cleanup_free_ char *shown = text_sanitize(now->status_text);

                        a->counters.status_malformed++;
                        log_warning("Unit %s reports STATUS=\"%.200s\", which is not shard "
                                    "readiness (ready=, connecting=, failed= range lists): its "
                                    "shards count as not ready.",
                                    now->name, strna(shown));
                }
        }
        if (shard_info(a, now->name) && (!streq_ptr(now->status_text, old->status_text) ||
                                         !streq_ptr(now->active_state, old->active_state) ||
                                         now->status_pending != old->status_pending))
                (void) request_shard_report(
                        a, !streq_ptr(now->active_state, old->active_state)); /* logs failures */
}

/* ---- the shard table and a command's outcome ------------------------------- */

static void shard_info_done(ShardInfo *si) {
        free(si->unit);
        free(si->service);
        free(si->shards);
}

void agent_forget_shard_info(Agent *a, const char *unit) {
        for (size_t i = 0; i < a->n_shards; i++)
                if (streq(a->shards[i].unit, unit)) {
                        shard_info_done(&a->shards[i]);
                        a->shards[i] = a->shards[--a->n_shards];
                        return;
                }
}

int agent_set_shard_info(Agent *a, const char *unit, const char *service, uint32_t instance,
                         const char *shards, uint32_t shard_count, uint64_t shard_epoch) {
        ShardInfo si = {
                .unit = strdup(unit),
                .service = strdup(strempty(service)),
                .instance = instance,
                .shards = strdup(strempty(shards)),
                .shard_count = shard_count,
                .shard_epoch = shard_epoch,
        };
        ShardInfo *p;

        if (!si.unit || !si.service || !si.shards) {
                shard_info_done(&si);
                return -ENOMEM;
        }
        agent_forget_shard_info(a, unit);
        p = realloc(a->shards, (a->n_shards + 1) * sizeof(ShardInfo));
        if (!p) {
                shard_info_done(&si);
                return -ENOMEM;
        }
        a->shards = p;
        a->shards[a->n_shards++] = si;
        return 0;
}

void agent_refuse(Agent *a, uint64_t delivery_tag, const char *what, const char *why) {
        a->counters.refused++;
        log_fields(LOG_WARNING, 0, LOG_FIELDS({ "BATON_REFUSED", why }),
                   "Refusing %s: %s; dead-lettered.", what, why);
        if (a->broker)
                (void) broker_reject(a->broker, delivery_tag, false);
}

void agent_ack(Agent *a, uint64_t delivery_tag) {
        if (a->broker)
                (void) broker_ack(a->broker, delivery_tag);
}

void report_done(Agent *a) {
        for (size_t i = 0; i < a->n_shards; i++)
                shard_info_done(&a->shards[i]);
        a->shards = mfree(a->shards);
        a->n_shards = 0;
        for (size_t i = 0; i < a->report.n_units; i++) {
                free(a->report.units[i].unit);
                free(a->report.units[i].reported_active_state);
        }
        a->report.units = mfree(a->report.units);
        a->report.n_units = 0;
}
