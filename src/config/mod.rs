//! The main config file (`ferry.yaml`, DESIGN §2): its format, decoder and
//! diagnostics. [`crate::setup::load`] loads it together with the rules it
//! points at, all or nothing: the validated set, or every [`Diagnostic`]
//! found in every file.

pub mod decode;
pub mod secret;
pub mod units;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

pub use decode::Environment;
pub use secret::Secret;
pub use yaml::{Diagnostic, Pos};

use decode::Decoder;

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub openwebui: OpenWebUiConfig,
    pub state: StateConfig,
    pub server: ServerConfig,
    pub rules: RulesSource,
    pub webhooks: BTreeMap<String, WebhookConfig>,
    pub log: LogConfig,
    pub shutdown_grace: Duration,
    pub retention: crate::store::Retention,
}

#[derive(Debug, Clone)]
pub struct OpenWebUiConfig {
    pub url: Url,
    pub auth: Auth,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub processing_timeout: Duration,
    /// Where people reach Open WebUI, for links from the status pages
    /// (`openwebui.public_url`; `url` without credentials when unset).
    pub public_url: Option<Url>,
}

impl OpenWebUiConfig {
    /// Open WebUI's page of a knowledge collection, without its id: for
    /// links people follow, so never with credentials or a query.
    pub fn knowledge_page(&self) -> String {
        let mut u = self.public_url.clone().unwrap_or_else(|| self.url.clone());
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.set_fragment(None);
        format!("{}/workspace/knowledge/", u.as_str().trim_end_matches('/'))
    }
}

#[derive(Debug, Clone)]
pub enum Auth {
    ApiKey(Secret),
    Password { email: String, password: Secret },
}

#[derive(Debug, Clone)]
pub struct StateConfig {
    pub database: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_token: Option<Secret>,
    /// `Host` header values accepted besides the listen address (and, on
    /// loopback, `localhost`): the names a proxy or DNS gives ferry.
    pub hosts: Vec<String>,
    /// Open connections at once, in all and from one peer address.
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// The status pages under `/ui/` (`server.ui`, on by default; they
    /// need a way to sign in: `admin_token` or `ui_password`).
    pub ui: bool,
    /// A password for the pages, instead of pasting the admin token.
    pub ui_password: Option<Secret>,
    /// A second bearer token that may only read and run rules: for Open
    /// WebUI's tool servers (`server.tool_token`).
    pub tool_token: Option<Secret>,
}

impl ServerConfig {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
    pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 128;
}

#[derive(Debug, Clone)]
pub enum RulesSource {
    /// The directory, and where the config names it (for its errors).
    Dir(PathBuf, Pos),
    Files(Vec<PathBuf>),
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub name: String,
    pub url: Url,
    pub secret: Option<Secret>,
    /// Extra request headers; values are secrets (`Authorization: …`).
    pub headers: BTreeMap<String, Secret>,
    pub timeout: Duration,
    pub retry: Vec<Duration>,
    pub allow_private: bool,
    /// Concurrent requests to this destination (one slow receiver must not
    /// hold up the others).
    pub max_in_flight: usize,
    /// An explicit proxy; the system's `HTTP(S)_PROXY` is never used (a
    /// proxy resolves names itself, past the private-address guard).
    pub proxy: Option<Url>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

pub const DEFAULT_RETRY: [u64; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];

/// Which config file to use: `--config`, else `$FERRY_CONFIG`, else
/// `/etc/ferry/ferry.yaml`, else `./ferry.yaml`.
pub fn resolve_path(flag: Option<&Path>, env: &Environment) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = env.get("FERRY_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let etc = PathBuf::from("/etc/ferry/ferry.yaml");
    if etc.exists() {
        etc
    } else {
        PathBuf::from("ferry.yaml")
    }
}

/// Where the rules are and which webhooks exist, read from a config file
/// that is otherwise invalid.
pub fn peek_rules(
    path: &Path,
    env: &Environment,
) -> (Option<RulesSource>, Option<BTreeSet<String>>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (None, None);
    };
    let mut scratch = Decoder::new(path, env);
    let Some(root) = yaml::parse(&text, &mut scratch.diags) else {
        return (None, None);
    };
    let yaml::Value::Map(entries) = &root.value else {
        return (None, None);
    };
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k.scalar_text().as_deref() == Some(key))
            .map(|(_, v)| v)
    };
    let dir = scratch.diags.dir();
    let source = match get("rules") {
        None => Some(RulesSource::Dir(dir.join("rules"), Pos { line: 1, col: 1 })),
        Some(n) => match &n.value {
            yaml::Value::Seq(items) => items
                .iter()
                .map(|i| {
                    i.scalar_text()
                        .and_then(|t| decode::interpolate(&t, env).ok())
                        .map(|t| dir.join(t))
                })
                .collect::<Option<Vec<_>>>()
                .map(RulesSource::Files),
            _ => n
                .scalar_text()
                .and_then(|t| decode::interpolate(&t, env).ok())
                .map(|t| RulesSource::Dir(dir.join(t), n.pos)),
        },
    };
    let webhooks = match get("webhooks").map(|n| &n.value) {
        Some(yaml::Value::Map(hooks)) => {
            Some(hooks.iter().filter_map(|(k, _)| k.scalar_text()).collect())
        }
        None => Some(BTreeSet::new()),
        _ => None,
    };
    (source, webhooks)
}

