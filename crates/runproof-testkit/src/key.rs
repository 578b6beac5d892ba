use std::fmt;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::TestkitError;

/// An RSA-2048 signing key with a kid, standing in for one of GitHub's OIDC keys.
///
/// Cloning is cheap (the key pair is shared). `Debug` shows the kid only.
#[derive(Clone)]
pub struct TestKey {
    kid: String,
    /// Base64url SHA-1 of the public key, used as `x5t`; there is no certificate to hash.
    x5t: String,
    pair: Arc<KeyPair>,
}

impl TestKey {
    /// Generates a fresh RSA-2048 key pair that will be published under `kid`.
    ///
    /// # Errors
    /// [`TestkitError::KeyGeneration`] when aws-lc-rs fails to generate the key.
    pub fn generate(kid: impl Into<String>) -> Result<TestKey, TestkitError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| TestkitError::KeyGeneration)?;
        let thumbprint = digest(&SHA1_FOR_LEGACY_USE_ONLY, pair.public_key().as_ref());
        Ok(TestKey {
            kid: kid.into(),
            x5t: URL_SAFE_NO_PAD.encode(thumbprint.as_ref()),
            pair: Arc::new(pair),
        })
    }

    /// Generates a key whose kid is the upper-case hex SHA-1 of its public key, the shape
    /// of GitHub's own 40-hex-digit kids.
    pub(crate) fn generate_with_thumbprint_kid() -> Result<TestKey, TestkitError> {
        let mut key = TestKey::generate(String::new())?;
        let thumbprint = digest(&SHA1_FOR_LEGACY_USE_ONLY, key.pair.public_key().as_ref());
        key.kid = thumbprint
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        Ok(key)
    }

    /// The key id published in the JWKS and put in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The `x5t` header value used by [`TestKey::sign_claims`].
    pub fn x5t(&self) -> &str {
        &self.x5t
    }

    /// The public key as DER `RSAPublicKey` (PKCS#1), as accepted by
    /// `aws_lc_rs::signature::UnparsedPublicKey` with `RSA_PKCS1_2048_8192_SHA256`.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The public key as a JWK:
    /// `{"kty":"RSA","alg":"RS256","use":"sig","kid":..,"n":..,"e":..}`, with `n` and `e`
    /// base64url without padding and without leading zero bytes.
    pub fn jwk(&self) -> Value {
        let components = PublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(strip_leading_zeros(&components.n)),
            "e": URL_SAFE_NO_PAD.encode(strip_leading_zeros(&components.e)),
        })
    }

    /// Signs `header.claims` with RS256 (RSASSA-PKCS1-v1_5, SHA-256) and returns the
    /// compact JWS. The header is used as given: nothing is added or checked, so tests
    /// can forge odd headers on purpose.
    ///
    /// # Errors
    /// [`TestkitError::Json`] if a value cannot be serialized, [`TestkitError::Signing`]
    /// if aws-lc-rs refuses to sign.
    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, TestkitError> {
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?);
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
        let signing_input = format!("{header}.{claims}");
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| TestkitError::Signing)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// Signs `claims` under GitHub's header shape:
    /// `{"typ":"JWT","alg":"RS256","kid":kid,"x5t":x5t}`.
    ///
    /// # Errors
    /// As [`TestKey::sign`].
    pub fn sign_claims(&self, claims: &Value) -> Result<String, TestkitError> {
        self.sign(&self.header(), claims)
    }

    /// The header [`TestKey::sign_claims`] uses.
    pub fn header(&self) -> Value {
        json!({"typ": "JWT", "alg": "RS256", "kid": self.kid, "x5t": self.x5t})
    }
}

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A JWKS document, `{"keys":[...]}`, listing the given keys in order.
pub fn jwks_json(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes.get(first..).unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_leading_zeros() {
        assert_eq!(strip_leading_zeros(&[0, 0, 1, 0]), &[1, 0]);
        assert_eq!(strip_leading_zeros(&[1, 0, 1]), &[1, 0, 1]);
        assert_eq!(strip_leading_zeros(&[0, 0]), &[0]);
        assert_eq!(strip_leading_zeros(&[]), &[] as &[u8]);
    }

    #[test]
    fn thumbprint_kid_is_40_upper_hex() {
        let key = TestKey::generate_with_thumbprint_kid().unwrap();
        assert_eq!(key.kid().len(), 40);
        assert!(
            key.kid()
                .chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
        );
        assert_eq!(
            format!("{key:?}"),
            format!("TestKey {{ kid: {:?}, .. }}", key.kid())
        );
    }
}
