/* SPDX-License-Identifier: MIT */
/* Unit-name validation as strict as systemd's own, plus allow-list globs.
 * Every name from the network goes through here before it reaches D-Bus or
 * the file system. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define UNIT_NAME_MAX 255

typedef enum UnitNameFlags {
        UNIT_NAME_PLAIN = 1 << 0,    /* foo.service */
        UNIT_NAME_TEMPLATE = 1 << 1, /* foo@.service */
        UNIT_NAME_INSTANCE = 1 << 2, /* foo@3.service */
        UNIT_NAME_ANY = UNIT_NAME_PLAIN | UNIT_NAME_TEMPLATE | UNIT_NAME_INSTANCE,
} UnitNameFlags;

/* Accepts only names whose suffix is a known unit type (service, socket,
 * timer, target, path, mount, slice, …), whose prefix uses [A-Za-z0-9:_.\-]
 * and whose instance uses the same plus "\\xHH" escapes (systemd-escape's,
 * nothing else after a '\\'; no '@'); no "/", no "..", no leading '.', at
 * most UNIT_NAME_MAX bytes. */
bool unit_name_is_valid(const char *name, UnitNameFlags flags);

/* Splits "prefix@instance.suffix"; outputs may be NULL. For a plain name the
 * instance is NULL; for a template it is "". The suffix comes without its
 * dot ("service"). Returns -EINVAL if invalid, -ENOMEM. */
int unit_name_split(const char *name, char **ret_prefix, char **ret_instance, char **ret_suffix);

/* "foo@.service" + "3" → "foo@3.service". -EINVAL if not a template or the
 * instance is not valid. */
int unit_name_instantiate(const char *template_name, const char *instance, char **ret);

/* True if `name` matches at least one of the space-separated fnmatch(3)
 * globs in `globs` (no FNM_PATHNAME; "*" matches everything). NULL or empty
 * `globs` matches nothing. */
bool unit_name_matches_globs(const char *name, const char *globs);

/* Checks the glob list itself: only characters a unit name or a glob may
 * contain, every '[' closed, no trailing '\\', words of at most 510 bytes.
 * An empty list is valid (it matches nothing). -EINVAL with *ret_bad (a
 * pointer into globs, may be NULL) set to the first bad word. */
int unit_globs_validate(const char *globs, const char **ret_bad);
