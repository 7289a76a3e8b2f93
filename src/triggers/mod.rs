//! Triggers: what makes work, and the one path by which work is queued.
//!
//! A rule's `on:` is a [`Trigger`] (its settings). When it fires, its
//! producer ([`watch`] for folders, [`schedule`] for cron; the server for
//! hooks and runs by hand; the worker for `on: ingested` follow-ups) makes a
//! [`TriggerEvent`] and hands it to the [`Queue`]. [`TriggerEvent::job`] is
//! the only place that decides a job's kind, its dedupe and coalescing keys
//! and the shape of its input; [`context`] is the only place that turns
//! that input back into a template context, for the worker, `ferry render`
//! and `ferry ask` alike.
//!
//! Producers hold a [`Queue`], never the worker's state or the Open WebUI
//! client (guarded by `tests/it/architecture.rs`).
//!
//! Adding a trigger kind: a variant of [`Trigger`], [`TriggerKind`] and
//! [`TriggerEvent`] with its context here; its producer in a file of its
//! own, started by [`spawn`]; its `on:` key decoded in `rules/decode.rs`.

pub mod queue;
pub mod schedule;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::paths;
use crate::store::NewJob;
use crate::supervise::{Tasks, supervised};

pub use queue::Queue;

/// A rule's `on:` (DESIGN §3).
#[derive(Debug, Clone)]
pub enum Trigger {
    Watch(Watch),
    Schedule(Schedule),
    Webhook(WebhookTrigger),
    Ingested {
        rule: String,
    },
    /// A rule with no `on:` runs only by hand.
    Manual,
}

impl Trigger {
    /// The producer a rule with this trigger needs running, if any: a
    /// watch rule that ingests or chats, a schedule that chats. (Hooks are
    /// served by the server, `ingested` follow-ups made by the workers.)
    pub fn producer(&self, rule: &str, ingests: bool, chats: bool) -> Option<Producer> {
        let runs = match self {
            Trigger::Watch(_) => ingests || chats,
            Trigger::Schedule(_) => chats,
            Trigger::Webhook(_) | Trigger::Ingested { .. } | Trigger::Manual => false,
        };
        runs.then(|| Producer {
            rule: rule.to_string(),
            trigger: self.clone(),
            ingests,
        })
    }

    /// The event a run of this trigger would have, made from what `ferry
    /// render` is given: the file (its `file` context and hash) for a
    /// document rule, the body for a hook, this instant as a schedule's
    /// fire time. `None` for a document rule without a file.
    pub fn sample_event(&self, given: Sample, now_ms: i64) -> Option<TriggerEvent> {
        Some(match self {
            Trigger::Watch(_) | Trigger::Ingested { .. } => {
                let (file, sha256) = given.file?;
                TriggerEvent::Document {
                    kind: self.kind(),
                    file,
                    collection: given.collection,
                    sha256,
                }
            }
            Trigger::Schedule(_) => TriggerEvent::Fire {
                at: crate::clock::from_ms(now_ms),
                catch_up: false,
                coalesce: false,
            },
            Trigger::Webhook(_) => TriggerEvent::Hook {
                payload: payload_of(given.payload.unwrap_or("{}").as_bytes()),
                query: Default::default(),
                headers: Default::default(),
                delivery_id: None,
            },
            Trigger::Manual => TriggerEvent::Manual {
                vars: given.vars,
                payload: None,
            },
        })
    }

    pub fn kind(&self) -> TriggerKind {
        match self {
            Trigger::Watch(_) => TriggerKind::Watch,
            Trigger::Schedule(_) => TriggerKind::Schedule,
            Trigger::Webhook(_) => TriggerKind::Webhook,
            Trigger::Ingested { .. } => TriggerKind::Ingested,
            Trigger::Manual => TriggerKind::Manual,
        }
    }
}

