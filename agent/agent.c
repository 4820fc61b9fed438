/* SPDX-License-Identifier: MIT */
/* baton-agent's process: state file, systemd over sd-bus, the broker, and the
 * dispatch of commands on baton.agent.<host> (decoded and verified here,
 * carried out in apply.c; status goes out through report.c). It is READY once
 * it has synced with systemd, whatever the broker's state: the broker is
 * optional for keeping a host running. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent.h"
#include "codec.h"
#include "commands.pb-c.h"
#include "converge.h"
#include "dropin.h"
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
        /* The heartbeats held back until now: the full state at once. */
        if (a->broker && broker_get_state(a->broker) == BROKER_CONNECTED) {
                int r = agent_send_heartbeat(a);
                if (r < 0)
                        log_warning_errno(r, "Failed to send a heartbeat: %s, ignoring.",
                                          STRERROR(r));
        }
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

        r = systemd_new(a->bus, a->bus_loop,
                        &(SystemdCallbacks){ .unit_changed = agent_on_unit_changed }, a,
                        &a->systemd);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the systemd driver: %s", STRERROR(r));
        /* Subscribe and watch before anything is started, so no change is
         * missed; the Version reply comes after all of these (one connection,
         * in order), so being READY then means being in sync. */
        r = systemd_subscribe(a->systemd);
        if (r < 0)
                return log_error_errno(r, "Failed to subscribe to systemd: %s", STRERROR(r));
        for (size_t i = 0; i < a->state.n_units; i++) {
                r = systemd_watch(a->systemd, a->state.units[i].name);
                if (r < 0)
                        return log_error_errno(r, "Failed to watch %s: %s", a->state.units[i].name,
                                               STRERROR(r));
        }

        r = read_manager_property(a, "Version", on_version);
        if (r >= 0)
                r = read_manager_property(a, "SystemState", on_system_state);
        if (r < 0)
                return log_error_errno(r, "Failed to query the systemd manager: %s", STRERROR(r));
        return 0;
}

/* ---- state ---------------------------------------------------------------- */

static int load_state(Agent *a) {
        _cleanup_free_ char *text = NULL, *error = NULL;
        int r;

        r = read_full_file(a->state_path, 64 * 1024 * 1024, &text, NULL);
        if (r == -ENOENT) {
                log_info("No state in %s yet: starting fresh.", a->state_path);
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %s", a->state_path, STRERROR(r));
        r = agent_state_parse(text, &a->state, &error);
        if (r < 0)
                /* Refuse to guess: a wrong idea of what we manage could remove
                 * units that are not ours. */
                return log_error_errno(r, "%s: %s; refusing to start (move it away to reset).",
                                       a->state_path, error ? error : STRERROR(r));
        log_info("Loaded state: epoch %" PRIu64 ", placement %" PRIu64 "/%" PRIu64
                 ", %zu managed units.",
                 a->state.max_epoch_seen, a->state.applied_epoch, a->state.applied_generation,
                 a->state.n_units);
        return 0;
}

/* The set in a shards file (ShardChange=reload) the drop-in names. */
static int read_shards_file(const char *path, char **ret) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = read_full_file(path, DROPIN_SHARDS_FILE_MAX, &text, NULL);
        if (r < 0)
                return r;
        return dropin_shards_parse(text, ret);
}

/* The drop-ins we wrote say how each unit runs: read the shard assignments
 * back (from the shards file a drop-in names, if it does), so shard reports
 * survive an agent restart without the controller. */
static void load_shard_infos(Agent *a) {
        for (size_t i = 0; i < a->state.n_units; i++) {
                const ManagedUnitRec *u = &a->state.units[i];
                _cleanup_free_ char *rel = NULL, *path = NULL, *text = NULL, *shards = NULL;
                _cleanup_(dropin_info_done) DropinInfo info = { 0 };
                int r;

                if (!u->has_dropin || converge_dropin_file_name(u->name, &rel) < 0 ||
                    asprintf(&path, "%s/%s", a->unit_dir, rel) < 0)
                        continue;
                if (read_full_file(path, 1024 * 1024, &text, NULL) < 0 ||
                    dropin_parse(text, &info) < 0) {
                        log_warning("Cannot read back %s, ignoring.", path);
                        continue;
                }
                if (!info.has_shards)
                        continue;
                if (info.shards_file) {
                        r = read_shards_file(info.shards_file, &shards);
                        if (r < 0) {
                                log_warning_errno(r, "Cannot read back %s: %s, ignoring.",
                                                  info.shards_file, STRERROR(r));
                                continue;
                        }
                }
                r = agent_set_shard_info(a, u->name, info.service, info.instance,
                                         info.shards_file ? shards : info.shards, info.shard_count,
                                         info.shard_epoch);
                if (r < 0)
                        log_warning_errno(r, "Failed to keep the shards of %s: %s, ignoring.",
                                          u->name, STRERROR(r));
        }
}

