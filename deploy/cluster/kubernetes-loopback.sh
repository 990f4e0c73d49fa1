#!/usr/bin/env bash
# The Kubernetes recipe's cluster wiring, run on loopback: the relay.toml of the root
# StatefulSet and of the edge Deployment (deploy/kubernetes, rendered by
# deploy/check-kubernetes.py) with the pods' environment, 2 roots and 3 edges, each on its
# own 127.0.97.N address standing in for a pod IP.
#
#   bash deploy/cluster/kubernetes-loopback.sh        # exit 0 if the clock crossed edges
#
# Only what a cluster provides is substituted: pod IPs (POD_IP, and the wildcard listen
# addresses bound to it), the roots' DNS names (moq-root-N.moq-root.moq-relay.svc → the
# root's address), the pod CIDR in [cluster] allow, and the mounted Secrets (a cluster
# certificate whose real SHA-256 goes into MOQ_CLIENT_TLS_FINGERPRINT, a public
# certificate, a signing key and a cluster token). Everything else (the cluster keys, the
# certificate order, the pinning, the token file) is the recipe's own.
#
# A clock is published to edge 1 and must reach a viewer on edges 2 and 3: they find it in
# the roots' directory and dial edge 1 by its pod IP, pinning the cluster certificate.
# Binaries: MOQ_RELAY and MOQ_CLI (else target/release). PYTHON: a python3 with PyYAML.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RELAY=${MOQ_RELAY:-$ROOT/target/release/moq-relay}
CLI=${MOQ_CLI:-$ROOT/target/release/moq}
PYTHON=${PYTHON:-python3}
NET=${MOQ_K8S_NET:-127.0.97}
[[ -x $RELAY && -x $CLI ]] || { echo "set MOQ_RELAY and MOQ_CLI (or build target/release)" >&2; exit 1; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/moq-k8s-loopback.XXXXXX")
PIDS=()
cleanup() {
  local status=$? pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $status -ne 0 ]]; then
    for log in "$DIR"/logs/*.log; do echo "--- $(basename "$log") (tail)"; tail -6 "$log"; done
  fi
  rm -rf "$DIR"
  exit "$status"
}
trap cleanup EXIT

# The recipe, rendered: moq-root.toml/.env and moq-relay.toml/.env.
"$PYTHON" "$ROOT/deploy/check-kubernetes.py" "$ROOT/deploy/kubernetes" "$DIR/recipe" >"$DIR/check.out" ||
  { cat "$DIR/check.out" >&2; exit 1; }

# The Secrets, as they would be mounted under /etc/moq-relay.
etc=$DIR/etc
mkdir -p "$etc/cluster" "$etc/tls" "$etc/keys" "$DIR/logs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=moq-relay-cluster -keyout "$etc/cluster/tls.key" -out "$etc/cluster/tls.crt" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=relay.example.net -addext subjectAltName=DNS:relay.example.net \
  -keyout "$etc/tls/tls.key" -out "$etc/tls/tls.crt" 2>/dev/null
FINGERPRINT=$(openssl x509 -in "$etc/cluster/tls.crt" -outform DER | sha256sum | cut -d' ' -f1)
"$CLI" token generate --algorithm ES256 --id k8s --out "$DIR/issuer.jwk" --public "$etc/keys/k8s.jwk" >/dev/null 2>&1
"$CLI" token sign --key "$DIR/issuer.jwk" --root "" --publish "" --subscribe "" --expires 30d \
  >"$etc/cluster/cluster.jwt"
"$CLI" token sign --key "$DIR/issuer.jwk" --root public --publish "" --expires 1d >"$DIR/publisher.jwt"

# One relay: its tier's relay.toml and env with this pod's address.
declare -A ADDR=([moq-root-0]=$NET.1 [moq-root-1]=$NET.2 [edge-1]=$NET.11 [edge-2]=$NET.12 [edge-3]=$NET.13)
start() {
  local pod=$1 tier=$2 ip=${ADDR[$1]} toml=$DIR/$1.toml
  sed -e "s#/etc/moq-relay#$etc#g" \
      -e "s#\[::\]:\([0-9]*\)#$ip:\1#g" \
      -e "s#moq-root-0\.moq-root\.moq-relay\.svc#${ADDR[moq-root-0]}#g" \
      -e "s#moq-root-1\.moq-root\.moq-relay\.svc#${ADDR[moq-root-1]}#g" \
      -e "s#\"10\.0\.0\.0/8\"#\"127.0.0.0/8\"#" \
      -e 's#^drain_timeout = .*#drain_timeout = "1s"#' \
      "$DIR/recipe/$tier.toml" >"$toml"
  local -a envs=()
  local line
  while IFS= read -r line; do
    line=${line//10.1.2.3/$ip}
    line=${line//moq-root-0.moq-root.moq-relay.svc/$ip}
    [[ $line == MOQ_CLIENT_TLS_FINGERPRINT=* ]] && line=MOQ_CLIENT_TLS_FINGERPRINT=$FINGERPRINT
    [[ $line == POD_NAME=* ]] && line=POD_NAME=$pod
    envs+=("$line")
  done <"$DIR/recipe/$tier.env"
  env "${envs[@]}" "$RELAY" "$toml" >"$DIR/logs/$pod.log" 2>&1 &
  PIDS+=($!)
}
start moq-root-0 moq-root
start moq-root-1 moq-root
for edge in edge-1 edge-2 edge-3; do start "$edge" moq-relay; done

# Poll until a condition holds (20 s at most).
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 200); do
    "$@" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2
  return 1
}
ready() { curl -fsS -o /dev/null "http://${ADDR[$1]}:9090/ready" 2>/dev/null; }
# Every pod ready: the roots linked to each other, every edge to a root.
for pod in moq-root-0 moq-root-1 edge-1 edge-2 edge-3; do
  wait_for "$pod to be ready (/ready)" ready "$pod"
done
echo "ok: 2 roots and 3 edges ready (each has a cluster link up)"

"$CLI" --tls-fingerprint "$FINGERPRINT" publish clock \
  "https://${ADDR[edge-1]}:4443/public?jwt=$(cat "$DIR/publisher.jwt")" --broadcast clock \
  >"$DIR/logs/publisher.log" 2>&1 &
PIDS+=($!)
for edge in edge-2 edge-3; do
  timeout 20 "$CLI" --tls-fingerprint "$FINGERPRINT" clock "https://${ADDR[$edge]}:4443/public" \
    --broadcast clock --count 2 >"$DIR/logs/viewer-$edge.log" 2>&1 ||
    { echo "FAIL: no clock on $edge" >&2; cat "$DIR/logs/viewer-$edge.log" >&2; exit 1; }
  echo "ok: a clock published to edge-1 reached a viewer on $edge"
done
curl -fsS "http://${ADDR[edge-2]}:9090/nodes" | "$PYTHON" -c '
import json, sys
links = json.load(sys.stdin)["links"]
kinds = sorted({(l["kind"], l["state"]) for l in links})
print("ok: edge-2 links:", ", ".join(f"{k} {s}" for k, s in kinds))
sys.exit(0 if ("on-demand", "up") in kinds else 1)'
