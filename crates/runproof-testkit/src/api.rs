//! The fake GitHub REST API for Apps: App JWT checks, installations, installation
//! access tokens, `GET /installation/repositories`, `GET /repos/{owner}/{repo}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::TestKey;
use crate::fake::Shared;
use crate::shapes::{InstallationShape, installation_permissions, repository_json, rfc3339};

/// Route keys for [`crate::FakeGithub::api_requests`].
pub(crate) const ROUTE_REPO_INSTALLATION: &str = "repo_installation";
pub(crate) const ROUTE_ACCESS_TOKENS: &str = "access_tokens";
pub(crate) const ROUTE_INSTALLATION_REPOSITORIES: &str = "installation_repositories";
pub(crate) const ROUTE_REPOSITORY: &str = "repository";

/// Lifetime of installation access tokens, as on GitHub.
const ACCESS_TOKEN_TTL: i64 = 3600;
/// Allowed clock skew for an App JWT's `iat`.
const JWT_IAT_SKEW: i64 = 60;
/// Longest App JWT lifetime GitHub accepts.
const JWT_MAX_LIFETIME: i64 = 600;

const DOCS_REST: &str = "https://docs.github.com/rest";
const DOCS_REPO_INSTALLATION: &str = "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app";
const DOCS_ACCESS_TOKENS: &str =
    "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app";
const DOCS_REPOSITORY: &str = "https://docs.github.com/rest/repos/repos#get-a-repository";
const DOCS_INSTALLATION_REPOSITORIES: &str = "https://docs.github.com/rest/apps/installations#list-repositories-accessible-to-the-app-installation";
const DOCS_RATE_LIMIT: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";
const DOCS_SECONDARY_RATE_LIMIT: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";

const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";
const JWT_EXP_INVALID: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
const JWT_EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
const JWT_IAT_INVALID: &str = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";

/// A repository an installation covers.
#[derive(Clone, Debug)]
pub(crate) struct Repo {
    pub(crate) id: u64,
    pub(crate) full_name: String,
}

impl Repo {
    pub(crate) fn new(id: u64, full_name: &str) -> Repo {
        Repo {
            id,
            full_name: full_name.to_owned(),
        }
    }
}

/// An installation of "the App" (any registered App sees every installation).
#[derive(Clone, Debug)]
pub(crate) struct Installation {
    pub(crate) account_login: String,
    pub(crate) account_id: u64,
    pub(crate) repositories: Vec<Repo>,
    pub(crate) created_at: i64,
    pub(crate) suspended_at: Option<i64>,
}

/// What a token may see.
#[derive(Clone, Debug)]
pub(crate) enum Grant {
    /// An installation access token: the installation's repositories now (optionally
    /// narrowed to some ids at issue time), while the installation exists, is not
    /// suspended and the token has not expired.
    Installation {
        installation_id: u64,
        repository_ids: Option<Vec<u64>>,
        expires_at: i64,
    },
    /// A run's `GITHUB_TOKEN`: exactly these repositories until revoked.
    Fixed {
        repositories: Vec<Repo>,
        owner_id: u64,
    },
}

/// A repository as a token sees it.
pub(crate) struct Visible {
    pub(crate) id: u64,
    pub(crate) full_name: String,
    pub(crate) owner_id: u64,
}

/// Mutable REST state, behind [`Shared`]'s API mutex.
#[derive(Default)]
pub(crate) struct ApiState {
    pub(crate) apps: HashMap<u64, TestKey>,
    pub(crate) installations: BTreeMap<u64, Installation>,
    pub(crate) tokens: HashMap<String, Grant>,
    pub(crate) counters: HashMap<String, u64>,
    pub(crate) last_jwt_error: Option<String>,
    pub(crate) app_jwt_uses: u64,
    pub(crate) access_tokens_issued: u64,
    /// Lifetime of the installation tokens issued from now on; [`ACCESS_TOKEN_TTL`] when unset.
    pub(crate) access_token_ttl: Option<i64>,
    pub(crate) outage: bool,
    pub(crate) rate_limited: Option<u64>,
    /// Primary rate limits per credential: seconds until reset, by token.
    pub(crate) limited_tokens: HashMap<String, u64>,
    /// Primary rate limits of installations: every token of the installation is limited.
    pub(crate) limited_installations: HashMap<u64, u64>,
    /// The primary rate limit of App JWTs (every App).
    pub(crate) limited_app_jwt: Option<u64>,
    /// Workflow runs by (lower-case `owner/name`, run id): GitHub's run objects.
    pub(crate) runs: HashMap<(String, u64), Value>,
    /// File contents by (lower-case `owner/name`, path, commit).
    pub(crate) files: HashMap<(String, String, String), String>,
}

