#!/usr/bin/env python3
"""The leakscope lab: real data stores on loopback addresses, seeded with a synthetic dataset.

`up` installs what is missing (idempotent), starts every service in SERVICES as a throwaway
instance under the state dir, seeds it through the store's own bulk path and writes
`lab/manifest.json` (the ground truth tests compare against). `down` stops exactly the PIDs that
`up` recorded. `status` shows each service and whether it answers its own protocol.

Every address here is in 127.0.0.0/8; `check_loopback` refuses anything else before a process
is started, so a typo cannot put a lab server on a real interface.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures  # noqa: E402
from kinds import KINDS  # noqa: E402  (new protocols' servers: lab/kinds/<kind>.py)

LAB_MODULE = sys.modules[__name__]

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "lab"
CACHE = Path(os.environ.get("LEAKSCOPE_LAB_CACHE", Path.home() / ".cache" / "leakscope-lab"))
STATE = Path(os.environ.get("LEAKSCOPE_LAB_DIR", "/tmp/leakscope-lab"))
MANIFEST = Path(os.environ.get("LEAKSCOPE_LAB_MANIFEST", LAB / "manifest.json"))
FERRETDB_VERSION = "v1.24.2"
OPENSEARCH_VERSION = "2.19.6"
SEED = 20191204  # the first day of the Wyze exposure
# The first two octets of every lab address. A second lab (e.g. the 2.4 M-user benchmark lab)
# can run beside the test lab with LEAKSCOPE_LAB_NET=127.1 and its own LEAKSCOPE_LAB_DIR/MANIFEST.
NET = os.environ.get("LEAKSCOPE_LAB_NET", "127.0")
if not re.fullmatch(r"127\.(25[0-5]|2[0-4]\d|1?\d?\d)", NET):
    raise SystemExit(f"lab: LEAKSCOPE_LAB_NET must be 127.<0-255>, not {NET!r}")
SMALL_USERS = 2000  # secondary and protected instances: data, but not a second full copy
APT_PACKAGES = {
    "redis-server": "/usr/bin/redis-server",
    "mariadb-server": "/usr/sbin/mariadbd",
    "mariadb-client": "/usr/bin/mariadb",
    "memcached": "/usr/bin/memcached",
    "postgresql": "/usr/lib/postgresql",
    "postgresql-client": "/usr/bin/psql",
    "stunnel4": "/usr/bin/stunnel4",
    "openssl": "/usr/bin/openssl",
    "chromium": "/usr/bin/chromium",  # renders the HTML report in the browser test
    "tcpdump": "/usr/bin/tcpdump",  # the scope-containment test captures SYNs on lo
}


@dataclass
class Service:
    """One lab server. `access` is the verdict a correct scanner must reach (with --try-defaults)."""

    name: str
    kind: str  # opensearch | ferretdb | redis | postgres | mariadb | memcached | stunnel | a lab/kinds/ kind
    address: str
    port: int
    access: str  # open | default_credentials | auth_required
    dataset: str  # main | small
    user: str | None = None
    password: str | None = None  # "strong" is replaced by a random secret at start
    extra: dict = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return bool(self.extra.get("tls"))

    @property
    def protocol(self) -> str:
        if self.kind in KINDS:
            return KINDS[self.kind].protocol
        return {
            "stunnel": "elasticsearch",
            "opensearch": "elasticsearch",
            "ferretdb": "mongodb",
            "redis": "redis",
            "postgres": "postgresql",
            "mariadb": "mysql",
            "memcached": "memcached",
        }[self.kind]

    @property
    def product(self) -> str:
        if self.kind in KINDS:
            return KINDS[self.kind].product
        return {
            "stunnel": "OpenSearch",
            "opensearch": "OpenSearch",
            "ferretdb": "FerretDB",
            "redis": "Redis",
            "postgres": "PostgreSQL",
            "mariadb": "MariaDB",
            "memcached": "Memcached",
        }[self.kind]


# 127.0.10.x: open; 127.0.11.x: authentication required; 127.0.12.x: default credentials.
SERVICES = [
    Service("opensearch-open", "opensearch", f"{NET}.10.1", 9200, "open", "main", extra={"transport": 9300}),
    Service("opensearch-alt-port", "opensearch", f"{NET}.10.2", 19201, "open", "small", extra={"transport": 19301}),
    Service("mongodb-open", "ferretdb", f"{NET}.10.3", 27017, "open", "main"),
    Service("redis-open", "redis", f"{NET}.10.4", 6379, "open", "main"),
    Service("redis-alt-port", "redis", f"{NET}.10.5", 16380, "open", "small"),
    Service("postgres-trust", "postgres", f"{NET}.10.6", 5432, "open", "main", user="postgres"),
    Service("memcached-open", "memcached", f"{NET}.10.7", 11211, "open", "main"),
    # HTTPS in front of opensearch-alt-port with a self-signed certificate, as Elasticsearch 8
    # serves by default (OpenSearch without its security plugin has no TLS of its own).
    Service("opensearch-https", "stunnel", f"{NET}.10.8", 9200, "open", "small",
            extra={"tls": True, "backend": "opensearch-alt-port"}),
    Service("redis-tls", "redis", f"{NET}.10.9", 6379, "open", "small", extra={"tls": True}),
    Service("redis-auth", "redis", f"{NET}.11.1", 6379, "auth_required", "small", password="strong"),
    Service("postgres-scram", "postgres", f"{NET}.11.2", 5432, "auth_required", "small", user="postgres", password="strong"),
    Service("mariadb-auth", "mariadb", f"{NET}.11.3", 3306, "auth_required", "small", user="root", password="strong"),
    Service("postgres-default", "postgres", f"{NET}.12.1", 5432, "default_credentials", "small", user="postgres", password="postgres"),
    Service("mariadb-root-nopass", "mariadb", f"{NET}.12.2", 3306, "default_credentials", "main", user="root", password=""),
    # ClickHouse (lab/kinds/clickhouse.py): HTTP and native ports, open and with a password.
    Service("clickhouse-open", "clickhouse", f"{NET}.10.40", 8123, "open", "main"),
    Service("clickhouse-native", "clickhouse", f"{NET}.10.41", 9000, "open", "small", extra={"seed_http": 18123}),
    Service("clickhouse-auth", "clickhouse", f"{NET}.11.40", 8123, "auth_required", "small", password="strong"),
    Service("clickhouse-native-auth", "clickhouse", f"{NET}.11.41", 9000, "auth_required", "small", password="strong",
            extra={"seed_http": 18123}),
    # InfluxDB 1.x (lab/kinds/influxdb.py): open, and with auth-enabled.
    Service("influxdb-open", "influxdb", f"{NET}.10.50", 8086, "open", "small"),
    Service("influxdb-auth", "influxdb", f"{NET}.11.50", 8086, "auth_required", "small", user="admin", password="strong"),
    # lab/kinds/: etcd, ZooKeeper, NATS (hosts 20-39)
    Service("etcd-open", "etcd", f"{NET}.10.20", 2379, "open", "main"),
    Service("etcd-auth", "etcd", f"{NET}.11.20", 2379, "auth_required", "small", user="root", password="strong"),
    Service("zookeeper-open", "zookeeper", f"{NET}.10.21", 2181, "open", "main"),
    Service("zookeeper-acl", "zookeeper", f"{NET}.11.21", 2181, "auth_required", "small", user="leakscope", password="strong"),
]
# 127.0.16.x: real open-source applications' schemas and libraries' formats (lab/fixtures/), on
# servers of their own so that the smart-home dataset's tests stay as they are. Their truth is
# the manifest's `fixtures`.
FIXTURE_SERVICES = [
    Service("apps-postgres", "postgres", f"{NET}.16.1", 5432, "open", "apps", user="postgres"),
    Service("apps-mariadb", "mariadb", f"{NET}.16.2", 3306, "default_credentials", "apps", user="root", password=""),
    Service("apps-redis", "redis", f"{NET}.16.3", 6379, "open", "apps"),
    Service("apps-memcached", "memcached", f"{NET}.16.4", 11211, "open", "apps"),
]


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def check_loopback(addr: str) -> None:
    if not ipaddress.ip_address(addr).is_loopback:
        raise SystemExit(f"lab: refusing to use non-loopback address {addr}")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


# ---------------------------------------------------------------- install (idempotent)


def install(quiet: bool = False) -> None:
    wanted = dict(APT_PACKAGES)
    for kind in KINDS.values():
        wanted.update(kind.apt)
    missing = [pkg for pkg, path in wanted.items() if not Path(path).exists()]
    if missing:
        log(f"installing Debian packages: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
    install_ferretdb()
    run(["bash", str(LAB / "opensearch" / "build.sh")])
    for kind in KINDS.values():
        kind.install(LAB_MODULE)
    install_venv()
    fixtures.install()
    labgen()  # builds the generator if needed


def install_ferretdb() -> None:
    binary = CACHE / "bin" / "ferretdb"
    if binary.exists():
        return
    # `go install` of FerretDB v1 builds a binary that panics at start: its version package
    # embeds build/version/version.txt, which only its release tooling writes. So: download the
    # module through the Go proxy, add that one file to a copy, build the copy.
    log(f"building FerretDB {FERRETDB_VERSION} (Go module proxy)")
    out = run(
        ["go", "mod", "download", "-json", f"github.com/FerretDB/FerretDB@{FERRETDB_VERSION}"],
        capture_output=True,
        text=True,
    ).stdout
    src = Path(json.loads(out)["Dir"])
    build = CACHE / "ferretdb-src"
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(src, build)
    for p in build.rglob("*"):
        p.chmod(p.stat().st_mode | 0o200)
    (build / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
    binary.parent.mkdir(parents=True, exist_ok=True)
    run(["go", "build", "-o", str(binary), "./cmd/ferretdb"], cwd=build)
    shutil.rmtree(build, ignore_errors=True)


def venv_python() -> Path:
    return CACHE / "venv" / "bin" / "python"


# The lab's Python packages: pymongo (the FerretDB loader), kazoo (the ZooKeeper loader), pytest, aiosmtpd (a real SMTP server
# for the watch alert tests) and kubernetes-validate (the Kubernetes schemas, offline, for the
# deploy/ manifests test).
VENV_PACKAGES = ["pymongo==4.10.1", "pytest", "aiosmtpd==1.4.6", "kubernetes-validate==1.37.0", "kazoo==2.10.0"]
VENV_IMPORTS = "import pymongo, pytest, aiosmtpd, kubernetes_validate, kazoo"


def install_venv() -> None:
    py = venv_python()
    if py.exists() and run([str(py), "-c", VENV_IMPORTS], check=False, capture_output=True).returncode == 0:
        return
    log(f"installing the lab's Python venv: {' '.join(VENV_PACKAGES)}")
    if not py.exists():
        run([sys.executable, "-m", "venv", str(CACHE / "venv")])
    run([str(py), "-m", "pip", "install", "-q", *VENV_PACKAGES])


def labgen() -> Path:
    binary = ROOT / "target" / "release" / "leakscope-labgen"
    run(["cargo", "build", "-q", "--release", "-p", "leakscope-labgen"], cwd=ROOT)
    return binary


# ---------------------------------------------------------------- state


def state_file() -> Path:
    return STATE / "state.json"


def load_state() -> dict | None:
    try:
        return json.loads(state_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def save_state(state: dict) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    tmp = state_file().with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)
    tmp.replace(state_file())


def pid_alive(pid: int, expect: str) -> bool:
    """True when `pid` is alive and is the program we started (guards against PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
        return False
    return expect.encode() in cmdline


# ---------------------------------------------------------------- starting servers


def spawn(svc: Service, cmd: list[str], state: dict, as_user: str | None = None, expect: str | None = None) -> None:
    logf = open(STATE / f"{svc.name}.log", "ab")
    kw = {}
    if as_user and os.geteuid() == 0:
        kw = {"user": as_user, "group": as_user}
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    state["services"][svc.name] = {"pid": proc.pid, "expect": expect or Path(cmd[0]).name, "ready": False}
    save_state(state)


def wait_port(addr: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((addr, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"lab: {what} did not listen on {addr}:{port} within {timeout:.0f}s")


def pg_bin(name: str) -> str:
    versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: int(p.name))
    return str(versions[-1] / "bin" / name)


def start_service(svc: Service, state: dict) -> None:
    check_loopback(svc.address)
    d = STATE / svc.name
    d.mkdir(parents=True, exist_ok=True)
    if svc.kind in KINDS:
        KINDS[svc.kind].start(LAB_MODULE, svc, d, state)
    elif svc.kind == "opensearch":
        spawn(
            svc,
            ["bash", str(LAB / "opensearch" / "run.sh"), "--host", svc.address, "--http-port", str(svc.port),
             "--transport-port", str(svc.extra["transport"]), "--data", str(d), "--name", svc.name],
            state,
            expect="OpenSearchLauncher",
        )
    elif svc.kind == "ferretdb":
        spawn(
            svc,
            [str(CACHE / "bin" / "ferretdb"), f"--listen-addr={svc.address}:{svc.port}", "--handler=sqlite",
             f"--sqlite-url=file:{d}/", f"--state-dir={d}", "--telemetry=disable", "--debug-addr=-", "--log-level=warn"],
            state,
        )
    elif svc.kind == "redis":
        listen = ["--port", str(svc.port)]
        if svc.tls:
            listen = ["--port", "0", "--tls-port", str(svc.port), "--tls-cert-file", str(STATE / "tls" / "cert.pem"),
                      "--tls-key-file", str(STATE / "tls" / "key.pem"), "--tls-auth-clients", "no"]
        cmd = ["/usr/bin/redis-server", "--bind", svc.address, *listen, "--dir", str(d),
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no", "--databases", "16"]
        if svc.password:
            cmd += ["--requirepass", svc.password]
        spawn(svc, cmd, state)
    elif svc.kind == "stunnel":
        backend = next(s for s in SERVICES if s.name == svc.extra["backend"])
        conf = d / "stunnel.conf"
        conf.write_text(
            "foreground = yes\npid =\n[https]\n"
            f"accept = {svc.address}:{svc.port}\nconnect = {backend.address}:{backend.port}\n"
            f"cert = {STATE / 'tls' / 'cert.pem'}\nkey = {STATE / 'tls' / 'key.pem'}\n"
        )
        spawn(svc, ["/usr/bin/stunnel4", str(conf)], state, expect="stunnel")
    elif svc.kind == "memcached":
        spawn(svc, ["/usr/bin/memcached", "-l", svc.address, "-p", str(svc.port), "-U", "0", "-m", "256", "-u", "root"], state)
    elif svc.kind == "postgres":
        start_postgres(svc, d, state)
    elif svc.kind == "mariadb":
        start_mariadb(svc, d, state)


def start_postgres(svc: Service, d: Path, state: dict) -> None:
    pgdata = d / "data"
    owner = "postgres" if os.geteuid() == 0 else None
    if owner:
        shutil.chown(d, owner, owner)
    method = "trust" if svc.access == "open" else "scram-sha-256"
    kw = {"user": owner, "group": owner} if owner else {}
    run([pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth-local=trust", f"--auth-host={method}",
         "-E", "UTF8", "--locale=C.UTF-8"], stdout=subprocess.DEVNULL, **kw)
    spawn(
        svc,
        [pg_bin("postgres"), "-D", str(pgdata), "-c", f"listen_addresses={svc.address}", "-c", f"port={svc.port}",
         "-c", f"unix_socket_directories={d}", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "shared_buffers=64MB"],
        state,
        as_user=owner,
    )


def start_mariadb(svc: Service, d: Path, state: dict) -> None:
    datadir = d / "data"
    run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
         "--auth-root-authentication-method=socket", "--skip-test-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spawn(
        svc,
        ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={d}/mysqld.sock",
         f"--bind-address={svc.address}", f"--port={svc.port}", "--user=root", "--skip-name-resolve",
         f"--pid-file={d}/mysqld.pid", "--skip-log-bin", "--innodb-buffer-pool-size=128M",
         "--innodb-flush-log-at-trx-commit=0", "--local-infile=1", f"--log-error={d}/error.log"],
        state,
    )


def make_certificate() -> None:
    """A throwaway self-signed certificate for the lab's TLS services."""
    tls = STATE / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=leakscope-lab",
         "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")], capture_output=True)


