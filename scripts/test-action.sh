#!/usr/bin/env bash
# Tests action.yml by running its steps the way a GitHub Actions runner runs a composite
# action (not through `act`): a small Python runner parses action.yml, resolves the
# `${{ }}` expressions it uses (inputs with their defaults, steps.<id>.outputs, github.*,
# runner.*, env.*; anything else is an error), writes each `run:` to a file and runs it with
# `bash --noprofile --norc -eo pipefail`, with a fresh $GITHUB_OUTPUT per step, in a fake
# runner environment.
#
# The uploads go to a real `runproof serve --dev` on loopback (its fake GitHub mints the OIDC
# tokens); the download path is tested against a fake release served on loopback; argument
# passing (modes, github-token, hostile inputs) against a stub binary that records what it
# gets. Also lints action.yml, examples/ and .github/workflows/ (scripts/lint-workflows.py).
#
# The github-token mode is only tested with the stub: a real upload would need a GITHUB_TOKEN
# from the dev server's fake GitHub, which `serve --dev` does not hand out.
#
# Needs python3 (PyYAML is installed with pip when missing), curl, tar, sha256sum or shasum.
# Builds target/debug/runproof with cargo when it is missing (RUNPROOF_TEST_BIN: another
# binary). RUNPROOF_TEST_KEEP=1 keeps the temporary directory (logs, results). The last line is `N passed, M failed`; the exit status is 0 only when M is 0.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PASSED=0
FAILED=0
pass() {
  PASSED=$((PASSED + 1))
  echo "ok     $1"
}
failed() { # description [details]
  FAILED=$((FAILED + 1))
  echo "FAILED $1"
  if [[ -n ${2:-} ]]; then
    printf '%s\n' "$2" | tail -n 25 | sed 's/^/         | /'
  fi
}
check() { # description command...
  local desc=$1
  shift
  if "$@"; then pass "$desc"; else failed "$desc"; fi
}
finish() {
  echo "$PASSED passed, $FAILED failed"
  if ((FAILED > 0)); then exit 1; fi
  exit 0
}

# --- prerequisites -------------------------------------------------------------------------
for tool in python3 curl tar; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool is required" >&2
    exit 1
  fi
done
# PY: a python3 with PyYAML. pip --user first; where the system Python refuses (PEP 668),
# a virtual environment in the cache.
PY=python3
if ! "$PY" -c 'import yaml' 2>/dev/null; then
  echo "== installing PyYAML with pip"
  if ! { python3 -m pip install --quiet --user pyyaml && python3 -c 'import yaml'; } 2>/dev/null; then
    venv=${XDG_CACHE_HOME:-$HOME/.cache}/runproof-lint/venv
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet pyyaml
    PY=$venv/bin/python
  fi
fi
BIN=${RUNPROOF_TEST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/runproof}
if [[ ! -x $BIN ]]; then
  echo "== cargo build -p runproof"
  cargo build --quiet -p runproof
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
START=$SECONDS

TMP=$(mktemp -d "${TMPDIR:-/tmp}/runproof-test-action.XXXXXX")
SERVER_PID=
HTTP_PID=
# shellcheck disable=SC2329 # called by the trap
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  if [[ -n $HTTP_PID ]]; then kill "$HTTP_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  if [[ -n ${RUNPROOF_TEST_KEEP:-} ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the runner ----------------------------------------------------------------------------
cat >"$TMP/runner.py" <<'PY'
"""Runs a composite action.yml like the GitHub Actions runner does (what action.yml uses)."""
import argparse, json, os, re, subprocess, sys, uuid

import yaml

EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
PATH_EXPR = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")
LITERAL = re.compile(r"'((?:[^']|'')*)'")


class Unsupported(Exception):
    pass


