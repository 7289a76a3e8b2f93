//! Rule files decoded into [`Rule`]s: every problem of every file, with
//! its position.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::{check_template, cross_check};
use super::model::*;
use super::template;
use crate::config::decode::{Decoder, Environment};
use crate::config::valid_name;
use crate::config::yaml::{self, Diagnostic, Node, Pos, Value};
use crate::triggers::*;

/// Loads every rule file; all problems of all files at once.
/// `webhooks` are the destination names of the config, `None` when they
/// are unknown (the config itself is broken): `deliver.to` goes unchecked.
pub fn load_all(
    files: &[PathBuf],
    config_path: &Path,
    webhooks: Option<&BTreeSet<String>>,
    env: &Environment,
) -> Result<Vec<Rule>, Vec<Diagnostic>> {
    let known = Known {
        config_path,
        webhooks,
    };
    let mut diags = Vec::new();
    let mut rules: Vec<(Rule, Pos)> = Vec::new();
    for file in files {
        let mut d = Decoder::new(file, env);
        match std::fs::read_to_string(file) {
            Ok(text) => {
                if let Some(root) = yaml::parse(&text, &mut d.diags)
                    && let Some(rule) = decode_rule(&root, file, &known, &mut d)
                    && d.diags.list.is_empty()
                {
                    rules.push((rule, root.pos));
                }
            }
            Err(e) => d.error(Pos { line: 1, col: 1 }, format!("cannot read rule: {e}")),
        }
        diags.extend(d.diags.list);
    }
    cross_check(&rules, &mut diags);
    if diags.is_empty() {
        Ok(rules.into_iter().map(|(r, _)| r).collect())
    } else {
        Err(diags)
    }
}

/// What rules may refer to outside themselves.
struct Known<'a> {
    config_path: &'a Path,
    webhooks: Option<&'a BTreeSet<String>>,
}

fn decode_rule(root: &Node, file: &Path, known: &Known, d: &mut Decoder) -> Option<Rule> {
    let f = d.fields(
        root,
        "rule",
        &["name", "on", "ingest", "chat", "deliver", "vars"],
    )?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let name = match f.get("name") {
        Some(n) => d.string(n, "name"),
        None => Some(stem),
    };
    if let (Some(n), Some(pos)) = (&name, f.get("name").map(|n| n.pos).or(Some(f.pos)))
        && !valid_name(n)
    {
        d.error(
            pos,
            format!("name: `{n}` must be lower-case letters, digits, `_` and `-` (set `name:` when the file name is not)"),
        );
    }

    let trigger = match f.get("on") {
        Some(n) => decode_trigger(n, d),
        None => Some(Trigger::Manual),
    };
    let ingest = f.get("ingest").and_then(|n| decode_ingest(n, d));
    let chat = f.get("chat").and_then(|n| decode_chat(n, d));
    let vars = match f.get("vars") {
        Some(n) => match n.to_json() {
            serde_json::Value::Object(m) => m,
            _ => {
                d.error(n.pos, "vars: expected a mapping of names to default values");
                Default::default()
            }
        },
        None => Default::default(),
    };

    if let Some(Trigger::Watch(_)) = &trigger
        && !f.has("ingest")
        && !f.has("chat")
    {
        d.error(
            f.pos,
            "a rule with `on.watch` needs `ingest`, `chat`, or both",
        );
    }
    if f.has("ingest") && !matches!(trigger, Some(Trigger::Watch(_)) | None) {
        d.error(
            f.get("ingest").map_or(f.pos, |n| n.pos),
            "ingest: only a rule with `on.watch` ingests files",
        );
    }
    if !matches!(trigger, Some(Trigger::Watch(_)) | None) && !f.has("chat") {
        d.error(
            f.pos,
            "this trigger needs `chat` (what should run when it fires?)",
        );
    }

    // Templates, checked against what this trigger provides.
    // By the trigger's key, so templates are checked even when the
    // trigger's own settings have errors.
    let mut allowed: Vec<&str> = crate::triggers::COMMON.to_vec();
    let kind = match f.get("on").map(|n| &n.value) {
        Some(Value::Map(entries)) if entries.len() == 1 => entries[0].0.scalar_text(),
        _ => None,
    };
    if let Some(kind) = kind
        .as_deref()
        .and_then(crate::triggers::TriggerKind::parse)
    {
        allowed.extend(kind.context_names());
    }
    if let Some(chat_node) = f.get("chat")
        && let Value::Map(entries) = &chat_node.value
    {
        for (k, v) in entries {
            if matches!(k.scalar_text().as_deref(), Some("prompt" | "system")) {
                check_template(
                    v,
                    &format!("chat.{}", k.scalar_text().unwrap_or_default()),
                    &allowed,
                    d,
                );
            }
        }
    }
    let deliver = match f.get("deliver") {
        Some(n) => {
            let mut body_allowed = allowed.clone();
            body_allowed.extend(template::RESULT);
            decode_deliver(n, known, &body_allowed, d)
        }
        None => Some(Vec::new()),
    };

    Some(Rule {
        name: name?,
        file: file.to_path_buf(),
        trigger: trigger?,
        ingest,
        chat,
        deliver: deliver?,
        vars,
    })
}

