"""The stage order holds in the imports: a module imports only its own layer or lower ones.

Layers, lowest first (docs/ARCHITECTURE.md):

    core < frontend < passes < quant < lower < verify < profile < report < pipeline < api

core is the package root (`edgeq.__version__`: every module may read it), graph, errors, fileio,
artifact, hostcpu, progress, target, runners, op_cost, compare, devices, host_numbers, schemes (and the data
package targets); api is build, cli, inspect and __main__.

Every import counts, at any depth: a function-local import of a higher layer is still an upward
dependency (it only hides it until the call), so it is refused like a module-level one. The one way
down to a higher layer is a registry resolved by name (edgeq.target's TARGET_MODULES), which this
test does not see on purpose. Function-local imports of the same or a lower layer are fine (that is
how heavy runtimes stay lazy). Imports under `if TYPE_CHECKING:` never run and name a type only,
so they are not counted. Cycles are checked on module-level imports, the ones that run at import;
circles that close through function-local imports are listed in KNOWN_CIRCLES with their reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "edgeq"

LAYERS = ["core", "frontend", "passes", "quant", "lower", "verify", "profile", "report", "pipeline", "api"]
CORE = {"graph", "errors", "fileio", "artifact", "hostcpu", "progress", "target", "runners", "targets",
        "op_cost",  # the one MAC counter, below quant (act_search), lower (readers) and profile
        "compare",  # output metrics, shared by verify and the targets' cross-checks (lower)
        "devices", "host_numbers",  # device profiles (targets/devices/*.toml): profile, lower.ort, build read them
        "schemes"}  # the weight scheme registry: quant, lower, target and the CLI's --scheme read it
API = {"build", "cli", "inspect", "__main__"}

# (importer, imported): upward imports that stay, each with the reason. Keep it short.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    # edgeq.compile, the public API, lives in the root so `import edgeq` offers it; the root runs
    # before every submodule, so it may reach the pipeline only when called.
    ("edgeq", "edgeq.pipeline"): "edgeq.compile",
}

# Circles that close only through function-local imports (import order cannot break on them, but
# they still tie modules together), each with the reason it stays. A new one fails the test.
KNOWN_CIRCLES: dict[frozenset[str], str] = {
    frozenset({"edgeq", "edgeq.pipeline", "edgeq.quant.act_precision", "edgeq.quant.act_search"}):
        "edgeq.compile (ALLOWED_UPWARD) and __version__ in the root, which act_search's cache key reads",
    frozenset({"edgeq.build.cache", "edgeq.build.config", "edgeq.build.run", "edgeq.cli"}):
        "edgeq.toml options are parsed by compile's own click command (one check per flag and key)",
    frozenset({"edgeq.devices", "edgeq.host_numbers"}):
        "a host calibration entry is checked with the device schema (collect_quantities)",
    frozenset({"edgeq.quant.plan", "edgeq.quant.weights"}):
        "plan.py's re-derive check calls weights.needs_derive; left while plan.py is being reworked",
}

# Modules allowed over MAX_LINES, each with the reason.
MAX_LINES = 400
LONG_ALLOWED: dict[str, str] = {}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in CORE:
        return "core"
    if parts[1] in API:
        return "api"
        return "core"
    return parts[1]


def edgeq_modules() -> dict[str, Path]:
    """{dotted name: path}; the targets data package is a symlink in checkouts, so it is skipped."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        if rel.parts[1] == "targets":
            continue
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """[(imported edgeq module, line, at module level)] for every import statement in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []

    def targets(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:  # relative: resolved against the importing package
            base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
        # `from edgeq.x import y` imports the module edgeq.x.y when there is one, else a name of edgeq.x
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]

    def visit(node, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                continue  # annotations only: never imported at run time
            if isinstance(child, ast.Import | ast.ImportFrom):
                named = dict.fromkeys(t for t in targets(child) if t.split(".")[0] == "edgeq")
                found.extend((t, child.lineno, top) for t in named)
            visit(child, top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(tree, True)
    return found


def import_graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int, bool]]]]:
    modules = edgeq_modules()
    return modules, {m: imports_of(m, p, set(modules)) for m, p in modules.items()}


def upward_imports() -> list[str]:
    _, edges = import_graph()
    found = []
    for module, imported in edges.items():
        for target, line, top in imported:
            if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(module)) and (module, target) not in ALLOWED_UPWARD:
                where = "" if top else " (in a function)"
                found.append(f"{module}:{line} ({layer_of(module)}) imports {target} ({layer_of(target)}){where}")
    return found


def import_cycles(module_level: bool = True) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan): over module-level imports,
    or over every import when module_level is False."""
    modules, edges = import_graph()
    graph = {m: sorted({t for t, _, top in edges[m] if (top or not module_level) and t in modules and t != m})
             for m in modules}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return sorted(cycles)


def unknown_circles() -> list[list[str]]:
    return [c for c in import_cycles(module_level=False) if frozenset(c) not in KNOWN_CIRCLES]


def long_modules() -> list[str]:
    modules = edgeq_modules()
    found = []
    for module, path in modules.items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and module not in LONG_ALLOWED:
            found.append(f"{module}: {lines} lines")
    return found


def test_every_module_has_a_layer():
    for module in edgeq_modules():
        assert layer_of(module) in LAYERS, module


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


def test_allowlist_entries_are_still_needed():
    _, edges = import_graph()
    present = {(m, t) for m, imported in edges.items() for t, _, _ in imported}
    assert sorted(set(ALLOWED_UPWARD) - present) == []


def test_no_import_cycles():
    assert import_cycles() == []


def test_no_new_circles_through_function_imports():
    assert unknown_circles() == []


def test_known_circles_still_exist():
    present = {frozenset(c) for c in import_cycles(module_level=False)}
    assert sorted(sorted(c) for c in set(KNOWN_CIRCLES) - present) == []


def test_no_module_over_the_line_limit():
    assert long_modules() == []


if __name__ == "__main__":  # the lists, for a report: python tests/test_layering.py
    modules = edgeq_modules()
    print(f"{len(modules)} modules")
    print("upward imports:", *upward_imports() or ["none"], sep="\n  ")
    print("cycles (module level):", *[" <-> ".join(c) for c in import_cycles()] or ["none"], sep="\n  ")
    print("circles through function-local imports, not known:", *[" <-> ".join(c) for c in unknown_circles()] or ["none"],
          sep="\n  ")
    print(f"over {MAX_LINES} lines:", *long_modules() or ["none"], sep="\n  ")
