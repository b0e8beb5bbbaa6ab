"""Scope containment, proven on the wire: a packet capture on the loopback device during a scan
shows zero connection attempts (SYNs) to excluded addresses, to addresses outside the scope, and
to the peers a server advertised.

The advertising server is a real Redis master with a real replica whose announced address
(`replica-announce-ip`) is an address where nothing runs: only a scanner that followed the
master's INFO would ever send a SYN there. The replica itself is outside the scope too.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from conftest import BINARY, lab, lab_net

MASTER = lab_net(14, 1)
REPLICA = lab_net(14, 2)
ANNOUNCED = lab_net(13, 9)
EXCLUDED = lab_net(10, 4)  # the lab's open Redis: nothing but a scanner ever connects to it
PROBE_NET = f"{lab.NET}.15.0/28"  # nothing listens here: the capture's positive control


def start(args, d):
    return subprocess.Popen(["/usr/bin/redis-server", "--save", "", "--appendonly", "no", "--dir", d,
                             "--protected-mode", "no", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_no_syn_leaves_the_scope():
    assert shutil.which("tcpdump"), "tcpdump is installed by lab/up"
    d = tempfile.mkdtemp()
    procs = []
    cap = None
    try:
        procs.append(start(["--bind", MASTER, "--port", "6379"], d))
        os.makedirs(d + "/r")
        procs.append(start(["--bind", REPLICA, "--port", "6379", "--replicaof", MASTER, "6379",
                            "--replica-announce-ip", ANNOUNCED], d + "/r"))
        master = lab.Service("t-master", "redis", MASTER, 6379, "open", "small")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if f"ip={ANNOUNCED}".encode() in lab.resp_cmd(master, "INFO", "replication"):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("replica did not attach")

        pcap = os.path.join(d, "syn.pcap")
        filt = f"tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0 and (dst host {ANNOUNCED} or dst host {REPLICA} or dst host {EXCLUDED} or dst net {lab.NET}.15.0/24)"
        cap = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-U", "-w", pcap, filt], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        time.sleep(1.0)  # tcpdump is listening
        env = {**os.environ, "LEAKSCOPE_LOOPBACK_ONLY": "1"}
        out = subprocess.run([str(BINARY), "scan", MASTER, lab_net(10), PROBE_NET, "--exclude", EXCLUDED,
                              "--no-store", "--no-inventory", "--quiet", "--format", "json"], capture_output=True, text=True, env=env,
                             timeout=600)
        assert out.returncode in (0, 1), out.stderr
        time.sleep(1.0)
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=10)
        report = json.loads(out.stdout)
        svc = next(s for s in report["services"] if s["address"] == MASTER)
        assert f"{ANNOUNCED}:6379" in svc["out_of_scope_peers"], svc
        assert all(s["address"] != EXCLUDED for s in report["services"])

        # Positive control: the capture does see SYNs to the scanned in-scope net PROBE_NET
        # (nothing listens there, so each probe is one SYN and a RST).
        read = subprocess.run(["tcpdump", "-n", "-r", pcap], capture_output=True, text=True)
        lines = read.stdout.splitlines()
        in_scope = [l for l in lines if f"> {lab.NET}.15." in l]
        leaked = [l for l in lines if f"> {ANNOUNCED}." in l or f"> {REPLICA}." in l or f"> {EXCLUDED}." in l]
        assert len(in_scope) >= 16, f"capture works ({len(in_scope)} SYNs to the in-scope probe net)"
        assert not leaked, f"SYNs outside the scope: {leaked[:5]}"
    finally:
        if cap and cap.poll() is None:
            cap.kill()
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)
