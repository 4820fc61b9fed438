/* SPDX-License-Identifier: MIT */
/* The agent's persistent state: exact format, round trips of random states,
 * strict parse errors with their line numbers, the unit records, and
 * at-most-once Restart bookkeeping (dedup, pruning, cap). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "agent-state.h"
#include "macro.h"
#include "tap.h"

static const char example[] = "baton-agent-state 1\n"
                              "epoch 7\n"
                              "applied 7 42\n"
                              "unit core.service core.service 0123456789abcdef 0\n"
                              "unit gateway@3.service gateway@.service 9f86d081884c7d65 1\n"
                              "unit gateway@4.service gateway@.service 2c26b46b68ffc68f 0 pending\n"
                              "restart r-1234 1700000000000000\n";

TEST(parse_example) {
        _cleanup_(agent_state_done) AgentState s = { 0 };

        ASSERT_OK(agent_state_parse(example, &s, NULL));
        ASSERT_EQ_UINT(s.max_epoch_seen, 7);
        ASSERT_EQ_UINT(s.applied_epoch, 7);
        ASSERT_EQ_UINT(s.applied_generation, 42);
        ASSERT_EQ_UINT(s.n_units, 3);
        ASSERT_STREQ(s.units[0].name, "core.service");
        ASSERT_STREQ(s.units[0].file_name, "core.service");
        ASSERT_STREQ(s.units[0].config_hash, "0123456789abcdef");
        ASSERT_FALSE(s.units[0].has_dropin);
        ASSERT_STREQ(s.units[1].name, "gateway@3.service");
        ASSERT_STREQ(s.units[1].file_name, "gateway@.service");
        ASSERT_TRUE(s.units[1].has_dropin);
        ASSERT_FALSE(s.units[1].pending);
        ASSERT_STREQ(s.units[2].name, "gateway@4.service");
        ASSERT_FALSE(s.units[2].has_dropin);
        ASSERT_TRUE(s.units[2].pending);
        ASSERT_EQ_UINT(s.n_restarts, 1);
        ASSERT_STREQ(s.restarts[0].id, "r-1234");
        ASSERT_EQ_UINT(s.restarts[0].not_after_us, 1700000000000000ULL);
}

TEST(format_is_exact) {
        _cleanup_(agent_state_done) AgentState s = { 0 };
        _cleanup_free_ char *t = NULL;

        ASSERT_OK(agent_state_parse(example, &s, NULL));
        ASSERT_OK(agent_state_format(&s, &t));
        ASSERT_STREQ(t, example);
}

TEST(header_only_and_missing_final_newline) {
        _cleanup_(agent_state_done) AgentState a = { 0 }, b = { 0 };
        _cleanup_free_ char *t = NULL;

        ASSERT_OK(agent_state_parse("baton-agent-state 1", &a, NULL));
        ASSERT_EQ_UINT(a.max_epoch_seen, 0);
        ASSERT_EQ_UINT(a.applied_generation, 0);
        ASSERT_EQ_UINT(a.n_units, 0);
        ASSERT_EQ_UINT(a.n_restarts, 0);
        ASSERT_OK(agent_state_format(&a, &t));
        ASSERT_STREQ(t, "baton-agent-state 1\nepoch 0\napplied 0 0\n");

        ASSERT_OK(agent_state_parse("baton-agent-state 1\nepoch 18446744073709551615", &b, NULL));
        ASSERT_EQ_UINT(b.max_epoch_seen, UINT64_MAX);
}

static void assert_parse_error(const char *text, const char *want) {
        AgentState s = { .max_epoch_seen = 99 };
        char *err = NULL;
        int r;

        r = agent_state_parse(text, &s, &err);
        if (r != -EINVAL || !err || strcmp(err, want) != 0) {
                printf("#   input: \"%s\"\n#   got %d \"%s\", want \"%s\"\n", text, r,
                       err ? err : "(null)", want);
                free(err);
                ASSERT_TRUE(false);
        }
        free(err);
        ASSERT_EQ_UINT(s.max_epoch_seen, 99); /* untouched */
        ASSERT_NULL(s.units);
        /* and without an error string */
        ASSERT_ERR(agent_state_parse(text, &s, NULL), -EINVAL);
}

