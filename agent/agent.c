/* SPDX-License-Identifier: MIT */
/* baton-agent's shell: reads the manager over sd-bus, the host from /proc,
 * and publishes heartbeats; commands on baton.agent.<host> are decoded and
 * verified here. It is READY once it has synced with systemd, whatever the
 * broker's state: the broker is optional for keeping a host running. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent.h"
#include "capacity.h"
#include "codec.h"
#include "commands.pb-c.h"
#include "log.h"
#include "loop.h"
#include "status.pb-c.h"
#include "topology.h"
#include "util.h"

#define MANAGER_PATH "/org/freedesktop/systemd1"
#define MANAGER_INTERFACE "org.freedesktop.systemd1.Manager"

/* ---- systemd ------------------------------------------------------------- */

static void set_str(char **dst, const char *src) {
        char *copy = strdup(src);

        if (!copy)
                return;
        free(*dst);
        *dst = copy;
}

static void mark_synced(Agent *a) {
        if (a->synced || !a->systemd_version || !a->system_state)
                return;
        a->synced = true;
        log_info("Synced with systemd %s (%s).", a->systemd_version, a->system_state);
        notifier_ready(&a->notifier, "synced with systemd");
}

/* Reads the string out of a Properties.Get reply; NULL (logged) on error. */
static const char *property_reply_string(sd_bus_message *reply) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *value;
        int r;

        if (e) {
                log_warning("Failed to read a manager property: %s, ignoring.", e->message);
                return NULL;
        }
        r = sd_bus_message_read(reply, "v", "s", &value);
        if (r < 0) {
                log_warning_errno(r, "Failed to parse a manager property: %s, ignoring.",
                                  STRERROR(r));
                return NULL;
        }
        return value;
}

static int on_version(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Agent *a = userdata;
        const char *v = property_reply_string(reply);

        if (v) {
                set_str(&a->systemd_version, v);
                mark_synced(a);
        }
        return 0;
}

static int on_system_state(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Agent *a = userdata;
        const char *v = property_reply_string(reply);

        if (v) {
                set_str(&a->system_state, v);
                mark_synced(a);
        }
        return 0;
}

static int read_manager_property(Agent *a, const char *property, sd_bus_message_handler_t fn) {
        int r;

        /* No slot kept: the call floats until its reply arrives. */
        r = sd_bus_call_method_async(a->bus, NULL, "org.freedesktop.systemd1", MANAGER_PATH,
                                     "org.freedesktop.DBus.Properties", "Get", fn, a, "ss",
                                     MANAGER_INTERFACE, property);
        if (r < 0)
                return r;
        bus_loop_kick(a->bus_loop);
        return 0;
}

static void on_bus_disconnect(BusLoop *l, int error, void *userdata) {
        Agent *a = userdata;

        /* Units keep running without us; let systemd restart the agent so it
         * resyncs from scratch. */
        log_error_errno(error, "Lost the connection to systemd: %s; exiting to be restarted.",
                        STRERROR(error));
        agent_stop(a);
}

