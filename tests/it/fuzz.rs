//! Hostile input, generated: property tests on stable Rust (proptest) for
//! the places where outside bytes enter ferry. Each must never panic and
//! must answer in its documented shape. CI runs the default number of
//! cases (256 each); `scripts/fuzz.sh` runs each target for 10 minutes
//! with fresh seeds.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use ferry::config::Environment;
use ferry::paths;
use ferry::rules::template;
use ferry::signing as sign;
use proptest::prelude::*;

const CONFIG: &str = include_str!("../../systemd/ferry.yaml");
const RULES: [&str; 3] = [
    include_str!("../../rules/alerts.yaml"),
    include_str!("../../rules/daily-digest.yaml"),
    include_str!("../../rules/inbox.yaml"),
];

/// One edit of a text: replace, insert or delete a few bytes somewhere.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, Vec<u8>),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..8),
        prop::sample::select(vec![
            b":".to_vec(),
            b"\n".to_vec(),
            b"  ".to_vec(),
            b"- ".to_vec(),
            b"{".to_vec(),
            b"[".to_vec(),
            b"\"".to_vec(),
            b"'".to_vec(),
            b"&a".to_vec(),
            b"*a".to_vec(),
            b"!!binary".to_vec(),
            b"${".to_vec(),
            b"${X}".to_vec(),
            b"{{".to_vec(),
            b"{%".to_vec(),
            b"\t".to_vec(),
            b"\xff".to_vec(),
            b"~".to_vec(),
            b"0x".to_vec(),
            b"99999999999999999999".to_vec(),
            b"-1".to_vec(),
            b"\xe2\x80\xae".to_vec(),
        ]),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), interesting_bytes()).prop_map(|(at, b)| Edit::Replace(at, b)),
        (any::<usize>(), interesting_bytes()).prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Replace(at, b) => {
                let at = at % len;
                let end = (at + b.len()).min(bytes.len());
                bytes.splice(at..end, b.iter().copied());
            }
            Edit::Insert(at, b) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
        }
    }
    bytes
}

proptest! {
    /// A mutated config and rule file: loaded without a panic, and either
    /// accepted or refused with every problem as `file:line:col: message`.
    #[test]
    fn config_decoder_never_panics_and_always_places_its_errors(
        config_edits in proptest::collection::vec(edit(), 0..4),
        rule in 0usize..3,
        rule_edits in proptest::collection::vec(edit(), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        for secret in ["openwebui_api_key", "ferry_admin_token", "team_chat_secret"] {
            std::fs::write(dir.path().join(secret), "s3cret-value-0123456789").unwrap();
        }
        let text = CONFIG.replace("/etc/ferry/rules", "rules");
        std::fs::write(dir.path().join("ferry.yaml"), apply(&text, &config_edits)).unwrap();
        std::fs::write(dir.path().join("rules/r.yaml"), apply(RULES[rule], &rule_edits)).unwrap();
        let env = Environment::fixed([("X", "1")]);
        if let Err(diags) = ferry::setup::load(&dir.path().join("ferry.yaml"), &env) {
            prop_assert!(!diags.is_empty());
            for d in diags {
                let shown = d.to_string();
                let file = d.file.display().to_string();
                prop_assert!(shown.starts_with(&file), "{shown}");
                let rest = &shown[file.len()..];
                let mut parts = rest.splitn(4, ':');
                prop_assert_eq!(parts.next(), Some(""));
                prop_assert!(parts.next().is_some_and(|l| l.parse::<usize>().is_ok_and(|l| l >= 1)), "{}", shown);
                prop_assert!(parts.next().is_some_and(|c| c.parse::<usize>().is_ok_and(|c| c >= 1)), "{}", shown);
                prop_assert!(!shown.contains("s3cret-value"), "{}", shown);
            }
        }
    }

    /// Any cron text: parsed or refused, and a parsed one gives fire times
    /// in any zone without a panic.
    #[test]
    fn cron_expressions_never_panic(text in "[0-9*/,\\-A-Za-z?LW# ]{0,40}") {
        if let Ok(cron) = ferry::triggers::schedule::parse(&text) {
            let now = chrono::Utc::now();
            let _ = ferry::triggers::schedule::next_fire(&cron, &chrono_tz::Europe::Zurich, now);
            let _ = ferry::triggers::schedule::next_fire(&cron, &chrono::Utc, now);
        }
    }

    /// Signature headers of every shape: verified or refused, never a panic.
    #[test]
    fn signature_headers_never_panic(
        id in proptest::option::of(".{0,40}"),
        ts in proptest::option::of(prop_oneof![".{0,24}", any::<i64>().prop_map(|n| n.to_string())]),
        sigs in proptest::option::of(".{0,120}"),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        now in any::<i64>(),
        hex in proptest::option::of(".{0,80}"),
    ) {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let _ = sign::verify_standard(secret, id.as_deref(), ts.as_deref(), sigs.as_deref(), &body, now);
        prop_assert!(sign::verify_hex_hmac(secret, hex.as_deref(), &body).is_err() || hex.is_some());
    }

    /// Hook bodies: any bytes become a payload; templates over it render or
    /// fail cleanly (fuel bounds loops).
    #[test]
    fn hook_bodies_and_templates_over_them_never_panic(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "[\\[\\]{}\":,0-9a-z ]{0,300}".prop_map(String::into_bytes),
        ],
        prompt in prop::sample::select(vec![
            "{{ payload }}",
            "{{ payload.a.b.c }}",
            "{% for x in payload %}{{ x }}{% endfor %}",
            "{{ payload | tojson }}",
            "{{ payload[0] }}",
        ]),
    ) {
        let payload = ferry::triggers::payload_of(&body);
        let ctx = serde_json::json!({ "payload": payload });
        let _ = template::Template::compile(prompt).unwrap().render(&ctx);
        let body = template::Template::compile_body("{\"p\": {{ payload }}}").unwrap();
        let _ = body.render(&ctx).map(|b| {
            serde_json::from_str::<serde_json::Value>(&b).expect("a JSON body is JSON")
        });
    }

    /// File names of any bytes: keys round-trip and never collide, shown
    /// forms hold no control character, upload names are one short header
    /// line.
    #[test]
    fn file_names_are_data(
        a in proptest::collection::vec(any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0), 1..255),
        b in proptest::collection::vec(any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0), 1..255),
    ) {
        let root = Path::new("/r");
        let pa = root.join(std::ffi::OsStr::from_bytes(&a));
        let pb = root.join(std::ffi::OsStr::from_bytes(&b));
        let (ka, kb) = (paths::key(&pa), paths::key(&pb));
        prop_assert_eq!(paths::from_key(&ka), pa.clone());
        prop_assert_eq!(ka == kb, pa == pb);
        let shown = paths::shown(&pa);
        prop_assert!(!shown.chars().any(char::is_control), "{:?}", shown);
        let name = paths::upload_name(&pa);
        prop_assert!(!name.contains(['\r', '\n', '"']) && !name.chars().any(char::is_control));
        prop_assert!(name.len() <= paths::MAX_UPLOAD_NAME && !name.is_empty());
        let _: PathBuf = paths::from_key(&shown);
    }
}
