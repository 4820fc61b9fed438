/* SPDX-License-Identifier: MIT */
/* Service specs: every key and its defaults per kind, every error class with
 * its exact "FILE:LINE: …" text, the unit-file line syntax (continuations,
 * comments, CRLF), a randomized round trip through generated spec files with
 * injected errors, and the default shard split. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "duration.h"
#include "macro.h"
#include "rangelist.h"
#include "spec.h"
#include "tap.h"

#define SVC "[Service]\nExecStart=/bin/true\n"
/* Three lines: the first [X-Baton] key is on line 4. */
#define HEAD SVC "[X-Baton]\n"

#define SEC (USEC_PER_SEC)
#define MINUTE (60 * SEC)

/* Parses text that must be valid; the caller frees the spec. */
static ServiceSpec *parse_ok(const char *file, const char *text) {
        ServiceSpec *s = NULL;
        char *error = NULL;
        int r;

        r = spec_parse(file, text, &s, &error);
        if (r < 0)
                TAP_FAIL_("%s: unexpected %s: %s", file, STRERROR(r), strna(error));
        ASSERT_NULL(error);
        ASSERT_NOT_NULL(s);
        return s;
}

/* Text that must be refused with exactly `expected`. */
static void parse_bad(const char *file, const char *text, const char *expected) {
        ServiceSpec *s = NULL;
        char *error = NULL;
        int r;

        r = spec_parse(file, text, &s, &error);
        if (r >= 0) {
                service_spec_free(s);
                TAP_FAIL_("%s parsed, expected \"%s\"\n%s", file, expected, text);
        }
        ASSERT_ERR(r, -EINVAL);
        ASSERT_NULL(s);
        if (!error || strcmp(error, expected) != 0) {
                char copy[512];

                snprintf(copy, sizeof(copy), "%s", strna(error));
                free(error);
                TAP_FAIL_("got \"%s\", expected \"%s\"", copy, expected);
        }
        free(error);

        /* And without anyone to tell. */
        ASSERT_ERR(spec_parse(file, text, &s, NULL), -EINVAL);
        ASSERT_NULL(s);
}

TEST(kind_table) {
        for (ServiceKind k = 0; k < _SERVICE_KIND_MAX; k++) {
                ASSERT_NOT_NULL(service_kind_to_string(k));
                ASSERT_EQ_INT(service_kind_from_string(service_kind_to_string(k)), k);
        }
        ASSERT_STREQ(service_kind_to_string(SERVICE_SHARDED), "sharded");
        ASSERT_NULL(service_kind_to_string(_SERVICE_KIND_MAX));
        ASSERT_NULL(service_kind_to_string(_SERVICE_KIND_INVALID));
        ASSERT_EQ_INT(service_kind_from_string("Sharded"), -EINVAL);
        ASSERT_EQ_INT(service_kind_from_string(""), -EINVAL);
        ASSERT_EQ_INT(service_kind_from_string(NULL), -EINVAL);
}

/* The annotated example of docs/DESIGN.md §9, trailing comments and all. */
TEST(design_example) {
        const char *text = "[Unit]\n"
                           "Description=Discord gateway sentinel\n"
                           "\n"
                           "[Service]\n"
                           "ExecStart=/usr/bin/sentinel\n"
                           "\n"
                           "[X-Baton]\n"
                           "Kind=sharded              # stateless (default for templates) | "
                           "singleton | sharded\n"
                           "Instances=6               # sharded; Replicas= for stateless\n"
                           "Shards=96                 # sharded: total shard count, the same "
                           "for every instance\n"
                           "MinReplicas=2             # bounds that `batonctl scale` and "
                           "reshard respect\n"
                           "MaxReplicas=12\n"
                           "MaxPerHost=1\n"
                           "RequireLabels=role=gateway zone=eu\n"
                           "Spread=rack               # spread instances across values of "
                           "this host label\n"
                           "Memory=16G                # reservation, checked against the host's "
                           "reported capacity\n"
                           "MaxUnavailable=1          # rolling restart / update\n"
                           "HealthyFor=10s            # an instance must stay healthy this long "
                           "before the next step\n"
                           "HealthTimeout=15min       # a step that is not healthy by then fails "
                           "and pauses the rollout\n"
                           "IdentifyConcurrency=1     # external start budget: starts per bucket "
                           "per interval\n"
                           "IdentifyInterval=5s\n"
                           "DailyStartBudget=1000\n";
        ServiceSpec *s = parse_ok("gateway@.service", text);

        ASSERT_STREQ(s->name, "gateway");
        ASSERT_STREQ(s->file_name, "gateway@.service");
        ASSERT_TRUE(s->is_template);
        ASSERT_STREQ(s->unit_text, text);
        ASSERT_EQ_INT(s->kind, SERVICE_SHARDED);
        ASSERT_EQ_UINT(s->count, 6);
        ASSERT_EQ_UINT(s->shards, 96);
        ASSERT_EQ_UINT(s->min_replicas, 2);
        ASSERT_EQ_UINT(s->max_replicas, 12);
        ASSERT_EQ_UINT(s->max_per_host, 1);
        ASSERT_EQ_UINT(s->n_require_labels, 2);
        ASSERT_STREQ(s->require_labels[0].key, "role");
        ASSERT_STREQ(s->require_labels[0].value, "gateway");
        ASSERT_STREQ(s->require_labels[1].key, "zone");
        ASSERT_STREQ(s->require_labels[1].value, "eu");
        ASSERT_STREQ(s->spread, "rack");
        ASSERT_EQ_UINT(s->memory, UINT64_C(16) << 30);
        ASSERT_EQ_UINT(s->max_unavailable, 1);
        ASSERT_EQ_UINT(s->healthy_for, 10 * SEC);
        ASSERT_EQ_UINT(s->health_timeout, 15 * MINUTE);
        ASSERT_EQ_UINT(s->identify_concurrency, 1);
        ASSERT_EQ_UINT(s->identify_interval, 5 * SEC);
        ASSERT_EQ_UINT(s->daily_start_budget, 1000);
        service_spec_free(s);
}

static void check_common_defaults(const ServiceSpec *s) {
        ASSERT_EQ_UINT(s->max_replicas, UINT32_MAX);
        ASSERT_EQ_UINT(s->max_per_host, 0);
        ASSERT_EQ_UINT(s->n_require_labels, 0);
        ASSERT_NULL(s->require_labels);
        ASSERT_NULL(s->spread);
        ASSERT_EQ_UINT(s->memory, 0);
        ASSERT_EQ_UINT(s->max_unavailable, 1);
        ASSERT_EQ_UINT(s->healthy_for, 10 * SEC);
        ASSERT_EQ_UINT(s->health_timeout, 15 * MINUTE);
        ASSERT_EQ_UINT(s->identify_concurrency, 1);
        ASSERT_EQ_UINT(s->identify_interval, 5 * SEC);
        ASSERT_EQ_UINT(s->daily_start_budget, 1000);
}

TEST(defaults_per_kind) {
        ServiceSpec *s;

        /* A template without [X-Baton] is one stateless replica. */
        s = parse_ok("web@.service", SVC);
        ASSERT_STREQ(s->name, "web");
        ASSERT_TRUE(s->is_template);
        ASSERT_EQ_INT(s->kind, SERVICE_STATELESS);
        ASSERT_EQ_UINT(s->count, 1);
        ASSERT_EQ_UINT(s->shards, 0);
        ASSERT_EQ_UINT(s->min_replicas, 0);
        check_common_defaults(s);
        service_spec_free(s);

        /* A plain unit is a singleton, with or without an empty [X-Baton]. */
        s = parse_ok("core.service", SVC "[X-Baton]\n");
        ASSERT_STREQ(s->name, "core");
        ASSERT_STREQ(s->file_name, "core.service");
        ASSERT_FALSE(s->is_template);
        ASSERT_EQ_INT(s->kind, SERVICE_SINGLETON);
        ASSERT_EQ_UINT(s->count, 1);
        ASSERT_EQ_UINT(s->shards, 0);
        ASSERT_EQ_UINT(s->min_replicas, 0);
        check_common_defaults(s);
        service_spec_free(s);

        /* A sharded service needs Shards=; one instance, MinReplicas 1. */
        s = parse_ok("gw@.service", HEAD "Kind=sharded\nShards=8\n");
        ASSERT_EQ_INT(s->kind, SERVICE_SHARDED);
        ASSERT_EQ_UINT(s->count, 1);
        ASSERT_EQ_UINT(s->shards, 8);
        ASSERT_EQ_UINT(s->min_replicas, 1);
        check_common_defaults(s);
        service_spec_free(s);

        /* A singleton may be a template: one instance, @0. */
        s = parse_ok("db@.service", HEAD "Kind=singleton\n");
        ASSERT_EQ_INT(s->kind, SERVICE_SINGLETON);
        ASSERT_TRUE(s->is_template);
        ASSERT_EQ_UINT(s->count, 1);
        check_common_defaults(s);
        service_spec_free(s);

        s = parse_ok("web@.service", HEAD "Kind=stateless\nReplicas=0\n");
        ASSERT_EQ_INT(s->kind, SERVICE_STATELESS);
        ASSERT_EQ_UINT(s->count, 0);
        service_spec_free(s);
}

