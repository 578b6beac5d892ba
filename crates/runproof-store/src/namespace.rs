//! Which database a blob store belongs to.
//!
//! The collector of unreferenced blobs deletes every old blob that its database has no
//! record of. Two deployments that share a blob store (one directory, one S3 prefix) but
//! not a database (two SQLite files, two PostgreSQL schemas) would therefore delete each
//! other's live blobs. A namespace binds the two ends:
//! - the database records a namespace id (made once, at the first binding) and the blob
//!   store it was bound to (`blob_namespace`, one row);
//! - the blob store holds a marker, `.runproof-namespace`, that names the namespace id and
//!   the database (without credentials) and schema that own it, written only when absent.
//!
//! [`bind_namespace`] runs at start and refuses a blob store whose marker names another
//! namespace, naming both databases; [`check_namespace`] lets the collector act only
//! while the marker still names its own database.

use serde::{Deserialize, Serialize};

use crate::blob::{BlobError, BlobStore};
use crate::error::StoreError;
use crate::model::NamespaceRecord;
use crate::store::Store;
use runproof_core::UnixTime;

/// The name of the marker in a blob store: at the root of its directory or prefix.
pub const MARKER_NAME: &str = ".runproof-namespace";

/// The largest marker read; a larger object is not ours.
pub const MAX_MARKER_BYTES: usize = 4096;

/// The longest database or blob store description kept in a marker, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1024;

/// Reads the namespace recorded in the database. Binds nothing.
pub(crate) const NAMESPACE_SQL: &str =
    "SELECT id, blob_store FROM blob_namespace WHERE singleton = 1";

/// Records namespace `$1` with blob store `$2` at `$3`, unless another namespace is
/// recorded; for the same namespace, records the blob store it is now bound to. The id of
/// a recorded namespace never changes.
pub(crate) const BIND_NAMESPACE_SQL: &str = "INSERT INTO blob_namespace (singleton, id, blob_store, bound_at) VALUES (1, $1, $2, $3) \
     ON CONFLICT (singleton) DO UPDATE SET blob_store = excluded.blob_store, \
     bound_at = excluded.bound_at WHERE blob_namespace.id = excluded.id";

/// Where a server keeps its state, as shown in markers and errors: never credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The database (a URL without user, password or query).
    pub database: String,
    /// The PostgreSQL schema, when one is configured.
    pub schema: Option<String>,
    /// The blob store (`file:///var/lib/runproof`, `s3://bucket/prefix`).
    pub blob_store: String,
}

/// What a blob store's marker says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceMarker {
    /// The namespace id of the database that owns the blob store.
    pub namespace: String,
    /// That database, without credentials.
    pub database: String,
    /// Its schema, if any.
    #[serde(default)]
    pub schema: Option<String>,
}

impl NamespaceMarker {
    /// Parses a marker's bytes.
    ///
    /// # Errors
    /// [`NamespaceError::BadMarker`] when they are not a marker.
    pub fn parse(bytes: &[u8], blob_store: &str) -> Result<Self, NamespaceError> {
        let bad = |reason: String| NamespaceError::BadMarker {
            blob_store: blob_store.to_owned(),
            reason,
        };
        if bytes.len() > MAX_MARKER_BYTES {
            return Err(bad(format!("larger than {MAX_MARKER_BYTES} bytes")));
        }
        let marker: Self = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if marker.namespace.is_empty() {
            return Err(bad("no namespace id".into()));
        }
        Ok(marker)
    }

    fn to_bytes(&self) -> Result<Vec<u8>, NamespaceError> {
        serde_json::to_vec_pretty(self).map_err(|e| NamespaceError::BadMarker {
            blob_store: String::new(),
            reason: e.to_string(),
        })
    }

    /// "`postgres://db/app` (schema `rp_a`)".
    fn owner(&self) -> String {
        describe(&self.database, self.schema.as_deref())
    }
}

fn describe(database: &str, schema: Option<&str>) -> String {
    match schema {
        Some(schema) => format!("{database} (schema {schema})"),
        None => database.to_owned(),
    }
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_DESCRIPTION_CHARS).collect()
}

