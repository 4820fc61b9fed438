/* SPDX-License-Identifier: MIT */
/* Placeholder: being written (see budget.h). */
#include "budget.h"
