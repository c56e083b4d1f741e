#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# parley-e2e end to end, no server: two state directories, alice and bob,
# run X3DH and the Double Ratchet through the tool's JSON. Covers bundles
# with and without a one-time prekey, several ratchet turns, out-of-order
# delivery, replayed, tampered and malformed input (each refused with one
# {"error": ...} object and no file changed), and the files' modes.
source "$(dirname "$0")/../harness/lib.sh"

E2E="$BUILD/parley-e2e"

# e2e DIR ARGS...: the tool on state directory $T/DIR.
e2e() {
    local dir=$1; shift
    "$E2E" "$T/$dir" "$@"
}

# snap DIR: every file's name, mode and hash, to prove nothing changed.
snap() {
    (cd "$T/$1" && for f in *; do printf '%s %s %s\n' "$f" "$(stat -c %a "$f")" "$(sha256sum <"$f")"; done)
}

# refused WHAT STATUS DIR ARGS... < input: must exit with STATUS, print
# nothing on stdout and exactly one {"error": string} object on stderr.
# Sets ERR to the error text.
refused() {
    local what=$1 want=$2; shift 2
    local rc=0
    e2e "$@" >"$T/out" 2>"$T/err" || rc=$?
    expect_eq "$what: exit status" "$rc" "$want"
    expect_eq "$what: no output" "$(cat "$T/out")" ""
    ERR=$(jq -er 'select(type == "object" and (.error | type) == "string") | .error' \
        <(grep -v '^usage:\|^       parley-e2e' "$T/err") 2>/dev/null || echo "?")
    expect_eq "$what: one error object" "$([ "$ERR" != "?" ] && echo yes)" yes
}

# b64len TEXT: bytes a base64 text decodes to.
b64len() { base64 -d <<<"$1" | wc -c; }

# send FROM TO [TODEV] TEXT: FROM encrypts TEXT for TO; the message JSON on stdout.
enc() { printf '%s' "$4" | e2e "$1" encrypt --peer "$2" --peer-device "$3"; }
# dec DIR PEER DEV MSG: the decrypted text.
dec() { e2e "$1" decrypt --peer "$2" --peer-device "$3" <<<"$4" | jq -r .plaintext | base64 -d; }

# tamper MSG OFFSET: MSG with one bit of its body's byte OFFSET flipped.
tamper() {
    local f="$T/tamper.bin" byte
    jq -r .body <<<"$1" | base64 -d >"$f"
    byte=$(od -An -tu1 -j "$2" -N1 "$f" | tr -d ' ')
    printf "$(printf '\\%03o' $((byte ^ 1)))" | dd of="$f" bs=1 seek="$2" conv=notrunc 2>/dev/null
    jq -c --arg b "$(base64 -w0 "$f")" '.body = $b' <<<"$1"
}

# --- init ---
a=$(e2e alice init --registration-id 1111)
expect_eq "alice init" "$(jq -c '[.registrationId, .deviceId]' <<<"$a")" "[1111,1]"
expect_eq "identity key is 33 bytes" "$(b64len "$(jq -r .identityKey <<<"$a")")" 33
expect_eq "identity key type byte" "$(jq -r .identityKey <<<"$a" | base64 -d | od -An -tx1 -N1 | tr -d ' ')" 05
b=$(e2e bob init --registration-id 2222 --device-id 2)
expect_eq "bob init" "$(jq -c '[.registrationId, .deviceId]' <<<"$b")" "[2222,2]"
expect_eq "state dir mode" "$(stat -c %a "$T/alice")" 700
refused "init twice" 1 bob init --registration-id 3333
expect_match "init twice error" "$ERR" "already initialised"

# --- bundles ---
bundle1=$(e2e bob bundle --signed-prekey-id 1 --prekey-id 100)
expect_eq "bundle fields" "$(jq -c 'keys' <<<"$bundle1")" \
    '["deviceId","identityKey","preKeyId","preKeyPublic","registrationId","signedPreKeyId","signedPreKeyPublic","signedPreKeySignature"]'
expect_eq "bundle identity is bob's" "$(jq -r .identityKey <<<"$bundle1")" "$(jq -r .identityKey <<<"$b")"
expect_eq "signature is 64 bytes" "$(b64len "$(jq -r .signedPreKeySignature <<<"$bundle1")")" 64
again=$(e2e bob bundle --signed-prekey-id 1 --prekey-id 100)
expect_eq "keys are kept" "$(jq -c '[.signedPreKeyPublic, .signedPreKeySignature, .preKeyPublic]' <<<"$again")" \
    "$(jq -c '[.signedPreKeyPublic, .signedPreKeySignature, .preKeyPublic]' <<<"$bundle1")"
