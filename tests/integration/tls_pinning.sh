#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TLS with a self-signed certificate: pinned on first contact, accepted
# after, and a changed certificate on the same address refused.
source "$(dirname "$0")/../harness/lib.sh"
start_parleyd one --tls
port=$PORT
out=$(pl alice signup alice) && ok || fail "signup over TLS"
pl bob signup bob >/dev/null
pl alice send @bob "over tls" >/dev/null && ok || fail "send over TLS (pinned)"
expect_match "known_servers written" "$(cat "$T/alice/known_servers")" "127.0.0.1:$port"
expect_eq "known_servers mode" "$(stat -c %a "$T/alice/known_servers")" "600"
expect_eq "home mode" "$(stat -c %a "$T/alice")" "700"
# Every TLS 1.3 connection above left OpenSSL after its handshake for the
# server's own record layer, and carried the session on it.
m=$(curl -sk "https://127.0.0.1:$port/metrics")
hs=$(sed -n 's/^parley_tls_handshakes_total \([0-9]*\)$/\1/p' <<<"$m")
compact=$(sed -n 's/^parley_tls_compact_total \([0-9]*\)$/\1/p' <<<"$m")
expect_eq "TLS handshakes counted (3 CLI runs at least)" "$(( ${hs:-0} >= 3 ))" 1
expect_eq "every TLS 1.3 handshake on the compact record layer" "${compact:-none}" "${hs:-0}"
stop_parleyd "$SERVER_PID"

# Same address, new data dir: a new self-signed certificate.
start_parleyd two --tls --listen=127.0.0.1:$port
err=$(pl alice send @bob "should not go" 2>&1 >/dev/null) && fail "changed certificate accepted" || ok
expect_match "changed certificate error" "$err" "^parley: .*certificate changed"
finish
