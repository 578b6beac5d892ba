//! `runproof verify-token`: verify one token offline (with a JWKS file) or against a
//! configuration's issuers, and print the identity or the stable code.
//!
//! With `--explain` it answers what `POST /v1/policy/explain` answers, through the same
//! code ([`runproof_service::explain::explain`]) on a service built here, offline: an
//! in-memory store (so no `jti` is spent), the keys of `--jwks` or of the configuration's
//! issuers, no App credentials (the installation check says binding is off), and the
//! App's `[[policy.rules]]` from `--config`. [`render`] prints it as a table.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use runproof_core::policy::Policy;
use runproof_core::rules::TrustRule;
use runproof_core::{KeySet, UnixTime, UnverifiedToken, Verifier, VerifierConfig};
use runproof_github::{IssuerConfig, KeyCache, KeyCacheConfig, KeyError};
use runproof_service::explain::{Explanation, explain};
use runproof_service::{Service, ServiceSettings};
use runproof_store::{LocalBlobStore, SqliteStore};

use crate::config::{self, GITHUB_ISSUER};

/// The `verify-token` arguments.
#[derive(Debug, clap::Args)]
pub struct VerifyTokenArgs {
    /// A JWKS file holding the issuer's keys (offline verification): nothing is fetched,
    /// and only that issuer is trusted.
    #[arg(long)]
    pub jwks: Option<PathBuf>,
    /// A runproof config: its audience, issuers (keys fetched from them unless --jwks is
    /// given), leeway, policy and, with --explain, its `[[policy.rules]]`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The issuer whose keys --jwks holds (only with --jwks): github.com's by default, or
    /// the one issuer of --config; with --config, one of its issuers.
    #[arg(long)]
    pub issuer: Option<String>,
    /// The audience to require. Required without --config; with it, the config's
    /// `[oidc] audience`, which --audience may only repeat.
    #[arg(long)]
    pub audience: Option<String>,
    /// Verify as of this time: unix seconds or RFC 3339. Now by default.
    #[arg(long)]
    pub at: Option<String>,
    /// Print the identity as JSON; with --explain, the explanation exactly as
    /// `POST /v1/policy/explain` answers it.
    #[arg(long)]
    pub json: bool,
    /// Print every check an upload makes and every App rule with its mismatches, as
    /// `POST /v1/policy/explain` answers (nothing is stored or spent). Exits 0 when an
    /// upload would be allowed, 1 when not.
    #[arg(long)]
    pub explain: bool,
    /// The token, `-` for standard input, or `@FILE`.
    pub token: String,
}

fn parse_time(s: &str) -> anyhow::Result<UnixTime> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(UnixTime(secs));
    }
    // The parse error is shown by its message alone: its source repeats that message.
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            anyhow::anyhow!(
                "--at `{s}` is neither unix seconds nor RFC 3339 (such as 2026-11-30T13:31:00Z): {e}"
            )
        })?;
    Ok(UnixTime(t.unix_timestamp()))
}

fn read_token(arg: &str) -> anyhow::Result<String> {
    let raw = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the token from stdin")?;
        s
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
    } else {
        arg.to_owned()
    };
    Ok(raw.trim().to_owned())
}

/// What `verify-token` concluded.
pub enum Outcome {
    /// Verified: the identity as JSON.
    Verified(serde_json::Value),
    /// Refused with a stable code and a detail.
    Refused {
        /// The code.
        code: &'static str,
        /// The detail.
        detail: String,
    },
    /// With `--explain`: what an upload with the token would meet.
    Explained(Box<Explanation>),
}

