//! The operator console over HTTP: sessions, CSRF, headers, redirects and every page, on
//! a real server. What a browser does with the pages is `console_browser.rs`'s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{API_KEY, Harness, Options, bearer};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A client that follows no redirect, keeps no cookie by itself, and reaches the server.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The value of cookie `name` set by `headers`, and its whole `Set-Cookie` line.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|line| line.starts_with(&format!("{name}=")))
        .map(|line| {
            let value = line[name.len() + 1..].split(';').next().unwrap().to_owned();
            (value, line)
        })
}

/// An `application/x-www-form-urlencoded` body.
fn form_body(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The first hidden `csrf` field of a page.
fn csrf_field(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[start..].split('"').next().unwrap().to_owned()
}

/// A signed-in console client: its session cookie and CSRF token.
struct Operator {
    url: String,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Operator {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .header("cookie", format!("runproof_console={}", self.cookie))
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .header("cookie", format!("runproof_console={}", self.cookie))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, path: &str) -> String {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        resp.text().await.unwrap()
    }
}

/// Opens the sign-in form: its CSRF token and form cookie.
async fn sign_in_form(url: &str, http: &reqwest::Client) -> (String, String) {
    let resp = http.get(format!("{url}/ui/sign-in")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (form_cookie, _) = set_cookie(resp.headers(), "runproof_console_signin").unwrap();
    let html = resp.text().await.unwrap();
    (csrf_field(&html), form_cookie)
}

async fn try_sign_in(url: &str, http: &reqwest::Client, key: &str) -> reqwest::Response {
    let (csrf, form_cookie) = sign_in_form(url, http).await;
    http.post(format!("{url}/ui/sign-in"))
        .header("cookie", format!("runproof_console_signin={form_cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("key", key),
            ("csrf", csrf.as_str()),
            ("next", "/ui/"),
        ]))
        .send()
        .await
        .unwrap()
}

async fn sign_in(h: &Harness) -> Operator {
    let http = client();
    let resp = try_sign_in(&h.url, &http, API_KEY).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (cookie, _) = set_cookie(resp.headers(), "runproof_console").unwrap();
    let home = http
        .get(format!("{}/ui/", h.url))
        .header("cookie", format!("runproof_console={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    let csrf = csrf_field(&home.text().await.unwrap());
    Operator {
        url: h.url.clone(),
        http,
        cookie,
        csrf,
    }
}

const PAGES: [&str; 12] = [
    "/ui/",
    "/ui/?range=7d",
    "/ui/uploads",
    "/ui/uploads?status=verified&mode=oidc",
    "/ui/refusals",
    "/ui/refusals?code=policy_denied",
    "/ui/explain",
    "/ui/pushes",
    "/ui/pushes?status=all",
    "/ui/installations",
    "/ui/events",
    "/ui/events?kind=upload&outcome=accepted",
];

#[tokio::test]
async fn rule_console_pages_redirect_to_sign_in_without_a_session() {
    let h = Harness::start().await;
    let http = client();
    let id = "0190d4a6-1c7e-7000-8000-000000000000";
    let mut paths: Vec<String> = PAGES.iter().map(|p| (*p).to_owned()).collect();
    paths.extend([
        format!("/ui/uploads/{id}"),
        format!("/ui/uploads/{id}/content"),
        "/ui/installations/1".to_owned(),
        "/ui/repositories/1".to_owned(),
        "/ui/no-such-page".to_owned(),
    ]);
    // A session cookie of the right shape, with this server's key tag, that the store never
    // issued.
    let issued = sign_in(&h).await.cookie;
    let tag = issued.split('.').next().unwrap();
    let forged = format!("runproof_console={tag}.{}", "ab".repeat(32));
    for cookie in [
        None,
        Some("runproof_console=00"),
        Some(&*format!("runproof_console={}", "ab".repeat(32))),
        Some(forged.as_str()),
    ] {
        for path in &paths {
            let mut req = http.get(format!("{}{path}", h.url));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::SEE_OTHER,
                "{path} with {cookie:?}"
            );
            let location = resp.headers()[LOCATION].to_str().unwrap();
            assert!(
                location.starts_with("/ui/sign-in?next=%2Fui%2F")
                    || location.starts_with("/ui/sign-in?next=/ui/"),
                "{path}: {location}"
            );
            // An API key is not a console session.
            let resp = http
                .get(format!("{}{path}", h.url))
                .header("authorization", bearer(API_KEY))
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::SEE_OTHER,
                "{path} with an API key"
            );
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn rule_console_sign_in_sets_a_strict_http_only_cookie() {
    let h = Harness::start().await;
    let http = client();
    let resp = try_sign_in(&h.url, &http, API_KEY).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/ui/");
    let (value, line) = set_cookie(resp.headers(), "runproof_console").unwrap();
    assert_eq!(
        value.len(),
        16 + 1 + 64,
        "a key tag and 32 random bytes: {line}"
    );
    assert!(line.contains("HttpOnly"), "{line}");
    assert!(line.contains("SameSite=Strict"), "{line}");
    assert!(line.contains("Path=/ui/"), "{line}");
    assert!(line.contains("Max-Age=43200"), "{line}");
    assert!(!line.contains("Secure"), "plain http: {line}");
    h.stop().await;

    let h = Harness::start_with(Options {
        ui: runproof_server::UiConfig {
            secure_cookies: true,
            ..runproof_server::UiConfig::default()
        },
        ..Options::default()
    })
    .await;
    let resp = try_sign_in(&h.url, &client(), API_KEY).await;
    let (_, line) = set_cookie(resp.headers(), "runproof_console").unwrap();
    assert!(line.contains("Secure"), "{line}");
    h.stop().await;
}

#[tokio::test]
async fn rule_console_sign_in_refuses_a_wrong_key() {
    let h = Harness::start().await;
    let http = client();
    for key in [
        "",
        "test-api-key-012345678",
        "test-api-key-0123456789x",
        "TEST-API-KEY-0123456789",
    ] {
        let resp = try_sign_in(&h.url, &http, key).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{key:?}");
        assert!(set_cookie(resp.headers(), "runproof_console").is_none());
        let html = resp.text().await.unwrap();
        assert!(html.contains("class=\"error\""), "{html}");
    }
    h.stop().await;
}

#[tokio::test]
async fn rule_console_sign_in_needs_its_form_token() {
    let h = Harness::start().await;
    let http = client();
    let (csrf, form_cookie) = sign_in_form(&h.url, &http).await;
    // No form cookie (a form posted from another site), and a cookie that does not match.
    for cookie in [
        None,
        Some(format!("runproof_console_signin={}", "0".repeat(64))),
    ] {
        let mut req = http
            .post(format!("{}/ui/sign-in", h.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("key", API_KEY), ("csrf", csrf.as_str())]));
        if let Some(c) = &cookie {
            req = req.header("cookie", c);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{cookie:?}");
        assert!(set_cookie(resp.headers(), "runproof_console").is_none());
    }
    // The cookie without the field.
    let resp = http
        .post(format!("{}/ui/sign-in", h.url))
        .header("cookie", format!("runproof_console_signin={form_cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("key", API_KEY)]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    h.stop().await;
}

#[tokio::test]
async fn rule_console_sign_in_is_rate_limited_per_address() {
    let h = Harness::start_with(Options {
        ui: runproof_server::UiConfig {
            sign_in_per_minute: 3,
            ..runproof_server::UiConfig::default()
        },
        ..Options::default()
    })
    .await;
    let http = client();
    for _ in 0..3 {
        let resp = try_sign_in(&h.url, &http, "wrong").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right key waits now.
    let resp = try_sign_in(&h.url, &http, API_KEY).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(set_cookie(resp.headers(), "runproof_console").is_none());
    // Operators see the attempts.
    let metrics = h.get("/metrics", Some(API_KEY)).await.text().await.unwrap();
    for outcome in ["wrong_key", "rate_limited"] {
        assert!(
            metrics.contains(&format!(
                "runproof_console_sign_ins_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn rule_console_state_changing_posts_need_the_session_csrf_token() {
    let h = Harness::start().await;
    let op = sign_in(&h).await;
    let other = sign_in(&h).await;
    assert_ne!(op.csrf, other.csrf, "each session has its own token");
    let push = "0190d4a6-1c7e-7000-8000-000000000000";
    for (path, form) in [
        ("/ui/sign-out", vec![]),
        ("/ui/sign-out", vec![("csrf", "")]),
        ("/ui/sign-out", vec![("csrf", other.csrf.as_str())]),
        (&*format!("/ui/pushes/{push}/retry"), vec![]),
        (&*format!("/ui/pushes/{push}/retry"), vec![("csrf", "x")]),
        ("/ui/explain", vec![("token", "a.b.c")]),
    ] {
        let resp = op.post(path, &form).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path} {form:?}");
    }
    // The session survived every refused sign-out.
    assert_eq!(op.get("/ui/").await.status(), StatusCode::OK);
    // Without a session, a POST goes to sign-in and changes nothing.
    let resp = client()
        .post(format!("{}/ui/sign-out", h.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", op.csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(op.get("/ui/").await.status(), StatusCode::OK);
    h.stop().await;
}

#[tokio::test]
async fn rule_console_sign_out_ends_the_session_for_good() {
    let h = Harness::start().await;
    let op = sign_in(&h).await;
    let resp = op.post("/ui/sign-out", &[("csrf", op.csrf.as_str())]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/ui/sign-in");
    let (value, line) = set_cookie(resp.headers(), "runproof_console").unwrap();
    assert!(value.is_empty() && line.contains("Max-Age=0"), "{line}");
    // The old cookie, replayed, no longer works.
    let resp = op.get("/ui/uploads").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    h.stop().await;
}

#[tokio::test]
async fn rule_console_sessions_expire() {
    let h = Harness::start_with(Options {
        ui: runproof_server::UiConfig {
            session_ttl: Duration::from_secs(1),
            ..runproof_server::UiConfig::default()
        },
        ..Options::default()
    })
    .await;
    let op = sign_in(&h).await;
    let mut expired = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if op.get("/ui/").await.status() == StatusCode::SEE_OTHER {
            expired = true;
            break;
        }
    }
    assert!(expired, "the session outlived its lifetime");
    h.stop().await;
}

#[tokio::test]
async fn rule_console_sign_in_never_sends_the_browser_elsewhere() {
    let h = Harness::start().await;
    let http = client();
    for next in [
        "https://evil.example/",
        "//evil.example/",
        "/ui//evil.example",
        "/v1/uploads",
    ] {
        let (csrf, form_cookie) = sign_in_form(&h.url, &http).await;
        let resp = http
            .post(format!("{}/ui/sign-in", h.url))
            .header("cookie", format!("runproof_console_signin={form_cookie}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("key", API_KEY),
                ("csrf", csrf.as_str()),
                ("next", next),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()[LOCATION], "/ui/", "{next}");
    }
    h.stop().await;
}

fn assert_console_headers(headers: &HeaderMap, what: &str) {
    assert_eq!(headers["content-security-policy"], CSP, "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
}

#[tokio::test]
async fn rule_console_answers_carry_a_strict_content_security_policy() {
    let h = Harness::start().await;
    let http = client();
    for path in ["/ui/sign-in", "/ui/", "/ui/static/console.css"] {
        let resp = http.get(format!("{}{path}", h.url)).send().await.unwrap();
        assert_console_headers(resp.headers(), path);
    }
    let op = sign_in(&h).await;
    for path in PAGES {
        let resp = op.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_console_headers(resp.headers(), path);
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
        let html = resp.text().await.unwrap();
        assert!(!html.contains("<script"), "{path}: a script");
        assert!(!html.contains("style="), "{path}: an inline style");
    }
    for path in [
        "/ui/uploads?status=nope",
        "/ui/no-such-page",
        "/ui/uploads/not-an-id",
    ] {
        let resp = op.get(path).await;
        assert!(resp.status().is_client_error(), "{path}");
        assert_console_headers(resp.headers(), path);
    }
    h.stop().await;
}

#[tokio::test]
async fn rule_console_off_serves_nothing() {
    let h = Harness::start_with(Options {
        ui: runproof_server::UiConfig {
            enabled: false,
            ..runproof_server::UiConfig::default()
        },
        ..Options::default()
    })
    .await;
    for path in [
        "/ui",
        "/ui/",
        "/ui/sign-in",
        "/ui/uploads",
        "/ui/static/console.css",
    ] {
        let resp = client()
            .get(format!("{}{path}", h.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    h.stop().await;
}

#[tokio::test]
async fn rule_console_offers_content_only_as_an_attachment() {
    let h = Harness::start().await;
    let (status, body) = h
        .upload(
            Some(&bearer(&h.token())),
            "page.html",
            "<script>alert(1)</script>",
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let op = sign_in(&h).await;
    let page = op.page(&format!("/ui/uploads/{id}")).await;
    assert!(
        !page.contains("<script>alert(1)</script>"),
        "the content is never inlined"
    );
    assert!(page.contains(&format!("href=\"/ui/uploads/{id}/content\"")));
    let resp = op.get(&format!("/ui/uploads/{id}/content")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(resp.text().await.unwrap(), "<script>alert(1)</script>");
    h.stop().await;
}

#[tokio::test]
async fn console_pages_show_uploads_refusals_and_events() {
    let h = Harness::start().await;
    let (status, body) = h
        .upload(Some(&bearer(&h.token())), "report.xml", "<ok/>")
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, _) = h.upload(Some("Bearer not.a.token"), "bad.txt", "x").await;
    assert_eq!(status, 401);
    let op = sign_in(&h).await;
    // Events are written by a background task: wait for both.
    let mut seen = false;
    for _ in 0..100 {
        let events = op.page("/ui/events").await;
        if events.contains("malformed_token") && events.contains(&id) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the events page shows both events");
    let list = op.page("/ui/uploads").await;
    assert!(
        list.contains(&format!("href=\"/ui/uploads/{id}\"")),
        "{list}"
    );
    assert!(list.contains("report.xml"));
    let upload = op.page(&format!("/ui/uploads/{id}")).await;
    let identity = h.claims();
    let repository = identity["repository"].as_str().unwrap();
    let run_id = identity["run_id"].as_str().unwrap();
    assert!(
        upload.contains(&format!(
            "https://github.com/{repository}/actions/runs/{run_id}\""
        )),
        "{upload}"
    );
    assert!(upload.contains(body["sha256"].as_str().unwrap()));
    let refusals = op.page("/ui/refusals").await;
    assert!(refusals.contains("malformed_token"), "{refusals}");
    let filtered = op.page("/ui/uploads?status=pending").await;
    assert!(!filtered.contains("report.xml"));
    let overview = op.page("/ui/").await;
    assert!(overview.contains("id=\"uploads-chart\""));
    assert!(overview.contains("id=\"refusals-chart\""));
    for bad in [
        "/ui/uploads?mode=x",
        "/ui/uploads?since=yesterday",
        "/ui/events?cursor=zz",
        "/ui/?range=1y",
    ] {
        assert_eq!(op.get(bad).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    h.stop().await;
}