/// Only the main config file, for commands that need no rules.
pub fn load_config(path: &Path, env: &Environment) -> Result<Config, Vec<Diagnostic>> {
    let mut d = Decoder::new(path, env);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            d.error(Pos { line: 1, col: 1 }, format!("cannot read config: {e}"));
            return Err(d.diags.list);
        }
    };
    let Some(root) = yaml::parse(&text, &mut d.diags) else {
        return Err(d.diags.list);
    };
    let config = decode_config(&root, path, &mut d);
    match config {
        Some(c) if d.diags.list.is_empty() => Ok(c),
        _ => Err(d.diags.list),
    }
}

fn decode_config(root: &yaml::Node, path: &Path, d: &mut Decoder) -> Option<Config> {
    let top = d.fields(
        root,
        "config",
        &[
            "openwebui",
            "state",
            "server",
            "rules",
            "webhooks",
            "log",
            "shutdown_grace",
            "retention",
        ],
    )?;

    let openwebui = match top.get("openwebui") {
        Some(n) => decode_openwebui(n, d),
        None => {
            d.error(
                top.pos,
                "config: `openwebui` is required (at least `url` and credentials)",
            );
            None
        }
    };

    let state = decode_state(top.get("state"), d);
    let server = decode_server(top.get("server"), d);

    let rules = match top.get("rules") {
        None => Some(RulesSource::Dir(
            d.diags.dir().join("rules"),
            Pos { line: 1, col: 1 },
        )),
        Some(n) => match &n.value {
            yaml::Value::Seq(_) => d.string_list(n, "rules").map(|l| {
                RulesSource::Files(l.into_iter().map(|p| d.diags.dir().join(p)).collect())
            }),
            _ => d.path(n, "rules").map(|p| RulesSource::Dir(p, n.pos)),
        },
    };

    let mut webhooks = BTreeMap::new();
    if let Some(n) = top.get("webhooks") {
        if let yaml::Value::Map(entries) = &n.value {
            for (key, value) in entries {
                let Some(name) = key.scalar_text() else {
                    continue;
                };
                if !valid_name(&name) {
                    d.error(
                        key.pos,
                        format!("webhooks: name `{name}` must be [a-z0-9_-]"),
                    );
                }
                if let Some(w) = decode_webhook(&name, value, d) {
                    webhooks.insert(name, w);
                }
            }
        } else {
            d.error(
                n.pos,
                "webhooks: expected a mapping of names to destinations",
            );
        }
    }

    let log = decode_log(top.get("log"), d);
    let shutdown_grace = match top.get("shutdown_grace") {
        Some(n) => d.duration(n, "shutdown_grace"),
        None => Some(Duration::from_secs(30)),
    };

    let retention = decode_retention(top.get("retention"), d);

    Some(Config {
        path: path.to_path_buf(),
        retention: retention?,
        openwebui: openwebui?,
        state: state?,
        server: server?,
        rules: rules?,
        webhooks,
        log: log?,
        shutdown_grace: shutdown_grace?,
    })
}

