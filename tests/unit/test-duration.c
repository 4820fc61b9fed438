/* SPDX-License-Identifier: MIT */
/* duration_parse/format and size_parse/format: systemd spellings, junk,
 * overflow, and that every formatted value parses back to itself. */
#include <errno.h>

#include "duration.h"
#include "tap.h"

#define MIN_US (60 * USEC_PER_SEC)
#define HOUR_US (60 * MIN_US)
#define DAY_US (24 * HOUR_US)
#define WEEK_US (7 * DAY_US)

static usec_t parse_ok(const char *s) {
        usec_t u = 12345;
        int r = duration_parse(s, &u);

        if (r < 0) {
                printf("#   duration_parse(\"%s\") = %d\n", s, r);
                return 0xdeadbeef;
        }
        return u;
}

static int parse_err(const char *s) {
        usec_t u = 777;
        int r = duration_parse(s, &u);

        /* ret_* untouched on failure */
        if (u != 777)
                return 1;
        return r;
}

TEST(duration_units) {
        ASSERT_EQ_UINT(parse_ok("1us"), 1);
        ASSERT_EQ_UINT(parse_ok("1usec"), 1);
        ASSERT_EQ_UINT(parse_ok("7\xc2\xb5s"), 7);
        ASSERT_EQ_UINT(parse_ok("7\xce\xbcs"), 7);
        ASSERT_EQ_UINT(parse_ok("500ms"), 500 * USEC_PER_MSEC);
        ASSERT_EQ_UINT(parse_ok("500msec"), 500 * USEC_PER_MSEC);
        ASSERT_EQ_UINT(parse_ok("5s"), 5 * USEC_PER_SEC);
        ASSERT_EQ_UINT(parse_ok("5sec"), 5 * USEC_PER_SEC);
        ASSERT_EQ_UINT(parse_ok("1second"), USEC_PER_SEC);
        ASSERT_EQ_UINT(parse_ok("5seconds"), 5 * USEC_PER_SEC);
        ASSERT_EQ_UINT(parse_ok("2m"), 2 * MIN_US);
        ASSERT_EQ_UINT(parse_ok("2min"), 2 * MIN_US);
        ASSERT_EQ_UINT(parse_ok("1minute"), MIN_US);
        ASSERT_EQ_UINT(parse_ok("3minutes"), 3 * MIN_US);
        ASSERT_EQ_UINT(parse_ok("1h"), HOUR_US);
        ASSERT_EQ_UINT(parse_ok("2hr"), 2 * HOUR_US);
        ASSERT_EQ_UINT(parse_ok("1hour"), HOUR_US);
        ASSERT_EQ_UINT(parse_ok("4hours"), 4 * HOUR_US);
        ASSERT_EQ_UINT(parse_ok("1d"), DAY_US);
        ASSERT_EQ_UINT(parse_ok("1day"), DAY_US);
        ASSERT_EQ_UINT(parse_ok("2days"), 2 * DAY_US);
        ASSERT_EQ_UINT(parse_ok("1w"), WEEK_US);
        ASSERT_EQ_UINT(parse_ok("1week"), WEEK_US);
        ASSERT_EQ_UINT(parse_ok("3weeks"), 3 * WEEK_US);
}

TEST(duration_bare_number_is_seconds) {
        ASSERT_EQ_UINT(parse_ok("0"), 0);
        ASSERT_EQ_UINT(parse_ok("5"), 5 * USEC_PER_SEC);
        ASSERT_EQ_UINT(parse_ok("  30  "), 30 * USEC_PER_SEC);
        ASSERT_EQ_UINT(parse_ok("1.5"), 1500 * USEC_PER_MSEC);
}

TEST(duration_components_add_up) {
        ASSERT_EQ_UINT(parse_ok("1h 30min"), HOUR_US + 30 * MIN_US);
        ASSERT_EQ_UINT(parse_ok("1h30min"), HOUR_US + 30 * MIN_US);
        ASSERT_EQ_UINT(parse_ok("1 h 30 min"), HOUR_US + 30 * MIN_US);
        ASSERT_EQ_UINT(parse_ok("1s 500ms 3us"), USEC_PER_SEC + 500 * USEC_PER_MSEC + 3);
        ASSERT_EQ_UINT(parse_ok("2min 5"), 2 * MIN_US + 5 * USEC_PER_SEC);
        ASSERT_EQ_UINT(parse_ok("5s 5s"), 10 * USEC_PER_SEC);
        ASSERT_EQ_UINT(parse_ok("\t1d\t1h\n"), DAY_US + HOUR_US);
}

