//! Workflow files, for the webhook mode's workflow check: does a workflow use an action?
//!
//! A workflow is YAML. Its `jobs` map job ids to jobs; a job either runs `steps`, each of
//! which may `uses: owner/name@ref` (or `owner/name/path@ref`), or calls a reusable
//! workflow with a job-level `uses:`. A reusable workflow in the same repository
//! (`uses: ./.github/workflows/x.yml`) runs at the same commit, so the check follows it
//! ([`check_workflow`], bounded depth); one in another repository is not followed.
//!
//! Parsing is pure and bounded. The text is capped at [`MAX_WORKFLOW_BYTES`]. The YAML is
//! read event by event into a flat index of its nodes (no tree, no recursion, so nothing
//! is built or dropped recursively), keeping the text only of the scalars the check may
//! read. Aliases are not copied: each one points at its anchored node, and the nesting
//! depth, node count and scalar bytes are counted as if every alias were expanded, so an
//! alias bomb or a deeply nested document ends in a [`WorkflowError`] long before memory
//! or the stack runs out.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use yaml_rust2::parser::{Event, Parser};

/// The largest workflow file read, in bytes.
pub const MAX_WORKFLOW_BYTES: usize = 512 * 1024;
/// The most YAML nodes one workflow may expand to (aliases count again each time).
pub const MAX_NODES: usize = 100_000;
/// The deepest nesting of sequences and mappings, aliases expanded. Real workflows stay
/// under ten levels.
pub const MAX_DEPTH: usize = 64;
/// The most scalar text one workflow may expand to, in bytes (aliases count again each
/// time): eight times the file cap.
pub const MAX_EXPANDED_BYTES: usize = 8 * MAX_WORKFLOW_BYTES;
/// How deep reusable workflows in the same repository are followed (the workflow itself
/// is depth 0). GitHub allows four levels of nesting.
pub const MAX_REUSE_DEPTH: usize = 4;

/// Why a workflow file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// Over [`MAX_WORKFLOW_BYTES`].
    #[error("the workflow file is larger than {MAX_WORKFLOW_BYTES} bytes")]
    TooLarge,
    /// Not YAML, or an alias that refers to a node containing it.
    #[error("the workflow file is not valid YAML: {0}")]
    Yaml(String),
    /// Nests deeper than [`MAX_DEPTH`], aliases expanded.
    #[error("the workflow file nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Expands to more than [`MAX_NODES`] nodes.
    #[error("the workflow file expands to more than {MAX_NODES} nodes")]
    TooManyNodes,
    /// Expands to more than [`MAX_EXPANDED_BYTES`] of scalar text.
    #[error("the workflow file expands to more than {MAX_EXPANDED_BYTES} bytes of text")]
    TooManyBytes,
    /// No `jobs` mapping.
    #[error("the workflow file has no jobs")]
    NoJobs,
}

/// The mapping keys the check reads; other keys' text is not kept.
const KEYS: [&str; 3] = ["jobs", "steps", "uses"];

/// One node of the flat index, in document order: a container's descendants follow it.
#[derive(Debug)]
enum Item {
    /// A scalar, with its text where the check may read it.
    Scalar(Option<Box<str>>),
    /// An alias: the index of its anchored node (never an alias itself).
    Alias(usize),
    /// A sequence; `end` is the index after its last descendant.
    Seq { end: usize },
    /// A mapping of keys and values in turn; `end` as for a sequence.
    Map { end: usize },
}

/// What an anchor stands for once expanded.
#[derive(Debug, Clone, Copy)]
struct Anchored {
    index: usize,
    nodes: usize,
    bytes: usize,
    /// Levels of nesting it adds: 0 for a scalar, 1 for a container of scalars.
    depth: usize,
}

/// A container still open while reading.
#[derive(Debug)]
struct Frame {
    index: usize,
    anchor: usize,
    nodes_before: usize,
    bytes_before: usize,
    /// The deepest child so far, in the sense of [`Anchored::depth`].
    child_depth: usize,
    map: bool,
    /// In a mapping: the next child completes an entry (it is a value).
    value_next: bool,
    /// In a mapping: the pending key is `uses`.
    key_is_uses: bool,
}

