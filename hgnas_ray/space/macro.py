"""Macro networks: a stem, a sequence of stages and a head (DESIGN 2.2).

A stage is (cell, channels, stride, repeats); its first cell applies the stride and the width
change, the rest run at stride 1. The genotype holds no task: the number of classes and the input
size come with the task when the network is built or costed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hgnas_ray.errors import GenotypeError, HgnasError
from hgnas_ray.space.cell import CellGenotype, _loads, strict_int
from hgnas_ray.space.cell_sampling import mutate_cell, sample_cell

MIN_CHANNELS, MAX_CHANNELS, CHANNEL_STEP = 8, 1024, 8
MAX_REPEATS = 4
MAX_CELLS = 19  # "fewer than 20 cells in total"
CellMutation = Callable[[CellGenotype, np.random.Generator], CellGenotype]
WIDTH_FACTORS = (2.5, 2.0, 1.5, 1.25, 1.0, 1 / 1.25, 1 / 1.5, 1 / 2, 1 / 2.5)
REPEAT_DELTAS = (0, 1, 2, -1, -2)


@dataclass(frozen=True)
class Stage:
    cell: CellGenotype
    channels: int
    stride: int
    repeats: int

    def __post_init__(self) -> None:  # numpy ints from samplers would not serialise to JSON
        for name in ("channels", "stride", "repeats"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {"cell": self.cell.to_dict(), "channels": self.channels, "stride": self.stride,
                "repeats": self.repeats}


@dataclass(frozen=True)
class MacroGenotype:
    """stem conv to `stem_channels`; `stages`; head 1x1 conv to `final_channels`, pool, linear."""

    stem_channels: int
    stages: tuple[Stage, ...]
    final_channels: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "stem_channels", int(self.stem_channels))
        object.__setattr__(self, "final_channels", int(self.final_channels))

    @property
    def num_cells(self) -> int:
        return sum(s.repeats for s in self.stages)

    @property
    def num_downsamples(self) -> int:
        return sum(s.stride == 2 for s in self.stages)

    def validate(self) -> MacroGenotype:
        _check_width("stem channels", self.stem_channels)
        _check_width("final channels", self.final_channels)
        if not self.stages:
            raise GenotypeError("a macro network needs at least one stage")
        for index, stage in enumerate(self.stages):
            where = f"stage {index}"
            _check_width(f"{where} channels", stage.channels)
            if stage.stride not in (1, 2):
                raise GenotypeError(f"{where} stride is {stage.stride}; allowed: 1 or 2")
            if not 1 <= stage.repeats <= MAX_REPEATS:
                raise GenotypeError(f"{where} repeats is {stage.repeats}; allowed: "
                                    f"1..{MAX_REPEATS}")
            if stage.cell.space != "cell":
                raise GenotypeError(f"{where} cell is from the {stage.cell.space!r} space; macro "
                                    "networks use cells of the 'cell' space")
            stage.cell.validate()
        if self.num_cells > MAX_CELLS:
            raise GenotypeError(f"the network has {self.num_cells} cells; at most {MAX_CELLS}")
        return self

    @property
    def hash(self) -> str:
        payload = json.dumps([self.stem_channels, self.final_channels,
                              [(s.cell.hash, s.channels, s.stride, s.repeats)
                               for s in self.stages]])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"space": "macro", "stem_channels": self.stem_channels,
                "stages": [s.to_dict() for s in self.stages],
                "final_channels": self.final_channels}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MacroGenotype:
        if not isinstance(data, Mapping):
            raise GenotypeError(f"a macro genotype is a JSON object; got {type(data).__name__}")
        missing = {"stem_channels", "stages", "final_channels"} - set(data)
        if missing:
            raise GenotypeError(f"macro genotype lacks {sorted(missing)}; expected keys "
                                "'stem_channels', 'stages' and 'final_channels'")
        try:
            stages = tuple(_stage_from_dict(s) for s in data["stages"])
            macro = cls(strict_int(data["stem_channels"], "stem_channels"), stages,
                        strict_int(data["final_channels"], "final_channels"))
        except (TypeError, ValueError, KeyError) as err:
            if isinstance(err, HgnasError):
                raise
            raise GenotypeError(f"malformed macro genotype: {err!r}; each stage needs 'cell', "
                                "'channels', 'stride', 'repeats'") from None
        return macro.validate()

    @classmethod
    def from_json(cls, text: str) -> MacroGenotype:
        return cls.from_dict(_loads(text))

    def __str__(self) -> str:
        return self.to_json()


def _stage_from_dict(data: Mapping[str, Any]) -> Stage:
    return Stage(CellGenotype.from_dict(data["cell"]), strict_int(data["channels"], "channels"),
                 strict_int(data["stride"], "stride"), strict_int(data["repeats"], "repeats"))


def _check_width(what: str, value: int) -> None:
    if not (MIN_CHANNELS <= value <= MAX_CHANNELS and value % CHANNEL_STEP == 0):
        raise GenotypeError(f"{what} is {value}; allowed: multiples of {CHANNEL_STEP} in "
                            f"[{MIN_CHANNELS}, {MAX_CHANNELS}]")


def round_width(value: float) -> int:
    """Round down to a multiple of 8 and clamp to [8, 1024]."""
    return int(min(MAX_CHANNELS, max(MIN_CHANNELS, int(value) // CHANNEL_STEP * CHANNEL_STEP)))


def sample_macro(rng: np.random.Generator, max_downsamples: int = 3, max_stages: int = 6,
                 max_width: int = 256) -> MacroGenotype:
    """A random network: 1..max_stages stages, widths growing by 1-2x at each downsample."""
    n_stages = int(rng.integers(1, max_stages + 1))
    budget_cells = MAX_CELLS
    width = int(rng.choice([8, 16, 24, 32]))
    stem = width
    downsamples = 0
    stages = []
    for index in range(n_stages):
        stride = 2 if downsamples < max_downsamples and rng.random() < 0.5 else 1
        downsamples += stride == 2
        if stride == 2 or index == 0:
            width = min(max_width, round_width(width * float(rng.choice([1.0, 1.5, 2.0]))))
        repeats = int(rng.integers(1, min(MAX_REPEATS, budget_cells - (n_stages - index - 1)) + 1))
        budget_cells -= repeats
        stages.append(Stage(sample_cell(rng), width, stride, repeats))
    final = min(MAX_CHANNELS, round_width(width * float(rng.choice([1.0, 2.0, 4.0]))))
    return MacroGenotype(stem, tuple(stages), final).validate()


def mutate_macro(genotype: MacroGenotype, rng: np.random.Generator, max_downsamples: int = 3,
                 max_tries: int = 200, new_cell: CellMutation | None = None) -> MacroGenotype:
    """ZenNAS/HGENNAS mutation of one stage; returns a valid, different genotype.

    `new_cell(cell, rng)` replaces a stage's cell when the cell is among the mutated fields
    (default: `mutate_cell`; HL-Evo passes one that may regenerate it with the CCNF).
    """
    for _ in range(max_tries):
        child = _mutate_once(genotype, rng, new_cell or mutate_cell)
        if (child is not None and child.num_cells <= MAX_CELLS and child.hash != genotype.hash
                and child.num_downsamples <= max_downsamples):
            return child.validate()
    raise GenotypeError(f"could not mutate macro genotype in {max_tries} tries")


def _mutate_once(genotype: MacroGenotype, rng: np.random.Generator,
                 new_cell: CellMutation) -> MacroGenotype | None:
    index = int(rng.integers(len(genotype.stages)))
    stage = genotype.stages[index]
    final = genotype.final_channels
    fields = [f for f in ("cell", "channels", "stride", "repeats", "final") if rng.random() < 0.5]
    fields = fields or [("cell", "channels", "stride", "repeats", "final")[int(rng.integers(5))]]
    repeats = stage.repeats
    if "cell" in fields:
        stage = replace(stage, cell=new_cell(stage.cell, rng))
    if "channels" in fields:
        stage = replace(stage, channels=round_width(stage.channels * rng.choice(WIDTH_FACTORS)))
    if "stride" in fields:
        stage = replace(stage, stride=3 - stage.stride)
    if "repeats" in fields:
        repeats += int(rng.choice(REPEAT_DELTAS))
    if "final" in fields:
        final = round_width(final * rng.choice(WIDTH_FACTORS))
    new_stages = _resize_stage(stage, repeats)
    stages = (*genotype.stages[:index], *new_stages, *genotype.stages[index + 1:])
    if not stages:
        return None
    return MacroGenotype(genotype.stem_channels, stages, final)


def _resize_stage(stage: Stage, repeats: int) -> tuple[Stage, ...]:
    """0 or fewer repeats drops the stage; more than 4 splits it into two stages."""
    if repeats <= 0:
        return ()
    if repeats <= MAX_REPEATS:
        return (replace(stage, repeats=repeats),)
    return (replace(stage, repeats=MAX_REPEATS),
            replace(stage, stride=1, repeats=repeats - MAX_REPEATS))
