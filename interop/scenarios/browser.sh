#!/usr/bin/env bash
# The ecosystem's browser library, @moq/net 0.3.4, in headless Chromium against our relay:
# it connects to http://localhost:PORT/anon (fetching /certificate.sha256 and pinning it for
# WebTransport), negotiates moq-lite-05, discovers the broadcasts our CLI publishes and
# subscribes to them. Checks: the negotiated version (as the library and our relay log
# report it), and that the frames received are the frames sent, in order, for
#   - stdin lines "frame-0".."frame-9" (group size 3), fed only once the browser's
#     subscription is live, so all ten must arrive, in groups 0..3;
#   - the clock, running before the browser joins: "YYYY-MM-DD HH:MM:" then consecutive "SS".
# The page and driver live in interop/browser/; node_modules come from $MOQ_UPSTREAM/npm.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
BROWSER_DIR=$ROOT/interop/browser
NPM=$UPSTREAM/npm
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
FRAMES=10
GROUP_SIZE=3
BUDGET=100 # seconds from here until the driver must have finished (it is also under `timeout 80`)
START=$SECONDS

finish() {
    [[ $FAILED -eq 0 && $PASSED -gt 0 ]]
    exit $?
}

# Show the evidence of a failure: the browser's console and our relay's log.
evidence() {
    echo "--- browser console, DevTools log and issues, driver (per-frame lines left out)"
    grep -v ' group [0-9]* frame ' "$WORK/browser.err" 2>/dev/null | head -n 60 | sed 's/^/    /'
    echo "--- our relay log (last 30 lines)"
    tail -n 30 "$WORK/our-relay.log" 2>/dev/null | sed 's/^/    /'
}

for need in "$NPM/node_modules/@moq/net/package.json" "$NPM/node_modules/playwright-core/package.json" \
    "$CHROMIUM" "$OURS/moq-relay" "$OURS/moq"; do
    if [[ ! -e $need ]]; then
        fail browser-setup "missing $need (run interop/install.sh; cargo build --release -p moq-relay -p moq-cli)"
        finish
    fi
done
command -v node >/dev/null || { fail browser-setup "node is not installed"; finish; }

# Not port=$(start_our_relay): in a subshell, spawn's PIDS+= is lost and the relay outlives us.
start_our_relay >"$WORK/port" || { fail browser-setup "our relay did not start"; finish; }
PORT=$(<"$WORK/port")
URL=http://localhost:$PORT/anon
HASH=$(curl -sf --max-time 5 "http://127.0.0.1:$PORT/certificate.sha256")

# The clock runs before the browser joins.
spawn pub-clock "$OURS/moq" publish clock "$URL" --broadcast clock
# Lines come through a FIFO, written only once the browser is subscribed.
mkfifo "$WORK/feed"
"$OURS/moq" publish stdin "$URL" --broadcast lines --track data --group-size "$GROUP_SIZE" \
    <"$WORK/feed" >"$WORK/pub-stdin.log" 2>&1 &
STDIN_PUB=$!
PIDS+=("$STDIN_PUB")
exec 3>"$WORK/feed"

# Both broadcasts announced on the relay before the browser starts.
# (moq-relay 0.17.10 lists paths relative to the prefix, ours lists full paths: accept both.)
announced() { grep -qxE "(anon/)?clock" <<<"$listed" && grep -qxE "(anon/)?lines" <<<"$listed"; }
for _ in $(seq 1 100); do
    listed=$(curl -sf --max-time 2 "http://127.0.0.1:$PORT/announced/anon" || true)
    announced && break
    sleep 0.1
done
if ! announced; then
    fail browser-setup "our CLI's broadcasts were not announced on the relay: $(tr '\n' ' ' <<<"$listed")"
    cat "$WORK"/pub-*.log
    finish
fi

