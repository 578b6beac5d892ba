//! Local files: a file is uploaded only when it is a regular file under the base directory,
//! reached without a symlink, and the file opened is the file checked.

use std::path::{Component, Path, PathBuf};

use runproof_core::name::UploadName;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use crate::error::{ClientError, FileRefused};

/// A local file checked for upload: a regular file under the base directory, reached without
/// following any symlink. Every open checks that the file opened is the file checked.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// The path as given, for messages.
    pub path: PathBuf,
    /// The upload name: the path relative to the base directory, `/`-separated.
    pub name: String,
    /// The size when checked.
    pub size: u64,
    /// The base directory joined with the name's segments.
    full: PathBuf,
    /// (device, inode) of the file checked, where the platform has them.
    identity: Option<(u64, u64)>,
}

fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        return "directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "device";
        }
    }
    "special file"
}

impl LocalFile {
    /// Checks `path` (relative to the working directory, or absolute) against `base` (an
    /// absolute directory): every component below `base` is looked at without following it,
    /// and must be a directory, the last a regular file.
    ///
    /// # Errors
    /// [`FileRefused`], naming the path.
    pub fn check(base: &Path, path: &Path) -> Result<Self, FileRefused> {
        let io = |source| FileRefused::Io {
            path: path.to_owned(),
            source,
        };
        let cwd = std::env::current_dir().map_err(io)?;
        let base_given = cwd.join(base);
        let base = std::fs::canonicalize(&base_given).map_err(|source| FileRefused::Io {
            path: base_given.clone(),
            source,
        })?;
        let absolute = cwd.join(path);
        let outside = || FileRefused::Outside {
            path: path.to_owned(),
            base: base.clone(),
        };
        let relative = absolute
            .strip_prefix(&base)
            .or_else(|_| absolute.strip_prefix(&base_given))
            .map_err(|_| outside())?;
        let mut full = base.clone();
        let mut segments: Vec<&std::ffi::OsStr> = Vec::new();
        let mut last: Option<std::fs::Metadata> = None;
        for component in relative.components() {
            if let Some(meta) = &last
                && !meta.is_dir()
                && !matches!(component, Component::CurDir)
            {
                return Err(FileRefused::NotRegular {
                    path: path.to_owned(),
                    kind: "path through a file",
                });
            }
            match component {
                Component::CurDir => {}
                Component::ParentDir => {
                    if segments.pop().is_none() {
                        return Err(outside());
                    }
                    full.pop();
                    last = Some(std::fs::symlink_metadata(&full).map_err(io)?);
                }
                Component::Normal(segment) => {
                    segments.push(segment);
                    full.push(segment);
                    let meta = std::fs::symlink_metadata(&full).map_err(io)?;
                    if meta.file_type().is_symlink() {
                        return Err(FileRefused::Symlink {
                            path: path.to_owned(),
                            link: full,
                        });
                    }
                    last = Some(meta);
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside()),
            }
        }
        let meta = match last {
            Some(meta) if !segments.is_empty() => meta,
            _ => {
                return Err(FileRefused::NotRegular {
                    path: path.to_owned(),
                    kind: "directory",
                });
            }
        };
        if !meta.is_file() {
            return Err(FileRefused::NotRegular {
                path: path.to_owned(),
                kind: kind_of(meta.file_type()),
            });
        }
        let mut parts = Vec::with_capacity(segments.len());
        for segment in &segments {
            parts.push(segment.to_str().ok_or_else(|| FileRefused::BadName {
                path: path.to_owned(),
                reason: "it is not valid UTF-8".into(),
            })?);
        }
        let name = parts.join("/");
        UploadName::parse(&name).map_err(|e| FileRefused::BadName {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_owned(),
            name,
            size: meta.len(),
            full,
            identity: identity(&meta),
        })
    }

    /// Opens the file without following a symlink in its last component (and without
    /// blocking on a FIFO), and checks that it is the regular file that was checked.
    ///
    /// # Errors
    /// [`FileRefused`] when it is no longer that file.
    pub fn open(&self) -> Result<std::fs::File, FileRefused> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        }
        let file = options.open(&self.full).map_err(|source| {
            #[cfg(unix)]
            if source.raw_os_error() == Some(libc::ELOOP) {
                return FileRefused::Symlink {
                    path: self.path.clone(),
                    link: self.full.clone(),
                };
            }
            FileRefused::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        let meta = file.metadata().map_err(|source| FileRefused::Io {
            path: self.path.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(FileRefused::NotRegular {
                path: self.path.clone(),
                kind: kind_of(meta.file_type()),
            });
        }
        if identity(&meta) != self.identity {
            return Err(FileRefused::Changed {
                path: self.path.clone(),
            });
        }
        Ok(file)
    }
}

/// Checks every file against `base` (the working directory when `None`), before anything is
/// sent.
///
/// # Errors
/// The first [`FileRefused`].
pub fn check_files(base: Option<&Path>, files: &[PathBuf]) -> Result<Vec<LocalFile>, FileRefused> {
    let base = base.unwrap_or_else(|| Path::new("."));
    files.iter().map(|f| LocalFile::check(base, f)).collect()
}

/// The size and SHA-256 of the file as it reads now, through [`LocalFile::open`].
///
/// # Errors
/// [`FileRefused`] when it is no longer the file checked; the I/O error when it cannot be
/// read.
pub(crate) async fn hash_file(file: &LocalFile) -> Result<(u64, [u8; 32]), ClientError> {
    let mut reader = tokio::fs::File::from_std(file.open()?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok((size, hasher.finalize().into()))
}
