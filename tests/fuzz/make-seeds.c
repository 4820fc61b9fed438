/* SPDX-License-Identifier: MIT */
/* Writes the seed inputs of every fuzz target into DIR/<target>/: real
 * messages of every type, encoded by codec_encode() from the protobuf types
 * as the controller, the agents and batonctl build them for the example
 * fleet (agent-bound ones signed with the fuzz test key), and texts written
 * by the real formatters. The source of truth of the corpora: when the wire
 * format changes, tests/fuzz/campaign.sh --reseed runs this again. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent-state.h"
#include "budget.h"
#include "codec.h"
#include "commands.pb-c.h"
#include "events.pb-c.h"
#include "fnv.h"
#include "fuzz-fleet.h"
#include "fuzz-wire.h"
#include "rollout.h"
#include "rpc.pb-c.h"
#include "shardplan.h"
#include "spec.h"
#include "status.pb-c.h"
#include "util.h"

#define EPOCH 7

static const char *out_dir;
static unsigned n_written;
/* The fuzz-codec target's own key (tests/fuzz/fuzz-codec.c). */
static SignKey codec_key;

static void die(const char *what, int r) {
        fprintf(stderr, "make-seeds: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(1);
}

static void write_seed(const char *target, const char *name, const void *data, size_t len) {
        _cleanup_free_ char *dir = NULL, *path = NULL;
        FILE *f;
        int r;

        if (asprintf(&dir, "%s/%s", out_dir, target) < 0 || asprintf(&path, "%s/%s", dir, name) < 0)
                die("asprintf", -ENOMEM);
        r = mkdir_p(dir, 0755);
        if (r < 0)
                die(dir, r);
        f = fopen(path, "we");
        if (!f)
                die(path, -errno);
        if (len > 0 && fwrite(data, 1, len, f) != len)
                die(path, -EIO);
        if (fclose(f) != 0)
                die(path, -errno);
        n_written++;
}

static void text_seed(const char *target, const char *name, const char *text) {
        write_seed(target, name, text, strlen(text));
}

/* One message as its sender publishes it, into the corpus of `target` and,
 * for a variety of the envelope target, into envelope/ and codec/ too. */
static void message(const char *target, const char *name, const ProtobufCMessage *m,
                    const char *sender, bool sign, bool also_envelope) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r;

        r = codec_encode(m, sender, EPOCH, FUZZ_NOW_US, sign ? fuzz_test_key() : NULL, &buf, &len);
        if (r < 0)
                die(name, r);
        write_seed(target, name, buf, len);
        if (also_envelope) {
                _cleanup_free_ char *n = NULL;

                if (asprintf(&n, "%s-%s", target, name) < 0)
                        die("asprintf", -ENOMEM);
                write_seed("envelope", n, buf, len);
                free(buf);
                buf = NULL;
                r = codec_encode(m, sender, EPOCH, FUZZ_NOW_US, sign ? &codec_key : NULL, &buf,
                                 &len);
                if (r < 0)
                        die(name, r);
                write_seed("codec", n, buf, len);
        }
}

/* ---- commands ------------------------------------------------------------ */

static const ServiceSpec *spec(const char *service) {
        const ServiceSpec *const *specs = fuzz_fleet_load();

        for (size_t i = 0; i < FUZZ_FLEET_N_SPECS; i++)
                if (streq(specs[i]->name, service))
                        return specs[i];
        die(service, -ENOENT);
        return NULL;
}

/* fleet.c's unit_config_hash(). */
static char *unit_hash(const ServiceSpec *s, const char *shards, uint32_t count, uint64_t epoch) {
        uint64_t h = spec_systemd_hash(s->unit_text);
        char extra[64], *ret;

        snprintf(extra, sizeof(extra), "|%" PRIu32 "|%" PRIu64 "|", count, epoch);
        h = fnv1a64_str(h, extra);
        h = fnv1a64_str(h, strempty(shards));
        if (asprintf(&ret, "%016" PRIx64, h) < 0)
                die("asprintf", -ENOMEM);
        return ret;
}

typedef struct Units {
        Baton__V1__PlacedUnit units[16];
        Baton__V1__PlacedUnit *ptrs[16];
        Baton__V1__ShardAssignment shards[16];
        Baton__V1__EnvVar env[4];
        Baton__V1__EnvVar *env_ptrs[4];
        char *strings[64];
        size_t n, n_strings;
} Units;

static char *keep(Units *u, char *s) {
        if (!s)
                die("strdup", -ENOMEM);
        u->strings[u->n_strings++] = s;
        return s;
}

