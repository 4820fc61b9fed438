/* SPDX-License-Identifier: MIT */
/* batonctl status: the services the controller runs, how many of their
 * instances are healthy, and where each instance runs in which state. */
#include <inttypes.h>
#include <stdio.h>

#include "ctl-verbs.h"

static int print_services(json_t *services) {
        static const char *const headers[] = { "SERVICE", "KIND", "INSTANCES", "SHARDS" };
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new(ELEMENTSOF(headers), headers);
        json_t *s, *in;
        size_t i, j;

        if (!t)
                return CTL_EXIT_FAILED;
        json_array_foreach(services, i, s) {
                json_t *instances = ctl_json_array(s, "instances");
                size_t healthy = 0;
                int64_t count;
                char n[64];

                if (!json_is_object(s))
                        continue;
                json_array_foreach(instances, j, in) {
                        healthy += ctl_json_true(in, "healthy");
                }
                if (ctl_json_int(s, "count", &count) < 0)
                        count = (int64_t) json_array_size(instances);
                snprintf(n, sizeof(n), "%zu/%" PRId64, healthy, count);
                /* Sharded: shards ready over the total of the serving epoch. */
                json_t *sh = json_object_get(s, "shards");
                int64_t ready, total;
                char shards[96] = "-";
                if (json_is_object(sh) && ctl_json_int(sh, "ready", &ready) >= 0 &&
                    ctl_json_int(sh, "total", &total) >= 0)
                        snprintf(shards, sizeof(shards), "%" PRId64 "/%" PRId64 " ready%s", ready,
                                 total,
                                 ctl_json_true(sh, "resharding")   ? ", resharding"
                                 : ctl_json_true(sh, "restarting") ? ", restarting"
                                 : ctl_json_true(sh, "moving")     ? ", moving copies"
                                                                   : "");
                const char *row[] = { ctl_json_string(s, "service"), ctl_json_string(s, "kind"), n,
                                      shards };
                if (ctl_table_add(t, row) < 0)
                        return CTL_EXIT_FAILED;
        }
        ctl_table_print(t, stdout);
        return CTL_EXIT_OK;
}

/* "active (running)" */
static void format_state(json_t *in, char *buf, size_t len) {
        const char *active = ctl_json_string(in, "active_state"),
                   *sub = ctl_json_string(in, "sub_state");

        if (!isempty(active) && !isempty(sub))
                snprintf(buf, len, "%s (%s)", active, sub);
        else
                snprintf(buf, len, "%s", isempty(active) ? "-" : active);
}

/* The instance's unit name, or one made from the service around it. */
static const char *format_unit(json_t *service, json_t *in, char *buf, size_t len) {
        const char *unit = ctl_json_string(in, "unit"), *name = ctl_json_string(service, "service");
        int64_t n;

        if (!isempty(unit))
                return unit;
        if (!name || ctl_json_int(in, "instance", &n) < 0 || n < 0)
                return name;
        snprintf(buf, len, "%s@%" PRId64, name, n);
        return buf;
}

static int print_instances(json_t *services) {
        static const char *const headers[] = { "UNIT", "HOST", "STATE", "RESTARTS", "HEALTHY" };
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new(ELEMENTSOF(headers), headers);
        json_t *s, *in;
        size_t i, j;

        if (!t)
                return CTL_EXIT_FAILED;
        json_array_foreach(services, i, s) {
                json_array_foreach(ctl_json_array(s, "instances"), j, in) {
                        char unit[256], state[128], restarts[32];

                        if (!json_is_object(in))
                                continue;
                        format_state(in, state, sizeof(state));
                        const char *row[] = {
                                format_unit(s, in, unit, sizeof(unit)),
                                ctl_json_string(in, "host"),
                                state,
                                ctl_json_text(in, "n_restarts", restarts, sizeof(restarts)),
                                ctl_json_true(in, "healthy") ? "yes" : "no",
                        };
                        if (ctl_table_add(t, row) < 0)
                                return CTL_EXIT_FAILED;
                }
        }
        ctl_table_print(t, stdout);
        return CTL_EXIT_OK;
}

static int run(Ctl *ctl, int argc, char *argv[]) {
        Baton__V1__Request req;
        Baton__V1__ServiceRequest sr;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        json_t *services, *s;
        size_t i, n_instances = 0;
        int64_t total;
        bool all = false;
        int r;

        r = ctl_parse_positional_all(&ctl_command_status, argc, argv, 0, 1, NULL, &all);
        if (r != CTL_CONTINUE)
                return r;

        /* "" asks for every service: their instances too up to a screenful
         * or so, else a summary (--all: every one; a SERVICE: all of its). */
        ctl_service_request_init(&req, &sr, "status", optind < argc ? argv[optind] : "");
        if (!all && optind >= argc)
                sr.instances_max = CTL_DETAILS_MAX;
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (ctl->json)
                return ctl_print_document(doc);

        services = ctl_json_array(doc, "services");
        if (json_array_size(services) == 0) {
                printf("No services.\n");
                return CTL_EXIT_OK;
        }
        r = print_services(services);
        if (r != CTL_EXIT_OK)
                return r;
        json_array_foreach(services, i, s) {
                n_instances += json_array_size(ctl_json_array(s, "instances"));
        }
        if (ctl_json_int(doc, "instances_total", &total) < 0)
                total = (int64_t) n_instances;
        /* Every service's instances: a summary above a screenful or so. */
        if ((!all && n_instances > CTL_DETAILS_MAX && optind >= argc) ||
            (json_is_false(json_object_get(doc, "instances_listed")) && total > 0))
                printf("\n%" PRId64 " instances in all: `batonctl status SERVICE` lists one "
                       "service's, `batonctl status --all` every one.\n",
                       total);
        else if (n_instances > 0) {
                printf("\n");
                r = print_instances(services);
                if (r != CTL_EXIT_OK)
                        return r;
        }
        ctl_print_mass_loss(doc);
        return CTL_EXIT_OK;
}

const CtlCommand ctl_command_status = {
        .name = "status",
        .usage = "[SERVICE] [--all]",
        .summary = "services, their instances, hosts and health",
        .run = run,
};
