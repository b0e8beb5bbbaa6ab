"""ClickHouse (Debian's clickhouse-server): one server per service, on one client port.

The service's port is the HTTP interface (8123, or any port but 9000) or the native protocol
(9000): the config file opens only that one on the service address, so a scan of the lab's
default ports finds exactly the manifest's services. A native-port service also opens HTTP on
`extra["seed_http"]` (not a default port, not in the manifest), the write path the seeding
uses. State, logs and the query log live under the service's lab dir.

The dataset is the MySQL layout (`database.table`, the same columns), loaded as TabSeparated
(the generator's MySQL load format: `\\N` for NULL, backslash escapes) into MergeTree tables
of `Nullable(String)` columns through `INSERT … FORMAT TabSeparated` over HTTP. With a
password (`svc.password`), the `default` user needs it; without one it is ClickHouse's stock
`default` user with an empty password, the exposed configuration.
"""

from __future__ import annotations

import hashlib
import http.client
import subprocess
import urllib.parse
from pathlib import Path

from . import Kind, register

NATIVE_PORT = 9000


def http_port(svc) -> int:
    return svc.extra.get("seed_http", svc.port) if svc.port == NATIVE_PORT else svc.port


def query(svc, sql: str, body: bytes | None = None, timeout: float = 120) -> str:
    """One statement over HTTP as `default` (with the service's password), as the lab's own
    client: the seeding and the read-only test's counters."""
    conn = http.client.HTTPConnection(svc.address, http_port(svc), timeout=timeout)
    headers = {"X-ClickHouse-User": "default"}
    if svc.password:
        headers["X-ClickHouse-Key"] = svc.password
    path = "/?" + urllib.parse.urlencode({"query": sql})
    conn.request("POST", path, body=body if body is not None else b"", headers=headers)
    r = conn.getresponse()
    out = r.read().decode(errors="replace")
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"clickhouse {svc.name}: {sql[:80]!r} answered {r.status}: {out[:300]}")
    return out


@register
class ClickHouse(Kind):
    name = "clickhouse"
    protocol = "clickhouse"
    product = "ClickHouse"
    apt = {"clickhouse-server": "/usr/sbin/clickhouse-server"}

    def start(self, lab, svc, d: Path, state: dict) -> None:
        lab.check_loopback(svc.address)
        for sub in ("data", "tmp", "user_files"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        if svc.port == NATIVE_PORT:
            ports = f"<tcp_port>{NATIVE_PORT}</tcp_port><http_port>{http_port(svc)}</http_port>"
        else:
            ports = f"<http_port>{svc.port}</http_port>"
        password = ""
        if svc.password:
            password = f"<password_sha256_hex>{hashlib.sha256(svc.password.encode()).hexdigest()}</password_sha256_hex>"
        else:
            password = "<password></password>"
        (d / "users.xml").write_text(
            "<?xml version=\"1.0\"?>\n<yandex>\n"
            "<profiles><default><log_queries>1</log_queries></default></profiles>\n"
            f"<users><default>{password}<networks><ip>127.0.0.0/8</ip></networks>"
            "<profile>default</profile><quota>default</quota></default></users>\n"
            "<quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>"
            "<result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>"
            "</interval></default></quotas>\n</yandex>\n"
        )
        (d / "config.xml").write_text(
            "<?xml version=\"1.0\"?>\n<yandex>\n"
            f"<logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog>"
            "<console>0</console></logger>\n"
            f"<listen_host>{svc.address}</listen_host>\n{ports}\n"
            f"<path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/user_files/</user_files_path>\n"
            f"<users_config>{d}/users.xml</users_config><default_profile>default</default_profile>"
            "<default_database>default</default_database>\n"
            "<mark_cache_size>67108864</mark_cache_size><uncompressed_cache_size>0</uncompressed_cache_size>\n"
            "<max_concurrent_queries>50</max_concurrent_queries>\n"
            "<query_log><database>system</database><table>query_log</table>"
            "<flush_interval_milliseconds>500</flush_interval_milliseconds></query_log>\n"
            "</yandex>\n"
        )
        lab.spawn(svc, ["/usr/sbin/clickhouse-server", f"--config-file={d}/config.xml"], state, expect="clickhouse")

    def ready(self, lab, svc) -> bool:
        lab.wait_port(svc.address, http_port(svc), 60, svc.name)
        return query(svc, "SELECT 1").strip() == "1"

    def seed(self, lab, svc, truth: dict, ga: list[str]) -> None:
        for c in self.containers(lab, svc, truth):
            query(svc, f"CREATE DATABASE IF NOT EXISTS `{c['database']}`")
            cols = ", ".join(f"`{col}` Nullable(String)" for col in c["columns"])
            query(svc, f"CREATE TABLE `{c['database']}`.`{c['table']}` ({cols}) ENGINE = MergeTree ORDER BY tuple()")
            p = lab.gen(["emit", *ga, "--layout", "mysql", "--container", c["name"]])
            tsv = p.stdout.read()
            lab.finish(p)
            query(svc, f"INSERT INTO `{c['database']}`.`{c['table']}` FORMAT TabSeparated", body=tsv)
            got = int(query(svc, f"SELECT count() FROM `{c['database']}`.`{c['table']}`").strip())
            if got != c["records"]:
                raise SystemExit(f"lab: {svc.name} {c['name']}: {got} rows loaded, {c['records']} expected")

    def containers(self, lab, svc, truth: dict) -> list[dict]:
        return truth["layouts"]["mysql"]

    def count(self, lab, svc, container: dict) -> int:
        return int(query(svc, f"SELECT count() FROM `{container['database']}`.`{container['table']}`"))

    def version(self, lab, svc) -> str | None:
        return query(svc, "SELECT version()").strip()

    def probe(self, lab, svc) -> str:
        return "clickhouse " + query(svc, "SELECT version()").strip()
