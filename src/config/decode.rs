//! Typed reads from a [`super::yaml::Node`]: `${VAR}` interpolation,
//! durations, sizes, enums, secrets. Every failure is recorded in the
//! file's [`Diags`] and answered with `None`, so decoding carries on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::secret::Secret;
use super::units::{parse_duration, parse_size};
use super::yaml::{Diags, Fields, Node, Pos, Value};

/// Where `${VAR}` and `x_file:` look things up. Tests pass their own.
#[derive(Clone, Default)]
pub struct Environment {
    vars: Option<std::collections::HashMap<String, String>>,
}

impl Environment {
    /// The process environment.
    pub fn process() -> Self {
        Environment { vars: None }
    }

    /// A fixed set of variables, for tests.
    pub fn fixed<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Environment {
            vars: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        match &self.vars {
            None => std::env::var(name).ok(),
            Some(map) => map.get(name).cloned(),
        }
    }
}

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
pub fn interpolate(text: &str, env: &Environment) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "unclosed `${` (write `$$` for a literal `$`)".to_string())?;
            let inner = &after[..end];
            let (name, default, alternative) = if let Some((n, d)) = inner.split_once(":-") {
                (n, Some(d), None)
            } else if let Some((n, a)) = inner.split_once(":+") {
                (n, None, Some(a))
            } else {
                (inner, None, None)
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{inner}}}` is not a valid variable reference"));
            }
            let value = match env.get(name).filter(|v| !v.is_empty()) {
                Some(v) => Some(v),
                None => from_file(name, env)?,
            };
            match (value, default, alternative) {
                // `${NAME:+word}`: `word` when NAME is set, else nothing.
                (Some(_), _, Some(a)) => out.push_str(a),
                (None, _, Some(_)) => {}
                (Some(v), _, None) => out.push_str(&v),
                (None, Some(d), None) => out.push_str(d),
                (None, None, None) => {
                    return Err(format!("environment variable `{name}` is not set"));
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `${NAME}` with NAME unset reads the file `$NAME_FILE` names, if that
/// is set (the convention of Docker and compose secrets), without its
/// trailing newline.
fn from_file(name: &str, env: &Environment) -> Result<Option<String>, String> {
    let file_var = format!("{name}_FILE");
    let Some(path) = env.get(&file_var).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    std::fs::read_to_string(&path)
        .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_string()))
        .map_err(|e| format!("`{name}` is unset and `{file_var}` ({path}) cannot be read: {e}"))
}

pub struct Decoder<'e> {
    pub diags: Diags,
    pub env: &'e Environment,
}

impl<'e> Decoder<'e> {
    pub fn new(file: &Path, env: &'e Environment) -> Self {
        Decoder {
            diags: Diags::new(file),
            env,
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.error(pos, message);
    }

    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        Fields::of(node, what, allowed, &mut self.diags)
    }

    /// A string with `${VAR}` expanded. Never echoes the value in errors.
    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        let Some(raw) = node.scalar_text() else {
            self.error(
                node.pos,
                format!("{what}: expected a string, found {}", node.kind()),
            );
            return None;
        };
        match interpolate(&raw, self.env) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(node.pos, format!("{what}: {e}"));
                None
            }
        }
    }

    pub fn non_empty_string(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.string(node, what)?;
        if s.trim().is_empty() {
            self.error(node.pos, format!("{what}: must not be empty"));
            return None;
        }
        Some(s)
    }

    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let s = self.string(node, what)?;
        parse_duration(&s)
            .map_err(|e| self.error(node.pos, format!("{what}: {e}")))
            .ok()
    }

    pub fn size(&mut self, node: &Node, what: &str) -> Option<u64> {
        let s = self.string(node, what)?;
        parse_size(&s)
            .map_err(|e| self.error(node.pos, format!("{what}: {e}")))
            .ok()
    }

    /// `true`/`false`, or a string that says one of them once interpolated
    /// (`${ALLOW:-false}`; empty is false, so `${URL:+true}` works).
    pub fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(_) => match self.string(node, what)?.trim() {
                "true" | "yes" | "on" | "1" => Some(true),
                "false" | "no" | "off" | "0" | "" => Some(false),
                other => {
                    self.error(node.pos, format!("{what}: `{other}` is not true or false"));
                    None
                }
            },
            _ => {
                self.error(node.pos, format!("{what}: expected true or false"));
                None
            }
        }
    }

    pub fn count(&mut self, node: &Node, what: &str, min: i64, max: i64) -> Option<usize> {
        let n = match &node.value {
            Value::Int(i) => Some(*i),
            Value::Str(_) => self.string(node, what).and_then(|s| s.trim().parse().ok()),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n as usize),
            _ => {
                self.error(
                    node.pos,
                    format!("{what}: expected a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    /// One of a fixed set of words.
    pub fn one_of<T: Copy>(&mut self, node: &Node, what: &str, choices: &[(&str, T)]) -> Option<T> {
        let s = self.string(node, what)?;
        match choices.iter().find(|(name, _)| *name == s) {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<_> = choices.iter().map(|(n, _)| *n).collect();
                self.error(
                    node.pos,
                    format!("{what}: `{s}` is not one of {}", names.join(", ")),
                );
                None
            }
        }
    }

    /// A string or a list of strings.
    pub fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Seq(items) => {
                let before = self.diags.list.len();
                let out: Vec<String> = items
                    .iter()
                    .filter_map(|item| self.string(item, what))
                    .collect();
                (self.diags.list.len() == before).then_some(out)
            }
            _ => self.string(node, what).map(|s| vec![s]),
        }
    }

    /// A path, relative ones resolved against the directory of the file.
    pub fn path(&mut self, node: &Node, what: &str) -> Option<PathBuf> {
        let s = self.non_empty_string(node, what)?;
        Some(self.diags.dir().join(s))
    }

    /// A secret given as `key: value` or `key_file: PATH`. Relative paths
    /// resolve against `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`),
    /// else against the file's directory.
    pub fn secret(&mut self, fields: &Fields, key: &str, what: &str) -> Option<Secret> {
        let file_key = format!("{key}_file");
        match (fields.get(key), fields.get(&file_key)) {
            (Some(node), Some(_)) => {
                self.error(
                    node.pos,
                    format!("{what}: give `{key}` or `{file_key}`, not both"),
                );
                None
            }
            (Some(node), None) => {
                let value = self.string(node, &format!("{what}.{key}"))?;
                if value.is_empty() {
                    self.error(node.pos, format!("{what}.{key}: is empty"));
                    return None;
                }
                Some(Secret::new(value))
            }
            (None, Some(node)) => {
                let name = self.non_empty_string(node, &format!("{what}.{file_key}"))?;
                let path = PathBuf::from(&name);
                // A relative name: systemd's credentials (LoadCredential=),
                // else `credentials/` beside the config (where the unit loads
                // them from, so `ferry check` by hand finds them too), else
                // beside the config.
                let path = if path.is_absolute() {
                    path
                } else if let Some(dir) = self.env.get("CREDENTIALS_DIRECTORY") {
                    PathBuf::from(dir).join(path)
                } else {
                    let credentials = self.diags.dir().join("credentials");
                    if credentials.is_dir() {
                        credentials.join(path)
                    } else {
                        self.diags.dir().join(path)
                    }
                };
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let value = text.trim_end_matches(['\r', '\n']).to_string();
                        if value.is_empty() {
                            self.error(
                                node.pos,
                                format!("{what}.{file_key}: {} is empty", path.display()),
                            );
                            return None;
                        }
                        Some(Secret::new(value))
                    }
                    Err(e) => {
                        self.error(
                            node.pos,
                            format!("{what}.{file_key}: cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation() {
        let env = Environment::fixed([("A", "1"), ("EMPTY", "")]);
        assert_eq!(interpolate("x${A}y", &env).unwrap(), "x1y");
        assert_eq!(interpolate("${B:-def}", &env).unwrap(), "def");
        assert_eq!(interpolate("${EMPTY:-def}", &env).unwrap(), "def");
        assert_eq!(interpolate("$$HOME $5", &env).unwrap(), "$HOME $5");
        assert!(
            interpolate("${B}", &env)
                .unwrap_err()
                .contains("`B` is not set")
        );
        assert!(interpolate("${A", &env).is_err());
        assert!(interpolate("${a b}", &env).is_err());
        assert_eq!(interpolate("${A:+yes}", &env).unwrap(), "yes");
        assert_eq!(interpolate("${B:+yes}", &env).unwrap(), "");
        assert_eq!(interpolate("${EMPTY:+yes}", &env).unwrap(), "");
    }

    /// Docker secrets: `${KEY}` with KEY unset reads `$KEY_FILE`.
    #[test]
    fn an_unset_variable_falls_back_to_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("key");
        std::fs::write(&secret, "sk-from-a-file\n").unwrap();
        let path = secret.display().to_string();
        let env = Environment::fixed([
            ("KEY_FILE", path.as_str()),
            ("SET", "direct"),
            ("SET_FILE", path.as_str()),
            ("GONE_FILE", "/nonexistent/secret"),
        ]);
        assert_eq!(interpolate("${KEY}", &env).unwrap(), "sk-from-a-file");
        assert_eq!(
            interpolate("${SET}", &env).unwrap(),
            "direct",
            "the variable wins"
        );
        assert_eq!(interpolate("${KEY:+on}", &env).unwrap(), "on");
        let e = interpolate("${GONE}", &env).unwrap_err();
        assert!(
            e.contains("`GONE_FILE` (/nonexistent/secret) cannot be read"),
            "{e}"
        );
    }
}
