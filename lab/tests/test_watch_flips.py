"""`leakscope watch` against real flips: a protected store is made readable by the test (never by
leakscope) and must raise `exposed` with what it exposes, then `closed` when flipped back, with
the exposure window in the store, in `history` and in the report.

- Redis protected by requirepass, restarted without it (and back);
- PostgreSQL with pg_hba.conf switched from scram-sha-256 to trust and reloaded (and back);
- MariaDB whose root password is removed (and set again), watched with try_defaults.

Every alert is checked for what the issue asks (endpoint, product, access, evidence, severity,
categories, people, a link-free summary, an idempotency key) and for what it must never hold:
a raw value of the seeded data.
"""

import json
import subprocess

import pytest

import watchkit as wk

FLIP_TIMEOUT = 40  # interval 1s: an exposure is seen within ~2s plus its inventory


def check_exposed(a: dict, endpoint: str, access: str, product: str):
    assert a["schema"] == "leakscope.alert/v1"
    assert a["endpoint"] == endpoint
    assert a["access"] == access, a
    assert a["product"] == product, a
    assert a["evidence"], a
    assert a["severity"] == "critical", a  # API tokens in the sample
    assert {"identity.email", "credential.api_token"} <= set(a["categories"]), a["categories"]
    assert a["people"] and 250 <= a["people"] <= 350, (a["people"], a["people_method"])
    assert any(r["category"] == "credential.api_token" and r["fingerprints"] > 0 for r in a["revoke"]), a["revoke"]
    assert len(a["idempotency_key"]) == 32
    assert "://" not in a["summary"] and a["summary"].startswith("EXPOSED (critical)")
    assert a["exposure"]["first_seen_open"] and a["exposure"]["closed_at"] is None
    examples = [e for c in a["containers"] for f in c["fields"] for e in f["examples"]]
    assert examples and all("•" in e for e in examples), examples


def check_no_raw_values(text: str, rows: list[dict]):
    for v in wk.raw_values(rows):
        assert v not in text, f"raw value {v[:6]}… leaked"


def flip_test(tmp_path, server, access, product, extra_group="", route_extra=""):
    rx = wk.Receiver(wk.addr(20, 250), wk.free_port(wk.addr(20, 250)))
    routes = (f'[route.hook]\nwebhook = "{rx.url}"\n{route_extra}\n'
              f'[route.slack]\nwebhook = "{rx.url.replace("/hook", "/slack")}"\nformat = "slack"\n')
    w = wk.Watcher(tmp_path, wk.config([server.endpoint], routes, extra_group=extra_group))
    try:
        # The first sweep knows it as protected: a baseline new_service, recorded, not alerted.
        wk.wait_for(lambda: w.known().get(server.endpoint) == "protected", 30, "the first sweep")
        assert rx.requests == []
        server.open()
        wk.wait_for(lambda: rx.alerts("exposed", server.endpoint), FLIP_TIMEOUT, "an exposed alert")
        [a] = rx.alerts("exposed")
        check_exposed(a, server.endpoint, access, product)
        assert a["previous_access"] == "auth_required"
        hook = [r for r in rx.requests if r["path"] == "/hook"]
        headers = {k.lower(): v for k, v in hook[0]["headers"].items()}
        assert headers["idempotency-key"] == a["idempotency_key"]
        wk.wait_for(lambda: [r for r in rx.requests if r["path"] == "/slack"], 10, "the slack alert")
        slack = [json.loads(r["body"]) for r in rx.requests if r["path"] == "/slack"]
        assert set(slack[0]) == {"text"} and "EXPOSED" in slack[0]["text"], slack

        server.close()
        wk.wait_for(lambda: rx.alerts("closed", server.endpoint), FLIP_TIMEOUT, "a closed alert")
        [c] = rx.alerts("closed")
        assert c["access"] in ("auth_required", None), c
        assert c["severity"] == "critical", "a closed alert keeps the severity it had while open"
        x = c["exposure"]
        assert x["closed_at"] and x["first_seen_open"] == a["exposure"]["first_seen_open"], x
        assert x["open_for_seconds"] >= 0
        assert c["idempotency_key"] != a["idempotency_key"]

        for r in rx.requests:
            check_no_raw_values(r["body"], server.rows)
        history = w.run("history", server.endpoint).stdout
        assert "open for" in history and "closed at" in history, history
        assert "exposed" in history and "closed" in history
        report = w.run("report", a["scan_id"]).stdout
        assert "open for" in report, report
        check_no_raw_values(report, server.rows)
        assert w.stop() == 0
        assert len(rx.alerts()) == 2, [x["kind"] for x in rx.alerts()]
    finally:
        wk.stop_pid(w.proc)
        rx.down()


@pytest.fixture()
def redis():
    s = wk.Redis(wk.addr(21, 1))
    yield s
    s.stop()


def test_redis_restarted_without_requirepass_is_exposed_then_closed(tmp_path, redis):
    flip_test(tmp_path, redis, "open", "Redis")


def test_postgres_pg_hba_switched_to_trust_is_exposed_then_closed(tmp_path):
    pg = wk.Postgres(wk.addr(22, 1))
    try:
        flip_test(tmp_path, pg, "open", "PostgreSQL")
    finally:
        pg.stop()


def test_mariadb_root_password_removed_is_exposed_then_closed(tmp_path):
    db = wk.MariaDB(wk.addr(23, 1))
    try:
        flip_test(tmp_path, db, "default_credentials", "MariaDB", extra_group="try_defaults = true")
    finally:
        db.stop()


def test_once_exits_1_on_an_exposure_and_writes_the_revocation_list(tmp_path, redis):
    routes = f'[route.log]\ncommand = ["/bin/sh", "-c", "cat >> {tmp_path}/alerts.jsonl"]\n'
    cfg = tmp_path / "watch.toml"
    cfg.write_text(wk.config([redis.endpoint], routes))
    db = tmp_path / "once.db"
    revoke = tmp_path / "revoke"
    once = [str(wk.BINARY), "watch", "--config", str(cfg), "--db", str(db), "--once", "--revocation-list", str(revoke)]
    first = subprocess.run(once, capture_output=True, text=True, env=wk.ENV, timeout=120)
    assert first.returncode == 0, first.stderr  # protected: nothing exposed
    redis.open()
    second = subprocess.run(once, capture_output=True, text=True, env=wk.ENV, timeout=120)
    assert second.returncode == 1, second.stderr
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [a["kind"] for a in alerts] == ["exposed"]
    [csv] = list(revoke.iterdir())
    lines = csv.read_text().splitlines()
    assert lines[0] == "category,endpoint,container,field,fingerprint"
    assert len(lines) > 1 and all(l.startswith("credential.") for l in lines[1:])
    check_no_raw_values(csv.read_text(), redis.rows)
    # A third run with nothing changed raises nothing new.
    third = subprocess.run(once, capture_output=True, text=True, env=wk.ENV, timeout=120)
    assert third.returncode == 1
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 1
