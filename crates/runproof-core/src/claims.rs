//! Claims of a verified token and the run identity they vouch for.
//!
//! Claims runproof has a use for get a typed field of [`RunIdentity`]. The other string
//! claims (such as `repo_property_*`) are kept, bounded, in [`ExtraClaims`] so that a
//! trust rule may name them. No claim runproof does not require can fail verification: an
//! optional claim of the wrong type is treated as absent, and so fails closed wherever a
//! rule needs it. `sub` is never kept: it repeats names and its format changes (GitHub's
//! immutable subject, `repo:owner@OWNER_ID/repo@REPO_ID:…`), and no decision reads it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::VerifyError;
use crate::ids::{ActorId, CheckRunId, EnterpriseId, InstallationId, OwnerId, RepositoryId, RunId};
use crate::time::UnixTime;

/// The verified identity of a GitHub Actions run.
///
/// Every verification mode ends in this value. Names (`repository`, `repository_owner`,
/// `actor`) are for display only; decisions use the ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// The issuer that vouched for the run (the OIDC issuer, or `https://api.github.com`
    /// for modes that ask GitHub's API).
    pub issuer: String,
    /// `owner/name`, for display.
    pub repository: String,
    /// The repository's id: what decisions compare.
    pub repository_id: RepositoryId,
    /// The owner's login, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_owner: Option<String>,
    /// The owner's id.
    pub repository_owner_id: OwnerId,
    /// `public`, `private` or `internal`, when the issuer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_visibility: Option<String>,
    /// The enterprise's slug, for display, when the repository belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise: Option<String>,
    /// The enterprise's id, when the repository belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_id: Option<EnterpriseId>,
    /// The workflow run's id.
    pub run_id: RunId,
    /// The attempt number of the run (1 for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_attempt: Option<u32>,
    /// The check run of the job, which identifies the job within the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_run_id: Option<CheckRunId>,
    /// The commit the run is for.
    pub sha: String,
    /// The git ref, such as `refs/heads/main`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// `branch` or `tag`, when the issuer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_type: Option<String>,
    /// Whether the ref is protected (branch protection or rulesets), when the issuer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_protected: Option<bool>,
    /// The workflow file and ref, such as `o/r/.github/workflows/ci.yml@refs/heads/main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_ref: Option<String>,
    /// The commit of the calling workflow file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_sha: Option<String>,
    /// The reusable workflow the job ran, if any (else the same as `workflow_ref`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_workflow_ref: Option<String>,
    /// The commit of the workflow file the job ran (`job_workflow_ref`'s file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_workflow_sha: Option<String>,
    /// The event that triggered the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// The login of the user who triggered the run, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The id of the user who triggered the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<ActorId>,
    /// `github-hosted` or `self-hosted`, when the issuer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_environment: Option<String>,
    /// The deployment environment of the job, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The issuer's other string claims, bounded, so that a trust rule may name them.
    #[serde(default, skip_serializing_if = "ExtraClaims::is_empty")]
    pub extra_claims: ExtraClaims,
    /// The App installation the repository belongs to, once bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<InstallationId>,
    /// Fields that the mode could not verify and took from the client as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unverified: Vec<String>,
}

impl RunIdentity {
    /// An identity with only what every mode knows: who vouched, the repository, its owner,
    /// the run and the commit. Every other claim is absent until set.
    #[must_use]
    pub fn new(
        issuer: String,
        repository_id: RepositoryId,
        repository_owner_id: OwnerId,
        run_id: RunId,
        sha: String,
    ) -> Self {
        Self {
            issuer,
            repository: String::new(),
            repository_id,
            repository_owner: None,
            repository_owner_id,
            repository_visibility: None,
            enterprise: None,
            enterprise_id: None,
            run_id,
            run_attempt: None,
            check_run_id: None,
            sha,
            git_ref: None,
            ref_type: None,
            ref_protected: None,
            workflow_ref: None,
            workflow_sha: None,
            job_workflow_ref: None,
            job_workflow_sha: None,
            event_name: None,
            actor: None,
            actor_id: None,
            runner_environment: None,
            environment: None,
            extra_claims: ExtraClaims::default(),
            installation_id: None,
            unverified: Vec::new(),
        }
    }

