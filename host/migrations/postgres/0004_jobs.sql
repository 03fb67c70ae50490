-- Follow-up jobs (a succeeded payment's settlement) are rows of `events`
-- with an id of their own (`job:...`), a status of `queued` until their
-- first attempt, and the same retries and dead letters as events. Each
-- job source reads the effects outbox from a cursor kept here.
CREATE TABLE job_cursors (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);
