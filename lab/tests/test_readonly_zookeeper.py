"""ZooKeeper: a full scan reads the lab's ZooKeeper without writing, inventories every znode
pattern of the manifest with exact counts, samples and the truth's categories, and stays out of
data behind digest ACLs.

Read-only evidence from ZooKeeper's own counters: every znode's stat (`mzxid` and `version`
move with its data, `cversion` and `pzxid` with its children, `aversion` with its ACL) and the
server's node count (`srvr`) are unchanged. The server's last zxid does move: opening and
expiring a session are transactions of ZooKeeper's own bookkeeping, which any client causes."""

import json

from conftest import container_key, leakscope_scan
from kinds import KINDS
from kinds.zookeeper import srvr

ZK = KINDS["zookeeper"]


def tree(svc):
    """Every znode's stat, by path (ZooKeeper's own /zookeeper included)."""
    zk = ZK.client(svc)
    out = {}
    try:
        todo = ["/"]
        while todo:
            path = todo.pop()
            children, st = zk.get_children(path, include_data=True)
            out[path] = (st.mzxid, st.version, st.cversion, st.aversion, st.pzxid, st.numChildren, st.dataLength)
            todo.extend((path.rstrip("/") + "/" + c) for c in children)
    finally:
        zk.stop()
        zk.close()
    return out


def node_count(svc):
    line = next(l for l in srvr(svc).splitlines() if l.startswith("Node count:"))
    return int(line.split(":")[1])


def test_full_scan_is_read_only_and_inventories_the_manifest(manifest, lab_services):
    svc = lab_services["zookeeper-open"]
    want = next(m for m in manifest["services"] if m["name"] == "zookeeper-open")
    before, nodes = tree(svc), node_count(svc)
    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--full")
    assert tree(svc) == before, "a znode's stat moved: something was written"
    assert node_count(svc) == nodes

    [got] = report["services"]
    assert (got["protocol"], got["access"], got["version"]) == ("zookeeper", "open", want["version"])
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
    text = json.dumps(report)
    assert "@outlook.com\"" not in text and "@gmail.com\"" not in text


def test_digest_acls_are_not_read(manifest, lab_services):
    svc = lab_services["zookeeper-acl"]
    before = tree(svc)
    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--full", "--try-defaults")
    [got] = report["services"]
    assert (got["protocol"], got["access"]) == ("zookeeper", "auth_required"), got["evidence"]
    assert not got.get("containers")
    assert tree(svc) == before
