#!/usr/bin/env python3
"""Find module dependency cycles in every crate of the workspace.

Usage:
    scripts/module-cycles.py [CRATE_DIR ...]   check crates/*/ (or the given crate dirs)
    scripts/module-cycles.py --self-test       check this script against cyclic sample trees

Exits 0 when no crate has a cycle, 1 when one does (each cycle is printed with the
reference behind every edge), 2 on a usage or self-test error. Python 3 standard
library only.

What is a node (the granularity)
--------------------------------
Every module that has submodules is looked at on its own, at every level:

- at a crate root (`lib.rs`, `main.rs`, `bin/*.rs`: each is a separate crate), the nodes
  are the top-level modules. A module with files of its own (`foo.rs` + `foo/bar.rs`, or
  `foo/mod.rs` + `foo/bar.rs`) is one node: a reference from or to `foo::bar` counts as
  `foo`'s;
- inside each such module (`foo/`, or an inline `mod foo { ... }`), its own submodules
  are the nodes, the same way, so `foo::bar` <-> `foo::baz` is found too;
- the parent's own file is a node as well, shown as `<lib.rs>` or `<foo/mod.rs>`: a child
  that uses an item defined there depends on it, and its code that uses a child (a
  private `use child::X`, a `child::f()` call) depends on that child. Its `pub use`
  re-exports do not count (that is the facade) unless its own code uses the name too,
  and a reference to an item re-exported there is followed to the module defining it.

What is an edge
---------------
A reference from code of one node to another: `use` declarations (`crate::`, `self::`,
`super::`, a submodule's name, or a name imported earlier), and paths in code
(`crate::x::y`, `super::x`, `self::x`, `child::x`). Comments, strings and
`#[cfg(test)]` items are ignored (so `#[cfg(test)] mod tests { use super::*; }` is, and
so is a `#[cfg(test)] mod tests;` file). Code under other `cfg`s (features, target
OS) counts. Paths into other crates are not edges. A glob import (`use super::*`) in
non-test code is an edge to the module it names. Macro-generated paths, and method
calls on a type defined elsewhere (no path is written), are not seen. A `mod x;` whose
file is missing is reported as a warning and left out.
"""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

IDENT = r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*"
KEYWORDS = {
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum",
    "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod",
    "move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super",
    "trait", "true", "type", "unsafe", "use", "where", "while", "union", "macro_rules",
}


# ----- lexing: blank comments, strings and chars, keeping every offset and newline -----

RAW_STRING = re.compile(r'(?:b|c)?r(#*)"')


def _ident_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def strip_code(src: str) -> str:
    """`src` with comments, string and char literals replaced by spaces (newlines kept)."""
    out = list(src)
    n = len(src)

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    i = 0
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
            continue
        if src.startswith("/*", i):
            depth, j = 0, i
            while j < n:
                if src.startswith("/*", j):
                    depth += 1
                    j += 2
                elif src.startswith("*/", j):
                    depth -= 1
                    j += 2
                    if depth == 0:
                        break
                else:
                    j += 1
            blank(i, j)
            i = j
            continue
        prev_ident = i > 0 and _ident_char(src[i - 1])
        if c in "bcr" and not prev_ident:
            m = RAW_STRING.match(src, i)
            if m:
                close = '"' + m.group(1)
                j = src.find(close, m.end())
                j = n if j < 0 else j + len(close)
                blank(i, j)
                i = j
                continue
        if c == '"' or (c in "bc" and not prev_ident and src.startswith('"', i + 1)):
            j = i + 1 if c == '"' else i + 2
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
            continue
        if c == "'":
            if src.startswith("\\", i + 1):  # '\n', '\'', '\u{..}'
                j = src.find("'", i + 3)
                j = n if j < 0 else j
                blank(i, j + 1)
                i = j + 1
                continue
            if i + 2 < n and src[i + 2] == "'":  # 'x'
                blank(i, i + 3)
                i += 3
                continue
            # otherwise a lifetime or label: left as is
        i += 1
    return "".join(out)


