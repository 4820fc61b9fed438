/* SPDX-License-Identifier: MIT */
/* The INI config layer on arbitrary bytes: loading never crashes or leaks,
 * every error has a "NAME:…" message, and a loaded config dumps to text that
 * loads back to the same dump. Also config_set() with the first line. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

/* Whole lines, so that loads succeed often enough to test the dump. */
const char *const fuzz_tokens[] = {
        "[broker]\n",
        "[agent]\n",
        "[ agent ]\n",
        "[other]\n",
        "host = h1\n",
        "host=\n",
        "host = a;b ;c\n",
        "url = amqp://u:p@h:5672/v\n",
        "url = #x\n",
        "heartbeat = 5s\n",
        "heartbeat = 1h 30min\n",
        "heartbeat = infinity\n",
        "heartbeat = 0\n",
        "verify = no\n",
        "verify = maybe\n",
        "prefetch = 1000\n",
        "prefetch = 0\n",
        "memory = 16G\n",
        "memory = 1.5K\n",
        "globs = a* b?\n",
        "globs = X\n",
        "; c\n",
        "# c\n",
        "\n",
        "  indented = 1\n",
        "junk\n",
        "=v\n",
        "broker.url=x",
        "agent.host=",
        "\r\n",
        "\0",
};
const size_t fuzz_n_tokens = sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]);

typedef struct FuzzConfig {
        char *url;
        uint64_t heartbeat;
        bool verify;
        uint64_t prefetch;
        uint64_t memory;
        char *host;
        char *globs;
} FuzzConfig;

static int validate_no_x(const void *field, char **ret_error) {
        if (strchr(*(char *const *) field, 'X')) {
                *ret_error = strdup("no X allowed");
                return -EINVAL;
        }
        return 0;
}

#define OPT(sec, key, type, field, def, min, max, flags, validate)                                 \
        { sec, key, type, offsetof(FuzzConfig, field), def, min, max, flags, validate, NULL }

static const ConfigOption table[] = {
        OPT("broker", "url", CONFIG_STRING, url, "amqp://localhost", 0, 0, 0, NULL),
        OPT("broker", "heartbeat", CONFIG_DURATION, heartbeat, "10s", 1000, 0, 0, NULL),
        OPT("broker", "verify", CONFIG_BOOL, verify, "yes", 0, 0, 0, NULL),
        OPT("broker", "prefetch", CONFIG_UINT, prefetch, "16", 1, 1000, 0, NULL),
        OPT("agent", "memory", CONFIG_SIZE, memory, NULL, 0, 0, 0, NULL),
        OPT("agent", "host", CONFIG_STRING, host, NULL, 0, 0, CONFIG_REQUIRED, NULL),
        OPT("agent", "globs", CONFIG_STRING, globs, NULL, 0, 0, 0, validate_no_x),
};
#define N_OPTIONS (sizeof(table) / sizeof(table[0]))

static char *dump(const FuzzConfig *c) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        if (!f)
                return NULL;
        if (config_dump(table, N_OPTIONS, c, f) < 0)
                abort();
        fclose(f);
        return out;
}

/* A dumped line longer than inih's limit cannot load back: not a bug. */
static int has_long_line(const char *s) {
        for (const char *p = s; *p;) {
                size_t n = strcspn(p, "\n");

                if (n > 190)
                        return 1;
                p += n + (p[n] == '\n');
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FuzzConfig c = { 0 }, d = { 0 };
        char *err = NULL, *first, *a, *b;
        const uint8_t *nl;
        int r;

        if (size > 16384)
                return 0;

        r = config_load_string(table, N_OPTIONS, &c, "fuzz", (const char *) data, size, &err);
        if (r < 0) {
                if (r != -ENOMEM && (!err || strncmp(err, "fuzz", 4) != 0))
                        abort();
        } else {
                if (err || !c.host || !c.host[0])
                        abort();
                a = dump(&c);
                if (a && !has_long_line(a)) {
                        free(err);
                        err = NULL;
                        if (config_load_string(table, N_OPTIONS, &d, "dump", a, strlen(a), &err) <
                            0)
                                abort();
                        b = dump(&d);
                        if (b && strcmp(a, b) != 0)
                                abort();
                        free(b);
                }
                free(a);
        }
        free(err);
        err = NULL;

        /* The first line as a command-line override. */
        nl = memchr(data, '\n', size);
        first = strndup((const char *) data, nl ? (size_t) (nl - data) : size);
        if (first) {
                r = config_set(table, N_OPTIONS, &c, first, &err);
                if (r < 0 && r != -ENOMEM && (!err || strncmp(err, "override '", 10) != 0))
                        abort();
                free(first);
        }
        free(err);

        config_done(table, N_OPTIONS, &c);
        config_done(table, N_OPTIONS, &d);
        return 0;
}
