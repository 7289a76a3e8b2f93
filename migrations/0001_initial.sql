-- ferry state. Times are Unix milliseconds (UTC). Every table is written by
-- one writer connection; read-then-write goes through BEGIN IMMEDIATE.

-- One row per (rule, path): the file as ferry last saw it and what Open WebUI
-- holds for it. One-shot `ferry ingest` uses the rule name ':cli', which no
-- user rule can take ([a-z0-9_-]).
CREATE TABLE documents (
    id              INTEGER PRIMARY KEY,
    rule            TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    collection_id   TEXT,
    collection_name TEXT,
    state           TEXT    NOT NULL CHECK (state IN
                      ('discovered','uploading','processing','linked','failed','removed')),
    reason          TEXT    CHECK (reason IS NULL OR reason IN
                      ('duplicate','empty','too_large','unsupported','processing','auth','timeout','http')),
    error           TEXT,
    size            INTEGER,
    mtime_ns        INTEGER,
    inode           INTEGER,
    sha256          TEXT,
    file_id         TEXT,       -- the Open WebUI file id of the current version (uploaded by ferry)
    attempts        INTEGER NOT NULL DEFAULT 0,
    retry_at        INTEGER,    -- transient failures: not before this time
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (rule, path)
);
CREATE INDEX documents_state ON documents (state, rule);
CREATE INDEX documents_content ON documents (collection_id, sha256);

-- Every file ferry uploaded, until it is deleted again: how orphans (uploads
-- that never linked) are found and removed, and the proof that ferry only
-- ever deletes its own files.
CREATE TABLE uploads (
    file_id       TEXT PRIMARY KEY,
    document_id   INTEGER REFERENCES documents (id) ON DELETE SET NULL,
    collection_id TEXT,
    sha256        TEXT,
    state         TEXT NOT NULL CHECK (state IN ('uploaded','linked','failed','deleted')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX uploads_state ON uploads (state);

-- Knowledge bases by the name a rule gives them. Names are not unique in Open
-- WebUI, so the id found or created first is remembered and reused.
CREATE TABLE collections (
    name       TEXT PRIMARY KEY,
    id         TEXT NOT NULL,
    created    INTEGER NOT NULL DEFAULT 0,  -- 1 when ferry created it
    updated_at INTEGER NOT NULL
);

-- Work: ingest, chat, remove. A claim is a lease; completion is accepted only
-- from the lease holder (fenced by lease_owner).
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    rule         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('queued','running','succeeded','dead')),
    trigger_kind TEXT    NOT NULL,
    input        TEXT    NOT NULL DEFAULT '{}',   -- JSON: what the trigger supplied
    result       TEXT,                            -- JSON: answer, sources, usage, model, chat id
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 8,
    run_after    INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  INTEGER,
    dedupe_key   TEXT UNIQUE,   -- once ever: webhook-id, (rule, fire time), document version
    coalesce_key TEXT,          -- at most one queued job per key, and one running
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX jobs_claim ON jobs (state, run_after);
CREATE INDEX jobs_rule ON jobs (rule, created_at);
CREATE UNIQUE INDEX jobs_one_queued ON jobs (coalesce_key) WHERE state = 'queued';
CREATE INDEX jobs_running_key ON jobs (coalesce_key) WHERE state = 'running';

-- Outbox: written in the transaction that completes the producing job.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,   -- the webhook-id, stable across attempts
    job_id          TEXT REFERENCES jobs (id),
    rule            TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending','delivering','delivered','dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    last_response   TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);

CREATE TABLE delivery_attempts (
    delivery_id TEXT    NOT NULL REFERENCES deliveries (id),
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER,
    status      INTEGER,
    error       TEXT,
    response    TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- Per schedule rule: what has fired, so a restart neither double-fires nor
-- forgets a missed run.
CREATE TABLE schedules (
    rule             TEXT PRIMARY KEY,
    last_fire_at     INTEGER,
    last_run_at      INTEGER,
    last_success_at  INTEGER,
    last_success_job TEXT
);

-- Incoming webhook ids (Standard Webhooks `webhook-id`), kept >= 72 h.
CREATE TABLE webhook_ids (
    rule        TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (rule, webhook_id)
);

-- Rules put on hold by a safety valve (vanished root, mass delete).
CREATE TABLE rule_state (
    rule          TEXT PRIMARY KEY,
    paused_reason TEXT,
    updated_at    INTEGER NOT NULL
);

-- Facts about this database: `instance_id` marks the uploads of this ferry
-- in Open WebUI (file metadata), so that uploads a crash left unrecorded can
-- be found and deleted without touching anyone else's files.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