/// The first document of a workflow file as a flat index; `items[0]` is its root.
#[derive(Debug, Default)]
struct Doc {
    items: Vec<Item>,
}

/// Running totals with every alias expanded, checked against the bounds at each step.
#[derive(Debug, Default)]
struct Expanded {
    nodes: usize,
    bytes: usize,
}

impl Expanded {
    fn add(&mut self, nodes: usize, bytes: usize) -> Result<(), WorkflowError> {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.nodes > MAX_NODES {
            return Err(WorkflowError::TooManyNodes);
        }
        if self.bytes > MAX_EXPANDED_BYTES {
            return Err(WorkflowError::TooManyBytes);
        }
        Ok(())
    }
}

impl Doc {
    /// Reads the first YAML document of `text` within every bound.
    fn read(text: &str) -> Result<Doc, WorkflowError> {
        if text.len() > MAX_WORKFLOW_BYTES {
            return Err(WorkflowError::TooLarge);
        }
        let mut parser = Parser::new_from_str(text);
        let mut doc = Doc::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut anchors: HashMap<usize, Anchored> = HashMap::new();
        let mut total = Expanded::default();
        loop {
            let (event, _) = parser
                .next_token()
                .map_err(|e| WorkflowError::Yaml(e.to_string()))?;
            let index = doc.items.len();
            // The node just completed, as it would be anchored.
            let (done, anchor) = match event {
                Event::StreamEnd => return Ok(doc),
                Event::Scalar(value, _, anchor, _) => {
                    let bytes = value.len();
                    total.add(1, bytes)?;
                    let wanted = anchor != 0
                        || KEYS.contains(&value.as_str())
                        || stack.last().is_some_and(|f| f.value_next && f.key_is_uses);
                    let kept = wanted.then(|| value.into_boxed_str());
                    doc.items.push(Item::Scalar(kept));
                    (
                        Anchored {
                            index,
                            nodes: 1,
                            bytes,
                            depth: 0,
                        },
                        anchor,
                    )
                }
                Event::Alias(id) => {
                    let Some(target) = anchors.get(&id).copied() else {
                        return Err(WorkflowError::Yaml(
                            "an alias refers to a node that contains it".into(),
                        ));
                    };
                    if stack.len().saturating_add(target.depth) > MAX_DEPTH {
                        return Err(WorkflowError::TooDeep);
                    }
                    total.add(target.nodes, target.bytes)?;
                    doc.items.push(Item::Alias(target.index));
                    (target, 0)
                }
                Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                    let map = matches!(event, Event::MappingStart(..));
                    if stack.len() >= MAX_DEPTH {
                        return Err(WorkflowError::TooDeep);
                    }
                    total.add(1, 0)?;
                    doc.items.push(if map {
                        Item::Map { end: index }
                    } else {
                        Item::Seq { end: index }
                    });
                    stack.push(Frame {
                        index,
                        anchor,
                        nodes_before: total.nodes - 1,
                        bytes_before: total.bytes,
                        child_depth: 0,
                        map,
                        value_next: false,
                        key_is_uses: false,
                    });
                    continue;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let Some(frame) = stack.pop() else {
                        return Err(WorkflowError::Yaml("unbalanced document".into()));
                    };
                    if let Some(Item::Seq { end } | Item::Map { end }) =
                        doc.items.get_mut(frame.index)
                    {
                        *end = index;
                    }
                    (
                        Anchored {
                            index: frame.index,
                            nodes: total.nodes - frame.nodes_before,
                            bytes: total.bytes - frame.bytes_before,
                            depth: frame.child_depth + 1,
                        },
                        frame.anchor,
                    )
                }
                _ => continue,
            };
            if anchor != 0 {
                anchors.insert(anchor, done);
            }
            let Some(parent) = stack.last_mut() else {
                // The first document is complete; later ones are not read.
                return Ok(doc);
            };
            parent.child_depth = parent.child_depth.max(done.depth);
            if parent.map {
                if !parent.value_next {
                    parent.key_is_uses = doc.text(done.index) == Some("uses");
                }
                parent.value_next = !parent.value_next;
            }
        }
    }

    /// The node an item stands for: itself, or the anchored node of an alias.
    fn resolve(&self, index: usize) -> usize {
        match self.items.get(index) {
            Some(Item::Alias(target)) => *target,
            _ => index,
        }
    }

    fn text(&self, index: usize) -> Option<&str> {
        match self.items.get(self.resolve(index)) {
            Some(Item::Scalar(Some(text))) => Some(text),
            _ => None,
        }
    }

    /// The children of a sequence or mapping (aliases resolved), or nothing.
    fn children(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let index = self.resolve(index);
        let end = match self.items.get(index) {
            Some(Item::Seq { end } | Item::Map { end }) => *end,
            _ => index,
        };
        let mut next = index + 1;
        std::iter::from_fn(move || {
            if next >= end {
                return None;
            }
            let child = next;
            next = match self.items.get(child) {
                Some(Item::Seq { end } | Item::Map { end }) => *end,
                _ => child + 1,
            };
            Some(self.resolve(child))
        })
    }

    fn is_map(&self, index: usize) -> bool {
        matches!(self.items.get(self.resolve(index)), Some(Item::Map { .. }))
    }

    fn is_seq(&self, index: usize) -> bool {
        matches!(self.items.get(self.resolve(index)), Some(Item::Seq { .. }))
    }

    /// The entries of a mapping, as (key, value) indices; nothing for other nodes.
    fn entries(&self, index: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut children = self.is_map(index).then(|| self.children(index));
        std::iter::from_fn(move || {
            let children = children.as_mut()?;
            Some((children.next()?, children.next()?))
        })
    }

    /// The value of the first entry whose key is the scalar `key`.
    fn get(&self, index: usize, key: &str) -> Option<usize> {
        self.entries(index)
            .find_map(|(k, v)| (self.text(k) == Some(key)).then_some(v))
    }
}

