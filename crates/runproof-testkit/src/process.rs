//! A real server process, started the same way by the integration tests and the load
//! tool: [`ServerCommand`] says what to run, [`ServerProcess`] is the running child.
//!
//! The child's stdin is closed, its stderr goes to a log file (kept for the caller to read
//! after a failure), and its stdout is discarded, written to a file or read line by line.
//! Readiness is a bounded poll of a loopback URL that also notices an early exit. Stopping
//! is SIGTERM, then SIGKILL after a grace period; dropping a [`ServerProcess`] kills and
//! reaps the child, so a failed test leaks no process.
//!
//! The binary is an argument: this module knows nothing of runproof's CLI, and the testkit
//! does not depend on the binary's crate. It depends on the standard library, tokio's
//! timer and reqwest only. SIGTERM is sent with the system's `kill` command, which keeps
//! the crate free of `unsafe`; without one, [`ServerProcess::stop`] ends in SIGKILL.
//! Unix only (`/proc` and signals are what the callers measure and send).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(20);
/// How often the readiness URL is requested.
const READY_POLL: Duration = Duration::from_millis(50);
/// Lines of the log quoted in an error.
const LOG_TAIL_LINES: usize = 40;

/// What can go wrong while starting, waiting for or stopping a server process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// No free loopback port could be found.
    #[error("no free port on 127.0.0.1")]
    Port(#[source] io::Error),
    /// A log or output file could not be created.
    #[error("cannot create {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The program could not be started.
    #[error("cannot run {}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The process exited before it was ready.
    #[error("the server exited with {status} before it was ready; its log ends:\n{log_tail}")]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The readiness URL did not answer 2xx in time.
    #[error("{url} did not answer 2xx within {waited:?}; the server's log ends:\n{log_tail}")]
    NotReady {
        /// The URL polled.
        url: String,
        /// How long it was polled.
        waited: Duration,
        /// The last lines of its log.
        log_tail: String,
    },
    /// No line came on stdout in time, or stdout was closed (or not piped).
    #[error("no line on the server's stdout within {waited:?}")]
    NoOutput {
        /// How long it was awaited.
        waited: Duration,
    },
    /// The process has already been stopped.
    #[error("the server process has already been stopped")]
    Stopped,
    /// Waiting on the child failed.
    #[error("cannot wait for the server process")]
    Wait(#[source] io::Error),
}

/// A free port on `127.0.0.1` (free when asked: the caller binds it soon after).
///
/// # Errors
///
/// [`ProcessError::Port`] when no loopback socket can be bound.
pub fn free_port() -> Result<u16, ProcessError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(ProcessError::Port)
}

/// `http://127.0.0.1:<port>`.
pub fn loopback_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Where a child's output goes.
#[derive(Debug, Clone)]
enum Sink {
    Null,
    /// Created (truncated).
    Create(PathBuf),
    /// Created if missing, appended to: a server restarted on the same log.
    Append(PathBuf),
    /// Stdout only: read line by line through [`ServerProcess::stdout_line`].
    Lines,
}

impl Sink {
    fn stdio(&self) -> Result<Stdio, ProcessError> {
        let open = |path: &Path, append: bool| {
            let mut options = OpenOptions::new();
            options.create(true);
            if append {
                options.append(true);
            } else {
                options.write(true).truncate(true);
            }
            options.open(path).map_err(|source| ProcessError::File {
                path: path.to_owned(),
                source,
            })
        };
        Ok(match self {
            Self::Null => Stdio::null(),
            Self::Create(path) => open(path, false)?.into(),
            Self::Append(path) => open(path, true)?.into(),
            Self::Lines => Stdio::piped(),
        })
    }

    fn path(&self) -> Option<&Path> {
        match self {
            Self::Create(path) | Self::Append(path) => Some(path),
            Self::Null | Self::Lines => None,
        }
    }
}

/// What to run: a program (the server binary, or a wrapper such as `strace` with the
/// binary among its arguments), its arguments, environment and output.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    program: PathBuf,
    args: Vec<OsString>,
    /// Prefixes of inherited variables to remove, applied before [`Self::env`]'s.
    remove_prefixes: Vec<String>,
    env: Vec<(OsString, OsString)>,
    /// The working directory; the caller's when `None`.
    dir: Option<PathBuf>,
    stdout: Sink,
    stderr: Sink,
}

