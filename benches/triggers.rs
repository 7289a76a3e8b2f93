//! Benchmarks of hooks, schedules and deliveries: `ferry run` (the release
//! binary, its own process) against the in-process fake Open WebUI and a
//! loopback receiver. Prints figures; asserts only that the work was done.
//! Run through `scripts/bench.sh triggers`.
//!
//! - hooks: 200 concurrent senders of signed Standard Webhooks requests →
//!   202 latency p50/p99 and requests/s (each 202 is a committed job).
//! - schedule: a `* * * * * *` rule for 10 s → how late jobs are enqueued
//!   and finished after their fire time.
//! - deliveries: 20,000 queued deliveries to a fast receiver →
//!   deliveries/s with `synchronous=FULL`; and 1,000 hook → chat → delivery
//!   pipelines → time from job completion to the first attempt, p50/p99.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::signing::standard_signature;
use ferry::store::{NewDelivery, Store};
use ferry::testing::fake_openwebui::{API_KEY, FakeOpenWebUi};
use ferry::testing::receiver::Receiver;

const ADMIN: &str = "bench-admin-token-0123456789";
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Ferry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(keep) = std::env::var("FERRY_BENCH_KEEP_LOG") {
            let _ = std::fs::copy(self.dir.path().join("ferry.log"), keep);
        }
    }
}

fn config(
    dir: &Path,
    fake: &FakeOpenWebUi,
    receiver: &Receiver,
    port: u16,
    rules: &[(&str, &str)],
) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        format!(
            "openwebui:\n  url: {}\n  api_key: {API_KEY}\n  max_in_flight: 8\nstate:\n  database: state/ferry.db\nserver:\n  listen: 127.0.0.1:{port}\n  admin_token: {ADMIN}\n  max_connections_per_peer: 1000\nwebhooks:\n  sink:\n    url: {}\n    secret: {SECRET}\n    allow_private: true\n    max_in_flight: 32\n",
            fake.url(),
            receiver.url("sink")
        ),
    )
    .unwrap();
    for (name, text) in rules {
        std::fs::write(dir.join(format!("rules/{name}.yaml")), text).unwrap();
    }
}

fn start(dir: tempfile::TempDir, port: u16) -> Ferry {
    let log = std::fs::File::create(dir.path().join("ferry.log")).unwrap();
    // FERRY_BENCH_LOG=warn,sqlx::query=debug FERRY_BENCH_KEEP_LOG=/tmp/t.log
    // to see what each statement costs.
    let level = std::env::var("FERRY_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--config", "ferry.yaml", "--log-level", &level])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ferry did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ferry { child, port, dir }
}

