//! What pages show, built from stored records: plain strings the templates escape.

use runproof_core::UnixTime;
use runproof_store::{EventRecord, PushRecord, UploadRecord};

/// Percent-encodes `s` for a query value or a path segment: everything but unreserved
/// characters.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes one path segment (a `/` too).
pub(crate) fn segment_escape(s: &str) -> String {
    query_escape(s).replace('/', "%2F")
}

/// A time as people read it: RFC 3339, UTC.
pub(crate) fn time(t: UnixTime) -> String {
    t.rfc3339()
}

fn offset_time(t: time::OffsetDateTime) -> String {
    time(UnixTime(t.unix_timestamp()))
}

/// A size in bytes, with a binary unit.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit} ({bytes} bytes)")
}

/// One mismatch of a trust rule, as shown.
pub(crate) struct MismatchView {
    pub(crate) field: String,
    pub(crate) expected: String,
    pub(crate) actual: String,
}

impl From<&runproof_core::rules::Mismatch> for MismatchView {
    fn from(m: &runproof_core::rules::Mismatch) -> Self {
        Self {
            field: m.field.clone(),
            expected: m.expected.join(", "),
            actual: m.actual.clone().unwrap_or_else(|| "(none)".to_owned()),
        }
    }
}

/// The mismatches an event recorded (a JSON list of `{field, expected, actual}`); what
/// does not have that shape is skipped.
pub(crate) fn mismatches(value: Option<&serde_json::Value>) -> Vec<MismatchView> {
    let Some(serde_json::Value::Array(items)) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let field = item.get("field")?.as_str()?.to_owned();
            let expected = match item.get("expected") {
                Some(serde_json::Value::Array(list)) => list
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            let actual = match item.get("actual") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => "(none)".to_owned(),
                Some(other) => other.to_string(),
            };
            Some(MismatchView {
                field,
                expected,
                actual,
            })
        })
        .collect()
}

/// An event, as a row.
pub(crate) struct EventView {
    pub(crate) at: String,
    pub(crate) kind: &'static str,
    pub(crate) outcome: &'static str,
    pub(crate) mode: String,
    pub(crate) code: String,
    pub(crate) rule: String,
    pub(crate) mismatches: Vec<MismatchView>,
    pub(crate) repository_id: String,
    pub(crate) run_id: String,
    pub(crate) workflow: String,
    pub(crate) source: String,
    pub(crate) detail: String,
    pub(crate) upload_id: String,
}

impl From<&EventRecord> for EventView {
    fn from(r: &EventRecord) -> Self {
        let e = &r.event;
        Self {
            at: time(e.at),
            kind: e.kind.as_str(),
            outcome: e.outcome.as_str(),
            mode: e.mode.clone().unwrap_or_default(),
            code: e.code.clone().unwrap_or_default(),
            rule: e.rule.clone().unwrap_or_default(),
            mismatches: mismatches(e.mismatches.as_ref()),
            repository_id: e.repository_id.map(|r| r.0.to_string()).unwrap_or_default(),
            run_id: e.run_id.map(|r| r.0.to_string()).unwrap_or_default(),
            workflow: e.workflow.clone().unwrap_or_default(),
            source: e.source.clone().unwrap_or_default(),
            detail: e.detail.clone().unwrap_or_default(),
            upload_id: e
                .upload_id
                .as_ref()
                .map(|u| u.as_str().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// An upload, as a row of a list.
pub(crate) struct UploadRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) status: &'static str,
    pub(crate) mode: String,
    pub(crate) repository: String,
    pub(crate) repository_id: String,
    pub(crate) run_id: String,
    pub(crate) size: String,
    pub(crate) created_at: String,
}

impl From<&UploadRecord> for UploadRow {
    fn from(u: &UploadRecord) -> Self {
        Self {
            id: u.id.as_str().to_owned(),
            name: u.name.clone(),
            status: u.status.as_str(),
            mode: u.mode.as_str().to_owned(),
            repository: u.identity.repository.clone(),
            repository_id: u.identity.repository_id.0.to_string(),
            run_id: u.identity.run_id.0.to_string(),
            size: size(u.size),
            created_at: offset_time(u.created_at),
        }
    }
}

/// A push, as a row.
pub(crate) struct PushRow {
    pub(crate) id: String,
    pub(crate) event: String,
    pub(crate) upload_id: String,
    pub(crate) status: &'static str,
    pub(crate) attempts: u32,
    pub(crate) last_error: String,
    pub(crate) created_at: String,
    pub(crate) next_attempt_at: String,
    /// Whether the console offers a retry (a failed or pending push).
    pub(crate) retryable: bool,
}

impl From<&PushRecord> for PushRow {
    fn from(p: &PushRecord) -> Self {
        let status = p.status.as_str();
        Self {
            id: p.id.clone(),
            event: p.event.clone(),
            upload_id: p.upload_id.clone(),
            status,
            attempts: p.attempts,
            last_error: p.last_error.clone().unwrap_or_default(),
            created_at: time(p.created_at),
            next_attempt_at: time(p.next_attempt_at),
            retryable: status != "delivered",
        }
    }
}

/// A term and its value, for a definition list.
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) value: String,
}

