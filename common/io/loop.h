/* SPDX-License-Identifier: MIT */
/* Small libuv helpers shared by the daemons. */
#pragma once

#include <uv.h>

/* Closes a handle embedded in its owner if it was initialized and is not
 * closing yet; a zeroed, never-initialized handle has no loop. */
static inline void loop_close_handle(uv_handle_t *h) {
        if (h->loop && !uv_is_closing(h))
                uv_close(h, NULL);
}
