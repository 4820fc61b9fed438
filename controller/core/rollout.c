/* SPDX-License-Identifier: MIT */
/* The rolling-restart state machine: which instance to restart next under
 * MaxUnavailable, when a restarted one counts as done or failed, the operator
 * controls, and the one-line text the store keeps so that a restarted
 * controller resumes exactly where it stopped. Pure: health and time come in. */
#include "rollout.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "opstate.h"
#include "textline.h"
#include "unit-name.h"

#define ROLLOUT_TEXT_VERSION "baton-rollout/1"

static const char *const rollout_state_table[_ROLLOUT_STATE_MAX] = {
        [ROLLOUT_RUNNING] = "running", [ROLLOUT_PAUSED] = "paused",   [ROLLOUT_DONE] = "done",
        [ROLLOUT_FAILED] = "failed",   [ROLLOUT_ABORTED] = "aborted",
};

DEFINE_STRING_TABLE_LOOKUP(rollout_state, RolloutState, _ROLLOUT_STATE_MAX)

static const char *const rollout_item_state_table[_ITEM_STATE_MAX] = {
        [ITEM_PENDING] = "pending", [ITEM_RESTARTING] = "restarting", [ITEM_SETTLING] = "settling",
        [ITEM_DONE] = "done",       [ITEM_FAILED] = "failed",
};

DEFINE_STRING_TABLE_LOOKUP(rollout_item_state, RolloutItemState, _ITEM_STATE_MAX)

static bool service_name_is_valid(const char *service) {
        static const char suffix[] = ".service";
        char unit[UNIT_NAME_MAX + 1];
        size_t n;

        if (isempty(service))
                return false;
        n = strlen(service);
        if (n > UNIT_NAME_MAX - (sizeof(suffix) - 1))
                return false;
        memcpy(unit, service, n);
        memcpy(unit + n, suffix, sizeof(suffix));
        /* Plain only: a rollout is over a service, never over one instance. */
        return unit_name_is_valid(unit, UNIT_NAME_PLAIN);
}

static bool timing_is_valid(usec_t healthy_for, usec_t health_timeout) {
        /* Settling counts against the timeout, so HealthyFor ≥ HealthTimeout
         * would fail every step by construction. */
        return healthy_for < health_timeout;
}

/* Time since `since`; a clock that went back counts as no time at all, so it
 * can delay a timeout but never cause one. */
static usec_t elapsed(usec_t now, usec_t since) {
        return now > since ? now - since : 0;
}

static bool item_in_flight(const RolloutItem *it) {
        return it->state == ITEM_RESTARTING || it->state == ITEM_SETTLING;
}

static int item_compare(const void *key, const void *elem) {
        uint32_t a = *(const uint32_t *) key, b = ((const RolloutItem *) elem)->instance;

        return a < b ? -1 : a > b ? 1 : 0;
}

/* Items are sorted by instance (rollout_new() makes 0…n-1, rollout_parse()
 * insists on increasing instances). */
static RolloutItem *rollout_find_item(const Rollout *r, uint32_t instance) {
        return bsearch(&instance, r->items, r->n_items, sizeof(RolloutItem), item_compare);
}

Rollout *rollout_free(Rollout *r) {
        if (!r)
                return NULL;
        free(r->service);
        free(r->items);
        free(r->reason);
        return mfree(r);
}

int rollout_copy(const Rollout *r, Rollout **ret) {
        _cleanup_(rollout_freep) Rollout *c = calloc(1, sizeof(Rollout));

        if (!c)
                return -ENOMEM;
        *c = *r;
        c->service = NULL;
        c->items = NULL;
        c->reason = NULL;
        c->service = strdup(r->service);
        c->items = malloc(MAX(r->n_items, (size_t) 1) * sizeof(RolloutItem));
        if (!c->service || !c->items || (r->reason && !(c->reason = strdup(r->reason))))
                return -ENOMEM;
        memcpy(c->items, r->items, r->n_items * sizeof(RolloutItem));
        *ret = TAKE_PTR(c);
        return 0;
}

