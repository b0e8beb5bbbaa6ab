#!/usr/bin/env python3
"""A fleet for benchmarks: one real server of every protocol, each on a port no protocol claims.

    python3 bench/fleet.py up        # start (state and logs in $LEAKSCOPE_FLEET_DIR)
    python3 bench/fleet.py targets   # ADDRESS:PORT PROTOCOL PRODUCT, one a line
    python3 bench/fleet.py down      # stop exactly the PIDs `up` recorded

The servers are the lab's (same packages and launchers, see lab/lab.py), started empty: what is
measured is identification, which needs no data. They listen on 127.N.20.1-6, N from
LEAKSCOPE_LAB_NET (as the lab), so a fleet runs beside a lab without touching it. Only loopback
addresses are ever used.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLEET_DIR = Path(os.environ.get("LEAKSCOPE_FLEET_DIR", "/tmp/leakscope-fleet"))
# lab.py keeps its state under LEAKSCOPE_LAB_DIR: pointed at the fleet's own directory, its
# start and stop helpers never see (or stop) the lab's processes.
os.environ["LEAKSCOPE_LAB_DIR"] = str(FLEET_DIR)
os.environ["LEAKSCOPE_LAB_MANIFEST"] = str(FLEET_DIR / "manifest.json")
sys.path.insert(0, str(ROOT / "lab"))
import lab  # noqa: E402

NET = lab.NET
# Ports chosen because no leakscope protocol and no usual service of that kind claims them.
FLEET = [
    lab.Service("fleet-opensearch", "opensearch", f"{NET}.20.1", 29200, "open", "main", extra={"transport": 29300}),
    lab.Service("fleet-ferretdb", "ferretdb", f"{NET}.20.2", 37017, "open", "main"),
    lab.Service("fleet-redis", "redis", f"{NET}.20.3", 26479, "open", "main"),
    lab.Service("fleet-postgres", "postgres", f"{NET}.20.4", 25433, "open", "main", user="postgres"),
    lab.Service("fleet-memcached", "memcached", f"{NET}.20.5", 21211, "open", "main"),
    lab.Service("fleet-mariadb", "mariadb", f"{NET}.20.6", 23306, "auth_required", "main"),
    lab.Service("fleet-etcd", "etcd", f"{NET}.20.20", 22379, "open", "main"),  # peers on 22380
    lab.Service("fleet-zookeeper", "zookeeper", f"{NET}.20.21", 22181, "open", "main"),
]


def up() -> int:
    state = lab.load_state()
    if state:
        lab.stop(state)
    lab.shutil.rmtree(FLEET_DIR, ignore_errors=True)
    FLEET_DIR.mkdir(parents=True, mode=0o755)
    state = {"complete": False, "services": {}, "secrets": {}}
    lab.save_state(state)
    # A small heap: the fleet's OpenSearch holds nothing.
    os.environ.setdefault("LEAKSCOPE_LAB_OS_JAVA_OPTS", "-Xms128m -Xmx256m")
    for svc in FLEET:
        lab.start_service(svc, state)
    for svc in FLEET:
        lab.wait_ready(svc)
        lab.log(f"{svc.name} ready on {svc.address}:{svc.port}")
    state["complete"] = True
    lab.save_state(state)
    (FLEET_DIR / "fleet.json").write_text(json.dumps(
        [{"address": s.address, "port": s.port, "protocol": s.protocol, "product": s.product} for s in FLEET],
        indent=2))
    return 0


def down() -> int:
    state = lab.load_state()
    if not state:
        lab.log("no fleet to stop")
        return 0
    lab.stop(state)
    left = [n for n, v in state["services"].items() if lab.pid_alive(v["pid"], v["expect"])]
    lab.shutil.rmtree(FLEET_DIR, ignore_errors=True)
    if left:
        lab.log(f"NOT clean after stop: {left}")
        return 1
    lab.log("fleet stopped")
    return 0


def targets() -> int:
    for s in FLEET:
        print(f"{s.address}:{s.port} {s.protocol} {s.product}")
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd not in ("up", "down", "targets"):
        sys.exit("usage: fleet.py up|down|targets")
    sys.exit({"up": up, "down": down, "targets": targets}[cmd]())
