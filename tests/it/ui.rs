//! The status pages over HTTP, in-process against the fake Open WebUI:
//! sign-in and sessions, CSRF and cross-site refusal, what the pages show
//! (escaped), and their buttons doing what the admin API does. The same
//! flows in a real browser against a real Open WebUI are in `e2e_ui.rs`.

use std::time::Duration;

use ferry::app::Running;
use ferry::store::{DeliveryState, JobState};
use ferry::testing::fake_openwebui::Fault;
use ferry::testing::receiver::Reply;
use reqwest::{Method, StatusCode, redirect::Policy};

use crate::helpers::*;

/// A browser without JavaScript: no redirects followed, the session
/// cookie kept by hand.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(running: &Running) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: format!("http://{}", running.addr),
            cookie: None,
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.cookie {
            Some(c) => r.header("cookie", c),
            None => r,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    async fn page(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.request(Method::POST, path)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn sign_in(&mut self, secret: &str) -> reqwest::Response {
        let r = self.post("/ui/login", &[("secret", secret)]).await;
        if let Some(set) = r.headers().get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            self.cookie = Some(pair.to_string());
        }
        r
    }

    /// The CSRF token the page's forms carry.
    async fn csrf(&self) -> String {
        let page = self.page("/ui/").await;
        let at = page.find(r#"name="csrf" value=""#).expect("a form") + 19;
        page[at..at + 64].to_string()
    }
}

fn location(r: &reqwest::Response) -> &str {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

const GREET: &str =
    "vars: { who: nobody }\nchat:\n  model: fake-model\n  prompt: \"Hello {{ vars.who }}\"\n";
const BROKEN: &str =
    "chat:\n  model: fake-model\n  prompt: \"{{ vars.nothing.deeper }}\"\ndeliver:\n  - to: out\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_need_a_session_and_actions_need_its_token() {
    let (_s, running) = TestApp::spawn(Options::rules(&[("greet", GREET)])).await;
    let mut b = Browser::new(&running);

    let r = b.get("/").await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/ui/"));
    for path in ["/ui/", "/ui/jobs", "/ui/deliveries", "/ui/rules/greet"] {
        let r = b.get(path).await;
        assert_eq!(
            (r.status(), location(&r)),
            (StatusCode::SEE_OTHER, "/ui/login"),
            "{path} without a session"
        );
    }
    // An action without a session: refused, nothing queued.
    let r = b.post("/ui/rules/greet/run", &[("csrf", "x")]).await;
    assert_eq!(r.status(), 403);

    let r = b.sign_in("admin-token-wrong-guess").await;
    assert_eq!(r.status(), 401);
    assert!(b.cookie.is_none(), "no session for a wrong secret");
    let body = r.text().await.unwrap();
    assert!(!body.contains(ADMIN) && body.contains("not the admin token"));

    let r = b.sign_in(ADMIN).await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/ui/"));
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(part), "{part} in {set}");
    }
    assert!(!set.contains(ADMIN), "the cookie is not the token");

    let r = b.get("/ui/").await;
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert!(r.text().await.unwrap().contains("greet"));

    // Run now: without the token, with a wrong one, from another site —
    // refused; with it, a job.
    let csrf = b.csrf().await;
    let queued = || async {
        running
            .store
            .jobs(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.rule == "greet")
            .count()
    };
    assert_eq!(b.post("/ui/rules/greet/run", &[]).await.status(), 403);
    let wrong = "0".repeat(64);
    assert_eq!(
        b.post("/ui/rules/greet/run", &[("csrf", &wrong)])
            .await
            .status(),
        403
    );
    let cross = b
        .request(Method::POST, "/ui/rules/greet/run")
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert_eq!(queued().await, 0, "nothing queued by a refused action");
    let r = b.post("/ui/rules/greet/run", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/ui/jobs/"), "{}", location(&r));
    assert_eq!(queued().await, 1);
    let job_page = location(&r).to_string();
    let page = eventually("the job's answer on its page", async || {
        let p = b.page(&job_page).await;
        p.contains("succeeded").then_some(p)
    })
    .await;
    assert!(page.contains("Hello nobody"), "the rendered prompt");

    // Signed out: the session is gone, its cookie no longer works.
    let r = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(
        (r.status(), location(&r)),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
    assert_eq!(b.get("/ui/").await.status(), 303);
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_document_shows_open_webuis_reason_and_names_are_escaped() {
    let s = TestApp::new(Options::mirror("0.12.4", "")).await;
    s.fake.inject(Fault::new(
        Method::POST,
        "/api/v1/files/",
        400,
        serde_json::json!({"detail": "File type application/x-evil is not allowed"}),
    ));
    write(&s.inbox().join("first.md"), "first");
    let running = s.start().await;
    eventually("the refused upload recorded", async || {
        let docs = running.store.documents(&Default::default()).await.unwrap();
        docs.iter()
            .any(|d| d.state.as_str() == "failed")
            .then_some(())
    })
    .await;
    let hostile = "<script>alert(1)</script>.md";
    write(&s.inbox().join(hostile), "second");
    drain(&running).await;

    let mut b = Browser::new(&running);
    b.sign_in(ADMIN).await;
    let overview = b.page("/ui/").await;
    assert!(
        overview.contains("1 failed") && overview.contains("1 linked"),
        "{overview}"
    );
    let failed = b.page("/ui/rules/mirror?state=failed").await;
    assert!(failed.contains("first.md") && failed.contains("unsupported"));
    assert!(
        failed.contains("File type application/x-evil is not allowed"),
        "Open WebUI's own words: {failed}"
    );
    assert!(
        !failed.contains("alert"),
        "the filter shows failed ones only"
    );
    let all = b.page("/ui/rules/mirror").await;
    assert!(all.contains("&lt;script&gt;alert(1)&lt;/script&gt;.md"));
    assert!(!all.contains("<script>alert"), "escaped, not markup");
    // The collection's page in Open WebUI, without credentials.
    assert!(all.contains(&format!("{}/workspace/knowledge/", s.fake.url())));

    assert_eq!(b.get("/ui/rules/mirror?state=bogus").await.status(), 400);
    assert_eq!(b.get("/ui/rules/nope").await.status(), 404);
    assert_eq!(b.get("/ui/jobs/nope").await.status(), 404);
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_and_redeliver_from_the_pages() {
    let s = TestApp::new(Options::rules(&[("broken", BROKEN)])).await;
    // The dead job's chat.failed delivery is refused for good (410).
    s.receiver.script("out", [Reply::status(410)]);
    let running = s.start().await;
    let mut b = Browser::new(&running);
    b.sign_in(ADMIN).await;
    let csrf = b.csrf().await;
    let r = b.post("/ui/rules/broken/run", &[("csrf", &csrf)]).await;
    let job_page = location(&r).to_string();
    let id = job_page.rsplit('/').next().unwrap().to_string();
    let dead = eventually("the job is dead", async || {
        let j = running.store.job(&id).await.unwrap()?;
        (j.state == JobState::Dead).then_some(j)
    })
    .await;
    let page = b.page(&job_page).await;
    assert!(page.contains("dead") && page.contains("Retry"));
    assert!(page.contains("template"), "the error: {page}");
    let overview = b.page("/ui/").await;
    assert!(overview.contains("1 dead"), "{overview}");

    let r = b
        .post(&format!("{job_page}/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (r.status(), location(&r)),
        (StatusCode::SEE_OTHER, job_page.as_str())
    );
    eventually("retried", async || {
        let j = running.store.job(&id).await.unwrap()?;
        (j.updated_at > dead.updated_at && j.state == JobState::Dead).then_some(())
    })
    .await;

    let delivery = eventually("a dead delivery", async || {
        running
            .store
            .deliveries(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.state == DeliveryState::Dead)
    })
    .await;
    let page = b.page(&format!("/ui/deliveries/{}", delivery.id)).await;
    assert!(page.contains("410") && page.contains("Redeliver"), "{page}");
    let list = b.page("/ui/deliveries?state=dead").await;
    assert!(list.contains(&delivery.id[..8]));

    s.receiver.script("out", [Reply::status(200)]);
    let r = b
        .post(
            &format!("/ui/deliveries/{}/redeliver", delivery.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 303);
    eventually("redelivered", async || {
        let d = running.store.delivery(&delivery.id).await.unwrap()?;
        (d.state == DeliveryState::Delivered).then_some(())
    })
    .await;
    let page = b.page(&format!("/ui/deliveries/{}", delivery.id)).await;
    assert!(page.contains("delivered"), "{page}");
    let attempts = running.store.delivery_attempts(&delivery.id).await.unwrap();
    assert_eq!(attempts.len(), 2, "the old attempt and the new one");
    assert_eq!(
        page.matches("<tr>").count() - 1,
        attempts.len(),
        "each attempt a row"
    );
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_off_or_without_a_way_in() {
    let s = TestApp::new(Options::rules(&[("greet", GREET)])).await;
    let running = s
        .start_with(|c| {
            c.server.ui = false;
        })
        .await;
    let b = Browser::new(&running);
    assert_eq!(b.get("/").await.status(), 404);
    assert_eq!(b.get("/ui/login").await.status(), 404);
    assert_eq!(b.get("/ui/").await.status(), 404);
    stop(running).await;

    let running = s
        .start_with(|c| {
            c.server.admin_token = None;
        })
        .await;
    let mut b = Browser::new(&running);
    let r = b.get("/ui/login").await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("server.ui_password"));
    assert_eq!(b.sign_in("").await.status(), 401);
    assert!(b.cookie.is_none());
    stop(running).await;

    // A UI password instead of the token.
    let running = s
        .start_with(|c| {
            c.server.admin_token = None;
            c.server.ui_password = Some(ferry::config::Secret::new("a-ui-password-1234"));
        })
        .await;
    let mut b = Browser::new(&running);
    assert_eq!(b.sign_in("a-ui-password-1234").await.status(), 303);
    assert_eq!(b.get("/ui/").await.status(), 200);
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_expires_with_the_clock() {
    let (s, running) = TestApp::spawn(Options {
        manual_clock: true,
        ..Options::rules(&[("greet", GREET)])
    })
    .await;
    let mut b = Browser::new(&running);
    b.sign_in(ADMIN).await;
    assert_eq!(b.get("/ui/").await.status(), 200);
    s.clock.advance(Duration::from_secs(11 * 3600));
    assert_eq!(b.get("/ui/").await.status(), 200);
    s.clock.advance(Duration::from_secs(3600));
    assert_eq!(b.get("/ui/").await.status(), 303, "12 h after sign-in");
    stop(running).await;
}
