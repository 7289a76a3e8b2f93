//! The client itself: options, the shared connection state, and the
//! transport every call goes through (auth, re-sign-in, retries, the
//! in-flight limit, JSON-or-error classification).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tokio::sync::{Mutex, OnceCell, OwnedSemaphorePermit, RwLock, Semaphore};
use url::Url;

use super::error::{self, Error};
use super::retry::RetryPolicy;
use super::types::*;
use crate::config::{Auth, OpenWebUiConfig, Secret};

/// Page size asked for when listing a knowledge base's files.
pub(super) const KNOWLEDGE_PAGE: usize = 1000;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The wall clock (`Retry-After` dates, chat timestamps).
    pub clock: crate::clock::Clock,
    pub url: Url,
    pub auth: Auth,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub processing_timeout: Duration,
    pub retry: RetryPolicy,
    /// Where each request's time and failures are counted (the daemon's).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl From<&OpenWebUiConfig> for ClientOptions {
    fn from(c: &OpenWebUiConfig) -> Self {
        ClientOptions {
            clock: crate::clock::Clock::system(),
            url: c.url.clone(),
            auth: c.auth.clone(),
            timeout: c.timeout,
            max_in_flight: c.max_in_flight,
            processing_timeout: c.processing_timeout,
            retry: RetryPolicy::default(),
            metrics: None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) clock: crate::clock::Clock,
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) auth: Auth,
    /// Session token from sign-in, with a generation that rises on each
    /// sign-in so concurrent 401s trigger one sign-in, not many.
    pub(super) session: RwLock<Option<(Secret, u64)>>,
    pub(super) signin: Mutex<()>,
    pub(super) signins: AtomicU64,
    pub(super) slots: Slots,
    /// Uploads being processed by the server after their request ended.
    pub(super) processing: Arc<Semaphore>,
    pub(super) timeout: Duration,
    pub(super) processing_timeout: Duration,
    pub(super) retry: RetryPolicy,
    pub(super) metrics: Option<Arc<crate::metrics::Metrics>>,
    pub(super) version: OnceCell<Version>,
    /// Per knowledge base, for servers whose link list is racy (see
    /// [`Version::knowledge_links_are_racy`]).
    pub(super) knowledge_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<Mutex<()>>>>,
    /// Uploads waiting for their processing, answered by one listing
    /// ([`Client::wait_processed_listed`]).
    pub(super) board: std::sync::Mutex<super::files::Board>,
    /// Files waiting to be linked, per knowledge base
    /// ([`Client::link_batched`]).
    pub(super) link_queues:
        std::sync::Mutex<std::collections::HashMap<String, super::knowledge::LinkQueue>>,
}

/// Which queue a request waits in for one of the `max_in_flight` slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// Everything but uploads: listings, status looks, directories, links.
    Upkeep,
    /// Uploads: a burst queues them many deep (8 × `max_in_flight` files
    /// may be under way), and each waits behind the ones before it.
    Bulk,
}

/// The `max_in_flight` request slots, in two lanes. Bulk requests enter
/// the slots' queue one at a time, so an upkeep request waits behind at
/// most one of them instead of all. Measured on 0.12.4 with 200 files in
/// ten folders: each folder's directory, made when its first file came,
/// waited about a second behind a dozen uploads while the workers with
/// files for that folder stood idle, and the board's listing waited
/// there too.
pub(super) struct Slots {
    permits: Arc<Semaphore>,
    bulk: Semaphore,
}

impl Slots {
    pub(super) fn new(max_in_flight: usize) -> Slots {
        Slots {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            bulk: Semaphore::new(1),
        }
    }

    pub(super) async fn acquire(&self, lane: Lane) -> OwnedSemaphorePermit {
        let _turn = match lane {
            Lane::Upkeep => None,
            Lane::Bulk => Some(self.bulk.acquire().await.expect("never closed")),
        };
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("never closed")
    }
}

/// Whether repeating a request could do the work twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    Safe,
    OnlyIfUnprocessed,
}

