#!/usr/bin/env bash
# The ecosystem's `moq` (moq-cli 0.14.10) through our relay, on moq-lite-06.
#
# moq-cli publishes media only (`import` of fMP4/TS/FLV/H.264 from stdin, or
# gateways), and reads media (`export`) or any track raw (`fetch`, one group).
# So: fmp4gen.py writes a tiny fMP4 whose samples carry known bytes, their
# `moq import fmp4` publishes it (hang catalog + one CMAF track, one group per
# GOP, one moof+mdat frame per sample), and each reader's bytes are checked
# against those samples: their `export fmp4`, their `fetch` (WebTransport and
# raw QUIC), and our `moq subscribe`. The other way, our `moq publish stdin`
# is read back by their `fetch`. No ffmpeg needed.
set -uo pipefail
# shellcheck source=common.bash
source "$(dirname "$0")/common.bash"
GEN="$(cd "$(dirname "$0")" && pwd)/fmp4gen.py"

FRAMES=20 # checked samples (4 groups)
GOP=5
FEED=21 # one more keyframe, so group 3 is complete while the importer still runs

OUR_RELAY_LOG=$SUBSCRIPTIONS_LOG our_relay || { fail moqcli-relay "our relay did not start"; exit 1; }
URL="http://localhost:$OUR_PORT/anon"
QUIC="moqt://localhost:$OUR_PORT/anon"
FP=$(curl -sf "http://127.0.0.1:$OUR_PORT/certificate.sha256")
M0=$(mark "$WORK/our-relay.log")
MOQ=("$THEIRS/moq" --log-level info)

python3 "$GEN" samples "$FEED" "$GOP" >"$WORK/samples"
head -n "$FRAMES" "$WORK/samples" >"$WORK/expected"

# Their importer reads from a FIFO held open on fd 3, so we decide when the init
# segment, the fragments and the end of input arrive.
mkfifo "$WORK/media"
exec 3<>"$WORK/media"
bg_out IMP import sh -c 'exec "$@" <"$0"' "$WORK/media" "${MOQ[@]}" --connect "$URL" --broadcast v.hang import fmp4
python3 "$GEN" init >&3

