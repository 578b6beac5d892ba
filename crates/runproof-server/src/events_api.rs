//! The event log:
//! `GET /v1/events?kind=&outcome=&code=&repository_id=&upload_id=&since=&cursor=&limit=`
//! (API key required), newest first, `{"events": [...], "next_cursor": ...}`; and how the
//! server records the events of the requests it answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use runproof_core::{RepositoryId, UnixTime};
use runproof_service::{Service, Trail};
use runproof_store::{EventCursor, EventFilter, EventKind, EventOutcome, EventRecord, UploadId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ApiError;
use crate::read_api::require_api_key;
use crate::state::AppState;

/// The route of the event log.
pub(crate) const ROUTE: &str = "/v1/events";

/// The page size when none is asked for.
const DEFAULT_LIMIT: u32 = 100;

/// The longest `code` filter accepted, in bytes.
const MAX_CODE_LEN: usize = 64;

/// The client's address of a request, as the limits resolved it, else the peer's.
pub(crate) fn source_of(extensions: &Extensions) -> Option<String> {
    crate::limits::client_ip(extensions).map(|ip| ip.to_string())
}

/// Records the event of a request answered with `answer`: `accepted`; `refused` with its
/// code, its mismatches and, from `trail`, the rule and the verified identity; or `failed`
/// when the server could not decide (a `5xx`, such as `upstream_unavailable`), so that what
/// was refused and what could not be answered stay apart.
pub(crate) fn record<T>(
    service: &Service,
    kind: EventKind,
    route: &str,
    trail: &Trail,
    source: Option<String>,
    answer: &Result<T, ApiError>,
) {
    let outcome = match answer {
        Ok(_) => EventOutcome::Accepted,
        Err(e) if e.status().is_server_error() => EventOutcome::Failed,
        Err(_) => EventOutcome::Refused,
    };
    record_as(
        service,
        trail.event(service, kind, outcome),
        route,
        source,
        answer,
    );
}

/// Records `event` of a request answered with `answer`: with a refusal's code, detail and
/// mismatches.
pub(crate) fn record_as<T>(
    service: &Service,
    mut event: runproof_store::NewEvent,
    route: &str,
    source: Option<String>,
    answer: &Result<T, ApiError>,
) {
    event.route = Some(route.to_owned());
    event.source = source;
    if let Err(e) = answer {
        event.code = Some(e.code.as_str().to_owned());
        event.detail = Some(e.detail.clone());
        event.mismatches = e
            .mismatches
            .as_ref()
            .and_then(|m| serde_json::to_value(m).ok());
    }
    service.record(event);
}

#[derive(Deserialize)]
struct ListParams {
    kind: Option<String>,
    outcome: Option<String>,
    code: Option<String>,
    repository_id: Option<String>,
    upload_id: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/events`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_api_key(&state, &headers)?;
    let Query(params): Query<ListParams> = Query::try_from_uri(&uri)
        .map_err(|_| ApiError::invalid("the query string is malformed"))?;
    let (filter, cursor, limit) = parse(&params)?;
    let (events, next) = state.service.events(&filter, limit, cursor).await?;
    let events: Vec<EventView> = events.into_iter().map(EventView::from).collect();
    Ok(Json(json!({
        "events": events,
        "next_cursor": next.map(|c| c.encode()),
    }))
    .into_response())
}

fn parse(params: &ListParams) -> Result<(EventFilter, Option<EventCursor>, u32), ApiError> {
    let kind = params
        .kind
        .as_deref()
        .map(|s| {
            EventKind::parse(s).ok_or_else(|| {
                ApiError::invalid("kind is one of upload, session, webhook, pending, push, rules")
            })
        })
        .transpose()?;
    let outcome = params
        .outcome
        .as_deref()
        .map(|s| {
            EventOutcome::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "outcome is one of accepted, refused, received, duplicate, delivered, \
                     failed, settled, changed",
                )
            })
        })
        .transpose()?;
    let code = params
        .code
        .as_deref()
        .map(|s| {
            let ok = !s.is_empty()
                && s.len() <= MAX_CODE_LEN
                && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if ok {
                Ok(s.to_owned())
            } else {
                Err(ApiError::invalid(
                    "code is an error code such as policy_denied",
                ))
            }
        })
        .transpose()?;
    let repository_id = params
        .repository_id
        .as_deref()
        .map(|s| {
            s.parse::<u64>()
                .ok()
                .filter(|id| i64::try_from(*id).is_ok())
                .map(RepositoryId)
                .ok_or_else(|| ApiError::invalid("repository_id is a repository's numeric id"))
        })
        .transpose()?;
    let upload_id = params
        .upload_id
        .as_deref()
        .map(|s| UploadId::parse(s).ok_or_else(|| ApiError::invalid("upload_id is an upload's id")))
        .transpose()?;
    let since = params.since.as_deref().map(parse_time).transpose()?;
    let cursor = params
        .cursor
        .as_deref()
        .map(|s| {
            EventCursor::decode(s)
                .ok_or_else(|| ApiError::invalid("cursor is a next_cursor this API returned"))
        })
        .transpose()?;
    let limit = params
        .limit
        .as_deref()
        .map(|s| {
            s.parse::<u32>()
                .ok()
                .filter(|n| (1..=runproof_store::MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| ApiError::invalid("limit is a number from 1 to 1000"))
        })
        .transpose()?
        .unwrap_or(DEFAULT_LIMIT);
    let filter = EventFilter {
        kind,
        outcome,
        code,
        repository_id,
        since,
        upload_id,
    };
    Ok((filter, cursor, limit))
}

/// `since`: an RFC 3339 time, or Unix seconds.
fn parse_time(s: &str) -> Result<UnixTime, ApiError> {
    let invalid = || ApiError::invalid("since is an RFC 3339 time or Unix seconds");
    if s.len() > 64 {
        return Err(invalid());
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(UnixTime(secs));
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| UnixTime(t.unix_timestamp()))
        .map_err(|_| invalid())
}

/// An event as the API shows it: its time in RFC 3339, as in upload records.
#[derive(Serialize)]
struct EventView {
    id: String,
    time: String,
    kind: &'static str,
    route: Option<String>,
    mode: Option<String>,
    outcome: &'static str,
    code: Option<String>,
    rule: Option<String>,
    mismatches: Option<serde_json::Value>,
    repository_id: Option<u64>,
    run_id: Option<u64>,
    workflow: Option<String>,
    source: Option<String>,
    detail: Option<String>,
    upload_id: Option<String>,
}

impl From<EventRecord> for EventView {
    fn from(r: EventRecord) -> Self {
        let e = r.event;
        Self {
            id: EventCursor(r.id).encode(),
            time: e.at.rfc3339(),
            kind: e.kind.as_str(),
            route: e.route,
            mode: e.mode,
            outcome: e.outcome.as_str(),
            code: e.code,
            rule: e.rule,
            mismatches: e.mismatches,
            repository_id: e.repository_id.map(|r| r.0),
            run_id: e.run_id.map(|r| r.0),
            workflow: e.workflow,
            source: e.source,
            detail: e.detail,
            upload_id: e.upload_id.map(|u| u.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> ListParams {
        let uri: Uri = format!("/v1/events?{q}").parse().unwrap();
        Query::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn filters_parse_and_junk_is_invalid() {
        let (f, c, l) = parse(&params(
            "kind=upload&outcome=refused&code=policy_denied&repository_id=7&since=1970-01-01T00:01:40Z&cursor=e5&limit=3",
        ))
        .unwrap();
        assert_eq!(f.kind, Some(EventKind::Upload));
        assert_eq!(f.outcome, Some(EventOutcome::Refused));
        assert_eq!(f.code.as_deref(), Some("policy_denied"));
        assert_eq!(f.repository_id, Some(RepositoryId(7)));
        assert_eq!(f.since, Some(UnixTime(100)));
        assert_eq!((c, l), (Some(EventCursor(5)), 3));
        let upload = "01890a5d-ac96-774b-bcce-b302099a8057";
        let (f, _, _) = parse(&params(&format!("upload_id={upload}"))).unwrap();
        assert_eq!(f.upload_id, UploadId::parse(upload));
        assert_eq!(parse(&params("")).unwrap().2, DEFAULT_LIMIT);
        for junk in [
            "kind=nope",
            "outcome=ok",
            "code=DROP%20TABLE",
            "repository_id=-1",
            "upload_id=x",
            "upload_id=01890A5D-AC96-774B-BCCE-B302099A8057",
            "since=yesterday",
            "cursor=5",
            "limit=0",
            "limit=1001",
        ] {
            let e = parse(&params(junk)).err().unwrap();
            assert_eq!(e.code, runproof_core::ErrorCode::InvalidRequest, "{junk}");
        }
    }
}