bundle0=$(e2e bob bundle --signed-prekey-id 1)
expect_eq "bundle without a one-time prekey" "$(jq -c 'has("preKeyId") or has("preKeyPublic")' <<<"$bundle0")" false
[ -f "$T/bob/prekey-100" ] && ok || fail "prekey-100 not stored"

# --- alice starts on the bundle with a one-time prekey ---
e2e alice start-session --peer bob --peer-device 2 <<<"$bundle1" >/dev/null && ok || fail "start-session"
m1=$(enc alice bob 2 "hello bob")
expect_eq "first message type" "$(jq -r .type <<<"$m1")" prekey
m2=$(enc alice bob 2 "still waiting")
expect_eq "unanswered: prekey again" "$(jq -r .type <<<"$m2")" prekey
expect_eq "bob decrypts the first" "$(dec bob alice 1 "$m1")" "hello bob"
[ -e "$T/bob/prekey-100" ] && fail "one-time prekey kept after use" || ok
expect_eq "bob decrypts the second" "$(dec bob alice 1 "$m2")" "still waiting"

r1=$(enc bob alice 1 "hi alice")
expect_eq "reply type" "$(jq -r .type <<<"$r1")" whisper
expect_eq "alice decrypts the reply" "$(dec alice bob 2 "$r1")" "hi alice"
m3=$(enc alice bob 2 "after the reply")
expect_eq "answered: whisper" "$(jq -r .type <<<"$m3")" whisper
expect_eq "bob decrypts it" "$(dec bob alice 1 "$m3")" "after the reply"

# --- several ratchet turns ---
for i in 1 2 3 4; do
    x=$(enc bob alice 1 "bob $i")
    y=$(enc bob alice 1 "bob $i again")
    expect_eq "turn $i: alice" "$(dec alice bob 2 "$x")|$(dec alice bob 2 "$y")" "bob $i|bob $i again"
    z=$(enc alice bob 2 "alice $i")
    expect_eq "turn $i: bob" "$(dec bob alice 1 "$z")" "alice $i"
done

# --- out of order, then a replay and a tampered body ---
o1=$(enc alice bob 2 "one"); o2=$(enc alice bob 2 "two"); o3=$(enc alice bob 2 "three")
expect_eq "out of order: third first" "$(dec bob alice 1 "$o3")" three
expect_eq "out of order: first" "$(dec bob alice 1 "$o1")" one
before=$(snap bob)
refused "replay" 1 bob decrypt --peer alice <<<"$o3"
expect_match "replay error" "$ERR" "replay"
expect_eq "replay changed nothing" "$(snap bob)" "$before"
len=$(jq -r .body <<<"$o2" | base64 -d | wc -c)
for off in 1 $((len / 2)) $((len - 1)); do
    refused "tampered byte $off" 1 bob decrypt --peer alice <<<"$(tamper "$o2" "$off")"
    expect_eq "tampered byte $off changed nothing" "$(snap bob)" "$before"
done
expect_eq "the untampered one still decrypts" "$(dec bob alice 1 "$o2")" two

# --- empty and binary plaintexts ---
e=$(printf '' | e2e alice encrypt --peer bob --peer-device 2)
expect_eq "empty plaintext" "$(e2e bob decrypt --peer alice <<<"$e" | jq -r .plaintext)" ""
head -c 3000 /dev/urandom >"$T/bin"
bm=$(e2e alice encrypt --peer bob --peer-device 2 <"$T/bin")
e2e bob decrypt --peer alice <<<"$bm" | jq -r .plaintext | base64 -d >"$T/bin.out"
cmp -s "$T/bin" "$T/bin.out" && ok || fail "binary plaintext differs"

# --- carol starts on a bundle without a one-time prekey ---
e2e carol init --registration-id 3333 >/dev/null
e2e carol start-session --peer bob --peer-device 2 <<<"$bundle0" >/dev/null && ok || fail "carol start-session"
c1=$(enc carol bob 2 "from carol")
expect_eq "no-prekey bundle: prekey type" "$(jq -r .type <<<"$c1")" prekey
expect_eq "bob decrypts carol" "$(dec bob carol 1 "$c1")" "from carol"
expect_eq "carol's reply" "$(dec carol bob 2 "$(enc bob carol 1 "hi carol")")" "hi carol"
[ -f "$T/bob/signed-prekey-1" ] && ok || fail "signed prekey removed"