int rollout_new(const char *service, uint64_t id, uint32_t n_instances, uint32_t max_unavailable,
                usec_t healthy_for, usec_t health_timeout, Rollout **ret) {
        _cleanup_(rollout_freep) Rollout *r = NULL;

        assert(ret);

        if (!service_name_is_valid(service) || n_instances == 0 ||
            n_instances > ROLLOUT_ITEMS_MAX || max_unavailable == 0 ||
            !timing_is_valid(healthy_for, health_timeout))
                return -EINVAL;

        r = calloc(1, sizeof(Rollout));
        if (!r)
                return -ENOMEM;
        r->service = strdup(service);
        r->items = calloc(n_instances, sizeof(RolloutItem));
        if (!r->service || !r->items)
                return -ENOMEM;

        for (uint32_t i = 0; i < n_instances; i++)
                r->items[i] = (RolloutItem){ .instance = i, .state = ITEM_PENDING };
        r->n_items = n_instances;
        r->id = id;
        r->state = ROLLOUT_RUNNING;
        r->max_unavailable = max_unavailable;
        r->healthy_for = healthy_for;
        r->health_timeout = health_timeout;

        *ret = TAKE_PTR(r);
        return 0;
}

/* What the step saw of one item, merged over every health entry for it: an
 * instance reported twice is healthy only if both reports say so. */
enum {
        SEEN_ = 1 << 0,
        SICK_ = 1 << 1,  /* some entry says unhealthy */
        STALE_ = 1 << 2, /* some entry says not restarted since the issue */
};

static bool seen_healthy(uint8_t f) {
        return (f & SEEN_) && !(f & SICK_);
}

static bool seen_up_after_restart(uint8_t f) {
        return seen_healthy(f) && !(f & STALE_);
}

/* Moves one in-flight item along; returns true if it failed just now. */
static bool item_track(const Rollout *r, RolloutItem *it, bool up, usec_t now) {
        if (!up) {
                it->state = ITEM_RESTARTING;
                it->healthy_since = 0;
        } else if (it->state == ITEM_RESTARTING) {
                it->state = ITEM_SETTLING;
                it->healthy_since = now;
        }

        /* Done before failed: an item that completes its HealthyFor in the very
         * step its timeout passes made it. */
        if (it->state == ITEM_SETTLING && elapsed(now, it->healthy_since) >= r->healthy_for) {
                it->state = ITEM_DONE;
                return false;
        }
        if (elapsed(now, it->started_at) > r->health_timeout) {
                it->state = ITEM_FAILED;
                it->healthy_since = 0;
                return true;
        }
        return false;
}

static void rollout_fail(Rollout *r, const RolloutItem *it) {
        char d[DURATION_MAX_LEN], *s = NULL;

        /* Only the first failure names the reason; later ones while FAILED
         * add nothing an operator needs to act on. */
        if (r->state == ROLLOUT_FAILED)
                return;
        r->state = ROLLOUT_FAILED;
        if (asprintf(&s, "instance %" PRIu32 " not healthy within %s", it->instance,
                     duration_format(d, sizeof(d), r->health_timeout)) < 0)
                s = NULL; /* the state matters, the text is best effort */
        free(r->reason);
        r->reason = s;
}

static void push(RolloutAction *ret, size_t *n, RolloutActionKind kind, uint32_t instance) {
        ret[(*n)++] = (RolloutAction){ .kind = kind, .instance = instance };
}

/* The alert follows the state: raised while FAILED, resolved otherwise. */
static void rollout_sync_alert(Rollout *r, RolloutAction *ret, size_t max, size_t *n) {
        bool want = r->state == ROLLOUT_FAILED;

        if (want == r->alert_raised || *n >= max)
                return;
        push(ret, n, want ? ROLLOUT_ACTION_ALERT : ROLLOUT_ACTION_RESOLVE, 0);
        r->alert_raised = want;
}

