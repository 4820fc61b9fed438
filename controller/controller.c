/* SPDX-License-Identifier: MIT */
/* The controller's start and stop, and the loop's handles: the broker
 * connection (status and RPC consumers), the timers (liveness markers,
 * batched flushes of observed facts, the tick that times things out and now
 * and then checks the whole placement) and signals. */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "controller.h"
#include "log.h"
#include "loop.h"
#include "pipeline.h"
#include "records.h"
#include "rpc.h"
#include "status.h"
#include "topology.h"
#include "util.h"

/* Rollouts' health timeouts, the start gate's intervals, shard alerts: the
 * tick notices what time alone changes. */
#define TICK_INTERVAL_MS 250

static void on_marker_timer(uv_timer_t *t) {
        Controller *c = t->data;
        Baton__V1__ControllerMarker mk;
        int r;

        if (c->live.blind || c->stopping)
                return;
        liveness_marker(&c->live, c->config.id, &mk);
        r = publish_body(&c->pub, c->model.epoch, "", TOPOLOGY_QUEUE_CONTROLLER, &mk.base,
                         &(PublishOptions){ .flags = BROKER_PUBLISH_NO_RETRY });
        if (r < 0)
                /* The horizon stands still meanwhile: no host is judged. */
                log_debug("Failed to publish a marker: %s", STRERROR(r));
}

static void on_flush(uv_timer_t *t) {
        pipeline_flush_hosts(t->data);
}

static void on_tick(uv_timer_t *t) {
        Controller *c = t->data;
        usec_t now = now_monotonic_usec();
        Event ev = { .kind = EVENT_TICK };

        if (c->stopping)
                return;
        if (now - c->last_check >= c->config.check_interval) {
                ev.full_placement = true;
                c->last_check = now;
        }
        (void) pipeline_run(c, &ev); /* logs its own failure */
}

/* The thread's time waiting for a CPU, or 0 where the kernel does not say
 * (then the probe's sched_fd is closed and stays so). */
static usec_t probe_run_delay(LoopProbe *p) {
        usec_t delay = 0;

        if (p->sched_fd < 0)
                return 0;
        if (thread_run_delay_usec(p->sched_fd, &delay) < 0)
                p->sched_fd = safe_close(p->sched_fd);
        return delay;
}

static void probe_count(usec_t took, usec_t *longest, uint64_t *long_turns) {
        if (took > *longest)
                *longest = took;
        if (took > LOOP_BUSY_LONG)
                (*long_turns)++;
}

static void on_prepare(uv_prepare_t *h) {
        Controller *c = h->data;
        LoopProbe *p = &c->probe;
        uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(c->loop);
        usec_t cpu = thread_cpu_usec(), delay = probe_run_delay(p);

        if (p->at_ns > 0 && now > p->at_ns) {
                uint64_t waited = idle > p->idle_ns ? idle - p->idle_ns : 0;
                usec_t busy = (now - p->at_ns > waited ? now - p->at_ns - waited : 0) / 1000;
                usec_t busy_cpu = cpu > p->cpu_us ? cpu - p->cpu_us : 0;
                usec_t run_delay = delay > p->delay_us ? delay - p->delay_us : 0;
                /* At least its CPU: a wake-up's wait can count as run delay
                 * while the loop's idle time counts it too. */
                usec_t own = MAX(busy > run_delay ? busy - run_delay : 0, busy_cpu);

                probe_count(busy, &c->counters.longest_busy, &c->counters.busy_long);
                probe_count(busy_cpu, &c->counters.longest_busy_cpu, &c->counters.busy_long_cpu);
                probe_count(own, &c->counters.longest_busy_own, &c->counters.busy_long_own);
                if (busy > LOOP_BUSY_LONG && busy < LOOP_BUSY_WARN &&
                    p->noted_at + USEC_PER_SEC > now / 1000)
                        p->unnoted++;
                else if (busy > LOOP_BUSY_LONG && busy < LOOP_BUSY_WARN) {
                        log_info("A turn of the loop took %" PRIu64 " ms (the longest part: %s, "
                                 "%" PRIu64 " ms; CPU %" PRIu64 " ms; waiting for a CPU %s%" PRIu64
                                 " ms; %" PRIu64 " more such turns before it not noted).",
                                 (uint64_t) (busy / USEC_PER_MSEC), p->part ? p->part : "unnamed",
                                 (uint64_t) (p->part_took / USEC_PER_MSEC),
                                 (uint64_t) (busy_cpu / USEC_PER_MSEC),
                                 p->sched_fd < 0 ? "unknown, " : "",
                                 (uint64_t) (run_delay / USEC_PER_MSEC), p->unnoted);
                        p->noted_at = now / 1000;
                        p->unnoted = 0;
                }
                if (busy >= LOOP_BUSY_WARN &&
                    (p->warned_at == 0 || now / 1000 - p->warned_at >= 60 * USEC_PER_SEC)) {
                        log_warning("The controller's loop ran %.2fs without reading (the "
                                    "longest part: %s, %.2fs); heartbeats and requests waited "
                                    "meanwhile.",
                                    (double) busy / USEC_PER_SEC, p->part ? p->part : "unnamed",
                                    (double) p->part_took / USEC_PER_SEC);
                        p->warned_at = now / 1000;
                }
        }
        p->at_ns = now;
        p->idle_ns = idle;
        p->cpu_us = cpu;
        p->delay_us = delay;
        p->part = NULL;
        p->part_took = 0;
}

