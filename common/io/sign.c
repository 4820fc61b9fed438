/* SPDX-License-Identifier: MIT */
/* Ed25519 keys and signatures on top of libsodium: key generation, the
 * one-line base64 key files (secret: the 32-byte seed, public: the 32-byte
 * key), detached signatures and their verification. */
#include "sign.h"
#include "util.h"

#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"

/* A key file is one short line plus a few comments; anything bigger is not
 * a key file and is refused before it is read into memory. */
#define KEY_FILE_MAX (64u * 1024)

static int sodium_result = -1;
static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_do_init(void) {
        /* 0: initialized now, 1: already initialized by someone else. */
        sodium_result = sodium_init() < 0 ? -EIO : 0;
}

int sign_init(void) {
        if (pthread_once(&sodium_once, sodium_do_init) != 0)
                return -EIO;
        return sodium_result;
}

void sign_key_id(const uint8_t pk[SIGN_PUBLIC_BYTES], char ret[SIGN_KEY_ID_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";

        assert(pk);
        assert(ret);

        for (size_t i = 0; i < SIGN_KEY_ID_LEN / 2; i++) {
                ret[2 * i] = hex[pk[i] >> 4];
                ret[2 * i + 1] = hex[pk[i] & 0xf];
        }
        ret[SIGN_KEY_ID_LEN] = '\0';
}

int sign_key_from_seed(const uint8_t seed[SIGN_SEED_BYTES], SignKey *ret) {
        SignKey k = { 0 };
        int r;

        assert(seed);
        assert(ret);

        r = sign_init();
        if (r < 0)
                return r;

        if (crypto_sign_seed_keypair(k.pub.pk, k.sk, seed) != 0) {
                sodium_memzero(&k, sizeof(k));
                return -EIO;
        }
        sign_key_id(k.pub.pk, k.pub.id);

        *ret = k;
        sodium_memzero(&k, sizeof(k));
        return 0;
}

int sign_key_generate(SignKey *ret) {
        uint8_t seed[SIGN_SEED_BYTES];
        int r;

        assert(ret);

        r = sign_init();
        if (r < 0)
                return r;

        randombytes_buf(seed, sizeof(seed));
        r = sign_key_from_seed(seed, ret);
        sodium_memzero(seed, sizeof(seed));
        return r;
}

/* Reads the whole file behind fd, refusing more than KEY_FILE_MAX bytes. */
static int read_fd_all(int fd, char **ret, size_t *ret_len) {
        char *buf;
        size_t n = 0;

        buf = malloc(KEY_FILE_MAX + 1);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                ssize_t k = read(fd, buf + n, KEY_FILE_MAX + 1 - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = negative_errno();
                        sodium_memzero(buf, n);
                        free(buf);
                        return r;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > KEY_FILE_MAX) {
                        sodium_memzero(buf, n);
                        free(buf);
                        return -EFBIG;
                }
        }

        buf[n] = '\0';
        *ret = buf;
        *ret_len = n;
        return 0;
}

/* Finds the one key line of a key file: blank lines and lines starting with
 * '#' are skipped, surrounding white space is ignored, and the line must be
 * the base64 of exactly 32 bytes. */
static int parse_key_text(const char *what, const char *text, size_t len,
                          uint8_t ret[SIGN_PUBLIC_BYTES], char **ret_error) {
        uint8_t bin[2 * SIGN_PUBLIC_BYTES];
        size_t bin_len = 0;
        const char *key = NULL, *p = text, *end = text + len;
        size_t key_len = 0;
        unsigned line = 0, key_line = 0;
        int r;

        r = sign_init();
        if (r < 0)
                return error_set(ret_error, r, "%s: failed to initialize libsodium", what);

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                const char *e = nl ? nl : end;
                const char *b = p;

                line++;
                while (b < e && strchr(" \t\r\f\v", *b))
                        b++;
                while (e > b && strchr(" \t\r\f\v", e[-1]))
                        e--;

                if (memchr(b, '\0', (size_t) (e - b)))
                        return error_set(ret_error, -EINVAL, "%s:%u: NUL byte in key file", what,
                                         line);

                if (e > b && *b != '#') {
                        if (key)
                                return error_set(ret_error, -EINVAL,
                                                 "%s:%u: unexpected second key line (first on "
                                                 "line %u)",
                                                 what, line, key_line);
                        key = b;
                        key_len = (size_t) (e - b);
                        key_line = line;
                }

                p = nl ? nl + 1 : end;
        }

        if (!key)
                return error_set(ret_error, -EINVAL,
                                 "%s: no key found (expected one line of base64)", what);

        /* With b64_end NULL libsodium refuses trailing garbage instead of
         * stopping at it. */
        if (sodium_base642bin(bin, sizeof(bin), key, key_len, NULL, &bin_len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0)
                return error_set(ret_error, -EINVAL, "%s:%u: key is not valid base64", what,
                                 key_line);
        if (bin_len != SIGN_PUBLIC_BYTES) {
                sodium_memzero(bin, sizeof(bin));
                return error_set(ret_error, -EINVAL, "%s:%u: key decodes to %zu bytes, expected %u",
                                 what, key_line, bin_len, (unsigned) SIGN_PUBLIC_BYTES);
        }

        memcpy(ret, bin, SIGN_PUBLIC_BYTES);
        sodium_memzero(bin, sizeof(bin));
        return 0;
}

