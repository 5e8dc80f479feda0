"""The checks behind tests/k8s that are easier in Python than in bash.

    k8s_check.py dockerfile DOCKERFILE CARGO_TOML
    k8s_check.py invariants RENDERED.yaml VALUES.yaml...   (chart defaults first)
    k8s_check.py extract-config RENDERED.yaml OUTDIR FIXTURES
                                                           each role's files as its pod has them,
                                                           under OUTDIR/<role>/etc/smsc
    k8s_check.py embedded-config CONFIG OUT ADMIN SMPP GRPC  the pod config on embedded bus and
                                                           store, loopback listeners
    k8s_check.py crd-example DOC.md CRD.yaml               DOC's SmppAccount validates
                                                           (DOC: docs/install.md)
    k8s_check.py apiserver PORT DOC.md HASH SERVICE...     a fake kube-apiserver (DOC's account)
    k8s_check.py api-wait RENDERED.yaml ROLE URL           until ROLE's watchers are watching
    k8s_check.py api-check RENDERED.yaml ROLE URL          ROLE's API calls vs token and Role
    k8s_check.py bind-status SMPP_PORT URL SYSTEM_ID PASSWORD POD
                                                           bind; the pod reports it in status
    k8s_check.py rules RENDERED.yaml OUT.rules.yaml        the PrometheusRule's groups
    k8s_check.py exprs OUT_DIR DASHBOARD.json RULES.yaml... [adapter:ADAPTER_VALUES.yaml]
        writes OUT_DIR/exprs.json (every PromQL expression, Grafana variables and
        prometheus-adapter templates expanded) and OUT_DIR/exprs.rules.yaml (each as a
        recording rule, for promtool)
    k8s_check.py metric-names EXPRS.json METRICS.txt       every name in the exposition
    k8s_check.py eval PROM_URL EXPRS.json                  every expression evaluates;
                                                           dashboard ones return series
    k8s_check.py rate PROM_URL START END BLAST_RATE        Prometheus' submit rate vs smpp-blast
    k8s_check.py absent-fires PROM_URL EXPRS.json          every absent() alert (no edge, router,
                                                           worker up) fires once smsc is stopped
    k8s_check.py kafka-topic-api RENDERED.yaml APIVERSION  every KafkaTopic is APIVERSION
    k8s_check.py namespace-refs RENDERED.yaml NAMESPACE    objects and the config name NAMESPACE
                                                           (k8s/base, k8s/overlays/example)
    k8s_check.py ports N                                   N free loopback ports in 19000-19999

Each prints what it checked and exits 1 on the first failure.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

# Grafana's variables, replaced by something PromQL accepts (as Grafana does before sending).
GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$namespace": ".*",
}

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}

# Series Prometheus makes itself for every target; not exported by the binary, never invented.
PROMETHEUS_SERIES = {"up"}

# Metrics the live run cannot produce, each with the source file that must register it
# (so a misspelt name still fails) and why. A dashboard query on nothing but these may
# return no series; nothing else may.
NO_SERIES_OK = {
    "smsc_upstream_mo_total": (
        "services/delivery-worker/src/metrics.rs",
        "MO from an SMPP upstream: the live run's upstream is smsc all itself, and an MO it"
        " delivered to the upstream's account would be routed back to that account forever",
    ),
}

ROOT = Path(__file__).resolve().parent.parent
# Where every alert's runbook_url points (prometheusRule.runbookBaseURL + #anchor).
RUNBOOKS = ROOT / "docs/runbooks.md"
# PromQL aggregation operators: each must keep `namespace` in the alert rules.
AGGREGATIONS = ("sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
                "quantile", "group", "count_values")

# The image's cargo features: the cluster backends, and the Kubernetes integration
# (accounts_crd, edge.peers.service) the chart can turn on.
IMAGE_FEATURES = ("kafka", "scylla", "k8s")

# The release namespace tests/k8s renders with (helmpy.py's default).
NAMESPACE = "smsc"

# Where the chart mounts the gRPC mTLS Secret (config grpc_tls).
GRPC_TLS_DIR = "/etc/smsc/grpc"
# Where the chart mounts the Kafka CA and client certificate Secrets (config bus.tls), and
# the fixed file names it gives their keys.
KAFKA_CA_DIR = "/etc/smsc/kafka-ca"
KAFKA_CLIENT_DIR = "/etc/smsc/kafka-client"
# Where the chart mounts the ScyllaDB password, CA and client certificate Secrets (config
# store.auth, store.tls), under fixed file names.
SCYLLA_AUTH_DIR = "/etc/smsc/scylla-auth"
SCYLLA_CA_DIR = "/etc/smsc/scylla-ca"
SCYLLA_CLIENT_DIR = "/etc/smsc/scylla-client"


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def ok(msg: str) -> None:
    print(f"  ok: {msg}")


def docs(path: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def merged_values(files: list[str]) -> dict[str, Any]:
    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    values: dict[str, Any] = {}
    for f in files:
        values = merge(values, yaml.safe_load(Path(f).read_text()) or {})
    return values


def seconds(text: str) -> int:
    m = re.fullmatch(r"([0-9]+)(s|m|h)", text)
    if not m:
        fail(f"{text!r} is not <n>s|m|h")
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600}[m[2]]


def tier_name(delay_s: int) -> str:
    """RetryConfig::tier_name (services/bus/src/config.rs), for whole seconds."""
    if delay_s % 3600 == 0:
        return f"{delay_s // 3600}h"
    if delay_s % 60 == 0:
        return f"{delay_s // 60}m"
    return f"{delay_s}s"


# ---------------------------------------------------------------------------------------

def cmd_dockerfile(dockerfile: str, cargo_toml: str) -> None:
    import tomllib

    import dockerfile as df

    cmds = df.parse_file(dockerfile)
    froms = [c for c in cmds if c.cmd.upper() == "FROM"]
    if len(froms) != 2:
        fail(f"Dockerfile: expected 2 stages (builder, runtime), found {len(froms)}")
    if froms[0].value[0] != "rust:1.95-bookworm":
        fail(f"Dockerfile: builder is {froms[0].value[0]}, want rust:1.95-bookworm")
    if froms[1].value[0] not in ("debian:bookworm-slim", "gcr.io/distroless/cc-debian12"):
        fail(f"Dockerfile: runtime is {froms[1].value[0]}")
    runs = " ".join(" ".join(c.value) for c in cmds if c.cmd.upper() == "RUN")
    for pkg in ("cmake", "g++", "pkg-config", "zlib1g-dev", "libcurl4-openssl-dev", "libssl-dev", "ca-certificates"):
        if pkg not in runs.split():
            fail(f"Dockerfile: package {pkg} is not installed")
    build = re.search(r"cargo build [^&]*", runs)
    feats = re.search(r"--features[ =]([\w,-]+)", build[0]) if build else None
    if not build or "-p smsc" not in build[0] or not feats or set(feats[1].split(",")) != set(IMAGE_FEATURES):
        fail(f"Dockerfile: want `cargo build --release -p smsc --features {','.join(IMAGE_FEATURES)}`,"
             f" got {build and build[0]}")
    features = tomllib.loads(Path(cargo_toml).read_text()).get("features", {})
    for f in IMAGE_FEATURES:
        if f not in features:
            fail(f"{cargo_toml} has no feature {f} (the Dockerfile builds with it)")
    user = [c.value[0] for c in cmds if c.cmd.upper() == "USER"]
    if user[-1:] != ["10001:10001"] and user[-1:] != ["10001"]:
        fail(f"Dockerfile: USER is {user}, want the numeric 10001")
    entry = [c for c in cmds if c.cmd.upper() == "ENTRYPOINT"]
    if not entry or list(entry[-1].value) != ["/usr/local/bin/smsc"]:
        fail("Dockerfile: ENTRYPOINT must be [\"/usr/local/bin/smsc\"]")
    # OCI labels in the runtime stage; the version from a build argument that defaults to
    # the workspace version (what the chart's appVersion names).
    runtime = cmds[cmds.index(froms[1]):]
    labels: dict[str, str] = {}
    for c in (c for c in runtime if c.cmd.upper() == "LABEL"):
        labels |= dict(zip(c.value[::2], (v.strip('"') for v in c.value[1::2])))
    want = {"title", "description", "version", "revision", "source", "licenses"}
    missing = sorted(k for k in want if f"org.opencontainers.image.{k}" not in labels)
    if missing:
        fail(f"Dockerfile: runtime stage lacks OCI labels {missing}")
    args = dict(c.value[0].split("=", 1) for c in runtime if c.cmd.upper() == "ARG" and "=" in c.value[0])
    version = tomllib.loads(Path(cargo_toml).parent.parent.parent.joinpath("Cargo.toml").read_text())[
        "workspace"]["package"]["version"]
    if labels["org.opencontainers.image.version"] != "${VERSION}" or args.get("VERSION") != version:
        fail(f"Dockerfile: image version label {labels['org.opencontainers.image.version']!r} with ARG"
             f" VERSION={args.get('VERSION')!r}, want ${{VERSION}} defaulting to {version}")
    ok(f"Dockerfile: {froms[0].value[0]} -> {froms[1].value[0]}, {build[0].strip()}, USER {user[-1]},"
       f" OCI labels ({', '.join(sorted(want))}), version {version}")


def kube_api(v: dict[str, Any]) -> dict[str, Any]:
    """What the values make the pods ask of the Kubernetes API, as the chart decides it
    (_helpers.tpl smsc.accountsCrd, smsc.rebalance, smsc.peersService, smsc.kubeApi)."""
    crd = v["accounts"].get("source", "secret") == "crd"
    a = v["edge"]["autoscaling"]
    max_edges = a["maxReplicas"] if a["enabled"] else v["edge"]["replicas"]
    rebalance = bool(v["edge"]["rebalance"]["enabled"]) and max_edges > 1
    peers = v["edge"]["rebalance"]["peers"] if rebalance else None
    rules: set[tuple[str, str, frozenset[str]]] = set()
    if crd:
        rules |= {("smsc.io", "smppaccounts", frozenset({"get", "list", "watch"})),
                  ("smsc.io", "smppaccounts/status", frozenset({"patch"})),
                  ("", "secrets", frozenset({"get", "list", "watch"}))}
    if peers == "service":
        rules.add(("discovery.k8s.io", "endpointslices", frozenset({"list", "watch"})))
    # Each edge patches its own Pod's pod-deletion-cost annotation (names unknown in advance:
    # no resourceNames), and may do nothing else with pods.
    cost = bool(v["edge"].get("podDeletionCost", {}).get("enabled"))
    if cost:
        rules.add(("", "pods", frozenset({"patch"})))
    # lib.rs: the SmppAccount watcher runs in edge and worker roles; EndpointSlices and the
    # deletion cost in the edge.
    roles = ({"edge", "worker"} if crd else set()) | ({"edge"} if peers == "service" or cost else set())
    return {"crd": crd, "rebalance": rebalance, "peers": peers, "cost": cost, "rules": rules, "roles": roles}


def role_rules(role: dict[str, Any]) -> set[tuple[str, str, frozenset[str]]]:
    return {(g, r, frozenset(rule["verbs"]))
            for rule in role.get("rules", []) for g in rule.get("apiGroups", []) for r in rule.get("resources", [])}


def mounted_files(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Path in the container -> (volume kind, ConfigMap/Secret name, key) of every file a
    ConfigMap or Secret volume puts there (volumes list their items)."""
    vols = {vol["name"]: vol for vol in pod.get("volumes", [])}
    files: dict[str, tuple[str, str, str]] = {}
    for m in container.get("volumeMounts", []):
        vol = vols[m["name"]]
        kind = "secret" if "secret" in vol else "configMap" if "configMap" in vol else None
        if kind is None:
            continue
        src = vol[kind]
        name = src.get("secretName") or src.get("name")
        items = {i["path"]: i["key"] for i in src.get("items", [])}
        if "subPath" in m:
            files[m["mountPath"]] = (kind, name, items.get(m["subPath"], m["subPath"]))
        else:
            for path, key in items.items():
                files[f"{m['mountPath'].rstrip('/')}/{path}"] = (kind, name, key)
    return files


