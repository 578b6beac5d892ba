//! An upload's way through the decisions: admitted by its credentials before a byte of
//! its body is read ([`admit`]), its body taken in while it is hashed and counted
//! ([`BodySink`]), then committed with its run identity ([`store`]).
//!
//! Each mode decides what may be uploaded: an OIDC token (its `jti` claimed against
//! replay, made durable in the upload's own transaction), a session (a share of its
//! budget reserved), a `GITHUB_TOKEN` (checked with GitHub), or no credentials at all in
//! the webhook mode (room reserved in the pending quotas; the upload waits for GitHub to
//! vouch for its run).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use runproof_core::session::looks_like_session_token;
use runproof_core::{ErrorCode, RunIdentity};
use runproof_store::{
    BlobWriter, Committed, IdempotencyScope, InlinePermit, Mode, NewUpload, PendingRun, SessionAsk,
    StoreError, UploadId, UploadRecord, UploadStatus, UploadWrite, UsedJti,
};
use sha2::{Digest, Sha256};

use crate::binding::bind;
use crate::error::ServiceError;
use crate::events::Trail;
use crate::github_token;
use crate::oidc::{token_replayed, verify_oidc_for_upload};
use crate::service::ClaimedRun;
use crate::service::Service;
use crate::sessions::{SessionReservation, use_session};
use crate::trust;
use crate::webhook_mode;
use crate::webhook_mode::Reservation;
use crate::workflow_check;