/// What a workflow file uses, as far as the check cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowUses {
    /// Actions used by steps, as `owner/name` in lower case (paths and refs removed).
    pub actions: Vec<String>,
    /// Reusable workflows of the same repository called by jobs (`./path` → `path`).
    pub local_workflows: Vec<String>,
    /// Reusable workflows of other repositories called by jobs (`owner/name/path@ref`),
    /// which the check does not follow.
    pub remote_workflows: Vec<String>,
}

/// Parses a workflow file and lists what its jobs use.
///
/// # Errors
/// [`WorkflowError`] when the text is too large, not YAML, too complex, or has no
/// `jobs` mapping.
pub fn parse_workflow(text: &str) -> Result<WorkflowUses, WorkflowError> {
    let doc = Doc::read(text)?;
    let jobs = doc
        .get(0, "jobs")
        .filter(|&jobs| doc.is_map(jobs))
        .ok_or(WorkflowError::NoJobs)?;
    let mut uses = WorkflowUses::default();
    for (_, job) in doc.entries(jobs) {
        if let Some(called) = doc.get(job, "uses").and_then(|u| doc.text(u)) {
            if let Some(path) = local_workflow_path(called) {
                uses.local_workflows.push(path);
            } else {
                uses.remote_workflows.push(called.to_owned());
            }
        }
        let Some(steps) = doc.get(job, "steps").filter(|&s| doc.is_seq(s)) else {
            continue;
        };
        for step in doc.children(steps) {
            let action = doc.get(step, "uses").and_then(|u| doc.text(u));
            if let Some(action) = action.and_then(action_of) {
                uses.actions.push(action);
            }
        }
    }
    Ok(uses)
}

/// The `owner/name` (lower case) of a step's `uses: owner/name[/path]@ref`; `None` for
/// local actions (`./…`), Docker images (`docker://…`) and anything else.
#[must_use]
pub fn action_of(uses: &str) -> Option<String> {
    let (target, git_ref) = uses.trim().split_once('@')?;
    if git_ref.is_empty() {
        return None;
    }
    let mut parts = target.split('/');
    let (owner, name) = (parts.next()?, parts.next()?);
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    (ok(owner) && ok(name)).then(|| format!("{owner}/{name}").to_ascii_lowercase())
}

