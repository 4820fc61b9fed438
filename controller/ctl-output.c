/* SPDX-License-Identifier: MIT */
/* batonctl output: aligned text tables for people, one JSON document for
 * programs, and the time formats both use. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "duration.h"
#include "text.h"

struct CtlTable {
        size_t n_columns;
        char **cells; /* row-major, header row first */
        size_t n_rows;
};

CtlTable *ctl_table_new(size_t n_columns, const char *const *headers) {
        CtlTable *t = calloc(1, sizeof(CtlTable));

        if (!t)
                return NULL;
        t->n_columns = n_columns;
        if (ctl_table_add(t, headers) < 0)
                return ctl_table_free(t);
        return t;
}

int ctl_table_add(CtlTable *t, const char *const *cells) {
        char **p = realloc(t->cells, (t->n_rows + 1) * t->n_columns * sizeof(char *));

        if (!p)
                return -ENOMEM;
        t->cells = p;
        for (size_t i = 0; i < t->n_columns; i++) {
                /* Every cell may hold text an agent or a workload chose:
                 * nothing in it may drive the terminal. */
                p[t->n_rows * t->n_columns + i] = text_sanitize(cells[i] ? cells[i] : "-");
                if (!p[t->n_rows * t->n_columns + i]) {
                        while (i-- > 0)
                                free(p[t->n_rows * t->n_columns + i]);
                        return -ENOMEM;
                }
        }
        t->n_rows++;
        return 0;
}

void ctl_table_print(const CtlTable *t, FILE *f) {
        _cleanup_free_ size_t *width = calloc(t->n_columns, sizeof(size_t));

        if (!width)
                return;
        for (size_t r = 0; r < t->n_rows; r++)
                for (size_t c = 0; c < t->n_columns; c++)
                        width[c] = MAX(width[c], strlen(t->cells[r * t->n_columns + c]));
        for (size_t r = 0; r < t->n_rows; r++) {
                for (size_t c = 0; c < t->n_columns; c++) {
                        const char *s = t->cells[r * t->n_columns + c];
                        if (c + 1 == t->n_columns)
                                fprintf(f, "%s", s);
                        else
                                fprintf(f, "%-*s  ", (int) width[c], s);
                }
                fputc('\n', f);
        }
}

CtlTable *ctl_table_free(CtlTable *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

int ctl_print_json(json_t *doc) {
        int r;

        if (!doc)
                return -ENOMEM;
        r = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(doc);
        if (r < 0)
                return -EIO;
        fputc('\n', stdout);
        return 0;
}

char *ctl_format_time(char *buf, size_t len, uint64_t usec) {
        time_t sec = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        char base[32];

        if (usec == 0) {
                snprintf(buf, len, "never");
                return buf;
        }
        gmtime_r(&sec, &tm);
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, len, "%s.%06uZ", base, (unsigned) (usec % USEC_PER_SEC));
        return buf;
}

char *ctl_format_bytes(char *buf, size_t len, uint64_t bytes) {
        static const char units[] = "KMGTPE";
        double v = (double) bytes;
        int u = -1;

        while (v >= 1024.0 && u + 1 < (int) sizeof(units) - 1) {
                v /= 1024.0;
                u++;
        }
        if (u < 0)
                snprintf(buf, len, "%" PRIu64 "B", bytes);
        else
                snprintf(buf, len, v < 10.0 ? "%.1f%c" : "%.0f%c", v, units[u]);
        return buf;
}

char *ctl_format_ago(char *buf, size_t len, uint64_t usec, uint64_t now) {
        char d[DURATION_MAX_LEN];
        uint64_t delta;

        if (usec == 0) {
                snprintf(buf, len, "never");
                return buf;
        }
        delta = now > usec ? now - usec : 0;
        /* Tenths of a second are enough for people. */
        if (delta < 60 * USEC_PER_SEC)
                snprintf(buf, len, "%.1fs ago", (double) delta / USEC_PER_SEC);
        else {
                duration_format(d, sizeof(d), delta / USEC_PER_SEC * USEC_PER_SEC);
                snprintf(buf, len, "%s ago", d);
        }
        return buf;
}

void ctl_verror(const char *fmt, va_list ap) {
        fputs("batonctl: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
}
