/* SPDX-License-Identifier: MIT */
/* The INI config layer against real temp files: defaults, every value type,
 * and every error a user can make, each reported as "FILE:LINE: …" with the
 * key and section named. */
#include <errno.h>
#include <stddef.h>
#include <unistd.h>

#include "config.h"
#include "macro.h"
#include "tap.h"
#include "unit-name.h"

typedef struct TestConfig {
        char *url;
        char *ca_file;
        char *password;
        uint64_t heartbeat;
        bool verify;
        uint64_t prefetch;
        uint64_t memory;
        char *host;
        char *manage_units;
        uint64_t token;
} TestConfig;

static int validate_globs(const void *field, char **ret_error) {
        const char *globs = *(char *const *) field, *bad = NULL;

        if (unit_globs_validate(globs, &bad) < 0) {
                if (asprintf(ret_error, "bad glob '%.*s'", (int) strcspn(bad, " "), bad) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        return 0;
}

#define OPT(sec, key, type, field, def, min, max, flags, validate)                                 \
        { sec, key, type, offsetof(TestConfig, field), def, min, max, flags, validate, NULL }

static const ConfigOption table[] = {
        OPT("broker", "url", CONFIG_STRING, url, "amqp://localhost", 0, 0, 0, NULL),
        OPT("broker", "ca_file", CONFIG_STRING, ca_file, NULL, 0, 0, 0, NULL),
        OPT("broker", "password", CONFIG_STRING, password, NULL, 0, 0, CONFIG_SECRET, NULL),
        OPT("broker", "heartbeat", CONFIG_DURATION, heartbeat, "10s", USEC_PER_SEC,
            600 * USEC_PER_SEC, 0, NULL),
        OPT("broker", "verify", CONFIG_BOOL, verify, "yes", 0, 0, 0, NULL),
        OPT("broker", "prefetch", CONFIG_UINT, prefetch, "16", 1, 1000, 0, NULL),
        OPT("agent", "memory", CONFIG_SIZE, memory, "1G", 1 << 20, 0, 0, NULL),
        OPT("agent", "host", CONFIG_STRING, host, NULL, 0, 0, 0, NULL),
        OPT("agent", "manage_units", CONFIG_STRING, manage_units, "*", 0, 0, 0, validate_globs),
        OPT("agent", "token", CONFIG_UINT, token, NULL, 0, 0, CONFIG_SECRET, NULL),
};

static const ConfigOption required_table[] = {
        OPT("agent", "host", CONFIG_STRING, host, NULL, 0, 0, CONFIG_REQUIRED, NULL),
        OPT("agent", "token", CONFIG_UINT, token, NULL, 0, 0, CONFIG_REQUIRED, NULL),
        OPT("broker", "url", CONFIG_STRING, url, "amqp://x", 0, 0, CONFIG_REQUIRED, NULL),
};

static char tmp_path[64];

/* Writes `len` bytes to a fresh temp file; its name is in tmp_path. */
static const char *write_tmp_n(const char *content, size_t len) {
        int fd;

        if (tmp_path[0])
                unlink(tmp_path);
        strcpy(tmp_path, "/tmp/test-config-XXXXXX");
        fd = mkstemp(tmp_path);
        if (fd < 0)
                TAP_FAIL_("mkstemp: %s", strerror(errno));
        if (write(fd, content, len) != (ssize_t) len)
                TAP_FAIL_("write: %s", strerror(errno));
        close(fd);
        return tmp_path;
}

static const char *write_tmp(const char *content) {
        return write_tmp_n(content, strlen(content));
}

/* Loads content, expects failure, returns the message (owned by a static). */
static char *load_error_last;

static const char *load_error(const char *content, int expect) {
        TestConfig c = { 0 };
        char *err = NULL;
        const char *path = write_tmp(content);
        int r = config_load(table, ELEMENTSOF(table), &c, path, &err);

        config_done(table, ELEMENTSOF(table), &c);
        if (r != expect)
                TAP_FAIL_("config_load = %d, expected %d (%s)", r, expect, strna(err));
        free(load_error_last);
        load_error_last = err;
        return err;
}

/* "PATH:LINE:" for the current temp file. */
static const char *at(int line) {
        static char buf[128];
        snprintf(buf, sizeof(buf), "%s:%d: ", tmp_path, line);
        return buf;
}

TEST(defaults_without_file) {
        TestConfig c = { 0 };
        char *err = NULL;

        ASSERT_OK(config_load(table, ELEMENTSOF(table), &c, NULL, &err));
        ASSERT_NULL(err);
        ASSERT_STREQ(c.url, "amqp://localhost");
        ASSERT_NULL(c.ca_file);
        ASSERT_EQ_UINT(c.heartbeat, 10 * USEC_PER_SEC);
        ASSERT_TRUE(c.verify);
        ASSERT_EQ_UINT(c.prefetch, 16);
        ASSERT_EQ_UINT(c.memory, 1ULL << 30);
        ASSERT_NULL(c.host);
        ASSERT_STREQ(c.manage_units, "*");
        ASSERT_EQ_UINT(c.token, 0);
        config_done(table, ELEMENTSOF(table), &c);
        ASSERT_NULL(c.url);
        ASSERT_NULL(c.manage_units);
}

TEST(file_values_of_every_type) {
        TestConfig c = { 0 };
        char *err = NULL;
        const char *path = write_tmp("; a comment\n"
                                     "# another\n"
                                     "\n"
                                     "[broker]\n"
                                     "url = amqps://u:p@host:5671/baton ; inline comment\n"
                                     "heartbeat=1min 30s\n"
                                     "verify = off\n"
                                     "prefetch = 1000\n"
                                     "password = s3cr#t\n"
                                     "  ; indented comment is fine\n"
                                     "[ agent ]\n"
                                     "memory = 512M\n"
                                     "host: node-1\n"
                                     "manage_units = sentinel@*.service audio-*.service\n"
                                     "token = 42\n");

        ASSERT_OK(config_load(table, ELEMENTSOF(table), &c, path, &err));
        ASSERT_NULL(err);
        ASSERT_STREQ(c.url, "amqps://u:p@host:5671/baton");
        ASSERT_EQ_UINT(c.heartbeat, 90 * USEC_PER_SEC);
        ASSERT_FALSE(c.verify);
        ASSERT_EQ_UINT(c.prefetch, 1000);
        ASSERT_STREQ(c.password, "s3cr#t");
        ASSERT_EQ_UINT(c.memory, 512ULL << 20);
        ASSERT_STREQ(c.host, "node-1");
        ASSERT_STREQ(c.manage_units, "sentinel@*.service audio-*.service");
        ASSERT_EQ_UINT(c.token, 42);
        config_done(table, ELEMENTSOF(table), &c);
}

TEST(crlf_and_bom) {
        TestConfig c = { 0 };
        const char *path = write_tmp("\xef\xbb\xbf[broker]\r\nprefetch = 7\r\n\r\n[agent]\r\n"
                                     "host = h\r\n");

        ASSERT_OK(config_load(table, ELEMENTSOF(table), &c, path, NULL));
        ASSERT_EQ_UINT(c.prefetch, 7);
        ASSERT_STREQ(c.host, "h");
        config_done(table, ELEMENTSOF(table), &c);
}

TEST(booleans) {
        static const char *const yes[] = { "yes", "true", "on", "1", "YES", "True" };
        static const char *const no[] = { "no", "false", "off", "0", "No", "OFF" };
        TestConfig c = { 0 };
        const ConfigOption *o = &table[4];

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                c.verify = false;
                ASSERT_OK(config_parse_value(o, yes[i], &c.verify, NULL));
                ASSERT_TRUE(c.verify);
                ASSERT_OK(config_parse_value(o, no[i], &c.verify, NULL));
                ASSERT_FALSE(c.verify);
        }

        static const char *const bad[] = { "y", "n", "2", "yess", "enable", " yes", "-1" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *err = NULL;

                c.verify = true;
                ASSERT_ERR(config_parse_value(o, bad[i], &c.verify, &err), -EINVAL);
                ASSERT_TRUE(c.verify); /* untouched */
                ASSERT_CONTAINS(err, "[broker] verify: invalid boolean");
                free(err);
        }
}

TEST(unknown_section) {
        const char *e = load_error("[broker]\nurl = x\n[brokr]\nurl = y\n", -EINVAL);

        ASSERT_CONTAINS(e, at(4));
        ASSERT_CONTAINS(e, "unknown section [brokr]");
        ASSERT_CONTAINS(e, "'url'");
}

TEST(unknown_key) {
        const char *e = load_error("[broker]\n\nurl = x\nhaertbeat = 5s\n", -EINVAL);

        ASSERT_CONTAINS(e, at(4));
        ASSERT_CONTAINS(e, "unknown key 'haertbeat' in section [broker]");

        /* keys are per section: host is an [agent] key */
        e = load_error("[broker]\nhost = x\n", -EINVAL);
        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "unknown key 'host' in section [broker]");

        /* and case-sensitive */
        e = load_error("[broker]\nURL = x\n", -EINVAL);
        ASSERT_CONTAINS(e, "unknown key 'URL'");
}

