/* SPDX-License-Identifier: MIT */
/* baton-bench-agents: the benchmark's simulated fleet. One process plays many
 * agents over a few AMQP connections: each simulated host consumes its own
 * baton.agent.<host> queue, heartbeats as agent/report.c does, and "applies" a
 * Placement at once. The `floor` verb measures the broker round trip that the
 * benchmark divides its figures by. Not installed. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker-settings.h"
#include "broker.h"
#include "codec.h"
#include "commands.pb-c.h"
#include "duration.h"
#include "log.h"
#include "loop.h"
#include "sign.h"
#include "status.pb-c.h"
#include "topology.h"
#include "util.h"

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,
        EXIT_USAGE = 2,
};

#define DEFAULT_HEARTBEAT_INTERVAL (5 * USEC_PER_SEC) /* the agent's default */
#define DEFAULT_CONNECTIONS 4
#define MAX_CONNECTIONS 64
#define MAX_HOSTS 100000
/* Often enough that the benchmark's polling adds little to what it measures. */
#define STATS_INTERVAL_MS 200
/* What every simulated unit reports; a real host's figures vary, the size
 * of the message is what matters to the controller. */
#define UNIT_MEMORY_BYTES (48ULL * 1024 * 1024)
#define HOST_CORES 8
#define HOST_MEMORY_TOTAL (32ULL * 1024 * 1024 * 1024)
#define HOST_MEMORY_AVAILABLE (20ULL * 1024 * 1024 * 1024)
#define FLOOR_QUEUE_PREFIX "baton.bench.floor."
#define FLOOR_BODY_SIZE 64

/* ---- the simulated fleet -------------------------------------------------- */

typedef struct SimUnit {
        char *name;
        char config_hash[17];
        bool active;
        uint32_t main_pid;
        uint32_t n_restarts;
        uint64_t since_us;
} SimUnit;

typedef struct Sim Sim;

typedef struct SimHost {
        Sim *sim;
        size_t conn; /* index into sim->conns */
        char *name;
        char boot_id[37];
        char zone[16], rack[16];
        uint64_t seq;
        uint64_t max_epoch_seen;
        uint64_t applied_epoch, applied_generation;
        uint64_t started_us;
        SimUnit *units;
        size_t n_units;
        uv_timer_t timer;
} SimHost;

typedef struct SimCounters {
        uint64_t heartbeats_sent;
        uint64_t heartbeats_dropped;
        uint64_t unit_events_sent;
        uint64_t results_sent;
        uint64_t publish_failed;
        uint64_t placements_received;
        uint64_t placements_applied;
        uint64_t placements_unchanged;
        uint64_t restarts;
        uint64_t refused;
        uint64_t units_started;
        uint64_t units_stopped;
        uint64_t last_apply_us;
} SimCounters;

typedef struct SimConn {
        Broker *broker;
        bool up;
} SimConn;

struct Sim {
        uv_loop_t loop;
        uv_timer_t stats_timer;
        uv_signal_t sigint, sigterm;
        SimConn conns[MAX_CONNECTIONS];
        size_t n_conns;
        size_t n_closing;
        SimHost *hosts;
        size_t n_hosts;
        usec_t heartbeat_interval;
        bool have_key;
        SignPublicKey key;
        const char *stats_path;
        uint32_t next_pid;
        bool stopping;
        SimCounters counters;
};

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n < 0)
                msg = NULL;
        log_error("%s (see baton-bench-agents --help)", msg ? msg : fmt);
        return EXIT_USAGE;
}

static int parse_size(const char *s, size_t min, size_t max, size_t *ret) {
        char *end;
        unsigned long long v;

        if (isempty(s) || s[0] < '0' || s[0] > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end || v < min || v > max)
                return -EINVAL;
        *ret = (size_t) v;
        return 0;
}

/* The agent hashes the unit text and its drop-in; the simulator has no
 * drop-in, so it hashes what the drop-in is made of (FNV-1a, 16 hex). */
static void unit_hash(const Baton__V1__PlacedUnit *u, char ret[static 17]) {
        const char *parts[] = { u->name, u->unit_text, u->template_name, u->service,
                                u->shards ? u->shards->shards : NULL };
        uint64_t h = 0xcbf29ce484222325ULL;

        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                for (const char *p = strempty(parts[i]); *p; p++)
                        h = (h ^ (uint8_t) *p) * 0x100000001b3ULL;
                h = (h ^ 0xff) * 0x100000001b3ULL;
        }
        h = (h ^ u->instance) * 0x100000001b3ULL;
        snprintf(ret, 17, "%016" PRIx64, h);
}

static void on_status_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Sim *s = userdata;

        if (outcome != BROKER_CONFIRMED && !s->stopping)
                s->counters.publish_failed++;
}

static void on_heartbeat_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Sim *s = userdata;

        if (outcome == BROKER_DROPPED && !s->stopping)
                s->counters.heartbeats_dropped++;
}

/* As agent_publish_status(): the envelope's sender is the host, heartbeats
 * are transient and expire, everything else is persistent. */
static int host_publish(SimHost *h, const char *kind, const ProtobufCMessage *body,
                        bool droppable) {
        Sim *s = h->sim;
        Broker *b = s->conns[h->conn].broker;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *key = NULL;
        char message_id[33], expiration[32];
        usec_t now = now_realtime_usec();
        size_t len;
        int r;

        if (!b || s->stopping)
                return -ESHUTDOWN;
        r = codec_encode(body, h->name, h->max_epoch_seen, now, NULL, &buf, &len);
        if (r < 0)
                return r;
        r = random_id(message_id);
        if (r < 0)
                return r;
        if (asprintf(&key, "%s.%s", h->name, kind) < 0)
                return -ENOMEM;
        snprintf(expiration, sizeof(expiration), "%" PRIu64,
                 (uint64_t) (TOPOLOGY_HEARTBEAT_EXPIRY(s->heartbeat_interval) / USEC_PER_MSEC));

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
        return broker_publish(b, &m, droppable ? BROKER_PUBLISH_DROPPABLE : 0,
                              droppable ? on_heartbeat_confirm : on_status_confirm, s);
}

