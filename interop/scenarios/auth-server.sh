#!/usr/bin/env bash
# The external auth server ([auth] url), both ways:
#  1. our relay asking the reference auth server (`moq auth serve`, moq-cli 0.14.10)
#     about the ecosystem's moq-clock (0.10.21): public patterns and tokens admit,
#     everything else is refused; a re-check (POST /sessions/revalidate, asked with
#     their `moq auth revalidate`) after the server's rules narrowed applies the
#     narrower grant to live sessions (the subscription it no longer covers ends, the
#     sessions stay), and after they are withdrawn ends them; an auth server that
#     never answers refuses every session (fails closed), counted as a timeout.
#  2. our auth server (`moq auth serve`) behind the reference moq-relay 0.17.10: it
#     admits and refuses moq-clock there, and a narrowed rule reaches their live
#     sessions through their POST /sessions/revalidate (asked with ours).
set -uo pipefail
# shellcheck source=common.bash
source "$(dirname "$0")/common.bash"

LINES=4   # clock lines a subscriber must print
WAIT=15   # seconds allowed for them
QUIET=4   # seconds a refused subscriber is watched for lines

# Wait until something accepts TCP connections on 127.0.0.1:$1.
wait_tcp() {
    timeout 10 bash -c 'until (exec 3<>"/dev/tcp/127.0.0.1/$0") 2>/dev/null; do sleep 0.1; done' "$1"
}

