/* SPDX-License-Identifier: MIT */
/* The codec owns the envelope: packing and signing on the way out, and on the
 * way in every check a message passes before anyone looks at it (size cap,
 * allocation budget, version, type, signature, and a descriptor-driven walk
 * over every string, enum and oneof of the body). */
#include "codec.h"
#include "util.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CODEC_MAX_DEPTH 32u
/* Longer paths are cut; they only appear in error text. */
#define CODEC_PATH_MAX 512u
/* Protobuf field numbers are 29 bits. */
#define FIELD_NUMBER_MAX ((UINT64_C(1) << 29) - 1)
/* How much of an untrusted type name an error message quotes. */
#define CODEC_QUOTE_MAX 64u

/* The allocation budget of one decode: live bytes, headers included. */
typedef struct Budget {
        ProtobufCAllocator allocator;
        size_t used;
        size_t limit;
        bool exhausted;
        bool out_of_memory; /* malloc itself failed: not the message's fault */
} Budget;

/* Each block remembers its size so the free hook can return it to the budget. */
typedef union BlockHeader {
        size_t size;
        max_align_t align;
} BlockHeader;

typedef struct Path {
        char buf[CODEC_PATH_MAX];
        size_t len;
} Path;

/* Copies at most CODEC_QUOTE_MAX characters of untrusted text for an error
 * message, with anything but printable ASCII replaced, so a hostile type
 * name can neither flood nor forge log lines. */
static const char *quote(const char *s, char buf[static CODEC_QUOTE_MAX + 4]) {
        size_t i;

        if (!s)
                return "(null)";

        for (i = 0; s[i] && i < CODEC_QUOTE_MAX; i++)
                buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
        if (s[i]) {
                memcpy(buf + i, "...", 3);
                i += 3;
        }
        buf[i] = '\0';
        return buf;
}

static void *budget_alloc(void *data, size_t size) {
        Budget *b = data;
        BlockHeader *h;

        if (size > b->limit - b->used || sizeof(BlockHeader) > b->limit - b->used - size) {
                b->exhausted = true;
                return NULL;
        }

        h = malloc(sizeof(BlockHeader) + size);
        if (!h) {
                b->out_of_memory = true;
                return NULL;
        }
        h->size = size;
        b->used += sizeof(BlockHeader) + size;
        return h + 1;
}

static void budget_free(void *data, void *p) {
        Budget *b = data;
        BlockHeader *h;

        if (!p)
                return;

        h = (BlockHeader *) p - 1;
        assert(b->used >= sizeof(BlockHeader) + h->size);
        b->used -= sizeof(BlockHeader) + h->size;
        free(h);
}

static Budget *budget_new(size_t limit) {
        Budget *b = calloc(1, sizeof(Budget));

        if (!b)
                return NULL;
        b->allocator = (ProtobufCAllocator){
                .alloc = budget_alloc,
                .free = budget_free,
                .allocator_data = b,
        };
        b->limit = limit;
        return b;
}

static void path_append(Path *p, const char *s, size_t n) {
        size_t room = sizeof(p->buf) - 1 - p->len;

        n = MIN(n, room);
        memcpy(p->buf + p->len, s, n);
        p->len += n;
        p->buf[p->len] = '\0';
}

/* ".name" or ".name[k]". Every field of every message walked gets one, so
 * this is plain copying rather than printf (it was a third of the decoding
 * time of a heartbeat). Returns the length to pop back to. */
static size_t path_push(Path *p, const char *name, bool indexed, size_t k) {
        size_t old = p->len;
        char digits[24];
        size_t n = sizeof(digits);

        path_append(p, ".", 1);
        path_append(p, name, strlen(name));
        if (indexed) {
                do {
                        digits[--n] = (char) ('0' + k % 10);
                        k /= 10;
                } while (k > 0);
                path_append(p, "[", 1);
                path_append(p, digits + n, sizeof(digits) - n);
                path_append(p, "]", 1);
        }
        return old;
}