TEST(duplicate_key) {
        const char *e = load_error("[broker]\nurl = a\nverify = yes\nurl = b\n", -EINVAL);

        ASSERT_CONTAINS(e, at(4));
        ASSERT_CONTAINS(e, "duplicate key 'url' in section [broker]");
        ASSERT_CONTAINS(e, "line 2");

        /* across two blocks of the same section too */
        e = load_error("[broker]\nurl = a\n[agent]\nhost = h\n[broker]\nurl = b\n", -EINVAL);
        ASSERT_CONTAINS(e, at(6));
        ASSERT_CONTAINS(e, "duplicate key 'url'");
}

TEST(empty_key_and_key_outside_section) {
        const char *e = load_error("[broker]\n=5\n", -EINVAL);

        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "empty key in section [broker]");

        e = load_error("url = x\n[broker]\n", -EINVAL);
        ASSERT_CONTAINS(e, at(1));
        ASSERT_CONTAINS(e, "key 'url' outside of any section");
}

TEST(bad_values) {
        const char *e;

        e = load_error("[broker]\nheartbeat = 5x\n", -EINVAL);
        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "[broker] heartbeat: invalid duration '5x'");

        e = load_error("[broker]\nprefetch = 12a\n", -EINVAL);
        ASSERT_CONTAINS(e, "[broker] prefetch: invalid unsigned integer '12a'");

        e = load_error("[broker]\nprefetch = -1\n", -EINVAL);
        ASSERT_CONTAINS(e, "[broker] prefetch: invalid");

        e = load_error("[broker]\nprefetch = 99999999999999999999999\n", -EINVAL);
        ASSERT_CONTAINS(e, "[broker] prefetch: value '99999999999999999999999' is too large");

        e = load_error("[broker]\nverify = maybe\n", -EINVAL);
        ASSERT_CONTAINS(e, "[broker] verify: invalid boolean 'maybe'");

        e = load_error("[agent]\nmemory = lots\n", -EINVAL);
        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "[agent] memory: invalid size 'lots'");
}

