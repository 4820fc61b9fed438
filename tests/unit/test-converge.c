/* SPDX-License-Identifier: MIT */
/* The convergence planner: one hand-written case per rule of converge.h, then
 * a property test that carries out plans for thousands of generated worlds on
 * a model of a host (files, enablement, run state) and checks the outcome. */
#include <errno.h>
#include <stdio.h>

#include "converge.h"
#include "macro.h"
#include "tap.h"
#include "unit-name.h"

static const char T1[] = "[Service]\nExecStart=/bin/one\n";
static const char T2[] = "[Service]\nExecStart=/bin/two\n";
static const char D1[] = "# Managed by baton-agent; do not edit.\n[Service]\nEnvironment=\"A=1\"\n";
static const char D2[] = "# Managed by baton-agent; do not edit.\n[Service]\nEnvironment=\"A=2\"\n";

/* config_hash() into one of a few rotating buffers, for initializers. */
static const char *H(const char *unit_text, const char *dropin_text) {
        static char buf[32][CONFIG_HASH_HEX_LEN + 1];
        static unsigned i;
        char *b = buf[i++ % ELEMENTSOF(buf)];

        config_hash(unit_text, dropin_text, b);
        return b;
}

#define PLAIN(n, t, d, run)                                                                        \
        { .name = (n), .unit_text = (t), .dropin_text = (d), .running = (run) }
#define INST(n, tmpl, t, d, run)                                                                   \
        {                                                                                          \
                .name = (n), .template_name = (tmpl), .unit_text = (t), .dropin_text = (d),        \
                .running = (run)                                                                   \
        }
#define MANAGED(n, f, t, d)                                                                        \
        { .name = (n), .file_name = (f), .config_hash = H((t), (d)), .has_dropin = (d) != NULL }

static Plan plan; /* the last plan computed by run(), for a closer look */

/* One line per action: "type unit-or-file[: reason for refusals]". */
static char *plan_text(const Plan *p) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                abort();
        for (size_t i = 0; i < p->n_actions; i++) {
                const Action *a = &p->actions[i];

                fputs(action_type_to_string(a->type), f);
                if (a->type == ACTION_REFUSE)
                        fprintf(f, " %s: %s", a->unit, a->reason);
                else if (a->file_name)
                        fprintf(f, " %s", a->file_name);
                else if (a->unit)
                        fprintf(f, " %s", a->unit);
                fputc('\n', f);
        }
        if (fclose(f) != 0)
                abort();
        return buf;
}

static char *run(const DesiredUnit *d, size_t nd, const ManagedUnit *m, size_t nm,
                 const ObservedUnit *o, size_t no, const char *const *foreign, size_t nf,
                 const char *globs, unsigned flags) {
        plan_done(&plan);
        if (converge_plan(d, nd, m, nm, o, no, foreign, nf, globs, flags, &plan) < 0)
                abort();
        return plan_text(&plan);
}

static const ManagedUnit no_managed[1] = { { 0 } };
static const ObservedUnit no_observed[1] = { { 0 } };
static const char *const no_foreign[1] = { NULL };
static const DesiredUnit no_desired[1] = { { 0 } };

/* The length of an array argument, 0 for the no_* placeholders. */
#define N(a)                                                                                       \
        ((const void *) (a) == (const void *) no_managed ||                                        \
                         (const void *) (a) == (const void *) no_observed ||                       \
                         (const void *) (a) == (const void *) no_foreign                           \
                 ? 0                                                                               \
                 : ELEMENTSOF(a))
#define RUN(d, m, o, f, globs, flags)                                                              \
        run((d), ELEMENTSOF(d), (m), N(m), (o), N(o), (f), N(f), (globs), (flags))
#define NONE_M no_managed, 0
#define NONE_O no_observed, 0
#define NONE_F no_foreign, 0
#define NONE_D no_desired, 0

static void assert_plan(char *got, const char *want) {
        if (strcmp(got, want) != 0) {
                printf("#   got:\n%s#   want:\n%s", got, want);
                free(got);
                ASSERT_TRUE(false);
        }
        free(got);
}

TEST(new_plain_unit) {
        DesiredUnit d[] = { PLAIN("core.service", T1, D1, true) };

        assert_plan(run(d, 1, NONE_M, NONE_O, NONE_F, "*", 0),
                    "write-file core.service\n"
                    "write-dropin core.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable core.service\n"
                    "start core.service\n");
        ASSERT_TRUE(plan.actions[0].content == T1); /* borrowed, not copied */
        ASSERT_TRUE(plan.actions[1].content == D1);
        ASSERT_STREQ(plan.actions[0].unit, "core.service");
        ASSERT_STREQ(plan.actions[1].unit, "core.service");
        ASSERT_NULL(plan.actions[2].unit);
        ASSERT_NULL(plan.actions[2].content);
        ASSERT_STREQ(plan.actions[4].reason, "new unit");
        ASSERT_EQ_UINT(plan.n_refused, 0);
}

TEST(new_unit_without_dropin) {
        DesiredUnit d[] = { PLAIN("core.service", T1, NULL, true),
                            PLAIN("db.service", T2, "", true) };

        assert_plan(run(d, 2, NONE_M, NONE_O, NONE_F, "*", 0), "write-file core.service\n"
                                                               "write-file db.service\n"
                                                               "daemon-reload\n"
                                                               "enable core.service\n"
                                                               "enable db.service\n"
                                                               "start core.service\n"
                                                               "start db.service\n");
}

TEST(new_instances_write_the_template_once) {
        DesiredUnit d[] = {
                INST("gw@2.service", "gw@.service", T1, D2, true),
                INST("gw@0.service", "gw@.service", T1, D1, true),
                INST("gw@1.service", "gw@.service", T1, D1, true),
        };

        assert_plan(RUN(d, no_managed, no_observed, no_foreign, "gw@*.service", 0),
                    "write-file gw@.service\n"
                    "write-dropin gw@0.service.d/50-baton.conf\n"
                    "write-dropin gw@1.service.d/50-baton.conf\n"
                    "write-dropin gw@2.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable gw@0.service\n"
                    "enable gw@1.service\n"
                    "enable gw@2.service\n"
                    "start gw@0.service\n"
                    "start gw@1.service\n"
                    "start gw@2.service\n");
        ASSERT_STREQ(plan.actions[0].unit, "gw@.service");
        ASSERT_TRUE(plan.actions[0].content == T1);
}

TEST(unchanged_is_empty) {
        DesiredUnit d[] = { PLAIN("core.service", T1, D1, true),
                            INST("gw@0.service", "gw@.service", T1, D1, true),
                            INST("gw@1.service", "gw@.service", T1, NULL, false) };
        ManagedUnit m[] = { MANAGED("core.service", "core.service", T1, D1),
                            MANAGED("gw@0.service", "gw@.service", T1, D1),
                            MANAGED("gw@1.service", NULL, T1, NULL) };
        ObservedUnit o[] = { { "core.service", "loaded", "failed" } };

        assert_plan(RUN(d, m, o, no_foreign, "*", 0), "");
        ASSERT_EQ_UINT(plan.n_actions, 0);
        ASSERT_NULL(plan.actions);
}

TEST(changed_env_restarts_only_that_unit) {
        DesiredUnit d[] = { PLAIN("core.service", T1, D1, true),
                            INST("gw@0.service", "gw@.service", T1, D1, true),
                            INST("gw@1.service", "gw@.service", T1, D2, true),
                            INST("gw@2.service", "gw@.service", T1, D1, true) };
        ManagedUnit m[] = { MANAGED("core.service", "core.service", T1, D1),
                            MANAGED("gw@0.service", "gw@.service", T1, D1),
                            MANAGED("gw@1.service", "gw@.service", T1, D1),
                            MANAGED("gw@2.service", "gw@.service", T1, D1) };

        assert_plan(RUN(d, m, no_observed, no_foreign, "*", 0),
                    "write-file gw@.service\n"
                    "write-dropin gw@1.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable gw@1.service\n"
                    "restart gw@1.service\n");
        ASSERT_STREQ(plan.actions[4].reason, "config changed");
        ASSERT_TRUE(plan.actions[1].content == D2);
}

TEST(changed_unit_text_restarts) {
        DesiredUnit d[] = { PLAIN("core.service", T2, D1, true) };
        ManagedUnit m[] = { MANAGED("core.service", "core.service", T1, D1) };

        assert_plan(RUN(d, m, no_observed, no_foreign, "*", 0),
                    "write-file core.service\n"
                    "write-dropin core.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable core.service\n"
                    "restart core.service\n");
        ASSERT_TRUE(plan.actions[0].content == T2);
}

TEST(deferred_restart_writes_but_leaves_a_running_unit_alone) {
        /* A rolling update: the files change, the controller restarts later.
         * A stopped unit starts with its new files at once, as always. */
        DesiredUnit d[] = { PLAIN("up.service", T2, D1, true),
                            PLAIN("down.service", T2, D1, true) };
        ManagedUnit m[] = { MANAGED("up.service", "up.service", T1, D1),
                            MANAGED("down.service", "down.service", T1, D1) };
        ObservedUnit o[] = { { "up.service", "loaded", "active" },
                             { "down.service", "loaded", "inactive" } };

        d[0].defer_restart = d[1].defer_restart = true;
        assert_plan(RUN(d, m, o, no_foreign, "*", 0), "write-file down.service\n"
                                                      "write-file up.service\n"
                                                      "write-dropin down.service.d/50-baton.conf\n"
                                                      "write-dropin up.service.d/50-baton.conf\n"
                                                      "daemon-reload\n"
                                                      "enable down.service\n"
                                                      "enable up.service\n"
                                                      "restart down.service\n");
}

TEST(dropin_dropped_is_removed) {
        DesiredUnit d[] = { PLAIN("core.service", T1, NULL, true) };
        ManagedUnit m[] = { MANAGED("core.service", "core.service", T1, D1) };

        assert_plan(RUN(d, m, no_observed, no_foreign, "*", 0),
                    "remove-dropin core.service.d/50-baton.conf\n"
                    "write-file core.service\n"
                    "daemon-reload\n"
                    "enable core.service\n"
                    "restart core.service\n");
}

TEST(same_hash_but_dropin_appeared_counts_as_change) {
        /* a controller hash that does not cover the drop-in still cannot hide it */
        DesiredUnit d[] = { PLAIN("core.service", T1, D1, true) };
        ManagedUnit m[] = { { "core.service", "core.service", "fixed", false } };

        d[0].config_hash = "fixed";
        assert_plan(RUN(d, m, no_observed, no_foreign, "*", 0),
                    "write-file core.service\n"
                    "write-dropin core.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable core.service\n"
                    "restart core.service\n");
}

