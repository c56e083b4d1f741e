#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A recipient that is offline catches up on reconnect: everything, in order,
# exactly once. And the same client id sent twice yields one message.
source "$(dirname "$0")/../harness/lib.sh"
start_parleyd main

pl alice signup alice >/dev/null
pl bob signup bob >/dev/null

for i in $(seq 1 25); do pl alice send @bob "msg $i" >/dev/null || fail "send $i"; done

out=$(pl bob --json recv)
expect_eq "all 25 in order" "$(jq -r .text <<<"$out" | tr '\n' ' ')" "$(for i in $(seq 1 25); do printf 'msg %s ' "$i"; done)"
pts=$(jq -r .pts <<<"$out" | tr '\n' ' ')
expect_eq "pts 1..25" "$pts" "$(seq 1 25 | tr '\n' ' ')"
expect_eq "nothing twice" "$(pl bob --json recv)" ""

# A retried send with the same client id returns the original message.
a=$(pl alice --json send --client-id 4242 @bob "only once")
b=$(pl alice --json send --client-id 4242 @bob "only once")
expect_eq "same message id" "$(jq -r .id <<<"$b")" "$(jq -r .id <<<"$a")"
expect_eq "retry marked duplicate" "$(jq -r .duplicate <<<"$b")" "true"
out=$(pl bob --json recv)
expect_eq "one delivery" "$(jq -r .text <<<"$out" | grep -c 'only once')" "1"

# Live delivery: bob follows while alice sends.
pl bob --json recv --follow --timeout 10 >"$T/follow.out" &
follower=$!
sleep 1
pl alice send @bob "live one" >/dev/null
for i in $(seq 1 100); do grep -q "live one" "$T/follow.out" && break; sleep 0.1; done
kill "$follower" 2>/dev/null; wait "$follower" 2>/dev/null || true
expect_match "live push" "$(cat "$T/follow.out")" "live one"
expect_eq "live message not repeated" "$(pl bob --json recv)" ""

finish