/// Runs `verify-token`.
///
/// # Errors
/// For usage problems (unreadable files, bad time); a refused token is an `Ok(Refused)`.
/// With `--explain`, also when no explanation can be given (the issuer's keys cannot be
/// fetched); a token that fails a check is an `Ok(Explained)` saying which.
pub async fn run(args: &VerifyTokenArgs) -> anyhow::Result<Outcome> {
    let at = args.at.as_deref().map(parse_time).transpose()?;
    // The keys file is read before the token is looked at, so that a file that cannot be
    // used is reported as such, never as a refusal of the token.
    let jwks = args.jwks.as_deref().map(read_jwks).transpose()?;
    let raw = read_token(&args.token)?;
    let now = at.unwrap_or_else(|| UnixTime(time::OffsetDateTime::now_utc().unix_timestamp()));
    let Settings {
        audience,
        keys: keys_source,
        leeway,
        policy,
        rules,
        replay_protection,
        require_action,
        repository_file,
    } = settings(args, jwks)?;
    let issuers = match &keys_source {
        Keys::Fixed { issuer, .. } => vec![issuer.clone()],
        Keys::Fetched(issuers) => issuers.iter().map(|i| i.issuer.clone()).collect(),
    };
    let verifier = Verifier::new(VerifierConfig {
        issuers,
        audience,
        leeway_seconds: leeway,
        policy,
    });
    if args.explain {
        let keys = match keys_source {
            Keys::Fixed { issuer, set } => KeyCache::fixed([(issuer, set)])?,
            Keys::Fetched(issuers) => KeyCache::new(&issuers, KeyCacheConfig::default())?,
        };
        let mut explanation =
            explain_offline(verifier, keys, rules, replay_protection, &raw, at).await?;
        offline_limits(
            &mut explanation,
            require_action.as_deref(),
            repository_file.as_deref(),
        );
        return Ok(Outcome::Explained(Box::new(explanation)));
    }
    let token = match UnverifiedToken::parse(&raw) {
        Ok(t) => t,
        Err(e) => return Ok(refused(&e)),
    };
    let issuer = match verifier.precheck(&token) {
        Ok(i) => i.to_owned(),
        Err(e) => return Ok(refused(&e)),
    };
    let keys: Arc<KeySet> = match keys_source {
        Keys::Fixed { set, .. } => Arc::new(set),
        Keys::Fetched(issuers) => {
            let cache = KeyCache::new(&issuers, KeyCacheConfig::default())?;
            match cache
                .keys_for(&issuer, token.kid().unwrap_or_default())
                .await
            {
                Ok(k) => k,
                Err(KeyError::Unavailable { reason, .. }) => {
                    return Ok(Outcome::Refused {
                        code: "upstream_unavailable",
                        detail: reason,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    match verifier.verify(token, &keys, now) {
        Ok(v) => Ok(Outcome::Verified(serde_json::to_value(&v.identity)?)),
        Err(e) => Ok(refused(&e)),
    }
}

/// Where the keys come from: the `--jwks` file (its one issuer trusted), or the
/// configuration's issuers.
enum Keys {
    Fixed { issuer: String, set: KeySet },
    Fetched(Vec<IssuerConfig>),
}

/// What a token is checked against, from `--config` or the flags.
struct Settings {
    audience: String,
    keys: Keys,
    leeway: i64,
    policy: Policy,
    rules: Vec<TrustRule>,
    replay_protection: bool,
    /// `[policy] require_action`, when set: not checked offline.
    require_action: Option<String>,
    /// `[policy] repository_file`, when set: not read offline.
    repository_file: Option<String>,
}

/// The settings of `args`, with the keys of `--jwks` already read; refuses flags that
/// would be ignored or contradict the configuration.
fn settings(args: &VerifyTokenArgs, jwks: Option<KeySet>) -> anyhow::Result<Settings> {
    let Some(path) = &args.config else {
        let Some(set) = jwks else {
            bail!(
                "give --jwks FILE (the issuer's keys, checked offline) or --config FILE (a runproof configuration: its audience, issuers and policy)"
            );
        };
        let audience = args.audience.clone().context(
            "give --audience: the audience the token must carry (or --config FILE, whose `[oidc] audience` is used)",
        )?;
        let issuer = args.issuer.clone().unwrap_or_else(|| GITHUB_ISSUER.into());
        return Ok(Settings {
            audience,
            keys: Keys::Fixed { issuer, set },
            leeway: 60,
            policy: Policy::default(),
            rules: Vec::new(),
            replay_protection: true,
            require_action: None,
            repository_file: None,
        });
    };
    let shown = path.display();
    if let Some(issuer) = &args.issuer
        && jwks.is_none()
    {
        bail!(
            "--issuer `{issuer}` names the issuer whose keys --jwks holds, and there is no --jwks: with --config alone, the issuers of {shown} are trusted and their keys fetched; give --jwks FILE too, or drop --issuer"
        );
    }
    let resolved = config::resolve(config::load(Some(path))?)?;
    if let Some(audience) = &args.audience
        && *audience != resolved.audience
    {
        bail!(
            "--audience `{audience}` is not the `[oidc] audience` of {shown} (`{}`), the only audience a server with it accepts: drop --audience to check against the configuration, or drop --config to check another audience",
            resolved.audience
        );
    }
    let configured: Vec<IssuerConfig> = resolved
        .oidc
        .issuers
        .iter()
        .map(|i| IssuerConfig {
            issuer: i.issuer.clone(),
            jwks_url: i.jwks_url.clone(),
        })
        .collect();
    let keys = match jwks {
        None => Keys::Fetched(configured),
        Some(set) => {
            let issuer = match (&args.issuer, configured.as_slice()) {
                (Some(issuer), _) => issuer.clone(),
                (None, [only]) => only.issuer.clone(),
                (None, _) => GITHUB_ISSUER.to_owned(),
            };
            if !configured.iter().any(|i| i.issuer == issuer) {
                let names: Vec<String> = configured
                    .iter()
                    .map(|i| format!("`{}`", i.issuer))
                    .collect();
                bail!(
                    "the keys of --jwks are taken as those of `{issuer}`, which is not an issuer of {shown} ({}): give --issuer with one of them",
                    names.join(", ")
                );
            }
            Keys::Fixed { issuer, set }
        }
    };
    Ok(Settings {
        audience: resolved.audience,
        keys,
        leeway: resolved.oidc.leeway_seconds,
        policy: resolved.config.policy.checks(),
        rules: resolved.config.policy.rules,
        replay_protection: resolved.oidc.replay_protection,
        require_action: non_empty(&resolved.config.policy.require_action),
        repository_file: non_empty(&resolved.config.policy.repository_file),
    })
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Says which checks an offline explanation cannot make. The repository's rules live on
/// the server (set through its API, or read from `repository_file` with the App's
/// credentials), so offline they are not checked. A required Action needs the App's
/// credentials to read the workflow: offline it is not checked either, and fails, so that
/// an explanation never says `allowed` of a token the server would refuse for it.
fn offline_limits(
    explanation: &mut Explanation,
    require_action: Option<&str>,
    repository_file: Option<&str>,
) {
    if explanation.identity.is_none() {
        return;
    }
    for check in &mut explanation.checks {
        match check.check {
            "repository_rules" if check.ok => {
                check.detail = match repository_file {
                    Some(file) => format!(
                        "not checked offline: each repository's rules (its {file}, or those set through the server's API) are read by the server; POST /v1/policy/explain checks them"
                    ),
                    None => "not checked offline: each repository's rules are set through the server's API; POST /v1/policy/explain checks them".to_owned(),
                };
            }
            "action" => {
                if let Some(action) = require_action {
                    check.ok = false;
                    check.detail = format!(
                        "not checked offline: require_action = {action} reads the calling workflow with the App's credentials; POST /v1/policy/explain checks it"
                    );
                }
            }
            _ => {}
        }
    }
    explanation.allowed = explanation.checks.iter().all(|c| c.ok);
}

fn refused(e: &runproof_core::VerifyError) -> Outcome {
    Outcome::Refused {
        code: e.code().as_str(),
        detail: e.to_string(),
    }
}

/// Reads the `--jwks` file: at most one byte more than a JWKS may hold, so that a huge
/// file is refused as too large without being read whole.
fn read_jwks(path: &std::path::Path) -> anyhow::Result<KeySet> {
    let cannot_read = || format!("cannot read the JWKS file {}", path.display());
    let file = std::fs::File::open(path).with_context(cannot_read)?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(runproof_core::keys::MAX_JWKS_BYTES).unwrap_or(u64::MAX);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(cannot_read)?;
    KeySet::from_jwks_json(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a JWKS (a JSON object whose `keys` hold the issuer's RS256 public keys): {e}",
            path.display()
        )
    })
}

/// Explains `raw` through [`runproof_service::explain::explain`] on a service of its own:
/// an in-memory store, these keys and rules, and no App credentials.
async fn explain_offline(
    verifier: Verifier,
    keys: KeyCache,
    rules: Vec<TrustRule>,
    replay_protection: bool,
    raw: &str,
    at: Option<UnixTime>,
) -> anyhow::Result<Explanation> {
    let store = SqliteStore::open("sqlite::memory:")
        .await
        .context("cannot open an in-memory database")?;
    // Nothing is written: the blob store is there because a service has one.
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let blobs = LocalBlobStore::open(dir.path())
        .await
        .context("cannot open a temporary blob directory")?;
    let service = Service::builder(verifier, Arc::new(keys), Arc::new(store), Arc::new(blobs))
        .settings(ServiceSettings {
            replay_protection,
            ..ServiceSettings::default()
        })
        .trust_rules(rules)
        .build()
        .await
        .context("cannot start the service")?;
    explain(&service, raw, at)
        .await
        .map_err(|e| anyhow::anyhow!("no explanation can be given: {e}"))
}

/// An explanation as a table: whether an upload would be allowed, every check (`ok` or
/// `FAIL`, and its detail), then every rule (its layer, name, whether it matched, and each
/// mismatch as `field: expected … got …`).
#[must_use]
pub fn render(explanation: &Explanation) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut out = format!("allowed: {}\n\n", yes_no(explanation.allowed));
    let checks: Vec<[String; 3]> = explanation
        .checks
        .iter()
        .map(|c| {
            [
                c.check.to_owned(),
                if c.ok { "ok" } else { "FAIL" }.to_owned(),
                c.detail.clone(),
            ]
        })
        .collect();
    table(&mut out, ["check", "ok", "detail"], &checks);
    out.push('\n');
    if explanation.rules.is_empty() {
        out.push_str("rules: none\n");
        return out;
    }
    let mut rows = Vec::new();
    for rule in &explanation.rules {
        let name = if rule.name.is_empty() {
            "(unnamed)".to_owned()
        } else {
            rule.name.clone()
        };
        let mut first = [
            rule.layer.as_str().to_owned(),
            name,
            yes_no(rule.matched).to_owned(),
            String::new(),
        ];
        let mut mismatches = rule.mismatches.iter().map(|m| {
            format!(
                "{}: expected {} got {}",
                m.field,
                m.expected.join(", "),
                m.actual.as_deref().unwrap_or("(none)")
            )
        });
        if let Some(m) = mismatches.next() {
            first[3] = m;
        }
        rows.push(first);
        for m in mismatches {
            rows.push([String::new(), String::new(), String::new(), m]);
        }
    }
    table(&mut out, ["layer", "rule", "matched", "mismatches"], &rows);
    out
}

/// Appends `rows` under `head`, each column as wide as its widest cell but the last.
fn table<const N: usize>(out: &mut String, head: [&str; N], rows: &[[String; N]]) {
    let mut widths = head.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(head);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
}
