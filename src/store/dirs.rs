//! The collection directories that mirror watched subfolders
//! (`knowledge_dirs`), by their path relative to the watched root.

use rusqlite::params;

use super::sql::{Conn, Sql as _};
use super::{Store, StoreError};

/// A directory ferry knows in a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDir {
    /// Relative to the watched root, `/`-separated.
    pub path: String,
    pub dir_id: String,
    pub owned: bool,
}

/// The directory `?2` of collection `?1` and everything under it.
const AT_OR_UNDER: &str =
    "collection_id = ?1 AND (path = ?2 OR substr(path, 1, length(?2) + 1) = ?2 || '/')";

impl Store {
    pub async fn dir_id(
        &self,
        collection_id: &str,
        path: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.reader().await?.opt(
            "SELECT dir_id FROM knowledge_dirs WHERE collection_id = ? AND path = ?",
            params![collection_id, path],
        )?)
    }

    /// Every directory known in a collection, deepest first.
    pub async fn known_dirs(&self, collection_id: &str) -> Result<Vec<KnownDir>, StoreError> {
        let rows: Vec<(String, String, bool)> = self.reader().await?.all(
            "SELECT path, dir_id, owned FROM knowledge_dirs WHERE collection_id = ?
             ORDER BY length(path) - length(replace(path, '/', '')) DESC, path",
            params![collection_id],
            super::sql::tuple,
        )?;
        Ok(rows
            .into_iter()
            .map(|(path, dir_id, owned)| KnownDir {
                path,
                dir_id,
                owned,
            })
            .collect())
    }

    pub async fn remember_dir(
        &self,
        collection_id: &str,
        path: &str,
        dir_id: &str,
        owned: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (collection_id, path, dir_id) =
            (collection_id.to_owned(), path.to_owned(), dir_id.to_owned());
        self.write(move |tx| {

                tx.exec(
                    "INSERT INTO knowledge_dirs (collection_id, path, dir_id, owned, created_at)
                     VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (collection_id, path) DO UPDATE SET dir_id = excluded.dir_id, owned = excluded.owned",
                params![&collection_id, &path, &dir_id, owned, now_ms])?;
                Ok(())

        })
        .await
    }

    /// A directory and everything under it now stand for `to` (a renamed
    /// folder).
    pub async fn rename_dirs(
        &self,
        collection_id: &str,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        let (collection_id, from, to) = (collection_id.to_owned(), from.to_owned(), to.to_owned());
        self.write(move |tx| {

                // Anything already recorded under the new name is stale.
                delete_at_or_under(tx, &collection_id, &to)?;
                tx.exec(&format!(
                    "UPDATE knowledge_dirs SET path = ?3 || substr(path, length(?2) + 1) WHERE {AT_OR_UNDER}"
                ), params![&collection_id, &from, &to])?;
                Ok(())

        })
        .await
    }

    /// Forgets one directory (deleted, or gone in Open WebUI) and, since
    /// Open WebUI deletes a directory's subdirectories with it, those too.
    pub async fn forget_dir(&self, collection_id: &str, path: &str) -> Result<(), StoreError> {
        let (collection_id, path) = (collection_id.to_owned(), path.to_owned());
        self.write(move |tx| delete_at_or_under(tx, &collection_id, &path))
            .await
    }
}

fn delete_at_or_under(tx: &Conn, collection_id: &str, path: &str) -> Result<(), StoreError> {
    tx.exec(
        &format!("DELETE FROM knowledge_dirs WHERE {AT_OR_UNDER}"),
        params![collection_id, path],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_renamed_directory_takes_its_subdirectories_along() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        for (p, id) in [("a", "1"), ("a/x", "2"), ("ab", "3"), ("b", "9")] {
            store.remember_dir("kb", p, id, true, 1).await.unwrap();
        }
        store.rename_dirs("kb", "a", "b").await.unwrap();
        let known: Vec<(String, String)> = store
            .known_dirs("kb")
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.path, d.dir_id))
            .collect();
        assert_eq!(
            known,
            [("b/x", "2"), ("ab", "3"), ("b", "1")].map(|(p, i)| (p.to_string(), i.to_string()))
        );
        store.forget_dir("kb", "b").await.unwrap();
        let left: Vec<String> = store
            .known_dirs("kb")
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(left, ["ab"]);
    }
}
