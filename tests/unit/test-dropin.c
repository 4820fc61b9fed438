/* SPDX-License-Identifier: MIT */
/* The baton drop-in: exact output, systemd quoting checked by decoding it the
 * way systemd does (unquote, C-unescape, then %-specifiers), refusal of bad
 * names and values, and the managed-file marker. */
#include <errno.h>
#include <stdio.h>

#include "dropin.h"
#include "macro.h"
#include "tap.h"

static const DropinInput base = {
        .host = "host-a",
        .service = "gateway",
        .instance = 3,
        .has_instance = true,
};

TEST(instance_without_shards) {
        _cleanup_free_ char *t = NULL;

        ASSERT_OK(dropin_render(&base, &t));
        ASSERT_STREQ(t, "# Managed by baton-agent; do not edit.\n"
                        "[Service]\n"
                        "Environment=\"BATON_SERVICE=gateway\"\n"
                        "Environment=\"BATON_INSTANCE=3\"\n"
                        "Environment=\"BATON_HOST=host-a\"\n");
}

TEST(singleton_has_no_instance_variable) {
        _cleanup_free_ char *t = NULL;
        DropinInput in = { .host = "h1", .service = "core" };

        ASSERT_OK(dropin_render(&in, &t));
        ASSERT_STREQ(t, BATON_MANAGED_MARKER "\n[Service]\n"
                                             "Environment=\"BATON_SERVICE=core\"\n"
                                             "Environment=\"BATON_HOST=h1\"\n");
}

TEST(sharded_instance_with_env) {
        _cleanup_free_ char *t = NULL;
        DropinEnv env[] = { { "TOKEN_FILE", "/etc/bot/token" }, { "LOG_LEVEL", "debug" } };
        DropinInput in = base;

        in.instance = 0;
        in.shards = "90-91,0-13"; /* written in canonical form */
        in.shard_count = 96;
        in.shard_epoch = 4;
        in.has_shards = true;
        in.env = env;
        in.n_env = ELEMENTSOF(env);

        ASSERT_OK(dropin_render(&in, &t));
        ASSERT_STREQ(t, BATON_MANAGED_MARKER "\n[Service]\n"
                                             "Environment=\"BATON_SERVICE=gateway\"\n"
                                             "Environment=\"BATON_INSTANCE=0\"\n"
                                             "Environment=\"BATON_HOST=host-a\"\n"
                                             "Environment=\"BATON_SHARDS=0-13,90-91\"\n"
                                             "Environment=\"BATON_SHARD_COUNT=96\"\n"
                                             "Environment=\"BATON_SHARD_EPOCH=4\"\n"
                                             "Environment=\"TOKEN_FILE=/etc/bot/token\"\n"
                                             "Environment=\"LOG_LEVEL=debug\"\n");
}

TEST(sharded_with_empty_set) {
        _cleanup_free_ char *t = NULL;
        DropinInput in = base;

        in.shards = "";
        in.shard_count = 8;
        in.has_shards = true;
        ASSERT_OK(dropin_render(&in, &t));
        ASSERT_NOT_NULL(strstr(t, "Environment=\"BATON_SHARDS=\"\n"));
        ASSERT_NOT_NULL(strstr(t, "Environment=\"BATON_SHARD_COUNT=8\"\n"));
        ASSERT_NOT_NULL(strstr(t, "Environment=\"BATON_SHARD_EPOCH=0\"\n"));
}

#define SHARDS_FILE "/var/lib/baton-agent/shards/gateway@3.service"

TEST(sharded_instance_with_shards_file) {
        _cleanup_free_ char *t = NULL, *file = NULL;
        DropinEnv env[] = { { "LOG_LEVEL", "debug" } };
        DropinInput in = base;

        in.shards = "90-91,0-13";
        in.shard_count = 96;
        in.shard_epoch = 4;
        in.has_shards = true;
        in.shards_file = SHARDS_FILE;
        in.env = env;
        in.n_env = ELEMENTSOF(env);

        /* the file in place of the list; count and epoch stay */
        ASSERT_OK(dropin_render(&in, &t));
        ASSERT_STREQ(t, BATON_MANAGED_MARKER "\n[Service]\n"
                                             "Environment=\"BATON_SERVICE=gateway\"\n"
                                             "Environment=\"BATON_INSTANCE=3\"\n"
                                             "Environment=\"BATON_HOST=host-a\"\n"
                                             "Environment=\"BATON_SHARDS_FILE=" SHARDS_FILE "\"\n"
                                             "Environment=\"BATON_SHARD_COUNT=96\"\n"
                                             "Environment=\"BATON_SHARD_EPOCH=4\"\n"
                                             "Environment=\"LOG_LEVEL=debug\"\n");
        ASSERT_OK(dropin_shards_text(&in, &file));
        ASSERT_STREQ(file, "0-13,90-91\n");
}