TEST(out_of_bounds) {
        const char *e;

        e = load_error("[broker]\nprefetch = 0\n", -EINVAL);
        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "[broker] prefetch: value out of bounds, must be between 1 and 1000");

        e = load_error("[broker]\nprefetch = 1001\n", -EINVAL);
        ASSERT_CONTAINS(e, "between 1 and 1000");

        e = load_error("[broker]\nheartbeat = 500ms\n", -EINVAL);
        ASSERT_CONTAINS(e, "[broker] heartbeat: value out of bounds, must be between 1s and 10min");

        e = load_error("[broker]\nheartbeat = infinity\n", -EINVAL);
        ASSERT_CONTAINS(e, "between 1s and 10min");

        e = load_error("[agent]\nmemory = 512K\n", -EINVAL);
        ASSERT_CONTAINS(e, "[agent] memory: value out of bounds, must be at least 1M");
}

TEST(validate_callback) {
        const char *e = load_error("[agent]\nmanage_units = ok.service bad/x.service\n", -EINVAL);

        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "[agent] manage_units: bad glob 'bad/x.service'");
}

TEST(secret_values_are_not_echoed) {
        const char *e = load_error("[agent]\ntoken = hunter2\n", -EINVAL);

        ASSERT_CONTAINS(e, "[agent] token: invalid unsigned integer");
        ASSERT_TRUE(strstr(e, "hunter2") == NULL);
}

