/* SPDX-License-Identifier: MIT */
/* Alerts and Events as `batonctl watch` receives them from baton.events:
 * decoded (unsigned: the events exchange is the controller's, its broker
 * permissions are the guard), shown as one line with control characters
 * masked, or with --json as the message through pbjson, which must read
 * back as the same message (checked for every accepted message); an
 * Event's detail_json is read as JSON. */
#include <stdlib.h>
#include <string.h>

#include "events.pb-c.h"
#include "fuzz-wire.h"
#include "pbjson.h"

static void check_sanitized(const char *s) {
        _cleanup_free_ char *copy = strdup(strempty(s));

        if (!copy)
                return;
        for (char *p = copy; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
        for (const char *p = copy; *p; p++)
                FUZZ_ASSERT((unsigned char) *p >= 0x20 && *p != 0x7f);
}

static void drive(const CodecDecoded *d) {
        if (d->descriptor == &baton__v1__alert__descriptor) {
                const Baton__V1__Alert *a = (const Baton__V1__Alert *) d->body;

                FUZZ_ASSERT(protobuf_c_enum_descriptor_get_value(&baton__v1__severity__descriptor,
                                                                 (int) a->severity));
                check_sanitized(a->kind);
                check_sanitized(a->service);
                check_sanitized(a->host);
                check_sanitized(a->summary);
        } else {
                const Baton__V1__Event *e = (const Baton__V1__Event *) d->body;
                json_t *detail;

                check_sanitized(e->kind);
                check_sanitized(e->summary);
                if (!isempty(e->detail_json)) {
                        detail = json_loads(e->detail_json, 0, NULL);
                        json_decref(detail);
                }
        }
}

const FuzzWireTarget fuzz_wire_target = {
        .rx = &fuzz_rx_watch,
        .body = NULL, /* both types */
        .drive = drive,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        return fuzz_wire_run(&fuzz_wire_target, data, size);
}
