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

    /// This time for people: RFC 3339 in UTC, to the second (`2026-11-30T13:31:00Z`).
    /// A time outside the years 0000 to 9999, which RFC 3339 cannot write (a token's
    /// `exp` may be any integer), is written as `<seconds> (unix seconds)`.
    #[must_use]
    pub fn rfc3339(self) -> String {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return format!("{} (unix seconds)", self.0);
        }
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (H. Hinnant's
/// `civil_from_days`). Exact for every `days` an `i64` of seconds can give.
const fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_writes_utc_to_the_second() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_738_115_663, "2025-01-29T01:54:23Z"),
            (1_796_009_060, "2026-11-30T03:24:20Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (-62_167_219_200, "0000-01-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(UnixTime(secs).rfc3339(), text, "{secs}");
        }
    }

    #[test]
    fn rfc3339_falls_back_to_seconds_outside_its_years() {
        for secs in [253_402_300_800, -62_167_219_201, i64::MAX, i64::MIN] {
            assert_eq!(UnixTime(secs).rfc3339(), format!("{secs} (unix seconds)"));
        }
    }

    /// Every day from 1900 to 2200 against a calendar counted one day at a time.
    #[test]
    fn civil_from_days_agrees_with_counting_days() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let length = |y: i64, m: i64| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        // 1900-01-01 is 25567 days before 1970-01-01.
        let (mut y, mut m, mut d) = (1900, 1, 1);
        for days in -25_567..(300 * 366) {
            if y == 2200 {
                break;
            }
            assert_eq!(civil_from_days(days), (y, m, d), "{days}");
            d += 1;
            if d > length(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!(y, 2200);
    }
}
