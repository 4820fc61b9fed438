/* SPDX-License-Identifier: MIT */
/* A tiny TAP producer for C tests, in the manner of libuv's test/task.h:
 * ASSERT_* are never compiled out and report file:line with both values.
 * A test file defines its cases with TEST(name) and lists them in main():
 *
 *     TEST(parses_seconds) { ASSERT_EQ_INT(…); }
 *     int main(void) { return tap_run(TESTS(parses_seconds, …)); }
 */
#pragma once

#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TapCase {
        const char *name;
        void (*fn)(void);
} TapCase;

extern jmp_buf tap_jmp_;
extern int tap_failed_;
jmp_buf tap_jmp_;
int tap_failed_;

#define TEST(name) static void test_##name(void)
#define TAP_CASE_(name)                                                                            \
        { #name, test_##name }
#define TESTS(...) TAP_CASES_(__VA_ARGS__)

/* Expands TESTS(a, b, c) into a TapCase array and its length. */
#define TAP_MAP1_(m, x) m(x)
#define TAP_CASES_(...)                                                                            \
        (const TapCase[]){ TAP_FOREACH_(TAP_CASE_, __VA_ARGS__) },                                 \
                sizeof((const TapCase[]){ TAP_FOREACH_(TAP_CASE_, __VA_ARGS__) }) /                \
                        sizeof(TapCase)

#define TAP_N_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18,    \
               _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32, _33, _34,     \
               _35, _36, _37, _38, _39, _40, _41, _42, _43, _44, _45, _46, _47, _48, _49, _50,     \
               _51, _52, _53, _54, _55, _56, _57, _58, _59, _60, _61, _62, _63, _64, N, ...)       \
        N
#define TAP_COUNT_(...)                                                                            \
        TAP_N_(__VA_ARGS__, 64, 63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48,    \
               47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, \
               26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,  \
               4, 3, 2, 1)
