#!/usr/bin/env bash
# shellcheck disable=SC2329 # the sections, and what they use, are called by name at the end
# Tests action.yml by running its steps the way a GitHub Actions runner runs a composite
# action (not through `act`): a small Python runner parses action.yml, resolves the
# `${{ }}` expressions it uses (inputs with their defaults, steps.<id>.outputs, github.*,
# runner.*, env.*; anything else is an error), writes each `run:` to a file and runs it with
# `bash --noprofile --norc -eo pipefail`, with a fresh $GITHUB_OUTPUT per step, in a fake
# runner environment.
#
# Sections (all by default; `--only SECTION`, repeatable, runs some):
#   lint      scripts/lint-workflows.py: action.yml, examples/ and .github/workflows/
#   upload    real uploads to `runproof serve --dev` on loopback (its fake GitHub mints the
#             OIDC tokens): globs, outputs, the step summary, fail-on-error, the audience
#   invalid   invalid inputs fail whatever fail-on-error says (URLs parsed, not matched)
#   stub      argument passing, modes and hostile inputs, against a stub binary
#   files     symlinks, paths outside the workspace and special files are refused
#   hostile   a hostile server's id, code and detail reach no output and no workflow command
#   download  the binary pinned in action.yml by SHA-256 (scripts/pin-release.sh), a tampered
#             release, the download URL's loopback check and redirects, the build from source
#             by commit
#
# The github-token mode is only tested with the stub: a real upload would need a GITHUB_TOKEN
# from the dev server's fake GitHub, which `serve --dev` does not hand out.
#
# Needs python3 (PyYAML is installed with pip when missing), curl, tar, git, mkfifo, sha256sum
# or shasum. Builds target/debug/runproof with cargo when it is missing (RUNPROOF_TEST_BIN:
# another binary). RUNPROOF_TEST_KEEP=1 keeps the temporary directory (logs, results). The
# last line is `N passed, M failed`; the exit status is 0 only when M is 0 and at least one
# check ran.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ALL_SECTIONS=(lint upload invalid stub files hostile download)
SECTIONS=()
while (($# > 0)); do
  case $1 in
    --only)
      case " ${ALL_SECTIONS[*]} " in
        *" ${2:-} "*) SECTIONS+=("$2") ;;
        *) echo "unknown section '${2:-}': one of ${ALL_SECTIONS[*]}" >&2; exit 2 ;;
      esac
      shift 2
      ;;
    *) echo "usage: $0 [--only SECTION]..." >&2; exit 2 ;;
  esac
