/* SPDX-License-Identifier: MIT */
/* The codec as the trust boundary: round trips of every message type, and
 * every way a message from the network can be wrong (type, version, size,
 * truncation, amplification, UTF-8, NUL, enum values, signatures). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec-samples.h"
#include "codec.h"
#include "macro.h"
#include "sign.h"
#include "tap.h"

static const ProtobufCMessageDescriptor *const all_types[] = {
        &baton__v1__env_var__descriptor,         &baton__v1__shard_assignment__descriptor,
        &baton__v1__placed_unit__descriptor,     &baton__v1__placement__descriptor,
        &baton__v1__restart__descriptor,         &baton__v1__envelope__descriptor,
        &baton__v1__alert__descriptor,           &baton__v1__event__descriptor,
        &baton__v1__label__descriptor,           &baton__v1__capacity__descriptor,
        &baton__v1__unit_state__descriptor,      &baton__v1__heartbeat__descriptor,
        &baton__v1__unit_event__descriptor,      &baton__v1__shard_instance_report__descriptor,
        &baton__v1__shard_report__descriptor,    &baton__v1__unit_outcome__descriptor,
        &baton__v1__command_result__descriptor,  &baton__v1__controller_marker__descriptor,
        &baton__v1__ping_request__descriptor,    &baton__v1__hosts_request__descriptor,
        &baton__v1__spec_file__descriptor,       &baton__v1__apply_request__descriptor,
        &baton__v1__service_request__descriptor, &baton__v1__host_request__descriptor,
        &baton__v1__rollout_request__descriptor, &baton__v1__request__descriptor,
        &baton__v1__counter__descriptor,         &baton__v1__pong__descriptor,
        &baton__v1__host_info__descriptor,       &baton__v1__host_list__descriptor,
        &baton__v1__response__descriptor,        &baton__v1__response_part__descriptor,
};

static const uint8_t seed_a[SIGN_SEED_BYTES] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static const uint8_t seed_b[SIGN_SEED_BYTES] = { 9, 9, 9 };

static uint8_t *pack_message(const ProtobufCMessage *m, size_t *ret_len) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(MAX(n, 1u));

        ASSERT_NOT_NULL(buf);
        ASSERT_EQ_UINT(protobuf_c_message_pack(m, buf), n);
        *ret_len = n;
        return buf;
}

/* Builds an envelope by hand, for the cases codec_encode() refuses to make. */
static uint8_t *wrap(const char *type, uint32_t version, const uint8_t *body, size_t body_len,
                     const SignKey *sign_with, const char *key_id, size_t *ret_len) {
        Baton__V1__Envelope env = BATON__V1__ENVELOPE__INIT;
        uint8_t sig[SIGN_SIGNATURE_BYTES];

        env.version = version;
        env.sender = (char *) "test";
        env.sent_at_us = 1;
        env.epoch = 2;
        env.type = (char *) type;
        env.body.data = (uint8_t *) body;
        env.body.len = body_len;
        if (sign_with) {
                _cleanup_free_ uint8_t *payload = NULL;
                size_t payload_len;

                env.key_id = (char *) (key_id ? key_id : sign_with->pub.id);
                ASSERT_OK(codec_signed_payload(&env, &payload, &payload_len));
                ASSERT_OK(sign_detached(sign_with, payload, payload_len, sig));
                env.signature.data = sig;
                env.signature.len = sizeof(sig);
        }
        return pack_message(&env.base, ret_len);
}

static uint8_t *wrap_message(const ProtobufCMessage *m, size_t *ret_len) {
        _cleanup_free_ uint8_t *body = NULL;
        size_t body_len;

        body = pack_message(m, &body_len);
        return wrap(m->descriptor->name, CODEC_PROTOCOL_VERSION, body, body_len, NULL, NULL,
                    ret_len);
}

/* Decodes allowing only `d` (all types when NULL) and releases the result. */
static int decode_one(const uint8_t *buf, size_t len, const ProtobufCMessageDescriptor *d,
                      const char *amqp_type, const SignPublicKey *verify, char **ret_error) {
        CodecDecoded dec = { 0 };
        int r;

        if (d)
                r = codec_decode(buf, len, &d, 1, amqp_type, verify, &dec, ret_error);
        else
                r = codec_decode(buf, len, all_types, ELEMENTSOF(all_types), amqp_type, verify,
                                 &dec, ret_error);
        if (r >= 0) {
                ASSERT_NOT_NULL(dec.body);
                ASSERT_NOT_NULL(dec.envelope);
        }
        codec_decoded_done(&dec);
        return r;
}

static const CodecSample *sample(const char *name) {
        size_t n;
        const CodecSample *s = codec_samples(&n);

        for (size_t i = 0; i < n; i++)
                if (streq(s[i].name, name))
                        return &s[i];
        TAP_FAIL_("no sample %s", name);
}

