"""InfluxDB 1.x: a full scan of the lab's open InfluxDB reads it without writing, and
inventories every measurement of the manifest with exact counts, samples, the truth's
categories and its distinct people.

Read-only evidence, from the server's own counters (`/debug/vars`): the HTTP service's write
requests and points written, and the write service's point requests, are unchanged, while its
query requests grew by what the scan sent; the databases and the points of every measurement
are unchanged."""

from conftest import leakscope_scan
from kinds.influxdb import debug_vars, query

WRITES = ("writeReq", "pointsWrittenOK", "pointsWrittenFail", "pointsWrittenDropped", "promWriteReq")


def counters(svc) -> tuple[dict, dict]:
    d = debug_vars(svc)
    httpd = next(v["values"] for k, v in d.items() if k.startswith("httpd"))
    return httpd, d["write"]["values"]


def points(svc, containers) -> dict:
    out = {}
    for c in containers:
        got = query(svc, f"SELECT COUNT(*) FROM \"{c['database']}\"..\"{c['table']}\"")
        out[c["name"]] = got["results"][0]["series"][0]["values"][0][1:]
    return out


def test_full_scan_is_read_only_and_inventories_the_manifest(manifest, lab_services):
    svc = lab_services["influxdb-open"]
    want = next(m for m in manifest["services"] if m["name"] == "influxdb-open")
    dbs_before = query(svc, "SHOW DATABASES")
    points_before = points(svc, want["containers"])
    httpd_before, write_before = counters(svc)
    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--full")
    httpd_after, write_after = counters(svc)
    for k in WRITES:
        assert httpd_before.get(k) == httpd_after.get(k), f"httpd {k} moved: {httpd_before.get(k)} -> {httpd_after.get(k)}"
    for k in ("pointReq", "writeOk", "req"):
        assert write_before[k] == write_after[k], f"write {k} moved"
    assert httpd_after["queryReq"] > httpd_before["queryReq"] + len(want["containers"]), "the scan's queries were counted"
    assert query(svc, "SHOW DATABASES") == dbs_before
    assert points(svc, want["containers"]) == points_before

    [got] = report["services"]
    assert (got["protocol"], got["access"]) == ("influxdb", "open")
    containers = {c["name"]: c for c in got["containers"]}
    assert set(containers) == {c["name"] for c in want["containers"]}, sorted(containers)
    for c in want["containers"]:
        g = containers[c["name"]]
        assert g["kind"] == c["kind"] and g["records"] == c["records"] and not g["records_estimated"], (c["name"], g)
        assert g["sampled"] > 0
        if c.get("subjects") is not None:
            assert g["subjects_estimate"] == c["subjects"], (c["name"], g["subjects_estimate"], g["subjects_method"])
        fields = {f["path"]: set(f["categories"]) for f in g["fields"]}
        for f in c["fields"]:
            assert f["path"] in fields, (c["name"], f["path"])
            assert set(f["categories"]) <= fields[f["path"]], (c["name"], f, fields[f["path"]])
