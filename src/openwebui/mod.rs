//! A typed client of the real Open WebUI API, 0.6.40 through 0.12.x
//! (`openwebui-api.md` §13 lists the calls).
//!
//! Architecture invariants:
//! - every API answer must be JSON ([`error::classify`]); the HTML that
//!   Open WebUI serves for unknown GET paths is an error, never data;
//! - with email + password, a token-type 401 leads to at most one new
//!   sign-in per request, shared by all requests that saw the same token;
//!   a sign-in that is rate-limited is not repeated;
//! - idempotent calls are retried on 429/502/503/504 and transport errors;
//!   other calls only when the server cannot have acted (429, no connection);
//! - at most `max_in_flight` requests are under way at once.

pub mod error;
pub mod retry;
pub mod sse;
pub mod types;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tokio::sync::{Mutex, OnceCell, OwnedSemaphorePermit, RwLock, Semaphore};
use url::Url;

use crate::config::{Auth, OpenWebUiConfig, Secret};
pub use error::Error;
use retry::RetryPolicy;
use sse::{SseParser, StreamEvent};
pub use types::*;

/// Page size asked for when listing a knowledge base's files.
const KNOWLEDGE_PAGE: usize = 1000;

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
        }
    }
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    clock: crate::clock::Clock,
    http: reqwest::Client,
    base: String,
    auth: Auth,
    /// Session token from sign-in, with a generation that rises on each
    /// sign-in so concurrent 401s trigger one sign-in, not many.
    session: RwLock<Option<(Secret, u64)>>,
    signin: Mutex<()>,
    signins: AtomicU64,
    permits: Arc<Semaphore>,
    /// Uploads being processed by the server after their request ended.
    processing: Arc<Semaphore>,
    timeout: Duration,
    processing_timeout: Duration,
    retry: RetryPolicy,
    version: OnceCell<Version>,
    /// Per knowledge base, for servers whose link list is racy (see
    /// [`Version::knowledge_links_are_racy`]).
    knowledge_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<Mutex<()>>>>,
}

