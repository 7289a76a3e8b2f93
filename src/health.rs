//! How the daemon is doing, as its parts last saw it: what `/readyz`
//! reports about Open WebUI (the workers' last look; the server never
//! calls Open WebUI itself, so a probe storm cannot reach Open WebUI
//! through ferry, and readiness does not hang on a slow server), and
//! whether the job and delivery loops still make progress (the systemd
//! watchdog pings only while both do: [`crate::service`]).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::Store;
use crate::supervise::Tasks;

/// Why ferry is not ready, most telling first; empty when it is. Read by
/// `/readyz` and the systemd status line alike. Open WebUI as the workers
/// last saw it: a probe never reaches Open WebUI.
pub async fn problems(store: &Store, health: &Health, tasks: &Tasks) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = store.ping().await {
        problems.push(format!("database: {e}"));
    }
    problems.extend(health.openwebui_problem());
    if let Some(why) = store.unwritable() {
        problems.push(format!("database: {why}"));
    }
    for (task, why) in tasks.down() {
        problems.push(format!("task {task} is down ({why}); restarting"));
    }
    problems
}

/// How Open WebUI answered the workers' last look, and the loops' beats.
#[derive(Debug)]
pub struct Health {
    openwebui: Mutex<Seen>,
    /// When each [`Loop`] last made progress (monotonic).
    beats: Mutex<[Instant; 2]>,
}

impl Default for Health {
    fn default() -> Self {
        // A loop that never beat is counted from the start.
        let now = Instant::now();
        Health {
            openwebui: Mutex::default(),
            beats: Mutex::new([now; 2]),
        }
    }
}

/// The loops whose progress the watchdog requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    /// The workers: a claim, a lease renewal or a recorded outcome went
    /// through the store. An idle pool claims at least once a second (the
    /// worker whose turn it is to wake on the clock); a
    /// busy one renews its lease every 20 s.
    Jobs,
    /// The delivery loop: it looked for due deliveries (at least once a
    /// second).
    Deliveries,
}

impl Loop {
    pub const ALL: [Loop; 2] = [Loop::Jobs, Loop::Deliveries];

    pub fn name(self) -> &'static str {
        match self {
            Loop::Jobs => "job loop",
            Loop::Deliveries => "delivery loop",
        }
    }
}

#[derive(Debug, Default, Clone)]
enum Seen {
    /// Not looked at yet.
    #[default]
    Unknown,
    Up {
        version: String,
    },
    Down {
        error: String,
    },
}

impl Health {
    /// Records an answer; true when it changes whether Open WebUI is up.
    pub fn openwebui_up(&self, version: &str) -> bool {
        let mut seen = self.openwebui.lock().expect("not poisoned");
        let changed = !matches!(&*seen, Seen::Up { .. });
        *seen = Seen::Up {
            version: version.to_string(),
        };
        changed
    }

    /// Records a failed look (the error is already redacted); true when it
    /// changes whether Open WebUI is up.
    pub fn openwebui_down(&self, error: String) -> bool {
        let mut seen = self.openwebui.lock().expect("not poisoned");
        let changed = !matches!(&*seen, Seen::Down { .. });
        *seen = Seen::Down { error };
        changed
    }

    /// Why Open WebUI does not count as reachable, if it does not.
    pub fn openwebui_problem(&self) -> Option<String> {
        match &*self.openwebui.lock().expect("not poisoned") {
            Seen::Unknown => Some("openwebui: not checked yet".into()),
            Seen::Up { .. } => None,
            Seen::Down { error } => Some(format!("openwebui: {error}")),
        }
    }

    /// `which` made progress just now.
    pub fn beat(&self, which: Loop) {
        self.beats.lock().expect("not poisoned")[which as usize] = Instant::now();
    }

    /// The loops that made no progress for longer than `within`, with how
    /// long.
    pub fn stalled(&self, within: Duration) -> Vec<(Loop, Duration)> {
        let beats = *self.beats.lock().expect("not poisoned");
        Loop::ALL
            .into_iter()
            .map(|l| (l, beats[l as usize].elapsed()))
            .filter(|(_, quiet)| *quiet > within)
            .collect()
    }

    pub fn openwebui_version(&self) -> Option<String> {
        match &*self.openwebui.lock().expect("not poisoned") {
            Seen::Up { version } => Some(version.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_beating_is_stalled_and_the_other_is_not() {
        let health = Health::default();
        let within = Duration::from_secs(5);
        assert!(health.stalled(within).is_empty());
        tokio::time::advance(Duration::from_secs(4)).await;
        health.beat(Loop::Deliveries);
        tokio::time::advance(Duration::from_secs(3)).await;
        let stalled = health.stalled(within);
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert_eq!(stalled[0].0, Loop::Jobs);
        assert_eq!(stalled[0].1, Duration::from_secs(7));
        health.beat(Loop::Jobs);
        assert!(health.stalled(within).is_empty());
    }
}