/* Instance `i` of `service` (slot "b" for a reshard's second copy). */
static void add_unit(Units *u, const char *service, uint32_t i, bool b, bool running) {
        const ServiceSpec *s = spec(service);
        Baton__V1__PlacedUnit *p = &u->units[u->n];
        char *unit = NULL, *shards = NULL;

        baton__v1__placed_unit__init(p);
        if (service_instance_unit(s, i, &unit) < 0)
                die("service_instance_unit", -ENOMEM);
        if (b) {
                char *at = strchr(unit, '.');
                char *u2 = NULL;

                *at = '\0';
                if (asprintf(&u2, "%sb.service", unit) < 0)
                        die("asprintf", -ENOMEM);
                free(unit);
                unit = u2;
        }
        p->name = keep(u, unit);
        p->unit_text = s->unit_text;
        p->template_name = s->is_template ? s->file_name : (char *) "";
        p->service = s->name;
        p->instance = i;
        p->running = running;
        p->defer_restart = true;
        if (s->kind == SERVICE_SHARDED) {
                if (service_default_shards(s->shards, s->count, i, &shards) < 0)
                        die("service_default_shards", -ENOMEM);
                baton__v1__shard_assignment__init(&u->shards[u->n]);
                u->shards[u->n].shards = keep(u, shards);
                u->shards[u->n].shard_count = s->shards;
                u->shards[u->n].shard_epoch = b ? 2 : 1;
                p->shards = &u->shards[u->n];
        }
        p->config_hash = keep(u, unit_hash(s, shards, s->kind == SERVICE_SHARDED ? s->shards : 0,
                                           s->kind == SERVICE_SHARDED ? 1 : 0));
        u->ptrs[u->n] = p;
        u->n++;
}

static void units_done(Units *u) {
        for (size_t i = 0; i < u->n_strings; i++)
                free(u->strings[i]);
        *u = (Units){ 0 };
}

static void placement(const char *name, Units *u, uint64_t generation, const char *const *removed,
                      size_t n_removed, bool envelope) {
        Baton__V1__Placement p = BATON__V1__PLACEMENT__INIT;

        p.host = (char *) FUZZ_HOST;
        p.epoch = EPOCH;
        p.generation = generation;
        p.n_units = u->n;
        p.units = u->ptrs;
        p.n_removed = n_removed;
        p.removed = (char **) removed;
        message("placement", name, &p.base, "controller", true, envelope);
}

static void commands(void) {
        static const char *const removed[] = { "gateway@9.service", "audio@5.service" };
        Baton__V1__Restart rs = BATON__V1__RESTART__INIT;
        Units u = { 0 };

        /* What the demo runs on host-a. */
        add_unit(&u, "core", 0, false, true);
        add_unit(&u, "gateway", 0, false, true);
        add_unit(&u, "gateway", 1, false, true);
        add_unit(&u, "audio", 0, false, true);
        add_unit(&u, "audio", 3, false, true);
        placement("host-a-fleet", &u, 12, NULL, 0, true);

        /* Extra environment, and a gateway waiting for the start gate. */
        u.env[0] = (Baton__V1__EnvVar) BATON__V1__ENV_VAR__INIT;
        u.env[0].name = (char *) "BOT_TOKEN_FILE";
        u.env[0].value = (char *) "/run/credentials/bot-token";
        u.env[1] = (Baton__V1__EnvVar) BATON__V1__ENV_VAR__INIT;
        u.env[1].name = (char *) "GREETING";
        u.env[1].value = (char *) "say \"hi\" 100% \\o/";
        u.env_ptrs[0] = &u.env[0];
        u.env_ptrs[1] = &u.env[1];
        u.units[0].n_env = 2;
        u.units[0].env = u.env_ptrs;
        add_unit(&u, "gateway", 2, false, false);
        placement("host-a-env-gate-waiting", &u, 13, removed, ELEMENTSOF(removed), false);
        units_done(&u);

        /* A reshard: an instance's old and new copies side by side. */
        add_unit(&u, "gateway", 3, false, true);
        add_unit(&u, "gateway", 3, true, true);
        u.units[1].shards->shard_count = 128;
        u.units[1].shards->shards = (char *) "64-95";
        placement("host-a-reshard-copies", &u, 20, NULL, 0, false);
        units_done(&u);

        /* ShardChange=reload: the sets in shards files, one of them new. */
        add_unit(&u, "gateway", 0, false, true);
        add_unit(&u, "gateway", 1, false, true);
        u.units[0].shards_reload = u.units[1].shards_reload = true;
        u.units[1].shards->shards = (char *) "40-47";
        placement("host-a-shards-reload", &u, 21, NULL, 0, false);
        units_done(&u);

        /* A host that runs only audio, with a changed (rolling) update. */
        add_unit(&u, "audio", 1, false, true);
        add_unit(&u, "audio", 4, false, true);
        u.units[1].defer_restart = false;
        placement("host-a-audio-only", &u, 3, NULL, 0, false);
        units_done(&u);

        /* Everything removed. */
        placement("host-a-empty", &u, 30, removed, ELEMENTSOF(removed), false);

        /* Refused units: duplicates, no template name, not allowed, disagreeing texts. */
        add_unit(&u, "audio", 0, false, true);
        add_unit(&u, "audio", 0, false, true);
        add_unit(&u, "audio", 1, false, true);
        u.units[2].template_name = (char *) "";
        add_unit(&u, "audio", 2, false, true);
        u.units[3].unit_text = (char *) "[Service]\nExecStart=/bin/other\n";
        add_unit(&u, "core", 0, false, true);
        u.units[4].name = (char *) "sshd.service";
        u.units[4].template_name = (char *) "";
        placement("host-a-refusals", &u, 41, NULL, 0, false);
        units_done(&u);

        /* Restarts, as rolling restarts and `batonctl restart` send them. */
        rs.id = (char *) "5f2c7d9e0a1b4c3d";
        rs.host = (char *) FUZZ_HOST;
        rs.epoch = EPOCH;
        rs.unit = (char *) "gateway@1.service";
        rs.not_after_us = FUZZ_NOW_US + 60 * USEC_PER_SEC;
        message("restart", "gateway-rolling", &rs.base, "controller", true, true);
        rs.id = (char *) "r-audio-3";
        rs.unit = (char *) "audio@3.service";
        rs.mode = (char *) "try-restart";
        message("restart", "audio-try-restart", &rs.base, "controller", true, false);
        rs.id = (char *) "core_1";
        rs.unit = (char *) "core.service";
        rs.mode = (char *) "restart";
        rs.not_after_us = 0;
        message("restart", "core-no-deadline", &rs.base, "controller", true, false);
        rs.id = (char *) "expired-1";
        rs.not_after_us = FUZZ_NOW_US - 1;
        message("restart", "expired", &rs.base, "controller", true, false);
        rs.id = (char *) "r-old";
        rs.unit = (char *) "gateway@3b.service";
        rs.mode = (char *) "reload";
        rs.not_after_us = FUZZ_NOW_US + 1;
        message("restart", "unknown-mode", &rs.base, "controller", true, false);
        rs.id = (char *) "r-1";
        rs.host = (char *) "host-b";
        rs.mode = (char *) "";
        message("restart", "other-host", &rs.base, "controller", true, false);
        /* Unsigned: the agent refuses it. */
        message("restart", "unsigned", &rs.base, "controller", false, false);
}

