"""People across the whole scan: the scan's `impact` (distinct people over every exposed store,
de-duplicated) is within ±5 % of the lab's truth, and its interval holds the truth.

The truth is a set of people from the manifest: every customer of a dataset (`main`, `small`:
different seeds, different people) that a scanned readable service holds, the Italian CRM's
customers of each dataset (people of their own), and the real-schema fixtures' people (some of
the main customers, with their e-mail in another letter case and their phone in another format,
plus people who are no customers). The sum of the per-store figures would be several times
larger. Two scans: the whole lab, and a subset where the fixtures' people must be recognised
among one store's customers. The same test runs against the 2.4 M-user lab with
LEAKSCOPE_LAB_NET/…_DIR/…_MANIFEST set (and LEAKSCOPE_BINARY for a release build).
"""

from conftest import container_key, leakscope_scan

TOLERANCE = 0.05
READABLE = ("open", "default_credentials")


def truth(manifest: dict, scanned: set[str]) -> int:
    """Distinct people held by the readable services named in `scanned` (manifest names)."""
    people: set = set()
    for m in manifest["services"]:
        if m["name"] not in scanned or m["access"] not in READABLE:
            continue
        ds = (m["dataset"]["seed"], m["dataset"]["users"])
        for c in m["containers"]:
            if not c.get("subjects"):
                continue
            if c["name"].endswith("clienti"):
                people.update((ds, "crm", i) for i in range(c["subjects"]))
            else:
                # Every container with people holds the dataset's customers 0..n (users,
                # devices, sessions …): the largest one has them all.
                people.update((ds, "customer", i) for i in range(c["subjects"]))
    main = next(m for m in manifest["services"] if m["dataset"]["users"] == manifest["users"])
    main_ds = (main["dataset"]["seed"], main["dataset"]["users"])
    fixture_services = {s["name"]: s for s in manifest["fixtures"]["services"]}
    for c in manifest["fixtures"]["containers"]:
        svc = fixture_services[c["service"]]
        if c["service"] not in scanned or svc["access"] not in READABLE:
            continue
        people.update((main_ds, "customer", i) for i in c["people"]["customers"])
    # The fixtures' other people are distinct per group (django, ghost members, ghost users);
    # a group's containers, on whichever server, share them: a group is its customers.
    others: dict[tuple, int] = {}
    for c in manifest["fixtures"]["containers"]:
        if c["service"] in scanned and c["people"]["others"]:
            key = tuple(c["people"]["customers"])
            others[key] = max(others.get(key, 0), c["people"]["others"])
    return len(people) + sum(others.values())


def per_store_sum(report: dict) -> int:
    return sum(
        max((c.get("subjects_estimate") or 0 for c in s["containers"]), default=0)
        for s in report["services"]
        if s["access"] in READABLE
    )


def check(report: dict, want: int, label: str) -> None:
    impact = report.get("impact")
    assert impact, f"{label}: no impact in the scan document"
    people, lo, hi = impact["people"], impact["people_low"], impact["people_high"]
    err = (people - want) / want
    print(
        f"\n{label}: truth {want}, impact {people} ({err:+.2%}), interval {lo}–{hi}, "
        f"sum of stores {per_store_sum(report)}\n  method: {impact['method']}"
    )
    assert abs(people - want) <= TOLERANCE * want, f"{label}: {people} vs truth {want} ({err:+.2%})"
    assert lo <= want <= hi, f"{label}: truth {want} outside the interval {lo}–{hi}"
    assert lo <= people <= hi


def test_impact_of_the_whole_lab(manifest):
    services = manifest["services"] + manifest["fixtures"]["services"]
    endpoints = [f"{m['address']}:{m['port']}" for m in services]
    _, report = leakscope_scan(*endpoints, "--try-defaults")
    check(report, truth(manifest, {m["name"] for m in services}), "whole lab")
    # Per-container figures stay beside it.
    assert any(c.get("subjects_estimate") for s in report["services"] for c in s["containers"])


def test_impact_of_a_subset_links_people_across_stores(manifest):
    """One store's customers plus the fixtures that hold some of them under another spelling
    of their e-mail: those are not new people."""
    by_name = {m["name"]: m for m in manifest["services"] + manifest["fixtures"]["services"]}
    names = {"opensearch-open", "apps-postgres", "apps-mariadb"}
    endpoints = [f"{by_name[n]['address']}:{by_name[n]['port']}" for n in sorted(names)]
    _, report = leakscope_scan(*endpoints, "--try-defaults")
    want = truth(manifest, names)
    check(report, want, "subset")
    fixture_customers = {
        i
        for c in manifest["fixtures"]["containers"]
        if c["service"] in names
        for i in c["people"]["customers"]
    }
    assert fixture_customers, "the subset must hold fixture people who are customers"


def test_no_fingerprint_or_identifier_in_the_impact(manifest):
    """The impact is figures and words: no identifier, no fingerprint, no container name."""
    by_name = {m["name"]: m for m in manifest["services"]}
    m = by_name["redis-open"]
    _, report = leakscope_scan(f"{m['address']}:{m['port']}")
    impact = report["impact"]
    assert set(impact) == {"people", "people_low", "people_high", "method"}
    assert "@" not in impact["method"]
    names = {container_key(c["name"]) for s in report["services"] for c in s["containers"]}
    assert not any(n in impact["method"] for n in names if len(n) > 3)
