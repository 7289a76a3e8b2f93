//! Incoming webhooks: `POST /hooks/{path}` → a chat job of the rule whose
//! `on.webhook.path` it is (DESIGN §4).
//!
//! Order matters: route (404) → concurrency (429) → declared length (413,
//! before reading anything) → bounded, timed body read (413/408) →
//! signature on the raw bytes (401) → durable enqueue → 202. A sender's
//! retry (same `webhook-id`, or GitHub's `X-GitHub-Delivery`) maps to the
//! job of its first delivery and gets 200 with that job.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::to_bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::rules::{self, AuthScheme, DEFAULT_HOOK_HEADERS, Rule, Trigger, WebhookTrigger};
use crate::signing::{self as sign, VerifyError};
use crate::triggers::TriggerEvent;

use super::{AppState, error};

/// How long a sender may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a request header reaches the job (templates, the database,
/// deliveries): by allowlist only, and never one that carries credentials
/// or the scheme's signature, even if a rule names it.
fn passed_on(name: &str, hook: &WebhookTrigger) -> bool {
    let n = name.to_ascii_lowercase();
    let listed = DEFAULT_HOOK_HEADERS.contains(&n.as_str()) || hook.headers.contains(&n);
    listed
        && !rules::is_credential_header(&n)
        && !hook
            .header
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(&n))
}

/// Whether a query parameter reaches the job: not if its name looks like a
/// credential (`?token=`, `?api_key=`, `?sig=`…).
fn query_passed_on(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !(rules::is_credential_header(&n) || matches!(n.as_str(), "sig" | "code" | "pass" | "pwd"))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks a request's credentials on its raw body.
pub fn authenticate(
    hook: &WebhookTrigger,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<(), String> {
    let secret = hook.secret.as_ref().map(|s| s.expose());
    let result = match (hook.scheme, secret) {
        (AuthScheme::None, _) => Ok(()),
        (_, None) => Err(VerifyError::Mismatch),
        (AuthScheme::StandardWebhooks, Some(secret)) => sign::verify_standard(
            secret,
            header(headers, "webhook-id"),
            header(headers, "webhook-timestamp"),
            header(headers, "webhook-signature"),
            body,
            now_secs,
        ),
        (AuthScheme::HmacSha256, Some(secret)) => {
            let name = hook.header.as_deref().unwrap_or("X-Signature");
            sign::verify_hex_hmac(secret, header(headers, name), body)
        }
        (AuthScheme::Github, Some(secret)) => {
            sign::verify_hex_hmac(secret, header(headers, "x-hub-signature-256"), body)
        }
        (AuthScheme::Bearer, Some(secret)) => {
            let given = header(headers, "authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if sign::constant_time_eq(given.as_bytes(), secret.as_bytes()) {
                Ok(())
            } else {
                Err(VerifyError::Mismatch)
            }
        }
    };
    result.map_err(|e| e.to_string())
}

/// The checks of [`authenticate`] that need no body: a missing signature,
/// a stale or malformed Standard Webhooks timestamp, a wrong bearer token.
pub fn precheck(hook: &WebhookTrigger, headers: &HeaderMap, now_secs: i64) -> Result<(), String> {
    let missing = |name: &str| Err(format!("missing {name} header"));
    match hook.scheme {
        AuthScheme::None => Ok(()),
        AuthScheme::StandardWebhooks => {
            for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
                if header(headers, name).is_none() {
                    return missing(name);
                }
            }
            if header(headers, "webhook-id").is_some_and(|id| id.contains('.')) {
                return Err(VerifyError::BadId.to_string());
            }
            let ts = header(headers, "webhook-timestamp").unwrap_or_default();
            let ts: i64 = ts
                .trim()
                .parse()
                .map_err(|_| VerifyError::BadTimestamp.to_string())?;
            if now_secs.abs_diff(ts) > sign::TOLERANCE_SECS.unsigned_abs() {
                return Err(VerifyError::Stale.to_string());
            }
            Ok(())
        }
        AuthScheme::HmacSha256 => {
            let name = hook.header.as_deref().unwrap_or("X-Signature");
            match header(headers, name) {
                Some(_) => Ok(()),
                None => missing(name),
            }
        }
        AuthScheme::Github => match header(headers, "x-hub-signature-256") {
            Some(_) => Ok(()),
            None => missing("X-Hub-Signature-256"),
        },
        // Needs no body at all: the whole check.
        AuthScheme::Bearer => authenticate(hook, headers, b"", now_secs),
    }
}

/// Why a request that a browser sent from another site is refused: a web
/// page the admin opens must not be able to trigger a hook (a "simple"
/// cross-origin POST needs no preflight). Senders of webhooks are servers
/// and send neither header.
pub(crate) fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    if let Some(site) = header(headers, "sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Some("a browser request from another site");
    }
    let origin = header(headers, "origin")?;
    let origin_host = url::Url::parse(origin).ok().and_then(|u| {
        let host = u.host_str()?.to_ascii_lowercase();
        Some(match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        })
    });
    let host = header(headers, "host").map(str::to_ascii_lowercase);
    if origin_host.is_some() && origin_host == host {
        None
    } else {
        Some("a browser request from another origin")
    }
}

