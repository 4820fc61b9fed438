/* SPDX-License-Identifier: MIT */
/* Jobs, reloads, enablement and the pushed unit-property cache, on sd-bus.
 * A job completes when JobRemoved names its job path; because the signal can
 * be processed before the method reply that tells us the path (both may sit
 * in one read), recently removed jobs are remembered for a short while. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "systemd.h"

#define DEST "org.freedesktop.systemd1"
#define MANAGER_PATH "/org/freedesktop/systemd1"
#define MANAGER_IFACE "org.freedesktop.systemd1.Manager"
#define UNIT_IFACE "org.freedesktop.systemd1.Unit"
#define SERVICE_IFACE "org.freedesktop.systemd1.Service"
#define N_REMOVED 64

static const char *const job_kind_table[_JOB_KIND_MAX] = {
        [JOB_START] = "start",     [JOB_STOP] = "stop",
        [JOB_RESTART] = "restart", [JOB_TRY_RESTART] = "try-restart",
        [JOB_RELOAD] = "reload",
};

DEFINE_STRING_TABLE_LOOKUP(job_kind, JobKind, _JOB_KIND_MAX)

static const char *const job_method[_JOB_KIND_MAX] = {
        [JOB_START] = "StartUnit",     [JOB_STOP] = "StopUnit",
        [JOB_RESTART] = "RestartUnit", [JOB_TRY_RESTART] = "TryRestartUnit",
        [JOB_RELOAD] = "ReloadUnit",
};

typedef struct Watch {
        Systemd *s;
        UnitInfo info;
        char *path;
        sd_bus_slot *match;
        /* Outstanding GetAll per interface, owned here so that freeing the
         * watch cancels their callbacks. */
        sd_bus_slot *get_unit;
        sd_bus_slot *get_service;
} Watch;

typedef struct Job {
        Systemd *s;
        char *unit;
        char *path; /* once the method reply arrived */
        JobDoneFn fn;
        void *userdata;
        sd_bus_slot *call;
        sd_bus_message *message; /* built by systemd_job_new(), until sent */
} Job;

typedef struct Probe Probe;

typedef struct ProbeCall {
        Probe *p;
        size_t i; /* index into units, or n for UnitPath */
        sd_bus_slot *slot;
} ProbeCall;

struct Probe {
        Systemd *s;
        UnitProbe *units;
        size_t n;
        ProbeCall *calls; /* n + 1 */
        char **unit_path;
        size_t remaining;
        int error;
        ProbeDoneFn fn;
        void *userdata;
};

typedef struct Call {
        Systemd *s;
        CallDoneFn fn;
        void *userdata;
} Call;

struct Systemd {
        sd_bus *bus;
        BusLoop *loop;
        SystemdCallbacks cb;
        void *userdata;
        sd_bus_slot *job_removed;
        Watch **watches;
        size_t n_watches;
        Job **jobs;
        size_t n_jobs;
        size_t n_jobs_reserved; /* room in `jobs` for jobs made but not sent yet */
        Probe **probes;
        size_t n_probes;
        struct {
                char *path;
                char *result;
        } removed[N_REMOVED];
        size_t removed_next;
};

void unit_info_done(UnitInfo *u) {
        free(u->name);
        free(u->load_state);
        free(u->active_state);
        free(u->sub_state);
        free(u->result);
        free(u->status_text);
        *u = (UnitInfo){ .memory_current = UINT64_MAX };
}

static int unit_info_copy(UnitInfo *dst, const UnitInfo *src) {
        *dst = *src;
        dst->name = src->name ? strdup(src->name) : NULL;
        dst->load_state = src->load_state ? strdup(src->load_state) : NULL;
        dst->active_state = src->active_state ? strdup(src->active_state) : NULL;
        dst->sub_state = src->sub_state ? strdup(src->sub_state) : NULL;
        dst->result = src->result ? strdup(src->result) : NULL;
        dst->status_text = src->status_text ? strdup(src->status_text) : NULL;
        if ((src->name && !dst->name) || (src->load_state && !dst->load_state) ||
            (src->active_state && !dst->active_state) || (src->sub_state && !dst->sub_state) ||
            (src->result && !dst->result) || (src->status_text && !dst->status_text)) {
                unit_info_done(dst);
                return -ENOMEM;
        }
        return 0;
}