static void path_pop(Path *p, size_t old) {
        p->len = old;
        p->buf[old] = '\0';
}

static void path_init(Path *p, const char *root) {
        p->len = 0;
        p->buf[0] = '\0';
        path_append(p, root, strlen(root));
}

bool codec_utf8_is_valid(const char *s, size_t len) {
        const uint8_t *p, *end;

        assert(s || len == 0);

        if (len == 0)
                return true;
        p = (const uint8_t *) s;
        end = p + len;

        while (p < end) {
                uint8_t c = *p;
                uint8_t lo = 0x80, hi = 0xbf;
                size_t n;

                if (c == 0)
                        return false;
                if (c < 0x80) {
                        p++;
                        continue;
                }

                /* Table 3-7 of the Unicode standard: the second byte's range
                 * is what rules out overlong forms (C0, C1, E0 80-9F,
                 * F0 80-8F), surrogates (ED A0-BF) and code points above
                 * U+10FFFF (F4 90-BF, F5-FF). */
                if (c >= 0xc2 && c <= 0xdf)
                        n = 1;
                else if (c >= 0xe0 && c <= 0xef) {
                        n = 2;
                        if (c == 0xe0)
                                lo = 0xa0;
                        else if (c == 0xed)
                                hi = 0x9f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 3;
                        if (c == 0xf0)
                                lo = 0x90;
                        else if (c == 0xf4)
                                hi = 0x8f;
                } else
                        return false;

                if ((size_t) (end - p) <= n)
                        return false;
                if (p[1] < lo || p[1] > hi)
                        return false;
                for (size_t i = 2; i <= n; i++)
                        if (p[i] < 0x80 || p[i] > 0xbf)
                                return false;
                p += n + 1;
        }

        return true;
}

static size_t load_size(const void *base, unsigned offset) {
        size_t v;
        memcpy(&v, (const uint8_t *) base + offset, sizeof(v));
        return v;
}

static uint32_t load_u32(const void *base, unsigned offset) {
        uint32_t v;
        memcpy(&v, (const uint8_t *) base + offset, sizeof(v));
        return v;
}

static const void *load_ptr(const void *base, unsigned offset) {
        const void *v;
        memcpy(&v, (const uint8_t *) base + offset, sizeof(v));
        return v;
}

static int validate_message(const ProtobufCMessage *m, Path *path, unsigned depth,
                            char **ret_error);

/* Checks one value of a field; `member` points at its storage (an element
 * of the array for repeated fields). */
static int validate_value(const ProtobufCFieldDescriptor *f, const void *member, Path *path,
                          unsigned depth, char **ret_error) {
        bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;

        switch (f->type) {
        case PROTOBUF_C_TYPE_STRING: {
                const char *s = load_ptr(member, 0);

                /* An unset singular string packs as empty; a NULL element of a
                 * repeated one would crash the packer. */
                if (!s)
                        return repeated ? error_set(ret_error, -EBADMSG, "%s: NULL string",
                                                    path->buf)
                                        : 0;
                if (!codec_utf8_is_valid(s, strlen(s)))
                        return error_set(ret_error, -EBADMSG, "%s: invalid UTF-8", path->buf);
                return 0;
        }

        case PROTOBUF_C_TYPE_ENUM: {
                const ProtobufCEnumDescriptor *ed = f->descriptor;
                int v;

                /* protobuf-c keeps enum values it does not know; proto3 would
                 * call them open, we call them an error. */
                memcpy(&v, member, sizeof(v));
                if (!protobuf_c_enum_descriptor_get_value(ed, v))
                        return error_set(ret_error, -EBADMSG, "%s: %d is not a value of %s",
                                         path->buf, v, ed->name);
                return 0;
        }

        case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessage *sub = load_ptr(member, 0);

                if (!sub)
                        return repeated ? error_set(ret_error, -EBADMSG, "%s: NULL message",
                                                    path->buf)
                                        : 0;
                if (sub->descriptor != f->descriptor)
                        return error_set(ret_error, -EBADMSG, "%s: message of the wrong type",
                                         path->buf);
                return validate_message(sub, path, depth + 1, ret_error);
        }

        case PROTOBUF_C_TYPE_BYTES: {
                ProtobufCBinaryData b;

                memcpy(&b, member, sizeof(b));
                if (b.len > 0 && !b.data)
                        return error_set(ret_error, -EBADMSG, "%s: bytes without data", path->buf);
                return 0;
        }

        default:
                return 0;
        }
}

