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
    /// The time, by GitHub's clock, of the event this state comes from (in a delivery: the
    /// payload's own time; read back: the time of the state kept). `None` when unknown.
    /// Deliveries are applied in this order, whatever order they arrive in.
    pub as_of: Option<UnixTime>,
}

/// An installation as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownInstallation {
    /// The installation's state (the stricter one, when [`Self::unsettled`]).
    pub installation: Installation,
    /// It was deleted (for good: GitHub never reuses installation ids).
    pub deleted: bool,
    /// A delivery relaxed the state at the same time as the one kept (or with no time), so
    /// their order is unknown: the stricter state is kept, and neither it nor the
    /// relaxation may be trusted without asking GitHub.
    pub unsettled: bool,
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
    /// What makes it inactive (removed, or suspended) is unsettled: a later delivery may
    /// have relaxed it, in an order the payloads' times cannot tell (see
    /// [`KnownInstallation::unsettled`]). Never set for a deleted installation.
    pub unsettled: bool,
}

impl RepositoryBinding {
    /// Whether the binding vouches for the repository now: listed, not removed, and its
    /// installation neither deleted nor suspended.
    #[must_use]
    pub const fn is_active(&self) -> bool {
        !self.suspended && !self.deleted && !self.removed
    }

    /// Whether the binding refuses the repository for sure: inactive, and not unsettled.
    /// A binding neither active nor refused must be confirmed with GitHub.
    #[must_use]
    pub const fn is_refused(&self) -> bool {
        !self.is_active() && !self.unsettled
    }
}

/// Access state that deliveries change, kept with the time (GitHub's clock) of the event
/// it comes from.
///
/// Deliveries arrive in any order; each carries the time of its event. A later time wins.
/// At the same time (GitHub's times have one-second resolution, and some events carry the
/// installation's unchanged `updated_at`), or when a delivery has no time, the order is
/// unknown: a stricter (or the same) state is applied at once and settled (suspending or
/// removing access never waits), while a relaxation leaves the stricter state in place,
/// marked unsettled, for readers to confirm with GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ordered<S> {
    pub(crate) state: S,
    /// Unix seconds; 0 when unknown.
    pub(crate) as_of: i64,
    pub(crate) unsettled: bool,
}

/// A state whose strictness is compared field by field.
pub(crate) trait Access: Copy + Eq {
    /// The stricter of `self` and `other` in every field.
    #[must_use]
    fn strictest(self, other: Self) -> Self;
}

/// An installation's access: suspended, and limited to selected repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InstallationAccess {
    pub(crate) suspended: bool,
    pub(crate) selection: RepositorySelection,
}

impl InstallationAccess {
    /// The access state an installation describes.
    pub(crate) const fn of(installation: &Installation) -> Self {
        Self {
            suspended: installation.suspended,
            selection: installation.repository_selection,
        }
    }
}

impl Access for InstallationAccess {
    fn strictest(self, other: Self) -> Self {
        let selected = RepositorySelection::Selected;
        Self {
            suspended: self.suspended || other.suspended,
            selection: if self.selection == selected || other.selection == selected {
                selected
            } else {
                RepositorySelection::All
            },
        }
    }
}

/// A listed repository's access: removed from its installation or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Removed(pub(crate) bool);

impl Access for Removed {
    fn strictest(self, other: Self) -> Self {
        Self(self.0 || other.0)
    }
}

impl<S: Access> Ordered<S> {
    /// What is kept after a delivery describing `incoming` as of `at` meets this state.
    pub(crate) fn merge(self, incoming: S, at: Option<UnixTime>) -> Self {
        match at.map(|t| t.0) {
            Some(t) if t > self.as_of => Self {
                state: incoming,
                as_of: t,
                unsettled: false,
            },
            Some(t) if t < self.as_of => self,
            _ => {
                let strict = self.state.strictest(incoming);
                if strict == self.state && incoming != strict {
                    // Only relaxes: which came last is unknown.
                    Self {
                        unsettled: true,
                        ..self
                    }
                } else {
                    // Tightens, or repeats the kept state: a restriction is never held back
                    // (not even by a lookup cached while the state was unsettled).
                    Self {
                        state: strict,
                        as_of: self.as_of,
                        unsettled: false,
                    }
                }
            }
        }
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
    /// Inserts or updates an installation. Its access state (suspended, selection) is
    /// ordered by `as_of` (see [`Installation::as_of`]): an older one changes nothing, and
    /// one at the same time may only tighten it or mark it unsettled. A deleted
    /// installation stays deleted: GitHub never reuses installation ids, so a late or
    /// replayed `created` cannot revive it.
    UpsertInstallation(Installation),
    /// Marks an installation deleted. The row stays as a tombstone.
    DeleteInstallation(InstallationId),
    /// Lists repositories for an installation (inserting or updating), clearing `removed`
    /// unless a removal of a later time (or of the same time: then unsettled) is known.
    AddRepositories {
        /// The installation.
        installation_id: InstallationId,
        /// The repositories added.
        repositories: Vec<InstalledRepository>,
        /// The event's time by GitHub's clock; `None` when the payload carries none.
        as_of: Option<UnixTime>,
    },
    /// Marks repositories removed from an installation, unless an addition of a later time
    /// is known. Rows stay as tombstones, and a tombstone is written even for a repository
    /// that was never listed.
    RemoveRepositories {
        /// The installation.
        installation_id: InstallationId,
        /// The repositories removed.
        repository_ids: Vec<RepositoryId>,
        /// The event's time by GitHub's clock; `None` when the payload carries none.
        as_of: Option<UnixTime>,
    },
    /// Records a workflow run attempt, keyed by repository id, run id and attempt.
    /// An existing record is replaced only by a later `updated_at` (or, at the same
    /// `updated_at`, by a later status), and a `completed` record is never replaced by
    /// one that is not completed.
    UpsertWorkflowRun(WorkflowRunRecord),
}

/// A webhook delivery, identified by GitHub's `X-GitHub-Delivery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The `X-GitHub-Delivery` header: the same for a redelivery. At most
    /// [`MAX_WEBHOOK_DELIVERY_ID_LEN`] bytes, not empty.
    pub id: String,
    /// The `X-GitHub-Event` header.
    pub event: String,
    /// When runproof received it; also the `updated_at` of the rows its effects touch.
    pub received_at: UnixTime,
}

