/* SPDX-License-Identifier: MIT */
/* Placeholder: being written. */
#include "ctl-verbs.h"

static int run(Ctl *ctl, int argc, char *argv[]) {
        return ctl_usage_error(&ctl_command_backup, "not implemented yet");
}

const CtlCommand ctl_command_backup = {
        .name = "backup",
        .usage = "FILE",
        .summary = "copy the controller's database to FILE",
        .run = run,
};
