/* SPDX-License-Identifier: MIT */
/* The command line both daemons share: --config, --check-config,
 * --log-format, --log-level, --help, --version. */
#pragma once

#include <stdbool.h>

typedef struct DaemonArgs {
        const char *config; /* set to the default before parsing */
        bool check_config;
} DaemonArgs;

/* Returns 1 to go on, 0 when --help/--version was handled, -EINVAL on a
 * usage error (already logged; exit with 2). */
int daemon_parse_argv(int argc, char *argv[], const char *name, const char *description,
                      DaemonArgs *args);
