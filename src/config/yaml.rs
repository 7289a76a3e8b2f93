//! A YAML tree that remembers where every node came from, and a decoder
//! that collects every problem instead of stopping at the first.
//!
//! Why not serde: a derived `Deserialize` stops at the first error and knows
//! no positions for the errors found after parsing (an unknown webhook name, a
//! bad cron expression). `ferry check` must print *all* of them with
//! `file:line:col`, so config and rules are decoded by hand from this tree.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

/// 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar, for fields that are strings by nature but may
    /// be written unquoted (`model: 3`, `cron: 0 9 * * *`).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Plain JSON for pass-through values (`options:`, `vars:`).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: Arc<Path>,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.pos.line,
            self.pos.col,
            self.message
        )
    }
}

/// Collects diagnostics for one file. Decoding goes on after an error so
/// that the user sees everything at once.
pub struct Diags {
    pub file: Arc<Path>,
    pub list: Vec<Diagnostic>,
}

impl Diags {
    pub fn new(file: &Path) -> Self {
        Diags {
            file: Arc::from(file),
            list: Vec::new(),
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.list.push(Diagnostic {
            file: self.file.clone(),
            pos,
            message: message.into(),
        });
    }

    pub fn dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Parses one YAML document. An empty file is `Null` at 1:1.
pub fn parse(text: &str, diags: &mut Diags) -> Option<Node> {
    match MarkedYamlOwned::load_from_str(text) {
        Ok(docs) => {
            if docs.len() > 1 {
                let pos = convert_pos(&docs[1]);
                diags.error(pos, "one YAML document per file, found more");
            }
            Some(match docs.into_iter().next() {
                Some(doc) => convert(doc),
                None => Node {
                    value: Value::Null,
                    pos: Pos { line: 1, col: 1 },
                },
            })
        }
        Err(e) => {
            let m = e.marker();
            diags.error(
                Pos {
                    line: m.line(),
                    col: m.col() + 1,
                },
                format!("invalid YAML: {}", e.info()),
            );
            None
        }
    }
}

fn convert_pos(node: &MarkedYamlOwned) -> Pos {
    Pos {
        line: node.span.start.line(),
        col: node.span.start.col() + 1,
    }
}

fn convert(node: MarkedYamlOwned) -> Node {
    let pos = convert_pos(&node);
    let value = match node.data {
        YamlDataOwned::Value(s) => match s {
            ScalarOwned::Null => Value::Null,
            ScalarOwned::Boolean(b) => Value::Bool(b),
            ScalarOwned::Integer(i) => Value::Int(i),
            ScalarOwned::FloatingPoint(f) => Value::Float(f.into_inner()),
            ScalarOwned::String(s) => Value::Str(s),
        },
        YamlDataOwned::Representation(s, _, _) => Value::Str(s),
        YamlDataOwned::Sequence(items) => Value::Seq(items.into_iter().map(convert).collect()),
        YamlDataOwned::Mapping(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (convert(k), convert(v)))
                .collect(),
        ),
        YamlDataOwned::Tagged(_, inner) => return convert(*inner),
        YamlDataOwned::Alias(_) | YamlDataOwned::BadValue => Value::Null,
    };
    Node { value, pos }
}

/// The keys of one mapping, checked against the allowed set when built.
pub struct Fields<'a> {
    pub pos: Pos,
    entries: BTreeMap<String, &'a Node>,
}

impl<'a> Fields<'a> {
    /// `what` names the mapping in messages ("openwebui", "rule").
    pub fn of(node: &'a Node, what: &str, allowed: &[&str], diags: &mut Diags) -> Option<Self> {
        let Value::Map(entries) = &node.value else {
            diags.error(
                node.pos,
                format!("{what}: expected a mapping, found {}", node.kind()),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (key, value) in entries {
            let Some(name) = key.scalar_text() else {
                diags.error(key.pos, format!("{what}: keys must be strings"));
                continue;
            };
            if !allowed.contains(&name.as_str()) {
                let hint = closest(&name, allowed)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                diags.error(
                    key.pos,
                    format!(
                        "{what}: unknown key `{name}`{hint}; allowed: {}",
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            out.insert(name, value);
        }
        Some(Fields {
            pos: node.pos,
            entries: out,
        })
    }

    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .get(key)
            .copied()
            .filter(|n| !matches!(n.value, Value::Null))
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|(_, n)| !matches!(n.value, Value::Null))
            .map(|(k, _)| k.as_str())
    }
}

/// The allowed key nearest to a typo, if it is near enough to be a hint.
fn closest<'s>(word: &str, candidates: &[&'s str]) -> Option<&'s str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let mut d = Diags::new(Path::new("x.yaml"));
        let node = parse("a: 1\nb:\n  c: [x, y]\n", &mut d).unwrap();
        let Value::Map(entries) = &node.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(entries[0].1.pos, Pos { line: 1, col: 4 });
        let Value::Map(inner) = &entries[1].1.value else {
            panic!("not a map")
        };
        assert_eq!(inner[0].0.pos, Pos { line: 3, col: 3 });
    }

    #[test]
    fn syntax_error_has_position() {
        let mut d = Diags::new(Path::new("x.yaml"));
        assert!(parse("a: [1, 2\nb: 3\n", &mut d).is_none());
        assert_eq!(d.list.len(), 1);
        assert!(d.list[0].pos.line >= 1);
        assert!(d.list[0].to_string().starts_with("x.yaml:"));
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let mut d = Diags::new(Path::new("x.yaml"));
        let node = parse("urll: x\n", &mut d).unwrap();
        Fields::of(&node, "openwebui", &["url", "api_key"], &mut d).unwrap();
        assert_eq!(d.list.len(), 1);
        assert!(
            d.list[0].message.contains("did you mean `url`"),
            "{}",
            d.list[0]
        );
    }
}