def to_str(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def evaluate(expr, ctx):
    expr = expr.strip()
    m = LITERAL.fullmatch(expr)
    if m:
        return m.group(1).replace("''", "'")
    if not PATH_EXPR.fullmatch(expr):
        raise Unsupported(f"expression not supported by this runner: {expr!r}")
    root, *rest = expr.split(".")
    if root not in ctx:
        raise Unsupported(f"unknown context {root!r} in {expr!r}")
    if root == "inputs" and rest and rest[0] not in ctx["inputs"]:
        raise Unsupported(f"{expr!r}: no such input in action.yml")
    if root == "steps" and rest and rest[0] not in ctx["steps"]:
        raise Unsupported(f"{expr!r}: no step with this id has run yet")
    value = ctx[root]
    for part in rest:
        value = value.get(part) if isinstance(value, dict) else None  # absent: null, ''
    return to_str(value)


def render(text, ctx):
    if not isinstance(text, str):
        return to_str(text)
    return EXPR.sub(lambda m: evaluate(m.group(1), ctx), text)


def parse_output_file(path):
    """name=value and name<<DELIMITER lines, as the runner reads $GITHUB_OUTPUT."""
    out = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if not line:
            continue
        heredoc = re.fullmatch(r"([^=<]+)<<(.+)", line)
        if heredoc and "=" not in line.split("<<", 1)[0]:
            name, delim, body = heredoc.group(1), heredoc.group(2), []
            while i < len(lines) and lines[i].rstrip("\r") != delim:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise Unsupported(f"unterminated {name}<<{delim} in $GITHUB_OUTPUT")
            i += 1
            out[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        else:
            raise Unsupported(f"malformed $GITHUB_OUTPUT line: {line!r}")
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--action", required=True)
    p.add_argument("--workspace", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--input", action="append", default=[], help="name=value")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE")
    p.add_argument("--path-without-cargo", action="store_true")
    p.add_argument("--step-timeout", type=float, default=40)
    a = p.parse_args()

    with open(a.action, encoding="utf-8") as f:
        action = yaml.safe_load(f)
    runs = action["runs"]
    if runs.get("using") != "composite":
        raise Unsupported("only composite actions")

    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER",
                                       "CARGO_HOME", "RUSTUP_HOME") if k in os.environ}
    for item in a.env:
        name, value = item.split("=", 1)
        env[name] = value
    if a.path_without_cargo:
        env["PATH"] = os.pathsep.join(d for d in env["PATH"].split(os.pathsep)
                                      if d and not os.path.exists(os.path.join(d, "cargo")))
    action_path = os.path.dirname(os.path.abspath(a.action))
    env["GITHUB_ACTION_PATH"] = action_path
    github = {
        "token": env.get("GITHUB_TOKEN_FOR_CONTEXT", ""),
        "action_path": action_path,
        "workspace": a.workspace,
        "repository": env.get("GITHUB_REPOSITORY", ""),
        "run_id": env.get("GITHUB_RUN_ID", ""),
        "sha": env.get("GITHUB_SHA", ""),
    }
    env.pop("GITHUB_TOKEN_FOR_CONTEXT", None)
    runner = {"os": env.get("RUNNER_OS", ""), "arch": env.get("RUNNER_ARCH", ""),
              "temp": env.get("RUNNER_TEMP", "")}

    given = {}
    for item in a.input:
        name, value = item.split("=", 1)
        given[name] = value
    declared = action.get("inputs") or {}
    unknown = set(given) - set(declared)
    if unknown:
        raise Unsupported(f"inputs not declared in action.yml: {sorted(unknown)}")
    inputs = {}
    for name, spec in declared.items():
        spec = spec or {}
        if name in given:
            inputs[name] = given[name]
        elif spec.get("required") and "default" not in spec:
            raise Unsupported(f"required input {name!r} not given")
        else:
            inputs[name] = render(spec.get("default", ""),
                                  {"github": github, "runner": runner, "env": env})

    ctx = {"inputs": inputs, "steps": {}, "github": github, "runner": runner, "env": env}
    result = {"outcome": "success", "failed_step": None, "steps": {}, "outputs": {}}
    log = []
    for index, step in enumerate(runs["steps"]):
        sid = step.get("id") or f"__{index}"
        for key in step:
            if key not in ("name", "id", "shell", "env", "run", "working-directory"):
                raise Unsupported(f"step {sid}: key {key!r} not supported by this runner")
        if step.get("shell") != "bash":
            raise Unsupported(f"step {sid}: shell must be bash")
        step_env = dict(env)
        for name, value in (step.get("env") or {}).items():
            step_env[name] = render(value, ctx)
        temp = env["RUNNER_TEMP"]
        output_file = os.path.join(temp, f"output_{uuid.uuid4().hex}")
        open(output_file, "w").close()
        step_env["GITHUB_OUTPUT"] = output_file
        script = os.path.join(temp, f"{uuid.uuid4().hex}.sh")
        with open(script, "w", encoding="utf-8") as f:
            f.write(render(step["run"], ctx))
        cwd = a.workspace
        if step.get("working-directory"):
            cwd = os.path.join(a.workspace, render(step["working-directory"], ctx))
        name = render(step.get("name", sid), ctx)
        log.append(f"##[group]Run {name}")
        try:
            proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", script],
                                  cwd=cwd, env=step_env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=a.step_timeout)
            code, text = proc.returncode, proc.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired as e:
            code = 124
            text = (e.stdout or b"").decode("utf-8", "replace") + "\n[runner] step timed out"
        log.append(text.rstrip("\n"))
        log.append(f"##[endgroup] exit {code}")
        outputs = parse_output_file(output_file)
        ctx["steps"][sid] = {"outputs": outputs, "outcome": "success" if code == 0 else "failure"}
        result["steps"][sid] = {"exit": code, "outputs": outputs, "log": text}
        if code != 0:
            result["outcome"] = "failure"
            result["failed_step"] = sid
            break
    if result["outcome"] == "success":
        for name, spec in (action.get("outputs") or {}).items():
            result["outputs"][name] = render(spec.get("value", ""), ctx)
    result["log"] = "\n".join(log)
    with open(a.result, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(result["log"])
    return 0 if result["outcome"] == "success" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Unsupported as e:
        print(f"[runner] {e}", file=sys.stderr)
        sys.exit(2)
PY

# jq-like reads of a result file: json_get FILE PYTHON-EXPRESSION-ON-r
json_get() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
v = eval(sys.argv[2], {"r": r})
print("" if v is None else v)
PY
}

