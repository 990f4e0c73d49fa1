#!/usr/bin/env bash
# The impaired-network topology for benchmarks: two network namespaces joined by two veth pairs.
#
#   NAME-relay                                   NAME-view
#   pub0  10.201.1.1/24  <-- clean veth -->      pub1  10.201.1.2/24   (publishers)
#   view0 10.201.2.1/24  <-- impaired veth -->   view1 10.201.2.2/24   (viewers)
#
# The relay runs in NAME-relay and listens on both addresses; moq-bench runs in NAME-view, its
# publishers dial 10.201.1.1 and its viewers dial the impaired side (through moq-netem proxy for
# delay and jitter, which this kernel's missing `tc netem` cannot do). `impair` puts a tbf
# bottleneck on the relay's view0 (relay -> viewers) and nftables random loss on view0 and view1
# (both directions). Everything lives inside the two namespaces; the host is never touched.
#
# Caveat on --loss: a sender using UDP GSO (quinn does) hands the kernel super-packets of up to
# 64 KB that stay whole through veth and netfilter, so `numgen random` drops bursts of datagrams,
# not independent ones. For per-datagram loss use moq-netem proxy's loss= instead.
#
#   bench/netns.sh check                 what this machine can do (exit 1 if namespaces are unusable)
#   bench/netns.sh up NAME               create (NAME should start with mqn-<pid>- of the owner, so
#                                        a later lab sweeps it if the owner dies without cleaning up)
#   bench/netns.sh impair NAME [--rate 4mbit] [--burst 16000] [--limit 50000] [--loss 1%]
#   bench/netns.sh clear NAME            remove the bottleneck and the loss
#   bench/netns.sh exec NAME relay|view CMD...
#   bench/netns.sh down NAME             kill what runs inside, delete both namespaces
#
# With `up`, a trap removes the namespaces again if creating them fails half way.
set -euo pipefail

die() { echo "netns.sh: $*" >&2; exit 1; }

check() {
    local ok=1
    if [[ $(id -u) != 0 ]]; then echo "skip: not root (uid $(id -u)): namespaces, tc and nft need root"; ok=0; fi
    for tool in ip tc nft; do
        command -v "$tool" >/dev/null || { echo "skip: '$tool' missing (apt-get install iproute2 nftables)"; ok=0; }
    done
    if [[ $ok == 1 ]]; then
        local probe="mqn-$$-check"
        if ip netns add "$probe" 2>/dev/null; then
            if ip netns exec "$probe" tc qdisc add dev lo root netem delay 1ms 2>/dev/null; then
                echo "tc netem: available (unused: the proxy adds delay)"
            else
                echo "tc netem: not available here; delay, jitter and reordering come from moq-netem proxy"
            fi
            if ip netns exec "$probe" tc qdisc replace dev lo root tbf rate 1mbit burst 4000 limit 8000 2>/dev/null; then
                echo "tc tbf: available"
            else
                echo "skip: tc tbf does not work here"; ok=0
            fi
            if ip netns exec "$probe" nft add table inet probe 2>/dev/null; then
                echo "nft: available"
            else
                echo "skip: nftables does not work here"; ok=0
            fi
            ip netns del "$probe"
        else
            echo "skip: cannot create a network namespace (container without CAP_SYS_ADMIN?)"; ok=0
        fi
    fi
    [[ $ok == 1 ]] && echo "ok: impaired-network benchmarks can run" && return 0
    return 1
}

down() {
    local name=$1 ns pid
    for ns in "$name-relay" "$name-view"; do
        ip netns list | grep -qw -- "$ns" || continue
        # Only our own processes run in our namespaces.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
        sleep 0.2
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" || true
    done
}

up() {
    local name=$1 r="$1-relay" v="$1-view"
    trap 'down "$name"' ERR
    ip netns add "$r"
    ip netns add "$v"
    ip -n "$r" link set lo up
    ip -n "$v" link set lo up
    ip -n "$r" link add pub0 type veth peer name pub1 netns "$v"
    ip -n "$r" link add view0 type veth peer name view1 netns "$v"
    ip -n "$r" addr add 10.201.1.1/24 dev pub0
    ip -n "$v" addr add 10.201.1.2/24 dev pub1
    ip -n "$r" addr add 10.201.2.1/24 dev view0
    ip -n "$v" addr add 10.201.2.2/24 dev view1
    for dev in pub0 view0; do ip -n "$r" link set "$dev" up; done
    for dev in pub1 view1; do ip -n "$v" link set "$dev" up; done
    trap - ERR
}

clear_impairments() {
    local name=$1
    ip netns exec "$name-relay" tc qdisc del dev view0 root 2>/dev/null || true
    ip netns exec "$name-relay" nft delete table inet netem 2>/dev/null || true
    ip netns exec "$name-view" nft delete table inet netem 2>/dev/null || true
}

loss_rule() {  # NS DEV PPM
    ip netns exec "$1" nft -f - <<EOF
table inet netem {
  chain egress { type filter hook postrouting priority 0; policy accept; }
}
add rule inet netem egress oifname "$2" numgen random mod 1000000 < $3 counter drop
EOF
}

impair() {
    local name=$1; shift
    local rate="" burst=16000 limit=50000 loss=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --rate) rate=$2; shift 2 ;;
            --burst) burst=$2; shift 2 ;;
            --limit) limit=$2; shift 2 ;;
            --loss) loss=$2; shift 2 ;;
            *) die "impair: unknown option '$1'" ;;
        esac
    done
    clear_impairments "$name"
    if [[ -n $rate ]]; then
        ip netns exec "$name-relay" tc qdisc replace dev view0 root tbf rate "$rate" burst "$burst" limit "$limit"
    fi
    if [[ -n $loss ]]; then
        local ppm
        ppm=$(python3 -c "import sys; v=sys.argv[1]; f=float(v[:-1])/100 if v.endswith('%') else float(v); print(round(f*1e6))" "$loss")
        loss_rule "$name-relay" view0 "$ppm"
        loss_rule "$name-view" view1 "$ppm"
    fi
}

cmd=${1:-}
[[ -n $cmd ]] || die "usage: netns.sh check | up NAME | impair NAME ... | clear NAME | exec NAME relay|view CMD... | down NAME"
shift
case $cmd in
    check) check ;;
    up) [[ $# == 1 ]] || die "up NAME"; up "$1" ;;
    down) [[ $# == 1 ]] || die "down NAME"; down "$1" ;;
    impair) [[ $# -ge 1 ]] || die "impair NAME [options]"; impair "$@" ;;
    clear) [[ $# == 1 ]] || die "clear NAME"; clear_impairments "$1" ;;
    exec)
        [[ $# -ge 3 ]] || die "exec NAME relay|view CMD..."
        name=$1 side=$2; shift 2
        exec ip netns exec "$name-$side" "$@" ;;
    *) die "unknown command '$cmd'" ;;
esac
