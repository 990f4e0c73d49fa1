# Shared by the browser-engine scenarios (browser-chromium.sh, browser-chromium-safari.sh,
# browser-firefox.sh, browser-webkit.sh, browser-udp-blocked.sh). Sourced, never run.
#
# Each scenario: a relay, a `moq-clock` publisher, then one engine (interop/browser/
# engines.mjs) running the unmodified @moq/net 0.3.4, which connects by itself
# (WebTransport or its WebSocket fallback), watches the clock and publishes a clock of its
# own that a native `moq-clock` subscriber must read. Lines: PASS/FAIL per check, plus what
# was negotiated and what the library put on the wire (from interop/browser/probe.js).
#
#   MOQ_BROWSER_RELAY=ours|theirs  which relay the browsers talk to. Default: ours; `theirs`
#                                  runs the same checks against the reference moq-relay 0.17.10.
# shellcheck shell=bash
# shellcheck source=common.bash
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

BROWSER_RELAY=${MOQ_BROWSER_RELAY:-ours}
BROWSER_DIR=$ROOT/interop/browser
NPM=$UPSTREAM/npm
CLOCK_LINES=3 # clock lines the browser, and the native subscriber of the browser's clock, must get
LIVE_LINES=2  # of the browser's, how many must arrive live rather than from the relay's cache
# Time limits of one engine run (seconds): the driver as a whole, and inside it the page's
# connect, watch and publish phases; NATIVE_S for a native subscriber's lines.
DRIVER_S=80
CONNECT_S=15
WATCH_S=20
PUBLISH_S=25
NATIVE_S=20
# The whole scenario stays under this many seconds: an engine run gets at most what is left.
SCENARIO_LIMIT=115
budget_left() { echo $((SCENARIO_LIMIT - (SECONDS - START))); }
START=$SECONDS

# Every file this needs, or FAIL NAME-setup and exit.
#   engines_require NAME EXTRA_FILE...
engines_require() {
    local name=$1 need
    shift
    for need in "$NPM/node_modules/@moq/net/package.json" "$THEIRS/moq-clock" "$@"; do
        if [[ ! -e $need ]]; then
            fail "$name-setup" "missing $need (run interop/install.sh)"
            exit 1
        fi
    done
    if [[ $BROWSER_RELAY == ours ]]; then
        [[ -x $OURS/moq-relay ]] || { fail "$name-setup" "missing $OURS/moq-relay (cargo build --release -p moq-relay)"; exit 1; }
    else
        [[ -x $THEIRS/moq-relay ]] || { fail "$name-setup" "missing $THEIRS/moq-relay (run interop/install.sh)"; exit 1; }
    fi
    command -v node >/dev/null || { fail "$name-setup" "node is not installed"; exit 1; }
}

# The relay config for the reference relay: QUIC + WebTransport on UDP, HTTP + WebSocket
# on TCP, same port, anonymous, self-signed.
#   their_relay_toml PORT > FILE
their_relay_toml() {
    cat <<TOML
[listen]
bind = "[::]:$1"
tls.generate = ["localhost"]
[web]
ws = true
[web.http]
listen = "[::]:$1"
[auth]
public = "**"
TOML
}

# Start the chosen relay here (not in a subshell). Sets RELAY_PORT, RELAY_LOG, RELAY_PID.
# Their relay logs at debug so the log shows each session's transport and version.
engines_relay() {
    if [[ $BROWSER_RELAY == ours ]]; then
        OUR_RELAY_LOG=${OUR_RELAY_LOG:-debug} our_relay || return 1
        RELAY_PORT=$OUR_PORT
        RELAY_LOG=$WORK/our-relay.log
        RELAY_PID=$OUR_RELAY_PID
    else
        RELAY_PORT=$(free_port)
        their_relay_toml "$RELAY_PORT" >"$WORK/their-relay.toml"
        RUST_LOG=${THEIR_RELAY_LOG:-debug} spawn their-relay "$THEIRS/moq-relay" "$WORK/their-relay.toml"
        RELAY_PID=${PIDS[-1]}
        RELAY_LOG=$WORK/their-relay.log
        wait_http "$RELAY_PORT" || { show "$RELAY_LOG"; return 1; }
    fi
}

# Wait until the relay at http://HOST:PORT lists BROADCAST under anon/ (theirs lists paths
# relative to the prefix, ours full paths). Extra leading args run the curl, e.g. in a netns.
#   wait_announced HOST PORT BROADCAST SECONDS [PREFIX_CMD...]
wait_announced() {
    local host=$1 port=$2 b=$3 secs=$4 i listed
    shift 4
    for ((i = 0; i < secs * 10; i++)); do
        listed=$("$@" curl -sf --max-time 2 "http://$host:$port/announced/anon" || true)
        grep -qxE "(anon/)?$b" <<<"$listed" && return 0
        sleep 0.1
    done
    return 1
}