/// Whether repeating a request could do the work twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
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
                permits: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
                // Open WebUI reports a finished upload up to a second late
                // (its status stream polls once a second): with one slot per
                // request slot that second would be the limit (4 files/s).
                processing: Arc::new(Semaphore::new(options.max_in_flight.max(1) * 4)),
                timeout: options.timeout,
                processing_timeout: options.processing_timeout,
                retry: options.retry,
                clock: options.clock,
                version: OnceCell::new(),
                knowledge_locks: Default::default(),
            }),
        })
    }

    /// Held from an upload that links itself (`metadata.knowledge_id`)
    /// until it is processed: that work runs on the server after the
    /// request has ended, so request permits alone would let ferry pile up
    /// every file of a burst there at once (slow for all of them, and a
    /// crash would leave many half-done).
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

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.inner.base, path)
    }

    // ----- transport -------------------------------------------------------

    async fn authorization(&self) -> Result<(String, u64), Error> {
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
    async fn refresh_session(&self, seen_generation: u64) -> Result<(), Error> {
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

    async fn sign_in(&self) -> Result<Secret, Error> {
        let Auth::Password { email, password } = &self.inner.auth else {
            unreachable!("sign-in is only used with email + password")
        };
        let path = "/api/v1/auths/signin";
        self.inner.signins.fetch_add(1, Ordering::Relaxed);
        let response = {
            let _permit = self.inner.permits.acquire().await.expect("never closed");
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
    async fn execute<F>(
        &self,
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
            let permit = self
                .inner
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            let result = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok((response, permit)),
                Ok(response) => {
                    read_json(path, response, timeout, self.inner.clock.now_system_time())
                        .await
                        .map(|_| unreachable!())
                }
                Err(e) => Err(map_send_error(path, e, timeout)),
            };
            drop(permit);
            let Err(error) = result;
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

    async fn json<F>(
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

    /// [`Client::json`] for answers that only need to be a success.
    async fn json_ignored<F>(
        &self,
        method: Method,
        path: &str,
        repeat: Repeat,
        build: F,
    ) -> Result<(), Error>
    where
        F: Fn(RequestBuilder) -> Result<RequestBuilder, Error>,
    {
        let (response, _permit) = self.execute(method, path, repeat, build).await?;
        let now = self.inner.clock.now_system_time();
        read_json_as::<serde::de::IgnoredAny>(path, response, self.inner.timeout, now)
            .await
            .map(|_| ())
    }

    async fn get(&self, path: &str) -> Result<Value, Error> {
        self.json(Method::GET, path, Repeat::Safe, Ok).await
    }

    // ----- server ----------------------------------------------------------

    /// `GET /api/version`, once per client.
    pub async fn version(&self) -> Result<Version, Error> {
        self.inner
            .version
            .get_or_try_init(|| async {
                let path = "/api/version";
                let response = self
                    .inner
                    .http
                    .get(self.url(path))
                    .timeout(self.inner.timeout)
                    .send()
                    .await
                    .map_err(|e| map_send_error(path, e, self.inner.timeout))?;
                let body = read_json(
                    path,
                    response,
                    self.inner.timeout,
                    self.inner.clock.now_system_time(),
                )
                .await?;
                let text = body.get("version").and_then(Value::as_str).unwrap_or("");
                Version::parse(text).ok_or_else(|| Error::UnexpectedResponse {
                    path: path.into(),
                    message: format!(
                        "no version in the answer ({})",
                        error::one_line(&body.to_string(), 120)
                    ),
                })
            })
            .await
            .cloned()
    }

    /// Who the credentials belong to. Open WebUI 0.12 refuses API keys on
    /// `GET /api/v1/auths/` ("A human session is required"), so a key is
    /// then validated through `/api/v1/users/permissions` instead.
    pub async fn whoami(&self) -> Result<Identity, Error> {
        let auth = match self.inner.auth {
            Auth::ApiKey(_) => "api_key",
            Auth::Password { .. } => "password",
        };
        match self.get("/api/v1/auths/").await {
            Ok(v) => Ok(Identity {
                id: str_field(&v, "id"),
                email: str_field(&v, "email"),
                name: str_field(&v, "name"),
                role: str_field(&v, "role"),
                auth,
                note: None,
            }),
            Err(Error::Forbidden { detail, .. }) if detail.contains("human session") => {
                self.get("/api/v1/users/permissions").await?;
                Ok(Identity {
                    id: None,
                    email: None,
                    name: None,
                    role: None,
                    auth,
                    note: Some(
                        "API key accepted; this Open WebUI version does not tell whose it is"
                            .into(),
                    ),
                })
            }
            Err(e) => Err(e),
        }
    }

    pub async fn models(&self) -> Result<Vec<Model>, Error> {
        let v = self.get("/api/models").await?;
        parse_list(&v, "/api/models", "data")
    }

    /// `POST /ollama/api/pull`: admin only; NDJSON progress lines.
    pub async fn pull(&self, model: &str, mut progress: impl FnMut(&Value)) -> Result<(), Error> {
        let path = "/ollama/api/pull";
        let body = json!({"model": model});
        let (response, _permit) = self
            .execute(Method::POST, path, Repeat::Safe, |r| {
                Ok(r.timeout(Duration::from_secs(6 * 3600)).json(&body))
            })
            .await?;
        let mut stream = response.bytes_stream();
        let mut buffer = Vec::new();
        let mut handle = |line: &[u8]| -> Result<(), Error> {
            let line = String::from_utf8_lossy(line);
            if line.trim().is_empty() {
                return Ok(());
            }
            let v: Value =
                serde_json::from_str(line.trim()).map_err(|e| Error::UnexpectedResponse {
                    path: path.into(),
                    message: format!("invalid progress line: {e}"),
                })?;
            if let Some(err) = v.get("error").and_then(Value::as_str) {
                return Err(Error::Rejected {
                    path: path.into(),
                    status: 200,
                    detail: err.to_string(),
                });
            }
            progress(&v);
            Ok(())
        };
        while let Some(chunk) = stream.next().await {
            buffer.extend_from_slice(&chunk.map_err(|e| Error::transport(path, &e))?);
            while let Some(nl) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=nl).collect();
                handle(&line)?;
            }
        }
        handle(&buffer)
    }

    // ----- knowledge -------------------------------------------------------

    /// Every knowledge base the account can see (paginated in 0.12, a plain
    /// list in 0.6).
    pub async fn knowledge_bases(&self) -> Result<Vec<Knowledge>, Error> {
        self.all_pages(|page| format!("/api/v1/knowledge/?page={page}"))
            .await
    }

    /// Pages 1, 2, … of a list answered as `{items, total}` (0.12), or the
    /// whole list at once as a plain array (0.6).
    async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        path_of: impl Fn(usize) -> String,
    ) -> Result<Vec<T>, Error> {
        let mut out: Vec<T> = Vec::new();
        for page in 1.. {
            let path = path_of(page);
            let v = self.get(&path).await?;
            if v.is_array() {
                return parse_list(&v, &path, "");
            }
            let items: Vec<T> = parse_list(&v, &path, "items")?;
            let total = v.get("total").and_then(Value::as_u64).unwrap_or(0) as usize;
            let empty = items.is_empty();
            out.extend(items);
            if empty || out.len() >= total {
                break;
            }
        }
        Ok(out)
    }

    /// The knowledge base by id; `NotFound` when it is gone.
    pub async fn knowledge(&self, id: &str) -> Result<Knowledge, Error> {
        let path = format!("/api/v1/knowledge/{id}");
        let v = self.get(&path).await?;
        serde_json::from_value(v).map_err(|e| unexpected(&path, e))
    }

    /// The oldest knowledge base with exactly this name, if any. Names are
    /// not unique; callers remember the id they settle on.
    pub async fn find_knowledge(&self, name: &str) -> Result<Option<Knowledge>, Error> {
        let mut matches: Vec<Knowledge> = self
            .knowledge_bases()
            .await?
            .into_iter()
            .filter(|k| k.name == name)
            .collect();
        matches.sort_by_key(|k| k.created_at.unwrap_or(i64::MAX));
        Ok(matches.into_iter().next())
    }

    pub async fn create_knowledge(
        &self,
        name: &str,
        description: &str,
    ) -> Result<Knowledge, Error> {
        let path = "/api/v1/knowledge/create";
        let body = json!({"name": name, "description": description});
        let v = self
            .json(Method::POST, path, Repeat::OnlyIfUnprocessed, |r| {
                Ok(r.json(&body))
            })
            .await?;
        serde_json::from_value(v).map_err(|e| unexpected(path, e))
    }

    pub async fn delete_knowledge(&self, id: &str) -> Result<(), Error> {
        let path = format!("/api/v1/knowledge/{id}/delete");
        self.json(Method::DELETE, &path, Repeat::Safe, Ok)
            .await
            .map(|_| ())
    }

    /// The files of a knowledge base, as Open WebUI itself lists them.
    pub async fn knowledge_files(&self, id: &str) -> Result<Vec<KnowledgeFile>, Error> {
        if !self.version().await?.has_knowledge_files_endpoint() {
            let path = format!("/api/v1/knowledge/{id}");
            let v = self.get(&path).await?;
            return match v.get("files") {
                Some(Value::Array(_)) => parse_list(&v, &path, "files"),
                _ => Ok(Vec::new()),
            };
        }
        // Admins may set the page size: fewer requests, and fewer chances
        // for a concurrent change to shift items between pages. Others get
        // 30 per page whatever is asked.
        self.all_pages(|page| {
            format!("/api/v1/knowledge/{id}/files?page={page}&limit={KNOWLEDGE_PAGE}")
        })
        .await
    }

    /// Holds the knowledge base's lock when the server would lose
    /// concurrent link changes; `None` when it is safe without.
    async fn knowledge_guard(
        &self,
        knowledge_id: &str,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, Error> {
        if !self.version().await?.knowledge_links_are_racy() {
            return Ok(None);
        }
        let lock = self
            .inner
            .knowledge_locks
            .lock()
            .expect("not poisoned")
            .entry(knowledge_id.to_string())
            .or_default()
            .clone();
        Ok(Some(lock.lock_owned().await))
    }

    /// Links a processed file into a knowledge base. Re-adding a linked
    /// file succeeds on every version (0.6 answers 400 "[ERROR: file_id]",
    /// which is taken as "already there").
    pub async fn add_file(&self, knowledge_id: &str, file_id: &str) -> Result<(), Error> {
        let path = format!("/api/v1/knowledge/{knowledge_id}/file/add");
        let body = json!({"file_id": file_id});
        let _serialised = self.knowledge_guard(knowledge_id).await?;
        match self
            .json_ignored(Method::POST, &path, Repeat::Safe, |r| Ok(r.json(&body)))
            .await
        {
            Ok(()) => Ok(()),
            Err(Error::Rejected { detail, .. }) if detail == "[ERROR: file_id]" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Unlinks a file. With `delete_file: false` the file itself survives
    /// (Open WebUI's default deletes it, even when someone else uploaded it).
    pub async fn remove_file(
        &self,
        knowledge_id: &str,
        file_id: &str,
        delete_file: bool,
    ) -> Result<(), Error> {
        let path =
            format!("/api/v1/knowledge/{knowledge_id}/file/remove?delete_file={delete_file}");
        let body = json!({"file_id": file_id});
        let _serialised = self.knowledge_guard(knowledge_id).await?;
        self.json_ignored(Method::POST, &path, Repeat::Safe, |r| Ok(r.json(&body)))
            .await
    }

    // ----- files -----------------------------------------------------------

    /// Uploads a file, streamed from disk. Processing runs in the
    /// background on the server; see [`Client::wait_processed`].
    /// `metadata` lands in the file's `meta.data` (ferry marks its uploads).
    /// Uploads the first `length` bytes of an open file as `name` (see
    /// [`crate::paths::upload_name`]). Every attempt reads the same
    /// descriptor from its start, never the path again.
    pub async fn upload(
        &self,
        file: &std::fs::File,
        length: u64,
        name: &str,
        metadata: Option<&Value>,
    ) -> Result<FileInfo, Error> {
        use std::io::Seek as _;
        use tokio::io::AsyncReadExt as _;
        let api = "/api/v1/files/";
        let mime = mime_guess::from_path(name)
            .first_or_octet_stream()
            .to_string();
        let v = self
            .json(Method::POST, api, Repeat::OnlyIfUnprocessed, |r| {
                let io = |source| Error::Io {
                    path: name.to_string(),
                    source,
                };
                let mut file = file.try_clone().map_err(io)?;
                file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
                let reader = tokio::fs::File::from_std(file).take(length);
                let stream = tokio_util::io::ReaderStream::new(reader);
                let part = reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::wrap_stream(stream),
                    length,
                )
                .file_name(name.to_string())
                .mime_str(&mime)
                .map_err(|e| Error::transport(api, &e))?;
                let mut form = reqwest::multipart::Form::new().part("file", part);
                if let Some(m) = metadata {
                    form = form.text("metadata", m.to_string());
                }
                Ok(r.multipart(form))
            })
            .await?;
        let info: FileInfo = serde_json::from_value(v).map_err(|e| unexpected(api, e))?;
        if let Some(err) = info.error.clone().or_else(|| {
            info.data
                .as_ref()
                .filter(|d| d.status.as_deref() == Some("failed"))
                .and_then(|d| d.error.clone())
        }) {
            return Err(processing_error(&info.id, err));
        }
        Ok(info)
    }

    /// Renames a file in place (0.12: `POST /files/{id}/rename`; the
    /// embedding is kept). `Ok(false)` when the server has no such call
    /// (0.6 answers an unknown POST with 405).
    pub async fn rename_file(&self, id: &str, filename: &str) -> Result<bool, Error> {
        let path = format!("/api/v1/files/{id}/rename");
        let body = json!({"filename": filename});
        match self
            .json(Method::POST, &path, Repeat::Safe, |r| Ok(r.json(&body)))
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::Rejected { status: 405, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every file of the account (paginated in 0.12, one list in 0.6).
    pub async fn files(&self) -> Result<Vec<FileInfo>, Error> {
        self.all_pages(|page| format!("/api/v1/files/?page={page}"))
            .await
    }

    pub async fn file(&self, id: &str) -> Result<FileInfo, Error> {
        let path = format!("/api/v1/files/{id}");
        let v = self.get(&path).await?;
        serde_json::from_value(v).map_err(|e| unexpected(&path, e))
    }

    pub async fn processing_status(&self, id: &str) -> Result<ProcessingStatus, Error> {
        let path = format!("/api/v1/files/{id}/process/status");
        match self.get(&path).await {
            Ok(v) => Ok(ProcessingStatus::parse(
                v.get("status").and_then(Value::as_str).unwrap_or(""),
            )),
            // Before the status endpoint (0.5), the file's own data says it.
            Err(Error::UnexpectedResponse { .. }) => {
                let f = self.file(id).await?;
                Ok(ProcessingStatus::parse(
                    f.data
                        .and_then(|d| d.status)
                        .as_deref()
                        .unwrap_or("completed"),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Waits until Open WebUI has processed the file. A failure carries
    /// Open WebUI's own error text, classified (duplicate, empty, …).
    ///
    /// Where the server offers it, one status stream per file replaces
    /// polling (hundreds of requests for a file that waits a minute in
    /// Open WebUI's queue); the stream does not count against
    /// `max_in_flight` once it is open, since it only waits.
    pub async fn wait_processed(&self, id: &str) -> Result<(), Error> {
        self.wait_processed_within(id, self.inner.processing_timeout)
            .await
    }

    /// [`Client::wait_processed`] with its own limit.
    pub async fn wait_processed_within(&self, id: &str, limit: Duration) -> Result<(), Error> {
        let started = Instant::now();
        match self.wait_processed_stream(id, limit).await {
            Ok(Some(result)) => return result,
            Ok(None) => {}
            Err(e) if e.is_transient() => {
                tracing::debug!(file_id = id, error = %e, "status stream failed; polling");
            }
            Err(e) => return Err(e),
        }
        let mut pause = Duration::from_millis(100);
        loop {
            match self.processing_status(id).await? {
                ProcessingStatus::Completed => return Ok(()),
                ProcessingStatus::Failed => {
                    let detail = self
                        .file(id)
                        .await
                        .ok()
                        .and_then(|f| f.data.and_then(|d| d.error))
                        .unwrap_or_else(|| "processing failed (Open WebUI gave no reason)".into());
                    return Err(processing_error(id, detail));
                }
                ProcessingStatus::Pending | ProcessingStatus::Processing => {}
            }
            if started.elapsed() >= limit {
                return Err(Error::Timeout {
                    path: format!("/api/v1/files/{id}/process/status"),
                    after: limit,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 3 / 2).min(Duration::from_secs(2));
        }
    }

    /// `GET …/process/status?stream=true`: `Some(outcome)` when the stream
    /// told, `None` when the server has no stream (or it ended without a
    /// verdict) and polling must decide.
    async fn wait_processed_stream(
        &self,
        id: &str,
        limit: Duration,
    ) -> Result<Option<Result<(), Error>>, Error> {
        let path = format!("/api/v1/files/{id}/process/status?stream=true");
        let (response, permit) = self
            .execute(Method::GET, &path, Repeat::Safe, |r| Ok(r.timeout(limit)))
            .await?;
        drop(permit);
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if !is_sse {
            return Ok(None);
        }
        let mut buffer: Vec<u8> = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) if e.is_timeout() => {
                    return Ok(Some(Err(Error::Timeout { path, after: limit })));
                }
                Err(e) => return Err(Error::transport(&path, &e)),
            };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Some(data) = std::str::from_utf8(&line)
                    .ok()
                    .and_then(|l| l.trim().strip_prefix("data:"))
                else {
                    continue;
                };
                let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
                    continue;
                };
                match event.get("status").and_then(Value::as_str) {
                    Some("completed") => return Ok(Some(Ok(()))),
                    Some("failed") => {
                        let detail = event
                            .get("error")
                            .and_then(Value::as_str)
                            .unwrap_or("processing failed (Open WebUI gave no reason)")
                            .to_string();
                        return Ok(Some(Err(processing_error(id, detail))));
                    }
                    Some("not_found") => {
                        return Ok(Some(Err(Error::NotFound {
                            path,
                            detail: "the file is gone".into(),
                        })));
                    }
                    _ => {}
                }
            }
        }
        Ok(None)
    }

    pub async fn delete_file(&self, id: &str) -> Result<(), Error> {
        let path = format!("/api/v1/files/{id}");
        match self.json(Method::DELETE, &path, Repeat::Safe, Ok).await {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ----- chat ------------------------------------------------------------

    /// A non-streaming completion.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChatAnswer, Error> {
        let path = "/api/chat/completions";
        let body = request.body(false);
        let v = self
            .json(Method::POST, path, Repeat::OnlyIfUnprocessed, |r| {
                Ok(r.timeout(timeout).json(&body))
            })
            .await?;
        let content = v
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::UnexpectedResponse {
                path: path.into(),
                message: format!(
                    "no choices[0].message.content in {}",
                    error::one_line(&v.to_string(), 200)
                ),
            })?;
        Ok(ChatAnswer {
            content: content.to_string(),
            model: str_field(&v, "model"),
            sources: v.get("sources").cloned().unwrap_or(Value::Array(vec![])),
            usage: v.get("usage").cloned().unwrap_or(Value::Null),
        })
    }

    /// A streaming completion; `on_delta` sees each piece as it arrives.
    pub async fn chat_stream(
        &self,
        request: &ChatRequest,
        timeout: Duration,
        mut on_delta: impl FnMut(&str),
    ) -> Result<ChatAnswer, Error> {
        let path = "/api/chat/completions";
        let body = request.body(true);
        let (response, _permit) = self
            .execute(Method::POST, path, Repeat::OnlyIfUnprocessed, |r| {
                Ok(r.timeout(timeout).json(&body))
            })
            .await?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if !is_sse {
            // Some setups answer a stream request with one JSON completion.
            let v = read_json(path, response, timeout, self.inner.clock.now_system_time()).await?;
            let content = v
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            on_delta(&content);
            return Ok(ChatAnswer {
                content,
                model: str_field(&v, "model"),
                sources: v.get("sources").cloned().unwrap_or(Value::Array(vec![])),
                usage: v.get("usage").cloned().unwrap_or(Value::Null),
            });
        }
        let mut parser = SseParser::default();
        let mut answer = ChatAnswer {
            sources: Value::Array(vec![]),
            ..Default::default()
        };
        let mut stream = response.bytes_stream();
        let mut done = false;
        let mut apply =
            |events: Vec<StreamEvent>, answer: &mut ChatAnswer| -> Result<bool, Error> {
                for event in events {
                    match event {
                        StreamEvent::Delta(d) => {
                            on_delta(&d);
                            answer.content.push_str(&d);
                        }
                        StreamEvent::Sources(s) => answer.sources = s,
                        StreamEvent::Usage(u) => answer.usage = u,
                        StreamEvent::Model(m) => answer.model = Some(m),
                        StreamEvent::Error(detail) => {
                            return Err(Error::Server {
                                path: path.into(),
                                status: 502,
                                detail: format!("stream failed: {detail}"),
                            });
                        }
                        StreamEvent::Done => return Ok(true),
                    }
                }
                Ok(false)
            };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| map_send_error(path, e, timeout))?;
            if apply(parser.push(&chunk), &mut answer)? {
                done = true;
                break;
            }
        }
        if !done {
            done = apply(parser.finish(), &mut answer)?;
        }
        if !done && answer.content.is_empty() {
            return Err(Error::UnexpectedResponse {
                path: path.into(),
                message: "the stream ended without an answer".into(),
            });
        }
        Ok(answer)
    }

    /// Stores a prompt and its answer as a chat that the Open WebUI UI
    /// shows like its own (a proper `history` tree). Returns the chat id.
    pub async fn save_chat(
        &self,
        title: &str,
        model: &str,
        prompt: &str,
        answer: &str,
    ) -> Result<String, Error> {
        let path = "/api/v1/chats/new";
        let now = self
            .inner
            .clock
            .now_system_time()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let (user_id, assistant_id) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        let secs = now.as_secs();
        let body = json!({"chat": {
            "title": title,
            "models": [model],
            "history": {
                "currentId": assistant_id,
                "messages": {
                    user_id.clone(): {"id": user_id, "parentId": null, "childrenIds": [assistant_id],
                        "role": "user", "content": prompt, "timestamp": secs, "models": [model]},
                    assistant_id.clone(): {"id": assistant_id, "parentId": user_id, "childrenIds": [],
                        "role": "assistant", "content": answer, "model": model, "modelName": model,
                        "done": true, "timestamp": secs},
                }
            },
            "messages": [
                {"id": user_id, "parentId": null, "childrenIds": [assistant_id], "role": "user",
                 "content": prompt, "timestamp": secs, "models": [model]},
                {"id": assistant_id, "parentId": user_id, "childrenIds": [], "role": "assistant",
                 "content": answer, "model": model, "done": true, "timestamp": secs},
            ],
            "tags": [],
            "timestamp": now.as_millis() as u64,
        }});
        let v = self
            .json(Method::POST, path, Repeat::OnlyIfUnprocessed, |r| {
                Ok(r.json(&body))
            })
            .await?;
        str_field(&v, "id").ok_or_else(|| Error::UnexpectedResponse {
            path: path.into(),
            message: "the new chat has no id".into(),
        })
    }

    /// Every chat of the account, newest first.
    pub async fn chats(&self) -> Result<Vec<ChatSummary>, Error> {
        let mut out = Vec::new();
        for page in 1.. {
            let path = format!("/api/v1/chats/?page={page}");
            let v = self.get(&path).await?;
            let items: Vec<ChatSummary> = parse_list(&v, &path, "")?;
            if items.is_empty() {
                break;
            }
            out.extend(items);
        }
        Ok(out)
    }

    pub async fn chat_by_id(&self, id: &str) -> Result<Value, Error> {
        self.get(&format!("/api/v1/chats/{id}")).await
    }
}

fn map_send_error(path: &str, e: reqwest::Error, timeout: Duration) -> Error {
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
async fn read_json(
    path: &str,
    response: Response,
    timeout: Duration,
    now: std::time::SystemTime,
) -> Result<Value, Error> {
    read_json_as(path, response, timeout, now).await
}

async fn read_json_as<T: serde::de::DeserializeOwned>(
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

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn unexpected(path: &str, e: serde_json::Error) -> Error {
    Error::UnexpectedResponse {
        path: path.into(),
        message: format!("unexpected JSON shape: {e}"),
    }
}

/// `key` of an object holding a list, or the value itself with key "".
fn parse_list<T: serde::de::DeserializeOwned>(
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

/// Open WebUI's processing error, classified by its text.
fn processing_error(file_id: &str, detail: String) -> Error {
    let lower = detail.to_lowercase();
    if lower.contains("duplicate content") {
        Error::DuplicateContent { detail }
    } else if lower.contains("content provided is empty") || lower.contains("empty content") {
        Error::EmptyContent { detail }
    } else {
        Error::ProcessingFailed {
            file_id: file_id.to_string(),
            detail,
        }
    }
}
