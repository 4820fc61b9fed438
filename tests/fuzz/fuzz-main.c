/* SPDX-License-Identifier: MIT */
/* A standalone driver for libFuzzer-style targets, so every target runs
 * without clang: over the files and directories named on the command line
 * (a corpus, or a crash to reproduce), or over N inputs from a seeded
 * generator that mixes raw bytes with tokens the parsers care about. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* A target may add tokens of its own syntax (whole INI lines, say), which
 * reach deeper than the generic ones below. Weak: optional. */
extern const char *const fuzz_tokens[] __attribute__((weak));
extern const size_t fuzz_n_tokens __attribute__((weak));

#define INPUT_MAX (1u << 20)
#define RANDOM_LEN_MAX 2048

/* Pieces of every syntax the targets parse: durations, sizes, range lists,
 * StatusText tokens, unit names, globs, INI. */
static const char *const generic_tokens[] = {
        "0",
        "1",
        "7",
        "9",
        "42",
        "007",
        "16777215",
        "16777216",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "-",
        ",",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "=",
        ".",
        "..",
        "@",
        ":",
        ";",
        "#",
        "/",
        "\\",
        "\\x2d",
        "\\x",
        "*",
        "?",
        "[",
        "]",
        "[!",
        "^",
        "\0",
        "\xff",
        "\xc2\xb5",
        "\xce\xbc",
        "\xef\xbb\xbf",
        "us",
        "ms",
        "s",
        "sec",
        "min",
        "m",
        "h",
        "d",
        "w",
        "weeks",
        "infinity",
        "K",
        "M",
        "G",
        "T",
        "B",
        "iB",
        "ready=",
        "connecting=",
        "failed=",
        "ready",
        "service",
        ".service",
        "socket",
        ".timer",
        "foo",
        "foo@",
        "@.service",
        "sentinel@3.service",
        "[broker]",
        "[agent]",
        "[ agent ]",
        "[",
        "url",
        "heartbeat",
        "prefetch",
        "verify",
        "memory",
        "host",
        "globs",
        "password",
        " = ",
        "yes",
        "no",
        "on",
        "off",
        "true",
        "false",
};

static uint64_t rnd_state;

/* The input being run, for the crash handler. */
static const uint8_t *current;
static size_t current_len;

/* A generated input that crashes exists nowhere else: write it to
 * fuzz-crash-input (or $FUZZ_CRASH_FILE) so that `fuzz-NAME FILE` repeats
 * it. Only async-signal-safe calls; then the default action. */
static void on_crash(int sig) {
        static const char msg[] = "fuzz: the crashing input is in ";
        const char *path = getenv("FUZZ_CRASH_FILE");
        int fd;

        if (!path)
                path = "fuzz-crash-input";
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0 && current) {
                if (write(fd, current, current_len) >= 0 && write(2, msg, sizeof(msg) - 1) >= 0 &&
                    write(2, path, strlen(path)) >= 0)
                        (void) !write(2, "\n", 1);
                close(fd);
        }
        signal(sig, SIG_DFL);
        raise(sig);
}

static void run_one(const uint8_t *data, size_t len) {
        current = data;
        current_len = len;
        LLVMFuzzerTestOneInput(data, len);
        current = NULL;
}

