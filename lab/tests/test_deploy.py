"""The deployment examples in deploy/ are valid:

- the systemd unit passes `systemd-analyze verify` with no warning (its ExecStart pointed at the
  built binary), keeps the sandbox the docs promise (DynamicUser, NoNewPrivileges,
  ProtectSystem=strict, only its state directory writable) and scores "OK" or better in
  `systemd-analyze security --offline`;
- the Kubernetes manifests validate against the Kubernetes schema (kubernetes-validate, strict:
  an unknown or misspelt field fails), with the pod locked down;
- the watch configurations shipped with both pass `leakscope watch --check-config` (with their
  example addresses mapped to loopback: tests never name a real network).
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import watchkit as wk

DEPLOY = wk.lab.ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "leakscope-watch.service"
MANIFEST = DEPLOY / "kubernetes" / "leakscope-watch.yaml"


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies_and_is_sandboxed(tmp_path):
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/leakscope", str(wk.BINARY)))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr
    s = unit_settings()
    for key, want in {"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                      "ProtectHome": "yes", "StateDirectory": "leakscope", "CapabilityBoundingSet": ""}.items():
        assert s.get(key) == [want], (key, s.get(key))
    assert "ReadWritePaths" not in s, "only the state directory is writable"
    exec_start = s["ExecStart"][0]
    assert "--db /var/lib/leakscope/" in exec_start and "--revocation-list /var/lib/leakscope/" in exec_start
    sec = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", sec.stdout)
    assert m, sec.stdout[-2000:] + sec.stderr
    assert float(m.group(1)) <= 2.0 and m.group(2) in ("OK", "SAFE"), m.group(0)
    # A misspelt key is reported (and would fail this test).
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text().replace("NoNewPrivileges", "NoNewPrivilegs"))
    out = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True)
    assert "Unknown key" in out.stderr


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_manifests_validate_against_the_schema(tmp_path):
    validate = Path(sys.executable).parent / "kubernetes-validate"
    out = subprocess.run([str(validate), "--strict", str(MANIFEST)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    kinds = {d["kind"] for d in docs(MANIFEST)}
    assert {"ConfigMap", "Deployment", "PersistentVolumeClaim"} <= kinds
    dep = next(d for d in docs(MANIFEST) if d["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    writable = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/var/lib/leakscope"]
    # The schema check fails on a misspelt field.
    bad = tmp_path / "bad.yaml"
    bad.write_text(MANIFEST.read_text().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    out = subprocess.run([str(validate), "--strict", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0


def loopback(config: str) -> str:
    """The example config with its addresses on loopback, so --check-config runs under
    LEAKSCOPE_LOOPBACK_ONLY (nothing is contacted either way)."""
    config = re.sub(r"\b10\.0\.(\d+)\.(\d+)", lambda m: f"{wk.lab.NET}.{30 + int(m.group(1)) % 10}.{m.group(2)}", config)
    config = re.sub(r"https://[^/\"]+", "https://127.0.0.1", config)
    config = re.sub(r'server = "[^"]+"', 'server = "127.0.0.1"', config)
    return config.replace("0.0.0.0:", "127.0.0.1:")


@pytest.mark.parametrize("source", ["systemd", "kubernetes"])
def test_shipped_watch_configs_pass_check_config(tmp_path, source):
    if source == "systemd":
        text = (DEPLOY / "systemd" / "watch.toml").read_text()
    else:
        cm = next(d for d in docs(MANIFEST) if d["kind"] == "ConfigMap")
        text = cm["data"]["watch.toml"]
    cfg = tmp_path / "watch.toml"
    cfg.write_text(loopback(text))
    out = subprocess.run([str(wk.BINARY), "watch", "--check-config", str(cfg)], capture_output=True, text=True,
                         env=wk.ENV, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "configuration OK" in out.stdout