TEST(utf8_validator) {
        static const char *const good[] = {
                "",
                "plain ascii",
                "caf\xc3\xa9",
                "\xe2\x82\xac",
                "\xef\xbf\xbd",
                "\xf0\x9f\x98\x80", /* U+1F600 */
                "\xf4\x8f\xbf\xbf", /* U+10FFFF */
                "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
                "\xee\x80\x80",     /* U+E000, just above */
                "\xc2\x80",
                "\xdf\xbf",
                "\xe0\xa0\x80",
                "\xf0\x90\x80\x80",
        };
        static const char *const bad[] = {
                "\x80", /* lone continuation */
                "\xbf",
                "\xc0\xaf",         /* overlong '/' */
                "\xc1\xbf",         /* overlong */
                "\xe0\x80\xaf",     /* overlong 3-byte */
                "\xe0\x9f\xbf",     /* overlong 3-byte, top */
                "\xf0\x80\x80\xaf", /* overlong 4-byte */
                "\xf0\x8f\xbf\xbf", /* overlong 4-byte, top */
                "\xed\xa0\x80",     /* U+D800 surrogate */
                "\xed\xbf\xbf",     /* U+DFFF surrogate */
                "\xf4\x90\x80\x80", /* U+110000 */
                "\xf5\x80\x80\x80",
                "\xf8\x88\x80\x80\x80",
                "\xfe",
                "\xff",
                "\xc3", /* truncated */
                "\xe2\x82",
                "\xf0\x9f\x98",
                "caf\xc3",
                "\xc3\x28", /* bad continuation */
                "\xe2\x28\xa1",
                "\xf0\x9f\x28\x80",
                "\xf0\x9f\x98\x28",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                if (!codec_utf8_is_valid(good[i], strlen(good[i])))
                        TAP_FAIL_("good[%zu] refused", i);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (codec_utf8_is_valid(bad[i], strlen(bad[i])))
                        TAP_FAIL_("bad[%zu] accepted", i);

        /* A NUL is valid UTF-8 but not a C string. */
        ASSERT_FALSE(codec_utf8_is_valid("a\0b", 3));
        ASSERT_TRUE(codec_utf8_is_valid(NULL, 0));
        /* Each length is checked against the end, not the terminator. */
        ASSERT_FALSE(codec_utf8_is_valid("\xc3\xa9", 1));
}

TEST(short_type) {
        ASSERT_STREQ(codec_short_type("baton.v1.Heartbeat"), "Heartbeat");
        ASSERT_STREQ(codec_short_type("Heartbeat"), "Heartbeat");
        ASSERT_STREQ(codec_short_type("baton.v1."), "");
        ASSERT_NULL(codec_short_type(NULL));
}

/* The samples must set every field of every message somewhere, so a field
 * added to a .proto without a sample value fails here. */
typedef struct Coverage {
        bool seen;
        bool set[64];
} Coverage;

static Coverage coverage[ELEMENTSOF(all_types)];

static size_t type_index(const ProtobufCMessageDescriptor *d) {
        for (size_t i = 0; i < ELEMENTSOF(all_types); i++)
                if (all_types[i] == d)
                        return i;
        TAP_FAIL_("message type %s missing from all_types[]", d->name);
}

static void cover(const ProtobufCMessage *m) {
        const ProtobufCMessageDescriptor *d = m->descriptor;
        const uint8_t *base = (const uint8_t *) m;
        Coverage *c = &coverage[type_index(d)];

        c->seen = true;
        ASSERT_LE_UINT(d->n_fields, ELEMENTSOF(c->set));
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                const uint8_t *p = base + f->offset;
                bool set = false;

                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n;
                        void *const *a;

                        memcpy(&n, base + f->quantifier_offset, sizeof(n));
                        memcpy(&a, p, sizeof(a));
                        set = n > 0;
                        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                                for (size_t k = 0; k < n; k++)
                                        cover(a[k]);
                        c->set[i] |= set;
                        continue;
                }
                if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                        uint32_t oc;

                        memcpy(&oc, base + f->quantifier_offset, sizeof(oc));
                        if (oc != f->id)
                                continue;
                        set = true;
                }

                switch (f->type) {
                case PROTOBUF_C_TYPE_STRING: {
                        const char *s;
                        memcpy(&s, p, sizeof(s));
                        set = set || (s && *s);
                        break;
                }
                case PROTOBUF_C_TYPE_MESSAGE: {
                        const ProtobufCMessage *sub;
                        memcpy(&sub, p, sizeof(sub));
                        set = set || sub;
                        if (sub)
                                cover(sub);
                        break;
                }
                case PROTOBUF_C_TYPE_BYTES: {
                        ProtobufCBinaryData b;
                        memcpy(&b, p, sizeof(b));
                        set = set || b.len > 0;
                        break;
                }
                case PROTOBUF_C_TYPE_INT64:
                case PROTOBUF_C_TYPE_SINT64:
                case PROTOBUF_C_TYPE_SFIXED64:
                case PROTOBUF_C_TYPE_UINT64:
                case PROTOBUF_C_TYPE_FIXED64:
                case PROTOBUF_C_TYPE_DOUBLE: {
                        uint64_t v;
                        memcpy(&v, p, sizeof(v));
                        set = set || v != 0;
                        break;
                }
                default: { /* 32-bit scalars, bool, enum */
                        uint32_t v;
                        memcpy(&v, p, sizeof(v));
                        set = set || v != 0;
                        break;
                }
                }
                c->set[i] |= set;
        }
}

TEST(samples_set_every_field) {
        const CodecSample *s;
        size_t n;

        memset(coverage, 0, sizeof(coverage));
        s = codec_samples(&n);
        for (size_t i = 0; i < n; i++)
                cover(s[i].msg);

        for (size_t t = 0; t < ELEMENTSOF(all_types); t++) {
                if (!coverage[t].seen)
                        TAP_FAIL_("no sample contains a %s", all_types[t]->name);
                for (unsigned i = 0; i < all_types[t]->n_fields; i++)
                        if (!coverage[t].set[i])
                                TAP_FAIL_("no sample sets %s.%s", all_types[t]->name,
                                          all_types[t]->fields[i].name);
        }
}

static void round_trip(const CodecSample *s, const SignKey *key) {
        _cleanup_free_ uint8_t *buf = NULL, *want = NULL, *got = NULL;
        _cleanup_free_ char *error = NULL;
        const ProtobufCMessageDescriptor *d = s->msg->descriptor;
        CodecDecoded dec = { 0 };
        size_t len, want_len, got_len;
        int r;

        ASSERT_OK(codec_encode(s->msg, "host-a", 77, 1700000000000000, key, &buf, &len));
        r = codec_decode(buf, len, &d, 1, d->name, key ? &key->pub : NULL, &dec, &error);
        if (r < 0)
                TAP_FAIL_("%s: %s", s->name, strna(error));

        ASSERT_TRUE(dec.descriptor == d);
        ASSERT_TRUE(dec.body->descriptor == d);
        ASSERT_EQ_UINT(dec.envelope->version, CODEC_PROTOCOL_VERSION);
        ASSERT_STREQ(dec.envelope->sender, "host-a");
        ASSERT_EQ_UINT(dec.envelope->epoch, 77);
        ASSERT_EQ_UINT(dec.envelope->sent_at_us, 1700000000000000);
        ASSERT_STREQ(dec.envelope->type, d->name);
        ASSERT_EQ_UINT(dec.envelope->signature.len, key ? SIGN_SIGNATURE_BYTES : 0);
        ASSERT_STREQ(dec.envelope->key_id, key ? key->pub.id : "");

        /* Same bytes again means every field survived. */
        want = pack_message(s->msg, &want_len);
        got = pack_message(dec.body, &got_len);
        ASSERT_EQ_UINT(got_len, want_len);
        if (memcmp(got, want, want_len) != 0)
                TAP_FAIL_("%s: decoded body differs from the original", s->name);

        codec_decoded_done(&dec);
        ASSERT_NULL(dec.body);
        ASSERT_NULL(dec.allocator_state);
}

TEST(round_trip_every_type) {
        const CodecSample *s;
        size_t n;

        s = codec_samples(&n);
        for (size_t i = 0; i < n; i++)
                round_trip(&s[i], NULL);
}

