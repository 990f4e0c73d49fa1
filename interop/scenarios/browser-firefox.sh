#!/usr/bin/env bash
# @moq/net 0.3.4 in Firefox ESR 153 (Debian firefox-esr, WebDriver BiDi via puppeteer-core)
# watching a moq-clock through a relay and publishing a clock that a native moq-clock reads.
# The library uses WebTransport for Firefox >= 153, but Firefox has no WebTransport.protocol,
# so the library negotiates with a SETUP message on its first bidirectional stream (the
# probe's bidi[0] bytes in the output show exactly what it sent and what came back).
# Relay: MOQ_BROWSER_RELAY=ours (default) | theirs. See engines.bash.
set -uo pipefail
# shellcheck source=engines.bash
source "$(dirname "$0")/engines.bash"
engines_require firefox "$NPM/node_modules/puppeteer-core/package.json" /usr/bin/firefox-esr
engine_scenario firefox firefox webtransport
