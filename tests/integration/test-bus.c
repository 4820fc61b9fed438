/* SPDX-License-Identifier: MIT */
/* The sd-bus ↔ libuv bridge against a real `systemd --user` manager (its
 * private socket, no bus daemon, no mocks): async calls issued outside bus
 * callbacks, signals, transient units, call timeouts driven by the uv timer,
 * and the disconnect handler when the manager goes away.
 *
 * Needs BATON_TEST_BUS_ADDRESS ("unix:path=…/systemd/private"); the last
 * cases also need BATON_TEST_MANAGER_PID, a manager this test may stop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bus.h"
#include "macro.h"
#include "tap.h"

#define DEST "org.freedesktop.systemd1"
#define PATH "/org/freedesktop/systemd1"
#define MANAGER "org.freedesktop.systemd1.Manager"

static const char *address;
static pid_t manager_pid;
static uv_loop_t loop;
static uv_timer_t deadline_timer;
static bool deadline_hit;
static sd_bus *bus;
static BusLoop *bus_loop;
static char unit_name[64];

static uint64_t now_ms(void) {
        return uv_hrtime() / 1000000;
}

static void on_deadline(uv_timer_t *t) {
        deadline_hit = true;
}

/* Runs the loop until *flag is set or timeout_ms passed; true if set. */
static bool run_until(const bool *flag, uint64_t timeout_ms) {
        deadline_hit = false;
        uv_timer_start(&deadline_timer, on_deadline, timeout_ms, 0);
        while (!*flag && !deadline_hit)
                uv_run(&loop, UV_RUN_ONCE);
        uv_timer_stop(&deadline_timer);
        return *flag;
}

static void run_for(uint64_t ms) {
        bool never = false;
        run_until(&never, ms);
}

static const char *error_name(sd_bus_message *m) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        return e ? e->name : NULL;
}

/* ---- 1: attach, and a call queued before the connection is even up ---- */

typedef struct VersionCall {
        bool done;
        char version[64];
        char error[128];
        uint64_t at_ms;
} VersionCall;

static int on_version(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        VersionCall *c = userdata;
        const char *v = NULL;

        c->done = true;
        c->at_ms = now_ms();
        if (sd_bus_message_is_method_error(m, NULL)) {
                snprintf(c->error, sizeof(c->error), "%s", strna(error_name(m)));
                return 0;
        }
        if (sd_bus_message_read(m, "v", "s", &v) < 0 || !v)
                snprintf(c->error, sizeof(c->error), "cannot read the reply");
        else
                snprintf(c->version, sizeof(c->version), "%s", v);
        return 0;
}

static int version_call_async(VersionCall *c) {
        return sd_bus_call_method_async(bus, NULL, DEST, PATH, "org.freedesktop.DBus.Properties",
                                        "Get", on_version, c, "ss", MANAGER, "Version");
}

TEST(attach_with_call_queued_during_authentication) {
        VersionCall c = { 0 };

        ASSERT_OK(bus_open_manager(BUS_SCOPE_USER, address, &bus));
        /* sd_bus_start() returned while the auth handshake is still going:
         * this call waits in the write queue until the bridge drives it. */
        ASSERT_OK(version_call_async(&c));
        ASSERT_OK(bus_loop_attach(bus, &loop, &bus_loop));
        ASSERT_TRUE(run_until(&c.done, 5000));
        ASSERT_STREQ(c.error, "");
        ASSERT_TRUE(c.version[0] != '\0');
        printf("# manager version %s\n", c.version);
}

/* ---- 2: async calls from a timer callback, without bus_loop_kick() ---- */

typedef struct CallResultLarge {
        bool done;
        char error[128];
        uint64_t at_ms;
} CallResultLarge;

static VersionCall timer_call;
static uint64_t timer_call_sent_ms;

static void on_timer_issue_call(uv_timer_t *t) {
        timer_call_sent_ms = now_ms();
        if (version_call_async(&timer_call) < 0)
                snprintf(timer_call.error, sizeof(timer_call.error), "send failed");
        uv_close((uv_handle_t *) t, NULL);
}

