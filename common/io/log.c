/* SPDX-License-Identifier: MIT */
/* Process-wide logging state and the three ways out: the journal (native
 * protocol, structured fields), stderr as "<N>text" lines, or stderr as one
 * JSON object per line. Logging never changes errno for the caller. */
#include "log.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>

#include <jansson.h>
#include <systemd/sd-journal.h>

/* Longer messages are cut; a log line is not the place for a bulk dump. */
#define LOG_MESSAGE_MAX 4096
#define LOG_LINE_MAX (LOG_MESSAGE_MAX * 2)

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static const char *log_ident = NULL;
static LogTarget log_target = LOG_TARGET_AUTO;
static LogFormat log_format = LOG_FORMAT_TEXT;
static int log_max_level = LOG_INFO;
/* The target resolved once: do we send to the journal? -1 = not decided yet. */
static int log_use_journal = -1;

static const char *const log_target_table[_LOG_TARGET_MAX] = {
        [LOG_TARGET_AUTO] = "auto",
        [LOG_TARGET_JOURNAL] = "journal",
        [LOG_TARGET_CONSOLE] = "console",
};

static const char *const log_format_table[_LOG_FORMAT_MAX] = {
        [LOG_FORMAT_TEXT] = "text",
        [LOG_FORMAT_JSON] = "json",
};

