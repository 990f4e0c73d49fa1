#!/usr/bin/env bash
# IETF moq-transport through our relay, bridged to moq-lite both ways, with the
# ecosystem's `moq` (moq-cli 0.14.10) forced onto one draft by --connect-version.
#
# Per draft (IETF_DRAFTS, default 14 16 22 then the rest):
#   1. their `import fmp4` over moq-transport-NN publishes a tiny fMP4
#      (fmp4gen.py: known sample bytes); three viewers read it through our relay:
#      our `moq subscribe` (moq-lite-06), their `export fmp4` over moq-lite-06
#      and their `export fmp4` over the same draft. Every sample must arrive.
#   2. the reverse: their `import fmp4` over moq-lite-06, read by their
#      `export fmp4` over moq-transport-NN.
#   3. our relay logged each IETF session with its draft.
# Drafts take WebTransport (http), raw QUIC (moqt: ALPN moqt-NN, or moq-00 for
# draft 14) and WebSocket (ws: qmux subprotocol) in turn.
# With ffmpeg installed, a real H.264 clip imported over the first draft and
# exported over moq-lite-06 must decode to the right number of frames (ffprobe).
set -uo pipefail
# shellcheck source=common.bash
source "$(dirname "$0")/common.bash"
GEN="$(cd "$(dirname "$0")" && pwd)/fmp4gen.py"

FRAMES=10 # checked samples (2 groups)
GOP=5
FEED=11 # one more keyframe, so the last checked group is complete while the importer runs
DRAFTS=(${IETF_DRAFTS:-14 16 22 15 17 18 19 20 21})

OUR_RELAY_LOG="info,moq_core::session::publisher=debug,moq_core::ietf::publisher=debug" our_relay ||
    { fail ietf-relay "our relay did not start"; exit 1; }
FP=$(curl -sf "http://127.0.0.1:$OUR_PORT/certificate.sha256")
MOQ=("$THEIRS/moq" --log-level info)

python3 "$GEN" samples "$FEED" "$GOP" >"$WORK/samples"
head -n "$FRAMES" "$WORK/samples" >"$WORK/expected"
tr -d '\n' <"$WORK/expected" >"$WORK/expected.flat"
tr -d '\n' <"$WORK/samples" >"$WORK/samples.flat"

# The URL for the draft at position I: WebTransport, raw QUIC and WebSocket (qmux)
# in turn.
url_for() {
    case $(($1 % 3)) in
        0) echo "http://localhost:$OUR_PORT/anon" ;;
        1) echo "moqt://localhost:$OUR_PORT/anon" ;;
        *) echo "ws://localhost:$OUR_PORT/anon" ;;
    esac
}

# Count our relay's downstream subscriptions to BROADCAST/TRACK after line MARK
# (moq-lite: "broadcast=", moq-transport: "namespace=").
#   wait_viewers MARK BROADCAST TRACK COUNT SECONDS
wait_viewers() {
    timeout "$5" bash -c '
        until [[ $(tail -n +"$(($2 + 1))" "$1" | sed "s/\x1b\[[0-9;]*m//g" |
            grep -cE "subscribed id=[0-9]+ (broadcast=([^ ]*/)?$3|namespace=\\[\"$3\"\\]) track=$4( |\$)") -ge $5 ]]; do
            sleep 0.1
        done' _ "$WORK/our-relay.log" "$1" "$2" "$3" "$4"
}

# Did an fMP4 export hold every checked sample, in order, after an init segment?
#   export_ok NAME  (reads $WORK/NAME.out; prints the reason when not)
export_ok() {
    local out="$WORK/$1.out" got
    if [[ $(head -c 8 "$out" 2>/dev/null | tail -c 4) != ftyp ]]; then
        echo "no init segment ($(wc -c <"$out" 2>/dev/null || echo 0) bytes)"
        return 1
    fi
    got=$(python3 "$GEN" mdat "$out" 2>/dev/null | tr -d '\n')
    if [[ $got == "$(<"$WORK/expected.flat")" || $got == "$(<"$WORK/samples.flat")" ]]; then
        return 0
    fi
    echo "samples differ ($(python3 "$GEN" mdat "$out" 2>/dev/null | wc -l) of $FRAMES)"
    return 1
}

# Start an importer reading a FIFO held open on fd 3, so we decide when the init
# segment and the fragments arrive; its pid goes to IMP.
#   start_import NAME URL VERSION BROADCAST
start_import() {
    local name=$1 url=$2 version=$3 broadcast=$4
    mkfifo "$WORK/$name.fifo"
    exec 3<>"$WORK/$name.fifo"
    bg_out IMP "$name" sh -c 'exec "$@" <"$0"' "$WORK/$name.fifo" "${MOQ[@]}" --connect "$url" \
        --connect-tls-fingerprint "$FP" --connect-version "$version" --broadcast "$broadcast" import fmp4
}