impl Client {
    /// The longest one request may take (`openwebui.timeout`).
    pub fn request_timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub fn new(options: ClientOptions) -> Result<Client, Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // uvicorn (Open WebUI's server) closes idle keep-alive
            // connections after 5 s; reusing one at that moment fails the
            // request mid-flight ("IncompleteMessage"). Drop them first.
            .pool_idle_timeout(Duration::from_secs(4))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| Error::transport("client", &e))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: options.url.as_str().trim_end_matches('/').to_string(),
                auth: options.auth,
                session: RwLock::new(None),
                signin: Mutex::new(()),
                signins: AtomicU64::new(0),
                slots: Slots::new(options.max_in_flight.max(1)),
                // A file holds its slot from upload until processed, and
                // the board sees it processed a listing later: with 4 ×
                // `max_in_flight` (16) a burst went in waves of 16 uploads
                // once a listing freed them all, leaving the server idle
                // between (200 files on 0.12.4, linked in batches: 10.3–
                // 11.6 files/s against 12.0–15.2 with 8 ×).
                processing: Arc::new(Semaphore::new(options.max_in_flight.max(1) * 8)),
                timeout: options.timeout,
                processing_timeout: options.processing_timeout,
                retry: options.retry,
                metrics: options.metrics,
                clock: options.clock,
                version: OnceCell::new(),
                knowledge_locks: Default::default(),
                board: Default::default(),
                link_queues: Default::default(),
            }),
        })
    }

    /// Held from an upload until it is processed: that work runs on the
    /// server after the request has ended, so request permits alone would
    /// let ferry pile up every file of a burst there at once (slow for all
    /// of them, and a crash would leave many half-done).
    pub async fn processing_slot(&self) -> OwnedSemaphorePermit {
        self.inner
            .processing
            .clone()
            .acquire_owned()
            .await
            .expect("never closed")
    }

    /// The server's address as logs may show it ([`crate::redact`]).
    pub fn base_shown(&self) -> String {
        match url::Url::parse(self.base_url()) {
            Ok(u) => crate::redact::url(&u),
            Err(_) => "(unparsable URL)".into(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// How many times this client signed in (email + password auth).
    pub fn sign_in_count(&self) -> u64 {
        self.inner.signins.load(Ordering::Relaxed)
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{}", self.inner.base, path)
    }

    pub(super) async fn authorization(&self) -> Result<(String, u64), Error> {
        match &self.inner.auth {
            Auth::ApiKey(key) => Ok((format!("Bearer {}", key.expose()), 0)),
            Auth::Password { .. } => {
                if let Some((token, generation)) = self.inner.session.read().await.as_ref() {
                    return Ok((format!("Bearer {}", token.expose()), *generation));
                }
                self.refresh_session(0).await?;
                let guard = self.inner.session.read().await;
                let (token, generation) = guard.as_ref().ok_or_else(|| Error::Unauthorized {
                    path: "/api/v1/auths/signin".into(),
                    detail: "sign-in gave no token".into(),
                })?;
                Ok((format!("Bearer {}", token.expose()), *generation))
            }
        }
    }

    /// Signs in unless someone already did since `seen_generation`.
    pub(super) async fn refresh_session(&self, seen_generation: u64) -> Result<(), Error> {
        let _one_at_a_time = self.inner.signin.lock().await;
        if let Some((_, generation)) = self.inner.session.read().await.as_ref()
            && *generation > seen_generation
        {
            return Ok(());
        }
        let token = self.sign_in().await?;
        let mut session = self.inner.session.write().await;
        let next = session.as_ref().map_or(1, |(_, g)| g + 1);
        *session = Some((token, next));
        Ok(())
    }

    pub(super) async fn sign_in(&self) -> Result<Secret, Error> {
        let Auth::Password { email, password } = &self.inner.auth else {
            unreachable!("sign-in is only used with email + password")
        };
        let path = "/api/v1/auths/signin";
        self.inner.signins.fetch_add(1, Ordering::Relaxed);
        let response = {
            let _permit = self.inner.slots.acquire(Lane::Upkeep).await;
            self.inner
                .http
                .post(self.url(path))
                .timeout(self.inner.timeout)
                .json(&json!({"email": email, "password": password.expose()}))
                .send()
                .await
                .map_err(|e| map_send_error(path, e, self.inner.timeout))?
        };
        let body = read_json(
            path,
            response,
            self.inner.timeout,
            self.inner.clock.now_system_time(),
        )
        .await
        .map_err(|e| match e {
            // A wrong password is a 400 in Open WebUI; for the caller it is
            // refused credentials. A 429 stays RateLimited and is never
            // retried here: the limit is 15 per 3 minutes per e-mail.
            Error::Rejected { detail, .. } => Error::Unauthorized {
                path: path.into(),
                detail,
            },
            other => other,
        })?;
        match body.get("token").and_then(Value::as_str) {
            Some(token) if !token.is_empty() => Ok(Secret::new(token)),
            _ => Err(Error::Unauthorized {
                path: path.into(),
                detail: match body.get("next_step").and_then(Value::as_str) {
                    Some("pending") => "the account is pending approval by an admin".into(),
                    Some(_) => {
                        "the account requires multi-factor sign-in; give ferry an API key instead"
                            .into()
                    }
                    None => "sign-in answered without a token".into(),
                },
            }),
        }
    }

    /// Sends a request with auth, concurrency limit and retries; returns a
    /// 2xx response (body unread) and the permit that must live as long as
    /// the body is read.
    pub(super) async fn execute<F>(
        &self,
        method: Method,
        path: &str,
        repeat: Repeat,
        build: F,
    ) -> Result<(Response, OwnedSemaphorePermit), Error>
    where
        F: Fn(RequestBuilder) -> Result<RequestBuilder, Error>,
    {
        self.execute_in(Lane::Upkeep, method, path, repeat, build)
            .await
    }

    /// [`Client::execute`] in `lane`.
    pub(super) async fn execute_in<F>(
        &self,
        lane: Lane,
        method: Method,
        path: &str,
        repeat: Repeat,
        build: F,
    ) -> Result<(Response, OwnedSemaphorePermit), Error>
    where
        F: Fn(RequestBuilder) -> Result<RequestBuilder, Error>,
    {
        let mut attempt = 0u32;
        let mut signed_in_again = false;
        loop {
            attempt += 1;
            let (authorization, generation) = self.authorization().await?;
            let request = build(
                self.inner
                    .http
                    .request(method.clone(), self.url(path))
                    .timeout(self.inner.timeout)
                    .header(AUTHORIZATION, authorization),
            )?;
            let timeout = request
                .try_clone()
                .and_then(|r| r.build().ok())
                .and_then(|r| r.timeout().copied())
                .unwrap_or(self.inner.timeout);
            let permit = self.inner.slots.acquire(lane).await;
            let started = std::time::Instant::now();
            let result = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    self.observe(&method, path, started, None);
                    return Ok((response, permit));
                }
                Ok(response) => {
                    read_json(path, response, timeout, self.inner.clock.now_system_time())
                        .await
                        .map(|_| unreachable!())
                }
                Err(e) => Err(map_send_error(path, e, timeout)),
            };
            drop(permit);
            let Err(error) = result;
            self.observe(&method, path, started, Some(&error));
            match &error {
                Error::Unauthorized { .. }
                    if matches!(self.inner.auth, Auth::Password { .. }) && !signed_in_again =>
                {
                    signed_in_again = true;
                    attempt -= 1;
                    tracing::info!(path, "session token refused; signing in again");
                    self.refresh_session(generation).await?;
                    continue;
                }
                e if (repeat == Repeat::Safe && e.is_transient()) || e.request_not_processed() => {
                    match self
                        .inner
                        .retry
                        .delay(attempt, e.retry_after(), fastrand::f64())
                    {
                        Some(wait) => {
                            tracing::debug!(path, attempt, wait_ms = wait.as_millis() as u64, error = %e, "retrying");
                            tokio::time::sleep(wait).await;
                        }
                        None => return Err(error),
                    }
                }
                _ => return Err(error),
            }
        }
    }

    fn observe(
        &self,
        method: &Method,
        path: &str,
        started: std::time::Instant,
        error: Option<&Error>,
    ) {
        if let Some(m) = &self.inner.metrics {
            m.openwebui_call(
                &call_label(method, path),
                started.elapsed(),
                error.map(Error::class),
            );
        }
    }

    pub(super) async fn json<F>(
        &self,
        method: Method,
        path: &str,
        repeat: Repeat,
        build: F,
    ) -> Result<Value, Error>
    where
        F: Fn(RequestBuilder) -> Result<RequestBuilder, Error>,
    {
        let (response, _permit) = self.execute(method, path, repeat, build).await?;
        read_json(
            path,
            response,
            self.inner.timeout,
            self.inner.clock.now_system_time(),
        )
        .await
    }

    /// [`Client::json`] read straight into `T` (no `Value` tree: fields
    /// `T` does not name are skipped, not built).
    pub(super) async fn json_as<T, F>(
        &self,
        method: Method,
        path: &str,
        repeat: Repeat,
        build: F,
    ) -> Result<T, Error>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(RequestBuilder) -> Result<RequestBuilder, Error>,
    {
        self.json_as_in(Lane::Upkeep, method, path, repeat, build)
            .await
    }

    /// [`Client::json_as`] in `lane`.
    pub(super) async fn json_as_in<T, F>(
        &self,
        lane: Lane,
        method: Method,
        path: &str,
        repeat: Repeat,
        build: F,
    ) -> Result<T, Error>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(RequestBuilder) -> Result<RequestBuilder, Error>,
    {
        let (response, _permit) = self.execute_in(lane, method, path, repeat, build).await?;
        let now = self.inner.clock.now_system_time();
        read_json_as::<T>(path, response, self.inner.timeout, now).await
    }

    /// [`Client::json`] for answers that only need to be a success.
    pub(super) async fn json_ignored<F>(
        &self,
        method: Method,
        path: &str,
        repeat: Repeat,
        build: F,
    ) -> Result<(), Error>
    where
        F: Fn(RequestBuilder) -> Result<RequestBuilder, Error>,
    {
        self.json_as::<serde::de::IgnoredAny, F>(method, path, repeat, build)
            .await
            .map(|_| ())
    }

    pub(super) async fn get(&self, path: &str) -> Result<Value, Error> {
        self.json(Method::GET, path, Repeat::Safe, Ok).await
    }
}

