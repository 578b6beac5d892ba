//! The repository file: a repository's trust rules, kept in a file on its default branch
//! (`[policy] repository_file`, such as `.github/runproof.yml`).
//!
//! - Fetching ([`default_branch_file`]): `GET /repositories/{id}/contents/{path}` with the
//!   installation's token and no `ref`, so GitHub serves the default branch. The
//!   repository is named by id, never by a name that may have moved. A pushed commit,
//!   a pull request's head or any other branch is never read: a pull request cannot change
//!   the rules its own run is held to.
//! - Parsing ([`parse_rules_file`]): pure and bounded. The text is capped at
//!   [`MAX_FILE_BYTES`]; the YAML is read event by event (no recursion) into a JSON value,
//!   counting nodes, nesting and scalar bytes as if every alias were expanded, so an alias
//!   bomb or a deeply nested document ends in an error long before memory runs out. The
//!   value must be `{rules: [...]}` holding [`TrustRule`]s, with no unknown field, and the
//!   layer must pass [`validate_layer`]. Every failure says why, for the refusal to show.
//! - Pushes ([`PushEvent`], [`push_may_change`]): whether a `push` webhook may have
//!   changed the file on the default branch, so that a cached copy is dropped.
//!
//! What it does not do: cache or decide. Whether a broken file refuses (it does, never
//! failing open) and how long a copy is kept is `runproof-service`'s.

use std::collections::HashMap;

use base64::Engine as _;
use runproof_core::rules::{TrustRule, validate_layer};
use runproof_core::{InstallationId, RepositoryId};
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

use crate::app::{Credential, GithubApp, GithubError};
use crate::workflow::is_safe_path;

/// The largest repository file read, in bytes. Rules are short; a layer holds at most
/// [`runproof_core::rules::MAX_RULES_PER_LAYER`] of them.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// The most YAML nodes the file may expand to (aliases count again each time).
pub const MAX_NODES: usize = 20_000;
/// The deepest nesting of sequences and mappings, aliases expanded. A rules file needs
/// four levels (the file, `rules`, a rule, a list or `claims`).
pub const MAX_DEPTH: usize = 16;
/// The most scalar text the file may expand to, in bytes (aliases count again each
/// time): four times the file cap.
pub const MAX_EXPANDED_BYTES: usize = 4 * MAX_FILE_BYTES;
/// The most commits a `push` payload lists; a push of more is truncated to these, so its
/// files are not all known.
pub const MAX_PUSH_COMMITS: usize = 2048;

/// Why a repository file's text is not a layer of trust rules. Each message is meant to
/// be shown to the repository's users, who can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesFileError {
    /// Over [`MAX_FILE_BYTES`].
    #[error("the file is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    /// Not YAML, or YAML this reader refuses (tags, keys that are not text, a key given
    /// twice, an alias to a node that contains it, more than one document).
    #[error("the file is not valid YAML: {0}")]
    Yaml(String),
    /// Nests deeper than [`MAX_DEPTH`], aliases expanded.
    #[error("the file nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Expands to more than [`MAX_NODES`] nodes.
    #[error("the file expands to more than {MAX_NODES} YAML nodes")]
    TooManyNodes,
    /// Expands to more than [`MAX_EXPANDED_BYTES`] of scalar text.
    #[error("the file expands to more than {MAX_EXPANDED_BYTES} bytes of text")]
    TooManyBytes,
    /// Not `rules:` and a list of trust rules, or a rule with an unknown field or a value
    /// of the wrong type.
    #[error("{0}")]
    Shape(String),
    /// The rules break a bound of the layer.
    #[error("{0}")]
    Rules(#[from] runproof_core::rules::RuleError),
}

