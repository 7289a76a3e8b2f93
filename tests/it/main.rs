//! Every integration test, in one binary (one link, one harness:
//! [`helpers`]). The `e2e*` modules need real Open WebUI servers and are
//! `#[ignore]`d here; `scripts/e2e.sh` runs them against 0.12.4 and 0.6.40.

mod helpers;

mod api;
mod architecture;
mod check;
mod cli;
mod client_faults;
mod crash_deliveries;
mod daemon;
mod e2e;
mod e2e_chat;
mod e2e_daemon;
mod e2e_ui;
mod fuzz;
mod secrets;
mod systemd;
mod triggers;
mod ui;