pub(super) fn map_send_error(path: &str, e: reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        Error::Timeout {
            path: path.into(),
            after: timeout,
        }
    } else {
        Error::transport(path, &e)
    }
}

/// Reads a whole response and classifies it.
pub(super) async fn read_json(
    path: &str,
    response: Response,
    timeout: Duration,
    now: std::time::SystemTime,
) -> Result<Value, Error> {
    read_json_as(path, response, timeout, now).await
}

pub(super) async fn read_json_as<T: serde::de::DeserializeOwned>(
    path: &str,
    response: Response,
    timeout: Duration,
    now: std::time::SystemTime,
) -> Result<T, Error> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| map_send_error(path, e, timeout))?;
    error::classify_as(path, status, &headers, &body, now)
}

pub(super) fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

pub(super) fn unexpected(path: &str, e: serde_json::Error) -> Error {
    Error::UnexpectedResponse {
        path: path.into(),
        message: format!("unexpected JSON shape: {e}"),
    }
}

/// `key` of an object holding a list, or the value itself with key "".
pub(super) fn parse_list<T: serde::de::DeserializeOwned>(
    v: &Value,
    path: &str,
    key: &str,
) -> Result<Vec<T>, Error> {
    let list = if key.is_empty() {
        v
    } else {
        v.get(key).unwrap_or(&Value::Null)
    };
    match list {
        Value::Array(_) => serde_json::from_value(list.clone()).map_err(|e| unexpected(path, e)),
        Value::Null => Ok(Vec::new()),
        _ => Err(Error::UnexpectedResponse {
            path: path.into(),
            message: format!(
                "expected a list{}",
                if key.is_empty() {
                    String::new()
                } else {
                    format!(" in `{key}`")
                }
            ),
        }),
    }
}

