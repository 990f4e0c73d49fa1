#!/usr/bin/env bash
# Install the ecosystem's own tools, pinned, into a cache directory outside the
# repository (never vendored). Skips whatever is already there.
#   MOQ_UPSTREAM   cache directory (default ~/.cache/moq-upstream)
set -euo pipefail

UPSTREAM=${MOQ_UPSTREAM:-$HOME/.cache/moq-upstream}
mkdir -p "$UPSTREAM"
export CARGO_TARGET_DIR=$UPSTREAM/target

# crate@version:binary. Not --locked: their lockfiles pin a crate this registry lacks.
CRATES=(
    "moq-relay@0.17.10:moq-relay"
    "moq-clock@0.10.21:moq-clock"
    "moq-cli@0.14.10:moq"
    "moq-token-cli@0.5.48:moq-token"
)
for entry in "${CRATES[@]}"; do
    spec=${entry%%:*}
    bin=${entry##*:}
    name=${spec%@*}
    version=${spec#*@}
    stamp="$UPSTREAM/.installed-$name-$version"
    if [[ -x "$UPSTREAM/bin/$bin" && -f "$stamp" ]]; then
        continue
    fi
    if [[ -x "$UPSTREAM/bin/$bin" ]] && "$UPSTREAM/bin/$bin" --version 2>/dev/null | grep -q "$version"; then
        touch "$stamp"
        continue
    fi
    echo "interop: installing $name $version (this takes a few minutes the first time)" >&2
    cargo install --quiet --root "$UPSTREAM" --version "$version" "$name"
    touch "$stamp"
done

# The browser library and a driver for Debian's Chromium.
NPM_DIR=$UPSTREAM/npm
if [[ ! -f "$NPM_DIR/.installed-moq-net-0.3.4" ]]; then
    mkdir -p "$NPM_DIR"
    (cd "$NPM_DIR" && [[ -f package.json ]] || echo '{"private": true}' > "$NPM_DIR/package.json")
    echo "interop: installing @moq/net 0.3.4 and playwright-core from npm" >&2
    (cd "$NPM_DIR" && npm install --silent --no-audit --no-fund --save-exact @moq/net@0.3.4 playwright-core@1)
    touch "$NPM_DIR/.installed-moq-net-0.3.4"
fi
# Drivers for the other engines (interop/browser/engines.mjs): puppeteer-core drives
# Chromium over CDP and Firefox over WebDriver BiDi; selenium-webdriver drives WebKitGTK
# through WebKitWebDriver. Pinned exactly. puppeteer-core 25 declares node >= 22.12 but runs
# here on node 20 (npm warns EBADENGINE); selenium-webdriver 4.46.0 is the last release
# that supports node 20.
BROWSER_DRIVERS=(puppeteer-core@25.16.0 selenium-webdriver@4.46.0)
if [[ ! -f "$NPM_DIR/.installed-browser-drivers-puppeteer-25.16.0-selenium-4.46.0" ]]; then
    echo "interop: installing ${BROWSER_DRIVERS[*]} from npm" >&2
    (cd "$NPM_DIR" && npm install --silent --no-audit --no-fund --save-exact "${BROWSER_DRIVERS[@]}")
    touch "$NPM_DIR/.installed-browser-drivers-puppeteer-25.16.0-selenium-4.46.0"
fi

# Browsers and tools from Debian (no downloaded browser builds): Chromium, Firefox ESR,
# WebKitGTK's WebDriver (with MiniBrowser), Xvfb for WebKitGTK's display, nftables and
# iproute2 for the UDP-blocked scenario.
APT_NEEDS=(chromium:/usr/bin/chromium firefox-esr:/usr/bin/firefox-esr webkit2gtk-driver:/usr/bin/WebKitWebDriver
    xvfb:/usr/bin/Xvfb nftables:/usr/sbin/nft iproute2:/usr/sbin/ip)
missing=()
for entry in "${APT_NEEDS[@]}"; do
    [[ -x ${entry#*:} ]] || missing+=("${entry%%:*}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "interop: installing ${missing[*]} from apt" >&2
    if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
