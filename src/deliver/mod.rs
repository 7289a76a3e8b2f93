//! Outgoing webhook deliveries (DESIGN §5): the only code that calls
//! webhooks.
//!
//! - [`effects_for`] turns a finished job into delivery rows (the outbox):
//!   one per matching `deliver` entry, body rendered then and there, so an
//!   attempt re-sends exactly the same bytes.
//! - [`run`] claims due rows with a lease, at most `max_in_flight` per
//!   destination, sends them, and records the outcomes in batches (one
//!   commit for many answers keeps `synchronous=FULL` affordable).
//! - [`next_attempt`] is the pure retry schedule; [`crate::signing`] the signatures;
//!   [`guard`] the private-address guard.
//!
//! Architecture invariant: at-least-once. A delivery is marked delivered
//! only after a 2xx; a crash between the two sends it again with the same
//! `webhook-id`, which receivers use to drop the duplicate.

pub mod guard;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::WebhookConfig;
use crate::health::{Health, Loop};
use crate::rules::Rule;
use crate::store::{AttemptNext, AttemptRecord, Delivery, Effects, NewDelivery, Store};

/// Response bodies are stored up to this size.
pub const RESPONSE_LIMIT: usize = 64 * 1024;
/// Requests in flight over all destinations.
const MAX_IN_FLIGHT: usize = 64;
/// Deliveries claimed ahead of a free request slot, as a multiple of the
/// slots: the next one is ready the moment a request ends, instead of
/// after a claim's commit.
const CLAIM_AHEAD: usize = 4;

pub const USER_AGENT: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));

/// The event types a `deliver` entry receives: its `events`, else the
/// rule's `chat.*` events when it chats, else its `document.*` events.
pub fn wants(rule: &Rule, events: &[String], event_type: &str) -> bool {
    if !events.is_empty() {
        return events.iter().any(|e| e == event_type);
    }
    if crate::rules::OPT_IN_EVENTS.contains(&event_type) {
        return false;
    }
    if rule.chat.is_some() {
        event_type.starts_with("chat.")
    } else {
        event_type.starts_with("document.")
    }
}

/// The `document` of an event, from a run's context.
fn document_of(ctx: &Value, data: &Value) -> Value {
    if let Some(d) = data.get("document") {
        return d.clone();
    }
    match ctx.get("file") {
        Some(f) if f.is_object() => json!({
            "path": f["path"], "name": f["name"], "sha256": f["sha256"],
            "collection": ctx.pointer("/collection/name").cloned().unwrap_or(Value::Null),
            "file_id": f.get("file_id").cloned().unwrap_or(Value::Null),
        }),
        _ => Value::Null,
    }
}

/// The deliveries of one event of `rule` at `now_ms`. `ctx` is the run's
/// template context; `data` what the job produced (answer, model, … or
/// error).
pub fn effects_for(
    rule: &Rule,
    event_type: &str,
    job_id: &str,
    ctx: &Value,
    data: Value,
    now_ms: i64,
) -> Effects {
    let mut effects = Effects::default();
    let document = document_of(ctx, &data);
    for entry in &rule.deliver {
        if !wants(rule, &entry.events, event_type) {
            continue;
        }
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let field = |k: &str| data.get(k).cloned().unwrap_or(Value::Null);
        let (body, error) = match &entry.body {
            None => {
                let event = json!({
                    "type": event_type,
                    "id": id,
                    "rule": rule.name,
                    "timestamp": crate::clock::rfc3339_ms(now_ms),
                    "data": {
                        "job_id": job_id,
                        "trigger": ctx.get("trigger").cloned().unwrap_or(Value::Null),
                        "answer": field("answer"),
                        "model": field("model"),
                        "sources": data.get("sources").cloned().unwrap_or(json!([])),
                        "usage": data.get("usage").cloned().unwrap_or(json!({})),
                        "chat_id": field("chat_id"),
                        "document": document,
                        "vars": ctx.get("vars").cloned().unwrap_or(json!({})),
                        "error": field("error"),
                    }
                });
                (event.to_string().into_bytes(), None)
            }
            Some(source) => {
                let mut c: Map<String, Value> = ctx.as_object().cloned().unwrap_or_default();
                for k in ["answer", "sources", "model", "usage", "error"] {
                    c.insert(k.into(), field(k));
                }
                c.insert("chat".into(), json!({ "id": field("chat_id") }));
                c.insert("job".into(), json!({ "id": job_id }));
                c.insert("event".into(), json!({ "type": event_type, "id": id }));
                c.insert("document".into(), document.clone());
                match source.render(&Value::Object(c)) {
                    Ok(text) => (text.into_bytes(), None),
                    Err(p) => (
                        Vec::new(),
                        Some(format!("deliver.body template: {}", p.message)),
                    ),
                }
            }
        };
        effects.deliveries.push(NewDelivery {
            id,
            job_id: Some(job_id.to_string()),
            rule: rule.name.clone(),
            destination: entry.to.clone(),
            event_type: event_type.to_string(),
            body,
            error,
        });
    }
    effects
}

