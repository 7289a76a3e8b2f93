//! The admin API (`/api/v1`, DESIGN §4) and its OpenAPI description.
//!
//! Every route is registered through `utoipa_axum::routes!`, which adds the
//! handler's route and its `#[utoipa::path]` description in one step: the
//! description served at `/api/v1/openapi.json` is made from the same list
//! as the router, so the two cannot drift (and `tests/it/api.rs` asks each
//! described operation of the running server). Bodies are typed; their
//! schemas come from the types.
//!
//! Callers: the admin token may do everything; `server.tool_token` (for
//! Open WebUI's tool servers) may only read and run rules.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::store::{
    Attempt, Delivery, DeliveryFilter, DeliveryState, Document, DocumentFilter, DocumentState, Job,
    JobFilter, JobState,
};
use crate::triggers::TriggerEvent;

/// What may be called with `server.tool_token`: reading, and running a
/// rule's chat. (Method, path as routed.)
pub const TOOL_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/rules"),
    ("GET", "/api/v1/documents"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{id}"),
    ("GET", "/api/v1/deliveries"),
    ("GET", "/api/v1/deliveries/{id}"),
    ("POST", "/api/v1/rules/{name}/run"),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferry admin API",
        description = "Rules, documents, jobs and deliveries of a ferry daemon. \
            Bearer auth: the admin token, or the tool token (read and run only).",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The admin routes (relative to `/api/v1`) and their description.
pub(crate) fn routes() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_rules))
        .routes(routes!(run_rule))
        .routes(routes!(sync_rule))
        .routes(routes!(list_documents))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(retry_job))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(redeliver))
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    // Served under /api/v1; a tool server (Open WebUI) joins its URL with
    // these paths.
    doc.servers = Some(vec![utoipa::openapi::Server::new("/api/v1")]);
    (router, doc)
}

/// An error: `{"error": {"code": …, "message": …}}`.
#[derive(Serialize, ToSchema)]
pub struct ApiError {
    pub error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, for programs: `not_found`, `bad_state`, `not_dead`, …
    pub code: String,
    /// For people.
    pub message: String,
}

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: ErrorBody {
                code: code.into(),
                message: message.into(),
            },
        }),
    )
        .into_response()
}

fn store_error(e: crate::store::StoreError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string())
}

#[derive(Serialize, ToSchema)]
pub struct RuleInfo {
    pub name: String,
    /// watch, schedule, webhook, ingested or manual.
    pub trigger: String,
    pub file: String,
    pub collection: Option<String>,
    pub model: Option<String>,
    /// A webhook rule's path, e.g. `/hooks/alerts`.
    pub hook: Option<String>,
    /// A schedule rule's cron expression.
    pub schedule: Option<String>,
    /// The destinations its answers go to.
    pub deliver: Vec<String>,
    /// Why it is paused, when it is.
    pub paused: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleInfo>,
}

#[utoipa::path(get, path = "/rules", operation_id = "list_rules",
    description = "The rules in force, with their triggers and whether they are paused.",
    responses((status = 200, description = "Found", body = RuleList)))]
async fn list_rules(State(state): State<AppState>) -> Response {
    let paused: std::collections::HashMap<String, String> = match state.store.paused_rules().await {
        Ok(p) => p.into_iter().collect(),
        Err(e) => return store_error(e),
    };
    let rules = state
        .rules
        .all()
        .iter()
        .map(|r| RuleInfo {
            name: r.name.clone(),
            trigger: r.trigger.kind().as_str().into(),
            file: r.file.display().to_string(),
            collection: r.ingest.as_ref().map(|i| i.collection.to_string()),
            model: r.chat.as_ref().map(|c| c.model.clone()),
            hook: match &r.trigger {
                crate::rules::Trigger::Webhook(w) => Some(format!("/hooks/{}", w.path)),
                _ => None,
            },
            schedule: match &r.trigger {
                crate::rules::Trigger::Schedule(s) => Some(s.cron.clone()),
                _ => None,
            },
            deliver: r.deliver.iter().map(|d| d.to.clone()).collect(),
            paused: paused.get(&r.name).cloned(),
        })
        .collect();
    Json(RuleList { rules }).into_response()
}

