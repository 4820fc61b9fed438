/* SPDX-License-Identifier: MIT */
/* Unit names and allow-list globs on arbitrary bytes: never crash, and a
 * name that validates splits into parts that put it back together. The input
 * is split at its first '\n' into a name and the rest (an instance, a glob
 * list). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "unit-name.h"

const char *const fuzz_tokens[] = {
        "foo", "a",        "-",       "_",      ":",       ".",       "@", "\\x2d",
        "\\",  ".service", ".socket", ".timer", ".target", "service", "3", "\n",
        "*",   "?",        "[",       "]",      "[!",      " ",       "/", "..",
};
const size_t fuzz_n_tokens = sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]);

static void check_split(const char *name) {
        char *prefix = NULL, *instance = NULL, *suffix = NULL, *joined = NULL;
        bool plain = unit_name_is_valid(name, UNIT_NAME_PLAIN);
        bool template = unit_name_is_valid(name, UNIT_NAME_TEMPLATE);
        bool inst = unit_name_is_valid(name, UNIT_NAME_INSTANCE);

        /* exactly one kind, or none */
        if (plain + template + inst > 1)
                abort();
        if ((plain || template || inst) != unit_name_is_valid(name, UNIT_NAME_ANY))
                abort();

        if (unit_name_split(name, &prefix, &instance, &suffix) < 0) {
                if (plain || template || inst)
                        abort();
                return;
        }
        if (!(plain || template || inst))
                abort();
        if ((instance == NULL) != plain || (template && instance[0] != '\0'))
                abort();
        if (asprintf(&joined, "%s%s%s.%s", prefix, instance ? "@" : "", instance ? instance : "",
                     suffix) < 0)
                abort();
        if (strcmp(joined, name) != 0 || strlen(name) > UNIT_NAME_MAX || strstr(name, "/"))
                abort();
        free(joined);
        free(prefix);
        free(instance);
        free(suffix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s, *rest, *made = NULL;
        const char *bad = NULL;

        if (size > 4096)
                return 0;
        s = fuzz_strdup(data, size);
        if (!s)
                return 0;

        rest = strchr(s, '\n');
        if (rest)
                *rest++ = '\0';
        else
                rest = s + size;

        check_split(s);

        if (unit_name_instantiate(s, rest, &made) >= 0) {
                if (!unit_name_is_valid(made, UNIT_NAME_INSTANCE))
                        abort();
                check_split(made);
                free(made);
        }

        if (unit_globs_validate(rest, &bad) < 0) {
                if (!bad || bad < rest || bad > rest + strlen(rest))
                        abort();
        }
        (void) unit_name_matches_globs(s, rest);
        if (unit_name_is_valid(s, UNIT_NAME_ANY) && !unit_name_matches_globs(s, "*"))
                abort();

        free(s);
        return 0;
}
