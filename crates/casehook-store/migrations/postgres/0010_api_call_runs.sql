-- The runs of a case's API-call fields that have not settled (queued, running, retrying) are
-- the open jobs of the `api_calls` queue whose payload names the case: found through this
-- index when a case's API-call states are read, without scanning the queue.
CREATE INDEX jobs_api_call_case ON jobs (workspace_id, (payload ->> 'case_id'))
    WHERE queue = 'api_calls';
