/* SPDX-License-Identifier: MIT */
/* Generic protobuf-c ⇄ JSON conversion. Both directions walk the message
 * descriptor only; the JSON → message direction builds every part with
 * malloc() in exactly the shape protobuf_c_message_free_unpacked() expects,
 * so a half-built message is freed the same way as a finished one. */
#include "pbjson.h"

#include <assert.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "commands.pb-c.h"
#include "envelope.pb-c.h"
#include "events.pb-c.h"
#include "rpc.pb-c.h"
#include "status.pb-c.h"

/* Longer paths are cut; they only appear in error text. */
#define PATH_MAX_LEN 512u
/* How much of a user's key or enum name an error message quotes. */
#define QUOTE_MAX 64u

static const ProtobufCMessageDescriptor *const descriptors[] = {
        /* commands.proto */
        &baton__v1__env_var__descriptor,
        &baton__v1__shard_assignment__descriptor,
        &baton__v1__placed_unit__descriptor,
        &baton__v1__placement__descriptor,
        &baton__v1__restart__descriptor,
        /* envelope.proto */
        &baton__v1__envelope__descriptor,
        /* events.proto */
        &baton__v1__alert__descriptor,
        &baton__v1__event__descriptor,
        /* status.proto */
        &baton__v1__label__descriptor,
        &baton__v1__capacity__descriptor,
        &baton__v1__unit_state__descriptor,
        &baton__v1__heartbeat__descriptor,
        &baton__v1__unit_event__descriptor,
        &baton__v1__shard_instance_report__descriptor,
        &baton__v1__shard_report__descriptor,
        &baton__v1__unit_outcome__descriptor,
        &baton__v1__command_result__descriptor,
        &baton__v1__controller_marker__descriptor,
        /* rpc.proto */
        &baton__v1__ping_request__descriptor,
        &baton__v1__hosts_request__descriptor,
        &baton__v1__spec_file__descriptor,
        &baton__v1__apply_request__descriptor,
        &baton__v1__service_request__descriptor,
        &baton__v1__host_request__descriptor,
        &baton__v1__rollout_request__descriptor,
        &baton__v1__request__descriptor,
        &baton__v1__counter__descriptor,
        &baton__v1__pong__descriptor,
        &baton__v1__host_info__descriptor,
        &baton__v1__host_list__descriptor,
        &baton__v1__response__descriptor,
        &baton__v1__response_part__descriptor,
};

const ProtobufCMessageDescriptor *const *pbjson_descriptors(size_t *ret_n) {
        assert(ret_n);

        *ret_n = ELEMENTSOF(descriptors);
        return descriptors;
}

const ProtobufCMessageDescriptor *pbjson_find_descriptor(const char *full_name) {
        if (!full_name)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(descriptors); i++)
                if (streq(descriptors[i]->name, full_name))
                        return descriptors[i];
        return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Storage of field values inside a message, read and written with memcpy()
 * so no access depends on the alignment of a computed address. */

static size_t value_size(ProtobufCType t) {
        switch (t) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                return sizeof(uint32_t);
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return sizeof(uint64_t);
        case PROTOBUF_C_TYPE_FLOAT:
                return sizeof(float);
        case PROTOBUF_C_TYPE_DOUBLE:
                return sizeof(double);
        case PROTOBUF_C_TYPE_BOOL:
                return sizeof(protobuf_c_boolean);
        case PROTOBUF_C_TYPE_ENUM:
                return sizeof(int);
        case PROTOBUF_C_TYPE_STRING:
                return sizeof(char *);
        case PROTOBUF_C_TYPE_BYTES:
                return sizeof(ProtobufCBinaryData);
        case PROTOBUF_C_TYPE_MESSAGE:
                return sizeof(ProtobufCMessage *);
        }
        return 0;
}

