"""The findings store and the reports, end to end against the lab:

- a scan killed with kill -9 and resumed finds exactly what an uninterrupted scan finds;
- `diff` of two scans, with one service switched from protected to open in between, reports
  exactly that change;
- the HTML report renders in headless Chromium (screenshot + DOM) and shows the exposed
  services and category counts, with no console errors and no network fetches;
- the GDPR draft names every sensitive category the scan found, with the scan's counts;
- the README's picture of the HTML report (docs/report-lab.png) shows what the current build
  reports on this lab, and is the picture its record was made with.
"""

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BINARY, LAB_TARGETS, lab
from report_figures import figures

ENV = {**os.environ, "LEAKSCOPE_LOOPBACK_ONLY": "1"}


def run(*args, check=True):
    out = subprocess.run([str(BINARY), *args], capture_output=True, text=True, env=ENV, timeout=900)
    if check:
        assert out.returncode in (0, 1), out.stderr
    return out


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "findings.db"


def endpoints(report):
    return {(s["address"], s["port"], s["protocol"], s["access"]) for s in report["services"]}


def test_resume_after_kill9_finds_what_an_uninterrupted_scan_finds(db):
    args = [*LAB_TARGETS, "--no-inventory", "--try-defaults", "--quiet", "--db", str(db)]
    whole = json.loads(run("scan", *args, "--format", "json", "--no-store").stdout)

    # A slow scan (rate-limited) killed mid-way.
    proc = subprocess.Popen([str(BINARY), "scan", *args, "--rate", "400"], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if db.exists():
            with sqlite3.connect(db) as c:
                try:
                    done = c.execute("SELECT count(*) FROM endpoints_done").fetchone()[0]
                except sqlite3.OperationalError:
                    done = 0
            if done > 1500:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as c:
        (scan_id, status), = c.execute("SELECT id, status FROM scans").fetchall()
        done = c.execute("SELECT count(*) FROM endpoints_done").fetchone()[0]
    total = whole["stats"]["ports_probed"]
    assert 0 < done < total, f"killed mid-scan ({done} of {total} done)"
    assert status == "running"  # as the killed process left it; `scans` shows it incomplete
    listing = run("scans", "--db", str(db)).stdout
    assert "incomplete" in listing, listing

    resumed = json.loads(run("scan", "--resume", scan_id, "--format", "json", "--quiet", "--db", str(db)).stdout)
    assert resumed["scan_id"] == scan_id
    assert endpoints(resumed) == endpoints(whole)
    assert len(resumed["services"]) == len(whole["services"])
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM endpoints_done").fetchone()[0] == total
        assert c.execute("SELECT status FROM scans").fetchone()[0] == "complete"
    assert resumed["stats"]["ports_probed"] == total


def test_diff_reports_exactly_the_service_switched_to_open(db, lab_services):
    svc = lab_services["redis-auth"]
    args = [*LAB_TARGETS, "--no-inventory", "--quiet", "--db", str(db)]
    run("scan", *args)
    try:
        # Switch the protected Redis to open, as a careless CONFIG SET in production would.
        assert lab.resp_cmd(svc, "CONFIG", "SET", "requirepass", "", password=svc.password).startswith(b"+OK")
        run("scan", *args)
    finally:
        unauth = lab.Service(**{**svc.__dict__, "password": None})
        lab.resp_cmd(unauth, "CONFIG", "SET", "requirepass", svc.password)
    with sqlite3.connect(db) as c:
        first, second = [r[0] for r in c.execute("SELECT id FROM scans ORDER BY started_at, rowid")]
    out = run("diff", first, second, "--format", "json", "--db", str(db))
    changes = json.loads(out.stdout)
    assert changes == [{
        "endpoint": f"{svc.address}:{svc.port}",
        "kind": "newly_exposed",
        "before": "auth_required",
        "after": "open",
        "details": ["access auth_required → open", "redis Redis - → redis Redis 7.0.15"],
    }], changes
    assert out.returncode == 1, "a newly exposed service fails the diff"
    hist = run("history", f"{svc.address}:{svc.port}", "--db", str(db)).stdout
    assert "first seen open" in hist and hist.count("\n") >= 3, hist


@pytest.fixture(scope="module")
def full_scan_db():
    d = Path(tempfile.mkdtemp())
    db = d / "findings.db"
    out = run("scan", *LAB_TARGETS, "--try-defaults", "--quiet", "--db", str(db), "--format", "json")
    yield db, json.loads(out.stdout)
    shutil.rmtree(d)


def test_html_report_renders_in_chromium(full_scan_db, tmp_path):
    db, report = full_scan_db
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by lab/up"
    page = tmp_path / "report.html"
    run("report", "latest", "--format", "html", "-o", str(page), "--db", str(db))
    html = page.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html, "self-contained"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
             "--no-first-run", "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'ud'}",
             "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "report.png"
    r = subprocess.run([chromium, *flags, "--window-size=1200,2000", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000, r.stderr[-2000:]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    text = dom.stdout
    console_errors = [l for l in (r.stderr + dom.stderr).splitlines() if "CONSOLE" in l and "ERROR" in l.upper()]
    assert not console_errors, console_errors
    exposed = [s for s in report["services"] if s["access"] in ("open", "default_credentials")]
    assert f'<div class="n" id="exposed-count">{len(exposed)}</div>' in text
    worst = max(report["services"], key=lambda s: ["info", "low", "medium", "high", "critical"].index(s["severity"]))
    assert f'data-severity="{worst["severity"]}"' in text
    for s in exposed:
        assert f"{s['address']}:{s['port']}" in text
    cats = {c for s in exposed for k in s["containers"] for c in k["categories"]}
    for c in cats:
        assert c in text, f"category {c} not rendered"


SENSITIVE = ("credential.", "health.", "financial.", "government.", "identity.")


def test_gdpr_draft_names_every_sensitive_category_with_the_scans_counts(full_scan_db, manifest):
    db, report = full_scan_db
    draft = run("report", "latest", "--format", "gdpr", "--db", str(db)).stdout
    exposed = {(s["address"], s["port"]) for s in report["services"] if s["access"] in ("open", "default_credentials")}
    truth = {c for m in manifest["services"] if (m["address"], m["port"]) in exposed
             for k in m["containers"] for f in k["fields"] for c in f["categories"] if c.startswith(SENSITIVE)}
    records = {}
    for s in report["services"]:
        if (s["address"], s["port"]) in exposed:
            for k in s["containers"]:
                for c in k["categories"]:
                    records[c] = records.get(c, 0) + (k["records"] or 0)
    assert truth, "the lab exposes sensitive categories"
    for c in truth:
        assert f"`{c}`" in draft, f"{c} missing from the draft"
        assert f"| `{c}` | {records[c]:,} |" in draft, f"{c}: count {records.get(c)} not in the draft"
    for heading in ("Art. 33(3)(a)", "Art. 33(3)(b)", "Art. 33(3)(c)", "Art. 33(3)(d)"):
        assert heading in draft
    assert "[TO COMPLETE" in draft


def test_readme_picture_is_current(full_scan_db, manifest, tmp_path):
    """docs/report-lab.png must not go stale silently: scripts/report-screenshot records the
    figures the picture shows and the picture's hash (docs/report-lab.json); here the current
    build's report of the same scan of the same lab must show the same figures, and the picture
    must be the one recorded. When this fails, run scripts/report-screenshot and commit both."""
    record = json.loads((lab.ROOT / "docs" / "report-lab.json").read_text())
    png = (lab.ROOT / "docs" / "report-lab.png").read_bytes()
    assert hashlib.sha256(png).hexdigest() == record["png_sha256"], \
        "docs/report-lab.png is not the picture docs/report-lab.json was made with: run scripts/report-screenshot"
    if manifest["users"] != record["lab_users"]:
        pytest.skip(f"the picture is of the {record['lab_users']}-user lab; this lab has {manifest['users']}")
    db, _ = full_scan_db
    page = tmp_path / "report.html"
    run("report", "latest", "--format", "html", "-o", str(page), "--db", str(db))
    now = figures(page.read_text())
    stale = []
    for k in ("services", "exposed", "people_bound", "worst"):
        if now[k] != record[k]:
            stale.append(f"{k}: picture {record[k]}, current build {now[k]}")
    for k in ("people", "records"):
        # Counts of a sampled scan may move a little between runs; a different build's figures
        # (the picture once said 13.8 M people for a 2.4 M-user lab) do not stay within 5 %.
        if abs(now[k] - record[k]) > 0.05 * max(record[k], 1):
            stale.append(f"{k}: picture {record[k]:,}, current build {now[k]:,}")
    assert not stale, "docs/report-lab.png is stale (run scripts/report-screenshot):\n" + "\n".join(stale)
