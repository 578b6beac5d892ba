//! Trust rules: which runs may upload, matched against a verified [`RunIdentity`].
//!
//! A rule names what a run must be: its repository and owner (by id), the calling
//! workflow's file, the reusable workflow the job ran (at a ref or pinned to a commit),
//! the ref, whether the ref is protected, the environment, the event, the runner, and any
//! other string claim. Rules come in layers (the App's, the repository's); a run must match
//! at least one rule of each non-empty layer.
//!
//! - A rule matches when every field it sets matches. A list field matches when any one of
//!   its entries matches. A field left out adds no constraint; an empty list is refused by
//!   [`TrustRule::validate`] rather than guessed at.
//! - An identity lacking a claim a rule needs does not match it, and neither does a claim
//!   the verification mode took from the client unverified (see [`RunIdentity::claim`]).
//! - An empty layer adds no constraint: without rules, a valid token from an installed
//!   repository is enough, as it was before rules existed.
//! - When no rule of a layer matches, the refusal names the nearest rule (the fewest
//!   mismatching fields; the first on a tie) and each of its [`Mismatch`]es. Claims are the
//!   caller's own, so they may be shown to it.
//!
//! Patterns (`workflows`, `job_workflows`, `refs`): `*` matches any run of characters
//! within one path segment (never `/`), `**` any run across segments, and every other
//! character only itself. There are no classes, alternatives or escapes. Matching
//! simulates the pattern's states side by side, so it takes time linear in the text for a
//! pattern of bounded length, whatever the pattern. `environments`, `events`,
//! `runner_environments` and `claims` compare exactly.
//!
//! What each field proves, in brief: ids cannot be renamed or re-registered; `workflows`
//! binds the file of the calling workflow in the run's own repository; `job_workflows`
//! binds the file the job actually ran, which for a reusable workflow lives in another
//! repository, named by owner and repository names: a commit sha pins its content, a ref
//! pattern trusts whoever can push that ref there.
//!
//! This module decides nothing about where rules come from (configuration, the API, a file
//! in the repository): it takes them as values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::claims::{RunIdentity, is_commit_sha};
use crate::ids::{OwnerId, RepositoryId};

/// The most rules a layer may hold.
pub const MAX_RULES_PER_LAYER: usize = 64;
/// The most entries a list field (or `claims`) of a rule may hold.
pub const MAX_ENTRIES: usize = 64;
/// The longest pattern or exact value of a list field, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;
/// The longest rule name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// The longest claim name in `claims`, in bytes.
pub const MAX_CLAIM_NAME_BYTES: usize = crate::claims::MAX_EXTRA_CLAIM_NAME_BYTES;
/// The longest claim value in `claims`, in bytes.
pub const MAX_CLAIM_VALUE_BYTES: usize = crate::claims::MAX_EXTRA_CLAIM_VALUE_BYTES;

/// One trust rule. Every field but `name` is a constraint; a field left out adds none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRule {
    /// Shown in refusals and explanations.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The run's `repository_owner_id` is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_owner_ids: Option<Vec<OwnerId>>,
    /// The run's `repository_id` is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_ids: Option<Vec<RepositoryId>>,
    /// Patterns for the path part of `workflow_ref` (the calling workflow's file, between
    /// `owner/repo/` and `@`), such as `.github/workflows/release.yml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflows: Option<Vec<String>>,
    /// The workflow the job ran: `owner/repo/path@ref-pattern`, matched against
    /// `job_workflow_ref`, or `owner/repo/path@<commit sha>`, whose sha must equal
    /// `job_workflow_sha` (and whose path part must match `job_workflow_ref`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_workflows: Option<Vec<String>>,
    /// Patterns for `ref`, written in full, such as `refs/heads/main` or `refs/tags/v*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs: Option<Vec<String>>,
    /// `ref_protected` equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_protected: Option<bool>,
    /// `environment` is one of these, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<String>>,
    /// `event_name` is one of these, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// `runner_environment` is one of these, exactly (`github-hosted`, `self-hosted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_environments: Option<Vec<String>>,
    /// Each named claim equals its value exactly (any string claim, such as
    /// `repo_property_team`; ids as decimal strings). `sub` may not be named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<BTreeMap<String, String>>,
}

