//! Checks beyond one field: across all rules (unique names and hook
//! paths, `ingested` pointing at a rule that ingests), and templates
//! against what the rule's trigger provides.

use std::collections::HashMap;
use std::path::Path;

use super::model::Rule;
use super::template;
use crate::config::decode::Decoder;
use crate::config::yaml::{Diagnostic, Node, Pos};
use crate::triggers::Trigger;

/// Checks that need all rules: unique names and hook paths, `ingested`
/// pointing at a rule that ingests.
pub(super) fn cross_check(rules: &[(Rule, Pos)], diags: &mut Vec<Diagnostic>) {
    let mut names: HashMap<&str, &Path> = HashMap::new();
    let mut paths: HashMap<&str, &str> = HashMap::new();
    let mut err = |rule: &Rule, pos: Pos, message: String| {
        diags.push(Diagnostic {
            file: rule.file.as_path().into(),
            pos,
            message,
        })
    };
    for (rule, pos) in rules {
        if let Some(other) = names.insert(&rule.name, &rule.file) {
            err(
                rule,
                *pos,
                format!(
                    "rule name `{}` is also used by {}",
                    rule.name,
                    other.display()
                ),
            );
        }
        if let Trigger::Webhook(w) = &rule.trigger
            && let Some(other) = paths.insert(&w.path, &rule.name)
        {
            err(
                rule,
                *pos,
                format!("webhook path `{}` is also used by rule `{other}`", w.path),
            );
        }
    }
    for (rule, pos) in rules {
        if let Trigger::Ingested { rule: source } = &rule.trigger {
            match rules.iter().find(|(r, _)| &r.name == source) {
                None => err(
                    rule,
                    *pos,
                    format!("on.ingested.rule: no rule named `{source}`"),
                ),
                Some((r, _)) if r.ingest.is_none() => err(
                    rule,
                    *pos,
                    format!("on.ingested.rule: rule `{source}` does not ingest anything"),
                ),
                Some(_) => {}
            }
        }
    }
}

pub(super) fn check_template(node: &Node, what: &str, allowed: &[&str], d: &mut Decoder) {
    let Some(source) = node.scalar_text() else {
        return;
    };
    if let Err(p) = template::check(&source, allowed) {
        // A block scalar's (`|`) position is its first content line.
        // "Unexpected end of input" points past the last line.
        let last = source.trim_end().lines().count().max(1);
        let pos = match p.line_in_template.map(|l| l.min(last)) {
            Some(l) => Pos {
                line: node.pos.line + l - 1,
                col: node.pos.col,
            },
            None => node.pos,
        };
        d.error(pos, format!("{what}: template {}", p.message));
    }
}