TEST(shards_file_form_does_not_change_with_the_set) {
        _cleanup_free_ char *a = NULL, *b = NULL, *fa = NULL, *fb = NULL, *ea = NULL, *eb = NULL;
        DropinInput in = base;

        in.shard_count = 16;
        in.has_shards = true;
        in.shards_file = SHARDS_FILE;
        in.shards = "0-3";
        ASSERT_OK(dropin_render(&in, &a));
        ASSERT_OK(dropin_shards_text(&in, &fa));
        in.shards = "2-5,9";
        ASSERT_OK(dropin_render(&in, &b));
        ASSERT_OK(dropin_shards_text(&in, &fb));
        ASSERT_STREQ(a, b);
        ASSERT_STREQ(fa, "0-3\n");
        ASSERT_STREQ(fb, "2-5,9\n");

        /* without the file, the set is in the drop-in: it changes */
        in.shards_file = NULL;
        in.shards = "0-3";
        ASSERT_OK(dropin_render(&in, &ea));
        in.shards = "2-5,9";
        ASSERT_OK(dropin_render(&in, &eb));
        ASSERT_TRUE(strcmp(ea, eb) != 0);
        ASSERT_NULL(strstr(ea, "BATON_SHARDS_FILE"));
}

TEST(shards_text) {
        _cleanup_free_ char *e = NULL, *f = NULL;
        char *untouched = (char *) "x";
        DropinInput in = base;

        in.shard_count = 8;
        in.has_shards = true;
        in.shards = "";
        ASSERT_OK(dropin_shards_text(&in, &e));
        ASSERT_STREQ(e, "\n"); /* the empty set */
        in.shards = "7,0-1,2";
        ASSERT_OK(dropin_shards_text(&in, &f));
        ASSERT_STREQ(f, "0-2,7\n");

        in.shards = "8";
        ASSERT_ERR(dropin_shards_text(&in, &untouched), -EINVAL);
        in.shards = "0";
        in.has_shards = false;
        ASSERT_ERR(dropin_shards_text(&in, &untouched), -EINVAL);
        ASSERT_STREQ(untouched, "x");
}

TEST(shards_file_checked) {
        _cleanup_free_ char *e1 = NULL, *e2 = NULL, *e3 = NULL;
        char *t = (char *) "untouched";
        DropinInput in = base;

        in.shards = "0";
        in.shard_count = 1;
        in.has_shards = true;
        in.shards_file = "shards/gateway@3.service";
        ASSERT_ERR(dropin_validate(&in, &e1), -EINVAL);
        ASSERT_STREQ(e1, "shards file: not an absolute path");
        ASSERT_ERR(dropin_render(&in, &t), -EINVAL);
        ASSERT_STREQ(t, "untouched");
        in.shards_file = "/a\nb";
        ASSERT_ERR(dropin_validate(&in, &e2), -EINVAL);
        ASSERT_STREQ(e2, "shards file: value contains a line break");
        in.shards_file = SHARDS_FILE;
        in.has_shards = false;
        ASSERT_ERR(dropin_validate(&in, &e3), -EINVAL);
        ASSERT_STREQ(e3, "shards file given without a shard assignment");
        in.shards_file = "";
        ASSERT_OK(dropin_validate(&in, NULL));
}

TEST(shards_parse) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        char *untouched = (char *) "x";

        ASSERT_OK(dropin_shards_parse("90-91,0-13\n", &a));
        ASSERT_STREQ(a, "0-13,90-91");
        ASSERT_OK(dropin_shards_parse("\n", &b));
        ASSERT_STREQ(b, "");
        ASSERT_ERR(dropin_shards_parse("0-13", &untouched), -EINVAL);
        ASSERT_ERR(dropin_shards_parse("", &untouched), -EINVAL);
        ASSERT_ERR(dropin_shards_parse("0-13\n\n", &untouched), -EINVAL);
        ASSERT_ERR(dropin_shards_parse("99999999999\n", &untouched), -EINVAL);
        ASSERT_ERR(dropin_shards_parse(NULL, &untouched), -EINVAL);
        ASSERT_STREQ(untouched, "x");
}

