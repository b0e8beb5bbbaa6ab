"""The figures the HTML report's summary cards show (and so the README's picture of it): parsed
from the page leakscope rendered, so the picture's record (docs/report-lab.json, written by
scripts/report-screenshot) and the staleness test read them the same way."""

import re


def figures(html: str) -> dict:
    def card(ident: str) -> str:
        m = re.search(rf'id="{ident}">([^<]*)<', html)
        assert m, f"no #{ident} in the report"
        return m.group(1).strip()

    def number(text: str) -> int:
        digits = re.sub(r"[^0-9]", "", text)
        return int(digits) if digits else 0

    people = card("people")
    return {
        "services": number(card("services-count")),
        "exposed": number(card("exposed-count")),
        "people": number(people),
        "people_bound": "upper" if people.startswith("≤") else "estimate",
        "records": number(card("records")),
        "worst": card("worst"),
    }
