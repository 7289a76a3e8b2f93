//! The status pages under `/ui/` (DESIGN §4, "status pages"): what ferry
//! knows, for people. Server-rendered HTML ([`pages`], maud, compiled in),
//! one stylesheet, and a small script that refreshes a page's main part
//! while it is open; reading works without it.
//!
//! Safety: sign-in with the admin token or `server.ui_password`, a
//! session cookie (`HttpOnly; SameSite=Strict`, path `/ui`), a CSRF token
//! in every form, browser requests from other sites refused, strict
//! security headers. The pages read through the same store methods as the
//! admin API, and their buttons call the same queue actions.

pub mod pages;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts as RequestParts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::Markup;
use serde::Deserialize;

use super::AppState;
use crate::config::Secret;
use crate::store::{
    DeliveryFilter, DeliveryState, DocumentFilter, DocumentState, JobFilter, JobState,
};
use crate::triggers::TriggerEvent;
use pages::{Frame, Section};

const COOKIE: &str = "ferry_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the oldest goes first beyond this.
const MAX_SESSIONS: usize = 256;
/// A wrong sign-in waits this long before its answer.
const SIGN_IN_PENALTY: Duration = Duration::from_millis(500);
const DOCUMENTS_SHOWN: i64 = 500;
const ROWS_SHOWN: usize = 200;

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("refresh.js");

/// What the pages are given besides the server's state.
pub struct Settings {
    pub password: Option<Secret>,
    /// Open WebUI's address for links to its pages (no credentials), e.g.
    /// `https://chat.example.org/workspace/knowledge/`.
    pub collection_link: Option<String>,
}

pub(crate) struct Ui {
    settings: Settings,
    sessions: Sessions,
    started_ms: i64,
}

impl Ui {
    pub(crate) fn new(settings: Settings, started_ms: i64) -> Ui {
        Ui {
            settings,
            sessions: Sessions::default(),
            started_ms,
        }
    }
}

pub(crate) fn routes(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/ui/", get(overview))
        .route("/ui/rules/{name}", get(rule_documents))
        .route("/ui/rules/{name}/run", post(run_rule))
        .route("/ui/jobs", get(jobs))
        .route("/ui/jobs/{id}", get(job))
        .route("/ui/jobs/{id}/retry", post(retry_job))
        .route("/ui/deliveries", get(deliveries))
        .route("/ui/deliveries/{id}", get(delivery))
        .route("/ui/deliveries/{id}/redeliver", post(redeliver))
        .route("/ui/logout", post(logout))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(login_page).post(login))
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/ui/refresh.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .merge(signed_in)
        .layer(middleware::from_fn_with_state(state, headers_and_origin))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Security headers on every answer under `/ui`, and no state-changing
