"""etcd: a full scan reads the lab's etcd without writing, inventories every key pattern of the
manifest with exact counts, samples and the truth's categories, and stays out of a server with
authentication enabled.

Read-only evidence from etcd's own counters (`/v3/maintenance/status`): the store's revision
(every put, delete and txn that writes moves it) and the raft index (every request that goes
through consensus moves it: writes, but also compactions, lease grants, member and auth
changes) are unchanged, and so are the key count and every key's `mod_revision` and
`version`."""

import base64
import json

from conftest import container_key, leakscope_scan
from kinds import KINDS
from kinds.etcd import call


def status(svc, token=None):
    return call(svc, "/v3/maintenance/status", {}, token)


def keys(svc, token=None):
    """Every key with its mod_revision and version (no values)."""
    r = call(svc, "/v3/kv/range", {"key": "AA==", "range_end": "AA==", "keys_only": True}, token)
    return {base64.b64decode(kv["key"]): (kv["mod_revision"], kv.get("version")) for kv in r.get("kvs", [])}


def snapshot(svc, token=None):
    st = status(svc, token)
    return {"revision": st["header"]["revision"], "raft_index": st["raftIndex"], "keys": keys(svc, token)}


def test_full_scan_is_read_only_and_inventories_the_manifest(manifest, lab_services):
    svc = lab_services["etcd-open"]
    want = next(m for m in manifest["services"] if m["name"] == "etcd-open")
    before = snapshot(svc)
    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--full")
    after = snapshot(svc)
    assert before["revision"] == after["revision"], "the revision moved: something was written"
    assert before["raft_index"] == after["raft_index"], "a request went through consensus"
    assert before["keys"] == after["keys"]

    [got] = report["services"]
    assert (got["protocol"], got["access"], got["version"]) == ("etcd", "open", want["version"])
    containers = {container_key(c["name"]): c for c in got["containers"]}
    assert set(containers) == {c["name"] for c in want["containers"]}
    for c in want["containers"]:
        g = containers[c["name"]]
        assert g["kind"] == c["kind"] and g["records"] == c["records"] and not g["records_estimated"]
        assert g["sampled"] > 0
        fields = {f["path"]: f for f in g["fields"]}
        assert {f["path"] for f in c["fields"]} <= set(fields)
        for f in c["fields"]:
            assert set(f["categories"]) <= set(fields[f["path"]]["categories"]), (c["name"], f, fields[f["path"]])
    # No value leaves the report unmasked: the sampled e-mail addresses are not in it.
    text = json.dumps(report)
    assert "@outlook.com\"" not in text and "@gmail.com\"" not in text


def test_auth_enabled_is_not_read(manifest, lab_services):
    svc = lab_services["etcd-auth"]
    token = KINDS["etcd"].token(svc)
    before = snapshot(svc, token)
    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--full", "--try-defaults")
    [got] = report["services"]
    assert (got["protocol"], got["access"]) == ("etcd", "auth_required")
    assert not got.get("containers")
    after = snapshot(svc, token)
    assert before["revision"] == after["revision"] and before["keys"] == after["keys"]
