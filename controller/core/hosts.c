/* SPDX-License-Identifier: MIT */
/* Host liveness: a sorted table of hosts, heartbeats in, up/down/drained
 * transitions out. The timeout decision lives here, not in the daemon, so it
 * can be tested against any clock. */
#include <assert.h>
#include <stdlib.h>

#include "fnv.h"
#include "hosts.h"

static const char *const host_state_table[_HOST_STATE_MAX] = {
        [HOST_UP] = "up",
        [HOST_DOWN] = "down",
        [HOST_DRAINED] = "drained",
};

DEFINE_STRING_TABLE_LOOKUP(host_state, HostState, _HOST_STATE_MAX)

void host_table_init(HostTable *t, usec_t timeout) {
        assert(t);
        *t = (HostTable){ .timeout = timeout };
}

void host_table_done(HostTable *t, void (*free_userdata)(void *)) {
        for (size_t i = 0; i < t->n_hosts; i++) {
                if (free_userdata && t->hosts[i]->userdata)
                        free_userdata(t->hosts[i]->userdata);
                free(t->hosts[i]->id);
                free(t->hosts[i]);
        }
        free(t->hosts);
        free(t->by_id);
        *t = (HostTable){ 0 };
}

/* Index of id, or of where it would be inserted (with *found false). */
static size_t find(const HostTable *t, const char *id, bool *found) {
        size_t lo = 0, hi = t->n_hosts;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(t->hosts[mid]->id, id);
                if (c == 0) {
                        *found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *found = false;
        return lo;
}

static size_t by_id_slot(Host *const *v, size_t size, const char *id) {
        size_t i = (size_t) fnv1a64_str(FNV1A64_OFFSET, id) & (size - 1);

        while (v[i] && !streq(v[i]->id, id))
                i = (i + 1) & (size - 1);
        return i;
}

/* Makes room in HostTable.by_id for one more host: grows and rehashes when
 * it would be more than half full. */
static int by_id_reserve(HostTable *t) {
        Host **v;
        size_t size;

        if ((t->n_hosts + 1) * 2 <= t->by_id_size)
                return 0;
        size = MAX(t->by_id_size * 2, (size_t) 64);
        v = calloc(size, sizeof(Host *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_hosts; i++)
                v[by_id_slot(v, size, t->hosts[i]->id)] = t->hosts[i];
        free(t->by_id);
        t->by_id = v;
        t->by_id_size = size;
        return 0;
}

Host *host_table_get(const HostTable *t, const char *id) {
        assert(t);
        if (!id || t->by_id_size == 0)
                return NULL;
        return t->by_id[by_id_slot(t->by_id, t->by_id_size, id)];
}

HostState host_state(const Host *h) {
        if (!h->alive)
                return HOST_DOWN;
        return h->drained ? HOST_DRAINED : HOST_UP;
}

static int insert(HostTable *t, const char *id, Host **ret) {
        _cleanup_free_ Host *h = NULL;
        Host *known = host_table_get(t, id);
        bool found;
        size_t i;

        if (known) {
                *ret = known;
                return 0;
        }
        i = find(t, id, &found);
        assert(!found);

        if (by_id_reserve(t) < 0)
                return -ENOMEM;
        if (t->n_hosts == t->n_allocated) {
                size_t n = t->n_allocated ? t->n_allocated * 2 : 16;
                Host **p = realloc(t->hosts, n * sizeof(Host *));
                if (!p)
                        return -ENOMEM;
                t->hosts = p;
                t->n_allocated = n;
        }

        h = calloc(1, sizeof(Host));
        if (!h)
                return -ENOMEM;
        h->id = strdup(id);
        if (!h->id)
                return -ENOMEM;

        memmove(t->hosts + i + 1, t->hosts + i, (t->n_hosts - i) * sizeof(Host *));
        t->hosts[i] = h;
        t->n_hosts++;
        for (size_t k = i; k < t->n_hosts; k++)
                t->hosts[k]->at = k;
        t->by_id[by_id_slot(t->by_id, t->by_id_size, id)] = h;
        *ret = TAKE_PTR(h);
        return 1;
}

int host_table_restore(HostTable *t, const char *id, bool alive, bool drained, usec_t now,
                       Host **ret) {
        Host *h;
        int r;

        assert(t);
        assert(id);

        r = insert(t, id, &h);
        if (r < 0)
                return r;
        h->alive = alive;
        if (h->drained != drained)
                t->n_drained = drained ? t->n_drained + 1 : t->n_drained - 1;
        h->drained = drained;
        h->last_seen = now;
        h->state_since = now;
        if (ret)
                *ret = h;
        return 0;
}

int host_table_heartbeat(HostTable *t, const char *id, usec_t now, Host **ret_host,
                         HostTransition *ret_transition) {
        HostState from;
        Host *h;
        int r;

        assert(t);
        assert(id);

        r = insert(t, id, &h);
        if (r < 0)
                return r;
        from = r > 0 ? _HOST_STATE_INVALID : host_state(h);

        /* A heartbeat delayed in a queue may carry an older time than one we
         * already saw: never move last_seen backwards. */
        if (now > h->last_seen)
                h->last_seen = now;
        h->heartbeats++;
        if (ret_host)
                *ret_host = h;

        if (r == 0 && h->alive)
                return 0;

        h->alive = true;
        h->state_since = now;
        if (ret_transition)
                *ret_transition =
                        (HostTransition){ .id = h->id, .from = from, .to = host_state(h) };
        return 1;
}

size_t host_table_expire(HostTable *t, usec_t now, HostTransition *ret, size_t max) {
        size_t n = 0;

        assert(t);

        for (size_t i = 0; i < t->n_hosts && n < max; i++) {
                Host *h = t->hosts[i];

                if (!h->alive || now < h->last_seen || now - h->last_seen <= t->timeout)
                        continue;
                ret[n++] = (HostTransition){ .id = h->id, .from = host_state(h), .to = HOST_DOWN };
                h->alive = false;
                h->state_since = now;
        }
        return n;
}

int host_table_set_drained(HostTable *t, const char *id, bool drained, HostTransition *ret) {
        Host *h;
        HostState from;

        h = host_table_get(t, id);
        if (!h)
                return -ENOENT;
        if (h->drained == drained)
                return 0;
        from = host_state(h);
        h->drained = drained;
        t->n_drained = drained ? t->n_drained + 1 : t->n_drained - 1;
        if (ret)
                *ret = (HostTransition){ .id = h->id, .from = from, .to = host_state(h) };
        return 1;
}

void host_table_grace(HostTable *t, usec_t now) {
        for (size_t i = 0; i < t->n_hosts; i++)
                if (t->hosts[i]->alive && t->hosts[i]->last_seen < now)
                        t->hosts[i]->last_seen = now;
}

usec_t host_table_next_deadline(const HostTable *t) {
        usec_t next = USEC_INFINITY;

        for (size_t i = 0; i < t->n_hosts; i++) {
                const Host *h = t->hosts[i];
                usec_t d;

                if (!h->alive)
                        continue;
                d = h->last_seen + t->timeout + 1;
                if (d < next)
                        next = d;
        }
        return next;
}

size_t host_table_count(const HostTable *t, HostState s) {
        size_t n = 0;

        for (size_t i = 0; i < t->n_hosts; i++)
                if (host_state(t->hosts[i]) == s)
                        n++;
        return n;
}