/// request from another site (the session cookie is `SameSite=Strict`
/// already; this also covers browsers that ignore it).
async fn headers_and_origin(request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST
        && let Some(why) = super::hooks::cross_site(request.headers())
    {
        return problem(StatusCode::FORBIDDEN, "Refused", &format!("{why}."));
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
         img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // Not `no-referrer`: under it a browser sends `Origin: null` with the
    // pages' own form posts, which then look cross-site (seen in Chromium).
    set(h, header::REFERRER_POLICY, "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    response
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    html(status, pages::problem(None, title, message))
}

fn ui(state: &AppState) -> &Ui {
    state
        .ui
        .as_deref()
        .expect("the /ui routes exist only with a Ui")
}

// ---- sessions ----

#[derive(Default)]
struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

struct Session {
    csrf: String,
    expires_ms: i64,
    created_ms: i64,
}

fn random_token() -> String {
    // Two v4 UUIDs: 244 bits from the OS generator.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Sessions are found by the hash of their id, so a lookup's timing says
/// nothing about a guess.
fn session_key(id: &str) -> [u8; 32] {
    <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()).into()
}

impl Sessions {
    fn create(&self, now_ms: i64) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        let mut map = self.0.lock().expect("not poisoned");
        map.retain(|_, s| s.expires_ms > now_ms);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created_ms)
                .map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            session_key(&id),
            Session {
                csrf: csrf.clone(),
                expires_ms: now_ms + SESSION_TTL.as_millis() as i64,
                created_ms: now_ms,
            },
        );
        (id, csrf)
    }

    fn csrf_of(&self, id: &str, now_ms: i64) -> Option<String> {
        let map = self.0.lock().expect("not poisoned");
        map.get(&session_key(id))
            .filter(|s| s.expires_ms > now_ms)
            .map(|s| s.csrf.clone())
    }

    fn end(&self, id: &str) {
        self.0
            .lock()
            .expect("not poisoned")
            .remove(&session_key(id));
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A signed-in request: its session and CSRF token. Without a session a
/// page read is sent to the sign-in page and an action is refused.
struct Signed {
    id: String,
    csrf: String,
    now_ms: i64,
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut RequestParts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let now_ms = state.clock.now_ms();
        let found = cookie_value(&parts.headers, COOKIE)
            .and_then(|id| Some((id, ui(state).sessions.csrf_of(id, now_ms)?)));
        match found {
            Some((id, csrf)) => Ok(Signed {
                id: id.to_string(),
                csrf,
                now_ms,
            }),
            None if parts.method == axum::http::Method::GET => {
                Err(Redirect::to("/ui/login").into_response())
            }
            None => Err(problem(
                StatusCode::FORBIDDEN,
                "Not signed in",
                "Sign in again to do this.",
            )),
        }
    }
}

impl Signed {
    fn frame<'a>(&'a self, title: &'a str, section: Section) -> Frame<'a> {
        Frame {
            title,
            section,
            csrf: &self.csrf,
            now_ms: self.now_ms,
        }
    }

    /// The refusal of an action whose form lacks the session's token.
    fn refusal(&self, form: &ActionForm) -> Option<Response> {
        (!crate::signing::constant_time_eq(form.csrf.as_bytes(), self.csrf.as_bytes())).then(|| {
            problem(
                StatusCode::FORBIDDEN,
                "Refused",
                "The form was stale or not from this page; reload and try again.",
            )
        })
    }
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
}

// ---- sign-in ----

fn sign_in_possible(state: &AppState) -> bool {
    state.admin_token.is_some() || ui(state).settings.password.is_some()
}

async fn login_page(State(state): State<AppState>) -> Response {
    let enabled = sign_in_possible(&state);
    let status = if enabled {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    html(
        status,
        pages::login(None, enabled, ui(&state).settings.password.is_some()),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    secret: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let ui = ui(&state);
    let matches = |s: &Option<Secret>| {
        s.as_ref().is_some_and(|s| {
            crate::signing::constant_time_eq(form.secret.as_bytes(), s.expose().as_bytes())
        })
    };
    // Both compared, so the time taken does not say which one exists.
    let (token, password) = (matches(&state.admin_token), matches(&ui.settings.password));
    if !(token || password) {
        tokio::time::sleep(SIGN_IN_PENALTY).await;
        tracing::warn!("a sign-in to the status pages failed");
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(
                Some("That is not the admin token or the UI password."),
                sign_in_possible(&state),
                ui.settings.password.is_some(),
            ),
        );
    }
    let (id, _) = ui.sessions.create(state.clock.now_ms());
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/ui/".to_string()),
        ],
    )
        .into_response()
}

async fn logout(
    State(state): State<AppState>,
    signed: Signed,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = signed.refusal(&form) {
        return refused;
    }
    ui(&state).sessions.end(&signed.id);
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
            ),
            (header::LOCATION, "/ui/login".to_string()),
        ],
    )
        .into_response()
}

// ---- pages ----

fn store_failed(signed: &Signed, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "the status pages cannot read the state database");
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::problem(
            Some(&signed.frame("Error", Section::Overview)),
            "The state database cannot be read",
            "See ferry's log for the error.",
        ),
    )
}

fn not_found(signed: &Signed, what: &str) -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::problem(
            Some(&signed.frame("Not found", Section::Overview)),
            "Not found",
            &format!("There is no such {what}."),
        ),
    )
}