TEST(removed_unit_is_stopped_disabled_and_deleted) {
        DesiredUnit d[] = { PLAIN("core.service", T1, D1, true) };
        ManagedUnit m[] = { MANAGED("core.service", "core.service", T1, D1),
                            MANAGED("old.service", "old.service", T2, D1),
                            MANAGED("bare.service", "bare.service", T2, NULL) };

        assert_plan(RUN(d, m, no_observed, no_foreign, "*", 0),
                    "stop bare.service\n"
                    "stop old.service\n"
                    "disable bare.service\n"
                    "disable old.service\n"
                    "remove-dropin old.service.d/50-baton.conf\n"
                    "remove-file bare.service\n"
                    "remove-file old.service\n"
                    "daemon-reload\n");
        ASSERT_STREQ(plan.actions[0].reason, "no longer placed on this host");
}

TEST(template_removed_only_with_its_last_instance) {
        DesiredUnit d[] = { INST("gw@0.service", "gw@.service", T1, D1, true) };
        ManagedUnit m[] = { MANAGED("gw@0.service", "gw@.service", T1, D1),
                            MANAGED("gw@1.service", "gw@.service", T1, D1),
                            MANAGED("gw@2.service", "gw@.service", T1, NULL) };

        assert_plan(RUN(d, m, no_observed, no_foreign, "*", 0),
                    "stop gw@1.service\n"
                    "stop gw@2.service\n"
                    "disable gw@1.service\n"
                    "disable gw@2.service\n"
                    "remove-dropin gw@1.service.d/50-baton.conf\n"
                    "daemon-reload\n");

        /* and with the last one gone, the template goes, once */
        assert_plan(run(NONE_D, m, 3, NONE_O, NONE_F, "*", 0),
                    "stop gw@0.service\n"
                    "stop gw@1.service\n"
                    "stop gw@2.service\n"
                    "disable gw@0.service\n"
                    "disable gw@1.service\n"
                    "disable gw@2.service\n"
                    "remove-dropin gw@0.service.d/50-baton.conf\n"
                    "remove-dropin gw@1.service.d/50-baton.conf\n"
                    "remove-file gw@.service\n"
                    "daemon-reload\n");
        ASSERT_STREQ(plan.actions[8].unit, "gw@.service");
        ASSERT_STREQ(plan.actions[8].reason, "no instance uses the template any more");
}

TEST(template_kept_for_a_new_instance_and_rewritten) {
        /* gw@0 leaves, gw@5 arrives: the file is rewritten, never removed */
        DesiredUnit d[] = { INST("gw@5.service", "gw@.service", T2, NULL, true) };
        ManagedUnit m[] = { MANAGED("gw@0.service", "gw@.service", T1, NULL) };

        assert_plan(RUN(d, m, no_observed, no_foreign, "*", 0), "stop gw@0.service\n"
                                                                "disable gw@0.service\n"
                                                                "write-file gw@.service\n"
                                                                "daemon-reload\n"
                                                                "enable gw@5.service\n"
                                                                "start gw@5.service\n");
}

TEST(template_kept_for_a_managed_instance_that_is_refused) {
        /* gw@9 is no longer allowed, so it stays installed, and so does its template */
        ManagedUnit m[] = { MANAGED("gw@0.service", "gw@.service", T1, NULL),
                            MANAGED("gw@9.service", "gw@.service", T1, NULL) };

        assert_plan(run(NONE_D, m, 2, NONE_O, NONE_F, "gw@[0-5].service gw@.service", 0),
                    "refuse gw@9.service: no longer allowed by manage_units; leaving it installed\n"
                    "stop gw@0.service\n"
                    "disable gw@0.service\n");
}

TEST(not_allowed_is_refused_and_nothing_else) {
        DesiredUnit d[] = { PLAIN("core.service", T1, D1, true),
                            PLAIN("sshd.service", T1, D1, true),
                            INST("gw@7.service", "gw@.service", T1, D1, true) };
        ManagedUnit m[] = { MANAGED("gw@7.service", "gw@.service", T2, D1) };

        assert_plan(RUN(d, m, no_observed, no_foreign, "core.service gw@[0-5].service", 0),
                    "refuse gw@7.service: not allowed by manage_units\n"
                    "refuse sshd.service: not allowed by manage_units\n"
                    "write-file core.service\n"
                    "write-dropin core.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable core.service\n"
                    "start core.service\n");
        ASSERT_EQ_UINT(plan.n_refused, 2);
        ASSERT_TRUE(plan_refuses(&plan, "sshd.service"));
        ASSERT_TRUE(plan_refuses(&plan, "gw@7.service"));
        ASSERT_FALSE(plan_refuses(&plan, "core.service"));
        ASSERT_FALSE(plan_refuses(&plan, NULL));

        /* an empty allow-list allows nothing */
        assert_plan(run(d, 1, NONE_M, NONE_O, NONE_F, "", 0),
                    "refuse core.service: not allowed by manage_units\n");
        assert_plan(run(d, 1, NONE_M, NONE_O, NONE_F, NULL, 0),
                    "refuse core.service: not allowed by manage_units\n");
}

TEST(template_must_be_allowed_too) {
        /* "foo@1.service" allows that instance, not the template every foo@ instance runs */
        DesiredUnit d[] = { INST("foo@1.service", "foo@.service", T1, D1, true),
                            INST("gw@1.service", "gw@.service", T1, D1, true) };
        ManagedUnit m[] = { MANAGED("bar@1.service", "bar@.service", T1, NULL),
                            MANAGED("au@1.service", "au@.service", T1, NULL) };

        assert_plan(RUN(d, m, no_observed, no_foreign,
                        "foo@1.service bar@1.service gw@*.service au@*", 0),
                    "refuse bar@1.service: its template bar@.service is not allowed by "
                    "manage_units; leaving it installed\n"
                    "refuse foo@1.service: its template foo@.service is not allowed by "
                    "manage_units (writing it would change every instance); refusing to write "
                    "it\n"
                    "stop au@1.service\n"
                    "disable au@1.service\n"
                    "remove-file au@.service\n"
                    "write-file gw@.service\n"
                    "write-dropin gw@1.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable gw@1.service\n"
                    "start gw@1.service\n");
        ASSERT_EQ_UINT(plan.n_refused, 2);

        /* a glob may name the template alone */
        assert_plan(run(d, 1, NONE_M, NONE_O, NONE_F, "foo@1.service foo@.service", 0),
                    "write-file foo@.service\n"
                    "write-dropin foo@1.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable foo@1.service\n"
                    "start foo@1.service\n");
}

TEST(units_systemd_has_from_elsewhere_are_refused) {
        /* a vendor unit, a vendor template, a runtime unit: not baton's, whether
         * new, desired and recorded (taken over before), or only recorded */
        DesiredUnit d[] = { PLAIN("vendor.service", T1, NULL, true),
                            INST("vt@1.service", "vt@.service", T1, NULL, true),
                            PLAIN("took.service", T1, NULL, true),
                            PLAIN("fresh.service", T1, NULL, true) };
        ManagedUnit m[] = { MANAGED("took.service", "took.service", T1, NULL),
                            MANAGED("run.service", "run.service", T1, NULL) };
        ObservedUnit o[] = {
                { "vendor.service", "loaded", "active", "/usr/lib/systemd/system/vendor.service" },
                { "vt@1.service", "loaded", "inactive", "/usr/lib/systemd/system/vt@.service" },
                { "took.service", "loaded", "active", "/lib/systemd/system/took.service" },
                { "run.service", "loaded", "active", "/run/systemd/system/run.service" },
                { "fresh.service", "not-found", "inactive", NULL },
        };

        assert_plan(RUN(d, m, o, no_foreign, "*", CONVERGE_START_INACTIVE),
                    "refuse run.service: run.service is also provided by "
                    "/run/systemd/system/run.service, outside baton's unit directory; leaving it "
                    "alone\n"
                    "refuse took.service: took.service is also provided by "
                    "/lib/systemd/system/took.service, outside baton's unit directory; refusing "
                    "to take it over\n"
                    "refuse vendor.service: vendor.service is also provided by "
                    "/usr/lib/systemd/system/vendor.service, outside baton's unit directory; "
                    "refusing to take it over\n"
                    "refuse vt@1.service: vt@1.service is also provided by "
                    "/usr/lib/systemd/system/vt@.service, outside baton's unit directory; "
                    "refusing to take it over\n"
                    "write-file fresh.service\n"
                    "daemon-reload\n"
                    "enable fresh.service\n"
                    "start fresh.service\n");
        ASSERT_TRUE(plan_refuses(&plan, "run.service"));
        ASSERT_TRUE(plan_refuses(&plan, "took.service"));
}

TEST(pending_records_count_as_changed) {
        /* recorded before acting, never confirmed: files and process are unknown */
        DesiredUnit d[] = { PLAIN("up.service", T1, D1, true),
                            PLAIN("off.service", T1, NULL, false),
                            PLAIN("done.service", T1, NULL, true) };
        ManagedUnit m[] = { MANAGED("up.service", NULL, T1, D1),
                            MANAGED("off.service", NULL, T1, NULL),
                            MANAGED("done.service", NULL, T1, NULL),
                            MANAGED("gone.service", NULL, T1, D1) };
        ObservedUnit o[] = { { "up.service", "loaded", "active" },
                             { "off.service", "loaded", "active" },
                             { "done.service", "loaded", "active" },
                             { "gone.service", "not-found", "inactive" } };

        m[0].pending = m[1].pending = m[3].pending = true;
        assert_plan(RUN(d, m, o, no_foreign, "*", 0), "stop gone.service\n"
                                                      "stop off.service\n"
                                                      "disable gone.service\n"
                                                      "disable off.service\n"
                                                      "remove-dropin gone.service.d/50-baton.conf\n"
                                                      "remove-file gone.service\n"
                                                      "write-file off.service\n"
                                                      "write-file up.service\n"
                                                      "write-dropin up.service.d/50-baton.conf\n"
                                                      "daemon-reload\n"
                                                      "enable up.service\n"
                                                      "restart up.service\n");
        ASSERT_STREQ(plan.actions[plan.n_actions - 1].reason, "finishing an interrupted change");

        /* a deferred restart stays deferred: the controller rolls it */
        d[0].defer_restart = true;
        assert_plan(run(d, 1, m, 1, o, 1, NONE_F, "*", 0),
                    "write-file up.service\n"
                    "write-dropin up.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable up.service\n");
}

TEST(foreign_files_are_refused) {
        DesiredUnit d[] = { PLAIN("core.service", T1, D1, true),
                            INST("gw@0.service", "gw@.service", T1, D1, true),
                            INST("gw@1.service", "gw@.service", T1, D1, true),
                            INST("au@0.service", "au@.service", T1, D1, true),
                            INST("au@1.service", "au@.service", T1, D1, true),
                            PLAIN("ok.service", T1, NULL, false) };
        const char *foreign[] = { "core.service", "gw@.service", "au@1.service.d/50-baton.conf",
                                  "ok.service.d/50-baton.conf", "unrelated.service" };

        assert_plan(
                RUN(d, no_managed, no_observed, foreign, "*", 0),
                "refuse au@1.service: au@1.service.d/50-baton.conf exists and is not managed by "
                "baton; refusing to overwrite\n"
                "refuse core.service: core.service exists and is not managed by baton; "
                "refusing to overwrite\n"
                "refuse gw@0.service: gw@.service exists and is not managed by baton; refusing "
                "to overwrite\n"
                "refuse gw@1.service: gw@.service exists and is not managed by baton; refusing "
                "to overwrite\n"
                "refuse ok.service: ok.service.d/50-baton.conf exists and is not managed by "
                "baton; refusing to overwrite\n"
                "write-file au@.service\n"
                "write-dropin au@0.service.d/50-baton.conf\n"
                "daemon-reload\n"
                "enable au@0.service\n"
                "start au@0.service\n");
}

