-- When a schedule was first seen by a running ferry: fire times before it are
-- not "missed" (the rule did not exist yet).
ALTER TABLE schedules ADD COLUMN armed_at INTEGER;
CREATE INDEX deliveries_lease ON deliveries (lease_owner) WHERE state = 'delivering';
CREATE INDEX deliveries_destination_due ON deliveries (destination, state, next_attempt_at);
-- Incoming webhook ids are the jobs' dedupe keys (`hook:<rule>:<id>`), kept
-- as long as the jobs; a separate table is not needed.
DROP TABLE webhook_ids;
