//! The markup of every page, from plain data: no store, no request. maud
//! escapes every value it is given, so a hostile file name or answer is
//! text on the page, never markup.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::clock::rfc3339_secs;
use crate::store::{Attempt, Delivery, DeliveryState, Document, DocumentState, Job, JobState};

/// What every signed-in page knows.
pub struct Frame<'a> {
    pub title: &'a str,
    /// Which part of the navigation is current.
    pub section: Section,
    /// The session's CSRF token, for the forms on the page.
    pub csrf: &'a str,
    pub now_ms: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Jobs,
    Deliveries,
}

/// One rule on the overview.
pub struct RuleRow {
    pub name: String,
    pub trigger: &'static str,
    /// Where or when it fires: the folder, the cron and its next fire, the
    /// hook's path.
    pub fires: String,
    pub paused: Option<String>,
    /// Documents by state; `None` for a rule that ingests nothing.
    pub documents: Option<Vec<(DocumentState, i64)>>,
    pub queued: i64,
    pub running: i64,
    pub dead: i64,
    pub last_error: Option<(String, i64)>,
    pub can_run: bool,
}

pub struct Overview {
    pub version: String,
    pub uptime_secs: i64,
    /// Open WebUI's version when it last answered, or what went wrong.
    pub openwebui: Result<Option<String>, String>,
    pub problems: Vec<String>,
    pub rules: Vec<RuleRow>,
    pub deliveries: Vec<(DeliveryState, i64)>,
}

pub struct RuleDocuments<'a> {
    pub rule: &'a str,
    pub counts: Vec<(DocumentState, i64)>,
    pub filter: Option<DocumentState>,
    pub documents: Vec<Document>,
    /// Open WebUI's page of a collection: this plus its id.
    pub collection_link: Option<String>,
}

pub struct JobList {
    pub filter_state: Option<JobState>,
    pub filter_rule: Option<String>,
    pub jobs: Vec<Job>,
    pub limit: usize,
}

pub struct DeliveryList {
    pub filter_state: Option<DeliveryState>,
    pub filter_rule: Option<String>,
    pub deliveries: Vec<Delivery>,
    pub limit: usize,
}

const STYLE_PATH: &str = "/ui/style.css";
const SCRIPT_PATH: &str = "/ui/refresh.js";

fn page(frame: &Frame, main: Markup) -> Markup {
    let nav = |section: Section, href: &str, label: &str| {
        html! {
            @if frame.section == section {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) " · ferry" }
                link rel="stylesheet" href=(STYLE_PATH);
                script src=(SCRIPT_PATH) defer {}
            }
            body {
                header {
                    nav aria-label="ferry" {
                        strong { "ferry" }
                        (nav(Section::Overview, "/ui/", "Overview"))
                        (nav(Section::Jobs, "/ui/jobs", "Jobs"))
                        (nav(Section::Deliveries, "/ui/deliveries", "Deliveries"))
                    }
                    form method="post" action="/ui/logout" {
                        input type="hidden" name="csrf" value=(frame.csrf);
                        button type="submit" { "Sign out" }
                    }
                }
                main data-refresh {
                    (main)
                    p.updated { "As of " (time(frame.now_ms, frame.now_ms)) }
                }
            }
        }
    }
}

/// A moment as UTC text, with how long ago it was.
fn time(ms: i64, now_ms: i64) -> Markup {
    html! {
        time datetime=(rfc3339_secs(ms)) title=(rfc3339_secs(ms)) {
            (rfc3339_secs(ms).replace('T', " ")) " (" (ago(now_ms - ms)) ")"
        }
    }
}

fn ago(ms: i64) -> String {
    let (future, s) = (ms < 0, ms.abs() / 1000);
    let span = match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

fn duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min", ms / 60_000)
    }
}

fn state_badge(state: &str) -> Markup {
    html! { span class={ "state " (state) } { (state) } }
}

/// Long text cut for a table cell; the detail page has all of it.
fn excerpt(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_string()
    } else {
        let cut: String = text.chars().take(chars).collect();
        format!("{cut}…")
    }
}

fn action(path: &str, csrf: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(path) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { (label) }
        }
    }
}

pub fn login(message: Option<&str>, enabled: bool, password: bool) -> Markup {
    let label = if password {
        "Admin token or UI password"
    } else {
        "Admin token"
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · ferry" }
                link rel="stylesheet" href=(STYLE_PATH);
            }
            body {
                main.login {
                    h1 { "ferry" }
                    @if let Some(m) = message {
                        p.error role="alert" { (m) }
                    }
                    @if enabled {
                        form method="post" action="/ui/login" {
                            label for="secret" { (label) }
                            input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus;
                            button type="submit" { "Sign in" }
                        }
                    } @else {
                        p { "The pages need a way to sign in: set " code { "server.admin_token" } " or " code { "server.ui_password" } "." }
                    }
                }
            }
        }
    }
}

