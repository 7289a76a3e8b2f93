//! The commands (DESIGN §1), one file per family: `run` (the daemon and
//! its signals), `check`, `owui` (whoami, models, pull, chats, ask),
//! `ingest`, `render`, `admin` (the daemon's admin API: trigger) and
//! `history` (docs, jobs, deliveries). Each returns the process exit
//! code: 0 ok, 1 runtime failure, 2 usage or config error. Errors are
//! reported once, here, on one line; this is the only place `anyhow` is
//! used.

mod admin;
mod check;
mod history;
mod ingest;
mod init;
mod owui;
mod plan;
mod render;
mod run;

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory as _;

use crate::cli::{Cli, Command, Global, LogFormatArg};
use crate::config::{self, Config, Environment, LogFormat};
use crate::openwebui::{Client, ClientOptions};
use crate::setup::Loaded;

/// `println!` panics when stdout is a closed pipe (`ferry docs | head`);
/// a closed pipe just means nobody reads any more.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::commands::write_stdout(format_args!($($arg)*), true) };
}
macro_rules! out {
    ($($arg:tt)*) => { $crate::commands::write_stdout(format_args!($($arg)*), false) };
}
pub(crate) use {out, outln};

pub(crate) fn write_stdout(args: std::fmt::Arguments, newline: bool) {
    let mut stdout = std::io::stdout().lock();
    let result = stdout
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| stdout.flush());
    if let Err(e) = result
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

/// Entry point of the binary. One runtime thread: what would block it
/// (hashing, scanning folders, reads of many rows) runs on the blocking
/// pool and writes on the store's writer thread, and two workers handing
/// tasks to each other cost more CPU than they saved (README, "One runtime
/// thread").
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(dispatch(cli))
}

/// The configuration was invalid; its diagnostics are already printed.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration")]
struct Invalid;