#define H "baton-agent-state 1\n"

TEST(parse_errors_name_the_line) {
        assert_parse_error("", "line 1: missing header \"baton-agent-state 1\"");
        assert_parse_error("hello\n",
                           "line 1: not an agent state file (expected \"baton-agent-state 1\")");
        assert_parse_error("baton-agent-state\n",
                           "line 1: not an agent state file (expected \"baton-agent-state 1\")");
        assert_parse_error("baton-agent-state  1\n",
                           "line 1: not an agent state file (expected \"baton-agent-state 1\")");
        assert_parse_error("baton-agent-state 2\n",
                           "line 1: unsupported version \"2\" (expected 1)");
        assert_parse_error("baton-agent-state 1\r\n",
                           "line 1: unsupported version \"1?\" (expected 1)");
        assert_parse_error("epoch 1\n",
                           "line 1: not an agent state file (expected \"baton-agent-state 1\")");
        assert_parse_error(H "epoch x\n", "line 2: invalid number \"x\"");
        assert_parse_error(H "epoch 01\n", "line 2: invalid number \"01\"");
        assert_parse_error(H "epoch -1\n", "line 2: invalid number \"-1\"");
        assert_parse_error(H "epoch +1\n", "line 2: invalid number \"+1\"");
        assert_parse_error(H "epoch 18446744073709551616\n",
                           "line 2: number out of range \"18446744073709551616\"");
        assert_parse_error(H "epoch 1 2\n", "line 2: expected \"epoch N\"");
        assert_parse_error(H "epoch\n", "line 2: expected \"epoch N\"");
        assert_parse_error(H "epoch 1\nepoch 2\n", "line 3: \"epoch\" given twice");
        assert_parse_error(H "applied 1\n", "line 2: expected \"applied EPOCH GENERATION\"");
        assert_parse_error(H "applied 1 2\napplied 1 2\n", "line 3: \"applied\" given twice");
        assert_parse_error(H "applied 1 0x2\n", "line 2: invalid number \"0x2\"");
        assert_parse_error(H "epoch 1\n\napplied 1 2\n", "line 3: empty line");
        assert_parse_error(H "\n", "line 2: empty line");
        assert_parse_error(H "epoch  1\n", "line 2: fields must be separated by single spaces");
        assert_parse_error(H "epoch 1 \n", "line 2: fields must be separated by single spaces");
        assert_parse_error(H " epoch 1\n", "line 2: fields must be separated by single spaces");
        assert_parse_error(H "epoch\t1\n", "line 2: unknown keyword \"epoch?1\"");
        assert_parse_error(H "applied 1 2\nfoo 1\n", "line 3: unknown keyword \"foo\"");
        assert_parse_error(H "Epoch 1\n", "line 2: unknown keyword \"Epoch\"");
        assert_parse_error(H "baton-agent-state 1\n", "line 2: header repeated");
        assert_parse_error(H "a b c d e f g\n",
                           "line 2: fields must be separated by single spaces");
}

