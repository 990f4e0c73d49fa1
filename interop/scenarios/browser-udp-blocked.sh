#!/usr/bin/env bash
# A network that drops UDP: the relay (and a moq-clock publisher on its loopback) in one
# network namespace, the viewers in another, joined by a veth pair; nft in the relay's
# namespace drops every UDP packet arriving over the veth, so QUIC and WebTransport cannot
# work and only TCP (HTTP, WebSocket) gets through. Both namespaces and the veth pair are
# made by this script with unique names and removed on exit; nothing touches the host's
# own interfaces, and no packet leaves the two namespaces.
#
# Checks:
#   - TCP reaches the relay from the viewers' namespace (HTTP /certificate.sha256);
#   - control: moq-clock held to QUIC (its WebSocket fallback off) gets nothing, and the
#     nft rule's counter shows the UDP it dropped, so the block is real;
#   - moq-clock with its default WebSocket fallback watches the clock;
#   - Chromium and Firefox (the library races WebTransport against WebSocket) watch the
#     clock over WebSocket and publish a clock that a native subscriber beside the relay reads;
#   - the native `moq` client (moq-cli 0.14.10) reads the clock over WebSocket.
# The browsers and clients run under `ip netns exec` (Chromium with --no-sandbox, as in
# every scenario). Needs root (namespaces, nft). Relay: MOQ_BROWSER_RELAY=ours (default) | theirs.
set -uo pipefail
# shellcheck source=engines.bash
source "$(dirname "$0")/engines.bash"
engines_require udp-blocked "$NPM/node_modules/puppeteer-core/package.json" /usr/bin/chromium /usr/bin/firefox-esr \
    "$THEIRS/moq"
if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null || ! command -v nft >/dev/null; then
    fail udp-blocked-setup "needs root, ip (iproute2) and nft (nftables)"
    exit 1
fi

# Two browsers and three native clients share the scenario's time: shorter phases.
DRIVER_S=45
CONNECT_S=6
WATCH_S=10
PUBLISH_S=12
NATIVE_S=12

TAG=$$-$RANDOM
NS_RELAY=moq-udpblk-relay-$TAG
NS_VIEW=moq-udpblk-view-$TAG
RELAY_IP=10.77.0.1
VIEW_IP=10.77.0.2
PORT=4443 # the namespace is ours alone, so any port is free
netns_cleanup() {
    ip netns del "$NS_RELAY" 2>/dev/null
    ip netns del "$NS_VIEW" 2>/dev/null
}
# cleanup (common.bash/lib.sh) stops our processes first, then the namespaces go.
trap 'keep_work; cleanup; netns_cleanup' EXIT
IN_RELAY=(ip netns exec "$NS_RELAY")
IN_VIEW=(ip netns exec "$NS_VIEW")

setup_net() {
    ip netns add "$NS_RELAY" &&
        ip netns add "$NS_VIEW" &&
        # Created directly inside the namespaces: no interface ever exists on the host.
        ip link add veth-relay netns "$NS_RELAY" type veth peer name veth-view netns "$NS_VIEW" &&
        ip -n "$NS_RELAY" addr add "$RELAY_IP/30" dev veth-relay &&
        ip -n "$NS_VIEW" addr add "$VIEW_IP/30" dev veth-view &&
        ip -n "$NS_RELAY" link set lo up &&
        ip -n "$NS_VIEW" link set lo up &&
        ip -n "$NS_RELAY" link set veth-relay up &&
        ip -n "$NS_VIEW" link set veth-view up &&
        "${IN_RELAY[@]}" nft -f - <<NFT
table inet moq_udp_block {
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "veth-relay" meta l4proto udp counter drop
    }
}
NFT
}
if ! setup_net 2>"$WORK/netns.err"; then
    fail udp-blocked-setup "could not make the namespaces: $(tr '\n' ' ' <"$WORK/netns.err")"
    exit 1
fi
# What a native client's log says about its transport and version, on one line.
native_said() {
    plain "$1" | grep -oE 'using WebSocket fallback.*|connected version=[^ ]+' | sed -E 's/ +$//' | paste -sd ';' -
}
dropped() { "${IN_RELAY[@]}" nft list table inet moq_udp_block | grep -oE 'packets [0-9]+' | awk '{print $2}'; }

# The relay and the clock publisher, in the relay's namespace (the publisher on loopback,
# where UDP flows).
if [[ $BROWSER_RELAY == ours ]]; then
    spawn relay "${IN_RELAY[@]}" "$OURS/moq-relay" --server-bind "[::]:$PORT" --tls-generate localhost \
        --web-http-listen "[::]:$PORT" --auth-public ""
    RELAY_LOG=$WORK/relay.log
