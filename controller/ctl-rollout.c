/* SPDX-License-Identifier: MIT */
/* batonctl rollout: the state of rolling restarts and updates, and pause,
 * resume and abort. `status --follow` polls until nothing is running, with
 * a redrawn progress bar per rollout on a terminal and a line per change
 * otherwise. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "ctl-verbs.h"

#define FOLLOW_INTERVAL_USEC (1 * USEC_PER_SEC)
#define BAR_WIDTH 20

static const char *const actions[] = { "status", "pause", "resume", "abort" };

/* Item states in the order a rollout moves through them; others the
 * controller may add are counted after these. */
static const char *const item_states[] = { "done", "settling", "restarting", "pending", "failed" };

typedef struct StateCount {
        const char *state;
        size_t n;
} StateCount;

/* "3/6 done, 1 restarting, 2 pending": malloc'ed, NULL when out of memory. */
static char *format_items(json_t *rollout, size_t *ret_done, size_t *ret_total) {
        json_t *items = ctl_json_array(rollout, "items"), *item;
        size_t n_items = 0, n_counts = ELEMENTSOF(item_states), i;
        _cleanup_free_ StateCount *counts =
                calloc(ELEMENTSOF(item_states) + json_array_size(items), sizeof(StateCount));
        char *s = NULL;
        size_t len = 0;
        FILE *f;

        if (!counts)
                return NULL;
        for (i = 0; i < ELEMENTSOF(item_states); i++)
                counts[i].state = item_states[i];
        json_array_foreach(items, i, item) {
                const char *state = ctl_json_string(item, "state");
                size_t j;

                if (!json_is_object(item))
                        continue;
                if (isempty(state))
                        state = "unknown";
                for (j = 0; j < n_counts; j++)
                        if (streq(counts[j].state, state))
                                break;
                if (j == n_counts)
                        counts[n_counts++].state = state;
                counts[j].n++;
                n_items++;
        }

        f = open_memstream(&s, &len);
        if (!f)
                return NULL;
        /* "done" always shows, as a fraction: it is the progress. */
        fprintf(f, "%zu/%zu done", counts[0].n, n_items);
        for (i = 1; i < n_counts; i++)
                if (counts[i].n > 0)
                        fprintf(f, ", %zu %s", counts[i].n, counts[i].state);
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        if (ret_done)
                *ret_done = counts[0].n;
        if (ret_total)
                *ret_total = n_items;
        return s;
}

static bool is_running(json_t *rollout) {
        return streq_ptr(ctl_json_string(rollout, "state"), "running");
}

static int print_table(json_t *rollouts) {
        static const char *const headers[] = { "SERVICE", "ROLLOUT", "STATE", "PROGRESS",
                                               "REASON" };
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new(ELEMENTSOF(headers), headers);
        json_t *ro;
        size_t i;

        if (!t)
                return CTL_EXIT_FAILED;
        if (json_array_size(rollouts) == 0) {
                printf("No rollouts.\n");
                return CTL_EXIT_OK;
        }
        json_array_foreach(rollouts, i, ro) {
                _cleanup_free_ char *progress = format_items(ro, NULL, NULL),
                                    *reason = ctl_sanitize(ctl_json_string(ro, "reason"));
                char id[64];
                const char *row[] = { ctl_json_string(ro, "service"),
                                      ctl_json_text(ro, "id", id, sizeof(id)),
                                      ctl_json_string(ro, "state"), progress,
                                      isempty(reason) ? NULL : reason };

                if (!json_is_object(ro))
                        continue;
                if (!progress || ctl_table_add(t, row) < 0)
                        return CTL_EXIT_FAILED;
        }
        ctl_table_print(t, stdout);
        return CTL_EXIT_OK;
}

/* One line for a rollout; with a bar for the terminal. malloc'ed. */
static char *format_line(json_t *ro, bool bar) {
        _cleanup_free_ char *progress = NULL, *reason = NULL;
        char id[64], bar_text[BAR_WIDTH + 3] = "";
        size_t done = 0, total = 0;
        const char *state;
        char *line;

        progress = format_items(ro, &done, &total);
        reason = ctl_sanitize(ctl_json_string(ro, "reason"));
        if (!progress || !reason)
                return NULL;
        if (bar) {
                size_t filled = total > 0 ? done * BAR_WIDTH / total : 0;

                bar_text[0] = '[';
                for (size_t i = 0; i < BAR_WIDTH; i++)
                        bar_text[1 + i] = i < filled ? '#' : '.';
                bar_text[BAR_WIDTH + 1] = ']';
                bar_text[BAR_WIDTH + 2] = '\0';
        }
        state = ctl_json_string(ro, "state");
        if (asprintf(&line, "%s rollout %s %s%s%s: %s%s%s", strna(ctl_json_string(ro, "service")),
                     strna(ctl_json_text(ro, "id", id, sizeof(id))), strna(state), bar ? " " : "",
                     bar_text, progress, isempty(reason) ? "" : " - ", reason) < 0)
                return NULL;
        return line;
}