TEST(duration_fractions) {
        ASSERT_EQ_UINT(parse_ok("1.5s"), 1500 * USEC_PER_MSEC);
        ASSERT_EQ_UINT(parse_ok(".5s"), 500 * USEC_PER_MSEC);
        ASSERT_EQ_UINT(parse_ok("0.25min"), 15 * USEC_PER_SEC);
        ASSERT_EQ_UINT(parse_ok("1.5h"), HOUR_US + 30 * MIN_US);
        ASSERT_EQ_UINT(parse_ok("0.001ms"), 1);
        /* below a microsecond is cut, not rounded */
        ASSERT_EQ_UINT(parse_ok("0.9us"), 0);
        ASSERT_EQ_UINT(parse_ok("1.0009ms"), 1000);
        ASSERT_EQ_UINT(parse_ok("0.000001s"), 1);
        ASSERT_EQ_UINT(parse_ok("0.0000019s"), 1);
        ASSERT_EQ_UINT(parse_ok("1.33333333333333333333333333min"), 79999999);
}

TEST(duration_infinity) {
        ASSERT_EQ_UINT(parse_ok("infinity"), USEC_INFINITY);
        ASSERT_EQ_UINT(parse_ok(" infinity "), USEC_INFINITY);
        ASSERT_ERR(parse_err("infinity5"), -EINVAL);
        ASSERT_ERR(parse_err("5 infinity"), -EINVAL);
        ASSERT_ERR(parse_err("infinitys"), -EINVAL);
        ASSERT_ERR(parse_err("Infinity"), -EINVAL);
}

TEST(duration_junk) {
        static const char *const bad[] = {
                "",     " ",      "s",      "ms",   "-1s",     "+1s",    "1x",     "1 sx",
                "5.",   ".",      "5.5.5",  "5s.5", "1,5s",    "1e3",    "0x10",   "1S",
                "1 MS", "1h-30m", "1h,30m", "abc",  "5s junk", "5 5x",   "1\xc2s", "\xb5s",
                "1ns",  "1y",     "1month", "1;",   "5s;",     "1_000s",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = parse_err(bad[i]);

                if (r != -EINVAL)
                        TAP_FAIL_("duration_parse(\"%s\") = %d, expected -EINVAL", bad[i], r);
        }
}

TEST(duration_overflow) {
        /* the largest finite value parses, one more does not */
        ASSERT_EQ_UINT(parse_ok("18446744073709551614us"), UINT64_MAX - 1);
        ASSERT_ERR(parse_err("18446744073709551615us"), -ERANGE);
        ASSERT_ERR(parse_err("18446744073709551616us"), -ERANGE);
        ASSERT_ERR(parse_err("99999999999999999999999s"), -ERANGE);
        ASSERT_ERR(parse_err("30500569w"), -ERANGE);
        ASSERT_OK(duration_parse("30500568w", &(usec_t){ 0 }));
        ASSERT_ERR(parse_err("18446744073709551614us 1us"), -ERANGE);
        ASSERT_ERR(parse_err("18446744073709551614us 2us"), -ERANGE);
        ASSERT_ERR(parse_err("20000000000000.5s"), -ERANGE);
}

static const char *fmt(usec_t u) {
        static char buf[DURATION_MAX_LEN];
        return duration_format(buf, sizeof(buf), u);
}

TEST(duration_format_largest_exact_units) {
        ASSERT_STREQ(fmt(0), "0");
        ASSERT_STREQ(fmt(1), "1us");
        ASSERT_STREQ(fmt(500 * USEC_PER_MSEC), "500ms");
        ASSERT_STREQ(fmt(1500 * USEC_PER_MSEC), "1s 500ms");
        ASSERT_STREQ(fmt(5 * USEC_PER_SEC), "5s");
        ASSERT_STREQ(fmt(2 * MIN_US), "2min");
        ASSERT_STREQ(fmt(HOUR_US + 30 * MIN_US), "1h 30min");
        ASSERT_STREQ(fmt(DAY_US), "1d");
        ASSERT_STREQ(fmt(WEEK_US + DAY_US + 1), "1w 1d 1us");
        ASSERT_STREQ(fmt(USEC_INFINITY), "infinity");
        ASSERT_STREQ(fmt(UINT64_MAX - 1), "30500568w 6d 8h 1min 49s 551ms 614us");
}

TEST(duration_format_small_buffers) {
        char buf[8];

        memset(buf, 'x', sizeof(buf));
        duration_format(buf, sizeof(buf), HOUR_US + 30 * MIN_US + 5 * USEC_PER_SEC);
        ASSERT_EQ_UINT(strlen(buf), 7);
        ASSERT_STREQ(buf, "1h 30mi");

        memset(buf, 'x', sizeof(buf));
        duration_format(buf, 1, 12345);
        ASSERT_STREQ(buf, "");
        ASSERT_TRUE(buf[1] == 'x');

        /* len 0 writes nothing at all */
        memset(buf, 'x', sizeof(buf));
        ASSERT_TRUE(duration_format(buf, 0, 5) == buf);
        ASSERT_TRUE(buf[0] == 'x');
}

