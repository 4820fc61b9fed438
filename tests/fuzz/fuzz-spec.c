/* SPDX-License-Identifier: MIT */
/* spec_parse on arbitrary bytes, as a template, as a plain unit and as the
 * inside of an [X-Baton] section: never crash or leak; an accepted spec keeps
 * the invariants the planner relies on and survives a copy; a refused one
 * has a "FILE:…" message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rangelist.h"
#include "spec.h"

/* Whole lines and pieces of the unit-file syntax, so that inputs reach the
 * [X-Baton] keys and the rules between them. */
const char *const fuzz_tokens[] = {
        "[Service]\n",
        "[X-Baton]\n",
        "[Unit]\n",
        "[Install]\n",
        "[X-Other]\n",
        "[X-baton]\n",
        "ExecStart=/bin/true\n",
        "ExecStartPre=/bin/true\n",
        "Kind=sharded\n",
        "Kind=stateless\n",
        "Kind=singleton\n",
        "Instances=6\n",
        "Replicas=4\n",
        "Replicas=0\n",
        "Shards=96\n",
        "Shards=16777216\n",
        "MinReplicas=2\n",
        "MaxReplicas=12\n",
        "MaxPerHost=1\n",
        "RequireLabels=role=gateway zone=eu\n",
        "RequireLabels=role=a role=b\n",
        "Spread=rack\n",
        "Memory=16G\n",
        "MaxUnavailable=1\n",
        "HealthyFor=10s\n",
        "HealthTimeout=15min\n",
        "IdentifyConcurrency=16\n",
        "IdentifyInterval=5s\n",
        "DailyStartBudget=1000\n",
        "Replicass=3\n",
        " # comment\n",
        "; comment\n",
        "\\\n",
        " \\\r\n",
        "\r\n",
        "\r",
        " = ",
        "\xef\xbb\xbf",
        "\xc3\xa9",
        "\xff",
        "infinity",
        "65536",
        "65537",
};
const size_t fuzz_n_tokens = sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]);

static void check(const ServiceSpec *s) {
        ServiceSpec *c = NULL;
        char *unit = NULL;

        if (s->kind < 0 || s->kind >= _SERVICE_KIND_MAX)
                abort();
        if (s->kind != SERVICE_SINGLETON && !s->is_template)
                abort();
        if (s->min_replicas > s->count || s->count > s->max_replicas)
                abort();
        if (s->kind == SERVICE_SINGLETON && s->count != 1)
                abort();
        if (s->kind == SERVICE_SHARDED &&
            (s->count < 1 || s->count > s->shards || s->shards > RANGELIST_MAX_SHARD))
                abort();
        if (s->max_unavailable < 1 || s->identify_concurrency < 1 || s->identify_interval < 1 ||
            s->health_timeout < 1)
                abort();
        if (s->healthy_for > SPEC_DURATION_MAX || s->health_timeout > SPEC_DURATION_MAX ||
            s->identify_interval > SPEC_DURATION_MAX || s->memory > SPEC_MEMORY_MAX)
                abort();
        if (s->n_require_labels > SPEC_LABELS_MAX)
                abort();

        if (service_spec_copy(s, &c) < 0)
                return;
        if (strcmp(c->unit_text, s->unit_text) != 0 || c->count != s->count ||
            c->n_require_labels != s->n_require_labels || (s->spread && !c->spread))
                abort();
        for (size_t i = 0; i < s->n_require_labels; i++)
                if (strcmp(c->require_labels[i].key, s->require_labels[i].key) != 0 ||
                    strcmp(c->require_labels[i].value, s->require_labels[i].value) != 0)
                        abort();
        service_spec_free(c);

        if (service_instance_unit(s, s->count, &unit) >= 0)
                free(unit);
        if (s->kind == SERVICE_SHARDED)
                for (uint32_t i = 0; i < s->count && i < 4; i++) {
                        char *shards = NULL;

                        if (service_default_shards(s->shards, s->count, i, &shards) < 0)
                                abort();
                        free(shards);
                }
}

static void parse_as(const char *file, const char *text) {
        ServiceSpec *s = NULL;
        char *error = NULL;
        int r;

        r = spec_parse(file, text, &s, &error);
        if (r >= 0) {
                if (!s || error)
                        abort();
                check(s);
                service_spec_free(s);
                return;
        }
        if (s)
                abort();
        if (r == -EINVAL && (!error || strncmp(error, file, strlen(file)) != 0))
                abort();
        free(error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text;

        if (size > SPEC_TEXT_MAX + 1)
                return 0;
        text = fuzz_strdup(data, size);
        if (!text)
                return 0;

        parse_as("x@.service", text);
        parse_as("x.service", text);

        /* Once more inside [X-Baton], where most of the rules are: random
         * inputs rarely build the sections themselves. */
        {
                static const char head[] = "[Service]\n[X-Baton]\n";
                char *inside = malloc(sizeof(head) + size);

                if (inside) {
                        memcpy(inside, head, sizeof(head) - 1);
                        strcpy(inside + sizeof(head) - 1, text);
                        parse_as("x@.service", inside);
                        free(inside);
                }
        }

        free(text);
        return 0;
}
