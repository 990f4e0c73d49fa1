#!/usr/bin/env bash
# qmux over WebSocket against the ecosystem's own implementations:
#  1. @moq/net 0.3.4 in Node (no WebTransport there, so it takes its WebSocket path)
#     reads a track from our qmux server (moq-native's `qmux-clock` example), on
#     qmux-01 and qmux-00 and on each moq-lite version @moq/net offers.
#  2. Our `moq` over ws:// through the reference relay (moq-relay 0.17.10): our
#     clock published and read back over ws://, their moq-clock read by us over
#     ws://, and our ws:// publisher read by their moq-clock.
#  3. The https:// / http:// fallback: our client given an http:// URL where only
#     the reference relay's HTTP listener answers ends up on its WebSocket.
set -uo pipefail
# shellcheck source=common.bash
source "$(dirname "$0")/common.bash"
HERE="$(cd "$(dirname "$0")" && pwd)"
SUBSCRIBE="$HERE/../websocket/subscribe.mjs"
NPM_DIR=${MOQ_NPM:-$UPSTREAM/npm}
EXAMPLE=$OURS/examples/qmux-clock

LINES=4 # clock lines each subscriber must print
WAIT=15
FRAMES=12 # frames @moq/net must read

# Node 22+ has WebSocket; Node 20 needs the flag.
if node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null; then
    NODE=(node)
else
    NODE=(node --experimental-websocket)
fi

