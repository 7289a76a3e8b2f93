//! placeholder
#![forbid(unsafe_code)]
pub mod cli;
pub mod commands;
pub mod config;
pub mod ingest;
pub mod openwebui;
pub mod rules;
pub mod store;
pub mod testing;
