/* SPDX-License-Identifier: MIT */
/* batonctl apply and plan: send service spec files to the controller and show
 * what it changes, or would change: services created or updated, instances
 * added, moved or removed, and instances it cannot place. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctl-verbs.h"
#include "duration.h"
#include "util.h"

/* A unit file is a few KiB; this only stops a mistaken argument (a log, an
 * image) from being read and sent. */
#define SPEC_FILE_MAX (1024u * 1024u)
/* Room for the envelope and the request around the file texts. */
#define SPEC_TOTAL_MAX (CODEC_MAX_MESSAGE_SIZE - 64u * 1024u)

typedef struct SpecFiles {
        Baton__V1__SpecFile *files;
        Baton__V1__SpecFile **ptrs;
        size_t n;
} SpecFiles;

static void spec_files_done(SpecFiles *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->files[i].text);
        free(s->files);
        free(s->ptrs);
        *s = (SpecFiles){ 0 };
}

static const char *path_basename(const char *path) {
        const char *slash = strrchr(path, '/');

        return slash ? slash + 1 : path;
}

/* Reads every file into s; an exit code. The name sent is the basename: the
 * service name comes from it, and where the file lies on this machine means
 * nothing to the controller. */
static int read_specs(const CtlCommand *cmd, char *const *paths, size_t n_paths, SpecFiles *s) {
        size_t total = 0;
        int r;

        s->files = calloc(n_paths, sizeof(Baton__V1__SpecFile));
        s->ptrs = calloc(n_paths, sizeof(Baton__V1__SpecFile *));
        if (!s->files || !s->ptrs) {
                fprintf(stderr, "batonctl: out of memory\n");
                return CTL_EXIT_FAILED;
        }
        for (size_t i = 0; i < n_paths; i++) {
                const char *name = path_basename(paths[i]);
                Baton__V1__SpecFile *f = &s->files[i];
                char *text = NULL;
                size_t len;

                if (isempty(name))
                        return ctl_usage_error(cmd, "'%s' is a directory, not a unit file",
                                               paths[i]);
                for (size_t j = 0; j < i; j++)
                        if (streq(s->files[j].name, name))
                                return ctl_usage_error(cmd, "%s is given twice (%s and %s)", name,
                                                       paths[j], paths[i]);

                r = read_full_file(paths[i], SPEC_FILE_MAX, &text, &len);
                if (r == -EFBIG) {
                        fprintf(stderr, "batonctl: %s: larger than %u KiB, not a unit file\n",
                                paths[i], SPEC_FILE_MAX / 1024);
                        return CTL_EXIT_FAILED;
                }
                if (r < 0) {
                        fprintf(stderr, "batonctl: cannot read %s: %s\n", paths[i], STRERROR(r));
                        return CTL_EXIT_FAILED;
                }
                *f = (Baton__V1__SpecFile) BATON__V1__SPEC_FILE__INIT;
                f->name = (char *) name;
                f->text = text;
                s->ptrs[i] = f;
                s->n = i + 1;

                if (strlen(text) != len || !codec_utf8_is_valid(text, len)) {
                        fprintf(stderr,
                                "batonctl: %s: not a text file (NUL bytes or invalid "
                                "UTF-8)\n",
                                paths[i]);
                        return CTL_EXIT_FAILED;
                }
                total += len + strlen(name);
        }
        if (total > SPEC_TOTAL_MAX) {
                fprintf(stderr,
                        "batonctl: the spec files are %zu KiB together, more than one request "
                        "carries (%u KiB); apply them in several calls\n",
                        total / 1024, SPEC_TOTAL_MAX / 1024);
                return CTL_EXIT_FAILED;
        }
        return CTL_EXIT_OK;
}

static bool is_change(json_t *placement) {
        return json_is_object(placement) &&
               !streq_ptr(ctl_json_string(placement, "change"), "keep");
}

static bool is_service_change(json_t *service) {
        return json_is_object(service) &&
               !streq_ptr(ctl_json_string(service, "action"), "unchanged");
}

static int print_services(json_t *services) {
        static const char *const headers[] = { "SERVICE", "ACTION",     "KIND",
                                               "COUNT",   "IDENTIFIES", "START TIME" };
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new(ELEMENTSOF(headers), headers);
        json_t *s;
        size_t i;

        if (!t)
                return CTL_EXIT_FAILED;
        json_array_foreach(services, i, s) {
                char count[32], ids[32], took[64] = "-";
                int64_t us;

                if (ctl_json_int(s, "estimated_duration_us", &us) >= 0 && us >= 0)
                        (void) duration_format(took, sizeof(took), (usec_t) us);
                const char *row[] = {
                        ctl_json_string(s, "service"),
                        ctl_json_string(s, "action"),
                        ctl_json_string(s, "kind"),
                        ctl_json_text(s, "count", count, sizeof(count)),
                        ctl_json_text(s, "identifies", ids, sizeof(ids)),
                        took,
                };

                if (!json_is_object(s))
                        continue;
                if (ctl_table_add(t, row) < 0)
                        return CTL_EXIT_FAILED;
        }
        ctl_table_print(t, stdout);
        return CTL_EXIT_OK;
}

