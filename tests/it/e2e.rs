//! End to end against a real Open WebUI, through the `ferry` binary.
//!
//! Run by `scripts/e2e.sh`, which starts Open WebUI (0.12.4 and 0.6.40) and
//! the stand-in model and exports FERRY_E2E_*; ignored by a plain
//! `cargo test`. What Open WebUI holds is checked with plain HTTP calls to
//! its own API, not with ferry's client.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::e2e::{Api, Server, instance_of, server};

/// A working directory with a config; `password` picks email + password auth.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(s: &Server, password: bool) -> Workspace {
        Self::with_url(s, &s.url, password)
    }

    fn with_url(s: &Server, url: &str, password: bool) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let auth = if password {
            format!("  email: {}\n  password: ${{E2E_PASSWORD}}\n", s.email)
        } else {
            "  api_key: ${E2E_API_KEY}\n".to_string()
        };
        std::fs::write(
            dir.path().join("ferry.yaml"),
            format!("openwebui:\n  url: {url}\n{auth}  timeout: 60s\nstate:\n  database: state/ferry.db\nrules: []\n"),
        )
        .unwrap();
        Workspace { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, s: &Server, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.args(args)
            .current_dir(self.path())
            .env("E2E_API_KEY", &s.api_key)
            .env("E2E_PASSWORD", &s.password)
            .env_remove("RUST_BACKTRACE")
            .env_remove("FERRY_CONFIG");
        c
    }

    fn run(&self, s: &Server, args: &[&str]) -> Output {
        self.command(s, args).output().unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn write_files(dir: &Path, files: &[(String, String)]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    files
        .iter()
        .map(|(name, content)| {
            let p = dir.join(name);
            std::fs::write(&p, content).unwrap();
            p
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs a real Open WebUI: scripts/e2e.sh"]
async fn whoami_and_models_with_api_key_and_with_password() {
    let s = server();
    for password in [false, true] {
        let ws = Workspace::new(&s, password);
        let out = ws.run(&s, &["whoami"]);
        assert!(out.status.success(), "{}", all(&out));
        assert!(
            stdout(&out).contains(&format!("Open WebUI {}", s.version)),
            "{}",
            all(&out)
        );
        if password || s.version.starts_with("0.6.") {
            assert!(stdout(&out).contains(&s.email), "{}", all(&out));
        }
        let out = ws.run(&s, &["models"]);
        assert!(out.status.success(), "{}", all(&out));
        assert!(
            stdout(&out).lines().any(|l| l.starts_with("fake-model")),
            "{}",
            all(&out)
        );
        let out = ws.run(&s, &["chats"]);
        assert!(out.status.success(), "{}", all(&out));
    }
}

#[tokio::test]
#[ignore = "needs a real Open WebUI: scripts/e2e.sh"]
async fn ingest_twenty_files_verified_then_nothing_twice() {
    let s = server();
    let api = Api::new(&s);
    let ws = Workspace::new(&s, false);
    let collection = unique("e2e-ingest");
    let docs = ws.path().join("docs");
    let files: Vec<(String, String)> = (1..=20)
        .map(|i| {
            (
                format!("note-{i:02}.md"),
                format!(
                    "# Note {i}\n\nThis note is about subject number {i} and the word marker{i}x.\n"
                ),
            )
        })
        .collect();
    write_files(&docs, &files);

    let started = Instant::now();
    let out = ws.run(&s, &["ingest", "docs", "--collection", &collection]);
    let first_run = started.elapsed();
    assert!(out.status.success(), "{}", all(&out));
    assert!(
        stdout(&out).contains("20 linked, 0 unchanged, 0 failed"),
        "{}",
        all(&out)
    );
    let kb = api.knowledge_id(&collection).await;
    let mut names = api.knowledge_file_names(&kb).await;
    names.sort();
    let mut expected: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    expected.sort();
    assert_eq!(
        names, expected,
        "Open WebUI's own list holds exactly the 20 files"
    );
    eprintln!(
        "e2e {}: 20 files ingested and verified in {:.1}s",
        s.version,
        first_run.as_secs_f64()
    );

    let me = instance_of(&ws.path().join("state/ferry.db")).await;
    assert_eq!(api.uploads_of(&me).await, 20, "one upload per file");
    let out = ws.run(&s, &["ingest", "docs", "--collection", &collection]);
    assert!(out.status.success(), "{}", all(&out));
    assert!(
        stdout(&out).contains("0 linked, 20 unchanged, 0 failed"),
        "{}",
        all(&out)
    );
    assert_eq!(
        api.uploads_of(&me).await,
        20,
        "a second identical run uploads nothing"
    );

    // A duplicate and an empty file fail with their reasons and stop
    // nothing: two new files in the same run are linked.
    write_files(
        &docs,
        &[
            ("copy-of-note-01.md".into(), files[0].1.clone()),
            ("empty.md".into(), String::new()),
            (
                "note-21.md".into(),
                "A twenty-first note about quokkas.\n".into(),
            ),
            (
                "note-22.md".into(),
                "A twenty-second note about axolotls.\n".into(),
            ),
        ],
    );
    let out = ws.run(&s, &["ingest", "docs", "--collection", &collection]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.contains("copy-of-note-01.md") && l.contains("duplicate")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("empty.md") && l.contains(": empty")),
        "{text}"
    );
    assert!(text.contains("2 linked, 20 unchanged, 2 failed"), "{text}");
    let names = api.knowledge_file_names(&kb).await;
    assert_eq!(names.len(), 22, "{names:?}");
    assert!(names.contains(&"note-22.md".to_string()) && !names.contains(&"empty.md".to_string()));

    // The same duplicate seen by a ferry without that memory: Open WebUI
    // itself refuses it, ferry says `duplicate` and leaves no orphan upload.
    let other = Workspace::new(&s, false);
    let dup = write_files(
        &other.path().join("d"),
        &[("again.md".into(), files[1].1.clone())],
    );
    let out = other.run(
        &s,
        &[
            "ingest",
            dup[0].to_str().unwrap(),
            "--collection",
            &collection,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.contains("again.md") && l.contains("duplicate")),
        "{}",
        all(&out)
    );
    let them = instance_of(&other.path().join("state/ferry.db")).await;
    assert_eq!(
        api.uploads_of(&them).await,
        0,
        "the refused upload was deleted again"
    );
    let out = other.run(&s, &["docs", "--state", "failed"]);
    assert!(stdout(&out).contains("[duplicate]"), "{}", all(&out));
}

#[tokio::test]
#[ignore = "needs a real Open WebUI: scripts/e2e.sh"]
async fn ask_with_collection_reaches_the_document_text() {
    let s = server();
    let ws = Workspace::new(&s, false);
    let collection = unique("e2e-ask");
    let mut files: Vec<(String, String)> = (1..=6)
        .map(|i| {
            (
                format!("filler-{i}.md"),
                format!("Filler document {i} about gardening, tomatoes and rain.\n"),
            )
        })
        .collect();
    files.push((
        "pelican.md".into(),
        "The pelican launch code is QX7-PELICAN-42. Keep the pelican launch code safe.\n".into(),
    ));
    write_files(&ws.path().join("docs"), &files);
    let out = ws.run(&s, &["ingest", "docs", "--collection", &collection]);
    assert!(out.status.success(), "{}", all(&out));

    let out = ws.run(
        &s,
        &[
            "ask",
            "--model",
            "fake-model",
            "--collection",
            &collection,
            "What is the pelican launch code?",
        ],
    );
    assert!(out.status.success(), "{}", all(&out));
    // QX7 is only in pelican.md, not in the question: it came through retrieval.
    assert!(stdout(&out).contains("QX7-PELICAN-42"), "{}", all(&out));
}

#[tokio::test]
#[ignore = "needs a real Open WebUI: scripts/e2e.sh"]
async fn streamed_answer_arrives_in_several_chunks() {
    let s = server();
    let ws = Workspace::new(&s, false);
    let prompt =
        "Please repeat this long sentence about rivers, bridges and ferries back to me slowly.";
    let mut child = ws
        .command(&s, &["ask", "--model", "fake-model", prompt])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut chunks: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        chunks.push((Instant::now(), buf[..n].to_vec()));
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    let text: String = chunks
        .iter()
        .map(|(_, c)| String::from_utf8_lossy(c).to_string())
        .collect();
    assert!(text.contains(prompt), "{text}");
    assert!(
        chunks.len() > 1,
        "the answer came in {} chunk(s)",
        chunks.len()
    );
    let spread = chunks.last().unwrap().0 - chunks[0].0;
    assert!(
        spread > Duration::from_millis(50),
        "chunks spread over {spread:?}"
    );
}

#[tokio::test]
#[ignore = "needs a real Open WebUI: scripts/e2e.sh"]
async fn failures_are_one_line_with_exit_1() {
    let s = server();
    let check = |out: &Output, needle: &str| {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{}", all(out));
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    };

    let ws = Workspace::new(&s, false);
    check(
        &ws.run(&s, &["ask", "--model", "no-such-model", "hi"]),
        "Model not found",
    );

    let mut wrong_key = ws.command(&s, &["models"]);
    wrong_key.env("E2E_API_KEY", "sk-0000000000000000000000000000dead");
    let out = wrong_key.output().unwrap();
    check(&out, "not signed in");
    assert!(!all(&out).contains("dead"), "the key is not echoed");

    // A web server that is not Open WebUI: HTML for everything.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Write as _;
            let mut stream = stream;
            let mut req = [0u8; 4096];
            let _ = stream.read(&mut req);
            let body = "<!doctype html><html><body>Welcome to nginx!</body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    // The e2e server runs with ENABLE_OLLAMA_API=false: 0.12 refuses pull
    // ("The Ollama API is disabled"), 0.6.40 tries anyway and fails to
    // connect ("Ollama: Cannot connect to host localhost:11434").
    check(&ws.run(&s, &["pull", "llama3.2:1b"]), "Ollama");

    let html = Workspace::with_url(&s, &format!("http://{addr}"), false);
    check(&html.run(&s, &["models"]), "HTML");
    check(&html.run(&s, &["whoami"]), "HTML");
}

#[tokio::test]
#[ignore = "needs a real Open WebUI: scripts/e2e.sh"]
async fn saved_exchange_shows_as_a_chat_with_both_messages() {
    let s = server();
    let api = Api::new(&s);
    let ws = Workspace::new(&s, true);
    let question = format!("Which ferry leaves first? {}", unique("q"));
    let out = ws.run(&s, &["ask", "--model", "fake-model", "--save", &question]);
    assert!(out.status.success(), "{}", all(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let id = err
        .lines()
        .find_map(|l| l.strip_prefix("saved as chat "))
        .unwrap_or_else(|| panic!("no chat id in: {err}"))
        .trim()
        .to_string();

    // The key's owner is the admin who signed in: the chat is in its list.
    let list = ws.run(&s, &["chats"]);
    assert!(
        stdout(&list).lines().any(|l| l.starts_with(&id)),
        "{}",
        all(&list)
    );
    let chat = api.get(&format!("/api/v1/chats/{id}")).await;
    let history = &chat["chat"]["history"];
    let current = history["currentId"].as_str().expect("currentId");
    let answer = &history["messages"][current];
    assert_eq!(answer["role"], "assistant");
    assert!(answer["content"].as_str().unwrap().contains(&question));
    let parent = answer["parentId"].as_str().expect("parentId");
    assert_eq!(history["messages"][parent]["role"], "user");
    assert_eq!(history["messages"][parent]["content"], question.as_str());
}

/// The admin API's description passes an independent validator
/// (openapi-spec-validator), and Open WebUI reads it as a tool server with
/// the tool token — the way the README tells admins to add ferry.
#[tokio::test]
#[ignore = "needs a real Open WebUI: scripts/e2e.sh"]
async fn the_api_description_validates_and_open_webui_takes_it_as_a_tool_server() {
    use crate::helpers::daemon::{ADMIN, Daemon, free_port};
    const TOOL: &str = "tool-token-for-open-webui-0123";
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "openwebui:\n  url: {}\n  api_key: ${{E2E_API_KEY}}\nstate:\n  database: state/ferry.db\n\
             server:\n  listen: 127.0.0.1:{port}\n  admin_token: {ADMIN}\n  tool_token: {TOOL}\n",
            s.url
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules/greet.yaml"),
        "chat:\n  model: fake-model\n  prompt: Hello\n",
    )
    .unwrap();
    let daemon = Daemon::spawn(dir.path(), port, &[("E2E_API_KEY", &s.api_key)]);
    let base = format!("http://127.0.0.1:{port}");
    let spec = reqwest::get(format!("{base}/api/v1/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &spec).unwrap();
    let validator = std::env::var("FERRY_E2E_OPENAPI_VALIDATOR")
        .expect("FERRY_E2E_OPENAPI_VALIDATOR: run with scripts/e2e.sh");
    let out = Command::new(&validator).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", all(&out));
    assert!(stdout(&out).contains("OK"), "{}", all(&out));

    // Open WebUI's own check of a tool server connection, as its admin
    // settings page makes it: URL {ferry}/api/v1, spec path openapi.json,
    // bearer auth with the tool token.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/configs/tool_servers/verify", s.url))
        .bearer_auth(&s.api_key)
        .json(&serde_json::json!({
            "url": format!("{base}/api/v1"),
            "path": "openapi.json",
            "type": "openapi",
            "auth_type": "bearer",
            "key": TOOL,
            "config": {},
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let seen: serde_json::Value = r.json().await.unwrap_or_default();
    assert_eq!(status, 200, "Open WebUI refused the tool server: {seen}");
    let ops: Vec<&str> = seen["paths"]
        .as_object()
        .map(|p| {
            p.values()
                .flat_map(|m| m.as_object().unwrap().values())
                .filter_map(|op| op["operationId"].as_str())
                .collect()
        })
        .unwrap_or_default();
    for id in ["list_documents", "run_rule", "list_jobs"] {
        assert!(ops.contains(&id), "{id} not among {ops:?}");
    }
    daemon.stop();
}