/* ---- status -------------------------------------------------------------- */

static Baton__V1__UnitState unit_state(const char *name, const char *service, uint32_t instance,
                                       const char *active, const char *sub, uint32_t restarts,
                                       const char *status) {
        Baton__V1__UnitState s = BATON__V1__UNIT_STATE__INIT;

        s.name = (char *) name;
        s.service = (char *) service;
        s.instance = instance;
        s.active_state = (char *) active;
        s.sub_state = (char *) sub;
        s.n_restarts = restarts;
        s.main_pid = streq(active, "active") ? 4242 + instance : 0;
        s.result = (char *) (streq(active, "failed") ? "exit-code" : "success");
        s.status_text = (char *) status;
        s.memory_bytes = streq(active, "active") ? 48u << 20 : UINT64_MAX;
        s.state_change_us = FUZZ_NOW_US - 30 * USEC_PER_SEC;
        s.config_hash = (char *) "8d1f0c2b7a6e5d43";
        return s;
}

static void status(void) {
        Baton__V1__UnitState us[5] = {
                unit_state("core.service", "core", 0, "active", "running", 0, "Serving"),
                unit_state("gateway@0.service", "gateway", 0, "active", "running", 1,
                           "ready=0-13 connecting=14-15"),
                unit_state("gateway@1.service", "gateway", 1, "activating", "start", 0,
                           "connecting=16-31"),
                unit_state("audio@0.service", "audio", 0, "failed", "failed", 5, ""),
                unit_state("audio@3.service", "audio", 3, "active", "running", 0, "ok"),
        };
        Baton__V1__UnitState *up[5] = { &us[0], &us[1], &us[2], &us[3], &us[4] };
        Baton__V1__Label labels[3] = { BATON__V1__LABEL__INIT, BATON__V1__LABEL__INIT,
                                       BATON__V1__LABEL__INIT };
        Baton__V1__Label *lp[3] = { &labels[0], &labels[1], &labels[2] };
        Baton__V1__Capacity cap = BATON__V1__CAPACITY__INIT;
        Baton__V1__Heartbeat hb = BATON__V1__HEARTBEAT__INIT;
        Baton__V1__UnitEvent ev = BATON__V1__UNIT_EVENT__INIT;
        Baton__V1__ShardInstanceReport si[3] = { BATON__V1__SHARD_INSTANCE_REPORT__INIT,
                                                 BATON__V1__SHARD_INSTANCE_REPORT__INIT,
                                                 BATON__V1__SHARD_INSTANCE_REPORT__INIT };
        Baton__V1__ShardInstanceReport *sip[3] = { &si[0], &si[1], &si[2] };
        Baton__V1__ShardReport rep = BATON__V1__SHARD_REPORT__INIT;
        Baton__V1__UnitOutcome uo[3] = { BATON__V1__UNIT_OUTCOME__INIT,
                                         BATON__V1__UNIT_OUTCOME__INIT,
                                         BATON__V1__UNIT_OUTCOME__INIT };
        Baton__V1__UnitOutcome *uop[3] = { &uo[0], &uo[1], &uo[2] };
        Baton__V1__CommandResult res = BATON__V1__COMMAND_RESULT__INIT;

        labels[0].key = (char *) "zone";
        labels[0].value = (char *) "eu";
        labels[1].key = (char *) "rack";
        labels[1].value = (char *) "r1";
        labels[2].key = (char *) "role";
        labels[2].value = (char *) "gateway";
        cap.cores = 2;
        cap.memory_total_bytes = 8ULL << 30;
        cap.memory_available_bytes = 5ULL << 30;
        cap.load1_x100 = 52;
        cap.load5_x100 = 58;
        cap.load15_x100 = 59;

        hb.host = (char *) FUZZ_HOST;
        hb.boot_id = (char *) "5b3f1c2a-0d4e-4f6a-8b9c-7d1e2f3a4b5c";
        hb.agent_version = (char *) "0.1.0";
        hb.applied_generation = 12;
        hb.applied_epoch = EPOCH;
        hb.max_epoch_seen = EPOCH;
        hb.capacity = &cap;
        hb.n_labels = 3;
        hb.labels = lp;
        hb.n_units = 5;
        hb.units = up;
        hb.interval_us = 5 * USEC_PER_SEC;
        hb.seq = 1234;
        hb.systemd_version = (char *) "252.22-1~deb12u1";
        hb.system_state = (char *) "running";
        hb.agent_started_us = FUZZ_NOW_US - 3600 * USEC_PER_SEC;
        message("heartbeat", "host-a-fleet", &hb.base, FUZZ_HOST, false, true);
        hb.host = (char *) "host-c";
        hb.n_labels = 1;
        hb.n_units = 0;
        hb.capacity = NULL;
        hb.system_state = (char *) "degraded";
        message("heartbeat", "host-c-bare", &hb.base, "host-c", false, false);
        hb.host = (char *) "host-b";
        hb.n_labels = 0;
        hb.n_units = 2;
        hb.units = &up[3];
        hb.capacity = &cap;
        cap.memory_total_bytes = 32ULL << 20;
        message("heartbeat", "host-b-small-no-labels", &hb.base, "host-b", false, false);

        ev.host = (char *) FUZZ_HOST;
        ev.unit = &us[3];
        ev.previous_active_state = (char *) "active";
        ev.at_us = FUZZ_NOW_US;
        message("unit-event", "audio-failed", &ev.base, FUZZ_HOST, false, true);
        ev.unit = &us[1];
        ev.previous_active_state = (char *) "activating";
        message("unit-event", "gateway-active", &ev.base, FUZZ_HOST, false, false);
        us[1].name = (char *) "gateway@3b.service";
        us[1].n_restarts = 4;
        ev.unit = &us[1];
        message("unit-event", "gateway-copy-restarts", &ev.base, FUZZ_HOST, false, false);

        si[0].unit = (char *) "gateway@0.service";
        si[0].service = (char *) "gateway";
        si[0].instance = 0;
        si[0].assigned = (char *) "0-15";
        si[0].shard_count = 96;
        si[0].shard_epoch = 1;
        si[0].ready = (char *) "0-13";
        si[0].connecting = (char *) "14-15";
        si[0].failed = (char *) "";
        si[0].active_state = (char *) "active";
        si[0].has_tokens = true;
        si[1] = si[0];
        si[1].unit = (char *) "gateway@1.service";
        si[1].instance = 1;
        si[1].assigned = (char *) "16-31";
        si[1].ready = (char *) "16-31";
        si[1].connecting = (char *) "";
        si[1].has_tokens = false;
        si[2] = si[0];
        si[2].unit = (char *) "gateway@3b.service";
        si[2].instance = 3;
        si[2].assigned = (char *) "40-47,90-95";
        si[2].shard_count = 128;
        si[2].shard_epoch = 2;
        si[2].ready = (char *) "40-45";
        si[2].connecting = (char *) "";
        si[2].failed = (char *) "46-47,90";
        si[2].active_state = (char *) "activating";
        rep.host = (char *) FUZZ_HOST;
        rep.n_instances = 2;
        rep.instances = sip;
        rep.at_us = FUZZ_NOW_US;
        message("shard-report", "host-a-two", &rep.base, FUZZ_HOST, false, true);
        rep.n_instances = 3;
        message("shard-report", "host-a-reshard", &rep.base, FUZZ_HOST, false, false);
        rep.n_instances = 0;
        message("shard-report", "host-a-none", &rep.base, FUZZ_HOST, false, false);

        uo[0].unit = (char *) "gateway@0.service";
        uo[0].action = (char *) "started";
        uo[0].ok = true;
        uo[0].result = (char *) "done";
        uo[1].unit = (char *) "sshd.service";
        uo[1].action = (char *) "refused";
        uo[1].result = (char *) "not allowed by manage_units";
        uo[2].unit = (char *) "audio@0.service";
        uo[2].action = (char *) "restarted";
        uo[2].result = (char *) "failed";
        res.host = (char *) FUZZ_HOST;
        res.epoch = EPOCH;
        res.command_case = BATON__V1__COMMAND_RESULT__COMMAND_GENERATION;
        res.generation = 12;
        res.ok = true;
        res.n_units = 1;
        res.units = uop;
        res.at_us = FUZZ_NOW_US;
        message("command-result", "placement-ok", &res.base, FUZZ_HOST, false, true);
        res.ok = false;
        res.error = (char *) "1 unit(s) refused, 1 action(s) failed";
        res.n_units = 3;
        message("command-result", "placement-refused", &res.base, FUZZ_HOST, false, false);
        res.command_case = BATON__V1__COMMAND_RESULT__COMMAND_RESTART_ID;
        res.restart_id = (char *) "5f2c7d9e0a1b4c3d";
        res.ok = true;
        res.error = (char *) "";
        res.n_units = 1;
        message("command-result", "restart-ok", &res.base, FUZZ_HOST, false, false);
        res.command_case = BATON__V1__COMMAND_RESULT__COMMAND_GENERATION;
        res.ok = false;
        res.error = (char *) "superseded by a newer placement";
        res.n_units = 0;
        message("command-result", "superseded", &res.base, FUZZ_HOST, false, false);

        /* The controller's own marker on its status queue. */
        {
                Baton__V1__ControllerMarker mk = BATON__V1__CONTROLLER_MARKER__INIT;

                mk.controller_id = (char *) "ops-1";
                mk.nonce = (char *) "9f0c3b1e6d2a4f58";
                mk.seq = 17;
                mk.sent_mono_us = 86400 * USEC_PER_SEC;
                message("envelope", "controller-marker", &mk.base, "controller", false, false);
        }
}

