#!/usr/bin/env python3
"""Validate the Kubernetes recipe in deploy/kubernetes offline (run by deploy/check.sh).

    check-kubernetes.py DIR OUT [RENDERED]

DIR is a kustomization directory; RENDERED, when given, is `kubectl kustomize DIR` output
(otherwise the resources the kustomization lists are read and concatenated, which is all
this kustomization does). Secrets are templates outside the kustomization: secret.yaml in
DIR is read too, for cross-references only.

For every relay workload (Deployment, StatefulSet) it writes OUT/<name>.toml (the relay.toml
its ConfigMap mounts) and OUT/<name>.env (the container's environment as NAME=VALUE lines,
downward-API and Secret values replaced by samples) so that the caller can run
`moq-relay --check` on exactly what a pod would run. It prints one line per problem and
exits 1 if there is any. Needs PyYAML and Python >= 3.11 (tomllib).
"""

import glob
import os
import re
import sys
import tomllib
from urllib.parse import urlsplit

import yaml

NAMESPACED = {"ConfigMap", "Secret", "Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler",
              "PodDisruptionBudget", "NetworkPolicy"}
WORKLOADS = ("Deployment", "StatefulSet")
# Sample values for what only a running pod knows.
SAMPLE_POD_IP = "10.1.2.3"
SAMPLE_SECRET = {"fingerprint": "0" * 64}

problems = []


def problem(text):
    problems.append(text)


def load(path):
    try:
        return [d for d in yaml.safe_load_all(open(path)) if d is not None]
    except yaml.YAMLError as e:
        problem(f"{os.path.basename(path)}: not YAML: {e}")
        return []


def render(directory):
    """What `kubectl kustomize` yields for a kustomization of plain resources."""
    (kustomization,) = load(os.path.join(directory, "kustomization.yaml")) or [{}]
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources"}
    if unsupported:
        problem(f"kustomization.yaml uses {sorted(unsupported)}: install kubectl to render it")
    docs = []
    for resource in kustomization.get("resources", []):
        path = os.path.join(directory, resource)
        if not os.path.isfile(path):
            problem(f"kustomization.yaml: resource {resource} does not exist")
            continue
        docs.extend(load(path))
    return docs


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def port_of(address):
    """The port of a TOML listen address like "[::]:4443"."""
    m = re.search(r":(\d+)$", str(address or ""))
    return int(m.group(1)) if m else None


def main():
    directory, out = sys.argv[1], sys.argv[2]
    docs = load(sys.argv[3]) if len(sys.argv) > 3 else render(directory)
    os.makedirs(out, exist_ok=True)
    if os.environ.get("SELF_TEST"):
        return self_test(directory, out, docs)
    check(directory, out, docs)
    print("\n".join(problems))
    return 1 if problems else 0


def check(directory, out, docs):
    """Append every problem of the rendered `docs` to `problems`."""
    os.makedirs(out, exist_ok=True)

    # Structure: every rendered document names itself and lives in the namespace.
    namespaces = {d["metadata"]["name"] for d in docs if d.get("kind") == "Namespace" and d.get("metadata")}
    for d in docs:
        meta = d.get("metadata") or {}
        where = f"{d.get('kind', '?')}/{meta.get('name', '?')}"
        for key in ("apiVersion", "kind"):
            if not d.get(key):
                problem(f"{where}: missing {key}")
        if not meta.get("name"):
            problem(f"{where}: missing metadata.name")
        if d.get("kind") in NAMESPACED and meta.get("namespace") not in namespaces:
            problem(f"{where}: metadata.namespace {meta.get('namespace')!r} is not a Namespace of the recipe")
    docs = [d for d in docs if d.get("kind") and (d.get("metadata") or {}).get("name")]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    secret_template = os.path.join(directory, "secret.yaml")
    if os.path.exists(secret_template):
        for d in load(secret_template):
            secrets.setdefault(d["metadata"]["name"], d)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def named(kind, name):
        return next((d for d in by_kind.get(kind, []) if d["metadata"]["name"] == name), None)

    workloads = [d for kind in WORKLOADS for d in by_kind.get(kind, [])]
    if not workloads:
        problem("no relay Deployment or StatefulSet")
    info = {}
    for w in workloads:
        info[w["metadata"]["name"]] = workload(w, named, secrets, out)

    topology(by_kind, named, info)
    services(by_kind, workloads, info)
    policies(by_kind, workloads, info)