/// Per-request context.
pub(crate) struct Ctx {
    pub(crate) api_url: String,
    pub(crate) now: i64,
}

/// Why an App JWT was refused: the message GitHub would send, and a precise reason
/// for [`crate::FakeGithub::last_app_jwt_error`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) message: &'static str,
    pub(crate) reason: String,
}

fn reject(message: &'static str, reason: impl Into<String>) -> Rejection {
    Rejection {
        message,
        reason: reason.into(),
    }
}

/// The REST routes, to be merged into the fake's router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/repos/{owner}/{repo}/installation", get(repo_installation))
        .route(
            "/app/installations/{id}/access_tokens",
            post(create_access_token),
        )
        .route("/installation/repositories", get(installation_repositories))
        .route("/repos/{owner}/{repo}", get(repository))
        .merge(crate::actions_api::routes())
}

/// A fresh `ghs_` token: 36 random alphanumerics, like GitHub's installation tokens.
pub(crate) fn new_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 36];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Unreachable in practice; uuids are random enough for a fake.
        let fallback = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        bytes.copy_from_slice(fallback.as_bytes().get(..36).unwrap_or(&[b'0'; 36]));
    }
    let token: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("ghs_{token}")
}

pub(crate) fn github_error(status: StatusCode, message: &str, docs: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "message": message,
            "documentation_url": docs,
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

/// An error answer, small enough to travel in `Result`s.
pub(crate) struct Refusal {
    status: StatusCode,
    message: &'static str,
    docs: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        github_error(self.status, self.message, self.docs)
    }
}

fn refusal(status: StatusCode, message: &'static str, docs: &'static str) -> Refusal {
    Refusal {
        status,
        message,
        docs,
    }
}

fn bad_credentials() -> Refusal {
    refusal(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS_REST)
}

fn insert_header(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// GitHub's answer to a credential past its primary rate limit: `403`,
/// `X-RateLimit-Remaining: 0` and the reset time, no `Retry-After`.
fn primary_rate_limit(now: i64, reset_in: u64) -> Response {
    let mut response = github_error(
        StatusCode::FORBIDDEN,
        "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.",
        DOCS_RATE_LIMIT,
    );
    let headers = response.headers_mut();
    insert_header(headers, "x-ratelimit-limit", 5000);
    insert_header(headers, "x-ratelimit-remaining", 0);
    insert_header(
        headers,
        "x-ratelimit-reset",
        now.saturating_add(i64::try_from(reset_in).unwrap_or(i64::MAX)),
    );
    insert_header(headers, "x-ratelimit-used", 5000);
    insert_header(headers, "x-ratelimit-resource", "core");
    response
}

impl ApiState {
    /// How long the credential of this request is rate limited, if it is: a limited
    /// token, a token of a limited installation, or an App JWT while JWTs are limited.
    fn credential_limit(&self, headers: &HeaderMap) -> Option<u64> {
        let credential = credential(headers, &["token", "bearer"])?;
        if let Some(secs) = self.limited_tokens.get(credential) {
            return Some(*secs);
        }
        match self.tokens.get(credential) {
            Some(Grant::Installation {
                installation_id, ..
            }) => self.limited_installations.get(installation_id).copied(),
            Some(Grant::Fixed { .. }) => None,
            None => self
                .limited_app_jwt
                .filter(|_| credential.split('.').count() == 3),
        }
    }
}

/// Counts the request, applies the outage and rate-limit switches (global, then the
/// request's credential's), runs `handler` under the API lock and adds GitHub's
/// rate-limit headers to what it returns.
pub(crate) fn api_route(
    shared: &Shared,
    route: &str,
    headers: &HeaderMap,
    handler: impl FnOnce(&mut ApiState, &Ctx) -> Response,
) -> Response {
    let ctx = Ctx {
        api_url: shared.issuer(),
        now: shared.now(),
    };
    let mut api = shared.api();
    *api.counters.entry(route.to_owned()).or_default() += 1;
    if api.outage {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"message": "Service Unavailable"})),
        )
            .into_response();
    }
    if let Some(retry_after) = api.rate_limited {
        let mut response = github_error(
            StatusCode::FORBIDDEN,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            DOCS_SECONDARY_RATE_LIMIT,
        );
        let headers = response.headers_mut();
        insert_header(headers, "retry-after", retry_after);
        insert_header(headers, "x-ratelimit-limit", 5000);
        insert_header(headers, "x-ratelimit-remaining", 0);
        insert_header(
            headers,
            "x-ratelimit-reset",
            ctx.now
                .saturating_add(i64::try_from(retry_after).unwrap_or(i64::MAX)),
        );
        insert_header(headers, "x-ratelimit-used", 5000);
        insert_header(headers, "x-ratelimit-resource", "core");
        return response;
    }
    if let Some(reset_in) = api.credential_limit(headers) {
        return primary_rate_limit(ctx.now, reset_in);
    }
    let mut response = handler(&mut api, &ctx);
    drop(api);
    let headers = response.headers_mut();
    insert_header(headers, "x-ratelimit-limit", 5000);
    insert_header(headers, "x-ratelimit-remaining", 4999);
    insert_header(headers, "x-ratelimit-reset", ctx.now.saturating_add(3600));
    insert_header(headers, "x-ratelimit-used", 1);
    insert_header(headers, "x-ratelimit-resource", "core");
    response
}

