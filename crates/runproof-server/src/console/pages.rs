//! The console's pages: each handler reads the store (or asks the service), builds plain
//! strings ([`super::view`]) and renders an askama template, which escapes them.

use std::fmt::Write as _;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use runproof_core::{InstallationId, RepositoryId, UnixTime};
use runproof_service::explain::explain as explain_token;
use runproof_store::{
    Cursor, EventCursor, EventFilter, EventKind, EventOutcome, EventSplit, ListFilter, Mode,
    PushFilter, PushStatus, UploadId, UploadStatus,
};
use serde::Deserialize;

use super::chart;
use super::page::{PageError, html};
use super::session::Session;
use super::view::{
    self, EventView, Field, MismatchView, PushRow, RunLinks, UploadRow, query_escape,
};
use crate::state::AppState;

/// Rows per page of a list.
const PAGE_SIZE: u32 = 50;
/// The most series a chart draws; the rest are summed into "other".
const MAX_SERIES: usize = 6;

/// What every signed-in page shares: the sign-out form's CSRF token and the current
/// section, for the navigation.
pub(crate) struct Frame {
    pub(crate) csrf: String,
    pub(crate) active: &'static str,
    pub(crate) notice: Option<&'static str>,
}

impl Frame {
    fn new(session: &Session, active: &'static str) -> Self {
        Self {
            csrf: session.csrf.clone(),
            active,
            notice: None,
        }
    }
}

/// A query string parameter list, for links that keep the current filters.
#[derive(Default)]
struct Link(String);

impl Link {
    fn with(mut self, name: &str, value: Option<&str>) -> Self {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            let sep = if self.0.is_empty() { '?' } else { '&' };
            let _ = write!(self.0, "{sep}{name}={}", query_escape(value));
        }
        self
    }

    fn to(self, path: &str) -> String {
        format!("{path}{}", self.0)
    }
}

fn blank(v: Option<&String>) -> Option<&str> {
    v.map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn parse_repository(v: Option<&String>) -> Result<Option<RepositoryId>, PageError> {
    blank(v)
        .map(|s| {
            s.parse::<RepositoryId>()
                .map_err(|_| PageError::bad_request("the repository is a repository id (digits)"))
        })
        .transpose()
}

/// A time a person typed: RFC 3339, `YYYY-MM-DDTHH:MM` or `YYYY-MM-DD` (UTC), or Unix
/// seconds.
fn parse_time(v: Option<&String>, name: &str) -> Result<Option<UnixTime>, PageError> {
    let Some(s) = blank(v) else {
        return Ok(None);
    };
    let bad = || {
        PageError::bad_request(format!(
            "{name} is a time: RFC 3339, YYYY-MM-DDTHH:MM or YYYY-MM-DD (UTC), or Unix seconds"
        ))
    };
    if s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map(|t| Some(UnixTime(t)))
            .map_err(|_| bad());
    }
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(Some(UnixTime(t.unix_timestamp())));
    }
    let minute = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    if let Ok(t) = time::PrimitiveDateTime::parse(s, minute) {
        return Ok(Some(UnixTime(t.assume_utc().unix_timestamp())));
    }
    let day = format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, day) {
        return Ok(Some(UnixTime(d.midnight().assume_utc().unix_timestamp())));
    }
    Err(bad())
}

// ---------------------------------------------------------------------------------------
// Overview

#[derive(Deserialize)]
pub(crate) struct OverviewQuery {
    range: Option<String>,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    frame: Frame,
    week: bool,
    uploads_chart: String,
    refusals_chart: String,
    pending_uploads: u64,
    failed_pushes: u64,
    pending_pushes: u64,
    installations: u64,
    repositories: u64,
}

