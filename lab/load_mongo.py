"""Loads the lab dataset into a MongoDB-wire server with insertMany (run inside the lab venv).

argv: URI LABGEN_BINARY --users N --seed S CONTAINERS_JSON
"""

import json
import subprocess
import sys

from pymongo import MongoClient

uri, labgen, *gen_args, containers = sys.argv[1:]
client = MongoClient(uri, serverSelectionTimeoutMS=30000)
for c in json.loads(containers):
    coll = client[c["database"]][c["collection"]]
    proc = subprocess.Popen([labgen, "emit", *gen_args, "--layout", "mongodb", "--container", c["name"]],
                            stdout=subprocess.PIPE)
    batch = []
    for line in proc.stdout:
        batch.append(json.loads(line))
        if len(batch) == 2000:
            coll.insert_many(batch, ordered=False)
            batch = []
    if batch:
        coll.insert_many(batch, ordered=False)
    if proc.wait() != 0:
        sys.exit(f"labgen failed for {c['name']}")
    if c.get("key"):
        # As an application would: its ids are unique (the SQL layouts have primary keys).
        coll.create_index([(k, 1) for k in c["key"]], unique=True)