TEST(foreign_file_of_a_removed_unit_is_left_alone) {
        ManagedUnit m[] = { MANAGED("core.service", "core.service", T1, D1),
                            MANAGED("db.service", "db.service", T1, D1) };
        const char *foreign[] = { "core.service" };

        assert_plan(run(NONE_D, m, 2, NONE_O, foreign, 1, "*", 0),
                    "refuse core.service: core.service exists and is not managed by baton; "
                    "refusing to remove\n"
                    "stop db.service\n"
                    "disable db.service\n"
                    "remove-dropin db.service.d/50-baton.conf\n"
                    "remove-file db.service\n"
                    "daemon-reload\n");
}

TEST(invalid_names_are_refused) {
        DesiredUnit d[] = { PLAIN("../etc/passwd.service", T1, NULL, true),
                            PLAIN("a b.service", T1, NULL, true),
                            PLAIN("x.nope", T1, NULL, true),
                            PLAIN("gw@.service", T1, NULL, true),
                            PLAIN(".hidden.service", T1, NULL, true),
                            PLAIN(NULL, T1, NULL, true),
                            PLAIN("", T1, NULL, true),
                            PLAIN("good.service", T1, NULL, false) };

        assert_plan(RUN(d, no_managed, no_observed, no_foreign, "*", 0),
                    "refuse : invalid unit name\n"
                    "refuse ../etc/passwd.service: invalid unit name\n"
                    "refuse .hidden.service: invalid unit name\n"
                    "refuse a b.service: invalid unit name\n"
                    "refuse gw@.service: invalid unit name\n"
                    "refuse x.nope: invalid unit name\n"
                    "write-file good.service\n"
                    "daemon-reload\n");
        ASSERT_EQ_UINT(plan.n_refused, 6);
}

TEST(template_name_must_match) {
        DesiredUnit d[] = { INST("gw@0.service", NULL, T1, NULL, true),
                            INST("gw@1.service", "other@.service", T1, NULL, true),
                            INST("gw@2.service", "gw@.socket", T1, NULL, true),
                            INST("core.service", "core@.service", T1, NULL, true) };

        assert_plan(RUN(d, no_managed, no_observed, no_foreign, "*", 0),
                    "refuse core.service: template name given for a unit that is not an instance\n"
                    "refuse gw@0.service: instance without a template name\n"
                    "refuse gw@1.service: template name does not match the instance (want "
                    "gw@.service)\n"
                    "refuse gw@2.service: template name does not match the instance (want "
                    "gw@.service)\n");
}

TEST(missing_text_and_bad_hash_are_refused) {
        DesiredUnit d[] = { PLAIN("a.service", NULL, NULL, true),
                            PLAIN("b.service", "", NULL, true), PLAIN("c.service", T1, NULL, true),
                            PLAIN("d.service", T1, NULL, true) };

        d[2].config_hash = "has space";
        d[3].config_hash = "ok-hash_1";
        assert_plan(RUN(d, no_managed, no_observed, no_foreign, "*", 0),
                    "refuse a.service: no unit text\n"
                    "refuse b.service: no unit text\n"
                    "refuse c.service: invalid config hash\n"
                    "write-file d.service\n"
                    "daemon-reload\n"
                    "enable d.service\n"
                    "start d.service\n");
}

TEST(duplicates_are_refused) {
        DesiredUnit d[] = { PLAIN("a.service", T1, NULL, true), PLAIN("b.service", T1, NULL, true),
                            PLAIN("a.service", T1, NULL, false),
                            PLAIN("a.service", T2, NULL, true) };
        ManagedUnit m[] = { MANAGED("a.service", "a.service", T2, NULL) };

        /* which entry is right is not the agent's call: all of them are refused, once */
        assert_plan(RUN(d, m, no_observed, no_foreign, "*", 0),
                    "refuse a.service: listed more than once in the placement\n"
                    "write-file b.service\n"
                    "daemon-reload\n"
                    "enable b.service\n"
                    "start b.service\n");
        ASSERT_EQ_UINT(plan.n_refused, 1);
}

TEST(instances_disagreeing_on_the_template_are_refused) {
        DesiredUnit d[] = { INST("gw@0.service", "gw@.service", T1, NULL, true),
                            INST("gw@1.service", "gw@.service", T2, NULL, true),
                            INST("gw@2.service", "gw@.service", T1, NULL, true),
                            INST("au@0.service", "au@.service", T2, NULL, true) };

        assert_plan(RUN(d, no_managed, no_observed, no_foreign, "*", 0),
                    "refuse gw@0.service: instances of gw@.service disagree on its text\n"
                    "refuse gw@1.service: instances of gw@.service disagree on its text\n"
                    "refuse gw@2.service: instances of gw@.service disagree on its text\n"
                    "write-file au@.service\n"
                    "daemon-reload\n"
                    "enable au@0.service\n"
                    "start au@0.service\n");

        /* a refused instance does not take part in the vote */
        d[1].name = "gw@9.service";
        d[1].template_name = "gw@.service";
        assert_plan(
                RUN(d, no_managed, no_observed, no_foreign, "gw@[0-5].service gw@.service au@*", 0),
                "refuse gw@9.service: not allowed by manage_units\n"
                "write-file au@.service\n"
                "write-file gw@.service\n"
                "daemon-reload\n"
                "enable au@0.service\n"
                "enable gw@0.service\n"
                "enable gw@2.service\n"
                "start au@0.service\n"
                "start gw@0.service\n"
                "start gw@2.service\n");
}

TEST(not_running) {
        DesiredUnit d[] = { PLAIN("new.service", T1, NULL, false),
                            PLAIN("up.service", T1, NULL, false),
                            PLAIN("was.service", T2, NULL, false),
                            PLAIN("back.service", T2, NULL, true) };
        ManagedUnit m[] = { MANAGED("was.service", "was.service", T1, NULL),
                            MANAGED("back.service", "back.service", T1, NULL) };
        ObservedUnit o[] = { { "up.service", "loaded", "active" },
                             { "new.service", "not-found", "inactive" } };

        /* new and stopped: installed only, stopped if systemd runs it from elsewhere;
         * changed and stopped: stop + disable; changed and running again: enable + restart */
        assert_plan(RUN(d, m, o, no_foreign, "*", 0), "stop up.service\n"
                                                      "stop was.service\n"
                                                      "disable was.service\n"
                                                      "write-file back.service\n"
                                                      "write-file new.service\n"
                                                      "write-file up.service\n"
                                                      "write-file was.service\n"
                                                      "daemon-reload\n"
                                                      "enable back.service\n"
                                                      "restart back.service\n");
}

TEST(new_unit_that_already_runs_is_restarted) {
        /* systemd runs it from another directory: only a restart loads our files */
        DesiredUnit d[] = { PLAIN("vendor.service", T1, NULL, true),
                            PLAIN("fresh.service", T1, NULL, true) };
        ObservedUnit o[] = { { "vendor.service", "loaded", "active" },
                             { "fresh.service", "loaded", "inactive" } };

        assert_plan(RUN(d, no_managed, o, no_foreign, "*", 0), "write-file fresh.service\n"
                                                               "write-file vendor.service\n"
                                                               "daemon-reload\n"
                                                               "enable fresh.service\n"
                                                               "enable vendor.service\n"
                                                               "start fresh.service\n"
                                                               "restart vendor.service\n");
        ASSERT_STREQ(plan.actions[6].reason, "new unit");
}

TEST(start_inactive_flag) {
        DesiredUnit d[] = { PLAIN("active.service", T1, NULL, true),
                            PLAIN("activating.service", T1, NULL, true),
                            PLAIN("failed.service", T1, NULL, true),
                            PLAIN("inactive.service", T1, NULL, true),
                            PLAIN("unknown.service", T1, NULL, true),
                            PLAIN("stopping.service", T1, NULL, true),
                            PLAIN("off-active.service", T1, NULL, false),
                            PLAIN("off-failed.service", T1, NULL, false) };
        ManagedUnit m[] = { MANAGED("active.service", NULL, T1, NULL),
                            MANAGED("activating.service", NULL, T1, NULL),
                            MANAGED("failed.service", NULL, T1, NULL),
                            MANAGED("inactive.service", NULL, T1, NULL),
                            MANAGED("unknown.service", NULL, T1, NULL),
                            MANAGED("stopping.service", NULL, T1, NULL),
                            MANAGED("off-active.service", NULL, T1, NULL),
                            MANAGED("off-failed.service", NULL, T1, NULL) };
        ObservedUnit o[] = { { "active.service", "loaded", "active" },
                             { "activating.service", "loaded", "activating" },
                             { "failed.service", "loaded", "failed" },
                             { "inactive.service", "loaded", "inactive" },
                             { "stopping.service", "loaded", "deactivating" },
                             { "off-active.service", "loaded", "active" },
                             { "off-failed.service", "loaded", "failed" } };

        /* without the flag an unchanged unit is left alone, whatever its state */
        assert_plan(RUN(d, m, o, no_foreign, "*", 0), "");

        assert_plan(RUN(d, m, o, no_foreign, "*", CONVERGE_START_INACTIVE),
                    "stop off-active.service\n"
                    "disable off-active.service\n"
                    "enable failed.service\n"
                    "enable inactive.service\n"
                    "enable stopping.service\n"
                    "enable unknown.service\n"
                    "start failed.service\n"
                    "start inactive.service\n"
                    "start stopping.service\n"
                    "start unknown.service\n");
        ASSERT_STREQ(plan.actions[2].reason, "should be running");
}

TEST(start_inactive_rewrites_vanished_files) {
        DesiredUnit d[] = { INST("gw@0.service", "gw@.service", T1, D1, true),
                            INST("gw@1.service", "gw@.service", T1, D1, false) };
        ManagedUnit m[] = { MANAGED("gw@0.service", "gw@.service", T1, D1),
                            MANAGED("gw@1.service", "gw@.service", T1, D1) };
        ObservedUnit o[] = { { "gw@0.service", "not-found", "inactive" },
                             { "gw@1.service", "not-found", "inactive" } };

        assert_plan(RUN(d, m, o, no_foreign, "*", 0), "");
        assert_plan(RUN(d, m, o, no_foreign, "*", CONVERGE_START_INACTIVE),
                    "stop gw@1.service\n"
                    "disable gw@1.service\n"
                    "write-file gw@.service\n"
                    "write-dropin gw@0.service.d/50-baton.conf\n"
                    "write-dropin gw@1.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable gw@0.service\n"
                    "restart gw@0.service\n");
        ASSERT_STREQ(plan.actions[2].reason, "unit not found");
}

