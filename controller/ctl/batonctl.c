/* SPDX-License-Identifier: MIT */
/* batonctl: global options, finding the broker, and the command table. Each
 * command lives in its own ctl-*.c file. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctl-verbs.h"
#include "ctl.h"
#include "duration.h"
#include "log.h"

#define DEFAULT_CONFIG "/etc/baton/batonctl.conf"

typedef struct CtlConfig {
        BrokerSettings broker;
} CtlConfig;

static const ConfigOption ctl_config_options[] = {
        BROKER_CONFIG_OPTIONS(CtlConfig, broker),
};

static const CtlCommand *const commands[] = {
        &ctl_command_apply,  &ctl_command_plan,   &ctl_command_delete,  &ctl_command_status,
        &ctl_command_hosts,  &ctl_command_shards, &ctl_command_reshard, &ctl_command_restart,
        &ctl_command_scale,  &ctl_command_drain,  &ctl_command_undrain, &ctl_command_rollout,
        &ctl_command_alerts, &ctl_command_watch,  &ctl_command_audit,   &ctl_command_backup,
        &ctl_command_ping,
};

static void help(void) {
        printf("Usage: batonctl [OPTIONS] COMMAND [ARGS...]\n\n"
               "Drive the baton controller.\n\n"
               "Options:\n"
               "  --broker URL         broker (default: $BATON_BROKER, else [broker] url in\n"
               "                       " DEFAULT_CONFIG ")\n"
               "  --config FILE        read the broker from FILE ($BATONCTL_CONFIG)\n"
               "  --json               one JSON document on stdout\n"
               "  --timeout DURATION   give up after this long (default 10s)\n"
               "  -h --help            show this help\n"
               "  --version            show the version\n\n"
               "Commands:\n");
        /* Long usages put their summary on the next line, aligned. */
        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                int n = printf("  %s%s%s", commands[i]->name,
                               isempty(commands[i]->usage) ? "" : " ", commands[i]->usage);
                if (n > 28)
                        printf("\n%30s", "");
                else
                        printf("%*s", 30 - n, "");
                printf("%s\n", commands[i]->summary);
        }
        printf("\nExit codes: 0 ok, 1 failed, 2 usage, 3 controller unreachable or timeout,\n"
               "4 refused.\n");
}

/* `batonctl VERB --help` needs no broker: the verb shows its help before it
 * would use one. */
static bool asks_for_help(int argc, char *argv[]) {
        for (int i = 1; i < argc && !streq(argv[i], "--"); i++)
                if (streq(argv[i], "--help") || streq(argv[i], "-h"))
                        return true;
        return false;
}

/* Fills cfg from --broker, $BATON_BROKER or the config file, in that order.
 * A config file is read when named (--config, $BATONCTL_CONFIG) or when no
 * URL was given otherwise; it must then be valid and complete. */
static int find_broker(CtlConfig *cfg, const char *arg_broker, const char *arg_config) {
        _cleanup_free_ char *error = NULL;
        const char *env = getenv("BATON_BROKER");
        const char *url = arg_broker ? arg_broker : isempty(env) ? NULL : env;
        const char *path = arg_config ? arg_config : getenv("BATONCTL_CONFIG");
        int r;

        if (!path && !url && access(DEFAULT_CONFIG, F_OK) == 0)
                path = DEFAULT_CONFIG;

        r = config_load(ctl_config_options, ELEMENTSOF(ctl_config_options), cfg,
                        isempty(path) ? NULL : path, &error);
        if (r < 0 && !isempty(path)) {
                fprintf(stderr, "batonctl: %s\n", error ? error : strerror(-r));
                return CTL_EXIT_USAGE;
        }
        if (url) {
                free(cfg->broker.url);
                cfg->broker.url = strdup(url);
                if (!cfg->broker.url)
                        return CTL_EXIT_FAILED;
        }
        if (isempty(cfg->broker.url)) {
                fprintf(stderr, "batonctl: no broker given: use --broker URL, $BATON_BROKER or "
                                "[broker] url= in " DEFAULT_CONFIG "\n");
                return CTL_EXIT_USAGE;
        }
        free(error);
        error = NULL;
        if (broker_settings_validate_url(&cfg->broker.url, &error) < 0) {
                fprintf(stderr, "batonctl: broker URL: %s\n", error ? error : "invalid");
                return CTL_EXIT_USAGE;
        }
        return CTL_EXIT_OK;
}

int main(int argc, char *argv[]) {
        enum {
                ARG_BROKER = 0x100,
                ARG_CONFIG,
                ARG_JSON,
                ARG_TIMEOUT,
                ARG_VERSION
        };
        static const struct option options[] = {
                { "broker", required_argument, NULL, ARG_BROKER },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "json", no_argument, NULL, ARG_JSON },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { 0 },
        };
        const char *arg_broker = NULL, *arg_config = NULL, *verb;
        Ctl ctl = { .timeout = 10 * USEC_PER_SEC };
        const CtlCommand *cmd = NULL;
        CtlConfig cfg = { 0 };
        int c, r;

        log_setup("batonctl");
        /* Quiet by default: batonctl speaks through its output and exit code. */
        if (!getenv("BATON_LOG_LEVEL"))
                log_set_max_level(LOG_ERR);

        opterr = 0;
        /* '+': options end at the command, whose own options follow it. */
        while ((c = getopt_long(argc, argv, "+:h", options, NULL)) >= 0)
                switch (c) {
                case ARG_BROKER:
                        arg_broker = optarg;
                        break;
                case ARG_CONFIG:
                        arg_config = optarg;
                        break;
                case ARG_JSON:
                        ctl.json = true;
                        break;
                case ARG_TIMEOUT:
                        r = duration_parse(optarg, &ctl.timeout);
                        if (r < 0 || ctl.timeout == 0 || ctl.timeout == USEC_INFINITY ||
                            ctl.timeout > 24 * 3600 * USEC_PER_SEC) {
                                fprintf(stderr,
                                        "batonctl: --timeout: '%s' is not a duration between "
                                        "1ms and 24h (e.g. 500ms, 5s, 2min)\n",
                                        optarg);
                                return CTL_EXIT_USAGE;
                        }
                        break;
                case 'h':
                        help();
                        return CTL_EXIT_OK;
                case ARG_VERSION:
                        printf("batonctl %s\n", BATON_VERSION);
                        return CTL_EXIT_OK;
                case ':':
                        fprintf(stderr, "batonctl: option '%s' needs an argument\n",
                                argv[optind - 1]);
                        return CTL_EXIT_USAGE;
                default:
                        fprintf(stderr, "batonctl: unknown option '%s'; see batonctl --help\n",
                                argv[optind - 1]);
                        return CTL_EXIT_USAGE;
                }

        if (optind >= argc) {
                fprintf(stderr, "batonctl: no command given; see batonctl --help\n");
                return CTL_EXIT_USAGE;
        }
        verb = argv[optind];
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(commands[i]->name, verb))
                        cmd = commands[i];
        if (!cmd) {
                fprintf(stderr, "batonctl: unknown command '%s'; see batonctl --help\n", verb);
                return CTL_EXIT_USAGE;
        }

        if (asks_for_help(argc - optind, argv + optind))
                return cmd->run(&ctl, argc - optind, argv + optind);
        r = find_broker(&cfg, arg_broker, arg_config);
        if (r == CTL_EXIT_OK) {
                ctl.broker = cfg.broker;
                r = cmd->run(&ctl, argc - optind, argv + optind);
        }
        config_done(ctl_config_options, ELEMENTSOF(ctl_config_options), &cfg);
        return r;
}
