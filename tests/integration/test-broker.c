/* SPDX-License-Identifier: MIT */
/* common/io/broker.c against a real rabbitmq-server: each case shows one trap of
 * rabbitmq-c on libuv handled. Needs BATON_TEST_AMQP_URL (a vhost URL) and
 * BATON_TEST_BROKER_DIR; the broker is stopped, started, frozen and thawed
 * with `world.py broker-ctl`. Every case runs its own loop and bounds every
 * wait, so a broken case fails instead of hanging. */

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "broker.h"
#include "tap.h"

static const char *amqp_url;
static const char *broker_dir;
static const char *source_dir;
static uv_loop_t *loop;
static char prefix[32]; /* names of this run's queues and exchanges */

/* ---------------------------------------------------------------------------------------- */
/* Harness */

/* "<prefix>.<what>" in one of 64 rotating buffers: enough for every name a
 * case keeps while it runs. */
static char *name(const char *what) {
        static char bufs[64][128];
        static unsigned i;
        char *s = bufs[i++ % ELEMENTSOF(bufs)];

        snprintf(s, sizeof(bufs[0]), "%s.%s", prefix, what);
        return s;
}

static void loop_new(void) {
        loop = malloc(sizeof(uv_loop_t));
        ASSERT_NOT_NULL(loop);
        ASSERT_EQ_INT(uv_loop_init(loop), 0);
}

static void on_tick(uv_timer_t *t) {
        (void) t;
}

typedef bool (*CondFn)(const void *userdata);

/* Runs the loop until cond holds or `ms` pass. A 20 ms tick bounds each turn;
 * it never touches a Broker, so it cannot be what gets a Broker's work done. */
static bool wait_for(CondFn cond, const void *userdata, uint64_t ms) {
        uv_timer_t tick;
        uint64_t deadline;
        bool ok;

        uv_update_time(loop);
        deadline = uv_now(loop) + ms;
        (void) uv_timer_init(loop, &tick);
        (void) uv_timer_start(&tick, on_tick, 20, 20);
        while (!(ok = cond(userdata)) && uv_now(loop) < deadline)
                (void) uv_run(loop, UV_RUN_ONCE);
        uv_close((uv_handle_t *) &tick, NULL);
        (void) uv_run(loop, UV_RUN_NOWAIT);
        return ok;
}

static bool never(const void *userdata) {
        (void) userdata;
        return false;
}

static void run_for(uint64_t ms) {
        (void) wait_for(never, NULL, ms);
}

static bool flag_set(const void *userdata) {
        return *(const bool *) userdata;
}

static bool wait_flag(const bool *flag, uint64_t ms) {
        return wait_for(flag_set, flag, ms);
}

/* Every handle of the case closed: uv_loop_close() succeeds. */
static void loop_finish(void) {
        for (int i = 0; i < 500 && uv_loop_alive(loop); i++) {
                (void) uv_run(loop, UV_RUN_NOWAIT);
                if (uv_loop_alive(loop))
                        usleep(10000);
        }
        ASSERT_EQ_INT(uv_loop_close(loop), 0);
        free(loop);
        loop = NULL;
}

static int broker_ctl(const char *action) {
        char cmd[4096];
        int r;

        snprintf(cmd, sizeof(cmd), "python3 '%s/tests/integration/world.py' broker-ctl '%s' %s >&2",
                 source_dir, broker_dir, action);
        fflush(stdout);
        r = system(cmd);
        printf("# broker-ctl %s: %d\n", action, r);
        return r == 0 ? 0 : -EIO;
}

/* A TCP port on 127.0.0.1 that nothing listens on. */
static int dead_port(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof(sa);
        int fd, port;

        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &l) < 0) {
                close(fd);
                return -errno;
        }
        port = ntohs(sa.sin_port);
        close(fd);
        return port;
}

/* State changes of one Broker, as seen through its callback. */
typedef struct Watch {
        const char *label;
        BrokerState states[64];
        size_t n_states;
        char reason[512];
        uint64_t n_connected;
        uint64_t n_disconnected;
} Watch;

static void on_state(Broker *b, BrokerState s, const char *reason, void *userdata) {
        Watch *w = userdata;

        (void) b;
        if (w->n_states < ELEMENTSOF(w->states))
                w->states[w->n_states++] = s;
        if (s == BROKER_CONNECTED)
                w->n_connected++;
        if (s == BROKER_DISCONNECTED) {
                w->n_disconnected++;
                snprintf(w->reason, sizeof(w->reason), "%s", reason ? reason : "(null)");
        }
        printf("# %s: %s%s%s\n", w->label, broker_state_to_string(s), reason ? ": " : "",
               reason ? reason : "");
}

typedef struct StateWait {
        const Watch *w;
        uint64_t n;
} StateWait;

static bool connected_n(const void *userdata) {
        const StateWait *sw = userdata;
        return sw->w->n_connected >= sw->n;
}

static bool disconnected_n(const void *userdata) {
        const StateWait *sw = userdata;
        return sw->w->n_disconnected >= sw->n;
}

static bool wait_connected(const Watch *w, uint64_t n, uint64_t ms) {
        StateWait sw = { w, n };
        return wait_for(connected_n, &sw, ms);
}

static bool wait_disconnected(const Watch *w, uint64_t n, uint64_t ms) {
        StateWait sw = { w, n };
        return wait_for(disconnected_n, &sw, ms);
}

static void test_config(BrokerConfig *c, const char *url) {
        broker_config_init(c);
        c->url = url;
        c->connection_name = "test-broker";
        c->connect_timeout = 3 * USEC_PER_SEC;
        c->rpc_timeout = 5 * USEC_PER_SEC;
        c->backoff_min = 100 * USEC_PER_MSEC;
        c->backoff_max = 1 * USEC_PER_SEC;
}

static void on_closed(void *userdata) {
        *(bool *) userdata = true;
}

static void close_broker(Broker *b) {
        bool closed = false;

        broker_close(b, on_closed, &closed);
        ASSERT_TRUE(wait_flag(&closed, 10000));
}

/* A delivered message, copied out of the callback so the test body can assert. */
typedef struct Got {
        char *exchange, *routing_key, *message_id, *type, *content_type, *reply_to, *correlation_id,
                *user_id, *expiration, *queue, *body;
        size_t body_len;
        uint64_t timestamp, delivery_tag;
        bool persistent, redelivered;
        BrokerHeader headers[16];
        size_t n_headers;
} Got;

static char *dup_opt(const char *s) {
        return s ? strdup(s) : NULL;
}

static void got_fill(Got *g, const BrokerMessage *m) {
        g->exchange = dup_opt(m->exchange);
        g->routing_key = dup_opt(m->routing_key);
        g->message_id = dup_opt(m->message_id);
        g->type = dup_opt(m->type);
        g->content_type = dup_opt(m->content_type);
        g->reply_to = dup_opt(m->reply_to);
        g->correlation_id = dup_opt(m->correlation_id);
        g->user_id = dup_opt(m->user_id);
        g->expiration = dup_opt(m->expiration);
        g->queue = dup_opt(m->queue);
        g->body = malloc(m->body_len + 1);
        memcpy(g->body, m->body, m->body_len);
        g->body[m->body_len] = 0;
        g->body_len = m->body_len;
        g->timestamp = m->timestamp;
        g->delivery_tag = m->delivery_tag;
        g->persistent = m->persistent;
        g->redelivered = m->redelivered;
        for (size_t i = 0; i < m->n_headers && i < ELEMENTSOF(g->headers); i++) {
                g->headers[i].key = strdup(m->headers[i].key);
                g->headers[i].value = strdup(m->headers[i].value);
                g->n_headers++;
        }
}

