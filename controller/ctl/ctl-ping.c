/* SPDX-License-Identifier: MIT */
/* batonctl ping: is the controller there, which epoch, how is it doing. */
#include <inttypes.h>
#include <stdio.h>

#include "ctl-verbs.h"
#include "duration.h"
#include "util.h"

static int run(Ctl *ctl, int argc, char *argv[]) {
        Baton__V1__Request req = BATON__V1__REQUEST__INIT;
        Baton__V1__PingRequest ping = BATON__V1__PING_REQUEST__INIT;
        _cleanup_(codec_decoded_done) CodecDecoded d = { 0 };
        const Baton__V1__Response *resp;
        const Baton__V1__Pong *p;
        char up[DURATION_MAX_LEN];
        uint64_t uptime;
        int r;

        r = ctl_parse_positional(&ctl_command_ping, argc, argv, 0, 0, NULL);
        if (r != CTL_CONTINUE)
                return r;

        req.verb = (char *) "ping";
        req.args_case = BATON__V1__REQUEST__ARGS_PING;
        req.ping = &ping;
        r = ctl_request(ctl, &req, BATON__V1__RESPONSE__RESULT_PONG, &d, &resp);
        if (r != CTL_EXIT_OK)
                return r;
        p = resp->pong;
        uptime = p->now_us > p->started_at_us ? p->now_us - p->started_at_us : 0;
        if (uptime < 60 * USEC_PER_SEC)
                snprintf(up, sizeof(up), "%.1fs", (double) uptime / USEC_PER_SEC);
        else
                duration_format(up, sizeof(up), uptime / USEC_PER_SEC * USEC_PER_SEC);

        if (ctl->json) {
                json_t *counters = json_object();
                for (size_t i = 0; i < p->n_counters; i++)
                        json_object_set_new(counters, p->counters[i]->name,
                                            json_integer((json_int_t) p->counters[i]->value));
                return ctl_print_json(json_pack(
                               "{s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:I, s:s, s:o}", "controller",
                               p->controller_id, "version", p->version, "epoch",
                               (json_int_t) p->epoch, "started_at_us",
                               (json_int_t) p->started_at_us, "uptime_us", (json_int_t) uptime,
                               "hosts_up", (int) p->hosts_up, "hosts_total", (int) p->hosts_total,
                               "round_trip_us", (json_int_t) ctl->round_trip, "user", p->user,
                               "counters", counters)) < 0
                               ? CTL_EXIT_FAILED
                               : CTL_EXIT_OK;
        }

        printf("controller %s (baton %s) epoch %" PRIu64 ", up %s, hosts %u/%u up, round trip "
               "%.1fms\n",
               p->controller_id, p->version, p->epoch, up, p->hosts_up, p->hosts_total,
               (double) ctl->round_trip / USEC_PER_MSEC);
        return CTL_EXIT_OK;
}

const CtlCommand ctl_command_ping = {
        .name = "ping",
        .usage = "",
        .summary = "check that the controller answers",
        .run = run,
};