/// Parses a repository file: YAML holding a top-level `rules:` list of trust rules, the
/// same fields as `[[policy.rules]]`. An empty list is an empty layer (no constraint).
///
/// # Errors
/// [`RulesFileError`] saying why the text is not a valid layer.
pub fn parse_rules_file(text: &str) -> Result<Vec<TrustRule>, RulesFileError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        rules: Vec<Value>,
    }
    let value = yaml_to_json(text)?;
    if !value.is_object() {
        return Err(RulesFileError::Shape(
            "the file must be a mapping with a `rules:` list".into(),
        ));
    }
    let file: File = serde_json::from_value(value)
        .map_err(|e| RulesFileError::Shape(format!("the file: {e}")))?;
    let mut rules = Vec::with_capacity(file.rules.len().min(64));
    for (index, rule) in file.rules.into_iter().enumerate() {
        let rule: TrustRule = serde_json::from_value(rule)
            .map_err(|e| RulesFileError::Shape(format!("rules[{index}]: {e}")))?;
        rules.push(rule);
    }
    validate_layer(&rules)?;
    Ok(rules)
}

/// A node completed while reading, as an anchor keeps it.
#[derive(Debug, Clone)]
struct Node {
    value: Value,
    /// A scalar's text, for use as a mapping key.
    text: Option<String>,
    /// Nodes it expands to.
    nodes: usize,
    /// Scalar bytes it expands to.
    bytes: usize,
    /// Levels of nesting it adds: 0 for a scalar.
    depth: usize,
}

/// A container still open while reading.
#[derive(Debug)]
struct Open {
    /// The sequence's items, or `None` for a mapping.
    items: Option<Vec<Value>>,
    map: Map<String, Value>,
    /// In a mapping: the key waiting for its value.
    key: Option<String>,
    anchor: usize,
    nodes_before: usize,
    bytes_before: usize,
    child_depth: usize,
}

/// Running totals with every alias expanded.
#[derive(Debug, Default)]
struct Totals {
    nodes: usize,
    bytes: usize,
}

impl Totals {
    fn add(&mut self, nodes: usize, bytes: usize) -> Result<(), RulesFileError> {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.nodes > MAX_NODES {
            return Err(RulesFileError::TooManyNodes);
        }
        if self.bytes > MAX_EXPANDED_BYTES {
            return Err(RulesFileError::TooManyBytes);
        }
        Ok(())
    }
}

/// Whether a tag is YAML's `!!str`, however the parser spells its handle.
fn is_str_tag(tag: &Tag) -> bool {
    tag.suffix == "str" && (tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:")
}

/// A scalar's value: quoted text is text; plain text is null, a boolean, an unsigned
/// integer or text, as YAML's core schema reads it (other numbers stay text).
fn scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, RulesFileError> {
    if let Some(tag) = tag {
        if is_str_tag(tag) {
            return Ok(Value::String(text.to_owned()));
        }
        return Err(RulesFileError::Yaml(format!(
            "tags such as `{}{}` are not read here",
            tag.handle, tag.suffix
        )));
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    Ok(match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        t if !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()) => {
            match t.parse::<u64>() {
                Ok(n) => Value::Number(Number::from(n)),
                Err(_) => Value::String(t.to_owned()),
            }
        }
        t => Value::String(t.to_owned()),
    })
}