/// The identity of an upload, field by field, absent fields left out.
pub(crate) fn identity_fields(u: &UploadRecord) -> Vec<Field> {
    let i = &u.identity;
    let mut fields = Vec::new();
    let mut push = |name: &'static str, value: Option<String>| {
        if let Some(value) = value {
            fields.push(Field { name, value });
        }
    };
    push(
        "repository",
        Some(format!("{} (id {})", i.repository, i.repository_id.0)),
    );
    push(
        "owner",
        Some(format!(
            "{} (id {})",
            i.repository_owner.clone().unwrap_or_default(),
            i.repository_owner_id.0
        )),
    );
    push("visibility", i.repository_visibility.clone());
    push("workflow", i.workflow_ref.clone());
    push("workflow sha", i.workflow_sha.clone());
    push("job workflow", i.job_workflow_ref.clone());
    push("job workflow sha", i.job_workflow_sha.clone());
    push("ref", i.git_ref.clone());
    push("ref protected", i.ref_protected.map(|p| p.to_string()));
    push("sha", Some(i.sha.clone()));
    push("event", i.event_name.clone());
    push(
        "actor",
        i.actor.clone().map(|a| match i.actor_id {
            Some(id) => format!("{a} (id {})", id.0),
            None => a,
        }),
    );
    push("run", Some(i.run_id.0.to_string()));
    push("attempt", i.run_attempt.map(|a| a.to_string()));
    push("job (check run)", i.check_run_id.map(|c| c.0.to_string()));
    push("environment", i.environment.clone());
    push("runner", i.runner_environment.clone());
    push("installation", i.installation_id.map(|id| id.0.to_string()));
    push("issuer", Some(i.issuer.clone()));
    for (name, value) in i.extra_claims.iter() {
        fields.push(Field {
            name: "claim",
            value: format!("{name}: {value}"),
        });
    }
    if !i.unverified.is_empty() {
        fields.push(Field {
            name: "not verified",
            value: i.unverified.join(", "),
        });
    }
    fields
}

/// Links to the run, the attempt and the job on GitHub.
pub(crate) struct RunLinks {
    pub(crate) run: String,
    pub(crate) attempt: Option<String>,
    pub(crate) job: Option<String>,
}

/// The run's pages on GitHub (`github` is the web address, such as `https://github.com`).
/// The repository's full name is encoded segment by segment.
pub(crate) fn run_links(github: &str, u: &UploadRecord) -> RunLinks {
    let i = &u.identity;
    let repository = i
        .repository
        .split('/')
        .map(segment_escape)
        .collect::<Vec<_>>()
        .join("/");
    let run = format!(
        "{}/{repository}/actions/runs/{}",
        github.trim_end_matches('/'),
        i.run_id.0
    );
    RunLinks {
        attempt: i.run_attempt.map(|a| format!("{run}/attempts/{a}")),
        job: i.check_run_id.map(|c| format!("{run}/job/{}", c.0)),
        run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_query_values_are_percent_encoded() {
        assert_eq!(query_escape("/ui/a?b=c&d"), "/ui/a%3Fb%3Dc%26d");
        assert_eq!(segment_escape("a/b c"), "a%2Fb%20c");
        assert_eq!(query_escape("\"><x>"), "%22%3E%3Cx%3E");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(12), "12 B");
        assert_eq!(size(2048), "2.0 KiB (2048 bytes)");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB (5242880 bytes)");
    }

    #[test]
    fn mismatches_of_any_shape_are_read_leniently() {
        let v = serde_json::json!([
            {"field": "ref", "expected": ["refs/heads/main"], "actual": "refs/heads/x"},
            {"field": "environment", "expected": ["prod", "stage"], "actual": null},
            {"no": "field"},
            7
        ]);
        let m = mismatches(Some(&v));
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].expected, "refs/heads/main");
        assert_eq!(m[1].expected, "prod, stage");
        assert_eq!(m[1].actual, "(none)");
        assert!(mismatches(Some(&serde_json::json!({"a": 1}))).is_empty());
        assert!(mismatches(None).is_empty());
    }
}