/* ---- rpc ----------------------------------------------------------------- */

static void request(const char *name, Baton__V1__Request *req, bool envelope) {
        message("request", name, &req->base, "batonctl:alice", false, envelope);
}

static void requests(void) {
        static const char *const plain[] = { "ping",   "hosts", "status", "shards",
                                             "alerts", "audit", "backup" };
        Baton__V1__Request req = BATON__V1__REQUEST__INIT;
        Baton__V1__PingRequest ping = BATON__V1__PING_REQUEST__INIT;
        Baton__V1__HostsRequest hosts = BATON__V1__HOSTS_REQUEST__INIT;
        Baton__V1__SpecFile files[FUZZ_FLEET_N_SPECS];
        Baton__V1__SpecFile *fp[FUZZ_FLEET_N_SPECS];
        Baton__V1__ApplyRequest apply = BATON__V1__APPLY_REQUEST__INIT;
        Baton__V1__ServiceRequest sr = BATON__V1__SERVICE_REQUEST__INIT;
        Baton__V1__HostRequest hr = BATON__V1__HOST_REQUEST__INIT;
        Baton__V1__RolloutRequest ro = BATON__V1__ROLLOUT_REQUEST__INIT;
        static const char *const actions[] = { "status", "pause", "resume", "abort" };
        char name[64];

        for (size_t i = 0; i < ELEMENTSOF(plain); i++) {
                req = (Baton__V1__Request) BATON__V1__REQUEST__INIT;
                req.verb = (char *) plain[i];
                request(plain[i], &req, i == 0);
        }
        req.verb = (char *) "ping";
        req.args_case = BATON__V1__REQUEST__ARGS_PING;
        req.ping = &ping;
        request("ping-args", &req, false);
        req.verb = (char *) "hosts";
        req.args_case = BATON__V1__REQUEST__ARGS_HOSTS;
        req.hosts = &hosts;
        request("hosts-args", &req, false);

        for (size_t i = 0; i < FUZZ_FLEET_N_SPECS; i++) {
                files[i] = (Baton__V1__SpecFile) BATON__V1__SPEC_FILE__INIT;
                files[i].name = (char *) fuzz_fleet_specs[i].name;
                files[i].text = (char *) fuzz_fleet_specs[i].text;
                fp[i] = &files[i];
        }
        apply.n_files = FUZZ_FLEET_N_SPECS;
        apply.files = fp;
        req.verb = (char *) "apply";
        req.args_case = BATON__V1__REQUEST__ARGS_APPLY;
        req.apply = &apply;
        request("apply-fleet", &req, false);
        req.verb = (char *) "plan";
        apply.dry_run = true;
        apply.n_files = 1;
        apply.files = &fp[2];
        request("plan-audio", &req, false);
        files[1].text = (char *) "[Service]\nExecStart=/bin/true\n[X-Baton]\nKind=sharded\n"
                                 "Instances=7\nShards=96\n";
        apply.files = &fp[1];
        apply.dry_run = false;
        req.verb = (char *) "apply";
        request("apply-gateway-resized", &req, false);

        req.args_case = BATON__V1__REQUEST__ARGS_SERVICE;
        req.service = &sr;
        sr.instance = -1;
        req.verb = (char *) "status";
        sr.service = (char *) "gateway";
        request("status-gateway", &req, false);
        req.verb = (char *) "shards";
        request("shards-gateway", &req, false);
        req.verb = (char *) "delete";
        sr.service = (char *) "audio";
        request("delete-audio", &req, false);
        req.verb = (char *) "restart";
        request("restart-audio", &req, false);
        sr.service = (char *) "gateway";
        sr.instance = 3;
        request("restart-gateway-3", &req, false);
        sr.instance = -1;
        req.verb = (char *) "scale";
        sr.service = (char *) "audio";
        sr.count = 9;
        request("scale-audio-9", &req, false);
        req.verb = (char *) "reshard";
        sr.service = (char *) "gateway";
        sr.count = 0;
        sr.instances = 7;
        request("reshard-gateway-7", &req, false);
        sr.instances = 0;
        sr.shards = 128;
        sr.count = 1;
        request("reshard-gateway-128-dry-run", &req, false);
        sr.instances = 8;
        sr.shards = 160;
        sr.count = 0;
        request("reshard-gateway-8x160", &req, false);
        req.verb = (char *) "audit";
        sr.service = (char *) "";
        sr.shards = 0;
        sr.instances = 0;
        sr.count = 50;
        request("audit-50", &req, false);

        req.args_case = BATON__V1__REQUEST__ARGS_HOST;
        req.host = &hr;
        hr.host = (char *) "host-b";
        req.verb = (char *) "drain";
        request("drain-host-b", &req, false);
        req.verb = (char *) "undrain";
        request("undrain-host-b", &req, false);

        req.args_case = BATON__V1__REQUEST__ARGS_ROLLOUT;
        req.rollout = &ro;
        req.verb = (char *) "rollout";
        ro.service = (char *) "gateway";
        for (size_t i = 0; i < ELEMENTSOF(actions); i++) {
                ro.action = (char *) actions[i];
                snprintf(name, sizeof(name), "rollout-%s", actions[i]);
                request(name, &req, false);
        }
}

