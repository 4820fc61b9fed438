/* SPDX-License-Identifier: MIT */
/* Host labels, the "k=v k=v" words placement matches on: checked where they
 * are configured, joined where they are shown. Pure. */
#pragma once

#include <stddef.h>

/* "k=v k=v" → validated; -EINVAL with *ret_bad naming the first bad word. */
int labels_validate(const char *labels, const char **ret_bad);

/* The words joined by single spaces, malloc'ed; NULL on OOM. */
char *strjoin_space(const char *const *words, size_t n);