/// Why a rule breaks a bound or cannot mean anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldProblem {
    /// An empty list would match nothing; the field should be left out instead.
    #[error("an empty list matches nothing; leave the field out for no constraint")]
    EmptyList,
    /// Too many entries.
    #[error("at most {max} entries")]
    TooManyEntries {
        /// The bound.
        max: usize,
    },
    /// An entry is too long.
    #[error("an entry is longer than {max} bytes")]
    TooLong {
        /// The bound, in bytes.
        max: usize,
    },
    /// An entry is empty.
    #[error("an entry is empty")]
    EmptyEntry,
    /// An entry is not of the field's form.
    #[error("{reason}")]
    Invalid {
        /// What the form is.
        reason: &'static str,
    },
}

/// A field of a rule that breaks a bound, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The rule's field, as spelled in configuration.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: FieldProblem,
}

/// A layer of rules that breaks a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The layer holds too many rules.
    #[error("a layer holds at most {max} rules, not {count}")]
    TooManyRules {
        /// How many it holds.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// One rule breaks a bound.
    #[error("rule {index} ({name:?}): {error}")]
    InRule {
        /// The rule's position in its layer, from 0.
        index: usize,
        /// The rule's name.
        name: String,
        /// The field and the problem.
        #[source]
        error: FieldError,
    },
}

/// Validates a whole layer: its size and each rule.
///
/// # Errors
/// [`RuleError::TooManyRules`], or [`RuleError::InRule`] for the first rule that breaks a
/// bound.
pub fn validate_layer(rules: &[TrustRule]) -> Result<(), RuleError> {
    if rules.len() > MAX_RULES_PER_LAYER {
        return Err(RuleError::TooManyRules {
            count: rules.len(),
            max: MAX_RULES_PER_LAYER,
        });
    }
    for (index, rule) in rules.iter().enumerate() {
        rule.validate().map_err(|error| RuleError::InRule {
            index,
            name: rule.name.clone(),
            error,
        })?;
    }
    Ok(())
}

fn field_error(field: &'static str, problem: FieldProblem) -> FieldError {
    FieldError { field, problem }
}

fn invalid(field: &'static str, reason: &'static str) -> FieldError {
    field_error(field, FieldProblem::Invalid { reason })
}

/// Checks a list's size and each entry's length, then each entry with `check`.
fn check_list<T>(
    field: &'static str,
    list: Option<&[T]>,
    len: impl Fn(&T) -> usize,
    check: impl Fn(&T) -> Result<(), &'static str>,
) -> Result<(), FieldError> {
    let Some(list) = list else { return Ok(()) };
    if list.is_empty() {
        return Err(field_error(field, FieldProblem::EmptyList));
    }
    if list.len() > MAX_ENTRIES {
        return Err(field_error(
            field,
            FieldProblem::TooManyEntries { max: MAX_ENTRIES },
        ));
    }
    for entry in list {
        match len(entry) {
            0 => return Err(field_error(field, FieldProblem::EmptyEntry)),
            n if n > MAX_PATTERN_BYTES => {
                return Err(field_error(
                    field,
                    FieldProblem::TooLong {
                        max: MAX_PATTERN_BYTES,
                    },
                ));
            }
            _ => {}
        }
        check(entry).map_err(|reason| invalid(field, reason))?;
    }
    Ok(())
}

fn check_pattern(pattern: &str) -> Result<(), &'static str> {
    if pattern.contains("***") {
        return Err("`***` means nothing: use `*` within a segment or `**` across segments");
    }
    if pattern.chars().any(char::is_control) {
        return Err("a pattern holds no control characters");
    }
    Ok(())
}

fn check_exact(value: &str) -> Result<(), &'static str> {
    if value.contains('*') {
        return Err("this field compares exactly: `*` is not a pattern here");
    }
    if value.chars().any(char::is_control) {
        return Err("a value holds no control characters");
    }
    Ok(())
}

fn check_workflow(pattern: &str) -> Result<(), &'static str> {
    if pattern.contains('@') {
        return Err(
            "a workflow is the file's path, such as .github/workflows/release.yml, \
                    without @ref (bind the ref with refs)",
        );
    }
    check_pattern(pattern)
}

fn check_ref(pattern: &str) -> Result<(), &'static str> {
    if !pattern.starts_with("refs/") {
        return Err("a ref is written in full, such as refs/heads/main or refs/tags/v*");
    }
    check_pattern(pattern)
}

