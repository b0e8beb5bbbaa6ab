-- leakscope findings store, version 1.
-- One row per scan; one row per service found; one row per endpoint probed (what makes
-- `scan --resume` continue without probing twice). Services are stored as their JSON contract
-- document, which never holds raw sensitive values (only masked examples and fingerprints).

CREATE TABLE scans (
    id          TEXT PRIMARY KEY,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    -- running | complete | incomplete
    status      TEXT NOT NULL,
    pid         INTEGER,
    -- The scan request (targets, exclusions, ports, options) as JSON, to resume it.
    request     TEXT NOT NULL,
    -- The final `stats` object, once complete.
    stats       TEXT
);

CREATE TABLE services (
    scan_id   TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
    address   TEXT NOT NULL,
    port      INTEGER NOT NULL,
    protocol  TEXT NOT NULL,
    access    TEXT NOT NULL,
    severity  TEXT NOT NULL,
    doc       TEXT NOT NULL,
    PRIMARY KEY (scan_id, address, port)
);

CREATE INDEX services_by_endpoint ON services(address, port);

CREATE TABLE endpoints_done (
    scan_id TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    port    INTEGER NOT NULL,
    PRIMARY KEY (scan_id, address, port)
) WITHOUT ROWID;