def blank_range(text: str, a: int, b: int) -> str:
    return text[:a] + re.sub(r"[^\n]", " ", text[a:b]) + text[b:]


def matching(text: str, open_at: int) -> int:
    """Offset just past the bracket closing the one at `open_at` (len(text) if none)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    for k in range(open_at, len(text)):
        c = text[k]
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if stack and stack[-1] == c:
                stack.pop()
            if not stack:
                return k + 1
    return len(text)


# ----- #[cfg(test)] -----

def _split_args(s: str) -> list[str]:
    args, depth, cur = [], 0, ""
    for c in s:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 0:
            args.append(cur)
            cur = ""
        else:
            cur += c
    if cur.strip():
        args.append(cur)
    return [a.strip() for a in args]


def test_only(pred: str) -> bool:
    """Whether a `cfg` predicate can only hold in test builds."""
    pred = pred.strip()
    if pred == "test":
        return True
    m = re.fullmatch(r"(all|any)\s*\((.*)\)", pred, re.S)
    if not m:
        return False
    args = _split_args(m.group(2))
    if m.group(1) == "all":
        return any(test_only(a) for a in args)
    return bool(args) and all(test_only(a) for a in args)


ATTR = re.compile(r"#\s*(!?)\s*\[")
CFG = re.compile(r"\s*cfg\s*\((.*)\)\s*", re.S)


def item_end(text: str, start: int) -> int:
    """End of the item (or field) starting at `start`: its `;` or its closing brace."""
    field_like = re.match(r"\s*(" + IDENT + r")\s*:(?!:)", text[start:])
    if field_like and field_like.group(1) in KEYWORDS:
        field_like = None
    k = start
    while k < len(text):
        c = text[k]
        if c in "([{":
            close = matching(text, k)
            if c == "{" and not field_like:
                return close
            k = close
            continue
        if c in ")]}":
            return k  # the enclosing block ends: the item was the last one
        if c == ";" or (c == "," and field_like):
            return k + 1
        k += 1
    return len(text)


def remove_test_items(text: str) -> tuple[str, bool]:
    """Blanks items under a test-only `cfg`; says whether the whole file is test-only."""
    pos = 0
    while True:
        m = ATTR.search(text, pos)
        if not m:
            return text, False
        open_at = m.end() - 1
        close = matching(text, open_at)
        cfg = CFG.fullmatch(text[open_at + 1 : close - 1])
        if not (cfg and test_only(cfg.group(1))):
            pos = close
            continue
        if m.group(1) == "!":  # #![cfg(test)]: the whole module
            return text, True
        k = close
        while True:  # further attributes of the same item
            nxt = ATTR.match(text, k + len(text[k:]) - len(text[k:].lstrip()))
            if not nxt or nxt.group(1):
                break
            k = matching(text, nxt.end() - 1)
        end = item_end(text, k)
        text = blank_range(text, m.start(), end)
        pos = end


# ----- modules and units -----

@dataclass
class Ref:
    segs: tuple[str, ...]  # the path as written
    line: int
    snippet: str
    reexport: bool = False  # a `pub use`


@dataclass
class Unit:
    """One module: a file, or an inline `mod x { ... }` block."""

    path: tuple[str, ...]
    file: Path
    text: str  # full length of the file, blank outside this module
    child_dir: Path
    children: dict[str, "Unit"] = field(default_factory=dict)
    refs: list[Ref] = field(default_factory=list)
    uses: list[tuple[Ref, str | None, bool]] = field(default_factory=list)  # (ref, bound name, glob)
    imports: dict[str, tuple[str, ...]] = field(default_factory=dict)
    code: str = ""  # `text` without its `use` declarations
    globs: list[tuple[str, ...]] = field(default_factory=list)


MOD_DECL = re.compile(
    r"(?<![\w$])(?:pub\s*(?:\([^)]*\))?\s*)?mod\s+(" + IDENT + r")\s*([;{])"
)


class Crate:
    def __init__(self, name: str, root_file: Path):
        self.name = name
        self.root_file = root_file
        self.units: dict[tuple[str, ...], Unit] = {}
        self.warnings: list[str] = []
        self.original: dict[Path, str] = {}
        text, whole_test = self._load(root_file)
        if whole_test:
            return
        self._build((), root_file, text, root_file.parent)
        for unit in self.units.values():
            self._collect_refs(unit)
        for _ in range(3):  # imports that start with an earlier import's name
            for unit in self.units.values():
                self._bind_imports(unit)

    def _load(self, file: Path) -> tuple[str, bool]:
        src = file.read_text(encoding="utf-8")
        self.original[file] = src
        return remove_test_items(strip_code(src))

    def _build(self, path: tuple[str, ...], file: Path, text: str, child_dir: Path) -> Unit:
        unit = Unit(path, file, text, child_dir)
        self.units[path] = unit
        pos = 0
        while True:
            m = MOD_DECL.search(unit.text, pos)
            if not m:
                break
            name = m.group(1).removeprefix("r#")
            if m.group(2) == "{":
                open_at = m.end() - 1
                close = matching(unit.text, open_at)
                inner = "".join(
                    c if open_at < k < close - 1 or c == "\n" else " "
                    for k, c in enumerate(unit.text)
                )
                unit.text = blank_range(unit.text, m.start(), close)
                unit.children[name] = self._build(path + (name,), file, inner, child_dir / name)
                pos = m.start()
                continue
            target = self._module_file(file, unit, name, m.start())
            pos = m.end()
            if target is None:
                self.warnings.append(f"{file}: no file for `mod {name};`")
                continue
            child_text, whole_test = self._load(target)
            if whole_test:
                continue
            sub_dir = target.parent if target.name == "mod.rs" else target.with_suffix("")
            unit.children[name] = self._build(path + (name,), target, child_text, sub_dir)
        return unit

    def _module_file(self, file: Path, unit: Unit, name: str, at: int) -> Path | None:
        # A `#[path = "..."]` among the attributes of this `mod` item (strings are blank
        # in `unit.text`, so the literal is read from the original at the same offsets).
        head = unit.text[:at]
        item_start = max(head.rfind(";"), head.rfind("}"), head.rfind("{")) + 1
        attr = re.search(r"#\s*\[\s*path\s*=([^\]]*)\]", head[item_start:])
        if attr:
            literal = self.original[file][item_start + attr.start(1) : item_start + attr.end(1)]
            return (file.parent / literal.strip().strip('"')).resolve()
        for candidate in (unit.child_dir / f"{name}.rs", unit.child_dir / name / "mod.rs"):
            if candidate.is_file():
                return candidate
        return None

    def _collect_refs(self, unit: Unit) -> None:
        text = unit.text
        src = self.original[unit.file]

        def line_of(offset: int) -> tuple[int, str]:
            line = text.count("\n", 0, offset) + 1
            snippet = src.splitlines()[line - 1].strip() if src else ""
            return line, snippet

        # `pub(in path)` restricts visibility; it is no dependency.
        text = re.sub(r"pub\s*\(\s*in\s+[^)]*\)", lambda m: " " * len(m.group(0)), text)
        for m in re.finditer(
            r"(?<![\w$])(pub\s*(?:\([^)]*\))?\s+)?use\s+([^;]*);", text
        ):
            line, snippet = line_of(m.start())
            for segs, alias, glob in parse_use_tree(m.group(2)):
                if not segs:
                    continue
                bound = None
                if not glob:
                    bound = alias if alias is not None else segs[-1]
                    if bound == "_":
                        bound = None
                ref = Ref(tuple(segs), line, snippet, reexport=m.group(1) is not None)
                unit.uses.append((ref, bound, glob))
            text = blank_range(text, m.start(), m.end())
        unit.code = text
        path_re = re.compile(
            r"(?<![\w:])(\$?" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)"
        )
        for m in path_re.finditer(text):
            first = m.group(1).removeprefix("r#")
            if first not in ("crate", "$crate", "self", "super") and first not in unit.children:
                continue
            rest = [s.removeprefix("r#") for s in re.findall(IDENT, m.group(2))]
            line, snippet = line_of(m.start())
            unit.refs.append(Ref(tuple([first] + rest), line, snippet))

    def _bind_imports(self, unit: Unit) -> None:
        for ref, bound, glob in unit.uses:
            absolute = self.absolute(unit, ref.segs)
            if absolute is None:
                continue
            if glob:
                if absolute not in unit.globs:
                    unit.globs.append(absolute)
            elif bound is not None:
                unit.imports[bound] = absolute

    def absolute(self, unit: Unit, segs: tuple[str, ...]) -> tuple[str, ...] | None:
        """The path from the crate root that `segs`, written in `unit`, names; None if
        it leaves the crate."""
        segs = tuple(s for s in segs if s)
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        if not segs:
            return None
        first = segs[0]
        if first in ("crate", "$crate"):
            base, rest = (), segs[1:]
        elif first in ("self", "super"):
            base, rest = unit.path, segs
            while rest and rest[0] in ("self", "super"):
                if rest[0] == "super":
                    if not base:
                        return None
                    base = base[:-1]
                rest = rest[1:]
        elif first in unit.children:
            base, rest = unit.path, segs
        elif first in unit.imports:
            base, rest = unit.imports[first], segs[1:]
        else:
            return None
        return tuple(base) + tuple(rest)

    def defines(self, unit: Unit, name: str) -> bool:
        return re.search(
            r"(?<![\w$])(?:fn|struct|enum|union|trait|type|const|static|macro_rules!)\s+"
            + re.escape(name)
            + r"\b",
            unit.text,
        ) is not None

    def target_module(self, absolute: tuple[str, ...], depth: int = 0) -> tuple[str, ...]:
        """The module that defines what `absolute` names, following re-exports."""
        k = len(absolute)
        while k > 0 and absolute[:k] not in self.units:
            k -= 1
        module = absolute[:k]
        if k == len(absolute) or depth > 16:
            return module
        unit = self.units[module]
        item = absolute[k]
        if item in unit.imports:
            return self.target_module(unit.imports[item] + absolute[k + 1 :], depth + 1)
        if unit.globs and not self.defines(unit, item):
            for glob in unit.globs:
                source = self.target_module(glob, depth + 1)
                if source in self.units and (
                    self.defines(self.units[source], item) or item in self.units[source].imports
                ):
                    return self.target_module(source + absolute[k:], depth + 1)
        return module

    def references(self, unit: Unit):
        """(target module, ref, is a pure re-export) for every reference `unit` makes.

        A `pub use` whose name the module's own code also uses is no pure re-export."""
        for ref, bound, _glob in unit.uses:
            absolute = self.absolute(unit, ref.segs)
            if absolute is None:
                continue
            reexport = ref.reexport
            if reexport and bound is not None:
                used = re.search(r"(?<![\w$.])" + re.escape(bound) + r"(?!\w)", unit.code)
                if used:
                    line = unit.code.count("\n", 0, used.start()) + 1
                    snippet = self.original[unit.file].splitlines()[line - 1].strip()
                    ref = Ref(ref.segs, line, snippet)
                    reexport = False
            yield self.target_module(absolute), ref, reexport
        for ref in unit.refs:
            absolute = self.absolute(unit, ref.segs)
            if absolute is None:
                continue
            yield self.target_module(absolute), ref, False


