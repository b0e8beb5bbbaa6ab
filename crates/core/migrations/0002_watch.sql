-- leakscope findings store, version 2: what `leakscope watch` keeps between cycles and restarts.
-- Times are RFC 3339 text (as in version 1) for people, plus unix milliseconds where the watcher
-- schedules by them. Alert payloads hold only masked examples and fingerprints, like services.

-- One row per endpoint the watcher knows (found answering in its scope at least once).
CREATE TABLE watch_endpoints (
    address         TEXT NOT NULL,
    port            INTEGER NOT NULL,
    -- The watch group that found it (its alert routes apply).
    grp             TEXT NOT NULL,
    -- exposed | protected | unreachable: the confirmed state.
    state           TEXT NOT NULL,
    -- What answered at the last observation (NULL when nothing did).
    protocol        TEXT,
    access          TEXT,
    severity        TEXT,
    -- When the confirmed state began.
    since           TEXT NOT NULL,
    last_checked_ms INTEGER NOT NULL,
    -- A different state seen but not yet confirmed (hysteresis), how often in a row, since when.
    pending         TEXT,
    pending_count   INTEGER NOT NULL DEFAULT 0,
    pending_since   TEXT,
    -- Events raised for this endpoint so far: the sequence number in every idempotency key.
    seq             INTEGER NOT NULL DEFAULT 0,
    -- Confirmed exposed/closed transitions within the flapping window, unix ms, as JSON.
    transitions     TEXT NOT NULL DEFAULT '[]',
    flapping        INTEGER NOT NULL DEFAULT 0,
    -- The last inventoried service document (contract JSON), and when.
    service         TEXT,
    inventoried_ms  INTEGER,
    PRIMARY KEY (address, port)
);

-- Exposure windows: from the first observation open to the first observation closed, kept by
-- `watch` (every cycle) and by `scan` (when a stored scan finishes). closed_at NULL = still open.
CREATE TABLE exposure_windows (
    id              INTEGER PRIMARY KEY,
    address         TEXT NOT NULL,
    port            INTEGER NOT NULL,
    protocol        TEXT NOT NULL,
    opened_at       TEXT NOT NULL,
    last_seen_open  TEXT NOT NULL,
    closed_at       TEXT,
    -- watch | scan: who saw it open first.
    source          TEXT NOT NULL
);
CREATE INDEX exposure_windows_by_endpoint ON exposure_windows(address, port, opened_at);

-- Every event the watcher raised, with the alert document it produced.
CREATE TABLE watch_events (
    id              INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    address         TEXT NOT NULL,
    port            INTEGER NOT NULL,
    grp             TEXT NOT NULL,
    -- exposed | closed | changed | new_service | flapping | flapping_stopped
    kind            TEXT NOT NULL,
    -- The alert's idempotency key (unique: a re-detected event after a crash is the same event).
    key             TEXT NOT NULL UNIQUE,
    alert           TEXT NOT NULL,
    -- 1 when raised by the first sweep of a new watch (a baseline, not alerted).
    baseline        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX watch_events_by_endpoint ON watch_events(address, port, id);

-- Alerts to deliver, one row per alert and route. Rows are written in the same transaction as
-- the event, so an alert is never lost; delivered rows stay (pruned after 30 days) so a key is
-- never sent twice by this store.
CREATE TABLE alert_outbox (
    key             TEXT NOT NULL,
    route           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    delivered_ms    INTEGER,
    -- Set when delivery was abandoned (route removed, or retried past its give-up age).
    failed_ms       INTEGER,
    last_error      TEXT,
    PRIMARY KEY (key, route)
) WITHOUT ROWID;
CREATE INDEX alert_outbox_due ON alert_outbox(next_attempt_ms) WHERE delivered_ms IS NULL AND failed_ms IS NULL;

-- Small facts of the watcher itself: when each group last finished a sweep, and so on.
CREATE TABLE watch_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
