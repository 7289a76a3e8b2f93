//! Knowledge bases: find, create, list and change their files.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::*;
use super::*;

impl Client {
    /// Every knowledge base the account can see (paginated in 0.12, a plain
    /// list in 0.6).
    pub async fn knowledge_bases(&self) -> Result<Vec<Knowledge>, Error> {
        self.all_pages(|page| format!("/api/v1/knowledge/?page={page}"))
            .await
    }

    /// Pages 1, 2, … of a list answered as `{items, total}` (0.12), or the
    /// whole list at once as a plain array (0.6).
    ///
    /// 0.12 pages by offset over a list ordered by last change, so a file
    /// deleted or changed between two pages shifts the rest: one item is
    /// read twice or never. Ferry acts on absence (repair re-links, the
    /// sweep deletes), so a reading whose `total` moved, or that holds an
    /// id twice, is read again; after a few tries the last one stands (a
    /// list that never holds still is being changed by someone anyway).
    pub(super) async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        path_of: impl Fn(usize) -> String,
    ) -> Result<Vec<T>, Error> {
        const READINGS: usize = 4;
        let mut reading = 1;
        loop {
            let (items, steady) = self.pages_once(&path_of).await?;
            if steady || reading == READINGS {
                let path = path_of(1);
                if !steady {
                    tracing::debug!(%path, "list still changing after {READINGS} readings");
                }
                return parse_list(&Value::Array(items), &path, "");
            }
            reading += 1;
        }
    }

    /// One reading of every page, and whether it is whole: one answer, or
    /// pages that agree on `total` and name no id twice.
    async fn pages_once(
        &self,
        path_of: &impl Fn(usize) -> String,
    ) -> Result<(Vec<Value>, bool), Error> {
        let mut out: Vec<Value> = Vec::new();
        let mut first_total = None;
        for page in 1.. {
            let path = path_of(page);
            let v = self.get(&path).await?;
            if let Value::Array(items) = v {
                return Ok((items, true));
            }
            let items: Vec<Value> = parse_list(&v, &path, "items")?;
            let total = v.get("total").and_then(Value::as_u64).unwrap_or(0) as usize;
            let moved = *first_total.get_or_insert(total) != total;
            let empty = items.is_empty();
            out.extend(items);
            if moved {
                return Ok((out, false));
            }
            if empty || out.len() >= total {
                break;
            }
        }
        let mut seen = std::collections::HashSet::new();
        let once = out
            .iter()
            .filter_map(|i| i.get("id").and_then(Value::as_str))
            .all(|id| seen.insert(id));
        Ok((out, once))
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

    /// Creates a knowledge base shared as `sharing` (nobody else when it
    /// is empty, on every version: 0.6 would otherwise make it public).
    pub async fn create_knowledge(
        &self,
        name: &str,
        description: &str,
        sharing: &Sharing,
    ) -> Result<Knowledge, Error> {
        let path = "/api/v1/knowledge/create";
        let body = if self.version().await?.has_access_grants() {
            json!({"name": name, "description": description, "access_grants": sharing.grants()})
        } else {
            json!({"name": name, "description": description, "access_control": sharing.access_control()})
        };
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

    /// A knowledge base's description and sharing as the server holds them.
    pub async fn knowledge_settings(&self, id: &str) -> Result<(Knowledge, Sharing), Error> {
        let path = format!("/api/v1/knowledge/{id}");
        let v = self.get(&path).await?;
        let grants = self.version().await?.has_access_grants();
        let sharing = Sharing::of_knowledge(&v, grants);
        let k = serde_json::from_value(v).map_err(|e| unexpected(&path, e))?;
        Ok((k, sharing))
    }

    /// Sets a knowledge base's description (re-embedded for search).
    pub async fn set_knowledge_description(
        &self,
        id: &str,
        name: &str,
        description: &str,
    ) -> Result<(), Error> {
        if !self.version().await?.has_access_grants() {
            return self.update_knowledge_06(id, Some(description), None).await;
        }
        let path = format!("/api/v1/knowledge/{id}/update");
        let body = json!({"name": name, "description": description});
        self.json_ignored(Method::POST, &path, Repeat::Safe, |r| Ok(r.json(&body)))
            .await
    }

    /// Replaces who may see a knowledge base.
    pub async fn set_knowledge_sharing(&self, id: &str, sharing: &Sharing) -> Result<(), Error> {
        if !self.version().await?.has_access_grants() {
            return self.update_knowledge_06(id, None, Some(sharing)).await;
        }
        let path = format!("/api/v1/knowledge/{id}/access/update");
        let body = json!({"access_grants": sharing.grants()});
        self.json_ignored(Method::POST, &path, Repeat::Safe, |r| Ok(r.json(&body)))
            .await
    }

    /// 0.6's one update call writes every column, `data` (its list of
    /// linked files) included: the row is read under the knowledge base's
    /// lock and sent back with only the description or the sharing
    /// changed, or the files linked so far would be lost.
    async fn update_knowledge_06(
        &self,
        id: &str,
        description: Option<&str>,
        sharing: Option<&Sharing>,
    ) -> Result<(), Error> {
        let _serialised = self.knowledge_guard(id).await?;
        let path = format!("/api/v1/knowledge/{id}");
        let current = self.get(&path).await?;
        let field = |k: &str| current.get(k).cloned().unwrap_or(Value::Null);
        let body = json!({
            "name": field("name"),
            "description": description.map_or_else(|| field("description"), |d| json!(d)),
            "data": field("data"),
            "access_control": sharing.map_or_else(|| field("access_control"), Sharing::access_control),
        });
        let path = format!("/api/v1/knowledge/{id}/update");
        self.json_ignored(Method::POST, &path, Repeat::Safe, |r| Ok(r.json(&body)))
            .await
    }

    /// Every group (an admin sees them all).
    pub async fn groups(&self) -> Result<Vec<Group>, Error> {
        let path = "/api/v1/groups/";
        let v = self.get(path).await?;
        parse_list(&v, path, "")
    }

    /// The id of the user with this email (case-insensitive), if any.
    pub async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, Error> {
        let query: String = url::form_urlencoded::byte_serialize(email.as_bytes()).collect();
        let path = format!("/api/v1/users/?query={query}");
        let v = self.get(&path).await?;
        let users: Vec<Value> = parse_list(&v, &path, "users")?;
        Ok(users.into_iter().find_map(|u| {
            let matches = u["email"]
                .as_str()
                .is_some_and(|e| e.eq_ignore_ascii_case(email));
            matches
                .then(|| u["id"].as_str().map(str::to_string))
                .flatten()
        }))
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

    /// Whether the knowledge base lists this file (looked up by its name,
    /// which the server matches as a substring, so by id in the answer).
    /// 0.12 only; `false` where the server has no file listing.
    pub async fn knowledge_lists(
        &self,
        id: &str,
        file_id: &str,
        name: &str,
    ) -> Result<bool, Error> {
        if !self.version().await?.has_knowledge_files_endpoint() {
            return Ok(false);
        }
        let query: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let files: Vec<KnowledgeFile> = self
            .all_pages(|page| {
                format!(
                    "/api/v1/knowledge/{id}/files?query={query}&page={page}&limit={KNOWLEDGE_PAGE}"
                )
            })
            .await?;
        Ok(files.iter().any(|f| f.id == file_id))
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
        self.add_file_in(knowledge_id, file_id, None).await
    }

    /// [`Client::add_file`] into a directory (0.9.6+).
    pub async fn add_file_in(
        &self,
        knowledge_id: &str,
        file_id: &str,
        directory_id: Option<&str>,
    ) -> Result<(), Error> {
        let path = format!("/api/v1/knowledge/{knowledge_id}/file/add");
        let mut body = json!({"file_id": file_id});
        if let Some(d) = directory_id {
            body["directory_id"] = d.into();
        }
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

    /// The directories directly under `parent` (`None`: the top) of a
    /// knowledge base, and how many files are directly in it (0.9.6+).
    pub async fn directories(
        &self,
        knowledge_id: &str,
        parent: Option<&str>,
    ) -> Result<(Vec<Directory>, u64), Error> {
        let path = format!(
            "/api/v1/knowledge/{knowledge_id}/files?directory_id={}&limit=1",
            parent.unwrap_or("")
        );
        let v = self.get(&path).await?;
        let dirs = parse_list(&v, &path, "directories")?;
        let files = v.get("total").and_then(Value::as_u64).unwrap_or(0);
        Ok((dirs, files))
    }

    /// Makes a directory. A name already taken at that level is refused
    /// (400): the caller looks it up with [`Client::directories`].
    pub async fn create_directory(
        &self,
        knowledge_id: &str,
        name: &str,
        parent: Option<&str>,
    ) -> Result<Directory, Error> {
        let path = format!("/api/v1/knowledge/{knowledge_id}/dirs/create");
        let body = json!({"name": name, "parent_id": parent});
        let v = self
            .json(Method::POST, &path, Repeat::OnlyIfUnprocessed, |r| {
                Ok(r.json(&body))
            })
            .await?;
        serde_json::from_value(v).map_err(|e| unexpected(&path, e))
    }

    /// Renames and re-parents a directory; its files keep their ids and
    /// embeddings.
    pub async fn update_directory(
        &self,
        knowledge_id: &str,
        directory_id: &str,
        name: &str,
        parent: Option<&str>,
    ) -> Result<(), Error> {
        let path = format!("/api/v1/knowledge/{knowledge_id}/dirs/{directory_id}/update");
        let body = json!({"name": name, "parent_id": parent});
        self.json_ignored(Method::POST, &path, Repeat::Safe, |r| Ok(r.json(&body)))
            .await
    }

    /// Deletes an (empty) directory; anything in it would move up.
    pub async fn delete_directory(
        &self,
        knowledge_id: &str,
        directory_id: &str,
    ) -> Result<(), Error> {
        let path =
            format!("/api/v1/knowledge/{knowledge_id}/dirs/{directory_id}/delete?move_files=true");
        self.json(Method::DELETE, &path, Repeat::Safe, Ok)
            .await
            .map(|_| ())
    }

    /// Moves a linked file into a directory (`None`: the top), keeping its
    /// id and embedding.
    pub async fn move_file(
        &self,
        knowledge_id: &str,
        file_id: &str,
        directory_id: Option<&str>,
    ) -> Result<(), Error> {
        let path = format!("/api/v1/knowledge/{knowledge_id}/file/move");
        let body = json!({"file_id": file_id, "directory_id": directory_id});
        self.json_ignored(Method::POST, &path, Repeat::Safe, |r| Ok(r.json(&body)))
            .await
    }
}
