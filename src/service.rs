//! What the service manager sees (systemd `Type=notify`): `READY=1` once
//! the store is open and the listener bound (never waiting for Open
//! WebUI), `RELOADING=1`/`READY=1` around a reload, `STOPPING=1`; a
//! one-line `STATUS=` for `systemctl status`; and `WATCHDOG=1` only while
//! the job and delivery loops make progress ([`Health::stalled`]), so a
//! wedged loop stops the pings and systemd restarts ferry.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every message is dropped
//! and [`run`] only waits for the stop.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::health::{Health, Loop};
use crate::rules::RuleSet;
use crate::store::Store;
use crate::supervise::Tasks;

pub fn ready() {
    let _ = sd_notify::notify(&[NotifyState::Ready]);
}

pub fn reloading() {
    let _ = sd_notify::notify(&[NotifyState::Reloading]);
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// What the status line and the watchdog read.
#[derive(Clone)]
pub struct Parts {
    pub store: Store,
    pub rules: Arc<RuleSet>,
    pub health: Arc<Health>,
    pub tasks: Arc<Tasks>,
}

/// How often the status line is looked at again (it costs three small
/// queries).
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// A loop counts as wedged after this long without progress, or half the
/// watchdog interval if that is longer. The loops beat at least once a
/// second when idle and every 20 s while every worker runs a long job
/// (lease renewal), so `WatchdogSec=` should be 60 s or more.
const MIN_STALL: Duration = Duration::from_secs(5);

/// Sends the status line and the watchdog pings until `stop`.
pub async fn run(parts: Parts, stop: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        // Not ending: the supervisor would restart a task that ends.
        return stop.cancelled().await;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let tick = watchdog.map_or(STATUS_EVERY, |w| (w / 4).max(Duration::from_millis(50)));
    let stall = watchdog.map_or(MIN_STALL, |w| (w / 2).max(MIN_STALL));
    let mut sent = String::new();
    let mut looked: Option<tokio::time::Instant> = None;
    let mut summary = Summary::default();
    let mut was_stalled = false;
    loop {
        let stalled = parts.health.stalled(stall);
        match (stalled.is_empty(), was_stalled) {
            (false, false) => {
                for (l, quiet) in &stalled {
                    tracing::error!(
                        "the {} made no progress for {} s; watchdog pings stop",
                        l.name(),
                        quiet.as_secs()
                    );
                }
            }
            (true, true) => tracing::info!("the job and delivery loops make progress again"),
            _ => {}
        }
        was_stalled = !stalled.is_empty();
        if looked.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            looked = Some(tokio::time::Instant::now());
            summary = Summary::read(&parts).await;
        }
        summary.stalled = stalled;
        let line = summary.line();
        let mut states = Vec::new();
        if line != sent {
            states.push(NotifyState::Status(&line));
        }
        if watchdog.is_some() && summary.stalled.is_empty() {
            states.push(NotifyState::Watchdog);
        }
        if !states.is_empty() {
            let _ = sd_notify::notify(&states);
        }
        sent.clone_from(&line);
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The facts of the status line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub rules: usize,
    pub paused: usize,
    pub queued: i64,
    pub running: i64,
    pub dead_deliveries: i64,
    /// Open WebUI's version while it answers.
    pub openwebui: Option<String>,
    /// What is wrong, most telling first.
    pub problems: Vec<String>,
    pub stalled: Vec<(Loop, Duration)>,
}

impl Summary {
    async fn read(parts: &Parts) -> Summary {
        let mut problems = Vec::new();
        let n = |rows: &[(String, i64)], state: &str| {
            rows.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n)
        };
        let (mut queued, mut running, mut dead_deliveries) = (0, 0, 0);
        match parts.store.job_counts().await {
            Ok(rows) => (queued, running) = (n(&rows, "queued"), n(&rows, "running")),
            Err(e) => problems.push(format!("database: {e}")),
        }
        match parts.store.delivery_counts().await {
            Ok(rows) => dead_deliveries = n(&rows, "dead"),
            Err(e) => problems.push(format!("database: {e}")),
        }
        let paused = parts.store.paused_rules().await.map_or(0, |p| p.len());
        problems.extend(crate::health::problems(&parts.store, &parts.health, &parts.tasks).await);
        Summary {
            rules: parts.rules.all().len(),
            paused,
            queued,
            running,
            dead_deliveries,
            openwebui: parts.health.openwebui_version(),
            problems,
            stalled: Vec::new(),
        }
    }

    /// One line, e.g. `4 rules (1 paused), 2 queued, 1 running, 0 dead
    /// deliveries; Open WebUI 0.12.4` — or the first problem instead of the
    /// version.
    pub fn line(&self) -> String {
        let paused = if self.paused > 0 {
            format!(" ({} paused)", self.paused)
        } else {
            String::new()
        };
        let mut line = format!(
            "{} rule{}{paused}, {} queued, {} running, {} dead deliver{}",
            self.rules,
            if self.rules == 1 { "" } else { "s" },
            self.queued,
            self.running,
            self.dead_deliveries,
            if self.dead_deliveries == 1 {
                "y"
            } else {
                "ies"
            },
        );
        let stalled = self
            .stalled
            .iter()
            .map(|(l, quiet)| format!("{} stalled for {} s", l.name(), quiet.as_secs()));
        let first = stalled.chain(self.problems.iter().cloned()).next();
        match (first, &self.openwebui) {
            (Some(problem), _) => {
                line.push_str("; ");
                line.push_str(&problem);
            }
            (None, Some(v)) => {
                line.push_str("; Open WebUI ");
                line.push_str(v);
            }
            (None, None) => {}
        }
        // systemd shows one line; keep it short and on one line.
        let mut line: String = line.replace(['\n', '\r'], " ");
        if line.chars().count() > 200 {
            line = line.chars().take(199).collect::<String>() + "…";
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_says_what_runs_and_the_first_thing_wrong() {
        let mut s = Summary {
            rules: 4,
            paused: 1,
            queued: 2,
            running: 1,
            dead_deliveries: 0,
            openwebui: Some("0.12.4".into()),
            ..Summary::default()
        };
        assert_eq!(
            s.line(),
            "4 rules (1 paused), 2 queued, 1 running, 0 dead deliveries; Open WebUI 0.12.4"
        );
        s.openwebui = None;
        s.problems = vec!["openwebui: cannot connect\nat all".into(), "second".into()];
        assert_eq!(
            s.line(),
            "4 rules (1 paused), 2 queued, 1 running, 0 dead deliveries; openwebui: cannot connect at all"
        );
        s.stalled = vec![(Loop::Deliveries, Duration::from_secs(12))];
        assert!(
            s.line().ends_with("; delivery loop stalled for 12 s"),
            "{}",
            s.line()
        );
        s.problems = vec!["x".repeat(500)];
        s.stalled.clear();
        assert_eq!(s.line().chars().count(), 200);
    }
}
