//! Every error the client returns. [`ClientError`] is the one a caller sees; the narrower
//! types ([`FileRefused`], [`ForeignAudience`], [`Refused`], [`ServerUrlError`],
//! [`AnswerError`]) are what the functions that can only fail one way return, and each turns
//! into a [`ClientError`] with `From`.
//!
//! Every message escapes what the server or the workspace wrote (see [`log_safe`]), so an
//! error can be printed as it is.

use std::path::{Path, PathBuf};

use crate::shown::log_safe;

/// Why an upload, a token request or an output failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The runner's token-request variables are absent: the job lacks
    /// `permissions: id-token: write`, or runs for a fork's pull request.
    #[error(
        "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set, so no OIDC token can be requested.\n\
         Give the job `permissions: id-token: write` (and `contents: read`) in the workflow.\n\
         Pull requests from forks never get these variables; use another mode there."
    )]
    NoOidcVariables,
    /// `GITHUB_TOKEN` is not in the step's environment.
    #[error(
        "GITHUB_TOKEN is not set: pass it to the step with `env: GITHUB_TOKEN: ${{{{ github.token }}}}`"
    )]
    NoGithubToken,
    /// A variable that every runner sets is absent.
    #[error("{name} is not set (it is set on every GitHub Actions runner)")]
    MissingVariable {
        /// The variable.
        name: &'static str,
    },
    /// The runner's token endpoint cannot be reached.
    #[error("token request failed: {0}")]
    TokenRequest(reqwest::Error),
    /// The runner's token endpoint refused.
    #[error("the runner refused the token request with status {0}")]
    TokenRefused(reqwest::StatusCode),
    /// The runner's token endpoint answered without a token.
    #[error("the token response has no `value`")]
    TokenAnswer(#[source] AnswerError),
    /// The server URL is not acceptable.
    #[error(transparent)]
    ServerUrl(#[from] ServerUrlError),
    /// `--audience` was given empty.
    #[error("the audience given is empty")]
    EmptyAudience,
    /// The server announced an audience that is not its own.
    #[error(transparent)]
    ForeignAudience(#[from] ForeignAudience),
    /// The server's `/.well-known/runproof` answer cannot be read.
    #[error("unexpected answer from {}", log_safe(.url))]
    AudienceAnswer {
        /// The URL asked.
        url: String,
        /// Why the answer was refused.
        #[source]
        source: AnswerError,
    },
    /// The server answered a status that is neither a success nor a refusal with a problem.
    #[error("{} answered {status}", log_safe(.url))]
    Answered {
        /// The URL asked.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
    },
    /// The server cannot be reached.
    #[error("cannot reach {}: {error}", log_safe(.url))]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What the HTTP client said, without the URL.
        error: reqwest::Error,
    },
    /// The audience was still unknown after the last attempt.
    #[error("giving up on the server's audience")]
    GaveUpOnAudience(#[source] Box<ClientError>),
    /// A session cannot be opened: the server cannot be reached.
    #[error("cannot open a session: {0}")]
    SessionUnreachable(reqwest::Error),
    /// The server's answer to a session request cannot be read.
    #[error("unexpected session answer")]
    SessionAnswer(#[source] AnswerError),
    /// A local file is not uploaded.
    #[error(transparent)]
    File(#[from] FileRefused),
    /// A file checked for upload cannot be read, or an output file cannot be written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server refused, with a problem's status and code.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// An upload could not be sent, or its answer not received.
    #[error("{0}")]
    Send(reqwest::Error),
    /// An upload's answer was cut short.
    #[error("unreadable answer")]
    UnreadableAnswer(#[source] AnswerError),
    /// An upload's answer arrived whole but cannot be read as a record.
    #[error("the server's answer to the upload is refused")]
    UploadAnswer(#[source] AnswerError),
    /// The server recorded another size or digest than the file's.
    #[error("the server recorded different bytes for {}", log_safe(.name))]
    DifferentBytes {
        /// The upload name.
        name: String,
    },
    /// The server recorded another name than the one sent.
    #[error("the server recorded another name for {}", log_safe(.name))]
    OtherName {
        /// The upload name sent.
        name: String,
    },
    /// The server answered a status that uploads do not have.
    #[error("the server answered an unknown status for {}", log_safe(.name))]
    UnknownStatus {
        /// The upload name.
        name: String,
    },
    /// An upload still failed after the last attempt.
    #[error("giving up on {}", log_safe(.name))]
    GaveUp {
        /// The upload name.
        name: String,
        /// The last attempt's error.
        #[source]
        source: Box<ClientError>,
    },
    /// The HTTP client cannot be built (the TLS backend).
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// An upload id is not a canonical UUID.
    #[error("an upload id is not a canonical UUID")]
    NotCanonicalId,
    /// A pending upload's status answer cannot be read, or is about another upload.
    #[error("unexpected status answer")]
    StatusAnswer(#[source] Option<AnswerError>),
    /// An output name other than letters, digits, `-` and `_`.
    #[error("`{}` is not an output name", log_safe(.0))]
    OutputName(String),
    /// Every delimiter tried was in the value.
    #[error("no delimiter found for the output `{0}`")]
    NoDelimiter(String),
    /// `$GITHUB_OUTPUT` or `$GITHUB_STEP_SUMMARY` cannot be opened.
    #[error("cannot open ${var}")]
    OutputFile {
        /// The variable naming the file.
        var: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The server's refusal behind this error, also when it came on the last attempt.
    #[must_use]
    pub fn refused(&self) -> Option<&Refused> {
        match self {
            Self::Refused(refused) => Some(refused),
            Self::GaveUp { source, .. } | Self::GaveUpOnAudience(source) => source.refused(),
            _ => None,
        }
    }
}

/// A server's answer that is not read: too large, cut, or not the JSON expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The body could not be received.
    #[error("{0}")]
    Read(reqwest::Error),
    /// The body is larger than the client reads.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge {
        /// The most bytes read.
        limit: usize,
    },
    /// The body is not the JSON expected. Only the position is kept: serde's message can
    /// quote the input.
    #[error("unexpected answer (line {line}, column {column})")]
    Malformed {
        /// The line of the first error.
        line: usize,
        /// Its column.
        column: usize,
    },
}

/// A server URL the client does not send credentials to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerUrlError {
    /// Not a URL.
    #[error("`{}` is not a URL", log_safe(.url))]
    NotAUrl {
        /// The URL given.
        url: String,
        /// Why it does not parse.
        #[source]
        source: url::ParseError,
    },
    /// A user or password in the URL.
    #[error("`{}`: a URL with a user or password is not accepted", log_safe(.url))]
    UserInfo {
        /// The URL given.
        url: String,
    },
    /// Plain `http://` to another host than loopback.
    #[error("`{}`: use https; tokens must not travel in the clear", log_safe(.url))]
    Cleartext {
        /// The URL given.
        url: String,
    },
    /// Neither `https` nor `http`.
    #[error("`{}`: unsupported scheme `{}`", log_safe(.url), log_safe(.scheme))]
    Scheme {
        /// The URL given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
}

/// A refusal by the server: its status and stable code. Its `Display` escapes what the
/// server wrote.
#[derive(Debug, thiserror::Error)]
#[error("{status} {}: {}", log_safe(.code), log_safe(.detail))]
pub struct Refused {
    /// The HTTP status.
    pub status: u16,
    /// The stable `code`, as the server wrote it.
    pub code: String,
    /// The server's explanation, as it wrote it.
    pub detail: String,
}

/// An audience that the server announced but that is not the server's own.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server at {} announces the audience `{}`, whose host is not the server's ({}): no token is requested for it. \
     A server may only announce an audience of its own host; if this one is right, pass it explicitly with --audience \
     (the Action's `audience` input)",
    log_safe(.server_url),
    log_safe(.audience),
    log_safe(.server_host)
)]
pub struct ForeignAudience {
    /// The server's URL.
    pub server_url: String,
    /// The server URL's host.
    pub server_host: String,
    /// What the server announced.
    pub audience: String,
}

/// Why a local file is not uploaded. Each names the path (escaped for a log).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileRefused {
    /// A symlink is on the path: symlinks are never followed.
    #[error(
        "{}: {} is a symlink; symlinks are never followed, so nothing outside the base directory can be uploaded through one",
        shown(.path),
        shown(.link)
    )]
    Symlink {
        /// The path as given.
        path: PathBuf,
        /// The symlink.
        link: PathBuf,
    },
    /// The path leads outside the base directory.
    #[error(
        "{}: outside {} (files must be under the base directory: --base, or the working directory)",
        shown(.path),
        shown(.base)
    )]
    Outside {
        /// The path as given.
        path: PathBuf,
        /// The base directory.
        base: PathBuf,
    },
    /// Not a regular file (a directory, a FIFO, a socket, a device).
    #[error("{}: not a regular file (a {kind})", shown(.path))]
    NotRegular {
        /// The path as given.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Its name relative to the base cannot be an upload name.
    #[error("{}: cannot be named for the server: {reason}", shown(.path))]
    BadName {
        /// The path as given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// What was opened is not what was checked: it was replaced, or a directory on its path
    /// was.
    #[error("{}: changed since it was checked (replaced, or a directory on its path was); not uploaded", shown(.path))]
    Changed {
        /// The path as given.
        path: PathBuf,
    },
    /// It cannot be read.
    #[error("{}: {source}", shown(.path))]
    Io {
        /// The path as given.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn shown(path: &Path) -> String {
    log_safe(&path.to_string_lossy()).into_owned()
}

/// `error` and its sources, `: `-separated, as `anyhow` prints an error with `{:#}`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_fix() {
        assert_eq!(
            ClientError::NoGithubToken.to_string(),
            "GITHUB_TOKEN is not set: pass it to the step with `env: GITHUB_TOKEN: ${{ github.token }}`"
        );
        assert_eq!(
            ClientError::MissingVariable { name: "GITHUB_SHA" }.to_string(),
            "GITHUB_SHA is not set (it is set on every GitHub Actions runner)"
        );
        assert_eq!(
            ClientError::NoOidcVariables.to_string().lines().nth(1),
            Some(
                "Give the job `permissions: id-token: write` (and `contents: read`) in the workflow."
            )
        );
        assert_eq!(
            ClientError::OutputFile {
                var: "GITHUB_OUTPUT",
                source: std::io::Error::other("x"),
            }
            .to_string(),
            "cannot open $GITHUB_OUTPUT"
        );
    }

    #[test]
    fn a_chain_reads_like_anyhow() {
        let error = ClientError::GaveUp {
            name: "a\n::b".into(),
            source: Box::new(ClientError::UnreadableAnswer(AnswerError::TooLarge {
                limit: 10,
            })),
        };
        assert_eq!(
            chain(&error),
            "giving up on a\\u{a}::b: unreadable answer: the answer is larger than 10 bytes"
        );
        let refused = ClientError::GaveUp {
            name: "a".into(),
            source: Box::new(
                Refused {
                    status: 503,
                    code: "storage_unavailable".into(),
                    detail: String::new(),
                }
                .into(),
            ),
        };
        assert_eq!(refused.refused().map(|r| r.status), Some(503));
    }
}