static bool unit_info_differs(const UnitInfo *a, const UnitInfo *b) {
        return !streq_ptr(a->active_state, b->active_state) ||
               !streq_ptr(a->sub_state, b->sub_state) || !streq_ptr(a->result, b->result) ||
               !streq_ptr(a->status_text, b->status_text) || a->n_restarts != b->n_restarts ||
               a->main_pid != b->main_pid || !streq_ptr(a->load_state, b->load_state) ||
               a->status_pending != b->status_pending;
}

static bool state_is_up(const char *s) {
        return streq_ptr(s, "active") || streq_ptr(s, "reloading");
}

/* ---- jobs ---------------------------------------------------------------- */

static void job_free(Job *j) {
        if (!j)
                return;
        sd_bus_slot_unref(j->call);
        sd_bus_message_unref(j->message);
        free(j->unit);
        free(j->path);
        free(j);
}

static void job_finish(Job *j, const char *result, int error, const char *message) {
        Systemd *s = j->s;

        for (size_t i = 0; i < s->n_jobs; i++)
                if (s->jobs[i] == j) {
                        s->jobs[i] = s->jobs[--s->n_jobs];
                        break;
                }
        if (j->fn)
                j->fn(s, j->unit, result, error, message, j->userdata);
        job_free(j);
}

static void remember_removed(Systemd *s, const char *path, const char *result) {
        size_t i = s->removed_next++ % N_REMOVED;

        free(s->removed[i].path);
        free(s->removed[i].result);
        s->removed[i].path = strdup(path);
        s->removed[i].result = strdup(result);
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Systemd *s = userdata;
        const char *path, *unit, *result;
        uint32_t id;
        int r;

        r = sd_bus_message_read(m, "uoss", &id, &path, &unit, &result);
        if (r < 0)
                return 0;
        for (size_t i = 0; i < s->n_jobs; i++)
                if (streq_ptr(s->jobs[i]->path, path)) {
                        job_finish(s->jobs[i], result, 0, NULL);
                        return 0;
                }
        /* Maybe ours, with its method reply not processed yet. */
        remember_removed(s, path, result);
        return 0;
}

static int on_job_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Job *j = userdata;
        Systemd *s = j->s;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *path;
        int r;

        j->call = sd_bus_slot_unref(j->call);
        if (e) {
                job_finish(j, NULL, sd_bus_error_get_errno(e) ? -sd_bus_error_get_errno(e) : -EIO,
                           e->message ? e->message : e->name);
                return 0;
        }
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                job_finish(j, NULL, r, "malformed reply from systemd");
                return 0;
        }
        for (size_t i = 0; i < N_REMOVED; i++)
                if (streq_ptr(s->removed[i].path, path)) {
                        _cleanup_free_ char *result = TAKE_PTR(s->removed[i].result);
                        s->removed[i].path = mfree(s->removed[i].path);
                        job_finish(j, result ? result : "done", 0, NULL);
                        return 0;
                }
        j->path = strdup(path);
        if (!j->path)
                job_finish(j, NULL, -ENOMEM, "out of memory");
        return 0;
}

