//! The HTTP server (DESIGN §4): health, readiness and the admin API.
//! Admin routes need `Authorization: Bearer <server.admin_token>`, compared
//! in constant time; without a configured token they answer 403.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::store::{DocumentFilter, DocumentState, JobFilter, JobState};
use crate::worker::Shared;

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    admin_token: Option<Secret>,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// Equal length and content, in time that does not depend on where they
/// first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn router(shared: Arc<Shared>, admin_token: Option<Secret>) -> Router {
    let state = AppState {
        shared,
        admin_token,
    };
    let admin = Router::new()
        .route("/rules", get(rules))
        .route("/documents", get(documents))
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", admin)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(state)
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.admin_token else {
        return error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is off: set server.admin_token",
        );
    };
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin Bearer token is required",
        );
    }
    next.run(request).await
}

async fn readyz(State(state): State<AppState>) -> Response {
    let mut problems = Vec::new();
    if let Err(e) = sqlx::query("SELECT 1")
        .execute(state.shared.store.reader())
        .await
    {
        problems.push(format!("database: {e}"));
    }
    match tokio::time::timeout(Duration::from_secs(5), state.shared.client.version()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => problems.push(format!("openwebui: {e}")),
        Err(_) => problems.push("openwebui: no answer within 5s".into()),
    }
    if problems.is_empty() {
        Json(json!({"ready": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reasons": problems})),
        )
            .into_response()
    }
}

/// Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    use std::fmt::Write as _;
    let store = &state.shared.store;
    let mut out = String::new();
    let docs: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT rule, state, COUNT(*) FROM documents GROUP BY rule, state")
            .fetch_all(store.reader())
            .await
            .unwrap_or_default();
    out.push_str(
        "# HELP ferry_documents Documents by rule and state.\n# TYPE ferry_documents gauge\n",
    );
    for (rule, st, n) in docs {
        let _ = writeln!(out, "ferry_documents{{rule=\"{rule}\",state=\"{st}\"}} {n}");
    }
    out.push_str("# HELP ferry_jobs Jobs by state.\n# TYPE ferry_jobs gauge\n");
    for (st, n) in store.job_counts().await.unwrap_or_default() {
        let _ = writeln!(out, "ferry_jobs{{state=\"{st}\"}} {n}");
    }
    out.push_str("# HELP ferry_rules_paused Rules held by a safety valve.\n# TYPE ferry_rules_paused gauge\n");
    let _ = writeln!(
        out,
        "ferry_rules_paused {}",
        store.paused_rules().await.map(|p| p.len()).unwrap_or(0)
    );
    out.push_str("# HELP ferry_files_hashed_total Files read and hashed since start.\n# TYPE ferry_files_hashed_total counter\n");
    let _ = writeln!(
        out,
        "ferry_files_hashed_total {}",
        state
            .shared
            .ingestor
            .hashed
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    ([("content-type", "text/plain; version=0.0.4")], out).into_response()
}

async fn rules(State(state): State<AppState>) -> Response {
    let paused: std::collections::HashMap<String, String> = state
        .shared
        .store
        .paused_rules()
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    let list: Vec<Value> = state
        .shared
        .rules()
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "trigger": r.trigger.kind(),
                "file": r.file,
                "collection": r.ingest.as_ref().map(|i| i.collection.to_string()),
                "model": r.chat.as_ref().map(|c| c.model.clone()),
                "paused": paused.get(&r.name),
            })
        })
        .collect();
    Json(json!({ "rules": list })).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    rule: Option<String>,
    limit: Option<i64>,
}

async fn documents(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let doc_state = match q.state.as_deref().map(DocumentState::parse) {
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_state",
                "unknown document state",
            );
        }
        Some(s) => s,
        None => None,
    };
    let filter = DocumentFilter {
        state: doc_state,
        rule: q.rule,
        limit: Some(q.limit.unwrap_or(1000).clamp(1, 10_000)),
    };
    match state.shared.store.documents(&filter).await {
        Ok(docs) => Json(json!({ "documents": docs })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

async fn jobs(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let job_state = match q.state.as_deref().map(JobState::parse) {
        Some(None) => return error(StatusCode::BAD_REQUEST, "bad_state", "unknown job state"),
        Some(s) => s,
        None => None,
    };
    let filter = JobFilter {
        state: job_state,
        rule: q.rule,
        kind: None,
        limit: Some(q.limit.unwrap_or(100).clamp(1, 10_000)),
    };
    match state.shared.store.jobs(&filter).await {
        Ok(list) => Json(json!({ "jobs": list })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

async fn job(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.shared.store.job(&id).await {
        Ok(Some(j)) => Json(json!(j)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such job"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