# ---------------------------------------------------------------- readiness and clients


def http_req(svc: Service, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"):
    conn = http.client.HTTPConnection(svc.address, svc.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype} if body is not None else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def https_req(svc: Service, method: str, path: str):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(svc.address, svc.port, timeout=60, context=ctx)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def psql(svc: Service, sql: str | None = None, db: str = "postgres", stdin=None, capture: bool = True):
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(STATE / svc.name), "-p", str(svc.port),
           "-U", "postgres", "-d", db, "-At"]
    if sql is not None:
        cmd += ["-c", sql]
    return run(cmd, stdin=stdin, capture_output=capture, text=capture).stdout


def mariadb(svc: Service, sql: str, stdin=None) -> str:
    cmd = ["mariadb", f"--socket={STATE / svc.name / 'mysqld.sock'}", "-uroot", "--local-infile=1", "-N", "-B", "-e", sql]
    return run(cmd, stdin=stdin, capture_output=True, text=True).stdout


def resp_cmd(svc: Service, *args: str, password: str | None = None) -> bytes:
    """One Redis command over a raw socket (no client library needed); returns the raw reply."""
    def enc(parts):
        out = f"*{len(parts)}\r\n".encode()
        for p in parts:
            b = p.encode()
            out += f"${len(b)}\r\n".encode() + b + b"\r\n"
        return out

    raw = socket.create_connection((svc.address, svc.port), timeout=5)
    if svc.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = ctx.wrap_socket(raw)
    with raw as s:
        payload = (enc(["AUTH", password]) if password else b"") + enc(list(args))
        s.sendall(payload)
        time.sleep(0.05)
        data = b""
        s.settimeout(1)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if data.endswith(b"\r\n") and (not password or data.count(b"\r\n") >= 2):
                    break
        except socket.timeout:
            pass
    if password:
        data = data.split(b"\r\n", 1)[1]
    return data


