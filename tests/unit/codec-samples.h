/* SPDX-License-Identifier: MIT */
/* One sample of every message type in proto/baton/v1 with every field set to
 * a distinctive value (each oneof member in its own sample), shared by
 * test-codec (round trips) and wire-dump (the protoc cross-check). `expect`
 * holds lines protoc --decode must print, escaped the way protoc escapes. */
#pragma once

#include <stdint.h>
#include <string.h>

#include "commands.pb-c.h"
#include "envelope.pb-c.h"
#include "events.pb-c.h"
#include "macro.h"
#include "rpc.pb-c.h"
#include "status.pb-c.h"

#define SAMPLE_EXPECT_MAX 12

typedef struct CodecSample {
        const char *name; /* unique, usable as a file name */
        const ProtobufCMessage *msg;
        const char *expect[SAMPLE_EXPECT_MAX + 1]; /* NULL-terminated */
} CodecSample;

#define SAMPLE_STR(s) ((char *) (s))

/* Builds the samples once (static storage) and returns them. */
static const CodecSample *codec_samples(size_t *ret_n) {
        /* commands.proto */
        static Baton__V1__EnvVar env0, env1, *envs[2];
        static Baton__V1__ShardAssignment shards;
        static Baton__V1__PlacedUnit pu0, pu1, *pus[2];
        static char *removed[2];
        static Baton__V1__Placement placement;
        static Baton__V1__Restart restart;
        /* envelope.proto */
        static uint8_t env_body[] = { 0x0a, 0x03, 'a', 'b', 'c' };
        static uint8_t env_sig[64];
        static Baton__V1__Envelope envelope;
        /* events.proto */
        static Baton__V1__Alert alert;
        static Baton__V1__Event event;
        /* status.proto */
        static Baton__V1__Label label0, label1, *labels[2];
        static Baton__V1__Capacity capacity;
        static Baton__V1__UnitState us0, us1, *uss[2];
        static Baton__V1__Heartbeat heartbeat;
        static Baton__V1__UnitEvent unit_event;
        static Baton__V1__ShardInstanceReport sir0, sir1, *sirs[2];
        static Baton__V1__ShardReport shard_report;
        static Baton__V1__UnitOutcome uo0, uo1, *uos[2];
        static Baton__V1__CommandResult cr_generation, cr_restart;
        static Baton__V1__ControllerMarker marker;
        /* rpc.proto */
        static Baton__V1__PingRequest ping;
        static Baton__V1__HostsRequest hosts_req;
        static Baton__V1__SpecFile spec0, spec1, *specs[2];
        static Baton__V1__ApplyRequest apply;
        static Baton__V1__ServiceRequest service_req;
        static Baton__V1__HostRequest host_req;
        static char *more_hosts[2];
        static Baton__V1__RolloutRequest rollout_req;
        static Baton__V1__Request rq_ping, rq_hosts, rq_apply, rq_service, rq_host, rq_rollout;
        static Baton__V1__Counter counter0, counter1, *counters[2];
        static Baton__V1__Pong pong;
        static char *host_labels[2];
        static Baton__V1__HostInfo hi0, hi1, *his[2];
        static Baton__V1__HostList host_list;
        static Baton__V1__Alert *alerts[1];
        static Baton__V1__Response rs_pong, rs_hosts, rs_json, rs_backup, rs_part;
        static Baton__V1__ResponsePart part;

        static CodecSample samples[64];
        static size_t n_samples;

        if (n_samples > 0)
                goto done;

        /* ---- commands.proto ---- */
        baton__v1__env_var__init(&env0);
        env0.name = SAMPLE_STR("GATEWAY_REGION");
        env0.value = SAMPLE_STR("eu-west");
        baton__v1__env_var__init(&env1);
        env1.name = SAMPLE_STR("GATEWAY_LOG");
        env1.value = SAMPLE_STR("debug");
        envs[0] = &env0;
        envs[1] = &env1;

        baton__v1__shard_assignment__init(&shards);
        shards.shards = SAMPLE_STR("0-13,90-91");
        shards.shard_count = 96;
        shards.shard_epoch = 17;

        baton__v1__placed_unit__init(&pu0);
        pu0.name = SAMPLE_STR("gateway@3.service");
        pu0.unit_text = SAMPLE_STR("[Service]\nExecStart=/usr/bin/gateway\n");
        pu0.template_name = SAMPLE_STR("gateway@.service");
        pu0.service = SAMPLE_STR("gateway");
        pu0.instance = 3;
        pu0.n_env = 2;
        pu0.env = envs;
        pu0.shards = &shards;
        pu0.config_hash = SAMPLE_STR("c0ffee12");
        pu0.running = 1;
        pu0.defer_restart = 1;
        pu0.shards_reload = 1;
        baton__v1__placed_unit__init(&pu1);
        pu1.name = SAMPLE_STR("core.service");
        pu1.unit_text = SAMPLE_STR("[Service]\nExecStart=/usr/bin/core\n");
        pu1.service = SAMPLE_STR("core");
        pus[0] = &pu0;
        pus[1] = &pu1;
        removed[0] = SAMPLE_STR("audio@7.service");
        removed[1] = SAMPLE_STR("old.service");

        baton__v1__placement__init(&placement);
        placement.host = SAMPLE_STR("host-a");
        placement.epoch = 42;
        placement.generation = (UINT64_C(1) << 40) + 7;
        placement.n_units = 2;
        placement.units = pus;
        placement.n_removed = 2;
        placement.removed = removed;

        baton__v1__restart__init(&restart);
        restart.id = SAMPLE_STR("r-6f1c2a");
        restart.host = SAMPLE_STR("host-b");
        restart.epoch = 43;
        restart.unit = SAMPLE_STR("audio@2.service");
        restart.mode = SAMPLE_STR("try-restart");
        restart.not_after_us = UINT64_C(1700000000123456);

        /* ---- envelope.proto ---- */
        memset(env_sig, 'Z', sizeof(env_sig));
        baton__v1__envelope__init(&envelope);
        envelope.version = 1;
        envelope.sender = SAMPLE_STR("controller");
        envelope.sent_at_us = UINT64_C(1700000000654321);
        envelope.epoch = 44;
        envelope.type = SAMPLE_STR("baton.v1.Placement");
        envelope.body.data = env_body;
        envelope.body.len = sizeof(env_body);
        envelope.signature.data = env_sig;
        envelope.signature.len = sizeof(env_sig);
        envelope.key_id = SAMPLE_STR("0123456789abcdef");

        /* ---- events.proto ---- */
        baton__v1__alert__init(&alert);
        alert.id = SAMPLE_STR("host-down/host-c");
        alert.kind = SAMPLE_STR("host-down");
        alert.severity = BATON__V1__SEVERITY__SEVERITY_CRITICAL;
        alert.service = SAMPLE_STR("gateway");
        alert.host = SAMPLE_STR("host-c");
        alert.summary = SAMPLE_STR("caf\xc3\xa9 \xe2\x9c\x93 \"down\"");
        alert.resolved = 1;
        alert.raised_at_us = UINT64_MAX;
        alert.resolved_at_us = UINT64_C(1700000000000001);

        baton__v1__event__init(&event);
        event.kind = SAMPLE_STR("shard-map");
        event.service = SAMPLE_STR("sentinel");
        event.host = SAMPLE_STR("host-d");
        event.summary = SAMPLE_STR("shard 17 moved");
        event.at_us = UINT64_C(1700000000000002);
        event.detail_json = SAMPLE_STR("{\"shard\":17}");

        /* ---- status.proto ---- */
        baton__v1__label__init(&label0);
        label0.key = SAMPLE_STR("role");
        label0.value = SAMPLE_STR("gateway");
        baton__v1__label__init(&label1);
        label1.key = SAMPLE_STR("zone");
        label1.value = SAMPLE_STR("eu");
        labels[0] = &label0;
        labels[1] = &label1;

        baton__v1__capacity__init(&capacity);
        capacity.cores = 16;
        capacity.memory_total_bytes = UINT64_C(68719476736);
        capacity.memory_available_bytes = UINT64_C(34359738368);
        capacity.load1_x100 = 150;
        capacity.load5_x100 = 125;
        capacity.load15_x100 = 99;

        baton__v1__unit_state__init(&us0);
        us0.name = SAMPLE_STR("sentinel@1.service");
        us0.active_state = SAMPLE_STR("active");
        us0.sub_state = SAMPLE_STR("running");
        us0.n_restarts = 5;
        us0.main_pid = 4242;
        us0.result = SAMPLE_STR("success");
        us0.status_text = SAMPLE_STR("ready=0-12 connecting=13");
        us0.memory_bytes = UINT64_MAX;
        us0.state_change_us = UINT64_C(1700000000000003);
        us0.service = SAMPLE_STR("sentinel");
        us0.instance = 1;
        us0.config_hash = SAMPLE_STR("feedbeef");
        baton__v1__unit_state__init(&us1);
        us1.name = SAMPLE_STR("audio@0.service");
        us1.active_state = SAMPLE_STR("failed");
        uss[0] = &us0;
        uss[1] = &us1;

        baton__v1__heartbeat__init(&heartbeat);
        heartbeat.host = SAMPLE_STR("host-e");
        heartbeat.boot_id = SAMPLE_STR("0b5e6f0a2c6d4e8f9a1b2c3d4e5f6a7b");
        heartbeat.agent_version = SAMPLE_STR("0.1.0");
        heartbeat.applied_generation = 12;
        heartbeat.applied_epoch = 41;
        heartbeat.max_epoch_seen = 45;
        heartbeat.capacity = &capacity;
        heartbeat.n_labels = 2;
        heartbeat.labels = labels;
        heartbeat.n_units = 2;
        heartbeat.units = uss;
        heartbeat.interval_us = 5000000;
        heartbeat.seq = 987654321;
        heartbeat.systemd_version = SAMPLE_STR("252");
        heartbeat.system_state = SAMPLE_STR("degraded");
        heartbeat.agent_started_us = UINT64_C(1700000000000004);
        heartbeat.refused_total = 3;
        heartbeat.status_malformed = 4;

        baton__v1__unit_event__init(&unit_event);
        unit_event.host = SAMPLE_STR("host-f");
        unit_event.unit = &us0;
        unit_event.previous_active_state = SAMPLE_STR("activating");
        unit_event.at_us = UINT64_C(1700000000000005);

        baton__v1__shard_instance_report__init(&sir0);
        sir0.unit = SAMPLE_STR("sentinel@2.service");
        sir0.service = SAMPLE_STR("sentinel");
        sir0.instance = 2;
        sir0.assigned = SAMPLE_STR("24-47");
        sir0.shard_count = 96;
        sir0.shard_epoch = 18;
        sir0.ready = SAMPLE_STR("24-40");
        sir0.connecting = SAMPLE_STR("41-46");
        sir0.failed = SAMPLE_STR("47");
        sir0.active_state = SAMPLE_STR("reloading");
        sir0.has_tokens = 1;
        baton__v1__shard_instance_report__init(&sir1);
        sir1.unit = SAMPLE_STR("sentinel@3.service");
        sirs[0] = &sir0;
        sirs[1] = &sir1;

        baton__v1__shard_report__init(&shard_report);
        shard_report.host = SAMPLE_STR("host-g");
        shard_report.n_instances = 2;
        shard_report.instances = sirs;
        shard_report.at_us = UINT64_C(1700000000000006);

        baton__v1__controller_marker__init(&marker);
        marker.controller_id = SAMPLE_STR("ctl-1");
        marker.nonce = SAMPLE_STR("0123456789abcdef0123456789abcdef");
        marker.seq = 42;
        marker.sent_mono_us = UINT64_C(123456789);

        baton__v1__unit_outcome__init(&uo0);
        uo0.unit = SAMPLE_STR("gateway@4.service");
        uo0.action = SAMPLE_STR("restarted");
        uo0.ok = 1;
        uo0.result = SAMPLE_STR("done");
        baton__v1__unit_outcome__init(&uo1);
        uo1.unit = SAMPLE_STR("gateway@5.service");
        uo1.action = SAMPLE_STR("failed");
        uo1.result = SAMPLE_STR("timeout");
        uos[0] = &uo0;
        uos[1] = &uo1;

        baton__v1__command_result__init(&cr_generation);
        cr_generation.host = SAMPLE_STR("host-h");
        cr_generation.epoch = 46;
        cr_generation.command_case = BATON__V1__COMMAND_RESULT__COMMAND_GENERATION;
        cr_generation.generation = 77;
        cr_generation.ok = 1;
        cr_generation.error = SAMPLE_STR("partially applied");
        cr_generation.n_units = 2;
        cr_generation.units = uos;
        cr_generation.at_us = UINT64_C(1700000000000007);
        baton__v1__command_result__init(&cr_restart);
        cr_restart.host = SAMPLE_STR("host-i");
        cr_restart.command_case = BATON__V1__COMMAND_RESULT__COMMAND_RESTART_ID;
        cr_restart.restart_id = SAMPLE_STR("r-77aa");

        /* ---- rpc.proto ---- */
        baton__v1__ping_request__init(&ping);
        baton__v1__hosts_request__init(&hosts_req);
        hosts_req.hosts_max = 200;

        baton__v1__spec_file__init(&spec0);
        spec0.name = SAMPLE_STR("gateway@.service");
        spec0.text = SAMPLE_STR("[X-Baton]\nKind=sharded\n");
        baton__v1__spec_file__init(&spec1);
        spec1.name = SAMPLE_STR("audio@.service");
        spec1.text = SAMPLE_STR("[X-Baton]\nReplicas=4\n");
        specs[0] = &spec0;
        specs[1] = &spec1;

        baton__v1__apply_request__init(&apply);
        apply.n_files = 2;
        apply.files = specs;
        apply.dry_run = 1;
        apply.placements_max = 200;

        baton__v1__service_request__init(&service_req);
        service_req.service = SAMPLE_STR("sentinel");
        service_req.instance = -1;
        service_req.count = 6;
        service_req.instances = 8;
        service_req.shards = 128;
        service_req.instances_max = 200;
        service_req.in_place = true;

        baton__v1__host_request__init(&host_req);
        host_req.host = SAMPLE_STR("host-j");
        more_hosts[0] = SAMPLE_STR("host-j2");
        more_hosts[1] = SAMPLE_STR("host-j3");
        host_req.n_hosts = 2;
        host_req.hosts = more_hosts;
        host_req.all = 1;

        baton__v1__rollout_request__init(&rollout_req);
        rollout_req.action = SAMPLE_STR("pause");
        rollout_req.service = SAMPLE_STR("audio");

        baton__v1__request__init(&rq_ping);
        rq_ping.verb = SAMPLE_STR("ping");
        rq_ping.args_case = BATON__V1__REQUEST__ARGS_PING;
        rq_ping.ping = &ping;
        baton__v1__request__init(&rq_hosts);
        rq_hosts.verb = SAMPLE_STR("hosts");
        rq_hosts.args_case = BATON__V1__REQUEST__ARGS_HOSTS;
        rq_hosts.hosts = &hosts_req;
        baton__v1__request__init(&rq_apply);
        rq_apply.verb = SAMPLE_STR("apply");
        rq_apply.args_case = BATON__V1__REQUEST__ARGS_APPLY;
        rq_apply.apply = &apply;
        baton__v1__request__init(&rq_service);
        rq_service.verb = SAMPLE_STR("reshard");
        rq_service.args_case = BATON__V1__REQUEST__ARGS_SERVICE;
        rq_service.service = &service_req;
        baton__v1__request__init(&rq_host);
        rq_host.verb = SAMPLE_STR("drain");
        rq_host.args_case = BATON__V1__REQUEST__ARGS_HOST;
        rq_host.host = &host_req;
        baton__v1__request__init(&rq_rollout);
        rq_rollout.verb = SAMPLE_STR("rollout");
        rq_rollout.args_case = BATON__V1__REQUEST__ARGS_ROLLOUT;
        rq_rollout.rollout = &rollout_req;

        baton__v1__counter__init(&counter0);
        counter0.name = SAMPLE_STR("messages_refused");
        counter0.value = 12;
        baton__v1__counter__init(&counter1);
        counter1.name = SAMPLE_STR("alerts_raised");
        counters[0] = &counter0;
        counters[1] = &counter1;

        baton__v1__pong__init(&pong);
        pong.controller_id = SAMPLE_STR("ctl-1");
        pong.version = SAMPLE_STR("0.1.0");
        pong.epoch = 47;
        pong.started_at_us = UINT64_C(1700000000000008);
        pong.now_us = UINT64_C(1700000000000009);
        pong.hosts_up = 9;
        pong.hosts_total = 10;
        pong.n_counters = 2;
        pong.counters = counters;
        pong.user = SAMPLE_STR("ops-alice");

        host_labels[0] = SAMPLE_STR("role=audio");
        host_labels[1] = SAMPLE_STR("rack=r7");
        baton__v1__host_info__init(&hi0);
        hi0.host = SAMPLE_STR("host-k");
        hi0.state = SAMPLE_STR("drained");
        hi0.last_seen_us = UINT64_C(1700000000000010);
        hi0.state_since_us = UINT64_C(1700000000000011);
        hi0.boot_id = SAMPLE_STR("boot-k");
        hi0.agent_version = SAMPLE_STR("0.1.1");
        hi0.cores = 32;
        hi0.memory_total_bytes = UINT64_C(137438953472);
        hi0.memory_available_bytes = UINT64_C(1073741824);
        hi0.load1_x100 = 300;
        hi0.n_labels = 2;
        hi0.labels = host_labels;
        hi0.units_total = 14;
        hi0.units_active = 13;
        hi0.applied_generation = 99;
        hi0.max_epoch_seen = 48;
        hi0.systemd_version = SAMPLE_STR("253");
        hi0.system_state = SAMPLE_STR("running");
        hi0.held_instances = 3;
        baton__v1__host_info__init(&hi1);
        hi1.host = SAMPLE_STR("host-l");
        hi1.state = SAMPLE_STR("down");
        his[0] = &hi0;
        his[1] = &hi1;

        baton__v1__host_list__init(&host_list);
        host_list.n_hosts = 2;
        host_list.hosts = his;
        host_list.summary = true;
        host_list.hosts_total = 10000;
        host_list.n_states = 2;
        host_list.states = counters;
        host_list.held_instances = 3;

        alerts[0] = &alert;
        baton__v1__response__init(&rs_pong);
        rs_pong.status = BATON__V1__STATUS__STATUS_REFUSED;
        rs_pong.error = SAMPLE_STR("over budget");
        rs_pong.result_case = BATON__V1__RESPONSE__RESULT_PONG;
        rs_pong.pong = &pong;
        rs_pong.n_alerts = 1;
        rs_pong.alerts = alerts;
        baton__v1__response__init(&rs_hosts);
        rs_hosts.status = BATON__V1__STATUS__STATUS_FAILED;
        rs_hosts.result_case = BATON__V1__RESPONSE__RESULT_HOSTS;
        rs_hosts.hosts = &host_list;
        baton__v1__response__init(&rs_json);
        rs_json.status = BATON__V1__STATUS__STATUS_USAGE;
        rs_json.result_case = BATON__V1__RESPONSE__RESULT_JSON;
        rs_json.json = SAMPLE_STR("{\"rollouts\":[]}");
        baton__v1__response__init(&rs_backup);
        rs_backup.result_case = BATON__V1__RESPONSE__RESULT_BACKUP;
        rs_backup.backup.data = (uint8_t *) "SQLite\0\x01";
        rs_backup.backup.len = 8;
        baton__v1__response_part__init(&part);
        part.index = 2;
        part.count = 5;
        part.data.data = (uint8_t *) "\x08\x01";
        part.data.len = 2;
        baton__v1__response__init(&rs_part);
        rs_part.part = &part;

        /* The table. `expect` lines are protoc's text format: strings in
         * C escapes with non-ASCII bytes in octal, enums by name. */
        const CodecSample table[] = {
                { "env-var", &env0.base, { "name: \"GATEWAY_REGION\"", "value: \"eu-west\"" } },
                { "shard-assignment",
                  &shards.base,
                  { "shards: \"0-13,90-91\"", "shard_count: 96", "shard_epoch: 17" } },
                { "placed-unit",
                  &pu0.base,
                  { "name: \"gateway@3.service\"",
                    "unit_text: \"[Service]\\nExecStart=/usr/bin/gateway\\n\"",
                    "template_name: \"gateway@.service\"", "service: \"gateway\"", "instance: 3",
                    "name: \"GATEWAY_LOG\"", "value: \"debug\"", "shards: \"0-13,90-91\"",
                    "config_hash: \"c0ffee12\"", "running: true", "defer_restart: true",
                    "shards_reload: true" } },
                { "placement",
                  &placement.base,
                  { "host: \"host-a\"", "epoch: 42", "generation: 1099511627783",
                    "name: \"gateway@3.service\"", "name: \"core.service\"",
                    "removed: \"audio@7.service\"", "removed: \"old.service\"",
                    "shard_epoch: 17" } },
                { "restart",
                  &restart.base,
                  { "id: \"r-6f1c2a\"", "host: \"host-b\"", "epoch: 43",
                    "unit: \"audio@2.service\"", "mode: \"try-restart\"",
                    "not_after_us: 1700000000123456" } },
                { "envelope",
                  &envelope.base,
                  { "version: 1", "sender: \"controller\"", "sent_at_us: 1700000000654321",
                    "epoch: 44", "type: \"baton.v1.Placement\"", "body: \"\\n\\003abc\"",
                    "signature: "
                    "\"ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ\"",
                    "key_id: \"0123456789abcdef\"" } },
                { "alert",
                  &alert.base,
                  { "id: \"host-down/host-c\"", "kind: \"host-down\"",
                    "severity: SEVERITY_CRITICAL", "service: \"gateway\"", "host: \"host-c\"",
                    "summary: \"caf\\303\\251 \\342\\234\\223 \\\"down\\\"\"", "resolved: true",
                    "raised_at_us: 18446744073709551615", "resolved_at_us: 1700000000000001" } },
                { "event",
                  &event.base,
                  { "kind: \"shard-map\"", "service: \"sentinel\"", "host: \"host-d\"",
                    "summary: \"shard 17 moved\"", "at_us: 1700000000000002",
                    "detail_json: \"{\\\"shard\\\":17}\"" } },
                { "label", &label0.base, { "key: \"role\"", "value: \"gateway\"" } },
                { "capacity",
                  &capacity.base,
                  { "cores: 16", "memory_total_bytes: 68719476736",
                    "memory_available_bytes: 34359738368", "load1_x100: 150", "load5_x100: 125",
                    "load15_x100: 99" } },
                { "unit-state",
                  &us0.base,
                  { "name: \"sentinel@1.service\"", "active_state: \"active\"",
                    "sub_state: \"running\"", "n_restarts: 5", "main_pid: 4242",
                    "result: \"success\"", "status_text: \"ready=0-12 connecting=13\"",
                    "memory_bytes: 18446744073709551615", "state_change_us: 1700000000000003",
                    "service: \"sentinel\"", "instance: 1", "config_hash: \"feedbeef\"" } },
                { "heartbeat",
                  &heartbeat.base,
                  { "host: \"host-e\"", "boot_id: \"0b5e6f0a2c6d4e8f9a1b2c3d4e5f6a7b\"",
                    "agent_version: \"0.1.0\"", "applied_generation: 12", "applied_epoch: 41",
                    "max_epoch_seen: 45", "memory_total_bytes: 68719476736", "key: \"zone\"",
                    "name: \"audio@0.service\"", "interval_us: 5000000", "seq: 987654321",
                    "system_state: \"degraded\"" } },
                { "unit-event",
                  &unit_event.base,
                  { "host: \"host-f\"", "name: \"sentinel@1.service\"",
                    "previous_active_state: \"activating\"", "at_us: 1700000000000005" } },
                { "shard-instance-report",
                  &sir0.base,
                  { "unit: \"sentinel@2.service\"", "service: \"sentinel\"", "instance: 2",
                    "assigned: \"24-47\"", "shard_count: 96", "shard_epoch: 18", "ready: \"24-40\"",
                    "connecting: \"41-46\"", "failed: \"47\"", "active_state: \"reloading\"",
                    "has_tokens: true" } },
                { "shard-report",
                  &shard_report.base,
                  { "host: \"host-g\"", "unit: \"sentinel@2.service\"",
                    "unit: \"sentinel@3.service\"", "at_us: 1700000000000006" } },
                { "controller-marker",
                  &marker.base,
                  { "controller_id: \"ctl-1\"", "nonce: \"0123456789abcdef0123456789abcdef\"",
                    "seq: 42", "sent_mono_us: 123456789" } },
                { "unit-outcome",
                  &uo0.base,
                  { "unit: \"gateway@4.service\"", "action: \"restarted\"", "ok: true",
                    "result: \"done\"" } },
                { "command-result-generation",
                  &cr_generation.base,
                  { "host: \"host-h\"", "epoch: 46", "generation: 77", "ok: true",
                    "error: \"partially applied\"", "unit: \"gateway@5.service\"",
                    "result: \"timeout\"", "at_us: 1700000000000007" } },
                { "command-result-restart",
                  &cr_restart.base,
                  { "host: \"host-i\"", "restart_id: \"r-77aa\"" } },
                { "ping-request", &ping.base, { NULL } },
                { "hosts-request", &hosts_req.base, { NULL } },
                { "spec-file",
                  &spec0.base,
                  { "name: \"gateway@.service\"", "text: \"[X-Baton]\\nKind=sharded\\n\"" } },
                { "apply-request",
                  &apply.base,
                  { "name: \"audio@.service\"", "text: \"[X-Baton]\\nReplicas=4\\n\"",
                    "dry_run: true" } },
                { "service-request",
                  &service_req.base,
                  { "service: \"sentinel\"", "instance: -1", "count: 6", "instances: 8",
                    "shards: 128" } },
                { "host-request", &host_req.base, { "host: \"host-j\"" } },
                { "rollout-request",
                  &rollout_req.base,
                  { "action: \"pause\"", "service: \"audio\"" } },
                { "request-ping", &rq_ping.base, { "verb: \"ping\"", "ping {" } },
                { "request-hosts", &rq_hosts.base, { "verb: \"hosts\"", "hosts {" } },
                { "request-apply",
                  &rq_apply.base,
                  { "verb: \"apply\"", "name: \"gateway@.service\"", "dry_run: true" } },
                { "request-service",
                  &rq_service.base,
                  { "verb: \"reshard\"", "instance: -1", "shards: 128" } },
                { "request-host",
                  &rq_host.base,
                  { "verb: \"drain\"", "host: \"host-j\"", "hosts: \"host-j3\"", "all: true" } },
                { "request-rollout",
                  &rq_rollout.base,
                  { "verb: \"rollout\"", "action: \"pause\"" } },
                { "counter", &counter0.base, { "name: \"messages_refused\"", "value: 12" } },
                { "pong",
                  &pong.base,
                  { "controller_id: \"ctl-1\"", "version: \"0.1.0\"", "epoch: 47",
                    "started_at_us: 1700000000000008", "now_us: 1700000000000009", "hosts_up: 9",
                    "hosts_total: 10", "name: \"alerts_raised\"", "user: \"ops-alice\"" } },
                { "host-info",
                  &hi0.base,
                  { "host: \"host-k\"", "state: \"drained\"", "last_seen_us: 1700000000000010",
                    "state_since_us: 1700000000000011", "boot_id: \"boot-k\"",
                    "agent_version: \"0.1.1\"", "cores: 32", "memory_total_bytes: 137438953472",
                    "memory_available_bytes: 1073741824", "load1_x100: 300", "labels: \"rack=r7\"",
                    "system_state: \"running\"" } },
                { "host-list",
                  &host_list.base,
                  { "host: \"host-k\"", "host: \"host-l\"", "state: \"down\"", "units_total: 14",
                    "units_active: 13", "applied_generation: 99", "max_epoch_seen: 48",
                    "systemd_version: \"253\"" } },
                { "response-pong",
                  &rs_pong.base,
                  { "status: STATUS_REFUSED", "error: \"over budget\"", "controller_id: \"ctl-1\"",
                    "severity: SEVERITY_CRITICAL" } },
                { "response-hosts",
                  &rs_hosts.base,
                  { "status: STATUS_FAILED", "host: \"host-l\"" } },
                { "response-json",
                  &rs_json.base,
                  { "status: STATUS_USAGE", "json: \"{\\\"rollouts\\\":[]}\"" } },
                { "response-backup", &rs_backup.base, { "backup: \"SQLite\\000\\001\"" } },
                { "part", &part.base, { "index: 2", "count: 5" } },
                { "response-part",
                  &rs_part.base,
                  { "index: 2", "count: 5", "data: \"\\010\\001\"" } },
        };

        _Static_assert(ELEMENTSOF(table) <= ELEMENTSOF(samples), "samples[] too small");
        memcpy(samples, table, sizeof(table));
        n_samples = ELEMENTSOF(table);

done:
        *ret_n = n_samples;
        return samples;
}
