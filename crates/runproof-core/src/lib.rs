//! Pure verification core of runproof.
//!
//! This crate turns untrusted input into verified values: a GitHub Actions OIDC token
//! becomes a [`RunIdentity`] once its signature, issuer, audience, lifetime, required
//! claims and policy all check out. It also parses the request-level inputs that carry
//! security meaning (`Content-Digest`, upload names), and matches a run identity
//! against trust rules ([`rules`]): which workflows, refs, environments and reusable
//! workflows may upload.
//!
//! What it does not do: it opens no socket, reads no file and never looks at a clock.
//! Keys ([`KeySet`]) and the current time ([`UnixTime`]) are passed in by the caller,
//! so every rule can be tested at any instant with any key.
//!
//! Threat model in brief: every byte of a token is attacker-controlled until the
//! signature is checked against a key of a configured issuer. Nothing is trusted from
//! the token header beyond choosing among already-configured keys; only `RS256` is
//! accepted; multi-valued audiences are refused; ids, never names, feed decisions.
//!
//! Where it sits: at the bottom. Every other runproof crate depends on it, and it depends
//! on none of them.
#![forbid(unsafe_code)]

pub mod claims;
pub mod correlation;
pub mod digest;
pub mod error;
pub mod ids;
pub mod keys;
pub mod name;
pub mod policy;
pub mod rules;
pub mod run_header;
pub mod secret;
pub mod session;
pub mod time;
pub mod token;
pub mod verifier;
pub mod webhook;

pub use claims::RunIdentity;
pub use error::{ErrorCode, PolicyRule, VerifyError};
pub use ids::{ActorId, CheckRunId, EnterpriseId, InstallationId, OwnerId, RepositoryId, RunId};
pub use keys::{KeySet, KeySetError};
pub use policy::Policy;
pub use rules::TrustRule;
pub use secret::Secret;
pub use time::UnixTime;
pub use token::UnverifiedToken;
pub use verifier::{Verifier, VerifierConfig};