# ----- graphs and cycles -----

def parse_use_tree(tree: str) -> list[tuple[list[str], str | None, bool]]:
    """Expands `a::{b, c::{self, d as e}, f::*}` into (segments, alias, glob) leaves."""
    toks = re.findall(r"::|[{},*]|\$?(?:r#)?\w+", tree)
    toks = [t.removeprefix("r#") for t in toks]
    out: list[tuple[list[str], str | None, bool]] = []

    def walk(i: int, prefix: list[str]) -> int:
        segs = list(prefix)
        if i < len(toks) and toks[i] == "::":
            i += 1
        while i < len(toks):
            t = toks[i]
            if t == "{":
                i += 1
                while i < len(toks) and toks[i] != "}":
                    i = walk(i, segs)
                    if i < len(toks) and toks[i] == ",":
                        i += 1
                return i + 1
            if t == "*":
                out.append((segs, None, True))
                return i + 1
            if t in (",", "}"):
                return i
            segs.append(t)
            i += 1
            if i < len(toks) and toks[i] == "::":
                i += 1
                continue
            alias = None
            if i + 1 < len(toks) and toks[i] == "as":
                alias = toks[i + 1]
                i += 2
            if segs and segs[-1] == "self":
                segs = segs[:-1]
                if alias is None and segs:
                    alias = segs[-1]
            out.append((segs, alias, False))
            return i
        return i

    walk(0, [])
    return out


def strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(result)


def simple_cycles(component: list[str], edges: dict[str, set[str]], limit: int = 25) -> list[list[str]]:
    """Elementary cycles inside one strongly connected component, shortest first."""
    rank = {v: k for k, v in enumerate(component)}
    cycles: list[list[str]] = []
    for start in component:
        stack = [(start, [start])]
        while stack and len(cycles) < limit * 4:
            v, path = stack.pop()
            for w in sorted(edges.get(v, ()), reverse=True):
                if w not in rank:
                    continue
                if w == start:
                    cycles.append(path + [start])
                elif rank[w] > rank[start] and w not in path:
                    stack.append((w, path + [w]))
    cycles.sort(key=lambda c: (len(c), c))
    return cycles[:limit]


@dataclass
class Finding:
    crate: str
    level: str
    component: list[str]
    cycles: list[list[str]]
    evidence: dict[tuple[str, str], str]


def analyse(crate: Crate, base: Path) -> list[Finding]:
    findings = []
    for parent_path, parent in sorted(crate.units.items()):
        if not parent.children:
            continue
        inline = bool(parent_path) and crate.units[parent_path[:-1]].file == parent.file
        own = f"<{rel(parent.file, base)}" + (f" mod {parent_path[-1]}>" if inline else ">")

        def node_of(module: tuple[str, ...]) -> str | None:
            if module[: len(parent_path)] != parent_path:
                return None
            if module == parent_path:
                return own
            return "::".join(module[: len(parent_path) + 1])

        edges: dict[str, set[str]] = {}
        evidence: dict[tuple[str, str], str] = {}
        nodes = {own} | {"::".join(parent_path + (c,)) for c in parent.children}
        for unit in crate.units.values():
            source = node_of(unit.path)
            if source is None:
                continue
            for target_module, ref, reexport in crate.references(unit):
                target = node_of(target_module)
                if target is None or target == source:
                    continue
                if source == own and reexport:
                    continue  # the parent's facade
                edges.setdefault(source, set()).add(target)
                evidence.setdefault(
                    (source, target), f"{rel(unit.file, base)}:{ref.line}: {ref.snippet}"
                )
        for component in strongly_connected(sorted(nodes), edges):
            level = "crate root" if not parent_path else "::".join(parent_path)
            findings.append(
                Finding(crate.name, level, component, simple_cycles(component, edges), evidence)
            )
    return findings


