/* SPDX-License-Identifier: MIT */
/* The receivers of baton's wire messages as fuzz harnesses: each decodes as
 * its party does, then checks what holds for every accepted message (it
 * re-encodes and decodes to the same body, a wrong AMQP type is refused, a
 * signed one refuses every tampering, it survives JSON and back). With
 * -DFUZZ_LIBFUZZER it also supplies libFuzzer's custom mutator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.pb-c.h"
#include "envelope.pb-c.h"
#include "events.pb-c.h"
#include "fuzz-wire.h"
#include "pbjson.h"
#include "rpc.pb-c.h"
#include "status.pb-c.h"

static const ProtobufCMessageDescriptor *const agent_types[] = {
        &baton__v1__placement__descriptor,
        &baton__v1__restart__descriptor,
};
static const ProtobufCMessageDescriptor *const status_types[] = {
        &baton__v1__heartbeat__descriptor,
        &baton__v1__unit_event__descriptor,
        &baton__v1__shard_report__descriptor,
        &baton__v1__command_result__descriptor,
};
static const ProtobufCMessageDescriptor *const marker_types[] = {
        &baton__v1__controller_marker__descriptor,
};
static const ProtobufCMessageDescriptor *const rpc_types[] = {
        &baton__v1__request__descriptor,
};
static const ProtobufCMessageDescriptor *const ctl_types[] = {
        &baton__v1__response__descriptor,
};
static const ProtobufCMessageDescriptor *const watch_types[] = {
        &baton__v1__alert__descriptor,
        &baton__v1__event__descriptor,
};

const FuzzReceiver fuzz_rx_agent = { "agent", agent_types, ELEMENTSOF(agent_types), true };
const FuzzReceiver fuzz_rx_status = { "controller status", status_types, ELEMENTSOF(status_types),
                                      false };
const FuzzReceiver fuzz_rx_marker = { "controller marker", marker_types, ELEMENTSOF(marker_types),
                                      false };
const FuzzReceiver fuzz_rx_rpc = { "controller rpc", rpc_types, ELEMENTSOF(rpc_types), false };
const FuzzReceiver fuzz_rx_ctl = { "batonctl", ctl_types, ELEMENTSOF(ctl_types), false };
const FuzzReceiver fuzz_rx_watch = { "batonctl watch", watch_types, ELEMENTSOF(watch_types),
                                     false };
const FuzzReceiver *const fuzz_receivers[] = {
        &fuzz_rx_agent, &fuzz_rx_status, &fuzz_rx_marker,
        &fuzz_rx_rpc,   &fuzz_rx_ctl,    &fuzz_rx_watch,
};
const size_t fuzz_n_receivers = ELEMENTSOF(fuzz_receivers);

int fuzz_sign_envelope(Baton__V1__Envelope *env, const SignKey *key,
                       uint8_t sig[SIGN_SIGNATURE_BYTES]) {
        _cleanup_free_ uint8_t *payload = NULL;
        size_t len;
        int r;

        /* Protocol 2: the key id is part of what is signed. */
        env->version = CODEC_PROTOCOL_VERSION;
        env->key_id = (char *) key->pub.id;
        r = codec_signed_payload(env, &payload, &len);
        if (r < 0)
                return r;
        r = sign_detached(key, payload, len, sig);
        if (r < 0)
                return r;
        env->signature = (ProtobufCBinaryData){ SIGN_SIGNATURE_BYTES, sig };
        return 0;
}

/* The mutator signs what it mutated with fuzz_sign_envelope(): if that no
 * longer signs as codec_encode() does, the fuzzer would silently stop at the
 * signature check. Say so at once instead. */