/// `SENDERS` concurrent senders, `EACH` signed requests each, to `url`:
/// the latencies of the answers (ms, sorted) and requests/s. Every answer
/// must be 202.
async fn send_hooks(url: &str, senders: usize, each: usize) -> (Vec<f64>, f64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(senders)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..senders {
        let (client, url) = (client.clone(), url.to_string());
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(each);
            for i in 0..each {
                let id = format!("msg_{s}_{i}");
                let body = format!("{{\"n\":{i}}}");
                let ts = chrono::Utc::now().timestamp();
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", ts.to_string())
                    .header(
                        "webhook-signature",
                        standard_signature(SECRET, &id, ts, body.as_bytes()),
                    )
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(l) = tasks.join_next().await {
        all.extend(l.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (all, rate)
}

/// A server that answers every hook 202 at once and stores nothing: the
/// floor a hook's latency is measured against. Its own process, as ferry
/// is (`FERRY_BENCH_NOOP_PORT`, see `main`).
fn noop_server(port: u16) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/hooks/{*path}",
            axum::routing::post(|_body: axum::body::Bytes| async {
                (axum::http::StatusCode::ACCEPTED, "{\"job_id\":\"noop\"}")
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(listener, app).await.unwrap();
    });
    std::process::exit(0)
}

async fn hooks(fake: &FakeOpenWebUi, receiver: &Receiver) {
    const SENDERS: usize = 200;
    const EACH: usize = 25;
    // The floor first: the same load on a server that does nothing.
    let noop_port = free_port();
    let mut noop = Command::new(std::env::current_exe().unwrap())
        .env("FERRY_BENCH_NOOP_PORT", noop_port.to_string())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", noop_port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (floor, floor_rate) = send_hooks(
        &format!("http://127.0.0.1:{noop_port}/hooks/hook"),
        SENDERS,
        EACH,
    )
    .await;
    let _ = noop.kill();
    let _ = noop.wait();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    config(
        dir.path(),
        fake,
        receiver,
        port,
        &[(
            "hook",
            &format!(
                "on:\n  webhook:\n    path: hook\n    rate_limit: 1000000/s\n    max_in_flight: 1000\n    auth: {{ scheme: standard-webhooks, secret: \"{SECRET}\" }}\nchat:\n  model: fake-model\n  prompt: \"{{{{ payload.n }}}}\"\n"
            ),
        )],
    );
    let ferry = start(dir, port);
    let (all, rate) = send_hooks(
        &format!("http://127.0.0.1:{}/hooks/hook", ferry.port),
        SENDERS,
        EACH,
    )
    .await;
    println!("hooks: {SENDERS} concurrent senders × {EACH} signed requests on loopback:");
    println!(
        "  no-op server (202 at once, nothing stored): p50 {:.1} ms, p99 {:.1} ms; {floor_rate:.0} requests/s",
        percentile(&floor, 0.5),
        percentile(&floor, 0.99),
    );
    println!(
        "  ferry (each 202 a committed job): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {rate:.0} requests/s",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().unwrap(),
    );
    println!(
        "  ferry's p99 is {:.2}× the no-op server's",
        percentile(&all, 0.99) / percentile(&floor, 0.99)
    );
}

async fn schedule(fake: &FakeOpenWebUi, receiver: &Receiver) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    config(
        dir.path(),
        fake,
        receiver,
        port,
        &[(
            "tick",
            "on:\n  schedule:\n    cron: \"* * * * * *\"\nchat:\n  model: fake-model\n  prompt: tick\n",
        )],
    );
    let ferry = start(dir, port);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/api/v1/jobs?limit=1000",
            ferry.port
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut enqueued = Vec::new();
    let mut finished = Vec::new();
    for j in v["jobs"].as_array().unwrap() {
        // ferry's own upkeep (the start-up sweep) has no fire time.
        let Some(fire) = j["input"]["schedule"]["fire_time"].as_str() else {
            continue;
        };
        let fire = chrono::DateTime::parse_from_rfc3339(fire)
            .unwrap()
            .timestamp_millis();
        enqueued.push((j["created_at"].as_i64().unwrap() - fire) as f64);
        if let Some(f) = j["finished_at"].as_i64() {
            finished.push((f - fire) as f64);
        }
    }
    enqueued.sort_by(f64::total_cmp);
    finished.sort_by(f64::total_cmp);
    println!("schedule `* * * * * *` for 12 s: {} fires", enqueued.len());
    println!(
        "  fire time → job committed: p50 {:.1} ms, max {:.1} ms; → chat finished: p50 {:.1} ms, max {:.1} ms",
        percentile(&enqueued, 0.5),
        enqueued.last().unwrap(),
        percentile(&finished, 0.5),
        finished.last().unwrap()
    );
}

async fn deliveries(fake: &FakeOpenWebUi, receiver: &Receiver) {
    const QUEUED: usize = 20_000;
    const PIPELINES: usize = 1_000;
    receiver.state.lock().unwrap().count_only = true;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    config(
        dir.path(),
        fake,
        receiver,
        port,
        &[(
            "pipe",
            "on:\n  webhook:\n    path: pipe\n    rate_limit: 1000000/s\n    auth: { scheme: none }\nchat:\n  model: fake-model\n  prompt: \"{{ payload }}\"\ndeliver:\n  - to: sink\n",
        )],
    );
    // A backlog, written before the daemon starts.
    let store = Store::open(&dir.path().join("state/ferry.db"))
        .await
        .unwrap();
    let body = br#"{"type":"chat.completed","data":{"answer":"a short answer of a few words"}}"#;
    for chunk in (0..QUEUED).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<NewDelivery> = chunk
            .iter()
            .map(|i| NewDelivery {
                id: format!("msg_backlog_{i}"),
                job_id: None,
                rule: "pipe".into(),
                destination: "sink".into(),
                event_type: "chat.completed".into(),
                body: body.to_vec(),
                error: None,
            })
            .collect();
        store
            .insert_deliveries(&batch, ferry::clock::Clock::system().now_ms())
            .await
            .unwrap();
    }
    let before = receiver.count();
    let ferry = start(dir, port);
    let started = Instant::now();
    while receiver.count() - before < QUEUED as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "backlog not delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Recorded as delivered, not just sent.
    loop {
        let n = store.delivered_count(false).await.unwrap();
        if n as usize >= QUEUED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recorded = started.elapsed().as_secs_f64();
    println!("deliveries: backlog of {QUEUED} to a loopback receiver (synchronous=FULL):");
    println!(
        "  {:.0} deliveries/s sent ({elapsed:.1} s), all recorded delivered after {recorded:.1} s ({:.0}/s)",
        QUEUED as f64 / elapsed,
        QUEUED as f64 / recorded
    );

    // Pipelines: hook → chat → delivery, 20 at a time.
    let client = Arc::new(reqwest::Client::new());
    let url = format!("http://127.0.0.1:{}/hooks/pipe", ferry.port);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..20 {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            for i in 0..PIPELINES / 20 {
                let r = client
                    .post(&url)
                    .body(format!("event {w}-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let started = Instant::now();
    loop {
        let n = store.delivered_count(true).await.unwrap();
        if n as usize >= PIPELINES {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "pipelines not delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut gaps = store.first_attempt_gaps().await.unwrap();
    gaps.sort_by(f64::total_cmp);
    println!(
        "  {PIPELINES} hook → chat → delivery pipelines: job completion → first attempt p50 {:.1} ms, p99 {:.1} ms",
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.99)
    );
    drop(ferry);
}

fn main() {
    if let Ok(port) = std::env::var("FERRY_BENCH_NOOP_PORT") {
        noop_server(port.parse().unwrap());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    // `cargo bench` adds `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |part: &str| args.is_empty() || args.iter().any(|a| a == part);
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let receiver = Receiver::start().await;
    if want("hooks") {
        hooks(&fake, &receiver).await;
    }
    if want("schedule") {
        schedule(&fake, &receiver).await;
    }
    if want("deliveries") {
        deliveries(&fake, &receiver).await;
    }
    if want("retention") {
        retention(&fake, &receiver).await;
    }
}

/// 100,000 hook requests (1 KiB payloads, answered by the fake model),
/// then pruning as of 31 days later: the database file before and after.
async fn retention(fake: &FakeOpenWebUi, receiver: &Receiver) {
    const REQUESTS: usize = 100_000;
    const SENDERS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    config(
        dir.path(),
        fake,
        receiver,
        port,
        &[(
            "pipe",
            "on:\n  webhook:\n    path: pipe\n    rate_limit: 1000000/s\n    auth: { scheme: none }\nchat:\n  model: fake-model\n  prompt: \"{{ payload.n }}\"\n",
        )],
    );
    let db = dir.path().join("state/ferry.db");
    let ferry = start(dir, port);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(SENDERS)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{}/hooks/pipe", ferry.port);
    let filler = "p".repeat(1000);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (client, url, next, filler) =
                (client.clone(), url.clone(), next.clone(), filler.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= REQUESTS {
                        break;
                    }
                    let r = client
                        .post(&url)
                        .header("webhook-id", format!("evt-{n}"))
                        .json(&serde_json::json!({ "n": n, "filler": filler }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let sent = started.elapsed();
    let store = Store::open(&db).await.unwrap();
    loop {
        let counts = store.job_counts().await.unwrap();
        let done: i64 = counts
            .iter()
            .filter(|(s, _)| s == "succeeded")
            .map(|(_, n)| *n)
            .sum();
        if done as usize >= REQUESTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut ferry = ferry;
    let _ = ferry.child.kill();
    let _ = ferry.child.wait();
    let size = |store: &Store| {
        let store = store.clone();
        async move {
            store.checkpoint().await.unwrap();
            std::fs::metadata(store.path()).unwrap().len() as f64 / (1 << 20) as f64
        }
    };
    let before = size(&store).await;
    let prune_started = Instant::now();
    let pruned = store
        .prune(
            &ferry::store::Retention::default(),
            ferry::clock::Clock::system().now_ms() + 31 * 86_400_000,
        )
        .await
        .unwrap();
    let took = prune_started.elapsed();
    let after = size(&store).await;
    drop(ferry);
    println!(
        "retention: {REQUESTS} hook requests sent in {:.1}s; database {before:.1} MiB; \
         pruning 31 days later removed {} jobs in {:.1}s ({} keys kept as hashes); database {after:.1} MiB",
        sent.as_secs_f64(),
        pruned.jobs,
        took.as_secs_f64(),
        pruned.jobs,
    );
}
