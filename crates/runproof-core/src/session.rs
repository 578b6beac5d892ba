//! Upload-session tokens: what a client holds, and what the server stores of it.
//!
//! A token is `rpst_` followed by 256 random bits in unpadded base64url. The server keeps
//! only its SHA-256, so a database leak yields nothing that can be replayed. Randomness
//! comes from the caller (the core does no I/O).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// The prefix of every session token.
pub const PREFIX: &str = "rpst_";

/// The length of a well-formed token: the prefix and 43 base64url characters.
pub const TOKEN_LEN: usize = PREFIX.len() + 43;

/// Builds a token from 32 random bytes.
#[must_use]
pub fn token_from_random(random: &[u8; 32]) -> Secret {
    Secret::new(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(random)))
}

/// Whether `candidate` looks like a session token (it still has to be found by hash).
#[must_use]
pub fn looks_like_session_token(candidate: &str) -> bool {
    candidate.starts_with(PREFIX)
}

/// The hex SHA-256 of a well-formed token, which is what the server stores and looks up.
/// `None` when the token is malformed, so nothing malformed ever reaches the database.
#[must_use]
pub fn token_hash(candidate: &str) -> Option<String> {
    let body = candidate.strip_prefix(PREFIX)?;
    if candidate.len() != TOKEN_LEN {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(body).ok()?;
    (raw.len() == 32).then(|| hex::encode(Sha256::digest(candidate.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_round_trip_to_their_hash() {
        let t = token_from_random(&[7u8; 32]);
        assert_eq!(t.expose().len(), TOKEN_LEN);
        assert!(looks_like_session_token(t.expose()));
        let h = token_hash(t.expose()).unwrap();
        assert_eq!(h.len(), 64);
        assert_ne!(
            token_hash(token_from_random(&[8u8; 32]).expose()).unwrap(),
            h
        );
        for bad in [
            "",
            "rpst_",
            "rpst_abc",
            "xxxx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &format!("{}=", t.expose()),
        ] {
            assert_eq!(token_hash(bad), None, "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn session_token_parsing_never_panics(s in "\\PC{0,60}") {
            let _ = token_hash(&s);
            let _ = token_hash(&format!("rpst_{s}"));
        }
    }
}
