//! Where `runproof serve` keeps its state: the database (`database_url`, `[database]`)
//! and the blob store (`blob_store`, `[s3]`).
//!
//! - `database_url = "sqlite://PATH"` (the default, `<data_dir>/runproof.db`) or
//!   `"postgres://…"` / `"postgresql://…"`. `[database]` sizes the pool and bounds
//!   statements; `[database] schema` puts the tables in a schema of their own (created
//!   when missing), e.g. one per deployment sharing a database.
//! - `blob_store = "file://DIR"` (the default, `<data_dir>`) or `"s3://bucket/prefix"`.
//!   `[s3]` names the endpoint, region and credentials; whatever it leaves out comes from
//!   the usual `AWS_*` variables (and, for credentials, the usual AWS providers).
//!
//! The database URL may hold a password: it is kept as a [`Secret`] and only ever shown
//! without its user information, query and fragment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use runproof_core::Secret;
use runproof_core::UnixTime;
use runproof_store::{
    BlobStore, DatabaseKind, LocalBlobStore, MIN_BUFFER_BYTES, NamespaceError, NamespaceRecord,
    PoolSettings, PostgresOptions, S3BlobStore, Site, Store, bind_namespace, open_store,
};
use serde::Deserialize;

/// `[database]`: pool and statement limits. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Most connections each replica opens (SQLite default 8, PostgreSQL default 16).
    pub max_connections: Option<u32>,
    /// PostgreSQL: the longest a statement may run before the server cancels it
    /// (default 10; 0 disables the limit). Migrations are not limited.
    pub statement_timeout_seconds: Option<u64>,
    /// PostgreSQL: the longest to wait for a connection, at startup too (default 5).
    pub connect_timeout_seconds: Option<u64>,
    /// PostgreSQL: the schema holding runproof's tables, created when missing; the
    /// server's default `search_path` (usually `public`) when absent. `[a-z0-9_]`, 1 to
    /// 63 characters.
    pub schema: Option<String>,
}

/// `[s3]`: how to reach the store `blob_store = "s3://…"` names. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The endpoint, for stores other than AWS (`https://minio.internal:9000`);
    /// `AWS_ENDPOINT_URL` otherwise.
    pub endpoint: Option<String>,
    /// The region; `AWS_REGION` / `AWS_DEFAULT_REGION` otherwise (then `us-east-1`).
    pub region: Option<String>,
    /// The access key id; `AWS_ACCESS_KEY_ID` otherwise.
    pub access_key_id: Option<String>,
    /// The secret access key; `AWS_SECRET_ACCESS_KEY` otherwise.
    pub secret_access_key: Option<Secret>,
    /// A file holding the secret access key (its first line).
    pub secret_access_key_file: Option<PathBuf>,
    /// Allows a plain `http://` endpoint (loopback test servers).
    pub allow_http: bool,
    /// The most memory the part buffers of all uploads in progress hold together, in
    /// bytes (default 256 MiB, at least 16 MiB); past it, parts go to temporary files.
    pub max_buffer_bytes: Option<u64>,
    /// Where those temporary files go (default: the system's temporary directory).
    pub spill_dir: Option<PathBuf>,
}

/// Where the database is and how to use it.
pub struct Database {
    /// The backend its URL names.
    pub kind: DatabaseKind,
    url: Secret,
    /// Pool size, timeouts and schema, as the store takes them; `None` keeps the store's
    /// default.
    pub pool: PoolSettings,
}

impl Database {
    /// The URL, with its credentials: pass it to the store only.
    #[must_use]
    pub fn url(&self) -> &str {
        self.url.expose()
    }

    /// The URL as it may be shown: no user, password, query or fragment.
    #[must_use]
    pub fn display_url(&self) -> String {
        redact_url(self.url.expose())
    }

    /// How long each connection attempt waits (PostgreSQL).
    fn connect_timeout(&self) -> Duration {
        self.pool
            .connect_timeout
            .unwrap_or(PostgresOptions::default().acquire_timeout)
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("kind", &self.kind)
            .field("url", &self.display_url())
            .field("pool", &self.pool)
            .finish()
    }
}

/// Where blobs live.
#[derive(Debug, Clone)]
pub enum BlobLocation {
    /// A local directory (`file://…` or `data_dir`).
    Local(PathBuf),
    /// An S3-compatible bucket (`s3://bucket/prefix`). `Debug` hides the secret key.
    S3(runproof_store::S3Config),
}