static void got_clear(Got *g) {
        free(g->exchange);
        free(g->routing_key);
        free(g->message_id);
        free(g->type);
        free(g->content_type);
        free(g->reply_to);
        free(g->correlation_id);
        free(g->user_id);
        free(g->expiration);
        free(g->queue);
        free(g->body);
        for (size_t i = 0; i < g->n_headers; i++) {
                free((char *) g->headers[i].key);
                free((char *) g->headers[i].value);
        }
        *g = (Got){ 0 };
}

static const char *got_header(const Got *g, const char *key) {
        for (size_t i = 0; i < g->n_headers; i++)
                if (streq(g->headers[i].key, key))
                        return g->headers[i].value;
        return NULL;
}

/* Deliveries of one consumer, kept in order. */
typedef struct Inbox {
        Got got[64];
        size_t n;
        bool ack; /* ack each delivery in the callback */
        bool reject;
        int settle_result;
} Inbox;

static void on_deliver(Broker *b, const BrokerMessage *m, void *userdata) {
        Inbox *in = userdata;

        if (in->n < ELEMENTSOF(in->got))
                got_fill(&in->got[in->n], m);
        in->n++;
        if (in->ack)
                in->settle_result = broker_ack(b, m->delivery_tag);
        else if (in->reject)
                in->settle_result = broker_reject(b, m->delivery_tag, false);
}

static void inbox_clear(Inbox *in) {
        for (size_t i = 0; i < MIN(in->n, ELEMENTSOF(in->got)); i++)
                got_clear(&in->got[i]);
        in->n = 0;
}

typedef struct InboxWait {
        const Inbox *in;
        size_t n;
} InboxWait;

static bool inbox_has(const void *userdata) {
        const InboxWait *iw = userdata;
        return iw->in->n >= iw->n;
}

static bool wait_inbox(const Inbox *in, size_t n, uint64_t ms) {
        InboxWait iw = { in, n };
        return wait_for(inbox_has, &iw, ms);
}

/* The outcome of one publish; -1 until called back. */
typedef struct Outcome {
        int outcome;
        unsigned calls;
        unsigned order; /* n-th outcome of the case to arrive */
} Outcome;

static unsigned outcome_counter;

static void on_confirm(Broker *b, BrokerOutcome o, void *userdata) {
        Outcome *out = userdata;

        (void) b;
        out->outcome = (int) o;
        out->calls++;
        out->order = ++outcome_counter;
}

static bool outcome_known(const void *userdata) {
        return ((const Outcome *) userdata)->calls > 0;
}

static bool wait_outcome(const Outcome *o, uint64_t ms) {
        return wait_for(outcome_known, o, ms);
}

static int publish_text(Broker *b, const char *exchange, const char *key, const char *text,
                        unsigned flags, Outcome *out) {
        BrokerMessage m = {
                .exchange = exchange,
                .routing_key = key,
                .body = text,
                .body_len = strlen(text),
        };
        if (out)
                *out = (Outcome){ .outcome = -1 };
        return broker_publish(b, &m, flags, out ? on_confirm : NULL, out);
}

/* ---------------------------------------------------------------------------------------- */
/* 0. The API without a broker: URL rules, string tables, argument checks. */

TEST(api_without_broker) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "api" };
        BrokerMessage m = { .routing_key = "x" };
        BrokerHeader bad[] = { { .key = NULL, .value = "v" } };
        char longname[300];

        loop_new();
        broker_config_init(&c);
        c.url = "not a url";
        ASSERT_ERR(broker_new(loop, &c, NULL, NULL, &b), -EINVAL);
        c.url = "amqp://guest:guest@127.0.0.1:5672/"; /* empty vhost: cannot exist */
        ASSERT_ERR(broker_new(loop, &c, NULL, NULL, &b), -EINVAL);
        c.url = "amqp://u%40x:p@127.0.0.1:5672/%2Fbaton";
        c.backoff_max = c.backoff_min - 1;
        ASSERT_ERR(broker_new(loop, &c, NULL, NULL, &b), -EINVAL);
        c.backoff_max = 30 * USEC_PER_SEC;
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_STREQ(broker_get_vhost(b), "/baton");
        ASSERT_STREQ(broker_get_user(b), "u@x");
        ASSERT_EQ_INT(broker_get_state(b), BROKER_IDLE);
        ASSERT_NULL(broker_get_server_named_queue(b, 0));

        ASSERT_ERR(broker_add_binding(b, NULL, "amq.direct", "k"),
                   -EINVAL);                                      /* no server-named yet */
        ASSERT_ERR(broker_add_binding(b, "q", "", "k"), -EINVAL); /* default exchange */
        ASSERT_ERR(broker_add_consumer(b, "q", 0, NULL, NULL), -EINVAL);
        ASSERT_ERR(broker_add_exchange(b, "x", "direct", 1u << 9), -EINVAL);
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = 0;
        ASSERT_ERR(broker_add_queue(b, longname, 0, NULL), -EINVAL);
        ASSERT_OK(broker_add_queue(b, NULL, BROKER_EXCLUSIVE, NULL));
        ASSERT_OK(broker_add_binding(b, NULL, "amq.direct", "k"));

        m.exchange = longname;
        ASSERT_ERR(broker_publish(b, &m, 0, NULL, NULL), -EINVAL);
        m.exchange = "";
        m.headers = bad;
        m.n_headers = 1;
        ASSERT_ERR(broker_publish(b, &m, 0, NULL, NULL), -EINVAL);
        m.n_headers = 0;
        ASSERT_ERR(broker_publish(b, &m, 1u << 7, NULL, NULL), -EINVAL);
        ASSERT_ERR(broker_ack(b, 0), -EINVAL);
        ASSERT_ERR(broker_ack(b, (UINT64_C(1) << 44) | 1), -ESTALE);

        ASSERT_STREQ(broker_state_to_string(BROKER_DISCONNECTED), "disconnected");
        ASSERT_STREQ(broker_outcome_to_string(BROKER_RETURNED), "returned");
        ASSERT_NULL(broker_state_to_string(_BROKER_STATE_MAX));
        ASSERT_NULL(broker_outcome_to_string(_BROKER_OUTCOME_INVALID));
        for (int i = 0; i < _BROKER_STATE_MAX; i++)
                ASSERT_EQ_INT(broker_state_from_string(broker_state_to_string(i)), i);
        for (int i = 0; i < _BROKER_OUTCOME_MAX; i++)
                ASSERT_EQ_INT(broker_outcome_from_string(broker_outcome_to_string(i)), i);
        ASSERT_EQ_INT(broker_state_from_string("up"), _BROKER_STATE_INVALID);
        ASSERT_EQ_INT(broker_outcome_from_string(NULL), _BROKER_OUTCOME_INVALID);

        /* Closing a Broker that never started: handles close, closed_cb runs, nothing leaks. */
        close_broker(b);
        ASSERT_EQ_UINT(w.n_states, 0);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 1. Every property and string header round-trips; the publish is CONFIRMED. */

