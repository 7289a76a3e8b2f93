-- Lists the status pages and the admin API show, without sorting or
-- scanning whole tables (a large installation keeps 100,000s of rows):
-- the newest jobs and deliveries, of all states or of one, and a rule's
-- documents of one state by path.
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_state_created ON jobs (state, created_at);
CREATE INDEX deliveries_created ON deliveries (created_at);
CREATE INDEX deliveries_state_created ON deliveries (state, created_at);
DROP INDEX documents_state;
CREATE INDEX documents_state ON documents (state, rule, path);
