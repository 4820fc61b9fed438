/* SPDX-License-Identifier: MIT */
/* sd-bus driven by libuv: one poll, one timer and one prepare handle per bus,
 * kept in step with what sd-bus wants (fd events, an absolute monotonic
 * deadline), plus the ways to reach a systemd manager without a bus daemon. */
#include "bus.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define SYSTEM_PRIVATE_SOCKET "/run/systemd/private"

/* Not a time sd-bus would ask for: makes the next arm() restart the timer. */
#define DEADLINE_STALE (UINT64_MAX - 1)
/* Messages processed per wake-up before the loop gets a turn. */
#define PROCESS_BATCH_MAX 64

struct BusLoop {
        sd_bus *bus;

        /* Our own duplicate of the bus fd: sd-bus closes its fd inside
         * sd_bus_process() when the peer goes away, and a uv_poll_t must
         * never watch a closed (or worse, reused) descriptor. */
        int fd;

        uv_poll_t poll;
        uv_timer_t timer;
        uv_prepare_t prepare;
        unsigned n_handles_open; /* freed when the last close callback ran */

        int poll_events;         /* what the poll watches now; -1 = stopped */
        uint64_t timer_deadline; /* absolute µs the timer is armed for; UINT64_MAX = none */

        bool processing; /* inside sd_bus_process(): re-entry would be a bug */
        bool disconnected;
        bool detached;

        void (*disconnect_fn)(BusLoop *l, int error, void *userdata);
        void *userdata;
};

static const char *const bus_scope_table[_BUS_SCOPE_MAX] = {
        [BUS_SCOPE_SYSTEM] = "system",
        [BUS_SCOPE_USER] = "user",
};

DEFINE_STRING_TABLE_LOOKUP(bus_scope, BusScope, _BUS_SCOPE_MAX)

int bus_error_errno(const sd_bus_error *e, int r) {
        if (e && sd_bus_error_is_set(e)) {
                int k = sd_bus_error_get_errno(e);

                if (k > 0)
                        return -k;
        }
        return r;
}

/* A manager's private socket speaks D-Bus without a bus daemon: no Hello,
 * no names, method calls go straight to systemd. */
static int bus_open_address(const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, address);
        if (r < 0)
                return r;
        r = sd_bus_start(bus);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(bus);
        return 0;
}

int bus_open_manager(BusScope scope, const char *address, sd_bus **ret) {
        _cleanup_free_ char *a = NULL;
        const char *runtime;
        int r;

        assert(ret);

        if (address)
                return bus_open_address(address, ret);

        switch (scope) {
        case BUS_SCOPE_USER:
                runtime = getenv("XDG_RUNTIME_DIR");
                if (isempty(runtime) || runtime[0] != '/') {
                        log_debug("scope=user needs $XDG_RUNTIME_DIR (an absolute path) to find "
                                  "the user manager's socket, but it is %s.",
                                  runtime ? "not absolute" : "unset");
                        return -ENXIO;
                }
                if (asprintf(&a, "unix:path=%s/systemd/private", runtime) < 0)
                        return -ENOMEM;
                return bus_open_address(a, ret);

        case BUS_SCOPE_SYSTEM:
                if (geteuid() == 0 && access(SYSTEM_PRIVATE_SOCKET, F_OK) == 0)
                        return bus_open_address("unix:path=" SYSTEM_PRIVATE_SOCKET, ret);
                r = sd_bus_open_system(ret);
                return r < 0 ? r : 0;

        default:
                return -EINVAL;
        }
}

static void handles_stop(BusLoop *l) {
        uv_poll_stop(&l->poll);
        uv_timer_stop(&l->timer);
        uv_prepare_stop(&l->prepare);
        l->poll_events = -1;
        l->timer_deadline = UINT64_MAX;
}

/* Called once: stop watching a dead connection, then tell the owner, who
 * may detach (or even attach a new bus) from inside the handler. */
static void disconnected(BusLoop *l, int error) {
        if (l->disconnected || l->detached)
                return;
        l->disconnected = true;
        handles_stop(l);

        if (l->disconnect_fn)
                l->disconnect_fn(l, error, l->userdata);
}

static void on_poll(uv_poll_t *handle, int status, int events);
static void on_timer(uv_timer_t *handle);

/* Makes the handles match what sd-bus wants now. Cheap when nothing changed:
 * no system call unless the events or the deadline moved. */
