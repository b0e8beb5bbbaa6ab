#!/usr/bin/env python3
"""Benchmarks of `leakscope watch` (issue 16), each against real servers the script starts itself
on the lab's network (LEAKSCOPE_LAB_NET, third octets 30-40), stopped by PID at the end.

  ttd       time-to-detect: a protected Redis restarted without requirepass N times at random
            moments of the cycle; from the moment the open server accepts connections to the
            `exposed` alert at a webhook receiver (and the same for `closed`). p50 and p95.
  recheck   one re-check cycle of N known endpoints (real memcached servers listening on N
            loopback addresses): wall time, connections, CPU, over several cycles.
  sweep     a full sweep of an empty loopback /16 (the lab's /16 minus its /22 of services) with
            `watch --once`, at a given rate budget: the full-sweep cadence.
  soak      RSS over >= 10,000 re-check cycles at a short interval (growth in %), then the CPU
            time and context switches of the process between two cycles at a long interval.

Everything is printed as Markdown for bench/RESULTS.md with the command that produced it. Run them
one at a time, `nice`d. Only 127.0.0.0/8 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lab" / "tests"))
os.environ.setdefault("LEAKSCOPE_BINARY", str(ROOT / "target" / "release" / "leakscope"))
import watchkit as wk  # noqa: E402

NET = wk.lab.NET
TICK = os.sysconf("SC_CLK_TCK")


def secs(d: str) -> float:
    """Seconds of a duration written as `30s`, `500ms` or `2m`."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", d)
    assert m, d
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ctx_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def cycle_logs(w: wk.Watcher, kind: str = "recheck") -> list[dict]:
    return [e for e in w.logs() if e.get("message") == "cycle" and e.get("kind") == kind]


def metric(addr: str, name: str) -> float:
    """A value of the watcher's /metrics; 0 while the endpoint is not up yet."""
    try:
        text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


# ---------------------------------------------------------------- time-to-detect


def ttd(args) -> None:
    rng = random.Random(args.seed)
    redis = wk.Redis(wk.addr(30, 1))
    host = wk.addr(30, 250)
    rx = wk.Receiver(host, wk.free_port(host))
    tuning = "flap_changes = 1000\n"  # the benchmark flips on purpose: no flapping verdict
    cfg = wk.config([redis.endpoint], f'[route.hook]\nwebhook = "{rx.url}"\n', interval=args.interval,
                    tuning=tuning).replace('confirm_after = "1s"', 'confirm_after = "5s"')
    work = Path(tempfile.mkdtemp(prefix="leakscope-bench-ttd-"))
    w = wk.Watcher(work, cfg)
    opened, closed = [], []
    try:
        wk.wait_for(lambda: w.known().get(redis.endpoint) == "protected", 60, "the first sweep")
        for i in range(args.flips):
            time.sleep(rng.uniform(0, secs(args.interval)))
            n = len(rx.alerts("exposed"))
            wk.stop_pid(redis.proc)
            redis.start(None)  # returns once the open server accepts connections
            t_open = time.time()
            wk.wait_for(lambda: len(rx.alerts("exposed")) > n, 180, "exposed")
            got = rx.requests[-1]["at"]
            opened.append(got - t_open)
            time.sleep(rng.uniform(0, secs(args.interval)))
            n = len(rx.alerts("closed"))
            wk.stop_pid(redis.proc)
            redis.start(wk.SECRET)
            t_closed = time.time()
            wk.wait_for(lambda: len(rx.alerts("closed")) > n, 180, "closed")
            closed.append(rx.requests[-1]["at"] - t_closed)
            print(f"flip {i + 1}: exposed after {opened[-1]:.1f}s, closed after {closed[-1]:.1f}s", file=sys.stderr)
        kinds = [a["kind"] for a in rx.alerts()]
        assert kinds.count("exposed") == args.flips and kinds.count("closed") == args.flips, kinds
    finally:
        wk.stop_pid(w.proc)
        rx.down()
        redis.stop()
    print(f"### Time-to-detect at `--interval {args.interval}` ({time.strftime('%Y-%m-%d')})\n")
    print(f"{args.flips} real flips of a Redis restarted without `requirepass` (and back), each at a random moment "
          f"of the cycle; from the moment the open server accepts connections to the alert at a webhook receiver "
          f"(inventory of 300 records and the delivery included).\n")
    print("| alert | p50 | p95 | min | max |\n|---|---|---|---|---|")
    for name, v in (("exposed", opened), ("closed", closed)):
        print(f"| `{name}` | {pct(v, 50):.1f} s | {pct(v, 95):.1f} s | {min(v):.1f} s | {max(v):.1f} s |")
    print(f"\nCommand: `nice -n 10 python3 bench/watch_bench.py ttd --flips {args.flips} --interval {args.interval}`\n")