/// The credential after `scheme` (case-insensitive) in `Authorization`, if any.
fn credential<'h>(headers: &'h HeaderMap, schemes: &[&str]) -> Option<&'h str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s)) && !credential.is_empty())
        .then_some(credential)
}

fn int_claim(value: Option<&Value>) -> Option<i64> {
    value.and_then(Value::as_i64)
}

/// Checks an App JWT as GitHub does: RS256 only, signed by the key of the App named by
/// `iss` (number or numeric string), `exp` in the future, `iat` at most 60 s ahead,
/// lifetime `exp - iat` at most 10 minutes. Returns the App id.
pub(crate) fn verify_app_jwt(
    apps: &HashMap<u64, TestKey>,
    jwt: Option<&str>,
    now: i64,
) -> Result<u64, Rejection> {
    let jwt = jwt.ok_or_else(|| {
        reject(
            JWT_UNDECODABLE,
            "missing `Authorization: Bearer <JWT>` header",
        )
    })?;
    let mut parts = jwt.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(JWT_UNDECODABLE, "not a compact JWS (three parts)"));
    };
    let decode = |part: &str, what: &str| -> Result<Value, Rejection> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| reject(JWT_UNDECODABLE, format!("{what} is not base64url")))?;
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| reject(JWT_UNDECODABLE, format!("{what} is not a JSON object")))
    };
    let jose = decode(header_b64, "header")?;
    match jose.get("alg").and_then(Value::as_str) {
        Some("RS256") => {}
        other => {
            return Err(reject(
                JWT_UNDECODABLE,
                format!("alg {other:?} is not RS256"),
            ));
        }
    }
    let claims = decode(claims_b64, "claims")?;
    let app_id = match claims.get("iss") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| reject(JWT_UNDECODABLE, "iss is missing or not an App id"))?;
    let key = apps.get(&app_id).ok_or_else(|| {
        reject(
            JWT_UNDECODABLE,
            format!("no App registered with id {app_id}"),
        )
    })?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| reject(JWT_UNDECODABLE, "signature is not base64url"))?;
    let signing_input = format!("{header_b64}.{claims_b64}");
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key_der())
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| {
            reject(
                JWT_UNDECODABLE,
                format!("signature does not verify with App {app_id}'s key"),
            )
        })?;
    let exp = int_claim(claims.get("exp"))
        .ok_or_else(|| reject(JWT_EXP_INVALID, "exp is missing or not an integer"))?;
    if exp <= now {
        return Err(reject(
            JWT_EXP_INVALID,
            format!("expired: exp {exp} <= now {now}"),
        ));
    }
    let iat = int_claim(claims.get("iat"))
        .ok_or_else(|| reject(JWT_IAT_INVALID, "iat is missing or not an integer"))?;
    if iat > now.saturating_add(JWT_IAT_SKEW) {
        return Err(reject(
            JWT_IAT_INVALID,
            format!("iat {iat} is more than {JWT_IAT_SKEW} s after now {now}"),
        ));
    }
    if exp.saturating_sub(iat) > JWT_MAX_LIFETIME {
        return Err(reject(
            JWT_EXP_TOO_FAR,
            format!(
                "lifetime exp - iat = {} s exceeds {JWT_MAX_LIFETIME} s",
                exp.saturating_sub(iat)
            ),
        ));
    }
    Ok(app_id)
}