/// The credentials an upload request carries.
#[derive(Debug, Clone, Copy)]
pub enum UploadCredentials<'a> {
    /// `Bearer <token>`: an OIDC token or a session token.
    Bearer(&'a str),
    /// `token <GITHUB_TOKEN>`.
    GithubToken(&'a str),
    /// None: the webhook mode, when it is on.
    None,
}

/// What a verified request may upload, decided before its body is read, with what was
/// reserved for it. Dropped unused, the reservations are given back in a task of their
/// own; [`Admission::give_back`] gives them back at once.
pub struct Admission {
    mode: Mode,
    identity: RunIdentity,
    /// The most bytes this upload may take.
    cap: u64,
    /// The run claimed, for an upload held pending (webhook mode).
    pending: Option<PendingRun>,
    /// The token's `jti`, spent in the upload's transaction.
    jti: Option<UsedJti>,
    /// Room in the pending quotas (webhook mode).
    reservation: Option<Reservation>,
    /// A share of a session's budget.
    session: Option<SessionReservation>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("mode", &self.mode)
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// The mode the upload is made in.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The run identity, verified (or claimed, while pending).
    #[must_use]
    pub fn identity(&self) -> &RunIdentity {
        &self.identity
    }

    /// The most bytes the body may have.
    #[must_use]
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Nothing will be stored: what was reserved goes back now, so that the client's
    /// next request finds the room again.
    pub async fn give_back(self) {
        if let Some(unused) = self.reservation {
            unused.refund().await;
        }
        if let Some(unused) = self.session {
            unused.release().await;
        }
    }
}

/// Checks the credentials and decides the mode, before any byte of the body is read
/// (`declared_len`: the body's size when the request says it).
///
/// # Errors
/// The credentials' refusal; a body over the limit; the webhook mode's quotas.
pub async fn admit(
    service: &Service,
    credentials: UploadCredentials<'_>,
    claimed: ClaimedRun<'_>,
    declared_len: Option<u64>,
) -> Result<Admission, ServiceError> {
    let mut trail = Trail::default();
    admit_traced(service, credentials, claimed, declared_len, &mut trail).await
}

/// [`admit`], noting in `trail` what the event log may say of the request: its mode, the
/// identity once a token verified it (a claimed one never), the rule that refused it.
///
/// # Errors
/// As [`admit`].
pub async fn admit_traced(
    service: &Service,
    credentials: UploadCredentials<'_>,
    claimed: ClaimedRun<'_>,
    declared_len: Option<u64>,
    trail: &mut Trail,
) -> Result<Admission, ServiceError> {
    trail.mode = Some(match credentials {
        UploadCredentials::Bearer(token) if looks_like_session_token(token) => Mode::Session,
        UploadCredentials::Bearer(_) => Mode::Oidc,
        UploadCredentials::GithubToken(_) => Mode::GithubToken,
        UploadCredentials::None => Mode::Webhook,
    });
    let admitted = admit_noted(service, credentials, claimed, declared_len, trail).await;
    if let Err(e) = &admitted {
        trail.refused_by(e);
    }
    admitted
}

async fn admit_noted(
    service: &Service,
    credentials: UploadCredentials<'_>,
    claimed: ClaimedRun<'_>,
    declared_len: Option<u64>,
    trail: &mut Trail,
) -> Result<Admission, ServiceError> {
    let admitted = |mode, identity, cap| Admission {
        mode,
        identity,
        cap,
        pending: None,
        jti: None,
        reservation: None,
        session: None,
    };
    let max = service.settings.max_upload_bytes;
    match credentials {
        UploadCredentials::Bearer(token) if looks_like_session_token(token) => {
            let ask = match declared_len {
                Some(len) if len > max => return Err(too_large(max)),
                Some(len) => SessionAsk::Exactly(len),
                None => SessionAsk::UpTo(max),
            };
            let grant = use_session(service, token, ask).await?;
            trail.verified(&grant.identity);
            let cap = grant.reservation.bytes();
            Ok(Admission {
                session: Some(grant.reservation),
                ..admitted(Mode::Session, grant.identity, cap)
            })
        }
        UploadCredentials::Bearer(token) => {
            let (verified, jti) = verify_oidc_for_upload(service, token).await?;
            let mut identity = verified.identity;
            trail.verified(&identity);
            bind(service.binding.as_ref(), &*service.store, &mut identity).await?;
            trust::check(service, &identity).await?;
            workflow_check::require_action(service, &identity).await?;
            Ok(Admission {
                jti,
                ..admitted(Mode::Oidc, identity, max)
            })
        }
        UploadCredentials::GithubToken(token) => {
            let mut identity = github_token::verify(service, token, claimed).await?;
            trail.verified(&identity);
            bind(service.binding.as_ref(), &*service.store, &mut identity).await?;
            trust::check(service, &identity).await?;
            workflow_check::require_action_without_workflow(service, "github_token")?;
            Ok(admitted(Mode::GithubToken, identity, max))
        }
        UploadCredentials::None => match service.webhook_mode.as_ref() {
            Some(mode) => {
                let admission = webhook_mode::admit(service, mode, claimed, declared_len).await?;
                Ok(Admission {
                    pending: Some(admission.claim),
                    reservation: Some(admission.reservation),
                    ..admitted(Mode::Webhook, admission.identity, admission.cap)
                })
            }
            None => Err(ServiceError::refused(
                ErrorCode::MissingCredentials,
                "send an OIDC token as `Authorization: Bearer <token>`",
            )),
        },
    }
}

/// An upload of the same scope with this idempotency key, when there is one.
///
/// # Errors
/// Storage.
pub async fn find_by_idempotency_key(
    service: &Service,
    admission: &Admission,
    key: &str,
) -> Result<Option<UploadRecord>, ServiceError> {
    let scope = IdempotencyScope::new(admission.mode, &admission.identity);
    Ok(service.store.find_by_idempotency_key(&scope, key).await?)
}

/// `payload_too_large` for a body over `max` bytes.
#[must_use]
pub fn too_large(max: u64) -> ServiceError {
    ServiceError::refused(
        ErrorCode::PayloadTooLarge,
        format!("the body exceeds the limit of {max} bytes"),
    )
}

/// Where a body goes while it is received.
enum Sink {
    /// Into memory, to be stored in the database with its record, while it stays within
    /// `limit` bytes (the room `permit` holds).
    Inline {
        buf: BytesMut,
        limit: usize,
        permit: InlinePermit,
    },
    /// Into a new blob, committed before the record.
    Blob(Box<dyn BlobWriter>),
}

/// A body being received: hashed, counted against the admission's cap, and written. A
/// body that may be small (declared within `[storage] inline_max_bytes`, or unknown) is
/// kept in memory when the commit pipeline has room for it, and moves to a new blob if
/// it grows past the limit; any other goes to a new blob from its first byte.
pub struct BodySink {
    blobs: Arc<dyn runproof_store::BlobStore>,
    sink: Sink,
    hasher: Sha256,
    size: u64,
    cap: u64,
}

impl std::fmt::Debug for BodySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySink")
            .field("size", &self.size)
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

/// A body received whole and checked, not yet stored.
pub struct ReceivedBody {
    sink: Sink,
    size: u64,
    sha256: [u8; 32],
}

impl std::fmt::Debug for ReceivedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedBody")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl BodySink {
    /// Starts receiving the body of `admission` (`declared_len`: its size, when known).
    ///
    /// # Errors
    /// A blob cannot be begun.
    pub async fn begin(
        service: &Service,
        admission: &Admission,
        declared_len: Option<u64>,
    ) -> Result<Self, ServiceError> {
        let cap = admission.cap;
        let inline_max = service.commits.inline_max_bytes.min(cap);
        let room = match declared_len {
            _ if inline_max == 0 => None,
            Some(len) if len <= inline_max => Some(len),
            Some(_) => None,
            None => Some(inline_max),
        };
        let inline = room
            .and_then(|room| usize::try_from(room).ok())
            .and_then(|room| {
                let permit = service.commits.pipeline.reserve_inline(room)?;
                Some(Sink::Inline {
                    buf: BytesMut::with_capacity(room),
                    limit: room,
                    permit,
                })
            });
        let blobs = Arc::clone(&service.blobs);
        let sink = match inline {
            Some(sink) => sink,
            None => Sink::Blob(begin_blob(&blobs).await?),
        };
        Ok(Self {
            blobs,
            sink,
            hasher: Sha256::new(),
            size: 0,
            cap,
        })
    }

    /// Takes the next chunk of the body.
    ///
    /// # Errors
    /// The body passes the cap (`payload_too_large`); the blob cannot be written.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), ServiceError> {
        self.size = self.size.saturating_add(chunk.len() as u64);
        if self.size > self.cap {
            return Err(too_large(self.cap));
        }
        self.hasher.update(chunk);
        match &mut self.sink {
            Sink::Inline { buf, limit, .. } if buf.len() + chunk.len() <= *limit => {
                buf.extend_from_slice(chunk);
                Ok(())
            }
            Sink::Inline { buf, .. } => {
                // Larger than an inline body may be: on to a blob, and the room goes back.
                let mut writer = begin_blob(&self.blobs).await?;
                let moved = async {
                    writer.write(buf).await?;
                    writer.write(chunk).await
                }
                .await;
                if let Err(e) = moved {
                    writer.abort().await;
                    return Err(e.into());
                }
                self.sink = Sink::Blob(writer);
                Ok(())
            }
            Sink::Blob(writer) => Ok(writer.write(chunk).await?),
        }
    }

    /// The whole body is in: checks it against the digest the client declared.
    ///
    /// # Errors
    /// `digest_mismatch`; the partial body is discarded.
    pub async fn finish(self, expected: Option<[u8; 32]>) -> Result<ReceivedBody, ServiceError> {
        let sha256: [u8; 32] = self.hasher.finalize().into();
        if expected.is_some_and(|expected| expected != sha256) {
            abort(self.sink).await;
            return Err(ServiceError::refused(
                ErrorCode::DigestMismatch,
                "the body does not match its Content-Digest",
            ));
        }
        Ok(ReceivedBody {
            sink: self.sink,
            size: self.size,
            sha256,
        })
    }

    /// The body will not be stored: a partial blob is discarded.
    pub async fn abort(self) {
        abort(self.sink).await;
    }
}