static void responses(void) {
        Baton__V1__Response resp = BATON__V1__RESPONSE__INIT;
        Baton__V1__Pong pong = BATON__V1__PONG__INIT;
        Baton__V1__Counter counters[2] = { BATON__V1__COUNTER__INIT, BATON__V1__COUNTER__INIT };
        Baton__V1__Counter *cp[2] = { &counters[0], &counters[1] };
        Baton__V1__HostInfo hi[2] = { BATON__V1__HOST_INFO__INIT, BATON__V1__HOST_INFO__INIT };
        Baton__V1__HostInfo *hip[2] = { &hi[0], &hi[1] };
        Baton__V1__HostList hl = BATON__V1__HOST_LIST__INIT;
        Baton__V1__Alert alert = BATON__V1__ALERT__INIT;
        Baton__V1__Alert *ap[1] = { &alert };
        static char *labels[] = { (char *) "zone=eu", (char *) "role=gateway" };
        static const uint8_t sqlite[] = "SQLite format 3\0\x10\0\x01\x01\0\x40\x20\x20";

        counters[0].name = (char *) "heartbeats";
        counters[0].value = 123456;
        counters[1].name = (char *) "refused.malformed";
        counters[1].value = 2;
        pong.controller_id = (char *) "ops-1";
        pong.version = (char *) "0.1.0";
        pong.epoch = EPOCH;
        pong.started_at_us = FUZZ_NOW_US - 86400 * USEC_PER_SEC;
        pong.now_us = FUZZ_NOW_US;
        pong.hosts_up = 2;
        pong.hosts_total = 3;
        pong.n_counters = 2;
        pong.counters = cp;
        pong.user = (char *) "alice";
        resp.result_case = BATON__V1__RESPONSE__RESULT_PONG;
        resp.pong = &pong;
        message("response", "pong", &resp.base, "controller", false, true);

        for (size_t i = 0; i < 2; i++) {
                hi[i].host = (char *) (i ? "host-b" : "host-a");
                hi[i].state = (char *) (i ? "drained" : "up");
                hi[i].last_seen_us = FUZZ_NOW_US - i;
                hi[i].boot_id = (char *) "5b3f1c2a-0d4e-4f6a-8b9c-7d1e2f3a4b5c";
                hi[i].agent_version = (char *) "0.1.0";
                hi[i].cores = 2;
                hi[i].memory_total_bytes = 8ULL << 30;
                hi[i].n_labels = 2;
                hi[i].labels = labels;
                hi[i].units_total = 5;
                hi[i].units_active = 4;
                hi[i].systemd_version = (char *) "252";
                hi[i].system_state = (char *) "running";
        }
        hl.n_hosts = 2;
        hl.hosts = hip;
        resp.result_case = BATON__V1__RESPONSE__RESULT_HOSTS;
        resp.hosts = &hl;
        message("response", "hosts", &resp.base, "controller", false, false);

        resp.result_case = BATON__V1__RESPONSE__RESULT_JSON;
        resp.json = (char *) "{\"services\":[{\"service\":\"gateway\",\"kind\":\"sharded\","
                             "\"count\":6,\"healthy\":6,\"instances\":[{\"instance\":0,\"unit\":"
                             "\"gateway@0.service\",\"host\":\"host-a\",\"active_state\":"
                             "\"active\",\"sub_state\":\"running\",\"n_restarts\":0,"
                             "\"healthy\":true}],\"shards\":{\"epoch\":1,\"total\":96,\"ready\":"
                             "96,\"resharding\":false}}]}";
        message("response", "status-json", &resp.base, "controller", false, false);
        resp.json = (char *) "{\"service\":\"gateway\",\"dry_run\":true,\"from\":{\"instances\":6,"
                             "\"shards\":96,\"epoch\":1},\"to\":{\"instances\":7,\"shards\":96,"
                             "\"epoch\":1},\"identifies\":84,\"estimated_duration_us\":"
                             "60000000,\"shards_moving\":12,\"budget\":{\"allowed\":true}}";
        message("response", "reshard-json", &resp.base, "controller", false, false);

        resp.status = BATON__V1__STATUS__STATUS_REFUSED;
        resp.error = (char *) "gateway@.service: line 12: Instances= of a running sharded "
                              "service changes only by `batonctl reshard`\nother.service: "
                              "line 1: bad";
        resp.result_case = BATON__V1__RESPONSE__RESULT__NOT_SET;
        message("response", "refused", &resp.base, "controller", false, false);

        resp.status = BATON__V1__STATUS__STATUS_OK;
        resp.error = (char *) "";
        resp.result_case = BATON__V1__RESPONSE__RESULT_BACKUP;
        resp.backup = (ProtobufCBinaryData){ sizeof(sqlite) - 1, (uint8_t *) sqlite };
        message("response", "backup", &resp.base, "controller", false, false);

        alert.id = (char *) "host-down/host-c";
        alert.kind = (char *) "host-down";
        alert.severity = BATON__V1__SEVERITY__SEVERITY_CRITICAL;
        alert.host = (char *) "host-c";
        alert.summary = (char *) "host-c sent no heartbeat for 30s";
        alert.raised_at_us = FUZZ_NOW_US;
        resp.result_case = BATON__V1__RESPONSE__RESULT_JSON;
        resp.json = (char *) "{\"alerts\":[]}";
        resp.n_alerts = 1;
        resp.alerts = ap;
        message("response", "alerts", &resp.base, "controller", false, false);
}

