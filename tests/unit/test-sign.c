/* SPDX-License-Identifier: MIT */
/* Ed25519 keys and key files: generation, the RFC 8032 vector, save/load,
 * permission refusal, malformed files, public keys from text and file. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "sign.h"
#include "tap.h"

static char tmpdir[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void tmpdir_cleanup(void) {
        if (tmpdir[0])
                (void) nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        tmpdir[0] = '\0';
}

static const char *tmp_path(const char *name) {
        static char buf[8][128];
        static unsigned next;
        char *p = buf[next++ % ELEMENTSOF(buf)];

        if (!tmpdir[0]) {
                strcpy(tmpdir, "/tmp/test-sign-XXXXXX");
                ASSERT_NOT_NULL(mkdtemp(tmpdir));
        }
        snprintf(p, sizeof(buf[0]), "%s/%s", tmpdir, name);
        return p;
}

static void write_text(const char *path, const char *text, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ_INT(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        ASSERT_EQ_INT(fchmod(fd, mode), 0);
        close(fd);
}

static void hex_decode(const char *hex, uint8_t *out, size_t n) {
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                ASSERT_EQ_INT(sscanf(hex + 2 * i, "%2x", &v), 1);
                out[i] = (uint8_t) v;
        }
}

/* RFC 8032 section 7.1, TEST 1 (empty message). */
static const char rfc_seed[] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char rfc_pk[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char rfc_sig[] = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb"
                              "8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

TEST(rfc8032_vector) {
        uint8_t seed[SIGN_SEED_BYTES], pk[SIGN_PUBLIC_BYTES], sig[SIGN_SIGNATURE_BYTES];
        uint8_t got[SIGN_SIGNATURE_BYTES];
        SignKey k;

        hex_decode(rfc_seed, seed, sizeof(seed));
        hex_decode(rfc_pk, pk, sizeof(pk));
        hex_decode(rfc_sig, sig, sizeof(sig));

        ASSERT_OK(sign_init());
        ASSERT_OK(sign_key_from_seed(seed, &k));
        ASSERT_TRUE(memcmp(k.pub.pk, pk, sizeof(pk)) == 0);
        ASSERT_STREQ(k.pub.id, "d75a980182b10ab7");

        ASSERT_OK(sign_detached(&k, NULL, 0, got));
        ASSERT_TRUE(memcmp(got, sig, sizeof(sig)) == 0);
        ASSERT_OK(sign_verify(&k.pub, NULL, 0, sig, sizeof(sig)));
        ASSERT_OK(sign_verify(&k.pub, "", 0, sig, sizeof(sig)));
}

TEST(generate) {
        SignKey a, b;

        ASSERT_OK(sign_key_generate(&a));
        ASSERT_OK(sign_key_generate(&b));
        ASSERT_TRUE(memcmp(a.pub.pk, b.pub.pk, SIGN_PUBLIC_BYTES) != 0);
        ASSERT_EQ_UINT(strlen(a.pub.id), SIGN_KEY_ID_LEN);
        ASSERT_EQ_UINT(strspn(a.pub.id, "0123456789abcdef"), SIGN_KEY_ID_LEN);
        /* libsodium's secret key is seed ‖ public key. */
        ASSERT_TRUE(memcmp(a.sk + SIGN_SEED_BYTES, a.pub.pk, SIGN_PUBLIC_BYTES) == 0);
}

TEST(key_id) {
        uint8_t pk[SIGN_PUBLIC_BYTES] = { 0x00, 0x01, 0xab, 0xcd, 0xef, 0x10, 0x7f, 0xff, 0x99 };
        char id[SIGN_KEY_ID_LEN + 1];

        sign_key_id(pk, id);
        ASSERT_STREQ(id, "0001abcdef107fff");
}

TEST(sign_and_verify) {
        static const char msg[] = "restart gateway@3.service";
        uint8_t sig[SIGN_SIGNATURE_BYTES];
        SignKey k, other;

        ASSERT_OK(sign_key_generate(&k));
        ASSERT_OK(sign_key_generate(&other));
        ASSERT_OK(sign_detached(&k, msg, sizeof(msg), sig));
        ASSERT_OK(sign_verify(&k.pub, msg, sizeof(msg), sig, sizeof(sig)));

        ASSERT_ERR(sign_verify(&other.pub, msg, sizeof(msg), sig, sizeof(sig)), -EKEYREJECTED);
        ASSERT_ERR(sign_verify(&k.pub, msg, sizeof(msg) - 1, sig, sizeof(sig)), -EKEYREJECTED);
        ASSERT_ERR(sign_verify(&k.pub, msg, sizeof(msg), sig, sizeof(sig) - 1), -EINVAL);
        ASSERT_ERR(sign_verify(&k.pub, msg, sizeof(msg), sig, sizeof(sig) + 1), -EINVAL);
        ASSERT_ERR(sign_verify(&k.pub, msg, sizeof(msg), NULL, 0), -EINVAL);
        sig[0] ^= 0x80;
        ASSERT_ERR(sign_verify(&k.pub, msg, sizeof(msg), sig, sizeof(sig)), -EKEYREJECTED);
}

TEST(save_and_load) {
        const char *sec = tmp_path("controller.key"), *pub = tmp_path("controller.pub");
        _cleanup_free_ char *error = NULL;
        SignKey k, loaded;
        SignPublicKey lp;
        struct stat st;

        ASSERT_OK(sign_key_generate(&k));
        ASSERT_OK(sign_key_save(&k, sec, pub));

        ASSERT_EQ_INT(stat(sec, &st), 0);
        ASSERT_EQ_UINT(st.st_mode & 07777, 0600);
        ASSERT_EQ_INT(stat(pub, &st), 0);
        ASSERT_EQ_UINT(st.st_mode & 07777, 0644);

        ASSERT_OK(sign_key_load(sec, &loaded, &error));
        ASSERT_TRUE(memcmp(loaded.sk, k.sk, SIGN_SECRET_BYTES) == 0);
        ASSERT_TRUE(memcmp(loaded.pub.pk, k.pub.pk, SIGN_PUBLIC_BYTES) == 0);
        ASSERT_STREQ(loaded.pub.id, k.pub.id);

        ASSERT_OK(sign_public_key_load(pub, &lp, &error));
        ASSERT_TRUE(memcmp(lp.pk, k.pub.pk, SIGN_PUBLIC_BYTES) == 0);
        ASSERT_STREQ(lp.id, k.pub.id);
        ASSERT_NULL(error);

        tmpdir_cleanup();
}

TEST(save_replaces_atomically) {
        const char *sec = tmp_path("k"), *pub = tmp_path("k.pub");
        SignKey a, b, loaded;
        DIR *d;
        struct dirent *de;
        unsigned n = 0;

        ASSERT_OK(sign_key_generate(&a));
        ASSERT_OK(sign_key_generate(&b));
        /* An existing, too-open file is replaced by a 0600 one. */
        write_text(sec, "old\n", 0644);
        ASSERT_OK(sign_key_save(&a, sec, pub));
        ASSERT_OK(sign_key_save(&b, sec, NULL));
        ASSERT_OK(sign_key_load(sec, &loaded, NULL));
        ASSERT_STREQ(loaded.pub.id, b.pub.id);

        /* No temp files left behind. */
        d = opendir(tmpdir);
        ASSERT_NOT_NULL(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        ASSERT_EQ_UINT(n, 2);

        /* A directory that does not exist. */
        ASSERT_ERR(sign_key_save(&a, "/nonexistent-baton-dir/k", NULL), -ENOENT);
        tmpdir_cleanup();
}

TEST(permissions_refused) {
        const char *sec = tmp_path("open.key");
        _cleanup_free_ char *error = NULL;
        char want[256];
        SignKey k, loaded;

        ASSERT_OK(sign_key_generate(&k));
        ASSERT_OK(sign_key_save(&k, sec, NULL));

        ASSERT_EQ_INT(chmod(sec, 0640), 0);
        ASSERT_ERR(sign_key_load(sec, &loaded, &error), -EPERM);
        snprintf(want, sizeof(want),
                 "%s: secret key file has mode 0640, must not be accessible by group or others "
                 "(chmod 600)",
                 sec);
        ASSERT_STREQ(error, want);
        free(error);
        error = NULL;

        ASSERT_EQ_INT(chmod(sec, 0604), 0);
        ASSERT_ERR(sign_key_load(sec, &loaded, &error), -EPERM);
        ASSERT_NOT_NULL(strstr(error, "0604"));

        /* Owner-only modes are all fine, read-only included. */
        ASSERT_EQ_INT(chmod(sec, 0400), 0);
        ASSERT_OK(sign_key_load(sec, &loaded, NULL));
        tmpdir_cleanup();
}

TEST(bad_key_files) {
        static const struct {
                const char *text;
                const char *error; /* after "<path>" */
        } cases[] = {
                { "", ": no key found (expected one line of base64)" },
                { "# only a comment\n\n", ": no key found (expected one line of base64)" },
                { "not base64!!\n", ":1: key is not valid base64" },
                { "# c\nAAAA AAAA\n", ":2: key is not valid base64" },
                { "AAECAwQFBgcICQoLDA0ODw==\n", ":1: key decodes to 16 bytes, expected 32" },
                { "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj\n",
                  ":1: key decodes to 36 bytes, expected 32" },
                /* Padding is required (variant ORIGINAL). */
                { "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n", ":1: key is not valid base64" },
                { "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
                  "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
                  ":2: unexpected second key line (first on line 1)" },
        };
        const char *path = tmp_path("bad.key");

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *error = NULL, *want = NULL;
                SignKey k;
                SignPublicKey p;

                ASSERT_TRUE(asprintf(&want, "%s%s", path, cases[i].error) > 0);
                write_text(path, cases[i].text, 0600);
                ASSERT_ERR(sign_key_load(path, &k, &error), -EINVAL);
                if (!error || !streq(error, want))
                        TAP_FAIL_("case %zu: \"%s\" vs \"%s\"", i, strna(error), want);
                free(error);
                error = NULL;
                ASSERT_ERR(sign_public_key_load(path, &p, &error), -EINVAL);
                ASSERT_STREQ(error, want);
        }
        tmpdir_cleanup();
}

TEST(comments_blank_lines_and_crlf) {
        const char *path = tmp_path("ok.key");
        uint8_t seed[SIGN_SEED_BYTES];
        SignKey k;

        for (size_t i = 0; i < sizeof(seed); i++)
                seed[i] = (uint8_t) i;
        write_text(path,
                   "# baton secret key\r\n"
                   "\r\n"
                   "  # indented comment\n"
                   "  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=  \r\n"
                   "# trailing comment\n",
                   0600);
        ASSERT_OK(sign_key_load(path, &k, NULL));
        ASSERT_TRUE(memcmp(k.sk, seed, sizeof(seed)) == 0);
        tmpdir_cleanup();
}

TEST(unreadable_paths) {
        _cleanup_free_ char *error = NULL;
        const char *dir;
        char big[70 * 1024];
        SignKey k;
        SignPublicKey p;

        ASSERT_ERR(sign_key_load("/nonexistent/baton.key", &k, &error), -ENOENT);
        ASSERT_STREQ(error, "/nonexistent/baton.key: cannot open key file: No such file or "
                            "directory");
        free(error);
        error = NULL;

        dir = tmp_path("");
        ASSERT_ERR(sign_key_load(dir, &k, &error), -EINVAL);
        ASSERT_NOT_NULL(strstr(error, "not a regular file"));
        free(error);
        error = NULL;

        memset(big, '#', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        write_text(tmp_path("big.key"), big, 0600);
        ASSERT_ERR(sign_key_load(tmp_path("big.key"), &k, &error), -EINVAL);
        ASSERT_NOT_NULL(strstr(error, "too large"));
        free(error);
        error = NULL;

        ASSERT_ERR(sign_public_key_load("./nonexistent.pub", &p, &error), -ENOENT);
        ASSERT_NOT_NULL(strstr(error, "./nonexistent.pub"));

        /* ret_error is optional. */
        ASSERT_ERR(sign_key_load("/nonexistent/baton.key", &k, NULL), -ENOENT);
        tmpdir_cleanup();
}

TEST(public_key_from_text) {
        _cleanup_free_ char *b64 = NULL, *padded = NULL, *error = NULL;
        SignKey k;
        SignPublicKey p;

        ASSERT_OK(sign_key_generate(&k));
        b64 = sign_public_key_to_base64(&k.pub);
        ASSERT_NOT_NULL(b64);
        ASSERT_EQ_UINT(strlen(b64), 44);

        ASSERT_OK(sign_public_key_load(b64, &p, NULL));
        ASSERT_TRUE(memcmp(p.pk, k.pub.pk, SIGN_PUBLIC_BYTES) == 0);
        ASSERT_STREQ(p.id, k.pub.id);

        /* Surrounding white space, as an INI value might keep it. */
        ASSERT_TRUE(asprintf(&padded, "  %s\n", b64) > 0);
        ASSERT_OK(sign_public_key_load(padded, &p, NULL));
        ASSERT_STREQ(p.id, k.pub.id);

        ASSERT_ERR(sign_public_key_load("hello", &p, &error), -EINVAL);
        ASSERT_NOT_NULL(strstr(error, "neither a file path"));
        ASSERT_ERR(sign_public_key_load("", &p, NULL), -EINVAL);
        /* Broken base64 is refused as such, unless it starts like a path
         * (one key in 64 starts with '/'): then it is a file that is not
         * there. */
        b64[10] = '!';
        ASSERT_ERR(sign_public_key_load(b64, &p, NULL), b64[0] == '/' ? -ENOENT : -EINVAL);
}

TEST(public_key_text_starting_with_slash) {
        uint8_t seed[SIGN_SEED_BYTES] = { 0 };
        _cleanup_free_ char *b64 = NULL;
        SignKey k;
        SignPublicKey p;

        /* About one key in 64 encodes with a leading '/': find one. */
        for (unsigned i = 0;; i++) {
                ASSERT_LT_INT(i, 10000);
                memcpy(seed, &i, sizeof(i));
                ASSERT_OK(sign_key_from_seed(seed, &k));
                free(b64);
                b64 = sign_public_key_to_base64(&k.pub);
                ASSERT_NOT_NULL(b64);
                if (b64[0] == '/')
                        break;
        }
        ASSERT_OK(sign_public_key_load(b64, &p, NULL));
        ASSERT_STREQ(p.id, k.pub.id);
}

int main(void) {
        int r = tap_run(TESTS(rfc8032_vector, generate, key_id, sign_and_verify, save_and_load,
                              save_replaces_atomically, permissions_refused, bad_key_files,
                              comments_blank_lines_and_crlf, unreadable_paths, public_key_from_text,
                              public_key_text_starting_with_slash));
        /* A failed case longjmps past its own cleanup. */
        tmpdir_cleanup();
        return r;
}
