/* SPDX-License-Identifier: MIT */
/* Small macros every module uses: cleanup attributes in the systemd manner,
 * ownership transfer, array sizes and errno helpers. Header only; pure. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _pure_ __attribute__((pure))
#define _warn_unused_result_ __attribute__((warn_unused_result))
#define _sentinel_ __attribute__((sentinel))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
#define CLAMP(x, lo, hi) ((x) < (lo) ? (lo) : (x) > (hi) ? (hi) : (x))

/* Take ownership of a pointer: returns its value and leaves NULL behind, so a
 * _cleanup_ on the source no longer frees it. */
#define TAKE_PTR(p)                                                                                \
        __extension__({                                                                            \
                __typeof__(p) _ptr_ = (p);                                                         \
                (p) = NULL;                                                                        \
                _ptr_;                                                                             \
        })

#define TAKE_FD(fd)                                                                                \
        __extension__({                                                                            \
                int _fd_ = (fd);                                                                   \
                (fd) = -EBADF;                                                                     \
                _fd_;                                                                              \
        })

/* Declare a cleanup helper `fp(T **)` for a `T *fn(T *)` style destructor. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
        static inline void func##p(type *p) {                                                      \
                if (*p)                                                                            \
                        *p = func(*p);                                                             \
        }

#define DEFINE_VOID_CLEANUP_FUNC(type, func)                                                       \
        static inline void func##p(type *p) {                                                      \
                if (*p)                                                                            \
                        func(*p);                                                                  \
        }

static inline void freep(void *p) {
        free(*(void **) p);
}

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

/* Closes fd (if open) and returns -EBADF: fd = safe_close(fd). */
static inline int safe_close(int fd) {
        closep(&fd);
        return -EBADF;
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

static inline int negative_errno(void) {
        /* errno may be 0 after a libc call that failed without setting it */
        return errno > 0 ? -errno : -EIO;
}

static inline const char *strempty(const char *s) {
        return s ? s : "";
}

static inline const char *strna(const char *s) {
        return s ? s : "n/a";
}

static inline int streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

#define streq(a, b) (strcmp((a), (b)) == 0)

/* s begins with prefix (both non-NULL). */
static inline bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static inline int isempty(const char *s) {
        return !s || !s[0];
}

/* -Wpedantic rejects glibc's %m, so errors are printed with "%s", STRERROR(r). */
#define STRERROR(r) strerror(abs(r))

/* Index of s in a table of strings indexed by an enum (NULL entries never
 * match), or -EINVAL. */
static inline int string_table_lookup(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && strcmp(table[i], s) == 0)
                        return (int) i;
        return -EINVAL;
}

/* name_to_string() and name_from_string() over `static const char *const
 * name_table[max]`, for an enum whose invalid value is -EINVAL. */
#define DEFINE_STRING_TABLE_LOOKUP(name, type, max)                                                \
        const char *name##_to_string(type i) {                                                     \
                return i >= 0 && i < (max) ? name##_table[i] : NULL;                               \
        }                                                                                          \
        type name##_from_string(const char *s) {                                                   \
                return (type) string_table_lookup(name##_table, (max), s);                         \
        }

/* Monotonic and wall clocks in microseconds. Cores never call these; time is
 * passed in so they stay deterministic. */
typedef uint64_t usec_t;
#define USEC_INFINITY UINT64_MAX
#define USEC_PER_SEC 1000000ULL
#define USEC_PER_MSEC 1000ULL
#define NSEC_PER_USEC 1000ULL
