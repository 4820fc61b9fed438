/* SPDX-License-Identifier: MIT */
/* Command-line parsing shared by baton-controller and baton-agent. */
#include <getopt.h>
#include <stdio.h>

#include "daemon.h"
#include "log.h"

static void help(const char *name, const char *description, const char *config) {
        printf("Usage: %s [OPTIONS]\n\n"
               "%s\n\n"
               "  -c --config=FILE       configuration file (default %s)\n"
               "     --check-config      validate the configuration, print it, exit\n"
               "     --log-format=FMT    text or json\n"
               "     --log-level=LEVEL   debug, info, notice, warning, err\n"
               "  -h --help              show this help\n"
               "     --version           show the version\n",
               name, description, config);
}

int daemon_parse_argv(int argc, char *argv[], const char *name, const char *description,
                      DaemonArgs *args) {
        enum {
                ARG_CHECK_CONFIG = 0x100,
                ARG_LOG_FORMAT,
                ARG_LOG_LEVEL,
                ARG_VERSION
        };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "log-format", required_argument, NULL, ARG_LOG_FORMAT },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { 0 },
        };
        int c;

        opterr = 0; /* we say what was wrong ourselves */
        while ((c = getopt_long(argc, argv, ":c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        args->config = optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        args->check_config = true;
                        break;
                case ARG_LOG_FORMAT:
                        if (log_parse_format_arg(optarg) < 0)
                                return log_error_errno(-EINVAL,
                                                       "--log-format: expected text or json, "
                                                       "got '%s'",
                                                       optarg);
                        break;
                case ARG_LOG_LEVEL:
                        if (log_parse_level_arg(optarg) < 0)
                                return log_error_errno(-EINVAL, "--log-level: unknown level '%s'",
                                                       optarg);
                        break;
                case 'h':
                        help(name, description, args->config);
                        return 0;
                case ARG_VERSION:
                        printf("%s %s\n", name, BATON_VERSION);
                        return 0;
                case ':':
                        return log_error_errno(-EINVAL, "Option '%s' needs an argument.",
                                               argv[optind - 1]);
                default:
                        return log_error_errno(-EINVAL, "Unknown option '%s'; see --help.",
                                               argv[optind - 1]);
                }
        if (optind < argc)
                return log_error_errno(-EINVAL, "Unexpected argument '%s'.", argv[optind]);
        return 1;
}
