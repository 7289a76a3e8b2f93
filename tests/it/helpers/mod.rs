//! The harness of every integration test.
//!
//! - [`TestApp`]: ferry in-process (`app::start_with_clock`) against the
//!   fake Open WebUI, with a real folder, a real SQLite file and a scripted
//!   webhook receiver; its config is typed ([`TestApp::start_with`]); its
//!   clock is the system's or a manual one ([`Options::manual_clock`]).
//! - [`drain`]: waits until the daemon has nothing left to do now (no job
//!   or delivery running or due, no watched path settling) instead of
//!   sleeping for a while.
//! - [`until`]: the one way to wait for something to happen.
//! - [`e2e`] (real Open WebUI) and [`daemon`] (`ferry run` as a child
//!   process) for the tests that need them.
#![allow(dead_code)]

pub mod daemon;
pub mod e2e;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry::app::{self, Running};
use ferry::clock::Clock;
use ferry::config::{Config, Environment};
use ferry::setup::Loaded;
use ferry::testing::fake_openwebui::{API_KEY, FakeOpenWebUi};
use ferry::testing::receiver::Receiver;

pub const ADMIN: &str = "admin-token-0123456789";
pub const HOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const OUT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The knowledge base of [`Options::mirror`].
pub const COLLECTION: &str = "Mirror";

/// What a [`TestApp`] is made of.
pub struct Options {
    /// The Open WebUI version the fake plays.
    pub version: &'static str,
    /// Rule files: (name, YAML); `INBOX` in the text is the inbox folder.
    pub rules: Vec<(String, String)>,
    /// Extra destinations, YAML under `webhooks:` (indented by 2); `out`
    /// (the receiver's `/out`, signed with [`OUT_SECRET`]) is always there.
    pub webhooks: String,
    /// Starts the clock at the real now and moves it only when the test
    /// says ([`Clock::advance`]).
    pub manual_clock: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            version: "0.12.4",
            rules: Vec::new(),
            webhooks: String::new(),
            manual_clock: false,
        }
    }
}

impl Options {
    /// The `mirror` rule: the inbox into [`COLLECTION`], settling 300 ms,
    /// `drafts/**` excluded; `extra` goes under `on.watch`.
    pub fn mirror(version: &'static str, extra: &str) -> Options {
        Options {
            version,
            rules: vec![(
                "mirror".into(),
                format!(
                    "on:\n  watch:\n    path: INBOX\n    settle: 300ms\n    exclude: [\"drafts/**\"]\n{extra}ingest:\n  collection: {COLLECTION}\n"
                ),
            )],
            ..Default::default()
        }
    }

    pub fn rules(rules: &[(&str, &str)]) -> Options {
        Options {
            rules: rules
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            ..Default::default()
        }
    }
}

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub fake: FakeOpenWebUi,
    pub receiver: Receiver,
    pub clock: Clock,
    env: Environment,
}