TEST(async_call_from_timer_gets_reply_promptly) {
        static uv_timer_t t;

        uv_timer_init(&loop, &t);
        uv_timer_start(&t, on_timer_issue_call, 20, 0);
        ASSERT_TRUE(run_until(&timer_call.done, 5000));
        ASSERT_STREQ(timer_call.error, "");
        printf("# reply after %ju ms\n", (uintmax_t) (timer_call.at_ms - timer_call_sent_ms));
        /* a round trip is ~0.1 ms here; a second means it waited for
         * something unrelated to wake the loop */
        ASSERT_LT_INT(timer_call.at_ms - timer_call_sent_ms, 1000);

        /* and a synchronous call made outside callbacks leaves nothing behind */
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *v = NULL;
        ASSERT_OK(sd_bus_get_property_string(bus, DEST, PATH, MANAGER, "Version", &e, &v));
        ASSERT_STREQ(v, timer_call.version);
}

/* A call too large for the socket buffer (sd-bus asks for 8 MB) is written
 * in parts: the rest goes out only if the poll is re-armed for POLLOUT after
 * the timer callback queued it. The manager answers the absurd unit name
 * with an error. */
static CallResultLarge large_call;
static uint64_t large_call_sent_ms;

static int on_large_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        large_call.done = true;
        large_call.at_ms = now_ms();
        snprintf(large_call.error, sizeof(large_call.error), "%s", strna(error_name(m)));
        return 0;
}

static void on_timer_issue_large_call(uv_timer_t *t) {
        const size_t size = 32u << 20;
        char *name = malloc(size + 1);

        large_call_sent_ms = now_ms();
        if (name) {
                memset(name, 'x', size);
                name[size] = '\0';
        }
        if (!name || sd_bus_call_method_async(bus, NULL, DEST, PATH, MANAGER, "GetUnit",
                                              on_large_reply, NULL, "s", name) < 0)
                snprintf(large_call.error, sizeof(large_call.error), "send failed");
        free(name);
        uv_close((uv_handle_t *) t, NULL);
}

TEST(large_call_from_timer_is_written_out) {
        static uv_timer_t t;

        uv_timer_init(&loop, &t);
        uv_timer_start(&t, on_timer_issue_large_call, 20, 0);
        ASSERT_TRUE(run_until(&large_call.done, 10000));
        printf("# %s after %ju ms\n", large_call.error,
               (uintmax_t) (large_call.at_ms - large_call_sent_ms));
        ASSERT_TRUE(strstr(large_call.error, "org.freedesktop") != NULL);
}

/* ---- 3: Subscribe, JobRemoved for a transient unit ---- */

typedef struct JobWatch {
        bool done;
        char result[32];
} JobWatch;

static JobWatch start_job;

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        JobWatch *w = userdata;
        const char *job, *unit, *result;
        uint32_t id;

        if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0)
                return 0;
        if (!streq(unit, unit_name))
                return 0;
        snprintf(w->result, sizeof(w->result), "%s", result);
        w->done = true;
        return 0;
}

typedef struct CallResult {
        bool done;
        char error[256];
} CallResult;

static int on_call_done(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CallResult *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        c->done = true;
        if (e)
                snprintf(c->error, sizeof(c->error), "%s: %s", e->name, strna(e->message));
        return 0;
}

TEST(subscribe_and_job_removed_for_transient_unit) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        CallResult started = { 0 };

        snprintf(unit_name, sizeof(unit_name), "baton-test-bus-%d.service", (int) getpid());

        /* Matches and Subscribe before the job: the signal can come at once. */
        ASSERT_OK(sd_bus_match_signal(bus, NULL, DEST, PATH, MANAGER, "JobRemoved", on_job_removed,
                                      &start_job));
        ASSERT_OK(sd_bus_call_method(bus, DEST, PATH, MANAGER, "Subscribe", &e, NULL, ""));

        ASSERT_OK(
                sd_bus_message_new_method_call(bus, &m, DEST, PATH, MANAGER, "StartTransientUnit"));
        ASSERT_OK(sd_bus_message_append(m, "ss", unit_name, "fail"));
        ASSERT_OK(sd_bus_message_append(m, "a(sv)", 2, "Description", "s", "baton test-bus",
                                        "ExecStart", "a(sasb)", 1, "/bin/sleep", 2, "/bin/sleep",
                                        "30", 0));
        ASSERT_OK(sd_bus_message_append(m, "a(sa(sv))", 0));
        ASSERT_OK(sd_bus_call_async(bus, NULL, m, on_call_done, &started, 0));

        ASSERT_TRUE(run_until(&started.done, 10000));
        ASSERT_STREQ(started.error, "");
        ASSERT_TRUE(run_until(&start_job.done, 10000));
        ASSERT_STREQ(start_job.result, "done");
}