static void unit_state(const SimUnit *u, Baton__V1__UnitState *us) {
        baton__v1__unit_state__init(us);
        us->name = u->name;
        us->active_state = (char *) (u->active ? "active" : "inactive");
        us->sub_state = (char *) (u->active ? "running" : "dead");
        us->n_restarts = u->n_restarts;
        us->main_pid = u->active ? u->main_pid : 0;
        us->result = (char *) "success";
        us->status_text = (char *) "";
        us->memory_bytes = u->active ? UNIT_MEMORY_BYTES : UINT64_MAX;
        us->state_change_us = u->since_us;
        us->config_hash = (char *) u->config_hash;
}

static int host_send_heartbeat(SimHost *h) {
        Baton__V1__Heartbeat hb = BATON__V1__HEARTBEAT__INIT;
        Baton__V1__Capacity cap = BATON__V1__CAPACITY__INIT;
        Baton__V1__Label labels[2], *label_ptrs[2];
        _cleanup_free_ Baton__V1__UnitState *units = calloc(h->n_units + 1, sizeof(*units));
        _cleanup_free_ Baton__V1__UnitState **unit_ptrs =
                calloc(h->n_units + 1, sizeof(*unit_ptrs));
        size_t index = (size_t) (h - h->sim->hosts);
        int r;

        if (!units || !unit_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < h->n_units; i++) {
                unit_state(&h->units[i], &units[i]);
                unit_ptrs[i] = &units[i];
        }
        baton__v1__label__init(&labels[0]);
        labels[0].key = (char *) "zone";
        labels[0].value = h->zone;
        baton__v1__label__init(&labels[1]);
        labels[1].key = (char *) "rack";
        labels[1].value = h->rack;
        label_ptrs[0] = &labels[0];
        label_ptrs[1] = &labels[1];

        cap.cores = HOST_CORES;
        cap.memory_total_bytes = HOST_MEMORY_TOTAL;
        cap.memory_available_bytes = HOST_MEMORY_AVAILABLE - h->n_units * UNIT_MEMORY_BYTES;
        cap.load1_x100 = (uint32_t) (50 + index % 150);
        cap.load5_x100 = (uint32_t) (40 + index % 120);
        cap.load15_x100 = (uint32_t) (30 + index % 100);

        hb.host = h->name;
        hb.boot_id = h->boot_id;
        hb.agent_version = (char *) BATON_VERSION;
        hb.applied_generation = h->applied_generation;
        hb.applied_epoch = h->applied_epoch;
        hb.max_epoch_seen = h->max_epoch_seen;
        hb.capacity = &cap;
        hb.n_labels = ELEMENTSOF(labels);
        hb.labels = label_ptrs;
        hb.n_units = h->n_units;
        hb.units = unit_ptrs;
        hb.interval_us = h->sim->heartbeat_interval;
        hb.seq = ++h->seq;
        hb.systemd_version = (char *) "252";
        hb.system_state = (char *) "running";
        hb.agent_started_us = h->started_us;
        hb.refused_total = 0;

        r = host_publish(h, TOPOLOGY_KIND_HEARTBEAT, &hb.base, true);
        if (r == -ENOBUFS) {
                h->sim->counters.heartbeats_dropped++;
                return 0;
        }
        if (r < 0)
                return r;
        h->sim->counters.heartbeats_sent++;
        return 0;
}

static void host_send_unit_event(SimHost *h, const SimUnit *u, const char *previous) {
        Baton__V1__UnitEvent ev = BATON__V1__UNIT_EVENT__INIT;
        Baton__V1__UnitState us;
        int r;

        unit_state(u, &us);
        ev.host = h->name;
        ev.unit = &us;
        ev.previous_active_state = (char *) previous;
        ev.at_us = now_realtime_usec();
        r = host_publish(h, TOPOLOGY_KIND_UNIT, &ev.base, false);
        if (r < 0)
                log_warning_errno(r, "%s: failed to queue a unit event: %s, ignoring.", h->name,
                                  STRERROR(r));
        else
                h->sim->counters.unit_events_sent++;
}

typedef struct Outcome {
        const char *unit;
        const char *action;
        bool ok;
        const char *result;
} Outcome;

static void host_send_result(SimHost *h, uint64_t epoch, const char *restart_id,
                             uint64_t generation, bool ok, const char *error,
                             const Outcome *outcomes, size_t n) {
        Baton__V1__CommandResult res = BATON__V1__COMMAND_RESULT__INIT;
        _cleanup_free_ Baton__V1__UnitOutcome *uo = calloc(n + 1, sizeof(*uo));
        _cleanup_free_ Baton__V1__UnitOutcome **up = calloc(n + 1, sizeof(*up));
        int r;

        if (!uo || !up)
                return;
        for (size_t i = 0; i < n; i++) {
                baton__v1__unit_outcome__init(&uo[i]);
                uo[i].unit = (char *) outcomes[i].unit;
                uo[i].action = (char *) outcomes[i].action;
                uo[i].ok = outcomes[i].ok;
                uo[i].result = (char *) strempty(outcomes[i].result);
                up[i] = &uo[i];
        }
        res.host = h->name;
        res.epoch = epoch;
        if (restart_id) {
                res.command_case = BATON__V1__COMMAND_RESULT__COMMAND_RESTART_ID;
                res.restart_id = (char *) restart_id;
        } else {
                res.command_case = BATON__V1__COMMAND_RESULT__COMMAND_GENERATION;
                res.generation = generation;
        }
        res.ok = ok;
        res.error = (char *) strempty(error);
        res.n_units = n;
        res.units = up;
        res.at_us = now_realtime_usec();
        r = host_publish(h, TOPOLOGY_KIND_RESULT, &res.base, false);
        if (r < 0)
                log_warning_errno(r, "%s: failed to queue a command result: %s, ignoring.", h->name,
                                  STRERROR(r));
        else
                h->sim->counters.results_sent++;
}

