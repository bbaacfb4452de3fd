"""The shape of the package, read from its code: every import of every module of ``ssmrec/``
(module-level and inside functions, relative imports resolved), no import circle between two
modules, and the layers of ARCHITECTURE.md.

Layers, lowest first; a module may import its own package and the layers below it:

    base (errors, _lazy, _version) -> data -> models -> eval -> train -> sweeps -> experiments -> race -> cli

beside them: ``losses`` (tensors in, scalar out) imports torch and itself only; ``serve`` (reads
an export) imports numpy, faiss and FastAPI, never torch nor the training code; the Python API
(``ssmrec.Recommender``: the package root and ``api``) sits on train and serve.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ssmrec"

RANKS = {"base": 0, "serve": 0.5, "data": 1, "losses": 1.5, "models": 2, "eval": 3, "train": 4, "api": 4.5,
         "sweeps": 5, "experiments": 6, "race": 6.5, "cli": 7}
"""Where each part sits: a module may import a module of its own part or of a lower rank."""
PARTS = {"ssmrec.errors": "base", "ssmrec._lazy": "base", "ssmrec._version": "base", "ssmrec": "api",
         "ssmrec.api": "api", "ssmrec.__main__": "cli"}
"""Modules that are not in a package of their part's name (the others: ``ssmrec.<part>...``)."""
ONLY_ITSELF = {"losses": {"losses"}, "serve": {"serve", "base"}}
"""Parts that may import nothing of ssmrec but these parts, whatever their rank."""
THIRD_PARTY = {"losses": {"torch"}}
"""Parts whose imports outside the standard library are these packages only."""
EXCEPTIONS = {"ssmrec.losses.adaptau": {"scipy"}}
"""Single modules allowed one more package: Adap-tau's temperatures need the Lambert W function
(``scipy.special.lambertw``, on a CPU copy of a few numbers), which torch does not have."""
NEVER = {"serve": {"torch"}}
"""Packages a part never imports: serving runs without torch."""
ENTRY_POINTS = {"ssmrec": {"ssmrec.race"}}
"""Imports above a module's layer that are its public face, made inside a function on first use:
the package root offers ``ssmrec.compare`` (the race of losses) beside ``ssmrec.Recommender``."""


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(name: str, path: Path) -> list[tuple[str, int]]:
    """``(imported name, line)`` for every import statement of a module, wherever it stands; a
    ``from X import a`` gives ``X`` and ``X.a`` (``a`` may be a module), relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def graph(mods: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {module of the package it imports: the line of the first such import}."""
    edges: dict[str, dict[str, int]] = {m: {} for m in mods}
    for m, path in mods.items():
        for target, line in imports(m, path):
            while target and target not in mods:  # ``a.b.name``: the module a.b
                target = target.rpartition(".")[0]
            if target and target != m:
                edges[m].setdefault(target, line)
    return edges


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Circles of imports, each a path that starts and ends at the same module: for every strongly
    connected component of two or more modules (Tarjan's algorithm), enough shortest circles that
    each of its modules is on one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(edges) + 100))
    try:
        for v in sorted(edges):
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)
    out = []
    for component in components:
        covered: set[str] = set()
        for start in sorted(component):  # circles until every module of the component is on one
            if start not in covered:
                circle = shortest_circle(edges, component, start)
                covered.update(circle)
                out.append(circle)
    return out


def shortest_circle(edges: dict[str, dict[str, int]], component: set[str], start: str) -> list[str]:
    """The shortest way from ``start`` back to it inside ``component`` (breadth first)."""
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(edges[v]):
            if w == start:
                return paths[v] + [start]
            if w in component and w not in paths:
                paths[w] = paths[v] + [w]
                todo.append(w)
    raise AssertionError(f"{start} is on no circle of its component")


def shown(path: Path) -> str:
    """``ssmrec/train/trainer.py``: the file, from the package's folder on."""
    parts = path.parts
    return "/".join(parts[len(parts) - 1 - parts[::-1].index("ssmrec"):])


def part(module: str) -> str:
    if module in PARTS:
        return PARTS[module]
    return module.split(".")[1]


def layer_faults(mods: dict[str, Path], edges: dict[str, dict[str, int]]) -> list[str]:
    faults = []
    for m, targets in edges.items():
        mine = part(m)
        assert mine in RANKS, f"{m}: a part of the package that has no layer; add it to RANKS"
        for t, line in targets.items():
            theirs = part(t)
            where = f"{shown(mods[m])}:{line}: {m} imports {t}"
            if mine in ONLY_ITSELF and theirs not in ONLY_ITSELF[mine]:
                faults.append(f"{where} ({mine} may import only {', '.join(sorted(ONLY_ITSELF[mine]))})")
            elif theirs != mine and RANKS[theirs] >= RANKS[mine] and t not in ENTRY_POINTS.get(m, ()):
                faults.append(f"{where} ({theirs} is not below {mine})")
    return faults


def outside_faults(mods: dict[str, Path]) -> list[str]:
    faults = []
    for m, path in mods.items():
        mine = part(m)
        for target, line in imports(m, path):
            top = target.split(".")[0]
            if not top or top == "ssmrec" or top == "__future__":
                continue
            where = f"{shown(path)}:{line}: {m} imports {target}"
            if top in NEVER.get(mine, ()):
                faults.append(f"{where} ({mine} never imports {top})")
            allowed = THIRD_PARTY.get(mine)
            if allowed is not None and top not in allowed | EXCEPTIONS.get(m, set()) \
                    and top not in sys.stdlib_module_names:
                faults.append(f"{where} ({mine} imports only {', '.join(sorted(allowed))} and the standard library)")
    return faults


