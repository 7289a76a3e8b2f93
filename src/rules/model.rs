//! What a rule is, once decoded: its trigger, what it ingests, its chat,
//! its deliveries; and the set of rules in force.

use std::path::PathBuf;
use std::time::Duration;

use super::template::Template;
use crate::triggers::Trigger;

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub file: PathBuf,
    pub trigger: Trigger,
    pub ingest: Option<Ingest>,
    pub chat: Option<Chat>,
    pub deliver: Vec<Deliver>,
    pub vars: serde_json::Map<String, serde_json::Value>,
}

impl Rule {
    /// The producer this rule needs running (a watcher, a timer), if any:
    /// a watch rule that ingests or chats, a schedule that chats.
    pub fn producer(&self) -> Option<crate::triggers::Producer> {
        self.trigger
            .producer(&self.name, self.ingest.is_some(), self.chat.is_some())
    }

    /// What [`crate::triggers::context`] needs of the rule.
    pub fn view(&self) -> crate::triggers::RuleView<'_> {
        crate::triggers::RuleView {
            name: &self.name,
            trigger: &self.trigger,
            vars: &self.vars,
        }
    }
}

/// The rules in force, swapped whole on reload.
#[derive(Debug, Default)]
pub struct RuleSet(std::sync::RwLock<std::sync::Arc<Vec<Rule>>>);

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        RuleSet(std::sync::RwLock::new(std::sync::Arc::new(rules)))
    }

    pub fn all(&self) -> std::sync::Arc<Vec<Rule>> {
        self.0.read().expect("not poisoned").clone()
    }

    pub fn set(&self, rules: Vec<Rule>) {
        *self.0.write().expect("not poisoned") = std::sync::Arc::new(rules);
    }

    pub fn get(&self, name: &str) -> Option<Rule> {
        self.all().iter().find(|r| r.name == name).cloned()
    }
}

/// A knowledge base named by the user, or pinned by id (names are not
/// unique in Open WebUI).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CollectionRef {
    Name(String),
    Id(String),
}

impl std::fmt::Display for CollectionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CollectionRef::Name(n) => f.write_str(n),
            CollectionRef::Id(id) => write!(f, "{{id: {id}}}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ingest {
    pub collection: CollectionRef,
    /// Who may see the collection besides its owner (and admins): nobody
    /// when empty. Applied to collections ferry created, on creation and
    /// at every start and reload.
    pub access: Vec<Grant>,
    /// The collection's description, a template over `rule` and
    /// `collection`.
    pub description: Option<Template>,
    /// What happens when the collection is deleted in Open WebUI.
    pub on_missing_collection: OnMissingCollection,
    /// How a watched folder's subfolders appear in the collection.
    pub tree: Tree,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tree {
    /// Subfolders become the collection's directories where the server
    /// has them (0.9.6+); elsewhere a file's name carries its folder path.
    #[default]
    Mirror,
    /// Every file at the collection's top under its own name.
    Flat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissingCollection {
    /// Made again (shared and described as the rule says), every file
    /// linked into it again.
    Recreate,
    /// The rule pauses until a collection of that name is there again.
    Pause,
}

/// One `ingest.access` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub to: Principal,
    pub permission: Permission,
    /// Where it is written, for `ferry check --connect`.
    pub pos: crate::config::Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Principal {
    /// A group, by its name in Open WebUI.
    Group(String),
    /// A user, by email.
    User(String),
    /// Every user.
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Write,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
        }
    }
}

/// Names an `ingest.description` template may use.
pub const DESCRIPTION_VARS: &[&str] = &["rule", "collection"];

/// The description a rule's collection gets when none is configured.
pub const DEFAULT_DESCRIPTION: &str = "Kept in sync by ferry";

#[derive(Debug, Clone)]
pub struct Chat {
    pub model: String,
    pub collections: Vec<CollectionRef>,
    pub system: Option<Template>,
    pub prompt: Template,
    pub options: serde_json::Map<String, serde_json::Value>,
    pub save_chat: bool,
    pub timeout: Duration,
}

pub const EVENT_TYPES: &[&str] = &[
    "chat.completed",
    "chat.failed",
    "document.ingested",
    "document.failed",
    "document.removed",
    "document.restored",
    "rule.paused",
    "rule.resumed",
];

/// Events a rule gets only when its `deliver.events` names them.
pub const OPT_IN_EVENTS: &[&str] = &["document.restored", "rule.paused", "rule.resumed"];

#[derive(Debug, Clone)]
pub struct Deliver {
    pub to: String,
    pub body: Option<Template>,
    pub events: Vec<String>,
}

/// The webhook destinations a set of rules uses, for `check` output.
pub fn summary(rule: &Rule) -> std::collections::BTreeMap<&'static str, String> {
    use std::collections::BTreeMap;
    let mut m = BTreeMap::new();
    m.insert("trigger", rule.trigger.kind().to_string());
    if let Some(i) = &rule.ingest {
        m.insert("collection", i.collection.to_string());
    }
    if let Some(c) = &rule.chat {
        m.insert("model", c.model.clone());
    }
    m
}
