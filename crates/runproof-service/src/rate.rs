//! Fixed one-minute rate windows per key, bounded in the keys they track, and the key
//! an address is counted under.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The length of a window.
const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked by default.
const MAX_TRACKED: usize = 100_000;

/// What the per-address limits count: an IPv4 address, or the /64 an IPv6 address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => Self::V4(u32::from(a)),
            IpAddr::V6(a) => Self::V6(u64::try_from(u128::from(a) >> 64).unwrap_or(u64::MAX)),
        }
    }
}

/// Fixed one-minute windows counting requests per key, for at most `capacity` keys.
pub struct Windows<K> {
    per_minute: u32,
    capacity: usize,
    table: Mutex<Table<K>>,
}

/// The windows, and the order they started in (oldest first) to evict from.
struct Table<K> {
    windows: HashMap<K, Window>,
    /// A key and the start of its window; a pair whose window has since restarted or been
    /// evicted is stale and skipped.
    order: VecDeque<(K, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

impl<K: Eq + Hash + Copy> Windows<K> {
    /// Windows of `per_minute` requests, for at most 100,000 keys.
    #[must_use]
    pub fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_TRACKED)
    }

    /// Windows of `per_minute` requests, for at most `capacity` keys.
    #[must_use]
    pub fn with_capacity(per_minute: u32, capacity: usize) -> Self {
        Self {
            per_minute,
            capacity: capacity.max(1),
            table: Mutex::new(Table {
                windows: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// Counts a request for `key`; the seconds to wait when it is over the limit.
    pub fn over_limit(&self, key: K, now: Instant) -> Option<u64> {
        self.count(key, 1, now, true)
    }

    /// The seconds to wait when `key` is over the limit already; counts nothing.
    pub fn blocked(&self, key: K, now: Instant) -> Option<u64> {
        self.count(key, 0, now, true)
    }

    /// Counts `n` requests for `key` whatever the limit.
    pub fn add(&self, key: K, n: u32, now: Instant) {
        let _ = self.count(key, n, now, false);
    }

    fn count(&self, key: K, n: u32, now: Instant, check: bool) -> Option<u64> {
        if self.per_minute == 0 {
            return None;
        }
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        // Looking does not start a window: requests that are never counted (those with
        // good credentials) must not push counted ones out of the table.
        if n == 0 && !table.windows.contains_key(&key) {
            return None;
        }
        let window = table.window(key, now, self.capacity);
        if check && window.count >= self.per_minute {
            let left = WINDOW.saturating_sub(now.duration_since(window.start));
            return Some(left.as_secs().max(1));
        }
        window.count = window.count.saturating_add(n);
        None
    }
}

impl<K: Eq + Hash + Copy> Table<K> {
    /// The current window of `key`: a new one when it has none or its window has ended.
    /// A new key at `capacity` evicts the window that started first, expired or not: the
    /// others keep their counts.
    fn window(&mut self, key: K, now: Instant, capacity: usize) -> &mut Window {
        let fresh = match self.windows.get(&key) {
            Some(w) => now.duration_since(w.start) >= WINDOW,
            None => {
                while self.windows.len() >= capacity {
                    self.evict_oldest();
                }
                true
            }
        };
        if fresh {
            self.order.push_back((key, now));
            if self.order.len() > capacity.saturating_mul(2) {
                let windows = &self.windows;
                self.order
                    .retain(|(k, start)| windows.get(k).is_some_and(|w| w.start == *start));
            }
        }
        let window = self.windows.entry(key).or_insert(Window {
            start: now,
            count: 0,
        });
        if fresh {
            *window = Window {
                start: now,
                count: 0,
            };
        }
        window
    }

    fn evict_oldest(&mut self) {
        while let Some((key, start)) = self.order.pop_front() {
            if self.windows.get(&key).is_some_and(|w| w.start == start) {
                self.windows.remove(&key);
                return;
            }
        }
        // Every key has a live pair in `order`; should that ever fail, forget the oldest
        // key the map gives rather than loop.
        if let Some(key) = self.windows.keys().next().copied() {
            self.windows.remove(&key);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::str::FromStr;

    use runproof_core::ids::RepositoryId;

    use super::*;

    fn key(s: &str) -> AddressKey {
        AddressKey::from(IpAddr::from_str(s).unwrap())
    }

    #[test]
    fn windows_count_per_key_and_reset() {
        let w = Windows::new(2);
        let a = key("127.0.0.1");
        let b = key("127.0.0.2");
        let t = Instant::now();
        assert_eq!(w.over_limit(a, t), None);
        assert_eq!(w.over_limit(a, t), None);
        assert_eq!(w.over_limit(a, t), Some(60));
        assert_eq!(w.over_limit(b, t), None);
        assert_eq!(w.over_limit(a, t + WINDOW), None);
    }

    #[test]
    fn rule_ipv6_addresses_count_by_their_64_block() {
        let w = Windows::new(2);
        let t = Instant::now();
        // One host rotating through its /64 is one address.
        assert_eq!(w.over_limit(key("2001:db8:1:2::1"), t), None);
        assert_eq!(
            w.over_limit(key("2001:db8:1:2:ffff:ffff:ffff:fffe"), t),
            None
        );
        assert!(w.over_limit(key("2001:db8:1:2:abcd::9"), t).is_some());
        // The next /64 is another address.
        assert_eq!(w.over_limit(key("2001:db8:1:3::1"), t), None);
        // An IPv4 address written as IPv6 is that IPv4 address.
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }

    #[test]
    fn rule_the_tracking_cap_evicts_the_oldest_window_not_everyone() {
        let w = Windows::with_capacity(1, 3);
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let (a, b, c, d) = (
            key("10.0.0.1"),
            key("10.0.0.2"),
            key("10.0.0.3"),
            key("10.0.0.4"),
        );
        for (i, k) in [a, b, c].into_iter().enumerate() {
            let at = t + s * u32::try_from(i).unwrap();
            assert_eq!(w.over_limit(k, at), None);
            assert!(w.blocked(k, at).is_some());
        }
        // A fourth address at the cap pushes out the oldest window only...
        assert_eq!(w.over_limit(d, t + s * 3), None);
        assert_eq!(w.blocked(a, t + s * 3), None);
        // ... and the others keep their counts.
        assert!(w.blocked(b, t + s * 3).is_some());
        assert!(w.blocked(c, t + s * 3).is_some());
        assert!(w.blocked(d, t + s * 3).is_some());
        assert_eq!(w.table.lock().unwrap().windows.len(), 3);
    }

    #[test]
    fn a_restarted_window_is_evicted_by_its_new_start() {
        let w = Windows::with_capacity(1, 2);
        let t = Instant::now();
        let (a, b, c) = (key("10.0.0.1"), key("10.0.0.2"), key("10.0.0.3"));
        w.add(a, 1, t);
        w.add(b, 1, t + Duration::from_secs(30));
        // A's window ends and starts again after B's began: B is now the oldest.
        w.add(a, 1, t + WINDOW);
        w.add(c, 1, t + WINDOW);
        let now = t + WINDOW;
        assert!(w.blocked(a, now).is_some());
        assert_eq!(w.blocked(b, now), None);
        assert!(w.blocked(c, now).is_some());
    }

    #[test]
    fn the_eviction_order_stays_bounded() {
        let w = Windows::with_capacity(1, 4);
        let t = Instant::now();
        for i in 0..1000u32 {
            w.add(key("10.0.0.1"), 1, t + WINDOW * i);
        }
        let table = w.table.lock().unwrap();
        assert!(table.order.len() <= 8, "{}", table.order.len());
    }

    #[test]
    fn looking_does_not_track() {
        let w = Windows::with_capacity(1, 2);
        let t = Instant::now();
        w.add(key("10.0.0.1"), 1, t);
        for i in 0..10u8 {
            assert_eq!(w.blocked(key(&format!("10.0.1.{i}")), t), None);
        }
        assert!(w.blocked(key("10.0.0.1"), t).is_some());
    }

    #[test]
    fn zero_means_no_limit() {
        let w = Windows::new(0);
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(w.over_limit(RepositoryId(7), t), None);
        }
    }
}
