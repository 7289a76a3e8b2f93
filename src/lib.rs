//! placeholder
#![forbid(unsafe_code)]
pub mod config;
pub mod openwebui;
pub mod rules;
pub mod store;