fn check_job_workflow(entry: &str) -> Result<(), &'static str> {
    const FORM: &str =
        "a job workflow is owner/repo/path@ref-pattern or owner/repo/path@<commit sha>";
    let Some((path, at)) = entry.split_once('@') else {
        return Err(FORM);
    };
    let mut segments = path.splitn(3, '/');
    let whole = segments.by_ref().take(3).filter(|s| !s.is_empty()).count() == 3;
    if !whole || at.is_empty() {
        return Err(FORM);
    }
    let hex = at.bytes().all(|b| b.is_ascii_hexdigit());
    if matches!(at.len(), 40 | 64) && hex && !is_commit_sha(at) {
        return Err("a commit sha is written in lowercase");
    }
    if !is_commit_sha(at) && !at.starts_with("refs/") {
        return Err("the part after @ is a full ref, such as refs/tags/v1, or a commit sha");
    }
    check_pattern(path)?;
    check_pattern(at)
}

impl TrustRule {
    /// Checks the rule's bounds and the form of each entry.
    ///
    /// # Errors
    /// A [`FieldError`] naming the first field that breaks a bound: an empty list, too
    /// many entries, an entry empty or too long, a ref not written in full, a workflow with
    /// `@`, a job workflow not of its form, `*` in an exact field, `***`, or `sub` in
    /// `claims`.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.name.len() > MAX_NAME_BYTES {
            return Err(field_error(
                "name",
                FieldProblem::TooLong {
                    max: MAX_NAME_BYTES,
                },
            ));
        }
        // Ids have no length to bound; a non-zero stand-in keeps them from being "empty".
        check_list(
            "repository_owner_ids",
            self.repository_owner_ids.as_deref(),
            |_| 1,
            |_| Ok(()),
        )?;
        check_list(
            "repository_ids",
            self.repository_ids.as_deref(),
            |_| 1,
            |_| Ok(()),
        )?;
        let strings =
            |field, list: &Option<Vec<String>>, check: fn(&str) -> Result<(), &'static str>| {
                check_list(field, list.as_deref(), String::len, |s| check(s))
            };
        strings("workflows", &self.workflows, check_workflow)?;
        strings("job_workflows", &self.job_workflows, check_job_workflow)?;
        strings("refs", &self.refs, check_ref)?;
        strings("environments", &self.environments, check_exact)?;
        strings("events", &self.events, check_exact)?;
        strings(
            "runner_environments",
            &self.runner_environments,
            check_exact,
        )?;
        if let Some(claims) = &self.claims {
            self.validate_claims(claims)?;
        }
        Ok(())
    }

    fn validate_claims(&self, claims: &BTreeMap<String, String>) -> Result<(), FieldError> {
        const FIELD: &str = "claims";
        if claims.is_empty() {
            return Err(field_error(FIELD, FieldProblem::EmptyList));
        }
        if claims.len() > MAX_ENTRIES {
            return Err(field_error(
                FIELD,
                FieldProblem::TooManyEntries { max: MAX_ENTRIES },
            ));
        }
        for (name, value) in claims {
            if name.is_empty() {
                return Err(field_error(FIELD, FieldProblem::EmptyEntry));
            }
            if name.len() > MAX_CLAIM_NAME_BYTES {
                return Err(field_error(
                    FIELD,
                    FieldProblem::TooLong {
                        max: MAX_CLAIM_NAME_BYTES,
                    },
                ));
            }
            if value.len() > MAX_CLAIM_VALUE_BYTES {
                return Err(field_error(
                    FIELD,
                    FieldProblem::TooLong {
                        max: MAX_CLAIM_VALUE_BYTES,
                    },
                ));
            }
            if name == "sub" {
                return Err(invalid(
                    FIELD,
                    "sub is never compared: its format changes and it carries names; \
                     bind ids, refs and workflows instead",
                ));
            }
        }
        Ok(())
    }

    /// Whether `identity` matches every field of this rule: what
    /// [`TrustRule::mismatches`] being empty says, without building what it shows.
    #[must_use]
    pub fn matches(&self, identity: &RunIdentity) -> bool {
        let verified = |field: &str| !identity.unverified.iter().any(|u| u == field);
        let exact = |field: &str, list: &Option<Vec<String>>| {
            list.as_ref().is_none_or(|list| {
                identity
                    .claim(field)
                    .is_some_and(|a| list.iter().any(|e| e == a.as_ref()))
            })
        };
        let ids_match = self.repository_owner_ids.as_ref().is_none_or(|ids| {
            verified("repository_owner_id") && ids.contains(&identity.repository_owner_id)
        }) && self
            .repository_ids
            .as_ref()
            .is_none_or(|ids| verified("repository_id") && ids.contains(&identity.repository_id));
        let protected = self
            .ref_protected
            .is_none_or(|p| verified("ref_protected") && identity.ref_protected == Some(p));
        ids_match
            && protected
            && exact("environment", &self.environments)
            && exact("event_name", &self.events)
            && exact("runner_environment", &self.runner_environments)
            && self.refs.as_ref().is_none_or(|refs| {
                identity
                    .claim("ref")
                    .is_some_and(|a| refs.iter().any(|p| pattern_matches(p, &a)))
            })
            && self.workflows.as_ref().is_none_or(|workflows| {
                let workflow_ref = identity.claim("workflow_ref");
                workflow_ref
                    .as_deref()
                    .and_then(workflow_path)
                    .is_some_and(|a| workflows.iter().any(|p| pattern_matches(p, a)))
            })
            && self.job_workflows.as_ref().is_none_or(|entries| {
                let job_ref = identity.claim("job_workflow_ref");
                let job_sha = identity.claim("job_workflow_sha");
                entries
                    .iter()
                    .any(|e| job_workflow_matches(e, job_ref.as_deref(), job_sha.as_deref()))
            })
            && self.claims.as_ref().is_none_or(|claims| {
                claims
                    .iter()
                    .all(|(name, expected)| identity.claim(name).as_deref() == Some(expected))
            })
    }

    /// Every field of this rule that `identity` does not match; empty when it matches.
    #[must_use]
    pub fn mismatches(&self, identity: &RunIdentity) -> Vec<Mismatch> {
        let mut out = Vec::new();
        let mut exact = |field: &str, list: &Option<Vec<String>>| {
            if let Some(list) = list {
                let actual = identity.claim(field);
                if !actual
                    .as_deref()
                    .is_some_and(|a| list.iter().any(|e| e == a))
                {
                    out.push(Mismatch::new(field, list.clone(), actual));
                }
            }
        };
        fn shown<T: ToString>(ids: Option<&Vec<T>>) -> Option<Vec<String>> {
            ids.map(|l| l.iter().map(ToString::to_string).collect())
        }
        exact(
            "repository_owner_id",
            &shown(self.repository_owner_ids.as_ref()),
        );
        exact("repository_id", &shown(self.repository_ids.as_ref()));
        exact(
            "ref_protected",
            &self.ref_protected.map(|p| vec![p.to_string()]),
        );
        exact("environment", &self.environments);
        exact("event_name", &self.events);
        exact("runner_environment", &self.runner_environments);
        if let Some(refs) = &self.refs {
            let actual = identity.claim("ref");
            if !actual
                .as_deref()
                .is_some_and(|a| refs.iter().any(|p| pattern_matches(p, a)))
            {
                out.push(Mismatch::new("ref", refs.clone(), actual));
            }
        }
        if let Some(workflows) = &self.workflows {
            let workflow_ref = identity.claim("workflow_ref");
            let path = workflow_ref.as_deref().and_then(workflow_path);
            if !path.is_some_and(|a| workflows.iter().any(|p| pattern_matches(p, a))) {
                // Shown in the form the entries are written in, when it has that form.
                let actual = path.map(str::to_owned).or(workflow_ref.map(Into::into));
                out.push(Mismatch::new("workflow_ref", workflows.clone(), actual));
            }
        }
        if let Some(entries) = &self.job_workflows {
            let job_ref = identity.claim("job_workflow_ref");
            let job_sha = identity.claim("job_workflow_sha");
            let (job_ref, job_sha) = (job_ref.as_deref(), job_sha.as_deref());
            if !entries
                .iter()
                .any(|e| job_workflow_matches(e, job_ref, job_sha))
            {
                out.push(Mismatch::new(
                    "job_workflow_ref",
                    entries.clone(),
                    job_workflow_actual(entries, job_ref, job_sha),
                ));
            }
        }
        if let Some(claims) = &self.claims {
            for (name, expected) in claims {
                let actual = identity.claim(name);
                if actual.as_deref() != Some(expected.as_str()) {
                    out.push(Mismatch::new(name, vec![expected.clone()], actual));
                }
            }
        }
        out
    }
}

