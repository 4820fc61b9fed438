/* SPDX-License-Identifier: MIT */
/* Unit-name validation, splitting, instantiation and allow-list globs: what
 * systemd accepts, what it rejects, and the names an attacker would send. */
#include <errno.h>

#include "macro.h"
#include "tap.h"
#include "unit-name.h"

static void check_valid(const char *name, UnitNameFlags expect) {
        static const UnitNameFlags kinds[] = { UNIT_NAME_PLAIN, UNIT_NAME_TEMPLATE,
                                               UNIT_NAME_INSTANCE };

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++)
                if (unit_name_is_valid(name, kinds[i]) != !!(expect & kinds[i]))
                        TAP_FAIL_("unit_name_is_valid(\"%s\", %d) = %d", name, kinds[i],
                                  unit_name_is_valid(name, kinds[i]));
        if (unit_name_is_valid(name, UNIT_NAME_ANY) != (expect != 0))
                TAP_FAIL_("unit_name_is_valid(\"%s\", ANY) wrong", name);
}

TEST(valid_plain_names) {
        check_valid("foo.service", UNIT_NAME_PLAIN);
        check_valid("a.service", UNIT_NAME_PLAIN);
        check_valid("foo-bar_baz:1.service", UNIT_NAME_PLAIN);
        check_valid("foo.bar.service", UNIT_NAME_PLAIN);
        check_valid("Sentinel-01.service", UNIT_NAME_PLAIN);
        check_valid("app.socket", UNIT_NAME_PLAIN);
        check_valid("app.timer", UNIT_NAME_PLAIN);
        check_valid("multi-user.target", UNIT_NAME_PLAIN);
        check_valid("app.path", UNIT_NAME_PLAIN);
        check_valid("srv-data.mount", UNIT_NAME_PLAIN);
        check_valid("srv-data.automount", UNIT_NAME_PLAIN);
        check_valid("app.slice", UNIT_NAME_PLAIN);
        check_valid("run-u1.scope", UNIT_NAME_PLAIN);
        check_valid("swapfile.swap", UNIT_NAME_PLAIN);
        check_valid("sda.device", UNIT_NAME_PLAIN);
        check_valid("-.slice", UNIT_NAME_PLAIN);
}

TEST(valid_templates_and_instances) {
        check_valid("foo@.service", UNIT_NAME_TEMPLATE);
        check_valid("sentinel@.service", UNIT_NAME_TEMPLATE);
        check_valid("foo@3.service", UNIT_NAME_INSTANCE);
        check_valid("foo@bar-baz.service", UNIT_NAME_INSTANCE);
        check_valid("foo@1.2.service", UNIT_NAME_INSTANCE);
        check_valid("getty@tty1.service", UNIT_NAME_INSTANCE);
        check_valid("foo@a:b_c.service", UNIT_NAME_INSTANCE);
        /* systemd-escape output */
        check_valid("foo@dev-disk-by\\x2dlabel.service", UNIT_NAME_INSTANCE);
        check_valid("foo@\\x2f.service", UNIT_NAME_INSTANCE);
        check_valid("foo@\\xAB.service", UNIT_NAME_INSTANCE);
}