# --- dave starts on the used one-time prekey: refused, nothing changed ---
e2e dave init --registration-id 4444 >/dev/null
e2e dave start-session --peer bob --peer-device 2 <<<"$bundle1" >/dev/null
d1=$(enc dave bob 2 "late")
before=$(snap bob)
refused "used one-time prekey" 1 bob decrypt --peer dave <<<"$d1"
expect_match "used prekey error" "$ERR" "unknown prekey"
expect_eq "unknown prekey changed nothing" "$(snap bob)" "$before"

# --- bad inputs ---
refused "body not base64" 1 bob decrypt --peer alice <<<'{"type":"whisper","body":"!!!"}'
refused "body unpadded" 1 bob decrypt --peer alice <<<'{"type":"whisper","body":"QUJD"}'
expect_match "garbage body error" "$ERR" "malformed"
refused "unknown type" 1 bob decrypt --peer alice <<<'{"type":"other","body":"QUJD"}'
expect_match "unknown type error" "$ERR" "type must be"
refused "missing body" 1 bob decrypt --peer alice <<<'{"type":"whisper"}'
expect_match "missing body error" "$ERR" "missing field body"
refused "not JSON" 1 bob decrypt --peer alice <<<'hello'
refused "JSON not an object" 1 bob decrypt --peer alice <<<'[1]'
refused "whisper without a session" 1 bob decrypt --peer erin <<<"$m3"
expect_match "no session error" "$ERR" "no session"
refused "encrypt without a session" 1 alice encrypt --peer erin </dev/null
refused "encrypt to the wrong device" 1 alice encrypt --peer bob --peer-device 3 </dev/null
expect_eq "bad inputs changed nothing" "$(snap bob)" "$before"

# The bundle's signature with its first byte changed.
sig=$(jq -r .signedPreKeySignature <<<"$bundle0" | base64 -d | od -An -tu1 -v | tr -s ' \n' ' ')
set -- $sig
first=$(( ($1 + 1) % 256 ))
shift
flipped=$( { printf "$(printf '\\%03o' "$first")"; for v in "$@"; do printf "$(printf '\\%03o' "$v")"; done; } | base64 -w0)
before=$(snap alice)
refused "bad signed-prekey signature" 1 alice start-session --peer bob --peer-device 2 \
    <<<"$(jq -c --arg s "$flipped" '.signedPreKeySignature = $s' <<<"$bundle0")"
expect_match "bad signature error" "$ERR" "signature does not verify"
refused "identity key of 32 bytes" 1 alice start-session --peer bob --peer-device 2 \
    <<<"$(jq -c '.identityKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="' <<<"$bundle0")"
expect_match "key length error" "$ERR" "identityKey must be 33 bytes"
refused "identity key of wrong type" 1 alice start-session --peer bob --peer-device 2 \
    <<<"$(jq -c '.identityKey = "BgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"' <<<"$bundle0")"
expect_match "key type error" "$ERR" "type byte 0x05"
refused "missing signedPreKeyId" 1 alice start-session --peer bob <<<"$(jq -c 'del(.signedPreKeyId)' <<<"$bundle0")"
refused "preKeyId without its key" 1 alice start-session --peer bob <<<"$(jq -c '.preKeyId = 5' <<<"$bundle0")"
expect_eq "bad bundles changed nothing" "$(snap alice)" "$before"

refused "no arguments" 2 alice
refused "unknown command" 2 alice frobnicate
refused "missing --peer" 2 alice encrypt </dev/null
refused "peer name with a slash" 2 alice encrypt --peer ../bob </dev/null
refused "unknown option" 2 alice bundle --signed-prekey-id 1 --colour red
refused "registration id not a number" 2 erin init --registration-id 12x
refused "registration id zero" 2 erin init --registration-id 0
refused "device id too big" 2 erin init --registration-id 5 --device-id 99999999999
refused "bundle before init" 1 erin bundle --signed-prekey-id 1
expect_match "not initialised error" "$ERR" "not initialised"

# --- modes: the directories 0700, every file 0600, no temp file left ---
for d in alice bob carol dave; do
    expect_eq "$d dir mode" "$(stat -c %a "$T/$d")" 700
    for f in "$T/$d"/*; do expect_eq "$(basename "$f") mode" "$(stat -c %a "$f")" 600; done
done
expect_eq "no temp files" "$(ls "$T"/*/ | grep -c '\.tmp$' || true)" 0

finish