/// Why a database and a blob store cannot be used together.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NamespaceError {
    /// The blob store's marker names another database: it belongs to another deployment.
    #[error(
        "the blob store {blob_store} belongs to another deployment: its marker names the database {theirs} (namespace {their_id}), but this server's database is {ours} (namespace {our_id}). Give each deployment a blob store (a directory or an S3 prefix) of its own; sharing one would let each delete the other's blobs"
    )]
    Claimed {
        /// The blob store.
        blob_store: String,
        /// The database (and schema) its marker names.
        theirs: String,
        /// The namespace id its marker names.
        their_id: String,
        /// This server's database (and schema).
        ours: String,
        /// This database's namespace id, when it has one.
        our_id: String,
    },
    /// The database is bound to another blob store, and this one has no marker.
    #[error(
        "the database {database} is bound to the blob store {recorded}, but the configured one is {configured}, which has no namespace marker: point `blob_store` back at {recorded}, or, to move the blobs, copy them together with its {MARKER_NAME} file"
    )]
    Unmarked {
        /// This server's database (and schema).
        database: String,
        /// The blob store the database is bound to.
        recorded: String,
        /// The blob store configured now.
        configured: String,
    },
    /// The marker cannot be read as one.
    #[error(
        "the namespace marker {MARKER_NAME} of the blob store {blob_store} is unreadable: {reason}"
    )]
    BadMarker {
        /// The blob store.
        blob_store: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database records no namespace, or the blob store has no marker: nothing binds
    /// them yet (see [`bind_namespace`]).
    #[error("the database and the blob store are not bound to each other yet")]
    NotBound,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// Binds the database and the blob store of `site` to each other, or refuses.
///
/// - Neither bound yet (a new deployment, or one from before namespaces): the database
///   records a new namespace, and the blob store gets a marker naming it.
/// - The marker names this database's namespace: bound. When the database recorded
///   another blob store, the blobs were moved with their marker: it records this one.
/// - The marker names another namespace: [`NamespaceError::Claimed`].
/// - No marker, but the database is bound to another blob store:
///   [`NamespaceError::Unmarked`] (an empty store, or blobs copied without their marker).
///
/// Replicas of one deployment may bind at once: the database keeps the first namespace
/// recorded and the blob store the first marker written, so they agree. Two deployments
/// binding one fresh blob store at the same instant are told apart only where the store
/// writes "only if absent" atomically (local files; S3 and most compatible stores honour
/// `If-None-Match: *`).
///
/// # Errors
/// [`NamespaceError`] as above, or when the database or the blob store fails.
pub async fn bind_namespace(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    site: &Site,
    now: UnixTime,
) -> Result<NamespaceRecord, NamespaceError> {
    let ours = describe(&site.database, site.schema.as_deref());
    // The marker first: a binder records the namespace in the database before it writes
    // the marker, so a marker seen here has its record in the database by the time it is
    // read. (Read the other way round, a replica binding at the same moment could be seen
    // with its marker written and its record not yet: a false claim.)
    let marker = match blobs.read_marker().await? {
        Some(bytes) => Some(NamespaceMarker::parse(&bytes, &site.blob_store)?),
        None => None,
    };
    let recorded = store.namespace().await?;
    let claimed = |marker: NamespaceMarker, our_id: &str| NamespaceError::Claimed {
        blob_store: site.blob_store.clone(),
        theirs: marker.owner(),
        their_id: marker.namespace,
        ours: ours.clone(),
        our_id: our_id.to_owned(),
    };
    match (recorded, marker) {
        (Some(recorded), Some(marker)) if marker.namespace == recorded.id => {
            if recorded.blob_store == site.blob_store {
                return Ok(recorded);
            }
            tracing::info!(
                from = %recorded.blob_store,
                to = %site.blob_store,
                "the blob store moved with its namespace marker"
            );
            Ok(store
                .bind_namespace(&recorded.id, &site.blob_store, now)
                .await?)
        }
        (recorded, Some(marker)) => Err(claimed(
            marker,
            recorded.as_ref().map_or("none yet", |r| r.id.as_str()),
        )),
        (Some(recorded), None) if recorded.blob_store != site.blob_store => {
            Err(NamespaceError::Unmarked {
                database: ours,
                recorded: recorded.blob_store,
                configured: site.blob_store.clone(),
            })
        }
        (recorded, None) => {
            let fresh = uuid::Uuid::new_v4().hyphenated().to_string();
            let id = recorded.map_or(fresh, |r| r.id);
            let recorded = store.bind_namespace(&id, &site.blob_store, now).await?;
            let mine = NamespaceMarker {
                namespace: recorded.id.clone(),
                database: cut(&site.database),
                schema: site.schema.clone(),
            };
            let kept = blobs.claim_marker(&mine.to_bytes()?).await?;
            let kept = NamespaceMarker::parse(&kept, &site.blob_store)?;
            if kept.namespace != recorded.id {
                // Another deployment wrote its marker first.
                return Err(claimed(kept, &recorded.id));
            }
            tracing::info!(
                namespace = %recorded.id,
                blob_store = %site.blob_store,
                "the database and the blob store are bound to each other"
            );
            Ok(recorded)
        }
    }
}

/// Checks, writing nothing, that the database records a namespace and that the blob
/// store's marker names it: what the collector needs before it deletes anything.
///
/// # Errors
/// [`NamespaceError::NotBound`] when either end is missing,
/// [`NamespaceError::Claimed`] when the marker names another namespace, or when the
/// database or the blob store fails.
pub async fn check_namespace(
    store: &dyn Store,
    blobs: &dyn BlobStore,
) -> Result<NamespaceRecord, NamespaceError> {
    let Some(recorded) = store.namespace().await? else {
        return Err(NamespaceError::NotBound);
    };
    let Some(bytes) = blobs.read_marker().await? else {
        return Err(NamespaceError::NotBound);
    };
    let marker = NamespaceMarker::parse(&bytes, &recorded.blob_store)?;
    if marker.namespace != recorded.id {
        return Err(NamespaceError::Claimed {
            blob_store: recorded.blob_store,
            theirs: marker.owner(),
            their_id: marker.namespace,
            ours: "this server's database".into(),
            our_id: recorded.id,
        });
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tempfile::TempDir;

    use super::*;
    use crate::{LocalBlobStore, SqliteStore};

    fn site(database: &str, blob_store: &str) -> Site {
        Site {
            database: database.into(),
            schema: None,
            blob_store: blob_store.into(),
        }
    }

    async fn sqlite(dir: &TempDir, name: &str) -> SqliteStore {
        SqliteStore::open(&format!("sqlite://{}", dir.path().join(name).display()))
            .await
            .unwrap()
    }

    /// Issue 11: two deployments that share a blob store delete each other's blobs. The
    /// second to bind is refused, with both databases named.
    #[tokio::test]
    async fn rule_a_blob_store_belongs_to_one_database() {
        let dir = TempDir::new().unwrap();
        let blobs = LocalBlobStore::open(dir.path().join("blobs"))
            .await
            .unwrap();
        let first = sqlite(&dir, "first.db").await;
        let second = sqlite(&dir, "second.db").await;
        let shared = "file:///srv/shared";
        let now = UnixTime(1_700_000_000);

        let bound = bind_namespace(&first, &blobs, &site("sqlite:///first.db", shared), now)
            .await
            .unwrap();
        // Binding again (a restart) is a no-op.
        let again = bind_namespace(&first, &blobs, &site("sqlite:///first.db", shared), now)
            .await
            .unwrap();
        assert_eq!(again, bound);
        assert_eq!(check_namespace(&first, &blobs).await.unwrap(), bound);

        let err = bind_namespace(&second, &blobs, &site("sqlite:///second.db", shared), now)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, NamespaceError::Claimed { .. }), "{err:?}");
        for needle in [
            "sqlite:///first.db",
            "sqlite:///second.db",
            shared,
            &bound.id,
        ] {
            assert!(message.contains(needle), "{needle}: {message}");
        }
        assert!(matches!(
            check_namespace(&second, &blobs).await,
            Err(NamespaceError::NotBound)
        ));
    }

    #[tokio::test]
    async fn moving_blobs_needs_their_marker() {
        let dir = TempDir::new().unwrap();
        let store = sqlite(&dir, "db").await;
        let old = LocalBlobStore::open(dir.path().join("old")).await.unwrap();
        let now = UnixTime(1_700_000_000);
        let bound = bind_namespace(&store, &old, &site("sqlite:///db", "file:///old"), now)
            .await
            .unwrap();

        // An empty store in its place is refused, and nothing is written to it.
        let empty = LocalBlobStore::open(dir.path().join("empty"))
            .await
            .unwrap();
        let err = bind_namespace(&store, &empty, &site("sqlite:///db", "file:///empty"), now)
            .await
            .unwrap_err();
        assert!(matches!(err, NamespaceError::Unmarked { .. }), "{err}");
        assert!(err.to_string().contains("file:///old"), "{err}");
        assert!(empty.read_marker().await.unwrap().is_none());

        // Blobs copied with their marker: the database follows them.
        std::fs::create_dir_all(dir.path().join("moved")).unwrap();
        std::fs::copy(
            dir.path().join("old").join(MARKER_NAME),
            dir.path().join("moved").join(MARKER_NAME),
        )
        .unwrap();
        let moved = LocalBlobStore::open(dir.path().join("moved"))
            .await
            .unwrap();
        let rebound = bind_namespace(&store, &moved, &site("sqlite:///db", "file:///moved"), now)
            .await
            .unwrap();
        assert_eq!(rebound.id, bound.id);
        assert_eq!(rebound.blob_store, "file:///moved");
        assert_eq!(store.namespace().await.unwrap(), Some(rebound));
    }

    #[tokio::test]
    async fn replicas_binding_at_once_agree() {
        let dir = TempDir::new().unwrap();
        let store: Arc<dyn Store> = Arc::new(sqlite(&dir, "db").await);
        let blobs: Arc<dyn BlobStore> =
            Arc::new(LocalBlobStore::open(dir.path().join("b")).await.unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (store, blobs) = (Arc::clone(&store), Arc::clone(&blobs));
            tasks.spawn(async move {
                bind_namespace(
                    &*store,
                    &*blobs,
                    &site("sqlite:///db", "file:///b"),
                    UnixTime(1),
                )
                .await
                .unwrap()
            });
        }
        let mut ids = std::collections::HashSet::new();
        while let Some(bound) = tasks.join_next().await {
            ids.insert(bound.unwrap().id);
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
    }

    #[test]
    fn markers_are_bounded_and_checked() {
        assert!(NamespaceMarker::parse(&[b' '; MAX_MARKER_BYTES + 1], "x").is_err());
        assert!(NamespaceMarker::parse(b"{}", "x").is_err());
        assert!(NamespaceMarker::parse(b"not json", "x").is_err());
        let marker = NamespaceMarker::parse(
            br#"{"namespace": "n", "database": "postgres://db/app", "schema": "rp_a", "later": 1}"#,
            "x",
        )
        .unwrap();
        assert_eq!(marker.owner(), "postgres://db/app (schema rp_a)");
    }
}
