/* SPDX-License-Identifier: MIT */
/* A Restart as the agent receives it: a signed envelope, verified with the
 * test key, then agent/apply.c's checks in pure code (id, unit name,
 * manage_units, mode, deadline) and the at-most-once record: a recorded id
 * is seen, recording it again adds nothing, and the state file keeps it. */
#include <stdlib.h>
#include <string.h>

#include "agent-state.h"
#include "commands.pb-c.h"
#include "fuzz-wire.h"
#include "unit-name.h"

static void drive(const CodecDecoded *d) {
        const Baton__V1__Restart *rs = (const Baton__V1__Restart *) d->body;
        AgentState st = { 0 }, back = { 0 };
        char *text = NULL, *error = NULL;
        bool valid_id = agent_state_restart_id_is_valid(rs->id);
        size_t n;
        int r;

        /* agent.c refuses a stale command before it looks at it. */
        if (codec_check_age(d->envelope, FUZZ_NOW_US, FUZZ_COMMAND_MAX_AGE_US, NULL) < 0)
                return;
        /* The order of agent/apply.c's apply_restart(); what passes all of
         * it is a unit this agent may restart. */
        if (valid_id && unit_name_is_valid(rs->unit, UNIT_NAME_PLAIN | UNIT_NAME_INSTANCE) &&
            unit_name_matches_globs(rs->unit, FUZZ_MANAGE_UNITS)) {
                _cleanup_free_ char *file = NULL;

                FUZZ_ASSERT(converge_unit_file_name(rs->unit, &file) >= 0);
                FUZZ_ASSERT(agent_state_set_unit(&st, rs->unit, file, "0123456789abcdef", true) >=
                            0);
        }

        /* Ids this agent ran before, one of them long expired. */
        FUZZ_ASSERT(agent_state_restart_record(&st, "r-1", FUZZ_NOW_US - 1, FUZZ_NOW_US - 10) == 1);
        FUZZ_ASSERT(agent_state_restart_record(&st, "r-old", 1, 1) == 1);
        n = st.n_restarts;

        /* An expired Restart is refused before it is recorded. */
        if (rs->not_after_us > 0 && rs->not_after_us < FUZZ_NOW_US)
                goto finish;
        r = agent_state_restart_record(&st, rs->id, rs->not_after_us, FUZZ_NOW_US);
        if (!valid_id) {
                FUZZ_ASSERT(r == -EINVAL);
                goto finish;
        }
        if (r == -ENOMEM)
                goto finish;
        FUZZ_ASSERT(r == 0 || r == 1);
        FUZZ_ASSERT(agent_state_restart_seen(&st, rs->id));
        FUZZ_ASSERT(agent_state_restart_seen(&st, "r-1"));
        /* "r-old" expired an hour before now: dropped, so at most n entries. */
        FUZZ_ASSERT(streq(rs->id, "r-old") || !agent_state_restart_seen(&st, "r-old"));
        FUZZ_ASSERT(st.n_restarts <= n);
        FUZZ_ASSERT(agent_state_restart_record(&st, rs->id, rs->not_after_us, FUZZ_NOW_US) == 0);

        /* The record survives a restart of the agent. */
        FUZZ_ASSERT(agent_state_format(&st, &text) >= 0);
        if (agent_state_parse(text, &back, &error) < 0)
                fuzz_fail("the agent cannot read its own state: %s\n%s", strna(error), text);
        FUZZ_ASSERT(agent_state_restart_seen(&back, rs->id));
        FUZZ_ASSERT(back.n_units == st.n_units && back.n_restarts == st.n_restarts);

finish:
        free(text);
        free(error);
        agent_state_done(&st);
        agent_state_done(&back);
}

const FuzzWireTarget fuzz_wire_target = {
        .rx = &fuzz_rx_agent,
        .body = &baton__v1__restart__descriptor,
        .drive = drive,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        return fuzz_wire_run(&fuzz_wire_target, data, size);
}