TEST(no_shard_variables_without_has_shards) {
        _cleanup_free_ char *t = NULL;
        DropinInput in = base;

        in.shards = "0-3"; /* ignored */
        in.shard_count = 4;
        ASSERT_OK(dropin_render(&in, &t));
        ASSERT_NULL(strstr(t, "BATON_SHARD"));
}

static char *render_one(const char *name, const char *value) {
        DropinEnv env[] = { { name, value } };
        DropinInput in = { .host = "h", .service = "s", .env = env, .n_env = 1 };
        char *t = NULL;

        if (dropin_render(&in, &t) < 0)
                return NULL;
        return t;
}

TEST(escaping) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;

        a = render_one("Q", "say \"hi\"");
        ASSERT_NOT_NULL(a);
        ASSERT_NOT_NULL(strstr(a, "Environment=\"Q=say \\\"hi\\\"\"\n"));

        b = render_one("B", "C:\\dir\\");
        ASSERT_NOT_NULL(b);
        ASSERT_NOT_NULL(strstr(b, "Environment=\"B=C:\\\\dir\\\\\"\n"));

        c = render_one("P", "100% %n %%");
        ASSERT_NOT_NULL(c);
        ASSERT_NOT_NULL(strstr(c, "Environment=\"P=100%% %%n %%%%\"\n"));

        d = render_one("D", "$HOME ${X} $$");
        ASSERT_NOT_NULL(d);
        ASSERT_NOT_NULL(strstr(d, "Environment=\"D=$HOME ${X} $$\"\n"));

        e = render_one("S", "  two  spaces\tand tab 'single' ");
        ASSERT_NOT_NULL(e);
        ASSERT_NOT_NULL(strstr(e, "Environment=\"S=  two  spaces\tand tab 'single' \"\n"));
}

TEST(empty_value_and_utf8) {
        _cleanup_free_ char *a = NULL, *b = NULL;

        a = render_one("EMPTY", "");
        ASSERT_NOT_NULL(a);
        ASSERT_NOT_NULL(strstr(a, "Environment=\"EMPTY=\"\n"));

        b = render_one("U", "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x8e\xb5");
        ASSERT_NOT_NULL(b);
        ASSERT_NOT_NULL(strstr(b, "Environment=\"U=gr\xc3\xbc\xc3\x9f \xe2\x82\xac "
                                  "\xf0\x9f\x8e\xb5\"\n"));
}

/* Decodes one Environment= line as systemd does: unquote with C escapes,
 * then specifiers. Returns the assignment or NULL if the line would not
 * give back exactly one assignment. */
static char *systemd_decode(const char *line) {
        const char *p;
        char *out, *o;

        if (strncmp(line, "Environment=\"", 13) != 0)
                return NULL;
        p = line + 13;
        out = o = calloc(strlen(p) + 1, 1);
        if (!out)
                return NULL;
        for (;; p++) {
                if (*p == '\0')
                        goto bad; /* unterminated */
                if (*p == '"')
                        break;
                if (*p == '\\') {
                        p++;
                        if (*p != '\\' && *p != '"')
                                goto bad; /* would be another C escape */
                }
                *o++ = *p;
        }
        if (p[1] != '\0')
                goto bad; /* more than one word */

        *o = '\0';

        /* then specifiers: only "%%" may remain */
        o = out;
        for (const char *r = out; *r; r++) {
                if (*r == '%') {
                        if (r[1] != '%')
                                goto bad;
                        r++;
                }
                *o++ = *r;
        }
        *o = '\0';
        return out;
bad:
        free(out);
        return NULL;
}

static uint64_t rnd_state = 42;

static uint32_t rnd(void) {
        rnd_state = rnd_state * 6364136223846793005ULL + 1442695040888963407ULL;
        return (uint32_t) (rnd_state >> 33);
}

