/* SPDX-License-Identifier: MIT */
/* pbjson: every baton message type round trips message → JSON → message to
 * the same wire bytes; the JSON has the promised shape (names, enums, bytes,
 * oneofs, big integers); bad documents fail with the path of the problem.
 * A hand-written descriptor covers the scalar types baton's .proto files do
 * not use yet (float, double, signed and fixed ints, proto2 optionals). */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec-samples.h"
#include "codec.h"
#include "macro.h"
#include "pbjson.h"
#include "tap.h"

static void messagep(ProtobufCMessage **m) {
        if (*m)
                protobuf_c_message_free_unpacked(*m, NULL);
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *ret_len) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(MAX(n, 1u));

        ASSERT_NOT_NULL(buf);
        ASSERT_EQ_UINT(protobuf_c_message_pack(m, buf), n);
        *ret_len = n;
        return buf;
}

static bool same_wire(const ProtobufCMessage *a, const ProtobufCMessage *b) {
        _cleanup_free_ uint8_t *pa = NULL, *pb = NULL;
        size_t na, nb;

        pa = pack(a, &na);
        pb = pack(b, &nb);
        return na == nb && memcmp(pa, pb, na) == 0;
}

static const CodecSample *sample(const char *name) {
        size_t n;
        const CodecSample *s = codec_samples(&n);

        for (size_t i = 0; i < n; i++)
                if (streq(s[i].name, name))
                        return &s[i];
        TAP_FAIL_("no sample %s", name);
}

static const ProtobufCMessage *sample_msg(const char *name) {
        return sample(name)->msg;
}

/* Parses text and converts it; returns the result, error text in *ret_error. */
static int from_text(const ProtobufCMessageDescriptor *d, const char *text, ProtobufCMessage **ret,
                     char **ret_error) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        json_error_t e;

        j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        if (!j)
                TAP_FAIL_("bad JSON in test: %s: %s", text, e.text);
        return pbjson_to_message(d, j, ret, ret_error);
}

/* Expects text to fail for d with exactly `expected` as the error. */
static void expect_error(const ProtobufCMessageDescriptor *d, const char *text,
                         const char *expected) {
        _cleanup_free_ char *error = NULL;
        ProtobufCMessage *sentinel = (ProtobufCMessage *) (uintptr_t) 0x1, *m = sentinel;
        int r;

        r = from_text(d, text, &m, &error);
        if (r != -EINVAL)
                TAP_FAIL_("%s: expected -EINVAL, got %d", text, r);
        ASSERT_TRUE(m == sentinel); /* untouched */
        ASSERT_STREQ(error, expected);
}

static json_t *json_of(const char *name) {
        json_t *j = pbjson_from_message(sample_msg(name));

        ASSERT_NOT_NULL(j);
        return j;
}

/* ---------------------------------------------------------------------------------------- */

TEST(round_trip_every_sample) {
        size_t n;
        const CodecSample *s = codec_samples(&n);

        ASSERT_GE_UINT(n, 30u);
        for (size_t i = 0; i < n; i++) {
                _cleanup_(json_decrefp) json_t *j = NULL, *again = NULL, *reparsed = NULL;
                _cleanup_(messagep) ProtobufCMessage *m = NULL;
                _cleanup_free_ char *error = NULL, *text = NULL;
                int r;

                j = pbjson_from_message(s[i].msg);
                if (!j)
                        TAP_FAIL_("%s: pbjson_from_message() failed", s[i].name);
                r = pbjson_to_message(s[i].msg->descriptor, j, &m, &error);
                if (r < 0)
                        TAP_FAIL_("%s: %s", s[i].name, strna(error));
                ASSERT_TRUE(m->descriptor == s[i].msg->descriptor);
                if (!same_wire(s[i].msg, m))
                        TAP_FAIL_("%s: different wire bytes after the round trip", s[i].name);
                ASSERT_OK(codec_validate(m, NULL));

                /* …and the JSON of the copy is the same document, also as text. */
                again = pbjson_from_message(m);
                ASSERT_NOT_NULL(again);
                ASSERT_TRUE(json_equal(j, again));
                text = json_dumps(j, JSON_COMPACT);
                ASSERT_NOT_NULL(text);
                reparsed = json_loads(text, 0, NULL);
                ASSERT_NOT_NULL(reparsed);
                ASSERT_TRUE(json_equal(j, reparsed));
        }
}

TEST(descriptor_table) {
        const ProtobufCMessageDescriptor *const *all;
        size_t n;

        all = pbjson_descriptors(&n);
        ASSERT_EQ_UINT(n, 32u);
        for (size_t i = 0; i < n; i++) {
                ASSERT_TRUE(pbjson_find_descriptor(all[i]->name) == all[i]);
                /* Every message a field refers to is in the table too. */
                for (unsigned k = 0; k < all[i]->n_fields; k++) {
                        const ProtobufCFieldDescriptor *f = &all[i]->fields[k];

                        if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
                            !pbjson_find_descriptor(
                                    ((const ProtobufCMessageDescriptor *) f->descriptor)->name))
                                TAP_FAIL_("%s.%s: type missing", all[i]->name, f->name);
                }
        }
        /* Every sample's type is in the table. */
        const CodecSample *s = codec_samples(&n);
        for (size_t i = 0; i < n; i++)
                ASSERT_TRUE(pbjson_find_descriptor(s[i].msg->descriptor->name) ==
                            s[i].msg->descriptor);

        ASSERT_TRUE(pbjson_find_descriptor("baton.v1.Placement") ==
                    &baton__v1__placement__descriptor);
        ASSERT_NULL(pbjson_find_descriptor("Placement"));
        ASSERT_NULL(pbjson_find_descriptor("baton.v1.placement"));
        ASSERT_NULL(pbjson_find_descriptor(""));
        ASSERT_NULL(pbjson_find_descriptor(NULL));
}