/* The loop's idle time is only kept when asked for before it runs. */
static void probe_start(Controller *c) {
        int r = uv_loop_configure(c->loop, UV_METRICS_IDLE_TIME);

        if (r < 0) {
                log_notice("libuv keeps no idle time here (%s): longest_busy_ms stays 0.",
                           uv_strerror(r));
                return;
        }
        if (uv_prepare_init(c->loop, &c->probe.prepare) < 0)
                return;
        /* Run-queue time tells a turn's own time from time lost to a busy
         * machine; kept by the kernel only with kernel.task_delayacct=1 or
         * schedstats (probe_run_delay closes it when it reads 0). */
        c->probe.sched_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
        if (c->probe.sched_fd < 0)
                c->probe.sched_fd = -EBADF;
        else
                (void) probe_run_delay(&c->probe); /* closes it where the kernel says nothing */
        c->probe.prepare.data = c;
        c->probe.on = true;
        (void) uv_prepare_start(&c->probe.prepare, on_prepare); /* fails only without a cb */
}

static void on_broker_state(Broker *b, BrokerState state, const char *reason, void *userdata) {
        Controller *c = userdata;
        Event ev = { .kind = EVENT_CONNECTED };

        switch (state) {
        case BROKER_CONNECTED:
                log_info("Connected to the broker as %s, vhost %s.", strna(broker_get_user(b)),
                         strna(broker_get_vhost(b)));
                notifier_status(&c->notifier, "connected to the broker");
                /* Hosts get a whole timeout to report in from now on. */
                liveness_set_blind(&c->live, false);
                host_table_grace(&c->model.hosts, now_monotonic_usec());
                /* Every host's Placement again (idempotent on the agents). */
                (void) pipeline_run(c, &ev); /* logs its own failure */
                break;
        case BROKER_DISCONNECTED:
                log_warning("Lost the broker: %s; reconnecting. Hosts are not judged "
                            "meanwhile.",
                            strna(reason));
                notifier_status(&c->notifier, "broker unreachable, reconnecting");
                liveness_set_blind(&c->live, true);
                break;
        default:
                break;
        }
}

static void on_signal(uv_signal_t *s, int signum) {
        Controller *c = s->data;

        log_info("Received %s, stopping.", strsignal(signum));
        controller_stop(c);
}

static int start_timer(uv_timer_t *t, uv_timer_cb cb, usec_t interval) {
        uint64_t ms = MAX(interval / USEC_PER_MSEC, (usec_t) 1);

        return uv_timer_start(t, cb, ms, ms);
}