# Wait up to SECONDS for an export to hold every checked sample (exports run
# until stopped); prints the reason when it never does.
#   wait_export NAME SECONDS
wait_export() {
    local deadline=$((SECONDS + $2))
    until export_ok "$1" >/dev/null; do
        if ((SECONDS >= deadline)); then
            export_ok "$1"
            return 1
        fi
        sleep 0.2
    done
}

# Wait up to 10 s until our moq-lite subscriber reads BROADCAST's catalog.json
# through our relay: the importer then has parsed the moov and declared its
# track (a subscribe before that is refused at once).
#   catalog BROADCAST NAME
catalog() {
    timeout 10 bash -c 'until timeout 3 "$0" subscribe "$1" --broadcast "$2" --track catalog.json --count 1 \
        --format binary >"$3.out" 2>"$3.log"; do sleep 0.2; done' \
        "$OURS/moq" "http://localhost:$OUR_PORT/anon" "$1" "$WORK/$2"
}

# 0. A playable MP4 (needs ffmpeg): real H.264 from ffmpeg, 16 frames in GOPs of 5,
#    imported by their tool over the first draft, exported by their tool over
#    moq-lite-06; ffprobe must decode 15 frames (the three complete GOPs) or 16.
playable() {
    local n=$1 v="moq-transport-$1" url info deadline
    url=$(url_for 0)
    if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
        echo "  (ffmpeg/ffprobe not installed: skipping the playable-MP4 check)" >&2
        return
    fi
    if ! ffmpeg -v error -y -f lavfi -i testsrc=size=64x48:rate=25 -frames:v 16 -c:v libx264 -profile:v baseline \
        -g 5 -keyint_min 5 -sc_threshold 0 -bf 0 -pix_fmt yuv420p \
        -movflags frag_every_frame+empty_moov+default_base_moof -f mp4 "$WORK/real.mp4" 2>"$WORK/ffmpeg.log"; then
        fail "ietf-$n-playable" "ffmpeg could not encode the test clip: $(tail -n 1 "$WORK/ffmpeg.log")"
        return
    fi
    start_import "real$n" "$url" "$v" real.hang
    python3 "$GEN" replay "$WORK/real.mp4" init >&3
    if ! catalog real.hang "realcat$n"; then
        fail "ietf-$n-playable" "their $v import of the ffmpeg clip never published a catalog"
        show "$WORK/real$n.log"
        exec 3>&-
        stop "$IMP"
        return
    fi
    # A viewer joins at the newest group: subscribe before the fragments come.
    m=$(mark "$WORK/our-relay.log")
    bg_out LEXP "real-export$n" "${MOQ[@]}" --connect "http://localhost:$OUR_PORT/anon" \
        --connect-version moq-lite-06 --broadcast real.hang export fmp4
    wait_viewers "$m" real.hang 0.m4s 1 10 || echo "  (their export never subscribed to real.hang)" >&2
    python3 "$GEN" replay "$WORK/real.mp4" frags 0.02 >&3
    deadline=$((SECONDS + 15))
    info=""
    while ((SECONDS < deadline)); do
        info=$(ffprobe -v quiet -count_frames -select_streams v:0 \
            -show_entries stream=codec_name,nb_read_frames -of csv=p=0 "$WORK/real-export$n.out" 2>/dev/null)
        [[ $info == h264,1[56] ]] && break
        sleep 0.3
    done
    exec 3>&-
    stop "$LEXP" "$IMP"
    if [[ $info == h264,1[56] ]]; then
        pass "ietf-$n-playable (their $v import, their moq-lite-06 export: ffprobe decodes ${info#*,} H.264 frames)"
    else
        fail "ietf-$n-playable" "ffprobe of their moq-lite-06 export of their $v import says '$info', wanted h264 with 15 or 16 frames"
        show "$WORK/real-export$n.log" "$WORK/real$n.log"
    fi
}
playable "${DRAFTS[0]}"

