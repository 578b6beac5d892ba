//! OIDC tokens: verified completely, their `jti` claimed against replay.

use std::time::Instant;

use runproof_core::claims::VerifiedToken;
use runproof_core::{ErrorCode, UnverifiedToken, VerifyError};
use runproof_github::KeyError;
use runproof_store::UsedJti;

use crate::error::ServiceError;
use crate::replay::Claim;
use crate::service::Service;

/// Records the outcome of a verification in the metrics.
pub fn record_outcome(mode: &'static str, started: Instant, code: Option<ErrorCode>) {
    let (outcome, code) = match code {
        None => ("accepted", "ok"),
        Some(c) => ("rejected", c.as_str()),
    };
    metrics::counter!("runproof_verifications_total", "mode" => mode, "outcome" => outcome, "code" => code)
        .increment(1);
    metrics::histogram!("runproof_verification_seconds", "mode" => mode)
        .record(started.elapsed().as_secs_f64());
}

/// Verifies an OIDC token completely: signature, claims, policy, and replay. Its `jti`
/// is spent in the database before this returns.
pub async fn verify_oidc(state: &Service, raw: &str) -> Result<VerifiedToken, ServiceError> {
    verify_oidc_spending(state, raw, Spend::Now)
        .await
        .map(|(verified, _)| verified)
}

/// Like [`verify_oidc`] for an upload: the `jti` is claimed on this replica at once
/// (a replay here is refused before the body is read) and returned, to be made durable
/// in the upload's own transaction (`None` when replay protection is off).
pub async fn verify_oidc_for_upload(
    state: &Service,
    raw: &str,
) -> Result<(VerifiedToken, Option<UsedJti>), ServiceError> {
    verify_oidc_spending(state, raw, Spend::WithUpload).await
}

/// When a verified token's `jti` becomes durable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spend {
    /// Before the token is accepted.
    Now,
    /// In the transaction of the upload it pays for.
    WithUpload,
}

async fn verify_oidc_spending(
    state: &Service,
    raw: &str,
    spend: Spend,
) -> Result<(VerifiedToken, Option<UsedJti>), ServiceError> {
    let started = Instant::now();
    let result = verify_oidc_inner(state, raw, spend).await;
    record_outcome(
        "oidc",
        started,
        result.as_ref().err().map(ServiceError::code),
    );
    if let Err(e) = &result {
        tracing::debug!(code = e.code().as_str(), detail = %e, "OIDC token refused");
    }
    result
}

async fn verify_oidc_inner(
    state: &Service,
    raw: &str,
    spend: Spend,
) -> Result<(VerifiedToken, Option<UsedJti>), ServiceError> {
    let token = UnverifiedToken::parse(raw)?;
    let issuer = state.verifier.precheck(&token)?;
    let kid = token.kid().unwrap_or_default();
    let keys = state
        .keys
        .keys_for(issuer, kid)
        .await
        .map_err(|e| match e {
            KeyError::Unavailable { .. } => {
                tracing::warn!(error = %e, "issuer keys unavailable");
                ServiceError::upstream(
                    "the issuer's keys cannot be fetched right now; retry later",
                    10,
                )
            }
            _ => ServiceError::from(VerifyError::untrusted_issuer(issuer)),
        })?;
    let now = state.clock.now();
    let verified = state.verifier.verify(token, &keys, now)?;
    if !state.settings.replay_protection {
        return Ok((verified, None));
    }
    let leeway = state.verifier.config().leeway_seconds.max(0);
    let used = UsedJti {
        issuer: verified.identity.issuer.clone(),
        jti: verified.jti.clone(),
        expires_at: verified.expires_at.plus(leeway),
    };
    let claim = state
        .commits
        .replay
        .claim(&used.issuer, &used.jti, used.expires_at.0, now.0);
    let spent_before = match claim {
        Claim::Replayed => true,
        Claim::Fresh => false,
        // Spending it now asks the database anyway.
        Claim::AskStore if spend == Spend::Now => false,
        Claim::AskStore => state.store.jti_is_spent(&used.issuer, &used.jti).await?,
    };
    if spent_before {
        return Err(token_replayed());
    }
    match spend {
        Spend::WithUpload => Ok((verified, Some(used))),
        Spend::Now => {
            let fresh = state
                .store
                .consume_jti(&used.issuer, &used.jti, used.expires_at)
                .await?;
            if !fresh {
                return Err(token_replayed());
            }
            Ok((verified, None))
        }
    }
}

/// The refusal of a spent token.
#[must_use]
pub fn token_replayed() -> ServiceError {
    ServiceError::refused(
        ErrorCode::TokenReplayed,
        "this token was already used; request a fresh one for each upload",
    )
}
