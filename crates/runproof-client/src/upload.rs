//! Uploads: every file checked and the audience settled before any token is requested, then
//! each file streamed with its `Content-Digest`, retried with a fresh token, a fresh stream
//! and the same idempotency key, and its record checked against what was sent.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt as _;
use runproof_core::digest::format_content_digest;
use serde::Deserialize;

use crate::auth::{Auth, open_session};
use crate::error::{ClientError, chain};
use crate::files::{LocalFile, check_files, hash_file};
use crate::http::{
    http_client, is_known_status, parse_json, read_bounded, refusal, retry_after, retry_delays,
    retryable,
};
use crate::server::{check_discovered_audience, check_server_url, discover_audience};
use crate::shown::log_safe;

/// Files larger than this open a session even alone, so retries outlive the OIDC token.
pub const SESSION_SIZE_THRESHOLD: u64 = 64 * 1024 * 1024;

/// What to upload and where.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// The runproof server's base URL.
    pub url: String,
    /// The audience to request; discovered from `/.well-known/runproof` when `None`, and then
    /// accepted only when its host is the server's.
    pub audience: Option<String>,
    /// The directory that files must be under, and that names are relative to; the working
    /// directory when `None`.
    pub base: Option<PathBuf>,
    /// Files to upload.
    pub files: Vec<PathBuf>,
    /// Attempts per request (discovery, each file), the first included.
    pub attempts: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Show a progress bar (only on a TTY).
    pub progress: bool,
}