# --- the workspace -------------------------------------------------------------------------
WS=$TMP/ws
mkdir -p "$WS/results" "$WS/logs/deep/er" "$WS/other"
head -c 3000 /dev/urandom >"$WS/results/a.json"
echo '{"b": 2}' >"$WS/results/b.json"
head -c 70000 /dev/urandom >"$WS/logs/deep/er/run 1.txt"
echo "top" >"$WS/logs/top.txt"
echo "not matched" >"$WS/results/ignored.bin"
mkdir "$WS/results/dir.json" # a directory that a glob matches: skipped
SUMMARY=$TMP/summary.md

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# Runs the action; sets RESULT (the result file) and LOG; returns the runner's status.
RUN_N=0
run_action() { # [--path-without-cargo] [--env K=V]... [--input k=v]...
  RUN_N=$((RUN_N + 1))
  RESULT=$TMP/result-$RUN_N.json
  LOG=$TMP/log-$RUN_N.txt
  local rt=$TMP/runner-temp-$RUN_N
  mkdir -p "$rt"
  local status=0
  "$PY" "$TMP/runner.py" --action "$ROOT/action.yml" --workspace "$WS" --result "$RESULT" \
    --env GITHUB_ACTIONS=true --env CI=true --env RUNNER_OS=Linux --env RUNNER_ARCH=X64 \
    --env "RUNNER_TEMP=$rt" --env "GITHUB_WORKSPACE=$WS" --env "GITHUB_STEP_SUMMARY=$SUMMARY" \
    --env GITHUB_REPOSITORY=octo-org/octo-repo --env GITHUB_REPOSITORY_ID=1296269 \
    --env GITHUB_RUN_ID=4242424242 --env GITHUB_RUN_ATTEMPT=1 \
    --env GITHUB_SHA=6dcb09b5b57875f334f61aebed695e2e4193db5e \
    --env GITHUB_TOKEN_FOR_CONTEXT=ghs_context_token \
    "$@" >"$LOG" 2>&1 || status=$?
  if ((status == 2)); then
    failed "the runner could not run action.yml" "$(cat "$LOG")"
  fi
  return "$status"
}
log_has() { grep -qF -- "$1" "$LOG"; }
result_is() { [[ $(json_get "$RESULT" "r['outcome']") == "$1" ]]; }

# --- lint ----------------------------------------------------------------------------------
echo "== lint: action.yml, examples/, .github/workflows/"
if lint_out=$("$PY" scripts/lint-workflows.py 2>&1); then
  pass "lint-workflows.py: $(printf '%s\n' "$lint_out" | tail -n 1)"
else
  failed "lint-workflows.py" "$lint_out"
fi

