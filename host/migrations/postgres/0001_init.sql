-- The same schema as migrations/sqlite, in PostgreSQL's types.

-- The event log: one row per Stripe event id, whatever became of it.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    account      TEXT,
    created      BIGINT NOT NULL,
    livemode     BOOLEAN NOT NULL,
    received_at  BIGINT NOT NULL,
    -- processed | ignored | failed
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    last_error   TEXT,
    payload      BYTEA NOT NULL,
    processed_at BIGINT
);
CREATE INDEX events_status ON events (status);

-- The plugin's own state, behind the storage capability; `version` makes
-- concurrent handling of two events touching one key detectable.
CREATE TABLE plugin_state (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (collection, key)
);

-- The effects outbox, read in sequence order. `seq` is assigned by the
-- host under the commit lock: gapless and in commit order.
CREATE TABLE effects (
    seq        BIGINT PRIMARY KEY,
    event_id   TEXT NOT NULL REFERENCES events (id),
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX effects_event ON effects (event_id);