static void check_signing(const SignKey *key) {
        Baton__V1__Restart rs = BATON__V1__RESTART__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        Baton__V1__Envelope *env, copy;
        uint8_t sig[SIGN_SIGNATURE_BYTES];
        size_t len;

        rs.id = (char *) "check";
        rs.unit = (char *) "a.service";
        if (codec_encode(&rs.base, "controller", 1, 1, key, &buf, &len) < 0)
                fuzz_fail("cannot encode a Restart");
        env = baton__v1__envelope__unpack(NULL, len, buf);
        if (!env || env->signature.len != SIGN_SIGNATURE_BYTES)
                fuzz_fail("codec_encode() wrote no signature the fuzz harness knows");
        copy = *env;
        if (fuzz_sign_envelope(&copy, key, sig) < 0 ||
            memcmp(sig, env->signature.data, sizeof(sig)) != 0)
                fuzz_fail("fuzz_sign_envelope() (tests/fuzz/fuzz-wire.c) no longer signs as "
                          "codec_encode() does: update it to the current protocol");
        baton__v1__envelope__free_unpacked(env, NULL);
}

const SignKey *fuzz_test_key(void) {
        static const char seed[] = FUZZ_KEY_SEED;
        static SignKey key;
        static bool have;

        _Static_assert(sizeof(seed) == SIGN_SEED_BYTES + 1, "FUZZ_KEY_SEED is 32 bytes");
        if (!have) {
                if (sign_key_from_seed((const uint8_t *) seed, &key) < 0)
                        fuzz_fail("cannot derive the test key");
                check_signing(&key);
                have = true;
        }
        return &key;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *ret_len) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(MAX(n, 1u));

        if (!buf)
                abort();
        if (protobuf_c_message_pack(m, buf) != n)
                fuzz_fail("%s: packed size disagrees with get_packed_size", m->descriptor->name);
        *ret_len = n;
        return buf;
}

static bool same_message(const ProtobufCMessage *a, const ProtobufCMessage *b) {
        _cleanup_free_ uint8_t *pa = NULL, *pb = NULL;
        size_t na, nb;

        if (a->descriptor != b->descriptor)
                return false;
        pa = pack(a, &na);
        pb = pack(b, &nb);
        return na == nb && memcmp(pa, pb, na) == 0;
}

/* Fields this version does not know survive protobuf-c's unpack and pack,
 * but not JSON (as in proto3's JSON mapping). */
static bool has_unknown_fields(const ProtobufCMessage *m) {
        const ProtobufCMessageDescriptor *d = m->descriptor;

        if (m->n_unknown_fields > 0)
                return true;
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                const uint8_t *member = (const uint8_t *) m + f->offset;

                if (f->type != PROTOBUF_C_TYPE_MESSAGE)
                        continue;
                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(const size_t *) ((const uint8_t *) m + f->quantifier_offset);
                        ProtobufCMessage *const *a = *(ProtobufCMessage *const *const *) member;

                        for (size_t k = 0; k < n; k++)
                                if (has_unknown_fields(a[k]))
                                        return true;
                } else {
                        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *) member;

                        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF &&
                            *(const uint32_t *) ((const uint8_t *) m + f->quantifier_offset) !=
                                    f->id)
                                continue;
                        if (sub && has_unknown_fields(sub))
                                return true;
                }
        }
        return false;
}

/* Equal as JSON: every known field. */
static bool same_json(json_t *a, const ProtobufCMessage *b) {
        json_t *jb = pbjson_from_message(b);
        bool same = !jb || json_equal(a, jb);

        json_decref(jb);
        return same;
}

