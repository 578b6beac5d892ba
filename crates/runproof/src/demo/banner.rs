//! What `runproof serve --dev` prints: where the server is, its secrets, and the commands
//! that upload in each mode.
//!
//! Every indented line of the banner is a command, and together they run as printed, in
//! one shell, from the directory the server was started in: the program is named as that
//! directory reaches it, and the file they upload is written into the data directory.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::env::{DEV_APP_ID, DEV_INSTALLATION, DevEnvironment};

/// The file the banner's commands upload, written into the data directory.
pub const EXAMPLE_FILE: &str = "example.json";

/// Readies the dev environment for the banner's commands: writes the example file into
/// `data_dir`, and makes the fake GitHub's Actions API know the banner's run, so that the
/// webhook mode's upload is vouched for by GitHub's API when the server asks.
///
/// # Errors
/// When the example file cannot be written.
pub fn prepare(env: &DevEnvironment, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let file = data_dir.join(EXAMPLE_FILE);
    std::fs::write(&file, "{\"hello\": \"runproof\"}\n")
        .with_context(|| format!("cannot write {}", file.display()))?;
    env.github
        .add_workflow_run(&env.github.run(), "in_progress", None);
    Ok(file)
}

/// How a shell in the current directory runs this binary: `runproof` when it is the one
/// on `PATH`, else its path relative to the current directory when it is under it, else
/// its absolute path; quoted for a POSIX shell when needed.
pub fn program() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "runproof".to_owned();
    };
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let exe = canonical(&exe).unwrap_or(exe);
    if let Some(paths) = std::env::var_os("PATH") {
        let on_path = std::env::split_paths(&paths)
            .filter(|dir| dir.is_absolute())
            .find_map(|dir| canonical(&dir.join("runproof")));
        if on_path.as_deref() == Some(exe.as_path()) {
            return "runproof".to_owned();
        }
    }
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| canonical(&cwd))
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf));
    let shown = match relative {
        // A bare name would be looked up on PATH.
        Some(rel) if rel.components().count() == 1 => Path::new(".").join(rel),
        Some(rel) => rel,
        None => exe,
    };
    shell_quote(&shown.to_string_lossy())
}

/// `s` as one word of a POSIX shell: as is when it has only safe characters, else in
/// single quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The banner: the server's URL and secrets, then the commands of each mode, indented.
/// `program` runs this binary (see [`program`]); `data_dir` holds [`EXAMPLE_FILE`].
pub fn banner(env: &DevEnvironment, data_dir: &Path, program: &str) -> String {
    let url = env.server.url();
    let audience = env.state.service().verifier().config().audience.clone();
    let run = env.github.run();
    let github_token = env.github.issue_github_token(
        &[(run.repository_id, &run.repository)],
        run.repository_owner_id,
    );
    let base = shell_quote(&data_dir.to_string_lossy());
    let file = shell_quote(&data_dir.join(EXAMPLE_FILE).to_string_lossy());
    let upload = format!("{program} upload --url {url} --base {base}");
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "runproof dev server on {url} (data in {})",
        data_dir.display()
    ));
    line(format!("fake GitHub issuer:   {}", env.github.issuer()));
    line(format!("audience:             {audience}"));
    line(format!("read API key:         {}", env.api_key));
    line(format!(
        "console:              {url}/ui/ (sign in with the read API key)"
    ));
    line(format!("webhook secret:       {}", env.webhook_secret));
    line(format!(
        "GitHub App id:        {DEV_APP_ID} (installation {DEV_INSTALLATION} on {})",
        run.repository
    ));
    line(String::new());
    line("Each indented line runs as printed, in one shell, from this directory.".to_owned());
    line("A client uploads like an Actions job (OIDC), the file is verified at once:".to_owned());
    line(format!(
        "  export ACTIONS_ID_TOKEN_REQUEST_URL='{}'",
        env.github.token_request_url()
    ));
    line(format!(
        "  export ACTIONS_ID_TOKEN_REQUEST_TOKEN='{}'",
        env.github.token_request_token()
    ));
    line(format!("  {upload} --audience {audience} {file}"));
    line(String::new());
    line("The github_token mode, as a runner sets it up:".to_owned());
    line(format!(
        "  export GITHUB_TOKEN='{github_token}' GITHUB_REPOSITORY='{}' GITHUB_REPOSITORY_ID='{}' GITHUB_RUN_ID='{}' GITHUB_RUN_ATTEMPT='{}' GITHUB_SHA='{}'",
        run.repository, run.repository_id, run.run_id, run.run_attempt, run.sha
    ));
    line(format!("  {upload} --mode github-token {file}"));
    line(String::new());
    line(
        "The webhook mode, with the same GITHUB_* variables: no credentials, so the upload is held"
            .to_owned(),
    );
    line(
        "pending until GitHub vouches for its run, by a signed workflow_run webhook or when the"
            .to_owned(),
    );
    line(format!(
        "server asks GitHub's API. This fake GitHub's API knows run {} of {}, so it is",
        run.run_id, run.repository
    ));
    line("verified at once, and --wait prints `<id>: verified`:".to_owned());
    line(format!("  {upload} --mode pending --wait {file}"));
    line(String::new());
    line("What the App reads (the read API):".to_owned());
    line(format!(
        "  curl -sS -H 'Authorization: Bearer {}' '{url}/v1/uploads?status=verified'",
        env.api_key
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(
            shell_quote("target/debug/runproof"),
            "target/debug/runproof"
        );
        assert_eq!(shell_quote("./runproof-data"), "./runproof-data");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
