//! [`FakeGithub`], the handle a test holds: it binds the port, serves the routes of
//! [`crate::oidc`], [`crate::api`] and [`crate::actions_api`] over one
//! [`crate::state::Shared`], and changes that state. Nothing in the crate depends on it.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::{Grant, Installation, Repo, Shared};
use crate::{AppCredentials, RunSpec, TestKey, TestkitError, actions_api, api, oidc};

/// A fake GitHub on `127.0.0.1`: OIDC discovery, JWKS and the Actions token-request
/// endpoint, plus the REST API a GitHub App uses, all backed by in-memory state the
/// test controls.
///
/// # REST API for Apps
///
/// Served at [`FakeGithub::base_url`] (use it as runproof's `github.api_url`):
///
/// | route | credentials | key for [`FakeGithub::api_requests`] |
/// |---|---|---|
/// | `GET /repos/{owner}/{repo}/installation` | App JWT | `repo_installation` |
/// | `POST /app/installations/{id}/access_tokens` | App JWT | `access_tokens` |
/// | `GET /installation/repositories` | installation token or `GITHUB_TOKEN` | `installation_repositories` |
/// | `GET /repos/{owner}/{repo}` | installation token or `GITHUB_TOKEN` | `repository` |
/// | `GET /repositories/{id}` | installation token or `GITHUB_TOKEN` | `repository_by_id` |
/// | `GET /repositories/{id}/installation` | App JWT | `repository_installation_by_id` |
/// | `GET /repos/{owner}/{repo}/actions/runs/{run_id}` | installation token | `workflow_run` |
/// | `GET /repos/{owner}/{repo}/contents/{path}?ref=` | installation token | `contents` |
/// | `GET /repositories/{id}/contents/{path}[?ref=]` | installation token | `contents_by_id` |
///
/// App JWTs (`Authorization: Bearer`) are really checked: RS256 only, signature by the
/// key of the App that `iss` names (registered with [`FakeGithub::register_app`]; number
/// or numeric string), `exp` after now, `iat` at most 60 s after now, `exp - iat` at
/// most 600 s. "Now" is real time plus [`FakeGithub::set_time_offset`]. Tokens are
/// accepted as `Authorization: token X` or `Bearer X`. Errors have GitHub's bodies
/// (`message`, `documentation_url`, `status`). Every answer except outage ones carries
/// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
///
/// Installations belong to no App in particular: every registered App sees them all,
/// and `app_id` in answers is the authenticated App's id. Repository owners are
/// organizations whose id is the installation's account id (or the `owner_id` given to
/// [`FakeGithub::issue_github_token`]).
///
/// Clones share the same server. The server stops on [`FakeGithub::shutdown`] or when
/// the last clone is dropped.
#[derive(Clone)]
pub struct FakeGithub {
    handle: Arc<Handle>,
}