# --- the dev server ------------------------------------------------------------------------
echo "== runproof serve --dev"
mkdir -p "$TMP/data"
cat >"$TMP/runproof.toml" <<EOF
listen = "127.0.0.1:0"
data_dir = "$TMP/data"
EOF
# port 0: the server prints the address it bound, so no port can be taken in between.
"$BIN" serve --dev --config "$TMP/runproof.toml" >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER_PID=$!
URL='' TOKEN_URL='' TOKEN='' API_KEY='' AUDIENCE=''
for _ in $(seq 1 200); do # at most 20 s
  if grep -q "ACTIONS_ID_TOKEN_REQUEST_TOKEN=" "$TMP/server.out" 2>/dev/null; then
    URL=$(sed -n 's/^runproof dev server on \([^ ]*\).*/\1/p' "$TMP/server.out")
    TOKEN_URL=$(sed -n "s/^ *export ACTIONS_ID_TOKEN_REQUEST_URL='\(.*\)'\$/\1/p" "$TMP/server.out")
    TOKEN=$(sed -n "s/^ *export ACTIONS_ID_TOKEN_REQUEST_TOKEN='\(.*\)'\$/\1/p" "$TMP/server.out")
    API_KEY=$(sed -n 's/^read API key: *//p' "$TMP/server.out")
    AUDIENCE=$(sed -n 's/^audience: *//p' "$TMP/server.out")
    break
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  sleep 0.1
done
if [[ -z $URL || -z $TOKEN_URL || -z $TOKEN || -z $API_KEY || -z $AUDIENCE ]]; then
  failed "the dev server started and printed its URL, token endpoint, API key and audience" \
    "$(cat "$TMP/server.out" "$TMP/server.err")"
  finish
fi
pass "the dev server runs on $URL"
OIDC_ENV=(--env "ACTIONS_ID_TOKEN_REQUEST_URL=$TOKEN_URL" --env "ACTIONS_ID_TOKEN_REQUEST_TOKEN=$TOKEN")

api() { # path: GET with the API key, body on stdout
  curl -sf --max-time 10 -H "Authorization: Bearer $API_KEY" "$URL$1"
}
upload_count() {
  api "/v1/uploads?limit=100" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["uploads"]))'
}

# Checks that upload id $1 is a verified upload of local file $2.
check_upload() { # id file
  local id=$1 file=$2 record got want
  if ! record=$(api "/v1/uploads/$id"); then
    failed "GET /v1/uploads/$id answers" && return
  fi
  want="$(sha256_of "$WS/$file") $(wc -c <"$WS/$file" | tr -d ' ') $(basename "$file") verified"
  got=$(python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["sha256"], r["size"], r["name"], r["status"])' <<<"$record")
  if [[ $got == "$want" ]]; then
    pass "upload $id: sha256, size, name of $file, verified"
  else
    failed "upload $id matches $file" "want: $want"$'\n'"got:  $got"
  fi
  if [[ $(api "/v1/uploads/$id/content" | sha256_of /dev/stdin) == "$(sha256_of "$WS/$file")" ]]; then
    pass "upload $id: its content is $file's bytes"
  else
    failed "upload $id: its content is $file's bytes"
  fi
}

# --- 1. oidc, RUNPROOF_BIN, globs --------------------------------------------------------------
echo "== oidc upload: globs, RUNPROOF_BIN"
FILES=$'results/*.json\n  logs/**/*.txt  \n\n# a comment\nresults/a.json\r'
EXPECTED=("results/a.json" "results/b.json" "logs/deep/er/run 1.txt" "logs/top.txt")
: >"$SUMMARY"
if run_action "${OIDC_ENV[@]}" --env "RUNPROOF_BIN=$BIN" \
  --input "url=$URL" --input "files=$FILES"; then
  pass "the action succeeds"
else
  failed "the action succeeds" "$(cat "$LOG")"
fi
check "install step: bin is RUNPROOF_BIN" \
  test "$(json_get "$RESULT" "r['steps']['install']['outputs'].get('bin')")" == "$BIN"
