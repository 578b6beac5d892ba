//! `RUNPROOF_…` environment variables over the file, by one rule for every key.
//!
//! The key `section.key` is read from `RUNPROOF_SECTION__KEY` (`__` between levels; a
//! top-level key is `RUNPROOF_KEY`), whatever the case of the name. The keys are those
//! the configuration types deserialize, found by tracing [`Config`]'s `Deserialize` once
//! ([`keys`]), so that a key added to a type needs no list here, and a key whose name
//! holds a single `_` (`github_token`, `max_upload_bytes`) is never mistaken for two.
//!
//! Values: text is taken as written; numbers and booleans are parsed as figment parses
//! them; a list is comma-separated (`RUNPROOF_API_KEYS=k1,k2`), its items added to the
//! file's; a list of tables (`oidc.issuers`) takes figment's inline form
//! (`[{issuer = "https://…"}]`). A `RUNPROOF_…` variable that names no key is reported by
//! name only (its value may be a secret), unless another part of runproof reads it
//! ([`READ_ELSEWHERE`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::sync::LazyLock;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::Config;

/// What every variable of the configuration starts with.
const PREFIX: &str = "RUNPROOF_";

/// Older names of two lists, from before every key followed the rule; they still work.
const ALIASES: [(&str, &str); 2] = [
    ("RUNPROOF_GITHUB_WEBHOOK_SECRETS", "github.webhook_secrets"),
    ("RUNPROOF_DELIVERY_SECRETS", "delivery.secrets"),
];

/// `RUNPROOF_…` variables that something other than the configuration reads: never
/// reported as naming no key.
const READ_ELSEWHERE: [&str; 12] = [
    // `--config` of `runproof serve` and `runproof verify-token` (main.rs).
    "RUNPROOF_CONFIG",
    // `runproof upload`'s `--url`, `--audience` and `--mode` (main.rs).
    "RUNPROOF_URL",
    "RUNPROOF_AUDIENCE",
    "RUNPROOF_MODE",
    // action.yml: the binary to run, and the mirror it is downloaded from.
    "RUNPROOF_BIN",
    "RUNPROOF_DOWNLOAD_URL",
    // Tests: tests/crash.rs replays a seed, tests/load.rs runs this many seconds,
    // runproof-github's tests/workflow_bombs.rs picks a bomb.
    "RUNPROOF_CRASH_SEED",
    "RUNPROOF_LOAD_SECONDS",
    "RUNPROOF_WORKFLOW_BOMB",
    // scripts/bench.sh and scripts/bench-peer.sh; scripts/lint-workflows.py.
    "RUNPROOF_EXTRA_TOML",
    "RUNPROOF_LINT_NO_INSTALL",
    // The App's receiver in docs/integrating.md, which may share the environment.
    "RUNPROOF_SECRET",
];

/// Families of variables that something other than the configuration reads.
const READ_ELSEWHERE_PREFIXES: [&str; 4] = [
    // action.yml: its inputs (`RUNPROOF_ACTION_URL`, …) and its pins
    // (`RUNPROOF_PINNED_VERSION`, …).
    "RUNPROOF_ACTION_",
    "RUNPROOF_PINNED_",
    // Tests (`RUNPROOF_TEST_DATABASE_URL`, `RUNPROOF_TEST_BIN`, …) and benchmarks
    // (`RUNPROOF_BENCH_DATABASE_URL`).
    "RUNPROOF_TEST_",
    "RUNPROOF_BENCH_",
];

/// How a variable's value becomes a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Text, taken as written (figment's quoting is honoured).
    Text,
    /// A number, a boolean, or an id given either way: parsed as figment parses it.
    Parsed,
    /// Comma-separated items, each of the kind given (`Text` or `Parsed`).
    List(Item),
    /// A list of tables, in figment's inline form.
    Tables,
}

/// The kind of a list's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// Taken as written, trimmed.
    Text,
    /// Parsed as figment parses it.
    Parsed,
}

/// Every key of the file an environment variable can set, by its dotted path
/// (`limits.max_connections`), with the kind of its value. Sections are not keys.
pub(crate) fn keys() -> &'static BTreeMap<String, Kind> {
    static KEYS: LazyLock<BTreeMap<String, Kind>> = LazyLock::new(|| keys_of(&trace::<Config>()));
    &KEYS
}

/// The variable that sets `path`: `RUNPROOF_LIMITS__MAX_CONNECTIONS`.
pub(crate) fn variable(path: &str) -> String {
    format!("{PREFIX}{}", path.to_ascii_uppercase().replace('.', "__"))
}