int systemd_job_new(Systemd *s, JobKind kind, const char *unit, JobDoneFn fn, void *userdata,
                    SystemdJob **ret) {
        Job **p, *j;
        int r;

        assert(s);
        assert(kind >= 0 && kind < _JOB_KIND_MAX);
        assert(ret);

        p = reallocarray(s->jobs, s->n_jobs + s->n_jobs_reserved + 1, sizeof(Job *));
        if (!p)
                return -ENOMEM;
        s->jobs = p;
        j = calloc(1, sizeof(Job));
        if (!j)
                return -ENOMEM;
        *j = (Job){ .s = s, .unit = strdup(unit), .fn = fn, .userdata = userdata };
        if (!j->unit) {
                job_free(j);
                return -ENOMEM;
        }
        /* "replace": a queued conflicting job (say a stop) is replaced by ours. */
        r = sd_bus_message_new_method_call(s->bus, &j->message, DEST, MANAGER_PATH, MANAGER_IFACE,
                                           job_method[kind]);
        if (r >= 0)
                r = sd_bus_message_append(j->message, "ss", unit, "replace");
        if (r < 0) {
                job_free(j);
                return r;
        }
        s->n_jobs_reserved++;
        *ret = j;
        return 0;
}

SystemdJob *systemd_job_free(SystemdJob *j) {
        if (!j)
                return NULL;
        assert(j->message); /* never sent */
        assert(j->s->n_jobs_reserved > 0);
        j->s->n_jobs_reserved--;
        job_free(j);
        return NULL;
}

int systemd_job_send(SystemdJob *j) {
        Systemd *s = j->s;
        int r;

        assert(j->message);

        r = sd_bus_call_async(s->bus, &j->call, j->message, on_job_reply, j, 0);
        if (r < 0) {
                systemd_job_free(j);
                return r;
        }
        j->message = sd_bus_message_unref(j->message);
        /* room was made by systemd_job_new() */
        s->n_jobs_reserved--;
        s->jobs[s->n_jobs++] = j;
        bus_loop_kick(s->loop);
        return 0;
}

int systemd_job(Systemd *s, JobKind kind, const char *unit, JobDoneFn fn, void *userdata) {
        SystemdJob *j;
        int r;

        r = systemd_job_new(s, kind, unit, fn, userdata, &j);
        if (r < 0)
                return r;
        return systemd_job_send(j);
}

size_t systemd_jobs_pending(Systemd *s) {
        return s->n_jobs;
}

/* ---- plain calls --------------------------------------------------------- */

static int on_call_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Call *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (c->fn) {
                if (e)
                        c->fn(c->s, sd_bus_error_get_errno(e) ? -sd_bus_error_get_errno(e) : -EIO,
                              e->message ? e->message : e->name, c->userdata);
                else
                        c->fn(c->s, 0, NULL, c->userdata);
        }
        free(c);
        return 0;
}

static int call_new(Systemd *s, CallDoneFn fn, void *userdata, Call **ret) {
        Call *c = calloc(1, sizeof(Call));

        if (!c)
                return -ENOMEM;
        *c = (Call){ .s = s, .fn = fn, .userdata = userdata };
        *ret = c;
        return 0;
}

int systemd_reload(Systemd *s, CallDoneFn fn, void *userdata) {
        Call *c;
        int r;

        r = call_new(s, fn, userdata, &c);
        if (r < 0)
                return r;
        /* Floating slot: it lives until the reply. */
        r = sd_bus_call_method_async(s->bus, NULL, DEST, MANAGER_PATH, MANAGER_IFACE, "Reload",
                                     on_call_reply, c, "");
        if (r < 0) {
                free(c);
                return r;
        }
        bus_loop_kick(s->loop);
        return 0;
}

int systemd_enable(Systemd *s, const char *const *units, size_t n, bool enable, const char *target,
                   CallDoneFn fn, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        Call *c;
        int r;

        r = sd_bus_message_new_method_call(s->bus, &m, DEST, MANAGER_PATH, MANAGER_IFACE,
                                           enable ? "AddDependencyUnitFiles" : "DisableUnitFiles");
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "s");
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append(m, "s", units[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0) {
                if (enable)
                        /* target, type, runtime=false (persistent), force=true */
                        r = sd_bus_message_append(m, "ssbb", target, "Wants", 0, 1);
                else
                        r = sd_bus_message_append(m, "b", 0);
        }
        if (r < 0)
                return r;

        r = call_new(s, fn, userdata, &c);
        if (r < 0)
                return r;
        r = sd_bus_call_async(s->bus, NULL, m, on_call_reply, c, 0);
        if (r < 0) {
                free(c);
                return r;
        }
        bus_loop_kick(s->loop);
        return 0;
}