/// A request as a metric label: method and path, with the query and every
/// id-like segment taken out, so the series stay few
/// (`POST /api/v1/knowledge/{id}/file/add`).
fn call_label(method: &Method, path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path
        .split('/')
        .map(|seg| {
            let digits = seg.chars().filter(char::is_ascii_digit).count();
            if digits > 0 && (seg.len() >= 8 || digits == seg.len()) {
                "{id}"
            } else {
                seg
            }
        })
        .collect();
    format!("{method} {}", segments.join("/"))
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn a_call_label_keeps_the_route_and_drops_ids_and_queries() {
        assert_eq!(
            call_label(
                &Method::POST,
                "/api/v1/knowledge/6f1c2a9e-0b7d-4c1e-9a1a-2f0e8d7c6b5a/file/add"
            ),
            "POST /api/v1/knowledge/{id}/file/add"
        );
        assert_eq!(
            call_label(
                &Method::GET,
                "/api/v1/files/abc123def456/process/status?stream=true"
            ),
            "GET /api/v1/files/{id}/process/status"
        );
        assert_eq!(
            call_label(&Method::GET, "/api/v1/chats/?page=2"),
            "GET /api/v1/chats/"
        );
        assert_eq!(call_label(&Method::GET, "/api/version"), "GET /api/version");
        assert_eq!(
            call_label(&Method::GET, "/api/v1/files/42"),
            "GET /api/v1/files/{id}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upkeep_request_waits_behind_one_queued_upload_not_all() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.acquire(Lane::Upkeep).await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let queue = |lane: Lane, name: &'static str| {
            let (slots, order) = (slots.clone(), order.clone());
            tokio::spawn(async move {
                let _p = slots.acquire(lane).await;
                order.lock().unwrap().push(name);
                tokio::task::yield_now().await;
            })
        };
        for name in ["upload 1", "upload 2", "upload 3"] {
            tasks.push(queue(Lane::Bulk, name));
            tokio::task::yield_now().await;
        }
        tasks.push(queue(Lane::Upkeep, "listing"));
        tokio::task::yield_now().await;
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["upload 1", "listing", "upload 2", "upload 3"]
        );
    }
}
