//! A typed client of the real Open WebUI API, 0.6.40 through 0.12.x
//! (`openwebui-api.md` §13 lists the calls).
//!
//! Architecture invariants:
//! - every API answer must be JSON ([`error::classify`]); the HTML that
//!   Open WebUI serves for unknown GET paths is an error, never data;
//! - with email + password, a token-type 401 leads to at most one new
//!   sign-in per request, shared by all requests that saw the same token;
//!   a sign-in that is rate-limited is not repeated;
//! - idempotent calls are retried on 429/502/503/504 and transport errors;
//!   other calls only when the server cannot have acted (429, no connection);
//! - at most `max_in_flight` requests are under way at once.

pub mod error;
pub mod retry;
pub mod sse;
pub mod types;

mod chat;
mod client;
mod files;
mod knowledge;
mod server;

pub use client::{Client, ClientOptions};
pub use files::Content;

/// The Open WebUI versions this client speaks (`ferry --version` says it).
pub const SUPPORTED: &str = "0.6.40 to 0.12.x";
pub use error::Error;
pub use types::*;