TEST(placement_shape) {
        _cleanup_(json_decrefp) json_t *j = json_of("placement");
        json_t *units, *u0, *u1, *env;

        ASSERT_STREQ(json_string_value(json_object_get(j, "host")), "host-a");
        ASSERT_EQ_INT(json_integer_value(json_object_get(j, "epoch")), 42);
        ASSERT_TRUE(json_is_integer(json_object_get(j, "generation")));
        ASSERT_EQ_INT(json_integer_value(json_object_get(j, "generation")), (INT64_C(1) << 40) + 7);

        units = json_object_get(j, "units");
        ASSERT_TRUE(json_is_array(units));
        ASSERT_EQ_UINT(json_array_size(units), 2u);
        u0 = json_array_get(units, 0);
        u1 = json_array_get(units, 1);
        ASSERT_STREQ(json_string_value(json_object_get(u0, "template_name")), "gateway@.service");
        ASSERT_EQ_INT(
                json_integer_value(json_object_get(json_object_get(u0, "shards"), "shard_count")),
                96);
        ASSERT_TRUE(json_is_true(json_object_get(u0, "running")));
        env = json_object_get(u0, "env");
        ASSERT_EQ_UINT(json_array_size(env), 2u);
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(env, 1), "value")), "debug");

        /* Unset submessage omitted; proto3 defaults present. */
        ASSERT_NULL(json_object_get(u1, "shards"));
        ASSERT_TRUE(json_is_false(json_object_get(u1, "running")));
        ASSERT_EQ_INT(json_integer_value(json_object_get(u1, "instance")), 0);
        ASSERT_STREQ(json_string_value(json_object_get(u1, "template_name")), "");
        ASSERT_EQ_UINT(json_array_size(json_object_get(u1, "env")), 0u);
        ASSERT_TRUE(json_is_array(json_object_get(u1, "env")));

        ASSERT_STREQ(json_string_value(json_array_get(json_object_get(j, "removed"), 1)),
                     "old.service");
        /* Nothing but the .proto's fields. */
        ASSERT_EQ_UINT(json_object_size(j), 5u);
        ASSERT_EQ_UINT(json_object_size(u0), 11u);
        ASSERT_TRUE(json_is_true(json_object_get(u0, "defer_restart")));
        ASSERT_TRUE(json_is_true(json_object_get(u0, "shards_reload")));
}

TEST(heartbeat_shape) {
        _cleanup_(json_decrefp) json_t *j = json_of("heartbeat");
        json_t *cap = json_object_get(j, "capacity");

        ASSERT_EQ_UINT(json_object_size(j), 16u);
        ASSERT_EQ_INT(json_integer_value(json_object_get(cap, "memory_total_bytes")),
                      INT64_C(68719476736));
        ASSERT_STREQ(json_string_value(json_object_get(
                             json_array_get(json_object_get(j, "labels"), 1), "key")),
                     "zone");
        ASSERT_EQ_INT(json_integer_value(json_object_get(j, "seq")), 987654321);
}

TEST(enum_names_and_numbers) {
        _cleanup_(json_decrefp) json_t *j = json_of("alert");
        _cleanup_(messagep) ProtobufCMessage *m = NULL, *m2 = NULL, *m3 = NULL;
        Baton__V1__Alert a = BATON__V1__ALERT__INIT;
        json_t *unknown;

        ASSERT_STREQ(json_string_value(json_object_get(j, "severity")), "SEVERITY_CRITICAL");

        ASSERT_OK(from_text(&baton__v1__alert__descriptor, "{\"severity\":\"SEVERITY_WARNING\"}",
                            &m, NULL));
        ASSERT_EQ_INT(((Baton__V1__Alert *) m)->severity, BATON__V1__SEVERITY__SEVERITY_WARNING);
        ASSERT_OK(from_text(&baton__v1__alert__descriptor, "{\"severity\":3}", &m2, NULL));
        ASSERT_EQ_INT(((Baton__V1__Alert *) m2)->severity, BATON__V1__SEVERITY__SEVERITY_CRITICAL);
        ASSERT_OK(from_text(&baton__v1__response__descriptor, "{\"status\":\"STATUS_REFUSED\"}",
                            &m3, NULL));
        ASSERT_EQ_INT(((Baton__V1__Response *) m3)->status, BATON__V1__STATUS__STATUS_REFUSED);

        expect_error(&baton__v1__alert__descriptor, "{\"severity\":\"CRITICAL\"}",
                     "severity: \"CRITICAL\" is not a value of baton.v1.Severity");
        expect_error(&baton__v1__alert__descriptor, "{\"severity\":9}",
                     "severity: 9 is not a value of baton.v1.Severity");
        expect_error(&baton__v1__alert__descriptor, "{\"severity\":4294967297}",
                     "severity: 4294967297 is not a value of baton.v1.Severity");
        expect_error(&baton__v1__alert__descriptor, "{\"severity\":true}",
                     "severity: expected an enum name or number, got a boolean");
        /* Status has no 3: a gap in the declared values. */
        expect_error(&baton__v1__response__descriptor, "{\"status\":3}",
                     "status: 3 is not a value of baton.v1.Status");

        /* A value the descriptor does not know (a local message) shows as its number. */
        a.severity = (Baton__V1__Severity) 42;
        unknown = pbjson_from_message(&a.base);
        ASSERT_NOT_NULL(unknown);
        ASSERT_EQ_INT(json_integer_value(json_object_get(unknown, "severity")), 42);
        json_decref(unknown);
}

