//! Work that runs beside the requests: purges of spent `jti`s, sessions and webhook
//! delivery ids, the webhook mode's sweep, the collector of unreferenced blobs, and the
//! push worker.

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
    pushes: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Spawns the housekeeping task (every five minutes: purges, the webhook-mode sweep;
    /// the collector at start, then hourly, a pass that stopped at its bound going on at
    /// the next tick) and, when pushes are configured, the push worker.
    #[must_use]
    pub fn start(service: &Arc<Service>) -> Self {
        Self {
            housekeeping: spawn_housekeeping(Arc::clone(service)),
            pushes: service.push.clone().and_then(|config| {
                let outbox = push::Outbox {
                    store: Arc::clone(&service.store),
                    clock: Arc::clone(&service.clock),
                    push_wake: Arc::clone(&service.push_wake),
                };
                push::spawn_worker(Arc::new(outbox), config)
            }),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.housekeeping.abort();
        if let Some(pushes) = &self.pushes {
            pushes.abort();
        }
    }
}

fn spawn_housekeeping(service: Arc<Service>) -> tokio::task::JoinHandle<()> {
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
            // GitHub redelivers within days; a week of webhook delivery ids covers it.
            if let Err(e) = service
                .store
                .purge_deliveries(now.minus(7 * 24 * 3600))
                .await
            {
                tracing::warn!(error = %e, "webhook delivery purge failed");
            }
            // Webhook mode: settle, expire, delete rejected and expired blobs.
            webhook_mode::sweep(&service).await;
            if ticks.is_multiple_of(COLLECT_EVERY_TICKS) || collect_resume.is_some() {
                collect_resume =
                    collect_unreferenced_blobs(&service, &collector, collect_resume.as_ref())
                        .await
                        .resume_after;
            }
            ticks = ticks.wrapping_add(1);
        }
    })
}
