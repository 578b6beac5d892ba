//! The event log's writing side: decisions are queued on a bounded side queue and written
//! in batches by a background task ([`crate::Background`]), so that recording an event
//! never slows or fails the request it describes. When the queue is full the event is
//! dropped and counted (`runproof_events_dropped_total`); when a batch cannot be written,
//! its events are dropped and counted too.
//!
//! What is recorded never holds a secret: no token, no `Authorization` header, no API key.
//! A [`Trail`] gathers, as a request is decided, what an event may say of it: its mode, the
//! identity once a token verified, the rule that refused it.

use std::sync::Arc;

use runproof_core::{RepositoryId, RunId, RunIdentity};
use runproof_store::{EventKind, EventOutcome, EventRecord, Mode, NewEvent, Store};

use crate::error::ServiceError;
use crate::service::Service;

use crate::event_queue::MAX_BATCH;
pub use crate::event_queue::{EVENT_QUEUE_CAPACITY, EventLogConfig};

/// Starts the writer of `service`'s queue, unless one was started already.
pub(crate) fn spawn_writer(service: &Service) -> Option<tokio::task::JoinHandle<()>> {
    let mut receiver = service.events.take_receiver()?;
    let store: Arc<dyn Store> = Arc::clone(&service.store);
    Some(tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = receiver.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            if let Err(e) = store.insert_events(&batch).await {
                tracing::warn!(error = %e, events = batch.len(), "events could not be written");
                metrics::counter!("runproof_events_dropped_total").increment(batch.len() as u64);
            }
            batch.clear();
        }
    }))
}

/// Purges events beyond the retention (the housekeeping pass).
pub(crate) async fn purge(service: &Service) {
    let config = service.events.config;
    let before = service
        .clock
        .now()
        .minus(i64::from(config.retention_days).saturating_mul(24 * 3600));
    match service.store.purge_events(before, config.max_rows).await {
        Ok(n) if n > 0 => tracing::debug!(purged = n, "purged old events"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "event purge failed"),
    }
}

/// What is known of a request as it is decided: its mode, the identity once a token
/// verified (never a claimed one), and the rule that refused it.
#[derive(Debug, Clone, Default)]
pub struct Trail {
    /// The mode of the upload, once known.
    pub mode: Option<Mode>,
    /// What an event keeps of the identity, once a token verified it (or of the upload's,
    /// once stored).
    pub run: Option<TrailRun>,
    /// The trust rule that refused the request, if any.
    pub rule: Option<String>,
    /// What was stored, when something was (an upload id and its status).
    pub detail: Option<String>,
    /// The upload stored (or found stored), when there is one.
    pub upload_id: Option<runproof_store::UploadId>,
}

/// What an event keeps of a verified identity: its repository, run and workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailRun {
    /// The repository's id.
    pub repository_id: RepositoryId,
    /// The run's id.
    pub run_id: RunId,
    /// `workflow_ref`, when the identity has one.
    pub workflow: Option<String>,
}

impl TrailRun {
    fn of(identity: &RunIdentity) -> Self {
        Self {
            repository_id: identity.repository_id,
            run_id: identity.run_id,
            workflow: identity.workflow_ref.clone(),
        }
    }
}

impl Trail {
    /// Records that a token verified `identity`.
    pub(crate) fn verified(&mut self, identity: &RunIdentity) {
        self.run = Some(TrailRun::of(identity));
    }

    /// Notes what was stored (or found stored): the upload's id and `what` became of it,
    /// and its identity when it has one (a pending upload's is only claimed: kept out).
    pub fn stored(&mut self, what: &str, record: &runproof_store::UploadRecord) {
        self.detail = Some(format!("{what} {}", record.id.as_str()));
        self.upload_id = Some(record.id.clone());
        if record.status != runproof_store::UploadStatus::Pending {
            self.run = Some(TrailRun::of(&record.identity));
        }
    }

    /// Notes what of `error` an event keeps besides its code: the rule that refused.
    pub(crate) fn refused_by(&mut self, error: &ServiceError) {
        if let ServiceError::PolicyRule { rule, index, .. } = error {
            self.rule = Some(rule.clone().unwrap_or_else(|| format!("#{}", index + 1)));
        }
    }

    /// The event of `kind` this trail describes, with `outcome`, at the service's time.
    #[must_use]
    pub fn event(&self, service: &Service, kind: EventKind, outcome: EventOutcome) -> NewEvent {
        let mut event = NewEvent::new(service.clock.now(), kind, outcome);
        event.mode = self.mode.map(|m| m.as_str().to_owned());
        event.rule = self.rule.clone();
        event.detail = self.detail.clone();
        event.upload_id = self.upload_id.clone();
        if let Some(run) = &self.run {
            event.repository_id = Some(run.repository_id);
            event.run_id = Some(run.run_id);
            event.workflow.clone_from(&run.workflow);
        }
        event
    }
}

impl Service {
    /// Queues `event` for the event log. Never waits and never fails: when the queue is
    /// full the event is dropped and counted (`runproof_events_dropped_total`).
    pub fn record(&self, event: NewEvent) {
        self.events.push(event);
    }

    /// How many events this service dropped because its queue was full.
    #[must_use]
    pub fn events_dropped(&self) -> u64 {
        self.events.sink.dropped()
    }

    /// Events of the log, newest first (see [`Store::list_events`]).
    ///
    /// # Errors
    /// Storage.
    pub async fn events(
        &self,
        filter: &runproof_store::EventFilter,
        limit: u32,
        cursor: Option<runproof_store::EventCursor>,
    ) -> Result<(Vec<EventRecord>, Option<runproof_store::EventCursor>), ServiceError> {
        Ok(self.store.list_events(filter, limit, cursor).await?)
    }
}
