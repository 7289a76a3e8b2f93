//! What can go wrong talking to Open WebUI, classified so callers can
//! branch, and the pure function that turns a response into that class.
//!
//! Open WebUI's status codes are not what a REST client expects (see
//! `openwebui-api.md` §9): 401 also means "not found" and "forbidden", an
//! unknown GET path answers 200 with the web app's HTML, "Duplicate content"
//! is a 400 whose text starts with "400: ". The classification lives here,
//! in one place, with tests for each trap.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The credentials were refused (token-type 401 only).
    #[error("{path}: not signed in: {detail}")]
    Unauthorized { path: String, detail: String },
    #[error("{path}: forbidden: {detail}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    Forbidden {
        path: String,
        detail: String,
        hint: Option<&'static str>,
    },
    #[error("{path}: not found: {detail}")]
    NotFound { path: String, detail: String },
    #[error("duplicate content: {detail}")]
    DuplicateContent { detail: String },
    #[error("empty content: {detail}")]
    EmptyContent { detail: String },
    #[error("file too large: {detail}")]
    TooLarge { detail: String },
    #[error("unsupported file: {detail}")]
    Unsupported { detail: String },
    #[error("{path}: rate limited{}: {detail}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs_f64().ceil())).unwrap_or_default())]
    RateLimited {
        path: String,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// Open WebUI does not know the model now. Its upstream (Ollama, an
    /// OpenAI-compatible server) may be down or still loading: the model
    /// can come back, so this is worth trying again later.
    #[error("{path}: model not found: {detail}")]
    ModelNotFound { path: String, detail: String },
    /// A 4xx that is none of the above: the request itself is wrong.
    #[error("{path}: refused with {status}: {detail}")]
    Rejected {
        path: String,
        status: u16,
        detail: String,
    },
    #[error("{path}: server error {status}: {detail}")]
    Server {
        path: String,
        status: u16,
        detail: String,
    },
    #[error("{path}: {message}")]
    Transport {
        path: String,
        message: String,
        connect: bool,
    },
    #[error("{path}: no answer within {}s", after.as_secs())]
    Timeout { path: String, after: Duration },
    #[error("{path}: {message}")]
    UnexpectedResponse { path: String, message: String },
    /// Open WebUI took the file but could not extract or embed it.
    #[error("processing failed: {detail}")]
    ProcessingFailed { file_id: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Every [`Error::class`], so the metric's series exist from the start.
pub const CLASSES: [&str; 16] = [
    "unauthorized",
    "forbidden",
    "not_found",
    "duplicate",
    "empty",
    "too_large",
    "unsupported",
    "rate_limited",
    "model_not_found",
    "rejected",
    "server",
    "transport",
    "timeout",
    "unexpected_response",
    "processing_failed",
    "io",
];

impl Error {
    /// A short name of the kind of failure (a metric label); one of
    /// [`CLASSES`].
    pub fn class(&self) -> &'static str {
        match self {
            Error::Unauthorized { .. } => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::NotFound { .. } => "not_found",
            Error::DuplicateContent { .. } => "duplicate",
            Error::EmptyContent { .. } => "empty",
            Error::TooLarge { .. } => "too_large",
            Error::Unsupported { .. } => "unsupported",
            Error::RateLimited { .. } => "rate_limited",
            Error::ModelNotFound { .. } => "model_not_found",
            Error::Rejected { .. } => "rejected",
            Error::Server { .. } => "server",
            Error::Transport { .. } => "transport",
            Error::Timeout { .. } => "timeout",
            Error::UnexpectedResponse { .. } => "unexpected_response",
            Error::ProcessingFailed { .. } => "processing_failed",
            Error::Io { .. } => "io",
        }
    }

    /// Worth another try of an idempotent call.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::RateLimited { .. } | Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::Server { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// Safe to repeat even for a call that is not idempotent: the server
    /// cannot have acted on the request.
    pub fn request_not_processed(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Transport { connect: true, .. }
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn transport(path: &str, e: &reqwest::Error) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        Error::Transport {
            path: path.to_string(),
            // reqwest names the whole URL, userinfo and query included.
            message: crate::redact::text(&message).into_owned(),
            connect: e.is_connect(),
        }
    }
}

/// The `detail` of an error body: `{"detail": "…"}`, `{"detail": [{msg…}]}`
/// (validation), `{"error": {"message": "…"}}` (upstream pass-through on
/// chat), or the raw text.
pub fn detail_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let detail = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => match (&v["detail"], &v["error"]) {
            (serde_json::Value::String(s), _) => s.clone(),
            (serde_json::Value::Array(items), _) => items
                .iter()
                .map(|i| {
                    let loc = i["loc"]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|p| p.to_string().replace('"', ""))
                                .collect::<Vec<_>>()
                                .join(".")
                        })
                        .unwrap_or_default();
                    format!("{loc}: {}", i["msg"].as_str().unwrap_or("invalid"))
                })
                .collect::<Vec<_>>()
                .join("; "),
            (_, serde_json::Value::Object(e)) => e
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| serde_json::Value::Object(e.clone()).to_string()),
            (_, serde_json::Value::String(s)) => s.clone(),
            _ => v.to_string(),
        },
        Err(_) => text.trim().to_string(),
    };
    one_line(&detail, 300)
}

