#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Operations: --check-config, SIGHUP with a broken config keeps serving,
# /healthz and /metrics, plaintext refused off loopback.
source "$(dirname "$0")/../harness/lib.sh"

cat >"$T/bad.conf" <<'CONF'
[server]
listen = nowhere
[limits]
max_text_chars = 99999
frobnicate = 1
CONF
out=$("$PARLEYD" --check-config "$T/bad.conf") && fail "bad config passed check" || ok
expect_match "check-config names line 2" "$out" "bad.conf:2: \[server\] listen"
expect_match "check-config names line 4" "$out" "bad.conf:4: \[limits\] max_text_chars"
expect_match "check-config names line 5" "$out" "bad.conf:5: \[limits\] frobnicate"
src=${PARLEY_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
"$PARLEYD" --check-config "$src/parleyd.conf" >/dev/null && ok || fail "example config invalid"

err=$("$PARLEYD" --plaintext --listen 0.0.0.0:0 --data "$T/x" 2>&1) && fail "plaintext on 0.0.0.0 accepted" || ok
expect_match "plaintext refusal" "$err" "plaintext"

cat >"$T/good.conf" <<CONF
[server]
log_level = info
[ratelimit]
ip_rate = 100000
ip_burst = 100000
signup_ip_rate = 100000
signup_ip_burst = 100000
CONF
start_parleyd main --config "$T/good.conf"
pl alice signup alice >/dev/null
pl bob signup bob >/dev/null
pl alice send @bob "before reload" >/dev/null
# carol holds one connection open across both reloads: recv --follow exits
# with an error if its connection drops, so a live message after the
# reloads proves the reload kept connections.
pl carol signup carol >/dev/null
pl carol --json recv --follow --timeout 30 >"$T/follow.out" 2>"$T/follow.err" &
follower=$!
sleep 0.5

cp "$T/good.conf" "$T/saved.conf"
printf '[server\nthis is not ini\n' >"$T/good.conf"
kill -HUP "$SERVER_PID"
sleep 0.5
kill -0 "$SERVER_PID" && ok || fail "server died on a broken reload"
expect_match "reload rejected in log" "$(cat "$T/parleyd-main.err")" "reload_rejected"
pl alice send @bob "after broken reload" >/dev/null && ok || fail "send after broken reload"
cp "$T/saved.conf" "$T/good.conf"
kill -HUP "$SERVER_PID"
sleep 0.5
expect_match "valid reload applied" "$(cat "$T/parleyd-main.err")" "event=reloaded"
expect_match "store opened with the default checkpoint size" "$(cat "$T/parleyd-main.err")" \
    "checkpoint_bytes=134217728"
# [store] keys take effect on restart: a reload that changes one says so.
if grep -q "reload_partial" "$T/parleyd-main.err"; then fail "reload_partial before any restart-only change"; else ok; fi
printf '[store]\ncheckpoint_mib = 64\n' >>"$T/good.conf"
kill -HUP "$SERVER_PID"
sleep 0.5
expect_match "store change needs a restart" "$(cat "$T/parleyd-main.err")" "event=reload_partial"
pl alice send @carol "across reload" >/dev/null
for _ in $(seq 50); do grep -q "across reload" "$T/follow.out" && break; sleep 0.1; done
kill -0 "$follower" 2>/dev/null && ok || fail "follower's connection dropped by the reloads: $(cat "$T/follow.err")"
expect_eq "live push across reloads" "$(jq -r .text "$T/follow.out")" "across reload"
kill "$follower" 2>/dev/null || true
wait "$follower" 2>/dev/null || true
out=$(pl bob --json recv)
expect_eq "both messages" "$(jq -r .text <<<"$out" | tr '\n' '|')" "before reload|after broken reload|"

expect_eq "healthz" "$(curl -s "http://127.0.0.1:$PORT/healthz")" "ok"
m=$(curl -s "http://127.0.0.1:$PORT/metrics")
expect_match "metrics requests" "$m" 'parley_requests_total\{method="send",result="ok"\} [0-9]+'
expect_match "metrics commit histogram" "$m" 'parley_commit_seconds_bucket\{le="\+Inf"\} [0-9]+'
expect_match "metrics batch histogram" "$m" 'parley_commit_batch_size_count [0-9]+'
expect_match "metrics connections" "$m" 'parley_connections [0-9]+'
expect_match "metrics drops" "$m" 'parley_send_queue_drops_total [0-9]+'
# Each CLI run above signed in on the front loop and moved to a messaging
# loop (at least: 3 sign-ups, 3 sends, 1 follower, 1 recv).
moved=$(sed -n 's/^parley_connections_moved_total \([0-9]*\)$/\1/p' <<<"$m")
expect_eq "signed-in connections moved off the front loop" "$(( ${moved:-0} >= 8 ))" 1
# Each thread says what it is (top -H, perf): the front loop, the
# messaging loops, the store's writer.
names=$(cat /proc/"$SERVER_PID"/task/*/comm | sort | tr '\n' ' ')
expect_match "front loop thread named" "$names" "parley-front"
expect_match "messaging loop thread named" "$names" "parley-loop0"
expect_match "store writer thread named" "$names" "parley-store"
expect_eq "unknown path 404" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/nope")" "404"

# Logs never carry message text.
if grep -q "before reload" "$T/parleyd-main.err"; then fail "message text in server log"; else ok; fi

# Rate limits answer with an error carrying retry_after, and only the
# limited party is refused.
cat >"$T/strict.conf" <<'CONF'
[ratelimit]
signup_ip_rate = 0.01
signup_ip_burst = 2
CONF
start_parleyd strict --config "$T/strict.conf"
pl s1 signup s_one >/dev/null && ok || fail "first signup under limit"
pl s2 signup s_two >/dev/null && ok || fail "second signup under limit"
err=$(pl s3 signup s_three 2>&1 >/dev/null) && fail "third signup not limited" || ok
expect_match "rate limited with retry after" "$err" "^parley: rate limited, retry after [0-9.]+ s"
pl s1 send @s_two "still served" >/dev/null && ok || fail "existing user refused during signup limit"
m=$(curl -s "http://127.0.0.1:$PORT/metrics")
expect_match "metrics count the refusal" "$m" 'parley_requests_total\{method="signup",result="ERATE_LIMITED"\} 1'

# Without a front loop every loop accepts and keeps its connections:
# nothing moves, and everything works the same.
cat >"$T/nofront.conf" <<'CONF'
[server]
front_loop = false
threads = 2
CONF
"$PARLEYD" --check-config "$T/nofront.conf" >/dev/null && ok || fail "front_loop = false refused"
start_parleyd nofront --config "$T/nofront.conf"
pl n1 signup n_one >/dev/null && ok || fail "signup without a front loop"
pl n2 signup n_two >/dev/null
pl n1 send @n_two "no front" >/dev/null && ok || fail "send without a front loop"
expect_eq "received without a front loop" "$(pl n2 --json recv | jq -r .text)" "no front"
m=$(curl -s "http://127.0.0.1:$PORT/metrics")
expect_match "nothing moved without a front loop" "$m" 'parley_connections_moved_total 0'
names=$(cat /proc/"$SERVER_PID"/task/*/comm | sort | tr '\n' ' ')
expect_match "two messaging loops" "$names" "parley-loop0 parley-loop1"
if grep -q "parley-front" <<<"$names"; then fail "a front loop thread without a front loop"; else ok; fi
printf '[server]\nfront_loop = maybe\n' >"$T/badfront.conf"
out=$("$PARLEYD" --check-config "$T/badfront.conf") && fail "front_loop = maybe accepted" || ok
expect_match "front_loop must be a boolean" "$out" "badfront.conf:2: \[server\] front_loop: must be true or false"
finish