fn decode_trigger(node: &Node, d: &mut Decoder) -> Option<Trigger> {
    let f = d.fields(
        node,
        "on",
        &["watch", "schedule", "webhook", "ingested", "manual"],
    )?;
    let given: Vec<&str> = f.keys().collect();
    if given.len() != 1 {
        d.error(
            f.pos,
            format!(
                "on: exactly one trigger (watch, schedule, webhook, ingested, manual), found {}",
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            ),
        );
        return None;
    }
    let n = f.get(given[0])?;
    match given[0] {
        "watch" => decode_watch(n, d).map(Trigger::Watch),
        "schedule" => decode_schedule(n, d).map(Trigger::Schedule),
        "webhook" => decode_webhook(n, d).map(Trigger::Webhook),
        "ingested" => {
            let g = d.fields(n, "on.ingested", &["rule"])?;
            match g.get("rule") {
                Some(r) => d
                    .non_empty_string(r, "on.ingested.rule")
                    .map(|rule| Trigger::Ingested { rule }),
                None => {
                    d.error(g.pos, "on.ingested: `rule` is required");
                    None
                }
            }
        }
        _ => Some(Trigger::Manual),
    }
}

fn decode_watch(node: &Node, d: &mut Decoder) -> Option<Watch> {
    let f = d.fields(
        node,
        "on.watch",
        &[
            "path",
            "include",
            "exclude",
            "settle",
            "settle_closed",
            "poll",
            "max_size",
            "on_delete",
            "reconcile",
        ],
    )?;
    let path = match f.get("path") {
        Some(n) => d.path(n, "on.watch.path"),
        None => {
            d.error(f.pos, "on.watch: `path` is required");
            None
        }
    };
    let mut globs = |key: &str| -> Option<Vec<String>> {
        let Some(n) = f.get(key) else {
            return Some(Vec::new());
        };
        let list = d.string_list(n, &format!("on.watch.{key}"))?;
        for g in &list {
            if let Err(e) = globset::Glob::new(g) {
                d.error(
                    n.pos,
                    format!("on.watch.{key}: `{g}` is not a valid glob: {e}"),
                );
                return None;
            }
        }
        Some(list)
    };
    let include = globs("include");
    let exclude = globs("exclude");
    let settle = f.get("settle").map_or(Some(Duration::from_secs(2)), |n| {
        d.duration(n, "on.watch.settle")
    });
    let settle_closed = match f.get("settle_closed") {
        Some(n) => d.duration(n, "on.watch.settle_closed").and_then(|c| {
            match settle {
                Some(s) if c > s => {
                    d.error(
                        n.pos,
                        format!(
                            "on.watch.settle_closed: {} is longer than `settle` ({}); a closed file never waits longer than an open one",
                            crate::config::units::format_duration(c),
                            crate::config::units::format_duration(s)
                        ),
                    );
                    None
                }
                _ => Some(Some(c)),
            }
        }),
        None => Some(None),
    };
    let poll = match f.get("poll") {
        Some(n) => d.duration(n, "on.watch.poll").map(Some),
        None => Some(None),
    };
    let max_size = f
        .get("max_size")
        .map_or(Some(DEFAULT_MAX_SIZE), |n| d.size(n, "on.watch.max_size"));
    let on_delete = f.get("on_delete").map_or(Some(OnDelete::Remove), |n| {
        d.one_of(
            n,
            "on.watch.on_delete",
            &[("remove", OnDelete::Remove), ("keep", OnDelete::Keep)],
        )
    });
    let reconcile = f
        .get("reconcile")
        .map_or(Some(Duration::from_secs(900)), |n| {
            d.duration(n, "on.watch.reconcile")
        });
    if let Some(Some(p)) = poll.as_ref()
        && p.is_zero()
    {
        d.error(
            f.get("poll").map_or(f.pos, |n| n.pos),
            "on.watch.poll: must be above zero",
        );
    }
    Some(Watch {
        path: path?,
        include: include?,
        exclude: exclude?,
        settle: settle?,
        settle_closed: settle_closed?,
        poll: poll?,
        max_size: max_size?,
        on_delete: on_delete?,
        reconcile: reconcile?,
    })
}

