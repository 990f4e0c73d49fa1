#!/usr/bin/env bash
# A whole moq-relay cluster on loopback: 1 root, 2 origins, 2 regionals, 3 edges.
#
#   bash deploy/cluster/demo.sh                  # run until Ctrl-C, printing a viewer's clock
#   bash deploy/cluster/demo.sh --duration 15    # run 15 s, exit 0 only if every edge's viewer got ticks
#
#   origin-1 (1001) ◄── regional-1 (2001) ◄── edge-1 (3001)
#                   ╲ ╱  cost 1 near,    ◄── edge-2 (3002)  cost 1, and cost 10 to regional-2
#                   ╱ ╲  cost 2 far
#   origin-2 (1002) ◄── regional-2 (2002) ◄── edge-3 (3003)
#   (arrows: who dials whom; every relay also registers with the root, id 1)
#
# Each relay listens on its own loopback address (127.0.99.N, UDP port 4443; internal
# listener on TCP 9090 of the same address) and runs from a config generated into a
# temporary directory with the same tables as deploy/examples/{root,origin,regional,edge}.toml:
# JWT auth (a key made with `moq token generate`), a cluster token for the links, publishers
# allowed on the origins with their own token, anonymous viewing under public/ on the edges,
# and certificates from a throwaway CA made with openssl (every relay verifies its peers
# against it). Without openssl, relays use self-signed certificates and skip verification
# of their peers ([client.tls] disable_verify), which is only acceptable on loopback.
#
# A clock is published to origin-1 and watched on every edge anonymously. Then /nodes of
# edge-2 is printed. Everything stops on exit or Ctrl-C.
#
# Options:
#   --duration SECONDS  watch for this long, then stop; exit 0 if the viewer on every edge
#                       received clock ticks up to the end, non-zero otherwise
#   --keep              keep the temporary directory (configs, logs, keys) after exit
#   --net A.B.C         loopback /24 to use (default 127.0.99; MOQ_DEMO_NET)
#   --port N            UDP port of every relay (default 4443; MOQ_DEMO_PORT)
# Binaries: MOQ_RELAY and MOQ_CLI, else built with `cargo build --release` (into
# $CARGO_TARGET_DIR, default target/).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=
KEEP=0
NET=${MOQ_DEMO_NET:-127.0.99}
PORT=${MOQ_DEMO_PORT:-4443}
IPORT=9090

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
    --duration=*) DURATION=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    --net) NET=${2:?}; shift 2 ;;
    --port) PORT=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -n $DURATION && ! $DURATION =~ ^[0-9]+$ ]]; then
  echo "--duration takes whole seconds" >&2; exit 2
fi

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------ binaries
RELAY=${MOQ_RELAY:-}
CLI=${MOQ_CLI:-}
if [[ -z $RELAY || -z $CLI ]]; then
  TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
  say "building moq-relay and moq (cargo build --release, target $TARGET)"
  (cd "$ROOT" && cargo build --release --quiet -p moq-relay -p moq-cli) || die "build failed"
  RELAY=${RELAY:-$TARGET/release/moq-relay}
  CLI=${CLI:-$TARGET/release/moq}
fi
[[ -x $RELAY ]] || die "moq-relay not found at $RELAY (set MOQ_RELAY)"
[[ -x $CLI ]] || die "moq not found at $CLI (set MOQ_CLI)"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed (to read /nodes)"

# ------------------------------------------------------------------------------ cleanup
DIR=$(mktemp -d "${TMPDIR:-/tmp}/moq-cluster-demo.XXXXXX")
PIDS=()
cleanup() {
  local status=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $KEEP -eq 1 ]]; then
    echo "kept $DIR (configs, logs, keys)"
  else
    rm -rf "$DIR"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'echo; echo "stopping"; exit 130' INT TERM

# ------------------------------------------------------------------------------ layout
# name id address links(url-suffixes "name:cost")
declare -A ID=( [root]=1 [origin-1]=1001 [origin-2]=1002 [regional-1]=2001 [regional-2]=2002
                [edge-1]=3001 [edge-2]=3002 [edge-3]=3003 )
