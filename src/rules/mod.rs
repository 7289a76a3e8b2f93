//! Rules (`rules/*.yaml`, one rule per file, DESIGN §3): [`model`] (what
//! a rule is), [`decode`] (schema and validation, every problem at once),
//! [`check`] (across rules; templates against the trigger) and
//! [`template`] (compiled once, at load). A rule is either fully valid or
//! reported with every problem it has.

pub mod check;
pub mod decode;
pub mod model;
pub mod template;

pub use crate::triggers::{
    AuthScheme, DEFAULT_HOOK_HEADERS, DEFAULT_HOOK_IN_FLIGHT, DEFAULT_HOOK_RATE, DEFAULT_MAX_SIZE,
    Missed, OnDelete, Overlap, Schedule, Trigger, Watch, WebhookTrigger, is_credential_header,
    parse_rate,
};
pub use decode::load_all;
pub use model::*;