TEST(full_order_and_single_reload) {
        DesiredUnit d[] = { PLAIN("new.service", T1, D1, true),
                            PLAIN("changed.service", T2, D1, true),
                            INST("gw@0.service", "gw@.service", T1, D2, true),
                            INST("gw@1.service", "gw@.service", T1, D1, true),
                            PLAIN("nope.service", T1, NULL, true),
                            PLAIN("same.service", T1, NULL, true) };
        ManagedUnit m[] = { MANAGED("changed.service", NULL, T1, D1),
                            MANAGED("gw@0.service", NULL, T1, D1),
                            MANAGED("gone.service", NULL, T1, D1),
                            MANAGED("same.service", NULL, T1, NULL) };
        ObservedUnit o[] = { { "same.service", "loaded", "failed" } };

        assert_plan(RUN(d, m, o, no_foreign,
                        "new.service changed.service same.service gone.service gw@*.service",
                        CONVERGE_START_INACTIVE),
                    "refuse nope.service: not allowed by manage_units\n"
                    "stop gone.service\n"
                    "disable gone.service\n"
                    "remove-dropin gone.service.d/50-baton.conf\n"
                    "remove-file gone.service\n"
                    "write-file changed.service\n"
                    "write-file gw@.service\n"
                    "write-file new.service\n"
                    "write-dropin changed.service.d/50-baton.conf\n"
                    "write-dropin gw@0.service.d/50-baton.conf\n"
                    "write-dropin gw@1.service.d/50-baton.conf\n"
                    "write-dropin new.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable changed.service\n"
                    "enable gw@0.service\n"
                    "enable gw@1.service\n"
                    "enable new.service\n"
                    "enable same.service\n"
                    "start gw@1.service\n"
                    "start new.service\n"
                    "start same.service\n"
                    "restart changed.service\n"
                    "restart gw@0.service\n");
}

/* ---- shards files (rule 8) ------------------------------------------------- */

static const char S1[] = "0-3\n";
static const char S2[] = "4-7\n";

TEST(shards_file_written_before_start) {
        DesiredUnit d[] = { INST("gw@0.service", "gw@.service", T1, D1, true),
                            INST("gw@1.service", "gw@.service", T1, D1, false) };

        d[0].shards_text = S1;
        d[1].shards_text = S2;
        assert_plan(RUN(d, no_managed, no_observed, no_foreign, "*", CONVERGE_START_INACTIVE),
                    "write-file gw@.service\n"
                    "write-dropin gw@0.service.d/50-baton.conf\n"
                    "write-dropin gw@1.service.d/50-baton.conf\n"
                    "write-shards gw@0.service\n"
                    "write-shards gw@1.service\n"
                    "daemon-reload\n"
                    "enable gw@0.service\n"
                    "start gw@0.service\n");
        ASSERT_STREQ(plan.actions[3].unit, "gw@0.service");
        ASSERT_TRUE(plan.actions[3].content == S1); /* borrowed */
        ASSERT_STREQ(plan.actions[3].reason, "new shards file");
}

TEST(new_set_of_a_running_unit_is_written_and_reloaded) {
        /* only the set changed: no daemon-reload, no restart */
        DesiredUnit d[] = { INST("gw@0.service", "gw@.service", T1, D1, true),
                            INST("gw@1.service", "gw@.service", T1, D1, true) };
        ManagedUnit m[] = { MANAGED("gw@0.service", "gw@.service", T1, D1),
                            MANAGED("gw@1.service", "gw@.service", T1, D1) };
        ObservedUnit o[] = { { "gw@0.service", "loaded", "active" },
                             { "gw@1.service", "loaded", "reloading" } };

        d[0].shards_text = d[1].shards_text = S2;
        m[0].shards_text = m[1].shards_text = S1;
        assert_plan(RUN(d, m, o, no_foreign, "*", CONVERGE_START_INACTIVE),
                    "write-shards gw@0.service\n"
                    "write-shards gw@1.service\n"
                    "reload gw@0.service\n"
                    "reload gw@1.service\n");
        ASSERT_STREQ(plan.actions[0].reason, "shards changed");
        ASSERT_STREQ(plan.actions[2].reason, "shards changed");
        ASSERT_NULL(plan.actions[2].file_name);
        /* the same without the flag: the set is not the run state */
        assert_plan(RUN(d, m, o, no_foreign, "*", 0), "write-shards gw@0.service\n"
                                                      "write-shards gw@1.service\n"
                                                      "reload gw@0.service\n"
                                                      "reload gw@1.service\n");
}

TEST(same_set_is_left_alone) {
        DesiredUnit d[] = { INST("gw@0.service", "gw@.service", T1, D1, true) };
        ManagedUnit m[] = { MANAGED("gw@0.service", "gw@.service", T1, D1) };
        ObservedUnit o[] = { { "gw@0.service", "loaded", "active" } };
        char copy[] = "0-3\n"; /* equal text, not the same pointer */

        d[0].shards_text = S1;
        m[0].shards_text = copy;
        assert_plan(RUN(d, m, o, no_foreign, "*", CONVERGE_START_INACTIVE), "");
}

TEST(reload_only_for_a_unit_that_runs_on_and_is_not_restarted) {
        /* a: restarted for a config change, it reads the new file at start;
         * b: deferred restart, but it reads its file: reloaded;
         * c: activating, a reload would merge into the start; d: stopped by
         * this plan; e: not running, started now; f: had no file, so what
         * runs does not read one; g: unreadable file, rewritten and reloaded */
        DesiredUnit d[] = {
                PLAIN("a.service", T2, D1, true), PLAIN("b.service", T2, D1, true),
                PLAIN("c.service", T1, D1, true), PLAIN("d.service", T1, D1, false),
                PLAIN("e.service", T1, D1, true), PLAIN("f.service", T2, D1, true),
                PLAIN("g.service", T1, D1, true),
        };
        ManagedUnit m[] = {
                MANAGED("a.service", NULL, T1, D1), MANAGED("b.service", NULL, T1, D1),
                MANAGED("c.service", NULL, T1, D1), MANAGED("d.service", NULL, T1, D1),
                MANAGED("e.service", NULL, T1, D1), MANAGED("f.service", NULL, T1, D1),
                MANAGED("g.service", NULL, T1, D1),
        };
        ObservedUnit o[] = {
                { "a.service", "loaded", "active" },     { "b.service", "loaded", "active" },
                { "c.service", "loaded", "activating" }, { "d.service", "loaded", "active" },
                { "e.service", "loaded", "failed" },     { "f.service", "loaded", "active" },
                { "g.service", "loaded", "active" },
        };

        for (size_t i = 0; i < ELEMENTSOF(d); i++) {
                d[i].shards_text = S2;
                m[i].shards_text = S1;
        }
        d[1].defer_restart = d[5].defer_restart = true;
        m[5].shards_text = NULL;
        m[6].shards_text = "";
        assert_plan(RUN(d, m, o, no_foreign, "*", CONVERGE_START_INACTIVE),
                    "stop d.service\n"
                    "disable d.service\n"
                    "write-file a.service\n"
                    "write-file b.service\n"
                    "write-file f.service\n"
                    "write-dropin a.service.d/50-baton.conf\n"
                    "write-dropin b.service.d/50-baton.conf\n"
                    "write-dropin f.service.d/50-baton.conf\n"
                    "write-shards a.service\n"
                    "write-shards b.service\n"
                    "write-shards c.service\n"
                    "write-shards d.service\n"
                    "write-shards e.service\n"
                    "write-shards f.service\n"
                    "write-shards g.service\n"
                    "daemon-reload\n"
                    "enable a.service\n"
                    "enable b.service\n"
                    "enable e.service\n"
                    "enable f.service\n"
                    "start e.service\n"
                    "restart a.service\n"
                    "reload b.service\n"
                    "reload g.service\n");
}

TEST(removed_unit_loses_its_shards_file) {
        /* gw@1 goes and takes its file along; gw@0 no longer has a set in a
         * file but keeps it, since what runs may still read it */
        DesiredUnit d[] = { INST("gw@0.service", "gw@.service", T1, D1, true) };
        ManagedUnit m[] = { MANAGED("gw@0.service", "gw@.service", T1, D1),
                            MANAGED("gw@1.service", "gw@.service", T1, D1),
                            MANAGED("gw@2.service", "gw@.service", T1, D1) };
        ObservedUnit o[] = { { "gw@0.service", "loaded", "active" } };

        m[0].shards_text = S1;
        m[1].shards_text = "";
        assert_plan(RUN(d, m, o, no_foreign, "*", CONVERGE_START_INACTIVE),
                    "stop gw@1.service\n"
                    "stop gw@2.service\n"
                    "disable gw@1.service\n"
                    "disable gw@2.service\n"
                    "remove-dropin gw@1.service.d/50-baton.conf\n"
                    "remove-dropin gw@2.service.d/50-baton.conf\n"
                    "remove-shards gw@1.service\n"
                    "daemon-reload\n");
        ASSERT_STREQ(plan.actions[6].unit, "gw@1.service");
        ASSERT_NULL(plan.actions[6].content);
        ASSERT_STREQ(plan.actions[6].reason, "no longer placed on this host");

        /* a refused removal leaves the file too */
        assert_plan(run(NONE_D, m, 2, NONE_O, NONE_F, "gw@0.service gw@.service", 0),
                    "refuse gw@1.service: no longer allowed by manage_units; leaving it installed\n"
                    "stop gw@0.service\n"
                    "disable gw@0.service\n"
                    "remove-dropin gw@0.service.d/50-baton.conf\n"
                    "remove-shards gw@0.service\n"
                    "daemon-reload\n");
}

TEST(no_reload_without_file_changes) {
        DesiredUnit d[] = { PLAIN("a.service", T1, NULL, true) };
        ManagedUnit m[] = { MANAGED("a.service", NULL, T1, NULL) };
        ObservedUnit o[] = { { "a.service", "loaded", "inactive" } };

        assert_plan(RUN(d, m, o, no_foreign, "*", CONVERGE_START_INACTIVE), "enable a.service\n"
                                                                            "start a.service\n");
}

TEST(hash_from_the_controller_or_computed) {
        DesiredUnit d[] = { PLAIN("a.service", T1, D1, true), PLAIN("b.service", T1, D1, true) };
        ManagedUnit m[] = { { "a.service", NULL, "ctl-hash-1", true },
                            MANAGED("b.service", NULL, T1, D1) };

        /* a: the controller's hash counts, even when the texts hash elsewise;
         * b: no hash given, config_hash() of the texts is used */
        d[0].config_hash = "ctl-hash-1";
        assert_plan(RUN(d, m, no_observed, no_foreign, "*", 0), "");
        d[0].config_hash = "ctl-hash-2";
        assert_plan(RUN(d, m, no_observed, no_foreign, "*", 0),
                    "write-file a.service\n"
                    "write-dropin a.service.d/50-baton.conf\n"
                    "daemon-reload\n"
                    "enable a.service\n"
                    "restart a.service\n");
}

