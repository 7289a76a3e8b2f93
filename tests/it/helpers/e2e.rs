//! The end-to-end tests' view of the real server under test (exported by
//! `scripts/e2e.sh`): plain HTTP calls, independent of ferry's client.

use serde_json::Value;

pub struct Server {
    pub url: String,
    pub version: String,
    pub api_key: String,
    pub email: String,
    pub password: String,
}

pub fn server() -> Server {
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} is not set: run these tests with scripts/e2e.sh"))
    };
    Server {
        url: var("FERRY_E2E_URL"),
        version: var("FERRY_E2E_VERSION"),
        api_key: var("FERRY_E2E_API_KEY"),
        email: var("FERRY_E2E_EMAIL"),
        password: var("FERRY_E2E_PASSWORD"),
    }
}

/// Plain calls to Open WebUI, independent of ferry's client.
pub struct Api<'a> {
    s: &'a Server,
    http: reqwest::Client,
}

impl<'a> Api<'a> {
    pub fn new(s: &'a Server) -> Self {
        Api {
            s,
            // Below uvicorn's 5 s keep-alive: a reused connection that the
            // server is closing fails mid-request.
            http: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(2))
                .build()
                .unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        self.try_get(path)
            .await
            .unwrap_or_else(|| panic!("GET {path}: 404 Not Found"))
    }

    /// Like [`Api::get`], `None` for a 404 (a file deleted meanwhile). The
    /// observer asks again on a 5xx: right after an outage (SIGCONT) Open
    /// WebUI answers a few with 500, and it is ferry under test, not it.
    pub async fn try_get(&self, path: &str) -> Option<Value> {
        let mut tries = 0;
        let r = loop {
            let r = self
                .http
                .get(format!("{}{path}", self.s.url))
                .bearer_auth(&self.s.api_key)
                .send()
                .await
                .unwrap();
            tries += 1;
            if !r.status().is_server_error() || tries == 10 {
                break r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        };
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        Some(
            r.json()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}")),
        )
    }

    pub async fn knowledge_id(&self, name: &str) -> String {
        let v = self.get("/api/v1/knowledge/").await;
        let items = v.get("items").unwrap_or(&v).as_array().unwrap().clone();
        let matches: Vec<&Value> = items.iter().filter(|k| k["name"] == name).collect();
        assert_eq!(matches.len(), 1, "exactly one knowledge base named {name}");
        matches[0]["id"].as_str().unwrap().to_string()
    }

    /// File names in the knowledge base, as Open WebUI lists them.
    pub async fn knowledge_file_names(&self, id: &str) -> Vec<String> {
        self.knowledge_files(id)
            .await
            .iter()
            .map(|f| {
                f["meta"]["name"]
                    .as_str()
                    .or(f["filename"].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// The files in the knowledge base, as Open WebUI lists them.
    pub async fn knowledge_files(&self, id: &str) -> Vec<Value> {
        if self.s.version.starts_with("0.6.") {
            let v = self.get(&format!("/api/v1/knowledge/{id}")).await;
            return v["files"].as_array().unwrap().clone();
        }
        let mut out = Vec::new();
        for page in 1.. {
            let v = self
                // One page for an admin (the e2e key is one): pages read one
                // after the other shift when files are added or removed in
                // between, and an item can be skipped.
                .get(&format!(
                    "/api/v1/knowledge/{id}/files?page={page}&limit=100000"
                ))
                .await;
            let items = v["items"].as_array().unwrap();
            out.extend(items.iter().cloned());
            if items.is_empty() || out.len() >= v["total"].as_u64().unwrap() as usize {
                break;
            }
        }
        out
    }

    /// Uploads and links a file the way a person in the UI would.
    pub async fn upload_by_hand(&self, kb: &str, name: &str, content: &str) -> String {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(content.as_bytes().to_vec())
                .file_name(name.to_string())
                .mime_str("text/markdown")
                .unwrap(),
        );
        let r = self
            .http
            .post(format!("{}/api/v1/files/", self.s.url))
            .bearer_auth(&self.s.api_key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "upload: {}", r.status());
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        for _ in 0..200 {
            let st = self
                .get(&format!("/api/v1/files/{id}/process/status"))
                .await;
            if st["status"] == "completed" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let r = self
            .http
            .post(format!("{}/api/v1/knowledge/{kb}/file/add", self.s.url))
            .bearer_auth(&self.s.api_key)
            .json(&serde_json::json!({"file_id": id}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "add: {}", r.status());
        id
    }

    /// One reading of the file list, page by page.
    async fn files_once(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 1.. {
            let v = self
                .get(&format!("/api/v1/files/?page={page}&content=false"))
                .await;
            match v.get("items") {
                Some(items) => {
                    let items = items.as_array().unwrap();
                    out.extend(items.iter().cloned());
                    if items.is_empty() || out.len() >= v["total"].as_u64().unwrap() as usize {
                        break;
                    }
                }
                None => return v.as_array().unwrap().clone(),
            }
        }
        out
    }
}

/// The instance id of a ferry state database: the marker its uploads carry
/// in Open WebUI (`meta.data.ferry`). Tests count uploads by it, so tests
/// running side by side on one account do not see each other's files.
pub async fn instance_of(database: &std::path::Path) -> String {
    ferry::store::Store::open(database)
        .await
        .unwrap()
        .instance_id()
        .await
        .unwrap()
}

impl Api<'_> {
    /// The files in Open WebUI that this ferry instance uploaded.
    pub async fn uploads_of(&self, instance: &str) -> usize {
        self.upload_ids_of(instance).await.len()
    }

    /// The ids of the files in Open WebUI that `instance` uploaded.
    pub async fn upload_ids_of(&self, instance: &str) -> std::collections::BTreeSet<String> {
        // 0.12 pages by `updated_at` with an offset, so a file deleted or
        // updated while the pages are read shifts the rest and one goes
        // unseen (a CI run once missed two that way). A reading counts only
        // when the next one names the same files (other tests' churn on the
        // shared account does not matter: only this instance's files count).
        let mine = async || -> std::collections::BTreeSet<String> {
            self.files_once()
                .await
                .iter()
                .filter(|f| f["meta"]["data"]["ferry"] == instance)
                .filter_map(|f| f["id"].as_str().map(str::to_string))
                .collect()
        };
        let mut last = mine().await;
        for _ in 0..50 {
            let next = mine().await;
            if next == last {
                return next;
            }
            last = next;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        // Still uploading: the newest reading is as good as any.
        last
    }
}