/// When to try again after `attempts_done` attempts failed, or `None`
/// when the schedule is spent (the delivery is dead). `schedule[0]` is the
/// delay of the first attempt, so `schedule[n]` follows the n-th failure.
/// ±20 % jitter (`jitter` in 0..1) keeps retries of one outage apart; a
/// `Retry-After` is never undercut (capped at an hour).
pub fn next_attempt(
    schedule: &[Duration],
    attempts_done: i64,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let base = *schedule.get(usize::try_from(attempts_done).ok()?)?;
    let jittered = base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    Some(match retry_after {
        Some(r) => jittered.max(r.min(Duration::from_secs(3600))),
        None => jittered,
    })
}

/// A configured destination with its own HTTP client (timeouts, guard).
pub struct Destination {
    pub config: WebhookConfig,
    client: reqwest::Client,
}

/// The destinations in force; a reload (SIGHUP) replaces them whole. A
/// send keeps the destination it was claimed under; the next claim sees
/// the new set.
#[derive(Default)]
pub struct Destinations(std::sync::RwLock<Arc<HashMap<String, Destination>>>);

impl Destinations {
    pub fn new(map: HashMap<String, Destination>) -> Destinations {
        Destinations(std::sync::RwLock::new(Arc::new(map)))
    }

    pub fn current(&self) -> Arc<HashMap<String, Destination>> {
        self.0.read().expect("not poisoned").clone()
    }

    pub fn replace(&self, map: HashMap<String, Destination>) {
        *self.0.write().expect("not poisoned") = Arc::new(map);
    }
}

pub fn destinations(
    webhooks: &BTreeMap<String, WebhookConfig>,
) -> Result<HashMap<String, Destination>, reqwest::Error> {
    let mut out = HashMap::new();
    for (name, config) in webhooks {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(USER_AGENT)
            .pool_idle_timeout(Duration::from_secs(4));
        if let Some(proxy) = &config.proxy {
            builder = builder.proxy(reqwest::Proxy::all(proxy.as_str())?);
        }
        if !config.allow_private {
            builder = builder.dns_resolver(Arc::new(guard::GuardedResolver));
        }
        out.insert(
            name.clone(),
            Destination {
                config: config.clone(),
                client: builder.build()?,
            },
        );
    }
    Ok(out)
}