impl BlobLocation {
    /// `file://DIR` or `s3://bucket/prefix`.
    #[must_use]
    pub fn display(&self) -> String {
        match self {
            Self::Local(dir) => format!("file://{}", dir.display()),
            Self::S3(c) if c.prefix.is_empty() => format!("s3://{}", c.bucket),
            Self::S3(c) => format!("s3://{}/{}", c.bucket, c.prefix),
        }
    }

    /// What the database records as its blob store: a local directory by its absolute
    /// path (once it exists), a bucket with its endpoint when one is configured.
    #[must_use]
    pub fn identity(&self) -> String {
        match self {
            Self::Local(dir) => {
                let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
                format!("file://{}", dir.display())
            }
            Self::S3(c) => match &c.endpoint {
                Some(endpoint) => format!("{} at {endpoint}", self.display()),
                None => self.display(),
            },
        }
    }
}

/// The resolved storage of a server.
#[derive(Debug)]
pub struct Storage {
    /// The database.
    pub database: Database,
    /// The blobs.
    pub blobs: BlobLocation,
}

/// Checks `database_url`, `blob_store`, `[database]` and `[s3]`, with `data_dir` for the
/// defaults.
///
/// # Errors
/// A message naming the key at fault (never quoting a password).
pub fn resolve(
    data_dir: &Path,
    database_url: Option<&str>,
    blob_store: Option<&str>,
    database: &DatabaseConfig,
    s3: Option<&S3Config>,
) -> anyhow::Result<Storage> {
    let url = match database_url {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", data_dir.join("runproof.db").display()),
    };
    // The store checks the URL and, when opening, the schema; this only names the key.
    let kind = DatabaseKind::of_url(&url).map_err(|e| anyhow::anyhow!("`database_url`: {e}"))?;
    // The store would open one connection instead: refused, as a value that cannot mean
    // what it says.
    if database.max_connections == Some(0) {
        bail!("`database.max_connections` must be at least 1");
    }
    let database = Database {
        kind,
        url: Secret::new(url),
        pool: PoolSettings {
            max_connections: database.max_connections,
            statement_timeout: database.statement_timeout_seconds.map(Duration::from_secs),
            connect_timeout: database
                .connect_timeout_seconds
                .map(|s| Duration::from_secs(s.max(1))),
            schema: database.schema.clone(),
        },
    };
    let blobs = match blob_store {
        None => BlobLocation::Local(data_dir.to_path_buf()),
        Some(url) if url.starts_with("file://") => match url.strip_prefix("file://") {
            Some(path) if !path.is_empty() => BlobLocation::Local(PathBuf::from(path)),
            _ => bail!("`blob_store`: a file:// URL needs a path, e.g. file:///var/lib/runproof"),
        },
        Some(url) if url.starts_with("s3://") => {
            let mut config = runproof_store::S3Config::from_url(url)
                .map_err(|e| anyhow::anyhow!("`blob_store`: {e}"))?;
            if let Some(s3) = s3 {
                config.endpoint.clone_from(&s3.endpoint);
                config.region.clone_from(&s3.region);
                config.access_key_id.clone_from(&s3.access_key_id);
                config.secret_access_key.clone_from(&s3.secret_access_key);
                if let Some(file) = &s3.secret_access_key_file {
                    if config.secret_access_key.is_some() {
                        bail!(
                            "`s3.secret_access_key` and `s3.secret_access_key_file` are both set"
                        );
                    }
                    let text = std::fs::read_to_string(file).with_context(|| {
                        format!(
                            "`s3.secret_access_key_file`: cannot read {}",
                            file.display()
                        )
                    })?;
                    let key = text.lines().next().unwrap_or_default().trim();
                    if key.is_empty() {
                        bail!("`s3.secret_access_key_file`: {} is empty", file.display());
                    }
                    config.secret_access_key = Some(Secret::new(key.to_owned()));
                }
                config.allow_http = s3.allow_http;
                // The store refuses it too, when opening, but cannot name the key.
                if let Some(bytes) = s3.max_buffer_bytes
                    && bytes < MIN_BUFFER_BYTES
                {
                    bail!(
                        "`s3.max_buffer_bytes` must be at least {MIN_BUFFER_BYTES} (16 MiB: a part being filled and one being sent)"
                    );
                }
                config.max_buffer_bytes = s3.max_buffer_bytes;
                config.spill_dir.clone_from(&s3.spill_dir);
                if let Some(endpoint) = &s3.endpoint {
                    let parsed = url::Url::parse(endpoint)
                        .map_err(|_| anyhow::anyhow!("`s3.endpoint`: not a URL"))?;
                    // An http:// endpoint needs `allow_http`: the store refuses it otherwise.
                    if !matches!(parsed.scheme(), "https" | "http") {
                        bail!(
                            "`s3.endpoint`: expected an https:// URL (or http:// with `s3.allow_http`)"
                        );
                    }
                    if !parsed.username().is_empty() || parsed.password().is_some() {
                        bail!(
                            "`s3.endpoint`: put credentials in `s3.access_key_id` and `s3.secret_access_key`, not in the URL"
                        );
                    }
                }
            }
            BlobLocation::S3(config)
        }
        Some(_) => bail!("`blob_store`: expected file://DIR or s3://bucket/prefix"),
    };
    if s3.is_some() && !matches!(blobs, BlobLocation::S3(_)) {
        bail!("`[s3]` is set but `blob_store` is not an s3:// URL");
    }
    Ok(Storage { database, blobs })
}

