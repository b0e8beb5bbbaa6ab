"""ClickHouse: a full scan of each lab ClickHouse (HTTP and native port) reads it without
writing, and inventories every table of the manifest with exact counts, samples, the truth's
categories and its distinct people.

Read-only evidence, from the server's own counters: the rows and bytes of every active part of
the user databases (`system.parts`) and the `InsertQuery` / `InsertedRows` counters of user
statements (`system.events`, less what the query log's own flushes write) are unchanged; and
every statement the scan sent, as the server logged it (`system.query_log`), is a `SELECT`
that ran with `readonly=1`."""

import ast
import time

import pytest

from conftest import leakscope_scan
from kinds.clickhouse import query

USER_PARTS = ("SELECT database, table, sum(rows), sum(bytes_on_disk) FROM system.parts "
              "WHERE active AND database NOT IN ('system') GROUP BY database, table ORDER BY database, table")


def events(svc) -> dict:
    out = query(svc, "SELECT event, value FROM system.events")
    return {l.split("\t")[0]: int(l.split("\t")[1]) for l in out.splitlines()}


def scan_queries(svc, since: int) -> list[tuple[str, str, str]]:
    """(query, setting names, setting values) of every statement leakscope sent since `since`."""
    query(svc, "SYSTEM FLUSH LOGS")
    out = query(svc, "SELECT query, Settings.Names, Settings.Values FROM system.query_log "
                     f"WHERE event_time >= toDateTime({since}) AND type = 1 "
                     "AND (http_user_agent LIKE 'leakscope%' OR client_name = 'leakscope') FORMAT TSV")
    return [tuple(l.split("\t")) for l in out.splitlines()]


@pytest.mark.parametrize("name", ["clickhouse-open", "clickhouse-native"])
def test_full_scan_is_read_only_and_inventories_the_manifest(manifest, lab_services, name):
    svc = lab_services[name]
    want = next(m for m in manifest["services"] if m["name"] == name)
    since = int(time.time()) - 1
    parts_before = query(svc, USER_PARTS)
    before = events(svc)
    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--full")
    after = events(svc)
    assert query(svc, USER_PARTS) == parts_before, "user tables changed"
    for k in ("InsertQuery", "FailedInsertQuery"):
        assert before.get(k, 0) == after.get(k, 0), f"{k} moved: {before.get(k)} -> {after.get(k)}"
    sent = scan_queries(svc, since)
    assert sent, "the query log holds the scan's statements"
    for sql, names, values in sent:
        assert sql.startswith("SELECT "), sql
        assert "readonly" in names, (sql, names)
        settings = dict(zip(ast.literal_eval(names), ast.literal_eval(values)))
        assert settings["readonly"] == "1", (sql, settings)

    [got] = report["services"]
    assert (got["protocol"], got["access"]) == ("clickhouse", "open")
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
