//! URLs are credentials: a Slack, Teams or Discord webhook URL carries its
//! secret in the path, others in the query or the userinfo. Nothing ferry
//! logs, stores, serves or prints may hold more of a URL than
//! `scheme://host[:port]/…` — [`url()`] for a URL at hand, [`text`] for an
//! error message from a library (reqwest puts the whole URL in its
//! `Display`). Neutral: no other module of ferry is needed here.

use std::borrow::Cow;

/// `scheme://host[:port]`, then `/…` when anything followed.
pub fn url(u: &url::Url) -> String {
    let mut out = format!("{}://", u.scheme());
    if let Some(host) = u.host_str() {
        out.push_str(host);
    }
    if let Some(port) = u.port() {
        out.push_str(&format!(":{port}"));
    }
    let has_more = u.path() != "/" && !u.path().is_empty()
        || u.query().is_some()
        || u.fragment().is_some()
        || !u.username().is_empty()
        || u.password().is_some();
    out.push_str(if has_more { "/…" } else { "/" });
    out
}

/// `s` with every `scheme://…` in it cut down as [`url()`] does.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.contains("://") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("://") {
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let after = &rest[at + 3..];
        let mut len = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(after.len());
        // "(http://…): …": the last closing parenthesis of the word
        // belongs to the sentence.
        if rest[..scheme_start].ends_with('(')
            && let Some(close) = after[..len].rfind(')')
        {
            len = close;
        }
        let candidate = &rest[scheme_start..at + 3 + len];
        out.push_str(&rest[..scheme_start]);
        match url::Url::parse(candidate) {
            Ok(u) if u.host_str().is_some() => out.push_str(&url(&u)),
            _ => {
                out.push_str(&rest[scheme_start..at]);
                out.push_str("://…");
            }
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_only_scheme_host_and_port() {
        let u = url::Url::parse("https://user:pw@hooks.slack.com/services/T0/B0/SECRET?token=Q#f")
            .unwrap();
        assert_eq!(url(&u), "https://hooks.slack.com/…");
        let u = url::Url::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(url(&u), "http://127.0.0.1:8080/");
        let u = url::Url::parse("http://[::1]:9/x").unwrap();
        assert_eq!(url(&u), "http://[::1]:9/…");
    }

    #[test]
    fn text_cuts_every_url_in_a_message() {
        let m = "error sending request for url (http://127.0.0.1:9/services/T000/B000/SLACKPATHSECRET?token=QUERYSECRET): client error (Connect): Connection refused";
        let r = text(m);
        assert_eq!(
            r,
            "error sending request for url (http://127.0.0.1:9/…): client error (Connect): Connection refused"
        );
        let m = "a https://u:PASSWORD@h.example/p and ftp://x.example then \"http://h/SECRET\"";
        let r = text(m);
        assert!(!r.contains("PASSWORD") && !r.contains("SECRET"), "{r}");
        assert_eq!(
            r,
            "a https://h.example/… and ftp://x.example/ then \"http://h/…\""
        );
        assert_eq!(text("no url here"), "no url here");
        assert_eq!(text("broken ://SECRET"), "broken ://…");
        // Parentheses inside a URL's path do not let its tail through.
        assert!(!text("(http://h/a(SECRET)b)").contains("SECRET"));
    }
}
