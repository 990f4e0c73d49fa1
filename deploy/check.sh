#!/usr/bin/env bash
# Validate the operations surface in deploy/: one command, non-zero on any failure.
#
#   bash deploy/check.sh
#
# Checks:
#   examples    moq-relay --check on every deploy/examples/*.toml and on the Kubernetes
#               ConfigMap's relay.toml; a warning counts as a failure
#   prometheus  promtool check rules, test rules, check config (the example scrape
#               config); the rules use only known metrics; every alert's runbook is a
#               section of docs/operations.md
#   grafana     the dashboard is JSON, every panel has targets, every target names known
#               metrics, and every query parses (promtool)
#   kubernetes  renders the kustomization (kubectl kustomize if kubectl exists, else
#               deploy/check-kubernetes.py's own renderer) and checks the rendered recipe:
#               apiVersion/kind/metadata, the root StatefulSet and its headless Service,
#               edges whose [cluster] root names its pods and whose node URL comes from the
#               pod IP, ports (Service, container, relay.toml), probes on the internal port,
#               the cluster token in a Secret, cache as a share of the memory limit, grace
#               period > drain_timeout, PDB, HPA, NetworkPolicies; that the checker rejects
#               16 broken variants; moq-relay --check on each tier's relay.toml with the
#               pod's env (unknown MOQ_* variables fail); schema validation
#               (kubernetes-validate, strict, Kubernetes 1.26 and the newest it knows)
#   systemd     systemd-analyze verify (any message fails), exposure score, TimeoutStopSec >
#               drain_timeout
#   container   Containerfile: exec-form JSON, COPY sources exist, non-root USER, EXPOSE,
#               HEALTHCHECK
#   smoke       runs the relay from deploy/examples/dev.toml on free loopback ports: the
#               container HEALTHCHECK command, /health, /ready, a clock through the relay,
#               that every metric the rules and the dashboard use is exported, that SIGHUP
#               reloads and SIGTERM drains and exits 0; under strace, that the unit's
#               SystemCallFilter and RestrictAddressFamilies allow everything it did
#   cluster     deploy/cluster/demo.sh --duration 15: a root, 2 origins, 2 regionals and 3
#               edges on 127.0.99.x; a clock published to one origin must reach a viewer on
#               every edge; deploy/cluster/kubernetes-loopback.sh: the Kubernetes
#               recipe's root and edge relay.toml with the pods' env, 2 roots and 3 edges on
#               127.0.97.x; a clock published to one edge must reach viewers on the others
#
# Installs what is missing: Debian's prometheus package (for promtool; its service is not
# left running or enabled), strace, python3-venv, and kubernetes-validate + PyYAML from PyPI into a
# venv under ~/.cache/moq-relay-deploy-check. Builds moq-relay and moq with cargo (release)
# unless MOQ_RELAY and MOQ_CLI point at binaries. Idempotent; safe to re-run.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY=$ROOT/deploy
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/moq-relay-deploy-check
KUBERNETES_VALIDATE_VERSION=1.37.0
# Oldest Kubernetes the manifests support (mixed-protocol LoadBalancer Services are GA in 1.26).
KUBERNETES_MIN=1.26.0
TMP=$(mktemp -d)
RELAY_PID=
WAIT_PID=
cleanup() {
  local pid
  for pid in $RELAY_PID $WAIT_PID; do
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

# Every metric the relay exports that rules and dashboards may use. A name used in
# deploy/prometheus or deploy/grafana that is not here (nor external, below) fails.
RELAY_METRICS=(
  moq_relay_build_info moq_relay_ready
  moq_relay_sessions_active moq_relay_sessions_total moq_relay_sessions_refused_total
  moq_relay_auth_failures_total
  moq_relay_bytes_received_total moq_relay_bytes_sent_total
  moq_relay_frames_received_total moq_relay_frames_sent_total
  moq_relay_groups_received_total moq_relay_groups_sent_total
  moq_relay_subscriptions_active moq_relay_subscriptions_total moq_relay_broadcasts_active
  moq_relay_cache_bytes moq_relay_cache_evicted_bytes_total moq_relay_cache_evicted_groups_total
  moq_relay_quic_rtt_seconds moq_relay_quic_congestion_window_bytes moq_relay_quic_lost_packets_total
  moq_relay_tls_certificate_expiry_timestamp_seconds moq_relay_certificate_expiry_seconds
  moq_relay_tls_certificate_reload_failures_total moq_relay_not_ready
  moq_relay_cluster_links moq_relay_cluster_link_downs_total
  moq_relay_cluster_token_expiry_timestamp_seconds
  process_cpu_seconds_total process_resident_memory_bytes process_open_fds process_max_fds
)
# Metrics only a relay with [server.tls.acme] exports: the rules may use them, the smoke
# test (a development relay) does not expect them.
ACME_METRICS=(
  moq_relay_acme_orders_total moq_relay_acme_consecutive_failures
  moq_relay_acme_next_attempt_timestamp_seconds
)
# Metrics from other exporters the rules may use (Prometheus itself, cAdvisor,
# kube-state-metrics, node_exporter).
EXTERNAL_METRICS=(
  up container_cpu_usage_seconds_total container_memory_working_set_bytes
  kube_pod_container_resource_limits node_cpu_seconds_total node_memory_MemTotal_bytes
)

declare -a SUMMARY=()
FAILED=0
pass() { SUMMARY+=("PASS  $1"); echo "ok:   $1"; }
fail() { SUMMARY+=("FAIL  $1"); echo "FAIL: $1" >&2; FAILED=1; }
skip() { SUMMARY+=("SKIP  $1"); echo "skip: $1"; }
section() { echo; echo "== $1"; }

# Run a command quietly; on failure show its output and record the failure.
check() {
  local name=$1; shift
  if "$@" >"$TMP/out" 2>&1; then
    pass "$name"
  else
    cat "$TMP/out" >&2
    fail "$name"
  fi
}

SUDO=
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO=sudo; fi
APT_UPDATED=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "apt-get not found: install $* by hand" >&2
    return 1
  fi
  if [[ $APT_UPDATED -eq 0 ]]; then
    $SUDO apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# ------------------------------------------------------------------------------- tools
section "tools"

if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian package prometheus; its service is kept stopped)"
  # policy-rc.d (Debian's hook) stops the package from starting the service on install.
  POLICY=/usr/sbin/policy-rc.d
  OWN_POLICY=0
  if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null && $SUDO chmod 0755 "$POLICY" && OWN_POLICY=1
  fi
  apt_install prometheus >"$TMP/apt.log" 2>&1 || { cat "$TMP/apt.log" >&2; }
  [[ $OWN_POLICY -eq 1 ]] && $SUDO rm -f "$POLICY"
  if command -v systemctl >/dev/null; then
    if [[ -d /run/systemd/system ]]; then
      $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    else
      $SUDO systemctl disable prometheus.service >/dev/null 2>&1 || true
    fi
  fi