/// The path part of a `workflow_ref` (`owner/repo/PATH@ref`), if it has that form.
fn workflow_path(workflow_ref: &str) -> Option<&str> {
    let (path, _) = workflow_ref.split_once('@')?;
    let mut parts = path.splitn(3, '/');
    let (_owner, _repo, file) = (parts.next()?, parts.next()?, parts.next()?);
    (!file.is_empty()).then_some(file)
}

fn job_workflow_matches(entry: &str, job_ref: Option<&str>, job_sha: Option<&str>) -> bool {
    let Some((path_pattern, at)) = entry.split_once('@') else {
        return false;
    };
    let Some((path, git_ref)) = job_ref.and_then(|r| r.split_once('@')) else {
        return false;
    };
    if !pattern_matches(path_pattern, path) {
        return false;
    }
    if is_commit_sha(at) {
        job_sha == Some(at)
    } else {
        pattern_matches(at, git_ref)
    }
}

/// `job_workflow_ref`, or `path@job_workflow_sha` when every entry pins a commit, so that
/// the value shown has the form of what was expected.
fn job_workflow_actual(
    entries: &[String],
    job_ref: Option<&str>,
    job_sha: Option<&str>,
) -> Option<String> {
    let all_shas = entries
        .iter()
        .all(|e| e.split_once('@').is_some_and(|(_, at)| is_commit_sha(at)));
    match (job_ref, job_sha) {
        (Some(r), Some(sha)) if all_shas => {
            let path = r.split_once('@').map_or(r, |(p, _)| p);
            Some(format!("{path}@{sha}"))
        }
        (Some(r), _) => Some(r.to_owned()),
        (None, _) => None,
    }
}