int controller_start(Controller *c, uv_loop_t *loop, ControllerConfig *config) {
        _cleanup_free_ char *error = NULL;
        BrokerConfig bc;
        ModelConfig mc;
        uint64_t epoch;
        int r;

        *c = (Controller){
                .loop = loop,
                .config = *config,
                .started_at_us = now_realtime_usec(),
                .last_check = now_monotonic_usec(),
                .probe.sched_fd = -EBADF,
        };
        *config = (ControllerConfig){ 0 };
        mc = (ModelConfig){
                .host_timeout = c->config.host_timeout,
                .shard_unowned_after = c->config.shard_unowned_after,
                .mass_loss_permille = (uint32_t) c->config.mass_loss_percent * 10,
                .max_message_size = CODEC_MAX_MESSAGE_SIZE,
        };
        model_init(&c->model, &mc);
        intake_init(&c->intake, c->config.status_rate, c->config.rpc_rate);
        r = liveness_init(&c->live, c->config.host_timeout);
        if (r < 0)
                return log_error_errno(r, "Failed to make a marker nonce: %s", STRERROR(r));

        r = store_open(c->config.database, &c->store, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to open the database: %s",
                                       error ? error : STRERROR(r));
        r = store_bump_epoch(c->store, &epoch);
        if (r < 0)
                return log_error_errno(r, "Failed to raise the epoch in %s: %s", c->config.database,
                                       store_error(c->store));
        c->model.epoch = epoch;
        r = records_load(c->store, &c->model, now_monotonic_usec(), now_realtime_usec());
        if (r < 0)
                return r;

        c->pub = (Publisher){ .sender = c->config.id };
        if (!isempty(c->config.signing_key)) {
                _cleanup_free_ char *kerr = NULL;
                r = sign_key_load(c->config.signing_key, &c->signing_key, &kerr);
                if (r < 0)
                        return log_error_errno(r, "Failed to load signing_key: %s",
                                               kerr ? kerr : STRERROR(r));
                c->pub.key = &c->signing_key;
        } else
                /* Only reachable with insecure_unsigned = yes (controller-config.c). */
                log_error("INSECURE: no [security] signing_key and insecure_unsigned = yes: "
                          "commands go out unsigned, and agents that verify refuse them. Never "
                          "run it like this outside a test.");
        log_info("Controller %s starting with epoch %" PRIu64 ", %zu known hosts, %zu open alerts.",
                 c->config.id, c->model.epoch, c->model.hosts.n_hosts, c->model.n_alerts);

        broker_config_init(&bc);
        broker_settings_apply(&c->config.broker, &bc);
        bc.connection_name = "baton-controller";
        /* Room for the largest answer (in parts, published at once) on top of
         * the usual buffer; the outbox keeps its backlog well below that
         * (outbox.h). Only what is in flight takes memory. */
        bc.max_pending_bytes += CODEC_MAX_ANSWER_SIZE;
        r = broker_new(loop, &bc, on_broker_state, c, &c->broker);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the broker client: %s", STRERROR(r));
        c->pub.broker = c->broker;
        r = topology_add_common(c->broker);
        if (r >= 0)
                r = topology_add_controller(c->broker, status_on_message, rpc_on_message, c);
        if (r < 0)
                return log_error_errno(r, "Failed to declare the topology: %s", STRERROR(r));

        if (uv_timer_init(loop, &c->marker_timer) < 0 || uv_timer_init(loop, &c->flush_timer) < 0 ||
            uv_timer_init(loop, &c->tick_timer) < 0 || pipeline_init(c) < 0 ||
            rpc_queue_init(c) < 0 || outbox_init(&c->outbox, loop, &c->pub) < 0 ||
            uv_signal_init(loop, &c->sigterm) < 0 || uv_signal_init(loop, &c->sigint) < 0)
                return log_error_errno(-ENOMEM, "Failed to set up event loop handles.");
        c->handles = true;
        c->marker_timer.data = c->flush_timer.data = c->tick_timer.data = c;
        c->sigterm.data = c->sigint.data = c;
        if (uv_signal_start(&c->sigterm, on_signal, SIGTERM) < 0 ||
            uv_signal_start(&c->sigint, on_signal, SIGINT) < 0 ||
            start_timer(&c->flush_timer, on_flush, c->config.flush_interval) < 0 ||
            start_timer(&c->marker_timer, on_marker_timer, c->live.interval) < 0 ||
            start_timer(&c->tick_timer, on_tick, TICK_INTERVAL_MS * USEC_PER_MSEC) < 0)
                return log_error_errno(-EINVAL, "Failed to start the loop's timers and signals.");
        probe_start(c);
        r = notifier_init(&c->notifier, loop);
        if (r < 0)
                log_warning_errno(r,
                                  "Failed to set up sd_notify: %s; systemd is not told when "
                                  "the controller is ready.",
                                  STRERROR(r));

        r = broker_start(c->broker);
        if (r < 0)
                return log_error_errno(r, "Failed to start the broker client: %s", STRERROR(r));

        /* Ready once local state is loaded: a controller whose broker is
         * down still starts (and keeps retrying) rather than failing. */
        notifier_ready(&c->notifier, "running");
        return 0;
}

static void close_handles(void *userdata) {
        Controller *c = userdata;

        c->broker = NULL;
        c->pub.broker = NULL;
        if (!c->handles)
                return;
        loop_close_handle((uv_handle_t *) &c->marker_timer);
        loop_close_handle((uv_handle_t *) &c->flush_timer);
        loop_close_handle((uv_handle_t *) &c->tick_timer);
        if (c->probe.on)
                loop_close_handle((uv_handle_t *) &c->probe.prepare);
        c->probe.sched_fd = safe_close(c->probe.sched_fd);
        loop_close_handle((uv_handle_t *) &c->wave.timer);
        if (c->syncq.on)
                loop_close_handle((uv_handle_t *) &c->syncq.idle);
        rpc_queue_close(c);
        outbox_close(&c->outbox);
        loop_close_handle((uv_handle_t *) &c->sigterm);
        loop_close_handle((uv_handle_t *) &c->sigint);
        notifier_done(&c->notifier);
}

void controller_stop(Controller *c) {
        if (c->stopping)
                return;
        c->stopping = true;
        c->pub.stopping = true;
        notifier_stopping(&c->notifier);
        if (c->store) {
                pipeline_transitions_flush(c);
                pipeline_flush_hosts(c);
        }
        /* What waits goes out before the connection closes. */
        outbox_flush(&c->outbox);
        if (c->broker)
                broker_close(c->broker, close_handles, c);
        else
                close_handles(c);
}

void controller_done(Controller *c) {
        rpc_queue_done(c);
        pipeline_done(c);
        outbox_done(&c->outbox);
        intake_done(&c->intake);
        model_done(&c->model);
        c->store = store_close(c->store);
        controller_config_done(&c->config);
}