TEST(syntax_errors) {
        const char *e;

        e = load_error("[broker]\nurl = x\njust some words\n", -EINVAL);
        ASSERT_CONTAINS(e, at(3));
        ASSERT_CONTAINS(e, "syntax error");

        e = load_error("[broker\nurl = x\n", -EINVAL);
        ASSERT_CONTAINS(e, at(1));
        ASSERT_CONTAINS(e, "syntax error");

        /* a syntax error before a semantic one: the earlier line is reported */
        e = load_error("[broker]\nwords\nbogus = 1\n", -EINVAL);
        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "syntax error");

        /* and the other way round */
        e = load_error("[broker]\nbogus = 1\nwords\n", -EINVAL);
        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "unknown key 'bogus'");
}

TEST(only_first_error_reported) {
        const char *e =
                load_error("[broker]\nurl = a\nnope = 1\nurl = b\nheartbeat = x\n", -EINVAL);

        ASSERT_CONTAINS(e, at(3));
        ASSERT_CONTAINS(e, "unknown key 'nope'");
        ASSERT_TRUE(strstr(e, "duplicate") == NULL);
}

TEST(long_lines) {
        char buf[512];
        const char *e;
        TestConfig c = { 0 };

        /* 199 characters is the longest line inih reads whole */
        char value[256];
        memset(value, 'h', 199 - strlen("host = "));
        value[199 - strlen("host = ")] = '\0';
        snprintf(buf, sizeof(buf), "[agent]\nhost = %s\n", value);
        ASSERT_OK(config_load(table, ELEMENTSOF(table), &c, write_tmp(buf), NULL));
        ASSERT_STREQ(c.host, value);
        config_done(table, ELEMENTSOF(table), &c);

        /* one more is an error on that line, and later line numbers stay right */
        snprintf(buf, sizeof(buf), "[agent]\nhost = %0200d\n[broker]\nnope = 1\n", 0);
        e = load_error(buf, -EINVAL);
        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "line too long");

        snprintf(buf, sizeof(buf), "[agent]\n; %0300d\n[broker]\nnope = 1\n", 0);
        e = load_error(buf, -EINVAL);
        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "line too long");
}

TEST(nul_byte_and_indentation) {
        static const char with_nul[] = "[agent]\nhost = a\0b\n";
        TestConfig c = { 0 };
        char *err = NULL;
        const char *e;

        ASSERT_ERR(config_load(table, ELEMENTSOF(table), &c,
                               write_tmp_n(with_nul, sizeof(with_nul) - 1), &err),
                   -EINVAL);
        ASSERT_CONTAINS(err, at(2));
        ASSERT_CONTAINS(err, "NUL byte");
        free(err);
        config_done(table, ELEMENTSOF(table), &c);

        /* inih would glue "  more" to url's value: refuse instead */
        e = load_error("[broker]\nurl = a\n  more\n", -EINVAL);
        ASSERT_CONTAINS(e, at(3));
        ASSERT_CONTAINS(e, "starts with whitespace");

        e = load_error("[broker]\n\tverify = no\n", -EINVAL);
        ASSERT_CONTAINS(e, at(2));
        ASSERT_CONTAINS(e, "starts with whitespace");
}

