"""Memcached: a full scan reads the lab's memcached without writing, and inventories every key
pattern of the manifest with exact counts and samples.

Read-only evidence: `stats` counters that any write, delete, touch, increment or flush moves
(cmd_set, cmd_flush, cmd_touch, delete_*, incr_*, decr_*, cas_*, touch_*, total_items,
curr_items) are unchanged; get_hits grows (the sample reads)."""

import socket

from conftest import container_key, lab, leakscope_scan

WRITE_COUNTERS = ("cmd_set", "cmd_flush", "cmd_touch", "delete_misses", "delete_hits", "incr_misses", "incr_hits",
                  "decr_misses", "decr_hits", "cas_misses", "cas_hits", "touch_hits", "touch_misses", "total_items",
                  "curr_items")


def stats(svc):
    with socket.create_connection((svc.address, svc.port), timeout=10) as s:
        s.sendall(b"stats\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            assert chunk
            buf += chunk
    return {l.split()[1]: l.split()[2] for l in buf.decode().splitlines() if l.startswith("STAT ")}


def test_full_scan_is_read_only_and_inventories_the_manifest(manifest, lab_services):
    svc = lab_services["memcached-open"]
    want = next(m for m in manifest["services"] if m["name"] == "memcached-open")
    before = stats(svc)
    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--full")
    after = stats(svc)
    for k in WRITE_COUNTERS:
        assert before[k] == after[k], f"{k} moved: {before[k]} -> {after[k]}"
    assert int(after["get_hits"]) > int(before["get_hits"]), "samples were read"

    [got] = report["services"]
    containers = {container_key(c["name"]): c for c in got["containers"]}
    assert set(containers) == {c["name"] for c in want["containers"]}
    for c in want["containers"]:
        g = containers[c["name"]]
        assert g["kind"] == c["kind"] and g["records"] == c["records"] and not g["records_estimated"]
        assert g["sampled"] > 0
        truth = {f["path"] for f in c["fields"]}
        assert truth <= {f["path"] for f in g["fields"]}