TEST(round_trip_every_type_signed) {
        const CodecSample *s;
        SignKey key;
        size_t n;

        ASSERT_OK(sign_key_from_seed(seed_a, &key));
        s = codec_samples(&n);
        for (size_t i = 0; i < n; i++)
                round_trip(&s[i], &key);
}

TEST(round_trip_values) {
        _cleanup_free_ uint8_t *buf = NULL;
        const ProtobufCMessageDescriptor *d[] = { &baton__v1__heartbeat__descriptor,
                                                  &baton__v1__request__descriptor };
        CodecDecoded dec = { 0 };
        const Baton__V1__Heartbeat *hb;
        const Baton__V1__Request *rq;
        size_t len;

        ASSERT_OK(codec_encode(sample("heartbeat")->msg, "host-e", 1, 2, NULL, &buf, &len));
        ASSERT_OK(codec_decode(buf, len, d, ELEMENTSOF(d), NULL, NULL, &dec, NULL));
        ASSERT_TRUE(dec.descriptor == &baton__v1__heartbeat__descriptor);
        hb = (const Baton__V1__Heartbeat *) dec.body;
        ASSERT_STREQ(hb->host, "host-e");
        ASSERT_EQ_UINT(hb->n_units, 2);
        ASSERT_STREQ(hb->units[0]->status_text, "ready=0-12 connecting=13");
        ASSERT_EQ_UINT(hb->units[0]->memory_bytes, UINT64_MAX);
        ASSERT_STREQ(hb->units[1]->name, "audio@0.service");
        ASSERT_EQ_UINT(hb->capacity->memory_total_bytes, UINT64_C(68719476736));
        ASSERT_STREQ(hb->labels[1]->value, "eu");
        codec_decoded_done(&dec);
        free(buf);
        buf = NULL;

        ASSERT_OK(codec_encode(sample("request-service")->msg, "batonctl:alice", 0, 3, NULL, &buf,
                               &len));
        ASSERT_OK(codec_decode(buf, len, d, ELEMENTSOF(d), "baton.v1.Request", NULL, &dec, NULL));
        rq = (const Baton__V1__Request *) dec.body;
        ASSERT_EQ_INT(rq->args_case, BATON__V1__REQUEST__ARGS_SERVICE);
        ASSERT_EQ_INT(rq->service->instance, -1);
        ASSERT_EQ_UINT(rq->service->shards, 128);
        codec_decoded_done(&dec);
        /* Releasing twice, or something never decoded, is harmless. */
        codec_decoded_done(&dec);
}

TEST(wrong_type) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        const ProtobufCMessageDescriptor *d[] = { &baton__v1__placement__descriptor,
                                                  &baton__v1__restart__descriptor };
        CodecDecoded dec = { 0 };
        size_t len;

        ASSERT_OK(codec_encode(sample("heartbeat")->msg, "host-e", 1, 2, NULL, &buf, &len));
        ASSERT_ERR(codec_decode(buf, len, d, ELEMENTSOF(d), NULL, NULL, &dec, &error), -EPROTOTYPE);
        ASSERT_STREQ(error, "message type \"baton.v1.Heartbeat\" is not accepted here");
        ASSERT_NULL(dec.envelope);
        ASSERT_NULL(dec.allocator_state);

        /* Nothing allowed: nothing accepted. */
        ASSERT_ERR(codec_decode(buf, len, NULL, 0, NULL, NULL, &dec, NULL), -EPROTOTYPE);
}

TEST(unknown_type_name_is_quoted_safely) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        char type[300];
        size_t len;

        memset(type, 'x', sizeof(type) - 1);
        type[sizeof(type) - 1] = '\0';
        memcpy(type, "a\nb\x1b", 4);
        buf = wrap(type, CODEC_PROTOCOL_VERSION, (const uint8_t *) "", 0, NULL, NULL, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EPROTOTYPE);
        ASSERT_NOT_NULL(error);
        ASSERT_NULL(strchr(error, '\n'));
        ASSERT_NULL(strchr(error, '\x1b'));
        ASSERT_LT_INT(strlen(error), 200);
        ASSERT_NOT_NULL(strstr(error, "a?b?xxx"));
}

TEST(amqp_type_mismatch) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        size_t len;

        ASSERT_OK(codec_encode(sample("restart")->msg, "controller", 5, 6, NULL, &buf, &len));
        ASSERT_OK(decode_one(buf, len, NULL, "baton.v1.Restart", NULL, NULL));
        ASSERT_OK(decode_one(buf, len, NULL, NULL, NULL, NULL));
        ASSERT_ERR(decode_one(buf, len, NULL, "baton.v1.Placement", NULL, &error), -EPROTOTYPE);
        ASSERT_STREQ(error, "envelope type \"baton.v1.Restart\" does not match the AMQP type "
                            "\"baton.v1.Placement\"");
        free(error);
        error = NULL;
        ASSERT_ERR(decode_one(buf, len, NULL, "Restart", NULL, &error), -EPROTOTYPE);
        ASSERT_ERR(decode_one(buf, len, NULL, "", NULL, NULL), -EPROTOTYPE);
}

TEST(version_mismatch) {
        _cleanup_free_ uint8_t *body = NULL, *buf = NULL;
        _cleanup_free_ char *error = NULL;
        size_t body_len, len;

        body = pack_message(sample("restart")->msg, &body_len);
        buf = wrap("baton.v1.Restart", 3, body, body_len, NULL, NULL, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EPROTONOSUPPORT);
        ASSERT_STREQ(error, "baton.v1.Envelope.version: protocol version 3, expected 2");
        free(buf);

        /* Version 1 (a signature over the body alone) is read from unsigned
         * senders (agents of baton 0.1), never where a signature matters. */
        buf = wrap("baton.v1.Restart", 1, body, body_len, NULL, NULL, &len);
        ASSERT_OK(decode_one(buf, len, NULL, NULL, NULL, NULL));
        free(buf);
        {
                SignKey key;
                uint8_t sig[SIGN_SIGNATURE_BYTES];
                Baton__V1__Envelope env = BATON__V1__ENVELOPE__INIT;

                ASSERT_OK(sign_key_from_seed(seed_a, &key));
                ASSERT_OK(sign_detached(&key, body, body_len, sig));
                env.version = 1;
                env.type = (char *) "baton.v1.Restart";
                env.body.data = body;
                env.body.len = body_len;
                env.signature.data = sig;
                env.signature.len = sizeof(sig);
                env.key_id = key.pub.id;
                buf = pack_message(&env.base, &len);
                free(error);
                error = NULL;
                ASSERT_ERR(decode_one(buf, len, NULL, NULL, &key.pub, &error), -EPROTONOSUPPORT);
                ASSERT_STREQ(error, "baton.v1.Envelope.version: protocol version 1, expected 2 "
                                    "(signed commands need it)");
                free(buf);
        }

        buf = wrap("baton.v1.Restart", 0, body, body_len, NULL, NULL, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, NULL), -EPROTONOSUPPORT);

        /* An empty buffer is a valid, all-default envelope: version 0. */
        ASSERT_ERR(decode_one((const uint8_t *) "", 0, NULL, NULL, NULL, NULL), -EPROTONOSUPPORT);
        ASSERT_ERR(decode_one(NULL, 0, NULL, NULL, NULL, NULL), -EPROTONOSUPPORT);
}