# moq-clock writes clock lines to stdout and logs to stderr; spawn mixes them.
clock_lines() { plain "$1" | grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$'; }
count_lines() { clock_lines "$1" | wc -l; }
wait_clock_lines() {
    timeout "$3" bash -c '
        until [[ $(sed "s/\x1b\[[0-9;]*m//g" "$1" 2>/dev/null | grep -cE "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$") -ge $2 ]]; do
            sleep 0.1
        done' _ "$1" "$2"
}

# A moq-clock subscriber must print LINES live clock lines: pass or fail NAME.
#   expect_clock NAME LOG
expect_clock() {
    local name=$1 log=$2 why
    if ! wait_clock_lines "$log" "$LINES" "$WAIT"; then
        fail "$name" "the subscriber printed $(count_lines "$log") clock lines in ${WAIT}s, wanted $LINES"
        return 1
    fi
    clock_lines "$log" >"$log.lines"
    if why=$(check_clock "$log.lines" "$LINES" 2>&1); then pass "$name"; else fail "$name" "$why"; return 1; fi
}

# A moq-clock subscriber that must get nothing for QUIET seconds.
#   expect_no_clock NAME URL BROADCAST
# Sets NO_CLOCK_LOG to its log.
expect_no_clock() {
    local name=$1 url=$2 b=$3 pid
    NO_CLOCK_LOG="$WORK/$name-sub.log"
    bg pid "$name-sub" "$THEIRS/moq-clock" --url "$url" --broadcast "$b" subscribe
    sleep "$QUIET"
    stop "$pid"
    [[ $(count_lines "$NO_CLOCK_LOG") -eq 0 ]]
}

# Does the log (colour codes stripped) have a line matching the extended regex?
# (grep reads it all: with -q it would stop early and pipefail would see sed's SIGPIPE.)
#   has LOG REGEX  |  since LOG MARK | found REGEX
has() { plain "$1" | grep -E -- "$2" >/dev/null; }
found() { grep -E -- "$1" >/dev/null; }

# Wait up to SECONDS for a line matching REGEX in LOG after line MARK.
#   wait_log_since LOG MARK REGEX SECONDS
wait_log_since() {
    timeout "$4" bash -c 'until tail -n +"$(($2 + 1))" "$1" | sed "s/\x1b\[[0-9;]*m//g" | grep -E -- "$3" >/dev/null; do sleep 0.1; done' _ "$1" "$2" "$3"
}

# A counter from a /metrics page: metric VALUE of the line starting with NAME{LABELS}.
#   counter URL 'moq_relay_auth_service_requests_total{event="connect",outcome="granted"}'
counter() {
    curl -sf "$1/metrics" | awk -v k="$2" 'index($0, k " ") == 1 { print $2; found = 1 } END { if (!found) print 0 }'
}

# =============================================================================
# 1. Our relay, the reference auth server.
# =============================================================================
"$THEIRS/moq" auth generate --algorithm ES256 --out "$WORK/their.jwk" --public "$WORK/their.pub" >/dev/null 2>&1 ||
    { fail auth-their-keygen "their moq auth generate failed"; exit 1; }

AUTH_PORT=$(free_port)
their_auth() {
    bg THEIR_AUTH "their-auth-$1" "$THEIRS/moq" auth serve --listen "127.0.0.1:$AUTH_PORT" --key "$WORK/their.pub" "${@:2}"
    wait_tcp "$AUTH_PORT" || { fail auth-their-server-start "$(plain "$WORK/their-auth-$1.log" | tail -n 3)"; exit 1; }
}
their_auth open --public-publish 'anon/**' --public-subscribe 'anon/**'

PORT=$(free_port)
INTERNAL="http://127.0.0.1:$(free_port)"
spawn our-relay "$OURS/moq-relay" --server-bind "[::]:$PORT" --tls-generate localhost \
    --web-http-listen "[::]:$PORT" --auth-url "http://127.0.0.1:$AUTH_PORT" --internal-listen "${INTERNAL#http://}"
OUR_RELAY_PID=$!
wait_http "$PORT" || { fail auth-our-relay-start "$(plain "$WORK/our-relay.log" | tail -n 3)"; exit 1; }
LOG="$WORK/our-relay.log"
URL="http://localhost:$PORT"
C='moq_relay_auth_service_requests_total{event="connect",outcome="'

# --- Public patterns admit moq-clock on both ends.
bg PUB_A clock-a-pub "$THEIRS/moq-clock" --url "$URL/anon" --broadcast a publish
bg PUB_B clock-b-pub "$THEIRS/moq-clock" --url "$URL/anon" --broadcast b publish
wait_log "$WORK/clock-a-pub.log" 'connected' 10
wait_log "$WORK/clock-b-pub.log" 'connected' 10
bg SUB_A clock-a-sub "$THEIRS/moq-clock" --url "$URL/anon" --broadcast a subscribe
bg SUB_B clock-b-sub "$THEIRS/moq-clock" --url "$URL/anon" --broadcast b subscribe
expect_clock auth-their-server-admits-public "$WORK/clock-a-sub.log" ||
    show "$WORK/clock-a-pub.log" "$WORK/clock-a-sub.log" "$LOG" "$WORK/their-auth-open.log"
wait_clock_lines "$WORK/clock-b-sub.log" 1 "$WAIT"

# --- Outside the public patterns, without a token: refused, counted.
refused=$(counter "$INTERNAL" "${C}refused\"}")
if ! expect_no_clock auth-their-server-refuses "$URL/secret" c; then
    fail auth-their-server-refuses "a session at /secret without a token got clock lines"
elif (($(counter "$INTERNAL" "${C}refused\"}") <= refused)); then
    fail auth-their-server-refuses "our relay counted no refusal: $(curl -sf "$INTERNAL/metrics" | grep auth_service_requests)"
elif ! has "$LOG" 'reason="service_refused"'; then
    fail auth-their-server-refuses "our relay logged no service_refused"
else
    pass auth-their-server-refuses
fi

# --- Tokens their key signed admit at /secret.
token=$("$THEIRS/moq" auth sign --key "$WORK/their.jwk" --root secret --publish '**' --subscribe '**' \
    --expires $(($(date +%s) + 600)))
bg PUB_S secret-pub "$THEIRS/moq-clock" --url "$URL/secret?jwt=$token" --broadcast s publish
wait_log "$WORK/secret-pub.log" 'connected' 10
bg SUB_S secret-sub "$THEIRS/moq-clock" --url "$URL/secret?jwt=$token" --broadcast s subscribe
expect_clock auth-their-server-admits-token "$WORK/secret-sub.log" ||
    show "$WORK/secret-pub.log" "$WORK/secret-sub.log" "$LOG"
stop "$SUB_S" "$PUB_S"

# --- Revalidation narrows live sessions: the server now lets anonymous sessions
#     subscribe to anon/a/** only. POST /sessions/revalidate applies that to the
#     live sessions: b's subscription ends, a's keeps running, no session ends.
stop "$THEIR_AUTH"
their_auth narrow --public-publish 'anon/**' --public-subscribe 'anon/a/**'
m=$(mark "$LOG")
before_a=$(count_lines "$WORK/clock-a-sub.log")
# Asked with their CLI (`moq auth revalidate`), against our internal listener.
answer=$("$THEIRS/moq" auth revalidate --internal-url "$INTERNAL" 2>"$WORK/their-revalidate.log")
asked=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["asked"])' "$answer" 2>/dev/null)
# b's subscriber gets no line stamped after the re-check; moq-clock exits when its
# subscription is ended, or waits.
sleep 1.5
b_then=$(count_lines "$WORK/clock-b-sub.log")
if [[ -z $asked || $asked -lt 4 ]]; then
    fail auth-their-server-revalidate-narrows "the relay asked the auth server about too few sessions: $answer"