static const char *const change_kinds[] = { "add", "move", "remove", "restart" };

static void print_change_counts(size_t n, const size_t by_kind[]) {
        printf("%zu placements change:", n);
        for (size_t k = 0; k < ELEMENTSOF(change_kinds); k++)
                if (by_kind[k] > 0)
                        printf(" %zu %s", by_kind[k], change_kinds[k]);
        printf(". `--all` lists them.\n");
}

/* The controller sent counts only ("changes"): how many change, by kind. */
static size_t change_counts(json_t *doc, size_t by_kind[]) {
        json_t *changes = json_object_get(doc, "changes");
        size_t n = 0;

        for (size_t k = 0; k < ELEMENTSOF(change_kinds); k++) {
                int64_t v;

                by_kind[k] =
                        ctl_json_int(changes, change_kinds[k], &v) >= 0 && v > 0 ? (size_t) v : 0;
                n += by_kind[k];
        }
        return n;
}

static int print_placements(json_t *placements, bool all) {
        static const char *const headers[] = { "UNIT", "CHANGE", "HOST", "FROM" };
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new(ELEMENTSOF(headers), headers);
        size_t i, n = 0, by_kind[ELEMENTSOF(change_kinds)] = { 0 };
        json_t *p;

        if (!t)
                return CTL_EXIT_FAILED;
        json_array_foreach(placements, i, p) {
                n += is_change(p);
                for (size_t k = 0; k < ELEMENTSOF(change_kinds); k++)
                        by_kind[k] += streq_ptr(ctl_json_string(p, "change"), change_kinds[k]);
        }
        /* A large change is summed up (a controller that sent them all
         * anyway): `--all` lists every placement. */
        if (n > CTL_DETAILS_MAX && !all) {
                print_change_counts(n, by_kind);
                return CTL_EXIT_OK;
        }
        json_array_foreach(placements, i, p) {
                char unit[256];

                /* Only what changes: "keep" is most of a large fleet. */
                if (!is_change(p))
                        continue;
                const char *row[] = {
                        ctl_unit_label(p, unit, sizeof(unit)),
                        ctl_json_string(p, "change"),
                        ctl_json_string(p, "host"),
                        ctl_json_string(p, "from"),
                };
                if (ctl_table_add(t, row) < 0)
                        return CTL_EXIT_FAILED;
        }
        ctl_table_print(t, stdout);
        return CTL_EXIT_OK;
}

/* Is `service` a singleton (unit SERVICE.service, no instance number)? The
 * document names its kind when the service is in the request; else a
 * placement of the service shows it by its unit's name. */
static bool is_singleton(json_t *doc, const char *service) {
        json_t *x;
        size_t i;

        json_array_foreach(ctl_json_array(doc, "services"), i, x) {
                if (streq_ptr(ctl_json_string(x, "service"), service))
                        return streq_ptr(ctl_json_string(x, "kind"), "singleton");
        }
        json_array_foreach(ctl_json_array(doc, "placements"), i, x) {
                const char *unit = ctl_json_string(x, "unit");

                if (streq_ptr(ctl_json_string(x, "service"), service) && unit)
                        return !strchr(unit, '@');
        }
        return false;
}

/* A problem names a service and an instance; shown as the unit, as the
 * placements are. */
static const char *problem_unit(json_t *doc, json_t *problem, char *buf, size_t len) {
        const char *service = ctl_json_string(problem, "service");
        int64_t n;

        if (!isempty(ctl_json_string(problem, "unit")) || isempty(service))
                return ctl_unit_label(problem, buf, len);
        if (is_singleton(doc, service))
                snprintf(buf, len, "%s.service", service);
        else if (ctl_json_int(problem, "instance", &n) >= 0 && n >= 0)
                snprintf(buf, len, "%s@%" PRId64 ".service", service, n);
        else
                return service;
        return buf;
}

static void print_problems(json_t *doc, json_t *problems) {
        json_t *p;
        size_t i;

        printf("Problems:\n");
        json_array_foreach(problems, i, p) {
                _cleanup_free_ char *reason = ctl_sanitize(ctl_json_string(p, "reason"));
                char unit[256];
                const char *what = problem_unit(doc, p, unit, sizeof(unit));

                if (!json_is_object(p))
                        continue;
                printf("  %s%s%s\n", strempty(what), what ? ": " : "",
                       isempty(reason) ? "(no reason given)" : reason);
        }
}

/* A large change is placed in steps: the services the controller places in
 * the next turns (their instances are not among those counted above). */