i=0
for n in "${DRAFTS[@]}"; do
    v="moq-transport-$n"
    url=$(url_for "$i")
    scheme=${url%%:*}
    i=$((i + 1))
    m=$(mark "$WORK/our-relay.log")

    # 1. IETF publisher → our relay → moq-lite and IETF viewers.
    b="d$n.hang"
    start_import "imp$n" "$url" "$v" "$b"
    python3 "$GEN" init >&3
    if ! catalog "$b" "cat$n"; then
        fail "ietf-$n-announce" "their $v import ($scheme): its catalog never reached our moq-lite subscriber"
        show "$WORK/imp$n.log"
        exec 3>&-
        stop "$IMP"
        continue
    fi
    m2=$(mark "$WORK/our-relay.log")
    bg_out SUB "sub$n" "$OURS/moq" subscribe "http://localhost:$OUR_PORT/anon" --broadcast "$b" --track 0.m4s \
        --format binary --count "$FRAMES"
    bg_out LEXP "lexp$n" "${MOQ[@]}" --connect "http://localhost:$OUR_PORT/anon" --connect-version moq-lite-06 \
        --broadcast "$b" export fmp4
    bg_out IEXP "iexp$n" "${MOQ[@]}" --connect "$url" --connect-tls-fingerprint "$FP" --connect-version "$v" \
        --broadcast "$b" export fmp4
    wait_viewers "$m2" "$b" 0.m4s 3 15 ||
        echo "  (draft $n: only $(since "$WORK/our-relay.log" "$m2" | grep -cE "subscribed id=[0-9]+ (broadcast=([^ ]*/)?$b|namespace=\\[\"$b\"\\]) track=0.m4s") of 3 viewers seen)" >&2
    python3 "$GEN" frags "$FEED" "$GOP" 0.02 >&3

    if wait_exit "$SUB" 15 && diff -q "$WORK/expected" <(python3 "$GEN" frames "$WORK/sub$n.out") >/dev/null; then
        pass "ietf-$n-their-import-our-lite-sub ($scheme)"
    else
        fail "ietf-$n-their-import-our-lite-sub" "our moq-lite subscriber got $(python3 "$GEN" frames "$WORK/sub$n.out" 2>/dev/null | wc -l) of $FRAMES frames from their $v import ($scheme)"
        show "$WORK/sub$n.log" "$WORK/imp$n.log"
    fi
    if why=$(wait_export "lexp$n" 10); then
        pass "ietf-$n-their-import-their-lite-export"
    else
        fail "ietf-$n-their-import-their-lite-export" "their moq-lite-06 export of their $v import: $why"
        show "$WORK/lexp$n.log"
    fi
    if why=$(wait_export "iexp$n" 10); then
        pass "ietf-$n-their-import-their-ietf-export ($scheme)"
    else
        fail "ietf-$n-their-import-their-ietf-export" "their $v export of their $v import ($scheme): $why"
        show "$WORK/iexp$n.log"
    fi
    exec 3>&-
    stop "$SUB" "$LEXP" "$IEXP" "$IMP"

    # 2. moq-lite publisher → our relay → IETF viewer.
    b="l$n.hang"
    start_import "limp$n" "http://localhost:$OUR_PORT/anon" moq-lite-06 "$b"
    python3 "$GEN" init >&3
    if ! catalog "$b" "lcat$n"; then
        fail "ietf-$n-lite-import-ietf-export" "their moq-lite-06 import never announced $b"
        show "$WORK/limp$n.log"
        exec 3>&-
        stop "$IMP"
        continue
    fi
    m2=$(mark "$WORK/our-relay.log")
    bg_out IEXP "lview$n" "${MOQ[@]}" --connect "$url" --connect-tls-fingerprint "$FP" --connect-version "$v" \
        --broadcast "$b" export fmp4
    wait_viewers "$m2" "$b" 0.m4s 1 15 || echo "  (draft $n: their $v export never subscribed to $b)" >&2
    python3 "$GEN" frags "$FEED" "$GOP" 0.02 >&3
    if why=$(wait_export "lview$n" 10); then
        pass "ietf-$n-lite-import-their-ietf-export ($scheme)"
    else
        fail "ietf-$n-lite-import-their-ietf-export" "their $v export ($scheme) of a moq-lite-06 import: $why"
        show "$WORK/lview$n.log" "$WORK/limp$n.log"
    fi
    exec 3>&-
    stop "$IEXP" "$IMP"

    # 3. Our relay saw the draft the tool was told to speak.
    if our_versions "$m" | grep -qx "$v"; then
        pass "ietf-$n-version ($(our_versions "$m" | grep -cx "$v") sessions)"
    else
        fail "ietf-$n-version" "no $v session in our relay log:$(our_versions "$m" | sort | uniq -c | tr -s ' ' | tr '\n' ',')"
    fi
done

