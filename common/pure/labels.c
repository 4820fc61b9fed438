/* SPDX-License-Identifier: MIT */
/* Host labels, the "k=v k=v" words placement matches on: checked where they
 * are configured, joined where they are shown. Pure. */
#include "labels.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool label_char_ok(char c) {
        return isalnum((unsigned char) c) || strchr("-_./:", c);
}

int labels_validate(const char *labels, const char **ret_bad) {
        const char *p = labels;

        if (ret_bad)
                *ret_bad = NULL;
        if (!labels)
                return 0;

        while (*p) {
                const char *word, *eq = NULL;

                while (*p == ' ' || *p == '\t')
                        p++;
                if (!*p)
                        break;
                word = p;
                for (; *p && *p != ' ' && *p != '\t'; p++) {
                        if (*p == '=' && !eq)
                                eq = p;
                        else if (!label_char_ok(*p)) {
                                eq = NULL;
                                break;
                        }
                }
                /* k=v with a non-empty key and value and nothing else */
                if (!eq || eq == word || eq[1] == ' ' || eq[1] == '\t' || eq[1] == 0 ||
                    (*p && *p != ' ' && *p != '\t')) {
                        if (ret_bad)
                                *ret_bad = word;
                        return -EINVAL;
                }
        }
        return 0;
}

char *strjoin_space(const char *const *words, size_t n) {
        size_t len = 1;
        char *s, *p;

        for (size_t i = 0; i < n; i++)
                len += strlen(words[i]) + 1;
        s = p = malloc(len);
        if (!s)
                return NULL;
        *p = 0;
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        *p++ = ' ';
                p = stpcpy(p, words[i]);
        }
        return s;
}