static void arm(BusLoop *l) {
        uint64_t deadline;
        int events, want = 0, r;

        if (l->disconnected || l->detached)
                return;

        /* A closing bus asks for no events and a timeout of "now": processing
         * then fails the pending calls and reports the end. */
        events = sd_bus_get_events(l->bus);
        if (events < 0) {
                disconnected(l, events);
                return;
        }
        if (events & POLLIN)
                want |= UV_READABLE;
        if (events & POLLOUT)
                want |= UV_WRITABLE;

        if (want != l->poll_events) {
                r = want ? uv_poll_start(&l->poll, want, on_poll) : uv_poll_stop(&l->poll);
                if (r < 0) {
                        disconnected(l, r); /* libuv errors are -errno on Unix */
                        return;
                }
                l->poll_events = want;
        }

        /* An absolute CLOCK_MONOTONIC time in µs, 0 for "now", UINT64_MAX for
         * none; libuv wants milliseconds from now. */
        r = sd_bus_get_timeout(l->bus, &deadline);
        if (r < 0) {
                disconnected(l, r);
                return;
        }
        if (deadline == l->timer_deadline)
                return;

        if (deadline == UINT64_MAX)
                uv_timer_stop(&l->timer);
        else {
                uint64_t now = now_monotonic_usec(), ms = 0;

                /* Round up: waking a little early would find nothing to do and
                 * spin until the deadline. */
                if (deadline > now)
                        ms = (deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC;
                uv_timer_start(&l->timer, on_timer, ms, 0);
        }
        l->timer_deadline = deadline;
}

static void process(BusLoop *l) {
        int r;

        if (l->disconnected || l->detached || l->processing)
                return;

        /* A fired timer is no longer armed, and callbacks may queue calls
         * with new deadlines: the next arm() must start the timer afresh. */
        l->timer_deadline = DEADLINE_STALE;

        /* A bounded batch: a flood of signals (a unit rewriting its
         * StatusText in a tight loop) must not keep the loop from its timers,
         * the agent's heartbeat first. What is left is still queued, so
         * sd_bus_get_timeout() says "now" and arm() comes back next round. */
        l->processing = true;
        for (unsigned n = 0; n < PROCESS_BATCH_MAX; n++) {
                r = sd_bus_process(l->bus, NULL);
                if (r <= 0 || l->detached)
                        break;
        }
        l->processing = false;

        if (r < 0) {
                /* -ECONNRESET, -ENOTCONN: the peer is gone; anything else
                 * leaves the connection unusable too. */
                disconnected(l, r);
                return;
        }
        if (!l->detached && sd_bus_is_open(l->bus) <= 0) {
                disconnected(l, -ECONNRESET);
                return;
        }
        arm(l);
}

static void on_poll(uv_poll_t *handle, int status, int events) {
        process(handle->data);
}

static void on_timer(uv_timer_t *handle) {
        process(handle->data);
}

/* Before every poll: output queued since the last round (an async call from a
 * timer callback, say) needs POLLOUT, and messages read inside a synchronous
 * call make sd_bus_get_timeout() return 0, which arms the timer to run now. */
static void on_prepare(uv_prepare_t *handle) {
        arm(handle->data);
}

static void on_close(uv_handle_t *handle) {
        BusLoop *l = handle->data;

        assert(l->n_handles_open > 0);
        if (--l->n_handles_open > 0)
                return;

        if (l->fd >= 0)
                close(l->fd);
        sd_bus_unref(l->bus);
        free(l);
}

int bus_loop_attach(sd_bus *bus, uv_loop_t *loop, BusLoop **ret) {
        _cleanup_close_ int fd = -EBADF;
        BusLoop *l;
        int r;

        assert(bus);
        assert(loop);
        assert(ret);

        if (sd_bus_is_open(bus) <= 0)
                return -ENOTCONN;
        r = sd_bus_get_fd(bus);
        if (r < 0)
                return r;
        fd = fcntl(r, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return negative_errno();

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        *l = (BusLoop){
                .bus = sd_bus_ref(bus),
                .fd = -EBADF,
                .poll_events = -1,
                .timer_deadline = UINT64_MAX,
        };

        r = uv_poll_init(loop, &l->poll, fd);
        if (r < 0) {
                sd_bus_unref(l->bus);
                free(l);
                return r;
        }
        l->fd = TAKE_FD(fd);
        /* These cannot fail on Unix for an initialized loop. */
        uv_timer_init(loop, &l->timer);
        uv_prepare_init(loop, &l->prepare);
        l->n_handles_open = 3;
        l->poll.data = l->timer.data = l->prepare.data = l;

        /* The poll keeps the loop alive while connected; the helpers do not. */
        uv_unref((uv_handle_t *) &l->timer);
        uv_unref((uv_handle_t *) &l->prepare);

        /* Fully armed by the first prepare; until then the poll watches for
         * input, which keeps the loop alive. Nothing is processed here, so
         * even a connection found dead at once is reported through a handler
         * set after attaching. */
        uv_prepare_start(&l->prepare, on_prepare);
        r = uv_poll_start(&l->poll, UV_READABLE, on_poll);
        if (r < 0) {
                bus_loop_detach(l);
                return r;
        }
        l->poll_events = UV_READABLE;

        *ret = l;
        return 0;
}

void bus_loop_kick(BusLoop *l) {
        if (l)
                arm(l);
}

void bus_loop_set_disconnect_handler(BusLoop *l, void (*fn)(BusLoop *l, int error, void *userdata),
                                     void *userdata) {
        assert(l);

        l->disconnect_fn = fn;
        l->userdata = userdata;
}

void bus_loop_detach(BusLoop *l) {
        if (!l || l->detached)
                return;

        l->detached = true;
        l->disconnect_fn = NULL;
        handles_stop(l);
        uv_close((uv_handle_t *) &l->poll, on_close);
        uv_close((uv_handle_t *) &l->timer, on_close);
        uv_close((uv_handle_t *) &l->prepare, on_close);
}