/* "shards" beside the state file, as an absolute path: it is written into
 * drop-ins, and services do not run in the agent's working directory. Made
 * when a shards file is first written. */
static int setup_shards_dir(Agent *a) {
        _cleanup_free_ char *dir = strdup(a->state_path), *resolved = NULL;
        char *slash;

        if (!dir)
                return log_error_errno(-ENOMEM, "Out of memory.");
        slash = strrchr(dir, '/');
        assert(slash); /* state_path is "<state_dir>/state" */
        *slash = '\0';
        if (dir[0] != '/' && dir[0] != '\0') {
                resolved = realpath(dir, NULL);
                if (!resolved) {
                        int r = negative_errno();

                        return log_error_errno(r, "Failed to resolve %s: %s", dir, STRERROR(r));
                }
        }
        if (asprintf(&a->shards_dir, "%s/shards", resolved ? resolved : dir) < 0)
                return log_error_errno(-ENOMEM, "Out of memory.");
        return 0;
}

static int setup_unit_dir(Agent *a) {
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        int r;

        if (!isempty(a->config.unit_dir))
                a->unit_dir = strdup(a->config.unit_dir);
        else if (a->config.bus_scope == BUS_SCOPE_SYSTEM)
                a->unit_dir = strdup("/etc/systemd/system");
        else if (!isempty(xdg))
                (void) asprintf(&a->unit_dir, "%s/systemd/user", xdg);
        else if (!isempty(home))
                (void) asprintf(&a->unit_dir, "%s/.config/systemd/user", home);
        else
                return log_error_errno(-ENXIO, "scope=user needs $XDG_CONFIG_HOME or $HOME, or "
                                               "[agent] unit_dir=");
        if (!a->unit_dir)
                return log_error_errno(-ENOMEM, "Out of memory.");
        a->wants_target =
                a->config.bus_scope == BUS_SCOPE_SYSTEM ? "multi-user.target" : "default.target";
        r = mkdir_p(a->unit_dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s: %s", a->unit_dir, STRERROR(r));
        return 0;
}

/* ---- heartbeat ----------------------------------------------------------- */

static void on_memory_timer(uv_timer_t *t) {
        Agent *a = t->data;

        /* systemd does not signal MemoryCurrent: read it now and then. */
        (void) systemd_refresh(a->systemd);
}

static void on_heartbeat_timer(uv_timer_t *t) {
        Agent *a = t->data;
        int r;

        /* Refresh what changes; the reply lands before the next heartbeat. */
        (void) read_manager_property(a, "SystemState", on_system_state);
        r = agent_send_heartbeat(a);
        if (r < 0)
                log_warning_errno(r, "Failed to send a heartbeat: %s, ignoring.", STRERROR(r));
}

/* ---- commands ------------------------------------------------------------ */

static const ProtobufCMessageDescriptor *const command_types[] = {
        &baton__v1__placement__descriptor,
        &baton__v1__restart__descriptor,
};

static void on_command(Broker *b, const BrokerMessage *m, void *userdata) {
        Agent *a = userdata;
        CodecDecoded d = { 0 };
        _cleanup_free_ char *error = NULL, *what = NULL;
        int r;

        a->counters.commands_received++;
        if (asprintf(&what, "message %s (type %s)", strna(m->message_id), strna(m->type)) < 0)
                what = NULL;
        r = codec_decode(m->body, m->body_len, command_types, ELEMENTSOF(command_types), m->type,
                         a->have_controller_key ? &a->controller_key : NULL, &d, &error);
        if (r == -ENOMEM) {
                /* Not the message's fault: let the broker deliver it again. */
                log_warning("Out of memory decoding %s; it will be redelivered.",
                            what ? what : "a command");
                (void) broker_reject(a->broker, m->delivery_tag, true);
                return;
        }
        if (r < 0) {
                agent_refuse(a, m->delivery_tag, what ? what : "a message",
                             error ? error : STRERROR(r));
                return;
        }
        /* A signed command carries its send time under the signature: an old
         * one (dead-lettered, then re-published) is refused. */
        if (a->have_controller_key) {
                r = codec_check_age(d.envelope, now_realtime_usec(), a->config.command_max_age,
                                    &error);
                if (r < 0) {
                        agent_refuse(a, m->delivery_tag, what ? what : "a message",
                                     error ? error : "stale command");
                        codec_decoded_done(&d);
                        return;
                }
        }
        if (!a->synced) {
                /* Not yet in sync with systemd: try again shortly. */
                codec_decoded_done(&d);
                (void) broker_reject(a->broker, m->delivery_tag, true);
                return;
        }
        if (d.descriptor == &baton__v1__placement__descriptor)
                apply_placement(a, &d, m->delivery_tag);
        else
                apply_restart(a, &d, m->delivery_tag);
}

static void on_broker_state(Broker *b, BrokerState state, const char *reason, void *userdata) {
        Agent *a = userdata;
        int r;

        switch (state) {
        case BROKER_CONNECTED:
                log_info("Connected to the broker; reporting as host %s.", a->config.host);
                /* Full state at once on every (re)connect. */
                r = agent_send_heartbeat(a);
                if (r < 0)
                        log_warning_errno(r, "Failed to send a heartbeat: %s, ignoring.",
                                          STRERROR(r));
                (void) agent_send_shard_report(a);
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
        if (asprintf(&a->state_path, "%s/state", a->config.state_dir) < 0)
                return log_error_errno(-ENOMEM, "Out of memory.");
        r = setup_shards_dir(a);
        if (r < 0)
                return r;
        r = load_state(a);
        if (r < 0)
                return r;
        r = setup_unit_dir(a);
        if (r < 0)
                return r;
        load_shard_infos(a);
        if (!isempty(a->config.controller_public_key)) {
                r = sign_public_key_load(a->config.controller_public_key, &a->controller_key,
                                         &error);
                if (r < 0)
                        return log_error_errno(r, "Failed to load controller_public_key: %s",
                                               error ? error : strerror(-r));
                a->have_controller_key = true;
        } else
                /* Only reachable with insecure_unsigned = yes (agent-config.c). */
                log_error("INSECURE: no [security] controller_public_key and insecure_unsigned = "
                          "yes: this agent obeys unsigned commands from anyone who can publish "
                          "to its queue. Never run it like this outside a test.");

        if (uv_timer_init(loop, &a->heartbeat_timer) < 0 ||
            uv_timer_init(loop, &a->memory_timer) < 0 || uv_timer_init(loop, &a->retry_timer) < 0 ||
            uv_timer_init(loop, &a->report.shard_timer) < 0 ||
            uv_signal_init(loop, &a->sigterm) < 0 || uv_signal_init(loop, &a->sigint) < 0)
                return log_error_errno(-ENOMEM, "Failed to set up event loop handles.");
        a->heartbeat_timer.data = a->memory_timer.data = a->retry_timer.data =
                a->report.shard_timer.data = a->sigterm.data = a->sigint.data = a;
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
        /* With declare_topology=no the broker user may declare nothing. */
        r = a->config.declare_topology ? topology_add_common(a->broker) : 0;
        if (r >= 0)
                r = topology_add_agent(a->broker, a->config.host, a->config.declare_topology,
                                       on_command, a);
        if (r < 0)
                return log_error_errno(r, "Failed to declare the topology: %s", STRERROR(r));
        r = broker_start(a->broker);
        if (r < 0)
                return log_error_errno(r, "Failed to start the broker client: %s", STRERROR(r));

        (void) uv_timer_start(&a->heartbeat_timer, on_heartbeat_timer,
                              a->config.heartbeat_interval / USEC_PER_MSEC,
                              a->config.heartbeat_interval / USEC_PER_MSEC);
        (void) uv_timer_start(&a->memory_timer, on_memory_timer, 30 * 1000, 30 * 1000);
        log_info("Agent for host %s started (scope %s, heartbeat every %" PRIu64 "ms).",
                 a->config.host, bus_scope_to_string(a->config.bus_scope),
                 (uint64_t) (a->config.heartbeat_interval / USEC_PER_MSEC));
        return 0;
}

static void on_broker_closed(void *userdata) {
        Agent *a = userdata;

        a->broker = NULL;
        loop_close_handle((uv_handle_t *) &a->heartbeat_timer);
        loop_close_handle((uv_handle_t *) &a->memory_timer);
        loop_close_handle((uv_handle_t *) &a->retry_timer);
        loop_close_handle((uv_handle_t *) &a->report.shard_timer);
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
        /* Jobs still pending end as canceled; with a->stopping set their
         * callbacks only free what they hold. Unacked commands go back to the
         * broker and are redelivered to the next agent run. */
        a->stopping = true;
        a->systemd = systemd_free(a->systemd);
        apply_done(a);
        report_done(a);
        a->bus = sd_bus_flush_close_unref(a->bus);
        agent_state_done(&a->state);
        free(a->state_path);
        free(a->shards_dir);
        free(a->unit_dir);
        free(a->systemd_version);
        free(a->system_state);
        agent_config_done(&a->config);
}
