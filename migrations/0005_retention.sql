-- Retention: finished jobs, deliveries and their attempts are pruned after
-- `retention:` (DESIGN §6 extended). A pruned job's dedupe key (a sender's
-- webhook id, a fire time, a document version) is kept as a 16-byte hash
-- for `retention.keys` more, so a late retry or a replay still finds it.
CREATE TABLE pruned_keys (
    key_hash  BLOB    PRIMARY KEY,
    job_id    TEXT    NOT NULL,
    pruned_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX pruned_keys_age ON pruned_keys (pruned_at);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE state IN ('delivered', 'dead');
CREATE INDEX deliveries_job ON deliveries (job_id);