def cmd_invariants(rendered: str, *values_files: str) -> None:
    v = merged_values(list(values_files))
    objs = docs(rendered)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)

    def one(kind: str, name_suffix: str) -> dict[str, Any]:
        found = [o for o in by_kind.get(kind, []) if o["metadata"]["name"].endswith(name_suffix)]
        if len(found) != 1:
            fail(f"expected one {kind} *{name_suffix}, found {len(found)}")
        return found[0]

    cm = one("ConfigMap", "-config")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    ports = v["ports"]
    plaintext = v["edge"]["plaintext"]
    listeners = {
        "admin_listen": config.get("admin_listen"),
        "edge.grpc_listen": config["edge"].get("grpc_listen"),
    }
    if v["edge"]["tls"]["enabled"]:
        listeners["edge.tls.listen"] = config["edge"]["tls"]["listen"]
    http = v["edge"]["http"]["enabled"]
    if http:
        listeners["edge.http_listen"] = config["edge"].get("http_listen")
        if config["edge"].get("http_listen") != f"0.0.0.0:{ports['http']}":
            fail(f"edge.http.enabled: config edge.http_listen is {config['edge'].get('http_listen')!r},"
                 f" want 0.0.0.0:{ports['http']}")
    elif "http_listen" in config["edge"] or "http" in config["edge"]:
        fail("edge.http.enabled is false but config has edge.http_listen or edge.http")
    if plaintext:
        listeners["edge.smpp_listen"] = config["edge"].get("smpp_listen")
    elif config["edge"].get("smpp_listen") != f"127.0.0.1:{ports['smpp']}":
        # TLS only: the edge cannot close its plaintext listener; it must stay in the pod.
        fail(f"edge.plaintext false: config edge.smpp_listen is {config['edge'].get('smpp_listen')!r},"
             f" want 127.0.0.1:{ports['smpp']}")
    for key, addr in listeners.items():
        if not (addr or "").startswith("0.0.0.0:"):
            fail(f"config {key} is {addr!r}: pods must listen on 0.0.0.0")
    if config["bus"]["kind"] != "kafka" or config["store"]["kind"] != "scylla":
        fail("config: bus.kind must be kafka and store.kind scylla")
    if "accounts" in config or "password_hash" in cm["data"]["config.yaml"]:
        fail("the ConfigMap must not hold accounts or password hashes")
    ok(f"ConfigMap: listeners {sorted(listeners.values())}"
       f"{'' if plaintext else ', plaintext SMPP on ' + config['edge']['smpp_listen'] + ' only (TLS only)'},"
       " kafka + scylla, no password hashes")

    fullname = cm["metadata"]["name"].removesuffix("-config")
    api = kube_api(v)
    if api["crd"]:
        want_crd = {"namespace": NAMESPACE, "status_interval": v["accounts"]["crd"]["statusInterval"]}
        if v["accounts"]["crd"].get("secretSelector"):
            want_crd["secret_selector"] = v["accounts"]["crd"]["secretSelector"]
        if config.get("accounts_crd") != want_crd or "accounts_file" in config:
            fail(f"accounts.source crd: config accounts_crd {config.get('accounts_crd')}, want {want_crd}"
                 f" and no accounts_file (got {config.get('accounts_file')!r})")
        if [o for o in by_kind.get("Secret", []) if o["metadata"]["name"].endswith("-accounts")]:
            fail("accounts.source crd: the chart must not render an accounts Secret")
        ok(f"accounts from SmppAccount resources: accounts_crd {want_crd}, no accounts file or Secret")
    else:
        if "accounts_crd" in config or not config.get("accounts_file"):
            fail("accounts.source secret: config needs accounts_file and no accounts_crd")
        ok(f"accounts from the Secret's file: accounts_file {config['accounts_file']}")

    edge_cfg = config["edge"]
    for key in ("max_connections_per_ip", "pdu_read_timeout", "lockout"):
        if edge_cfg.get(key) != v["config"]["edge"][key]:
            fail(f"config edge.{key} is {edge_cfg.get(key)!r}, the values say {v['config']['edge'][key]!r}")
    ok(f"edge protections: max_connections_per_ip {edge_cfg['max_connections_per_ip']}, pdu_read_timeout"
       f" {edge_cfg['pdu_read_timeout']}, lockout {edge_cfg['lockout']}")

    want_peers = ({"service": f"{fullname}-smpp"} if api["peers"] == "service"
                  else {"dns": f"{fullname}-edge-peers.{NAMESPACE}.svc"} if api["peers"] == "dns" else None)
    if edge_cfg.get("peers") != want_peers:
        fail(f"config edge.peers is {edge_cfg.get('peers')}, want {want_peers}")
    if api["rebalance"] and edge_cfg.get("rebalance") != v["config"]["edge"]["rebalance"]:
        fail(f"config edge.rebalance {edge_cfg.get('rebalance')}, want {v['config']['edge']['rebalance']}")
    if not api["rebalance"] and "rebalance" in edge_cfg:
        fail("rebalancing is off: config edge.rebalance should be left out")
    edge_selector = one("Deployment", "-edge")["spec"]["selector"]["matchLabels"]
    peer_svcs = [o for o in by_kind.get("Service", []) if o["metadata"]["name"].endswith("-edge-peers")]
    if bool(peer_svcs) != (api["peers"] == "dns"):
        fail(f"Service *-edge-peers present={bool(peer_svcs)}, but peers source is {api['peers']}")
    if peer_svcs:
        spec = peer_svcs[0]["spec"]
        if (spec.get("clusterIP") != "None" or spec.get("publishNotReadyAddresses")
                or spec.get("selector") != edge_selector
                or f"{peer_svcs[0]['metadata']['name']}.{NAMESPACE}.svc" != want_peers["dns"]):
            fail(f"Service {peer_svcs[0]['metadata']['name']} must be headless, ready pods only, select the edges,"
                 f" and be what edge.peers.dns names: {spec}")
    ok(f"rebalancing {'on' if api['rebalance'] else 'off'}: edge.peers {want_peers}"
       + (f", edge.rebalance {edge_cfg['rebalance']}" if api["rebalance"] else ""))
    want_cost = {"interval": v["edge"]["podDeletionCost"]["interval"]} if api["cost"] else None
    if edge_cfg.get("pod_deletion_cost") != want_cost:
        fail(f"config edge.pod_deletion_cost is {edge_cfg.get('pod_deletion_cost')}, want {want_cost}")
    ok(f"pod-deletion-cost {'on' if api['cost'] else 'off'}: edge.pod_deletion_cost {want_cost}")

    g = v["grpcTls"]
    if g["enabled"]:
        want_tls = {"ca": f"{GRPC_TLS_DIR}/ca.crt", "cert": f"{GRPC_TLS_DIR}/tls.crt", "key": f"{GRPC_TLS_DIR}/tls.key"}
        if g.get("serverName"):
            want_tls["server_name"] = g["serverName"]
        if config.get("grpc_tls") != want_tls:
            fail(f"config grpc_tls {config.get('grpc_tls')}, want {want_tls}")
        ok(f"gRPC mTLS: grpc_tls {want_tls}")
    elif "grpc_tls" in config:
        fail("grpcTls.enabled is false but config has grpc_tls")

    def client_tls(section: str, value: str, ca_dir: str, client_dir: str, cert: str, key: str):
        """config <section>.tls is exactly what values.<value> asks for; returns it."""
        t = v[value]
        got = config[section].get("tls")
        if not t["enabled"]:
            if got is not None:
                fail(f"{value}.enabled is false but config has {section}.tls")
            return None
        want = {"ca": f"{ca_dir}/ca.crt"}
        if t.get("clientSecret"):
            want |= {"cert": f"{client_dir}/{cert}", "key": f"{client_dir}/{key}"}
        if got != want:
            fail(f"config {section}.tls {got}, want {want}")
        return want

    k = v["kafkaTls"]
    want_bus_tls = client_tls("bus", "kafkaTls", KAFKA_CA_DIR, KAFKA_CLIENT_DIR, "user.crt", "user.key")
    if want_bus_tls:
        proto = str(config["bus"].get("extra", {}).get("security.protocol", "ssl")).lower()
        if proto not in ("ssl", "sasl_ssl"):
            fail(f"kafkaTls.enabled but config bus.extra security.protocol is {proto}: TLS would be off")
        ok(f"Kafka TLS: bus.tls {want_bus_tls}" + (f", security.protocol {proto} (bus.extra)"
                                                   if "security.protocol" in config["bus"].get("extra", {}) else ""))

    sa, st = v["scyllaAuth"], v["scyllaTls"]
    if sa["enabled"]:
        want_auth = {"username": sa["username"], "password_file": f"{SCYLLA_AUTH_DIR}/password"}
        if config["store"].get("auth") != want_auth:
            fail(f"config store.auth {config['store'].get('auth')}, want {want_auth}")
        ok(f"ScyllaDB auth: store.auth {want_auth}")
    elif "auth" in config["store"]:
        fail("scyllaAuth.enabled is false but config has store.auth")
    want_store_tls = client_tls("store", "scyllaTls", SCYLLA_CA_DIR, SCYLLA_CLIENT_DIR, "tls.crt", "tls.key")
    if want_store_tls:
        ok(f"ScyllaDB TLS: store.tls {want_store_tls}")

    # Every file the config names is mounted, from the right Secret and key, read-only,
    # in every role that reads it; and no role mounts a Secret it does not read.
    rendered_secrets = {o["metadata"]["name"] for o in by_kind.get("Secret", [])}
    needs: dict[str, dict[str, tuple[str, str]]] = {r: {} for r in ("edge", "router", "worker")}
    if config.get("accounts_file"):
        src = v["accounts"]["existingSecret"] or f"{fullname}-accounts"
        for r in needs:  # every role loads the file with its config
            needs[r][config["accounts_file"]] = (src, "accounts.yaml")
    if config.get("grpc_tls"):
        for r in needs:
            for field, key in (("ca", "ca.crt"), ("cert", "tls.crt"), ("key", "tls.key")):
                needs[r][config["grpc_tls"][field]] = (g["existingSecret"], key)
    bus_tls = config["bus"].get("tls")
    if bus_tls:
        for r in needs:  # every role uses the bus: the edge publishes, router and worker consume
            needs[r][bus_tls["ca"]] = (k["caSecret"], k["caKey"])
            if bus_tls.get("cert"):
                needs[r][bus_tls["cert"]] = (k["clientSecret"], k["certKey"])
                needs[r][bus_tls["key"]] = (k["clientSecret"], k["keyKey"])
    store_auth, store_tls = config["store"].get("auth"), config["store"].get("tls")
    for r in needs:  # every role uses the store: the edge's session directory, router and worker messages
        if store_auth:
            needs[r][store_auth["password_file"]] = (sa["existingSecret"], sa["passwordKey"])
        if store_tls:
            needs[r][store_tls["ca"]] = (st["caSecret"], st["caKey"])
            if store_tls.get("cert"):
                needs[r][store_tls["cert"]] = (st["clientSecret"], st["certKey"])
                needs[r][store_tls["key"]] = (st["clientSecret"], st["keyKey"])
    if config["edge"].get("tls"):
        src = v["edge"]["tls"]["existingSecret"] or f"{fullname}-tls"
        needs["edge"][config["edge"]["tls"]["cert"]] = (src, "tls.crt")
        needs["edge"][config["edge"]["tls"]["key"]] = (src, "tls.key")
    for role, files in needs.items():
        d = one("Deployment", f"-{role}")
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        mounted = mounted_files(pod, c)
        for path, (secret, key) in files.items():
            got = mounted.get(path)
            if got != ("secret", secret, key):
                fail(f"Deployment {d['metadata']['name']}: {path} (in the config) comes from {got},"
                     f" want Secret {secret} key {key}")
            if secret not in rendered_secrets and secret not in (v["accounts"]["existingSecret"],
                                                                 v["edge"]["tls"]["existingSecret"],
                                                                 g["existingSecret"],
                                                                 k["caSecret"], k["clientSecret"],
                                                                 sa["existingSecret"], st["caSecret"],
                                                                 st["clientSecret"]):
                fail(f"Secret {secret} is neither rendered nor a Secret named in the values")
        extra = {p for p, (kind, _, _) in mounted.items() if kind == "secret"} - set(files)
        if extra:
            fail(f"Deployment {d['metadata']['name']} mounts Secret files its config does not use: {sorted(extra)}")
        for m in c["volumeMounts"]:
            vol = next(x for x in pod["volumes"] if x["name"] == m["name"])
            if "secret" in vol and not m.get("readOnly"):
                fail(f"Deployment {d['metadata']['name']}: Secret volume {m['name']} must be mounted readOnly")
        if config.get("accounts_file"):
            accounts_dir = str(Path(config["accounts_file"]).parent)
            if accounts_dir not in {m["mountPath"] for m in c["volumeMounts"] if "subPath" not in m}:
                fail(f"Deployment {d['metadata']['name']}: the accounts Secret must be a directory mount"
                     f" at {accounts_dir} (no subPath), so that updates reach the pod")
    ok("every file the config names (accounts, SMPP TLS, gRPC mTLS, Kafka TLS, ScyllaDB password and TLS) is"
       " mounted read-only from its Secret in each role that reads it, and nothing else")

    # RBAC: a Role and RoleBinding exactly when a pod calls the API, granting exactly that.
    if by_kind.get("ClusterRole") or by_kind.get("ClusterRoleBinding"):
        fail("the chart must not create cluster-wide RBAC")
    want_rbac = bool(api["rules"]) and v.get("rbac", {}).get("create", True)
    roles_, bindings = by_kind.get("Role", []), by_kind.get("RoleBinding", [])
    deployments = {r: one("Deployment", f"-{r}")["spec"]["template"]["spec"] for r in ("edge", "router", "worker")}
    sa_name = deployments["edge"]["serviceAccountName"]
    if {p["serviceAccountName"] for p in deployments.values()} != {sa_name}:
        fail("every role must run as the chart's one service account")
    if want_rbac:
        if len(roles_) != 1 or len(bindings) != 1:
            fail(f"want one Role and one RoleBinding, found {len(roles_)} and {len(bindings)}")
        got_rules = role_rules(roles_[0])
        if got_rules != api["rules"]:
            fail(f"Role {roles_[0]['metadata']['name']} grants {sorted(got_rules)}, want {sorted(api['rules'])}")
        b = bindings[0]
        if (b["roleRef"] != {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles_[0]["metadata"]["name"]}
                or b["subjects"] != [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}]):
            fail(f"RoleBinding {b['metadata']['name']}: {b['roleRef']} {b['subjects']}")
        crds = by_kind.get("CustomResourceDefinition", [])
        if api["crd"] and crds:
            crd = next(c for c in crds if c["metadata"]["name"] == "smppaccounts.smsc.io")
            if (crd["spec"]["group"], crd["spec"]["names"]["plural"]) != ("smsc.io", "smppaccounts") or not all(
                    ver.get("subresources", {}).get("status") is not None for ver in crd["spec"]["versions"]):
                fail("the CRD's group, plural or status subresource differ from what the Role grants")
        ok(f"RBAC: Role + RoleBinding for ServiceAccount {sa_name}: "
           + "; ".join(f"{'/'.join(filter(None, (gr, res)))} {sorted(vb)}" for gr, res, vb in sorted(api["rules"])))
    elif roles_ or bindings:
        fail(f"no pod calls the Kubernetes API (or rbac.create is false), yet {len(roles_)} Role(s)"
             f" and {len(bindings)} RoleBinding(s) are rendered")
    else:
        ok("no RBAC: no pod calls the Kubernetes API")
    always = v["serviceAccount"]["automountToken"]
    for r, pod in deployments.items():
        want = always or r in api["roles"]
        if pod.get("automountServiceAccountToken") is not want:
            fail(f"Deployment *-{r}: automountServiceAccountToken {pod.get('automountServiceAccountToken')}, want {want}")
    if v["serviceAccount"]["create"]:
        sa = one("ServiceAccount", sa_name)
        if sa.get("automountServiceAccountToken") is not (always or bool(api["roles"])):
            fail(f"ServiceAccount {sa_name}: automountServiceAccountToken {sa.get('automountServiceAccountToken')}")
    ok(f"service account token mounted in {sorted(api['roles']) or 'no role'}"
       f"{' (and every role: serviceAccount.automountToken)' if always else ''}")

    drain = seconds(config["edge"].get("drain_timeout", "20s"))
    roles = ("edge", "router", "worker")
    for role in roles:
        d = one("Deployment", f"-{role}")
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        where = f"Deployment {d['metadata']['name']}"
        if pod.get("enableServiceLinks") is not False:
            fail(f"{where}: enableServiceLinks must be false (SMSC_* service env vars read as config keys)")
        if c["args"][:3] != [role, "--config", "/etc/smsc/config.yaml"]:
            fail(f"{where}: args {c['args']}")
        sc, psc = c["securityContext"], pod["securityContext"]
        if not (psc.get("runAsNonRoot") and sc.get("readOnlyRootFilesystem")
                and sc.get("allowPrivilegeEscalation") is False
                and sc.get("capabilities", {}).get("drop") == ["ALL"]):
            fail(f"{where}: securityContext {psc} {sc}")
        admin_port = {p["name"]: p["containerPort"] for p in c["ports"]}.get("admin")
        if admin_port != ports["admin"]:
            fail(f"{where}: no admin port {ports['admin']}")
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/live"), ("startupProbe", "/live")):
            got = c[probe]["httpGet"]
            if got["path"] != path or got["port"] != "admin":
                fail(f"{where}: {probe} {got}")
        res = c.get("resources", {})
        if not res.get("requests") or not res.get("limits"):
            fail(f"{where}: resources need requests and limits")
        if v["topologySpread"]["enabled"] and not pod.get("topologySpreadConstraints"):
            fail(f"{where}: no topologySpreadConstraints")
        checksum = d["spec"]["template"]["metadata"]["annotations"].get("checksum/config")
        if checksum != hashlib.sha256(cm["data"]["config.yaml"].rstrip("\n").encode()).hexdigest():
            fail(f"{where}: checksum/config {checksum} is not the sha256 of the ConfigMap's config.yaml:"
                 " a config change would not roll the pods")
        want_strategy = v[role]["updateStrategy"]
        if want_strategy["type"] == "Recreate":
            want_strategy = {"type": "Recreate"}  # rollingUpdate (merged in from the defaults) is left out
        if d["spec"].get("strategy") != want_strategy:
            fail(f"{where}: strategy {d['spec'].get('strategy')}, {role}.updateStrategy says {want_strategy}")
        env = [e["name"] for e in c["env"]]
        pod_name = next(e for e in c["env"] if e["name"] == "POD_NAME")
        if pod_name["valueFrom"]["fieldRef"]["fieldPath"] != "metadata.name":
            fail(f"{where}: POD_NAME must come from metadata.name")
        if role == "edge":
            adv = next((e for e in c["env"] if e["name"] == "SMSC_EDGE__GRPC_ADVERTISE"), None)
            if not adv or adv.get("value") != f"$(POD_IP):{ports['grpc']}":
                fail(f"{where}: SMSC_EDGE__GRPC_ADVERTISE must be $(POD_IP):{ports['grpc']}")
            if "POD_IP" not in env or env.index("POD_IP") > env.index("SMSC_EDGE__GRPC_ADVERTISE"):
                fail(f"{where}: POD_IP must be defined before SMSC_EDGE__GRPC_ADVERTISE")
            sleep = c["lifecycle"]["preStop"]["exec"]["command"]
            pre = int(sleep[1])
            grace = pod["terminationGracePeriodSeconds"]
            if grace < pre + drain + 5:
                fail(f"{where}: grace {grace}s < preStop {pre}s + drain {drain}s + 5s margin")
            ok(f"{where}: grace {grace}s >= preStop {pre}s + drain_timeout {drain}s + margin;"
               f" advertise $(POD_IP):{ports['grpc']}")
        ok(f"{where}: args, probes /ready /live on admin, securityContext, resources, spread, env,"
           f" strategy {d['spec']['strategy']}, checksum/config of the ConfigMap")

    for role in roles:
        if v[role]["pdb"]["enabled"]:
            one("PodDisruptionBudget", f"-{role}")
    ok("PodDisruptionBudget for every role")

    svc = one("Service", "-smpp")
    want = (({"smpp": ports["smpp"]} if plaintext else {})
            | ({"smpp-tls": ports["smppTls"]} if v["edge"]["tls"]["enabled"] else {})
            | ({"http": ports["http"]} if http else {}))
    got = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    if got != want or svc["spec"]["type"] != v["edge"]["service"]["type"]:
        fail(f"Service smpp: {svc['spec']['type']} {got}, want {v['edge']['service']['type']} {want}")
    if svc["spec"]["type"] in ("LoadBalancer", "NodePort"):
        node_ports = {p["name"]: p.get("nodePort") for p in svc["spec"]["ports"]}
        names = {"smpp": "smpp", "smpp-tls": "smppTls", "http": "http"}
        want_np = {k: v["edge"]["service"]["nodePorts"].get(names[k]) for k in want}
        if node_ports != want_np:
            fail(f"Service smpp: nodePorts {node_ports}, want {want_np} (edge.service.nodePorts)")
    edge_c = one("Deployment", "-edge")["spec"]["template"]["spec"]["containers"][0]
    edge_ports = {p["name"]: p["containerPort"] for p in edge_c["ports"]}
    if {k: edge_ports.get(k) for k in ("smpp", "smpp-tls", "http") if k in edge_ports} != want:
        fail(f"Deployment *-edge: SMPP and HTTP container ports {edge_ports}, want {want}")
    for d in (o for o in by_kind.get("Deployment", []) if not o["metadata"]["name"].endswith("-edge")):
        if any(p["name"] == "http" for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]):
            fail(f"Deployment {d['metadata']['name']}: only the edges serve the HTTP API")
    for s in (svc, *peer_svcs):
        unknown = [p["targetPort"] for p in s["spec"]["ports"] if p["targetPort"] not in edge_ports]
        if unknown:
            fail(f"Service {s['metadata']['name']}: targetPort {unknown} is not a port of the edge container")
    if svc["spec"]["selector"] != one("Deployment", "-edge")["spec"]["selector"]["matchLabels"]:
        fail("Service smpp must select exactly the edge pods (edge.peers.service counts its endpoints)")
    etp = svc["spec"].get("externalTrafficPolicy")
    want_etp = (v["edge"]["service"]["externalTrafficPolicy"] or "Local"
                if svc["spec"]["type"] in ("LoadBalancer", "NodePort") else None)
    if etp != want_etp:
        fail(f"Service smpp: externalTrafficPolicy {etp}, want {want_etp}")
    grpc = one("Service", "-edge-grpc")
    if grpc["spec"].get("clusterIP") != "None" or [p["port"] for p in grpc["spec"]["ports"]] != [ports["grpc"]]:
        fail("Service edge-grpc must be headless on the gRPC port")
    ok(f"Services: smpp {svc['spec']['type']} {got}{f' externalTrafficPolicy {etp}' if etp else ''},"
       f" headless edge gRPC {ports['grpc']}")

    a = v["edge"]["autoscaling"]
    if a["enabled"]:
        hpa = one("HorizontalPodAutoscaler", "-edge")
        types = [m["type"] for m in hpa["spec"]["metrics"]]
        if hpa["apiVersion"] != "autoscaling/v2" or types[0] != "Resource":
            fail(f"HPA: {hpa['apiVersion']} {types}")
        if a["customMetrics"]["enabled"]:
            names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
            if not names:
                fail("HPA: customMetrics.enabled but no Pods metric")
        if "replicas" in one("Deployment", "-edge")["spec"]:
            fail("the edge Deployment must not set replicas while the HPA owns them")
        ok(f"HPA autoscaling/v2 on the edge Deployment: {types}")

    if v["kafkaTopics"]["enabled"]:
        # Exactly the topics the roles' config derives (services/bus/src/topics.rs
        # Topics::all): bus.topic_prefix (default smsc) and retry.tiers as the pods read them.
        p = config["bus"].get("topic_prefix", "smsc")
        classes = ["interactive", "", "bulk"]  # per traffic class; standard: the bare name
        want_topics = [f"{p}.{stage}{'.' + c if c else ''}" for stage in ("submit", "deliver") for c in classes]
        want_topics += [f"{p}.notify", f"{p}.mo", f"{p}.pressure", f"{p}.cdr"] + [
            f"{p}.retry.{tier_name(seconds(t))}" for t in (config.get("retry") or {}).get("tiers", [])
        ]
        got_topics = [t["spec"]["topicName"] for t in by_kind.get("KafkaTopic", [])]
        if got_topics != want_topics:
            fail(f"KafkaTopics {got_topics}, want {want_topics}")
        names = [t["metadata"]["name"] for t in by_kind["KafkaTopic"]]
        if names != [t.replace(".", "-") for t in want_topics]:
            fail(f"KafkaTopic objects {names}, want the topic names with dashes")
        # Rendered without a cluster (no kafka.strimzi.io/v1 in .Capabilities): v1beta2 unless forced.
        want_api = v["kafkaTopics"].get("apiVersion") or "kafka.strimzi.io/v1beta2"
        apis = {t["apiVersion"] for t in by_kind["KafkaTopic"]}
        if apis != {want_api}:
            fail(f"KafkaTopics are {sorted(apis)}, want {want_api}")
        ok(f"KafkaTopics ({want_api}): {got_topics}")

    if v["dashboard"]["enabled"]:
        dash = one("ConfigMap", "-dashboard")
        if dash["metadata"]["labels"].get("grafana_dashboard") != "1":
            fail("dashboard ConfigMap needs the label grafana_dashboard: \"1\"")
        json.loads(dash["data"]["smsc.json"])
        ok("dashboard ConfigMap labelled grafana_dashboard=1, JSON parses")
    for kind, flag in (("ServiceMonitor", "serviceMonitor"), ("PrometheusRule", "prometheusRule"),
                       ("NetworkPolicy", "networkPolicy")):
        if bool(by_kind.get(kind)) != bool(v[flag]["enabled"]):
            fail(f"{kind} present={bool(by_kind.get(kind))} but {flag}.enabled={v[flag]['enabled']}")
    if v["networkPolicy"]["enabled"]:
        check_network_policy(v, one("NetworkPolicy", fullname),
                             {r: one("Deployment", f"-{r}") for r in roles}, edge_selector)
    if v["prometheusRule"]["enabled"]:
        check_rules(v, one("PrometheusRule", fullname))
    check_schema_and_topics(v, config, by_kind, fullname)


