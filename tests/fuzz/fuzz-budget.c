/* SPDX-License-Identifier: MIT */
/* The budget ledger's store text on arbitrary bytes: never crash, refuse with
 * a "column N: " error, and every accepted text is the one budget_ledger_format()
 * writes for what was parsed. A parsed ledger then takes charges around its
 * own slots and must stay a valid ledger. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "fuzz.h"

const char *const fuzz_tokens[] = {
        "baton-budget/1",
        "baton-budget/1 ",
        "baton-budget/",
        "baton-budget/2",
        " ",
        ":",
        "0",
        "1",
        "00",
        "01",
        "59",
        "60",
        "1439",
        "1440",
        "28333334",
        "307445734561",
        "307445734562",
        "18446744073709551615",
        "18446744073709551616",
        " 0:1",
        " 1:1",
        " 2:5",
        " 60:3",
        " 1439:7",
        " 28333334:16",
        " 307445734561:18446744073709551615",
};
const size_t fuzz_n_tokens = sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]);

static void check_ledger(const BudgetLedger *l) {
        if (l->n_slots > BUDGET_SLOTS_MAX)
                abort();
        for (size_t i = 0; i < l->n_slots; i++) {
                if (l->slots[i].spent == 0)
                        abort();
                if (i > 0 && l->slots[i - 1].minute >= l->slots[i].minute)
                        abort();
        }
}

/* Charges before, at and after the newest slot, and a day later. */
static void check_charges(BudgetLedger *l) {
        usec_t newest = l->n_slots > 0 ? l->slots[l->n_slots - 1].minute * BUDGET_SLOT_USEC : 0;
        const usec_t times[] = {
                newest,
                newest / 2,
                newest + BUDGET_SLOT_USEC,
                newest + BUDGET_WINDOW_USEC / 2,
                newest + BUDGET_WINDOW_USEC,
        };

        for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
                uint64_t before = budget_spent(l, times[i]), after;

                if (budget_charge(l, times[i], i) < 0)
                        return;
                check_ledger(l);
                /* Dropping only forgets what no longer counted at that time. */
                after = before > UINT64_MAX - i ? UINT64_MAX : before + i;
                if (budget_spent(l, times[i]) != after)
                        abort();
        }
}

static void check_text(const char *s) {
        BudgetLedger l;
        char *text = NULL, *error = NULL;
        int r;

        r = budget_ledger_parse(s, &l, &error);
        if (r == -EINVAL) {
                if (!error || strncmp(error, "column ", 7) != 0)
                        abort();
        } else if (r >= 0) {
                if (error)
                        abort();
                check_ledger(&l);
                if (budget_ledger_format(&l, &text) >= 0 && strcmp(text, s) != 0)
                        abort();
                check_charges(&l);
                budget_ledger_done(&l);
        } else if (r != -ENOMEM)
                abort();
        free(text);
        free(error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char header[] = "baton-budget/1";
        char *s;

        if (size > 65536)
                return 0;
        s = malloc(sizeof(header) - 1 + size + 1);
        if (!s)
                return 0;

        /* As is, and behind a valid header so that random slots get parsed. */
        memcpy(s, header, sizeof(header) - 1);
        memcpy(s + sizeof(header) - 1, data, size);
        s[sizeof(header) - 1 + size] = '\0';
        check_text(s + sizeof(header) - 1);
        if (size == 0 || data[0] == ' ')
                check_text(s);

        free(s);
        return 0;
}
