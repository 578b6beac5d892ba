//! The service: everything a decision needs, built once ([`Service::builder`]).

use std::sync::Arc;

use runproof_core::Verifier;
use runproof_core::rules::TrustRule;
use runproof_github::{KeyCache, RestClient};
use runproof_store::{BlobStore, InlineBodies, Store, StoreError};

use crate::binding::Binding;
use crate::clock::{Clock, SystemClock};
use crate::commits::Commits;
use crate::push::PushConfig;
use crate::repository_layer::{RepositoryFiles, RulesCache};
use crate::settings::{ServiceSettings, SessionConfig};
use crate::webhook_state::{WebhookMode, WebhookModeConfig};
use crate::workflow_checks::WorkflowChecks;

/// The run an upload claims without an OIDC token, as its headers said it (`None`: the
/// header is absent). The `github_token` mode checks the repository against the token;
/// the webhook mode waits for GitHub to vouch for the run and commit.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaimedRun<'a> {
    /// `X-Runproof-Repository`: `owner/repo`.
    pub repository: Option<&'a str>,
    /// `X-Runproof-Run`: `<repository_id>/<run_id>/<run_attempt>`.
    pub run: Option<&'a str>,
    /// `X-Runproof-Sha`: the commit's 40 hex digits.
    pub sha: Option<&'a str>,
}

/// Everything a decision needs: the verifier and keys, the stores, GitHub's clients, the
/// clock, and each mode's settings. Built once with [`Service::builder`].
pub struct Service {
    pub(crate) verifier: Verifier,
    pub(crate) keys: Arc<KeyCache>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) commits: Commits,
    pub(crate) settings: ServiceSettings,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) binding: Option<Binding>,
    pub(crate) github_token: Option<RestClient>,
    pub(crate) sessions: SessionConfig,
    pub(crate) push: Option<PushConfig>,
    pub(crate) push_wake: Arc<tokio::sync::Notify>,
    pub(crate) webhook_mode: Option<WebhookMode>,
    pub(crate) trust_rules: Vec<TrustRule>,
    /// `[policy] repository_file`: where each repository keeps its rules, and what the
    /// file said recently; `None`: off.
    pub(crate) repository_files: Option<RepositoryFiles>,
    /// Each repository's rules set through the API, recently read.
    pub(crate) repository_rules: RulesCache,
    /// `[policy] require_action`: the Action an OIDC run's calling workflow must use.
    pub(crate) require_action: Option<String>,
    /// Recent workflow checks, shared by the modes that make them.
    pub(crate) workflow_checks: WorkflowChecks,
    /// The event log's side queue.
    pub(crate) events: crate::event_queue::EventLog,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("settings", &self.settings)
            .field("modes", &self.modes())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Starts building a service on these stores, with this verifier and its keys. Every
    /// optional mode is off until set.
    pub fn builder(
        verifier: Verifier,
        keys: Arc<KeyCache>,
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
    ) -> ServiceBuilder {
        ServiceBuilder {
            verifier,
            keys,
            store,
            blobs,
            settings: ServiceSettings::default(),
            clock: Arc::new(SystemClock),
            binding: None,
            github_token: None,
            sessions: SessionConfig::default(),
            push: None,
            webhook_mode: None,
            trust_rules: Vec::new(),
            repository_file: None,
            require_action: None,
            event_log: crate::event_queue::EventLogConfig::default(),
            event_queue: crate::events::EVENT_QUEUE_CAPACITY,
        }
    }

    /// The modes this service accepts, for `/.well-known/runproof`.
    #[must_use]
    pub fn modes(&self) -> Vec<&'static str> {
        let mut modes = vec!["oidc", "session"];
        if self.github_token.is_some() {
            modes.push("github_token");
        }
        if self.webhook_mode.is_some() {
            modes.push("webhook");
        }
        modes
    }

    /// Verifies OIDC tokens.
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Keys of the configured issuers.
    #[must_use]
    pub fn keys(&self) -> &Arc<KeyCache> {
        &self.keys
    }

    /// Upload records, sessions, bindings and the outbox.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Upload bodies: small ones in the database, the rest in a blob store
    /// ([`InlineBodies`]).
    #[must_use]
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// The commit pipeline and the replay guard.
    #[must_use]
    pub fn commits(&self) -> &Commits {
        &self.commits
    }

    /// The settings of the decisions.
    #[must_use]
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The current time.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Installation binding through the App's credentials; `None` when they are not set.
    #[must_use]
    pub fn binding(&self) -> Option<&Binding> {
        self.binding.as_ref()
    }

    /// The webhook mode (pending uploads); `None` while it is off.
    #[must_use]
    pub fn webhook_mode(&self) -> Option<&WebhookMode> {
        self.webhook_mode.as_ref()
    }

    /// The App's trust rules: a verified run must match one of them (none: no constraint).
    #[must_use]
    pub fn trust_rules(&self) -> &[TrustRule] {
        &self.trust_rules
    }

    /// `owner/name` of the Action an OIDC run's calling workflow must use (`None`: off).
    #[must_use]
    pub fn require_action(&self) -> Option<&str> {
        self.require_action.as_deref()
    }

    /// `[policy] repository_file`: the path of the file on each repository's default
    /// branch whose rules are the repository's layer (`None`: off).
    #[must_use]
    pub fn repository_file(&self) -> Option<&str> {
        self.repository_files.as_ref().map(RepositoryFiles::path)
    }

    /// Limits of upload sessions.
    #[must_use]
    pub fn session_limits(&self) -> SessionConfig {
        self.sessions
    }

    /// Wakes the push worker: this process enqueued a push.
    pub fn wake_pushes(&self) {
        self.push_wake.notify_one();
    }
}

