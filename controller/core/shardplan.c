/* SPDX-License-Identifier: MIT */
/* Placeholder: being written (see shardplan.h). */
#include "shardplan.h"
