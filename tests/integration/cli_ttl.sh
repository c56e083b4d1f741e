#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Cloud auto-delete through the real CLI: `parley ttl` sets a chat's time
# for both members, both devices see the change, new messages carry their
# expiry, and once it passes the server deletes them (history, the
# database files) and every device is told (recv shows the deletion);
# messages from before the setting, or after turning it off, stay.
source "$(dirname "$0")/../harness/lib.sh"
start_parleyd main

pl alice signup alice >/dev/null || fail "signup alice"
pl bob signup bob >/dev/null || fail "signup bob"
pl alice send @bob "said before the setting" >/dev/null || fail "send before"
pl bob recv >/dev/null

out=$(pl alice --json ttl @bob 2) || fail "ttl"
expect_eq "ttl answer" "$(jq -c '[.chat, .ttl_s, .secret]' <<<"$out")" '["@bob",2,false]'
out=$(pl bob --json recv)
expect_eq "bob sees the change" "$(jq -c 'select(.kind == "ttl") | [.chat, .from, .ttl_s]' <<<"$out")" '["@alice","@alice",2]'

text="words that vanish after two seconds"
out=$(pl alice --json send @bob "$text") || fail "send with ttl"
id=$(jq -r .id <<<"$out")
date=$(jq -r .date <<<"$out")
expect_eq "expiry is date + 2" "$(jq -r .expires <<<"$out")" "$((date + 2))"
out=$(pl bob --json recv)
expect_eq "bob's copy carries the expiry" "$(jq -r "select(.id == $id) | .expires" <<<"$out")" "$((date + 2))"

# The server deletes it within a second or two of its time (bounded wait).
gone=0
for _ in $(seq 1 100); do
    n=$(pl bob --json history @alice | jq -s "map(select(.id == $id)) | length") || n=err
    if [ "$n" == 0 ]; then gone=1; break; fi
    sleep 0.1
done
[ $gone -eq 1 ] && ok || fail "message $id still in history"
expect_eq "the earlier message stays" "$(pl bob --json history @alice | jq -r .text)" "said before the setting"

# Both devices are told.
for who in bob alice; do
    out=$(pl $who --json recv --timeout 10)
    expect_eq "$who is told" "$(jq -c 'select(.kind == "deleted") | .ids' <<<"$out")" "[$id]"
done

# Nothing of it is left in the server's files once the store is idle.
left=1
for _ in $(seq 1 100); do
    if ! grep -rqa "$text" "$T/main"; then left=0; break; fi
    sleep 0.1
done
[ $left -eq 0 ] && ok || fail "the deleted text is still in the server's data directory"

# Off again (by bob): new messages stay.
pl bob ttl alice 0 >/dev/null || fail "ttl off"
out=$(pl alice --json recv)
expect_eq "alice sees it off" "$(jq -c 'select(.kind == "ttl") | [.from, .ttl_s]' <<<"$out")" '["@bob",0]'
out=$(pl alice --json send @bob "this one stays") || fail "send after off"
expect_eq "no expiry after off" "$(jq -r '.expires // 0' <<<"$out")" "0"

# Errors a user sees.
err=$(pl alice ttl @bob 31536001 2>&1 >/dev/null) && fail "a ttl over a year accepted" || ok
expect_match "bad seconds" "$err" "bad SECONDS"
err=$(pl alice ttl @nobody_here 60 2>&1 >/dev/null) && fail "ttl for a missing user" || ok
expect_match "no such user" "$err" "no such user"
err=$(pl alice ttl @bob 2>&1 >/dev/null) && fail "ttl without seconds" || ok
expect_match "usage" "$err" "ttl takes PEER SECONDS"

finish
