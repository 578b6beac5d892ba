//! Real `runproof serve` processes for the crash, fault, load and replica harnesses, started
//! through [`runproof_testkit::process`] (which the load example uses too).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use runproof_testkit::process::{ServerCommand, ServerProcess, loopback_url};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_runproof");
/// How long `/healthz` is polled for before a start counts as failed.
const HEALTHY_WITHIN: Duration = Duration::from_secs(10);
/// How long `/readyz` is polled for before a replica counts as failed.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A running server; SIGKILLed on drop.
pub(crate) struct Server {
    process: ServerProcess,
    pub(crate) base: String,
}

impl Server {
    /// Starts `runproof serve --config <config>` on `port` and waits (bounded) for `/healthz`.
    pub(crate) async fn start(config: &Path, port: u16, log: &Path) -> Self {
        Self::start_command(ServerCommand::serve(BIN, config), port, log).await
    }

    /// As [`Server::start`], under `strace -f` writing the calls `syscalls` to `trace`, each
    /// file descriptor shown with its path. The child is strace; see [`Server::stop_traced`].
    pub(crate) async fn start_traced(
        config: &Path,
        port: u16,
        log: &Path,
        trace: &Path,
        syscalls: &str,
    ) -> Self {
        let cmd = ServerCommand::new("strace")
            .args(["-f", "--seccomp-bpf", "-qq", "-yy", "-s", "4096"])
            .args(["-e", "signal=none", "-e"])
            .arg(format!("trace={syscalls}"))
            .arg("-o")
            .arg(trace)
            .arg("--")
            .arg(BIN)
            .args(["serve", "--config"])
            .arg(config);
        Self::start_command(cmd, port, log).await
    }

    /// SIGKILLs the traced server, then waits (bounded) for strace to finish its trace.
    pub(crate) fn stop_traced(&mut self) {
        let Some(pid) = self.process.pid() else {
            return;
        };
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for server in children.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", server]).status();
        }
        let finished = self.process.wait_exit(Duration::from_secs(30)).unwrap();
        self.process.kill();
        if finished.is_none() {
            panic!("strace did not finish within 30 s");
        }
    }

    async fn start_command(cmd: ServerCommand, port: u16, log: &Path) -> Self {
        let mut process = cmd
            .env("NO_PROXY", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .stderr_append(log)
            .spawn()
            .unwrap();
        let base = loopback_url(port);
        if let Err(e) = process
            .wait_ready(&client(), &format!("{base}/healthz"), HEALTHY_WITHIN)
            .await
        {
            panic!("server did not come up: {e}");
        }
        Self { process, base }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.process.pid().expect("the server is running")
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill9(&mut self) {
        self.process.kill();
    }
}

/// Runs `runproof serve --config <config>`, stderr to `log`, until it exits by itself, at
/// most `limit`: its exit status, or `None` if it kept running (it is then killed).
pub(crate) fn serve_until_exit(config: &Path, log: &Path, limit: Duration) -> Option<ExitStatus> {
    let mut process = ServerCommand::serve(BIN, config)
        .stderr_to(log)
        .spawn()
        .unwrap();
    process.wait_exit(limit).unwrap()
}

/// One of several `runproof serve --config <dir>/<name>.toml` processes sharing storage
/// (`RUNPROOF_*` and `AWS_*` not inherited); SIGKILLed on drop.
pub(crate) struct Replica {
    pub(crate) name: String,
    pub(crate) url: String,
    process: ServerProcess,
}

impl Replica {
    /// Starts `runproof serve --config <dir>/<name>.toml`, data in `<dir>/<name>`, log in
    /// `<dir>/<name>.log`; does not wait for it.
    pub(crate) fn spawn(dir: &Path, name: &str, config: &str) -> Self {
        let port = free_port();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = '{}'\n{config}",
                dir.join(name).display()
            ),
        )
        .unwrap();
        let process = ServerCommand::serve(BIN, &path)
            .env("RUST_LOG", "info")
            .without_env_prefix("RUNPROOF_")
            .without_env_prefix("AWS_")
            .stderr_to(dir.join(format!("{name}.log")))
            .spawn()
            .expect("runproof serve starts");
        Self {
            name: name.to_owned(),
            url: loopback_url(port),
            process,
        }
    }

    /// Waits for `/readyz` to answer 200: storage open, migrated and writable.
    pub(crate) async fn await_ready(&mut self, http: &reqwest::Client) {
        let url = format!("{}/readyz", self.url);
        if let Err(e) = self.process.wait_ready(http, &url, READY_WITHIN).await {
            panic!("replica {} was not ready: {e}", self.name);
        }
    }

    /// SIGKILL: no graceful shutdown, nothing flushed.
    pub(crate) fn kill(&mut self) {
        self.process.kill();
    }

    /// The last `lines` lines of its log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// A loopback-only HTTP client.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    runproof_testkit::process::free_port().unwrap()
}

/// Writes a config serving `issuer` with `audience` and `api_key`, data in `data`.
pub(crate) fn write_config(
    dir: &Path,
    port: u16,
    data: &Path,
    issuer: &str,
    audience: &str,
    api_key: &str,
    extra: &str,
) -> PathBuf {
    let config = format!(
        r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
api_keys = ["{api_key}"]
max_upload_bytes = 1048576
{extra}
[oidc]
audience = "{audience}"
[[oidc.issuers]]
issuer = "{issuer}"
"#,
        data = data.display(),
    );
    let file = dir.join(format!("runproof-{port}.toml"));
    std::fs::write(&file, config).unwrap();
    file
}

/// A small xorshift generator: reproducible from the printed seed, no dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn from_time() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        Self(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// Every record of the read API, following cursors (bounded).
pub(crate) async fn list_all(
    http: &reqwest::Client,
    base: &str,
    api_key: &str,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut url = format!("{base}/v1/uploads?limit=1000");
        if let Some(c) = &cursor {
            let c: String = url::form_urlencoded::byte_serialize(c.as_bytes()).collect();
            url.push_str(&format!("&cursor={c}"));
        }
        let v: serde_json::Value = http
            .get(url)
            .bearer_auth(api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(v["uploads"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("too many pages");
}

/// The sha256 of `bytes`, hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `VmHWM` (peak RSS, KiB) and the number of open fds of `pid`.
pub(crate) fn rss_and_fds(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (hwm, fds)
}

/// Every record of the read API with this `status`, following cursors (bounded).
pub(crate) async fn list_status(
    http: &reqwest::Client,
    base: &str,
    api_key: &str,
    status: &str,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut url = format!("{base}/v1/uploads?limit=1000&status={status}");
        if let Some(c) = &cursor {
            let c: String = url::form_urlencoded::byte_serialize(c.as_bytes()).collect();
            url.push_str(&format!("&cursor={c}"));
        }
        let v: serde_json::Value = http
            .get(url)
            .bearer_auth(api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(v["uploads"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("too many pages");
}

/// A schema of its own in the test database, dropped on drop (after the servers using it).
pub(crate) struct Schema {
    pub(crate) url: String,
    pub(crate) name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        use sqlx::Connection as _;

        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                )))
                .execute(&mut admin)
                .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop schema {}: {dropped:?}", self.name);
        }
    }
}