TEST(empty_value_means_default) {
        TestConfig c = { 0 };
        const char *path = write_tmp("[broker]\nurl =\nprefetch =\n[agent]\nhost =\n");

        ASSERT_OK(config_load(table, ELEMENTSOF(table), &c, path, NULL));
        ASSERT_STREQ(c.url, "amqp://localhost");
        ASSERT_EQ_UINT(c.prefetch, 16);
        ASSERT_NULL(c.host);
        config_done(table, ELEMENTSOF(table), &c);
}

TEST(missing_and_unreadable_file) {
        TestConfig c = { 0 };
        char *err = NULL;

        ASSERT_ERR(config_load(table, ELEMENTSOF(table), &c, "/nonexistent/baton.conf", &err),
                   -ENOENT);
        ASSERT_CONTAINS(err, "/nonexistent/baton.conf: ");
        ASSERT_CONTAINS(err, "No such file");
        free(err);
        config_done(table, ELEMENTSOF(table), &c);

        /* an endless file is cut off */
        err = NULL;
        ASSERT_ERR(config_load(table, ELEMENTSOF(table), &c, "/dev/zero", &err), -EFBIG);
        ASSERT_CONTAINS(err, "/dev/zero: File too large");
        free(err);
        config_done(table, ELEMENTSOF(table), &c);

        /* a directory opens but does not read */
        err = NULL;
        ASSERT_ERR(config_load(table, ELEMENTSOF(table), &c, "/tmp", &err), -EISDIR);
        ASSERT_CONTAINS(err, "/tmp: ");
        free(err);
        config_done(table, ELEMENTSOF(table), &c);
}

TEST(required_keys) {
        TestConfig c = { 0 };
        char *err = NULL;

        ASSERT_ERR(config_load(required_table, ELEMENTSOF(required_table), &c,
                               write_tmp("[agent]\ntoken = 5\n"), &err),
                   -EINVAL);
        ASSERT_CONTAINS(err, tmp_path);
        ASSERT_CONTAINS(err, "[agent] host is required but not set");
        free(err);
        err = NULL;

        ASSERT_ERR(config_load(required_table, ELEMENTSOF(required_table), &c,
                               write_tmp("[agent]\nhost = h\n"), &err),
                   -EINVAL);
        ASSERT_CONTAINS(err, "[agent] token is required but not set");
        free(err);
        err = NULL;

        /* a required key with a default is satisfied; emptying it falls back to it */
        ASSERT_OK(config_load(required_table, ELEMENTSOF(required_table), &c,
                              write_tmp("[agent]\nhost = h\ntoken = 0\n[broker]\nurl =\n"), &err));
        ASSERT_STREQ(c.url, "amqp://x");
        ASSERT_EQ_UINT(c.token, 0);

        /* without a file */
        ASSERT_ERR(config_load(required_table, ELEMENTSOF(required_table), &c, NULL, &err),
                   -EINVAL);
        ASSERT_STREQ(err, "[agent] host is required but not set");
        free(err);
        config_done(required_table, ELEMENTSOF(required_table), &c);
}

TEST(reload_replaces_strings) {
        TestConfig c = { 0 };

        ASSERT_OK(
                config_load(table, ELEMENTSOF(table), &c, write_tmp("[agent]\nhost = a\n"), NULL));
        ASSERT_STREQ(c.host, "a");
        ASSERT_OK(
                config_load(table, ELEMENTSOF(table), &c, write_tmp("[agent]\nhost = b\n"), NULL));
        ASSERT_STREQ(c.host, "b");
        ASSERT_OK(config_load(table, ELEMENTSOF(table), &c, NULL, NULL));
        ASSERT_NULL(c.host);
        config_done(table, ELEMENTSOF(table), &c);
}