else
    their_relay_toml "$PORT" >"$WORK/their-relay.toml"
    RUST_LOG=${THEIR_RELAY_LOG:-debug} spawn relay "${IN_RELAY[@]}" "$THEIRS/moq-relay" "$WORK/their-relay.toml"
    RELAY_LOG=$WORK/relay.log
fi
RELAY_PID=${PIDS[-1]}
for _ in $(seq 1 100); do
    "${IN_RELAY[@]}" curl -sf --max-time 1 "http://127.0.0.1:$PORT/certificate.sha256" >/dev/null 2>&1 && break
    sleep 0.1
done
spawn clock-pub "${IN_RELAY[@]}" "$THEIRS/moq-clock" --url "http://localhost:$PORT/anon" --broadcast clock publish
if ! wait_announced 127.0.0.1 "$PORT" clock 15 "${IN_RELAY[@]}"; then
    fail udp-blocked-setup "the relay did not start or moq-clock's broadcast was not announced"
    show "$RELAY_LOG" "$WORK/clock-pub.log"
    exit 1
fi
URL=http://$RELAY_IP:$PORT/anon
echo "  relay: $BROWSER_RELAY at $URL in $NS_RELAY; viewers in $NS_VIEW; UDP over the veth dropped"

# TCP crosses: the certificate hash the libraries fetch comes over HTTP.
if "${IN_VIEW[@]}" curl -sf --max-time 3 "http://$RELAY_IP:$PORT/certificate.sha256" >/dev/null; then
    pass udp-blocked-tcp-reaches-relay
else
    fail udp-blocked-tcp-reaches-relay "no HTTP answer from $RELAY_IP:$PORT in the viewers' namespace"
fi

# Control: a client held to QUIC (moq-clock with its WebSocket fallback turned off:
# WebTransport over HTTP/3 only) gets nothing, and the rule's counter shows its UDP dropped.
before=$(dropped)
bg_out ctl quic-only "${IN_VIEW[@]}" env MOQ_CLIENT_WEBSOCKET_ENABLED=false "$THEIRS/moq-clock" --url "$URL" \
    --broadcast clock subscribe
for _ in $(seq 1 100); do (($(dropped) > before)) && break; sleep 0.1; done
sleep 3 # a fixed window in which nothing may arrive: absence has no event to wait for
stop "$ctl"
after=$(dropped)
got=$(grep -cE '^[0-9]{4}-' "$WORK/quic-only.out")
if [[ $got -eq 0 && $after -gt $before ]]; then
    pass udp-blocked-quic-gets-nothing
else
    fail udp-blocked-quic-gets-nothing "moq-clock printed $got lines; nft dropped $((after - before)) UDP packets"
fi
echo "  control: QUIC-only moq-clock printed $got lines; nft dropped $((after - before)) UDP packets"

# A native client with its WebSocket fallback on (moq-clock's default) watches.
name=udp-blocked-native-moq-clock
before=$(dropped)
bg_out csub "$name" "${IN_VIEW[@]}" "$THEIRS/moq-clock" --url "$URL" --broadcast clock subscribe
if timeout "$NATIVE_S" bash -c 'until [[ $(grep -cE "^[0-9]{4}-" "$0") -ge $1 ]]; do sleep 0.1; done' "$WORK/$name.out" "$((CLOCK_LINES + 1))"; then
    clock_lines "$WORK/$name.out" >"$WORK/$name.lines"
    if ! why=$(check_clock "$WORK/$name.lines" "$CLOCK_LINES" 2>&1); then
        fail "$name" "$why"
    elif ! plain "$WORK/$name.log" | grep -q 'using WebSocket fallback'; then
        fail "$name" "the clock arrived, but moq-clock's log does not say it used WebSocket"
    else
        pass "$name"
    fi
else
    fail "$name" "moq-clock printed $(grep -cE '^[0-9]{4}-' "$WORK/$name.out") lines in $NATIVE_S s: $(plain "$WORK/$name.log" | tail -n 2 | tr '\n' ' ')"
fi
stop "$csub"
echo "  moq-clock (WebSocket fallback on): $(grep -cE '^[0-9]{4}-' "$WORK/$name.out") lines; nft dropped $(($(dropped) - before)) UDP packets meanwhile; $(native_said "$WORK/$name.log")"

