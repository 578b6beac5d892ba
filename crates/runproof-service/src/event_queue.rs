//! The event log's bounded side queue, below the service that holds it: a handle that
//! queues decisions without waiting ([`EventSink`]), dropping and counting them when full
//! (`runproof_events_dropped_total`), and the receiving end the writer takes once.
//! `events` starts the writer and records; this module knows no service.

use std::sync::Arc;

use runproof_store::NewEvent;
use tokio::sync::mpsc;

/// How many events the side queue holds before it drops.
pub const EVENT_QUEUE_CAPACITY: usize = 4096;

/// The most events written in one batch.
pub(crate) const MAX_BATCH: usize = 256;

/// How long events are kept: `[events]` of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLogConfig {
    /// Events older than this many days are purged.
    pub retention_days: u32,
    /// At most this many events are kept (the oldest go first).
    pub max_rows: u64,
}

impl Default for EventLogConfig {
    fn default() -> Self {
        Self {
            retention_days: 30,
            max_rows: 1_000_000,
        }
    }
}

/// A handle that queues events: cloned by whatever records them.
#[derive(Clone)]
pub(crate) struct EventSink {
    sender: mpsc::Sender<NewEvent>,
    /// Events dropped because the queue was full.
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl EventSink {
    /// How many events this handle's queue dropped.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues `event`; `false` (and counted) when the queue is full or closed.
    pub(crate) fn push(&self, event: NewEvent) -> bool {
        match self.sender.try_send(event) {
            Ok(()) => true,
            Err(_) => {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics::counter!("runproof_events_dropped_total").increment(1);
                false
            }
        }
    }
}

/// The side queue and its retention.
pub(crate) struct EventLog {
    pub(crate) sink: EventSink,
    receiver: std::sync::Mutex<Option<mpsc::Receiver<NewEvent>>>,
    pub(crate) config: EventLogConfig,
}

impl EventLog {
    pub(crate) fn new(config: EventLogConfig, capacity: usize) -> Self {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        Self {
            sink: EventSink {
                sender,
                dropped: Arc::default(),
            },
            receiver: std::sync::Mutex::new(Some(receiver)),
            config,
        }
    }

    /// Queues `event`; `false` (and counted) when the queue is full or closed.
    pub(crate) fn push(&self, event: NewEvent) -> bool {
        self.sink.push(event)
    }

    /// The queue's receiving end, once: the writer takes it.
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<NewEvent>> {
        match self.receiver.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runproof_core::UnixTime;
    use runproof_store::{EventKind, EventOutcome};

    fn event() -> NewEvent {
        NewEvent::new(UnixTime(1), EventKind::Upload, EventOutcome::Accepted)
    }

    #[test]
    fn rule_a_full_queue_drops_and_counts_without_waiting() {
        let log = EventLog::new(EventLogConfig::default(), 2);
        assert!(log.push(event()));
        assert!(log.push(event()));
        // Full: dropped at once (the caller never waits).
        assert!(!log.push(event()));
        assert_eq!(
            log.sink.dropped.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let mut receiver = log.take_receiver().unwrap();
        assert!(log.take_receiver().is_none(), "one writer");
        assert!(receiver.try_recv().is_ok());
        assert!(log.push(event()), "room again once drained");
    }
}
