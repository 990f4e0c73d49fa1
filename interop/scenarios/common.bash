# Helpers shared by the scenario scripts. Sourced, never run: `run` only picks
# up scenarios/*.sh. Sources lib.sh, which owns $WORK, $OURS, $THEIRS, spawn,
# pass/fail and the cleanup trap.
# shellcheck shell=bash
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# INTEROP_KEEP=DIR keeps a copy of this scenario's logs in DIR/<scenario>.
keep_work() {
    [[ -n ${INTEROP_KEEP:-} ]] || return 0
    local dest
    dest="$INTEROP_KEEP/$(basename "$0" .sh)"
    rm -rf "$dest" && mkdir -p "$INTEROP_KEEP" && cp -r "$WORK" "$dest"
}
trap 'keep_work; cleanup' EXIT

# lib.sh's start_*_relay run `spawn` inside them; called as `port=$(start_our_relay)`
# the spawn happens in a subshell, so its pid never reaches PIDS and the relay
# outlives the scenario. Call them in this shell instead, reading the port back
# from a file. Sets OUR_PORT / THEIR_PORT.
our_relay() {
    if [[ -n ${OUR_RELAY_LOG:-} ]]; then
        RUST_LOG=$OUR_RELAY_LOG start_our_relay >"$WORK/our-relay.port" || return 1
    else
        start_our_relay >"$WORK/our-relay.port" || return 1
    fi
    OUR_PORT=$(<"$WORK/our-relay.port")
    OUR_RELAY_PID=${PIDS[-1]}
}
their_relay() {
    start_their_relay >"$WORK/their-relay.port" || return 1
    THEIR_PORT=$(<"$WORK/their-relay.port")
    THEIR_RELAY_PID=${PIDS[-1]}
}

# Start a background process like spawn; its pid goes to the variable named $1.
#   bg VAR NAME CMD...   (output in $WORK/NAME.log)
bg() {
    local __var=$1; shift
    spawn "$@"
    printf -v "$__var" '%s' "$!"
}

# Like bg, but the command's stdout goes to $WORK/NAME.out and only its stderr
# to $WORK/NAME.log (for binary or line output that logs must not pollute).
#   bg_out VAR NAME CMD...
bg_out() {
    local __var=$1 name=$2; shift 2
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=($!)
    echo $! >>"$WORK/pids"
    printf -v "$__var" '%s' "$!"
}

# Stop one process we started (and reap it).
stop() {
    local pid
    for pid in "$@"; do
        [[ -n $pid ]] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# Wait up to SECONDS for a process we started to exit; its status, or 124 on timeout.
#   wait_exit PID SECONDS
wait_exit() {
    local pid=$1 secs=$2 i
    for ((i = 0; i < secs * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null
            return $?
        fi
        sleep 0.1
    done
    return 124
}

# Is this process still running?
alive() { kill -0 "$1" 2>/dev/null; }

# Wait up to SECONDS for FILE to hold at least N complete lines.
#   wait_lines FILE N SECONDS
wait_lines() {
    timeout "$3" bash -c 'until [[ -f $1 && $(wc -l <"$1") -ge $2 ]]; do sleep 0.1; done' _ "$1" "$2"
}

# Wait up to SECONDS for a line matching the extended regex in FILE (ANSI stripped).
#   wait_log FILE REGEX SECONDS
wait_log() {
    timeout "$3" bash -c 'until [[ -f $1 ]] && sed "s/\x1b\[[0-9;]*m//g" "$1" | grep -Eq -- "$2"; do sleep 0.1; done' _ "$1" "$2"
}

# A log without its colour codes.
plain() { sed 's/\x1b\[[0-9;]*m//g' "$@"; }

# Number of lines in a file (0 when missing); used to look only at new log lines.
mark() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }

# The lines of FILE after line MARK, colour codes stripped.
since() { tail -n +"$(($2 + 1))" "$1" | plain; }

# Print the tail of some logs to stderr, indented, after a failure.
show() {
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        echo "  --- $(basename "$f") (last 15 lines)" >&2
        plain "$f" | tail -n 15 | sed 's/^/  | /' >&2
    done
}

# The negotiated versions in our relay's log after line MARK, one per session.
#   our_versions MARK
our_versions() {
    # The event's own field, not the span's (which may repeat it, quoted).
    since "$WORK/our-relay.log" "$1" | grep 'session accepted' | sed 's/.*session accepted//' |
        grep -oE 'version=[^ ]+' | sed 's/version=//; s/"//g'
}

# Our relay's log level for scenarios that wait on subscriptions: it then logs
# "subscribed id=N broadcast=B track=T" as it starts serving each subscriber.
# Usage: OUR_RELAY_LOG=$SUBSCRIPTIONS_LOG our_relay
SUBSCRIPTIONS_LOG="info,moq_core::session::publisher=debug"

# Wait until a relay log shows COUNT subscriptions to BROADCAST/TRACK after line
# MARK: ours ("subscribed id=0 broadcast=B track=T", at $SUBSCRIPTIONS_LOG) or
# theirs ("subscribed started broadcast=anon/B track=T").
#   wait_subscribed LOG MARK BROADCAST TRACK COUNT SECONDS
wait_subscribed() {
    local log=$1 m=$2 b=$3 t=$4 n=$5 secs=$6
    timeout "$secs" bash -c '
        until [[ $(tail -n +"$(($2 + 1))" "$1" | sed "s/\[[0-9;]*m//g" |
            grep -cE "subscribed (id=[0-9]+|started) broadcast=([^ ]*/)?$3 track=$4( |\$)") -ge $5 ]]; do
            sleep 0.1
        done' _ "$log" "$m" "$b" "$t" "$n"
}

# Check a clock subscriber's output: at least N lines "YYYY-MM-DD HH:MM:SS",
# consecutive seconds in order, and the last one within a few seconds of now
# (UTC or local: the publisher's wall clock). Prints the reason on failure.
#   check_clock FILE N
check_clock() {
    python3 - "$1" "$2" <<'PY'
import datetime, re, sys
path, need = sys.argv[1], int(sys.argv[2])
lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
if len(lines) < need:
    sys.exit(f"{len(lines)} lines, wanted {need}: {lines!r}")
pat = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
bad = [l for l in lines if not pat.match(l)]
if bad:
    sys.exit(f"malformed line {bad[0]!r}")
times = [datetime.datetime.strptime(l, "%Y-%m-%d %H:%M:%S") for l in lines]
for a, b in zip(times, times[1:]):
    if (b - a).total_seconds() != 1:
        sys.exit(f"not consecutive: {a} then {b}")
now_utc = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
now_local = datetime.datetime.now()
if not any(-2 <= (now - times[-1]).total_seconds() <= 5 for now in (now_utc, now_local)):
    sys.exit(f"last line {lines[-1]} is not live (now {now_utc:%H:%M:%S} UTC)")
PY
}