impl TestApp {
    /// Makes the folder, the fake, the receiver and the config.
    pub async fn new(opts: Options) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        let fake = FakeOpenWebUi::start(opts.version).await;
        let receiver = Receiver::start().await;
        // `out` retries 1.3 s apart: with the ±20 % jitter never under a
        // second, so each attempt's `webhook-timestamp` (whole seconds)
        // differs (1.1 s let two share one second now and then).
        std::fs::write(
            dir.path().join("ferry.yaml"),
            format!(
                "openwebui:\n  url: {}\n  api_key: {API_KEY}\n  timeout: 5s\n  processing_timeout: 5s\n\
                 state:\n  database: state/ferry.db\n\
                 server:\n  listen: 127.0.0.1:0\n  admin_token: {ADMIN}\n\
                 shutdown_grace: 5s\n\
                 webhooks:\n  out:\n    url: {}\n    secret: {OUT_SECRET}\n    allow_private: true\n    retry: [0s, 1300ms, 1300ms]\n    timeout: 1s\n{}",
                fake.url(),
                receiver.url("out"),
                opts.webhooks
            ),
        )
        .unwrap();
        let inbox = dir.path().join("inbox").display().to_string();
        for (name, text) in &opts.rules {
            std::fs::write(
                dir.path().join(format!("rules/{name}.yaml")),
                text.replace("INBOX", &inbox),
            )
            .unwrap();
        }
        let clock = if opts.manual_clock {
            Clock::manual(Clock::system().now_ms())
        } else {
            Clock::system()
        };
        TestApp {
            dir,
            fake,
            receiver,
            clock,
            env: Environment::fixed([("X", "1")]),
        }
    }

    /// [`TestApp::new`], started.
    pub async fn spawn(opts: Options) -> (TestApp, Running) {
        let app = TestApp::new(opts).await;
        let running = app.start().await;
        (app, running)
    }

    pub fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("ferry.yaml")
    }

    /// The config and rules as the daemon would load them.
    pub fn load(&self) -> Loaded {
        ferry::setup::load(&self.config_path(), &self.env).unwrap()
    }

    pub async fn start(&self) -> Running {
        self.start_with(|_| {}).await
    }

    /// Starts with the loaded config changed by `change` (typed, not YAML).
    pub async fn start_with(&self, change: impl FnOnce(&mut Config)) -> Running {
        let mut loaded = self.load();
        change(&mut loaded.config);
        app::start_with_clock(loaded, self.env.clone(), self.clock.clone())
            .await
            .unwrap()
    }

    /// A client of the fake, as the daemon's own (for changes made by hand).
    pub fn client(&self) -> ferry::openwebui::Client {
        ferry::openwebui::Client::new((&self.load().config.openwebui).into()).unwrap()
    }

    /// The files of [`COLLECTION`] in the fake, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n = self.fake.knowledge_file_names(COLLECTION);
        n.sort();
        n
    }

    /// Uploads the fake has received.
    pub fn uploads(&self) -> usize {
        self.fake.count("POST", "/api/v1/files/")
    }

    /// The id of the fake's file whose name ends in `name`.
    pub fn file_id(&self, name: &str) -> String {
        let st = self.fake.state.lock().unwrap();
        st.files
            .iter()
            .find(|(_, f)| f.name.ends_with(name))
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("no file {name} in the fake"))
    }
}

/// Stops a daemon as SIGTERM does; within its grace.
pub async fn stop(running: Running) {
    running.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .expect("stops within the grace")
        .unwrap();
}

/// Waits until the daemon has nothing to do at its clock's now: every
/// watcher has reconciled at least `reconciles` times in all and has no
/// path settling, and no job or delivery is running or due. Work due later
/// (a retry, with a manual clock) does not count.
pub async fn drain(running: &Running) {
    drain_after(running, 0).await
}

/// [`drain`], once the watchers have done more than `reconciles` full
/// comparisons in all (a number read before a change).
pub async fn drain_after(running: &Running, reconciles: u64) {
    // Idle twice in a row: a worker between claim and start, or a watcher
    // between settle and enqueue, looks idle once.
    let mut quiet = 0;
    until(
        "the daemon to be idle",
        Duration::from_secs(30),
        async || {
            let watchers = running.metrics.watchers();
            let watched = watchers.values().map(|w| w.reconciles).sum::<u64>() > reconciles
                || (reconciles == 0 && watchers.is_empty());
            let settled = watchers.values().all(|w| w.settling == 0);
            let idle = running.store.idle_at(running.clock.now_ms()).await.unwrap();
            quiet = if watched && settled && idle {
                quiet + 1
            } else {
                0
            };
            quiet >= 2
        },
    )
    .await;
}

/// Full comparisons the watchers have done so far.
pub fn reconciles(running: &Running) -> u64 {
    running
        .metrics
        .watchers()
        .values()
        .map(|w| w.reconciles)
        .sum()
}

/// What a check in [`until`] answers: `bool`, or `Option` of what it found.
pub trait Ready {
    type Out;
    fn ready(self) -> Option<Self::Out>;
}

impl Ready for bool {
    type Out = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Out = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Checks until `check` is ready (`true` or `Some`), at most `limit`; the
/// pause between checks grows from 10 ms to 250 ms.
pub async fn until<R: Ready>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> R,
) -> R::Out {
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(out) = check().await.ready() {
            return out;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// [`until`] with the in-process tests' limit (15 s).
pub async fn eventually<R: Ready>(what: &str, check: impl AsyncFnMut() -> R) -> R::Out {
    until(what, Duration::from_secs(15), check).await
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The `job_id` of a hook's or a run request's answer.
pub async fn job_id_of(r: reqwest::Response) -> String {
    r.json::<serde_json::Value>().await.unwrap()["job_id"]
        .as_str()
        .expect("a job_id in the answer")
        .to_string()
}

/// Logs ferry at debug level into the test's output (when debugging one).
pub fn debug_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ferry=debug")
        .with_test_writer()
        .try_init();
}