static int on_subscribed(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        /* Nothing to do: errors here surface as jobs that never complete,
         * which cannot happen on a working manager. */
        return 0;
}

int systemd_subscribe(Systemd *s) {
        int r;

        if (!s->job_removed) {
                r = sd_bus_match_signal_async(s->bus, &s->job_removed, NULL, MANAGER_PATH,
                                              MANAGER_IFACE, "JobRemoved", on_job_removed, NULL, s);
                if (r < 0)
                        return r;
        }
        r = sd_bus_call_method_async(s->bus, NULL, DEST, MANAGER_PATH, MANAGER_IFACE, "Subscribe",
                                     on_subscribed, s, "");
        if (r < 0)
                return r;
        bus_loop_kick(s->loop);
        return 0;
}

/* ---- watched units ------------------------------------------------------- */

static int set_str(char **dst, const char *v) {
        char *c = strdup(v);

        if (!c)
                return -ENOMEM;
        free(*dst);
        *dst = c;
        return 0;
}

/* Applies one a{sv} of Unit or Service properties to `u`. */
static int apply_properties(UnitInfo *u, sd_bus_message *m) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name, *contents;
                char type;

                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;
                if (type != 'v' || !contents || strlen(contents) != 1) {
                        r = sd_bus_message_skip(m, "v");
                } else if (contents[0] == 's') {
                        const char *v;
                        r = sd_bus_message_read(m, "v", "s", &v);
                        if (r < 0)
                                return r;
                        if (streq(name, "ActiveState"))
                                r = set_str(&u->active_state, v);
                        else if (streq(name, "SubState"))
                                r = set_str(&u->sub_state, v);
                        else if (streq(name, "LoadState"))
                                r = set_str(&u->load_state, v);
                        else if (streq(name, "Result"))
                                r = set_str(&u->result, v);
                        else if (streq(name, "StatusText"))
                                r = set_str(&u->status_text, v);
                } else if (contents[0] == 'u') {
                        uint32_t v;
                        r = sd_bus_message_read(m, "v", "u", &v);
                        if (r < 0)
                                return r;
                        if (streq(name, "NRestarts"))
                                u->n_restarts = v;
                        else if (streq(name, "MainPID"))
                                u->main_pid = v;
                } else if (contents[0] == 't') {
                        uint64_t v;
                        r = sd_bus_message_read(m, "v", "t", &v);
                        if (r < 0)
                                return r;
                        if (streq(name, "MemoryCurrent"))
                                u->memory_current = v;
                        else if (streq(name, "StateChangeTimestamp"))
                                u->state_change_usec = v;
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static void notify_if_changed(Watch *w, const UnitInfo *old) {
        Systemd *s = w->s;

        if (old->known && unit_info_differs(&w->info, old) && s->cb.unit_changed)
                s->cb.unit_changed(s, &w->info, old, s->userdata);
}

static int read_all(Watch *w, const char *iface);

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Watch *w = userdata;
        UnitInfo old;
        const char *iface;
        int r;

        r = sd_bus_message_read(m, "s", &iface);
        if (r < 0 || (!streq(iface, UNIT_IFACE) && !streq(iface, SERVICE_IFACE)))
                return 0;
        if (unit_info_copy(&old, &w->info) < 0)
                return 0;
        r = apply_properties(&w->info, m);
        if (r >= 0) {
                /* Invalidated properties come without values: read them. */
                const char *inv;
                bool reread = false;
                if (sd_bus_message_enter_container(m, 'a', "s") > 0) {
                        while (sd_bus_message_read(m, "s", &inv) > 0)
                                reread = true;
                        (void) sd_bus_message_exit_container(m);
                }
                if (reread)
                        (void) read_all(w, iface);
                if (streq(iface, SERVICE_IFACE))
                        w->info.status_pending = false;
                else if (state_is_up(w->info.active_state) && !state_is_up(old.active_state) &&
                         read_all(w, SERVICE_IFACE) >= 0)
                        /* Its StatusText as of now: the tokens sent with READY=1. */
                        w->info.status_pending = true;
                notify_if_changed(w, &old);
        }
        unit_info_done(&old);
        return 0;
}