/// Where and when a rule fires, in a few words.
fn fires(rule: &crate::rules::Rule, now: chrono::DateTime<chrono::Utc>) -> String {
    use crate::rules::Trigger;
    match &rule.trigger {
        Trigger::Watch(w) => crate::paths::shown(&w.path),
        Trigger::Schedule(s) => {
            let next = crate::triggers::schedule::parse(&s.cron)
                .ok()
                .and_then(|c| crate::triggers::schedule::next_fire(&c, &s.timezone, now));
            match next {
                Some(t) => format!(
                    "{} ({}); next {}",
                    s.cron,
                    s.timezone,
                    crate::clock::rfc3339_secs(t.timestamp_millis()).replace('T', " ")
                ),
                None => format!("{} ({})", s.cron, s.timezone),
            }
        }
        Trigger::Webhook(w) => format!("POST /hooks/{}", w.path),
        Trigger::Ingested { rule } => format!("after `{rule}` links a file"),
        Trigger::Manual => "by hand".into(),
    }
}

async fn overview_data(
    state: &AppState,
    now_ms: i64,
) -> Result<pages::Overview, crate::store::StoreError> {
    let store = &state.store;
    let (documents, open_jobs, errors, paused, deliveries) = tokio::try_join!(
        store.document_counts(),
        store.open_job_counts(),
        store.last_errors(),
        store.paused_rules(),
        store.delivery_counts(),
    )?;
    let problems = crate::health::problems(store, &state.health, &state.tasks).await;
    let paused: HashMap<String, String> = paused.into_iter().collect();
    let now = crate::clock::from_ms(now_ms);
    let rules = state
        .rules
        .all()
        .iter()
        .map(|r| {
            let jobs = |st: JobState| {
                open_jobs
                    .iter()
                    .find(|(rule, s, _)| *rule == r.name && s == st.as_str())
                    .map_or(0, |(_, _, n)| *n)
            };
            pages::RuleRow {
                name: r.name.clone(),
                trigger: r.trigger.kind().as_str(),
                fires: fires(r, now),
                paused: paused.get(&r.name).cloned(),
                documents: r.ingest.as_ref().map(|_| {
                    DocumentState::ALL
                        .iter()
                        .map(|st| {
                            let n = documents
                                .iter()
                                .find(|(rule, s, _)| *rule == r.name && s == st.as_str())
                                .map_or(0, |(_, _, n)| *n);
                            (*st, n)
                        })
                        .collect()
                }),
                queued: jobs(JobState::Queued),
                running: jobs(JobState::Running),
                dead: jobs(JobState::Dead),
                last_error: errors
                    .iter()
                    .find(|(rule, _, _)| *rule == r.name)
                    .map(|(_, e, at)| (e.clone(), *at)),
                can_run: r.chat.is_some(),
            }
        })
        .collect();
    let openwebui = match state.health.openwebui_problem() {
        Some(p) => Err(p),
        None => Ok(state.health.openwebui_version()),
    };
    Ok(pages::Overview {
        version: format!("{} ({})", env!("CARGO_PKG_VERSION"), env!("FERRY_COMMIT")),
        uptime_secs: (now_ms - ui(state).started_ms) / 1000,
        openwebui,
        problems,
        rules,
        deliveries: DeliveryState::ALL
            .iter()
            .map(|st| {
                let n = deliveries
                    .iter()
                    .find(|(s, _)| s == st.as_str())
                    .map_or(0, |(_, n)| *n);
                (*st, n)
            })
            .collect(),
    })
}

async fn overview(State(state): State<AppState>, signed: Signed) -> Response {
    match overview_data(&state, signed.now_ms).await {
        Ok(o) => html(
            StatusCode::OK,
            pages::overview(&signed.frame("Overview", Section::Overview), &o),
        ),
        Err(e) => store_failed(&signed, e),
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    state: Option<String>,
    rule: Option<String>,
}

fn bad_filter(signed: &Signed, what: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        pages::problem(
            Some(&signed.frame("Bad filter", Section::Overview)),
            "Bad filter",
            &format!("That is not a {what} state."),
        ),
    )
}

