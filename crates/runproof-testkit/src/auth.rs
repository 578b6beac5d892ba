//! How the fake checks a REST request's credential: App JWTs as GitHub checks them,
//! and which repositories an installation token or a run's `GITHUB_TOKEN` sees.
//!
//! It depends on [`crate::state`] and [`crate::http`]; the routes call it.

use std::collections::HashMap;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::http::{DOCS_REST, Refusal, credential, refusal};
use crate::key::TestKey;
use crate::state::{ApiState, Grant};

/// Allowed clock skew for an App JWT's `iat`.
const JWT_IAT_SKEW: i64 = 60;
/// Longest App JWT lifetime GitHub accepts.
const JWT_MAX_LIFETIME: i64 = 600;

const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";
const JWT_EXP_INVALID: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
const JWT_EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
const JWT_IAT_INVALID: &str = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";

/// A repository as a token sees it.
pub(crate) struct Visible {
    pub(crate) id: u64,
    pub(crate) full_name: String,
    pub(crate) owner_id: u64,
}

/// Why an App JWT was refused: the message GitHub would send, and a precise reason
/// for [`crate::FakeGithub::last_app_jwt_error`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) message: &'static str,
    pub(crate) reason: String,
}

fn reject(message: &'static str, reason: impl Into<String>) -> Rejection {
    Rejection {
        message,
        reason: reason.into(),
    }
}

fn bad_credentials() -> Refusal {
    refusal(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS_REST)
}

fn int_claim(value: Option<&Value>) -> Option<i64> {
    value.and_then(Value::as_i64)
}

/// Checks an App JWT as GitHub does: RS256 only, signed by the key of the App named by
/// `iss` (number or numeric string), `exp` in the future, `iat` at most 60 s ahead,
/// lifetime `exp - iat` at most 10 minutes. Returns the App id.
pub(crate) fn verify_app_jwt(
    apps: &HashMap<u64, TestKey>,
    jwt: Option<&str>,
    now: i64,
) -> Result<u64, Rejection> {
    let jwt = jwt.ok_or_else(|| {
        reject(
            JWT_UNDECODABLE,
            "missing `Authorization: Bearer <JWT>` header",
        )
    })?;
    let mut parts = jwt.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(JWT_UNDECODABLE, "not a compact JWS (three parts)"));
    };
    let decode = |part: &str, what: &str| -> Result<Value, Rejection> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| reject(JWT_UNDECODABLE, format!("{what} is not base64url")))?;
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| reject(JWT_UNDECODABLE, format!("{what} is not a JSON object")))
    };
    let jose = decode(header_b64, "header")?;
    match jose.get("alg").and_then(Value::as_str) {
        Some("RS256") => {}
        other => {
            return Err(reject(
                JWT_UNDECODABLE,
                format!("alg {other:?} is not RS256"),
            ));
        }
    }
    let claims = decode(claims_b64, "claims")?;
    let app_id = match claims.get("iss") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| reject(JWT_UNDECODABLE, "iss is missing or not an App id"))?;
    let key = apps.get(&app_id).ok_or_else(|| {
        reject(
            JWT_UNDECODABLE,
            format!("no App registered with id {app_id}"),
        )
    })?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| reject(JWT_UNDECODABLE, "signature is not base64url"))?;
    let signing_input = format!("{header_b64}.{claims_b64}");
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key_der())
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| {
            reject(
                JWT_UNDECODABLE,
                format!("signature does not verify with App {app_id}'s key"),
            )
        })?;
    let exp = int_claim(claims.get("exp"))
        .ok_or_else(|| reject(JWT_EXP_INVALID, "exp is missing or not an integer"))?;
    if exp <= now {
        return Err(reject(
            JWT_EXP_INVALID,
            format!("expired: exp {exp} <= now {now}"),
        ));
    }
    let iat = int_claim(claims.get("iat"))
        .ok_or_else(|| reject(JWT_IAT_INVALID, "iat is missing or not an integer"))?;
    if iat > now.saturating_add(JWT_IAT_SKEW) {
        return Err(reject(
            JWT_IAT_INVALID,
            format!("iat {iat} is more than {JWT_IAT_SKEW} s after now {now}"),
        ));
    }
    if exp.saturating_sub(iat) > JWT_MAX_LIFETIME {
        return Err(reject(
            JWT_EXP_TOO_FAR,
            format!(
                "lifetime exp - iat = {} s exceeds {JWT_MAX_LIFETIME} s",
                exp.saturating_sub(iat)
            ),
        ));
    }
    Ok(app_id)
}

impl ApiState {
    /// Checks the App JWT of a request, recording the outcome.
    pub(crate) fn authenticate_app(
        &mut self,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<u64, Refusal> {
        match verify_app_jwt(&self.apps, credential(headers, &["bearer"]), now) {
            Ok(app_id) => {
                self.app_jwt_uses = self.app_jwt_uses.saturating_add(1);
                Ok(app_id)
            }
            Err(rejection) => {
                tracing::debug!(reason = %rejection.reason, "fake GitHub refused an App JWT");
                self.last_jwt_error = Some(rejection.reason);
                Err(refusal(
                    StatusCode::UNAUTHORIZED,
                    rejection.message,
                    DOCS_REST,
                ))
            }
        }
    }

    /// The repositories an installation or run token sees, in order.
    pub(crate) fn authenticate_token(
        &self,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<Vec<Visible>, Refusal> {
        let Some(token) = credential(headers, &["token", "bearer"]) else {
            return Err(refusal(
                StatusCode::UNAUTHORIZED,
                "Requires authentication",
                DOCS_REST,
            ));
        };
        match self.tokens.get(token) {
            Some(Grant::Fixed {
                repositories,
                owner_id,
            }) => Ok(repositories
                .iter()
                .map(|r| Visible {
                    id: r.id,
                    full_name: r.full_name.clone(),
                    owner_id: *owner_id,
                })
                .collect()),
            Some(Grant::Installation {
                installation_id,
                repository_ids,
                expires_at,
            }) if *expires_at > now => {
                let installation = self
                    .installations
                    .get(installation_id)
                    .filter(|i| i.suspended_at.is_none())
                    .ok_or_else(bad_credentials)?;
                Ok(installation
                    .repositories
                    .iter()
                    .filter(|r| {
                        repository_ids
                            .as_ref()
                            .is_none_or(|ids| ids.contains(&r.id))
                    })
                    .map(|r| Visible {
                        id: r.id,
                        full_name: r.full_name.clone(),
                        owner_id: installation.account_id,
                    })
                    .collect())
            }
            _ => Err(bad_credentials()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_structure_errors_are_undecodable() {
        let apps = HashMap::new();
        for jwt in [None, Some("a.b"), Some("a.b.c.d"), Some("!!.e30.")] {
            let err = verify_app_jwt(&apps, jwt, 0).unwrap_err();
            assert_eq!(err.message, JWT_UNDECODABLE, "{jwt:?}");
        }
    }
}
