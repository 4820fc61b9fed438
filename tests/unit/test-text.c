/* SPDX-License-Identifier: MIT */
/* text_sanitize(): what a hostile agent or workload could put into a string
 * that batonctl prints — escape sequences, C1 controls, bidi overrides,
 * broken UTF-8 — comes out as '?', and honest text comes out unchanged. */
#include <stdlib.h>

#include "tap.h"
#include "text.h"

static void check(const char *in, const char *want) {
        char *got = text_sanitize(in);

        ASSERT_NOT_NULL(got);
        ASSERT_STREQ(got, want);
        free(got);
}

TEST(text_keeps_printable) {
        check(NULL, "");
        check("", "");
        check("gateway@3.service active (running)", "gateway@3.service active (running)");
        check("zone=eu rack=r1", "zone=eu rack=r1");
        check("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x9a\x80",
              "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x9a\x80");
}

TEST(text_replaces_controls) {
        /* A title change, a screen clear, a colour: each control becomes '?'. */
        check("\x1b]0;pwned\x07v1", "?]0;pwned?v1");
        check("\x1b[2J\x1b[31mred", "?[2J?[31mred");
        check("line1\nline2\r", "line1?line2?");
        check("a\tb", "a b");
        check("del\x7f", "del?");
        /* C1: CSI as one code point (U+009B). */
        check("\xc2\x9b"
              "31m",
              "?31m");
        /* Bidi overrides that reorder what a table shows. */
        check("abc\xe2\x80\xae"
              "def",
              "abc?def");
        check("\xe2\x81\xa6x\xe2\x81\xa9", "?x?");
        check("\xd8\x9c", "?");
}

TEST(text_replaces_broken_utf8) {
        check("\xff\xfe", "??");
        check("\xc0\xaf", "??");               /* overlong '/' */
        check("\xed\xa0\x80", "???");          /* a surrogate */
        check("\xe2\x82", "??");               /* truncated at the end */
        check("ok\xf4\x90\x80\x80", "ok????"); /* above U+10FFFF */
}

TEST(text_inplace_counts) {
        char buf[] = "\x1b[1mbold\x1b[0m";

        ASSERT_EQ_UINT(text_sanitize_inplace(buf), 2);
        ASSERT_STREQ(buf, "?[1mbold?[0m");
}

int main(void) {
        return tap_run(TESTS(text_keeps_printable, text_replaces_controls,
                             text_replaces_broken_utf8, text_inplace_counts));
}