static const char *type_name(ProtobufCType t) {
        static const char *const names[] = {
                [PROTOBUF_C_TYPE_INT32] = "int32",       [PROTOBUF_C_TYPE_SINT32] = "sint32",
                [PROTOBUF_C_TYPE_SFIXED32] = "sfixed32", [PROTOBUF_C_TYPE_INT64] = "int64",
                [PROTOBUF_C_TYPE_SINT64] = "sint64",     [PROTOBUF_C_TYPE_SFIXED64] = "sfixed64",
                [PROTOBUF_C_TYPE_UINT32] = "uint32",     [PROTOBUF_C_TYPE_FIXED32] = "fixed32",
                [PROTOBUF_C_TYPE_UINT64] = "uint64",     [PROTOBUF_C_TYPE_FIXED64] = "fixed64",
                [PROTOBUF_C_TYPE_FLOAT] = "float",       [PROTOBUF_C_TYPE_DOUBLE] = "double",
                [PROTOBUF_C_TYPE_BOOL] = "bool",         [PROTOBUF_C_TYPE_ENUM] = "enum",
                [PROTOBUF_C_TYPE_STRING] = "string",     [PROTOBUF_C_TYPE_BYTES] = "bytes",
                [PROTOBUF_C_TYPE_MESSAGE] = "message",
        };

        return (size_t) t < ELEMENTSOF(names) && names[t] ? names[t] : "unknown";
}

static uint32_t load_u32(const void *base, size_t offset) {
        uint32_t v;
        memcpy(&v, (const uint8_t *) base + offset, sizeof(v));
        return v;
}

static size_t load_size(const void *base, size_t offset) {
        size_t v;
        memcpy(&v, (const uint8_t *) base + offset, sizeof(v));
        return v;
}

static void *load_ptr(const void *base, size_t offset) {
        void *v;
        memcpy(&v, (const uint8_t *) base + offset, sizeof(v));
        return v;
}

static void store(void *base, size_t offset, const void *value, size_t size) {
        memcpy((uint8_t *) base + offset, value, size);
}

/* Is a singular field present? proto3 fields always are (their default is a
 * value too); a oneof member only when it is the set case; a proto2 optional
 * scalar only with its has_ flag; a message only when not NULL. */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                if (load_u32(m, f->quantifier_offset) != f->id)
                        return false;
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                   f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE) {
                protobuf_c_boolean has;

                memcpy(&has, (const uint8_t *) m + f->quantifier_offset, sizeof(has));
                if (!has)
                        return false;
        }

        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                return load_ptr(m, f->offset) != NULL;
        if (f->type == PROTOBUF_C_TYPE_STRING && f->label == PROTOBUF_C_LABEL_OPTIONAL)
                return load_ptr(m, f->offset) != NULL;
        return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Message → JSON */

static json_t *message_to_json(const ProtobufCMessage *m, unsigned depth);

/* jansson only takes valid UTF-8; a string that is not (a message built
 * locally, never one the codec let through) keeps its readable parts. */
json_t *pbjson_string(const char *s) {
        _cleanup_free_ char *clean = NULL;
        size_t len, k = 0;
        json_t *j;

        assert(s);

        len = strlen(s);
        j = json_stringn(s, len);
        if (j)
                return j;

        /* Worst case every byte becomes U+FFFD (3 bytes). */
        clean = malloc(len * 3 + 1);
        if (!clean)
                return NULL;
        for (size_t i = 0; i < len;) {
                size_t n;

                for (n = 1; n <= 4 && i + n <= len; n++)
                        if (codec_utf8_is_valid(s + i, n))
                                break;
                if (n <= 4 && i + n <= len) {
                        memcpy(clean + k, s + i, n);
                        k += n;
                        i += n;
                } else {
                        memcpy(clean + k, "\xef\xbf\xbd", 3);
                        k += 3;
                        i++;
                }
        }
        return json_stringn(clean, k);
}

static json_t *bytes_to_json(const ProtobufCBinaryData *b) {
        _cleanup_free_ char *text = NULL;
        size_t n;

        if (b->len == 0)
                return json_string("");
        if (!b->data)
                return NULL;

        n = sodium_base64_encoded_len(b->len, sodium_base64_VARIANT_ORIGINAL);
        text = malloc(n);
        if (!text)
                return NULL;
        sodium_bin2base64(text, n, b->data, b->len, sodium_base64_VARIANT_ORIGINAL);
        return json_string(text);
}

static json_t *double_to_json(double v) {
        if (isnan(v))
                return json_string("NaN");
        if (isinf(v))
                return json_string(v > 0 ? "Infinity" : "-Infinity");
        return json_real(v);
}