TEST(load_string) {
        TestConfig c = { 0 };
        char *err = NULL;
        static const char text[] = "[broker]\nprefetch = 3\nbogus=1\n";

        ASSERT_OK(config_load_string(table, ELEMENTSOF(table), &c, "inline", text, 22, &err));
        ASSERT_EQ_UINT(c.prefetch, 3);
        ASSERT_ERR(config_load_string(table, ELEMENTSOF(table), &c, "inline", text,
                                      sizeof(text) - 1, &err),
                   -EINVAL);
        ASSERT_CONTAINS(err, "inline:3: unknown key 'bogus'");
        free(err);
        err = NULL;
        ASSERT_ERR(config_load_string(table, ELEMENTSOF(table), &c, NULL, "x", 1, &err), -EINVAL);
        ASSERT_CONTAINS(err, "<string>:1: ");
        free(err);
        ASSERT_OK(config_load_string(table, ELEMENTSOF(table), &c, NULL, NULL, 0, NULL));
        config_done(table, ELEMENTSOF(table), &c);
}

TEST(overrides) {
        TestConfig c = { 0 };
        char *err = NULL;

        ASSERT_OK(config_load(table, ELEMENTSOF(table), &c, NULL, NULL));
        ASSERT_OK(config_set(table, ELEMENTSOF(table), &c, "broker.prefetch=5", &err));
        ASSERT_EQ_UINT(c.prefetch, 5);
        ASSERT_OK(config_set(table, ELEMENTSOF(table), &c, "broker.url=amqp://a=b", &err));
        ASSERT_STREQ(c.url, "amqp://a=b");
        ASSERT_OK(config_set(table, ELEMENTSOF(table), &c, "broker.url=", &err));
        ASSERT_STREQ(c.url, "amqp://localhost");
        ASSERT_OK(config_set(table, ELEMENTSOF(table), &c, "agent.host=x.y", &err));
        ASSERT_STREQ(c.host, "x.y");
        ASSERT_NULL(err);

        ASSERT_ERR(config_set(table, ELEMENTSOF(table), &c, "broker.prefetch=0", &err), -EINVAL);
        ASSERT_CONTAINS(err, "override 'broker.prefetch': [broker] prefetch: value out of bounds");
        free(err);
        ASSERT_EQ_UINT(c.prefetch, 5);

        ASSERT_ERR(config_set(table, ELEMENTSOF(table), &c, "broker.nope=1", &err), -EINVAL);
        ASSERT_CONTAINS(err, "override 'broker.nope': unknown key 'nope' in section [broker]");
        free(err);

        ASSERT_ERR(config_set(table, ELEMENTSOF(table), &c, "nope.url=1", &err), -EINVAL);
        ASSERT_CONTAINS(err, "unknown section [nope]");
        free(err);

        static const char *const malformed[] = { "brokerurl=1", "broker.url", ".url=1",
                                                 "broker.=1",   "=1",         "" };
        for (size_t i = 0; i < ELEMENTSOF(malformed); i++) {
                err = NULL;
                if (config_set(table, ELEMENTSOF(table), &c, malformed[i], &err) != -EINVAL)
                        TAP_FAIL_("\"%s\" accepted", malformed[i]);
                ASSERT_CONTAINS(err, "expected 'section.key=value'");
                free(err);
        }

        ASSERT_ERR(config_set(table, ELEMENTSOF(table), &c, "agent.token=hunter2", &err), -EINVAL);
        ASSERT_TRUE(strstr(err, "hunter2") == NULL);
        free(err);
        config_done(table, ELEMENTSOF(table), &c);
}