/// What started a job: `trigger.kind` in templates, `trigger_kind` in the
/// store and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    Watch,
    Schedule,
    Webhook,
    Ingested,
    Manual,
    /// ferry's own upkeep (the sweep of lost uploads).
    Maintenance,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 6] = [
        TriggerKind::Watch,
        TriggerKind::Schedule,
        TriggerKind::Webhook,
        TriggerKind::Ingested,
        TriggerKind::Manual,
        TriggerKind::Maintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Watch => "watch",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Webhook => "webhook",
            TriggerKind::Ingested => "ingested",
            TriggerKind::Manual => "manual",
            TriggerKind::Maintenance => "maintenance",
        }
    }

    pub fn parse(s: &str) -> Option<TriggerKind> {
        TriggerKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The context names this kind adds to [`COMMON`] (DESIGN §3); a
    /// template that uses any other name is a `ferry check` error.
    pub fn context_names(self) -> &'static [&'static str] {
        match self {
            TriggerKind::Watch | TriggerKind::Ingested => &["file", "collection"],
            TriggerKind::Schedule => &["schedule", "last_run", "last_success"],
            TriggerKind::Webhook => &["payload", "query", "headers"],
            TriggerKind::Manual | TriggerKind::Maintenance => &[],
        }
    }
}

impl std::fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Context names every template may use (DESIGN §3).
pub const COMMON: &[&str] = &["rule", "now", "vars", "trigger"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    Remove,
    Keep,
}

/// `on.watch.max_size` when not given; also the limit of `ferry ingest`.
pub const DEFAULT_MAX_SIZE: u64 = 50 << 20;

#[derive(Debug, Clone)]
pub struct Watch {
    pub path: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub settle: Duration,
    /// The quiet time of a file its writer closed (`None`: a quarter of
    /// `settle`, from 100 ms to 2 s).
    pub settle_closed: Option<Duration>,
    pub poll: Option<Duration>,
    pub max_size: u64,
    pub on_delete: OnDelete,
    /// How often the whole tree is compared with the state DB (besides at
    /// start and after an event overflow).
    pub reconcile: Duration,
}

/// What a watch rule leaves out unless told otherwise, in gitignore
/// syntax: hidden names (`.git/`, `.DS_Store`, the `.ferryignore` itself),
/// dependency and cache folders, system litter, and editors' and office
/// suites' temporary and lock files. A `!` line in the root's
/// `.ferryignore` takes one back (`!node_modules/`).
pub const DEFAULT_IGNORES: &[&str] = &[
    ".*",
    "node_modules/",
    "__pycache__/",
    "Thumbs.db",
    "desktop.ini",
    "~$*",
    "*.part",
    "*.tmp",
    "*.swp",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    Skip,
    RunOnce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Skip,
    Queue,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: String,
    pub timezone: chrono_tz::Tz,
    pub missed: Missed,
    pub overlap: Overlap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    StandardWebhooks,
    HmacSha256,
    Github,
    Bearer,
    None,
}

#[derive(Debug, Clone)]
pub struct WebhookTrigger {
    pub path: String,
    pub scheme: AuthScheme,
    pub secret: Option<Secret>,
    pub header: Option<String>,
    pub max_body: u64,
    /// Request headers templates see besides [`DEFAULT_HOOK_HEADERS`]
    /// (`on.webhook.headers`, lower case).
    pub headers: Vec<String>,
    /// Accepted requests per second (`on.webhook.rate_limit`, e.g.
    /// `20/s`, `600/min`); a burst of one second's worth (at least 10)
    /// passes at once, more get 429 with `Retry-After`.
    pub rate_per_sec: f64,
    /// Requests of this hook handled at once (`on.webhook.max_in_flight`);
    /// more get 429 at once, so slow senders cannot hold every slot.
    pub max_in_flight: usize,
}

/// `on.webhook.max_in_flight` when not given.
pub const DEFAULT_HOOK_IN_FLIGHT: usize = 64;

/// `on.webhook.rate_limit` when not given.
pub const DEFAULT_HOOK_RATE: f64 = 100.0;

/// `20/s`, `600/min`, `1000/h` → requests per second.
pub fn parse_rate(s: &str) -> Option<f64> {
    let (n, per) = s.trim().split_once('/')?;
    let n: f64 = n
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)?;
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return None,
    };
    Some(n / seconds)
}

