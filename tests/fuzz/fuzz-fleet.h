/* SPDX-License-Identifier: MIT */
/* The example fleet of packaging/examples/ (a singleton core, a sharded
 * gateway of 6 × 96 and 6 audio nodes) and three hosts, for the seed
 * generator and for targets that hand a message to the planner: the same
 * fleet the demo runs, so seeds and targets look like production. */
#pragma once

#include <stddef.h>

typedef struct FuzzSpecFile {
        const char *name;
        const char *text;
} FuzzSpecFile;

static const FuzzSpecFile fuzz_fleet_specs[] = {
        { "core.service", "[Unit]\n"
                          "Description=Discord bot core\n"
                          "\n"
                          "[Service]\n"
                          "Type=notify\n"
                          "ExecStart=/usr/bin/bot-core\n"
                          "Restart=on-failure\n"
                          "\n"
                          "[X-Baton]\n"
                          "Kind=singleton\n"
                          "HealthyFor=2s\n" },
        { "gateway@.service",
          "[Unit]\n"
          "Description=Discord gateway sentinel %i\n"
          "\n"
          "[Service]\n"
          "Type=notify\n"
          "ExecStart=/usr/bin/bot-gateway\n"
          "Environment=GATEWAY_IDENTIFY_CONCURRENCY=16 GATEWAY_IDENTIFY_INTERVAL_MS=5000\n"
          "Restart=on-failure\n"
          "\n"
          "[X-Baton]\n"
          "Kind=sharded\n"
          "Instances=6\n"
          "Shards=96\n"
          "MinReplicas=2\n"
          "MaxReplicas=12\n"
          "MaxPerHost=4\n"
          "RequireLabels=role=gateway\n"
          "MaxUnavailable=1\n"
          "HealthyFor=2s\n"
          "HealthTimeout=5min\n"
          "IdentifyConcurrency=16\n"
          "IdentifyInterval=5s\n"
          "DailyStartBudget=1000\n" },
        { "audio@.service", "[Unit]\n"
                            "Description=Audio node %i\n"
                            "\n"
                            "[Service]\n"
                            "Type=notify\n"
                            "ExecStart=/usr/bin/bot-audio\n"
                            "Restart=on-failure\n"
                            "\n"
                            "[X-Baton]\n"
                            "Replicas=6\n"
                            "MinReplicas=2\n"
                            "MaxReplicas=12\n"
                            "MaxPerHost=2\n"
                            "Spread=zone\n"
                            "Memory=64M\n"
                            "MaxUnavailable=1\n"
                            "HealthyFor=2s\n" },
};
#define FUZZ_FLEET_N_SPECS (sizeof(fuzz_fleet_specs) / sizeof(fuzz_fleet_specs[0]))

typedef struct FuzzHost {
        const char *id;
        const char *labels; /* as the agent's [agent] labels */
        unsigned long long memory;
} FuzzHost;

static const FuzzHost fuzz_fleet_hosts[] = {
        { "host-a", "zone=eu rack=r1 role=gateway", 8ULL << 30 },
        { "host-b", "zone=eu rack=r2 role=gateway", 8ULL << 30 },
        { "host-c", "zone=us rack=r1 role=audio", 4ULL << 30 },
};
#define FUZZ_FLEET_N_HOSTS (sizeof(fuzz_fleet_hosts) / sizeof(fuzz_fleet_hosts[0]))

#include "placement.h"
#include "spec.h"

/* The example specs, parsed once; aborts if they do not parse. */
const ServiceSpec *const *fuzz_fleet_load(void);

/* Places `specs` over `hosts` from nothing, checks the result (every
 * instance placed or a problem, only on schedulable hosts with the required
 * labels and within MaxPerHost), places again from that result and checks
 * that nothing moves. */
void fuzz_place_and_check(const ServiceSpec *const *specs, size_t n_specs,
                          const PlacementHost *hosts, size_t n_hosts);