def check_schema_and_topics(v: dict[str, Any], config: dict[str, Any],
                            by_kind: dict[str, list[dict[str, Any]]], fullname: str) -> None:
    """Least privilege: the roles migrate only without the migration Job, and create topics
    only when nothing else makes them (or when told); the Job is a pre-install/pre-upgrade
    hook on the roles' store with credentials of its own."""
    m = v["migrations"]
    if config["store"].get("migrate") is not (not m["enabled"]):
        fail(f"config store.migrate is {config['store'].get('migrate')!r} with migrations.enabled {m['enabled']}")
    asked = (v["config"].get("bus") or {}).get("create_topics")
    want = (not v["kafkaTopics"]["enabled"]) if asked is None else asked
    if config["bus"].get("create_topics") is not want:
        fail(f"config bus.create_topics is {config['bus'].get('create_topics')!r}, want {want}")
    jobs = [o for o in by_kind.get("Job", []) if o["metadata"]["name"] == f"{fullname}-migrate"]
    if not m["enabled"]:
        if jobs:
            fail("a migration Job with migrations.enabled false")
        ok(f"no migration Job: the roles migrate (store.migrate true); bus.create_topics {want}")
        return
    if len(jobs) != 1:
        fail("migrations.enabled: expected one Job <fullname>-migrate")
    job = jobs[0]
    hooks = job["metadata"].get("annotations") or {}
    if set(hooks.get("helm.sh/hook", "").split(",")) != {"pre-install", "pre-upgrade"}:
        fail(f"migration Job hooks: {hooks.get('helm.sh/hook')!r}")
    cms = [o for o in by_kind.get("ConfigMap", []) if o["metadata"]["name"] == f"{fullname}-migrate"]
    if len(cms) != 1 or int(cms[0]["metadata"]["annotations"]["helm.sh/hook-weight"]) >= int(hooks["helm.sh/hook-weight"]):
        fail("the migration Job's ConfigMap must be a hook created before it (lower weight)")
    store = yaml.safe_load(cms[0]["data"]["config.yaml"])["store"]
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    if c["args"][:3] != ["migrate", "--config", "/etc/smsc/config.yaml"]:
        fail(f"migration Job args {c['args']}")
    if pod.get("automountServiceAccountToken") is not False or pod.get("enableServiceLinks") is not False:
        fail("the migration Job needs no API token and no service links (SMSC_* variables)")
    same = {k: val for k, val in config["store"].items() if k not in ("auth", "tls", "migrate")}
    if {k: val for k, val in store.items() if k not in ("auth", "tls")} != same:
        fail(f"the migration Job's store {store} is not the roles' {config['store']}")
    mounts = {mt["name"]: mt["mountPath"] for mt in c["volumeMounts"]}
    secrets = {vol["name"]: vol["secret"]["secretName"] for vol in pod["volumes"] if "secret" in vol}
    auth_secret = m["scyllaAuth"]["existingSecret"] or (v["scyllaAuth"]["existingSecret"] if v["scyllaAuth"]["enabled"] else "")
    if auth_secret:
        want_user = m["scyllaAuth"]["username"] if m["scyllaAuth"]["existingSecret"] else v["scyllaAuth"]["username"]
        if store.get("auth", {}).get("username") != want_user or secrets.get("scylla-auth") != auth_secret \
                or not store["auth"]["password_file"].startswith(mounts["scylla-auth"] + "/"):
            fail(f"the migration Job's credentials: {store.get('auth')}, Secret {secrets.get('scylla-auth')}")
    elif "auth" in store:
        fail("migration Job: store.auth without a Secret")
    client = (m["clientSecret"] or v["scyllaTls"]["clientSecret"]) if v["scyllaTls"]["enabled"] else ""
    if client and (secrets.get("scylla-client") != client or "cert" not in store.get("tls", {})):
        fail(f"the migration Job's client certificate: Secret {secrets.get('scylla-client')}, want {client}")
    ok(f"migration Job (pre-install, pre-upgrade) as {(store.get('auth') or {}).get('username', 'no role')}"
       f"{', certificate ' + client if client else ''}; roles store.migrate false; bus.create_topics {want}")


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels only: the chart writes no expressions) selects labels."""
    if set(selector) - {"matchLabels"}:
        fail(f"selector {selector}: only matchLabels expected")
    return all(labels.get(k) == val for k, val in selector.get("matchLabels", {}).items())


def check_network_policy(v: dict[str, Any], np: dict[str, Any], deployments: dict[str, dict[str, Any]],
                         edge_selector: dict[str, str]) -> None:
    """The NetworkPolicy selects every role's pods; SMPP is open to networkPolicy.smppFrom (all
    when empty) on exactly the ports the edges expose; gRPC only to the release's own pods;
    admin to them and metricsFrom; egress restricted exactly when networkPolicy.egress is set."""
    n, ports = v["networkPolicy"], v["ports"]
    spec, name = np["spec"], np["metadata"]["name"]
    pods = {r: d["spec"]["template"]["metadata"]["labels"] for r, d in deployments.items()}
    missed = [r for r, labels in pods.items() if not selects(spec["podSelector"], labels)]
    if missed:
        fail(f"NetworkPolicy {name} does not select the {missed} pods: {spec['podSelector']}")
    # The release's pods and nothing else: the labels every role's pods share minus the role.
    release = {k: val for k, val in edge_selector.items() if k != "app.kubernetes.io/component"}

    def own_pods(peer: dict[str, Any]) -> bool:
        return (set(peer) == {"podSelector"} and selects(peer["podSelector"], pods["edge"])
                and all(peer["podSelector"].get("matchLabels", {}).get(k) == val for k, val in release.items()))

    rules = spec.get("ingress", [])

    def rules_for(port: int) -> list[dict[str, Any]]:
        """The ingress rules that let TCP traffic to `port` in (a rule without ports: every port)."""
        return [r for r in rules
                if not r.get("ports") or any(p.get("port") == port and p.get("protocol", "TCP") == "TCP"
                                             for p in r["ports"])]

    smpp_ports = ([ports["smpp"]] if v["edge"]["plaintext"] else []) + (
        [ports["smppTls"]] if v["edge"]["tls"]["enabled"] else []) + (
        [ports["http"]] if v["edge"]["http"]["enabled"] else [])
    for port in smpp_ports:
        if not any(r.get("from", []) == n["smppFrom"] for r in rules_for(port)):
            fail(f"NetworkPolicy {name}: SMPP/HTTP port {port} is not open to smppFrom {n['smppFrom'] or 'anywhere'}")
    if not v["edge"]["http"]["enabled"] and rules_for(ports["http"]):
        fail(f"NetworkPolicy {name}: edge.http.enabled is false, yet port {ports['http']} is let in:"
             f" {rules_for(ports['http'])}")
    if not v["edge"]["plaintext"] and rules_for(ports["smpp"]):
        fail(f"NetworkPolicy {name}: edge.plaintext is false, yet port {ports['smpp']} is let in:"
             f" {rules_for(ports['smpp'])}")
    grpc = rules_for(ports["grpc"])
    if not grpc:
        fail(f"NetworkPolicy {name}: nothing may reach the gRPC port {ports['grpc']}: workers cannot reach edges")
    for r in grpc:
        if not r.get("from") or not all(own_pods(peer) for peer in r["from"]):
            fail(f"NetworkPolicy {name}: the gRPC port {ports['grpc']} is open beyond the release's pods: {r}")
    admin_from = [peer for r in rules_for(ports["admin"]) for peer in r.get("from", [{}])]
    if not any(own_pods(peer) for peer in admin_from) or any(peer not in admin_from for peer in n["metricsFrom"]):
        fail(f"NetworkPolicy {name}: the admin port {ports['admin']} must be open to the release's pods and"
             f" metricsFrom {n['metricsFrom']}; it is open to {admin_from}")
    for extra in n["ingress"]:
        if extra not in rules:
            fail(f"NetworkPolicy {name}: networkPolicy.ingress rule {extra} is missing")
    egress = "Egress" in spec.get("policyTypes", [])
    if egress != bool(n["egress"]) or (egress and any(e not in spec.get("egress", []) for e in n["egress"])):
        fail(f"NetworkPolicy {name}: policyTypes {spec.get('policyTypes')}, egress {spec.get('egress')};"
             f" networkPolicy.egress is {n['egress']}")
    if egress and not any(r.get("to") and all(own_pods(peer) for peer in r["to"])
                          and any(p.get("port") == ports["grpc"] for p in r.get("ports", []))
                          for r in spec["egress"]):
        fail(f"NetworkPolicy {name}: egress is restricted but the release's pods cannot reach each other's gRPC")
    ok(f"NetworkPolicy {name}: selects edge, router and worker pods; SMPP/HTTP {smpp_ports} from"
       f" {n['smppFrom'] or 'anywhere'}; gRPC {ports['grpc']} from the release's pods only; admin"
       f" {ports['admin']} from them and {n['metricsFrom']}; egress {'restricted' if egress else 'open'}")


def runbook_anchors(path: Path) -> list[str]:
    """GitHub's anchors of the `## ` sections of a Markdown file."""
    anchors = []
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            anchors.append(re.sub(r"[^a-z0-9 _-]", "", line[3:].strip().lower()).replace(" ", "-"))
    return anchors