/// `GET /ui/`: traffic and refusals per hour, and what needs attention.
pub(crate) async fn overview(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(query): Query<OverviewQuery>,
) -> Result<Response, PageError> {
    let week = match query.range.as_deref() {
        None | Some("" | "24h") => false,
        Some("7d") => true,
        Some(_) => return Err(PageError::bad_request("range is 24h or 7d")),
    };
    let hours: u32 = if week { 168 } else { 24 };
    let now = state.service.clock().now();
    let since = UnixTime(chart::window_start(now.0, hours));
    let bucket = chart::bar_seconds(hours);
    let store = state.service.store();
    // Summed by the database into the chart's bars: a few hundred rows whatever the traffic.
    let accepted = store
        .event_counts(
            since,
            EventKind::Upload,
            EventOutcome::Accepted,
            EventSplit::Mode,
            bucket,
        )
        .await?;
    let mut refused = store
        .event_counts(
            since,
            EventKind::Upload,
            EventOutcome::Refused,
            EventSplit::Code,
            bucket,
        )
        .await?;
    refused.extend(
        store
            .event_counts(
                since,
                EventKind::Session,
                EventOutcome::Refused,
                EventSplit::Code,
                bucket,
            )
            .await?,
    );
    let uploads_rows: Vec<(i64, Option<&str>, u64)> = accepted
        .iter()
        .map(|h| (h.hour.0, h.mode.as_deref(), h.count))
        .collect();
    let refusal_rows: Vec<(i64, Option<&str>, u64)> = refused
        .iter()
        .map(|h| (h.hour.0, h.code.as_deref(), h.count))
        .collect();
    let counts = store.console_counts().await?;
    let page = OverviewPage {
        frame: Frame::new(&session, "overview"),
        week,
        uploads_chart: chart::render(
            "uploads-chart",
            "Uploads accepted per hour, by mode",
            &uploads_rows,
            now.0,
            hours,
            MAX_SERIES,
        )?,
        refusals_chart: chart::render(
            "refusals-chart",
            "Uploads and sessions refused per hour, by code",
            &refusal_rows,
            now.0,
            hours,
            MAX_SERIES,
        )?,
        pending_uploads: counts.pending_uploads,
        failed_pushes: counts.failed_pushes,
        pending_pushes: counts.pending_pushes,
        installations: counts.installations,
        repositories: counts.repositories,
    };
    html(&page)
}

// ---------------------------------------------------------------------------------------
// Uploads

#[derive(Deserialize)]
pub(crate) struct UploadsQuery {
    status: Option<String>,
    mode: Option<String>,
    repository_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "console/uploads.html")]
struct UploadsPage {
    frame: Frame,
    status: String,
    mode: String,
    repository_id: String,
    since: String,
    until: String,
    uploads: Vec<UploadRow>,
    next: Option<String>,
}

/// `GET /ui/uploads`: uploads, newest first, filtered.
pub(crate) async fn uploads(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<UploadsQuery>,
) -> Result<Response, PageError> {
    let status = blank(q.status.as_ref())
        .map(|s| {
            UploadStatus::parse(s).ok_or_else(|| {
                PageError::bad_request("status is one of verified, pending, rejected, expired")
            })
        })
        .transpose()?;
    let mode = blank(q.mode.as_ref())
        .map(|s| {
            Mode::parse(s).ok_or_else(|| {
                PageError::bad_request("mode is one of oidc, session, github_token, webhook")
            })
        })
        .transpose()?;
    let repository_id = parse_repository(q.repository_id.as_ref())?;
    let since = parse_time(q.since.as_ref(), "since")?;
    let until = parse_time(q.until.as_ref(), "until")?;
    let cursor = blank(q.cursor.as_ref())
        .map(|c| Cursor::decode(c).ok_or_else(|| PageError::bad_request("the cursor is not valid")))
        .transpose()?;
    let filter = ListFilter {
        status,
        repository_id,
        mode,
        since,
        until,
    };
    let (records, next) = state
        .service
        .store()
        .list_uploads(&filter, PAGE_SIZE, cursor.as_ref())
        .await?;
    let next = next.map(|c| {
        Link::default()
            .with("status", blank(q.status.as_ref()))
            .with("mode", blank(q.mode.as_ref()))
            .with("repository_id", blank(q.repository_id.as_ref()))
            .with("since", blank(q.since.as_ref()))
            .with("until", blank(q.until.as_ref()))
            .with("cursor", Some(&c.encode()))
            .to("/ui/uploads")
    });
    html(&UploadsPage {
        frame: Frame::new(&session, "uploads"),
        status: blank(q.status.as_ref()).unwrap_or_default().to_owned(),
        mode: blank(q.mode.as_ref()).unwrap_or_default().to_owned(),
        repository_id: blank(q.repository_id.as_ref())
            .unwrap_or_default()
            .to_owned(),
        since: blank(q.since.as_ref()).unwrap_or_default().to_owned(),
        until: blank(q.until.as_ref()).unwrap_or_default().to_owned(),
        uploads: records.iter().map(UploadRow::from).collect(),
        next,
    })
}