TEST(bytes_as_base64) {
        _cleanup_(json_decrefp) json_t *j = json_of("envelope");
        static const uint8_t body[] = { 0x0a, 0x03, 'a', 'b', 'c' };
        _cleanup_(messagep) ProtobufCMessage *m = NULL, *m2 = NULL, *m3 = NULL;
        Baton__V1__Envelope *e;
        const char *sig;

        /* { 0x0a, 0x03, 'a', 'b', 'c' } */
        ASSERT_STREQ(json_string_value(json_object_get(j, "body")), "CgNhYmM=");
        sig = json_string_value(json_object_get(j, "signature"));
        ASSERT_NOT_NULL(sig);
        ASSERT_EQ_UINT(strlen(sig), 88u); /* 64 bytes */
        ASSERT_EQ_INT(strncmp(sig, "WlpaWlpa", 8), 0);

        /* Without padding, and URL-safe: 0xfb 0xff → "+/8=" / "-_8". */
        ASSERT_OK(from_text(&baton__v1__envelope__descriptor,
                            "{\"body\":\"CgNhYmM\",\"signature\":\"-_8\"}", &m, NULL));
        e = (Baton__V1__Envelope *) m;
        ASSERT_EQ_UINT(e->body.len, 5u);
        ASSERT_EQ_INT(memcmp(e->body.data, body, sizeof(body)), 0);
        ASSERT_EQ_UINT(e->signature.len, 2u);
        ASSERT_EQ_INT(e->signature.data[0], 0xfb);
        ASSERT_EQ_INT(e->signature.data[1], 0xff);
        ASSERT_OK(
                from_text(&baton__v1__envelope__descriptor, "{\"signature\":\"+/8=\"}", &m2, NULL));
        ASSERT_EQ_UINT(((Baton__V1__Envelope *) m2)->signature.len, 2u);

        /* Empty stays empty. */
        ASSERT_OK(from_text(&baton__v1__envelope__descriptor, "{\"body\":\"\"}", &m3, NULL));
        ASSERT_EQ_UINT(((Baton__V1__Envelope *) m3)->body.len, 0u);

        expect_error(&baton__v1__envelope__descriptor, "{\"body\":\"not base64!\"}",
                     "body: expected base64, got \"not base64!\"");
        expect_error(&baton__v1__envelope__descriptor,
                     "{\"body\":\"a very long string that is not base64\"}",
                     "body: expected base64, got \"a very long stri...\"");
        expect_error(&baton__v1__envelope__descriptor, "{\"body\":[1,2]}",
                     "body: expected a base64 string, got an array");
}

