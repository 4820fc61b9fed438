/* SPDX-License-Identifier: MIT */
/* Host capacity from the text of /proc files. Pure: the shell reads the
 * files, this parses them, so odd kernels and truncated files are testable. */
#pragma once

#include <stdint.h>

typedef struct HostCapacity {
        uint32_t cores;
        uint64_t memory_total; /* bytes */
        uint64_t memory_available;
        uint32_t load1_x100, load5_x100, load15_x100;
} HostCapacity;

/* Parses /proc/meminfo text: MemTotal and MemAvailable (kB). Falls back to
 * MemFree + Buffers + Cached when MemAvailable is missing (old kernels).
 * -EINVAL if MemTotal is missing or a number is malformed. */
int capacity_parse_meminfo(const char *text, uint64_t *ret_total, uint64_t *ret_available);

/* Parses /proc/loadavg text ("0.52 0.58 0.59 1/467 12345"). */
int capacity_parse_loadavg(const char *text, uint32_t *ret_load1, uint32_t *ret_load5,
                           uint32_t *ret_load15);

/* Counts CPUs in a cpuset list such as /sys/fs/cgroup/cpuset.cpus.effective
 * or /sys/devices/system/cpu/online ("0-3,8"). -EINVAL on junk. */
int capacity_parse_cpu_list(const char *text, uint32_t *ret);
