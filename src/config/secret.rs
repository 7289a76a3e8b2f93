use std::fmt;

/// A credential. Its `Debug` and `Display` never show the value, so a secret
/// that ends up in a log line, an error or `check` output shows as
/// `[redacted]`. The only way to the value is [`Secret::expose`], which makes
/// each use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s} {s:?} {s:#?}").contains("very-secret"));
        assert_eq!(s.expose(), "sk-very-secret");
    }
}
