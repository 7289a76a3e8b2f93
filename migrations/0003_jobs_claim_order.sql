-- The claim orders due jobs by (run_after, created_at). With only
-- (state, run_after) indexed, SQLite sorted every group of jobs due at the
-- same millisecond (a burst of files enqueued in one commit) on each claim.
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (state, run_after, created_at);
