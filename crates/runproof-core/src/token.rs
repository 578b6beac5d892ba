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

/// Whether JSON text opens an object (the rest is left to the parser).
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
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
        let header = b64(h)?;
        let not_object = || malformed("the header is not a JSON object");
        // serde reads a struct from a JSON array too; a header is an object.
        if !is_object(&header) {
            return Err(not_object());
        }
        let header: RawHeader = serde_json::from_slice(&header).map_err(|_| not_object())?;
        if header.crit.is_some() {
            return Err(malformed("critical header extensions are not supported"));
        }
        let claims = b64(c)?;
        let not_object = || malformed("the claims are not a JSON object");
        if !is_object(&claims) {
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
    use serde_json::Value;

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

    /// Rule: a header is a JSON object. serde would read `["RS256","k",null]` as one.
    #[test]
    fn rule_a_header_that_is_not_an_object_is_malformed() {
        for header in [r#"["RS256","k",null]"#, "[null,null,null]", " [\"RS256\"]"] {
            let token = format!("{}.e30.", URL_SAFE_NO_PAD.encode(header));
            assert_eq!(
                UnverifiedToken::parse(&token).unwrap_err(),
                VerifyError::Malformed {
                    reason: "the header is not a JSON object"
                },
                "{header}"
            );
        }
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

        /// Real JSON in every part, so parsing gets past base64 and into the header and
        /// claims: what it returns must be exactly what was encoded, and what it refuses
        /// exactly what the rules refuse.
        #[test]
        fn structured_tokens_decode_to_what_was_encoded(
            header in header(),
            claims in claims(),
            pad in ("[ \t\r\n]{0,2}", "[ \t\r\n]{0,2}"),
            signature in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let claims_bytes = format!("{}{claims}{}", pad.0, pad.1).into_bytes();
            let h = URL_SAFE_NO_PAD.encode(header.to_string());
            let c = URL_SAFE_NO_PAD.encode(&claims_bytes);
            let token = format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(&signature));
            let want = expected(&header, &claims);
            match (UnverifiedToken::parse(&token), want) {
                (Ok(t), Some((alg, kid, iss))) => {
                    prop_assert_eq!(t.alg(), alg.as_str());
                    prop_assert_eq!(t.kid(), kid.as_deref());
                    prop_assert_eq!(t.unverified_issuer(), iss.as_deref());
                    prop_assert_eq!(t.claims_json(), claims_bytes.as_slice());
                    prop_assert_eq!(t.signature(), signature.as_slice());
                    let signed = format!("{h}.{c}");
                    prop_assert_eq!(t.signing_input(), signed.as_bytes());
                }
                (Err(VerifyError::Malformed { .. }), None) => {}
                (got, want) => prop_assert!(false, "{header} / {claims}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// A small JSON value of any type.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            "(?s).{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A member that should hold a string: absent, null, a string, or anything else.
    fn string_member(likely: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            proptest::sample::select(likely).prop_map(|s| Some(Value::from(s))),
            "(?s).{0,12}".prop_map(|s| Some(Value::from(s))),
            json_value().prop_map(Some),
        ]
    }

    /// An object with random members and `set` members placed (or left out) as given.
    fn object(set: Vec<(&'static str, Option<Value>)>) -> impl Strategy<Value = Value> {
        proptest::collection::btree_map("[a-z]{1,6}", json_value(), 0..5).prop_map(move |m| {
            let mut m: serde_json::Map<String, Value> = m.into_iter().collect();
            for (key, member) in &set {
                m.remove(*key);
                if let Some(v) = member {
                    m.insert((*key).to_owned(), v.clone());
                }
            }
            Value::Object(m)
        })
    }

    fn header() -> impl Strategy<Value = Value> {
        let members = (
            string_member(&["RS256", "none", "HS256"]),
            string_member(&["1F2AB83404C08EC9EA0BB99DAED02186B091DBF4"]),
            prop_oneof![4 => Just(None), 1 => Just(Some(Value::Null)), 1 => json_value().prop_map(Some)],
        );
        prop_oneof![
            8 => members.prop_flat_map(|(alg, kid, crit)| {
                object(vec![("alg", alg), ("kid", kid), ("crit", crit)])
            }),
            // A JSON array reads as a struct's fields in order: still not a header.
            1 => (string_member(&["RS256"]), string_member(&["k"]))
                .prop_map(|(a, k)| Value::Array(vec![
                    a.unwrap_or(Value::Null),
                    k.unwrap_or(Value::Null),
                    Value::Null,
                ])),
            1 => json_value(),
        ]
    }

    fn claims() -> impl Strategy<Value = Value> {
        prop_oneof![
            8 => string_member(&["https://token.actions.githubusercontent.com"])
                .prop_flat_map(|iss| object(vec![("iss", iss)])),
            1 => json_value(),
        ]
    }

    /// A string member as parsing reads it: `Err` for any other type.
    fn as_string(v: Option<&Value>) -> Result<Option<String>, ()> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(()),
        }
    }

    /// `(alg, kid, iss)` of a token that must parse, `None` for one that must not.
    fn expected(
        header: &Value,
        claims: &Value,
    ) -> Option<(String, Option<String>, Option<String>)> {
        let (Value::Object(h), Value::Object(c)) = (header, claims) else {
            return None;
        };
        if h.get("crit").is_some_and(|v| !v.is_null()) {
            return None;
        }
        let alg = as_string(h.get("alg")).ok()?.unwrap_or_default();
        let kid = as_string(h.get("kid")).ok()?;
        let iss = as_string(c.get("iss")).ok()?;
        Some((alg, kid, iss))
    }
}