/* Opens and reads a key file; for secret keys the mode is checked on the
 * opened descriptor, so a chmod race cannot slip a readable file past it. */
static int read_key_file(const char *path, bool secret, uint8_t ret[SIGN_PUBLIC_BYTES],
                         char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        char *text = NULL;
        size_t len = 0;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = negative_errno();
                return error_set(ret_error, r, "%s: cannot open key file: %s", path, strerror(-r));
        }
        if (fstat(fd, &st) < 0) {
                r = negative_errno();
                return error_set(ret_error, r, "%s: cannot stat key file: %s", path, strerror(-r));
        }
        if (!S_ISREG(st.st_mode))
                return error_set(ret_error, -EINVAL, "%s: key file is not a regular file", path);
        if (secret && (st.st_mode & 077))
                return error_set(ret_error, -EPERM,
                                 "%s: secret key file has mode %04o, must not be accessible by "
                                 "group or others (chmod 600)",
                                 path, (unsigned) (st.st_mode & 07777));

        r = read_fd_all(fd, &text, &len);
        if (r == -EFBIG)
                return error_set(ret_error, -EINVAL, "%s: too large for a key file (over %u bytes)",
                                 path, KEY_FILE_MAX);
        if (r < 0)
                return error_set(ret_error, r, "%s: cannot read key file: %s", path, strerror(-r));

        r = parse_key_text(path, text, len, ret, ret_error);
        sodium_memzero(text, len);
        free(text);
        return r;
}

int sign_key_load(const char *path, SignKey *ret, char **ret_error) {
        uint8_t seed[SIGN_SEED_BYTES];
        int r;

        assert(path);
        assert(ret);

        r = read_key_file(path, /* secret= */ true, seed, ret_error);
        if (r < 0)
                return r;

        r = sign_key_from_seed(seed, ret);
        sodium_memzero(seed, sizeof(seed));
        if (r < 0)
                return error_set(ret_error, r, "%s: cannot derive key pair", path);
        return 0;
}

int sign_public_key_load(const char *spec, SignPublicKey *ret, char **ret_error) {
        SignPublicKey k = { 0 };
        int r;

        assert(spec);
        assert(ret);

        /* Base64 may itself start with '/', so a spec that is exactly a key is
         * taken as one; a real path never is 44 base64 characters ending in
         * '='. */
        r = parse_key_text("public key", spec, strlen(spec), k.pk, NULL);
        if (r < 0 && spec[0] != '/' && spec[0] != '.')
                return error_set(ret_error, -EINVAL,
                                 "public key: neither a file path (starting with '/' or '.') nor "
                                 "base64 of %u bytes",
                                 (unsigned) SIGN_PUBLIC_BYTES);
        if (r < 0) {
                r = read_key_file(spec, /* secret= */ false, k.pk, ret_error);
                if (r < 0)
                        return r;
        }

        sign_key_id(k.pk, k.id);
        *ret = k;
        return 0;
}