async fn abort(sink: Sink) {
    if let Sink::Blob(writer) = sink {
        writer.abort().await;
    }
}

/// A new blob writer.
async fn begin_blob(
    blobs: &Arc<dyn runproof_store::BlobStore>,
) -> Result<Box<dyn BlobWriter>, ServiceError> {
    // Begun in a task of its own: a local blob's file is created on a blocking thread,
    // so a request dropped meanwhile (its client gone) would leave the file behind. The
    // task hands the writer over, or drops it, discarding the file, once nobody waits.
    let blobs = Arc::clone(blobs);
    Ok(tokio::spawn(async move { blobs.begin().await })
        .await
        .map_err(|_| ServiceError::TaskFailed)??)
}

/// What the client asked to store with the body.
#[derive(Debug, Clone)]
pub struct Described {
    /// The upload's name, already checked.
    pub name: String,
    /// `Content-Type`, when sent.
    pub content_type: Option<String>,
    /// `Idempotency-Key`, when sent.
    pub idempotency_key: Option<String>,
}

/// What became of a received upload.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stored {
    /// Stored and verified.
    Verified(UploadRecord),
    /// Stored, held pending (webhook mode), and settled at once when its run was known:
    /// the record as it now stands.
    Pending(UploadRecord),
    /// An upload of the same scope and idempotency key was there first.
    Replayed(UploadRecord),
}

