#!/usr/bin/env python3
"""Benchmark: `leakscope classify` against trufflehog and pdscan on the same exported files.

Exports the lab dataset (leakscope-labgen, --users, default 170,000 users, about 1 GB of JSON
lines) once, then in the same run times on one core (every tool pinned with `taskset -c 0`):

- `leakscope classify EXPORT --threads 1 --format json`
- `trufflehog filesystem --no-verification --no-update --json --concurrency 1 EXPORT`
- `pdscan file://EXPORT/ --processes 1 --sample-size 1000000000 --format ndjson` (the sample
  size above the line count makes it read every line, as the other two do)

and reports MB/s (input bytes / wall seconds), peak RSS (GNU time) and what each found:
leakscope's categories per field against the generator's ground truth, trufflehog's detector
names with counts, pdscan's rule names per file. Prints a Markdown section for
bench/RESULTS.md and keeps the raw outputs in the work directory.

Peers are looked up on PATH or in ~/.cache/leakscope-bench/bin (never in the repository); set
TRUFFLEHOG or PDSCAN to override. Nothing is contacted over the network: no verification, no
update check, files only.
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# LEAKSCOPE_BIN_DIR: where leakscope and leakscope-labgen are (default: the release build).
BIN = Path(os.environ.get("LEAKSCOPE_BIN_DIR", ROOT / "target" / "release"))
PEERS = Path.home() / ".cache" / "leakscope-bench" / "bin"


def tool(name, env):
    p = os.environ.get(env) or shutil.which(name) or str(PEERS / name)
    if not Path(p).exists():
        sys.exit(f"{name} not found: set {env} or put it in {PEERS}")
    return p


def timed(cmd, stdout_path, timeout):
    """Runs cmd pinned to one core; returns (wall seconds, peak RSS MB, exit code or 'timeout')."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf, open(stdout_path, "wb") as out:
        full = ["/usr/bin/time", "-v", "-o", tf.name, "taskset", "-c", "0", *cmd]
        t0 = time.monotonic()
        try:
            p = subprocess.run(full, stdout=out, stderr=subprocess.PIPE, timeout=timeout)
            code = p.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        wall = time.monotonic() - t0
        rss = 0.0
        for line in tf.read().splitlines():
            if "Maximum resident set size" in line:
                rss = int(line.split(":")[1]) / 1024
    return wall, rss, code