fn decode_schedule(node: &Node, d: &mut Decoder) -> Option<Schedule> {
    let f = d.fields(
        node,
        "on.schedule",
        &["cron", "timezone", "missed", "overlap"],
    )?;
    let cron = match f.get("cron") {
        Some(n) => {
            let s = d.non_empty_string(n, "on.schedule.cron")?;
            match crate::triggers::schedule::parse(&s) {
                Ok(_) => Some(s),
                Err(e) => {
                    d.error(n.pos, format!("on.schedule.cron: `{s}`: {e}"));
                    None
                }
            }
        }
        None => {
            d.error(f.pos, "on.schedule: `cron` is required");
            None
        }
    };
    let timezone = match f.get("timezone") {
        Some(n) => {
            let s = d.string(n, "on.schedule.timezone")?;
            match s.parse::<chrono_tz::Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    d.error(
                        n.pos,
                        format!("on.schedule.timezone: `{s}` is not an IANA time zone like Europe/Zurich"),
                    );
                    None
                }
            }
        }
        None => Some(chrono_tz::UTC),
    };
    let missed = f.get("missed").map_or(Some(Missed::RunOnce), |n| {
        d.one_of(
            n,
            "on.schedule.missed",
            &[("skip", Missed::Skip), ("run_once", Missed::RunOnce)],
        )
    });
    let overlap = f.get("overlap").map_or(Some(Overlap::Skip), |n| {
        d.one_of(
            n,
            "on.schedule.overlap",
            &[("skip", Overlap::Skip), ("queue", Overlap::Queue)],
        )
    });
    Some(Schedule {
        cron: cron?,
        timezone: timezone?,
        missed: missed?,
        overlap: overlap?,
    })
}

