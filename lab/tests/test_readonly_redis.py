"""Redis: a full scan (--full) reads the lab's Redis servers without writing, and inventories
every key pattern of the manifest with exact counts and samples.

Read-only evidence: INFO commandstats before and after — every command whose call count grew is
on the probe's allowlist (or is our own INFO), and the keyspace (keys per database) is unchanged.
"""

import re

import pytest

from conftest import container_key, lab, leakscope_scan

def allowed_commands() -> set[str]:
    """ALLOWED_COMMANDS of the Rust Redis module, read from its source (one truth)."""
    src = (lab.ROOT / "crates/core/src/protocols/redis/wire.rs").read_text()
    body = re.search(r"pub const ALLOWED_COMMANDS: &\[&str\] = &\[(.*?)\];", src, re.S).group(1)
    names = {n.lower() for n in re.findall(r'"(\w+)"', body)}
    assert {"scan", "type", "getrange"} <= names, names
    assert not names & {"set", "del", "flushall", "config", "eval"}, names
    return names


ALLOWED = allowed_commands()


def commandstats(svc):
    text = lab.resp_cmd(svc, "INFO", "commandstats", password=svc.password).decode(errors="replace")
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_([a-z|_]+):calls=(\d+)", text)}


def keyspace(svc):
    return lab.resp_cmd(svc, "INFO", "keyspace", password=svc.password).decode(errors="replace").split("\r\n", 1)[1]


OPEN = ["redis-open", "redis-alt-port", "redis-tls"]


@pytest.mark.parametrize("name", OPEN)
def test_full_scan_is_read_only_and_inventories_the_manifest(name, manifest, lab_services):
    svc = lab_services[name]
    want = next(m for m in manifest["services"] if m["name"] == name)
    before_cmds, before_keys = commandstats(svc), keyspace(svc)
    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--full")
    after_cmds, after_keys = commandstats(svc), keyspace(svc)

    grown = {c for c in after_cmds if after_cmds[c] > before_cmds.get(c, 0)}
    assert grown <= ALLOWED, f"non-allowlisted commands ran: {grown - ALLOWED}"
    assert grown & {"scan", "type"}, "the inventory did run"
    assert before_keys == after_keys

    [got] = report["services"]
    containers = {container_key(c["name"]): c for c in got["containers"]}
    for c in want["containers"]:
        assert c["name"] in containers, f"{c['name']} missing; got {sorted(containers)}"
        g = containers[c["name"]]
        assert g["kind"] == c["kind"]
        assert g["records"] == c["records"] and not g["records_estimated"]
        assert g["sampled"] > 0
        paths = {f["path"] for f in g["fields"]}
        truth = {f["path"] for f in c["fields"]}
        assert truth <= paths, f"{c['name']}: fields missing {truth - paths}"
    assert set(containers) == {c["name"] for c in want["containers"]}
