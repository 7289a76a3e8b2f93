//! `ferry init`: a starter config and one watch rule, written so that
//! `ferry check` passes once the API key is in place, and the next step
//! printed. Nothing is overwritten without `--force`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::{EXIT_CONFIG, outln};

pub(super) fn init(
    url: &str,
    folder: &Path,
    dir: Option<PathBuf>,
    collection: Option<String>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let parsed = match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => {
            eprintln!("error: --url `{url}` is not an http(s) URL, e.g. http://localhost:3000");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let folder = std::path::absolute(folder).context("cannot make the folder's path absolute")?;
    let dir = dir.unwrap_or_else(|| {
        if rustix::process::geteuid().is_root() {
            PathBuf::from("/etc/ferry")
        } else {
            PathBuf::from("ferry")
        }
    });
    let collection = collection.unwrap_or_else(|| {
        folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "Inbox".into())
    });
    let rule_name: String = collection
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    let rule_name = if rule_name.is_empty() {
        "inbox".into()
    } else {
        rule_name
    };
    let state = if dir == Path::new("/etc/ferry") {
        PathBuf::from("/var/lib/ferry/ferry.db")
    } else {
        std::path::absolute(dir.join("state/ferry.db"))?
    };
    let config = format!(
        "# Written by `ferry init`; every key is in README.md (Configuration).\n\
         openwebui:\n  url: {url}\n  \
         # An API key (Open WebUI: Settings → Account → API keys; the server\n  \
         # needs ENABLE_API_KEYS=true), in credentials/openwebui_api_key.\n  \
         api_key_file: openwebui_api_key\n\
         state:\n  database: {state}\n\
         server:\n  listen: 127.0.0.1:8787\n\
         rules: rules\n",
        url = parsed.as_str().trim_end_matches('/'),
        state = yaml_string(&state.display().to_string()),
    );
    let rule = format!(
        "# Mirrors {folder} into the knowledge base \"{collection}\": new, changed,\n\
         # renamed and deleted files, and its subfolders as directories.\n\
         on:\n  watch:\n    path: {path}\n\
         ingest:\n  collection: {name}\n",
        folder = folder.display(),
        path = yaml_string(&folder.display().to_string()),
        name = yaml_string(&collection),
    );
    let files = [
        (dir.join("ferry.yaml"), config),
        (dir.join("rules").join(format!("{rule_name}.yaml")), rule),
    ];
    if !force && let Some((existing, _)) = files.iter().find(|(p, _)| p.exists()) {
        eprintln!(
            "error: {} exists; nothing was written (--force overwrites)",
            existing.display()
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    for (path, text) in &files {
        std::fs::create_dir_all(path.parent().expect("has a parent"))
            .with_context(|| format!("cannot create {}", path.parent().unwrap().display()))?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        outln!("wrote {}", path.display());
    }
    let credentials = dir.join("credentials");
    std::fs::create_dir_all(&credentials)
        .with_context(|| format!("cannot create {}", credentials.display()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o700))?;
    }
    let key = credentials.join("openwebui_api_key");
    outln!("next: put an Open WebUI API key into {}", key.display());
    outln!("      (Settings → Account → API keys), then:");
    outln!(
        "      ferry check --connect --config {}",
        dir.join("ferry.yaml").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A YAML scalar that stays the given text (quoted when it would not).
fn yaml_string(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || " /._-+@".contains(c))
        && !s.starts_with([' ', '-'])
        && !s.ends_with(' ');
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}
