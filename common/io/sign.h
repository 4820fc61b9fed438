/* SPDX-License-Identifier: MIT */
/* Ed25519 signatures (libsodium) over command bodies, and the key files:
 * one line of base64, a secret key's 32-byte seed or a public key's 32 bytes,
 * optionally preceded by comment lines starting with '#'. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIGN_SEED_BYTES 32
#define SIGN_PUBLIC_BYTES 32
#define SIGN_SECRET_BYTES 64
#define SIGN_SIGNATURE_BYTES 64
#define SIGN_KEY_ID_LEN 16 /* hex of the public key's first 8 bytes */

typedef struct SignPublicKey {
        uint8_t pk[SIGN_PUBLIC_BYTES];
        char id[SIGN_KEY_ID_LEN + 1];
} SignPublicKey;

typedef struct SignKey {
        uint8_t sk[SIGN_SECRET_BYTES];
        SignPublicKey pub;
} SignKey;

/* Calls sodium_init() once; -EIO if it fails. */
int sign_init(void);

int sign_key_generate(SignKey *ret);
int sign_key_from_seed(const uint8_t seed[SIGN_SEED_BYTES], SignKey *ret);

/* Loads a secret key file. Refuses (-EPERM) a file readable by group or
 * others, -EINVAL for bad contents; *ret_error names the problem. */
int sign_key_load(const char *path, SignKey *ret, char **ret_error);
/* Loads a public key from base64 text when `spec` is the base64 of exactly
 * 32 bytes (such text may itself start with '/'), else from the file `spec`
 * names, which must start with '/' or '.'. */
int sign_public_key_load(const char *spec, SignPublicKey *ret, char **ret_error);

/* Writes the secret (0600) and public key files. */
int sign_key_save(const SignKey *k, const char *secret_path, const char *public_path);
/* Base64 of the public key; caller frees. */
char *sign_public_key_to_base64(const SignPublicKey *k);

int sign_detached(const SignKey *k, const void *data, size_t len,
                  uint8_t ret_sig[SIGN_SIGNATURE_BYTES]);
/* 0 if valid, -EKEYREJECTED if not, -EINVAL for a wrong signature length. */
int sign_verify(const SignPublicKey *k, const void *data, size_t len, const uint8_t *sig,
                size_t sig_len);

/* Constant-time-irrelevant helpers for key ids. */
void sign_key_id(const uint8_t pk[SIGN_PUBLIC_BYTES], char ret[SIGN_KEY_ID_LEN + 1]);