/// An empty filter field (a form left blank) means no filter.
fn given(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

async fn rule_documents(
    State(state): State<AppState>,
    signed: Signed,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let Some(rule) = state.rules.get(&name) else {
        return not_found(&signed, "rule");
    };
    let filter = match given(q.state).map(|s| DocumentState::parse(&s)) {
        Some(None) => return bad_filter(&signed, "document"),
        Some(s) => s,
        None => None,
    };
    let counts = match state.store.document_counts().await {
        Ok(c) => c,
        Err(e) => return store_failed(&signed, e),
    };
    let documents = match state
        .store
        .documents(&DocumentFilter {
            state: filter,
            rule: Some(rule.name.clone()),
            limit: Some(DOCUMENTS_SHOWN),
        })
        .await
    {
        Ok(d) => d,
        Err(e) => return store_failed(&signed, e),
    };
    let counts = DocumentState::ALL
        .iter()
        .map(|st| {
            let n = counts
                .iter()
                .find(|(r, s, _)| *r == rule.name && s == st.as_str())
                .map_or(0, |(_, _, n)| *n);
            (*st, n)
        })
        .collect();
    let page = pages::RuleDocuments {
        rule: &rule.name,
        counts,
        filter,
        documents,
        collection_link: ui(&state).settings.collection_link.clone(),
    };
    let title = format!("Documents of {}", rule.name);
    html(
        StatusCode::OK,
        pages::rule_documents(&signed.frame(&title, Section::Overview), &page),
    )
}

async fn jobs(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    let filter_state = match given(q.state).map(|s| JobState::parse(&s)) {
        Some(None) => return bad_filter(&signed, "job"),
        Some(s) => s,
        None => None,
    };
    let filter_rule = given(q.rule);
    let filter = JobFilter {
        state: filter_state,
        rule: filter_rule.clone(),
        kind: None,
        limit: Some(ROWS_SHOWN as i64),
    };
    match state.store.jobs(&filter).await {
        Ok(jobs) => html(
            StatusCode::OK,
            pages::jobs(
                &signed.frame("Jobs", Section::Jobs),
                &pages::JobList {
                    filter_state,
                    filter_rule,
                    jobs,
                    limit: ROWS_SHOWN,
                },
            ),
        ),
        Err(e) => store_failed(&signed, e),
    }
}

async fn job(State(state): State<AppState>, signed: Signed, Path(id): Path<String>) -> Response {
    match state.store.job(&id).await {
        Ok(Some(j)) => html(
            StatusCode::OK,
            pages::job(&signed.frame("Job", Section::Jobs), &j),
        ),
        Ok(None) => not_found(&signed, "job"),
        Err(e) => store_failed(&signed, e),
    }
}

async fn deliveries(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    let filter_state = match given(q.state).map(|s| DeliveryState::parse(&s)) {
        Some(None) => return bad_filter(&signed, "delivery"),
        Some(s) => s,
        None => None,
    };
    let filter_rule = given(q.rule);
    let filter = DeliveryFilter {
        state: filter_state,
        rule: filter_rule.clone(),
        limit: Some(ROWS_SHOWN as i64),
    };
    match state.store.deliveries(&filter).await {
        Ok(deliveries) => html(
            StatusCode::OK,
            pages::deliveries(
                &signed.frame("Deliveries", Section::Deliveries),
                &pages::DeliveryList {
                    filter_state,
                    filter_rule,
                    deliveries,
                    limit: ROWS_SHOWN,
                },
            ),
        ),
        Err(e) => store_failed(&signed, e),
    }
}

async fn delivery(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let found = match state.store.delivery(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found(&signed, "delivery"),
        Err(e) => return store_failed(&signed, e),
    };
    match state.store.delivery_attempts(&id).await {
        Ok(attempts) => html(
            StatusCode::OK,
            pages::delivery(
                &signed.frame("Delivery", Section::Deliveries),
                &found,
                &attempts,
            ),
        ),
        Err(e) => store_failed(&signed, e),
    }
}

// ---- actions: the admin API's, through the same queue ----

fn see(path: String) -> Response {
    Redirect::to(&path).into_response()
}

async fn run_rule(
    State(state): State<AppState>,
    signed: Signed,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = signed.refusal(&form) {
        return refused;
    }
    let Some(rule) = state.rules.get(&name) else {
        return not_found(&signed, "rule");
    };
    if rule.chat.is_none() {
        return not_found(&signed, "rule with a chat to run");
    }
    let event = TriggerEvent::Manual {
        vars: Default::default(),
        payload: None,
    };
    match state.queue.submit(&rule.name, event).await {
        Ok(e) => {
            tracing::info!(rule = %rule.name, job = %e.id, "run from the status pages");
            see(format!("/ui/jobs/{}", pages::urlencode(&e.id)))
        }
        Err(e) => store_failed(&signed, e),
    }
}

async fn retry_job(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = signed.refusal(&form) {
        return refused;
    }
    match state.queue.retry_dead(&id).await {
        Ok(None) => not_found(&signed, "job"),
        // Retried, or no longer dead (retried in another tab): the job's
        // page shows which.
        Ok(Some(_)) => see(format!("/ui/jobs/{}", pages::urlencode(&id))),
        Err(e) => store_failed(&signed, e),
    }
}

async fn redeliver(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = signed.refusal(&form) {
        return refused;
    }
    match state.queue.redeliver(&id).await {
        Ok(None) => not_found(&signed, "delivery"),
        Ok(Some(_)) => see(format!("/ui/deliveries/{}", pages::urlencode(&id))),
        Err(e) => store_failed(&signed, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::default();
        let (id, csrf) = s.create(1_000);
        assert_eq!(s.csrf_of(&id, 2_000).as_deref(), Some(csrf.as_str()));
        assert_eq!(s.csrf_of("not-a-session", 2_000), None);
        let later = 1_000 + SESSION_TTL.as_millis() as i64;
        assert_eq!(s.csrf_of(&id, later), None, "expired");
        let (id2, _) = s.create(later);
        s.end(&id2);
        assert_eq!(s.csrf_of(&id2, later), None, "signed out");
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_goes() {
        let s = Sessions::default();
        let first = s.create(0).0;
        for i in 1..=MAX_SESSIONS as i64 {
            s.create(i);
        }
        assert_eq!(s.0.lock().unwrap().len(), MAX_SESSIONS);
        assert_eq!(s.csrf_of(&first, 1), None);
    }

    /// The palette of `style.css`, per colour scheme: (name, #rrggbb).
    fn palettes() -> Vec<Vec<(String, [f64; 3])>> {
        STYLE
            .split("--fg:")
            .skip(1)
            .map(|block| {
                let block = format!("--fg:{}", &block[..block.find('}').unwrap()]);
                block
                    .split(';')
                    .filter_map(|decl| {
                        let (name, value) = decl.trim().split_once(':')?;
                        let hex = value.trim().strip_prefix('#')?;
                        let c = |i: usize| {
                            u8::from_str_radix(&hex[i..i + 2], 16).unwrap() as f64 / 255.0
                        };
                        Some((name.trim().to_string(), [c(0), c(2), c(4)]))
                    })
                    .collect()
            })
            .collect()
    }

    /// WCAG 2 contrast ratio of two sRGB colours.
    fn contrast(a: [f64; 3], b: [f64; 3]) -> f64 {
        let lum = |c: [f64; 3]| {
            let l = |v: f64| {
                if v <= 0.03928 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * l(c[0]) + 0.7152 * l(c[1]) + 0.0722 * l(c[2])
        };
        let (x, y) = (lum(a), lum(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    #[test]
    fn every_text_colour_meets_wcag_aa_on_every_background() {
        let schemes = palettes();
        assert_eq!(schemes.len(), 2, "light and dark");
        for palette in schemes {
            let get = |n: &str| palette.iter().find(|(k, _)| k == n).unwrap().1;
            for bg in ["--bg", "--head"] {
                for fg in ["--fg", "--muted", "--link", "--ok", "--bad", "--warn"] {
                    let ratio = contrast(get(fg), get(bg));
                    assert!(ratio >= 4.5, "{fg} on {bg}: {ratio:.2} < 4.5");
                }
            }
        }
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; ferry_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "xferry_session=no".parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE), None);
    }
}
