#!/usr/bin/env python3
"""A small `helm lint` / `helm template` on the Helm v4 engine of PyPI helm-python-sdk.

No helm binary can be installed here (shared/INFRA.md); helm-python-sdk 0.2.2 bundles the
real engine as a library. This wrapper gives it the two commands the chart needs:

    helmpy.py lint CHART [-f values.yaml ...] [--set-json JSON]
    helmpy.py template CHART [-f values.yaml ...] [--set-json JSON]
                       [--name NAME] [--namespace NS] [--notes] [--include-crds]
                       [-a|--api-versions GROUP/VERSION[/KIND] ...]

`lint` is strict (warnings fail) and exits 1 on any finding of severity warning or worse.
`template` validates the values against values.schema.json, renders, and prints the
documents (`# Source:` comments as helm does) in a stable order; with --notes it prints
the rendered NOTES.txt instead; with --include-crds the chart's crds/ come first, as is
(helm never templates them); --api-versions adds to .Capabilities.APIVersions what a
cluster would serve, as helm's -a does. Values files merge as with helm: maps deep-merge, later
files win, lists are replaced. Exit status: 0 ok, 1 lint findings or render/schema
errors, 64 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

try:
    import helm_python as helm
    import yaml
except ImportError as e:  # pragma: no cover
    print(f"helmpy: {e}: install helm-python-sdk==0.2.2 and pyyaml (tests/k8s does)", file=sys.stderr)
    sys.exit(64)

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's values coalescing for user files: maps merge, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load_values(files: list[str], set_json: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in files:
        doc = yaml.safe_load(Path(f).read_text()) or {}
        if not isinstance(doc, dict):
            raise SystemExit(f"helmpy: {f}: values must be a mapping")
        values = merge(values, doc)
    for s in set_json:
        values = merge(values, json.loads(s))
    return values


def lint(chart: str, values: dict[str, Any]) -> int:
    report = helm.lint(chart, values, strict=True)
    bad = 0
    for m in report.get("messages", []):
        sev = m.get("severity", 0)
        print(f"[{SEVERITY.get(sev, sev)}] {m.get('path')}: {m.get('error')}")
        if sev >= 2 or sev == 0:
            bad += 1
    for e in report.get("errors", []):
        print(f"[ERROR] {e}")
        bad += 1
    charts = report.get("total_charts_linted", 0)
    print(f"{charts} chart(s) linted, {bad} failure(s)")
    return 1 if bad or charts < 1 else 0


def render(c: Any, values: dict[str, Any], name: str, namespace: str, api_versions: list[str]) -> dict[str, str]:
    """Chart.render, plus the API versions a cluster would serve. helm-python-sdk 0.2.2's
    Chart.render does not pass them on, but the engine's render options take them
    (`api_versions`, helm's -a): go to the native call for that."""
    if not api_versions:
        return c.render(values, name=name, namespace=namespace, is_install=True)
    from helm_python import _native

    opts = {"name": name, "namespace": namespace, "is_install": True, "api_versions": api_versions}
    return json.loads(_native.call_string("helm_render", c._raw(), json.dumps(values), json.dumps(opts)))


def template(chart: str, values: dict[str, Any], name: str, namespace: str, notes: bool,
             include_crds: bool = False, api_versions: list[str] | None = None) -> int:
    with helm.Chart.load(chart) as c:
        c.validate_schema(values)
        rendered = render(c, values, name, namespace, api_versions or [])
        crds = sorted(c.crds, key=lambda crd: crd["filename"]) if include_crds and not notes else []
    out = []
    for crd in crds:
        for doc in crd["data"].split("\n---"):
            body = doc.strip("\n")
            if body.startswith("---"):
                body = body[3:].strip("\n")
            if body.strip() and yaml.safe_load(body) is not None:
                out.append(f"---\n# Source: {crd['filename']}\n{body}\n")
    for path in sorted(rendered):
        text = rendered[path]
        if path.endswith("NOTES.txt"):
            if notes:
                print(text)
            continue
        if notes or Path(path).name.startswith("_"):
            continue
        for doc in text.split("\n---"):
            body = doc.strip("\n")
            if body.startswith("---"):
                body = body[3:].strip("\n")
            if not body.strip() or yaml.safe_load(body) is None:
                continue
            out.append(f"---\n# Source: {path}\n{body}\n")
    if not notes:
        sys.stdout.write("".join(out))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="helmpy.py", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["lint", "template"])
    p.add_argument("chart")
    p.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    p.add_argument("--set-json", action="append", default=[], help="values as a JSON object")
    p.add_argument("--name", default="smsc", help="release name (template)")
    p.add_argument("--namespace", default="smsc", help="release namespace (template)")
    p.add_argument("--notes", action="store_true", help="print the rendered NOTES.txt only")
    p.add_argument("--include-crds", action="store_true", help="also print the chart's crds/ (template)")
    p.add_argument("-a", "--api-versions", action="append", default=[],
                   help="an API version the cluster serves, e.g. kafka.strimzi.io/v1/KafkaTopic (template; repeatable)")
    a = p.parse_args()
    values = load_values(a.values, a.set_json)
    try:
        if a.command == "lint":
            return lint(a.chart, values)
        return template(a.chart, values, a.name, a.namespace, a.notes, a.include_crds, a.api_versions)
    except helm.HelmError as e:
        print(f"helmpy: {a.command} {a.chart}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