fi
if command -v promtool >/dev/null; then
  pass "promtool: $(promtool --version 2>&1 | head -1)"
else
  fail "promtool not available (apt-get install prometheus failed)"
fi

VENV=$CACHE/venv
PY=$VENV/bin/python
if [[ ! -x $PY ]] || ! "$PY" -c 'import yaml, kubernetes_validate' 2>/dev/null; then
  echo "preparing $VENV (PyYAML, kubernetes-validate $KUBERNETES_VALIDATE_VERSION)"
  mkdir -p "$CACHE"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    apt_install python3-venv >"$TMP/apt.log" 2>&1 || cat "$TMP/apt.log" >&2
    python3 -m venv "$VENV" >/dev/null 2>&1 || true
  fi
  if [[ -x $VENV/bin/pip ]]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check \
      pyyaml "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >"$TMP/pip.log" 2>&1 || cat "$TMP/pip.log" >&2
  fi
fi
if [[ -x $PY ]] && "$PY" -c 'import yaml, kubernetes_validate' 2>/dev/null; then
  pass "python venv with PyYAML and kubernetes-validate"
else
  fail "python venv with PyYAML and kubernetes-validate could not be prepared"
  PY=
fi

RELAY=${MOQ_RELAY:-}
CLI=${MOQ_CLI:-}
if [[ -z $RELAY || -z $CLI ]]; then
  if command -v cargo >/dev/null; then
    echo "building moq-relay and moq (cargo build --release)"
    if (cd "$ROOT" && cargo build --release --quiet -p moq-relay -p moq-cli) >"$TMP/build.log" 2>&1; then
      RELAY=${RELAY:-$ROOT/target/release/moq-relay}
      CLI=${CLI:-$ROOT/target/release/moq}
    else
      cat "$TMP/build.log" >&2
    fi
  elif [[ -x $ROOT/target/release/moq-relay && -x $ROOT/target/release/moq ]]; then
    RELAY=${RELAY:-$ROOT/target/release/moq-relay}
    CLI=${CLI:-$ROOT/target/release/moq}
  fi
fi
if [[ -n $RELAY && -x $RELAY && -n $CLI && -x $CLI ]]; then
  pass "binaries: $("$RELAY" --version)"
else
  fail "no moq-relay/moq binaries (install cargo, or set MOQ_RELAY and MOQ_CLI)"
  RELAY=
fi

