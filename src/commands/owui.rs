//! Commands that talk to Open WebUI directly: `whoami`, `models`, `pull`,
//! `chats` and `ask`.

use std::process::ExitCode;

use anyhow::Context as _;

use super::{client, display_url, out, outln};
use crate::config::Config;
use crate::openwebui::ChatRequest;
use crate::rules::CollectionRef;
use crate::setup::Loaded;
use crate::store::Store;
use crate::worker::ingest;

pub(super) fn identity_line(who: &crate::openwebui::Identity) -> String {
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

pub(super) async fn whoami(config: &Config) -> anyhow::Result<ExitCode> {
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

pub(super) async fn models(config: &Config) -> anyhow::Result<ExitCode> {
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

pub(super) async fn pull(config: &Config, model: &str) -> anyhow::Result<ExitCode> {
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

pub(super) async fn chats(config: &Config) -> anyhow::Result<ExitCode> {
    let client = client(config)?;
    for c in client.chats().await? {
        let when = c
            .updated_at
            .map(|t| crate::clock::rfc3339_secs(t.saturating_mul(1000)))
            .unwrap_or_default();
        outln!("{}\t{when}\t{}", c.id, c.title.unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) struct AskArgs {
    pub model: Option<String>,
    pub collections: Vec<String>,
    pub vars: Vec<(String, String)>,
    pub rule: Option<String>,
    pub no_stream: bool,
    pub system: Option<String>,
    pub save: bool,
    pub prompt: Option<String>,
}

pub(super) async fn ask(loaded: &Loaded, args: AskArgs) -> anyhow::Result<ExitCode> {
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
            collection_refs.extend(chat.collections.iter().cloned());
            // A run by hand, filled as the daemon fills one.
            let now = crate::clock::Clock::system().now_ms();
            let event = crate::triggers::TriggerEvent::Manual {
                vars: super::render::vars_json(&args.vars),
                payload: None,
            };
            let input = event.job(&rule.name, now).input;
            let ctx = crate::worker::chat::run_context(
                None,
                &loaded.rules,
                rule,
                event.kind().as_str(),
                &input,
                now,
            )
            .await;
            let (rule_system, prompt) = crate::worker::chat::render_prompt(rule, &ctx)
                .map_err(|e| anyhow::anyhow!("rule `{name}`: {e}"))?;
            system = system.or(rule_system);
            prompt
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
                ingest::resolve_collection(
                    &client,
                    &store,
                    c,
                    None,
                    crate::clock::Clock::system().now_ms(),
                )
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
