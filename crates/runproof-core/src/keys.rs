//! Verification keys of one issuer, parsed from a JWKS document.
//!
//! Only RSA signing keys are kept (`kty = "RSA"`, `use` absent or `sig`, `alg` absent or
//! `RS256`, a `kid`, a modulus of 2048 to 8192 bits). Keys of other types are skipped so
//! that an issuer can publish them alongside; a document with no usable key at all is an
//! error, so an empty set is never cached. Each key is parsed once, here, and reused for
//! every verification.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// The largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The most keys one JWKS document may hold.
pub const MAX_KEYS: usize = 64;

const MIN_MODULUS_BYTES: usize = 2048 / 8;
const MAX_MODULUS_BYTES: usize = 8192 / 8;

/// Why a JWKS document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// The document exceeds [`MAX_JWKS_BYTES`].
    #[error("JWKS document is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// The document holds more than [`MAX_KEYS`] keys.
    #[error("JWKS document holds more than {MAX_KEYS} keys")]
    TooManyKeys,
    /// The document is not a JSON object with a `keys` array.
    #[error("JWKS document is not valid JSON: {0}")]
    Json(String),
    /// No key in the document can verify RS256 signatures.
    #[error("JWKS document has no usable RS256 key")]
    Empty,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// A parsed RSA public key, ready to verify.
#[derive(Clone)]
pub struct VerifyingKey {
    key: Arc<ParsedPublicKey>,
}

impl VerifyingKey {
    /// Builds a key from its big-endian modulus and exponent. Returns `None` when the
    /// components do not form an RSA key of 2048 to 8192 bits.
    #[must_use]
    pub fn from_components(n: &[u8], e: &[u8]) -> Option<Self> {
        let first = n.iter().position(|b| *b != 0)?;
        let modulus_bytes = n.len() - first;
        if !(MIN_MODULUS_BYTES..=MAX_MODULUS_BYTES).contains(&modulus_bytes) {
            return None;
        }
        let der = PublicKeyComponents { n, e }.as_der().ok()?;
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_ref()).ok()?;
        Some(Self { key: Arc::new(key) })
    }

    /// Checks an RS256 (PKCS#1 v1.5, SHA-256) signature over `message`.
    #[must_use]
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyingKey(RSA)")
    }
}

/// The RS256 keys of one issuer, by `kid`.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl KeySet {
    /// Parses a JWKS document.
    ///
    /// # Errors
    /// [`KeySetError`] when the document is too large, malformed, has too many keys, or
    /// holds no usable RS256 key.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<Self, KeySetError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(KeySetError::TooLarge);
        }
        let raw: RawJwks =
            serde_json::from_slice(bytes).map_err(|e| KeySetError::Json(e.to_string()))?;
        if raw.keys.len() > MAX_KEYS {
            return Err(KeySetError::TooManyKeys);
        }
        let mut keys = HashMap::new();
        for jwk in raw.keys {
            if let Some((kid, key)) = usable(jwk) {
                keys.insert(kid, key);
            }
        }
        if keys.is_empty() {
            return Err(KeySetError::Empty);
        }
        Ok(Self { keys })
    }

    /// Builds a set from keys already parsed (tests and embedders).
    #[must_use]
    pub fn from_keys(keys: impl IntoIterator<Item = (String, VerifyingKey)>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
        }
    }

    /// The key with this `kid`, if any.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// Whether a key with this `kid` is present.
    #[must_use]
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// How many keys the set holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, in no particular order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

