"""Imports go one way: every import between rulab's packages points down the layer order or sideways without a cycle.

The order (lowest first; docs/architecture.md, "Imports go one way"):

    errors, config, registry, io, checks, lock
    <- data, models, metrics, distributed
    <- detectors, methods, attacks, checkpoint
    <- train, eval, results
    <- presets, reports, study, tracking, toy2d
    <- api, cli

A "package" is a sub-package of ``rulab`` (``rulab.eval``) or a top-level module (``rulab.attacks``). Every module
under ``src/rulab`` is parsed with ``ast``; an edge is any of

* an ``import``/``from ... import`` of a rulab module, at module level or inside a function (relative imports are
  resolved; ``from rulab import api`` is an import of ``rulab.api``);
* a use of a lazy top-level name of ``rulab/__init__.py`` (``from rulab import evaluate_checkpoint``, or
  ``import rulab`` and then ``rulab.evaluate_checkpoint``): an import of the module that name is loaded from;
* a lookup in a registry of :mod:`rulab.registry` (``from rulab.registry import PRESETS``): an import of the
  registry's builtin registrant modules (``Registry("preset", ("rulab.presets",))``), because the first lookup
  imports them. ``rulab.registry`` itself is not charged with those imports: loading the registrants by name on
  first lookup is the plugin mechanism, and the user of the registry is the one that depends on its entries;
* ``importlib.import_module("rulab....")`` with a literal name (outside ``rulab/__init__.py`` and ``registry.py``,
  whose lazy loading is accounted for above).

An edge fails when it points to a higher layer or lies on a cycle between packages. Imports within one package are
not checked here. Function-local imports count like module-level ones; they remain in the code only to defer heavy
third-party libraries or to keep a light module (the command line's ``--help``, ``import rulab``) light.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "rulab"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "config", "registry", "io", "checks", "lock"),  # checks: names, paths, numbers; lock: a run's owner
    ("data", "models", "metrics", "distributed"),  # distributed: torch.distributed plumbing for train and eval
    ("detectors", "methods", "attacks", "checkpoint"),  # attacks: PGD, used by methods and eval; checkpoint: the file
    ("train", "eval", "results"),
    ("presets", "reports", "study", "tracking", "toy2d"),  # toy2d: a training experiment (Hein et al., 2019, §3.7)
    ("api", "cli", "__main__"),
)
LAYER = {pkg: i for i, group in enumerate(LAYERS) for pkg in group}
# the package root holds ``__version__`` and the lazy names (resolved through _LAZY below); importing it costs nothing
ROOT_PKG = "rulab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT_PKG


def _literal_assign(tree: ast.Module, name: str) -> ast.expr | None:
    for node in tree.body:
        target = (
            node.targets[0]
            if isinstance(node, ast.Assign) and len(node.targets) == 1
            else getattr(node, "target", None)
        )
        if isinstance(target, ast.Name) and target.id == name and getattr(node, "value", None) is not None:
            return node.value
    return None


def _lazy_names() -> dict[str, str]:
    """``{name: module}`` of the lazy top-level names of ``rulab/__init__.py`` (its ``_LAZY`` table)."""
    value = _literal_assign(ast.parse(MODULES[ROOT_PKG].read_text(encoding="utf-8")), "_LAZY")
    assert value is not None, "rulab/__init__.py has no _LAZY table"
    return {k: v[0] for k, v in ast.literal_eval(value).items()}


def _registries() -> dict[str, tuple[str, ...]]:
    """``{REGISTRY: builtin registrant modules or packages}`` from the ``NAME = Registry("kind", (modules...),
    packages=(...))`` lines of ``rulab/registry.py`` (a package stands for all its modules)."""
    out: dict[str, tuple[str, ...]] = {}
    for node in ast.parse(MODULES["rulab.registry"].read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
            call = node.value
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(call.func, ast.Name) and call.func.id == "Registry" and isinstance(target, ast.Name):
                names = list(ast.literal_eval(call.args[1])) if len(call.args) > 1 else []
                names += [
                    m for kw in call.keywords if kw.arg in ("modules", "packages") for m in ast.literal_eval(kw.value)
                ]
                out[target.id] = tuple(names)
    return out


LAZY = _lazy_names()
REGISTRIES = _registries()


def _resolve_from(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def edges_of(module: str, path: Path) -> list[tuple[str, int, str]]:
    """``(target module, line, how)`` for every rulab import of one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, int, str]] = []
    root_aliases: set[str] = set()  # local names bound to the rulab package itself (import rulab)
    registry_aliases: set[str] = set()  # local names bound to rulab.registry

    def add_registry(name: str, line: int) -> None:
        for target in REGISTRIES.get(name, ()):
            out.append((target, line, f"looks up registry {name}, whose entries live in {target}"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT_PKG:
                    root_aliases.add(alias.asname or ROOT_PKG)
                elif alias.name.startswith(ROOT_PKG + "."):
                    out.append((alias.name, node.lineno, f"import {alias.name}"))
                    if alias.name == "rulab.registry":
                        registry_aliases.add(alias.asname or "rulab.registry")
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(module, is_pkg, node)
            if source == ROOT_PKG:
                for alias in node.names:
                    if f"rulab.{alias.name}" in MODULES:
                        out.append((f"rulab.{alias.name}", node.lineno, f"from rulab import {alias.name}"))
                        if alias.name == "registry":
                            registry_aliases.add(alias.asname or alias.name)
                    elif alias.name in LAZY:
                        out.append((LAZY[alias.name], node.lineno, f"from rulab import {alias.name} (lazy name)"))
            elif source.startswith(ROOT_PKG + "."):
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    target = sub if sub in MODULES else source  # ``from rulab.data import fetch`` imports a module
                    out.append((target, node.lineno, f"from {source} import {alias.name}"))
                    if source == "rulab.registry":
                        add_registry(alias.name, node.lineno)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in root_aliases and node.attr in LAZY:
                out.append((LAZY[node.attr], node.lineno, f"rulab.{node.attr} (lazy name)"))
            elif node.value.id in root_aliases and f"rulab.{node.attr}" in MODULES:
                out.append((f"rulab.{node.attr}", node.lineno, f"rulab.{node.attr}"))
            elif node.value.id in registry_aliases:
                add_registry(node.attr, node.lineno)
        elif isinstance(node, ast.Call) and module not in (ROOT_PKG, "rulab.registry"):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
                target = str(node.args[0].value)
                if target.startswith(ROOT_PKG + "."):
                    out.append((target, node.lineno, f"importlib.import_module({target!r})"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Name) and first.id in registry_aliases:  # getattr(registry, name): any registry
                for reg in REGISTRIES:
                    add_registry(reg, node.lineno)
    return out


def all_edges() -> list[tuple[str, str, str, int, str]]:
    """``(source package, target package, file, line, how)`` for every import between two packages."""
    rows = []
    for module, path in MODULES.items():
        for target, line, how in edges_of(module, path):
            src_pkg, dst_pkg = package_of(module), package_of(target)
            if src_pkg != dst_pkg and dst_pkg != ROOT_PKG:
                rows.append((src_pkg, dst_pkg, str(path.relative_to(SRC.parent)), line, how))
    return rows


def _cycles(edges: list[tuple[str, str, str, int, str]]) -> list[set[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b, *_ in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(set(graph) | {b for targets in graph.values() for b in targets}):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_layer():
    unplaced = sorted({package_of(m) for m in MODULES} - set(LAYER) - {ROOT_PKG})
    assert not unplaced, f"put these packages/modules into LAYERS here and into docs/architecture.md: {unplaced}"


def test_registry_builtins_exist():
    assert REGISTRIES, "no registries found in rulab/registry.py"
    missing = sorted({m for mods in REGISTRIES.values() for m in mods} - set(MODULES))
    assert not missing, f"registries name builtin modules that do not exist: {missing}"
    missing = sorted(set(LAZY.values()) - set(MODULES))
    assert not missing, f"rulab/__init__.py's lazy names point to modules that do not exist: {missing}"


def test_no_import_points_up():
    bad = [
        f"{file}:{line}: {a} (layer {LAYER[a]}) imports {b} (layer {LAYER[b]}): {how}"
        for a, b, file, line, how in all_edges()
        if a in LAYER and b in LAYER and LAYER[b] > LAYER[a]
    ]
    assert not bad, "imports that point up the layer order:\n" + "\n".join(sorted(bad))


def test_no_cycle_between_packages():
    edges = all_edges()
    bad = []
    for comp in _cycles(edges):
        bad.append(f"cycle between {', '.join(sorted(comp))}:")
        bad += [
            f"  {file}:{line}: {a} -> {b}: {how}"
            for a, b, file, line, how in sorted(edges, key=lambda e: (e[2], e[3]))
            if a in comp and b in comp
        ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_hidden_imports(tmp_path):
    """The parser finds local, relative, ``from rulab import`` and registry forms (a blind checker would pass)."""
    code = (
        "import rulab\n"
        "from . import fetch\n"
        "def f():\n"
        "    from rulab import api\n"
        "    from rulab.registry import PRESETS\n"
        "    from ..eval import evaluate\n"
        "    return rulab.evaluate_checkpoint\n"
    )
    path = tmp_path / "x.py"
    path.write_text(code)
    found = {(t, line) for t, line, _ in edges_of("rulab.data.x", path)}
    assert ("rulab.data.fetch", 2) in found and ("rulab.api", 4) in found and ("rulab.eval.evaluate", 6) in found
    assert (REGISTRIES["PRESETS"][0], 5) in found and (LAZY["evaluate_checkpoint"], 7) in found
    assert len(all_edges()) > 300  # the real tree has hundreds of internal imports