fn decode_webhook(node: &Node, d: &mut Decoder) -> Option<WebhookTrigger> {
    let f = d.fields(
        node,
        "on.webhook",
        &[
            "path",
            "auth",
            "max_body",
            "headers",
            "rate_limit",
            "max_in_flight",
        ],
    )?;
    let max_in_flight = match f.get("max_in_flight") {
        None => Some(DEFAULT_HOOK_IN_FLIGHT),
        Some(n) => d.count(n, "on.webhook.max_in_flight", 1, 10_000),
    };
    let rate_per_sec = match f.get("rate_limit") {
        None => Some(DEFAULT_HOOK_RATE),
        Some(n) => {
            let text = d.string(n, "on.webhook.rate_limit")?;
            let rate = parse_rate(&text);
            if rate.is_none() {
                d.error(
                    n.pos,
                    format!(
                        "on.webhook.rate_limit: `{text}` is not a rate like `20/s` or `600/min`"
                    ),
                );
            }
            rate
        }
    };
    let headers = match f.get("headers") {
        None => Some(Vec::new()),
        Some(n) => d.string_list(n, "on.webhook.headers").map(|names| {
            let mut ok = Vec::new();
            for name in names {
                let lower = name.to_ascii_lowercase();
                if axum::http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                    d.error(n.pos, format!("on.webhook.headers: `{name}` is not a header name"));
                } else if is_credential_header(&lower) {
                    d.error(
                        n.pos,
                        format!("on.webhook.headers: `{name}` carries credentials and is never passed on"),
                    );
                } else {
                    ok.push(lower);
                }
            }
            ok
        }),
    };
    let path = match f.get("path") {
        Some(n) => {
            let p = d.non_empty_string(n, "on.webhook.path")?;
            let p = p.trim_matches('/').to_string();
            if p.is_empty()
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.'))
            {
                d.error(
                    n.pos,
                    "on.webhook.path: use letters, digits, `-`, `_`, `.` and `/`",
                );
                None
            } else {
                Some(p)
            }
        }
        None => {
            d.error(f.pos, "on.webhook: `path` is required");
            None
        }
    };
    let max_body = f
        .get("max_body")
        .map_or(Some(1 << 20), |n| d.size(n, "on.webhook.max_body"));
    let (scheme, secret, header) = match f.get("auth") {
        None => {
            d.error(
                f.pos,
                "on.webhook: `auth` is required (use `scheme: none` to accept unsigned calls)",
            );
            (None, None, None)
        }
        Some(n) => {
            let a = d.fields(
                n,
                "on.webhook.auth",
                &["scheme", "secret", "secret_file", "header"],
            )?;
            let scheme = match a.get("scheme") {
                Some(s) => d.one_of(
                    s,
                    "on.webhook.auth.scheme",
                    &[
                        ("standard-webhooks", AuthScheme::StandardWebhooks),
                        ("hmac-sha256", AuthScheme::HmacSha256),
                        ("github", AuthScheme::Github),
                        ("bearer", AuthScheme::Bearer),
                        ("none", AuthScheme::None),
                    ],
                ),
                None => {
                    d.error(a.pos, "on.webhook.auth: `scheme` is required");
                    None
                }
            };
            let secret = d.secret(&a, "secret", "on.webhook.auth");
            let header = match a.get("header") {
                Some(h) => d.non_empty_string(h, "on.webhook.auth.header"),
                None => None,
            };
            match scheme {
                Some(AuthScheme::None) if secret.is_some() => {
                    d.error(a.pos, "on.webhook.auth: scheme `none` takes no secret")
                }
                Some(s)
                    if s != AuthScheme::None
                        && secret.is_none()
                        && !a.has("secret")
                        && !a.has("secret_file") =>
                {
                    d.error(
                        a.pos,
                        "on.webhook.auth: this scheme needs `secret` or `secret_file`",
                    )
                }
                Some(s) if s != AuthScheme::HmacSha256 && a.has("header") => d.error(
                    a.get("header").map_or(a.pos, |h| h.pos),
                    "on.webhook.auth.header: only for scheme `hmac-sha256`",
                ),
                _ => {}
            }
            if scheme == Some(AuthScheme::HmacSha256) && header.is_none() && !a.has("header") {
                // Alertmanager-style senders put it here.
                (scheme, secret, Some("X-Signature".to_string()))
            } else {
                (scheme, secret, header)
            }
        }
    };
    Some(WebhookTrigger {
        path: path?,
        scheme: scheme?,
        secret,
        header,
        max_body: max_body?,
        headers: headers?,
        rate_per_sec: rate_per_sec?,
        max_in_flight: max_in_flight?,
    })
}

fn decode_collection(node: &Node, what: &str, d: &mut Decoder) -> Option<CollectionRef> {
    match &node.value {
        Value::Map(_) => {
            let f = d.fields(node, what, &["id", "name"])?;
            match (f.get("id"), f.get("name")) {
                (Some(id), None) => d
                    .non_empty_string(id, &format!("{what}.id"))
                    .map(CollectionRef::Id),
                (None, Some(n)) => d
                    .non_empty_string(n, &format!("{what}.name"))
                    .map(CollectionRef::Name),
                _ => {
                    d.error(f.pos, format!("{what}: give a name, or `{{id: …}}`"));
                    None
                }
            }
        }
        _ => d.non_empty_string(node, what).map(CollectionRef::Name),
    }
}

