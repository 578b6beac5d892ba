//! The commit pipeline: uploads waiting to be stored share one transaction and one
//! durable commit.
//!
//! ```text
//!  request ─┐                       ┌─ batch ─► Store::commit_uploads ─► COMMIT (one fsync)
//!  request ─┼─► bounded queue ─► writer ┤                                      │
//!  request ─┘   (full: Busy, 503)       └─ at most `writers` batches at once  ▼
//!      ▲                                                           each request's outcome
//!      └───────────────────────────── answered after the commit is durable ─┘
//! ```
//!
//! A request hands its whole write (the `jti` it spends, the upload row, its outbox rows,
//! the pending reservation it consumes, a small body) to [`CommitPipeline::commit`] and
//! waits. The writer takes everything waiting, up to [`PipelineSettings::max_batch`]
//! writes and [`PipelineSettings::max_batch_bytes`] of inline bodies, and stores it with
//! [`crate::Store::commit_uploads`]: one transaction, a few multi-row statements, one
//! commit. One write's conflict (a replayed `jti`, an idempotency hit) is that write's
//! outcome and never fails the others. While a batch commits, the next one gathers: the
//! busier the server, the larger the batches and the fewer the fsyncs per upload.
//!
//! Nothing is answered before its commit returned. The queue is bounded: when it is
//! full, [`CommitPipeline::commit`] fails at once with [`StoreError::Busy`] rather than
//! holding unbounded memory. Inline bodies in flight are bounded too:
//! [`CommitPipeline::reserve_inline`] grants room for a body before it is read, and a
//! body without room goes to the blob store instead.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::error::{StoreError, Unavailable};
use crate::store::Store;
use crate::write::{Committed, UploadWrite};

/// How the pipeline is sized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSettings {
    /// Writes that may wait for a batch; more are refused with [`StoreError::Busy`].
    pub queue: usize,
    /// The most writes in one batch.
    pub max_batch: usize,
    /// The most inline body bytes in one batch (a single larger body still goes alone).
    pub max_batch_bytes: usize,
    /// Batches committing at once: 1 for SQLite (one writer at a time anyway); more for
    /// PostgreSQL, whose server overlaps their commits.
    pub writers: usize,
    /// Inline body bytes that may be in flight (being received, queued or committing).
    pub inline_budget: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            queue: 1024,
            max_batch: 256,
            max_batch_bytes: 4 << 20,
            writers: 1,
            inline_budget: 16 << 20,
        }
    }
}

/// What the writer stores batches with: a [`Store`], or a stand-in in tests.
#[async_trait]
trait Batches: Send + Sync + 'static {
    async fn commit(
        &self,
        writes: &[UploadWrite],
    ) -> Result<Vec<Result<Committed, StoreError>>, StoreError>;
}

struct ToStore(Arc<dyn Store>);

#[async_trait]
impl Batches for ToStore {
    async fn commit(
        &self,
        writes: &[UploadWrite],
    ) -> Result<Vec<Result<Committed, StoreError>>, StoreError> {
        self.0.commit_uploads(writes).await
    }
}

struct Job {
    write: UploadWrite,
    reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// A handle on the commit pipeline; cloning shares it. The writer stops once every
/// handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct CommitPipeline {
    queue: mpsc::Sender<Job>,
    inline: Arc<Semaphore>,
    inline_budget: usize,
}

impl std::fmt::Debug for CommitPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitPipeline")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
            .field("inline_budget", &self.inline_budget)
            .finish_non_exhaustive()
    }
}

/// Room for an inline body in flight; given back when dropped.
#[derive(Debug)]
pub struct InlinePermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl CommitPipeline {
    /// Starts the writer on the current Tokio runtime.
    #[must_use]
    pub fn start(store: Arc<dyn Store>, settings: PipelineSettings) -> Self {
        Self::start_with(Arc::new(ToStore(store)), settings)
    }

