/* SPDX-License-Identifier: MIT */
/* The kinds of alert the controller raises (docs/DESIGN.md §9), one
 * enum with its string table, severity and whether it stays open until
 * resolved. An alert is identified by kind, service and host: raising an
 * open one again does nothing, so alerts are level-triggered. Pure. */
#pragma once

#include <stdbool.h>

#include "macro.h"

typedef enum AlertKind {
        ALERT_HOST_DOWN,
        ALERT_HOST_UP, /* a notice: never open */
        ALERT_MASS_HOST_LOSS,
        ALERT_UNIT_FAILED,
        ALERT_UNIT_FLAPPING,
        ALERT_PLACEMENT_IMPOSSIBLE,
        ALERT_PLACEMENT_TOO_LARGE,
        ALERT_ROLLOUT_FAILED,
        ALERT_SHARD_UNOWNED,
        ALERT_SHARD_DUPLICATE,
        ALERT_SHARD_FAILED,
        ALERT_BUDGET_LOW,
        ALERT_COMMAND_REFUSED,
        _ALERT_KIND_MAX,
        _ALERT_KIND_INVALID = -EINVAL,
} AlertKind;

/* As in routing keys (alert.<severity>.<kind>), headers and --json. The
 * numbers are the wire's baton.v1.Severity. */
typedef enum AlertSeverity {
        ALERT_INFO = 1,
        ALERT_WARNING = 2,
        ALERT_CRITICAL = 3,
} AlertSeverity;

const char *alert_kind_to_string(AlertKind k) _pure_;
AlertKind alert_kind_from_string(const char *s) _pure_;
const char *alert_severity_to_string(int severity) _pure_;

AlertSeverity alert_kind_severity(AlertKind k) _pure_;
/* A notice is published once and never open (host-up). */
bool alert_kind_is_notice(AlertKind k) _pure_;

/* "kind/service/host" (empty parts for absent ones): the stable id of the
 * condition. malloc'ed; NULL on OOM. */
char *alert_id(AlertKind k, const char *service, const char *host);
