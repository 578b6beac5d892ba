//! Real GitHub Actions tokens and JWKS, written by GitHub and collected elsewhere, verify
//! inside their lifetime and fail outside it.
#![allow(clippy::panic)]

use std::path::PathBuf;

use runproof_core::{
    KeySet, Policy, RepositoryId, UnixTime, UnverifiedToken, Verifier, VerifierConfig, VerifyError,
};

const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn realworld(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/oidc")
        .join(path);
    std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (fixtures in the repository)", p.display()))
}

fn verifier(audience: &str) -> Verifier {
    Verifier::new(VerifierConfig {
        issuers: vec![GITHUB_ISSUER.into()],
        audience: audience.into(),
        leeway_seconds: 60,
        policy: Policy::default(),
    })
}

struct Case {
    token: &'static str,
    jwks: &'static str,
    audience: &'static str,
    iat: i64,
    exp: i64,
    repository_id: u64,
}

const CASES: [Case; 2] = [
    Case {
        token: "step-security_github_oidc_token_2022-08-05.jwt",
        jwks: "step-security_jwks_2022.json",
        audience: "https://github.com/varunsh-coder",
        iat: 1_659_662_993,
        exp: 1_659_663_293,
        repository_id: 433_903_792,
    },
    Case {
        token: "tok_2025-01_neu-se.jwt",
        jwks: "jwks_2025-06_crates.io.json",
        audience: "https://github.com/neu-se",
        iat: 1_738_115_363,
        exp: 1_738_115_663,
        repository_id: 922_761_846,
    },
];

#[test]
fn real_tokens_verify_inside_their_lifetime_and_fail_after() {
    for case in &CASES {
        let (token, jwks) = (realworld(case.token), realworld(case.jwks));
        let token = String::from_utf8(token).unwrap();
        let keys = KeySet::from_jwks_json(&jwks).unwrap();
        let v = verifier(case.audience);

        let ok = v
            .verify(
                UnverifiedToken::parse(token.trim()).unwrap(),
                &keys,
                UnixTime(case.iat + 10),
            )
            .unwrap();
        assert_eq!(ok.identity.repository_id, RepositoryId(case.repository_id));
        assert_eq!(ok.identity.issuer, GITHUB_ISSUER);
        assert_eq!(ok.expires_at, UnixTime(case.exp));

        let late = v.verify(
            UnverifiedToken::parse(token.trim()).unwrap(),
            &keys,
            UnixTime(case.exp + 61),
        );
        assert!(matches!(late, Err(VerifyError::Expired { .. })), "{late:?}");

        let wrong_aud = verifier("https://runproof.example.com").verify(
            UnverifiedToken::parse(token.trim()).unwrap(),
            &keys,
            UnixTime(case.iat + 10),
        );
        assert_eq!(
            wrong_aud.unwrap_err(),
            VerifyError::WrongAudience,
            "rule: custom audience"
        );

        let mut forged = token.trim().to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        let bad = v.verify(
            UnverifiedToken::parse(&forged).unwrap(),
            &keys,
            UnixTime(case.iat + 10),
        );
        assert!(
            matches!(
                bad,
                Err(VerifyError::BadSignature | VerifyError::Malformed { .. })
            ),
            "{bad:?}"
        );
    }
}
