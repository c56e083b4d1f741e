#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Self-destruct timers of secret chats through the real CLI: a timer change
# reaches the peer; a message sent with the timer is deleted on the
# reader's device timer_s after it was read (by a later recv), and on the
# sender's after the read receipt (by a running recv --follow); its
# plaintext is then nowhere in either home. A message sent before the
# timer, with the timer off, or not yet read, stays.
source "$(dirname "$0")/../harness/lib.sh"
start_parleyd main

pl alice signup alice >/dev/null
pl bob signup bob >/dev/null
pl alice secret start @bob >/dev/null

in_home() { grep -rqa -- "$2" "$T/$1"; }

# wait_gone HOME TEXT CMD...: runs CMD (and records its output in
# $T/polled) until TEXT is nowhere under HOME; at most about 60 s.
wait_gone() {
    local home=$1 text=$2 i
    shift 2
    : >"$T/polled"
    for i in $(seq 1 120); do
        "$@" >>"$T/polled" || fail "$* failed"
        in_home "$home" "$text" || return 0
        sleep 0.5
    done
    return 1
}

pl alice send --secret @bob "said before the timer" >/dev/null
expect_eq "no timer yet" "$(pl bob --json recv | jq -r 'select(.secret) | .timer_s // 0')" "0"

out=$(pl alice --json ttl --secret @bob 5)
expect_eq "ttl answer" "$(jq -r .ttl_s <<<"$out")" "5"
out=$(pl bob --json recv)
expect_eq "bob sees the change" "$(jq -r 'select(.kind == "ttl") | .ttl_s' <<<"$out")" "5"
expect_eq "change is secret" "$(jq -r 'select(.kind == "ttl") | .secret' <<<"$out")" "true"
expect_eq "changed by alice" "$(jq -r 'select(.kind == "ttl") | .from' <<<"$out")" "@alice"
expect_eq "in the chat with alice" "$(jq -r 'select(.kind == "ttl") | .chat' <<<"$out")" "@alice"
expect_eq "a change is not a text" "$(jq -r 'select(.text != null) | .text' <<<"$out")" ""
human=$(pl alice ttl --secret @bob 5)
expect_match "human ttl output" "$human" "self-destruct timer"
expect_match "bob's human view" "$(pl bob recv)" '\[secret\] @alice set the self-destruct timer'

# A message with the timer: kept until read, then gone timer_s later.
out=$(pl alice --json send --secret @bob "burn after reading")
expect_eq "sent with the timer" "$(jq -r .timer_s <<<"$out")" "5"
burn_id=$(jq -r .id <<<"$out")
in_home alice "burn after reading" && ok || fail "alice keeps her copy until it is read"
out=$(pl bob --json recv)
expect_eq "bob reads it" "$(jq -r 'select(.secret and .text != null) | .text' <<<"$out")" \
    "burn after reading"
expect_eq "received with the timer" "$(jq -r 'select(.text != null) | .timer_s' <<<"$out")" "5"
date_s=$(jq -r 'select(.text != null) | .date' <<<"$out")
expires=$(jq -r 'select(.text != null) | .expires' <<<"$out")
[ "$expires" -ge $((date_s + 5)) ] && ok || fail "expires $expires not after date $date_s + 5"
in_home bob "burn after reading" && ok || fail "bob's copy is kept while its timer runs"

# Alice's recv --follow takes the receipt and deletes her copy when due.
# The binary itself, not the pl function's subshell, so that its PID is
# the one to stop.
"$PARLEY" --server "$URL" --home "$T/alice" --json recv --follow --timeout 60 \
    >"$T/follow.out" 2>"$T/follow.err" &
follow=$!
PIDS+=("$follow")
wait_gone bob "burn after reading" pl bob --json recv && ok ||
    fail "bob's copy is still in his home"
expect_eq "bob is told" "$(jq -r 'select(.kind == "deleted") | .ids[]' "$T/polled")" "$burn_id"
expect_eq "deleted in the chat" "$(jq -r 'select(.kind == "deleted") | .chat' "$T/polled")" \
    "@alice"
for i in $(seq 1 120); do
    in_home alice "burn after reading" || break
    sleep 0.5
done
in_home alice "burn after reading" && fail "alice's copy is still in her home" || ok
for i in $(seq 1 20); do
    grep -q '"deleted"' "$T/follow.out" && break
    sleep 0.5
done
expect_eq "alice's follow is told" \
    "$(jq -r 'select(.kind == "deleted") | .ids[]' "$T/follow.out")" "$burn_id"
kill -TERM "$follow" 2>/dev/null || true
wait "$follow" 2>/dev/null || true
if grep -Eq "runtime error:|Sanitizer" "$T/follow.err"; then
    fail "sanitizer report from recv --follow: $(cat "$T/follow.err")"
else
    ok
fi
expect_eq "receipts are not shown" "$(jq -r 'select(.text != null) | .text' "$T/follow.out")" ""