TEST(invalid_names) {
        static const char *const bad[] = {
                "",
                "foo",
                "foo.",
                ".service",
                "foo.Service",
                "foo.services",
                "foo.exe",
                "foo.service.",
                ".foo.service",
                "..service",
                "foo..service",
                "foo/bar.service",
                "../foo.service",
                "foo/../bar.service",
                "/etc/passwd.service",
                "foo bar.service",
                "foo\tbar.service",
                "foo\nbar.service",
                "foo;rm.service",
                "foo$x.service",
                "foo*.service",
                "foo?.service",
                "föö.service",
                "foo\\x2d.service", /* backslash only in instances */
                "@.service",
                "@foo.service",
                "foo@@.service",
                "foo@a@b.service",
                "foo@a/b.service",
                "foo@..service",
                "foo@a..b.service",
                "foo@\\.service",
                "foo@\\x.service",
                "foo@\\x2.service",
                "foo@\\x2g.service",
                "foo@\\\\.service",
                "foo@bar",
                "foo@.",
                "foo@bar.",
                "foo@bar.baz",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (unit_name_is_valid(bad[i], UNIT_NAME_ANY))
                        TAP_FAIL_("\"%s\" accepted", bad[i]);
        ASSERT_FALSE(unit_name_is_valid(NULL, UNIT_NAME_ANY));
        ASSERT_FALSE(unit_name_is_valid("foo.service", 0));
}

TEST(length_limit) {
        char name[UNIT_NAME_MAX + 16];
        size_t suffix = strlen(".service");

        /* exactly 255 bytes: fine; 256: not */
        memset(name, 'a', UNIT_NAME_MAX - suffix);
        strcpy(name + UNIT_NAME_MAX - suffix, ".service");
        ASSERT_EQ_UINT(strlen(name), UNIT_NAME_MAX);
        ASSERT_TRUE(unit_name_is_valid(name, UNIT_NAME_PLAIN));

        memset(name, 'a', UNIT_NAME_MAX - suffix + 1);
        strcpy(name + UNIT_NAME_MAX - suffix + 1, ".service");
        ASSERT_FALSE(unit_name_is_valid(name, UNIT_NAME_ANY));

        /* a long string must not be scanned without end either */
        char *huge = malloc(1 << 20);
        ASSERT_NOT_NULL(huge);
        memset(huge, 'a', (1 << 20) - 1);
        huge[(1 << 20) - 1] = '\0';
        memcpy(huge + (1 << 20) - 9, ".service", 8);
        ASSERT_FALSE(unit_name_is_valid(huge, UNIT_NAME_ANY));
        free(huge);
}

TEST(split_plain_template_instance) {
        char *p = NULL, *i = NULL, *s = NULL;

        ASSERT_OK(unit_name_split("foo.service", &p, &i, &s));
        ASSERT_STREQ(p, "foo");
        ASSERT_NULL(i);
        ASSERT_STREQ(s, "service");
        free(p);
        free(s);

        ASSERT_OK(unit_name_split("foo@.service", &p, &i, &s));
        ASSERT_STREQ(p, "foo");
        ASSERT_STREQ(i, "");
        ASSERT_STREQ(s, "service");
        free(p);
        free(i);
        free(s);

        ASSERT_OK(unit_name_split("sentinel@12.socket", &p, &i, &s));
        ASSERT_STREQ(p, "sentinel");
        ASSERT_STREQ(i, "12");
        ASSERT_STREQ(s, "socket");
        free(p);
        free(i);
        free(s);

        ASSERT_OK(unit_name_split("foo.bar@1.2.service", &p, &i, &s));
        ASSERT_STREQ(p, "foo.bar");
        ASSERT_STREQ(i, "1.2");
        ASSERT_STREQ(s, "service");
        free(p);
        free(i);
        free(s);
}

TEST(split_outputs_optional_and_untouched_on_error) {
        char *p = (char *) "untouched", *i = (char *) "untouched", *s = (char *) "untouched";

        ASSERT_OK(unit_name_split("foo@3.service", NULL, NULL, NULL));
        ASSERT_OK(unit_name_split("foo@3.service", NULL, &i, NULL));
        ASSERT_STREQ(i, "3");
        free(i);
        i = (char *) "untouched";

        ASSERT_ERR(unit_name_split("foo/bar.service", &p, &i, &s), -EINVAL);
        ASSERT_ERR(unit_name_split("", &p, &i, &s), -EINVAL);
        ASSERT_ERR(unit_name_split(NULL, &p, &i, &s), -EINVAL);
        ASSERT_STREQ(p, "untouched");
        ASSERT_STREQ(i, "untouched");
        ASSERT_STREQ(s, "untouched");
}

TEST(instantiate) {
        char *n = NULL;

        ASSERT_OK(unit_name_instantiate("foo@.service", "3", &n));
        ASSERT_STREQ(n, "foo@3.service");
        free(n);

        ASSERT_OK(unit_name_instantiate("sentinel@.socket", "eu-1", &n));
        ASSERT_STREQ(n, "sentinel@eu-1.socket");
        free(n);

        ASSERT_OK(unit_name_instantiate("foo@.service", "a\\x2db", &n));
        ASSERT_STREQ(n, "foo@a\\x2db.service");
        free(n);
}

TEST(instantiate_rejects) {
        char *n = (char *) "untouched";
        char long_instance[UNIT_NAME_MAX];

        ASSERT_ERR(unit_name_instantiate("foo.service", "3", &n), -EINVAL);
        ASSERT_ERR(unit_name_instantiate("foo@1.service", "3", &n), -EINVAL);
        ASSERT_ERR(unit_name_instantiate("foo@.service", "", &n), -EINVAL);
        ASSERT_ERR(unit_name_instantiate("foo@.service", "a/b", &n), -EINVAL);
        ASSERT_ERR(unit_name_instantiate("foo@.service", "a b", &n), -EINVAL);
        ASSERT_ERR(unit_name_instantiate("foo@.service", "a@b", &n), -EINVAL);
        ASSERT_ERR(unit_name_instantiate("foo@.service", "..", &n), -EINVAL);
        ASSERT_ERR(unit_name_instantiate("foo@.service", "a.", &n), -EINVAL); /* "a..service" */
        ASSERT_ERR(unit_name_instantiate("foo@.service", "\\x2", &n), -EINVAL);
        ASSERT_ERR(unit_name_instantiate("foo@.service", NULL, &n), -EINVAL);
        ASSERT_ERR(unit_name_instantiate(NULL, "3", &n), -EINVAL);
        ASSERT_ERR(unit_name_instantiate("../x@.service", "3", &n), -EINVAL);

        /* too long once instantiated */
        memset(long_instance, '1', sizeof(long_instance) - 1);
        long_instance[sizeof(long_instance) - 1] = '\0';
        ASSERT_ERR(unit_name_instantiate("foo@.service", long_instance, &n), -EINVAL);
        long_instance[UNIT_NAME_MAX - strlen("foo@.service")] = '\0';
        ASSERT_STREQ(n, "untouched");
        ASSERT_OK(unit_name_instantiate("foo@.service", long_instance, &n));
        ASSERT_EQ_UINT(strlen(n), UNIT_NAME_MAX);
        free(n);
}

TEST(globs_match) {
        ASSERT_TRUE(unit_name_matches_globs("foo.service", "foo.service"));
        ASSERT_TRUE(unit_name_matches_globs("foo.service", "*"));
        ASSERT_TRUE(unit_name_matches_globs("foo.service", "*.service"));
        ASSERT_TRUE(unit_name_matches_globs("sentinel@3.service", "bar.* sentinel@*.service"));
        ASSERT_TRUE(unit_name_matches_globs("sentinel@3.service", "  sentinel@?.service  "));
        ASSERT_TRUE(unit_name_matches_globs("app-7.service", "app-[0-9].service"));
        ASSERT_TRUE(unit_name_matches_globs("app-x.service", "app-[!0-9].service"));
        ASSERT_TRUE(unit_name_matches_globs("a.service", "x.service\ta.service"));
        ASSERT_FALSE(unit_name_matches_globs("app-x.service", "app-[0-9].service"));
        ASSERT_FALSE(unit_name_matches_globs("foo.service", "*.socket"));
        ASSERT_FALSE(unit_name_matches_globs("foo.service", "foo"));
        ASSERT_FALSE(unit_name_matches_globs("foo.service", "FOO.service"));
        ASSERT_FALSE(unit_name_matches_globs("sentinel@12.service", "sentinel@?.service"));
        /* no FNM_PATHNAME, and no partial matches */
        ASSERT_FALSE(unit_name_matches_globs("xfoo.service", "foo.service"));
        ASSERT_FALSE(unit_name_matches_globs("foo.servicex", "foo.service"));
}

TEST(globs_empty_matches_nothing) {
        ASSERT_FALSE(unit_name_matches_globs("foo.service", NULL));
        ASSERT_FALSE(unit_name_matches_globs("foo.service", ""));
        ASSERT_FALSE(unit_name_matches_globs("foo.service", "   "));
        ASSERT_FALSE(unit_name_matches_globs(NULL, "*"));
}

TEST(globs_validate) {
        const char *bad = NULL;

        ASSERT_OK(unit_globs_validate("*", &bad));
        ASSERT_OK(
                unit_globs_validate("sentinel@*.service audio-*.service app-[0-9].service", &bad));
        ASSERT_OK(unit_globs_validate("a\\*b [!ab]x [^x] []x] [!]x]", &bad));
        ASSERT_OK(unit_globs_validate("", &bad));
        ASSERT_OK(unit_globs_validate(NULL, &bad));
        ASSERT_NULL(bad);

        const char *globs = "ok.service bad/path.service other.service";
        ASSERT_ERR(unit_globs_validate(globs, &bad), -EINVAL);
        ASSERT_TRUE(bad == globs + 11);

        static const char *const junk[] = {
                "foo.service;rm", "a b$c", "[abc",   "x[",       "a\\", "[]", "[!]",
                "fo o\x01",       "~",     "a{b,c}", "\xc3\xa9",
        };
        for (size_t i = 0; i < ELEMENTSOF(junk); i++) {
                bad = NULL;
                if (unit_globs_validate(junk[i], &bad) != -EINVAL || !bad)
                        TAP_FAIL_("\"%s\" accepted", junk[i]);
        }
        ASSERT_ERR(unit_globs_validate("[", NULL), -EINVAL);
}

TEST(globs_validate_long_word) {
        char w[4 * UNIT_NAME_MAX];

        memset(w, 'a', sizeof(w) - 1);
        w[sizeof(w) - 1] = '\0';
        ASSERT_ERR(unit_globs_validate(w, NULL), -EINVAL);
        w[2 * UNIT_NAME_MAX] = '\0';
        ASSERT_OK(unit_globs_validate(w, NULL));
}

int main(void) {
        return tap_run(TESTS(valid_plain_names, valid_templates_and_instances, invalid_names,
                             length_limit, split_plain_template_instance,
                             split_outputs_optional_and_untouched_on_error, instantiate,
                             instantiate_rejects, globs_match, globs_empty_matches_nothing,
                             globs_validate, globs_validate_long_word));
}
