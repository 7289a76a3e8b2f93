//! The HTTP server (DESIGN §4): incoming hooks ([`hooks`]), health,
//! readiness, metrics and the admin API. Admin routes need
//! `Authorization: Bearer <server.admin_token>`, compared in constant time;
//! without a configured token they answer 403.
//!
//! Served by a hyper loop of our own rather than `axum::serve`, because
//! only that way hyper's header-read timeout is armed (it needs a timer):
//! a client that trickles its headers is cut off after 10 s.

pub mod api;
pub mod hooks;
pub mod limits;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Secret;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::rules::RuleSet;
use crate::store::{DeliveryState, DocumentState, JobState, Store};
use crate::supervise::Tasks;
use crate::triggers::Queue;

/// Admin and health bodies are small.
const ADMIN_BODY_LIMIT: usize = 64 * 1024;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server is given: the store to read, the queue to submit to,
/// and cells to report. Never the Open WebUI client, never the workers.
#[derive(Clone)]
pub struct Parts {
    pub store: Store,
    pub queue: Queue,
    pub rules: Arc<RuleSet>,
    pub tasks: Arc<Tasks>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

#[derive(Clone)]
pub(crate) struct AppState {
    store: Store,
    queue: Queue,
    clock: Clock,
    rules: Arc<RuleSet>,
    tasks: Arc<Tasks>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    admin_token: Option<Secret>,
    /// May only read and run rules (`server.tool_token`).
    tool_token: Option<Secret>,
    /// Cancelled when shutdown begins: hooks answer 503 from then on.
    draining: CancellationToken,
    limits: Arc<limits::HookLimits>,
    /// The status pages, unless `server.ui: false`.
    ui: Option<Arc<ui::Ui>>,
}

pub(crate) use api::error;

pub use crate::signing::constant_time_eq;

pub fn router(
    parts: Parts,
    admin_token: Option<Secret>,
    tool_token: Option<Secret>,
    pages: Option<ui::Settings>,
    draining: CancellationToken,
    hosts: Arc<AllowedHosts>,
) -> Router {
    let started_ms = parts.queue.clock().now_ms();
    let state = AppState {
        clock: parts.queue.clock().clone(),
        store: parts.store,
        queue: parts.queue,
        rules: parts.rules,
        tasks: parts.tasks,
        health: parts.health,
        metrics: parts.metrics,
        admin_token,
        tool_token,
        draining,
        limits: Default::default(),
        ui: pages.map(|p| Arc::new(ui::Ui::new(p, started_ms))),
    };
    let (admin, description) = api::routes();
    let admin = admin
        .layer(axum::extract::DefaultBodyLimit::max(ADMIN_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), require_admin));
    // Public: it holds no secret, and a tool server (Open WebUI) reads it
    // before it calls anything.
    let description: Arc<str> = description
        .to_pretty_json()
        .expect("the description serialises")
        .into();
    let mut routes = Router::new()
        // The hook reads its own body, bounded by the rule's `max_body`.
        .route("/hooks/{*path}", post(hooks::receive))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(move || async move {
                (
                    [("content-type", "application/json")],
                    description.to_string(),
                )
            }),
        )
        .nest("/api/v1", admin);
    if state.ui.is_some() {
        routes = routes.merge(ui::routes(state.clone()));
    }
    routes
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(middleware::from_fn_with_state(hosts, check_host))
        .with_state(state)
}

/// The `Host` values the server answers to: the listen address, its
/// loopback names, and `server.hosts`. A page on another site that makes
/// a browser resolve its own name to 127.0.0.1 (DNS rebinding) sends its
/// own name, and is refused.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// `None`: any (listening on all addresses with no `server.hosts`).
    exact: Option<Vec<String>>,
}