declare -A HOST=( [root]=1 [origin-1]=11 [origin-2]=12 [regional-1]=21 [regional-2]=22
                  [edge-1]=31 [edge-2]=32 [edge-3]=33 )
declare -A LINKS=( [regional-1]="origin-1:1 origin-2:2" [regional-2]="origin-2:1 origin-1:2"
                   [edge-1]="regional-1:1" [edge-2]="regional-1:1 regional-2:10"
                   [edge-3]="regional-2:1" )
ORDER=(root origin-1 origin-2 regional-1 regional-2 edge-1 edge-2 edge-3)
EDGES=(edge-1 edge-2 edge-3)
ip() { echo "$NET.${HOST[$1]}"; }
url() { echo "https://$(ip "$1"):$PORT/"; }
internal() { echo "http://$(ip "$1"):$IPORT"; }

for name in "${ORDER[@]}"; do
  if curl -s -o /dev/null --max-time 1 "$(internal "$name")/health"; then
    die "something already answers on $(internal "$name"): another demo running? (try --net 127.0.98)"
  fi
done

# ------------------------------------------------------------------------------ secrets
say "keys, tokens and certificates in $DIR"
mkdir -p "$DIR/keys" "$DIR/issuer" "$DIR/tls" "$DIR/logs"
# The issuer's key pair: relays get only the public half (key_dir: <kid>.jwk).
"$CLI" token generate --algorithm ES256 --id demo --out "$DIR/issuer/demo.jwk" \
  --public "$DIR/keys/demo.jwk" >/dev/null
# The cluster token: every path, publish and subscribe (links and directory sessions).
"$CLI" token sign --key "$DIR/issuer/demo.jwk" --root "" --publish "" --subscribe "" \
  --expires 30d >"$DIR/cluster.jwt"
# The publisher's token: publish under public/ only.
"$CLI" token sign --key "$DIR/issuer/demo.jwk" --root public --publish "" \
  --expires 1d >"$DIR/publisher.jwt"
chmod 0600 "$DIR/cluster.jwt" "$DIR/publisher.jwt"

TLS_MODE=ca
CLI_TLS=(--tls-root "$DIR/tls/ca.pem")
if command -v openssl >/dev/null; then
  (
    cd "$DIR/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=moq cluster demo CA" -keyout ca.key -out ca.pem \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    for name in "${ORDER[@]}"; do
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -keyout "$name.key" -out "$name.csr" 2>/dev/null
      printf 'subjectAltName=IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$(ip "$name")" >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$name.ext" -out "$name.pem" 2>/dev/null
    done
  ) || die "openssl could not make the demo certificates"
else
  TLS_MODE=insecure
  CLI_TLS=(--tls-insecure)
  echo "openssl not found: self-signed certificates, peers not verified (loopback only)"
fi