# The browsers, under `ip netns exec`; the native subscriber of each browser's clock runs
# beside the relay (it is the browser's publishing over TCP that is under test).
BROWSER_PREFIX=("${IN_VIEW[@]}")
NATIVE_PREFIX=("${IN_RELAY[@]}")
NATIVE_URL=http://localhost:$PORT/anon
for engine in chromium firefox; do
    before=$(dropped)
    run_engine "udp-blocked-$engine" "$engine" websocket "$URL"
    echo "  nft dropped $(($(dropped) - before)) UDP packets from the viewers' side while $engine ran"
done

# The native `moq` client (moq-cli 0.14.10) in the viewers' namespace. It has no clock
# verb; `fetch` reads the clock's current group (one minute), one JSON object per frame:
# "YYYY-MM-DD HH:MM:" then "SS" per second. It serves what the relay has of the group and
# may then stop (moq-cli 0.14.10 gives up on the rest of an open group once its
# subscription idles), so this checks the frames, not that they keep coming.
name=udp-blocked-native-moq
# In a minute's first seconds the current group holds too few frames to judge: wait them out.
while ((10#$(date -u +%S) < CLOCK_LINES + 2)); do sleep 0.2; done
# moq-cli 0.14.10's `fetch` also races itself: it may drop its subscription the moment
# the group's header arrives ("subscribe canceled (idle)" in its log, then "failed to
# read group N ... cancelled"), before it reads the frames that came with the header
# (seen on loopback with this relay both before and after the stop that coalesced frames,
# about one fetch in ten). That attempt says nothing about the relay or the path: it is
# run again, at most twice; any other shortfall fails at once.
for attempt in 1 2 3; do
    bg_out msub "$name" "${IN_VIEW[@]}" "$THEIRS/moq" --log-level debug --connect "$URL" --broadcast clock \
        fetch seconds --json
    timeout "$NATIVE_S" bash -c 'until [[ $(grep -c "" "$0") -ge $1 ]] || ! kill -0 "$2" 2>/dev/null; do sleep 0.1; done' \
        "$WORK/$name.out" "$((CLOCK_LINES + 1))" "$msub" || true
    if [[ $(grep -c "" "$WORK/$name.out") -ge $((CLOCK_LINES + 1)) ]] \
        || ! plain "$WORK/$name.log" | grep -q 'subscribe canceled (idle)' || [[ $attempt -eq 3 ]]; then
        break
    fi
    echo "  moq fetch attempt $attempt: their client dropped its subscription before reading the frames; again"
    stop "$msub"
done
if [[ $(grep -c "" "$WORK/$name.out") -ge $((CLOCK_LINES + 1)) ]]; then
    # Clock lines from the frames: the group's first frame is the minute, the rest seconds.
    python3 - "$WORK/$name.out" >"$WORK/$name.lines" <<'PY'
import base64, json, sys
frames = [base64.b64decode(json.loads(l)["payload"]).decode() for l in open(sys.argv[1]) if l.strip()]
for second in frames[1:]:
    print(frames[0] + second)
PY
    if ! why=$(python3 - "$WORK/$name.lines" "$CLOCK_LINES" 2>&1 <<'PY'
import datetime, sys
lines = open(sys.argv[1]).read().splitlines()
if len(lines) < int(sys.argv[2]):
    sys.exit(f"{len(lines)} lines: {lines!r}")
times = [datetime.datetime.strptime(l, "%Y-%m-%d %H:%M:%S") for l in lines]
if any((b - a).total_seconds() != 1 for a, b in zip(times, times[1:])):
    sys.exit(f"not consecutive seconds: {lines!r}")
age = (datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - times[-1]).total_seconds()
if not -2 <= age <= 70:
    sys.exit(f"last line {lines[-1]} is not from the current minute's group ({age:.0f} s old)")
PY
    ); then
        fail "$name" "$why"
    elif ! plain "$WORK/$name.log" | grep -q 'using WebSocket fallback'; then
        fail "$name" "the clock arrived, but moq's log does not say it used WebSocket"
    else
        pass "$name"
    fi
else
    fail "$name" "moq fetch printed $(grep -c '' "$WORK/$name.out") frames in $NATIVE_S s: $(plain "$WORK/$name.log" | grep -iE 'error|warn' | tail -n 2 | cut -c1-200 | tr '\n' ' ')"
fi
stop "$msub"
echo "  moq (moq-cli): $(wc -l <"$WORK/$name.lines" 2>/dev/null || echo 0) clock lines; $(native_said "$WORK/$name.log")"

alive "$RELAY_PID" || fail udp-blocked-relay-alive "the relay exited: $(plain "$RELAY_LOG" | tail -n 3)"
echo "  scenario took $((SECONDS - START)) s"
[[ $FAILED -eq 0 && $PASSED -gt 0 ]]
