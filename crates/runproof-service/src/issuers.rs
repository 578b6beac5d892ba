//! The issuers an identity records when no OIDC token vouched for it.

/// The issuer recorded for identities vouched for by GitHub's API.
pub const API_ISSUER: &str = "https://api.github.com";

/// The issuer recorded in the identity of an upload that is still pending.
pub const UNVERIFIED_ISSUER: &str = "unverified";