    fn start_with(store: Arc<dyn Batches>, settings: PipelineSettings) -> Self {
        let (queue, jobs) = mpsc::channel(settings.queue.max(1));
        let inline_budget = settings.inline_budget.min(Semaphore::MAX_PERMITS);
        tokio::spawn(run_writer(store, jobs, settings));
        Self {
            queue,
            inline: Arc::new(Semaphore::new(inline_budget)),
            inline_budget,
        }
    }

    /// Room for an inline body of `len` bytes, if the budget has it now.
    #[must_use]
    pub fn reserve_inline(&self, len: usize) -> Option<InlinePermit> {
        let permits = u32::try_from(len).ok()?;
        Arc::clone(&self.inline)
            .try_acquire_many_owned(permits)
            .ok()
            .map(InlinePermit)
    }

    /// Stores `write` in the next batch and returns its outcome once the batch's
    /// commit returned.
    ///
    /// # Errors
    /// [`StoreError::Busy`] at once when the queue is full (nothing is stored), the
    /// write's own error ([`StoreError::Invalid`] when a value cannot be stored or an id
    /// exists), or the batch's ([`StoreError::CommitUnknown`] when the commit's answer
    /// was lost: the write may be stored; [`StoreError`] when the database failed).
    pub async fn commit(&self, write: UploadWrite) -> Result<Committed, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .try_send(Job { write, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => {
                    StoreError::Unavailable(Unavailable::PipelineStopped)
                }
            })?;
        metrics::gauge!("runproof_commit_queue_depth")
            .set((self.queue.max_capacity() - self.queue.capacity()) as f64);
        outcome
            .await
            .map_err(|_| StoreError::Unavailable(Unavailable::PipelineDropped))?
    }
}

async fn run_writer(
    store: Arc<dyn Batches>,
    mut jobs: mpsc::Receiver<Job>,
    settings: PipelineSettings,
) {
    let writers = Arc::new(Semaphore::new(settings.writers.max(1)));
    let max_batch = settings.max_batch.max(1);
    // A write that did not fit the previous batch opens the next.
    let mut carried: Option<Job> = None;
    loop {
        let Ok(slot) = Arc::clone(&writers).acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let mut bytes = first.write.inline_len();
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => {
                    let len = job.write.inline_len();
                    if bytes.saturating_add(len) > settings.max_batch_bytes {
                        carried = Some(job);
                        break;
                    }
                    bytes += len;
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            commit_batch(store.as_ref(), batch).await;
            drop(slot);
        });
    }
    // Wait for batches in flight before the writer is gone.
    let _ = writers.acquire_many(settings.writers.max(1) as u32).await;
}