def wait_ready(svc: Service, timeout: float = 180) -> None:
    wait_port(svc.address, svc.port, timeout, svc.name)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if svc.kind in KINDS:
                if KINDS[svc.kind].ready(LAB_MODULE, svc):
                    return
            elif svc.kind == "opensearch":
                status, _ = http_req(svc, "GET", "/_cluster/health?wait_for_status=yellow&timeout=5s")
                if status == 200:
                    return
            elif svc.kind == "postgres":
                psql(svc, "select 1")
                return
            elif svc.kind == "mariadb":
                mariadb(svc, "select 1")
                return
            elif svc.kind == "stunnel":
                status, _ = https_req(svc, "GET", "/_cluster/health?wait_for_status=yellow&timeout=5s")
                if status == 200:
                    return
            else:
                return
        except (OSError, subprocess.CalledProcessError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"lab: {svc.name} not ready within {timeout:.0f}s (log: {STATE / (svc.name + '.log')})")
        time.sleep(0.5)


def configure(svc: Service) -> None:
    """Accounts and passwords, set through the local socket before anything is loaded."""
    if svc.kind in KINDS:
        KINDS[svc.kind].configure(LAB_MODULE, svc)
    elif svc.kind == "postgres":
        if svc.password:
            psql(svc, f"ALTER USER postgres PASSWORD '{svc.password}'")
        if svc.dataset != "apps":
            psql(svc, "CREATE DATABASE smarthome")
    elif svc.kind == "mariadb":
        pw = svc.password or ""
        mariadb(svc, f"CREATE USER 'root'@'%' IDENTIFIED BY '{pw}'; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION; FLUSH PRIVILEGES;")