TEST(roundtrip_properties) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "roundtrip" };
        Inbox in = { .ack = true };
        Outcome out;
        BrokerStats st;
        BrokerHeader hdrs[] = {
                { "severity", "critical" },
                { "kind", "unit-failed" },
                { "summary", "sentinel@3 failed: exit-code 1 – ünïcode ok" },
        };
        BrokerMessage m = {
                .exchange = "",
                .routing_key = name("rt"),
                .message_id = "msg-1",
                .type = "baton.v1.Alert",
                .content_type = "application/x-protobuf",
                .reply_to = "somewhere",
                .correlation_id = "corr-7",
                .expiration = "60000",
                .timestamp = 1700000000,
                .persistent = true,
                .headers = hdrs,
                .n_headers = ELEMENTSOF(hdrs),
                .body = "\0binary\xff body",
                .body_len = 13,
        };
        const Got *g;

        loop_new();
        test_config(&c, amqp_url);
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_queue(b, name("rt"), BROKER_EXCLUSIVE, NULL));
        ASSERT_OK(broker_add_consumer(b, name("rt"), 0, on_deliver, &in));
        ASSERT_OK(broker_start(b));
        ASSERT_EQ_INT(broker_add_queue(b, "late", 0, NULL), -EBUSY);
        ASSERT_TRUE(wait_connected(&w, 1, 15000));

        m.user_id = broker_get_user(b); /* the broker refuses a user_id that is not ours */
        out = (Outcome){ .outcome = -1 };
        ASSERT_OK(broker_publish(b, &m, BROKER_PUBLISH_MANDATORY, on_confirm, &out));
        ASSERT_TRUE(wait_outcome(&out, 10000));
        ASSERT_TRUE(wait_inbox(&in, 1, 10000));
        ASSERT_EQ_INT(out.outcome, BROKER_CONFIRMED);
        ASSERT_EQ_UINT(out.calls, 1);

        g = &in.got[0];
        ASSERT_STREQ(g->exchange, "");
        ASSERT_STREQ(g->routing_key, name("rt"));
        ASSERT_STREQ(g->queue, name("rt"));
        ASSERT_STREQ(g->message_id, "msg-1");
        ASSERT_STREQ(g->type, "baton.v1.Alert");
        ASSERT_STREQ(g->content_type, "application/x-protobuf");
        ASSERT_STREQ(g->reply_to, "somewhere");
        ASSERT_STREQ(g->correlation_id, "corr-7");
        ASSERT_STREQ(g->user_id, broker_get_user(b));
        ASSERT_STREQ(g->expiration, "60000");
        ASSERT_EQ_UINT(g->timestamp, 1700000000);
        ASSERT_TRUE(g->persistent);
        ASSERT_FALSE(g->redelivered);
        ASSERT_EQ_UINT(g->body_len, 13);
        ASSERT_TRUE(memcmp(g->body, "\0binary\xff body", 13) == 0);
        ASSERT_EQ_UINT(g->n_headers, 3);
        for (size_t i = 0; i < ELEMENTSOF(hdrs); i++)
                ASSERT_STREQ(got_header(g, hdrs[i].key), hdrs[i].value);
        ASSERT_NE_UINT(g->delivery_tag, 0);
        ASSERT_EQ_INT(in.settle_result, 0);

        broker_get_stats(b, &st);
        ASSERT_EQ_UINT(st.connects, 1);
        ASSERT_EQ_UINT(st.published, 1);
        ASSERT_EQ_UINT(st.confirmed, 1);
        ASSERT_EQ_UINT(st.delivered, 1);
        ASSERT_EQ_UINT(st.acked, 1);
        ASSERT_EQ_UINT(st.pending, 0);
        ASSERT_EQ_UINT(st.pending_bytes, 0);

        close_broker(b);
        inbox_clear(&in);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 2. A burst of 2000 publishes to a queue we consume from: every confirm and
 * delivery arrives promptly. Frames a write pulled into rabbitmq-c's queue
 * never make the socket readable; if only the heartbeat timer (every 5 s here)
 * drained them, this would take seconds. */

#define BURST 2000

typedef struct Burst {
        size_t delivered, confirmed, other;
        int ack_errors;
} Burst;

static void burst_deliver(Broker *b, const BrokerMessage *m, void *userdata) {
        Burst *bu = userdata;

        bu->delivered++;
        if (broker_ack(b, m->delivery_tag) < 0)
                bu->ack_errors++;
}

static void burst_confirm(Broker *b, BrokerOutcome o, void *userdata) {
        Burst *bu = userdata;

        (void) b;
        if (o == BROKER_CONFIRMED)
                bu->confirmed++;
        else
                bu->other++;
}

static bool burst_done(const void *userdata) {
        const Burst *bu = userdata;
        return bu->delivered >= BURST && bu->confirmed + bu->other >= BURST;
}

TEST(burst_drains_after_publish) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "burst" };
        Burst bu = { 0 };
        BrokerStats st;
        uint64_t t0, ms;
        char body[64];

        loop_new();
        test_config(&c, amqp_url);
        c.heartbeat = 10 * USEC_PER_SEC;
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_queue(b, name("burst"), BROKER_EXCLUSIVE, NULL));
        ASSERT_OK(broker_add_consumer(b, name("burst"), 0, burst_deliver, &bu));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_connected(&w, 1, 15000));

        t0 = uv_hrtime();
        for (unsigned i = 0; i < BURST; i++) {
                BrokerMessage m = { .exchange = "", .routing_key = name("burst"), .body = body };
                m.body_len = (size_t) snprintf(body, sizeof(body), "message %u", i);
                ASSERT_OK(broker_publish(b, &m, 0, burst_confirm, &bu));
        }
        ASSERT_TRUE(wait_for(burst_done, &bu, 20000));
        ms = (uv_hrtime() - t0) / 1000000;
        printf("# %d publishes confirmed and delivered in %" PRIu64 " ms\n", BURST, ms);
        ASSERT_LT_INT(ms, 2500);
        ASSERT_EQ_UINT(bu.delivered, BURST);
        ASSERT_EQ_UINT(bu.confirmed, BURST);
        ASSERT_EQ_INT(bu.ack_errors, 0);

        broker_get_stats(b, &st);
        ASSERT_EQ_UINT(st.published, BURST);
        ASSERT_EQ_UINT(st.confirmed, BURST);
        ASSERT_EQ_UINT(st.acked, BURST);
        ASSERT_EQ_UINT(st.pending, 0);
        ASSERT_EQ_UINT(st.connects, 1);

        close_broker(b);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 2b. Deliveries that arrive while the worker still declares (consume first,
 * declarations after it) are read by those RPCs into rabbitmq-c's frame
 * queue; the socket is then not readable, so they must be drained as soon as
 * the loop takes the connection over, not at the next heartbeat. */

#define PREFILLED 300

