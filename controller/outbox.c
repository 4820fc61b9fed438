/* SPDX-License-Identifier: MIT */
/* Commands waiting to go out (outbox.h). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "log.h"
#include "loop.h"
#include "outbox.h"
#include "util.h"

/* The texts a batch of waiting Placements borrowed from the specs, copied
 * once per service, freed with the batch's last Placement. */
struct OutboxStrings {
        size_t refs;
        size_t n;
        struct {
                const char *service; /* the borrowed name: the key */
                char *copy[3];       /* service, unit_text, template_name */
        } * v;
};

struct OutboxItem {
        uint64_t epoch;
        bool restart;
        PlanSend send;  /* when !restart; its units' borrowed texts are strings' */
        PlanRestart rs; /* when restart */
        OutboxStrings *strings;
};

/* A host's waiting Placement: open addressing, linear probing. */
struct OutboxSlot {
        const char *host; /* the item's own; NULL: free */
        uint64_t seq;
};

static void strings_unref(OutboxStrings *s) {
        if (!s || --s->refs > 0)
                return;
        for (size_t i = 0; i < s->n; i++)
                for (size_t k = 0; k < 3; k++)
                        free(s->v[i].copy[k]);
        free(s->v);
        free(s);
}

/* Points `u`'s borrowed texts at the batch's copies; 0 or -ENOMEM. */
static int strings_intern(OutboxStrings *s, PlanUnit *u) {
        size_t i;

        for (i = 0; i < s->n; i++)
                if (s->v[i].service == u->service)
                        break;
        if (i == s->n) {
                void *v = realloc(s->v, (s->n + 1) * sizeof(*s->v));
                if (!v)
                        return -ENOMEM;
                s->v = v;
                s->v[i].service = u->service;
                s->v[i].copy[0] = strdup(u->service);
                s->v[i].copy[1] = strdup(u->unit_text);
                s->v[i].copy[2] = strdup(u->template_name);
                s->n++;
                if (!s->v[i].copy[0] || !s->v[i].copy[1] || !s->v[i].copy[2])
                        return -ENOMEM;
        }
        u->service = s->v[i].copy[0];
        u->unit_text = s->v[i].copy[1];
        u->template_name = s->v[i].copy[2];
        return 0;
}

static void item_done(OutboxItem *it) {
        if (it->restart) {
                free(it->rs.id);
                free(it->rs.host);
                free(it->rs.unit);
                free(it->rs.service);
        } else {
                free(it->send.host);
                for (size_t k = 0; k < it->send.n_units; k++) {
                        free(it->send.units[k].name);
                        free(it->send.units[k].shards);
                }
                free(it->send.units);
        }
        strings_unref(it->strings);
        *it = (OutboxItem){ 0 };
}

/* ---- the waiting Placements by host ---------------------------------------------- */

static size_t slot_find(const Outbox *o, const char *host) {
        size_t i = fnv1a64_str(FNV1A64_OFFSET, host) & (o->n_slots - 1);

        while (o->slots[i].host && !streq(o->slots[i].host, host))
                i = (i + 1) & (o->n_slots - 1);
        return i;
}

static int slots_grow(Outbox *o) {
        size_t n = MAX(o->n_slots * 2, (size_t) 64);
        OutboxSlot *old = o->slots, *v = calloc(n, sizeof(OutboxSlot));
        size_t n_old = o->n_slots;

        if (!v)
                return -ENOMEM;
        o->slots = v;
        o->n_slots = n;
        for (size_t i = 0; i < n_old; i++)
                if (old[i].host)
                        o->slots[slot_find(o, old[i].host)] = old[i];
        free(old);
        return 0;
}

/* Forgets the slot of `host` if it still names item `seq`. */
static void slot_remove(Outbox *o, const char *host, uint64_t seq) {
        size_t i, j;

        if (o->n_slots == 0)
                return;
        i = slot_find(o, host);
        if (!o->slots[i].host || o->slots[i].seq != seq)
                return;
        /* Backward-shift deletion keeps every probe chain whole. */
        o->slots[i] = (OutboxSlot){ 0 };
        o->n_used--;
        for (j = (i + 1) & (o->n_slots - 1); o->slots[j].host; j = (j + 1) & (o->n_slots - 1)) {
                size_t want = fnv1a64_str(FNV1A64_OFFSET, o->slots[j].host) & (o->n_slots - 1);

                /* Move it back when its home is not within (i, j]. */
                if ((j > i && (want <= i || want > j)) || (j < i && want <= i && want > j)) {
                        o->slots[i] = o->slots[j];
                        o->slots[j] = (OutboxSlot){ 0 };
                        i = j;
                }
        }
}