/// The longest webhook delivery id the store accepts (GitHub's are 36-character UUIDs).
pub const MAX_WEBHOOK_DELIVERY_ID_LEN: usize = 256;

impl WebhookDelivery {
    /// Checks the webhook delivery id before it is stored.
    ///
    /// # Errors
    /// [`crate::error::StoreError::Invalid`] when the id is empty or too long.
    pub(crate) fn validate(&self) -> Result<(), crate::error::StoreError> {
        if self.id.is_empty() || self.id.len() > MAX_WEBHOOK_DELIVERY_ID_LEN {
            return Err(crate::error::StoreError::Invalid(
                crate::error::Invalid::WebhookDeliveryId { len: self.id.len() },
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: i64) -> Option<UnixTime> {
        Some(UnixTime(t))
    }

    fn kept<S>(state: S, as_of: i64, unsettled: bool) -> Ordered<S> {
        Ordered {
            state,
            as_of,
            unsettled,
        }
    }

    #[test]
    fn rule_later_events_win_and_ties_never_relax() {
        let open = InstallationAccess {
            suspended: false,
            selection: RepositorySelection::All,
        };
        let suspended = InstallationAccess {
            suspended: true,
            ..open
        };
        let s = kept(suspended, 100, false);
        // Later: applied, whichever way it goes.
        assert_eq!(s.merge(open, at(101)), kept(open, 101, false));
        // Earlier: ignored, whichever way it goes.
        assert_eq!(s.merge(open, at(99)), s);
        assert_eq!(kept(open, 100, false).merge(suspended, at(99)).state, open);
        // Same time or no time: a relaxation is not applied, and unsettles.
        assert_eq!(s.merge(open, at(100)), kept(suspended, 100, true));
        assert_eq!(s.merge(open, None), kept(suspended, 100, true));
        // Same time or no time: a tightening is applied at once, settled.
        let o = kept(open, 100, true);
        assert_eq!(o.merge(suspended, at(100)), kept(suspended, 100, false));
        assert_eq!(o.merge(suspended, None), kept(suspended, 100, false));
        // Nothing new: nothing changes, except that a repeated restriction settles.
        assert_eq!(s.merge(suspended, at(100)), s);
        let unsettled = kept(suspended, 100, true);
        assert_eq!(unsettled.merge(suspended, at(100)), s);
        assert_eq!(unsettled.merge(open, at(100)), unsettled);
        // Mixed at one time: the stricter of each field, settled.
        let selected_open = InstallationAccess {
            suspended: false,
            selection: RepositorySelection::Selected,
        };
        let all_suspended = InstallationAccess {
            suspended: true,
            selection: RepositorySelection::All,
        };
        let got = kept(selected_open, 5, false).merge(all_suspended, at(5));
        assert_eq!(
            got.state,
            InstallationAccess {
                suspended: true,
                selection: RepositorySelection::Selected
            }
        );
        assert!(!got.unsettled);
        // Repositories: the same rules.
        let removed = kept(Removed(true), 7, false);
        assert_eq!(
            removed.merge(Removed(false), at(7)),
            kept(Removed(true), 7, true)
        );
        assert_eq!(
            removed.merge(Removed(false), at(8)),
            kept(Removed(false), 8, false)
        );
        assert_eq!(removed.merge(Removed(false), at(6)), removed);
    }

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
        let mut d = WebhookDelivery {
            id: String::new(),
            event: "ping".into(),
            received_at: UnixTime(1),
        };
        assert!(d.validate().is_err());
        d.id = "x".repeat(MAX_WEBHOOK_DELIVERY_ID_LEN + 1);
        assert!(d.validate().is_err());
        d.id = "72d3162e-cc78-11e3-81ab-4c9367dc0958".into();
        assert!(d.validate().is_ok());
    }
}
