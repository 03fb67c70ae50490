-- Host-side retries of failed events: when the next attempt is due; a
-- `dead` status (the dead-letter list) once the attempts are used up.
ALTER TABLE events ADD COLUMN retry_at BIGINT;
CREATE INDEX events_retry ON events (status, retry_at);