#[derive(Deserialize, Default, ToSchema)]
pub struct RunBody {
    /// Values for the rule's `vars` (over its defaults).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub vars: serde_json::Map<String, Value>,
    /// For a hook rule run by hand: the request body it would have had.
    #[serde(default)]
    pub payload: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct Queued {
    pub job_id: String,
    /// Where to follow the job.
    pub status_url: String,
}

#[utoipa::path(post, path = "/rules/{name}/run", operation_id = "run_rule",
    description = "Runs a rule's chat now; the job runs in the background.",
    params(("name" = String, Path, description = "The rule's name")),
    request_body(content = Option<RunBody>, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted; it happens in the background", body = Queued),
        (status = 400, body = ApiError, description = "The rule has no chat"),
        (status = 404, description = "No such thing", body = ApiError),
    ))]
async fn run_rule(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Option<Json<RunBody>>,
) -> Response {
    let Some(rule) = state.rules.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rule named `{name}`"),
        );
    };
    if rule.chat.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "no_chat",
            format!("rule `{name}` has no `chat` to run"),
        );
    }
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let event = TriggerEvent::Manual {
        vars: body.vars,
        payload: body.payload,
    };
    match state.queue.submit(&rule.name, event).await {
        Ok(e) => (
            StatusCode::ACCEPTED,
            Json(Queued {
                status_url: format!("/api/v1/jobs/{}", e.id),
                job_id: e.id,
            }),
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Serialize, ToSchema)]
pub struct SyncQueued {
    pub rule: String,
    /// Always `queued`.
    pub sync: String,
}

/// A full reconcile of a watch rule now, and the check of its knowledge
/// base (drift repair).
#[utoipa::path(post, path = "/rules/{name}/sync", operation_id = "sync_rule",
    description = "Compares a watch rule's folder and knowledge base now and repairs what differs.",
    params(("name" = String, Path, description = "The rule's name")),
    responses(
        (status = 202, description = "Accepted; it happens in the background", body = SyncQueued),
        (status = 400, body = ApiError, description = "Not a watch rule that ingests"),
        (status = 404, description = "No such thing", body = ApiError),
    ))]
async fn sync_rule(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let Some(rule) = state.rules.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rule named `{name}`"),
        );
    };
    if !matches!(rule.trigger, crate::rules::Trigger::Watch(_)) || rule.ingest.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "not_a_mirror",
            format!("rule `{name}` is not a watch rule that ingests"),
        );
    }
    match state.queue.sync_now(&rule.name).await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(SyncQueued {
                rule: rule.name.clone(),
                sync: "queued".into(),
            }),
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this state.
    state: Option<String>,
    /// Only this rule's.
    rule: Option<String>,
    /// At most this many, newest first (1 to 10000).
    limit: Option<i64>,
}

/// A list's `?state=`: none, one of `all`, or the 400 that names them.
fn state_filter<T: Copy>(
    given: Option<&str>,
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
) -> Result<Option<T>, Box<Response>> {
    let Some(given) = given else { return Ok(None) };
    all.iter()
        .copied()
        .find(|s| name(*s) == given)
        .map(Some)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|s| name(*s)).collect();
            Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_state",
                format!("unknown {what} state (one of {})", names.join(", ")),
            ))
        })
}

#[derive(Serialize, ToSchema)]
pub struct DocumentList {
    pub documents: Vec<Document>,
}

#[utoipa::path(get, path = "/documents", operation_id = "list_documents",
    description = "Files ferry knows, with their state in Open WebUI and, for failures, Open WebUI's reason.",
    params(ListQuery),
    responses((status = 200, description = "Found", body = DocumentList), (status = 400, description = "The request cannot be done", body = ApiError)))]
async fn list_documents(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let doc_state = match state_filter(
        q.state.as_deref(),
        &DocumentState::ALL,
        DocumentState::as_str,
        "document",
    ) {
        Ok(s) => s,
        Err(bad) => return *bad,
    };
    let filter = DocumentFilter {
        state: doc_state,
        rule: q.rule,
        limit: Some(q.limit.unwrap_or(1000).clamp(1, 10_000)),
    };
    match state.store.documents(&filter).await {
        Ok(documents) => Json(DocumentList { documents }).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

#[utoipa::path(get, path = "/jobs", operation_id = "list_jobs",
    description = "Jobs (chats, file syncs, upkeep), newest first, with their results and errors.",
    params(ListQuery),
    responses((status = 200, description = "Found", body = JobList), (status = 400, description = "The request cannot be done", body = ApiError)))]
