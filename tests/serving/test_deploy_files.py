"""docs/deploy/compose.yaml and k8s.yaml are not run here (no docker daemon, no cluster): check what can be
checked without them, that they parse and that every flag they pass to ``ctxrec serve`` is one it takes."""

from __future__ import annotations

from pathlib import Path

import typer.main
import yaml

from ctxrec.cli import app

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"


def _serve_flags() -> set[str]:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]  # a click group
    return {opt for p in serve.params for opt in getattr(p, "opts", [])}


def _check(args: list[str], where: str) -> None:
    flags = _serve_flags()
    given = [a.split("=", 1)[0] for a in args if a.startswith("--")]
    assert given, where
    unknown = [f for f in given if f not in flags]
    assert not unknown, f"{where}: ctxrec serve has no {unknown}"


def test_compose_services_pass_only_known_serve_flags() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    servers = {name: svc for name, svc in doc["services"].items() if svc.get("image", "").startswith("ctxrec")}
    assert set(servers) == {"ctxrec", "ctxrec-ingest"}
    for name, svc in servers.items():
        _check(svc["command"], f"compose.yaml service {name}")
    assert "--nice=10" in servers["ctxrec-ingest"]["command"]
    nginx = doc["configs"]["nginx_conf"]["content"]
    assert "location = /v1/events" in nginx and "proxy_pass http://ctxrec_ingest;" in nginx


def test_k8s_deployments_pass_only_known_serve_flags() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text()))
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"ctxrec", "ctxrec-ingest"}
    for name, d in deployments.items():
        (container,) = d["spec"]["template"]["spec"]["containers"]
        _check(container["args"], f"k8s.yaml Deployment {name}")
        assert {p: container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")} == {
            "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    routes = {p["path"]: p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert routes == {"/v1/events": "ctxrec-ingest", "/": "ctxrec"}