size_t rollout_step(Rollout *r, const InstanceHealth *health, size_t n_health, usec_t now,
                    uint32_t may_start, RolloutAction *ret, size_t max) {
        _cleanup_free_ uint8_t *seen = NULL;
        size_t n = 0, in_flight = 0, others_down = 0;
        bool all_done = true;

        assert(r);
        assert(health || n_health == 0);
        assert(ret || max == 0);

        if (r->state == ROLLOUT_DONE || r->state == ROLLOUT_ABORTED) {
                rollout_sync_alert(r, ret, max, &n);
                return n;
        }

        seen = calloc(r->n_items, 1);
        if (!seen)
                return 0;

        for (size_t i = 0; i < n_health; i++) {
                const InstanceHealth *h = health + i;
                RolloutItem *it = rollout_find_item(r, h->instance);

                if (!it) {
                        /* Not ours, but down all the same: it uses up MaxUnavailable. */
                        if (!h->healthy)
                                others_down++;
                        continue;
                }
                seen[it - r->items] |=
                        SEEN_ | (h->healthy ? 0 : SICK_) | (h->restarted_since_issue ? 0 : STALE_);
        }

        for (size_t k = 0; k < r->n_items; k++) {
                RolloutItem *it = r->items + k;

                if (item_in_flight(it) && item_track(r, it, seen_up_after_restart(seen[k]), now))
                        rollout_fail(r, it);

                if (item_in_flight(it))
                        in_flight++;
                else if (!seen_healthy(seen[k]))
                        others_down++;
                if (it->state != ITEM_DONE)
                        all_done = false;
        }

        rollout_sync_alert(r, ret, max, &n);

        if (r->state == ROLLOUT_RUNNING)
                for (size_t k = 0; k < r->n_items && n < max && may_start > 0; k++) {
                        RolloutItem *it = r->items + k;
                        size_t self_down;

                        if (it->state != ITEM_PENDING)
                                continue;
                        /* An instance already down costs nothing more to restart:
                         * it only moves from the others' count into ours. */
                        self_down = seen_healthy(seen[k]) ? 0 : 1;
                        if (in_flight + 1 + others_down - self_down > r->max_unavailable)
                                continue;

                        it->state = ITEM_RESTARTING;
                        it->started_at = now;
                        it->healthy_since = 0;
                        if (it->attempts < UINT32_MAX)
                                it->attempts++;
                        in_flight++;
                        others_down -= self_down;
                        may_start--;
                        push(ret, &n, ROLLOUT_ACTION_RESTART, it->instance);
                }

        if (all_done && (r->state == ROLLOUT_RUNNING || r->state == ROLLOUT_PAUSED) && n < max) {
                r->state = ROLLOUT_DONE;
                r->reason = mfree(r->reason);
                push(ret, &n, ROLLOUT_ACTION_FINISHED, 0);
        }

        return n;
}

DEFINE_OPSTATE_CONTROL(rollout_control, Rollout, ROLLOUT)

int rollout_pause(Rollout *r, const char *reason) {
        return rollout_control(r, OP_CONTROL_PAUSE, reason);
}

int rollout_resume(Rollout *r) {
        int e;

        e = rollout_control(r, OP_CONTROL_RESUME, NULL);
        if (e < 0)
                return e;

        /* A failed item gets one more restart; attempts keeps the count. */
        for (size_t k = 0; k < r->n_items; k++)
                if (r->items[k].state == ITEM_FAILED) {
                        r->items[k].state = ITEM_PENDING;
                        r->items[k].started_at = 0;
                        r->items[k].healthy_since = 0;
                }
        return 0;
}

int rollout_abort(Rollout *r, const char *reason) {
        return rollout_control(r, OP_CONTROL_ABORT, reason);
}