/* The oneof members of a message share one case field at quantifier_offset
 * but need not be adjacent in the descriptor. */
static bool oneof_first_member(const ProtobufCMessageDescriptor *d, unsigned i) {
        for (unsigned j = 0; j < i; j++)
                if ((d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                    d->fields[j].quantifier_offset == d->fields[i].quantifier_offset)
                        return false;
        return true;
}

static bool oneof_has_member(const ProtobufCMessageDescriptor *d, unsigned qoffset, uint32_t id) {
        for (unsigned j = 0; j < d->n_fields; j++)
                if ((d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                    d->fields[j].quantifier_offset == qoffset && d->fields[j].id == id)
                        return true;
        return false;
}

static size_t repeated_element_size(ProtobufCType t) {
        switch (t) {
        case PROTOBUF_C_TYPE_STRING:
                return sizeof(char *);
        case PROTOBUF_C_TYPE_MESSAGE:
                return sizeof(ProtobufCMessage *);
        case PROTOBUF_C_TYPE_ENUM:
                return sizeof(int);
        case PROTOBUF_C_TYPE_BYTES:
                return sizeof(ProtobufCBinaryData);
        default:
                return 0; /* scalars: nothing to check */
        }
}

static int validate_message(const ProtobufCMessage *m, Path *path, unsigned depth,
                            char **ret_error) {
        const ProtobufCMessageDescriptor *d = m->descriptor;
        int r;

        if (!d || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
                return error_set(ret_error, -EBADMSG, "%s: not a protobuf-c message", path->buf);
        if (depth > CODEC_MAX_DEPTH)
                return error_set(ret_error, -EBADMSG, "%s: nested deeper than %u levels", path->buf,
                                 CODEC_MAX_DEPTH);

        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                size_t old;

                if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                        uint32_t c = load_u32(m, f->quantifier_offset);

                        if (oneof_first_member(d, i) && c != 0 &&
                            !oneof_has_member(d, f->quantifier_offset, c))
                                return error_set(ret_error, -EBADMSG,
                                                 "%s: oneof case %" PRIu32
                                                 " is not a member of the oneof holding %s",
                                                 path->buf, c, f->name);
                        if (c != f->id)
                                continue;
                } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = load_size(m, f->quantifier_offset);
                        size_t sz = repeated_element_size(f->type);
                        const uint8_t *a = load_ptr(m, f->offset);

                        if (sz == 0)
                                continue;
                        if (n > 0 && !a)
                                return error_set(ret_error, -EBADMSG,
                                                 "%s.%s: %zu elements without an array", path->buf,
                                                 f->name, n);
                        for (size_t k = 0; k < n; k++) {
                                old = path_push(path, f->name, true, k);
                                r = validate_value(f, a + k * sz, path, depth, ret_error);
                                if (r < 0)
                                        return r;
                                path_pop(path, old);
                        }
                        continue;
                } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                           f->type != PROTOBUF_C_TYPE_STRING &&
                           f->type != PROTOBUF_C_TYPE_MESSAGE) {
                        /* proto2 optional scalar: only its has_ flag makes it present. */
                        protobuf_c_boolean has;

                        memcpy(&has, (const uint8_t *) m + f->quantifier_offset, sizeof(has));
                        if (!has)
                                continue;
                }

                old = path_push(path, f->name, false, 0);
                r = validate_value(f, (const uint8_t *) m + f->offset, path, depth, ret_error);
                if (r < 0)
                        return r;
                path_pop(path, old);
        }

        return 0;
}