static void apply_get_all(Watch *w, sd_bus_message *reply, bool service) {
        UnitInfo old;
        bool error = sd_bus_message_is_method_error(reply, NULL);

        if (unit_info_copy(&old, &w->info) < 0)
                return;
        /* Read (or not to be read: not a service): nothing more to wait for. */
        if (service)
                w->info.status_pending = false;
        if (!error && apply_properties(&w->info, reply) >= 0) {
                bool first = !w->info.known;
                w->info.known = true;
                if (!first)
                        notify_if_changed(w, &old);
        } else if (w->info.known)
                notify_if_changed(w, &old);
        unit_info_done(&old);
}

static int on_get_all_unit(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Watch *w = userdata;

        w->get_unit = sd_bus_slot_unref(w->get_unit);
        apply_get_all(w, reply, false);
        return 0;
}

static int on_get_all_service(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Watch *w = userdata;

        w->get_service = sd_bus_slot_unref(w->get_service);
        apply_get_all(w, reply, true);
        return 0;
}

static int read_all(Watch *w, const char *iface) {
        bool unit = streq(iface, UNIT_IFACE);
        sd_bus_slot **slot = unit ? &w->get_unit : &w->get_service;
        int r;

        /* A newer read supersedes one still in flight. */
        *slot = sd_bus_slot_unref(*slot);
        r = sd_bus_call_method_async(w->s->bus, slot, DEST, w->path,
                                     "org.freedesktop.DBus.Properties", "GetAll",
                                     unit ? on_get_all_unit : on_get_all_service, w, "s", iface);
        if (r >= 0)
                bus_loop_kick(w->s->loop);
        return r;
}

static Watch *find_watch(Systemd *s, const char *unit, size_t *ret_index) {
        for (size_t i = 0; i < s->n_watches; i++)
                if (streq(s->watches[i]->info.name, unit)) {
                        if (ret_index)
                                *ret_index = i;
                        return s->watches[i];
                }
        return NULL;
}

static void watch_free(Watch *w) {
        if (!w)
                return;
        sd_bus_slot_unref(w->match);
        sd_bus_slot_unref(w->get_unit);
        sd_bus_slot_unref(w->get_service);
        free(w->path);
        unit_info_done(&w->info);
        free(w);
}

int systemd_watch(Systemd *s, const char *unit) {
        Watch **p, *w;
        int r;

        if (find_watch(s, unit, NULL))
                return 0;
        p = realloc(s->watches, (s->n_watches + 1) * sizeof(Watch *));
        if (!p)
                return -ENOMEM;
        s->watches = p;
        w = calloc(1, sizeof(Watch));
        if (!w)
                return -ENOMEM;
        w->s = s;
        w->info.memory_current = UINT64_MAX;
        w->info.name = strdup(unit);
        if (!w->info.name) {
                watch_free(w);
                return -ENOMEM;
        }
        r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit, &w->path);
        if (r < 0) {
                watch_free(w);
                return r;
        }
        r = sd_bus_match_signal_async(s->bus, &w->match, NULL, w->path,
                                      "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                      on_properties_changed, NULL, w);
        if (r < 0) {
                watch_free(w);
                return r;
        }
        s->watches[s->n_watches++] = w;
        (void) read_all(w, UNIT_IFACE);
        (void) read_all(w, SERVICE_IFACE);
        return 0;
}

