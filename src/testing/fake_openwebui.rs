//! An in-process imitation of the Open WebUI API (axum on 127.0.0.1), for
//! fast tests, fault injection and benchmarks. It copies the real server's
//! quirks that ferry depends on: 401 for not-found chats, HTML 200 for
//! unknown GET paths, "400: Duplicate content detected…", 0.6 vs 0.12 list
//! shapes. It is never the only proof: the e2e suite runs the real server.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const API_KEY: &str = "sk-fake-key";
pub const EMAIL: &str = "admin@fake.test";
pub const PASSWORD: &str = "fake-password";

/// A scripted answer for the next matching request(s).
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(String, String)>,
    pub delay: Option<Duration>,
}

impl Fault {
    pub fn new(method: Method, path: &str, status: u16, body: Value) -> Fault {
        Fault {
            method,
            path: path.to_string(),
            status: StatusCode::from_u16(status).expect("valid status"),
            body,
            headers: Vec::new(),
            delay: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Fault {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sleep before answering (timeouts).
    pub fn delay(mut self, d: Duration) -> Fault {
        self.delay = Some(d);
        self
    }
}

#[derive(Debug, Clone)]
pub struct StoredFile {
    pub uploaded: std::time::Instant,
    pub id: String,
    pub name: String,
    pub content: Vec<u8>,
    pub sha256: String,
    pub status: String,
    pub error: Option<String>,
    pub user_id: String,
    /// The `metadata` form field of the upload (`meta.data`).
    pub metadata: Value,
    /// Unix seconds, as Open WebUI lists it.
    pub created_at: i64,
    /// Its text as the server extracted it (`data.content`); `None`: the
    /// bytes as UTF-8.
    pub text: Option<String>,
}

impl StoredFile {
    /// A file as an upload leaves it: processed (`completed`), the API
    /// key's user's, its text its bytes, created now.
    pub fn new(id: &str, name: &str, content: Vec<u8>, metadata: Value) -> StoredFile {
        StoredFile {
            uploaded: std::time::Instant::now(),
            id: id.to_string(),
            name: name.to_string(),
            sha256: hex::encode(Sha256::digest(&content)),
            content,
            status: "completed".into(),
            error: None,
            user_id: "u1".into(),
            metadata,
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            text: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredKnowledge {
    pub id: String,
    pub name: String,
    pub files: Vec<String>,
    pub created_at: i64,
    pub description: String,
    /// As the version keeps it: the `access_grants` list (0.12) or the
    /// `access_control` value (0.6, `null` = everyone reads).
    pub access: Value,
    /// `{"source": "external"}` for a read-only external one.
    pub meta: Value,
    /// Its directories (0.12).
    pub dirs: Vec<StoredDir>,
    /// file id → the directory it is in (absent: the top).
    pub file_dirs: HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct StoredDir {
    pub id: String,
    pub parent: Option<String>,
    pub name: String,
}

impl StoredKnowledge {
    /// A directory's path (`a/b`), for tests.
    pub fn dir_path(&self, id: &str) -> String {
        let mut names = Vec::new();
        let mut at = Some(id.to_string());
        while let Some(d) = at.and_then(|i| self.dirs.iter().find(|d| d.id == i)) {
            names.push(d.name.clone());
            at = d.parent.clone();
        }
        names.reverse();
        names.join("/")
    }

    /// Every linked file as `dir/path/name` (top-level files bare).
    pub fn tree(&self, files: &HashMap<String, StoredFile>) -> Vec<String> {
        let mut out: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| {
                let name = files.get(f)?.name.clone();
                Some(match self.file_dirs.get(f) {
                    Some(d) => format!("{}/{name}", self.dir_path(d)),
                    None => name,
                })
            })
            .collect();
        out.sort();
        out
    }

    fn has_dir(&self, id: Option<&str>) -> bool {
        id.is_none_or(|id| self.dirs.iter().any(|d| d.id == id))
    }
}

#[derive(Default)]
pub struct FakeState {
    pub version: String,
    pub files: HashMap<String, StoredFile>,
    pub knowledge: Vec<StoredKnowledge>,
    pub chats: Vec<Value>,
    /// Every chat completion request body, in order.
    pub completions: Vec<Value>,
    pub faults: VecDeque<Fault>,
    pub session_tokens: Vec<String>,
    pub signins: u64,
    /// Every request as "METHOD /path".
    pub log: Vec<String>,
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// How long an upload stays `processing` (default: done at once).
    pub processing: Duration,
    /// The next this many uploads (0.12) are read as empty text; linking
    /// one is refused as "duplicate" of other empty text, as 0.12.4 did
    /// under load.
    pub read_as_empty: usize,
    /// The next this many uploads (0.12) are processed (and linked, if
    /// they link themselves) but stay `processing` for ever: 0.12.4 under
    /// load loses the write of `completed` (its `update_file_data_by_id`
    /// swallows a "database is locked").
    pub lose_completed: usize,
    /// How long a chat completion takes (a slow model).
    pub chat_delay: Duration,
    /// Chat completions running right now, and the most at once.
    pub chats_running: usize,
    pub chats_running_max: usize,
    /// `GET /groups/`: (id, name).
    pub groups: Vec<(String, String)>,
    /// `GET /users/?query=`: (id, email).
    pub users: Vec<(String, String)>,
    /// Files deleted the moment the first page of `GET /files/` has been
    /// answered, once: a concurrent change under an offset-paged listing.
    pub delete_after_first_page: Vec<String>,
    /// Uploads made while this is set are left out of `GET /files/`, as
    /// if more than a page of other changes always came after them.
    pub unlist_uploads: bool,
    unlisted: std::collections::HashSet<String>,
    next_id: u64,
}

impl FakeState {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    fn is_012(&self) -> bool {
        !self.version.starts_with("0.6.")
    }
}

#[derive(Clone)]
pub struct FakeOpenWebUi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<FakeState>>,
}

type Shared = Arc<Mutex<FakeState>>;

impl FakeOpenWebUi {
    /// Starts a fake of Open WebUI `version` ("0.12.4", "0.6.40") on a free port.
    pub async fn start(version: &str) -> FakeOpenWebUi {
        let state: Shared = Arc::new(Mutex::new(FakeState {
            version: version.to_string(),
            ..Default::default()
        }));
        let app = Router::new()
            .route(
                "/api/version",
                get(|State(s): State<Shared>| async move {
                    Json(json!({"version": s.lock().unwrap().version}))
                }),
            )
            .route("/api/v1/auths/signin", post(signin))
            .route("/api/v1/auths/", get(whoami))
            .route(
                "/api/v1/users/permissions",
                get(|| async { Json(json!({"chat": {}})) }),
            )
            .route(
                "/api/models",
                get(|| async { Json(json!({"data": [{"id": "fake-model", "name": "Fake"}]})) }),
            )
            .route("/api/v1/files/", post(upload).get(list_files))
            .route("/api/v1/files/{id}", get(file).delete(delete_file))
            .route("/api/v1/files/{id}/process/status", get(file_status))
            .route("/api/v1/files/{id}/rename", post(rename_file))
            .route("/api/v1/knowledge/", get(list_knowledge))
            .route("/api/v1/knowledge/create", post(create_knowledge))
            .route("/api/v1/knowledge/{id}", get(knowledge))
            .route("/api/v1/knowledge/{id}/files", get(knowledge_files))
            .route("/api/v1/knowledge/{id}/update", post(update_knowledge))
            .route("/api/v1/knowledge/{id}/access/update", post(update_access))
            .route(
                "/api/v1/groups/",
                get(|State(s): State<Shared>| async move {
                    let st = s.lock().unwrap();
                    let groups: Vec<Value> = st
                        .groups
                        .iter()
                        .map(|(id, name)| json!({"id": id, "name": name, "description": ""}))
                        .collect();
                    Json(Value::Array(groups))
                }),
            )
            .route("/api/v1/users/", get(users))
            .route("/api/v1/knowledge/{id}/file/add", post(add_file))
            .route(
                "/api/v1/knowledge/{id}/files/batch/add",
                post(add_files_batch),
            )
            .route("/api/v1/knowledge/{id}/file/move", post(move_file))
            .route("/api/v1/knowledge/{id}/dirs/create", post(create_dir))
            .route("/api/v1/knowledge/{id}/dirs/{dir}/update", post(update_dir))
            .route(
                "/api/v1/knowledge/{id}/dirs/{dir}/delete",
                axum::routing::delete(delete_dir),
            )
            .route("/api/v1/knowledge/{id}/file/remove", post(remove_file))
            .route(
                "/api/v1/knowledge/{id}/delete",
                axum::routing::delete(delete_knowledge),
            )
            .route("/api/chat/completions", post(chat))
            .route("/api/v1/chats/new", post(new_chat))
            .route("/api/v1/chats/", get(list_chats))
            .route("/ollama/api/pull", post(pull))
            // The real server's web app answers any other GET with HTML.
            .fallback(|method: Method| async move {
                if method == Method::GET {
                    Html("<!doctype html><html><body>Open WebUI</body></html>").into_response()
                } else {
                    (
                        StatusCode::METHOD_NOT_ALLOWED,
                        Json(json!({"detail": "Method Not Allowed"})),
                    )
                        .into_response()
                }
            })
            .layer(middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOpenWebUi { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn inject(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    /// Makes every session token invalid, as an expiry or restart would.
    pub fn expire_sessions(&self) {
        self.state.lock().unwrap().session_tokens.clear();
    }

    pub fn signins(&self) -> u64 {
        self.state.lock().unwrap().signins
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        let key = format!("{method} {path}");
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| **l == key)
            .count()
    }

    pub fn knowledge_file_names(&self, name: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.knowledge
            .iter()
            .filter(|k| k.name == name)
            .flat_map(|k| {
                k.files
                    .iter()
                    .map(|f| s.files.get(f).map(|f| f.name.clone()).unwrap_or_default())
            })
            .collect()
    }

    /// The collection's linked files as `dir/path/name`, sorted.
    pub fn knowledge_tree(&self, name: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.knowledge
            .iter()
            .filter(|k| k.name == name)
            .flat_map(|k| k.tree(&s.files))
            .collect()
    }

    /// The collection's directories as paths, sorted.
    pub fn knowledge_dirs(&self, name: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut out: Vec<String> = s
            .knowledge
            .iter()
            .filter(|k| k.name == name)
            .flat_map(|k| k.dirs.iter().map(|d| k.dir_path(&d.id)))
            .collect();
        out.sort();
        out
    }
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({"detail": text}))).into_response()
}

const NOT_FOUND: &str = "We could not find what you're looking for :/";

/// Logging, scripted faults, then authentication.
async fn gate(
    State(s): State<Shared>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let fault = {
        let mut st = s.lock().unwrap();
        st.log.push(format!("{method} {path}"));
        st.in_flight += 1;
        st.max_in_flight = st.max_in_flight.max(st.in_flight);
        let i = st
            .faults
            .iter()
            .position(|f| f.method == method && path.starts_with(&f.path));
        i.and_then(|i| st.faults.remove(i))
    };
    let response = answer(&s, fault, &path, &headers, request, next).await;
    s.lock().unwrap().in_flight -= 1;
    response
}

async fn answer(
    s: &Shared,
    fault: Option<Fault>,
    path: &str,
    headers: &HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(f) = fault {
        if let Some(d) = f.delay {
            tokio::time::sleep(d).await;
        }
        let mut response = (f.status, Json(f.body)).into_response();
        for (k, v) in f.headers {
            response.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("header"),
                v.parse().expect("header value"),
            );
        }
        return response;
    }
    let public = matches!(path, "/api/version" | "/api/v1/auths/signin")
        || !(path.starts_with("/api/") || path.starts_with("/ollama/"));
    if !public {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok = token == API_KEY || s.lock().unwrap().session_tokens.iter().any(|t| t == token);
        if token.is_empty() {
            return detail(StatusCode::UNAUTHORIZED, "Not authenticated");
        }
        if !ok {
            return detail(StatusCode::UNAUTHORIZED, "401 Unauthorized");
        }
        if path == "/api/v1/auths/" && token == API_KEY && s.lock().unwrap().is_012() {
            return detail(StatusCode::FORBIDDEN, "A human session is required.");
        }
    }
    next.run(request).await
}

async fn signin(State(s): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut st = s.lock().unwrap();
    st.signins += 1;
    if body["email"] != EMAIL || body["password"] != PASSWORD {
        return detail(
            StatusCode::BAD_REQUEST,
            "The email or password provided is incorrect. Please check for typos and try logging in again.",
        );
    }
    let token = st.id("tok");
    st.session_tokens.push(token.clone());
    Json(json!({"token": token, "token_type": "Bearer", "id": "u1", "email": EMAIL, "name": "Admin", "role": "admin"}))
        .into_response()
}

async fn whoami() -> Json<Value> {
    Json(json!({"id": "u1", "email": EMAIL, "name": "Admin", "role": "admin"}))
}

fn file_json(f: &StoredFile) -> Value {
    let text = f
        .text
        .clone()
        .unwrap_or_else(|| String::from_utf8_lossy(&f.content).into_owned());
    // The hash of its text is the last write of processing (a status left
    // `processing` by a lost write has it too).
    let processed = f.status == "completed" || f.status == "processing";
    json!({"id": f.id, "filename": f.name, "user_id": f.user_id,
           "data": {"status": f.status, "error": f.error,
                    "content": text},
           "created_at": f.created_at,
           "hash": processed.then(|| hex::encode(Sha256::digest(text.as_bytes()))),
           "meta": {"name": f.name, "size": f.content.len(), "file_hash": f.sha256, "data": f.metadata}})
}

/// Whether linking `f` is refused as a duplicate of other empty text: it
/// was read as empty though it is not.
fn read_as_empty(f: &StoredFile) -> bool {
    !f.content.is_empty() && f.text.as_deref().is_some_and(|t| t.trim().is_empty())
}

const DUPLICATE: &str = "Duplicate content detected. Please provide unique content to proceed.";

impl StoredKnowledge {
    /// Whether linking `f` is refused as duplicate content: a linked file
    /// has the same bytes, or `f` was read as empty text.
    fn refuses(&self, files: &HashMap<String, StoredFile>, f: &StoredFile) -> bool {
        read_as_empty(f)
            || self
                .files
                .iter()
                .any(|other| files.get(other).is_some_and(|o| o.sha256 == f.sha256))
    }

    /// Links `file_id`, in `directory` if it is one of this collection's
    /// (a directory not of it is ignored: the top).
    fn link(&mut self, file_id: &str, directory: Option<&str>) {
        if let Some(d) = directory.filter(|d| self.dirs.iter().any(|x| x.id == *d)) {
            self.file_dirs.insert(file_id.to_string(), d.to_string());
        }
        self.files.push(file_id.to_string());
    }
}

async fn upload(State(s): State<Shared>, mut form: Multipart) -> Response {
    let mut name = String::new();
    let mut content = Vec::new();
    let mut metadata = Value::Null;
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("file") => {
                name = field.file_name().unwrap_or("file").to_string();
                content = field.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            }
            Some("metadata") => {
                let text = field.text().await.unwrap_or_default();
                metadata = serde_json::from_str(&text).unwrap_or(Value::Null);
            }
            _ => {}
        }
    }
    if content.is_empty() {
        return detail(
            StatusCode::BAD_REQUEST,
            "The content provided is empty. Please ensure that there is text or data present before proceeding.",
        );
    }
    let mut st = s.lock().unwrap();
    let id = st.id("file");
    let f = StoredFile::new(&id, &name, content, metadata);
    let mut answer = file_json(&f);
    answer["data"]["status"] = "pending".into();
    let link_to = f.metadata["knowledge_id"].as_str().map(str::to_string);
    st.files.insert(id.clone(), f);
    if st.unlist_uploads {
        st.unlisted.insert(id.clone());
    }
    if link_to.is_none() && st.is_012() {
        if st.read_as_empty > 0 {
            st.read_as_empty -= 1;
            st.files.get_mut(&id).expect("just stored").text = Some(String::new());
        }
        if st.lose_completed > 0 {
            st.lose_completed -= 1;
            st.files.get_mut(&id).expect("just stored").status = "processing".into();
        }
    }
    // 0.12 links an upload with `metadata.knowledge_id` itself; the fake
    // does it at once (its processing is instant) and, like 0.12.4, marks
    // a duplicate as a failed file rather than an HTTP error.
    if let Some(kb) = link_to
        && st.is_012()
    {
        let files = st.files.clone();
        let read_as_empty = st.read_as_empty > 0;
        st.read_as_empty = st.read_as_empty.saturating_sub(1);
        if read_as_empty {
            let f = st.files.get_mut(&id).expect("just stored");
            f.text = Some(String::new());
            f.status = "failed".into();
            f.error = Some(DUPLICATE.into());
        } else if let Some(k) = st.knowledge.iter_mut().find(|k| k.id == kb) {
            if k.refuses(&files, &files[&id]) {
                let f = st.files.get_mut(&id).expect("just stored");
                f.status = "failed".into();
                f.error = Some(DUPLICATE.into());
            } else {
                k.link(&id, files[&id].metadata["directory_id"].as_str());
                if st.lose_completed > 0 {
                    st.lose_completed -= 1;
                    st.files.get_mut(&id).expect("just stored").status = "processing".into();
                }
            }
        }
    }
    Json(answer).into_response()
}

/// `GET /api/v1/files/`: 50 a page in 0.12, one list in 0.6.
async fn list_files(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let mut st = s.lock().unwrap();
    // Newest change first, as 0.12 orders it (`updated_at desc, id desc`);
    // a fake file changes only when uploaded.
    let mut all: Vec<&StoredFile> = st
        .files
        .values()
        .filter(|f| !st.unlisted.contains(&f.id))
        .collect();
    all.sort_by(|a, b| b.uploaded.cmp(&a.uploaded).then(b.id.cmp(&a.id)));
    let answer = paged(&st, all, &q, 50, |f| file_json(f));
    if q.get("page").is_none_or(|p| p == "1") {
        for id in std::mem::take(&mut st.delete_after_first_page) {
            st.files.remove(&id);
        }
    }
    answer
}

/// A list as the version answers it: whole in 0.6, `{items, total}` pages
/// of `size` in 0.12. Only what is answered is made JSON (a 100,000-file
/// list made whole for each page of 50 was the benchmarks' bottleneck).
fn paged<T>(
    st: &FakeState,
    all: Vec<T>,
    q: &HashMap<String, String>,
    size: usize,
    json: impl Fn(&T) -> Value,
) -> Json<Value> {
    if !st.is_012() {
        return Json(Value::Array(all.iter().map(json).collect()));
    }
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(json)
        .collect();
    Json(json!({"items": items, "total": all.len()}))
}

async fn file(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    match s.lock().unwrap().files.get(&id) {
        Some(f) => Json(file_json(f)).into_response(),
        None => detail(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

async fn file_status(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let st = s.lock().unwrap();
    match st.files.get(&id) {
        Some(f) if f.uploaded.elapsed() < st.processing => {
            Json(json!({"status": "processing"})).into_response()
        }
        Some(f) => Json(json!({"status": f.status})).into_response(),
        None => detail(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

/// `POST /files/{id}/rename` (0.12; 0.6 has no such route: 405).
async fn rename_file(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    if !st.is_012() {
        return detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    match st.files.get_mut(&id) {
        Some(f) => {
            f.name = body["filename"].as_str().unwrap_or_default().to_string();
            Json(file_json(f)).into_response()
        }
        None => detail(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

async fn delete_file(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let mut st = s.lock().unwrap();
    if st.files.remove(&id).is_none() {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    for k in &mut st.knowledge {
        k.files.retain(|f| f != &id);
        k.file_dirs.remove(&id);
    }
    Json(json!(true)).into_response()
}

fn knowledge_json(k: &StoredKnowledge, is_012: bool) -> Value {
    let mut v = json!({"id": k.id, "name": k.name, "description": k.description, "user_id": "u1", "created_at": k.created_at, "meta": k.meta});
    v[if is_012 {
        "access_grants"
    } else {
        "access_control"
    }] = k.access.clone();
    v
}

async fn list_knowledge(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let st = s.lock().unwrap();
    let all: Vec<Value> = st
        .knowledge
        .iter()
        .map(|k| knowledge_json(k, st.is_012()))
        .collect();
    paged(&st, all, &q, 30, Value::clone)
}

async fn create_knowledge(State(s): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    let mut st = s.lock().unwrap();
    let id = st.id("kb");
    let created_at = st.next_id as i64;
    let access = if st.is_012() {
        body.get("access_grants").cloned().unwrap_or(json!([]))
    } else {
        // A missing or null `access_control` is public on 0.6.
        body.get("access_control").cloned().unwrap_or(Value::Null)
    };
    let k = StoredKnowledge {
        id,
        name: body["name"].as_str().unwrap_or_default().to_string(),
        files: Vec::new(),
        created_at,
        description: body["description"].as_str().unwrap_or_default().to_string(),
        access,
        meta: Value::Null,
        dirs: Vec::new(),
        file_dirs: HashMap::new(),
    };
    let answer = knowledge_json(&k, st.is_012());
    st.knowledge.push(k);
    Json(answer)
}

async fn knowledge(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let st = s.lock().unwrap();
    let Some(k) = st.knowledge.iter().find(|k| k.id == id) else {
        let status = if st.is_012() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::UNAUTHORIZED
        };
        return detail(status, NOT_FOUND);
    };
    let mut answer = knowledge_json(k, st.is_012());
    if !st.is_012() {
        answer["files"] = k
            .files
            .iter()
            .filter_map(|f| st.files.get(f))
            .map(file_json)
            .collect();
    }
    Json(answer).into_response()
}

/// 0.6: every column from the body (`data` too); 0.12: name and
/// description only.
async fn update_knowledge(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    let is_012 = st.is_012();
    let Some(k) = st.knowledge.iter_mut().find(|k| k.id == id) else {
        return detail(StatusCode::BAD_REQUEST, NOT_FOUND);
    };
    k.name = body["name"].as_str().unwrap_or_default().to_string();
    k.description = body["description"].as_str().unwrap_or_default().to_string();
    if !is_012 {
        k.access = body.get("access_control").cloned().unwrap_or(Value::Null);
    }
    let answer = knowledge_json(k, is_012);
    Json(answer).into_response()
}

async fn update_access(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    if !st.is_012() {
        return detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let Some(k) = st.knowledge.iter_mut().find(|k| k.id == id) else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    k.access = body["access_grants"].clone();
    let answer = knowledge_json(k, true);
    Json(answer).into_response()
}

async fn users(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let st = s.lock().unwrap();
    let query = q.get("query").map(|x| x.to_lowercase()).unwrap_or_default();
    let users: Vec<Value> = st
        .users
        .iter()
        .filter(|(_, email)| email.to_lowercase().contains(&query))
        .map(|(id, email)| json!({"id": id, "email": email, "name": email}))
        .collect();
    Json(json!({"total": users.len(), "users": users}))
}

async fn knowledge_files(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let st = s.lock().unwrap();
    if !st.is_012() {
        return Html("<!doctype html><html></html>").into_response();
    }
    let Some(k) = st.knowledge.iter().find(|k| k.id == id) else {
        return detail(StatusCode::BAD_REQUEST, NOT_FOUND);
    };
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    // `directory_id` scopes the list to one directory (`''`: the top).
    let scope: Option<Option<&str>> = q
        .get("directory_id")
        .map(|d| (!d.is_empty()).then_some(d.as_str()));
    // `query` keeps the files whose name holds it (SQL `ILIKE '%q%'`).
    let query = q.get("query").map(|x| x.to_lowercase());
    let in_scope: Vec<&String> = k
        .files
        .iter()
        .filter(|f| scope.is_none_or(|d| k.file_dirs.get(*f).map(String::as_str) == d))
        .filter(|f| {
            query.as_ref().is_none_or(|q| {
                st.files
                    .get(*f)
                    .is_some_and(|x| x.name.to_lowercase().contains(q))
            })
        })
        .collect();
    let items: Vec<Value> = in_scope
        .iter()
        .skip((page - 1) * 30)
        .take(30)
        .filter_map(|f| {
            let mut v = file_json(st.files.get(*f)?);
            let dir = k.file_dirs.get(*f);
            v["directory_id"] = json!(dir);
            v["directory_path"] = json!(dir.map(|d| k.dir_path(d)).unwrap_or_default());
            Some(v)
        })
        .collect();
    let parent = scope.flatten();
    let directories: Vec<Value> = k
        .dirs
        .iter()
        .filter(|d| d.parent.as_deref() == parent)
        .map(|d| json!({"id": d.id, "knowledge_id": k.id, "parent_id": d.parent, "name": d.name, "user_id": "u1", "created_at": 0, "updated_at": 0}))
        .collect();
    Json(json!({"items": items, "directories": directories, "breadcrumbs": [], "total": in_scope.len()}))
        .into_response()
}

fn dir_json(kb: &str, d: &StoredDir) -> Value {
    json!({"id": d.id, "knowledge_id": kb, "parent_id": d.parent, "name": d.name,
           "user_id": "u1", "created_at": 0, "updated_at": 0})
}

async fn create_dir(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    let dir_id = st.id("dir");
    let Some(k) = st.knowledge.iter_mut().find(|k| k.id == id) else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let parent = body["parent_id"].as_str().map(str::to_string);
    let name = body["name"].as_str().unwrap_or_default().to_string();
    if !k.has_dir(parent.as_deref()) {
        return detail(StatusCode::NOT_FOUND, "Parent directory not found.");
    }
    if k.dirs.iter().any(|d| d.parent == parent && d.name == name) {
        return detail(
            StatusCode::BAD_REQUEST,
            "Failed to create directory. A directory with this name may already exist at this level.",
        );
    }
    let d = StoredDir {
        id: dir_id,
        parent,
        name,
    };
    let answer = dir_json(&id, &d);
    k.dirs.push(d);
    Json(answer).into_response()
}

async fn update_dir(
    State(s): State<Shared>,
    Path((id, dir)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    let Some(k) = st.knowledge.iter_mut().find(|k| k.id == id) else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    if !k.has_dir(Some(&dir)) {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    let current = k.dirs.iter().find(|d| d.id == dir).cloned().unwrap();
    let name = body["name"]
        .as_str()
        .map_or(current.name.clone(), str::to_string);
    let parent = match &body["parent_id"] {
        Value::String(p) if p == "__unset__" => current.parent.clone(),
        Value::String(p) => Some(p.clone()),
        Value::Null if body.get("parent_id").is_some() => None,
        _ => current.parent.clone(),
    };
    if !k.has_dir(parent.as_deref())
        || k.dirs
            .iter()
            .any(|d| d.id != dir && d.parent == parent && d.name == name)
    {
        return detail(
            StatusCode::BAD_REQUEST,
            "Failed to update directory. This may be caused by a naming conflict or circular move.",
        );
    }
    let d = k.dirs.iter_mut().find(|d| d.id == dir).unwrap();
    d.name = name;
    d.parent = parent;
    let answer = dir_json(&id, d);
    Json(answer).into_response()
}

async fn delete_dir(State(s): State<Shared>, Path((id, dir)): Path<(String, String)>) -> Response {
    let mut st = s.lock().unwrap();
    let Some(k) = st.knowledge.iter_mut().find(|k| k.id == id) else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let Some(gone) = k.dirs.iter().find(|d| d.id == dir).cloned() else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    // Files move up; subdirectories go (the real table cascades), their
    // files to the top.
    let mut doomed = vec![dir.clone()];
    let mut i = 0;
    while i < doomed.len() {
        let under: Vec<String> = k
            .dirs
            .iter()
            .filter(|d| d.parent.as_deref() == Some(doomed[i].as_str()))
            .map(|d| d.id.clone())
            .collect();
        doomed.extend(under);
        i += 1;
    }
    k.file_dirs.retain(|_, d| !doomed[1..].contains(d));
    for d in k.file_dirs.values_mut() {
        if *d == dir {
            match &gone.parent {
                Some(p) => *d = p.clone(),
                None => d.clear(),
            }
        }
    }
    k.file_dirs.retain(|_, d| !d.is_empty());
    k.dirs.retain(|d| !doomed.contains(&d.id));
    Json(json!({"status": true, "file_ids": []})).into_response()
}

async fn move_file(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    let Some(k) = st.knowledge.iter_mut().find(|k| k.id == id) else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let file_id = body["file_id"].as_str().unwrap_or_default().to_string();
    let target = body["directory_id"].as_str().map(str::to_string);
    if !k.files.contains(&file_id) {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    if !k.has_dir(target.as_deref()) {
        return detail(StatusCode::NOT_FOUND, "Target directory not found.");
    }
    match target {
        Some(d) => k.file_dirs.insert(file_id, d),
        None => k.file_dirs.remove(&file_id),
    };
    Json(json!({"status": true})).into_response()
}

async fn add_file(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    let file_id = body["file_id"].as_str().unwrap_or_default().to_string();
    let is_012 = st.is_012();
    let Some(f) = st.files.get(&file_id).cloned() else {
        return detail(StatusCode::BAD_REQUEST, NOT_FOUND);
    };
    let files = st.files.clone();
    let Some(k) = st.knowledge.iter_mut().find(|k| k.id == id) else {
        return detail(StatusCode::BAD_REQUEST, NOT_FOUND);
    };
    if k.files.contains(&file_id) {
        return if is_012 {
            Json(json!({"id": id})).into_response()
        } else {
            detail(StatusCode::BAD_REQUEST, "[ERROR: file_id]")
        };
    }
    if k.refuses(&files, &f) {
        if let Some(f) = st.files.get_mut(&file_id) {
            f.status = "failed".into();
            f.error = Some(DUPLICATE.into());
        }
        return detail(StatusCode::BAD_REQUEST, &format!("400: {DUPLICATE}"));
    }
    if is_012 {
        k.link(&file_id, body["directory_id"].as_str());
        return Json(json!({"id": id})).into_response();
    }
    // 0.6 rewrites the whole `data.file_ids` list after processing, with no
    // lock: a concurrent add in between is lost. Imitated faithfully.
    let mut list = k.files.clone();
    drop(st);
    std::thread::sleep(Duration::from_millis(20));
    list.push(file_id);
    let mut st = s.lock().unwrap();
    if let Some(k) = st.knowledge.iter_mut().find(|k| k.id == id) {
        k.files = list;
    }
    Json(json!({"id": id})).into_response()
}

/// `POST /knowledge/{id}/files/batch/add` (0.12): links every file it can
/// and names each refused one in `warnings.errors`; an unknown file fails
/// the whole batch. The answer lists every file of the knowledge base.
async fn add_files_batch(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Vec<Value>>,
) -> Response {
    let mut st = s.lock().unwrap();
    let files = st.files.clone();
    for item in &body {
        if !files.contains_key(item["file_id"].as_str().unwrap_or_default()) {
            return detail(StatusCode::BAD_REQUEST, "File not found");
        }
    }
    let Some(k) = st.knowledge.iter_mut().find(|k| k.id == id) else {
        return detail(StatusCode::BAD_REQUEST, NOT_FOUND);
    };
    let mut errors = Vec::new();
    for item in &body {
        let file_id = item["file_id"].as_str().unwrap_or_default().to_string();
        if k.files.contains(&file_id) {
            continue;
        }
        if k.refuses(&files, &files[&file_id]) {
            errors.push(format!("{file_id}: {DUPLICATE}"));
            continue;
        }
        k.link(&file_id, item["directory_id"].as_str());
    }
    let listed: Vec<Value> = k.files.iter().map(|f| json!({"id": f})).collect();
    let mut answer = json!({"id": id, "files": listed});
    if !errors.is_empty() {
        answer["warnings"] = json!({"message": "Some files failed to process", "errors": errors});
    }
    Json(answer).into_response()
}

async fn remove_file(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let mut st = s.lock().unwrap();
    let file_id = body["file_id"].as_str().unwrap_or_default().to_string();
    let Some(k) = st.knowledge.iter_mut().find(|k| k.id == id) else {
        return detail(StatusCode::BAD_REQUEST, NOT_FOUND);
    };
    k.files.retain(|f| f != &file_id);
    k.file_dirs.remove(&file_id);
    if q.get("delete_file").is_none_or(|v| v == "true") {
        st.files.remove(&file_id);
    }
    Json(json!({"id": id})).into_response()
}

async fn delete_knowledge(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let mut st = s.lock().unwrap();
    let before = st.knowledge.len();
    st.knowledge.retain(|k| k.id != id);
    if st.knowledge.len() == before {
        return detail(StatusCode::BAD_REQUEST, NOT_FOUND);
    }
    Json(json!(true)).into_response()
}

async fn chat(State(s): State<Shared>, Json(body): Json<Value>) -> Response {
    let delay = {
        let mut st = s.lock().unwrap();
        st.chats_running += 1;
        st.chats_running_max = st.chats_running_max.max(st.chats_running);
        st.chat_delay
    };
    tokio::time::sleep(delay).await;
    let response = chat_answer(&s, body);
    s.lock().unwrap().chats_running -= 1;
    response
}

fn chat_answer(s: &Shared, body: Value) -> Response {
    s.lock().unwrap().completions.push(body.clone());
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if model != "fake-model" {
        return detail(StatusCode::BAD_REQUEST, "Model not found");
    }
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let mut context = String::new();
    if let Some(files) = body["files"].as_array() {
        let st = s.lock().unwrap();
        for f in files {
            if let Some(k) = st
                .knowledge
                .iter()
                .find(|k| Some(k.id.as_str()) == f["id"].as_str())
            {
                for id in &k.files {
                    if let Some(file) = st.files.get(id) {
                        context.push_str(&String::from_utf8_lossy(&file.content));
                        context.push('\n');
                    }
                }
            }
        }
    }
    let answer = format!("ECHO: {context}{prompt}");
    if body["stream"] != true {
        return Json(json!({"id": "c1", "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
                           "usage": {"total_tokens": 1}, "sources": []}))
        .into_response();
    }
    let mut events = vec![format!("data: {}\n\n", json!({"sources": []}))];
    for piece in answer.as_bytes().chunks(8) {
        let piece = String::from_utf8_lossy(piece);
        events.push(format!(
            "data: {}\n\n",
            json!({"id": "c1", "model": model, "choices": [{"index": 0, "delta": {"content": piece}}]})
        ));
    }
    events.push("data: [DONE]\n\n".into());
    let stream = futures_util::stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, std::io::Error>(Bytes::from(e))),
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(stream))
        .expect("response")
}

async fn new_chat(State(s): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    let mut st = s.lock().unwrap();
    let id = st.id("chat");
    let chat = json!({"id": id, "title": body["chat"]["title"], "chat": body["chat"], "updated_at": 0, "created_at": 0});
    st.chats.push(chat.clone());
    Json(chat)
}

async fn list_chats(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let st = s.lock().unwrap();
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    Json(Value::Array(
        st.chats
            .iter()
            .rev()
            .skip((page - 1) * 60)
            .take(60)
            .map(|c| json!({"id": c["id"], "title": c["title"], "updated_at": 0, "created_at": 0}))
            .collect(),
    ))
}

/// Ollama's pull progress, as Open WebUI relays it: NDJSON.
async fn pull(Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or_default();
    let lines: Vec<Value> = if model == "missing" {
        vec![
            json!({"status": "pulling manifest"}),
            json!({"error": "pull model manifest: file does not exist"}),
        ]
    } else {
        vec![
            json!({"status": "pulling manifest"}),
            json!({"status": "downloading", "completed": 50, "total": 100}),
            json!({"status": "downloading", "completed": 100, "total": 100}),
            json!({"status": "success"}),
        ]
    };
    let stream = futures_util::stream::iter(
        lines
            .into_iter()
            .map(|l| Ok::<_, std::io::Error>(Bytes::from(format!("{l}\n")))),
    );
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .expect("response")
}
