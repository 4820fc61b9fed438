/* SPDX-License-Identifier: MIT */
/* Helpers of the test workloads: environment numbers, the clock that both
 * paces and stamps, the shared append-only log, reading a small file, and
 * signal waiting with a deadline. See workload.h. */
#include "workload.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>

int workload_parse_uint(const char *s, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        assert(s);
        assert(ret);

        if (!*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                unsigned d;

                if (*p < '0' || *p > '9')
                        return -EINVAL;
                d = (unsigned) (*p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        if (v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

bool workload_word_ok(const char *s) {
        if (isempty(s))
                return false;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (isspace(*p) || iscntrl(*p))
                        return false;
        return true;
}

static usec_t clock_usec(clockid_t id) {
        struct timespec ts;

        /* Cannot fail for these clocks on Linux. */
        if (clock_gettime(id, &ts) < 0)
                abort();
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / NSEC_PER_USEC;
}

usec_t workload_now(void) {
        return clock_usec(CLOCK_MONOTONIC);
}

void workload_clock_init(WorkloadClock *c) {
        usec_t mono, real;

        assert(c);
        mono = clock_usec(CLOCK_MONOTONIC);
        real = clock_usec(CLOCK_REALTIME);
        c->unix_offset = real - mono;
}

usec_t workload_unix_usec(const WorkloadClock *c, usec_t monotonic) {
        assert(c);
        return monotonic + c->unix_offset;
}

int workload_log_open(const char *path, int *ret_fd) {
        int fd;

        assert(path);
        assert(ret_fd);

        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0)
                return negative_errno();
        *ret_fd = fd;
        return 0;
}

int workload_log_append(int fd, const char *format, ...) {
        _cleanup_free_ char *line = NULL;
        va_list ap;
        ssize_t n;
        int len;

        assert(fd >= 0);
        assert(format);

        va_start(ap, format);
        len = vsnprintf(NULL, 0, format, ap);
        va_end(ap);
        if (len < 0)
                return -EINVAL;

        /* Room for the newline and vsnprintf()'s NUL. */
        line = malloc((size_t) len + 2);
        if (!line)
                return -ENOMEM;
        va_start(ap, format);
        (void) vsnprintf(line, (size_t) len + 1, format, ap);
        va_end(ap);
        line[len] = '\n';

        n = write(fd, line, (size_t) len + 1);
        if (n < 0)
                return negative_errno();
        if (n != len + 1)
                return -EIO;
        return 0;
}

int workload_read_file(const char *path, size_t max, char **ret) {
        _cleanup_free_ char *buf = NULL;
        FILE *f;
        size_t len;
        bool bad;

        assert(path);
        assert(ret);

        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        buf = malloc(max + 2);
        if (!buf) {
                fclose(f);
                return -ENOMEM;
        }
        /* One byte more than allowed tells a file that is too long. */
        len = fread(buf, 1, max + 1, f);
        bad = ferror(f);
        fclose(f);
        if (bad)
                return -EIO;
        if (len > max)
                return -EFBIG;
        if (memchr(buf, '\0', len))
                return -EINVAL;
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        return 0;
}

int workload_signals_open(int *ret_fd) {
        sigset_t mask;
        int fd;

        assert(ret_fd);

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return negative_errno();
        fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (fd < 0)
                return negative_errno();
        *ret_fd = fd;
        return 0;
}

int workload_signals_wait(int fd, usec_t until, int *ret_signo) {
        assert(fd >= 0);
        assert(ret_signo);

        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                struct signalfd_siginfo si;
                struct timespec ts, *tsp = NULL;
                ssize_t n;
                int r;

                n = read(fd, &si, sizeof(si));
                if (n == (ssize_t) sizeof(si)) {
                        *ret_signo = (int) si.ssi_signo;
                        return 1;
                }
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return negative_errno();

                if (until != USEC_INFINITY) {
                        usec_t now = workload_now();

                        if (now >= until)
                                return 0;
                        ts.tv_sec = (time_t) ((until - now) / USEC_PER_SEC);
                        ts.tv_nsec = (long) ((until - now) % USEC_PER_SEC * NSEC_PER_USEC);
                        tsp = &ts;
                }
                r = ppoll(&pfd, 1, tsp, NULL);
                if (r < 0 && errno != EINTR)
                        return negative_errno();
        }
}
