#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# parley-bench smoke test: a few seconds of each scenario against a real
# parleyd on a free loopback port, with --json. Checks that every run
# completes, prints one well-formed JSON object with the required keys, and
# that its counts add up. No timing asserts: speed is for make bench.
source "$(dirname "$0")/../harness/lib.sh"

BENCH="$BUILD/parley-bench"
CONF="$(dirname "$0")/../../bench/parleyd.conf"
start_parleyd bench --config "$CONF"

REQUIRED='["scenario","duration_s","sent","delivered","lost","duplicates","errors","per_s",
  "p50_ms","p99_ms","max_ms","server_cpu_s","server_rss_kib","config"]'

# run NAME ARGS...: runs parley-bench with --json; the object goes to $T/NAME.json.
run() {
    local name=$1; shift
    local rc=0
    "$BENCH" --server "$URL" --server-pid "$SERVER_PID" --config bench/parleyd.conf --json "$@" \
        >"$T/$name.json" 2>"$T/$name.err" || rc=$?
    expect_eq "$name: exit status" "$rc" 0
    [ "$rc" -eq 0 ] || { cat "$T/$name.err" >&2; return 0; }
    expect_eq "$name: one JSON object" "$(jq -s 'length == 1 and (.[0] | type) == "object"' "$T/$name.json")" true
    expect_eq "$name: required keys" \
        "$(jq --argjson req "$REQUIRED" '[$req[] as $k | has($k)] | all' "$T/$name.json")" true
    expect_eq "$name: scenario" "$(jq -r .scenario "$T/$name.json")" "${1}"
    expect_eq "$name: config" "$(jq -r .config "$T/$name.json")" bench/parleyd.conf
    expect_eq "$name: server figures" "$(jq '.server_cpu_s != null and .server_rss_kib > 0' "$T/$name.json")" true
    if grep -Eq "ERROR: (Address|Leak)Sanitizer|runtime error:" "$T/$name.err"; then
        fail "$name: sanitizer report"; cat "$T/$name.err" >&2
    fi
}

# q NAME FILTER: a jq value from NAME's result.
q() { jq -r "$2" "$T/$1.json" 2>/dev/null || echo "?"; }

run signup signup --max --concurrency 16 --duration 4
expect_eq "signup: accepted > 0" "$(q signup '.accepted > 0')" true
expect_eq "signup: delivered == accepted" "$(q signup '.delivered == .accepted')" true
expect_eq "signup: refusals without retry_after" "$(q signup .refused_no_retry)" 0

run msgs msgs --pairs 5 --window 4 --size 200 --duration 4
expect_eq "msgs: sent > 0" "$(q msgs '.sent > 0')" true
expect_eq "msgs: sent == delivered" "$(q msgs '.sent == .delivered')" true
expect_eq "msgs: lost" "$(q msgs .lost)" 0
expect_eq "msgs: duplicates" "$(q msgs .duplicates)" 0
expect_eq "msgs: send errors" "$(q msgs .send_errors)" 0
expect_eq "msgs: none late, drain time reported" "$(q msgs '.late == 0 and (.drain_s | type) == "number"')" true

run msgs_open msgs --pairs 5 --rate 200 --duration 3
expect_eq "msgs open loop: sent == delivered" "$(q msgs_open '.sent == .delivered and .sent > 0')" true
expect_eq "msgs open loop: lost" "$(q msgs_open .lost)" 0

run secret secret --pairs 5 --window 4 --size 200 --duration 4
expect_eq "secret: sent > 0" "$(q secret '.sent > 0')" true
expect_eq "secret: sent == delivered" "$(q secret '.sent == .delivered')" true
expect_eq "secret: lost" "$(q secret .lost)" 0
expect_eq "secret: duplicates" "$(q secret .duplicates)" 0
expect_eq "secret: send errors" "$(q secret .send_errors)" 0
expect_eq "secret: keys uploaded" "$(q secret .keys.uploaded)" 10
expect_eq "secret: every envelope acked and deleted" \
    "$(q secret '.envelope_acks == .delivered and .envelope_acks_deleted == .delivered')" true
expect_eq "secret: ack errors" "$(q secret .ack_errors)" 0

run idle idle --conns 300 --hold 4 --accounts 20 --ping-interval 1
expect_eq "idle: connected == N" "$(q idle .connected)" 300
expect_eq "idle: still connected" "$(q idle .still_connected)" 300
expect_eq "idle: pings answered" "$(q idle '.sent == .delivered and .sent > 0')" true
expect_eq "idle: rss per conn reported" "$(q idle '.rss_per_conn_kib | type')" number

run surge surge --pairs 5 --rate 100 --signup-rate 20 --duration 5
expect_eq "surge: sent == delivered" "$(q surge '.sent == .delivered and .sent > 0')" true
expect_eq "surge: lost" "$(q surge .lost)" 0
expect_eq "surge: sign-ups accepted" "$(q surge '.signup_accepted > 0')" true
expect_eq "surge: refusals without retry_after" "$(q surge .signup_refused_no_retry)" 0

# A server outside loopback is refused with status 2 before anything is sent.
# Over TLS: the server's TLS 1.3 record layer (after OpenSSL's handshake)
# against parley-bench's OpenSSL client, carrying messages and pings.
stop_parleyd "$SERVER_PID" >/dev/null || true
start_parleyd bench_tls --tls --config "$CONF"
run msgs_tls msgs --pairs 5 --window 8 --size 4000 --duration 3
expect_eq "msgs over TLS: sent == delivered" "$(q msgs_tls '.sent == .delivered and .sent > 0')" true
expect_eq "msgs over TLS: lost" "$(q msgs_tls .lost)" 0
expect_eq "msgs over TLS: duplicates" "$(q msgs_tls .duplicates)" 0
expect_eq "msgs over TLS: errors" "$(q msgs_tls '.errors + .send_errors')" 0
run idle_tls idle --conns 200 --hold 3 --accounts 20 --ping-interval 1 --tls
expect_eq "idle over TLS: still connected" "$(q idle_tls .still_connected)" 200
expect_eq "idle over TLS: pings answered" "$(q idle_tls '.sent == .delivered and .sent > 0')" true

rc=0
"$BENCH" --server http://192.0.2.1:8443 signup --max --duration 1 >/dev/null 2>"$T/refuse.err" || rc=$?
expect_eq "non-loopback server: exit status" "$rc" 2
expect_match "non-loopback server: says why" "$(cat "$T/refuse.err")" "loopback"

finish
