//! `ferry run`: the daemon in the foreground, SIGTERM/SIGINT to stop,
//! SIGHUP to reload.

use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_RUNTIME, init_logging, one_line};
use crate::cli::Global;
use crate::config::Environment;

pub(super) async fn run_daemon(global: &Global, path: &Path, env: Environment) -> ExitCode {
    let loaded = match crate::setup::load(path, &env) {
        Ok(l) => l,
        Err(diags) => {
            init_logging(global, None, "info");
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "error: {} configuration error(s); not starting",
                diags.len()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(global, Some(&loaded.config), "info");
    let running = match crate::app::start(loaded, env).await {
        Ok(r) => r,
        Err(e) => {
            // One line, on stderr (the journal has it); exit 1, which the
            // unit does not restart: a broken database or a taken port is
            // not fixed by trying again every few seconds.
            let text = one_line(&anyhow::Error::new(e));
            let hint = if text.contains("not a database") || text.contains("malformed") {
                " (the state database is damaged: restore it from a backup, or move it away to start afresh)"
            } else {
                ""
            };
            eprintln!("error: {text}{hint}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let signals = tokio::spawn(forward_signals(
        running.shutdown.clone(),
        running.reload.clone(),
    ));
    let _ = running.task.await;
    signals.abort();
    ExitCode::SUCCESS
}

/// SIGTERM/SIGINT stop the daemon, SIGHUP reloads it.
async fn forward_signals(
    shutdown: tokio_util::sync::CancellationToken,
    reload: tokio::sync::mpsc::Sender<()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); shutdown.cancel(); }
            _ = int.recv() => { tracing::info!("SIGINT"); shutdown.cancel(); }
            _ = hup.recv() => { tracing::info!("SIGHUP: reloading"); let _ = reload.send(()).await; }
        }
    }
}
