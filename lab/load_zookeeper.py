"""Loads the lab's key-value dataset into ZooKeeper with kazoo (run inside the lab venv).

argv: HOST:PORT LABGEN_BINARY --users N --seed S [DIGEST_USER:PASSWORD]

Each record `kind:…:id` of the generator's key-value layout becomes the znode
`/smarthome/kind/…/id` holding the value. With a digest credential every znode under (and
including) /smarthome gets an ACL that only that user may read: `/` stays world-readable, as
ZooKeeper's own root is.
"""

import subprocess
import sys

from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

hosts, labgen, *gen_args = sys.argv[1:]
digest = gen_args.pop() if len(gen_args) == 5 else None
acl = None
zk = KazooClient(hosts=hosts, timeout=30)
zk.start(timeout=60)
if digest:
    user, password = digest.split(":", 1)
    zk.add_auth("digest", digest)
    acl = [make_digest_acl(user, password, all=True)]
ROOT = "/smarthome"
made = set()


def ensure(path):
    """Creates the parents of `path` (once each), with the ACL."""
    parts = path.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        p = "/" + "/".join(parts[:i])
        if p not in made:
            if not zk.exists(p):
                zk.create(p, b"", acl=acl)
            made.add(p)


proc = subprocess.Popen([labgen, "emit", *gen_args, "--layout", "memcached"], stdout=subprocess.PIPE)
pending = []
while header := proc.stdout.readline():
    parts = header.split()
    if not parts:
        continue
    if parts[0] != b"set" or len(parts) < 5:
        sys.exit(f"unexpected generator line {header[:80]!r}")
    n = int(parts[4])
    value = proc.stdout.read(n + 2)[:n]
    path = ROOT + "/" + parts[1].decode().replace(":", "/")
    ensure(path)
    pending.append(zk.create_async(path, value, acl=acl))
    if len(pending) >= 500:
        for p in pending:
            p.get(timeout=60)
        pending = []
for p in pending:
    p.get(timeout=60)
if proc.wait() != 0:
    sys.exit("labgen failed")
zk.stop()
zk.close()