def aggregation_groupings(expr: str) -> list[tuple[str, str | None]]:
    """Each aggregation in a PromQL expression as (operator, its `by` labels or None when it
    has no `by`: `without` and bare ones count as None)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    out = []
    for m in re.finditer(r"\b(%s)\b\s*(?:(by|without)\s*\(([^)]*)\))?\s*\(" % "|".join(AGGREGATIONS), s):
        by = m[3] if m[2] == "by" else None
        if by is None:  # `sum(...) by (x)`: the clause after the parentheses
            depth, i = 0, m.end() - 1
            for i in range(m.end() - 1, len(s)):
                depth += {"(": 1, ")": -1}.get(s[i], 0)
                if depth == 0:
                    break
            after = re.match(r"\s*by\s*\(([^)]*)\)", s[i + 1:])
            by = after[1] if after else None
        out.append((m[1], by))
    return out


def check_rules(v: dict[str, Any], rule: dict[str, Any]) -> None:
    """Every alert: a runbook_url to its own section of docs/runbooks.md (one section per
    alert, none left over), aggregations that keep `namespace`, and absent() alerts (whose
    result has no labels) carrying the release namespace as a label; one absent() alert per role."""
    base = v["prometheusRule"]["runbookBaseURL"]
    anchors = runbook_anchors(RUNBOOKS)
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    absent_roles = {}
    for r in alerts:
        name, expr = r["alert"], r["expr"]
        url = r.get("annotations", {}).get("runbook_url", "")
        if url != f"{base}#{name.lower()}" or name.lower() not in anchors:
            fail(f"alert {name}: runbook_url {url!r}, want {base}#{name.lower()} and a section"
                 f" `## {name}` in {RUNBOOKS.relative_to(ROOT)}")
        for op, by in aggregation_groupings(expr):
            if by is None or "namespace" not in [x.strip() for x in by.split(",")]:
                fail(f"alert {name}: {op}{f' by ({by})' if by else ''} drops `namespace`: {expr}")
        if expr.lstrip().startswith("absent("):
            if r.get("labels", {}).get("namespace") != NAMESPACE:
                fail(f"alert {name}: absent() has no labels; the rule needs labels.namespace {NAMESPACE}")
            role = re.search(r'role="(\w+)"', expr)
            absent_roles[role[1] if role else None] = name
        elif "namespace" in r.get("labels", {}):
            fail(f"alert {name}: a static namespace label would hide the series' own")
    if set(absent_roles) != {"edge", "router", "worker"}:
        fail(f"want one absent() alert per role (edge, router, worker), found {absent_roles}")
    extra = set(anchors) - {r["alert"].lower() for r in alerts}
    if extra:
        fail(f"{RUNBOOKS.relative_to(ROOT)} has sections for no alert: {sorted(extra)}")
    ok(f"PrometheusRule: {len(alerts)} alerts, each with its runbook ({base}#...), every aggregation by"
       f" namespace; no-pod alerts per role: {absent_roles}")


def cmd_extract_config(rendered: str, outdir: str, fixtures: str) -> None:
    """Lays out each role's files as its pod sees them, under OUTDIR/<role>/ instead of /:
    the ConfigMap's config.yaml (its /etc/smsc paths pointed into OUTDIR/<role>) and every
    item of every Secret volume the Deployment mounts: from the rendered Secret, or for an
    existingSecret from FIXTURES/<volume name>/<key>."""
    import base64

    objs = docs(rendered)
    out = Path(outdir)
    configs = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-config")]
    if len(configs) != 1:
        fail(f"{rendered}: expected one config ConfigMap")
    secrets: dict[str, dict[str, str]] = {}
    for o in objs:
        if o["kind"] == "Secret":
            data = {k: base64.b64decode(val).decode() for k, val in (o.get("data") or {}).items()}
            secrets[o["metadata"]["name"]] = data | (o.get("stringData") or {})
    summary = []
    for d in (o for o in objs if o["kind"] == "Deployment"):
        role = d["metadata"]["name"].rsplit("-", 1)[1]
        root = out / role
        pod = d["spec"]["template"]["spec"]
        files = []
        for path, (kind, name, key) in sorted(mounted_files(pod, pod["containers"][0]).items()):
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == "configMap":
                text = configs[0]["data"][key].replace("/etc/smsc/", f"{root}/etc/smsc/")
            elif key in secrets.get(name, {}):
                text = secrets[name][key]
            else:
                vol = next(m["name"] for m in pod["containers"][0]["volumeMounts"]
                           if path.startswith(m["mountPath"]))
                fixture = Path(fixtures) / vol / key
                if not fixture.exists():
                    fail(f"Secret {name} (volume {vol}) is not rendered and there is no fixture {fixture}")
                text = fixture.read_text()
            target.write_text(text)
            files.append(path)
        if f"/etc/smsc/config.yaml" not in files:
            fail(f"Deployment {d['metadata']['name']} does not mount /etc/smsc/config.yaml")
        summary.append(f"{role}: {', '.join(files)}")
    ok("pod files laid out: " + "; ".join(summary))


def cmd_embedded_config(config: str, out: str, admin: str, smpp: str, grpc: str) -> None:
    """The pod's config with what needs a cluster swapped for local stand-ins: embedded bus
    and store instead of Kafka and ScyllaDB, listeners on loopback ports, and accounts
    status written every second. Accounts, peers, gRPC mTLS, bus.tls, store.auth and
    store.tls (unused by the embedded bus and store) and the rest stay as rendered."""
    c = yaml.safe_load(Path(config).read_text())
    c["bus"]["kind"] = "embedded"
    c["store"]["kind"] = "embedded"
    c["admin_listen"] = f"127.0.0.1:{admin}"
    c["edge"]["smpp_listen"] = f"127.0.0.1:{smpp}"
    c["edge"]["grpc_listen"] = f"127.0.0.1:{grpc}"
    if c["edge"].get("tls"):
        c["edge"]["tls"]["listen"] = "127.0.0.1:0"
    if c["edge"].get("http_listen"):
        c["edge"]["http_listen"] = "127.0.0.1:0"
    c["worker"]["simulator_listen"] = "127.0.0.1:0"
    if c.get("accounts_crd"):
        c["accounts_crd"]["status_interval"] = "1s"
    Path(out).write_text(yaml.safe_dump(c, sort_keys=False))


# --- a fake kube-apiserver for the pods' Kubernetes API calls ------------------------------

def doc_smppaccount(doc: str) -> tuple[dict[str, Any], str]:
    """The example SmppAccount of `doc` (docs/install.md, "As Kubernetes resources") and the
    kubectl line creating its password Secret."""
    text = Path(doc).read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    examples = [yaml.safe_load(b) for b in blocks if re.search(r"^kind: SmppAccount$", b, re.M)]
    if len(examples) != 1:
        fail(f"{doc}: expected one ```yaml block with an SmppAccount, found {len(examples)}")
    joined = text.replace("\\\n", " ")  # shell line continuations
    m = re.search(r"kubectl [^\n]*create secret generic (\S+) [^\n]*--from-literal=(\w+)=", joined)
    if not m:
        fail(f"{doc}: no `kubectl create secret generic NAME --from-literal=KEY=...` for the account's hash")
    return examples[0], m.group(0)


def openapi_to_jsonschema(node: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema: `nullable` becomes a null type, the
    x-kubernetes-* markers go."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(val) for k, val in node.items()
           if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def cmd_crd_example(doc: str, crd_file: str) -> None:
    import jsonschema

    account, kubectl = doc_smppaccount(doc)
    crd = docs(crd_file)[0]
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    versions = {f"{group}/{ver['name']}": ver for ver in crd["spec"]["versions"] if ver["served"]}
    if account.get("kind") != kind or account.get("apiVersion") not in versions:
        fail(f"{doc}: the SmppAccount is {account.get('apiVersion')} {account.get('kind')}, the CRD serves"
             f" {sorted(versions)} {kind}")
    schema = openapi_to_jsonschema(versions[account["apiVersion"]]["schema"]["openAPIV3Schema"])
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(
        {k: val for k, val in account.items() if k not in ("apiVersion", "kind", "metadata")}), key=str)
    if errors:
        fail(f"{doc}: the SmppAccount does not validate against the CRD: " + "; ".join(
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors))
    ref = account["spec"]["passwordSecretRef"]
    if f"generic {ref['name']} " not in kubectl or f"--from-literal={ref['key']}=" not in kubectl:
        fail(f"{doc}: the SmppAccount's passwordSecretRef {ref} is not the Secret it creates: {kubectl}")
    ok(f"{doc}: SmppAccount {account['metadata']['name']} validates against the CRD ({account['apiVersion']});"
       f" its passwordSecretRef {ref} is the Secret it creates")


class FakeApiServer:
    """List, watch and status apply for SmppAccounts, Secrets and EndpointSlices of one
    namespace, over plain HTTP; every request is logged for the RBAC check."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        import threading

        self.cond = threading.Condition()
        self.rv = 0
        self.collections: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []
        self.applies: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for path, objs in objects.items():
            self.collections[path] = {}
            self.events[path] = []
            for o in objs:
                self.put(path, o)

    def put(self, path: str, obj: dict[str, Any], event: str = "ADDED") -> None:
        with self.cond:
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            obj["metadata"].setdefault("namespace", NAMESPACE)
            obj["metadata"].setdefault("uid", f"00000000-0000-4000-8000-{self.rv:012d}")
            obj["metadata"].setdefault("generation", 1)
            obj["metadata"].setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
            self.collections[path][obj["metadata"]["name"]] = obj
            self.events[path].append((self.rv, {"type": event, "object": obj}))
            self.cond.notify_all()

    @staticmethod
    def selects(selector: str | None, obj: dict[str, Any]) -> bool:
        for term in filter(None, (selector or "").split(",")):
            key, _, want = term.partition("=")
            if (obj["metadata"].get("labels") or {}).get(key) != want:
                return False
        return True

    def serve(self, port: int) -> None:
        import http.server
        import time as _time

        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def send_json(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def not_found(self) -> None:
                self.send_json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "NotFound", "code": 404, "message": f"{self.path} not found"})

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/_test/requests":
                    with api.cond:
                        reqs = list(api.requests)
                        if q.get("clear"):
                            api.requests.clear()
                    return self.send_json(200, reqs)
                if url.path == "/_test/applied":
                    with api.cond:
                        return self.send_json(200, list(api.applied))
                with api.cond:
                    api.requests.append({"method": "GET", "path": url.path, "query": q})
                if url.path not in api.collections:
                    return self.not_found()
                selector = q.get("labelSelector")
                if q.get("watch") in ("true", "1"):
                    return self.watch(url.path, int(q.get("resourceVersion") or 0), selector,
                                      float(q.get("timeoutSeconds") or 290))
                with api.cond:
                    items = [o for o in api.collections[url.path].values() if api.selects(selector, o)]
                    rv = api.rv
                self.send_json(200, {"metadata": {"resourceVersion": str(rv)}, "items": items})

            def watch(self, path: str, since: int, selector: str | None, timeout: float) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                deadline = _time.monotonic() + timeout
                try:
                    while _time.monotonic() < deadline:
                        with api.cond:
                            new = [(rv, e) for rv, e in api.events[path]
                                   if rv > since and api.selects(selector, e["object"])]
                            if not new:
                                api.cond.wait(timeout=1.0)
                                continue
                        for rv, e in new:
                            line = (json.dumps(e) + "\n").encode()
                            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                            since = rv
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def do_PATCH(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with api.cond:
                    api.requests.append({"method": "PATCH", "path": url.path, "query": q})
                collection, _, rest = url.path.rpartition("/")
                if rest != "status":
                    return self.not_found()
                collection, _, name = collection.rpartition("/")
                obj = api.collections.get(collection, {}).get(name)
                if obj is None:
                    return self.not_found()
                status = (yaml.safe_load(body) or {}).get("status") or {}
                manager = q.get("fieldManager", "")
                with api.cond:
                    api.applied.append({"name": name, "manager": manager, "status": status,
                                        "content_type": self.headers.get("Content-Type")})
                    applies = [(m, st) for m, st in api.applies.get(name, []) if m != manager] + [(manager, status)]
                    api.applies[name] = applies
                    merged: dict[str, Any] = {}
                    pods: list[Any] = []
                    for _, st in applies:
                        for k, val in st.items():
                            if k == "pods":
                                pods.extend(val or [])
                            else:
                                merged[k] = val
                    if pods:
                        merged["pods"] = pods
                    obj = json.loads(json.dumps(obj)) | {"status": merged}
                api.put(collection, obj, "MODIFIED")
                self.send_json(200, obj)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        server.serve_forever()


def cmd_apiserver(port: str, doc: str, password_hash: str, *services: str) -> None:
    """Serves the SmppAccount of `doc` (allowedCidrs opened to loopback) and its password
    Secret, and an EndpointSlice with two ready edges for each SMPP Service named."""
    import base64

    account, _ = doc_smppaccount(doc)
    account["metadata"]["namespace"] = NAMESPACE
    account["spec"]["allowedCidrs"] = ["127.0.0.0/8"]
    ref = account["spec"]["passwordSecretRef"]
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": ref["name"], "labels": {"smsc.io/account-password": "true"}},
              "data": {ref["key"]: base64.b64encode(password_hash.encode()).decode()}}
    slices = [{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
               "metadata": {"name": f"{svc}-x1y2z", "labels": {"kubernetes.io/service-name": svc}},
               "endpoints": [{"addresses": [f"10.0.0.{i}"], "conditions": {"ready": True}} for i in (1, 2)],
               "ports": [{"name": "smpp", "port": 2775, "protocol": "TCP"}]} for svc in services]
    FakeApiServer({
        f"/apis/smsc.io/v1alpha1/namespaces/{NAMESPACE}/smppaccounts": [account],
        f"/api/v1/namespaces/{NAMESPACE}/secrets": [secret],
        f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices": slices,
    }).serve(int(port))