fn decode_retention(node: Option<&yaml::Node>, d: &mut Decoder) -> Option<crate::store::Retention> {
    let mut r = crate::store::Retention::default();
    let Some(node) = node else {
        return Some(r);
    };
    let f = d.fields(node, "retention", &["jobs", "deliveries", "dead", "keys"])?;
    let mut ok = true;
    for (key, slot) in [
        ("jobs", &mut r.jobs),
        ("deliveries", &mut r.deliveries),
        ("dead", &mut r.dead),
        ("keys", &mut r.keys),
    ] {
        if let Some(n) = f.get(key) {
            match d.duration(n, &format!("retention.{key}")) {
                Some(v) if key == "keys" && v < crate::store::Retention::MIN_KEYS => {
                    d.error(
                        n.pos,
                        "retention.keys: at least 72h (senders retry for up to three days)",
                    );
                    ok = false;
                }
                Some(v) => *slot = v,
                None => ok = false,
            }
        }
    }
    ok.then_some(r)
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn decode_url(d: &mut Decoder, node: &yaml::Node, what: &str) -> Option<Url> {
    let s = d.non_empty_string(node, what)?;
    match Url::parse(&s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(_) => {
            d.error(
                node.pos,
                format!("{what}: must be an http:// or https:// URL"),
            );
            None
        }
        Err(e) => {
            d.error(node.pos, format!("{what}: not a URL ({e})"));
            None
        }
    }
}

fn decode_openwebui(node: &yaml::Node, d: &mut Decoder) -> Option<OpenWebUiConfig> {
    let f = d.fields(
        node,
        "openwebui",
        &[
            "url",
            "api_key",
            "api_key_file",
            "email",
            "password",
            "password_file",
            "timeout",
            "max_in_flight",
            "processing_timeout",
            "public_url",
        ],
    )?;
    let public_url = match f.get("public_url") {
        Some(n) => decode_url(d, n, "openwebui.public_url").map(Some),
        None => Some(None),
    };
    let url = match f.get("url") {
        Some(n) => decode_url(d, n, "openwebui.url").filter(|u| {
            // Request paths are appended to it: a query would end up in
            // the middle of every request URL (and in error messages).
            let plain = u.query().is_none() && u.fragment().is_none();
            if !plain {
                d.error(n.pos, "openwebui.url: must not have a query or fragment");
            }
            plain
        }),
        None => {
            d.error(f.pos, "openwebui: `url` is required");
            None
        }
    };
    let api_key = d.secret(&f, "api_key", "openwebui");
    let password = d.secret(&f, "password", "openwebui");
    let email = f
        .get("email")
        .and_then(|n| d.non_empty_string(n, "openwebui.email"));
    let has_key = f.has("api_key") || f.has("api_key_file");
    let has_password = f.has("password") || f.has("password_file");
    let auth = match (has_key, f.get("email"), has_password) {
        (true, None, false) => api_key.map(Auth::ApiKey),
        (false, Some(_), true) => match (email, password) {
            (Some(email), Some(password)) => Some(Auth::Password { email, password }),
            _ => None,
        },
        (true, _, _) => {
            d.error(
                f.pos,
                "openwebui: give `api_key` or `email` + `password`, not both",
            );
            None
        }
        (false, Some(n), false) => {
            d.error(
                n.pos,
                "openwebui: `email` needs `password` or `password_file`",
            );
            None
        }
        (false, None, true) => {
            d.error(f.pos, "openwebui: `password` needs `email`");
            None
        }
        (false, None, false) => {
            d.error(
                f.pos,
                "openwebui: credentials are required: `api_key` (preferred) or `email` + `password`",
            );
            None
        }
    };
    let timeout = f
        .get("timeout")
        .map_or(Some(Duration::from_secs(120)), |n| {
            d.duration(n, "openwebui.timeout")
        });
    let max_in_flight = f
        .get("max_in_flight")
        .map_or(Some(4), |n| d.count(n, "openwebui.max_in_flight", 1, 256));
    let processing_timeout = f
        .get("processing_timeout")
        .map_or(Some(Duration::from_secs(600)), |n| {
            d.duration(n, "openwebui.processing_timeout")
        });
    Some(OpenWebUiConfig {
        url: url?,
        auth: auth?,
        timeout: timeout?,
        max_in_flight: max_in_flight?,
        processing_timeout: processing_timeout?,
        public_url: public_url?,
    })
}

fn decode_state(node: Option<&yaml::Node>, d: &mut Decoder) -> Option<StateConfig> {
    let default_db = || match d.env.get("STATE_DIRECTORY").filter(|s| !s.is_empty()) {
        // systemd StateDirectory= may list several, colon-separated.
        Some(dirs) => PathBuf::from(dirs.split(':').next().unwrap_or_default()).join("ferry.db"),
        None => PathBuf::from("/var/lib/ferry/ferry.db"),
    };
    let Some(node) = node else {
        return Some(StateConfig {
            database: default_db(),
        });
    };
    let f = d.fields(node, "state", &["database"])?;
    let database = match f.get("database") {
        Some(n) => d.path(n, "state.database")?,
        None => default_db(),
    };
    Some(StateConfig { database })
}

fn decode_server(node: Option<&yaml::Node>, d: &mut Decoder) -> Option<ServerConfig> {
    let default_listen: SocketAddr = "127.0.0.1:8787".parse().expect("valid literal");
    let Some(node) = node else {
        return Some(ServerConfig {
            listen: default_listen,
            admin_token: None,
            hosts: Vec::new(),
            max_connections: ServerConfig::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: ServerConfig::DEFAULT_MAX_CONNECTIONS_PER_PEER,
            ui: true,
            ui_password: None,
            tool_token: None,
        });
    };
    let f = d.fields(
        node,
        "server",
        &[
            "listen",
            "admin_token",
            "admin_token_file",
            "hosts",
            "max_connections",
            "max_connections_per_peer",
            "ui",
            "ui_password",
            "ui_password_file",
            "tool_token",
            "tool_token_file",
        ],
    )?;
    let hosts = match f.get("hosts") {
        Some(n) => d
            .string_list(n, "server.hosts")
            .map(|v| v.into_iter().map(|h| h.to_ascii_lowercase()).collect()),
        None => Some(Vec::new()),
    };
    let mut count = |key: &str, default: usize| match f.get(key) {
        Some(n) => d.count(n, &format!("server.{key}"), 1, 1_000_000),
        None => Some(default),
    };
    let max_connections = count("max_connections", ServerConfig::DEFAULT_MAX_CONNECTIONS);
    let max_connections_per_peer = count(
        "max_connections_per_peer",
        ServerConfig::DEFAULT_MAX_CONNECTIONS_PER_PEER,
    );
    let listen = match f.get("listen") {
        Some(n) => {
            let s = d.string(n, "server.listen")?;
            match s.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    d.error(
                        n.pos,
                        format!("server.listen: `{s}` is not an address like 127.0.0.1:8787"),
                    );
                    None
                }
            }
        }
        None => Some(default_listen),
    };
    let admin_token = d.secret(&f, "admin_token", "server");
    if let Some(t) = &admin_token
        && t.expose().len() < 16
    {
        d.error(
            f.pos,
            "server.admin_token: use at least 16 characters (e.g. `openssl rand -hex 32`)",
        );
    }
    let ui = match f.get("ui") {
        Some(n) => d.bool(n, "server.ui"),
        None => Some(true),
    };
    let tool_token = d.secret(&f, "tool_token", "server");
    if let Some(t) = &tool_token {
        if t.expose().len() < 16 {
            d.error(
                f.pos,
                "server.tool_token: use at least 16 characters (e.g. `openssl rand -hex 32`)",
            );
        } else if admin_token
            .as_ref()
            .is_some_and(|a| a.expose() == t.expose())
        {
            d.error(
                f.pos,
                "server.tool_token: must differ from admin_token (it may do less)",
            );
        }
    }
    let ui_password = d.secret(&f, "ui_password", "server");
    if let Some(p) = &ui_password
        && p.expose().len() < 12
    {
        d.error(f.pos, "server.ui_password: use at least 12 characters");
    }
    Some(ServerConfig {
        listen: listen?,
        admin_token,
        hosts: hosts?,
        max_connections: max_connections?,
        max_connections_per_peer: max_connections_per_peer?,
        ui: ui?,
        ui_password,
        tool_token,
    })
}