static uint64_t rnd(void) {
        /* splitmix64 */
        uint64_t z = (rnd_state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static size_t generate(uint8_t *buf, size_t max) {
        const char *const *tokens = generic_tokens;
        size_t n_tokens = sizeof(generic_tokens) / sizeof(generic_tokens[0]);
        size_t want, n = 0;
        /* 0: raw bytes; 1: target tokens only; 2: target tokens with stray
         * bytes; 3: generic tokens with stray bytes */
        unsigned mode = (unsigned) (rnd() % 4);

        if (mode != 3 && &fuzz_n_tokens && fuzz_n_tokens > 0) {
                tokens = fuzz_tokens;
                n_tokens = fuzz_n_tokens;
        }

        /* mostly short inputs, sometimes long ones */
        want = rnd() % 4 ? rnd() % 64 : rnd() % max;

        while (n < want) {
                if (mode == 0 || (mode != 1 && rnd() % 16 == 0)) {
                        buf[n++] = (uint8_t) rnd();
                } else {
                        size_t i = rnd() % n_tokens;
                        /* "\0" is one byte, not an empty token */
                        size_t len = tokens[i][0] ? strlen(tokens[i]) : 1;

                        if (n + len > want)
                                break;
                        memcpy(buf + n, tokens[i], len);
                        n += len;
                }
        }
        return n;
}

static int run_file(const char *path, uint8_t *buf) {
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        n = fread(buf, 1, INPUT_MAX, f);
        if (ferror(f)) {
                fprintf(stderr, "%s: read error\n", path);
                fclose(f);
                return -1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
        return 0;
}

static int skip_dot(const struct dirent *e) {
        return e->d_name[0] != '.';
}

/* Every file of a corpus directory, in name order so that runs repeat;
 * adds what it ran to *n_files. */
static int run_dir(const char *path, uint8_t *buf, int *n_files) {
        struct dirent **names = NULL;
        int n, failed = 0;

        n = scandir(path, &names, skip_dot, alphasort);
        if (n < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        for (int i = 0; i < n; i++) {
                char *file = NULL;

                if (asprintf(&file, "%s/%s", path, names[i]->d_name) < 0 || run_file(file, buf) < 0)
                        failed = -1;
                else
                        (*n_files)++;
                free(file);
                free(names[i]);
        }
        free(names);
        if (n == 0) {
                fprintf(stderr, "%s: empty corpus directory\n", path);
                return -1;
        }
        return failed;
}

static int run_path(const char *path, uint8_t *buf, int *n_files) {
        struct stat st;

        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
                return run_dir(path, buf, n_files);
        if (run_file(path, buf) < 0)
                return -1;
        (*n_files)++;
        return 0;
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;

        errno = 0;
        *ret = strtoull(s, &end, 0);
        return errno == 0 && end != s && *end == '\0' && s[0] != '-' ? 0 : -1;
}

static void usage(const char *argv0) {
        fprintf(stderr,
                "usage: %s FILE|DIR…\n"
                "       %s --random N [--seed S]\n"
                "Runs the fuzz target over each FILE and every file in each DIR (a\n"
                "corpus), or over N generated inputs (reproducible: the same seed\n"
                "gives the same inputs).\n",
                argv0, argv0);
}

int main(int argc, char **argv) {
        uint64_t n_random = 0, seed = 1;
        bool random = false;
        int n_files = 0, failed = 0;
        uint8_t *buf;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--random") == 0 && i + 1 < argc) {
                        if (parse_u64(argv[++i], &n_random) < 0) {
                                usage(argv[0]);
                                return 2;
                        }
                        random = true;
                } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
                        if (parse_u64(argv[++i], &seed) < 0) {
                                usage(argv[0]);
                                return 2;
                        }
                } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        usage(argv[0]);
                        return 0;
                } else if (argv[i][0] == '-' && argv[i][1] == '-') {
                        usage(argv[0]);
                        return 2;
                }
        }

        buf = malloc(INPUT_MAX);
        if (!buf) {
                fprintf(stderr, "out of memory\n");
                return 1;
        }

        /* Files first (anything that is not an option or its value). */
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--random") == 0 || strcmp(argv[i], "--seed") == 0) {
                        i++;
                        continue;
                }
                if (run_path(argv[i], buf, &n_files) < 0)
                        failed++;
        }

        if (random) {
                signal(SIGABRT, on_crash);
                signal(SIGSEGV, on_crash);
                rnd_state = seed;
                for (uint64_t i = 0; i < n_random; i++) {
                        size_t n = generate(buf, RANDOM_LEN_MAX);

                        run_one(buf, n);
                }
        }

        if (!random && n_files == 0) {
                usage(argv[0]);
                free(buf);
                return 2;
        }

        printf("%s: %d file(s), %" PRIu64 " random input(s) with seed %" PRIu64 ": no crash\n",
               argv[0], n_files, n_random, seed);
        free(buf);
        return failed ? 1 : 0;
}