/* xorshift64*: fixed seed, so a failure reproduces. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) {
        rnd_state ^= rnd_state >> 12;
        rnd_state ^= rnd_state << 25;
        rnd_state ^= rnd_state >> 27;
        return rnd_state * 2685821657736338717ULL;
}

TEST(duration_format_parse_roundtrip) {
        for (int i = 0; i < 20000; i++) {
                char buf[DURATION_MAX_LEN];
                usec_t u = rnd() >> (rnd() % 64), back = 0;

                if (u == USEC_INFINITY)
                        continue;
                duration_format(buf, sizeof(buf), u);
                ASSERT_OK(duration_parse(buf, &back));
                if (back != u)
                        TAP_FAIL_("%ju -> \"%s\" -> %ju", (uintmax_t) u, buf, (uintmax_t) back);
        }
}

static uint64_t size_ok(const char *s) {
        uint64_t v = 0;
        int r = size_parse(s, &v);

        if (r < 0) {
                printf("#   size_parse(\"%s\") = %d\n", s, r);
                return 0xdeadbeef;
        }
        return v;
}

TEST(size_parse_suffixes) {
        ASSERT_EQ_UINT(size_ok("0"), 0);
        ASSERT_EQ_UINT(size_ok("512"), 512);
        ASSERT_EQ_UINT(size_ok("512B"), 512);
        ASSERT_EQ_UINT(size_ok("1K"), 1024);
        ASSERT_EQ_UINT(size_ok("1KB"), 1024);
        ASSERT_EQ_UINT(size_ok("1KiB"), 1024);
        ASSERT_EQ_UINT(size_ok("512M"), 512ULL << 20);
        ASSERT_EQ_UINT(size_ok("16G"), 16ULL << 30);
        ASSERT_EQ_UINT(size_ok("16GiB"), 16ULL << 30);
        ASSERT_EQ_UINT(size_ok("2T"), 2ULL << 40);
        ASSERT_EQ_UINT(size_ok(" 16 G "), 16ULL << 30);
        ASSERT_EQ_UINT(size_ok("1.5G"), 3ULL << 29);
        ASSERT_EQ_UINT(size_ok("0.5K"), 512);
        ASSERT_EQ_UINT(size_ok("18446744073709551615"), UINT64_MAX);
        ASSERT_EQ_UINT(size_ok("16777215T"), 16777215ULL << 40);
}

TEST(size_parse_junk_and_overflow) {
        static const char *const bad[] = {
                "",    " ",    "G",  "-1", "1g",   "1k",  "1KK", "1Ki", "1iB",  "1 K B",
                "1.5", "1.5B", "1P", "1E", "1GBB", "1 2", "0x1", "1e3", "1,5G", "G1",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint64_t v = 777;
                int r = size_parse(bad[i], &v);

                if (r != -EINVAL || v != 777)
                        TAP_FAIL_("size_parse(\"%s\") = %d (%ju)", bad[i], r, (uintmax_t) v);
        }

        uint64_t v = 0;
        ASSERT_ERR(size_parse("18446744073709551616", &v), -ERANGE);
        ASSERT_ERR(size_parse("16777216T", &v), -ERANGE);
        ASSERT_ERR(size_parse("99999999999999999999G", &v), -ERANGE);
}

static const char *sfmt(uint64_t v) {
        static char buf[SIZE_MAX_LEN];
        return size_format(buf, sizeof(buf), v);
}

TEST(size_format_exact) {
        ASSERT_STREQ(sfmt(0), "0");
        ASSERT_STREQ(sfmt(512), "512");
        ASSERT_STREQ(sfmt(1024), "1K");
        ASSERT_STREQ(sfmt(1536), "1536");
        ASSERT_STREQ(sfmt(3ULL << 29), "1536M");
        ASSERT_STREQ(sfmt(16ULL << 30), "16G");
        ASSERT_STREQ(sfmt(1ULL << 40), "1T");
        ASSERT_STREQ(sfmt(1ULL << 50), "1024T");
        ASSERT_STREQ(sfmt(UINT64_MAX), "18446744073709551615");

        for (int i = 0; i < 20000; i++) {
                uint64_t v = rnd() >> (rnd() % 64), back = 0;

                if (i % 2)
                        v &= ~((1ULL << (rnd() % 41)) - 1); /* make suffixes likely */
                ASSERT_OK(size_parse(sfmt(v), &back));
                ASSERT_EQ_UINT(back, v);
        }
}

int main(void) {
        return tap_run(TESTS(duration_units, duration_bare_number_is_seconds,
                             duration_components_add_up, duration_fractions, duration_infinity,
                             duration_junk, duration_overflow, duration_format_largest_exact_units,
                             duration_format_small_buffers, duration_format_parse_roundtrip,
                             size_parse_suffixes, size_parse_junk_and_overflow, size_format_exact));
}