fn usable(jwk: RawJwk) -> Option<(String, VerifyingKey)> {
    if jwk.kty.as_deref() != Some("RSA") {
        return None;
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if jwk.alg.as_deref().is_some_and(|a| a != "RS256") {
        return None;
    }
    let kid = jwk.kid.filter(|k| !k.is_empty() && k.len() <= 256)?;
    let n = URL_SAFE_NO_PAD.decode(jwk.n?.trim_end_matches('=')).ok()?;
    let e = URL_SAFE_NO_PAD.decode(jwk.e?.trim_end_matches('=')).ok()?;
    let key = VerifyingKey::from_components(&n, &e)?;
    Some((kid, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRATES_IO_JWKS: &str = r#"{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":"k1","n":"w4M936N3ZxNaEblcUoBm-xu0-V9JxNx5S7TmF0M3SBK-2bmDyAeDdeIOTcIVZHG-ZX9N9W0u1yWafgWewHrsz66BkxXq3bscvQUTAw7W3s6TEeYY7o9shPkFfOiU3x_KYgOo06SpiFdymwJflRs9cnbaU88i5fZJmUepUHVllP2tpPWTi-7UA3AdP3cdcCs5bnFfTRKzH2W0xqKsY_jIG95aQJRBDpbiesefjuyxcQnOv88j9tCKWzHpJzRKYjAUM6OPgN4HYnaSWrPJj1v41eEkFM1kORuj-GSH2qMVD02VklcqaerhQHIqM-RjeHsN7G05YtwYzomE5G-fZuwgvQ","e":"AQAB"}]}"#;

    #[test]
    fn parses_rsa_keys_and_skips_others() {
        let ks = KeySet::from_jwks_json(CRATES_IO_JWKS.as_bytes()).unwrap();
        assert!(ks.contains("k1"));
        let mixed = CRATES_IO_JWKS.replace(
            "{\"kty\":\"RSA\"",
            "{\"kty\":\"EC\",\"kid\":\"ec\",\"crv\":\"P-256\"},{\"kty\":\"RSA\"",
        );
        let ks = KeySet::from_jwks_json(mixed.as_bytes()).unwrap();
        assert_eq!(ks.len(), 1);
    }

    #[test]
    fn refuses_empty_oversized_and_garbage_sets() {
        assert_eq!(
            KeySet::from_jwks_json(br#"{"keys":[]}"#).unwrap_err(),
            KeySetError::Empty
        );
        assert_eq!(
            KeySet::from_jwks_json(br#"{"keys":[{"kty":"RSA","kid":"x","n":"AQAB","e":"AQAB"}]}"#)
                .unwrap_err(),
            KeySetError::Empty,
            "a key below 2048 bits is unusable"
        );
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(
            KeySet::from_jwks_json(&big).unwrap_err(),
            KeySetError::TooLarge
        );
        assert!(matches!(
            KeySet::from_jwks_json(b"<html>").unwrap_err(),
            KeySetError::Json(_)
        ));
        let many = format!(
            "{{\"keys\":[{}]}}",
            vec![r#"{"kty":"EC"}"#; MAX_KEYS + 1].join(",")
        );
        assert_eq!(
            KeySet::from_jwks_json(many.as_bytes()).unwrap_err(),
            KeySetError::TooManyKeys
        );
    }

    #[test]
    fn keys_for_other_algorithms_are_skipped() {
        let hs = CRATES_IO_JWKS.replace("\"alg\":\"RS256\"", "\"alg\":\"RS512\"");
        assert_eq!(
            KeySet::from_jwks_json(hs.as_bytes()).unwrap_err(),
            KeySetError::Empty
        );
        let enc = CRATES_IO_JWKS.replace("\"use\":\"sig\"", "\"use\":\"enc\"");
        assert_eq!(
            KeySet::from_jwks_json(enc.as_bytes()).unwrap_err(),
            KeySetError::Empty
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn jwks_parsing_of_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = KeySet::from_jwks_json(&bytes);
        }

        #[test]
        fn jwks_parsing_of_random_keys_never_panics(
            kty in "(RSA|EC|oct|)", kid in "\\PC{0,20}", n in "[A-Za-z0-9_=-]{0,400}", e in "[A-Za-z0-9_=-]{0,8}",
            alg in "(RS256|HS256|none|)", use_ in "(sig|enc|)",
        ) {
            let doc = serde_json::json!({"keys": [{"kty": kty, "kid": kid, "n": n, "e": e, "alg": alg, "use": use_}]});
            let _ = KeySet::from_jwks_json(doc.to_string().as_bytes());
        }
    }
}
