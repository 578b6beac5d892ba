#!/usr/bin/env bash
# Small verified uploads under the same wrk load: runproof against a Node peer that only
# verifies tokens (plain node:http + jose, no storage, no replay guard; scripts/node-peer/).
#
# Setups, each measured PEER_ROUNDS times, the order rotating each round (A B C D, B C D A, …):
#   node      the peer, one process, started once and warmed up;
#   sqlite    `runproof serve`, SQLite (the default), replay protection on;
#   pg        `runproof serve` on PostgreSQL, one replica;
#   pg2       two `runproof serve` processes on one PostgreSQL schema and one blob directory,
#             each driven by its own wrk with half the connections, at the same time.
# Every runproof measurement gets fresh processes and a fresh database (a new SQLite file or a
# new PostgreSQL schema, dropped afterwards), so each may spend every token once. Every request
# carries a token never sent before to that database. The peak RSS (VmHWM) of each runproof
# process is read after its measurement.
#
# Writes every figure as JSON to $1 (default target/bench-peer.json); `load --peer-results`
# turns it into rows of the bench table, with the targets marked. Prints one line per run.
# Loopback only; stops only what it started. scripts/bench.sh runs it; by hand:
#
#   cargo build --release -p runproof --bin runproof && scripts/bench-peer.sh
#
# Env: RUNPROOF_BIN (default target/release/runproof), CONNS (64), DURATION (wrk -d, 5s),
#   PEER_ROUNDS (3), N (tokens, 100000; each run may use them all, so N must exceed the
#   requests one runproof run makes: a replayed token is refused and counted as a failure),
#   RUNPROOF_BENCH_DATABASE_URL (PostgreSQL for pg and pg2; without it they are skipped),
#   RUNPROOF_EXTRA_TOML (top-level keys appended to every runproof config, e.g. `[limits]`
#   tuning; not `database_url`, which the setups set), PEER_CACHE (node_modules, key and
#   tokens, kept between runs: target/bench-peer-cache), SERVER_LOG (RUST_LOG, info).
# Needs node, npm (`npm ci` of scripts/node-peer once), wrk (apt-get install -y wrk), openssl,
# curl; psql for the PostgreSQL setups. A missing tool skips the phase, and the JSON says why.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEER_SRC="$ROOT/scripts/node-peer"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${RUNPROOF_BIN:-$TARGET/release/runproof}
OUT=${1:-$TARGET/bench-peer.json}
CACHE=${PEER_CACHE:-$TARGET/bench-peer-cache}
N=${N:-100000}
CONNS=${CONNS:-64}
DURATION=${DURATION:-5s}
ROUNDS=${PEER_ROUNDS:-3}
SERVER_LOG=${SERVER_LOG:-info}
DATABASE_URL=${RUNPROOF_BENCH_DATABASE_URL:-}
EXTRA_TOML=${RUNPROOF_EXTRA_TOML:-}
AUD=https://runproof.bench.invalid
BODY_BYTES=1024 # unique.lua's body
# The first WARM tokens are for warm-up uploads; wrk starts after them.
WARM=2

mkdir -p "$(dirname "$OUT")" "$CACHE"
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
CACHE=$(cd "$CACHE" && pwd)

skip() { # reason
  echo "peer: skipped: $1" >&2
  printf '{"skipped": "%s"}\n' "$1" >"$OUT"
  exit 0
}
for tool in node npm wrk openssl curl; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is missing$([ "$tool" = wrk ] && echo ' (apt-get install -y wrk)')"
done
[ -x "$BIN" ] || skip "no runproof binary at $BIN (cargo build --release -p runproof)"

