//! GitHub App state the store keeps, learnt from signed webhook deliveries:
//! installations and the repositories they list, delivery ids (so that a redelivery has
//! no second effect), and workflow runs (for `webhook` mode).
//!
//! Decisions use ids; logins and full names are kept for display only.

use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId, UnixTime};

/// Which repositories of its account an installation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepositorySelection {
    /// Every repository of the account, present and future.
    All,
    /// Only the repositories listed for the installation.
    Selected,
}

impl RepositorySelection {
    /// The selection as GitHub sends it and the store keeps it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Selected => "selected",
        }
    }

    /// Parses GitHub's `repository_selection`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "selected" => Some(Self::Selected),
            _ => None,
        }
    }
}

/// An installation of the App on an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// The installation id.
    pub id: InstallationId,
    /// The id of the account (user or organization) it is installed on.
    pub account_id: OwnerId,
    /// The account's login, for display.
    pub account_login: String,
    /// Which repositories it covers.
    pub repository_selection: RepositorySelection,
    /// Whether it is suspended (the App may not act for it).
    pub suspended: bool,
}

/// A repository listed for an installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRepository {
    /// The repository id.
    pub id: RepositoryId,
    /// `owner/name`, for display.
    pub full_name: String,
}

/// What the database knows about a repository's installation (from webhooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryBinding {
    /// The installation listing the repository.
    pub installation_id: InstallationId,
    /// The account the installation is on.
    pub account_id: OwnerId,
    /// The installation is suspended.
    pub suspended: bool,
    /// The installation was deleted.
    pub deleted: bool,
    /// The repository was removed from the installation.
    pub removed: bool,
}

impl RepositoryBinding {
    /// Whether the binding vouches for the repository now: listed, not removed, and its
    /// installation neither deleted nor suspended.
    #[must_use]
    pub const fn is_active(&self) -> bool {
        !self.suspended && !self.deleted && !self.removed
    }
}

/// A workflow run attempt as the latest `workflow_run` webhook described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRunRecord {
    /// The id of the repository the run belongs to (the base repository).
    pub repository_id: RepositoryId,
    /// The run id.
    pub run_id: RunId,
    /// The attempt (1 for the first).
    pub run_attempt: u32,
    /// The commit the run is for.
    pub head_sha: String,
    /// The repository of the head commit, which differs from `repository_id` for forks.
    pub head_repository_id: Option<RepositoryId>,
    /// The event that triggered the run (`push`, `pull_request`, …).
    pub event: String,
    /// GitHub's status (`requested`, `queued`, `in_progress`, `completed`, …).
    pub status: String,
    /// GitHub's conclusion once completed (`success`, `failure`, …).
    pub conclusion: Option<String>,
    /// The workflow file's path (`.github/workflows/ci.yml`).
    pub path: String,
    /// The installation the webhook was sent for, if it named one.
    pub installation_id: Option<InstallationId>,
    /// The repository's `owner/name`, for display.
    pub repository_full_name: String,
    /// The id of the repository's owner.
    pub owner_id: OwnerId,
    /// When the attempt started, per GitHub.
    pub run_started_at: Option<UnixTime>,
    /// When GitHub last updated the run; a later one replaces an earlier one.
    pub updated_at: UnixTime,
    /// When the run completed, if it has (derived from the payload by the caller).
    pub completed_at: Option<UnixTime>,
    /// When runproof received the webhook that described it so.
    pub received_at: UnixTime,
}

/// One effect of a webhook delivery, applied in the delivery's transaction.
// A delivery has a handful of effects, built once: unboxed variants keep construction
// and matching plain at the cost of a few hundred bytes each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEffect {
    /// Inserts or updates an installation. A deleted installation stays deleted: GitHub
    /// never reuses installation ids, so a late or replayed `created` cannot revive it.
    UpsertInstallation(Installation),
    /// Suspends or unsuspends a known installation (no effect on an unknown one).
    SetSuspended {
        /// The installation.
        installation_id: InstallationId,
        /// Whether it is now suspended.
        suspended: bool,
    },
    /// Marks an installation deleted. The row stays as a tombstone.
    DeleteInstallation(InstallationId),
    /// Lists repositories for an installation (inserting or updating); clears `removed`.
    AddRepositories {
        /// The installation.
        installation_id: InstallationId,
        /// The repositories added.
        repositories: Vec<InstalledRepository>,
    },
    /// Marks repositories removed from an installation. Rows stay as tombstones, and a
    /// tombstone is written even for a repository that was never listed.
    RemoveRepositories {
        /// The installation.
        installation_id: InstallationId,
        /// The repositories removed.
        repository_ids: Vec<RepositoryId>,
    },
    /// Records a workflow run attempt, keyed by repository id, run id and attempt.
    /// An existing record is replaced only by a later `updated_at` (or, at the same
    /// `updated_at`, by a later status), and a `completed` record is never replaced by
    /// one that is not completed.
    UpsertWorkflowRun(WorkflowRunRecord),
}

/// A webhook delivery, identified by GitHub's `X-GitHub-Delivery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `X-GitHub-Delivery` header: the same for a redelivery. At most
    /// [`MAX_DELIVERY_ID_LEN`] bytes, not empty.
    pub id: String,
    /// The `X-GitHub-Event` header.
    pub event: String,
    /// When runproof received it; also the `updated_at` of the rows its effects touch.
    pub received_at: UnixTime,
}

/// The longest delivery id the store accepts (GitHub's are 36-character UUIDs).
pub const MAX_DELIVERY_ID_LEN: usize = 256;

impl Delivery {
    /// Checks the delivery id before it is stored.
    ///
    /// # Errors
    /// [`crate::StoreError::Invalid`] when the id is empty or too long.
    pub(crate) fn validate(&self) -> Result<(), crate::StoreError> {
        if self.id.is_empty() || self.id.len() > MAX_DELIVERY_ID_LEN {
            return Err(crate::StoreError::Invalid(
                "delivery id must be 1 to 256 bytes".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_selection_round_trips() {
        for s in [RepositorySelection::All, RepositorySelection::Selected] {
            assert_eq!(RepositorySelection::parse(s.as_str()), Some(s));
        }
        assert_eq!(RepositorySelection::parse("ALL"), None);
        assert_eq!(RepositorySelection::parse(""), None);
    }

    #[test]
    fn delivery_ids_are_bounded() {
        let mut d = Delivery {
            id: String::new(),
            event: "ping".into(),
            received_at: UnixTime(1),
        };
        assert!(d.validate().is_err());
        d.id = "x".repeat(MAX_DELIVERY_ID_LEN + 1);
        assert!(d.validate().is_err());
        d.id = "72d3162e-cc78-11e3-81ab-4c9367dc0958".into();
        assert!(d.validate().is_ok());
    }
}
