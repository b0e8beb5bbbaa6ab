#!/usr/bin/env python3
"""Benchmark at the seed's scale (issue 18): the default scan of the whole lab started with
`lab/up --users 2400000`, as a new user would run it, against the manifest's truth.

One scan of the whole lab (its networks plus every service's ADDRESS:PORT, `--try-defaults`,
default budgets unless BENCH_SCAN_ARGS adds flags): wall time and peak RSS from GNU time. Then
each open store alone (same flags), for its own wall time. Per store it checks, against the
manifest: every container listed, each record count within 1 % (exact or marked estimated), each
people estimate within 5 % (with its method and interval). Prints a Markdown section for
bench/RESULTS.md and exits non-zero when the whole scan takes longer than BENCH_WALL_LIMIT
(default 10 s) or a check fails.

Env: LEAKSCOPE_LAB_NET / LEAKSCOPE_LAB_DIR / LEAKSCOPE_LAB_MANIFEST (the lab to measure),
LEAKSCOPE_BINARY (default target/release/leakscope). Only 127.0.0.0/8 is contacted.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lab"))
import lab  # noqa: E402

BIN = Path(os.environ.get("LEAKSCOPE_BINARY", ROOT / "target" / "release" / "leakscope"))
ENV = {**os.environ, "LEAKSCOPE_LOOPBACK_ONLY": "1"}
EXTRA = os.environ.get("BENCH_SCAN_ARGS", "").split()
WALL_LIMIT = float(os.environ.get("BENCH_WALL_LIMIT", "10"))
RECORDS_TOL, PEOPLE_TOL = 0.01, 0.05


def scan(*targets):
    for t in targets:
        host = t.split("/")[0].rsplit(":", 1)[0]
        assert host.startswith("127."), f"refusing non-loopback target {t}"
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        cmd = ["/usr/bin/time", "-f", "%M", "-o", tf.name, str(BIN), "scan", *targets, "--try-defaults",
               *EXTRA, "--format", "json", "--quiet", "--no-store"]
        t0 = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
        wall = time.monotonic() - t0
        rss = int(tf.read().strip().splitlines()[-1]) / 1024
    if out.returncode not in (0, 1):
        raise SystemExit(f"scan failed ({out.returncode}): {out.stderr[-2000:]}")
    return wall, rss, json.loads(out.stdout)


def key(name):
    return re.sub(r"<[a-z]+>", "*", name)


def check_store(want, got):
    """Rows of (container, truth records, got, truth people, estimate, method) and failures."""
    rows, fails = [], []
    containers = {key(c["name"]): c for c in got.get("containers", [])}
    for w in want["containers"]:
        c = containers.get(w["name"])
        if c is None:
            fails.append(f"{want['name']} {w['name']}: not listed")
            rows.append((w["name"], w.get("records"), None, w.get("subjects"), None, "not listed"))
            continue
        rec, trec = c.get("records"), w.get("records")
        if trec:
            if rec is None:
                fails.append(f"{want['name']} {w['name']}: no record count")
            elif abs(rec - trec) > RECORDS_TOL * trec:
                fails.append(f"{want['name']} {w['name']}: {rec} records vs {trec}")
        est, truth = c.get("subjects_estimate"), w.get("subjects")
        if truth and (est is None or abs(est - truth) > PEOPLE_TOL * truth):
            fails.append(f"{want['name']} {w['name']}: people {est} vs {truth}")
        method = c.get("subjects_method") or ""
        if c.get("subjects_interval"):
            lo, hi = c["subjects_interval"]
            method = f"[{lo:,}, {hi:,}] {method}"
        rows.append((w["name"], trec, (rec, c.get("records_estimated", False)), truth, est, method))
    return rows, fails


def fmt_n(n):
    return "" if n is None else f"{n:,}"


def main():
    manifest = json.loads(lab.MANIFEST.read_text())
    targets = lab.lab_targets()
    wall, rss, report = scan(*targets)
    got = {(s["address"], s["port"]): s for s in report["services"]}
    open_stores = [m for m in manifest["services"] if m.get("access") in ("open", "default_credentials")
                   and m.get("containers")]
    print(f"### Seed scale: default scan of the whole lab ({manifest['users']:,} users, "
          f"{time.strftime('%Y-%m-%d')})\n")
    print(f"**Whole lab: {wall:.2f} s wall, peak RSS {rss:.0f} MB** "
          f"(`leakscope scan {' '.join(targets)} --try-defaults {' '.join(EXTRA)}`)\n")
    all_fails = []
    print("| store | alone | RSS | containers listed | severity | notes |")
    print("|---|---|---|---|---|---|")
    details = []
    for m in open_stores:
        s = got.get((m["address"], m["port"]), {})
        w1, r1, _ = scan(f"{m['address']}:{m['port']}")
        rows, fails = check_store(m, s)
        all_fails += fails
        listed = sum(1 for r in rows if r[5] != "not listed")
        notes = len(s.get("inventory_notes", []))
        print(f"| {m['name']} | {w1:.2f} s | {r1:.0f} MB | {listed} of {len(rows)} | {s.get('severity')} | {notes} |")
        details.append((m, s, rows))
    print("\n| store | container | records (truth) | records | people (truth) | people | error | method |")
    print("|---|---|---|---|---|---|---|---|")
    for m, s, rows in details:
        for name, trec, rec, truth, est, method in rows:
            r = "" if rec is None else fmt_n(rec[0]) + (" (est.)" if rec[1] else "")
            err = f"{(est - truth) / truth:+.2%}" if est is not None and truth else ""
            print(f"| {m['name']} | {name} | {fmt_n(trec)} | {r} | {fmt_n(truth)} | {fmt_n(est)} | {err} | "
                  f"{method.replace('|', '/')} |")
    for m, s, _ in details:
        for n in s.get("inventory_notes", []):
            print(f"- {m['name']}: {n}")
    if all_fails:
        print("\nChecks that failed:\n" + "\n".join(f"- {f}" for f in all_fails))
    if wall > WALL_LIMIT:
        print(f"\nWhole lab took {wall:.2f} s, over the {WALL_LIMIT} s limit")
    return 1 if all_fails or wall > WALL_LIMIT else 0


if __name__ == "__main__":
    sys.exit(main())
