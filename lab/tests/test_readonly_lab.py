"""The whole lab in one scan: every service of the manifest, every protocol, `--full
--try-defaults` (the most reading a scan does: exact counts, every key, distinct-people counts),
and afterwards no store shows a write.

Each store's write evidence is the one its own read-only suite documents and tests in depth
(test_readonly_<protocol>.py); here all of it is taken before and after the same single scan,
so a write by any probe, inventory or distinct count — including one a protocol only does when
other services are scanned alongside — fails this test:
- OpenSearch: per-index indexing/doc counters, per-shard max_seq_no, index metadata versions,
  cluster settings; no scroll or point in time left open;
- MongoDB (FerretDB): the command counters (only allowlisted commands may move), the SQLite
  files byte for byte, and every document's hash;
- PostgreSQL: pg_stat_user_tables write counters (after the scan's statistics are flushed),
  every table's rows hashed, definitions, roles and ALTER SYSTEM settings;
- MariaDB: the Com_*/Handler_* write counters of SHOW GLOBAL STATUS;
- Redis: only allowlisted commands in INFO commandstats, keyspace unchanged;
- Memcached: every write/delete/touch/flush counter of `stats`;
- etcd: the revision, every key's mod_revision and version, and (without auth, where the test's
  own authentication does not go through consensus) the raft index;
- ZooKeeper: every znode's stat (data, children and ACL versions and zxids) and the node count;
- ClickHouse: rows and bytes of every active part of the user databases, the insert counters;
- InfluxDB: the HTTP and write services' write counters, the databases.
"""

import time

import test_readonly_clickhouse as ch
import test_readonly_elasticsearch as es
import test_readonly_influxdb as ix
import test_readonly_etcd as et
import test_readonly_memcached as mc
import test_readonly_mongodb as mg
import test_readonly_mysql as my
import test_readonly_postgresql as pg
import test_readonly_redis as rd
import test_readonly_zookeeper as zk
from conftest import leakscope_scan


def snapshot(svcs: dict, manifest: dict, mongo_clients: dict) -> dict:
    """Everything each store says about writes, keyed by service name. MongoDB is read through
    one client per server kept open for both snapshots: a client closed in between would end
    its sessions, which FerretDB counts as an unknown command."""
    by_kind: dict[str, list] = {}
    for m in manifest["services"]:
        by_kind.setdefault(svcs[m["name"]].kind, []).append(svcs[m["name"]])
    snap: dict = {}
    for s in by_kind.get("opensearch", []):
        state, search = es.snapshot(s)
        snap[s.name] = {"state": state, "open_contexts": {i: v["open_contexts"] for i, v in search.items()}}
    for s in by_kind.get("ferretdb", []):
        if s.name not in mongo_clients:
            mongo_clients[s.name] = mg.client(s)
        c = mongo_clients[s.name]
        snap[s.name] = {"files": mg.files(s), "data": mg.content(c), "commands": mg.command_metrics(c)}
    for s in by_kind.get("postgres", []):
        tables = [f"{c['schema']}.{c['table']}" for c in next(m for m in manifest["services"] if m["name"] == s.name)["containers"]]
        snap[s.name] = {"rows": pg.contents(s, tables), "defs": pg.definitions(s), "stats": pg.table_stats(s), "tables": tables}
    for s in by_kind.get("mariadb", []):
        snap[s.name] = {"writes": my.writes(my.global_status(s))}
    for s in by_kind.get("redis", []):
        snap[s.name] = {"commands": rd.commandstats(s), "keyspace": rd.keyspace(s)}
    for s in by_kind.get("memcached", []):
        st = mc.stats(s)
        snap[s.name] = {"writes": {k: st[k] for k in mc.WRITE_COUNTERS}}
    for s in by_kind.get("etcd", []):
        token = et.KINDS["etcd"].token(s)
        snap[s.name] = et.snapshot(s, token)
        if token:
            del snap[s.name]["raft_index"]  # authenticating goes through consensus
    for s in by_kind.get("zookeeper", []):
        snap[s.name] = {"tree": zk.tree(s), "nodes": zk.node_count(s)}
    for s in by_kind.get("clickhouse", []):
        ev = ch.events(s)
        snap[s.name] = {"parts": ch.query(s, ch.USER_PARTS), "inserts": {k: ev.get(k, 0) for k in ("InsertQuery", "FailedInsertQuery")}}
    for s in by_kind.get("influxdb", []):
        httpd, write = ix.counters(s)
        snap[s.name] = {"httpd": {k: httpd.get(k) for k in ix.WRITES},
                        "write": {k: write.get(k) for k in ("pointReq", "writeOk", "req")},
                        "databases": ix.query(s, "SHOW DATABASES")}
    return snap


