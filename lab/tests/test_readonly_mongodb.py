"""MongoDB (FerretDB): a full scan reads the lab's mongodb-open without writing, and inventories
every collection of the manifest with exact counts and samples.

Read-only evidence, three independent ways:
- `serverStatus.metrics.commands`: FerretDB has no `opcounters`; it counts every command it ran,
  by name, since it started. Between the two snapshots only the scan's allowlisted commands (the
  Rust `ALLOWED_COMMANDS`) and this harness's own `serverStatus`/handshake may move: any write
  (`insert`, `update`, `delete`, `findAndModify`, `create`, `drop`, `createIndexes` …) or any other
  command would show up. `collStats` and `dbStats` must not move either: FerretDB answers them by
  running SQLite `ANALYZE`, which writes statistics into the database file. Only `aggregate` may
  fail (the one `$sample` attempt, NotImplemented on FerretDB).
- The store's files: the SQLite databases and their write-ahead logs are byte-identical before
  and after. This also catches writes that are no data change (statistics, metadata); the `-shm`
  index is left out because readers update it.
- The data itself: database and collection names, `count` and a SHA-256 of every document of
  every collection are unchanged.
"""

import hashlib
import re
from pathlib import Path

import bson
import pymongo

from conftest import lab, leakscope_scan

SERVICE = "mongodb-open"
# What pymongo and this test send themselves, next to the scan.
HARNESS = {"serverStatus", "hello", "ismaster", "isMaster", "ping", "endSessions"}


def allowed_commands() -> set[str]:
    """ALLOWED_COMMANDS of the Rust MongoDB module, read from its source (one truth)."""
    src = (lab.ROOT / "crates/core/src/protocols/mongodb/wire.rs").read_text()
    body = re.search(r"pub const ALLOWED_COMMANDS: &\[&str\] = &\[(.*?)\];", src, re.S).group(1)
    names = set(re.findall(r'"(\w+)"', body))
    assert {"find", "getMore", "killCursors", "count", "listCollections"} <= names, names
    # FerretDB counts isMaster under its lower-case legacy name.
    return names | {n.lower() for n in names}


def client(svc) -> pymongo.MongoClient:
    return pymongo.MongoClient(f"mongodb://{svc.address}:{svc.port}/", directConnection=True,
                               serverSelectionTimeoutMS=10000)


def command_metrics(c) -> dict:
    return c.admin.command("serverStatus")["metrics"]["commands"]


def files(svc) -> dict:
    """(size, sha256) of every SQLite database and write-ahead log of the service."""
    out = {}
    for p in sorted(Path(lab.STATE / svc.name).glob("*.sqlite*")):
        if p.name.endswith("-shm"):
            continue
        out[p.name] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    assert any(n.endswith(".sqlite") for n in out), out
    return out


def content(c) -> dict:
    """database.collection -> (count, SHA-256 of all documents in _id order)."""
    out = {}
    for db in sorted(c.list_database_names()):
        for name in sorted(c[db].list_collection_names()):
            h = hashlib.sha256()
            n = 0
            for doc in c[db][name].find({}, sort=[("_id", 1)], batch_size=2000):
                h.update(bson.encode(doc))
                n += 1
            out[f"{db}.{name}"] = (n, h.hexdigest())
    return out


def test_full_scan_is_read_only_and_inventories_the_manifest(manifest, lab_services):
    svc = lab_services[SERVICE]
    want = next(m for m in manifest["services"] if m["name"] == SERVICE)
    c = client(svc)
    files_before = files(svc)
    data_before = content(c)
    before = command_metrics(c)

    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--full", "--try-defaults")

    after = command_metrics(c)
    data_after = content(c)
    files_after = files(svc)
    c.close()

    allowed = allowed_commands() | HARNESS
    moved = {k: v["total"] - before.get(k, {"total": 0})["total"] for k, v in after.items()}
    moved = {k: d for k, d in moved.items() if d}
    assert set(moved) <= allowed, f"commands outside the allowlist ran: {moved}"
    for k in ("collStats", "dbStats", "insert", "update", "delete", "findAndModify", "create", "drop"):
        assert k not in moved, f"{k} ran {moved[k]} times"
    assert moved.get("find", 0) > 0 and moved.get("count", 0) >= len(want["containers"]), moved
    failed = {k: v["failed"] - before.get(k, {"failed": 0})["failed"] for k, v in after.items()}
    assert {k for k, d in failed.items() if d} <= {"aggregate"}, failed
    assert files_after == files_before, "the store's SQLite files changed"
    assert data_after == data_before

    [got] = report["services"]
    assert (got["protocol"], got["product"], got["access"]) == ("mongodb", "FerretDB", "open")
    containers = {g["name"]: g for g in got["containers"]}
    assert set(containers) == {w["name"] for w in want["containers"]}, (set(containers), got["inventory_notes"])
    for w in want["containers"]:
        g = containers[w["name"]]
        assert g["kind"] == w["kind"] == "collection"
        assert not g["system"]
        if g["records_estimated"]:
            assert abs(g["records"] - w["records"]) <= w["records"] / 100, (w["name"], g["records"])
        else:
            assert g["records"] == w["records"], (w["name"], g["records"], w["records"])
        # FerretDB counts by reading, and --full walks every document: exact either way.
        assert not g["records_estimated"]
        if w["records"]:
            assert g["sampled"] > 0, w["name"]
        # Every lab document carries every manifest field, so every one of them occurs in a
        # non-empty sample; ObjectId `_id`s the loader added are not reported.
        truth = {f["path"] for f in w["fields"]}
        paths = {f["path"] for f in g["fields"]}
        assert truth <= paths, (w["name"], truth - paths)
        assert "_id" not in paths