# Check the clock a browser watched ("LINE<TAB>ARRIVAL_MS" per frame): at least N lines
# "YYYY-MM-DD HH:MM:SS" (UTC), in order, consecutive within each minute, at least LIVE arriving
# live (500 ms or more after the first, which comes from the relay's cache with its group's
# older frames), each of those within a few seconds of the wall clock when it arrived.
# Prints the reason on failure.
#   check_watched FILE N LIVE
check_watched() {
    python3 - "$1" "$2" "$3" <<'PY'
import datetime, re, sys
path, need, need_live = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [l.split("\t") for l in open(path, encoding="utf-8", errors="replace").read().splitlines()]
if len(rows) < need:
    sys.exit(f"{len(rows)} lines, wanted {need}: {[r[0] for r in rows]!r}")
pat = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
bad = [r for r in rows if len(r) != 2 or not pat.match(r[0])]
if bad:
    sys.exit(f"malformed line {bad[0]!r}")
times = [datetime.datetime.strptime(r[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc) for r in rows]
arrivals = [datetime.datetime.fromtimestamp(int(r[1]) / 1000, datetime.timezone.utc) for r in rows]
for a, b in zip(times, times[1:]):
    # Within a minute (one group) every second; across groups only forward (a player may
    # drop the rest of an older group once the next one is there).
    step = (b - a).total_seconds()
    if step <= 0 or (a.minute == b.minute and step != 1):
        sys.exit(f"not consecutive: {a:%H:%M:%S} then {b:%H:%M:%S}")
live = [(t, at) for t, at in zip(times, arrivals) if (at - arrivals[0]).total_seconds() >= 0.5]
if len(live) < need_live:
    sys.exit(f"only {len(live)} of {len(rows)} lines arrived live, wanted {need_live}")
for t, at in live:
    lag = (at - t).total_seconds()
    if not -2 <= lag <= 5:
        sys.exit(f"line {t:%H:%M:%S} arrived at {at:%H:%M:%S.%f}, {lag:.1f} s off the wall clock")
PY
}

# moq-clock's stdout, the clock lines only.
clock_lines() { plain "$1" | grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$'; }

# The relay's account of the sessions after line MARK: "N x VERSION/TRANSPORT", comma
# separated. Theirs logs `negotiated version=V transport=T` for QUIC sessions (T is `quic`
# for WebTransport too) and nothing about the version of a WebSocket session, whose
# events carry a `ws{id=N ...}` span: those count as "websocket/?". Ours logs
# `session accepted ... version=V transport=T`.
#   relay_sessions MARK [END]   (the lines after MARK, up to line END)
relay_sessions() {
    local lines
    lines=$(since "$RELAY_LOG" "$1" | head -n "$((${2:-999999999} - $1))")
    {
        grep <<<"$lines" -E 'negotiated version=|session accepted.*version=' |
            sed -E 's/.*(negotiated|session accepted)//' |
            sed -E 's/.*version="?([^ "]+)"?.* transport="?([^ "]+)"?.*/\1\/\2/; t; s/.*version="?([^ "]+)"?.*/\1/'
        grep <<<"$lines" -oE ' ws\{id=[0-9]+' | sort -u | sed 's/.*/websocket\/?/'
    } | sort | uniq -c | awk '{printf "%s%s x %s", (NR > 1 ? ", " : ""), $1, $2} END {if (NR == 0) printf "none"}'
}

# Where run_engine runs the browser and the native subscriber of the browser's clock, and
# the URL that subscriber dials (default: here, and the browser's URL). The UDP-blocked
# scenario puts the browser in another network namespace with `ip netns exec NS`.
BROWSER_PREFIX=()
NATIVE_PREFIX=()
NATIVE_URL=""

# Run one engine against the relay: watch the clock, then publish a clock that a native
# moq-clock subscriber reads. PASS/FAIL lines are named NAME-*.
#   run_engine NAME ENGINE EXPECTED_TRANSPORT URL
run_engine() {
    local name=$1 engine=$2 transport=$3 url=$4
    local t0=$SECONDS out=$WORK/$name.out err=$WORK/$name.err published=browserclock-$name
    local config driver m m2="" sub status limit=$DRIVER_S
    if (($(budget_left) - 15 < limit)); then limit=$(($(budget_left) - 15)); fi
    if ((limit < 20)); then
        fail "$name-run" "only $(budget_left) s left of the scenario's $SCENARIO_LIMIT s"
        return
    fi
    m=$(mark "$RELAY_LOG")
    config=$(
        cat <<JSON
{
  "name": "$name",
  "engine": "$engine",
  "npm": "$NPM",
  "profile": "$WORK/$name-profile",
  "timeoutMs": $(((limit - 15) * 1000)),
  "clockOut": "$WORK/$name.clock",
  "stopFile": "$WORK/$name.stop",
  "expect": { "transport": "$transport" },
  "page": {
    "url": "$url",
    "connectTimeoutMs": $((CONNECT_S * 1000)),
    "watch": { "broadcast": "clock", "track": "seconds", "minFrames": $CLOCK_LINES, "minLive": $LIVE_LINES, "timeoutMs": $((WATCH_S * 1000)) },
    "publish": { "broadcast": "$published", "track": "seconds", "maxMs": $((PUBLISH_S * 1000)) }
  }
}
JSON
    )
    "${BROWSER_PREFIX[@]}" timeout -k 12 "$limit" node "$BROWSER_DIR/engines.mjs" "$config" >"$out" 2>"$err" &
    driver=$!
    PIDS+=("$driver")
    echo "$driver" >>"$WORK/pids"

    # The browser's own clock, read by a native subscriber while the page publishes it.
    if timeout "$limit" bash -c 'until grep -q "^PUBLISHING " "$0" || ! kill -0 "$1" 2>/dev/null; do sleep 0.1; done' "$out" "$driver" &&
        grep -q "^PUBLISHING " "$out"; then
        m2=$(mark "$RELAY_LOG")
        bg_out sub "$name-native-sub" "${NATIVE_PREFIX[@]}" "$THEIRS/moq-clock" --url "${NATIVE_URL:-$url}" \
            --broadcast "$published" subscribe
        if timeout "$NATIVE_S" bash -c 'until [[ $(grep -cE "^[0-9]{4}-" "$0") -ge $1 ]]; do sleep 0.1; done' \
            "$WORK/$name-native-sub.out" "$((CLOCK_LINES + 1))"; then
            clock_lines "$WORK/$name-native-sub.out" >"$WORK/$name-native-sub.lines"
            if why=$(check_clock "$WORK/$name-native-sub.lines" "$CLOCK_LINES" 2>&1); then
                pass "$name-publish-native-sub"
            else
                fail "$name-publish-native-sub" "$why"
            fi
        else
            fail "$name-publish-native-sub" "moq-clock printed $(grep -cE '^[0-9]{4}-' "$WORK/$name-native-sub.out") lines of the browser's clock in $NATIVE_S s: $(plain "$WORK/$name-native-sub.log" | tail -n 2 | tr '\n' ' ')"
        fi
        touch "$WORK/$name.stop"
        stop "$sub"
    fi
    wait "$driver" 2>/dev/null
    status=$?

    # What the browser saw and chose.
    local result probe
    result=$(grep -m1 '^RESULT ' "$out" | cut -c8-)
    probe=$(grep -m1 '^PROBE ' "$out" | cut -c7-)
    if [[ -n $result ]]; then
        node "$BROWSER_DIR/summary.mjs" "$result" "$probe" | sed 's/^/  /'
    fi
    echo "  relay log, the browser's sessions: $(relay_sessions "$m" "$m2")"
    # The subprotocols the browser's WebTransport CONNECT carried (WT-Available-Protocols),
    # as the relay's web-transport layer logs them at debug.
    local connects
    connects=$(since "$RELAY_LOG" "$m" | head -n "$((${m2:-999999999} - m))" |
        grep -oE 'received CONNECT request.* protocols: \[[^]]*\]' | grep -oE 'protocols: \[[^]]*\]' | paste -sd ';' -)
    [[ -z $connects ]] || echo "  relay log, the browser's WebTransport CONNECT offered $connects"

    local any=0 verdict check reason
    while read -r _ check verdict reason; do
        any=1
        if [[ $verdict == ok ]]; then pass "$check"; else fail "$check" "$reason"; fi
    done < <(grep '^CHECK ' "$out")
    ((any)) || fail "$name-run" "the driver exited $status without checking anything: $(tail -n 3 "$err" | tr '\n' ' ')"

    if [[ -s $WORK/$name.clock ]] || [[ -n $result ]]; then
        if why=$(check_watched "$WORK/$name.clock" "$CLOCK_LINES" "$LIVE_LINES" 2>&1); then
            pass "$name-watch-clock"
        else
            fail "$name-watch-clock" "$why"
        fi
    fi
    if ((FAILED > 0)); then
        echo "  --- $name driver stderr (last 40 lines)"
        tail -n 40 "$err" | cut -c1-400 | sed 's/^/  | /'
    fi
    echo "  $name took $((SECONDS - t0)) s"
}

# Run ENGINE against the chosen relay with its clock: the whole of a one-engine scenario.
#   engine_scenario NAME ENGINE EXPECTED_TRANSPORT
engine_scenario() {
    local name=$1 engine=$2 transport=$3
    engines_relay || { fail "$name-setup" "the $BROWSER_RELAY relay did not start"; exit 1; }
    local url=http://localhost:$RELAY_PORT/anon
    echo "  relay: $BROWSER_RELAY on port $RELAY_PORT"
    spawn clock-pub "$THEIRS/moq-clock" --url "$url" --broadcast clock publish
    wait_announced 127.0.0.1 "$RELAY_PORT" clock 15 ||
        { fail "$name-setup" "moq-clock's broadcast was not announced"; show "$WORK/clock-pub.log" "$RELAY_LOG"; exit 1; }
    run_engine "$name" "$engine" "$transport" "$url"
    alive "$RELAY_PID" || fail "$name-relay-alive" "the relay exited: $(plain "$RELAY_LOG" | tail -n 3)"
    echo "  scenario took $((SECONDS - START)) s"
    [[ $FAILED -eq 0 && $PASSED -gt 0 ]]
}