/// Opens (creating and migrating when needed) the database. Bounded in time: an
/// unreachable PostgreSQL server fails after `[database] connect_timeout_seconds`.
///
/// # Errors
/// A message naming the database without its credentials.
pub async fn open_database(database: &Database) -> anyhow::Result<Arc<dyn Store>> {
    open_store(database.url(), database.pool.clone()).await.with_context(|| {
        let shown = database.display_url();
        match database.kind {
            DatabaseKind::Postgres => format!(
                "cannot open the PostgreSQL database {shown} (each connection attempt waits up to {} s: `database.connect_timeout_seconds`)",
                database.connect_timeout().as_secs()
            ),
            kind => format!("cannot open the {kind} database {shown}"),
        }
    })
}

/// How long the startup check of an S3 bucket (a write and a delete) may take.
const S3_STARTUP_CHECK: Duration = Duration::from_secs(30);

/// Opens the blob store: a local directory, or an S3 bucket, which must accept a probe
/// write (and its deletion) within 30 seconds.
///
/// # Errors
/// When the directory cannot be created, the S3 configuration is invalid, or the bucket
/// is unreachable or not writable.
pub async fn open_blobs(blobs: &BlobLocation) -> anyhow::Result<Arc<dyn BlobStore>> {
    match blobs {
        BlobLocation::Local(dir) => {
            let store = LocalBlobStore::open(dir)
                .await
                .with_context(|| format!("cannot open blob storage at {}", dir.display()))?;
            Ok(Arc::new(store))
        }
        BlobLocation::S3(config) => {
            let store = S3BlobStore::open(config.clone())
                .await
                .with_context(|| format!("cannot open blob storage at {}", blobs.display()))?;
            // A wrong endpoint, bucket or key is a configuration error: say so at start
            // rather than on the first upload. The client retries, hence the bound.
            match tokio::time::timeout(S3_STARTUP_CHECK, store.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "blob storage at {} is not writable",
                        blobs.display()
                    )));
                }
                Err(_) => bail!(
                    "blob storage at {} did not answer within {} s",
                    blobs.display(),
                    S3_STARTUP_CHECK.as_secs()
                ),
            }
            Ok(Arc::new(store))
        }
    }
}

