#!/usr/bin/env bash
# @moq/net 0.3.4 in WebKitGTK's MiniBrowser (Debian webkit2gtk-driver: WebKitWebDriver driven
# by selenium-webdriver, on an Xvfb display of its own) watching a moq-clock through a relay
# and publishing a clock that a native moq-clock reads. WebKitGTK has no WebTransport, so the
# library must choose WebSocket.
# Relay: MOQ_BROWSER_RELAY=ours (default) | theirs. See engines.bash.
set -uo pipefail
# shellcheck source=engines.bash
source "$(dirname "$0")/engines.bash"
engines_require webkit "$NPM/node_modules/selenium-webdriver/package.json" /usr/bin/WebKitWebDriver /usr/bin/Xvfb
engine_scenario webkit webkit websocket
