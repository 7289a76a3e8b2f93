//! Files: upload, wait until processed, delete.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use std::time::Instant;

use reqwest::header::CONTENT_TYPE;

use super::client::*;
use super::*;

/// What an upload sends.
#[derive(Clone, Copy)]
pub enum Content<'a> {
    /// The first `length` bytes of an open file, read on the blocking pool.
    File {
        file: &'a std::fs::File,
        length: u64,
    },
    /// Bytes already read (a small file, read whole to be hashed).
    Bytes(&'a [u8]),
}

impl Content<'_> {
    /// How many bytes are sent.
    pub fn size(&self) -> u64 {
        match self {
            Content::File { length, .. } => *length,
            Content::Bytes(bytes) => bytes.len() as u64,
        }
    }
}

impl Client {
    /// Uploads `content` as `name` (see [`crate::paths::upload_name`]).
    /// Every attempt sends the same bytes: a file is read from its start
    /// through the same descriptor, never the path again. Processing runs
    /// in the background on the server; see [`Client::wait_processed`].
    /// `metadata` lands in the file's `meta.data` (ferry marks its uploads).
    pub async fn upload(
        &self,
        content: Content<'_>,
        name: &str,
        metadata: Option<&Value>,
    ) -> Result<FileInfo, Error> {
        use std::io::Seek as _;
        use tokio::io::AsyncReadExt as _;
        let api = "/api/v1/files/";
        let mime = mime_guess::from_path(name)
            .first_or_octet_stream()
            .to_string();
        // Decoded straight from the bytes: no `Value` tree built first.
        let info: FileInfo = self
            .json_as_in(
                Lane::Bulk,
                Method::POST,
                api,
                Repeat::OnlyIfUnprocessed,
                |r| {
                    let io = |source| Error::Io {
                        path: name.to_string(),
                        source,
                    };
                    let part = match content {
                        Content::File { file, length } => {
                            let mut file = file.try_clone().map_err(io)?;
                            file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
                            let reader = tokio::fs::File::from_std(file).take(length);
                            let stream = tokio_util::io::ReaderStream::new(reader);
                            reqwest::multipart::Part::stream_with_length(
                                reqwest::Body::wrap_stream(stream),
                                length,
                            )
                        }
                        Content::Bytes(bytes) => reqwest::multipart::Part::bytes(bytes.to_vec()),
                    };
                    let part = part
                        .file_name(name.to_string())
                        .mime_str(&mime)
                        .map_err(|e| Error::transport(api, &e))?;
                    let mut form = reqwest::multipart::Form::new().part("file", part);
                    if let Some(m) = metadata {
                        form = form.text("metadata", m.to_string());
                    }
                    Ok(r.multipart(form))
                },
            )
            .await?;
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
        // No quick looks before the stream, though it answers only once a
        // second: measured on 0.12.4 (200 files, two runs each), looks at
        // 0.1–1 s cost 6.0 ms of CPU per file against 5.2 and made 6.1–6.4
        // files/s against 6.6–6.8. The server, not the wait, is the limit.
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
            if let Some(verdict) = self.verdict(id).await? {
                return verdict;
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

    /// One look at the status: `Some` once processing ended (with Open
    /// WebUI's own reason for a failure).
    async fn verdict(&self, id: &str) -> Result<Option<Result<(), Error>>, Error> {
        Ok(match self.processing_status(id).await? {
            ProcessingStatus::Completed => Some(Ok(())),
            ProcessingStatus::Failed => {
                let detail = self
                    .file(id)
                    .await
                    .ok()
                    .and_then(|f| f.data.and_then(|d| d.error));
                Some(Err(processing_failed(id, detail)))
            }
            ProcessingStatus::Pending | ProcessingStatus::Processing => None,
        })
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
                            .map(str::to_string);
                        return Ok(Some(Err(processing_failed(id, detail))));
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

    /// [`Client::wait_processed`] for a server that lists files newest
    /// change first (0.12: `GET /files/?page=1`): one listing every
    /// [`BOARD_EVERY`] answers every upload waiting, instead of one status
    /// stream per file. Measured on 0.12.4: a stream costs the server
    /// 12 ms of CPU to open and more for each second it stays open (ferry
    /// cost it 184 ms per file against oikb's 151, streams the only
    /// difference); a listing costs 17 ms, whatever the number waiting.
    /// A file the first page does not show (more than a page of changes
    /// between two readings) gets a look of its own every
    /// [`BOARD_STRAGGLER`].
    pub async fn wait_processed_listed(&self, id: &str) -> Result<(), Error> {
        let limit = self.inner.processing_timeout;
        let receiver = {
            let mut board = self.inner.board.lock().expect("not poisoned");
            if board.waiting.contains_key(id) {
                None
            } else {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let now = Instant::now();
                board.waiting.insert(
                    id.to_string(),
                    Waiting {
                        tx,
                        began: now,
                        looked: now,
                    },
                );
                if !board.polling {
                    board.polling = true;
                    tokio::spawn(self.clone().read_board());
                }
                Some(rx)
            }
        };
        // A second wait for the same upload (not done by ferry) waits alone.
        let Some(receiver) = receiver else {
            return self.wait_processed(id).await;
        };
        let _gone = Unwait { client: self, id };
        match tokio::time::timeout(limit, receiver).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(_)) => self.wait_processed(id).await,
            Err(_) => Err(Error::Timeout {
                path: format!("/api/v1/files/{id}/process/status"),
                after: limit,
            }),
        }
    }

    /// The board's reader: runs while any upload waits. It reads each
    /// listing into ids and statuses only: the files' metadata, most of
    /// the answer, is skipped rather than built (the board reads twice a
    /// second for as long as a burst lasts).
    async fn read_board(self) {
        let path = "/api/v1/files/?page=1&content=false";
        loop {
            // Every slot taken: more uploads wait for one, a burst.
            let burst = self.inner.processing.available_permits() == 0;
            let every = self
                .inner
                .board
                .lock()
                .expect("not poisoned")
                .next_read(Instant::now(), burst);
            tokio::time::sleep(every).await;
            {
                // A wait that ended took itself off (`Unwait`).
                let mut board = self.inner.board.lock().expect("not poisoned");
                if board.waiting.is_empty() {
                    board.polling = false;
                    return;
                }
            }
            match self
                .json_as::<BoardPage, _>(Method::GET, path, Repeat::Safe, Ok)
                .await
            {
                Ok(BoardPage { items: files }) => {
                    for f in files {
                        let status = f.data.as_ref().and_then(|d| d.status.as_deref());
                        let verdict = match status.map(ProcessingStatus::parse) {
                            Some(ProcessingStatus::Completed) => Ok(()),
                            Some(ProcessingStatus::Failed) => {
                                Err(processing_failed(&f.id, f.data.and_then(|d| d.error)))
                            }
                            _ => continue,
                        };
                        self.answer(&f.id, verdict);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot read the file list; waiting on"),
            }
            let stragglers: Vec<String> = {
                let mut board = self.inner.board.lock().expect("not poisoned");
                let now = Instant::now();
                board
                    .waiting
                    .iter_mut()
                    .filter(|(_, w)| now.duration_since(w.looked) >= BOARD_STRAGGLER)
                    .map(|(id, w)| {
                        w.looked = now;
                        id.clone()
                    })
                    .collect()
            };
            for id in stragglers {
                match self.verdict(&id).await {
                    Ok(Some(verdict)) => self.answer(&id, verdict),
                    Ok(None) => {}
                    Err(e @ Error::NotFound { .. }) => self.answer(&id, Err(e)),
                    Err(e) => {
                        tracing::debug!(file_id = id, error = %e, "cannot look at an upload's status")
                    }
                }
            }
        }
    }

    fn answer(&self, id: &str, verdict: Result<(), Error>) {
        let waiting = self
            .inner
            .board
            .lock()
            .expect("not poisoned")
            .waiting
            .remove(id);
        if let Some(w) = waiting {
            let _ = w.tx.send(verdict);
        }
    }

    pub async fn delete_file(&self, id: &str) -> Result<(), Error> {
        let path = format!("/api/v1/files/{id}");
        match self.json(Method::DELETE, &path, Repeat::Safe, Ok).await {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// How often the board's reader lists the newest files (at most, and in
/// a burst), the soonest it reads again while few uploads wait, and how
/// long a waiting upload may go unseen before it gets a look of its own.
const BOARD_EVERY: Duration = Duration::from_millis(500);
const BOARD_BURST: Duration = Duration::from_millis(200);
const BOARD_SOON: Duration = Duration::from_millis(100);
const BOARD_STRAGGLER: Duration = Duration::from_secs(3);

/// Uploads waiting for their processing to end.
#[derive(Default)]
pub(super) struct Board {
    waiting: std::collections::HashMap<String, Waiting>,
    /// A reader task runs.
    polling: bool,
}

struct Waiting {
    tx: tokio::sync::oneshot::Sender<Result<(), Error>>,
    /// When it began to wait.
    began: Instant,
    /// Its last look of its own (or when it began to wait).
    looked: Instant,
}

impl Board {
    /// How long the reader sleeps before its next listing. In a `burst`
    /// (more uploads wait for a processing slot) every [`BOARD_BURST`]:
    /// each listing answers many uploads and frees their slots for the
    /// next; the server pays about 5 ms of CPU for one (11 with 1,000
    /// files; the burst's own uploads cost it 50–85 ms each). At every
    /// 500 ms the uploads went in waves, the server idle between them.
    /// Otherwise, at the end of a burst or for a lone file, a listing soon
    /// after an upload ends its wait sooner: half the youngest wait so
    /// far, from [`BOARD_SOON`] up to [`BOARD_EVERY`]. A small file is
    /// embedded in about 100 ms; at a fixed half second the last file of a
    /// burst of 200 was taken 0.95 s after its upload returned.
    fn next_read(&self, now: Instant, burst: bool) -> Duration {
        if burst {
            return BOARD_BURST;
        }
        self.waiting
            .values()
            .map(|w| now.saturating_duration_since(w.began) / 2)
            .min()
            .map_or(BOARD_EVERY, |d| d.clamp(BOARD_SOON, BOARD_EVERY))
    }
}

/// Takes a wait off the board however it ends (answered, timed out,
/// cancelled).
struct Unwait<'a> {
    client: &'a Client,
    id: &'a str,
}

impl Drop for Unwait<'_> {
    fn drop(&mut self) {
        if let Ok(mut board) = self.client.inner.board.lock() {
            board.waiting.remove(self.id);
        }
    }
}

/// A failed processing, with Open WebUI's reason when it gave one.
fn processing_failed(file_id: &str, reason: Option<String>) -> Error {
    let detail = reason.unwrap_or_else(|| "processing failed (Open WebUI gave no reason)".into());
    processing_error(file_id, detail)
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

/// What the board reads of a 0.12 listing (`{items, total}`).
#[derive(serde::Deserialize)]
struct BoardPage {
    #[serde(default)]
    items: Vec<BoardFile>,
}

#[derive(serde::Deserialize)]
struct BoardFile {
    id: String,
    #[serde(default)]
    data: Option<super::types::FileData>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board_with(began: &[Instant]) -> Board {
        let mut board = Board::default();
        for (i, &at) in began.iter().enumerate() {
            let (tx, _rx) = tokio::sync::oneshot::channel();
            board.waiting.insert(
                format!("f{i}"),
                Waiting {
                    tx,
                    began: at,
                    looked: at,
                },
            );
        }
        board
    }

    #[test]
    fn few_waiting_are_read_for_soon_after_their_upload_then_less_often() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let one = board_with(&[t0]);
        assert_eq!(one.next_read(t0, false), ms(100));
        assert_eq!(one.next_read(t0 + ms(150), false), ms(100));
        assert_eq!(one.next_read(t0 + ms(400), false), ms(200));
        assert_eq!(one.next_read(t0 + ms(2000), false), ms(500));
        // The youngest wait sets the pace.
        let two = board_with(&[t0, t0 + ms(900)]);
        assert_eq!(two.next_read(t0 + ms(1000), false), ms(100));
    }

    #[test]
    fn a_burst_is_read_at_the_burst_pace() {
        let t0 = Instant::now();
        assert_eq!(board_with(&[t0]).next_read(t0, true), BOARD_BURST);
        assert_eq!(board_with(&[]).next_read(t0, false), BOARD_EVERY);
    }
}