static unsigned terminal_columns(void) {
        struct winsize ws = { 0 };

        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_col == 0)
                return 80;
        return ws.ws_col;
}

typedef struct Follow {
        bool tty;
        size_t lines_drawn;   /* tty: lines to move up before redrawing */
        json_t *last_lines;   /* not a tty: "service#id" → last line printed */
        json_t *seen_running; /* "service#id" → true, for the exit code */
} Follow;

static void follow_done(Follow *f) {
        json_decref(f->last_lines);
        json_decref(f->seen_running);
}

/* What tells rollouts apart across polls: service and id. */
static void rollout_key(json_t *ro, char *buf, size_t len) {
        char id[64];

        snprintf(buf, len, "%s#%s", strna(ctl_json_string(ro, "service")),
                 strna(ctl_json_text(ro, "id", id, sizeof(id))));
}

/* Redraws the bars in place: up to the first line drawn, clear to the end of
 * the screen, draw again. Lines are cut to the terminal's width so none
 * wraps, which would break the count of lines to go up. */
static int draw_tty(Follow *f, json_t *rollouts) {
        unsigned columns = terminal_columns();
        json_t *ro;
        size_t i;

        if (f->lines_drawn > 0)
                printf("\033[%zuA\r", f->lines_drawn);
        printf("\033[J");
        f->lines_drawn = 0;
        json_array_foreach(rollouts, i, ro) {
                _cleanup_free_ char *line = format_line(ro, true);
                size_t n;

                if (!json_is_object(ro))
                        continue;
                if (!line)
                        return CTL_EXIT_FAILED;
                n = strlen(line);
                if (n >= columns) {
                        n = columns > 1 ? columns - 1 : 1;
                        /* Not in the middle of a UTF-8 sequence. */
                        while (n > 0 && ((unsigned char) line[n] & 0xc0) == 0x80)
                                n--;
                        line[n] = '\0';
                }
                printf("%s\n", line);
                f->lines_drawn++;
        }
        fflush(stdout);
        return CTL_EXIT_OK;
}

static int print_changes(Follow *f, json_t *rollouts) {
        json_t *ro;
        size_t i;

        json_array_foreach(rollouts, i, ro) {
                _cleanup_free_ char *line = format_line(ro, false);
                char key[256];

                if (!json_is_object(ro))
                        continue;
                if (!line)
                        return CTL_EXIT_FAILED;
                rollout_key(ro, key, sizeof(key));
                if (streq_ptr(json_string_value(json_object_get(f->last_lines, key)), line))
                        continue;
                printf("%s\n", line);
                if (json_object_set_new(f->last_lines, key, json_string(line)) < 0)
                        return CTL_EXIT_FAILED;
        }
        fflush(stdout);
        return CTL_EXIT_OK;
}

