#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Sign-up, duplicate and invalid names, messages both ways, recv and
# history as JSON, and the errors a user sees, through the real CLI.
source "$(dirname "$0")/../harness/lib.sh"
start_parleyd main

out=$(pl alice signup alice); expect_match "signup alice" "$out" "alice"
out=$(pl bob signup Bob); expect_match "signup folds case" "$out" "@?bob"

err=$(pl mallory signup ALICE 2>&1 >/dev/null) && fail "duplicate name accepted" || ok
expect_match "duplicate name error" "$err" "^parley: .*taken"
err=$(pl eve signup "no spaces" 2>&1 >/dev/null) && fail "invalid name accepted" || ok
expect_match "invalid name error" "$err" "^parley: .*(invalid|username)"
err=$(pl eve signup ab 2>&1 >/dev/null) && fail "2-char name accepted" || ok
err=$(pl alice signup alice2 2>&1 >/dev/null) && fail "second signup in one home accepted" || ok

out=$(pl alice --json whoami)
expect_eq "whoami username" "$(jq -r .username <<<"$out" | sed 's/^@//')" "alice"

pl alice send @bob "hi bob" >/dev/null || fail "alice send"
pl bob send @alice "hi alice" >/dev/null || fail "bob send"
printf 'from stdin\n' | pl alice send @bob - >/dev/null || fail "send from stdin"

out=$(pl bob --json recv)
n=$(grep -c . <<<"$out")
# bob sees alice's two messages and, from his own log, his own send.
texts=$(jq -r 'select(.from != "@bob") | .text' <<<"$out" | tr '\n' '|')
expect_eq "bob recv texts" "$texts" "hi bob|from stdin|"
first=$(head -1 <<<"$out")
for k in id chat from text date pts; do
    [ "$(jq "has(\"$k\")" <<<"$first")" == true ] && ok || fail "recv json lacks $k"
done
expect_eq "chat is the peer" "$(jq -r 'select(.text == "hi bob") | .chat' <<<"$out")" "@alice"
pts_sorted=$(jq -r .pts <<<"$out" | sort -n | tr '\n' ' ')
pts_order=$(jq -r .pts <<<"$out" | tr '\n' ' ')
expect_eq "recv in pts order" "$pts_order" "$pts_sorted"
[ "$n" -ge 2 ] && ok || fail "bob recv returned $n lines"

out=$(pl bob --json recv)
expect_eq "second recv is empty" "$out" ""

out=$(pl alice --json recv)
expect_match "alice got bob's message" "$out" '"hi alice"'

out=$(pl bob --json history @alice)
expect_eq "history newest first" "$(jq -r .text <<<"$out" | tr '\n' '|')" "from stdin|hi alice|hi bob|"
oldest_two=$(pl bob --json history @alice --limit 2 | jq -r .id | tail -1)
out=$(pl bob --json history @alice --before "$oldest_two")
expect_eq "history before id" "$(jq -r .text <<<"$out" | tr '\n' '|')" "hi bob|"

# Global options after the command, as the README writes them.
expect_eq "history @alice --json" "$(pl bob history @alice --json | jq -r .text | tr '\n' '|')" "from stdin|hi alice|hi bob|"
pl alice send @bob "options after" >/dev/null
expect_eq "recv --json" "$(pl bob recv --json | jq -r .text)" "options after"
expect_eq "-- keeps a flag-like text" "$(pl alice --json send @bob -- --json | jq -r .text)" "--json"
expect_eq "its recv" "$(pl bob recv --json | jq -r .text)" "--json"

err=$(pl alice send @carol "hello?" 2>&1 >/dev/null) && fail "send to missing user" || ok
expect_eq "no such user error" "$err" "parley: no such user: @carol"

long=$(head -c 4097 /dev/zero | tr '\0' 'x')
err=$(pl alice send @bob "$long" 2>&1 >/dev/null) && fail "4097 chars accepted" || ok
expect_match "too long error" "$err" "^parley: .*too long"
ok4096=$(head -c 4096 /dev/zero | tr '\0' 'y')
pl alice send @bob "$ok4096" >/dev/null && ok || fail "4096 chars refused"

finish