static bool prefill_confirmed(const void *userdata) {
        const Burst *bu = userdata;
        return bu->confirmed + bu->other >= PREFILLED;
}

static bool burst_delivered(const void *userdata) {
        return ((const Burst *) userdata)->delivered >= PREFILLED;
}

TEST(queued_during_setup_dispatched) {
        BrokerConfig c;
        Broker *pub, *sub;
        Watch wp = { .label = "prefill" }, ws = { .label = "setup" };
        Burst fill = { 0 }, bu = { 0 };
        uint64_t t0, ms;

        loop_new();
        test_config(&c, amqp_url);
        c.heartbeat = 10 * USEC_PER_SEC;
        ASSERT_OK(broker_new(loop, &c, on_state, &wp, &pub));
        ASSERT_OK(broker_add_queue(pub, name("prefilled"), BROKER_AUTO_DELETE, NULL));
        ASSERT_OK(broker_start(pub));
        ASSERT_TRUE(wait_connected(&wp, 1, 15000));
        for (unsigned i = 0; i < PREFILLED; i++) {
                BrokerMessage m = { .exchange = "",
                                    .routing_key = name("prefilled"),
                                    .body = "waiting",
                                    .body_len = 7 };
                ASSERT_OK(broker_publish(pub, &m, 0, burst_confirm, &fill));
        }
        ASSERT_TRUE(wait_for(prefill_confirmed, &fill, 10000));
        ASSERT_EQ_UINT(fill.confirmed, PREFILLED);
        close_broker(pub); /* the queue stays: it never had a consumer */

        ASSERT_OK(broker_new(loop, &c, on_state, &ws, &sub));
        ASSERT_OK(broker_add_consumer(sub, name("prefilled"), 0, burst_deliver, &bu));
        for (unsigned i = 0; i < 20; i++) {
                char q[32];
                snprintf(q, sizeof(q), "after%u", i);
                ASSERT_OK(broker_add_queue(sub, name(q), BROKER_EXCLUSIVE, NULL));
        }
        ASSERT_OK(broker_start(sub));
        ASSERT_TRUE(wait_connected(&ws, 1, 15000));
        t0 = uv_hrtime();
        ASSERT_TRUE(wait_for(burst_delivered, &bu, 20000));
        ms = (uv_hrtime() - t0) / 1000000;
        printf("# %d waiting messages delivered %" PRIu64 " ms after CONNECTED\n", PREFILLED, ms);
        ASSERT_LT_INT(ms, 2500);
        ASSERT_EQ_INT(bu.ack_errors, 0);

        close_broker(sub);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 3. Mandatory and unroutable → RETURNED (the return precedes the ack); a
 * full queue with x-overflow=reject-publish → NACKED; the others CONFIRMED. */

TEST(returned_and_nacked) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "return" };
        BrokerQueueArgs full = { .max_length = 1, .overflow = "reject-publish" };
        Outcome ret, ok, f1, f2;
        BrokerStats st;

        loop_new();
        test_config(&c, amqp_url);
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_queue(b, name("ok"), BROKER_EXCLUSIVE, NULL));
        ASSERT_OK(broker_add_queue(b, name("full"), BROKER_EXCLUSIVE, &full));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_connected(&w, 1, 15000));

        ASSERT_OK(publish_text(b, "amq.direct", name("nowhere"), "lost", BROKER_PUBLISH_MANDATORY,
                               &ret));
        ASSERT_OK(publish_text(b, "", name("ok"), "routed", BROKER_PUBLISH_MANDATORY, &ok));
        ASSERT_OK(publish_text(b, "", name("full"), "first", 0, &f1));
        ASSERT_OK(publish_text(b, "", name("full"), "second", 0, &f2));
        ASSERT_TRUE(wait_outcome(&ret, 10000));
        ASSERT_TRUE(wait_outcome(&ok, 10000));
        ASSERT_TRUE(wait_outcome(&f1, 10000));
        ASSERT_TRUE(wait_outcome(&f2, 10000));
        ASSERT_EQ_INT(ret.outcome, BROKER_RETURNED);
        ASSERT_EQ_INT(ok.outcome, BROKER_CONFIRMED);
        ASSERT_EQ_INT(f1.outcome, BROKER_CONFIRMED);
        ASSERT_EQ_INT(f2.outcome, BROKER_NACKED);

        broker_get_stats(b, &st);
        ASSERT_EQ_UINT(st.returned, 1);
        ASSERT_EQ_UINT(st.nacked, 1);
        ASSERT_EQ_UINT(st.confirmed, 2);
        ASSERT_EQ_UINT(st.pending, 0);

        close_broker(b);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 4. Reject without requeue on a queue with x-dead-letter-exchange: the message
 * lands in the dead-letter queue (numeric and string headers readable). */

TEST(reject_dead_letters) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "dlx" };
        Inbox work = { .reject = true }, dead = { .ack = true };
        BrokerQueueArgs args = { .dead_letter_exchange = name("dlx") };
        BrokerStats st;

        loop_new();
        test_config(&c, amqp_url);
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_exchange(b, name("dlx"), "fanout", BROKER_AUTO_DELETE));
        ASSERT_OK(broker_add_queue(b, name("dead"), BROKER_EXCLUSIVE, NULL));
        ASSERT_OK(broker_add_binding(b, name("dead"), name("dlx"), ""));
        ASSERT_OK(broker_add_queue(b, name("work"), BROKER_EXCLUSIVE, &args));
        ASSERT_OK(broker_add_consumer(b, name("work"), 0, on_deliver, &work));
        ASSERT_OK(broker_add_consumer(b, name("dead"), 0, on_deliver, &dead));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_connected(&w, 1, 15000));

        ASSERT_OK(publish_text(b, "", name("work"), "doomed", 0, NULL));
        ASSERT_TRUE(wait_inbox(&dead, 1, 10000));
        ASSERT_EQ_UINT(work.n, 1);
        ASSERT_EQ_INT(work.settle_result, 0);
        ASSERT_STREQ(dead.got[0].body, "doomed");
        ASSERT_STREQ(dead.got[0].queue, name("dead"));
        ASSERT_STREQ(dead.got[0].exchange, name("dlx"));
        ASSERT_STREQ(got_header(&dead.got[0], "x-first-death-reason"), "rejected");
        ASSERT_STREQ(got_header(&dead.got[0], "x-first-death-queue"), name("work"));

        broker_get_stats(b, &st);
        ASSERT_EQ_UINT(st.rejected, 1);
        ASSERT_EQ_UINT(st.acked, 1);
        ASSERT_EQ_UINT(st.delivered, 2);

        close_broker(b);
        inbox_clear(&work);
        inbox_clear(&dead);
        loop_finish();
}

/* Acks of deliveries handled in order are gathered into one ack with
 * `multiple` set; one held back must stay unacked through that: here the
 * first of ten is held while the nine behind it are acked, then rejected
 * with requeue, and comes again. Had a gathered ack covered it, the reject
 * would name an unknown tag and the broker would close the channel. */
typedef struct Holder {
        Inbox in;
        uint64_t held;
} Holder;

