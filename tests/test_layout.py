"""The package's layering (STYLE rule 1, README "Layout").

- The core never imports ray: only hgnas_ray/distributed/ and the entry points do, and importing
  a core package loads neither ray nor the Ray layer nor the CLI.
- No import cycles: between first-level subpackages (every import counts, also the ones inside
  functions, which would otherwise hide an upward arrow) and between single modules.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hgnas_ray"
RAY_IMPORT = re.compile(r"^\s*(import ray\b|from ray\b)", re.MULTILINE)
CORE = ("hgnas_ray.space", "hgnas_ray.nn", "hgnas_ray.proxies", "hgnas_ray.evaluation",
        "hgnas_ray.data", "hgnas_ray.corpus", "hgnas_ray.generator", "hgnas_ray.generator.cells",
        "hgnas_ray.models", "hgnas_ray.training", "hgnas_ray.search", "hgnas_ray.search.pipeline",
        "hgnas_ray.bench", "hgnas_ray.config", "hgnas_ray.errors")
FORBIDDEN = ("ray", "hgnas_ray.distributed", "hgnas_ray.cli")
ROOT_LAYER = "(root)"  # hgnas_ray/__init__.py, config.py, errors.py


def test_no_ray_import_outside_distributed():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if "distributed" not in p.relative_to(PACKAGE).parts
                 and RAY_IMPORT.search(p.read_text())]
    assert offenders == [], f"modules importing ray outside distributed/: {offenders}"


def test_importing_a_core_package_loads_neither_ray_nor_the_ray_layer_nor_the_cli():
    """One fresh interpreter imports the core packages one after another and reports, for each,
    the forbidden modules its import loaded (those not loaded before it)."""
    code = (f"import importlib, json, sys\nfound = {{}}\nfor name in {list(CORE)!r}:\n"
            f"    before = [m for m in {list(FORBIDDEN)!r} if m in sys.modules]\n"
            "    importlib.import_module(name)\n"
            f"    found[name] = [m for m in {list(FORBIDDEN)!r} if m in sys.modules\n"
            "                   and m not in before]\n"
            "print(json.dumps(found))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    culprits = {name: loaded for name, loaded in found.items() if loaded}
    assert not culprits, f"core packages whose import loaded a forbidden module: {culprits}"


# ---------------------------------------------------------------------- import graph
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """Every hgnas_ray module `path` imports, anywhere in the file (functions included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {name for name in found if name in modules}


def _module_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, name, set(paths)) - {name} for name, path in paths.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return ROOT_LAYER


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _arrows(graph: dict[str, set[str]], source: str, target: str) -> list[str]:
    return [f"{a} -> {b}" for a, targets in sorted(graph.items()) for b in sorted(targets)
            if _layer(a) == source and _layer(b) == target]


def test_find_cycle_on_toy_graphs():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_between_subpackages():
    modules = _module_graph()
    layers: dict[str, set[str]] = {}
    for module, targets in modules.items():
        layers.setdefault(_layer(module), set()).update(
            _layer(t) for t in targets if _layer(t) != _layer(module))
    cycle = _find_cycle(layers)
    if cycle is not None:
        arrows = [arrow for a, b in zip(cycle, cycle[1:], strict=False)
                  for arrow in _arrows(modules, a, b)]
        pytest.fail(f"import cycle between subpackages: {' -> '.join(cycle)}; through "
                    f"{arrows}")


def test_no_import_cycle_between_modules():
    cycle = _find_cycle(_module_graph())
    assert cycle is None, f"import cycle between modules: {' -> '.join(cycle or [])}"
