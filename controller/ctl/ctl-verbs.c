/* SPDX-License-Identifier: MIT */
/* The controller answers most verbs with a JSON document: this file sends
 * such a request, turns its status into an exit code, and reads the document
 * defensively, so that a controller of another version (a missing member, a
 * number where a string was expected) gives "-" in a table, never a crash. */
#include <assert.h>
#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctl-verbs.h"
#include "text.h"

void ctl_service_request_init(Baton__V1__Request *req, Baton__V1__ServiceRequest *sr,
                              const char *verb, const char *service) {
        assert(req);
        assert(sr);

        *sr = (Baton__V1__ServiceRequest) BATON__V1__SERVICE_REQUEST__INIT;
        sr->service = (char *) strempty(service);
        sr->instance = -1;
        *req = (Baton__V1__Request) BATON__V1__REQUEST__INIT;
        req->verb = (char *) verb;
        req->args_case = BATON__V1__REQUEST__ARGS_SERVICE;
        req->service = sr;
}

char *ctl_sanitize(const char *s) {
        return text_sanitize(s);
}

/* The controller's reason, one stderr line per line of it: a refused apply
 * lists every spec error, each naming its file and line. */
static void print_error(const char *prefix, const char *error) {
        _cleanup_free_ char *text = NULL;
        char *line, *save = NULL;
        size_t n;

        if (isempty(error))
                error = "the controller gave no reason";
        text = strdup(error);
        if (!text) {
                fprintf(stderr, "batonctl: %s (out of memory)\n", *prefix ? prefix : "error");
                return;
        }
        n = strlen(text);
        while (n > 0 && text[n - 1] == '\n')
                text[--n] = '\0';
        if (!strchr(text, '\n')) {
                _cleanup_free_ char *clean = ctl_sanitize(text);

                fprintf(stderr, "batonctl: %s%s%s\n", prefix, *prefix ? ": " : "",
                        clean ? clean : text);
                return;
        }
        fprintf(stderr, "batonctl: %s:\n", *prefix ? prefix : "the controller answered");
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                _cleanup_free_ char *clean = ctl_sanitize(line);

                fprintf(stderr, "  %s\n", clean ? clean : line);
        }
}

static int exit_for_status(const Baton__V1__Response *resp) {
        switch (resp->status) {
        case BATON__V1__STATUS__STATUS_OK:
                return CTL_EXIT_OK;
        case BATON__V1__STATUS__STATUS_USAGE:
                print_error("", resp->error);
                return CTL_EXIT_USAGE;
        case BATON__V1__STATUS__STATUS_REFUSED:
                print_error("refused", resp->error);
                return CTL_EXIT_REFUSED;
        default:
                print_error("failed", resp->error);
                return CTL_EXIT_FAILED;
        }
}

int ctl_print_document(json_t *doc) {
        return ctl_print_json(json_incref(doc)) < 0 ? CTL_EXIT_FAILED : CTL_EXIT_OK;
}

int ctl_request_json(Ctl *ctl, Baton__V1__Request *request, json_t **ret) {
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        const Baton__V1__Response *resp;
        json_error_t error = { 0 };
        json_t *doc = NULL;
        int r;

        assert(ctl);
        assert(request);
        assert(ret);

        r = ctl_call(ctl, request, &d);
        if (r != CTL_EXIT_OK)
                return r;
        resp = (const Baton__V1__Response *) d.body;
        if (resp->result_case == BATON__V1__RESPONSE__RESULT_JSON)
                doc = json_loads(strempty(resp->json), JSON_REJECT_DUPLICATES, &error);

        r = exit_for_status(resp);
        if (r != CTL_EXIT_OK) {
                if (ctl->json && json_is_object(doc))
                        (void) ctl_print_document(doc);
                json_decref(doc);
                return r;
        }
        if (resp->result_case != BATON__V1__RESPONSE__RESULT_JSON) {
                fprintf(stderr, "batonctl: the controller's answer to '%s' lacks its result\n",
                        request->verb);
                return CTL_EXIT_FAILED;
        }
        if (!doc) {
                fprintf(stderr,
                        "batonctl: the controller's answer to '%s' is not valid JSON: line %d, "
                        "column %d: %s\n",
                        request->verb, error.line, error.column, error.text);
                return CTL_EXIT_FAILED;
        }
        if (!json_is_object(doc)) {
                fprintf(stderr, "batonctl: the controller's answer to '%s' is not a JSON object\n",
                        request->verb);
                json_decref(doc);
                return CTL_EXIT_FAILED;
        }
        *ret = doc;
        return CTL_EXIT_OK;
}