# Not read yet: never expires, on either side.
pl alice send --secret @bob "not read yet" >/dev/null
sleep 6
pl alice recv >/dev/null
pl bob send --secret @alice "bob writes without reading" >/dev/null
in_home alice "not read yet" && ok || fail "alice's unread message expired"
# Read now: bob's copy starts its timer only now.
out=$(pl bob --json recv)
expect_eq "read late" "$(jq -r 'select(.text != null) | .text' <<<"$out")" "not read yet"
in_home bob "not read yet" && ok || fail "bob's late-read copy is kept while its timer runs"

# Timer off again: later messages stay, as does the one from before.
pl alice ttl --secret @bob 0 >/dev/null
out=$(pl bob --json recv)
expect_eq "timer off" "$(jq -r 'select(.kind == "ttl") | .ttl_s' <<<"$out")" "0"
out=$(pl alice --json send --secret @bob "timer is off")
expect_eq "sent without timer" "$(jq -r '.timer_s // 0' <<<"$out")" "0"
out=$(pl bob --json recv)
expect_eq "received without timer" "$(jq -r 'select(.text != null) | .expires // 0' <<<"$out")" "0"
sleep 6
pl alice recv >/dev/null
pl bob recv >/dev/null
for who in alice bob; do
    in_home $who "said before the timer" && ok || fail "$who lost the message from before the timer"
    in_home $who "timer is off" && ok || fail "$who lost the message sent with the timer off"
done

# Bob's own messages carry the chat's timer too: the change reached him.
pl bob ttl --secret @alice 7 >/dev/null
expect_eq "alice sees bob's change" \
    "$(pl alice --json recv | jq -r 'select(.kind == "ttl") | "\(.from) \(.ttl_s)"')" "@bob 7"
out=$(pl alice --json send --secret @bob "alice uses bob's timer")
expect_eq "either side changes it" "$(jq -r .timer_s <<<"$out")" "7"

# A sender whose identity key changed and is not accepted (review finding
# 4): its timer change is not recorded, its read receipts not applied.
other=05$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
change_key() { sed -i -E "s/^(device [0-9]+) [0-9a-f]{66} [0-9a-f]{66}$/\1 $other $other/" "$1"; }
timer_before=$(cat "$T/bob/secret/alice/timer")
change_key "$T/bob/secret/alice/trust"
pl alice ttl --secret @bob 9 >/dev/null
out=$(PARLEY_LOG=warn pl bob --json recv 2>"$T/unverified.err")
expect_eq "unverified change shown" "$(jq -r 'select(.kind == "ttl") | .ttl_s' <<<"$out")" "9"
expect_eq "unverified change not recorded" "$(cat "$T/bob/secret/alice/timer")" "$timer_before"
expect_match "unverified change logged" "$(cat "$T/unverified.err")" "not applied"
pl bob verify @alice --accept >/dev/null
# An hour, so that nothing below expires while it is looked at.
pl alice ttl --secret @bob 3600 >/dev/null
pl bob recv >/dev/null
out=$(pl alice --json send --secret @bob "alice's message bob reads")
unverified_id=$(jq -r .id <<<"$out")
change_key "$T/alice/secret/bob/trust"
pl bob recv >/dev/null
pl alice recv >/dev/null
grep -q "^$unverified_id " "$T/alice/secret/bob/expiring" 2>/dev/null \
    && fail "receipt from a changed key applied" || ok
pl alice verify @bob --accept >/dev/null

# A chat with as many messages waiting for their timer as the index holds
# (review finding 6): a message read then is deleted at once, reported,
# and its receipt still reaches the sender.
bob_index="$T/bob/secret/alice/expiring"
alice_uid=$(pl alice --json whoami | jq -r .user_id)
for i in $(seq 1 1000); do echo "$((900000 + i)) $alice_uid 4000000000 0"; done >"$bob_index"
chmod 600 "$bob_index"
out=$(pl alice --json send --secret @bob "read with a full index")
full_id=$(jq -r .id <<<"$out")
out=$(pl bob --json recv)
expect_eq "read with a full index" "$(jq -r 'select(.text != null) | .text' <<<"$out")" \
    "read with a full index"
expect_eq "deleted at once, reported" "$(jq -r 'select(.kind == "deleted") | .ids[]' <<<"$out")" \
    "$full_id"
in_home bob "read with a full index" && fail "bob's copy kept with a full index" || ok
pl alice recv >/dev/null
grep -q "^$full_id " "$T/alice/secret/bob/expiring" 2>/dev/null && ok \
    || fail "no receipt for a message deleted at once"
rm "$bob_index"

# Every file in the homes is 0600, every directory 0700.
bad=$(find "$T/alice" "$T/bob" \( -type f ! -perm 0600 \) -o \( -type d ! -perm 0700 \))
expect_eq "modes" "$bad" ""

stop_parleyd "$SERVER_PID" || fail "parleyd exit status"
finish
