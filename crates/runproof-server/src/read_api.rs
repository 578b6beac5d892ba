//! The App's read API: list, fetch, and stream verified uploads. API key required.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use runproof_core::{ErrorCode, RepositoryId};
use runproof_store::{BlobError, Cursor, ListFilter, UploadId, UploadRecord, UploadStatus};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Credentials, credentials};
use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// Checks `Authorization: Bearer <api key>` against every configured key in constant time.
pub(crate) fn require_api_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = match credentials(headers)? {
        Credentials::Bearer(key) => key,
        Credentials::None => {
            return Err(ApiError::new(
                ErrorCode::MissingCredentials,
                "send an API key as `Authorization: Bearer <key>`",
            ));
        }
        Credentials::GithubToken(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidApiKey,
                "the read API takes an API key",
            ));
        }
    };
    // Compare against every key, without stopping early, so timing reveals nothing.
    let matched = state
        .config
        .api_keys
        .iter()
        .fold(false, |acc, key| key.ct_eq(presented.as_bytes()) | acc);
    if matched {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidApiKey,
            "the API key is not valid",
        ))
    }
}

#[derive(Deserialize)]
struct ListParams {
    status: Option<String>,
    repository_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    after: Option<String>,
}

/// The forward cursor of `GET /v1/uploads?after=`: a position in the order uploads
/// became verified ([`runproof_store::Store::list_verified_after`]), sent as its decimal
/// digits. Clients treat it as opaque; only the canonical form is taken back.
fn decode_after(s: &str) -> Option<u64> {
    if s.is_empty() {
        return Some(0);
    }
    let position = s.parse::<u64>().ok()?;
    (position <= i64::MAX.unsigned_abs() && position.to_string() == s).then_some(position)
}

fn encode_after(position: u64) -> String {
    position.to_string()
}

/// `GET /v1/uploads`.
pub(crate) async fn list_uploads(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_api_key(&state, &headers)?;
    let Query(params): Query<ListParams> = Query::try_from_uri(&uri)
        .map_err(|_| ApiError::invalid("the query string is malformed"))?;
    let status = params
        .status
        .as_deref()
        .map(|s| {
            UploadStatus::parse(s).ok_or_else(|| {
                ApiError::invalid("status is one of verified, pending, rejected, expired")
            })
        })
        .transpose()?;
    let repository_id = params
        .repository_id
        .as_deref()
        .map(|s| {
            s.parse::<RepositoryId>()
                .map_err(|_| ApiError::invalid("repository_id is a decimal integer up to 2^63 - 1"))
        })
        .transpose()?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::invalid(format!("limit is 1 to {MAX_LIMIT}")))?,
    };
    if let Some(after) = params.after.as_deref() {
        if params.cursor.is_some() || status.is_some() {
            return Err(ApiError::invalid(
                "after cannot be combined with cursor or status: it lists verified uploads",
            ));
        }
        let after = decode_after(after).ok_or_else(|| {
            ApiError::invalid("after is not valid: send the next_cursor of the last page")
        })?;
        let (uploads, next) = state
            .service
            .store()
            .list_verified_after(repository_id, after, limit)
            .await?;
        return Ok(Json(json!({
            "uploads": uploads,
            "next_cursor": encode_after(next),
        }))
        .into_response());
    }
    let cursor = params
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c).ok_or_else(|| ApiError::invalid("the cursor is not valid")))
        .transpose()?;
    let filter = ListFilter {
        status,
        repository_id,
        ..ListFilter::default()
    };
    let (uploads, next) = state
        .service
        .store()
        .list_uploads(&filter, limit, cursor.as_ref())
        .await?;
    Ok(Json(json!({
        "uploads": uploads,
        "next_cursor": next.map(|c| c.encode()),
    }))
    .into_response())
}

async fn find(state: &AppState, id: &str) -> Result<UploadRecord, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no upload with this id");
    let id = UploadId::parse(id).ok_or_else(not_found)?;
    state
        .service
        .store()
        .get_upload(&id)
        .await?
        .ok_or_else(not_found)
}

/// `GET /v1/uploads/{id}`.
pub(crate) async fn get_upload(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_api_key(&state, &headers)?;
    Ok(Json(find(&state, &id).await?).into_response())
}

/// A parsed single `Range: bytes=…` request, resolved against the size.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// No usable `Range` header: send everything.
    Full,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// The range lies outside the content.
    Unsatisfiable,
}

fn parse_range(value: Option<&HeaderValue>, size: u64) -> RangeRequest {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeRequest::Full;
    };
    // Multiple ranges would need multipart/byteranges; serving the whole body is allowed.
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (start, end) = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(start), Some(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Some(start), None) if b.is_empty() => (start, size.saturating_sub(1)),
        (None, Some(suffix)) if a.is_empty() && suffix > 0 => {
            (size.saturating_sub(suffix), size.saturating_sub(1))
        }
        _ => return RangeRequest::Full,
    };
    if size == 0 || start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part { start, end }
}

/// `GET /v1/uploads/{id}/content`: the bytes, streamed, with single-range support.
pub(crate) async fn get_content(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_api_key(&state, &headers)?;
    content_response(&state, &id, &headers).await
}