/// The server's answer for one file.
#[derive(Debug, Clone, Deserialize)]
pub struct Uploaded {
    /// The upload's id: always a canonical UUID (lowercase, hyphenated), or the answer was
    /// refused.
    #[serde(deserialize_with = "crate::http::canonical_uuid")]
    pub id: String,
    /// `verified`, `pending`, `rejected` or `expired`: any other answer is refused.
    pub status: String,
    /// The size the server counted.
    pub size: u64,
    /// The SHA-256 the server computed.
    pub sha256: String,
    /// The file's name: the one sent, or the answer was refused.
    pub name: String,
    /// Why it was rejected, if it was.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What `upload_all_report` did: the files uploaded, and the error that stopped it.
#[derive(Debug)]
pub struct UploadReport {
    /// Files uploaded, in order.
    pub uploaded: Vec<Uploaded>,
    /// Why it stopped before the last file, if it did.
    pub error: Option<ClientError>,
}

enum Attempt {
    Done(Uploaded),
    Retry(ClientError, Option<Duration>),
    Fatal(ClientError),
}

/// Uploads every file, one after another.
///
/// # Errors
/// On the first file that cannot be uploaded after all attempts
/// ([`ClientError::GaveUp`]), or that the server refuses for good (a 4xx other than 429:
/// [`ClientError::Refused`]); before anything is sent, on a file that is refused
/// ([`ClientError::File`]) or an audience that is not the server's
/// ([`ClientError::ForeignAudience`]).
pub async fn upload_all(opts: &UploadOptions, auth: &Auth) -> Result<Vec<Uploaded>, ClientError> {
    let report = upload_all_report(opts, auth).await;
    match report.error {
        Some(e) => Err(e),
        None => Ok(report.uploaded),
    }
}

/// Uploads every file, one after another, and reports what was done even on failure.
///
/// Every file is checked first (see [`LocalFile::check`]) and the audience settled, before
/// any token is requested. With an OIDC token source and more than one file (or a file over
/// [`SESSION_SIZE_THRESHOLD`]), it opens an upload session and uses it for every file and
/// every retry; a session that expires midway is replaced once per file.
pub async fn upload_all_report(opts: &UploadOptions, auth: &Auth) -> UploadReport {
    let mut report = UploadReport {
        uploaded: Vec::new(),
        error: None,
    };
    if let Err(e) = upload_into(opts, auth, &mut report.uploaded).await {
        report.error = Some(e);
    }
    report
}

async fn upload_into(
    opts: &UploadOptions,
    auth: &Auth,
    done: &mut Vec<Uploaded>,
) -> Result<(), ClientError> {
    check_server_url(&opts.url)?;
    let files = check_files(opts.base.as_deref(), &opts.files)?;
    let http = http_client(opts.timeout)?;
    let base = opts.url.trim_end_matches('/').to_owned();
    let audience = match (&opts.audience, auth) {
        (Some(a), _) if a.trim().is_empty() => return Err(ClientError::EmptyAudience),
        (Some(a), _) => a.clone(),
        (None, Auth::Oidc(_)) => {
            let announced = discover_audience(&http, &base, opts.attempts).await?;
            check_discovered_audience(&opts.url, &announced)?;
            announced
        }
        (None, _) => String::new(),
    };
    let mut current = auth.clone();
    if let Auth::Oidc(tokens) = auth {
        let large = files.iter().any(|f| f.size > SESSION_SIZE_THRESHOLD);
        if (files.len() > 1 || large)
            && let Some(session) = open_session(&http, &base, &audience, tokens).await?
        {
            current = Auth::Session(session);
        }
    }
    for file in &files {
        let mut result = upload_one(&http, &base, &audience, &current, file, opts).await;
        if let (Err(e), Auth::Oidc(tokens), Auth::Session(_)) = (&result, auth, &current) {
            let expired = e
                .refused()
                .is_some_and(|r| r.code == "token_expired" || r.code == "invalid_session");
            if expired && let Some(session) = open_session(&http, &base, &audience, tokens).await? {
                current = Auth::Session(session);
                result = upload_one(&http, &base, &audience, &current, file, opts).await;
            }
        }
        let uploaded = result?;
        eprintln!(
            "uploaded {} ({} bytes) as {} [{}]",
            log_safe(&file.name),
            uploaded.size,
            uploaded.id,
            uploaded.status
        );
        done.push(uploaded);
    }
    Ok(())
}

async fn upload_one(
    http: &reqwest::Client,
    base: &str,
    audience: &str,
    auth: &Auth,
    file: &LocalFile,
    opts: &UploadOptions,
) -> Result<Uploaded, ClientError> {
    let (size, sha256) = hash_file(file).await?;
    let idempotency_key = uuid::Uuid::new_v4().to_string();
    let mut delays = retry_delays(opts.attempts);
    loop {
        let attempt = attempt_upload(
            http,
            base,
            audience,
            auth,
            file,
            size,
            &sha256,
            &idempotency_key,
            opts,
        )
        .await;
        match attempt {
            Attempt::Done(u) => {
                let name = || file.name.clone();
                if u.sha256 != hex::encode(sha256) || u.size != size {
                    return Err(ClientError::DifferentBytes { name: name() });
                }
                if u.name != file.name {
                    return Err(ClientError::OtherName { name: name() });
                }
                if !is_known_status(&u.status) {
                    return Err(ClientError::UnknownStatus { name: name() });
                }
                return Ok(u);
            }
            Attempt::Fatal(e) => return Err(e),
            Attempt::Retry(e, retry_after) => match delays.next() {
                Some(delay) => {
                    let delay = retry_after.map_or(delay, |r| r.max(delay));
                    eprintln!(
                        "upload of {} failed ({}); retrying in {delay:?}",
                        log_safe(&file.name),
                        chain(&e)
                    );
                    tokio::time::sleep(delay).await;
                }
                None => {
                    return Err(ClientError::GaveUp {
                        name: file.name.clone(),
                        source: Box::new(e),
                    });
                }
            },
        }
    }
}

/// The headers that prove the run, as `auth` sends them.
async fn credentials(
    http: &reqwest::Client,
    audience: &str,
    auth: &Auth,
) -> Result<Vec<(&'static str, String)>, ClientError> {
    Ok(match auth {
        Auth::Oidc(tokens) => {
            let token = tokens.token(http, audience).await?;
            vec![("authorization", format!("Bearer {token}"))]
        }
        Auth::Session(session) => vec![("authorization", format!("Bearer {}", session.0))],
        Auth::GithubToken(g) => vec![
            ("authorization", format!("token {}", g.token)),
            ("x-runproof-repository", g.repository.clone()),
            ("x-runproof-run", g.run.clone()),
            ("x-runproof-sha", g.sha.clone()),
        ],
        Auth::Pending(p) => vec![
            ("x-runproof-run", p.run.clone()),
            ("x-runproof-sha", p.sha.clone()),
        ],
    })
}

#[allow(clippy::too_many_arguments)]
async fn attempt_upload(
    http: &reqwest::Client,
    base: &str,
    audience: &str,
    auth: &Auth,
    file: &LocalFile,
    size: u64,
    sha256: &[u8; 32],
    idempotency_key: &str,
    opts: &UploadOptions,
) -> Attempt {
    let credentials = match credentials(http, audience, auth).await {
        Ok(headers) => headers,
        Err(e) => return Attempt::Retry(e, None),
    };
    let opened = match file.open() {
        Ok(f) => tokio::fs::File::from_std(f),
        Err(e) => return Attempt::Fatal(e.into()),
    };
    let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(log_safe(&file.name).into_owned());
        bar
    });
    let progress = bar.clone();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(opened, 256 * 1024).inspect(move |chunk| {
            if let (Some(bar), Ok(chunk)) = (&progress, chunk) {
                bar.inc(chunk.len() as u64);
            }
        });
    let encoded: String = url::form_urlencoded::byte_serialize(file.name.as_bytes()).collect();
    let mut request = http.post(format!("{base}/v1/uploads?name={encoded}"));
    for (name, value) in credentials {
        request = request.header(name, value);
    }
    let result = request
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .header("content-digest", format_content_digest(sha256))
        .header("idempotency-key", idempotency_key)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let resp = match result {
        Ok(r) => r,
        Err(e) => return Attempt::Retry(ClientError::Send(e.without_url()), None),
    };
    let status = resp.status();
    if status.is_success() {
        // A cut answer is retried (the idempotency key makes it the same upload); an answer
        // that arrived whole but cannot be trusted is not.
        return match read_bounded(resp).await {
            Ok(body) => match parse_json::<Uploaded>(&body) {
                Ok(u) => Attempt::Done(u),
                Err(e) => Attempt::Fatal(ClientError::UploadAnswer(e)),
            },
            Err(e) => Attempt::Retry(ClientError::UnreadableAnswer(e), None),
        };
    }
    let wait = retry_after(&resp);
    let refused = refusal(status.as_u16(), resp).await;
    if retryable(status) {
        Attempt::Retry(refused.into(), wait)
    } else {
        Attempt::Fatal(refused.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::is_canonical_uuid;

    #[test]
    fn rule_ids_are_canonical_uuids_only() {
        assert!(is_canonical_uuid("01900000-0000-7000-8000-000000000001"));
        for bad in [
            "01900000-0000-7000-8000-000000000001\n::warning::injected\nupload-ids=pwned",
            "01900000-0000-7000-8000-00000000000A",
            "{01900000-0000-7000-8000-000000000001}",
            "urn:uuid:01900000-0000-7000-8000-000000000001",
            "01900000000070008000000000000001",
            " 01900000-0000-7000-8000-000000000001",
            "",
        ] {
            assert!(!is_canonical_uuid(bad), "{bad:?}");
        }
        let answer = r#"{"id": "01900000-0000-7000-8000-000000000001\n::warning::x", "status": "verified", "size": 1, "sha256": "00", "name": "a"}"#;
        assert!(serde_json::from_str::<Uploaded>(answer).is_err());
    }
}