static const char *const log_level_table[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",     [LOG_CRIT] = "crit",
        [LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

DEFINE_STRING_TABLE_LOOKUP(log_target, LogTarget, _LOG_TARGET_MAX)
DEFINE_STRING_TABLE_LOOKUP(log_format, LogFormat, _LOG_FORMAT_MAX)

const char *log_level_to_string(int level) {
        return level >= 0 && level < (int) ELEMENTSOF(log_level_table) ? log_level_table[level]
                                                                       : NULL;
}

int log_level_from_string(const char *s) {
        int r;

        if (isempty(s))
                return -EINVAL;
        if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
                return s[0] - '0';

        r = string_table_lookup(log_level_table, ELEMENTSOF(log_level_table), s);
        if (r >= 0)
                return r;
        /* The spellings people type anyway. */
        if (streq(s, "error"))
                return LOG_ERR;
        if (streq(s, "warn"))
                return LOG_WARNING;
        return -EINVAL;
}

/* systemd's rule: stderr goes to the journal if $JOURNAL_STREAM names the
 * device and inode of the file descriptor we actually have as stderr (a
 * redirected stderr inherits the variable but not the stream). */
static bool stderr_is_journal(void) {
        const char *e;
        unsigned long long dev, ino;
        struct stat st;
        char *end;

        e = getenv("JOURNAL_STREAM");
        if (isempty(e))
                return false;

        errno = 0;
        dev = strtoull(e, &end, 10);
        if (errno != 0 || end == e || *end != ':')
                return false;
        e = end + 1;
        ino = strtoull(e, &end, 10);
        if (errno != 0 || end == e || *end != '\0')
                return false;

        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

/* sd_journal_send() reports success when journald's socket is missing, so a
 * journal without journald would swallow every line: check it is there. */
static bool use_journal(void) {
        if (log_use_journal < 0)
                log_use_journal = log_target != LOG_TARGET_CONSOLE &&
                                  (log_target == LOG_TARGET_JOURNAL || stderr_is_journal()) &&
                                  access(JOURNAL_SOCKET, F_OK) == 0;
        return log_use_journal;
}

void log_set_target(LogTarget t) {
        if (t >= 0 && t < _LOG_TARGET_MAX)
                log_target = t;
        log_use_journal = -1;
}

void log_set_format(LogFormat f) {
        if (f >= 0 && f < _LOG_FORMAT_MAX)
                log_format = f;
}

void log_set_max_level(int level) {
        log_max_level = CLAMP(level, LOG_EMERG, LOG_DEBUG);
}

int log_get_max_level(void) {
        return log_max_level;
}

int log_parse_format_arg(const char *s) {
        LogFormat f = log_format_from_string(s);

        if (f < 0)
                return -EINVAL;
        log_set_format(f);
        return 0;
}

int log_parse_level_arg(const char *s) {
        int level = log_level_from_string(s);

        if (level < 0)
                return -EINVAL;
        log_set_max_level(level);
        return 0;
}

void log_setup(const char *ident) {
        const char *target, *format, *level;
        bool bad_target, bad_format, bad_level;

        log_ident = ident;
        log_use_journal = -1;

        target = getenv("BATON_LOG_TARGET");
        bad_target = target && log_target_from_string(target) < 0;
        if (target && !bad_target)
                log_set_target(log_target_from_string(target));
        format = getenv("BATON_LOG_FORMAT");
        bad_format = format && log_parse_format_arg(format) < 0;
        level = getenv("BATON_LOG_LEVEL");
        bad_level = level && log_parse_level_arg(level) < 0;

        /* Junk is reported once the good settings are in effect, so that the
         * warning itself goes where the user asked. */
        if (bad_target)
                log_warning("Invalid $BATON_LOG_TARGET=%s, ignoring.", target);
        if (bad_format)
                log_warning("Invalid $BATON_LOG_FORMAT=%s, ignoring.", format);
        if (bad_level)
                log_warning("Invalid $BATON_LOG_LEVEL=%s, ignoring.", level);
}

static const char *ident_get(void) {
        return log_ident ? log_ident : program_invocation_short_name;
}

/* Journal field names: upper case, digits and '_', not starting with '_' (those
 * are trusted fields journald sets itself) or a digit. */
static bool field_key_is_valid(const char *k) {
        if (isempty(k) || k[0] == '_' || (k[0] >= '0' && k[0] <= '9') || strlen(k) > 64)
                return false;
        for (const char *p = k; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
                        return false;
        return true;
}

static bool field_is_usable(const LogField *f) {
        return f->value && field_key_is_valid(f->key);
}

static int iov_put(struct iovec *iov, size_t *n, const char *key, const char *value) {
        char *field;

        /* One iovec is one whole "KEY=value" field. */
        if (asprintf(&field, "%s=%s", key, value) < 0)
                return -ENOMEM;
        iov[(*n)++] = (struct iovec){ field, strlen(field) };
        return 0;
}

static int write_journal(int level, int error, const char *file, int line, const char *func,
                         const LogField *fields, size_t n_fields, const char *message) {
        char priority[12], errno_str[12], code_file[512], code_line[sizeof("CODE_LINE=") + 12];
        struct iovec *iov;
        size_t n = 0;
        int r;

        iov = calloc(n_fields + 4, sizeof(struct iovec));
        if (!iov)
                return -ENOMEM;

        snprintf(priority, sizeof(priority), "%d", level);
        snprintf(errno_str, sizeof(errno_str), "%d", error);
        r = iov_put(iov, &n, "MESSAGE", message);
        if (r >= 0)
                r = iov_put(iov, &n, "PRIORITY", priority);
        if (r >= 0)
                r = iov_put(iov, &n, "SYSLOG_IDENTIFIER", ident_get());
        if (r >= 0 && error != 0)
                r = iov_put(iov, &n, "ERRNO", errno_str);
        for (size_t i = 0; r >= 0 && i < n_fields; i++)
                if (field_is_usable(&fields[i]))
                        r = iov_put(iov, &n, fields[i].key, fields[i].value);

        if (r >= 0) {
                /* libsystemd wants these two as whole fields, and adds CODE_FUNC. */
                snprintf(code_file, sizeof(code_file), "CODE_FILE=%s", strempty(file));
                snprintf(code_line, sizeof(code_line), "CODE_LINE=%d", line);
                r = sd_journal_sendv_with_location(code_file, code_line, strempty(func), iov,
                                                   (int) n);
        }

        for (size_t i = 0; i < n; i++)
                free(iov[i].iov_base);
        free(iov);
        return r;
}

/* Appends to a line buffer, truncating silently at the end. */
typedef struct Line {
        char buf[LOG_LINE_MAX];
        size_t len;
} Line;

static void line_putc(Line *l, char c) {
        if (l->len < sizeof(l->buf) - 1)
                l->buf[l->len++] = c;
}

static void line_puts(Line *l, const char *s) {
        for (; *s; s++)
                line_putc(l, *s);
}

/* Control characters would split a record over lines (journald would read
 * the rest as new messages without a priority), so they are escaped. */
static void line_put_escaped(Line *l, const char *s, bool quote) {
        static const char hex[] = "0123456789abcdef";

        if (quote)
                line_putc(l, '"');
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '\n')
                        line_puts(l, "\\n");
                else if (c == '\t')
                        line_puts(l, "\\t");
                else if (c < 0x20 || c == 0x7f) {
                        line_puts(l, "\\x");
                        line_putc(l, hex[c >> 4]);
                        line_putc(l, hex[c & 0xf]);
                } else if (quote && (c == '"' || c == '\\')) {
                        line_putc(l, '\\');
                        line_putc(l, (char) c);
                } else
                        line_putc(l, (char) c);
        }
        if (quote)
                line_putc(l, '"');
}

static bool value_needs_quotes(const char *v) {
        if (*v == '\0')
                return true;
        for (; *v; v++)
                if ((unsigned char) *v <= ' ' || *v == '"' || *v == '\\' || *v == 0x7f)
                        return true;
        return false;
}

static void line_put_key_lower(Line *l, const char *k) {
        for (; *k; k++)
                line_putc(l, (*k >= 'A' && *k <= 'Z') ? (char) (*k - 'A' + 'a') : *k);
}

static void write_all(const char *buf, size_t len) {
        while (len > 0) {
                ssize_t k = write(STDERR_FILENO, buf, len);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return; /* nowhere left to complain to */
                }
                buf += k;
                len -= (size_t) k;
        }
}

static void write_text(int level, const LogField *fields, size_t n_fields, const char *message) {
        Line l = { .len = 0 };

        line_putc(&l, '<');
        line_putc(&l, (char) ('0' + level));
        line_putc(&l, '>');
        line_put_escaped(&l, message, false);
        for (size_t i = 0; i < n_fields; i++) {
                if (!field_is_usable(&fields[i]))
                        continue;
                line_putc(&l, ' ');
                line_put_key_lower(&l, fields[i].key);
                line_putc(&l, '=');
                line_put_escaped(&l, fields[i].value, value_needs_quotes(fields[i].value));
        }
        /* The newline survives truncation. */
        l.buf[MIN(l.len, sizeof(l.buf) - 2)] = '\n';
        l.len = MIN(l.len, sizeof(l.buf) - 2) + 1;
        write_all(l.buf, l.len);
}

/* jansson refuses strings that are not UTF-8; a log line must not be lost
 * for a stray byte, so invalid sequences become U+FFFD. */
static json_t *json_string_lossy(const char *s) {
        _cleanup_free_ char *fixed = NULL;
        const unsigned char *p = (const unsigned char *) s;
        size_t n = 0;
        json_t *j;

        j = json_string(s);
        if (j)
                return j;

        fixed = malloc(strlen(s) * 3 + 1);
        if (!fixed)
                return NULL;

        while (*p) {
                size_t len = *p < 0x80             ? 1
                             : (*p & 0xe0) == 0xc0 ? 2
                             : (*p & 0xf0) == 0xe0 ? 3
                             : (*p & 0xf8) == 0xf0 ? 4
                                                   : 0;
                uint32_t cp = len == 2 ? *p & 0x1f : len == 3 ? *p & 0x0f : *p & 0x07;
                bool ok = len > 0;

                for (size_t i = 1; ok && i < len; i++) {
                        ok = (p[i] & 0xc0) == 0x80;
                        cp = (cp << 6) | (p[i] & 0x3f);
                }
                /* Overlong forms, surrogates and values past U+10FFFF too. */
                if (ok && len > 1)
                        ok = !((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
                               (len == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
                               cp > 0x10ffff);
                if (ok) {
                        memcpy(fixed + n, p, len);
                        n += len;
                        p += len;
                } else {
                        memcpy(fixed + n, "\xef\xbf\xbd", 3);
                        n += 3;
                        p++;
                }
        }
        fixed[n] = '\0';
        return json_string(fixed);
}

static void json_set(json_t *o, const char *key, json_t *v) {
        /* json_object_set_new takes the reference even on failure. */
        if (v)
                json_object_set_new(o, key, v);
}

static int write_json(int level, int error, const char *file, int line, const char *func,
                      const LogField *fields, size_t n_fields, const char *message) {
        json_t *o;
        char *dump;
        size_t len;
        char stamp[sizeof("2000-01-01T00:00:00.000000Z") + 8];
        struct timespec ts;
        struct tm tm;

        o = json_object();
        if (!o)
                return -ENOMEM;

        if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && gmtime_r(&ts.tv_sec, &tm)) {
                size_t k = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

                snprintf(stamp + k, sizeof(stamp) - k, ".%06ldZ", ts.tv_nsec / 1000);
                json_set(o, "time", json_string(stamp));
        }
        json_set(o, "priority", json_integer(level));
        json_set(o, "level", json_string(log_level_to_string(level)));
        json_set(o, "ident", json_string_lossy(ident_get()));
        json_set(o, "message", json_string_lossy(message));
        if (error != 0)
                json_set(o, "errno", json_integer(error));
        if (file)
                json_set(o, "code_file", json_string_lossy(file));
        json_set(o, "code_line", json_integer(line));
        if (func)
                json_set(o, "code_func", json_string_lossy(func));

        for (size_t i = 0; i < n_fields; i++) {
                char key[65];
                size_t k;

                if (!field_is_usable(&fields[i]))
                        continue;
                for (k = 0; fields[i].key[k]; k++) {
                        char c = fields[i].key[k];
                        key[k] = (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
                }
                key[k] = '\0';
                /* A field must not overwrite the standard members. */
                if (json_object_get(o, key))
                        continue;
                json_set(o, key, json_string_lossy(fields[i].value));
        }

        /* Room for the newline up front: one write keeps the object and its
         * newline together. */
        len = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
        dump = len > 0 ? malloc(len + 1) : NULL;
        if (dump && json_dumpb(o, dump, len, JSON_COMPACT | JSON_PRESERVE_ORDER) != len) {
                free(dump);
                dump = NULL;
        }
        json_decref(o);
        if (!dump)
                return -ENOMEM;
        dump[len] = '\n';
        write_all(dump, len + 1);
        free(dump);
        return 0;
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const LogField *fields, size_t n_fields, const char *format, ...) {
        char message[LOG_MESSAGE_MAX];
        int saved_errno = errno;
        va_list ap;

        error = error < 0 ? -error : error;
        level = LOG_PRI(level);

        if (level > log_max_level)
                goto finish;
        if (!fields)
                n_fields = 0;

        /* %m must print the error we were given, not whatever errno is. */
        if (error != 0)
                errno = error;
        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);

        if (use_journal() &&
            write_journal(level, error, file, line, func, fields, n_fields, message) >= 0)
                goto finish;

        if (log_format != LOG_FORMAT_JSON ||
            write_json(level, error, file, line, func, fields, n_fields, message) < 0)
                write_text(level, fields, n_fields, message);

finish:
        errno = saved_errno;
        return -error;
}
