//! Credentials: reading them from a request and verifying them.

use std::time::Instant;

use axum::http::{HeaderMap, header};
use runproof_core::claims::VerifiedToken;
use runproof_core::{ErrorCode, UnverifiedToken, VerifyError};
use runproof_github::KeyError;

use crate::{ApiError, AppState};

/// What the `Authorization` header carries.
#[derive(Debug)]
pub(crate) enum Credentials<'a> {
    /// `Bearer <token>`: an OIDC token (or, later, a session token).
    Bearer(&'a str),
    /// `token <GITHUB_TOKEN>`.
    GithubToken(&'a str),
    /// No `Authorization` header.
    None,
}

/// Reads the `Authorization` header.
pub(crate) fn credentials(headers: &HeaderMap) -> Result<Credentials<'_>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Credentials::None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::MalformedToken, "Authorization is not ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "Authorization has no credentials",
        ));
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credentials::Bearer(rest))
    } else if scheme.eq_ignore_ascii_case("token") {
        Ok(Credentials::GithubToken(rest))
    } else {
        Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "Authorization must use the Bearer scheme",
        ))
    }
}

/// Records the outcome of a verification in the metrics.
pub(crate) fn record_outcome(mode: &'static str, started: Instant, code: Option<ErrorCode>) {
    let (outcome, code) = match code {
        None => ("accepted", "ok"),
        Some(c) => ("rejected", c.as_str()),
    };
    metrics::counter!("runproof_verifications_total", "mode" => mode, "outcome" => outcome, "code" => code)
        .increment(1);
    metrics::histogram!("runproof_verification_seconds", "mode" => mode)
        .record(started.elapsed().as_secs_f64());
}

/// Verifies an OIDC token completely: signature, claims, policy, and replay.
pub(crate) async fn verify_oidc(state: &AppState, raw: &str) -> Result<VerifiedToken, ApiError> {
    let started = Instant::now();
    let result = verify_oidc_inner(state, raw).await;
    record_outcome("oidc", started, result.as_ref().err().map(|e| e.code));
    if let Err(e) = &result {
        tracing::debug!(code = e.code.as_str(), detail = %e.detail, "OIDC token refused");
    }
    result
}

async fn verify_oidc_inner(state: &AppState, raw: &str) -> Result<VerifiedToken, ApiError> {
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
                ApiError::new(
                    ErrorCode::UpstreamUnavailable,
                    "the issuer's keys cannot be fetched right now; retry later",
                )
                .retry_after(10)
            }
            _ => ApiError::from(VerifyError::UntrustedIssuer),
        })?;
    let verified = state.verifier.verify(token, &keys, state.clock.now())?;
    if state.config.replay_protection {
        let leeway = state.verifier.config().leeway_seconds.max(0);
        let fresh = state
            .store
            .consume_jti(
                &verified.identity.issuer,
                &verified.jti,
                verified.expires_at.plus(leeway),
            )
            .await
            .map_err(|e| ApiError::storage(&e))?;
        if !fresh {
            return Err(ApiError::new(
                ErrorCode::TokenReplayed,
                "this token was already used; request a fresh one for each upload",
            ));
        }
    }
    Ok(verified)
}
