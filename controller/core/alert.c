/* SPDX-License-Identifier: MIT */
/* Alert kinds: names, severities, ids. */
#include <stdio.h>
#include <stdlib.h>

#include "alert.h"

static const struct {
        const char *name;
        AlertSeverity severity;
        bool notice;
} table[_ALERT_KIND_MAX] = {
        [ALERT_HOST_DOWN] = { "host-down", ALERT_CRITICAL, false },
        [ALERT_HOST_UP] = { "host-up", ALERT_INFO, true },
        [ALERT_MASS_HOST_LOSS] = { "mass-host-loss", ALERT_CRITICAL, false },
        [ALERT_UNIT_FAILED] = { "unit-failed", ALERT_WARNING, false },
        [ALERT_UNIT_FLAPPING] = { "unit-flapping", ALERT_WARNING, false },
        [ALERT_PLACEMENT_IMPOSSIBLE] = { "placement-impossible", ALERT_CRITICAL, false },
        [ALERT_PLACEMENT_TOO_LARGE] = { "placement-too-large", ALERT_CRITICAL, false },
        [ALERT_ROLLOUT_FAILED] = { "rollout-failed", ALERT_CRITICAL, false },
        [ALERT_SHARD_UNOWNED] = { "shard-unowned", ALERT_CRITICAL, false },
        [ALERT_SHARD_DUPLICATE] = { "shard-duplicate", ALERT_CRITICAL, false },
        [ALERT_SHARD_FAILED] = { "shard-failed", ALERT_WARNING, false },
        [ALERT_BUDGET_LOW] = { "budget-low", ALERT_WARNING, false },
        [ALERT_COMMAND_REFUSED] = { "command-refused", ALERT_WARNING, false },
};

const char *alert_kind_to_string(AlertKind k) {
        if (k < 0 || k >= _ALERT_KIND_MAX)
                return NULL;
        return table[k].name;
}

AlertKind alert_kind_from_string(const char *s) {
        for (int k = 0; s && k < _ALERT_KIND_MAX; k++)
                if (streq(table[k].name, s))
                        return (AlertKind) k;
        return _ALERT_KIND_INVALID;
}

const char *alert_severity_to_string(int severity) {
        switch (severity) {
        case ALERT_CRITICAL:
                return "critical";
        case ALERT_WARNING:
                return "warning";
        default:
                return "info";
        }
}

AlertSeverity alert_kind_severity(AlertKind k) {
        return k >= 0 && k < _ALERT_KIND_MAX ? table[k].severity : ALERT_INFO;
}

bool alert_kind_is_notice(AlertKind k) {
        return k >= 0 && k < _ALERT_KIND_MAX && table[k].notice;
}

char *alert_id(AlertKind k, const char *service, const char *host) {
        char *id;

        if (asprintf(&id, "%s/%s/%s", strempty(alert_kind_to_string(k)), strempty(service),
                     strempty(host)) < 0)
                return NULL;
        return id;
}
