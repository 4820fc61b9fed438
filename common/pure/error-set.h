/* SPDX-License-Identifier: MIT */
/* The message a parser or a check hands back beside its -errno, for callers
 * that say what was wrong and where. Pure. */
#pragma once

#include "macro.h"

/* Sets *ret_error (when ret_error is not NULL) to a malloc'ed message and
 * returns r, for `return error_set(ret_error, -EINVAL, "…", …);`. If the
 * message cannot be allocated, *ret_error is NULL and r is still returned. */
int error_set(char **ret_error, int r, const char *format, ...) _printf_(3, 4);