TEST(dump) {
        TestConfig c = { 0 };
        char *out = NULL;
        size_t len = 0;
        FILE *f;

        ASSERT_OK(config_load(table, ELEMENTSOF(table), &c,
                              write_tmp("[broker]\nheartbeat = 90s\npassword = hunter2\n"
                                        "[agent]\nhost = h1\nmemory = 1536M\n"),
                              NULL));
        f = open_memstream(&out, &len);
        ASSERT_NOT_NULL(f);
        ASSERT_OK(config_dump(table, ELEMENTSOF(table), &c, f));
        fclose(f);
        ASSERT_STREQ(out, "[broker]\n"
                          "url = amqp://localhost\n"
                          "ca_file = \n"
                          "password = (set)\n"
                          "heartbeat = 1min 30s\n"
                          "verify = yes\n"
                          "prefetch = 16\n"
                          "\n"
                          "[agent]\n"
                          "memory = 1536M\n"
                          "host = h1\n"
                          "manage_units = *\n"
                          "token = (unset)\n");
        ASSERT_TRUE(strstr(out, "hunter2") == NULL);
        free(out);

        /* the dump (without secrets) loads back to the same values */
        TestConfig d = { 0 };
        free(c.password);
        c.password = NULL;
        f = open_memstream(&out, &len);
        ASSERT_OK(config_dump(table, ELEMENTSOF(table), &c, f));
        fclose(f);
        char *without = strstr(out, "password = (unset)\n");
        ASSERT_NOT_NULL(without);
        memmove(without, without + strlen("password = (unset)\n"),
                strlen(without + strlen("password = (unset)\n")) + 1);
        without = strstr(out, "token = (unset)\n");
        ASSERT_NOT_NULL(without);
        *without = '\0';
        ASSERT_OK(config_load_string(table, ELEMENTSOF(table), &d, "dump", out, strlen(out), NULL));
        ASSERT_EQ_UINT(d.heartbeat, c.heartbeat);
        ASSERT_EQ_UINT(d.memory, c.memory);
        ASSERT_STREQ(d.host, c.host);
        free(out);
        config_done(table, ELEMENTSOF(table), &c);
        config_done(table, ELEMENTSOF(table), &d);
}

/* Found by fuzz-config: "host =;h" loads as ";h", which "host = ;h" would
 * not (inih takes " ;" for a comment). */
TEST(dump_value_starting_with_semicolon) {
        static const char text[] = "[agent]\nhost =; host-a\n";
        TestConfig c = { 0 }, d = { 0 };
        char *out = NULL;
        size_t len = 0;
        FILE *f;

        ASSERT_OK(config_load_string(table, ELEMENTSOF(table), &c, "in", text, strlen(text), NULL));
        ASSERT_STREQ(c.host, "; host-a");
        f = open_memstream(&out, &len);
        ASSERT_NOT_NULL(f);
        ASSERT_OK(config_dump(table, ELEMENTSOF(table), &c, f));
        fclose(f);
        ASSERT_CONTAINS(out, "\n[agent]\n");
        ASSERT_CONTAINS(out, "\nhost =; host-a\n");
        /* Its [agent] part, whose secret token line would not load. */
        *strstr(out, "token = ") = '\0';
        ASSERT_OK(config_load_string(table, ELEMENTSOF(table), &d, "dump", strstr(out, "[agent]"),
                                     strlen(strstr(out, "[agent]")), NULL));
        ASSERT_STREQ(d.host, "; host-a");
        free(out);
        config_done(table, ELEMENTSOF(table), &c);
        config_done(table, ELEMENTSOF(table), &d);
}

int main(void) {
        int r = tap_run(TESTS(defaults_without_file, file_values_of_every_type, crlf_and_bom,
                              booleans, unknown_section, unknown_key, duplicate_key,
                              empty_key_and_key_outside_section, bad_values, out_of_bounds,
                              validate_callback, secret_values_are_not_echoed, syntax_errors,
                              only_first_error_reported, long_lines, nul_byte_and_indentation,
                              empty_value_means_default, missing_and_unreadable_file, required_keys,
                              reload_replaces_strings, load_string, overrides, dump,
                              dump_value_starting_with_semicolon));

        if (tmp_path[0])
                unlink(tmp_path);
        free(load_error_last);
        return r;
}
