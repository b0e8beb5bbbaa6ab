"""Classification on real open-source applications' schemas and libraries' formats (the lab's
fixtures, lab/fixtures/): Django auth and sessions, django-allauth, django-oauth-toolkit and Ghost
tables written by their own migrations and code, Celery, BullMQ, connect-redis, PHP and Django
cache sessions in Redis and Memcached. None of this is the lab's own smart-home layout, and the
classifier's rules know nothing of it.

Field-level precision must be at least 0.95 and recall at least 0.90 over every (field, category)
of the manifest's truth (the test prints the confusion table per category), and every decoy field
(truth `[]`) must stay unclassified.
"""

import collections

from conftest import container_key, leakscope_scan

PRECISION, RECALL = 0.95, 0.90


def test_real_schema_fixtures_are_classified(manifest):
    fx = manifest["fixtures"]
    endpoints = [f"{s['address']}:{s['port']}" for s in fx["services"]]
    _, report = leakscope_scan(*endpoints, "--try-defaults")
    by_service = {}
    for s in fx["services"]:
        got = [r for r in report["services"] if (r["address"], r["port"]) == (s["address"], s["port"])]
        assert got, f"{s['name']} not found by the scan"
        assert got[0]["access"] in ("open", "default_credentials"), got[0]
        by_service[s["name"]] = {container_key(c["name"]): c for c in got[0]["containers"]}

    counts = collections.defaultdict(lambda: [0, 0, 0])  # category -> TP, FP, FN
    problems, decoys = [], 0
    for want in fx["containers"]:
        got = by_service[want["service"]].get(want["name"])
        if got is None:
            problems.append(f"{want['service']} {want['name']}: not inventoried "
                            f"(have {sorted(by_service[want['service']])})")
            for f in want["fields"]:
                for cat in f["categories"]:
                    counts[cat][2] += 1
            continue
        reported = {f["path"]: set(f["categories"]) for f in got["fields"]}
        truth = {f["path"]: set(f["categories"]) for f in want["fields"]}
        for path in truth.keys() | {p for p, c in reported.items() if c}:
            t, r = truth.get(path, set()), reported.get(path, set())
            for cat in t & r:
                counts[cat][0] += 1
            for cat in r - t:
                counts[cat][1] += 1
                problems.append(f"{want['name']} {path}: {cat} reported, truth {sorted(t)}")
            for cat in t - r:
                counts[cat][2] += 1
                seen = "" if path in reported else " (path not reported)"
                problems.append(f"{want['name']} {path}: {cat} missed{seen}, reported {sorted(r)}")
            if path in truth and not t:
                decoys += 1
    print(f"\n{'category':28} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>9} {'recall':>7}")
    total = [0, 0, 0]
    for cat in sorted(counts):
        tp, fp, fn = counts[cat]
        total = [total[0] + tp, total[1] + fp, total[2] + fn]
        print(f"{cat:28} {tp:4} {fp:4} {fn:4} {tp / max(1, tp + fp):9.3f} {tp / max(1, tp + fn):7.3f}")
    tp, fp, fn = total
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    print(f"{'all':28} {tp:4} {fp:4} {fn:4} {precision:9.3f} {recall:7.3f}   ({decoys} decoy fields)")
    print("\n".join(problems))
    assert tp > 60, "the fixtures hold enough sensitive fields to mean something"
    assert decoys > 60
    decoy_hits = [p for p in problems if "reported, truth []" in p]
    assert not decoy_hits, decoy_hits
    assert precision >= PRECISION and recall >= RECALL, (precision, recall)
