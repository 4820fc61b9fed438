#!/bin/bash
# SPDX-License-Identifier: MIT
# A bounded, coverage-guided fuzzing campaign: builds every fuzz target as a
# libFuzzer binary with clang, in a tree configured with
# -fsanitize=fuzzer-no-link and ASan/UBSan so that coverage reaches common/,
# the cores and the protobuf-c-generated code the targets link; runs each
# target in turn (one process) from a copy of its checked-in corpus; fails
# on any crash, leak, timeout or out-of-memory, keeping the reproducer and
# saying how to run it; prints a table of executions per second and
# coverage.
#
#   tests/fuzz/campaign.sh [TARGET…]          CI: the corpus is not changed
#   tests/fuzz/campaign.sh --update-corpus    also merge what was found into
#                                             tests/fuzz/corpus/ (minimised)
#   tests/fuzz/campaign.sh --reseed           regenerate: corpora from
#                                             fuzz-make-seeds only, then a
#                                             campaign, merged and minimised
#
# Regression inputs (corpus/TARGET/regress-*, each one a bug that was fixed)
# are kept as they are by both: a merge only minimises the rest.
#
# Environment: BATON_FUZZ_SECONDS per target (20), BATON_FUZZ_BUILD (the
# build directory, build-fuzz), BATON_FUZZ_OUT (logs, crashes and working
# corpora; $BATON_FUZZ_BUILD/campaign), BATON_FUZZ_TIMEOUT (seconds one
# input may take, 20).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

seconds=${BATON_FUZZ_SECONDS:-20}
build=${BATON_FUZZ_BUILD:-build-fuzz}
out=${BATON_FUZZ_OUT:-$build/campaign}
timeout=${BATON_FUZZ_TIMEOUT:-20}
corpus=tests/fuzz/corpus
update=0
reseed=0
targets=()
for arg in "$@"; do
        case "$arg" in
        --update-corpus) update=1 ;;
        --reseed) reseed=1 update=1 ;;
        -h | --help)
                sed -n '3,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
                exit 0
                ;;
        -*)
                echo "campaign.sh: unknown option $arg" >&2
                exit 2
                ;;
        *) targets+=("$arg") ;;
        esac
done
if [ ${#targets[@]} -eq 0 ]; then
        mapfile -t targets < <(sed -n "s/^ *'\([a-z-]*\)' : {'deps'.*/\1/p" tests/fuzz/meson.build)
fi
if [ ${#targets[@]} -eq 0 ]; then
        echo "campaign.sh: no targets found in tests/fuzz/meson.build" >&2
        exit 1
fi

echo "=== fuzz campaign: ${#targets[@]} targets, ${seconds}s each, build $build"
if [ ! -f "$build/build.ninja" ]; then
        CC=clang meson setup "$build" \
                --buildtype=debugoptimized \
                -Dfuzz=true -Dintegration=false \
                -Db_sanitize=address,undefined -Db_lundef=false \
                -Dc_args=-fsanitize=fuzzer-no-link >"$build.setup.log" 2>&1 || {
                cat "$build.setup.log"
                echo "campaign.sh: meson setup failed"
                exit 1
        }
        rm -f "$build.setup.log"
fi
build_targets=(tests/fuzz/fuzz-make-seeds)
for t in "${targets[@]}"; do
        build_targets+=("tests/fuzz/fuzz-$t-libfuzzer")
done
if ! meson compile -C "$build" "${build_targets[@]}" >"$out.build.log" 2>&1; then
        mkdir -p "$out"
        tail -50 "$out.build.log"
        echo "campaign.sh: build failed"
        exit 1
fi
rm -f "$out.build.log"

rm -rf "$out"
mkdir -p "$out/logs" "$out/crashes" "$out/work"
if [ $reseed -eq 1 ]; then
        "$build/tests/fuzz/fuzz-make-seeds" "$out/seeds" || exit 1
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=1}
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
        export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi

failed=0
rows=()
for t in "${targets[@]}"; do
        bin="$build/tests/fuzz/fuzz-$t-libfuzzer"
        work="$out/work/$t"
        log="$out/logs/$t.log"
        mkdir -p "$work"
        if [ $reseed -eq 1 ]; then
                if [ -d "$out/seeds/$t" ]; then
                        cp "$out/seeds/$t"/* "$work/"
                fi
                cp "$corpus/$t"/regress-* "$work/" 2>/dev/null
        elif [ -d "$corpus/$t" ]; then
                cp "$corpus/$t"/* "$work/" 2>/dev/null
        fi
        n_start=$(find "$work" -type f | wc -l)

        "$bin" -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 \
                -print_final_stats=1 -artifact_prefix="$out/crashes/$t-" \
                "$work" >"$log" 2>&1
        rc=$?

        cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
        ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        n_end=$(find "$work" -type f | wc -l)
        result=ok
        if [ $rc -ne 0 ]; then
                failed=$((failed + 1))
                result="FAILED ($rc)"
                echo "=== $t: FAILED (exit $rc); the end of $log:"
                grep -E 'ERROR|SUMMARY|broken promise|==[0-9]+==|Test unit written' "$log" | head -20
                for f in "$out/crashes/$t-"*; do
                        [ -e "$f" ] || continue
                        echo "reproducer: $f"
                        echo "  reproduce: $bin $f"
                        echo "         or: build/tests/fuzz/fuzz-$t $f   (the standalone driver, gcc build)"
                done
        fi
        rows+=("$(printf '%-15s %9s %7s %6s %7s %13s  %s' "$t" "${execs:--}" "${rate:--}" \
                "${cov:--}" "${ft:--}" "$n_start → $n_end" "$result")")

        if [ $update -eq 1 ] && [ $rc -eq 0 ]; then
                merged="$out/merged/$t"
                mkdir -p "$merged"
                # $work started as the corpus (or the seeds) and holds the finds.
                "$bin" -merge=1 "$merged" "$work" >"$out/logs/$t.merge.log" 2>&1 || {
                        echo "=== $t: merge failed, see $out/logs/$t.merge.log"
                        failed=$((failed + 1))
                        continue
                }
                mkdir -p "$out/regress/$t"
                cp "$corpus/$t"/regress-* "$out/regress/$t/" 2>/dev/null
                rm -rf "${corpus:?}/$t"
                mkdir -p "$corpus/$t"
                cp "$merged"/* "$out/regress/$t"/* "$corpus/$t/" 2>/dev/null
                # libFuzzer names a merged input by its SHA-1: no second copy.
                for f in "$out/regress/$t"/*; do
                        [ -e "$f" ] && rm -f "$corpus/$t/$(sha1sum <"$f" | cut -d' ' -f1)"
                done
        fi
done

echo
echo "=== fuzz campaign results (${seconds}s per target, one process, $(nproc) cores)"
printf '%-15s %9s %7s %6s %7s %13s  %s\n' target execs exec/s cov ft "inputs" result
for row in "${rows[@]}"; do
        echo "$row"
done
if [ $update -eq 1 ]; then
        echo "corpus: $(find "$corpus" -type f | wc -l) files," \
                "$(du -sh --apparent-size "$corpus" | cut -f1) in $corpus"
fi
echo "logs: $out/logs"
if [ $failed -gt 0 ]; then
        echo "fuzz campaign: $failed target(s) failed"
        exit 1
fi
echo "fuzz campaign: every target ran clean"
