/* SPDX-License-Identifier: MIT */
/* Parsing of /proc/meminfo, /proc/loadavg and CPU lists, including the odd
 * and broken inputs a fleet of kernels produces. */
#include <errno.h>

#include "capacity.h"
#include "tap.h"

static const char meminfo[] = "MemTotal:       24578152 kB\n"
                              "MemFree:         1234567 kB\n"
                              "MemAvailable:   20000000 kB\n"
                              "Buffers:          100000 kB\n"
                              "Cached:          3000000 kB\n";

TEST(meminfo_modern) {
        uint64_t total, avail;

        ASSERT_OK(capacity_parse_meminfo(meminfo, &total, &avail));
        ASSERT_EQ_UINT(total, 24578152ULL * 1024);
        ASSERT_EQ_UINT(avail, 20000000ULL * 1024);
}

TEST(meminfo_without_memavailable_falls_back) {
        uint64_t total, avail;

        ASSERT_OK(capacity_parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\n"
                                         "Cached: 50 kB\n",
                                         &total, &avail));
        ASSERT_EQ_UINT(total, 1000 * 1024);
        ASSERT_EQ_UINT(avail, 160 * 1024);
}

TEST(meminfo_broken) {
        uint64_t total = 7, avail = 7;

        ASSERT_ERR(capacity_parse_meminfo("", &total, &avail), -EINVAL);
        ASSERT_ERR(capacity_parse_meminfo("MemFree: 1 kB\n", &total, &avail), -EINVAL);
        ASSERT_ERR(capacity_parse_meminfo("MemTotal: x kB\n", &total, &avail), -EINVAL);
        ASSERT_ERR(capacity_parse_meminfo("MemTotal: 12 MB\nMemAvailable: 1 kB\n", &total, &avail),
                   -EINVAL);
        ASSERT_ERR(capacity_parse_meminfo("MemTotal: 99999999999999999999999 kB\n", &total, &avail),
                   -ERANGE);
        ASSERT_EQ_UINT(total, 7); /* untouched on failure */
        ASSERT_EQ_UINT(avail, 7);
}

TEST(meminfo_key_prefix_is_not_a_match) {
        uint64_t total, avail;

        /* "MemTotalX" must not be read as MemTotal */
        ASSERT_ERR(capacity_parse_meminfo("MemTotalX: 5 kB\nMemFree: 1 kB\n", &total, &avail),
                   -EINVAL);
}

TEST(meminfo_available_capped_at_total) {
        uint64_t total, avail;

        ASSERT_OK(capacity_parse_meminfo("MemTotal: 10 kB\nMemAvailable: 20 kB\n", &total, &avail));
        ASSERT_EQ_UINT(avail, total);
}

TEST(loadavg) {
        uint32_t a, b, c;

        ASSERT_OK(capacity_parse_loadavg("0.52 1.58 12.59 1/467 12345\n", &a, &b, &c));
        ASSERT_EQ_UINT(a, 52);
        ASSERT_EQ_UINT(b, 158);
        ASSERT_EQ_UINT(c, 1259);
        ASSERT_OK(capacity_parse_loadavg("3 4.5 0.123 1/1 1", &a, &b, &c));
        ASSERT_EQ_UINT(a, 300);
        ASSERT_EQ_UINT(b, 450);
        ASSERT_EQ_UINT(c, 12);
}

TEST(loadavg_broken) {
        uint32_t a = 1, b = 1, c = 1;

        ASSERT_ERR(capacity_parse_loadavg("", &a, &b, &c), -EINVAL);
        ASSERT_ERR(capacity_parse_loadavg("0.5 0.5", &a, &b, &c), -EINVAL);
        ASSERT_ERR(capacity_parse_loadavg("0.5x 0.5 0.5", &a, &b, &c), -EINVAL);
        ASSERT_ERR(capacity_parse_loadavg("-1 0.5 0.5", &a, &b, &c), -EINVAL);
        ASSERT_ERR(capacity_parse_loadavg("99999999 0 0", &a, &b, &c), -ERANGE);
        ASSERT_EQ_UINT(a, 1);
}

TEST(cpu_lists) {
        uint32_t n = 0;

        ASSERT_OK(capacity_parse_cpu_list("0-3\n", &n));
        ASSERT_EQ_UINT(n, 4);
        ASSERT_OK(capacity_parse_cpu_list("0\n", &n));
        ASSERT_EQ_UINT(n, 1);
        ASSERT_OK(capacity_parse_cpu_list("0-3,8-11,16", &n));
        ASSERT_EQ_UINT(n, 9);
        ASSERT_ERR(capacity_parse_cpu_list("\n", &n), -EINVAL);
        ASSERT_ERR(capacity_parse_cpu_list("", &n), -EINVAL);
        ASSERT_TRUE(capacity_parse_cpu_list("zero", &n) < 0);
        ASSERT_TRUE(capacity_parse_cpu_list("3-1", &n) < 0);
}

int main(void) {
        return tap_run(TESTS(meminfo_modern, meminfo_without_memavailable_falls_back,
                             meminfo_broken, meminfo_key_prefix_is_not_a_match,
                             meminfo_available_capped_at_total, loadavg, loadavg_broken,
                             cpu_lists));
}
