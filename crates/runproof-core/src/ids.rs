//! Integer id newtypes. Decisions compare these, never names.
//!
//! GitHub sends numeric ids in OIDC claims as JSON strings (`"repository_id": "123"`)
//! and in REST and webhook payloads as numbers. Both forms parse; anything else
//! (negative, fractional, empty, non-digit, or above [`MAX_ID`]) is refused.

use serde::{Deserialize, Deserializer, Serialize};

/// The largest id accepted: `i64::MAX`, the largest a database integer holds. GitHub's ids
/// stay far below it; a larger one can only come from an outsider, and is refused as
/// input rather than failing later as storage.
pub const MAX_ID: u64 = i64::MAX.unsigned_abs();

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw integer.
            #[must_use]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_decimal(s).map(Self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_id(d).map(Self)
            }
        }
    };
}

id_type!(
    /// A GitHub repository id. Stable across renames; a recreated repository gets a new one.
    RepositoryId
);
id_type!(
    /// A GitHub user or organization id (the repository owner).
    OwnerId
);
id_type!(
    /// A GitHub Actions workflow run id.
    RunId
);
id_type!(
    /// A GitHub App installation id.
    InstallationId
);
id_type!(
    /// A GitHub user id (the `actor_id` claim: who triggered the run).
    ActorId
);
id_type!(
    /// A GitHub check run id (the `check_run_id` claim: it identifies the job).
    CheckRunId
);
id_type!(
    /// A GitHub Enterprise id (the `enterprise_id` claim).
    EnterpriseId
);

/// Parses a plain decimal without sign or spaces, at most [`MAX_ID`].
fn parse_decimal(s: &str) -> Result<u64, std::num::ParseIntError> {
    if s.starts_with(['+', '-']) {
        // `from_str` accepts a sign; ids never carry one.
        return "x".parse::<u64>();
    }
    // Parsed as i64 so that anything above MAX_ID is an overflow error; unsigned now.
    s.parse::<i64>().map(i64::unsigned_abs)
}

/// Deserializes an id given as a JSON number or a JSON string of decimal digits.
///
/// # Errors
/// Fails on anything that is not a non-negative integer up to [`MAX_ID`] in either form.
pub fn deserialize_id<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw<'a> {
        Num(u64),
        Str(std::borrow::Cow<'a, str>),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) if n <= MAX_ID => Ok(n),
        Raw::Num(_) => Err(serde::de::Error::custom("id out of range")),
        Raw::Str(s) => {
            parse_decimal(&s).map_err(|_| serde::de::Error::custom("id is not a decimal integer"))
        }
    }
}

/// Like [`deserialize_id`] for integers that are not ids (such as `run_attempt`).
///
/// # Errors
/// Fails on anything that is not a non-negative integer that fits in `u32`.
pub fn deserialize_u32_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = deserialize_id(d)?;
    u32::try_from(n).map_err(|_| serde::de::Error::custom("integer out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_from_strings_and_numbers() {
        let a: RepositoryId = serde_json::from_str("\"123\"").unwrap();
        let b: RepositoryId = serde_json::from_str("123").unwrap();
        assert_eq!(a, b);
        for bad in [
            "\"-1\"", "-1", "\"\"", "\"1.5\"", "1.5", "\"+1\"", "\" 1\"", "null", "\"0x10\"",
        ] {
            assert!(serde_json::from_str::<RepositoryId>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rule_ids_beyond_what_a_database_holds_are_refused() {
        let max: RepositoryId = serde_json::from_str("9223372036854775807").unwrap();
        assert_eq!(max.get(), MAX_ID);
        let max: RunId = serde_json::from_str("\"9223372036854775807\"").unwrap();
        assert_eq!(max.get(), MAX_ID);
        assert_eq!("9223372036854775807".parse::<RunId>(), Ok(RunId(MAX_ID)));
        for bad in [
            "9223372036854775808",
            "\"9223372036854775808\"",
            "18446744073709551615",
            "\"18446744073709551615\"",
            "18446744073709551616",
        ] {
            assert!(serde_json::from_str::<RepositoryId>(bad).is_err(), "{bad}");
            assert!(
                serde_json::from_str::<InstallationId>(bad).is_err(),
                "{bad}"
            );
        }
        for bad in ["9223372036854775808", "18446744073709551615", "-0", "-1"] {
            assert!(bad.parse::<RepositoryId>().is_err(), "{bad}");
        }
    }
}
