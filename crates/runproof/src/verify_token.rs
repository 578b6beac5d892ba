//! `runproof verify-token`: verify one token offline (with a JWKS file) or against a
//! configuration's issuers, and print the identity or the stable code.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use runproof_core::policy::Policy;
use runproof_core::{KeySet, UnixTime, UnverifiedToken, Verifier, VerifierConfig};
use runproof_github::{IssuerConfig, KeyCache, KeyCacheConfig, KeyError};

use crate::config::{self, GITHUB_ISSUER};

/// The `verify-token` arguments.
#[derive(Debug, clap::Args)]
pub struct VerifyTokenArgs {
    /// A JWKS file holding the issuer's keys (offline verification).
    #[arg(long, conflicts_with = "config")]
    pub jwks: Option<PathBuf>,
    /// A runproof config: its issuers (keys fetched from them), leeway and policy.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The issuer to accept (with --jwks); github.com's by default.
    #[arg(long)]
    pub issuer: Option<String>,
    /// The audience to require.
    #[arg(long)]
    pub audience: String,
    /// Verify as of this time: unix seconds or RFC 3339. Now by default.
    #[arg(long)]
    pub at: Option<String>,
    /// Print the identity as JSON.
    #[arg(long)]
    pub json: bool,
    /// The token, `-` for standard input, or `@FILE`.
    pub token: String,
}

fn parse_time(s: &str) -> anyhow::Result<UnixTime> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(UnixTime(secs));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--at `{s}` is neither unix seconds nor RFC 3339"))?;
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
}

/// Runs `verify-token`.
///
/// # Errors
/// For usage problems (unreadable files, bad time); a refused token is an `Ok(Refused)`.
pub async fn run(args: &VerifyTokenArgs) -> anyhow::Result<Outcome> {
    let raw = read_token(&args.token)?;
    let now = match &args.at {
        Some(at) => parse_time(at)?,
        None => UnixTime(time::OffsetDateTime::now_utc().unix_timestamp()),
    };
    let (issuers, leeway, policy, keys_source) = if let Some(path) = &args.config {
        let resolved = config::resolve(config::load(Some(path))?)?;
        let issuers: Vec<IssuerConfig> = resolved
            .oidc
            .issuers
            .iter()
            .map(|i| IssuerConfig {
                issuer: i.issuer.clone(),
                jwks_url: i.jwks_url.clone(),
            })
            .collect();
        let names = issuers.iter().map(|i| i.issuer.clone()).collect();
        (
            names,
            resolved.oidc.leeway_seconds,
            resolved.config.policy.checks(),
            Some(issuers),
        )
    } else {
        if args.jwks.is_none() {
            bail!("give --jwks FILE or --config FILE");
        }
        let issuer = args.issuer.clone().unwrap_or_else(|| GITHUB_ISSUER.into());
        (vec![issuer], 60, Policy::default(), None)
    };
    let verifier = Verifier::new(VerifierConfig {
        issuers,
        audience: args.audience.clone(),
        leeway_seconds: leeway,
        policy,
    });
    let token = match UnverifiedToken::parse(&raw) {
        Ok(t) => t,
        Err(e) => return Ok(refused(&e)),
    };
    let issuer = match verifier.precheck(&token) {
        Ok(i) => i.to_owned(),
        Err(e) => return Ok(refused(&e)),
    };
    let keys: Arc<KeySet> = match (&args.jwks, keys_source) {
        (Some(path), _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Arc::new(
                KeySet::from_jwks_json(&bytes)
                    .with_context(|| format!("{} is not a usable JWKS", path.display()))?,
            )
        }
        (None, Some(issuers)) => {
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
        (None, None) => bail!("give --jwks FILE or --config FILE"),
    };
    match verifier.verify(token, &keys, now) {
        Ok(v) => Ok(Outcome::Verified(serde_json::to_value(&v.identity)?)),
        Err(e) => Ok(refused(&e)),
    }
}

fn refused(e: &runproof_core::VerifyError) -> Outcome {
    Outcome::Refused {
        code: e.code().as_str(),
        detail: e.to_string(),
    }
}