fn decode_webhook(name: &str, node: &yaml::Node, d: &mut Decoder) -> Option<WebhookConfig> {
    let what = format!("webhooks.{name}");
    let f = d.fields(
        node,
        &what,
        &[
            "enabled",
            "url",
            "secret",
            "secret_file",
            "headers",
            "timeout",
            "retry",
            "allow_private",
            "max_in_flight",
            "proxy",
        ],
    )?;
    // `enabled: ${HOOK_URL:+true}` leaves a destination out unless the
    // environment configures it (the container's config); a rule that
    // delivers to it then fails `check` with "no webhook named".
    if let Some(n) = f.get("enabled")
        && !d.bool(n, &format!("{what}.enabled"))?
    {
        return None;
    }
    let url = match f.get("url") {
        Some(n) => decode_url(d, n, &format!("{what}.url")),
        None => {
            d.error(f.pos, format!("{what}: `url` is required"));
            None
        }
    };
    let secret = d.secret(&f, "secret", &what);
    if let Some(s) = &secret
        && let Some(b64) = s.expose().strip_prefix("whsec_")
    {
        use base64::Engine as _;
        if base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_err()
        {
            d.error(
                f.get("secret")
                    .or(f.get("secret_file"))
                    .map_or(f.pos, |n| n.pos),
                format!("{what}.secret: a `whsec_` secret must be base64 after the prefix"),
            );
        }
    }
    let mut headers = BTreeMap::new();
    if let Some(n) = f.get("headers") {
        match &n.value {
            yaml::Value::Map(entries) => {
                for (k, v) in entries {
                    let key = k.scalar_text().unwrap_or_default();
                    if reqwest::header::HeaderName::from_bytes(key.as_bytes()).is_err() {
                        d.error(
                            k.pos,
                            format!("{what}.headers: `{key}` is not a valid header name"),
                        );
                        continue;
                    }
                    if let Some(value) = d.string(v, &format!("{what}.headers.{key}")) {
                        headers.insert(key, Secret::new(value));
                    }
                }
            }
            _ => d.error(n.pos, format!("{what}.headers: expected a mapping")),
        }
    }
    let timeout = f.get("timeout").map_or(Some(Duration::from_secs(15)), |n| {
        d.duration(n, &format!("{what}.timeout"))
    });
    let retry = match f.get("retry") {
        None => Some(
            DEFAULT_RETRY
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
        ),
        Some(n) => match &n.value {
            yaml::Value::Seq(items) if !items.is_empty() => {
                let out: Vec<Option<Duration>> = items
                    .iter()
                    .map(|i| d.duration(i, &format!("{what}.retry")))
                    .collect();
                out.into_iter().collect()
            }
            _ => {
                d.error(
                    n.pos,
                    format!("{what}.retry: expected a non-empty list of durations"),
                );
                None
            }
        },
    };
    let allow_private = f
        .get("allow_private")
        .map_or(Some(false), |n| d.bool(n, &format!("{what}.allow_private")));
    let max_in_flight = f.get("max_in_flight").map_or(Some(4), |n| {
        d.count(n, &format!("{what}.max_in_flight"), 1, 256)
    });
    let proxy = match f.get("proxy") {
        Some(n) => decode_url(d, n, &format!("{what}.proxy")).map(Some),
        None => Some(None),
    };
    Some(WebhookConfig {
        name: name.to_string(),
        url: url?,
        secret,
        headers,
        timeout: timeout?,
        retry: retry?,
        allow_private: allow_private?,
        max_in_flight: max_in_flight?,
        proxy: proxy?,
    })
}

