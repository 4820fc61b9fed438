/* SPDX-License-Identifier: MIT */
/* Per-shard readiness of one sharded instance, as the agent reports it in a
 * ShardReport (docs/DESIGN.md §6): from the assigned range list, the unit's
 * ActiveState and the shard tokens of its StatusText. Pure. */
#pragma once

#include <stdbool.h>

#include "rangelist.h"

typedef struct ShardReadiness {
        RangeList ready;
        RangeList connecting;
        RangeList failed;
        bool has_tokens; /* the service reported ready=/connecting=/failed= */
        bool foreign;    /* it reported shards outside its assignment (ignored) */
        char *status;    /* the rest of StatusText, for display */
} ShardReadiness;

void shard_readiness_init(ShardReadiness *r);
void shard_readiness_done(ShardReadiness *r);

/* Rules:
 *  - not "active" (or "reloading"): nothing is ready; tokens still tell which
 *    shards are connecting or failed (a unit stopping may say so);
 *  - active without tokens: every assigned shard is ready (for Type=notify,
 *    active means READY=1 was sent);
 *  - active with tokens: exactly what the tokens say, limited to the
 *    assignment; a shard in several lists counts as failed over connecting
 *    over ready.
 * -EINVAL if `assigned` is not a range list; a malformed StatusText is not an
 * error (it is kept as display text and shards count as not ready). */
int shard_readiness_compute(const char *assigned, const char *active_state, const char *status_text,
                            ShardReadiness *ret);