/* One key at a time, the values each type accepts. */
TEST(every_key_value) {
        static const struct {
                const char *file, *line;
                size_t offset;
                int width; /* 4: uint32_t field, 8: uint64_t field */
                uint64_t expected;
        } cases[] = {
#define F(field) offsetof(ServiceSpec, field)
                { "s@.service", "Replicas=3", F(count), 4, 3 },
                { "s@.service", "Replicas=007", F(count), 4, 7 },
                { "s@.service", "Replicas=65536\nMaxReplicas=65536", F(count), 4, 65536 },
                { "s@.service", "Replicas = 5", F(count), 4, 5 },
                { "s@.service", "Replicas\t=\t5", F(count), 4, 5 },
                { "s@.service", "  Replicas=5  ", F(count), 4, 5 },
                { "s@.service", "Replicas=5 # five", F(count), 4, 5 },
                { "s@.service", "Replicas=5\t#five", F(count), 4, 5 },
                { "s@.service", "Replicas=4\nMinReplicas=4", F(min_replicas), 4, 4 },
                { "s@.service", "Replicas=0\nMinReplicas=0", F(min_replicas), 4, 0 },
                { "s@.service", "MaxReplicas=1", F(max_replicas), 4, 1 },
                { "s@.service", "MaxReplicas=4294967295", F(max_replicas), 4, UINT32_MAX },
                { "s@.service", "MaxPerHost=0", F(max_per_host), 4, 0 },
                { "s@.service", "MaxPerHost=4294967295", F(max_per_host), 4, UINT32_MAX },
                { "s@.service", "MaxUnavailable=1", F(max_unavailable), 4, 1 },
                { "s@.service", "MaxUnavailable=4294967295", F(max_unavailable), 4, UINT32_MAX },
                { "s@.service", "DailyStartBudget=0", F(daily_start_budget), 4, 0 },
                { "s@.service", "DailyStartBudget=4294967295", F(daily_start_budget), 4,
                  UINT32_MAX },
                { "x.service", "Memory=0", F(memory), 8, 0 },
                { "x.service", "Memory=1024", F(memory), 8, 1024 },
                { "x.service", "Memory=512M", F(memory), 8, UINT64_C(512) << 20 },
                { "x.service", "Memory=1.5G", F(memory), 8, UINT64_C(3) << 29 },
                { "x.service", "Memory=16GiB", F(memory), 8, UINT64_C(16) << 30 },
                { "x.service", "Memory=16GB", F(memory), 8, UINT64_C(16) << 30 },
                { "x.service", "Memory=1024T", F(memory), 8, SPEC_MEMORY_MAX },
                { "x.service", "HealthyFor=0", F(healthy_for), 8, 0 },
                { "x.service", "HealthyFor=90", F(healthy_for), 8, 90 * SEC },
                { "x.service", "HealthyFor=500ms", F(healthy_for), 8, 500 * USEC_PER_MSEC },
                { "x.service", "HealthyFor=1.5s", F(healthy_for), 8, 1500 * USEC_PER_MSEC },
                { "x.service", "HealthyFor=1h 30min", F(healthy_for), 8, 90 * MINUTE },
                { "x.service", "HealthyFor=365d", F(healthy_for), 8, SPEC_DURATION_MAX },
                { "x.service", "HealthTimeout=1us", F(health_timeout), 8, 1 },
                { "x.service", "HealthTimeout=2min", F(health_timeout), 8, 2 * MINUTE },
                { "g@.service", "Kind=sharded\nShards=16777216", F(shards), 4,
                  RANGELIST_MAX_SHARD },
                { "g@.service", "Kind=sharded\nShards=96\nInstances=96", F(count), 4, 96 },
                { "g@.service", "Kind=sharded\nShards=96\nIdentifyConcurrency=16",
                  F(identify_concurrency), 4, 16 },
                { "g@.service", "Kind=sharded\nShards=96\nIdentifyConcurrency=65536",
                  F(identify_concurrency), 4, SPEC_COUNT_MAX },
                { "g@.service", "Kind=sharded\nShards=96\nIdentifyInterval=5500ms",
                  F(identify_interval), 8, 5500 * USEC_PER_MSEC },
                { "g@.service", "Kind=sharded\nShards=96\nMinReplicas=1\nMaxReplicas=1",
                  F(max_replicas), 4, 1 },
#undef F
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char text[512];
                ServiceSpec *s;
                uint64_t got;

                snprintf(text, sizeof(text), HEAD "%s\n", cases[i].line);
                s = parse_ok(cases[i].file, text);
                if (cases[i].width == 4) {
                        uint32_t v;
                        memcpy(&v, (char *) s + cases[i].offset, sizeof(v));
                        got = v;
                } else
                        memcpy(&got, (char *) s + cases[i].offset, sizeof(got));
                service_spec_free(s);
                if (got != cases[i].expected)
                        TAP_FAIL_("case %zu \"%s\": got %" PRIu64 ", expected %" PRIu64, i,
                                  cases[i].line, got, cases[i].expected);
        }
}

TEST(shard_change) {
        ServiceSpec *s;

        s = parse_ok("g@.service", "[Service]\nExecStart=/bin/g\n\n[X-Baton]\nKind=sharded\n"
                                   "Shards=4\n");
        ASSERT_FALSE(s->shard_reload);
        service_spec_free(s);
        s = parse_ok("g@.service", "[Service]\nExecStart=/bin/g\nExecReload=kill -HUP $MAINPID\n\n"
                                   "[X-Baton]\nKind=sharded\nShards=4\nShardChange=reload\n");
        ASSERT_TRUE(s->shard_reload);
        service_spec_free(s);
        s = parse_ok("g@.service", "[Service]\nExecStart=/bin/g\n\n[X-Baton]\nKind=sharded\n"
                                   "Shards=4\nShardChange=restart\n");
        ASSERT_FALSE(s->shard_reload);
        service_spec_free(s);
        /* ExecReload= counts only in [Service], and only with a command. */
        ASSERT_ERR(spec_parse("g@.service",
                              "[Unit]\nExecReload=/bin/true\n[Service]\nExecStart=/bin/g\n"
                              "ExecReload=\n[X-Baton]\nKind=sharded\nShards=4\n"
                              "ShardChange=reload\n",
                              &s, NULL),
                   -EINVAL);
}

TEST(labels_and_spread) {
        ServiceSpec *s;

        s = parse_ok("x.service", HEAD "RequireLabels=  a=1\tb.c/d:e-f_g=X.Y/z:0-9_  \n"
                                       "Spread=topology.kubernetes.io/zone\n");
        ASSERT_EQ_UINT(s->n_require_labels, 2);
        ASSERT_STREQ(s->require_labels[0].key, "a");
        ASSERT_STREQ(s->require_labels[0].value, "1");
        ASSERT_STREQ(s->require_labels[1].key, "b.c/d:e-f_g");
        ASSERT_STREQ(s->require_labels[1].value, "X.Y/z:0-9_");
        ASSERT_STREQ(s->spread, "topology.kubernetes.io/zone");
        service_spec_free(s);

        /* Empty means none for these two. */
        s = parse_ok("x.service", HEAD "RequireLabels=\nSpread=\n");
        ASSERT_EQ_UINT(s->n_require_labels, 0);
        ASSERT_NULL(s->require_labels);
        ASSERT_NULL(s->spread);
        service_spec_free(s);

        s = parse_ok("x.service", HEAD "RequireLabels= # none\nSpread=   # none\n");
        ASSERT_EQ_UINT(s->n_require_labels, 0);
        ASSERT_NULL(s->spread);
        service_spec_free(s);

        /* As many as allowed. */
        {
                char text[4096], *p = text;

                p += sprintf(p, HEAD "RequireLabels=");
                for (unsigned i = 0; i < SPEC_LABELS_MAX; i++)
                        p += sprintf(p, "k%u=v%u ", i, i);
                sprintf(p, "\n");
                s = parse_ok("x.service", text);
                ASSERT_EQ_UINT(s->n_require_labels, SPEC_LABELS_MAX);
                ASSERT_STREQ(s->require_labels[63].key, "k63");
                ASSERT_STREQ(s->require_labels[63].value, "v63");
                service_spec_free(s);
        }
}

/* systemd's keys are not ours: repeated ones, odd ones, other X- sections. */
TEST(systemd_sections_untouched) {
        const char *text = "# a comment\n"
                           "; another\n"
                           "[Unit]\n"
                           "Description=API\n"
                           "After=network.target\n"
                           "After=postgresql.service\n"
                           "[X-Baton]\n"
                           "Replicas=3\n"
                           "[Service]\n"
                           "ExecStartPre=/bin/true\n"
                           "ExecStartPre=/bin/true\n"
                           "ExecStart=/usr/bin/api --listen=:8080 # not a comment for systemd\n"
                           "Environment=A=1 B=2\n"
                           "Environment=\n"
                           "[X-Other]\n"
                           "Replicass=whatever\n"
                           "Kind=nonsense\n"
                           "[Service]\n"
                           "Restart=always\n"
                           "[Install]\n"
                           "WantedBy=multi-user.target\n";
        ServiceSpec *s = parse_ok("api@.service", text);

        ASSERT_EQ_INT(s->kind, SERVICE_STATELESS);
        ASSERT_EQ_UINT(s->count, 3);
        ASSERT_STREQ(s->unit_text, text);
        service_spec_free(s);
}

TEST(continuation_lines) {
        ServiceSpec *s;

        /* A continued value; the backslash stands for a space. */
        s = parse_ok("x.service", HEAD "RequireLabels=role=gateway\\\n"
                                       "    zone=eu \\\n"
                                       "rack=r1\n");
        ASSERT_EQ_UINT(s->n_require_labels, 3);
        ASSERT_STREQ(s->require_labels[0].value, "gateway");
        ASSERT_STREQ(s->require_labels[1].key, "zone");
        ASSERT_STREQ(s->require_labels[2].key, "rack");
        service_spec_free(s);

        /* Comment lines inside a continuation are skipped, as systemd does. */
        s = parse_ok("x.service", HEAD "RequireLabels=a=1 \\\n"
                                       "# b=2 \\\n"
                                       "  ; c=3\n"
                                       "  d=4\n");
        ASSERT_EQ_UINT(s->n_require_labels, 2);
        ASSERT_STREQ(s->require_labels[1].key, "d");
        service_spec_free(s);

        /* A duration in two parts, and a backslash on the very last line. */
        s = parse_ok("x.service", HEAD "HealthyFor=1min\\\n30s\nMaxPerHost=3\\");
        ASSERT_EQ_UINT(s->healthy_for, 90 * SEC);
        ASSERT_EQ_UINT(s->max_per_host, 3);
        service_spec_free(s);

        /* An escaped backslash does not continue, nor does one before a blank. */
        parse_bad("x.service", "[Service]\nExecStart=/bin/echo \\\\\n[X-Baton]\nBogus=1\n",
                  "x.service:4: [X-Baton] Bogus: unknown key");
        parse_bad("x.service", "[Service]\nExecStart=/bin/echo \\ \n[X-Baton]\nBogus=1\n",
                  "x.service:4: [X-Baton] Bogus: unknown key");
        /* A continued line is blamed on its first line; later lines count on. */
        parse_bad("x.service", HEAD "HealthyFor=1\\\n  2\\\n  3x\nBogus=1\n",
                  "x.service:4: [X-Baton] HealthyFor: '1   2   3x' is not a duration");
        parse_bad("x.service", HEAD "RequireLabels=a=1\\\n# c\\\n b=2\nBogus=1\n",
                  "x.service:7: [X-Baton] Bogus: unknown key");
        /* A blank line ends a continuation. */
        parse_bad("x.service", HEAD "RequireLabels=a=1\\\n\nBogus=1\n",
                  "x.service:6: [X-Baton] Bogus: unknown key");
        /* The continuation reaches into what would have been a header. */
        parse_bad("x.service", HEAD "Spread=rack\\\n[Service]\n",
                  "x.service:4: [X-Baton] Spread: 'rack [Service]' is not a label key "
                  "(A-Z a-z 0-9 . _ / : -)");
}