static void holder_deliver(Broker *b, const BrokerMessage *m, void *userdata) {
        Holder *h = userdata;

        if (h->in.n < ELEMENTSOF(h->in.got))
                got_fill(&h->in.got[h->in.n], m);
        h->in.n++;
        if (h->held == 0)
                h->held = m->delivery_tag; /* settled later, out of order */
        else if (broker_ack(b, m->delivery_tag) < 0)
                h->in.settle_result = -EIO;
}

TEST(acks_gathered_never_cover_a_held_delivery) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "acks" };
        Holder h = { 0 };
        BrokerStats st;
        char text[16];

        loop_new();
        test_config(&c, amqp_url);
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_queue(b, name("acks"), BROKER_EXCLUSIVE, NULL));
        ASSERT_OK(broker_add_consumer(b, name("acks"), 0, holder_deliver, &h));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_connected(&w, 1, 15000));

        for (int i = 0; i < 10; i++) {
                snprintf(text, sizeof(text), "m%d", i);
                ASSERT_OK(publish_text(b, "", name("acks"), text, 0, NULL));
        }
        ASSERT_TRUE(wait_inbox(&h.in, 10, 10000));
        ASSERT_EQ_INT(h.in.settle_result, 0);
        ASSERT_STREQ(h.in.got[0].body, "m0");
        run_for(300); /* the gathered ack goes out */

        ASSERT_OK(broker_reject(b, h.held, true));
        ASSERT_TRUE(wait_inbox(&h.in, 11, 10000));
        ASSERT_STREQ(h.in.got[10].body, "m0");
        ASSERT_TRUE(h.in.got[10].redelivered);
        run_for(300);
        broker_get_stats(b, &st);
        ASSERT_EQ_UINT(st.channel_closes, 0);
        ASSERT_EQ_UINT(st.acked, 10);
        ASSERT_EQ_UINT(st.rejected, 1);
        ASSERT_EQ_UINT(h.in.n, 11); /* nothing else came again */
        ASSERT_EQ_UINT(w.n_connected, 1);

        close_broker(b);
        inbox_clear(&h.in);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 5. A bad `expiration` makes the broker close the channel (406). We answer
 * close-ok and reopen on the same connection; the poison publish is written
 * alone on each new channel and ends DROPPED after MAX_ATTEMPTS (3) channels,
 * while the publishes written right behind it and a later one are CONFIRMED
 * and delivered in order (re-consumed after each reopen). No reconnect. */

TEST(poison_publish_reopens_channel) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "poison" };
        Inbox in = { .ack = true };
        BrokerMessage poison = { .exchange = "",
                                 .routing_key = name("poison"),
                                 .expiration = "abc",
                                 .body = "poison",
                                 .body_len = 6 };
        Outcome p, behind[5], later;
        BrokerStats st;
        char text[16];

        loop_new();
        test_config(&c, amqp_url);
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_queue(b, name("poison"), BROKER_EXCLUSIVE, NULL));
        ASSERT_OK(broker_add_consumer(b, name("poison"), 0, on_deliver, &in));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_connected(&w, 1, 15000));

        p = (Outcome){ .outcome = -1 };
        ASSERT_OK(broker_publish(b, &poison, 0, on_confirm, &p));
        for (size_t i = 0; i < ELEMENTSOF(behind); i++) {
                snprintf(text, sizeof(text), "n%zu", i);
                ASSERT_OK(publish_text(b, "", name("poison"), text, 0, &behind[i]));
        }
        ASSERT_TRUE(wait_outcome(&p, 15000));
        ASSERT_EQ_INT(p.outcome, BROKER_DROPPED);
        for (size_t i = 0; i < ELEMENTSOF(behind); i++) {
                ASSERT_TRUE(wait_outcome(&behind[i], 10000));
                ASSERT_EQ_INT(behind[i].outcome, BROKER_CONFIRMED);
        }

        ASSERT_OK(publish_text(b, "", name("poison"), "later", 0, &later));
        ASSERT_TRUE(wait_outcome(&later, 10000));
        ASSERT_EQ_INT(later.outcome, BROKER_CONFIRMED);
        ASSERT_TRUE(wait_inbox(&in, ELEMENTSOF(behind) + 1, 10000));
        for (size_t i = 0; i < ELEMENTSOF(behind); i++) {
                snprintf(text, sizeof(text), "n%zu", i);
                ASSERT_STREQ(in.got[i].body, text); /* order kept across the reopens */
        }
        ASSERT_STREQ(in.got[ELEMENTSOF(behind)].body, "later");
        run_for(200);
        ASSERT_EQ_UINT(in.n, ELEMENTSOF(behind) + 1);

        broker_get_stats(b, &st);
        ASSERT_EQ_UINT(st.channel_closes, 3);
        ASSERT_EQ_UINT(st.connects, 1);
        ASSERT_EQ_UINT(st.connect_failures, 0);
        /* the poison 3 times, alone after the first; the five behind it twice
         * (with it, then together once it was known); "later" once */
        ASSERT_EQ_UINT(st.published, 3 + 2 * ELEMENTSOF(behind) + 1);
        ASSERT_EQ_UINT(st.dropped, 1);
        ASSERT_EQ_UINT(st.confirmed, ELEMENTSOF(behind) + 1);
        ASSERT_EQ_UINT(w.n_disconnected, 0);
        ASSERT_EQ_INT(broker_get_state(b), BROKER_CONNECTED);

        close_broker(b);
        inbox_clear(&in);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 6. Broker stopped and started: DISCONNECTED, then CONNECTED by itself with
 * the topology declared again; a publish made while down is delivered after
 * the reconnect, and a tag from before the restart is stale. */

TEST(broker_restart_reconnects) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "restart" };
        Inbox in = { 0 };
        Outcome down, after;
        BrokerStats st;
        uint64_t old_tag;
        int r_stop, r_start, r_ack;
        bool disc, conn;

        loop_new();
        test_config(&c, amqp_url);
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_queue(b, name("restart"), BROKER_EXCLUSIVE, NULL));
        ASSERT_OK(broker_add_consumer(b, name("restart"), 0, on_deliver, &in));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_connected(&w, 1, 15000));
        ASSERT_OK(publish_text(b, "", name("restart"), "before", 0, NULL));
        ASSERT_TRUE(wait_inbox(&in, 1, 10000));
        old_tag = in.got[0].delivery_tag; /* deliberately not acked */

        /* No assertion between stop and start: the broker must come back for the next cases. */
        r_stop = broker_ctl("stop");
        disc = wait_disconnected(&w, 1, 15000);
        r_ack = broker_ack(b, old_tag);
        (void) publish_text(b, "", name("restart"), "while-down", BROKER_PUBLISH_MANDATORY, &down);
        run_for(1500); /* a few attempts fail while it is down */
        broker_get_stats(b, &st);
        r_start = broker_ctl("start");
        conn = wait_connected(&w, 2, 30000);

        ASSERT_EQ_INT(r_stop, 0);
        ASSERT_TRUE(disc);
        ASSERT_EQ_INT(r_ack, -ESTALE);
        ASSERT_GE_UINT(st.connect_failures, 1);
        ASSERT_EQ_UINT(st.pending, 1);
        ASSERT_EQ_INT(r_start, 0);
        ASSERT_TRUE(conn);

        /* Written right after the declarations, not at some later wake-up. */
        ASSERT_TRUE(wait_outcome(&down, 1000));
        ASSERT_EQ_INT(down.outcome, BROKER_CONFIRMED);
        ASSERT_TRUE(wait_inbox(&in, 2, 10000));
        ASSERT_STREQ(in.got[1].body, "while-down");
        ASSERT_OK(publish_text(b, "", name("restart"), "after", 0, &after));
        ASSERT_TRUE(wait_inbox(&in, 3, 10000));
        ASSERT_STREQ(in.got[2].body, "after");
        ASSERT_OK(broker_ack(b, in.got[1].delivery_tag));
        ASSERT_OK(broker_ack(b, in.got[2].delivery_tag));
        ASSERT_ERR(broker_ack(b, old_tag), -ESTALE);

        broker_get_stats(b, &st);
        ASSERT_EQ_UINT(st.connects, 2);
        ASSERT_EQ_INT(broker_get_state(b), BROKER_CONNECTED);

        close_broker(b);
        inbox_clear(&in);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 7. A frozen (SIGSTOPped) broker is only noticed through heartbeats, which
 * rabbitmq-c checks inside frame waits: our timer drains at half the
 * heartbeat. With heartbeat 2 s, DISCONNECTED within about 3 × 2 s.
 * Publishes made while frozen return at once and are confirmed after the
 * thaw. */