fn decode_ingest(node: &Node, d: &mut Decoder) -> Option<Ingest> {
    let f = d.fields(
        node,
        "ingest",
        &[
            "collection",
            "access",
            "description",
            "on_missing_collection",
            "tree",
        ],
    )?;
    let collection = match f.get("collection") {
        Some(n) => decode_collection(n, "ingest.collection", d),
        None => {
            d.error(f.pos, "ingest: `collection` is required");
            None
        }
    };
    let access = f
        .get("access")
        .map_or(Some(Vec::new()), |n| decode_access(n, d));
    let description = match f.get("description") {
        Some(n) => d.string(n, "ingest.description").and_then(|source| {
            match template::check(&source, DESCRIPTION_VARS)
                .and_then(|()| template::Template::compile(&source))
            {
                Ok(t) => Some(Some(t)),
                Err(e) => {
                    d.error(n.pos, format!("ingest.description: {}", e.message));
                    None
                }
            }
        }),
        None => Some(None),
    };
    let on_missing_collection =
        f.get("on_missing_collection")
            .map_or(Some(OnMissingCollection::Recreate), |n| {
                d.one_of(
                    n,
                    "ingest.on_missing_collection",
                    &[
                        ("recreate", OnMissingCollection::Recreate),
                        ("pause", OnMissingCollection::Pause),
                    ],
                )
            });
    let tree = f.get("tree").map_or(Some(Tree::Mirror), |n| {
        d.one_of(
            n,
            "ingest.tree",
            &[("mirror", Tree::Mirror), ("flat", Tree::Flat)],
        )
    });
    Some(Ingest {
        collection: collection?,
        access: access?,
        description: description?,
        on_missing_collection: on_missing_collection?,
        tree: tree?,
    })
}

