-- A job may carry a key that no other unfinished job of its queue holds: a scheduled run of
-- a case's field is not queued again while the previous one has not finished, so runs
-- slower than their schedule do not pile up.
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
CREATE UNIQUE INDEX jobs_unique_key ON jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running');
