//! The Open WebUI client against the in-process fake: retries, re-sign-in,
//! timeouts, version differences. Fast; the real server is in `e2e.rs`.

use std::time::{Duration, Instant};

use ferry::config::{Auth, Secret};
use ferry::openwebui::retry::RetryPolicy;
use ferry::openwebui::{ChatRequest, Client, ClientOptions, Error};
use ferry::testing::fake_openwebui::{API_KEY, EMAIL, FakeOpenWebUi, Fault, PASSWORD, StoredFile};
use reqwest::Method;
use serde_json::json;

fn options(url: &str, auth: Auth) -> ClientOptions {
    ClientOptions {
        clock: ferry::clock::Clock::system(),
        url: url.parse().unwrap(),
        auth,
        timeout: Duration::from_secs(5),
        max_in_flight: 4,
        processing_timeout: Duration::from_secs(5),
        retry: RetryPolicy::default(),
        metrics: None,
    }
}

fn api_key_client(fake: &FakeOpenWebUi) -> Client {
    Client::new(options(&fake.url(), Auth::ApiKey(Secret::new(API_KEY)))).unwrap()
}

fn password_client(fake: &FakeOpenWebUi) -> Client {
    Client::new(options(
        &fake.url(),
        Auth::Password {
            email: EMAIL.into(),
            password: Secret::new(PASSWORD),
        },
    ))
    .unwrap()
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_waited_out() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    fake.inject(
        Fault::new(
            Method::GET,
            "/api/models",
            429,
            json!({"detail": "slow down"}),
        )
        .header("retry-after", "1"),
    );
    let client = api_key_client(&fake);
    let started = Instant::now();
    let models = client.models().await.unwrap();
    assert_eq!(models[0].id, "fake-model");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(fake.count("GET", "/api/models"), 2);
}

#[tokio::test]
async fn token_401_signs_in_again_exactly_once() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let client = password_client(&fake);
    client.models().await.unwrap();
    assert_eq!(fake.signins(), 1);

    fake.expire_sessions();
    client.models().await.unwrap();
    assert_eq!(fake.signins(), 2, "one new sign-in after the token expired");

    // A token that is refused again right after a fresh sign-in is not
    // chased with more sign-ins.
    for _ in 0..2 {
        fake.inject(Fault::new(
            Method::GET,
            "/api/models",
            401,
            json!({"detail": "401 Unauthorized"}),
        ));
    }
    let err = client.models().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    assert_eq!(fake.signins(), 3);
}

#[tokio::test]
async fn concurrent_401s_share_one_sign_in() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let client = password_client(&fake);
    client.models().await.unwrap();
    fake.expire_sessions();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.models().await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(fake.signins(), 2);
}

#[tokio::test]
async fn not_found_401_does_not_sign_in_again() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let client = password_client(&fake);
    client.models().await.unwrap();
    fake.inject(Fault::new(
        Method::GET,
        "/api/v1/chats/unknown",
        401,
        json!({"detail": "We could not find what you're looking for :/"}),
    ));
    let err = client.chat_by_id("unknown").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(fake.signins(), 1);
}

#[tokio::test]
async fn server_error_on_chat_is_not_repeated_but_on_get_it_is() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let client = api_key_client(&fake);
    fake.inject(Fault::new(
        Method::POST,
        "/api/chat/completions",
        500,
        json!({"detail": "boom"}),
    ));
    let request = ChatRequest {
        model: "fake-model".into(),
        system: None,
        prompt: "hi".into(),
        collections: vec![],
        options: Default::default(),
    };
    let err = client
        .chat(&request, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Server { status: 500, .. }), "{err}");
    assert_eq!(
        fake.count("POST", "/api/chat/completions"),
        1,
        "not blindly repeated"
    );

    // Even a 502 is not repeated for a chat: the model may have run.
    fake.inject(Fault::new(
        Method::POST,
        "/api/chat/completions",
        502,
        json!({"detail": "bad gateway"}),
    ));
    assert!(client.chat(&request, Duration::from_secs(5)).await.is_err());
    assert_eq!(fake.count("POST", "/api/chat/completions"), 2);

    // A 429 is: the server refused before doing anything.
    fake.inject(
        Fault::new(
            Method::POST,
            "/api/chat/completions",
            429,
            json!({"error": {"message": "busy"}}),
        )
        .header("retry-after", "0"),
    );
    let answer = client.chat(&request, Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.content, "ECHO: hi");

    fake.inject(Fault::new(
        Method::GET,
        "/api/models",
        502,
        json!({"detail": "bad gateway"}),
    ));
    client.models().await.unwrap();
    assert_eq!(
        fake.count("GET", "/api/models"),
        2,
        "idempotent GET retried"
    );
}

