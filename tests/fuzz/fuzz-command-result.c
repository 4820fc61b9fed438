/* SPDX-License-Identifier: MIT */
/* A CommandResult as the controller's status consumer receives it. The
 * controller only words it into a command-refused alert, so the depth here
 * is the codec's: the oneof (generation or restart id) and every outcome's
 * strings, and the alert summary controller.c builds from them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-wire.h"
#include "status.pb-c.h"
#include "topology.h"

static void drive(const CodecDecoded *d) {
        const Baton__V1__CommandResult *res = (const Baton__V1__CommandResult *) d->body;
        _cleanup_free_ char *what = NULL, *details = NULL, *summary = NULL;
        size_t len = 0, shown = 0;
        FILE *f;

        if (!topology_host_id_is_valid(res->host))
                return;
        FUZZ_ASSERT(res->command_case == BATON__V1__COMMAND_RESULT__COMMAND__NOT_SET ||
                    res->command_case == BATON__V1__COMMAND_RESULT__COMMAND_GENERATION ||
                    res->command_case == BATON__V1__COMMAND_RESULT__COMMAND_RESTART_ID);
        /* controller.c's handle_command_result(). */
        if (res->command_case == BATON__V1__COMMAND_RESULT__COMMAND_RESTART_ID) {
                FUZZ_ASSERT(res->restart_id);
                if (asprintf(&what, "restart %s", res->restart_id) < 0)
                        return;
        } else if (asprintf(&what, "placement %" PRIu64 "/%" PRIu64, res->epoch, res->generation) <
                   0)
                return;
        f = open_memstream(&details, &len);
        if (!f)
                return;
        for (size_t i = 0; i < res->n_units && shown < 3; i++) {
                FUZZ_ASSERT(res->units[i] && res->units[i]->unit && res->units[i]->action &&
                            res->units[i]->result);
                if (!res->units[i]->ok) {
                        fprintf(f, "; %s %s: %s", res->units[i]->unit, res->units[i]->action,
                                res->units[i]->result);
                        shown++;
                }
        }
        if (fclose(f) != 0)
                return;
        if (asprintf(&summary, "%s on %s: %s%s", what, res->host, strna(res->error),
                     strempty(details)) >= 0)
                FUZZ_ASSERT(strstr(summary, res->host));
}

const FuzzWireTarget fuzz_wire_target = {
        .rx = &fuzz_rx_status,
        .body = &baton__v1__command_result__descriptor,
        .drive = drive,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        return fuzz_wire_run(&fuzz_wire_target, data, size);
}
