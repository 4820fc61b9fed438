/* SPDX-License-Identifier: MIT */
/* The codec: a body message in a signed Envelope and back. Decoding is the
 * trust boundary for everything that arrives over AMQP: size cap before
 * unpacking, an allocation budget during it, then a walk that checks every
 * enum value, oneof case and string, and the signature where one is
 * required. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.pb-c.h"
#include "macro.h"
#include "sign.h"

/* Version 2: the signature covers a domain tag, the envelope's type, sender,
 * epoch, send time and key id together with the body (codec.c's
 * signed_payload()), so a signed message can never be re-labelled as another
 * type or replayed under another epoch or time. Version 1 signed the body
 * alone: it is still decoded when no signature is required (status from
 * agents of baton 0.1), never when one is. */
#define CODEC_PROTOCOL_VERSION 2
#define CODEC_PROTOCOL_VERSION_MIN 1
#define CODEC_SIGNATURE_DOMAIN "baton.envelope.v2"
#define CODEC_CONTENT_TYPE "application/x-protobuf"
/* Largest envelope accepted on the wire; a Placement of a big host is well
 * under this. */
#define CODEC_MAX_MESSAGE_SIZE (4u * 1024 * 1024)
/* Heap an unpack may use; repeated empty sub-messages amplify ~16×. */
#define CODEC_ALLOC_BUDGET (32u * 1024 * 1024)
/* An answer joined from parts (Response.part) may be this large. */
#define CODEC_MAX_ANSWER_SIZE (256u * 1024 * 1024)

typedef struct CodecDecoded {
        Baton__V1__Envelope *envelope;
        const ProtobufCMessageDescriptor *descriptor; /* of body */
        ProtobufCMessage *body;
        void *allocator_state; /* private: the budget both unpacks used */
} CodecDecoded;

/* Serializes `body` into an Envelope of the current protocol version with
 * type = body's full name ("baton.v1.Heartbeat"), signed when `key` is not
 * NULL. *ret_buf is malloc'ed. Refuses what a receiver would refuse: -EINVAL
 * when `body` fails codec_validate() (call it for the reason) or `sender` is
 * not UTF-8, -EMSGSIZE above CODEC_MAX_MESSAGE_SIZE. */
int codec_encode(const ProtobufCMessage *body, const char *sender, uint64_t epoch, uint64_t now_us,
                 const SignKey *key, uint8_t **ret_buf, size_t *ret_len);

/* Decodes and checks one message:
 *  - len ≤ CODEC_MAX_MESSAGE_SIZE (-EMSGSIZE), envelope and body unpack within
 *    CODEC_ALLOC_BUDGET (-EBADMSG);
 *  - version is CODEC_PROTOCOL_VERSION, or CODEC_PROTOCOL_VERSION_MIN when
 *    `verify` is NULL (-EPROTONOSUPPORT);
 *  - envelope type is one of `allowed` (-EPROTOTYPE), and equals `amqp_type`
 *    when that is not NULL (-EPROTOTYPE);
 *  - every string valid UTF-8 without NUL bytes, every enum value declared,
 *    every oneof case a member, every message field walked recursively,
 *    field numbers 1..2^29-1 (-EBADMSG);
 *  - when `verify` is not NULL, a valid signature by that key over the
 *    domain tag, type, sender, epoch, send time, key id and body
 *    (-EKEYREJECTED).
 * The signature is checked before the body is unpacked.
 * On error *ret_error (if not NULL) gets a malloc'ed reason naming the field
 * ("baton.v1.Heartbeat.units[3].name: invalid UTF-8"); it is left alone on
 * success, and may be NULL after an error if even that allocation failed.
 * On success the caller owns *ret and releases it with codec_decoded_done(). */
int codec_decode(const void *buf, size_t len, const ProtobufCMessageDescriptor *const *allowed,
                 size_t n_allowed, const char *amqp_type, const SignPublicKey *verify,
                 CodecDecoded *ret, char **ret_error);

/* The bytes a version 2 signature covers for `env` (its signature field is
 * ignored): the domain tag CODEC_SIGNATURE_DOMAIN, type, sender, epoch, send
 * time, key id and body. The type binds a signature to its purpose (a signed
 * Event or Response never passes as a Placement), epoch and time to its term
 * and moment. *ret is malloc'ed. */
int codec_signed_payload(const Baton__V1__Envelope *env, uint8_t **ret, size_t *ret_len);

/* Whether a signed command is fresh: its send time (covered by the
 * signature) is at most `max_age` before `now_us` and at most `max_age` after
 * it (clocks disagree; a command from far in the future is as suspect as an
 * old one). -ESTALE with *ret_error saying by how much. */
int codec_check_age(const Baton__V1__Envelope *env, uint64_t now_us, uint64_t max_age_us,
                    char **ret_error);

/* Frees what codec_decode() returned and zeroes *d; harmless on a zeroed
 * or already released CodecDecoded, and usable as a _cleanup_ function. */
void codec_decoded_done(CodecDecoded *d);
/* A body of type `d` that is not in an envelope of its own (an answer joined
 * from the parts its envelopes carried, each checked by codec_decode()):
 * at most CODEC_MAX_ANSWER_SIZE bytes (-EMSGSIZE), unpacked within a budget
 * of CODEC_ALLOC_BUDGET plus eight times its size, wire-scanned and validated
 * as codec_decode() does a body. ret->envelope is NULL. */
int codec_decode_body(const ProtobufCMessageDescriptor *d, const void *buf, size_t len,
                      CodecDecoded *ret, char **ret_error);

/* The recursive field walk codec_decode() uses, for messages built locally:
 * UTF-8, enum values, oneof cases, and no NULL element in a repeated field
 * (which protobuf-c's packer would dereference). -EBADMSG. */
int codec_validate(const ProtobufCMessage *m, char **ret_error);

/* Strict UTF-8 (no overlong forms, surrogates or code points above
 * U+10FFFF) that also contains no NUL byte, which a C string cannot carry. */
bool codec_utf8_is_valid(const char *s, size_t len) _pure_;

/* Short type name without package: "baton.v1.Heartbeat" → "Heartbeat". */
const char *codec_short_type(const char *full_name) _pure_;