TEST(random_values_survive_systemd_decoding) {
        static const char alphabet[] = "aZ09 _-=\"\\%$'`;#{}()*?!&|<>\t/.,:@~^[]";

        for (int iter = 0; iter < 3000; iter++) {
                _cleanup_free_ char *t = NULL, *want = NULL, *got = NULL;
                char value[64];
                size_t n = rnd() % (sizeof(value) - 1);
                const char *line;
                char *nl;

                for (size_t i = 0; i < n; i++)
                        value[i] = alphabet[rnd() % (sizeof(alphabet) - 1)];
                value[n] = '\0';

                t = render_one("V", value);
                ASSERT_NOT_NULL(t);
                line = strstr(t, "Environment=\"V=");
                ASSERT_NOT_NULL(line);
                nl = strchr(line, '\n');
                ASSERT_NOT_NULL(nl);
                ASSERT_TRUE(nl[1] == '\0'); /* the extra variable comes last */
                *nl = '\0';

                got = systemd_decode(line);
                ASSERT_NOT_NULL(got);
                ASSERT_TRUE(asprintf(&want, "V=%s", value) > 0);
                ASSERT_STREQ(got, want);
        }
}

static int validate_one(const char *name, const char *value, char **ret_error) {
        DropinEnv env[] = { { name, value } };
        DropinInput in = base;

        in.env = env;
        in.n_env = 1;
        return dropin_validate(&in, ret_error);
}

TEST(bad_names_refused) {
        static const char *const bad[] = {
                "",        "1FOO",         "FOO-BAR", "FOO BAR",  "FOO=BAR", "F.O",
                "BATON_X", "BATON_SHARDS", "BATON_",  "\xc3\xbc", "A\tB",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *err = NULL;
                _cleanup_free_ char *t = render_one(bad[i], "v");

                ASSERT_NULL(t);
                ASSERT_ERR(validate_one(bad[i], "v", &err), -EINVAL);
                ASSERT_NOT_NULL(err);
                ASSERT_NOT_NULL(strstr(err, "environment variable 1"));
        }
        ASSERT_ERR(validate_one(NULL, "v", NULL), -EINVAL);

        {
                _cleanup_free_ char *err = NULL;
                char longname[DROPIN_ENV_NAME_MAX + 2];

                memset(longname, 'A', sizeof(longname) - 1);
                longname[sizeof(longname) - 1] = '\0';
                ASSERT_ERR(validate_one(longname, "v", &err), -EINVAL);
                ASSERT_NOT_NULL(strstr(err, "name too long"));
                longname[DROPIN_ENV_NAME_MAX] = '\0';
                ASSERT_OK(validate_one(longname, "v", NULL));
        }
}

TEST(good_names_accepted) {
        static const char *const good[] = { "A",      "_",     "_X1",      "lower_case",
                                            "BATONX", "BATON", "X_BATON_Y" };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ASSERT_OK(validate_one(good[i], "v", NULL));
}

TEST(bad_values_refused) {
        static const struct {
                const char *value, *what;
        } bad[] = {
                { "a\nb", "line break" },
                { "a\r", "line break" },
                { "\x01", "control character" },
                { "esc\x1b[0m", "control character" },
                { "del\x7f", "control character" },
                { "\xff", "UTF-8" },
                { "\xc0\xaf", "UTF-8" },         /* overlong '/' */
                { "\xe0\x80\xaf", "UTF-8" },     /* overlong */
                { "\xed\xa0\x80", "UTF-8" },     /* surrogate */
                { "\xf4\x90\x80\x80", "UTF-8" }, /* above U+10FFFF */
                { "\xc3", "UTF-8" },             /* truncated */
                { "\xe2\x82", "UTF-8" },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *err = NULL;
                _cleanup_free_ char *t = render_one("V", bad[i].value);

                ASSERT_NULL(t);
                ASSERT_ERR(validate_one("V", bad[i].value, &err), -EINVAL);
                ASSERT_NOT_NULL(strstr(err, "environment variable V"));
                ASSERT_NOT_NULL(strstr(err, bad[i].what));
        }
        ASSERT_ERR(validate_one("V", NULL, NULL), -EINVAL);
}