    /// The value of claim `name` as the issuer sends it (ids and numbers as decimal
    /// strings, `ref_protected` as `"true"` or `"false"`), from a typed field or from
    /// [`RunIdentity::extra_claims`].
    ///
    /// `None` when the identity lacks it, and for every field listed in `unverified`: a
    /// value the client gave proves nothing. `sub` is never kept, so it is always `None`.
    #[must_use]
    pub fn claim(&self, name: &str) -> Option<Cow<'_, str>> {
        fn borrowed(s: &Option<String>) -> Option<Cow<'_, str>> {
            s.as_deref().map(Cow::Borrowed)
        }
        if self.unverified.iter().any(|u| u == name) {
            return None;
        }
        let shown = |v: Option<u64>| v.map(|v| Cow::Owned(v.to_string()));
        match name {
            "iss" => Some(Cow::Borrowed(self.issuer.as_str())),
            "repository" => Some(Cow::Borrowed(self.repository.as_str())),
            "repository_id" => shown(Some(self.repository_id.get())),
            "repository_owner" => borrowed(&self.repository_owner),
            "repository_owner_id" => shown(Some(self.repository_owner_id.get())),
            "repository_visibility" => borrowed(&self.repository_visibility),
            "enterprise" => borrowed(&self.enterprise),
            "enterprise_id" => shown(self.enterprise_id.map(EnterpriseId::get)),
            "run_id" => shown(Some(self.run_id.get())),
            "run_attempt" => shown(self.run_attempt.map(u64::from)),
            "check_run_id" => shown(self.check_run_id.map(CheckRunId::get)),
            "sha" => Some(Cow::Borrowed(self.sha.as_str())),
            "ref" => borrowed(&self.git_ref),
            "ref_type" => borrowed(&self.ref_type),
            "ref_protected" => self
                .ref_protected
                .map(|p| Cow::Borrowed(if p { "true" } else { "false" })),
            "workflow_ref" => borrowed(&self.workflow_ref),
            "workflow_sha" => borrowed(&self.workflow_sha),
            "job_workflow_ref" => borrowed(&self.job_workflow_ref),
            "job_workflow_sha" => borrowed(&self.job_workflow_sha),
            "event_name" => borrowed(&self.event_name),
            "actor" => borrowed(&self.actor),
            "actor_id" => shown(self.actor_id.map(ActorId::get)),
            "runner_environment" => borrowed(&self.runner_environment),
            "environment" => borrowed(&self.environment),
            other => self.extra_claims.get(other).map(Cow::Borrowed),
        }
    }
}

/// At most this many claims are kept in [`ExtraClaims`]; further ones are ignored.
pub const MAX_EXTRA_CLAIMS: usize = 64;
/// Claims with a longer name are not kept in [`ExtraClaims`].
pub const MAX_EXTRA_CLAIM_NAME_BYTES: usize = 128;
/// Claims with a longer value are not kept in [`ExtraClaims`].
pub const MAX_EXTRA_CLAIM_VALUE_BYTES: usize = 1024;
/// Once names and values kept reach this many bytes, further claims are ignored.
pub const MAX_EXTRA_CLAIMS_BYTES: usize = 8 * 1024;

/// The string claims of a token that no typed field of [`RunIdentity`] carries, such as
/// `repo_property_team` or `workflow`.
///
/// Bounded by construction, whether read from a token or from storage: only string values
/// are kept, `sub` never, and claims beyond [`MAX_EXTRA_CLAIMS`] or the byte bounds are
/// ignored, never an error. A rule that needs an ignored claim does not match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExtraClaims(BTreeMap<String, String>);

impl ExtraClaims {
    /// Whether no claim is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many claims are kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The value of claim `name`, if kept.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The kept claims, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Keeps `name = value` if the bounds allow; returns whether it was kept.
    pub fn insert(&mut self, name: String, value: String) -> bool {
        let used: usize = self.0.iter().map(|(k, v)| k.len() + v.len()).sum();
        let fits = name != "sub"
            && !name.is_empty()
            && name.len() <= MAX_EXTRA_CLAIM_NAME_BYTES
            && value.len() <= MAX_EXTRA_CLAIM_VALUE_BYTES
            && used + name.len() + value.len() <= MAX_EXTRA_CLAIMS_BYTES
            && (self.0.len() < MAX_EXTRA_CLAIMS || self.0.contains_key(&name));
        if fits {
            self.0.insert(name, value);
        }
        fits
    }
}

