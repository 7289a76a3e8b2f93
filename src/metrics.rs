//! What `/metrics` shows. Events (a hook answered, an attempt made, an
//! Open WebUI call, a file linked) are counted where they happen, in one
//! shared registry handed out at start, so no counter is carried through
//! unrelated types. States (queue depth, documents, deliveries) are read
//! from the store at scrape time ([`Scraped`]) and zero-filled, so every
//! series exists from the first scrape and `rate()`/alerts never see a gap.
//!
//! Counters only go up and histograms have `_sum`, `_count` and buckets
//! (prometheus-client does the encoding); `promtool check metrics` runs on
//! the output in `tests/it/daemon.rs`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The Content-Type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

pub struct Metrics {
    registry: Registry,
    files_hashed: Counter,
    reloads: Family<Labels, Counter>,
    restored: Family<Labels, Counter>,
    recreated: Family<Labels, Counter>,
    watch_reconciles: Family<Labels, Counter>,
    watch_settling: Family<Labels, Gauge>,
    files: Family<Labels, Counter>,
    job_duration: Histograms,
    openwebui_duration: Histograms,
    openwebui_errors: Family<Labels, Counter>,
    hook_duration: Histograms,
    hook_requests: Family<Labels, Counter>,
    delivery_duration: Histograms,
    delivery_attempts: Family<Labels, Counter>,
    /// What the watchers last reported, for tests and `/metrics`.
    watch: Mutex<BTreeMap<String, Watch>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// A watcher's progress.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// Full comparisons of folder and store done since start.
    pub reconciles: u64,
    /// Paths seen changing that have not settled (and been queued) yet.
    pub settling: u64,
}

