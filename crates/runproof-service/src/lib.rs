//! runproof's decisions and their effects.
//!
//! This crate decides what happens to an upload once its credentials are read: it
//! verifies OIDC tokens against replay ([`oidc`]), exchanges them for sessions
//! ([`sessions`]), checks a run's `GITHUB_TOKEN` ([`github_token`]), binds a run to the
//! App's installation ([`Binding`]), holds each run to the App's and the repository's
//! trust rules (the repository's set through the API: [`repository_rules`]; explained
//! without side effects: [`explain`]), admits and
//! settles uploads that wait for a signed `workflow_run` webhook ([`webhook_mode`]),
//! commits uploads through the store's commit pipeline ([`Commits`]), pushes signed
//! events to the App from the outbox ([`push`]), and keeps things tidy in the background
//! ([`Background`]: purges, the pending-upload sweep, the collector of unreferenced
//! blobs).
//!
//! What it does not do: HTTP. It takes plain values (tokens, header values already read,
//! byte counts) and returns typed results and [`ServiceError`]s; the server crate maps
//! those to routes, status codes and `application/problem+json`. It does not parse
//! configuration either: the binary builds a [`Service`] with [`Service::builder`].
//!
//! Dependency direction: `runproof-core` (pure rules) ← `runproof-github`,
//! `runproof-store` (adapters) ← this crate ← `runproof-server` (HTTP) ← `runproof`.
#![forbid(unsafe_code)]

mod background;
pub mod binding;
mod clock;
pub mod collector;
mod commits;
mod error;
mod event_queue;
pub mod events;
pub mod explain;
pub mod github_token;
pub mod github_webhooks;
mod issuers;
pub mod oidc;
pub mod push;
pub mod rate;
mod replay;
mod repository_file;
mod repository_layer;
pub mod repository_rules;
mod service;
pub mod sessions;
mod settings;
mod trust;
pub mod uploads;
pub mod webhook_mode;
mod webhook_state;
mod workflow_check;
mod workflow_checks;

pub use background::Background;
pub use binding::Binding;
pub use clock::{Clock, SystemClock};
pub use collector::{
    CollectReport, CollectorConfig, DEFAULT_MAX_BLOBS_PER_RUN, DEFAULT_ORPHAN_BLOB_GRACE,
    collect_unreferenced_blobs,
};
pub use commits::{Commits, DEFAULT_INLINE_MAX_BYTES, MAX_INLINE_MAX_BYTES};
pub use error::ServiceError;
pub use events::{EventLogConfig, Trail, TrailRun};
pub use push::PushConfig;
pub use service::{ClaimedRun, Service, ServiceBuilder};
pub use settings::{ServiceSettings, SessionConfig};
pub use webhook_mode::{
    SweepReport, UNVERIFIED_ISSUER, WebhookMode, WebhookModeConfig, pending_identity, sweep,
};
