"""Shared helpers for the lab's pytest suites: the manifest, lab services with their secrets,
and a runner for the leakscope binary that refuses anything outside loopback."""

import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import lab  # noqa: E402

# The debug build ./test makes; LEAKSCOPE_BINARY picks another (e.g. the release build for the
# 2.4 M-user benchmark lab).
BINARY = Path(os.environ.get("LEAKSCOPE_BINARY", lab.ROOT / "target" / "debug" / "leakscope"))


# The whole lab as a scan names it (its networks plus every service's ADDRESS:PORT), on the
# lab's own network (LEAKSCOPE_LAB_NET, 127.0 unless set): several labs can run side by side.
LAB_TARGETS = lab.lab_targets()


def lab_net(third: int, host: int | None = None) -> str:
    """An address (or, without `host`, a /24) in the lab's network: lab_net(10, 4) = 127.0.10.4."""
    return f"{lab.NET}.{third}.0/24" if host is None else f"{lab.NET}.{third}.{host}"


def container_key(name: str) -> str:
    """A scanned container's name as the manifest writes it: key-pattern placeholders
    (`db0:user:<uuid>`, `fragment:home:<n>`) are `*` there (`db0:user:*`)."""
    return re.sub(r"<[a-z]+>", "*", name)


def leakscope_scan(*args: str) -> tuple[int, dict]:
    """Runs `leakscope scan ARGS --format json --quiet`; returns (exit code, report)."""
    for a in args:
        if a.startswith("-"):
            continue
        host = a.rsplit(":", 1)[0] if a.count(":") == 1 else a
        host = host.split("/")[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        assert ip.is_loopback, f"test harness refuses non-loopback target {a}"
    assert BINARY.exists(), f"{BINARY} missing: run cargo build (./test does)"
    out = subprocess.run([str(BINARY), "scan", *args, "--format", "json", "--quiet", "--no-store"], capture_output=True, text=True,
                         env={**os.environ, "LEAKSCOPE_LOOPBACK_ONLY": "1"}, timeout=1800)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads(lab.MANIFEST.read_text())


@pytest.fixture(scope="session")
def lab_services() -> dict:
    """name -> lab.Service with real passwords filled in."""
    return {s.name: s for s in lab.services_with_secrets(lab.load_state())}
