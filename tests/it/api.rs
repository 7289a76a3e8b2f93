//! The admin API's OpenAPI description against the server that serves it:
//! every described operation answers (no "no such route", no 405), the
//! description is public and holds no secret, and the tool token reaches
//! exactly the read-and-run operations. The independent validator
//! (`openapi-spec-validator`) and Open WebUI reading it as a tool server
//! are in `e2e.rs`.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const TOOL: &str = "tool-token-abcdef0123456789";
const GREET: &str =
    "vars: { who: nobody }\nchat:\n  model: fake-model\n  prompt: \"Hello {{ vars.who }}\"\n";

async fn spawn() -> (TestApp, ferry::app::Running) {
    let s = TestApp::new(Options::rules(&[("greet", GREET)])).await;
    let running = s
        .start_with(|c| c.server.tool_token = Some(ferry::config::Secret::new(TOOL)))
        .await;
    (s, running)
}

async fn description(base: &str) -> Value {
    let r = reqwest::get(format!("{base}/api/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "public, no token");
    r.json().await.unwrap()
}

/// Each (method, path) the description lists.
fn operations(doc: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((
                method.to_uppercase(),
                path.clone(),
                op["operationId"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_described_operation_is_served() {
    let (_s, running) = spawn().await;
    let base = format!("http://{}", running.addr);
    let doc = description(&base).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    let text = doc.to_string();
    for secret in [ADMIN, TOOL] {
        assert!(!text.contains(secret));
    }
    let ops = operations(&doc);
    let ids: Vec<&str> = ops.iter().map(|(_, _, id)| id.as_str()).collect();
    let mut want = vec![
        "get_delivery",
        "get_job",
        "list_deliveries",
        "list_documents",
        "list_jobs",
        "list_rules",
        "redeliver",
        "retry_job",
        "run_rule",
        "sync_rule",
    ];
    let mut have = ids.clone();
    have.sort();
    want.sort();
    assert_eq!(have, want);
    // Every operation has a 2xx response with a schema.
    for (method, path, id) in &ops {
        let op = &doc["paths"][path][method.to_lowercase()];
        let ok = op["responses"]
            .as_object()
            .unwrap()
            .iter()
            .any(|(code, r)| {
                code.starts_with('2') && r["content"]["application/json"]["schema"].is_object()
            });
        assert!(ok, "{id}: no typed success answer");
    }

    let http = reqwest::Client::new();
    for (method, path, id) in &ops {
        let filled = path
            .replace("{name}", "greet")
            .replace("{id}", "no-such-id");
        let url = format!("{base}/api/v1{filled}");
        let r = http
            .request(method.parse().unwrap(), &url)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{id}: {method} {url}"
        );
        assert_ne!(
            body["error"]["message"], "no such route",
            "{id}: {method} {url} is described but not served"
        );
        // What the description promises for this answer.
        let promised = &doc["paths"][path][method.to_lowercase()]["responses"][status.as_str()];
        assert!(
            promised.is_object(),
            "{id}: answered {status}, which the description does not list"
        );
    }
    // And the reverse: a route next to them that is not described is not
    // served either.
    let r = http
        .get(format!("{base}/api/v1/everything"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tool_token_reads_and_runs_and_nothing_else() {
    let (_s, running) = spawn().await;
    let base = format!("http://{}/api/v1", running.addr);
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(token)
            .send()
    };
    use reqwest::Method as M;
    for path in ["/rules", "/documents", "/jobs", "/deliveries"] {
        assert_eq!(
            call(M::GET, path, TOOL).await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let r = call(M::POST, "/rules/greet/run", TOOL).await.unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let id = job["job_id"].as_str().unwrap().to_string();
    assert_eq!(
        call(M::GET, &format!("/jobs/{id}"), TOOL)
            .await
            .unwrap()
            .status(),
        200
    );
    for (method, path) in [
        (M::POST, format!("/jobs/{id}/retry")),
        (M::POST, "/rules/greet/sync".to_string()),
        (M::POST, "/deliveries/x/redeliver".to_string()),
    ] {
        let r = call(method.clone(), &path, TOOL).await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "outside_tool_scope");
    }
    // The admin token still does everything; a wrong one nothing.
    assert_eq!(
        call(M::POST, &format!("/jobs/{id}/retry"), ADMIN)
            .await
            .unwrap()
            .status(),
        409,
        "not dead: the admin token got past the check"
    );
    assert_eq!(
        call(M::GET, "/rules", "tool-token-abcdef012345678X")
            .await
            .unwrap()
            .status(),
        401
    );
    stop(running).await;
}
