//! The replay guard in memory: a token's `jti` is claimed here before its body is read,
//! and made durable in the database with the upload it pays for (the commit pipeline).
//!
//! - On this replica, a replay is refused before its body is read: the `jti` is in the
//!   set from its first use, whether that use is still in flight or committed.
//! - The database stays the judge: a `jti` spent on another replica, or before this
//!   process started, meets the unique key of `used_jtis` in the upload's transaction,
//!   and the upload is refused (its body discarded).
//! - The set is bounded ([`ReplayGuard::new`]'s `capacity`). Expired entries go first;
//!   when every entry is live, the half that expires first is dropped and the set
//!   remembers it is incomplete until their expiry. While it is incomplete (also, after
//!   a start, until the latest `jti` the database holds expires), a token it does not
//!   know is looked up in the database before its body is read.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// What the set says of a `jti` just claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Unknown here, and the set is complete: not spent on this replica.
    Fresh,
    /// Claimed before on this replica (in flight or stored): a replay.
    Replayed,
    /// Unknown here, but the set is incomplete: ask the database.
    AskStore,
}

#[derive(Debug)]
struct Seen {
    /// A digest of (issuer, jti) → when the entry may be forgotten (Unix seconds).
    entries: HashMap<u128, i64>,
    /// Until this time, an unknown `jti` may have been spent (dropped from the set, or
    /// spent before this process started).
    incomplete_until: i64,
}

/// `jti`s claimed on this replica, bounded.
#[derive(Debug)]
pub(crate) struct ReplayGuard {
    seen: Mutex<Seen>,
    capacity: usize,
}

/// The default bound: about 10 MiB at most.
pub(crate) const DEFAULT_CAPACITY: usize = 1 << 18;

impl ReplayGuard {
    /// A guard of at most `capacity` entries (at least 2), incomplete until
    /// `incomplete_until` (the latest expiry of a `jti` the database holds; 0 when
    /// none).
    #[must_use]
    pub(crate) fn new(capacity: usize, incomplete_until: i64) -> Self {
        Self {
            seen: Mutex::new(Seen {
                entries: HashMap::new(),
                incomplete_until,
            }),
            capacity: capacity.max(2),
        }
    }

    /// Claims `jti` of `issuer`, remembered until `expires_at`; `now` is the current
    /// Unix time.
    pub(crate) fn claim(&self, issuer: &str, jti: &str, expires_at: i64, now: i64) -> Claim {
        let key = digest(issuer, jti);
        let Ok(mut seen) = self.seen.lock() else {
            // A panic elsewhere while holding the lock: the database still judges.
            return Claim::AskStore;
        };
        if seen.entries.contains_key(&key) {
            return Claim::Replayed;
        }
        if seen.entries.len() >= self.capacity {
            seen.entries.retain(|_, expiry| *expiry >= now);
            if seen.entries.len() >= self.capacity / 2 {
                evict_earliest_half(&mut seen);
            }
        }
        seen.entries.insert(key, expires_at);
        if now <= seen.incomplete_until {
            Claim::AskStore
        } else {
            Claim::Fresh
        }
    }

    /// Forgets a claim whose upload was definitely not stored for a fault of ours (the
    /// database unavailable, the commit queue full), so that the client's retry with the
    /// same token is judged afresh. Never used for a refusal of the request itself: a
    /// token refused for its body stays spent here.
    pub(crate) fn release(&self, issuer: &str, jti: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.entries.remove(&digest(issuer, jti));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.entries.len())
    }
}

/// Drops the half of the entries that expires first; the set is incomplete until the
/// latest of them expires.
fn evict_earliest_half(seen: &mut Seen) {
    let mut expiries: Vec<i64> = seen.entries.values().copied().collect();
    let middle = expiries.len() / 2;
    let (_, cut, _) = expiries.select_nth_unstable(middle);
    let cut = *cut;
    seen.entries.retain(|_, expiry| *expiry > cut);
    seen.incomplete_until = seen.incomplete_until.max(cut);
}

