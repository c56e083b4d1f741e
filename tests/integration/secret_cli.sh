#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Secret chats through the real CLI: sessions from bundles, messages both
# ways over several turns, delivery to an offline device and live, exactly
# once (also across a crash between storing and acking), retries by client
# id, a DEVICES_CHANGED round, prekey stock top-ups, crossed session starts,
# two processes on one home; home files 0600 in 0700 directories; equal
# safety numbers on both sides; a changed identity key blocks sending until
# accepted and flags received messages; no plaintext on the server side.
source "$(dirname "$0")/../harness/lib.sh"
start_parleyd main

pl alice signup alice >/dev/null
pl bob signup bob >/dev/null

out=$(pl alice --json secret start @bob)
expect_eq "secret start" "$(jq -r .started <<<"$out")" "true"

out=$(pl alice --json send --secret @bob "first secret words")
expect_eq "send --secret is secret" "$(jq -r .secret <<<"$out")" "true"
expect_eq "send --secret text" "$(jq -r .text <<<"$out")" "first secret words"
first_id=$(jq -r .id <<<"$out")

out=$(pl bob --json recv)
expect_eq "bob gets the text" "$(jq -r 'select(.secret) | .text' <<<"$out")" "first secret words"
expect_eq "bob's copy is secret" "$(jq -r 'select(.secret) | .secret' <<<"$out")" "true"
expect_eq "chat is the peer" "$(jq -r 'select(.secret) | .chat' <<<"$out")" "@alice"
expect_eq "id is the message id" "$(jq -r 'select(.secret) | .id' <<<"$out")" "$first_id"
expect_eq "pts of a secret message" "$(jq -r 'select(.secret) | .pts' <<<"$out")" "0"
expect_eq "second recv is empty" "$(pl bob --json recv)" ""
human=$(pl alice send --secret @bob "marked")
expect_match "human output marks secret" "$human" '\[secret\] @alice -> @bob: marked'
pl bob recv >/dev/null

# Several turns each way: whisper messages after the first prekey message.
for i in 1 2 3; do
    pl bob send --secret @alice "bob says $i" >/dev/null || fail "bob send $i"
    expect_eq "alice turn $i" "$(pl alice --json recv | jq -r 'select(.secret) | .text')" "bob says $i"
    pl alice send --secret @bob "alice says $i" >/dev/null || fail "alice send $i"
    expect_eq "bob turn $i" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" "alice says $i"
done

# Bob offline: messages wait on the server and arrive in order, once.
pl alice send --secret @bob "while away 1" >/dev/null
pl alice send --secret @bob "while away 2" >/dev/null
out=$(pl bob --json recv)
expect_eq "offline messages in order" "$(jq -r 'select(.secret) | .text' <<<"$out" | tr '\n' '|')" \
    "while away 1|while away 2|"
expect_eq "delivered once" "$(pl bob --json recv)" ""

# A retry with the same client id while the first is queued is the first.
one=$(pl alice --json send --secret --client-id 4242 @bob "sent twice")
two=$(pl alice --json send --secret --client-id 4242 @bob "sent twice")
expect_eq "retry is a duplicate" "$(jq -r .duplicate <<<"$two")" "true"
expect_eq "retry has the first id" "$(jq -r .id <<<"$two")" "$(jq -r .id <<<"$one")"
expect_eq "received once" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" "sent twice"
# The first attempt's answer lost after the server stored it (review
# finding 2): the retry comes back duplicate, and the sender still keeps
# its copy.
alice_uid=$(pl alice --json whoami | jq -r .user_id)
alice_dev=$(pl alice --json whoami | jq -r .device_id)
one=$(pl alice --json send --secret --client-id 4243 @bob "answer lost")
lost_id=$(jq -r .id <<<"$one")
rm "$T/alice/secret/bob/$lost_id-$alice_uid"
two=$(pl alice --json send --secret --client-id 4243 @bob "answer lost")
expect_eq "lost answer: retry is a duplicate" "$(jq -r .duplicate <<<"$two")" "true"
[ -e "$T/alice/secret/bob/$lost_id-$alice_uid" ] && ok || fail "duplicate send not stored by the sender"
expect_eq "lost answer: received once" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" \
    "answer lost"

# Live: bob waits (its fetch done, as its debug log says), then alice sends.
PARLEY_LOG=debug pl bob --json recv --timeout 60 >"$T/live.out" 2>"$T/live.err" &
live=$!
for _ in $(seq 1 600); do
    grep -q "no more queued envelopes" "$T/live.err" && break
    kill -0 "$live" 2>/dev/null || break
    sleep 0.05