/* ---- 4: PropertiesChanged (ActiveState) when the unit stops ---- */

typedef struct StateWatch {
        char seen[256]; /* every ActiveState seen, space-separated */
        bool inactive;
} StateWatch;

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        StateWatch *w = userdata;
        const char *iface;

        if (sd_bus_message_read(m, "s", &iface) < 0 ||
            sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
                return 0;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                const char *key, *value;

                if (sd_bus_message_read(m, "s", &key) < 0)
                        return 0;
                if (streq(key, "ActiveState")) {
                        if (sd_bus_message_read(m, "v", "s", &value) < 0)
                                return 0;
                        size_t n = strlen(w->seen);
                        snprintf(w->seen + n, sizeof(w->seen) - n, "%s%s", n ? " " : "", value);
                        if (streq(value, "inactive") || streq(value, "failed"))
                                w->inactive = true;
                } else if (sd_bus_message_skip(m, "v") < 0)
                        return 0;
                if (sd_bus_message_exit_container(m) < 0)
                        return 0;
        }
        return 0;
}

TEST(properties_changed_when_stopped) {
        _cleanup_free_ char *path = NULL;
        CallResult stopped = { 0 };
        StateWatch w = { 0 };
        sd_bus_slot *slot = NULL;

        ASSERT_OK(sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit_name, &path));
        ASSERT_OK(sd_bus_match_signal(bus, &slot, DEST, path, "org.freedesktop.DBus.Properties",
                                      "PropertiesChanged", on_properties_changed, &w));
        ASSERT_OK(sd_bus_call_method_async(bus, NULL, DEST, PATH, MANAGER, "StopUnit", on_call_done,
                                           &stopped, "ss", unit_name, "replace"));

        bool ok = run_until(&w.inactive, 10000);
        printf("# ActiveState seen: %s\n", w.seen);
        sd_bus_slot_unref(slot);
        ASSERT_TRUE(ok);
        ASSERT_TRUE(stopped.done);
        ASSERT_STREQ(stopped.error, "");
}

/* ---- 5: a call timeout fires through the uv timer ---- */

typedef struct TimeoutCall {
        bool done;
        int error;
        uint64_t at_ms;
} TimeoutCall;

static int on_timeout_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        TimeoutCall *c = userdata;

        c->done = true;
        c->at_ms = now_ms();
        c->error = sd_bus_message_get_errno(m);
        if (sd_bus_message_is_method_error(m, SD_BUS_ERROR_TIMEOUT) ||
            sd_bus_message_is_method_error(m, SD_BUS_ERROR_NO_REPLY))
                c->error = ETIMEDOUT;
        return 0;
}

static int call_with_timeout(TimeoutCall *c, uint64_t usec) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, DEST, PATH, "org.freedesktop.DBus.Properties",
                                           "Get");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "ss", MANAGER, "Version");
        if (r < 0)
                return r;
        r = sd_bus_message_set_expect_reply(m, 1);
        if (r < 0)
                return r;
        return sd_bus_call_async(bus, NULL, m, on_timeout_reply, c, usec);
}

TEST(call_timeout_fires_via_timer) {
        TimeoutCall c = { 0 };
        uint64_t t0 = now_ms();

        /* 1 µs: the deadline has passed before the reply can be read, and
         * only the timer (sd_bus_get_timeout, absolute) notices it. */
        ASSERT_OK(call_with_timeout(&c, 1));
        ASSERT_TRUE(run_until(&c.done, 5000));
        ASSERT_EQ_INT(c.error, ETIMEDOUT);
        ASSERT_LT_INT(c.at_ms - t0, 1000);

        /* the connection is still fine afterwards */
        VersionCall v = { 0 };
        ASSERT_OK(version_call_async(&v));
        ASSERT_TRUE(run_until(&v.done, 5000));
        ASSERT_STREQ(v.error, "");
}

