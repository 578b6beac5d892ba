//! The `webhook` mode: uploads without credentials, held `pending` until GitHub vouches
//! for the run they claim.
//!
//! An upload with no `Authorization` but `X-Runproof-Run` and `X-Runproof-Sha` is admitted
//! after the quotas (before a byte of the body is read), stored `pending` with an
//! unverified identity, and then settled by whichever comes first:
//! - a signed `workflow_run` webhook for the same repository id, run id and attempt
//!   (stored by the webhook receiver; runs seen recently are kept, so the order of upload
//!   and webhook does not matter);
//! - active confirmation: with the App's credentials, GitHub's REST API is asked for the
//!   run with an installation token.
//!
//! The decision itself is [`runproof_core::correlation::decide`]; then the repository's
//! allow-lists, installation binding and, when configured, the workflow check apply.
//! GitHub being unavailable never decides anything: the upload stays pending and is looked
//! at again by the sweeper, which also expires uploads after `pending_ttl` and deletes the
//! blobs of rejected and expired uploads. Everything it needs is in the database, so it is
//! restart-safe.

mod admission;
mod settle;
mod sweep;

pub use crate::issuers::UNVERIFIED_ISSUER;
pub use crate::webhook_state::{WebhookMode, WebhookModeConfig, pending_identity};
pub use admission::{PendingAdmission, Reservation, admit};
pub use settle::{after_insert, after_webhook_delivery};
pub use sweep::{SweepReport, sweep};
