//! Work that runs beside the requests: purges of spent `jti`s, sessions and webhook
//! delivery ids, the webhook mode's sweep, the event log's writer and retention, the collector of unreferenced blobs, the push
//! worker, and, when asked for, the refresh of the issuers' keys. Every background task
//! of a process starts here.

use std::sync::Arc;
use std::time::Duration;

use crate::collector::{CollectorConfig, collect_unreferenced_blobs};
use crate::push;
use crate::service::Service;
use crate::webhook_mode;

/// Housekeeping ticks between two passes of the blob collector: an hour.
const COLLECT_EVERY_TICKS: u64 = 12;

/// The background tasks of one process; they stop when this is dropped.
#[derive(Debug)]
pub struct Background {
    housekeeping: tokio::task::JoinHandle<()>,
    /// Housekeeping passes completed.
    passes: tokio::sync::watch::Receiver<u64>,
    pushes: Option<tokio::task::JoinHandle<()>>,
    keys: Option<tokio::task::JoinHandle<()>>,
    /// The event log's writer.
    events: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Spawns the housekeeping task (every five minutes: purges, the webhook-mode sweep;
    /// the collector at start, then hourly, a pass that stopped at its bound going on at
    /// the next tick) and, when pushes are configured, the push worker.
    #[must_use]
    pub fn start(service: &Arc<Service>) -> Self {
        let (passed, passes) = tokio::sync::watch::channel(0);
        Self {
            housekeeping: spawn_housekeeping(Arc::clone(service), passed),
            passes,
            pushes: service.push.clone().and_then(|config| {
                let outbox = push::Outbox {
                    store: Arc::clone(&service.store),
                    clock: Arc::clone(&service.clock),
                    push_wake: Arc::clone(&service.push_wake),
                    events: service.events.sink.clone(),
                };
                push::spawn_worker(Arc::new(outbox), config)
            }),
            keys: None,
            events: crate::events::spawn_writer(service),
        }
    }

    /// Resolves once the housekeeping has completed `n` passes (the first runs at start:
    /// it settles what a restart left pending and collects unreferenced blobs).
    pub async fn passes_done(&self, n: u64) {
        let mut passes = self.passes.clone();
        // An error: the task ended, and no pass will come.
        let _ = passes.wait_for(|done| *done >= n).await;
    }

    /// Also refreshes the issuers' keys in the background, at once and then at the key
    /// cache's interval, so that a token signed with a new key finds it cached.
    #[must_use]
    pub fn refreshing_keys(mut self, service: &Service) -> Self {
        if self.keys.is_none() {
            self.keys = Some(service.keys.spawn_refresher());
        }
        self
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.housekeeping.abort();
        for task in [&self.pushes, &self.keys, &self.events]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

fn spawn_housekeeping(
    service: Arc<Service>,
    passed: tokio::sync::watch::Sender<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        let collector = CollectorConfig {
            grace: service.settings.orphan_blob_grace,
            ..CollectorConfig::default()
        };
        let mut collect_resume: Option<runproof_store::UploadId> = None;
        let mut ticks: u64 = 0;
        loop {
            tick.tick().await;
            let now = service.clock.now();
            match service.store.purge_expired_jtis(now).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "purged expired jtis"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "jti purge failed"),
            }
            if let Err(e) = service.store.purge_sessions(now.minus(3600)).await {
                tracing::warn!(error = %e, "session purge failed");
            }
            if let Err(e) = service.store.purge_console_sessions(now).await {
                tracing::warn!(error = %e, "console session purge failed");
            }
            // GitHub redelivers within days; a week of webhook delivery ids covers it.
            if let Err(e) = service
                .store
                .purge_webhook_deliveries(now.minus(7 * 24 * 3600))
                .await
            {
                tracing::warn!(error = %e, "webhook delivery purge failed");
            }
            crate::events::purge(&service).await;
            // Webhook mode: settle, expire, delete rejected and expired blobs.
            webhook_mode::sweep(&service).await;
            if ticks.is_multiple_of(COLLECT_EVERY_TICKS) || collect_resume.is_some() {
                collect_resume =
                    collect_unreferenced_blobs(&service, &collector, collect_resume.as_ref())
                        .await
                        .resume_after;
            }
            ticks = ticks.wrapping_add(1);
            passed.send_modify(|done| *done = done.wrapping_add(1));
        }
    })
}