#[derive(Template)]
#[template(path = "console/upload.html")]
struct UploadPage {
    frame: Frame,
    upload: UploadRow,
    sha256: String,
    content_type: String,
    verified_at: String,
    reason: String,
    downloadable: bool,
    identity: Vec<Field>,
    links: RunLinks,
    pushes: Vec<PushRow>,
    events: Vec<EventView>,
}

fn upload_id(id: &str) -> Result<UploadId, PageError> {
    UploadId::parse(id).ok_or_else(|| PageError::not_found("no upload with this id"))
}

/// `GET /ui/uploads/{id}`: an upload, its identity, its pushes and its events.
pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = upload_id(&id)?;
    let store = state.service.store();
    let record = store
        .get_upload(&id)
        .await?
        .ok_or_else(|| PageError::not_found("no upload with this id"))?;
    let (pushes, _) = store
        .list_pushes_page(
            &PushFilter {
                upload_id: Some(id.clone()),
                ..PushFilter::default()
            },
            PAGE_SIZE,
            None,
        )
        .await?;
    let (events, _) = store
        .list_events(
            &EventFilter {
                upload_id: Some(id.clone()),
                ..EventFilter::default()
            },
            PAGE_SIZE,
            None,
        )
        .await?;
    html(&UploadPage {
        frame: Frame::new(&session, "uploads"),
        sha256: record.sha256.clone(),
        content_type: record
            .content_type
            .clone()
            .unwrap_or_else(|| "(none)".to_owned()),
        verified_at: record
            .verified_at
            .map(|t| view::time(UnixTime(t.unix_timestamp())))
            .unwrap_or_default(),
        reason: record.reason.clone().unwrap_or_default(),
        downloadable: !matches!(
            record.status,
            UploadStatus::Rejected | UploadStatus::Expired
        ),
        identity: view::identity_fields(&record),
        links: view::run_links(&state.config.ui.github_url, &record),
        pushes: pushes.iter().map(PushRow::from).collect(),
        events: events.iter().map(EventView::from).collect(),
        upload: UploadRow::from(&record),
    })
}

/// `GET /ui/uploads/{id}/content`: the bytes as an attachment, exactly as the read API
/// sends them (never rendered in the console's origin).
pub(crate) async fn content(
    State(state): State<Arc<AppState>>,
    _session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    crate::read_api::content_response(&state, &id, &headers)
        .await
        .into_response()
}

// ---------------------------------------------------------------------------------------
// Refusals and events

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    kind: Option<String>,
    outcome: Option<String>,
    code: Option<String>,
    repository_id: Option<String>,
    cursor: Option<String>,
}

fn event_filter(q: &EventsQuery, outcome: Option<EventOutcome>) -> Result<EventFilter, PageError> {
    let kind = blank(q.kind.as_ref())
        .map(|s| {
            EventKind::parse(s).ok_or_else(|| {
                PageError::bad_request(
                    "kind is one of upload, session, webhook, pending, push, rules",
                )
            })
        })
        .transpose()?;
    let outcome = match outcome {
        Some(o) => Some(o),
        None => blank(q.outcome.as_ref())
            .map(|s| {
                EventOutcome::parse(s).ok_or_else(|| {
                    PageError::bad_request(
                        "outcome is one of accepted, refused, received, duplicate, delivered, \
                         failed, settled, changed",
                    )
                })
            })
            .transpose()?,
    };
    Ok(EventFilter {
        kind,
        outcome,
        code: blank(q.code.as_ref()).map(str::to_owned),
        repository_id: parse_repository(q.repository_id.as_ref())?,
        ..EventFilter::default()
    })
}

fn event_cursor(q: &EventsQuery) -> Result<Option<EventCursor>, PageError> {
    blank(q.cursor.as_ref())
        .map(|c| {
            EventCursor::decode(c).ok_or_else(|| PageError::bad_request("the cursor is not valid"))
        })
        .transpose()
}

fn events_next(q: &EventsQuery, path: &str, next: Option<EventCursor>) -> Option<String> {
    next.map(|c| {
        Link::default()
            .with("kind", blank(q.kind.as_ref()))
            .with("outcome", blank(q.outcome.as_ref()))
            .with("code", blank(q.code.as_ref()))
            .with("repository_id", blank(q.repository_id.as_ref()))
            .with("cursor", Some(&c.encode()))
            .to(path)
    })
}

