//! A configuration and its rules, loaded together: either every file is
//! valid, or every problem of every file is reported and nothing runs.
//! Here rather than in `config`, so that `config` (the file format and its
//! decoder) and `rules` (which decode with it) do not depend on each other.

use std::path::Path;

use crate::config::{Config, Diagnostic, Environment, load_config, peek_rules, rule_files};
use crate::rules::{self, Rule};

/// A config and its rules, all valid.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub rules: Vec<Rule>,
}

/// Loads the config file and every rule it names; all problems at once.
/// Rule files are checked even when the main file has errors, so that one
/// `ferry check` shows everything.
pub fn load(path: &Path, env: &Environment) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let config = load_config(path, env).map_err(|d| diags.extend(d)).ok();
    let (source, webhooks) = match &config {
        Some(c) => (
            Some(c.rules.clone()),
            Some(c.webhooks.keys().cloned().collect()),
        ),
        None => peek_rules(path, env),
    };
    let mut rules = Vec::new();
    if let Some(source) = source {
        match rule_files(&source, path) {
            Ok(files) => match rules::load_all(&files, path, webhooks.as_ref(), env) {
                Ok(r) => rules = r,
                Err(d) => diags.extend(d),
            },
            Err(d) => diags.push(d),
        }
    }
    match config {
        Some(config) if diags.is_empty() => Ok(Loaded { config, rules }),
        _ => Err(diags),
    }
}
