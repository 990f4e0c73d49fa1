#!/usr/bin/env bash
# Clocks through our relay: the ecosystem's moq-clock (0.10.21) on both ends, on
# each moq-lite version it speaks to us (03, 04) and across them, and mixed with
# our own clock publisher and subscriber. A subscriber passes when it prints at
# least LINES well-formed "YYYY-MM-DD HH:MM:SS" lines, consecutive, ending live.
set -uo pipefail
# shellcheck source=common.bash
source "$(dirname "$0")/common.bash"

LINES=4      # lines each subscriber must print
WAIT=15      # seconds allowed for them

our_relay || { fail clock-relay "our relay did not start"; exit 1; }
URL="http://localhost:$OUR_PORT/anon"

# their_pair NAME PUB_VERSION SUB_VERSION: moq-clock → our relay → moq-clock,
# each restricted to one version (empty: offer everything), and checks the
# versions our relay negotiated with each.
their_pair() {
    local name=$1 pv=$2 sv=$3 m pub sub
    local pargs=() sargs=()
    [[ -n $pv ]] && pargs=(--client-version "$pv")
    [[ -n $sv ]] && sargs=(--client-version "$sv")
    m=$(mark "$WORK/our-relay.log")
    bg pub "$name-pub" "$THEIRS/moq-clock" --url "$URL" --broadcast "$name" "${pargs[@]}" publish
    wait_log "$WORK/$name-pub.log" 'connected' 10
    bg sub "$name-sub" "$THEIRS/moq-clock" --url "$URL" --broadcast "$name" "${sargs[@]}" subscribe
    # moq-clock writes its lines to stdout and logs to stderr; spawn mixes them.
    if ! wait_lines_matching "$WORK/$name-sub.log" "$LINES" "$WAIT"; then
        fail "$name" "their subscriber printed fewer than $LINES clock lines in ${WAIT}s"
        show "$WORK/$name-pub.log" "$WORK/$name-sub.log" "$WORK/our-relay.log"
        stop "$sub" "$pub"
        return
    fi
    clock_lines "$WORK/$name-sub.log" >"$WORK/$name.out"
    local why versions want
    if ! why=$(check_clock "$WORK/$name.out" "$LINES" 2>&1); then
        fail "$name" "$why"
    elif ! alive "$pub"; then
        fail "$name" "their publisher exited"; show "$WORK/$name-pub.log"
    else
        versions=$(our_versions "$m" | tr '\n' ' ')
        want="${pv:-moq-lite-04} ${sv:-moq-lite-04} "
        # The two sessions may be accepted in either order.
        if [[ $(tr ' ' '\n' <<<"$versions" | sort | tr '\n' ' ') != $(tr ' ' '\n' <<<"$want" | sort | tr '\n' ' ') ]]; then
            fail "$name" "our relay negotiated '$versions', wanted '$want'"
        else
            pass "$name"
        fi
    fi
    stop "$sub" "$pub"
}

# moq-clock's stdout shares the log with its stderr; keep the clock lines only.
clock_lines() { plain "$1" | grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$'; }
wait_lines_matching() {
    timeout "$3" bash -c '
        until [[ $(sed "s/\x1b\[[0-9;]*m//g" "$1" 2>/dev/null | grep -cE "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$") -ge $2 ]]; do
            sleep 0.1
        done' _ "$1" "$2"
}

# 1. Theirs on both ends, per version, and across versions.
their_pair clock-theirs-lite03 moq-lite-03 moq-lite-03
their_pair clock-theirs-lite04 moq-lite-04 moq-lite-04
their_pair clock-theirs-lite03-to-lite04 moq-lite-03 moq-lite-04
their_pair clock-theirs-lite04-to-lite03 moq-lite-04 moq-lite-03
their_pair clock-theirs-default "" ""

# 2. Their publisher → our relay → our subscriber (`moq clock`), on the newest
#    version both speak (moq-clock: 04) and with our side held to 03.
our_sub() {
    local name=$1; shift
    local pub m
    m=$(mark "$WORK/our-relay.log")
    bg pub "$name-pub" "$THEIRS/moq-clock" --url "$URL" --broadcast "$name" publish
    wait_log "$WORK/$name-pub.log" 'connected' 10
    if ! timeout "$WAIT" "$OURS/moq" "$@" clock "$URL" --broadcast "$name" --count "$LINES" \
        >"$WORK/$name.out" 2>"$WORK/$name-sub.log"; then
        fail "$name" "our moq clock failed or timed out: $(tail -n 1 "$WORK/$name-sub.log")"
        show "$WORK/$name-pub.log" "$WORK/$name-sub.log" "$WORK/our-relay.log"
    else
        local why
        if why=$(check_clock "$WORK/$name.out" "$LINES" 2>&1); then
            pass "$name ($(our_versions "$m" | tr '\n' ' ' | sed 's/ $//'))"
        else
            fail "$name" "$why"
        fi
    fi
    stop "$pub"
}
our_sub clock-their-pub-our-sub
our_sub clock-their-pub-our-sub-lite03 --version-offer moq-lite-03

# 3. Our clock publisher → our relay → their subscriber (moq-clock).
name=clock-our-pub-their-sub
bg pub "$name-pub" "$OURS/moq" --log-level info publish clock "$URL" --broadcast "$name"
wait_log "$WORK/$name-pub.log" 'connected' 10
bg sub "$name-sub" "$THEIRS/moq-clock" --url "$URL" --broadcast "$name" subscribe
if ! wait_lines_matching "$WORK/$name-sub.log" "$LINES" "$WAIT"; then
    fail "$name" "their subscriber printed fewer than $LINES clock lines in ${WAIT}s"
    show "$WORK/$name-pub.log" "$WORK/$name-sub.log" "$WORK/our-relay.log"
else
    clock_lines "$WORK/$name-sub.log" >"$WORK/$name.out"
    if why=$(check_clock "$WORK/$name.out" "$LINES" 2>&1); then pass "$name"; else fail "$name" "$why"; fi
fi
stop "$sub" "$pub"

# Our relay must have survived all of it.
alive "$OUR_RELAY_PID" || fail clock-relay-alive "our relay exited: $(plain "$WORK/our-relay.log" | tail -n 3)"

[[ $FAILED -eq 0 ]]
