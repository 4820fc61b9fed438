/* SPDX-License-Identifier: MIT */
/* Logging for the daemons and the CLI: the journal with structured fields when
 * stderr is connected to it, else stderr with "<N>" priority prefixes (which
 * journald and systemd understand), or one JSON object per line. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

#include "macro.h"

typedef enum LogTarget {
        LOG_TARGET_AUTO,    /* journal if $JOURNAL_STREAM names our stderr, else console */
        LOG_TARGET_JOURNAL, /* sd_journal_send() with structured fields; console if no journald */
        LOG_TARGET_CONSOLE, /* stderr, format per LogFormat */
        _LOG_TARGET_MAX,
        _LOG_TARGET_INVALID = -EINVAL,
} LogTarget;

typedef enum LogFormat {
        LOG_FORMAT_TEXT, /* "<3>message key=value …" */
        LOG_FORMAT_JSON, /* {"time":…,"priority":3,"level":"err","ident":…,"message":…,fields…} */
        _LOG_FORMAT_MAX,
        _LOG_FORMAT_INVALID = -EINVAL,
} LogFormat;

/* One structured field. Keys are journal-style: upper case, digits, '_'. */
typedef struct LogField {
        const char *key;
        const char *value;
} LogField;

const char *log_target_to_string(LogTarget t) _pure_;
LogTarget log_target_from_string(const char *s) _pure_;
const char *log_format_to_string(LogFormat f) _pure_;
LogFormat log_format_from_string(const char *s) _pure_;
const char *log_level_to_string(int level) _pure_;
int log_level_from_string(const char *s) _pure_; /* "debug".."emerg" or 0..7 */

/* `ident` is SYSLOG_IDENTIFIER and the JSON "ident"; the string must outlive
 * logging. Reads $BATON_LOG_LEVEL, $BATON_LOG_FORMAT, $BATON_LOG_TARGET. */
void log_setup(const char *ident);
void log_set_target(LogTarget t);
void log_set_format(LogFormat f);
void log_set_max_level(int level);
int log_get_max_level(void);
/* Parses --log-format=… / --log-level=… values and applies them; -EINVAL on
 * junk (nothing changes then). */
int log_parse_format_arg(const char *s);
int log_parse_level_arg(const char *s);

/* Returns -abs(error) (or 0 when error is 0), so callers can
 * `return log_error_errno(r, "…: %m");`. %m prints strerror(abs(error)). */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const LogField *fields, size_t n_fields, const char *format, ...) _printf_(8, 9);

#define log_full_errno(level, error, ...)                                                          \
        log_internal((level), (error), __FILE__, __LINE__, __func__, NULL, 0, __VA_ARGS__)
#define log_full(level, ...) log_full_errno((level), 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_notice_errno(e, ...) log_full_errno(LOG_NOTICE, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/* With structured fields:
 *   log_fields(LOG_WARNING, 0, LOG_FIELDS({"BATON_HOST", host}, {"BATON_UNIT", unit}),
 *              "Unit %s failed", unit); */
#define LOG_FIELDS(...)                                                                            \
        ((const LogField[]){ __VA_ARGS__ }),                                                       \
                (sizeof((const LogField[]){ __VA_ARGS__ }) / sizeof(LogField))
#define log_fields(level, error, fields_and_count, ...)                                            \
        log_internal((level), (error), __FILE__, __LINE__, __func__, fields_and_count, __VA_ARGS__)
