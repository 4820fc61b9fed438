/* SPDX-License-Identifier: MIT */
/* batonctl hosts: every host the controller knows, its state and capacity;
 * `hosts confirm-down` tells a controller holding a mass-host-loss that the
 * hosts are gone for good, so their instances are placed elsewhere. */
#include <inttypes.h>
#include <stdio.h>

#include "ctl-verbs.h"
#include "duration.h"
#include "labels.h"
#include "topology.h"
#include "util.h"

static json_t *labels_json(const Baton__V1__HostInfo *h) {
        json_t *o = json_object();

        for (size_t i = 0; o && i < h->n_labels; i++) {
                const char *eq = strchr(h->labels[i], '=');
                if (!eq)
                        continue;
                json_object_setn_new(o, h->labels[i], (size_t) (eq - h->labels[i]),
                                     json_string(eq + 1));
        }
        return o;
}

static json_t *host_json(const Baton__V1__HostInfo *h) {
        char last_seen[40];

        return json_pack(
                "{s:s, s:s, s:I, s:s, s:I, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:f, "
                "s:i, s:i, s:I, s:I, s:o, s:i}",
                "host", h->host, "state", h->state, "last_seen_us", (json_int_t) h->last_seen_us,
                "last_seen", ctl_format_time(last_seen, sizeof(last_seen), h->last_seen_us),
                "state_since_us", (json_int_t) h->state_since_us, "boot_id", h->boot_id,
                "agent_version", h->agent_version, "systemd_version", h->systemd_version,
                "system_state", h->system_state, "cores", (int) h->cores, "memory_total_bytes",
                (json_int_t) h->memory_total_bytes, "memory_available_bytes",
                (json_int_t) h->memory_available_bytes, "load1", (double) h->load1_x100 / 100.0,
                "units_total", (int) h->units_total, "units_active", (int) h->units_active,
                "applied_generation", (json_int_t) h->applied_generation, "max_epoch_seen",
                (json_int_t) h->max_epoch_seen, "labels", labels_json(h), "held_instances",
                (int) h->held_instances);
}

static size_t state_count(const Baton__V1__HostList *list, const char *state) {
        for (size_t i = 0; i < list->n_states; i++)
                if (streq_ptr(list->states[i]->name, state))
                        return (size_t) list->states[i]->value;
        return 0;
}

static int print_table(const Baton__V1__HostList *list) {
        static const char *const headers[] = { "HOST",    "STATE", "LAST SEEN",         "AGENT",
                                               "SYSTEMD", "CORES", "MEMORY FREE/TOTAL", "LOAD",
                                               "UNITS",   "LABELS" };
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new(ELEMENTSOF(headers), headers);
        uint64_t now = now_realtime_usec();
        /* A large fleet is summed up by the controller (the hosts that are
         * not up, and counts); an older one sends every host. */
        bool summary = list->summary || (list->n_hosts > CTL_DETAILS_MAX && list->n_states == 0);
        size_t total = list->summary ? list->hosts_total : list->n_hosts, up = 0, shown = 0;

        if (!t)
                return CTL_EXIT_FAILED;
        for (size_t i = 0; i < list->n_hosts; i++) {
                const Baton__V1__HostInfo *h = list->hosts[i];

                if (streq_ptr(h->state, "up")) {
                        up++;
                        if (summary)
                                continue;
                }
                _cleanup_free_ char *labels =
                        strjoin_space((const char *const *) h->labels, h->n_labels);
                char ago[48], cores[16], mem[64], avail[24], total_mem[24], load[16], units[32],
                        state[48];

                snprintf(cores, sizeof(cores), "%u", h->cores);
                snprintf(mem, sizeof(mem), "%s/%s",
                         ctl_format_bytes(avail, sizeof(avail), h->memory_available_bytes),
                         ctl_format_bytes(total_mem, sizeof(total_mem), h->memory_total_bytes));
                snprintf(load, sizeof(load), "%.2f", (double) h->load1_x100 / 100.0);
                snprintf(units, sizeof(units), "%u/%u", h->units_active, h->units_total);
                /* Down but keeping its instances: a mass-host-loss is held. */
                if (h->held_instances > 0)
                        snprintf(state, sizeof(state), "%s (held: %u)", h->state,
                                 h->held_instances);
                else
                        snprintf(state, sizeof(state), "%s", h->state);
                const char *row[] = { h->host,
                                      state,
                                      ctl_format_ago(ago, sizeof(ago), h->last_seen_us, now),
                                      h->agent_version,
                                      h->systemd_version,
                                      cores,
                                      mem,
                                      load,
                                      units,
                                      isempty(labels) ? "-" : labels };
                if (ctl_table_add(t, row) < 0)
                        return CTL_EXIT_FAILED;
                shown++;
        }
        if (total == 0) {
                printf("No hosts have reported yet.\n");
                return CTL_EXIT_OK;
        }
        if (shown > 0)
                ctl_table_print(t, stdout);
        if (summary) {
                if (list->summary)
                        up = state_count(list, "up");
                printf("%s%zu hosts: %zu up, %zu not (%s). `batonctl hosts --all` lists every "
                       "one.\n",
                       shown > 0 ? "\n" : "", total, up, total - up,
                       shown == total - up ? "listed" : "the first listed");
        }
        if (list->held_instances > 0)
                printf("\nA mass-host-loss is held: %" PRIu64 " instances stay on hosts that are "
                       "down until they return or `batonctl hosts confirm-down` moves them.\n",
                       list->held_instances);
        return CTL_EXIT_OK;
}

