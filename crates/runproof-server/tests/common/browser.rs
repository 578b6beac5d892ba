//! Headless Chromium driven through chromedriver (Debian's `chromium` and
//! `chromium-driver`), for the console's browser tests.
//!
//! Without a browser a test says it was not run and passes, except under `CI=true`, where
//! a missing browser fails it. `RUNPROOF_TEST_CHROMIUM` and `RUNPROOF_TEST_CHROMEDRIVER`
//! name the binaries when they are not `/usr/bin/chromium` and `chromedriver` on `PATH`.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;
use thirtyfour::{ChromiumLikeCapabilities, Cookie};

/// How long chromedriver may take to say which port it listens on.
const DRIVER_START: Duration = Duration::from_secs(20);
/// How long a test waits for an element or a page to appear.
pub const WAIT: Duration = Duration::from_secs(20);

/// The browser's arguments: headless, without the sandbox (CI containers run as root)
/// or `/dev/shm` (often tiny there), and a fixed window so screenshots are alike.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// A chromedriver child process, killed when dropped.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session against one server.
pub struct Browser {
    // Dropped before the driver process: a session not quit is ended while its
    // chromedriver still answers.
    pub driver: Option<WebDriver>,
    _chromedriver: Chromedriver,
    /// The server's base URL (`http://127.0.0.1:port`), prefixed to paths.
    pub base: String,
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn binary(var: &str, default: &str, names: &[&str]) -> Option<PathBuf> {
    // A variable that is set decides, also when it names nothing (then: missing).
    if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    if Path::new(default).is_file() {
        return Some(PathBuf::from(default));
    }
    names.iter().find_map(|n| find_on_path(n))
}

/// The browser and its driver, or `None` after saying which is missing (a failure with
/// `CI=true`).
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    let chromium = binary(
        "RUNPROOF_TEST_CHROMIUM",
        "/usr/bin/chromium",
        &["chromium", "chromium-browser"],
    );
    let driver = binary(
        "RUNPROOF_TEST_CHROMEDRIVER",
        "/usr/bin/chromedriver",
        &["chromedriver"],
    );
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let missing = match (c, d) {
                (None, None) => "chromium and chromedriver are",
                (None, _) => "chromium is",
                _ => "chromedriver is",
            };
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{missing} missing (Debian: chromium, chromium-driver), and with CI=true the \
                 browser tests must run"
            );
            println!(
                "browser tests not run: {missing} missing (apt-get install chromium chromium-driver)"
            );
            None
        }
    }
}

/// Starts chromedriver on a port of its choosing and reads that port from its first
/// lines, within [`DRIVER_START`].
async fn start_chromedriver(path: &Path) -> Chromedriver {
    let mut child = Command::new(path)
        .arg("--port=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<u16, String>>();
    // Reads every line to the end, so that chromedriver never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut seen = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = tx.take_if(|_| line.contains("started successfully on port")) {
                let port = line
                    .rsplit("port ")
                    .next()
                    .and_then(|p| p.trim().trim_end_matches('.').parse::<u16>().ok());
                let _ = tx.send(port.ok_or_else(|| format!("no port in {line:?}")));
            } else if tx.is_some() {
                seen.push_str(&line);
                seen.push('\n');
            }
        }
        if let Some(tx) = tx {
            let _ = tx.send(Err(format!("chromedriver ended: {seen}")));
        }
    });
    let mut driver = Chromedriver { child, port: 0 };
    match tokio::time::timeout(DRIVER_START, rx).await {
        Ok(Ok(Ok(port))) => driver.port = port,
        Ok(Ok(Err(e))) => panic!("chromedriver did not start: {e}"),
        Ok(Err(_)) => panic!("chromedriver did not start: its output ended"),
        Err(_) => panic!("chromedriver did not name its port within {DRIVER_START:?}"),
    }
    driver
}

impl Browser {
    /// A headless Chromium against `base`, or `None` when the browser is missing (said,
    /// or a failure with `CI=true`).
    pub async fn start(base: &str) -> Option<Self> {
        let (chromium, chromedriver) = binaries()?;
        let process = start_chromedriver(&chromedriver).await;
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(&chromium.to_string_lossy()).unwrap();
        for arg in CHROMIUM_ARGS {
            caps.add_arg(arg).unwrap();
        }
        let driver = tokio::time::timeout(
            Duration::from_secs(60),
            WebDriver::new(format!("http://127.0.0.1:{}", process.port), caps),
        )
        .await
        .expect("a browser session within 60 s")
        .expect("a browser session");
        Some(Self {
            driver: Some(driver),
            _chromedriver: process,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The session.
    pub fn d(&self) -> &WebDriver {
        self.driver.as_ref().unwrap()
    }

    /// Ends the session and the browser.
    pub async fn quit(mut self) {
        if let Some(d) = self.driver.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), d.quit()).await;
        }
    }

