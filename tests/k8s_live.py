#!/usr/bin/env python3
"""Checks of tests/k8s-cluster against the real API server (kubectl with $KUBECONFIG, the
admin; the edge's own requests carry its ServiceAccount token).

    k8s_live.py release HELM NAME NAMESPACE REVISION|gone [--replicas DEPLOYMENT=N ...]
    k8s_live.py walkthrough DOC SMSC HELM
    k8s_live.py complete-jobs NAMESPACE LOG      (until killed)
    k8s_live.py hooks NAMESPACE LOG RUNS none|DEPLOYMENT=REPLICAS
    k8s_live.py edge --smsc BIN --namespace NS --pod POD --smpp PORT --admin PORT --pid PID
                     --log FILE --manifest FILE --sa-kubeconfig FILE

No sleeps stand in for an outcome: every wait polls for what it expects, with a deadline
only to fail instead of hanging.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from typing import Any, Callable

import yaml

WAIT = 30.0


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def ok(msg: str) -> None:
    print(f"  ok: {msg}")


def kubectl(*args: str, stdin: str | None = None, kubeconfig: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    p = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        fail(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
    return p


def kget(*args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def until(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.time() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.time() > deadline:
            fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


# --- helm releases ---------------------------------------------------------------------

def cmd_release(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("helm")
    p.add_argument("name")
    p.add_argument("namespace")
    p.add_argument("revision")
    p.add_argument("--replicas", action="append", default=[])
    a = p.parse_args(argv)
    helm = [a.helm, "--namespace", a.namespace]
    status = subprocess.run([*helm, "status", a.name, "-o", "json"], capture_output=True, text=True)
    selector = f"app.kubernetes.io/instance={a.name}"
    kinds = "deployments,services,configmaps,secrets,serviceaccounts,roles,rolebindings,poddisruptionbudgets," \
            "horizontalpodautoscalers,networkpolicies,servicemonitors,prometheusrules,kafkatopics,jobs"
    if a.revision == "gone":
        if status.returncode == 0:
            fail(f"helm status {a.name} still answers after uninstall")
        items = json.loads(kubectl("get", kinds, "--all-namespaces", "-l", selector, "-o", "json").stdout)["items"]
        ours = [o for o in items
                if (o["metadata"].get("annotations") or {}).get("meta.helm.sh/release-namespace") == a.namespace]
        kept = [o for o in ours if o["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep"]
        left = [f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}" for o in ours if o not in kept]
        if left:
            fail(f"objects of release {a.name} left after uninstall: {left}")
        # Only the topics are kept on purpose: deleting a KafkaTopic deletes its messages.
        if any(o["kind"] != "KafkaTopic" for o in kept):
            fail(f"kept after uninstall, but not a KafkaTopic: {[o['kind'] for o in kept]}")
        for o in kept:
            kubectl("delete", "kafkatopic", o["metadata"]["name"], "-n", o["metadata"]["namespace"])
        crd = kget("crd", "smppaccounts.smsc.io")
        ok(f"{a.namespace}/{a.name} uninstalled: no object of the release left"
           + (f" but its {len(kept)} KafkaTopics (resource-policy keep; deleted here)" if kept else "")
           + "; the SmppAccount CRD"
           f" stays (helm never deletes crds/), created {crd['metadata']['creationTimestamp']}")
        return
    if status.returncode != 0:
        fail(f"helm status {a.name}: {status.stderr.strip()}")
    info = json.loads(status.stdout)
    if info["info"]["status"] != "deployed" or str(info["version"]) != a.revision:
        fail(f"release {a.name}: {info['info']['status']} revision {info['version']}, expected deployed {a.revision}")
    manifest = subprocess.run([*helm, "get", "manifest", a.name], capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    # Every object of the release, read back from the server (as stored, defaults applied).
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_namespace.setdefault(d["metadata"].get("namespace") or a.namespace, []).append(d)
    names = [n for ns, objs in sorted(by_namespace.items())
             for n in kubectl("get", "-n", ns, "-f", "-", "-o", "name",
                              stdin=yaml.safe_dump_all(objs)).stdout.split()]
    # Each object's labels, as stored: what `uninstall` and the selectors rely on.
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/instance") != a.name:
            fail(f"{d['kind']} {d['metadata']['name']} has no app.kubernetes.io/instance={a.name} label")
    if len(names) != len(docs):
        fail(f"release {a.name}: {len(docs)} objects in the manifest, {len(names)} on the server")
    crd = kget("crd", "smppaccounts.smsc.io")
    established = [c for c in crd["status"].get("conditions", []) if c["type"] == "Established"]
    if not established or established[0]["status"] != "True":
        fail("the SmppAccount CRD is not Established")
    kinds_seen: dict[str, int] = {}
    for d in docs:
        kinds_seen[d["kind"]] = kinds_seen.get(d["kind"], 0) + 1
    rbac = [d for d in docs if d["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")]
    for d in rbac:
        kget(d["kind"].lower(), d["metadata"]["name"], *(["-n", a.namespace] if "Cluster" not in d["kind"] else []))
    for spec in a.replicas:
        deploy, n = spec.split("=")
        got = kget("deployment", deploy, "-n", a.namespace)["spec"]["replicas"]
        if got != int(n):
            fail(f"deployment {deploy}: replicas {got}, expected {n}")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds_seen.items()))
    ok(f"{a.namespace}/{a.name} revision {a.revision} deployed, all {len(docs)} objects on the server"
       f" ({summary}); SmppAccount CRD Established"
       + (f"; replicas {', '.join(a.replicas)}" if a.replicas else ""))


# --- SMPP -------------------------------------------------------------------------------

BIND_TRX = 0x00000009
UNBIND = 0x00000006


class Session:
    """One ESME connection; `bind` returns the command_status."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), 5)
        self.seq = 0

    def send(self, command_id: int, body: bytes = b"") -> None:
        self.seq += 1
        self.sock.sendall(struct.pack(">IIII", 16 + len(body), command_id, 0, self.seq) + body)

    def read(self, timeout: float = 10.0) -> tuple[int, int, int] | None:
        """The next PDU's (command_id, status, seq), or None once the SMSC closed."""
        self.sock.settimeout(timeout)
        head = b""
        while len(head) < 16:
            try:
                chunk = self.sock.recv(16 - len(head))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            head += chunk
        length, command_id, status, seq = struct.unpack(">IIII", head)
        rest = length - 16
        while rest > 0:
            chunk = self.sock.recv(rest)
            if not chunk:
                return None
            rest -= len(chunk)
        return command_id, status, seq

    def bind(self, system_id: str, password: str) -> int:
        body = system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0" + bytes([0x34, 0, 0]) + b"\0"
        self.send(BIND_TRX, body)
        got = self.read()
        if got is None:
            return -1
        if got[0] != 0x80000009:
            fail(f"bind_transceiver answered with command 0x{got[0]:08x}")
        return got[1]

    def unbound_by_smsc(self, timeout: float) -> bool:
        """Waits for the SMSC to end the session: an unbind (answered) or a close."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                got = self.read(timeout=max(0.1, deadline - time.time()))
            except socket.timeout:
                return False
            if got is None:
                return True
            command_id, _, seq = got
            if command_id == UNBIND:
                self.sock.sendall(struct.pack(">IIII", 16, 0x80000006, 0, seq))
                return True
            if command_id == 0x00000015:  # enquire_link: answer and go on
                self.sock.sendall(struct.pack(">IIII", 16, 0x80000015, 0, seq))
        return False

    def close(self) -> None:
        self.sock.close()


def bind_status(port: int, system_id: str, password: str) -> tuple[int, Session]:
    s = Session(port)
    return s.bind(system_id, password), s


def metric(admin: int, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if re.match(rf"^{re.escape(name)}(\{{.*\}})? ", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- the edge ---------------------------------------------------------------------------

def cmd_edge(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    for flag in ("smsc", "namespace", "pod", "log", "manifest", "sa-kubeconfig"):
        p.add_argument(f"--{flag}", required=True)
    for flag in ("smpp", "admin", "pid"):
        p.add_argument(f"--{flag}", required=True, type=int)
    a = p.parse_args(argv)
    ns = a.namespace

    def alive() -> None:
        try:
            os.kill(a.pid, 0)
        except OSError:
            fail("the edge exited:\n" + open(a.log).read()[-4000:])

    def ready() -> bool:
        import urllib.request

        alive()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{a.admin}/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    until("the edge ready (its SmppAccount and Secret watches listed through the API)", ready)
    ok("the edge is ready on the ServiceAccount's token (SmppAccounts and Secrets listed)")

    # Its own Pod's deletion cost follows its bound sessions (edge.pod_deletion_cost).
    cost_key = "controller.kubernetes.io/pod-deletion-cost"

    def cost_is(want: str) -> Callable[[], bool]:
        def probe() -> bool:
            alive()
            pod = kget("pod", a.pod, "-n", ns)
            return (pod["metadata"].get("annotations") or {}).get(cost_key) == want
        return probe

    until(f"{cost_key} \"0\" on Pod {a.pod} before any bind", cost_is("0"))
    pod = kget("pod", a.pod, "-n", ns, "--show-managed-fields")
    cost_managers = [m["manager"] for m in pod["metadata"].get("managedFields", [])
                     if cost_key in json.dumps(m.get("fieldsV1", {}))]
    if cost_managers != ["smsc-edge/deletion-cost"]:
        fail(f"{cost_key} is managed by {cost_managers}, want the edge's field manager smsc-edge/deletion-cost")
    ok(f"Pod {a.pod}: {cost_key} \"0\" with no session, written by field manager smsc-edge/deletion-cost")

    def hash_of(password: str) -> str:
        return subprocess.run([a.smsc, "hash-password", password], capture_output=True, text=True,
                              check=True).stdout.strip()

    def apply(obj: dict[str, Any]) -> None:
        kubectl("apply", "--server-side", "--field-manager", "k8s-live", "-f", "-", stdin=json.dumps(obj))

    def secret(name: str, hash_: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
                "stringData": {"hash": hash_}}

    def account(spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "smsc.io/v1alpha1", "kind": "SmppAccount",
                "metadata": {"name": "bank", "namespace": ns},
                "spec": {"systemId": "bank", "passwordSecretRef": {"name": "bank-password", "key": "hash"},
                         "bindTypes": ["transceiver"]} | spec}

    def binds(password: str, want: bool) -> Callable[[], bool]:
        def probe() -> bool:
            alive()
            status, s = bind_status(a.smpp, "bank", password)
            s.close()
            return (status == 0) == want
        return probe

    # Created: the account binds.
    apply(secret("bank-password", hash_of("first1")))
    apply(account({"maxBinds": 4}))
    until("a bind as the new SmppAccount admitted", binds("first1", True))
    ok("SmppAccount and Secret created: bind admitted")

    # Status by server-side apply, per pod, shown by kubectl get.
    held, s1 = bind_status(a.smpp, "bank", "first1")
    if held != 0:
        fail(f"bind refused: 0x{held:08x}")
    until(f"{cost_key} \"1\" with one session bound", cost_is("1"))
    ok(f"Pod {a.pod}: {cost_key} \"1\" with one session bound")

    def status_applied() -> dict[str, Any] | None:
        obj = kget("smppaccount", "bank", "-n", ns, "--show-managed-fields")
        pods = [e for e in (obj.get("status") or {}).get("pods") or [] if e.get("pod") == a.pod]
        managers = [m for m in obj["metadata"].get("managedFields", [])
                    if m.get("subresource") == "status" and m.get("operation") == "Apply"]
        return obj if pods and pods[0].get("sessions", 0) >= 1 and managers else None

    obj = until(f"status of SmppAccount bank applied by pod {a.pod} (server-side apply)", status_applied)
    manager = [m["manager"] for m in obj["metadata"]["managedFields"] if m.get("subresource") == "status"]
    table = kubectl("get", "smppaccounts", "-n", ns).stdout
    if "bank" not in table.splitlines()[1]:
        fail(f"kubectl get smppaccounts does not list bank:\n{table}")
    ok(f"status written by server-side apply (field manager {', '.join(manager)}); kubectl get smppaccounts:\n"
       + "\n".join("      " + line for line in table.splitlines()))

    # Changed: a limit lowered is followed (maxBinds 1: a second session is refused).
    apply(account({"maxBinds": 1}))

    def second_refused() -> bool:
        alive()
        status, s = bind_status(a.smpp, "bank", "first1")
        s.close()
        return status != 0

    until("a second bind refused once maxBinds is 1", second_refused)
    ok("SmppAccount changed (maxBinds 4 -> 1): a second session refused, the first stays bound")

    # Changed: the password Secret rotated.
    apply(secret("bank-password", hash_of("second2")))
    until("the old password refused after the Secret changed", binds("first1", False))
    apply(account({"maxBinds": 4}))
    until("the new password admitted", binds("second2", True))
    ok("password Secret rotated: the old password refused, the new one admitted")

    # Disabled: the bound session is revoked.
    revoked_before = metric(a.admin, "smsc_edge_sessions_revoked_total")
    apply(account({"maxBinds": 4, "enabled": False}))
    if not s1.unbound_by_smsc(WAIT):
        fail("the session bound before the account was disabled was not ended")
    s1.close()
    until("smsc_edge_sessions_revoked_total counts it",
          lambda: metric(a.admin, "smsc_edge_sessions_revoked_total") > revoked_before)
    ok("SmppAccount disabled: the bound session revoked (unbound by the SMSC)")

    # Peers: with 2 ready endpoints in the SMPP Service's EndpointSlices, an edge holding all
    # 4 sessions sheds down to its fair share (2).
    apply(account({"maxBinds": 8}))
    until("binds admitted again", binds("second2", True))
    sessions = []
    for _ in range(4):
        status, s = bind_status(a.smpp, "bank", "second2")
        if status != 0:
            fail(f"bind refused: 0x{status:08x}")
        sessions.append(s)
    until(f"{cost_key} \"4\" with four sessions bound", cost_is("4"))
    docs = [d for d in yaml.safe_load_all(open(a.manifest)) if d]
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap"
                                 and d["metadata"]["name"].endswith("-config"))["data"]["config.yaml"])
    service = config["edge"]["peers"]["service"]
    shed_before = metric(a.admin, "smsc_edge_sessions_shed_total")
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": f"{service}-live", "namespace": ns,
                           "labels": {"kubernetes.io/service-name": service}},
              "addressType": "IPv4", "ports": [{"name": "smpp", "port": 2775, "protocol": "TCP"}],
              "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ("10.0.0.1", "10.0.0.2")]}
    apply(slice_)
    until("2 sessions shed after a second ready peer appeared",
          lambda: metric(a.admin, "smsc_edge_sessions_shed_total") - shed_before >= 2)
    ended = sum(1 for s in sessions if s.unbound_by_smsc(5))
    if ended != 2:
        fail(f"{ended} sessions ended by the rebalance, expected 2 (fair share of 4 over 2 edges)")
    ok(f"EndpointSlice of Service {service} with 2 ready peers: 2 of 4 sessions shed, 2 kept")
    until(f"{cost_key} \"2\" once 2 of 4 sessions were shed", cost_is("2"))
    for s in sessions:
        s.close()
    until(f"{cost_key} \"0\" once every session ended", cost_is("0"))
    ok(f"Pod {a.pod}: {cost_key} followed the sessions: 4 bound, 2 after the rebalance, 0 after they ended")

    # Deleted: binds refused.
    kubectl("delete", "smppaccount", "bank", "-n", ns)
    until("binds refused once the SmppAccount is deleted", binds("second2", False))
    ok("SmppAccount deleted: binds refused")

    # RBAC: the token has the Role's grants and nothing more.
    role = next(d for d in docs if d["kind"] == "Role")
    granted = {(g, r) for rule in role["rules"] for g in rule.get("apiGroups", []) for r in rule.get("resources", [])}
    refused = [("get", "pods", ns), ("update", "pods", ns), ("delete", "pods", ns), ("patch", "pods", "default"),
               ("list", "secrets", "kube-system"), ("list", "configmaps", ns),
               ("create", "smppaccounts.smsc.io", ns), ("delete", "secrets", ns),
               ("patch", "smppaccounts.smsc.io", ns), ("list", "smppaccounts.smsc.io", "default")]
    for verb, resource, where in refused:
        p = kubectl("auth", "can-i", verb, resource, "-n", where, kubeconfig=a.sa_kubeconfig, check=False)
        if p.stdout.strip() != "no":
            fail(f"the ServiceAccount may {verb} {resource} in {where}: {p.stdout.strip()}")
    p = kubectl("get", "pods", "-n", ns, kubeconfig=a.sa_kubeconfig, check=False)
    if p.returncode == 0 or "forbidden" not in p.stderr.lower():
        fail(f"listing pods with the ServiceAccount's token was not refused: {p.stderr.strip()}")
    for resource in ("smppaccounts.smsc.io", "secrets", "endpointslices.discovery.k8s.io"):
        p = kubectl("auth", "can-i", "watch", resource, "-n", ns, kubeconfig=a.sa_kubeconfig, check=False)
        if p.stdout.strip() != "yes":
            fail(f"the ServiceAccount may not watch {resource}, which the edge needs")
    p = kubectl("auth", "can-i", "patch", f"pods/{a.pod}", "-n", ns, kubeconfig=a.sa_kubeconfig, check=False)
    if p.stdout.strip() != "yes":
        fail("the ServiceAccount may not patch its Pod (pod-deletion-cost)")
    log = open(a.log).read()
    refusal = re.compile(r"forbidden|code: 403", re.I)
    if refusal.search(log):
        fail("the edge had a request refused:\n" + "\n".join(l for l in log.splitlines() if refusal.search(l)))
    ok(f"RBAC: the token may watch what the edge needs ({len(granted)} grants in the Role) and"
       f" {len(refused)} other requests are refused (403 for a pod list); the edge had none refused")


# --- hook Jobs ----------------------------------------------------------------------------

def cmd_complete_jobs(argv: list[str]) -> None:
    """Stands in for the kubelet and the Job controller, which this API server lacks: each
    new Job in NAMESPACE is marked succeeded (helm waits for its hook Jobs), and a line
    says what else of the release was there at that moment. Runs until killed."""
    ns, out = argv
    done: set[str] = set()
    while True:
        jobs = kget("jobs", "-n", ns)["items"]
        for job in jobs:
            uid = job["metadata"]["uid"]
            if uid in done:
                continue
            deployments = {d["metadata"]["name"]: d["spec"]["replicas"] for d in kget("deployments", "-n", ns)["items"]}
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            cond = {"status": "True", "lastTransitionTime": now, "lastProbeTime": now}
            status = {"status": {"startTime": now, "completionTime": now, "succeeded": 1, "conditions": [
                {"type": "SuccessCriteriaMet", **cond}, {"type": "Complete", **cond}]}}
            kubectl("patch", "job", job["metadata"]["name"], "-n", ns, "--subresource=status",
                    "--type=merge", "-p", json.dumps(status))
            done.add(uid)
            spec = job["spec"]["template"]["spec"]
            with open(out, "a") as f:
                f.write(json.dumps({"job": job["metadata"]["name"], "annotations": job["metadata"].get("annotations", {}),
                                    "args": spec["containers"][0].get("args", []),
                                    "deployments": deployments}) + "\n")
        time.sleep(0.3)


def cmd_walkthrough(argv: list[str]) -> None:
    """Runs the shell block that follows `<!-- walkthrough -->` in DOC as written, with the
    test's binary for `docker run --rm <image>` and HELM as `helm`; then checks what it
    made: the release deployed, the account's resource accepted with its Secret."""
    import shutil
    import tempfile

    doc, smsc, helm = argv
    text = open(doc).read()
    m = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)\n```", text, re.S)
    if not m:
        fail(f"{doc}: no ```sh block after <!-- walkthrough -->")
    script, n = re.subn(r"docker run --rm \S+ ", f"{smsc} ", m[1])
    if n == 0:
        fail(f"{doc}: the walkthrough no longer hashes its password with the image")
    bin_dir = tempfile.mkdtemp()
    try:
        os.symlink(helm, os.path.join(bin_dir, "helm"))
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True)
    finally:
        shutil.rmtree(bin_dir)
    if p.returncode != 0:
        fail(f"{doc}'s walkthrough failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    steps = [line for line in m[1].splitlines() if re.match(r"^(kubectl|helm) ", line)]
    account = kget("smppaccount", "bank", "-n", "smsc")
    secret = kget("secret", "bank-password", "-n", "smsc")
    import base64

    hash_ = base64.b64decode(secret["data"]["hash"]).decode()
    if not hash_.startswith("$argon2id$") or account["spec"]["passwordSecretRef"]["name"] != "bank-password":
        fail(f"walkthrough: account {account['spec']} with Secret hash {hash_[:12]}...")
    if "bank" not in p.stdout:
        fail(f"walkthrough: kubectl get smppaccounts printed\n{p.stdout}")
    ok(f"{doc}'s walkthrough ran as written ({len(steps)} kubectl/helm commands): namespace, Secret with"
       f" an argon2id hash, release, SmppAccount bank listed by kubectl get smppaccounts")


def cmd_hooks(argv: list[str]) -> None:
    """After an install (`before` = none) or an upgrade (`before` = DEPLOYMENT=REPLICAS, the
    value before the upgrade changed it): the migration Job ran as a hook, before the
    release's Deployments existed or before they changed, and it and its ConfigMap were
    deleted once it succeeded."""
    ns, log, runs, before = argv
    lines = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
    if len(lines) != int(runs):
        fail(f"{ns}: {len(lines)} migration Job runs seen, expected {runs}: {lines}")
    last = lines[-1]
    if last["job"] != "smsc-migrate" or last["args"][:1] != ["migrate"]:
        fail(f"{ns}: unexpected Job {last}")
    if before == "none":
        if last["deployments"]:
            fail(f"{ns}: the migration Job ran with Deployments {last['deployments']} already there")
    else:
        deploy, replicas = before.split("=")
        if last["deployments"].get(deploy) != int(replicas):
            fail(f"{ns}: the migration Job ran when {deploy} had {last['deployments'].get(deploy)} replicas,"
                 f" want {replicas}: not before the upgrade changed it")
    left = kubectl("get", "jobs,configmaps", "-n", ns, "-l", "app.kubernetes.io/component=migrate",
                   "-o", "name").stdout.split()
    if left:
        fail(f"{ns}: hook objects left after success: {left}")
    ok(f"{ns}: migration Job {last['annotations'].get('helm.sh/hook')} ran before "
       + ("any Deployment existed" if before == "none" else f"the upgrade changed them ({before})")
       + "; it and its ConfigMap deleted on success")


if __name__ == "__main__":
    commands = {"release": cmd_release, "edge": cmd_edge, "complete-jobs": cmd_complete_jobs,
                "hooks": cmd_hooks, "walkthrough": cmd_walkthrough}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    commands[sys.argv[1]](sys.argv[2:])