/// One field of a rule that an identity does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// The claim compared, such as `ref` or `job_workflow_ref`.
    pub field: String,
    /// The rule's entries for it.
    pub expected: Vec<String>,
    /// The identity's value, or `None` when it has none.
    pub actual: Option<String>,
}

impl Mismatch {
    fn new(field: &str, expected: Vec<String>, actual: Option<impl Into<String>>) -> Self {
        Self {
            field: field.to_owned(),
            expected,
            actual: actual.map(Into::into),
        }
    }
}

/// How one rule fared against an identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    /// The rule's position in its layer, from 0.
    pub index: usize,
    /// The rule's name.
    pub name: String,
    /// Whether the identity matches it.
    pub matched: bool,
    /// What does not match (empty when `matched`).
    pub mismatches: Vec<Mismatch>,
}

/// Reports every rule of a layer against an identity, in order.
#[must_use]
pub fn explain(layer: &[TrustRule], identity: &RunIdentity) -> Vec<RuleReport> {
    layer
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let mismatches = rule.mismatches(identity);
            RuleReport {
                index,
                name: rule.name.clone(),
                matched: mismatches.is_empty(),
                mismatches,
            }
        })
        .collect()
}

/// What one layer says about an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerOutcome {
    /// The layer holds no rule, so it adds no constraint.
    Unconstrained,
    /// A rule matches: the first one, in order.
    Matched {
        /// Its position in the layer, from 0.
        index: usize,
        /// Its name.
        name: String,
    },
    /// No rule matches.
    Refused {
        /// The rule with the fewest mismatches (the first of those on a tie).
        nearest: RuleReport,
    },
}

impl LayerOutcome {
    /// Whether the layer lets the identity through.
    #[must_use]
    pub fn allows(&self) -> bool {
        !matches!(self, Self::Refused { .. })
    }
}

/// Matches an identity against one layer: the first matching rule, or the nearest one.
#[must_use]
pub fn evaluate(layer: &[TrustRule], identity: &RunIdentity) -> LayerOutcome {
    // The usual case first: a rule that matches, found without building mismatches.
    for (index, rule) in layer.iter().enumerate() {
        debug_assert_eq!(
            rule.matches(identity),
            rule.mismatches(identity).is_empty(),
            "rule {index}"
        );
        if rule.matches(identity) {
            return LayerOutcome::Matched {
                index,
                name: rule.name.clone(),
            };
        }
    }
    let mut nearest: Option<RuleReport> = None;
    for (index, rule) in layer.iter().enumerate() {
        let mismatches = rule.mismatches(identity);
        if nearest
            .as_ref()
            .is_none_or(|n| mismatches.len() < n.mismatches.len())
        {
            nearest = Some(RuleReport {
                index,
                name: rule.name.clone(),
                matched: false,
                mismatches,
            });
        }
    }
    nearest.map_or(LayerOutcome::Unconstrained, |nearest| {
        LayerOutcome::Refused { nearest }
    })
}

