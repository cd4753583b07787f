"""The layering check: reads every import of the project (lazy ones inside functions too) and
fails when the house rules are broken.

Rules:
- `common/` imports none of `local`, `bench`, `tests`, `stellarmap_cli`, `functions`;
- `functions/` imports only `common` (and third-party packages);
- an adapter (a module under common/store, common/queue, common/hubble, common/upstream,
  common/enrichment) never imports a handler (`common.handlers`);
- `bench` and `tests` never import each other (what they share lives in `local/testing` and
  `local/processes.py`);
- `local.testing` (test doubles, Chromium, the truth comparison) serves tests and benchmarks only:
  nothing else imports it;
- no import cycle between the project's components. A component is a sub-package of `common`
  (`common.store`, `common.read_models`, ...) or a top-level module of it (`common.pipeline`), and
  each top-level package outside it (`local.simulator`, `local`, `bench`, `tests`, ...).
  Imports under `if TYPE_CHECKING:` are not dependencies and are skipped.

`python -m local.layering` prints the graph's summary and exits 1 when a rule is broken or a
cycle appears.
"""
from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("common", "functions", "local", "bench", "tests", "stellarmap_cli")
ADAPTER_PACKAGES = ("common.store", "common.queue", "common.hubble", "common.upstream", "common.enrichment")
COMMON_FORBIDDEN = ("local", "bench", "tests", "stellarmap_cli", "functions")
TESTING_PACKAGES = ("local.testing",)
TESTING_USERS = ("tests", "bench", "local.testing")


@dataclasses.dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module (or module.name), dotted
    path: Path
    line: int


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                found.append((f"{prefix}.{alias.name}" if alias.name != "*" else prefix, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def project_imports(root: Path = ROOT) -> list[Import]:
    out: list[Import] = []
    for package in PROJECT_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if ".venv" in path.parts or "node_modules" in path.parts:
                continue
            module = module_name(path, root)
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for target, line in _imports(tree, module, path.name == "__init__.py"):
                if target.split(".")[0] in PROJECT_PACKAGES:
                    out.append(Import(module, target, path, line))
    return out


def component(name: str, known: set[str]) -> str:
    """The component a dotted module (or module.attribute) belongs to."""
    parts = name.split(".")
    # module.attribute -> module, when the module exists
    while len(parts) > 1 and ".".join(parts) not in known:
        parts = parts[:-1]
    if parts[0] == "common":
        return ".".join(parts[:2]) if len(parts) > 1 else "common"
    if parts[0] == "local" and len(parts) > 1 and f"local.{parts[1]}" in {".".join(k.split(".")[:2]) for k in known if k.count(".") >= 2}:
        return ".".join(parts[:2])  # local.simulator: a package of its own
    if parts[0] == "functions" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def _starts(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(imports: list[Import], root: Path = ROOT) -> list[str]:
    bad = []
    for imp in imports:
        where = f"{imp.path.relative_to(root)}:{imp.line}: {imp.source} imports {imp.target}"
        if _starts(imp.source, ("common",)) and _starts(imp.target, COMMON_FORBIDDEN):
            bad.append(f"{where} (common/ must not import local, bench, tests, the CLI or functions)")
        if _starts(imp.source, ("functions",)) and not _starts(imp.target, ("common",)):
            bad.append(f"{where} (functions/ import only common)")
        if _starts(imp.source, ADAPTER_PACKAGES) and _starts(imp.target, ("common.handlers",)):
            bad.append(f"{where} (an adapter must not import a handler)")
        if (_starts(imp.source, ("bench",)) and _starts(imp.target, ("tests",))) or (
                _starts(imp.source, ("tests",)) and _starts(imp.target, ("bench",))):
            bad.append(f"{where} (bench and tests must not import each other)")
        if _starts(imp.target, TESTING_PACKAGES) and not _starts(imp.source, TESTING_USERS):
            bad.append(f"{where} (local.testing serves the tests and the benchmarks only)")
    return bad


def component_graph(imports: list[Import], root: Path = ROOT) -> dict[str, set[str]]:
    known = {imp.source for imp in imports} | {module_name(p, root) for pkg in PROJECT_PACKAGES for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for imp in imports:
        a, b = component(imp.source, known), component(imp.target, known)
        graph.setdefault(a, set())
        graph.setdefault(b, set())
        if a != b:
            graph[a].add(b)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                out.append(sorted(members))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def check(root: Path = ROOT) -> tuple[list[str], dict[str, set[str]], list[list[str]]]:
    imports = project_imports(root)
    graph = component_graph(imports, root)
    return violations(imports, root), graph, cycles(graph)


def summary(graph: dict[str, set[str]], found_cycles: list[list[str]], bad: list[str]) -> str:
    common = sorted(c for c in graph if c.startswith("common"))
    edges = sum(len(v) for v in graph.values())
    lines = [f"components: {len(graph)} ({len(common)} in common/), dependencies between them: {edges}",
             f"cycles: {len(found_cycles)}; rule violations: {len(bad)}"]
    for c in common:
        deps = sorted(d for d in graph[c] if d.startswith("common"))
        lines.append(f"  {c} -> {', '.join(deps) if deps else '(nothing in common)'}")
    for cyc in found_cycles:
        lines.append("cycle: " + " <-> ".join(cyc))
    lines.extend(bad)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    bad, graph, found = check()
    print(summary(graph, found, bad))
    return 1 if bad or found else 0


if __name__ == "__main__":
    sys.exit(main())
