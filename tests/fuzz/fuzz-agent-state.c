/* SPDX-License-Identifier: MIT */
/* agent_state_parse on arbitrary bytes: never crash, every failure carries a
 * "line N: " message, and whatever parses formats to text that parses back to
 * the same state and the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent-state.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern const char *const fuzz_tokens[];
extern const size_t fuzz_n_tokens;
const char *const fuzz_tokens[] = {
        "baton-agent-state 1\n",
        "baton-agent-state 1\n",
        "baton-agent-state 2\n",
        "epoch ",
        "applied ",
        "unit ",
        "restart ",
        "\n",
        " ",
        "  ",
        "0",
        "1",
        "01",
        "42",
        "18446744073709551615",
        "18446744073709551616",
        "a.service",
        "gw@3.service",
        "gw@.service",
        "gw@3.service gw@.service ",
        "a.service a.service ",
        "0123456789abcdef",
        "h:1+/=",
        " 0\n",
        " 1\n",
        " 2\n",
        "r-1",
        "id_2",
        "a.b",
        "\r\n",
        "\t",
        "\xff",
        "-",
        "unit a.service a.service h 0\n",
        "restart r1 5\n",
        "epoch 7\n",
        "applied 7 42\n",
        "unit gw@0.service gw@.service 9f86d081884c7d65 1\n",
        "unit b.service b.service x 1\n",
        "restart r2 1700000000000000\n",
        "restart r1 6\n",
        "unit a.service a.service h 1\n",
};
const size_t fuzz_n_tokens = sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]);

static bool states_equal(const AgentState *a, const AgentState *b) {
        if (a->max_epoch_seen != b->max_epoch_seen || a->applied_epoch != b->applied_epoch ||
            a->applied_generation != b->applied_generation || a->n_units != b->n_units ||
            a->n_restarts != b->n_restarts)
                return false;
        for (size_t i = 0; i < a->n_units; i++)
                if (!streq(a->units[i].name, b->units[i].name) ||
                    !streq(a->units[i].file_name, b->units[i].file_name) ||
                    !streq(a->units[i].config_hash, b->units[i].config_hash) ||
                    a->units[i].has_dropin != b->units[i].has_dropin)
                        return false;
        for (size_t i = 0; i < a->n_restarts; i++)
                if (!streq(a->restarts[i].id, b->restarts[i].id) ||
                    a->restarts[i].not_after_us != b->restarts[i].not_after_us)
                        return false;
        return true;
}

static void check(const char *text) {
        AgentState s = { 0 }, p = { 0 };
        char *err = NULL, *f1 = NULL, *f2 = NULL;
        int r;

        r = agent_state_parse(text, &s, &err);
        if (r < 0) {
                if (r == -EINVAL && (!err || strncmp(err, "line ", 5) != 0))
                        abort();
                free(err);
                return;
        }
        if (err)
                abort(); /* no message on success */

        if (agent_state_format(&s, &f1) < 0)
                abort();
        if (agent_state_parse(f1, &p, NULL) < 0)
                abort();
        if (!states_equal(&s, &p))
                abort();
        if (agent_state_format(&p, &f2) < 0 || !streq(f1, f2))
                abort();

        /* the bookkeeping keeps what it formats readable */
        if (s.n_units > 0 && agent_state_remove_unit(&s, s.units[0].name) < 0)
                abort();
        if (agent_state_restart_record(&s, "fuzz-id", 1, 1) < 0)
                abort();
        free(f2);
        f2 = NULL;
        if (agent_state_format(&s, &f2) < 0)
                abort();

        agent_state_done(&s);
        agent_state_done(&p);
        free(f1);
        free(f2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char header[] = "baton-agent-state 1\n";
        char *text;

        if (size > 256 * 1024)
                return 0;
        text = malloc(sizeof(header) + size);
        if (!text)
                return 0;

        /* as is, and behind a valid header so the body lines get exercised too */
        memcpy(text, data, size);
        text[size] = '\0';
        check(text);
        memcpy(text, header, sizeof(header) - 1);
        memcpy(text + sizeof(header) - 1, data, size);
        text[sizeof(header) - 1 + size] = '\0';
        check(text);

        free(text);
        return 0;
}