char *sign_public_key_to_base64(const SignPublicKey *k) {
        size_t n = sodium_base64_ENCODED_LEN(SIGN_PUBLIC_BYTES, sodium_base64_VARIANT_ORIGINAL);
        char *s;

        assert(k);

        s = malloc(n);
        if (!s)
                return NULL;
        sodium_bin2base64(s, n, k->pk, SIGN_PUBLIC_BYTES, sodium_base64_VARIANT_ORIGINAL);
        return s;
}

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Temp file in the target's directory, exact mode set on the descriptor
 * before any secret byte is written, fsync, then rename: a reader sees the
 * old file or the complete new one, never a half-written or readable one. */
static int write_file_replace(const char *path, const char *data, size_t len, mode_t mode) {
        _cleanup_free_ char *tmp = NULL, *dir = NULL;
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (asprintf(&tmp, "%s.tmpXXXXXX", path) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }

        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return negative_errno();

        if (fchmod(fd, mode) < 0) {
                r = negative_errno();
                goto fail;
        }
        r = write_all(fd, data, len);
        if (r < 0)
                goto fail;
        if (fsync(fd) < 0) {
                r = negative_errno();
                goto fail;
        }
        r = close(TAKE_FD(fd));
        if (r < 0) {
                r = negative_errno();
                goto fail;
        }
        if (rename(tmp, path) < 0) {
                r = negative_errno();
                goto fail;
        }

        /* Make the rename itself durable; failing that is not worth an error. */
        dir = strdup(path);
        if (dir) {
                char *slash = strrchr(dir, '/');
                const char *d = ".";
                int dfd;

                if (slash) {
                        slash[slash == dir] = '\0'; /* keep "/" for a file in the root */
                        d = dir;
                }
                dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd >= 0) {
                        (void) fsync(dfd);
                        close(dfd);
                }
        }
        return 0;

fail:
        (void) unlink(tmp);
        return r;
}

int sign_key_save(const SignKey *k, const char *secret_path, const char *public_path) {
        _cleanup_free_ char *pub = NULL;
        char seed64[sodium_base64_ENCODED_LEN(SIGN_SEED_BYTES, sodium_base64_VARIANT_ORIGINAL)];
        uint8_t seed[SIGN_SEED_BYTES];
        char *text = NULL;
        int r, n;

        assert(k);

        r = sign_init();
        if (r < 0)
                return r;

        if (secret_path) {
                if (crypto_sign_ed25519_sk_to_seed(seed, k->sk) != 0)
                        return -EIO;
                sodium_bin2base64(seed64, sizeof(seed64), seed, sizeof(seed),
                                  sodium_base64_VARIANT_ORIGINAL);
                sodium_memzero(seed, sizeof(seed));

                n = asprintf(&text,
                             "# baton Ed25519 secret key (base64 seed), key id %s. Keep private.\n"
                             "%s\n",
                             k->pub.id, seed64);
                sodium_memzero(seed64, sizeof(seed64));
                if (n < 0)
                        return -ENOMEM;

                r = write_file_replace(secret_path, text, (size_t) n, 0600);
                sodium_memzero(text, (size_t) n);
                free(text);
                if (r < 0)
                        return r;
        }

        if (public_path) {
                pub = sign_public_key_to_base64(&k->pub);
                if (!pub)
                        return -ENOMEM;
                n = asprintf(&text, "# baton Ed25519 public key, key id %s\n%s\n", k->pub.id, pub);
                if (n < 0)
                        return -ENOMEM;
                r = write_file_replace(public_path, text, (size_t) n, 0644);
                free(text);
                if (r < 0)
                        return r;
        }

        return 0;
}

int sign_detached(const SignKey *k, const void *data, size_t len,
                  uint8_t ret_sig[SIGN_SIGNATURE_BYTES]) {
        int r;

        assert(k);
        assert(data || len == 0);
        assert(ret_sig);

        r = sign_init();
        if (r < 0)
                return r;

        if (crypto_sign_detached(ret_sig, NULL, data ? data : (const void *) "", len, k->sk) != 0)
                return -EIO;
        return 0;
}

int sign_verify(const SignPublicKey *k, const void *data, size_t len, const uint8_t *sig,
                size_t sig_len) {
        int r;

        assert(k);
        assert(data || len == 0);

        if (!sig || sig_len != SIGN_SIGNATURE_BYTES)
                return -EINVAL;

        r = sign_init();
        if (r < 0)
                return r;

        if (crypto_sign_verify_detached(sig, data ? data : (const void *) "", len, k->pk) != 0)
                return -EKEYREJECTED;
        return 0;
}