TEST(long_values_and_many_variables) {
        _cleanup_free_ char *big = malloc(DROPIN_ENV_VALUE_MAX + 2);
        _cleanup_free_ DropinEnv *env = calloc(DROPIN_ENV_MAX + 1, sizeof(DropinEnv));
        _cleanup_free_ char *names = malloc((DROPIN_ENV_MAX + 1) * 8);
        DropinInput in = base;

        ASSERT_NOT_NULL(big);
        ASSERT_NOT_NULL(env);
        ASSERT_NOT_NULL(names);
        memset(big, 'x', DROPIN_ENV_VALUE_MAX + 1);
        big[DROPIN_ENV_VALUE_MAX + 1] = '\0';
        ASSERT_ERR(validate_one("V", big, NULL), -EINVAL);
        big[DROPIN_ENV_VALUE_MAX] = '\0';
        ASSERT_OK(validate_one("V", big, NULL));

        for (size_t i = 0; i < DROPIN_ENV_MAX + 1; i++) {
                snprintf(names + i * 8, 8, "V%zu", i);
                env[i] = (DropinEnv){ names + i * 8, "x" };
        }
        in.env = env;
        in.n_env = DROPIN_ENV_MAX;
        ASSERT_OK(dropin_validate(&in, NULL));
        in.n_env = DROPIN_ENV_MAX + 1;
        ASSERT_ERR(dropin_validate(&in, NULL), -EINVAL);
}

TEST(duplicate_extra_names_refused) {
        _cleanup_free_ char *err = NULL, *t = NULL;
        DropinEnv env[] = { { "A", "1" }, { "B", "2" }, { "A", "3" } };
        DropinInput in = base;

        in.env = env;
        in.n_env = ELEMENTSOF(env);
        ASSERT_ERR(dropin_validate(&in, &err), -EINVAL);
        ASSERT_STREQ(err, "environment variable A: set twice");
        ASSERT_ERR(dropin_render(&in, &t), -EINVAL);
        ASSERT_NULL(t); /* untouched on failure */
}

TEST(host_and_service_required) {
        _cleanup_free_ char *e1 = NULL, *e2 = NULL, *e3 = NULL;
        DropinInput in = base;
        char *t = (char *) "untouched";

        in.host = "";
        ASSERT_ERR(dropin_validate(&in, &e1), -EINVAL);
        ASSERT_STREQ(e1, "missing host name");
        in.host = NULL;
        ASSERT_ERR(dropin_render(&in, &t), -EINVAL);
        ASSERT_STREQ(t, "untouched");

        in = base;
        in.service = NULL;
        ASSERT_ERR(dropin_validate(&in, &e2), -EINVAL);
        ASSERT_STREQ(e2, "missing service name");

        in = base;
        in.host = "bad\nhost";
        ASSERT_ERR(dropin_validate(&in, &e3), -EINVAL);
        ASSERT_STREQ(e3, "host name: value contains a line break");

        in = base;
        in.env = NULL;
        in.n_env = 1;
        ASSERT_ERR(dropin_validate(&in, NULL), -EINVAL);
}

TEST(shards_checked) {
        _cleanup_free_ char *e1 = NULL, *e2 = NULL, *e3 = NULL;
        DropinInput in = base;

        in.has_shards = true;
        in.shard_count = 96;

        in.shards = "0-95";
        ASSERT_OK(dropin_validate(&in, NULL));
        in.shards = "0-96";
        ASSERT_ERR(dropin_validate(&in, &e1), -EINVAL);
        ASSERT_STREQ(e1, "shard 96 is not below the shard count 96");
        in.shards = "a-b";
        ASSERT_ERR(dropin_validate(&in, &e2), -EINVAL);
        ASSERT_STREQ(e2, "invalid shard list \"a-b\"");
        in.shards = NULL; /* same as "" */
        ASSERT_OK(dropin_validate(&in, NULL));
        in.shards = "0";
        in.shard_count = 0;
        ASSERT_ERR(dropin_validate(&in, &e3), -EINVAL);
        ASSERT_STREQ(e3, "shard count is 0");
        in.shards = "99999999999";
        in.shard_count = 1;
        ASSERT_ERR(dropin_validate(&in, NULL), -EINVAL);
}

