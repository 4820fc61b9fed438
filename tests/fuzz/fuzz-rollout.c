/* SPDX-License-Identifier: MIT */
/* Rolling restarts: rollout_parse() on arbitrary bytes (the controller's
 * store text) never crashes, accepts one spelling per rollout and no proper
 * prefix of it. The bytes also drive a rollout (health reports, the clock,
 * operator controls, a small action buffer now and then); every state
 * reached must store and load, an instance is restarted once per attempt,
 * and replaying a step after a crash issues no restart twice. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "rollout.h"

#define N_MAX 8

const char *const fuzz_tokens[] = {
        "baton-rollout/1",
        "baton-rollout/1 service=gateway id=42 state=running max_unavailable=1 "
        "healthy_for=10000000 health_timeout=900000000 alert=0 items=3 0:done:1000:2000:1 "
        "1:restarting:3000:0:1 2:pending:0:0:0 reason=-",
        " service=",
        " id=",
        " state=",
        "running",
        "paused",
        "done",
        "failed",
        "aborted",
        " max_unavailable=",
        " healthy_for=",
        " health_timeout=",
        " alert=",
        " items=",
        ":pending:",
        ":restarting:",
        ":settling:",
        ":done:",
        ":failed:",
        " reason=-",
        " reason=\"",
        "\\x01",
        "\\n",
        "\\\"",
        "0",
        "1",
        "2",
        "18446744073709551615",
        "65536",
        "65537",
        " ",
        ":",
};
const size_t fuzz_n_tokens = ELEMENTSOF(fuzz_tokens);

typedef struct Bytes {
        const uint8_t *p;
        size_t n;
} Bytes;

static unsigned take(Bytes *b, unsigned below) {
        unsigned v;

        if (b->n == 0 || below == 0)
                return 0;
        v = *b->p++;
        b->n--;
        return v % below;
}

/* Returns the parsed rollout (or NULL) after checking its spelling. */
static Rollout *check_text(const char *text) {
        Rollout *r = NULL;
        char *error = NULL, *again = NULL;
        size_t len = strlen(text);

        if (rollout_parse(text, &r, &error) < 0) {
                if (error && strncmp(error, "column ", 7) != 0)
                        fuzz_fail("refusal without a column: %s", error);
                free(error);
                return NULL;
        }
        FUZZ_ASSERT(r && !error);
        if (rollout_format(r, &again) >= 0) {
                if (!streq(again, text))
                        fuzz_fail("two spellings of one rollout:\n%s\n%s", text, again);
                free(again);
        }
        /* No proper prefix of a valid text is valid. */
        for (size_t cut = len / 2; cut < len; cut = cut + 1 + (len - cut) / 2) {
                char *prefix = strndup(text, cut);
                Rollout *p = NULL;

                if (!prefix)
                        abort();
                if (rollout_parse(prefix, &p, NULL) >= 0)
                        fuzz_fail("a proper prefix parses: %s", prefix);
                free(prefix);
        }
        return r;
}

static void drive(Rollout *r, Bytes *b) {
        RolloutAction acts[N_MAX + 2], again[N_MAX + 2];
        InstanceHealth health[N_MAX + 2];
        uint32_t restarts[N_MAX] = { 0 };
        usec_t now = 1000000;

        for (unsigned s = 0; s < 32 && b->n > 0; s++) {
                size_t n_health = 0, max = r->n_items + 2, n, n2, started;
                uint32_t may_start;
                char *text = NULL;
                Rollout *copy;

                for (size_t k = 0; k < r->n_items + 1; k++)
                        if (take(b, 4))
                                health[n_health++] = (InstanceHealth){
                                        .instance = (uint32_t) k,
                                        .healthy = take(b, 3) != 0,
                                        .restarted_since_issue = take(b, 3) != 0,
                                };
                now += take(b, 5) * r->healthy_for / 2 +
                       take(b, 2) * (r->health_timeout == USEC_INFINITY ? 60 * USEC_PER_SEC
                                                                        : r->health_timeout / 2);
                if (take(b, 8) == 0)
                        max = take(b, 3);

                /* What the start gate allows: mostly anything, sometimes a few. */
                may_start = take(b, 4) == 0 ? (uint32_t) take(b, 3) : UINT32_MAX;
                n = rollout_step(r, health, n_health, now, may_start, acts, max);
                FUZZ_ASSERT(n <= max);
                started = 0;
                for (size_t i = 0; i < n; i++)
                        started += acts[i].kind == ROLLOUT_ACTION_RESTART;
                FUZZ_ASSERT(started <= may_start);
                for (size_t i = 0; i < n; i++)
                        if (acts[i].kind == ROLLOUT_ACTION_RESTART) {
                                char *id = NULL;

                                FUZZ_ASSERT(acts[i].instance < r->n_items);
                                restarts[acts[i].instance]++;
                                FUZZ_ASSERT(rollout_restart_id(r, acts[i].instance, &id) >= 0);
                                free(id);
                        }
                /* Once per attempt. */
                for (size_t k = 0; k < r->n_items; k++)
                        FUZZ_ASSERT(restarts[k] == r->items[k].attempts);

                /* A controller killed after persisting this step replays
                 * it: nothing it restarted is restarted again. */
                if (rollout_format(r, &text) < 0)
                        return;
                copy = check_text(text);
                if (!copy)
                        fuzz_fail("a reachable rollout does not load: %s", text);
                free(text);
                n2 = rollout_step(copy, health, n_health, now, may_start, again, max);
                for (size_t i = 0; i < n2; i++)
                        for (size_t k = 0; k < n; k++)
                                if (again[i].kind == ROLLOUT_ACTION_RESTART &&
                                    acts[k].kind == ROLLOUT_ACTION_RESTART &&
                                    again[i].instance == acts[k].instance)
                                        fuzz_fail("instance %u restarted again on replay",
                                                  acts[k].instance);
                rollout_free(copy);

                switch (take(b, 10)) {
                case 0:
                        (void) rollout_pause(r, take(b, 2) ? NULL : "why\n\xff\"");
                        break;
                case 1:
                        (void) rollout_resume(r);
                        break;
                case 2:
                        (void) rollout_abort(r, NULL);
                        break;
                default:
                        break;
                }
        }
}

static void program(Bytes *b) {
        uint32_t n = 1 + take(b, N_MAX);
        usec_t healthy_for = (usec_t) take(b, 4) * 1000000;
        usec_t timeout = take(b, 8) == 0 ? USEC_INFINITY : healthy_for + 1 + take(b, 4) * 5000000;
        Rollout *r = NULL;

        if (rollout_new("gateway", take(b, 100), n, 1 + take(b, 3), healthy_for, timeout, &r) < 0)
                fuzz_fail("rollout_new() refuses a valid rollout");
        drive(r, b);
        rollout_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Bytes b = { data, size };
        char *s;

        if (size > 8192)
                return 0;
        s = fuzz_strdup(data, size);
        if (!s)
                return 0;
        rollout_free(check_text(s));
        free(s);

        program(&b);
        return 0;
}
