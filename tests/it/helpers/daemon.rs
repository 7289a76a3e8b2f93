//! `ferry run` as a child process of a test: started with a config in a
//! directory, stopped with SIGTERM or killed with SIGKILL, asked over its
//! admin API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "e2e-admin-token-0123456789";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether ferry answers `GET /healthz` on `port`. A bare connect is not
/// enough: it can succeed with ferry not yet listening (another process on
/// the port, or a TCP self-connect, where the kernel gives the probe the
/// very port it dials, both being in its ephemeral range). In CI one such
/// connect let a test send its first hook before ferry listened, and the
/// hook was refused.
fn answers_health(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    tcp.write_all(request.as_bytes()).is_ok()
        && tcp.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.1 200")
}

impl Daemon {
    /// Runs `ferry run --config ferry.yaml` in `dir` (log: `dir/ferry.log`)
    /// and waits until it answers on `port`.
    pub fn spawn(dir: &Path, port: u16, env: &[(&str, &str)]) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("ferry.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(["run", "--config", "ferry.yaml"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // A test may ask for more through its own RUST_LOG.
        command.env("RUST_LOG", "ferry=info");
        for (k, v) in env {
            command.env(k, v);
        }
        let d = Daemon {
            child: command.spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
        };
        let started = Instant::now();
        while !answers_health(port) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "daemon did not start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ferry.log")).unwrap_or_default()
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

pub struct Daemon {
    pub child: Child,
    pub base: String,
    dir: PathBuf,
}

impl Drop for Daemon {
    /// A failing test must not leave a daemon behind, and shows the end
    /// of its log: in CI the log's directory is gone with the test.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "--- the daemon's last {} log lines ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

impl Daemon {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    pub async fn paused(&self) -> Option<String> {
        let v: Value = self.get("/api/v1/rules").await.json().await.unwrap();
        v["rules"][0]["paused"].as_str().map(str::to_string)
    }

    /// SIGHUP: reload the rules.
    pub fn reload(&self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGTERM; must exit 0 within the grace.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "did not stop in time"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The process listening on 127.0.0.1:`port` (from /proc: the socket's
/// inode in /proc/net/tcp, then the process holding it), to stop and
/// continue it.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = tcp.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
        (local_port == port && *f.get(3)? == "0A").then(|| f.get(9).map(|s| s.to_string()))?
    })?;
    let wanted = format!("socket:[{inode}]");
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == wanted) {
                return Some(pid);
            }
        }
    }
    None
}