#define FROZEN_BULK 512

static bool bulk_settled(const void *userdata) {
        const Burst *bu = userdata;
        return bu->confirmed + bu->other >= FROZEN_BULK;
}

TEST(frozen_broker_detected) {
        static char bulk[16384];
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "pause" };
        Burst bu = { 0 };
        Outcome o;
        uint64_t t0, detect_ms = 0, publish_ms;
        int r_pause, r_resume, r_pub;
        bool disc, conn;

        loop_new();
        test_config(&c, amqp_url);
        c.heartbeat = 2 * USEC_PER_SEC;
        c.connect_timeout = 2 * USEC_PER_SEC;
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_queue(b, name("pause"), BROKER_EXCLUSIVE, NULL));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_connected(&w, 1, 15000));

        /* No assertion between pause and resume. 8 MiB of publishes into the
         * frozen broker: more than the socket buffers hold, so a loop that
         * wrote without looking would block here until the thaw. */
        r_pause = broker_ctl("pause");
        t0 = uv_hrtime();
        r_pub = publish_text(b, "", name("pause"), "frozen", 0, &o);
        for (unsigned i = 0; i < FROZEN_BULK && r_pub == 0; i++) {
                BrokerMessage m = { .exchange = "",
                                    .routing_key = name("pause"),
                                    .body = bulk,
                                    .body_len = sizeof(bulk) };
                r_pub = broker_publish(b, &m, 0, burst_confirm, &bu);
        }
        publish_ms = (uv_hrtime() - t0) / 1000000;
        disc = wait_disconnected(&w, 1, 15000);
        if (disc)
                detect_ms = (uv_hrtime() - t0) / 1000000;
        r_resume = broker_ctl("resume");
        conn = wait_connected(&w, 2, 30000);

        printf("# frozen broker detected after %" PRIu64 " ms: %s\n", detect_ms, w.reason);
        ASSERT_EQ_INT(r_pause, 0);
        ASSERT_EQ_INT(r_resume, 0);
        ASSERT_EQ_INT(r_pub, 0);
        ASSERT_LT_INT(publish_ms, 1000);
        ASSERT_TRUE(disc);
        ASSERT_LT_INT(detect_ms, 3 * 2000 + 2000);
        ASSERT_TRUE(strstr(w.reason, "heartbeat") != NULL);
        ASSERT_TRUE(conn);
        ASSERT_TRUE(wait_outcome(&o, 10000));
        ASSERT_EQ_INT(o.outcome, BROKER_CONFIRMED);
        ASSERT_TRUE(wait_for(bulk_settled, &bu, 20000));
        ASSERT_EQ_UINT(bu.confirmed, FROZEN_BULK);

        close_broker(b);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 8. The outgoing buffer is bounded while disconnected: the oldest DROPPABLE
 * entries make room, -ENOBUFS when none is left, -EMSGSIZE for a message
 * larger than the whole buffer; stats follow. Closing fails what is left with
 * DROPPED before closed_cb. */

typedef struct CloseWatch {
        bool closed;
        unsigned outcomes_before_close;
} CloseWatch;

static void on_closed_count(void *userdata) {
        CloseWatch *cw = userdata;

        cw->closed = true;
        cw->outcomes_before_close = outcome_counter;
}

TEST(bounded_buffer_drops_oldest) {
        BrokerConfig c;
        Broker *b, *b2;
        Watch w = { .label = "bounded" }, w2 = { .label = "bounded-bytes" };
        Outcome d1, n1, d2, n2, n3, n4, d3, da, nb, nc, nd, big;
        char url[256], body[128];
        BrokerStats st;
        CloseWatch cw = { 0 }, cw2 = { 0 };
        int port = dead_port();

        ASSERT_GT_INT(port, 0);
        snprintf(url, sizeof(url), "amqp://guest:guest@127.0.0.1:%d/%%2Fbaton", port);
        loop_new();
        outcome_counter = 0;
        test_config(&c, url);
        c.max_pending = 3;
        c.backoff_min = 50 * USEC_PER_MSEC;
        c.backoff_max = 200 * USEC_PER_MSEC;
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_disconnected(&w, 1, 5000));

        ASSERT_OK(publish_text(b, "", "q", "d1", BROKER_PUBLISH_DROPPABLE, &d1));
        ASSERT_OK(publish_text(b, "", "q", "n1", 0, &n1));
        ASSERT_OK(publish_text(b, "", "q", "d2", BROKER_PUBLISH_DROPPABLE, &d2));
        ASSERT_OK(publish_text(b, "", "q", "n2", 0, &n2)); /* drops d1 */
        ASSERT_OK(publish_text(b, "", "q", "n3", 0, &n3)); /* drops d2 */
        ASSERT_ERR(publish_text(b, "", "q", "n4", 0, &n4), -ENOBUFS);
        ASSERT_ERR(publish_text(b, "", "q", "d3", BROKER_PUBLISH_DROPPABLE, &d3), -ENOBUFS);
        /* Outcomes come from the loop, never from inside broker_publish(). */
        ASSERT_EQ_UINT(d1.calls, 0);
        run_for(300);
        ASSERT_EQ_UINT(d1.calls, 1);
        ASSERT_EQ_UINT(d2.calls, 1);
        ASSERT_EQ_INT(d1.outcome, BROKER_DROPPED);
        ASSERT_EQ_INT(d2.outcome, BROKER_DROPPED);
        ASSERT_LT_INT(d1.order, d2.order);
        ASSERT_EQ_UINT(n1.calls + n2.calls + n3.calls + n4.calls + d3.calls, 0);
        broker_get_stats(b, &st);
        ASSERT_EQ_UINT(st.dropped, 2);
        ASSERT_EQ_UINT(st.pending, 3);
        ASSERT_EQ_UINT(st.pending_bytes, 3 * (2 + 1 + 1 + 1)); /* body, "", "q" and NULs */
        ASSERT_GE_UINT(st.connect_failures, 2);
        ASSERT_EQ_UINT(st.connects, 0);

        /* Byte bound. */
        test_config(&c, url);
        c.max_pending = 0; /* no count limit */
        c.max_pending_bytes = 100;
        ASSERT_OK(broker_new(loop, &c, on_state, &w2, &b2));
        memset(body, 'x', sizeof(body));
        body[60] = 0;
        ASSERT_OK(publish_text(b2, "", "", body, BROKER_PUBLISH_DROPPABLE, &da)); /* 62 bytes */
        body[30] = 0;
        ASSERT_OK(publish_text(b2, "", "", body, 0, &nb)); /* 32: 94 in all */
        ASSERT_OK(publish_text(b2, "", "", body, 0, &nc)); /* drops da: 64 */
        memset(body, 'x', sizeof(body));
        body[40] = 0;
        ASSERT_ERR(publish_text(b2, "", "", body, 0, &nd), -ENOBUFS); /* 64 + 42 */
        memset(body, 'x', sizeof(body));
        body[99] = 0; /* 101 bytes: more than the whole buffer */
        ASSERT_ERR(publish_text(b2, "", "", body, BROKER_PUBLISH_DROPPABLE, &big), -EMSGSIZE);
        run_for(100);
        ASSERT_EQ_INT(da.outcome, BROKER_DROPPED);
        broker_get_stats(b2, &st);
        ASSERT_EQ_UINT(st.pending, 2);
        ASSERT_EQ_UINT(st.pending_bytes, 64);

        broker_close(b, on_closed_count, &cw);
        broker_close(b2, on_closed_count, &cw2);
        ASSERT_TRUE(wait_flag(&cw.closed, 10000));
        ASSERT_TRUE(wait_flag(&cw2.closed, 10000));
        ASSERT_EQ_INT(n1.outcome, BROKER_DROPPED);
        ASSERT_EQ_INT(n2.outcome, BROKER_DROPPED);
        ASSERT_EQ_INT(n3.outcome, BROKER_DROPPED);
        ASSERT_EQ_INT(nb.outcome, BROKER_DROPPED);
        ASSERT_EQ_INT(nc.outcome, BROKER_DROPPED);
        ASSERT_GE_UINT(cw.outcomes_before_close, n3.order);
        ASSERT_GE_UINT(cw2.outcomes_before_close, nc.order);
        ASSERT_EQ_UINT(n4.calls + d3.calls + nd.calls + big.calls, 0);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 9. A refused connect says where it tried; with reconnect = false there is no
 * second attempt. */

