//! A repository's trust rules, set through the API: stored whole, one row per repository.
//!
//! The store keeps them as a JSON array of [`TrustRule`]s and hands them back typed. It
//! checks nothing about them: the service validates a layer (its bounds and each rule's
//! form) before storing it. A stored value that no longer decodes (say, a field an older
//! release does not know) is reported as [`crate::StoreError::Corrupt`], so that a reader
//! refuses rather than guesses.

use runproof_core::rules::TrustRule;
use runproof_core::{RepositoryId, UnixTime};

/// One repository's rules as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryRules {
    /// The repository they constrain.
    pub repository_id: RepositoryId,
    /// Its layer of rules, in order (possibly empty: no constraint).
    pub rules: Vec<TrustRule>,
    /// When they were last written.
    pub updated_at: UnixTime,
}