int codec_validate(const ProtobufCMessage *m, char **ret_error) {
        Path path;

        assert(m);

        path_init(&path, m->descriptor ? m->descriptor->name : "(unknown)");
        return validate_message(m, &path, 0, ret_error);
}

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
        uint64_t v = 0;

        for (unsigned shift = 0; shift < 64; shift += 7) {
                uint8_t c;

                if (*p >= end)
                        return false;
                c = *(*p)++;
                v |= (uint64_t) (c & 0x7f) << shift;
                if (!(c & 0x80)) {
                        *ret = v;
                        return true;
                }
        }
        return false;
}

/* Once unpacked, a C string ends at its first NUL, so "a.service\0junk"
 * would read as "a.service" here and as something else in every other
 * implementation. Only the wire shows it: walk the encoded message along its
 * descriptor and refuse NUL bytes inside string fields. */
static int scan_wire(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                     Path *path, unsigned depth, char **ret_error) {
        _cleanup_free_ size_t *counts = NULL;
        const uint8_t *p, *end;
        int r;

        if (len == 0)
                return 0;
        p = data;
        end = data + len;
        if (depth > CODEC_MAX_DEPTH)
                return error_set(ret_error, -EBADMSG, "%s: nested deeper than %u levels", path->buf,
                                 CODEC_MAX_DEPTH);

        counts = calloc(MAX(d->n_fields, 1u), sizeof(size_t));
        if (!counts)
                return error_set(ret_error, -ENOMEM, "%s: out of memory", path->buf);

        while (p < end) {
                const ProtobufCFieldDescriptor *f;
                uint64_t tag, v;

                if (!read_varint(&p, end, &tag))
                        goto malformed;
                /* protobuf-c takes field 0 when its tag is an overlong
                 * varint, then writes a tag it cannot read back. */
                if ((tag >> 3) == 0 || (tag >> 3) > FIELD_NUMBER_MAX)
                        return error_set(ret_error, -EBADMSG,
                                         "%s: invalid field number %" PRIu64 " at byte %zu",
                                         path->buf, tag >> 3, (size_t) (p - data));

                switch (tag & 7) {
                case 0: /* varint */
                        if (!read_varint(&p, end, &v))
                                goto malformed;
                        continue;
                case 1: /* fixed64 */
                        if (end - p < 8)
                                goto malformed;
                        p += 8;
                        continue;
                case 5: /* fixed32 */
                        if (end - p < 4)
                                goto malformed;
                        p += 4;
                        continue;
                case 2: /* length-delimited */
                        if (!read_varint(&p, end, &v) || v > (uint64_t) (end - p))
                                goto malformed;
                        break;
                default: /* groups: protobuf-c refuses them too */
                        goto malformed;
                }

                f = (tag >> 3) <= UINT32_MAX
                            ? protobuf_c_message_descriptor_get_field(d, (unsigned) (tag >> 3))
                            : NULL;
                if (f &&
                    (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)) {
                        size_t k = counts[f - d->fields]++;
                        size_t old = f->label == PROTOBUF_C_LABEL_REPEATED
                                             ? path_push(path, f->name, true, k)
                                             : path_push(path, f->name, false, 0);

                        if (f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, (size_t) v))
                                return error_set(ret_error, -EBADMSG, "%s: NUL byte in string",
                                                 path->buf);
                        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                                r = scan_wire(f->descriptor, p, (size_t) v, path, depth + 1,
                                              ret_error);
                                if (r < 0)
                                        return r;
                        }
                        path_pop(path, old);
                }
                p += v;
        }
        return 0;

malformed:
        return error_set(ret_error, -EBADMSG, "%s: malformed protobuf at byte %zu", path->buf,
                         (size_t) (p - data));
}

static void put_u64(uint8_t **p, uint64_t v) {
        for (int i = 7; i >= 0; i--)
                *(*p)++ = (uint8_t) (v >> (8 * i));
}