TEST(marker_detection) {
        _cleanup_free_ char *t = NULL;

        ASSERT_OK(dropin_render(&base, &t));
        ASSERT_TRUE(dropin_text_is_managed(t));
        ASSERT_TRUE(dropin_text_is_managed(BATON_MANAGED_MARKER));
        ASSERT_TRUE(dropin_text_is_managed(BATON_MANAGED_MARKER "\n"));
        ASSERT_TRUE(dropin_text_is_managed(BATON_MANAGED_MARKER "\r\n[Service]\n"));

        ASSERT_FALSE(dropin_text_is_managed(NULL));
        ASSERT_FALSE(dropin_text_is_managed(""));
        ASSERT_FALSE(dropin_text_is_managed("[Service]\n" BATON_MANAGED_MARKER "\n"));
        ASSERT_FALSE(dropin_text_is_managed("\n" BATON_MANAGED_MARKER "\n"));
        ASSERT_FALSE(dropin_text_is_managed(" " BATON_MANAGED_MARKER "\n"));
        ASSERT_FALSE(dropin_text_is_managed(BATON_MANAGED_MARKER " really\n"));
        ASSERT_FALSE(dropin_text_is_managed(BATON_MANAGED_MARKER "\r"));
        ASSERT_FALSE(dropin_text_is_managed("# Managed by baton-agent; do not edit\n"));
        ASSERT_FALSE(dropin_text_is_managed("# managed by baton-agent; do not edit.\n"));
}

TEST(managed_file_render_and_detect) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;
        const char *unit = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n";

        ASSERT_FALSE(managed_file_is_managed(unit));
        ASSERT_OK(managed_file_render(unit, &a));
        ASSERT_TRUE(strncmp(a, BATON_MANAGED_MARKER "\n", strlen(BATON_MANAGED_MARKER) + 1) == 0);
        ASSERT_STREQ(a + strlen(BATON_MANAGED_MARKER) + 1, unit);
        ASSERT_TRUE(managed_file_is_managed(a));

        /* rendering what is already marked does not stack markers */
        ASSERT_OK(managed_file_render(a, &b));
        ASSERT_STREQ(a, b);

        ASSERT_OK(managed_file_render("", &c));
        ASSERT_STREQ(c, BATON_MANAGED_MARKER "\n");
        ASSERT_TRUE(managed_file_is_managed(c));

        ASSERT_FALSE(managed_file_is_managed(NULL));
        ASSERT_FALSE(managed_file_is_managed("# Managed by someone else\n"));
        ASSERT_ERR(managed_file_render(NULL, &c), -EINVAL);
}

TEST(error_names_the_variable_safely) {
        _cleanup_free_ char *err = NULL;

        /* a name with a line break is reported, not echoed raw into a log line */
        ASSERT_ERR(validate_one("A\nB", "v", &err), -EINVAL);
        ASSERT_NOT_NULL(err);
        ASSERT_NULL(strchr(err, '\n'));
}

TEST(parse_reads_back_what_render_wrote) {
        const DropinEnv env[] = { { "TOKEN", "a \"quoted\" 100% \\ value" } };
        DropinInput in = { .host = "host-a",
                           .service = "gateway",
                           .instance = 3,
                           .has_instance = true,
                           .env = env,
                           .n_env = 1,
                           .shards = "0-13,90-91",
                           .shard_count = 96,
                           .shard_epoch = 7,
                           .has_shards = true };
        _cleanup_free_ char *text = NULL;
        DropinInfo info;

        ASSERT_OK(dropin_render(&in, &text));
        ASSERT_OK(dropin_parse(text, &info));
        ASSERT_STREQ(info.service, "gateway");
        ASSERT_STREQ(info.host, "host-a");
        ASSERT_TRUE(info.has_instance);
        ASSERT_EQ_UINT(info.instance, 3);
        ASSERT_TRUE(info.has_shards);
        ASSERT_STREQ(info.shards, "0-13,90-91");
        ASSERT_EQ_UINT(info.shard_count, 96);
        ASSERT_EQ_UINT(info.shard_epoch, 7);
        dropin_info_done(&info);

        in.has_shards = false;
        in.has_instance = false;
        free(text);
        text = NULL;
        ASSERT_OK(dropin_render(&in, &text));
        ASSERT_OK(dropin_parse(text, &info));
        ASSERT_FALSE(info.has_shards);
        ASSERT_FALSE(info.has_instance);
        dropin_info_done(&info);
}

