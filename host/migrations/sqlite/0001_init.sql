-- The event log: one row per Stripe event id, whatever became of it.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    account      TEXT,
    created      INTEGER NOT NULL,
    livemode     INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    -- processed | ignored | failed
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    last_error   TEXT,
    payload      BLOB NOT NULL,
    processed_at INTEGER
);
CREATE INDEX events_status ON events (status);

-- The plugin's own state, behind the storage capability. `version` makes
-- concurrent handling of two events touching one key detectable (optimistic
-- concurrency: a commit whose reads changed underneath it is redone).
CREATE TABLE plugin_state (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (collection, key)
);

-- The effects outbox, read by the application in sequence order.
CREATE TABLE effects (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL REFERENCES events (id),
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX effects_event ON effects (event_id);
