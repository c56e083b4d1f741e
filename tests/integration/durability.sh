#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kill -9 right after an acknowledged send loses nothing: the restarted
# server has the message. SIGTERM shuts down cleanly (exit 0).
source "$(dirname "$0")/../harness/lib.sh"
start_parleyd main
pid1=$SERVER_PID
pl alice signup alice >/dev/null
pl bob signup bob >/dev/null
for i in 1 2 3; do pl alice send @bob "durable $i" >/dev/null; done
kill -9 "$pid1"; wait "$pid1" 2>/dev/null || true

start_parleyd main
out=$(pl bob --json recv)
expect_eq "acked messages survive kill -9" "$(jq -r .text <<<"$out" | tr '\n' '|')" "durable 1|durable 2|durable 3|"

stop_parleyd "$SERVER_PID" TERM && ok || fail "SIGTERM exit status not 0"
finish