def test_one_full_scan_of_the_whole_lab_writes_nothing(manifest, lab_services):
    endpoints = [f"{m['address']}:{m['port']}" for m in manifest["services"]]
    kinds = {lab_services[m["name"]].kind for m in manifest["services"]}
    assert kinds == {"opensearch", "stunnel", "ferretdb", "postgres", "mariadb", "redis", "memcached", "etcd", "zookeeper",
                     "clickhouse", "influxdb"}, kinds

    mongo_clients: dict = {}
    before = snapshot(lab_services, manifest, mongo_clients)
    _, report = leakscope_scan(*endpoints, "--full", "--try-defaults")
    # PostgreSQL backends flush their statistics when they go idle or exit; wait until every
    # readable server shows the scan's reads before comparing its write counters.
    readable_pg = [n for n in pg.READABLE]
    deadline = time.monotonic() + 15
    while True:
        stats = {n: pg.table_stats(lab_services[n]) for n in readable_pg}
        pending = [n for n in readable_pg
                   if not all(stats[n][t]["scans"] > before[n]["stats"][t]["scans"] for t in before[n]["tables"])]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not pending, f"the scan's PostgreSQL reads never showed in the statistics: {pending}"
    after = snapshot(lab_services, manifest, mongo_clients)
    for c in mongo_clients.values():
        c.close()

    # The scan did read every readable store: the proof below is not vacuous.
    got = {(s["address"], s["port"]): s for s in report["services"]}
    for m in manifest["services"]:
        s = got[(m["address"], m["port"])]
        assert s["access"] == m["access"], (m["name"], s["access"])
        if m["access"] in ("open", "default_credentials") and m["containers"]:
            assert s["containers"], f"{m['name']}: readable but not inventoried"

    failures = []
    for name, b in before.items():
        a = after[name]
        kind = lab_services[name].kind
        if kind == "opensearch":
            for part in ("writes", "metadata", "settings"):
                if a["state"][part] != b["state"][part]:
                    failures.append(f"{name}: OpenSearch {part} changed")
            if a["open_contexts"] != b["open_contexts"]:
                failures.append(f"{name}: search contexts left open {a['open_contexts']}")
        elif kind == "ferretdb":
            moved = {k: v["total"] - b["commands"].get(k, {"total": 0})["total"] for k, v in a["commands"].items()}
            moved = {k: d for k, d in moved.items() if d}
            extra = set(moved) - mg.allowed_commands() - mg.HARNESS
            if extra:
                failures.append(f"{name}: non-allowlisted commands ran: {extra} (all: {moved})")
            if a["files"] != b["files"]:
                failures.append(f"{name}: SQLite files changed")
            if a["data"] != b["data"]:
                failures.append(f"{name}: documents changed")
        elif kind == "postgres":
            for t, counters in b["stats"].items():
                moved = {k: (v, a["stats"][t][k]) for k, v in counters.items() if k != "scans" and a["stats"][t][k] != v}
                if moved:
                    failures.append(f"{name} {t}: write counters moved {moved}")
            if a["rows"] != b["rows"]:
                failures.append(f"{name}: table contents changed")
            if a["defs"] != b["defs"]:
                failures.append(f"{name}: definitions, roles or settings changed")
        elif kind == "mariadb":
            moved = {k: (v, a["writes"].get(k)) for k, v in b["writes"].items() if a["writes"].get(k) != v}
            if moved:
                failures.append(f"{name}: write counters moved {moved}")
        elif kind == "redis":
            grown = {c: a["commands"][c] - b["commands"].get(c, 0) for c in a["commands"]}
            grown = {c: d for c, d in grown.items() if d}
            # This test reads the counters and the keyspace on two connections, each opened
            # with AUTH where the server has a password: the keyspace read of the first snapshot
            # and the counter read of the second fall between the two counter readings. Exactly
            # those two AUTHs are the test's own; leakscope knows no Redis default credential.
            if lab_services[name].password and grown.get("auth") == 2:
                del grown["auth"]
            if set(grown) - rd.ALLOWED:
                failures.append(f"{name}: non-allowlisted commands ran: {set(grown) - rd.ALLOWED} (all: {grown})")
            if a["keyspace"] != b["keyspace"]:
                failures.append(f"{name}: keyspace changed")
        elif kind == "memcached":
            if a["writes"] != b["writes"]:
                failures.append(f"{name}: write counters moved")
        elif kind == "etcd":
            if a != b:
                failures.append(f"{name}: revision, raft index or keys moved")
        elif kind == "zookeeper":
            if a != b:
                failures.append(f"{name}: a znode's stat or the node count moved")
        elif kind == "clickhouse":
            if a != b:
                failures.append(f"{name}: user parts or insert counters moved: {a} -> {b}")
        elif kind == "influxdb":
            if a != b:
                failures.append(f"{name}: write counters or databases moved: {a} -> {b}")
    assert not failures, "\n".join(failures)