# ---------------------------------------------------------------- one re-check of N endpoints


def recheck(args) -> None:
    n = args.endpoints
    per = 250
    servers = []
    addrs = [wk.addr(31 + i // 250, 1 + i % 250) for i in range(n)]
    work = Path(tempfile.mkdtemp(prefix="leakscope-bench-recheck-"))
    for k in range(0, n, per):
        chunk = addrs[k:k + per]
        log = open(work / f"mc{k}.log", "ab")
        servers.append(subprocess.Popen(["/usr/bin/memcached", "-l", ",".join(chunk), "-p", "11211", "-U", "0", "-m",
                                         "8", "-u", "root", "-c", "4096"], stdout=log, stderr=subprocess.STDOUT))
    for a in addrs[::50]:
        wk.lab.wait_port(a, 11211, 20, "memcached")
    targets = sorted({f"{a.rsplit('.', 1)[0]}.0/24" for a in addrs})
    cfg = (f"[[group]]\nname = \"bench\"\ntargets = {json.dumps(targets)}\nports = \"11211\"\n"
           f"interval = \"{args.interval}\"\nsweep_interval = \"24h\"\nno_inventory = true\n")
    w = wk.Watcher(work, cfg, extra=["--log-level", "debug"])
    try:
        wk.wait_for(lambda: len(w.known()) == n, 300, f"{n} endpoints known")
        wk.wait_for(lambda: len([c for c in cycle_logs(w) if c.get("endpoints") == n]) >= args.cycles, 60 + 20 *
                    args.cycles * secs(args.interval), f"{args.cycles} full re-check cycles")
        cpu0 = proc_cpu(w.proc.pid)
        c0 = len(cycle_logs(w))
        time.sleep(secs(args.interval) * 3)
        cpu1, c1 = proc_cpu(w.proc.pid), len(cycle_logs(w))
        cycles = [c for c in cycle_logs(w) if c.get("endpoints") == n][-args.cycles:]
        rss = proc_rss_kb(w.proc.pid) / 1024
    finally:
        wk.stop_pid(w.proc)
        for s in servers:
            wk.stop_pid(s)
    ms = [c["ms"] for c in cycles]
    conns = [c["connections"] for c in cycles]
    print(f"### One re-check cycle of {n} known endpoints ({time.strftime('%Y-%m-%d')})\n")
    print(f"{n} real memcached endpoints (4 servers listening on 250 loopback addresses each), all known (and "
          f"readable: each re-check reads `version` and `stats` without credentials); default concurrency 256, "
          f"per-host 16, no rate limit. Over the last {len(cycles)} cycles:\n")
    print("| per cycle | median | min | max |\n|---|---|---|---|")
    print(f"| wall time | {statistics.median(ms):.0f} ms | {min(ms)} ms | {max(ms)} ms |")
    print(f"| connections | {statistics.median(conns):.0f} | {min(conns)} | {max(conns)} |")
    per_cycle_cpu = (cpu1 - cpu0) / max(1, c1 - c0)
    print(f"\nCPU of the watcher: {per_cycle_cpu * 1000:.0f} ms per cycle ({c1 - c0} cycles measured); RSS {rss:.1f} MB.\n")
    print(f"Command: `nice -n 10 python3 bench/watch_bench.py recheck --endpoints {n}`\n")


# ---------------------------------------------------------------- a full /16 sweep


def sweep(args) -> None:
    net = f"{NET}.0.0/16"
    exclude = f"{NET}.8.0/21"  # the lab's services (127.N.10-12.x) and room around them
    work = Path(tempfile.mkdtemp(prefix="leakscope-bench-sweep-"))
    cfg = work / "sweep.toml"
    cfg.write_text(f"[[group]]\nname = \"sixteen\"\ntargets = [\"{net}\"]\nexclude = [\"{exclude}\"]\n"
                   f"sweep_rate = {args.rate}\ninterval = \"1m\"\nsweep_interval = \"1h\"\nconcurrency = 512\n"
                   f"per_host = 32\n")
    cmd = [str(wk.BINARY), "watch", "--config", str(cfg), "--db", str(work / "s.db"), "--once", "--log-format",
           "json", "--log-level", "debug"]
    t0 = time.monotonic()
    out = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *cmd], capture_output=True, text=True, env=wk.ENV)
    took = time.monotonic() - t0
    rss_kb, user, sys_ = out.stderr.strip().splitlines()[-1].split()
    logs = [json.loads(l) for l in out.stderr.splitlines() if l.startswith("{")]
    started = next(e for e in logs if e.get("message") == "sweep started")
    done = next(e for e in logs if e.get("message") == "sweep finished")
    endpoints = int(started["endpoints"])
    print(f"### Full sweep of an empty loopback /16 at `sweep_rate = {args.rate}` ({time.strftime('%Y-%m-%d')})\n")
    print(f"`{net}` minus `{exclude}`, default ports: {endpoints:,} endpoints in {done['ms'] / 1000:.1f} s "
          f"({endpoints / (done['ms'] / 1000):,.0f} endpoints/s; {done['connections']:,} connections), peak RSS "
          f"{int(rss_kb) / 1024:.1f} MB, CPU {float(user) + float(sys_):.1f} s; whole `--once` run {took:.1f} s. "
          f"A sweep every `sweep_interval` is possible down to this.\n")
    print(f"Command: `nice -n 10 python3 bench/watch_bench.py sweep --rate {args.rate}`\n")


