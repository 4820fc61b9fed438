/* SPDX-License-Identifier: MIT */
/* What the batonctl verbs answered with a JSON document share: the request,
 * reading the document without trusting its shape, and strict parsing of
 * numeric arguments. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctl.h"

extern const CtlCommand ctl_command_apply;
extern const CtlCommand ctl_command_plan;
extern const CtlCommand ctl_command_delete;
extern const CtlCommand ctl_command_status;
extern const CtlCommand ctl_command_scale;
extern const CtlCommand ctl_command_drain;
extern const CtlCommand ctl_command_undrain;
extern const CtlCommand ctl_command_restart;
extern const CtlCommand ctl_command_rollout;
extern const CtlCommand ctl_command_alerts;
extern const CtlCommand ctl_command_audit;
extern const CtlCommand ctl_command_watch;
extern const CtlCommand ctl_command_backup;
extern const CtlCommand ctl_command_shards;
extern const CtlCommand ctl_command_reshard;

/* A ServiceRequest for `service` with instance -1 (all), as every verb but
 * `restart SERVICE@N` sends; `req` then points to it. */
void ctl_service_request_init(Baton__V1__Request *req, Baton__V1__ServiceRequest *sr,
                              const char *verb, const char *service);

/* Sends `request` and expects a JSON document (an object) as the result. On
 * CTL_EXIT_OK *ret is a new reference. Otherwise an exit code, after printing
 * why to stderr: the controller's error (one line per line it sent), an
 * answer without a JSON result, or one that does not parse. When the
 * controller refused or failed but still attached a document, --json prints
 * it on stdout, so a script sees the details (e.g. the problems of a plan). */
int ctl_request_json(Ctl *ctl, Baton__V1__Request *request, json_t **ret);

/* --json: `doc` (borrowed) on stdout, indented, in the controller's key order. */
int ctl_print_document(json_t *doc);

/* Readers that never fail on a document of another shape: a member that is
 * missing or of another type reads as absent. */
const char *ctl_json_string(json_t *o, const char *key); /* NULL if not a string */
json_t *ctl_json_array(json_t *o, const char *key);      /* NULL if not an array */
/* Text output lists at most this many rows of details (instances, changed
 * placements) before it gives a summary instead; --json has them all. */
#define CTL_DETAILS_MAX 200

/* A document's "mass_host_loss" (status, plan), said in one paragraph if
 * one is held. */
void ctl_print_mass_loss(json_t *doc);
bool ctl_json_true(json_t *o, const char *key); /* only JSON true */
/* As ctl_json_string(), but NULL for "" too: a table shows "-" for both. */
const char *ctl_json_nonempty(json_t *o, const char *key);
/* An integer member, also when written as a decimal string (as pbjson does
 * above INT64_MAX, here only within int64). -ENOENT if missing or null,
 * -EINVAL if of another type. */
int ctl_json_int(json_t *o, const char *key, int64_t *ret);
/* Any scalar member as text for a table cell: strings as they are, numbers
 * in decimal, booleans as yes/no; NULL for a missing or null member, "…" for
 * an object or array. Returns a pointer into the document or into buf. */
const char *ctl_json_text(json_t *o, const char *key, char *buf, size_t len);

/* The member "unit" if there is one, else "gateway@3" from "service" and an
 * "instance" ≥ 0, else the service alone; NULL without a service. */
const char *ctl_unit_label(json_t *o, char *buf, size_t len);

/* Decimal digits only, no sign, no spaces, at most max: -EINVAL or -ERANGE. */
int ctl_parse_uint(const char *s, uint64_t max, uint64_t *ret);

/* A malloc'ed copy of s for a terminal line (text_sanitize(): control
 * characters, bidi overrides and broken UTF-8 in text that came over the
 * network become '?', a tab a space). NULL when out of memory. */
char *ctl_sanitize(const char *s);

/* A getopt_long() error ('?' or ':' in c) as a usage error of cmd: exit 2. */
int ctl_option_error(const CtlCommand *cmd, int c, char *argv[]);

/* `batonctl VERB --help`: the usage line and summary of cmd; exit 0. */
int ctl_command_help(const CtlCommand *cmd);

/* For verbs that take only --help and min..max positional arguments:
 * parses them (leaving optind at the first positional one) and returns
 * CTL_CONTINUE, or an exit code to return at once (help shown, usage error;
 * `missing` is the message for too few). */
#define CTL_CONTINUE (-1)
int ctl_parse_positional(const CtlCommand *cmd, int argc, char *argv[], int min, int max,
                         const char *missing);
/* The same for verbs that also take --all (every entry, not a summary):
 * *ret_all says whether it was given. */
int ctl_parse_positional_all(const CtlCommand *cmd, int argc, char *argv[], int min, int max,
                             const char *missing, bool *ret_all);
