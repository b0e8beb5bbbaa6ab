"""InfluxDB 1.x (Debian's influxdb): one server per service, HTTP API on the service address.

The dataset is the MySQL layout (`database.table` becomes database and measurement, the same
columns), each row one point whose columns are string fields, at distinct nanosecond
timestamps, written in line protocol through `POST /write`. With a password, `auth-enabled` is
on and the seeding creates the admin user first (1.x allows that one statement without
credentials while no user exists). The RPC (backup) port binds to the service address too,
on a port no protocol claims; monitoring is not stored, so `_internal` stays empty.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from pathlib import Path

from . import Kind, register

EPOCH_NS = 1_600_000_000_000_000_000
BATCH = 5000


def request(svc, method: str, path: str, params: dict, body: bytes | None = None, timeout: float = 120):
    """One request as the lab's own client (the seeding and the read-only test's counters)."""
    if svc.password:
        params = {**params, "u": svc.user, "p": svc.password}
    conn = http.client.HTTPConnection(svc.address, svc.port, timeout=timeout)
    conn.request(method, path + "?" + urllib.parse.urlencode(params), body=body)
    r = conn.getresponse()
    out = r.read()
    conn.close()
    if r.status not in (200, 204):
        raise RuntimeError(f"influxdb {svc.name}: {method} {path} {params.get('q', '')[:80]!r} answered {r.status}: {out[:300]!r}")
    return r, out


def query(svc, q: str) -> dict:
    return json.loads(request(svc, "POST", "/query", {"q": q})[1])


def debug_vars(svc) -> dict:
    return json.loads(request(svc, "GET", "/debug/vars", {})[1])


def escape_key(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def tsv_unescape(s: str) -> str:
    """A MySQL TSV cell (the generator's load format) as its value."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append({"t": "\t", "n": "\n", "\\": "\\", "0": "\0", "r": "\r"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


@register
class InfluxDB(Kind):
    name = "influxdb"
    protocol = "influxdb"
    product = "InfluxDB"
    apt = {"influxdb": "/usr/bin/influxd"}

    def start(self, lab, svc, d: Path, state: dict) -> None:
        lab.check_loopback(svc.address)
        (d / "influxdb.conf").write_text(
            "reporting-disabled = true\n"
            f"bind-address = \"{svc.address}:{svc.extra.get('rpc', 18088)}\"\n"
            f"[meta]\n  dir = \"{d}/meta\"\n"
            f"[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            f"[http]\n  bind-address = \"{svc.address}:{svc.port}\"\n"
            f"  auth-enabled = {'true' if svc.password else 'false'}\n  log-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
        )
        lab.spawn(svc, ["/usr/bin/influxd", "-config", str(d / "influxdb.conf")], state, expect="influxd")

    def ready(self, lab, svc) -> bool:
        conn = http.client.HTTPConnection(svc.address, svc.port, timeout=5)
        conn.request("GET", "/ping")
        ok = conn.getresponse().status == 204
        conn.close()
        return ok

    def configure(self, lab, svc) -> None:
        if svc.password:
            conn = http.client.HTTPConnection(svc.address, svc.port, timeout=30)
            q = urllib.parse.urlencode({"q": f"CREATE USER \"{svc.user}\" WITH PASSWORD '{svc.password}' WITH ALL PRIVILEGES"})
            conn.request("POST", "/query?" + q)
            r = conn.getresponse()
            r.read()
            conn.close()
            if r.status != 200:
                raise RuntimeError(f"influxdb {svc.name}: creating the admin answered {r.status}")

    def seed(self, lab, svc, truth: dict, ga: list[str]) -> None:
        for c in self.containers(lab, svc, truth):
            query(svc, f"CREATE DATABASE \"{c['database']}\"")
            p = lab.gen(["emit", *ga, "--layout", "mysql", "--container", c["name"]])
            batch, n = [], 0
            measurement = escape_key(c["table"])
            for raw in p.stdout:
                cells = raw.decode().rstrip("\n").split("\t")
                fields = []
                for col, cell in zip(c["columns"], cells):
                    if cell == "\\N":
                        continue
                    v = tsv_unescape(cell).replace("\\", "\\\\").replace('"', '\\"')
                    fields.append(f'{escape_key(col)}="{v}"')
                batch.append(f"{measurement} {','.join(fields)} {EPOCH_NS + n}")
                n += 1
                if len(batch) >= BATCH:
                    request(svc, "POST", "/write", {"db": c["database"], "precision": "ns"}, "\n".join(batch).encode())
                    batch.clear()
            if batch:
                request(svc, "POST", "/write", {"db": c["database"], "precision": "ns"}, "\n".join(batch).encode())
            lab.finish(p)
            got = query(svc, f"SELECT COUNT(*) FROM \"{c['database']}\"..\"{c['table']}\"")
            counts = got["results"][0]["series"][0]["values"][0][1:]
            if max(counts) != c["records"]:
                raise SystemExit(f"lab: {svc.name} {c['name']}: {max(counts)} points, {c['records']} expected")

    def containers(self, lab, svc, truth: dict) -> list[dict]:
        return truth["layouts"]["mysql"]

    def count(self, lab, svc, container: dict) -> int:
        got = query(svc, f"SELECT COUNT(*) FROM \"{container['database']}\"..\"{container['table']}\"")
        return max(got["results"][0]["series"][0]["values"][0][1:])

    def version(self, lab, svc) -> str | None:
        conn = http.client.HTTPConnection(svc.address, svc.port, timeout=5)
        conn.request("GET", "/ping")
        r = conn.getresponse()
        r.read()
        conn.close()
        return r.getheader("X-Influxdb-Version")

    def probe(self, lab, svc) -> str:
        return "influxdb " + (self.version(lab, svc) or "?")
