/* SPDX-License-Identifier: MIT */
/* Clocks, whole-file I/O, random ids and host facts used by both daemons and
 * the CLI. Everything returns -errno; nothing here logs. */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static usec_t timespec_to_usec(const struct timespec *ts) {
        return (usec_t) ts->tv_sec * USEC_PER_SEC + (usec_t) ts->tv_nsec / NSEC_PER_USEC;
}

usec_t now_realtime_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return timespec_to_usec(&ts);
}

usec_t now_monotonic_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return timespec_to_usec(&ts);
}

usec_t thread_cpu_usec(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
                return 0;
        return timespec_to_usec(&ts);
}

int thread_run_delay_usec(int fd, usec_t *ret) {
        char buf[96];
        unsigned long long on_cpu, waited;
        ssize_t n;

        assert(ret);

        n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n < 0)
                return negative_errno();
        buf[n] = 0;
        if (sscanf(buf, "%llu %llu", &on_cpu, &waited) != 2)
                return -EBADMSG;
        if (on_cpu == 0) /* the kernel keeps no scheduler statistics */
                return -EOPNOTSUPP;
        *ret = (usec_t) (waited / NSEC_PER_USEC);
        return 0;
}

int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, allocated = 0;

        assert(path);
        assert(ret);

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();

        for (;;) {
                ssize_t n;

                if (allocated - len < 2) {
                        size_t want = allocated ? allocated * 2 : 4096;
                        char *p;

                        if (allocated > max + 1)
                                return -EFBIG;
                        p = realloc(buf, want);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        allocated = want;
                }
                n = read(fd, buf + len, allocated - len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len > max)
                        return -EFBIG;
        }

        buf[len] = 0;
        if (ret_len)
                *ret_len = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *p = data;
        int r;

        assert(path);

        if (asprintf(&tmp, "%s.tmp.%d", path, (int) getpid()) < 0)
                return -ENOMEM;

        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return negative_errno();

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        goto fail;
                }
                p += n;
                len -= (size_t) n;
        }
        if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
                r = negative_errno();
                goto fail;
        }
        if (rename(tmp, path) < 0) {
                r = negative_errno();
                goto fail;
        }
        /* The new name is durable only once the directory is: without this a
         * crash can bring back the old file, or none at all. */
        return fsync_directory_of(path);

fail:
        (void) unlink(tmp);
        return r;
}

int fsync_directory_of(const char *path) {
        _cleanup_free_ char *dir = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *slash;

        assert(path);

        slash = strrchr(path, '/');
        if (!slash)
                dir = strdup(".");
        else if (slash == path)
                dir = strdup("/");
        else
                dir = strndup(path, (size_t) (slash - path));
        if (!dir)
                return -ENOMEM;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fsync(fd) < 0)
                return negative_errno();
        return 0;
}

int mkdir_p(const char *path, unsigned mode) {
        _cleanup_free_ char *copy = NULL;

        assert(path);

        copy = strdup(path);
        if (!copy)
                return -ENOMEM;

        for (char *s = copy + 1;; s++) {
                if (*s != '/' && *s != 0)
                        continue;
                char saved = *s;
                *s = 0;
                if (mkdir(copy, mode) < 0 && errno != EEXIST)
                        return negative_errno();
                *s = saved;
                if (saved == 0)
                        break;
        }
        return 0;
}

int random_id(char ret[33]) {
        static const char hex[] = "0123456789abcdef";
        uint8_t b[16];
        size_t got = 0;

        while (got < sizeof(b)) {
                ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                got += (size_t) n;
        }
        for (size_t i = 0; i < sizeof(b); i++) {
                ret[2 * i] = hex[b[i] >> 4];
                ret[2 * i + 1] = hex[b[i] & 15];
        }
        ret[32] = 0;
        return 0;
}

int hostname_get(char **ret) {
        char buf[256] = { 0 };

        assert(ret);

        if (gethostname(buf, sizeof(buf) - 1) < 0)
                return negative_errno();
        if (isempty(buf))
                return -ENXIO;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

int boot_id_get(char ret[37]) {
        _cleanup_free_ char *s = NULL;
        size_t len;
        int r;

        r = read_full_file("/proc/sys/kernel/random/boot_id", 64, &s, &len);
        if (r < 0)
                return r;
        if (len < 36)
                return -EIO;
        memcpy(ret, s, 36);
        ret[36] = 0;
        return 0;
}