/* One value of field f stored at p (the field itself, or an element of its
 * array when repeated). */
static json_t *value_to_json(const ProtobufCFieldDescriptor *f, const void *p, unsigned depth) {
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32: {
                int32_t v;
                memcpy(&v, p, sizeof(v));
                return json_integer(v);
        }
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32: {
                uint32_t v;
                memcpy(&v, p, sizeof(v));
                return json_integer(v);
        }
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64: {
                int64_t v;
                memcpy(&v, p, sizeof(v));
                return json_integer(v);
        }
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64: {
                char buf[sizeof("18446744073709551615")];
                uint64_t v;

                memcpy(&v, p, sizeof(v));
                if (v <= INT64_MAX)
                        return json_integer((json_int_t) v);
                /* A jansson integer is a signed long long. */
                snprintf(buf, sizeof(buf), "%" PRIu64, v);
                return json_string(buf);
        }
        case PROTOBUF_C_TYPE_FLOAT: {
                float v;
                memcpy(&v, p, sizeof(v));
                return double_to_json(v);
        }
        case PROTOBUF_C_TYPE_DOUBLE: {
                double v;
                memcpy(&v, p, sizeof(v));
                return double_to_json(v);
        }
        case PROTOBUF_C_TYPE_BOOL: {
                protobuf_c_boolean v;
                memcpy(&v, p, sizeof(v));
                return json_boolean(v);
        }
        case PROTOBUF_C_TYPE_ENUM: {
                const ProtobufCEnumValue *ev;
                int v;

                memcpy(&v, p, sizeof(v));
                ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
                return ev ? json_string(ev->name) : json_integer(v);
        }
        case PROTOBUF_C_TYPE_STRING: {
                const char *s;
                memcpy(&s, p, sizeof(s));
                return pbjson_string(strempty(s));
        }
        case PROTOBUF_C_TYPE_BYTES: {
                ProtobufCBinaryData b;
                memcpy(&b, p, sizeof(b));
                return bytes_to_json(&b);
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessage *sub;

                memcpy(&sub, p, sizeof(sub));
                /* Only a repeated field gets here with NULL: show the hole. */
                return sub ? message_to_json(sub, depth + 1) : json_null();
        }
        }
        return NULL;
}

static json_t *repeated_to_json(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                                unsigned depth) {
        _cleanup_(json_decrefp) json_t *a = NULL;
        size_t n = load_size(m, f->quantifier_offset), sz = value_size(f->type);
        const uint8_t *arr = load_ptr(m, f->offset);

        if (n > 0 && !arr)
                return NULL;

        a = json_array();
        if (!a)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (json_array_append_new(a, value_to_json(f, arr + i * sz, depth)) < 0)
                        return NULL;
        return TAKE_PTR(a);
}

static json_t *message_to_json(const ProtobufCMessage *m, unsigned depth) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        const ProtobufCMessageDescriptor *d;

        if (depth > PBJSON_MAX_DEPTH)
                return NULL;
        d = m->descriptor;
        if (!d || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
                return NULL;

        o = json_object();
        if (!o)
                return NULL;

        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                json_t *v;

                if (f->label == PROTOBUF_C_LABEL_REPEATED)
                        v = repeated_to_json(m, f, depth);
                else if (field_present(m, f))
                        v = value_to_json(f, (const uint8_t *) m + f->offset, depth);
                else
                        continue;

                /* json_object_set_new() steals v, also when it fails (or is NULL). */
                if (!v || json_object_set_new(o, f->name, v) < 0)
                        return NULL;
        }

        return TAKE_PTR(o);
}