#[derive(Template)]
#[template(path = "console/refusals.html")]
struct RefusalsPage {
    frame: Frame,
    kind: String,
    code: String,
    repository_id: String,
    events: Vec<EventView>,
    next: Option<String>,
}

/// `GET /ui/refusals`: refused requests, newest first, with their rule and mismatches.
pub(crate) async fn refusals(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<EventsQuery>,
) -> Result<Response, PageError> {
    let filter = event_filter(&q, Some(EventOutcome::Refused))?;
    let (events, next) = state
        .service
        .store()
        .list_events(&filter, PAGE_SIZE, event_cursor(&q)?)
        .await?;
    html(&RefusalsPage {
        frame: Frame::new(&session, "refusals"),
        kind: blank(q.kind.as_ref()).unwrap_or_default().to_owned(),
        code: blank(q.code.as_ref()).unwrap_or_default().to_owned(),
        repository_id: blank(q.repository_id.as_ref())
            .unwrap_or_default()
            .to_owned(),
        events: events.iter().map(EventView::from).collect(),
        next: events_next(&q, "/ui/refusals", next),
    })
}

#[derive(Template)]
#[template(path = "console/events.html")]
struct EventsPage {
    frame: Frame,
    kind: String,
    outcome: String,
    code: String,
    repository_id: String,
    events: Vec<EventView>,
    next: Option<String>,
}

/// `GET /ui/events`: the event log, newest first, filtered.
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<EventsQuery>,
) -> Result<Response, PageError> {
    let filter = event_filter(&q, None)?;
    let (events, next) = state
        .service
        .store()
        .list_events(&filter, PAGE_SIZE, event_cursor(&q)?)
        .await?;
    html(&EventsPage {
        frame: Frame::new(&session, "events"),
        kind: blank(q.kind.as_ref()).unwrap_or_default().to_owned(),
        outcome: blank(q.outcome.as_ref()).unwrap_or_default().to_owned(),
        code: blank(q.code.as_ref()).unwrap_or_default().to_owned(),
        repository_id: blank(q.repository_id.as_ref())
            .unwrap_or_default()
            .to_owned(),
        events: events.iter().map(EventView::from).collect(),
        next: events_next(&q, "/ui/events", next),
    })
}

// ---------------------------------------------------------------------------------------
// Explain

/// One check of an explanation, as shown.
pub(crate) struct CheckRow {
    pub(crate) check: &'static str,
    pub(crate) ok: bool,
    pub(crate) detail: String,
}

/// One rule of an explanation, as shown.
pub(crate) struct RuleRow {
    pub(crate) layer: String,
    pub(crate) name: String,
    pub(crate) matched: bool,
    pub(crate) mismatches: Vec<MismatchView>,
}

/// The outcome of an explanation, as shown.
pub(crate) struct ExplainResult {
    pub(crate) allowed: bool,
    pub(crate) repository: String,
    pub(crate) checks: Vec<CheckRow>,
    pub(crate) rules: Vec<RuleRow>,
}

#[derive(Template)]
#[template(path = "console/explain.html")]
struct ExplainPage {
    frame: Frame,
    result: Option<ExplainResult>,
}

/// `GET /ui/explain`: a form to paste a token into.
pub(crate) async fn explain_page(session: Session) -> Result<Response, PageError> {
    html(&ExplainPage {
        frame: Frame::new(&session, "refusals"),
        result: None,
    })
}

#[derive(Deserialize)]
pub(crate) struct ExplainForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