static void put_field(uint8_t **p, const void *data, size_t len) {
        put_u64(p, len);
        if (len > 0)
                memcpy(*p, data, len);
        *p += len;
}

/* The domain tag (with its NUL), then type, sender as 64-bit big-endian
 * length and bytes, epoch and send time as 64-bit big-endian numbers, then
 * key id and body as length and bytes: lengths make the concatenation
 * unambiguous. */
int codec_signed_payload(const Baton__V1__Envelope *env, uint8_t **ret, size_t *ret_len) {
        const char *type = strempty(env->type), *sender = strempty(env->sender),
                   *key_id = strempty(env->key_id);
        size_t n = sizeof(CODEC_SIGNATURE_DOMAIN) + 4 * 8 + strlen(type) + strlen(sender) +
                   strlen(key_id) + 2 * 8;
        uint8_t *buf, *p;

        if (env->body.len > SIZE_MAX - n)
                return -EMSGSIZE;
        n += env->body.len;
        buf = malloc(n);
        if (!buf)
                return -ENOMEM;
        p = buf;
        memcpy(p, CODEC_SIGNATURE_DOMAIN, sizeof(CODEC_SIGNATURE_DOMAIN)); /* with its NUL */
        p += sizeof(CODEC_SIGNATURE_DOMAIN);
        put_field(&p, type, strlen(type));
        put_field(&p, sender, strlen(sender));
        put_u64(&p, env->epoch);
        put_u64(&p, env->sent_at_us);
        put_field(&p, key_id, strlen(key_id));
        put_field(&p, env->body.data, env->body.len);
        assert((size_t) (p - buf) == n);
        *ret = buf;
        *ret_len = n;
        return 0;
}

int codec_encode(const ProtobufCMessage *body, const char *sender, uint64_t epoch, uint64_t now_us,
                 const SignKey *key, uint8_t **ret_buf, size_t *ret_len) {
        Baton__V1__Envelope env = BATON__V1__ENVELOPE__INIT;
        _cleanup_free_ uint8_t *packed = NULL, *out = NULL;
        uint8_t sig[SIGN_SIGNATURE_BYTES];
        size_t n;
        int r;

        assert(body);
        assert(body->descriptor);
        assert(ret_buf);
        assert(ret_len);

        /* Refuse here what every receiver would refuse: the sender's log then
         * names the bug instead of a dead-letter queue filling up. */
        if (codec_validate(body, NULL) < 0)
                return -EINVAL;
        sender = strempty(sender);
        if (!codec_utf8_is_valid(sender, strlen(sender)))
                return -EINVAL;

        n = protobuf_c_message_get_packed_size(body);
        if (n > CODEC_MAX_MESSAGE_SIZE)
                return -EMSGSIZE;
        packed = malloc(MAX(n, 1u));
        if (!packed)
                return -ENOMEM;
        if (protobuf_c_message_pack(body, packed) != n)
                return -EIO;

        env.version = CODEC_PROTOCOL_VERSION;
        env.sender = (char *) sender;
        env.sent_at_us = now_us;
        env.epoch = epoch;
        env.type = (char *) body->descriptor->name;
        env.body.data = packed;
        env.body.len = n;
        if (key) {
                _cleanup_free_ uint8_t *payload = NULL;
                size_t payload_len;

                env.key_id = (char *) key->pub.id;
                r = codec_signed_payload(&env, &payload, &payload_len);
                if (r < 0)
                        return r;
                r = sign_detached(key, payload, payload_len, sig);
                if (r < 0)
                        return r;
                env.signature.data = sig;
                env.signature.len = sizeof(sig);
        }

        n = baton__v1__envelope__get_packed_size(&env);
        if (n > CODEC_MAX_MESSAGE_SIZE)
                return -EMSGSIZE;
        out = malloc(n);
        if (!out)
                return -ENOMEM;
        if (baton__v1__envelope__pack(&env, out) != n)
                return -EIO;

        *ret_buf = TAKE_PTR(out);
        *ret_len = n;
        return 0;
}

