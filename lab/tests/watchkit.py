"""What the `leakscope watch` tests (and bench/watch_*.py) need: real data stores the TEST starts
and flips (never the shared lab's, never flipped by leakscope), alert receivers, and the watcher
process.

Every server binds an address of the lab's network (LEAKSCOPE_LAB_NET) with a third octet from 20
to 40, keeps its state in a temporary directory and is stopped by its PID. Servers:
- Redis protected by `requirepass`; "flipped" = restarted without it (data kept in its RDB file).
- PostgreSQL with scram-sha-256 for TCP; "flipped" = pg_hba.conf switched to trust and reloaded
  (SIGHUP to the postmaster).
- MariaDB with a root@'%' password; "flipped" = the password removed (ALTER USER ... '').
Each holds a few hundred synthetic customers with e-mails, names and API tokens, so an exposure
alert has categories and people to report, and the tests can check that no raw value leaks.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import lab  # noqa: E402

BINARY = Path(os.environ.get("LEAKSCOPE_BINARY", lab.ROOT / "target" / "debug" / "leakscope"))
ENV = {**os.environ, "LEAKSCOPE_LOOPBACK_ONLY": "1"}
SECRET = "Flip-Test-Secret-9"


def addr(third: int, host: int) -> str:
    """An address of this lab's network reserved for watch tests (third octet 20..40)."""
    assert 20 <= third <= 40, third
    a = f"{lab.NET}.{third}.{host}"
    lab.check_loopback(a)
    return a


def customers(n: int = 300, salt: str = "") -> list[dict]:
    """Synthetic customers: the raw values tests look for in alerts (and must not find)."""
    out = []
    for i in range(n):
        out.append({
            "user_id": f"u{i:05d}",
            "email": f"maria.bianchi{i}{salt}@example.org",
            "name": f"Maria Bianchi{i}",
            "api_token": f"sk_live_51Hx{i:06d}Q2aLkT0pZ9xYw{salt}",
        })
    return out


def raw_values(rows: list[dict]) -> list[str]:
    return [r[k] for r in rows for k in ("email", "api_token")]