/// `POST /ui/explain`: what an upload with the pasted token would meet
/// ([`runproof_service::explain`]); nothing is consumed or stored, and the token is not
/// shown back.
pub(crate) async fn explain(
    State(state): State<Arc<AppState>>,
    session: Session,
    Form(form): Form<ExplainForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&form.csrf)?;
    let token = form.token.trim();
    if token.is_empty() {
        return Err(PageError::bad_request("paste a token to explain"));
    }
    let explanation = explain_token(&state.service, token, None)
        .await
        .map_err(|e| {
            let api = crate::error::ApiError::from(e);
            PageError::Status(api.status(), api.detail)
        })?;
    let result = ExplainResult {
        allowed: explanation.allowed,
        repository: explanation
            .identity
            .as_ref()
            .map(|i| format!("{} (id {})", i.repository, i.repository_id.0))
            .unwrap_or_default(),
        checks: explanation
            .checks
            .iter()
            .map(|c| CheckRow {
                check: c.check,
                ok: c.ok,
                detail: c.detail.clone(),
            })
            .collect(),
        rules: explanation
            .rules
            .iter()
            .map(|r| RuleRow {
                layer: serde_json::to_value(r.layer)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                name: r.name.clone(),
                matched: r.matched,
                mismatches: r.mismatches.iter().map(MismatchView::from).collect(),
            })
            .collect(),
    };
    html(&ExplainPage {
        frame: Frame::new(&session, "refusals"),
        result: Some(result),
    })
}

// ---------------------------------------------------------------------------------------
// Pushes

#[derive(Deserialize)]
pub(crate) struct PushesQuery {
    status: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/pushes.html")]
struct PushesPage {
    frame: Frame,
    status: String,
    pushes: Vec<PushRow>,
    next: Option<String>,
}

/// `GET /ui/pushes`: pushes to the App, failed ones first by default.
pub(crate) async fn pushes(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<PushesQuery>,
) -> Result<Response, PageError> {
    let status_text = blank(q.status.as_ref()).unwrap_or("failed");
    let status = if status_text == "all" {
        None
    } else {
        Some(PushStatus::parse(status_text).ok_or_else(|| {
            PageError::bad_request("status is one of failed, pending, delivered, all")
        })?)
    };
    let cursor = blank(q.cursor.as_ref());
    if cursor.is_some_and(|c| uuid::Uuid::try_parse(c).is_err()) {
        return Err(PageError::bad_request("the cursor is not valid"));
    }
    let (pushes, next) = state
        .service
        .store()
        .list_pushes_page(
            &PushFilter {
                status,
                ..PushFilter::default()
            },
            PAGE_SIZE,
            cursor,
        )
        .await?;
    let mut frame = Frame::new(&session, "pushes");
    frame.notice = match q.notice.as_deref() {
        Some("retried") => Some("The push is due again: the push worker sends it now."),
        Some("delivered") => Some("That push was delivered already; nothing to retry."),
        _ => None,
    };
    html(&PushesPage {
        frame,
        status: status_text.to_owned(),
        pushes: pushes.iter().map(PushRow::from).collect(),
        next: next.map(|c| {
            Link::default()
                .with("status", Some(status_text))
                .with("cursor", Some(&c))
                .to("/ui/pushes")
        }),
    })
}

#[derive(Deserialize)]
pub(crate) struct RetryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    back: Option<String>,
}

/// `POST /ui/pushes/{id}/retry`: makes a failed or pending push due now.
pub(crate) async fn retry_push(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RetryForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&form.csrf)?;
    if uuid::Uuid::try_parse(&id).is_err() {
        return Err(PageError::not_found("no push with this id"));
    }
    let record = state
        .service
        .store()
        .retry_push(&id, state.service.clock().now())
        .await?
        .ok_or_else(|| PageError::not_found("no push with this id"))?;
    state.service.wake_pushes();
    let notice = if record.status == PushStatus::Delivered {
        "delivered"
    } else {
        "retried"
    };
    // Only a listing of ours: the value is echoed into the redirect.
    let back = ["failed", "pending", "delivered", "all"]
        .into_iter()
        .find(|s| form.back.as_deref() == Some(*s))
        .unwrap_or("failed");
    Ok(Redirect::to(&format!("/ui/pushes?status={back}&notice={notice}")).into_response())
}

// ---------------------------------------------------------------------------------------
// Installations and repositories

#[derive(Deserialize)]
pub(crate) struct AfterQuery {
    after: Option<String>,
}

/// An installation, as a row.
pub(crate) struct InstallationRow {
    pub(crate) id: u64,
    pub(crate) account: String,
    pub(crate) account_id: u64,
    pub(crate) selection: &'static str,
    pub(crate) suspended: bool,
    pub(crate) unsettled: bool,
}

impl From<&runproof_store::KnownInstallation> for InstallationRow {
    fn from(k: &runproof_store::KnownInstallation) -> Self {
        Self {
            id: k.installation.id.0,
            account: k.installation.account_login.clone(),
            account_id: k.installation.account_id.0,
            selection: k.installation.repository_selection.as_str(),
            suspended: k.installation.suspended,
            unsettled: k.unsettled,
        }
    }
}