/// The environment's overrides, ready to be merged over the file.
#[derive(Debug, Clone)]
pub(crate) struct Overrides {
    values: Dict,
}

/// Reads `vars` (the process's environment): the overrides, and the names of the
/// `RUNPROOF_…` variables that set nothing, sorted.
pub(crate) fn read(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> (Overrides, Vec<String>) {
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .filter(|(k, _)| starts_with_ignore_case(k, PREFIX))
        .collect();
    vars.sort();
    let mut values = Dict::new();
    let mut unknown = Vec::new();
    for (name, raw) in vars {
        if is_read_elsewhere(&name) {
            continue;
        }
        let path = path_of(&name);
        match keys().get(&path) {
            Some(kind) => insert(&mut values, &path, value(*kind, &raw)),
            None => unknown.push(name),
        }
    }
    (Overrides { values }, unknown)
}

impl Provider for Overrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{PREFIX}` environment variable(s)"))
            .interpolater(|_: &Profile, keys: &[&str]| variable(&keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn is_read_elsewhere(name: &str) -> bool {
    READ_ELSEWHERE.iter().any(|n| name.eq_ignore_ascii_case(n))
        || READ_ELSEWHERE_PREFIXES
            .iter()
            .any(|p| starts_with_ignore_case(name, p))
}

/// The dotted path a variable names (an alias's key, or by the rule); it may be no key.
fn path_of(name: &str) -> String {
    if let Some((_, path)) = ALIASES.iter().find(|(a, _)| name.eq_ignore_ascii_case(a)) {
        return (*path).to_owned();
    }
    name.get(PREFIX.len()..)
        .unwrap_or_default()
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(".")
}

fn parsed(raw: &str) -> Value {
    match raw.parse::<Value>() {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

fn value(kind: Kind, raw: &str) -> Value {
    match kind {
        Kind::Text => match parsed(raw) {
            text @ Value::String(..) => text,
            _ => Value::from(raw.to_owned()),
        },
        Kind::Parsed | Kind::Tables => parsed(raw),
        Kind::List(item) => Value::from(
            raw.split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(|i| match item {
                    Item::Text => Value::from(i.to_owned()),
                    Item::Parsed => parsed(i),
                })
                .collect::<Vec<_>>(),
        ),
    }
}

/// Sets `path` in `dict`; a list set twice (a key and its alias) keeps both's items.
fn insert(dict: &mut Dict, path: &str, value: Value) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    match rest {
        None => match (dict.get_mut(head), value) {
            (Some(Value::Array(_, items)), Value::Array(_, more)) => items.extend(more),
            (_, value) => {
                dict.insert(head.to_owned(), value);
            }
        },
        Some(rest) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// What a type asked the tracer for at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Traced {
    Bool,
    Number,
    Text,
    Any,
    Seq,
    Table,
}

/// The keys among the traced paths: leaves outside list items.
fn keys_of(traced: &BTreeMap<String, Traced>) -> BTreeMap<String, Kind> {
    let mut keys = BTreeMap::new();
    for (path, what) in traced {
        if path.contains("[]") {
            continue;
        }
        let kind = match what {
            Traced::Table => continue,
            Traced::Text => Kind::Text,
            Traced::Bool | Traced::Number | Traced::Any => Kind::Parsed,
            Traced::Seq => match traced.get(&format!("{path}[]")) {
                Some(Traced::Text) => Kind::List(Item::Text),
                Some(Traced::Table | Traced::Seq) => Kind::Tables,
                _ => Kind::List(Item::Parsed),
            },
        };
        keys.insert(path.clone(), kind);
    }
    keys
}

/// Records what `T`'s `Deserialize` asks for at each path, by feeding it placeholder
/// values. A type that refuses its placeholder (an address parsed from `""`) stops the
/// walk there: the walk runs again without that path (every such key of the
/// configuration has a default), until it completes or no new path is to blame.
fn trace<T: for<'de> Deserialize<'de>>() -> BTreeMap<String, Traced> {
    let mut skip = BTreeSet::new();
    let mut traced = BTreeMap::new();
    loop {
        let trace = Trace {
            traced: RefCell::new(traced),
            last: RefCell::new(None),
            skip: &skip,
        };
        let complete = T::deserialize(Tracer {
            trace: &trace,
            path: String::new(),
        })
        .is_ok();
        traced = trace.traced.into_inner();
        match trace.last.into_inner() {
            Some(blamed) if !complete && !skip.contains(&blamed) => {
                skip.insert(blamed);
            }
            _ => return traced,
        }
    }
}

/// The state of one walk.
struct Trace<'s> {
    /// What was asked for at each path, first ask first.
    traced: RefCell<BTreeMap<String, Traced>>,
    /// The last value handed out: the one to blame when the walk stops.
    last: RefCell<Option<String>>,
    /// Paths that refused their placeholder in an earlier walk.
    skip: &'s BTreeSet<String>,
}

impl Trace<'_> {
    fn record(&self, path: &str, what: Traced) {
        self.traced
            .borrow_mut()
            .entry(path.to_owned())
            .or_insert(what);
        if !matches!(what, Traced::Table | Traced::Seq) {
            *self.last.borrow_mut() = Some(path.to_owned());
        }
    }
}

/// Why a placeholder was refused (never shown: the walk just goes round it).
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl de::Error for Refused {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Self(msg.to_string())
    }
}

/// A deserializer that answers every ask with a placeholder, recording the ask.
struct Tracer<'t, 's> {
    trace: &'t Trace<'s>,
    path: String,
}

macro_rules! placeholders {
    ($($method:ident => $what:ident, $visit:ident($($value:expr)?);)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
            self.trace.record(&self.path, Traced::$what);
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Tracer<'_, '_> {
    type Error = Refused;

    placeholders! {
        deserialize_bool => Bool, visit_bool(false);
        deserialize_i8 => Number, visit_i64(0);
        deserialize_i16 => Number, visit_i64(0);
        deserialize_i32 => Number, visit_i64(0);
        deserialize_i64 => Number, visit_i64(0);
        deserialize_i128 => Number, visit_i64(0);
        deserialize_u8 => Number, visit_u64(0);
        deserialize_u16 => Number, visit_u64(0);
        deserialize_u32 => Number, visit_u64(0);
        deserialize_u64 => Number, visit_u64(0);
        deserialize_u128 => Number, visit_u64(0);
        deserialize_f32 => Number, visit_f64(0.0);
        deserialize_f64 => Number, visit_f64(0.0);
        deserialize_char => Text, visit_char('x');
        deserialize_str => Text, visit_str("");
        deserialize_string => Text, visit_str("");
        deserialize_bytes => Text, visit_bytes(&[]);
        deserialize_byte_buf => Text, visit_bytes(&[]);
        deserialize_identifier => Text, visit_str("");
        deserialize_unit => Text, visit_unit();
        // Untagged enums, such as an id given as a number or as a string.
        deserialize_any => Any, visit_u64(0);
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        self.trace.record(&self.path, Traced::Seq);
        let path = format!("{}[]", self.path);
        visitor.visit_seq(Items {
            trace: self.trace,
            pending: !self.trace.skip.contains(&path),
            path,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        self.deserialize_struct("", &[], visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Refused> {
        self.trace.record(&self.path, Traced::Table);
        visitor.visit_map(Fields {
            trace: self.trace,
            path: self.path,
            fields: fields.iter(),
            current: String::new(),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Refused> {
        self.trace.record(&self.path, Traced::Text);
        Err(Refused("an enum is not traced".into()))
    }
}

/// A list of one placeholder item (none once that item was refused).
struct Items<'t, 's> {
    trace: &'t Trace<'s>,
    path: String,
    pending: bool,
}

impl<'de> SeqAccess<'de> for Items<'_, '_> {
    type Error = Refused;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Refused> {
        if !std::mem::take(&mut self.pending) {
            return Ok(None);
        }
        seed.deserialize(Tracer {
            trace: self.trace,
            path: self.path.clone(),
        })
        .map(Some)
    }
}

/// Every field of a struct, each with a placeholder value.
struct Fields<'t, 's> {
    trace: &'t Trace<'s>,
    path: String,
    fields: std::slice::Iter<'static, &'static str>,
    current: String,
}

impl<'de> MapAccess<'de> for Fields<'_, '_> {
    type Error = Refused;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Refused> {
        for field in self.fields.by_ref() {
            let path = if self.path.is_empty() {
                (*field).to_owned()
            } else {
                format!("{}.{field}", self.path)
            };
            if self.trace.skip.contains(&path) {
                continue;
            }
            self.current = path;
            return seed
                .deserialize(de::value::StrDeserializer::<Refused>::new(field))
                .map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Refused> {
        seed.deserialize(Tracer {
            trace: self.trace,
            path: std::mem::take(&mut self.current),
        })
    }
}