int rollout_restart_id(const Rollout *r, uint32_t instance, char **ret) {
        const RolloutItem *it;
        char *s;

        assert(r);
        assert(ret);

        it = rollout_find_item(r, instance);
        if (!it || it->attempts == 0)
                return -ENOENT;
        if (asprintf(&s, "rollout/%s/%" PRIu64 "/%" PRIu32 "/%" PRIu32, r->service, r->id,
                     it->instance, it->attempts) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int rollout_format(const Rollout *r, char **ret) {
        TextLine t = { 0 };

        assert(r);
        assert(ret);
        assert(r->service);
        assert(r->state >= 0 && r->state < _ROLLOUT_STATE_MAX);

        textline_printf(&t,
                        ROLLOUT_TEXT_VERSION
                        " service=%s id=%" PRIu64 " state=%s max_unavailable=%" PRIu32
                        " healthy_for=%" PRIu64 " health_timeout=%" PRIu64 " alert=%d items=%zu",
                        r->service, r->id, rollout_state_to_string(r->state), r->max_unavailable,
                        (uint64_t) r->healthy_for, (uint64_t) r->health_timeout,
                        r->alert_raised ? 1 : 0, r->n_items);
        for (size_t k = 0; k < r->n_items; k++) {
                const RolloutItem *it = r->items + k;

                assert(it->state >= 0 && it->state < _ITEM_STATE_MAX);
                textline_printf(&t, " %" PRIu32 ":%s:%" PRIu64 ":%" PRIu64 ":%" PRIu32,
                                it->instance, rollout_item_state_to_string(it->state),
                                (uint64_t) it->started_at, (uint64_t) it->healthy_since,
                                it->attempts);
        }
        textline_printf(&t, " ");
        textline_put_reason(&t, r->reason);

        if (t.oom) {
                free(t.s);
                return -ENOMEM;
        }
        *ret = t.s;
        return 0;
}

static int lookup_rollout_state(const char *s) {
        return rollout_state_from_string(s);
}

static int lookup_item_state(const char *s) {
        return rollout_item_state_from_string(s);
}

static int parse_item(TextParser *ps, size_t k, RolloutItem *ret) {
        RolloutItem it = { 0 };
        char what[64];
        uint64_t v = 0;
        int state = 0, e;

        snprintf(what, sizeof(what), "item %zu instance", k);
        e = textline_parse_u32(ps, what, &it.instance);
        if (e < 0)
                return e;
        snprintf(what, sizeof(what), "item %zu state", k);
        if ((e = textline_expect(ps, ":")) < 0 ||
            (e = textline_parse_state(ps, what, lookup_item_state, &state)) < 0)
                return e;
        it.state = state;
        snprintf(what, sizeof(what), "item %zu started_at", k);
        if ((e = textline_expect(ps, ":")) < 0 ||
            (e = textline_parse_uint(ps, what, UINT64_MAX, &v)) < 0)
                return e;
        it.started_at = v;
        snprintf(what, sizeof(what), "item %zu healthy_since", k);
        if ((e = textline_expect(ps, ":")) < 0 ||
            (e = textline_parse_uint(ps, what, UINT64_MAX, &v)) < 0)
                return e;
        it.healthy_since = v;
        snprintf(what, sizeof(what), "item %zu attempts", k);
        if ((e = textline_expect(ps, ":")) < 0 ||
            (e = textline_parse_u32(ps, what, &it.attempts)) < 0)
                return e;

        *ret = it;
        return 0;
}

/* Refuses what no sequence of steps and operator controls can produce, so a
 * corrupted row is reported instead of acted upon. */
static int rollout_check(TextParser *ps, const Rollout *r, const char *const *item_pos) {
        size_t in_flight = 0, failed = 0, done = 0;

        for (size_t k = 0; k < r->n_items; k++) {
                const RolloutItem *it = r->items + k;

                ps->p = item_pos[k];
                if (k > 0 && it->instance <= r->items[k - 1].instance)
                        return textline_fail(ps,
                                             "item %zu: instance %" PRIu32 " not after %" PRIu32, k,
                                             it->instance, r->items[k - 1].instance);
                if (it->state == ITEM_PENDING && (it->started_at != 0 || it->healthy_since != 0))
                        return textline_fail(
                                ps, "item %zu: pending but has started_at/healthy_since", k);
                if (it->state != ITEM_PENDING && it->attempts == 0)
                        return textline_fail(ps, "item %zu: %s but never restarted (attempts 0)", k,
                                             rollout_item_state_to_string(it->state));
                if ((it->state == ITEM_RESTARTING || it->state == ITEM_FAILED) &&
                    it->healthy_since != 0)
                        return textline_fail(ps, "item %zu: %s but healthy_since is set", k,
                                             rollout_item_state_to_string(it->state));
                in_flight += item_in_flight(it);
                failed += it->state == ITEM_FAILED;
                done += it->state == ITEM_DONE;
        }

        ps->p = item_pos[r->n_items];
        if (in_flight > r->max_unavailable)
                return textline_fail(ps, "%zu items in flight, more than max_unavailable %" PRIu32,
                                     in_flight, r->max_unavailable);
        if (r->state == ROLLOUT_DONE && done != r->n_items)
                return textline_fail(ps, "state done but %zu of %zu items are not",
                                     r->n_items - done, r->n_items);
        if ((r->state == ROLLOUT_RUNNING || r->state == ROLLOUT_PAUSED) && failed > 0)
                return textline_fail(ps, "state %s with %zu failed items",
                                     rollout_state_to_string(r->state), failed);
        if (r->state == ROLLOUT_FAILED && failed == 0)
                return textline_fail(ps, "state failed without a failed item");
        return 0;
}

static int parse_rollout(TextParser *ps, Rollout **ret) {
        _cleanup_(rollout_freep) Rollout *r = NULL;
        _cleanup_free_ const char **item_pos = NULL;
        const char *start;
        uint64_t v = 0;
        int state = 0, k;
        size_t len;

        r = calloc(1, sizeof(Rollout));
        if (!r) {
                ps->oom = true;
                return -ENOMEM;
        }

        /* A later format gets a message saying so, not a syntax error. */
        len = strcspn(ps->p, " ");
        if (strncmp(ps->p, "baton-rollout/", strlen("baton-rollout/")) == 0 &&
            (len != strlen(ROLLOUT_TEXT_VERSION) || strncmp(ps->p, ROLLOUT_TEXT_VERSION, len) != 0))
                return textline_fail(ps, "unsupported version \"%s\" (this is %s)",
                                     textline_snippet(ps->p, len).s, ROLLOUT_TEXT_VERSION);
        if ((k = textline_expect(ps, ROLLOUT_TEXT_VERSION)) < 0 ||
            (k = textline_expect(ps, " service=")) < 0)
                return k;

        start = ps->p;
        len = strcspn(ps->p, " ");
        r->service = strndup(ps->p, len);
        if (!r->service) {
                ps->oom = true;
                return -ENOMEM;
        }
        if (!service_name_is_valid(r->service))
                return textline_fail(ps, "service: invalid service name \"%s\"",
                                     textline_snippet(start, len).s);
        ps->p += len;
        if ((k = textline_parse_field(ps, "id", UINT64_MAX, &v, NULL)) < 0)
                return k;
        r->id = v;

        if ((k = textline_expect(ps, " state=")) < 0 ||
            (k = textline_parse_state(ps, "state", lookup_rollout_state, &state)) < 0)
                return k;
        r->state = state;

        if ((k = textline_parse_field(ps, "max_unavailable", UINT32_MAX, &v, &start)) < 0)
                return k;
        if (v == 0) {
                ps->p = start;
                return textline_fail(ps, "max_unavailable must be at least 1");
        }
        r->max_unavailable = (uint32_t) v;

        if ((k = textline_parse_field(ps, "healthy_for", UINT64_MAX, &v, NULL)) < 0)
                return k;
        r->healthy_for = v;
        if ((k = textline_parse_field(ps, "health_timeout", UINT64_MAX, &v, &start)) < 0)
                return k;
        r->health_timeout = v;
        if (!timing_is_valid(r->healthy_for, r->health_timeout)) {
                ps->p = start;
                return textline_fail(ps, "health_timeout must be longer than healthy_for");
        }

        if ((k = textline_expect(ps, " alert=")) < 0)
                return k;
        if (ps->p[0] != '0' && ps->p[0] != '1')
                return textline_fail(ps, "alert: expected 0 or 1");
        r->alert_raised = *ps->p++ == '1';

        if ((k = textline_parse_field(ps, "items", UINT64_MAX, &v, &start)) < 0)
                return k;
        if (v == 0 || v > ROLLOUT_ITEMS_MAX) {
                ps->p = start;
                return textline_fail(ps, "items: %" PRIu64 " is not within 1..%u", v,
                                     ROLLOUT_ITEMS_MAX);
        }
        /* Each item takes at least 13 bytes of text: refuse a count the rest
         * cannot hold before allocating for it. */
        if (strlen(ps->p) / 13 < v) {
                ps->p = start;
                return textline_fail(ps, "items: text too short for %" PRIu64 " items", v);
        }

        r->items = calloc(v, sizeof(RolloutItem));
        item_pos = calloc(v + 1, sizeof(char *));
        if (!r->items || !item_pos) {
                ps->oom = true;
                return -ENOMEM;
        }
        for (size_t i = 0; i < v; i++) {
                if ((k = textline_expect(ps, " ")) < 0)
                        return k;
                item_pos[i] = ps->p;
                if ((k = parse_item(ps, i, r->items + i)) < 0)
                        return k;
                r->n_items = i + 1;
        }
        item_pos[v] = ps->p;

        if ((k = textline_expect(ps, " ")) < 0 || (k = textline_parse_reason(ps, &r->reason)) < 0)
                return k;
        if (*ps->p != 0)
                return textline_fail(ps, "unexpected text after the reason");

        k = rollout_check(ps, r, item_pos);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(r);
        return 0;
}

int rollout_parse(const char *text, Rollout **ret, char **ret_error) {
        TextParser ps = { .text = text, .p = text };
        Rollout *r = NULL;
        int k;

        assert(text);
        assert(ret);

        k = parse_rollout(&ps, &r);
        if (ps.oom) {
                rollout_free(r);
                free(ps.error);
                return -ENOMEM;
        }
        if (k < 0) {
                if (ret_error)
                        *ret_error = ps.error;
                else
                        free(ps.error);
                return k;
        }
        free(ps.error);
        *ret = r;
        return 0;
}