elif ! wait_clock_lines "$WORK/clock-a-sub.log" $((before_a + 2)) 5; then
    fail auth-their-server-revalidate-narrows "a's subscriber stopped after the re-check ($(count_lines "$WORK/clock-a-sub.log") lines)"
    show "$WORK/clock-a-sub.log" "$LOG"
elif since "$LOG" "$m" | found 'grant ended; closing'; then
    fail auth-their-server-revalidate-narrows "the re-check ended sessions: $(since "$LOG" "$m" | grep 'grant ended' | head -n 1)"
elif (($(count_lines "$WORK/clock-b-sub.log") != b_then)); then
    fail auth-their-server-revalidate-narrows "b's subscriber still gets lines after the narrowing"
elif ! since "$LOG" "$m" | found 'changed the grant; applied'; then
    fail auth-their-server-revalidate-narrows "our relay did not log an applied grant"
elif ! alive "$SUB_A" || ! alive "$PUB_B"; then
    fail auth-their-server-revalidate-narrows "a session the narrower grant still covers went away"
else
    pass "auth-their-server-revalidate-narrows ($asked sessions re-checked)"
fi

# --- Revalidation ends sessions the server no longer admits at all (anonymous
#     ones: the re-check is asked for sessions at anon only; the token sessions
#     from /secret may still be winding down, and their token is still good).
stop "$THEIR_AUTH"
their_auth closed
R='moq_relay_auth_service_requests_total{event="revalidate",outcome="refused"}'
revalidate_refused=$(counter "$INTERNAL" "$R")
m=$(mark "$LOG")
answer=$(curl -sf -X POST "$INTERNAL/sessions/revalidate?path=anon")
asked=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["asked"])' "$answer" 2>/dev/null)
# The re-checks run in the background; wait for their refusals to be counted.
for _ in $(seq 1 50); do
    (($(counter "$INTERNAL" "$R") >= revalidate_refused + ${asked:-1})) && break
    sleep 0.1
done
before_a=$(count_lines "$WORK/clock-a-sub.log")
sleep 2.5
closed=$(since "$LOG" "$m" | grep -c 'grant ended; closing the session')
if [[ -z $asked || $asked -lt 3 ]]; then
    fail auth-their-server-revalidate-ends "the relay asked the auth server about too few sessions: $answer"
elif ((closed < asked)); then
    fail auth-their-server-revalidate-ends "$closed of $asked sessions ended"
elif (($(count_lines "$WORK/clock-a-sub.log") > before_a)); then
    fail auth-their-server-revalidate-ends "a's subscriber still gets lines"