def request_attributes(req: dict[str, Any]) -> tuple[str, str, str, str | None]:
    """(verb, apiGroup, resource[/subresource], namespace) as the apiserver's RBAC sees a request."""
    parts = req["path"].strip("/").split("/")
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = parts[1], parts[3:]
    else:
        return ("nonResource", "", req["path"], None)
    ns = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource += "/" + rest[2]
    verb = {"GET": "get", "PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}[req["method"]]
    if req["method"] == "GET" and name is None:
        verb = "watch" if req["query"].get("watch") in ("true", "1") else "list"
    return (verb, group, resource, ns)


def cmd_api_wait(rendered: str, role: str, url: str) -> None:
    """When ROLE's pod mounts the token: waits (up to 10 s) until the process has listed
    and is watching what it watches, since readiness does not wait for every watcher
    (EndpointSlices), and an edge has patched its Pod's deletion cost (edge.pod_deletion_cost)."""
    objs = docs(rendered)
    pod = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(f"-{role}"))
    if not pod["spec"]["template"]["spec"].get("automountServiceAccountToken"):
        return
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-config"))
    config = yaml.safe_load(cm["data"]["config.yaml"])
    edge_cfg = config.get("edge") or {}
    edge = role == "edge"
    want_list = "accounts_crd" in config or (edge and bool((edge_cfg.get("peers") or {}).get("service")))
    want_patch = edge and "pod_deletion_cost" in edge_cfg
    deadline = time.time() + 10
    while time.time() < deadline:
        with urllib.request.urlopen(f"{url}/_test/requests", timeout=5) as r:
            seen = {request_attributes(q)[:3] for q in json.loads(r.read())}
        listed = {(g, res) for verb, g, res in seen if verb == "list"}
        watched = {(g, res) for verb, g, res in seen if verb == "watch"}
        patched = ("patch", "", "pods") in seen
        if (listed or not want_list) and listed <= watched and (patched or not want_patch):
            return
        time.sleep(0.2)