TEST(call_timeout_against_frozen_manager) {
        TimeoutCall c = { 0 };
        uint64_t t0, elapsed;
        bool ok;

        if (manager_pid <= 0) {
                printf("# SKIP BATON_TEST_MANAGER_PID not set\n");
                return;
        }

        /* A manager that cannot answer: the 300 ms deadline must fire at
         * about 300 ms, not at once (relative read as absolute) and not
         * never (absolute read as relative). */
        ASSERT_OK(kill(manager_pid, SIGSTOP));
        t0 = now_ms();
        if (call_with_timeout(&c, 300 * USEC_PER_MSEC) < 0) {
                kill(manager_pid, SIGCONT);
                TAP_FAIL_("call_with_timeout failed");
        }
        ok = run_until(&c.done, 5000);
        elapsed = now_ms() - t0;
        kill(manager_pid, SIGCONT);

        printf("# timed out after %ju ms\n", (uintmax_t) (c.at_ms - t0));
        ASSERT_TRUE(ok);
        ASSERT_EQ_INT(c.error, ETIMEDOUT);
        ASSERT_GE_INT(c.at_ms - t0, 290);
        ASSERT_LT_INT(elapsed, 3000);

        /* the late reply is dropped and the bus works on */
        VersionCall v = { 0 };
        ASSERT_OK(version_call_async(&v));
        ASSERT_TRUE(run_until(&v.done, 5000));
        ASSERT_STREQ(v.error, "");
}

/* ---- a second connection attached and detached at once ---- */

typedef struct DetachInCallback {
        BusLoop *loop;
        bool done;
} DetachInCallback;

static int on_reply_detach(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        DetachInCallback *d = userdata;

        bus_loop_detach(d->loop);
        d->done = true;
        return 0;
}

TEST(attach_detach_second_connection) {
        _cleanup_(sd_bus_unrefp) sd_bus *b = NULL;
        DetachInCallback d = { 0 };
        BusLoop *l = NULL;

        ASSERT_OK(bus_open_manager(BUS_SCOPE_USER, address, &b));
        ASSERT_OK(bus_loop_attach(b, &loop, &l));
        run_for(50);
        bus_loop_detach(l);
        bus_loop_detach(NULL);
        run_for(50); /* close callbacks run; ASan would see a leak or use after free */

        /* detaching from inside a reply callback, i.e. inside sd_bus_process() */
        ASSERT_OK(bus_loop_attach(b, &loop, &d.loop));
        ASSERT_OK(sd_bus_call_method_async(b, NULL, DEST, PATH, "org.freedesktop.DBus.Peer", "Ping",
                                           on_reply_detach, &d, ""));
        ASSERT_TRUE(run_until(&d.done, 5000));
        run_for(50);

        /* a closed bus cannot be attached */
        sd_bus_close(b);
        ASSERT_ERR(bus_loop_attach(b, &loop, &l), -ENOTCONN);
}