TEST(unit_line_errors) {
        assert_parse_error(H "unit a.service a.service h\n",
                           "line 2: expected \"unit NAME FILE HASH 0|1 [pending]\"");
        assert_parse_error(H "unit a.service a.service h 2\n",
                           "line 2: expected \"unit NAME FILE HASH 0|1 [pending]\"");
        assert_parse_error(H "unit a.service a.service h yes\n",
                           "line 2: expected \"unit NAME FILE HASH 0|1 [pending]\"");
        assert_parse_error(H "unit a.service a.service h 1 done\n",
                           "line 2: expected \"unit NAME FILE HASH 0|1 [pending]\"");
        assert_parse_error(H "unit a.service a.service h 2 pending\n",
                           "line 2: expected \"unit NAME FILE HASH 0|1 [pending]\"");
        assert_parse_error(H "unit bad/x.service bad/x.service h 0\n",
                           "line 2: unit \"bad/x.service\": invalid unit name");
        assert_parse_error(H "unit a@.service a@.service h 0\n",
                           "line 2: unit \"a@.service\": invalid unit name");
        assert_parse_error(H "unit a.nope a.nope h 0\n",
                           "line 2: unit \"a.nope\": invalid unit name");
        assert_parse_error(H "unit a@1.service a@1.service h 0\n",
                           "line 2: unit \"a@1.service\": unit file does not match the unit name");
        assert_parse_error(H "unit a.service b.service h 0\n",
                           "line 2: unit \"a.service\": unit file does not match the unit name");
        assert_parse_error(H "unit a.service a.service h!sh 0\n",
                           "line 2: unit \"a.service\": invalid config hash");
        assert_parse_error(H "epoch 3\n"
                             "unit a.service a.service h1 0\n"
                             "unit b.service b.service h2 0\n"
                             "unit a.service a.service h3 1\n",
                           "line 5: unit a.service listed twice");
}

TEST(restart_line_errors) {
        char id65[66], text[200];

        assert_parse_error(H "restart r1\n", "line 2: expected \"restart ID NOT_AFTER_US\"");
        assert_parse_error(H "restart r.1 5\n", "line 2: invalid restart id \"r.1\"");
        assert_parse_error(H "restart r1 5s\n", "line 2: invalid number \"5s\"");
        assert_parse_error(H "restart r1 5\nrestart r2 6\nrestart r1 7\n",
                           "line 4: restart r1 listed twice");

        memset(id65, 'x', 65);
        id65[65] = '\0';
        snprintf(text, sizeof(text), H "restart %s 1\n", id65);
        assert_parse_error(text, "line 2: invalid restart id "
                                 "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\"");
        id65[64] = '\0';
        {
                _cleanup_(agent_state_done) AgentState s = { 0 };

                snprintf(text, sizeof(text), H "restart %s 1\n", id65);
                ASSERT_OK(agent_state_parse(text, &s, NULL));
                ASSERT_TRUE(agent_state_restart_seen(&s, id65));
        }
}

TEST(too_many_restart_lines) {
        _cleanup_free_ char *text = NULL, *err = NULL;
        AgentState s = { 0 };
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        ASSERT_NOT_NULL(f);
        fputs(H, f);
        for (int i = 0; i <= AGENT_STATE_RESTARTS_MAX; i++)
                fprintf(f, "restart id%d %d\n", i, i + 1);
        ASSERT_TRUE(fclose(f) == 0);

        ASSERT_ERR(agent_state_parse(text, &s, &err), -EINVAL);
        ASSERT_STREQ(err, "line 4098: more than 4096 restart records");
}

/* ---- random states ---- */

static uint64_t rnd_state = 7;