const char *ctl_json_string(json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

const char *ctl_json_nonempty(json_t *o, const char *key) {
        const char *s = ctl_json_string(o, key);

        return isempty(s) ? NULL : s;
}

json_t *ctl_json_array(json_t *o, const char *key) {
        json_t *a = json_object_get(o, key);

        return json_is_array(a) ? a : NULL;
}

void ctl_print_mass_loss(json_t *doc) {
        json_t *ml = json_object_get(doc, "mass_host_loss");
        json_t *hosts = ctl_json_array(ml, "held_hosts");
        int64_t n = 0;

        if (!json_is_object(ml) || ctl_json_int(ml, "held_instances", &n) < 0)
                return;
        printf("\nA mass-host-loss is held: %" PRId64 " instance%s stay%s on %zu host%s that "
               "%s down until %s or `batonctl hosts confirm-down` moves them.\n",
               n, n == 1 ? "" : "s", n == 1 ? "s" : "", json_array_size(hosts),
               json_array_size(hosts) == 1 ? "" : "s", json_array_size(hosts) == 1 ? "is" : "are",
               json_array_size(hosts) == 1 ? "it returns" : "they return");
}

bool ctl_json_true(json_t *o, const char *key) {
        return json_is_true(json_object_get(o, key));
}

int ctl_json_int(json_t *o, const char *key, int64_t *ret) {
        json_t *v = json_object_get(o, key);
        const char *s;
        char *end;
        long long n;

        assert(ret);

        if (!v || json_is_null(v))
                return -ENOENT;
        if (json_is_integer(v)) {
                *ret = json_integer_value(v);
                return 0;
        }
        s = json_string_value(v);
        if (!s ||
            !(isdigit((unsigned char) s[0]) || (s[0] == '-' && isdigit((unsigned char) s[1]))))
                return -EINVAL;
        errno = 0;
        n = strtoll(s, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        *ret = n;
        return 0;
}

const char *ctl_json_text(json_t *o, const char *key, char *buf, size_t len) {
        json_t *v = json_object_get(o, key);

        switch (v ? json_typeof(v) : JSON_NULL) {
        case JSON_STRING:
                return json_string_value(v);
        case JSON_INTEGER:
                snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return buf;
        case JSON_REAL:
                snprintf(buf, len, "%g", json_real_value(v));
                return buf;
        case JSON_TRUE:
                return "yes";
        case JSON_FALSE:
                return "no";
        case JSON_OBJECT:
        case JSON_ARRAY:
                return "…";
        default:
                return NULL;
        }
}

const char *ctl_unit_label(json_t *o, char *buf, size_t len) {
        const char *unit = ctl_json_string(o, "unit"), *service = ctl_json_string(o, "service");
        int64_t instance;

        if (!isempty(unit))
                return unit;
        if (isempty(service))
                return NULL;
        if (ctl_json_int(o, "instance", &instance) < 0 || instance < 0)
                return service;
        snprintf(buf, len, "%s@%" PRId64, service, instance);
        return buf;
}

int ctl_parse_uint(const char *s, uint64_t max, uint64_t *ret) {
        uint64_t n = 0;

        assert(ret);

        if (isempty(s))
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                unsigned digit;

                if (*p < '0' || *p > '9')
                        return -EINVAL;
                digit = (unsigned) (*p - '0');
                if (digit > max || n > (max - digit) / 10)
                        return -ERANGE;
                n = n * 10 + digit;
        }
        *ret = n;
        return 0;
}

int ctl_option_error(const CtlCommand *cmd, int c, char *argv[]) {
        char opt[3] = { '-', (char) optopt, '\0' };
        /* An unknown short option inside a cluster ("-xy") does not advance
         * optind; a long one leaves optopt 0 (or its value, above 0xff). */
        const char *name = optopt > 0 && optopt < 0x100 && isprint(optopt) ? opt : argv[optind - 1];

        if (c == ':')
                return ctl_usage_error(cmd, "option '%s' needs an argument", name);
        return ctl_usage_error(cmd, "unknown option '%s'", name);
}

int ctl_command_help(const CtlCommand *cmd) {
        printf("Usage: batonctl [OPTIONS] %s%s%s\n\n%s\n", cmd->name,
               isempty(cmd->usage) ? "" : " ", strempty(cmd->usage), cmd->summary);
        if (!isempty(cmd->help))
                printf("\n%s", cmd->help);
        return CTL_EXIT_OK;
}

int ctl_parse_positional_all(const CtlCommand *cmd, int argc, char *argv[], int min, int max,
                             const char *missing, bool *ret_all) {
        static const struct option with_all[] = {
                { "all", no_argument, NULL, 'a' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":h", ret_all ? with_all : with_all + 1, NULL)) >= 0)
                switch (c) {
                case 'a':
                        *ret_all = true;
                        break;
                case 'h':
                        return ctl_command_help(cmd);
                default:
                        return ctl_option_error(cmd, c, argv);
                }
        if (argc - optind < min)
                return ctl_usage_error(cmd, "%s", missing ? missing : "missing argument");
        if (argc - optind > max)
                return ctl_usage_error(cmd, "unexpected argument '%s'", argv[optind + max]);
        return CTL_CONTINUE;
}

int ctl_parse_positional(const CtlCommand *cmd, int argc, char *argv[], int min, int max,
                         const char *missing) {
        return ctl_parse_positional_all(cmd, argc, argv, min, max, missing, NULL);
}
