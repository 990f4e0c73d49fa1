#!/usr/bin/env bash
# Our relay peering with the reference relay (moq-relay 0.17.10) as cluster
# links, in both directions: theirs as the upstream our relay dials, and ours
# as the upstream their relay dials. In each case a clock published on one
# relay is read on the other, both ways across the link, by our `moq clock`
# and their moq-clock.
set -uo pipefail
# shellcheck source=common.bash
source "$(dirname "$0")/common.bash"

LINES=3
WAIT=20

# Their relay on a fresh port with extra TOML appended; sets THEIR_PORT.
their_cluster_relay() {
    local name=$1 extra=$2
    THEIR_PORT=$(free_port)
    cat >"$WORK/$name.toml" <<TOML
[listen]
bind = "[::]:$THEIR_PORT"
tls.generate = ["localhost"]
[web.http]
listen = "[::]:$THEIR_PORT"
[auth]
public = "**"
$extra
TOML
    spawn "$name" "$THEIRS/moq-relay" "$WORK/$name.toml"
    wait_http "$THEIR_PORT"
}

# Our relay on a fresh port with extra flags; sets OUR_PORT and OUR_INTERNAL.
our_cluster_relay() {
    local name=$1; shift
    OUR_PORT=$(free_port)
    OUR_INTERNAL=$(free_port)
    spawn "$name" "$OURS/moq-relay" --server-bind "[::]:$OUR_PORT" --tls-generate localhost \
        --web-http-listen "[::]:$OUR_PORT" --auth-public "" --internal-listen "127.0.0.1:$OUR_INTERNAL" "$@"
    wait_http "$OUR_PORT"
}

# Publish a clock with our CLI on URL as BROADCAST; sets PUB.
publish_clock() {
    bg PUB "pub-$2" "$OURS/moq" --log-level info publish clock "$1" --broadcast "$2"
    wait_log "$WORK/pub-$2.log" 'connected' 10
}

# Our `moq clock` reads LINES ticks of BROADCAST at URL: pass or fail NAME.
our_reader() {
    local name=$1 url=$2 broadcast=$3 why
    if timeout "$WAIT" "$OURS/moq" clock "$url" --broadcast "$broadcast" --count "$LINES" \
        >"$WORK/$name.out" 2>"$WORK/$name.log"; then
        if why=$(check_clock "$WORK/$name.out" "$LINES" 2>&1); then pass "$name"; else fail "$name" "$why"; fi
    else
        fail "$name" "our moq clock got $(grep -c '' "$WORK/$name.out") lines: $(plain "$WORK/$name.log" | tail -n 1 | cut -c1-200)"
    fi
}

# Their moq-clock reads LINES ticks of BROADCAST at URL: pass or fail NAME.
their_reader() {
    local name=$1 url=$2 broadcast=$3 why sub
    bg_out sub "$name" "$THEIRS/moq-clock" --url "$url" --broadcast "$broadcast" subscribe
    if wait_lines "$WORK/$name.out" "$LINES" "$WAIT"; then
        plain "$WORK/$name.out" | grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$' >"$WORK/$name.lines"
        if why=$(check_clock "$WORK/$name.lines" "$LINES" 2>&1); then pass "$name"; else fail "$name" "$why"; fi
    else
        fail "$name" "their moq-clock printed $(grep -c '' "$WORK/$name.out") lines"
    fi
    stop "$sub"
}

# --- 1. Their relay upstream: our relay dials it (WebTransport, pinned fingerprint).
their_cluster_relay their-upstream "" || { fail cluster-their-upstream "their relay did not start"; exit 1; }
T=$THEIR_PORT
FP=$(curl -sf "http://127.0.0.1:$T/certificate.sha256")
our_cluster_relay our-downstream --cluster-connect "https://localhost:$T/" --client-tls-fingerprint "$FP" ||
    { fail cluster-their-upstream "our relay did not start"; exit 1; }
O=$OUR_PORT
if wait_log "$WORK/our-downstream.log" 'cluster link up' 15; then
    pass cluster-our-relay-links-to-theirs
else
    fail cluster-our-relay-links-to-theirs "no link: $(plain "$WORK/our-downstream.log" | grep -i cluster | tail -n 1)"
fi
publish_clock "http://localhost:$T/anon" up1
our_reader cluster-their-upstream-to-our-relay "http://localhost:$O/anon" up1
stop "$PUB"
publish_clock "http://localhost:$O/anon" down1
their_reader cluster-our-relay-to-their-upstream "http://localhost:$T/anon" down1
stop "$PUB"
links=$(curl -sf "http://127.0.0.1:$OUR_INTERNAL/nodes")
if python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert any(l["state"]=="up" for l in d["links"])' "$links"; then
    pass cluster-nodes-shows-the-link
else
    fail cluster-nodes-shows-the-link "/nodes: $links"
fi

# --- 2. Our relay upstream: their relay dials ours (their [cluster] connect).
our_cluster_relay our-upstream || { fail cluster-our-upstream "our relay did not start"; exit 1; }
O=$OUR_PORT
their_cluster_relay their-downstream "[connect]
tls.insecure = true
[cluster]
connect = [\"https://localhost:$O/\"]" || { fail cluster-our-upstream "their relay did not start"; exit 1; }
T=$THEIR_PORT
if wait_log "$WORK/our-upstream.log" 'session accepted' 15; then
    pass cluster-their-relay-links-to-ours
else
    fail cluster-their-relay-links-to-ours "their relay never connected: $(plain "$WORK/their-downstream.log" | grep -iE 'error|warn' | tail -n 1)"
fi
publish_clock "http://localhost:$O/anon" up2
their_reader cluster-our-upstream-to-their-relay "http://localhost:$T/anon" up2
stop "$PUB"
publish_clock "http://localhost:$T/anon" down2
our_reader cluster-their-relay-to-our-upstream "http://localhost:$O/anon" down2
stop "$PUB"

for log in our-downstream our-upstream; do
    if plain "$WORK/$log.log" | grep -qE 'panicked|ERROR'; then
        fail "cluster-$log-clean-log" "$(plain "$WORK/$log.log" | grep -E 'panicked|ERROR' | head -n 1 | cut -c1-200)"
    fi
done
[[ $FAILED -eq 0 ]]