static uint64_t rnd(void) {
        uint64_t z = (rnd_state += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static void random_word(char *buf, size_t max, const char *alphabet) {
        size_t n = 1 + rnd() % (max - 1), k = strlen(alphabet);

        for (size_t i = 0; i < n; i++)
                buf[i] = alphabet[rnd() % k];
        buf[n] = '\0';
}

static uint64_t random_u64(void) {
        switch (rnd() % 4) {
        case 0:
                return 0;
        case 1:
                return UINT64_MAX - rnd() % 3;
        case 2:
                return rnd() % 1000;
        default:
                return rnd();
        }
}

static void random_state(AgentState *s) {
        static const char *const suffixes[] = { "service", "socket", "timer", "target" };
        size_t n_units = rnd() % 12, n_restarts = rnd() % 12;

        *s = (AgentState){ .max_epoch_seen = random_u64(),
                           .applied_epoch = random_u64(),
                           .applied_generation = random_u64() };

        for (size_t i = 0; i < n_units; i++) {
                char prefix[20], inst[12], name[64], file[64], hash[40];
                const char *suffix = suffixes[rnd() % ELEMENTSOF(suffixes)];

                random_word(prefix, sizeof(prefix), "abcxyz019-_:");
                if (rnd() % 2) {
                        random_word(inst, sizeof(inst), "0123456789abc");
                        snprintf(name, sizeof(name), "%s@%s.%s", prefix, inst, suffix);
                        snprintf(file, sizeof(file), "%s@.%s", prefix, suffix);
                } else {
                        snprintf(name, sizeof(name), "%s.%s", prefix, suffix);
                        snprintf(file, sizeof(file), "%s", name);
                }
                random_word(hash, sizeof(hash), "0123456789abcdefXYZ._:+/=-");
                if (rnd() % 4 == 0)
                        ASSERT_OK(agent_state_mark_pending(s, name, file, hash, rnd() % 2));
                else
                        ASSERT_OK(agent_state_set_unit(s, name, file, hash, rnd() % 2));
        }
        for (size_t i = 0; i < n_restarts; i++) {
                char id[AGENT_STATE_RESTART_ID_MAX + 1];

                random_word(id, sizeof(id),
                            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_");
                ASSERT_TRUE(agent_state_restart_record(s, id, random_u64(), 0) >= 0);
        }
}

static void assert_states_equal(const AgentState *a, const AgentState *b) {
        ASSERT_EQ_UINT(a->max_epoch_seen, b->max_epoch_seen);
        ASSERT_EQ_UINT(a->applied_epoch, b->applied_epoch);
        ASSERT_EQ_UINT(a->applied_generation, b->applied_generation);
        ASSERT_EQ_UINT(a->n_units, b->n_units);
        for (size_t i = 0; i < a->n_units; i++) {
                ASSERT_STREQ(a->units[i].name, b->units[i].name);
                ASSERT_STREQ(a->units[i].file_name, b->units[i].file_name);
                ASSERT_STREQ(a->units[i].config_hash, b->units[i].config_hash);
                ASSERT_EQ_INT(a->units[i].has_dropin, b->units[i].has_dropin);
                ASSERT_EQ_INT(a->units[i].pending, b->units[i].pending);
        }
        ASSERT_EQ_UINT(a->n_restarts, b->n_restarts);
        for (size_t i = 0; i < a->n_restarts; i++) {
                ASSERT_STREQ(a->restarts[i].id, b->restarts[i].id);
                ASSERT_EQ_UINT(a->restarts[i].not_after_us, b->restarts[i].not_after_us);
        }
}

TEST(random_round_trips) {
        for (int iter = 0; iter < 2000; iter++) {
                _cleanup_(agent_state_done) AgentState s = { 0 }, p = { 0 };
                _cleanup_free_ char *t1 = NULL, *t2 = NULL, *err = NULL;
                int r;

                random_state(&s);
                ASSERT_OK(agent_state_format(&s, &t1));
                r = agent_state_parse(t1, &p, &err);
                if (r < 0)
                        printf("#   %s\n#   in:\n%s", err, t1);
                ASSERT_OK(r);
                assert_states_equal(&s, &p);
                ASSERT_OK(agent_state_format(&p, &t2));
                ASSERT_STREQ(t1, t2);
        }
}

TEST(format_refuses_what_parse_would) {
        _cleanup_free_ char *t = NULL;
        ManagedUnitRec units[2] = {
                { (char *) "a.service", (char *) "a.service", (char *) "h1", false },
                { (char *) "a.service", (char *) "a.service", (char *) "h2", true },
        };
        RestartRec restarts[2] = { { (char *) "r1", 1 }, { (char *) "r1", 2 } };
        AgentState s = { .units = units, .n_units = 2 };

        ASSERT_ERR(agent_state_format(&s, &t), -EINVAL); /* duplicate unit */
        s.n_units = 1;
        ASSERT_OK(agent_state_format(&s, &t));
        free(t);
        t = NULL;

        units[0].name = (char *) "a b.service";
        ASSERT_ERR(agent_state_format(&s, &t), -EINVAL);
        units[0].name = (char *) "a.service";
        units[0].config_hash = (char *) "with space";
        ASSERT_ERR(agent_state_format(&s, &t), -EINVAL);
        units[0].config_hash = NULL;
        ASSERT_ERR(agent_state_format(&s, &t), -EINVAL);
        units[0].config_hash = (char *) "h1";
        units[0].file_name = (char *) "b.service";
        ASSERT_ERR(agent_state_format(&s, &t), -EINVAL);
        units[0].file_name = (char *) "a.service";

        s.restarts = restarts;
        s.n_restarts = 2;
        ASSERT_ERR(agent_state_format(&s, &t), -EINVAL); /* duplicate id */
        s.n_restarts = 1;
        restarts[0].id = (char *) "bad id";
        ASSERT_ERR(agent_state_format(&s, &t), -EINVAL);
        ASSERT_NULL(t);
}

TEST(set_and_remove_units) {
        _cleanup_(agent_state_done) AgentState s = { 0 };
        _cleanup_free_ ManagedUnit *m = NULL;
        size_t n = 99;

        ASSERT_OK(agent_state_managed_units(&s, &m, &n));
        ASSERT_NULL(m);
        ASSERT_EQ_UINT(n, 0);

        ASSERT_OK(agent_state_set_unit(&s, "web.service", "web.service", "h1", false));
        ASSERT_OK(agent_state_set_unit(&s, "gw@2.service", "gw@.service", "h2", true));
        ASSERT_OK(agent_state_set_unit(&s, "gw@10.service", "gw@.service", "h3", true));
        ASSERT_OK(agent_state_set_unit(&s, "audio.service", "audio.service", "h4", false));
        ASSERT_EQ_UINT(s.n_units, 4);
        ASSERT_STREQ(s.units[0].name, "audio.service");
        ASSERT_STREQ(s.units[1].name, "gw@10.service");
        ASSERT_STREQ(s.units[2].name, "gw@2.service");
        ASSERT_STREQ(s.units[3].name, "web.service");

        /* replace in place */
        ASSERT_OK(agent_state_set_unit(&s, "gw@2.service", "gw@.service", "h9", false));
        ASSERT_EQ_UINT(s.n_units, 4);
        ASSERT_STREQ(s.units[2].config_hash, "h9");
        ASSERT_FALSE(s.units[2].has_dropin);

        /* refused */
        ASSERT_ERR(agent_state_set_unit(&s, "gw@2.service", "gw@2.service", "h", false), -EINVAL);
        ASSERT_ERR(agent_state_set_unit(&s, "gw@.service", "gw@.service", "h", false), -EINVAL);
        ASSERT_ERR(agent_state_set_unit(&s, "../x.service", "../x.service", "h", false), -EINVAL);
        ASSERT_ERR(agent_state_set_unit(&s, "x.service", "x.service", "", false), -EINVAL);
        ASSERT_ERR(agent_state_set_unit(&s, "x.service", "x.service", NULL, false), -EINVAL);
        ASSERT_ERR(agent_state_set_unit(&s, NULL, "x.service", "h", false), -EINVAL);
        ASSERT_ERR(agent_state_set_unit(&s, "x.service", NULL, "h", false), -EINVAL);
        ASSERT_EQ_UINT(s.n_units, 4);
        ASSERT_STREQ(s.units[2].config_hash, "h9");

        ASSERT_OK(agent_state_managed_units(&s, &m, &n));
        ASSERT_EQ_UINT(n, 4);
        ASSERT_STREQ(m[1].name, "gw@10.service");
        ASSERT_STREQ(m[1].file_name, "gw@.service");
        ASSERT_STREQ(m[1].config_hash, "h3");
        ASSERT_TRUE(m[1].has_dropin);

        ASSERT_OK(agent_state_remove_unit(&s, "gw@10.service"));
        ASSERT_ERR(agent_state_remove_unit(&s, "gw@10.service"), -ENOENT);
        ASSERT_ERR(agent_state_remove_unit(&s, NULL), -ENOENT);
        ASSERT_EQ_UINT(s.n_units, 3);
        ASSERT_STREQ(s.units[1].name, "gw@2.service");
        ASSERT_OK(agent_state_remove_unit(&s, "web.service"));
        ASSERT_OK(agent_state_remove_unit(&s, "audio.service"));
        ASSERT_OK(agent_state_remove_unit(&s, "gw@2.service"));
        ASSERT_EQ_UINT(s.n_units, 0);
}

TEST(pending_records) {
        _cleanup_(agent_state_done) AgentState s = { 0 };
        _cleanup_free_ ManagedUnit *m = NULL;
        size_t n;

        /* the intent to install: a new unit, a changed one whose drop-in goes away */
        ASSERT_OK(agent_state_set_unit(&s, "web.service", "web.service", "h1", true));
        ASSERT_OK(agent_state_mark_pending(&s, "new.service", "new.service", "h2", false));
        ASSERT_OK(agent_state_mark_pending(&s, "web.service", "web.service", "h3", false));
        ASSERT_TRUE(s.units[0].pending);
        ASSERT_FALSE(s.units[0].has_dropin);
        ASSERT_TRUE(s.units[1].pending);
        /* the old drop-in may still be on disk until the change is done */
        ASSERT_TRUE(s.units[1].has_dropin);
        ASSERT_STREQ(s.units[1].config_hash, "h3");
        ASSERT_OK(agent_state_managed_units(&s, &m, &n));
        ASSERT_TRUE(m[0].pending && m[1].pending);

        /* done: the record is settled as it is now */
        ASSERT_OK(agent_state_set_unit(&s, "web.service", "web.service", "h3", false));
        ASSERT_FALSE(s.units[1].pending);
        ASSERT_FALSE(s.units[1].has_dropin);
        ASSERT_ERR(agent_state_mark_pending(&s, "x@.service", "x@.service", "h", false), -EINVAL);
        ASSERT_ERR(agent_state_mark_pending(&s, "x.service", "x.service", "a b", false), -EINVAL);
}

TEST(copies_are_deep) {
        for (int iter = 0; iter < 200; iter++) {
                _cleanup_(agent_state_done) AgentState s = { 0 }, c = { 0 };
                _cleanup_free_ char *t1 = NULL, *t2 = NULL;

                random_state(&s);
                ASSERT_OK(agent_state_copy(&s, &c));
                assert_states_equal(&s, &c);
                for (size_t i = 0; i < s.n_units; i++)
                        ASSERT_TRUE(s.units[i].name != c.units[i].name);
                ASSERT_OK(agent_state_format(&s, &t1));
                /* changing the copy leaves the original alone */
                ASSERT_OK(agent_state_mark_pending(&c, "zz.service", "zz.service", "h", true));
                (void) agent_state_restart_record(&c, "copy-only", 0, 1);
                ASSERT_OK(agent_state_format(&s, &t2));
                ASSERT_STREQ(t1, t2);
                ASSERT_FALSE(agent_state_restart_seen(&s, "copy-only"));
        }
}

#define HOUR (3600ULL * 1000000ULL)
#define T0 (1700000000ULL * 1000000ULL)

TEST(restart_ids_run_once) {
        _cleanup_(agent_state_done) AgentState s = { 0 }, p = { 0 };
        _cleanup_free_ char *t = NULL;

        ASSERT_FALSE(agent_state_restart_seen(&s, "r1"));
        ASSERT_EQ_INT(agent_state_restart_record(&s, "r1", T0 + 60, T0), 1);
        ASSERT_TRUE(agent_state_restart_seen(&s, "r1"));
        ASSERT_FALSE(agent_state_restart_seen(&s, "r2"));
        ASSERT_FALSE(agent_state_restart_seen(&s, NULL));
        /* recording again is harmless and keeps one entry, with the later deadline */
        ASSERT_EQ_INT(agent_state_restart_record(&s, "r1", T0 + 120, T0), 0);
        ASSERT_EQ_INT(agent_state_restart_record(&s, "r1", T0 + 30, T0), 0);
        ASSERT_EQ_UINT(s.n_restarts, 1);
        ASSERT_EQ_UINT(s.restarts[0].not_after_us, T0 + 120);

        /* and it survives a restart of the agent */
        ASSERT_OK(agent_state_format(&s, &t));
        ASSERT_OK(agent_state_parse(t, &p, NULL));
        ASSERT_TRUE(agent_state_restart_seen(&p, "r1"));

        ASSERT_ERR(agent_state_restart_record(&s, "bad id", T0, T0), -EINVAL);
        ASSERT_ERR(agent_state_restart_record(&s, "", T0, T0), -EINVAL);
        ASSERT_ERR(agent_state_restart_record(&s, NULL, T0, T0), -EINVAL);
        ASSERT_EQ_UINT(s.n_restarts, 1);
}

TEST(restart_pruning) {
        _cleanup_(agent_state_done) AgentState s = { 0 };

        ASSERT_EQ_INT(agent_state_restart_record(&s, "old", T0, T0 - HOUR), 1);
        ASSERT_EQ_INT(agent_state_restart_record(&s, "edge", T0 + 10, T0 - HOUR), 1);
        ASSERT_EQ_INT(agent_state_restart_record(&s, "fresh", T0 + 2 * HOUR, T0 - HOUR), 1);

        /* exactly one hour past "old": still kept (more than an hour is needed) */
        ASSERT_EQ_INT(agent_state_restart_record(&s, "a", T0 + HOUR, T0 + HOUR), 1);
        ASSERT_TRUE(agent_state_restart_seen(&s, "old"));

        /* a microsecond later it goes, "edge" (10 µs younger) stays */
        ASSERT_EQ_INT(agent_state_restart_record(&s, "b", T0 + HOUR, T0 + HOUR + 1), 1);
        ASSERT_FALSE(agent_state_restart_seen(&s, "old"));
        ASSERT_TRUE(agent_state_restart_seen(&s, "edge"));
        ASSERT_TRUE(agent_state_restart_seen(&s, "fresh"));

        /* much later everything but the new entry is gone, even an expired new one */
        ASSERT_EQ_INT(agent_state_restart_record(&s, "late", T0, T0 + 100 * HOUR), 1);
        ASSERT_EQ_UINT(s.n_restarts, 1);
        ASSERT_TRUE(agent_state_restart_seen(&s, "late"));

        /* a clock that went backwards prunes nothing */
        ASSERT_EQ_INT(agent_state_restart_record(&s, "c", T0, 5), 1);
        ASSERT_EQ_UINT(s.n_restarts, 2);
}

TEST(restart_without_deadline_is_kept_for_the_grace_period) {
        _cleanup_(agent_state_done) AgentState s = { 0 };

        ASSERT_EQ_INT(agent_state_restart_record(&s, "nodeadline", 0, T0), 1);
        ASSERT_EQ_UINT(s.restarts[0].not_after_us, T0);
        ASSERT_EQ_INT(agent_state_restart_record(&s, "x", T0, T0 + HOUR), 1);
        ASSERT_TRUE(agent_state_restart_seen(&s, "nodeadline"));
        ASSERT_EQ_INT(agent_state_restart_record(&s, "y", T0, T0 + HOUR + 1), 1);
        ASSERT_FALSE(agent_state_restart_seen(&s, "nodeadline"));
}

TEST(restart_cap_drops_oldest_deadline_first) {
        _cleanup_(agent_state_done) AgentState s = { 0 };
        char id[32];

        /* deadlines in a scrambled order, all in the future */
        for (uint64_t i = 0; i < AGENT_STATE_RESTARTS_MAX; i++) {
                uint64_t k = (i * 2654435761ULL) % AGENT_STATE_RESTARTS_MAX;

                snprintf(id, sizeof(id), "id-%" PRIu64, k);
                ASSERT_EQ_INT(agent_state_restart_record(&s, id, T0 + 1000 + k, T0), 1);
        }
        ASSERT_EQ_UINT(s.n_restarts, AGENT_STATE_RESTARTS_MAX);

        /* the next ones push out id-0, then id-1 */
        ASSERT_EQ_INT(agent_state_restart_record(&s, "new-1", T0 + 999999, T0), 1);
        ASSERT_EQ_UINT(s.n_restarts, AGENT_STATE_RESTARTS_MAX);
        ASSERT_FALSE(agent_state_restart_seen(&s, "id-0"));
        ASSERT_TRUE(agent_state_restart_seen(&s, "id-1"));
        ASSERT_TRUE(agent_state_restart_seen(&s, "new-1"));

        /* a new entry older than everything is kept: dropping it would let it run twice */
        ASSERT_EQ_INT(agent_state_restart_record(&s, "new-old", T0 + 1, T0), 1);
        ASSERT_EQ_UINT(s.n_restarts, AGENT_STATE_RESTARTS_MAX);
        ASSERT_FALSE(agent_state_restart_seen(&s, "id-1"));
        ASSERT_TRUE(agent_state_restart_seen(&s, "new-old"));
        ASSERT_TRUE(agent_state_restart_seen(&s, "id-2"));

        for (int i = 0; i < 100; i++) {
                snprintf(id, sizeof(id), "more-%d", i);
                ASSERT_EQ_INT(agent_state_restart_record(&s, id, T0 + 2000000 + (uint64_t) i, T0),
                              1);
        }
        ASSERT_EQ_UINT(s.n_restarts, AGENT_STATE_RESTARTS_MAX);
        ASSERT_TRUE(agent_state_restart_seen(&s, "more-0"));
        ASSERT_TRUE(agent_state_restart_seen(&s, "more-99"));
        ASSERT_TRUE(agent_state_restart_seen(&s, "new-1"));

        /* a full state still formats and parses */
        {
                _cleanup_(agent_state_done) AgentState p = { 0 };
                _cleanup_free_ char *t = NULL;

                ASSERT_OK(agent_state_format(&s, &t));
                ASSERT_OK(agent_state_parse(t, &p, NULL));
                assert_states_equal(&s, &p);
        }
}

TEST(restart_record_taken_back) {
        _cleanup_(agent_state_done) AgentState s = { 0 };

        ASSERT_EQ_INT(agent_state_restart_record(&s, "r1", 0, 5), 1);
        ASSERT_EQ_INT(agent_state_restart_record(&s, "r2", 0, 5), 1);
        ASSERT_OK(agent_state_restart_forget(&s, "r1"));
        ASSERT_FALSE(agent_state_restart_seen(&s, "r1"));
        ASSERT_TRUE(agent_state_restart_seen(&s, "r2"));
        ASSERT_ERR(agent_state_restart_forget(&s, "r1"), -ENOENT);
        ASSERT_ERR(agent_state_restart_forget(&s, NULL), -ENOENT);
        ASSERT_EQ_INT(agent_state_restart_record(&s, "r1", 0, 5), 1);
}

TEST(restart_id_validity) {
        ASSERT_TRUE(agent_state_restart_id_is_valid("a"));
        ASSERT_TRUE(agent_state_restart_id_is_valid("Zz09_-"));
        ASSERT_TRUE(agent_state_restart_id_is_valid("550e8400-e29b-41d4-a716-446655440000"));
        ASSERT_FALSE(agent_state_restart_id_is_valid(""));
        ASSERT_FALSE(agent_state_restart_id_is_valid(NULL));
        ASSERT_FALSE(agent_state_restart_id_is_valid("a b"));
        ASSERT_FALSE(agent_state_restart_id_is_valid("a.b"));
        ASSERT_FALSE(agent_state_restart_id_is_valid("a/b"));
        ASSERT_FALSE(agent_state_restart_id_is_valid("\xc3\xa4"));
}

int main(void) {
        return tap_run(TESTS(parse_example, format_is_exact, header_only_and_missing_final_newline,
                             parse_errors_name_the_line, unit_line_errors, restart_line_errors,
                             too_many_restart_lines, random_round_trips,
                             format_refuses_what_parse_would, set_and_remove_units, pending_records,
                             copies_are_deep, restart_ids_run_once, restart_pruning,
                             restart_record_taken_back,
                             restart_without_deadline_is_kept_for_the_grace_period,
                             restart_cap_drops_oldest_deadline_first, restart_id_validity));
}