static void host_refuse(SimHost *h, uint64_t tag, const char *why) {
        Broker *b = h->sim->conns[h->conn].broker;

        h->sim->counters.refused++;
        log_warning("%s: refusing a command: %s; dead-lettered.", h->name, why);
        if (b)
                (void) broker_reject(b, tag, false);
}

static void host_ack(SimHost *h, uint64_t tag) {
        Broker *b = h->sim->conns[h->conn].broker;

        if (b)
                (void) broker_ack(b, tag);
}

static void units_free(SimUnit *units, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(units[i].name);
        free(units);
}

static SimUnit *host_unit(SimHost *h, const char *name) {
        for (size_t i = 0; i < h->n_units; i++)
                if (h->units[i].name && streq(h->units[i].name, name))
                        return &h->units[i];
        return NULL;
}

static int placement_order(uint64_t epoch, uint64_t generation, uint64_t applied_epoch,
                           uint64_t applied_generation) {
        if (epoch != applied_epoch)
                return epoch < applied_epoch ? -1 : 1;
        return generation < applied_generation ? -1 : generation > applied_generation ? 1 : 0;
}

/* What the real agent ends with after converging, reached at once: every
 * listed unit runs (or is stopped when not `running`), the others are gone.
 * It then reports the way the agent does: a unit event per unit whose
 * ActiveState changed, one CommandResult, a heartbeat. */
static void host_apply_placement(SimHost *h, const Baton__V1__Placement *p, uint64_t tag) {
        Sim *s = h->sim;
        _cleanup_free_ SimUnit *next = NULL;
        _cleanup_free_ Outcome *outcomes = NULL;
        _cleanup_free_ char *why = NULL;
        size_t n_next = 0, n_outcomes = 0;
        usec_t now = now_realtime_usec();
        int order;

        s->counters.placements_received++;
        if (!streq_ptr(p->host, h->name)) {
                (void) asprintf(&why, "placement for host '%s' delivered to %s", strna(p->host),
                                h->name);
                host_refuse(h, tag, why ? why : "wrong host");
                return;
        }
        if (p->epoch < h->max_epoch_seen) {
                (void) asprintf(&why,
                                "stale epoch %" PRIu64 " (highest seen %" PRIu64
                                "): a controller from the past",
                                p->epoch, h->max_epoch_seen);
                host_send_result(h, p->epoch, NULL, p->generation, false, why, NULL, 0);
                host_refuse(h, tag, why ? why : "stale epoch");
                return;
        }
        h->max_epoch_seen = p->epoch;

        order = placement_order(p->epoch, p->generation, h->applied_epoch, h->applied_generation);
        if (order <= 0) {
                (void) asprintf(
                        &why, "generation %" PRIu64 "/%" PRIu64 " %s", p->epoch, p->generation,
                        order == 0 ? "is already applied" : "is older than the one applied");
                host_send_result(h, p->epoch, NULL, p->generation, order == 0, why, NULL, 0);
                host_ack(h, tag);
                s->counters.placements_unchanged++;
                return;
        }

        next = calloc(p->n_units + 1, sizeof(SimUnit));
        outcomes = calloc(p->n_units + h->n_units + 1, sizeof(Outcome));
        if (!next || !outcomes) {
                /* As the agent: the broker redelivers it. */
                Broker *b = s->conns[h->conn].broker;
                log_error("%s: out of memory while applying a placement.", h->name);
                if (b)
                        (void) broker_reject(b, tag, true);
                return;
        }
        for (size_t i = 0; i < p->n_units; i++) {
                const Baton__V1__PlacedUnit *u = p->units[i];
                SimUnit *old, *n = &next[n_next];
                Outcome *o = &outcomes[n_outcomes];

                if (isempty(u->name))
                        continue; /* the agent's planner refuses it; nothing to simulate */
                old = host_unit(h, u->name);
                unit_hash(u, n->config_hash);
                n->active = u->running;
                if (old) {
                        bool changed = !streq(old->config_hash, n->config_hash);

                        n->name = TAKE_PTR(old->name);
                        n->n_restarts = old->n_restarts;
                        n->main_pid = changed ? ++s->next_pid : old->main_pid;
                        n->since_us = changed || old->active != n->active ? now : old->since_us;
                        *o = (Outcome){ n->name, changed ? "restarted" : "unchanged", true,
                                        changed ? "done" : NULL };
                        if (changed || old->active != n->active)
                                host_send_unit_event(h, n, old->active ? "active" : "inactive");
                } else {
                        n->name = strdup(u->name);
                        if (!n->name)
                                continue;
                        n->main_pid = ++s->next_pid;
                        n->since_us = now;
                        *o = (Outcome){ n->name, n->active ? "started" : "installed", true,
                                        "done" };
                        if (n->active) {
                                host_send_unit_event(h, n, "inactive");
                                s->counters.units_started++;
                        }
                }
                n_next++;
                n_outcomes++;
        }
        /* What is no longer listed is stopped and removed. */
        for (size_t i = 0; i < h->n_units; i++) {
                SimUnit *old = &h->units[i];

                if (!old->name)
                        continue; /* moved to next */
                if (old->active) {
                        old->active = false;
                        old->since_us = now;
                        host_send_unit_event(h, old, "active");
                        s->counters.units_stopped++;
                }
        }

        h->applied_epoch = p->epoch;
        h->applied_generation = p->generation;
        s->counters.placements_applied++;
        s->counters.last_apply_us = now;
        log_debug("%s: applied placement %" PRIu64 "/%" PRIu64 ": %zu units.", h->name, p->epoch,
                  p->generation, n_next);
        /* Outcomes point at unit names: send the result before old ones go. */
        for (size_t i = 0; i < h->n_units; i++)
                if (h->units[i].name)
                        outcomes[n_outcomes++] =
                                (Outcome){ h->units[i].name, "removed", true, "done" };
        host_send_result(h, p->epoch, NULL, p->generation, true, NULL, outcomes, n_outcomes);
        units_free(h->units, h->n_units);
        h->units = TAKE_PTR(next);
        h->n_units = n_next;
        host_ack(h, tag);
        (void) host_send_heartbeat(h);
}

