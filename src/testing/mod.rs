//! Test support shared by unit tests, integration tests and benchmarks.
//! Not part of ferry's behaviour.

pub mod fake_openwebui;
pub mod receiver;

/// File names that break naive code, as bytes, each different: not UTF-8
/// (twice, differing only in the invalid byte), a forged log line, a
/// multipart header injection, 255 bytes, NFC and NFD spellings, leading
/// dashes, and a folder whose own name is not UTF-8.
pub fn hostile_names() -> Vec<Vec<u8>> {
    let mut long = vec![b'l'; 252];
    long.extend_from_slice(b".md");
    vec![
        b"bad\xff.md".to_vec(),
        b"bad\xfe.md".to_vec(),
        b"evil\n2026-11-28T00:00:00Z  INFO ferry::worker: forged line.md".to_vec(),
        b"x\"\r\nX-Injected: 1.md".to_vec(),
        long,
        "caf\u{e9}.md".as_bytes().to_vec(),
        "cafe\u{301}.md".as_bytes().to_vec(),
        b"-rf.md".to_vec(),
        b"--help.md".to_vec(),
        b"sub\xc3/in-invalid-folder.md".to_vec(),
    ]
}

/// Uploads a file by path, the way a person adds one in the UI (tests set
/// up Open WebUI's side with it; ferry itself uploads open descriptors).
pub async fn upload_path(
    client: &crate::openwebui::Client,
    path: &std::path::Path,
    name: &str,
) -> Result<crate::openwebui::FileInfo, crate::openwebui::Error> {
    let io = |source| crate::openwebui::Error::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let length = file.metadata().map_err(io)?.len();
    client
        .upload(
            crate::openwebui::Content::File {
                file: &file,
                length,
            },
            name,
            None,
        )
        .await
}

/// Signs in to the status pages at `base` (`http://host:port`) with the
/// admin token or the UI password: the session cookie as `name=value`, for
/// a `Cookie:` header. `http` must not follow redirects.
pub async fn ui_session(http: &reqwest::Client, base: &str, secret: &str) -> String {
    let signed = http
        .post(format!("{base}/ui/login"))
        .form(&[("secret", secret)])
        .send()
        .await
        .expect("the sign-in request");
    assert_eq!(signed.status(), 303, "signed in");
    signed.headers()["set-cookie"]
        .to_str()
        .expect("an ASCII cookie")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string()
}