void fuzz_check_pbjson(const ProtobufCMessage *m) {
        _cleanup_free_ char *text = NULL, *error = NULL;
        ProtobufCMessage *back = NULL;
        bool unknown = has_unknown_fields(m);
        json_t *j, *again;
        int r;

        j = pbjson_from_message(m);
        if (!j)
                return; /* out of memory, or deeper than PBJSON_MAX_DEPTH */
        r = pbjson_to_message(m->descriptor, j, &back, &error);
        if (r == -ENOMEM) {
                json_decref(j);
                return;
        }
        if (r < 0)
                fuzz_fail("%s: its own JSON is refused: %s", m->descriptor->name, strna(error));
        if (unknown ? !same_json(j, back) : !same_message(m, back)) {
                json_t *jb = pbjson_from_message(back);
                _cleanup_free_ char *a = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS),
                                    *b = jb ? json_dumps(jb, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

                fuzz_fail("%s: JSON round trip changed the message:\n%s\n%s", m->descriptor->name,
                          strna(a), strna(b));
        }
        protobuf_c_message_free_unpacked(back, NULL);
        back = NULL;

        /* As batonctl watch --json prints it and baton-probe reads it back. */
        text = json_dumps(j, JSON_COMPACT);
        if (!text) {
                json_decref(j);
                return;
        }
        again = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        if (!again)
                fuzz_fail("%s: printed JSON does not parse: %s", m->descriptor->name, text);
        if (!json_equal(j, again))
                fuzz_fail("%s: printed JSON reads back as other JSON: %s", m->descriptor->name,
                          text);
        json_decref(j);
        r = pbjson_to_message(m->descriptor, again, &back, NULL);
        json_decref(again);
        if (r == -ENOMEM)
                return;
        if (r < 0 || (!unknown && !same_message(m, back)))
                fuzz_fail("%s: printed JSON is not the message", m->descriptor->name);
        protobuf_c_message_free_unpacked(back, NULL);
}

static bool rx_accepts(const FuzzReceiver *rx, const ProtobufCMessageDescriptor *d) {
        for (size_t i = 0; i < rx->n_types; i++)
                if (rx->types[i] == d)
                        return true;
        return false;
}

/* A signed message with one thing changed must be refused as forged. */
typedef enum Tamper {
        TAMPER_BODY,
        TAMPER_SIGNATURE,
        TAMPER_EPOCH,   /* replayed under another term */
        TAMPER_SENT_AT, /* replayed at another time */
        TAMPER_TYPE,    /* re-labelled as the receiver's other type */
        _TAMPER_MAX,
} Tamper;

static const char *const tamper_names[_TAMPER_MAX] = {
        "body", "signature", "epoch", "send time", "type",
};

static void check_tampered(const FuzzReceiver *rx, const Baton__V1__Envelope *env, Tamper what) {
        const SignKey *key = fuzz_test_key();
        Baton__V1__Envelope t = *env;
        _cleanup_free_ uint8_t *bytes = NULL, *buf = NULL;
        CodecDecoded d = { 0 };
        size_t n;
        int r;

        if (what == TAMPER_BODY) {
                /* One more byte: a body the signature does not cover. */
                bytes = malloc(env->body.len + 1);
                if (!bytes)
                        abort();
                if (env->body.len > 0)
                        memcpy(bytes, env->body.data, env->body.len);
                bytes[env->body.len] = 0;
                t.body = (ProtobufCBinaryData){ env->body.len + 1, bytes };
        } else if (what == TAMPER_SIGNATURE) {
                bytes = malloc(MAX(env->signature.len, 1u));
                if (!bytes)
                        abort();
                if (env->signature.len > 0)
                        memcpy(bytes, env->signature.data, env->signature.len);
                if (env->signature.len > 0)
                        bytes[env->signature.len / 2] ^= 0x20;
                t.signature = (ProtobufCBinaryData){ env->signature.len, bytes };
        } else if (what == TAMPER_EPOCH)
                t.epoch++;
        else if (what == TAMPER_SENT_AT)
                t.sent_at_us ^= 1;
        else {
                for (size_t i = 0; i < rx->n_types; i++)
                        if (!streq(rx->types[i]->name, env->type))
                                t.type = (char *) rx->types[i]->name;
                if (t.type == env->type)
                        return; /* the receiver takes one type */
        }
        n = baton__v1__envelope__get_packed_size(&t);
        buf = malloc(n);
        if (!buf)
                abort();
        baton__v1__envelope__pack(&t, buf);
        r = codec_decode(buf, n, rx->types, rx->n_types, NULL, &key->pub, &d, NULL);
        if (r >= 0)
                fuzz_fail("%s: a %s with a changed %s passes verification", rx->name, env->type,
                          tamper_names[what]);
        if (r != -EKEYREJECTED && r != -EMSGSIZE && r != -ENOMEM)
                fuzz_fail("%s: a changed %s is refused with %d, not as forged", rx->name,
                          tamper_names[what], r);
}

