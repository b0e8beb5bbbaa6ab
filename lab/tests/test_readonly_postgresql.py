"""PostgreSQL: a full scan (--full --try-defaults) reads the lab's PostgreSQL servers without
writing, and inventories every table of the manifest with exact counts, samples and fields.

Read-only evidence, read over each server's local socket (as the superuser) before and after:
- per table, `pg_stat_user_tables.n_tup_ins`, `n_tup_upd`, `n_tup_hot_upd`, `n_tup_del`,
  `n_live_tup`, `n_dead_tup` and `n_mod_since_analyze`: every row a statement inserts, updates or
  deletes moves them (TRUNCATE too: n_live_tup);
- per table, the row count and an md5 of all its rows: the data itself is unchanged;
- the columns of every user relation, the databases, the roles with a hash of their password
  verifiers, and the settings in postgresql.auto.conf: no DDL, no role or password change, no
  ALTER SYSTEM.
Not used, because reads move them too: `pg_stat_database.xact_commit` (a read-only transaction
commits as well), `tup_inserted/updated/deleted` (they also count autovacuum's and autoanalyze's
catalogue writes, e.g. to pg_statistic) and the WAL position (checkpoints, autovacuum and page
pruning during reads write WAL).

PostgreSQL 15 keeps these counters in shared memory; a backend adds its own to them when it goes
idle (at most once a second) and when it exits. The scanner's backends exit after the scan, a
little later than the client disconnects, so the test waits until every manifest table shows
the scan's reads (`seq_scan + idx_scan` grew) and `pg_stat_database.xact_rollback` grew by the
inventory's read-only transactions (each ends with ROLLBACK): only then are the write counters
known to include everything the scan did. `pg_stat_force_next_flush()` (new in 15) can only
flush the calling backend, so it serves for the test's own reads, not the scanner's; each read
is its own psql session, so no stale stats snapshot (`pg_stat_clear_snapshot()`) is involved.
"""

import time

from conftest import lab, leakscope_scan

SERVICES = ["postgres-trust", "postgres-default", "postgres-scram"]
READABLE = ["postgres-trust", "postgres-default"]
DB = "smarthome"
WRITE_COLUMNS = ["n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del", "n_live_tup", "n_dead_tup", "n_mod_since_analyze"]


def rows(svc, sql, db=DB):
    return [line.split("|") for line in lab.psql(svc, sql, db=db).splitlines() if line]


def table_stats(svc) -> dict[str, dict[str, int]]:
    cols = ", ".join(WRITE_COLUMNS)
    out = {}
    for name, *values in rows(svc, f"SELECT schemaname || '.' || relname, {cols}, "
                                   "coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables"):
        out[name] = dict(zip([*WRITE_COLUMNS, "scans"], map(int, values)))
    return out


def rollbacks(svc) -> int:
    return int(rows(svc, f"SELECT xact_rollback FROM pg_stat_database WHERE datname = '{DB}'")[0][0])


def contents(svc, tables) -> dict[str, tuple[str, str]]:
    """Row count and md5 of all rows per table, in one session whose own reads are flushed to
    the statistics before it returns (so they cannot land after the 'before' snapshot)."""
    parts = [f"SELECT '{t}', count(*), md5(string_agg(md5(x::text), '' ORDER BY md5(x::text))) FROM {t} x"
             for t in tables]
    sql = f"SELECT u.* FROM ({' UNION ALL '.join(parts)}) u, (SELECT pg_stat_force_next_flush()) f"
    return {name: (n, digest) for name, n, digest in rows(svc, sql)}