# ------------------------------------------------------------------------------ configs
config() {
  local name=$1 role=${1%%-*} a
  a=$(ip "$name")
  echo "# $name: a $role relay of the loopback demo (see deploy/examples/$role.toml)."
  echo 'drain_timeout = "1s"'
  echo
  echo '[log]'
  echo 'level = "info"'
  echo 'format = "human"'
  echo
  echo '[server]'
  echo "listen = \"$a:$PORT\""
  echo
  echo '[server.tls]'
  if [[ $TLS_MODE == ca ]]; then
    echo "cert = [\"$DIR/tls/$name.pem\"]"
    echo "key = [\"$DIR/tls/$name.key\"]"
  else
    echo "generate = [\"$a\", \"localhost\"]"
  fi
  echo
  echo '[internal]'
  echo "listen = \"$a:$IPORT\""
  echo
  echo '[auth]'
  echo "key_dir = \"$DIR/keys\""
  if [[ $role == edge ]]; then
    echo '# Anyone may watch under public/; nobody publishes anonymously.'
    echo 'public = { subscribe = ["public"], publish = [] }'
  fi
  echo
  echo '[client.tls]'
  if [[ $TLS_MODE == ca ]]; then
    echo "root = [\"$DIR/tls/ca.pem\"]"
  else
    echo 'disable_verify = true'
  fi
  echo
  echo '[limits]'
  echo '# Every demo process shares one address per relay; do not rate-limit ourselves.'
  echo 'connections_per_second_per_ip = 1000'
  echo
  echo '[cluster]'
  echo "id = ${ID[$name]}"
  echo "node = \"$(url "$name")\""
  echo "root = [\"$(url root)\"]"
  local links=() link
  for link in ${LINKS[$name]:-}; do
    links+=("\"$(url "${link%%:*}")?cost=${link##*:}\"")
  done
  echo "connect = [$(IFS=,; echo "${links[*]}" | sed 's/,/, /g')]"
  echo "token = \"$DIR/cluster.jwt\""
  echo 'allow = ["127.0.99.0/24"]'
  echo
  echo '[cache]'
  echo 'capacity = "64MiB"'
  echo 'duration = "10s"'
}

for name in "${ORDER[@]}"; do
  config "$name" >"$DIR/$name.toml"
  "$RELAY" --check "$DIR/$name.toml" >"$DIR/logs/$name.check" 2>&1 ||
    { cat "$DIR/logs/$name.check" >&2; die "$name.toml does not validate"; }
  if grep -q '^warning:' "$DIR/logs/$name.check"; then
    cat "$DIR/logs/$name.check" >&2; die "$name.toml: warnings"
  fi
done

# ------------------------------------------------------------------------------ start
say "starting 8 relays"
for name in "${ORDER[@]}"; do
  "$RELAY" "$DIR/$name.toml" >"$DIR/logs/$name.log" 2>&1 &
  PIDS+=($!)
done
for name in "${ORDER[@]}"; do
  up=0
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$(internal "$name")/health" 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  [[ $up -eq 1 ]] || { tail -20 "$DIR/logs/$name.log" >&2; die "$name did not start"; }
done

printf '\n  %-11s %-6s %-28s %s\n' relay id URL internal
for name in "${ORDER[@]}"; do
  printf '  %-11s %-6s %-28s %s\n' "$name" "${ID[$name]}" "$(url "$name")" "$(internal "$name")/nodes"
done
echo

# Count this relay's links of a kind that are up.
links_up() {
  curl -fsS "$(internal "$1")/nodes" 2>/dev/null | python3 -c '
import json, sys
nodes = json.load(sys.stdin)
print(sum(1 for l in nodes["links"] if l["kind"] == sys.argv[1] and l["state"] == "up"))
' "$2" 2>/dev/null || echo 0
}
# Whether this relay has a route to a broadcast path.
has_route() {
  curl -fsS "$(internal "$1")/nodes" 2>/dev/null | python3 -c '
import json, sys
nodes = json.load(sys.stdin)
sys.exit(0 if any(r["path"] == sys.argv[1] and r["via"] == "link" for r in nodes["routes"]) else 1)
' "$2" 2>/dev/null
}
# Poll a command for up to 20 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 200); do
    "$@" && return 0
    sleep 0.1
  done
  echo "demo: timed out waiting for $what" >&2
  return 1
}
links_ready() {
  local name=$1 want
  want=$(wc -w <<<"${LINKS[$name]:-}")
  [[ $(links_up "$name" static) -ge $want ]] || return 1
  [[ $name == root ]] || [[ $(links_up "$name" root) -ge 1 ]]
}

say "waiting for every link to be up (static links and directory sessions to the root)"
for name in "${ORDER[@]}"; do
  wait_for "$name's links" links_ready "$name" || { tail -20 "$DIR/logs/$name.log" >&2; exit 1; }
