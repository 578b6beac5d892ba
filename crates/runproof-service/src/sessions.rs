//! Upload sessions: the token exchange PyPI and crates.io use.
//!
//! `POST /v1/sessions` takes an OIDC token (every OIDC check applies, and its `jti` is used
//! up, so one token opens at most one session) and returns an `rpst_` token scoped to
//! that run identity, with a short life and limits on uploads and bytes. Only the token's
//! SHA-256 is stored. `DELETE /v1/sessions/current` revokes it.

use std::sync::Arc;
use std::time::Instant;

use runproof_core::session::{token_from_random, token_hash};
use runproof_core::{ErrorCode, RunIdentity, Secret, UnixTime};
use runproof_store::{NewSession, SessionAsk, SessionUse, Store};

use crate::binding::bind;
use crate::error::ServiceError;
use crate::oidc::{record_outcome, verify_oidc};
use crate::service::Service;
use crate::settings::SessionConfig;
use crate::trust;
use crate::workflow_check;

fn rfc3339(t: runproof_core::UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A session just opened.
#[derive(Debug)]
pub struct OpenedSession {
    /// The session token, shown to the caller once.
    pub token: Secret,
    /// When it expires.
    pub expires_at: UnixTime,
    /// The run identity it is scoped to.
    /// The session's run identity.
    pub identity: RunIdentity,
    /// Its limits.
    pub limits: SessionConfig,
}

impl OpenedSession {
    /// When it expires, in RFC 3339.
    #[must_use]
    pub fn expires_at_rfc3339(&self) -> String {
        rfc3339(self.expires_at)
    }
}

/// Opens a session with an OIDC token: every OIDC check applies and its `jti` is spent.
///
/// # Errors
/// The token's refusal, a session token offered instead, an App not installed, or
/// storage.
pub async fn open(service: &Service, token: &str) -> Result<OpenedSession, ServiceError> {
    open_traced(service, token, &mut crate::events::Trail::default()).await
}

/// [`open`], noting in `trail` the identity once the token verified it and the rule that
/// refused it, for the event log.
///
/// # Errors
/// As [`open`].
pub async fn open_traced(
    service: &Service,
    token: &str,
    trail: &mut crate::events::Trail,
) -> Result<OpenedSession, ServiceError> {
    trail.mode = Some(runproof_store::Mode::Oidc);
    let opened = open_noted(service, token, trail).await;
    if let Err(e) = &opened {
        trail.refused_by(e);
    }
    opened
}

async fn open_noted(
    service: &Service,
    token: &str,
    trail: &mut crate::events::Trail,
) -> Result<OpenedSession, ServiceError> {
    if runproof_core::session::looks_like_session_token(token) {
        return Err(ServiceError::refused(
            ErrorCode::MalformedToken,
            "a session is opened with an OIDC token, not with another session",
        ));
    }
    let mut identity = verify_oidc(service, token).await?.identity;
    trail.verified(&identity);
    bind(service.binding.as_ref(), &*service.store, &mut identity).await?;
    // Checked here, and again at each of the session's uploads (the repository's rules may
    // change while the session lives).
    trust::check(service, &identity).await?;
    workflow_check::require_action(service, &identity).await?;

    let mut random = [0u8; 32];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| ServiceError::Random)?;
    let session = token_from_random(&random);
    let hash = token_hash(session.expose()).ok_or(ServiceError::Random)?;
    let limits = service.sessions;
    let now = service.clock.now();
    let expires_at = now.plus(i64::try_from(limits.ttl.as_secs()).unwrap_or(1800));
    service
        .store
        .create_session(&NewSession {
            token_hash: hash,
            identity: identity.clone(),
            created_at: now,
            expires_at,
            max_uploads: limits.max_uploads,
            max_bytes: limits.max_bytes,
        })
        .await?;
    metrics::counter!("runproof_sessions_opened_total").increment(1);
    Ok(OpenedSession {
        token: session,
        expires_at,
        identity,
        limits,
    })
}

/// Revokes a session by its token.
///
/// # Errors
/// `invalid_session` when the token is unknown or already revoked; storage.
pub async fn revoke(service: &Service, token: &str) -> Result<(), ServiceError> {
    let hash = token_hash(token).ok_or_else(invalid)?;
    if service.store.revoke_session(&hash).await? {
        Ok(())
    } else {
        Err(invalid())
    }
}

fn invalid() -> ServiceError {
    ServiceError::refused(
        ErrorCode::InvalidSession,
        "the session token is unknown or revoked",
    )
}

/// A session granted for one upload: its identity and what it reserved.
pub struct SessionGrant {
    /// The session's run identity.
    pub identity: RunIdentity,
    /// What it reserved.
    pub reservation: SessionReservation,
}

/// One upload and some bytes taken from a session's budget before the body is read.
/// Dropped unsettled (a refusal, a failed body, a client gone, a replayed answer), it
/// gives both back, in a task of its own.
pub struct SessionReservation {
    store: Arc<dyn Store>,
    token_hash: String,
    /// Bytes reserved: the most this upload may store.
    bytes: u64,
    /// Whether the upload and bytes go back on drop.
    armed: bool,
}

impl SessionReservation {
    /// Bytes reserved: the most this upload may store.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The upload is stored with `used` bytes: the upload counts, the rest of the bytes go
    /// back now, so that the session's next upload finds them.
    pub async fn settle(mut self, used: u64) {
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
    pub async fn release(mut self) {
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
pub async fn use_session(
    state: &Service,
    token: &str,
    ask: SessionAsk,
) -> Result<SessionGrant, ServiceError> {
    let started = Instant::now();
    let result = use_inner(state, token, ask).await;
    record_outcome(
        "session",
        started,
        result.as_ref().err().map(ServiceError::code),
    );
    result
}

async fn use_inner(
    state: &Service,
    token: &str,
    ask: SessionAsk,
) -> Result<SessionGrant, ServiceError> {
    let hash = token_hash(token).ok_or_else(invalid)?;
    match state
        .store
        .reserve_session(&hash, state.clock.now(), ask)
        .await?
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
            if let Err(refused) = bind(state.binding.as_ref(), &*state.store, &mut identity).await {
                reservation.release().await;
                return Err(refused);
            }
            if let Err(refused) = trust::check(state, &identity).await {
                reservation.release().await;
                return Err(refused);
            }
            Ok(SessionGrant {
                identity,
                reservation,
            })
        }
        SessionUse::Expired => Err(ServiceError::refused(
            ErrorCode::TokenExpired,
            "the session has expired; open a new one",
        )),
        SessionUse::Exhausted => Err(ServiceError::refused(
            ErrorCode::PolicyDenied,
            "the session's upload or byte limit is reached; open a new one",
        )),
        SessionUse::NoRoom { bytes_left } => Err(ServiceError::refused(
            ErrorCode::PayloadTooLarge,
            format!("the body exceeds the {bytes_left} bytes left in the session"),
        )),
        _ => Err(invalid()),
    }
}
