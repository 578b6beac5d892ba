//! The runproof processes the driver measures, started through
//! [`runproof_testkit::process`] as the integration tests start theirs: a `serve --dev`
//! server, whose URLs and token-request secret are read from its stdout, and a plain
//! `serve --config` replica of the storage comparison. Neither inherits `RUNPROOF_*`
//! variables, which would override its config. Depends on [`crate::cli`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use runproof_testkit::process::{ServerCommand, ServerProcess, free_port, loopback_url};

use crate::cli::Args;

/// The audience every server of the driver expects.
pub(crate) const AUDIENCE: &str = "https://runproof.bench.invalid";
/// How long a server may take to start.
const START_WITHIN: Duration = Duration::from_secs(60);
/// How long a server may take to stop on SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// `runproof serve --dev`: the server, its fake GitHub, and the Actions token endpoint.
pub(crate) struct DevServer {
    process: ServerProcess,
    pub(crate) url: String,
    pub(crate) token_url: String,
    pub(crate) token_secret: String,
    pub(crate) audience: String,
    data_dir: PathBuf,
    config_path: PathBuf,
}

impl DevServer {
    /// Starts `runproof serve --dev` on a free loopback port, data under `work/<name>`.
    pub(crate) fn start(
        args: &Args,
        work: &Path,
        name: &str,
        max_upload_bytes: u64,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let data_dir = work.join(format!("{name}-data"));
        let config_path = work.join(format!("{name}.toml"));
        let data = data_dir.to_str().context("work dir is not UTF-8")?;
        if data.contains('\'') {
            bail!("the work dir must not contain a single quote");
        }
        std::fs::write(
            &config_path,
            format!(
                "listen = \"127.0.0.1:{port}\"\n\
                 data_dir = '{data}'\n\
                 max_upload_bytes = {max_upload_bytes}\n\
                 [oidc]\n\
                 audience = \"{AUDIENCE}\"\n"
            ),
        )?;
        let process = ServerCommand::new(&args.server_bin)
            .args(["serve", "--dev", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", &args.server_log)
            .without_env_prefix("RUNPROOF_")
            .stdout_lines()
            .stderr_to(work.join(format!("{name}-server.log")))
            .spawn()?;
        let mut server = Self {
            process,
            url: String::new(),
            token_url: String::new(),
            token_secret: String::new(),
            audience: String::new(),
            data_dir,
            config_path,
        };
        let deadline = Instant::now() + START_WITHIN;
        while server.url.is_empty()
            || server.token_url.is_empty()
            || server.token_secret.is_empty()
            || server.audience.is_empty()
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = server.process.stdout_line(left) else {
                bail!(
                    "the server did not print its URLs (see {}/{name}-server.log)",
                    work.display()
                );
            };
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("runproof dev server on ") {
                server.url = rest.split_whitespace().next().unwrap_or("").to_owned();
            } else if let Some(rest) = line.strip_prefix("audience:") {
                server.audience = rest.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("export ACTIONS_ID_TOKEN_REQUEST_URL=") {
                server.token_url = rest.trim_matches('\'').to_owned();
            } else if let Some(rest) = line.strip_prefix("export ACTIONS_ID_TOKEN_REQUEST_TOKEN=") {
                server.token_secret = rest.trim_matches('\'').to_owned();
            }
        }
        Ok(server)
    }

    /// The process id (it runs until [`Self::stop`]).
    pub(crate) fn pid(&self) -> u32 {
        self.process.pid().expect("the server runs until stopped")
    }

    /// A `kB` field of `/proc/<pid>/status`, in KiB.
    pub(crate) fn status_kib(&self, field: &str) -> Option<u64> {
        proc_status_kib(self.pid(), field)
    }

    /// SIGTERM (graceful), then SIGKILL after 15 s; removes the data dir and config.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        self.process.stop(STOP_WITHIN)?;
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(&self.config_path);
        Ok(())
    }
}

/// A `kB` field of `/proc/<pid>/status`, in KiB.
pub(crate) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// One `runproof serve --config <dir>/<name>.toml` process, data in `<dir>/<name>-data`,
/// log in `<dir>/<name>.log`; killed on drop.
pub(crate) struct Replica {
    process: ServerProcess,
    pub(crate) url: String,
}

impl Replica {
    /// Starts it with `config` after its `listen` and `data_dir`; does not wait for it.
    pub(crate) fn spawn(args: &Args, dir: &Path, name: &str, config: &str) -> anyhow::Result<Self> {
        let port = free_port()?;
        let path = dir.join(format!("{name}.toml"));
        let data = dir.join(format!("{name}-data"));
        std::fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = '{}'\n{config}",
                data.display()
            ),
        )?;
        let process = ServerCommand::serve(&args.server_bin, &path)
            .env("RUST_LOG", &args.server_log)
            .without_env_prefix("RUNPROOF_")
            .stderr_to(dir.join(format!("{name}.log")))
            .spawn()?;
        Ok(Self {
            process,
            url: loopback_url(port),
        })
    }

    /// Waits (at most 60 s) for `/readyz` to answer 200.
    pub(crate) async fn await_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.url);
        self.process.wait_ready(http, &url, START_WITHIN).await?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub(crate) fn stop(mut self) {
        let _ = self.process.stop(STOP_WITHIN);
    }
}