STEP_IDS=$(json_get "$RESULT" "r['steps'].get('upload', {}).get('outputs', {}).get('upload-ids')")
IFS=, read -r -a IDS <<<"$STEP_IDS"
if ((${#IDS[@]} == ${#EXPECTED[@]})); then
  pass "the upload step's \$GITHUB_OUTPUT has upload-ids= with ${#EXPECTED[@]} ids"
else
  failed "the upload step's \$GITHUB_OUTPUT has upload-ids= with ${#EXPECTED[@]} ids" "upload-ids=$STEP_IDS"$'\n'"$(cat "$LOG")"
fi
check "the action's output upload-ids is the step's" \
  test "$(json_get "$RESULT" "r['outputs'].get('upload-ids')")" == "$STEP_IDS"
check "the step summary has the table header" grep -qF "| file | size | sha256 | id | status |" "$SUMMARY"
# shellcheck disable=SC2016 # backquotes of the markdown table
rows=$(grep -c '^| .* | `[0-9a-f-]*` | verified |$' "$SUMMARY" || true)
check "the step summary has ${#EXPECTED[@]} verified rows" test "$rows" -eq "${#EXPECTED[@]}"
for i in "${!EXPECTED[@]}"; do
  if [[ -n ${IDS[i]:-} ]]; then check_upload "${IDS[i]}" "${EXPECTED[i]}"; fi
done

# --- 2. runproof-bin input, explicit audience ------------------------------------------------
echo "== oidc upload: runproof-bin input, explicit audience"
if run_action "${OIDC_ENV[@]}" --input "url=$URL/" --input "files=other/../results/b.json" \
  --input "runproof-bin=$BIN" --input "audience=$AUDIENCE"; then
  pass "the action succeeds"
  id=$(json_get "$RESULT" "r['outputs'].get('upload-ids')")
  if [[ $id =~ ^[0-9a-f-]+$ ]]; then check_upload "$id" "results/b.json"; else failed "one upload id" "$id"; fi
else
  failed "the action succeeds" "$(cat "$LOG")"
fi

# --- 3. nothing matches ----------------------------------------------------------------------
echo "== a glob that matches nothing"
before=$(upload_count)
if run_action "${OIDC_ENV[@]}" --env "RUNPROOF_BIN=$BIN" --input "url=$URL" \
  --input $'files=results/a.json\nnothing/**/*.json'; then
  failed "fail-on-error true: the action fails" "$(cat "$LOG")"
else
  if result_is failure && log_has "::error::runproof: no file matches 'nothing/**/*.json'"; then
    pass "fail-on-error true: the action fails with an error naming the glob"
  else
    failed "fail-on-error true: the action fails with an error naming the glob" "$(cat "$LOG")"
  fi
fi
if run_action "${OIDC_ENV[@]}" --env "RUNPROOF_BIN=$BIN" --input "url=$URL" \
  --input $'files=results/a.json\nnothing/**/*.json' --input fail-on-error=false; then
  if log_has "::warning::runproof: no file matches 'nothing/**/*.json'" && ! log_has "::error::"; then
    pass "fail-on-error false: a warning, and the action succeeds"
  else
    failed "fail-on-error false: a warning, and the action succeeds" "$(cat "$LOG")"
  fi
  check "fail-on-error false: upload-ids is empty" test -z "$(json_get "$RESULT" "r['outputs'].get('upload-ids')")"
else
  failed "fail-on-error false: the action succeeds" "$(cat "$LOG")"
fi
check "nothing was uploaded when a glob matched nothing" test "$(upload_count)" -eq "$before"

# --- 4. the server refuses -------------------------------------------------------------------
echo "== an upload the server refuses (wrong audience)"
if run_action "${OIDC_ENV[@]}" --env "RUNPROOF_BIN=$BIN" --input "url=$URL" \
  --input "files=results/a.json" --input audience=https://wrong.invalid; then
  failed "fail-on-error true: the action fails" "$(cat "$LOG")"
elif log_has "wrong_audience" && log_has "::error::runproof: runproof upload failed"; then
  pass "fail-on-error true: the action fails with the server's code"
else
  failed "fail-on-error true: the action fails with the server's code" "$(cat "$LOG")"
fi
if run_action "${OIDC_ENV[@]}" --env "RUNPROOF_BIN=$BIN" --input "url=$URL" \
  --input "files=results/a.json" --input audience=https://wrong.invalid --input fail-on-error=false &&
  log_has "::warning::runproof: runproof upload failed"; then
  pass "fail-on-error false: a warning, and the action succeeds"
else
  failed "fail-on-error false: a warning, and the action succeeds" "$(cat "$LOG")"
fi
if run_action --env "RUNPROOF_BIN=$BIN" --input "url=$URL" --input "files=results/a.json"; then
  failed "without ACTIONS_ID_TOKEN_REQUEST_*: the action fails" "$(cat "$LOG")"
elif log_has "id-token: write"; then
  pass "without ACTIONS_ID_TOKEN_REQUEST_*: the action fails and says id-token: write"
else
  failed "without ACTIONS_ID_TOKEN_REQUEST_*: the action fails and says id-token: write" "$(cat "$LOG")"
fi

# --- 5. invalid inputs fail whatever fail-on-error says --------------------------------------
echo "== invalid inputs"
invalid_case() { # description expected-message input...
  local desc=$1 msg=$2
  shift 2
  local args=()
  for i in "$@"; do args+=(--input "$i"); done
  if run_action --env "RUNPROOF_BIN=$BIN" "${args[@]}" --input fail-on-error=false; then
    failed "$desc" "$(cat "$LOG")"
  elif log_has "::error::runproof: $msg"; then
    pass "$desc"
  else
    failed "$desc" "$(cat "$LOG")"
  fi
}
invalid_case "mode bogus fails" "mode must be" "url=$URL" "files=results/a.json" mode=bogus
invalid_case "plain http to a remote host fails" "url must start with https://" \
  "url=http://runproof.example.com" "files=results/a.json"
invalid_case "http://localhost.example.com is not loopback" "url must start with https://" \
  "url=http://localhost.example.com" "files=results/a.json"
invalid_case "empty files fails" "files is empty" "url=$URL" $'files=\n  \n'
if run_action --env "RUNPROOF_BIN=$BIN" --input "url=$URL" --input "files=results/a.json" \
  --input fail-on-error=maybe; then
  failed "fail-on-error maybe fails" "$(cat "$LOG")"
else
  check "fail-on-error maybe fails" log_has "::error::runproof: fail-on-error must be"
fi

# --- 6. argument passing, with a stub that records what it gets ------------------------------
echo "== modes and hostile inputs (stub binary)"
mkdir -p "$TMP/stub"
STUB=$TMP/stub/runproof
cat >"$STUB" <<'SH'
#!/usr/bin/env bash
if [[ ${1:-} == --version ]]; then echo "runproof 0.0.0-stub"; exit 0; fi
{
  printf 'arg:%s\n' "$@"
  printf 'GITHUB_TOKEN=%s\n' "${GITHUB_TOKEN-<unset>}"
  printf 'RUNPROOF_ACTION_GITHUB_TOKEN=%s\n' "${RUNPROOF_ACTION_GITHUB_TOKEN-<unset>}"
} >"$STUB_RECORD"
echo "upload-ids=stub-1" >>"$GITHUB_OUTPUT"
SH
chmod +x "$STUB"
RECORD=$TMP/stub-record.txt
stub_run() { rm -f "$RECORD"; run_action --env "RUNPROOF_BIN=$STUB" --env "STUB_RECORD=$RECORD" "$@"; }
# shellcheck disable=SC2329 # called through check
record_is() { # expected lines
  local want
  want=$(printf '%s\n' "$@")
  if [[ $(cat "$RECORD" 2>/dev/null) == "$want" ]]; then return 0; fi
  echo "want:" >&2; printf '%s\n' "$want" >&2; echo "got:" >&2; cat "$RECORD" >&2 2>/dev/null || true
  return 1
}
stub_args() { # mode [audience]: the expected argument lines for results/a.json
  local lines=(arg:upload "arg:--url" "arg:https://runproof.example.com" "arg:--mode" "arg:$1" "arg:--no-progress")
  if [[ -n ${2:-} ]]; then lines+=("arg:--audience" "arg:$2"); fi
  lines+=("arg:--" "arg:results/a.json")
  printf '%s\n' "${lines[@]}"
}
STUB_URL=https://runproof.example.com
if stub_run --input "url=$STUB_URL" --input "files=results/a.json" --input mode=github-token; then
  mapfile -t want < <(stub_args github-token)
  check "github-token: --mode github-token, GITHUB_TOKEN from the input's default \${{ github.token }}" \
    record_is "${want[@]}" GITHUB_TOKEN=ghs_context_token "RUNPROOF_ACTION_GITHUB_TOKEN=<unset>"
else
  failed "github-token mode runs" "$(cat "$LOG")"
fi
if stub_run --input "url=$STUB_URL" --input "files=results/a.json" --input github-token=ghs_given; then
  mapfile -t want < <(stub_args oidc)
  check "oidc: --mode oidc, and no GITHUB_TOKEN exported even with a github-token input" \
    record_is "${want[@]}" "GITHUB_TOKEN=<unset>" "RUNPROOF_ACTION_GITHUB_TOKEN=<unset>"
else
  failed "oidc mode runs" "$(cat "$LOG")"
fi
if stub_run --input "url=$STUB_URL" --input "files=results/a.json" --input mode=pending; then
  mapfile -t want < <(stub_args pending)
  check "pending: --mode pending passed through" \
    record_is "${want[@]}" "GITHUB_TOKEN=<unset>" "RUNPROOF_ACTION_GITHUB_TOKEN=<unset>"
  check "the stub's upload-ids becomes the action's output" \
    test "$(json_get "$RESULT" "r['outputs'].get('upload-ids')")" == stub-1
else
  failed "pending mode runs" "$(cat "$LOG")"
fi
HOSTILE_AUDIENCE="x'\"; touch INJECTED; echo \$(touch INJECTED) \`touch INJECTED\` \${{ github.token }}"
if stub_run --input "url=$STUB_URL" --input "files=results/a.json" \
  --input "audience=$HOSTILE_AUDIENCE"; then
  mapfile -t want < <(stub_args oidc "$HOSTILE_AUDIENCE")
  check "a hostile audience reaches the binary as one unchanged argument" \
    record_is "${want[@]}" "GITHUB_TOKEN=<unset>" "RUNPROOF_ACTION_GITHUB_TOKEN=<unset>"
else
  failed "a hostile audience reaches the binary" "$(cat "$LOG")"
fi
stub_run --input "url=https://x.invalid/\$(touch INJECTED)" --input fail-on-error=false \
  --input $'files=results/a.json\n$(touch INJECTED)\n`touch INJECTED`\n"; touch INJECTED; "' || true
check "hostile globs: a warning naming them, the step succeeds" \
  log_has "::warning::runproof: no file matches '\$(touch INJECTED)' '\`touch INJECTED\`'"
check "no input was run as shell code" \
  test -z "$(find "$WS" "$TMP" "$ROOT" -maxdepth 2 -name INJECTED -print -quit 2>/dev/null)"
if stub_run --input "url=$STUB_URL" --input "files=-rf.json"; then
  failed "a file named like an option: the glob matches nothing" "$(cat "$LOG")"
else
  pass "a file named like an option: the glob matches nothing"
fi
touch -- "$WS/-rf.json"
if stub_run --input "url=$STUB_URL" --input "files=-rf.json" &&
  grep -qxF -- "arg:--" "$RECORD" && tail -n 3 "$RECORD" | grep -qxF -- "arg:-rf.json"; then
  pass "a file named like an option comes after --"
else
  failed "a file named like an option comes after --" "$(cat "$LOG" "$RECORD" 2>/dev/null)"
fi
rm -f -- "$WS/-rf.json"

# --- 7. the download path, against a fake release on loopback --------------------------------
echo "== download: release assets, SHA256SUMS, cargo install fallback"
REL=$TMP/releases
package() { # version target
  local d=$TMP/pkg/runproof-$1-$2
  mkdir -p "$d" "$REL/$1"
  cp "$STUB" "$d/runproof"
  tar -czf "$REL/$1/runproof-$1-$2.tar.gz" -C "$TMP/pkg" "runproof-$1-$2"
}
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin; do
  package v0.1.0 "$target"
done
(cd "$REL/v0.1.0" && for f in *.tar.gz; do printf '%s  %s\n' "$(sha256_of "$f")" "$f"; done >SHA256SUMS)
package v0.1.1 x86_64-unknown-linux-gnu
printf '%064d  %s\n' 0 runproof-v0.1.1-x86_64-unknown-linux-gnu.tar.gz >"$REL/v0.1.1/SHA256SUMS"
python3 -m http.server 0 --bind 127.0.0.1 --directory "$REL" >"$TMP/http.out" 2>&1 &
HTTP_PID=$!
REL_URL=
for _ in $(seq 1 100); do # at most 10 s
  port=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$TMP/http.out" | head -n 1)
  if [[ -n $port ]]; then REL_URL=http://127.0.0.1:$port; break; fi
  sleep 0.1
done
if [[ -z $REL_URL ]]; then
  failed "the fake release server starts" "$(cat "$TMP/http.out")"
else
  mkdir -p "$TMP/fakecargo"
  cat >"$TMP/fakecargo/cargo" <<'SH'
#!/usr/bin/env bash
printf '%s\n' "$@" >"$FAKE_CARGO_RECORD"
root=
prev=
for a in "$@"; do
  if [[ $prev == --root ]]; then root=$a; fi
  prev=$a
done
mkdir -p "$root/bin"
cp "$STUB" "$root/bin/runproof"
SH
  chmod +x "$TMP/fakecargo/cargo"
  CARGO_RECORD=$TMP/cargo-record.txt
  dl_run() { # [--path-without-cargo] os arch version...
    local extra=()
    if [[ $1 == --path-without-cargo ]]; then extra=(--path-without-cargo); shift; fi
    local os=$1 arch=$2 version=$3
    shift 3
    rm -f "$RECORD" "$CARGO_RECORD"
    run_action "${extra[@]}" --env "RUNPROOF_DOWNLOAD_URL=$REL_URL/" --env "STUB_RECORD=$RECORD" \
      --env "STUB=$STUB" --env "FAKE_CARGO_RECORD=$CARGO_RECORD" \
      --env "PATH=$TMP/fakecargo:$PATH" --env "RUNNER_OS=$os" --env "RUNNER_ARCH=$arch" \
      --input "url=$STUB_URL" --input "files=results/a.json" --input "version=$version" "$@"
  }
  for platform in "Linux X64 x86_64-unknown-linux-gnu" "Linux ARM64 aarch64-unknown-linux-gnu" \
    "macOS X64 x86_64-apple-darwin" "macOS ARM64 aarch64-apple-darwin"; do
    read -r os arch target <<<"$platform"
    if dl_run "$os" "$arch" v0.1.0 &&
      [[ $(json_get "$RESULT" "r['steps']['install']['outputs'].get('bin')") == */runproof-v0.1.0/runproof-v0.1.0-$target/runproof ]] &&
      [[ -s $RECORD && ! -e $CARGO_RECORD ]] && log_has "runproof-v0.1.0-$target.tar.gz: OK"; then
      pass "$os/$arch: downloads, verifies and runs runproof-v0.1.0-$target.tar.gz"
    else
      failed "$os/$arch: downloads, verifies and runs runproof-v0.1.0-$target.tar.gz" "$(cat "$LOG")"
    fi
  done
  if dl_run Linux X64 v0.1.1 --input fail-on-error=false && log_has "::warning::runproof: runproof-v0.1.1-x86_64-unknown-linux-gnu.tar.gz does not match" &&
    [[ ! -e $RECORD && ! -e $CARGO_RECORD ]]; then
    pass "a checksum mismatch, fail-on-error false: a warning, nothing run"
  else
    failed "a checksum mismatch, fail-on-error false: a warning, nothing run" "$(cat "$LOG")"
  fi
  if dl_run Linux X64 v0.1.1; then
    failed "a checksum mismatch fails the action" "$(cat "$LOG")"
  elif log_has "does not match the SHA-256" && [[ ! -e $RECORD && ! -e $CARGO_RECORD ]]; then
    pass "a checksum mismatch fails the action: nothing run, no build from source"
  else
    failed "a checksum mismatch fails the action: nothing run, no build from source" "$(cat "$LOG")"
  fi
  if dl_run Linux X64 v0.2.0 && [[ -s $RECORD ]] &&
    [[ $(tr '\n' ' ' <"$CARGO_RECORD") == "install --locked --git https://github.com/runproof/runproof --tag v0.2.0 --root "*"/runproof-v0.2.0/cargo runproof " ]]; then
    pass "no asset (404): cargo install --locked --git … --tag v0.2.0 runproof, then runs it"
  else
    failed "no asset (404): cargo install --locked --git … --tag v0.2.0 runproof, then runs it" "$(cat "$LOG" "$CARGO_RECORD" 2>/dev/null)"
  fi
  if dl_run Windows X64 v0.1.0 && [[ -s $CARGO_RECORD && -s $RECORD ]]; then
    pass "a platform without an asset builds from source"
  else
    failed "a platform without an asset builds from source" "$(cat "$LOG")"
  fi
  if dl_run --path-without-cargo Linux X64 v0.2.0 --input fail-on-error=false &&
    log_has "::warning::runproof: no release binary for Linux/X64 could be downloaded, and cargo is not installed" &&
    log_has "runproof: not installed, nothing uploaded" && [[ ! -e $RECORD ]]; then
    pass "no asset and no cargo, fail-on-error false: a warning, the action succeeds"
  else
    failed "no asset and no cargo, fail-on-error false: a warning, the action succeeds" "$(cat "$LOG")"
  fi
  if dl_run --path-without-cargo Linux X64 v0.2.0; then
    failed "no asset and no cargo: the action fails" "$(cat "$LOG")"
  else
    check "no asset and no cargo: the action fails" log_has "::error::runproof: no release binary"
  fi
  if dl_run Linux X64 latest; then
    failed "version latest is refused" "$(cat "$LOG")"
  else
    check "version latest is refused" log_has "::error::runproof: version must be a release tag"
  fi
fi

elapsed=$((SECONDS - START))
check "the tests took less than 60 s (${elapsed} s)" test "$elapsed" -lt 60
finish
