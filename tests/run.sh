#!/bin/bash
# SPDX-License-Identifier: MIT
# The whole test suite, as CI runs it: installs what is missing, builds with
# -Werror and runs every unit and integration test, builds again with
# AddressSanitizer and UndefinedBehaviorSanitizer and runs them all again,
# runs a bounded coverage-guided fuzzing campaign (tests/fuzz/campaign.sh;
# BATON_FUZZ_SECONDS per target), checks formatting, and ends with
# "N passed, N failed[, N skipped]".
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

packaging/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

# The model-based test of the reconcile core: ten times its ordinary count.
export BATON_RECONCILE_SEQUENCES=${BATON_RECONCILE_SEQUENCES:-5000}

# Sanitizer findings abort the process that has them, so tests see them.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=1}

status=0
run_suite() { # name, setup options...
        local dir="build-$1"
        shift
        echo "=== $dir: meson setup $*"
        rm -rf "$dir"
        if ! meson setup "$dir" -Dwerror=true "$@"; then
                echo "meson setup failed for $dir"
                status=1
                return
        fi
        if ! meson compile -C "$dir"; then
                echo "build failed for $dir"
                status=1
                return
        fi
        meson test -C "$dir" --print-errorlogs --num-processes 2 || status=1
}

run_suite werror --buildtype=debugoptimized
run_suite sanitize --buildtype=debug -Db_sanitize=address,undefined

# One check: every fuzz target from its checked-in corpus for a bounded time,
# built with clang and libFuzzer in its own build directory.
echo "=== fuzz campaign"
rm -rf build-fuzz
fuzz_ok=1
if ! BATON_FUZZ_BUILD=build-fuzz tests/fuzz/campaign.sh; then
        fuzz_ok=0
        status=1
fi

echo "=== clang-format"
mapfile -t sources < <(git ls-files '*.c' '*.h' | grep -v '^common/poison/')
format_ok=1
if ! clang-format --dry-run --Werror "${sources[@]}"; then
        format_ok=0
        status=1
fi

python3 - "$format_ok" "$fuzz_ok" build-werror build-sanitize <<'PY'
import json, os, sys
fmt_ok = sys.argv[1] == '1'
fuzz_ok = sys.argv[2] == '1'
passed = failed = skipped = 0
for d in sys.argv[3:]:
    log = os.path.join(d, 'meson-logs', 'testlog.json')
    if not os.path.exists(log):
        print(f'{d}: no test log (build failed)')
        failed += 1
        continue
    for line in open(log):
        t = json.loads(line)
        res = t.get('result')
        if res in ('OK', 'EXPECTEDFAIL'):
            passed += 1
        elif res == 'SKIP':
            skipped += 1
        else:
            failed += 1
            print(f'{d}: {t.get("name")}: {res}')
if fuzz_ok:
    passed += 1
else:
    failed += 1
    print('fuzz campaign: a target failed (see "=== fuzz campaign" above)')
if fmt_ok:
    passed += 1
else:
    failed += 1
    print('clang-format: sources not formatted (run clang-format -i)')
line = f'{passed} passed, {failed} failed'
if skipped:
    line += f', {skipped} skipped'
print(line)
PY
exit $status