#define TAP_CAT_(a, b) TAP_CAT2_(a, b)
#define TAP_CAT2_(a, b) a##b
#define TAP_FOREACH_(m, ...) TAP_CAT_(TAP_FE_, TAP_COUNT_(__VA_ARGS__))(m, __VA_ARGS__)
#define TAP_FE_1(m, x) m(x)
#define TAP_FE_2(m, x, ...) m(x), TAP_FE_1(m, __VA_ARGS__)
#define TAP_FE_3(m, x, ...) m(x), TAP_FE_2(m, __VA_ARGS__)
#define TAP_FE_4(m, x, ...) m(x), TAP_FE_3(m, __VA_ARGS__)
#define TAP_FE_5(m, x, ...) m(x), TAP_FE_4(m, __VA_ARGS__)
#define TAP_FE_6(m, x, ...) m(x), TAP_FE_5(m, __VA_ARGS__)
#define TAP_FE_7(m, x, ...) m(x), TAP_FE_6(m, __VA_ARGS__)
#define TAP_FE_8(m, x, ...) m(x), TAP_FE_7(m, __VA_ARGS__)
#define TAP_FE_9(m, x, ...) m(x), TAP_FE_8(m, __VA_ARGS__)
#define TAP_FE_10(m, x, ...) m(x), TAP_FE_9(m, __VA_ARGS__)
#define TAP_FE_11(m, x, ...) m(x), TAP_FE_10(m, __VA_ARGS__)
#define TAP_FE_12(m, x, ...) m(x), TAP_FE_11(m, __VA_ARGS__)
#define TAP_FE_13(m, x, ...) m(x), TAP_FE_12(m, __VA_ARGS__)
#define TAP_FE_14(m, x, ...) m(x), TAP_FE_13(m, __VA_ARGS__)
#define TAP_FE_15(m, x, ...) m(x), TAP_FE_14(m, __VA_ARGS__)
#define TAP_FE_16(m, x, ...) m(x), TAP_FE_15(m, __VA_ARGS__)
#define TAP_FE_17(m, x, ...) m(x), TAP_FE_16(m, __VA_ARGS__)
#define TAP_FE_18(m, x, ...) m(x), TAP_FE_17(m, __VA_ARGS__)
#define TAP_FE_19(m, x, ...) m(x), TAP_FE_18(m, __VA_ARGS__)
#define TAP_FE_20(m, x, ...) m(x), TAP_FE_19(m, __VA_ARGS__)
#define TAP_FE_21(m, x, ...) m(x), TAP_FE_20(m, __VA_ARGS__)
#define TAP_FE_22(m, x, ...) m(x), TAP_FE_21(m, __VA_ARGS__)
#define TAP_FE_23(m, x, ...) m(x), TAP_FE_22(m, __VA_ARGS__)
#define TAP_FE_24(m, x, ...) m(x), TAP_FE_23(m, __VA_ARGS__)
#define TAP_FE_25(m, x, ...) m(x), TAP_FE_24(m, __VA_ARGS__)
#define TAP_FE_26(m, x, ...) m(x), TAP_FE_25(m, __VA_ARGS__)
#define TAP_FE_27(m, x, ...) m(x), TAP_FE_26(m, __VA_ARGS__)
#define TAP_FE_28(m, x, ...) m(x), TAP_FE_27(m, __VA_ARGS__)
#define TAP_FE_29(m, x, ...) m(x), TAP_FE_28(m, __VA_ARGS__)
#define TAP_FE_30(m, x, ...) m(x), TAP_FE_29(m, __VA_ARGS__)
#define TAP_FE_31(m, x, ...) m(x), TAP_FE_30(m, __VA_ARGS__)
#define TAP_FE_32(m, x, ...) m(x), TAP_FE_31(m, __VA_ARGS__)
#define TAP_FE_33(m, x, ...) m(x), TAP_FE_32(m, __VA_ARGS__)
#define TAP_FE_34(m, x, ...) m(x), TAP_FE_33(m, __VA_ARGS__)
#define TAP_FE_35(m, x, ...) m(x), TAP_FE_34(m, __VA_ARGS__)
#define TAP_FE_36(m, x, ...) m(x), TAP_FE_35(m, __VA_ARGS__)
#define TAP_FE_37(m, x, ...) m(x), TAP_FE_36(m, __VA_ARGS__)
#define TAP_FE_38(m, x, ...) m(x), TAP_FE_37(m, __VA_ARGS__)
#define TAP_FE_39(m, x, ...) m(x), TAP_FE_38(m, __VA_ARGS__)
#define TAP_FE_40(m, x, ...) m(x), TAP_FE_39(m, __VA_ARGS__)
#define TAP_FE_41(m, x, ...) m(x), TAP_FE_40(m, __VA_ARGS__)
#define TAP_FE_42(m, x, ...) m(x), TAP_FE_41(m, __VA_ARGS__)
#define TAP_FE_43(m, x, ...) m(x), TAP_FE_42(m, __VA_ARGS__)
#define TAP_FE_44(m, x, ...) m(x), TAP_FE_43(m, __VA_ARGS__)
#define TAP_FE_45(m, x, ...) m(x), TAP_FE_44(m, __VA_ARGS__)
#define TAP_FE_46(m, x, ...) m(x), TAP_FE_45(m, __VA_ARGS__)
#define TAP_FE_47(m, x, ...) m(x), TAP_FE_46(m, __VA_ARGS__)
#define TAP_FE_48(m, x, ...) m(x), TAP_FE_47(m, __VA_ARGS__)
#define TAP_FE_49(m, x, ...) m(x), TAP_FE_48(m, __VA_ARGS__)
#define TAP_FE_50(m, x, ...) m(x), TAP_FE_49(m, __VA_ARGS__)
#define TAP_FE_51(m, x, ...) m(x), TAP_FE_50(m, __VA_ARGS__)
#define TAP_FE_52(m, x, ...) m(x), TAP_FE_51(m, __VA_ARGS__)
#define TAP_FE_53(m, x, ...) m(x), TAP_FE_52(m, __VA_ARGS__)
#define TAP_FE_54(m, x, ...) m(x), TAP_FE_53(m, __VA_ARGS__)
#define TAP_FE_55(m, x, ...) m(x), TAP_FE_54(m, __VA_ARGS__)
#define TAP_FE_56(m, x, ...) m(x), TAP_FE_55(m, __VA_ARGS__)
#define TAP_FE_57(m, x, ...) m(x), TAP_FE_56(m, __VA_ARGS__)
#define TAP_FE_58(m, x, ...) m(x), TAP_FE_57(m, __VA_ARGS__)
#define TAP_FE_59(m, x, ...) m(x), TAP_FE_58(m, __VA_ARGS__)
#define TAP_FE_60(m, x, ...) m(x), TAP_FE_59(m, __VA_ARGS__)
#define TAP_FE_61(m, x, ...) m(x), TAP_FE_60(m, __VA_ARGS__)
#define TAP_FE_62(m, x, ...) m(x), TAP_FE_61(m, __VA_ARGS__)
#define TAP_FE_63(m, x, ...) m(x), TAP_FE_62(m, __VA_ARGS__)
#define TAP_FE_64(m, x, ...) m(x), TAP_FE_63(m, __VA_ARGS__)

