//! A fake GitHub for runproof's tests, `runproof serve --dev` and `runproof demo`.
//!
//! [`FakeGithub`] serves, on `127.0.0.1` only, what runproof needs from GitHub Actions
//! OIDC: the discovery document, a JWKS with key rotation and an outage switch, and the
//! Actions token-request endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL` /
//! `ACTIONS_ID_TOKEN_REQUEST_TOKEN`). Tokens are RS256 JWTs shaped like GitHub's
//! (string ids, `typ`/`alg`/`kid`/`x5t` header) describing a configurable [`RunSpec`].
//! [`TestKey`] signs arbitrary headers and claims, so tests can also forge bad tokens.
//!
//! What it does not do: it never opens a connection beyond loopback, serves no TLS,
//! publishes no certificates (`x5c`) and no REST API or webhooks. Its keys and
//! request token are throwaway test material: it is not a security boundary.
#![forbid(unsafe_code)]

mod error;
mod fake;
mod key;
mod run;

pub use error::TestkitError;
pub use fake::FakeGithub;
pub use key::{TestKey, jwks_json};
pub use run::RunSpec;