# ---------------------------------------------------------------- seeding


def gen(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([str(ROOT / "target" / "release" / "leakscope-labgen"), *args], stdout=subprocess.PIPE)


def gen_args(users: int, seed: int) -> list[str]:
    return ["--users", str(users), "--seed", str(seed)]


def finish(p: subprocess.Popen) -> None:
    p.stdout.close()
    if p.wait() != 0:
        raise SystemExit(f"lab: {p.args} failed with {p.returncode}")


def seed_opensearch(svc: Service, truth: list[dict], ga: list[str]) -> None:
    for c in truth:
        p = gen(["emit", *ga, "--layout", "elasticsearch", "--container", c["name"]])
        batch, n = [], 0
        key = "user_id" if c["name"] == "customers" else None

        def flush():
            body = b"".join(batch)
            status, out = http_req(svc, "POST", "/_bulk", body, "application/x-ndjson")
            res = json.loads(out)
            if status != 200 or res.get("errors"):
                raise SystemExit(f"lab: bulk load of {c['name']} failed: {out[:500]!r}")
            batch.clear()

        for line in p.stdout:
            if key:
                doc_id = json.loads(line)[key]
                batch.append(json.dumps({"index": {"_index": c["name"], "_id": doc_id}}).encode() + b"\n")
            else:
                batch.append(b'{"index":{"_index":"%s"}}\n' % c["name"].encode())
            batch.append(line if line.endswith(b"\n") else line + b"\n")
            n += 1
            if n % 5000 == 0:
                flush()
        if batch:
            flush()
        finish(p)
    http_req(svc, "POST", "/_refresh")


def seed_mongodb(svc: Service, truth: list[dict], ga: list[str]) -> None:
    # pymongo lives in the lab venv; the loader runs there as a child so lab.py itself needs
    # nothing beyond the standard library.
    run([str(venv_python()), str(LAB / "load_mongo.py"), f"mongodb://{svc.address}:{svc.port}/",
         str(ROOT / "target" / "release" / "leakscope-labgen"), *ga,
         json.dumps([{"database": c["database"], "collection": c["collection"], "name": c["name"], "key": c.get("key", [])} for c in truth])])


def seed_postgres(svc: Service, truth: list[dict], ga: list[str]) -> None:
    ddl = run([str(ROOT / "target" / "release" / "leakscope-labgen"), "schema", "--layout", "postgresql"],
              capture_output=True, text=True).stdout
    psql(svc, ddl, db="smarthome")
    for c in truth:
        p = gen(["emit", *ga, "--layout", "postgresql", "--container", c["name"]])
        cols = ", ".join(f'"{col}"' for col in c["columns"])
        psql(svc, f'\\copy "{c["schema"]}"."{c["table"]}" ({cols}) FROM pstdin', db="smarthome", stdin=p.stdout)
        finish(p)
    psql(svc, "ANALYZE", db="smarthome")


def seed_mariadb(svc: Service, truth: list[dict], ga: list[str]) -> None:
    ddl = run([str(ROOT / "target" / "release" / "leakscope-labgen"), "schema", "--layout", "mysql"],
              capture_output=True, text=True).stdout
    mariadb(svc, ddl)
    for c in truth:
        tsv = STATE / svc.name / f"{c['name']}.tsv"
        with open(tsv, "wb") as f:
            p = subprocess.Popen([str(ROOT / "target" / "release" / "leakscope-labgen"), "emit", *ga, "--layout", "mysql",
                                  "--container", c["name"]], stdout=f)
            if p.wait() != 0:
                raise SystemExit(f"lab: labgen failed for {c['name']}")
        cols = ", ".join(f"`{col}`" for col in c["columns"])
        mariadb(svc, f"SET NAMES utf8mb4; LOAD DATA LOCAL INFILE '{tsv}' INTO TABLE `{c['database']}`.`{c['table']}` "
                     f"CHARACTER SET utf8mb4 ({cols})")
        tsv.unlink()
    mariadb(svc, "; ".join(f"ANALYZE TABLE `{c['database']}`.`{c['table']}`" for c in truth))


def seed_redis(svc: Service, ga: list[str]) -> None:
    p = gen(["emit", *ga, "--layout", "redis"])
    cmd = ["redis-cli", "-h", svc.address, "-p", str(svc.port), *redis_cli_tls(svc), "--pipe"]
    env = dict(os.environ)
    if svc.password:
        env["REDISCLI_AUTH"] = svc.password  # keeps the password off the process list
    run(cmd, stdin=p.stdout, stdout=subprocess.DEVNULL, env=env)
    finish(p)


def redis_cli_tls(svc: Service) -> list[str]:
    return ["--tls", "--insecure"] if svc.tls else []


def seed_memcached(svc: Service, ga: list[str]) -> None:
    p = gen(["emit", *ga, "--layout", "memcached"])
    with socket.create_connection((svc.address, svc.port), timeout=30) as s:
        while chunk := p.stdout.read(1 << 16):
            s.sendall(chunk)
        # noreply sets answer nothing; `version` answers once all earlier commands are processed.
        s.sendall(b"version\r\n")
        buf = b""
        while b"\r\n" not in buf:
            part = s.recv(4096)
            if not part:
                break
            buf += part
        if not buf.startswith(b"VERSION"):
            raise SystemExit(f"lab: memcached load failed: {buf[:200]!r}")
    finish(p)


def seed(svc: Service, truth: dict, ga: list[str]) -> None:
    if svc.kind in KINDS:
        KINDS[svc.kind].seed(LAB_MODULE, svc, truth, ga)
        return
    layout = truth["layouts"][svc.protocol]
    if svc.kind == "opensearch":
        seed_opensearch(svc, layout, ga)
    elif svc.kind == "ferretdb":
        seed_mongodb(svc, layout, ga)
    elif svc.kind == "postgres":
        seed_postgres(svc, layout, ga)
    elif svc.kind == "mariadb":
        seed_mariadb(svc, layout, ga)
    elif svc.kind == "redis":
        seed_redis(svc, ga)
    elif svc.kind == "memcached":
        seed_memcached(svc, ga)
    # stunnel: its backend holds the data.


def server_version(svc: Service) -> str | None:
    try:
        if svc.kind in KINDS:
            return KINDS[svc.kind].version(LAB_MODULE, svc)
        if svc.kind == "opensearch":
            return json.loads(http_req(svc, "GET", "/")[1])["version"]["number"]
        if svc.kind == "stunnel":
            return json.loads(https_req(svc, "GET", "/")[1])["version"]["number"]
        if svc.kind == "postgres":
            return psql(svc, "SHOW server_version").strip().split()[0]
        if svc.kind == "mariadb":
            return mariadb(svc, "SELECT VERSION()").strip().split("-")[0]  # 10.11.19-MariaDB-0+deb12u1
        if svc.kind == "redis":
            info = resp_cmd(svc, "INFO", "server", password=svc.password).decode()
            return next(l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("redis_version:"))
        if svc.kind == "memcached":
            with socket.create_connection((svc.address, svc.port), timeout=5) as s:
                s.sendall(b"version\r\n")
                return s.recv(256).decode().split()[1]
        if svc.kind == "ferretdb":
            return FERRETDB_VERSION.lstrip("v")
    except Exception as e:  # noqa: BLE001 - a version is informative only
        log(f"could not read the version of {svc.name}: {e}")
    return None


# ---------------------------------------------------------------- commands


def services_with_secrets(state: dict) -> list[Service]:
    out = []
    for s in SERVICES:
        svc = Service(**{**s.__dict__})
        if svc.password == "strong":
            svc.password = state["secrets"][svc.name]
        out.append(svc)
    return out


def cmd_up(args) -> int:
    state = load_state()
    if state and state.get("complete") and all(
        pid_alive(v["pid"], v["expect"]) for v in state["services"].values()
    ) and MANIFEST.exists():
        log(f"already running ({len(state['services'])} services); see lab/status")
        return 0
    if state:
        log("cleaning up an earlier, incomplete or stopped lab")
        stop(state)
    t0 = time.monotonic()
    if not args.no_install:
        install()
    labgen()
    t_install = time.monotonic() - t0
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True, mode=0o755)
    state = {
        "complete": False,
        "users": args.users,
        "services": {},
        "secrets": {s.name: secrets.token_urlsafe(24) for s in SERVICES if s.password == "strong"},
    }
    save_state(state)
    services = services_with_secrets(state)
    apps = [Service(**{**s.__dict__}) for s in FIXTURE_SERVICES]
    make_certificate()
    for svc in services + apps:
        start_service(svc, state)
    errors: list[str] = []

    main_ga = gen_args(args.users, SEED)
    small_ga = gen_args(min(args.users, SMALL_USERS), SEED + 1)
    truths = truths_for(args.users)

    def bring_up(svc: Service) -> None:
        try:
            wait_ready(svc)
            configure(svc)
            if svc.dataset != "apps":  # the fixtures are written once all their servers run
                seed(svc, truths[svc.dataset], main_ga if svc.dataset == "main" else small_ga)
            state["services"][svc.name]["ready"] = True
            log(f"{svc.name} ready on {svc.address}:{svc.port}")
        except BaseException as e:  # noqa: BLE001 - reported below, then the lab is torn down
            errors.append(f"{svc.name}: {e}")

    # Two cores: seeding everything at once only makes each load slower; a few lanes overlap
    # the waits (JVM start, initdb) with the loads.
    lanes = max(1, args.parallel)
    pending = list(services) + apps
    threads: list[threading.Thread] = []
    while pending or threads:
        while pending and len(threads) < lanes:
            t = threading.Thread(target=bring_up, args=(pending.pop(0),))
            t.start()
            threads.append(t)
        threads[0].join()
        threads = [t for t in threads if t.is_alive()]
    if not errors:
        try:
            groups = fixtures.seed({s.name: s for s in apps}, labgen(), args.users, SEED, STATE)
            state["fixture_people"] = {g: [p["customer"] for p in ps] for g, ps in groups.items()}
        except BaseException as e:  # noqa: BLE001 - reported below, then the lab is torn down
            errors.append(f"fixtures: {e}")
    save_state(state)
    if errors:
        for e in errors:
            log(f"FAILED {e}")
        log("stopping what was started")
        stop(state)
        return 1
    write_manifest(services, truths, args.users, state)
    state["complete"] = True
    state["seconds"] = {"install": round(t_install, 1), "total": round(time.monotonic() - t0, 1)}
    save_state(state)
    log(f"lab up in {time.monotonic() - t0:.1f}s ({t_install:.1f}s install/build); manifest: {MANIFEST}")
    return 0