impl<'de> Deserialize<'de> for ExtraClaims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ExtraClaims;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of claims")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = ExtraClaims::default();
                while let Some(name) = map.next_key::<String>()? {
                    if let AnyValue::Str(value) = map.next_value::<AnyValue>()? {
                        out.insert(name, value);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// A claim value of any JSON type, of which only a string is kept.
#[derive(Deserialize)]
#[serde(untagged)]
enum AnyValue {
    Str(String),
    Other(serde::de::IgnoredAny),
}

/// A token whose signature, issuer, audience, lifetime and policy have all checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The run identity the token vouches for.
    pub identity: RunIdentity,
    /// The token's unique id, for replay protection.
    pub jti: String,
    /// The token's `exp`.
    pub expires_at: UnixTime,
    /// The token's `iat`.
    pub issued_at: UnixTime,
}

/// The GitHub Actions claims runproof reads. Unknown claims are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct GithubClaims {
    pub(crate) iss: Option<String>,
    pub(crate) aud: Option<Audience>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) jti: Option<String>,
    pub(crate) repository: Option<String>,
    pub(crate) repository_id: Option<RepositoryId>,
    pub(crate) repository_owner: Option<String>,
    pub(crate) repository_owner_id: Option<OwnerId>,
    pub(crate) run_id: Option<RunId>,
    #[serde(default, deserialize_with = "opt_u32")]
    pub(crate) run_attempt: Option<u32>,
    pub(crate) sha: Option<String>,
    #[serde(rename = "ref")]
    pub(crate) git_ref: Option<String>,
    pub(crate) workflow_ref: Option<String>,
    pub(crate) job_workflow_ref: Option<String>,
    pub(crate) event_name: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) runner_environment: Option<String>,
    pub(crate) environment: Option<String>,
    // The claims below were added after the ones above. A wrong type makes them absent
    // rather than failing verification, so that no token verifying before fails now.
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) repository_visibility: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) enterprise: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) enterprise_id: Option<EnterpriseId>,
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) check_run_id: Option<CheckRunId>,
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) ref_type: Option<String>,
    #[serde(default, deserialize_with = "opt_flag")]
    pub(crate) ref_protected: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) workflow_sha: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) job_workflow_sha: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) actor_id: Option<ActorId>,
    /// Every other claim; only bounded string ones are kept, and never `sub`.
    #[serde(flatten)]
    pub(crate) extra: ExtraClaims,
}

/// `aud` as sent: one string, or anything else (a list, a number), which is refused.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Other(serde::de::IgnoredAny),
}

fn opt_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "crate::ids::deserialize_u32_lenient")] u32);
    Option::<W>::deserialize(d).map(|o| o.map(|w| w.0))
}

/// An optional claim that is absent unless it has the expected type.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient<T> {
        Typed(T),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Lenient::<T>::deserialize(d)? {
        Lenient::Typed(v) => Some(v),
        Lenient::Other(_) => None,
    })
}

/// A flag GitHub sends as the string `"true"` or `"false"`; a JSON boolean is accepted
/// too. Anything else is absent.
fn opt_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Str(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Flag::deserialize(d)? {
        Flag::Bool(b) => Some(b),
        Flag::Str(s) if s == "true" => Some(true),
        Flag::Str(s) if s == "false" => Some(false),
        Flag::Str(_) | Flag::Other(_) => None,
    })
}

