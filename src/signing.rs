//! HMAC signatures: Standard Webhooks (`v1,<base64>` over `id.timestamp.body`)
//! for outgoing deliveries and incoming hooks, plus the hex HMAC of a raw
//! body used by GitHub and Alertmanager-style senders.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The key bytes of a secret: `whsec_<base64>` is decoded (Standard
/// Webhooks); any other string is used as it is.
pub fn secret_key(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => B64
            .decode(b64)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// `v1,<base64 HMAC-SHA256(id.timestamp.body)>`.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(
        &secret_key(secret),
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!("v1,{}", B64.encode(mac))
}

/// Equal length first, then content in constant time: an empty or short
/// signature never compares equal to a prefix (the Standard Webhooks
/// reference library once accepted `v1,` that way).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is outside the allowed ±5 minutes")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
    #[error("webhook-id must not contain `.`")]
    BadId,
}

/// Tolerance of Standard Webhooks timestamps, both directions.
pub const TOLERANCE_SECS: i64 = 300;

/// Verifies a Standard Webhooks request. `signatures` is the header as
/// sent: space-separated `v1,<base64>` entries (several during rotation).
pub fn verify_standard(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), VerifyError> {
    let id = id.ok_or(VerifyError::Missing("webhook-id"))?;
    let ts = timestamp.ok_or(VerifyError::Missing("webhook-timestamp"))?;
    let signatures = signatures.ok_or(VerifyError::Missing("webhook-signature"))?;
    if id.contains('.') {
        return Err(VerifyError::BadId);
    }
    let ts: i64 = ts.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    // A sender picks `ts`: i64::MIN once overflowed the subtraction.
    if now_secs.abs_diff(ts) > TOLERANCE_SECS.unsigned_abs() {
        return Err(VerifyError::Stale);
    }
    let expected = standard_signature(secret, id, ts, body);
    let matched = signatures
        .split(' ')
        .filter(|s| s.starts_with("v1,"))
        .any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()));
    if matched {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Verifies a hex HMAC-SHA256 of the raw body, with or without a
/// `sha256=` prefix (GitHub's `X-Hub-Signature-256`, Alertmanager-style
/// `X-Signature`).
pub fn verify_hex_hmac(secret: &str, given: Option<&str>, body: &[u8]) -> Result<(), VerifyError> {
    let given = given.ok_or(VerifyError::Missing("signature"))?.trim();
    let given = given.strip_prefix("sha256=").unwrap_or(given);
    let expected = hex::encode(hmac_sha256(secret.as_bytes(), &[body]));
    if constant_time_eq(given.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks reference libraries' test vector.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn hostile_timestamps_are_stale_not_a_panic() {
        // Security review L7: i64::MIN overflowed `now - ts` (a panic in a
        // debug build, a wrap past the window in a release build).
        for ts in [i64::MIN, i64::MAX, i64::MIN + 1, -1] {
            let r = verify_standard(SECRET, Some(ID), Some(&ts.to_string()), Some(SIG), BODY, TS);
            assert_eq!(r, Err(VerifyError::Stale), "{ts}");
        }
        let r = verify_standard(SECRET, Some(ID), Some("1e99"), Some(SIG), BODY, TS);
        assert_eq!(r, Err(VerifyError::BadTimestamp));
    }

    #[test]
    fn standard_webhooks_test_vector() {
        assert_eq!(standard_signature(SECRET, ID, TS, BODY), SIG);
        let ok = |sig: &str, now: i64| {
            verify_standard(
                SECRET,
                Some(ID),
                Some(&TS.to_string()),
                Some(sig),
                BODY,
                now,
            )
        };
        assert_eq!(ok(SIG, TS), Ok(()));
        // Rotation: any of several signatures.
        assert_eq!(ok(&format!("v1,AAAA {SIG}"), TS + 10), Ok(()));
        assert_eq!(ok("v1,", TS), Err(VerifyError::Mismatch), "empty signature");
        assert_eq!(
            ok(&SIG[..SIG.len() - 4], TS),
            Err(VerifyError::Mismatch),
            "shorter"
        );
        assert_eq!(
            ok(&format!("{SIG}AAAA"), TS),
            Err(VerifyError::Mismatch),
            "longer"
        );
        assert_eq!(ok(SIG, TS + 301), Err(VerifyError::Stale), "too old");
        assert_eq!(
            ok(SIG, TS - 301),
            Err(VerifyError::Stale),
            "from the future"
        );
        assert_eq!(ok(SIG, TS + 300), Ok(()));
        let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert_eq!(
            verify_standard(wrong, Some(ID), Some(&TS.to_string()), Some(SIG), BODY, TS),
            Err(VerifyError::Mismatch)
        );
        // Any change to the body, id or timestamp breaks it.
        let mut body = BODY.to_vec();
        body[3] ^= 1;
        assert!(
            verify_standard(
                SECRET,
                Some(ID),
                Some(&TS.to_string()),
                Some(SIG),
                &body,
                TS
            )
            .is_err()
        );
        assert!(
            verify_standard(
                SECRET,
                Some("msg_other"),
                Some(&TS.to_string()),
                Some(SIG),
                BODY,
                TS
            )
            .is_err()
        );
        assert!(
            verify_standard(
                SECRET,
                Some(ID),
                Some(&(TS + 1).to_string()),
                Some(SIG),
                BODY,
                TS
            )
            .is_err()
        );
        assert_eq!(
            verify_standard(SECRET, None, Some("1"), Some(SIG), BODY, TS),
            Err(VerifyError::Missing("webhook-id"))
        );
    }

    #[test]
    fn github_test_vector() {
        let secret = "It's a Secret to Everybody";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(verify_hex_hmac(secret, Some(sig), b"Hello, World!"), Ok(()));
        assert_eq!(
            verify_hex_hmac(secret, Some(&sig[7..]), b"Hello, World!"),
            Ok(())
        );
        assert_eq!(
            verify_hex_hmac(secret, Some("sha256="), b"Hello, World!"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_hex_hmac(secret, Some(sig), b"Hello, World?"),
            Err(VerifyError::Mismatch)
        );
    }
}