/// Stores a received upload: commits its blob (a small body goes with its record),
/// inserts its record with its pushes and spent `jti` through the commit pipeline, then
/// settles what was reserved for it. A pending upload whose run is already known is
/// settled at once.
///
/// It runs to its end in a task of its own, so that a client gone now leaves no blob
/// without a record, and no reservation behind.
///
/// # Errors
/// A replayed token (judged by the database), or storage.
pub async fn store(
    service: &Arc<Service>,
    admission: Admission,
    body: ReceivedBody,
    described: Described,
) -> Result<Stored, ServiceError> {
    let task = tokio::spawn({
        let service = Arc::clone(service);
        async move { store_settling(&service, admission, body, described).await }
    });
    let stored = task.await.map_err(|_| ServiceError::TaskFailed)??;
    Ok(match stored {
        Stored::Pending(record) => {
            Stored::Pending(webhook_mode::after_insert(service, record).await)
        }
        other => other,
    })
}

/// Commits, then settles the reservations: on success they are used (a session's unused
/// bytes go back), otherwise they are given back before the answer goes out.
async fn store_settling(
    service: &Service,
    admission: Admission,
    body: ReceivedBody,
    described: Described,
) -> Result<Stored, ServiceError> {
    let Admission {
        mode,
        identity,
        pending,
        jti,
        reservation,
        session,
        ..
    } = admission;
    let result = commit(
        service,
        Admitted {
            mode,
            identity,
            pending,
            jti,
        },
        body,
        described,
        reservation.as_ref(),
    )
    .await;
    match &result {
        Ok(Stored::Verified(record) | Stored::Pending(record)) => {
            if let Some(consumed) = reservation {
                consumed.consumed();
            }
            if let Some(session) = session {
                session.settle(record.size).await;
            }
        }
        _ => {
            if let Some(unused) = reservation {
                unused.refund().await;
            }
            if let Some(unused) = session {
                unused.release().await;
            }
        }
    }
    result
}

/// The part of an admission the record is made of.
struct Admitted {
    mode: Mode,
    identity: RunIdentity,
    pending: Option<PendingRun>,
    jti: Option<UsedJti>,
}

