//! The OIDC token verifier: one configured audience, exact issuers, RS256 only.

use crate::claims::{Audience, GithubClaims, VerifiedToken};
use crate::error::VerifyError;
use crate::keys::KeySet;
use crate::policy::Policy;
use crate::time::UnixTime;
use crate::token::UnverifiedToken;

/// The one signature algorithm accepted.
pub const ALGORITHM: &str = "RS256";
/// The default clock leeway, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: i64 = 60;

/// What a [`Verifier`] checks against.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Issuers accepted, compared byte for byte with `iss`.
    pub issuers: Vec<String>,
    /// The one audience accepted, compared byte for byte with a single-valued `aud`.
    pub audience: String,
    /// Clock leeway for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_seconds: i64,
    /// Policy applied once the token itself is valid.
    pub policy: Policy,
}

/// Verifies GitHub Actions OIDC tokens. Holds configuration only: keys and the current
/// time are passed to each call.
#[derive(Debug, Clone)]
pub struct Verifier {
    config: VerifierConfig,
}

impl Verifier {
    /// A verifier for this configuration.
    #[must_use]
    pub fn new(config: VerifierConfig) -> Self {
        Self { config }
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// The checks that need no key: the algorithm and the issuer. Returns the configured
    /// issuer whose keys the token must be verified with.
    ///
    /// # Errors
    /// [`VerifyError::UnsupportedAlgorithm`], [`VerifyError::MissingClaim`] for a token
    /// without `iss`, or [`VerifyError::UntrustedIssuer`].
    pub fn precheck<'a>(&'a self, token: &UnverifiedToken) -> Result<&'a str, VerifyError> {
        if token.alg() != ALGORITHM {
            return Err(VerifyError::UnsupportedAlgorithm {
                alg: token.alg().chars().take(32).collect(),
            });
        }
        let iss = token
            .unverified_issuer()
            .ok_or(VerifyError::MissingClaim { claim: "iss" })?;
        self.config
            .issuers
            .iter()
            .find(|i| i.as_str() == iss)
            .map(String::as_str)
            .ok_or_else(|| VerifyError::untrusted_issuer(iss))
    }

    /// Verifies a token with the keys of its issuer at time `now`.
    ///
    /// The order is fixed: algorithm, issuer, key, signature, required claims, audience,
    /// lifetime, policy. Nothing from the claims is read before the signature checks out.
    ///
    /// # Errors
    /// The first [`VerifyError`] met, in that order.
    pub fn verify(
        &self,
        token: UnverifiedToken,
        keys: &KeySet,
        now: UnixTime,
    ) -> Result<VerifiedToken, VerifyError> {
        self.precheck(&token)?;
        let kid = token.kid().unwrap_or_default();
        let key = keys.get(kid).ok_or_else(|| VerifyError::UnknownKey {
            kid: kid.chars().take(64).collect(),
        })?;
        if !key.verify(token.signing_input(), token.signature()) {
            return Err(VerifyError::BadSignature);
        }

        let claims: GithubClaims =
            serde_json::from_slice(token.claims_json()).map_err(|_| VerifyError::Malformed {
                reason: "a claim has the wrong type",
            })?;
        let claims = claims.require()?;

        if !self.config.issuers.contains(&claims.iss) {
            return Err(VerifyError::untrusted_issuer(&claims.iss));
        }
        match &claims.aud {
            Audience::One(aud) if *aud == self.config.audience => {}
            Audience::One(aud) => {
                return Err(VerifyError::wrong_audience(
                    Some(aud),
                    &self.config.audience,
                ));
            }
            Audience::Other(_) => {
                return Err(VerifyError::wrong_audience(None, &self.config.audience));
            }
        }

        let leeway = self.config.leeway_seconds.max(0);
        let exp = UnixTime(claims.exp);
        if now.minus(leeway) >= exp {
            return Err(VerifyError::Expired { exp, now });
        }
        for not_before in [claims.nbf, Some(claims.iat)].into_iter().flatten() {
            let not_before = UnixTime(not_before);
            if now.plus(leeway) < not_before {
                return Err(VerifyError::NotYetValid { not_before, now });
            }
        }

        self.config
            .policy
            .check(&claims.identity)
            .map_err(VerifyError::Policy)?;

        Ok(VerifiedToken {
            identity: claims.identity,
            jti: claims.jti,
            expires_at: exp,
            issued_at: UnixTime(claims.iat),
        })
    }
}