fn retry_after_of(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// Each destination's request slots (`max_in_flight`). A reload that
/// changes the number starts a new set; sends under way keep the old
/// permits until they finish.
#[derive(Default)]
struct Slots(HashMap<String, (usize, Arc<tokio::sync::Semaphore>)>);

impl Slots {
    fn of(&mut self, destination: &str, max_in_flight: usize) -> Arc<tokio::sync::Semaphore> {
        let n = max_in_flight.max(1);
        let entry = self
            .0
            .entry(destination.to_string())
            .or_insert_with(|| (n, Arc::new(tokio::sync::Semaphore::new(n))));
        if entry.0 != n {
            *entry = (n, Arc::new(tokio::sync::Semaphore::new(n)));
        }
        entry.1.clone()
    }
}

/// One attempt. Pure of the store: returns what to record.
pub async fn attempt(dest: Option<&Destination>, d: &Delivery, clock: &Clock) -> AttemptRecord {
    let started_at = clock.now_ms();
    let started = Instant::now();
    let record = |status: Option<u16>, error: Option<String>, response: Option<String>, next| {
        AttemptRecord {
            started_at,
            duration_ms: started.elapsed().as_millis() as i64,
            status,
            error,
            response,
            next,
        }
    };
    let Some(dest) = dest else {
        return record(
            None,
            Some(format!(
                "no webhook named `{}` in the config",
                d.destination
            )),
            None,
            AttemptNext::Dead,
        );
    };
    let cfg = &dest.config;
    if let Err(e) = guard::check_url(&cfg.url, cfg.allow_private) {
        return record(None, Some(e), None, AttemptNext::Dead);
    }
    // A proxy is a destination too (and it resolves the real one itself,
    // past the guard): a private proxy needs `allow_private: true`.
    if let Some(proxy) = &cfg.proxy
        && let Err(e) = guard::check_url(proxy, cfg.allow_private)
    {
        return record(None, Some(format!("proxy {e}")), None, AttemptNext::Dead);
    }
    let ts = started_at / 1000;
    let content_type = if serde_json::from_slice::<Value>(&d.body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut request = dest
        .client
        .post(cfg.url.clone())
        .header("content-type", content_type)
        .header("webhook-id", &d.id)
        .header("webhook-timestamp", ts.to_string());
    if let Some(secret) = &cfg.secret {
        request = request.header(
            "webhook-signature",
            crate::signing::standard_signature(secret.expose(), &d.id, ts, &d.body),
        );
    }
    for (k, v) in &cfg.headers {
        request = request.header(k, v.expose());
    }
    let retry =
        |error: String, status: Option<u16>, response: Option<String>, after: Option<Duration>| {
            let next = match next_attempt(&cfg.retry, d.attempts, after, fastrand::f64()) {
                Some(wait) => AttemptNext::RetryAt(clock.now_ms() + wait.as_millis() as i64),
                None => AttemptNext::Dead,
            };
            (status, Some(error), response, next)
        };
    let (status, error, response, next) = match request.body(d.body.clone()).send().await {
        Err(e) => {
            let message = chain(&e);
            if message.contains("refused: ") {
                (None, Some(message), None, AttemptNext::Dead)
            } else if e.is_timeout() {
                retry(
                    format!("no answer within {:?}", cfg.timeout),
                    None,
                    None,
                    None,
                )
            } else {
                retry(message, None, None, None)
            }
        }
        Ok(response) => {
            let status = response.status();
            let after = retry_after_of(response.headers());
            let body = read_capped(response, RESPONSE_LIMIT).await;
            let code = status.as_u16();
            if status.is_success() {
                (Some(code), None, Some(body), AttemptNext::Delivered)
            } else if code == 410 {
                (
                    Some(code),
                    Some("410 Gone: the receiver asked to stop".into()),
                    Some(body),
                    AttemptNext::Dead,
                )
            } else {
                let after = if matches!(code, 429 | 503) {
                    after
                } else {
                    None
                };
                let what = if status.is_redirection() {
                    format!("HTTP {code} (redirects are not followed)")
                } else {
                    format!("HTTP {code}")
                };
                retry(what, Some(code), Some(body), after)
            }
        }
    };
    record(status, error, response, next)
}

/// The error and its causes on one line, with any URL cut down to its
/// host ([`crate::redact`]): a webhook URL is a credential.
fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !message.contains(&s_text) {
            message = format!("{message}: {s_text}");
        }
        source = s.source();
    }
    crate::redact::text(&message).into_owned()
}