def lab_targets() -> list[str]:
    """What a scan of the whole lab names: its three networks on the default ports, plus every
    service as ADDRESS:PORT, so a service on a port no protocol claims is scanned too (a scope
    probes each endpoint once, however its targets overlap)."""
    return [f"{NET}.{n}.0/24" for n in (10, 11, 12)] + [f"{s.address}:{s.port}" for s in SERVICES]


def truths_for(users: int) -> dict:
    """The generator's ground truth of the main and the small dataset."""
    return {
        name: json.loads(run([str(labgen()), "truth", *ga], capture_output=True, text=True).stdout)
        for name, ga in (("main", gen_args(users, SEED)), ("small", gen_args(min(users, SMALL_USERS), SEED + 1)))
    }


def cmd_manifest(args) -> int:
    """Rewrites the manifest of the running lab: the data is a pure function of (seed, users),
    so a generator that learned to state more truth (not different data) needs no reseeding."""
    state = load_state()
    if not (state and state.get("complete")):
        log("no complete lab is running (lab/up starts it)")
        return 1
    write_manifest(services_with_secrets(state), truths_for(state["users"]), state["users"], state)
    log(f"manifest rewritten: {MANIFEST}")
    return 0


def write_manifest(services: list[Service], truths: dict, users: int, state: dict) -> None:
    out = {
        "schema": "leakscope.lab-manifest/v1",
        "users": users,
        "seed": SEED,
        # The first two octets of every lab address (LEAKSCOPE_LAB_NET): tests derive their
        # targets from it, so a second lab on 127.1 or 127.2 is tested like the default one.
        "net": NET,
        "state_dir": str(STATE),
        "services": [],
    }
    for svc in services:
        truth = truths[svc.dataset]
        out["services"].append(
            {
                "name": svc.name,
                "address": svc.address,
                "port": svc.port,
                "tls": svc.tls,
                "protocol": svc.protocol,
                "product": svc.product,
                "version": server_version(svc),
                "access": svc.access,
                # What a scan without --try-defaults must say: default credentials are not tried.
                "access_without_defaults": "auth_required" if svc.access == "default_credentials" else svc.access,
                "default_credentials": {"user": svc.user, "password": svc.password}
                if svc.access == "default_credentials"
                else None,
                "dataset": {"users": truth["users"], "seed": truth["seed"]},
                "containers": KINDS[svc.kind].containers(LAB_MODULE, svc, truth)
                if svc.kind in KINDS
                else truth["layouts"][svc.protocol],
            }
        )
    out["fixtures"] = {
        "services": [
            {"name": s.name, "address": s.address, "port": s.port, "protocol": s.protocol, "access": s.access}
            for s in FIXTURE_SERVICES
        ],
        "containers": fixtures.truth(state.get("fixture_people", {})),
    }
    MANIFEST.write_text(json.dumps(out, indent=2) + "\n")