async fn dispatch(cli: Cli) -> ExitCode {
    let env = Environment::process();
    let path = config::resolve_path(cli.global.config.as_deref(), &env);
    if !matches!(cli.command, Command::Run) {
        init_logging(&cli.global, None, "warn");
    }
    let config = || load_config(&path, &env);
    let all = || load_all(&path, &env);
    let global = &cli.global;
    let result = async {
        match cli.command {
            Command::Run => Ok(run::run_daemon(global, &path, env.clone()).await),
            Command::Check { connect } => Ok(check::check(&path, &env, connect).await),
            Command::Ingest {
                paths,
                collection,
                wait,
            } => {
                let mut c = config()?;
                if let Some(w) = wait {
                    c.openwebui.processing_timeout = w;
                }
                ingest::ingest_command(&c, &paths, &collection).await
            }
            Command::Ask {
                model,
                collections,
                vars,
                rule,
                no_stream,
                system,
                save,
                prompt,
            } => {
                // Only `--rule` needs the rules (and their files to be valid).
                let loaded = if rule.is_some() {
                    all()?
                } else {
                    Loaded {
                        config: config()?,
                        rules: vec![],
                    }
                };
                let args = owui::AskArgs {
                    model,
                    collections,
                    vars,
                    rule,
                    no_stream,
                    system,
                    save,
                    prompt,
                };
                owui::ask(&loaded, args).await
            }
            Command::Docs { state, rule, json } => {
                let c = config()?;
                history::docs(&c, state, rule, json).await
            }
            Command::Render {
                rule,
                vars,
                file,
                payload,
                answer,
            } => {
                let given = render::Given {
                    vars: &vars,
                    file: file.as_deref(),
                    payload: payload.as_deref(),
                    answer: &answer,
                };
                render::render(&all()?, &rule, given).await
            }
            Command::Plan { rule, json } => plan::plan(&all()?, &rule, json).await,
            Command::Sync { rule, timeout } => {
                plan::sync(&all()?, env.clone(), &rule, timeout).await
            }
            Command::Trigger { rule, vars, wait } => {
                let c = config()?;
                admin::trigger(&c, &rule, &vars, wait).await
            }
            Command::Jobs {
                action,
                state,
                rule,
                limit,
                json,
            } => {
                let c = config()?;
                history::jobs(&c, action, state, rule, limit, json).await
            }
            Command::Deliveries {
                action,
                state,
                rule,
                limit,
                json,
            } => {
                let c = config()?;
                history::deliveries(&c, action, state, rule, limit, json).await
            }
            Command::Models => {
                let c = config()?;
                owui::models(&c).await
            }
            Command::Pull { model } => {
                let c = config()?;
                owui::pull(&c, &model).await
            }
            Command::Whoami => {
                let c = config()?;
                owui::whoami(&c).await
            }
            Command::Chats => {
                let c = config()?;
                owui::chats(&c).await
            }
            Command::Init {
                url,
                folder,
                dir,
                collection,
                force,
            } => init::init(&url, &folder, dir, collection, force),
            Command::Completions { shell } => Ok(generated(|out| {
                clap_complete::generate(shell, &mut Cli::command(), "ferry", out);
                Ok(())
            })),
            Command::Man => Ok(generated(|out| {
                clap_mangen::Man::new(Cli::command()).render(out)
            })),
        }
    }
    .await;
    match result {
        Ok(code) => code,
        Err(e) if e.is::<Invalid>() => ExitCode::from(EXIT_CONFIG),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Writes generated text (completions, the man page) to stdout; a closed
/// pipe is no failure.
fn generated(write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> ExitCode {
    let mut text = Vec::new();
    if let Err(e) = write(&mut text) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    out!("{}", String::from_utf8_lossy(&text));
    ExitCode::SUCCESS
}

/// An error and its causes on one line, each cause once.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn init_logging(global: &Global, config: Option<&Config>, default: &str) {
    let level = global
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .or_else(|| config.map(|c| c.log.level.clone()))
        .unwrap_or_else(|| default.into());
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let json = match global.log_format {
        Some(LogFormatArg::Json) => true,
        Some(LogFormatArg::Text) => false,
        None => config.is_some_and(|c| c.log.format == LogFormat::Json),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ));
    let _ = if json {
        // `message` at the top level, where Loki and ECS look for it.
        builder.json().flatten_event(true).try_init()
    } else if stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref()) {
        // The journal stamps each line itself, and reads its priority from
        // a `<N>` prefix: without one every line is "info", and
        // `journalctl -p warning` would miss ferry's errors.
        builder
            .with_ansi(false)
            .event_format(Journald(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .try_init()
    } else {
        builder.try_init()
    };
}

/// systemd sets `JOURNAL_STREAM=dev:inode` of the stream it connected;
/// only when stderr is still that stream do lines go to the journal.
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    // Their types differ between platforms (u64 here).
    #[allow(clippy::unnecessary_cast)]
    let (st_dev, st_ino) = (stat.st_dev as u64, stat.st_ino as u64);
    dev.parse::<u64>().ok() == Some(st_dev) && ino.parse::<u64>().ok() == Some(st_ino)
}

/// Prefixes each line with its syslog priority for the journal.
struct Journald<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Journald<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Colours only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (no-color.org). An explicit `with_ansi`
/// overrides tracing-subscriber's own `NO_COLOR` check, so it is made here.
fn colours(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Config errors go to stderr: stdout carries only results (`--json`
/// stays parseable).
fn print_diagnostics(diags: &[config::Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
    let _ = writeln!(
        err,
        "{} error{} found; nothing was changed",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
}

fn load_config(path: &Path, env: &Environment) -> anyhow::Result<Config> {
    config::load_config(path, env).map_err(|d| {
        print_diagnostics(&d);
        Invalid.into()
    })
}

fn load_all(path: &Path, env: &Environment) -> anyhow::Result<Loaded> {
    crate::setup::load(path, env).map_err(|d| {
        print_diagnostics(&d);
        Invalid.into()
    })
}

fn client(config: &Config) -> anyhow::Result<Client> {
    Ok(Client::new(ClientOptions::from(&config.openwebui))?)
}

/// A URL fit to print: no user info, no query (tokens hide there).
fn display_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

// ----- run ---------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some("".into())), "an empty NO_COLOR is unset");
        assert!(!colours(true, Some("1".into())));
        assert!(!colours(false, None));
    }

    #[test]
    fn the_version_names_the_supported_open_webui_range() {
        assert!(
            crate::cli::LONG_VERSION
                .ends_with(&format!("Open WebUI {}", crate::openwebui::SUPPORTED)),
            "{}",
            crate::cli::LONG_VERSION
        );
    }
}