elif (($(counter "$INTERNAL" "$R") < revalidate_refused + asked)); then
    fail auth-their-server-revalidate-ends "the refusals were not counted: $(counter "$INTERNAL" "$R")"
else
    pass "auth-their-server-revalidate-ends ($closed sessions ended)"
fi
stop "$SUB_A" "$SUB_B" "$PUB_A" "$PUB_B" "$THEIR_AUTH"

# --- The grant's own cadence: their server stamps `revalidate` and `expires` on
#     each grant (--revalidate 1s --expires 10m), and our relay re-checks on it
#     without being asked; a rule narrowed meanwhile reaches the live session.
their_auth cadence --public-publish 'anon/**' --public-subscribe 'anon/**' --revalidate 1s --expires 10m
bg PUB_C cadence-pub "$THEIRS/moq-clock" --url "$URL/anon" --broadcast c publish
wait_log "$WORK/cadence-pub.log" 'connected' 10
bg SUB_C cadence-sub "$THEIRS/moq-clock" --url "$URL/anon" --broadcast c subscribe
if wait_clock_lines "$WORK/cadence-sub.log" 2 "$WAIT"; then
    m=$(mark "$LOG")
    stop "$THEIR_AUTH"
    their_auth cadence-narrow --public-publish 'anon/**' --public-subscribe 'anon/a/**' --revalidate 1s --expires 10m
    if ! wait_log_since "$LOG" "$m" 'changed the grant; applied' 6; then
        fail auth-their-server-grant-cadence "our relay did not re-check on the grant's 1 s cadence: $(since "$LOG" "$m" | tail -n 2)"
    else
        sleep 1
        c_then=$(count_lines "$WORK/cadence-sub.log")
        sleep 2
        if (($(count_lines "$WORK/cadence-sub.log") > c_then)); then
            fail auth-their-server-grant-cadence "c's subscriber still gets lines after the narrowing"
        elif ! alive "$PUB_C"; then
            fail auth-their-server-grant-cadence "the publisher's session went away"
        else
            pass auth-their-server-grant-cadence
        fi
    fi
else
    fail auth-their-server-grant-cadence "no clock lines under the cadence grant"
    show "$WORK/cadence-sub.log" "$LOG"
fi
stop "$SUB_C" "$PUB_C" "$THEIR_AUTH"
alive "$OUR_RELAY_PID" || fail auth-our-relay-alive "our relay exited: $(plain "$LOG" | tail -n 3)"

# --- An auth server that accepts the connection and never answers: every session
#     is refused once [auth] timeout passes (fails closed), counted as a timeout.
HOLE_PORT=$(free_port)
bg HOLE black-hole python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
held = []
while True:
    c, _ = s.accept(); held.append(c)
' "$HOLE_PORT"
wait_tcp "$HOLE_PORT"
PORT2=$(free_port)
INTERNAL2="http://127.0.0.1:$(free_port)"
spawn slow-relay "$OURS/moq-relay" --server-bind "[::]:$PORT2" --tls-generate localhost \
    --web-http-listen "[::]:$PORT2" --auth-url "http://127.0.0.1:$HOLE_PORT" --auth-timeout 1s \
    --internal-listen "${INTERNAL2#http://}"
SLOW_PID=$!
wait_http "$PORT2" || { fail auth-slow-relay-start "$(plain "$WORK/slow-relay.log" | tail -n 3)"; exit 1; }
bg PUB_T timeout-pub "$THEIRS/moq-clock" --url "http://localhost:$PORT2/anon" --broadcast t publish
if ! expect_no_clock auth-server-timeout-fails-closed "http://localhost:$PORT2/anon" t; then
    fail auth-server-timeout-fails-closed "a session got clock lines while the auth server never answered"
elif (($(counter "$INTERNAL2" "${C}timeout\"}") < 1)); then
    fail auth-server-timeout-fails-closed "no timeout counted: $(curl -sf "$INTERNAL2/metrics" | grep auth_service_requests)"