# The drain_timeout a TOML file sets (default 10s), in seconds.
drain_seconds() {
  local value
  value=$(sed -n 's/^[[:space:]]*drain_timeout[[:space:]]*=[[:space:]]*"\([0-9]*\)s".*/\1/p' "$1" | head -1)
  echo "${value:-10}"
}

# ----------------------------------------------------------------------------- examples
# `moq-relay --check` opens every file a config names: stage what the examples expect under
# /etc/moq-relay (certificates, keys, a key directory, the cluster token) in a scratch tree
# and check each example with its paths pointed there.
stage_etc() {
  local etc=$TMP/etc-moq-relay
  [[ -d $etc ]] && { echo "$etc"; return; }
  mkdir -p "$etc/tls" "$etc/keys" "$etc/config" "$etc/cluster"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=relay.example.com" -keyout "$etc/tls/privkey.pem" -out "$etc/tls/fullchain.pem" >/dev/null 2>&1
  local name
  for name in cluster-ca.pem internal.pem relay-client.pem tls.crt; do cp "$etc/tls/fullchain.pem" "$etc/tls/$name"; done
  for name in internal.key relay-client.key tls.key; do cp "$etc/tls/privkey.pem" "$etc/tls/$name"; done
  "$CLI" token generate --algorithm EdDSA --id x --out "$etc/keys/x.jwk" >/dev/null 2>&1 ||
    printf '{"kty":"oct","alg":"HS256","kid":"x","k":"%s"}' "$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')" >"$etc/keys/x.jwk"
  # A cluster token that expires in 30 days (a stale one is warned about).
  local exp payload
  exp=$(($(date +%s) + 30 * 86400))
  payload=$(printf '{"root":"","put":[""],"get":[""],"exp":%d}' "$exp" | base64 | tr '+/' '-_' | tr -d '=\n')
  echo "eyJhbGciOiJIUzI1NiJ9.$payload.c2lnbmF0dXJl" >"$etc/cluster.jwt"
  # The Kubernetes recipe's Secret moq-relay-cluster, mounted at /etc/moq-relay/cluster.
  cp "$etc/cluster.jwt" "$etc/cluster/cluster.jwt"
  cp "$etc/tls/fullchain.pem" "$etc/cluster/tls.crt"
  cp "$etc/tls/privkey.pem" "$etc/cluster/tls.key"
  echo "$etc"
}

# Check one config, with /etc/moq-relay pointing at the staged tree: ok with no warning
# other than those matching $2 (an extended regex), each of which the deployment answers;
# $3, if given, is a file of NAME=VALUE lines to run it with (a pod's environment).
check_config() {
  local file=$1 accepted=${2:-^$} envfile=${3:-} staged
  local -a envs=()
  [[ -n $envfile ]] && mapfile -t envs <"$envfile"
  staged=$TMP/staged-$(basename "$file")
  sed "s#/etc/moq-relay#$(stage_etc)#g" "$file" >"$staged"
  env "${envs[@]}" "$RELAY" --check "$staged" >"$TMP/out" 2>&1 && ! grep '^warning:' "$TMP/out" | grep -qvE "$accepted"
}

