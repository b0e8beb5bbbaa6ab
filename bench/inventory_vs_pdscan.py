#!/usr/bin/env python3
"""Benchmark: inventory + sampling (+ classification) vs pdscan, and --full vs each store's own
export tool, on the running lab, in the same run.

For each exposed lab service of the main dataset: leakscope scanning that one endpoint (default
mode, --try-defaults) against pdscan given the same store's URI (pdscan samples 10,000 rows per
table by default; we pass --sample-size 200 to match leakscope's default); then leakscope --full
against the store's own export tool over the same data (pg_dump, mysqldump, redis-cli --scan,
a scroll over every index, a pymongo cursor over every collection). Also the whole lab in default
mode. Prints a Markdown section for bench/RESULTS.md. Wall time and peak RSS come from GNU time.

pdscan is built from its source beside the project (never committed): set PDSCAN or put it on
PATH. Only 127.0.0.0/8 is contacted.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lab"))
import lab  # noqa: E402

BIN = ROOT / "target" / "release" / "leakscope"
ENV = {**os.environ, "LEAKSCOPE_LOOPBACK_ONLY": "1"}


def timed(cmd, env=None, shell=False):
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%M", "-o", tf.name]
        full += ["bash", "-c", cmd] if shell else cmd
        t0 = time.monotonic()
        out = subprocess.run(full, capture_output=True, text=True, env=env or ENV)
        wall = time.monotonic() - t0
        rss = int(tf.read().strip().splitlines()[-1]) / 1024
    return wall, rss, out


def categories(report):
    return sorted({c for s in report["services"] for k in s["containers"] for c in k["categories"]})


def main():
    manifest = json.loads(lab.MANIFEST.read_text())
    state = lab.load_state()
    svcs = {s.name: s for s in lab.services_with_secrets(state)}
    pdscan = os.environ.get("PDSCAN") or shutil.which("pdscan") or str(Path.home() / ".cache/leakscope-bench/bin/pdscan")
    rows = []
    full_rows = []
    targets = {
        "opensearch-open": ("opensearch+http://127.0.10.1:9200", None),
        "mongodb-open": ("mongodb://127.0.10.3:27017/smarthome", None),
        "redis-open": ("redis://127.0.10.4:6379/0", None),
        "postgres-trust": ("postgres://postgres@127.0.10.6:5432/smarthome?sslmode=disable", None),
        "mariadb-root-nopass": ("mysql://root@127.0.12.2:3306/smarthome", None),
    }
    for name, (uri, _) in targets.items():
        svc = svcs[name]
        ep = f"{svc.address}:{svc.port}"
        w1, r1, o1 = timed([str(BIN), "scan", ep, "--try-defaults", "--no-store", "--quiet", "--format", "json"])
        rep = json.loads(o1.stdout)
        cats = categories(rep)
        w2, r2, o2 = timed([pdscan, uri, "--sample-size", "200"], env=os.environ)
        found = [l for l in o2.stdout.splitlines() if ": found " in l or "possible" in l]
        rows.append((name, w1, r1, len(cats), w2, r2, len(found), o2.returncode))
        print(f"{name}: leakscope {w1:.2f}s {r1:.0f}MB {len(cats)} categories; pdscan {w2:.2f}s {r2:.0f}MB "
              f"{len(found)} findings (exit {o2.returncode})", file=sys.stderr, flush=True)

        # --full vs the store's export tool over the same data.
        wf, rf, of = timed([str(BIN), "scan", ep, "--try-defaults", "--no-store", "--quiet", "--format", "json", "--full"])
        sock = lab.STATE / svc.name
        export = {
            "postgres-trust": f"pg_dump -h {sock} -U postgres --data-only smarthome > /dev/null",
            "mariadb-root-nopass": f"mysqldump --socket={sock}/mysqld.sock -uroot --databases smarthome billing > /dev/null",
            "redis-open": f"redis-cli -h {svc.address} -p {svc.port} -n 0 --scan | wc -l > /dev/null",
            "opensearch-open": f"{sys.executable} {ROOT / 'bench' / 'export_tools.py'} opensearch http://{ep}",
            "mongodb-open": f"{lab.venv_python()} {ROOT / 'bench' / 'export_tools.py'} mongodb mongodb://{ep}/",
        }[name]
        if name in os.environ.get("BENCH_SKIP_EXPORT", "").split(","):
            full_rows.append((name, wf, rf, float("nan"), float("nan"), "skipped", 0))
            print(f"{name}: export skipped", file=sys.stderr, flush=True)
            continue
        we, re_, oe = timed(export, shell=True)
        full_rows.append((name, wf, rf, we, re_, export.split()[0].split("/")[-1], oe.returncode))

    lab_targets = ["127.0.10.0/24", "127.0.11.0/24", "127.0.12.0/24", "127.0.10.2:19201", "127.0.10.5:16380"]
    wl, rl, ol = timed([str(BIN), "scan", *lab_targets, "--try-defaults", "--no-store", "--quiet", "--format", "json"])
    whole = json.loads(ol.stdout)

    print(f"### Inventory + sampling vs pdscan ({time.strftime('%Y-%m-%d')}, lab with {manifest['users']:,} users)\n")
    print(f"Whole lab, default mode (identify, inventory, sample 200/container, classify), "
          f"{len(whole['services'])} services: **{wl:.2f} s, peak RSS {rl:.0f} MB**.\n")
    print("| store | leakscope | RSS | categories | pdscan --sample-size 200 | RSS | findings | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, w1, r1, nc, w2, r2, nf, rc in rows:
        print(f"| {name} | {w1:.2f} s | {r1:.0f} MB | {nc} | {w2:.2f} s{'' if rc == 0 else f' (exit {rc})'} "
              f"| {r2:.0f} MB | {nf} | {w2 / w1:.1f}x |")
    print("\n| store | leakscope --full | RSS | export tool | time | RSS | ratio (tool / leakscope) |")
    print("|---|---|---|---|---|---|---|")
    for name, wf, rf, we, re_, tool, rc in full_rows:
        print(f"| {name} | {wf:.2f} s | {rf:.0f} MB | {tool} | {we:.2f} s{'' if rc == 0 else f' (exit {rc})'} "
              f"| {re_:.0f} MB | {we / wf:.1f}x |")
    print("\nCommand: `python3 bench/inventory_vs_pdscan.py` (release build, lab up).")


if __name__ == "__main__":
    main()