static void host_apply_restart(SimHost *h, const Baton__V1__Restart *rs, uint64_t tag) {
        Sim *s = h->sim;
        _cleanup_free_ char *why = NULL;
        SimUnit *u;
        Outcome o;

        if (!streq_ptr(rs->host, h->name))
                (void) asprintf(&why, "restart for host '%s' delivered to %s", strna(rs->host),
                                h->name);
        else if (rs->epoch < h->max_epoch_seen)
                (void) asprintf(&why, "stale epoch %" PRIu64 " (highest seen %" PRIu64 ")",
                                rs->epoch, h->max_epoch_seen);
        else if (!(u = host_unit(h, strempty(rs->unit))))
                (void) asprintf(&why, "unit %s is not managed by baton here", strna(rs->unit));
        else {
                u->active = true;
                u->main_pid = ++s->next_pid;
                u->since_us = now_realtime_usec();
                s->counters.restarts++;
                host_send_unit_event(h, u, "active");
                o = (Outcome){ u->name, "restarted", true, "done" };
                host_send_result(h, rs->epoch, strempty(rs->id), 0, true, NULL, &o, 1);
                host_ack(h, tag);
                return;
        }
        host_send_result(h, rs->epoch, strempty(rs->id), 0, false, why, NULL, 0);
        host_refuse(h, tag, why ? why : "invalid restart");
}

static const ProtobufCMessageDescriptor *const command_types[] = {
        &baton__v1__placement__descriptor,
        &baton__v1__restart__descriptor,
};

static void on_command(Broker *b, const BrokerMessage *m, void *userdata) {
        SimHost *h = userdata;
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL;
        int r;

        if (h->sim->stopping)
                return; /* unacked: the broker keeps it for the next run */
        r = codec_decode(m->body, m->body_len, command_types, ELEMENTSOF(command_types), m->type,
                         h->sim->have_key ? &h->sim->key : NULL, &d, &error);
        if (r < 0) {
                host_refuse(h, m->delivery_tag, error ? error : STRERROR(r));
                return;
        }
        if (d.descriptor == &baton__v1__placement__descriptor)
                host_apply_placement(h, (const Baton__V1__Placement *) d.body, m->delivery_tag);
        else
                host_apply_restart(h, (const Baton__V1__Restart *) d.body, m->delivery_tag);
}

/* ---- stats, timers, signals ---------------------------------------------- */