# ---------------------------------------------------------------- soak: RSS and idle CPU


def soak(args) -> None:
    redis = wk.Redis(wk.addr(32, 1))  # protected
    open_redis = wk.Redis(wk.addr(32, 2), password=None)
    pg = wk.Postgres(wk.addr(32, 3))
    maddr = f"{wk.addr(32, 250)}:{wk.free_port(wk.addr(32, 250))}"
    work = Path(tempfile.mkdtemp(prefix="leakscope-bench-soak-"))
    targets = [redis.endpoint, open_redis.endpoint, pg.endpoint]
    cfg = (f"metrics = \"{maddr}\"\n[[group]]\nname = \"soak\"\ntargets = {json.dumps(targets)}\n"
           f"interval = \"{args.interval}\"\nsweep_interval = \"24h\"\n")
    w = wk.Watcher(work, cfg, extra=["--log-level", "warn"])
    samples = []
    name = 'leakscope_watch_cycles_total{group="soak",kind="recheck"}'
    try:
        wk.wait_for(lambda: len(w.known()) == 3 and w.known()[open_redis.endpoint] == "exposed", 120, "3 known")
        t0 = time.monotonic()
        while True:
            cycles = metric(maddr, name)
            samples.append((time.monotonic() - t0, cycles, proc_rss_kb(w.proc.pid), proc_cpu(w.proc.pid)))
            if cycles >= args.cycles:
                break
            time.sleep(5)
        assert w.proc.poll() is None
    finally:
        wk.stop_pid(w.proc)
    # Idle: the same watcher at a long interval, measured between two cycles.
    cfg_idle = cfg.replace(f'interval = "{args.interval}"', 'interval = "60s"')
    (work / "idle").mkdir()
    w2 = wk.Watcher(work / "idle", cfg_idle)
    try:
        wk.wait_for(lambda: metric(maddr, name) >= 2, 180, "two cycles at 60 s")
        time.sleep(3)  # the cycle that just ran is over
        cpu0, ctx0 = proc_cpu(w2.proc.pid), ctx_switches(w2.proc.pid)
        c0 = metric(maddr, name)
        time.sleep(45)
        cpu1, ctx1 = proc_cpu(w2.proc.pid), ctx_switches(w2.proc.pid)
        c1 = metric(maddr, name)
        # The metrics request itself wakes the process; measure once more without scraping.
        cpu2, ctx2 = proc_cpu(w2.proc.pid), ctx_switches(w2.proc.pid)
        time.sleep(5)
        cpu3, ctx3 = proc_cpu(w2.proc.pid), ctx_switches(w2.proc.pid)
    finally:
        wk.stop_pid(w2.proc)
        redis.stop()
        open_redis.stop()
        pg.stop()
    warm = next(s for s in samples if s[1] >= 1000)
    last = samples[-1]
    growth = (last[2] - warm[2]) / warm[2] * 100
    print(f"### Soak: {int(last[1]):,} re-check cycles at `--interval {args.interval}` ({time.strftime('%Y-%m-%d')})\n")
    print(f"Three known services (a protected Redis, an open Redis, a PostgreSQL asking for a password), "
          f"re-checked {int(last[1]):,} times in {last[0] / 60:.1f} min; RSS sampled every 5 s.\n")
    print("| at cycle | RSS |\n|---|---|")
    for s in [samples[0], warm] + samples[len(samples) // 4::max(1, len(samples) // 4)] + [last]:
        print(f"| {int(s[1]):,} | {s[2] / 1024:.1f} MB |")
    print(f"\n**RSS growth from cycle {int(warm[1]):,} to cycle {int(last[1]):,}: {growth:+.1f} %** "
          f"(max {max(s[2] for s in samples) / 1024:.1f} MB). CPU {last[3] - samples[0][3]:.1f} s in all, "
          f"{(last[3] - samples[0][3]) / max(1, last[1] - samples[0][1]) * 1000:.2f} ms per cycle.\n")
    print(f"Between cycles (`--interval 60s`, {int(c1 - c0)} cycle(s) in the 45 s window): CPU "
          f"{(cpu1 - cpu0) * 1000:.0f} ms and {ctx1 - ctx0} context switches over 45 s (one /metrics scrape "
          f"included); over 5 s with no scrape: CPU {(cpu3 - cpu2) * 1000:.0f} ms, {ctx3 - ctx2} context switches.\n")
    print(f"Command: `nice -n 10 python3 bench/watch_bench.py soak --cycles {args.cycles} --interval {args.interval}`\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ttd")
    p.add_argument("--flips", type=int, default=20)
    p.add_argument("--interval", default="30s")
    p.add_argument("--seed", type=int, default=16)
    p = sub.add_parser("recheck")
    p.add_argument("--endpoints", type=int, default=1000)
    p.add_argument("--interval", default="10s")
    p.add_argument("--cycles", type=int, default=5)
    p = sub.add_parser("sweep")
    p.add_argument("--rate", type=int, default=500)
    p = sub.add_parser("soak")
    p.add_argument("--cycles", type=int, default=10_000)
    p.add_argument("--interval", default="20ms")
    args = ap.parse_args()
    assert wk.BINARY.exists(), f"{wk.BINARY} missing: cargo build --release -p leakscope"
    {"ttd": ttd, "recheck": recheck, "sweep": sweep, "soak": soak}[args.cmd](args)


if __name__ == "__main__":
    main()