static void sleep_usec(usec_t u) {
        struct timespec ts = { .tv_sec = (time_t) (u / USEC_PER_SEC),
                               .tv_nsec = (long) (u % USEC_PER_SEC * NSEC_PER_USEC) };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Exit code at the end: 1 when a rollout that ran while we watched ended
 * failed or aborted (a script waiting on it must not go on as if it had
 * worked), 0 otherwise. */
static int follow_result(Follow *f, json_t *rollouts) {
        int r = CTL_EXIT_OK;
        json_t *ro;
        size_t i;

        json_array_foreach(rollouts, i, ro) {
                const char *state = ctl_json_string(ro, "state");
                char key[256];

                if (!json_is_object(ro))
                        continue;
                rollout_key(ro, key, sizeof(key));
                if (!json_object_get(f->seen_running, key))
                        continue;
                if (streq_ptr(state, "failed") || streq_ptr(state, "aborted")) {
                        _cleanup_free_ char *reason = ctl_sanitize(ctl_json_string(ro, "reason"));
                        char id[64];

                        fprintf(stderr, "batonctl: rollout %s of %s %s%s%s\n",
                                strna(ctl_json_text(ro, "id", id, sizeof(id))),
                                strna(ctl_json_string(ro, "service")), state,
                                isempty(reason) ? "" : ": ", strempty(reason));
                        r = CTL_EXIT_FAILED;
                }
        }
        return r;
}

static int follow(Ctl *ctl, Baton__V1__Request *req) {
        _cleanup_(follow_done) Follow f = {
                .tty = isatty(STDOUT_FILENO) && !ctl->json,
                .last_lines = json_object(),
                .seen_running = json_object(),
        };

        if (!f.last_lines || !f.seen_running)
                return CTL_EXIT_FAILED;
        for (;;) {
                _cleanup_(json_decrefp) json_t *doc = NULL;
                json_t *rollouts, *ro;
                bool running = false;
                size_t i;
                int r;

                r = ctl_request_json(ctl, req, &doc);
                if (r != CTL_EXIT_OK)
                        return r;
                rollouts = ctl_json_array(doc, "rollouts");
                json_array_foreach(rollouts, i, ro) {
                        char key[256];

                        if (!is_running(ro))
                                continue;
                        running = true;
                        rollout_key(ro, key, sizeof(key));
                        if (json_object_set_new(f.seen_running, key, json_true()) < 0)
                                return CTL_EXIT_FAILED;
                }

                if (ctl->json) {
                        /* One document per invocation: the last one. */
                        if (!running) {
                                r = ctl_print_document(doc);
                                return r != CTL_EXIT_OK ? r : follow_result(&f, rollouts);
                        }
                } else if (json_array_size(rollouts) == 0) {
                        printf("No rollouts.\n");
                        return CTL_EXIT_OK;
                } else {
                        r = f.tty ? draw_tty(&f, rollouts) : print_changes(&f, rollouts);
                        if (r != CTL_EXIT_OK)
                                return r;
                }
                if (!running)
                        return follow_result(&f, rollouts);
                sleep_usec(FOLLOW_INTERVAL_USEC);
        }
}

static int run(Ctl *ctl, int argc, char *argv[]) {
        enum {
                ARG_FOLLOW = 0x100,
        };
        static const struct option options[] = {
                { "follow", no_argument, NULL, ARG_FOLLOW },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        Baton__V1__Request req = BATON__V1__REQUEST__INIT;
        Baton__V1__RolloutRequest rr = BATON__V1__ROLLOUT_REQUEST__INIT;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        const char *action;
        bool arg_follow = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":fh", options, NULL)) >= 0)
                switch (c) {
                case 'f':
                case ARG_FOLLOW:
                        arg_follow = true;
                        break;
                case 'h':
                        return ctl_command_help(&ctl_command_rollout);
                default:
                        return ctl_option_error(&ctl_command_rollout, c, argv);
                }
        if (optind >= argc)
                return ctl_usage_error(&ctl_command_rollout,
                                       "no action given (status, pause, resume or abort)");
        action = argv[optind];
        if (string_table_lookup(actions, ELEMENTSOF(actions), action) < 0)
                return ctl_usage_error(&ctl_command_rollout,
                                       "unknown action '%s' (status, pause, resume or abort)",
                                       action);
        if (argc - optind > 2)
                return ctl_usage_error(&ctl_command_rollout, "unexpected argument '%s'",
                                       argv[optind + 2]);
        if (arg_follow && !streq(action, "status"))
                return ctl_usage_error(&ctl_command_rollout, "--follow goes with status only");

        rr.action = (char *) action;
        rr.service = (char *) (argc - optind > 1 ? argv[optind + 1] : "");
        /* Reading is a verb of its own, which anyone may call. */
        req.verb = (char *) (streq(action, "status") ? "rollout-status" : "rollout");
        req.args_case = BATON__V1__REQUEST__ARGS_ROLLOUT;
        req.rollout = &rr;
        if (arg_follow)
                return follow(ctl, &req);

        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (ctl->json)
                return ctl_print_document(doc);
        return print_table(ctl_json_array(doc, "rollouts"));
}

const CtlCommand ctl_command_rollout = {
        .name = "rollout",
        .usage = "status|pause|resume|abort [SERVICE] [--follow]",
        .summary = "show, pause, resume or abort rolling restarts",
        .run = run,
};
