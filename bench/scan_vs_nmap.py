#!/usr/bin/env python3
"""Benchmark: leakscope scan vs `nmap -sV -Pn` on the lab, in the same run, same targets and ports.

Targets: the lab's three /24 networks (12 live services, 756 empty loopback addresses) over
leakscope's default port list plus the two non-standard lab ports. Prints a Markdown section
(wall-time ratio, peak RSS, each tool's identification table against lab/manifest.json) for
bench/RESULTS.md. With --sixteen it also scans an empty loopback /16 with leakscope alone and
records its peak RSS.

Only 127.0.0.0/8 is ever scanned: the script refuses anything else.
"""

import argparse
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "leakscope"
# The lab's three networks, in the lab's own loopback net (lab/manifest.json's `net`).
NETS = []


def loopback_only(targets):
    for t in targets:
        net = ipaddress.ip_network(t, strict=False)
        if not (net.network_address.is_loopback and net.broadcast_address.is_loopback):
            sys.exit(f"refusing non-loopback target {t}")


def timed(cmd, env=None):
    """Runs cmd under GNU time; returns (seconds, peak RSS in MB, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.monotonic()
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name, *cmd], capture_output=True, text=True,
                             env=env)
        wall = time.monotonic() - t0
        rss_kb = int(tf.read().strip().splitlines()[-1])
    if out.returncode not in (0, 1):
        sys.exit(f"{cmd[0]} failed ({out.returncode}): {out.stderr[-2000:]}")
    return wall, rss_kb / 1024, out.stdout


def ports():
    """leakscope's default port list, as its --help states it (the registry's ports)."""
    help_text = subprocess.run([str(BIN), "scan", "--help"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Default ports: ([0-9,]+)", help_text)
    assert m, "scan --help names the default ports"
    return [int(p) for p in m.group(1).split(",")]


def main():
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--sixteen", action="store_true", help="also scan an empty loopback /16 (peak RSS)")
    ap.add_argument("--bin", default=str(BIN), help="the leakscope binary (default: the release build)")
    args = ap.parse_args()
    BIN = Path(args.bin)
    manifest = json.loads((ROOT / "lab" / "manifest.json").read_text())
    NETS.extend(f"{manifest.get('net', '127.0')}.{n}.0/24" for n in (10, 11, 12))
    loopback_only(NETS)
    plist = ports()
    for s in manifest["services"]:
        if s["port"] not in plist:
            plist.append(s["port"])
    pstr = ",".join(map(str, plist))
    env = dict(os.environ, LEAKSCOPE_LOOPBACK_ONLY="1")

    ls_wall, ls_rss, ls_out = timed([str(BIN), "scan", *NETS, "-p", pstr, "--format", "json", "--quiet"], env)
    ls = {(s["address"], s["port"]): s for s in json.loads(ls_out)["services"]}

    with tempfile.NamedTemporaryFile(suffix=".xml") as xf:
        nm_wall, nm_rss, _ = timed(["nmap", "-sV", "-Pn", "-n", "-p", pstr, "-oX", xf.name, *NETS])
        root = ET.parse(xf.name).getroot()
    nm = {}
    for host in root.iter("host"):
        addr = host.find("address").get("addr")
        for port in host.iter("port"):
            if port.find("state").get("state") != "open":
                continue
            svc = port.find("service")
            desc = "-" if svc is None else " ".join(
                x for x in (svc.get("name"), svc.get("product"), svc.get("version")) if x)
            nm[(addr, int(port.get("portid")))] = desc

    print(f"### scan v1 vs nmap -sV -Pn ({time.strftime('%Y-%m-%d')}, lab with {manifest['users']} users)\n")
    print(f"Targets: {' '.join(NETS)} ({3 * 256} addresses, {len(manifest['services'])} live services), "
          f"ports {pstr}.\n")
    print("| tool | wall time | peak RSS | services found | lab services identified |")
    print("|---|---|---|---|---|")
    ls_ok = sum(1 for s in manifest["services"]
                if (got := ls.get((s["address"], s["port"]))) and got["protocol"] == s["protocol"]
                and got["product"] == s["product"])
    print(f"| leakscope | {ls_wall:.2f} s | {ls_rss:.0f} MB | {len(ls)} | {ls_ok}/{len(manifest['services'])} |")
    print(f"| nmap -sV -Pn | {nm_wall:.2f} s | {nm_rss:.0f} MB | {len(nm)} | see table |")
    print(f"\n**Wall-time ratio nmap / leakscope: {nm_wall / ls_wall:.1f}x**\n")
    print("| lab service | truth | leakscope | nmap -sV |")
    print("|---|---|---|---|")
    for s in manifest["services"]:
        key = (s["address"], s["port"])
        got = ls.get(key)
        lsd = f"{got['protocol']} {got['product'] or ''} {got['version'] or ''} / {got['access']}" if got else "MISSED"
        print(f"| {s['name']} {key[0]}:{key[1]} | {s['protocol']} {s['product']} / {s['access_without_defaults']} "
              f"| {lsd} | {nm.get(key, 'MISSED')} |")
    extra = sorted(set(ls) - {(s['address'], s['port']) for s in manifest['services']})
    print(f"\nExtra services reported by leakscope: {extra or 'none'}")
    print("\nCommand: `python3 bench/scan_vs_nmap.py" + (" --sixteen" if args.sixteen else "") + "`")

    if args.sixteen:
        net = "127.1.0.0/16"
        loopback_only([net])
        wall, rss, out = timed([str(BIN), "scan", net, "--format", "json", "--quiet"], env)
        st = json.loads(out)["stats"]
        print(f"\n### Empty loopback /16 ({net}), default ports\n")
        print(f"{st['addresses']} addresses x {len(ports())} ports = {st['ports_probed']} endpoints in "
              f"{wall:.1f} s; **peak RSS {rss:.1f} MB**; {st['services']} services.")


if __name__ == "__main__":
    main()