expected=$(for i in $(seq 0 $((FRAMES - 1))); do printf '"frame-%d",' "$i"; done)
expected="[${expected%,}]"
config=$(
    cat <<JSON
{
  "npm": "$NPM",
  "chromium": "$CHROMIUM",
  "profile": "$WORK/chromium-profile",
  "timeoutMs": 60000,
  "url": "$URL",
  "pinnedUrl": "https://localhost:$PORT/anon",
  "certificateHash": "$HASH",
  "connectTimeoutMs": 10000,
  "announceTimeoutMs": 10000,
  "subscriptions": [
    { "name": "lines", "broadcast": "lines", "track": "data", "frames": $FRAMES, "timeoutMs": 30000 },
    { "name": "clock", "broadcast": "clock", "track": "seconds", "durationMs": 4500, "timeoutMs": 30000 }
  ],
  "expect": {
    "version": "moq-lite-05",
    "transport": "webtransport",
    "stdin": { "name": "lines", "frames": $expected, "groupSize": $GROUP_SIZE },
    "clock": { "name": "clock", "minFrames": 3 }
  }
}
JSON
)
timeout -k 5 80 node "$BROWSER_DIR/driver.mjs" "$config" >"$WORK/browser.out" 2>"$WORK/browser.err" 3>&- &
DRIVER=$!
PIDS+=("$DRIVER")

# Feed the lines once the browser's subscription is live.
ready=0
while ((SECONDS - START < 60)) && kill -0 "$DRIVER" 2>/dev/null; do
    if grep -qx 'READY lines' "$WORK/browser.out"; then ready=1 && break; fi
    sleep 0.1
done
if ((ready)); then
    trap '' PIPE # a publisher that died must not take this script with it
    sleep 0.3
    for i in $(seq 0 $((FRAMES - 1))); do
        kill -0 "$STDIN_PUB" 2>/dev/null || { echo "  our stdin publisher exited early: $(tail -n 3 "$WORK/pub-stdin.log")"; break; }
        printf 'frame-%d\n' "$i" >&3
        sleep 0.2
    done
fi

while ((SECONDS - START < BUDGET)) && kill -0 "$DRIVER" 2>/dev/null; do sleep 0.2; done
if kill -0 "$DRIVER" 2>/dev/null; then
    kill "$DRIVER" 2>/dev/null
    echo "browser driver still running after ${BUDGET}s; killed"
fi
wait "$DRIVER" 2>/dev/null
driver_status=$?
exec 3>&-

# A summary of what the browser saw.
if result=$(grep -m1 '^RESULT ' "$WORK/browser.out"); then
    node -e '
        const r = JSON.parse(process.argv[1].slice(7));
        for (const a of r.attempts) console.log(`  connect ${a.url}${a.pinned ? " (hash passed in)" : ""}: ${a.ok ? "ok" : a.error} in ${a.ms} ms`);
        if (r.version) console.log(`  negotiated ${r.version} over ${r.transport}`);
        for (const [name, s] of Object.entries(r.subscriptions)) {
            const frames = s.frames.map((f) => `${f.group}:${f.payload}`).join(" ");
            console.log(`  ${name}: ${s.frames.length} frames [${frames}] (${s.error ?? s.end})`);
        }' "$result"
fi

any_check=0
while read -r _ name verdict reason; do
    any_check=1
    if [[ $verdict == ok ]]; then pass "$name"; else fail "$name" "$reason"; fi
done < <(grep '^CHECK ' "$WORK/browser.out")
if ((!any_check)); then
    fail browser-run "the driver exited $driver_status without checking anything"
fi

# Our relay's view of the same session: our CLI's two sessions negotiate lite-06, so the
# browser's is the only moq-lite-05 one. (The relay colours its log even into a file.)
accepted=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/our-relay.log" | grep 'session accepted')
browser_sessions=$(grep -c 'version=moq-lite-05 transport=webtransport' <<<"$accepted")
if [[ $browser_sessions -eq 1 ]]; then
    pass browser-relay-log
else
    fail browser-relay-log "expected one 'session accepted version=moq-lite-05 transport=webtransport' in our relay log, found $browser_sessions: $(grep -o 'version=[^ ]* transport=[^ ]*' <<<"$accepted" | tr '\n' ',')"
fi

((FAILED == 0)) || evidence
finish
