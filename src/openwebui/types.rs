//! The parts of Open WebUI's JSON that ferry reads. Lenient on purpose:
//! unknown fields are ignored and most fields are optional, because the
//! shapes differ between 0.6 and 0.12.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub text: String,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        Some(Version {
            major: parts.next()??,
            minor: parts.next().flatten().unwrap_or(0),
            patch: parts.next().flatten().unwrap_or(0),
            text: text.to_string(),
        })
    }

    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        (self.major, self.minor, self.patch) >= (major, minor, patch)
    }

    /// `GET /knowledge/{id}/files?page=` exists and `GET /knowledge/{id}`
    /// no longer embeds the files (0.6.42).
    pub fn has_knowledge_files_endpoint(&self) -> bool {
        self.at_least(0, 6, 42)
    }

    /// Adding a file a knowledge base already holds answers 200 (0.12; 0.6
    /// answers 400 "[ERROR: file_id]" after re-processing it).
    pub fn readd_is_idempotent(&self) -> bool {
        self.at_least(0, 7, 0)
    }

    /// Before 0.6.41 a knowledge base keeps its files as a JSON list in
    /// `data.file_ids`, rewritten by each add/remove without a lock:
    /// concurrent adds lose each other's files (seen on 0.6.40).
    pub fn knowledge_links_are_racy(&self) -> bool {
        !self.at_least(0, 6, 41)
    }

    /// Sharing is a list of `access_grants` (0.8); before, an
    /// `access_control` mapping where `null` means readable by everyone.
    pub fn has_access_grants(&self) -> bool {
        self.at_least(0, 8, 0)
    }

    /// Upload with `metadata.knowledge_id` links the file server-side.
    pub fn has_upload_auto_link(&self) -> bool {
        self.at_least(0, 9, 6)
    }

    /// Knowledge bases hold a tree of directories (`dirs/create`,
    /// `file/move`, `directory_id` on upload and in file lists).
    pub fn has_directories(&self) -> bool {
        self.at_least(0, 9, 6)
    }

    /// `completed` after an upload with `metadata.knowledge_id` means
    /// linked, too (0.12.4, "Accurate upload status"); before, a failed
    /// link could still end `completed`.
    pub fn upload_link_is_verified(&self) -> bool {
        self.at_least(0, 12, 4)
    }

    /// `files/batch/add` takes a directory per file and embeds the batch
    /// in one request (measured on 0.12.4; not relied on before).
    pub fn has_batch_link(&self) -> bool {
        self.at_least(0, 12, 4)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Model {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub owned_by: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Knowledge {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
}

impl Knowledge {
    /// A knowledge base over an external vector store (0.12): read-only,
    /// every write answers 400.
    pub fn is_external(&self) -> bool {
        self.meta
            .as_ref()
            .and_then(|m| m.get("source"))
            .and_then(serde_json::Value::as_str)
            == Some("external")
    }
}

/// Who may see and change a knowledge base besides its owner and the
/// admins, by Open WebUI ids. Write implies read (Open WebUI checks each
/// permission on its own, so both are sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sharing {
    pub public_read: bool,
    pub read: Principals,
    pub write: Principals,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principals {
    pub groups: std::collections::BTreeSet<String>,
    pub users: std::collections::BTreeSet<String>,
}

impl Sharing {
    /// Read as the server answers `GET /knowledge/{id}`.
    pub fn of_knowledge(v: &serde_json::Value, grants: bool) -> Sharing {
        let mut out = Sharing::default();
        if grants {
            for g in v["access_grants"].as_array().into_iter().flatten() {
                let (kind, id, permission) = (
                    g["principal_type"].as_str().unwrap_or_default(),
                    g["principal_id"].as_str().unwrap_or_default().to_string(),
                    g["permission"].as_str().unwrap_or_default(),
                );
                let to = match permission {
                    "read" => &mut out.read,
                    "write" => &mut out.write,
                    _ => continue,
                };
                match (kind, id.as_str()) {
                    ("user", "*") if permission == "read" => out.public_read = true,
                    ("user", _) => {
                        to.users.insert(id);
                    }
                    ("group", _) => {
                        to.groups.insert(id);
                    }
                    _ => {}
                }
            }
        } else {
            match &v["access_control"] {
                serde_json::Value::Null => out.public_read = true,
                ac => {
                    for (key, to) in [("read", &mut out.read), ("write", &mut out.write)] {
                        for (list, set) in
                            [("group_ids", &mut to.groups), ("user_ids", &mut to.users)]
                        {
                            set.extend(
                                ac[key][list]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|i| i.as_str().map(str::to_string)),
                            );
                        }
                    }
                }
            }
        }
        out
    }

    /// `access_grants` for 0.8 and later.
    pub fn grants(&self) -> serde_json::Value {
        let mut out = Vec::new();
        if self.public_read {
            out.push(serde_json::json!({"principal_type": "user", "principal_id": "*", "permission": "read"}));
        }
        for (permission, p) in [("read", &self.readers()), ("write", &self.write)] {
            for (kind, ids) in [("group", &p.groups), ("user", &p.users)] {
                for id in ids {
                    out.push(serde_json::json!({"principal_type": kind, "principal_id": id, "permission": permission}));
                }
            }
        }
        serde_json::Value::Array(out)
    }

    /// `access_control` before 0.8: `null` is readable by everyone (then
    /// only the owner and admins write: 0.6 has no way to say both).
    pub fn access_control(&self) -> serde_json::Value {
        if self.public_read {
            return serde_json::Value::Null;
        }
        let ids = |p: &Principals| serde_json::json!({"group_ids": p.groups, "user_ids": p.users});
        serde_json::json!({"read": ids(&self.readers()), "write": ids(&self.write)})
    }

    /// Those who may read: the readers and the writers.
    pub fn readers(&self) -> Principals {
        let mut r = self.read.clone();
        r.groups.extend(self.write.groups.iter().cloned());
        r.users.extend(self.write.users.iter().cloned());
        r
    }

    /// The same sharing, whether or not write was also listed as read.
    pub fn same_as(&self, other: &Sharing) -> bool {
        self.public_read == other.public_read
            && self.readers() == other.readers()
            && self.write == other.write
    }
}

/// A group, as `GET /groups/` lists it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Group {
    pub id: String,
    pub name: String,
}

