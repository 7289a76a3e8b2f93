//! No task dies silently. Every long-running task of the daemon (each
//! watcher, each schedule timer, each worker, the delivery loop, the HTTP
//! server) runs under [`supervised`]: if it panics, or returns before it
//! was asked to stop, that is logged with the task's name, counted
//! (`ferry_task_restarts_total{task}`), shown by `/readyz` while the task
//! is down, and the task is started again after a backoff (1 s doubling to
//! 60 s; back to 1 s once a run lasted a minute).
//!
//! [`failpoint`] lets a test make a named task panic once, so the path
//! above is exercised for real.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run this long counts as healthy: the next failure waits little again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What the supervisor knows of the tasks: which are down and why, and
/// how often each was restarted.
#[derive(Default)]
pub struct Tasks {
    down: Mutex<BTreeMap<String, String>>,
    restarts: Mutex<BTreeMap<String, u64>>,
}

impl Tasks {
    /// Tasks that are down now, with why.
    pub fn down(&self) -> Vec<(String, String)> {
        let down = self.down.lock().expect("not poisoned");
        down.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Restarts so far, by task.
    pub fn restarts(&self) -> BTreeMap<String, u64> {
        self.restarts.lock().expect("not poisoned").clone()
    }

    /// A task under supervision, with no restart yet (so its series shows
    /// 0 before the first).
    fn known(&self, task: &str) {
        self.restarts
            .lock()
            .expect("not poisoned")
            .entry(task.to_string())
            .or_default();
    }

    fn failed(&self, task: &str, why: &str) {
        let mut down = self.down.lock().expect("not poisoned");
        down.insert(task.to_string(), why.to_string());
    }

    fn restarted(&self, task: &str) {
        self.down.lock().expect("not poisoned").remove(task);
        *self
            .restarts
            .lock()
            .expect("not poisoned")
            .entry(task.to_string())
            .or_default() += 1;
    }
}

/// Runs the task `make` builds until `cancel`, restarting it whenever it
/// panics or ends on its own (see the module docs).
pub async fn supervised<F, Fut>(
    tasks: std::sync::Arc<Tasks>,
    name: String,
    cancel: CancellationToken,
    mut make: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    tasks.known(&name);
    loop {
        let started = Instant::now();
        let outcome = tokio::spawn(make()).await;
        if cancel.is_cancelled() {
            return;
        }
        let why = match outcome {
            Ok(()) => "it stopped on its own".to_string(),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let text = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                format!("panicked: {}", crate::redact::text(&text))
            }
            Err(_) => "it was cancelled".to_string(),
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        tracing::error!(task = %name, why, restart_in_s = backoff.as_secs(), "task died; restarting");
        tasks.failed(&name, &why);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return,
        }
        tasks.restarted(&name);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Named places where a test can make the daemon panic once.
pub mod failpoint {
    use super::*;

    static ANY: AtomicBool = AtomicBool::new(false);
    static ARMED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// The next [`hit`] of `name` (in this process) panics.
    pub fn arm(name: &str) {
        ARMED.lock().expect("not poisoned").push(name.to_string());
        ANY.store(true, Ordering::SeqCst);
    }

    /// Panics if the task `kind:name` was armed (once per arming); costs
    /// one atomic load when nothing is.
    pub fn hit(kind: &str, name: &str) {
        if !ANY.load(Ordering::Relaxed) {
            return;
        }
        let name = format!("{kind}:{name}");
        let fire = {
            let mut armed = ARMED.lock().expect("not poisoned");
            match armed.iter().position(|a| *a == name) {
                Some(i) => {
                    armed.remove(i);
                    true
                }
                None => false,
            }
        };
        if fire {
            panic!("failpoint {name}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_down_then_restarted_with_backoff() {
        let tasks = Arc::new(Tasks::default());
        let cancel = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let sup = tokio::spawn(supervised(
            tasks.clone(),
            "watch:inbox".into(),
            cancel.clone(),
            move || {
                let n = r.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        panic!("boom {n}");
                    }
                    std::future::pending::<()>().await
                }
            },
        ));
        // First run panics at once: down, waiting 1 s.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let down = tasks.down();
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].0, "watch:inbox");
        assert!(down[0].1.contains("boom 0"), "{down:?}");
        // Restarted after 1 s, panics again, waits 2 s this time.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(tasks.down().len(), 1);
        tokio::time::sleep(Duration::from_millis(1400)).await; // t = 2.9 s
        assert_eq!(runs.load(Ordering::SeqCst), 2, "backoff doubled");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(tasks.down().is_empty(), "up again");
        assert_eq!(tasks.restarts()["watch:inbox"], 2);
        cancel.cancel();
        sup.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_returns_early_is_restarted_but_not_after_cancel() {
        let tasks = Arc::new(Tasks::default());
        let cancel = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let sup = tokio::spawn(supervised(
            tasks.clone(),
            "deliveries".into(),
            cancel.clone(),
            move || {
                r.fetch_add(1, Ordering::SeqCst);
                async {}
            },
        ));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(tasks.down()[0].1.contains("on its own"));
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), sup)
            .await
            .expect("stops when cancelled")
            .unwrap();
    }

    #[test]
    fn failpoints_fire_once_per_arming() {
        failpoint::hit("test", "nothing armed");
        failpoint::arm("test:x");
        assert!(std::panic::catch_unwind(|| failpoint::hit("test", "x")).is_err());
        failpoint::hit("test", "x");
    }
}
