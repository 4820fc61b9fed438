/* SPDX-License-Identifier: MIT */
/* error_set(): one way to hand back an error message with an error code, so
 * the daemons, the CLI and the pure cores word their errors alike. Pure. */
#include "error-set.h"

#include <stdarg.h>
#include <stdio.h>

int error_set(char **ret_error, int r, const char *format, ...) {
        va_list ap;

        if (!ret_error)
                return r;
        va_start(ap, format);
        if (vasprintf(ret_error, format, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return r;
}
