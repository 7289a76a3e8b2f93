//! Benchmarks of `ferry run` with a watch rule. Prints figures; asserts
//! only that the work was done. Run through `scripts/bench.sh`.
//!
//! - `real`: 1,000 small files dropped into a watched folder, against the
//!   Open WebUI that `scripts/bench.sh` starts (FERRY_E2E_* variables):
//!   files/s end to end, p50/p99 drop-to-linked latency, ferry's CPU
//!   seconds per file, peak RSS.
//! - `ingest`: `real`'s run against the in-process fake Open WebUI, which
//!   answers at once: ferry's own CPU per file, without the server's speed.
//! - `settle`: the watcher's settling of a large copy, without a disk: 100,000
//!   files written 10,000 a second (three events each), each event followed
//!   by the watcher's look for the next due time and for settled files.
//!   Prints the time per event and in all.
//! - `fake`: a 100,000-file tree that the state DB already knows, against
//!   the in-process fake Open WebUI: time of the startup reconcile, RSS,
//!   and CPU while idle.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry::safe_fs::FileStat;
use ferry::store::Store;
use ferry::testing::fake_openwebui::{API_KEY, FakeOpenWebUi, StoredFile};

const ADMIN: &str = "bench-admin-token-0123456789";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (user + system CPU seconds, peak RSS in MiB, current RSS in MiB) of a process.
fn usage(pid: u32) -> (f64, f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (
        ticks / 100.0,
        kib("VmHWM:") / 1024.0,
        kib("VmRSS:") / 1024.0,
    )
}

fn write_config(
    dir: &Path,
    url: &str,
    key_env: &str,
    port: u16,
    inbox: &Path,
    settle: &str,
    collection: &str,
) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        format!(
            "openwebui:\n  url: {url}\n  api_key: ${{{key_env}}}\n  max_in_flight: 4\nstate:\n  database: state/ferry.db\nserver:\n  listen: 127.0.0.1:{port}\n  admin_token: {ADMIN}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("rules/bench.yaml"),
        format!(
            "name: bench\non:\n  watch:\n    path: {}\n    settle: {settle}\ningest:\n  collection: {collection}\n",
            inbox.display()
        ),
    )
    .unwrap();
}

/// The daemon under measure; killed when dropped, so that a bench that
/// fails an assertion leaves no ferry behind using the machine.
struct Ferry(Child);