/// Which layer a rule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The App's rules, from its configuration.
    App,
    /// The repository's rules, set through the API or read from a file in it.
    Repository,
}

impl Layer {
    /// `app` or `repository`, as shown in explanations.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Repository => "repository",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every layer says about an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Each layer's outcome, in the order given.
    pub layers: Vec<(Layer, LayerOutcome)>,
}

impl Verdict {
    /// Whether every layer lets the identity through.
    #[must_use]
    pub fn allowed(&self) -> bool {
        self.layers.iter().all(|(_, o)| o.allows())
    }

    /// The first layer that refuses, with its nearest rule.
    #[must_use]
    pub fn refusal(&self) -> Option<(Layer, &RuleReport)> {
        self.layers
            .iter()
            .find_map(|(layer, outcome)| match outcome {
                LayerOutcome::Refused { nearest } => Some((*layer, nearest)),
                _ => None,
            })
    }
}

/// Matches an identity against every layer (the App's and the repository's): it is
/// allowed when each non-empty layer has a matching rule.
#[must_use]
pub fn evaluate_all(layers: &[(Layer, &[TrustRule])], identity: &RunIdentity) -> Verdict {
    Verdict {
        layers: layers
            .iter()
            .map(|(layer, rules)| (*layer, evaluate(rules, identity)))
            .collect(),
    }
}

/// One step of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// This byte.
    Byte(u8),
    /// Any run of bytes but `/`.
    Star,
    /// Any run of bytes.
    DoubleStar,
}

fn compile(pattern: &str) -> Vec<Step> {
    let bytes = pattern.as_bytes();
    let mut steps = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'*' {
            if bytes.get(i + 1) == Some(&b'*') {
                steps.push(Step::DoubleStar);
                i += 2;
            } else {
                steps.push(Step::Star);
                i += 1;
            }
        } else {
            steps.push(Step::Byte(b));
            i += 1;
        }
    }
    steps
}

/// Whether `text` matches `pattern` whole: `*` within a segment, `**` across segments.
///
/// Keeps the set of pattern positions reachable after each byte of `text` (never
/// backtracks), so it costs at most `pattern.len() × text.len()` steps.
#[must_use]
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    // The literal part before the first star must be where the text starts; without a
    // star, that is the whole pattern.
    let literal = pattern.find('*').unwrap_or(pattern.len());
    let Some(prefix) = pattern.get(..literal) else {
        return false;
    };
    if literal == pattern.len() {
        return pattern == text;
    }
    if !text.starts_with(prefix) {
        return false;
    }
    let steps = compile(pattern);
    let end = steps.len();
    // A star may match nothing: whoever reaches it also reaches the step after it.
    let close = |states: &mut [bool]| {
        for (i, step) in steps.iter().enumerate() {
            if states.get(i) == Some(&true)
                && matches!(step, Step::Star | Step::DoubleStar)
                && let Some(next) = states.get_mut(i + 1)
            {
                *next = true;
            }
        }
    };
    let mut current = vec![false; end + 1];
    let mut next = vec![false; end + 1];
    if let Some(first) = current.first_mut() {
        *first = true;
    }
    close(&mut current);
    for &byte in text.as_bytes() {
        next.fill(false);
        let mut alive = false;
        for (i, step) in steps.iter().enumerate() {
            if current.get(i) != Some(&true) {
                continue;
            }
            let to = match step {
                Step::Byte(b) if *b == byte => i + 1,
                Step::Star if byte != b'/' => i,
                Step::DoubleStar => i,
                _ => continue,
            };
            if let Some(state) = next.get_mut(to) {
                *state = true;
                alive = true;
            }
        }
        if !alive {
            return false;
        }
        close(&mut next);
        std::mem::swap(&mut current, &mut next);
    }
    current.get(end) == Some(&true)
}
