//! Server-level calls: version, identity, models, model pulls.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::*;
use super::*;
use crate::config::Auth;

impl Client {
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
}