async fn list_jobs(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let job_state = match state_filter(q.state.as_deref(), &JobState::ALL, JobState::as_str, "job")
    {
        Ok(s) => s,
        Err(bad) => return *bad,
    };
    let filter = JobFilter {
        state: job_state,
        rule: q.rule,
        kind: None,
        limit: Some(q.limit.unwrap_or(100).clamp(1, 10_000)),
    };
    match state.store.jobs(&filter).await {
        Ok(jobs) => Json(JobList { jobs }).into_response(),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(get, path = "/jobs/{id}", operation_id = "get_job",
    description = "One job: its input, the rendered prompt and the answer, or its error.",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "Found", body = Job), (status = 404, description = "No such thing", body = ApiError)))]
async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.store.job(&id).await {
        Ok(Some(j)) => Json(j).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such job"),
        Err(e) => store_error(e),
    }
}

#[utoipa::path(post, path = "/jobs/{id}/retry", operation_id = "retry_job",
    description = "Runs a dead job again, as a new series of attempts.",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Accepted; it happens in the background", body = Queued),
        (status = 404, description = "No such thing", body = ApiError),
        (status = 409, body = ApiError, description = "The job is not dead"),
    ))]
async fn retry_job(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.queue.retry_dead(&id).await {
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such job"),
        Ok(Some(JobState::Dead)) => (
            StatusCode::ACCEPTED,
            Json(Queued {
                status_url: format!("/api/v1/jobs/{id}"),
                job_id: id,
            }),
        )
            .into_response(),
        Ok(Some(other)) => error(
            StatusCode::CONFLICT,
            "not_dead",
            format!("the job is {}; only dead jobs are retried", other.as_str()),
        ),
        Err(e) => store_error(e),
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

#[utoipa::path(get, path = "/deliveries", operation_id = "list_deliveries",
    description = "Outgoing webhooks, newest first, with their last answer.",
    params(ListQuery),
    responses((status = 200, description = "Found", body = DeliveryList), (status = 400, description = "The request cannot be done", body = ApiError)))]
async fn list_deliveries(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let delivery_state = match state_filter(
        q.state.as_deref(),
        &DeliveryState::ALL,
        DeliveryState::as_str,
        "delivery",
    ) {
        Ok(s) => s,
        Err(bad) => return *bad,
    };
    let filter = DeliveryFilter {
        state: delivery_state,
        rule: q.rule,
        limit: Some(q.limit.unwrap_or(100).clamp(1, 10_000)),
    };
    match state.store.deliveries(&filter).await {
        Ok(deliveries) => Json(DeliveryList { deliveries }).into_response(),
        Err(e) => store_error(e),
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The event body as sent (UTF-8, lossy).
    pub body: String,
    pub attempt_log: Vec<Attempt>,
}

#[utoipa::path(get, path = "/deliveries/{id}", operation_id = "get_delivery",
    description = "One delivery with its body and every attempt.",
    params(("id" = String, Path, description = "The delivery's id (its webhook-id)")),
    responses((status = 200, description = "Found", body = DeliveryDetail), (status = 404, description = "No such thing", body = ApiError)))]
async fn get_delivery(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let delivery = match state.store.delivery(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", "no such delivery"),
        Err(e) => return store_error(e),
    };
    let attempt_log = match state.store.delivery_attempts(&id).await {
        Ok(a) => a,
        Err(e) => return store_error(e),
    };
    Json(DeliveryDetail {
        body: String::from_utf8_lossy(&delivery.body).into_owned(),
        delivery,
        attempt_log,
    })
    .into_response()
}

#[derive(Serialize, ToSchema)]
pub struct Redelivery {
    pub delivery_id: String,
}

#[utoipa::path(post, path = "/deliveries/{id}/redeliver", operation_id = "redeliver",
    description = "Sends a delivery again (same webhook-id), as a new series of attempts.",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "Accepted; it happens in the background", body = Redelivery),
        (status = 404, description = "No such thing", body = ApiError),
        (status = 409, body = ApiError, description = "Being sent right now"),
    ))]
async fn redeliver(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.queue.redeliver(&id).await {
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such delivery"),
        Ok(Some(false)) => error(
            StatusCode::CONFLICT,
            "in_flight",
            "the delivery is being sent right now",
        ),
        Ok(Some(true)) => {
            (StatusCode::ACCEPTED, Json(Redelivery { delivery_id: id })).into_response()
        }
        Err(e) => store_error(e),
    }
}