static void events(void) {
        Baton__V1__Alert a = BATON__V1__ALERT__INIT;
        Baton__V1__Event e = BATON__V1__EVENT__INIT;

        a.id = (char *) "host-down/host-c";
        a.kind = (char *) "host-down";
        a.severity = BATON__V1__SEVERITY__SEVERITY_CRITICAL;
        a.host = (char *) "host-c";
        a.summary = (char *) "host-c sent no heartbeat for 30s";
        a.raised_at_us = FUZZ_NOW_US;
        message("watch", "alert-host-down", &a.base, "controller", false, true);
        a.resolved = true;
        a.resolved_at_us = FUZZ_NOW_US + 90 * USEC_PER_SEC;
        a.summary = (char *) "host-c is back";
        message("watch", "alert-resolved", &a.base, "controller", false, false);
        a = (Baton__V1__Alert) BATON__V1__ALERT__INIT;
        a.id = (char *) "budget-low/gateway";
        a.kind = (char *) "budget-low";
        a.severity = BATON__V1__SEVERITY__SEVERITY_WARNING;
        a.service = (char *) "gateway";
        a.summary = (char *) "gateway: 180 of the daily 1000 identifies remain\t(reserve 96)";
        message("watch", "alert-budget-low", &a.base, "controller", false, false);

        e.kind = (char *) "shard-map";
        e.service = (char *) "gateway";
        e.summary = (char *) "gateway: 96 of 96 shards ready";
        e.at_us = FUZZ_NOW_US;
        e.detail_json = (char *) "{\"service\":\"gateway\",\"epoch\":1,\"shard_count\":96,"
                                 "\"ready\":96,\"unowned\":\"\",\"owned_twice\":\"40-47\"}";
        message("watch", "event-shard-map", &e.base, "controller", false, true);
}

