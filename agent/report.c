/* SPDX-License-Identifier: MIT */
/* What the agent tells the controller on baton.status: heartbeats (host
 * facts and the compact state of every managed unit), unit events pushed from
 * PropertiesChanged, shard reports from StatusText readiness tokens. While the
 * broker is away the broker client buffers them; heartbeats are droppable so
 * they go first when the buffer fills, events and results are kept. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent.h"
#include "capacity.h"
#include "log.h"
#include "shards.h"
#include "status.pb-c.h"
#include "topology.h"
#include "util.h"

static void on_status_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Agent *a = userdata;

        if (outcome == BROKER_CONFIRMED || a->stopping)
                return;
        a->counters.publish_failed++;
}

static void on_heartbeat_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Agent *a = userdata;

        if (outcome == BROKER_DROPPED && !a->stopping)
                a->counters.heartbeats_dropped++;
}

int agent_publish_status(Agent *a, const char *kind, const ProtobufCMessage *body, bool droppable) {
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
                 (uint64_t) (MAX(5 * a->config.heartbeat_interval, 10 * USEC_PER_SEC) /
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
        return broker_publish(a->broker, &m, droppable ? BROKER_PUBLISH_DROPPABLE : 0,
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
        if (m)
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

int agent_send_shard_report(Agent *a) {
        Baton__V1__ShardReport rep = BATON__V1__SHARD_REPORT__INIT;
        size_t n = a->n_shards;
        _cleanup_free_ Baton__V1__ShardInstanceReport *inst = calloc(n + 1, sizeof(*inst));
        _cleanup_free_ Baton__V1__ShardInstanceReport **ptrs = calloc(n + 1, sizeof(*ptrs));
        _cleanup_free_ ShardReadiness *ready = calloc(n + 1, sizeof(*ready));
        _cleanup_free_ char **texts = calloc(3 * n + 1, sizeof(char *));
        int r = 0;

        if (!inst || !ptrs || !ready || !texts)
                return -ENOMEM;
        if (n == 0)
                return 0;

        for (size_t i = 0; i < n; i++) {
                const ShardInfo *si = &a->shards[i];
                const UnitInfo *u = systemd_unit(a->systemd, si->unit);
                const char *state = u && u->known ? u->active_state : "unknown";

                baton__v1__shard_instance_report__init(&inst[i]);
                shard_readiness_init(&ready[i]);
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
        r = agent_publish_status(a, TOPOLOGY_KIND_SHARD, &rep.base, false);

        for (size_t i = 0; i < n; i++) {
                shard_readiness_done(&ready[i]);
                free(texts[3 * i]);
                free(texts[3 * i + 1]);
                free(texts[3 * i + 2]);
        }
        return r;
}

/* ---- unit events --------------------------------------------------------- */

void agent_on_unit_changed(Systemd *s, const UnitInfo *now, const UnitInfo *old, void *userdata) {
        Agent *a = userdata;
        Baton__V1__UnitEvent ev = BATON__V1__UNIT_EVENT__INIT;
        Baton__V1__UnitState us;
        int r;

        agent_unit_state(a, now->name, &us);
        ev.host = a->config.host;
        ev.unit = &us;
        ev.previous_active_state = (char *) strempty(old->active_state);
        ev.at_us = now_realtime_usec();

        log_fields(LOG_INFO, 0,
                   LOG_FIELDS({ "BATON_UNIT", now->name },
                              { "BATON_ACTIVE_STATE", strempty(now->active_state) }),
                   "Unit %s: %s/%s (was %s/%s), restarts %u.", now->name, strna(now->active_state),
                   strna(now->sub_state), strna(old->active_state), strna(old->sub_state),
                   now->n_restarts);
        r = agent_publish_status(a, TOPOLOGY_KIND_UNIT, &ev.base, false);
        if (r < 0)
                log_warning_errno(r, "Failed to queue a unit event: %s, ignoring.", STRERROR(r));
        else
                a->counters.unit_events++;

        if (shard_info(a, now->name) && (!streq_ptr(now->status_text, old->status_text) ||
                                         !streq_ptr(now->active_state, old->active_state)))
                (void) agent_send_shard_report(a);
}
