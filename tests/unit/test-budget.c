/* SPDX-License-Identifier: MIT */
/* Placeholder: being written. */
#include "budget.h"
#include "tap.h"

TEST(header_compiles) {
        ASSERT_TRUE(true);
}

int main(void) {
        return tap_run(TESTS(header_compiles));
}
