"""The package's floors (docs/architecture.md): every import points down, and no module imports
itself back through a circle. Walks the source with ``ast``, so function-local imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lsap"

# Floor of each part of the package (docs/architecture.md). A module may import its own part and
# parts on LOWER floors; parts on the same floor do not import each other. ``lsap`` itself (the
# front door, lsap/__init__.py) and the toy room sit above everything and are imported by nothing
# of the library.
FLOORS: dict[str, int] = {
    "core": 0,  # errors, atomic writes, hashing, caches, provenance, config values, version
    "assets": 1,  # packaged files (asset:<name>)
    "optim": 1,  # optimisers
    "config": 2,  # conf/ from Python
    "nets": 2,  # generator, encoders, synthesis helpers (plain nn.Modules)
    "data": 2,  # image files, toy faces
    "io": 3,  # file formats above the networks
    "alignment": 4,  # S^N anchors, SNCD
    "training": 4,  # adversarial losses, latent discriminator
    "losses": 5,  # named loss terms and their weighted sum
    "editing": 5,  # InterFaceGAN, GANSpace, SeFa
    "metrics": 6,  # per-image scorer, evaluation
    "inversion": 7,  # latent optimisation, encoders at work, code sources, settings
    "refinement": 7,  # pivotal tuning
    "systems": 8,  # LightningModules, DataModules, callbacks, writers
    "demo": 8,  # lsap-demo's pipeline
    "sweeps": 8,  # sweep reports and weight calibration (lsap-sweep, lsap-calibrate)
    "cli": 9,  # console commands
    "toy": 10,  # training of the shipped toy models (scripts/ only)
}
TOP = "__init__"  # lsap/__init__.py


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """lsap modules ``name`` imports anywhere in its file (``from pkg import mod`` -> pkg.mod)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "lsap")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "lsap":
                continue
            subs = {f"{mod}.{a.name}" for a in node.names} & known
            out.update(subs or {mod})
            if len(subs) < len(node.names):
                out.add(mod)
    return {m for m in out if m in known and m != name}


def _part(module: str) -> str:
    parts = module.split(".")
    return TOP if len(parts) == 1 else parts[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def test_every_part_has_a_floor(graph):
    parts = {_part(m) for m in graph} - {TOP}
    assert parts <= set(FLOORS), f"parts without a floor in FLOORS: {sorted(parts - set(FLOORS))}"


def test_imports_point_down(graph):
    wrong = []
    for mod, deps in graph.items():
        here = _part(mod)
        for dep in deps:
            there = _part(dep)
            if there == here:
                continue
            if there == TOP or (here != TOP and FLOORS[there] >= FLOORS[here]):
                wrong.append(f"{mod} -> {dep}")
    assert not wrong, "imports that do not point down:\n" + "\n".join(sorted(wrong))


def test_ground_floor_imports_nothing_of_lsap(graph):
    wrong = [f"{m} -> {d}" for m, deps in graph.items() if _part(m) == "core" for d in deps]
    wrong = [w for w in wrong if _part(w.split(" -> ")[1]) != "core"]
    assert not wrong, wrong


def test_no_import_circle(graph):
    """No module reaches itself through imports (package __init__ re-exports included)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_walk_sees_imports(tmp_path):
    """The walk itself can fail: it finds absolute, ``from pkg import mod`` and function-local
    relative imports (an upward import hidden in a function is still an upward import)."""
    known = {"lsap.core.a", "lsap.io.b", "lsap.core"}
    p = tmp_path / "a.py"
    p.write_text("import torch\nfrom lsap.io import b\n\n\ndef f():\n    from .. import core\n")
    assert _imports("lsap.core.a", p, known) == {"lsap.io.b", "lsap.core"}