def export(users, seed, work):
    data = work / "export"
    truth = work / "truth.json"
    stamp = work / "export.done"
    want = f"{users} {seed}"
    if stamp.exists() and stamp.read_text() == want and truth.exists():
        return data, truth
    shutil.rmtree(data, ignore_errors=True)
    t0 = time.monotonic()
    subprocess.run([str(BIN / "leakscope-labgen"), "export", "--users", str(users), "--seed", str(seed),
                    "--out", str(data)], check=True)
    # The truth is not data: keep it beside the export so every tool reads the same files.
    shutil.move(str(data / "truth.json"), truth)
    stamp.write_text(want)
    print(f"exported {users} users in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    return data, truth


def file_of(layout, container):
    c = container[:-2] if container.endswith(":*") else container
    return f"{layout}/{c.replace(':', '.')}.jsonl"


def leakscope_vs_truth(report, truth, data):
    """Per category TP/FP/FN over fields, and container categories per file."""
    want = {}
    for layout, containers in truth["layouts"].items():
        for c in containers:
            want[file_of(layout, c["name"])] = {f["path"]: set(f["categories"]) for f in c["fields"]}
    table = collections.defaultdict(lambda: [0, 0, 0])
    per_file = {}
    problems = []
    for f in report["files"]:
        rel = os.path.relpath(f["path"], data)
        got = {x["path"]: set(x["categories"]) for x in f["container"]["fields"]}
        t = want.get(rel, {})
        for path in set(t) | set(got):
            w, g = t.get(path, set()), got.get(path, set())
            for c in w | g:
                table[c][0 if (c in w and c in g) else (1 if c in g else 2)] += 1
            if w != g:
                problems.append(f"{rel} {path}: truth {sorted(w)} found {sorted(g)}")
        per_file[rel] = (f["container"]["records"], f["container"]["categories"],
                         sorted({c for v in t.values() for c in v}))
    return table, per_file, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=170_000)
    ap.add_argument("--seed", type=int, default=20191204)
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "leakscope-bench" / "classify")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per tool")
    ap.add_argument("--skip", default="", help="comma-separated tools not to run (trufflehog, pdscan)")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    a.work.mkdir(parents=True, exist_ok=True)
    data, truth_path = export(a.users, a.seed, a.work)
    truth = json.loads(truth_path.read_text())
    files = sorted(data.rglob("*.jsonl"))
    size = sum(f.stat().st_size for f in files)
    lines = 0
    for f in files:
        with open(f, "rb") as fh:
            lines += sum(1 for _ in fh)
    print(f"{len(files)} files, {size / 1e6:.0f} MB, {lines:,} lines", file=sys.stderr, flush=True)

    runs = {}
    out = a.work / "leakscope.json"
    runs["leakscope"] = timed([str(BIN / "leakscope"), "classify", str(data), "--threads", "1",
                               "--format", "json", "-o", str(out)], a.work / "leakscope.stdout", a.timeout)
    print(f"leakscope: {runs['leakscope']}", file=sys.stderr, flush=True)
    if "trufflehog" not in skip:
        th = tool("trufflehog", "TRUFFLEHOG")
        runs["trufflehog"] = timed([th, "filesystem", "--no-verification", "--no-update", "--json",
                                    "--concurrency", "1", str(data)], a.work / "trufflehog.jsonl", a.timeout)
        print(f"trufflehog: {runs['trufflehog']}", file=sys.stderr, flush=True)
    if "pdscan" not in skip:
        pd = tool("pdscan", "PDSCAN")
        runs["pdscan"] = timed([pd, f"file://{data}/", "--processes", "1", "--sample-size", "1000000000",
                                "--format", "ndjson"], a.work / "pdscan.ndjson", a.timeout)
        print(f"pdscan: {runs['pdscan']}", file=sys.stderr, flush=True)

    # What each found.
    report = json.loads(out.read_text())
    table, per_file, problems = leakscope_vs_truth(report, truth, data)
    th_found = collections.Counter()
    th_files = collections.defaultdict(set)
    if "trufflehog" in runs:
        for line in (a.work / "trufflehog.jsonl").read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "DetectorName" in r:
                th_found[r["DetectorName"]] += 1
                fpath = r.get("SourceMetadata", {}).get("Data", {}).get("Filesystem", {}).get("file", "")
                th_files[r["DetectorName"]].add(os.path.relpath(fpath, data) if fpath else "?")
    pd_found = collections.defaultdict(list)
    if "pdscan" in runs:
        for line in (a.work / "pdscan.ndjson").read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            pd_found[os.path.relpath(r["identifier"], data)].append(f"{r['name']} ({r['confidence']})")

    mb = size / 1e6
    print(f"### Classifier throughput vs trufflehog and pdscan ({time.strftime('%Y-%m-%d')})\n")
    print(f"Lab export of {a.users:,} users (seed {a.seed}): {len(files)} JSON-lines files, "
          f"{mb:,.0f} MB, {lines:,} lines. Each tool pinned to one core (`taskset -c 0`), "
          f"same files, same run; MB/s = input bytes / wall seconds.\n")
    print("| tool | wall | MB/s | peak RSS | exit | ratio (tool / leakscope) |")
    print("|---|---|---|---|---|---|")
    base = runs["leakscope"][0]
    for name, (wall, rss, code) in runs.items():
        print(f"| {name} | {wall:.1f} s | {mb / wall:.1f} | {rss:.0f} MB | {code} | {wall / base:.2f}x |")
    tp = sum(v[0] for v in table.values())
    fp = sum(v[1] for v in table.values())
    fn = sum(v[2] for v in table.values())
    print(f"\n**leakscope** (every record, {report['stats']['records']:,} records): field-level against the "
          f"truth {tp} TP, {fp} FP, {fn} FN over {len(table)} categories.\n")
    print("| category | TP | FP | FN |")
    print("|---|---|---|---|")
    for c in sorted(table):
        print(f"| {c} | {table[c][0]} | {table[c][1]} | {table[c][2]} |")
    for p in problems[:20]:
        print(f"- {p}")
    print("\n| file | records | leakscope categories | truth categories |")
    print("|---|---|---|---|")
    for rel, (recs, got, want) in sorted(per_file.items()):
        mark = "" if sorted(got) == want else " **≠**"
        print(f"| {rel} | {recs:,} | {', '.join(got) or '-'} | {', '.join(want) or '-'}{mark} |")
    if "trufflehog" in runs:
        print(f"\n**trufflehog** ({sum(th_found.values()):,} findings):\n")
        print("| detector | findings | files |")
        print("|---|---|---|")
        for d, n in th_found.most_common():
            print(f"| {d} | {n:,} | {', '.join(sorted(th_files[d])[:6])}{' …' if len(th_files[d]) > 6 else ''} |")
        if not th_found:
            print("| (none) | 0 | |")
    if "pdscan" in runs:
        print("\n**pdscan** (rules matched per file):\n")
        print("| file | rules |")
        print("|---|---|")
        for rel in sorted(pd_found):
            print(f"| {rel} | {', '.join(pd_found[rel])} |")
    print(f"\nCommand: `python3 bench/classify_vs_peers.py --users {a.users}` (release build; outputs kept in "
          f"`{a.work}`).")
    (a.work / "results.json").write_text(json.dumps({
        "users": a.users, "bytes": size, "lines": lines, "runs": runs,
        "leakscope_table": table, "trufflehog": th_found, "pdscan": pd_found}, indent=1, default=list))


if __name__ == "__main__":
    main()