json_t *pbjson_from_message(const ProtobufCMessage *m) {
        assert(m);

        return message_to_json(m, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* JSON → message */

typedef struct Path {
        const char *root; /* the message type, named when the error is at the top */
        char buf[PATH_MAX_LEN];
        size_t len;
} Path;

static size_t path_push(Path *p, const char *format, ...) _printf_(2, 3);
static size_t path_push(Path *p, const char *format, ...) {
        size_t old = p->len;
        va_list ap;
        int n;

        if (p->len + 1 >= sizeof(p->buf))
                return old;

        va_start(ap, format);
        n = vsnprintf(p->buf + p->len, sizeof(p->buf) - p->len, format, ap);
        va_end(ap);
        if (n > 0)
                p->len = MIN(p->len + (size_t) n, sizeof(p->buf) - 1);
        return old;
}

/* A key from the document, with control characters replaced and cut to
 * QUOTE_MAX bytes, so an error message stays one readable line. */
static size_t path_push_key(Path *p, const char *key) {
        char q[QUOTE_MAX + 4];
        size_t i;

        for (i = 0; key[i] && i < QUOTE_MAX; i++)
                q[i] = (unsigned char) key[i] < 0x20 || key[i] == 0x7f ? '?' : key[i];
        if (key[i]) {
                memcpy(q + i, "...", 3);
                i += 3;
        }
        q[i] = '\0';
        return path_push(p, "%s%s", p->len > 0 ? "." : "", q);
}

static void path_pop(Path *p, size_t old) {
        p->len = old;
        p->buf[old] = '\0';
}

static int fail(const Path *p, char **ret_error, int r, const char *format, ...) _printf_(4, 5);
static int fail(const Path *p, char **ret_error, int r, const char *format, ...) {
        _cleanup_free_ char *what = NULL;
        va_list ap;
        int n;

        if (!ret_error)
                return r;

        va_start(ap, format);
        n = vasprintf(&what, format, ap);
        va_end(ap);
        if (n < 0) {
                what = NULL;
                *ret_error = NULL;
                return r;
        }
        if (asprintf(ret_error, "%s: %s", p->len > 0 ? p->buf : p->root, what) < 0)
                *ret_error = NULL;
        return r;
}

static const char *json_kind(const json_t *j) {
        switch (json_typeof(j)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
                return "an integer";
        case JSON_REAL:
                return "a real number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        case JSON_NULL:
                return "null";
        }
        return "something else";
}

static int mismatch(const Path *p, char **ret_error, const char *expected, const json_t *j) {
        return fail(p, ret_error, -EINVAL, "expected %s, got %s", expected, json_kind(j));
}

static void message_freep(ProtobufCMessage **m) {
        if (*m)
                protobuf_c_message_free_unpacked(*m, NULL);
}

static int message_from_json(const ProtobufCMessageDescriptor *d, json_t *j, Path *path,
                             unsigned depth, ProtobufCMessage **ret, char **ret_error);

/* An integer as sign and magnitude, from a JSON integer or a decimal string
 * ("-12", "18446744073709551615"; no '+', spaces or leading junk). */
static int integer_from_json(const json_t *j, const Path *path, char **ret_error,
                             bool *ret_negative, uint64_t *ret_magnitude) {
        if (json_is_integer(j)) {
                json_int_t v = json_integer_value(j);

                *ret_negative = v < 0;
                /* -(v + 1) + 1 cannot overflow, also for LLONG_MIN */
                *ret_magnitude = v < 0 ? (uint64_t) (-(v + 1)) + 1 : (uint64_t) v;
                return 0;
        }

        if (json_is_string(j)) {
                const char *s = json_string_value(j), *digits = s;
                size_t len = json_string_length(j);
                char *end;
                uint64_t v;

                if (*digits == '-')
                        digits++;
                if (*digits < '0' || *digits > '9' || strlen(s) != len)
                        return fail(path, ret_error, -EINVAL,
                                    "expected an integer, got a string that is not one");
                for (const char *c = digits; *c; c++)
                        if (*c < '0' || *c > '9')
                                return fail(path, ret_error, -EINVAL,
                                            "expected an integer, got a string that is not one");
                errno = 0;
                v = strtoull(digits, &end, 10);
                if (errno == ERANGE || *end)
                        return fail(path, ret_error, -EINVAL, "%s is out of range", s);
                *ret_negative = digits != s && v != 0;
                *ret_magnitude = v;
                return 0;
        }

        return mismatch(path, ret_error, "an integer", j);
}

static int int_field_from_json(const ProtobufCFieldDescriptor *f, const json_t *j, const Path *path,
                               char **ret_error, void *slot) {
        bool neg = false, is_signed;
        uint64_t mag = 0, max;
        int r;

        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                is_signed = true;
                max = INT32_MAX;
                break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                is_signed = true;
                max = INT64_MAX;
                break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                is_signed = false;
                max = UINT32_MAX;
                break;
        default:
                is_signed = false;
                max = UINT64_MAX;
                break;
        }

        r = integer_from_json(j, path, ret_error, &neg, &mag);
        if (r < 0)
                return r;

        /* The most negative value has a magnitude one above max. */
        if (neg ? (!is_signed || mag > max + 1) : mag > max) {
                if (json_is_integer(j))
                        return fail(path, ret_error, -EINVAL,
                                    "%" JSON_INTEGER_FORMAT " is out of range for %s",
                                    json_integer_value(j), type_name(f->type));
                return fail(path, ret_error, -EINVAL, "%s is out of range for %s",
                            json_string_value(j), type_name(f->type));
        }

        if (is_signed) {
                int64_t v = neg ? -(int64_t) (mag - 1) - 1 : (int64_t) mag;

                if (max == INT32_MAX) {
                        int32_t v32 = (int32_t) v;
                        memcpy(slot, &v32, sizeof(v32));
                } else
                        memcpy(slot, &v, sizeof(v));
        } else if (max == UINT32_MAX) {
                uint32_t v32 = (uint32_t) mag;
                memcpy(slot, &v32, sizeof(v32));
        } else
                memcpy(slot, &mag, sizeof(mag));
        return 0;
}

static int float_field_from_json(const ProtobufCFieldDescriptor *f, const json_t *j,
                                 const Path *path, char **ret_error, void *slot) {
        double v;

        if (json_is_number(j))
                v = json_number_value(j);
        else if (json_is_string(j) && streq(json_string_value(j), "NaN"))
                v = NAN;
        else if (json_is_string(j) && streq(json_string_value(j), "Infinity"))
                v = INFINITY;
        else if (json_is_string(j) && streq(json_string_value(j), "-Infinity"))
                v = -INFINITY;
        else
                return mismatch(path, ret_error, "a number", j);

        if (f->type == PROTOBUF_C_TYPE_FLOAT) {
                float v32;

                if (isfinite(v) && (v > FLT_MAX || v < -FLT_MAX))
                        return fail(path, ret_error, -EINVAL, "%g is out of range for float", v);
                v32 = (float) v;
                memcpy(slot, &v32, sizeof(v32));
        } else
                memcpy(slot, &v, sizeof(v));
        return 0;
}

static int enum_field_from_json(const ProtobufCFieldDescriptor *f, const json_t *j,
                                const Path *path, char **ret_error, void *slot) {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        const ProtobufCEnumValue *ev;

        if (json_is_string(j)) {
                const char *name = json_string_value(j);

                ev = protobuf_c_enum_descriptor_get_value_by_name(ed, name);
                if (!ev) {
                        char q[QUOTE_MAX + 4];
                        size_t i;

                        for (i = 0; name[i] && i < QUOTE_MAX; i++)
                                q[i] = (unsigned char) name[i] < 0x20 || name[i] == '"' ||
                                                       name[i] == 0x7f
                                               ? '?'
                                               : name[i];
                        q[i] = '\0';
                        return fail(path, ret_error, -EINVAL, "\"%s%s\" is not a value of %s", q,
                                    name[i] ? "..." : "", ed->name);
                }
        } else if (json_is_integer(j)) {
                json_int_t v = json_integer_value(j);

                ev = v >= INT32_MIN && v <= INT32_MAX
                             ? protobuf_c_enum_descriptor_get_value(ed, (int) v)
                             : NULL;
                if (!ev)
                        return fail(path, ret_error, -EINVAL,
                                    "%" JSON_INTEGER_FORMAT " is not a value of %s", v, ed->name);
        } else
                return mismatch(path, ret_error, "an enum name or number", j);

        memcpy(slot, &ev->value, sizeof(int));
        return 0;
}

static int string_field_from_json(const json_t *j, const Path *path, char **ret_error, void *slot) {
        const char *s;
        size_t len;
        char *copy;

        if (!json_is_string(j))
                return mismatch(path, ret_error, "a string", j);

        s = json_string_value(j);
        len = json_string_length(j);
        /* A C string ends at the first NUL: the message would say less than
         * the document did. */
        if (memchr(s, 0, len))
                return fail(path, ret_error, -EINVAL, "string contains a NUL character");
        if (!codec_utf8_is_valid(s, len))
                return fail(path, ret_error, -EINVAL, "string is not valid UTF-8");

        copy = strndup(s, len);
        if (!copy)
                return fail(path, ret_error, -ENOMEM, "out of memory");
        memcpy(slot, &copy, sizeof(copy));
        return 0;
}

static int bytes_field_from_json(const json_t *j, const Path *path, char **ret_error, void *slot) {
        static const int variants[] = {
                sodium_base64_VARIANT_ORIGINAL,
                sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                sodium_base64_VARIANT_URLSAFE,
                sodium_base64_VARIANT_URLSAFE_NO_PADDING,
        };
        _cleanup_free_ uint8_t *data = NULL;
        ProtobufCBinaryData b = { 0 };
        const char *s;
        size_t len;

        if (!json_is_string(j))
                return mismatch(path, ret_error, "a base64 string", j);

        s = json_string_value(j);
        len = json_string_length(j);
        if (len > 0) {
                size_t max = len / 4 * 3 + 3, n = 0;
                bool ok = false;

                data = malloc(max);
                if (!data)
                        return fail(path, ret_error, -ENOMEM, "out of memory");
                for (size_t i = 0; i < ELEMENTSOF(variants) && !ok; i++)
                        ok = sodium_base642bin(data, max, s, len, NULL, &n, NULL, variants[i]) == 0;
                if (!ok)
                        return fail(path, ret_error, -EINVAL, "expected base64, got \"%.*s%s\"",
                                    (int) MIN(len, (size_t) 16), s, len > 16 ? "..." : "");
                if (n > 0) {
                        b.len = n;
                        b.data = TAKE_PTR(data);
                }
        }
        memcpy(slot, &b, sizeof(b));
        return 0;
}

/* Converts one JSON value for field f into *slot (the field, or an array
 * element). On success the slot owns whatever was allocated for it. */
static int value_from_json(const ProtobufCFieldDescriptor *f, json_t *j, Path *path, unsigned depth,
                           void *slot, char **ret_error) {
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return int_field_from_json(f, j, path, ret_error, slot);
        case PROTOBUF_C_TYPE_FLOAT:
        case PROTOBUF_C_TYPE_DOUBLE:
                return float_field_from_json(f, j, path, ret_error, slot);
        case PROTOBUF_C_TYPE_BOOL: {
                protobuf_c_boolean v;

                if (!json_is_boolean(j))
                        return mismatch(path, ret_error, "true or false", j);
                v = json_is_true(j);
                memcpy(slot, &v, sizeof(v));
                return 0;
        }
        case PROTOBUF_C_TYPE_ENUM:
                return enum_field_from_json(f, j, path, ret_error, slot);
        case PROTOBUF_C_TYPE_STRING:
                return string_field_from_json(j, path, ret_error, slot);
        case PROTOBUF_C_TYPE_BYTES:
                return bytes_field_from_json(j, path, ret_error, slot);
        case PROTOBUF_C_TYPE_MESSAGE: {
                ProtobufCMessage *sub = NULL;
                int r;

                r = message_from_json(f->descriptor, j, path, depth + 1, &sub, ret_error);
                if (r < 0)
                        return r;
                memcpy(slot, &sub, sizeof(sub));
                return 0;
        }
        }
        return fail(path, ret_error, -EINVAL, "field of unsupported type %d", (int) f->type);
}