/// The path of a reusable workflow in the same repository (`uses: ./.github/workflows/x.yml`),
/// if `uses` names one: under `.github/workflows/`, no `..`, a `.yml` or `.yaml` file.
#[must_use]
pub fn local_workflow_path(uses: &str) -> Option<String> {
    let path = uses.trim().strip_prefix("./")?;
    let ok = path.starts_with(".github/workflows/")
        && (path.ends_with(".yml") || path.ends_with(".yaml"))
        && path.split('/').all(|seg| !seg.is_empty() && seg != "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    ok.then(|| path.to_owned())
}

/// Whether a workflow path may be put in a contents-API URL: relative, plain characters,
/// no `..` segment.
#[must_use]
pub fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 512
        && !path.starts_with('/')
        && path.split('/').all(|seg| !seg.is_empty() && seg != "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

/// The outcome of the workflow check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowCheck {
    /// Some job uses the action, directly or through a local reusable workflow.
    Uses,
    /// No job does; the string says what was looked at.
    NotUsed(String),
    /// A workflow file is missing or unreadable at that commit (a definite answer).
    Unreadable(String),
}

/// Checks whether the workflow at `path` uses `action` (`owner/name`), following
/// reusable workflows of the same repository up to [`MAX_REUSE_DEPTH`].
///
/// `fetch(path)` returns the file's text at the run's commit, `Ok(None)` when it does not
/// exist there, or an error (GitHub unavailable), which is returned as is: the caller
/// must not decide on it.
///
/// # Errors
/// The first error of `fetch`.
pub async fn check_workflow<E, F, Fut>(
    path: &str,
    action: &str,
    mut fetch: F,
) -> Result<WorkflowCheck, E>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Option<String>, E>>,
{
    let action = action.to_ascii_lowercase();
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: Vec<(String, usize)> = vec![(path.to_owned(), 0)];
    let mut skipped_remote = Vec::new();
    while let Some((path, depth)) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        if !is_safe_path(&path) {
            return Ok(WorkflowCheck::Unreadable(format!(
                "`{path}` is not a workflow path runproof fetches"
            )));
        }
        let Some(text) = fetch(path.clone()).await? else {
            return Ok(WorkflowCheck::Unreadable(format!(
                "{path} does not exist at that commit"
            )));
        };
        let uses = match parse_workflow(&text) {
            Ok(uses) => uses,
            Err(e) => return Ok(WorkflowCheck::Unreadable(format!("{path}: {e}"))),
        };
        if uses.actions.contains(&action) {
            return Ok(WorkflowCheck::Uses);
        }
        skipped_remote.extend(uses.remote_workflows);
        if depth < MAX_REUSE_DEPTH {
            queue.extend(uses.local_workflows.into_iter().map(|p| (p, depth + 1)));
        }
    }
    let mut what = if seen.len() == 1 {
        format!("no step uses {action}")
    } else {
        format!("no step of the {} workflow files uses {action}", seen.len())
    };
    if !skipped_remote.is_empty() {
        what.push_str(&format!(
            " (reusable workflows of other repositories are not followed: {})",
            skipped_remote.join(", ")
        ));
    }
    Ok(WorkflowCheck::NotUsed(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECT: &str = r"
name: analyse
on: [push]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: make
      - uses: Runproof/Upload-Action@v1
        with:
          files: results.json
";

    #[test]
    fn step_actions_are_found_case_insensitively() {
        let uses = parse_workflow(DIRECT).unwrap();
        assert_eq!(uses.actions, ["actions/checkout", "runproof/upload-action"]);
        assert!(uses.local_workflows.is_empty());
    }

    #[test]
    fn action_references() {
        for (uses, want) in [
            ("actions/checkout@v4", Some("actions/checkout")),
            ("github/codeql-action/init@v3", Some("github/codeql-action")),
            ("o/n@0123456789abcdef0123456789abcdef01234567", Some("o/n")),
            ("./local-action", None),
            ("docker://alpine:3", None),
            ("o/n", None),
            ("o/n@", None),
            ("../x@v1", None),
            ("o@v1", None),
        ] {
            assert_eq!(action_of(uses).as_deref(), want, "{uses}");
        }
        assert_eq!(
            local_workflow_path("./.github/workflows/reuse.yml").as_deref(),
            Some(".github/workflows/reuse.yml")
        );
        for bad in [
            "./.github/workflows/../../secret.yml",
            "./elsewhere/x.yml",
            "./.github/workflows/x.txt",
            "o/r/.github/workflows/x.yml@main",
        ] {
            assert_eq!(local_workflow_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn reusable_workflows_are_listed() {
        let text = r"
on: push
jobs:
  call-local:
    uses: ./.github/workflows/reuse.yml
  call-remote:
    uses: octo-org/shared/.github/workflows/ci.yml@v1
";
        let uses = parse_workflow(text).unwrap();
        assert_eq!(uses.local_workflows, [".github/workflows/reuse.yml"]);
        assert_eq!(
            uses.remote_workflows,
            ["octo-org/shared/.github/workflows/ci.yml@v1"]
        );
    }

    #[test]
    fn anchors_are_followed() {
        let text = r"
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps: &steps
      - uses: runproof/upload-action@v1
  b:
    runs-on: ubuntu-latest
    steps: *steps
";
        let uses = parse_workflow(text).unwrap();
        assert_eq!(uses.actions.len(), 2);
    }

    #[test]
    fn hostile_files_end_in_errors() {
        assert!(matches!(
            parse_workflow("jobs: [1, 2"),
            Err(WorkflowError::Yaml(_))
        ));
        assert_eq!(parse_workflow("name: x\n"), Err(WorkflowError::NoJobs));
        assert_eq!(parse_workflow(""), Err(WorkflowError::NoJobs));
        assert_eq!(
            parse_workflow(&"#".repeat(MAX_WORKFLOW_BYTES + 1)),
            Err(WorkflowError::TooLarge)
        );
        // A billion-laughs document: each level doubles the previous one.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..20 {
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = if i == 1 { String::new() } else { (i - 1).to_string() }
            ));
        }
        bomb.push_str("jobs: {}\n");
        assert_eq!(parse_workflow(&bomb), Err(WorkflowError::TooManyNodes));
        assert!(matches!(
            parse_workflow("a: &a [*a]\njobs: {}\n"),
            Err(WorkflowError::Yaml(_))
        ));
    }

    #[test]
    fn anchors_anywhere_are_followed_and_first_keys_win() {
        let text = r"
on: push
x-uses: &u runproof/upload-action@v2
x-key: &k uses
x-steps: &steps
  - uses: actions/checkout@v4
jobs: &jobs
  a:
    runs-on: x
    steps: *steps
  b: &b
    runs-on: x
    steps:
      - uses: *u
      - *k : other/action@v1
  c: *b
  d:
    uses: ./.github/workflows/reuse.yml
    uses: ./.github/workflows/ignored.yml
";
        let uses = parse_workflow(text).unwrap();
        assert_eq!(
            uses.actions,
            [
                "actions/checkout",
                "runproof/upload-action",
                "other/action",
                "runproof/upload-action",
                "other/action"
            ]
        );
        assert_eq!(uses.local_workflows, [".github/workflows/reuse.yml"]);
        for not_a_map in ["jobs: [a, b]\n", "jobs: x\n", "- jobs\n", "jobs:\n"] {
            assert_eq!(parse_workflow(not_a_map), Err(WorkflowError::NoJobs));
        }
        let steps_not_a_list = "jobs:\n  a:\n    steps: {uses: o/n@v1}\n";
        assert_eq!(parse_workflow(steps_not_a_list).unwrap().actions.len(), 0);
        let second_document = "jobs: {}\n---\njobs: {a: {uses: o/r/w.yml@v1}}\n";
        assert_eq!(
            parse_workflow(second_document).unwrap(),
            WorkflowUses::default()
        );
    }

    fn files(entries: &[(&str, &str)]) -> HashMap<String, String> {
        entries
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect()
    }

    async fn run(files: &HashMap<String, String>, path: &str) -> WorkflowCheck {
        check_workflow(path, "runproof/upload-action", |p| {
            let found = files.get(&p).cloned();
            async move { Ok::<_, ()>(found) }
        })
        .await
        .unwrap()
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn rule_workflow_check_present_absent_and_through_reusable_workflows() {
        let reuse = "on: workflow_call\njobs:\n  up:\n    runs-on: x\n    steps:\n      - uses: runproof/upload-action@v1\n";
        let caller = "on: push\njobs:\n  call:\n    uses: ./.github/workflows/reuse.yml\n";
        let absent = "on: push\njobs:\n  b:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n";
        let loop_a = "on: push\njobs:\n  c:\n    uses: ./.github/workflows/b.yml\n";
        let loop_b = "on: workflow_call\njobs:\n  c:\n    uses: ./.github/workflows/a.yml\n";
        let f = files(&[
            (".github/workflows/direct.yml", DIRECT),
            (".github/workflows/caller.yml", caller),
            (".github/workflows/reuse.yml", reuse),
            (".github/workflows/absent.yml", absent),
            (".github/workflows/a.yml", loop_a),
            (".github/workflows/b.yml", loop_b),
        ]);
        block_on(async {
            assert_eq!(
                run(&f, ".github/workflows/direct.yml").await,
                WorkflowCheck::Uses
            );
            assert_eq!(
                run(&f, ".github/workflows/caller.yml").await,
                WorkflowCheck::Uses
            );
            assert!(matches!(
                run(&f, ".github/workflows/absent.yml").await,
                WorkflowCheck::NotUsed(_)
            ));
            assert!(
                matches!(
                    run(&f, ".github/workflows/a.yml").await,
                    WorkflowCheck::NotUsed(_)
                ),
                "cycles end"
            );
            assert!(matches!(
                run(&f, ".github/workflows/missing.yml").await,
                WorkflowCheck::Unreadable(_)
            ));
            assert!(matches!(
                run(&f, "../etc/passwd").await,
                WorkflowCheck::Unreadable(_)
            ));
        });
    }

    #[test]
    fn reuse_depth_is_bounded() {
        let mut entries = Vec::new();
        for i in 0..10 {
            entries.push((
                format!(".github/workflows/w{i}.yml"),
                format!(
                    "on: workflow_call\njobs:\n  j:\n    uses: ./.github/workflows/w{}.yml\n",
                    i + 1
                ),
            ));
        }
        entries.push((
            ".github/workflows/w10.yml".into(),
            "on: workflow_call\njobs:\n  j:\n    runs-on: x\n    steps:\n      - uses: runproof/upload-action@v1\n".into(),
        ));
        let f: HashMap<String, String> = entries.into_iter().collect();
        block_on(async {
            assert!(matches!(
                run(&f, ".github/workflows/w0.yml").await,
                WorkflowCheck::NotUsed(_)
            ));
            assert_eq!(
                run(&f, ".github/workflows/w7.yml").await,
                WorkflowCheck::Uses
            );
        });
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]
        #[test]
        fn workflow_parsing_never_panics(text in "\\PC{0,200}") {
            let _ = parse_workflow(&text);
            let _ = action_of(&text);
            let _ = local_workflow_path(&text);
        }

        #[test]
        fn workflow_shapes_never_panic(
            key in "(jobs|steps|uses|runs-on|on|&a|\\*a|-|:|\\[|\\]|\\{|\\}| |\n|x){0,40}",
        ) {
            let _ = parse_workflow(&format!("jobs:\n  j:\n    {key}\n"));
        }
    }

    #[test]
    fn fetch_errors_are_not_decisions() {
        block_on(async {
            let r = check_workflow(".github/workflows/x.yml", "o/n", |_| async {
                Err::<Option<String>, _>("down")
            })
            .await;
            assert_eq!(r, Err("down"));
        });
    }
}
