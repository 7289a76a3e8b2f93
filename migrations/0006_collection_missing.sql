-- A rule's knowledge base deleted in Open WebUI while the rule says
-- `on_missing_collection: pause`: a pause of its own, set and cleared by the
-- `collection` job (the watcher sets and clears `paused_reason` for the
-- folder and never touches this one).
ALTER TABLE rule_state ADD COLUMN collection_missing TEXT;
