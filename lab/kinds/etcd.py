"""etcd (Debian's etcd-server, v3 API): one member per service, on loopback, state under the
lab dir. The dataset is the key-value layout of DATASET.md (the Memcached one: JSON sessions
under `session:<uuid>`, scalar fragments under `fragment:home:<n>`), written through etcd's own
write path (the v3 JSON gateway's `txn` of puts). A service with access `auth_required` gets a
root user with a random password and authentication enabled once its data is in."""

from __future__ import annotations

import base64
import http.client
import json

from . import Kind, register

TXN_OPS = 128  # etcd's default --max-txn-ops


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def call(svc, path: str, body: dict, token: str | None = None) -> dict:
    conn = http.client.HTTPConnection(svc.address, svc.port, timeout=60)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        resp = conn.getresponse()
        out = resp.read()
        if resp.status != 200:
            raise SystemExit(f"lab: etcd {path} on {svc.name} answered {resp.status}: {out[:300]!r}")
        return json.loads(out)
    finally:
        conn.close()


def memcached_records(stream):
    """(key, value) of each `set KEY FLAGS EXP LEN noreply` record the generator emits."""
    while header := stream.readline():
        parts = header.split()
        if not parts:
            continue
        if parts[0] != b"set" or len(parts) < 5:
            raise SystemExit(f"lab: unexpected generator line {header[:80]!r}")
        n = int(parts[4])
        data = stream.read(n + 2)[:n]
        yield parts[1], data


@register
class Etcd(Kind):
    name = "etcd"
    protocol = "etcd"
    product = "etcd"
    apt = {"etcd-server": "/usr/bin/etcd", "etcd-client": "/usr/bin/etcdctl"}

    def start(self, lab, svc, d, state):
        client = f"http://{svc.address}:{svc.port}"
        peer = f"http://{svc.address}:{svc.port + 1}"
        lab.spawn(svc, ["/usr/bin/etcd", "--name", svc.name, "--data-dir", str(d / "data"),
                        "--listen-client-urls", client, "--advertise-client-urls", client,
                        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                        "--initial-cluster", f"{svc.name}={peer}", "--logger", "zap", "--log-level", "warn",
                        "--quota-backend-bytes", str(256 << 20)], state)

    def ready(self, lab, svc):
        status, body = lab.http_req(svc, "GET", "/health")
        return status == 200 and json.loads(body).get("health") == "true"

    def containers(self, lab, svc, truth):
        return truth["layouts"]["memcached"]

    def seed(self, lab, svc, truth, ga):
        p = lab.gen(["emit", *ga, "--layout", "memcached"])
        ops = []
        for key, value in memcached_records(p.stdout):
            ops.append({"request_put": {"key": b64(key), "value": b64(value)}})
            if len(ops) == TXN_OPS:
                call(svc, "/v3/kv/txn", {"success": ops})
                ops = []
        if ops:
            call(svc, "/v3/kv/txn", {"success": ops})
        lab.finish(p)
        if svc.access == "auth_required":
            call(svc, "/v3/auth/role/add", {"name": "root"})
            call(svc, "/v3/auth/user/add", {"name": "root", "password": svc.password})
            call(svc, "/v3/auth/user/grant", {"user": "root", "role": "root"})
            call(svc, "/v3/auth/enable", {})

    def token(self, svc) -> str | None:
        if not svc.password:
            return None
        return call(svc, "/v3/auth/authenticate", {"name": svc.user, "password": svc.password})["token"]

    def count(self, lab, svc, c) -> int:
        prefix = c["pattern"].rstrip("*").encode()
        end = bytearray(prefix)
        end[-1] += 1
        r = call(svc, "/v3/kv/range", {"key": b64(prefix), "range_end": b64(bytes(end)), "count_only": True},
                 self.token(svc))
        return int(r.get("count", 0))

    def version(self, lab, svc):
        return json.loads(lab.http_req(svc, "GET", "/version")[1])["etcdserver"]

    def probe(self, lab, svc):
        return "etcd " + self.version(lab, svc)
