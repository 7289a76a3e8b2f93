//! File names are data: any byte but `/` and NUL may stand in one. This is
//! the one place that turns a [`Path`] into text and back.
//!
//! - [`key`]: how the store, job inputs and dedupe keys hold a path. A
//!   UTF-8 path is itself (so rows written before this module stay
//!   valid); any other is its [`shown`] form, a NUL and the hex of its
//!   bytes. No path contains NUL, so the two forms never collide, and two
//!   names that differ only in invalid bytes keep different keys.
//! - [`from_key`]: the exact path back.
//! - [`shown`]: for logs and CLI output: invalid bytes as `\xNN`, control
//!   characters (CR, LF, ESC…) and the backslash escaped, so a name cannot
//!   forge a log line or a terminal sequence.
//! - [`upload_name`]: the name sent to Open WebUI in a multipart header:
//!   control characters and quotes replaced, never a header break.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};

/// Separates a non-UTF-8 path's shown form from its bytes.
const RAW: char = '\0';

/// The text that stands for `path` in the store and in job inputs.
pub fn key(path: &Path) -> Cow<'_, str> {
    match path.to_str() {
        Some(s) => Cow::Borrowed(s),
        None => {
            let bytes = path.as_os_str().as_bytes();
            Cow::Owned(format!("{}{RAW}{}", shown(path), hex::encode(bytes)))
        }
    }
}

/// The path a [`key`] stands for.
pub fn from_key(key: &str) -> PathBuf {
    if let Some((_, raw)) = key.split_once(RAW)
        && let Ok(bytes) = hex::decode(raw)
    {
        return PathBuf::from(std::ffi::OsString::from_vec(bytes));
    }
    PathBuf::from(key)
}

/// A stored key as a person should read it (see [`shown`]).
pub fn shown_key(key: &str) -> String {
    shown(&from_key(key))
}

/// `path` escaped for a log line or a terminal.
pub fn shown(path: &Path) -> String {
    shown_bytes(path.as_os_str().as_bytes())
}

/// A file name (or any OS string) escaped like [`shown`].
pub fn shown_os(name: &OsStr) -> String {
    shown_bytes(name.as_bytes())
}

fn shown_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() || is_invisible_format(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Characters that reorder or hide text on a terminal (bidi overrides,
/// line and paragraph separators): shown escaped like control characters.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The longest name sent to Open WebUI, in bytes: it stores an upload as
/// `{uuid}_{name}` (37 bytes more), and a file system name holds 255;
/// 0.6 answers a longer one with an error.
pub const MAX_UPLOAD_NAME: usize = 200;

/// The name to send for a file: its last component, invalid bytes as
/// U+FFFD, control characters and `"` as `_`, so that the multipart part
/// header holds exactly one line; a long stem is shortened (on a character
/// boundary, with `…`) to [`MAX_UPLOAD_NAME`], keeping the extension.
pub fn upload_name(path: &Path) -> String {
    fit_name(clean_component(path.file_name().unwrap_or_default()))
}

/// Stands for `/` in a name that carries a folder path: Open WebUI keeps
/// only the last `/`-separated part of an upload's name.
pub const PATH_SEPARATOR: char = '\u{2215}';

/// The name for a file under a server without directories: its path
/// relative to the watched root, each part cleaned as [`upload_name`]
/// does, joined by [`PATH_SEPARATOR`] (`a∕b∕c.md`), so that same-named files
/// in different folders never share a name.
pub fn path_name(relative: &Path) -> String {
    let parts: Vec<String> = relative
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(clean_component(n)),
            _ => None,
        })
        .collect();
    fit_name(parts.join(&PATH_SEPARATOR.to_string()))
}

/// A folder's name in Open WebUI, cleaned as [`upload_name`] cleans a
/// file's.
pub fn folder_name(name: &OsStr) -> String {
    let name = clean_component(name);
    if name.trim().is_empty() {
        "folder".into()
    } else {
        name
    }
}

