#!/usr/bin/env python3
"""Stand-ins for the stores' own export tools where Debian ships none, for bench/:

- `opensearch URL`: an elasticdump-style export: a scroll over every non-system index, 1000 hits
  per page, every document read (discarded), the scroll cleared at the end.
- `mongodb URI` (run with the lab venv's python): a mongoexport-style export: a cursor over every
  collection of every non-system database, every document read.

Only loopback URLs are accepted.
"""

import http.client
import ipaddress
import json
import sys
from urllib.parse import urlparse


def loopback(url):
    host = urlparse(url).hostname
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit(f"refusing non-loopback {url}")
    return host


def opensearch(url):
    host = loopback(url)
    port = urlparse(url).port
    conn = http.client.HTTPConnection(host, port, timeout=600)

    def req(method, path, body=None):
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return json.loads(r.read())

    total = 0
    for idx in req("GET", "/_cat/indices?format=json&h=index"):
        name = idx["index"]
        if name.startswith("."):
            continue
        page = req("POST", f"/{name}/_search?scroll=1m", {"size": 1000, "sort": ["_doc"]})
        while page["hits"]["hits"]:
            total += len(page["hits"]["hits"])
            page = req("POST", "/_search/scroll", {"scroll": "1m", "scroll_id": page["_scroll_id"]})
        req("DELETE", "/_search/scroll", {"scroll_id": page["_scroll_id"]})
    print(total)


def mongodb(uri):
    loopback(uri)
    from pymongo import MongoClient

    client = MongoClient(uri)
    total = 0
    for db in client.list_database_names():
        if db in ("admin", "local", "config"):
            continue
        for coll in client[db].list_collection_names():
            for _ in client[db][coll].find({}, batch_size=1000):
                total += 1
    print(total)


if __name__ == "__main__":
    {"opensearch": opensearch, "mongodb": mongodb}[sys.argv[1]](sys.argv[2])
