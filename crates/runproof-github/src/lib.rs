//! GitHub adapters for runproof.
//!
//! This crate does the I/O that the pure core leaves out: it finds and fetches the
//! signing keys of each configured OIDC issuer and keeps them fresh ([`KeyCache`]).
//!
//! What it does not do: decide anything. The keys it returns are handed to
//! [`runproof_core::Verifier`], which makes every decision.
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
pub mod types;
mod url_rules;
pub mod workflow;

pub use app::{Credential, GithubApp, GithubError, RestClient, installation_repositories};
pub use fetch::{FetchError, HttpFetcher};
pub use jwks::{IssuerConfig, KeyCache, KeyCacheConfig, KeyError, parse_discovery};
pub use url_rules::{UrlError, check_issuer_url, same_origin};