TEST(large_uint64) {
        _cleanup_(json_decrefp) json_t *alert = json_of("alert"), *us = json_of("unit-state");
        _cleanup_(messagep) ProtobufCMessage *m = NULL, *m2 = NULL, *m3 = NULL;
        Baton__V1__Restart r = BATON__V1__RESTART__INIT;
        json_t *j;

        /* Above INT64_MAX: a decimal string, since jansson integers are signed. */
        ASSERT_STREQ(json_string_value(json_object_get(alert, "raised_at_us")),
                     "18446744073709551615");
        ASSERT_STREQ(json_string_value(json_object_get(us, "memory_bytes")),
                     "18446744073709551615");
        ASSERT_EQ_INT(json_integer_value(json_object_get(alert, "resolved_at_us")),
                      INT64_C(1700000000000001));

        r.not_after_us = INT64_MAX;
        r.epoch = (uint64_t) INT64_MAX + 1;
        j = pbjson_from_message(&r.base);
        ASSERT_NOT_NULL(j);
        ASSERT_TRUE(json_is_integer(json_object_get(j, "not_after_us")));
        ASSERT_EQ_INT(json_integer_value(json_object_get(j, "not_after_us")), INT64_MAX);
        ASSERT_STREQ(json_string_value(json_object_get(j, "epoch")), "9223372036854775808");
        ASSERT_OK(pbjson_to_message(&baton__v1__restart__descriptor, j, &m, NULL));
        ASSERT_TRUE(same_wire(&r.base, m));
        json_decref(j);

        /* Strings work for any integer field. */
        ASSERT_OK(from_text(&baton__v1__restart__descriptor,
                            "{\"epoch\":\"18446744073709551615\",\"not_after_us\":\"0\"}", &m2,
                            NULL));
        ASSERT_EQ_UINT(((Baton__V1__Restart *) m2)->epoch, UINT64_MAX);
        ASSERT_OK(from_text(&baton__v1__service_request__descriptor,
                            "{\"instance\":\"-2147483648\",\"count\":\"4294967295\"}", &m3, NULL));
        ASSERT_EQ_INT(((Baton__V1__ServiceRequest *) m3)->instance, INT32_MIN);
        ASSERT_EQ_UINT(((Baton__V1__ServiceRequest *) m3)->count, UINT32_MAX);

        expect_error(&baton__v1__restart__descriptor, "{\"epoch\":\"18446744073709551616\"}",
                     "epoch: 18446744073709551616 is out of range");
        expect_error(&baton__v1__restart__descriptor, "{\"epoch\":-1}",
                     "epoch: -1 is out of range for uint64");
        expect_error(&baton__v1__restart__descriptor, "{\"epoch\":\"-1\"}",
                     "epoch: -1 is out of range for uint64");
        expect_error(&baton__v1__restart__descriptor, "{\"epoch\":1.5}",
                     "epoch: expected an integer, got a real number");
        expect_error(&baton__v1__restart__descriptor, "{\"epoch\":\"12x\"}",
                     "epoch: expected an integer, got a string that is not one");
        expect_error(&baton__v1__restart__descriptor, "{\"epoch\":\"+12\"}",
                     "epoch: expected an integer, got a string that is not one");
        expect_error(&baton__v1__restart__descriptor, "{\"epoch\":\" 12\"}",
                     "epoch: expected an integer, got a string that is not one");
        expect_error(&baton__v1__restart__descriptor, "{\"epoch\":\"\"}",
                     "epoch: expected an integer, got a string that is not one");
        expect_error(&baton__v1__restart__descriptor, "{\"epoch\":\"-\"}",
                     "epoch: expected an integer, got a string that is not one");
        expect_error(&baton__v1__service_request__descriptor, "{\"count\":4294967296}",
                     "count: 4294967296 is out of range for uint32");
        expect_error(&baton__v1__service_request__descriptor, "{\"instance\":2147483648}",
                     "instance: 2147483648 is out of range for int32");
        expect_error(&baton__v1__service_request__descriptor, "{\"instance\":-2147483649}",
                     "instance: -2147483649 is out of range for int32");
}

TEST(oneof_only_the_set_member) {
        _cleanup_(json_decrefp) json_t *gen = json_of("command-result-generation"),
                                       *rid = json_of("command-result-restart"),
                                       *ping = json_of("request-ping"),
                                       *rjson = json_of("response-json");
        _cleanup_(messagep) ProtobufCMessage *m = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
        Baton__V1__CommandResult *cr;
        Baton__V1__Request *rq;

        ASSERT_EQ_INT(json_integer_value(json_object_get(gen, "generation")), 77);
        ASSERT_NULL(json_object_get(gen, "restart_id"));
        ASSERT_STREQ(json_string_value(json_object_get(rid, "restart_id")), "r-77aa");
        ASSERT_NULL(json_object_get(rid, "generation"));
        ASSERT_TRUE(json_is_object(json_object_get(ping, "ping")));
        ASSERT_EQ_UINT(json_object_size(json_object_get(ping, "ping")), 0u);
        ASSERT_NULL(json_object_get(ping, "hosts"));
        ASSERT_STREQ(json_string_value(json_object_get(rjson, "json")), "{\"rollouts\":[]}");
        ASSERT_NULL(json_object_get(rjson, "pong"));

        /* Nothing set: no member in the JSON, and none set coming back. */
        ASSERT_OK(from_text(&baton__v1__command_result__descriptor, "{\"host\":\"h\"}", &m, NULL));
        cr = (Baton__V1__CommandResult *) m;
        ASSERT_EQ_INT(cr->command_case, BATON__V1__COMMAND_RESULT__COMMAND__NOT_SET);
        ASSERT_OK(from_text(&baton__v1__command_result__descriptor, "{\"restart_id\":\"x\"}", &m2,
                            NULL));
        cr = (Baton__V1__CommandResult *) m2;
        ASSERT_EQ_INT(cr->command_case, BATON__V1__COMMAND_RESULT__COMMAND_RESTART_ID);
        ASSERT_STREQ(cr->restart_id, "x");
        /* A member set to its default is still the set member. */
        ASSERT_OK(
                from_text(&baton__v1__command_result__descriptor, "{\"generation\":0}", &m3, NULL));
        cr = (Baton__V1__CommandResult *) m3;
        ASSERT_EQ_INT(cr->command_case, BATON__V1__COMMAND_RESULT__COMMAND_GENERATION);
        ASSERT_OK(from_text(&baton__v1__request__descriptor,
                            "{\"verb\":\"drain\",\"host\":{\"host\":\"h2\"}}", &m4, NULL));
        rq = (Baton__V1__Request *) m4;
        ASSERT_EQ_INT(rq->args_case, BATON__V1__REQUEST__ARGS_HOST);
        ASSERT_STREQ(rq->host->host, "h2");

        expect_error(&baton__v1__command_result__descriptor,
                     "{\"generation\":1,\"restart_id\":\"x\"}",
                     "restart_id: generation is set too; only one member of a oneof may be");
        expect_error(&baton__v1__request__descriptor, "{\"ping\":{},\"hosts\":{}}",
                     "hosts: ping is set too; only one member of a oneof may be");
        /* null means "not set", so it does not conflict. */
        {
                _cleanup_(messagep) ProtobufCMessage *m5 = NULL;

                ASSERT_OK(from_text(&baton__v1__request__descriptor, "{\"ping\":null,\"hosts\":{}}",
                                    &m5, NULL));
                ASSERT_EQ_INT(((Baton__V1__Request *) m5)->args_case,
                              BATON__V1__REQUEST__ARGS_HOSTS);
        }
}