/// The content of upload `id` as an attachment that no browser renders in our origin,
/// honouring a single `Range`; the caller has checked the credentials.
pub(crate) async fn content_response(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let record = find(state, id).await?;
    if matches!(
        record.status,
        UploadStatus::Rejected | UploadStatus::Expired
    ) {
        // Webhook mode: such bodies are deleted by the sweeper; never serve them.
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "the upload is {}: its content is not kept",
                record.status.as_str()
            ),
        ));
    }
    let size = record.size;
    let range = parse_range(headers.get(header::RANGE), size);
    let (status, offset, len) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeRequest::Unsatisfiable => {
            let mut resp = ApiError::invalid("the range lies outside the content")
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let stream = state
        .service
        .blobs()
        .read(&record.id, offset, Some(len))
        .await
        .map_err(|e| match e {
            BlobError::NotFound => {
                tracing::error!(id = %record.id, "record has no blob");
                ApiError::storage(&e)
            }
            other => ApiError::storage(&other),
        })?;
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let content_type = record
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // The bytes and their type are the uploader's: never let a browser render them in
    // our origin, sniff another type, or run anything they contain.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(&record.name),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", record.sha256)) {
        h.insert(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {offset}-{}/{size}", offset + len - 1))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    } else if let Some(digest) = hex_digest(&record.sha256)
        && let Ok(v) = HeaderValue::from_str(&runproof_core::digest::format_content_digest(&digest))
    {
        h.insert("content-digest", v);
    }
    Ok(resp)
}

/// `attachment` with the upload's name in two safe forms: `filename=` with ASCII letters,
/// digits, `.`, `-` and `_` only (anything else becomes `_`), and RFC 5987's `filename*=`
/// with every other byte of the UTF-8 name percent-encoded. Neither can carry a quote, a
/// CR or LF, a path separator or a leading dot.
fn content_disposition(name: &str) -> HeaderValue {
    let name: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if c == '/' || c == '\\' || c.is_control() || is_format(c) || (i == 0 && c == '.') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ascii = if ascii.is_empty() {
        "upload".to_owned()
    } else {
        ascii
    };
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        // RFC 5987 attr-char, less the few that some readers treat specially.
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename={ascii}; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Invisible characters that reorder or hide text (bidirectional controls, zero-width
/// marks), with which a name could show another extension than it has.
fn is_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn hex_digest(hex_str: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_str).ok()?;
    bytes.try_into().ok()
}

/// `GET /v1/uploads/{id}/status`: public, for clients polling a pending upload. Says the
/// status and the reason, nothing else.
pub(crate) async fn upload_status(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no upload with this id");
    let id = UploadId::parse(&id).ok_or_else(not_found)?;
    let record = state
        .service
        .store()
        .get_upload(&id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(json!({
        "id": record.id,
        "status": record.status,
        "reason": record.reason,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_content_disposition_names_are_safe() {
        let cd = |n: &str| content_disposition(n).to_str().unwrap().to_owned();
        assert_eq!(
            cd("results.sarif"),
            "attachment; filename=results.sarif; filename*=UTF-8''results.sarif"
        );
        assert_eq!(
            cd("r\u{e9}sum\u{e9} 1.pdf"),
            "attachment; filename=r_sum__1.pdf; filename*=UTF-8''r%C3%A9sum%C3%A9%201.pdf"
        );
        assert_eq!(
            cd(".evil\"; filename=x.html"),
            "attachment; filename=_evil___filename_x.html; \
             filename*=UTF-8''_evil%22%3B%20filename%3Dx.html"
        );
        for hostile in [
            "a/b",
            "a\\b",
            "a\r\nSet-Cookie: x=1",
            "\u{202e}lmth.exe",
            "..",
            "'\"<>",
        ] {
            let value = cd(hostile);
            assert!(value.starts_with("attachment; filename="), "{value}");
            for bad in ['"', '\r', '\n', '/', '\\', ' ', '\''] {
                let params = value.trim_start_matches("attachment; filename=");
                let (plain, ext) = params.split_once("; filename*=UTF-8''").unwrap();
                assert!(
                    !plain.contains(bad) && !ext.contains(bad),
                    "{hostile:?} -> {value}"
                );
            }
            assert!(
                !value.contains("filename=.") && !value.contains("''."),
                "{value}"
            );
        }
    }

    #[test]
    fn rule_after_cursors_are_canonical_positions() {
        assert_eq!(decode_after(""), Some(0));
        assert_eq!(decode_after("0"), Some(0));
        assert_eq!(decode_after("42"), Some(42));
        assert_eq!(decode_after(&encode_after(7)), Some(7));
        let max = i64::MAX.to_string();
        assert_eq!(decode_after(&max), Some(i64::MAX.unsigned_abs()));
        for bad in [
            "-1",
            "+1",
            "01",
            " 1",
            "1 ",
            "1.0",
            "0x10",
            "abc",
            "9223372036854775808",
            "18446744073709551616",
            "٣",
        ] {
            assert_eq!(decode_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ranges_resolve_against_size() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(parse_range(None, 10), RangeRequest::Full);
        assert_eq!(
            parse_range(Some(&h("bytes=0-4")), 10),
            RangeRequest::Part { start: 0, end: 4 }
        );
        assert_eq!(
            parse_range(Some(&h("bytes=5-")), 10),
            RangeRequest::Part { start: 5, end: 9 }
        );
        assert_eq!(
            parse_range(Some(&h("bytes=-3")), 10),
            RangeRequest::Part { start: 7, end: 9 }
        );
        assert_eq!(
            parse_range(Some(&h("bytes=8-100")), 10),
            RangeRequest::Part { start: 8, end: 9 }
        );
        assert_eq!(
            parse_range(Some(&h("bytes=10-")), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range(Some(&h("bytes=5-2")), 10), RangeRequest::Full);
        assert_eq!(
            parse_range(Some(&h("bytes=0-1,3-4")), 10),
            RangeRequest::Full
        );
        assert_eq!(parse_range(Some(&h("items=0-1")), 10), RangeRequest::Full);
        assert_eq!(parse_range(Some(&h("bytes=-0")), 10), RangeRequest::Full);
    }
}