# Each mutation breaks one thing the recipe must get right; the check must notice it.
def _find(docs, kind, name=None):
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def _container(docs, kind):
    return _find(docs, kind)["spec"]["template"]["spec"]["containers"][0]


def _edge_config(docs, edit):
    cm = _find(docs, "ConfigMap", "moq-relay-config")
    cm["data"]["relay.toml"] = edit(cm["data"]["relay.toml"])


MUTATIONS = [
    ("no root tier (unlinked relays)", lambda d: d.remove(_find(d, "StatefulSet")), "expected one root StatefulSet"),
    ("edge root URL names no root pod",
     lambda d: _edge_config(d, lambda t: t.replace("moq-root-1.moq-root", "moq-root-7.moq-root")),
     "host is not one of the StatefulSet's pods"),
    ("edge root URL on the wrong port",
     lambda d: _edge_config(d, lambda t: t.replace(".svc:4443/", ".svc:443/")), "is not the roots' QUIC port"),
    ("edge without [cluster] root",
     lambda d: _edge_config(d, lambda t: re.sub(r"(?ms)^root = \[.*?\]\n", "", t)), "[cluster] root is empty"),
    ("edge node URL not from the pod IP",
     lambda d: _container(d, "Deployment")["env"].__setitem__(1, {"name": "MOQ_CLUSTER_NODE", "value": "https://edge:4443/"}),
     "must be built from the pod IP"),
    ("root node URL not its DNS name",
     lambda d: _container(d, "StatefulSet")["env"].__setitem__(1, {"name": "MOQ_CLUSTER_NODE", "value": "https://root:4443/"}),
     "MOQ_CLUSTER_NODE must be https://$(POD_NAME)"),
    ("headless Service without publishNotReadyAddresses",
     lambda d: _find(d, "Service", "moq-root")["spec"].pop("publishNotReadyAddresses"), "publishNotReadyAddresses"),
    ("roots started in order",
     lambda d: _find(d, "StatefulSet")["spec"].pop("podManagementPolicy"), "podManagementPolicy must be Parallel"),
    ("readiness probe on the QUIC port",
     lambda d: _container(d, "Deployment")["readinessProbe"]["httpGet"].__setitem__("port", "https"),
     "readinessProbe must GET /ready on the internal port"),
    ("internal listener moved, container port not",
     lambda d: _edge_config(d, lambda t: t.replace('listen = "[::]:9090"', 'listen = "[::]:9091"')),
     "container port 'internal' is not [internal] listen's port"),
    ("server listens elsewhere than the container port",
     lambda d: _edge_config(d, lambda t: re.sub(r'(?m)^\[server\]\n((?:#.*\n)*)listen = "\[::\]:4443"', r'[server]\n\1listen = "[::]:5555"', t)),
     "[server] listens on 5555"),
    ("Service protocol differs from the container's",
     lambda d: _find(d, "Service", "moq-relay")["spec"]["ports"][0].__setitem__("protocol", "TCP"), "protocol mismatch"),
    ("cache as an absolute size",
     lambda d: _edge_config(d, lambda t: t.replace('capacity = "40%"', 'capacity = "1536MiB"')), "should be a percentage"),
    ("cluster token outside a Secret",
     lambda d: _edge_config(d, lambda t: t.replace('token = "/etc/moq-relay/cluster/', 'token = "/etc/moq-relay/config/')),
     "is not in a mounted Secret"),
    ("internal port open to all",
     lambda d: _find(d, "NetworkPolicy", "moq-relay")["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": 9090}),
     "admits the internal port from everywhere"),
    ("grace period shorter than the drain",
     lambda d: _find(d, "StatefulSet")["spec"]["template"]["spec"].__setitem__("terminationGracePeriodSeconds", 5),
     "must exceed drain_timeout"),
]


def self_test(directory, out, docs):
    """Run the check on the recipe (must pass) and on each mutation (must fail as named)."""
    import copy
    failures = []
    check(directory, out, copy.deepcopy(docs))
    if problems:
        print(f"the recipe itself fails the check, so its variants prove nothing: {problems}")
        return 1
    for name, mutate, expected in MUTATIONS:
        problems.clear()
        broken = copy.deepcopy(docs)
        mutate(broken)
        check(directory, os.path.join(out, "mutated"), broken)
        if not any(expected in p for p in problems):
            failures.append(f"mutation '{name}' not caught (want '{expected}', got {problems})")
    print("\n".join(failures) or f"{len(MUTATIONS)} broken variants of the recipe all rejected")
    return 1 if failures else 0


