#!/usr/bin/env python3
"""Benchmark: identification on non-standard ports, and leakscope vs `nmap -sV -Pn` on the fleet.

Needs the fleet (`python3 bench/fleet.py up`: one real server of every protocol, each on a port
no protocol claims). Prints a Markdown section for bench/RESULTS.md:

1. per protocol, the time leakscope takes to identify the one fleet server and judge its access
   (`scan ADDRESS:PORT --no-inventory`, the scan's own `duration_ms`, median of --runs);
2. one scan of the fleet's /27 (32 addresses) on the fleet's ports by leakscope (default mode:
   identify, inventory, classify) and by nmap -sV -Pn, same run, same targets and ports.

Only 127.0.0.0/8 is ever scanned: the script refuses anything else.
"""

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from scan_vs_nmap import timed  # noqa: E402


def loopback_only(target):
    net = ipaddress.ip_network(target.split(":")[0] if "/" not in target else target, strict=False)
    if not (net.network_address.is_loopback and net.broadcast_address.is_loopback):
        sys.exit(f"refusing non-loopback target {target}")


def fleet():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "fleet.py"), "targets"], capture_output=True,
                         text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        endpoint, protocol, product = line.split()
        loopback_only(endpoint)
        rows.append((endpoint, protocol, product))
    return rows


def scan_json(binary, args, env):
    out = subprocess.run([binary, "scan", *args, "--no-store", "--format", "json", "--quiet"], capture_output=True,
                         text=True, env=env)
    if out.returncode not in (0, 1):
        sys.exit(f"leakscope failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "leakscope"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    env = dict(os.environ, LEAKSCOPE_LOOPBACK_ONLY="1")
    rows = fleet()

    print(f"### Identification on non-standard ports ({time.strftime('%Y-%m-%d')}{', ' + args.label if args.label else ''})\n")
    print("| fleet server | truth | identified as | access | identification (median of "
          f"{args.runs}) | slowest |")
    print("|---|---|---|---|---|---|")
    for endpoint, protocol, product in rows:
        times, got = [], None
        for _ in range(args.runs):
            report = scan_json(args.bin, [endpoint, "--no-inventory"], env)
            times.append(report["stats"]["duration_ms"])
            got = report["services"][0] if report["services"] else None
        ident = f"{got['protocol']} {got['product'] or ''}" if got else "MISSED"
        access = got["access"] if got else "-"
        print(f"| {endpoint} | {protocol} {product} | {ident} | {access} | {statistics.median(times):.0f} ms "
              f"| {max(times):.0f} ms |")

    net = str(ipaddress.ip_network(rows[0][0].split(":")[0] + "/27", strict=False))
    loopback_only(net)
    ports = ",".join(sorted({e.split(":")[1] for e, _, _ in rows}, key=int))
    ls_wall, ls_rss, ls_out = timed([args.bin, "scan", net, "-p", ports, "--no-store", "--format", "json",
                                     "--quiet"], env)
    ls = {(s["address"], s["port"]): s for s in json.loads(ls_out)["services"]}
    with tempfile.NamedTemporaryFile(suffix=".xml") as xf:
        nm_wall, nm_rss, _ = timed(["nmap", "-sV", "-Pn", "-n", "-p", ports, "-oX", xf.name, net])
        root = ET.parse(xf.name).getroot()
    nm = {}
    for host in root.iter("host"):
        addr = host.find("address").get("addr")
        for port in host.iter("port"):
            if port.find("state").get("state") != "open":
                continue
            svc = port.find("service")
            nm[(addr, int(port.get("portid")))] = "-" if svc is None else " ".join(
                x for x in (svc.get("name"), svc.get("product"), svc.get("version")) if x)

    print(f"\n### leakscope scan vs nmap -sV -Pn on the fleet ({time.strftime('%Y-%m-%d')}"
          f"{', ' + args.label if args.label else ''})\n")
    print(f"Targets: {net} (32 addresses, {len(rows)} live servers), ports {ports}.\n")
    print("| tool | wall time | peak RSS | services found |")
    print("|---|---|---|---|")
    print(f"| leakscope scan | {ls_wall:.2f} s | {ls_rss:.0f} MB | {len(ls)} |")
    print(f"| nmap -sV -Pn | {nm_wall:.2f} s | {nm_rss:.0f} MB | {len(nm)} |")
    print(f"\n**Wall-time ratio nmap / leakscope: {nm_wall / ls_wall:.1f}x**\n")
    print("| fleet server | truth | leakscope | nmap -sV |")
    print("|---|---|---|---|")
    for endpoint, protocol, product in rows:
        addr, port = endpoint.split(":")
        got = ls.get((addr, int(port)))
        lsd = f"{got['protocol']} {got['product'] or ''} {got['version'] or ''} / {got['access']}" if got else "MISSED"
        print(f"| {endpoint} | {protocol} {product} | {lsd} | {nm.get((addr, int(port)), 'MISSED')} |")
    print(f"\nCommands: `python3 bench/fleet.py up`, then `python3 bench/identify_fleet.py` "
          f"(release build; `leakscope scan {net} -p {ports} --no-store --format json --quiet` and "
          f"`nmap -sV -Pn -n -p {ports} -oX FILE {net}`), then `python3 bench/fleet.py down`.")


if __name__ == "__main__":
    main()
