//! The one-shot commands (DESIGN §1). Each returns the process exit code:
//! 0 ok, 1 runtime failure, 2 usage or config error. Errors are reported
//! once, here, on one line.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use futures_util::StreamExt as _;

use crate::cli::{Cli, Command, Global, LogFormatArg};
use crate::config::{self, Config, Environment, Loaded, LogFormat};
use crate::ingest::{self, Collection, Ingestor, Outcome};
use crate::openwebui::{ChatRequest, Client, ClientOptions};
use crate::rules::{self, CollectionRef, Trigger};
use crate::store::{DocumentFilter, DocumentState, FailureReason, Store};

/// `println!` panics when stdout is a closed pipe (`ferry docs | head`);
/// a closed pipe just means nobody reads any more.
macro_rules! outln {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*), true) };
}
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*), false) };
}

fn write_stdout(args: std::fmt::Arguments, newline: bool) {
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

/// Entry point of the binary.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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

async fn dispatch(cli: Cli) -> ExitCode {
    let env = Environment::process();
    let config_path = config::resolve_path(cli.global.config.as_deref(), &env);
    if !matches!(cli.command, Command::Run) {
        init_logging(&cli.global, None, "warn");
    }
    let result = match cli.command {
        Command::Run => return run_daemon(&cli.global, &config_path, env).await,
        Command::Check { connect } => return check(&config_path, &env, connect).await,
        Command::Ingest {
            paths,
            collection,
            wait,
        } => match load_config(&config_path, &env) {
            Ok(mut c) => {
                if let Some(w) = wait {
                    c.openwebui.processing_timeout = w;
                }
                ingest_command(&c, &paths, &collection).await
            }
            Err(code) => return code,
        },
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
            let loaded = if rule.is_some() {
                match load_all(&config_path, &env) {
                    Ok(l) => l,
                    Err(code) => return code,
                }
            } else {
                match load_config(&config_path, &env) {
                    Ok(config) => Loaded {
                        config,
                        rules: vec![],
                    },
                    Err(code) => return code,
                }
            };
            ask(
                &loaded,
                AskArgs {
                    model,
                    collections,
                    vars,
                    rule,
                    no_stream,
                    system,
                    save,
                    prompt,
                },
            )
            .await
        }
        Command::Docs { state, rule, json } => match load_config(&config_path, &env) {
            Ok(c) => docs(&c, state, rule, json).await,
            Err(code) => return code,
        },
        Command::Render {
            rule,
            vars,
            file,
            payload,
            answer,
        } => match load_all(&config_path, &env) {
            Ok(l) => render(
                &l,
                &rule,
                &vars,
                file.as_deref(),
                payload.as_deref(),
                &answer,
            ),
            Err(code) => return code,
        },
        Command::Trigger { rule, vars, wait } => match load_config(&config_path, &env) {
            Ok(c) => trigger(&c, &rule, &vars, wait).await,
            Err(code) => return code,
        },
        Command::Jobs {
            action,
            state,
            rule,
            limit,
            json,
        } => match load_config(&config_path, &env) {
            Ok(c) => jobs(&c, action, state, rule, limit, json).await,
            Err(code) => return code,
        },
        Command::Deliveries {
            action,
            state,
            rule,
            limit,
            json,
        } => match load_config(&config_path, &env) {
            Ok(c) => deliveries(&c, action, state, rule, limit, json).await,
            Err(code) => return code,
        },
        Command::Models => match load_config(&config_path, &env) {
            Ok(c) => models(&c).await,
            Err(code) => return code,
        },
        Command::Pull { model } => match load_config(&config_path, &env) {
            Ok(c) => pull(&c, &model).await,
            Err(code) => return code,
        },
        Command::Whoami => match load_config(&config_path, &env) {
            Ok(c) => whoami(&c).await,
            Err(code) => return code,
        },
        Command::Chats => match load_config(&config_path, &env) {
            Ok(c) => chats(&c).await,
            Err(code) => return code,
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(EXIT_RUNTIME)
        }
    }
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
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn print_diagnostics(diags: &[config::Diagnostic]) {
    for d in diags {
        outln!("{d}");
    }
    outln!(
        "{} error{} found; nothing was changed",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
}

fn load_config(path: &Path, env: &Environment) -> Result<Config, ExitCode> {
    config::load_config(path, env).map_err(|d| {
        print_diagnostics(&d);
        ExitCode::from(EXIT_CONFIG)
    })
}

fn load_all(path: &Path, env: &Environment) -> Result<Loaded, ExitCode> {
    config::load(path, env).map_err(|d| {
        print_diagnostics(&d);
        ExitCode::from(EXIT_CONFIG)
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

async fn run_daemon(global: &Global, path: &Path, env: Environment) -> ExitCode {
    let loaded = match config::load(path, &env) {
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

// ----- check -----------------------------------------------------------------

/// What is valid but probably not meant: said by `check`, not refused.
fn warnings(loaded: &Loaded) -> Vec<String> {
    let mut out = Vec::new();
    let listen = loaded.config.server.listen;
    if !listen.ip().is_loopback() {
        for r in &loaded.rules {
            if let rules::Trigger::Webhook(w) = &r.trigger
                && w.scheme == rules::AuthScheme::None
            {
                out.push(format!(
                    "rule `{}`: hook /hooks/{} has `scheme: none` on {listen}, which is not loopback: anyone who reaches it can run the rule",
                    r.name, w.path
                ));
            }
        }
        if listen.ip().is_unspecified() && loaded.config.server.hosts.is_empty() {
            out.push(format!(
                "server.listen {listen} answers any Host: list the names ferry is reached by in `server.hosts` (DNS rebinding)"
            ));
        }
    }
    out
}

async fn check(path: &Path, env: &Environment, connect: bool) -> ExitCode {
    let loaded = match config::load(path, env) {
        Ok(l) => l,
        Err(diags) => {
            print_diagnostics(&diags);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let c = &loaded.config;
    outln!("{}: ok", c.path.display());
    outln!("  openwebui: {}", display_url(&c.openwebui.url));
    outln!("  state: {}", c.state.database.display());
    outln!("  webhooks: {}", c.webhooks.len());
    outln!("  rules: {}", loaded.rules.len());
    for r in &loaded.rules {
        let summary: Vec<String> = rules::summary(r)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        outln!(
            "    {} ({}): {}",
            r.name,
            r.file.display(),
            summary.join(" ")
        );
    }
    for w in warnings(&loaded) {
        eprintln!("warning: {w}");
    }
    if !connect {
        return ExitCode::SUCCESS;
    }
    match check_connect(&loaded).await {
        Ok(problems) if problems.is_empty() => {
            outln!("connection: ok");
            ExitCode::SUCCESS
        }
        Ok(problems) => {
            for p in &problems {
                outln!("problem: {p}");
            }
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(e) => {
            outln!("problem: {}", one_line(&e));
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn check_connect(loaded: &Loaded) -> anyhow::Result<Vec<String>> {
    let client = client(&loaded.config)?;
    let mut problems = Vec::new();
    let version = client
        .version()
        .await
        .context("Open WebUI is not reachable")?;
    outln!("  server: Open WebUI {version}");
    if !version.at_least(0, 6, 40) {
        problems.push(format!(
            "Open WebUI {version} is older than 0.6.40, the oldest ferry supports"
        ));
    }
    let who = client
        .whoami()
        .await
        .context("the credentials were refused")?;
    outln!("  signed in: {}", identity_line(&who));
    let models = client.models().await.context("cannot list models")?;
    let store = Store::open(&loaded.config.state.database).await?;
    // Knowledge bases that ingestion creates on first use.
    let created: Vec<&CollectionRef> = loaded
        .rules
        .iter()
        .filter_map(|r| r.ingest.as_ref().map(|i| &i.collection))
        .collect();
    for rule in &loaded.rules {
        if let Some(chat) = &rule.chat {
            if !models.iter().any(|m| m.id == chat.model) {
                problems.push(format!(
                    "rule `{}`: model `{}` is not offered (have: {})",
                    rule.name,
                    chat.model,
                    models
                        .iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            for c in &chat.collections {
                match ingest::resolve_collection(&client, &store, c, false).await {
                    Ok(_) => {}
                    Err(ingest::IngestError::UnknownCollection(_)) if created.contains(&c) => {}
                    Err(e) => problems.push(format!("rule `{}`: collection {c}: {e}", rule.name)),
                }
            }
        }
        if let Some(i) = &rule.ingest {
            match ingest::resolve_collection(&client, &store, &i.collection, false).await {
                Ok(_) => {}
                Err(ingest::IngestError::UnknownCollection(_)) => {
                    outln!(
                        "  rule `{}`: collection {} will be created",
                        rule.name,
                        i.collection
                    )
                }
                Err(e) => problems.push(format!(
                    "rule `{}`: collection {}: {e}",
                    rule.name, i.collection
                )),
            }
        }
        if let Trigger::Watch(w) = &rule.trigger
            && !w.path.is_dir()
        {
            problems.push(format!(
                "rule `{}`: watched folder {} does not exist",
                rule.name,
                w.path.display()
            ));
        }
    }
    Ok(problems)
}

fn identity_line(who: &crate::openwebui::Identity) -> String {
    let mut line = match (&who.email, &who.role) {
        (Some(email), Some(role)) => format!("{email} ({role})"),
        (Some(email), None) => email.clone(),
        _ => "an account".into(),
    };
    line.push_str(&format!(
        " with {}",
        if who.auth == "api_key" {
            "an API key"
        } else {
            "email + password"
        }
    ));
    if let Some(note) = &who.note {
        line.push_str(&format!("; {note}"));
    }
    line
}

// ----- seed operations ---------------------------------------------------------

async fn whoami(config: &Config) -> anyhow::Result<ExitCode> {
    let client = client(config)?;
    let version = client.version().await?;
    let who = client.whoami().await?;
    outln!(
        "server: {} (Open WebUI {version})",
        display_url(&config.openwebui.url)
    );
    outln!("user: {}", identity_line(&who));
    if let Some(id) = &who.id {
        outln!("id: {id}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn models(config: &Config) -> anyhow::Result<ExitCode> {
    let client = client(config)?;
    let models = client.models().await?;
    for m in &models {
        match &m.name {
            Some(name) if name != &m.id => outln!("{}\t{name}", m.id),
            _ => outln!("{}", m.id),
        }
    }
    if models.is_empty() {
        eprintln!(
            "no models: none configured, or the account may not use any (BYPASS_MODEL_ACCESS_CONTROL / model access)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn pull(config: &Config, model: &str) -> anyhow::Result<ExitCode> {
    let client = client(config)?;
    let mut last = String::new();
    client
        .pull(model, |p| {
            let status = p.get("status").and_then(|s| s.as_str()).unwrap_or("");
            let line = match (
                p.get("completed").and_then(|v| v.as_u64()),
                p.get("total").and_then(|v| v.as_u64()),
            ) {
                (Some(done), Some(total)) if total > 0 => {
                    format!("{status} {}%", done * 100 / total)
                }
                _ => status.to_string(),
            };
            if line != last {
                outln!("{line}");
                last = line;
            }
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

async fn chats(config: &Config) -> anyhow::Result<ExitCode> {
    let client = client(config)?;
    for c in client.chats().await? {
        let when = c
            .updated_at
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        outln!("{}\t{when}\t{}", c.id, c.title.unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

struct AskArgs {
    model: Option<String>,
    collections: Vec<String>,
    vars: Vec<(String, String)>,
    rule: Option<String>,
    no_stream: bool,
    system: Option<String>,
    save: bool,
    prompt: Option<String>,
}

async fn ask(loaded: &Loaded, args: AskArgs) -> anyhow::Result<ExitCode> {
    let config = &loaded.config;
    let client = client(config)?;
    let mut model = args.model;
    let mut system = args.system;
    let mut collection_refs: Vec<CollectionRef> = args
        .collections
        .into_iter()
        .map(CollectionRef::Name)
        .collect();
    let prompt = match &args.rule {
        Some(name) => {
            let rule = loaded
                .rules
                .iter()
                .find(|r| &r.name == name)
                .with_context(|| format!("no rule named `{name}`"))?;
            let chat = rule
                .chat
                .as_ref()
                .with_context(|| format!("rule `{name}` has no `chat`"))?;
            model = model.or_else(|| Some(chat.model.clone()));
            system = system.or_else(|| chat.system.clone());
            collection_refs.extend(chat.collections.iter().cloned());
            let mut vars = rule.vars.clone();
            for (k, v) in &args.vars {
                vars.insert(k.clone(), v.clone().into());
            }
            let context = serde_json::json!({
                "rule": rule.name,
                "now": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                "vars": vars,
                "trigger": {"kind": "manual"},
            });
            rules::template::render(&chat.prompt, &context)
                .map_err(|p| anyhow::anyhow!("rule `{name}`: prompt template: {}", p.message))?
        }
        None => args.prompt.clone().unwrap_or_default(),
    };
    let model = match model {
        Some(m) => m,
        None => {
            let first = client
                .models()
                .await?
                .into_iter()
                .next()
                .context("Open WebUI offers no models")?;
            eprintln!("(model: {})", first.id);
            first.id
        }
    };
    let mut collections = Vec::new();
    if !collection_refs.is_empty() {
        let store = Store::open(&config.state.database).await?;
        for c in &collection_refs {
            collections.push(
                ingest::resolve_collection(&client, &store, c, false)
                    .await?
                    .id,
            );
        }
    }
    let request = ChatRequest {
        model,
        system,
        prompt,
        collections,
        options: Default::default(),
    };
    let timeout = config
        .openwebui
        .timeout
        .max(std::time::Duration::from_secs(300));
    let answer = if args.no_stream {
        let a = client.chat(&request, timeout).await?;
        out!("{}", a.content);
        a
    } else {
        client
            .chat_stream(&request, timeout, |delta| out!("{delta}"))
            .await?
    };
    if !answer.content.ends_with('\n') {
        outln!("");
    }
    if args.save {
        let title: String = request.prompt.chars().take(60).collect();
        let model = answer.model.as_deref().unwrap_or(&request.model);
        let id = client
            .save_chat(title.trim(), model, &request.prompt, &answer.content)
            .await
            .context("the answer came, but saving it as a chat failed")?;
        eprintln!("saved as chat {id}");
    }
    Ok(ExitCode::SUCCESS)
}

// ----- ingest --------------------------------------------------------------------

/// The files under the given paths, minus the names ferry never ingests.
fn expand_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut builder = globset::GlobSetBuilder::new();
    for g in rules::BUILTIN_EXCLUDES {
        builder.add(globset::Glob::new(g)?);
    }
    let excluded = builder.build()?;
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = Vec::new();
    for p in paths {
        let p = std::fs::canonicalize(p).with_context(|| crate::paths::shown(p))?;
        stack.push(p);
    }
    while let Some(p) = stack.pop() {
        // The paths given were resolved above (the admin chose them); what
        // is found inside a folder is not followed if it is a link.
        let meta = std::fs::symlink_metadata(&p).with_context(|| crate::paths::shown(&p))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&p)
                .with_context(|| crate::paths::shown(&p))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|e| {
                    let name = e
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default();
                    !excluded.is_match(Path::new("x").join(&name))
                })
                .collect();
            entries.sort();
            entries.reverse();
            stack.extend(entries);
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

async fn ingest_command(
    config: &Config,
    paths: &[PathBuf],
    collection_name: &str,
) -> anyhow::Result<ExitCode> {
    let files = expand_paths(paths)?;
    let store = Store::open(&config.state.database).await?;
    let client = client(config)?;
    client
        .version()
        .await
        .context("Open WebUI is not reachable")?;
    let collection: Collection = ingest::resolve_collection(
        &client,
        &store,
        &CollectionRef::Name(collection_name.to_string()),
        true,
    )
    .await?;
    let ingestor = Ingestor {
        client: client.clone(),
        store: store.clone(),
        instance_id: store.instance_id().await?,
        hashed: Default::default(),
        content_locks: Default::default(),
    };
    let (cleaned, _) = ingestor.clean_orphans(false, None).await?;
    if cleaned > 0 {
        eprintln!("deleted {cleaned} unlinked upload(s) left by an earlier run");
    }

    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
                .expect("valid template"),
        );
        bar
    });
    let concurrency = config.openwebui.max_in_flight.max(1);
    let mut results = futures_util::stream::iter(files.iter().map(|path| {
        let ingestor = &ingestor;
        let collection = &collection;
        async move {
            let parent = path.parent().unwrap_or(Path::new("/"));
            let result = match crate::safe_fs::open_beneath(parent, path) {
                Ok(file) => {
                    ingestor
                        .ingest(":cli", path, file, collection, rules::DEFAULT_MAX_SIZE)
                        .await
                }
                Err(e) => Err(ingest::IngestError::Io {
                    path: crate::paths::shown(path),
                    source: std::io::Error::other(e),
                }),
            };
            (path, result)
        }
    }))
    .buffer_unordered(concurrency);

    let (mut linked, mut unchanged, mut failed) = (Vec::new(), 0usize, 0usize);
    let report = |line: String| match &bar {
        Some(b) => b.println(line),
        None => outln!("{line}"),
    };
    while let Some((path, result)) = results.next().await {
        let shown = crate::paths::shown(path);
        match result {
            Ok(Outcome::Linked { file_id, replaced }) => {
                report(format!(
                    "linked     {shown} ({file_id}{})",
                    replaced
                        .map(|r| format!(", replaces {r}"))
                        .unwrap_or_default()
                ));
                linked.push((path.clone(), file_id));
            }
            Ok(Outcome::Moved { file_id, from }) => {
                report(format!(
                    "moved      {shown} ({file_id}, was {})",
                    crate::paths::shown_key(&from)
                ));
                linked.push((path.clone(), file_id));
            }
            Ok(Outcome::Unchanged { .. }) => {
                unchanged += 1;
                report(format!("unchanged  {shown}"));
            }
            Ok(Outcome::Failed { reason, detail, .. }) => {
                failed += 1;
                report(format!("failed     {shown}: {reason}: {detail}"));
            }
            Err(e) => {
                failed += 1;
                report(format!("failed     {shown}: {e}"));
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    drop(results);
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    // Trust, but verify: every link must show in Open WebUI's own list.
    if !linked.is_empty() {
        let present: std::collections::HashSet<String> = client
            .knowledge_files(&collection.id)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect();
        for (path, file_id) in &linked {
            if !present.contains(file_id) {
                failed += 1;
                outln!(
                    "failed     {}: linked, but missing from the collection's file list",
                    crate::paths::shown(path)
                );
                if let Some(doc) = store.document(":cli", &crate::paths::key(path)).await? {
                    store
                        .failed(
                            doc.id,
                            FailureReason::Processing,
                            "linked, but missing from the collection's file list",
                            Some(crate::store::now_ms()),
                            crate::store::now_ms(),
                        )
                        .await?;
                }
            }
        }
    }
    outln!(
        "{} linked, {unchanged} unchanged, {failed} failed, in collection `{}` ({})",
        linked.len(),
        collection.name,
        collection.id
    );
    Ok(if failed > 0 {
        ExitCode::from(EXIT_RUNTIME)
    } else {
        ExitCode::SUCCESS
    })
}

// ----- docs ------------------------------------------------------------------------

async fn docs(
    config: &Config,
    state: Option<String>,
    rule: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let state = match state {
        Some(s) => Some(DocumentState::parse(&s).with_context(|| {
            format!(
                "unknown state `{s}` (one of {})",
                DocumentState::ALL.map(|s| s.as_str()).join(", ")
            )
        })?),
        None => None,
    };
    let store = Store::open(&config.state.database).await?;
    let docs = store
        .documents(&DocumentFilter {
            state,
            rule,
            limit: None,
        })
        .await?;
    for d in &docs {
        if json {
            outln!("{}", serde_json::to_string(d)?);
            continue;
        }
        let mut line = format!(
            "{:<10} {:<12} {}",
            d.state.as_str(),
            d.rule,
            crate::paths::shown_key(&d.path)
        );
        if let Some(r) = d.reason {
            line.push_str(&format!("  [{r}] {}", d.error.as_deref().unwrap_or("")));
        }
        outln!("{line}");
    }
    if docs.is_empty() && !json {
        eprintln!("no documents");
    }
    Ok(ExitCode::SUCCESS)
}

// ----- render, trigger, jobs, deliveries ------------------------------------------

fn vars_json(vars: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        vars.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

fn render(
    loaded: &Loaded,
    name: &str,
    vars: &[(String, String)],
    file: Option<&std::path::Path>,
    payload: Option<&str>,
    answer: &str,
) -> anyhow::Result<ExitCode> {
    use crate::worker::chat;
    use serde_json::json;
    let rule = loaded
        .rules
        .iter()
        .find(|r| r.name == name)
        .with_context(|| format!("no rule named `{name}`"))?;
    let kind = rule.trigger.kind();
    let mut input = json!({ "vars": vars_json(vars) });
    match &rule.trigger {
        rules::Trigger::Watch(_) | rules::Trigger::Ingested { .. } => {
            let path = file.context("this rule works on files: give one with --file PATH")?;
            // The file named on the command line is read as given (links
            // resolved): the admin chose it.
            let path = &std::fs::canonicalize(path).with_context(|| crate::paths::shown(path))?;
            let root = path.parent().unwrap_or(std::path::Path::new("/"));
            let bytes = std::fs::read(path).with_context(|| crate::paths::shown(path))?;
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            let collection = rule
                .ingest
                .as_ref()
                .map(|i| i.collection.to_string())
                .unwrap_or_default();
            input["file"] = chat::file_context(root, path, Some(&sha), true);
            input["collection"] = json!({ "name": collection, "id": null });
        }
        rules::Trigger::Schedule(_) => {
            input["schedule"] = json!({ "fire_time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "catch_up": false });
        }
        rules::Trigger::Webhook(_) => {
            let text = payload.unwrap_or("{}");
            input["payload"] = serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
            input["query"] = json!({});
            input["headers"] = json!({});
        }
        rules::Trigger::Manual => {}
    }
    let ctx = chat::context(rule, kind, &input);
    let mut failed = false;
    let data = if rule.chat.is_some() {
        match chat::render_prompt(rule, &ctx) {
            Ok((system, prompt)) => {
                if let Some(system) = &system {
                    outln!("--- system\n{system}");
                }
                outln!("--- prompt\n{prompt}");
            }
            Err(e) => {
                eprintln!("error: rule `{name}`: {e}");
                failed = true;
            }
        }
        let model = rule.chat.as_ref().map(|c| c.model.clone());
        json!({ "answer": answer, "model": model, "sources": [], "usage": {}, "chat_id": null })
    } else {
        json!({})
    };
    let event = if rule.chat.is_some() {
        "chat.completed"
    } else {
        "document.ingested"
    };
    let effects = crate::deliver::effects_for(rule, event, "(job id)", &ctx, data);
    for d in &effects.deliveries {
        outln!("--- deliver to {} ({})", d.destination, d.event_type);
        match &d.error {
            Some(e) => {
                eprintln!("error: rule `{name}`: {e}");
                failed = true;
            }
            None => outln!("{}", String::from_utf8_lossy(&d.body)),
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_RUNTIME)
    } else {
        ExitCode::SUCCESS
    })
}

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

async fn trigger(
    config: &Config,
    rule: &str,
    vars: &[(String, String)],
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({ "vars": vars_json(vars) });
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

fn when(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

async fn jobs(
    config: &Config,
    action: Option<crate::cli::JobsAction>,
    state: Option<String>,
    rule: Option<String>,
    limit: i64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::cli::JobsAction;
    use crate::store::{JobFilter, JobState};
    let store = Store::open(&config.state.database).await?;
    match action {
        Some(JobsAction::Show { id }) => {
            let job = store
                .job(&id)
                .await?
                .with_context(|| format!("no job {id}"))?;
            outln!("{}", serde_json::to_string_pretty(&job)?);
        }
        Some(JobsAction::Retry { id }) => {
            match store.retry_dead(&id, crate::store::now_ms()).await? {
                None => anyhow::bail!("no job {id}"),
                Some(JobState::Dead) => outln!("{id} queued again"),
                Some(other) => {
                    anyhow::bail!("job {id} is {}; only dead jobs are retried", other.as_str())
                }
            }
        }
        None => {
            let state = match state {
                Some(s) => Some(JobState::parse(&s).with_context(|| {
                    format!("unknown state `{s}` (one of queued, running, succeeded, dead)")
                })?),
                None => None,
            };
            let list = store
                .jobs(&JobFilter {
                    state,
                    rule,
                    kind: None,
                    limit: Some(limit),
                })
                .await?;
            for j in &list {
                if json {
                    outln!("{}", serde_json::to_string(j)?);
                    continue;
                }
                let detail = match (&j.error, &j.result) {
                    (Some(e), _) => e.clone(),
                    (None, Some(r)) => r
                        .get("answer")
                        .and_then(|a| a.as_str())
                        .map(|a| a.chars().take(60).collect::<String>().replace('\n', " "))
                        .unwrap_or_else(|| r.to_string().chars().take(60).collect()),
                    _ => String::new(),
                };
                outln!(
                    "{}  {}  {:<9} {:<12} {:<5} {:<8} {}",
                    j.id,
                    when(j.created_at),
                    j.state.as_str(),
                    j.rule,
                    j.kind,
                    j.trigger_kind,
                    detail
                );
            }
            if list.is_empty() && !json {
                eprintln!("no jobs");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn deliveries(
    config: &Config,
    action: Option<crate::cli::DeliveriesAction>,
    state: Option<String>,
    rule: Option<String>,
    limit: i64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::cli::DeliveriesAction;
    use crate::store::{DeliveryFilter, DeliveryState};
    let store = Store::open(&config.state.database).await?;
    match action {
        Some(DeliveriesAction::Show { id }) => {
            let d = store
                .delivery(&id)
                .await?
                .with_context(|| format!("no delivery {id}"))?;
            let mut v = serde_json::json!(d);
            v["body"] = String::from_utf8_lossy(&d.body).into_owned().into();
            v["attempt_log"] = store
                .delivery_attempts(&id)
                .await?
                .into_iter()
                .map(|(n, at, ms, status, error)| serde_json::json!({"attempt": n, "started_at": when(at), "duration_ms": ms, "status": status, "error": error}))
                .collect::<Vec<_>>()
                .into();
            outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        Some(DeliveriesAction::Redeliver { id }) => {
            match store.redeliver(&id, crate::store::now_ms()).await? {
                None => anyhow::bail!("no delivery {id}"),
                Some(false) => anyhow::bail!("delivery {id} is being sent right now"),
                Some(true) => outln!("{id} will be sent again (same webhook-id)"),
            }
        }
        None => {
            let state = match state {
                Some(s) => Some(DeliveryState::parse(&s).with_context(|| {
                    format!("unknown state `{s}` (one of pending, delivering, delivered, dead)")
                })?),
                None => None,
            };
            let list = store
                .deliveries(&DeliveryFilter {
                    state,
                    rule,
                    limit: Some(limit),
                })
                .await?;
            for d in &list {
                if json {
                    outln!("{}", serde_json::to_string(d)?);
                    continue;
                }
                let status = d
                    .last_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into());
                outln!(
                    "{}  {}  {:<10} {:<12} {:<12} {:<18} attempts {} status {} {}",
                    d.id,
                    when(d.created_at),
                    d.state.as_str(),
                    d.rule,
                    d.destination,
                    d.event_type,
                    d.attempts,
                    status,
                    d.last_error.as_deref().unwrap_or("")
                );
            }
            if list.is_empty() && !json {
                eprintln!("no deliveries");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