/// Errors are printed on one line and never run to pages.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// `Retry-After` as seconds or an HTTP date, or `Retry-After-Ms`.
pub fn parse_retry_after(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).ok();
    }
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs.max(0.0)).ok();
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let when =
        std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(when.timestamp_millis()).ok()?);
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

// Open WebUI's ERROR_MESSAGES (constants.py) that decide the class.
const TOKEN_DETAILS: &[&str] = &[
    "Not authenticated",
    "401 Unauthorized",
    "Invalid token",
    "Your session has expired or the token is invalid",
];
const NOT_FOUND_DETAIL: &str = "We could not find what you're looking for";
const ACCESS_PROHIBITED: &str = "You do not have permission to access this resource";

/// Classifies a finished response. `Ok` carries the parsed JSON of a 2xx.
pub fn classify(
    path: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: std::time::SystemTime,
) -> Result<serde_json::Value, Error> {
    classify_as(path, status, headers, body, now)
}

/// [`classify`] into any shape: `serde::de::IgnoredAny` checks a success
/// without building it (a link's answer lists every file of the knowledge
/// base, so building it made linking N files cost O(N²)).
pub fn classify_as<T: serde::de::DeserializeOwned>(
    path: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: std::time::SystemTime,
) -> Result<T, Error> {
    let path = path.to_string();
    let is_json = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("+json"));
    if status.is_success() {
        if !is_json {
            let looks_html = body.iter().take(512).any(|b| *b == b'<');
            return Err(Error::UnexpectedResponse {
                message: if looks_html {
                    "answered with an HTML page, not JSON: this API path does not exist on this server \
                     (is the URL an Open WebUI, and is its version supported: 0.6.40 to 0.12.x?)"
                        .into()
                } else {
                    "answered without JSON".into()
                },
                path,
            });
        }
        return serde_json::from_slice(body).map_err(|e| Error::UnexpectedResponse {
            path,
            message: format!("invalid JSON: {e}"),
        });
    }
    let detail = detail_of(body);
    let lower = detail.to_lowercase();
    Err(match status.as_u16() {
        401 if TOKEN_DETAILS.iter().any(|t| detail.starts_with(t)) => {
            Error::Unauthorized { path, detail }
        }
        401 | 400 | 404 if detail.starts_with(NOT_FOUND_DETAIL) => Error::NotFound { path, detail },
        401 if detail.starts_with(ACCESS_PROHIBITED) => Error::Forbidden {
            path,
            detail,
            hint: Some("the account lacks the role or permission for this"),
        },
        401 => Error::Unauthorized { path, detail },
        403 => {
            let hint = if detail.contains("human session") {
                Some("Open WebUI 0.12 refuses API keys here; this call needs email + password")
            } else if detail.contains("API key") {
                Some(
                    "API keys are disabled or not permitted for this user: ENABLE_API_KEYS / USER_PERMISSIONS_FEATURES_API_KEYS",
                )
            } else if detail.starts_with(ACCESS_PROHIBITED) {
                Some(
                    "API key endpoint restrictions (API_KEYS_ALLOWED_ENDPOINTS) may exclude this path",
                )
            } else {
                None
            };
            Error::Forbidden { path, detail, hint }
        }
        404 => Error::NotFound { path, detail },
        413 => Error::TooLarge { detail },
        429 => Error::RateLimited {
            path,
            retry_after: parse_retry_after(headers, now),
            detail,
        },
        400 if lower.contains("duplicate content") => Error::DuplicateContent { detail },
        400 if lower.contains("content provided is empty") || lower.contains("empty content") => {
            Error::EmptyContent { detail }
        }
        400 if lower.contains("file type") && lower.contains("not allowed") => {
            Error::Unsupported { detail }
        }
        400 if lower.contains("too large") => Error::TooLarge { detail },
        400 if lower.contains("model not found") => Error::ModelNotFound { path, detail },
        500..=599 => Error::Server {
            path,
            status: status.as_u16(),
            detail,
        },
        s => Error::Rejected {
            path,
            status: s,
            detail,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{CONTENT_TYPE, HeaderValue};

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h
    }

    #[test]
    fn every_class_is_listed_once() {
        let mut classes = CLASSES.to_vec();
        classes.sort_unstable();
        classes.dedup();
        assert_eq!(classes.len(), CLASSES.len());
        for status in [401, 403, 404, 400, 413, 422, 429, 500, 502] {
            let class = err(status, r#"{"detail":"x"}"#).class();
            assert!(CLASSES.contains(&class), "{status}: {class}");
        }
    }

    fn err(status: u16, body: &str) -> Error {
        classify(
            "/p",
            StatusCode::from_u16(status).unwrap(),
            &json_headers(),
            body.as_bytes(),
            std::time::UNIX_EPOCH,
        )
        .unwrap_err()
    }

    #[test]
    fn html_200_is_an_error_that_names_the_path() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        let e = classify(
            "/api/v1/auths/verify",
            StatusCode::OK,
            &h,
            b"<!doctype html><html>",
            std::time::UNIX_EPOCH,
        )
        .unwrap_err();
        assert!(matches!(e, Error::UnexpectedResponse { .. }));
        let text = e.to_string();
        assert!(
            text.contains("/api/v1/auths/verify") && text.contains("HTML"),
            "{text}"
        );
    }

    #[test]
    fn the_three_kinds_of_401() {
        assert!(matches!(
            err(401, r#"{"detail":"401 Unauthorized"}"#),
            Error::Unauthorized { .. }
        ));
        assert!(matches!(
            err(401, r#"{"detail":"Not authenticated"}"#),
            Error::Unauthorized { .. }
        ));
        assert!(matches!(
            err(
                401,
                r#"{"detail":"Your session has expired or the token is invalid. Please sign in again."}"#
            ),
            Error::Unauthorized { .. }
        ));
        assert!(matches!(
            err(
                401,
                r#"{"detail":"We could not find what you're looking for :/"}"#
            ),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            err(
                401,
                r#"{"detail":"You do not have permission to access this resource. Please contact your administrator for assistance."}"#
            ),
            Error::Forbidden { .. }
        ));
    }

    #[test]
    fn upload_failures() {
        assert!(matches!(
            err(
                400,
                r#"{"detail":"400: Duplicate content detected. Please provide unique content to proceed."}"#
            ),
            Error::DuplicateContent { .. }
        ));
        assert!(matches!(
            err(
                400,
                r#"{"detail":"The content provided is empty. Please ensure that there is text or data present before proceeding."}"#
            ),
            Error::EmptyContent { .. }
        ));
        assert!(matches!(
            err(413, r#"{"detail":"File too large"}"#),
            Error::TooLarge { .. }
        ));
        assert!(matches!(
            err(400, r#"{"detail":"[ERROR: File type exe is not allowed]"}"#),
            Error::Unsupported { .. }
        ));
        assert!(matches!(
            err(400, r#"{"detail":"Model not found"}"#),
            Error::ModelNotFound { .. }
        ));
    }

    #[test]
    fn details_of_every_shape() {
        assert_eq!(detail_of(br#"{"detail":"x"}"#), "x");
        assert_eq!(
            detail_of(br#"{"detail":[{"loc":["body","name"],"msg":"Field required"}]}"#),
            "body.name: Field required"
        );
        assert_eq!(
            detail_of(br#"{"error":{"message":"upstream busy"}}"#),
            "upstream busy"
        );
        assert_eq!(detail_of(b"plain\n  text"), "plain text");
    }

    #[test]
    fn hostile_retry_after_is_ignored_not_a_panic() {
        for v in ["1e400", "inf", "NaN", "-5", "99999999999999999999999"] {
            let mut h = HeaderMap::new();
            h.insert(
                reqwest::header::RETRY_AFTER,
                HeaderValue::from_str(v).unwrap(),
            );
            let _ = parse_retry_after(&h, std::time::UNIX_EPOCH);
            let mut h = HeaderMap::new();
            h.insert("retry-after-ms", HeaderValue::from_str(v).unwrap());
            let _ = parse_retry_after(&h, std::time::UNIX_EPOCH);
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("1"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(1)));
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(
            parse_retry_after(&h, now),
            Some(Duration::from_millis(1500))
        );
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Mon, 12 Jan 1970 13:46:50 GMT"),
        );
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(10)));
        let e = classify(
            "/x",
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            b"{}",
            std::time::UNIX_EPOCH,
        )
        .unwrap_err();
        assert!(e.is_transient() && e.request_not_processed());
        let e = err(500, r#"{"detail":"boom"}"#);
        assert!(!e.is_transient() && !e.request_not_processed());
    }
}
