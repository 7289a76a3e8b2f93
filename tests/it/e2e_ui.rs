//! The status pages in a real browser (headless Chromium through
//! ChromeDriver) against `ferry run` on a real Open WebUI: sign in, see a
//! failed document with Open WebUI's own reason, retry a dead job and watch
//! it succeed without reloading, redeliver a dead letter and see the new
//! attempt, and be sent to sign-in without a session. Each page is
//! photographed (into `FERRY_SCREENSHOTS`, else the test's target dir).

use std::path::PathBuf;
use std::time::Duration;

use ferry::testing::receiver::{Receiver, Reply};

use crate::helpers::daemon::{ADMIN, Daemon, free_port};
use crate::helpers::e2e::{Api, server};
use crate::helpers::until;
use crate::helpers::webdriver::Browser;

fn shots() -> PathBuf {
    std::env::var_os("FERRY_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"))
}

const LONG: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Open WebUI and Chromium: scripts/e2e.sh"]
async fn the_status_pages_in_a_real_browser() {
    let s = server();
    if s.version.starts_with("0.6.") {
        // The pages are ferry's own; one Open WebUI is enough for them.
        eprintln!("e2e_ui: run against 0.12.x only");
        return;
    }
    let api = Api::new(&s);
    let receiver = Receiver::start().await;
    // The first chat.failed is refused for good: a dead letter.
    receiver.script("rx", [Reply::status(410)]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let collection = format!("e2e-ui-{}", uuid::Uuid::new_v4().simple());
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "openwebui:\n  url: {}\n  api_key: ${{E2E_API_KEY}}\nstate:\n  database: state/ferry.db\n\
             server:\n  listen: 127.0.0.1:{port}\n  admin_token: {ADMIN}\n\
             webhooks:\n  rx:\n    url: {}\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n    allow_private: true\n    retry: [0s]\n",
            s.url,
            receiver.url("rx")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules/inbox.yaml"),
        format!(
            "on:\n  watch:\n    path: {}\n    settle: 300ms\ningest:\n  collection: {collection}\n",
            inbox.display()
        ),
    )
    .unwrap();
    // A template that fails on every run until the rule is fixed.
    let digest = |prompt: &str| {
        std::fs::write(
            dir.path().join("rules/digest.yaml"),
            format!(
                "vars:\n  topic: {{ title: the inbox }}\nchat:\n  model: fake-model\n  prompt: \"{prompt}\"\ndeliver:\n  - to: rx\n"
            ),
        )
        .unwrap();
    };
    digest("Summarise {{ vars.topc.title }}");
    std::fs::write(
        inbox.join("notes.md"),
        "Meeting notes: the ferry leaves at nine.\n",
    )
    .unwrap();
    // Only whitespace: Open WebUI finds no text in it and says so.
    std::fs::write(inbox.join("blank.md"), "   \n\n   \n").unwrap();
    let daemon = Daemon::spawn(dir.path(), port, &[("E2E_API_KEY", &s.api_key)]);
    let base = format!("http://127.0.0.1:{port}");

    let b = Browser::start(1280, 900).await;
    b.goto(&format!("{base}/ui/jobs")).await;
    assert!(b.url().await.ends_with("/ui/login"), "no session: sign in");
    b.screenshot(&shots().join("login.png")).await;
    b.type_into("#secret", "not-the-token").await;
    b.click("button[type=submit]").await;
    b.wait_for_text("not the admin token", LONG).await;
    b.type_into("#secret", ADMIN).await;
    b.click("button[type=submit]").await;
    b.wait_for_text("Rules", LONG).await;
    assert!(b.url().await.ends_with("/ui/"), "{}", b.url().await);

    // The failed document, with Open WebUI's reason, on the rule's page
    // (the overview links its count there).
    let kb = until("the collection", LONG, async || {
        api.try_get("/api/v1/knowledge/").await.and_then(|v| {
            let items = v.get("items").unwrap_or(&v).as_array()?.clone();
            items
                .iter()
                .find(|k| k["name"] == collection.as_str())
                .map(|k| k["id"].as_str().unwrap().to_string())
        })
    })
    .await;
    let overview = b.wait_for_text("1 failed", LONG).await;
    assert!(overview.contains("1 linked"), "{overview}");
    assert!(
        overview.contains(&format!("reachable {}", s.version)),
        "{overview}"
    );
    b.screenshot(&shots().join("overview.png")).await;
    b.click("a[href='/ui/rules/inbox?state=failed']").await;
    b.wait_for_url("state=failed", LONG).await;
    let failed = b.wait_for_text("blank.md", LONG).await;
    assert!(failed.contains("The content provided is empty"), "{failed}");
    assert!(!failed.contains("notes.md"), "only the failed one");
    let link = b
        .script("return document.querySelector('td a[target=_blank]').href;")
        .await;
    assert_eq!(
        link,
        format!("{}/workspace/knowledge/{kb}", s.url.trim_end_matches('/'))
    );
    b.screenshot(&shots().join("documents.png")).await;

    // Run now: the job dies on its template, its chat.failed letter too.
    b.goto(&format!("{base}/ui/")).await;
    b.click("form[action='/ui/rules/digest/run'] button").await;
    let job_url = b.wait_for_url("/ui/jobs/", LONG).await;
    let dead = b.wait_for_text("dead — try 1 of", LONG).await;
    assert!(
        dead.contains("`vars.topc.title`"),
        "the template's error: {dead}"
    );

    // The dead letter: redelivered, the new attempt shown.
    b.goto(&format!("{base}/ui/deliveries?state=dead")).await;
    b.wait_for_text("chat.failed", LONG).await;
    b.click("tbody a").await;
    b.wait_for_url("/ui/deliveries/", LONG).await;
    b.wait_for_text("410", LONG).await;
    receiver.script("rx", [Reply::status(200)]);
    b.click("form[action$='/redeliver'] button").await;
    // Refreshed in place: the second attempt appears without a reload.
    until("the second attempt on the page", LONG, async || {
        let rows = b
            .script("return String(document.querySelectorAll('tbody tr').length);")
            .await;
        (rows == "2").then_some(())
    })
    .await;
    let page = b.wait_for_text("delivered", LONG).await;
    assert!(page.contains("200"), "{page}");
    b.screenshot(&shots().join("delivery.png")).await;

    // The rule fixed and reloaded; the dead job retried from its page and
    // seen to succeed, again without a reload.
    digest("Summarise {{ vars.topic.title }}");
    daemon.reload();
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.goto(&job_url).await;
    b.click("form[action$='/retry'] button").await;
    let done = b.wait_for_text("succeeded", LONG).await;
    assert!(
        done.contains("Summarise the inbox"),
        "the rendered prompt: {done}"
    );
    assert!(
        !b.script("return document.body.dataset.refreshed || '';")
            .await
            .is_empty(),
        "the page refreshed itself"
    );
    b.screenshot(&shots().join("job.png")).await;
    b.goto(&format!("{base}/ui/jobs")).await;
    b.wait_for_text("succeeded", LONG).await;
    b.screenshot(&shots().join("jobs.png")).await;

    // At phone width: nothing wider than the screen but the tables' own
    // scrolling boxes.
    let phone = Browser::phone(390, 844).await;
    // Signed in with the keyboard alone: the field has focus on arrival,
    // Enter submits.
    phone.goto(&format!("{base}/ui/login")).await;
    assert_eq!(
        phone.script("return document.activeElement.id;").await,
        "secret",
        "the secret field has focus"
    );
    phone
        .type_into("#secret", &format!("{ADMIN}\u{E007}"))
        .await;
    phone.wait_for_text("Rules", LONG).await;
    assert_eq!(
        phone.script("return String(window.innerWidth);").await,
        "390",
        "a phone's width"
    );
    let overflow = phone
        .script("return String(document.documentElement.scrollWidth - window.innerWidth);")
        .await;
    let wide = phone
        .script(
            "return Array.from(document.querySelectorAll('body *'))\
             .filter(e => e.getBoundingClientRect().right > window.innerWidth && !e.closest('.scroll'))\
             .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))\
             .join(', ');",
        )
        .await;
    assert_eq!(overflow, "0", "the page fits a phone; too wide: {wide}");
    phone.screenshot(&shots().join("overview-phone.png")).await;
    phone.quit().await;

    // Signed out: the next page asks for sign-in again.
    b.click("header form button").await;
    b.wait_for_text("Sign in", LONG).await;
    b.goto(&format!("{base}/ui/deliveries")).await;
    assert!(b.url().await.ends_with("/ui/login"));
    b.quit().await;
    daemon.stop();
}