/// Whether `sha` is a full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
#[must_use]
pub fn is_commit_sha(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn required<T>(value: Option<T>, claim: &'static str) -> Result<T, VerifyError> {
    value.ok_or(VerifyError::MissingClaim { claim })
}

/// Claims with every required one present, but not yet checked against configuration.
pub(crate) struct CheckedClaims {
    pub(crate) iss: String,
    pub(crate) aud: Audience,
    pub(crate) exp: i64,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: i64,
    pub(crate) jti: String,
    pub(crate) identity: RunIdentity,
}

impl GithubClaims {
    /// Checks that every required claim is present and well-formed.
    pub(crate) fn require(self) -> Result<CheckedClaims, VerifyError> {
        let iss = required(self.iss, "iss")?;
        let aud = required(self.aud, "aud")?;
        let exp = required(self.exp, "exp")?;
        let iat = required(self.iat, "iat")?;
        let jti = required(self.jti.filter(|j| !j.is_empty() && j.len() <= 256), "jti")?;
        let repository = required(self.repository.filter(|r| r.contains('/')), "repository")?;
        let repository_id = required(self.repository_id, "repository_id")?;
        let repository_owner_id = required(self.repository_owner_id, "repository_owner_id")?;
        let run_id = required(self.run_id, "run_id")?;
        let sha = required(self.sha.filter(|s| is_commit_sha(s)), "sha")?;
        Ok(CheckedClaims {
            identity: RunIdentity {
                issuer: iss.clone(),
                repository,
                repository_id,
                repository_owner: self.repository_owner,
                repository_owner_id,
                repository_visibility: self.repository_visibility,
                enterprise: self.enterprise,
                enterprise_id: self.enterprise_id,
                run_id,
                run_attempt: self.run_attempt,
                check_run_id: self.check_run_id,
                sha,
                git_ref: self.git_ref,
                ref_type: self.ref_type,
                ref_protected: self.ref_protected,
                workflow_ref: self.workflow_ref,
                workflow_sha: self.workflow_sha.filter(|s| is_commit_sha(s)),
                job_workflow_ref: self.job_workflow_ref,
                job_workflow_sha: self.job_workflow_sha.filter(|s| is_commit_sha(s)),
                event_name: self.event_name,
                actor: self.actor,
                actor_id: self.actor_id,
                runner_environment: self.runner_environment,
                environment: self.environment,
                extra_claims: self.extra,
                installation_id: None,
                unverified: Vec::new(),
            },
            iss,
            aud,
            exp,
            nbf: self.nbf,
            iat,
            jti,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An identity as stored before the claims for trust rules existed.
    const STORED_BEFORE: &str = r#"{"issuer":"https://token.actions.githubusercontent.com","repository":"o/r","repository_id":10,"repository_owner":"o","repository_owner_id":20,"run_id":30,"run_attempt":1,"sha":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","ref":"refs/heads/main","workflow_ref":"o/r/.github/workflows/ci.yml@refs/heads/main","event_name":"push","runner_environment":"github-hosted","installation_id":42}"#;

    #[test]
    fn identities_stored_before_decode_and_serialize_as_before() {
        let identity: RunIdentity = serde_json::from_str(STORED_BEFORE).unwrap();
        assert_eq!(identity.ref_protected, None);
        assert!(identity.extra_claims.is_empty());
        assert_eq!(serde_json::to_string(&identity).unwrap(), STORED_BEFORE);
    }

    #[test]
    fn new_claims_round_trip_through_storage() {
        let mut identity: RunIdentity = serde_json::from_str(STORED_BEFORE).unwrap();
        identity.ref_protected = Some(false);
        identity.actor_id = Some(ActorId(7));
        identity.check_run_id = Some(CheckRunId(8));
        identity.enterprise_id = Some(EnterpriseId(9));
        identity.job_workflow_sha = Some("b".repeat(40));
        assert!(
            identity
                .extra_claims
                .insert("repo_property_team".into(), "infra".into())
        );
        let json = serde_json::to_value(&identity).unwrap();
        assert_eq!(json["ref_protected"], serde_json::json!(false));
        assert_eq!(json["actor_id"], serde_json::json!(7));
        assert_eq!(
            json["extra_claims"],
            serde_json::json!({"repo_property_team": "infra"})
        );
        let back: RunIdentity = serde_json::from_value(json).unwrap();
        assert_eq!(back, identity);
    }

    #[test]
    fn rule_a_claim_taken_unverified_is_no_claim() {
        let mut identity: RunIdentity = serde_json::from_str(STORED_BEFORE).unwrap();
        assert_eq!(
            identity.claim("sha").as_deref(),
            Some("a".repeat(40).as_str())
        );
        assert_eq!(identity.claim("repository_id").as_deref(), Some("10"));
        identity.unverified = vec!["sha".into(), "repository_id".into()];
        assert_eq!(identity.claim("sha"), None);
        assert_eq!(identity.claim("repository_id"), None);
        assert_eq!(identity.claim("ref").as_deref(), Some("refs/heads/main"));
    }

    #[test]
    fn rule_extra_claims_keep_no_sub_and_stay_within_bounds() {
        let mut claims = ExtraClaims::default();
        assert!(!claims.insert("sub".into(), "repo:o/r:ref:refs/heads/main".into()));
        assert!(!claims.insert(String::new(), "v".into()));
        assert!(!claims.insert("n".repeat(MAX_EXTRA_CLAIM_NAME_BYTES + 1), "v".into()));
        assert!(!claims.insert("n".into(), "v".repeat(MAX_EXTRA_CLAIM_VALUE_BYTES + 1)));
        assert!(claims.is_empty());
        // The byte budget: values of the largest size fill it before the count does.
        let mut i = 0;
        while claims.insert(format!("c{i:02}"), "v".repeat(MAX_EXTRA_CLAIM_VALUE_BYTES)) {
            i += 1;
        }
        assert_eq!(
            i,
            MAX_EXTRA_CLAIMS_BYTES / (MAX_EXTRA_CLAIM_VALUE_BYTES + 3)
        );
        // The count: short claims stop at the bound.
        let mut claims = ExtraClaims::default();
        for i in 0..MAX_EXTRA_CLAIMS * 2 {
            claims.insert(format!("c{i:03}"), "v".into());
        }
        assert_eq!(claims.len(), MAX_EXTRA_CLAIMS);
        // A stored map is held to the same bounds, and non-strings are dropped.
        let stored = serde_json::json!({"sub": "x", "a": "1", "b": 2, "c": null});
        let read: ExtraClaims = serde_json::from_value(stored).unwrap();
        assert_eq!(read.iter().collect::<Vec<_>>(), vec![("a", "1")]);
    }
}
