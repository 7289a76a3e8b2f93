//! Test support shared by unit tests, integration tests and benchmarks.
//! Not part of ferry's behaviour.

pub mod fake_openwebui;
pub mod receiver;
