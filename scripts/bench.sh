#!/usr/bin/env bash
# Runs runproof's benchmarks and prints a summary of ratios against baselines measured
# in the same run (openssl speed, raw aws-lc, dd, fsync). Absolute numbers on a shared
# machine are noise; compare the ratios.
#
# Prints, last, the Markdown table BENCHMARKS.md records ("Results"), with each target's
# mark computed from the run's figures; it is also saved to target/bench-results.md.
#
# Usage: scripts/bench.sh [SMALL_UPLOADS] [CONCURRENCY] [LARGE_MIB_LIST]
#   defaults: 2000 uploads, 16 in flight, "64,1024" MiB.
# Environment: OPENSSL_SECONDS (default 3), SERVER_LOG (server RUST_LOG, default info),
#   STORAGE_UPLOADS (uploads per setup in the SQLite / PostgreSQL / two-replica
#   comparison, default 1000; 0 skips it), STORAGE_ROUNDS (default 3),
#   RUNPROOF_BENCH_DATABASE_URL (PostgreSQL for that comparison; defaults to
#   RUNPROOF_TEST_DATABASE_URL, then to postgres://postgres@127.0.0.1:5432/test when
#   pg_isready answers there; without one the comparison says it was skipped).
set -euo pipefail

SMALL=${1:-2000}
CONCURRENCY=${2:-16}
LARGE=${3:-64,1024}
OPENSSL_SECONDS=${OPENSSL_SECONDS:-3}
SERVER_LOG=${SERVER_LOG:-info}
STORAGE_UPLOADS=${STORAGE_UPLOADS:-1000}
STORAGE_ROUNDS=${STORAGE_ROUNDS:-3}
DATABASE_URL=${RUNPROOF_BENCH_DATABASE_URL:-${RUNPROOF_TEST_DATABASE_URL:-}}
if [ -z "$DATABASE_URL" ] && command -v pg_isready >/dev/null 2>&1 \
   && pg_isready -h 127.0.0.1 -p 5432 -q; then
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/test"
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# Scratch space on the same disk as the repository: server data dirs and dd's file.
WORK="$TARGET/bench-tmp"
RESULTS="$TARGET/bench-results.json"
TABLE="$TARGET/bench-results.md"

cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK"

echo "== machine"
echo "nproc:   $(nproc)"
echo "cpu:     $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
echo "rustc:   $(rustc --version)"
echo "openssl: $(openssl version 2>/dev/null || echo missing)"
echo "disk:    $(df -h "$TARGET" | awk 'NR==2 {print $1, $2 " total"}')"
echo "git:     $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)')"

echo "== build (release)"
cargo build --release -p runproof --examples --bins

echo "== criterion: in-process verification (bench profile)"
rm -rf "$TARGET/criterion/verify"
cargo bench -p runproof-core --bench verify -- --warm-up-time 1 --measurement-time 3

echo "== openssl speed, small uploads, SQLite vs PostgreSQL vs two replicas, large uploads (real servers on loopback)"
"$TARGET/release/examples/load" \
    --server-bin "$TARGET/release/runproof" \
    --work-dir "$WORK" \
    --openssl-seconds "$OPENSSL_SECONDS" \
    --criterion-dir "$TARGET/criterion" \
    --small "$SMALL" --concurrency "$CONCURRENCY" \
    --storage "$STORAGE_UPLOADS" --storage-rounds "$STORAGE_ROUNDS" \
    --database-url "$DATABASE_URL" \
    --large-mib "$LARGE" \
    --server-log "$SERVER_LOG" \
    --json-out "$RESULTS" >"$TABLE"

echo "== the table for BENCHMARKS.md (Results), as recorded in $TABLE"
echo
echo "Run of $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)'), $(nproc) cores:"
echo
cat "$TABLE"
echo
echo "(all numbers: $RESULTS)"