impl ApiState {
    /// Checks the App JWT of a request, recording the outcome.
    pub(crate) fn authenticate_app(
        &mut self,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<u64, Refusal> {
        match verify_app_jwt(&self.apps, credential(headers, &["bearer"]), now) {
            Ok(app_id) => {
                self.app_jwt_uses = self.app_jwt_uses.saturating_add(1);
                Ok(app_id)
            }
            Err(rejection) => {
                tracing::debug!(reason = %rejection.reason, "fake GitHub refused an App JWT");
                self.last_jwt_error = Some(rejection.reason);
                Err(refusal(
                    StatusCode::UNAUTHORIZED,
                    rejection.message,
                    DOCS_REST,
                ))
            }
        }
    }

    /// The repositories an installation or run token sees, in order.
    pub(crate) fn authenticate_token(
        &self,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<Vec<Visible>, Refusal> {
        let Some(token) = credential(headers, &["token", "bearer"]) else {
            return Err(refusal(
                StatusCode::UNAUTHORIZED,
                "Requires authentication",
                DOCS_REST,
            ));
        };
        match self.tokens.get(token) {
            Some(Grant::Fixed {
                repositories,
                owner_id,
            }) => Ok(repositories
                .iter()
                .map(|r| Visible {
                    id: r.id,
                    full_name: r.full_name.clone(),
                    owner_id: *owner_id,
                })
                .collect()),
            Some(Grant::Installation {
                installation_id,
                repository_ids,
                expires_at,
            }) if *expires_at > now => {
                let installation = self
                    .installations
                    .get(installation_id)
                    .filter(|i| i.suspended_at.is_none())
                    .ok_or_else(bad_credentials)?;
                Ok(installation
                    .repositories
                    .iter()
                    .filter(|r| {
                        repository_ids
                            .as_ref()
                            .is_none_or(|ids| ids.contains(&r.id))
                    })
                    .map(|r| Visible {
                        id: r.id,
                        full_name: r.full_name.clone(),
                        owner_id: installation.account_id,
                    })
                    .collect())
            }
            _ => Err(bad_credentials()),
        }
    }
}

async fn repo_installation(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    api_route(&shared, ROUTE_REPO_INSTALLATION, &headers, |api, ctx| {
        let app_id = match api.authenticate_app(&headers, ctx.now) {
            Ok(id) => id,
            Err(refusal) => return refusal.into_response(),
        };
        let full_name = format!("{owner}/{repo}");
        let found = api.installations.iter().find(|(_, inst)| {
            inst.repositories
                .iter()
                .any(|r| r.full_name.eq_ignore_ascii_case(&full_name))
        });
        match found {
            Some((&id, inst)) => axum::Json(
                InstallationShape {
                    api: &ctx.api_url,
                    id,
                    account_login: &inst.account_login,
                    account_id: inst.account_id,
                    app_id,
                    created_at: inst.created_at,
                    suspended_at: inst.suspended_at,
                }
                .to_json(),
            )
            .into_response(),
            None => github_error(StatusCode::NOT_FOUND, "Not Found", DOCS_REPO_INSTALLATION),
        }
    })
}

/// Which repositories an access-token request narrows to; `None` means all.
fn requested_repositories(body: &[u8], inst: &Installation) -> Result<Option<Vec<u64>>, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
            DOCS_ACCESS_TOKENS,
        ));
    };
    let inaccessible = || {
        refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
            DOCS_ACCESS_TOKENS,
        )
    };
    let mut ids = Vec::new();
    let mut narrowed = false;
    if let Some(list) = request.get("repository_ids").and_then(Value::as_array) {
        narrowed = true;
        for id in list {
            let id = id.as_u64().ok_or_else(inaccessible)?;
            if !inst.repositories.iter().any(|r| r.id == id) {
                return Err(inaccessible());
            }
            ids.push(id);
        }
    }
    if let Some(list) = request.get("repositories").and_then(Value::as_array) {
        narrowed = true;
        for name in list {
            let name = name.as_str().ok_or_else(inaccessible)?;
            let repo = inst
                .repositories
                .iter()
                .find(|r| {
                    let (_, short) = crate::shapes::split_full_name(&r.full_name);
                    short.eq_ignore_ascii_case(name) || r.full_name.eq_ignore_ascii_case(name)
                })
                .ok_or_else(inaccessible)?;
            ids.push(repo.id);
        }
    }
    Ok(narrowed.then_some(ids))
}

