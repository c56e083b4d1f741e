# SPDX-License-Identifier: MIT
# Shell helpers for integration tests: start a real parleyd on a free
# loopback port, drive the real parley CLI, stop the server by PID, and fail
# on any sanitizer report in the server's stderr. Source it, then call
# start_parleyd; everything is cleaned up on exit.
set -euo pipefail

BUILD=${PARLEY_BUILD_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
PARLEYD="$BUILD/parleyd"
PARLEY="$BUILD/parley"
T=$(mktemp -d /tmp/parley-it.XXXXXX)
PIDS=()
FAILS=0
CHECKS=0

cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    check_sanitizers
    rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
ok() { CHECKS=$((CHECKS + 1)); }

# expect_eq WHAT GOT WANT
expect_eq() {
    if [ "$2" == "$3" ]; then ok; else fail "$1: got '$2', want '$3'"; fi
}
# expect_match WHAT TEXT REGEX
expect_match() {
    if grep -Eq -- "$3" <<<"$2"; then ok; else fail "$1: '$2' does not match /$3/"; fi
}

check_sanitizers() {
    for f in "$T"/parleyd-*.err; do
        [ -f "$f" ] || continue
        if grep -Eq "ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer" "$f"; then
            echo "FAIL: sanitizer report in $f:" >&2
            cat "$f" >&2
            FAILS=$((FAILS + 1))
        fi
    done
}

# start_parleyd NAME [ARGS...]: starts parleyd with data in $T/NAME and
# waits for its ready line. Sets SERVER_PID, PORT, URL (plaintext unless
# ARGS hold --tls, which is removed). Extra ARGS go to parleyd.
start_parleyd() {
    local name=$1; shift
    local tls=0 args=() listen="127.0.0.1:0"
    for a in "$@"; do
        case $a in
            --tls) tls=1 ;;
            --listen=*) listen=${a#--listen=} ;;
            *) args+=("$a") ;;
        esac
    done
    [ $tls -eq 1 ] || args+=(--plaintext)
    local has_config=0
    for a in "${args[@]}"; do [ "$a" == "--config" ] && has_config=1; done
    [ $has_config -eq 1 ] || args+=(--config "$(dirname "${BASH_SOURCE[0]}")/test.conf")
    mkdir -p "$T/$name"
    local out="$T/parleyd-$name.out" err="$T/parleyd-$name.err"
    "$PARLEYD" --listen "$listen" --data "$T/$name" "${args[@]}" >"$out" 2>>"$err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local i
    for i in $(seq 1 300); do
        if grep -q "^parleyd: listening on " "$out" 2>/dev/null; then break; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "parleyd exited early:" >&2; cat "$err" >&2; exit 1
        fi
        sleep 0.05
    done
    local line
    line=$(grep "^parleyd: listening on " "$out" | head -1)
    [ -n "$line" ] || { echo "parleyd did not get ready" >&2; cat "$err" >&2; exit 1; }
    PORT=${line##*:}
    if [ $tls -eq 1 ]; then URL="https://127.0.0.1:$PORT"; else URL="http://127.0.0.1:$PORT"; fi
}

# stop_parleyd PID [SIGNAL]: stops it and waits; returns its exit status.
stop_parleyd() {
    local pid=$1 sig=${2:-TERM} rc=0
    kill -"$sig" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || rc=$?
    return $rc
}

# pl HOME ARGS...: the parley CLI against $URL with --home $T/HOME.
pl() {
    local home=$1; shift
    "$PARLEY" --server "$URL" --home "$T/$home" "$@"
}

finish() {
    echo "$CHECKS checks, $FAILS failures"
    [ "$FAILS" -eq 0 ]
}
