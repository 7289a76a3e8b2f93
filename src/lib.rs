//! # ferry
//!
//! ferry connects a self-hosted Open WebUI to the rest of an organisation:
//! it keeps knowledge collections in sync with folders (verified: uploaded,
//! processed, linked), runs templated chats on schedules, webhooks, ingested
//! documents or by hand, forwards the answers to webhooks, and keeps all of
//! it in SQLite so that restarts lose and repeat nothing. `DESIGN.md` (in
//! the shared folder) is the public contract: commands, config keys, rule
//! schema, routes, payloads, state semantics.
//!
//! ## Bird's-eye view
//!
//! ```text
//!   ferry.yaml + rules/*.yaml ──► config, rules ──► validated Config + Vec<Rule>
//!                                                           │
//!   triggers (watch, schedule, webhook, ingested, manual)   ▼
//!        └──► one enqueue path ──► store (SQLite jobs) ──► workers ──► openwebui::Client
//!                                        │                               (only caller of Open WebUI)
//!                                        └──► outbox (deliveries) ──► delivery (only caller of webhooks)
//! ```
//!
//! `ferry run` ([`app`]) starts one watcher per watch rule ([`watch`]),
//! one timer per schedule rule ([`schedule`]), the worker pool
//! ([`worker`]), the delivery loop ([`deliver`]) and the HTTP server
//! ([`server`]: hooks and admin API). The one-shot commands drive the same
//! pieces directly: `ferry ingest` runs [`ingest::Ingestor`] over files,
//! `ferry ask` calls [`openwebui::Client::chat_stream`], `ferry render`
//! fills a rule's templates with [`worker::chat::context`].
//!
//! A day in the life of an event: `POST /hooks/alerts` is checked
//! ([`server::hooks`]) and becomes a `chat` job (one transaction, then
//! 202); a worker runs it ([`worker::chat`]) and completes it together
//! with its delivery rows (the outbox, [`store::Effects`]); the delivery
//! loop signs and sends them ([`deliver`]). A linked document does the same
//! with `document.*` events and follow-up chats
//! ([`worker::chat::after_ingest`]).
//!
//! ## Code map
//!
//! - [`cli`]: clap definitions of every command; parsing only.
//! - [`commands`]: the commands; exit codes; signals for `ferry run`;
//!   errors printed once, on one line.
//! - [`app`]: the daemon's wiring: instance lock, startup recovery (jobs
//!   rescued, orphan uploads swept), tasks, reload, graceful shutdown.
//! - [`config`]: `ferry.yaml`. [`config::yaml`] is a YAML tree that keeps
//!   positions; [`config::decode`] reads typed values from it, collecting
//!   every error as a [`config::Diagnostic`] (`file:line:col: message`);
//!   `${VAR}` interpolation and `x_file:` secrets live there too.
//!   [`config::Secret`] never prints its value.
//! - [`rules`]: rule files: schema, validation, cross-rule checks;
//!   [`rules::template`] compiles and renders minijinja templates.
//! - [`store`]: the SQLite state database: documents, uploads, collections,
//!   jobs (leases, coalescing, fencing, [`store::Effects`] written with the
//!   outcome), deliveries (the outbox, batched attempt records), schedules,
//!   rule pauses. Schema in `migrations/`.
//! - [`openwebui`]: the typed client of the real Open WebUI API.
//!   [`openwebui::error`] classifies responses (the one place that knows
//!   Open WebUI's odd status codes), [`openwebui::sse`] parses completion
//!   streams, [`openwebui::retry`] is the pure in-call retry policy,
//!   [`openwebui::types`] the JSON shapes and version differences.
//! - [`ingest`]: verified ingestion of one file into one knowledge base,
//!   moves, removals, resuming interrupted uploads, orphan cleanup.
//! - [`watch`]: per watch rule, events → settled paths → `sync` jobs;
//!   [`watch::settle`] (pure) decides when a file is written,
//!   [`watch::reconcile`] compares tree and store and holds the safety valve.
//! - [`schedule`]: cron (croner, optional seconds) in a time zone → chat
//!   jobs; [`schedule::next_fire`] and [`schedule::missed_fire`] are pure
//!   and carry the DST and catch-up policy.
//! - [`worker`]: claims jobs and runs them; the only caller of Open WebUI
//!   in the daemon. `sync` jobs (a watched path) are in `worker`,
//!   [`worker::chat`] runs `chat` jobs and builds template contexts.
//! - [`deliver`]: outgoing webhooks: event bodies, the delivery loop,
//!   [`deliver::next_attempt`] (pure retry schedule), [`deliver::sign`]
//!   (Standard Webhooks and hex HMAC, both directions), [`deliver::guard`]
//!   (refuses private addresses).
//! - [`server`]: HTTP on a hyper loop with a header-read timeout:
//!   [`server::hooks`] (incoming webhooks), health, readiness, metrics,
//!   admin API.
//! - [`safe_fs`]: the one way a file under a watched root is looked at
//!   or read (no link followed, regular files only, bounded reads).
//! - [`paths`]: file names as data: lossless store keys, escaped display,
//!   safe upload names.
//! - [`redact`]: URLs cut down to `scheme://host[:port]/…` for anything
//!   logged, stored, served or printed.
//! - [`supervise`]: restarts long-running tasks that panic or end, counts
//!   it, and tells `/readyz`; failpoints for tests.
//! - [`testing`]: an in-process fake of Open WebUI and a scripted webhook
//!   receiver, for tests and benchmarks.
//!
//! ## Architecture invariants
//!
//! - Every Open WebUI answer must be JSON; an HTML page (the web app's
//!   answer to an unknown path) is an error naming the path, never data.
//! - Re-sign-in happens at most once per request, and only for token-type
//!   401s; Open WebUI also answers 401 for "not found" and "forbidden".
//! - A call that may have acted on the server (upload, chat, create) is
//!   repeated only when the server cannot have acted (429, no connection).
//! - An upload is recorded in the store before anything else happens to
//!   it; ferry deletes only files it uploaded itself; a changed file's new
//!   version is linked before the old one is unlinked.
//! - All database writes go through one connection; read-then-write
//!   transactions start with `BEGIN IMMEDIATE`.
//! - Configuration is all-or-nothing: either every file is valid, or every
//!   problem in every file is reported and nothing runs.
//! - Secrets are [`config::Secret`]s from the moment they are read; a URL
//!   leaves ferry (logs, store, API, CLI) only through [`redact`].
//! - A watched folder is a boundary: files under a root are stat'ed and
//!   opened only through [`safe_fs`] (guarded by the tests of
//!   `links_in_a_watched_folder_are_never_followed`); paths become text only
//!   through [`paths`].
//! - Every long-running task runs under [`supervise::supervised`].
//! - The watcher is level-triggered: a job only says "look at this path";
//!   removals always pass the reconcile's safety valve; only the lease
//!   holder writes a job's outcome.
//! - What a job brings about (deliveries, follow-up chats) is written in
//!   the transaction that finishes it; a hook answers 202 only after its
//!   job is committed. Nothing that succeeded is lost or redone by a crash.
//! - Deliveries are at least once: marked delivered only after a 2xx, and
//!   the same `webhook-id` on every attempt, redelivery and crash repeat.
//! - Dedupe keys outlive their jobs: a fire time, a sender's webhook id or a
//!   document version becomes at most one job; a pruned job leaves its key
//!   as a hash for `retention.keys` (at least 72 h; [`store::Retention`]).
//! - Workers are the only callers of Open WebUI, the delivery loop the only
//!   caller of webhooks; both take time as an input in their pure parts.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod deliver;
pub mod health;
pub mod metrics;
pub mod openwebui;
pub mod paths;
pub mod redact;
pub mod rules;
pub mod safe_fs;
pub mod server;
pub mod setup;
pub mod signing;
pub mod store;
pub mod supervise;
#[cfg(feature = "testing")]
pub mod testing;
pub mod triggers;
pub mod worker;