#define TAP_FAIL_(...)                                                                             \
        do {                                                                                       \
                printf("#   %s:%d: ", __FILE__, __LINE__);                                         \
                printf(__VA_ARGS__);                                                               \
                printf("\n");                                                                      \
                fflush(stdout);                                                                    \
                longjmp(tap_jmp_, 1);                                                              \
        } while (0)

#define ASSERT_TRUE(e)                                                                             \
        do {                                                                                       \
                if (!(e))                                                                          \
                        TAP_FAIL_("assertion failed: %s", #e);                                     \
        } while (0)
#define ASSERT_FALSE(e) ASSERT_TRUE(!(e))

#define ASSERT_CMP_INT_(a, op, b)                                                                  \
        do {                                                                                       \
                intmax_t a_ = (intmax_t) (a), b_ = (intmax_t) (b);                                 \
                if (!(a_ op b_))                                                                   \
                        TAP_FAIL_("%s %s %s: %jd vs %jd", #a, #op, #b, a_, b_);                    \
        } while (0)
#define ASSERT_CMP_UINT_(a, op, b)                                                                 \
        do {                                                                                       \
                uintmax_t a_ = (uintmax_t) (a), b_ = (uintmax_t) (b);                              \
                if (!(a_ op b_))                                                                   \
                        TAP_FAIL_("%s %s %s: %ju vs %ju", #a, #op, #b, a_, b_);                    \
        } while (0)

#define ASSERT_EQ_INT(a, b) ASSERT_CMP_INT_(a, ==, b)
#define ASSERT_NE_INT(a, b) ASSERT_CMP_INT_(a, !=, b)
#define ASSERT_LT_INT(a, b) ASSERT_CMP_INT_(a, <, b)
#define ASSERT_LE_INT(a, b) ASSERT_CMP_INT_(a, <=, b)
#define ASSERT_GT_INT(a, b) ASSERT_CMP_INT_(a, >, b)
#define ASSERT_GE_INT(a, b) ASSERT_CMP_INT_(a, >=, b)
#define ASSERT_EQ_UINT(a, b) ASSERT_CMP_UINT_(a, ==, b)
#define ASSERT_NE_UINT(a, b) ASSERT_CMP_UINT_(a, !=, b)
#define ASSERT_LE_UINT(a, b) ASSERT_CMP_UINT_(a, <=, b)
#define ASSERT_GE_UINT(a, b) ASSERT_CMP_UINT_(a, >=, b)
#define ASSERT_OK(r) ASSERT_CMP_INT_(r, >=, 0)
#define ASSERT_ERR(r, e) ASSERT_CMP_INT_(r, ==, e) /* e.g. ASSERT_ERR(r, -EINVAL) */

#define ASSERT_STREQ(a, b)                                                                         \
        do {                                                                                       \
                const char *a_ = (a), *b_ = (b);                                                   \
                if (!a_ || !b_ || strcmp(a_, b_) != 0)                                             \
                        TAP_FAIL_("%s == %s: \"%s\" vs \"%s\"", #a, #b, a_ ? a_ : "(null)",        \
                                  b_ ? b_ : "(null)");                                             \
        } while (0)
#define ASSERT_CONTAINS(hay, needle)                                                               \
        do {                                                                                       \
                const char *h_ = (hay), *n_ = (needle);                                            \
                if (!h_ || !strstr(h_, n_))                                                        \
                        TAP_FAIL_("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);       \
        } while (0)
#define ASSERT_NULL(p) ASSERT_TRUE((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)

/* Runs every case, prints TAP, returns the exit code for main(). */
static inline int tap_run(const TapCase *cases, size_t n) {
        volatile int failed = 0;

        printf("TAP version 13\n1..%zu\n", n);
        for (volatile size_t i = 0; i < n; i++) {
                fflush(stdout);
                if (setjmp(tap_jmp_) == 0) {
                        cases[i].fn();
                        printf("ok %zu - %s\n", i + 1, cases[i].name);
                } else {
                        printf("not ok %zu - %s\n", i + 1, cases[i].name);
                        failed++;
                }
        }
        fflush(stdout);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
