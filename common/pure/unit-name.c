/* SPDX-License-Identifier: MIT */
/* Unit names: what a name from the network may look like before it reaches
 * D-Bus or a path on disk, how it splits into prefix, instance and suffix, and
 * the allow-list globs an agent checks it against. Pure. */
#include "unit-name.h"

#include <assert.h>
#include <errno.h>
#include <fnmatch.h>
#include <string.h>

#include "macro.h"

static const char *const unit_suffixes[] = {
        "service",   "socket", "target", "timer", "path",   "mount",
        "automount", "swap",   "slice",  "scope", "device",
};

/* A glob word may be longer than a name (brackets), but not without end. */
#define GLOB_WORD_MAX (2 * UNIT_NAME_MAX)

#define WHITESPACE " \t\n\r"

static bool is_name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == ':' || c == '_' || c == '.' || c == '-';
}

static bool is_hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool suffix_is_known(const char *s, size_t len) {
        for (size_t i = 0; i < ELEMENTSOF(unit_suffixes); i++)
                if (strlen(unit_suffixes[i]) == len && memcmp(unit_suffixes[i], s, len) == 0)
                        return true;
        return false;
}

static bool prefix_is_valid(const char *s, size_t len) {
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!is_name_char(s[i]))
                        return false;
        return true;
}

/* Instances may carry systemd-escape(1) output, so '\' is allowed, but only
 * as a complete "\xHH" escape. */
static bool instance_is_valid(const char *s, size_t len) {
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '\\') {
                        if (len - i < 4 || s[i + 1] != 'x' || !is_hex(s[i + 2]) ||
                            !is_hex(s[i + 3]))
                                return false;
                        i += 3;
                } else if (!is_name_char(s[i]))
                        return false;
        }
        return true;
}

/* Finds the parts of a candidate name; false if it cannot be a unit name at
 * all. `*ret_at` is NULL for a plain name. */
static bool name_parse(const char *name, const char **ret_at, const char **ret_dot) {
        const char *at, *dot;
        size_t len;

        len = strnlen(name, UNIT_NAME_MAX + 1);
        if (len == 0 || len > UNIT_NAME_MAX)
                return false;
        if (name[0] == '.' || strstr(name, ".."))
                return false;

        dot = strrchr(name, '.');
        if (!dot || !suffix_is_known(dot + 1, strlen(dot + 1)))
                return false;

        at = memchr(name, '@', (size_t) (dot - name));
        if (at) {
                if (!prefix_is_valid(name, (size_t) (at - name)))
                        return false;
                if (!instance_is_valid(at + 1, (size_t) (dot - at - 1)))
                        return false;
        } else if (!prefix_is_valid(name, (size_t) (dot - name)))
                return false;

        *ret_at = at;
        *ret_dot = dot;
        return true;
}

bool unit_name_is_valid(const char *name, UnitNameFlags flags) {
        const char *at, *dot;

        if (!name || !name_parse(name, &at, &dot))
                return false;

        if (!at)
                return flags & UNIT_NAME_PLAIN;
        if (at + 1 == dot)
                return flags & UNIT_NAME_TEMPLATE;
        return flags & UNIT_NAME_INSTANCE;
}

int unit_name_split(const char *name, char **ret_prefix, char **ret_instance, char **ret_suffix) {
        _cleanup_free_ char *prefix = NULL, *instance = NULL, *suffix = NULL;
        const char *at, *dot;

        if (!name || !name_parse(name, &at, &dot))
                return -EINVAL;

        prefix = strndup(name, (size_t) ((at ? at : dot) - name));
        suffix = strdup(dot + 1);
        if (!prefix || !suffix)
                return -ENOMEM;
        if (at) {
                instance = strndup(at + 1, (size_t) (dot - at - 1));
                if (!instance)
                        return -ENOMEM;
        }

        if (ret_prefix)
                *ret_prefix = TAKE_PTR(prefix);
        if (ret_instance)
                *ret_instance = TAKE_PTR(instance);
        if (ret_suffix)
                *ret_suffix = TAKE_PTR(suffix);
        return 0;
}

int unit_name_instantiate(const char *template_name, const char *instance, char **ret) {
        _cleanup_free_ char *name = NULL;
        const char *at, *dot;
        size_t len;

        assert(ret);

        if (!template_name || !instance)
                return -EINVAL;
        if (!unit_name_is_valid(template_name, UNIT_NAME_TEMPLATE))
                return -EINVAL;
        if (isempty(instance) || !instance_is_valid(instance, strlen(instance)))
                return -EINVAL;

        at = strchr(template_name, '@');
        dot = at + 1;
        len = strlen(template_name) + strlen(instance);
        if (len > UNIT_NAME_MAX)
                return -EINVAL;

        name = malloc(len + 1);
        if (!name)
                return -ENOMEM;
        memcpy(name, template_name, (size_t) (dot - template_name));
        strcpy(name + (dot - template_name), instance);
        strcat(name, dot);

        /* The whole name again: the instance may have created a "..". */
        if (!unit_name_is_valid(name, UNIT_NAME_INSTANCE))
                return -EINVAL;

        *ret = TAKE_PTR(name);
        return 0;
}

/* Calls fn for every whitespace-separated word until it returns non-zero. */
static int words_foreach(const char *s, int (*fn)(const char *word, size_t len, void *userdata),
                         void *userdata) {
        while (s && *s) {
                size_t len;
                int r;

                s += strspn(s, WHITESPACE);
                len = strcspn(s, WHITESPACE);
                if (len == 0)
                        break;
                r = fn(s, len, userdata);
                if (r != 0)
                        return r;
                s += len;
        }
        return 0;
}

static int match_word(const char *word, size_t len, void *userdata) {
        _cleanup_free_ char *glob = NULL;

        glob = strndup(word, len);
        if (!glob)
                return 0; /* out of memory matches nothing: an allow-list fails closed */
        return fnmatch(glob, userdata, 0) == 0;
}

bool unit_name_matches_globs(const char *name, const char *globs) {
        if (!name)
                return false;
        return words_foreach(globs, match_word, (void *) name) > 0;
}

static bool is_glob_char(char c) {
        return is_name_char(c) || c == '@' || c == '\\' || c == '*' || c == '?' || c == '[' ||
               c == ']' || c == '!' || c == '^';
}

/* Every '[' must be closed: fnmatch() would silently treat it as a literal. */
static bool glob_word_is_valid(const char *w, size_t len) {
        if (len > GLOB_WORD_MAX)
                return false;

        for (size_t i = 0; i < len; i++) {
                if (!is_glob_char(w[i]))
                        return false;
                if (w[i] == '\\') {
                        /* An escape needs something to escape. */
                        if (++i >= len)
                                return false;
                } else if (w[i] == '[') {
                        size_t j = i + 1;

                        if (j < len && (w[j] == '!' || w[j] == '^'))
                                j++;
                        if (j < len && w[j] == ']') /* a leading ']' is a member */
                                j++;
                        while (j < len && w[j] != ']')
                                j++;
                        if (j >= len)
                                return false;
                        for (size_t k = i + 1; k < j; k++)
                                if (!is_glob_char(w[k]))
                                        return false;
                        i = j;
                }
        }
        return true;
}

static int check_word(const char *word, size_t len, void *userdata) {
        const char **bad = userdata;

        if (glob_word_is_valid(word, len))
                return 0;
        *bad = word;
        return 1;
}

int unit_globs_validate(const char *globs, const char **ret_bad) {
        const char *bad = NULL;

        if (words_foreach(globs, check_word, &bad) == 0)
                return 0;
        if (ret_bad)
                *ret_bad = bad;
        return -EINVAL;
}