TEST(bad_managed_records_are_left_alone) {
        ManagedUnit m[] = { { "bad/x.service", NULL, "h", false },
                            { "a.service", "b.service", "h", false },
                            { NULL, NULL, "h", false },
                            { "c.service", NULL, NULL, false } };

        assert_plan(run(NONE_D, m, 4, NONE_O, NONE_F, "*", 0),
                    "refuse : invalid unit name in the agent state; leaving it alone\n"
                    "refuse a.service: agent state records file b.service for it; leaving it "
                    "alone\n"
                    "refuse bad/x.service: invalid unit name in the agent state; leaving it alone\n"
                    "stop c.service\n"
                    "disable c.service\n"
                    "remove-file c.service\n"
                    "daemon-reload\n");
}

TEST(deterministic_whatever_the_input_order) {
        DesiredUnit d[] = { PLAIN("new.service", T1, D1, true),
                            PLAIN("changed.service", T2, D1, true),
                            INST("gw@0.service", "gw@.service", T1, D2, true),
                            INST("gw@1.service", "gw@.service", T1, D1, true),
                            PLAIN("dup.service", T1, NULL, true),
                            PLAIN("dup.service", T2, NULL, true),
                            PLAIN("bad name", T1, NULL, true) };
        ManagedUnit m[] = { MANAGED("changed.service", NULL, T1, D1),
                            MANAGED("gw@0.service", NULL, T1, D1),
                            MANAGED("gw@7.service", NULL, T1, D1),
                            MANAGED("gone.service", NULL, T1, D1) };
        char *first = RUN(d, m, no_observed, no_foreign, "*", 0);
        unsigned seed = 1;

        for (int iter = 0; iter < 200; iter++) {
                char *again;

                for (size_t i = ELEMENTSOF(d) - 1; i > 0; i--) {
                        size_t j = (seed = seed * 1103515245u + 12345u) % (i + 1);
                        DesiredUnit t = d[i];

                        d[i] = d[j];
                        d[j] = t;
                }
                for (size_t i = ELEMENTSOF(m) - 1; i > 0; i--) {
                        size_t j = (seed = seed * 1103515245u + 12345u) % (i + 1);
                        ManagedUnit t = m[i];

                        m[i] = m[j];
                        m[j] = t;
                }
                again = RUN(d, m, no_observed, no_foreign, "*", 0);
                if (strcmp(first, again) != 0)
                        free(first);
                ASSERT_STREQ(again, first);
                free(again);
        }
        free(first);
}

TEST(large_placement) {
        /* a big host: 20000 instances, half already installed with another drop-in */
        enum {
                N = 20000
        };
        DesiredUnit *d = calloc(N, sizeof(DesiredUnit));
        ManagedUnit *m = calloc(N / 2, sizeof(ManagedUnit));
        char(*names)[32] = calloc(N, sizeof(*names));
        size_t count[_ACTION_TYPE_MAX] = { 0 };

        ASSERT_TRUE(d && m && names);
        for (size_t i = 0; i < N; i++) {
                snprintf(names[i], sizeof(names[i]), "gw@%zu.service", i);
                d[i] = (DesiredUnit) INST(names[i], "gw@.service", T1, D1, true);
                if (i % 2 == 0)
                        m[i / 2] = (ManagedUnit) MANAGED(names[i], "gw@.service", T1, D2);
        }
        plan_done(&plan);
        ASSERT_OK(converge_plan(d, N, m, N / 2, NULL, 0, NULL, 0, "gw@*.service", 0, &plan));
        for (size_t i = 0; i < plan.n_actions; i++)
                count[plan.actions[i].type]++;
        ASSERT_EQ_UINT(count[ACTION_WRITE_FILE], 1);
        ASSERT_EQ_UINT(count[ACTION_WRITE_DROPIN], N);
        ASSERT_EQ_UINT(count[ACTION_DAEMON_RELOAD], 1);
        ASSERT_EQ_UINT(count[ACTION_ENABLE], N);
        ASSERT_EQ_UINT(count[ACTION_START], N / 2);
        ASSERT_EQ_UINT(count[ACTION_RESTART], N / 2);
        ASSERT_EQ_UINT(plan.n_actions, 1 + N + 1 + N + N);
        free(d);
        free(m);
        free(names);
}

TEST(empty_input) {
        assert_plan(run(NONE_D, NONE_M, NONE_O, NONE_F, "*", CONVERGE_START_INACTIVE), "");
        ASSERT_EQ_UINT(plan.n_refused, 0);
        plan_done(&plan);
        plan_done(&plan); /* twice is fine */
        plan_done(NULL);
}

TEST(action_type_strings) {
        for (int t = 0; t < _ACTION_TYPE_MAX; t++) {
                const char *s = action_type_to_string((ActionType) t);

                ASSERT_NOT_NULL(s);
                ASSERT_EQ_INT(action_type_from_string(s), t);
        }
        ASSERT_STREQ(action_type_to_string(ACTION_DAEMON_RELOAD), "daemon-reload");
        ASSERT_STREQ(action_type_to_string(ACTION_WRITE_SHARDS), "write-shards");
        ASSERT_STREQ(action_type_to_string(ACTION_REMOVE_SHARDS), "remove-shards");
        ASSERT_STREQ(action_type_to_string(ACTION_RELOAD), "reload");
        /* the order of actions in a plan */
        ASSERT_LT_INT(ACTION_REMOVE_FILE, ACTION_REMOVE_SHARDS);
        ASSERT_LT_INT(ACTION_REMOVE_SHARDS, ACTION_WRITE_FILE);
        ASSERT_LT_INT(ACTION_WRITE_DROPIN, ACTION_WRITE_SHARDS);
        ASSERT_LT_INT(ACTION_WRITE_SHARDS, ACTION_DAEMON_RELOAD);
        ASSERT_LT_INT(ACTION_RESTART, ACTION_RELOAD);
        ASSERT_NULL(action_type_to_string(_ACTION_TYPE_MAX));
        ASSERT_NULL(action_type_to_string(_ACTION_TYPE_INVALID));
        ASSERT_EQ_INT(action_type_from_string("reboot"), -EINVAL);
        ASSERT_EQ_INT(action_type_from_string(NULL), -EINVAL);
}

TEST(placement_ordering) {
        ASSERT_EQ_INT(placement_order(1, 5, 1, 5), 0);
        ASSERT_LT_INT(placement_order(1, 5, 1, 6), 0);
        ASSERT_GT_INT(placement_order(1, 6, 1, 5), 0);
        /* a higher epoch wins over any generation */
        ASSERT_GT_INT(placement_order(2, 0, 1, UINT64_MAX), 0);
        ASSERT_LT_INT(placement_order(1, UINT64_MAX, 2, 0), 0);
        ASSERT_LT_INT(placement_order(0, 0, UINT64_MAX, UINT64_MAX), 0);
        ASSERT_GT_INT(placement_order(UINT64_MAX, 1, UINT64_MAX, 0), 0);
}

TEST(config_hash_is_stable) {
        char a[17], b[17];

        /* persisted: these values must never change */
        ASSERT_OK(config_hash("", NULL, a));
        ASSERT_STREQ(a, "af63bd4c8601b7df");
        ASSERT_OK(config_hash("a", "b", a));
        ASSERT_STREQ(a, "e5d29919042666b2");
        ASSERT_OK(config_hash("[Service]\nExecStart=/bin/true\n", "", a));
        ASSERT_STREQ(a, "f7e366f5a9659315");

        /* the separator keeps the texts apart */
        config_hash("ab", "", a);
        config_hash("a", "b", b);
        ASSERT_TRUE(strcmp(a, b) != 0);
        config_hash("", "ab", b);
        ASSERT_TRUE(strcmp(a, b) != 0);
        /* NULL is "" */
        config_hash(NULL, NULL, a);
        config_hash("", "", b);
        ASSERT_STREQ(a, b);
        ASSERT_TRUE(config_hash_is_valid(a));
}

TEST(config_hash_validity) {
        char long_hash[CONFIG_HASH_MAX + 2];

        ASSERT_TRUE(config_hash_is_valid("0123abcdef"));
        ASSERT_TRUE(config_hash_is_valid("sha256:AbC+/=_-."));
        ASSERT_FALSE(config_hash_is_valid(""));
        ASSERT_FALSE(config_hash_is_valid(NULL));
        ASSERT_FALSE(config_hash_is_valid("a b"));
        ASSERT_FALSE(config_hash_is_valid("a\n"));
        ASSERT_FALSE(config_hash_is_valid("h#1"));
        memset(long_hash, 'a', sizeof(long_hash) - 1);
        long_hash[sizeof(long_hash) - 1] = '\0';
        ASSERT_FALSE(config_hash_is_valid(long_hash));
        long_hash[CONFIG_HASH_MAX] = '\0';
        ASSERT_TRUE(config_hash_is_valid(long_hash));
}

TEST(file_names) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *e = NULL, *s = NULL;
        char *untouched = (char *) "x";

        ASSERT_OK(converge_unit_file_name("core.service", &a));
        ASSERT_STREQ(a, "core.service");
        ASSERT_OK(converge_unit_file_name("gw@3.service", &b));
        ASSERT_STREQ(b, "gw@.service");
        ASSERT_OK(converge_unit_file_name("gw@a\\x2db.socket", &c));
        ASSERT_STREQ(c, "gw@.socket");
        ASSERT_OK(converge_dropin_file_name("gw@3.service", &e));
        ASSERT_STREQ(e, "gw@3.service.d/50-baton.conf");
        ASSERT_OK(converge_shards_file_name("gw@3.service", &s));
        ASSERT_STREQ(s, "gw@3.service");

        ASSERT_ERR(converge_unit_file_name("gw@.service", &untouched), -EINVAL);
        ASSERT_ERR(converge_unit_file_name("../x.service", &untouched), -EINVAL);
        ASSERT_ERR(converge_unit_file_name(NULL, &untouched), -EINVAL);
        ASSERT_ERR(converge_dropin_file_name("gw@.service", &untouched), -EINVAL);
        ASSERT_ERR(converge_dropin_file_name("x/y.service", &untouched), -EINVAL);
        ASSERT_ERR(converge_shards_file_name("../x.service", &untouched), -EINVAL);
        ASSERT_ERR(converge_shards_file_name("gw@.service", &untouched), -EINVAL);
        ASSERT_STREQ(untouched, "x");
}

/* ---- the property test ---------------------------------------------------------------- */

#define N_POOL 11
#define MAX_FILES 32
#define MAX_DESIRED (N_POOL + 8)