static void print_placed_later(json_t *later) {
        size_t i;
        json_t *x;

        if (json_array_size(later) == 0)
                return;
        printf("\nPlacing %zu more service%s in the next steps:", json_array_size(later),
               json_array_size(later) == 1 ? "" : "s");
        json_array_foreach(later, i, x) {
                printf("%s %s", i > 0 ? "," : "", json_is_string(x) ? json_string_value(x) : "?");
        }
        printf(" (`batonctl status` shows them placed).\n");
}

static int print_result(json_t *doc, bool all) {
        json_t *services = ctl_json_array(doc, "services"),
               *placements = ctl_json_array(doc, "placements"),
               *problems = ctl_json_array(doc, "problems"), *x;
        bool changes = false, placement_changes = false,
             listed = !json_is_false(json_object_get(doc, "placements_listed"));
        size_t i, n_counted = 0, by_kind[ELEMENTSOF(change_kinds)] = { 0 };
        int r;

        json_array_foreach(services, i, x) {
                changes = changes || is_service_change(x);
        }
        json_array_foreach(placements, i, x) {
                placement_changes = placement_changes || is_change(x);
        }
        if (!listed) {
                n_counted = change_counts(doc, by_kind);
                placement_changes = n_counted > 0;
        }
        changes = changes || placement_changes;

        if (!changes)
                printf("No changes.\n");
        else {
                if (json_array_size(services) > 0) {
                        r = print_services(services);
                        if (r != CTL_EXIT_OK)
                                return r;
                }
                if (placement_changes && !listed) {
                        printf("\n");
                        print_change_counts(n_counted, by_kind);
                } else if (placement_changes) {
                        printf("\n");
                        r = print_placements(placements, all);
                        if (r != CTL_EXIT_OK)
                                return r;
                }
        }
        if (json_array_size(problems) > 0) {
                printf("\n");
                print_problems(doc, problems);
        }
        print_placed_later(ctl_json_array(doc, "placed_later"));
        ctl_print_mass_loss(doc);
        if (changes && ctl_json_true(doc, "dry_run"))
                printf("\nDry run: nothing was changed.\n");
        return CTL_EXIT_OK;
}

static int run_apply_or_plan(Ctl *ctl, const CtlCommand *cmd, bool plan, int argc, char *argv[]) {
        enum {
                ARG_DRY_RUN = 0x100,
                ARG_ALL,
        };
        static const struct option apply_options[] = {
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "all", no_argument, NULL, ARG_ALL },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        static const struct option plan_options[] = {
                { "all", no_argument, NULL, ARG_ALL },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        Baton__V1__Request req = BATON__V1__REQUEST__INIT;
        Baton__V1__ApplyRequest apply = BATON__V1__APPLY_REQUEST__INIT;
        _cleanup_(spec_files_done) SpecFiles specs = { 0 };
        _cleanup_(json_decrefp) json_t *doc = NULL;
        bool dry_run = plan, all = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":h", plan ? plan_options : apply_options, NULL)) >= 0)
                switch (c) {
                case ARG_DRY_RUN:
                        dry_run = true;
                        break;
                case ARG_ALL:
                        all = true;
                        break;
                case 'h':
                        return ctl_command_help(cmd);
                default:
                        return ctl_option_error(cmd, c, argv);
                }
        if (optind >= argc)
                return ctl_usage_error(cmd, "no spec file given");

        r = read_specs(cmd, argv + optind, (size_t) (argc - optind), &specs);
        if (r != CTL_EXIT_OK)
                return r;

        apply.files = specs.ptrs;
        apply.n_files = specs.n;
        apply.dry_run = dry_run;
        /* Every placement up to a screenful or so, else counts (--all: all). */
        apply.placements_max = all ? 0 : CTL_DETAILS_MAX;
        /* `apply --dry-run` is a plan: the read-only verb, which anyone may
         * call (the controller decides authority by verb alone). */
        req.verb = (char *) (dry_run ? "plan" : "apply");
        req.args_case = BATON__V1__REQUEST__ARGS_APPLY;
        req.apply = &apply;
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        return ctl->json ? ctl_print_document(doc) : print_result(doc, all);
}

static int run_apply(Ctl *ctl, int argc, char *argv[]) {
        return run_apply_or_plan(ctl, &ctl_command_apply, false, argc, argv);
}

static int run_plan(Ctl *ctl, int argc, char *argv[]) {
        return run_apply_or_plan(ctl, &ctl_command_plan, true, argc, argv);
}

const CtlCommand ctl_command_apply = {
        .name = "apply",
        .usage = "FILE... [--dry-run] [--all]",
        .summary = "create or update services from unit files",
        .run = run_apply,
};

const CtlCommand ctl_command_plan = {
        .name = "plan",
        .usage = "FILE... [--all]",
        .summary = "show what apply would change, change nothing",
        .run = run_plan,
};