TEST(open_errors) {
        sd_bus *b = NULL;
        const char *runtime = getenv("XDG_RUNTIME_DIR");
        _cleanup_free_ char *saved = runtime ? strdup(runtime) : NULL;

        unsetenv("XDG_RUNTIME_DIR");
        ASSERT_ERR(bus_open_manager(BUS_SCOPE_USER, NULL, &b), -ENXIO);
        setenv("XDG_RUNTIME_DIR", "relative/dir", 1);
        ASSERT_ERR(bus_open_manager(BUS_SCOPE_USER, NULL, &b), -ENXIO);
        setenv("XDG_RUNTIME_DIR", "/nonexistent-baton-test", 1);
        ASSERT_ERR(bus_open_manager(BUS_SCOPE_USER, NULL, &b), -ENOENT);
        if (saved)
                setenv("XDG_RUNTIME_DIR", saved, 1);
        else
                unsetenv("XDG_RUNTIME_DIR");
        ASSERT_TRUE(bus_open_manager(BUS_SCOPE_USER, "unix:path=/nonexistent/socket", &b) < 0);
        ASSERT_ERR(bus_open_manager(_BUS_SCOPE_INVALID, NULL, &b), -EINVAL);
        ASSERT_NULL(b);

        ASSERT_STREQ(bus_scope_to_string(BUS_SCOPE_USER), "user");
        ASSERT_STREQ(bus_scope_to_string(BUS_SCOPE_SYSTEM), "system");
        ASSERT_NULL(bus_scope_to_string(_BUS_SCOPE_MAX));
        ASSERT_EQ_INT(bus_scope_from_string("user"), BUS_SCOPE_USER);
        ASSERT_EQ_INT(bus_scope_from_string("session"), -EINVAL);
        ASSERT_EQ_INT(bus_scope_from_string(NULL), -EINVAL);

        sd_bus_error e = SD_BUS_ERROR_NULL;
        ASSERT_EQ_INT(bus_error_errno(&e, -EIO), -EIO);
        ASSERT_EQ_INT(bus_error_errno(NULL, -EBADMSG), -EBADMSG);
        sd_bus_error_set(&e, "org.freedesktop.systemd1.NoSuchUnit", "Unit x not found.");
        ASSERT_EQ_INT(bus_error_errno(&e, -EIO), -ENOENT);
        sd_bus_error_free(&e);
        /* sd-bus maps names it does not know to EIO */
        sd_bus_error_set(&e, "org.example.Unknown", "?");
        ASSERT_EQ_INT(bus_error_errno(&e, -EBADMSG), -EIO);
        sd_bus_error_free(&e);
}

/* ---- 6: the manager goes away ---- */

static int n_disconnects;
static int disconnect_error;
static bool disconnected_flag;

static void on_disconnect(BusLoop *l, int error, void *userdata) {
        n_disconnects++;
        disconnect_error = error;
        disconnected_flag = true;
        /* detaching from inside the handler is allowed */
        bus_loop_detach(l);
        bus_loop = NULL;
}

TEST(disconnect_handler_called_once) {
        if (manager_pid <= 0) {
                printf("# SKIP BATON_TEST_MANAGER_PID not set\n");
                return;
        }

        bus_loop_set_disconnect_handler(bus_loop, on_disconnect, NULL);
        ASSERT_OK(kill(manager_pid, SIGTERM));
        ASSERT_TRUE(run_until(&disconnected_flag, 20000));
        printf("# disconnect error %d (%s)\n", disconnect_error, strerror(-disconnect_error));
        ASSERT_LT_INT(disconnect_error, 0);
        run_for(300);
        ASSERT_EQ_INT(n_disconnects, 1);
}

int main(void) {
        const char *pid;
        int r;

        address = getenv("BATON_TEST_BUS_ADDRESS");
        if (isempty(address)) {
                printf("1..0 # SKIP BATON_TEST_BUS_ADDRESS not set\n");
                return 0;
        }
        pid = getenv("BATON_TEST_MANAGER_PID");
        manager_pid = pid ? (pid_t) atoi(pid) : 0;

        /* A stopped manager must not take us down with SIGPIPE. */
        signal(SIGPIPE, SIG_IGN);
        uv_loop_init(&loop);
        uv_timer_init(&loop, &deadline_timer);

        r = tap_run(TESTS(
                attach_with_call_queued_during_authentication,
                async_call_from_timer_gets_reply_promptly, large_call_from_timer_is_written_out,
                subscribe_and_job_removed_for_transient_unit, properties_changed_when_stopped,
                call_timeout_fires_via_timer, call_timeout_against_frozen_manager,
                attach_detach_second_connection, open_errors, disconnect_handler_called_once));

        /* Everything closes; the loop must then end by itself. */
        bus_loop_detach(bus_loop);
        sd_bus_flush_close_unref(bus);
        uv_close((uv_handle_t *) &deadline_timer, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0) {
                printf("# handles left open on the loop\n");
                r = EXIT_FAILURE;
        }
        return r;
}