TEST(errors_name_the_path) {
        const ProtobufCMessageDescriptor *p = &baton__v1__placement__descriptor;

        expect_error(p, "{\"units\":[{},{},{\"instance\":true}]}",
                     "units[2].instance: expected an integer, got a boolean");
        expect_error(p, "{\"units\":[{},{},{\"instance\":\"three\"}]}",
                     "units[2].instance: expected an integer, got a string that is not one");
        expect_error(p, "{\"units\":[{\"bogus\":1}]}",
                     "units[0].bogus: unknown field of baton.v1.PlacedUnit");
        expect_error(p, "{\"units\":[{\"shards\":{\"shard_count\":-1}}]}",
                     "units[0].shards.shard_count: -1 is out of range for uint32");
        expect_error(p, "{\"units\":[{\"env\":[{\"name\":\"A\"},{\"value\":7}]}]}",
                     "units[0].env[1].value: expected a string, got an integer");
        expect_error(p, "{\"nope\":1}", "nope: unknown field of baton.v1.Placement");
        expect_error(p, "{\"Host\":\"a\"}", "Host: unknown field of baton.v1.Placement");
        expect_error(p, "[]", "baton.v1.Placement: expected an object, got an array");
        expect_error(p, "\"x\"", "baton.v1.Placement: expected an object, got a string");
        expect_error(p, "{\"units\":{}}", "units: expected an array, got an object");
        expect_error(p, "{\"units\":[\"a.service\"]}",
                     "units[0]: expected an object (baton.v1.PlacedUnit), got a string");
        expect_error(p, "{\"units\":[null]}",
                     "units[0]: null is not allowed in a repeated field (of message)");
        expect_error(p, "{\"removed\":[\"a\",null]}",
                     "removed[1]: null is not allowed in a repeated field (of string)");
        expect_error(p, "{\"removed\":[\"a\",1]}", "removed[1]: expected a string, got an integer");
        expect_error(p, "{\"host\":5}", "host: expected a string, got an integer");
        expect_error(p, "{\"host\":\"a\\u0000b\"}", "host: string contains a NUL character");
        expect_error(p, "{\"units\":[{\"running\":1}]}",
                     "units[0].running: expected true or false, got an integer");
        expect_error(p, "{\"units\":[{\"shards\":[]}]}",
                     "units[0].shards: expected an object (baton.v1.ShardAssignment), got an "
                     "array");
        /* A hostile key is quoted safely and cut short. */
        expect_error(p,
                     "{\"a\\nb0123456789012345678901234567890123456789012345678901234567890123"
                     "456789\":1}",
                     "a?b0123456789012345678901234567890123456789012345678901234567890..."
                     ": unknown field of baton.v1.Placement");
}

TEST(key_with_nul) {
        _cleanup_(json_decrefp) json_t *o = json_object();
        _cleanup_free_ char *error = NULL;
        ProtobufCMessage *m = NULL;

        /* jansson's parser refuses such keys, but code can make them: "host\0x" is not
         * "host". */
        ASSERT_NOT_NULL(o);
        ASSERT_OK(json_object_setn_new(o, "host\0x", 6, json_string("a")));
        ASSERT_ERR(pbjson_to_message(&baton__v1__placement__descriptor, o, &m, &error), -EINVAL);
        ASSERT_NULL(m);
        ASSERT_STREQ(error, "host: unknown field of baton.v1.Placement");
}

TEST(error_out_params) {
        ProtobufCMessage *sentinel = (ProtobufCMessage *) (uintptr_t) 0x1, *m = sentinel;
        _cleanup_free_ char *error = NULL;
        char *untouched = (char *) "untouched";
        _cleanup_(messagep) ProtobufCMessage *ok = NULL;

        /* ret_error may be NULL. */
        ASSERT_ERR(from_text(&baton__v1__placement__descriptor, "{\"x\":1}", &m, NULL), -EINVAL);
        ASSERT_TRUE(m == sentinel);
        /* A NULL document is an error, not a crash. */
        ASSERT_ERR(pbjson_to_message(&baton__v1__placement__descriptor, NULL, &m, &error), -EINVAL);
        ASSERT_NOT_NULL(error);
        /* On success *ret_error is left alone. */
        ASSERT_OK(from_text(&baton__v1__placement__descriptor, "{}", &ok, &untouched));
        ASSERT_STREQ(untouched, "untouched");
}

