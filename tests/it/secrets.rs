//! No secret leaves (security review M2, L1, I1): after failing deliveries
//! to a webhook whose URL holds credentials, and a hook request carrying
//! credential-like headers and query parameters, none of them is in the
//! log, the database file, any admin API answer, status page or CLI
//! output.

use std::process::Command;
use std::time::Duration;

use crate::helpers::daemon::{ADMIN, Daemon, free_port};
use crate::helpers::until;
use ferry::testing::fake_openwebui::{API_KEY, FakeOpenWebUi};
use serde_json::Value;

const PLANTED: [&str; 7] = [
    "SLACKPATHSECRET",
    "QUERYSECRET",
    "URLUSERSECRET",
    "OWUI-URL-PASSWORD",
    "SUPA-APIKEY-SECRET",
    "XAUTH-SECRET",
    "QS-TOKEN-SECRET",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_reach_no_log_row_answer_or_output() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let owui = fake.url();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "openwebui:\n  url: {owui}\n  api_key: {API_KEY}\nstate:\n  database: state/ferry.db\nserver:\n  listen: 127.0.0.1:{port}\n  admin_token: {ADMIN}\nwebhooks:\n  team-chat:\n    url: http://u:URLUSERSECRET@127.0.0.1:9/services/T000/B000/SLACKPATHSECRET?token=QUERYSECRET\n    allow_private: true\n    retry: [0s, 100ms, 100ms]\nshutdown_grace: 5s\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules/alerts.yaml"),
        "on:\n  webhook:\n    path: alerts\n    auth: { scheme: none }\nchat:\n  model: fake-model\n  prompt: \"alert {{ payload.n }} {{ headers | tojson }} {{ query | tojson }}\"\ndeliver:\n  - to: team-chat\n",
    )
    .unwrap();
    let daemon = Daemon::spawn(dir.path(), port, &[]);
    let r = reqwest::Client::new()
        .post(format!(
            "{}/hooks/alerts?token=QS-TOKEN-SECRET&env=prod",
            daemon.base
        ))
        .header("apikey", "SUPA-APIKEY-SECRET")
        .header("x-auth", "XAUTH-SECRET")
        .header("x-shopify-hmac-sha256", "XAUTH-SECRET")
        .json(&serde_json::json!({ "n": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    until("the delivery is dead", Duration::from_secs(20), || async {
        let v: Value = daemon.get("/api/v1/deliveries").await.json().await.unwrap();
        v.to_string().contains("\"dead\"")
    })
    .await;

    let mut seen = Vec::new();
    let deliveries: Value = daemon.get("/api/v1/deliveries").await.json().await.unwrap();
    let jobs: Value = daemon.get("/api/v1/jobs").await.json().await.unwrap();
    let first = |v: &Value, key: &str| {
        v[key][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {v}"))
            .to_string()
    };
    let delivery_id = first(&deliveries, "deliveries");
    let job_id = first(&jobs, "jobs");
    for path in [
        "/api/v1/rules".to_string(),
        "/api/v1/documents".into(),
        "/api/v1/jobs".into(),
        format!("/api/v1/jobs/{job_id}"),
        "/api/v1/deliveries".into(),
        format!("/api/v1/deliveries/{delivery_id}"),
        "/readyz".into(),
        "/metrics".into(),
    ] {
        let text = daemon.get(&path).await.text().await.unwrap();
        seen.push((path, text));
    }
    // The status pages, signed in, show the same things to people.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let cookie = ferry::testing::ui_session(&http, &base, ADMIN).await;
    for path in [
        "/ui/".to_string(),
        "/ui/jobs".into(),
        format!("/ui/jobs/{job_id}"),
        "/ui/deliveries".into(),
        format!("/ui/deliveries/{delivery_id}"),
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        seen.push((path, r.text().await.unwrap()));
    }
    assert!(
        seen.iter()
            .any(|(p, t)| p.starts_with("/ui/deliveries/") && t.contains("127.0.0.1:9")),
        "the page names the host of the failed attempt"
    );
    // The query parameter that is no credential did reach the template.
    let job = &seen
        .iter()
        .find(|(p, _)| p.starts_with("/api/v1/jobs/"))
        .unwrap()
        .1;
    assert!(job.contains("prod"), "{job}");
    assert!(
        seen.iter()
            .any(|(p, t)| p == "/api/v1/deliveries" && t.contains("127.0.0.1:9")),
        "the error still names the host: {seen:?}"
    );
    daemon.stop();
    // Userinfo in the Open WebUI URL (a proxy's basic auth, say) is not
    // logged at start either.
    let config = std::fs::read_to_string(dir.path().join("ferry.yaml")).unwrap();
    let with_userinfo = owui.replace("http://", "http://ferryuser:OWUI-URL-PASSWORD@");
    std::fs::write(
        dir.path().join("ferry.yaml"),
        config.replace(&owui, &with_userinfo),
    )
    .unwrap();
    Daemon::spawn(dir.path(), port, &[]).stop();

    let ferry = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(["--config", "ferry.yaml"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    for args in [
        &["deliveries"][..],
        &["deliveries", "--json"],
        &["jobs"],
        &["jobs", "--json"],
        &["check"],
    ] {
        seen.push((format!("ferry {}", args.join(" ")), ferry(args)));
    }
    seen.push((
        "ferry.log".into(),
        std::fs::read_to_string(dir.path().join("ferry.log")).unwrap(),
    ));
    for file in ["ferry.db", "ferry.db-wal"] {
        let bytes = std::fs::read(dir.path().join("state").join(file)).unwrap_or_default();
        seen.push((file.into(), String::from_utf8_lossy(&bytes).into_owned()));
    }
    for (place, text) in &seen {
        for secret in PLANTED {
            assert!(!text.contains(secret), "{secret} in {place}:\n{text}");
        }
    }
}
