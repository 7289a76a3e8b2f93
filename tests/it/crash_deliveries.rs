//! `kill -9` of `ferry run` at random moments while it chats and delivers
//! (the process against the in-process fake Open WebUI and a slow local
//! receiver): every delivery ends delivered, none is lost, and a repeat
//! after a crash carries the same `webhook-id`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::helpers::daemon::{ADMIN, Daemon, free_port};
use ferry::store::{DeliveryFilter, DeliveryState, JobFilter, JobState, Store};
use ferry::testing::fake_openwebui::{API_KEY, FakeOpenWebUi};
use ferry::testing::receiver::{Receiver, Reply};

const HOOKS: usize = 60;
const KILLS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_deliveries_loses_nothing() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    fake.state.lock().unwrap().chat_delay = Duration::from_millis(30);
    let receiver = Receiver::start().await;
    // Slow answers, so kills land while requests are in flight.
    receiver.script(
        "out",
        (0..HOOKS * 3)
            .map(|_| Reply::status(200).delay(Duration::from_millis(fastrand::u64(20..250)))),
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "openwebui:\n  url: {}\n  api_key: {API_KEY}\nstate:\n  database: state/ferry.db\nserver:\n  listen: 127.0.0.1:{port}\n  admin_token: {}\nwebhooks:\n  out:\n    url: {}\n    allow_private: true\n    max_in_flight: 8\n    retry: [0s, 100ms, 200ms, 500ms, 1s, 1s, 2s, 2s]\nshutdown_grace: 5s\n",
            fake.url(),
            ADMIN,
            receiver.url("out")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules/go.yaml"),
        "on:\n  webhook:\n    path: go\n    auth: { scheme: none }\nchat:\n  model: fake-model\n  prompt: \"event {{ payload.n }}\"\ndeliver:\n  - to: out\n",
    )
    .unwrap();

    let daemon = Daemon::spawn(dir.path(), port, &[]);
    let client = reqwest::Client::new();
    for n in 0..HOOKS {
        let r = client
            .post(format!("{}/hooks/go", daemon.base))
            .header("webhook-id", format!("evt-{n}"))
            .json(&serde_json::json!({ "n": n }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let mut daemon = Some(daemon);
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(50..600))).await;
        daemon.take().unwrap().kill9();
        daemon = Some(Daemon::spawn(dir.path(), port, &[]));
    }
    let daemon = daemon.unwrap();

    let store = Store::open(&dir.path().join("state/ferry.db"))
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let pending = store
            .deliveries(&DeliveryFilter::default())
            .await
            .unwrap()
            .iter()
            .filter(|d| d.state != DeliveryState::Delivered)
            .count();
        let jobs_open = store
            .jobs(&JobFilter::default())
            .await
            .unwrap()
            .iter()
            .filter(|j| j.state != JobState::Succeeded)
            .count();
        if pending == 0 && jobs_open == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{pending} deliveries and {jobs_open} jobs still open:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop();

    let chats = JobFilter {
        kind: Some("chat".into()),
        ..Default::default()
    };
    let jobs = store.jobs(&chats).await.unwrap();
    assert_eq!(jobs.len(), HOOKS, "one job per event");
    let deliveries = store.deliveries(&DeliveryFilter::default()).await.unwrap();
    assert_eq!(deliveries.len(), HOOKS, "one delivery per finished job");
    let ids: BTreeSet<String> = deliveries.iter().map(|d| d.id.clone()).collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in receiver.received("out") {
        *seen
            .entry(r.header("webhook-id").unwrap().to_string())
            .or_default() += 1;
    }
    let seen_ids: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(seen_ids, ids, "every delivery arrived, and nothing else");
    let repeats: usize = seen.values().map(|n| n - 1).sum();
    // At-least-once: repeats are allowed, and they are recognisable.
    eprintln!(
        "{HOOKS} deliveries, {KILLS} kills: {} requests, {repeats} repeats (same webhook-id)",
        seen.values().sum::<usize>()
    );
    store.integrity_check().await.unwrap();
}
