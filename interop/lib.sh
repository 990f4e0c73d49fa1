# Shared helpers for interop scenarios. Source it; do not run it.
# Every process started here is killed when the scenario exits.

UPSTREAM=${MOQ_UPSTREAM:-$HOME/.cache/moq-upstream}
THEIRS=$UPSTREAM/bin
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OURS=${MOQ_OURS:-$ROOT/target/release}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/moq-interop.XXXXXX")
PIDS=()

cleanup() {
    # spawn() also records PIDs in a file, so processes started in a subshell
    # (e.g. port=$(start_our_relay)) are found too.
    if [[ -f "$WORK/pids" ]]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$WORK/pids"
    fi
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A free UDP+TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Run a command in the background, logging to $WORK/<name>.log.
spawn() {
    local name=$1; shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    echo $! >>"$WORK/pids"
}

# Wait until something answers on TCP 127.0.0.1:$1 (the relay's HTTP listener).
wait_http() {
    local port=$1
    for _ in $(seq 1 100); do
        if curl -sf "http://127.0.0.1:$port/certificate.sha256" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "nothing answered on port $port" >&2
    return 1
}

# Our relay on a fresh port, anonymous, self-signed; prints the port.
start_our_relay() {
    local port
    port=$(free_port)
    spawn our-relay "$OURS/moq-relay" --server-bind "[::]:$port" --tls-generate localhost \
        --web-http-listen "[::]:$port" --auth-public ""
    wait_http "$port" || { cat "$WORK/our-relay.log" >&2; return 1; }
    echo "$port"
}

# The reference relay (moq-relay 0.17.10) on a fresh port, anonymous, self-signed.
start_their_relay() {
    local port
    port=$(free_port)
    cat >"$WORK/their-relay.toml" <<TOML
[listen]
bind = "[::]:$port"
tls.generate = ["localhost"]
[web.http]
listen = "[::]:$port"
[auth]
public = "**"
TOML
    spawn their-relay "$THEIRS/moq-relay" "$WORK/their-relay.toml"
    wait_http "$port" || { cat "$WORK/their-relay.log" >&2; return 1; }
    echo "$port"
}

# Record one scenario result: pass NAME | fail NAME REASON
PASSED=0
FAILED=0
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }
