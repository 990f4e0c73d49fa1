#!/usr/bin/env bash
# Our client against the reference relay (moq-relay 0.17.10): our publishers
# read back by their subscribers (moq-clock, their `moq fetch`) and by ours;
# their publishers (moq-clock, their `moq import`) read by ours. Over
# WebTransport (http://, pinning /certificate.sha256) and raw QUIC (moqt://,
# pinning the fingerprint), and on every moq-lite version both sides speak.
set -uo pipefail
# shellcheck source=common.bash
source "$(dirname "$0")/common.bash"
GEN="$(cd "$(dirname "$0")" && pwd)/fmp4gen.py"

LINES=4 # clock lines each subscriber must print
WAIT=15

their_relay || { fail upstream-relay "their relay did not start"; exit 1; }
LOG="$WORK/their-relay.log"
URL="http://localhost:$THEIR_PORT/anon"
QUIC="moqt://localhost:$THEIR_PORT/anon"
FP=$(curl -sf "http://127.0.0.1:$THEIR_PORT/certificate.sha256")
MOQ=("$THEIRS/moq" --log-level info)

# The versions their relay negotiated after line MARK, one per session.
their_versions() { since "$LOG" "$1" | grep -oE 'negotiated version=[^ ]+' | sed 's/.*=//'; }

