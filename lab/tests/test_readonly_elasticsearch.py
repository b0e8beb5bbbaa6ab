"""Elasticsearch/OpenSearch: a full scan (--full --try-defaults) of the lab's OpenSearch services
reads them without writing, and inventories every index of the manifest with exact counts,
samples and field paths.

Read-only evidence, read from each OpenSearch node itself (opensearch-https is stunnel in front
of opensearch-alt-port, so that node's counters cover it too) before and after the scans:
- per index, `indexing.index_total`, `indexing.delete_total`, `indexing.noop_update_total`,
  `docs.count` and `docs.deleted` of `GET /_stats` (primaries and total): any document write,
  update or delete moves one of them;
- per shard, `seq_no.max_seq_no` (`GET /_stats?level=shards`): every operation that reaches a
  shard's translog, including a no-op or a delete of a missing id, takes a sequence number;
- per index, the metadata `version`, `mapping_version`, `settings_version`, `aliases_version`
  and `state` (`GET /_cluster/state/metadata`): a dynamic mapping update, a settings change,
  an alias, a close or an open bumps them; and the set of index names, which a created index
  (e.g. a `.tasks` index) would change;
- `GET /_cluster/settings`: no persistent or transient setting appeared;
- `search.scroll_total` and `search.point_in_time_total` unchanged and `search.open_contexts`
  back to its value: the inventory left no scroll or point in time open on the server.
`search.query_total` must grow: proof the inventory did search.
"""

import json

import pytest

from conftest import lab, leakscope_scan

SCANNED = ["opensearch-open", "opensearch-alt-port", "opensearch-https"]
# The nodes whose counters cover the scanned services.
NODES = ["opensearch-open", "opensearch-alt-port"]
STATS = "/_stats/indexing,docs,search?level=shards&expand_wildcards=open,hidden"
METADATA = ("/_cluster/state/metadata?filter_path=metadata.cluster_uuid,metadata.indices.*.version,"
            "metadata.indices.*.mapping_version,metadata.indices.*.settings_version,"
            "metadata.indices.*.aliases_version,metadata.indices.*.state")


def get_json(svc, path):
    status, body = lab.http_req(svc, "GET", path)
    assert status == 200, (path, body[:300])
    return json.loads(body)


def snapshot(svc):
    """The node's write-sensitive counters, and its search counters apart."""
    stats = get_json(svc, STATS)
    writes, search = {}, {}
    for name, idx in stats["indices"].items():
        for level in ("primaries", "total"):
            s = idx[level]
            writes[(name, level)] = (
                s["indexing"]["index_total"], s["indexing"]["delete_total"], s["indexing"]["noop_update_total"],
                s["docs"]["count"], s["docs"]["deleted"],
            )
        for shard, copies in idx["shards"].items():
            for i, copy in enumerate(copies):
                writes[(name, f"shard {shard}/{i}")] = copy["seq_no"]["max_seq_no"]
        p = idx["primaries"]["search"]
        search[name] = {k: p[k] for k in ("query_total", "scroll_total", "point_in_time_total", "open_contexts")}
    meta = get_json(svc, METADATA)["metadata"]
    settings = get_json(svc, "/_cluster/settings")
    return {"writes": writes, "metadata": meta, "settings": settings}, search


def paths(container):
    return {f["path"] for f in container["fields"]}


def test_full_scan_is_read_only_and_inventories_the_manifest(manifest, lab_services):
    wants = {m["name"]: m for m in manifest["services"] if m["name"] in SCANNED}
    assert set(wants) == set(SCANNED)
    targets = [f"{lab_services[n].address}:{lab_services[n].port}" for n in SCANNED]

    before = {n: snapshot(lab_services[n]) for n in NODES}
    _, full = leakscope_scan(*targets, "--full", "--try-defaults")
    _, default = leakscope_scan(*targets, "--try-defaults")
    after = {n: snapshot(lab_services[n]) for n in NODES}

    for n in NODES:
        (b_state, b_search), (a_state, a_search) = before[n], after[n]
        assert a_state["writes"] == b_state["writes"], f"{n}: a write counter moved"
        assert a_state["metadata"] == b_state["metadata"], f"{n}: index metadata changed"
        assert a_state["settings"] == b_state["settings"], f"{n}: cluster settings changed"
        assert set(a_search) == set(b_search)
        for idx in b_search:
            b, a = b_search[idx], a_search[idx]
            assert (a["scroll_total"], a["point_in_time_total"]) == (b["scroll_total"], b["point_in_time_total"]), idx
            assert a["open_contexts"] <= b["open_contexts"], f"{n}/{idx}: a search context was left open"
        assert any(a_search[i]["query_total"] > b_search[i]["query_total"] for i in b_search), f"{n}: no search ran"

    for report, label in ((full, "--full"), (default, "default")):
        got = {(s["address"], s["port"]): s for s in report["services"]}
        for name, want in wants.items():
            svc = got[(want["address"], want["port"])]
            assert svc["protocol"] == "elasticsearch" and svc["tls"] == want["tls"], (label, name)
            assert svc["access"] == "open", (label, name, svc["evidence"])
            containers = {c["name"]: c for c in svc["containers"]}
            assert set(containers) >= {c["name"] for c in want["containers"]}, (label, name, sorted(containers))
            # The lab's nodes hold nothing but the manifest's indices (no security plugin, no
            # Dashboards): anything else would be invented or a system index made visible.
            extra = {c for c in containers if not containers[c]["system"]} - {c["name"] for c in want["containers"]}
            assert not extra, (label, name, extra)
            for c in want["containers"]:
                g = containers[c["name"]]
                where = f"{label} {name}/{c['name']}"
                assert g["kind"] == c["kind"] == "index", where
                # OpenSearch counts are exact (docs.count without nested fields, or _count).
                assert g["records"] == c["records"] and not g["records_estimated"], (where, g["records"])
                assert g["bytes"] > 0, where
                assert not g["system"], where
                assert g["sampled"] == min(200, c["records"]) > 0, (where, g["sampled"])
                truth = {f["path"] for f in c["fields"]}
                # Every manifest field occurs in 200 random documents of this dataset (the rarest,
                # scale.*, is in ~10 % of customers), and no field is invented.
                assert truth <= paths(g), (where, truth - paths(g))
                assert paths(g) <= truth, (where, paths(g) - truth)


@pytest.mark.parametrize("name", ["opensearch-open"])
def test_no_sample_lists_and_counts_only(name, manifest, lab_services):
    svc = lab_services[name]
    want = next(m for m in manifest["services"] if m["name"] == name)
    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--no-sample")
    [got] = report["services"]
    containers = {c["name"]: c for c in got["containers"]}
    for c in want["containers"]:
        g = containers[c["name"]]
        assert g["records"] == c["records"] and not g["records_estimated"]
        # No record is read: fields can only come from the mapping (declared, never seen).
        assert g["sampled"] == 0
        assert all(f["seen"] == 0 and not f["examples"] and not f.get("fingerprints") for f in g["fields"]), g["fields"]