static int repeated_from_json(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, json_t *j,
                              Path *path, unsigned depth, char **ret_error) {
        size_t n, sz = value_size(f->type);
        uint8_t *arr;

        if (!json_is_array(j))
                return mismatch(path, ret_error, "an array", j);
        n = json_array_size(j);
        if (n == 0)
                return 0;

        arr = calloc(n, sz);
        if (!arr)
                return fail(path, ret_error, -ENOMEM, "out of memory");
        /* The message owns the array from here; the count grows with each
         * converted element, so freeing it after a failure frees exactly the
         * elements that exist. */
        store(m, f->offset, &arr, sizeof(arr));

        for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(j, i);
                size_t old = path_push(path, "[%zu]", i);
                int r;

                if (json_is_null(e))
                        return fail(path, ret_error, -EINVAL,
                                    "null is not allowed in a repeated field (of %s)",
                                    type_name(f->type));
                r = value_from_json(f, e, path, depth, arr + i * sz, ret_error);
                if (r < 0)
                        return r;
                store(m, f->quantifier_offset, &(size_t){ i + 1 }, sizeof(size_t));
                path_pop(path, old);
        }
        return 0;
}

static int field_from_json(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, json_t *j,
                           Path *path, unsigned depth, char **ret_error) {
        const ProtobufCMessageDescriptor *d = m->descriptor;
        union {
                uint64_t u64;
                double d;
                void *p;
                ProtobufCBinaryData b;
        } value = { 0 };
        int r;

        if (f->label == PROTOBUF_C_LABEL_REPEATED)
                return repeated_from_json(m, f, j, path, depth, ret_error);

        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                uint32_t c = load_u32(m, f->quantifier_offset);

                if (c != 0 && c != f->id) {
                        const ProtobufCFieldDescriptor *other =
                                protobuf_c_message_descriptor_get_field(d, c);

                        return fail(path, ret_error, -EINVAL,
                                    "%s is set too; only one member of a oneof may be",
                                    other ? other->name : "another member");
                }
        }

        /* Converted aside first, so the message never holds a half value. */
        r = value_from_json(f, j, path, depth, &value, ret_error);
        if (r < 0)
                return r;

        /* A fresh message holds only defaults here (JSON object keys are
         * unique), so nothing is overwritten that would need freeing. */
        store(m, f->offset, &value, value_size(f->type));
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                store(m, f->quantifier_offset, &f->id, sizeof(uint32_t));
        else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                 f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
                store(m, f->quantifier_offset, &(protobuf_c_boolean){ 1 },
                      sizeof(protobuf_c_boolean));
        return 0;
}