static const char *const pool[N_POOL] = {
        "a.service",    "b.service",    "c.service",    "d.service",
        "gw@0.service", "gw@1.service", "gw@2.service", "gw@3.service",
        "au@0.service", "au@1.service", "au@2.service",
};
static const char *const texts[] = { T1, T2, "[Service]\nExecStart=/bin/three\n" };
static const char *const dropins[] = { NULL, D1, D2 };
static const char *const glob_pool[] = {
        "*",
        "*.service",
        "a.service b.service gw@*.service au@*.service",
        "[a-c].service gw@[0-2].service gw@.service au@*.service",
        "[a-c].service gw@[0-2].service au@*.service",
        "a.service gw@1.service gw@.service",
        "a.service gw@1.service",
        "d.service au@[12].service au@.service",
        "",
};
static const char *const bad_names[] = { "bad/x.service", "gw@.service", "", "x.nope", NULL };
static const char *const states[] = { "active",       "inactive",  "failed", "activating",
                                      "deactivating", "reloading", NULL };
/* shards files: "" stands for one that cannot be read */
static const char *const shard_texts[] = { NULL, "0-3\n", "4-7\n", "0-7\n" };

enum {
        ABSENT,
        BATON,
        FOREIGN
};

static char *file_names[MAX_FILES];
static size_t n_files;
static size_t ufile[N_POOL], udropin[N_POOL];

static size_t file_index(const char *name) {
        for (size_t i = 0; i < n_files; i++)
                if (streq(file_names[i], name))
                        return i;
        if (n_files >= MAX_FILES)
                abort();
        file_names[n_files] = strdup(name);
        if (!file_names[n_files])
                abort();
        return n_files++;
}

static void pool_init(void) {
        if (n_files > 0)
                return;
        for (size_t u = 0; u < N_POOL; u++) {
                char *f = NULL, *d = NULL;

                if (converge_unit_file_name(pool[u], &f) < 0 ||
                    converge_dropin_file_name(pool[u], &d) < 0)
                        abort();
                ufile[u] = file_index(f);
                udropin[u] = file_index(d);
                free(f);
                free(d);
        }
}

static ssize_t pool_index(const char *name) {
        for (size_t u = 0; u < N_POOL; u++)
                if (streq_ptr(pool[u], name))
                        return (ssize_t) u;
        return -1;
}

static bool is_instance(size_t u) {
        return strchr(pool[u], '@') != NULL;
}

/* What a host looks like: files in the unit directory, the agent's records,
 * and systemd's view of each unit. */
typedef struct World {
        int owner[MAX_FILES];
        const char *content[MAX_FILES];
        bool managed[N_POOL];
        bool pending[N_POOL];   /* recorded before acting, never confirmed */
        bool elsewhere[N_POOL]; /* systemd also has it from another directory */
        char hash[N_POOL][CONFIG_HASH_MAX + 1];
        bool has_dropin[N_POOL];
        bool enabled[N_POOL];
        const char *active[N_POOL];                 /* NULL: systemd does not know it */
        char runs[N_POOL][CONFIG_HASH_HEX_LEN + 1]; /* config of the running process */
        const char *shards[N_POOL];                 /* its shards file, NULL: none */
        const char *knows[N_POOL]; /* the shards file as its process last read it */
        bool started[N_POOL];      /* started or restarted by the plan */
} World;

typedef struct Input {
        DesiredUnit desired[MAX_DESIRED];
        char dhash[MAX_DESIRED][CONFIG_HASH_HEX_LEN + 1];
        size_t n_desired;
        ManagedUnit managed[N_POOL];
        size_t n_managed;
        ObservedUnit observed[N_POOL];
        size_t n_observed;
        const char *foreign[MAX_FILES];
        size_t n_foreign;
        const char *globs;
        unsigned flags;
} Input;

static uint64_t rs;

