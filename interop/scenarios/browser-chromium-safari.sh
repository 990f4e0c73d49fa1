#!/usr/bin/env bash
# @moq/net 0.3.4 in Debian's Chromium with a Safari user agent, watching a moq-clock through a
# relay and publishing a clock that a native moq-clock reads. For Safari the library itself
# turns WebTransport off (bowser: safari "<0") and takes its WebSocket (qmux) fallback, so it
# must choose WebSocket.
# Relay: MOQ_BROWSER_RELAY=ours (default) | theirs. See engines.bash.
set -uo pipefail
# shellcheck source=engines.bash
source "$(dirname "$0")/engines.bash"
engines_require chromium-safari "$NPM/node_modules/puppeteer-core/package.json" /usr/bin/chromium
engine_scenario chromium-safari chromium-safari websocket