elif (($(counter "$INTERNAL2" "${C}granted\"}") != 0)); then
    fail auth-server-timeout-fails-closed "a session was granted"
elif ! has "$WORK/slow-relay.log" 'reason="service_timeout"'; then
    fail auth-server-timeout-fails-closed "the relay logged no service_timeout refusal"
elif ! alive "$SLOW_PID"; then
    fail auth-server-timeout-fails-closed "the relay exited"
else
    pass "auth-server-timeout-fails-closed ($(counter "$INTERNAL2" "${C}timeout\"}") timeouts counted)"
fi
stop "$PUB_T" "$SLOW_PID" "$HOLE"

# =============================================================================
# 2. Our auth server behind the reference relay.
# =============================================================================
"$OURS/moq" auth generate --algorithm ES256 --out "$WORK/our.jwk" --public "$WORK/our.pub" >/dev/null 2>&1 ||
    { fail auth-our-keygen "our moq auth generate failed"; exit 1; }
OUR_AUTH_PORT=$(free_port)
our_auth() {
    bg OUR_AUTH "our-auth-$1" "$OURS/moq" auth serve --listen "127.0.0.1:$OUR_AUTH_PORT" --key "$WORK/our.pub" "${@:2}"
    wait_tcp "$OUR_AUTH_PORT" || { fail auth-our-server-start "$(plain "$WORK/our-auth-$1.log" | tail -n 3)"; exit 1; }
}
our_auth open --public-publish 'anon/**' --public-subscribe 'anon/**'

TPORT=$(free_port)
TINTERNAL="http://127.0.0.1:$(free_port)"
cat >"$WORK/their-relay.toml" <<TOML
[listen]
bind = "[::]:$TPORT"
tls.generate = ["localhost"]
[web.http]
listen = "[::]:$TPORT"
[auth]
url = "http://127.0.0.1:$OUR_AUTH_PORT"
[internal]
listen = "${TINTERNAL#http://}"
TOML
spawn their-relay "$THEIRS/moq-relay" "$WORK/their-relay.toml"
THEIR_RELAY_PID=$!
wait_http "$TPORT" || { fail auth-their-relay-start "$(plain "$WORK/their-relay.log" | tail -n 3)"; exit 1; }
TLOG="$WORK/their-relay.log"
TURL="http://localhost:$TPORT"

bg PUB_A t-clock-a-pub "$THEIRS/moq-clock" --url "$TURL/anon" --broadcast a publish
bg PUB_B t-clock-b-pub "$THEIRS/moq-clock" --url "$TURL/anon" --broadcast b publish
wait_log "$WORK/t-clock-a-pub.log" 'connected' 10
wait_log "$WORK/t-clock-b-pub.log" 'connected' 10
bg SUB_B t-clock-b-sub "$THEIRS/moq-clock" --url "$TURL/anon" --broadcast b subscribe
expect_clock auth-our-server-their-relay-admits-public "$WORK/t-clock-b-sub.log" ||
    show "$WORK/t-clock-b-pub.log" "$WORK/t-clock-b-sub.log" "$TLOG" "$WORK/our-auth-open.log"

if ! expect_no_clock auth-our-server-their-relay-refuses "$TURL/secret" c; then
    fail auth-our-server-their-relay-refuses "a session at /secret without a token got clock lines"
elif ! has "$TLOG" 'the auth server refused the session'; then
    fail auth-our-server-their-relay-refuses "their relay did not report a refusal"
else
    pass auth-our-server-their-relay-refuses
fi

token=$("$OURS/moq" auth sign --key "$WORK/our.jwk" --root secret --publish '' --subscribe '' --expires 10m)
bg PUB_S t-secret-pub "$THEIRS/moq-clock" --url "$TURL/secret?jwt=$token" --broadcast s publish
wait_log "$WORK/t-secret-pub.log" 'connected' 10
bg SUB_S t-secret-sub "$THEIRS/moq-clock" --url "$TURL/secret?jwt=$token" --broadcast s subscribe
expect_clock auth-our-server-their-relay-admits-token "$WORK/t-secret-sub.log" ||
    show "$WORK/t-secret-pub.log" "$WORK/t-secret-sub.log" "$TLOG"
