/* SPDX-License-Identifier: MIT */
/* JSON text: escapes as written, a document that jansson reads back equal,
 * random bytes (valid UTF-8 or not) always valid JSON, sticky failure. */
#include <jansson.h>

#include "jsontext.h"
#include "macro.h"
#include "tap.h"
#include "text.h"

static char *string_of(const char *s) {
        JsonText t = { 0 };

        json_text_string(&t, s);
        return json_text_steal(&t);
}

TEST(escapes_quotes_backslashes_and_controls) {
        char *s = string_of("a\"b\\c\n\x01\x1f d\x7f");

        ASSERT_STREQ(s, "\"a\\\"b\\\\c\\u000a\\u0001\\u001f d\x7f\"");
        free(s);
        s = string_of(NULL);
        ASSERT_STREQ(s, "null");
        free(s);
        s = string_of("");
        ASSERT_STREQ(s, "\"\"");
        free(s);
}

TEST(keeps_utf8_and_replaces_what_is_not) {
        /* é, €, 😀 stay; a lone continuation byte, an overlong '/', a
         * surrogate and a truncated sequence become U+FFFD, byte by byte. */
        char *s = string_of("é€😀|\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82");

        ASSERT_STREQ(s, "\"é€😀|\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"");
        free(s);
}

TEST(a_document_reads_back_equal) {
        JsonText t = { 0 };
        json_error_t error;
        json_t *doc;
        bool first = true;
        char *text;

        json_text_raw(&t, "{");
        json_text_key(&t, &first, "name");
        json_text_string(&t, "gw@1.service");
        json_text_key(&t, &first, "n");
        json_text_int(&t, INT64_MIN);
        json_text_key(&t, &first, "ok");
        json_text_bool(&t, true);
        json_text_key(&t, &first, "no");
        json_text_bool(&t, false);
        json_text_key(&t, &first, "none");
        json_text_string(&t, NULL);
        json_text_raw(&t, "}");
        text = json_text_steal(&t);
        ASSERT_NOT_NULL(text);
        doc = json_loads(text, 0, &error);
        ASSERT_NOT_NULL(doc);
        ASSERT_STREQ(json_string_value(json_object_get(doc, "name")), "gw@1.service");
        ASSERT_TRUE(json_integer_value(json_object_get(doc, "n")) == INT64_MIN);
        ASSERT_TRUE(json_is_true(json_object_get(doc, "ok")));
        ASSERT_TRUE(json_is_false(json_object_get(doc, "no")));
        ASSERT_TRUE(json_is_null(json_object_get(doc, "none")));
        ASSERT_EQ_UINT(json_object_size(doc), 5);
        json_decref(doc);
        free(text);
        /* Stolen: the writer is empty, and an empty writer gives "". */
        ASSERT_NULL(t.buf);
        text = json_text_steal(&t);
        ASSERT_STREQ(text, "");
        free(text);
}

/* Random bytes, biased towards what needs care: whatever they are, the
 * result is JSON; when they are valid UTF-8 it reads back as the same
 * string. Long enough to grow the buffer several times. */
TEST(random_bytes_always_give_valid_json) {
        static const unsigned char pick[] = { 'a',  '"',  '\\', '\n', 0x01, 0x7f, 0x80,
                                              0xbf, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0,
                                              0x9f, 0x98, 0xed, 0xa0, 0xff, 'z' };
        unsigned seed = 42;

        for (int round = 0; round < 2000; round++) {
                size_t n = (size_t) (rand_r(&seed) % (round % 100 == 0 ? 20000 : 40)) + 1;
                char *in = malloc(n + 1), *text;
                json_error_t error;
                json_t *doc;
                bool valid = true;

                ASSERT_NOT_NULL(in);
                for (size_t i = 0; i < n; i++)
                        in[i] = (char) pick[rand_r(&seed) % ELEMENTSOF(pick)];
                in[n] = '\0';
                for (size_t i = 0; i < n;) {
                        uint32_t cp;
                        size_t len = text_utf8_len(in + i, &cp);
                        if (len == 0) {
                                valid = false;
                                break;
                        }
                        i += len;
                }
                text = string_of(in);
                ASSERT_NOT_NULL(text);
                doc = json_loads(text, JSON_DECODE_ANY, &error);
                if (!doc)
                        TAP_FAIL_("round %d: not JSON (%s): %s", round, error.text, text);
                ASSERT_TRUE(json_is_string(doc));
                if (valid)
                        ASSERT_STREQ(json_string_value(doc), in);
                json_decref(doc);
                free(text);
                free(in);
        }
}

TEST(a_failure_sticks) {
        JsonText t = { 0 };

        json_text_raw(&t, "[1");
        t.failed = true;
        json_text_raw(&t, ",2]");
        json_text_string(&t, "x");
        ASSERT_NULL(json_text_steal(&t));
        ASSERT_NULL(t.buf);
        ASSERT_FALSE(t.failed);
}

int main(void) {
        return tap_run(TESTS(escapes_quotes_backslashes_and_controls,
                             keeps_utf8_and_replaces_what_is_not, a_document_reads_back_equal,
                             random_bytes_always_give_valid_json, a_failure_sticks));
}
