//! Time as the core sees it: whole seconds since the Unix epoch, always passed in.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch. The core never reads a clock; callers pass this in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The time `secs` seconds later, saturating instead of overflowing.
    #[must_use]
    pub const fn plus(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// The time `secs` seconds earlier, saturating instead of overflowing.
    #[must_use]
    pub const fn minus(self, secs: i64) -> Self {
        Self(self.0.saturating_sub(secs))
    }
}

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
