#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make check: builds parley three ways and runs every test.
#   build/       release build, -Werror: unit and integration tests
#   build-asan/  ASan + UBSan: the same tests again
#   build-fuzz/  clang + libFuzzer: each fuzz target for a short bounded run
# Its last line is "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
JOBS=${JOBS:-$(nproc)}
passed=0
failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# Runs ctest in a build dir and adds its counts.
run_ctest() {
    local dir=$1; shift
    local out="$log/$(basename "$dir").txt"
    (cd "$dir" && ctest --output-on-failure -j"$JOBS" "$@") 2>&1 | tee "$out" | grep -E "Test +#|tests passed|Failed|\*\*\*" 
    local line total fails
    line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$out" | tail -1)
    if [ -z "$line" ]; then
        if grep -q "No tests were found" "$out"; then
            echo "check: no tests found in $dir" >&2
        fi
        failed=$((failed + 1))
        return
    fi
    fails=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
    passed=$((passed + total - fails))
    failed=$((failed + fails))
}

build() {
    local dir=$1; shift
    echo "== build $dir"
    if ! cmake -S . -B "$dir" -DPARLEY_WERROR=ON "$@" >"$log/cmake-$(basename "$dir").txt" 2>&1; then
        cat "$log/cmake-$(basename "$dir").txt"
        return 1
    fi
    local targets=()
    [ -n "${BUILD_TARGETS:-}" ] && targets=(--target $BUILD_TARGETS)
    cmake --build "$dir" -j"$JOBS" "${targets[@]}" >"$log/build-$(basename "$dir").txt" 2>&1
    local rc=$?
    [ $rc -ne 0 ] && grep -E -B2 -A6 "error|Error" "$log/build-$(basename "$dir").txt" | head -80
    return $rc
}

if build build -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
    run_ctest build
else
    echo "check: build failed"; failed=$((failed + 1))
fi

if build build-asan -DCMAKE_BUILD_TYPE=Debug -DPARLEY_SANITIZE=ON; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 run_ctest build-asan
else
    echo "check: sanitizer build failed"; failed=$((failed + 1))
fi

if command -v clang >/dev/null; then
    fuzzers=$(ls tests/fuzz/*_fuzz.c 2>/dev/null | xargs -rn1 basename | sed 's/\.c$//' | tr '\n' ' ')
    if CC=clang BUILD_TARGETS="$fuzzers" build build-fuzz -DCMAKE_BUILD_TYPE=Debug -DPARLEY_FUZZ=ON -DPARLEY_SANITIZE=ON; then
        run_ctest build-fuzz -R '^fuzz\.'
    else
        echo "check: fuzz build failed"; failed=$((failed + 1))
    fi
else
    echo "check: clang missing, fuzz targets not run"; failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