static OutboxItem *item_at(Outbox *o, uint64_t seq) {
        return &o->items[(o->head + (size_t) (seq - o->head_seq)) % o->n_allocated];
}

/* ---- publishing --------------------------------------------------------------------- */

/* 0: gone (sent, or failed for good and logged); -ENOBUFS: the broker's
 * buffer is full, try again later. */
static int publish_item(Outbox *o, const OutboxItem *it) {
        int r;

        if (it->restart) {
                r = publish_restart(o->pub, it->epoch, &it->rs, now_realtime_usec());
                if (r == -ENOBUFS)
                        return r;
                if (r < 0) {
                        log_warning_errno(r, "Failed to send restart %s of %s to %s: %s", it->rs.id,
                                          it->rs.unit, it->rs.host, STRERROR(r));
                        return 0;
                }
                o->restarts_sent++;
                return 0;
        }
        /* What fails to go out goes again: a host that does not apply its
         * Placement is sent it again after a while (reconcile.c), a broker
         * that comes back gets every Placement again. */
        r = publish_placement(o->pub, it->epoch, &it->send);
        if (r == -ENOBUFS)
                return r;
        if (r < 0) {
                log_warning_errno(r, "Failed to send placement %" PRIu64 " to %s: %s",
                                  it->send.generation, it->send.host, STRERROR(r));
                return 0;
        }
        o->placements_sent++;
        log_debug("Sent placement %" PRIu64 "/%" PRIu64 " (%zu units) to %s.", it->epoch,
                  it->send.generation, it->send.n_units, it->send.host);
        return 0;
}

static bool broker_has_room(const Outbox *o) {
        BrokerStats st;

        if (!o->pub->broker)
                return true; /* closing: publishing fails at once, and says so */
        broker_get_stats(o->pub->broker, &st);
        return st.pending < OUTBOX_MAX_PENDING && st.pending_bytes < OUTBOX_MAX_PENDING_BYTES;
}

static void on_idle(uv_idle_t *h);

static void on_retry(uv_timer_t *t) {
        Outbox *o = t->data;

        if (o->n > 0)
                (void) uv_idle_start(&o->idle, on_idle); /* cannot fail on an initialized handle */
}

/* Publishes waiting items until `deadline` (monotonic µs; 0: no limit) or
 * until the broker's buffer is full enough (`wait`: then try again later). */
static void drain(Outbox *o, usec_t deadline, bool wait) {
        bool blocked = false;

        while (o->n > 0) {
                OutboxItem *it = &o->items[o->head];

                if (wait && !broker_has_room(o)) {
                        blocked = true;
                        break;
                }
                if (publish_item(o, it) < 0) {
                        if (wait) {
                                blocked = true;
                                break;
                        }
                        /* A graceful stop: what does not fit now is sent again by the next
                         * run. */
                        log_warning("The broker's buffer is full: %s to %s is not sent; the "
                                    "next run sends every host its Placement again.",
                                    it->restart ? "a restart" : "a placement",
                                    it->restart ? it->rs.host : it->send.host);
                }
                if (!it->restart)
                        slot_remove(o, it->send.host, o->head_seq);
                item_done(it);
                o->head = (o->head + 1) % o->n_allocated;
                o->head_seq++;
                o->n--;
                if (deadline > 0 && now_monotonic_usec() >= deadline)
                        break;
        }
        if (!o->handle)
                return;
        if (o->n == 0) {
                o->head = 0;
                (void) uv_idle_stop(&o->idle); /* cannot fail on an initialized handle */
        } else if (blocked) {
                /* Waiting for the broker to confirm: a timer, not a busy loop. */
                (void) uv_idle_stop(&o->idle);
                (void) uv_timer_start(&o->retry, on_retry, OUTBOX_RETRY_MS, 0);
        }
}

static void on_idle(uv_idle_t *h) {
        Outbox *o = h->data;

        drain(o, now_monotonic_usec() + OUTBOX_SLICE_USEC, true);
}

/* ---- the queue ---------------------------------------------------------------------- */

