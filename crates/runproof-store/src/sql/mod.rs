//! SQL written once for both backends.
//!
//! Every statement of the store is one text with `$N` placeholders: PostgreSQL binds
//! them natively and sqlx binds them by number on SQLite too. Values are bound as
//! [`exec::Value`]s, decoded rows are the backend-neutral `FromRow` types of [`row`], and
//! a statement runs on whichever backend an [`exec::Exec`] names. What truly differs
//! between the two databases (how a writing transaction begins, row locks, lists of ids
//! bound as one value, notifications, error codes) lives in [`dialect::Dialect`] and
//! nowhere else.
//!
//! The dispatch is a `match` on an enum, not a trait object or generic code: one branch
//! per backend, each calling sqlx's native types, so rows are decoded without the
//! conversions of `sqlx::any` and uuid or integer columns keep their native types.
//!
//! The modules, lowest first (each uses only those above it): [`dialect`]; [`exec`]
//! (statements, pools, transactions, errors); [`notify`] (the outbox channel); [`row`]
//! (columns and rows); [`idempotency`], [`reservation`], [`github`], [`rules`], [`events`],
//! [`console`] and [`sequence`] (statements that [`store`] and [`commit`] share or delegate to);
//! [`commit`] (a batch of uploads); [`store`] ([`SqlStore`], the [`Store`](crate::Store)
//! of both backends).

mod commit;
mod console;
mod dialect;
mod events;
pub(crate) mod exec;
mod github;
mod idempotency;
pub(crate) mod notify;
mod reservation;
mod row;
mod rules;
mod sequence;
pub(crate) mod store;

pub use notify::OUTBOX_CHANNEL;
pub use store::SqlStore;
