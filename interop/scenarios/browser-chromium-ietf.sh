#!/usr/bin/env bash
# @moq/net 0.3.4 in Debian's Chromium forced onto IETF moq-transport (its
# WT-Available-Protocols narrowed to one draft, the WebSocket fallback off) against our
# relay: it watches a moq-clock published over moq-lite and publishes a clock of its own
# that a native moq-clock (moq-lite) reads back. Drafts: IETF_BROWSER_DRAFTS (default
# "16 15"; the library offers 15 to 20).
#
# Not in the default list: 17 to 20. From draft 17 @moq/net 0.3.4 reads and writes the
# LARGEST_OBJECT parameter of SUBSCRIBE_OK with a Length, where moq-net 0.3.18 (the
# reference relay and `moq`) and we write the draft-17+ bare Location. So its watch fails
# once the relay has content for the track (only a first, empty subscription passes), and
# on draft 20 the relay cannot read its SUBSCRIBE_OK; the reference relay fails the same
# checks the same way.
# Relay: MOQ_BROWSER_RELAY=ours (default here) | theirs.
set -uo pipefail
MOQ_BROWSER_RELAY=${MOQ_BROWSER_RELAY:-ours}
# shellcheck source=engines.bash
source "$(dirname "$0")/engines.bash"
engines_require chromium-ietf "$NPM/node_modules/puppeteer-core/package.json" /usr/bin/chromium
engines_relay || { fail chromium-ietf-setup "the $BROWSER_RELAY relay did not start"; exit 1; }
url=http://localhost:$RELAY_PORT/anon
echo "  relay: $BROWSER_RELAY on port $RELAY_PORT"
spawn clock-pub "$THEIRS/moq-clock" --url "$url" --broadcast clock publish
wait_announced 127.0.0.1 "$RELAY_PORT" clock 15 ||
    { fail chromium-ietf-setup "moq-clock's broadcast was not announced"; show "$WORK/clock-pub.log" "$RELAY_LOG"; exit 1; }
for draft in ${IETF_BROWSER_DRAFTS:-16 15}; do
    BROWSER_PROTOCOLS="\"moqt-$draft\""
    BROWSER_VERSION="moq-transport-$draft"
    run_engine "chromium-ietf-$draft" chromium webtransport "$url"
done
alive "$RELAY_PID" || fail chromium-ietf-relay-alive "the relay exited: $(plain "$RELAY_LOG" | tail -n 3)"
echo "  scenario took $((SECONDS - START)) s"
[[ $FAILED -eq 0 && $PASSED -gt 0 ]]
