//! The operator console at `/ui/` in a real browser (headless Chromium through
//! chromedriver): sign in, find and open an upload, see a refusal and explain a token,
//! retry a failed push until the App receives it, sign out, browse installations and
//! their repositories' rules, page through a long list; outsiders' text (workflow names,
//! upload names, refs, actors, repository names from webhooks) is shown as text and never
//! becomes an element or a script. Without a session every page redirects to sign-in, and a POST without its CSRF
//! token is refused (those checks need no browser).
//!
//! Without Chromium a browser test says it was not run and passes (a failure with
//! `CI=true`). With `RUNPROOF_WRITE_SCREENSHOTS=1` the overview and an upload page are
//! written to `docs/console-*.png`. The PostgreSQL case runs when
//! `RUNPROOF_TEST_DATABASE_URL` names a server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::browser::Browser;
use common::{API_KEY, Harness, Options, bearer};
use runproof_core::Secret;
use runproof_core::rules::TrustRule;
use runproof_service::PushConfig;
use serde_json::{Map, Value, json};
use sha2::Digest as _;

/// Outsiders' text: each would create an element and run a script if written unescaped,
/// in element content or in an attribute.
const HOSTILE_WORKFLOW: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_NAME: &str = "\"'><img src=x onerror=alert(2)>";
const HOSTILE_REF: &str = "refs/heads/<img src=x onerror=alert(3)>";
const HOSTILE_ACTOR: &str = "<script>alert(4)</script>";
const HOSTILE_EVENT: &str = "</td><img src=x onerror=alert(5)>";

/// The browser's bounded waits for something the server writes in the background.
const POLL: Duration = Duration::from_millis(200);
const POLLS: usize = 150;

fn claims_with(h: &Harness, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut claims = h.claims();
    edit(&mut claims);
    h.gh.mint(&claims).unwrap()
}

/// `%`-encodes everything but unreserved characters (query strings and form bodies).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn upload_as(h: &Harness, token: &str, name: &str, body: &str) -> (u16, Value) {
    h.upload_with(
        Some(&bearer(token)),
        &format!("name={}", enc(name)),
        body.to_owned(),
        &[],
    )
    .await
}

/// The `dt`/`dd` pairs of `dl#identity`, by lowercased term.
async fn identity(b: &Browser) -> BTreeMap<String, String> {
    b.find("dl#identity").await;
    let dts = b.find_all("dl#identity dt").await;
    let dds = b.find_all("dl#identity dd").await;
    assert_eq!(dts.len(), dds.len(), "dl#identity pairs");
    let mut out = BTreeMap::new();
    for (dt, dd) in dts.iter().zip(&dds) {
        out.insert(
            dt.text().await.unwrap().trim().to_lowercase(),
            dd.text().await.unwrap(),
        );
    }
    out
}

