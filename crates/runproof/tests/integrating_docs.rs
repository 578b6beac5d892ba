//! `docs/integrating.md` tells Apps how to receive pushes: verify the signature, check the
//! signed timestamp, and deduplicate on the signed body's `delivery_id`, never on the unsigned
//! `X-Runproof-*` headers. Every snippet does all three, and each (Node, Python, Go) is taken
//! from the page's fenced block and run as printed: first on a real push from a runproof
//! server, then on replayed, stale, future, forged and tampered bodies. A snippet whose tool
//! is missing says it was not run; with `CI=true` that fails instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runproof::demo::{DEMO_AUDIENCE, start_dev};

fn doc() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/integrating.md"),
    )
    .unwrap()
}

/// The fenced code blocks of the section that starts with `heading`, with their language.
fn snippets(doc: &str, heading: &str) -> Vec<(String, String)> {
    let section = doc
        .split_once(heading)
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .unwrap_or_else(|| panic!("no `{heading}` in docs/integrating.md"));
    let mut out = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```")
            && !lang.is_empty()
        {
            let code: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            out.push((lang.to_owned(), code.join("\n")));
        }
    }
    out
}

#[test]
fn rule_integrating_docs_deduplicate_on_the_signed_delivery_id_and_check_the_timestamp() {
    let doc = doc();
    assert!(
        !doc.contains("deduplicate on `X-Runproof-Delivery`"),
        "the unsigned header is never what Apps deduplicate on"
    );
    let snippets = snippets(&doc, "### Verifying a delivery");
    let languages: Vec<&str> = snippets.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        languages,
        ["js", "python", "go"],
        "one snippet per language"
    );
    for (lang, code) in &snippets {
        assert!(
            code.contains("timestamp") || code.contains("Timestamp"),
            "{lang}: the timestamp check"
        );
        assert!(
            code.contains("delivery_id") || code.contains("DeliveryID"),
            "{lang}: deduplicates on the signed delivery_id"
        );
        assert!(
            !code.to_ascii_lowercase().contains("x-runproof-delivery\"]")
                && !code
                    .to_ascii_lowercase()
                    .contains("headers[\"x-runproof-event"),
            "{lang}: reads no unsigned header but the signature"
        );
    }
}

/// The secret the server signs its pushes with, and the drivers verify with.
const DELIVERY_SECRET: &str = "integrating-docs-secret";

/// One push as the App's endpoint received it.
struct Push {
    body: Vec<u8>,
    signature: String,
    delivery_id: String,
}

/// The snippet of `lang`, as printed on the page.
fn snippet(lang: &str) -> String {
    snippets(&doc(), "### Verifying a delivery")
        .into_iter()
        .find(|(l, _)| l == lang)
        .unwrap_or_else(|| panic!("no {lang} snippet"))
        .1
}

/// Whether the tool is there; without it, a failure with `CI=true`, else a note.
fn available(tool: &str, program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required (CI=true: not skipped)"
        );
        eprintln!("SKIPPED: {tool} is missing; its snippet of docs/integrating.md was not run");
    }
    ok
}

/// Starts the dev server with `[delivery]` pointing at a receiver of ours, uploads one file
/// with an OIDC token, and returns the push the receiver got.
async fn real_push(dir: &Path) -> Push {
    type Got = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;
    let got: Got = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(got): axum::extract::State<Got>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    got.lock().unwrap().push((headers, body.to_vec()));
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await });

    let config = dir.join("runproof.toml");
    std::fs::write(
        &config,
        format!("[delivery]\nurl = {hook:?}\nsecrets = [{DELIVERY_SECRET:?}]\n"),
    )
    .unwrap();
    let cfg = runproof::config::load(Some(&config)).unwrap();
    let env = start_dev(dir.join("data"), "127.0.0.1:0".parse().unwrap(), Some(cfg))
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let resp = http
        .post(format!("{}/v1/uploads?name=results.json", env.server.url()))
        .bearer_auth(env.github.token(DEMO_AUDIENCE).unwrap())
        .body("{\"tests\": 42, \"failed\": 0}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let mut push = None;
    for _ in 0..300 {
        if let Some((headers, body)) = got.lock().unwrap().first().cloned() {
            push = Some((headers, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (headers, body) = push.expect("a push within 15 s");
    env.server.stop().await.unwrap();
    env.github.shutdown();
    receiver.abort();
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed["event"], "upload.verified");
    Push {
        signature: headers["x-runproof-signature-256"]
            .to_str()
            .unwrap()
            .to_owned(),
        delivery_id: parsed["delivery_id"].as_str().unwrap().to_owned(),
        body,
    }
}

/// Runs `program` in `dir` with the push in its environment (bounded by `timeout`), and
/// checks that it printed `ok`.
async fn run_driver(
    lang: &str,
    dir: &Path,
    push: &Push,
    program: &str,
    args: &[&str],
    env: &[(&str, &OsStr)],
) {
    let body_file = dir.join("push.json");
    std::fs::write(&body_file, &push.body).unwrap();
    let mut cmd = Command::new("timeout");
    cmd.arg("300")
        .arg(program)
        .args(args)
        .current_dir(dir)
        .env("RP_SECRET", DELIVERY_SECRET)
        .env("RP_BODY_FILE", &body_file)
        .env("RP_SIGNATURE", &push.signature)
        .env("RP_DELIVERY_ID", &push.delivery_id)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().any(|l| l.trim() == "ok"),
        "the {lang} snippet of docs/integrating.md, as printed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const PYTHON_DRIVER: &str = r#"import hashlib, hmac, json, os, time
from receiver import accept

secret = os.environ["RP_SECRET"].encode()
genuine = open(os.environ["RP_BODY_FILE"], "rb").read()
signature = os.environ["RP_SIGNATURE"]

def sign(body, key=secret):
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
def variant(**fields):
    d = json.loads(genuine)
    d.update(fields)
    return json.dumps(d).encode()

seen = set()
got = accept(secret, genuine, signature, seen)
assert got is not None and got["event"] == "upload.verified", "the real push is accepted"
assert got["delivery_id"] == os.environ["RP_DELIVERY_ID"], "its signed delivery_id"
assert accept(secret, genuine, signature, seen) is None, "a replayed body, whatever its headers"
now = int(time.time())
retry = variant(timestamp=now + 5)
assert accept(secret, retry, sign(retry), seen) is None, "a retry of a delivery already handled"
assert accept(b"another secret", genuine, signature, set()) is None, "another secret"
tampered = genuine.replace(b"upload.verified", b"upload.rejected")
assert tampered != genuine
assert accept(secret, tampered, signature, set()) is None, "a body changed after signing"
assert accept(secret, genuine, "", set()) is None, "no signature"
stale = variant(delivery_id="d-stale", timestamp=now - 3600)
assert accept(secret, stale, sign(stale), set()) is None, "a captured body an hour later"
future = variant(delivery_id="d-future", timestamp=now + 3600)
assert accept(secret, future, sign(future), set()) is None, "a timestamp from the future"
fresh = variant(delivery_id="d-fresh", timestamp=now)
assert accept(secret, fresh, sign(fresh), seen) is not None, "refusals recorded nothing"
print("ok")
"#;

const NODE_DRIVER: &str = r#"import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { accept, readBody } from "./receiver.mjs";

const check = (ok, what) => {
  if (!ok) {
    console.error("FAILED: " + what);
    process.exit(1);
  }
};
const secret = process.env.RP_SECRET;
const signature = process.env.RP_SIGNATURE;
const bytes = readFileSync(process.env.RP_BODY_FILE);
const sign = (body, key = secret) =>
  "sha256=" + createHmac("sha256", key).update(body).digest("hex");

// The raw bytes as a request streams them, in two chunks.
const genuine = await readBody(Readable.from([bytes.subarray(0, 7), bytes.subarray(7)]));
check(typeof genuine === "string" && Buffer.from(genuine, "utf8").equals(bytes), "readBody");
const variant = (fields) => JSON.stringify({ ...JSON.parse(genuine), ...fields });

const seen = new Set();
const got = await accept(secret, genuine, signature, seen);
check(got && got.event === "upload.verified", "the real push is accepted");
check(got.delivery_id === process.env.RP_DELIVERY_ID, "its signed delivery_id");
check((await accept(secret, genuine, signature, seen)) === null, "a replayed body");
const now = Math.floor(Date.now() / 1000);
const retry = variant({ timestamp: now + 5 });
check((await accept(secret, retry, sign(retry), seen)) === null, "a retry already handled");
check((await accept("another secret", genuine, signature, new Set())) === null, "another secret");
const tampered = genuine.replaceAll("upload.verified", "upload.rejected");
check(tampered !== genuine, "tampered differs");
check((await accept(secret, tampered, signature, new Set())) === null, "a body changed after signing");
check((await accept(secret, genuine, "", new Set())) === null, "no signature");
check((await accept(secret, genuine, undefined, new Set())) === null, "no signature header");
const stale = variant({ delivery_id: "d-stale", timestamp: now - 3600 });
check((await accept(secret, stale, sign(stale), new Set())) === null, "an hour later");
const future = variant({ delivery_id: "d-future", timestamp: now + 3600 });
check((await accept(secret, future, sign(future), new Set())) === null, "from the future");
const fresh = variant({ delivery_id: "d-fresh", timestamp: now });
check((await accept(secret, fresh, sign(fresh), seen)) !== null, "refusals recorded nothing");
let refused = false;
try {
  await readBody(Readable.from([Buffer.alloc(600 << 10), Buffer.alloc(600 << 10)]));
} catch {
  refused = true;
}
check(refused, "readBody refuses a body over its bound");
console.log("ok");
"#;

const GO_DRIVER: &str = r#"package receiver

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"
)

func sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func TestSnippet(t *testing.T) {
	secret := []byte(os.Getenv("RP_SECRET"))
	signature := os.Getenv("RP_SIGNATURE")
	genuine, err := os.ReadFile(os.Getenv("RP_BODY_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	variant := func(fields map[string]any) []byte {
		var m map[string]any
		if err := json.Unmarshal(genuine, &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range fields {
			m[k] = v
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	check := func(ok bool, what string) {
		if !ok {
			t.Fatal(what)
		}
	}
	seen := map[string]bool{}
	d, ok := accept(secret, genuine, signature, seen)
	check(ok && d.Event == "upload.verified", "the real push is accepted")
	check(d.DeliveryID == os.Getenv("RP_DELIVERY_ID"), "its signed delivery_id")
	_, ok = accept(secret, genuine, signature, seen)
	check(!ok, "a replayed body")
	now := time.Now().Unix()
	retry := variant(map[string]any{"timestamp": now + 5})
	_, ok = accept(secret, retry, sign(secret, retry), seen)
	check(!ok, "a retry of a delivery already handled")
	_, ok = accept([]byte("another secret"), genuine, signature, map[string]bool{})
	check(!ok, "another secret")
	tampered := bytes.ReplaceAll(genuine, []byte("upload.verified"), []byte("upload.rejected"))
	check(!bytes.Equal(tampered, genuine), "tampered differs")
	_, ok = accept(secret, tampered, signature, map[string]bool{})
	check(!ok, "a body changed after signing")
	_, ok = accept(secret, genuine, "", map[string]bool{})
	check(!ok, "no signature")
	stale := variant(map[string]any{"delivery_id": "d-stale", "timestamp": now - 3600})
	_, ok = accept(secret, stale, sign(secret, stale), map[string]bool{})
	check(!ok, "a captured body an hour later")
	future := variant(map[string]any{"delivery_id": "d-future", "timestamp": now + 3600})
	_, ok = accept(secret, future, sign(secret, future), map[string]bool{})
	check(!ok, "a timestamp from the future")
	fresh := variant(map[string]any{"delivery_id": "d-fresh", "timestamp": now})
	_, ok = accept(secret, fresh, sign(secret, fresh), seen)
	check(ok, "refusals recorded nothing")
	os.Stdout.WriteString("ok\n")
}
"#;

#[tokio::test]
async fn rule_integrating_docs_python_snippet_as_printed_accepts_a_real_push_and_refuses_the_rest()
{
    if !available("python3", "python3", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let push = real_push(dir.path()).await;
    std::fs::write(dir.path().join("receiver.py"), snippet("python")).unwrap();
    std::fs::write(dir.path().join("driver.py"), PYTHON_DRIVER).unwrap();
    run_driver("Python", dir.path(), &push, "python3", &["driver.py"], &[]).await;
}

#[tokio::test]
async fn rule_integrating_docs_node_snippet_as_printed_accepts_a_real_push_and_refuses_the_rest() {
    if !available("node", "node", &["--version"]) {
        return;
    }
    // .ci/run installs @octokit/webhooks-methods there.
    let Some(modules) = std::env::var_os("RUNPROOF_TEST_OCTOKIT")
        .map(|d| PathBuf::from(d).join("node_modules"))
        .filter(|d| d.join("@octokit/webhooks-methods").is_dir())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "RUNPROOF_TEST_OCTOKIT is not set, and with CI=true this check must run"
        );
        eprintln!(
            "SKIPPED: RUNPROOF_TEST_OCTOKIT names no @octokit/webhooks-methods; the Node snippet was not run"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let push = real_push(dir.path()).await;
    std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).unwrap();
    std::fs::write(dir.path().join("receiver.mjs"), snippet("js")).unwrap();
    std::fs::write(dir.path().join("driver.mjs"), NODE_DRIVER).unwrap();
    run_driver("Node", dir.path(), &push, "node", &["driver.mjs"], &[]).await;
}

#[tokio::test]
async fn rule_integrating_docs_go_snippet_as_printed_accepts_a_real_push_and_refuses_the_rest() {
    if !available("go", "go", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let push = real_push(dir.path()).await;
    let module = dir.path().join("receiver");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(module.join("go.mod"), "module receiver\n\ngo 1.19\n").unwrap();
    std::fs::write(module.join("receiver.go"), snippet("go")).unwrap();
    std::fs::write(module.join("receiver_test.go"), GO_DRIVER).unwrap();
    // Offline, with this Go only, and a build cache kept between runs.
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache");
    let gopath = dir.path().join("gopath");
    let env = [
        ("GOCACHE", cache.as_os_str()),
        ("GOPATH", gopath.as_os_str()),
        ("GOPROXY", "off".as_ref()),
        ("GOFLAGS", "-mod=mod".as_ref()),
        ("GOTOOLCHAIN", "local".as_ref()),
        ("GO111MODULE", "on".as_ref()),
        ("GOTELEMETRY", "off".as_ref()),
        ("CGO_ENABLED", "0".as_ref()),
    ];
    let args = ["test", "-count=1", "-v", "."];
    run_driver("Go", &module, &push, "go", &args, &env).await;
}
