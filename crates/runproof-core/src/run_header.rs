//! `X-Runproof-Run` and `X-Runproof-Sha`: a run named by the client, to be checked.
//!
//! The values here are claims the client makes; only a mode that confirms them with
//! GitHub may treat them as facts. Until then they are marked unverified.

use crate::claims::is_commit_sha;
use crate::ids::{MAX_ID, RepositoryId, RunId};

/// A parsed `X-Runproof-Run: <repository_id>/<run_id>/<run_attempt>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunHeader {
    /// The repository's id.
    pub repository_id: RepositoryId,
    /// The run's id.
    pub run_id: RunId,
    /// The attempt, from 1.
    pub run_attempt: u32,
}

/// Why a run header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunHeaderError {
    /// Not `<repository_id>/<run_id>/<run_attempt>` with decimal, non-zero parts, each id
    /// at most [`MAX_ID`] and the attempt a `u32`.
    #[error("X-Runproof-Run must be <repository_id>/<run_id>/<run_attempt>")]
    Run,
    /// Not a 40- or 64-digit lowercase hex commit id.
    #[error("X-Runproof-Sha must be a full lowercase hex commit id")]
    Sha,
}

fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| (1..=MAX_ID).contains(n))
}

impl RunHeader {
    /// Parses the header value.
    ///
    /// # Errors
    /// [`RunHeaderError::Run`] for anything but three positive decimals separated by `/`.
    pub fn parse(value: &str) -> Result<Self, RunHeaderError> {
        let mut parts = value.split('/');
        let (Some(repo), Some(run), Some(attempt), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(RunHeaderError::Run);
        };
        Ok(Self {
            repository_id: RepositoryId(decimal(repo).ok_or(RunHeaderError::Run)?),
            run_id: RunId(decimal(run).ok_or(RunHeaderError::Run)?),
            run_attempt: decimal(attempt)
                .and_then(|a| u32::try_from(a).ok())
                .ok_or(RunHeaderError::Run)?,
        })
    }
}

/// Checks an `X-Runproof-Sha` value.
///
/// # Errors
/// [`RunHeaderError::Sha`] unless it is a full lowercase hex commit id.
pub fn parse_sha(value: &str) -> Result<String, RunHeaderError> {
    if is_commit_sha(value) {
        Ok(value.to_owned())
    } else {
        Err(RunHeaderError::Sha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rule_run_header_ids_fit_a_database_integer() {
        let max = RunHeader::parse("9223372036854775807/9223372036854775807/1").unwrap();
        assert_eq!(
            (max.repository_id.get(), max.run_id.get()),
            (MAX_ID, MAX_ID)
        );
        for bad in [
            "9223372036854775808/2/1",
            "18446744073709551615/2/1",
            "1/9223372036854775808/1",
            "1/18446744073709551615/1",
        ] {
            assert_eq!(RunHeader::parse(bad), Err(RunHeaderError::Run), "{bad:?}");
        }
    }

    #[test]
    fn parses_the_three_ids() {
        assert_eq!(
            RunHeader::parse("1296269/4242424242/2"),
            Ok(RunHeader {
                repository_id: RepositoryId(1_296_269),
                run_id: RunId(4_242_424_242),
                run_attempt: 2
            })
        );
        for bad in [
            "",
            "1/2",
            "1/2/3/4",
            "a/2/3",
            "1/2/0",
            "0/2/3",
            "1/-2/3",
            "1/+2/3",
            " 1/2/3",
            "1/2/99999999999",
            "1//3",
        ] {
            assert_eq!(RunHeader::parse(bad), Err(RunHeaderError::Run), "{bad:?}");
        }
        assert!(parse_sha(&"a".repeat(40)).is_ok());
        assert_eq!(parse_sha("HEAD"), Err(RunHeaderError::Sha));
        assert_eq!(parse_sha(&"A".repeat(40)), Err(RunHeaderError::Sha));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn run_header_parsing_never_panics(s in "\\PC{0,64}") {
            let _ = RunHeader::parse(&s);
            let _ = parse_sha(&s);
        }
    }
}