# 1. The catalog: their fetch and our subscribe read the same bytes.
if timeout 10 bash -c 'until "$@" fetch catalog.json >"$0" 2>/dev/null; do sleep 0.2; done' \
    "$WORK/catalog.json" "$THEIRS/moq" --connect "$URL" --broadcast v.hang; then
    timeout 10 "$OURS/moq" subscribe "$URL" --broadcast v.hang --track catalog.json --count 1 --format binary \
        >"$WORK/our-catalog.bin" 2>"$WORK/our-catalog.log"
    tail -c +5 "$WORK/our-catalog.bin" >"$WORK/our-catalog.json"
    if ! why=$(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
r = c["video"]["renditions"]
assert "0.m4s" in r, f"no 0.m4s rendition in {list(r)}"
assert r["0.m4s"]["codec"] == "avc1.42c01e", r["0.m4s"]["codec"]
' "$WORK/catalog.json" 2>&1); then
        fail moqcli-catalog "their fetch of catalog.json: ${why##*$'\n'}"
    elif ! cmp -s "$WORK/catalog.json" "$WORK/our-catalog.json"; then
        fail moqcli-catalog "our subscribe of catalog.json differs from their fetch ($(wc -c <"$WORK/our-catalog.json") vs $(wc -c <"$WORK/catalog.json") bytes)"
        show "$WORK/our-catalog.log"
    else
        pass moqcli-catalog
    fi
else
    fail moqcli-catalog "their fetch of catalog.json never succeeded"
    show "$WORK/import.log" "$WORK/our-relay.log"
fi

# 2. Media: their export and our subscribe, both live before the fragments come.
m=$(mark "$WORK/our-relay.log")
bg_out SUB our-sub "$OURS/moq" subscribe "$URL" --broadcast v.hang --track 0.m4s --format binary --count "$FRAMES"
bg_out EXP their-export "${MOQ[@]}" --connect "$URL" --broadcast v.hang export fmp4
wait_subscribed "$WORK/our-relay.log" "$m" v.hang 0.m4s 2 10 || echo "  (only $(since "$WORK/our-relay.log" "$m" | grep -c 'subscribed id') of 2 subscriptions seen)" >&2
python3 "$GEN" frags "$FEED" "$GOP" 0.05 >&3

if ! wait_exit "$SUB" 15; then
    fail moqcli-their-import-our-sub "our subscribe did not get $FRAMES frames (exit or timeout)"
    show "$WORK/our-sub.log"
else
    python3 "$GEN" frames "$WORK/our-sub.out" >"$WORK/our-sub.hex"
    if diff -q "$WORK/expected" "$WORK/our-sub.hex" >/dev/null; then
        pass moqcli-their-import-our-sub
    else
        fail moqcli-their-import-our-sub "frames differ from the samples sent: $(diff "$WORK/expected" "$WORK/our-sub.hex" | head -n 3 | tr '\n' ' ')"
    fi
fi

# 3. Their fetch of each complete group (cached by our relay), over WebTransport
#    and raw QUIC.
fetch_groups() {
    local name=$1 url=$2 g ok=1
    for g in $(seq 0 $((FRAMES / GOP - 1))); do
        if ! timeout 10 "${MOQ[@]}" --connect "$url" --connect-tls-fingerprint "$FP" --broadcast v.hang \
            fetch 0.m4s --group "$g" --json >"$WORK/$name-$g.json" 2>"$WORK/$name-$g.log"; then
            fail "$name" "their fetch of group $g failed: $(plain "$WORK/$name-$g.log" | grep -A2 '^Error' | tr '\n' ' ')"
            return
        fi
        python3 "$GEN" fetch "$WORK/$name-$g.json" mdat | awk '{print $3}' >"$WORK/$name-$g.hex"
        if ! diff -q <(sed -n "$((g * GOP + 1)),$((g * GOP + GOP))p" "$WORK/samples") "$WORK/$name-$g.hex" >/dev/null; then
            fail "$name" "group $g differs from the samples sent"
            ok=0
            break
        fi
    done
    [[ $ok -eq 1 ]] && pass "$name"
}
fetch_groups moqcli-their-import-their-fetch "$URL"
fetch_groups moqcli-their-import-their-fetch-raw-quic "$QUIC"

# 4. A track the publisher does not have: their fetch should fail at once, as it
#    does through their relay (~0.1 s), not hang.
start=$(date +%s%N)
timeout 8 "${MOQ[@]}" --connect "$URL" --broadcast v.hang fetch nosuch >/dev/null 2>"$WORK/nosuch.log"
status=$?
ms=$((($(date +%s%N) - start) / 1000000))
if [[ $status -eq 124 ]]; then
    fail moqcli-missing-track "their fetch of a track the publisher lacks hung for 8 s (their relay refuses it at once)"
elif [[ $status -eq 0 ]]; then
    fail moqcli-missing-track "their fetch of a missing track succeeded"
elif [[ $ms -gt 3000 ]]; then
    fail moqcli-missing-track "refused only after ${ms} ms"
else
    pass moqcli-missing-track
fi

# 5. Raw QUIC error codes: a missing group must read "not found" to their client,
#    as it does through their relay; a bare QUIC code is "invalid RESET_STREAM".
timeout 8 "${MOQ[@]}" --connect "$QUIC" --connect-tls-fingerprint "$FP" --broadcast v.hang \
    fetch 0.m4s --group 999 >/dev/null 2>"$WORK/nogroup.log"
cause=$(plain "$WORK/nogroup.log" | grep -A1 '^Caused by:' | tail -n 1 | sed 's/^ *//')
if [[ $cause == "not found" ]]; then
    pass moqcli-raw-quic-reset-code
else
    fail moqcli-raw-quic-reset-code "their fetch over raw QUIC of a missing group saw '$cause', wanted 'not found'"
fi

# 6. End of input: their export has written every sample, in order, after its
#    init segment.
exec 3>&-
wait_exit "$EXP" 10 || stop "$EXP"
python3 "$GEN" mdat "$WORK/their-export.out" 2>/dev/null | tr -d '\n' >"$WORK/export.hex"
if [[ $(head -c 8 "$WORK/their-export.out" | tail -c 4) != ftyp ]]; then
    fail moqcli-their-import-their-export "export does not start with an init segment"
    show "$WORK/their-export.log"
elif [[ $(<"$WORK/export.hex") == "$(head -n "$FRAMES" "$WORK/samples" | tr -d '\n')" ||
    $(<"$WORK/export.hex") == "$(tr -d '\n' <"$WORK/samples")" ]]; then
    pass moqcli-their-import-their-export
else
    fail moqcli-their-import-their-export "exported samples differ from those sent ($(wc -c <"$WORK/export.hex") hex chars)"
    show "$WORK/their-export.log"
fi
stop "$IMP"

# 7. Our publisher → our relay → their fetch. Our subscriber keeps the track
#    pulled (and cached) meanwhile.
mkfifo "$WORK/lines"
exec 4<>"$WORK/lines"
bg PUB our-pub sh -c 'exec "$@" <"$0"' "$WORK/lines" "$OURS/moq" publish stdin "$URL" --broadcast data --track lines --group-size 5
m=$(mark "$WORK/our-relay.log")
bg_out LSUB our-lines "$OURS/moq" subscribe "$URL" --broadcast data --track lines
wait_subscribed "$WORK/our-relay.log" "$m" data lines 1 10
# Two complete groups, paced so they arrive in order (our `moq subscribe` prints
# groups in arrival order and waits for each to end before the next).
for i in $(seq -w 0 9); do echo "line-$i"; done >"$WORK/lines.txt"
while read -r line; do echo "$line" >&4; sleep 0.02; done <"$WORK/lines.txt"
if ! wait_lines "$WORK/our-lines.out" 10 10; then
    fail moqcli-our-pub-their-fetch "our own subscriber got $(wc -l <"$WORK/our-lines.out") of 10 lines"
    show "$WORK/our-pub.log" "$WORK/our-lines.log"
else
    ok=1
    for g in 0 1; do
        if ! timeout 10 "${MOQ[@]}" --connect "$URL" --broadcast data fetch lines --group "$g" --json \
            >"$WORK/lines-$g.json" 2>"$WORK/lines-$g.log"; then
            fail moqcli-our-pub-their-fetch "their fetch of group $g failed: $(plain "$WORK/lines-$g.log" | grep -A2 '^Error' | tr '\n' ' ')"
            ok=0
            break
        fi
        got=$(python3 "$GEN" fetch "$WORK/lines-$g.json" text | awk '{print $3}' | tr '\n' ' ')
        want=$(sed -n "$((g * 5 + 1)),$((g * 5 + 5))p" "$WORK/lines.txt" | tr '\n' ' ')
        if [[ $got != "$want" ]]; then
            fail moqcli-our-pub-their-fetch "group $g: got '$got', sent '$want'"
            ok=0
            break
        fi
    done
    if [[ $ok -eq 1 ]] && ! cmp -s "$WORK/lines.txt" "$WORK/our-lines.out"; then
        fail moqcli-our-pub-their-fetch "our subscriber's lines differ from those sent"
        ok=0
    fi
    [[ $ok -eq 1 ]] && pass moqcli-our-pub-their-fetch
fi
exec 4>&-
stop "$LSUB" "$PUB"

# 8. A subscribe that arrives before the publisher has the track must be refused
#    at once, and must not spoil the track for subscribers that come once it
#    exists, even while the early one is still connected. Their relay: the early
#    fetch fails in ~0.1 s and the later subscriber gets every frame.
mkfifo "$WORK/media2"
exec 5<>"$WORK/media2"
bg_out IMP2 import2 sh -c 'exec "$@" <"$0"' "$WORK/media2" "${MOQ[@]}" --connect "$URL" --broadcast w.hang import fmp4
wait_log "$WORK/import2.log" 'connected' 10
timeout 5 bash -c 'until curl -sf "$0" | grep -q w.hang; do sleep 0.1; done' "http://127.0.0.1:$OUR_PORT/announced"
bg_out EARLY early timeout 20 "${MOQ[@]}" --connect "$URL" --broadcast w.hang fetch 0.m4s
wait_exit "$EARLY" 3
early=$?
python3 "$GEN" init >&5
sleep 0.5 # the importer declares the track as soon as it parses the moov
m=$(mark "$WORK/our-relay.log")
bg_out SUB2 our-sub2 "$OURS/moq" subscribe "$URL" --broadcast w.hang --track 0.m4s --format binary --count "$GOP"
wait_subscribed "$WORK/our-relay.log" "$m" w.hang 0.m4s 1 10
python3 "$GEN" frags $((GOP + 1)) "$GOP" 0.05 >&5
case $early in
    124) fail moqcli-early-subscribe "their fetch of a not-yet-published track was still waiting after 3 s (their relay refuses it at once)" ;;
    0) fail moqcli-early-subscribe "their fetch of a not-yet-published track succeeded" ;;
    *) pass moqcli-early-subscribe ;;