void codec_decoded_done(CodecDecoded *d) {
        Budget *b;

        if (!d)
                return;

        b = d->allocator_state;
        if (b) {
                if (d->body)
                        protobuf_c_message_free_unpacked(d->body, &b->allocator);
                if (d->envelope)
                        baton__v1__envelope__free_unpacked(d->envelope, &b->allocator);
                free(b);
        }
        *d = (CodecDecoded){ 0 };
}

static int unpack_failed(const Budget *b, const char *what, char **ret_error) {
        if (b->out_of_memory)
                return error_set(ret_error, -ENOMEM, "%s: out of memory", what);
        if (b->exhausted)
                return error_set(ret_error, -EBADMSG,
                                 "%s: exceeds the decoding memory budget of %zu bytes", what,
                                 b->limit);
        return error_set(ret_error, -EBADMSG, "%s: malformed protobuf", what);
}

/* d->descriptor's body from data, with d's budget: unpacked, wire-scanned,
 * validated. */
static int decode_body(CodecDecoded *d, const uint8_t *data, size_t len, char **ret_error) {
        Budget *b = d->allocator_state;
        Path path;
        int r;

        d->body = protobuf_c_message_unpack(d->descriptor, &b->allocator, len, data);
        if (!d->body)
                return unpack_failed(b, d->descriptor->name, ret_error);
        path_init(&path, d->descriptor->name);
        r = scan_wire(d->descriptor, data, len, &path, 0, ret_error);
        if (r < 0)
                return r;
        return codec_validate(d->body, ret_error);
}

int codec_decode(const void *buf, size_t len, const ProtobufCMessageDescriptor *const *allowed,
                 size_t n_allowed, const char *amqp_type, const SignPublicKey *verify,
                 CodecDecoded *ret, char **ret_error) {
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        char q1[CODEC_QUOTE_MAX + 4], q2[CODEC_QUOTE_MAX + 4];
        const Baton__V1__Envelope *env;
        Budget *b;
        Path path;
        int r;

        assert(buf || len == 0);
        assert(allowed || n_allowed == 0);
        assert(ret);

        if (len > CODEC_MAX_MESSAGE_SIZE)
                return error_set(ret_error, -EMSGSIZE,
                                 "message of %zu bytes exceeds the limit of %u bytes", len,
                                 (unsigned) CODEC_MAX_MESSAGE_SIZE);

        b = budget_new(CODEC_ALLOC_BUDGET);
        if (!b)
                return error_set(ret_error, -ENOMEM, "out of memory");
        d.allocator_state = b;

        d.envelope = baton__v1__envelope__unpack(&b->allocator, len, buf);
        if (!d.envelope)
                return unpack_failed(b, baton__v1__envelope__descriptor.name, ret_error);
        env = d.envelope;

        path_init(&path, baton__v1__envelope__descriptor.name);
        r = scan_wire(&baton__v1__envelope__descriptor, buf, len, &path, 0, ret_error);
        if (r < 0)
                return r;

        /* Version 1 signed the body alone: good enough for unsigned status
         * from old agents, never for a message whose signature matters. */
        if (env->version != CODEC_PROTOCOL_VERSION &&
            (verify || env->version != CODEC_PROTOCOL_VERSION_MIN))
                return error_set(ret_error, -EPROTONOSUPPORT,
                                 "%s.version: protocol version %" PRIu32 ", expected %u%s",
                                 baton__v1__envelope__descriptor.name, env->version,
                                 (unsigned) CODEC_PROTOCOL_VERSION,
                                 verify ? " (signed commands need it)" : "");

        r = codec_validate(&env->base, ret_error);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n_allowed; i++) {
                assert(allowed[i]);
                if (streq(allowed[i]->name, env->type)) {
                        d.descriptor = allowed[i];
                        break;
                }
        }
        if (!d.descriptor)
                return error_set(ret_error, -EPROTOTYPE, "message type \"%s\" is not accepted here",
                                 quote(env->type, q1));
        if (amqp_type && !streq(amqp_type, env->type))
                return error_set(ret_error, -EPROTOTYPE,
                                 "envelope type \"%s\" does not match the AMQP type \"%s\"",
                                 quote(env->type, q1), quote(amqp_type, q2));

        /* The signature is checked before the body is parsed, so an unsigned
         * or forged command never reaches the body parser. */
        if (verify) {
                if (env->signature.len == 0)
                        return error_set(ret_error, -EKEYREJECTED,
                                         "%s: unsigned, but a signature by key %s is required",
                                         env->type, verify->id);
                if (!streq(env->key_id, verify->id))
                        return error_set(ret_error, -EKEYREJECTED,
                                         "%s: signed by key \"%s\", expected key %s", env->type,
                                         quote(env->key_id, q1), verify->id);
                _cleanup_free_ uint8_t *payload = NULL;
                size_t payload_len;

                r = codec_signed_payload(env, &payload, &payload_len);
                if (r < 0)
                        return error_set(ret_error, r, "%s: cannot verify the signature: %s",
                                         env->type, strerror(-r));
                r = sign_verify(verify, payload, payload_len, env->signature.data,
                                env->signature.len);
                if (r == -EINVAL)
                        return error_set(ret_error, -EKEYREJECTED,
                                         "%s: signature of %zu bytes, expected %u", env->type,
                                         env->signature.len, (unsigned) SIGN_SIGNATURE_BYTES);
                if (r == -EKEYREJECTED)
                        return error_set(ret_error, r, "%s: bad signature for key %s", env->type,
                                         verify->id);
                if (r < 0)
                        return error_set(ret_error, r, "%s: cannot verify the signature: %s",
                                         env->type, strerror(-r));
        }

        r = decode_body(&d, env->body.data, env->body.len, ret_error);
        if (r < 0)
                return r;
        *ret = d;
        d = (CodecDecoded){ 0 };
        return 0;
}

