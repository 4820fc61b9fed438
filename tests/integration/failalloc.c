/* SPDX-License-Identifier: MIT */
/* An LD_PRELOAD shim for the integration tests that makes chosen allocations
 * fail, so out-of-memory paths run in the real agent. Disarmed it only
 * forwards to glibc. It is armed by a file (BATON_FAILALLOC_ARM names it)
 * holding "COUNT FUNCTION...": the next COUNT allocations (malloc, calloc,
 * realloc, reallocarray, strdup, strndup) called directly from one of those
 * functions of the main program return NULL with ENOMEM. The file is read
 * at most every 10 ms and removed once read; every failure is written to
 * stderr. Functions are found in the program's own symbol table, so static
 * ones can be named too (unless the compiler inlined them). Not for
 * sanitized builds: their runtime must come first. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);

#define MAX_FUNCS 16
#define CHECK_EVERY_NS (10 * 1000 * 1000)

static struct {
        uintptr_t lo, hi;
        char name[64];
} funcs[MAX_FUNCS];
static int n_funcs;
static int to_fail;
static long next_check_ns;

/* Writes without allocating: this runs inside malloc. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
        char buf[256];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n > 0)
                (void) !write(STDERR_FILENO, buf,
                              (size_t) n < sizeof(buf) ? (size_t) n : sizeof(buf));
}

static int main_program_bias(struct dl_phdr_info *info, size_t size, void *data) {
        /* The first object is the program itself. */
        *(uintptr_t *) data = info->dlpi_addr;
        return 1;
}

/* Finds the named functions in /proc/self/exe's symbol table. */
static void resolve(char names[][64], int n) {
        uintptr_t bias = 0;
        struct stat st;
        const unsigned char *m;
        const Elf64_Ehdr *eh;
        const Elf64_Shdr *sh;
        int fd;

        n_funcs = 0;
        dl_iterate_phdr(main_program_bias, &bias);
        fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        if (fstat(fd, &st) < 0) {
                close(fd);
                return;
        }
        m = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (m == MAP_FAILED)
                return;
        eh = (const Elf64_Ehdr *) m;
        sh = (const Elf64_Shdr *) (m + eh->e_shoff);
        for (int i = 0; i < eh->e_shnum; i++) {
                const Elf64_Sym *syms;
                const char *strtab;
                size_t count;

                if (sh[i].sh_type != SHT_SYMTAB)
                        continue;
                syms = (const Elf64_Sym *) (m + sh[i].sh_offset);
                strtab = (const char *) (m + sh[sh[i].sh_link].sh_offset);
                count = sh[i].sh_size / sizeof(Elf64_Sym);
                for (size_t k = 0; k < count; k++) {
                        const char *name = strtab + syms[k].st_name;

                        if (ELF64_ST_TYPE(syms[k].st_info) != STT_FUNC || syms[k].st_size == 0)
                                continue;
                        for (int j = 0; j < n && n_funcs < MAX_FUNCS; j++)
                                if (strcmp(name, names[j]) == 0) {
                                        funcs[n_funcs].lo = bias + syms[k].st_value;
                                        funcs[n_funcs].hi = funcs[n_funcs].lo + syms[k].st_size;
                                        snprintf(funcs[n_funcs].name, sizeof(funcs[0].name), "%s",
                                                 name);
                                        n_funcs++;
                                }
                }
        }
        munmap((void *) m, (size_t) st.st_size);
}

static void check_arm_file(void) {
        static const char *path;
        static bool looked;
        char buf[1024], names[MAX_FUNCS][64];
        struct timespec ts;
        long now;
        ssize_t len;
        int fd, count = 0, n = 0;
        char *p, *tok;

        if (!looked) {
                path = getenv("BATON_FAILALLOC_ARM");
                looked = true;
        }
        if (!path)
                return;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        now = ts.tv_sec * 1000000000L + ts.tv_nsec;
        if (now < __atomic_load_n(&next_check_ns, __ATOMIC_RELAXED))
                return;
        __atomic_store_n(&next_check_ns, now + CHECK_EVERY_NS, __ATOMIC_RELAXED);

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0 || unlink(path) < 0)
                return;
        buf[len] = 0;
        for (p = buf; (tok = strtok_r(p, " \t\n", &p));) {
                if (count == 0) {
                        count = atoi(tok);
                        continue;
                }
                if (n < MAX_FUNCS)
                        snprintf(names[n++], sizeof(names[0]), "%s", tok);
        }
        resolve(names, n);
        __atomic_store_n(&to_fail, n_funcs > 0 ? count : 0, __ATOMIC_SEQ_CST);
        say("failalloc: armed: the next %d allocation(s) from %d function(s) fail\n", count,
            n_funcs);
}

static bool should_fail(uintptr_t caller) {
        check_arm_file();
        if (__atomic_load_n(&to_fail, __ATOMIC_RELAXED) <= 0)
                return false;
        for (int i = 0; i < n_funcs; i++)
                if (caller >= funcs[i].lo && caller < funcs[i].hi) {
                        if (__atomic_sub_fetch(&to_fail, 1, __ATOMIC_SEQ_CST) < 0)
                                return false;
                        say("failalloc: failing an allocation in %s\n", funcs[i].name);
                        errno = ENOMEM;
                        return true;
                }
        return false;
}

#define CALLER ((uintptr_t) __builtin_return_address(0))

void *malloc(size_t size) {
        if (should_fail(CALLER))
                return NULL;
        return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
        if (should_fail(CALLER))
                return NULL;
        return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size) {
        if (should_fail(CALLER))
                return NULL;
        return __libc_realloc(p, size);
}

void *reallocarray(void *p, size_t n, size_t size) {
        if (should_fail(CALLER))
                return NULL;
        if (size != 0 && n > SIZE_MAX / size) {
                errno = ENOMEM;
                return NULL;
        }
        return __libc_realloc(p, n * size);
}

char *strdup(const char *s) {
        size_t len = strlen(s) + 1;
        char *p;

        if (should_fail(CALLER))
                return NULL;
        p = __libc_malloc(len);
        return p ? memcpy(p, s, len) : NULL;
}

char *strndup(const char *s, size_t max) {
        size_t len = strnlen(s, max);
        char *p;

        if (should_fail(CALLER))
                return NULL;
        p = __libc_malloc(len + 1);
        if (!p)
                return NULL;
        memcpy(p, s, len);
        p[len] = 0;
        return p;
}
