#!/usr/bin/env bash
# Tokens and keys across implementations: the ecosystem's moq-token CLI
# (moq-token-cli 0.5.48) against our moq-auth crate and our relay.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
TOKEN=$THEIRS/moq-token

# 1. Keys and tokens both ways (HS256, ES256, RS256, EdDSA), required here.
if (cd "$ROOT" && MOQ_REQUIRE_INTEROP=1 MOQ_TOKEN_BIN="$TOKEN" \
    timeout 300 cargo test --quiet -p moq-auth --test interop >"$WORK/auth-interop.log" 2>&1); then
    pass token-keys-and-tokens-both-ways
else
    fail token-keys-and-tokens-both-ways "$(tail -n 20 "$WORK/auth-interop.log")"
fi

# 2. Our relay requires tokens, verified with a public key their CLI generated,
#    and accepts tokens their CLI signed.
"$TOKEN" generate --algorithm ES256 --out "$WORK/their.jwk" --public "$WORK/their.pub" >/dev/null 2>&1
port=$(free_port)
spawn token-relay "$OURS/moq-relay" --server-bind "[::]:$port" --tls-generate localhost \
    --web-http-listen "[::]:$port" --auth-key "$WORK/their.pub"
wait_http "$port" || { fail token-relay-start "$(cat "$WORK/token-relay.log")"; exit 1; }
publish=$("$TOKEN" sign --key "$WORK/their.jwk" --root anon --publish "" --expires $(($(date +%s) + 600)))
watch=$("$TOKEN" sign --key "$WORK/their.jwk" --root anon --subscribe "" --expires $(($(date +%s) + 600)))
url="http://localhost:$port/anon"

mkfifo "$WORK/lines"
spawn token-pub bash -c "\"$OURS/moq\" publish stdin '$url?jwt=$publish' --broadcast tok --track data --group-size 100 <'$WORK/lines'"
exec 3>"$WORK/lines"
timeout 20 "$OURS/moq" subscribe "$url?jwt=$watch" --broadcast tok --track data --count 3 >"$WORK/token-sub.out" 2>"$WORK/token-sub.log" &
sub=$!
sleep 1
for line in one two three; do echo "$line" >&3; sleep 0.3; done
if wait "$sub" && [[ $(cat "$WORK/token-sub.out") == $'one\ntwo\nthree' ]]; then
    pass token-their-tokens-on-our-relay
else
    fail token-their-tokens-on-our-relay "got '$(cat "$WORK/token-sub.out")': $(tail -n 3 "$WORK/token-sub.log")"
fi
exec 3>&-

# Without a token, or with a token for another root, the relay refuses.
if timeout 10 "$OURS/moq" announced "$url" >/dev/null 2>"$WORK/notoken.log"; then
    fail token-required "a session without a token was accepted"
elif grep -q "401" "$WORK/notoken.log"; then
    pass token-required
else
    fail token-required "$(tail -n 2 "$WORK/notoken.log")"
fi
other=$("$TOKEN" sign --key "$WORK/their.jwk" --root secret --subscribe "")
if timeout 10 "$OURS/moq" announced "$url?jwt=$other" >/dev/null 2>"$WORK/wrongroot.log"; then
    fail token-wrong-root "a token for another root was accepted"
else
    pass token-wrong-root
fi

[[ $FAILED -eq 0 ]]