fn clean_component(name: &OsStr) -> String {
    String::from_utf8_lossy(name.as_bytes())
        .chars()
        .map(|c| {
            if c.is_control() || c == '"' || is_invisible_format(c) || c == '/' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn fit_name(name: String) -> String {
    if name.trim().is_empty() {
        return "file".into();
    }
    if name.len() <= MAX_UPLOAD_NAME {
        return name;
    }
    let ext = Path::new(&name)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= 16)
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    let room = MAX_UPLOAD_NAME - ext.len() - '…'.len_utf8();
    let mut cut = room;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…{ext}", &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(bytes: &[u8]) -> PathBuf {
        PathBuf::from(std::ffi::OsString::from_vec(bytes.to_vec()))
    }

    #[test]
    fn a_path_name_keeps_every_part_and_no_header_break() {
        assert_eq!(path_name(Path::new("a/b/c.md")), "a\u{2215}b\u{2215}c.md");
        let hostile = path_name(&raw(b"ev\nil/\"q\"/bad\xff.md"));
        assert_eq!(hostile, "ev_il\u{2215}_q_\u{2215}bad\u{fffd}.md");
        // Long paths are cut like long names: the extension stays.
        let long = path_name(&Path::new(&"d".repeat(150)).join("e".repeat(150) + ".md"));
        assert!(
            long.len() <= MAX_UPLOAD_NAME && long.ends_with(".md"),
            "{long}"
        );
        assert_eq!(folder_name(std::ffi::OsStr::new("\u{202e}x")), "_x");
    }

    #[test]
    fn utf8_paths_are_their_own_key() {
        for p in ["/r/a.md", "/r/ü/ß.txt", "relative/-rf", "/r/a\nb"] {
            assert_eq!(key(Path::new(p)), p);
            assert_eq!(from_key(p), PathBuf::from(p));
        }
    }

    #[test]
    fn invalid_bytes_round_trip_and_never_collide() {
        let a = raw(b"/r/bad\xff.md");
        let b = raw(b"/r/bad\xfe.md");
        let (ka, kb) = (key(&a), key(&b));
        assert_ne!(ka, kb);
        assert_eq!(from_key(&ka), a);
        assert_eq!(from_key(&kb), b);
        // Nor with a UTF-8 name spelled like the escape.
        let lookalike = PathBuf::from("/r/bad\\xff.md");
        assert_ne!(key(&lookalike), ka);
        assert_eq!(shown_key(&ka), "/r/bad\\xff.md");
    }

    #[test]
    fn shown_escapes_what_could_forge_a_line() {
        let p = Path::new("/r/evil\n2026-11-28T00:00:00Z  INFO forged\r\u{1b}[31m.md");
        let s = shown(p);
        assert!(!s.contains('\n') && !s.contains('\r') && !s.contains('\u{1b}'));
        assert_eq!(
            s,
            "/r/evil\\u{a}2026-11-28T00:00:00Z  INFO forged\\u{d}\\u{1b}[31m.md"
        );
        assert_eq!(
            shown(Path::new("/r/\u{202e}txt.exe")),
            "/r/\\u{202e}txt.exe"
        );
    }

    #[test]
    fn upload_names_hold_one_header_line() {
        let p = Path::new("/r/x\"\r\nX-Injected: 1.md");
        let n = upload_name(p);
        assert!(!n.contains(['\r', '\n', '"']));
        assert_eq!(n, "x___X-Injected: 1.md");
        assert_eq!(upload_name(&raw(b"/r/bad\xff.md")), "bad\u{fffd}.md");
        assert_eq!(upload_name(Path::new("/r/-rf")), "-rf");
        assert_eq!(upload_name(Path::new("/")), "file");
        let long = format!("/r/{}.md", "ü".repeat(126));
        let n = upload_name(Path::new(&long));
        assert!(n.len() <= MAX_UPLOAD_NAME && n.ends_with("….md"), "{n}");
        assert!(n.starts_with("üü"));
    }
}
