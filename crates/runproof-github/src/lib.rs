//! GitHub adapters for runproof: everything runproof asks of GitHub, and the shapes of
//! what GitHub sends.
//!
//! - Keys: it finds and fetches the signing keys of each configured OIDC issuer and keeps
//!   them fresh ([`KeyCache`], with [`HttpFetcher`] and the URL rules [`check_issuer_url`]
//!   and [`same_origin`]).
//! - The App: App JWTs, installation tokens, and the REST calls runproof makes with them
//!   (installations, repositories, workflow runs) with rate-limit handling ([`GithubApp`],
//!   [`RestClient`]); a run's `GITHUB_TOKEN` checked against the repositories it sees
//!   ([`installation_repositories`]).
//! - Payloads: the REST answers and webhook payloads runproof reads ([`types`]).
//! - Workflow files: bounded reading of a workflow's YAML and the check that it uses an
//!   Action, directly or through a local reusable workflow ([`workflow`]).
//! - The repository file: a repository's trust rules read from a file on its default
//!   branch, bounded parsing of it, and whether a `push` may have changed it
//!   ([`repository_file`]).
//!
//! What it does not do: decide anything. The keys it returns are handed to
//! [`runproof_core::Verifier`]; whether a repository is installed, a run vouched for, or
//! an upload accepted is decided in `runproof-service`.
//!
//! Dependency direction: it depends on `runproof-core` only; `runproof-service` depends on
//! it.
//!
//! Threat model in brief: an issuer is only ever one the configuration names, never one a
//! token names. Its `jwks_uri` must be on the issuer's host; redirects to another host are
//! refused; responses are size-capped and time-limited; an empty, oversized or garbled
//! key set never replaces good cached keys, and cached keys keep working while the issuer
//! is down. Plain `http://` is accepted only for loopback hosts (tests and `--dev`).
#![forbid(unsafe_code)]

mod app;
mod fetch;
mod jwks;
pub mod repository_file;
pub mod types;
mod url_rules;
pub mod workflow;

pub use app::{Credential, GithubApp, GithubError, RestClient, installation_repositories};
pub use fetch::{FetchError, HttpFetcher};
pub use jwks::{IssuerConfig, KeyCache, KeyCacheConfig, KeyError, parse_discovery};
pub use url_rules::{UrlError, check_issuer_url, same_origin};
