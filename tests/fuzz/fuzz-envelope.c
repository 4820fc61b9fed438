/* SPDX-License-Identifier: MIT */
/* The envelope against every receiver at once: the agent (signed), the
 * controller's status and RPC queues, batonctl and batonctl watch. Their
 * type lists are disjoint, so one message is taken by one receiver at most;
 * a message any of them takes is also taken by a decode that allows every
 * type, and the reverse holds for the receivers that need no signature.
 * Whatever is accepted passes the generic checks of fuzz-wire.c (re-encodes,
 * refuses tampering, survives JSON). */
#include <stdlib.h>
#include <string.h>

#include "fuzz-wire.h"
#include "pbjson.h"

const FuzzWireTarget fuzz_wire_target = { .rx = NULL };

static bool has_type(const FuzzReceiver *rx, const ProtobufCMessageDescriptor *d) {
        for (size_t i = 0; i < rx->n_types; i++)
                if (rx->types[i] == d)
                        return true;
        return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const SignKey *key = fuzz_test_key();
        const ProtobufCMessageDescriptor *const *all;
        CodecDecoded any = { 0 };
        const FuzzReceiver *taker = NULL;
        size_t n_all;
        int r_any;

        all = pbjson_descriptors(&n_all);
        r_any = codec_decode(data, size, all, n_all, NULL, NULL, &any, NULL);

        for (size_t i = 0; i < fuzz_n_receivers; i++) {
                const FuzzReceiver *rx = fuzz_receivers[i];
                CodecDecoded d = { 0 };
                char *error = NULL;
                int r;

                r = codec_decode(data, size, rx->types, rx->n_types, NULL,
                                 rx->verify ? &key->pub : NULL, &d, &error);
                if (r < 0) {
                        if (r != -ENOMEM && !error)
                                fuzz_fail("%s: a refusal without a reason (%d)", rx->name, r);
                        /* Only the type or the signature (which needs the
                         * current protocol) may stop a receiver that the
                         * permissive decode lets through. */
                        if (r_any >= 0 && r != -ENOMEM && r != -EPROTOTYPE &&
                            !(rx->verify && (r == -EKEYREJECTED || r == -EPROTONOSUPPORT)))
                                fuzz_fail("%s refuses with %d (%s) what any-type decoding takes",
                                          rx->name, r, strna(error));
                        if (r_any >= 0 && has_type(rx, any.descriptor) && !rx->verify &&
                            r != -ENOMEM)
                                fuzz_fail("%s refuses a %s: %s", rx->name, any.descriptor->name,
                                          strna(error));
                        free(error);
                        continue;
                }
                if (taker)
                        fuzz_fail("both %s and %s take a %s", taker->name, rx->name,
                                  d.descriptor->name);
                taker = rx;
                if (r_any < 0)
                        fuzz_fail("%s takes a %s that any-type decoding refuses", rx->name,
                                  d.descriptor->name);
                fuzz_wire_check_accepted(rx, &d);
                codec_decoded_done(&d);
        }
        codec_decoded_done(&any);
        return 0;
}