/// 128 bits of SHA-256 over the issuer and the `jti`, separated so that no two pairs
/// meet.
fn digest(issuer: &str, jti: &str) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update((issuer.len() as u64).to_be_bytes());
    hasher.update(issuer.as_bytes());
    hasher.update(jti.as_bytes());
    let out = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&out[..16]);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    #[test]
    fn rule_a_replay_on_this_replica_is_known_before_its_body() {
        let guard = ReplayGuard::new(16, 0);
        assert_eq!(guard.claim("iss", "a", NOW + 300, NOW), Claim::Fresh);
        assert_eq!(guard.claim("iss", "a", NOW + 300, NOW), Claim::Replayed);
        assert_eq!(guard.claim("other", "a", NOW + 300, NOW), Claim::Fresh);
        // The separator: ("ab", "c") is not ("a", "bc").
        assert_eq!(guard.claim("ab", "c", NOW + 300, NOW), Claim::Fresh);
        assert_eq!(guard.claim("a", "bc", NOW + 300, NOW), Claim::Fresh);
    }

    #[test]
    fn rule_a_released_claim_is_judged_afresh() {
        let guard = ReplayGuard::new(16, 0);
        assert_eq!(guard.claim("iss", "a", NOW + 300, NOW), Claim::Fresh);
        guard.release("iss", "a");
        assert_eq!(guard.claim("iss", "a", NOW + 300, NOW), Claim::Fresh);
        assert_eq!(guard.claim("iss", "a", NOW + 300, NOW), Claim::Replayed);
    }

    #[test]
    fn rule_after_a_start_unknown_tokens_are_asked_of_the_store() {
        let guard = ReplayGuard::new(16, NOW + 600);
        assert_eq!(guard.claim("iss", "a", NOW + 300, NOW), Claim::AskStore);
        // Still claimed here: a second use in flight is refused without asking.
        assert_eq!(guard.claim("iss", "a", NOW + 300, NOW), Claim::Replayed);
        // Once every token spent before the start has expired, the set is complete.
        assert_eq!(guard.claim("iss", "b", NOW + 900, NOW + 601), Claim::Fresh);
    }

    #[test]
    fn rule_a_full_set_drops_expired_entries_first_and_stays_complete() {
        let guard = ReplayGuard::new(4, 0);
        for (i, jti) in ["a", "b", "c", "d"].iter().enumerate() {
            let expiry = NOW + 10 + i64::try_from(i).unwrap();
            assert_eq!(guard.claim("iss", jti, expiry, NOW), Claim::Fresh);
        }
        // All four expired by now: dropped, and nothing live was lost.
        assert_eq!(guard.claim("iss", "e", NOW + 500, NOW + 100), Claim::Fresh);
        assert_eq!(guard.len(), 1);
        assert_eq!(
            guard.claim("iss", "e", NOW + 500, NOW + 100),
            Claim::Replayed
        );
    }

    #[test]
    fn rule_a_full_set_of_live_entries_asks_the_store_until_they_expire() {
        let guard = ReplayGuard::new(4, 0);
        for (i, jti) in ["a", "b", "c", "d"].iter().enumerate() {
            let expiry = NOW + 100 * (1 + i64::try_from(i).unwrap());
            assert_eq!(guard.claim("iss", jti, expiry, NOW), Claim::Fresh);
        }
        // Full of live entries: the earliest-expiring half goes, and until the latest of
        // them expires, a token the set does not know may be one of them.
        assert_eq!(guard.claim("iss", "e", NOW + 900, NOW), Claim::AskStore);
        assert!(guard.len() <= 4);
        assert_eq!(guard.claim("iss", "a", NOW + 100, NOW), Claim::AskStore);
        // Kept entries are still refused outright.
        assert_eq!(guard.claim("iss", "d", NOW + 400, NOW), Claim::Replayed);
        // After the dropped entries' expiry, the set is complete again.
        assert_eq!(guard.claim("iss", "f", NOW + 900, NOW + 301), Claim::Fresh);
    }
}