TEST(parse_reads_back_the_shards_file_form) {
        DropinInput in = { .host = "host-a",
                           .service = "gateway",
                           .instance = 3,
                           .has_instance = true,
                           .shards = "0-13,90-91",
                           .shard_count = 96,
                           .shard_epoch = 7,
                           .has_shards = true,
                           .shards_file = SHARDS_FILE };
        _cleanup_free_ char *text = NULL;
        DropinInfo info;

        ASSERT_OK(dropin_render(&in, &text));
        ASSERT_OK(dropin_parse(text, &info));
        ASSERT_TRUE(info.has_shards);
        ASSERT_NULL(info.shards); /* in the file */
        ASSERT_STREQ(info.shards_file, SHARDS_FILE);
        ASSERT_EQ_UINT(info.shard_count, 96);
        ASSERT_EQ_UINT(info.shard_epoch, 7);
        dropin_info_done(&info);

        /* both forms at once, a relative or empty file: not what baton writes */
        ASSERT_ERR(dropin_parse(BATON_MANAGED_MARKER "\n[Service]\n"
                                                     "Environment=\"BATON_SERVICE=x\"\n"
                                                     "Environment=\"BATON_SHARDS=1\"\n"
                                                     "Environment=\"BATON_SHARDS_FILE=/s/x\"\n"
                                                     "Environment=\"BATON_SHARD_COUNT=2\"\n",
                                &info),
                   -EINVAL);
        ASSERT_ERR(dropin_parse(BATON_MANAGED_MARKER "\n[Service]\n"
                                                     "Environment=\"BATON_SERVICE=x\"\n"
                                                     "Environment=\"BATON_SHARDS_FILE=s/x\"\n"
                                                     "Environment=\"BATON_SHARD_COUNT=2\"\n",
                                &info),
                   -EINVAL);
        ASSERT_ERR(dropin_parse(BATON_MANAGED_MARKER "\n[Service]\n"
                                                     "Environment=\"BATON_SERVICE=x\"\n"
                                                     "Environment=\"BATON_SHARDS_FILE=\"\n"
                                                     "Environment=\"BATON_SHARD_COUNT=2\"\n",
                                &info),
                   -EINVAL);
        /* a count is required with the file too */
        ASSERT_ERR(dropin_parse(BATON_MANAGED_MARKER "\n[Service]\n"
                                                     "Environment=\"BATON_SERVICE=x\"\n"
                                                     "Environment=\"BATON_SHARDS_FILE=/s/x\"\n",
                                &info),
                   -EINVAL);
}

TEST(parse_refuses_what_baton_did_not_write) {
        DropinInfo info;

        ASSERT_ERR(dropin_parse("[Service]\nEnvironment=\"BATON_SERVICE=x\"\n", &info), -EINVAL);
        ASSERT_ERR(dropin_parse(NULL, &info), -EINVAL);
        ASSERT_ERR(dropin_parse(BATON_MANAGED_MARKER "\n[Service]\n", &info), -EINVAL);
        ASSERT_ERR(dropin_parse(BATON_MANAGED_MARKER "\n[Service]\n"
                                                     "Environment=\"BATON_SERVICE=x\"\n"
                                                     "Environment=\"BATON_SHARDS=9-1\"\n",
                                &info),
                   -EINVAL);
        ASSERT_ERR(dropin_parse(BATON_MANAGED_MARKER "\n[Service]\n"
                                                     "Environment=\"BATON_SERVICE=x\"\n"
                                                     "Environment=\"BATON_INSTANCE=-1\"\n",
                                &info),
                   -EINVAL);
}

int main(void) {
        return tap_run(TESTS(
                instance_without_shards, singleton_has_no_instance_variable,
                sharded_instance_with_env, sharded_with_empty_set,
                sharded_instance_with_shards_file, shards_file_form_does_not_change_with_the_set,
                shards_text, shards_file_checked, shards_parse,
                no_shard_variables_without_has_shards, escaping, empty_value_and_utf8,
                random_values_survive_systemd_decoding, bad_names_refused, good_names_accepted,
                bad_values_refused, long_values_and_many_variables, duplicate_extra_names_refused,
                host_and_service_required, shards_checked, marker_detection,
                managed_file_render_and_detect, error_names_the_variable_safely,
                parse_reads_back_what_render_wrote, parse_reads_back_the_shards_file_form,
                parse_refuses_what_baton_did_not_write));
}
