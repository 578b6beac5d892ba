//! GitHub webhook signatures (`X-Hub-Signature-256`), checked before any parsing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// Why a webhook delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header (a SHA-1 `X-Hub-Signature` alone does not count).
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("the X-Hub-Signature-256 header is malformed")]
    Malformed,
    /// No configured secret produces this signature over these bytes.
    #[error("the signature does not match any configured secret")]
    Mismatch,
    /// No secret is configured, so nothing can be verified.
    #[error("no webhook secret is configured")]
    NoSecret,
}

/// Checks `X-Hub-Signature-256` over the raw body against every configured secret.
///
/// Each comparison is constant-time (`Mac::verify_slice`), and every secret is tried, so
/// timing reveals neither the signature nor which secret matched. Several secrets allow
/// rotation without downtime.
///
/// # Errors
/// [`SignatureError`] naming what is wrong.
pub fn verify_signature(
    body: &[u8],
    header: Option<&[u8]>,
    secrets: &[Secret],
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_sig.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut matched = false;
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
            continue;
        };
        mac.update(body);
        matched |= mac.verify_slice(&expected).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Computes `sha256=<hex>` over `body`, as GitHub signs webhooks (and as runproof signs
/// its own deliveries to the App).
#[must_use]
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; this arm is unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new((*s).to_owned())).collect()
    }

    /// GitHub's documented example.
    const DOC_SECRET: &str = "It's a Secret to Everybody";
    const DOC_BODY: &[u8] = b"Hello, World!";
    const DOC_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_documented_vector_verifies() {
        let s = secrets(&[DOC_SECRET]);
        assert_eq!(
            verify_signature(DOC_BODY, Some(DOC_SIG.as_bytes()), &s),
            Ok(())
        );
        assert_eq!(sign(&s[0], DOC_BODY), DOC_SIG);
    }

    #[test]
    fn rule_webhook_signature_refuses_bad_missing_and_modified() {
        let s = secrets(&[DOC_SECRET]);
        assert_eq!(
            verify_signature(DOC_BODY, None, &s),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(b"Hello, World?", Some(DOC_SIG.as_bytes()), &s),
            Err(SignatureError::Mismatch),
            "a valid signature over a modified body"
        );
        let sha1 = b"sha1=0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            verify_signature(DOC_BODY, Some(sha1), &s),
            Err(SignatureError::Malformed)
        );
        for bad in [
            &b"757107ea"[..],
            b"sha256=",
            b"sha256=zz",
            b"SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ] {
            assert_eq!(
                verify_signature(DOC_BODY, Some(bad), &s),
                Err(SignatureError::Malformed)
            );
        }
        assert_eq!(
            verify_signature(DOC_BODY, Some(DOC_SIG.as_bytes()), &[]),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn rule_webhook_secret_rotation_accepts_any_configured_secret() {
        let s = secrets(&["new-secret", DOC_SECRET]);
        assert_eq!(
            verify_signature(DOC_BODY, Some(DOC_SIG.as_bytes()), &s),
            Ok(())
        );
        let s = secrets(&["new-secret"]);
        assert_eq!(
            verify_signature(DOC_BODY, Some(DOC_SIG.as_bytes()), &s),
            Err(SignatureError::Mismatch)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn signature_header_parsing_never_panics(header in proptest::collection::vec(any::<u8>(), 0..100), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = verify_signature(&body, Some(&header), &secrets(&["s"]));
        }
    }
}