done
grep -q "no more queued envelopes" "$T/live.err" && ok || fail "bob's recv did not get ready"
pl alice send --secret @bob "live one" >/dev/null
wait "$live" || fail "live recv failed"
expect_eq "live push delivered" "$(jq -r 'select(.secret) | .text' <"$T/live.out")" "live one"
grep -q "live one" "$T/live.err" && fail "plaintext in libparley's log" || ok

# A crash between storing a message and acking it delivers it once. bob's
# recv is killed inside its callback: its stdout is a FIFO nobody reads
# any more, so printing the message raises SIGPIPE. The FIFO is opened
# while a reader exists, then the process stops itself until that reader
# is gone, so the kill comes at the first write, never earlier or later.
crash_recv() {
    mkfifo "$T/nowhere"
    exec 4<>"$T/nowhere"
    ( exec >"$T/nowhere" 4<&-; kill -STOP $BASHPID
      exec "$PARLEY" --server "$URL" --home "$T/bob" --json recv ) &
    local pid=$! i
    for i in $(seq 1 600); do
        [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" == T ] && break
        sleep 0.01
    done
    exec 4<&-
    kill -CONT "$pid"
    local rc=0
    wait "$pid" || rc=$?
    rm -f "$T/nowhere"
    expect_eq "recv killed by SIGPIPE in its callback" "$rc" "141"
}
pl alice send --secret @bob "crash before ack" >/dev/null
crash_recv
pending=$(ls "$T/bob/secret/alice/" | grep -c '\.pending$' || true)
expect_eq "stored pending, not acked" "$pending" "1"
out=$(PARLEY_LOG=debug pl bob --json recv 2>"$T/redeliver.err")
expect_eq "pending message delivered" "$(jq -r 'select(.secret) | .text' <<<"$out")" "crash before ack"
grep -q "was stored before; delivering it" "$T/redeliver.err" && ok || fail "not delivered from the store"
expect_eq "then acked" "$(PARLEY_LOG=debug pl bob --json recv 2>&1 | grep -c 'taken before' || true)" "0"
# The same crash after the message was marked delivered: acked, not shown again.
pl alice send --secret @bob "crash after delivery" >/dev/null
crash_recv
for f in "$T"/bob/secret/alice/*.pending; do mv "$f" "${f%.pending}"; done
out=$(PARLEY_LOG=debug pl bob --json recv 2>"$T/dedupe.err")
expect_eq "delivered message not shown again" "$out" ""
grep -q "was taken before; acking it" "$T/dedupe.err" && ok || fail "envelope not recognized as taken"
expect_eq "acked" "$(PARLEY_LOG=debug pl bob --json recv 2>&1 | grep -c 'taken before' || true)" "0"
# A crash after the message was stored but before the session was saved
# (review finding 3), made by putting back bob's key and session files as
# they were: the next recv delivers from the store and still moves the
# session on and deletes the one-time prekey used (a PreKeySignalMessage,
# after alice's new start).
pl alice secret start @bob >/dev/null
pl alice send --secret @bob "crash before the session" >/dev/null
cp -a "$T/bob/e2e" "$T/bob-e2e-before"
crash_recv
rm -rf "$T/bob/e2e"
cp -a "$T/bob-e2e-before" "$T/bob/e2e"
out=$(pl bob --json recv)
expect_eq "delivered from the store" "$(jq -r 'select(.secret) | .text' <<<"$out")" \
    "crash before the session"
sess="session-u$alice_uid.$alice_dev"
cmp -s "$T/bob/e2e/$sess" "$T/bob-e2e-before/$sess" && fail "session not saved after the stop" || ok
expect_eq "used one-time prekey deleted" "$(find "$T/bob/e2e" -name 'prekey-*' | wc -l)" \
    "$(($(find "$T/bob-e2e-before" -name 'prekey-*' | wc -l) - 1))"
rm -rf "$T/bob-e2e-before"
pl alice send --secret @bob "after the stop" >/dev/null
expect_eq "session intact after the stop" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" \
    "after the stop"

# A sender whose record is full (review finding 7): the envelope is the
# one at fault, acked and dropped; it never blocks the queue.
full_key=05$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cp "$T/bob/secret/alice/trust" "$T/bob-trust-saved"
{ echo "user_id $alice_uid"; for i in $(seq 1000 1099); do echo "device $i $full_key -"; done; } \
    >"$T/bob/secret/alice/trust"
pl alice send --secret @bob "to a full record" >/dev/null
pl bob --json recv >"$T/full.out" 2>"$T/full.err" && ok || fail "recv with a full record: $(cat "$T/full.err")"
pl bob --json recv >"$T/full.out" 2>"$T/full.err" && ok || fail "recv after a full record: $(cat "$T/full.err")"
cat "$T/bob-trust-saved" >"$T/bob/secret/alice/trust"
rm "$T/bob-trust-saved"
pl alice send --secret @bob "after the full record" >/dev/null
expect_eq "queue moves after a full record" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" \
    "after the full record"

# DEVICES_CHANGED: alice's records name a device bob does not have (999,
# with a copy of a real session, so an envelope is made for it) and lack
# the one he has. The server names both; alice drops the stale one, seals
# for the missing one and sends again: bob gets the message once.
bob_uid=$(pl bob --json whoami | jq -r .user_id)
bob_dev=$(pl bob --json whoami | jq -r .device_id)
cp "$T/alice/e2e/session-u$bob_uid.$bob_dev" "$T/alice/e2e/session-u$bob_uid.999"
sed -i -E "s/^device $bob_dev /device 999 /" "$T/alice/secret/bob/trust"
PARLEY_LOG=info pl alice send --secret @bob "after the device list changed" >/dev/null 2>"$T/dc.err" \
    || fail "send with an out-of-date device list"
grep -q "device list of @bob changed; sending again" "$T/dc.err" && ok || fail "no DEVICES_CHANGED round"
expect_eq "bob gets it once" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" \
    "after the device list changed"
expect_eq "records fixed" "$(cut -d' ' -f1-2 "$T/alice/secret/bob/trust" | tr '\n' '|')" \
    "user_id $bob_uid|device 999|device $bob_dev|"
grep -Eq "^device 999 .* removed$" "$T/alice/secret/bob/trust" && ok || fail "stale device not kept as removed"
[ -e "$T/alice/e2e/session-u$bob_uid.999" ] && fail "stale session kept" || ok

# Prekey stock: each start takes one of bob's one-time prekeys (one went to
# the first start). Below 10, bob's next connect tops the stock up to 100
# with new ids (the server refuses an id still in stock, so a reused one
# would fail the upload).
for _ in $(seq 1 91); do pl alice secret start @bob >/dev/null || fail "secret start"; done
PARLEY_LOG=info pl bob whoami >/dev/null 2>"$T/keys.err"  # no network: nothing uploaded
grep -q "uploaded" "$T/keys.err" && fail "whoami uploaded keys" || ok
PARLEY_LOG=info pl bob recv >/dev/null 2>"$T/keys.err"
expect_match "stock topped up" "$(cat "$T/keys.err")" "uploaded 9[0-9] one-time prekeys; 100 in stock"
expect_match "counter moved on" "$(cat "$T/bob/prekeys")" "^next_prekey_id 19[0-9]"
pl alice send --secret @bob "on a restarted session" >/dev/null
expect_eq "restarted session works" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" \
    "on a restarted session"

# Signed prekey rotation: a week-old one (the date moved back in bob's
# counters) is replaced on bob's next connect; a session started from the
# new bundle works, and so does alice's session from the old one.
spk=$(sed -n 's/^signed_prekey_id //p' "$T/bob/prekeys")
sed -i 's/^signed_prekey_date .*/signed_prekey_date 0/' "$T/bob/prekeys"
PARLEY_LOG=info pl bob recv >/dev/null 2>"$T/rotate.err"
expect_match "rotated" "$(cat "$T/rotate.err")" "uploaded 0 one-time prekeys and the signed prekey"
expect_eq "new signed prekey id" "$(sed -n 's/^signed_prekey_id //p' "$T/bob/prekeys")" "$((spk + 1))"
[ -e "$T/bob/e2e/signed-prekey-$spk" ] && ok || fail "previous signed prekey not kept"
pl alice send --secret @bob "on the old session" >/dev/null
expect_eq "old session still works" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" \
    "on the old session"
pl alice secret start @bob >/dev/null
pl alice send --secret @bob "on the new signed prekey" >/dev/null
expect_eq "new bundle works" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" \
    "on the new signed prekey"

# Both sides start a session before either got the other's first message:
# each first message replaces the receiver's session, and the next ones
# decrypt on the session kept as previous, which becomes current again.
pl carol signup carol >/dev/null
pl dave signup dave >/dev/null
pl carol secret start @dave >/dev/null
pl dave secret start @carol >/dev/null
pl carol send --secret @dave "c1" >/dev/null
pl dave send --secret @carol "d1" >/dev/null
expect_eq "crossed start: carol gets d1" "$(pl carol --json recv | jq -r 'select(.secret) | .text')" "d1"
expect_eq "crossed start: dave gets c1" "$(pl dave --json recv | jq -r 'select(.secret) | .text')" "c1"
for i in 2 3 4; do
    pl carol send --secret @dave "c$i" >/dev/null
    expect_eq "crossed start: dave gets c$i" "$(pl dave --json recv | jq -r 'select(.secret) | .text')" "c$i"
    pl dave send --secret @carol "d$i" >/dev/null
    expect_eq "crossed start: carol gets d$i" "$(pl carol --json recv | jq -r 'select(.secret) | .text')" "d$i"
done

# One home, two processes: alice follows her chats while she sends in the
# same chat. Both advance the same session file; they take turns (a lock
# in the home), so no update is lost and no message key used twice.
PARLEY_LOG=debug pl alice --json recv --follow >"$T/follow.out" 2>"$T/follow.err" &
follow=$!
for _ in $(seq 1 600); do
    grep -q "no more queued envelopes" "$T/follow.err" && break
    sleep 0.05
done
for i in 1 2 3 4 5; do
    pl alice send --secret @bob "a-par-$i" >/dev/null || fail "alice send a-par-$i"
    pl bob send --secret @alice "b-par-$i" >/dev/null || fail "bob send b-par-$i"
done
for _ in $(seq 1 600); do
    [ "$(grep -c 'b-par-' "$T/follow.out")" -ge 5 ] && break
    sleep 0.05
done
kill "$follow"
wait "$follow" || true
expect_eq "alice's follower got bob's" "$(jq -r 'select(.secret) | .text' <"$T/follow.out" | tr '\n' ' ')" \
    "b-par-1 b-par-2 b-par-3 b-par-4 b-par-5 "
expect_eq "bob got alice's" "$(pl bob --json recv | jq -r 'select(.secret) | .text' | tr '\n' ' ')" \
    "a-par-1 a-par-2 a-par-3 a-par-4 a-par-5 "
pl alice send --secret @bob "after the follower" >/dev/null
expect_eq "the session is intact" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" \
    "after the follower"

# Cloud messages still work beside secret ones.
pl alice send @bob "a cloud message" >/dev/null
out=$(pl bob --json recv)
expect_eq "cloud message is not secret" "$(jq -r 'select(.text == "a cloud message") | .secret' <<<"$out")" "false"

# Home files: 0600 files in 0700 directories, message files included.
for h in alice bob; do
    bad=$(find "$T/$h" -type f ! -perm 600; find "$T/$h" -type d ! -perm 700)
    expect_eq "$h home modes" "$bad" ""
done
[ "$(find "$T/bob/secret/alice" -type f ! -name trust | wc -l)" -ge 8 ] && ok \
    || fail "bob's secret messages are not stored"
expect_eq "message file mode" "$(stat -c %a "$T/bob/secret/alice/$first_id-1")" "600"

# Safety numbers: 60 digits in groups of 5, the same on both sides.
sa=$(pl alice --json verify @bob | jq -r .safety_number)
sb=$(pl bob --json verify @alice | jq -r .safety_number)
expect_match "safety number form" "$sa" '^[0-9]{5}( [0-9]{5}){11}$'
expect_eq "both sides see the same number" "$sa" "$sb"
expect_match "human verify" "$(pl alice verify @bob)" "$sa"
err=$(pl alice verify @carol 2>&1 >/dev/null) && fail "verify without a chat" || ok
expect_match "verify without a chat" "$err" "no secret chat with @carol"

# A changed identity. An account has one device, and a device's identity
# is fixed on the server, so the change is made on alice's side: her trust
# record says bob's device showed another key before (a valid key, not
# his). That is what alice would hold had bob's device been replaced.
other=05$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
sed -i -E "s/^(device [0-9]+) [0-9a-f]{66} [0-9a-f]{66}$/\1 $other $other/" "$T/alice/secret/bob/trust"
err=$(pl alice send --secret @bob "must not go" 2>&1 >/dev/null) && fail "send with a changed key" || ok
expect_match "changed key blocks sending" "$err" "identity key of @bob changed; nothing sent"
expect_eq "nothing reached bob" "$(pl bob --json recv)" ""
out=$(pl alice --json verify @bob)
expect_eq "verify says changed" "$(jq -r .changed <<<"$out")" "true"
expect_eq "number of the key in use" "$(jq -r .safety_number <<<"$out")" "$sb"
expect_match "human warning" "$(pl alice verify @bob)" "^WARNING: the identity key of @bob changed"
err=$(pl alice send --secret @bob "still not" 2>&1 >/dev/null) && fail "second send with a changed key" || ok
out=$(pl alice --json verify @bob --accept)
expect_eq "accept" "$(jq -r .accepted <<<"$out")" "true"
expect_eq "accepted is unchanged" "$(jq -r .changed <<<"$out")" "false"
pl alice send --secret @bob "after accepting" >/dev/null || fail "send after accept"
expect_eq "bob gets it" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" "after accepting"

# The receiving side: a message from a device whose key changed is still
# delivered, flagged, until accepted.
sed -i -E "s/^(device [0-9]+) [0-9a-f]{66} [0-9a-f]{66}$/\1 $other $other/" "$T/bob/secret/alice/trust"
pl alice send --secret @bob "flag me" >/dev/null
out=$(pl bob --json recv)
expect_eq "flagged message delivered" "$(jq -r 'select(.secret) | .text' <<<"$out")" "flag me"
expect_eq "flagged" "$(jq -r 'select(.secret) | .identity_changed' <<<"$out")" "true"
expect_match "human flag" "$(pl bob verify @alice)" "^WARNING"
pl bob verify @alice --accept >/dev/null
pl alice send --secret @bob "trusted again" >/dev/null
out=$(pl bob --json recv)
expect_eq "not flagged after accept" "$(jq -r 'select(.secret) | has("identity_changed")' <<<"$out")" "false"

# A device forgotten and back with another key (review finding 1). Alice's
# record keeps bob's device, removed, with the key it had: the key the
# server hands out now is a change, not a first use.
bob_trust="$T/alice/secret/bob/trust"
printf 'user_id %s\ndevice %s %s %s removed\n' "$bob_uid" "$bob_dev" "$other" "$other" >"$bob_trust"
err=$(pl alice send --secret @bob "not to a returning device" 2>&1 >/dev/null) \
    && fail "send to a removed device back with another key" || ok
expect_match "returning device is changed" "$err" "identity key of @bob changed; nothing sent"
# A record of another account under the name, with no device left: the
# devices of the account now named bob are not trusted on first use.
printf 'user_id 999999\n' >"$bob_trust"
err=$(pl alice send --secret @bob "not to another account" 2>&1 >/dev/null) \
    && fail "send to a name that changed hands" || ok
expect_match "name changed hands" "$err" "identity key of @bob changed; nothing sent"
expect_eq "nothing reached bob" "$(pl bob --json recv)" ""
pl alice verify @bob --accept >/dev/null
pl alice send --secret @bob "accepted again" >/dev/null || fail "send after accepting bob again"
expect_eq "bob gets it after accept" "$(pl bob --json recv | jq -r 'select(.secret) | .text')" \
    "accepted again"
# The receiving side: a PreKeySignalMessage from a removed device of alice
# with another key than the one recorded is flagged.
printf 'user_id %s\ndevice %s %s %s removed\n' "$alice_uid" "$alice_dev" "$other" "$other" \
    >"$T/bob/secret/alice/trust"
pl alice secret start @bob >/dev/null
pl alice send --secret @bob "from a returning device" >/dev/null
out=$(pl bob --json recv)
expect_eq "returning device's message" "$(jq -r 'select(.secret) | .text' <<<"$out")" \
    "from a returning device"
expect_eq "returning device flagged" "$(jq -r 'select(.secret) | .identity_changed' <<<"$out")" "true"
pl bob verify @alice --accept >/dev/null

# Errors a user sees.
err=$(pl alice send --secret @nobody "x" 2>&1 >/dev/null) && fail "secret send to nobody" || ok
expect_eq "no such user" "$err" "parley: no such user: @nobody"
err=$(pl alice secret start @alice 2>&1 >/dev/null) && fail "secret chat with oneself" || ok
expect_eq "secret chat with oneself" "$err" "parley: a secret chat needs another account than your own"
pl alice secret >/dev/null 2>&1 && rc=0 || rc=$?
expect_eq "secret without start is a usage error" "$rc" "2"

# The server never saw a plaintext: not in its data files nor its output.
stop_parleyd "$SERVER_PID" || fail "parleyd exit status"
for text in "first secret words" "while away 1" "live one" "after accepting" "flag me"; do
    if grep -rqa -- "$text" "$T/main" "$T"/parleyd-main.*; then
        fail "plaintext '$text' found on the server side"
    else
        ok
    fi
done

finish