void systemd_unwatch(Systemd *s, const char *unit) {
        size_t i;
        Watch *w = find_watch(s, unit, &i);

        if (!w)
                return;
        s->watches[i] = s->watches[--s->n_watches];
        watch_free(w);
}

const UnitInfo *systemd_unit(Systemd *s, const char *unit) {
        Watch *w = find_watch(s, unit, NULL);

        return w ? &w->info : NULL;
}

size_t systemd_n_watched(Systemd *s) {
        return s->n_watches;
}

const UnitInfo *systemd_watched(Systemd *s, size_t i) {
        return i < s->n_watches ? &s->watches[i]->info : NULL;
}

int systemd_refresh(Systemd *s) {
        int r = 0;

        for (size_t i = 0; i < s->n_watches; i++) {
                int k = read_all(s->watches[i], UNIT_IFACE);
                if (k >= 0)
                        k = read_all(s->watches[i], SERVICE_IFACE);
                if (k < 0 && r == 0)
                        r = k;
        }
        return r;
}

/* ---- probes -------------------------------------------------------------- */

static void probe_free(Probe *p) {
        if (!p)
                return;
        for (size_t i = 0; i <= p->n; i++)
                sd_bus_slot_unref(p->calls[i].slot);
        free(p->calls);
        for (size_t i = 0; i < p->n; i++) {
                free(p->units[i].name);
                free(p->units[i].load_state);
                free(p->units[i].active_state);
                free(p->units[i].fragment_path);
                free(p->units[i].error);
        }
        free(p->units);
        if (p->unit_path)
                for (char **d = p->unit_path; *d; d++)
                        free(*d);
        free(p->unit_path);
        free(p);
}

static void probe_finish(Probe *p, int error) {
        Systemd *s = p->s;

        for (size_t i = 0; i < s->n_probes; i++)
                if (s->probes[i] == p) {
                        s->probes[i] = s->probes[--s->n_probes];
                        break;
                }
        if (error < 0)
                p->fn(s, error, NULL, 0, NULL, p->userdata);
        else
                p->fn(s, 0, p->units, p->n, p->unit_path, p->userdata);
        probe_free(p);
}

static void probe_call_done(ProbeCall *c) {
        Probe *p = c->p;

        c->slot = sd_bus_slot_unref(c->slot);
        assert(p->remaining > 0);
        if (--p->remaining == 0)
                probe_finish(p, p->error);
}

static int reply_errno(const sd_bus_error *e) {
        int k = sd_bus_error_get_errno(e);

        return k > 0 ? -k : -EIO;
}

static int read_probe_properties(UnitProbe *u, sd_bus_message *m) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                char **dst = NULL;
                const char *name, *v;

                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        return r;
                if (streq(name, "LoadState"))
                        dst = &u->load_state;
                else if (streq(name, "ActiveState"))
                        dst = &u->active_state;
                else if (streq(name, "FragmentPath"))
                        dst = &u->fragment_path;
                if (dst) {
                        r = sd_bus_message_read(m, "v", "s", &v);
                        if (r >= 0)
                                r = set_str(dst, v);
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        return u->load_state && u->active_state && u->fragment_path ? 0 : -EBADMSG;
}

static int on_probe_unit(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        ProbeCall *c = userdata;
        UnitProbe *u = &c->p->units[c->i];
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int r;

        if (e)
                r = reply_errno(e);
        else
                r = read_probe_properties(u, reply);
        if (r < 0) {
                u->load_state = mfree(u->load_state);
                u->active_state = mfree(u->active_state);
                if (asprintf(&u->error, "%s", e && e->message ? e->message : STRERROR(r)) < 0) {
                        u->error = NULL;
                        c->p->error = -ENOMEM;
                }
        }
        probe_call_done(c);
        return 0;
}

