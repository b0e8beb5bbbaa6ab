"""The report must not become the next leak: raw values of the lab's sensitive fields never appear
in leakscope's stdout, stderr, JSON, Markdown, HTML, GDPR draft or SQLite store.

The secrets are the lab's own: every value of sensitive fields in the first records of each
container the manifest lists (e-mails, phone numbers, Alexa and API tokens, JWTs, card numbers,
IBANs, codice fiscale, password hashes, MACs, SSIDs …), taken straight from the generator. Short
values that could occur by chance (a 3-digit number) are skipped.

The real-schema fixtures (lab/fixtures/) are scanned too: their people's e-mail addresses (in the
letter case the fixtures wrote) and phone numbers sit inside PHP sessions, pickles, signed Django
sessions, Celery's base64 message bodies, BullMQ and express-session JSON, so a value decoded from
a blob must not reach any output either.
"""

import json
import os
import subprocess
import tempfile
from pathlib import Path

from conftest import BINARY, LAB_TARGETS, lab

SENSITIVE = ("identity.email", "identity.phone", "identity.name", "identity.address", "credential.",
             "financial.", "government.id", "device.mac", "network.ssid", "identity.username")
LABGEN = lab.ROOT / "target" / "release" / "leakscope-labgen"


def planted(manifest):
    """Raw sensitive values of the main dataset, straight from the generator."""
    truth = json.loads(subprocess.run([str(LABGEN), "truth", "--users", str(manifest["users"]), "--seed",
                                       str(manifest["seed"])], capture_output=True, text=True, check=True).stdout)
    secrets = set()
    for layout in ("elasticsearch", "mongodb"):
        for c in truth["layouts"][layout]:
            paths = {f["path"] for f in c["fields"] if any(x in cat for cat in f["categories"] for x in SENSITIVE)}
            if not paths:
                continue
            out = subprocess.run([str(LABGEN), "emit", "--users", str(manifest["users"]), "--seed", str(manifest["seed"]),
                                  "--layout", layout, "--container", c["name"]], capture_output=True, text=True,
                                 check=True).stdout.splitlines()[:300]
            for line in out:
                for path, value in walk(json.loads(line)):
                    if path in paths and isinstance(value, str) and len(value) >= 8:
                        secrets.add(value)
    return secrets


def planted_in_fixtures(manifest):
    """The fixtures' people's e-mail addresses and phone numbers, as the fixtures wrote them."""
    import fixtures  # lab/fixtures/, on the path through conftest's lab import

    groups = fixtures.people(LABGEN, manifest["users"], manifest["seed"])
    return {v for ps in groups.values() for p in ps for v in (p["email"], p["phone_alt"]) if len(v) >= 8}


def walk(v, path=""):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from walk(x, f"{path}.{k}" if path else k)
    elif isinstance(v, list):
        for x in v:
            yield from walk(x, f"{path}[]")
    else:
        yield path, v


def test_no_raw_sensitive_value_leaves_the_process(manifest):
    secrets = planted(manifest)
    assert len(secrets) > 500, "enough planted values to mean something"
    from_blobs = planted_in_fixtures(manifest)
    assert len(from_blobs) > 500
    secrets |= from_blobs
    env = {**os.environ, "LEAKSCOPE_LOOPBACK_ONLY": "1"}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        db = d / "findings.db"
        targets = LAB_TARGETS + [f"{s['address']}:{s['port']}" for s in manifest["fixtures"]["services"]]
        outputs = []
        scan = subprocess.run([str(BINARY), "scan", *targets, "--try-defaults", "--full", "--db", str(db),
                               "--format", "json"], capture_output=True, env=env, timeout=1800)
        assert scan.returncode in (0, 1), scan.stderr
        outputs += [("scan stdout", scan.stdout), ("scan stderr", scan.stderr)]
        report = json.loads(scan.stdout)
        assert any(f["examples"] for s in report["services"] for c in s["containers"] for f in c["fields"]), \
            "masked examples exist, so the check below is about real output"
        for fmt in ("table", "json", "md", "html", "gdpr"):
            r = subprocess.run([str(BINARY), "report", "latest", "--format", fmt, "--db", str(db)], capture_output=True,
                               env=env, timeout=300)
            assert r.returncode == 0, r.stderr
            outputs += [(f"report {fmt}", r.stdout), (f"report {fmt} stderr", r.stderr)]
        for f in d.iterdir():
            outputs.append((f.name, f.read_bytes()))  # the SQLite file, its WAL and shm
        leaks = [(where, s) for where, blob in outputs for s in secrets if s.encode() in blob]
        assert not leaks, f"{len(leaks)} raw values leaked, e.g. {leaks[:3]}"