section "example configs"
if [[ -n $RELAY ]]; then
  shopt -s nullglob
  examples=("$DEPLOY"/examples/*.toml)
  [[ ${#examples[@]} -ge 5 ]] || fail "expected origin, regional, edge, root and dev examples in deploy/examples"
  for file in "${examples[@]}"; do
    name=examples/$(basename "$file")
    if check_config "$file"; then
      pass "moq-relay --check $name"
    else
      cat "$TMP/out" >&2
      fail "moq-relay --check $name (error or warning)"
    fi
  done
else
  skip "moq-relay --check (no binary)"
fi

# --------------------------------------------------------------------------- prometheus
section "prometheus rules"
if command -v promtool >/dev/null; then
  check "promtool check rules prometheus/alerts.yml" promtool check rules "$DEPLOY/prometheus/alerts.yml"
  check "promtool test rules prometheus/alerts_test.yml" promtool test rules "$DEPLOY/prometheus/alerts_test.yml"
  check "promtool check config prometheus/prometheus.yml" promtool check config "$DEPLOY/prometheus/prometheus.yml"
else
  skip "promtool checks (no promtool)"
fi

# Metric names used by a PromQL text: identifiers that look like metric names and are
# not PromQL keywords or functions, minus recording-rule names (with a colon).
cat >"$TMP/metrics.py" <<'PYEOF'
import re
KNOWN, EXTERNAL = set(), set()  # filled in by the caller
WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "offset", "bool", "rate", "irate", "increase",
    "histogram_quantile", "label_replace", "max_over_time", "min_over_time", "avg_over_time",
    "time", "absent", "vector", "le", "topk", "bottomk", "quantile", "stddev", "delta",
    "deriv", "clamp_min", "clamp_max", "abs", "humanize", "inf", "nan",
}
def names(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # drop string literals
    expr = re.sub(r'\{[^}]*\}', '', expr)                     # drop label matchers
    expr = re.sub(r'\[[^\]]*\]', '', expr)                    # drop ranges
    expr = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', r'\1', expr)
    found = set()
    for token in re.findall(r'[A-Za-z_:][A-Za-z0-9_:]*', expr):
        if token.lower() in WORDS or ":" in token:
            continue
        found.add(token)
    return found
def base(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in KNOWN:
            return name[: -len(suffix)]
    return name
def unknown(expr, allow_external):
    allowed = KNOWN | (EXTERNAL if allow_external else set())
    return sorted(n for n in names(expr) if base(n) not in allowed)
PYEOF

if [[ -n $PY ]]; then
  cat >"$TMP/rules_metrics.py" <<'PYEOF'
import sys, yaml
sys.path.insert(0, sys.argv[1])
import metrics
from metrics import unknown
metrics.KNOWN.update(sys.argv[3].split())
metrics.EXTERNAL.update(sys.argv[4].split())
doc = yaml.safe_load(open(sys.argv[2]))
bad = []
for group in doc["groups"]:
    for rule in group["rules"]:
        u = unknown(rule["expr"], allow_external=True)
        if u:
            bad.append(f'{rule.get("alert") or rule.get("record")}: unknown metric(s) {", ".join(u)}')
print("\n".join(bad))
sys.exit(1 if bad else 0)
PYEOF
  check "prometheus rules use only known metric names" \
    "$PY" "$TMP/rules_metrics.py" "$TMP" "$DEPLOY/prometheus/alerts.yml" "${RELAY_METRICS[*]} ${ACME_METRICS[*]}" "${EXTERNAL_METRICS[*]}"
fi

# Every alert's runbook annotation, and every internal link in the guide, must land on a
# heading of docs/operations.md.
if [[ -n $PY ]]; then
  cat >"$TMP/anchors.py" <<'PYEOF'
import re, sys, yaml
doc = open(sys.argv[1]).read()
def slug(heading):  # GitHub's anchor for a heading
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
text = re.sub(r"```.*?```", "", doc, flags=re.S)
anchors = {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}
problems = [f"docs link to missing heading #{m.group(1)}"
            for m in re.finditer(r"\]\(#([^)]+)\)", doc) if m.group(1) not in anchors]
for group in yaml.safe_load(open(sys.argv[2]))["groups"]:
    for rule in group["rules"]:
        runbook = (rule.get("annotations") or {}).get("runbook")
        if runbook and runbook.partition("#")[2] not in anchors:
            problems.append(f"{rule['alert']}: runbook {runbook} has no heading")
        elif "alert" in rule and not runbook:
            problems.append(f"{rule['alert']}: no runbook annotation")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PYEOF
  check "every alert has a runbook section in docs/operations.md; its links resolve" \
    "$PY" "$TMP/anchors.py" "$ROOT/docs/operations.md" "$DEPLOY/prometheus/alerts.yml"
fi

# ------------------------------------------------------------------------------ grafana
section "grafana dashboard"
if [[ -n $PY ]]; then
  cat >"$TMP/dashboard.py" <<'PYEOF'
import json, sys, yaml
sys.path.insert(0, sys.argv[1])
import metrics
metrics.KNOWN.update(sys.argv[3].split())
from metrics import unknown
dash = json.load(open(sys.argv[2]))
problems, rules = [], []
panels = dash.get("panels") or []
if not panels:
    problems.append("no panels")
ids = [p.get("id") for p in panels]
if len(ids) != len(set(ids)):
    problems.append("duplicate panel ids")
for panel in panels:
    if panel.get("type") == "row":
        continue
    title = panel.get("title", "?")
    targets = panel.get("targets") or []
    if not targets:
        problems.append(f"panel '{title}' has no targets")
    for target in targets:
        expr = target.get("expr", "")
        if not expr.strip():
            problems.append(f"panel '{title}' target {target.get('refId')} has no expr")
            continue
        found = metrics.names(expr)
        if not found:
            problems.append(f"panel '{title}': query names no metric: {expr}")
        u = unknown(expr, allow_external=False)
        if u:
            problems.append(f"panel '{title}': unknown metric(s) {', '.join(u)}")
        concrete = (expr.replace("$__rate_interval", "1m").replace("$job", ".*")
                    .replace("$instance", ".*"))
        rules.append({"record": f"dashboard:panel_{panel.get('id')}_{target.get('refId')}", "expr": concrete})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[4], "w"))
print("\n".join(problems))
sys.exit(1 if problems else 0)
PYEOF
  check "grafana/moq-relay.json: JSON, panels with targets on known metrics" \
    "$PY" "$TMP/dashboard.py" "$TMP" "$DEPLOY/grafana/moq-relay.json" "${RELAY_METRICS[*]} ${ACME_METRICS[*]}" "$TMP/dashboard-rules.yml"
  if command -v promtool >/dev/null && [[ -s $TMP/dashboard-rules.yml ]]; then
    check "grafana/moq-relay.json: every query parses (promtool)" promtool check rules "$TMP/dashboard-rules.yml"
  fi
else
  skip "dashboard checks (no python venv)"
fi

# --------------------------------------------------------------------------- kubernetes
section "kubernetes manifests"
# Render the kustomization (kubectl kustomize where kubectl exists; otherwise
# deploy/check-kubernetes.py concatenates the resources it lists, which is all it does),
# then check the rendered recipe: a root StatefulSet behind a headless Service, edges whose
# [cluster] root names exactly its pods and whose node URL comes from the pod IP, ports
# agreeing between Services, containers and relay.toml, probes on the internal listener,
# the cluster token in a mounted Secret, grace period > drain_timeout, PDBs, HPA, and
# NetworkPolicies. Each tier's relay.toml then goes through `moq-relay --check` with the
# pod's environment, which also rejects MOQ_* variables the relay does not know.
RENDERED=()
if command -v kubectl >/dev/null; then
  if kubectl kustomize "$DEPLOY/kubernetes" >"$TMP/rendered.yaml" 2>"$TMP/out"; then
    pass "kubectl kustomize deploy/kubernetes"
    RENDERED=("$TMP/rendered.yaml")
  else
    cat "$TMP/out" >&2
    fail "kubectl kustomize deploy/kubernetes"
  fi
else
  skip "kubectl kustomize (kubectl not installed; the checker renders the resources itself)"
fi
if [[ -n $PY ]]; then
  check "kubernetes: every YAML file in deploy/ parses" "$PY" -c '
import glob, sys, yaml
bad = []
for path in sorted(glob.glob(sys.argv[1] + "/**/*.y*ml", recursive=True)):
    try:
        list(yaml.safe_load_all(open(path)))
    except yaml.YAMLError as e:
        bad.append(f"{path}: {e}")
print("\n".join(bad)); sys.exit(1 if bad else 0)' "$DEPLOY"
  rm -rf "$TMP/k8s"
  check "kubernetes: rendered recipe (root tier, edge links and node URLs, ports, probes, token, PDB, HPA, policies)" \
    "$PY" "$DEPLOY/check-kubernetes.py" "$DEPLOY/kubernetes" "$TMP/k8s" "${RENDERED[@]}"
  check "kubernetes: the checker rejects broken variants (no root tier, wrong root names or ports, probes, ...)" \
    env SELF_TEST=1 "$PY" "$DEPLOY/check-kubernetes.py" "$DEPLOY/kubernetes" "$TMP/k8s-self-test" "${RENDERED[@]}"
  if [[ -n $RELAY ]]; then
    shopt -s nullglob
    tiers=("$TMP"/k8s/*.toml)
    [[ ${#tiers[@]} -ge 2 ]] || fail "kubernetes: expected a relay.toml for the edges and one for the roots"
    for toml in "${tiers[@]}"; do
      tier=$(basename "$toml" .toml)
      # In a pod the internal listener binds the pod's interfaces (kubelet probes and
      # Prometheus reach it by pod IP); the NetworkPolicies keep it private, so that
      # one warning is expected.
      if check_config "$toml" 'internal.listen is \[::\]:9090' "$TMP/k8s/$tier.env"; then
        pass "moq-relay --check on $tier's relay.toml with the pod's env ($(cut -d= -f1 "$TMP/k8s/$tier.env" | paste -sd' '))"
      else
        cat "$TMP/out" >&2
        fail "moq-relay --check on $tier's relay.toml with the pod's env (error or warning)"
      fi
    done
    # The same check must reject a pod env with a MOQ_* variable the relay does not know
    # (a typo in a manifest would otherwise be silently ignored).
    if [[ ${#tiers[@]} -ge 1 ]]; then
      { cat "$TMP/k8s/$(basename "${tiers[0]}" .toml).env"; echo "MOQ_CLUSTER_NODES=https://10.1.2.3:4443/"; } \
        >"$TMP/k8s-typo.env"
      if check_config "${tiers[0]}" 'internal.listen is \[::\]:9090' "$TMP/k8s-typo.env"; then
        fail "moq-relay --check accepted a pod env with the unknown variable MOQ_CLUSTER_NODES"
      else
        pass "moq-relay --check rejects a pod env with an unknown MOQ_* variable (MOQ_CLUSTER_NODES)"
      fi
    fi
  fi
  manifests=()
  for f in "$DEPLOY"/kubernetes/*.yaml; do
    [[ $(basename "$f") == kustomization.yaml ]] || manifests+=("$f")
  done
  for version in "$KUBERNETES_MIN" "$KUBERNETES_VALIDATE_VERSION"; do
    check "kubernetes-validate --strict (Kubernetes $version)" \
      "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"
  done
else
  skip "kubernetes checks (no python venv)"
fi

# ------------------------------------------------------------------------------ systemd
section "systemd unit"
UNIT=$DEPLOY/systemd/moq-relay.service
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$UNIT")
worst=0
for file in "$DEPLOY"/examples/*.toml; do
  d=$(drain_seconds "$file"); (( d > worst )) && worst=$d
done
if [[ -n $stop ]] && (( stop > worst )); then
  pass "TimeoutStopSec=${stop}s exceeds every example's drain_timeout (max ${worst}s)"
else
  fail "TimeoutStopSec (${stop:-unset}) must exceed drain_timeout (max ${worst}s)"
fi
if command -v systemd-analyze >/dev/null; then
  # verify needs the executables to exist: point the copy at the built binary.
  mkdir -p "$TMP/unit"
  sed "s#/usr/local/bin/moq-relay#${RELAY:-/bin/true}#g" "$UNIT" >"$TMP/unit/moq-relay.service"
  if systemd-analyze verify "$TMP/unit/moq-relay.service" >"$TMP/out" 2>&1 && [[ ! -s $TMP/out ]]; then
    pass "systemd-analyze verify systemd/moq-relay.service"
  else
    cat "$TMP/out" >&2
    fail "systemd-analyze verify systemd/moq-relay.service (any message counts)"
  fi
  if systemd-analyze security --offline=true "$TMP/unit/moq-relay.service" >"$TMP/out" 2>&1; then
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$TMP/out")
    if [[ -n $score ]] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
      pass "systemd-analyze security: exposure $score (<= 2.0)"
    else
      tail -3 "$TMP/out" >&2
      fail "systemd-analyze security: exposure ${score:-?} (want <= 2.0)"
    fi
  else
    skip "systemd-analyze security --offline (not supported by this systemd)"
  fi
else
  skip "systemd-analyze (not installed; apt-get install systemd)"
fi

# ---------------------------------------------------------------------------- container
section "container"
cat >"$TMP/containerfile.py" <<'PYEOF'
import fnmatch, json, os, re, sys
root, path = sys.argv[1], sys.argv[2]
text = open(path).read()
lines = re.sub(r"\\\n", " ", text).splitlines()
problems = []
final_user = None
exposed, healthcheck, stages = set(), False, 0
for line in lines:
    s = line.strip()
    if not s or s.startswith("#"):
        continue
    word = s.split()[0].upper()
    if word == "FROM":
        stages += 1
        final_user = None
    m = re.match(r"(?i)(ENTRYPOINT|CMD|HEALTHCHECK\b.*?\bCMD)\s+(\[.*\])\s*$", s)
    if m:
        try:
            json.loads(m.group(2))
        except ValueError as e:
            problems.append(f"{m.group(1).split()[0]}: exec form is not JSON: {e}")
    if word == "COPY" and "--from=" not in s:
        for src in s.split()[1:-1]:
            if not src.startswith("--") and not os.path.exists(os.path.join(root, src)):
                problems.append(f"COPY source {src} does not exist in the build context")
    if word == "USER":
        final_user = s.split()[1]
    if word == "EXPOSE":
        exposed.update(s.split()[1:])
    if word == "HEALTHCHECK":
        healthcheck = True
if stages < 2:
    problems.append("not a multi-stage build")
if final_user is None or final_user.split(":")[0] in ("0", "root"):
    problems.append("the final stage must switch to a non-root USER")
for port in ("443/udp", "443/tcp", "9090/tcp"):
    if port not in exposed:
        problems.append(f"EXPOSE lacks {port}")
if not healthcheck:
    problems.append("no HEALTHCHECK")
ignore = path + ".dockerignore"
if os.path.exists(ignore):
    rules = [l.strip() for l in open(ignore) if l.strip() and not l.startswith("#")]
    def included(p):
        keep = True
        for r in rules:
            neg = r.startswith("!")
            pat = r[1:] if neg else r
            if fnmatch.fnmatch(p, pat.rstrip("/")) or fnmatch.fnmatch(p, pat):
                keep = neg
        return keep
    for need in ("Cargo.toml", "Cargo.lock", "crates"):
        if not included(need):
            problems.append(f"{os.path.basename(ignore)} excludes {need}")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PYEOF
check "container/Containerfile: multi-stage, non-root, EXPOSE, HEALTHCHECK, COPY sources" \
  python3 "$TMP/containerfile.py" "$ROOT" "$DEPLOY/container/Containerfile"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  skip "container build (a docker engine exists; build by hand: docker build -f deploy/container/Containerfile .)"
else
  skip "container build (no container engine here)"
fi

# -------------------------------------------------------------------------------- smoke
section "smoke: the development example, run"
# Under strace when it works here, to check that every system call and socket family the
# relay uses is allowed by the unit's SystemCallFilter= and RestrictAddressFamilies=.
if ! command -v strace >/dev/null; then
  apt_install strace >"$TMP/apt.log" 2>&1 || true
fi
TRACE=()
if command -v strace >/dev/null && strace -f -qq -o /dev/null true 2>/dev/null; then
  TRACE=(strace -f -qq -o "$TMP/strace.out")
fi
if [[ -n $RELAY && -n $PY ]]; then
  ports=$("$PY" - <<'PYEOF'
import socket
def free_udp_tcp():
    while True:
        t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        t.bind(("::", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            u.bind(("::", port))
            return port, (t, u)
        except OSError:
            t.close(); u.close()
p, keep = free_udp_tcp()
s = socket.socket(); s.bind(("127.0.0.1", 0))
print(p, s.getsockname()[1])
PYEOF
)
  read -r PORT IPORT <<<"$ports"
  "${TRACE[@]}" "$RELAY" "$DEPLOY/examples/dev.toml" \
    --server-bind "[::]:$PORT" --web-http-listen "[::]:$PORT" --internal-listen "127.0.0.1:$IPORT" \
    --auth-public anon --drain-timeout 2s >"$TMP/relay.log" 2>&1 &
  RELAY_PID=$!
  WAIT_PID=$RELAY_PID
  up=0
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$IPORT/health" >/dev/null 2>&1; then up=1; break; fi
    kill -0 "$WAIT_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ ${#TRACE[@]} -gt 0 ]]; then
    # Signals go to the relay itself, not to strace; strace exits with its status.
    RELAY_PID=$(pgrep -P "$WAIT_PID" | head -1)
  fi
  if [[ $up -eq 1 && -n $RELAY_PID ]]; then
    pass "dev.toml runs; internal /health answers"
    # The Containerfile's HEALTHCHECK command, pointed at this relay's internal port.
    hc=$(python3 - "$DEPLOY/container/Containerfile" <<'PYEOF'
import json, re, sys
text = re.sub(r"\\\n", " ", open(sys.argv[1]).read())
m = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, re.M)
print(json.loads(m.group(1))[2])
PYEOF
)
    check "container HEALTHCHECK command succeeds against a live relay" \
      /bin/bash -c "${hc//9090/$IPORT}"
    check "internal /ready answers 200" curl -fsS "http://127.0.0.1:$IPORT/ready"
    # One accepted session and one refused one, so the labelled families exist; a clock
    # through the relay exercises publish, subscribe and fan-out.
    timeout 15 "$CLI" publish clock "http://localhost:$PORT/anon" --broadcast clock >/dev/null 2>&1 &
    CLOCK_PID=$!
    check "a clock published to the relay reaches a subscriber" \
      timeout 15 "$CLI" clock "http://localhost:$PORT/anon" --broadcast clock --count 2
    kill "$CLOCK_PID" 2>/dev/null; wait "$CLOCK_PID" 2>/dev/null
    timeout 15 "$CLI" announced "http://localhost:$PORT/private" >/dev/null 2>&1
    curl -fsS "http://127.0.0.1:$IPORT/metrics" >"$TMP/metrics.txt" 2>&1
    missing=()
    for m in "${RELAY_METRICS[@]}"; do
      grep -Eq "^${m}(_bucket)?(\{| )" "$TMP/metrics.txt" || missing+=("$m")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
      pass "/metrics exports every metric the rules and dashboard use (${#RELAY_METRICS[@]})"
    else
      fail "/metrics lacks: ${missing[*]}"
    fi
    kill -HUP "$RELAY_PID"
    sleep 0.5
    if grep -q 'certificates reloaded' "$TMP/relay.log"; then
      pass "SIGHUP reloads certificates"
    else
      fail "SIGHUP: no 'certificates reloaded' in the log"
    fi
    kill -TERM "$RELAY_PID"
    code=timeout
    for _ in $(seq 1 120); do
      if ! kill -0 "$WAIT_PID" 2>/dev/null; then wait "$WAIT_PID"; code=$?; break; fi
      sleep 0.1
    done
    RELAY_PID=
    if [[ $code == 0 ]]; then
      pass "SIGTERM drains and exits 0 within drain_timeout + 10s"
    else
      tail -5 "$TMP/relay.log" >&2
      fail "SIGTERM: exit ${code} (want 0 within 12s)"
    fi
    if [[ ${#TRACE[@]} -gt 0 && -s $TMP/strace.out ]]; then
      # The unit's filter: the allow line(s), minus the ~deny line(s), groups expanded.
      expand() {
        systemd-analyze syscall-filter "$1" 2>/dev/null | sed 1d | grep -v '^[[:space:]]*#' |
          awk 'NF { print $1 }' | while read -r name; do
            case $name in @*) expand "$name" ;; *) echo "$name" ;; esac
          done
      }
      : >"$TMP/allow.txt"; : >"$TMP/deny.txt"
      while IFS= read -r line; do
        value=${line#SystemCallFilter=}
        if [[ $value == '~'* ]]; then
          for g in ${value#\~}; do expand "$g" >>"$TMP/deny.txt"; done
        else
          for g in $value; do expand "$g" >>"$TMP/allow.txt"; done
        fi
      done < <(grep '^SystemCallFilter=' "$UNIT")
      sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p' "$TMP/strace.out" | sort -u >"$TMP/used.txt"
      sort -u "$TMP/allow.txt" -o "$TMP/allow.txt"; sort -u "$TMP/deny.txt" -o "$TMP/deny.txt"
      if [[ -s $TMP/allow.txt ]]; then
        bad=$( (comm -23 "$TMP/used.txt" "$TMP/allow.txt"; comm -12 "$TMP/used.txt" "$TMP/deny.txt") | sort -u | tr '\n' ' ')
        if [[ -z $bad ]]; then
          pass "the unit's SystemCallFilter allows all $(wc -l <"$TMP/used.txt") system calls the relay made"
        else
          fail "the unit's SystemCallFilter would block: $bad"
        fi
      else
        skip "SystemCallFilter check (systemd-analyze cannot list syscall groups)"
      fi
      families=$(grep -oE '(socket|socketpair)\(AF_[A-Z0-9]+' "$TMP/strace.out" | sed 's/.*(//' | sort -u | tr '\n' ' ')
      allowed=$(sed -n 's/^RestrictAddressFamilies=//p' "$UNIT")
      bad=
      for f in $families; do [[ " $allowed " == *" $f "* ]] || bad+="$f "; done
      if [[ -z $bad ]]; then
        pass "the unit's RestrictAddressFamilies allows every socket the relay opened (${families% })"
      else
        fail "the unit's RestrictAddressFamilies would block: $bad"
      fi
    else
      skip "system-call check against the unit (strace unavailable here)"
    fi
  else
    tail -20 "$TMP/relay.log" >&2
    fail "dev.toml: the relay did not come up (internal /health on 127.0.0.1:$IPORT)"
  fi
else
  skip "smoke run (no binary or python venv)"
fi

# ------------------------------------------------------------------------------ cluster
section "cluster: deploy/cluster/demo.sh, a whole tree on loopback"
if [[ -n $RELAY ]]; then
  if MOQ_RELAY=$RELAY MOQ_CLI=$CLI timeout 180 bash "$DEPLOY/cluster/demo.sh" --duration 15 \
      >"$TMP/cluster.log" 2>&1; then
    pass "cluster demo: a clock published to origin-1 reaches viewers on all 3 edges"
  else
    tail -60 "$TMP/cluster.log" >&2
    fail "cluster demo (deploy/cluster/demo.sh --duration 15)"
  fi
else
  skip "cluster demo (no binary)"
fi
if [[ -n $RELAY && -n $PY ]] && command -v openssl >/dev/null; then
  if PYTHON=$PY MOQ_RELAY=$RELAY MOQ_CLI=$CLI timeout 120 bash "$DEPLOY/cluster/kubernetes-loopback.sh" \
      >"$TMP/k8s-loopback.log" 2>&1; then
    pass "kubernetes recipe on loopback: 2 roots + 3 edges from the rendered ConfigMaps and pod env; a clock crosses edges"
  else
    tail -40 "$TMP/k8s-loopback.log" >&2
    fail "kubernetes recipe on loopback (deploy/cluster/kubernetes-loopback.sh)"
  fi
else
  skip "kubernetes recipe on loopback (needs the binaries, the python venv and openssl)"
fi

# ------------------------------------------------------------------------------ summary
echo
echo "== summary"
printf '%s\n' "${SUMMARY[@]}"
if [[ $FAILED -ne 0 ]]; then
  echo "deploy/check.sh: FAILED"
  exit 1
fi
echo "deploy/check.sh: all checks passed"
