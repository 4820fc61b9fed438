/* SPDX-License-Identifier: MIT */
/* Placeholder: being written. */
#include "rpc-internal.h"

int rpc_verb_backup(RpcContext *x) {
        return rpc_fail(x, BATON__V1__STATUS__STATUS_FAILED, "backup is not implemented yet");
}
