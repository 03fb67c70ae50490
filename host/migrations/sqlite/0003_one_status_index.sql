-- events_retry (status, retry_at) serves every look-up by status, so the
-- status-only index was a second B-tree to update on every event written.
DROP INDEX IF EXISTS events_status;