clock_lines() { plain "$1" | grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$'; }

judge_clock() {
    local name=$1 file=$2 why
    if why=$(check_clock "$file" "$LINES" 2>&1); then pass "$name"; else fail "$name" "$why"; fi
}

# Check subscribe.mjs's JSON: transport websocket, the version, FRAMES frames that
# follow each other ("G.I" then "G.I+1", or "G+1.0" after a group's last frame).
#   judge_frames NAME JSON_FILE VERSION
judge_frames() {
    local name=$1 file=$2 version=$3 why
    if why=$(python3 - "$file" "$version" "$FRAMES" <<'PY' 2>&1
import json, sys
path, version, need = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [l for l in open(path).read().splitlines() if l.startswith("{")]
if not lines:
    sys.exit("no result line")
r = json.loads(lines[-1])
if r.get("error"):
    sys.exit(f"@moq/net: {r['error']}")
if r.get("transport") != "websocket":
    sys.exit(f"transport {r.get('transport')!r}")
if r.get("version") != version:
    sys.exit(f"version {r.get('version')!r}, wanted {version}")
frames = r["frames"]
if len(frames) < need:
    sys.exit(f"{len(frames)} frames, wanted {need}")
prev = None
for f in frames:
    g, i = (int(x) for x in f["payload"].split("."))
    if g != f["group"]:
        sys.exit(f"frame {f['payload']} in group {f['group']}")
    if prev is not None and (g, i) not in ((prev[0], prev[1] + 1), (prev[0] + 1, 0)):
        sys.exit(f"{prev[0]}.{prev[1]} then {g}.{i}")
    prev = (g, i)
PY
    ); then pass "$name"; else fail "$name" "$why"; fi
}

# --- 1. @moq/net → our qmux server.
if [[ ! -x $EXAMPLE ]]; then
    fail websocket-moq-net "missing $EXAMPLE (cargo build --release -p moq-native --example qmux-clock)"
elif [[ ! -f $NPM_DIR/node_modules/@moq/net/package.json ]]; then
    fail websocket-moq-net "missing @moq/net in $NPM_DIR (interop/install.sh)"
else
    # wire:version restrictions on our server, and what must be negotiated.
    for case in "::qmux-01.moq-lite-05" "qmux-00::qmux-00.moq-lite-05" ":moq-lite-04:qmux-01.moq-lite-04" \
        "qmux-00:moq-lite-03:qmux-00.moq-lite-03"; do
        IFS=: read -r wire version want <<<"$case"
        args=(127.0.0.1:0)
        [[ -n $wire ]] && args+=(--wire "$wire")
        [[ -n $version ]] && args+=(--version "$version")
        name=websocket-moq-net-$want
        bg_out SRV "$name-server" "$EXAMPLE" "${args[@]}"
        if ! wait_lines "$WORK/$name-server.out" 1 10; then
            fail "$name" "our qmux server did not start"
            show "$WORK/$name-server.log"
            stop "$SRV"
            continue
        fi
        port=$(grep -oE ':[0-9]+/' "$WORK/$name-server.out" | tr -d ':/')
        timeout 30 "${NODE[@]}" "$SUBSCRIBE" "$NPM_DIR" "http://127.0.0.1:$port/" clock seconds "$FRAMES" 15000 \
            >"$WORK/$name.json" 2>"$WORK/$name.log"
        if ! grep -q "session on $want\$" "$WORK/$name-server.log"; then
            fail "$name" "our server negotiated: $(grep -o 'session on .*' "$WORK/$name-server.log" | head -n 1)"
            show "$WORK/$name.log" "$WORK/$name-server.log"
        else
            judge_frames "$name" "$WORK/$name.json" "${want#*.}"
        fi
        stop "$SRV"
    done
fi

# --- 2. Our ws:// client through their relay.
their_relay || { fail websocket-their-relay "their relay did not start"; exit 1; }
LOG="$WORK/their-relay.log"
WS="ws://localhost:$THEIR_PORT/anon"
URL="http://localhost:$THEIR_PORT/anon"

# 2a. Our clock publisher over ws:// → their relay → our subscriber over ws://.
m=$(mark "$LOG")
bg PUB our-ws-pub "$OURS/moq" --log-level info publish clock "$WS" --broadcast wsclock
if ! wait_log "$WORK/our-ws-pub.log" 'connected' 10; then
    fail websocket-our-pub-connect "our publisher did not connect over ws://: $(plain "$WORK/our-ws-pub.log" | tail -n 1)"
else
    if plain "$WORK/our-ws-pub.log" | grep -q 'transport=WebSocket'; then
        pass websocket-our-pub-connect
    else
        fail websocket-our-pub-connect "not over WebSocket: $(plain "$WORK/our-ws-pub.log" | grep connected | head -n 1)"
    fi
    name=websocket-our-pub-our-sub
    if timeout "$WAIT" "$OURS/moq" clock "$WS" --broadcast wsclock --count "$LINES" \
        >"$WORK/$name.out" 2>"$WORK/$name.log"; then
        judge_clock "$name" "$WORK/$name.out"
    else
        fail "$name" "our ws:// subscriber: $(plain "$WORK/$name.log" | tail -n 1)"
        show "$WORK/our-ws-pub.log" "$LOG"
    fi

    # 2b. The same ws:// publisher read by their moq-clock (over WebTransport).
    name=websocket-our-pub-their-sub
    bg_out CSUB "$name" "$THEIRS/moq-clock" --url "$URL" --broadcast wsclock subscribe
    if wait_lines "$WORK/$name.out" "$LINES" "$WAIT"; then
        clock_lines "$WORK/$name.out" >"$WORK/$name.lines"
        judge_clock "$name" "$WORK/$name.lines"
    else
        fail "$name" "their moq-clock printed $(grep -c '' "$WORK/$name.out") lines"
        show "$WORK/$name.log" "$LOG"
    fi
    stop "$CSUB"
fi
stop "$PUB"

# 2c. Their moq-clock publisher → their relay → our subscriber over ws://, on the
#     default version and on each older one.
bg TPUB their-clock-pub "$THEIRS/moq-clock" --url "$URL" --broadcast theirclock publish
wait_log "$WORK/their-clock-pub.log" 'connected' 10
for version in "" moq-lite-05 moq-lite-04 moq-lite-03; do
    name=websocket-their-pub-our-sub${version:+-$version}
    args=()
    [[ -n $version ]] && args+=(--version-offer "$version")
    if timeout "$WAIT" "$OURS/moq" --log-level info "${args[@]}" clock "$WS" --broadcast theirclock --count "$LINES" \
        >"$WORK/$name.out" 2>"$WORK/$name.log"; then
        got=$(plain "$WORK/$name.log" | grep -E ' connected( |$)' | grep -oE 'version=[^ ]+' | head -n 1 | sed 's/.*=//')
        if [[ -n $version && $got != "$version" ]]; then
            fail "$name" "negotiated '$got'"
        elif ! plain "$WORK/$name.log" | grep -q 'transport=WebSocket'; then
            fail "$name" "not over WebSocket: $(plain "$WORK/$name.log" | grep connected | head -n 1)"
        else
            judge_clock "$name" "$WORK/$name.out"
        fi
    else
        fail "$name" "our ws:// subscriber: $(plain "$WORK/$name.log" | tail -n 1)"
        show "$LOG"
    fi
done
stop "$TPUB"

alive "$THEIR_RELAY_PID" || fail websocket-their-relay-alive "their relay exited: $(plain "$LOG" | tail -n 3)"

# --- 3. The fallback: a second reference relay whose HTTP listener is on another
#        port than its QUIC one. An http:// URL to the HTTP port pins the fetched
#        fingerprint, finds no QUIC there, and must end up on ws:// after the head start.
QPORT=$(free_port)
HPORT=$(free_port)
cat >"$WORK/their-split.toml" <<TOML
[listen]
bind = "[::]:$QPORT"
tls.generate = ["localhost"]
[web.http]
listen = "[::]:$HPORT"
[auth]
public = "**"
TOML
bg SPLIT their-split "$THEIRS/moq-relay" "$WORK/their-split.toml"
if ! wait_http "$HPORT"; then
    fail websocket-fallback "their second relay did not start"
    show "$WORK/their-split.log"
else
    bg PUB split-pub "$OURS/moq" --log-level info publish clock "ws://localhost:$HPORT/anon" --broadcast fallback
    wait_log "$WORK/split-pub.log" 'connected' 10
    name=websocket-fallback-http-to-ws
    if timeout "$WAIT" "$OURS/moq" --log-level info clock "http://localhost:$HPORT/anon" --broadcast fallback \
        --count "$LINES" >"$WORK/$name.out" 2>"$WORK/$name.log"; then
        if plain "$WORK/$name.log" | grep -q 'connected over the WebSocket fallback'; then
            judge_clock "$name" "$WORK/$name.out"
        else
            fail "$name" "did not fall back: $(plain "$WORK/$name.log" | grep connected | head -n 1)"
        fi
    else
        fail "$name" "our subscriber: $(plain "$WORK/$name.log" | tail -n 1)"
        show "$WORK/split-pub.log" "$WORK/their-split.log"
    fi
    stop "$PUB"
fi
stop "$SPLIT"
[[ $FAILED -eq 0 ]]
