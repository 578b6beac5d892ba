use std::fmt;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
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

    /// The private key as DER `PrivateKeyInfo` (PKCS#8 v1).
    ///
    /// # Errors
    /// [`TestkitError::KeyEncoding`] when aws-lc-rs cannot export the key.
    pub fn private_key_pkcs8_der(&self) -> Result<Vec<u8>, TestkitError> {
        let der: Pkcs8V1Der<'static> = self
            .pair
            .as_der()
            .map_err(|_| TestkitError::KeyEncoding("PKCS#8 export failed"))?;
        Ok(der.as_ref().to_vec())
    }

    /// The private key as DER `RSAPrivateKey` (PKCS#1), taken out of its PKCS#8 wrapper.
    ///
    /// # Errors
    /// [`TestkitError::KeyEncoding`] when the key cannot be exported or its PKCS#8
    /// encoding is not an RSA `PrivateKeyInfo`.
    pub fn private_key_pkcs1_der(&self) -> Result<Vec<u8>, TestkitError> {
        pkcs8_to_pkcs1(&self.private_key_pkcs8_der()?).map(<[u8]>::to_vec)
    }

    /// The private key as PEM `-----BEGIN RSA PRIVATE KEY-----` (PKCS#1), base64 in
    /// 64-column lines, as GitHub's App key downloads look.
    ///
    /// # Errors
    /// As [`TestKey::private_key_pkcs1_der`].
    pub fn private_key_pem(&self) -> Result<String, TestkitError> {
        Ok(pem("RSA PRIVATE KEY", &self.private_key_pkcs1_der()?))
    }
}

/// DER `AlgorithmIdentifier` OID for rsaEncryption, 1.2.840.113549.1.1.1, with tag and length.
const RSA_ENCRYPTION_OID: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
];

/// Reads one DER TLV: returns (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), TestkitError> {
    let bad = || TestkitError::KeyEncoding("malformed DER");
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 {
            return Err(bad());
        }
        let (bytes, after) = rest.split_at_checked(count).ok_or_else(bad)?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (contents, rest) = rest.split_at_checked(len).ok_or_else(bad)?;
    Ok((tag, contents, rest))
}

/// Extracts the `RSAPrivateKey` from a PKCS#8 `PrivateKeyInfo`:
/// `SEQUENCE { INTEGER 0, SEQUENCE { rsaEncryption, NULL }, OCTET STRING { RSAPrivateKey } }`.
fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Result<&[u8], TestkitError> {
    let (tag, info, _) = der_tlv(pkcs8)?;
    if tag != 0x30 {
        return Err(TestkitError::KeyEncoding("PKCS#8 is not a SEQUENCE"));
    }
    let (tag, version, rest) = der_tlv(info)?;
    if tag != 0x02 || version != [0] {
        return Err(TestkitError::KeyEncoding("unexpected PKCS#8 version"));
    }
    let (tag, algorithm, rest) = der_tlv(rest)?;
    if tag != 0x30 || !algorithm.starts_with(RSA_ENCRYPTION_OID) {
        return Err(TestkitError::KeyEncoding("PKCS#8 key is not rsaEncryption"));
    }
    let (tag, private_key, _) = der_tlv(rest)?;
    if tag != 0x04 || private_key.first() != Some(&0x30) {
        return Err(TestkitError::KeyEncoding("PKCS#8 has no RSAPrivateKey"));
    }
    Ok(private_key)
}

/// PEM armour: `-----BEGIN {label}-----`, standard base64 in 64-column lines, END line,
/// trailing newline.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
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
    fn pkcs1_pem_round_trips_through_aws_lc() {
        let key = TestKey::generate("k").unwrap();
        let pkcs1 = key.private_key_pkcs1_der().unwrap();
        let parsed = KeyPair::from_der(&pkcs1).unwrap();
        assert_eq!(parsed.public_key().as_ref(), key.pair.public_key().as_ref());
        let pem = key.private_key_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END RSA PRIVATE KEY-----\n"));
        let lines: Vec<&str> = pem.lines().collect();
        let body = &lines[1..lines.len() - 1];
        assert!(body.iter().all(|l| l.len() <= 64));
        assert!(body[..body.len() - 1].iter().all(|l| l.len() == 64));
        assert_eq!(STANDARD.decode(body.concat()).unwrap(), pkcs1);
    }

    #[test]
    fn der_reader_rejects_garbage() {
        assert!(pkcs8_to_pkcs1(&[]).is_err());
        assert!(pkcs8_to_pkcs1(&[0x30, 0x82, 0xFF]).is_err());
        assert!(pkcs8_to_pkcs1(&[0x30, 0x03, 0x02, 0x01, 0x01]).is_err());
        assert!(der_tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_err());
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