esac
if wait_exit "$SUB2" 8 && diff -q <(head -n "$GOP" "$WORK/samples") <(python3 "$GEN" frames "$WORK/our-sub2.out") >/dev/null; then
    pass moqcli-subscribe-after-early-subscribe
else
    fail moqcli-subscribe-after-early-subscribe "after an early subscribe, a later subscriber got $(python3 "$GEN" frames "$WORK/our-sub2.out" | wc -l) of $GOP frames"
fi
exec 5>&-
stop "$SUB2" "$EARLY" "$IMP2"

# 9. Every session (their import, export, fetch; our clients) ran moq-lite-06,
#    except the raw QUIC ones, which negotiate the same way.
versions=$(our_versions "$M0" | sort | uniq -c | tr -s ' ' | tr '\n' ',')
if [[ -z $versions ]]; then
    fail moqcli-version "no 'session accepted' lines in our relay log"
elif our_versions "$M0" | grep -qv '^moq-lite-06$'; then
    fail moqcli-version "not all sessions were moq-lite-06:$versions"
else
    pass "moqcli-version (moq-lite-06 x$(our_versions "$M0" | wc -l))"
fi

alive "$OUR_RELAY_PID" || fail moqcli-relay-alive "our relay exited: $(plain "$WORK/our-relay.log" | tail -n 3)"
[[ $FAILED -eq 0 ]]