def definitions(svc) -> dict[str, list]:
    return {
        "columns": rows(svc, "SELECT c.oid::regclass::text, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) "
                             "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE a.attnum > 0 AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                             "AND n.nspname !~ '^pg_' ORDER BY 1, 2"),
        "databases": rows(svc, "SELECT datname, datallowconn FROM pg_database ORDER BY 1"),
        "roles": rows(svc, "SELECT rolname, rolsuper, rolcanlogin, md5(coalesce(rolpassword, '')) FROM pg_authid ORDER BY 1"),
        "auto_conf": rows(svc, "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf' ORDER BY 1"),
    }


def test_full_scan_is_read_only_and_inventories_the_manifest(manifest, lab_services):
    svcs = [lab_services[n] for n in SERVICES]
    truth = {m["name"]: m for m in manifest["services"] if m["name"] in SERVICES}
    tables = {n: [f"{c['schema']}.{c['table']}" for c in truth[n]["containers"]] for n in SERVICES}

    before_rows = {s.name: contents(s, tables[s.name]) for s in svcs}
    before_defs = {s.name: definitions(s) for s in svcs}
    before = {s.name: table_stats(s) for s in svcs}
    before_rb = {s.name: rollbacks(s) for s in svcs}
    t0 = time.monotonic()
    _, report = leakscope_scan(*(f"{s.address}:{s.port}" for s in svcs), "--full", "--try-defaults")
    scan_seconds = time.monotonic() - t0

    # Wait until the scanner's backends have flushed their statistics (see the module doc).
    deadline = time.monotonic() + 15
    while True:
        after = {s.name: table_stats(s) for s in svcs}
        after_rb = {s.name: rollbacks(s) for s in svcs}
        pending = [(n, t) for n in READABLE for t in tables[n] if after[n][t]["scans"] <= before[n][t]["scans"]]
        pending += [(n, "xact_rollback") for n in READABLE if after_rb[n] - before_rb[n] < 2 * len(tables[n])]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not pending, f"the scan's reads never showed in the statistics: {pending}"

    for s in svcs:
        for t, counters in before[s.name].items():
            moved = {k: (v, after[s.name][t][k]) for k, v in counters.items() if k != "scans" and after[s.name][t][k] != v}
            assert not moved, f"{s.name} {t}: write counters moved: {moved}"
        assert contents(s, tables[s.name]) == before_rows[s.name], f"{s.name}: table contents changed"
        assert definitions(s) == before_defs[s.name], f"{s.name}: definitions, roles or settings changed"
    # The unreadable server was not read at all.
    assert all(after["postgres-scram"][t]["scans"] == before["postgres-scram"][t]["scans"] for t in tables["postgres-scram"])

    got = {(s["address"], s["port"]): s for s in report["services"]}
    for name, m in truth.items():
        service = got[(m["address"], m["port"])]
        assert service["protocol"] == "postgresql"
        assert service["access"] == m["access"]
        if name not in READABLE:
            assert service["containers"] == [], f"{name} is not readable, yet inventoried"
            continue
        containers = {c["name"]: c for c in service["containers"]}
        # The lab's databases hold only the manifest's tables (system schemas are not listed).
        assert set(containers) == {c["name"] for c in m["containers"]}, sorted(containers)
        for c in m["containers"]:
            g = containers[c["name"]]
            assert g["kind"] == c["kind"] == "table"
            assert not g["system"]
            # --full counts with SELECT count(*): exact.
            assert g["records"] == c["records"] and not g["records_estimated"], g
            assert g["bytes"] > 0
            assert g["sampled"] == min(200, c["records"]) > 0
            paths = [f["path"] for f in g["fields"]]
            want = [f["path"] for f in c["fields"]]  # every lab column is NOT NULL: all occur
            # Reported in the table's column order.
            assert paths == want, f"{c['name']}: {paths} != {want}"
        assert any(n.startswith("databases: postgres (0 relations), smarthome (8 relations)")
                   for n in service["inventory_notes"]), service["inventory_notes"]
    assert scan_seconds < 30, scan_seconds


def test_without_full_small_tables_are_still_counted_exactly(manifest, lab_services):
    """Tables up to 8 MiB are counted with count(*) even without --full (cheap, and better than
    reltuples); the lab's are all that small, so their counts are exact, not estimates."""
    svc = lab_services["postgres-trust"]
    before = table_stats(svc)
    _, report = leakscope_scan(f"{svc.address}:{svc.port}", "--sample", "20")
    [service] = report["services"]
    containers = {c["name"]: c for c in service["containers"]}
    want = next(m for m in manifest["services"] if m["name"] == "postgres-trust")
    for c in want["containers"]:
        g = containers[c["name"]]
        assert (g["records"], g["records_estimated"], g["sampled"]) == (c["records"], False, min(20, c["records"]))
    deadline = time.monotonic() + 15
    while any(table_stats(svc)[t]["scans"] <= before[t]["scans"] for t in before) and time.monotonic() < deadline:
        time.sleep(0.2)
    after = table_stats(svc)
    for t, counters in before.items():
        assert {k: v for k, v in after[t].items() if k != "scans"} == {k: v for k, v in counters.items() if k != "scans"}, t