static int push(Outbox *o, OutboxItem *it) {
        if (o->n == o->n_allocated) {
                size_t n = MAX(o->n_allocated * 2, (size_t) 64);
                OutboxItem *v = malloc(n * sizeof(OutboxItem));

                if (!v)
                        return -ENOMEM;
                /* Unroll the ring into the new array. */
                for (size_t i = 0; i < o->n; i++)
                        v[i] = o->items[(o->head + i) % o->n_allocated];
                free(o->items);
                o->items = v;
                o->head = 0;
                o->n_allocated = n;
        }
        if (!it->restart) {
                size_t i;

                if ((o->n_used + 1) * 2 > o->n_slots && slots_grow(o) < 0)
                        return -ENOMEM;
                i = slot_find(o, it->send.host);
                if (o->slots[i].host) {
                        /* A newer Placement of a host that still waits: it takes the older
                         * one's turn (earlier, never later than a Restart behind it). */
                        OutboxItem *old = item_at(o, o->slots[i].seq);

                        item_done(old);
                        *old = *it;
                        o->slots[i].host = old->send.host;
                        return 0;
                }
                o->slots[i] = (OutboxSlot){ .host = it->send.host, .seq = o->head_seq + o->n };
                o->n_used++;
        }
        o->items[(o->head + o->n) % o->n_allocated] = *it;
        o->n++;
        if (o->n > o->peak)
                o->peak = o->n;
        return 0;
}

int outbox_init(Outbox *o, uv_loop_t *loop, Publisher *pub) {
        *o = (Outbox){ .pub = pub };
        if (uv_idle_init(loop, &o->idle) < 0)
                return -ENOMEM;
        if (uv_timer_init(loop, &o->retry) < 0) {
                loop_close_handle((uv_handle_t *) &o->idle);
                return -ENOMEM;
        }
        o->idle.data = o->retry.data = o;
        o->handle = true;
        return 0;
}

void outbox_close(Outbox *o) {
        if (!o->handle)
                return;
        loop_close_handle((uv_handle_t *) &o->idle);
        loop_close_handle((uv_handle_t *) &o->retry);
        o->handle = false;
}

void outbox_done(Outbox *o) {
        if (o->n > 0)
                log_warning("%zu command(s) were still waiting to go out at exit; hosts get "
                            "their Placements again when the controller starts.",
                            o->n);
        while (o->n > 0) {
                item_done(&o->items[o->head]);
                o->head = (o->head + 1) % o->n_allocated;
                o->n--;
        }
        free(o->items);
        free(o->slots);
        o->items = NULL;
        o->slots = NULL;
        o->n_allocated = o->n_slots = o->n_used = 0;
}

void outbox_flush(Outbox *o) {
        drain(o, 0, false);
}

/* Keeps `it` for later; on failure (out of memory) publishes it now: late
 * is better than lost. */
static void defer(Outbox *o, OutboxItem *it) {
        if (push(o, it) < 0) {
                if (publish_item(o, it) < 0)
                        log_warning("Out of memory and the broker's buffer is full: %s to %s "
                                    "is not sent (it is sent again later).",
                                    it->restart ? "a restart" : "a placement",
                                    it->restart ? it->rs.host : it->send.host);
                item_done(it);
        }
}

/* Whether a command goes out at once: nothing waits before it, the slice
 * lasts and the broker has room. */
static bool at_once(const Outbox *o, usec_t deadline) {
        return o->n == 0 && now_monotonic_usec() < deadline && broker_has_room(o);
}

void outbox_send(Outbox *o, Plan *p, uint64_t epoch, usec_t start) {
        usec_t deadline = start + OUTBOX_SLICE_USEC;
        OutboxStrings *strings = NULL;

        for (size_t i = 0; i < p->n_sends; i++) {
                PlanSend *s = &p->sends[i];
                OutboxItem it = { .epoch = epoch, .send = *s };
                bool interned = true;

                if (at_once(o, deadline) && publish_item(o, &it) == 0)
                        continue;
                if (!strings) {
                        strings = calloc(1, sizeof(OutboxStrings));
                        if (strings)
                                strings->refs = 1; /* this function's, dropped at the end */
                }
                for (size_t k = 0; strings && k < it.send.n_units && interned; k++)
                        interned = strings_intern(strings, &it.send.units[k]) >= 0;
                if (!strings || !interned) {
                        /* The texts may still be the plan's: out now or not at all. */
                        if (publish_item(o, &it) < 0)
                                log_warning("Out of memory and the broker's buffer is full: "
                                            "the placement of %s is not sent (it is sent "
                                            "again later).",
                                            it.send.host);
                        continue;
                }
                /* Taken over from the plan. */
                *s = (PlanSend){ 0 };
                it.strings = strings;
                strings->refs++;
                defer(o, &it);
        }
        for (size_t i = 0; i < p->n_restarts; i++) {
                PlanRestart *rs = &p->restarts[i];
                OutboxItem it = { .epoch = epoch, .restart = true, .rs = *rs };

                if (at_once(o, deadline) && publish_item(o, &it) == 0)
                        continue;
                *rs = (PlanRestart){ 0 };
                defer(o, &it);
        }
        strings_unref(strings);
        if (o->n > 0 && o->handle && !uv_is_active((uv_handle_t *) &o->retry))
                (void) uv_idle_start(&o->idle, on_idle); /* cannot fail on an initialized handle */
}