impl ServerCommand {
    /// `program` with no arguments; stdout and stderr discarded.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            remove_prefixes: Vec::new(),
            env: Vec::new(),
            dir: None,
            stdout: Sink::Null,
            stderr: Sink::Null,
        }
    }

    /// `<bin> serve --config <config>`.
    pub fn serve(bin: impl Into<PathBuf>, config: &Path) -> Self {
        Self::new(bin).args(["serve", "--config"]).arg(config)
    }

    /// One more argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the child.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Does not pass on inherited variables whose name starts with `prefix` (such as
    /// `RUNPROOF_`, which would override the config file). Variables set with
    /// [`Self::env`] are kept whatever their name.
    #[must_use]
    pub fn without_env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.remove_prefixes.push(prefix.into());
        self
    }

    /// Runs the child in `dir` rather than the caller's working directory.
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Writes stderr to `path`, created or truncated.
    #[must_use]
    pub fn stderr_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.stderr = Sink::Create(path.into());
        self
    }

    /// Appends stderr to `path`: a server restarted keeps one log.
    #[must_use]
    pub fn stderr_append(mut self, path: impl Into<PathBuf>) -> Self {
        self.stderr = Sink::Append(path.into());
        self
    }

    /// Writes stdout to `path`, created or truncated.
    #[must_use]
    pub fn stdout_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.stdout = Sink::Create(path.into());
        self
    }

    /// Keeps stdout for [`ServerProcess::stdout_line`]. It is drained for the life of the
    /// process, so a chatty child never blocks on a full pipe.
    #[must_use]
    pub fn stdout_lines(mut self) -> Self {
        self.stdout = Sink::Lines;
        self
    }

    /// Starts the process. It does not wait for it to be ready.
    ///
    /// # Errors
    ///
    /// [`ProcessError::File`] when a log file cannot be created, [`ProcessError::Spawn`]
    /// when the program cannot be run.
    pub fn spawn(self) -> Result<ServerProcess, ProcessError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(self.stdout.stdio()?)
            .stderr(self.stderr.stdio()?);
        if !self.remove_prefixes.is_empty() {
            for (key, _) in std::env::vars_os() {
                let name = key.to_string_lossy();
                if self.remove_prefixes.iter().any(|p| name.starts_with(p)) {
                    cmd.env_remove(&key);
                }
            }
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let lines = child.stdout.take().map(|stdout| {
            let (tx, rx) = mpsc::channel();
            // Ends when the pipe closes, that is when the child is gone.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Ok(ServerProcess {
            child: Some(child),
            log: self.stderr.path().map(Path::to_owned),
            lines,
        })
    }
}

/// A running server process. Dropping it kills (SIGKILL) and reaps the child.
#[derive(Debug)]
pub struct ServerProcess {
    /// `None` once stopped or killed.
    child: Option<Child>,
    /// Where stderr goes, if to a file.
    log: Option<PathBuf>,
    /// Stdout's lines, if kept.
    lines: Option<mpsc::Receiver<String>>,
}