static int sim_write_stats(Sim *s) {
        _cleanup_free_ char *tmp = NULL;
        uint64_t hosts_applied = 0, units_active = 0, max_epoch = 0;
        size_t conns_up = 0;
        FILE *f;

        if (!s->stats_path)
                return 0;
        for (size_t i = 0; i < s->n_hosts; i++) {
                const SimHost *h = &s->hosts[i];

                hosts_applied += h->applied_generation > 0;
                for (size_t k = 0; k < h->n_units; k++)
                        units_active += h->units[k].active;
                max_epoch = MAX(max_epoch, h->max_epoch_seen);
        }
        for (size_t i = 0; i < s->n_conns; i++)
                conns_up += s->conns[i].up;

        if (asprintf(&tmp, "%s.tmp", s->stats_path) < 0)
                return -ENOMEM;
        f = fopen(tmp, "we");
        if (!f)
                return negative_errno();
        fprintf(f,
                "{\"hosts\": %zu, \"connections\": %zu, \"connections_up\": %zu, "
                "\"hosts_applied\": %" PRIu64 ", \"units_active\": %" PRIu64
                ", \"max_epoch_seen\": %" PRIu64 ", \"heartbeats_sent\": %" PRIu64
                ", \"heartbeats_dropped\": %" PRIu64 ", \"unit_events_sent\": %" PRIu64
                ", \"results_sent\": %" PRIu64 ", \"publish_failed\": %" PRIu64
                ", \"placements_received\": %" PRIu64 ", \"placements_applied\": %" PRIu64
                ", \"placements_unchanged\": %" PRIu64 ", \"restarts\": %" PRIu64
                ", \"refused\": %" PRIu64 ", \"units_started\": %" PRIu64
                ", \"units_stopped\": %" PRIu64 ", \"last_apply_us\": %" PRIu64
                ", \"signatures_verified\": %s, \"written_us\": %" PRIu64 "}\n",
                s->n_hosts, s->n_conns, conns_up, hosts_applied, units_active, max_epoch,
                s->counters.heartbeats_sent, s->counters.heartbeats_dropped,
                s->counters.unit_events_sent, s->counters.results_sent, s->counters.publish_failed,
                s->counters.placements_received, s->counters.placements_applied,
                s->counters.placements_unchanged, s->counters.restarts, s->counters.refused,
                s->counters.units_started, s->counters.units_stopped, s->counters.last_apply_us,
                s->have_key ? "true" : "false", (uint64_t) now_realtime_usec());
        if (fclose(f) != 0) {
                int r = negative_errno();
                (void) unlink(tmp);
                return r;
        }
        if (rename(tmp, s->stats_path) < 0) {
                int r = negative_errno();
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

static void on_stats_timer(uv_timer_t *t) {
        Sim *s = t->data;
        int r;

        r = sim_write_stats(s);
        if (r < 0)
                log_warning_errno(r, "Failed to write %s: %s, ignoring.", s->stats_path,
                                  STRERROR(r));
}

static void on_heartbeat_timer(uv_timer_t *t) {
        SimHost *h = t->data;
        int r;

        r = host_send_heartbeat(h);
        if (r < 0 && r != -ESHUTDOWN)
                log_warning_errno(r, "%s: failed to send a heartbeat: %s, ignoring.", h->name,
                                  STRERROR(r));
}

static void on_broker_state(Broker *b, BrokerState state, const char *reason, void *userdata) {
        Sim *s = userdata;
        size_t k;

        for (k = 0; k < s->n_conns; k++)
                if (s->conns[k].broker == b)
                        break;
        if (k >= s->n_conns)
                return;

        switch (state) {
        case BROKER_CONNECTED:
                log_info("Connection %zu up.", k);
                s->conns[k].up = true;
                /* As the agent: the full state at once on every (re)connect. */
                for (size_t i = 0; i < s->n_hosts; i++)
                        if (s->hosts[i].conn == k)
                                (void) host_send_heartbeat(&s->hosts[i]);
                break;
        case BROKER_DISCONNECTED:
                log_warning("Connection %zu lost: %s; reconnecting.", k, strna(reason));
                s->conns[k].up = false;
                break;
        default:
                break;
        }
}

static void on_broker_closed(void *userdata) {
        Sim *s = userdata;

        if (--s->n_closing > 0)
                return;
        loop_close_handle((uv_handle_t *) &s->sigint);
        loop_close_handle((uv_handle_t *) &s->sigterm);
}

static void sim_stop(Sim *s) {
        if (s->stopping)
                return;
        (void) sim_write_stats(s);
        s->stopping = true;
        for (size_t i = 0; i < s->n_hosts; i++)
                loop_close_handle((uv_handle_t *) &s->hosts[i].timer);
        loop_close_handle((uv_handle_t *) &s->stats_timer);
        s->n_closing = 0;
        for (size_t i = 0; i < s->n_conns; i++)
                if (s->conns[i].broker)
                        s->n_closing++;
        if (s->n_closing == 0) {
                loop_close_handle((uv_handle_t *) &s->sigint);
                loop_close_handle((uv_handle_t *) &s->sigterm);
                return;
        }
        for (size_t i = 0; i < s->n_conns; i++)
                if (s->conns[i].broker) {
                        Broker *b = TAKE_PTR(s->conns[i].broker);
                        broker_close(b, on_broker_closed, s);
                }
}

static void on_signal(uv_signal_t *sig, int signum) {
        log_info("Received %s, stopping.", strsignal(signum));
        sim_stop(sig->data);
}

static void sim_done(Sim *s) {
        for (size_t i = 0; i < s->n_hosts; i++) {
                units_free(s->hosts[i].units, s->hosts[i].n_units);
                free(s->hosts[i].name);
        }
        free(s->hosts);
        s->hosts = NULL;
        s->n_hosts = 0;
}

static int host_init(Sim *s, SimHost *h, const char *prefix, size_t number, size_t conn) {
        char id[33];
        int r;

        *h = (SimHost){ .sim = s, .conn = conn, .started_us = now_realtime_usec() };
        if (asprintf(&h->name, "%s-%04zu", prefix, number) < 0) {
                h->name = NULL;
                return -ENOMEM;
        }
        if (!topology_host_id_is_valid(h->name))
                return -EINVAL;
        r = random_id(id);
        if (r < 0)
                return r;
        /* In the shape of /proc/sys/kernel/random/boot_id. */
        snprintf(h->boot_id, sizeof(h->boot_id), "%.8s-%.4s-%.4s-%.4s-%.12s", id, id + 8, id + 12,
                 id + 16, id + 20);
        snprintf(h->zone, sizeof(h->zone), "z%zu", number % 3);
        snprintf(h->rack, sizeof(h->rack), "r%zu", number % 25);
        return 0;
}

static void help(void) {
        printf("Usage:\n"
               "  baton-bench-agents [OPTIONS]         simulate agents until SIGTERM\n"
               "  baton-bench-agents floor [OPTIONS]   measure the broker round trip\n\n"
               "The controller benchmark's simulated fleet: one process plays N hosts over a\n"
               "few AMQP connections. Each host consumes baton.agent.<host>, sends Heartbeats\n"
               "as the real agent builds them, and on a Placement marks its units active at\n"
               "once and reports a unit event per changed unit, a CommandResult and a\n"
               "heartbeat, as the agent does after converging.\n\n"
               "Options:\n"
               "  --broker URL                amqp://user:pass@host:port/vhost ($BATON_BROKER)\n"
               "  --hosts N                   simulated hosts (default 1000)\n"
               "  --first K                   number of the first host (default 0)\n"
               "  --prefix P                  host ids are P-0000, P-0001, ... (default sim)\n"
               "  --connections C             AMQP connections to spread them over (default %d)\n"
               "  --heartbeat-interval D      as the agent's heartbeat_interval (default 5s)\n"
               "  --controller-public-key K   verify Placement signatures (base64 or file);\n"
               "                              without it they are not verified\n"
               "  --stats FILE                write counters as JSON to FILE every 200ms\n\n"
               "floor options:\n"
               "  --broker URL\n"
               "  --count N                   measured round trips (default 1000)\n"
               "  --warmup N                  unmeasured ones first (default 100)\n\n"
               "floor publishes a %d-byte persistent message with publisher confirms to a\n"
               "durable queue it consumes, one at a time, and prints one JSON line with the\n"
               "p50 and p99 of publish → confirmed and delivered, in microseconds.\n\n"
               "Exit codes: 0 ok, 1 failed, 2 usage.\n",
               DEFAULT_CONNECTIONS, FLOOR_BODY_SIZE);
}

static int check_url(const char *url) {
        _cleanup_free_ char *error = NULL;
        int r;

        if (isempty(url))
                return usage_error("--broker or $BATON_BROKER is required");
        r = broker_settings_validate_url(&url, &error);
        if (r < 0)
                return usage_error("--broker: %s", error ? error : STRERROR(r));
        return 0;
}

static void broker_config_for(BrokerConfig *bc, const char *url, const char *name) {
        broker_config_init(bc);
        bc->url = url;
        bc->connection_name = name;
        bc->backoff_max = USEC_PER_SEC;
        /* Hundreds of hosts share a connection: a burst of unit events after
         * a Placement to all of them must not be refused by a buffer sized
         * for one agent. */
        bc->max_pending = 0;
        bc->max_pending_bytes = 0;
}

static int verb_agents(int argc, char *argv[]) {
        enum {
                ARG_BROKER = 0x100,
                ARG_HOSTS,
                ARG_FIRST,
                ARG_PREFIX,
                ARG_CONNECTIONS,
                ARG_HEARTBEAT_INTERVAL,
                ARG_KEY,
                ARG_STATS,
        };
        static const struct option options[] = {
                { "broker", required_argument, NULL, ARG_BROKER },
                { "hosts", required_argument, NULL, ARG_HOSTS },
                { "first", required_argument, NULL, ARG_FIRST },
                { "prefix", required_argument, NULL, ARG_PREFIX },
                { "connections", required_argument, NULL, ARG_CONNECTIONS },
                { "heartbeat-interval", required_argument, NULL, ARG_HEARTBEAT_INTERVAL },
                { "controller-public-key", required_argument, NULL, ARG_KEY },
                { "stats", required_argument, NULL, ARG_STATS },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *url = getenv("BATON_BROKER"), *prefix = "sim", *key = NULL;
        size_t n_hosts = 1000, first = 0, n_conns = DEFAULT_CONNECTIONS;
        _cleanup_free_ char *error = NULL;
        Sim s = { .heartbeat_interval = DEFAULT_HEARTBEAT_INTERVAL, .next_pid = 1000 };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_BROKER:
                        url = optarg;
                        break;
                case ARG_HOSTS:
                        if (parse_size(optarg, 1, MAX_HOSTS, &n_hosts) < 0)
                                return usage_error("--hosts: expected 1..%d, got '%s'", MAX_HOSTS,
                                                   optarg);
                        break;
                case ARG_FIRST:
                        if (parse_size(optarg, 0, MAX_HOSTS, &first) < 0)
                                return usage_error("--first: expected 0..%d, got '%s'", MAX_HOSTS,
                                                   optarg);
                        break;
                case ARG_PREFIX:
                        prefix = optarg;
                        break;
                case ARG_CONNECTIONS:
                        if (parse_size(optarg, 1, MAX_CONNECTIONS, &n_conns) < 0)
                                return usage_error("--connections: expected 1..%d, got '%s'",
                                                   MAX_CONNECTIONS, optarg);
                        break;
                case ARG_HEARTBEAT_INTERVAL:
                        if (duration_parse(optarg, &s.heartbeat_interval) < 0 ||
                            s.heartbeat_interval < USEC_PER_MSEC * 10)
                                return usage_error("--heartbeat-interval: expected a duration of "
                                                   "at least 10ms, got '%s'",
                                                   optarg);
                        break;
                case ARG_KEY:
                        key = optarg;
                        break;
                case ARG_STATS:
                        s.stats_path = optarg;
                        break;
                case 'h':
                        help();
                        return EXIT_OK;
                default:
                        return EXIT_USAGE;
                }
        }
        if (optind < argc)
                return usage_error("unexpected argument '%s'", argv[optind]);
        r = check_url(url);
        if (r != 0)
                return r;
        n_conns = MIN(n_conns, n_hosts);
        if (key) {
                r = sign_public_key_load(key, &s.key, &error);
                if (r < 0)
                        return usage_error("--controller-public-key: %s",
                                           error ? error : STRERROR(r));
                s.have_key = true;
        }

        s.hosts = calloc(n_hosts, sizeof(SimHost));
        if (!s.hosts)
                return log_error_errno(-ENOMEM, "Out of memory."), EXIT_FAILED;
        s.n_hosts = n_hosts;
        for (size_t i = 0; i < n_hosts; i++) {
                r = host_init(&s, &s.hosts[i], prefix, first + i, i % n_conns);
                if (r == -EINVAL) {
                        sim_done(&s);
                        return usage_error("--prefix: '%s-%04zu' is not a valid host id (1-64 of "
                                           "A-Z a-z 0-9 - _, starting with a letter or digit)",
                                           prefix, first + i);
                }
                if (r < 0) {
                        sim_done(&s);
                        log_error_errno(r, "Failed to set up host %zu: %s", first + i, STRERROR(r));
                        return EXIT_FAILED;
                }
        }

        r = uv_loop_init(&s.loop);
        if (r < 0) {
                sim_done(&s);
                log_error("Cannot create an event loop: %s", uv_strerror(r));
                return EXIT_FAILED;
        }
        (void) uv_signal_init(&s.loop, &s.sigint);
        (void) uv_signal_init(&s.loop, &s.sigterm);
        (void) uv_timer_init(&s.loop, &s.stats_timer);
        s.sigint.data = s.sigterm.data = s.stats_timer.data = &s;
        (void) uv_signal_start(&s.sigint, on_signal, SIGINT);
        (void) uv_signal_start(&s.sigterm, on_signal, SIGTERM);
        (void) uv_timer_start(&s.stats_timer, on_stats_timer, 0, STATS_INTERVAL_MS);

        s.n_conns = n_conns;
        for (size_t k = 0; k < n_conns; k++) {
                BrokerConfig bc;

                broker_config_for(&bc, url, "baton-bench-agents");
                r = broker_new(&s.loop, &bc, on_broker_state, &s, &s.conns[k].broker);
                if (r >= 0)
                        r = topology_add_common(s.conns[k].broker);
                for (size_t i = k; r >= 0 && i < n_hosts; i += n_conns)
                        r = topology_add_agent(s.conns[k].broker, s.hosts[i].name, true, on_command,
                                               &s.hosts[i]);
                if (r >= 0)
                        r = broker_start(s.conns[k].broker);
                if (r < 0) {
                        log_error_errno(r, "Failed to set up connection %zu: %s", k, STRERROR(r));
                        break;
                }
        }

        /* Real agents start at unrelated times: spread the heartbeats evenly
         * over one interval instead of sending them all in one burst. */
        for (size_t i = 0; r >= 0 && i < n_hosts; i++) {
                SimHost *h = &s.hosts[i];
                uint64_t every = s.heartbeat_interval / USEC_PER_MSEC;

                (void) uv_timer_init(&s.loop, &h->timer);
                h->timer.data = h;
                (void) uv_timer_start(&h->timer, on_heartbeat_timer, every * i / n_hosts + 1,
                                      every);
        }
        if (r < 0)
                sim_stop(&s);
        else
                log_info("Simulating %zu hosts (%s-%04zu…) over %zu connections, heartbeat every "
                         "%" PRIu64 "ms, signatures %s.",
                         n_hosts, prefix, first, n_conns,
                         (uint64_t) (s.heartbeat_interval / USEC_PER_MSEC),
                         s.have_key ? "verified" : "not verified");

        (void) uv_run(&s.loop, UV_RUN_DEFAULT);
        (void) uv_loop_close(&s.loop);
        sim_done(&s);
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

/* ---- floor ---------------------------------------------------------------- */

typedef struct Floor {
        uv_loop_t loop;
        uv_timer_t deadline;
        Broker *broker;
        char queue[sizeof(FLOOR_QUEUE_PREFIX) + 32];
        size_t warmup, count, done;
        usec_t *rtt, *confirm, *deliver;
        usec_t sent_at, confirmed_at, delivered_at;
        bool in_flight;
        bool finished;
        int exit_code;
} Floor;

static void floor_send(Floor *f);

static void floor_closed(void *userdata) {
        Floor *f = userdata;

        loop_close_handle((uv_handle_t *) &f->deadline);
}

static void floor_finish(Floor *f, int exit_code) {
        if (f->finished)
                return;
        f->finished = true;
        f->exit_code = exit_code;
        (void) uv_timer_stop(&f->deadline);
        if (f->broker)
                broker_close(TAKE_PTR(f->broker), floor_closed, f);
        else
                loop_close_handle((uv_handle_t *) &f->deadline);
}

/* One round trip is over when the broker confirmed the message and
 * delivered it back: both are what a persistent command costs. */
static void floor_step(Floor *f) {
        if (!f->in_flight || !f->confirmed_at || !f->delivered_at)
                return;
        f->in_flight = false;
        if (f->done >= f->warmup) {
                size_t k = f->done - f->warmup;
                f->rtt[k] = MAX(f->confirmed_at, f->delivered_at) - f->sent_at;
                f->confirm[k] = f->confirmed_at - f->sent_at;
                f->deliver[k] = f->delivered_at - f->sent_at;
        }
        f->done++;
        if (f->done >= f->warmup + f->count) {
                floor_finish(f, EXIT_OK);
                return;
        }
        floor_send(f);
}

static void on_floor_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Floor *f = userdata;

        if (f->finished)
                return;
        if (outcome != BROKER_CONFIRMED) {
                log_error("The broker did not confirm a floor message: %s.",
                          broker_outcome_to_string(outcome));
                floor_finish(f, EXIT_FAILED);
                return;
        }
        f->confirmed_at = now_monotonic_usec();
        floor_step(f);
}

static void on_floor_deliver(Broker *b, const BrokerMessage *m, void *userdata) {
        Floor *f = userdata;

        (void) broker_ack(b, m->delivery_tag);
        if (f->finished || !f->in_flight)
                return;
        f->delivered_at = now_monotonic_usec();
        floor_step(f);
}

static void floor_send(Floor *f) {
        static const uint8_t body[FLOOR_BODY_SIZE] = { 0 };
        BrokerMessage m = {
                .exchange = "",
                .routing_key = f->queue,
                .content_type = "application/octet-stream",
                .persistent = true,
                .body = body,
                .body_len = sizeof(body),
        };
        int r;

        f->in_flight = true;
        f->confirmed_at = f->delivered_at = 0;
        f->sent_at = now_monotonic_usec();
        r = broker_publish(f->broker, &m, 0, on_floor_confirm, f);
        if (r < 0) {
                log_error_errno(r, "Failed to publish a floor message: %s", STRERROR(r));
                floor_finish(f, EXIT_FAILED);
        }
}

static void on_floor_state(Broker *b, BrokerState state, const char *reason, void *userdata) {
        Floor *f = userdata;

        if (state == BROKER_CONNECTED && !f->in_flight && f->done == 0)
                floor_send(f);
        else if (state == BROKER_DISCONNECTED) {
                log_error("Lost the broker during the floor measurement: %s.", strna(reason));
                floor_finish(f, EXIT_FAILED);
        }
}

static void on_floor_deadline(uv_timer_t *t) {
        Floor *f = t->data;

        log_error("The floor measurement did not finish in time (%zu of %zu round trips).", f->done,
                  f->warmup + f->count);
        floor_finish(f, EXIT_FAILED);
}

static int cmp_usec(const void *a, const void *b) {
        usec_t x = *(const usec_t *) a, y = *(const usec_t *) b;

        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static usec_t percentile(const usec_t *v, size_t n, unsigned pct) {
        size_t rank = (n * pct + 99) / 100;

        return n == 0 ? 0 : v[rank > 0 ? rank - 1 : 0];
}

static int verb_floor(int argc, char *argv[]) {
        enum {
                ARG_BROKER = 0x100,
                ARG_COUNT,
                ARG_WARMUP,
        };
        static const struct option options[] = {
                { "broker", required_argument, NULL, ARG_BROKER },
                { "count", required_argument, NULL, ARG_COUNT },
                { "warmup", required_argument, NULL, ARG_WARMUP },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        const char *url = getenv("BATON_BROKER");
        _cleanup_free_ usec_t *rtt = NULL, *confirm = NULL, *deliver = NULL;
        Floor f = { .warmup = 100, .count = 1000, .exit_code = EXIT_FAILED };
        BrokerConfig bc;
        char id[33];
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_BROKER:
                        url = optarg;
                        break;
                case ARG_COUNT:
                        if (parse_size(optarg, 1, 1000000, &f.count) < 0)
                                return usage_error("--count: expected 1..1000000, got '%s'",
                                                   optarg);
                        break;
                case ARG_WARMUP:
                        if (parse_size(optarg, 0, 1000000, &f.warmup) < 0)
                                return usage_error("--warmup: expected 0..1000000, got '%s'",
                                                   optarg);
                        break;
                case 'h':
                        help();
                        return EXIT_OK;
                default:
                        return EXIT_USAGE;
                }
        }
        if (optind < argc)
                return usage_error("unexpected argument '%s'", argv[optind]);
        r = check_url(url);
        if (r != 0)
                return r;

        rtt = calloc(f.count, sizeof(usec_t));
        confirm = calloc(f.count, sizeof(usec_t));
        deliver = calloc(f.count, sizeof(usec_t));
        if (!rtt || !confirm || !deliver)
                return log_error_errno(-ENOMEM, "Out of memory."), EXIT_FAILED;
        f.rtt = rtt;
        f.confirm = confirm;
        f.deliver = deliver;
        r = random_id(id);
        if (r < 0)
                return log_error_errno(r, "Cannot make a queue name: %s", STRERROR(r)), EXIT_FAILED;
        snprintf(f.queue, sizeof(f.queue), FLOOR_QUEUE_PREFIX "%s", id);

        r = uv_loop_init(&f.loop);
        if (r < 0) {
                log_error("Cannot create an event loop: %s", uv_strerror(r));
                return EXIT_FAILED;
        }
        (void) uv_timer_init(&f.loop, &f.deadline);
        f.deadline.data = &f;
        /* Generous: a loaded machine is slow, not broken, but a lost broker
         * must not hang the benchmark. */
        (void) uv_timer_start(&f.deadline, on_floor_deadline,
                              30 * 1000 + (uint64_t) (f.warmup + f.count) * 20, 0);

        broker_config_for(&bc, url, "baton-bench-agents floor");
        bc.reconnect = false;
        r = broker_new(&f.loop, &bc, on_floor_state, &f, &f.broker);
        /* Durable, so the persistent message is written as a command is;
         * auto-deleted once this consumer goes. */
        if (r >= 0)
                r = broker_add_queue(f.broker, f.queue, BROKER_DURABLE | BROKER_AUTO_DELETE, NULL);
        if (r >= 0)
                r = broker_add_consumer(f.broker, f.queue, 0, on_floor_deliver, &f);
        if (r >= 0)
                r = broker_start(f.broker);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the broker client: %s", STRERROR(r));
                floor_finish(&f, EXIT_FAILED);
        }
        (void) uv_run(&f.loop, UV_RUN_DEFAULT);
        (void) uv_loop_close(&f.loop);
        if (f.exit_code != EXIT_OK)
                return f.exit_code;

        qsort(rtt, f.count, sizeof(usec_t), cmp_usec);
        qsort(confirm, f.count, sizeof(usec_t), cmp_usec);
        qsort(deliver, f.count, sizeof(usec_t), cmp_usec);
        printf("{\"count\": %zu, \"body_bytes\": %d, \"rtt_p50_us\": %" PRIu64
               ", \"rtt_p99_us\": %" PRIu64 ", \"confirm_p50_us\": %" PRIu64
               ", \"deliver_p50_us\": %" PRIu64 "}\n",
               f.count, FLOOR_BODY_SIZE, (uint64_t) percentile(rtt, f.count, 50),
               (uint64_t) percentile(rtt, f.count, 99), (uint64_t) percentile(confirm, f.count, 50),
               (uint64_t) percentile(deliver, f.count, 50));
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
}

int main(int argc, char *argv[]) {
        log_setup("baton-bench-agents");
        (void) signal(SIGPIPE, SIG_IGN);

        if (argc >= 2 && streq(argv[1], "floor"))
                return verb_floor(argc - 1, argv + 1);
        return verb_agents(argc, argv);
}
