//! `Content-Digest` (RFC 9530): the client's claim of the body's SHA-256.

use sfv::{BareItem, ListEntry, Parser};

/// Why a `Content-Digest` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// Not a structured-field dictionary.
    #[error("Content-Digest is not a structured-field dictionary")]
    Syntax,
    /// The `sha-256` member is not a 32-byte byte sequence.
    #[error("the sha-256 member of Content-Digest is not a 32-byte byte sequence")]
    BadSha256,
}

/// Parses a `Content-Digest` header value and returns its `sha-256` digest, if any.
///
/// Members for other algorithms are ignored, as RFC 9530 allows; the server computes
/// SHA-256 of every body regardless.
///
/// # Errors
/// [`DigestError`] when the header is malformed or its `sha-256` member is not 32 bytes.
pub fn parse_content_digest(value: &[u8]) -> Result<Option<[u8; 32]>, DigestError> {
    let dict = Parser::parse_dictionary(value).map_err(|_| DigestError::Syntax)?;
    let Some(entry) = dict.get("sha-256") else {
        return Ok(None);
    };
    let ListEntry::Item(item) = entry else {
        return Err(DigestError::BadSha256);
    };
    let BareItem::ByteSeq(bytes) = &item.bare_item else {
        return Err(DigestError::BadSha256);
    };
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(Some)
        .map_err(|_| DigestError::BadSha256)
}

/// Formats a SHA-256 digest as a `Content-Digest` header value.
#[must_use]
pub fn format_content_digest(sha256: &[u8; 32]) -> String {
    use base64::Engine as _;
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sha256)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_reads_rfc_examples() {
        let d = [7u8; 32];
        assert_eq!(
            parse_content_digest(format_content_digest(&d).as_bytes()),
            Ok(Some(d))
        );
        // RFC 9530 section 2 example, with a sha-512 member beside it.
        let v = b"sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:, sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
        assert!(parse_content_digest(v).unwrap().is_some());
        assert_eq!(parse_content_digest(b"sha-512=:AAAA:"), Ok(None));
    }

    #[test]
    fn rule_content_digest_malformed_is_refused() {
        assert_eq!(
            parse_content_digest(b"sha-256=:AAAA:"),
            Err(DigestError::BadSha256)
        );
        assert_eq!(
            parse_content_digest(b"sha-256=abc"),
            Err(DigestError::BadSha256)
        );
        assert_eq!(
            parse_content_digest(b"sha-256=:not base64:"),
            Err(DigestError::Syntax)
        );
        assert_eq!(parse_content_digest(b"\xff"), Err(DigestError::Syntax));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn content_digest_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_content_digest(&bytes);
        }
    }
}