/// Builds a [`Service`]: see [`Service::builder`].
#[must_use]
pub struct ServiceBuilder {
    verifier: Verifier,
    keys: Arc<KeyCache>,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    settings: ServiceSettings,
    clock: Arc<dyn Clock>,
    binding: Option<Binding>,
    github_token: Option<RestClient>,
    sessions: SessionConfig,
    push: Option<PushConfig>,
    webhook_mode: Option<WebhookModeConfig>,
    trust_rules: Vec<TrustRule>,
    repository_file: Option<String>,
    require_action: Option<String>,
    event_log: crate::event_queue::EventLogConfig,
    event_queue: usize,
}

impl ServiceBuilder {
    /// How long the event log keeps events (`[events]`).
    pub fn event_log(mut self, config: crate::event_queue::EventLogConfig) -> Self {
        self.event_log = config;
        self
    }

    /// How many events the side queue holds before it drops (tests make it small).
    pub fn event_queue(mut self, capacity: usize) -> Self {
        self.event_queue = capacity;
        self
    }

    /// The settings of the decisions.
    pub fn settings(mut self, settings: ServiceSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The clock (tests move it).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Binds runs to installations with the App's credentials.
    pub fn binding(mut self, binding: Option<Binding>) -> Self {
        self.binding = binding;
        self
    }

    /// Turns the `github_token` mode on, checking tokens with this client of GitHub's API.
    pub fn github_token(mut self, rest: Option<RestClient>) -> Self {
        self.github_token = rest;
        self
    }

    /// Limits of upload sessions.
    pub fn sessions(mut self, sessions: SessionConfig) -> Self {
        self.sessions = sessions;
        self
    }

    /// Pushes signed events to the App.
    pub fn push(mut self, push: Option<PushConfig>) -> Self {
        self.push = push;
        self
    }

    /// Turns the webhook mode on.
    pub fn webhook_mode(mut self, config: Option<WebhookModeConfig>) -> Self {
        self.webhook_mode = config;
        self
    }

    /// The App's trust rules (its layer), already checked with
    /// `runproof_core::rules::validate_layer`. Empty, the default, adds no constraint.
    pub fn trust_rules(mut self, rules: Vec<TrustRule>) -> Self {
        self.trust_rules = rules;
        self
    }

    /// `[policy] require_action`: OIDC uploads and sessions are refused unless the calling
    /// workflow (`workflow_ref` at `workflow_sha`) uses this Action (`owner/name`),
    /// directly or through a reusable workflow of the same repository. Needs the App's
    /// credentials ([`ServiceBuilder::binding`]) to read workflow files. `None`, the
    /// default: off.
    pub fn require_action(mut self, action: Option<String>) -> Self {
        self.require_action = action;
        self
    }

    /// `[policy] repository_file`: the repository's layer is read from the file at this
    /// path on its default branch, with the App's installation token (so it needs
    /// [`ServiceBuilder::binding`]), when the repository has the file. The path is
    /// relative, of plain characters, with no `..`. `None`, the default: off.
    pub fn repository_file(mut self, path: Option<String>) -> Self {
        self.repository_file = path;
        self
    }

    /// Starts the commit pipeline and builds the service. Bodies go through
    /// [`InlineBodies`], so that small ones live in the database.
    ///
    /// # Errors
    /// When the commit pipeline cannot read what it needs from the store.
    pub async fn build(self) -> Result<Service, StoreError> {
        let commits =
            Commits::start(Arc::clone(&self.store), self.settings.inline_max_bytes).await?;
        let blobs: Arc<dyn BlobStore> =
            Arc::new(InlineBodies::new(Arc::clone(&self.store), self.blobs));
        Ok(Service {
            verifier: self.verifier,
            keys: self.keys,
            store: self.store,
            blobs,
            commits,
            settings: self.settings,
            clock: self.clock,
            binding: self.binding,
            github_token: self.github_token,
            sessions: self.sessions,
            push: self.push,
            push_wake: Arc::new(tokio::sync::Notify::new()),
            webhook_mode: self.webhook_mode.map(WebhookMode::new),
            trust_rules: self.trust_rules,
            repository_files: self.repository_file.map(RepositoryFiles::new),
            repository_rules: RulesCache::default(),
            require_action: self.require_action,
            workflow_checks: WorkflowChecks::default(),
            events: crate::event_queue::EventLog::new(self.event_log, self.event_queue),
        })
    }
}
