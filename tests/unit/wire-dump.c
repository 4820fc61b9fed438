/* SPDX-License-Identifier: MIT */
/* Writes what the codec puts on the wire, for check-wire-protoc.py to decode
 * with Google's protoc: one body per sample (taken back out of a real
 * codec_encode() envelope), one signed envelope, and manifest.tsv with
 * "file<TAB>full type<TAB>expected line<TAB>…" per file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec-samples.h"
#include "codec.h"
#include "macro.h"
#include "sign.h"

static int write_bytes(const char *dir, const char *name, const void *data, size_t len) {
        _cleanup_free_ char *path = NULL;
        FILE *f;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        f = fopen(path, "we");
        if (!f)
                return negative_errno();
        if (len > 0 && fwrite(data, 1, len, f) != len) {
                fclose(f);
                return -EIO;
        }
        if (fclose(f) != 0)
                return negative_errno();
        return 0;
}

static int manifest_line(FILE *m, const char *file, const char *type, const char *const *expect) {
        fprintf(m, "%s\t%s", file, type);
        for (size_t i = 0; expect[i]; i++) {
                if (strpbrk(expect[i], "\t\n"))
                        return -EINVAL;
                fprintf(m, "\t%s", expect[i]);
        }
        fputc('\n', m);
        return 0;
}

/* Encodes through the codec, decodes again, and writes the body bytes the
 * envelope carried. */
static int dump_sample(const char *dir, FILE *m, const CodecSample *s) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *file = NULL, *error = NULL;
        const ProtobufCMessageDescriptor *d = s->msg->descriptor;
        CodecDecoded dec = { 0 };
        size_t len;
        int r;

        r = codec_encode(s->msg, "wire-dump", 1, 2, NULL, &buf, &len);
        if (r < 0) {
                fprintf(stderr, "%s: codec_encode: %s\n", s->name, strerror(-r));
                return r;
        }
        r = codec_decode(buf, len, &d, 1, d->name, NULL, &dec, &error);
        if (r < 0) {
                fprintf(stderr, "%s: codec_decode: %s\n", s->name, strna(error));
                return r;
        }

        if (asprintf(&file, "%s.bin", s->name) < 0)
                r = -ENOMEM;
        else
                r = write_bytes(dir, file, dec.envelope->body.data, dec.envelope->body.len);
        codec_decoded_done(&dec);
        if (r < 0) {
                fprintf(stderr, "%s: write: %s\n", s->name, strerror(-r));
                return r;
        }

        return manifest_line(m, file, d->name, s->expect);
}

/* A whole signed envelope as a controller would publish it. */
static int dump_envelope(const char *dir, FILE *m, const CodecSample *placement) {
        static const uint8_t seed[SIGN_SEED_BYTES] = { 42 };
        _cleanup_free_ uint8_t *buf = NULL;
        char key_id[64];
        const char *expect[] = { "version: 2",
                                 "sender: \"controller\"",
                                 "sent_at_us: 1700000000999999",
                                 "epoch: 18446744073709551614",
                                 "type: \"baton.v1.Placement\"",
                                 key_id,
                                 NULL };
        SignKey key;
        size_t len;
        int r;

        r = sign_key_from_seed(seed, &key);
        if (r < 0)
                return r;
        snprintf(key_id, sizeof(key_id), "key_id: \"%s\"", key.pub.id);

        r = codec_encode(placement->msg, "controller", UINT64_MAX - 1, UINT64_C(1700000000999999),
                         &key, &buf, &len);
        if (r < 0)
                return r;
        r = write_bytes(dir, "envelope-signed.bin", buf, len);
        if (r < 0)
                return r;
        return manifest_line(m, "envelope-signed.bin", baton__v1__envelope__descriptor.name,
                             expect);
}

int main(int argc, char *argv[]) {
        _cleanup_free_ char *manifest = NULL;
        const CodecSample *s, *placement = NULL;
        size_t n;
        FILE *m;
        int r = 0;

        if (argc != 2) {
                fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
                return 2;
        }

        if (asprintf(&manifest, "%s/manifest.tsv", argv[1]) < 0)
                return 1;
        m = fopen(manifest, "we");
        if (!m) {
                fprintf(stderr, "%s: %s\n", manifest, strerror(errno));
                return 1;
        }

        s = codec_samples(&n);
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = dump_sample(argv[1], m, &s[i]);
                if (streq(s[i].name, "placement"))
                        placement = &s[i];
        }
        if (r >= 0 && placement)
                r = dump_envelope(argv[1], m, placement);

        if (fclose(m) != 0 && r >= 0)
                r = negative_errno();
        if (r < 0) {
                fprintf(stderr, "wire-dump failed: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