impl std::ops::Deref for Ferry {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Ferry {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_ferry(dir: &Path, key_env: &str, key: &str, port: u16, log_level: &str) -> Ferry {
    let log = std::fs::File::create(dir.join("ferry.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--config", "ferry.yaml", "--log-level", log_level])
        .current_dir(dir)
        .env(key_env, key)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let child = Ferry(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ferry did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn real() {
    let url = std::env::var("FERRY_E2E_URL").expect("FERRY_E2E_URL: run scripts/bench.sh");
    let key = std::env::var("FERRY_E2E_API_KEY").expect("FERRY_E2E_API_KEY");
    let version = std::env::var("FERRY_E2E_VERSION").unwrap_or_default();
    ingest(&url, &key, &format!("real Open WebUI {version}")).await;
}

/// `real`'s run against the in-process fake, which answers at once: what
/// is left is ferry's own cost per file, without the server's speed (which
/// varies by a fifth from run to run here, and ferry's time-bound work with
/// it).
async fn ingest_fake() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    ingest(&fake.url(), API_KEY, "fake Open WebUI 0.12.4").await;
}

async fn ingest(url: &str, key: &str, server: &str) {
    let count: usize = std::env::var("FERRY_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let port = free_port();
    // A collection and words of this run's own, as a second tool on the
    // server would have: Open WebUI refuses content that a collection
    // already holds, so a second run on a kept server would fail every file.
    let run = now_ms();
    write_config(
        dir.path(),
        url,
        "BENCH_KEY",
        port,
        &inbox,
        "1s",
        &format!("Bench {run}"),
    );
    // FERRY_BENCH_LOG=debug,sqlx::query=debug FERRY_BENCH_KEEP_LOG=/tmp/f.log
    // to see what each file costs.
    let log_level = std::env::var("FERRY_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let spawned = now_ms();
    let mut child = spawn_ferry(dir.path(), "BENCH_KEY", key, port, &log_level);
    // Dropped once the folder is watched, as into a daemon that runs: a
    // file written before then is found by the start-up scan, which
    // cannot know that its writer closed it, so it waits out `settle`
    // (the first run of the day lost 0.75 s to that race).
    watching(port).await;
    let (cpu_before, _, _) = usage(child.id());

    let mut dropped = std::collections::HashMap::new();
    let t0 = now_ms();
    for i in 0..count {
        let p = inbox.join(format!("s{}/f{i:04}.md", i % 10));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            format!("# Benchmark file {i}\n\nUnique words: bench{run}x{i}alpha bench{i}omega.\n"),
        )
        .unwrap();
        dropped.insert(p.to_string_lossy().to_string(), now_ms());
    }
    // Watched from outside, in the state DB, so the observer's work is not
    // charged to ferry's CPU.
    let store = Store::open(&dir.path().join("state/ferry.db"))
        .await
        .unwrap();
    let started = Instant::now();
    let docs = loop {
        let docs = store
            .documents(&ferry::store::DocumentFilter {
                state: Some(ferry::store::DocumentState::Linked),
                ..Default::default()
            })
            .await
            .unwrap();
        if docs.len() >= count {
            break docs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "only {} of {count} linked",
            docs.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (cpu_after, peak_mib, _) = usage(child.id());
    let mut latencies: Vec<i64> = docs
        .iter()
        .map(|d| d.updated_at - dropped[d.path.as_str()])
        .collect();
    latencies.sort();
    let last = docs.iter().map(|d| d.updated_at).max().unwrap();
    let elapsed_s = (last - t0) as f64 / 1000.0;
    println!("ferry on {server}, {count} files, settle 1s, max_in_flight 4:");
    println!(
        "  end to end (first drop → last linked): {elapsed_s:.1} s = {:.1} files/s",
        count as f64 / elapsed_s
    );
    println!(
        "  from process start (ferry spawned, files dropped once it watches): {:.1} s = {:.1} files/s",
        (last - spawned) as f64 / 1000.0,
        count as f64 * 1000.0 / (last - spawned) as f64
    );
    println!(
        "  drop → linked latency: p50 {:.2} s, p99 {:.2} s",
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0
    );
    println!(
        "  ferry CPU: {:.2} s in all, {:.2} ms per file; peak RSS {peak_mib:.1} MiB",
        cpu_after - cpu_before,
        (cpu_after - cpu_before) * 1000.0 / count as f64
    );
    child.kill().unwrap();
    child.wait().unwrap();
    if let Ok(keep) = std::env::var("FERRY_BENCH_KEEP_LOG") {
        std::fs::copy(dir.path().join("ferry.log"), &keep).unwrap();
        println!("  ferry's log: {keep}");
    }
}

/// A fake Open WebUI with the `Bench` collection, a config, and a watched
/// tree of `FERRY_BENCH_TREE` files (default 100,000) that the state
/// database already knows as linked. Returns the fake, the directory (its
/// store closed again), the port, the file count and the setup time.
async fn in_sync_tree() -> (FakeOpenWebUi, tempfile::TempDir, u16, usize, Duration) {
    let count: usize = std::env::var("FERRY_BENCH_TREE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let kb = fake_kb(&fake).await;
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    let port = free_port();
    write_config(
        dir.path(),
        &fake.url(),
        "BENCH_KEY",
        port,
        &inbox,
        "2s",
        "Bench",
    );
    // Flat: the seeded files sit at the collection's top, as Open WebUI
    // holds them below (a mirrored tree would be placed into folders).
    let rule = dir.path().join("rules/bench.yaml");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(&rule, format!("{text}  tree: flat\n")).unwrap();
    let made = Instant::now();
    let mut seeded = Vec::with_capacity(count);
    for i in 0..count {
        let p = inbox.join(format!("a{}/b{}/f{i}.md", i % 100, (i / 100) % 10));
        if i < 1000 {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        }
        std::fs::write(&p, format!("file {i}")).unwrap();
        let st = FileStat::of(&std::fs::metadata(&p).unwrap());
        seeded.push((
            p.to_string_lossy().into_owned(),
            st.size as i64,
            st.mtime_ns,
            st.inode as i64,
            format!("f{i}"),
        ));
    }
    // Open WebUI holds every file linked, as the state database says: in
    // sync on both sides, so the drift repair has nothing to bring back.
    {
        let mut st = fake.state.lock().unwrap();
        for i in 0..count {
            let id = format!("f{i}");
            let file = StoredFile::new(
                &id,
                &format!("f{i}.md"),
                format!("file {i}").into_bytes(),
                serde_json::json!({}),
            );
            st.files.insert(id, file);
        }
        let k = st.knowledge.iter_mut().find(|k| k.id == kb).unwrap();
        k.files = (0..count).map(|i| format!("f{i}")).collect();
    }
    let store = Store::open(&dir.path().join("state/ferry.db"))
        .await
        .unwrap();
    store
        .seed_linked("bench", (&kb, "Bench"), &seeded, now_ms())
        .await
        .unwrap();
    (fake, dir, port, count, made.elapsed())
}

async fn fake() {
    let (fake, dir, port, count, made) = in_sync_tree().await;
    println!(
        "fake Open WebUI, {count} files already in sync (set up in {:.1} s):",
        made.as_secs_f64()
    );

    let spawned = Instant::now();
    let mut child = spawn_ferry(
        dir.path(),
        "BENCH_KEY",
        API_KEY,
        port,
        "warn,ferry::triggers::watch=debug",
    );
    let log = dir.path().join("ferry.log");
    let reconciled = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("reconciled")) {
            break line.to_string();
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(600),
            "no reconcile:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let to_done = spawned.elapsed();
    let scan_ms = reconciled
        .split("elapsed_ms=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("?");
    let checks = reconciled
        .split("checks=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("?");
    let (_, peak_mib, rss_mib) = usage(child.id());
    println!(
        "  startup reconcile of the unchanged tree: {scan_ms} ms (process start → reconciled: {:.2} s); files to look at: {checks}",
        to_done.as_secs_f64()
    );
    println!("  RSS after the reconcile: {rss_mib:.1} MiB (peak {peak_mib:.1} MiB)");
    let (cpu0, _, _) = usage(child.id());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu1, _, rss_idle) = usage(child.id());
    println!(
        "  idle: {:.3} CPU s over 10 s ({:.2}% of a core); RSS {rss_idle:.1} MiB",
        cpu1 - cpu0,
        (cpu1 - cpu0) * 10.0
    );
    let uploads = fake.count("POST", "/api/v1/files/");
    println!("  uploads: {uploads}");
    assert_eq!(uploads, 0, "an unchanged tree uploads nothing");
    assert_eq!(checks, "0", "an unchanged tree needs no look");
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn fake_kb(fake: &FakeOpenWebUi) -> String {
    let client = ferry::openwebui::Client::new(ferry::openwebui::ClientOptions {
        clock: ferry::clock::Clock::system(),
        url: fake.url().parse().unwrap(),
        auth: ferry::config::Auth::ApiKey(ferry::config::Secret::new(API_KEY)),
        timeout: Duration::from_secs(10),
        max_in_flight: 2,
        processing_timeout: Duration::from_secs(10),
        retry: Default::default(),
        metrics: None,
    })
    .unwrap();
    client
        .create_knowledge("Bench", "benchmark", &Default::default())
        .await
        .unwrap()
        .id
}

/// Reads ferry's `/metrics` every `every` until `ready` says yes of it;
/// fails with `what` and the last text after `limit`.
async fn until_metrics(
    http: &reqwest::Client,
    base: &str,
    every: Duration,
    limit: Duration,
    what: &str,
    ready: impl Fn(&str) -> bool,
) {
    let started = Instant::now();
    loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if ready(&text) {
            return;
        }
        assert!(started.elapsed() < limit, "{what}:\n{text}");
        tokio::time::sleep(every).await;
    }
}

/// Waits until ferry's watcher has compared its folder once (`/metrics`),
/// so it watches it.
async fn watching(port: u16) {
    until_metrics(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}"),
        Duration::from_millis(10),
        Duration::from_secs(60),
        "ferry does not watch its folder",
        |text| {
            text.lines()
                .any(|l| l.starts_with("ferry_watch_reconciles_total{") && !l.ends_with(" 0"))
        },
    )
    .await;
}

/// Waits until ferry has no job queued or running (its `/metrics`), and a
/// second more.
async fn wait_for_no_work(http: &reqwest::Client, base: &str) {
    until_metrics(
        http,
        base,
        Duration::from_millis(200),
        Duration::from_secs(120),
        "ferry still busy after 120 s",
        |text| {
            !text.lines().any(|l| {
                l.starts_with("ferry_jobs{")
                    && (l.contains("state=\"queued\"") || l.contains("state=\"running\""))
                    && !l.ends_with(" 0")
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The status pages of a large installation: 100,000 documents (an
/// unchanged tree, as in `fake`) and 100,000 finished jobs → server time
/// of the overview, a rule's documents page and the jobs page (loopback,
/// signed in), and their weight.
async fn ui() {
    let jobs: usize = std::env::var("FERRY_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (_fake, dir, port, count, _) = in_sync_tree().await;
    let store = Store::open(&dir.path().join("state/ferry.db"))
        .await
        .unwrap();
    store.seed_jobs("bench", jobs, now_ms()).await.unwrap();
    drop(store);
    let mut child = spawn_ferry(dir.path(), "BENCH_KEY", API_KEY, port, "warn");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let cookie = ferry::testing::ui_session(&http, &base, ADMIN).await;
    // Settled first: the start-up reconcile reads the whole tree, and the
    // drift repair the collection's 100 pages from the fake, which lives in
    // this process and would slow the requests measured here.
    wait_for_no_work(&http, &base).await;
    println!("status pages with {count} documents and {jobs} jobs in the store:");
    let mut weights = Vec::new();
    for (name, path, rounds) in [
        ("overview", "/ui/", 200),
        ("a rule's documents (500 shown)", "/ui/rules/bench", 50),
        (
            "failed documents (none)",
            "/ui/rules/bench?state=failed",
            50,
        ),
        ("jobs (200 shown)", "/ui/jobs", 50),
        ("dead jobs", "/ui/jobs?state=dead", 50),
    ] {
        let mut times = Vec::with_capacity(rounds);
        let mut bytes = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let r = http
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            bytes = r.bytes().await.unwrap().len();
            times.push(t.elapsed().as_micros() as i64);
        }
        times.sort();
        println!(
            "  {name}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.1} KB of HTML",
            percentile(&times, 0.5) as f64 / 1000.0,
            percentile(&times, 0.99) as f64 / 1000.0,
            *times.last().unwrap() as f64 / 1000.0,
            bytes as f64 / 1024.0
        );
        weights.push((name, bytes));
    }
    let mut assets = 0;
    for path in ["/ui/style.css", "/ui/refresh.js"] {
        assets += http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len();
    }
    println!(
        "  page weight of the overview: {:.1} KB HTML + {:.1} KB stylesheet and script (cached), no images or fonts",
        weights[0].1 as f64 / 1024.0,
        assets as f64 / 1024.0
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `settle`: what the watch loop does per event (`touch`, then
/// `next_due`, then `poll`), with time and `stat` as inputs.
fn settle() {
    use ferry::triggers::watch::settle::Settler;
    const FILES: u64 = 100_000;
    const EVENTS_EACH: u64 = 3;
    // 10,000 files a second: a copy from a fast disk.
    const APART: Duration = Duration::from_micros(100);
    let settle = Duration::from_secs(1);
    let paths: Vec<std::path::PathBuf> = (0..FILES)
        .map(|i| format!("/inbox/s{}/f{i:06}.md", i % 10).into())
        .collect();
    let stat = |_: &Path| {
        Some(FileStat {
            size: 60,
            mtime_ns: 1,
            inode: 1,
        })
    };
    let mut settler = Settler::new(settle, None);
    let t0 = Instant::now();
    let started = Instant::now();
    let (mut events, mut settled, mut most_pending) = (0u64, 0usize, 0usize);
    for (i, path) in paths.iter().enumerate() {
        let now = t0 + APART * i as u32;
        for _ in 0..EVENTS_EACH {
            settler.touch(path.clone(), now);
            events += 1;
            std::hint::black_box(settler.next_due());
            settled += settler.poll(now, stat).len();
        }
        most_pending = most_pending.max(settler.len());
    }
    // The copy is over: the rest settle as their times come.
    let mut now = t0 + APART * FILES as u32;
    while let Some(due) = settler.next_due() {
        now = now.max(due);
        settled += settler.poll(now, stat).len();
    }
    let took = started.elapsed();
    assert_eq!(settled as u64, FILES, "every file settles once");
    println!(
        "settle: {FILES} files, {events} events, up to {most_pending} settling at once: {:.2} s in all, {:.2} µs per event",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / events as f64
    );
}

#[tokio::main]
async fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    if all || which.iter().any(|w| w == "fake") {
        fake().await;
    }
    if which.iter().any(|w| w == "real") {
        real().await;
    }
    if which.iter().any(|w| w == "ingest") {
        ingest_fake().await;
    }
    if which.iter().any(|w| w == "ui") {
        ui().await;
    }
    if which.iter().any(|w| w == "settle") {
        settle();
    }
}