static uint32_t rnd(uint32_t n) {
        uint64_t z = (rs += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return (uint32_t) ((z ^ (z >> 31)) % n);
}

static bool is_unit_file(size_t f) {
        for (size_t u = 0; u < N_POOL; u++)
                if (ufile[u] == f)
                        return true;
        return false;
}

static bool is_up(const char *state) {
        return state &&
               (streq(state, "active") || streq(state, "activating") || streq(state, "reloading"));
}

static void world_generate(World *w, Input *in) {
        const char *tt[2], *dtt[2]; /* template texts, installed and desired: gw, au */
        const char *mt[N_POOL], *md[N_POOL];
        bool corrupt;

        *w = (World){ 0 };
        *in = (Input){ .globs = glob_pool[rnd(ELEMENTSOF(glob_pool))],
                       .flags = rnd(2) ? CONVERGE_START_INACTIVE : 0 };
        corrupt = in->flags && rnd(3) == 0;

        for (int t = 0; t < 2; t++) {
                tt[t] = texts[rnd(ELEMENTSOF(texts))];
                dtt[t] = rnd(10) < 7 ? tt[t] : texts[rnd(ELEMENTSOF(texts))];
        }

        for (size_t u = 0; u < N_POOL; u++) {
                int tmpl = strncmp(pool[u], "gw@", 3) == 0 ? 0 : 1;

                mt[u] = is_instance(u) ? tt[tmpl] : texts[rnd(ELEMENTSOF(texts))];
                md[u] = dropins[rnd(ELEMENTSOF(dropins))];
                w->managed[u] = rnd(2);
                w->elsewhere[u] = rnd(15) == 0;
                w->active[u] = states[rnd(ELEMENTSOF(states))];
                /* up but not ours: systemd runs it from another directory */
                strcpy(w->runs[u], "elsewhere");
                if (!w->managed[u])
                        continue;
                w->owner[ufile[u]] = BATON;
                w->content[ufile[u]] = mt[u];
                if (md[u]) {
                        w->owner[udropin[u]] = BATON;
                        w->content[udropin[u]] = md[u];
                }
                config_hash(mt[u], md[u], w->hash[u]);
                strcpy(w->runs[u], w->hash[u]);
                w->shards[u] = rnd(20) == 0 ? "" : shard_texts[rnd(ELEMENTSOF(shard_texts))];
                if (is_up(w->active[u]))
                        w->knows[u] = w->shards[u];
                w->has_dropin[u] = md[u] != NULL;
                w->enabled[u] = rnd(2);
                /* an apply interrupted after the record: what runs is anyone's guess */
                if (rnd(10) == 0) {
                        w->pending[u] = true;
                        strcpy(w->runs[u], "unknown");
                }
        }

        for (size_t f = 0; f < n_files; f++) {
                if (w->owner[f] == ABSENT && rnd(12) == 0) {
                        w->owner[f] = FOREIGN;
                        w->content[f] = "foreign";
                } else if (w->owner[f] == BATON && rnd(30) == 0) {
                        w->owner[f] = FOREIGN; /* an operator took it over */
                        w->content[f] = "foreign";
                } else if (w->owner[f] == BATON && corrupt && is_unit_file(f) && rnd(6) == 0) {
                        /* someone deleted it; systemd then says "not-found" (a lost
                         * drop-in would go unnoticed: the core is not told of it) */
                        w->owner[f] = ABSENT;
                        w->content[f] = NULL;
                }
        }

        for (size_t u = 0; u < N_POOL; u++) {
                int tmpl = strncmp(pool[u], "gw@", 3) == 0 ? 0 : 1;
                DesiredUnit *d;

                if (rnd(10) >= 6)
                        continue;
                d = &in->desired[in->n_desired];
                *d = (DesiredUnit){ .name = pool[u], .running = rnd(4) != 0 };
                d->shards_text =
                        rnd(3) == 0 ? w->shards[u] : shard_texts[rnd(ELEMENTSOF(shard_texts))];
                if (w->managed[u] && rnd(2)) {
                        d->unit_text = is_instance(u) ? dtt[tmpl] : mt[u];
                        d->dropin_text = md[u];
                } else {
                        d->unit_text = is_instance(u) ? dtt[tmpl] : texts[rnd(ELEMENTSOF(texts))];
                        d->dropin_text = dropins[rnd(ELEMENTSOF(dropins))];
                }
                if (is_instance(u)) {
                        d->template_name = file_names[ufile[u]];
                        if (rnd(15) == 0)
                                d->unit_text = texts[rnd(ELEMENTSOF(texts))];
                }
                if (rnd(3) != 0) {
                        config_hash(d->unit_text, d->dropin_text, in->dhash[in->n_desired]);
                        d->config_hash = in->dhash[in->n_desired];
                }
                if (rnd(40) == 0)
                        d->config_hash = "bad hash";
                if (rnd(40) == 0)
                        d->unit_text = NULL;
                if (is_instance(u) && rnd(40) == 0)
                        d->template_name = NULL;
                in->n_desired++;
        }
        if (in->n_desired > 0 && rnd(10) == 0) {
                in->desired[in->n_desired] = in->desired[rnd((uint32_t) in->n_desired)];
                in->desired[in->n_desired].running = rnd(2);
                in->n_desired++;
        }
        while (rnd(8) == 0 && in->n_desired < MAX_DESIRED)
                in->desired[in->n_desired++] = (DesiredUnit){
                        .name = bad_names[rnd(ELEMENTSOF(bad_names))],
                        .unit_text = T1,
                        .running = true,
                };
        for (size_t i = in->n_desired; i > 1; i--) {
                size_t j = rnd((uint32_t) i);
                DesiredUnit t = in->desired[i - 1];
                char h[CONFIG_HASH_HEX_LEN + 1];

                in->desired[i - 1] = in->desired[j];
                in->desired[j] = t;
                /* keep each hash pointer on its own buffer */
                memcpy(h, in->dhash[i - 1], sizeof(h));
                memcpy(in->dhash[i - 1], in->dhash[j], sizeof(h));
                memcpy(in->dhash[j], h, sizeof(h));
                if (in->desired[i - 1].config_hash == in->dhash[j])
                        in->desired[i - 1].config_hash = in->dhash[i - 1];
                if (in->desired[j].config_hash == in->dhash[i - 1])
                        in->desired[j].config_hash = in->dhash[j];
        }
}

/* The converge inputs as the shell would build them from the world. */
static void world_observe(const World *w, Input *in) {
        in->n_managed = in->n_observed = in->n_foreign = 0;
        for (size_t u = 0; u < N_POOL; u++) {
                if (w->managed[u])
                        in->managed[in->n_managed++] = (ManagedUnit){
                                .name = pool[u],
                                .file_name = rnd(2) ? file_names[ufile[u]] : NULL,
                                .config_hash = w->hash[u],
                                .has_dropin = w->has_dropin[u],
                                .pending = w->pending[u],
                                .shards_text = w->shards[u],
                        };
                /* the shell loads every managed unit, so one whose file is gone
                 * shows up as "not-found" even if systemd had not loaded it */
                if (w->active[u] || w->elsewhere[u] ||
                    (w->managed[u] && w->owner[ufile[u]] == ABSENT))
                        in->observed[in->n_observed++] = (ObservedUnit){
                                .name = pool[u],
                                .load_state = w->owner[ufile[u]] != ABSENT || w->elsewhere[u]
                                                      ? "loaded"
                                                      : "not-found",
                                .active_state = w->active[u] ? w->active[u] : "inactive",
                                .origin = w->elsewhere[u] ? "/usr/lib/systemd/system" : NULL,
                        };
        }
        for (size_t f = 0; f < n_files; f++)
                if (w->owner[f] == FOREIGN)
                        in->foreign[in->n_foreign++] = file_names[f];
}

static int desired_count(const Input *in, const char *name) {
        int n = 0;

        for (size_t i = 0; i < in->n_desired; i++)
                if (streq_ptr(in->desired[i].name, name))
                        n++;
        return n;
}

static const DesiredUnit *desired_find(const Input *in, size_t u) {
        for (size_t i = 0; i < in->n_desired; i++)
                if (streq_ptr(in->desired[i].name, pool[u]))
                        return &in->desired[i];
        return NULL;
}

/* Whether rule 1 must accept the desired entry of pool unit u. */
static bool desired_acceptable(const World *w, const Input *in, size_t u) {
        const DesiredUnit *d = desired_find(in, u);

        if (!d || desired_count(in, pool[u]) != 1)
                return false;
        if (isempty(d->unit_text) || (d->config_hash && !config_hash_is_valid(d->config_hash)))
                return false;
        if (is_instance(u) && !d->template_name)
                return false;
        if (!unit_name_matches_globs(pool[u], in->globs))
                return false;
        if (is_instance(u) && !unit_name_matches_globs(file_names[ufile[u]], in->globs))
                return false;
        if (w->elsewhere[u])
                return false;
        if (w->owner[ufile[u]] == FOREIGN || w->owner[udropin[u]] == FOREIGN)
                return false;
        if (is_instance(u))
                for (size_t v = 0; v < N_POOL; v++) {
                        const DesiredUnit *e = desired_find(in, v);

                        if (v == u || !e || ufile[v] != ufile[u] ||
                            desired_count(in, pool[v]) != 1 || isempty(e->unit_text) ||
                            !e->template_name ||
                            (e->config_hash && !config_hash_is_valid(e->config_hash)) ||
                            !unit_name_matches_globs(pool[v], in->globs))
                                continue;
                        if (!streq(e->unit_text, d->unit_text))
                                return false;
                }
        return true;
}

static bool refused(const Plan *p, const char *name) {
        return plan_refuses(p, strempty(name));
}

static bool in_scope(const Input *in, const World *before, const char *unit) {
        ssize_t u = pool_index(unit);

        return u >= 0 && (desired_find(in, (size_t) u) || before->managed[u]);
}

/* Carries out the plan on the world, checking each step as it goes. */
static void apply(World *w, const World *before, const Input *in, const Plan *p) {
        size_t reloads = 0, file_changes = 0;

        ASSERT_LE_UINT(p->n_refused, p->n_actions);
        for (size_t i = 0; i < p->n_actions; i++) {
                const Action *a = &p->actions[i];
                ssize_t u = pool_index(a->unit);
                /* shards files live elsewhere: not in file_names */
                bool shards = a->type == ACTION_WRITE_SHARDS || a->type == ACTION_REMOVE_SHARDS;
                size_t f = a->file_name && !shards ? file_index(a->file_name) : 0;

                /* order: by type, then unit, then file */
                if (i > 0) {
                        const Action *prev = &p->actions[i - 1];

                        ASSERT_LE_INT(prev->type, a->type);
                        if (prev->type == a->type)
                                ASSERT_TRUE(strcmp(strempty(prev->unit), strempty(a->unit)) <= 0);
                }
                ASSERT_EQ_INT(a->type == ACTION_REFUSE, i < p->n_refused);
                ASSERT_NOT_NULL(a->reason);

                switch (a->type) {
                case ACTION_REFUSE:
                        continue;
                case ACTION_DAEMON_RELOAD:
                        reloads++;
                        ASSERT_EQ_UINT(file_changes > 0, true);
                        continue;
                case ACTION_WRITE_FILE:
                case ACTION_REMOVE_FILE: {
                        bool owner_ok = false;

                        /* the file belongs to a unit in scope that is not refused */
                        for (size_t v = 0; v < N_POOL; v++)
                                if (ufile[v] == f && in_scope(in, before, pool[v]) &&
                                    !refused(p, pool[v]))
                                        owner_ok = true;
                        ASSERT_TRUE(owner_ok);
                        ASSERT_STREQ(a->unit, a->file_name);
                        break;
                }
                default:
                        /* every other action names a unit in scope, allowed, not refused */
                        ASSERT_TRUE(u >= 0);
                        ASSERT_TRUE(in_scope(in, before, a->unit));
                        ASSERT_FALSE(refused(p, a->unit));
                        ASSERT_TRUE(unit_name_matches_globs(a->unit, in->globs));
                }
                if (a->file_name && !shards)
                        ASSERT_NE_INT(w->owner[f], FOREIGN);
                if (shards)
                        ASSERT_STREQ(a->file_name, a->unit);
                /* units are acted on after the reload that loads their files */
                if (a->type >= ACTION_ENABLE)
                        ASSERT_EQ_UINT(reloads, file_changes > 0 ? 1 : 0);

                switch (a->type) {
                case ACTION_STOP:
                        w->active[u] = "inactive";
                        w->knows[u] = NULL;
                        break;
                case ACTION_WRITE_SHARDS:
                        ASSERT_NOT_NULL(desired_find(in, (size_t) u));
                        ASSERT_FALSE(isempty(a->content));
                        w->shards[u] = a->content;
                        break;
                case ACTION_REMOVE_SHARDS:
                        ASSERT_NULL(desired_find(in, (size_t) u));
                        ASSERT_NULL(a->content);
                        w->shards[u] = NULL;
                        break;
                case ACTION_RELOAD:
                        /* a process that runs on, told of the file just written */
                        ASSERT_TRUE(streq_ptr(before->active[u], "active") ||
                                    streq_ptr(before->active[u], "reloading"));
                        ASSERT_TRUE(is_up(w->active[u]));
                        ASSERT_FALSE(w->started[u]);
                        ASSERT_NOT_NULL(before->shards[u]);
                        ASSERT_FALSE(streq_ptr(before->shards[u], w->shards[u]));
                        w->knows[u] = w->shards[u];
                        break;
                case ACTION_DISABLE:
                        w->enabled[u] = false;
                        break;
                case ACTION_REMOVE_DROPIN:
                case ACTION_REMOVE_FILE:
                        ASSERT_NULL(a->content);
                        w->owner[f] = ABSENT;
                        w->content[f] = NULL;
                        file_changes++;
                        break;
                case ACTION_WRITE_DROPIN:
                case ACTION_WRITE_FILE:
                        ASSERT_TRUE(f == (a->type == ACTION_WRITE_DROPIN ? udropin[u] : f));
                        ASSERT_NOT_NULL(a->content);
                        w->owner[f] = BATON;
                        w->content[f] = a->content;
                        file_changes++;
                        break;
                case ACTION_ENABLE:
                        ASSERT_EQ_INT(w->owner[ufile[u]], BATON);
                        w->enabled[u] = true;
                        break;
                case ACTION_START:
                case ACTION_RESTART:
                        ASSERT_EQ_INT(w->owner[ufile[u]], BATON);
                        /* starting what runs already changes nothing */
                        if (a->type == ACTION_RESTART || !is_up(w->active[u])) {
                                config_hash(w->content[ufile[u]], w->content[udropin[u]],
                                            w->runs[u]);
                                w->knows[u] = w->shards[u];
                                w->started[u] = true;
                        }
                        w->active[u] = "active";
                        break;
                default:
                        ASSERT_TRUE(false);
                }
        }
        ASSERT_EQ_UINT(reloads, file_changes > 0 ? 1 : 0);

        /* the shell's state update, as documented in converge.h */
        for (size_t u = 0; u < N_POOL; u++) {
                const DesiredUnit *d = desired_find(in, u);

                if (refused(p, pool[u]))
                        continue;
                if (d) {
                        w->managed[u] = true;
                        w->pending[u] = false;
                        if (isempty(d->config_hash))
                                config_hash(d->unit_text, d->dropin_text, w->hash[u]);
                        else
                                snprintf(w->hash[u], sizeof(w->hash[u]), "%s", d->config_hash);
                        w->has_dropin[u] = !isempty(d->dropin_text);
                } else
                        w->managed[u] = false;
        }
}

static size_t actions_for(const Plan *p, const char *unit) {
        size_t n = 0;

        for (size_t i = 0; i < p->n_actions; i++)
                if (streq_ptr(p->actions[i].unit, unit))
                        n++;
        return n;
}

/* The same, leaving out rule 8: files and run state without the shard set. */
static size_t unit_actions_for(const Plan *p, const char *unit) {
        size_t n = actions_for(p, unit);

        for (size_t i = 0; i < p->n_actions; i++)
                if (streq_ptr(p->actions[i].unit, unit) &&
                    (p->actions[i].type == ACTION_WRITE_SHARDS ||
                     p->actions[i].type == ACTION_RELOAD))
                        n--;
        return n;
}

/* How often each rule was exercised, so a generator change cannot quietly
 * stop covering one. */
static struct {
        size_t new_units, changed, unchanged, flag_started, flag_stopped, removed, refused,
                removal_refused, template_kept, template_removed, shards_reloaded, shards_at_start,
                shards_removed;
} seen;

static void check_outcome(const World *w, const World *before, const Input *in, const Plan *p) {
        for (size_t u = 0; u < N_POOL; u++) {
                const DesiredUnit *d = desired_find(in, u);
                bool acceptable = d && desired_acceptable(before, in, u);
                bool changed;

                if (!d && !before->managed[u]) {
                        /* neither desired nor managed: untouched */
                        ASSERT_EQ_UINT(actions_for(p, pool[u]), 0);
                        ASSERT_EQ_INT(w->enabled[u], before->enabled[u]);
                        ASSERT_TRUE(streq_ptr(w->active[u], before->active[u]));
                        ASSERT_EQ_INT(w->owner[udropin[u]], before->owner[udropin[u]]);
                        continue;
                }
                if (d) {
                        /* refused exactly when rule 1 says so */
                        ASSERT_EQ_INT(refused(p, pool[u]), !acceptable);
                        if (!acceptable) {
                                seen.refused++;
                                ASSERT_EQ_UINT(actions_for(p, pool[u]), 1);
                                continue;
                        }

                        ASSERT_EQ_INT(w->owner[ufile[u]], BATON);
                        ASSERT_TRUE(w->content[ufile[u]] == d->unit_text);
                        if (!isempty(d->dropin_text)) {
                                ASSERT_EQ_INT(w->owner[udropin[u]], BATON);
                                ASSERT_TRUE(w->content[udropin[u]] == d->dropin_text);
                        } else
                                ASSERT_EQ_INT(w->owner[udropin[u]], ABSENT);

                        /* the file holds the set; a unit without one keeps its file */
                        if (!isempty(d->shards_text))
                                ASSERT_STREQ(w->shards[u], d->shards_text);
                        else
                                ASSERT_TRUE(w->shards[u] == before->shards[u]);
                        /* a process that should run and reads a file knows the
                         * set, unless a reload could not reach it (activating) */
                        if (!isempty(d->shards_text) && d->running && is_up(w->active[u]) &&
                            w->knows[u] &&
                            (w->started[u] || !streq_ptr(before->active[u], "activating"))) {
                                ASSERT_STREQ(w->knows[u], d->shards_text);
                                if (w->started[u])
                                        seen.shards_at_start++;
                                else if (!streq_ptr(before->knows[u], w->knows[u]))
                                        seen.shards_reloaded++;
                        }

                        changed = !before->managed[u] || before->pending[u] ||
                                  !streq(before->hash[u], w->hash[u]) ||
                                  before->has_dropin[u] != w->has_dropin[u];
                        if (!before->managed[u])
                                seen.new_units++;
                        else if (changed)
                                seen.changed++;
                        else if (unit_actions_for(p, pool[u]) == 0)
                                seen.unchanged++;
                        else if (is_up(w->active[u]))
                                seen.flag_started++;
                        else
                                seen.flag_stopped++;
                        if (is_up(w->active[u])) {
                                /* what runs is what is on disk now */
                                char now[CONFIG_HASH_HEX_LEN + 1];

                                config_hash(d->unit_text, d->dropin_text, now);
                                ASSERT_STREQ(w->runs[u], now);
                        }
                        if (changed) {
                                ASSERT_EQ_INT(is_up(w->active[u]), d->running);
                                ASSERT_EQ_INT(w->enabled[u], d->running);
                        } else if (in->flags & CONVERGE_START_INACTIVE)
                                ASSERT_EQ_INT(is_up(w->active[u]), d->running);
                        else
                                ASSERT_EQ_UINT(unit_actions_for(p, pool[u]), 0);
                        continue;
                }

                /* managed, no longer desired */
                if (refused(p, pool[u])) {
                        seen.removal_refused++;
                        ASSERT_EQ_UINT(actions_for(p, pool[u]), 1);
                        ASSERT_TRUE(w->managed[u]);
                        ASSERT_TRUE(w->shards[u] == before->shards[u]);
                        continue;
                }
                seen.removed++;
                if (is_instance(u) && w->owner[ufile[u]] == BATON)
                        seen.template_kept++;
                else if (is_instance(u))
                        seen.template_removed++;
                ASSERT_TRUE(unit_name_matches_globs(pool[u], in->globs));
                if (is_instance(u))
                        ASSERT_TRUE(unit_name_matches_globs(file_names[ufile[u]], in->globs));
                ASSERT_FALSE(before->elsewhere[u]);
                ASSERT_FALSE(w->managed[u]);
                ASSERT_FALSE(w->enabled[u]);
                ASSERT_FALSE(is_up(w->active[u]));
                ASSERT_EQ_INT(w->owner[udropin[u]], ABSENT);
                ASSERT_NULL(w->shards[u]);
                if (before->shards[u])
                        seen.shards_removed++;
        }

        /* a unit file exists for every managed unit whose file baton had, and
         * a file baton had is gone only if no managed unit still uses it */
        for (size_t f = 0; f < n_files; f++) {
                bool used = false;

                for (size_t u = 0; u < N_POOL; u++)
                        if (w->managed[u] && ufile[u] == f)
                                used = true;
                if (before->owner[f] == FOREIGN) {
                        ASSERT_EQ_INT(w->owner[f], FOREIGN);
                        ASSERT_TRUE(w->content[f] == before->content[f]);
                }
                if (before->owner[f] == BATON && used)
                        ASSERT_NE_INT(w->owner[f], ABSENT);
                if (w->owner[f] == ABSENT && before->owner[f] == BATON)
                        ASSERT_FALSE(used);
        }
        /* no baton unit file is left without a unit that uses it, unless a
         * unit of it was left alone by refusal or never had records */
        for (size_t f = 0; f < n_files; f++) {
                bool used = false, unit_file = false, removed_user = false;

                for (size_t u = 0; u < N_POOL; u++) {
                        if (ufile[u] != f)
                                continue;
                        unit_file = true;
                        used |= w->managed[u];
                        removed_user |= before->managed[u] && !w->managed[u];
                }
                if (unit_file && removed_user && !used)
                        ASSERT_NE_INT(w->owner[f], BATON);
        }
}

static void world_dump(const World *w, const Input *in, const Plan *p) {
        _cleanup_free_ char *t = plan_text(p);

        printf("# globs \"%s\" flags %u\n", in->globs, in->flags);
        for (size_t f = 0; f < n_files; f++)
                if (w->owner[f] != ABSENT)
                        printf("# file %s %s %.20s\n", file_names[f],
                               w->owner[f] == BATON ? "baton" : "foreign", w->content[f]);
        for (size_t i = 0; i < in->n_managed; i++)
                printf("# managed %s %s %s %d\n", in->managed[i].name,
                       strna(in->managed[i].file_name), in->managed[i].config_hash,
                       in->managed[i].has_dropin);
        for (size_t i = 0; i < in->n_observed; i++)
                printf("# observed %s %s %s\n", in->observed[i].name, in->observed[i].load_state,
                       in->observed[i].active_state);
        for (size_t i = 0; i < in->n_desired; i++) {
                const DesiredUnit *d = &in->desired[i];

                printf("# desired %s tmpl=%s text=%.20s dropin=%.20s hash=%s running=%d "
                       "shards=%.8s\n",
                       strna(d->name), strna(d->template_name), strna(d->unit_text),
                       strna(d->dropin_text), strna(d->config_hash), d->running,
                       strna(d->shards_text));
        }
        printf("# plan:\n%s", t);
}

static void plan_assert_only_refusals(const Plan *a, const Plan *b) {
        ASSERT_EQ_UINT(b->n_actions, b->n_refused);
        ASSERT_EQ_UINT(a->n_refused, b->n_refused);
        for (size_t i = 0; i < a->n_refused; i++) {
                ASSERT_STREQ(a->actions[i].unit, b->actions[i].unit);
                ASSERT_STREQ(a->actions[i].reason, b->actions[i].reason);
        }
}

TEST(property_converges_and_is_idempotent) {
        size_t worlds = 0, n_actions = 0, n_reloads = 0;

        pool_init();
        rs = 20240601;
        for (int iter = 0; iter < 5000; iter++) {
                World w, before;
                Input in;
                Plan p1 = { 0 }, p2 = { 0 };

                /* CONVERGE_DEBUG=-1 names the failing world, CONVERGE_DEBUG=N dumps it */
                if (getenv("CONVERGE_DEBUG"))
                        printf("# iteration %d\n", iter);

                world_generate(&w, &in);
                world_observe(&w, &in);
                before = w;
                ASSERT_OK(converge_plan(in.desired, in.n_desired, in.managed, in.n_managed,
                                        in.observed, in.n_observed, in.foreign, in.n_foreign,
                                        in.globs, in.flags, &p1));
                if (getenv("CONVERGE_DEBUG") && atoi(getenv("CONVERGE_DEBUG")) == iter)
                        world_dump(&before, &in, &p1);
                apply(&w, &before, &in, &p1);
                check_outcome(&w, &before, &in, &p1);

                /* the same Placement again, on the world the first plan made */
                world_observe(&w, &in);
                ASSERT_OK(converge_plan(in.desired, in.n_desired, in.managed, in.n_managed,
                                        in.observed, in.n_observed, in.foreign, in.n_foreign,
                                        in.globs, in.flags, &p2));
                plan_assert_only_refusals(&p1, &p2);

                worlds++;
                n_actions += p1.n_actions;
                for (size_t i = 0; i < p1.n_actions; i++)
                        n_reloads += p1.actions[i].type == ACTION_DAEMON_RELOAD;
                plan_done(&p1);
                plan_done(&p2);
        }
        printf("# %zu worlds, %zu actions, %zu reloads; units: %zu new, %zu changed, %zu "
               "unchanged, %zu started and %zu stopped by the flag, %zu refused, %zu removed "
               "(templates: %zu kept, %zu removed), %zu removals refused; shards: %zu read at "
               "start, %zu reloaded, %zu files removed\n",
               worlds, n_actions, n_reloads, seen.new_units, seen.changed, seen.unchanged,
               seen.flag_started, seen.flag_stopped, seen.refused, seen.removed, seen.template_kept,
               seen.template_removed, seen.removal_refused, seen.shards_at_start,
               seen.shards_reloaded, seen.shards_removed);
        ASSERT_GE_UINT(worlds, 2000);
        /* the generator must reach every rule, not just the easy ones */
        ASSERT_GE_UINT(seen.new_units, 500);
        ASSERT_GE_UINT(seen.changed, 500);
        ASSERT_GE_UINT(seen.unchanged, 200);
        ASSERT_GE_UINT(seen.flag_started, 100);
        ASSERT_GE_UINT(seen.flag_stopped, 50);
        ASSERT_GE_UINT(seen.refused, 500);
        ASSERT_GE_UINT(seen.removed, 500);
        ASSERT_GE_UINT(seen.template_kept, 100);
        ASSERT_GE_UINT(seen.template_removed, 100);
        ASSERT_GE_UINT(seen.removal_refused, 100);
        ASSERT_GE_UINT(seen.shards_at_start, 500);
        ASSERT_GE_UINT(seen.shards_reloaded, 100);
        ASSERT_GE_UINT(seen.shards_removed, 100);
}

int main(void) {
        int r;

        r = tap_run(TESTS(
                new_plain_unit, new_unit_without_dropin, new_instances_write_the_template_once,
                unchanged_is_empty, changed_env_restarts_only_that_unit, changed_unit_text_restarts,
                deferred_restart_writes_but_leaves_a_running_unit_alone, dropin_dropped_is_removed,
                same_hash_but_dropin_appeared_counts_as_change,
                removed_unit_is_stopped_disabled_and_deleted,
                template_removed_only_with_its_last_instance,
                template_kept_for_a_new_instance_and_rewritten,
                template_kept_for_a_managed_instance_that_is_refused,
                not_allowed_is_refused_and_nothing_else, template_must_be_allowed_too,
                units_systemd_has_from_elsewhere_are_refused, pending_records_count_as_changed,
                foreign_files_are_refused, foreign_file_of_a_removed_unit_is_left_alone,
                invalid_names_are_refused, template_name_must_match,
                missing_text_and_bad_hash_are_refused, duplicates_are_refused,
                instances_disagreeing_on_the_template_are_refused, not_running,
                new_unit_that_already_runs_is_restarted, start_inactive_flag,
                start_inactive_rewrites_vanished_files, full_order_and_single_reload,
                shards_file_written_before_start, new_set_of_a_running_unit_is_written_and_reloaded,
                same_set_is_left_alone, reload_only_for_a_unit_that_runs_on_and_is_not_restarted,
                removed_unit_loses_its_shards_file, no_reload_without_file_changes,
                hash_from_the_controller_or_computed, bad_managed_records_are_left_alone,
                deterministic_whatever_the_input_order, large_placement, empty_input,
                action_type_strings, placement_ordering, config_hash_is_stable,
                config_hash_validity, file_names, property_converges_and_is_idempotent));
        plan_done(&plan);
        for (size_t i = 0; i < n_files; i++)
                free(file_names[i]);
        return r;
}