def rel(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def crate_roots(crate_dir: Path) -> list[tuple[str, Path]]:
    src = crate_dir / "src"
    name = crate_dir.name
    roots = []
    if (src / "lib.rs").is_file():
        roots.append((f"{name} (lib)", src / "lib.rs"))
    if (src / "main.rs").is_file():
        roots.append((f"{name} (bin main.rs)", src / "main.rs"))
    bins = src / "bin"
    if bins.is_dir():
        for entry in sorted(bins.iterdir()):
            if entry.suffix == ".rs":
                roots.append((f"{name} (bin {entry.stem})", entry))
            elif (entry / "main.rs").is_file():
                roots.append((f"{name} (bin {entry.name})", entry / "main.rs"))
    return roots


def check(crate_dirs: list[Path], base: Path, out=sys.stdout) -> list[Finding]:
    all_findings = []
    for crate_dir in crate_dirs:
        for name, root in crate_roots(crate_dir):
            crate = Crate(name, root)
            for warning in crate.warnings:
                print(f"warning: {warning}", file=out)
            findings = analyse(crate, base)
            all_findings += findings
            if not findings:
                print(f"{name}: no module cycles", file=out)
            for f in findings:
                print(f"{name}: cycle among {', '.join(f.component)} (in {f.level})", file=out)
                for cycle in f.cycles:
                    print(f"    {' -> '.join(cycle)}", file=out)
                for a in f.component:
                    for b in f.component:
                        if (a, b) in f.evidence:
                            print(f"      {a} -> {b}: {f.evidence[(a, b)]}", file=out)
    return all_findings


# ----- self-test -----

SELF_TEST_TREES = {
    # A cycle through `use`, one through a code path, one inside a directory module,
    # one through a re-export, and one between the root file and a child.
    "cyclic": {
        "src/lib.rs": """
            //! crate::c::nothing in a doc comment
            mod a;
            mod b;
            mod dir;
            mod reexp;
            mod user;
            mod rootuse;
            mod nested;
            mod facade;
            pub use reexp::Thing;
            pub use facade::Used;
            pub struct Root;
            fn build() -> u8 { rootuse::f() }
            fn used() -> Used { Used }
            mod inl {
                pub mod m1 { pub fn f() { super::m2::g() } }
                pub mod m2 { pub fn g() { let _ = self::super::m1::f; } }
            }
        """,
        "src/nested.rs": "mod p;\nmod q;\n",
        "src/nested/p.rs": "use super::q::Q;\npub struct P;\n",
        "src/nested/q.rs": "pub struct Q;\nfn h() { let _ = crate::nested::p::P; }\n",
        "src/facade.rs": "pub struct Used;\nfn r#fn() -> crate::Root { crate::Root }\n",
        "src/a.rs": "use crate::b::B;\npub struct A;\n",
        "src/b.rs": "pub struct B(crate::a::A);\n",
        "src/dir/mod.rs": "mod x;\nmod y;\npub use x::X;\n",
        "src/dir/x.rs": "use super::y::Y;\npub struct X(Y);\n",
        "src/dir/y.rs": "pub struct Y;\nfn f() -> super::x::X { todo!() }\n",
        "src/reexp.rs": "pub struct Thing;\nfn g() { let _ = crate::user::u(); }\n",
        "src/user.rs": "use crate::Thing;\npub fn u() -> Thing { Thing }\n",
        "src/rootuse.rs": "pub fn f() -> u8 { let _ = crate::Root; 1 }\n",
    },
    # The same shapes with every back edge in tests, comments, strings or facades.
    "acyclic": {
        "src/lib.rs": """
            mod a;
            mod b;
            mod dir;
            mod inline { pub fn i() -> super::a::A { super::a::A } }
            #[cfg(test)]
            mod tests;
            #[path = "elsewhere/pathed_file.rs"]
            mod pathed;
            mod nested;
            pub use a::A;
            pub use b::B;
            /* crate::b::B in a block /* nested */ comment */
        """,
        "src/a.rs": """
            pub struct A;
            const S: &str = "crate::b::B";
            const R: &str = r#"use crate::b::B;"#;
            const C: char = '"';
            fn life<'a>(x: &'a str) -> &'a str { x }
            #[cfg(test)]
            mod tests {
                use super::*;
                use crate::b::B;
            }
            #[cfg(all(test, unix))]
            fn only_in_tests() -> crate::b::B { crate::b::B(A) }
        """,
        "src/b.rs": "use crate::A;\npub struct B(pub A);\n",
        "src/elsewhere/pathed_file.rs": "pub struct P(crate::b::B);\n",
        "src/nested.rs": "pub mod p;\npub mod q;\npub use p::P;\n",
        "src/nested/p.rs": "pub struct P(super::q::Q);\n",
        "src/nested/q.rs": "pub struct Q(crate::pathed::P);\n",
        "src/tests.rs": "use crate::b::B;\nuse crate::a::A;\n",
        "src/dir/mod.rs": "mod x;\nmod y;\npub use x::X;\nuse crate::b::B;\n",
        "src/dir/x.rs": "use super::y::Y;\npub struct X(Y);\n",
        "src/dir/y.rs": "pub struct Y(crate::B);\n#[cfg(test)]\nmod tests { use super::super::x::X; }\n",
    },
}

SELF_TEST_EXPECTED = {
    "cyclic": {
        ("crate root", ("<src/lib.rs>", "facade", "rootuse")),
        ("crate root", ("a", "b")),
        ("crate root", ("reexp", "user")),
        ("dir", ("dir::x", "dir::y")),
        ("nested", ("nested::p", "nested::q")),
        ("inl", ("inl::m1", "inl::m2")),
    },
    "acyclic": set(),
}


def self_test() -> int:
    import io
    import textwrap

    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, files in SELF_TEST_TREES.items():
            crate_dir = Path(tmp) / name
            for rel_path, body in files.items():
                target = crate_dir / rel_path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(textwrap.dedent(body), encoding="utf-8")
            out = io.StringIO()
            findings = check([crate_dir], crate_dir, out)
            if "warning" in out.getvalue():
                failures.append(f"{name}: {out.getvalue()}")
            got = {(f.level, tuple(f.component)) for f in findings}
            if got != SELF_TEST_EXPECTED[name]:
                failures.append(
                    f"{name}: expected {sorted(SELF_TEST_EXPECTED[name])}, got {sorted(got)}\n"
                    + out.getvalue()
                )
    # The lexer and the use-tree parser on their own.
    stripped = strip_code('a /* x /* y */ z */ b "s\\"t" \'c\' \'\\\'\' &\'a r##"q"#"## e')
    if stripped.split() != ["a", "b", "&'a", "e"]:
        failures.append(f"strip_code: {stripped.split()}")
    tree = parse_use_tree("crate::a::{self, b::{C, D as E}, f::*}")
    expected_tree = [
        (["crate", "a"], "a", False),
        (["crate", "a", "b", "C"], None, False),
        (["crate", "a", "b", "D"], "E", False),
        (["crate", "a", "f"], None, True),
    ]
    if tree != expected_tree:
        failures.append(f"parse_use_tree: {tree}")
    for failure in failures:
        print(f"self-test FAILED: {failure}", file=sys.stderr)
    if not failures:
        print("module-cycles self-test: ok")
    return 2 if failures else 0


def main(argv: list[str]) -> int:
    if argv in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if argv == ["--self-test"]:
        return self_test()
    if any(a.startswith("-") for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    base = Path(__file__).resolve().parent.parent
    crate_dirs = [Path(a) for a in argv] or sorted(
        d for d in (base / "crates").iterdir() if (d / "src").is_dir()
    )
    findings = check(crate_dirs, base)
    if findings:
        print(f"{len(findings)} group(s) of modules depend on each other in a cycle", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
