//! Decoding of a compact JWS into its parts, before anything is trusted.
//!
//! [`UnverifiedToken`] holds the decoded header and claims of a token whose signature
//! has not been checked. Nothing in it may feed a security decision except choosing
//! which already-configured key to verify with; only [`crate::Verifier`] turns it into
//! verified claims.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::error::VerifyError;

/// The longest token accepted, in bytes. GitHub's are about 1.5 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Reads only `iss` from the claims, borrowing, so the unverified pass stays cheap.
#[derive(Deserialize)]
struct IssuerPeek<'a> {
    #[serde(borrow)]
    iss: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// A decoded but unverified token. Must never be used to enforce anything.
#[derive(Debug, Clone)]
pub struct UnverifiedToken {
    alg: String,
    kid: Option<String>,
    /// The claims object's JSON bytes, still unverified.
    claims: Vec<u8>,
    /// The unverified `iss`, read once.
    iss: Option<String>,
    /// `base64(header) "." base64(claims)`: the bytes the signature covers.
    signing_input_len: usize,
    raw: String,
    signature: Vec<u8>,
}

fn malformed(reason: &'static str) -> VerifyError {
    VerifyError::Malformed { reason }
}

fn b64(part: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed("a part is not unpadded base64url"))
}

impl UnverifiedToken {
    /// Splits and decodes a compact JWS (`header.claims.signature`).
    ///
    /// # Errors
    /// [`VerifyError::Malformed`] when the token is too long, has the wrong number of
    /// parts, is not base64url, or its header or claims are not JSON objects, or the
    /// header asks for critical extensions.
    pub fn parse(token: &str) -> Result<Self, VerifyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(malformed("token is too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("a token has three dot-separated parts"));
        };
        let header: RawHeader = serde_json::from_slice(&b64(h)?)
            .map_err(|_| malformed("the header is not a JSON object"))?;
        if header.crit.is_some() {
            return Err(malformed("critical header extensions are not supported"));
        }
        let claims = b64(c)?;
        let not_object = || malformed("the claims are not a JSON object");
        if claims.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(not_object());
        }
        let peek: IssuerPeek<'_> = serde_json::from_slice(&claims).map_err(|_| not_object())?;
        let iss = peek.iss.map(std::borrow::Cow::into_owned);
        let signature = b64(s)?;
        Ok(Self {
            alg: header.alg.unwrap_or_default(),
            kid: header.kid,
            claims,
            iss,
            signing_input_len: h.len() + 1 + c.len(),
            raw: token.to_owned(),
            signature,
        })
    }

    /// The header's `alg` (empty when absent).
    #[must_use]
    pub fn alg(&self) -> &str {
        &self.alg
    }

    /// The header's `kid`, if any.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The unverified `iss` claim, used only to pick a configured issuer.
    #[must_use]
    pub fn unverified_issuer(&self) -> Option<&str> {
        self.iss.as_deref()
    }

    pub(crate) fn signing_input(&self) -> &[u8] {
        self.raw
            .as_bytes()
            .get(..self.signing_input_len)
            .unwrap_or_default()
    }

    pub(crate) fn signature(&self) -> &[u8] {
        &self.signature
    }

    pub(crate) fn claims_json(&self) -> &[u8] {
        &self.claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_shapes_that_are_not_a_jws() {
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "...",
            "e30.e30.!!",
            "bnVsbA.e30.",
            "e30.bnVsbA.",
        ] {
            assert!(UnverifiedToken::parse(bad).is_err(), "{bad:?}");
        }
        let ok = UnverifiedToken::parse("e30.e30.").unwrap();
        assert_eq!(ok.alg(), "");
        assert_eq!(ok.signing_input(), b"e30.e30");
    }

    #[test]
    fn rejects_padding_and_critical_headers() {
        assert!(UnverifiedToken::parse("e30=.e30.").is_err());
        let crit = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","crit":["exp"]}"#);
        assert!(UnverifiedToken::parse(&format!("{crit}.e30.")).is_err());
    }

    #[test]
    fn rejects_oversized_tokens() {
        let long = format!("e30.{}.", "A".repeat(MAX_TOKEN_BYTES));
        assert_eq!(
            UnverifiedToken::parse(&long).unwrap_err(),
            VerifyError::Malformed {
                reason: "token is too long"
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = UnverifiedToken::parse(&s);
        }

        #[test]
        fn decoding_random_parts_never_panics(h in "[A-Za-z0-9_-]{0,64}", c in "[A-Za-z0-9_-]{0,64}", s in "[A-Za-z0-9_-]{0,64}") {
            let _ = UnverifiedToken::parse(&format!("{h}.{c}.{s}"));
        }
    }
}