/// Owned by the clones only (not by the server task), so dropping the last clone
/// drops `shutdown` and the server notices.
struct Handle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl FakeGithub {
    /// Binds `127.0.0.1:0`, generates one signing key (kid: 40 upper-case hex digits)
    /// and serves in a background tokio task. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`TestkitError::Listen`] if the port cannot be bound, key errors as
    /// [`TestKey::generate`].
    pub async fn start() -> Result<FakeGithub, TestkitError> {
        // RSA generation takes long enough in debug builds to stall a current-thread runtime.
        let key = tokio::task::spawn_blocking(TestKey::generate_with_thumbprint_kid)
            .await
            .map_err(|e| TestkitError::Task(e.to_string()))??;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(TestkitError::Listen)?;
        let addr = listener.local_addr().map_err(TestkitError::Listen)?;
        let request_token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let shared = Arc::new(Shared::new(addr, request_token, key));
        let app = Router::new()
            .merge(oidc::routes())
            .merge(api::routes())
            .merge(actions_api::routes())
            .with_state(Arc::clone(&shared));
        let (shutdown, mut stop) = watch::channel(false);
        tokio::spawn(async move {
            let signal = async move {
                // Resolves on `shutdown()` and also when the sender is dropped.
                let _ = stop.wait_for(|down| *down).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(%error, "fake GitHub server stopped with an error");
            }
        });
        tracing::debug!(%addr, "fake GitHub listening");
        Ok(FakeGithub {
            handle: Arc::new(Handle { shared, shutdown }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.shared().addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The OIDC issuer URL: the same as [`FakeGithub::base_url`].
    pub fn issuer(&self) -> String {
        self.base_url()
    }

    /// The issuer + `/.well-known/jwks`.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks", self.issuer())
    }

    /// The value `ACTIONS_ID_TOKEN_REQUEST_URL` would have: it already carries a query
    /// string, so clients append `&audience=...`.
    pub fn token_request_url(&self) -> String {
        format!("{}/_apis/token?api-version=2.0", self.base_url())
    }

    /// The value `ACTIONS_ID_TOKEN_REQUEST_TOKEN` would have (random per server).
    pub fn token_request_token(&self) -> String {
        self.shared().request_token.clone()
    }

    /// The key that signs new tokens.
    pub fn current_key(&self) -> TestKey {
        self.shared().lock().current.clone()
    }

    /// Every key the JWKS publishes, current first.
    pub fn published_keys(&self) -> Vec<TestKey> {
        self.shared().lock().published()
    }

    /// Generates a new key and makes it current. The replaced key stays in the JWKS (as
    /// GitHub does during rotation); with `retire_old`, every older key is withdrawn and
    /// only the new one is published.
    ///
    /// # Errors
    /// As [`TestKey::generate`]; the published keys are unchanged then.
    pub fn rotate_key(&self, retire_old: bool) -> Result<TestKey, TestkitError> {
        let key = TestKey::generate_with_thumbprint_kid()?;
        let mut state = self.shared().lock();
        let old = std::mem::replace(&mut state.current, key.clone());
        if retire_old {
            state.previous.clear();
        } else {
            state.previous.insert(0, old);
        }
        Ok(key)
    }

    /// While on, discovery and JWKS answer 503 (the issuer is down). The token-request
    /// endpoint keeps working.
    pub fn set_outage(&self, down: bool) {
        self.shared().outage.store(down, Ordering::SeqCst);
    }

    /// Replaces the run that new tokens describe.
    pub fn set_run(&self, run: RunSpec) {
        self.shared().lock().run = run;
    }

    /// The run that new tokens describe.
    pub fn run(&self) -> RunSpec {
        self.shared().lock().run.clone()
    }

    /// GitHub-shaped claims for the current run, for `audience`. Ids are JSON strings;
    /// `jti` is a fresh uuid v4 on every call; `iat` is now (real unix time plus the
    /// configured offset), `nbf = iat - 5`, `exp = iat + 300`.
    pub fn claims(&self, audience: &str) -> Map<String, Value> {
        let run = self.run();
        run.claims(&self.issuer(), audience, self.shared().now())
    }

    /// Signs `claims` as given with the current key, under GitHub's header shape
    /// (`typ`, `alg`, `kid`, `x5t`).
    ///
    /// # Errors
    /// As [`TestKey::sign`].
    pub fn mint(&self, claims: &Map<String, Value>) -> Result<String, TestkitError> {
        self.current_key()
            .sign_claims(&Value::Object(claims.clone()))
    }

    /// Shorthand for `mint(&claims(audience))`.
    ///
    /// # Errors
    /// As [`TestKey::sign`].
    pub fn token(&self, audience: &str) -> Result<String, TestkitError> {
        self.mint(&self.claims(audience))
    }

    /// Shifts the clock used for `iat`/`nbf`/`exp` by `secs` (negative: the past).
    pub fn set_time_offset(&self, secs: i64) {
        self.shared().time_offset.store(secs, Ordering::SeqCst);
    }

    /// How many JWKS GETs were served, including those answered 503 during an outage.
    pub fn jwks_requests(&self) -> u64 {
        self.shared().jwks_requests.load(Ordering::SeqCst)
    }

    /// How many discovery GETs were served, including those answered 503 during an outage.
    pub fn discovery_requests(&self) -> u64 {
        self.shared().discovery_requests.load(Ordering::SeqCst)
    }

    /// Serves `body` verbatim with status 200 as the JWKS instead of the real keys
    /// (for garbage or oversized key-set tests); `None` restores the real JWKS.
    /// An outage still wins over the override.
    pub fn set_jwks_override(&self, body: Option<Vec<u8>>) {
        self.shared().lock().jwks_override = body;
    }

    /// Stops accepting connections; in-flight requests finish. Idempotent.
    pub fn shutdown(&self) {
        self.handle.shutdown.send_replace(true);
    }

    // ----- GitHub Apps -----

    /// Registers a GitHub App: generates an RSA-2048 key whose public half the fake
    /// uses to check App JWTs with `iss` = `app_id`, and returns the credentials an App
    /// owner would download. Registering an id again replaces its key (JWTs signed with
    /// the old key are refused from then on).
    ///
    /// Key generation is CPU-bound (tens of milliseconds, more in debug builds) and
    /// runs on the calling thread.
    ///
    /// # Errors
    /// As [`TestKey::generate`] and [`TestKey::private_key_pem`].
    pub fn register_app(&self, app_id: u64) -> Result<AppCredentials, TestkitError> {
        let key = TestKey::generate(format!("app-{app_id}"))?;
        let private_key_pem = key.private_key_pem()?;
        self.shared().api().apps.insert(app_id, key);
        Ok(AppCredentials {
            app_id,
            private_key_pem,
        })
    }

    /// The key of a registered App, to sign App JWTs in tests (well-formed or not) with
    /// [`TestKey::sign`]; `None` if no App has that id.
    pub fn app_key(&self, app_id: u64) -> Option<TestKey> {
        self.shared().api().apps.get(&app_id).cloned()
    }

    /// Why the last refused App JWT was refused (more precise than the answer's
    /// `message`); `None` if none has been refused yet.
    pub fn last_app_jwt_error(&self) -> Option<String> {
        self.shared().api().last_jwt_error.clone()
    }

    /// How many requests presented an App JWT that was accepted.
    pub fn app_jwt_uses(&self) -> u64 {
        self.shared().api().app_jwt_uses
    }

    /// Adds an installation on organization `account_login` (id `account_id`) covering
    /// `repositories`, given as `(repository id, "owner/name")`. An existing installation
    /// with that id gets the new account and repositories and keeps its suspension state.
    pub fn add_installation(
        &self,
        installation_id: u64,
        account_login: &str,
        account_id: u64,
        repositories: &[(u64, &str)],
    ) {
        let now = self.shared().now();
        let repositories = repositories
            .iter()
            .map(|&(id, name)| Repo::new(id, name))
            .collect();
        let mut api = self.shared().api();
        let (created_at, suspended_at) = api
            .installations
            .get(&installation_id)
            .map_or((now, None), |old| (old.created_at, old.suspended_at));
        api.installations.insert(
            installation_id,
            Installation {
                account_login: account_login.to_owned(),
                account_id,
                repositories,
                created_at,
                suspended_at,
            },
        );
    }

    /// Suspends (`true`) or unsuspends an installation. While suspended, the repository
    /// lookup still answers (with `suspended_at` set), access-token requests answer 403
    /// and the installation's existing tokens answer 401. Unknown ids are ignored.
    pub fn suspend_installation(&self, id: u64, suspended: bool) {
        let now = self.shared().now();
        if let Some(inst) = self.shared().api().installations.get_mut(&id) {
            inst.suspended_at = match (suspended, inst.suspended_at) {
                (true, Some(at)) => Some(at),
                (true, None) => Some(now),
                (false, _) => None,
            };
        }
    }

    /// Uninstalls: the installation disappears and its tokens answer 401.
    pub fn remove_installation(&self, id: u64) {
        self.shared().api().installations.remove(&id);
    }

    /// Simulates deleting a repository and creating another with the same name: the
    /// repository named `full_name` (case-insensitively) gets id `new_id` in every
    /// installation. Installation tokens narrowed to the old id no longer see it;
    /// tokens from [`FakeGithub::issue_github_token`] keep the ids they were issued with.
    pub fn set_repository(&self, full_name: &str, new_id: u64) {
        let mut api = self.shared().api();
        for repo in api
            .installations
            .values_mut()
            .flat_map(|inst| inst.repositories.iter_mut())
            .filter(|r| r.full_name.eq_ignore_ascii_case(full_name))
        {
            repo.id = new_id;
        }
    }

    /// Installation access tokens issued from now on live `secs` seconds (`None`: an
    /// hour, as on GitHub), so that a client's refresh before expiry can be reached.
    pub fn set_access_token_ttl(&self, secs: Option<i64>) {
        self.shared().api().access_token_ttl = secs;
    }

    /// How many installation access tokens were issued (201 answers).
    pub fn access_tokens_issued(&self) -> u64 {
        self.shared().api().access_tokens_issued
    }

    /// Issues a `ghs_` token that sees exactly `repositories` (`(id, "owner/name")`,
    /// owned by the organization with id `owner_id`), like a run's `GITHUB_TOKEN` (an
    /// installation token of the GitHub Actions App). It stays valid until
    /// [`FakeGithub::revoke_token`].
    pub fn issue_github_token(&self, repositories: &[(u64, &str)], owner_id: u64) -> String {
        let token = api::new_token();
        let grant = Grant::Fixed {
            repositories: repositories
                .iter()
                .map(|&(id, name)| Repo::new(id, name))
                .collect(),
            owner_id,
        };
        self.shared().api().tokens.insert(token.clone(), grant);
        token
    }

    /// Revokes an installation token or `GITHUB_TOKEN`: it answers 401 from now on.
    pub fn revoke_token(&self, token: &str) {
        self.shared().api().tokens.remove(token);
    }

    /// How many requests a REST route received, whatever the answer (outage and rate
    /// limited ones included). Keys: `repo_installation`, `access_tokens`,
    /// `installation_repositories`, `repository`, `repository_by_id`,
    /// `repository_installation_by_id`, `workflow_run`, `contents`, `contents_by_id`;
    /// anything else counts 0.
    pub fn api_requests(&self, route: &str) -> u64 {
        self.shared()
            .api()
            .counters
            .get(route)
            .copied()
            .unwrap_or(0)
    }

    /// While on, every REST route answers 503 `{"message":"Service Unavailable"}`. OIDC
    /// routes are governed by [`FakeGithub::set_outage`] instead.
    pub fn set_api_outage(&self, down: bool) {
        self.shared().api().outage = down;
    }

    /// With `Some(n)`, every REST route answers 403 with `Retry-After: n`,
    /// `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset: now + n` and a secondary rate
    /// limit message; `None` lifts the limit. An outage wins over the limit.
    pub fn set_rate_limited(&self, retry_after_secs: Option<u64>) {
        self.shared().api().rate_limited = retry_after_secs;
    }

    /// Puts one token (a `GITHUB_TOKEN` or an installation token) past its primary rate
    /// limit for `reset_in_secs` (`None` lifts it): requests with it answer 403 with
    /// `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset`, as GitHub does; other
    /// credentials are served. The limit lasts until lifted, whatever the reset says.
    pub fn set_token_rate_limited(&self, token: &str, reset_in_secs: Option<u64>) {
        let mut api = self.shared().api();
        match reset_in_secs {
            Some(secs) => api.limited_tokens.insert(token.to_owned(), secs),
            None => api.limited_tokens.remove(token),
        };
    }

    /// As [`FakeGithub::set_token_rate_limited`], for every token of an installation.
    pub fn set_installation_rate_limited(&self, installation_id: u64, reset_in_secs: Option<u64>) {
        let mut api = self.shared().api();
        match reset_in_secs {
            Some(secs) => api.limited_installations.insert(installation_id, secs),
            None => api.limited_installations.remove(&installation_id),
        };
    }

    /// As [`FakeGithub::set_token_rate_limited`], for App JWTs (any request whose
    /// credential is not a known token and looks like a JWT).
    pub fn set_app_jwt_rate_limited(&self, reset_in_secs: Option<u64>) {
        self.shared().api().limited_app_jwt = reset_in_secs;
    }

    // ----- Workflow runs and files (webhook mode) -----

    /// Serves `run` at `GET /repos/{owner}/{repo}/actions/runs/{run_id}` as a run object
    /// shaped like GitHub's (the `workflow_run` of [`crate::workflow_run_payload`]:
    /// `id`, `run_attempt`, `head_sha`, `event`, `status`, `conclusion`, `path`,
    /// `updated_at` now, `repository` and `head_repository` with the run's repository id).
    /// Replaces a run with the same repository and id.
    pub fn add_workflow_run(&self, run: &RunSpec, status: &str, conclusion: Option<&str>) {
        let object = crate::webhook::workflow_run_object(run, status, conclusion);
        self.put_workflow_run(&run.repository, object);
    }

    /// Serves `object` as is as the run `object["id"]` of repository `full_name` (for runs
    /// edited by a test: a fork's `head_repository`, an old `updated_at`, another attempt).
    pub fn put_workflow_run(&self, full_name: &str, object: Value) {
        let id = object.get("id").and_then(Value::as_u64).unwrap_or(0);
        self.shared()
            .api()
            .runs
            .insert((full_name.to_ascii_lowercase(), id), object);
    }

    /// Stops serving a run.
    pub fn remove_workflow_run(&self, full_name: &str, run_id: u64) {
        self.shared()
            .api()
            .runs
            .remove(&(full_name.to_ascii_lowercase(), run_id));
    }

    /// Serves `content` as the file at `path` on the default branch of repository
    /// `repository_id` (`GET /repositories/{id}/contents/{path}` without `ref`), or stops
    /// serving it with `None`. Distinct from [`FakeGithub::set_file`]'s files at a commit,
    /// so that a test can tell which one was read.
    pub fn set_default_branch_file(&self, repository_id: u64, path: &str, content: Option<&str>) {
        let key = (repository_id, path.to_owned());
        let mut api = self.shared().api();
        match content {
            Some(content) => {
                api.default_branch_files.insert(key, content.to_owned());
            }
            None => {
                api.default_branch_files.remove(&key);
            }
        }
    }

    /// Serves `content` at `GET /repos/{owner}/{repo}/contents/{path}?ref={git_ref}` for
    /// repository `full_name`, base64-encoded as GitHub does.
    pub fn set_file(&self, full_name: &str, path: &str, git_ref: &str, content: &str) {
        self.shared().api().files.insert(
            (
                full_name.to_ascii_lowercase(),
                path.to_owned(),
                git_ref.to_owned(),
            ),
            content.to_owned(),
        );
    }
}

impl fmt::Debug for FakeGithub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGithub")
            .field("addr", &self.addr())
            .field("current_kid", &self.current_key().kid())
            .finish_non_exhaustive()
    }
}
