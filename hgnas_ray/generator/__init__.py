"""Generators of architectures. `hgnas_ray.generator.cells` is the cell generator (DESIGN 1, 4):
pretraining into a versioned artifact, and sampling from it; a macro-level generator will sit
beside it (`generator.macro`).

The cell generator's public names (`hgnas_ray.generator.cells.__all__`) are re-exported here,
lazily: nothing is imported until a name is used, so `from hgnas_ray.generator import
CellGenerator` works and `import hgnas_ray.generator` costs nothing.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def _cells() -> ModuleType:
    return importlib.import_module("hgnas_ray.generator.cells")


def __getattr__(name: str):
    if name == "__all__":  # `from hgnas_ray.generator import *`
        return list(_cells().__all__)
    if not name.startswith("_") and name in _cells().__all__:
        return getattr(_cells(), name)
    raise AttributeError(f"module 'hgnas_ray.generator' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_cells().__all__})