impl ServerProcess {
    /// The process id, until the process is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file stderr goes to.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The whole log so far (empty when there is none).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(file) = self.log.as_ref().and_then(|p| File::open(p).ok()) else {
            return String::new();
        };
        let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status, if the process has exited.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Stopped`] once stopped, [`ProcessError::Wait`] if waiting fails.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        self.child
            .as_mut()
            .ok_or(ProcessError::Stopped)?
            .try_wait()
            .map_err(ProcessError::Wait)
    }

    /// Polls `url` (on loopback) until it answers 2xx, at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Exited`] if the process exits first, [`ProcessError::NotReady`]
    /// when time runs out, [`ProcessError::Stopped`] or [`ProcessError::Wait`].
    pub async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        url: &str,
        timeout: Duration,
    ) -> Result<(), ProcessError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                return Err(ProcessError::Exited {
                    status,
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                });
            }
            // Bounded by what is left, whatever the client's own timeout.
            let left = timeout.saturating_sub(started.elapsed()).max(READY_POLL);
            if let Ok(Ok(resp)) = tokio::time::timeout(left, http.get(url).send()).await
                && resp.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(ProcessError::NotReady {
                    url: url.to_owned(),
                    waited: started.elapsed(),
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// The next line of stdout (kept with [`ServerCommand::stdout_lines`]), waiting at
    /// most `timeout`. Blocks the thread.
    ///
    /// # Errors
    ///
    /// [`ProcessError::NoOutput`] on timeout, when stdout is closed or was not kept.
    pub fn stdout_line(&self, timeout: Duration) -> Result<String, ProcessError> {
        let waited = timeout;
        self.lines
            .as_ref()
            .ok_or(ProcessError::NoOutput { waited })?
            .recv_timeout(timeout)
            .map_err(|_| ProcessError::NoOutput { waited })
    }

    /// Waits at most `timeout` for the process to exit by itself; `None` if it has not
    /// (it keeps running). Blocks the thread.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Stopped`] or [`ProcessError::Wait`].
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Graceful stop: SIGTERM, then SIGKILL if the process is still running after
    /// `grace`; reaps it either way. Returns how it exited when it did so by itself within
    /// `grace`, `None` when it had to be killed or was already stopped. Blocks the thread.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Wait`] if waiting fails (the child is killed and reaped still).
    pub fn stop(&mut self, grace: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let Some(pid) = self.pid() else {
            return Ok(None);
        };
        if matches!(self.try_wait(), Ok(None)) {
            // Without a `kill` command there is no SIGTERM; SIGKILL follows the grace.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let exited = self.wait_exit(grace);
        self.kill();
        exited
    }

    /// SIGKILL: no graceful shutdown, nothing flushed. Reaps the child.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> ServerCommand {
        ServerCommand::new("sh").args(["-c", script])
    }

    #[test]
    fn stdout_lines_arrive_and_env_is_set_and_filtered() {
        // Cargo sets CARGO_PKG_NAME for the test process: the prefix removes it, but not a
        // variable the command sets itself.
        let proc = sh("echo \"a=$CARGO_PKG_RP_TEST\"; echo \"b=${CARGO_PKG_NAME:+set}\"")
            .without_env_prefix("CARGO_PKG_")
            .env("CARGO_PKG_RP_TEST", "1")
            .stdout_lines()
            .spawn()
            .unwrap();
        let second = Duration::from_secs(10);
        assert_eq!(proc.stdout_line(second).unwrap(), "a=1");
        assert_eq!(proc.stdout_line(second).unwrap(), "b=");
        assert!(matches!(
            proc.stdout_line(second),
            Err(ProcessError::NoOutput { .. })
        ));
    }

    #[test]
    fn stop_is_sigterm_then_sigkill_and_stderr_is_logged() {
        let dir = std::env::temp_dir().join(format!("rp-process-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        // Exits 0 on SIGTERM.
        let mut polite =
            sh("trap 'echo bye >&2; exit 0' TERM; echo up >&2; while :; do sleep 0.05; done")
                .stderr_to(&log)
                .spawn()
                .unwrap();
        let up = Instant::now();
        while !polite.log().contains("up") {
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "the child never wrote"
            );
            std::thread::sleep(POLL);
        }
        let status = polite.stop(Duration::from_secs(10)).unwrap();
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        assert_eq!(polite.log_tail(1), "bye");
        assert_eq!(polite.pid(), None);
        assert!(matches!(polite.try_wait(), Err(ProcessError::Stopped)));

        // Ignores SIGTERM: killed after the grace period.
        let mut stubborn = sh("trap '' TERM; echo up >&2; while :; do sleep 0.05; done")
            .stderr_append(&log)
            .spawn()
            .unwrap();
        let up = Instant::now();
        while stubborn.log().matches("up").count() < 2 {
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "the child never wrote"
            );
            std::thread::sleep(POLL);
        }
        assert_eq!(stubborn.stop(Duration::from_millis(300)).unwrap(), None);
        assert!(stubborn.log().starts_with("up\nbye\n"), "appended");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn drop_kills_and_reaps() {
        let proc = sh("sleep 60").spawn().unwrap();
        let pid = proc.pid().unwrap();
        drop(proc);
        // Reaped: no zombie left under our pid namespace entry.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[tokio::test]
    async fn readiness_notices_an_early_exit_and_times_out() {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let port = free_port().unwrap();
        let url = format!("{}/healthz", loopback_url(port));

        let mut gone = sh("exit 3").spawn().unwrap();
        let err = gone
            .wait_ready(&http, &url, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProcessError::Exited { status, .. } if status.code() == Some(3)),
            "{err}"
        );

        let mut silent = sh("sleep 60").spawn().unwrap();
        let err = silent
            .wait_ready(&http, &url, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::NotReady { .. }), "{err}");
    }

    #[tokio::test]
    async fn readiness_is_a_2xx_on_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut proc = sh("sleep 60").spawn().unwrap();
        proc.wait_ready(
            &http,
            &format!("{}/healthz", loopback_url(port)),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        server.abort();
    }

    #[test]
    fn spawn_names_a_missing_program() {
        let err = ServerCommand::new("/nonexistent/runproof")
            .spawn()
            .unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/runproof"), "{err}");
    }
}
