#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make bench: starts a fresh parleyd (plaintext, 127.0.0.1, port 0, a
# temporary data directory, bench/parleyd.conf), runs a short suite of
# parley-bench scenarios against it (under 3 minutes), prints one table,
# and stops the server by its PID. The TLS rows run against a second fresh
# parleyd, with TLS, started after the plaintext one is stopped. Each run's JSON is kept in the printed
# directory only when BENCH_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${PARLEY_BUILD_DIR:-$ROOT/build}
CONF=$ROOT/bench/parleyd.conf
T=$(mktemp -d /tmp/parley-bench.XXXXXX)
SERVER_PID=""

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: results kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

for bin in parleyd parley-bench; do
    [ -x "$BUILD/$bin" ] || { echo "bench: $BUILD/$bin missing: run make first" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "bench: jq is needed (scripts/deps.sh installs it)" >&2; exit 1; }

"$BUILD/parleyd" --check-config "$CONF" >/dev/null

# start_server plain|tls: a fresh parleyd with its own data directory; sets
# SERVER_PID, URL and MODE.
start_server() {
    local mode=$1 flag=--plaintext scheme=http
    [ "$mode" = tls ] && { flag=""; scheme=https; }
    mkdir -p "$T/data-$mode"
    # shellcheck disable=SC2086
    "$BUILD/parleyd" --config "$CONF" --listen 127.0.0.1:0 --data "$T/data-$mode" $flag \
        >"$T/parleyd-$mode.out" 2>"$T/parleyd-$mode.err" &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        grep -q "^parleyd: listening on " "$T/parleyd-$mode.out" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench: parleyd exited:" >&2; cat "$T/parleyd-$mode.err" >&2; exit 1; }
        sleep 0.05
    done
    local line
    line=$(grep "^parleyd: listening on " "$T/parleyd-$mode.out" | head -1)
    [ -n "$line" ] || { echo "bench: parleyd did not get ready" >&2; exit 1; }
    URL="$scheme://127.0.0.1:${line##*:}"
    MODE=$mode
    echo "bench: parleyd $SERVER_PID at $URL, $(nproc) cores, config bench/parleyd.conf" >&2
}

# stop_server: stops it by its PID; a non-zero exit is reported.
stop_server() {
    kill -TERM "$SERVER_PID"
    local rc=0
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=""
    [ "$rc" -eq 0 ] || echo "bench: parleyd exited with status $rc" >&2
}

start_server plain

# name|server (plain or tls)|scenario and options
SUITE=(
    "signup-max|plain|signup --max --concurrency 64 --duration 15"
    "signup-rate|plain|signup --rate 1000 --duration 10"
    "msgs-closed|plain|msgs --pairs 50 --window 8 --size 100 --duration 20"
    "msgs-open|plain|msgs --pairs 50 --rate 5000 --window 64 --size 100 --duration 20"
    "secret|plain|secret --pairs 50 --window 8 --size 200 --duration 10"
    "idle|plain|idle --conns 5000 --hold 15 --accounts 200"
    "surge|plain|surge --pairs 100 --rate 2000 --signup-rate 3000 --duration 30"
    "idle-tls|tls|idle --conns 5000 --hold 10 --accounts 200 --tls"
)

i=0
for entry in "${SUITE[@]}"; do
    name=${entry%%|*}
    rest=${entry#*|}
    mode=${rest%%|*}
    args=${rest#*|}
    if [ "$mode" != "$MODE" ]; then
        stop_server
        start_server "$mode"
    fi
    echo "bench: $name: parley-bench $args" >&2
    # shellcheck disable=SC2086
    if ! "$BUILD/parley-bench" --server "$URL" --server-pid "$SERVER_PID" \
        --config bench/parleyd.conf --json $args >"$T/$i.json" 2>"$T/$i.err"; then
        echo "bench: $name failed:" >&2
        cat "$T/$i.err" >&2
        echo '{}' >"$T/$i.json"
    fi
    jq -c --arg name "$name" '. + {name: $name}' "$T/$i.json" >>"$T/all.jsonl"
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench: parleyd died during $name" >&2; cat "$T/parleyd-$MODE.err" >&2; SERVER_PID=""; exit 1; }
    i=$((i + 1))
done

echo
jq -r -s '
  def n: if . == null then "-" elif type == "number" then (. * 100 | round / 100 | tostring) else tostring end;
  (["run", "per_s", "p50_ms", "p99_ms", "max_ms", "sent", "delivered", "lost", "dup", "errors",
    "srv_cpu_s", "srv_rss_kib", "notes"] | @tsv),
  (.[] | [.name, (.per_s|n), (.p50_ms|n), (.p99_ms|n), (.max_ms|n), (.sent|n), (.delivered|n),
          (.lost|n), (.duplicates|n), (.errors|n), (.server_cpu_s|n), (.server_rss_kib|n),
          (if .scenario == "signup" then
             "refused+retry=\(.refused_retry|n) refused-no-retry=\(.refused_no_retry|n) timeouts=\(.timeouts|n)"
           elif .scenario == "msgs" then
             "cpu_us/msg=\(.server_cpu_us_per_msg|n) capped=\(.capped|n) send_errors=\(.send_errors|n)"
           elif .scenario == "secret" then
             "cpu_us/msg=\(.server_cpu_us_per_msg|n) acks=\(.envelope_acks|n) deleted=\(.envelope_acks_deleted|n) ack_errors=\(.ack_errors|n)"
           elif .scenario == "idle" then
             "connected=\(.connected|n)/\(.conns|n) rss/conn_kib=\(.rss_per_conn_kib|n) ping_rtt"
           elif .scenario == "surge" then
             "p99 before/during/after=\(.before_p99_ms|n)/\(.during_p99_ms|n)/\(.after_p99_ms|n) signups ok=\(.signup_accepted|n) refused+retry=\(.signup_refused_retry|n) no-retry=\(.signup_refused_no_retry|n) timeouts=\(.signup_timeouts|n)"
           else "failed" end)] | @tsv)
' "$T/all.jsonl" | awk -F'\t' '{
    printf "%-12s %10s %8s %8s %8s %8s %9s %5s %4s %6s %9s %11s  %s\n",
           $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 }'

stop_server