void fuzz_wire_check_accepted(const FuzzReceiver *rx, const CodecDecoded *d) {
        const SignKey *key = fuzz_test_key();
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        CodecDecoded again = { 0 };
        size_t len;
        int r;

        FUZZ_ASSERT(d->envelope && d->body && d->descriptor);
        FUZZ_ASSERT(d->body->descriptor == d->descriptor);
        FUZZ_ASSERT(rx_accepts(rx, d->descriptor));
        FUZZ_ASSERT(streq(d->envelope->type, d->descriptor->name));
        FUZZ_ASSERT(d->envelope->version == CODEC_PROTOCOL_VERSION ||
                    (!rx->verify && d->envelope->version >= CODEC_PROTOCOL_VERSION_MIN &&
                     d->envelope->version <= CODEC_PROTOCOL_VERSION));
        FUZZ_ASSERT(codec_validate(d->body, NULL) == 0);
        FUZZ_ASSERT(codec_validate(&d->envelope->base, NULL) == 0);
        if (rx->verify) {
                FUZZ_ASSERT(d->envelope->signature.len == SIGN_SIGNATURE_BYTES);
                FUZZ_ASSERT(streq(d->envelope->key_id, key->pub.id));
                for (Tamper t = 0; t < _TAMPER_MAX; t++)
                        check_tampered(rx, d->envelope, t);
        }

        /* What a relay (or the sender again) would write is accepted as the
         * same message. */
        r = codec_encode(d->body, d->envelope->sender, d->envelope->epoch, d->envelope->sent_at_us,
                         rx->verify ? key : NULL, &buf, &len);
        if (r == -EMSGSIZE)
                return; /* a non-canonical input near the cap may grow */
        if (r < 0)
                fuzz_fail("%s: an accepted %s does not encode: %d", rx->name, d->descriptor->name,
                          r);
        r = codec_decode(buf, len, rx->types, rx->n_types, d->descriptor->name,
                         rx->verify ? &key->pub : NULL, &again, &error);
        if (r < 0)
                fuzz_fail("%s: a re-encoded %s is refused: %s", rx->name, d->descriptor->name,
                          strna(error));
        if (!same_message(d->body, again.body))
                fuzz_fail("%s: a re-encoded %s decodes to another body", rx->name,
                          d->descriptor->name);
        codec_decoded_done(&again);

        /* The AMQP type property must agree with the envelope. */
        r = codec_decode(buf, len, rx->types, rx->n_types, "baton.v1.Other", NULL, &again, NULL);
        if (r != -EPROTOTYPE)
                fuzz_fail("%s: a %s under another AMQP type gives %d", rx->name,
                          d->descriptor->name, r);

        fuzz_check_pbjson(d->body);
}

int fuzz_wire_run(const FuzzWireTarget *t, const uint8_t *data, size_t size) {
        const SignKey *key = fuzz_test_key();
        CodecDecoded d = { 0 };
        char *error = NULL;
        int r;

        r = codec_decode(data, size, t->rx->types, t->rx->n_types, NULL,
                         t->rx->verify ? &key->pub : NULL, &d, &error);
        if (r < 0) {
                if (r != -ENOMEM && !error)
                        fuzz_fail("%s: a refusal without a reason (%d)", t->rx->name, r);
                free(error);
                return 0;
        }
        FUZZ_ASSERT(!error);
        fuzz_wire_check_accepted(t->rx, &d);
        if (t->drive && (!t->body || d.descriptor == t->body))
                t->drive(&d);
        codec_decoded_done(&d);
        return 0;
}

#ifdef FUZZ_LIBFUZZER
/* libFuzzer's own mutation, for the parts this mutator picks. */
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

