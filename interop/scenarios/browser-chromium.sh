#!/usr/bin/env bash
# @moq/net 0.3.4 in Debian's Chromium (CDP, puppeteer-core) watching a moq-clock through a
# relay and publishing a clock that a native moq-clock reads. The library races WebTransport
# against its WebSocket fallback (500 ms head start for WebTransport), so on loopback it must
# choose WebTransport.
# Relay: MOQ_BROWSER_RELAY=ours (default) | theirs. See engines.bash.
set -uo pipefail
# shellcheck source=engines.bash
source "$(dirname "$0")/engines.bash"
engines_require chromium "$NPM/node_modules/puppeteer-core/package.json" /usr/bin/chromium
engine_scenario chromium chromium webtransport
