//! The command line: which phases run, their sizes, and where the server binary and the
//! scratch directory are. Depends on no other module.

use std::path::PathBuf;

use clap::Parser;

/// Drive a real runproof server on loopback and measure it against same-run baselines.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// The runproof binary (build it with `--release`).
    #[arg(long, default_value = "target/release/runproof")]
    pub(crate) server_bin: PathBuf,
    /// Scratch directory on the disk under test; everything created in it is removed.
    #[arg(long, default_value = "target/bench-tmp")]
    pub(crate) work_dir: PathBuf,
    /// Number of small uploads (0: skip).
    #[arg(long, default_value_t = 0)]
    pub(crate) small: usize,
    /// Uploads in flight at once during the small phase.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// Body size of each small upload, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub(crate) small_bytes: usize,
    /// Large upload sizes in MiB, comma-separated; each in a fresh server (empty: skip).
    #[arg(long, value_delimiter = ',')]
    pub(crate) large_mib: Vec<u64>,
    /// Rounds of (upload, dd) per large size; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) repeat: usize,
    /// Skip the dd baseline of the large phase.
    #[arg(long)]
    pub(crate) no_dd: bool,
    /// Small uploads per setup in the storage comparison (0: skip).
    #[arg(long, default_value_t = 0)]
    pub(crate) storage: usize,
    /// Rounds of the storage comparison; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) storage_rounds: usize,
    /// PostgreSQL for the storage comparison (e.g. postgres://postgres@127.0.0.1:5432/test).
    /// Without it the comparison is skipped, and says so.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// The JSON `scripts/bench-peer.sh` wrote: its rows join the table.
    #[arg(long)]
    pub(crate) peer_results: Option<PathBuf>,
    /// Run `openssl speed -seconds S rsa2048` (0: skip).
    #[arg(long, default_value_t = 0)]
    pub(crate) openssl_seconds: u64,
    /// Criterion's output directory (`target/criterion`) to read the verify bench from.
    #[arg(long)]
    pub(crate) criterion_dir: Option<PathBuf>,
    /// Write every measurement here as JSON.
    #[arg(long)]
    pub(crate) json_out: Option<PathBuf>,
    /// `RUST_LOG` of the server process (its log goes to a file in the work dir).
    #[arg(long, default_value = "info")]
    pub(crate) server_log: String,
}