static int message_from_json(const ProtobufCMessageDescriptor *d, json_t *j, Path *path,
                             unsigned depth, ProtobufCMessage **ret, char **ret_error) {
        _cleanup_(message_freep) ProtobufCMessage *m = NULL;
        const char *key;
        size_t key_len;
        json_t *value;
        int r;

        if (depth > PBJSON_MAX_DEPTH)
                return fail(path, ret_error, -EINVAL, "nested deeper than %u levels",
                            PBJSON_MAX_DEPTH);
        if (!json_is_object(j))
                return path->len > 0
                               ? fail(path, ret_error, -EINVAL, "expected an object (%s), got %s",
                                      d->name, json_kind(j))
                               : mismatch(path, ret_error, "an object", j);

        m = malloc(d->sizeof_message);
        if (!m)
                return fail(path, ret_error, -ENOMEM, "out of memory");
        protobuf_c_message_init(d, m);

        json_object_keylen_foreach(j, key, key_len, value) {
                const ProtobufCFieldDescriptor *f = NULL;
                size_t old = path_push_key(path, key);

                /* "host\u0000x" is not "host". */
                if (strlen(key) == key_len)
                        f = protobuf_c_message_descriptor_get_field_by_name(d, key);
                if (!f)
                        return fail(path, ret_error, -EINVAL, "unknown field of %s", d->name);
                /* null stands for the default, as in the proto3 JSON mapping */
                if (!json_is_null(value)) {
                        r = field_from_json(m, f, value, path, depth, ret_error);
                        if (r < 0)
                                return r;
                }
                path_pop(path, old);
        }

        *ret = TAKE_PTR(m);
        return 0;
}

int pbjson_to_message(const ProtobufCMessageDescriptor *desc, json_t *json, ProtobufCMessage **ret,
                      char **ret_error) {
        Path path = { .root = NULL };

        assert(desc);
        assert(desc->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
        assert(ret);

        path.root = desc->name;
        if (!json) {
                if (ret_error)
                        *ret_error = strdup("no JSON document");
                return -EINVAL;
        }
        return message_from_json(desc, json, &path, 0, ret, ret_error);
}
