//! ferry under systemd, as `Type=notify` sees it: the real binary with a
//! `NOTIFY_SOCKET` of the test's, so every `READY=1`, `STATUS=` and
//! `WATCHDOG=1` it sends is read here.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::daemon::{Daemon, free_port};

/// A config whose Open WebUI is down (nothing listens on port 9).
fn write_config(dir: &Path, port: u16) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        format!(
            "openwebui:\n  url: http://127.0.0.1:9\n  api_key: sk-test-0123456789\n\
             state:\n  database: state/ferry.db\n\
             server:\n  listen: 127.0.0.1:{port}\n\
             rules: rules\nshutdown_grace: 2s\n"
        ),
    )
    .unwrap();
}

struct Notifications {
    socket: UnixDatagram,
    /// Every message so far, with when it came.
    seen: Vec<(Instant, String)>,
}

impl Notifications {
    fn bind(dir: &Path) -> Notifications {
        let socket = UnixDatagram::bind(dir.join("notify.sock")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Notifications {
            socket,
            seen: Vec::new(),
        }
    }

    /// Reads messages for `d`.
    fn read_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                for line in text.lines() {
                    self.seen.push((Instant::now(), line.to_string()));
                }
            }
        }
    }

    /// Reads until a message from the `since`th on satisfies `f`.
    fn wait_for(
        &mut self,
        what: &str,
        since: usize,
        limit: Duration,
        f: impl Fn(&str) -> bool,
    ) -> String {
        let until = Instant::now() + limit;
        let mut from = since;
        loop {
            if let Some((_, m)) = self.seen[from..].iter().find(|(_, m)| f(m)) {
                return m.clone();
            }
            from = self.seen.len();
            assert!(Instant::now() < until, "no {what} in {:#?}", self.seen);
            self.read_for(Duration::from_millis(100));
        }
    }

    fn pings_since(&self, t: Instant) -> Vec<Instant> {
        self.seen
            .iter()
            .filter(|(at, m)| *at >= t && m == "WATCHDOG=1")
            .map(|(at, _)| *at)
            .collect()
    }
}

/// `READY=1` comes once the store is open and the listener bound, with
/// Open WebUI down; `STATUS=` says why work waits; the watchdog is fed
/// while the loops make progress, stops while the database is held by
/// another process (a wedged loop), and resumes after; `STOPPING=1` at
/// SIGTERM.
#[test]
fn ready_status_and_a_watchdog_that_follows_the_loops() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), port);
    let mut notes = Notifications::bind(dir.path());
    let socket = dir.path().join("notify.sock").display().to_string();
    let started = Instant::now();
    let daemon = Daemon::spawn(
        dir.path(),
        port,
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "1000000")],
    );
    notes.wait_for("READY=1", 0, Duration::from_secs(10), |m| m == "READY=1");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "READY=1 before the listener was bound"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ready took {:?} with Open WebUI down",
        started.elapsed()
    );
    let status = notes.wait_for(
        "a status naming Open WebUI's problem",
        0,
        Duration::from_secs(20),
        |m| m.starts_with("STATUS=") && m.contains("openwebui: "),
    );
    assert!(status.starts_with("STATUS=0 rules, "), "{status}");

    let fed = Instant::now();
    notes.read_for(Duration::from_secs(2));
    let pings = notes.pings_since(fed);
    assert!(
        pings.len() >= 4,
        "{} pings in 2 s (1 s watchdog)",
        pings.len()
    );

    // Another process holds the database's write lock for 9 s: every
    // claim waits on it (ferry's busy timeout is 10 s).
    let db = dir.path().join("state/ferry.db");
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             print('held', flush=True)\n\
             time.sleep(9)\n\
             c.execute('COMMIT')\n",
        )
        .arg(&db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead as _;
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held");
    }
    let held = Instant::now();
    let mark = notes.seen.len();
    notes.wait_for(
        "a status naming the stalled loop",
        mark,
        Duration::from_secs(9),
        |m| m.starts_with("STATUS=") && m.contains("loop stalled for"),
    );
    notes.read_for(Duration::from_secs(9).saturating_sub(held.elapsed()));
    holder.wait().unwrap();
    let released = Instant::now();
    // No ping between 6 s after the lock was taken (5 s without progress,
    // plus a tick) and 8.5 s after: the lock goes 9 s after "held" was
    // printed, and ferry may ping at once then, before this process sees
    // the holder exit (it did so in CI, and the ping counted as "wedged").
    let quiet_from = held + Duration::from_secs(6);
    let quiet_until = held + Duration::from_millis(8500);
    let during: Vec<_> = notes
        .pings_since(quiet_from)
        .into_iter()
        .filter(|t| *t < quiet_until)
        .collect();
    assert!(
        during.is_empty(),
        "{} pings while the loops were wedged",
        during.len()
    );
    let mark = notes.seen.len();
    notes.wait_for("pings again", mark, Duration::from_secs(15), |m| {
        m == "WATCHDOG=1"
    });
    assert!(
        !notes.pings_since(released).is_empty(),
        "the pings came back after the release"
    );
    assert!(
        daemon.log().contains("watchdog pings stop"),
        "{}",
        daemon.log()
    );

    daemon.stop();
    notes.read_for(Duration::from_millis(300));
    assert!(
        notes.seen.iter().any(|(_, m)| m == "STOPPING=1"),
        "{:#?}",
        notes.seen
    );
}

/// A port already in use fails the start at once, with one line and exit
/// 1 (which the unit does not restart), Open WebUI down or not.
#[test]
fn a_port_in_use_fails_at_once_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    write_config(dir.path(), port);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--config", "ferry.yaml"])
        .current_dir(dir.path())
        .env("NOTIFY_SOCKET", dir.path().join("none.sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// Under systemd, stderr is the journal's stream (`JOURNAL_STREAM` names
/// its device and inode): each line carries its priority as `<N>` and no
/// timestamp of its own, so `journalctl -p warning` finds the warnings.
#[test]
fn log_lines_to_the_journal_carry_their_priority() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), port);
    let log = dir.path().join("ferry.log");
    std::fs::write(&log, "").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let daemon = Daemon::spawn(dir.path(), port, &[("JOURNAL_STREAM", &stream)]);
    let started = Instant::now();
    // Open WebUI is down: the probe warns.
    while !daemon.log().contains("<4>") && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = daemon.log();
    daemon.stop();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("ferry running")),
        "{text}"
    );
    assert!(lines.iter().any(|l| l.starts_with("<4>")), "{text}");
    for l in &lines {
        assert!(l.starts_with('<'), "a line without its priority: {l}");
        assert!(!l.contains("Z "), "a line with its own timestamp: {l}");
    }

    // Not the journal's stream (another inode): plain lines with time.
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), port);
    let daemon = Daemon::spawn(dir.path(), port, &[("JOURNAL_STREAM", &stream)]);
    std::thread::sleep(Duration::from_millis(300));
    let text = daemon.log();
    daemon.stop();
    assert!(text.lines().all(|l| !l.starts_with('<')), "{text}");
}