/// Seconds, from a millisecond (hook) to a long model answer.
const JOB_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
const CALL_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const HOOK_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let version = env!("CARGO_PKG_VERSION").to_string();
        let commit = env!("FERRY_COMMIT").to_string();
        registry.register(
            "ferry_build",
            "ferry's version and the commit it was built from",
            Info::new(vec![("version", version), ("commit", commit)]),
        );
        let files_hashed = Counter::default();
        registry.register(
            "ferry_files_hashed",
            "Files read and hashed since start",
            files_hashed.clone(),
        );
        let mut m = Metrics {
            registry,
            files_hashed,
            reloads: Family::default(),
            restored: Family::default(),
            recreated: Family::default(),
            watch_reconciles: Family::default(),
            watch_settling: Family::default(),
            files: Family::default(),
            job_duration: Family::new_with_constructor(|| Histogram::new(JOB_BUCKETS)),
            openwebui_duration: Family::new_with_constructor(|| Histogram::new(CALL_BUCKETS)),
            openwebui_errors: Family::default(),
            hook_duration: Family::new_with_constructor(|| Histogram::new(HOOK_BUCKETS)),
            hook_requests: Family::default(),
            delivery_duration: Family::new_with_constructor(|| Histogram::new(CALL_BUCKETS)),
            delivery_attempts: Family::default(),
            watch: Mutex::default(),
        };
        // Known label values start at zero.
        for result in ["applied", "refused"] {
            let _ = m.reloads.get_or_create(&labels([("result", result)]));
        }
        let r = &mut m.registry;
        r.register(
            "ferry_reloads",
            "Reloads of config and rules (SIGHUP), by result",
            m.reloads.clone(),
        );
        r.register(
            "ferry_documents_restored",
            "Documents put back into a collection they had vanished from (drift repair), by how",
            m.restored.clone(),
        );
        r.register(
            "ferry_collections_recreated",
            "Knowledge bases made again after they were deleted in Open WebUI",
            m.recreated.clone(),
        );
        r.register(
            "ferry_watch_reconciles",
            "Full comparisons of a watched folder with the state database",
            m.watch_reconciles.clone(),
        );
        r.register(
            "ferry_watch_settling",
            "Changed paths of a watched folder not yet settled and queued",
            m.watch_settling.clone(),
        );
        r.register(
            "ferry_files",
            "Files of watch rules by what happened: linked (a new upload), replaced (a new version linked), moved (followed, no upload), failed (by Open WebUI's reason)",
            m.files.clone(),
        );
        r.register(
            "ferry_job_duration_seconds",
            "How long a job ran, from claim to outcome, by kind",
            m.job_duration.clone(),
        );
        r.register(
            "ferry_openwebui_request_duration_seconds",
            "Open WebUI requests until the answer's headers (each try), by call",
            m.openwebui_duration.clone(),
        );
        r.register(
            "ferry_openwebui_errors",
            "Open WebUI requests that failed (each try), by class",
            m.openwebui_errors.clone(),
        );
        r.register(
            "ferry_hook_duration_seconds",
            "Incoming webhook requests until ferry answered (202 once the job is stored), by rule",
            m.hook_duration.clone(),
        );
        r.register(
            "ferry_hook_requests",
            "Incoming webhook requests by rule and answer status",
            m.hook_requests.clone(),
        );
        r.register(
            "ferry_delivery_attempt_duration_seconds",
            "Outgoing webhook attempts, by destination",
            m.delivery_duration.clone(),
        );
        r.register(
            "ferry_delivery_attempts",
            "Outgoing webhook attempts by destination and outcome (delivered, retry, dead)",
            m.delivery_attempts.clone(),
        );
        m
    }

    pub fn file_hashed(&self) {
        self.files_hashed.inc();
    }

    pub fn files_hashed(&self) -> u64 {
        self.files_hashed.get()
    }

    /// A watcher's state after a step: whether it just finished a
    /// reconcile, and how many paths are still settling (one update, so a
    /// reader never sees the one without the other).
    pub fn watch_progress(&self, rule: &str, reconciled: bool, settling: usize) {
        let mut w = self.watch.lock().expect("not poisoned");
        let w = w.entry(rule.to_string()).or_default();
        w.reconciles += u64::from(reconciled);
        w.settling = settling as u64;
        let rule = labels([("rule", rule)]);
        let reconciles = self.watch_reconciles.get_or_create(&rule);
        if reconciled {
            reconciles.inc();
        }
        self.watch_settling
            .get_or_create(&rule)
            .set(settling as i64);
    }

    pub fn watchers(&self) -> BTreeMap<String, Watch> {
        self.watch.lock().expect("not poisoned").clone()
    }

    /// A reload (SIGHUP) applied, or refused for invalid files.
    pub fn reloaded(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.reloads
            .get_or_create(&labels([("result", result)]))
            .inc();
    }

    /// Reloads (applied, refused) since start.
    pub fn reloads(&self) -> (u64, u64) {
        let n = |r| self.reloads.get_or_create(&labels([("result", r)])).get();
        (n("applied"), n("refused"))
    }

    /// A document put back into its collection: `relinked` (its file was
    /// still there) or `uploaded_again`.
    pub fn restored(&self, rule: &str, how: &'static str) {
        self.restored
            .get_or_create(&labels([("rule", rule), ("how", how)]))
            .inc();
    }

    pub fn recreated(&self, rule: &str) {
        self.recreated
            .get_or_create(&labels([("rule", rule)]))
            .inc();
    }

    /// A watched file's outcome: `linked`, `replaced`, `moved`, or
    /// `failed` with Open WebUI's reason (`reason` is empty otherwise).
    pub fn file(&self, rule: &str, outcome: &'static str, reason: &str) {
        self.files
            .get_or_create(&labels([
                ("rule", rule),
                ("outcome", outcome),
                ("reason", reason),
            ]))
            .inc();
    }

    pub fn job_ran(&self, kind: &str, took: Duration) {
        self.job_duration
            .get_or_create(&labels([("kind", kind)]))
            .observe(took.as_secs_f64());
    }

    /// One try of an Open WebUI request: its call (method and path with
    /// ids taken out) and, if it failed, the error's class.
    pub fn openwebui_call(&self, call: &str, took: Duration, error: Option<&'static str>) {
        self.openwebui_duration
            .get_or_create(&labels([("call", call)]))
            .observe(took.as_secs_f64());
        if let Some(class) = error {
            self.openwebui_errors
                .get_or_create(&labels([("class", class)]))
                .inc();
        }
    }

    /// An incoming webhook answered; `rule` is empty for a path no rule
    /// listens on (so a scanner cannot make a series per path).
    pub fn hook_answered(&self, rule: &str, status: u16, took: Duration) {
        let rule = if rule.is_empty() { "(none)" } else { rule };
        self.hook_duration
            .get_or_create(&labels([("rule", rule)]))
            .observe(took.as_secs_f64());
        self.hook_requests
            .get_or_create(&labels([("rule", rule), ("status", &status.to_string())]))
            .inc();
    }

    /// One delivery attempt and what it led to.
    pub fn delivery_attempt(&self, destination: &str, outcome: &'static str, took: Duration) {
        self.delivery_duration
            .get_or_create(&labels([("destination", destination)]))
            .observe(took.as_secs_f64());
        self.delivery_attempts
            .get_or_create(&labels([
                ("destination", destination),
                ("outcome", outcome),
            ]))
            .inc();
    }

    /// An error class's series exists before its first error.
    pub fn openwebui_error_known(&self, class: &str) {
        let _ = self
            .openwebui_errors
            .get_or_create(&labels([("class", class)]));
    }

    /// A destination's series exist before its first attempt.
    pub fn destination_known(&self, destination: &str) {
        let _ = self
            .delivery_duration
            .get_or_create(&labels([("destination", destination)]));
        for outcome in ["delivered", "retry", "dead"] {
            let _ = self.delivery_attempts.get_or_create(&labels([
                ("destination", destination),
                ("outcome", outcome),
            ]));
        }
    }

    /// The text of a scrape: the events counted so far and `scraped`.
    pub fn encode(&self, scraped: &Scraped) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_text::encode(&mut out, &scraped.registry());
        out
    }
}

