//! Command-line interface (DESIGN §1). Parsing only; the work is in
//! [`crate::commands`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `ferry --version`: the commit it was built from and the Open WebUI
/// versions it speaks ([`crate::openwebui::SUPPORTED`], checked by a test).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FERRY_COMMIT"),
    ")\nOpen WebUI 0.6.40 to 0.12.x"
);

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
Errors go to stderr, one line each; stdout carries only results.

Environment:
  FERRY_CONFIG            config file when --config is not given
  RUST_LOG                log filter (as --log-level)
  NO_COLOR                no colours in log lines
  CREDENTIALS_DIRECTORY   where relative `*_file:` secrets are read (systemd)

Examples:
  ferry check --connect          is the config valid, and does Open WebUI answer?
  ferry plan inbox               what a sync of rule `inbox` would do now
  ferry jobs --state dead        jobs that ran out of attempts
  ferry completions bash > /etc/bash_completion.d/ferry";

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    long_version = LONG_VERSION,
    about = "Keeps Open WebUI knowledge in sync with folders and runs templated chats",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Config file [default: $FERRY_CONFIG, /etc/ferry/ferry.yaml, ./ferry.yaml]
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    /// Log format on stderr
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Log level or filter (also RUST_LOG), e.g. `info` or `ferry=debug`
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: watchers, workers and the HTTP server, until SIGTERM
    Run,
    /// Validate the config and every rule; print every error with file:line:col
    Check {
        /// Also check that Open WebUI answers, the credentials work, and the
        /// models and collections the rules name exist
        #[arg(long)]
        connect: bool,
    },
    /// Upload files into a knowledge base, verified, recorded in the state DB
    Ingest {
        /// Files or directories (recursively)
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Knowledge base name (created if missing)
        #[arg(long)]
        collection: String,
        /// How long to wait for Open WebUI to process each file
        /// [default: openwebui.processing_timeout]
        #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "10m", value_parser = parse_duration_arg)]
        wait: Option<Duration>,
    },
    /// One chat completion; the answer is streamed to stdout
    Ask {
        /// Model id [default: the first model Open WebUI lists]
        #[arg(long, short)]
        model: Option<String>,
        /// Knowledge base attached for retrieval (repeatable)
        #[arg(long = "collection")]
        collections: Vec<String>,
        /// Template variable for --rule (repeatable)
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Render this rule's chat prompt instead of PROMPT
        #[arg(long)]
        rule: Option<String>,
        /// Wait for the whole answer instead of streaming it
        #[arg(long)]
        no_stream: bool,
        /// System prompt
        #[arg(long)]
        system: Option<String>,
        /// Also store the exchange as an Open WebUI chat (shown in its UI)
        #[arg(long)]
        save: bool,
        /// The prompt
        #[arg(required_unless_present = "rule")]
        prompt: Option<String>,
    },
    /// Per-file ingestion state, with Open WebUI's error text for failures
    Docs {
        /// Only documents in this state: discovered, uploading, processing,
        /// linked, failed, removed, skipped
        #[arg(long)]
        state: Option<String>,
        /// Only this rule's documents
        #[arg(long)]
        rule: Option<String>,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Print a rule's rendered prompt and delivery bodies; calls nothing
    Render {
        rule: String,
        /// Template variable (repeatable)
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// A file to fill `file.*` with (watch and ingested rules)
        #[arg(long)]
        file: Option<PathBuf>,
        /// A sample webhook body for `payload` (JSON, else text)
        #[arg(long)]
        payload: Option<String>,
        /// The answer to show in delivery bodies
        #[arg(long, default_value = "(the answer)")]
        answer: String,
    },
    /// What a sync of a watch rule would do now (uploads, replacements,
    /// moves, removals, restores, sharing); changes nothing
    Plan {
        rule: String,
        /// One JSON object instead of lines
        #[arg(long)]
        json: bool,
    },
    /// Bring a watch rule's collection in line with its folder now, and
    /// exit once it matches (asks the daemon instead while one runs)
    Sync {
        rule: String,
        /// Give up after this long
        #[arg(long, default_value = "10m", value_parser = parse_duration_arg)]
        timeout: Duration,
    },
    /// Ask the running daemon to run a rule now; prints the job id
    Trigger {
        rule: String,
        /// Template variable (repeatable)
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Wait for the job to finish and print its answer
        #[arg(long)]
        wait: bool,
    },
    /// Job history (`ferry jobs show ID`, `ferry jobs retry ID`)
    #[command(args_conflicts_with_subcommands = true)]
    Jobs {
        #[command(subcommand)]
        action: Option<JobsAction>,
        /// Only this state: queued, running, succeeded, dead
        #[arg(long)]
        state: Option<String>,
        /// Only this rule's
        #[arg(long)]
        rule: Option<String>,
        /// At most this many, newest first
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Webhook delivery log (`ferry deliveries show ID`, `… redeliver ID`)
    #[command(args_conflicts_with_subcommands = true)]
    Deliveries {
        #[command(subcommand)]
        action: Option<DeliveriesAction>,
        /// Only this state: pending, delivering, delivered, dead
        #[arg(long)]
        state: Option<String>,
        /// Only this rule's
        #[arg(long)]
        rule: Option<String>,
        /// At most this many, newest first
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Models Open WebUI offers
    Models,
    /// Pull an Ollama model through Open WebUI (admin)
    Pull { model: String },
    /// Who the configured credentials belong to, and the server version
    Whoami,
    /// Chats of the account
    Chats,
    /// Write a starter config and watch rule for an Open WebUI and a
    /// folder, then say what to do next
    Init {
        /// Open WebUI's address, e.g. http://localhost:3000
        #[arg(long)]
        url: String,
        /// The folder to mirror into a knowledge base
        #[arg(long)]
        folder: PathBuf,
        /// Where to write ferry.yaml, rules/ and credentials/
        /// [default: /etc/ferry as root, else ./ferry]
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The knowledge base's name [default: the folder's name]
        #[arg(long)]
        collection: Option<String>,
        /// Overwrite files that exist
        #[arg(long)]
        force: bool,
    },
    /// Shell completions on stdout, e.g. `ferry completions bash >
    /// /usr/share/bash-completion/completions/ferry`
    Completions { shell: clap_complete::Shell },
    /// The man page (roff) on stdout, e.g. `ferry man | man -l -`
    Man,
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// Everything about one job: input, result, error
    Show { id: String },
    /// Run a dead job again (a fresh series of attempts)
    Retry { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesAction {
    /// One delivery with its body and every attempt
    Show { id: String },
    /// Send a delivery again: a new series of attempts, the same webhook-id
    Redeliver { id: String },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::config::units::parse_duration(s)
}