    /// Opens `path` (absolute, or relative to the server's base).
    pub async fn open(&self, path: &str) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        self.d().goto(&url).await.unwrap();
    }

    /// The path (and query) the browser shows.
    pub async fn path(&self) -> String {
        let url = self.d().current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The first element matching `css`, waiting (bounded) for it to appear.
    pub async fn find(&self, css: &str) -> WebElement {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.d().find(By::Css(css)).await {
                Ok(e) => return e,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    let path = self.path().await;
                    panic!("no `{css}` on {path}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Every element matching `css` now (perhaps none).
    pub async fn find_all(&self, css: &str) -> Vec<WebElement> {
        self.d().find_all(By::Css(css)).await.unwrap()
    }

    /// Whether an element matches `css` now.
    pub async fn has(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// An attribute of the first element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.attr(name).await.unwrap()
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Types `text` into the first element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css).await.send_keys(text).await.unwrap();
    }

    /// Waits (bounded) until the browser's path starts with `prefix`.
    pub async fn wait_path(&self, prefix: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let path = self.path().await;
            if path.starts_with(prefix) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the browser stayed on {path}, not {prefix}…"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs in to the console with `key` through its form, and waits to leave the form.
    pub async fn sign_in(&self, key: &str) {
        self.open("/ui/sign-in").await;
        self.type_into("form#sign-in input[name=key]", key).await;
        self.click("form#sign-in button[type=submit]").await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.path().await.starts_with("/ui/sign-in") {
            if self.has("p.error").await {
                panic!("sign-in refused: {}", self.text("p.error").await);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sign-in did not leave the form"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The console's session cookie, when the browser holds one.
    pub async fn session_cookie(&self) -> Option<Cookie> {
        self.d().get_named_cookie("runproof_console").await.ok()
    }

    /// Writes a PNG of the whole page (up to 2,400 pixels high) to `path`: the window is
    /// made as tall as the page for the picture, then set back.
    pub async fn screenshot(&self, path: &Path) {
        let d = self.d();
        let rect = d.get_window_rect().await.unwrap();
        let page: i64 = d
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .unwrap()
            .convert()
            .unwrap();
        let inner: i64 = d
            .execute("return window.innerHeight", vec![])
            .await
            .unwrap()
            .convert()
            .unwrap();
        let height = (page + (rect.height - inner)).clamp(rect.height, 2400);
        let (width, height, before) = (
            u32::try_from(rect.width).unwrap(),
            u32::try_from(height).unwrap(),
            u32::try_from(rect.height).unwrap(),
        );
        d.set_window_rect(rect.x, rect.y, width, height)
            .await
            .unwrap();
        let png = d.screenshot_as_png().await;
        d.set_window_rect(rect.x, rect.y, width, before)
            .await
            .unwrap();
        std::fs::write(path, png.unwrap()).unwrap();
    }

    /// Checks that the page created no element from outsiders' text and ran no script:
    /// no alert is open, no `img` is found, and the DOM holds no `img` or `script`.
    /// `Err` says what was found. An alert found is dismissed.
    pub async fn inert(&self) -> Result<(), String> {
        // Checked first: while an alert is open, other commands fail.
        match self.d().get_alert_text().await {
            Ok(text) => {
                let _ = self.d().dismiss_alert().await;
                return Err(format!("an alert opened: {text:?}"));
            }
            Err(e) if matches!(&*e, WebDriverErrorInner::NoSuchAlert(_)) => {}
            Err(e) => return Err(format!("asking for an alert failed: {e}")),
        }
        let imgs = self
            .d()
            .find_all(By::Css("img"))
            .await
            .map_err(|e| format!("find_all(img) failed: {e}"))?;
        if !imgs.is_empty() {
            return Err(format!("{} img element(s) on the page", imgs.len()));
        }
        let n = self
            .d()
            .execute(
                "return document.querySelectorAll('img,script').length",
                vec![],
            )
            .await
            .map_err(|e| format!("execute failed: {e}"))?
            .convert::<u64>()
            .map_err(|e| format!("execute answered oddly: {e}"))?;
        if n != 0 {
            return Err(format!("{n} img or script element(s) in the DOM"));
        }
        Ok(())
    }
}
