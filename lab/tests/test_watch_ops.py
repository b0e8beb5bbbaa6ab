"""Operating `leakscope watch`: e-mail alerts through a real SMTP server (aiosmtpd), flapping
reported once, SIGHUP reloads (a bad config refused and the old one kept), SIGTERM in the middle
of a step exits 0 within 10 s, /metrics and /healthz, --check-config, and alert destinations
confined to loopback under LEAKSCOPE_LOOPBACK_ONLY.
"""

import email
import email.policy
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

import watchkit as wk


@pytest.fixture()
def redis():
    s = wk.Redis(wk.addr(24, 1))
    yield s
    s.stop()


class Mailbox:
    """aiosmtpd's handler: keeps every message it accepts."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def test_an_exposure_is_mailed_through_a_real_smtp_server(tmp_path, redis):
    from aiosmtpd.controller import Controller

    host = wk.addr(24, 250)
    port = wk.free_port(host)
    box = Mailbox()
    smtp = Controller(box, hostname=host, port=port)
    smtp.start()
    routes = (f'[route.mail]\nsmtp = {{ server = "{host}", port = {port}, tls = "none", '
              f'from = "leakscope@example.com", to = ["security@example.com", "dpo@example.com"] }}\n')
    w = wk.Watcher(tmp_path, wk.config([redis.endpoint], routes))
    try:
        wk.wait_for(lambda: w.known().get(redis.endpoint) == "protected", 30, "the first sweep")
        redis.open()
        wk.wait_for(lambda: box.messages, 40, "an e-mail")
        mail_from, rcpt, content = box.messages[0]
        assert mail_from == "leakscope@example.com"
        assert sorted(rcpt) == ["dpo@example.com", "security@example.com"]
        msg = email.message_from_bytes(content, policy=email.policy.default)
        assert msg["Subject"] == f"[leakscope] EXPOSED critical: Redis 7.0.15 at {redis.endpoint}" or \
            msg["Subject"].startswith("[leakscope] EXPOSED critical: Redis"), msg["Subject"]
        body = msg.get_content()
        key = msg["Message-ID"].strip("<>").split("@")[0]
        assert len(key) == 32 and key in body
        assert "identity.email" in body and "credential.api_token" in body and "Revoke:" in body
        assert "•" in body  # masked examples
        for v in wk.raw_values(redis.rows):
            assert v not in content.decode("utf-8", "replace") and v not in body
        assert w.stop() == 0
    finally:
        wk.stop_pid(w.proc)
        smtp.stop()


def test_flapping_is_one_alert_not_one_per_flip(tmp_path, redis):
    rx = wk.Receiver(wk.addr(24, 251), wk.free_port(wk.addr(24, 251)))
    tuning = 'confirm_closed = 1\nflap_changes = 4\nflap_window = "10m"\n'
    w = wk.Watcher(tmp_path, wk.config([redis.endpoint], f'[route.hook]\nwebhook = "{rx.url}"\n',
                                       interval="500ms", tuning=tuning))
    try:
        wk.wait_for(lambda: w.known().get(redis.endpoint) == "protected", 30, "the first sweep")
        for _ in range(4):  # eight changes
            redis.open()
            wk.wait_for(lambda: w.known().get(redis.endpoint) == "exposed", 30, "exposed")
            redis.close()
            wk.wait_for(lambda: w.known().get(redis.endpoint) in ("protected", "unreachable"), 30, "closed")
        time.sleep(3)
        kinds = [a["kind"] for a in rx.alerts()]
        assert kinds == ["exposed", "closed", "exposed", "flapping"], kinds
        flap = rx.alerts("flapping")[0]
        assert "open/closed changes within 10m" in flap["details"][0], flap["details"]
        # The store kept every window all the while.
        history = w.run("history", redis.endpoint).stdout
        windows = [l for l in history.splitlines() if l.startswith(f"{redis.endpoint}: open for")]
        assert len(windows) == 4, history
    finally:
        wk.stop_pid(w.proc)
        rx.down()


def metrics(addr: str) -> str:
    return urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()


def test_sighup_reload_refuses_a_bad_config_and_applies_a_good_one(tmp_path, redis):
    rx1 = wk.Receiver(wk.addr(24, 252), wk.free_port(wk.addr(24, 252)))
    rx2 = wk.Receiver(wk.addr(24, 253), wk.free_port(wk.addr(24, 253)))
    maddr = f"{wk.addr(24, 254)}:{wk.free_port(wk.addr(24, 254))}"
    # TOML wants top-level keys first.
    good = f'metrics = "{maddr}"\n' + wk.config([redis.endpoint], f'[route.one]\nwebhook = "{rx1.url}"\n')
    w = wk.Watcher(tmp_path, good)
    try:
        wk.wait_for(lambda: w.known().get(redis.endpoint) == "protected", 30, "the first sweep")
        wk.wait_for(lambda: urllib.request.urlopen(f"http://{maddr}/healthz", timeout=5).status == 200, 20, "healthz")
        text = metrics(maddr)
        assert 'leakscope_watch_endpoints{group="flip",state="protected"} 1' in text, text
        assert 'leakscope_watch_cycles_total{group="flip",kind="recheck"}' in text

        # A config with a syntax error, then one whose webhook would leave the machine: refused.
        for bad in ("[[group]\nname = ", good.replace(rx1.url, "https://hooks.example.com/x")):
            w.config.write_text(bad)
            w.proc.send_signal(signal.SIGHUP)
            wk.wait_for(lambda: w.logged("configuration reload refused"), 20, "the refusal in the log")
        assert w.proc.poll() is None, "a bad config does not stop the watcher"
        wk.wait_for(lambda: 'leakscope_watch_config_reloads_total{result="refused"} 2' in metrics(maddr), 10,
                    "two refusals counted")
        assert any("not a loopback address" in json.dumps(e) for e in w.logs())

        # The old config still alerts route one only; a good new config adds route two.
        w.config.write_text(good + f'[route.two]\nwebhook = "{rx2.url}"\n')
        w.proc.send_signal(signal.SIGHUP)
        wk.wait_for(lambda: w.logged("configuration reloaded"), 20, "the reload")
        redis.open()
        wk.wait_for(lambda: rx1.alerts("exposed") and rx2.alerts("exposed"), 40, "both routes alerted")
        assert rx1.alerts("exposed")[0]["idempotency_key"] == rx2.alerts("exposed")[0]["idempotency_key"]
        assert 'leakscope_watch_config_reloads_total{result="applied"} 1' in metrics(maddr)
        wk.wait_for(lambda: 'leakscope_watch_alerts_delivered_total{route="two"} 1' in metrics(maddr), 10,
                    "the delivery counted")
    finally:
        wk.stop_pid(w.proc)
        rx1.down()
        rx2.down()


class Tarpit:
    """Accepts connections and never answers: every re-check of it runs into its deadlines."""

    def __init__(self, address: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(64)
        self.endpoint = f"{address}:{self.sock.getsockname()[1]}"
        self.conns = []
        self.stopped = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                return

    def stop(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


def test_sigterm_in_the_middle_of_a_step_exits_0_within_10_seconds(tmp_path, redis):
    pit = Tarpit(wk.addr(24, 2))
    w = wk.Watcher(tmp_path, wk.config([redis.endpoint, pit.endpoint], "", interval="1s"))
    try:
        wk.wait_for(lambda: len(w.known()) == 2, 60, "both endpoints known (the tarpit after its deadline)")
        time.sleep(2)  # a re-check is running: the tarpit holds it for its service deadline
        t0 = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        code = w.proc.wait(timeout=15)
        took = time.monotonic() - t0
        assert code == 0
        assert took < 10, f"exit took {took:.1f}s"
        assert w.logged("watch stopped")
    finally:
        wk.stop_pid(w.proc)
        pit.stop()


def test_check_config(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(wk.config([f"{wk.addr(25, 0)}/24"], '[route.x]\nwebhook = "http://127.0.0.1:9/x"\n'))
    out = subprocess.run([str(wk.BINARY), "watch", "--check-config", str(good)], capture_output=True, text=True,
                         env=wk.ENV)
    assert out.returncode == 0, out.stderr
    assert "configuration OK" in out.stdout and "group flip:" in out.stdout
    assert "route x: webhook" in out.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[[group]]\nname = "a"\ntargets = ["127.0.0.1"]\nintervall = "5s"\n')
    out = subprocess.run([str(wk.BINARY), "watch", "--check-config", str(bad)], capture_output=True, text=True,
                         env=wk.ENV)
    assert out.returncode == 2
    assert "intervall" in out.stderr and "line 4" in out.stderr, out.stderr
    # Under LEAKSCOPE_LOOPBACK_ONLY neither targets nor alert destinations may leave the machine.
    for text, why in ((good.read_text().replace(wk.addr(25, 0), "10.0.0.0"), "not a loopback address"),
                      (good.read_text().replace("127.0.0.1:9", "192.0.2.1"), "not a loopback address")):
        bad.write_text(text)
        out = subprocess.run([str(wk.BINARY), "watch", "--check-config", str(bad)], capture_output=True, text=True,
                             env=wk.ENV)
        assert out.returncode == 2 and why in out.stderr, out.stderr


def luhn_card(n: int) -> str:
    """A Luhn-valid 16-digit card number (synthetic)."""
    body = [int(c) for c in f"4{n:014d}"]
    total = 0
    for i, d in enumerate(reversed(body)):
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return "".join(map(str, body)) + str((10 - total % 10) % 10)


def test_changed_and_new_service_are_alerted(tmp_path, redis):
    """An exposed store that starts holding card numbers raises `changed` at its next
    inventory; a store that appears in the scope after the first sweep raises `new_service`."""
    rx = wk.Receiver(wk.addr(24, 249), wk.free_port(wk.addr(24, 249)))
    later = wk.addr(24, 3)
    group = 'inventory_interval = "3s"'
    cfg = wk.config([redis.endpoint, f"{later}:6379"], f'[route.hook]\nwebhook = "{rx.url}"\n', extra_group=group)
    cfg = cfg.replace('sweep_interval = "1h"', 'sweep_interval = "3s"')
    w = wk.Watcher(tmp_path, cfg)
    newcomer = None
    try:
        wk.wait_for(lambda: w.known().get(redis.endpoint) == "protected", 30, "the first sweep")
        redis.open()
        wk.wait_for(lambda: rx.alerts("exposed"), 40, "exposed")
        assert "financial.card" not in rx.alerts("exposed")[0]["categories"]
        cards = "".join(f"SET payment:{i} '{{\"card_number\": \"{luhn_card(i)}\", \"holder\": \"Maria Bianchi{i}\"}}'\n"
                        for i in range(100))
        subprocess.run(["redis-cli", "-h", redis.address, "-p", str(redis.port)], input=cards, text=True, check=True,
                       capture_output=True)
        wk.wait_for(lambda: rx.alerts("changed"), 40, "changed")
        [c] = rx.alerts("changed")
        assert any("new categories" in d and "financial.card" in d for d in c["details"]), c["details"]
        assert any("new container" in d for d in c["details"]), c["details"]
        assert "financial.card" in c["categories"] and c["severity"] == "critical"
        assert all(luhn_card(i) not in json.dumps(c) for i in range(100)), "no raw card number"

        newcomer = wk.Redis(later)
        wk.wait_for(lambda: rx.alerts("new_service"), 40, "new_service")
        [n] = rx.alerts("new_service")
        assert n["endpoint"] == newcomer.endpoint and n["access"] == "auth_required"
        assert n["summary"].startswith("NEW SERVICE: Redis"), n["summary"]
        assert [a["kind"] for a in rx.alerts()] == ["exposed", "changed", "new_service"]
    finally:
        wk.stop_pid(w.proc)
        rx.down()
        if newcomer:
            newcomer.stop()


def test_https_webhook_checks_the_certificate_and_trusts_a_route_ca_file(tmp_path, redis):
    host = wk.addr(24, 248)
    (tmp_path / "tls").mkdir()
    ca, chain, key = wk.make_ca(tmp_path / "tls", host)
    rx = wk.Receiver(host, wk.free_port(host), tls=(chain, key))
    routes = (f'[route.trusted]\nwebhook = "{rx.url}"\nca_file = "{ca}"\n'
              f'[route.untrusted]\nwebhook = "{rx.url.replace("/hook", "/other")}"\n')
    w = wk.Watcher(tmp_path, wk.config([redis.endpoint], routes))
    try:
        wk.wait_for(lambda: w.known().get(redis.endpoint) == "protected", 30, "the first sweep")
        redis.open()
        wk.wait_for(lambda: rx.alerts("exposed"), 40, "the alert over HTTPS")
        assert {r["path"] for r in rx.requests} == {"/hook"}
        # Without the CA the same server is refused: its certificate is not from a public root.
        wk.wait_for(lambda: any(e.get("route") == "untrusted" and "certificate" in str(e.get("error", "")).lower()
                                for e in w.logs()), 30, "the refused certificate in the log")
        assert {r["path"] for r in rx.requests} == {"/hook"}
    finally:
        wk.stop_pid(w.proc)
        rx.down()
