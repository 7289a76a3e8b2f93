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
//!  ferry.yaml + rules/*.yaml ──► setup (config + rules, all or nothing)
//!
//!  producers: triggers::watch, triggers::schedule,      ┌──────── Queue ────────┐
//!             server::hooks, admin run, follow-ups ───► │ TriggerEvent → job    │──► store (one writer,
//!                                                      └───────────────────────┘     group commit)
//!                                                                                        │ claim
//!  workers (worker::Workers: the only holder of openwebui::Client) ◄──────────────────────┘
//!     │ outcome + effects (deliveries, follow-up chats) in one commit
//!     ▼
//!  outbox (deliveries) ──► deliver::run (the only caller of webhooks)
//!  server: hooks, admin API, /readyz (reads health::Health), /metrics (metrics::Metrics)
//! ```
//!
//! `ferry run` ([`app`]) wires a [`clock::Clock`], the [`store::Store`],
//! the [`triggers::Queue`], the [`worker::Workers`], the delivery loop,
//! the producers of the rules and the HTTP server. The one-shot
//! [`commands`] drive the same pieces directly.
//!
//! A day in the life of an event: `POST /hooks/alerts` is checked
//! ([`server::hooks`]), becomes a [`triggers::TriggerEvent::Hook`], and the
//! queue commits its job ([`triggers::TriggerEvent::job`] decides kind,
//! keys and input) before the 202; a worker claims it ([`worker::chat`]),
//! fills the templates from [`worker::chat::run_context`], asks Open WebUI,
//! and completes the job together with its delivery rows (the outbox,
//! [`store::Effects`]); the delivery loop signs and sends them
//! ([`deliver`], [`signing`]).
//!
//! ## Code map
//!
//! Where a change goes:
//!
//! - [`cli`]: clap definitions of every command; parsing only.
//! - [`commands`]: one file per command family (`run`, `check` with its
//!   next-step hints, `init`, `owui`: whoami/models/pull/chats/ask,
//!   `ingest`, `render`, `plan`: plan and sync, `admin`: trigger,
//!   `history`: docs/jobs/deliveries; completions and the man page in
//!   `mod.rs`); exit codes; errors printed once, on one line, on stderr;
//!   log setup (colours, journald priorities). The only user of `anyhow`.
//! - [`app`]: the daemon's wiring: instance lock, rescue of leases, the
//!   start-up sweep queued first, the collections' upkeep queued at start
//!   and reload, tasks, reload, shutdown in phases.
//! - [`setup`]: config and rules loaded together, all or nothing.
//! - [`config`]: `ferry.yaml`. [`config::yaml`] is a YAML tree that keeps
//!   positions; [`config::decode`] reads typed values from it, collecting
//!   every error as a [`config::Diagnostic`] (`file:line:col: message`);
//!   `${VAR}` interpolation and `x_file:` secrets live there too.
//!   [`config::Secret`] never prints its value.
//! - [`rules`]: rule files: [`rules::model`] (what a rule is; the rule set
//!   in force), [`rules::decode`] (schema, every problem at once),
//!   [`rules::check`] (across rules; templates against their trigger),
//!   [`rules::template`] (minijinja, compiled once at load and kept).
//! - [`triggers`]: what makes work. A rule's `on:` ([`triggers::Trigger`]),
//!   the events producers make ([`triggers::TriggerEvent`]), the job each
//!   becomes and the template context it gives; [`triggers::Queue`], the
//!   one enqueue path; the producers [`triggers::watch`] (events → settled
//!   paths; [`triggers::watch::settle`] and [`triggers::watch::reconcile`]
//!   are pure, the latter with the default ignores and `.ferryignore`) and [`triggers::schedule`] (cron in a time zone; pure
//!   [`triggers::schedule::next_fire`] and `missed_fire`).
//!   Adding a trigger kind: the enums and context in `triggers/mod.rs`,
//!   its producer in a file of its own, its `on:` key in
//!   `rules/decode.rs`.
//! - [`worker`]: claims jobs (the next one in the same group commit as the
//!   last one's outcome; idle, one worker wakes on the clock and the others
//!   when rung, each that claims ringing for the next) and runs them:
//!   [`worker::sync`] (a watched path), [`worker::chat`] (a rule's chat;
//!   the full template context), [`worker::ingest`] (verified ingestion of
//!   one file, moves, removals, resuming interrupted uploads, orphan
//!   cleanup), [`worker::collection`]
//!   (a rule's knowledge base created, shared and described as the rule
//!   says, kept so at start and reload; drift repair), [`worker::tree`]
//!   (the folder tree in a collection: where a file goes, directories made,
//!   renamed with their folder, removed when ferry's and empty),
//!   [`worker::plan`] (what a sync would do, read-only: `ferry plan`,
//!   `ferry sync`); the health probe.
//! - [`openwebui`]: the typed client of the real Open WebUI API, by
//!   section: `client` (transport, auth, retries), `server`, `knowledge`
//!   (and every paged list: one that shifts while it is read is read
//!   again; links gathered into batches), `files`, `chat`; [`openwebui::error`] classifies responses
//!   (the one place that knows Open WebUI's odd status codes),
//!   [`openwebui::sse`] parses streams, [`openwebui::retry`] is the pure
//!   in-call retry policy,
//!   [`openwebui::types`] the JSON shapes and version differences.
//! - [`store`]: the SQLite state database and the only code that speaks
//!   SQL: documents, uploads, collections, jobs (leases, coalescing,
//!   fencing, [`store::Effects`] written with the outcome), deliveries (the
//!   outbox), schedules, rule pauses, retention, stats. All writes go
//!   through its one writer thread (`store/writer.rs`: group commit,
//!   a savepoint per change, two durabilities); `store/sql.rs` holds the connections
//!   (rusqlite, called in place; sqlx only runs the migrations). Schema in
//!   `migrations/`.
//! - [`deliver`]: outgoing webhooks: event bodies ([`deliver::effects_for`],
//!   time an argument), the delivery loop, [`deliver::next_attempt`] (pure
//!   retry schedule), [`deliver::guard`] (refuses private addresses).
//! - [`signing`]: Standard Webhooks and hex HMAC, both directions (used by
//!   [`deliver`] and [`server::hooks`]).
//! - [`server`]: HTTP on a hyper loop with a header-read timeout:
//!   [`server::hooks`] (incoming webhooks), health, readiness, metrics;
//!   [`server::api`] (the admin API, typed, and its OpenAPI description;
//!   the tool token's scope); [`server::ui`] (the status pages: sessions,
//!   CSRF, the handlers gathering data) with [`server::ui::pages`] (the
//!   markup, pure functions of plain data); [`server::limits`] (rates,
//!   slots, connections).
//! - [`clock`]: the wall clock (system or manual); RFC 3339 formatting.
//! - [`health`]: what the workers last saw of Open WebUI, for `/readyz`,
//!   and the job and delivery loops' progress beats.
//! - [`service`]: what systemd sees (`Type=notify`): READY, RELOADING,
//!   STOPPING, a one-line STATUS, and watchdog pings only while both loops
//!   make progress.
//! - [`metrics`]: the Prometheus registry (prometheus-client): events
//!   counted where they happen, states read from the store per scrape and
//!   zero-filled.
//! - [`safe_fs`]: the one way a file under a watched root is looked at
//!   or read (no link followed, regular files only, bounded reads).
//! - [`paths`]: file names as data: lossless store keys, escaped display,
//!   safe upload names.
//! - [`redact`]: URLs cut down to `scheme://host[:port]/…` for anything
//!   logged, stored, served or printed.
//! - [`supervise`]: restarts long-running tasks that panic or end, counts
//!   it, and tells `/readyz`; failpoints for tests.
//! - `testing` (cargo feature `testing`, on for tests and benches): an
//!   in-process fake of Open WebUI and a scripted webhook receiver.
//!
//! Tests: `tests/it/` is the one integration-test binary; its `helpers`
//! hold `TestApp` (ferry in-process on the fake, typed config, manual
//! clock), `drain` and `until`. The `e2e*` modules run against real Open
//! WebUI servers through `scripts/e2e.sh`.
//!
//! ## Architecture invariants
//!
//! Each names what guards it; `tests/it/architecture.rs` fails the build
//! when a room's rule is broken (and shows each rule catching a planted
//! violation).
//!
//! - Only the workers call Open WebUI in the daemon: [`worker::Workers`]
//!   alone holds the client; the start-up recovery is their first job and
//!   `/readyz` reads [`health::Health`]. *Guard*: architecture rule "hold
//!   the Open WebUI client" (allowed in `worker/`, `commands/`, `app.rs`).
//! - Triggers and the server reach the workers only through the queue, and
//!   only [`triggers::TriggerEvent::job`] builds a job. *Guard*:
//!   architecture rules "reach the workers only through the queue" and
//!   "decided only by `TriggerEvent::job`"; `triggers::tests`.
//! - Only the store speaks SQL; its connections are private. *Guard*:
//!   architecture rule "only the store speaks SQL" (sqlx and rusqlite).
//! - All database writes go through one writer thread; changes that arrive
//!   together share a commit, each in its own savepoint, each with its own
//!   fencing and dedupe checks. A batch commits without waiting for the
//!   disk only when every change in it is `Durability::Relaxed` (one ferry
//!   repairs by itself after a power cut: claims, leases, an upload's id, a
//!   link). *Guard*: `store::writer::tests`, the store's lease tests
//!   (`store::jobs::tests`).
//! - Time is an input: the wall clock is read only through
//!   [`clock::Clock`]; template contexts and event bodies take `now`.
//!   *Guard*: architecture rule "the wall clock"; the schedule tests run on
//!   a manual clock (`tests/it/triggers.rs`).
//! - No import cycles between top-level modules. *Guard*: architecture
//!   rule "no import cycles".
//! - Every Open WebUI answer must be JSON; an HTML page is an error naming
//!   the path, never data. *Guard*: `openwebui::error` tests,
//!   `client_faults::html_instead_of_json_names_the_path`.
//! - Re-sign-in happens at most once per request, and only for token-type
//!   401s. *Guard*: `client_faults::token_401_signs_in_again_exactly_once`,
//!   `concurrent_401s_share_one_sign_in`, `not_found_401_does_not_sign_in_again`.
//! - A call that may have acted on the server (upload, chat, create) is
//!   repeated only when the server cannot have acted (429, no connection).
//!   *Guard*: `client_faults::server_error_on_chat_is_not_repeated_but_on_get_it_is`.
//! - An upload is recorded in the store before anything else happens to
//!   it; ferry deletes only files it uploaded itself; a changed file's new
//!   version is linked before the old one is unlinked. *Guard*:
//!   `daemon::an_upload_a_crash_left_unrecorded_is_taken_up_not_repeated`,
//!   `daemon::mirror_follows_the_folder`, the e2e kill -9 loop.
//! - Configuration is all-or-nothing. *Guard*:
//!   `check::five_mistakes_in_two_files_are_all_reported`,
//!   `daemon::reload_keeps_the_old_rules_when_the_new_ones_are_invalid`.
//! - Secrets are [`config::Secret`]s from the moment they are read; a URL
//!   leaves ferry only through [`redact`]. *Guard*:
//!   `secrets::planted_secrets_reach_no_log_row_answer_or_output`.
//! - A watched folder is a boundary: files under a root are stat'ed and
//!   opened only through [`safe_fs`]; paths become text only through
//!   [`paths`]. *Guard*: architecture rule "watched files go through
//!   safe_fs", `daemon::links_in_a_watched_folder_are_never_followed`.
//! - `READY=1` waits for the store and the listener only, never for Open
//!   WebUI; `WATCHDOG=1` only while the job and delivery loops beat.
//!   *Guard*: `systemd::ready_status_and_a_watchdog_that_follows_the_loops`.
//! - The admin API's description cannot miss a route: routes are added
//!   only with `utoipa_axum::routes!`, which registers the handler and its
//!   description together. *Guard*: architecture rule "lists every one",
//!   `api::every_described_operation_is_served`.
//! - The status pages change nothing without a session and its CSRF token,
//!   and render every value escaped. *Guard*:
//!   `ui::pages_need_a_session_and_actions_need_its_token`,
//!   `server::ui::pages::tests`, `e2e_ui` in a real browser.
//! - Every long-running task runs under [`supervise::supervised`].
//!   *Guard*: `daemon::a_watcher_that_panics_is_reported_and_comes_back`.
//! - The watcher is level-triggered: a job only says "look at this path";
//!   removals always pass the reconcile's safety valve; only the lease
//!   holder writes a job's outcome. *Guard*: `triggers::watch::reconcile`
//!   tests, `daemon::vanished_root_pauses_and_comes_back`,
//!   `store::jobs::tests::claim_counts_the_attempt_and_fences_completion`.
//! - What a job brings about (deliveries, follow-up chats) is written in
//!   the commit that finishes it; a hook answers 202 only after its job is
//!   committed. *Guard*: `crash_deliveries::kill_9_during_deliveries_loses_nothing`.
//! - No due job waits while a worker is idle: the bell that wakes one idle
//!   worker is passed on by each claim that finds a job. *Guard*:
//!   `triggers::jobs_due_together_wake_idle_workers_until_every_request_slot_is_busy`.
//! - Deliveries are at least once, with the same `webhook-id` on every
//!   attempt. *Guard*: the same crash test, `deliver` tests.
//! - Dedupe keys outlive their jobs (hashes kept for `retention.keys`).
//!   *Guard*: `store::retention::tests`,
//!   `store::jobs::tests::release_refunds_the_attempt_and_dedupe_is_forever`.

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
pub mod service;
pub mod setup;
pub mod signing;
pub mod store;
pub mod supervise;
#[cfg(feature = "testing")]
pub mod testing;
pub mod triggers;
pub mod worker;
