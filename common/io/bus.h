/* SPDX-License-Identifier: MIT */
/* sd-bus bridged into a uv_loop_t, and the way to reach a systemd manager
 * (system bus, or a user manager's private socket). All calls on the loop
 * thread; -errno on failure. */
#pragma once

#include <systemd/sd-bus.h>
#include <uv.h>

#include "macro.h"

typedef struct BusLoop BusLoop;

typedef enum BusScope {
        BUS_SCOPE_SYSTEM, /* the system manager: /run/systemd/private as root, else the system bus */
        BUS_SCOPE_USER,   /* a user manager: $XDG_RUNTIME_DIR/systemd/private */
        _BUS_SCOPE_MAX,
        _BUS_SCOPE_INVALID = -EINVAL,
} BusScope;

const char *bus_scope_to_string(BusScope s) _pure_;
BusScope bus_scope_from_string(const char *s) _pure_;

/* Opens a connection to the systemd manager of `scope`. `address` overrides
 * the socket ("unix:path=…"); NULL picks the default for the scope. The bus
 * is not attached to any loop yet. -ENXIO for BUS_SCOPE_USER when
 * $XDG_RUNTIME_DIR is unset (callers should say so: it is the usual mistake),
 * -ENOENT/-ECONNREFUSED when no manager listens there. */
int bus_open_manager(BusScope scope, const char *address, sd_bus **ret);

/* Drives `bus` from `loop`: a uv_poll_t on (a duplicate of) its fd with the
 * events sd-bus asks for, a uv_timer_t for its (absolute, monotonic) timeout,
 * and a uv_prepare_t that re-arms both before every poll, so queued output
 * gets POLLOUT and messages read inside synchronous calls (sd-bus then asks
 * for a timeout of "now") are never left waiting. The bus must be started.
 * Only the poll keeps the loop alive. Takes a reference on the bus. */
int bus_loop_attach(sd_bus *bus, uv_loop_t *loop, BusLoop **ret);

/* Call after anything that may have queued output outside a callback (an
 * async call from a timer, say): re-arms the poll at once. Cheap. */
void bus_loop_kick(BusLoop *l);

/* Set a function called once if the connection is lost (EOF, error), with
 * the -errno that showed it; the handles are stopped by then, and the handler
 * may call bus_loop_detach(). Never called after bus_loop_detach(). */
void bus_loop_set_disconnect_handler(BusLoop *l, void (*fn)(BusLoop *l, int error, void *userdata),
                                     void *userdata);

/* Stops and closes the handles; frees in the last close callback, then drops
 * its bus reference (the bus closes if that was the last one; it is not
 * flushed, since sd_bus_flush() can block forever on a frozen peer: call it
 * first if queued messages matter). Safe from inside any bus callback. NULL
 * is fine. */
void bus_loop_detach(BusLoop *l);

/* -errno from an sd_bus_error, or `r` when the error carries none. */
int bus_error_errno(const sd_bus_error *e, int r);
