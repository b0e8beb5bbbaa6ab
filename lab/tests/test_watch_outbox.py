"""Alerts survive a receiver down for 5 minutes and a `kill -9` of the watcher during delivery:
every alert arrives, and exactly once by idempotency key.

Timeline (real servers, real flips, the real binary):
1. The webhook receiver is down (nothing listens). Redis A and B are flipped open, A is flipped
   back closed: three alerts wait in the store's outbox, retried with backoff.
2. While the receiver is still down the watcher is killed with SIGKILL and started again.
3. After 5 minutes (LEAKSCOPE_WATCH_RECEIVER_DOWN seconds) the receiver comes back but holds its
   answers for 5 s; as soon as it has received the first alert, the watcher is killed again, in
   the middle of the delivery, and restarted.
4. Every alert must arrive; the keys received are exactly the keys of the events the store
   raised (no event raised twice under a new key across the restarts); a key seen twice (the
   delivery the kill cut short) carries the same alert both times, so a receiver that drops
   keys it has seen acts on each alert exactly once.
"""

import collections
import os
import sqlite3
import time

import watchkit as wk

DOWN = float(os.environ.get("LEAKSCOPE_WATCH_RECEIVER_DOWN", "300"))


def events(db):
    with sqlite3.connect(db) as c:
        return c.execute("SELECT address || ':' || port, kind, key FROM watch_events WHERE baseline = 0").fetchall()


def pending(db):
    with sqlite3.connect(db) as c:
        return c.execute("SELECT count(*) FROM alert_outbox WHERE delivered_ms IS NULL").fetchone()[0]


def test_receiver_down_5_minutes_and_kill9_during_delivery_every_alert_arrives_once(tmp_path):
    a, b = wk.Redis(wk.addr(26, 1)), wk.Redis(wk.addr(26, 2))
    host = wk.addr(26, 250)
    rx = wk.Receiver(host, wk.free_port(host))
    rx.down()
    routes = f'[route.hook]\nwebhook = "{rx.url}"\ntimeout = "30s"\n'
    w = wk.Watcher(tmp_path, wk.config([a.endpoint, b.endpoint], routes))
    try:
        wk.wait_for(lambda: len(w.known()) == 2, 30, "the first sweep")
        t_down = time.monotonic()
        a.open()
        wk.wait_for(lambda: ("exposed" in [k for e, k, _ in events(w.db) if e == a.endpoint]), 40, "A exposed")
        b.open()
        wk.wait_for(lambda: ("exposed" in [k for e, k, _ in events(w.db) if e == b.endpoint]), 40, "B exposed")
        a.close()
        wk.wait_for(lambda: ("closed" in [k for e, k, _ in events(w.db) if e == a.endpoint]), 40, "A closed")
        assert pending(w.db) == 3
        time.sleep(10)  # a few failed attempts
        w.kill9()
        w.start()
        while time.monotonic() - t_down < DOWN:
            time.sleep(5)
            assert w.proc.poll() is None
        assert rx.requests == [] and pending(w.db) == 3
        assert w.logged("alert delivery failed; will retry")

        rx.delay = 5
        rx.received.clear()
        rx.up()
        assert rx.received.wait(60), "no delivery after the receiver came back"
        w.kill9()  # the receiver holds its answer: the watcher dies mid-delivery
        rx.delay = 0
        assert pending(w.db) >= 1, "killed before it could record the delivery"
        w.start()
        wk.wait_for(lambda: pending(w.db) == 0, 90, "the outbox to drain")

        raised = events(w.db)
        assert sorted((e, k) for e, k, _ in raised) == sorted(
            [(a.endpoint, "exposed"), (b.endpoint, "exposed"), (a.endpoint, "closed")]), raised
        got = rx.alerts()
        keys = collections.Counter(x["idempotency_key"] for x in got)
        assert set(keys) == {key for _, _, key in raised}, "every alert arrived, none unknown"
        by_key = collections.defaultdict(list)
        for x in got:
            by_key[x["idempotency_key"]].append(x)
        for key, copies in by_key.items():
            assert all(c == copies[0] for c in copies), "a repeated delivery is the same alert"
        duplicated = [k for k, n in keys.items() if n > 1]
        assert duplicated, "the kill during delivery should have cut one delivery short"
        print(f"\n{len(got)} deliveries of {len(keys)} alerts; repeated by the kill: {len(duplicated)}")
        assert w.stop() == 0
    finally:
        wk.stop_pid(w.proc)
        rx.down()
        a.stop()
        b.stop()