TEST(connect_failure_reason) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "refused" };
        char url[256], where[64];
        BrokerStats st;
        int port = dead_port();

        ASSERT_GT_INT(port, 0);
        snprintf(url, sizeof(url), "amqp://guest:guest@127.0.0.1:%d/%%2Fbaton", port);
        snprintf(where, sizeof(where), "127.0.0.1:%d", port);
        loop_new();
        test_config(&c, url);
        c.reconnect = false;
        c.backoff_min = 10 * USEC_PER_MSEC;
        c.backoff_max = 10 * USEC_PER_MSEC;
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_disconnected(&w, 1, 5000));
        run_for(1000);

        ASSERT_TRUE(strstr(w.reason, where) != NULL);
        ASSERT_TRUE(strstr(w.reason, "refused") != NULL);
        ASSERT_EQ_INT(broker_get_error(b), -ECONNREFUSED);
        ASSERT_EQ_UINT(w.n_states, 2);
        ASSERT_EQ_INT(w.states[0], BROKER_CONNECTING);
        ASSERT_EQ_INT(w.states[1], BROKER_DISCONNECTED);
        ASSERT_EQ_INT(broker_get_state(b), BROKER_DISCONNECTED);
        broker_get_stats(b, &st);
        ASSERT_EQ_UINT(st.connect_failures, 1);
        ASSERT_EQ_UINT(st.connects, 0);

        close_broker(b);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 10. broker_close() from inside a delivery callback: nothing is dispatched
 * after it, every publish is called back exactly once, memory stays valid
 * (this case is the one to run under ASan). */

typedef struct Closer {
        size_t delivered;
        bool closed;
        int publish_after_close;
        int ack_after_close;
        int close_again;
} Closer;

static void closer_deliver(Broker *b, const BrokerMessage *m, void *userdata) {
        Closer *cl = userdata;

        if (cl->delivered++ > 0)
                return;
        broker_close(b, on_closed, &cl->closed);
        broker_close(b, NULL, NULL); /* ignored */
        cl->publish_after_close = publish_text(b, "", "x", "late", 0, NULL);
        cl->ack_after_close = broker_ack(b, m->delivery_tag);
}

TEST(close_inside_delivery) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "close" };
        Closer cl = { 0 };
        Outcome out[10];

        loop_new();
        test_config(&c, amqp_url);
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_queue(b, name("close"), BROKER_EXCLUSIVE, NULL));
        ASSERT_OK(broker_add_consumer(b, name("close"), 0, closer_deliver, &cl));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_connected(&w, 1, 15000));
        for (size_t i = 0; i < ELEMENTSOF(out); i++)
                ASSERT_OK(publish_text(b, "", name("close"), "x", 0, &out[i]));
        ASSERT_TRUE(wait_flag(&cl.closed, 15000));

        ASSERT_EQ_UINT(cl.delivered, 1);
        ASSERT_EQ_INT(cl.publish_after_close, -ESHUTDOWN);
        ASSERT_EQ_INT(cl.ack_after_close, -ESTALE);
        for (size_t i = 0; i < ELEMENTSOF(out); i++) {
                ASSERT_EQ_UINT(out[i].calls, 1);
                ASSERT_TRUE(out[i].outcome == BROKER_CONFIRMED || out[i].outcome == BROKER_DROPPED);
        }
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 11. Direct reply-to: a client consumes amq.rabbitmq.reply-to (no-ack) and
 * sends a request; a server Broker replies to the default exchange with the
 * request's reply_to as routing key. */

typedef struct Server {
        size_t requests;
        int reply_result;
} Server;

static void server_deliver(Broker *b, const BrokerMessage *m, void *userdata) {
        Server *s = userdata;
        char body[128];
        BrokerMessage reply = {
                .exchange = "",
                .routing_key = m->reply_to,
                .correlation_id = m->correlation_id,
                .body = body,
        };

        s->requests++;
        reply.body_len = (size_t) snprintf(body, sizeof(body), "pong:%.*s", (int) m->body_len,
                                           (const char *) m->body);
        s->reply_result = broker_publish(b, &reply, BROKER_PUBLISH_NO_RETRY, NULL, NULL);
        (void) broker_ack(b, m->delivery_tag);
}