TEST(truncated_at_every_length) {
        _cleanup_free_ uint8_t *buf = NULL;
        SignKey key;
        size_t len;
        unsigned ok = 0;

        ASSERT_OK(sign_key_from_seed(seed_a, &key));
        ASSERT_OK(codec_encode(sample("placement")->msg, "controller", 9, 10, &key, &buf, &len));

        for (size_t n = 0; n < len; n++) {
                /* A copy of exactly n bytes, so ASan sees any read past it. */
                _cleanup_free_ uint8_t *t = malloc(MAX(n, 1u));
                _cleanup_free_ char *error = NULL;
                int r;

                ASSERT_NOT_NULL(t);
                memcpy(t, buf, n);
                r = decode_one(t, n, NULL, NULL, NULL, &error);
                if (r >= 0)
                        ok++;
                else
                        ASSERT_NOT_NULL(error);
                /* With the signature required nothing short of the whole verifies. */
                ASSERT_TRUE(decode_one(t, n, NULL, NULL, &key.pub, NULL) < 0);
        }
        /* Cuts at field boundaries before the body can still be a valid
         * (unsigned, empty-bodied) envelope; most cuts are not. */
        ASSERT_LT_INT(ok, len / 2);
        ASSERT_OK(decode_one(buf, len, NULL, NULL, &key.pub, NULL));
}

TEST(oversized) {
        _cleanup_free_ uint8_t *buf = NULL, *enc = NULL;
        _cleanup_free_ char *error = NULL, *big = NULL;
        Baton__V1__Event ev = BATON__V1__EVENT__INIT;
        size_t len;

        buf = calloc(1, CODEC_MAX_MESSAGE_SIZE + 1);
        ASSERT_NOT_NULL(buf);
        ASSERT_ERR(decode_one(buf, CODEC_MAX_MESSAGE_SIZE + 1, NULL, NULL, NULL, &error),
                   -EMSGSIZE);
        ASSERT_NOT_NULL(strstr(error, "exceeds the limit"));

        /* The sender refuses what no receiver would take. */
        big = malloc(CODEC_MAX_MESSAGE_SIZE + 1);
        ASSERT_NOT_NULL(big);
        memset(big, 'j', CODEC_MAX_MESSAGE_SIZE);
        big[CODEC_MAX_MESSAGE_SIZE] = '\0';
        ev.detail_json = big;
        ASSERT_ERR(codec_encode(&ev.base, "controller", 1, 2, NULL, &enc, &len), -EMSGSIZE);
        ASSERT_NULL(enc);

        /* Just under the limit body-wise, but the envelope pushes it over. */
        big[CODEC_MAX_MESSAGE_SIZE - 8] = '\0';
        ASSERT_ERR(codec_encode(&ev.base, "controller", 1, 2, NULL, &enc, &len), -EMSGSIZE);

        /* A large but legal one goes through. */
        big[CODEC_MAX_MESSAGE_SIZE / 2] = '\0';
        ASSERT_OK(codec_encode(&ev.base, "controller", 1, 2, NULL, &enc, &len));
        ASSERT_OK(decode_one(enc, len, &baton__v1__event__descriptor, NULL, NULL, NULL));
}

/* Heartbeat.units (field 9) repeated as empty messages: two bytes on the
 * wire each, a whole UnitState on the heap each. */
static uint8_t *amplified_heartbeat(size_t body_len, size_t *ret_len) {
        _cleanup_free_ uint8_t *body = malloc(body_len);

        ASSERT_NOT_NULL(body);
        for (size_t i = 0; i + 1 < body_len; i += 2) {
                body[i] = (9 << 3) | 2;
                body[i + 1] = 0;
        }
        return wrap("baton.v1.Heartbeat", CODEC_PROTOCOL_VERSION, body, body_len & ~(size_t) 1,
                    NULL, NULL, ret_len);
}

TEST(amplification_hits_budget) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        size_t len;

        buf = amplified_heartbeat(1024 * 1024, &len);
        ASSERT_LE_UINT(len, CODEC_MAX_MESSAGE_SIZE);
        ASSERT_ERR(decode_one(buf, len, &baton__v1__heartbeat__descriptor, NULL, NULL, &error),
                   -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Heartbeat: exceeds the decoding memory budget of 33554432 "
                            "bytes");
        free(buf);

        /* The same shape, small, is fine: it is the size that is refused. */
        buf = amplified_heartbeat(2000, &len);
        ASSERT_OK(decode_one(buf, len, &baton__v1__heartbeat__descriptor, NULL, NULL, NULL));
}