def stop(state: dict) -> None:
    procs = state.get("services", {})
    for name, v in procs.items():
        if pid_alive(v["pid"], v["expect"]):
            try:
                os.kill(v["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    for name, v in procs.items():
        while pid_alive(v["pid"], v["expect"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(v["pid"], v["expect"]):
            log(f"{name} (pid {v['pid']}) ignored SIGTERM; killing it")
            os.kill(v["pid"], signal.SIGKILL)
    # Reap children that were ours (they are when up and down run in one process).
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def cmd_down(args) -> int:
    state = load_state()
    if not state:
        log("nothing to stop")
        return 0
    stop(state)
    left = [f"{n} (pid {v['pid']})" for n, v in state["services"].items() if pid_alive(v["pid"], v["expect"])]
    listening = lab_listeners()
    shutil.rmtree(STATE, ignore_errors=True)
    MANIFEST.unlink(missing_ok=True)
    if left or listening:
        log(f"NOT clean after stop: processes {left}, listening sockets {listening}")
        return 1
    log("lab stopped: no lab process left, nothing listening on a lab address")
    return 0


def lab_listeners() -> list[str]:
    """Listening TCP/UDP sockets on any lab service address."""
    out = run(["ss", "-ltnuH"], capture_output=True, text=True).stdout
    addrs = {s.address for s in SERVICES + FIXTURE_SERVICES}
    hits = []
    for line in out.splitlines():
        local = line.split()[4]
        host = local.rsplit(":", 1)[0].strip("[]")
        host = host[7:] if host.startswith("::ffff:") else host
        if host in addrs:
            hits.append(local)
    return hits


def probe(svc: Service) -> str:
    """A protocol-level answer from the service, as a short string (what a person would check)."""
    try:
        if svc.kind in KINDS:
            return KINDS[svc.kind].probe(LAB_MODULE, svc)
        if svc.kind in ("opensearch", "stunnel"):
            req = https_req if svc.tls else http_req
            doc = json.loads(req(svc, "GET", "/")[1])
            tls = " over TLS" if svc.tls else ""
            return f"{doc['version'].get('distribution', 'elasticsearch')} {doc['version']['number']}{tls}"
        if svc.kind == "redis":
            reply = resp_cmd(svc, "PING").decode(errors="replace").strip()
            return reply
        if svc.kind == "memcached":
            with socket.create_connection((svc.address, svc.port), timeout=5) as s:
                s.sendall(b"version\r\n")
                return s.recv(256).decode().strip()
        if svc.kind == "postgres":
            return "postgres " + psql(svc, "SHOW server_version").strip()
        if svc.kind == "mariadb":
            with socket.create_connection((svc.address, svc.port), timeout=5) as s:
                greeting = s.recv(1024)
            return "handshake " + greeting[5:].split(b"\0", 1)[0].decode(errors="replace")
        if svc.kind == "ferretdb":
            out = run([str(venv_python()), "-c", "import pymongo,sys;c=pymongo.MongoClient(sys.argv[1],serverSelectionTimeoutMS=3000);"
                       "print(c.admin.command('buildInfo')['version'])", f"mongodb://{svc.address}:{svc.port}/"],
                      capture_output=True, text=True)
            return "mongodb wire, buildInfo " + out.stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"NOT ANSWERING ({e})"
    return "?"


def cmd_status(args) -> int:
    state = load_state()
    if not state:
        print("lab is not running (lab/up starts it)")
        return 1
    services = services_with_secrets(state) + [s for s in FIXTURE_SERVICES if s.name in state["services"]]
    bad = 0
    print(f"{'service':22} {'address':18} {'pid':>7}  {'state':8} answer")
    for svc in services:
        v = state["services"].get(svc.name)
        alive = bool(v) and pid_alive(v["pid"], v["expect"])
        answer = probe(svc) if alive else "-"
        ok = alive and v.get("ready") and not answer.startswith("NOT")
        bad += not ok
        print(f"{svc.name:22} {svc.address + ':' + str(svc.port):18} {v['pid'] if v else '-':>7}  "
              f"{'running' if ok else 'DOWN':8} {answer}")
    if not state.get("complete"):
        print("lab start did not complete; run lab/up again (it cleans up first)")
        bad += 1
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="install what is missing, start and seed every service, write lab/manifest.json")
    up.add_argument("--users", type=int, default=10_000, help="customers in the main dataset (default 10000; 2400000 for benchmarks)")
    up.add_argument("--parallel", type=int, default=3, help="services brought up at once (default 3)")
    up.add_argument("--no-install", action="store_true", help="skip the install step (everything is already there)")
    sub.add_parser("down", help="stop exactly the processes lab/up started and remove their state")
    sub.add_parser("status", help="each service: running?, and its answer to its own protocol")
    sub.add_parser("install", help="only install/build what the lab needs (idempotent)")
    sub.add_parser("manifest", help="rewrite the manifest of the running lab from the current generator (same data)")
    sub.add_parser("targets", help="print the scan targets of the whole lab, one per line (for scripts)")
    args = ap.parse_args()
    if args.cmd == "up":
        return cmd_up(args)
    if args.cmd == "down":
        return cmd_down(args)
    if args.cmd == "status":
        return cmd_status(args)
    if args.cmd == "manifest":
        return cmd_manifest(args)
    if args.cmd == "targets":
        print("\n".join(lab_targets()))
        return 0
    install()
    return 0


if __name__ == "__main__":
    sys.exit(main())