impl AllowedHosts {
    pub fn new(listen: std::net::SocketAddr, extra: &[String]) -> AllowedHosts {
        let port = listen.port();
        if listen.ip().is_unspecified() && extra.is_empty() {
            return AllowedHosts { exact: None };
        }
        let mut exact = Vec::new();
        let with_port = |host: String| -> Vec<String> {
            let mut v = vec![format!("{host}:{port}")];
            if port == 80 {
                v.push(host);
            }
            v
        };
        let ip = match listen.ip() {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        exact.extend(with_port(ip));
        if listen.ip().is_loopback() || listen.ip().is_unspecified() {
            for name in ["localhost", "127.0.0.1", "[::1]"] {
                exact.extend(with_port(name.to_string()));
            }
        }
        for h in extra {
            let h = h.to_ascii_lowercase();
            if h.contains(':') && !h.ends_with(']') {
                exact.push(h);
            } else {
                exact.extend(with_port(h.clone()));
                exact.push(h);
            }
        }
        AllowedHosts { exact: Some(exact) }
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.exact.as_ref().is_none_or(|e| e.contains(&host))
    }
}

async fn check_host(
    State(hosts): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    // HTTP/1.0 clients may send none; a browser always does.
    let host = request.headers().get("host").and_then(|v| v.to_str().ok());
    if let Some(host) = host
        && !hosts.allows(host)
    {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            "this Host is not one ferry answers to (server.hosts)",
        );
    }
    next.run(request).await
}

/// Serves until `shutdown`, then lets open requests finish (up to 5 s).
pub async fn serve(
    listener: std::sync::Arc<tokio::net::TcpListener>,
    router: Router,
    connections: Arc<limits::Connections>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, say: back off, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(admitted) = connections.admit(peer.ip()) else {
            // Over a cap: a short answer instead of a silent close.
            tokio::spawn(refuse_connection(stream));
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(admitted);
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    Ok(())
}

async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    let body = r#"{"error":{"code":"busy","message":"too many connections; retry shortly"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
}

/// The admin token may call everything; the tool token only
/// [`api::TOOL_ROUTES`].
async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.admin_token.is_none() && state.tool_token.is_none() {
        return error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is off: set server.admin_token",
        );
    }
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let is = |token: &Option<Secret>| {
        token
            .as_ref()
            .is_some_and(|t| constant_time_eq(given.as_bytes(), t.expose().as_bytes()))
    };
    if is(&state.admin_token) {
        return next.run(request).await;
    }
    if is(&state.tool_token) {
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|p| p.as_str());
        let method = request.method().as_str();
        if route.is_some_and(|r| api::TOOL_ROUTES.contains(&(method, r))) {
            return next.run(request).await;
        }
        return error(
            StatusCode::FORBIDDEN,
            "outside_tool_scope",
            "the tool token may only read and run rules",
        );
    }
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid admin Bearer token is required",
    )
}

async fn readyz(State(state): State<AppState>) -> Response {
    let problems = crate::health::problems(&state.store, &state.health, &state.tasks).await;
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

/// Prometheus text format: the events counted so far and the states read
/// now, every known label value present (zero-filled). A state that
/// cannot be read fails the scrape (500), rather than showing zeros.
async fn metrics(State(state): State<AppState>) -> Response {
    match scrape(&state).await {
        Ok(scraped) => (
            [("content-type", crate::metrics::CONTENT_TYPE)],
            state.metrics.encode(&scraped),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the state for /metrics");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "cannot read the state database",
            )
        }
    }
}

async fn scrape(state: &AppState) -> Result<crate::metrics::Scraped, crate::store::StoreError> {
    use crate::metrics::Scraped;
    let store = &state.store;
    let rules = state.rules.all();
    let mut scraped = Scraped {
        rules: rules.len(),
        rules_paused: store.paused_rules().await?.len(),
        task_restarts: state.tasks.restarts(),
        ..Scraped::default()
    };
    for rule in rules.iter().filter(|r| r.ingest.is_some()) {
        for st in DocumentState::ALL {
            scraped
                .documents
                .insert((rule.name.clone(), st.as_str().into()), 0);
        }
    }
    for (rule, st, n) in store.document_counts().await? {
        scraped.documents.insert((rule, st), n);
    }
    for kind in crate::triggers::JOB_KINDS {
        for st in JobState::ALL {
            scraped.jobs.insert((kind.into(), st.as_str().into()), 0);
        }
    }
    for (kind, st, n) in store.job_counts_by_kind().await? {
        scraped.jobs.insert((kind, st), n);
    }
    for st in DeliveryState::ALL {
        scraped.deliveries.insert(st.as_str().into(), 0);
    }
    for (st, n) in store.delivery_counts().await? {
        scraped.deliveries.insert(st, n);
    }
    let now = state.clock.now_ms();
    if let Some(due) = store.next_due().await?
        && due < now
    {
        scraped.oldest_due_job = std::time::Duration::from_millis((now - due) as u64);
    }
    Ok(scraped)
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
