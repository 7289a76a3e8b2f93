//! What `/readyz` reports about Open WebUI, as the workers last saw it.
//! The server reads this cell; it never calls Open WebUI itself, so a
//! probe storm cannot reach Open WebUI through ferry, and readiness does
//! not hang on a slow server.

use std::sync::Mutex;

/// How Open WebUI answered the workers' last look.
#[derive(Debug, Default)]
pub struct Health {
    openwebui: Mutex<Seen>,
}

#[derive(Debug, Default, Clone)]
enum Seen {
    /// Not looked at yet.
    #[default]
    Unknown,
    Up {
        version: String,
    },
    Down {
        error: String,
    },
}

impl Health {
    /// Records an answer; true when it changes whether Open WebUI is up.
    pub fn openwebui_up(&self, version: &str) -> bool {
        let mut seen = self.openwebui.lock().expect("not poisoned");
        let changed = !matches!(&*seen, Seen::Up { .. });
        *seen = Seen::Up {
            version: version.to_string(),
        };
        changed
    }

    /// Records a failed look (the error is already redacted); true when it
    /// changes whether Open WebUI is up.
    pub fn openwebui_down(&self, error: String) -> bool {
        let mut seen = self.openwebui.lock().expect("not poisoned");
        let changed = !matches!(&*seen, Seen::Down { .. });
        *seen = Seen::Down { error };
        changed
    }

    /// Why Open WebUI does not count as reachable, if it does not.
    pub fn openwebui_problem(&self) -> Option<String> {
        match &*self.openwebui.lock().expect("not poisoned") {
            Seen::Unknown => Some("openwebui: not checked yet".into()),
            Seen::Up { .. } => None,
            Seen::Down { error } => Some(format!("openwebui: {error}")),
        }
    }

    pub fn openwebui_version(&self) -> Option<String> {
        match &*self.openwebui.lock().expect("not poisoned") {
            Seen::Up { version } => Some(version.clone()),
            _ => None,
        }
    }
}