/// Reads the single YAML document of `text` into a JSON value, within every bound.
fn yaml_to_json(text: &str) -> Result<Value, RulesFileError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(RulesFileError::TooLarge);
    }
    let yaml = |e: yaml_rust2::ScanError| RulesFileError::Yaml(e.to_string());
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut totals = Totals::default();
    let mut root: Option<Value> = None;
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(yaml)?;
        let at = |what: &str| RulesFileError::Yaml(format!("{what} (line {})", mark.line()));
        let (done, anchor) = match event {
            Event::StreamEnd => return Ok(root.unwrap_or(Value::Null)),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(at("the file holds more than one YAML document"));
                }
                continue;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let bytes = text.len();
                totals.add(1, bytes)?;
                let value = scalar(&text, style, tag.as_ref())?;
                (
                    Node {
                        value,
                        text: Some(text),
                        nodes: 1,
                        bytes,
                        depth: 0,
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                let Some(target) = anchors.get(&id) else {
                    return Err(at("an alias refers to a node that contains it"));
                };
                if stack.len().saturating_add(target.depth) > MAX_DEPTH {
                    return Err(RulesFileError::TooDeep);
                }
                // Counted before it is copied, so a copy never exceeds the bounds.
                totals.add(target.nodes, target.bytes)?;
                (target.clone(), 0)
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if let Some(tag) = tag {
                    return Err(at(&format!(
                        "tags such as `{}{}` are not read here",
                        tag.handle, tag.suffix
                    )));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(RulesFileError::TooDeep);
                }
                let sequence = matches!(event, Event::SequenceStart(..));
                totals.add(1, 0)?;
                stack.push(Open {
                    items: sequence.then(Vec::new),
                    map: Map::new(),
                    key: None,
                    anchor,
                    nodes_before: totals.nodes - 1,
                    bytes_before: totals.bytes,
                    child_depth: 0,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = stack.pop() else {
                    return Err(at("unbalanced document"));
                };
                let value = match open.items {
                    Some(items) => Value::Array(items),
                    None => Value::Object(open.map),
                };
                (
                    Node {
                        value,
                        text: None,
                        nodes: totals.nodes - open.nodes_before,
                        bytes: totals.bytes - open.bytes_before,
                        depth: open.child_depth + 1,
                    },
                    open.anchor,
                )
            }
            _ => continue,
        };
        if anchor != 0 {
            anchors.insert(anchor, done.clone());
        }
        let Some(parent) = stack.last_mut() else {
            root = Some(done.value);
            continue;
        };
        parent.child_depth = parent.child_depth.max(done.depth);
        if let Some(items) = parent.items.as_mut() {
            items.push(done.value);
        } else if let Some(key) = parent.key.take() {
            parent.map.insert(key, done.value);
        } else {
            let Some(key) = done.text else {
                return Err(at("a mapping key must be text"));
            };
            if parent.map.contains_key(&key) {
                return Err(at(&format!("the key `{key}` is given twice")));
            }
            parent.key = Some(key);
        }
    }
}

/// Why the file could not be read from GitHub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileFetchError {
    /// GitHub cannot answer now (unavailable, rate limited, credentials refused, an
    /// answer it cannot read): asking again later may succeed. Never a decision.
    #[error("GitHub cannot be asked for the file: {0}")]
    Unavailable(GithubError),
    /// A definite answer that gives no usable file: too large, not a file, not UTF-8,
    /// or the App may not read it. The text says why, for the refusal to show.
    #[error("{0}")]
    Unusable(String),
}