TEST(bad_utf8_in_nested_repeated_string) {
        _cleanup_free_ uint8_t *buf = NULL, *enc = NULL;
        _cleanup_free_ char *error = NULL;
        Baton__V1__Heartbeat hb = BATON__V1__HEARTBEAT__INIT;
        Baton__V1__UnitState u[4], *up[4];
        size_t len;

        for (size_t i = 0; i < ELEMENTSOF(u); i++) {
                baton__v1__unit_state__init(&u[i]);
                u[i].name = (char *) "ok.service";
                up[i] = &u[i];
        }
        u[3].name = (char *) "bad\xc0\xaf.service";
        hb.host = (char *) "host-a";
        hb.n_units = ELEMENTSOF(u);
        hb.units = up;

        /* protobuf-c packs it happily; codec_encode() does not. */
        ASSERT_ERR(codec_encode(&hb.base, "host-a", 1, 2, NULL, &enc, &len), -EINVAL);
        ASSERT_ERR(codec_validate(&hb.base, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Heartbeat.units[3].name: invalid UTF-8");
        free(error);
        error = NULL;

        buf = wrap_message(&hb.base, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Heartbeat.units[3].name: invalid UTF-8");
        free(error);
        error = NULL;
        free(buf);

        /* A surrogate in a repeated string of a message in a oneof. */
        Baton__V1__Response rs = BATON__V1__RESPONSE__INIT;
        Baton__V1__HostList hl = BATON__V1__HOST_LIST__INIT;
        Baton__V1__HostInfo hi = BATON__V1__HOST_INFO__INIT, *hip = &hi;
        char *labels[] = { (char *) "a=b", (char *) "c=\xed\xa0\x80" };

        hi.n_labels = 2;
        hi.labels = labels;
        hl.n_hosts = 1;
        hl.hosts = &hip;
        rs.result_case = BATON__V1__RESPONSE__RESULT_HOSTS;
        rs.hosts = &hl;
        buf = wrap_message(&rs.base, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Response.hosts.hosts[0].labels[1]: invalid UTF-8");
}

TEST(bad_utf8_in_envelope) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        Baton__V1__Envelope env = BATON__V1__ENVELOPE__INIT;
        size_t len;

        env.version = CODEC_PROTOCOL_VERSION;
        env.sender = (char *) "host\xff";
        env.type = (char *) "baton.v1.PingRequest";
        buf = pack_message(&env.base, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Envelope.sender: invalid UTF-8");

        ASSERT_ERR(codec_encode(sample("ping-request")->msg, "host\xff", 1, 2, NULL, &buf, &len),
                   -EINVAL);
}

TEST(nul_in_string) {
        /* Heartbeat { host: "a\0b" } */
        static const uint8_t flat[] = { 0x0a, 0x03, 'a', 0, 'b' };
        /* Heartbeat { units {} units { name: "x\0" } } */
        static const uint8_t nested[] = { 0x4a, 0x00, 0x4a, 0x04, 0x0a, 0x02, 'x', 0 };
        /* Envelope { sender: "c\0" version: 1 } */
        static const uint8_t env[] = { 0x12, 0x02, 'c', 0, 0x08, 0x01 };
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        size_t len;

        buf = wrap("baton.v1.Heartbeat", 1, flat, sizeof(flat), NULL, NULL, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Heartbeat.host: NUL byte in string");
        free(error);
        error = NULL;
        free(buf);

        buf = wrap("baton.v1.Heartbeat", 1, nested, sizeof(nested), NULL, NULL, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Heartbeat.units[1].name: NUL byte in string");
        free(error);
        error = NULL;

        ASSERT_ERR(decode_one(env, sizeof(env), NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Envelope.sender: NUL byte in string");
}

TEST(unknown_enum_value) {
        _cleanup_free_ uint8_t *buf = NULL, *enc = NULL;
        _cleanup_free_ char *error = NULL;
        Baton__V1__Alert alert = BATON__V1__ALERT__INIT, *ap = &alert;
        Baton__V1__Response rs = BATON__V1__RESPONSE__INIT;
        size_t len;

        alert.kind = (char *) "host-down";
        alert.severity = 99;
        buf = wrap_message(&alert.base, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Alert.severity: 99 is not a value of baton.v1.Severity");
        free(error);
        error = NULL;
        free(buf);
        ASSERT_ERR(codec_encode(&alert.base, "controller", 1, 2, NULL, &enc, &len), -EINVAL);

        /* Negative, and nested in a repeated field. */
        alert.severity = -5;
        rs.n_alerts = 1;
        rs.alerts = &ap;
        buf = wrap_message(&rs.base, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Response.alerts[0].severity: -5 is not a value of "
                            "baton.v1.Severity");
        free(error);
        error = NULL;
        free(buf);

        /* A gap in the enum: Status has 0, 1, 2 and 4. */
        alert.severity = BATON__V1__SEVERITY__SEVERITY_INFO;
        rs.status = 3;
        buf = wrap_message(&rs.base, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Response.status: 3 is not a value of baton.v1.Status");
        free(buf);

        rs.status = BATON__V1__STATUS__STATUS_REFUSED;
        buf = wrap_message(&rs.base, &len);
        ASSERT_OK(decode_one(buf, len, NULL, NULL, NULL, NULL));
}

TEST(invalid_local_messages) {
        _cleanup_free_ char *error = NULL;
        _cleanup_free_ uint8_t *enc = NULL;
        Baton__V1__Request rq = BATON__V1__REQUEST__INIT;
        Baton__V1__Placement pl = BATON__V1__PLACEMENT__INIT;
        Baton__V1__PlacedUnit *units[2] = { NULL, NULL };
        char *removed[1] = { NULL };
        size_t len;

        /* A oneof case that names no member. */
        rq.args_case = 99;
        ASSERT_ERR(codec_validate(&rq.base, &error), -EBADMSG);
        ASSERT_NOT_NULL(strstr(error, "baton.v1.Request: oneof case 99"));
        free(error);
        error = NULL;
        ASSERT_ERR(codec_encode(&rq.base, "batonctl", 1, 2, NULL, &enc, &len), -EINVAL);

        /* NULL elements would crash protobuf-c's packer. */
        pl.n_units = 2;
        pl.units = units;
        ASSERT_ERR(codec_validate(&pl.base, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Placement.units[0]: NULL message");
        free(error);
        error = NULL;
        pl.n_units = 0;
        pl.n_removed = 1;
        pl.removed = removed;
        ASSERT_ERR(codec_validate(&pl.base, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Placement.removed[0]: NULL string");
        free(error);
        error = NULL;
        pl.removed = NULL;
        ASSERT_ERR(codec_validate(&pl.base, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Placement.removed: 1 elements without an array");
        free(error);
        error = NULL;
        ASSERT_ERR(codec_encode(&pl.base, "controller", 1, 2, NULL, &enc, &len), -EINVAL);

        /* Unset singular strings and messages are simply empty. */
        pl.n_removed = 0;
        pl.host = NULL;
        ASSERT_OK(codec_validate(&pl.base, NULL));
        rq.args_case = BATON__V1__REQUEST__ARGS_APPLY;
        rq.apply = NULL;
        ASSERT_OK(codec_validate(&rq.base, NULL));
}

TEST(signed_round_trip) {
        _cleanup_free_ uint8_t *buf = NULL;
        const ProtobufCMessageDescriptor *d = &baton__v1__placement__descriptor;
        CodecDecoded dec = { 0 };
        SignKey key;
        size_t len;

        ASSERT_OK(sign_key_from_seed(seed_a, &key));
        ASSERT_OK(codec_encode(sample("placement")->msg, "controller", 42, 5, &key, &buf, &len));
        ASSERT_OK(codec_decode(buf, len, &d, 1, "baton.v1.Placement", &key.pub, &dec, NULL));
        ASSERT_STREQ(dec.envelope->key_id, key.pub.id);
        ASSERT_EQ_UINT(dec.envelope->signature.len, SIGN_SIGNATURE_BYTES);
        {
                _cleanup_free_ uint8_t *payload = NULL;
                size_t payload_len;

                /* The signature covers more than the body: the body alone fails. */
                ASSERT_OK(codec_signed_payload(dec.envelope, &payload, &payload_len));
                ASSERT_OK(sign_verify(&key.pub, payload, payload_len, dec.envelope->signature.data,
                                      dec.envelope->signature.len));
                ASSERT_ERR(sign_verify(&key.pub, dec.envelope->body.data, dec.envelope->body.len,
                                       dec.envelope->signature.data, dec.envelope->signature.len),
                           -EKEYREJECTED);
        }
        ASSERT_EQ_UINT(((Baton__V1__Placement *) dec.body)->generation, (UINT64_C(1) << 40) + 7);
        codec_decoded_done(&dec);

        /* A signed message is still accepted where none is required. */
        ASSERT_OK(decode_one(buf, len, d, NULL, NULL, NULL));
}

TEST(tampered_body_rejected) {
        _cleanup_free_ uint8_t *buf = NULL, *body = NULL;
        _cleanup_free_ char *error = NULL;
        SignKey key;
        size_t len, body_len;
        uint8_t *at;
        char want[128];

        ASSERT_OK(sign_key_from_seed(seed_a, &key));
        ASSERT_OK(codec_encode(sample("restart")->msg, "controller", 43, 5, &key, &buf, &len));
        body = pack_message(sample("restart")->msg, &body_len);
        at = memmem(buf, len, body, body_len);
        ASSERT_NOT_NULL(at);

        /* "host-b" → "host-c": still a well-formed Restart, no longer signed. */
        at = memmem(at, body_len, "host-b", 6);
        ASSERT_NOT_NULL(at);
        at[5] = 'c';
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, &key.pub, &error), -EKEYREJECTED);
        snprintf(want, sizeof(want), "baton.v1.Restart: bad signature for key %s", key.pub.id);
        ASSERT_STREQ(error, want);
        /* Without verification it decodes: the body itself is fine. */
        ASSERT_OK(decode_one(buf, len, NULL, NULL, NULL, NULL));
}

TEST(tampered_signature_rejected) {
        _cleanup_free_ uint8_t *buf = NULL, *body = NULL;
        uint8_t sig[SIGN_SIGNATURE_BYTES];
        SignKey key;
        size_t len, body_len;
        uint8_t *at;

        ASSERT_OK(sign_key_from_seed(seed_a, &key));
        ASSERT_OK(codec_encode(sample("restart")->msg, "controller", 43, 5, &key, &buf, &len));
        body = pack_message(sample("restart")->msg, &body_len);
        {
                Baton__V1__Envelope env = BATON__V1__ENVELOPE__INIT;
                _cleanup_free_ uint8_t *payload = NULL;
                size_t payload_len;

                env.version = CODEC_PROTOCOL_VERSION;
                env.sender = (char *) "controller";
                env.epoch = 43;
                env.sent_at_us = 5;
                env.type = (char *) "baton.v1.Restart";
                env.key_id = key.pub.id;
                env.body.data = body;
                env.body.len = body_len;
                ASSERT_OK(codec_signed_payload(&env, &payload, &payload_len));
                /* Ed25519 is deterministic: the same signature as the encoder's. */
                ASSERT_OK(sign_detached(&key, payload, payload_len, sig));
        }
        at = memmem(buf, len, sig, sizeof(sig));
        ASSERT_NOT_NULL(at);
        at[10] ^= 0x01;
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, &key.pub, NULL), -EKEYREJECTED);
}

TEST(unsigned_when_required) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        SignKey key;
        size_t len;
        char want[128];

        ASSERT_OK(sign_key_from_seed(seed_a, &key));
        ASSERT_OK(codec_encode(sample("restart")->msg, "controller", 43, 5, NULL, &buf, &len));
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, &key.pub, &error), -EKEYREJECTED);
        snprintf(want, sizeof(want),
                 "baton.v1.Restart: unsigned, but a signature by key %s is required", key.pub.id);
        ASSERT_STREQ(error, want);
}

TEST(wrong_key_rejected) {
        _cleanup_free_ uint8_t *buf = NULL, *body = NULL;
        _cleanup_free_ char *error = NULL;
        SignKey a, b;
        size_t len, body_len;

        ASSERT_OK(sign_key_from_seed(seed_a, &a));
        ASSERT_OK(sign_key_from_seed(seed_b, &b));
        ASSERT_FALSE(streq(a.pub.id, b.pub.id));

        /* Signed by b, verified against a: refused by key id. */
        ASSERT_OK(codec_encode(sample("placement")->msg, "controller", 1, 2, &b, &buf, &len));
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, &a.pub, &error), -EKEYREJECTED);
        ASSERT_NOT_NULL(strstr(error, "signed by key"));
        free(error);
        error = NULL;
        free(buf);

        /* Signed by b but claiming a's key id: refused by the signature. */
        body = pack_message(sample("placement")->msg, &body_len);
        buf = wrap("baton.v1.Placement", CODEC_PROTOCOL_VERSION, body, body_len, &b, a.pub.id,
                   &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, &a.pub, &error), -EKEYREJECTED);
        ASSERT_NOT_NULL(strstr(error, "bad signature"));
        free(buf);

        /* Signed by a with the right id: accepted. */
        buf = wrap("baton.v1.Placement", CODEC_PROTOCOL_VERSION, body, body_len, &a, NULL, &len);
        ASSERT_OK(decode_one(buf, len, NULL, NULL, &a.pub, NULL));
}

TEST(short_signature_rejected) {
        _cleanup_free_ uint8_t *buf = NULL, *body = NULL;
        _cleanup_free_ char *error = NULL;
        Baton__V1__Envelope env = BATON__V1__ENVELOPE__INIT;
        uint8_t sig[SIGN_SIGNATURE_BYTES];
        SignKey key;
        size_t len, body_len;

        ASSERT_OK(sign_key_from_seed(seed_a, &key));
        body = pack_message(sample("restart")->msg, &body_len);
        ASSERT_OK(sign_detached(&key, body, body_len, sig));
        env.version = CODEC_PROTOCOL_VERSION;
        env.type = (char *) "baton.v1.Restart";
        env.body.data = body;
        env.body.len = body_len;
        env.signature.data = sig;
        env.signature.len = 63;
        env.key_id = key.pub.id;
        buf = pack_message(&env.base, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, &key.pub, &error), -EKEYREJECTED);
        ASSERT_STREQ(error, "baton.v1.Restart: signature of 63 bytes, expected 64");
}

/* Re-signs nothing: takes a message signed by the controller, changes one
 * envelope field an attacker controls, and packs it again. */
static uint8_t *relabel(const uint8_t *buf, size_t len, const char *type, const char *sender,
                        int64_t epoch_delta, int64_t time_delta, size_t *ret_len) {
        Baton__V1__Envelope *env = baton__v1__envelope__unpack(NULL, len, buf);
        char *own_type, *own_sender;
        uint8_t *out;

        ASSERT_NOT_NULL(env);
        own_type = env->type;
        own_sender = env->sender;
        if (type)
                env->type = (char *) type;
        if (sender)
                env->sender = (char *) sender;
        env->epoch += (uint64_t) epoch_delta;
        env->sent_at_us += (uint64_t) time_delta;
        out = pack_message(&env->base, ret_len);
        env->type = own_type; /* the unpacked strings are freed with env */
        env->sender = own_sender;
        baton__v1__envelope__free_unpacked(env, NULL);
        return out;
}

TEST(signature_binds_type_sender_epoch_and_time) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        Baton__V1__Alert alert = BATON__V1__ALERT__INIT;
        SignKey key;
        size_t len;
        struct {
                const char *type, *sender;
                int64_t epoch, time;
        } changes[] = {
                { "baton.v1.Restart", NULL, 0, 0 },   /* a signed Alert re-labelled as a command */
                { "baton.v1.Placement", NULL, 0, 0 }, /* … or as a Placement */
                { NULL, "batonctl:eve", 0, 0 },       /* another sender */
                { NULL, NULL, 1, 0 },                 /* a later epoch: past an agent's fence */
                { NULL, NULL, 0, 3600 * 1000000LL },  /* a fresher send time: past the age bound */
        };

        ASSERT_OK(sign_key_from_seed(seed_a, &key));
        alert.id = (char *) "host-down/h";
        alert.kind = (char *) "host-down";
        alert.severity = BATON__V1__SEVERITY__SEVERITY_CRITICAL;
        alert.summary = (char *) "x";
        ASSERT_OK(codec_encode(&alert.base, "controller", 7, 1700000000000000, &key, &buf, &len));
        ASSERT_OK(decode_one(buf, len, NULL, NULL, &key.pub, NULL));

        for (size_t i = 0; i < ELEMENTSOF(changes); i++) {
                _cleanup_free_ uint8_t *forged = NULL;
                size_t forged_len;

                forged = relabel(buf, len, changes[i].type, changes[i].sender, changes[i].epoch,
                                 changes[i].time, &forged_len);
                free(error);
                error = NULL;
                ASSERT_ERR(decode_one(forged, forged_len, NULL, NULL, &key.pub, &error),
                           -EKEYREJECTED);
                ASSERT_CONTAINS(error, "bad signature");
        }
}

TEST(command_age) {
        Baton__V1__Envelope env = BATON__V1__ENVELOPE__INIT;
        _cleanup_free_ char *error = NULL;
        const uint64_t now = 1700000000000000, bound = 600 * 1000000ULL;

        env.type = (char *) "baton.v1.Placement";
        env.sent_at_us = now;
        ASSERT_OK(codec_check_age(&env, now, bound, NULL));
        env.sent_at_us = now - bound;
        ASSERT_OK(codec_check_age(&env, now, bound, NULL));
        env.sent_at_us = now + bound;
        ASSERT_OK(codec_check_age(&env, now, bound, NULL));
        env.sent_at_us = now - bound - 1000000;
        ASSERT_ERR(codec_check_age(&env, now, bound, &error), -ESTALE);
        ASSERT_STREQ(error, "baton.v1.Placement sent 601.0s ago, older than the 600s a command "
                            "may be");
        free(error);
        error = NULL;
        env.sent_at_us = now + bound + 500000;
        ASSERT_ERR(codec_check_age(&env, now, bound, &error), -ESTALE);
        ASSERT_STREQ(error, "baton.v1.Placement sent 600.5s in the future (clocks disagree by "
                            "more than 600s)");
        /* Extremes do not wrap around. */
        env.sent_at_us = 0;
        ASSERT_ERR(codec_check_age(&env, now, bound, NULL), -ESTALE);
        env.sent_at_us = UINT64_MAX;
        ASSERT_ERR(codec_check_age(&env, now, bound, NULL), -ESTALE);
        ASSERT_OK(codec_check_age(&env, UINT64_MAX, bound, NULL));
}

TEST(signature_checked_before_body_is_parsed) {
        _cleanup_free_ uint8_t *buf = NULL;
        SignKey key;
        size_t len;

        /* Amplification from an unsigned sender never reaches the unpacker
         * when a signature is required: refused as unsigned, not as too big. */
        ASSERT_OK(sign_key_from_seed(seed_a, &key));
        buf = amplified_heartbeat(1024 * 1024, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, &key.pub, NULL), -EKEYREJECTED);
}

TEST(unknown_fields_tolerated) {
        _cleanup_free_ uint8_t *buf = NULL, *body = NULL;
        size_t len, body_len;
        uint8_t *b;

        /* A newer sender's field 99 (string "x") and field 100 (varint). */
        body = pack_message(sample("restart")->msg, &body_len);
        b = realloc(body, body_len + 7);
        ASSERT_NOT_NULL(b);
        body = b;
        memcpy(body + body_len, "\x9a\x06\x01x\xa0\x06\x05", 7);
        buf = wrap("baton.v1.Restart", 1, body, body_len + 7, NULL, NULL, &len);
        ASSERT_OK(decode_one(buf, len, NULL, NULL, NULL, NULL));
}

TEST(garbage_rejected) {
        static const uint8_t junk[][8] = {
                { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff },
                { 0x08 },                   /* tag without value */
                { 0x12, 0x05, 'a' },        /* length past the end */
                { 0x0b, 0x00 },             /* start group */
                { 0x00, 0x00 },             /* field 0 */
                { 0x32, 0x02, 0x0a, 0x7f }, /* a body, but no version */
        };
        static const size_t lens[] = { 8, 1, 3, 2, 2, 4 };
        _cleanup_free_ char *error = NULL;

        for (size_t i = 0; i < ELEMENTSOF(junk); i++) {
                int r = decode_one(junk[i], lens[i], NULL, NULL, NULL, &error);
                if (r >= 0)
                        TAP_FAIL_("junk[%zu] accepted", i);
                ASSERT_NOT_NULL(error);
                free(error);
                error = NULL;
        }

        ASSERT_ERR(decode_one(junk[0], 8, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Envelope: malformed protobuf");
}

TEST(malformed_body) {
        static const uint8_t body[] = { 0x0a, 0x09, 'x' };
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        size_t len;

        buf = wrap("baton.v1.Restart", 1, body, sizeof(body), NULL, NULL, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Restart: malformed protobuf");
}

TEST(field_number_zero_rejected) {
        /* Field 0 with its tag as an overlong varint: protobuf-c unpacks it
         * as an unknown field but then packs a tag it refuses to read. Found
         * by fuzz-codec. */
        static const uint8_t body[] = { 0x0a, 0x01, 'h', 0x82, 0x00, 0x01, 'x' };
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        size_t len;

        buf = wrap("baton.v1.Heartbeat", 1, body, sizeof(body), NULL, NULL, &len);
        ASSERT_ERR(decode_one(buf, len, NULL, NULL, NULL, &error), -EBADMSG);
        ASSERT_STREQ(error, "baton.v1.Heartbeat: invalid field number 0 at byte 5");
}

TEST(ret_untouched_on_failure) {
        _cleanup_free_ uint8_t *buf = NULL;
        CodecDecoded dec = { (void *) 1, (void *) 2, (void *) 3, (void *) 4 };
        size_t len;

        ASSERT_OK(codec_encode(sample("restart")->msg, "controller", 1, 2, NULL, &buf, &len));
        ASSERT_ERR(codec_decode(buf, len, NULL, 0, NULL, NULL, &dec, NULL), -EPROTOTYPE);
        ASSERT_TRUE(dec.envelope == (void *) 1 && dec.descriptor == (void *) 2 &&
                    dec.body == (void *) 3 && dec.allocator_state == (void *) 4);
}

/* Random bit flips and splices of valid messages: whatever comes back, it
 * must be an answer, not a crash (run under ASan/UBSan in CI). */
TEST(mutations_never_crash) {
        const CodecSample *s;
        SignKey key;
        size_t n;
        uint64_t rng = 0x9e3779b97f4a7c15u;
        unsigned accepted = 0;

        ASSERT_OK(sign_key_from_seed(seed_a, &key));
        s = codec_samples(&n);
        for (unsigned iter = 0; iter < 20000; iter++) {
                _cleanup_free_ uint8_t *buf = NULL;
                const CodecSample *x = &s[iter % n];
                size_t len;

                ASSERT_OK(codec_encode(x->msg, "fuzz", 1, 2, iter & 1 ? &key : NULL, &buf, &len));
                for (unsigned k = 0; k < 1 + iter % 4; k++) {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        switch (rng % 3) {
                        case 0:
                                buf[(rng >> 8) % len] ^= (uint8_t) (1u << ((rng >> 40) % 8));
                                break;
                        case 1:
                                buf[(rng >> 8) % len] = (uint8_t) (rng >> 32);
                                break;
                        default:
                                len = (rng >> 8) % (len + 1);
                                break;
                        }
                        if (len == 0)
                                break;
                }
                if (decode_one(buf, len, NULL, NULL, NULL, NULL) >= 0)
                        accepted++;
                (void) decode_one(buf, len, NULL, NULL, &key.pub, NULL);
        }
        /* Some mutations keep a message valid; the point is that none crashed. */
        ASSERT_GT_INT(accepted, 0);
}

/* An answer joined from parts: read as a body of its own, within its limits. */
TEST(joined_answer) {
        Baton__V1__Response resp = BATON__V1__RESPONSE__INIT, *back;
        _cleanup_free_ char *json = malloc(6u << 20), *error = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        size_t len;

        /* Larger than a message, as the parts of a large answer are. */
        ASSERT_NOT_NULL(json);
        memset(json, 'x', (6u << 20) - 1);
        json[(6u << 20) - 1] = '\0';
        resp.result_case = BATON__V1__RESPONSE__RESULT_JSON;
        resp.json = json;
        len = protobuf_c_message_get_packed_size(&resp.base);
        ASSERT_GT_INT((int) (len > CODEC_MAX_MESSAGE_SIZE), 0);
        buf = malloc(len);
        ASSERT_NOT_NULL(buf);
        protobuf_c_message_pack(&resp.base, buf);
        ASSERT_OK(codec_decode_body(&baton__v1__response__descriptor, buf, len, &d, &error));
        ASSERT_NULL(d.envelope);
        back = (Baton__V1__Response *) d.body;
        ASSERT_EQ_UINT(strlen(back->json), (6u << 20) - 1);
        codec_decoded_done(&d);

        /* Truncated, or with bad UTF-8: refused like a body in an envelope. */
        ASSERT_ERR(codec_decode_body(&baton__v1__response__descriptor, buf, len - 1, &d, &error),
                   -EBADMSG);
        free(error);
        error = NULL;
        buf[len - 1] = 0xff;
        ASSERT_ERR(codec_decode_body(&baton__v1__response__descriptor, buf, len, &d, &error),
                   -EBADMSG);
        ASSERT_NOT_NULL(strstr(error, "json"));
        free(error);
        error = NULL;
        /* Beyond the limit of a joined answer: refused before reading. */
        ASSERT_ERR(codec_decode_body(&baton__v1__response__descriptor, buf,
                                     (size_t) CODEC_MAX_ANSWER_SIZE + 1, &d, &error),
                   -EMSGSIZE);
        ASSERT_NULL(d.body);
}

int main(void) {
        return tap_run(TESTS(
                utf8_validator, short_type, samples_set_every_field, round_trip_every_type,
                round_trip_every_type_signed, round_trip_values, wrong_type,
                unknown_type_name_is_quoted_safely, amqp_type_mismatch, version_mismatch,
                signature_binds_type_sender_epoch_and_time, command_age, truncated_at_every_length,
                oversized, amplification_hits_budget, bad_utf8_in_nested_repeated_string,
                bad_utf8_in_envelope, nul_in_string, unknown_enum_value, invalid_local_messages,
                signed_round_trip, tampered_body_rejected, tampered_signature_rejected,
                unsigned_when_required, wrong_key_rejected, short_signature_rejected,
                signature_checked_before_body_is_parsed, unknown_fields_tolerated, garbage_rejected,
                malformed_body, field_number_zero_rejected, ret_untouched_on_failure,
                mutations_never_crash, joined_answer));
}