def workload(w, named, secrets, out):
    """Check one relay workload; return what the cross-checks need."""
    name, kind = w["metadata"]["name"], w["kind"]
    where = f"{kind} {name}"
    pod = w["spec"]["template"]
    spec, labels = pod["spec"], pod["metadata"].get("labels", {})
    if not matches(w["spec"]["selector"].get("matchLabels"), labels):
        problem(f"{where}: selector does not match its pod labels")
    containers = [c for c in spec["containers"] if c["name"] == "moq-relay"]
    if len(containers) != 1:
        problem(f"{where}: needs exactly one container named moq-relay")
        return {"w": w, "labels": labels, "ports": {}, "config": {}, "env": {}, "refs": {}, "node": None,
                "raw_node": None, "internal": None}
    (c,) = containers
    ports = {p["name"]: p for p in c.get("ports", [])}

    # The relay.toml the container is started with: a ConfigMap volume and the args.
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    config, toml_text = {}, None
    args = c.get("args", [])
    for vname, v in volumes.items():
        if "configMap" in v:
            ref = v["configMap"]["name"]
            cm = named("ConfigMap", ref)
            if cm is None:
                problem(f"{where}: volume {vname} refers to missing ConfigMap {ref}")
                continue
            for key, text in (cm.get("data") or {}).items():
                if f"{mounts.get(vname)}/{key}" in args:
                    toml_text = text
        elif "secret" in v:
            ref = v["secret"]["secretName"]
            if ref not in secrets:
                problem(f"{where}: volume {vname} refers to missing Secret {ref}")
    if toml_text is None:
        problem(f"{where}: args {args} name no relay.toml from a mounted ConfigMap")
    else:
        try:
            config = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as e:
            problem(f"{where}: relay.toml is not TOML: {e}")
        with open(os.path.join(out, f"{name}.toml"), "w") as f:
            f.write(toml_text)

    # The environment as the pod sees it: downward API and Secret keys as samples,
    # $(VAR) expanded the way the kubelet does.
    env, refs = {}, {}
    pod_name = f"{name}-0" if kind == "StatefulSet" else f"{name}-5d8f7c9b4-x2x7q"
    for e in c.get("env", []):
        source = e.get("valueFrom")
        if source and "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            refs[e["name"]] = field
            value = {"status.podIP": SAMPLE_POD_IP, "metadata.name": pod_name,
                     "metadata.namespace": w["metadata"]["namespace"]}.get(field)
            if value is None:
                problem(f"{where}: env {e['name']}: unexpected fieldRef {field}")
                value = "x"
        elif source and "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = secrets.get(ref["name"])
            keys = set((secret or {}).get("stringData", {})) | set((secret or {}).get("data", {}))
            if ref["key"] not in keys:
                problem(f"{where}: env {e['name']} refers to missing Secret key {ref['name']}/{ref['key']}")
            value = SAMPLE_SECRET.get(ref["key"], "x")
        elif "value" in e:
            value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), str(e["value"]))
        else:
            problem(f"{where}: env {e['name']} has no value")
            continue
        env[e["name"]] = value
    for n in env:
        if not n.startswith("MOQ_") and not any(f"$({n})" in str(e.get("value", "")) for e in c.get("env", [])):
            problem(f"{where}: env {n} is neither a MOQ_* setting nor used by one")
    with open(os.path.join(out, f"{name}.env"), "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in env.items())

    # Listeners: the ports the config binds are the container's ports.
    server = config.get("server", {})
    internal = port_of(config.get("internal", {}).get("listen"))
    for key, port_name, proto in (("server", "quic", "UDP"), ("web.https", "https", "TCP")):
        table = config.get("web", {}).get("https", {}) if key == "web.https" else server
        listen = port_of(table.get("listen") or table.get("bind"))
        if listen is None:
            if key == "server":
                problem(f"{where}: relay.toml sets no [server] listen")
            continue
        p = ports.get(port_name)
        if not p or p["containerPort"] != listen or p.get("protocol", "TCP") != proto:
            problem(f"{where}: [{key}] listens on {listen}, but the container has no {proto} port "
                    f"named {port_name} with containerPort {listen}")
    if internal is None:
        problem(f"{where}: relay.toml sets no [internal] listen (probes and metrics need it)")
    elif ports.get("internal", {}).get("containerPort") != internal:
        problem(f"{where}: container port 'internal' is not [internal] listen's port {internal}")
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready"), ("startupProbe", "/health")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if probe == "startupProbe" and not get:
            continue
        if get.get("path") != path or get.get("port") not in ("internal", internal):
            problem(f"{where}: {probe} must GET {path} on the internal port")
    annotations = pod["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") != "true" or str(annotations.get("prometheus.io/port")) != str(internal):
        problem(f"{where}: pod template needs prometheus.io/scrape and prometheus.io/port = the internal port")

    # Drain: SIGTERM drains for drain_timeout; the kubelet must wait longer.
    drain = config.get("drain_timeout", "10s")
    m = re.fullmatch(r"(\d+)s", str(drain))
    drain = int(m.group(1)) if m else 10
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= drain:
        problem(f"{where}: terminationGracePeriodSeconds {grace} must exceed drain_timeout {drain}s")

    # Hardening and resources.
    sc, psc = c.get("securityContext", {}), spec.get("securityContext", {})
    if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation") is not False:
        problem(f"{where}: container must have readOnlyRootFilesystem and no privilege escalation")
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        problem(f"{where}: pod must run as non-root")
    resources = c.get("resources", {})
    if not resources.get("requests") or not resources.get("limits", {}).get("memory"):
        problem(f"{where}: container needs resource requests and a memory limit")
    capacity = str(config.get("cache", {}).get("capacity", ""))
    if not capacity.endswith("%"):
        problem(f"{where}: [cache] capacity {capacity!r} should be a percentage: the relay reads the "
                "container's memory limit, so a share of it follows resources.limits.memory")

    # Cluster: a node URL per pod, a token from a mounted Secret.
    cluster = config.get("cluster", {})
    node = env.get("MOQ_CLUSTER_NODE", cluster.get("node"))
    raw_node = next((e.get("value") for e in c.get("env", []) if e["name"] == "MOQ_CLUSTER_NODE"), None)
    token = cluster.get("token")
    if token:
        mount = next(((vname, path) for vname, path in mounts.items() if token.startswith(path + "/")), None)
        secret = volumes.get(mount[0], {}).get("secret") if mount else None
        if not secret:
            problem(f"{where}: [cluster] token {token} is not in a mounted Secret")
        else:
            s = secrets.get(secret["secretName"]) or {}
            key = token[len(mount[1]) + 1:]
            if key not in set(s.get("stringData", {})) | set(s.get("data", {})):
                problem(f"{where}: [cluster] token: Secret {secret['secretName']} has no key {key}")
    elif not env.get("MOQ_CLUSTER_JWT"):
        problem(f"{where}: no cluster token ([cluster] token from a Secret): peers would refuse its links")
    return {"w": w, "labels": labels, "ports": ports, "config": config, "env": env, "refs": refs,
            "node": node, "raw_node": raw_node, "internal": internal}


def topology(by_kind, named, info):
    """Edges (Deployment) register with roots (StatefulSet) at the roots' stable names."""
    roots = by_kind.get("StatefulSet", [])
    edges = by_kind.get("Deployment", [])
    if len(roots) != 1:
        problem(f"expected one root StatefulSet, found {len(roots)}: without it the edges are unlinked relays "
                "(a publisher on one pod is invisible to viewers on another)")
        for edge in edges:
            if not info[edge["metadata"]["name"]]["config"].get("cluster", {}).get("root"):
                problem(f"Deployment {edge['metadata']['name']}: [cluster] root is empty")
        return
    (sts,) = roots
    name, ns = sts["metadata"]["name"], sts["metadata"]["namespace"]
    replicas = sts["spec"].get("replicas", 1)
    svc_name = sts["spec"].get("serviceName")
    svc = named("Service", svc_name)
    root = info[name]
    if svc is None:
        problem(f"StatefulSet {name}: serviceName {svc_name!r} is not a Service of the recipe")
    else:
        if svc["spec"].get("clusterIP") != "None":
            problem(f"Service {svc_name}: must be headless (clusterIP: None) to give each root a DNS name")
        if not svc["spec"].get("publishNotReadyAddresses"):
            problem(f"Service {svc_name}: needs publishNotReadyAddresses: true (a root is ready only once "
                    "linked to another, which it finds by DNS)")
        if not matches(svc["spec"].get("selector"), root["labels"]):
            problem(f"Service {svc_name}: selector does not match the StatefulSet's pods")
    if replicas > 1 and sts["spec"].get("podManagementPolicy") != "Parallel":
        problem(f"StatefulSet {name}: podManagementPolicy must be Parallel (roots become ready only when linked "
                "to each other; OrderedReady would wait forever)")
    quic = root["ports"].get("quic", {}).get("containerPort")
    expected = {f"{name}-{i}.{svc_name}.{ns}.svc" for i in range(replicas)}
    expected_long = {f"{h}.cluster.local" for h in expected}

    def check_roots(where, urls):
        if not urls:
            problem(f"{where}: [cluster] root is empty: it registers with no root and learns nothing of the others")
            return
        hosts = set()
        for url in urls:
            u = urlsplit(url)
            host = u.hostname or ""
            if host not in expected | expected_long:
                problem(f"{where}: [cluster] root {url}: host is not one of the StatefulSet's pods "
                        f"({', '.join(sorted(expected))})")
            if u.port != quic:
                problem(f"{where}: [cluster] root {url}: port {u.port} is not the roots' QUIC port {quic}")
            hosts.add(host.removesuffix(".cluster.local"))
        if hosts != expected:
            problem(f"{where}: [cluster] root lists {sorted(hosts)}, the StatefulSet runs {sorted(expected)}")

    for edge in edges:
        e = info[edge["metadata"]["name"]]
        where = f"Deployment {edge['metadata']['name']}"
        check_roots(where, e["config"].get("cluster", {}).get("root", []))
        raw, node = e["raw_node"] or "", e["node"]
        ip_vars = [v for v, f in e["refs"].items() if f == "status.podIP"]
        if not any(f"$({v})" in raw for v in ip_vars):
            problem(f"{where}: MOQ_CLUSTER_NODE must be built from the pod IP (downward API status.podIP), "
                    f"e.g. https://$(POD_IP):{e['ports'].get('quic', {}).get('containerPort')}/: edges have no "
                    "stable names, and the other relays dial this URL")
        elif urlsplit(node).port != e["ports"].get("quic", {}).get("containerPort"):
            problem(f"{where}: MOQ_CLUSTER_NODE {raw}: port is not the container's QUIC port")
        allow = e["config"].get("cluster", {}).get("allow", [])
        if ip_vars and not any(re.fullmatch(r"[0-9a-fA-F.:]+/\d+", a) for a in allow):
            problem(f"{where}: [cluster] allow needs the pod network (CIDR): the token goes to edges found by pod IP")
        if e["config"].get("client", {}).get("tls", {}).get("root") and "MOQ_CLIENT_TLS_FINGERPRINT" not in e["env"]:
            problem(f"{where}: edges are dialled by IP: pin the cluster certificate (MOQ_CLIENT_TLS_FINGERPRINT)")
    where = f"StatefulSet {name}"
    check_roots(where, root["config"].get("cluster", {}).get("root", []))
    name_vars = [v for v, f in root["refs"].items() if f == "metadata.name"]
    raw = root["raw_node"] or ""
    if not any(raw.startswith(f"https://$({v}).{svc_name}.{ns}.svc") for v in name_vars):
        problem(f"{where}: MOQ_CLUSTER_NODE must be https://$(POD_NAME).{svc_name}.{ns}.svc:{quic}/ "
                "(POD_NAME from metadata.name), spelled as in [cluster] root, so each root knows itself")
    elif root["node"] not in root["config"].get("cluster", {}).get("root", []):
        problem(f"{where}: MOQ_CLUSTER_NODE {root['node']} (for pod 0) is not spelled as in [cluster] root")
    # Scaling: the HPA scales edges; roots have a fixed, listed count.
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    targets = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"]) for h in hpas}
    for edge in edges:
        if ("Deployment", edge["metadata"]["name"]) not in targets:
            problem(f"Deployment {edge['metadata']['name']}: no HorizontalPodAutoscaler targets it")
    if ("StatefulSet", name) in targets:
        problem(f"StatefulSet {name}: must not be autoscaled (the edges list every root by name)")
    for w in list(edges) + [sts]:
        labels = info[w["metadata"]["name"]]["labels"]
        if not any(matches(p["spec"]["selector"].get("matchLabels"), labels) for p in by_kind.get("PodDisruptionBudget", [])):
            problem(f"{w['kind']} {w['metadata']['name']}: no PodDisruptionBudget selects its pods")


def services(by_kind, workloads, info):
    """Each Service selects one tier; its target ports exist with the same protocol."""
    for svc in by_kind.get("Service", []):
        sname = svc["metadata"]["name"]
        selected = [w for w in workloads if matches(svc["spec"].get("selector"), info[w["metadata"]["name"]]["labels"])]
        if len(selected) != 1:
            problem(f"Service {sname}: selects {len(selected)} relay workloads, want exactly one")
            continue
        ports = info[selected[0]["metadata"]["name"]]["ports"]
        for p in svc["spec"]["ports"]:
            target = ports.get(p["targetPort"]) or next(
                (q for q in ports.values() if q["containerPort"] == p["targetPort"]), None)
            if target is None:
                problem(f"Service {sname}: targets unknown port {p['targetPort']}")
            elif target.get("protocol", "TCP") != p.get("protocol", "TCP"):
                problem(f"Service {sname} port {p.get('name')}: protocol mismatch")
        if svc["spec"].get("type") in ("LoadBalancer", "NodePort"):
            if selected[0]["kind"] != "Deployment":
                problem(f"Service {sname}: exposes the roots publicly")
            protos = {(p["port"], p.get("protocol", "TCP")) for p in svc["spec"]["ports"]}
            if not {(443, "UDP"), (443, "TCP")} <= protos:
                problem(f"Service {sname}: a public Service needs UDP 443 and TCP 443")
            if any(p["targetPort"] in ("internal", info[selected[0]["metadata"]["name"]]["internal"])
                   for p in svc["spec"]["ports"]):
                problem(f"Service {sname}: a public Service must not expose the internal port")
    if not any(s["spec"].get("type") == "LoadBalancer" for s in by_kind.get("Service", [])):
        problem("no LoadBalancer Service: viewers cannot reach the edges")


def policies(by_kind, workloads, info):
    """NetworkPolicy: public QUIC/HTTPS on edges, internal port from monitoring only."""
    for w in workloads:
        i = info[w["metadata"]["name"]]
        where = f"{w['kind']} {w['metadata']['name']}"
        selecting = [p for p in by_kind.get("NetworkPolicy", [])
                     if matches(p["spec"]["podSelector"].get("matchLabels"), i["labels"])]
        if not selecting:
            problem(f"{where}: no NetworkPolicy selects its pods")
            continue
        public, internal_from = set(), []
        for p in selecting:
            for rule in p["spec"].get("ingress", []):
                for port in rule.get("ports", []):
                    key = (port.get("port"), port.get("protocol", "TCP"))
                    if "from" not in rule:
                        public.add(key)
                    if port.get("port") in (i["internal"], "internal"):
                        internal_from.append(rule.get("from"))
                if not rule.get("ports") and "from" not in rule:
                    public.add("all")
        if "all" in public or (i["internal"], "TCP") in public:
            problem(f"{where}: a NetworkPolicy admits the internal port from everywhere")
        for frm in internal_from:
            if not frm or not all("namespaceSelector" in f and "podSelector" not in f for f in frm):
                problem(f"{where}: the internal port must be admitted only from the monitoring namespace")
        quic = i["ports"].get("quic", {}).get("containerPort")
        https = i["ports"].get("https", {}).get("containerPort")
        if w["kind"] == "Deployment":
            if (quic, "UDP") not in public or (https and (https, "TCP") not in public):
                problem(f"{where}: NetworkPolicy must admit UDP {quic} and TCP {https} from everywhere "
                        "(the public Service's 443 and edge-to-edge links arrive there)")
        elif (quic, "UDP") in public:
            problem(f"{where}: roots must admit QUIC only from the cluster's relays, not from everywhere")


if __name__ == "__main__":
    sys.exit(main())
