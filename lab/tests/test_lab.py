"""Acceptance tests of the lab itself: every service runs and answers its own protocol, holds
exactly what lab/manifest.json says, and listens on loopback only.

Run by ./test (after lab/up) with the lab venv's pytest; they talk only to 127.0.0.0/8.
"""

import ipaddress
import json
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import lab  # noqa: E402

MANIFEST = json.loads(lab.MANIFEST.read_text())
STATE = lab.load_state()
SERVICES = {s.name: s for s in lab.services_with_secrets(STATE)}


def by_kind(kind):
    return [m for m in MANIFEST["services"] if SERVICES[m["name"]].kind == kind]


def ids(entries):
    return [e["name"] for e in entries]


def test_every_service_in_the_manifest_is_running_and_answers():
    assert {m["name"] for m in MANIFEST["services"]} == {s.name for s in lab.SERVICES}
    out = subprocess.run([sys.executable, str(lab.LAB / "lab.py"), "status"], capture_output=True, text=True)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    for m in MANIFEST["services"]:
        assert ipaddress.ip_address(m["address"]).is_loopback


OPENSEARCH = by_kind("opensearch") + by_kind("stunnel")


@pytest.mark.parametrize("m", OPENSEARCH, ids=ids(OPENSEARCH))
def test_opensearch_root_document_is_real(m):
    svc = SERVICES[m["name"]]
    status, body = (lab.https_req if svc.tls else lab.http_req)(svc, "GET", "/")
    doc = json.loads(body)
    assert status == 200
    assert doc["version"]["distribution"] == "opensearch"
    assert doc["version"]["number"].startswith("2.19.")
    assert doc["tagline"].startswith("The OpenSearch Project")


def server_count(svc, c):
    """The record count the server itself reports for a manifest container."""
    if svc.kind in lab.KINDS:
        return lab.KINDS[svc.kind].count(lab, svc, c)
    if svc.kind == "opensearch":
        return json.loads(lab.http_req(svc, "GET", f"/{c['name']}/_count")[1])["count"]
    if svc.kind == "stunnel":
        return json.loads(lab.https_req(svc, "GET", f"/{c['name']}/_count")[1])["count"]
    if svc.kind == "postgres":
        return int(lab.psql(svc, f'SELECT count(*) FROM "{c["schema"]}"."{c["table"]}"', db=c["database"]))
    if svc.kind == "mariadb":
        return int(lab.mariadb(svc, f"SELECT count(*) FROM `{c['database']}`.`{c['table']}`"))
    if svc.kind == "redis":
        env = {"REDISCLI_AUTH": svc.password} if svc.password else {}
        out = subprocess.run(
            ["redis-cli", "-h", svc.address, "-p", str(svc.port), *lab.redis_cli_tls(svc), "-n", str(c["db"]), "--scan", "--pattern", c["pattern"]],
            capture_output=True, text=True, check=True, env={**lab.os.environ, **env},
        ).stdout
        return len(out.split())
    if svc.kind == "memcached":
        return memcached_keys(svc, c["pattern"])
    if svc.kind == "ferretdb":
        code = ("import pymongo,sys; c=pymongo.MongoClient(sys.argv[1]);"
                "print(c[sys.argv[2]][sys.argv[3]].count_documents({}))")
        out = subprocess.run([str(lab.venv_python()), "-c", code, f"mongodb://{svc.address}:{svc.port}/",
                              c["database"], c["collection"]], capture_output=True, text=True, check=True)
        return int(out.stdout)
    raise AssertionError(svc.kind)


def memcached_keys(svc, pattern):
    prefix = pattern.rstrip("*")
    with socket.create_connection((svc.address, svc.port), timeout=10) as s:
        s.sendall(b"lru_crawler metadump all\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = s.recv(1 << 16)
            assert chunk, "memcached closed during metadump"
            buf += chunk
    # metadump URL-encodes keys (`session%3A…`).
    keys = [unquote(l.split(b" ", 1)[0][4:].decode()) for l in buf.splitlines() if l.startswith(b"key=")]
    return sum(1 for k in keys if k.startswith(prefix))


CASES = [(m, c) for m in MANIFEST["services"] for c in m["containers"]]


@pytest.mark.parametrize("m,c", CASES, ids=[f"{m['name']}/{c['name']}" for m, c in CASES])
def test_manifest_counts_equal_what_the_server_reports(m, c):
    assert server_count(SERVICES[m["name"]], c) == c["records"]


def test_manifest_fields_use_taxonomy_ids():
    taxonomy = {
        "identity.email", "identity.username", "identity.name", "identity.phone", "identity.address",
        "identity.birthdate", "identity.user_id", "credential.password", "credential.password_hash",
        "credential.api_token", "credential.oauth_token", "credential.jwt", "credential.cloud_key",
        "credential.private_key", "device.id", "device.mac", "device.model", "device.firmware", "device.name",
        "network.ssid", "network.ip", "location.geo", "health.body", "health.nutrition", "health.vitals",
        "health.condition", "financial.card", "financial.iban", "government.id",
    }
    decoys = 0
    for m in MANIFEST["services"]:
        assert m["containers"], f"{m['name']} holds no data"
        for c in m["containers"]:
            for f in c["fields"]:
                assert set(f["categories"]) <= taxonomy, (m["name"], c["name"], f)
                decoys += not f["categories"]
    assert decoys > 0


def test_nothing_listens_outside_loopback():
    pids = {v["pid"] for v in STATE["services"].values()}
    # Children (e.g. of run.sh) count too: collect the process tree of every recorded PID.
    tree = set(pids)
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            if ppid in pids:
                tree.add(int(p.name))
    out = subprocess.run(["ss", "-ltnupH"], capture_output=True, text=True, check=True).stdout
    seen = 0
    for line in out.splitlines():
        if not any(f"pid={pid}," in line for pid in tree):
            continue
        local = line.split()[4]
        host = local.rsplit(":", 1)[0].strip("[]")
        if host.startswith("::ffff:"):
            host = host[7:]
        seen += 1
        assert host not in ("*", "0.0.0.0", "::") and ipaddress.ip_address(host).is_loopback, line
    assert seen >= len(MANIFEST["services"])