/// States read at scrape time, zero-filled by the caller for every known
/// label value.
#[derive(Debug, Default)]
pub struct Scraped {
    /// (rule, state) → documents.
    pub documents: BTreeMap<(String, String), i64>,
    /// (kind, state) → jobs.
    pub jobs: BTreeMap<(String, String), i64>,
    /// How long the oldest job that is due has waited for a worker.
    pub oldest_due_job: Duration,
    /// state → deliveries.
    pub deliveries: BTreeMap<String, i64>,
    pub rules: usize,
    pub rules_paused: usize,
    /// task → restarts since start.
    pub task_restarts: BTreeMap<String, u64>,
}

impl Scraped {
    fn registry(&self) -> Registry {
        let mut r = Registry::default();
        let documents = Family::<Labels, Gauge>::default();
        for ((rule, state), n) in &self.documents {
            documents
                .get_or_create(&labels([("rule", rule), ("state", state)]))
                .set(*n);
        }
        r.register(
            "ferry_documents",
            "Documents of watch rules by state",
            documents,
        );
        let jobs = Family::<Labels, Gauge>::default();
        for ((kind, state), n) in &self.jobs {
            jobs.get_or_create(&labels([("kind", kind), ("state", state)]))
                .set(*n);
        }
        r.register("ferry_jobs", "Jobs by kind and state", jobs);
        let oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        oldest.set(self.oldest_due_job.as_secs_f64());
        r.register(
            "ferry_oldest_due_job_age_seconds",
            "How long the oldest due job has waited for a worker (0 when none waits)",
            oldest,
        );
        let deliveries = Family::<Labels, Gauge>::default();
        for (state, n) in &self.deliveries {
            deliveries
                .get_or_create(&labels([("state", state)]))
                .set(*n);
        }
        r.register("ferry_deliveries", "Deliveries by state", deliveries);
        let rules = Gauge::<i64>::default();
        rules.set(self.rules as i64);
        r.register("ferry_rules", "Rules in force", rules);
        let paused = Gauge::<i64>::default();
        paused.set(self.rules_paused as i64);
        r.register(
            "ferry_rules_paused",
            "Rules held by a safety valve or a missing collection",
            paused,
        );
        let restarts = Family::<Labels, Counter>::default();
        for (task, n) in &self.task_restarts {
            restarts.get_or_create(&labels([("task", task)])).inc_by(*n);
        }
        r.register(
            "ferry_task_restarts",
            "Restarts of long-running tasks after a panic or an unexpected end",
            restarts,
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_only_grow_and_histograms_carry_sum_and_count() {
        let m = Metrics::new();
        m.hook_answered("alerts", 202, Duration::from_millis(3));
        m.hook_answered("alerts", 202, Duration::from_millis(5));
        m.hook_answered("", 404, Duration::from_micros(200));
        let text = m.encode(&Scraped::default());
        assert!(
            text.contains("ferry_hook_requests_total{rule=\"alerts\",status=\"202\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ferry_hook_requests_total{rule=\"(none)\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferry_hook_duration_seconds_count{rule=\"alerts\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ferry_hook_duration_seconds_sum{rule=\"alerts\"} 0.008"),
            "{text}"
        );
        assert!(
            text.contains("ferry_hook_duration_seconds_bucket{le=\"0.005\",rule=\"alerts\"} 2")
                || text
                    .contains("ferry_hook_duration_seconds_bucket{rule=\"alerts\",le=\"0.005\"} 2"),
            "{text}"
        );
        assert!(text.contains("ferry_build_info{version=\""), "{text}");
        assert!(
            text.contains("ferry_reloads_total{result=\"refused\"} 0"),
            "{text}"
        );
    }
}