async fn read_capped(response: reqwest::Response, limit: usize) -> String {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the delivery loop works with.
#[derive(Clone)]
pub struct Parts {
    pub store: Store,
    pub clock: Clock,
    /// As the last reload left them.
    pub destinations: Arc<Destinations>,
    /// Notified when deliveries are written.
    pub wake: Arc<Notify>,
    /// This run's lease owner.
    pub owner: String,
    /// Where the loop's progress is recorded (the watchdog reads it).
    pub health: Arc<Health>,
    /// Where each attempt is counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Runs deliveries until `stop`; sends still running at `hard_stop` are
/// abandoned and their rows released (attempt refunded).
pub async fn run(parts: Parts, stop: CancellationToken, hard_stop: CancellationToken) {
    let Parts {
        store,
        clock,
        destinations,
        wake,
        owner,
        health,
        metrics,
    } = parts;
    // Claimed and not yet done, per destination (at most CLAIM_AHEAD ×
    // its `max_in_flight`); requests under way are bounded by the slots.
    let in_flight: Arc<Mutex<HashMap<String, usize>>> = Default::default();
    let mut slots = Slots::default();
    let all_slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let finished = Arc::new(Notify::new());
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, String, AttemptRecord)>();

    // Outcomes that are ready are recorded together (and share the store
    // writer's commit with the claims that replace them).
    let writer = {
        let (store, clock, owner) = (store.clone(), clock.clone(), owner.clone());
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let records: Vec<(String, AttemptRecord)> = batch
                    .iter()
                    .map(|(id, _, r)| (id.clone(), r.clone()))
                    .collect();
                let mut written = store
                    .record_attempts(&owner, &records, clock.now_ms())
                    .await;
                // A full disk: the outcomes are kept and written once there
                // is space (the workers probe for it), so a delivered
                // message is not sent again when its lease runs out.
                // Within the attempts' lease (2 min of the lease's 2+ min).
                let mut tries = 0;
                while let Err(e) = &written
                    && e.is_full()
                    && tries < 60
                {
                    tries += 1;
                    store.note_write_error(e);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    written = store
                        .record_attempts(&owner, &records, clock.now_ms())
                        .await;
                }
                if let Err(e) = written {
                    tracing::error!(error = %e, "cannot record delivery attempts; they will be retried");
                }
                for (id, dest, r) in &batch {
                    log_attempt(id, dest, r, clock.now_ms());
                }
            }
        })
    };

    let mut sends = tokio::task::JoinSet::new();
    let mut last_rescue = Instant::now();
    while !stop.is_cancelled() {
        if last_rescue.elapsed() > Duration::from_secs(30) {
            last_rescue = Instant::now();
            if let Ok(n) = store
                .rescue_deliveries(Some(clock.now_ms()), clock.now_ms())
                .await
                && n > 0
            {
                tracing::warn!(
                    deliveries = n,
                    "deliveries whose lease ran out are pending again"
                );
            }
        }
        while sends.try_join_next().is_some() {}
        // As the last reload left them.
        let destinations = destinations.current();
        let lease_ms = destinations
            .values()
            .map(|d| d.config.timeout)
            .max()
            .unwrap_or_default()
            .as_millis() as i64
            + 120_000;
        let (total, rooms) = {
            let map = in_flight.lock().expect("not poisoned");
            let total: usize = map.values().sum();
            let rooms: Vec<(String, i64)> = destinations
                .iter()
                .map(|(name, d)| {
                    let used = map.get(name).copied().unwrap_or(0);
                    let ahead = d.config.max_in_flight * CLAIM_AHEAD;
                    (name.clone(), ahead.saturating_sub(used) as i64)
                })
                .collect();
            (total, rooms)
        };
        let free = (MAX_IN_FLIGHT * CLAIM_AHEAD).saturating_sub(total) as i64;
        // A full disk: an attempt's outcome could not be recorded; the
        // workers look for space, this loop waits for it.
        let claimed = if free > 0 && store.unwritable().is_none() {
            // Fair share of the total when several destinations are busy.
            let share = (free / rooms.len().max(1) as i64).max(1);
            let rooms: Vec<(String, i64)> =
                rooms.into_iter().map(|(d, r)| (d, r.min(share))).collect();
            match store
                .claim_deliveries(&owner, clock.now_ms(), lease_ms, &rooms, free.min(4))
                .await
            {
                Ok(c) => {
                    health.beat(Loop::Deliveries);
                    c
                }
                Err(e) => {
                    store.note_write_error(&e);
                    tracing::error!(error = %e, "cannot claim deliveries");
                    Vec::new()
                }
            }
        } else {
            // Full, or waiting for space: claiming nothing on purpose.
            health.beat(Loop::Deliveries);
            Vec::new()
        };
        if claimed.is_empty() {
            let wait = match store.next_delivery_due().await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - clock.now_ms()).clamp(5, 1000) as u64)
                }
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = finished.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => {}
            }
            continue;
        }
        {
            let mut map = in_flight.lock().expect("not poisoned");
            for d in &claimed {
                *map.entry(d.destination.clone()).or_default() += 1;
            }
        }
        for d in claimed {
            let (destinations, tx, clock) = (destinations.clone(), tx.clone(), clock.clone());
            let (in_flight, finished, metrics) =
                (in_flight.clone(), finished.clone(), metrics.clone());
            let slot = destinations
                .get(&d.destination)
                .map(|dest| slots.of(&d.destination, dest.config.max_in_flight));
            let all_slots = all_slots.clone();
            sends.spawn(async move {
                // Claimed ahead: wait for the destination's slot.
                let _slot = match slot {
                    Some(s) => s.acquire_owned().await.ok(),
                    None => None,
                };
                let _any = all_slots.acquire_owned().await.ok();
                let record = attempt(destinations.get(&d.destination), &d, &clock).await;
                metrics.delivery_attempt(
                    &d.destination,
                    match record.next {
                        AttemptNext::Delivered => "delivered",
                        AttemptNext::RetryAt(_) => "retry",
                        AttemptNext::Dead => "dead",
                    },
                    Duration::from_millis(record.duration_ms.max(0) as u64),
                );
                // The destination has room again once the request is done:
                // the row stays `delivering` (never claimed twice) until
                // its outcome is recorded, which need not hold up the next
                // claim.
                if let Some(n) = in_flight
                    .lock()
                    .expect("not poisoned")
                    .get_mut(&d.destination)
                {
                    *n = n.saturating_sub(1);
                }
                finished.notify_one();
                let _ = tx.send((d.id, d.destination, record));
            });
        }
    }
    // Draining: let running sends finish until the hard stop.
    tokio::select! {
        _ = async { while sends.join_next().await.is_some() {} } => {}
        _ = hard_stop.cancelled() => {
            sends.abort_all();
            while sends.join_next().await.is_some() {}
        }
    }
    drop(tx);
    let _ = writer.await;
    match store.release_deliveries(&owner, clock.now_ms()).await {
        Ok(0) | Err(_) => {}
        Ok(n) => tracing::info!(
            deliveries = n,
            "unfinished deliveries left for the next start"
        ),
    }
}

