/* SPDX-License-Identifier: MIT */
/* Validation of the shared [broker] settings. The URL is checked with
 * rabbitmq-c's own parser, so what passes --check-config also connects. */
#include <amqp.h>
#include <stdio.h>

#include "broker-settings.h"
#include "util.h"

int broker_settings_validate_url(const void *field, char **ret_error) {
        const char *url = *(char *const *) field;
        _cleanup_free_ char *copy = NULL;
        struct amqp_connection_info info;

        if (isempty(url))
                return 0; /* CONFIG_REQUIRED reports emptiness */
        copy = strdup(url);
        if (!copy)
                return -ENOMEM;
        if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
                if (asprintf(ret_error, "not an AMQP URL (amqp[s]://user:pass@host:port/vhost)") <
                    0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        return 0;
}

void broker_settings_apply(const BrokerSettings *s, BrokerConfig *c) {
        c->url = s->url;
        c->ca_file = isempty(s->ca_file) ? NULL : s->ca_file;
        c->heartbeat = s->heartbeat;
}
