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
//! file's; a list of tables (`oidc.issuers`, `policy.rules`) takes figment's inline form
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

use super::types::Config;

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use runproof_core::Secret;

    use super::super::{Config, load, resolve};
    use super::*;

    /// A plausible value for each key an environment variable can set.
    fn env_value(key: &str) -> &'static str {
        match key {
            "listen" | "metrics_listen" => "127.0.0.1:9999",
            "database_url" => "postgres://runproof@127.0.0.1:5432/runproof",
            "blob_store" => "s3://bucket/prefix",
            "log_format" => "json",
            "oidc.audience" => "https://runproof.env.test",
            "oidc.issuers" => "[{issuer = \"https://issuer.env.test\"}]",
            "policy.rules" => "[{name = \"env\", refs = [\"refs/heads/main\"]}]",
            "policy.repository_file" => ".github/runproof.yml",
            "github.api_url" | "s3.endpoint" => "https://internal.example",
            "delivery.url" | "delivery.public_url" => "https://app.example/hook",
            "ui.public_url" | "ui.github_url" => "https://console.example",
            "webhook_mode.require_action" | "policy.require_action" => "owner/upload",
            "limits.forwarded_header" => "forwarded",
            "limits.trusted_proxies" => "10.0.0.0/8",
            "database.schema" => "runproof_env",
            "s3.region" => "eu-west-1",
            "s3.access_key_id" => "AKIDEXAMPLE",
            "s3.secret_access_key" => "not-a-real-secret",
            k if k.ends_with("_file") || k.ends_with("_dir") => "/etc/runproof/x",
            k if k.ends_with("enabled")
                || k.ends_with("allow_forks")
                || k.ends_with("allow_http")
                || k.ends_with("replay_protection")
                || k.ends_with("require_github_hosted_runner") =>
            {
                "true"
            }
            _ => "7",
        }
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn every_environment_override_names_a_key_of_the_right_type() {
        figment::Jail::expect_with(|jail| {
            for key in keys().keys() {
                jail.set_env(variable(key), env_value(key));
            }
            let config = load(None).map_err(|e| e.to_string())?;
            assert!(config.unknown_environment.is_empty());
            assert_eq!(config.limits.unauthenticated_per_repository_per_minute, 7);
            assert_eq!(config.limits.max_connections, 7);
            assert_eq!(config.limits.header_timeout_seconds, 7);
            assert_eq!(config.limits.max_requests_in_flight, 7);
            assert_eq!(config.limits.max_connections_per_address, 7);
            assert_eq!(config.limits.webhook_body_timeout_seconds, 7);
            assert_eq!(config.limits.max_unverified_deliveries_per_address, 7);
            assert_eq!(
                config.limits.forwarded_header,
                runproof_server::ForwardedHeader::Forwarded
            );
            assert_eq!(config.orphan_blob_grace_seconds, 7);
            assert_eq!(config.database.schema.as_deref(), Some("runproof_env"));
            assert_eq!(config.database.connect_timeout_seconds, Some(7));
            let s3 = config.s3.as_ref().ok_or("no [s3]")?;
            assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
            assert!(s3.allow_http);
            assert_eq!(s3.max_buffer_bytes, Some(7));
            assert!(s3.spill_dir.is_some());
            assert_eq!(config.metrics_listen, Some(([127, 0, 0, 1], 9999).into()));
            assert_eq!(config.sessions.max_uploads, 7);
            assert_eq!(config.webhook_mode.max_pending_uploads, 7);
            assert_eq!(config.storage.inline_max_bytes, 7);
            Ok(())
        });
    }

    /// A key, a value for its variable, and whether a loaded configuration holds it.
    type EnvRow = (&'static str, &'static str, fn(&Config) -> bool);

    /// Every key an environment variable can set: the variable, alone, lands in it.
    const ENV_ROWS: &[EnvRow] = &[
        ("listen", "127.0.0.1:9999", |c| c.listen.port() == 9999),
        ("metrics_listen", "127.0.0.1:9998", |c| {
            c.metrics_listen.map(|a| a.port()) == Some(9998)
        }),
        ("data_dir", "/srv/rp", |c| {
            c.data_dir == Path::new("/srv/rp")
        }),
        ("database_url", "postgres://db/rp", |c| {
            c.database_url.as_ref().map(Secret::expose) == Some("postgres://db/rp")
        }),
        ("blob_store", "s3://b/p", |c| {
            c.blob_store.as_deref() == Some("s3://b/p")
        }),
        ("max_upload_bytes", "7", |c| c.max_upload_bytes == 7),
        ("api_keys", "key-one, key-two", |c| {
            c.api_keys
                .iter()
                .map(Secret::expose)
                .eq(["key-one", "key-two"])
        }),
        ("api_keys_file", "/k", |c| {
            c.api_keys_file.as_deref() == Some(Path::new("/k"))
        }),
        ("body_timeout_seconds", "7", |c| c.body_timeout_seconds == 7),
        ("orphan_blob_grace_seconds", "7", |c| {
            c.orphan_blob_grace_seconds == 7
        }),
        ("log_format", "json", |c| c.log_format == "json"),
        ("database.max_connections", "7", |c| {
            c.database.max_connections == Some(7)
        }),
        ("database.statement_timeout_seconds", "7", |c| {
            c.database.statement_timeout_seconds == Some(7)
        }),
        ("database.connect_timeout_seconds", "7", |c| {
            c.database.connect_timeout_seconds == Some(7)
        }),
        ("database.schema", "rp_env", |c| {
            c.database.schema.as_deref() == Some("rp_env")
        }),
        ("s3.endpoint", "https://s3.example", |c| {
            c.s3.as_ref().and_then(|s| s.endpoint.as_deref()) == Some("https://s3.example")
        }),
        ("s3.region", "eu-west-1", |c| {
            c.s3.as_ref().and_then(|s| s.region.as_deref()) == Some("eu-west-1")
        }),
        ("s3.access_key_id", "12345", |c| {
            c.s3.as_ref().and_then(|s| s.access_key_id.as_deref()) == Some("12345")
        }),
        ("s3.secret_access_key", "not-a-secret", |c| {
            c.s3.as_ref()
                .and_then(|s| s.secret_access_key.as_ref())
                .map(Secret::expose)
                == Some("not-a-secret")
        }),
        ("s3.secret_access_key_file", "/k", |c| {
            c.s3.as_ref()
                .and_then(|s| s.secret_access_key_file.as_deref())
                == Some(Path::new("/k"))
        }),
        ("s3.allow_http", "true", |c| {
            c.s3.as_ref().is_some_and(|s| s.allow_http)
        }),
        ("s3.max_buffer_bytes", "7", |c| {
            c.s3.as_ref().and_then(|s| s.max_buffer_bytes) == Some(7)
        }),
        ("s3.spill_dir", "/spill", |c| {
            c.s3.as_ref().and_then(|s| s.spill_dir.as_deref()) == Some(Path::new("/spill"))
        }),
        ("oidc.audience", "https://a.example", |c| {
            c.oidc.as_ref().and_then(|o| o.audience.as_deref()) == Some("https://a.example")
        }),
        ("oidc.leeway_seconds", "7", |c| {
            c.oidc.as_ref().is_some_and(|o| o.leeway_seconds == 7)
        }),
        ("oidc.replay_protection", "false", |c| {
            c.oidc.as_ref().is_some_and(|o| !o.replay_protection)
        }),
        (
            "oidc.issuers",
            "[{issuer = \"https://i.example\", jwks_url = \"https://i.example/k\"}]",
            |c| {
                c.oidc.as_ref().is_some_and(|o| {
                    o.issuers.len() == 1
                        && o.issuers[0].issuer == "https://i.example"
                        && o.issuers[0].jwks_url.as_deref() == Some("https://i.example/k")
                })
            },
        ),
        ("policy.denied_events", "push, workflow_run", |c| {
            c.policy.denied_events == ["push", "workflow_run"]
        }),
        ("policy.require_github_hosted_runner", "true", |c| {
            c.policy.require_github_hosted_runner
        }),
        ("policy.allowed_repository_owner_ids", "7,8", |c| {
            c.policy.allowed_repository_owner_ids
                == [runproof_core::OwnerId(7), runproof_core::OwnerId(8)]
        }),
        ("policy.allowed_repository_ids", "9", |c| {
            c.policy.allowed_repository_ids == [runproof_core::RepositoryId(9)]
        }),
        (
            "policy.rules",
            "[{name = \"release\", refs = [\"refs/tags/v*\"], repository_ids = [9]}]",
            |c| {
                c.policy.rules.len() == 1
                    && c.policy.rules[0].name == "release"
                    && c.policy.rules[0].refs.as_deref() == Some(&["refs/tags/v*".to_owned()][..])
                    && c.policy.rules[0].repository_ids
                        == Some(vec![runproof_core::RepositoryId(9)])
            },
        ),
        ("policy.require_action", "o/a", |c| {
            c.policy.require_action == "o/a"
        }),
        ("policy.repository_file", ".github/runproof.yml", |c| {
            c.policy.repository_file == ".github/runproof.yml"
        }),
        ("jwks.refresh_interval_seconds", "7", |c| {
            c.jwks.refresh_interval_seconds == 7
        }),
        ("jwks.unknown_kid_cooldown_seconds", "7", |c| {
            c.jwks.unknown_kid_cooldown_seconds == 7
        }),
        ("jwks.timeout_seconds", "7", |c| c.jwks.timeout_seconds == 7),
        ("github.api_url", "https://ghe.example/api/v3", |c| {
            c.github
                .as_ref()
                .is_some_and(|g| g.api_url == "https://ghe.example/api/v3")
        }),
        ("github.app_id", "7", |c| {
            c.github.as_ref().is_some_and(|g| g.app_id == 7)
        }),
        ("github.private_key_file", "/k.pem", |c| {
            c.github
                .as_ref()
                .and_then(|g| g.private_key_file.as_deref())
                == Some(Path::new("/k.pem"))
        }),
        ("github.webhook_secrets", "whsec-one,whsec-two", |c| {
            c.github.as_ref().is_some_and(|g| {
                g.webhook_secrets
                    .iter()
                    .map(Secret::expose)
                    .eq(["whsec-one", "whsec-two"])
            })
        }),
        ("github.webhook_secrets_file", "/w", |c| {
            c.github
                .as_ref()
                .and_then(|g| g.webhook_secrets_file.as_deref())
                == Some(Path::new("/w"))
        }),
        ("github.timeout_seconds", "7", |c| {
            c.github.as_ref().is_some_and(|g| g.timeout_seconds == 7)
        }),
        ("github_token.enabled", "true", |c| c.github_token.enabled),
        ("webhook_mode.enabled", "true", |c| c.webhook_mode.enabled),
        ("webhook_mode.grace_period_seconds", "7", |c| {
            c.webhook_mode.grace_period_seconds == 7
        }),
        ("webhook_mode.pending_ttl_seconds", "7", |c| {
            c.webhook_mode.pending_ttl_seconds == 7
        }),
        ("webhook_mode.allow_forks", "true", |c| {
            c.webhook_mode.allow_forks
        }),
        ("webhook_mode.require_action", "o/a", |c| {
            c.webhook_mode.require_action.as_deref() == Some("o/a")
        }),
        ("webhook_mode.max_uploads_per_run", "7", |c| {
            c.webhook_mode.max_uploads_per_run == 7
        }),
        ("webhook_mode.max_pending_bytes_per_repository", "7", |c| {
            c.webhook_mode.max_pending_bytes_per_repository == 7
        }),
        ("webhook_mode.max_pending_uploads", "7", |c| {
            c.webhook_mode.max_pending_uploads == 7
        }),
        ("webhook_mode.max_pending_bytes", "7", |c| {
            c.webhook_mode.max_pending_bytes == 7
        }),
        ("delivery.url", "https://app.example/hook", |c| {
            c.delivery.as_ref().and_then(|d| d.url.as_deref()) == Some("https://app.example/hook")
        }),
        ("delivery.secrets", "push-secret", |c| {
            c.delivery
                .as_ref()
                .is_some_and(|d| d.secrets.iter().map(Secret::expose).eq(["push-secret"]))
        }),
        ("delivery.secrets_file", "/s", |c| {
            c.delivery.as_ref().and_then(|d| d.secrets_file.as_deref()) == Some(Path::new("/s"))
        }),
        ("delivery.events", "upload.rejected,upload.expired", |c| {
            c.delivery
                .as_ref()
                .is_some_and(|d| d.events == ["upload.rejected", "upload.expired"])
        }),
        ("delivery.max_attempts", "7", |c| {
            c.delivery.as_ref().is_some_and(|d| d.max_attempts == 7)
        }),
        ("delivery.timeout_seconds", "7", |c| {
            c.delivery.as_ref().is_some_and(|d| d.timeout_seconds == 7)
        }),
        ("delivery.backoff_seconds", "7", |c| {
            c.delivery.as_ref().is_some_and(|d| d.backoff_seconds == 7)
        }),
        ("delivery.max_backoff_seconds", "7", |c| {
            c.delivery
                .as_ref()
                .is_some_and(|d| d.max_backoff_seconds == 7)
        }),
        ("delivery.public_url", "https://rp.example", |c| {
            c.delivery.as_ref().and_then(|d| d.public_url.as_deref()) == Some("https://rp.example")
        }),
        ("sessions.ttl_seconds", "7", |c| {
            c.sessions.ttl == std::time::Duration::from_secs(7)
        }),
        ("sessions.max_uploads", "7", |c| c.sessions.max_uploads == 7),
        ("sessions.max_bytes", "7", |c| c.sessions.max_bytes == 7),
        ("events.retention_days", "7", |c| {
            c.events.retention_days == 7
        }),
        ("events.max_rows", "7", |c| c.events.max_rows == 7),
        ("ui.enabled", "false", |c| !c.ui.enabled),
        ("ui.public_url", "https://rp.example", |c| {
            c.ui.public_url.as_deref() == Some("https://rp.example")
        }),
        ("ui.session_ttl_seconds", "7", |c| {
            c.ui.session_ttl_seconds == 7
        }),
        ("ui.sign_in_per_minute", "7", |c| {
            c.ui.sign_in_per_minute == 7
        }),
        ("ui.github_url", "https://ghe.example", |c| {
            c.ui.github_url.as_deref() == Some("https://ghe.example")
        }),
        ("limits.max_connections", "7", |c| {
            c.limits.max_connections == 7
        }),
        ("limits.max_connections_per_address", "7", |c| {
            c.limits.max_connections_per_address == 7
        }),
        ("limits.header_timeout_seconds", "7", |c| {
            c.limits.header_timeout_seconds == 7
        }),
        ("limits.webhook_body_timeout_seconds", "7", |c| {
            c.limits.webhook_body_timeout_seconds == 7
        }),
        ("limits.max_unverified_deliveries_per_address", "7", |c| {
            c.limits.max_unverified_deliveries_per_address == 7
        }),
        ("limits.max_requests_in_flight", "7", |c| {
            c.limits.max_requests_in_flight == 7
        }),
        ("limits.unauthenticated_per_ip_per_minute", "7", |c| {
            c.limits.unauthenticated_per_ip_per_minute == 7
        }),
        (
            "limits.unauthenticated_per_repository_per_minute",
            "7",
            |c| c.limits.unauthenticated_per_repository_per_minute == 7,
        ),
        ("limits.trusted_proxies", "10.0.0.0/8, 192.0.2.1", |c| {
            c.limits.trusted_proxies.len() == 2
                && c.limits.trusted_proxies[1].contains([192, 0, 2, 1].into())
        }),
        ("limits.forwarded_header", "forwarded", |c| {
            c.limits.forwarded_header == runproof_server::ForwardedHeader::Forwarded
        }),
        ("storage.inline_max_bytes", "7", |c| {
            c.storage.inline_max_bytes == 7
        }),
    ];

    #[test]
    #[allow(clippy::result_large_err)]
    fn rule_each_variable_sets_its_key_and_only_by_the_rule() {
        let listed: Vec<&str> = ENV_ROWS.iter().map(|(key, _, _)| *key).collect();
        let known: Vec<&str> = keys().keys().map(String::as_str).collect();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted, known,
            "a row for every key, and a key for every row"
        );
        for (key, value, lands) in ENV_ROWS {
            let variable = variable(key);
            figment::Jail::expect_with(|jail| {
                let untouched = load(None).map_err(|e| e.to_string())?;
                assert!(
                    !lands(&untouched),
                    "{key}: the default already holds {value}"
                );
                jail.set_env(&variable, value);
                let config = load(None).map_err(|e| format!("{variable}: {e}"))?;
                assert!(lands(&config), "{variable}={value} did not set `{key}`");
                assert!(config.unknown_environment.is_empty(), "{variable}");
                Ok(())
            });
        }
        assert_eq!(
            variable("github_token.enabled"),
            "RUNPROOF_GITHUB_TOKEN__ENABLED"
        );
        assert_eq!(variable("max_upload_bytes"), "RUNPROOF_MAX_UPLOAD_BYTES");
    }

    /// Two keys that the hand-written list of variables left out were ignored; they work.
    #[test]
    #[allow(clippy::result_large_err)]
    fn keys_once_ignored_now_work() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("RUNPROOF_POLICY__REQUIRE_GITHUB_HOSTED_RUNNER", "true");
            jail.set_env(
                "RUNPROOF_GITHUB__WEBHOOK_SECRETS",
                "0123456789abcdef-one,0123456789abcdef-two",
            );
            jail.set_env("RUNPROOF_OIDC__AUDIENCE", "https://runproof.env.test");
            let config = load(None).map_err(|e| e.to_string())?;
            assert!(config.policy.require_github_hosted_runner);
            let resolved = resolve(config).map_err(|e| e.to_string())?;
            assert!(resolved.config.policy.require_github_hosted_runner);
            assert_eq!(resolved.webhook_secrets.len(), 2);
            Ok(())
        });
    }

    /// Lists from the environment add to the file's, under their names by the rule and
    /// under the older names of two of them.
    #[test]
    #[allow(clippy::result_large_err)]
    fn listed_secrets_add_to_the_files() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "runproof.toml",
                "api_keys = [\"from-the-file\"]\n[github]\nwebhook_secrets = [\"file-secret\"]\n\
                 [delivery]\nurl = \"https://app.example/hook\"\nsecrets = [\"file-push\"]\n",
            )?;
            jail.set_env("RUNPROOF_API_KEYS", " from-env-1 ,, from-env-2 ");
            jail.set_env("RUNPROOF_GITHUB_WEBHOOK_SECRETS", "old-name");
            jail.set_env("RUNPROOF_GITHUB__WEBHOOK_SECRETS", "new-name");
            jail.set_env("RUNPROOF_DELIVERY_SECRETS", "old-push");
            let config = load(Some(Path::new("runproof.toml"))).map_err(|e| e.to_string())?;
            let shown = |list: &[Secret]| {
                list.iter()
                    .map(Secret::expose)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            assert_eq!(
                shown(&config.api_keys),
                "from-the-file,from-env-1,from-env-2"
            );
            let github = config.github.as_ref().ok_or("no [github]")?;
            assert_eq!(
                shown(&github.webhook_secrets),
                "file-secret,old-name,new-name"
            );
            let delivery = config.delivery.as_ref().ok_or("no [delivery]")?;
            assert_eq!(shown(&delivery.secrets), "file-push,old-push");
            assert!(config.unknown_environment.is_empty());
            Ok(())
        });
    }

    /// Captures what is logged while `f` runs.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
        (out, text)
    }

    /// A `RUNPROOF_…` variable that sets nothing is named once, its value never shown;
    /// those other parts of runproof read are not.
    #[test]
    #[allow(clippy::result_large_err)]
    fn rule_an_unknown_variable_is_named_without_its_value() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("RUNPROOF_OIDC__AUDIENCE", "https://runproof.env.test");
            jail.set_env("RUNPROOF_LIMITS__NO_SUCH_KEY", "s3cr3t-value-1");
            jail.set_env("RUNPROOF_GITHUB_WEBHOOK_SECRET", "s3cr3t-value-2");
            jail.set_env("RUNPROOF_OIDC", "s3cr3t-value-3");
            for read_elsewhere in [
                "RUNPROOF_URL",
                "RUNPROOF_AUDIENCE",
                "RUNPROOF_MODE",
                "RUNPROOF_CONFIG",
                "RUNPROOF_TEST_DATABASE_URL",
                "RUNPROOF_ACTION_URL",
                "RUNPROOF_PINNED_VERSION",
                "RUNPROOF_BIN",
            ] {
                jail.set_env(read_elsewhere, "x");
            }
            let config = load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                config.unknown_environment,
                [
                    "RUNPROOF_GITHUB_WEBHOOK_SECRET",
                    "RUNPROOF_LIMITS__NO_SUCH_KEY",
                    "RUNPROOF_OIDC"
                ]
            );
            let (resolved, log) = logged(|| resolve(config));
            resolved.map_err(|e| e.to_string())?;
            for name in &[
                "RUNPROOF_LIMITS__NO_SUCH_KEY",
                "RUNPROOF_GITHUB_WEBHOOK_SECRET",
            ] {
                assert_eq!(log.matches(&format!("{name} sets no")).count(), 1, "{log}");
            }
            assert!(log.contains("WARN"), "{log}");
            assert!(!log.contains("s3cr3t"), "{log}");
            assert!(
                !log.contains("RUNPROOF_URL") && !log.contains("RUNPROOF_TEST"),
                "{log}"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn variables_outside_the_list_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("RUNPROOF_TEST_DATABASE_URL", "postgres://elsewhere");
            jail.set_env("RUNPROOF_LIMITS__NO_SUCH_KEY", "1");
            jail.set_env("RUNPROOF_OIDC__AUDIENCE", "https://runproof.env.test");
            let config = load(None).map_err(|e| e.to_string())?;
            assert!(config.database_url.is_none());
            Ok(())
        });
    }
}