static int on_probe_unit_path(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        ProbeCall *c = userdata;
        Probe *p = c->p;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int r;

        if (e)
                r = reply_errno(e);
        else {
                r = sd_bus_message_enter_container(reply, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_read_strv(reply, &p->unit_path);
                if (r >= 0 && !p->unit_path)
                        r = -EBADMSG;
        }
        if (r < 0)
                p->error = r;
        probe_call_done(c);
        return 0;
}

int systemd_probe(Systemd *s, const char *const *units, size_t n, ProbeDoneFn fn, void *userdata) {
        Probe *p, **q;
        int r;

        assert(s);
        assert(units || n == 0);
        assert(fn);

        q = reallocarray(s->probes, s->n_probes + 1, sizeof(Probe *));
        if (!q)
                return -ENOMEM;
        s->probes = q;
        p = calloc(1, sizeof(Probe));
        if (!p)
                return -ENOMEM;
        *p = (Probe){ .s = s, .n = n, .fn = fn, .userdata = userdata };
        p->units = calloc(MAX(n, (size_t) 1), sizeof(UnitProbe));
        p->calls = calloc(n + 1, sizeof(ProbeCall));
        if (!p->units || !p->calls) {
                probe_free(p);
                return -ENOMEM;
        }
        for (size_t i = 0; i <= n; i++)
                p->calls[i] = (ProbeCall){ .p = p, .i = i };

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL;

                p->units[i].name = strdup(units[i]);
                if (!p->units[i].name) {
                        probe_free(p);
                        return -ENOMEM;
                }
                /* Addressing a unit's object loads it, as LoadUnit would. */
                r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", units[i], &path);
                if (r >= 0)
                        r = sd_bus_call_method_async(s->bus, &p->calls[i].slot, DEST, path,
                                                     "org.freedesktop.DBus.Properties", "GetAll",
                                                     on_probe_unit, &p->calls[i], "s", UNIT_IFACE);
                if (r < 0) {
                        probe_free(p);
                        return r;
                }
        }
        r = sd_bus_call_method_async(s->bus, &p->calls[n].slot, DEST, MANAGER_PATH,
                                     "org.freedesktop.DBus.Properties", "Get", on_probe_unit_path,
                                     &p->calls[n], "ss", MANAGER_IFACE, "UnitPath");
        if (r < 0) {
                probe_free(p);
                return r;
        }
        p->remaining = n + 1;
        s->probes[s->n_probes++] = p;
        bus_loop_kick(s->loop);
        return 0;
}

/* ---- lifetime ------------------------------------------------------------ */

int systemd_new(sd_bus *bus, BusLoop *loop, const SystemdCallbacks *cb, void *userdata,
                Systemd **ret) {
        Systemd *s = calloc(1, sizeof(Systemd));

        if (!s)
                return -ENOMEM;
        s->bus = sd_bus_ref(bus);
        s->loop = loop;
        if (cb)
                s->cb = *cb;
        s->userdata = userdata;
        *ret = s;
        return 0;
}

Systemd *systemd_free(Systemd *s) {
        if (!s)
                return NULL;
        while (s->n_jobs > 0)
                job_finish(s->jobs[s->n_jobs - 1], NULL, -ECANCELED, "agent shutting down");
        free(s->jobs);
        while (s->n_probes > 0)
                probe_finish(s->probes[s->n_probes - 1], -ECANCELED);
        free(s->probes);
        for (size_t i = 0; i < s->n_watches; i++)
                watch_free(s->watches[i]);
        free(s->watches);
        for (size_t i = 0; i < N_REMOVED; i++) {
                free(s->removed[i].path);
                free(s->removed[i].result);
        }
        sd_bus_slot_unref(s->job_removed);
        sd_bus_unref(s->bus);
        free(s);
        return NULL;
}