pub fn overview(frame: &Frame, o: &Overview) -> Markup {
    let now = frame.now_ms;
    let body = html! {
        h1 { "Overview" }
        section aria-labelledby="daemon" {
            h2 #daemon { "Daemon" }
            dl.facts {
                dt { "ferry" } dd { (o.version) }
                dt { "Up for" } dd { (duration(o.uptime_secs * 1000)) }
                dt { "Open WebUI" }
                dd {
                    @match &o.openwebui {
                        Ok(Some(v)) => { span class="state linked" { "reachable" } " " (v) }
                        Ok(None) => { "not asked yet" }
                        Err(e) => { span class="state failed" { "unreachable" } " " (e) }
                    }
                }
                dt { "Deliveries" }
                dd {
                    @for (state, n) in &o.deliveries {
                        a href={ "/ui/deliveries?state=" (state.as_str()) } { (n) " " (state.as_str()) } " "
                    }
                }
            }
            @if o.problems.is_empty() {
                p.ok { "Ready: nothing needs attention." }
            } @else {
                ul.problems aria-label="Problems" {
                    @for p in &o.problems { li { (p) } }
                }
            }
        }
        section aria-labelledby="rules" {
            h2 #rules { "Rules" }
            @if o.rules.is_empty() {
                p { "No rules are loaded." }
            } @else {
                div.scroll {
                    table {
                        thead {
                            tr {
                                th scope="col" { "Rule" }
                                th scope="col" { "Trigger" }
                                th scope="col" { "State" }
                                th scope="col" { "Documents" }
                                th scope="col" { "Jobs" }
                                th scope="col" { "Last error" }
                                th scope="col" { span.sr { "Actions" } }
                            }
                        }
                        tbody {
                            @for r in &o.rules {
                                tr {
                                    th scope="row" {
                                        @if r.documents.is_some() {
                                            a href={ "/ui/rules/" (urlencode(&r.name)) } { (r.name) }
                                        } @else {
                                            a href={ "/ui/jobs?rule=" (urlencode(&r.name)) } { (r.name) }
                                        }
                                    }
                                    td { (r.trigger) br; small { (r.fires) } }
                                    td {
                                        @if let Some(why) = &r.paused {
                                            (state_badge("paused")) " " (why)
                                        } @else {
                                            (state_badge("active"))
                                        }
                                    }
                                    td {
                                        @if let Some(counts) = &r.documents {
                                            @for (st, n) in counts {
                                                @if *n > 0 {
                                                    a href={ "/ui/rules/" (urlencode(&r.name)) "?state=" (st.as_str()) } {
                                                        (n) " " (st.as_str())
                                                    }
                                                    " "
                                                }
                                            }
                                        } @else { "—" }
                                    }
                                    td {
                                        a href={ "/ui/jobs?rule=" (urlencode(&r.name)) "&state=queued" } { (r.queued) " queued" } ", "
                                        (r.running) " running"
                                        @if r.dead > 0 {
                                            ", " a.bad href={ "/ui/jobs?rule=" (urlencode(&r.name)) "&state=dead" } { (r.dead) " dead" }
                                        }
                                    }
                                    td {
                                        @if let Some((e, at)) = &r.last_error {
                                            (excerpt(e, 160)) br; small { (time(*at, now)) }
                                        } @else { "—" }
                                    }
                                    td {
                                        @if r.can_run {
                                            (action(&format!("/ui/rules/{}/run", urlencode(&r.name)), frame.csrf, "Run now"))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(frame, body)
}

pub fn rule_documents(frame: &Frame, d: &RuleDocuments) -> Markup {
    let total: i64 = d.counts.iter().map(|(_, n)| n).sum();
    let shown_of = match d.filter {
        Some(f) => d
            .counts
            .iter()
            .find(|(s, _)| *s == f)
            .map_or(0, |(_, n)| *n),
        None => total,
    };
    let base = format!("/ui/rules/{}", urlencode(d.rule));
    let body = html! {
        h1 { "Documents of " (d.rule) }
        nav.filters aria-label="Filter by state" {
            @if d.filter.is_none() {
                a href=(base) aria-current="true" { "all (" (total) ")" }
            } @else {
                a href=(base) { "all (" (total) ")" }
            }
            @for (st, n) in &d.counts {
                @if d.filter == Some(*st) {
                    a href={ (base) "?state=" (st.as_str()) } aria-current="true" { (st.as_str()) " (" (n) ")" }
                } @else {
                    a href={ (base) "?state=" (st.as_str()) } { (st.as_str()) " (" (n) ")" }
                }
            }
        }
        @if d.documents.is_empty() {
            p { "No documents." }
        } @else {
            @if (d.documents.len() as i64) < shown_of {
                p { "The first " (d.documents.len()) " of " (shown_of) ", by path." }
            }
            div.scroll {
                table {
                    thead {
                        tr {
                            th scope="col" { "Path" }
                            th scope="col" { "State" }
                            th scope="col" { "Why" }
                            th scope="col" { "Changed" }
                            th scope="col" { "In Open WebUI" }
                        }
                    }
                    tbody {
                        @for doc in &d.documents {
                            tr {
                                td.path { (crate::paths::shown_key(&doc.path)) }
                                td { (state_badge(doc.state.as_str())) }
                                td {
                                    @if let Some(r) = doc.reason { strong { (r.as_str()) } ": " }
                                    @if let Some(e) = &doc.error { (excerpt(e, 300)) }
                                }
                                td { (time(doc.updated_at, frame.now_ms)) }
                                td {
                                    @match (&d.collection_link, &doc.collection_id) {
                                        (Some(link), Some(id)) => {
                                            a href={ (link) (urlencode(id)) } rel="noreferrer" target="_blank" {
                                                (doc.collection_name.as_deref().unwrap_or("collection"))
                                            }
                                        }
                                        _ => { (doc.collection_name.as_deref().unwrap_or("—")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(frame, body)
}

fn filter_links(base: &str, states: &[&str], current: Option<&str>, rule: Option<&str>) -> Markup {
    let rule_q = rule
        .map(|r| format!("rule={}&", urlencode(r)))
        .unwrap_or_default();
    html! {
        nav.filters aria-label="Filter by state" {
            @if current.is_none() {
                a href={ (base) "?" (rule_q) } aria-current="true" { "all" }
            } @else {
                a href={ (base) "?" (rule_q) } { "all" }
            }
            @for st in states {
                @if current == Some(*st) {
                    a href={ (base) "?" (rule_q) "state=" (st) } aria-current="true" { (st) }
                } @else {
                    a href={ (base) "?" (rule_q) "state=" (st) } { (st) }
                }
            }
            @if let Some(r) = rule {
                " · rule " strong { (r) } " (" a href={ (base) } { "any rule" } ")"
            }
        }
    }
}

pub fn jobs(frame: &Frame, l: &JobList) -> Markup {
    let states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
    let body = html! {
        h1 { "Jobs" }
        (filter_links("/ui/jobs", &states, l.filter_state.map(JobState::as_str), l.filter_rule.as_deref()))
        @if l.jobs.is_empty() {
            p { "No jobs." }
        } @else {
            @if l.jobs.len() == l.limit { p { "The newest " (l.limit) "." } }
            div.scroll {
                table {
                    thead {
                        tr {
                            th scope="col" { "Job" }
                            th scope="col" { "Rule" }
                            th scope="col" { "Trigger" }
                            th scope="col" { "State" }
                            th scope="col" { "Created" }
                            th scope="col" { "Took" }
                            th scope="col" { "Error" }
                        }
                    }
                    tbody {
                        @for j in &l.jobs {
                            tr {
                                td { a href={ "/ui/jobs/" (urlencode(&j.id)) } { code { (short(&j.id)) } } " " small { (j.kind) } }
                                td { (j.rule) }
                                td { (j.trigger_kind) }
                                td { (state_badge(j.state.as_str())) @if j.attempts > 1 { " " small { "try " (j.attempts) } } }
                                td { (time(j.created_at, frame.now_ms)) }
                                td { @if let Some(f) = j.finished_at { (duration(f - j.created_at)) } }
                                td { @if let Some(e) = &j.error { (excerpt(e, 160)) } }
                            }
                        }
                    }
                }
            }
        }
    };
    page(frame, body)
}

/// An id cut to what tells ids apart on a page (a delivery's `msg_`
/// prefix kept).
fn short(id: &str) -> &str {
    let keep = if id.starts_with("msg_") { 12 } else { 8 };
    id.get(..keep).unwrap_or(id)
}

fn tries(n: i64) -> String {
    if n == 1 {
        "1 try".into()
    } else {
        format!("{n} tries")
    }
}

fn json_block(v: &Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    html! { pre { code { (text) } } }
}

pub fn job(frame: &Frame, j: &Job) -> Markup {
    let result = j.result.as_ref();
    let text_of = |key: &str| result.and_then(|r| r.get(key)).and_then(Value::as_str);
    let body = html! {
        h1 { "Job " code { (short(&j.id)) } }
        dl.facts {
            dt { "Rule" } dd { a href={ "/ui/jobs?rule=" (urlencode(&j.rule)) } { (j.rule) } }
            dt { "Kind" } dd { (j.kind) }
            dt { "Trigger" } dd { (j.trigger_kind) }
            dt { "State" } dd { (state_badge(j.state.as_str())) " — try " (j.attempts) " of " (j.max_attempts) }
            dt { "Created" } dd { (time(j.created_at, frame.now_ms)) }
            @if let Some(f) = j.finished_at {
                dt { "Finished" } dd { (time(f, frame.now_ms)) ", " (duration(f - j.created_at)) " after it was queued" }
            } @else if j.state == JobState::Queued {
                dt { "Runs" } dd { (time(j.run_after, frame.now_ms)) }
            }
            dt { "Id" } dd { code { (j.id) } }
        }
        @if j.state == JobState::Dead {
            (action(&format!("/ui/jobs/{}/retry", urlencode(&j.id)), frame.csrf, "Retry"))
        }
        @if let Some(e) = &j.error {
            h2 { "Error" }
            p.error { (e) }
        }
        @if let Some(p) = text_of("prompt") {
            h2 { "Prompt" }
            pre.text { (p) }
        }
        @if let Some(a) = text_of("answer") {
            h2 { "Answer" }
            pre.text { (a) }
        }
        @if let Some(r) = result {
            details {
                summary { "Result (JSON)" }
                (json_block(r))
            }
        }
        details {
            summary { "Input (JSON)" }
            (json_block(&j.input))
        }
        p { a href={ "/ui/deliveries?rule=" (urlencode(&j.rule)) } { "Deliveries of " (j.rule) } }
    };
    page(frame, body)
}

pub fn deliveries(frame: &Frame, l: &DeliveryList) -> Markup {
    let states: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
    let body = html! {
        h1 { "Deliveries" }
        (filter_links("/ui/deliveries", &states, l.filter_state.map(DeliveryState::as_str), l.filter_rule.as_deref()))
        @if l.deliveries.is_empty() {
            p { "No deliveries." }
        } @else {
            @if l.deliveries.len() == l.limit { p { "The newest " (l.limit) "." } }
            div.scroll {
                table {
                    thead {
                        tr {
                            th scope="col" { "Delivery" }
                            th scope="col" { "Destination" }
                            th scope="col" { "Event" }
                            th scope="col" { "State" }
                            th scope="col" { "Tries" }
                            th scope="col" { "Last answer" }
                            th scope="col" { "Created" }
                        }
                    }
                    tbody {
                        @for d in &l.deliveries {
                            tr {
                                td { a href={ "/ui/deliveries/" (urlencode(&d.id)) } { code { (short(&d.id)) } } " " small { (d.rule) } }
                                td { (d.destination) }
                                td { (d.event_type) }
                                td { (state_badge(d.state.as_str())) }
                                td { (d.attempts) }
                                td {
                                    @if let Some(s) = d.last_status { "HTTP " (s) " " }
                                    @if let Some(e) = &d.last_error { (excerpt(e, 120)) }
                                }
                                td { (time(d.created_at, frame.now_ms)) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(frame, body)
}

pub fn delivery(frame: &Frame, d: &Delivery, attempts: &[Attempt]) -> Markup {
    let body_text = String::from_utf8_lossy(&d.body);
    let body_json = serde_json::from_slice::<Value>(&d.body).ok();
    let body = html! {
        h1 { "Delivery " code { (short(&d.id)) } }
        dl.facts {
            dt { "Rule" } dd { (d.rule) }
            dt { "Destination" } dd { (d.destination) }
            dt { "Event" } dd { (d.event_type) }
            dt { "State" } dd { (state_badge(d.state.as_str())) " — " (tries(d.attempts)) " in this series" }
            @if d.state == DeliveryState::Pending {
                dt { "Next try" } dd { (time(d.next_attempt_at, frame.now_ms)) }
            }
            @if let Some(job) = &d.job_id {
                dt { "Job" } dd { a href={ "/ui/jobs/" (urlencode(job)) } { code { (short(job)) } } }
            }
            dt { "Created" } dd { (time(d.created_at, frame.now_ms)) }
            dt { "Id (webhook-id)" } dd { code { (d.id) } }
        }
        @if matches!(d.state, DeliveryState::Dead | DeliveryState::Delivered) {
            (action(&format!("/ui/deliveries/{}/redeliver", urlencode(&d.id)), frame.csrf,
                if d.state == DeliveryState::Dead { "Redeliver" } else { "Send again" }))
        }
        h2 { "Attempts" }
        @if attempts.is_empty() {
            p { "None yet." }
        } @else {
            div.scroll {
                table {
                    thead {
                        tr {
                            th scope="col" { "#" }
                            th scope="col" { "At" }
                            th scope="col" { "Took" }
                            th scope="col" { "Status" }
                            th scope="col" { "Error" }
                            th scope="col" { "Response" }
                        }
                    }
                    tbody {
                        @for a in attempts {
                            tr {
                                td { (a.attempt) }
                                td { (time(a.started_at, frame.now_ms)) }
                                td { @if let Some(ms) = a.duration_ms { (duration(ms)) } }
                                td { @if let Some(s) = a.status { (s) } @else { "—" } }
                                td { @if let Some(e) = &a.error { (e) } }
                                td { @if let Some(r) = &a.response { code { (excerpt(r, 200)) } } }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Body" }
        @match &body_json {
            Some(v) => { (json_block(v)) }
            None => { pre { code { (body_text) } } }
        }
    };
    page(frame, body)
}

/// A page for a request that cannot be answered (not found, refused).
pub fn problem(frame: Option<&Frame>, title: &str, message: &str) -> Markup {
    let body = html! {
        h1 { (title) }
        p { (message) }
        p { a href="/ui/" { "Back to the overview" } }
    };
    match frame {
        Some(f) => page(f, body),
        None => html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { (title) " · ferry" } link rel="stylesheet" href=(STYLE_PATH); }
                body { main { (body) } }
            }
        },
    }
}

/// A path segment or query value, percent-encoded.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame<'static> {
        Frame {
            title: "t",
            section: Section::Overview,
            csrf: "tok",
            now_ms: 1_800_000_000_000,
        }
    }

    #[test]
    fn hostile_names_are_text_not_markup() {
        let o = Overview {
            version: "1".into(),
            uptime_secs: 5,
            openwebui: Err("<img src=x onerror=alert(1)>".into()),
            problems: vec!["<script>alert(2)</script>".into()],
            rules: vec![RuleRow {
                name: "a\"><script>x</script>".into(),
                trigger: "webhook",
                fires: "POST /hooks/<b>".into(),
                paused: Some("<i>why</i>".into()),
                documents: Some(vec![(DocumentState::Failed, 1)]),
                queued: 0,
                running: 0,
                dead: 1,
                last_error: Some(("<svg onload=x>".into(), 1_799_999_000_000)),
                can_run: true,
            }],
            deliveries: vec![],
        };
        let html = overview(&frame(), &o).into_string();
        for bad in ["<script>", "<img", "<svg", "<i>", "<b>", "a\"><"] {
            assert!(!html.contains(bad), "{bad} unescaped in {html}");
        }
        assert!(html.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
        // The rule's name in links is percent-encoded.
        assert!(html.contains("/ui/rules/a%22%3E%3Cscript%3Ex%3C%2Fscript%3E"));
    }

    #[test]
    fn every_action_carries_the_csrf_token() {
        let o = Overview {
            version: "1".into(),
            uptime_secs: 5,
            openwebui: Ok(Some("0.12.4".into())),
            problems: vec![],
            rules: vec![RuleRow {
                name: "r".into(),
                trigger: "schedule",
                fires: String::new(),
                paused: None,
                documents: None,
                queued: 0,
                running: 0,
                dead: 0,
                last_error: None,
                can_run: true,
            }],
            deliveries: vec![],
        };
        let html = overview(&frame(), &o).into_string();
        let forms = html.matches("<form").count();
        assert_eq!(forms, 2, "run now and sign out");
        assert_eq!(
            html.matches(r#"<input type="hidden" name="csrf" value="tok">"#)
                .count(),
            forms
        );
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(0), "0 s ago");
        assert_eq!(ago(90_000), "1 min ago");
        assert_eq!(ago(-7_200_000), "in 2 h");
        assert_eq!(ago(3 * 86_400_000), "3 d ago");
        assert_eq!(duration(450), "450 ms");
        assert_eq!(duration(1500), "1.5 s");
    }
}