/// A file as listed in a knowledge base.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct KnowledgeFile {
    pub id: String,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub meta: FileMeta,
    /// The directory it is in (0.9.6+); `None` at the top.
    #[serde(default)]
    pub directory_id: Option<String>,
}

/// A knowledge base's directory (0.9.6+).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Directory {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<String>,
}

impl KnowledgeFile {
    pub fn name(&self) -> &str {
        self.meta
            .name
            .as_deref()
            .or(self.filename.as_deref())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct FileMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub size: Option<i64>,
    /// SHA-256 of the raw bytes (0.9+; absent in 0.6).
    #[serde(default)]
    pub file_hash: Option<String>,
    /// The `metadata` given at upload.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FileInfo {
    pub id: String,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub data: Option<FileData>,
    #[serde(default)]
    pub meta: FileMeta,
    /// 0.5-style synchronous upload: processing error in the answer.
    #[serde(default)]
    pub error: Option<String>,
    /// When Open WebUI stored it (Unix seconds).
    #[serde(default)]
    pub created_at: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct FileData {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// The text the server extracted (absent from lists read with
    /// `content=false`).
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl ProcessingStatus {
    pub fn parse(s: &str) -> ProcessingStatus {
        match s {
            "completed" => ProcessingStatus::Completed,
            "failed" => ProcessingStatus::Failed,
            "processing" => ProcessingStatus::Processing,
            _ => ProcessingStatus::Pending,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatSummary {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub updated_at: Option<i64>,
    #[serde(default)]
    pub created_at: Option<i64>,
}

/// Who the credentials belong to, as far as the server tells.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
    pub auth: &'static str,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub system: Option<String>,
    pub prompt: String,
    /// Knowledge base ids attached for retrieval.
    pub collections: Vec<String>,
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl ChatRequest {
    pub fn body(&self, stream: bool) -> serde_json::Value {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(serde_json::json!({"role": "system", "content": system}));
        }
        messages.push(serde_json::json!({"role": "user", "content": self.prompt}));
        let mut body = self.options.clone();
        body.insert("model".into(), self.model.clone().into());
        body.insert("messages".into(), messages.into());
        body.insert("stream".into(), stream.into());
        if !self.collections.is_empty() {
            body.insert(
                "files".into(),
                self.collections
                    .iter()
                    .map(|id| serde_json::json!({"type": "collection", "id": id}))
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        serde_json::Value::Object(body)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatAnswer {
    pub content: String,
    pub model: Option<String>,
    pub sources: serde_json::Value,
    pub usage: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let v = Version::parse("0.6.40").unwrap();
        assert!(!v.has_knowledge_files_endpoint() && !v.readd_is_idempotent());
        assert!(v.knowledge_links_are_racy());
        let v = Version::parse("0.12.4").unwrap();
        assert!(
            v.has_knowledge_files_endpoint() && v.readd_is_idempotent() && v.has_upload_auto_link()
        );
        assert!(v.upload_link_is_verified());
        assert!(!Version::parse("0.12.3").unwrap().upload_link_is_verified());
        assert!(!v.knowledge_links_are_racy());
        assert!(
            Version::parse("0.6.42")
                .unwrap()
                .has_knowledge_files_endpoint()
        );
        assert!(Version::parse("v1.0.0-rc1").unwrap().at_least(0, 12, 4));
        assert!(Version::parse("nonsense").is_none());
    }

    #[test]
    fn chat_body() {
        let req = ChatRequest {
            model: "m".into(),
            system: Some("be brief".into()),
            prompt: "hi".into(),
            collections: vec!["kb1".into()],
            options: serde_json::json!({"temperature": 0.2})
                .as_object()
                .unwrap()
                .clone(),
        };
        let body = req.body(true);
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][1]["content"], "hi");
        assert_eq!(
            body["files"][0],
            serde_json::json!({"type": "collection", "id": "kb1"})
        );
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["stream"], true);
    }
}
