//! The client that the runproof GitHub Action runs (`runproof upload`): it gets an OIDC token
//! the way the Actions toolkit does (or uses the run's `GITHUB_TOKEN`, or claims the run
//! without credentials), then streams each file with its `Content-Digest`, retrying with a
//! fresh token and a fresh stream, and writes the step's outputs.
//!
//! What it does not do: it verifies no token and decides nothing about a run; that is the
//! server's. It parses no flags and exits no process: the `runproof` binary does both and
//! prints a [`ClientError`] as it is. What it prints itself goes to stderr: a note per retry
//! and per file uploaded, and a progress bar on a terminal.
//!
//! Its place: it depends on `runproof-core` (digests and upload names) and on `reqwest`,
//! `tokio` and friends, and never on the server, the store or the testkit, so the Action's
//! side shares no code with the side it must not trust. Only the `runproof` binary uses it.
//!
//! Threat model in brief: it runs inside other people's workflows, next to their tokens, so it
//! trusts neither the server nor the workspace:
//! - the server URL must be `https` (or loopback), without a user or password;
//! - an audience the server announces is requested only when its host is the server's;
//! - a file is uploaded only when it is a regular file under the base directory, reached
//!   without a symlink, and the file opened is the file checked;
//! - what the server answers is bounded in size, ids must be canonical UUIDs, and every
//!   string it sends is escaped for where it is printed (logs, `$GITHUB_OUTPUT`, the step
//!   summary).
//!
//! Modules, each depending only on those listed before it: `shown` (escaping), `error`,
//! `http` (bounded answers, retry policy), `auth` (tokens, sessions), `server` (URL and
//! audience checks), `files` (local files), `upload`, `pending` (waiting for an outcome),
//! `outputs` (`$GITHUB_OUTPUT`, the step summary).
#![forbid(unsafe_code)]

mod auth;
mod error;
mod files;
mod http;
mod outputs;
mod pending;
mod server;
mod shown;
mod upload;

pub use auth::{Auth, GithubTokenAuth, PendingClaim, SessionToken, TokenSource, open_session};
pub use error::{AnswerError, ClientError, FileRefused, ForeignAudience, Refused, ServerUrlError};
pub use files::{LocalFile, check_files};
pub use http::{MAX_ANSWER_BYTES, http_client, is_canonical_uuid, is_known_status};
pub use outputs::{output_entry, write_github_files};
pub use pending::{UploadStatus, wait_for_outcome};
pub use server::{check_discovered_audience, check_server_url, discover_audience};
pub use shown::{log_lines_safe, log_safe, markdown_cell};
pub use upload::{
    SESSION_SIZE_THRESHOLD, UploadOptions, UploadReport, Uploaded, upload_all, upload_all_report,
};