TEST(direct_reply_to) {
        BrokerConfig c;
        Broker *server, *client;
        Watch ws = { .label = "rpc-server" }, wc = { .label = "rpc-client" };
        Server s = { 0 };
        Inbox replies = { 0 };
        BrokerMessage req = {
                .exchange = "",
                .routing_key = name("rpc"),
                .reply_to = "amq.rabbitmq.reply-to",
                .correlation_id = "42",
                .body = "ping",
                .body_len = 4,
        };

        loop_new();
        test_config(&c, amqp_url);
        c.connection_name = "test-broker rpc server";
        ASSERT_OK(broker_new(loop, &c, on_state, &ws, &server));
        ASSERT_OK(broker_add_queue(server, name("rpc"), BROKER_AUTO_DELETE, NULL));
        ASSERT_OK(broker_add_consumer(server, name("rpc"), 0, server_deliver, &s));
        c.connection_name = "test-broker rpc client";
        ASSERT_OK(broker_new(loop, &c, on_state, &wc, &client));
        ASSERT_OK(broker_add_consumer(client, "amq.rabbitmq.reply-to", BROKER_NO_ACK, on_deliver,
                                      &replies));
        ASSERT_OK(broker_start(server));
        ASSERT_OK(broker_start(client));
        ASSERT_TRUE(wait_connected(&ws, 1, 15000));
        ASSERT_TRUE(wait_connected(&wc, 1, 15000));

        ASSERT_OK(broker_publish(client, &req, 0, NULL, NULL));
        ASSERT_TRUE(wait_inbox(&replies, 1, 10000));
        ASSERT_EQ_UINT(s.requests, 1);
        ASSERT_EQ_INT(s.reply_result, 0);
        ASSERT_STREQ(replies.got[0].body, "pong:ping");
        ASSERT_STREQ(replies.got[0].correlation_id, "42");
        ASSERT_EQ_UINT(replies.got[0].delivery_tag, 0); /* no-ack: nothing to settle */
        ASSERT_STREQ(replies.got[0].queue, "amq.rabbitmq.reply-to");

        close_broker(client);
        close_broker(server);
        inbox_clear(&replies);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 12. The queue is deleted under a consumer: the broker sends basic.cancel
 * (we ask for it with the consumer_cancel_notify capability); we reconnect,
 * declare and consume again, and messages flow. */

/* Deletes a queue over a separate, plain blocking rabbitmq-c connection. */
static int delete_queue(const char *url, const char *queue) {
        struct amqp_connection_info info;
        amqp_connection_state_t conn;
        amqp_socket_t *sock;
        char *copy = strdup(url);
        int r = -EIO;

        if (!copy || amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
                free(copy);
                return -EINVAL;
        }
        conn = amqp_new_connection();
        sock = amqp_tcp_socket_new(conn);
        if (sock && amqp_socket_open(sock, info.host, info.port) == AMQP_STATUS_OK &&
            amqp_login(conn, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user,
                       info.password)
                            .reply_type == AMQP_RESPONSE_NORMAL &&
            amqp_channel_open(conn, 1) &&
            amqp_queue_delete(conn, 1, amqp_cstring_bytes((char *) queue), false, false))
                r = 0;
        (void) amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
        (void) amqp_destroy_connection(conn);
        free(copy);
        return r;
}

TEST(queue_deleted_redeclared) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "cancel" };
        Inbox in = { .ack = true };
        BrokerStats st;

        loop_new();
        test_config(&c, amqp_url);
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_queue(b, name("cancel"), BROKER_AUTO_DELETE, NULL));
        ASSERT_OK(broker_add_consumer(b, name("cancel"), 0, on_deliver, &in));
        ASSERT_OK(broker_start(b));
        ASSERT_TRUE(wait_connected(&w, 1, 15000));

        ASSERT_OK(delete_queue(amqp_url, name("cancel")));
        ASSERT_TRUE(wait_disconnected(&w, 1, 5000));
        ASSERT_TRUE(strstr(w.reason, "cancelled the consumer") != NULL);
        ASSERT_TRUE(strstr(w.reason, name("cancel")) != NULL);
        ASSERT_TRUE(wait_connected(&w, 2, 10000));

        ASSERT_OK(publish_text(b, "", name("cancel"), "again", 0, NULL));
        ASSERT_TRUE(wait_inbox(&in, 1, 10000));
        ASSERT_STREQ(in.got[0].body, "again");
        broker_get_stats(b, &st);
        ASSERT_EQ_UINT(st.connects, 2);

        close_broker(b);
        inbox_clear(&in);
        loop_finish();
}

/* ---------------------------------------------------------------------------------------- */
/* 13. broker_close() while the connect worker runs (it cannot be cancelled:
 * its result is waited for and let go), and right after broker_start(). */

static bool any_state(const void *userdata) {
        return ((const Watch *) userdata)->n_states > 0;
}

TEST(close_while_connecting) {
        BrokerConfig c;
        Broker *b;
        Watch w = { .label = "early-close" }, w2 = { .label = "immediate-close" };
        Inbox in = { 0 };
        Outcome o;

        loop_new();
        test_config(&c, amqp_url);
        ASSERT_OK(broker_new(loop, &c, on_state, &w, &b));
        ASSERT_OK(broker_add_queue(b, NULL, BROKER_EXCLUSIVE | BROKER_AUTO_DELETE, NULL));
        ASSERT_OK(broker_add_consumer(b, NULL, BROKER_NO_ACK, on_deliver, &in));
        ASSERT_OK(broker_start(b));
        ASSERT_OK(publish_text(b, "", "nowhere", "pending", 0, &o));
        /* CONNECTING is reported on the next loop turn, with the worker already queued. */
        ASSERT_TRUE(wait_for(any_state, &w, 5000));
        ASSERT_EQ_INT(broker_get_state(b), BROKER_CONNECTING);
        close_broker(b);
        ASSERT_EQ_UINT(o.calls, 1);
        ASSERT_EQ_INT(o.outcome, BROKER_DROPPED);
        ASSERT_EQ_UINT(w.n_connected, 0);

        ASSERT_OK(broker_new(loop, &c, on_state, &w2, &b));
        ASSERT_OK(broker_start(b));
        close_broker(b);
        ASSERT_EQ_UINT(w2.n_states, 0); /* closed before the loop ever reported CONNECTING */
        ASSERT_EQ_UINT(in.n, 0);
        loop_finish();
}

int main(void) {
        amqp_url = getenv("BATON_TEST_AMQP_URL");
        broker_dir = getenv("BATON_TEST_BROKER_DIR");
        source_dir = getenv("BATON_SOURCE_DIR");
        if (isempty(amqp_url)) {
                printf("1..0 # SKIP no broker (BATON_TEST_AMQP_URL is not set)\n");
                return EXIT_SUCCESS;
        }
        if (isempty(broker_dir) || isempty(source_dir)) {
                printf("Bail out! BATON_TEST_BROKER_DIR and BATON_SOURCE_DIR must be set\n");
                return EXIT_FAILURE;
        }
        snprintf(prefix, sizeof(prefix), "tb%d", (int) getpid());
        /* A hang anywhere still ends the run. */
        alarm(600);

        return tap_run(TESTS(api_without_broker, roundtrip_properties, burst_drains_after_publish,
                             queued_during_setup_dispatched, returned_and_nacked,
                             reject_dead_letters, acks_gathered_never_cover_a_held_delivery,
                             poison_publish_reopens_channel, broker_restart_reconnects,
                             frozen_broker_detected, bounded_buffer_drops_oldest,
                             connect_failure_reason, close_inside_delivery, direct_reply_to,
                             queue_deleted_redeclared, close_while_connecting));
}