# 4. The reference relay (moq-relay 0.17.10) and ours linked over moq-transport
#    (LINK_DRAFTS, default 17 and 22): ours dials theirs as a cluster link with
#    `--client-version moq-transport-NN`. Their import into their relay is read
#    by our moq-lite subscriber at ours; their import into ours is read by their
#    export at theirs.
their_relay || fail ietf-link "their relay did not start"
for n in ${LINK_DRAFTS:-17 22}; do
    [[ -n ${THEIR_PORT:-} ]] || break
    v="moq-transport-$n"
    port=$(free_port)
    bg LINKED "linked$n" env RUST_LOG=info "$OURS/moq-relay" --server-bind "[::]:$port" --tls-generate localhost \
        --web-http-listen "[::]:$port" --auth-public "" --cluster-id "$n" \
        --cluster-connect "https://localhost:$THEIR_PORT/" --client-version "$v" --client-tls-disable-verify
    if ! wait_log "$WORK/linked$n.log" "cluster link up .*version=$v" 15; then
        fail "ietf-link-$n" "our relay's $v link to theirs never came up"
        show "$WORK/linked$n.log" "$WORK/their-relay.log"
        stop "$LINKED"
        continue
    fi
    pass "ietf-link-$n-up"
    ours="http://localhost:$port/anon"
    theirs="http://localhost:$THEIR_PORT/anon"

    # Theirs → ours.
    b="in$n.hang"
    start_import "link-imp$n" "$theirs" moq-lite-06 "$b"
    python3 "$GEN" init >&3
    if timeout 10 bash -c 'until timeout 3 "$0" subscribe "$1" --broadcast "$2" --track catalog.json --count 1 \
        --format binary >/dev/null 2>&1; do sleep 0.2; done' "$OURS/moq" "$ours" "$b"; then
        bg_out SUB "link-sub$n" "$OURS/moq" subscribe "$ours" --broadcast "$b" --track 0.m4s --format binary \
            --count "$FRAMES"
        wait_log "$WORK/their-relay.log" "subscribe started .*broadcast=(anon/)?$b track=0.m4s" 10 ||
            echo "  (their relay never saw our link subscribe to $b)" >&2
        python3 "$GEN" frags "$FEED" "$GOP" 0.02 >&3
        if wait_exit "$SUB" 15 && diff -q "$WORK/expected" <(python3 "$GEN" frames "$WORK/link-sub$n.out") >/dev/null; then
            pass "ietf-link-$n-their-relay-to-ours"
        else
            fail "ietf-link-$n-their-relay-to-ours" "our subscriber at our relay got $(python3 "$GEN" frames "$WORK/link-sub$n.out" 2>/dev/null | wc -l) of $FRAMES frames published at theirs"
            show "$WORK/link-sub$n.log" "$WORK/linked$n.log"
        fi
        stop "$SUB"
    else
        fail "ietf-link-$n-their-relay-to-ours" "the catalog published at their relay never reached our relay over $v"
        show "$WORK/linked$n.log"
    fi
    exec 3>&-
    stop "$IMP"

    # Ours → theirs.
    b="out$n.hang"
    start_import "link-imp2$n" "$ours" moq-lite-06 "$b"
    python3 "$GEN" init >&3
    if timeout 10 bash -c 'until curl -sf "$0" | grep -q "$1"; do sleep 0.2; done' \
        "http://127.0.0.1:$THEIR_PORT/announced" "$b"; then
        m=$(mark "$WORK/their-relay.log")
        bg_out EXP "link-exp$n" "${MOQ[@]}" --connect "$theirs" --connect-version moq-lite-06 --broadcast "$b" export fmp4
        timeout 10 bash -c 'until tail -n +"$(($1 + 1))" "$0" | sed "s/\x1b\[[0-9;]*m//g" |
            grep -q "ietf::subscriber: subscribe started broadcast=anon/$2 track=0.m4s"; do sleep 0.1; done' \
            "$WORK/their-relay.log" "$m" "$b" || echo "  (their relay never subscribed to $b over the link)" >&2
        python3 "$GEN" frags "$FEED" "$GOP" 0.02 >&3
        if why=$(wait_export "link-exp$n" 10); then
            pass "ietf-link-$n-our-relay-to-theirs"
        else
            fail "ietf-link-$n-our-relay-to-theirs" "their export at their relay of a broadcast published at ours: $why"
            show "$WORK/link-exp$n.log" "$WORK/linked$n.log"
        fi
        stop "$EXP"
    else
        fail "ietf-link-$n-our-relay-to-theirs" "a broadcast published at our relay was never announced at theirs over $v"
        show "$WORK/linked$n.log" "$WORK/their-relay.log"
    fi
    exec 3>&-
    stop "$IMP" "$LINKED"
done

alive "$OUR_RELAY_PID" || fail ietf-relay-alive "our relay exited: $(plain "$WORK/our-relay.log" | tail -n 3)"
[[ $FAILED -eq 0 ]]