/// Reads and drops what is left of a refused body, up to a bound.
fn linger(body: axum::body::Body) {
    const LINGER_BYTES: usize = 8 << 20;
    const LINGER_TIME: Duration = Duration::from_secs(2);
    tokio::spawn(async move {
        use futures_util::StreamExt as _;
        let mut stream = body.into_data_stream();
        let mut read = 0usize;
        let deadline = tokio::time::Instant::now() + LINGER_TIME;
        while read < LINGER_BYTES {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(data))) => read += data.len(),
                _ => break,
            }
        }
    });
}

fn too_many(wait: Duration, message: &str) -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    r.headers_mut()
        .insert("retry-after", secs.to_string().parse().expect("digits"));
    r
}

/// The sender's id of this event, stable across its retries.
fn delivery_id(hook: &WebhookTrigger, headers: &HeaderMap) -> Option<String> {
    let id = match hook.scheme {
        AuthScheme::Github => header(headers, "x-github-delivery"),
        _ => header(headers, "webhook-id").or_else(|| header(headers, "idempotency-key")),
    }?;
    let id = id.trim();
    (!id.is_empty() && id.len() <= 256).then(|| id.to_string())
}

/// The rule listening on a hook path, and its trigger.
fn hook_of<'r>(rules: &'r [Rule], path: &str) -> Option<(&'r Rule, &'r WebhookTrigger)> {
    let path = path.trim_matches('/');
    rules.iter().find_map(|r| match &r.trigger {
        Trigger::Webhook(w) if w.path == path => Some((r, w)),
        _ => None,
    })
}

/// Counts each answer and its time by rule ([`crate::metrics`]).
pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(path): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Request,
) -> Response {
    let started = std::time::Instant::now();
    let rule = hook_of(&state.rules.all(), &path)
        .map(|(r, _)| r.name.clone())
        .unwrap_or_default();
    let response = answer(State(state.clone()), Path(path), Query(query), request).await;
    state
        .metrics
        .hook_answered(&rule, response.status().as_u16(), started.elapsed());
    response
}