done
grep -h "cluster link up" "$DIR"/logs/*.log | head -3 | sed 's/^/  /'
echo "  ... $(cat "$DIR"/logs/*.log | grep -c "cluster link up") \"cluster link up\" lines in all"

# ------------------------------------------------------------------------------ publish
say "publishing a clock to origin-1 as public/clock (publisher token)"
echo "  $CLI publish clock '$(url origin-1)public?jwt=…' --broadcast clock"
"$CLI" "${CLI_TLS[@]}" publish clock "$(url origin-1)public?jwt=$(cat "$DIR/publisher.jwt")" \
  --broadcast clock >"$DIR/logs/publisher.log" 2>&1 &
PIDS+=($!)
PUBLISHER=$!
for edge in "${EDGES[@]}"; do
  wait_for "a route to public/clock on $edge" has_route "$edge" public/clock ||
    { cat "$DIR/logs/publisher.log" >&2; exit 1; }
done

# ------------------------------------------------------------------------------ watch
say "watching the clock on every edge, anonymously (public/ is free to watch there)"
declare -A VIEWER=()
for edge in "${EDGES[@]}"; do
  echo "  $CLI clock $(url "$edge")public --broadcast clock"
  "$CLI" "${CLI_TLS[@]}" clock "$(url "$edge")public" --broadcast clock \
    >"$DIR/logs/viewer-$edge.out" 2>"$DIR/logs/viewer-$edge.log" &
  PIDS+=($!)
  VIEWER[$edge]=$!
done

show_nodes() {
  say "curl $(internal edge-2)/nodes"
  curl -fsS "$(internal edge-2)/nodes" | python3 -m json.tool || echo "  (edge-2 is not answering)"
  say "route to public/clock (hops: relay ids it came through) and upstream subscriptions"
  printf '  %-11s %-22s %-5s %s\n' relay hops cost upstream
  for name in "${ORDER[@]}"; do
    curl -fsS "$(internal "$name")/nodes" 2>/dev/null | python3 -c '
import json, sys
n = json.load(sys.stdin)
r = [r for r in n["routes"] if r["path"] == "public/clock"]
hops = ",".join(r[0]["hops"]) or "(published here)" if r else "-"
cost = str(r[0]["cost"]) if r else "-"
print("  %-11s %-22s %-5s %s" % (sys.argv[1], hops, cost, n["upstream_subscriptions"]))
' "$name" 2>/dev/null || printf '  %-11s (not answering)\n' "$name"
  done
}

if [[ -z $DURATION ]]; then
  sleep 3
  show_nodes
  say "edge-1's viewer (Ctrl-C stops the whole cluster; logs in $DIR/logs)"
  tail -n +1 -f "$DIR/logs/viewer-edge-1.out" &
  PIDS+=($!)
  wait "$PUBLISHER"
  die "the publisher stopped: $(tail -3 "$DIR/logs/publisher.log")"
fi

sleep "$DURATION"
show_nodes
say "result after ${DURATION}s"
failed=0
now=$(date +%s)
for edge in "${EDGES[@]}"; do
  out=$DIR/logs/viewer-$edge.out
  ticks=$(grep -cE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$' "$out" || true)
  last=$(grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$' "$out" | tail -1)
  age=999
  [[ -n $last ]] && age=$(( now - $(date -d "$last" +%s) ))
  # Ticks arrived, and the latest is recent: the viewer was still receiving at the end.
  if [[ $ticks -ge 2 ]] && (( age <= 3 )) && kill -0 "${VIEWER[$edge]}" 2>/dev/null; then
    echo "  ok    $edge: $ticks ticks, last '$last'"
  else
    echo "  FAIL  $edge: $ticks ticks, last '${last:-none}' (${age}s old)"
    sed 's/^/        /' "$DIR/logs/viewer-$edge.log" | tail -5
    failed=1
  fi
done
if [[ $failed -ne 0 ]]; then
  for name in "${ORDER[@]}"; do
    echo "--- $name.log (tail)"; tail -8 "$DIR/logs/$name.log"
  done
  echo "--- publisher.log"; tail -5 "$DIR/logs/publisher.log"
  exit 1
fi
echo "every edge received the clock"
