//! A fake GitHub for runproof's tests, `runproof serve --dev` and `runproof demo`.
//!
//! [`FakeGithub`] serves, on `127.0.0.1` only, what runproof needs from GitHub:
//!
//! - GitHub Actions OIDC: the discovery document, a JWKS with key rotation and an outage
//!   switch, and the Actions token-request endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL` /
//!   `ACTIONS_ID_TOKEN_REQUEST_TOKEN`). Tokens are RS256 JWTs shaped like GitHub's
//!   (string ids, `typ`/`alg`/`kid`/`x5t` header) describing a configurable [`RunSpec`].
//!   [`TestKey`] signs arbitrary headers and claims, so tests can also forge bad tokens.
//! - The REST API of a GitHub App: App registration ([`FakeGithub::register_app`],
//!   returning [`AppCredentials`]) with real App JWT checks, installations and their
//!   repository lookup, installation access tokens, `GET /installation/repositories`,
//!   `GET /repos/{owner}/{repo}`, run `GITHUB_TOKEN`s, counters, outage and rate-limit
//!   switches.
//!
//! The [`webhook`] module signs and delivers webhooks the way GitHub does and builds
//! `installation`, `installation_repositories` and `workflow_run` payloads.
//!
//! What it does not do: it never opens a connection beyond loopback (except where a
//! test points a [`WebhookSender`] elsewhere), serves no TLS and publishes no
//! certificates (`x5c`). Its keys and tokens are throwaway test material: it is not a
//! security boundary.
//!
//! Its modules, each depending only on those listed before it: `error`, `app`, `key`,
//! `run` and `shapes` (keys, runs and GitHub's JSON shapes), `state` (what the routes
//! share), `http` (error bodies, credentials, rate-limit switches), `auth` (App JWT and
//! token checks), the routes (`oidc`, `api`, `actions_api`), [`webhook`], and `fake`
//! ([`FakeGithub`], which starts the server and drives the state).
//!
//! Apart from the fake, [`process`] starts a real server process (its binary given by the
//! caller), waits for it and stops it: the integration tests and the load tool share it.
//! It uses none of the modules above.
//!
//! Where it sits: beside the production crates, never under them. It depends on no other
//! runproof crate; the tests, the load tool and the binary's `dev` feature (`demo`,
//! `serve --dev`) use it, and `cargo build -p runproof --no-default-features` leaves it out.
#![forbid(unsafe_code)]

mod actions_api;
mod api;
mod app;
mod auth;
mod error;
mod fake;
mod http;
mod key;
mod oidc;
pub mod process;
mod run;
mod shapes;
mod state;
pub mod webhook;

pub use app::AppCredentials;
pub use error::TestkitError;
pub use fake::FakeGithub;
pub use key::{TestKey, jwks_json};
pub use run::RunSpec;
pub use webhook::{
    WebhookSender, installation_payload, installation_repositories_payload, sign_webhook,
    workflow_run_object, workflow_run_payload,
};