/// `ingest.access`: `- {group: NAME | user: EMAIL, permission: read|write}`
/// or `- public: read`.
fn decode_access(node: &Node, d: &mut Decoder) -> Option<Vec<Grant>> {
    const WHAT: &str = "ingest.access";
    let Value::Seq(items) = &node.value else {
        d.error(
            node.pos,
            "ingest.access: expected a list like `- {group: Staff, permission: read}`",
        );
        return None;
    };
    let mut out: Vec<Grant> = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(f) = d.fields(item, WHAT, &["group", "user", "public", "permission"]) else {
            ok = false;
            continue;
        };
        let permission = |n: &Node, d: &mut Decoder| {
            d.one_of(
                n,
                &format!("{WHAT}.permission"),
                &[("read", Permission::Read), ("write", Permission::Write)],
            )
        };
        let grant = match (f.get("group"), f.get("user"), f.get("public")) {
            (Some(g), None, None) => d
                .non_empty_string(g, &format!("{WHAT}.group"))
                .map(Principal::Group),
            (None, Some(u), None) => {
                d.non_empty_string(u, &format!("{WHAT}.user"))
                    .and_then(|email| {
                        if email.contains('@') {
                            Some(Principal::User(email.to_lowercase()))
                        } else {
                            d.error(u.pos, format!("{WHAT}.user: `{email}` is no email address"));
                            None
                        }
                    })
            }
            (None, None, Some(p)) => {
                if f.get("permission").is_some() {
                    d.error(
                        f.pos,
                        format!("{WHAT}: `public` takes its permission itself: `- public: read`"),
                    );
                    None
                } else if permission(p, d) == Some(Permission::Read) {
                    Some(Principal::Public)
                } else {
                    d.error(
                        p.pos,
                        format!("{WHAT}.public: only `read` (Open WebUI 0.6 cannot give everyone write access)"),
                    );
                    None
                }
            }
            _ => {
                d.error(
                    f.pos,
                    format!("{WHAT}: each entry names one `group`, `user` or `public`"),
                );
                None
            }
        };
        let perm = match (&grant, f.get("permission")) {
            (Some(Principal::Public), _) => Some(Permission::Read),
            (_, Some(n)) => permission(n, d),
            (_, None) => Some(Permission::Read),
        };
        match (grant, perm) {
            (Some(to), Some(permission)) => {
                if out.iter().any(|g| g.to == to) {
                    d.error(
                        f.pos,
                        format!("{WHAT}: {} is named twice", principal_shown(&to)),
                    );
                    ok = false;
                } else {
                    out.push(Grant {
                        to,
                        permission,
                        pos: f.pos,
                    });
                }
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn principal_shown(p: &Principal) -> String {
    match p {
        Principal::Group(g) => format!("group `{g}`"),
        Principal::User(u) => format!("user `{u}`"),
        Principal::Public => "`public`".into(),
    }
}

fn decode_chat(node: &Node, d: &mut Decoder) -> Option<Chat> {
    let f = d.fields(
        node,
        "chat",
        &[
            "model",
            "collections",
            "system",
            "prompt",
            "options",
            "save_chat",
            "timeout",
        ],
    )?;
    let model = match f.get("model") {
        Some(n) => d.non_empty_string(n, "chat.model"),
        None => {
            d.error(f.pos, "chat: `model` is required");
            None
        }
    };
    let prompt = match f.get("prompt") {
        Some(n) => d.non_empty_string(n, "chat.prompt"),
        None => {
            d.error(f.pos, "chat: `prompt` is required");
            None
        }
    };
    // Checked against the trigger (with positions) by `decode_rule`; a
    // template that does not compile is reported there.
    let system = f
        .get("system")
        .and_then(|n| d.string(n, "chat.system"))
        .map(|s| template::Template::compile(&s).ok());
    let prompt = prompt.and_then(|p| template::Template::compile(&p).ok());
    let collections = match f.get("collections") {
        Some(n) => match &n.value {
            Value::Seq(items) => items
                .iter()
                .map(|i| decode_collection(i, "chat.collections", d))
                .collect::<Vec<_>>()
                .into_iter()
                .collect(),
            _ => decode_collection(n, "chat.collections", d).map(|c| vec![c]),
        },
        None => Some(Vec::new()),
    };
    let options = match f.get("options") {
        Some(n) => match n.to_json() {
            serde_json::Value::Object(m) => {
                const RESERVED: &[&str] = &["model", "messages", "stream", "files"];
                if let Some(k) = m.keys().find(|k| RESERVED.contains(&k.as_str())) {
                    d.error(
                        n.pos,
                        format!("chat.options: `{k}` is set by ferry, not by options"),
                    );
                }
                Some(m)
            }
            _ => {
                d.error(n.pos, "chat.options: expected a mapping");
                None
            }
        },
        None => Some(Default::default()),
    };
    let save_chat = f
        .get("save_chat")
        .map_or(Some(false), |n| d.bool(n, "chat.save_chat"));
    let timeout = f
        .get("timeout")
        .map_or(Some(Duration::from_secs(300)), |n| {
            d.duration(n, "chat.timeout")
        });
    Some(Chat {
        model: model?,
        collections: collections?,
        system: match system {
            Some(compiled) => Some(compiled?),
            None => None,
        },
        prompt: prompt?,
        options: options?,
        save_chat: save_chat?,
        timeout: timeout?,
    })
}

fn decode_deliver(
    node: &Node,
    known: &Known,
    allowed: &[&str],
    d: &mut Decoder,
) -> Option<Vec<Deliver>> {
    let Value::Seq(items) = &node.value else {
        d.error(node.pos, "deliver: expected a list of `- to: NAME` entries");
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        let Some(f) = d.fields(item, "deliver", &["to", "body", "events"]) else {
            continue;
        };
        let to = match f.get("to") {
            Some(n) => {
                let to = d.non_empty_string(n, "deliver.to");
                if let (Some(t), Some(hooks)) = (&to, known.webhooks)
                    && !hooks.contains(t)
                {
                    let names: Vec<_> = hooks.iter().cloned().collect();
                    d.error(
                        n.pos,
                        format!(
                            "deliver.to: no webhook named `{t}` in {} (known: {})",
                            known.config_path.display(),
                            if names.is_empty() {
                                "none".into()
                            } else {
                                names.join(", ")
                            }
                        ),
                    );
                }
                to
            }
            None => {
                d.error(f.pos, "deliver: `to` is required");
                None
            }
        };
        let body = f.get("body").and_then(|n| {
            check_template(n, "deliver.body", allowed, d);
            let body = d.string(n, "deliver.body")?;
            if template::is_json_body(&body)
                && let Some(line) = template::quoted_interpolation(&body)
            {
                d.error(
                    Pos {
                        line: n.pos.line + line - 1,
                        col: n.pos.col,
                    },
                    "deliver.body: a JSON body writes each `{{ … }}` as a JSON value (quoted and escaped); \
                     write `\"text\": {{ answer }}`, not `\"text\": \"{{ answer }}\"`",
                );
            }
            template::Template::compile_body(&body).ok()
        });
        let events = match f.get("events") {
            Some(n) => d.string_list(n, "deliver.events").inspect(|list| {
                for e in list {
                    if !EVENT_TYPES.contains(&e.as_str()) {
                        d.error(
                            n.pos,
                            format!(
                                "deliver.events: `{e}` is not one of {}",
                                EVENT_TYPES.join(", ")
                            ),
                        );
                    }
                }
            }),
            None => Some(Vec::new()),
        };
        if let (Some(to), Some(events)) = (to, events) {
            out.push(Deliver { to, body, events });
        }
    }
    Some(out)
}