# moq-clock's stdout: the clock lines only.
clock_lines() { plain "$1" | grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$'; }

# Check a finished clock subscriber's output file; pass or fail NAME.
judge_clock() {
    local name=$1 file=$2 why
    if why=$(check_clock "$file" "$LINES" 2>&1); then pass "$name"; else fail "$name" "$why"; fi
}

# --- 1. Our clock publisher → their relay → their moq-clock / our moq clock.
bg PUB our-clock-pub "$OURS/moq" --log-level info publish clock "$URL" --broadcast ourclock
wait_log "$WORK/our-clock-pub.log" 'connected' 10
m=$(mark "$LOG")
bg_out CSUB their-clock-sub "$THEIRS/moq-clock" --url "$URL" --broadcast ourclock subscribe
if timeout "$WAIT" bash -c 'until [[ $(grep -c "" "$0") -ge $1 ]]; do sleep 0.1; done' "$WORK/their-clock-sub.out" "$LINES"; then
    clock_lines "$WORK/their-clock-sub.out" >"$WORK/their-clock-sub.lines"
    judge_clock upstream-our-clock-their-sub "$WORK/their-clock-sub.lines"
else
    fail upstream-our-clock-their-sub "their moq-clock printed fewer than $LINES lines in ${WAIT}s"
    show "$WORK/our-clock-pub.log" "$WORK/their-clock-sub.log" "$LOG"
fi
stop "$CSUB"
for transport in webtransport raw-quic; do
    [[ $transport == webtransport ]] && u=$URL || u=$QUIC
    name=upstream-our-clock-our-sub-$transport
    if timeout "$WAIT" "$OURS/moq" --tls-fingerprint "$FP" clock "$u" --broadcast ourclock --count "$LINES" \
        >"$WORK/$name.out" 2>"$WORK/$name.log"; then
        judge_clock "$name" "$WORK/$name.out"
    else
        fail "$name" "our moq clock failed: $(tail -n 1 "$WORK/$name.log")"
    fi
done
stop "$PUB"

# --- 2. Their moq-clock publisher → their relay → our moq clock, on each
#        version: both transports on the default (moq-lite-06), then each older
#        version we offer over WebTransport.
bg TPUB their-clock-pub "$THEIRS/moq-clock" --url "$URL" --broadcast theirclock publish
wait_log "$WORK/their-clock-pub.log" 'connected' 10
for case in "webtransport:" "raw-quic:" "webtransport:moq-lite-05" "webtransport:moq-lite-04" "webtransport:moq-lite-03"; do
    transport=${case%%:*}
    version=${case#*:}
    [[ $transport == webtransport ]] && u=$URL || u=$QUIC
    args=(--tls-fingerprint "$FP")
    [[ -n $version ]] && args+=(--version-offer "$version")
    name=upstream-their-clock-our-sub-$transport${version:+-$version}
    m=$(mark "$LOG")
    if timeout "$WAIT" "$OURS/moq" "${args[@]}" clock "$u" --broadcast theirclock --count "$LINES" \
        >"$WORK/$name.out" 2>"$WORK/$name.log"; then
        got=$(their_versions "$m" | tail -n 1)
        # Our client closes its session with code 0 when it is done; their relay logs
        # that as "session error err=no error", which is not a failure.
        err=$(since "$LOG" "$m" | grep -oE 'session error err=.*' | grep -v 'err=no error' | head -n 1)
        if [[ -n $version && $got != "$version" ]]; then
            fail "$name" "their relay negotiated '$got'"
        elif [[ -n $err ]]; then
            # The lines may all come from the cache before the session dies.
            fail "$name" "got the lines, but their relay ended our session: $err"
        else
            judge_clock "$name" "$WORK/$name.out"
        fi
    else
        status=$?
        fail "$name" "our moq clock $([[ $status -eq 124 ]] && echo "timed out" || echo "exited $status"), $(wc -l <"$WORK/$name.out") lines; their relay: $(since "$LOG" "$m" | grep -oE 'session error err=[^ ]+.*' | head -n 1)"
    fi
done
stop "$TPUB"

# --- 3. Our publisher on each older version → their relay → their moq-clock.
for version in moq-lite-05 moq-lite-04 moq-lite-03; do
    name=upstream-our-clock-$version-their-sub
    m=$(mark "$LOG")
    bg PUB "$name-pub" "$OURS/moq" --log-level info --version-offer "$version" publish clock "$URL" --broadcast "clock-$version"
    wait_log "$WORK/$name-pub.log" 'connected' 10
    bg_out CSUB "$name" "$THEIRS/moq-clock" --url "$URL" --broadcast "clock-$version" subscribe
    if timeout 8 bash -c 'until [[ $(grep -c "" "$0") -ge $1 ]]; do sleep 0.1; done' "$WORK/$name.out" "$LINES"; then
        clock_lines "$WORK/$name.out" >"$WORK/$name.lines"
        err=$(since "$LOG" "$m" | grep -oE 'session error err=.*' | grep -v 'err=no error' | head -n 1)
        if [[ -n $err ]]; then
            fail "$name" "their relay ended a session: $err"
        else
            judge_clock "$name" "$WORK/$name.lines"
        fi
    else
        fail "$name" "their moq-clock printed $(grep -c '' "$WORK/$name.out") lines; our publisher: $(plain "$WORK/$name-pub.log" | tail -n 1 | cut -c1-160); their relay: $(since "$LOG" "$m" | grep -oE 'session error err=.*' | head -n 1)"
    fi
    stop "$CSUB" "$PUB"
done

# --- 4. Our stdin publisher → their relay → our subscriber and their fetch,
#        over both transports. Lines paced so groups arrive in order.
for transport in webtransport raw-quic; do
    [[ $transport == webtransport ]] && u=$URL || u=$QUIC
    name=upstream-our-stdin-$transport
    b=lines-$transport
    mkfifo "$WORK/$b.fifo"
    exec 4<>"$WORK/$b.fifo"
    bg PUB "$name-pub" sh -c 'exec "$@" <"$0"' "$WORK/$b.fifo" "$OURS/moq" --tls-fingerprint "$FP" publish stdin "$u" --broadcast "$b" --track lines --group-size 5
    m=$(mark "$LOG")
    bg_out SUB "$name-sub" "$OURS/moq" --tls-fingerprint "$FP" subscribe "$u" --broadcast "$b" --track lines
    wait_subscribed "$LOG" "$m" "$b" lines 1 10
    for i in $(seq -w 0 9); do echo "$transport-$i"; done >"$WORK/$b.txt"
    while read -r line; do echo "$line" >&4; sleep 0.02; done <"$WORK/$b.txt"
    if ! wait_lines "$WORK/$name-sub.out" 10 10 || ! cmp -s "$WORK/$b.txt" "$WORK/$name-sub.out"; then
        fail "$name-our-sub" "our subscriber got '$(tr '\n' ' ' <"$WORK/$name-sub.out")'"
    else
        pass "$name-our-sub"
    fi
    ok=1
    for g in 0 1; do
        if ! timeout 10 "${MOQ[@]}" --connect "$u" --connect-tls-fingerprint "$FP" --broadcast "$b" \
            fetch lines --group "$g" --json >"$WORK/$name-$g.json" 2>"$WORK/$name-$g.log"; then
            fail "$name-their-fetch" "group $g: $(plain "$WORK/$name-$g.log" | grep -A2 '^Error' | tr '\n' ' ')"
            ok=0
            break
        fi
        got=$(python3 "$GEN" fetch "$WORK/$name-$g.json" text | awk '{print $3}' | tr '\n' ' ')
        want=$(sed -n "$((g * 5 + 1)),$((g * 5 + 5))p" "$WORK/$b.txt" | tr '\n' ' ')
        if [[ $got != "$want" ]]; then
            fail "$name-their-fetch" "group $g: got '$got', sent '$want'"
            ok=0
            break
        fi
    done
    [[ $ok -eq 1 ]] && pass "$name-their-fetch"
    exec 4>&-
    stop "$SUB" "$PUB"
done

# --- 5. Their importer (moq-cli) → their relay → our subscriber: the samples'
#        bytes, in order.
FRAMES=10
GOP=5
python3 "$GEN" samples $((FRAMES + 1)) "$GOP" | head -n "$FRAMES" >"$WORK/samples"
mkfifo "$WORK/media"
exec 3<>"$WORK/media"
bg_out IMP import sh -c 'exec "$@" <"$0"' "$WORK/media" "${MOQ[@]}" --connect "$URL" --broadcast v.hang import fmp4
python3 "$GEN" init >&3
timeout 10 bash -c 'until "$@" fetch catalog.json >/dev/null 2>&1; do sleep 0.2; done' "$THEIRS/moq" --connect "$URL" --broadcast v.hang
m=$(mark "$LOG")
bg_out SUB media-sub "$OURS/moq" subscribe "$URL" --broadcast v.hang --track 0.m4s --format binary --count "$FRAMES"
wait_subscribed "$LOG" "$m" v.hang 0.m4s 1 10
python3 "$GEN" frags $((FRAMES + 1)) "$GOP" 0.05 >&3
if wait_exit "$SUB" 10 && diff -q "$WORK/samples" <(python3 "$GEN" frames "$WORK/media-sub.out") >/dev/null; then
    pass upstream-their-import-our-sub
else
    fail upstream-their-import-our-sub "our subscriber got $(python3 "$GEN" frames "$WORK/media-sub.out" 2>/dev/null | wc -l) of $FRAMES samples, or different bytes"
fi
exec 3>&-
stop "$SUB" "$IMP"

# --- 6. A track the publisher lacks: their relay refuses the subscription at
#        once; our subscriber must then exit with an error, not wait forever.
bg TPUB their-clock-pub2 "$THEIRS/moq-clock" --url "$URL" --broadcast theirclock2 publish
wait_log "$WORK/their-clock-pub2.log" 'connected' 10
timeout 8 "$OURS/moq" subscribe "$URL" --broadcast theirclock2 --track nosuch --count 1 >/dev/null 2>"$WORK/nosuch.log"
case $? in
    124) fail upstream-our-sub-missing-track "our subscriber was still waiting after 8 s (their relay had refused the subscription)" ;;
    0) fail upstream-our-sub-missing-track "our subscriber exited 0 for a track that does not exist" ;;
    *) pass upstream-our-sub-missing-track ;;
esac
stop "$TPUB"

alive "$THEIR_RELAY_PID" || fail upstream-relay-alive "their relay exited: $(plain "$LOG" | tail -n 3)"
[[ $FAILED -eq 0 ]]
