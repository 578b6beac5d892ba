//! The `runproof` binary.
#![forbid(unsafe_code)]

use std::io::IsTerminal as _;
#[cfg(feature = "dev")]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[cfg(feature = "dev")]
use anyhow::Context;
use clap::{CommandFactory as _, Parser, Subcommand};
#[cfg(feature = "dev")]
use runproof::demo;
use runproof::verify_token::{Outcome, VerifyTokenArgs};
use runproof::{config, serve, verify_token};
use runproof_client::{
    Auth, GithubTokenAuth, PendingClaim, TokenSource, UploadOptions, UploadStatus, log_lines_safe,
    log_safe, upload_all_report, wait_for_outcome, write_github_files,
};

/// Prove that an upload comes from a real GitHub Actions run.
#[derive(Debug, Parser)]
#[command(name = "runproof", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum UploadMode {
    /// The job's OIDC token (needs `permissions: id-token: write`).
    Oidc,
    /// The run's `GITHUB_TOKEN`, checked with GitHub (weaker; see the threat model).
    GithubToken,
    /// No credentials: held pending until GitHub vouches for the run (the server's
    /// webhook mode; weakest, see the threat model).
    Pending,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// The configuration file (TOML).
        #[arg(long, env = "RUNPROOF_CONFIG")]
        config: Option<PathBuf>,
        /// Run with a built-in fake GitHub on loopback and print what a client needs.
        #[cfg(feature = "dev")]
        #[arg(long)]
        dev: bool,
    },
    /// Upload files from a GitHub Actions job, proving the run with the job's OIDC token
    /// (default), its GITHUB_TOKEN (`--mode github-token`) or GitHub's word on the run
    /// (`--mode pending`).
    Upload {
        /// The runproof server's URL.
        #[arg(long, env = "RUNPROOF_URL")]
        url: String,
        /// The audience to request. When absent it is asked from the server, and accepted only
        /// when its host is the server's.
        #[arg(long, env = "RUNPROOF_AUDIENCE")]
        audience: Option<String>,
        /// The directory the files must be under; each upload is named by its path relative
        /// to it (`/`-separated). Default: the working directory.
        #[arg(long)]
        base: Option<PathBuf>,
        /// Attempts per file, the first included.
        #[arg(long, default_value_t = 5)]
        attempts: usize,
        /// Per-request read timeout, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Never show a progress bar.
        #[arg(long)]
        no_progress: bool,
        /// How to prove the run: `oidc` (default), `github-token` or `pending`.
        #[arg(long, value_enum, default_value_t = UploadMode::Oidc, env = "RUNPROOF_MODE")]
        mode: UploadMode,
        /// With `--mode pending`: wait until each upload is verified, rejected or expired,
        /// and exit non-zero unless all are verified.
        #[arg(long)]
        wait: bool,
        /// The longest `--wait` waits, in seconds.
        #[arg(long, default_value_t = 600)]
        wait_timeout: u64,
        /// The files: regular files under the base directory, reached without a symlink.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the whole story once on embedded defaults, with hostile requests, and exit.
    #[cfg(feature = "dev")]
    Demo,
    /// Verify one token and print its run identity or the code that refuses it.
    VerifyToken(VerifyTokenArgs),
}

fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a person at a terminal: a log file or collector gets plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Upload {
        wait: true, mode, ..
    } = &cli.command
        && *mode != UploadMode::Pending
    {
        let mut cli = Cli::command();
        cli.build();
        let mut upload = cli.find_subcommand("upload").cloned().unwrap_or(cli);
        upload
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "`--wait` needs `--mode pending`: only pending uploads are waited for (`oidc` and `github-token` uploads are verified when sent)",
            )
            .exit();
    }
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", log_lines_safe(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            config,
            #[cfg(feature = "dev")]
            dev,
        } => {
            let cfg = config::load(config.as_deref())?;
            init_logging(cfg.log_format == "json", "info");
            #[cfg(feature = "dev")]
            if dev {
                return run_dev(cfg).await;
            }
            let resolved = config::resolve(cfg)?;
            let data_dir = &resolved.config.data_dir;
            let data_dir_was_missing = !data_dir.exists();
            let state = serve::build_state(&resolved).await?;
            if data_dir_was_missing && data_dir.exists() {
                tracing::info!(
                    data_dir = %data_dir.display(),
                    "data_dir did not exist and was created: starting with empty storage"
                );
            }
            if resolved.api_keys.is_empty() {
                tracing::warn!(
                    "no API keys are configured (api_keys, api_keys_file): the read API (GET /v1/uploads) refuses every request"
                );
            }
            if state.service().binding().is_some() {
                tracing::info!(
                    "installation binding is on: only repositories where the App is installed are accepted"
                );
            } else {
                tracing::warn!(
                    "installation binding is OFF: no [github] App credentials are configured, so any repository on GitHub that requests a token for this audience is accepted (narrow it with [policy] allowed_repository_owner_ids)"
                );
            }
            if state.config().webhook_secrets.is_empty() {
                tracing::info!(
                    "no webhook secret is configured: POST /v1/github/webhooks refuses every delivery"
                );
            }
            if state.service().modes().contains(&"github_token") {
                tracing::warn!(
                    "the github_token mode is on: it is weaker than OIDC (see docs/threat-model.md)"
                );
            }
            let server = serve::RunningServer::start(state, resolved.config.listen).await?;
            tracing::info!(
                listen = %server.addr,
                audience = %resolved.audience,
                issuers = ?resolved.oidc.issuers.iter().map(|i| &i.issuer).collect::<Vec<_>>(),
                "runproof listening"
            );
            serve::shutdown_signal().await;
            server.stop().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upload {
            url,
            audience,
            base,
            attempts,
            timeout,
            no_progress,
            mode,
            wait,
            wait_timeout,
            files,
        } => {
            init_logging(false, "warn");
            let auth = match mode {
                UploadMode::Oidc => Auth::Oidc(TokenSource::from_env()?),
                UploadMode::GithubToken => Auth::GithubToken(GithubTokenAuth::from_env()?),
                UploadMode::Pending => Auth::Pending(PendingClaim::from_env()?),
            };
            let opts = UploadOptions {
                url,
                audience,
                base,
                files,
                attempts: attempts.max(1),
                timeout: Duration::from_secs(timeout.max(1)),
                progress: !no_progress,
            };
            let report = upload_all_report(&opts, &auth).await;
            write_github_files(&report.uploaded)?;
            for u in &report.uploaded {
                println!("{}", u.id);
            }
            if let Some(e) = report.error {
                return Err(e.into());
            }
            if mode == UploadMode::Pending {
                return pending_outcome(&opts.url, &report.uploaded, wait, wait_timeout).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "dev")]
        Command::Demo => {
            init_logging(false, "warn");
            Ok(if demo::run().await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::VerifyToken(args) => match verify_token::run(&args).await? {
            Outcome::Verified(identity) => {
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&identity)?);
                } else {
                    print_identity(&identity);
                }
                Ok(ExitCode::SUCCESS)
            }
            Outcome::Refused { code, detail } => {
                if args.json {
                    println!("{}", serde_json::json!({ "code": code, "detail": detail }));
                } else {
                    println!("{code}: {detail}");
                }
                Ok(ExitCode::FAILURE)
            }
            Outcome::Explained(explanation) => {
                if args.json {
                    println!("{}", serde_json::to_string(&explanation)?);
                } else {
                    print!("{}", verify_token::render(&explanation));
                }
                Ok(if explanation.allowed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        },
    }
}

/// Prints where pending uploads stand, waiting for their outcome with `--wait`. Exits 1
/// when one is rejected or expired, or, with `--wait`, still pending at the timeout.
async fn pending_outcome(
    url: &str,
    uploaded: &[runproof_client::Uploaded],
    wait: bool,
    wait_timeout: u64,
) -> anyhow::Result<ExitCode> {
    let mut statuses: Vec<UploadStatus> = uploaded
        .iter()
        .map(|u| UploadStatus {
            id: u.id.clone(),
            status: u.status.clone(),
            reason: u.reason.clone(),
        })
        .collect();
    if wait && statuses.iter().any(|s| s.status == "pending") {
        eprintln!(
            "waiting up to {wait_timeout} s for GitHub to vouch for the run of {} upload(s)",
            statuses.len()
        );
        let http = runproof_client::http_client(Duration::from_secs(30))?;
        let ids: Vec<String> = statuses.iter().map(|s| s.id.clone()).collect();
        statuses = wait_for_outcome(
            &http,
            url,
            &ids,
            Duration::from_secs(wait_timeout),
            Duration::from_secs(1),
        )
        .await?;
    }
    let mut ok = true;
    for s in &statuses {
        match &s.reason {
            Some(reason) => eprintln!("{}: {} ({})", s.id, s.status, log_safe(reason)),
            None => eprintln!("{}: {}", s.id, s.status),
        }
        ok &= !s.failed() && (!wait || s.status == "verified");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_identity(identity: &serde_json::Value) {
    if let Some(map) = identity.as_object() {
        for (k, v) in map {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            println!("{k:<20} {v}");
        }
    }
}

#[cfg(feature = "dev")]
async fn run_dev(cfg: config::Config) -> anyhow::Result<ExitCode> {
    let listen: SocketAddr = cfg.listen;
    let data_dir = cfg.data_dir.clone();
    let env = demo::start_dev(data_dir.clone(), listen, Some(cfg))
        .await
        .context("cannot start the dev environment")?;
    demo::banner::prepare(&env, &data_dir)?;
    print!(
        "{}",
        demo::banner::banner(&env, &data_dir, &demo::banner::program())
    );
    serve::shutdown_signal().await;
    env.server.stop().await?;
    env.github.shutdown();
    Ok(ExitCode::SUCCESS)
}
