//! GitHub's official webhook signature vector and octokit's, from
//! `tests/fixtures/realworld/webhook_hmac`.

use std::path::PathBuf;

use runproof_core::Secret;
use runproof_core::webhook::{SignatureError, sign, verify_signature};

#[derive(serde::Deserialize)]
struct Vector {
    name: String,
    secret: String,
    payload_file: String,
    x_hub_signature_256: String,
}

#[test]
fn realworld_vectors_verify_and_reject_tampering() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/webhook_hmac");
    let json = std::fs::read(dir.join("vectors.json"))
        .unwrap_or_else(|e| panic!("{}: {e} (fixtures in the repository)", dir.display()));
    let vectors: Vec<Vector> = serde_json::from_slice(&json).unwrap();
    assert!(vectors.len() >= 4);
    for v in vectors {
        let body = std::fs::read(dir.join(&v.payload_file)).unwrap();
        let secret = Secret::new(v.secret.clone());
        let header = v.x_hub_signature_256.as_bytes();
        assert_eq!(
            verify_signature(&body, Some(header), std::slice::from_ref(&secret)),
            Ok(()),
            "{}",
            v.name
        );
        assert_eq!(sign(&secret, &body), v.x_hub_signature_256, "{}", v.name);
        let mut tampered = body.clone();
        tampered.push(b' ');
        assert_eq!(
            verify_signature(&tampered, Some(header), &[secret]),
            Err(SignatureError::Mismatch),
            "{}: rule webhook signature covers every byte",
            v.name
        );
        let other = Secret::new(format!("{}x", v.secret));
        assert_eq!(
            verify_signature(&body, Some(header), &[other]),
            Err(SignatureError::Mismatch)
        );
    }
}