async fn answer(
    State(state): State<AppState>,
    Path(path): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Request,
) -> Response {
    if state.draining.is_cancelled() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "ferry is shutting down; send again shortly",
        );
    }
    let path = path.trim_matches('/').to_string();
    let rules = state.rules.all();
    let Some((rule, hook)) = hook_of(&rules, &path) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no rule listens on this hook path",
        );
    };
    if let Some(why) = cross_site(request.headers()) {
        tracing::warn!(rule = %rule.name, hook = %path, reason = why, "hook refused");
        return error(StatusCode::FORBIDDEN, "cross_site", why);
    }
    // What can be judged from the headers is judged before anything else is
    // spent on the request: no slot, no body read.
    if let Err(why) = precheck(hook, request.headers(), state.clock.now_ms() / 1000) {
        tracing::warn!(rule = %rule.name, hook = %path, reason = why, "hook refused");
        return error(StatusCode::UNAUTHORIZED, "bad_signature", why);
    }
    let rate = hook.rate_per_sec;
    if let Err(wait) = state
        .limits
        .check_rate(&rule.name, rate, std::time::Instant::now())
    {
        return too_many(wait, "this hook's rate limit is reached; retry later");
    }
    let too_big = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body is larger than this hook's max_body of {} bytes",
                hook.max_body
            ),
        )
    };
    let declared = header(request.headers(), "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > hook.max_body) {
        // Answered at once; the body still coming is read and dropped for a
        // while (as nginx lingers), so the sender reads the 413 instead of
        // a connection reset.
        linger(request.into_body());
        return too_big();
    }
    let Some(_slot) = state.limits.slot(&rule.name, rate, hook.max_in_flight) else {
        return too_many(
            Duration::from_secs(1),
            "too many requests to this hook at once; retry shortly",
        );
    };
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(hook.max_body).unwrap_or(usize::MAX);
    let body = match tokio::time::timeout(BODY_TIMEOUT, to_bytes(body, limit)).await {
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the body did not arrive in time",
            );
        }
        Ok(Err(_)) => return too_big(),
        Ok(Ok(b)) => b,
    };
    let now = state.clock.now_ms();
    if let Err(why) = authenticate(hook, &parts.headers, &body, now / 1000) {
        tracing::warn!(rule = %rule.name, hook = %path, reason = why, "hook refused");
        return error(StatusCode::UNAUTHORIZED, "bad_signature", why);
    }
    if let Err(wait) = state
        .limits
        .take_rate(&rule.name, rate, std::time::Instant::now())
    {
        return too_many(wait, "this hook's rate limit is reached; retry later");
    }

    let payload = crate::triggers::payload_of(&body);
    let headers: Map<String, Value> = parts
        .headers
        .iter()
        .filter(|(k, _)| passed_on(k.as_str(), hook))
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_string(),
                Value::String(v.to_str().ok()?.to_string()),
            ))
        })
        .collect();
    let query: BTreeMap<String, String> = query
        .into_iter()
        .filter(|(k, _)| query_passed_on(k))
        .collect();
    let event = TriggerEvent::Hook {
        payload,
        query,
        headers,
        delivery_id: delivery_id(hook, &parts.headers),
    };
    match state.queue.submit(&rule.name, event).await {
        Ok(e) => {
            let status = if e.created {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            let body = json!({ "job_id": e.id, "status_url": format!("/api/v1/jobs/{}", e.id), "duplicate": !e.created });
            (status, Json(body)).into_response()
        }
        Err(e) => {
            tracing::error!(rule = %rule.name, error = %e, "cannot store the hook's job");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store",
                "cannot store the job; send again",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn hook(scheme: AuthScheme, secret: Option<&str>) -> WebhookTrigger {
        WebhookTrigger {
            path: "p".into(),
            scheme,
            secret: secret.map(|s| Secret::new(s.to_string())),
            header: (scheme == AuthScheme::HmacSha256).then(|| "X-Signature".to_string()),
            max_body: 1 << 20,
            headers: vec!["x-source".into()],
            rate_per_sec: 10.0,
            max_in_flight: 64,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn schemes() {
        let body = b"Hello, World!";
        let gh = hook(AuthScheme::Github, Some("It's a Secret to Everybody"));
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(authenticate(&gh, &headers(&[("x-hub-signature-256", sig)]), body, 0).is_ok());
        assert!(authenticate(&gh, &headers(&[]), body, 0).is_err());

        let hm = hook(AuthScheme::HmacSha256, Some("It's a Secret to Everybody"));
        assert!(authenticate(&hm, &headers(&[("x-signature", &sig[7..])]), body, 0).is_ok());
        assert!(authenticate(&hm, &headers(&[("x-signature", "00")]), body, 0).is_err());

        let b = hook(AuthScheme::Bearer, Some("tok"));
        assert!(authenticate(&b, &headers(&[("authorization", "Bearer tok")]), body, 0).is_ok());
        assert!(authenticate(&b, &headers(&[("authorization", "Bearer to")]), body, 0).is_err());
        assert!(authenticate(&hook(AuthScheme::None, None), &headers(&[]), body, 0).is_ok());
    }

    #[test]
    fn deep_json_is_bounded() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(crate::triggers::payload_of(deep.as_bytes()).is_string());
        let fine = "[".repeat(100) + &"]".repeat(100);
        assert!(crate::triggers::payload_of(fine.as_bytes()).is_array());
        assert_eq!(
            crate::triggers::payload_of(b"\xff\xfe"),
            Value::String("\u{fffd}\u{fffd}".into())
        );
    }

    #[test]
    fn only_allowed_headers_reach_templates() {
        let h = hook(AuthScheme::HmacSha256, Some("s"));
        for secret in [
            "Authorization",
            "webhook-signature",
            "X-Hub-Signature-256",
            "X-Gitlab-Token",
            "x-api-key",
            "apikey",
            "x-auth",
            "x-password",
            "x-shopify-hmac-sha256",
            "X-Signature",
            "cookie",
            "x-anything-else",
        ] {
            assert!(!passed_on(secret, &h), "{secret}");
        }
        for allowed in ["content-type", "User-Agent", "webhook-id", "x-source"] {
            assert!(passed_on(allowed, &h), "{allowed}");
        }
        for secret in [
            "token",
            "access_token",
            "api_key",
            "sig",
            "Secret",
            "password",
        ] {
            assert!(!query_passed_on(secret), "{secret}");
        }
        assert!(query_passed_on("env") && query_passed_on("severity"));
    }
}