async fn create_access_token(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api_route(&shared, ROUTE_ACCESS_TOKENS, &headers, |api, ctx| {
        if let Err(refusal) = api.authenticate_app(&headers, ctx.now) {
            return refusal.into_response();
        }
        let Some((installation_id, inst)) = id
            .parse::<u64>()
            .ok()
            .and_then(|id| Some((id, api.installations.get(&id)?.clone())))
        else {
            return github_error(StatusCode::NOT_FOUND, "Not Found", DOCS_ACCESS_TOKENS);
        };
        if inst.suspended_at.is_some() {
            return github_error(
                StatusCode::FORBIDDEN,
                "This installation has been suspended",
                DOCS_ACCESS_TOKENS,
            );
        }
        let repository_ids = match requested_repositories(&body, &inst) {
            Ok(ids) => ids,
            Err(refusal) => return refusal.into_response(),
        };
        let token = new_token();
        let expires_at = ctx
            .now
            .saturating_add(api.access_token_ttl.unwrap_or(ACCESS_TOKEN_TTL));
        let mut answer = json!({
            "token": token,
            "expires_at": rfc3339(expires_at),
            "permissions": installation_permissions(),
            "repository_selection": "selected",
        });
        if let (Some(ids), Value::Object(map)) = (&repository_ids, &mut answer) {
            let repositories: Vec<Value> = inst
                .repositories
                .iter()
                .filter(|r| ids.contains(&r.id))
                .map(|r| repository_json(&ctx.api_url, r.id, &r.full_name, inst.account_id))
                .collect();
            map.insert("repositories".to_owned(), Value::Array(repositories));
        }
        api.tokens.insert(
            token,
            Grant::Installation {
                installation_id,
                repository_ids,
                expires_at,
            },
        );
        api.access_tokens_issued = api.access_tokens_issued.saturating_add(1);
        (StatusCode::CREATED, axum::Json(answer)).into_response()
    })
}

fn query_number(query: &HashMap<String, String>, key: &str, default: usize) -> usize {
    query
        .get(key)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(default)
}

async fn installation_repositories(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    api_route(
        &shared,
        ROUTE_INSTALLATION_REPOSITORIES,
        &headers,
        |api, ctx| {
            let visible = match api.authenticate_token(&headers, ctx.now) {
                Ok(visible) => visible,
                Err(refusal) => return refusal.into_response(),
            };
            if ["per_page", "page"]
                .iter()
                .any(|key| query.get(*key).is_some_and(|v| v.parse::<usize>().is_err()))
            {
                return github_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid request.",
                    DOCS_INSTALLATION_REPOSITORIES,
                );
            }
            let per_page = query_number(&query, "per_page", 30).clamp(1, 100);
            let page = query_number(&query, "page", 1).max(1);
            let total = visible.len();
            let repositories: Vec<Value> = visible
                .iter()
                .skip(per_page.saturating_mul(page - 1))
                .take(per_page)
                .map(|r| repository_json(&ctx.api_url, r.id, &r.full_name, r.owner_id))
                .collect();
            let last = total.div_ceil(per_page).max(1);
            let mut response = axum::Json(json!({
                "total_count": total,
                "repository_selection": "selected",
                "repositories": repositories,
            }))
            .into_response();
            if page < last {
                let url = |p: usize| {
                    format!(
                        "<{}/installation/repositories?per_page={per_page}&page={p}>",
                        ctx.api_url
                    )
                };
                let link = format!(
                    "{}; rel=\"next\", {}; rel=\"last\"",
                    url(page + 1),
                    url(last)
                );
                insert_header(response.headers_mut(), "link", link);
            }
            response
        },
    )
}

async fn repository(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    api_route(&shared, ROUTE_REPOSITORY, &headers, |api, ctx| {
        let visible = match api.authenticate_token(&headers, ctx.now) {
            Ok(visible) => visible,
            Err(refusal) => return refusal.into_response(),
        };
        let full_name = format!("{owner}/{repo}");
        match visible
            .iter()
            .find(|r| r.full_name.eq_ignore_ascii_case(&full_name))
        {
            Some(r) => axum::Json(repository_json(
                &ctx.api_url,
                r.id,
                &r.full_name,
                r.owner_id,
            ))
            .into_response(),
            None => github_error(StatusCode::NOT_FOUND, "Not Found", DOCS_REPOSITORY),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_look_like_github_installation_tokens() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 40);
        assert!(a.starts_with("ghs_"));
        assert!(a[4..].chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn credential_schemes() {
        let mut headers = HeaderMap::new();
        assert_eq!(credential(&headers, &["token"]), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Token abc"));
        assert_eq!(credential(&headers, &["token", "bearer"]), Some("abc"));
        assert_eq!(credential(&headers, &["bearer"]), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(credential(&headers, &["bearer"]), None);
    }

    #[test]
    fn jwt_structure_errors_are_undecodable() {
        let apps = HashMap::new();
        for jwt in [None, Some("a.b"), Some("a.b.c.d"), Some("!!.e30.")] {
            let err = verify_app_jwt(&apps, jwt, 0).unwrap_err();
            assert_eq!(err.message, JWT_UNDECODABLE, "{jwt:?}");
        }
    }
}