def cmd_api_check(rendered: str, role: str, url: str) -> None:
    """The requests ROLE's process made to the fake apiserver: none when its pod has no
    service account token; otherwise some, each in the release namespace and allowed by
    the rendered Role."""
    with urllib.request.urlopen(f"{url}/_test/requests?clear=1", timeout=5) as r:
        reqs = json.loads(r.read())
    objs = docs(rendered)
    pod = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(f"-{role}"))
    token = pod["spec"]["template"]["spec"].get("automountServiceAccountToken")
    rules = [rule for o in objs if o["kind"] == "Role" for rule in o["rules"]]
    seen = sorted({request_attributes(q) for q in reqs}, key=str)
    if not token:
        if reqs:
            fail(f"{role}: its pod gets no service account token, yet it called the API: {seen}")
        ok(f"{role}: no Kubernetes API calls, and its pod mounts no token")
        return
    if not reqs and rules:
        fail(f"{role}: its pod mounts the service account token but it made no API calls")
    for verb, group, resource, ns in seen:
        allowed = ns == NAMESPACE and any(
            (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
            and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
            and (verb in rule["verbs"] or "*" in rule["verbs"])
            for rule in rules)
        if not allowed:
            fail(f"{role}: {verb} {group or 'core'}/{resource} in namespace {ns} is not allowed by the"
                 f" rendered Role ({rules})")
    ok(f"{role}: every API call is allowed by the Role: "
       + ", ".join(f"{verb} {'/'.join(filter(None, (group, resource)))}" for verb, group, resource, _ in seen))


def smpp_pdu(command_id: int, seq: int, body: bytes = b"") -> bytes:
    import struct

    return struct.pack(">IIII", 16 + len(body), command_id, 0, seq) + body


def smpp_read(sock: socket.socket) -> tuple[int, int, int, bytes]:
    import struct

    head = b""
    while len(head) < 16:
        chunk = sock.recv(16 - len(head))
        if not chunk:
            fail("SMPP: connection closed")
        head += chunk
    length, command_id, status, seq = struct.unpack(">IIII", head)
    body = b""
    while len(body) < length - 16:
        body += sock.recv(length - 16 - len(body))
    return command_id, status, seq, body


def cmd_bind_status(port: str, url: str, system_id: str, password: str, pod: str) -> None:
    """Binds as SYSTEM_ID (an account from the SmppAccount resource) and, while bound, waits
    for this pod's status apply reporting the session; then unbinds."""
    body = system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0" + bytes([0x34, 0, 0]) + b"\0"
    s = socket.create_connection(("127.0.0.1", int(port)), 5)
    s.sendall(smpp_pdu(0x00000009, 1, body))
    command_id, status, _, _ = smpp_read(s)
    if command_id != 0x80000009 or status != 0:
        fail(f"bind_transceiver as {system_id}: command 0x{command_id:08x} status 0x{status:02x}")
    ok(f"bound as {system_id} (SmppAccount + password Secret from the fake apiserver)")
    deadline = time.time() + 20
    got = None
    while time.time() < deadline and not got:
        with urllib.request.urlopen(f"{url}/_test/applied", timeout=5) as r:
            for a in json.loads(r.read()):
                entries = [e for e in a["status"].get("pods") or [] if e.get("pod") == pod]
                if a["manager"].endswith(pod) and entries and entries[0].get("sessions", 0) >= 1:
                    got = a
        time.sleep(0.3)
    if not got:
        fail(f"no status apply from pod {pod} reporting the session within 20 s")
    ready = [c for c in got["status"].get("conditions") or [] if c.get("type") == "Ready"]
    ok(f"status of SmppAccount {got['name']} applied by {got['manager']}: sessions"
       f" {got['status'].get('sessions')}, Ready {ready[0]['status'] if ready else '?'}")
    s.sendall(smpp_pdu(0x00000006, 2))
    command_id, status, _, _ = smpp_read(s)
    s.close()


def cmd_rules(rendered: str, out: str) -> None:
    rules = [o for o in docs(rendered) if o["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        fail(f"{rendered}: expected one PrometheusRule, found {len(rules)}")
    Path(out).write_text(yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sort_keys=False))
    n = sum(len(g["rules"]) for g in rules[0]["spec"]["groups"])
    ok(f"PrometheusRule spec -> {out} ({n} rules)")


def substitute(expr: str) -> str:
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k]).replace("${" + k[1:] + "}", GRAFANA_VARS[k])
    if "$" in expr:
        fail(f"unknown Grafana variable in {expr!r}")
    return expr