WORK=$(mktemp -d "$TARGET/bench-peer.XXXXXX")
PIDS=()
SCHEMAS=()
alive() { # pid: running (not a zombie)
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $st != Z* ]]
}
stop_pid() { # pid (a child of this shell): SIGTERM, then SIGKILL after 15 s; reaped, forgotten
  local pid=$1 i p rest=()
  if kill -TERM "$pid" 2>/dev/null; then
    for i in $(seq 300); do
      alive "$pid" || break
      sleep 0.05
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
  fi
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || rest+=("$p"); done
  PIDS=("${rest[@]}")
}
drop_schema() {
  psql "$DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -c "DROP SCHEMA IF EXISTS \"$1\" CASCADE" >/dev/null 2>&1 \
    || echo "peer: could not drop schema $1" >&2
}
cleanup() {
  set +e
  local p s
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  for s in "${SCHEMAS[@]}"; do drop_schema "$s"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
now_ms() { date +%s%3N; }

# --- node_modules, key and tokens (cached in $CACHE) -------------------------------------
if ! cmp -s "$PEER_SRC/package-lock.json" "$CACHE/package-lock.json" || [ ! -d "$CACHE/node_modules/jose" ]; then
  echo "peer: npm ci (jose) into $CACHE…" >&2
  cp "$PEER_SRC/package.json" "$PEER_SRC/package-lock.json" "$CACHE/"
  (cd "$CACHE" && npm ci --silent --no-audit --no-fund >/dev/null) || skip "npm ci failed in $CACHE"
fi
# ES modules resolve `jose` next to the importing file: run copies from $CACHE.
cp "$PEER_SRC/http-server.mjs" "$PEER_SRC/mint.mjs" "$CACHE/"
if [ ! -f "$CACHE/private.pem" ]; then
  openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$CACHE/private.pem"
  openssl pkey -in "$CACHE/private.pem" -pubout -out "$CACHE/public.pem"
fi
# runproof wants the JWKS on the issuer's origin, so the issuer names the JWKS server's port.
# The port is kept with the tokens, so that they stay valid; another is taken (and the tokens
# minted again) only when it is busy.
port_free() {
  node -e 'const s=require("net").createServer().on("error",()=>process.exit(1));
    s.listen(Number(process.argv[1]),"127.0.0.1",()=>s.close())' "$1" 2>/dev/null
}
JPORT=$(cat "$CACHE/jwks-port" 2>/dev/null || true)
if ! [[ $JPORT =~ ^[0-9]+$ ]] || ! port_free "$JPORT"; then
  JPORT=$(free_port)
  echo "$JPORT" >"$CACHE/jwks-port"
fi
ISS=http://127.0.0.1:$JPORT
fresh=0
if [ -f "$CACHE/tokens.txt" ] && [ -f "$CACHE/jwks.json" ] \
   && [ "$(wc -l <"$CACHE/tokens.txt")" -ge "$N" ] && [ "$CACHE/tokens.txt" -nt "$CACHE/private.pem" ]; then
  fresh=$(node -e '
    const [file, iss, aud] = process.argv.slice(1);
    const t = require("fs").readFileSync(file, "utf8").split("\n", 1)[0];
    const c = JSON.parse(Buffer.from(t.split(".")[1], "base64url"));
    process.stdout.write(String(c.iss === iss && c.aud === aud && c.exp - Date.now() / 1000 > 3600 ? 1 : 0))' \
    "$CACHE/tokens.txt" "$ISS" "$AUD")
fi
if [ "$fresh" != 1 ]; then
  echo "peer: minting $N tokens into $CACHE (once a day)…" >&2
  WORK=$CACHE N=$N AUD=$AUD ISS=$ISS node "$CACHE/mint.mjs" >&2 || skip "minting tokens failed"
fi
TOKENS=$CACHE/tokens.txt
TOKEN_COUNT=$(wc -l <"$TOKENS")

# --- the JWKS, on loopback ---------------------------------------------------------------
JWKS_URL=http://127.0.0.1:$JPORT/jwks.json
node -e '
  const body = require("fs").readFileSync(process.argv[1]);
  require("http").createServer((q, s) => {
    s.writeHead(q.url === "/jwks.json" ? 200 : 404, { "content-type": "application/json" });
    s.end(q.url === "/jwks.json" ? body : "{}");
  }).listen(Number(process.argv[2]), "127.0.0.1");' "$CACHE/jwks.json" "$JPORT" >"$WORK/jwks.log" 2>&1 &
PIDS+=($!)

wait_http() { # url pid log: until it answers 200, the process is alive, 60 s at most
  local i
  for i in $(seq 600); do
    curl -sf -o /dev/null "$1" && return 0
    alive "$2" || { echo "peer: process exited: $(tail -c 600 "$3")" >&2; return 1; }
    sleep 0.1
  done
  echo "peer: $1 did not answer in 60 s: $(tail -c 600 "$3")" >&2
  return 1
}
wait_http "$JWKS_URL" "${PIDS[-1]}" "$WORK/jwks.log"

# --- the PostgreSQL setups need a database and psql ----------------------------------------
PG_SKIP=
if [ -z "$DATABASE_URL" ]; then
  PG_SKIP="no PostgreSQL (RUNPROOF_BENCH_DATABASE_URL)"
elif ! command -v psql >/dev/null 2>&1; then
  PG_SKIP="psql is missing (needed to drop the bench schemas)"
elif ! psql "$DATABASE_URL" -qAt -c 'select 1' >/dev/null 2>&1; then
  PG_SKIP="PostgreSQL does not answer at the given URL"
fi
SETUPS=(node sqlite)
[ -z "$PG_SKIP" ] && SETUPS+=(pg pg2)
[ -n "$PG_SKIP" ] && echo "peer: PostgreSQL setups skipped: $PG_SKIP" >&2

# --- the peer, one process for the whole phase ---------------------------------------------
NPORT=$(free_port)
JWKS_FILE=$CACHE/jwks.json PORT=$NPORT AUD=$AUD ISS=$ISS WORKERS=1 \
  node "$CACHE/http-server.mjs" >"$WORK/node.log" 2>&1 &
NODE_PID=$!
PIDS+=("$NODE_PID")
for i in $(seq 100); do
  grep -q listening "$WORK/node.log" && break
  alive "$NODE_PID" || break
  sleep 0.1
done
grep -q listening "$WORK/node.log" || { echo "peer: the node peer did not start: $(cat "$WORK/node.log")" >&2; exit 1; }

# --- one wrk run ---------------------------------------------------------------------------
# wrk_run threads conns nthreads offset url path: prints one JSON object
wrk_run() {
  local out line
  out=$(TOKENS=$TOKENS OFFSET=$4 RPATH=$6 NTHREADS=$3 \
    wrk -t"$1" -c"$2" -d"$DURATION" --timeout 5s -s "$PEER_SRC/unique.lua" "$5$6" 2>&1) || true
  line=$(printf '%s\n' "$out" | grep -E '^RESULT rps=[0-9.]+ p50=[0-9.]+ p99=[0-9.]+ requests=[0-9]+ non2xx=[0-9]+ errors=[0-9]+$' | head -n1 || true)
  if [ -z "$line" ]; then
    printf '{"error": "wrk printed no RESULT line"}'
    echo "peer: wrk failed: $(printf '%s' "$out" | tail -c 400)" >&2
    return
  fi
  printf '%s' "$line" | sed -E 's/^RESULT //; s/([a-z0-9]+)=([0-9.]+)/"\1": \2/g; s/ "/, "/g; s/^/{/; s/$/}/'
}

hwm_kib() { # pid: peak RSS in KiB, or null
  local v
  v=$(awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || true)
  echo "${v:-null}"
}

# Warm the peer's JIT with one second of the same load (not recorded).
DURATION_SAVE=$DURATION
DURATION=1s
wrk_run 2 "$CONNS" 2 "$WARM" "http://127.0.0.1:$NPORT" /upload >/dev/null
DURATION=$DURATION_SAVE

# --- runproof ---------------------------------------------------------------------------------
# start_runproof dir name schema: starts one process; sets PID and PORT
start_runproof() {
  local dir=$1 name=$2 schema=$3
  PORT=$(free_port)
  {
    echo "listen = \"127.0.0.1:$PORT\""
    echo "data_dir = '$dir/$name-data'"
    if [ -n "$schema" ]; then
      echo "database_url = \"$DATABASE_URL\""
      echo "blob_store = 'file://$dir/shared-blobs'"
    fi
    printf '%s\n' "$EXTRA_TOML"
    if [ -n "$schema" ]; then
      printf '[database]\nschema = "%s"\n' "$schema"
    fi
    printf '[oidc]\naudience = "%s"\nreplay_protection = true\n' "$AUD"
    printf '[[oidc.issuers]]\nissuer = "%s"\njwks_url = "%s"\n' "$ISS" "$JWKS_URL"
  } >"$dir/$name.toml"
  # The config file alone decides: RUNPROOF_* variables of this shell are not passed on.
  env $(env | sed -n 's/^\(RUNPROOF_[A-Za-z0-9_]*\)=.*/-u \1/p') RUST_LOG="$SERVER_LOG" \
    "$BIN" serve --config "$dir/$name.toml" </dev/null >"$dir/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
}

# warm_upload port token_line log: one upload, which must answer 201 (it fetches the JWKS)
warm_upload() {
  local token code
  token=$(sed -n "$2p" "$TOKENS")
  code=$(curl -s -o "$3.warm" -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
    -H 'content-type: application/json' --data-binary '{"warm":true}' \
    "http://127.0.0.1:$1/v1/uploads?name=warm.bin")
  [ "$code" = 201 ] || { echo "peer: warm-up upload answered $code: $(cat "$3.warm") $(tail -c 600 "$3")" >&2; return 1; }
}

# measure setup round: sets RUN to one JSON object
measure() {
  local setup=$1 round=$2 dir schema= replicas=1 i parts= hwms=
  if [ "$setup" = node ]; then
    parts=$(wrk_run 2 "$CONNS" 2 "$WARM" "http://127.0.0.1:$NPORT" /upload)
    RUN=$(printf '{"setup": "node", "round": %d, "parts": [%s], "peak_rss_kib": [%s]}' \
      "$round" "$parts" "$(hwm_kib "$NODE_PID")")
    return
  fi
  dir="$WORK/$setup-$round"
  mkdir -p "$dir"
  if [ "$setup" != sqlite ]; then
    schema="rp_peer_$(date +%s)_$$_${setup}_$round"
    SCHEMAS+=("$schema")
  fi
  [ "$setup" = pg2 ] && replicas=2
  local pids=() ports=() wrks=()
  for ((i = 0; i < replicas; i++)); do
    start_runproof "$dir" "r$i" "$schema"
    pids+=("$PID")
    ports+=("$PORT")
    # One at a time: the first creates the schema.
    wait_http "http://127.0.0.1:$PORT/readyz" "$PID" "$dir/r$i.log"
    warm_upload "$PORT" "$((i + 1))" "$dir/r$i.log"
  done
  if [ "$replicas" = 1 ]; then
    parts=$(wrk_run 2 "$CONNS" 2 "$WARM" "http://127.0.0.1:${ports[0]}" "/v1/uploads?name=b.bin")
  else
    # Half the connections each, one wrk thread each, at the same time; replica i takes the
    # tokens whose line number is ≡ i (mod 2), so no token reaches the shared database twice.
    for ((i = 0; i < replicas; i++)); do
      wrk_run 1 "$((CONNS / 2))" 2 "$((WARM + i))" "http://127.0.0.1:${ports[$i]}" "/v1/uploads?name=b.bin" \
        >"$dir/wrk-$i.json" &
      wrks+=($!)
    done
    for i in "${wrks[@]}"; do wait "$i" || true; done
    parts="$(cat "$dir/wrk-0.json"), $(cat "$dir/wrk-1.json")"
  fi
  for i in "${pids[@]}"; do
    hwms+="${hwms:+, }$(hwm_kib "$i")"
  done
  for i in "${pids[@]}"; do stop_pid "$i"; done
  if [ -n "$schema" ]; then drop_schema "$schema"; fi
  rm -rf "$dir"
  sync
  RUN=$(printf '{"setup": "%s", "round": %d, "parts": [%s], "peak_rss_kib": [%s]}' \
    "$setup" "$round" "$parts" "$hwms")
}

echo "peer: ${SETUPS[*]} × $ROUNDS rounds, wrk $CONNS connections for $DURATION, $BODY_BYTES B bodies, $TOKEN_COUNT tokens" >&2
RUNS=()
started=$(now_ms)
for ((round = 1; round <= ROUNDS; round++)); do
  for ((k = 0; k < ${#SETUPS[@]}; k++)); do
    setup=${SETUPS[$(((k + round - 1) % ${#SETUPS[@]}))]}
    measure "$setup" "$round"
    echo "peer: round $round/$ROUNDS $setup: $RUN" >&2
    RUNS+=("$RUN")
  done
done

{
  printf '{\n  "connections": %d,\n  "duration": "%s",\n  "rounds": %d,\n  "body_bytes": %d,\n  "tokens": %d,\n' \
    "$CONNS" "$DURATION" "$ROUNDS" "$BODY_BYTES" "$TOKEN_COUNT"
  printf '  "seconds": %s,\n' "$(( ($(now_ms) - started) / 1000 ))"
  printf '  "node": "%s",\n  "wrk": "%s",\n' "$(node --version)" "$(wrk -v 2>&1 | head -n1 | sed 's/"/'"'"'/g')"
  if [ -n "$PG_SKIP" ]; then printf '  "postgres_skipped": "%s",\n' "$PG_SKIP"; fi
  printf '  "runs": [\n'
  for ((i = 0; i < ${#RUNS[@]}; i++)); do
    printf '    %s%s\n' "${RUNS[$i]}" "$([ "$i" -lt $((${#RUNS[@]} - 1)) ] && echo ,)"
  done
  printf '  ]\n}\n'
} >"$OUT"
echo "peer: figures in $OUT" >&2