fn log_attempt(id: &str, destination: &str, r: &AttemptRecord, now_ms: i64) {
    match r.next {
        AttemptNext::Delivered => {
            tracing::info!(
                delivery = id,
                destination,
                status = r.status,
                ms = r.duration_ms,
                "delivered"
            )
        }
        AttemptNext::RetryAt(at) => tracing::warn!(
            delivery = id,
            destination,
            status = r.status,
            error = r.error.as_deref().unwrap_or(""),
            retry_in_ms = at - now_ms,
            "delivery failed; will retry"
        ),
        AttemptNext::Dead => tracing::error!(
            delivery = id,
            destination,
            status = r.status,
            error = r.error.as_deref().unwrap_or(""),
            "delivery dead"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(url: &str, proxy: Option<&str>, allow_private: bool) -> Destination {
        let config = WebhookConfig {
            name: "d".into(),
            url: url.parse().unwrap(),
            secret: None,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(2),
            retry: vec![Duration::ZERO],
            allow_private,
            max_in_flight: 1,
            proxy: proxy.map(|p| p.parse().unwrap()),
        };
        let mut all = destinations(&BTreeMap::from([("d".to_string(), config)])).unwrap();
        all.remove("d").unwrap()
    }

    fn delivery() -> Delivery {
        Delivery {
            id: "msg_1".into(),
            job_id: None,
            rule: "r".into(),
            destination: "d".into(),
            event_type: "chat.completed".into(),
            body: b"{}".to_vec(),
            state: crate::store::DeliveryState::Pending,
            attempts: 1,
            next_attempt_at: 0,
            last_status: None,
            last_error: None,
            last_response: None,
            created_at: 0,
            updated_at: 0,
            delivered_at: None,
        }
    }

    /// Security review L2: an explicit proxy on a private address was a
    /// way around the guard (the proxy resolves and connects itself).
    #[tokio::test]
    async fn a_private_proxy_is_refused_like_a_private_destination() {
        for proxy in [
            "http://127.0.0.1:18091",
            "http://[::1]:3128",
            "http://10.0.0.1:3128",
        ] {
            let d = destination("https://example.org/hook", Some(proxy), false);
            let r = attempt(Some(&d), &delivery(), &Clock::system()).await;
            assert!(matches!(r.next, AttemptNext::Dead), "{proxy}");
            let error = r.error.unwrap();
            assert!(error.starts_with("proxy refused:"), "{error}");
        }
    }

    #[test]
    fn retry_schedule_with_jitter_and_retry_after() {
        let s: Vec<Duration> = [0, 5, 300]
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect();
        assert_eq!(next_attempt(&s, 0, None, 0.5), Some(Duration::ZERO));
        assert_eq!(next_attempt(&s, 1, None, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(next_attempt(&s, 1, None, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(next_attempt(&s, 1, None, 1.0), Some(Duration::from_secs(6)));
        assert_eq!(next_attempt(&s, 3, None, 0.5), None, "schedule spent: dead");
        // Retry-After is never undercut, and capped.
        assert_eq!(
            next_attempt(&s, 1, Some(Duration::from_secs(60)), 0.5),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            next_attempt(&s, 2, Some(Duration::from_secs(2)), 0.5),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            next_attempt(&s, 1, Some(Duration::from_secs(86_400)), 0.5),
            Some(Duration::from_secs(3600))
        );
    }
}