fn decode_log(node: Option<&yaml::Node>, d: &mut Decoder) -> Option<LogConfig> {
    let mut log = LogConfig {
        format: LogFormat::Text,
        level: "info".into(),
    };
    let Some(node) = node else { return Some(log) };
    let f = d.fields(node, "log", &["format", "level"])?;
    if let Some(n) = f.get("format") {
        log.format = d.one_of(
            n,
            "log.format",
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        )?;
    }
    if let Some(n) = f.get("level") {
        let level = d.string(n, "log.level")?;
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            d.error(
                n.pos,
                format!("log.level: `{level}` is not a level (error, warn, info, debug, trace) or filter"),
            );
            return None;
        }
        log.level = level;
    }
    Some(log)
}

/// The rule files: `*.yaml`/`*.yml` of the directory, sorted, or the list.
pub fn rule_files(source: &RulesSource, config_path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    match source {
        RulesSource::Files(files) => Ok(files.clone()),
        RulesSource::Dir(dir, at) => {
            let entries = std::fs::read_dir(dir).map_err(|e| Diagnostic {
                file: config_path.into(),
                pos: *at,
                message: format!("rules: cannot read directory {}: {e}", dir.display()),
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                        && !p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with('.'))
                })
                .collect();
            files.sort();
            Ok(files)
        }
    }
}
