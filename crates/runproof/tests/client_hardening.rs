//! The upload client against a hostile server and a hostile workspace: it requests no token
//! for another service's audience, uploads nothing through a symlink or from outside its base
//! directory, and lets no string of the server reach `$GITHUB_OUTPUT`, the step summary or a
//! log line as a workflow command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runproof_client::{
    Auth, ClientError, FileRefused, ForeignAudience, LocalFile, TokenSource, UploadOptions,
    upload_all,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const ID: &str = "01900000-0000-7000-8000-0000000000a1";
const INJECTED_ID: &str =
    "01900000-0000-7000-8000-0000000000a1\n::warning::injected\nupload-ids=pwned";

/// How the fake server answers an upload.
#[derive(Clone)]
enum Answer {
    /// 201 with a correct record and this id.
    Record { id: String, status: String },
    /// A problem with this status, code and detail.
    Refuse {
        status: u16,
        code: String,
        detail: String,
    },
}

struct Fake {
    /// Statuses answered to `/.well-known/runproof` before the audience.
    well_known_failures: Mutex<VecDeque<u16>>,
    audience: Mutex<String>,
    answer: Mutex<Answer>,
    /// What `GET /v1/uploads/{id}/status` answers.
    status: Mutex<Value>,
    well_known_hits: Mutex<usize>,
    token_audiences: Mutex<Vec<String>>,
    uploads: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Fake {
    fn uploads(&self) -> Vec<(String, Vec<u8>)> {
        self.uploads.lock().unwrap().clone()
    }
    fn tokens(&self) -> Vec<String> {
        self.token_audiences.lock().unwrap().clone()
    }
}

async fn well_known(State(f): State<Arc<Fake>>) -> Response {
    *f.well_known_hits.lock().unwrap() += 1;
    if let Some(status) = f.well_known_failures.lock().unwrap().pop_front() {
        return (
            StatusCode::from_u16(status).unwrap(),
            [("retry-after", "0")],
            "busy",
        )
            .into_response();
    }
    let audience = f.audience.lock().unwrap().clone();
    axum::Json(json!({ "audience": audience, "modes": ["oidc"] })).into_response()
}

async fn token(
    State(f): State<Arc<Fake>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    f.token_audiences
        .lock()
        .unwrap()
        .push(q.get("audience").cloned().unwrap_or_default());
    axum::Json(json!({ "value": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln" })).into_response()
}

async fn upload(
    State(f): State<Arc<Fake>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let name = q.get("name").cloned().unwrap_or_default();
    f.uploads
        .lock()
        .unwrap()
        .push((name.clone(), body.to_vec()));
    match f.answer.lock().unwrap().clone() {
        Answer::Record { id, status } => (
            if status == "pending" {
                StatusCode::ACCEPTED
            } else {
                StatusCode::CREATED
            },
            axum::Json(json!({
                "id": id,
                "status": status,
                "mode": "oidc",
                "name": name,
                "size": body.len(),
                "sha256": hex::encode(Sha256::digest(&body)),
            })),
        )
            .into_response(),
        Answer::Refuse {
            status,
            code,
            detail,
        } => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/problem+json")],
            json!({ "code": code, "detail": detail }).to_string(),
        )
            .into_response(),
    }
}

async fn status(State(f): State<Arc<Fake>>, UrlPath(_id): UrlPath<String>) -> Response {
    axum::Json(f.status.lock().unwrap().clone()).into_response()
}

async fn start(audience: impl Fn(&str) -> String) -> (String, Arc<Fake>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let fake = Arc::new(Fake {
        well_known_failures: Mutex::default(),
        audience: Mutex::new(audience(&url)),
        answer: Mutex::new(Answer::Record {
            id: ID.into(),
            status: "verified".into(),
        }),
        status: Mutex::new(Value::Null),
        well_known_hits: Mutex::default(),
        token_audiences: Mutex::default(),
        uploads: Mutex::default(),
    });
    let app = axum::Router::new()
        .route("/.well-known/runproof", get(well_known))
        .route("/token", get(token))
        .route("/v1/uploads", post(upload))
        .route("/v1/uploads/{id}/status", get(status))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, fake)
}

fn tokens(url: &str) -> TokenSource {
    TokenSource::Actions {
        request_url: format!("{url}/token?api-version=2.0"),
        request_token: "runner-request-token".into(),
    }
}

fn options(url: &str, base: &Path, files: &[&str]) -> UploadOptions {
    UploadOptions {
        url: url.to_owned(),
        audience: None,
        base: Some(base.to_owned()),
        files: files.iter().map(PathBuf::from).collect(),
        attempts: 5,
        timeout: Duration::from_secs(10),
        progress: false,
    }
}

/// The working directory of the tests is the crate; files are given relative to it or
/// absolute, so the base is what decides.
fn workspace() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(ws.join("sub/dir")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("secret.txt"),
        "SECRET: ACTIONS_RUNTIME_TOKEN=xyz",
    )
    .unwrap();
    std::fs::write(ws.join("sub/dir/a.json"), "{\"a\": 1}").unwrap();
    std::fs::write(ws.join("b.json"), "{\"b\": 2}").unwrap();
    (dir, ws, outside)
}

#[tokio::test]
async fn rule_a_foreign_audience_is_refused_before_any_token_is_requested() {
    let (_dir, ws, _) = workspace();
    let b = ws.join("b.json");
    let b = b.to_str().unwrap();
    for foreign in [
        "sts.amazonaws.com",
        "https://sts.amazonaws.com",
        "https://127.0.0.1.evil.invalid",
        "api://AzureADTokenExchange",
    ] {
        let (url, fake) = start(|_| foreign.to_owned()).await;
        let err = upload_all(&options(&url, &ws, &[b]), &Auth::Oidc(tokens(&url)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::ForeignAudience(ForeignAudience { .. })),
            "{foreign}: {err:#}"
        );
        assert!(format!("{err:#}").contains("--audience"), "{err:#}");
        assert_eq!(fake.tokens(), Vec::<String>::new(), "{foreign}: no token");
        assert!(fake.uploads().is_empty());
    }

    // The server's own host (another port, a path) is accepted, and that is what is requested.
    let (url, fake) = start(|url| format!("{url}/tenant")).await;
    let done = upload_all(&options(&url, &ws, &[b]), &Auth::Oidc(tokens(&url)))
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(fake.tokens(), vec![format!("{url}/tenant")]);

    // An audience given explicitly is the workflow's choice, whatever the server says.
    let (url, fake) = start(|_| "https://sts.amazonaws.com".to_owned()).await;
    let mut opts = options(&url, &ws, &[b]);
    opts.audience = Some("https://runproof.example.com".into());
    upload_all(&opts, &Auth::Oidc(tokens(&url))).await.unwrap();
    assert_eq!(
        fake.tokens(),
        vec!["https://runproof.example.com".to_owned()]
    );
    assert_eq!(*fake.well_known_hits.lock().unwrap(), 0);
}

#[tokio::test]
async fn rule_a_foreign_audience_makes_the_binary_exit_non_zero_without_a_token() {
    let (_dir, ws, _) = workspace();
    let (url, fake) = start(|_| "https://sts.amazonaws.com".to_owned()).await;
    let out = run_binary(&url, &ws, &["upload", "--url", &url, "b.json"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--audience"), "{}", stderr(&out));
    assert!(fake.tokens().is_empty());
    assert!(fake.uploads().is_empty());
}

#[tokio::test]
async fn rule_discovery_is_retried_like_an_upload() {
    let (_dir, ws, _) = workspace();
    let b = ws.join("b.json");
    let b = b.to_str().unwrap();
    let (url, fake) = start(|url| url.to_owned()).await;
    fake.well_known_failures
        .lock()
        .unwrap()
        .extend([503, 429, 500]);
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        upload_all(&options(&url, &ws, &[b]), &Auth::Oidc(tokens(&url))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(*fake.well_known_hits.lock().unwrap(), 4);

    // A refusal is not retried, and no token is requested.
    let (url, fake) = start(|url| url.to_owned()).await;
    fake.well_known_failures.lock().unwrap().push_back(404);
    let err = upload_all(&options(&url, &ws, &[b]), &Auth::Oidc(tokens(&url)))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("404"), "{err:#}");
    assert_eq!(*fake.well_known_hits.lock().unwrap(), 1);
    assert!(fake.tokens().is_empty());
}

#[tokio::test]
async fn rule_symlinks_files_outside_the_base_and_special_files_are_refused() {
    let (dir, ws, outside) = workspace();
    let secret = outside.join("secret.txt");
    let abs = |p: &str| ws.join(p).to_str().unwrap().to_owned();
    std::os::unix::fs::symlink("../outside/secret.txt", ws.join("report.json")).unwrap();
    std::os::unix::fs::symlink(&outside, ws.join("linkdir")).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", ws.join("environ.json")).unwrap();
    std::fs::create_dir(ws.join("results")).unwrap();
    let fifo = Command::new("mkfifo")
        .arg(ws.join("fifo.json"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let cases: Vec<(String, &str)> = vec![
        (abs("report.json"), "symlink"),
        (abs("environ.json"), "symlink"),
        (abs("linkdir/secret.txt"), "symlink"),
        (secret.to_str().unwrap().to_owned(), "outside"),
        (abs("../outside/secret.txt"), "outside"),
        (abs("sub/../../outside/secret.txt"), "outside"),
        (abs("results"), "not a regular file (a directory)"),
        (abs("fifo.json"), "not a regular file (a FIFO)"),
    ];
    for (path, why) in &cases {
        let (url, fake) = start(|url| url.to_owned()).await;
        // A good file first: nothing at all is sent when any file is refused.
        let err = tokio::time::timeout(
            Duration::from_secs(20),
            upload_all(
                &options(&url, &ws, &[&abs("b.json"), path]),
                &Auth::Oidc(tokens(&url)),
            ),
        )
        .await
        .expect("a FIFO must not block the client")
        .unwrap_err();
        let ClientError::File(refused) = &err else {
            panic!("{path}: {err:#}");
        };
        let message = refused.to_string();
        assert!(
            message.starts_with(path.as_str()),
            "names the path: {message}"
        );
        assert!(message.contains(why), "{path}: {message}");
        assert!(fake.uploads().is_empty(), "{path}: nothing is uploaded");
        assert!(fake.tokens().is_empty(), "{path}: no token is requested");
        assert_eq!(*fake.well_known_hits.lock().unwrap(), 0);
    }

    // Files under the base are named by their path relative to it, `/`-separated.
    let (url, fake) = start(|url| url.to_owned()).await;
    let done = upload_all(
        &options(
            &url,
            &ws,
            &[&abs("sub/dir/a.json"), &abs("./sub/../b.json")],
        ),
        &Auth::Oidc(tokens(&url)),
    )
    .await
    .unwrap();
    let names: Vec<&str> = done.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["sub/dir/a.json", "b.json"]);
    let sent: Vec<String> = fake.uploads().into_iter().map(|u| u.0).collect();
    assert_eq!(sent, ["sub/dir/a.json", "b.json"]);
    drop(dir);
}

#[test]
fn rule_a_file_swapped_after_its_check_is_not_opened() {
    let (_dir, ws, outside) = workspace();
    // The last component becomes a symlink to a secret.
    let checked = LocalFile::check(&ws, &ws.join("b.json")).unwrap();
    assert_eq!(checked.name, "b.json");
    std::fs::remove_file(ws.join("b.json")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), ws.join("b.json")).unwrap();
    assert!(
        matches!(checked.open(), Err(FileRefused::Symlink { .. })),
        "{:?}",
        checked.open()
    );

    // A directory on the path becomes a symlink to a place holding a file of that name.
    let checked = LocalFile::check(&ws, &ws.join("sub/dir/a.json")).unwrap();
    std::fs::write(outside.join("a.json"), "SECRET").unwrap();
    std::fs::rename(ws.join("sub/dir"), ws.join("sub/old")).unwrap();
    std::os::unix::fs::symlink(&outside, ws.join("sub/dir")).unwrap();
    assert!(
        matches!(checked.open(), Err(FileRefused::Changed { .. })),
        "{:?}",
        checked.open()
    );

    // A FIFO put in its place is refused without blocking.
    std::fs::write(ws.join("c.json"), "c").unwrap();
    let checked = LocalFile::check(&ws, &ws.join("c.json")).unwrap();
    std::fs::remove_file(ws.join("c.json")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(ws.join("c.json"))
            .status()
            .unwrap()
            .success()
    );
    assert!(matches!(
        checked.open(),
        Err(FileRefused::NotRegular { kind: "FIFO", .. })
    ));
}

// --- through the binary, as an Actions job runs it --------------------------------------------

async fn run_binary(url: &str, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runproof"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("RUNPROOF_AUDIENCE")
        .env_remove("RUNPROOF_URL")
        .env_remove("RUNPROOF_MODE")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("{url}/token?api-version=2.0"),
        )
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-request-token")
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// No line printed can be read by the runner as a workflow command.
fn assert_no_command_line(out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        for line in text.split(['\n', '\r']) {
            assert!(
                !line.trim_start().starts_with("::"),
                "a workflow command was printed: {line:?} in\n{text}"
            );
        }
    }
}

/// `$GITHUB_OUTPUT` as the runner reads it: `name=value` lines and `name<<DELIMITER` blocks.
fn outputs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delimiter {
                    break;
                }
                value.push(l);
            }
            out.push((name.to_owned(), value.join("\n")));
        } else if let Some((name, value)) = line.split_once('=') {
            out.push((name.to_owned(), value.to_owned()));
        }
    }
    out
}