/// The request headers a hook's templates, job and deliveries see without
/// `on.webhook.headers`: what describes the request, never a credential.
pub const DEFAULT_HOOK_HEADERS: [&str; 9] = [
    "content-type",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "idempotency-key",
    "x-github-delivery",
    "x-github-event",
    "x-gitlab-event",
    "x-request-id",
];

/// Headers that carry credentials: never let through, not even by name.
pub fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "webhook-signature"
    ) || [
        "token",
        "secret",
        "signature",
        "key",
        "auth",
        "password",
        "hmac",
        "session",
        "cookie",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Job kind: bring one path of a watch rule in line with the folder.
pub const SYNC: &str = "sync";
/// Job kind: run a rule's `chat`.
pub const CHAT: &str = "chat";
/// Job kind: adopt or delete uploads whose answers were lost.
pub const SWEEP: &str = "sweep";
/// Job kind: a rule's knowledge base found or created, its sharing and
/// description kept as the rule says.
pub const COLLECTION: &str = "collection";
/// Job kind: a `rule.paused` or `rule.resumed` event for the rule's
/// deliveries (the watcher's safety valve).
pub const NOTIFY: &str = "notify";
/// Every job kind (metrics show each, zero-filled).
pub const JOB_KINDS: [&str; 5] = [SYNC, CHAT, SWEEP, COLLECTION, NOTIFY];
/// The rule name of ferry's own upkeep jobs (no rule file can have it).
pub const UPKEEP_RULE: &str = ":ferry";

const CHAT_ATTEMPTS: i64 = 5;
const SYNC_ATTEMPTS: i64 = 8;
const SWEEP_ATTEMPTS: i64 = 20;

/// Something that happened, for one rule: what a producer hands the queue.
#[derive(Debug, Clone)]
pub enum TriggerEvent {
    /// A watched path to look at (again), once `after` has passed: a `sync`
    /// job, one waiting per path.
    Path { path: PathBuf, after: Duration },
    /// A file version a chat follows: a watch rule's own `chat`
    /// ([`TriggerKind::Watch`]) or an `on: ingested` rule's
    /// ([`TriggerKind::Ingested`]). Once per version (path and hash).
    Document {
        kind: TriggerKind,
        file: Value,
        collection: Value,
        sha256: String,
    },
    /// A schedule's fire time: once per fire time, ever.
    Fire {
        at: DateTime<Utc>,
        catch_up: bool,
        /// `overlap: queue`: a fire while the last one waits joins it.
        coalesce: bool,
    },
    /// An accepted hook request; `delivery_id` is the sender's event id
    /// (one job per id).
    Hook {
        payload: Value,
        query: BTreeMap<String, String>,
        headers: Map<String, Value>,
        delivery_id: Option<String>,
    },
    /// A run by hand, with per-run `vars` and, for a hook rule, the body
    /// it would have had.
    Manual {
        vars: Map<String, Value>,
        payload: Option<Value>,
    },
    /// Upkeep: adopt or delete uploads whose answers were lost; runs at
    /// `at_ms`. With `before_s` (Unix seconds), those made before it (the
    /// start-up sweep: the process that made them is gone); without, those
    /// older than any upload still under way. `round` counts the sweeps
    /// since the last lost answer: they go on, further apart, for a while
    /// (a stalled server may carry out a lost upload late).
    Sweep {
        before_s: Option<i64>,
        at_ms: i64,
        round: u32,
    },
    /// Upkeep: the rule's knowledge base brought in step with the rule
    /// (at start and after each reload).
    Collection,
    /// The watcher paused the rule (with the reason) or resumed it.
    RuleState { paused: Option<String> },
}

impl TriggerEvent {
    pub fn kind(&self) -> TriggerKind {
        match self {
            TriggerEvent::Path { .. } => TriggerKind::Watch,
            TriggerEvent::Document { kind, .. } => *kind,
            TriggerEvent::Fire { .. } => TriggerKind::Schedule,
            TriggerEvent::Hook { .. } => TriggerKind::Webhook,
            TriggerEvent::Manual { .. } => TriggerKind::Manual,
            TriggerEvent::Sweep { .. }
            | TriggerEvent::Collection
            | TriggerEvent::RuleState { .. } => TriggerKind::Maintenance,
        }
    }

    /// The job this event becomes for `rule`, at `now_ms`.
    pub fn job(&self, rule: &str, now_ms: i64) -> NewJob {
        let chat = |input: Value, run_after: i64| NewJob {
            rule: rule.to_string(),
            kind: CHAT.into(),
            trigger_kind: self.kind().as_str().into(),
            input,
            run_after,
            max_attempts: CHAT_ATTEMPTS,
            coalesce_key: None,
            dedupe_key: None,
        };
        match self {
            TriggerEvent::Path { path, after } => {
                let key = paths::key(path);
                NewJob {
                    rule: rule.to_string(),
                    kind: SYNC.into(),
                    trigger_kind: TriggerKind::Watch.as_str().into(),
                    input: json!({ "path": key }),
                    run_after: now_ms + after.as_millis() as i64,
                    max_attempts: SYNC_ATTEMPTS,
                    coalesce_key: Some(format!("{SYNC}:{rule}:{key}")),
                    dedupe_key: None,
                }
            }
            TriggerEvent::Document {
                file,
                collection,
                sha256,
                ..
            } => {
                let path = file
                    .get("key")
                    .or_else(|| file.get("path"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let mut job = chat(json!({ "file": file, "collection": collection }), now_ms);
                job.dedupe_key = Some(format!("chat:{rule}:{path}:{sha256}"));
                job
            }
            TriggerEvent::Fire {
                at,
                catch_up,
                coalesce,
            } => {
                let at_ms = at.timestamp_millis();
                let input = json!({
                    "schedule": {
                        "fire_time": crate::clock::rfc3339_secs(at_ms),
                        "catch_up": catch_up,
                    },
                });
                let mut job = chat(input, at_ms);
                job.dedupe_key = Some(format!("schedule:{rule}:{at_ms}"));
                if *coalesce {
                    job.coalesce_key = Some(format!("schedule:{rule}"));
                }
                job
            }
            TriggerEvent::Hook {
                payload,
                query,
                headers,
                delivery_id,
            } => {
                let mut job = chat(
                    json!({ "payload": payload, "query": query, "headers": headers }),
                    now_ms,
                );
                job.dedupe_key = delivery_id.as_ref().map(|id| format!("hook:{rule}:{id}"));
                job
            }
            TriggerEvent::Manual { vars, payload } => {
                let mut input = json!({ "vars": vars });
                if let Some(payload) = payload {
                    input["payload"] = payload.clone();
                }
                chat(input, now_ms)
            }
            TriggerEvent::Sweep {
                before_s,
                at_ms,
                round,
            } => NewJob {
                rule: UPKEEP_RULE.into(),
                kind: SWEEP.into(),
                trigger_kind: TriggerKind::Maintenance.as_str().into(),
                input: json!({ "before": before_s, "round": round }),
                run_after: *at_ms,
                max_attempts: SWEEP_ATTEMPTS,
                coalesce_key: Some(SWEEP.into()),
                dedupe_key: None,
            },
            TriggerEvent::RuleState { paused } => NewJob {
                rule: rule.to_string(),
                kind: NOTIFY.into(),
                trigger_kind: TriggerKind::Maintenance.as_str().into(),
                input: json!({ "paused": paused }),
                run_after: now_ms,
                max_attempts: SWEEP_ATTEMPTS,
                coalesce_key: None,
                dedupe_key: None,
            },
            TriggerEvent::Collection => NewJob {
                rule: rule.to_string(),
                kind: COLLECTION.into(),
                trigger_kind: TriggerKind::Maintenance.as_str().into(),
                input: json!({}),
                run_after: now_ms,
                max_attempts: SWEEP_ATTEMPTS,
                coalesce_key: Some(format!("{COLLECTION}:{rule}")),
                dedupe_key: None,
            },
        }
    }
}

/// A hook's payload: the parsed body, else its text. serde_json refuses JSON nested deeper
/// than 128 levels (no stack overflow, no deep value to walk later): such a
/// body is then text like any other that is not JSON.
pub fn payload_of(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// What a rule needs of itself to build a context.
pub struct RuleView<'a> {
    pub name: &'a str,
    pub trigger: &'a Trigger,
    pub vars: &'a Map<String, Value>,
}

/// The template context of a run (DESIGN §3): the names every template
/// has, plus what the trigger supplied in the job's `input`. `vars` are
/// the rule's defaults overlaid with the run's own. What the rule's own
/// trigger provides is there also when it runs by hand (its templates were
/// checked against it): a schedule's history, so prompts can say "since
/// {{ last_success.at }}", and an empty hook request.
pub fn context(rule: RuleView<'_>, kind: &str, input: &Value, now_ms: i64) -> Value {
    let mut vars = rule.vars.clone();
    if let Some(Value::Object(given)) = input.get("vars") {
        for (k, v) in given {
            vars.insert(k.clone(), v.clone());
        }
    }
    let mut ctx = Map::new();
    ctx.insert("rule".into(), rule.name.into());
    ctx.insert("now".into(), crate::clock::rfc3339_ms(now_ms).into());
    ctx.insert("vars".into(), Value::Object(vars));
    ctx.insert("trigger".into(), json!({ "kind": kind }));
    if let Value::Object(fields) = input {
        for (k, v) in fields {
            if !matches!(k.as_str(), "vars" | "trigger") {
                ctx.insert(k.clone(), v.clone());
            }
        }
    }
    match rule.trigger {
        Trigger::Schedule(_) => {
            ctx.entry("schedule").or_insert(json!({
                "fire_time": crate::clock::rfc3339_secs(now_ms),
                "catch_up": false,
            }));
            ctx.entry("last_run").or_insert(json!({ "at": null }));
            ctx.entry("last_success")
                .or_insert(json!({ "at": null, "answer": null }));
        }
        Trigger::Webhook(_) => {
            ctx.entry("payload").or_insert(json!({}));
            ctx.entry("query").or_insert(json!({}));
            ctx.entry("headers").or_insert(json!({}));
        }
        _ => {}
    }
    Value::Object(ctx)
}

/// The `file` object of a document context, without reading the file:
/// `path` is shown lossily to templates; a path that is not UTF-8 also
/// carries its exact `key`.
pub fn file_fields(
    path: &Path,
    size: Option<u64>,
    sha256: Option<&str>,
    text: Option<String>,
) -> Value {
    let lossy = |s: Option<&std::ffi::OsStr>| s.map(|n| n.to_string_lossy().into_owned());
    let mut file = json!({
        "path": path.to_string_lossy(),
        "name": lossy(path.file_name()),
        "stem": lossy(path.file_stem()),
        "ext": lossy(path.extension()).unwrap_or_default(),
        "size": size,
        "sha256": sha256,
        "text": text,
    });
    if path.to_str().is_none() {
        file["key"] = paths::key(path).into();
    }
    file
}

/// The path a document context names, exactly (see [`file_fields`]).
pub fn file_path(file: &Value) -> Option<PathBuf> {
    file.get("key")
        .or_else(|| file.get("path"))
        .and_then(Value::as_str)
        .map(paths::from_key)
}

/// What `ferry render` supplies in place of a real event.
#[derive(Debug, Default)]
pub struct Sample<'a> {
    pub vars: Map<String, Value>,
    /// The file's `file` context and content hash.
    pub file: Option<(Value, String)>,
    pub collection: Value,
    /// A hook's body.
    pub payload: Option<&'a str>,
}

/// One rule's producer to start: its name and trigger.
pub struct Producer {
    pub rule: String,
    pub trigger: Trigger,
    /// The rule keeps a knowledge base: a watcher also has it checked
    /// (drift repair) every `reconcile`.
    pub ingests: bool,
}

/// Starts the producer of each rule that has one (watchers and timers;
/// hooks are served by the server, `ingested` follow-ups by the workers),
/// each supervised; cancel the token to stop them all.
pub fn spawn(
    producers: Vec<Producer>,
    queue: &Queue,
    tasks: &Arc<Tasks>,
    metrics: &Arc<crate::metrics::Metrics>,
) -> (CancellationToken, tokio::task::JoinSet<()>) {
    let token = CancellationToken::new();
    let mut set = tokio::task::JoinSet::new();
    for Producer {
        rule,
        trigger,
        ingests,
    } in producers
    {
        let (queue, cancel) = (queue.clone(), token.child_token());
        match trigger {
            Trigger::Watch(w) => {
                let metrics = metrics.clone();
                set.spawn(supervised(
                    tasks.clone(),
                    format!("watch:{rule}"),
                    cancel.clone(),
                    move || {
                        let (queue, rule, w) = (queue.clone(), rule.clone(), w.clone());
                        let check = ingests.then_some(w.reconcile);
                        watch::run(queue, metrics.clone(), rule, w, check, cancel.clone())
                    },
                ));
            }
            Trigger::Schedule(s) => {
                set.spawn(supervised(
                    tasks.clone(),
                    format!("schedule:{rule}"),
                    cancel.clone(),
                    move || schedule::run(queue.clone(), rule.clone(), s.clone(), cancel.clone()),
                ));
            }
            Trigger::Webhook(_) | Trigger::Ingested { .. } | Trigger::Manual => {}
        }
    }
    (token, set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_decides_its_job() {
        let now = 1_000_000;
        let sync = TriggerEvent::Path {
            path: "/in/a.md".into(),
            after: Duration::from_secs(2),
        }
        .job("mirror", now);
        assert_eq!(
            (sync.kind.as_str(), sync.trigger_kind.as_str()),
            (SYNC, "watch")
        );
        assert_eq!(sync.run_after, now + 2_000);
        assert_eq!(sync.coalesce_key.as_deref(), Some("sync:mirror:/in/a.md"));

        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let fire = TriggerEvent::Fire {
            at,
            catch_up: true,
            coalesce: true,
        }
        .job("digest", now);
        assert_eq!(fire.run_after, 1_700_000_000_000);
        assert_eq!(
            fire.dedupe_key.as_deref(),
            Some("schedule:digest:1700000000000")
        );
        assert_eq!(fire.coalesce_key.as_deref(), Some("schedule:digest"));
        assert_eq!(fire.input["schedule"]["catch_up"], true);

        let hook = TriggerEvent::Hook {
            payload: json!({"a": 1}),
            query: Default::default(),
            headers: Default::default(),
            delivery_id: Some("evt-1".into()),
        }
        .job("alerts", now);
        assert_eq!(hook.dedupe_key.as_deref(), Some("hook:alerts:evt-1"));
        assert_eq!(hook.input["payload"]["a"], 1);

        let doc = TriggerEvent::Document {
            kind: TriggerKind::Ingested,
            file: json!({"path": "/in/a.md"}),
            collection: Value::Null,
            sha256: "ab".into(),
        }
        .job("summary", now);
        assert_eq!(doc.trigger_kind, "ingested");
        assert_eq!(doc.dedupe_key.as_deref(), Some("chat:summary:/in/a.md:ab"));
    }

    #[test]
    fn context_takes_now_and_fills_the_rules_own_trigger() {
        let trigger = Trigger::Schedule(Schedule {
            cron: "* * * * *".into(),
            timezone: chrono_tz::UTC,
            missed: Missed::Skip,
            overlap: Overlap::Skip,
        });
        let vars = Map::from_iter([("team".to_string(), json!("ops"))]);
        let rule = RuleView {
            name: "digest",
            trigger: &trigger,
            vars: &vars,
        };
        let input = json!({ "vars": { "team": "dev" } });
        let ctx = context(rule, "manual", &input, 1_500);
        assert_eq!(ctx["now"], "1970-01-01T00:00:01.500Z");
        assert_eq!(ctx["vars"]["team"], "dev");
        assert_eq!(ctx["trigger"]["kind"], "manual");
        assert_eq!(ctx["schedule"]["fire_time"], "1970-01-01T00:00:01Z");
        assert_eq!(ctx["last_success"]["at"], Value::Null);
    }
}