static int run_confirm_down(Ctl *ctl, int argc, char *argv[]) {
        Baton__V1__Request req = BATON__V1__REQUEST__INIT;
        Baton__V1__HostRequest hr = BATON__V1__HOST_REQUEST__INIT;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        int64_t moved = 0;
        bool all = false;
        int r;

        r = ctl_parse_positional_all(&ctl_command_hosts, argc, argv, 0, argc, NULL, &all);
        if (r != CTL_CONTINUE)
                return r;
        if (all == (optind < argc))
                return ctl_usage_error(&ctl_command_hosts,
                                       "confirm-down takes the hosts that are gone, or --all");
        for (int i = optind; i < argc; i++)
                if (!topology_host_id_is_valid(argv[i]))
                        return ctl_usage_error(&ctl_command_hosts,
                                               "'%s' is not a host id (1-64 of A-Z a-z 0-9 _ -, "
                                               "starting with a letter or digit)",
                                               argv[i]);
        hr.all = all;
        hr.n_hosts = (size_t) (argc - optind);
        hr.hosts = argv + optind;
        req.verb = (char *) "confirm-down";
        req.args_case = BATON__V1__REQUEST__ARGS_HOST;
        req.host = &hr;
        r = ctl_request_json(ctl, &req, &doc);
        if (r != CTL_EXIT_OK)
                return r;
        if (ctl->json)
                return ctl_print_document(doc);
        if (ctl_json_int(doc, "moved", &moved) < 0)
                moved = 0;
        printf("Confirmed %s down; %" PRId64 " instance%s placed elsewhere.\n",
               all               ? "every held host"
               : hr.n_hosts == 1 ? argv[optind]
                                 : "the hosts",
               moved, moved == 1 ? "" : "s");
        return CTL_EXIT_OK;
}

static json_t *list_json(const Baton__V1__HostList *list) {
        json_t *arr = json_array(), *states = json_object();

        for (size_t i = 0; arr && i < list->n_hosts; i++)
                json_array_append_new(arr, host_json(list->hosts[i]));
        for (size_t i = 0; states && i < list->n_states; i++)
                json_object_set_new(states, list->states[i]->name,
                                    json_integer((json_int_t) list->states[i]->value));
        return json_pack("{s:o, s:I, s:b, s:o, s:I}", "hosts", arr ? arr : json_null(),
                         "hosts_total",
                         (json_int_t) (list->summary ? list->hosts_total : list->n_hosts),
                         "hosts_listed", !list->summary, "states", states ? states : json_null(),
                         "held_instances", (json_int_t) list->held_instances);
}

static int run(Ctl *ctl, int argc, char *argv[]) {
        Baton__V1__Request req = BATON__V1__REQUEST__INIT;
        Baton__V1__HostsRequest hosts = BATON__V1__HOSTS_REQUEST__INIT;
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        const Baton__V1__Response *resp;
        bool all = false;
        int r;

        if (argc > 1 && streq(argv[1], "confirm-down"))
                return run_confirm_down(ctl, argc - 1, argv + 1);
        r = ctl_parse_positional_all(&ctl_command_hosts, argc, argv, 0, 0, NULL, &all);
        if (r != CTL_CONTINUE)
                return r;

        req.verb = (char *) "hosts";
        req.args_case = BATON__V1__REQUEST__ARGS_HOSTS;
        req.hosts = &hosts;
        /* Above a screenful or so, the controller sends a summary (--all:
         * every host). */
        hosts.hosts_max = all ? 0 : CTL_DETAILS_MAX;
        r = ctl_request(ctl, &req, BATON__V1__RESPONSE__RESULT_HOSTS, &d, &resp);
        if (r != CTL_EXIT_OK)
                return r;

        if (!ctl->json)
                return print_table(resp->hosts);
        return ctl_print_json(list_json(resp->hosts)) < 0 ? CTL_EXIT_FAILED : CTL_EXIT_OK;
}

const CtlCommand ctl_command_hosts = {
        .name = "hosts",
        .usage = "[--all] [confirm-down --all | confirm-down HOST...]",
        .summary = "list hosts with their state, capacity and labels; confirm held hosts down",
        .run = run,
};