stop "$SUB_S" "$PUB_S"

# Narrowed to anon/a/**: their relay re-checks on POST /sessions/revalidate and
# ends the sessions whose grant shrank (they reconnect under the new one): b's
# subscriber gets nothing any more, a fresh subscriber to a still gets lines.
stop "$OUR_AUTH"
our_auth narrow --public-publish 'anon/**' --public-subscribe 'anon/a/**'
m=$(mark "$TLOG")
# Asked with our CLI, against their internal listener.
"$OURS/moq" auth revalidate --internal-url "$TINTERNAL" >"$WORK/their-revalidate.json" 2>"$WORK/our-revalidate.log" ||
    fail auth-our-cli-revalidates-their-relay "$(cat "$WORK/our-revalidate.log")"
sleep 1
b_then=$(count_lines "$WORK/t-clock-b-sub.log")
bg SUB_A t-clock-a-sub "$THEIRS/moq-clock" --url "$TURL/anon" --broadcast a subscribe
if ! since "$TLOG" "$m" | found 'grant narrowed'; then
    fail auth-our-server-their-relay-revalidate-narrows "their relay did not narrow: $(since "$TLOG" "$m" | tail -n 3)"
elif ! expect_clock auth-our-server-their-relay-narrowed-still-serves-a "$WORK/t-clock-a-sub.log"; then
    show "$WORK/t-clock-a-sub.log" "$TLOG"
elif (($(count_lines "$WORK/t-clock-b-sub.log") > b_then)); then
    fail auth-our-server-their-relay-revalidate-narrows "b's subscriber still gets lines"
else
    pass auth-our-server-their-relay-revalidate-narrows
fi
stop "$SUB_A" "$SUB_B" "$PUB_A" "$PUB_B"

# Our grants' cadence (--revalidate 1s --expires 10m) drives their relay's re-checks
# without being asked: a rule narrowed meanwhile reaches their live session.
stop "$OUR_AUTH"
our_auth cadence --public-publish 'anon/**' --public-subscribe 'anon/**' --revalidate 1s --expires 10m
bg PUB_C t-cadence-pub "$THEIRS/moq-clock" --url "$TURL/anon" --broadcast c publish
wait_log "$WORK/t-cadence-pub.log" 'connected' 10
bg SUB_C t-cadence-sub "$THEIRS/moq-clock" --url "$TURL/anon" --broadcast c subscribe
if wait_clock_lines "$WORK/t-cadence-sub.log" 2 "$WAIT"; then
    m=$(mark "$TLOG")
    stop "$OUR_AUTH"
    our_auth cadence-narrow --public-publish 'anon/**' --public-subscribe 'anon/a/**' --revalidate 1s --expires 10m
    if wait_log_since "$TLOG" "$m" 'grant narrowed' 6; then
        pass auth-our-server-their-relay-grant-cadence
    else
        fail auth-our-server-their-relay-grant-cadence "their relay did not re-check on our grant's 1 s cadence: $(since "$TLOG" "$m" | tail -n 2)"
    fi
else
    fail auth-our-server-their-relay-grant-cadence "no clock lines under our cadence grant"
    show "$WORK/t-cadence-sub.log" "$TLOG" "$WORK/our-auth-cadence.log"
fi
stop "$SUB_C" "$PUB_C"
alive "$THEIR_RELAY_PID" || fail auth-their-relay-alive "their relay exited: $(plain "$TLOG" | tail -n 3)"
alive "$OUR_AUTH" || fail auth-our-server-alive "our auth server exited: $(plain "$WORK/our-auth-narrow.log" | tail -n 3)"

[[ $FAILED -eq 0 ]]