static int connect_systemd(Agent *a) {
        int r;

        r = bus_open_manager(a->config.bus_scope, a->config.bus_address, &a->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the %s manager%s%s: %s",
                                       bus_scope_to_string(a->config.bus_scope),
                                       a->config.bus_address ? " at " : "",
                                       strempty(a->config.bus_address), STRERROR(r));
        r = bus_loop_attach(a->bus, a->loop, &a->bus_loop);
        if (r < 0)
                return log_error_errno(r, "Failed to attach sd-bus to the event loop: %s",
                                       STRERROR(r));
        bus_loop_set_disconnect_handler(a->bus_loop, on_bus_disconnect, a);

        r = read_manager_property(a, "Version", on_version);
        if (r >= 0)
                r = read_manager_property(a, "SystemState", on_system_state);
        if (r < 0)
                return log_error_errno(r, "Failed to query the systemd manager: %s", STRERROR(r));
        return 0;
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

static void on_heartbeat_confirm(Broker *b, BrokerOutcome outcome, void *userdata) {
        Agent *a = userdata;

        if (outcome == BROKER_DROPPED && !a->stopping)
                a->counters.heartbeats_dropped++;
}

static int send_heartbeat(Agent *a) {
        Baton__V1__Heartbeat hb = BATON__V1__HEARTBEAT__INIT;
        Baton__V1__Capacity cap = BATON__V1__CAPACITY__INIT;
        _cleanup_free_ Baton__V1__Label *labels = NULL;
        _cleanup_free_ Baton__V1__Label **label_ptrs = NULL;
        _cleanup_free_ char *label_copy = NULL, *key = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        char message_id[33], expiration[32];
        size_t n_labels = 0, len;
        usec_t now = now_realtime_usec();
        int r;

        read_capacity(&cap);

        /* Labels were validated at load time: "k=v k=v". */
        if (!isempty(a->config.labels)) {
                size_t max = 1;
                for (const char *p = a->config.labels; *p; p++)
                        max += *p == ' ';
                label_copy = strdup(a->config.labels);
                labels = calloc(max, sizeof(Baton__V1__Label));
                label_ptrs = calloc(max, sizeof(Baton__V1__Label *));
                if (!label_copy || !labels || !label_ptrs)
                        return -ENOMEM;
                for (char *tok = strtok(label_copy, " \t"); tok && n_labels < max;
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
        }

        hb.host = a->config.host;
        hb.boot_id = a->boot_id;
        hb.agent_version = (char *) BATON_VERSION;
        hb.applied_generation = a->applied_generation;
        hb.applied_epoch = a->applied_epoch;
        hb.max_epoch_seen = a->max_epoch_seen;
        hb.capacity = &cap;
        hb.n_labels = n_labels;
        hb.labels = label_ptrs;
        hb.interval_us = a->config.heartbeat_interval;
        hb.seq = ++a->heartbeat_seq;
        hb.systemd_version = (char *) strempty(a->systemd_version);
        hb.system_state = (char *) strempty(a->system_state);
        hb.agent_started_us = a->started_at_us;
        hb.refused_total = a->counters.refused;

        r = codec_encode(&hb.base, a->config.host, a->max_epoch_seen, now, NULL, &buf, &len);
        if (r < 0)
                return r;
        r = random_id(message_id);
        if (r < 0)
                return r;
        if (asprintf(&key, "%s.%s", a->config.host, TOPOLOGY_KIND_HEARTBEAT) < 0)
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
                .type = hb.base.descriptor->name,
                .content_type = CODEC_CONTENT_TYPE,
                .expiration = expiration,
                .timestamp = now / USEC_PER_SEC,
                .body = buf,
                .body_len = len,
        };
        r = broker_publish(a->broker, &m, BROKER_PUBLISH_DROPPABLE, on_heartbeat_confirm, a);
        if (r < 0)
                return r;
        a->counters.heartbeats_sent++;
        return 0;
}

static void on_heartbeat_timer(uv_timer_t *t) {
        Agent *a = t->data;
        int r;

        /* Refresh what changes; the reply lands before the next heartbeat. */
        (void) read_manager_property(a, "SystemState", on_system_state);
        r = send_heartbeat(a);
        if (r == -ENOBUFS)
                a->counters.heartbeats_dropped++;
        else if (r < 0)
                log_warning_errno(r, "Failed to send a heartbeat: %s, ignoring.", STRERROR(r));
}

/* ---- commands ------------------------------------------------------------ */

static const ProtobufCMessageDescriptor *const command_types[] = {
        &baton__v1__placement__descriptor,
        &baton__v1__restart__descriptor,
};

static void refuse(Agent *a, const BrokerMessage *m, const char *why) {
        a->counters.refused++;
        log_fields(LOG_WARNING, 0, LOG_FIELDS({ "BATON_REFUSED", why }),
                   "Refusing command %s (type %s) on %s: %s; dead-lettered.", strna(m->message_id),
                   strna(m->type), strna(m->queue), why);
        (void) broker_reject(a->broker, m->delivery_tag, false);
}

static void on_command(Broker *b, const BrokerMessage *m, void *userdata) {
        Agent *a = userdata;
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL, *why = NULL;
        int r;

        a->counters.commands_received++;
        r = codec_decode(m->body, m->body_len, command_types, ELEMENTSOF(command_types), m->type,
                         a->have_controller_key ? &a->controller_key : NULL, &d, &error);
        if (r < 0) {
                refuse(a, m, error ? error : strerror(-r));
                return;
        }
        if (d.envelope->epoch < a->max_epoch_seen) {
                if (asprintf(&why, "stale epoch %" PRIu64 " (highest seen %" PRIu64 ")",
                             d.envelope->epoch, a->max_epoch_seen) < 0)
                        why = NULL;
                refuse(a, m, why ? why : "stale epoch");
                return;
        }
        /* Placement and Restart execution belong to the convergence engine,
         * which this version does not have yet: refuse visibly. */
        if (asprintf(&why, "%s is not supported by baton-agent %s yet", d.descriptor->name,
                     BATON_VERSION) < 0)
                why = NULL;
        refuse(a, m, why ? why : "unsupported command");
}

static void on_broker_state(Broker *b, BrokerState state, const char *reason, void *userdata) {
        Agent *a = userdata;
        int r;

        switch (state) {
        case BROKER_CONNECTED:
                log_info("Connected to the broker; reporting as host %s.", a->config.host);
                /* Full state at once on every (re)connect. */
                r = send_heartbeat(a);
                if (r < 0)
                        log_warning_errno(r, "Failed to send a heartbeat: %s, ignoring.",
                                          STRERROR(r));
                break;
        case BROKER_DISCONNECTED:
                log_warning("Lost the broker: %s; units stay as they are, reconnecting.",
                            strna(reason));
                break;
        default:
                break;
        }
}

/* ---- start and stop ------------------------------------------------------ */

static void on_signal(uv_signal_t *s, int signum) {
        log_info("Received %s, stopping.", strsignal(signum));
        agent_stop(s->data);
}

int agent_start(Agent *a, uv_loop_t *loop, AgentConfig *config) {
        _cleanup_free_ char *error = NULL;
        BrokerConfig bc;
        int r;

        *a = (Agent){
                .loop = loop,
                .config = *config,
                .started_at_us = now_realtime_usec(),
        };
        *config = (AgentConfig){ 0 };

        r = boot_id_get(a->boot_id);
        if (r < 0)
                log_warning_errno(r, "Failed to read the boot id: %s, ignoring.", STRERROR(r));
        r = mkdir_p(a->config.state_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Failed to create state directory %s: %s",
                                       a->config.state_dir, STRERROR(r));
        if (!isempty(a->config.controller_public_key)) {
                r = sign_public_key_load(a->config.controller_public_key, &a->controller_key,
                                         &error);
                if (r < 0)
                        return log_error_errno(r, "Failed to load controller_public_key: %s",
                                               error ? error : strerror(-r));
                a->have_controller_key = true;
        } else
                log_warning("No [security] controller_public_key: commands are not verified.");

        if (uv_timer_init(loop, &a->heartbeat_timer) < 0 || uv_signal_init(loop, &a->sigterm) < 0 ||
            uv_signal_init(loop, &a->sigint) < 0)
                return log_error_errno(-ENOMEM, "Failed to set up event loop handles.");
        a->heartbeat_timer.data = a->sigterm.data = a->sigint.data = a;
        (void) uv_signal_start(&a->sigterm, on_signal, SIGTERM);
        (void) uv_signal_start(&a->sigint, on_signal, SIGINT);
        (void) notifier_init(&a->notifier, loop);

        r = connect_systemd(a);
        if (r < 0)
                return r;

        broker_config_init(&bc);
        broker_settings_apply(&a->config.broker, &bc);
        bc.connection_name = "baton-agent";
        r = broker_new(loop, &bc, on_broker_state, a, &a->broker);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the broker client: %s", STRERROR(r));
        r = topology_add_common(a->broker);
        if (r >= 0)
                r = topology_add_agent(a->broker, a->config.host, on_command, a);
        if (r < 0)
                return log_error_errno(r, "Failed to declare the topology: %s", STRERROR(r));
        r = broker_start(a->broker);
        if (r < 0)
                return log_error_errno(r, "Failed to start the broker client: %s", STRERROR(r));

        (void) uv_timer_start(&a->heartbeat_timer, on_heartbeat_timer,
                              a->config.heartbeat_interval / USEC_PER_MSEC,
                              a->config.heartbeat_interval / USEC_PER_MSEC);
        log_info("Agent for host %s started (scope %s, heartbeat every %" PRIu64 "ms).",
                 a->config.host, bus_scope_to_string(a->config.bus_scope),
                 (uint64_t) (a->config.heartbeat_interval / USEC_PER_MSEC));
        return 0;
}

static void on_broker_closed(void *userdata) {
        Agent *a = userdata;

        a->broker = NULL;
        loop_close_handle((uv_handle_t *) &a->heartbeat_timer);
        loop_close_handle((uv_handle_t *) &a->sigterm);
        loop_close_handle((uv_handle_t *) &a->sigint);
        notifier_done(&a->notifier);
        if (a->bus_loop) {
                bus_loop_detach(a->bus_loop);
                a->bus_loop = NULL;
        }
}

void agent_stop(Agent *a) {
        if (a->stopping)
                return;
        a->stopping = true;
        notifier_stopping(&a->notifier);
        if (a->broker)
                broker_close(a->broker, on_broker_closed, a);
        else
                on_broker_closed(a);
}

void agent_done(Agent *a) {
        a->bus = sd_bus_flush_close_unref(a->bus);
        free(a->systemd_version);
        free(a->system_state);
        agent_config_done(&a->config);
}