int codec_decode_body(const ProtobufCMessageDescriptor *desc, const void *buf, size_t len,
                      CodecDecoded *ret, char **ret_error) {
        _cleanup_(codec_decoded_done) CodecDecoded d = { .descriptor = desc };
        int r;

        assert(desc);
        assert(buf || len == 0);
        assert(ret);

        if (len > CODEC_MAX_ANSWER_SIZE)
                return error_set(ret_error, -EMSGSIZE,
                                 "%s of %zu bytes exceeds the limit of %u bytes", desc->name, len,
                                 (unsigned) CODEC_MAX_ANSWER_SIZE);
        d.allocator_state = budget_new(CODEC_ALLOC_BUDGET + 8 * len);
        if (!d.allocator_state)
                return error_set(ret_error, -ENOMEM, "out of memory");
        r = decode_body(&d, buf, len, ret_error);
        if (r < 0)
                return r;
        *ret = d;
        d = (CodecDecoded){ 0 };
        return 0;
}

int codec_check_age(const Baton__V1__Envelope *env, uint64_t now_us, uint64_t max_age_us,
                    char **ret_error) {
        assert(env);

        if (now_us > env->sent_at_us && now_us - env->sent_at_us > max_age_us)
                return error_set(ret_error, -ESTALE,
                                 "%s sent %.1fs ago, older than the %.0fs a command may be",
                                 strna(env->type), (double) (now_us - env->sent_at_us) / 1e6,
                                 (double) max_age_us / 1e6);
        if (env->sent_at_us > now_us && env->sent_at_us - now_us > max_age_us)
                return error_set(ret_error, -ESTALE,
                                 "%s sent %.1fs in the future (clocks disagree by more than "
                                 "%.0fs)",
                                 strna(env->type), (double) (env->sent_at_us - now_us) / 1e6,
                                 (double) max_age_us / 1e6);
        return 0;
}

const char *codec_short_type(const char *full_name) {
        const char *dot;

        if (!full_name)
                return NULL;
        dot = strrchr(full_name, '.');
        return dot ? dot + 1 : full_name;
}