done
if ((${#SECTIONS[@]} == 0)); then SECTIONS=("${ALL_SECTIONS[@]}"); fi

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
  if ((FAILED > 0 || PASSED == 0)); then exit 1; fi
  exit 0
}

# --- prerequisites -------------------------------------------------------------------------
for tool in python3 curl tar git mkfifo; do
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
TMP=$(cd "$TMP" && pwd -P)
PIDS=()
cleanup() {
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill "$pid" 2>/dev/null || :; done
  wait 2>/dev/null || :
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
        "action_ref": env.get("GITHUB_ACTION_REF_FOR_CONTEXT", ""),
    }
    env.pop("GITHUB_TOKEN_FOR_CONTEXT", None)
    env.pop("GITHUB_ACTION_REF_FOR_CONTEXT", None)
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
import json, os, sys
if not os.path.exists(sys.argv[1]):
    sys.exit(0)  # the runner could not write it: run_action has said so
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
STUB_URL=https://runproof.example.com

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# Runs the action; sets RESULT (the result file) and LOG; returns the runner's status.
# ACTION: the action.yml to run (default: the repository's).
ACTION=$ROOT/action.yml
RUN_N=0
run_action() { # [--path-without-cargo] [--env K=V]... [--input k=v]...
  RUN_N=$((RUN_N + 1))
  RESULT=$TMP/result-$RUN_N.json
  LOG=$TMP/log-$RUN_N.txt
  local rt=$TMP/runner-temp-$RUN_N
  mkdir -p "$rt"
  local status=0
  "$PY" "$TMP/runner.py" --action "$ACTION" --workspace "$WS" --result "$RESULT" \
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
# No line of the log is a workflow command but the action's own annotations: the runner
# reads a line as a command when it starts with `::`, after any leading spaces.
only_own_commands() {
  ! grep -E '^[[:space:]]*::' "$LOG" | grep -vE '^::(error|warning)::runproof: ' >/dev/null
}

# Waits for a server started in the background to print its port; sets PORT.
wait_port() { # file pattern-with-one-group
  PORT=
  for _ in $(seq 1 100); do # at most 10 s
    PORT=$(sed -n "s/$2/\1/p" "$1" | head -n 1)
    if [[ -n $PORT ]]; then return 0; fi
    sleep 0.1
  done
  return 1
}

# The stub binary: records its arguments and two variables, and writes an output.
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

# --- lint ----------------------------------------------------------------------------------
section_lint() {
  echo "== lint: action.yml, examples/, .github/workflows/"
  local lint_out
  if lint_out=$("$PY" scripts/lint-workflows.py 2>&1); then
    pass "lint-workflows.py: $(printf '%s\n' "$lint_out" | tail -n 1)"
  else
    failed "lint-workflows.py" "$lint_out"
  fi
}

# --- uploads to the dev server -------------------------------------------------------------
start_dev_server() {
  echo "== runproof serve --dev"
  mkdir -p "$TMP/data"
  cat >"$TMP/runproof.toml" <<EOF
listen = "127.0.0.1:0"
data_dir = "$TMP/data"
EOF
  # port 0: the server prints the address it bound, so no port can be taken in between.
  "$BIN" serve --dev --config "$TMP/runproof.toml" >"$TMP/server.out" 2>"$TMP/server.err" &
  local pid=$!
  PIDS+=("$pid")
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
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [[ -z $URL || -z $TOKEN_URL || -z $TOKEN || -z $API_KEY || -z $AUDIENCE ]]; then
    failed "the dev server started and printed its URL, token endpoint, API key and audience" \
      "$(cat "$TMP/server.out" "$TMP/server.err")"
    return 1
  fi
  pass "the dev server runs on $URL"
  OIDC_ENV=(--env "ACTIONS_ID_TOKEN_REQUEST_URL=$TOKEN_URL" --env "ACTIONS_ID_TOKEN_REQUEST_TOKEN=$TOKEN")
}

api() { # path: GET with the API key, body on stdout
  curl -sf --max-time 10 -H "Authorization: Bearer $API_KEY" "$URL$1"
}
upload_count() {
  api "/v1/uploads?limit=100" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["uploads"]))'
}

# Checks that upload id $1 is a verified upload of local file $2, named $3.
check_upload() { # id file name
  local id=$1 file=$2 name=$3 record got want
  if ! record=$(api "/v1/uploads/$id"); then
    failed "GET /v1/uploads/$id answers" && return
  fi
  want="$(sha256_of "$WS/$file") $(wc -c <"$WS/$file" | tr -d ' ') $name verified"
  got=$(python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["sha256"], r["size"], r["name"], r["status"])' <<<"$record")
  if [[ $got == "$want" ]]; then
    pass "upload $id: sha256, size, name $name, verified"
  else
    failed "upload $id matches $file" "want: $want"$'\n'"got:  $got"
  fi
  if [[ $(api "/v1/uploads/$id/content" | sha256_of /dev/stdin) == "$(sha256_of "$WS/$file")" ]]; then
    pass "upload $id: its content is $file's bytes"
  else
    failed "upload $id: its content is $file's bytes"
  fi
}

section_upload() {
  start_dev_server || return 0
  local FILES EXPECTED STEP_IDS IDS rows i id before
  echo "== oidc upload: globs, RUNPROOF_BIN"
  FILES=$'results/*.json\n  logs/**/*.txt  \n\n# a comment\nresults/a.json\r'
  EXPECTED=("results/a.json" "results/b.json" "logs/deep/er/run 1.txt" "logs/top.txt")
  : >"$SUMMARY"
  # The dev server's audience is not its loopback host: it must be given.
  if run_action "${OIDC_ENV[@]}" --env "RUNPROOF_BIN=$BIN" \
    --input "url=$URL" --input "files=$FILES" --input "audience=$AUDIENCE"; then
    pass "the action succeeds"
  else
    failed "the action succeeds" "$(cat "$LOG")"
  fi
  check "install step: bin is RUNPROOF_BIN" \
    test "$(json_get "$RESULT" "r['steps']['install']['outputs'].get('bin')")" == "$BIN"
  STEP_IDS=$(json_get "$RESULT" "r['steps'].get('upload', {}).get('outputs', {}).get('upload-ids')")
  IFS=, read -r -a IDS <<<"$STEP_IDS"
  if ((${#IDS[@]} == ${#EXPECTED[@]})); then
    pass "the upload step's \$GITHUB_OUTPUT has upload-ids with ${#EXPECTED[@]} ids"
  else
    failed "the upload step's \$GITHUB_OUTPUT has upload-ids with ${#EXPECTED[@]} ids" "upload-ids=$STEP_IDS"$'\n'"$(cat "$LOG")"
  fi
  check "the action's output upload-ids is the step's" \
    test "$(json_get "$RESULT" "r['outputs'].get('upload-ids')")" == "$STEP_IDS"
  check "the step summary has the table header" grep -qF "| file | size | sha256 | id | status |" "$SUMMARY"
  # shellcheck disable=SC2016 # backquotes of the markdown table
  rows=$(awk '/^\| .* \| `[0-9a-f-]*` \| verified \|$/ { n++ } END { print n + 0 }' "$SUMMARY")
  check "the step summary has ${#EXPECTED[@]} verified rows" test "$rows" -eq "${#EXPECTED[@]}"
  for i in "${!EXPECTED[@]}"; do
    if [[ -n ${IDS[i]:-} ]]; then check_upload "${IDS[i]}" "${EXPECTED[i]}" "${EXPECTED[i]}"; fi
  done

  echo "== oidc upload: runproof-bin input, explicit audience, a path with .."
  if run_action "${OIDC_ENV[@]}" --input "url=$URL/" --input "files=other/../results/b.json" \
    --input "runproof-bin=$BIN" --input "audience=$AUDIENCE"; then
    pass "the action succeeds"
    id=$(json_get "$RESULT" "r['outputs'].get('upload-ids')")
    if [[ $id =~ ^[0-9a-f-]+$ ]]; then check_upload "$id" "results/b.json" "results/b.json"; else failed "one upload id" "$id"; fi
  else
    failed "the action succeeds" "$(cat "$LOG")"
  fi

  echo "== the server's audience is not its host, and none is given"
  before=$(upload_count)
  if run_action "${OIDC_ENV[@]}" --env "RUNPROOF_BIN=$BIN" --input "url=$URL" --input "files=results/a.json"; then
    failed "the action fails" "$(cat "$LOG")"
  elif log_has "--audience" && log_has "no token is requested" && log_has "::error::runproof: runproof upload failed"; then
    pass "the action fails before any token, saying to give the audience"
  else
    failed "the action fails before any token, saying to give the audience" "$(cat "$LOG")"
  fi
  check "nothing was uploaded for an audience the server may not choose" test "$(upload_count)" -eq "$before"

  echo "== a glob that matches nothing"
  before=$(upload_count)
  if run_action "${OIDC_ENV[@]}" --env "RUNPROOF_BIN=$BIN" --input "url=$URL" --input "audience=$AUDIENCE" \
    --input $'files=results/a.json\nnothing/**/*.json'; then
    failed "fail-on-error true: the action fails" "$(cat "$LOG")"
  elif result_is failure && log_has "::error::runproof: no file matches 'nothing/**/*.json'"; then
    pass "fail-on-error true: the action fails with an error naming the glob"
  else
    failed "fail-on-error true: the action fails with an error naming the glob" "$(cat "$LOG")"
  fi
  if run_action "${OIDC_ENV[@]}" --env "RUNPROOF_BIN=$BIN" --input "url=$URL" --input "audience=$AUDIENCE" \
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
}

# --- invalid inputs fail whatever fail-on-error says ---------------------------------------
invalid_case() { # description expected-message input...
  local desc=$1 msg=$2
  shift 2
  local args=()
  for i in "$@"; do args+=(--input "$i"); done
  if stub_run "${args[@]}" --input fail-on-error=false; then
    failed "$desc" "$(cat "$LOG")"
  elif log_has "::error::runproof: $msg" && [[ ! -e $RECORD ]]; then
    pass "$desc"
  else
    failed "$desc" "$(cat "$LOG")"
  fi
}
section_invalid() {
  echo "== invalid inputs"
  invalid_case "mode bogus fails" "mode must be" "url=$STUB_URL" "files=results/a.json" mode=bogus
  invalid_case "plain http to a remote host fails" "url must start with https://" \
    "url=http://runproof.example.com" "files=results/a.json"
  invalid_case "http://localhost.example.com is not loopback" "url must start with https://" \
    "url=http://localhost.example.com" "files=results/a.json"
  local bypass
  for bypass in 'http://127.0.0.1:@evil.invalid/' 'http://127.0.0.1@evil.invalid' \
    'http://localhost:80@evil.invalid/x' 'http://127.0.0.1\@evil.invalid/' 'http://[::1]:@evil.invalid'; do
    invalid_case "url $bypass is not loopback (parsed, not matched)" "url must start with https://" \
      "url=$bypass" "files=results/a.json"
  done
  invalid_case "empty files fails" "files is empty" "url=$STUB_URL" $'files=\n  \n'
  if stub_run --input "url=$STUB_URL" --input "files=results/a.json" --input fail-on-error=maybe; then
    failed "fail-on-error maybe fails" "$(cat "$LOG")"
  else
    check "fail-on-error maybe fails" log_has "::error::runproof: fail-on-error must be"
  fi
}

# --- argument passing, with a stub that records what it gets --------------------------------
record_is() { # expected lines
  local want
  want=$(printf '%s\n' "$@")
  if [[ $(cat "$RECORD" 2>/dev/null) == "$want" ]]; then return 0; fi
  echo "want:" >&2
  printf '%s\n' "$want" >&2
  echo "got:" >&2
  if [[ -f $RECORD ]]; then cat "$RECORD" >&2; fi
  return 1
}
stub_args() { # mode [audience]: the expected argument lines for results/a.json
  local lines=(arg:upload "arg:--url" "arg:$STUB_URL" "arg:--mode" "arg:$1" "arg:--no-progress")
  if [[ -n ${2:-} ]]; then lines+=("arg:--audience" "arg:$2"); fi
  lines+=("arg:--" "arg:results/a.json")
  printf '%s\n' "${lines[@]}"
}
section_stub() {
  echo "== modes and hostile inputs (stub binary)"
  local want HOSTILE_AUDIENCE
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
  if stub_run --input "url=$STUB_URL" --input fail-on-error=false \
    --input $'files=results/a.json\n$(touch INJECTED)\n`touch INJECTED`\n"; touch INJECTED; "'; then
    check "hostile globs: a warning naming them, the step succeeds" \
      log_has "::warning::runproof: no file matches '\$(touch INJECTED)' '\`touch INJECTED\`'"
  else
    failed "hostile globs with fail-on-error false: the step succeeds" "$(cat "$LOG")"
  fi
  # shellcheck disable=SC2016 # the point: not expanded
  local hostile_url='https://x.invalid/$(touch${IFS}INJECTED)`touch${IFS}INJECTED`'
  if stub_run --input "url=$hostile_url" --input "files=results/a.json"; then
    check "a URL with shell code reaches the binary unchanged" grep -qxF "arg:$hostile_url" "$RECORD"
  else
    failed "a URL with shell code reaches the binary unchanged" "$(cat "$LOG")"
  fi
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
}

# --- symlinks, paths outside the workspace, special files ----------------------------------
section_files() {
  echo "== symlinks, paths outside the workspace and special files are refused"
  local out=$TMP/outside case_ files expect
  mkdir -p "$out/dir" "$WS/evil"
  echo "SECRET ACTIONS_RUNTIME_TOKEN=xyz" >"$out/secret.txt"
  echo "also secret" >"$out/dir/leak.json"
  ln -s "$out/secret.txt" "$WS/evil/report.json"
  ln -s /proc/self/environ "$WS/evil/environ.json"
  ln -s "$out/dir" "$WS/evil/linked"
  mkfifo "$WS/evil/fifo.json"
  # glob | what the refusal names
  for case_ in \
    "evil/report.json|'evil/report.json': evil/report.json is a symlink" \
    "evil/*.json|'evil/environ.json': evil/environ.json is a symlink" \
    "evil/linked/*.json|'evil/linked/leak.json': evil/linked is a symlink" \
    "evil/fifo.json|'evil/fifo.json': not a regular file" \
    "../outside/secret.txt|'../outside/secret.txt': outside the workspace" \
    "$out/secret.txt|'$out/secret.txt': outside the workspace" \
    "results/../../outside/*.txt|'results/../../outside/secret.txt': outside the workspace"; do
    files=${case_%%|*}
    expect=${case_#*|}
    if stub_run --input "url=$STUB_URL" --input $'files=results/a.json\n'"$files"; then
      failed "files: $files is refused" "$(cat "$LOG")"
    elif log_has "::error::runproof: refusing to upload " && log_has "$expect" && [[ ! -e $RECORD ]]; then
      pass "files: $files is refused, naming the path; nothing runs"
    else
      failed "files: $files is refused, naming the path; nothing runs" "$(cat "$LOG")"
    fi
  done
  if stub_run --input "url=$STUB_URL" --input "files=evil/report.json" --input fail-on-error=false &&
    log_has "::warning::runproof: refusing to upload 'evil/report.json'" && [[ ! -e $RECORD ]]; then
    pass "files: a symlink with fail-on-error false: a warning, nothing uploaded"
  else
    failed "files: a symlink with fail-on-error false: a warning, nothing uploaded" "$(cat "$LOG")"
  fi
  if stub_run --input "url=$STUB_URL" --input "files=$WS/results/b.json" &&
    grep -qxF "arg:$WS/results/b.json" "$RECORD"; then
    pass "files: an absolute path inside the workspace is accepted"
  else
    failed "files: an absolute path inside the workspace is accepted" "$(cat "$LOG")"
  fi
  # The binary refuses on its own too (a path the action never saw, e.g. a race).
  local bout status=0
  bout=$(cd "$WS" && GITHUB_REPOSITORY_ID=1 GITHUB_RUN_ID=1 GITHUB_SHA=abc \
    "$BIN" upload --url http://127.0.0.1:9 --mode pending -- evil/report.json 2>&1) || status=$?
  if ((status != 0)) && [[ $bout == *"evil/report.json"*"is a symlink"* ]]; then
    pass "runproof upload itself refuses a symlink, naming it"
  else
    failed "runproof upload itself refuses a symlink, naming it" "exit $status: $bout"
  fi
  rm -rf "$WS/evil"
}

# --- a hostile server ----------------------------------------------------------------------
section_hostile() {
  echo "== a hostile server: ids, codes and details that carry outputs and workflow commands"
  cat >"$TMP/hostile.py" <<'PY'
"""Answers like a runproof server that wants to inject outputs and workflow commands."""
import hashlib, json, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ID = "01900000-0000-7000-8000-0000000000a1"


class H(BaseHTTPRequestHandler):
    def send(self, status, body, ctype="application/json"):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = urllib.parse.urlparse(self.path).path
        if path == "/.well-known/runproof":
            self.send(200, {"audience": f"http://127.0.0.1:{self.server.server_port}/"})
        elif path == "/token":
            self.send(200, {"value": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"})
        else:
            self.send(404, {})

    def do_POST(self):
        url = urllib.parse.urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        name = urllib.parse.parse_qs(url.query).get("name", [""])[0]
        if name.startswith("refused"):
            self.send(403, {"code": "policy_denied\n::error::code-injected",
                            "detail": "no\r\n::warning::detail-injected\n::add-mask::x"},
                      "application/problem+json")
        else:
            self.send(201, {"id": ID + "\n::warning::injected\nupload-ids=pwned",
                            "status": "verified", "name": name, "size": len(body),
                            "sha256": hashlib.sha256(body).hexdigest()})

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(f"port {server.server_port}", flush=True)
server.serve_forever()
PY
  python3 "$TMP/hostile.py" >"$TMP/hostile.out" 2>&1 &
  PIDS+=("$!")
  if ! wait_port "$TMP/hostile.out" '^port \([0-9]*\)$'; then
    failed "the hostile server starts" "$(cat "$TMP/hostile.out")"
    return 0
  fi
  local hurl=http://127.0.0.1:$PORT keys
  local henv=(--env "RUNPROOF_BIN=$BIN" --env "ACTIONS_ID_TOKEN_REQUEST_URL=$hurl/token?api-version=2.0"
    --env ACTIONS_ID_TOKEN_REQUEST_TOKEN=runner-request-token)
  echo refused >"$WS/refused.json"
  if run_action "${henv[@]}" --input "url=$hurl" --input "files=results/b.json"; then
    failed "an id that is not a UUID fails the action" "$(cat "$LOG")"
  else
    check "an id that is not a UUID fails the action" log_has "::error::runproof: runproof upload failed"
    keys=$(json_get "$RESULT" "','.join(sorted(r['steps'].get('upload', {}).get('outputs', {})))")
    check "the step's outputs are upload-ids only (got: $keys)" test "$keys" == upload-ids
    check "upload-ids is empty, not the server's text" \
      test -z "$(json_get "$RESULT" "r['steps']['upload']['outputs'].get('upload-ids')")"
    if only_own_commands; then
      pass "no workflow command from the server's id"
    else
      failed "no workflow command from the server's id" "$(cat "$LOG")"
    fi
  fi
  if run_action "${henv[@]}" --input "url=$hurl" --input "files=refused.json"; then
    failed "a refusal fails the action" "$(cat "$LOG")"
  else
    check "a refusal's code and detail are in the log" log_has "403 policy_denied"
    check "no workflow command from the server's code and detail" only_own_commands
  fi
  rm -f "$WS/refused.json"
}

# --- the download path, against a fake release on loopback ----------------------------------
section_download() {
  echo "== download: the binary pinned in action.yml, the download URL, the build by commit"
  local REL=$TMP/releases PINNED_DIR=$TMP/pinned FAKE_COMMIT target
  FAKE_COMMIT=0123456789abcdef0123456789abcdef01234567
  package() { # version target [stub]
    local d=$TMP/pkg/runproof-$1-$2
    mkdir -p "$d" "$REL/$1"
    cp "${3:-$STUB}" "$d/runproof"
    tar -czf "$REL/$1/runproof-$1-$2.tar.gz" -C "$TMP/pkg" "runproof-$1-$2"
  }
  for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin; do
    package v0.1.0 "$target"
  done
  (cd "$REL/v0.1.0" && for f in *.tar.gz; do printf '%s  %s\n' "$(sha256_of "$f")" "$f"; done >SHA256SUMS)

  # The release helper pins v0.1.0 in a copy of action.yml, as docs/releasing.md does.
  mkdir -p "$PINNED_DIR"
  cp "$ROOT/action.yml" "$PINNED_DIR/action.yml"
  if bash scripts/pin-release.sh v0.1.0 --sums "$REL/v0.1.0/SHA256SUMS" --commit "$FAKE_COMMIT" \
    --action "$PINNED_DIR/action.yml" >"$TMP/pin.out" 2>&1 &&
    grep -qE "^ +x86_64-unknown-linux-gnu=$(sha256_of "$REL/v0.1.0/runproof-v0.1.0-x86_64-unknown-linux-gnu.tar.gz")\$" "$PINNED_DIR/action.yml"; then
    pass "scripts/pin-release.sh writes the four SHA-256s into action.yml"
  else
    failed "scripts/pin-release.sh writes the four SHA-256s into action.yml" "$(cat "$TMP/pin.out")"
    return 0
  fi
  if bash scripts/pin-release.sh --verify v0.1.0 --dir "$REL/v0.1.0" --action "$PINNED_DIR/action.yml" >"$TMP/pin.out" 2>&1; then
    pass "scripts/pin-release.sh --verify accepts the archives it pinned"
  else
    failed "scripts/pin-release.sh --verify accepts the archives it pinned" "$(cat "$TMP/pin.out")"
  fi

  python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$REL" >"$TMP/http.out" 2>&1 &
  PIDS+=("$!")
  if ! wait_port "$TMP/http.out" '.* port \([0-9]*\).*'; then
    failed "the fake release server starts" "$(cat "$TMP/http.out")"
    return 0
  fi
  local REL_URL=http://127.0.0.1:$PORT
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
  local CARGO_RECORD=$TMP/cargo-record.txt
  dl_run() { # [--path-without-cargo] os arch [--env/--input ...]
    local extra=()
    if [[ $1 == --path-without-cargo ]]; then extra=(--path-without-cargo); shift; fi
    local os=$1 arch=$2
    shift 2
    rm -f "$RECORD" "$CARGO_RECORD"
    run_action ${extra[@]+"${extra[@]}"} --env "RUNPROOF_DOWNLOAD_URL=${DL_URL:-$REL_URL/}" --env "STUB_RECORD=$RECORD" \
      --env "STUB=$STUB" --env "FAKE_CARGO_RECORD=$CARGO_RECORD" \
      --env "PATH=$TMP/fakecargo:$PATH" --env "RUNNER_OS=$os" --env "RUNNER_ARCH=$arch" \
      --input "url=$STUB_URL" --input "files=results/a.json" "$@"
  }
  cargo_args_are() { # expected arguments
    [[ -f $CARGO_RECORD && $(tr '\n' ' ' <"$CARGO_RECORD") == "$* " ]]
  }

  ACTION=$PINNED_DIR/action.yml
  local platform os arch
  for platform in "Linux X64 x86_64-unknown-linux-gnu" "Linux ARM64 aarch64-unknown-linux-gnu" \
    "macOS X64 x86_64-apple-darwin" "macOS ARM64 aarch64-apple-darwin"; do
    read -r os arch target <<<"$platform"
    if dl_run "$os" "$arch" &&
      [[ $(json_get "$RESULT" "r['steps']['install']['outputs'].get('bin')") == */runproof-v0.1.0/runproof-v0.1.0-$target/runproof ]] &&
      [[ -s $RECORD && ! -e $CARGO_RECORD ]] && log_has "runproof-v0.1.0-$target.tar.gz matches the SHA-256 that action.yml pins"; then
      pass "$os/$arch: downloads runproof-v0.1.0-$target.tar.gz, checks it against action.yml, runs it"
    else
      failed "$os/$arch: downloads runproof-v0.1.0-$target.tar.gz, checks it against action.yml, runs it" "$(cat "$LOG")"
    fi
  done
  if dl_run Linux X64 --input version=v0.1.0 && [[ -s $RECORD ]]; then
    pass "version equal to the pinned release is accepted"
  else
    failed "version equal to the pinned release is accepted" "$(cat "$LOG")"
  fi

  # The release is replaced, SHA256SUMS included: only action.yml's SHA-256 can tell.
  local linux=$REL/v0.1.0/runproof-v0.1.0-x86_64-unknown-linux-gnu.tar.gz
  cp "$linux" "$TMP/linux.tar.gz.orig"
  cp "$REL/v0.1.0/SHA256SUMS" "$TMP/SHA256SUMS.orig"
  printf '#!/usr/bin/env bash\ntouch "%s/TAMPERED"\n' "$TMP" >"$TMP/tampered"
  chmod +x "$TMP/tampered"
  package v0.1.0 x86_64-unknown-linux-gnu "$TMP/tampered"
  (cd "$REL/v0.1.0" && for f in *.tar.gz; do printf '%s  %s\n' "$(sha256_of "$f")" "$f"; done >SHA256SUMS)
  if dl_run Linux X64; then
    failed "a replaced release (archive and SHA256SUMS) fails the action" "$(cat "$LOG")"
  elif log_has "as action.yml pins: not running it" && [[ ! -e $RECORD && ! -e $CARGO_RECORD && ! -e $TMP/TAMPERED ]]; then
    pass "a replaced release (archive and SHA256SUMS) fails the action: nothing run, no build from source"
  else
    failed "a replaced release (archive and SHA256SUMS) fails the action: nothing run, no build from source" "$(cat "$LOG")"
  fi
  if dl_run Linux X64 --input fail-on-error=false && log_has "::warning::runproof: runproof-v0.1.0-x86_64-unknown-linux-gnu.tar.gz has SHA-256" &&
    [[ ! -e $RECORD && ! -e $CARGO_RECORD && ! -e $TMP/TAMPERED ]]; then
    pass "a replaced release, fail-on-error false: a warning, nothing run"
  else
    failed "a replaced release, fail-on-error false: a warning, nothing run" "$(cat "$LOG")"
  fi
  if bash scripts/pin-release.sh --verify v0.1.0 --dir "$REL/v0.1.0" --action "$PINNED_DIR/action.yml" >"$TMP/pin.out" 2>&1; then
    failed "scripts/pin-release.sh --verify refuses a replaced archive" "$(cat "$TMP/pin.out")"
  else
    check "scripts/pin-release.sh --verify refuses a replaced archive" grep -q "but action.yml pins" "$TMP/pin.out"
  fi
  cp "$TMP/linux.tar.gz.orig" "$linux"
  cp "$TMP/SHA256SUMS.orig" "$REL/v0.1.0/SHA256SUMS"

  # Versions other than the pinned one are never downloaded.
  if dl_run Linux X64 --input version=v0.1.1; then
    failed "a version other than the pinned one is refused" "$(cat "$LOG")"
  else
    check "a version other than the pinned one is refused" log_has "::error::runproof: version v0.1.1 is not the release this action pins (v0.1.0)"
  fi
  if dl_run Linux X64 --input version=latest; then
    failed "version latest is refused" "$(cat "$LOG")"
  else
    check "version latest is refused" log_has "::error::runproof: version must be a release tag"
  fi

  # A download that fails, or no asset for the runner: build the pinned commit, never a tag.
  if DL_URL=$REL_URL/missing/ dl_run Linux X64 && [[ -s $RECORD ]] &&
    cargo_args_are install --locked --git https://github.com/runproof/runproof --rev "$FAKE_COMMIT" --root "$TMP/runner-temp-$RUN_N/runproof-v0.1.0/cargo" runproof; then
    pass "no asset (404): cargo install --locked --git … --rev <pinned commit> runproof, then runs it"
  else
    failed "no asset (404): cargo install --locked --git … --rev <pinned commit> runproof, then runs it" "$(cat "$LOG" "$CARGO_RECORD" 2>/dev/null)"
  fi
  if dl_run Windows X64 && [[ -s $RECORD ]] && grep -qxF "$FAKE_COMMIT" "$CARGO_RECORD"; then
    pass "a platform without an asset builds the pinned commit"
  else
    failed "a platform without an asset builds the pinned commit" "$(cat "$LOG")"
  fi
  if DL_URL=$REL_URL/missing/ dl_run --path-without-cargo Linux X64 --input fail-on-error=false &&
    log_has "::warning::runproof: no release binary for Linux/X64 could be downloaded, and cargo is not installed" &&
    log_has "runproof: not installed, nothing uploaded" && [[ ! -e $RECORD ]]; then
    pass "no asset and no cargo, fail-on-error false: a warning, the action succeeds"
  else
    failed "no asset and no cargo, fail-on-error false: a warning, the action succeeds" "$(cat "$LOG")"
  fi
  if DL_URL=$REL_URL/missing/ dl_run --path-without-cargo Linux X64; then
    failed "no asset and no cargo: the action fails" "$(cat "$LOG")"
  else
    check "no asset and no cargo: the action fails" log_has "::error::runproof: no release binary"
  fi

  # The download URL is parsed: a user part cannot hide another host.
  local bypass
  for bypass in 'http://127.0.0.1:@evil.invalid/' 'http://127.0.0.1@evil.invalid/' \
    'http://localhost:80@evil.invalid/' 'http://127.0.0.1\@evil.invalid/' 'http://localhost.evil.invalid/'; do
    if DL_URL=$bypass dl_run Linux X64; then
      failed "RUNPROOF_DOWNLOAD_URL=$bypass is refused" "$(cat "$LOG")"
    elif log_has "::error::runproof: RUNPROOF_DOWNLOAD_URL must start with https://" && [[ ! -e $RECORD && ! -e $CARGO_RECORD ]]; then
      pass "RUNPROOF_DOWNLOAD_URL=$bypass is refused: nothing downloaded, built or run"
    else
      failed "RUNPROOF_DOWNLOAD_URL=$bypass is refused: nothing downloaded, built or run" "$(cat "$LOG")"
    fi
  done

  # A redirect may not leave https: from the loopback mirror to plain http is not followed.
  cat >"$TMP/redirect.py" <<'PY'
"""Redirects every GET to the same path on another loopback port, over plain http."""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(302)
        self.send_header("location", f"http://127.0.0.1:{sys.argv[1]}{self.path}")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), H)
print(f"port {server.server_port}", flush=True)
server.serve_forever()
PY
  python3 "$TMP/redirect.py" "${REL_URL##*:}" >"$TMP/redirect.out" 2>&1 &
  PIDS+=("$!")
  if ! wait_port "$TMP/redirect.out" '^port \([0-9]*\)$'; then
    failed "the redirecting server starts" "$(cat "$TMP/redirect.out")"
  else
    local served
    served=$(grep -c 'GET /v0.1.0/runproof-v0.1.0-x86_64' "$TMP/http.out") || served=0
    if DL_URL=http://127.0.0.1:$PORT/ dl_run Linux X64 && [[ -s $CARGO_RECORD ]] &&
      [[ $(grep -c 'GET /v0.1.0/runproof-v0.1.0-x86_64' "$TMP/http.out") == "$served" ]]; then
      pass "a redirect to plain http is not followed (the build from source runs instead)"
    else
      failed "a redirect to plain http is not followed (the build from source runs instead)" "$(cat "$LOG")"
    fi
  fi

  # No release pinned: build the action's own commit.
  local copy=$TMP/unpinned
  mkdir -p "$copy"
  cp "$ROOT/action.yml" "$copy/action.yml"
  if ! bash scripts/pin-release.sh --clear --action "$copy/action.yml" >"$TMP/pin.out" 2>&1; then
    failed "scripts/pin-release.sh --clear empties the pins" "$(cat "$TMP/pin.out")"
    return 0
  fi
  ACTION=$copy/action.yml
  local ref=fedcba9876543210fedcba9876543210fedcba98
  if dl_run Linux X64 --env "GITHUB_ACTION_REF_FOR_CONTEXT=$ref" && [[ -s $RECORD ]] &&
    cargo_args_are install --locked --git https://github.com/runproof/runproof --rev "$ref" --root "$TMP/runner-temp-$RUN_N/runproof-source/cargo" runproof; then
    pass "nothing pinned, used by commit: cargo install --rev <that commit>"
  else
    failed "nothing pinned, used by commit: cargo install --rev <that commit>" "$(cat "$LOG" "$CARGO_RECORD" 2>/dev/null)"
  fi
  if dl_run Linux X64 --env GITHUB_ACTION_REF_FOR_CONTEXT=main; then
    failed "nothing pinned, used by branch, no git metadata: the action fails" "$(cat "$LOG")"
  elif log_has "the action's commit is unknown (ref 'main')" && [[ ! -e $CARGO_RECORD && ! -e $RECORD ]]; then
    pass "nothing pinned, used by branch, no git metadata: fails, says to pin by commit; nothing built"
  else
    failed "nothing pinned, used by branch, no git metadata: fails, says to pin by commit; nothing built" "$(cat "$LOG")"
  fi
  git -C "$copy" init -q && git -C "$copy" add action.yml &&
    git -C "$copy" -c user.name=t -c user.email=t@example.invalid commit -q -m action
  local head
  head=$(git -C "$copy" rev-parse HEAD)
  if dl_run Linux X64 --env GITHUB_ACTION_REF_FOR_CONTEXT=main && [[ -s $RECORD ]] &&
    grep -qxF "$head" "$CARGO_RECORD"; then
    pass "nothing pinned, run from a git checkout: cargo install --rev <its HEAD>"
  else
    failed "nothing pinned, run from a git checkout: cargo install --rev <its HEAD>" "$(cat "$LOG" "$CARGO_RECORD" 2>/dev/null)"
  fi
  ACTION=$ROOT/action.yml
}

for section in "${SECTIONS[@]}"; do
  "section_$section"
done

elapsed=$((SECONDS - START))
if ((${#SECTIONS[@]} == ${#ALL_SECTIONS[@]})); then
  check "all sections took less than 180 s (${elapsed} s)" test "$elapsed" -lt 180
fi
finish