#[tokio::test]
async fn rule_server_strings_cannot_inject_outputs_commands_or_summary_rows() {
    let (dir, ws, _) = workspace();
    let output = dir.path().join("github_output");
    let summary = dir.path().join("step_summary");
    let files = [
        ("GITHUB_OUTPUT", output.to_str().unwrap()),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
    ];

    // An id that would add an output and print a workflow command.
    let (url, fake) = start(|url| url.to_owned()).await;
    *fake.answer.lock().unwrap() = Answer::Record {
        id: INJECTED_ID.into(),
        status: "verified".into(),
    };
    let out = run_binary(&url, &ws, &["upload", "--url", &url, "b.json"], &files).await;
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_no_command_line(&out);
    let written = std::fs::read_to_string(&output).unwrap_or_default();
    let parsed = outputs(&written);
    assert!(
        parsed
            .iter()
            .all(|(k, v)| k == "upload-ids" && v.is_empty()),
        "{written:?}"
    );
    assert!(!written.contains("pwned"), "{written:?}");

    // A refusal whose code and detail carry commands and line breaks.
    let (url, fake) = start(|url| url.to_owned()).await;
    *fake.answer.lock().unwrap() = Answer::Refuse {
        status: 403,
        code: "policy_denied\n::error::code-injected".into(),
        detail: "no\r\n::warning::detail-injected\n| a | b |\n\u{1b}[1A".into(),
    };
    let out = run_binary(&url, &ws, &["upload", "--url", &url, "b.json"], &files).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_no_command_line(&out);
    assert!(
        stderr(&out).contains("403 policy_denied"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains('\u{1b}'));

    // A status, and a rejection reason, that carry commands.
    let (url, fake) = start(|url| url.to_owned()).await;
    *fake.answer.lock().unwrap() = Answer::Record {
        id: ID.into(),
        status: "verified\n::warning::status-injected".into(),
    };
    let out = run_binary(&url, &ws, &["upload", "--url", &url, "b.json"], &files).await;
    assert_ne!(out.status.code(), Some(0));
    assert_no_command_line(&out);
    *fake.answer.lock().unwrap() = Answer::Record {
        id: ID.into(),
        status: "pending".into(),
    };
    *fake.status.lock().unwrap() = json!({
        "id": ID,
        "status": "rejected",
        "reason": "no run\n::warning::reason-injected",
    });
    let pending_env = [
        files[0],
        files[1],
        ("GITHUB_REPOSITORY_ID", "1296269"),
        ("GITHUB_RUN_ID", "4242"),
        ("GITHUB_RUN_ATTEMPT", "1"),
        ("GITHUB_SHA", "6dcb09b5b57875f334f61aebed695e2e4193db5e"),
    ];
    let out = run_binary(
        &url,
        &ws,
        &[
            "upload",
            "--mode",
            "pending",
            "--wait",
            "--wait-timeout",
            "10",
            "--url",
            &url,
            "b.json",
        ],
        &pending_env,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_no_command_line(&out);
    assert!(
        stderr(&out).contains("rejected (no run"),
        "{}",
        stderr(&out)
    );

    // A file whose name is Markdown: one row of five cells, nothing that renders.
    let name = "a|b <img src=x> `c` [l](https:evil).json";
    std::fs::write(ws.join(name), "x").unwrap();
    let _ = std::fs::remove_file(&summary);
    let (url, _fake) = start(|url| url.to_owned()).await;
    let out = run_binary(&url, &ws, &["upload", "--url", &url, name], &files).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = std::fs::read_to_string(&summary).unwrap();
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 3, "header, rule, one row: {table}");
    let row = rows[2];
    let unescaped_pipes = row
        .char_indices()
        .filter(|(i, c)| *c == '|' && !row[..*i].ends_with('\\'))
        .count();
    assert_eq!(unescaped_pipes, 6, "{row}");
    assert!(
        !row.contains(" <img") && !row.contains("](") && !row.contains(" `c"),
        "{row}"
    );
    let ids = outputs(&std::fs::read_to_string(&output).unwrap());
    assert_eq!(
        ids.last().unwrap(),
        &("upload-ids".to_owned(), ID.to_owned())
    );
}
