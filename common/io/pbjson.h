/* SPDX-License-Identifier: MIT */
/* protobuf-c messages as JSON (jansson) and back, driven by the message
 * descriptor alone, so every baton message type converts without code of its
 * own: `batonctl watch --json`, baton-probe, and tests that speak JSON. */
#pragma once

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "macro.h"

/* Message → JSON object: field names as in the .proto (snake_case), 64-bit
 * ints as JSON integers, bytes as base64 strings, enums as their proto names
 * (e.g. "SEVERITY_CRITICAL"), repeated → arrays, oneof → only the set member,
 * unset singular submessages omitted, proto3 defaults included.
 *
 * Where JSON (or jansson) cannot carry a value as is:
 *  - a uint64/fixed64 above INT64_MAX (jansson integers are signed 64 bit)
 *    becomes a decimal string, e.g. "18446744073709551615";
 *  - float/double NaN and infinities become "NaN", "Infinity", "-Infinity";
 *  - an enum value the descriptor does not declare becomes its number;
 *  - invalid UTF-8 in a string is replaced by U+FFFD.
 * Returns a new reference, or NULL when out of memory or nested deeper than
 * PBJSON_MAX_DEPTH. */
json_t *pbjson_from_message(const ProtobufCMessage *m);

/* JSON object → newly allocated message of `desc` (free with
 * protobuf_c_message_free_unpacked(m, NULL)): unknown keys → -EINVAL naming
 * the key path; type mismatches → -EINVAL naming the path
 * ("units[2].instance: expected an integer, got a string"); enums by name or
 * number; missing fields keep defaults. *ret_error malloc'ed.
 *
 * Accepted beyond the obvious, as the proto3 JSON mapping does: null for any
 * field (= its default, or unset); integers also as decimal strings (the only
 * way to write a uint64 above INT64_MAX); "NaN", "Infinity", "-Infinity" for
 * float/double; bytes in standard or URL-safe base64, padded or not. Strings
 * must not contain NUL; integers must fit the field's type; only one member
 * of a oneof may be set; an enum number must be a declared value.
 * -ENOMEM when out of memory. *ret and *ret_error are untouched on success
 * and failure respectively; ret_error may be NULL. */
int pbjson_to_message(const ProtobufCMessageDescriptor *desc, json_t *json, ProtobufCMessage **ret,
                      char **ret_error);

/* A JSON string of s, with invalid UTF-8 replaced by U+FFFD as above: for
 * text from the network that is not a message field (AMQP properties and
 * headers). NULL when out of memory. */
json_t *pbjson_string(const char *s);

/* Descriptor by full name ("baton.v1.Placement") among all baton messages. */
const ProtobufCMessageDescriptor *pbjson_find_descriptor(const char *full_name);

/* Every baton message descriptor (all of proto/baton/v1), e.g. as the
 * `allowed` list of codec_decode() for a tool that accepts anything. */
const ProtobufCMessageDescriptor *const *pbjson_descriptors(size_t *ret_n);

#define PBJSON_MAX_DEPTH 64u