async fn commit_batch(store: &dyn Batches, batch: Vec<Job>) {
    let (writes, replies): (Vec<UploadWrite>, Vec<_>) =
        batch.into_iter().map(|job| (job.write, job.reply)).unzip();
    metrics::histogram!("runproof_commit_batch_size").record(writes.len() as f64);
    let outcomes = store.commit(&writes).await;
    match outcomes {
        Ok(outcomes) if outcomes.len() == replies.len() => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A requester gone (its client disconnected) needs no answer: its write
                // is stored all the same.
                let _ = reply.send(outcome);
            }
        }
        Ok(outcomes) => {
            tracing::error!(
                writes = replies.len(),
                outcomes = outcomes.len(),
                "a batch commit answered for a different number of writes"
            );
            for reply in replies {
                let _ = reply.send(Err(StoreError::CommitUnknown(
                    Unavailable::UnmatchedOutcomes,
                )));
            }
        }
        Err(e) => {
            let batch = e.into_batch();
            for reply in replies {
                let _ = reply.send(Err(batch.for_each_write()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::testsuite::{new_upload, unique_repository_id};

    /// Commits nothing until let go; records each batch's size; fails whole batches
    /// when told to.
    struct Gate {
        /// Batches that reached the gate.
        entered: std::sync::atomic::AtomicUsize,
        open: tokio::sync::Semaphore,
        sizes: Mutex<Vec<usize>>,
        fail: bool,
    }

    #[async_trait]
    impl Batches for Gate {
        async fn commit(
            &self,
            writes: &[UploadWrite],
        ) -> Result<Vec<Result<Committed, StoreError>>, StoreError> {
            self.entered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.open.acquire().await.unwrap().forget();
            self.sizes.lock().unwrap().push(writes.len());
            if self.fail {
                return Err(StoreError::CommitUnknown(
                    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "connection lost")
                        .into(),
                ));
            }
            Ok(writes.iter().map(|_| Ok(Committed::Replayed)).collect())
        }
    }

    fn gate(fail: bool) -> Arc<Gate> {
        Arc::new(Gate {
            entered: std::sync::atomic::AtomicUsize::new(0),
            open: tokio::sync::Semaphore::new(0),
            sizes: Mutex::new(Vec::new()),
            fail,
        })
    }

    fn write() -> UploadWrite {
        UploadWrite {
            upload: new_upload(unique_repository_id()),
            jti: None,
            body: None,
        }
    }

    fn settings(queue: usize) -> PipelineSettings {
        PipelineSettings {
            queue,
            ..PipelineSettings::default()
        }
    }

    /// Waits (up to 5 s) until `pipeline`'s queue holds `queued` writes.
    async fn until_queued(pipeline: &CommitPipeline, queued: usize) {
        for _ in 0..500 {
            if pipeline.queue.max_capacity() - pipeline.queue.capacity() == queued {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the queue never held {queued} writes");
    }

    #[tokio::test]
    async fn rule_a_full_queue_refuses_at_once_and_waiting_writes_share_a_batch() {
        let gate = gate(false);
        let pipeline =
            CommitPipeline::start_with(Arc::clone(&gate) as Arc<dyn Batches>, settings(2));
        // The first write is taken into a batch that waits at the gate.
        let first = tokio::spawn({
            let p = pipeline.clone();
            async move { p.commit(write()).await }
        });
        for _ in 0..500 {
            if gate.entered.load(std::sync::atomic::Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            gate.entered.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the first batch reached the gate"
        );
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let p = pipeline.clone();
                tokio::spawn(async move { p.commit(write()).await })
            })
            .collect();
        until_queued(&pipeline, 2).await;
        let refused = tokio::time::timeout(Duration::from_secs(5), pipeline.commit(write()))
            .await
            .expect("rule: a full queue answers at once");
        assert!(matches!(refused, Err(StoreError::Busy)), "{refused:?}");

        gate.open.add_permits(2);
        assert!(matches!(first.await.unwrap(), Ok(Committed::Replayed)));
        for w in waiting {
            assert!(matches!(w.await.unwrap(), Ok(Committed::Replayed)));
        }
        assert_eq!(
            *gate.sizes.lock().unwrap(),
            vec![1, 2],
            "the writes that waited went in one batch"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_writes_with_its_error() {
        let gate = gate(true);
        gate.open.add_permits(10);
        let pipeline =
            CommitPipeline::start_with(Arc::clone(&gate) as Arc<dyn Batches>, settings(8));
        let outcomes: Vec<_> = (0..3)
            .map(|_| {
                let p = pipeline.clone();
                tokio::spawn(async move { p.commit(write()).await })
            })
            .collect();
        for outcome in outcomes {
            assert!(matches!(
                outcome.await.unwrap(),
                Err(StoreError::CommitUnknown(_))
            ));
        }
    }

    #[tokio::test]
    async fn inline_room_is_bounded_and_given_back() {
        let pipeline = CommitPipeline::start_with(
            gate(false) as Arc<dyn Batches>,
            PipelineSettings {
                inline_budget: 100,
                ..PipelineSettings::default()
            },
        );
        let a = pipeline.reserve_inline(60).expect("room for 60");
        assert!(pipeline.reserve_inline(60).is_none(), "only 40 left");
        let b = pipeline.reserve_inline(40).expect("room for 40");
        drop(a);
        assert!(pipeline.reserve_inline(60).is_some(), "given back on drop");
        drop(b);
    }
}
