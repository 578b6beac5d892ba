//! Upload sessions: the token exchange PyPI and crates.io use.
//!
//! `POST /v1/sessions` takes an OIDC token (every OIDC check applies, and its `jti` is used
//! up, so one token opens at most one session) and returns an `rpst_` token scoped to
//! that run identity, with a short life and limits on uploads and bytes. Only the token's
//! SHA-256 is stored. `DELETE /v1/sessions/current` revokes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use runproof_core::session::{token_from_random, token_hash};
use runproof_core::{ErrorCode, RunIdentity};
use runproof_store::{NewSession, SessionAsk, SessionUse, Store};
use serde_json::json;

use crate::auth::{Credentials, credentials, record_outcome, verify_oidc};
use crate::binding::bind;
use crate::{ApiError, AppState};

/// Limits of the sessions a server opens.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// How long a session lives.
    pub ttl: Duration,
    /// The most uploads one session may make.
    pub max_uploads: u64,
    /// The most bytes one session may upload in all.
    pub max_bytes: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(1800),
            max_uploads: 1000,
            max_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

fn rfc3339(t: runproof_core::UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `POST /v1/sessions`.
pub(crate) async fn open(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Credentials::Bearer(token) = credentials(&headers)? else {
        return Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "send the job's OIDC token as `Authorization: Bearer <token>`",
        ));
    };
    if runproof_core::session::looks_like_session_token(token) {
        return Err(ApiError::new(
            ErrorCode::MalformedToken,
            "a session is opened with an OIDC token, not with another session",
        ));
    }
    let mut identity = verify_oidc(&state, token).await?.identity;
    bind(&state, &mut identity).await?;

    let mut random = [0u8; 32];
    aws_lc_rs::rand::fill(&mut random)
        .map_err(|_| ApiError::storage(&"the system random generator failed"))?;
    let session = token_from_random(&random);
    let hash = token_hash(session.expose())
        .ok_or_else(|| ApiError::storage(&"a fresh session token does not parse"))?;
    let limits = state.sessions;
    let now = state.clock.now();
    let expires_at = now.plus(i64::try_from(limits.ttl.as_secs()).unwrap_or(1800));
    state
        .store
        .create_session(&NewSession {
            token_hash: hash,
            identity: identity.clone(),
            created_at: now,
            expires_at,
            max_uploads: limits.max_uploads,
            max_bytes: limits.max_bytes,
        })
        .await
        .map_err(|e| ApiError::storage(&e))?;
    metrics::counter!("runproof_sessions_opened_total").increment(1);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": session.expose(),
            "expires_at": rfc3339(expires_at),
            "identity": identity,
            "limits": {
                "max_uploads": limits.max_uploads,
                "max_bytes": limits.max_bytes,
                "max_upload_bytes": state.config.max_upload_bytes,
            },
        })),
    )
        .into_response())
}

/// `DELETE /v1/sessions/current`.
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Credentials::Bearer(token) = credentials(&headers)? else {
        return Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "send the session token as `Authorization: Bearer <token>`",
        ));
    };
    let hash = token_hash(token).ok_or_else(invalid)?;
    let revoked = state
        .store
        .revoke_session(&hash)
        .await
        .map_err(|e| ApiError::storage(&e))?;
    if revoked {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(invalid())
    }
}

fn invalid() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidSession,
        "the session token is unknown or revoked",
    )
}

/// A session granted for one upload: its identity and what it reserved.
pub(crate) struct SessionGrant {
    pub(crate) identity: RunIdentity,
    pub(crate) reservation: SessionReservation,
}

/// One upload and some bytes taken from a session's budget before the body is read.
/// Dropped unsettled (a refusal, a failed body, a client gone, a replayed answer), it
/// gives both back, in a task of its own.
pub(crate) struct SessionReservation {
    store: Arc<dyn Store>,
    token_hash: String,
    /// Bytes reserved: the most this upload may store.
    bytes: u64,
    /// Whether the upload and bytes go back on drop.
    armed: bool,
}

impl SessionReservation {
    /// Bytes reserved: the most this upload may store.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The upload is stored with `used` bytes: the upload counts, the rest of the bytes go
    /// back now, so that the session's next upload finds them.
    pub(crate) async fn settle(mut self, used: u64) {
        self.armed = false;
        let unused = self.bytes.saturating_sub(used);
        if unused > 0
            && let Err(e) = self
                .store
                .release_session(&self.token_hash, 0, unused)
                .await
        {
            tracing::warn!(error = %e, unused, "cannot give unused bytes back to a session");
        }
    }
}

impl SessionReservation {
    /// Nothing was stored: the upload and every byte go back now.
    pub(crate) async fn release(mut self) {
        self.armed = false;
        if let Err(e) = self
            .store
            .release_session(&self.token_hash, 1, self.bytes)
            .await
        {
            tracing::warn!(error = %e, "cannot give a session reservation back");
        }
    }
}

impl Drop for SessionReservation {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Without a runtime (shutting down) the session keeps the reservation: its budget
        // only ever errs on the side of less.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, hash, bytes) = (
                Arc::clone(&self.store),
                std::mem::take(&mut self.token_hash),
                self.bytes,
            );
            runtime.spawn(async move {
                if let Err(e) = store.release_session(&hash, 1, bytes).await {
                    tracing::warn!(error = %e, "cannot give a session reservation back");
                }
            });
        }
    }
}

/// Checks a session token and reserves one upload and `ask`'s bytes from its budget;
/// then checks that the App is still installed on the session's repository (it may have
/// been uninstalled or suspended since the session was opened).
pub(crate) async fn use_session(
    state: &AppState,
    token: &str,
    ask: SessionAsk,
) -> Result<SessionGrant, ApiError> {
    let started = Instant::now();
    let result = use_inner(state, token, ask).await;
    record_outcome("session", started, result.as_ref().err().map(|e| e.code));
    result
}

async fn use_inner(
    state: &AppState,
    token: &str,
    ask: SessionAsk,
) -> Result<SessionGrant, ApiError> {
    let hash = token_hash(token).ok_or_else(invalid)?;
    match state
        .store
        .reserve_session(&hash, state.clock.now(), ask)
        .await
        .map_err(|e| ApiError::storage(&e))?
    {
        SessionUse::Granted {
            mut identity,
            reserved,
        } => {
            let reservation = SessionReservation {
                store: Arc::clone(&state.store),
                token_hash: hash,
                bytes: reserved,
                armed: true,
            };
            if let Err(refused) = bind(state, &mut identity).await {
                reservation.release().await;
                return Err(refused);
            }
            Ok(SessionGrant {
                identity,
                reservation,
            })
        }
        SessionUse::Expired => Err(ApiError::new(
            ErrorCode::TokenExpired,
            "the session has expired; open a new one",
        )),
        SessionUse::Exhausted => Err(ApiError::new(
            ErrorCode::PolicyDenied,
            "the session's upload or byte limit is reached; open a new one",
        )),
        SessionUse::NoRoom { bytes_left } => Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body exceeds the {bytes_left} bytes left in the session"),
        )),
        _ => Err(invalid()),
    }
}