#[tokio::test]
async fn sign_in_rate_limit_is_not_hammered() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    fake.inject(Fault::new(
        Method::POST,
        "/api/v1/auths/signin",
        429,
        json!({"detail": "API rate limit exceeded"}),
    ));
    let client = password_client(&fake);
    let err = client.models().await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err}");
    assert_eq!(fake.count("POST", "/api/v1/auths/signin"), 1);
}

#[tokio::test]
async fn wrong_password_is_unauthorized() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let client = Client::new(options(
        &fake.url(),
        Auth::Password {
            email: EMAIL.into(),
            password: Secret::new("wrong"),
        },
    ))
    .unwrap();
    let err = client.models().await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("email or password"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "no secret in errors: {err}"
    );
}

#[tokio::test]
async fn slow_answer_times_out() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let mut opts = options(&fake.url(), Auth::ApiKey(Secret::new(API_KEY)));
    opts.timeout = Duration::from_millis(300);
    opts.retry.max_attempts = 1;
    let client = Client::new(opts).unwrap();
    fake.inject(
        Fault::new(Method::GET, "/api/models", 200, json!({"data": []}))
            .delay(Duration::from_secs(2)),
    );
    let err = client.models().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn html_instead_of_json_names_the_path() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let client = api_key_client(&fake);
    let err = client.chat_by_id("x").await.unwrap_err();
    assert!(matches!(err, Error::UnexpectedResponse { .. }), "{err}");
    assert!(err.to_string().contains("/api/v1/chats/x"), "{err}");
}

#[tokio::test]
async fn whoami_with_api_key_on_both_versions() {
    let new = FakeOpenWebUi::start("0.12.4").await;
    let who = api_key_client(&new).whoami().await.unwrap();
    assert!(who.email.is_none() && who.note.is_some());
    let old = FakeOpenWebUi::start("0.6.40").await;
    let who = api_key_client(&old).whoami().await.unwrap();
    assert_eq!(who.email.as_deref(), Some(EMAIL));
}