/// Binds the database and the blob store to each other, or refuses to go on when the blob
/// store belongs to another database (see [`runproof_store::bind_namespace`]): a
/// deployment never runs the collector of unreferenced blobs over another's blobs.
///
/// # Errors
/// When the blob store's marker names another database (the message names both), the
/// database is bound to another blob store and this one has no marker, or either fails.
pub async fn bind(
    storage: &Storage,
    store: &dyn Store,
    blobs: &dyn BlobStore,
) -> anyhow::Result<NamespaceRecord> {
    let site = Site {
        database: storage.database.display_url(),
        schema: storage.database.pool.schema.clone(),
        blob_store: storage.blobs.identity(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let now = UnixTime(i64::try_from(now).unwrap_or(i64::MAX));
    match bind_namespace(store, blobs, &site, now).await {
        Ok(bound) => Ok(bound),
        Err(e @ (NamespaceError::Store(_) | NamespaceError::Blob(_))) => Err(anyhow::Error::new(e)
            .context(format!(
                "cannot bind the database {} to the blob store {}",
                site.database, site.blob_store
            ))),
        Err(e) => Err(anyhow::Error::new(e)),
    }
}

/// A URL without user information, query and fragment (`postgres://db.internal:5432/app`).
#[must_use]
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.has_host() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Ok(url) if url.scheme() == "sqlite" => {
            raw.split(['?', '#']).next().unwrap_or_default().to_owned()
        }
        _ => {
            let scheme = raw.split_once("://").map_or("", |(s, _)| s);
            format!("{scheme}://(unparsable)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(
        url: Option<&str>,
        blobs: Option<&str>,
        db: DatabaseConfig,
        s3: Option<S3Config>,
    ) -> anyhow::Result<Storage> {
        resolve(Path::new("/data"), url, blobs, &db, s3.as_ref())
    }

    #[test]
    fn defaults_are_sqlite_and_local_files_under_data_dir() {
        let s = storage(None, None, DatabaseConfig::default(), None).unwrap();
        assert_eq!(s.database.kind, DatabaseKind::Sqlite);
        assert_eq!(s.database.url(), "sqlite:///data/runproof.db");
        assert!(matches!(&s.blobs, BlobLocation::Local(p) if p == Path::new("/data")));
    }

    #[test]
    fn postgres_and_s3_urls_are_accepted() {
        for url in ["postgres://u:pw@db:5432/app", "postgresql://db/app"] {
            let s = storage(
                Some(url),
                Some("s3://bucket/some/prefix"),
                DatabaseConfig {
                    max_connections: Some(4),
                    statement_timeout_seconds: Some(3),
                    connect_timeout_seconds: Some(2),
                    schema: Some("rp_one".into()),
                },
                Some(S3Config {
                    endpoint: Some("http://127.0.0.1:9000".into()),
                    region: Some("eu-west-1".into()),
                    access_key_id: Some("AKID".into()),
                    secret_access_key: Some(Secret::new("s3cr3t".into())),
                    secret_access_key_file: None,
                    allow_http: true,
                    max_buffer_bytes: Some(64 * 1024 * 1024),
                    spill_dir: Some(PathBuf::from("/var/tmp/runproof")),
                }),
            )
            .unwrap();
            assert_eq!(s.database.kind, DatabaseKind::Postgres);
            assert_eq!(s.database.pool.max_connections, Some(4));
            assert_eq!(
                s.database.pool.statement_timeout,
                Some(Duration::from_secs(3))
            );
            assert_eq!(
                s.database.pool.connect_timeout,
                Some(Duration::from_secs(2))
            );
            let BlobLocation::S3(c) = &s.blobs else {
                panic!("not S3")
            };
            assert_eq!(c.bucket, "bucket");
            assert_eq!(c.prefix, "some/prefix");
            assert_eq!(c.region.as_deref(), Some("eu-west-1"));
            assert!(c.allow_http);
            assert_eq!(c.max_buffer_bytes, Some(64 * 1024 * 1024));
            assert_eq!(c.spill_dir.as_deref(), Some(Path::new("/var/tmp/runproof")));
            let debug = format!("{s:?}");
            assert!(
                !debug.contains("pw") && !debug.contains("s3cr3t"),
                "{debug}"
            );
        }
    }

    #[test]
    fn bad_storage_settings_name_their_key() {
        /// URL, blob store, `[database]`, `[s3]`, what the message must contain.
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            DatabaseConfig,
            Option<S3Config>,
            &'static str,
        );
        let cases: [Case; 7] = [
            (
                Some("mysql://u:pw@db/x"),
                None,
                DatabaseConfig::default(),
                None,
                "`database_url`: invalid value: unsupported database URL scheme \"mysql\"",
            ),
            (
                None,
                None,
                DatabaseConfig {
                    max_connections: Some(0),
                    ..DatabaseConfig::default()
                },
                None,
                "database.max_connections",
            ),
            (
                None,
                Some("gs://bucket"),
                DatabaseConfig::default(),
                None,
                "blob_store",
            ),
            (
                None,
                Some("file://"),
                DatabaseConfig::default(),
                None,
                "blob_store",
            ),
            (
                None,
                Some("s3://"),
                DatabaseConfig::default(),
                None,
                "blob_store",
            ),
            (
                None,
                None,
                DatabaseConfig::default(),
                Some(S3Config::default()),
                "[s3]",
            ),
            (
                None,
                Some("s3://b"),
                DatabaseConfig::default(),
                Some(S3Config {
                    max_buffer_bytes: Some(1024 * 1024),
                    ..S3Config::default()
                }),
                "s3.max_buffer_bytes",
            ),
        ];
        for (url, blobs, db, s3, needle) in cases {
            let err = storage(url, blobs, db, s3).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
    }

    /// An http:// endpoint without `allow_http` is the store's to refuse (no copy of its
    /// rule here): the start stops when opening the blobs, before anything is sent.
    #[tokio::test]
    async fn an_http_endpoint_without_allow_http_fails_opening_the_blobs() {
        let s = storage(
            None,
            Some("s3://b"),
            DatabaseConfig::default(),
            Some(S3Config {
                endpoint: Some("http://minio:9000".into()),
                ..S3Config::default()
            }),
        )
        .unwrap();
        let Err(err) = open_blobs(&s.blobs).await else {
            panic!("an http:// endpoint was accepted without allow_http");
        };
        let err = format!("{err:#}");
        assert!(err.contains("allow_http"), "allow_http: {err}");
    }

    /// The store checks the schema when opening (no copy of its rules here): one set
    /// for SQLite, where it cannot apply, stops the start naming the database.
    #[tokio::test]
    async fn a_schema_for_sqlite_fails_opening_the_database() {
        let dir = tempfile::TempDir::new().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let db = DatabaseConfig {
            schema: Some("rp_one".into()),
            ..DatabaseConfig::default()
        };
        let s = storage(Some(&url), None, db, None).unwrap();
        let Err(err) = open_database(&s.database).await else {
            panic!("a schema was accepted for SQLite");
        };
        let err = format!("{err:#}");
        assert!(
            err.contains("cannot open the SQLite database sqlite://") && err.contains("schema"),
            "{err}"
        );
    }

    #[test]
    fn the_resolved_configuration_never_shows_the_database_password() {
        let resolved = crate::config::from_toml_str(
            "database_url = \"postgres://u:s3cr3t@db/x\"\n[oidc]\naudience = \"https://a.example\"\n",
        )
        .unwrap();
        assert_eq!(resolved.storage.database.url(), "postgres://u:s3cr3t@db/x");
        let debug = format!("{resolved:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("postgres://db/x"), "{debug}");
    }

    /// Issue 11: two deployments with databases of their own (two SQLite files here; two
    /// PostgreSQL schemas alike) and one blob directory deleted each other's blobs. The
    /// second refuses to start, naming both databases.
    #[tokio::test]
    async fn rule_a_second_database_on_the_same_blobs_refuses_to_start() {
        let dir = tempfile::TempDir::new().unwrap();
        let blobs_dir = dir.path().join("shared-blobs");
        let start = |db: &str| {
            let url = format!("sqlite://{}", dir.path().join(db).display());
            let blobs = format!("file://{}", blobs_dir.display());
            async move {
                let storage = storage(Some(&url), Some(&blobs), DatabaseConfig::default(), None)?;
                let store = open_database(&storage.database).await?;
                let blobs = open_blobs(&storage.blobs).await?;
                bind(&storage, &*store, &*blobs).await
            }
        };
        let first = start("first.db").await.unwrap();
        assert_eq!(start("first.db").await.unwrap(), first, "a restart");
        let err = format!("{:#}", start("second.db").await.unwrap_err());
        for needle in [
            "first.db",
            "second.db",
            "shared-blobs",
            "another deployment",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        // The first one still starts.
        assert_eq!(start("first.db").await.unwrap(), first);
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            redact_url("postgres://user:s3cr3t@db.internal:5432/app?sslmode=require&password=x"),
            "postgres://db.internal:5432/app"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/r.db"),
            "sqlite:///var/lib/r.db"
        );
        assert!(!redact_url("postgres://u:s3cr3t@[::1/db").contains("s3cr3t"));
    }
}