def cmd_exprs(outdir: str, dashboard: str, *rules_files: str) -> None:
    dash = json.loads(Path(dashboard).read_text())
    exprs: list[dict[str, Any]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            for t in p.get("targets", []):
                exprs.append({"source": f"dashboard: {p['title']} ({t['refId']})",
                              "expr": substitute(t["expr"]), "dashboard": True})
            walk(p.get("panels", []))

    walk(dash["panels"])
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        text = q.get("query") if isinstance(q, dict) else None
        if var.get("type") == "query" and text:
            m = re.fullmatch(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\s*\)", text)
            if not m:
                fail(f"dashboard variable {var['name']}: unsupported query {text!r}")
            exprs.append({"source": f"dashboard variable ${var['name']}", "expr": m[1], "dashboard": True})
    for rf in rules_files:
        if rf.startswith("adapter:"):
            exprs.extend(adapter_exprs(rf.removeprefix("adapter:")))
            continue
        for g in yaml.safe_load(Path(rf).read_text())["groups"]:
            for r in g["rules"]:
                exprs.append({"source": f"rule {r.get('alert') or r.get('record')}", "expr": r["expr"],
                              "dashboard": False, "alert": r.get("alert")})
    for e in exprs:
        e["metrics"] = sorted(metric_names(e["expr"]))
        if not e["metrics"]:
            fail(f"{e['source']}: no metric name found in {e['expr']!r}")
    out = Path(outdir)
    (out / "exprs.json").write_text(json.dumps(exprs, indent=1))
    recording = {"groups": [{"name": "smsc-expression-check", "rules": [
        {"record": f"smsc_check:expr_{i}", "expr": e["expr"]} for i, e in enumerate(exprs)]}]}
    (out / "exprs.rules.yaml").write_text(yaml.safe_dump(recording, sort_keys=False))
    n_dash = sum(e["source"].startswith("dashboard") for e in exprs)
    n_adapter = sum(e["source"].startswith("prometheus-adapter") for e in exprs)
    ok(f"{len(exprs)} PromQL expressions ({n_dash} dashboard, {n_adapter} prometheus-adapter, "
       f"{len(exprs) - n_dash - n_adapter} alert rules)"
       f" -> {out / 'exprs.rules.yaml'}")


def adapter_exprs(path: str) -> list[dict[str, Any]]:
    """prometheus-adapter rules: their queries as the adapter expands them for one pod,
    and their names must be the chart's default HPA custom metric names."""
    chart = yaml.safe_load((Path(__file__).resolve().parent.parent / "helm/smsc/values.yaml").read_text())
    cm = chart["edge"]["autoscaling"]["customMetrics"]
    want = {cm["sessions"]["metricName"], cm["submitRate"]["metricName"]}
    rules = yaml.safe_load(Path(path).read_text())["rules"]["custom"]
    names = {r["name"]["as"] for r in rules}
    if names != want:
        fail(f"{path}: serves {sorted(names)}, the chart's HPA asks for {sorted(want)}")
    out = []
    for r in rules:
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", r["seriesQuery"])[0]
        q = (r["metricsQuery"].replace("<<.Series>>", series)
             .replace("<<.LabelMatchers>>", 'namespace="smsc", pod=~"smsc-edge-.*"')
             .replace("<<.GroupBy>>", "pod"))
        if "<<" in q:
            fail(f"{path}: unexpanded template in {q!r}")
        for expr in (r["seriesQuery"], q):
            out.append({"source": f"prometheus-adapter {r['name']['as']}", "expr": expr, "dashboard": True})
    return out


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (names, not functions, keywords or labels)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    s = re.sub(r"'(?:\\.|[^'\\])*'", "''", s)
    s = re.sub(r"\{[^}]*\}", "{}", s)
    s = re.sub(r"\[[^\]]*\]", "[]", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        before = s[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":
            continue
        if s[m.end():].lstrip().startswith("(") or m[0].lower() in PROMQL_WORDS:
            continue
        names.add(m[0])
    return names


def cmd_metric_names(exprs_json: str, metrics_txt: str) -> None:
    exposed = set()
    for line in Path(metrics_txt).read_text().splitlines():
        if line and not line.startswith("#"):
            exposed.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    exprs = json.loads(Path(exprs_json).read_text())
    used: dict[str, list[str]] = {}
    for e in exprs:
        for n in e["metrics"]:
            used.setdefault(n, []).append(e["source"])
    missing = {n: s for n, s in used.items() if n not in exposed and n not in PROMETHEUS_SERIES}
    allowed = {}
    for n in list(missing):
        if n in NO_SERIES_OK:
            src, why = NO_SERIES_OK[n]
            if f'"{n}"' not in (ROOT / src).read_text():
                fail(f"{n} (allowed without series: {why}) is not registered in {src}")
            allowed[n] = missing.pop(n)
    for n, srcs in sorted(missing.items()):
        print(f"  missing: {n} (used by {srcs[0]}{' and more' if len(srcs) > 1 else ''})", file=sys.stderr)
    if missing:
        fail(f"{len(missing)} metric name(s) used by the dashboard/rules are not exported by smsc")
    ours = sorted(n for n in used if n not in PROMETHEUS_SERIES and n not in allowed)
    ok(f"all {len(ours)} metric names used exist in smsc's /metrics: {', '.join(ours)}")
    for n in allowed:
        ok(f"{n}: not in this run's /metrics ({NO_SERIES_OK[n][1]}); registered in {NO_SERIES_OK[n][0]}")
    extra = sorted(set(used) & PROMETHEUS_SERIES)
    if extra:
        ok(f"plus Prometheus' own per-target series: {', '.join(extra)}")


def query(url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as r:
        body = json.loads(r.read())
    if body.get("status") != "success":
        fail(f"query {expr!r}: {body}")
    res = body["data"]["result"]
    return res if isinstance(res, list) else [res]


def cmd_eval(url: str, exprs_json: str) -> None:
    exprs = json.loads(Path(exprs_json).read_text())
    empty = []
    allowed = []
    for e in exprs:
        res = query(url, e["expr"])
        if e["dashboard"] and not res:
            if set(e["metrics"]) <= set(NO_SERIES_OK):
                allowed.append(e["source"])
            else:
                empty.append(e["source"])
        if e.get("alert"):
            if res:
                fail(f"{e['source']} fires on a healthy smsc all: {res}")
            # An alert that never fires may just select nothing: each of its selectors,
            # minus the status matchers (no errors happened), must find series.
            for name, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", e["expr"]):
                kept = [m.strip() for m in matchers.split(",") if not m.strip().startswith("status")]
                sel = "%s{%s}" % (name, ", ".join(kept))
                if not query(url, sel):
                    fail(f"{e['source']}: selector {sel} matches no series")
    if empty:
        fail(f"dashboard / adapter queries returned no series after traffic: {empty}")
    ok(f"all {len(exprs)} expressions evaluate on the live Prometheus; every dashboard and adapter query returns"
       f" series{f' (but {allowed}: NO_SERIES_OK)' if allowed else ''}; no alert fires, and every alert selector"
       f" matches series")


def cmd_rate(url: str, start: str, end: str, blast_rate: str) -> None:
    t0, t1, want = float(start), float(end), float(blast_rate)
    expr = "sum(rate(smsc_edge_submit_total[5s]))"
    # Points whose 5 s window lies inside the load (1 s after its start to its end).
    points = []
    t = t0 + 6.0
    while t <= t1 + 0.01:
        res = query(url, expr, t)
        if res:
            points.append(float(res[0]["value"][1]))
        t += 1.0
    if not points:
        fail(f"{expr}: no samples between {t0 + 6:.0f} and {t1:.0f}")
    got = statistics.median(points)
    dev = abs(got - want) / want
    print(f"  {expr} = {got:.0f}/s (median of {[round(p) for p in points]}); smpp-blast reported "
          f"{want:.0f}/s; deviation {dev:.1%}")
    if dev > 0.30:
        fail("Prometheus' submit rate is not within ±30% of what smpp-blast measured")
    ok("the scraped submit rate matches the load within ±30%")


def cmd_absent_fires(url: str, exprs_json: str) -> None:
    """After smsc stopped: every absent() alert (no edge, router or worker up) fires. `eval`
    saw none of them fire while its role's target was up."""
    rules = [e for e in json.loads(Path(exprs_json).read_text())
             if e.get("alert") and e["expr"].lstrip().startswith("absent(")]
    names = sorted(e["alert"] for e in rules)
    if not {"SmscNoEdgeUp", "SmscNoRouterUp", "SmscNoWorkerUp"} <= set(names):
        fail(f"want the absent() alerts SmscNoEdgeUp, SmscNoRouterUp, SmscNoWorkerUp; found {names}")
    pending = {e["alert"]: e["expr"] for e in rules}
    deadline = time.time() + 15
    while pending and time.time() < deadline:
        for name, expr in list(pending.items()):
            if query(url, expr):
                del pending[name]
        time.sleep(0.5)
    if pending:
        fail(f"did not fire within 15 s of stopping smsc: {pending}")
    ok(f"{', '.join(names)} fire once smsc is stopped (and did not while it was up)")


def cmd_kafka_topic_api(rendered: str, api: str) -> None:
    topics = [o for o in docs(rendered) if o["kind"] == "KafkaTopic"]
    got = sorted({t["apiVersion"] for t in topics})
    if not topics or got != [api]:
        fail(f"{rendered}: {len(topics)} KafkaTopics as {got}, want {api}")
    ok(f"{len(topics)} KafkaTopics as {api}")


def cmd_namespace_refs(rendered: str, namespace: str) -> None:
    """Every namespaced object is in NAMESPACE, what the config and RBAC name in a namespace
    (edge.peers.dns, accounts_crd, RoleBinding subjects) is NAMESPACE, and the Deployments'
    checksum/config is the config's."""
    objs = docs(rendered)
    cluster_scoped = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace"}
    wrong = [f"{o['kind']}/{o['metadata']['name']}: {o['metadata'].get('namespace')}" for o in objs
             if o["kind"] not in cluster_scoped and o["metadata"].get("namespace") != namespace]
    if wrong:
        fail(f"objects outside namespace {namespace}: {wrong}")
    services = {o["metadata"]["name"] for o in objs if o["kind"] == "Service"}
    seen = []
    # The roles' config (the migration Job's ConfigMap holds only the store).
    for cm in (o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-config")):
        config = yaml.safe_load(cm["data"]["config.yaml"])
        dns = ((config.get("edge") or {}).get("peers") or {}).get("dns")
        if dns:
            name, _, rest = dns.partition(".")
            if rest != f"{namespace}.svc" or name not in services:
                fail(f"ConfigMap {cm['metadata']['name']}: edge.peers.dns {dns} is not a Service of"
                     f" {namespace} ({name}.{namespace}.svc)")
            seen.append(f"edge.peers.dns {dns}")
        crd_ns = (config.get("accounts_crd") or {}).get("namespace")
        if crd_ns is not None:
            if crd_ns != namespace:
                fail(f"ConfigMap {cm['metadata']['name']}: accounts_crd.namespace {crd_ns}, want {namespace}")
            seen.append(f"accounts_crd.namespace {crd_ns}")
        # The pods roll on a config change (the overlay replaces the config: the checksum too).
        for d in (o for o in objs if o["kind"] == "Deployment"):
            checksum = d["spec"]["template"]["metadata"]["annotations"].get("checksum/config")
            if checksum != hashlib.sha256(cm["data"]["config.yaml"].rstrip("\n").encode()).hexdigest():
                fail(f"Deployment {d['metadata']['name']}: checksum/config {checksum} is not the sha256 of"
                     f" ConfigMap {cm['metadata']['name']}'s config.yaml")
        seen.append("checksum/config")
    for b in (o for o in objs if o["kind"] == "RoleBinding"):
        for s in b["subjects"]:
            if s.get("namespace") != namespace:
                fail(f"RoleBinding {b['metadata']['name']}: subject {s} outside {namespace}")
        seen.append(f"RoleBinding {b['metadata']['name']}")
    ok(f"{len(objs)} objects in namespace {namespace}; {', '.join(seen) or 'nothing else names a namespace'}")


def cmd_ports(n: str) -> None:
    picked: list[int] = []
    candidates = list(range(19000, 20000))
    random.shuffle(candidates)
    for p in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        picked.append(p)
        if len(picked) == int(n):
            print(" ".join(map(str, picked)))
            return
    fail("no free ports in 19000-19999")


COMMANDS = {
    "dockerfile": cmd_dockerfile,
    "invariants": cmd_invariants,
    "extract-config": cmd_extract_config,
    "embedded-config": cmd_embedded_config,
    "crd-example": cmd_crd_example,
    "apiserver": cmd_apiserver,
    "api-wait": cmd_api_wait,
    "api-check": cmd_api_check,
    "bind-status": cmd_bind_status,
    "rules": cmd_rules,
    "exprs": cmd_exprs,
    "metric-names": cmd_metric_names,
    "eval": cmd_eval,
    "rate": cmd_rate,
    "absent-fires": cmd_absent_fires,
    "kafka-topic-api": cmd_kafka_topic_api,
    "namespace-refs": cmd_namespace_refs,
    "ports": cmd_ports,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
