-- SQLite only: PostgreSQL tables have no rowid, so its idempotency keys stay as they are.
SELECT 1;