def wait_for(pred, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop_pid(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 30) -> None:
    """Stops a process this module started, by its PID."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def chown_tree(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        for p in [path, *path.rglob("*")]:
            shutil.chown(p, user, user)


# ---------------------------------------------------------------- servers


class Redis:
    """A redis-server with its state in `dir`; restart(password) keeps the data (RDB)."""

    def __init__(self, address: str, port: int = 6379, password: str | None = SECRET):
        lab.check_loopback(address)
        self.address, self.port = address, port
        self.dir = Path(tempfile.mkdtemp(prefix="leakscope-watch-redis-"))
        self.proc: subprocess.Popen | None = None
        self.rows = customers(salt=address.replace(".", ""))
        self.start(password)
        self.seed()

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self, password: str | None) -> None:
        cmd = ["/usr/bin/redis-server", "--bind", self.address, "--port", str(self.port), "--dir", str(self.dir),
               "--save", "3600 1", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"]
        if password:
            cmd += ["--requirepass", password]
        self.password = password
        log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        lab.wait_port(self.address, self.port, 20, "test redis")

    def cli(self, *args: str) -> str:
        env = dict(os.environ)
        if self.password:
            env["REDISCLI_AUTH"] = self.password
        return subprocess.run(["redis-cli", "-h", self.address, "-p", str(self.port), *args], capture_output=True,
                              text=True, check=True, env=env).stdout

    def seed(self) -> None:
        lines = "".join(f"SET user:{r['user_id']} '{json.dumps(r)}'\n" for r in self.rows)
        env = dict(os.environ)
        if self.password:
            env["REDISCLI_AUTH"] = self.password
        subprocess.run(["redis-cli", "-h", self.address, "-p", str(self.port)], input=lines, text=True, check=True,
                       capture_output=True, env=env)

    def restart(self, password: str | None) -> None:
        """Stops (SIGTERM: Redis saves its RDB on shutdown) and starts again, with or without
        requirepass: the flip."""
        stop_pid(self.proc)
        self.start(password)

    def open(self) -> None:
        self.restart(None)

    def close(self) -> None:
        self.restart(SECRET)

    def stop(self) -> None:
        stop_pid(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres:
    """A PostgreSQL cluster in a temp dir: scram-sha-256 over TCP; open() = pg_hba trust + reload."""

    def __init__(self, address: str, port: int = 5432):
        lab.check_loopback(address)
        self.address, self.port = address, port
        self.dir = Path(tempfile.mkdtemp(prefix="leakscope-watch-pg-"))
        self.owner = "postgres" if os.geteuid() == 0 else None
        self.data = self.dir / "data"
        kw = {"user": self.owner, "group": self.owner} if self.owner else {}
        if self.owner:
            chown_tree(self.dir, self.owner)
        subprocess.run([lab.pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"], check=True,
                       stdout=subprocess.DEVNULL, **kw)
        log = open(self.dir / "pg.log", "ab")
        self.proc = subprocess.Popen(
            [lab.pg_bin("postgres"), "-D", str(self.data), "-c", f"listen_addresses={self.address}", "-c",
             f"port={self.port}", "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=off"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        lab.wait_port(self.address, self.port, 60, "test postgres")
        wait_for(lambda: self._psql_ok(), 30, "postgres to accept local connections")
        self.rows = customers(salt=address.replace(".", ""))
        self.psql(f"ALTER USER postgres PASSWORD '{SECRET}'")
        self.psql("CREATE TABLE customers (user_id text primary key, email text, name text, api_token text)")
        values = ",".join(f"('{r['user_id']}','{r['email']}','{r['name']}','{r['api_token']}')" for r in self.rows)
        self.psql(f"INSERT INTO customers VALUES {values}")
        self.psql("ANALYZE customers")

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def _psql_ok(self) -> bool:
        try:
            self.psql("SELECT 1")
            return True
        except subprocess.CalledProcessError:
            return False

    def psql(self, sql: str) -> str:
        return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.dir), "-p", str(self.port),
                               "-U", "postgres", "-d", "postgres", "-At", "-c", sql], capture_output=True, text=True,
                              check=True).stdout

    def _hba(self, method: str) -> None:
        hba = self.data / "pg_hba.conf"
        lines = []
        for line in hba.read_text().splitlines():
            if line.startswith("host"):
                parts = line.split()
                parts[-1] = method
                line = "    ".join(parts)
            lines.append(line)
        hba.write_text("\n".join(lines) + "\n")
        os.kill(self.proc.pid, signal.SIGHUP)  # reload pg_hba.conf

    def open(self) -> None:
        self._hba("trust")

    def close(self) -> None:
        self._hba("scram-sha-256")

    def stop(self) -> None:
        stop_pid(self.proc, signal.SIGINT)  # fast shutdown
        shutil.rmtree(self.dir, ignore_errors=True)


class MariaDB:
    """A MariaDB server in a temp dir with root@'%' protected; open() = root's password removed."""

    def __init__(self, address: str, port: int = 3306):
        lab.check_loopback(address)
        self.address, self.port = address, port
        self.dir = Path(tempfile.mkdtemp(prefix="leakscope-watch-maria-"))
        data = self.dir / "data"
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                        "--auth-root-authentication-method=socket", "--skip-test-db"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sock = self.dir / "mysqld.sock"
        log = open(self.dir / "mariadb.log", "ab")
        self.proc = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={self.sock}",
             f"--bind-address={self.address}", f"--port={self.port}", "--user=root", "--skip-name-resolve",
             f"--pid-file={self.dir}/mysqld.pid", "--skip-log-bin", "--innodb-buffer-pool-size=32M",
             f"--log-error={self.dir}/error.log"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        lab.wait_port(self.address, self.port, 60, "test mariadb")
        wait_for(lambda: self._ok(), 30, "mariadb to accept socket connections")
        self.rows = customers(salt=address.replace(".", ""))
        self.sql(f"CREATE USER 'root'@'%' IDENTIFIED BY '{SECRET}'; GRANT ALL ON *.* TO 'root'@'%'; "
                 "CREATE DATABASE shop; CREATE TABLE shop.customers (user_id varchar(16) primary key, "
                 "email varchar(200), name varchar(200), api_token varchar(200))")
        values = ",".join(f"('{r['user_id']}','{r['email']}','{r['name']}','{r['api_token']}')" for r in self.rows)
        self.sql(f"INSERT INTO shop.customers VALUES {values}; ANALYZE TABLE shop.customers")

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def _ok(self) -> bool:
        try:
            self.sql("SELECT 1")
            return True
        except subprocess.CalledProcessError:
            return False

    def sql(self, sql: str) -> str:
        return subprocess.run(["mariadb", f"--socket={self.sock}", "-uroot", "-N", "-B", "-e", sql],
                              capture_output=True, text=True, check=True).stdout

    def open(self) -> None:
        self.sql("ALTER USER 'root'@'%' IDENTIFIED BY ''")

    def close(self) -> None:
        self.sql(f"ALTER USER 'root'@'%' IDENTIFIED BY '{SECRET}'")

    def stop(self) -> None:
        stop_pid(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- alert receivers


class Receiver:
    """A webhook receiver on loopback that records every POST (headers and body). `down()`
    closes its socket (connections refused), `up()` listens again on the same port; `delay`
    holds each answer back (the request is recorded first), `received` is set on each request."""

    def __init__(self, address: str, port: int = 8080, tls: tuple[Path, Path] | None = None):
        lab.check_loopback(address)
        self.address, self.port = address, port
        self.tls = tls  # (certificate chain, key): HTTPS
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.delay = 0.0
        self.received = threading.Event()
        self.server = None
        self.up()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}:{self.port}/hook"

    def up(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.requests.append({"at": time.time(), "path": self.path, "headers": dict(self.headers),
                                           "body": body.decode("utf-8", "replace")})
                outer.received.set()
                if outer.delay:
                    time.sleep(outer.delay)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer((self.address, self.port), Handler)
        self.server.daemon_threads = True
        if self.tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]

    def alerts(self, kind: str | None = None, endpoint: str | None = None) -> list[dict]:
        return [a for a in self.bodies() if "schema" in a and (kind is None or a.get("kind") == kind)
                and (endpoint is None or a.get("endpoint") == endpoint)]


# ---------------------------------------------------------------- the watcher


class Watcher:
    """`leakscope watch --config FILE` as a child process, logs in the temp dir."""

    def __init__(self, workdir: Path, config: str, extra: list[str] | None = None):
        self.workdir = workdir
        self.config = workdir / "watch.toml"
        self.config.write_text(config)
        self.db = workdir / "watch.db"
        self.log = workdir / "watch.log"
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        assert BINARY.exists(), f"{BINARY} missing: run cargo build (./test does)"
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([str(BINARY), "watch", "--config", str(self.config), "--db", str(self.db),
                                      "--log-format", "json", *self.extra],
                                     stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, env=ENV)

    def logs(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"message": line})
        return out

    def logged(self, text: str) -> bool:
        return any(text in json.dumps(entry) for entry in self.logs())

    def stop(self) -> int:
        stop_pid(self.proc)
        return self.proc.returncode

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([str(BINARY), *args, "--db", str(self.db)], capture_output=True, text=True, env=ENV,
                             timeout=120)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def known(self) -> dict[str, str]:
        """endpoint -> state, from the store."""
        import sqlite3
        if not self.db.exists():
            return {}
        with sqlite3.connect(self.db) as c:
            try:
                rows = c.execute("SELECT address, port, state FROM watch_endpoints").fetchall()
            except sqlite3.OperationalError:
                return {}
        return {f"{a}:{p}": s for a, p, s in rows}


def config(targets: list[str], routes: str, interval: str = "1s", extra_group: str = "", tuning: str = "") -> str:
    """A watch config with one group `flip` over `targets`."""
    t = ", ".join(json.dumps(x) for x in targets)
    return (f"[tuning]\nconfirm_after = \"1s\"\nretry_initial = \"1s\"\nretry_max = \"5s\"\n{tuning}\n"
            f"[[group]]\nname = \"flip\"\ntargets = [{t}]\ninterval = \"{interval}\"\nsweep_interval = \"1h\"\n"
            f"inventory_timeout = \"20s\"\n{extra_group}\n{routes}\n")


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def make_ca(workdir: Path, ip: str) -> tuple[Path, Path, Path]:
    """A throwaway certificate authority and a server certificate for `ip` signed by it:
    (ca.pem, server chain, server key)."""
    def ossl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=workdir)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=leakscope test CA",
         "-keyout", "ca.key", "-out", "ca.pem")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=alerts", "-keyout", "leaf.key", "-out", "leaf.csr")
    (workdir / "leaf.ext").write_text(f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n"
                                      "extendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
         "-out", "leaf.pem", "-extfile", "leaf.ext")
    return workdir / "ca.pem", workdir / "leaf.pem", workdir / "leaf.key"