#[derive(Template)]
#[template(path = "console/installations.html")]
struct InstallationsPage {
    frame: Frame,
    installations: Vec<InstallationRow>,
    next: Option<String>,
}

fn parse_after<T: std::str::FromStr>(v: Option<&String>) -> Result<Option<T>, PageError> {
    blank(v)
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| PageError::bad_request("after is an id (digits)"))
        })
        .transpose()
}

/// `GET /ui/installations`: the App's installations the server knows of.
pub(crate) async fn installations(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<AfterQuery>,
) -> Result<Response, PageError> {
    let after: Option<InstallationId> = parse_after::<u64>(q.after.as_ref())?.map(InstallationId);
    let list = state
        .service
        .store()
        .list_installations(after, PAGE_SIZE)
        .await?;
    let next = (list.len() == PAGE_SIZE as usize)
        .then(|| {
            list.last()
                .map(|i| format!("/ui/installations?after={}", i.installation.id.0))
        })
        .flatten();
    html(&InstallationsPage {
        frame: Frame::new(&session, "installations"),
        installations: list.iter().map(InstallationRow::from).collect(),
        next,
    })
}

/// A repository of an installation, as a row.
pub(crate) struct RepositoryRow {
    pub(crate) id: u64,
    pub(crate) full_name: String,
    pub(crate) has_rules: bool,
}

#[derive(Template)]
#[template(path = "console/installation.html")]
struct InstallationPage {
    frame: Frame,
    installation: InstallationRow,
    repositories: Vec<RepositoryRow>,
    next: Option<String>,
}

/// `GET /ui/installations/{id}`: an installation and its repositories, with which have
/// trust rules.
pub(crate) async fn installation(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<AfterQuery>,
) -> Result<Response, PageError> {
    let id = id
        .parse::<u64>()
        .map(InstallationId)
        .map_err(|_| PageError::not_found("no installation with this id"))?;
    let store = state.service.store();
    let known = store
        .get_installation(id)
        .await?
        .filter(|k| !k.deleted)
        .ok_or_else(|| PageError::not_found("no installation with this id"))?;
    let after: Option<RepositoryId> = parse_after::<u64>(q.after.as_ref())?.map(RepositoryId);
    let repositories = store
        .installation_repositories(id, after, PAGE_SIZE)
        .await?;
    let ids: Vec<RepositoryId> = repositories.iter().map(|r| r.id).collect();
    let with_rules = store.repositories_with_rules(&ids).await?;
    let next = (repositories.len() == PAGE_SIZE as usize)
        .then(|| {
            repositories
                .last()
                .map(|r| format!("/ui/installations/{}?after={}", id.0, r.id.0))
        })
        .flatten();
    html(&InstallationPage {
        frame: Frame::new(&session, "installations"),
        installation: InstallationRow::from(&known),
        repositories: repositories
            .iter()
            .map(|r| RepositoryRow {
                id: r.id.0,
                full_name: r.full_name.clone(),
                has_rules: with_rules.contains(&r.id),
            })
            .collect(),
        next,
    })
}

#[derive(Template)]
#[template(path = "console/repository.html")]
struct RepositoryPage {
    frame: Frame,
    id: u64,
    rules: Option<String>,
    updated_at: String,
}

/// `GET /ui/repositories/{id}`: a repository's trust rules, as stored through the API.
pub(crate) async fn repository(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = id
        .parse::<RepositoryId>()
        .map_err(|_| PageError::not_found("no repository with this id"))?;
    let stored = state.service.store().repository_rules(id).await?;
    html(&RepositoryPage {
        frame: Frame::new(&session, "installations"),
        id: id.0,
        updated_at: stored
            .as_ref()
            .map(|s| view::time(s.updated_at))
            .unwrap_or_default(),
        rules: stored
            .as_ref()
            .map(|s| serde_json::to_string_pretty(&s.rules).unwrap_or_default()),
    })
}

/// Any other path under `/ui/`: signed in, a `404` page; otherwise, sign in first.
pub(crate) async fn not_found(_session: Session) -> PageError {
    PageError::Status(StatusCode::NOT_FOUND, "there is no such page".to_owned())
}
