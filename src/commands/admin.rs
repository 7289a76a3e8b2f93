//! Commands that go through the running daemon's admin API: `trigger`,
//! and `sync` when a daemon holds the database.

use std::process::ExitCode;

use anyhow::Context as _;

use super::{EXIT_RUNTIME, outln};
use crate::config::Config;

/// The daemon's admin API, as configured.
fn admin_request(
    config: &Config,
    method: reqwest::Method,
    path: &str,
) -> anyhow::Result<reqwest::RequestBuilder> {
    let token = config
        .server
        .admin_token
        .as_ref()
        .context("server.admin_token is not set, so the daemon's admin API is off")?;
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .no_proxy()
        .build()?;
    Ok(client
        .request(method, format!("http://{addr}/api/v1{path}"))
        .bearer_auth(token.expose()))
}

async fn admin_json(request: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    let response = request
        .send()
        .await
        .context("the daemon does not answer (is `ferry run` running with this config?)")?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let message = body
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .unwrap_or("no details");
        anyhow::bail!("the daemon refused: {status}: {message}");
    }
    Ok(body)
}

/// Asks the running daemon for a sync of `rule` (`POST …/sync`).
pub(super) async fn ask_sync(config: &Config, rule: &str) -> anyhow::Result<()> {
    admin_json(admin_request(
        config,
        reqwest::Method::POST,
        &format!("/rules/{rule}/sync"),
    )?)
    .await
    .map(|_| ())
}

pub(super) async fn trigger(
    config: &Config,
    rule: &str,
    vars: &[(String, String)],
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({ "vars": super::render::vars_json(vars) });
    let answer = admin_json(
        admin_request(config, reqwest::Method::POST, &format!("/rules/{rule}/run"))?.json(&body),
    )
    .await?;
    let id = answer["job_id"].as_str().unwrap_or_default().to_string();
    if !wait {
        outln!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("job {id}");
    loop {
        let job = admin_json(admin_request(
            config,
            reqwest::Method::GET,
            &format!("/jobs/{id}"),
        )?)
        .await?;
        match job["state"].as_str() {
            Some("succeeded") => {
                outln!(
                    "{}",
                    job.pointer("/result/answer")
                        .and_then(|a| a.as_str())
                        .unwrap_or("")
                );
                return Ok(ExitCode::SUCCESS);
            }
            Some("dead") => {
                eprintln!(
                    "error: the job failed: {}",
                    job["error"].as_str().unwrap_or("")
                );
                return Ok(ExitCode::from(EXIT_RUNTIME));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}