TEST(defaults_and_nulls) {
        _cleanup_(messagep) ProtobufCMessage *m = NULL, *m2 = NULL;
        Baton__V1__Placement *p;
        Baton__V1__PlacedUnit *u;

        ASSERT_OK(from_text(&baton__v1__placement__descriptor, "{}", &m, NULL));
        p = (Baton__V1__Placement *) m;
        ASSERT_STREQ(p->host, "");
        ASSERT_EQ_UINT(p->epoch, 0u);
        ASSERT_EQ_UINT(p->n_units, 0u);
        ASSERT_NULL(p->units);

        ASSERT_OK(from_text(&baton__v1__placement__descriptor,
                            "{\"host\":null,\"epoch\":null,\"units\":[{\"shards\":null,"
                            "\"name\":\"a.service\",\"env\":null}],\"removed\":[]}",
                            &m2, NULL));
        p = (Baton__V1__Placement *) m2;
        ASSERT_STREQ(p->host, "");
        ASSERT_EQ_UINT(p->n_units, 1u);
        u = p->units[0];
        ASSERT_NULL(u->shards);
        ASSERT_STREQ(u->name, "a.service");
        ASSERT_EQ_UINT(u->n_env, 0u);
        ASSERT_EQ_UINT(p->n_removed, 0u);
        ASSERT_OK(codec_validate(m2, NULL));
}

TEST(partial_failure_frees_everything) {
        /* Fails late, after strings, arrays and submessages were built: ASan
         * reports a leak or double free if the half-built message is wrong. */
        expect_error(&baton__v1__heartbeat__descriptor,
                     "{\"host\":\"h\",\"capacity\":{\"cores\":4},\"labels\":[{\"key\":\"a\","
                     "\"value\":\"b\"}],\"units\":[{\"name\":\"a\"},{\"name\":\"b\","
                     "\"n_restarts\":\"x\"}]}",
                     "units[1].n_restarts: expected an integer, got a string that is not one");
        expect_error(&baton__v1__response__descriptor,
                     "{\"pong\":{\"counters\":[{\"name\":\"x\",\"value\":1}]},\"json\":\"{}\"}",
                     "json: pong is set too; only one member of a oneof may be");
        expect_error(&baton__v1__envelope__descriptor,
                     "{\"body\":\"CgNhYmM=\",\"signature\":\"!!\"}",
                     "signature: expected base64, got \"!!\"");
}

TEST(invalid_utf8_is_replaced) {
        Baton__V1__Label l = BATON__V1__LABEL__INIT;
        _cleanup_(json_decrefp) json_t *j = NULL;

        l.key = (char *) "a\xff"
                         "b\xc3";
        l.value = (char *) "caf\xc3\xa9";
        j = pbjson_from_message(&l.base);
        ASSERT_NOT_NULL(j);
        ASSERT_STREQ(json_string_value(json_object_get(j, "key")), "a\xef\xbf\xbd"
                                                                   "b\xef\xbf\xbd");
        ASSERT_STREQ(json_string_value(json_object_get(j, "value")), "caf\xc3\xa9");
}

TEST(null_strings_and_holes) {
        Baton__V1__Placement p = BATON__V1__PLACEMENT__INIT;
        Baton__V1__PlacedUnit *units[1] = { NULL };
        _cleanup_(json_decrefp) json_t *j = NULL;

        /* A message built by hand may hold NULL where protobuf-c puts "". */
        p.host = NULL;
        p.n_units = 1;
        p.units = units;
        j = pbjson_from_message(&p.base);
        ASSERT_NOT_NULL(j);
        ASSERT_STREQ(json_string_value(json_object_get(j, "host")), "");
        ASSERT_TRUE(json_is_null(json_array_get(json_object_get(j, "units"), 0)));

        /* Elements without an array: refused, not dereferenced. */
        p.units = NULL;
        ASSERT_NULL(pbjson_from_message(&p.base));
}

/* ---------------------------------------------------------------------------------------- */
/* A message type written by hand with every scalar type, repeated non-string
 * types and a proto2 optional, since baton's protos use only some of them. */

typedef struct Scalars {
        ProtobufCMessage base;
        double d;
        float f;
        int64_t i64;
        int32_t s32;
        int64_t sf64;
        uint32_t fx32;
        uint64_t fx64;
        size_t n_rb;
        ProtobufCBinaryData *rb;
        size_t n_rd;
        double *rd;
        size_t n_rbool;
        protobuf_c_boolean *rbool;
        size_t n_rsev;
        int *rsev;
        protobuf_c_boolean has_opt;
        int32_t opt;
        size_t n_rs64;
        int64_t *rs64;
} Scalars;

static const ProtobufCMessageDescriptor scalars_descriptor;

static void scalars_init(Scalars *m) {
        *m = (Scalars){ .base = PROTOBUF_C_MESSAGE_INIT(&scalars_descriptor) };
}

