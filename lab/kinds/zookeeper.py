"""Apache ZooKeeper (Debian's zookeeper, standalone): one server per service, on loopback,
state under the lab dir, no admin server. The dataset is the key-value layout of DATASET.md
written as znodes (`session:<uuid>` → `/smarthome/session/<uuid>`) through ZooKeeper's own
write path (kazoo's creates, lab/load_zookeeper.py). A service with access `auth_required`
has digest ACLs on every znode of the data; `/` stays world-readable."""

from __future__ import annotations

import socket

from . import Kind, register

DATA_ROOT = "/smarthome"


def znode_pattern(pattern: str) -> str:
    """The manifest's name of a key-value container as znodes: `session:*` →
    `/smarthome/session/*`."""
    return DATA_ROOT + "/" + pattern.replace(":", "/")


def srvr(svc) -> str:
    with socket.create_connection((svc.address, svc.port), timeout=5) as s:
        s.sendall(b"srvr")
        buf = b""
        while chunk := s.recv(4096):
            buf += chunk
    return buf.decode(errors="replace")


@register
class ZooKeeper(Kind):
    name = "zookeeper"
    protocol = "zookeeper"
    product = "ZooKeeper"
    apt = {"zookeeper": "/usr/share/java/zookeeper.jar"}

    def start(self, lab, svc, d, state):
        (d / "zoo.cfg").write_text(
            f"tickTime=2000\ndataDir={d / 'data'}\nclientPort={svc.port}\nclientPortAddress={svc.address}\n"
            "admin.enableServer=false\n4lw.commands.whitelist=srvr\nmaxClientCnxns=0\n"
        )
        lab.spawn(svc, ["/usr/bin/java", "-Xmx256m", "-XX:+UseSerialGC", "-Dzookeeper.jmx.log4j.disable=true",
                        "-Dzookeeper.root.logger=WARN,CONSOLE", f"-Dzookeeper.log.dir={d}",
                        "-cp", "/etc/zookeeper/conf_example:/usr/share/java/zookeeper.jar",
                        "org.apache.zookeeper.server.ZooKeeperServerMain", str(d / "zoo.cfg")],
                  state, expect="ZooKeeperServerMain")

    def ready(self, lab, svc):
        return srvr(svc).startswith("Zookeeper version:")

    def containers(self, lab, svc, truth):
        out = []
        for c in truth["layouts"]["memcached"]:
            name = znode_pattern(c["name"])
            out.append({**c, "name": name, "pattern": name})
        return out

    def seed(self, lab, svc, truth, ga):
        args = [str(lab.venv_python()), str(lab.LAB / "load_zookeeper.py"), f"{svc.address}:{svc.port}",
                str(lab.ROOT / "target" / "release" / "leakscope-labgen"), *ga]
        if svc.access == "auth_required":
            args.append(f"{svc.user}:{svc.password}")
        lab.run(args)

    def client(self, svc):
        from kazoo.client import KazooClient  # the lab venv's (tests run there)

        zk = KazooClient(hosts=f"{svc.address}:{svc.port}", timeout=30)
        zk.start(timeout=30)
        if svc.password:
            zk.add_auth("digest", f"{svc.user}:{svc.password}")
        return zk

    def count(self, lab, svc, c) -> int:
        parent, _, _ = c["pattern"].rpartition("/")
        zk = self.client(svc)
        try:
            return len(zk.get_children(parent))
        finally:
            zk.stop()
            zk.close()

    def version(self, lab, svc):
        first = srvr(svc).splitlines()[0]
        return first.split(":", 1)[1].strip().split("-")[0].split(",")[0]

    def probe(self, lab, svc):
        return "ZooKeeper " + self.version(lab, svc)