impl FileFetchError {
    /// Whether asking again later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The contents API's answer for one file, as far as it is read here.
#[derive(Debug, Deserialize)]
struct Content {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    size: u64,
    encoding: Option<String>,
    content: Option<String>,
}

/// The file at `path` on the default branch of repository `repository_id`:
/// `GET /repositories/{id}/contents/{path}` with an installation token and no `ref`.
/// `None` when the default branch has no such file (404).
///
/// # Errors
/// [`FileFetchError::Unavailable`] when GitHub cannot answer now;
/// [`FileFetchError::Unusable`] for an answer that gives no usable file.
pub async fn default_branch_file(
    app: &GithubApp,
    repository_id: RepositoryId,
    installation: InstallationId,
    path: &str,
) -> Result<Option<String>, FileFetchError> {
    if !is_safe_path(path) {
        return Err(FileFetchError::Unusable(format!(
            "`{path}` is not a path runproof fetches"
        )));
    }
    let token = app
        .installation_token(installation)
        .await
        .map_err(FileFetchError::Unavailable)?;
    let answer = app
        .rest()
        .call::<Value>(
            reqwest::Method::GET,
            &format!("/repositories/{repository_id}/contents/{path}"),
            Credential::Installation(installation, &token),
        )
        .await;
    let value = match answer {
        Ok(value) => value,
        Err(GithubError::NotFound) => return Ok(None),
        Err(GithubError::TooLarge { .. }) => {
            return Err(FileFetchError::Unusable(format!(
                "{path} is larger than {MAX_FILE_BYTES} bytes"
            )));
        }
        Err(GithubError::Forbidden(message)) => {
            return Err(FileFetchError::Unusable(format!(
                "GitHub does not let the App read {path} (it needs the `contents: read` \
                 permission): {message}"
            )));
        }
        Err(e) => return Err(FileFetchError::Unavailable(e)),
    };
    decode(path, value).map(Some)
}

/// The text of a contents-API answer, within [`MAX_FILE_BYTES`].
fn decode(path: &str, value: Value) -> Result<String, FileFetchError> {
    let unusable = |why: &str| FileFetchError::Unusable(format!("{path} {why}"));
    // A directory answers with a list.
    let Ok(file) = serde_json::from_value::<Content>(value) else {
        return Err(unusable("is not a file"));
    };
    if file.kind != "file" {
        return Err(unusable("is not a regular file"));
    }
    if file.size > MAX_FILE_BYTES as u64 {
        return Err(unusable(&format!("is larger than {MAX_FILE_BYTES} bytes")));
    }
    if file.encoding.as_deref() != Some("base64") {
        return Err(unusable("is not served base64-encoded"));
    }
    let packed: String = file
        .content
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(packed)
        .map_err(|_| unusable("is not valid base64"))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(unusable(&format!("is larger than {MAX_FILE_BYTES} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| unusable("is not UTF-8 text"))
}

/// The `push` webhook, as far as the repository file cares.
#[derive(Debug, Clone, Deserialize)]
pub struct PushEvent {
    /// The ref pushed, such as `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The repository pushed to.
    pub repository: PushRepository,
    /// Whether the push was forced: its commits do not say what changed.
    #[serde(default)]
    pub forced: bool,
    /// Whether the push created the ref.
    #[serde(default)]
    pub created: bool,
    /// Whether the push deleted the ref.
    #[serde(default)]
    pub deleted: bool,
    /// The commits pushed (at most [`MAX_PUSH_COMMITS`]); `None` when absent.
    #[serde(default)]
    pub commits: Option<Vec<PushCommit>>,
}

/// The repository of a `push` webhook.
#[derive(Debug, Clone, Deserialize)]
pub struct PushRepository {
    /// Its id.
    pub id: RepositoryId,
    /// Its default branch's name, such as `main`.
    #[serde(default)]
    pub default_branch: Option<String>,
}

/// One commit of a `push` webhook: the paths it touched.
#[derive(Debug, Clone, Deserialize)]
pub struct PushCommit {
    /// Paths added; `None` when absent.
    #[serde(default)]
    pub added: Option<Vec<String>>,
    /// Paths modified; `None` when absent.
    #[serde(default)]
    pub modified: Option<Vec<String>>,
    /// Paths removed; `None` when absent.
    #[serde(default)]
    pub removed: Option<Vec<String>>,
}

/// Whether a push may have changed the file at `path` on the repository's default
/// branch: it pushed the default branch, and a commit added, modified or removed the
/// file, or what it changed is not fully known (the push was forced, created or deleted
/// the branch, lists no commits, or its commit list may be truncated). A push to any other
/// ref never changes the rules in force. Without the default branch's name, any branch
/// push counts.
#[must_use]
pub fn push_may_change(push: &PushEvent, path: &str) -> bool {
    let on_default = match &push.repository.default_branch {
        Some(branch) => push.git_ref.strip_prefix("refs/heads/") == Some(branch.as_str()),
        None => push.git_ref.starts_with("refs/heads/"),
    };
    if !on_default {
        return false;
    }
    if push.forced || push.created || push.deleted {
        return true;
    }
    let Some(commits) = &push.commits else {
        return true;
    };
    if commits.is_empty() || commits.len() >= MAX_PUSH_COMMITS {
        return true;
    }
    commits.iter().any(|c| {
        [&c.added, &c.modified, &c.removed]
            .into_iter()
            .any(|list| list.as_ref().is_none_or(|l| l.iter().any(|p| p == path)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
# The repository's trust rules.
rules:
  - name: release uploads
    repository_ids: [740001]
    workflows: [".github/workflows/release.yml"]
    refs:
      - refs/heads/main
      - "refs/tags/v*"
    ref_protected: true
    claims:
      repo_property_team: "infra"
  - refs: [refs/heads/dev]
"#;

    #[test]
    fn a_file_of_rules_parses() {
        let rules = parse_rules_file(FILE).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].name, "release uploads");
        assert_eq!(rules[0].repository_ids, Some(vec![RepositoryId(740_001)]));
        assert_eq!(
            rules[0].refs.as_deref(),
            Some(&["refs/heads/main".to_owned(), "refs/tags/v*".to_owned()][..])
        );
        assert_eq!(rules[0].ref_protected, Some(true));
        assert_eq!(
            rules[0].claims.as_ref().unwrap()["repo_property_team"],
            "infra"
        );
        assert_eq!(rules[1].name, "");
        assert!(parse_rules_file("rules: []\n").unwrap().is_empty());
    }

    #[test]
    fn anchors_are_expanded() {
        let text = "x-refs: &refs [refs/heads/main]\nrules:\n  - refs: *refs\n";
        assert!(matches!(
            parse_rules_file(text),
            Err(RulesFileError::Shape(e)) if e.contains("x-refs")
        ));
        let text = "rules:\n  - name: a\n    refs: &refs [refs/heads/main]\n  - name: b\n    refs: *refs\n";
        let rules = parse_rules_file(text).unwrap();
        assert_eq!(rules[1].refs, rules[0].refs);
    }

    #[test]
    fn rule_a_broken_file_says_why() {
        let shape = |text: &str, want: &str| match parse_rules_file(text) {
            Err(e @ RulesFileError::Shape(_)) => {
                assert!(e.to_string().contains(want), "{text:?}: {e}");
            }
            other => panic!("{text:?}: {other:?}"),
        };
        shape(
            "rules:\n  - refz: [refs/heads/main]\n",
            "rules[0]: unknown field `refz`",
        );
        shape("rule: []\n", "unknown field `rule`");
        shape("name: x\n", "unknown field `name`");
        shape("", "must be a mapping");
        shape("- rules\n", "must be a mapping");
        shape("rules: {}\n", "invalid type");
        shape("rules:\n  - repository_ids: [-1]\n", "rules[0]");
        shape("rules:\n  - ref_protected: yes\n", "rules[0]");
        shape("rules:\n  - claims: {team: 7}\n", "rules[0]");
        assert!(matches!(
            parse_rules_file("rules:\n  - refs: [main]\n"),
            Err(RulesFileError::Rules(_))
        ));
        assert!(matches!(
            parse_rules_file("rules:\n  - refs: []\n"),
            Err(RulesFileError::Rules(_))
        ));
        for (text, want) in [
            ("rules: [", "not valid YAML"),
            ("rules: []\nrules: []\n", "given twice"),
            ("rules: []\n---\nrules: []\n", "more than one"),
            ("rules: !!seq []\n", "tags"),
            ("rules:\n  - refs: !custom [x]\n", "tags"),
            ("? [a]\n: b\n", "must be text"),
            ("a: &a [*a]\n", "contains it"),
        ] {
            let e = parse_rules_file(text).unwrap_err();
            assert!(
                matches!(e, RulesFileError::Yaml(_)) && e.to_string().contains(want),
                "{text:?}: {e}"
            );
        }
        assert_eq!(
            parse_rules_file(&"#".repeat(MAX_FILE_BYTES + 1)),
            Err(RulesFileError::TooLarge)
        );
        let deep = format!("rules: {}{}\n", "[".repeat(40), "]".repeat(40));
        assert_eq!(parse_rules_file(&deep), Err(RulesFileError::TooDeep));
    }

    #[test]
    fn rule_an_alias_bomb_is_counted_as_expanded() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        bomb.push_str("rules: []\n");
        assert_eq!(parse_rules_file(&bomb), Err(RulesFileError::TooManyNodes));
        let long = "x".repeat(60_000);
        let text = format!("a: &a {long}\nb: [*a, *a, *a, *a, *a]\nrules: []\n");
        assert_eq!(parse_rules_file(&text), Err(RulesFileError::TooManyBytes));
        let nested = "a: &a [[[[[[[[[[x]]]]]]]]]]\nb: [[[[[[[[*a]]]]]]]]\nrules: []\n";
        assert_eq!(parse_rules_file(nested), Err(RulesFileError::TooDeep));
    }

    #[test]
    fn scalars_are_typed_as_the_core_schema_reads_them() {
        let v = yaml_to_json(
            "a: 12\nb: '12'\nc: true\nd: ~\ne: 1.5\nf: -3\ng: !!str 4\nh: 99999999999999999999999\n",
        )
        .unwrap();
        assert_eq!(v["a"], 12);
        assert_eq!(v["b"], "12");
        assert_eq!(v["c"], true);
        assert_eq!(v["d"], Value::Null);
        assert_eq!(v["e"], "1.5");
        assert_eq!(v["f"], "-3");
        assert_eq!(v["g"], "4");
        assert_eq!(v["h"], "99999999999999999999999");
    }

    fn push(git_ref: &str, commits: Value) -> PushEvent {
        serde_json::from_value(serde_json::json!({
            "ref": git_ref,
            "before": "0".repeat(40),
            "after": "1".repeat(40),
            "repository": {"id": 740001, "full_name": "o/r", "default_branch": "main"},
            "commits": commits,
        }))
        .unwrap()
    }

    #[test]
    fn rule_only_a_push_to_the_default_branch_touching_the_file_changes_it() {
        const PATH: &str = ".github/runproof.yml";
        let touching = serde_json::json!([
            {"added": [], "modified": ["README.md"], "removed": []},
            {"added": [], "modified": [PATH], "removed": []},
        ]);
        let other = serde_json::json!([{"added": ["src/x.rs"], "modified": [], "removed": []}]);
        assert!(push_may_change(
            &push("refs/heads/main", touching.clone()),
            PATH
        ));
        assert!(!push_may_change(
            &push("refs/heads/main", other.clone()),
            PATH
        ));
        assert!(!push_may_change(
            &push("refs/heads/dev", touching.clone()),
            PATH
        ));
        assert!(!push_may_change(&push("refs/tags/main", touching), PATH));
        let removed = serde_json::json!([{"added": [], "modified": [], "removed": [PATH]}]);
        assert!(push_may_change(&push("refs/heads/main", removed), PATH));
        let unknown = serde_json::json!([{"modified": ["x"]}]);
        assert!(push_may_change(&push("refs/heads/main", unknown), PATH));
        assert!(push_may_change(
            &push("refs/heads/main", serde_json::json!([])),
            PATH
        ));
        let many: Vec<Value> = (0..MAX_PUSH_COMMITS)
            .map(|_| serde_json::json!({"added": [], "modified": [], "removed": []}))
            .collect();
        assert!(push_may_change(
            &push("refs/heads/main", Value::Array(many)),
            PATH
        ));
        let mut forced = push("refs/heads/main", other);
        forced.forced = true;
        assert!(push_may_change(&forced, PATH));
        forced.git_ref = "refs/heads/dev".into();
        assert!(!push_may_change(&forced, PATH), "forced elsewhere");
    }

    #[test]
    fn contents_answers_are_decoded_within_the_cap() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("rules: []\n");
        let ok = serde_json::json!({"type": "file", "encoding": "base64", "size": 10, "content": encoded});
        assert_eq!(decode("f", ok).unwrap(), "rules: []\n");
        let dir = serde_json::json!([{"type": "file"}]);
        assert!(matches!(decode("f", dir), Err(FileFetchError::Unusable(_))));
        let big = serde_json::json!({"type": "file", "encoding": "none", "size": 2_000_000, "content": ""});
        assert!(
            matches!(decode("f", big), Err(FileFetchError::Unusable(e)) if e.contains("larger"))
        );
        let link = serde_json::json!({"type": "symlink", "target": "x"});
        assert!(matches!(
            decode("f", link),
            Err(FileFetchError::Unusable(_))
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
        #[test]
        fn rules_file_parsing_never_panics(text in "\\PC{0,200}") {
            let _ = parse_rules_file(&text);
        }

        #[test]
        fn rules_file_shapes_never_panic(
            key in "(rules|refs|name|-|:|&a|\\*a|\\[|\\]|\\{|\\}| |\n|x|!!str){0,40}",
        ) {
            let _ = parse_rules_file(&format!("rules:\n  - {key}\n"));
        }
    }
}