#define F(name, id, label, type, q, member, desc)                                                  \
        { name, id, label, type, q, offsetof(Scalars, member), desc, NULL, 0, 0, NULL, NULL }

static const ProtobufCFieldDescriptor scalars_fields[] = {
        F("d", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_DOUBLE, 0, d, NULL),
        F("f", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_FLOAT, 0, f, NULL),
        F("i64", 3, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_INT64, 0, i64, NULL),
        F("s32", 4, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_SINT32, 0, s32, NULL),
        F("sf64", 5, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_SFIXED64, 0, sf64, NULL),
        F("fx32", 6, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_FIXED32, 0, fx32, NULL),
        F("fx64", 7, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_FIXED64, 0, fx64, NULL),
        F("rb", 8, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_BYTES, offsetof(Scalars, n_rb), rb,
          NULL),
        F("rd", 9, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_DOUBLE, offsetof(Scalars, n_rd), rd,
          NULL),
        F("rbool", 10, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_BOOL, offsetof(Scalars, n_rbool),
          rbool, NULL),
        F("rsev", 11, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_ENUM, offsetof(Scalars, n_rsev),
          rsev, &baton__v1__severity__descriptor),
        F("opt", 12, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_INT32, offsetof(Scalars, has_opt),
          opt, NULL),
        F("rs64", 13, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_SINT64, offsetof(Scalars, n_rs64),
          rs64, NULL),
};

/* Indices of scalars_fields in name order. */
static const unsigned scalars_by_name[] = { 0, 1, 5, 6, 2, 11, 7, 9, 8, 12, 10, 3, 4 };
static const ProtobufCIntRange scalars_ranges[] = { { 1, 0 }, { 0, 13 } };

static const ProtobufCMessageDescriptor scalars_descriptor = {
        PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
        "test.Scalars",
        "Scalars",
        "Scalars",
        "test",
        sizeof(Scalars),
        ELEMENTSOF(scalars_fields),
        scalars_fields,
        scalars_by_name,
        1,
        scalars_ranges,
        (ProtobufCMessageInit) scalars_init,
        NULL,
        NULL,
        NULL,
};

TEST(hand_descriptor_is_sane) {
        for (size_t i = 1; i < ELEMENTSOF(scalars_by_name); i++)
                ASSERT_LT_INT(strcmp(scalars_fields[scalars_by_name[i - 1]].name,
                                     scalars_fields[scalars_by_name[i]].name),
                              0);
        ASSERT_TRUE(protobuf_c_message_descriptor_get_field_by_name(&scalars_descriptor, "opt") ==
                    &scalars_fields[11]);
        ASSERT_TRUE(protobuf_c_message_descriptor_get_field(&scalars_descriptor, 13) ==
                    &scalars_fields[12]);
}

TEST(every_scalar_type_round_trips) {
        static uint8_t b0[] = { 0, 1, 2, 0xff }, b1[] = { 'x' };
        ProtobufCBinaryData rb[] = { { sizeof(b0), b0 }, { 0, NULL }, { sizeof(b1), b1 } };
        double rd[] = { 0.5, -1e300, NAN, INFINITY, -INFINITY };
        protobuf_c_boolean rbool[] = { 1, 0, 1 };
        int rsev[] = { BATON__V1__SEVERITY__SEVERITY_INFO, BATON__V1__SEVERITY__SEVERITY_CRITICAL };
        int64_t rs64[] = { INT64_MIN, -1, 0, INT64_MAX };
        _cleanup_(json_decrefp) json_t *j = NULL;
        _cleanup_(messagep) ProtobufCMessage *m = NULL, *unpacked = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *error = NULL;
        Scalars s, *c;
        size_t len;
        json_t *a;

        scalars_init(&s);
        s.d = -2.25;
        s.f = 1.5f;
        s.i64 = INT64_MIN;
        s.s32 = -7;
        s.sf64 = -(INT64_C(1) << 50);
        s.fx32 = UINT32_MAX;
        s.fx64 = UINT64_MAX - 1;
        s.n_rb = ELEMENTSOF(rb);
        s.rb = rb;
        s.n_rd = ELEMENTSOF(rd);
        s.rd = rd;
        s.n_rbool = ELEMENTSOF(rbool);
        s.rbool = rbool;
        s.n_rsev = ELEMENTSOF(rsev);
        s.rsev = rsev;
        s.n_rs64 = ELEMENTSOF(rs64);
        s.rs64 = rs64;

        /* The hand-written descriptor is one protobuf-c itself can use. */
        buf = pack(&s.base, &len);
        unpacked = protobuf_c_message_unpack(&scalars_descriptor, NULL, len, buf);
        ASSERT_NOT_NULL(unpacked);

        j = pbjson_from_message(&s.base);
        ASSERT_NOT_NULL(j);
        ASSERT_TRUE(json_is_real(json_object_get(j, "d")));
        ASSERT_TRUE(json_real_value(json_object_get(j, "d")) == -2.25);
        ASSERT_TRUE(json_real_value(json_object_get(j, "f")) == 1.5);
        ASSERT_EQ_INT(json_integer_value(json_object_get(j, "i64")), INT64_MIN);
        ASSERT_EQ_INT(json_integer_value(json_object_get(j, "s32")), -7);
        ASSERT_EQ_INT(json_integer_value(json_object_get(j, "fx32")), UINT32_MAX);
        ASSERT_STREQ(json_string_value(json_object_get(j, "fx64")), "18446744073709551614");
        a = json_object_get(j, "rb");
        ASSERT_STREQ(json_string_value(json_array_get(a, 0)), "AAEC/w==");
        ASSERT_STREQ(json_string_value(json_array_get(a, 1)), "");
        ASSERT_STREQ(json_string_value(json_array_get(a, 2)), "eA==");
        a = json_object_get(j, "rd");
        ASSERT_STREQ(json_string_value(json_array_get(a, 2)), "NaN");
        ASSERT_STREQ(json_string_value(json_array_get(a, 3)), "Infinity");
        ASSERT_STREQ(json_string_value(json_array_get(a, 4)), "-Infinity");
        ASSERT_STREQ(json_string_value(json_array_get(json_object_get(j, "rsev"), 1)),
                     "SEVERITY_CRITICAL");
        ASSERT_TRUE(json_is_false(json_array_get(json_object_get(j, "rbool"), 1)));
        /* proto2 optional without its has_ flag: absent. */
        ASSERT_NULL(json_object_get(j, "opt"));

        ASSERT_OK(pbjson_to_message(&scalars_descriptor, j, &m, &error));
        ASSERT_TRUE(same_wire(&s.base, m));
        c = (Scalars *) m;
        ASSERT_FALSE(c->has_opt);
        ASSERT_TRUE(isnan(c->rd[2]));
        ASSERT_EQ_UINT(c->rb[1].len, 0u);
        ASSERT_EQ_INT(c->rs64[0], INT64_MIN);
}

