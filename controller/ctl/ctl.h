/* SPDX-License-Identifier: MIT */
/* batonctl's shared parts: the command table entry each ctl-*.c exports,
 * the RPC client and the output helpers (tables and JSON). */
#pragma once

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "broker-settings.h"
#include "codec.h"
#include "rpc.pb-c.h"

/* Exit codes, docs/DESIGN.md §9. */
enum {
        CTL_EXIT_OK = 0,
        CTL_EXIT_FAILED = 1,
        CTL_EXIT_USAGE = 2,
        CTL_EXIT_UNREACHABLE = 3,
        CTL_EXIT_REFUSED = 4,
};

typedef struct Ctl {
        BrokerSettings broker; /* url from --broker, $BATON_BROKER or the config file */
        bool json;
        usec_t timeout;
        usec_t round_trip; /* of the last call */
} Ctl;

typedef struct CtlCommand {
        const char *name;
        const char *usage; /* arguments after the verb */
        const char *summary;
        /* More for `batonctl VERB --help` (options, limits), or NULL. */
        const char *help;
        /* argv[0] is the verb. Returns an exit code. */
        int (*run)(Ctl *ctl, int argc, char *argv[]);
} CtlCommand;

extern const CtlCommand ctl_command_ping;
extern const CtlCommand ctl_command_hosts;

/* Sends `request` to the controller and waits for its Response (at most
 * ctl->timeout). Returns CTL_EXIT_OK with *ret filled in, or an exit code
 * after printing why to stderr (3: broker or controller unreachable). The
 * response's own status is the caller's to map (ctl_exit_for_status()). */
int ctl_call(Ctl *ctl, Baton__V1__Request *request, CodecDecoded *ret);

/* ctl_call(), then the Response's status mapped to an exit code, then a
 * check that the result is of the `expect` kind. On CTL_EXIT_OK *ret_resp
 * points into *ret. */
int ctl_request(Ctl *ctl, Baton__V1__Request *request, Baton__V1__Response__ResultCase expect,
                CodecDecoded *ret, const Baton__V1__Response **ret_resp);

/* Maps a Response status to an exit code, printing the controller's error. */
int ctl_exit_for_response(const Baton__V1__Response *resp);

/* "batonctl: <message>" on stderr. */
void ctl_verror(const char *fmt, va_list ap) _printf_(1, 0);

/* A command called with arguments it does not take. */
int ctl_usage_error(const CtlCommand *cmd, const char *fmt, ...) _printf_(2, 3);

/* Output: one JSON document on stdout. Steals the reference. */
int ctl_print_json(json_t *doc);

/* A text table with auto-sized columns. */
typedef struct CtlTable CtlTable;
CtlTable *ctl_table_new(size_t n_columns, const char *const *headers);
int ctl_table_add(CtlTable *t, const char *const *cells);
void ctl_table_print(const CtlTable *t, FILE *f);
CtlTable *ctl_table_free(CtlTable *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(CtlTable *, ctl_table_free)

/* "2026-11-21T05:09:09.123456Z"; buf ≥ 32 bytes. */
char *ctl_format_time(char *buf, size_t len, uint64_t usec);
/* "512B", "3.1G", "24G": for people; --json has exact numbers. */
char *ctl_format_bytes(char *buf, size_t len, uint64_t bytes);
/* "4.2s ago", "3min ago", "never". */
char *ctl_format_ago(char *buf, size_t len, uint64_t usec, uint64_t now);