/* Every class of error, with its exact text. */
TEST(error_messages) {
        static const struct {
                const char *file, *text, *error;
        } cases[] = {
                /* The three examples of the task, word for word. */
                { "api.service", HEAD "Replicass=3\n",
                  "api.service:4: [X-Baton] Replicass: unknown key" },
                { "gateway@.service",
                  "[Unit]\nDescription=g\n\n[Service]\nExecStart=/bin/g\n\n[X-Baton]\n"
                  "Kind=stateless\nReplicas=4\nMaxReplicas=12\n\nHealthyFor=10x\n",
                  "gateway@.service:12: [X-Baton] HealthyFor: '10x' is not a duration" },
                { "gateway@.service", HEAD "Replicas=20\nMaxReplicas=12\n",
                  "gateway@.service:5: [X-Baton] Replicas=20 is above MaxReplicas=12" },
                { "gateway@.service", HEAD "MaxReplicas=12\nReplicas=20\n",
                  "gateway@.service:5: [X-Baton] Replicas=20 is above MaxReplicas=12" },

                /* Values. */
                { "s@.service", HEAD "Replicas=abc\n",
                  "s@.service:4: [X-Baton] Replicas: 'abc' is not a number" },
                { "s@.service", HEAD "Replicas=-1\n",
                  "s@.service:4: [X-Baton] Replicas: '-1' is not a number" },
                { "s@.service", HEAD "Replicas=+1\n",
                  "s@.service:4: [X-Baton] Replicas: '+1' is not a number" },
                { "s@.service", HEAD "Replicas=1 2\n",
                  "s@.service:4: [X-Baton] Replicas: '1 2' is not a number" },
                { "s@.service", HEAD "Replicas=0x10\n",
                  "s@.service:4: [X-Baton] Replicas: '0x10' is not a number" },
                { "s@.service", HEAD "Replicas=3#x\n",
                  "s@.service:4: [X-Baton] Replicas: '3#x' is not a number" },
                { "s@.service", HEAD "Replicas=\n",
                  "s@.service:4: [X-Baton] Replicas: empty value" },
                { "s@.service", HEAD "Replicas= # nothing\n",
                  "s@.service:4: [X-Baton] Replicas: empty value" },
                { "s@.service", HEAD "Replicas=65537\n",
                  "s@.service:4: [X-Baton] Replicas: '65537' is too large (at most 65536)" },
                { "s@.service", HEAD "Replicas=4294967296\n",
                  "s@.service:4: [X-Baton] Replicas: '4294967296' is too large (at most 65536)" },
                { "s@.service", HEAD "Replicas=99999999999999999999999999\n",
                  "s@.service:4: [X-Baton] Replicas: '99999999999999999999999999' is too large (at "
                  "most 65536)" },
                { "s@.service", HEAD "MaxReplicas=4294967296\n",
                  "s@.service:4: [X-Baton] MaxReplicas: '4294967296' is too large (at most "
                  "4294967295)" },
                { "s@.service", HEAD "MaxPerHost=18446744073709551616\n",
                  "s@.service:4: [X-Baton] MaxPerHost: '18446744073709551616' is too large (at "
                  "most 4294967295)" },
                { "s@.service", HEAD "DailyStartBudget=4294967296\n",
                  "s@.service:4: [X-Baton] DailyStartBudget: '4294967296' is too large (at most "
                  "4294967295)" },
                { "s@.service", HEAD "MaxReplicas=0\n",
                  "s@.service:4: [X-Baton] MaxReplicas: '0' is too small (at least 1)" },
                { "s@.service", HEAD "MaxUnavailable=0\n",
                  "s@.service:4: [X-Baton] MaxUnavailable: '0' is too small (at least 1)" },
                { "g@.service", HEAD "Kind=sharded\nShards=0\n",
                  "g@.service:5: [X-Baton] Shards: '0' is too small (at least 1)" },
                { "g@.service", HEAD "Kind=sharded\nShards=16777217\n",
                  "g@.service:5: [X-Baton] Shards: '16777217' is too large (at most 16777216)" },
                { "g@.service", HEAD "Kind=sharded\nShards=8\nInstances=0\n",
                  "g@.service:6: [X-Baton] Instances: '0' is too small (at least 1)" },
                { "g@.service", HEAD "Kind=sharded\nShards=8\nIdentifyConcurrency=0\n",
                  "g@.service:6: [X-Baton] IdentifyConcurrency: '0' is too small (at least 1)" },
                { "g@.service", HEAD "Kind=sharded\nShards=8\nIdentifyInterval=0\n",
                  "g@.service:6: [X-Baton] IdentifyInterval: '0' is too small (at least 1us)" },
                { "x.service", HEAD "HealthTimeout=0\n",
                  "x.service:4: [X-Baton] HealthTimeout: '0' is too small (at least 1us)" },
                { "x.service", HEAD "HealthTimeout=infinity\n",
                  "x.service:4: [X-Baton] HealthTimeout: must be finite" },
                { "x.service", HEAD "HealthyFor=366d\n",
                  "x.service:4: [X-Baton] HealthyFor: '366d' is too large (at most 52w 1d)" },
                { "x.service", HEAD "HealthyFor=99999999999999999999s\n",
                  "x.service:4: [X-Baton] HealthyFor: '99999999999999999999s' is too large (at "
                  "most 52w 1d)" },
                { "x.service", HEAD "HealthyFor=-1s\n",
                  "x.service:4: [X-Baton] HealthyFor: '-1s' is not a duration" },
                { "x.service", HEAD "HealthyFor=10 s x\n",
                  "x.service:4: [X-Baton] HealthyFor: '10 s x' is not a duration" },
                { "x.service", HEAD "Memory=16X\n",
                  "x.service:4: [X-Baton] Memory: '16X' is not a size" },
                { "x.service", HEAD "Memory=-1\n",
                  "x.service:4: [X-Baton] Memory: '-1' is not a size" },
                { "x.service", HEAD "Memory=1.5\n",
                  "x.service:4: [X-Baton] Memory: '1.5' is not a size" },
                { "x.service", HEAD "Memory=2048T\n",
                  "x.service:4: [X-Baton] Memory: '2048T' is too large (at most 1024T)" },
                { "x.service", HEAD "Memory=99999999999999999999\n",
                  "x.service:4: [X-Baton] Memory: '99999999999999999999' is too large (at most "
                  "1024T)" },
                { "x.service", HEAD "Kind=shard\n",
                  "x.service:4: [X-Baton] Kind: 'shard' is not a kind (stateless, singleton, "
                  "sharded)" },
                { "x.service", HEAD "Kind=Singleton\n",
                  "x.service:4: [X-Baton] Kind: 'Singleton' is not a kind (stateless, singleton, "
                  "sharded)" },
                { "x.service", HEAD "Kind=a\001b\033[31m\n",
                  "x.service:4: [X-Baton] Kind: 'a?b?[31m' is not a kind (stateless, singleton, "
                  "sharded)" },
                { "x.service", HEAD "Kind=\n", "x.service:4: [X-Baton] Kind: empty value" },
                { "x.service",
                  HEAD "HealthyFor="
                       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                       "xxxxxxxxxxx\n",
                  "x.service:4: [X-Baton] HealthyFor: "
                  "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is not a duration" },
                { "x.service", HEAD "Spread=ééééééééééééééééééééééééééééééé\n",
                  "x.service:4: [X-Baton] Spread: 'éééééééééééééééééééééééé...' is not a label key "
                  "(A-Z a-z 0-9 . _ / : -)" },
                { "x.service", HEAD "RequireLabels=role\n",
                  "x.service:4: [X-Baton] RequireLabels: 'role' is not KEY=VALUE" },
                { "x.service", HEAD "RequireLabels=zone=eu role=\n",
                  "x.service:4: [X-Baton] RequireLabels: 'role=' is not KEY=VALUE with a non-empty "
                  "key and value of A-Z a-z 0-9 . _ / : -" },
                { "x.service", HEAD "RequireLabels==eu\n",
                  "x.service:4: [X-Baton] RequireLabels: '=eu' is not KEY=VALUE with a non-empty "
                  "key and value of A-Z a-z 0-9 . _ / : -" },
                { "x.service", HEAD "RequireLabels=ro!e=x\n",
                  "x.service:4: [X-Baton] RequireLabels: 'ro!e=x' is not KEY=VALUE with a "
                  "non-empty key and value of A-Z a-z 0-9 . _ / : -" },
                { "x.service", HEAD "RequireLabels=a=b=c\n",
                  "x.service:4: [X-Baton] RequireLabels: 'a=b=c' is not KEY=VALUE with a non-empty "
                  "key and value of A-Z a-z 0-9 . _ / : -" },
                { "x.service", HEAD "RequireLabels=role=a zone=b role=c\n",
                  "x.service:4: [X-Baton] RequireLabels: label 'role' given twice" },
                { "x.service", HEAD "Spread=r ack\n",
                  "x.service:4: [X-Baton] Spread: 'r ack' is not a label key (A-Z a-z 0-9 . _ / : "
                  "-)" },
                { "x.service", HEAD "Spread=rack=1\n",
                  "x.service:4: [X-Baton] Spread: 'rack=1' is not a label key (A-Z a-z 0-9 . _ / : "
                  "-)" },

                /* Keys. */
                { "s@.service", HEAD "Replicas=2\nReplicas=3\n",
                  "s@.service:5: [X-Baton] Replicas: given twice (first at line 4)" },
                { "s@.service", HEAD "Spread=\n\nSpread=rack\n",
                  "s@.service:6: [X-Baton] Spread: given twice (first at line 4)" },
                { "s@.service", HEAD "replicas=2\n",
                  "s@.service:4: [X-Baton] replicas: unknown key" },
                { "s@.service", HEAD "Max Replicas=2\n",
                  "s@.service:4: [X-Baton] Max Replicas: unknown key" },
                { "s@.service", HEAD "Bogus=1\nHealthyFor=10x\n",
                  "s@.service:4: [X-Baton] Bogus: unknown key" },
                { "s@.service", HEAD "HealthyFor=10x\nBogus=1\n",
                  "s@.service:4: [X-Baton] HealthyFor: '10x' is not a duration" },

                /* Sections and lines. */
                { "s@.service", HEAD "Replicas=2\n[X-Baton]\n",
                  "s@.service:5: [X-Baton] section given twice (first at line 3)" },
                { "s@.service", "[Unit]\nDescription=x\n[X-Baton]\nReplicas=2\n",
                  "s@.service: no [Service] section" },
                { "s@.service", "", "s@.service: no [Service] section" },
                { "s@.service", "[Service\n", "s@.service:1: invalid section header '[Service'" },
                { "s@.service", SVC "[]\n", "s@.service:3: invalid section header '[]'" },
                { "s@.service", SVC "[X-Baton] # c\n",
                  "s@.service:3: invalid section header '[X-Baton] # c'" },
                { "s@.service", "[Servcie]\n",
                  "s@.service:1: unknown section [Servcie] (a service has [Unit], [Service], "
                  "[Install] and [X-...] sections)" },
                { "s@.service", "[service]\n",
                  "s@.service:1: unknown section [service] (a service has [Unit], [Service], "
                  "[Install] and [X-...] sections)" },
                { "s@.service", "[ X-Baton ]\n",
                  "s@.service:1: unknown section [ X-Baton ] (a service has [Unit], [Service], "
                  "[Install] and [X-...] sections)" },
                { "s@.service", SVC "[X-baton]\nReplicas=2\n",
                  "s@.service:3: section [X-baton] is not [X-Baton] (section names are "
                  "case-sensitive)" },
                { "s@.service", SVC "[x-BATON]\n",
                  "s@.service:3: section [x-BATON] is not [X-Baton] (section names are "
                  "case-sensitive)" },
                { "s@.service", "Description=x\n[Service]\n",
                  "s@.service:1: assignment outside of any section" },
                { "s@.service", SVC "garbage\n",
                  "s@.service:3: 'garbage' is not KEY=VALUE, a [Section] header or a comment" },
                { "s@.service", SVC "=foo\n", "s@.service:3: assignment without a key" },
                { "s@.service", HEAD " = 1\n", "s@.service:4: assignment without a key" },
                { "s@.service", SVC "Description=\xff\n", "s@.service:3: not valid UTF-8" },
                { "s@.service", SVC "Description=\xc0\xaf\n", "s@.service:3: not valid UTF-8" },
                { "s@.service", SVC "Description=\xed\xa0\x80\n", "s@.service:3: not valid UTF-8" },
                { "s@.service", SVC "Description=\xf4\x90\x80\x80\n",
                  "s@.service:3: not valid UTF-8" },
                { "s@.service", SVC "# \xe2\x82\n", "s@.service:3: not valid UTF-8" },
                { "s@.service", SVC "Description=\xe2\x82", "s@.service:3: not valid UTF-8" },

                /* Between keys. */
                { "api.service", HEAD "Kind=sharded\nShards=4\n",
                  "api.service:4: [X-Baton] Kind: Kind=sharded needs a template unit "
                  "(api@.service)" },
                { "api.service", HEAD "Kind=stateless\n",
                  "api.service:4: [X-Baton] Kind: Kind=stateless needs a template unit "
                  "(api@.service)" },
                { "g@.service", HEAD "Kind=sharded\n",
                  "g@.service:4: [X-Baton] Shards: required for Kind=sharded" },
                { "g@.service", HEAD "Kind=sharded\nShards=4\nInstances=8\n",
                  "g@.service:6: [X-Baton] Instances=8 is above Shards=4" },
                { "g@.service", HEAD "Instances=8\nShards=4\nKind=sharded\n",
                  "g@.service:5: [X-Baton] Instances=8 is above Shards=4" },
                { "g@.service", HEAD "Kind=sharded\nInstances=6\nReplicas=6\nShards=96\n",
                  "g@.service:6: [X-Baton] Replicas: only for Kind=stateless (this is "
                  "Kind=sharded)" },
                { "g@.service", HEAD "Instances=3\n",
                  "g@.service:4: [X-Baton] Instances: only for Kind=sharded (this is "
                  "Kind=stateless)" },
                { "g@.service", HEAD "MaxReplicas=3\nShards=3\nInstances=3\n",
                  "g@.service:5: [X-Baton] Shards: only for Kind=sharded (this is "
                  "Kind=stateless)" },
                { "g@.service", HEAD "IdentifyInterval=5s\n",
                  "g@.service:4: [X-Baton] IdentifyInterval: only for Kind=sharded (this is "
                  "Kind=stateless)" },
                { "core.service", HEAD "IdentifyConcurrency=1\n",
                  "core.service:4: [X-Baton] IdentifyConcurrency: only for Kind=sharded (this is "
                  "Kind=singleton)" },
                { "g@.service", HEAD "Kind=sharded\nShards=4\nShardChange=live\n",
                  "g@.service:6: [X-Baton] ShardChange: 'live' is not restart or reload" },
                { "g@.service", HEAD "Kind=sharded\nShards=4\nShardChange=reload\n",
                  "g@.service:6: [X-Baton] ShardChange=reload needs ExecReload= in [Service] "
                  "(for example ExecReload=kill -HUP $MAINPID)" },
                { "g@.service", HEAD "ShardChange=restart\n",
                  "g@.service:4: [X-Baton] ShardChange: only for Kind=sharded (this is "
                  "Kind=stateless)" },
                { "core.service", HEAD "Replicas=2\n",
                  "core.service:4: [X-Baton] Replicas: only for Kind=stateless (this is "
                  "Kind=singleton)" },
                { "core.service", HEAD "MaxReplicas=1\n",
                  "core.service:4: [X-Baton] MaxReplicas: only for Kind=stateless and Kind=sharded "
                  "(this is Kind=singleton)" },
                { "db@.service", HEAD "MinReplicas=1\nKind=singleton\n",
                  "db@.service:4: [X-Baton] MinReplicas: only for Kind=stateless and Kind=sharded "
                  "(this is Kind=singleton)" },
                { "g@.service", HEAD "Kind=sharded\nShards=8\nMinReplicas=0\n",
                  "g@.service:6: [X-Baton] MinReplicas: must be at least 1 for Kind=sharded (every "
                  "shard needs an owner)" },
                { "s@.service", HEAD "MinReplicas=5\nMaxReplicas=3\n",
                  "s@.service:5: [X-Baton] MinReplicas=5 is above MaxReplicas=3" },
                { "s@.service", HEAD "MinReplicas=3\n",
                  "s@.service:4: [X-Baton] Replicas=1 (the default) is below MinReplicas=3" },
                { "s@.service", HEAD "Replicas=2\nMinReplicas=3\n",
                  "s@.service:5: [X-Baton] Replicas=2 is below MinReplicas=3" },
                { "s@.service", HEAD "MinReplicas=3\nReplicas=2\n",
                  "s@.service:5: [X-Baton] Replicas=2 is below MinReplicas=3" },
                { "g@.service", HEAD "Kind=sharded\nShards=8\nMaxReplicas=4\nInstances=5\n",
                  "g@.service:7: [X-Baton] Instances=5 is above MaxReplicas=4" },
                { "g@.service", HEAD "Kind=sharded\nShards=8\nMinReplicas=2\n",
                  "g@.service:6: [X-Baton] Instances=1 (the default) is below MinReplicas=2" },
                /* Line errors come before consistency errors, wherever they are. */
                { "api.service", HEAD "Kind=sharded\n[Service]\nnonsense\n",
                  "api.service:6: 'nonsense' is not KEY=VALUE, a [Section] header or a comment" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                parse_bad(cases[i].file, cases[i].text, cases[i].error);
}

TEST(file_names) {
        static const struct {
                const char *file, *error;
        } bad[] = {
                { "gateway", "gateway: not a service unit name (NAME.service or NAME@.service)" },
                { "", ": not a service unit name (NAME.service or NAME@.service)" },
                { ".service", ".service: not a service unit name (NAME.service or NAME@.service)" },
                { "g@1.service",
                  "g@1.service: not a service unit name (NAME.service or NAME@.service)" },
                { "g.socket", "g.socket: not a service unit name (NAME.service or NAME@.service)" },
                { "g.service.d",
                  "g.service.d: not a service unit name (NAME.service or NAME@.service)" },
                { "dir/g.service",
                  "dir/g.service: not a service unit name (NAME.service or NAME@.service)" },
                { "../g.service",
                  "../g.service: not a service unit name (NAME.service or NAME@.service)" },
                { "a b.service",
                  "a b.service: not a service unit name (NAME.service or NAME@.service)" },
                { "\033[31m.service",
                  "?[31m.service: not a service unit name (NAME.service or NAME@.service)" },
                { "\xc3\xa9.service",
                  "??.service: not a service unit name (NAME.service or NAME@.service)" },
        };
        char name[300];
        ServiceSpec *s;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                parse_bad(bad[i].file, SVC, bad[i].error);

        /* Room for a ten-digit ordinal in every instance name. */
        memset(name, 'a', 236);
        strcpy(name + 236, "@.service");
        ASSERT_EQ_UINT(strlen(name), 245);
        s = parse_ok(name, SVC);
        ASSERT_EQ_UINT(strlen(s->name), 236);
        service_spec_free(s);
        memset(name, 'a', 237);
        strcpy(name + 237, "@.service");
        {
                char expected[400];

                snprintf(expected, sizeof(expected),
                         "%s: name too long: its instance names would exceed 255 bytes", name);
                parse_bad(name, SVC, expected);
        }
        /* A plain unit needs no room. */
        memset(name, 'b', 247);
        strcpy(name + 247, ".service");
        s = parse_ok(name, SVC);
        service_spec_free(s);

        s = parse_ok("a-b_c:d.e.service", SVC);
        ASSERT_STREQ(s->name, "a-b_c:d.e");
        service_spec_free(s);
}

TEST(line_endings_and_bom) {
        ServiceSpec *s;

        s = parse_ok("x@.service", "[Service]\r\nExecStart=/bin/true\r\n[X-Baton]\r\n"
                                   "Spread=rack\r\nRequireLabels=a=1 \\\r\n b=2\r\n"
                                   "Replicas=3\r\n");
        ASSERT_STREQ(s->spread, "rack");
        ASSERT_EQ_UINT(s->n_require_labels, 2);
        ASSERT_STREQ(s->require_labels[1].value, "2");
        ASSERT_EQ_UINT(s->count, 3);
        service_spec_free(s);

        /* Old Mac endings count as lines too, as systemd reads them. */
        s = parse_ok("x@.service", "[Service]\rExecStart=/bin/true\r[X-Baton]\rReplicas=3\r");
        ASSERT_EQ_UINT(s->count, 3);
        service_spec_free(s);

        /* No final newline. */
        s = parse_ok("x@.service", HEAD "Replicas=4");
        ASSERT_EQ_UINT(s->count, 4);
        service_spec_free(s);

        /* A byte order mark is not part of the first line. */
        s = parse_ok("x@.service", "\xef\xbb\xbf[Service]\nExecStart=/bin/true\n");
        ASSERT_EQ_INT(s->kind, SERVICE_STATELESS);
        service_spec_free(s);

        parse_bad("x@.service", "[Service]\r\nExecStart=/bin/true\r\n\r\n[X-Baton]\r\nBogus=1\r\n",
                  "x@.service:5: [X-Baton] Bogus: unknown key");
        parse_bad("x@.service", "[Service]\rExecStart=/bin/true\r\n\n[X-Baton]\rBogus=1\r\n",
                  "x@.service:5: [X-Baton] Bogus: unknown key");
        /* Elsewhere it is a character like any other. */
        parse_bad("x@.service", "\xef\xbb\xbf[Service]\n[X-Baton]\n\xef\xbb\xbfReplicas=1\n",
                  "x@.service:3: [X-Baton] \xef\xbb\xbfReplicas: unknown key");
}

TEST(limits) {
        char *text, *p;
        ServiceSpec *s;

        /* The size cap counts the whole text. */
        text = malloc(SPEC_TEXT_MAX + 2);
        ASSERT_NOT_NULL(text);
        p = text + sprintf(text, SVC "# ");
        memset(p, 'c', SPEC_TEXT_MAX - (size_t) (p - text));
        text[SPEC_TEXT_MAX] = '\0';
        s = parse_ok("big.service", text);
        ASSERT_EQ_UINT(strlen(s->unit_text), SPEC_TEXT_MAX);
        service_spec_free(s);
        text[SPEC_TEXT_MAX] = 'c';
        text[SPEC_TEXT_MAX + 1] = '\0';
        parse_bad("big.service", text, "big.service: larger than 256 KiB");
        free(text);

        /* One label too many. */
        text = malloc(4096);
        ASSERT_NOT_NULL(text);
        p = text + sprintf(text, HEAD "RequireLabels=");
        for (unsigned i = 0; i <= SPEC_LABELS_MAX; i++)
                p += sprintf(p, "k%u=v ", i);
        sprintf(p, "\n");
        parse_bad("x.service", text, "x.service:4: [X-Baton] RequireLabels: more than 64 labels");
        free(text);
}

static void check_spec_equal(const ServiceSpec *a, const ServiceSpec *b) {
        ASSERT_STREQ(a->name, b->name);
        ASSERT_STREQ(a->file_name, b->file_name);
        ASSERT_STREQ(a->unit_text, b->unit_text);
        ASSERT_EQ_INT(a->is_template, b->is_template);
        ASSERT_EQ_INT(a->kind, b->kind);
        ASSERT_EQ_UINT(a->count, b->count);
        ASSERT_EQ_UINT(a->shards, b->shards);
        ASSERT_EQ_UINT(a->min_replicas, b->min_replicas);
        ASSERT_EQ_UINT(a->max_replicas, b->max_replicas);
        ASSERT_EQ_UINT(a->max_per_host, b->max_per_host);
        ASSERT_EQ_UINT(a->n_require_labels, b->n_require_labels);
        for (size_t i = 0; i < a->n_require_labels; i++) {
                ASSERT_STREQ(a->require_labels[i].key, b->require_labels[i].key);
                ASSERT_STREQ(a->require_labels[i].value, b->require_labels[i].value);
        }
        ASSERT_TRUE(streq_ptr(a->spread, b->spread));
        ASSERT_EQ_UINT(a->memory, b->memory);
        ASSERT_EQ_UINT(a->max_unavailable, b->max_unavailable);
        ASSERT_EQ_UINT(a->healthy_for, b->healthy_for);
        ASSERT_EQ_UINT(a->health_timeout, b->health_timeout);
        ASSERT_EQ_UINT(a->identify_concurrency, b->identify_concurrency);
        ASSERT_EQ_UINT(a->identify_interval, b->identify_interval);
        ASSERT_EQ_UINT(a->daily_start_budget, b->daily_start_budget);
}

TEST(copy_is_deep) {
        ServiceSpec *s, *c = NULL, *c2 = NULL;

        s = parse_ok("gateway@.service", HEAD "Kind=sharded\nShards=96\nInstances=6\n"
                                              "RequireLabels=role=gw zone=eu\nSpread=rack\n"
                                              "Memory=1G\n");
        ASSERT_OK(service_spec_copy(s, &c));
        ASSERT_NOT_NULL(c);
        check_spec_equal(s, c);
        ASSERT_TRUE(c->name != s->name);
        ASSERT_TRUE(c->require_labels != s->require_labels);
        ASSERT_TRUE(c->require_labels[0].key != s->require_labels[0].key);
        ASSERT_TRUE(c->spread != s->spread);
        ASSERT_TRUE(c->unit_text != s->unit_text);
        service_spec_free(s);
        /* Still whole after the original is gone (ASan would see otherwise). */
        ASSERT_STREQ(c->require_labels[1].value, "eu");
        ASSERT_STREQ(c->spread, "rack");

        /* Without labels or spread. */
        s = parse_ok("core.service", SVC);
        ASSERT_OK(service_spec_copy(s, &c2));
        check_spec_equal(s, c2);
        ASSERT_NULL(c2->require_labels);
        ASSERT_NULL(c2->spread);
        service_spec_free(s);
        service_spec_free(c2);
        service_spec_free(c);
        ASSERT_NULL(service_spec_free(NULL));
}

TEST(instance_unit_names) {
        ServiceSpec *s;
        char *u;

        s = parse_ok("gateway@.service", SVC);
        ASSERT_OK(service_instance_unit(s, 0, &u));
        ASSERT_STREQ(u, "gateway@0.service");
        free(u);
        ASSERT_OK(service_instance_unit(s, 3, &u));
        ASSERT_STREQ(u, "gateway@3.service");
        free(u);
        ASSERT_OK(service_instance_unit(s, UINT32_MAX, &u));
        ASSERT_STREQ(u, "gateway@4294967295.service");
        free(u);
        service_spec_free(s);

        s = parse_ok("core.service", SVC);
        ASSERT_OK(service_instance_unit(s, 0, &u));
        ASSERT_STREQ(u, "core.service");
        free(u);
        service_spec_free(s);
}

/* Parses a range list that must be valid into l (initialised by the caller). */
static void parse_shards(RangeList *l, uint32_t shards, uint32_t n, uint32_t i) {
        char *text = NULL;
        int r;

        ASSERT_OK(service_default_shards(shards, n, i, &text));
        ASSERT_NOT_NULL(text);
        r = rangelist_parse(l, text);
        if (r < 0)
                TAP_FAIL_("S=%" PRIu32 " N=%" PRIu32 " i=%" PRIu32 ": bad range list \"%s\"",
                          shards, n, i, text);
        /* One contiguous range at most, in canonical text. */
        if (l->n_ranges > 1)
                TAP_FAIL_("\"%s\" is not one range", text);
        {
                char *canon = rangelist_format(l);

                ASSERT_STREQ(canon, text);
                free(canon);
        }
        free(text);
}

/* The shares of all n instances: union [0, S), pairwise disjoint (they come
 * in order, each starting where the previous ended), sizes within one. */
static void check_partition(uint32_t shards, uint32_t n) {
        uint64_t next = 0, min_size = UINT64_MAX, max_size = 0;

        for (uint32_t i = 0; i < n; i++) {
                RangeList l;
                uint64_t size;

                rangelist_init(&l);
                parse_shards(&l, shards, n, i);
                size = rangelist_count(&l);
                if (size > 0 && l.ranges[0].lo != next)
                        TAP_FAIL_("S=%" PRIu32 " N=%" PRIu32 " i=%" PRIu32 ": starts at %" PRIu32
                                  ", expected %" PRIu64,
                                  shards, n, i, l.ranges[0].lo, next);
                next += size;
                min_size = MIN(min_size, size);
                max_size = MAX(max_size, size);
                rangelist_done(&l);
        }
        if (next != shards)
                TAP_FAIL_("S=%" PRIu32 " N=%" PRIu32 ": covers %" PRIu64, shards, n, next);
        if (max_size - min_size > 1)
                TAP_FAIL_("S=%" PRIu32 " N=%" PRIu32 ": sizes %" PRIu64 "…%" PRIu64, shards, n,
                          min_size, max_size);
}

static uint64_t rng_state;

static uint64_t rnd(void) {
        /* splitmix64: a fixed seed gives the same cases on every run */
        uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) {
        return n == 0 ? 0 : rnd() % n;
}

static bool chance(unsigned percent) {
        return below(100) < percent;
}

TEST(default_shards_partition) {
        char *text;

        rng_state = 6;
        for (uint32_t shards = 0; shards <= 200; shards++)
                for (uint32_t n = 1; n <= 40; n++)
                        check_partition(shards, n);
        for (unsigned k = 0; k < 200; k++)
                check_partition((uint32_t) below(RANGELIST_MAX_SHARD) + 1,
                                (uint32_t) below(k < 100 ? 64 : 3000) + 1);
        check_partition(RANGELIST_MAX_SHARD, 1);
        check_partition(RANGELIST_MAX_SHARD, 7);
        check_partition(96, 6);

        ASSERT_OK(service_default_shards(96, 6, 0, &text));
        ASSERT_STREQ(text, "0-15");
        free(text);
        ASSERT_OK(service_default_shards(96, 6, 5, &text));
        ASSERT_STREQ(text, "80-95");
        free(text);
        ASSERT_OK(service_default_shards(10, 4, 0, &text));
        ASSERT_STREQ(text, "0-1");
        free(text);
        ASSERT_OK(service_default_shards(10, 4, 1, &text));
        ASSERT_STREQ(text, "2-4");
        free(text);
        ASSERT_OK(service_default_shards(3, 3, 2, &text));
        ASSERT_STREQ(text, "2");
        free(text);
        ASSERT_OK(service_default_shards(2, 5, 0, &text));
        ASSERT_STREQ(text, "");
        free(text);
        /* Products beyond 32 bits. */
        ASSERT_OK(service_default_shards(UINT32_MAX, UINT32_MAX, UINT32_MAX - 1, &text));
        ASSERT_STREQ(text, "4294967294");
        free(text);

        text = NULL;
        ASSERT_ERR(service_default_shards(96, 0, 0, &text), -EINVAL);
        ASSERT_ERR(service_default_shards(96, 6, 6, &text), -EINVAL);
        ASSERT_NULL(text);
}

/* ---- Generated spec files ---------------------------------------------- */

enum {
        K_KIND,
        K_INSTANCES,
        K_REPLICAS,
        K_SHARDS,
        K_MIN_REPLICAS,
        K_MAX_REPLICAS,
        K_MAX_PER_HOST,
        K_REQUIRE_LABELS,
        K_SPREAD,
        K_MEMORY,
        K_MAX_UNAVAILABLE,
        K_HEALTHY_FOR,
        K_HEALTH_TIMEOUT,
        K_IDENTIFY_CONCURRENCY,
        K_IDENTIFY_INTERVAL,
        K_DAILY_START_BUDGET,
        _K_MAX,
};

static const char *const key_names[_K_MAX] = {
        "Kind",
        "Instances",
        "Replicas",
        "Shards",
        "MinReplicas",
        "MaxReplicas",
        "MaxPerHost",
        "RequireLabels",
        "Spread",
        "Memory",
        "MaxUnavailable",
        "HealthyFor",
        "HealthTimeout",
        "IdentifyConcurrency",
        "IdentifyInterval",
        "DailyStartBudget",
};

/* A wrong value for each key, and the reason the parser must give. */
static const struct {
        const char *value, *reason;
} bad_values[_K_MAX] = {
        [K_KIND] = { "shard", "'shard' is not a kind (stateless, singleton, sharded)" },
        [K_INSTANCES] = { "12a", "'12a' is not a number" },
        [K_REPLICAS] = { "-3", "'-3' is not a number" },
        [K_SHARDS] = { "9x", "'9x' is not a number" },
        [K_MIN_REPLICAS] = { "1.5", "'1.5' is not a number" },
        [K_MAX_REPLICAS] = { "4294967296", "'4294967296' is too large (at most 4294967295)" },
        [K_MAX_PER_HOST] = { "two", "'two' is not a number" },
        [K_REQUIRE_LABELS] = { "role", "'role' is not KEY=VALUE" },
        [K_SPREAD] = { "r!", "'r!' is not a label key (A-Z a-z 0-9 . _ / : -)" },
        [K_MEMORY] = { "16X", "'16X' is not a size" },
        [K_MAX_UNAVAILABLE] = { "0", "'0' is too small (at least 1)" },
        [K_HEALTHY_FOR] = { "10x", "'10x' is not a duration" },
        [K_HEALTH_TIMEOUT] = { "infinity", "must be finite" },
        [K_IDENTIFY_CONCURRENCY] = { "65537", "'65537' is too large (at most 65536)" },
        [K_IDENTIFY_INTERVAL] = { "5ss", "'5ss' is not a duration" },
        [K_DAILY_START_BUDGET] = { "", "empty value" },
};

#define ENTRIES_MAX 96
#define ENTRY_MAX 1200

/* One logical line: physical lines joined by '\n' (the generator writes the
 * backslashes), without the final end of line. */
typedef struct Entry {
        char text[ENTRY_MAX];
        int key; /* K_*, or -1 for anything that is not an [X-Baton] key */
} Entry;

typedef struct Gen {
        char file[64];
        const char *eol;
        Entry entries[ENTRIES_MAX];
        size_t n_entries;
        size_t xb_begin, xb_end; /* [X-Baton] keys are entries [begin, end) */
        bool has_xbaton;
        unsigned lines[ENTRIES_MAX]; /* first line of each entry, after gen_write() */

        ServiceSpec want; /* what parsing must give; strings point into the buffers below */
        SpecLabel labels[8];
        char label_text[8][2][24];
        char spread[24];
} Gen;

static Entry *gen_insert(Gen *g, size_t at, int key, const char *fmt, ...) _printf_(4, 5);
static Entry *gen_insert(Gen *g, size_t at, int key, const char *fmt, ...) {
        va_list ap;
        Entry *e;

        if (g->n_entries >= ENTRIES_MAX)
                TAP_FAIL_("too many entries");
        memmove(&g->entries[at + 1], &g->entries[at], (g->n_entries - at) * sizeof(Entry));
        g->n_entries++;
        e = &g->entries[at];
        e->key = key;
        va_start(ap, fmt);
        vsnprintf(e->text, sizeof(e->text), fmt, ap);
        va_end(ap);
        return e;
}

#define gen_add(g, key, ...) gen_insert((g), (g)->n_entries, (key), __VA_ARGS__)

static void gen_noise(Gen *g) {
        static const char *const noise[] = {
                "",
                "# a comment",
                "; another comment",
                "   # indented comment",
                "#",
                "\t",
                "# Replicas=999 is commented out",
        };

        while (chance(25))
                gen_add(g, -1, "%s", noise[below(ELEMENTSOF(noise))]);
}

/* Small values, the edges and anything between, in roughly equal shares. */
static uint64_t pick(uint64_t lo, uint64_t hi) {
        switch (below(5)) {
        case 0:
                return lo;
        case 1:
                return hi;
        case 2:
                return lo + below(MIN(hi - lo, (uint64_t) 10) + 1);
        default:
                return hi - lo == UINT64_MAX ? rnd() : lo + below(hi - lo + 1);
        }
}

static void random_label_word(char *buf, size_t len) {
        static const char chars[] =
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:-";
        size_t n = 1 + below(len - 1);

        for (size_t i = 0; i < n; i++)
                buf[i] = chars[below(sizeof(chars) - 1)];
        buf[n] = '\0';
}

static void gen_key(Gen *g, int key, const char *value) {
        static const char *const seps[] = { "=", " = ", "\t=\t", "  =", "= " };

        gen_add(g, key, "%s%s%s%s%s", chance(10) ? "  " : "", key_names[key],
                seps[below(ELEMENTSOF(seps))], value, chance(15) ? "    # trailing note" : "");
}

static void gen_uint(Gen *g, int key, uint64_t v) {
        char buf[32];

        snprintf(buf, sizeof(buf), "%s%" PRIu64, chance(10) ? "00" : "", v);
        gen_key(g, key, buf);
}

static void gen_duration(Gen *g, int key, usec_t u) {
        char buf[DURATION_MAX_LEN + 8];

        unsigned form = (unsigned) below(4);

        if (form == 0)
                snprintf(buf, sizeof(buf), "%" PRIu64 "us", u);
        else if (form == 1 && u % USEC_PER_SEC == 0) /* a bare number is seconds */
                snprintf(buf, sizeof(buf), "%" PRIu64, (uint64_t) (u / USEC_PER_SEC));
        else
                duration_format(buf, sizeof(buf), u);
        gen_key(g, key, buf);
}

static void gen_size(Gen *g, int key, uint64_t v) {
        char buf[SIZE_MAX_LEN + 8];

        if (v % 1024 == 0 && chance(30))
                snprintf(buf, sizeof(buf), "%" PRIu64 "K", v / 1024);
        else if (chance(30))
                snprintf(buf, sizeof(buf), "%" PRIu64, v);
        else {
                size_format(buf, sizeof(buf), v);
                if (buf[strspn(buf, "0123456789")] != '\0' && chance(30))
                        strcat(buf, "iB");
        }
        gen_key(g, key, buf);
}

static usec_t pick_duration(usec_t lo) {
        usec_t u; /* MAX() evaluates twice: draw first */

        switch (below(4)) {
        case 0:
                u = below(120) * USEC_PER_SEC;
                break;
        case 1:
                u = below(10000) * USEC_PER_MSEC;
                break;
        default:
                u = pick(lo, SPEC_DURATION_MAX);
        }
        return MAX(lo, u);
}

static void gen_labels(Gen *g) {
        static const char *const seps[] = { " ", "  ", "\t", " \\\n   ", "\\\n\t" };
        char value[ENTRY_MAX] = "";
        size_t n = below(6);

        for (size_t i = 0; i < n; i++) {
                char *k = g->label_text[i][0], *v = g->label_text[i][1];

                /* Keys distinct by their index. */
                random_label_word(k, 12);
                snprintf(k + strlen(k), 8, "%u", (unsigned) (i % 10));
                random_label_word(v, 16);
                g->labels[i] = (SpecLabel){ .key = k, .value = v };
                if (i > 0)
                        strcat(value, seps[below(ELEMENTSOF(seps))]);
                strcat(value, k);
                strcat(value, "=");
                strcat(value, v);
        }
        g->want.require_labels = n > 0 ? g->labels : NULL;
        g->want.n_require_labels = n;
        gen_key(g, K_REQUIRE_LABELS, value);
}

/* The [X-Baton] keys of a random valid spec, in a random order, and what
 * parsing them must give. */
static void gen_xbaton(Gen *g, bool kind_given) {
        ServiceSpec *w = &g->want;
        size_t begin = g->n_entries;

        if (w->kind == SERVICE_STATELESS) {
                if (chance(70)) {
                        w->count = (uint32_t) pick(0, chance(90) ? 50 : SPEC_COUNT_MAX);
                        gen_uint(g, K_REPLICAS, w->count);
                }
        } else if (w->kind == SERVICE_SHARDED) {
                if (chance(70)) {
                        w->count = (uint32_t) pick(1, chance(90) ? 64 : SPEC_COUNT_MAX);
                        gen_uint(g, K_INSTANCES, w->count);
                }
                w->shards = (uint32_t) pick(w->count, chance(80) ? MAX(w->count, 5000u)
                                                                 : RANGELIST_MAX_SHARD);
                gen_uint(g, K_SHARDS, w->shards);
                w->min_replicas = 1;
        }
        if (w->kind != SERVICE_SINGLETON) {
                if (chance(50)) {
                        w->min_replicas = (uint32_t) pick(w->kind == SERVICE_SHARDED, w->count);
                        gen_uint(g, K_MIN_REPLICAS, w->min_replicas);
                }
                if (chance(50)) {
                        w->max_replicas = (uint32_t) pick(MAX(w->count, 1u), UINT32_MAX);
                        gen_uint(g, K_MAX_REPLICAS, w->max_replicas);
                }
        }
        if (chance(40)) {
                w->max_per_host = (uint32_t) pick(0, UINT32_MAX);
                gen_uint(g, K_MAX_PER_HOST, w->max_per_host);
        }
        if (chance(40))
                gen_labels(g);
        if (chance(40)) {
                if (chance(25))
                        gen_key(g, K_SPREAD, "");
                else {
                        random_label_word(g->spread, sizeof(g->spread));
                        w->spread = g->spread;
                        gen_key(g, K_SPREAD, g->spread);
                }
        }
        if (chance(40)) {
                w->memory = chance(50) ? pick(0, SPEC_MEMORY_MAX)
                                       : below(1 << 20) << (10 * below(4)); /* < SPEC_MEMORY_MAX */
                gen_size(g, K_MEMORY, w->memory);
        }
        if (chance(40)) {
                w->max_unavailable = (uint32_t) pick(1, UINT32_MAX);
                gen_uint(g, K_MAX_UNAVAILABLE, w->max_unavailable);
        }
        if (chance(40)) {
                w->healthy_for = pick_duration(0);
                gen_duration(g, K_HEALTHY_FOR, w->healthy_for);
        }
        if (chance(40)) {
                w->health_timeout = pick_duration(1);
                gen_duration(g, K_HEALTH_TIMEOUT, w->health_timeout);
        }
        if (w->kind == SERVICE_SHARDED && chance(50)) {
                w->identify_concurrency = (uint32_t) pick(1, SPEC_COUNT_MAX);
                gen_uint(g, K_IDENTIFY_CONCURRENCY, w->identify_concurrency);
        }
        if (w->kind == SERVICE_SHARDED && chance(50)) {
                w->identify_interval = pick_duration(1);
                gen_duration(g, K_IDENTIFY_INTERVAL, w->identify_interval);
        }
        if (chance(40)) {
                w->daily_start_budget = (uint32_t) pick(0, UINT32_MAX);
                gen_uint(g, K_DAILY_START_BUDGET, w->daily_start_budget);
        }

        /* Kind= somewhere, when it was chosen rather than defaulted. */
        if (kind_given)
                gen_insert(g, begin + below(g->n_entries - begin + 1), K_KIND, "Kind=%s",
                           service_kind_to_string(w->kind));

        /* Shuffle, then sprinkle comments and blank lines between. */
        for (size_t i = g->n_entries - begin; i > 1; i--) {
                size_t j = below(i);
                Entry t = g->entries[begin + i - 1];

                g->entries[begin + i - 1] = g->entries[begin + j];
                g->entries[begin + j] = t;
        }
        for (size_t n = g->n_entries - begin, i = 0; i < n; i++)
                if (chance(20))
                        gen_insert(g, begin + below(g->n_entries - begin + 1), -1, "%s",
                                   chance(50) ? "" : "# note");
}

static void gen_spec(Gen *g) {
        static const char *const eols[] = { "\n", "\n", "\r\n", "\r" };
        enum {
                S_UNIT,
                S_SERVICE,
                S_XBATON,
                S_INSTALL,
                S_OTHER,
                _S_MAX
        };
        int order[_S_MAX] = { S_UNIT, S_SERVICE, S_XBATON, S_INSTALL, S_OTHER };
        bool kind_given = chance(60), is_template;
        ServiceKind kind = (ServiceKind) below(_SERVICE_KIND_MAX);

        memset(g, 0, sizeof(*g));
        g->eol = eols[below(ELEMENTSOF(eols))];

        if (kind_given)
                is_template = kind != SERVICE_SINGLETON || chance(50);
        else {
                is_template = chance(50);
                kind = is_template ? SERVICE_STATELESS : SERVICE_SINGLETON;
        }
        snprintf(g->file, sizeof(g->file), "svc-%u%s.service", (unsigned) below(1000),
                 is_template ? "@" : "");
        g->want = (ServiceSpec){
                .file_name = g->file,
                .is_template = is_template,
                .kind = kind,
                .count = 1,
                .max_replicas = UINT32_MAX,
                .max_unavailable = 1,
                .healthy_for = 10 * SEC,
                .health_timeout = 15 * MINUTE,
                .identify_concurrency = 1,
                .identify_interval = 5 * SEC,
                .daily_start_budget = 1000,
        };

        for (int i = _S_MAX; i > 1; i--) {
                int j = (int) below((uint64_t) i), t = order[i - 1];
                order[i - 1] = order[j];
                order[j] = t;
        }

        gen_noise(g);
        for (int i = 0; i < _S_MAX; i++)
                switch (order[i]) {
                case S_UNIT:
                        if (chance(70)) {
                                gen_add(g, -1, "[Unit]");
                                gen_add(g, -1, "Description=generated # not a comment here");
                                gen_add(g, -1, "After=network.target");
                                gen_noise(g);
                        }
                        break;
                case S_SERVICE:
                        gen_add(g, -1, "[Service]");
                        gen_add(g, -1, "ExecStartPre=/bin/true");
                        gen_add(g, -1, "ExecStartPre=/bin/true");
                        gen_add(g, -1, "ExecStart=/usr/bin/app --flag=1 \\\n    --other");
                        gen_add(g, -1, "Environment=A=1 \\\n# skipped \\\n  B=2");
                        gen_noise(g);
                        break;
                case S_XBATON:
                        g->has_xbaton = kind_given || chance(90);
                        if (!g->has_xbaton)
                                break;
                        gen_add(g, -1, "[X-Baton]");
                        g->xb_begin = g->n_entries;
                        gen_xbaton(g, kind_given);
                        g->xb_end = g->n_entries;
                        gen_noise(g);
                        break;
                case S_INSTALL:
                        if (chance(50))
                                gen_add(g, -1, "[Install]\nWantedBy=multi-user.target");
                        break;
                case S_OTHER:
                        if (chance(30))
                                gen_add(g, -1, "[X-Other]\nReplicass=7\nKind=bogus");
                        break;
                default:
                        break;
                }
}

/* The file text; records the first line of every entry. The caller frees. */
static char *gen_write(Gen *g) {
        size_t cap = ENTRIES_MAX * (ENTRY_MAX + 16) + 1, len = 0;
        char *text = malloc(cap);
        unsigned line = 1;

        ASSERT_NOT_NULL(text);
        for (size_t i = 0; i < g->n_entries; i++) {
                g->lines[i] = line;
                for (const char *c = g->entries[i].text; *c; c++)
                        if (*c == '\n') {
                                len += (size_t) sprintf(text + len, "%s", g->eol);
                                line++;
                        } else
                                text[len++] = *c;
                /* Sometimes no end of line at the very end. */
                if (i + 1 < g->n_entries || chance(80)) {
                        len += (size_t) sprintf(text + len, "%s", g->eol);
                        line++;
                }
        }
        text[len] = '\0';
        return text;
}

static void check_generated(Gen *g, const char *text) {
        ServiceSpec *s;
        char name[64];

        if (getenv("SPEC_DEBUG"))
                printf("%s\n", text);
        s = parse_ok(g->file, text);

        snprintf(name, sizeof(name), "%.*s", (int) strcspn(g->file, "@."), g->file);
        g->want.name = name;
        g->want.unit_text = (char *) text;
        check_spec_equal(s, &g->want);
        service_spec_free(s);
}

TEST(systemd_hash_ignores_x_sections) {
        const char *a = "[Unit]\nDescription=gw\n[Service]\nExecStart=/bin/gw\n"
                        "[X-Baton]\nKind=sharded\nInstances=6\nShards=96\n";
        const char *b = "[Unit]\nDescription=gw\n[Service]\nExecStart=/bin/gw\n"
                        "[X-Baton]\nKind=sharded\nInstances=7\nShards=96\nMaxPerHost=2\n";
        const char *c = "[Unit]\nDescription=gw\n[Service]\nExecStart=/bin/gw2\n"
                        "[X-Baton]\nKind=sharded\nInstances=6\nShards=96\n";
        const char *d = "[Unit]\nDescription=gw\n[X-Baton]\nKind=sharded\n"
                        "[Service]\nExecStart=/bin/gw\n[X-Other]\nA=1\n";
        const char *e = "[Unit]\nDescription=gw\n[X-Baton]\nKind=stateless\n"
                        "  [Service]\nExecStart=/bin/gw\n";

        ASSERT_TRUE(spec_systemd_hash(a) == spec_systemd_hash(b));
        ASSERT_TRUE(spec_systemd_hash(a) != spec_systemd_hash(c));
        /* X- sections anywhere, and what follows them counts again. */
        ASSERT_TRUE(spec_systemd_hash(a) == spec_systemd_hash(d));
        ASSERT_TRUE(spec_systemd_hash(d) != spec_systemd_hash(e));
        ASSERT_TRUE(spec_systemd_hash("") == spec_systemd_hash(NULL));
        ASSERT_TRUE(spec_systemd_hash("[Service]\nA=1") != spec_systemd_hash("[Service]\nA=2"));
}

TEST(random_round_trip) {
        rng_state = 1;
        for (unsigned iter = 0; iter < 20000; iter++) {
                Gen *g = malloc(sizeof(Gen));
                char *text;

                ASSERT_NOT_NULL(g);
                gen_spec(g);
                text = gen_write(g);
                check_generated(g, text);
                free(text);
                free(g);
        }
}

/* A valid generated file with one mistake put in: the error must name the
 * mistake's exact line, whatever surrounds it. */
TEST(random_errors_name_their_line) {
        unsigned counts[4] = { 0 };

        rng_state = 2;
        for (unsigned iter = 0; iter < 20000; iter++) {
                Gen *g = malloc(sizeof(Gen));
                char expected[512], *text;
                size_t at, src;
                int kind = (int) below(4);

                ASSERT_NOT_NULL(g);
                gen_spec(g);

                if (kind < 3 && !g->has_xbaton)
                        kind = 3;
                if ((kind == 1 || kind == 2) && g->xb_begin == g->xb_end)
                        kind = 0;
                /* Only keys, not comments, can be repeated or broken. */
                src = g->xb_begin;
                if (kind == 1 || kind == 2) {
                        size_t n = 0;

                        for (size_t i = g->xb_begin; i < g->xb_end; i++)
                                if (g->entries[i].key >= 0 && below(++n) == 0)
                                        src = i;
                        if (n == 0)
                                kind = 0;
                }
                counts[kind]++;

                switch (kind) {
                case 0: /* an unknown key */
                        at = g->xb_begin + below(g->xb_end - g->xb_begin + 1);
                        gen_insert(g, at, -1, "Replicass = 3");
                        text = gen_write(g);
                        snprintf(expected, sizeof(expected),
                                 "%s:%u: [X-Baton] Replicass: unknown key", g->file, g->lines[at]);
                        break;
                case 1: { /* a key given twice */
                        int key = g->entries[src].key;

                        at = src + 1 + below(g->xb_end - src);
                        gen_insert(g, at, key, "%s", g->entries[src].text);
                        text = gen_write(g);
                        snprintf(expected, sizeof(expected),
                                 "%s:%u: [X-Baton] %s: given twice (first at line %u)", g->file,
                                 g->lines[at], key_names[key], g->lines[src]);
                        break;
                }
                case 2: { /* a bad value */
                        int key = g->entries[src].key;

                        at = src;
                        snprintf(g->entries[at].text, ENTRY_MAX, "%s=%s", key_names[key],
                                 bad_values[key].value);
                        text = gen_write(g);
                        snprintf(expected, sizeof(expected), "%s:%u: [X-Baton] %s: %s", g->file,
                                 g->lines[at], key_names[key], bad_values[key].reason);
                        break;
                }
                default: /* a line that is not a line */
                        at = below(g->n_entries + 1);
                        gen_insert(g, at, -1, "this line has no equals sign");
                        text = gen_write(g);
                        snprintf(expected, sizeof(expected),
                                 "%s:%u: 'this line has no equals sign' is not KEY=VALUE, a "
                                 "[Section] header or a comment",
                                 g->file, g->lines[at]);
                        break;
                }

                parse_bad(g->file, text, expected);
                free(text);
                free(g);
        }
        for (size_t i = 0; i < ELEMENTSOF(counts); i++)
                ASSERT_GE_UINT(counts[i], 1000);
}

static bool label_ok(const char *s) {
        return !isempty(s) && s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789._/:-")] == '\0';
}

/* What every accepted spec guarantees to the planner, however odd the text. */
static void check_invariants(const char *file, const char *text, const ServiceSpec *s) {
        ASSERT_STREQ(s->file_name, file);
        ASSERT_STREQ(s->unit_text, text);
        ASSERT_EQ_INT(s->is_template, strchr(file, '@') != NULL);
        ASSERT_TRUE(s->kind >= 0 && s->kind < _SERVICE_KIND_MAX);
        if (s->kind != SERVICE_SINGLETON)
                ASSERT_TRUE(s->is_template);
        switch (s->kind) {
        case SERVICE_SINGLETON:
                ASSERT_EQ_UINT(s->count, 1);
                ASSERT_EQ_UINT(s->shards, 0);
                break;
        case SERVICE_STATELESS:
                ASSERT_LE_UINT(s->count, SPEC_COUNT_MAX);
                ASSERT_EQ_UINT(s->shards, 0);
                break;
        default:
                ASSERT_GE_UINT(s->count, 1);
                ASSERT_LE_UINT(s->count, s->shards);
                ASSERT_LE_UINT(s->shards, RANGELIST_MAX_SHARD);
                ASSERT_GE_UINT(s->min_replicas, 1);
                break;
        }
        ASSERT_LE_UINT(s->min_replicas, s->count);
        ASSERT_LE_UINT(s->count, s->max_replicas);
        ASSERT_GE_UINT(s->max_unavailable, 1);
        ASSERT_GE_UINT(s->identify_concurrency, 1);
        ASSERT_LE_UINT(s->identify_concurrency, SPEC_COUNT_MAX);
        ASSERT_GE_UINT(s->identify_interval, 1);
        ASSERT_GE_UINT(s->health_timeout, 1);
        ASSERT_LE_UINT(s->identify_interval, SPEC_DURATION_MAX);
        ASSERT_LE_UINT(s->health_timeout, SPEC_DURATION_MAX);
        ASSERT_LE_UINT(s->healthy_for, SPEC_DURATION_MAX);
        ASSERT_LE_UINT(s->memory, SPEC_MEMORY_MAX);
        ASSERT_LE_UINT(s->n_require_labels, SPEC_LABELS_MAX);
        ASSERT_EQ_INT(s->n_require_labels == 0, s->require_labels == NULL);
        for (size_t i = 0; i < s->n_require_labels; i++) {
                ASSERT_TRUE(label_ok(s->require_labels[i].key));
                ASSERT_TRUE(label_ok(s->require_labels[i].value));
                for (size_t j = 0; j < i; j++)
                        ASSERT_FALSE(streq(s->require_labels[i].key, s->require_labels[j].key));
        }
        ASSERT_TRUE(!s->spread || label_ok(s->spread));
}

/* Generated files with random bytes changed: accepted ones keep every
 * invariant, refused ones have a printable "FILE:…" message. */
TEST(random_mutations) {
        static const char pieces[] = "=[]#;\\\r\n \tx0159@-.:/\xff\xc3\xa9";
        unsigned n_ok = 0, n_bad = 0;

        rng_state = 3;
        for (unsigned iter = 0; iter < 20000; iter++) {
                Gen *g = malloc(sizeof(Gen));
                ServiceSpec *s = NULL;
                char *text, *error = NULL;
                size_t len;
                int r;

                ASSERT_NOT_NULL(g);
                gen_spec(g);
                text = gen_write(g);
                len = strlen(text);
                for (unsigned k = 1 + (unsigned) below(4); k > 0 && len > 0; k--)
                        text[below(len)] = pieces[below(sizeof(pieces) - 1)];

                r = spec_parse(g->file, text, &s, &error);
                if (r >= 0) {
                        n_ok++;
                        ASSERT_NULL(error);
                        check_invariants(g->file, text, s);
                        service_spec_free(s);
                } else {
                        n_bad++;
                        ASSERT_ERR(r, -EINVAL);
                        ASSERT_NULL(s);
                        ASSERT_NOT_NULL(error);
                        ASSERT_TRUE(strncmp(error, g->file, strlen(g->file)) == 0);
                        ASSERT_TRUE(error[strlen(g->file)] == ':');
                        for (const char *c = error; *c; c++)
                                ASSERT_TRUE((unsigned char) *c >= 0x20 && *c != 0x7f);
                        ASSERT_LE_UINT(strlen(error), 400);
                        free(error);
                }
                free(text);
                free(g);
        }
        /* Both sides were exercised. */
        ASSERT_GE_UINT(n_ok, 1000);
        ASSERT_GE_UINT(n_bad, 1000);
}

int main(void) {
        return tap_run(TESTS(kind_table, design_example, defaults_per_kind, every_key_value,
                             shard_change, labels_and_spread, systemd_sections_untouched,
                             continuation_lines, error_messages, file_names, line_endings_and_bom,
                             limits, copy_is_deep, instance_unit_names, default_shards_partition,
                             systemd_hash_ignores_x_sections, random_round_trip,
                             random_errors_name_their_line, random_mutations));
}