static uint64_t next(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* A string field mutated by libFuzzer (an embedded NUL shortens it). */
static void mutate_string(const char *s, char *buf, size_t cap) {
        size_t n = strlen(strempty(s));

        n = MIN(n, cap - 1);
        memcpy(buf, strempty(s), n);
        n = LLVMFuzzerMutate((uint8_t *) buf, n, cap - 1);
        buf[n] = '\0';
}

/* Random bytes rarely get past the envelope, and a changed body never past
 * the signature. So most mutations unpack the envelope, mutate one part
 * (the body, most often), sign the body again with the test key when the
 * input was signed or the receiver wants it, and pack: the input stays a
 * message the receiver would take from the controller. One in eight is a
 * plain byte mutation, and one in sixteen of the rest leaves a stale or
 * no signature, so the refusals stay exercised too. */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
        const FuzzReceiver *rx = fuzz_wire_target.rx;
        uint64_t st = seed;
        Baton__V1__Envelope *in, out;
        uint8_t sig[SIGN_SIGNATURE_BYTES], *body;
        char sender[80], type[80];
        size_t n, body_len;
        bool resign;
        unsigned what;

        if (next(&st) % 8 == 0 || max_size < 256)
                return LLVMFuzzerMutate(data, size, max_size);
        in = baton__v1__envelope__unpack(NULL, size, data);
        /* Room for the envelope around a body that grows to max_size - 160. */
        if (in && in->body.len > max_size - 160) {
                baton__v1__envelope__free_unpacked(in, NULL);
                in = NULL;
        }
        if (!in)
                return LLVMFuzzerMutate(data, size, max_size);
        body = malloc(max_size);
        if (!body) {
                baton__v1__envelope__free_unpacked(in, NULL);
                return LLVMFuzzerMutate(data, size, max_size);
        }

        out = *in;
        body_len = in->body.len;
        if (body_len > 0)
                memcpy(body, in->body.data, body_len);
        resign = (rx && rx->verify) || in->signature.len > 0;
        what = (unsigned) (next(&st) % 16);
        if (what < 11)
                body_len = LLVMFuzzerMutate(body, body_len, max_size - 160);
        else if (what == 11) {
                /* Another type this receiver routes (or any, for the envelope). */
                size_t n_all;
                const ProtobufCMessageDescriptor *const *all = pbjson_descriptors(&n_all);

                out.type = (char *) (rx ? rx->types[next(&st) % rx->n_types]->name
                                        : all[next(&st) % n_all]->name);
        } else if (what == 12) {
                mutate_string(in->sender, sender, sizeof(sender));
                out.sender = sender;
        } else if (what == 13) {
                mutate_string(in->type, type, sizeof(type));
                out.type = type;
        } else if (what == 14) {
                uint64_t v = next(&st);

                switch (v % 4) {
                case 0:
                        out.version = (uint32_t) (v >> 8) % 4;
                        break;
                case 1:
                        out.epoch = in->epoch + (v >> 8) % 3 - 1;
                        break;
                default:
                        out.sent_at_us = v >> 2;
                        break;
                }
        } else {
                /* A stale signature, or none at all. */
                resign = false;
                if (next(&st) % 2) {
                        out.signature = (ProtobufCBinaryData){ 0, NULL };
                        out.key_id = (char *) "";
                } else
                        body_len = LLVMFuzzerMutate(body, body_len, max_size - 160);
        }
        out.body = (ProtobufCBinaryData){ body_len, body };
        if (resign && fuzz_sign_envelope(&out, fuzz_test_key(), sig) < 0)
                abort();

        n = baton__v1__envelope__get_packed_size(&out);
        if (n <= max_size)
                baton__v1__envelope__pack(&out, data);
        baton__v1__envelope__free_unpacked(in, NULL);
        free(body);
        if (n > max_size)
                return LLVMFuzzerMutate(data, size, max_size);
        return n;
}
#endif
