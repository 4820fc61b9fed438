/* SPDX-License-Identifier: MIT */
/* libFuzzer target for codec_decode(): arbitrary bytes with every message type
 * allowed, without and with a required signature. Beyond "never crash" it
 * checks that whatever is accepted re-encodes, signed, and decodes again
 * under verification to the same body. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "commands.pb-c.h"
#include "envelope.pb-c.h"
#include "events.pb-c.h"
#include "macro.h"
#include "rpc.pb-c.h"
#include "sign.h"
#include "status.pb-c.h"

static const ProtobufCMessageDescriptor *const all_types[] = {
        &baton__v1__env_var__descriptor,        &baton__v1__shard_assignment__descriptor,
        &baton__v1__placed_unit__descriptor,    &baton__v1__placement__descriptor,
        &baton__v1__restart__descriptor,        &baton__v1__envelope__descriptor,
        &baton__v1__alert__descriptor,          &baton__v1__event__descriptor,
        &baton__v1__label__descriptor,          &baton__v1__capacity__descriptor,
        &baton__v1__unit_state__descriptor,     &baton__v1__heartbeat__descriptor,
        &baton__v1__unit_event__descriptor,     &baton__v1__shard_instance_report__descriptor,
        &baton__v1__shard_report__descriptor,   &baton__v1__unit_outcome__descriptor,
        &baton__v1__command_result__descriptor, &baton__v1__ping_request__descriptor,
        &baton__v1__hosts_request__descriptor,  &baton__v1__spec_file__descriptor,
        &baton__v1__apply_request__descriptor,  &baton__v1__service_request__descriptor,
        &baton__v1__host_request__descriptor,   &baton__v1__rollout_request__descriptor,
        &baton__v1__request__descriptor,        &baton__v1__counter__descriptor,
        &baton__v1__pong__descriptor,           &baton__v1__host_info__descriptor,
        &baton__v1__host_list__descriptor,      &baton__v1__response__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *repack(const ProtobufCMessage *m, size_t *ret_len) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(MAX(n, 1u));

        if (!buf)
                abort();
        if (protobuf_c_message_pack(m, buf) != n)
                abort();
        *ret_len = n;
        return buf;
}

/* An accepted message must survive the trip a relay would give it. */
static void check_reencode(const CodecDecoded *dec, const SignKey *key) {
        _cleanup_free_ uint8_t *buf = NULL, *first = NULL, *second = NULL;
        _cleanup_free_ char *error = NULL;
        CodecDecoded again = { 0 };
        size_t len, first_len, second_len;
        int r;

        r = codec_encode(dec->body, dec->envelope->sender, dec->envelope->epoch,
                         dec->envelope->sent_at_us, key, &buf, &len);
        if (r == -EMSGSIZE)
                return; /* a non-canonical input near the cap may grow */
        if (r < 0)
                abort();

        r = codec_decode(buf, len, &dec->descriptor, 1, dec->descriptor->name, &key->pub, &again,
                         &error);
        if (r < 0) {
                fprintf(stderr, "re-encoded message refused: %s\n", strna(error));
                abort();
        }

        first = repack(dec->body, &first_len);
        second = repack(again.body, &second_len);
        if (first_len != second_len || memcmp(first, second, first_len) != 0)
                abort();
        codec_decoded_done(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t seed[SIGN_SEED_BYTES] = { 'f', 'u', 'z', 'z' };
        static SignKey key;
        static bool have_key;
        CodecDecoded dec = { 0 };
        char *error = NULL;
        int r;

        if (!have_key) {
                if (sign_key_from_seed(seed, &key) < 0)
                        abort();
                have_key = true;
        }

        r = codec_decode(data, size, all_types, ELEMENTSOF(all_types), NULL, NULL, &dec, &error);
        if (r >= 0) {
                if (!dec.envelope || !dec.body || !dec.descriptor || error)
                        abort();
                check_reencode(&dec, &key);
                codec_decoded_done(&dec);
        } else if (r != -ENOMEM && !error)
                abort(); /* every refusal says why */
        free(error);
        error = NULL;

        r = codec_decode(data, size, all_types, ELEMENTSOF(all_types), "baton.v1.Restart", &key.pub,
                         &dec, &error);
        if (r >= 0)
                codec_decoded_done(&dec);
        free(error);
        return 0;
}