TEST(scalar_conversions_and_errors) {
        _cleanup_(messagep) ProtobufCMessage *m = NULL, *m2 = NULL;
        Scalars *s;

        ASSERT_OK(
                from_text(&scalars_descriptor,
                          "{\"d\":3,\"f\":\"-Infinity\",\"opt\":0,\"i64\":\"-9223372036854775808\","
                          "\"rsev\":[1,\"SEVERITY_WARNING\"],\"rbool\":[true],\"rd\":[1,2.5]}",
                          &m, NULL));
        s = (Scalars *) m;
        ASSERT_TRUE(s->d == 3.0);
        ASSERT_TRUE(isinf(s->f) && s->f < 0);
        ASSERT_TRUE(s->has_opt); /* present, though 0 */
        ASSERT_EQ_INT(s->opt, 0);
        ASSERT_EQ_INT(s->i64, INT64_MIN);
        ASSERT_EQ_UINT(s->n_rsev, 2u);
        ASSERT_EQ_INT(s->rsev[1], BATON__V1__SEVERITY__SEVERITY_WARNING);
        ASSERT_TRUE(s->rd[1] == 2.5);

        ASSERT_OK(from_text(&scalars_descriptor, "{\"opt\":5}", &m2, NULL));
        {
                _cleanup_(json_decrefp) json_t *j = pbjson_from_message(m2);

                ASSERT_EQ_INT(json_integer_value(json_object_get(j, "opt")), 5);
        }

        expect_error(&scalars_descriptor, "{\"f\":1e39}", "f: 1e+39 is out of range for float");
        expect_error(&scalars_descriptor, "{\"d\":\"nan\"}", "d: expected a number, got a string");
        expect_error(&scalars_descriptor, "{\"d\":true}", "d: expected a number, got a boolean");
        expect_error(&scalars_descriptor, "{\"i64\":\"9223372036854775808\"}",
                     "i64: 9223372036854775808 is out of range for int64");
        expect_error(&scalars_descriptor, "{\"i64\":\"-9223372036854775809\"}",
                     "i64: -9223372036854775809 is out of range for int64");
        expect_error(&scalars_descriptor, "{\"fx32\":-1}", "fx32: -1 is out of range for fixed32");
        expect_error(&scalars_descriptor, "{\"rsev\":[1,\"NOPE\"]}",
                     "rsev[1]: \"NOPE\" is not a value of baton.v1.Severity");
        expect_error(&scalars_descriptor, "{\"rbool\":[true,\"false\"]}",
                     "rbool[1]: expected true or false, got a string");
        expect_error(&scalars_descriptor, "{\"rb\":[\"AA==\",\"*\"]}",
                     "rb[1]: expected base64, got \"*\"");
        expect_error(&scalars_descriptor, "{\"rs64\":[1,null]}",
                     "rs64[1]: null is not allowed in a repeated field (of sint64)");
}

int main(void) {
        return tap_run(TESTS(round_trip_every_sample, descriptor_table, placement_shape,
                             heartbeat_shape, enum_names_and_numbers, bytes_as_base64, large_uint64,
                             oneof_only_the_set_member, errors_name_the_path, key_with_nul,
                             error_out_params, defaults_and_nulls, partial_failure_frees_everything,
                             invalid_utf8_is_replaced, null_strings_and_holes,
                             hand_descriptor_is_sane, every_scalar_type_round_trips,
                             scalar_conversions_and_errors));
}
