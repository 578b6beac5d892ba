#!/usr/bin/env bash
# Runs runproof's benchmarks and prints a summary of ratios against baselines measured
# in the same run (openssl speed, raw aws-lc, a Node peer under the same wrk load, dd,
# fsync). Absolute numbers on a shared machine are noise; compare the ratios.
#
# Prints, last, the Markdown table BENCHMARKS.md records ("Results"), with each target's
# mark computed from the run's figures; it is also saved to target/bench-results.md.
#
# Usage: scripts/bench.sh [SMALL_UPLOADS] [CONCURRENCY] [LARGE_MIB_LIST]
#   defaults: 2000 uploads, 16 in flight, "64,1024" MiB.
# Environment: OPENSSL_SECONDS (default 3), SERVER_LOG (server RUST_LOG, default info),
#   the wrk phase against the Node peer (scripts/bench-peer.sh, which documents them):
#   PEER_ROUNDS (default 3; 0 skips the phase), DURATION (of each wrk run, default 5s),
#   CONNS (64), N (tokens, 100000), RUNPROOF_EXTRA_TOML;
#   STORAGE_UPLOADS (uploads per setup in the driver's own SQLite / PostgreSQL /
#   two-replica comparison at CONCURRENCY in flight, default 0: skipped, as the wrk phase
#   measures the same setups), STORAGE_ROUNDS (default 3),
#   RUNPROOF_BENCH_DATABASE_URL (PostgreSQL for both; defaults to
#   RUNPROOF_TEST_DATABASE_URL, then to postgres://postgres@127.0.0.1:5432/test when
#   pg_isready answers there; without one their PostgreSQL rows say they were skipped),
#   EVENTS_BENCH (default 1; 0 skips the event log at 1,000,000 events, whose table is
#   printed after the Results and saved to target/bench-events.md; it uses the same
#   PostgreSQL), CONSOLE_BENCH (default 1; 0 skips the console's pages at 1,000,000
#   events over HTTP, whose tables are printed last and saved to target/bench-console.md;
#   it uses the same PostgreSQL).
set -euo pipefail

SMALL=${1:-2000}
CONCURRENCY=${2:-16}
LARGE=${3:-64,1024}
OPENSSL_SECONDS=${OPENSSL_SECONDS:-3}
SERVER_LOG=${SERVER_LOG:-info}
PEER_ROUNDS=${PEER_ROUNDS:-3}
STORAGE_UPLOADS=${STORAGE_UPLOADS:-0}
STORAGE_ROUNDS=${STORAGE_ROUNDS:-3}
EVENTS_BENCH=${EVENTS_BENCH:-1}
CONSOLE_BENCH=${CONSOLE_BENCH:-1}
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
PEER_RESULTS="$TARGET/bench-peer.json"
TABLE="$TARGET/bench-results.md"
EVENTS_TABLE="$TARGET/bench-events.md"
CONSOLE_TABLE="$TARGET/bench-console.md"

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

echo "== the event log at 1,000,000 events: charts and list pages (SQLite; PostgreSQL when named)"
if [ "$EVENTS_BENCH" != 0 ]; then
  RUNPROOF_BENCH_DATABASE_URL="$DATABASE_URL" \
    cargo bench -p runproof-store --bench events | tee "$TARGET/bench-events.out"
  sed -n '/^[0-9]* events; each time/,$p' "$TARGET/bench-events.out" >"$EVENTS_TABLE"
else
  echo "(skipped: EVENTS_BENCH=0)" >"$EVENTS_TABLE"
fi

echo "== the console's pages at 1,000,000 events, over HTTP (SQLite; PostgreSQL when named)"
if [ "$CONSOLE_BENCH" != 0 ]; then
  RUNPROOF_BENCH_DATABASE_URL="$DATABASE_URL" \
    cargo bench -p runproof-server --bench console | tee "$TARGET/bench-console.out"
  sed -n '/^Console pages, SQLite:/,$p' "$TARGET/bench-console.out" >"$CONSOLE_TABLE"
else
  echo "(skipped: CONSOLE_BENCH=0)" >"$CONSOLE_TABLE"
fi

echo "== small uploads under wrk: runproof (SQLite, PostgreSQL, 2 replicas) against the Node peer"
if [ "$PEER_ROUNDS" -gt 0 ]; then
  if ! PEER_ROUNDS="$PEER_ROUNDS" RUNPROOF_BIN="$TARGET/release/runproof" SERVER_LOG="$SERVER_LOG" \
       RUNPROOF_BENCH_DATABASE_URL="$DATABASE_URL" scripts/bench-peer.sh "$PEER_RESULTS"; then
    printf '{"skipped": "scripts/bench-peer.sh failed (its output is above)"}\n' >"$PEER_RESULTS"
  fi
else
  printf '{"skipped": "PEER_ROUNDS=0"}\n' >"$PEER_RESULTS"
fi

echo "== openssl speed, small uploads, large uploads (real servers on loopback)"
"$TARGET/release/examples/load" \
    --server-bin "$TARGET/release/runproof" \
    --work-dir "$WORK" \
    --openssl-seconds "$OPENSSL_SECONDS" \
    --criterion-dir "$TARGET/criterion" \
    --peer-results "$PEER_RESULTS" \
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
if grep -q '❌' "$TABLE"; then
  echo "Targets missed in this run (last column: the exact ratio and by how much):"
  grep '❌' "$TABLE" | awk -F'|' '{gsub(/\*\*/, "", $2); gsub(/^ +| +$/, "", $2); gsub(/^ +| +$/, "", $6); print "- " $2 ": " $6}'
else
  echo "Every target measured in this run was met."
fi
if grep -q '(not measured)' "$TABLE"; then
  echo "Not measured in this run:"
  grep '(not measured)' "$TABLE" | awk -F'|' '{gsub(/\*\*/, "", $2); gsub(/^ +| +$/, "", $2); gsub(/^ +| +$/, "", $6); print "- " $2 ": " $6}'
fi
echo
echo "The event log (BENCHMARKS.md, \"The event log at 1,000,000 events\"), as recorded in $EVENTS_TABLE:"
echo
cat "$EVENTS_TABLE"
echo
echo "The console (BENCHMARKS.md, \"Console pages at 1,000,000 events\"), as recorded in $CONSOLE_TABLE:"
echo
cat "$CONSOLE_TABLE"
echo
echo "(all numbers: $RESULTS; the wrk phase's runs: $PEER_RESULTS)"