# ------------------------------------------------------------------ the package


@pytest.fixture(scope="module")
def package():
    mods = modules()
    return mods, graph(mods)


def test_the_import_map_is_read_from_every_module(package):
    mods, edges = package
    assert len(mods) > 80 and all(part(m) in RANKS for m in mods)
    # known imports at module level, inside a function, and of a module named in `from package import module`
    assert "ssmrec.train.objective" in edges["ssmrec.train.trainer"]
    assert "ssmrec.train.export" in edges["ssmrec.api"]  # inside Recommender.fit
    assert "ssmrec.data.registry" in edges["ssmrec.data.dataset"]  # from ssmrec.data import registry


def test_no_import_circles(package):
    _, edges = package
    found = cycles(edges)
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_each_layer_imports_only_the_layers_below_it(package):
    mods, edges = package
    faults = layer_faults(mods, edges)
    assert not faults, "imports against the layers (see ARCHITECTURE.md):\n" + "\n".join(faults)


def test_losses_import_torch_alone_and_serving_never_torch():
    faults = outside_faults(modules())
    assert not faults, "\n".join(faults)


def test_the_names_the_readme_documented_before_still_import():
    """Kept for compatibility: the sweep and tuning classes moved to ssmrec.sweeps."""
    from ssmrec import sweeps
    from ssmrec.experiments.sweep import Sweep
    from ssmrec.experiments.tune import Study

    assert Sweep is sweeps.Sweep and Study is sweeps.Study


# ------------------------------------------------------------------ the checks themselves


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "ssmrec"


def test_a_circle_through_a_function_level_relative_import_is_found(tmp_path):
    root = write(tmp_path, {
        "ssmrec/__init__.py": "",
        "ssmrec/train/__init__.py": "",
        "ssmrec/train/trainer.py": "from ssmrec.train.objective import build\n",
        "ssmrec/train/objective.py": "def build():\n    from .distributed import launch\n",
        "ssmrec/train/distributed.py": "def launch():\n    from . import trainer\n",
        "ssmrec/train/config.py": "from ssmrec.train import objective\n",
    })
    edges = graph(modules(root))
    assert edges["ssmrec.train.distributed"] == {"ssmrec.train": 2, "ssmrec.train.trainer": 2}
    assert cycles(edges) == [["ssmrec.train.distributed", "ssmrec.train.trainer", "ssmrec.train.objective",
                              "ssmrec.train.distributed"]]


def test_an_import_up_the_layers_and_torch_in_serving_are_named(tmp_path):
    root = write(tmp_path, {
        "ssmrec/__init__.py": "",
        "ssmrec/sweeps/__init__.py": "",
        "ssmrec/sweeps/sweep.py": "def f():\n    from ssmrec.experiments.grid import Cell\n",
        "ssmrec/experiments/__init__.py": "",
        "ssmrec/experiments/grid.py": "from ssmrec.sweeps.sweep import f\n",
        "ssmrec/serve/__init__.py": "",
        "ssmrec/serve/app.py": "import numpy\nimport torch\nfrom ssmrec.train import trainer\n",
        "ssmrec/train/__init__.py": "",
        "ssmrec/train/trainer.py": "",
        "ssmrec/losses/__init__.py": "import math\nimport torch\nimport numpy as np\n",
    })
    mods = modules(root)
    faults = layer_faults(mods, graph(mods))
    assert faults == [  # the package and the module that `from ssmrec.train import trainer` imports
        "ssmrec/serve/app.py:3: ssmrec.serve.app imports ssmrec.train (serve may import only base, serve)",
        "ssmrec/serve/app.py:3: ssmrec.serve.app imports ssmrec.train.trainer (serve may import only base, serve)",
        "ssmrec/sweeps/sweep.py:2: ssmrec.sweeps.sweep imports ssmrec.experiments.grid (experiments is not below "
        "sweeps)"]
    faults = outside_faults(mods)
    assert [f.split(": ", 1)[1] for f in faults] == [
        "ssmrec.losses imports numpy (losses imports only torch and the standard library)",
        "ssmrec.serve.app imports torch (serve never imports torch)"]


# ------------------------------------------------------------------ the map


def test_the_map_names_modules_and_functions_that_exist():
    """Every ``path.py: name`` (and ``models: name``, ``losses: name``) that ARCHITECTURE.md names is
    defined there: a function, class or constant of the module, or ``Class.method``."""
    text = (ROOT.parent / "ARCHITECTURE.md").read_text()
    named = re.findall(r"`([a-z_]+/[a-z_/]+\.py): ([A-Za-z_][\w.]*)`", text)
    named += [(f"{pkg}/__init__.py", name) for pkg, name in re.findall(r"`(models|losses): (\w+)`", text)]
    assert len(named) > 20
    missing = []
    for file, name in named:
        tree = ast.parse((ROOT / file).read_text())
        scope, found = tree.body, None
        for part in name.split("."):
            found = next((node for node in scope if part in defined(node)), None)
            if found is None:
                missing.append(f"{file}: {name}")
                break
            scope = getattr(found, "body", [])
    assert not missing, "ARCHITECTURE.md names what the code does not have:\n" + "\n".join(missing)


def defined(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    return set()