async fn commit(
    service: &Service,
    admitted: Admitted,
    body: ReceivedBody,
    described: Described,
    reservation: Option<&Reservation>,
) -> Result<Stored, ServiceError> {
    let id = UploadId::generate();
    let (inline, _permit, in_blob): (Option<Bytes>, _, _) = match body.sink {
        Sink::Inline { buf, permit, .. } => (Some(buf.freeze()), Some(permit), false),
        Sink::Blob(writer) => {
            writer.commit(&id).await?;
            (None, None, true)
        }
    };
    let now = service.clock.now();
    let status = if admitted.pending.is_some() {
        UploadStatus::Pending
    } else {
        UploadStatus::Verified
    };
    let mut new = NewUpload {
        id: id.clone(),
        status,
        mode: admitted.mode,
        name: described.name,
        size: body.size,
        sha256: body.sha256,
        content_type: described.content_type,
        // A pending upload is received when its request's head was, not its last byte.
        created_at: reservation.map_or(now, Reservation::admitted_at),
        verified_at: (status == UploadStatus::Verified).then_some(now),
        identity: admitted.identity,
        reason: None,
        idempotency_key: described.idempotency_key,
        pushes: Vec::new(),
        pending_run: admitted.pending,
        pending_reservation: reservation.map(|r| r.id().clone()),
    };
    if let Some(push) = service
        .push
        .as_ref()
        .filter(|_| status == UploadStatus::Verified)
    {
        new.pushes
            .extend(push.push_for("upload.verified", &new.record()));
    }
    let announces = !new.pushes.is_empty();
    let mode = new.mode;
    // Given back when the write is definitely not stored for a fault of ours.
    let claimed = admitted.jti.clone();
    let release = || {
        if let Some(used) = &claimed {
            service.commits.replay.release(&used.issuer, &used.jti);
        }
    };
    let write = UploadWrite {
        upload: new,
        jti: admitted.jti,
        body: inline,
    };
    let record = match service.commits.pipeline.commit(write).await {
        Ok(Committed::Inserted(record)) => record,
        Ok(Committed::Existing(existing)) => {
            // Our record was not inserted: the blob is ours alone.
            if in_blob {
                delete_blob(service, &id).await;
            }
            return Ok(Stored::Replayed(existing));
        }
        Ok(Committed::Replayed) => {
            // Spent on another replica, or before a restart: the database judged.
            if in_blob {
                delete_blob(service, &id).await;
            }
            return Err(token_replayed());
        }
        Ok(other) => {
            if in_blob {
                delete_blob(service, &id).await;
            }
            return Err(ServiceError::UnexpectedCommit(format!("{other:?}")));
        }
        Err(StoreError::CommitUnknown(cause)) => {
            // Deleting the blob of a record that did commit would leave an idempotent
            // retry a record without content: look first, and when even that cannot
            // tell, keep the blob (the collector deletes it later if no record names it).
            match service.store.get_upload(&id).await {
                Ok(Some(record)) => {
                    tracing::warn!(%id, %cause, "the insert committed though its answer was lost");
                    record
                }
                Ok(None) => {
                    if in_blob {
                        delete_blob(service, &id).await;
                    }
                    release();
                    return Err(StoreError::CommitUnknown(cause).into());
                }
                Err(e) => {
                    tracing::warn!(%id, error = %e, "cannot tell whether the insert committed; the blob is kept");
                    return Err(StoreError::CommitUnknown(cause).into());
                }
            }
        }
        Err(other) => {
            if in_blob {
                delete_blob(service, &id).await;
            }
            // Nothing was stored, the jti included: a retry with this token is no replay.
            release();
            return Err(other.into());
        }
    };
    if announces {
        service.push_wake.notify_one();
    }
    metrics::counter!("runproof_uploads_total", "mode" => mode.as_str(), "status" => status.as_str())
        .increment(1);
    metrics::counter!("runproof_upload_bytes_total").increment(body.size);
    tracing::debug!(
        id = %record.id,
        repository_id = %record.identity.repository_id,
        run_id = %record.identity.run_id,
        size = record.size,
        status = status.as_str(),
        "upload stored"
    );
    Ok(if status == UploadStatus::Pending {
        Stored::Pending(record)
    } else {
        Stored::Verified(record)
    })
}

async fn delete_blob(service: &Service, id: &UploadId) {
    if let Err(e) = service.blobs.delete(id).await {
        tracing::warn!(error = %e, %id, "could not delete blob of a failed insert");
    }
}