/* ---- texts --------------------------------------------------------------- */

static void texts(void) {
        AgentState st = { 0 };
        BudgetLedger ledger;
        ShardLayout layout;
        Reshard *rs = NULL;
        char *text = NULL;

        for (size_t i = 0; i < FUZZ_FLEET_N_SPECS; i++)
                text_seed("spec", fuzz_fleet_specs[i].name, fuzz_fleet_specs[i].text);

        st.max_epoch_seen = EPOCH;
        st.applied_epoch = EPOCH;
        st.applied_generation = 12;
        if (agent_state_set_unit(&st, "gateway@0.service", "gateway@.service", "9f86d081884c7d65",
                                 true) < 0 ||
            agent_state_set_unit(&st, "core.service", "core.service", "0123456789abcdef", true) <
                    0 ||
            agent_state_restart_record(&st, "5f2c7d9e0a1b4c3d", FUZZ_NOW_US, FUZZ_NOW_US) < 0 ||
            agent_state_format(&st, &text) < 0)
                die("agent state", -EINVAL);
        text_seed("agent-state", "two-units-one-restart", text);
        free(text);
        agent_state_done(&st);

        budget_ledger_init(&ledger);
        if (budget_charge(&ledger, FUZZ_NOW_US, 16) < 0 ||
            budget_charge(&ledger, FUZZ_NOW_US + 5 * USEC_PER_SEC, 16) < 0 ||
            budget_charge(&ledger, FUZZ_NOW_US + 3600 * USEC_PER_SEC, 96) < 0 ||
            budget_ledger_format(&ledger, &text) < 0)
                die("budget", -EINVAL);
        text_seed("budget", "three-charges", text);
        free(text);
        budget_ledger_done(&ledger);

        if (shard_layout_default(96, 6, &layout) < 0 || shard_layout_format(&layout, &text) < 0)
                die("layout", -EINVAL);
        text_seed("reshard", "layout-6x96", text);
        free(text);
        if (reshard_new("gateway", 3, &layout, 7, 96, 1, 300 * USEC_PER_SEC, &rs) < 0 ||
            reshard_format(rs, &text) < 0)
                die("reshard", -EINVAL);
        text_seed("reshard", "reshard-6-to-7", text);
        free(text);
        reshard_free(rs);
        if (reshard_new("gateway", 4, &layout, 6, 128, 2, 300 * USEC_PER_SEC, &rs) < 0 ||
            reshard_format(rs, &text) < 0)
                die("reshard", -EINVAL);
        text_seed("reshard", "reshard-96-to-128", text);
        free(text);
        reshard_free(rs);
        shard_layout_done(&layout);

        /* A rolling restart of audio: one done, one restarting, the rest pending. */
        {
                InstanceHealth health[6];
                RolloutAction acts[8];
                Rollout *ro = NULL;

                for (uint32_t i = 0; i < 6; i++)
                        health[i] = (InstanceHealth){ i, true, true };
                if (rollout_new("audio", 42, 6, 1, 2 * USEC_PER_SEC, 900 * USEC_PER_SEC, &ro) < 0 ||
                    rollout_format(ro, &text) < 0)
                        die("rollout", -EINVAL);
                text_seed("rollout", "new-6", text);
                free(text);
                (void) rollout_step(ro, health, 6, FUZZ_NOW_US, UINT32_MAX, acts, 8);
                (void) rollout_step(ro, health, 6, FUZZ_NOW_US + 3 * USEC_PER_SEC, UINT32_MAX, acts,
                                    8);
                (void) rollout_step(ro, health, 6, FUZZ_NOW_US + 6 * USEC_PER_SEC, UINT32_MAX, acts,
                                    8);
                if (rollout_format(ro, &text) < 0)
                        die("rollout", -EINVAL);
                text_seed("rollout", "under-way", text);
                free(text);
                if (rollout_pause(ro, "paused by \"alice\"\n") < 0 || rollout_format(ro, &text) < 0)
                        die("rollout", -EINVAL);
                text_seed("rollout", "paused", text);
                free(text);
                rollout_free(ro);
        }

        text_seed("shard-status", "active-tokens", "0-15\nactive\nready=0-13 connecting=14-15");
        text_seed("shard-status", "active-no-tokens", "16-31\nactive\nServing");
        text_seed("shard-status", "failed-foreign",
                  "40-47,90-95\nactivating\nfailed=46-47,90,120 "
                  "connecting=40-45 identify budget spent");
        text_seed("shard-status", "inactive", "0-95\ninactive\n");
        text_seed("shard-status", "malformed", "0-15\nactive\nready=15-0");

        text_seed("config", "agent",
                  "[broker]\nurl = amqp://agent-host-a:secret@broker:5672/v\n"
                  "heartbeat = 10s\nverify = yes\nprefetch = 16\n[agent]\n"
                  "host = host-a\nmemory = 8G\nglobs = " FUZZ_MANAGE_UNITS "\n");
        text_seed("duration", "1h30min", "1h 30min");
        text_seed("duration", "ms", "500ms");
        text_seed("duration", "size", "1.5G");
        text_seed("rangelist", "two-lists", "0-13,90-91|5-95");
        text_seed("rangelist", "status", "ready=0-13 connecting=14-15 failed=16");
        text_seed("unit-name", "instance", "gateway@3.service\n" FUZZ_MANAGE_UNITS);
        text_seed("unit-name", "template", "gateway@.service\n3b");
        text_seed("unit-name", "escaped", "a\\x2db.service\n*.service");
}

int main(int argc, char **argv) {
        static const uint8_t codec_seed[SIGN_SEED_BYTES] = { 'f', 'u', 'z', 'z' };

        if (argc != 2 || argv[1][0] == '-') {
                fprintf(stderr,
                        "usage: %s DIR\n"
                        "Writes the seed inputs of every fuzz target into DIR/<target>/.\n",
                        argv[0]);
                return 2;
        }
        out_dir = argv[1];
        if (sign_key_from_seed(codec_seed, &codec_key) < 0)
                die("codec key", -EIO);

        commands();
        status();
        requests();
        responses();
        events();
        texts();
        printf("make-seeds: %u seeds in %s\n", n_written, out_dir);
        return 0;
}