/// Reloads `path` (bounded) until `ready` holds on the page.
async fn reload_until<F, Fut>(b: &Browser, path: &str, what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..POLLS {
        b.open(path).await;
        if ready().await {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("{path} never showed {what}");
}

/// The row of `table` whose `a.upload` reads `name`.
async fn row_for(b: &Browser, table: &str, name: &str) -> Option<thirtyfour::WebElement> {
    for row in b.find_all(&format!("{table} tbody tr")).await {
        if let Ok(a) = row.find(thirtyfour::By::Css("a.upload")).await
            && a.text().await.unwrap() == name
        {
            return Some(row);
        }
    }
    None
}

/// The row of `table` whose `a.upload` links to upload `id`.
async fn row_linking(b: &Browser, table: &str, id: &str) -> Option<thirtyfour::WebElement> {
    let target = format!("/ui/uploads/{id}");
    for row in b.find_all(&format!("{table} tbody tr")).await {
        if let Ok(a) = row.find(thirtyfour::By::Css("a.upload")).await
            && a.attr("href")
                .await
                .unwrap()
                .is_some_and(|h| h.ends_with(&target))
        {
            return Some(row);
        }
    }
    None
}

async fn cell(row: &thirtyfour::WebElement, css: &str) -> String {
    row.find(thirtyfour::By::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} in the row: {e}"))
        .text()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Plain HTTP: a client that keeps redirects and cookies in the test's hands.

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// `name=value` of every `Set-Cookie`, joined for a `Cookie` header (cookies that are
/// cleared, with an empty value, left out).
fn cookies_of(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter(|nv| nv.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .map(str::to_owned)
        .collect()
}

/// The value of the page's hidden `csrf` input.
fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\"")
        .unwrap_or_else(|| panic!("no csrf input in {html}"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    let tag = &html[start..end];
    let v = tag.find("value=\"").expect("a csrf value") + "value=\"".len();
    let rest = &tag[v..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Signs in with plain HTTP: the session's `Cookie` header value.
async fn sign_in_http(h: &Harness) -> String {
    let http = client();
    let form = http
        .get(format!("{}/ui/sign-in", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let mut jar = cookies_of(&form);
    let csrf = csrf_in(&form.text().await.unwrap());
    let resp = http
        .post(format!("{}/ui/sign-in", h.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", jar.join("; "))
        .body(format!("key={}&csrf={}", enc(API_KEY), enc(&csrf)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "signed in: {:?}", resp.headers());
    let set = cookies_of(&resp);
    assert!(
        set.iter().any(|c| c.starts_with("runproof_console=")),
        "a session cookie: {set:?}"
    );
    // The newer value of a cookie replaces the older.
    for c in set {
        let name = c.split('=').next().unwrap().to_owned();
        jar.retain(|old| !old.starts_with(&format!("{name}=")));
        jar.push(c);
    }
    jar.join("; ")
}

async fn get_with(h: &Harness, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = client().get(format!("{}{path}", h.url));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

async fn post_form(
    h: &Harness,
    path: &str,
    cookie: &str,
    body: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}{path}", h.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(body.to_owned());
    if let Some(o) = origin {
        req = req
            .header("origin", o)
            .header("sec-fetch-site", "cross-site");
    }
    req.send().await.unwrap()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// A receiver for pushes that fails while told to.

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Value>>,
    /// While true, answer 500.
    failing: Mutex<bool>,
}

async fn receive(State(r): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    r.got
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    if *r.failing.lock().unwrap() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn start_receiver() -> (String, Arc<Receiver>) {
    let r = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, r)
}

fn push_config(url: &str) -> PushConfig {
    PushConfig {
        url: url.to_owned(),
        secrets: vec![Secret::new("delivery-secret-0123456789".into())],
        events: vec!["upload.verified".into()],
        // One attempt: the push is failed at once, and only a retry delivers it.
        max_attempts: 1,
        timeout: Duration::from_secs(2),
        base_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(1),
        public_url: "https://runproof.test".into(),
    }
}

// ---------------------------------------------------------------------------------------
// The harness's own check: the browser runs, and the inertness check fails on a page
// that writes outsiders' text unescaped.

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_harness_tells_escaped_from_unescaped_pages() {
    if common::browser::binaries().is_none() {
        return;
    }
    let escaped = format!(
        "<!doctype html><title>t</title><p id=x>{}</p><p id=y title=\"{}\">y</p>",
        escape(HOSTILE_WORKFLOW),
        escape(HOSTILE_NAME)
    );
    let unescaped = format!(
        "<!doctype html><title>t</title><p id=x>{HOSTILE_WORKFLOW}</p><p id=y>{HOSTILE_ACTOR}</p>"
    );
    let app = axum::Router::new()
        .route(
            "/escaped",
            axum::routing::get(move || async move { axum::response::Html(escaped) }),
        )
        .route(
            "/unescaped",
            axum::routing::get(move || async move { axum::response::Html(unescaped) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let b = Browser::start(&base).await.unwrap();
    b.open("/escaped").await;
    assert_eq!(b.text("p#x").await, HOSTILE_WORKFLOW);
    assert_eq!(b.attr("p#y", "title").await.as_deref(), Some(HOSTILE_NAME));
    assert_eq!(b.inert().await, Ok(()));

    b.open("/unescaped").await;
    let found = b.inert().await;
    assert!(found.is_err(), "the check must catch an unescaped page");
    // Once the alert is gone, the elements themselves are still found.
    let mut second = b.inert().await;
    for _ in 0..POLLS {
        if second.as_ref().is_err_and(|e| e.contains("element")) {
            break;
        }
        tokio::time::sleep(POLL).await;
        second = b.inert().await;
    }
    assert!(
        second.as_ref().is_err_and(|e| e.contains("element")),
        "{found:?} then {second:?}"
    );
    b.quit().await;
}

// ---------------------------------------------------------------------------------------
// The console.

/// A token whose run has a job (`check_run_id`), so that the upload page links to it.
const CHECK_RUN_ID: &str = "31415926535";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_find_an_upload_and_open_it() {
    if common::browser::binaries().is_none() {
        return;
    }
    let h = Harness::start().await;
    find_an_upload_and_open_it(&h, true).await;
    h.stop().await;
}

/// Signs in, finds an upload in the list, opens it, and checks what it shows; with
/// `screenshots`, the upload page is the one in `docs/`.
async fn find_an_upload_and_open_it(h: &Harness, screenshots: bool) {
    let claims = h.claims();
    for (name, body) in [("dist/app-1.0.tar.gz", "a tarball"), ("notes.txt", "x")] {
        let token = claims_with(h, |c| {
            c.insert("check_run_id".into(), json!(CHECK_RUN_ID));
        });
        let (status, record) = upload_as(h, &token, name, body).await;
        assert_eq!(status, 201, "{record}");
    }
    let body = "the sbom, as uploaded\n";
    let token = claims_with(h, |c| {
        c.insert("check_run_id".into(), json!(CHECK_RUN_ID));
    });
    let (status, record) = upload_as(h, &token, "sbom.spdx.json", body).await;
    assert_eq!(status, 201, "{record}");
    let id = record["id"].as_str().unwrap().to_owned();

    let b = Browser::start(&h.url).await.unwrap();
    b.sign_in(API_KEY).await;
    assert_eq!(b.path().await, "/ui/", "sign-in lands on the overview");
    for href in [
        "/ui/",
        "/ui/uploads",
        "/ui/refusals",
        "/ui/pushes",
        "/ui/installations",
        "/ui/events",
    ] {
        assert!(
            b.has(&format!("nav#nav a[href=\"{href}\"]")).await,
            "nav links to {href}"
        );
    }

    b.click("nav#nav a[href=\"/ui/uploads\"]").await;
    b.wait_path("/ui/uploads").await;
    b.find("table#uploads").await;
    let row = row_for(&b, "table#uploads", "sbom.spdx.json")
        .await
        .expect("the upload is listed");
    assert_eq!(cell(&row, "td.status").await, "verified");
    assert_eq!(cell(&row, "td.mode").await, "oidc");
    assert!(
        cell(&row, "td.repository")
            .await
            .contains("octo-org/octo-repo")
    );
    assert_eq!(b.find_all("table#uploads tbody tr").await.len(), 3);

    // The list filters: by repository, none of another; by status.
    b.open("/ui/uploads?repository_id=1").await;
    assert!(
        row_for(&b, "table#uploads", "sbom.spdx.json")
            .await
            .is_none()
    );
    b.open("/ui/uploads?status=verified&repository_id=1296269")
        .await;
    let row = row_for(&b, "table#uploads", "sbom.spdx.json")
        .await
        .expect("listed under its own repository");
    row.find(thirtyfour::By::Css("a.upload"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_path(&format!("/ui/uploads/{id}")).await;

    assert!(b.text("h1").await.contains("sbom.spdx.json"));
    let ident = identity(&b).await;
    let field = |k: &str| {
        ident
            .get(k)
            .unwrap_or_else(|| panic!("no `{k}` in dl#identity: {ident:?}"))
            .clone()
    };
    assert!(
        field("repository").contains("octo-org/octo-repo"),
        "{ident:?}"
    );
    assert_eq!(field("workflow"), claims["workflow_ref"].as_str().unwrap());
    assert_eq!(field("ref"), "refs/heads/main");
    assert!(field("sha").contains(claims["sha"].as_str().unwrap()));
    assert!(field("actor").starts_with("octocat"), "{ident:?}");
    assert_eq!(field("event"), "push");

    let runs = "https://github.com/octo-org/octo-repo/actions/runs/4242424242";
    let run_link = b.attr("a#run-link", "href").await.unwrap();
    assert_eq!(run_link, runs);
    let attempt_link = b.attr("a#attempt-link", "href").await.unwrap();
    assert_eq!(attempt_link, format!("{runs}/attempts/1"));
    let job_link = b.attr("a#job-link", "href").await.unwrap();
    assert_eq!(job_link, format!("{runs}/job/{CHECK_RUN_ID}"));

    let sha256 = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    assert!(b.text("#sha256").await.contains(&sha256));
    assert!(b.text("#size").await.contains(&body.len().to_string()));
    // No push is configured; the upload's own event is written in the background.
    assert!(!b.has("table#upload-pushes").await);
    let page = format!("/ui/uploads/{id}");
    reload_until(&b, &page, "the upload's event", || async {
        b.has("table#upload-events tbody tr td.outcome").await
    })
    .await;
    assert_eq!(
        b.text("table#upload-events tbody tr td.outcome").await,
        "accepted"
    );

    // The content downloads as an attachment, with the session.
    let href = b.attr("a#download", "href").await.unwrap();
    assert!(
        href.ends_with(&format!("/ui/uploads/{id}/content")),
        "{href}"
    );
    let cookie = b.session_cookie().await.expect("a session cookie");
    let resp = get_with(
        h,
        &format!("/ui/uploads/{id}/content"),
        Some(&format!("runproof_console={}", cookie.value)),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let disposition = resp
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert_eq!(resp.text().await.unwrap(), body);

    if screenshots {
        b.open(&page).await;
        b.find("dl#identity").await;
        write_screenshot(&b, "console-upload.png").await;
    }
    b.quit().await;
}

/// Writes the page the browser shows to `docs/{file}` when `RUNPROOF_WRITE_SCREENSHOTS=1`
/// (so that test runs leave the tree as it was).
async fn write_screenshot(b: &Browser, file: &str) {
    if std::env::var("RUNPROOF_WRITE_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    b.screenshot(&docs.join(file)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_draws_charts_and_counts() {
    if common::browser::binaries().is_none() {
        return;
    }
    // Every push fails: the overview counts them.
    let (url, receiver) = start_receiver().await;
    *receiver.failing.lock().unwrap() = true;
    let h = Harness::start_with(Options {
        trust_rules: vec![TrustRule {
            name: "main branch".into(),
            refs: Some(vec!["refs/heads/main".into()]),
            ..TrustRule::default()
        }],
        push: Some(push_config(&url)),
        ..Default::default()
    })
    .await;
    let names = [
        "dist/app-1.4.2.tar.gz",
        "dist/app-1.4.2.zip",
        "sbom.spdx.json",
        "coverage/lcov.info",
        "provenance.intoto.jsonl",
    ];
    for name in names {
        let (status, body) = h.upload(Some(&bearer(&h.token())), name, "1").await;
        assert_eq!(status, 201, "{body}");
    }
    // Refusals of three codes: a rule, a replay, a signature from an unknown key.
    for branch in ["feature", "dependabot/cargo/serde-1.0.300"] {
        let token = claims_with(&h, |c| {
            c.insert("ref".into(), json!(format!("refs/heads/{branch}")));
        });
        let (status, body) = upload_as(&h, &token, "refused", "1").await;
        assert_eq!(status, 403, "{body}");
    }
    let token = h.token();
    let (status, _) = h.upload(Some(&bearer(&token)), "once", "1").await;
    assert_eq!(status, 201);
    let (status, body) = h.upload(Some(&bearer(&token)), "twice", "1").await;
    assert_eq!(status, 401, "{body}");
    let forged = runproof_testkit::TestKey::generate(h.gh.current_key().kid()).unwrap();
    let forged = forged.sign_claims(&Value::Object(h.claims())).unwrap();
    let (status, body) = h.upload(Some(&bearer(&forged)), "forged", "1").await;
    assert_eq!(status, 401, "{body}");
    let uploads = names.len() + 1;

    let b = Browser::start(&h.url).await.unwrap();
    b.sign_in(API_KEY).await;
    // Pushes fail and events are written in the background.
    reload_until(&b, "/ui/", "every failed push", || async {
        b.text("#count-failed-pushes").await == uploads.to_string()
    })
    .await;
    b.find("svg#uploads-chart").await;
    b.find("svg#refusals-chart").await;
    assert_eq!(b.text("#count-pending").await, "0");
    assert_eq!(b.text("#count-installations").await, "0");
    // Pages read without JavaScript: the console serves none.
    assert_eq!(
        b.d()
            .execute("return document.scripts.length", vec![])
            .await
            .unwrap()
            .convert::<u64>()
            .unwrap(),
        0
    );
    // The refusals are in before the picture is taken.
    for _ in 0..POLLS {
        let events: Value = h
            .get("/v1/events?outcome=refused&limit=100", Some(API_KEY))
            .await
            .json()
            .await
            .unwrap();
        if events["events"].as_array().map_or(0, Vec::len) >= 4 {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    // A day of earlier traffic, as the event log would hold it: the charts draw every hour.
    let now = h.service.clock().now().0;
    let mut history = Vec::new();
    for hours_ago in 1..24i64 {
        let at = runproof_core::UnixTime(now - hours_ago * 3600);
        let busy = 3 + (hours_ago * 7 % 11) as usize;
        for (mode, share) in [
            ("oidc", busy),
            ("session", busy / 3),
            ("github_token", hours_ago as usize % 3),
        ] {
            for _ in 0..share {
                let mut e = runproof_store::NewEvent::new(
                    at,
                    runproof_store::EventKind::Upload,
                    runproof_store::EventOutcome::Accepted,
                );
                e.mode = Some(mode.to_owned());
                history.push(e);
            }
        }
        for (code, n) in [
            ("policy_denied", hours_ago % 4),
            ("token_expired", hours_ago % 3 / 2),
            ("not_installed", i64::from(hours_ago % 9 == 0)),
        ] {
            for _ in 0..n {
                let mut e = runproof_store::NewEvent::new(
                    at,
                    runproof_store::EventKind::Upload,
                    runproof_store::EventOutcome::Refused,
                );
                e.mode = Some("oidc".to_owned());
                e.code = Some(code.to_owned());
                history.push(e);
            }
        }
    }
    h.service.store().insert_events(&history).await.unwrap();
    b.open("/ui/").await;
    b.find("svg#refusals-chart").await;
    // Bars in earlier hours too, each with its tooltip.
    let bars = b
        .d()
        .execute(
            "return document.querySelectorAll('svg#uploads-chart rect title').length",
            vec![],
        )
        .await
        .unwrap()
        .convert::<u64>()
        .unwrap();
    assert!(bars >= 24, "{bars} bar segments in the uploads chart");
    write_screenshot(&b, "console-overview.png").await;

    b.click("a#range-7d").await;
    b.wait_path("/ui/?range=7d").await;
    b.find("svg#uploads-chart").await;
    b.click("a#range-24h").await;
    b.find("svg#refusals-chart").await;
    b.quit().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_shows_its_mismatches_and_a_pasted_token_is_explained() {
    if common::browser::binaries().is_none() {
        return;
    }
    let rule = TrustRule {
        name: "main branch".into(),
        refs: Some(vec!["refs/heads/main".into()]),
        ..TrustRule::default()
    };
    let h = Harness::start_with(Options {
        trust_rules: vec![rule],
        ..Default::default()
    })
    .await;
    let (status, body) = h.upload(Some(&bearer(&h.token())), "ok.txt", "1").await;
    assert_eq!(status, 201, "{body}");
    let feature = |h: &Harness| {
        claims_with(h, |c| {
            c.insert("ref".into(), json!("refs/heads/feature"));
        })
    };
    let (status, body) = upload_as(&h, &feature(&h), "refused.txt", "1").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "policy_denied");

    let b = Browser::start(&h.url).await.unwrap();
    b.sign_in(API_KEY).await;
    // Events are written in the background: reload until the refusal is listed.
    reload_until(&b, "/ui/refusals", "the refusal", || async {
        b.has("table#refusals tbody tr td.code").await
    })
    .await;
    let row = b.find("table#refusals tbody tr").await;
    assert_eq!(cell(&row, "td.code").await, "policy_denied");
    let rule = cell(&row, "td.rule").await;
    assert!(rule.starts_with("main branch"), "{rule}");
    assert!(cell(&row, "td.repository").await.contains("1296269"));
    assert_eq!(
        cell(&row, "td.workflow").await,
        h.claims()["workflow_ref"].as_str().unwrap()
    );
    let mismatch = row
        .find(thirtyfour::By::Css("ul.mismatches li"))
        .await
        .unwrap();
    assert_eq!(cell(&mismatch, "span.field").await, "ref");
    assert!(
        cell(&mismatch, "span.expected")
            .await
            .contains("refs/heads/main")
    );
    assert_eq!(cell(&mismatch, "span.actual").await, "refs/heads/feature");
    write_screenshot(&b, "console-refusals.png").await;

    // The same refusal, explained from a pasted token.
    b.click("a#explain-link").await;
    b.wait_path("/ui/explain").await;
    b.type_into("form#explain textarea[name=token]", &feature(&h))
        .await;
    b.click("form#explain button[type=submit]").await;
    let result = b.find("#explain-result").await;
    let class = result.attr("class").await.unwrap().unwrap_or_default();
    assert!(
        class.split_whitespace().any(|c| c == "denied"),
        "class {class:?}"
    );
    let mut seen = Vec::new();
    for rule in b.find_all("table#rules tbody tr").await {
        let name = cell(&rule, "td.name").await;
        if let Ok(m) = rule.find(thirtyfour::By::Css("ul.mismatches li")).await {
            seen.push((
                name,
                cell(&m, "span.field").await,
                cell(&m, "span.actual").await,
            ));
        }
    }
    assert!(
        seen.contains(&(
            "main branch".into(),
            "ref".into(),
            "refs/heads/feature".into()
        )),
        "{seen:?}"
    );
    assert!(!b.find_all("table#checks tbody tr").await.is_empty());
    write_screenshot(&b, "console-explain.png").await;

    // A token the rule admits is explained as allowed.
    b.open("/ui/explain").await;
    b.type_into("form#explain textarea[name=token]", &h.token())
        .await;
    b.click("form#explain button[type=submit]").await;
    let class = b.attr("#explain-result", "class").await.unwrap_or_default();
    assert!(
        class.split_whitespace().any(|c| c == "allowed"),
        "class {class:?}"
    );
    b.quit().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_push_is_retried_from_the_console_and_delivered() {
    if common::browser::binaries().is_none() {
        return;
    }
    let (url, receiver) = start_receiver().await;
    *receiver.failing.lock().unwrap() = true;
    let h = Harness::start_with(Options {
        push: Some(push_config(&url)),
        ..Default::default()
    })
    .await;
    let (status, record) = h.upload(Some(&bearer(&h.token())), "pushed.bin", "1").await;
    assert_eq!(status, 201, "{record}");
    let id = record["id"].as_str().unwrap().to_owned();

    let b = Browser::start(&h.url).await.unwrap();
    b.sign_in(API_KEY).await;
    reload_until(
        &b,
        "/ui/pushes?status=failed",
        "the failed push",
        || async { row_linking(&b, "table#pushes", &id).await.is_some() },
    )
    .await;
    let row = row_linking(&b, "table#pushes", &id).await.unwrap();
    assert_eq!(cell(&row, "td.status").await, "failed");
    assert_eq!(cell(&row, "td.attempts").await, "1");
    assert!(
        cell(&row, "td.last-error").await.contains("500"),
        "the receiver's answer is shown"
    );
    assert_eq!(receiver.got.lock().unwrap().len(), 1);

    *receiver.failing.lock().unwrap() = false;
    row.find(thirtyfour::By::Css("form.retry button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_path("/ui/pushes").await;
    b.find("p.notice").await;

    reload_until(
        &b,
        "/ui/pushes?status=delivered",
        "the delivery",
        || async {
            match row_linking(&b, "table#pushes", &id).await {
                Some(row) => cell(&row, "td.status").await == "delivered",
                None => false,
            }
        },
    )
    .await;
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one failed attempt, then the retry");
    assert_eq!(got[1]["upload"]["id"], id.as_str());
    b.quit().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_a_signed_out_session_no_longer_opens_the_console() {
    if common::browser::binaries().is_none() {
        return;
    }
    let h = Harness::start().await;
    let b = Browser::start(&h.url).await.unwrap();
    // A wrong key shows the form again with an error, and no session.
    b.open("/ui/sign-in").await;
    b.type_into("form#sign-in input[name=key]", "not-the-api-key")
        .await;
    b.click("form#sign-in button[type=submit]").await;
    b.find("p.error").await;
    assert!(b.session_cookie().await.is_none());

    b.sign_in(API_KEY).await;
    let old = b.session_cookie().await.expect("a session cookie");
    let header = format!("runproof_console={}", old.value);
    assert_eq!(get_with(&h, "/ui/", Some(&header)).await.status(), 200);

    let out = b.find("form#sign-out button[type=submit]").await;
    assert_eq!(out.text().await.unwrap(), "Sign out");
    out.click().await.unwrap();
    b.wait_path("/ui/sign-in").await;
    b.find("form#sign-in").await;
    b.open("/ui/").await;
    b.wait_path("/ui/sign-in").await;

    // The old cookie, sent again, opens nothing.
    let resp = get_with(&h, "/ui/", Some(&header)).await;
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with("/ui/sign-in"), "{resp:?}");
    b.d().add_cookie(old).await.unwrap();
    b.open("/ui/uploads").await;
    b.wait_path("/ui/sign-in").await;
    b.quit().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_outsiders_text_is_shown_as_text_and_runs_nothing() {
    if common::browser::binaries().is_none() {
        return;
    }
    let h = Harness::start_with(Options {
        trust_rules: vec![TrustRule {
            name: "pushes".into(),
            events: Some(vec!["push".into()]),
            ..TrustRule::default()
        }],
        ..Default::default()
    })
    .await;
    let hostile = |h: &Harness, event: &str| {
        claims_with(h, |c| {
            c.insert("workflow".into(), json!(HOSTILE_WORKFLOW));
            c.insert("workflow_ref".into(), json!(HOSTILE_WORKFLOW));
            c.insert("job_workflow_ref".into(), json!(HOSTILE_WORKFLOW));
            c.insert("ref".into(), json!(HOSTILE_REF));
            c.insert("actor".into(), json!(HOSTILE_ACTOR));
            c.insert("event_name".into(), json!(event));
        })
    };
    let (status, record) = upload_as(&h, &hostile(&h, "push"), HOSTILE_NAME, "1").await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["name"], HOSTILE_NAME);
    let id = record["id"].as_str().unwrap().to_owned();
    let (status, body) = upload_as(&h, &hostile(&h, HOSTILE_EVENT), "b", "1").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["mismatches"][0]["actual"], HOSTILE_EVENT);

    let b = Browser::start(&h.url).await.unwrap();
    b.sign_in(API_KEY).await;

    // On each page the browser first checks that nothing became an element or ran, then
    // that the text reads as sent.
    b.open("/ui/uploads").await;
    b.find("table#uploads").await;
    assert_eq!(b.inert().await, Ok(()), "/ui/uploads");
    assert!(
        row_for(&b, "table#uploads", HOSTILE_NAME).await.is_some(),
        "the hostile name is listed as text"
    );

    b.open(&format!("/ui/uploads/{id}")).await;
    b.find("dl#identity").await;
    assert_eq!(b.inert().await, Ok(()), "the upload page");
    assert!(b.text("h1").await.contains(HOSTILE_NAME));
    let ident = identity(&b).await;
    assert_eq!(
        ident.get("workflow").map(String::as_str),
        Some(HOSTILE_WORKFLOW)
    );
    assert_eq!(ident.get("ref").map(String::as_str), Some(HOSTILE_REF));
    let actor = ident.get("actor").cloned().unwrap_or_default();
    assert!(actor.starts_with(HOSTILE_ACTOR), "{actor}");

    reload_until(&b, "/ui/events", "both events", || async {
        b.find_all("table#events tbody tr").await.len() >= 2
    })
    .await;
    assert_eq!(b.inert().await, Ok(()), "/ui/events");
    let mut texts = Vec::new();
    for td in b.find_all("table#events td.workflow").await {
        texts.push(td.text().await.unwrap());
    }
    assert!(
        texts.iter().any(|t| t == HOSTILE_WORKFLOW),
        "the workflow is shown as text: {texts:?}"
    );

    b.open("/ui/refusals").await;
    let row = b.find("table#refusals tbody tr").await;
    assert_eq!(b.inert().await, Ok(()), "/ui/refusals");
    assert_eq!(cell(&row, "td.workflow").await, HOSTILE_WORKFLOW);
    assert_eq!(
        cell(&row, "ul.mismatches li span.actual").await,
        HOSTILE_EVENT
    );

    b.open("/ui/").await;
    assert_eq!(b.inert().await, Ok(()), "the overview");
    b.quit().await;
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// Without a session, and without a CSRF token: plain HTTP, no browser needed.

#[tokio::test]
async fn rule_without_a_session_every_console_page_redirects_to_sign_in() {
    let h = Harness::start().await;
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201);
    let id = record["id"].as_str().unwrap();
    let pages = [
        "/ui/".to_owned(),
        "/ui/?range=7d".to_owned(),
        "/ui/uploads".to_owned(),
        format!("/ui/uploads/{id}"),
        format!("/ui/uploads/{id}/content"),
        "/ui/refusals".to_owned(),
        "/ui/explain".to_owned(),
        "/ui/pushes".to_owned(),
        "/ui/pushes?status=failed".to_owned(),
        "/ui/installations".to_owned(),
        "/ui/installations/1".to_owned(),
        "/ui/repositories/1296269".to_owned(),
        "/ui/events".to_owned(),
    ];
    for cookie in [None, Some("runproof_console=made-up-session")] {
        for page in &pages {
            let resp = get_with(&h, page, cookie).await;
            assert_eq!(resp.status(), 303, "{page} with {cookie:?}");
            let to = location(&resp);
            assert!(to.starts_with("/ui/sign-in"), "{page}: to {to}");
            let csp = resp
                .headers()
                .get("content-security-policy")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(csp.contains("frame-ancestors 'none'"), "{page}: {csp}");
        }
    }
    // The sign-in page itself opens.
    assert_eq!(get_with(&h, "/ui/sign-in", None).await.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn rule_a_state_changing_post_without_its_csrf_token_is_refused() {
    let (url, _receiver) = start_receiver().await;
    let h = Harness::start_with(Options {
        push: Some(push_config(&url)),
        ..Default::default()
    })
    .await;
    let cookie = sign_in_http(&h).await;
    let page = get_with(&h, "/ui/pushes", Some(&cookie)).await;
    assert_eq!(page.status(), 200);
    let csrf = csrf_in(&page.text().await.unwrap());
    let push = uuid::Uuid::new_v4();
    let retry = format!("/ui/pushes/{push}/retry");

    for (path, body, origin, why) in [
        (retry.as_str(), String::new(), None, "retry without csrf"),
        ("/ui/sign-out", String::new(), None, "sign-out without csrf"),
        (
            retry.as_str(),
            "csrf=forged-0123456789".to_owned(),
            Some("https://attacker.example"),
            "cross-site retry with a wrong csrf",
        ),
        (
            "/ui/sign-out",
            "csrf=forged-0123456789".to_owned(),
            Some("https://attacker.example"),
            "cross-site sign-out with a wrong csrf",
        ),
        (
            "/ui/explain",
            format!("token={}", enc(&h.token())),
            None,
            "explain without csrf",
        ),
    ] {
        let resp = post_form(&h, path, &cookie, &body, origin).await;
        assert_eq!(resp.status(), 403, "rule: {why}");
    }
    // Sign-in needs its form's token too.
    let resp = client()
        .post(format!("{}/ui/sign-in", h.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={}", enc(API_KEY)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "rule: sign-in without csrf");
    assert!(
        cookies_of(&resp)
            .iter()
            .all(|c| !c.starts_with("runproof_console="))
    );

    // Refused sign-outs ended nothing; with its token, a sign-out does.
    assert_eq!(get_with(&h, "/ui/", Some(&cookie)).await.status(), 200);
    let resp = post_form(
        &h,
        "/ui/sign-out",
        &cookie,
        &format!("csrf={}", enc(&csrf)),
        None,
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with("/ui/sign-in"));
    assert_eq!(get_with(&h, "/ui/", Some(&cookie)).await.status(), 303);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: the upload walk-through over a PostgreSQL store.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_find_an_upload_and_open_it_on_postgresql() {
    const URL_VAR: &str = "RUNPROOF_TEST_DATABASE_URL";
    let url = match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{URL_VAR} is not set, and with CI=true the PostgreSQL case must run"
            );
            println!("SKIPPED: the console on PostgreSQL not run: {URL_VAR} is not set");
            return;
        }
    };
    if common::browser::binaries().is_none() {
        return;
    }
    let schema = format!("rp_console_{}", uuid::Uuid::new_v4().simple());
    let opts = runproof_store::PostgresOptions {
        schema: Some(schema.clone()),
        ..Default::default()
    };
    let pg = runproof_store::PostgresStore::connect(&url, opts)
        .await
        .unwrap();
    let pg: Arc<dyn runproof_store::Store> = Arc::new(pg);
    // In a task of its own, so that the schema is dropped also when the test fails.
    let outcome = tokio::spawn(async move {
        let h = Harness::start_with(Options {
            wrap_store: Some(Box::new(move |_sqlite| pg)),
            ..Default::default()
        })
        .await;
        find_an_upload_and_open_it(&h, false).await;
        h.stop().await;
    })
    .await;
    drop_schema(&url, &schema).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Installations and their repositories, learnt from webhooks; long lists.

const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 91;
const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";
/// A repository name as a webhook carries it: outsiders' text too.
const HOSTILE_REPOSITORY: &str = "octo-org/<img src=x onerror=alert(6)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installations_list_their_repositories_and_rules() {
    if common::browser::binaries().is_none() {
        return;
    }
    let gh = runproof_testkit::FakeGithub::start().await.unwrap();
    let creds = gh.register_app(APP_ID).unwrap();
    let run = runproof_testkit::RunSpec::default();
    let repositories = [
        (run.repository_id, "octo-org/octo-repo"),
        (5_550_001, HOSTILE_REPOSITORY),
    ];
    gh.add_installation(
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &repositories,
    );
    let h = Harness::start_against(
        gh,
        Options {
            app: Some((APP_ID, Secret::new(creds.private_key_pem))),
            webhook_secrets: vec![Secret::new(WEBHOOK_SECRET.into())],
            ..Default::default()
        },
    )
    .await;
    let created = runproof_testkit::installation_payload(
        "created",
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &repositories,
    );
    let (status, body, _) = runproof_testkit::WebhookSender::new(
        format!("{}/v1/github/webhooks", h.url),
        WEBHOOK_SECRET.as_bytes(),
    )
    .send("installation", &created)
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let resp = h
        .http
        .put(format!(
            "{}/v1/repositories/{}/rules",
            h.url, run.repository_id
        ))
        .bearer_auth(API_KEY)
        .json(&json!({"rules": [{"name": "main pushes", "refs": ["refs/heads/main"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let b = Browser::start(&h.url).await.unwrap();
    b.sign_in(API_KEY).await;
    assert_eq!(b.text("#count-installations").await, "1");
    b.click("nav#nav a[href=\"/ui/installations\"]").await;
    b.wait_path("/ui/installations").await;
    let link = b.find("table#installations tbody tr a.installation").await;
    assert_eq!(link.text().await.unwrap(), INSTALLATION.to_string());
    link.click().await.unwrap();
    b.wait_path(&format!("/ui/installations/{INSTALLATION}"))
        .await;
    b.find("table#repositories").await;
    assert_eq!(b.inert().await, Ok(()), "an installation's page");
    let mut rows = BTreeMap::new();
    for row in b.find_all("table#repositories tbody tr").await {
        rows.insert(
            cell(&row, "td.repository").await,
            cell(&row, "td.rules").await,
        );
    }
    assert_eq!(
        rows.get(HOSTILE_REPOSITORY).map(String::as_str),
        Some("none"),
        "a webhook's repository name is shown as text: {rows:?}"
    );
    assert_eq!(
        rows.get("octo-org/octo-repo").map(String::as_str),
        Some("rules")
    );
    b.click("table#repositories a.rules").await;
    b.wait_path(&format!("/ui/repositories/{}", run.repository_id))
        .await;
    let rules = b.text("#rules").await;
    assert!(rules.contains("main pushes"), "{rules}");
    assert!(rules.contains("refs/heads/main"), "{rules}");
    b.quit().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lists_page() {
    if common::browser::binaries().is_none() {
        return;
    }
    let h = Harness::start().await;
    let total = 53;
    for i in 0..total {
        let (status, body) = h
            .upload(Some(&bearer(&h.token())), &format!("part-{i:03}"), "1")
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let b = Browser::start(&h.url).await.unwrap();
    b.sign_in(API_KEY).await;
    b.open("/ui/uploads").await;
    let mut seen = std::collections::BTreeSet::new();
    for page in 0..10 {
        for a in b.find_all("table#uploads tbody tr a.upload").await {
            assert!(seen.insert(a.text().await.unwrap()), "listed twice");
        }
        if !b.has("a#next-page").await {
            assert!(page > 0, "a first page of {total} uploads has a next page");
            break;
        }
        let next = b.attr("a#next-page", "href").await.unwrap();
        b.click("a#next-page").await;
        b.wait_path(&next).await;
        b.find("table#uploads").await;
    }
    assert_eq!(seen.len(), total, "every upload, once");
    b.quit().await;
    h.stop().await;
}