#[tokio::test]
async fn knowledge_files_on_both_versions() {
    for version in ["0.12.4", "0.6.40"] {
        let fake = FakeOpenWebUi::start(version).await;
        let client = api_key_client(&fake);
        let kb = client
            .create_knowledge("Docs", "d", &Default::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut ids = Vec::new();
        for i in 0..35 {
            let p = dir.path().join(format!("f{i}.txt"));
            std::fs::write(&p, format!("content {i}")).unwrap();
            let f = ferry::testing::upload_path(&client, &p, &format!("f{i}.txt"))
                .await
                .unwrap();
            client.wait_processed(&f.id).await.unwrap();
            client.add_file(&kb.id, &f.id).await.unwrap();
            ids.push(f.id);
        }
        // Re-adding is fine on both (0.6 answers 400 "[ERROR: file_id]").
        client.add_file(&kb.id, &ids[0]).await.unwrap();
        let listed = client.knowledge_files(&kb.id).await.unwrap();
        assert_eq!(listed.len(), 35, "{version}: all pages");
        assert_eq!(
            client.find_knowledge("Docs").await.unwrap().unwrap().id,
            kb.id
        );
        client.remove_file(&kb.id, &ids[0], false).await.unwrap();
        assert_eq!(client.knowledge_files(&kb.id).await.unwrap().len(), 34);
        assert!(
            client.file(&ids[0]).await.is_ok(),
            "delete_file=false keeps the file"
        );
    }
}

#[tokio::test]
async fn streaming_answer_arrives_in_pieces() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let client = api_key_client(&fake);
    let request = ChatRequest {
        model: "fake-model".into(),
        system: None,
        prompt: "a somewhat longer prompt".into(),
        collections: vec![],
        options: Default::default(),
    };
    let mut pieces = 0;
    let answer = client
        .chat_stream(&request, Duration::from_secs(5), |_| pieces += 1)
        .await
        .unwrap();
    assert_eq!(answer.content, "ECHO: a somewhat longer prompt");
    assert!(pieces > 1);
    let err = client
        .chat_stream(
            &ChatRequest {
                model: "nope".into(),
                ..request
            },
            Duration::from_secs(5),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Model not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_links_on_0_6_are_not_lost() {
    let fake = FakeOpenWebUi::start("0.6.40").await;
    let client = api_key_client(&fake);
    let kb = client
        .create_knowledge("Race", "d", &Default::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for i in 0..8 {
        let p = dir.path().join(format!("r{i}.txt"));
        std::fs::write(&p, format!("race {i}")).unwrap();
        ids.push(
            ferry::testing::upload_path(&client, &p, &format!("r{i}.txt"))
                .await
                .unwrap()
                .id,
        );
    }
    let adds: Vec<_> = ids
        .iter()
        .map(|id| {
            let (c, kb, id) = (client.clone(), kb.id.clone(), id.clone());
            tokio::spawn(async move { c.add_file(&kb, &id).await })
        })
        .collect();
    for a in adds {
        a.await.unwrap().unwrap();
    }
    assert_eq!(client.knowledge_files(&kb.id).await.unwrap().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_more_than_max_in_flight_requests() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let mut opts = options(&fake.url(), Auth::ApiKey(Secret::new(API_KEY)));
    opts.max_in_flight = 2;
    let client = Client::new(opts).unwrap();
    for _ in 0..6 {
        fake.inject(
            Fault::new(Method::GET, "/api/models", 200, json!({"data": []}))
                .delay(Duration::from_millis(150)),
        );
    }
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.models().await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(fake.state.lock().unwrap().max_in_flight, 2);
}

#[tokio::test]
async fn pull_reports_progress_and_errors() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let client = api_key_client(&fake);
    let mut statuses = Vec::new();
    client
        .pull("llama3.1:8b", |p| {
            statuses.push(p["status"].as_str().unwrap_or("").to_string())
        })
        .await
        .unwrap();
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("pulling manifest")
    );
    assert_eq!(statuses.last().map(String::as_str), Some("success"));
    let err = client.pull("missing", |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("file does not exist"), "{err}");
}

#[tokio::test]
async fn saved_chat_has_a_proper_history() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    let client = api_key_client(&fake);
    let id = client
        .save_chat("Digest", "fake-model", "question?", "answer!")
        .await
        .unwrap();
    let chats = client.chats().await.unwrap();
    assert_eq!(chats.len(), 1);
    assert_eq!(chats[0].id, id);
    let saved = fake.state.lock().unwrap().chats[0]["chat"].clone();
    let history = &saved["history"];
    let current = history["currentId"].as_str().unwrap();
    let assistant = &history["messages"][current];
    assert_eq!(assistant["content"], "answer!");
    let parent = assistant["parentId"].as_str().unwrap();
    assert_eq!(history["messages"][parent]["content"], "question?");
    assert_eq!(history["messages"][parent]["childrenIds"][0], current);
}

/// 0.12 pages its file list by offset: a file deleted while the pages are
/// read moves the next page's first file onto the page already read, and a
/// single pass never sees it. A file ferry does not see is a stray the
/// sweep leaves, or a linked file that repair takes for lost.
#[tokio::test]
async fn a_file_list_that_shifts_while_it_is_read_is_read_again() {
    let fake = FakeOpenWebUi::start("0.12.4").await;
    {
        let mut st = fake.state.lock().unwrap();
        for i in 0..120 {
            let id = format!("f-{i:03}");
            let file = StoredFile {
                created_at: 0,
                ..StoredFile::new(&id, &format!("n{i}.md"), Vec::new(), json!({}))
            };
            st.files.insert(id, file);
        }
        st.delete_after_first_page = vec!["f-000".into()];
    }
    let client = api_key_client(&fake);
    let mut ids: Vec<String> = client
        .files()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    ids.sort();
    ids.dedup();
    let want: Vec<String> = (1..120).map(|i| format!("f-{i:03}")).collect();
    assert_eq!(ids, want, "every file still there, once");
}
