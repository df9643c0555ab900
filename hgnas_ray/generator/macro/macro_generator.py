"""`MacroGenerator`: a loaded macro-generator artifact - sample networks, fine-tune, save.

Sampling (DESIGN 1, step 3): the transformer writes layouts under the grammar and the budget
(`hgnas_ray.models.seqgen.decoding`); each stage's cluster is then filled with a cell the cell
generator draws for that cluster, and the network's exact cost (`macro_cost`) is checked. A
network over budget gets its cells redrawn (random picks from the clusters' cells, then the
cheapest of them); a layout no drawn cells fit is replaced by a newly decoded one. Every returned
genotype validates and fits the budget.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hgnas_ray.config import from_dict
from hgnas_ray.errors import BudgetError, ConfigError, DataError
from hgnas_ray.generator.cells.errors import ArtifactError
from hgnas_ray.generator.macro.artifact import read_artifact, write_artifact
from hgnas_ray.generator.macro.dataset import HistoryRecord, parse_record, token_matrix
from hgnas_ray.models.seqgen.costs import PooledLowerBound, layout_lower_bound
from hgnas_ray.models.seqgen.decoding import LayoutDecoder
from hgnas_ray.models.seqgen.model import SeqGen, SeqGenConfig
from hgnas_ray.models.seqgen.vocab import MacroLayout, SeqVocabulary, task_from_dict
from hgnas_ray.nn.budget import Budget
from hgnas_ray.nn.cost_model import macro_cost, stage_cost, stem_cost
from hgnas_ray.space.cell import CellGenotype
from hgnas_ray.space.macro import MacroGenotype, Stage
from hgnas_ray.training import TrainConfig
from hgnas_ray.training.seqgen import train_seqgen

CELL_REDRAWS = 8  # random cell picks per layout before the cheapest cells are tried
MIN_KEPT_SHARE = 0.05  # the smallest share of decoded layouts a round plans for
DECODE_ROUNDS = 10  # layouts decoded again for networks whose cells never fit
POOL_SIZE = 16  # distinct cells drawn per cluster a sample call uses


class MacroGenerator:
    """The sequence generator of one artifact and the cell generator it was trained with."""

    def __init__(self, model: SeqGen, vocab: SeqVocabulary, manifest: dict[str, Any],
                 cell_artifact: str | Path, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.vocab, self.manifest = vocab, manifest
        self.cell_artifact = Path(cell_artifact)
        self.decoder = LayoutDecoder(self.model, vocab, layout_lower_bound)
        self._cells = None

    @classmethod
    def load(cls, path: str | Path, cell_artifact: str | Path,
             device: str | torch.device = "cpu") -> MacroGenerator:
        """Read an artifact (safetensors + JSON only); `cell_artifact` must be the cell
        artifact it was trained with (checked by the digest of its artifact.json)."""
        manifest, state = read_artifact(path, cell_artifact)
        try:
            vocab = SeqVocabulary.from_state_dict(manifest["vocabulary"])
            model = SeqGen(from_dict(SeqGenConfig, manifest["model_config"]))
            model.load_state_dict(state)
        except (ConfigError, RuntimeError, KeyError, TypeError) as err:
            raise ArtifactError(f"artifact {path} does not fit this hgnas-ray's sequence "
                                f"generator ({type(err).__name__}: {err}); write it again with "
                                "`hgnas pretrain macro`") from None
        return cls(model, vocab, manifest, cell_artifact, device)

    @property
    def cells(self):
        """The cell generator (loaded on first use: torch-geometric is slow to import)."""
        if self._cells is None:
            from hgnas_ray.generator.cells.cell_generator import CellGenerator

            self._cells = CellGenerator.load(self.cell_artifact, self.device)
            if self._cells.num_clusters != self.vocab.num_clusters:
                raise ArtifactError(f"cell artifact {self.cell_artifact} has "
                                    f"{self._cells.num_clusters} clusters; this macro generator "
                                    f"writes {self.vocab.num_clusters}")
        return self._cells

    # ------------------------------------------------------------------ sampling
    def sample_layouts(self, task, budget=None, n: int = 1, temperature: float = 1.0,
                       seed: int = 0) -> list[MacroLayout]:
        """`n` layouts (cluster ids, no cells) whose cheapest networks fit the budget."""
        task, budget = as_task(task), as_budget(budget)
        generator = torch.Generator().manual_seed(int(seed))
        return self.decoder.sample(task, budget, _count(n), temperature, generator)

    def sample(self, task, budget=None, n: int = 1, temperature: float = 1.0,
               seed: int = 0, min_budget_share: float = 0.0) -> list[MacroGenotype]:
        """`n` macro genotypes with concrete cells, each valid and within the budget. `task`: a
        `TaskShape` or a mapping of its fields; `budget`: a `Budget`, a mapping of max_params /
        max_macs, or None (no limit). `min_budget_share` > 0 keeps only networks that use at
        least that share of the budget (of its tightest limit). Same arguments, same networks."""
        return [genotype for genotype, _ in self.sample_with_layouts(
            task, budget, n, temperature, seed, min_budget_share)]

    def sample_with_layouts(self, task, budget=None, n: int = 1, temperature: float = 1.0,
                            seed: int = 0, min_budget_share: float = 0.0
                            ) -> list[tuple[MacroGenotype, MacroLayout]]:
        """`sample`, each network with its layout (whose cluster ids name its cells' clusters)."""
        task, budget, n = as_task(task), as_budget(budget), _count(n)
        share = _share_floor(min_budget_share, budget)
        generator = torch.Generator().manual_seed(int(seed))
        rng = np.random.default_rng(int(seed))
        pools = CellPools(self.cells, int(seed))
        bound = PooledLowerBound(pools)
        found: list[tuple[MacroGenotype, MacroLayout]] = []
        decoded = 0
        for _ in range(DECODE_ROUNDS):
            if len(found) == n:
                break
            # decode for the share of layouts kept so far (a minimum budget share rejects many)
            kept = max(len(found) / decoded, MIN_KEPT_SHARE) if decoded else 1.0
            want = min(math.ceil((n - len(found)) / kept), 4 * n)
            layouts = self.decoder.sample(task, budget, want, temperature, generator,
                                          lower_bound=bound)
            decoded += len(layouts)
            for layout in layouts:
                genotype = fill_cells(layout, pools, task, budget, rng)
                if len(found) < n and genotype is not None and (
                        not share or budget.excess(macro_cost(genotype, task)) >= share):
                    found.append((genotype, layout))
        if len(found) < n:
            if share:
                raise BudgetError(f"only {len(found)} of {n} networks used >= {share:.0%} of "
                                  f"the budget ({budget}) after {DECODE_ROUNDS} rounds of "
                                  "decoding; lower the minimum budget share")
            raise BudgetError(f"only {len(found)} of {n} networks fit the budget ({budget}) "
                              f"after {DECODE_ROUNDS} rounds of decoding: the clusters' cells "
                              "are too costly for it; raise the budget")
        return found

    # ------------------------------------------------------------------ fine-tuning
    def finetune(self, records: Iterable[Mapping[str, Any] | HistoryRecord], epochs: int = 3,
                 lr: float = 3e-4, batch_size: int = 32, seed: int = 0
                 ) -> list[dict[str, float]]:
        """Train a few epochs on given networks (e.g. a search's best), in place; return the
        per-epoch metrics. A record is a history line (task, budget, genotype, clusters) or a
        `HistoryRecord`; without "clusters", each stage's cell is assigned to its nearest
        cluster by the cell generator."""
        parsed = [r if isinstance(r, HistoryRecord) else self._record(r) for r in records]
        if not parsed:
            raise DataError("finetune needs at least one network")
        history: list[dict[str, float]] = []
        config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                             device=str(self.device), grad_clip=1.0)
        train_seqgen(self.model, token_matrix(parsed, self.vocab), config,
                     lambda epoch, metrics, _: history.append({"epoch": epoch, **metrics}))
        self.model.eval()
        self.manifest.setdefault("finetuning", []).append(
            {"networks": len(parsed), "epochs": epochs, "lr": lr, "history": history})
        return history

    def _record(self, data: Mapping[str, Any]) -> HistoryRecord:
        if "clusters" not in data:
            genotype = MacroGenotype.from_dict(data["genotype"])
            clusters = self.nearest_clusters([s.cell for s in genotype.stages])
            data = {**data, "clusters": clusters}
        return parse_record({"fitness": 0.0, **data}, self.vocab.num_clusters)

    def nearest_clusters(self, cells: list[CellGenotype]) -> list[int]:
        """The cluster of each cell: the GMM component of its predicted condition."""
        condition = self.cells.predict_condition(cells, normalized=True)
        return [int(c) for c in self.cells.cluster_model.predict(condition)]

    def save(self, out_dir: str | Path) -> Path:
        """Write this generator (e.g. after `finetune`) as an artifact of the same format."""
        keep = {k: v for k, v in self.manifest.items()
                if k not in ("format", "format_version", "package_version", "weights")}
        return write_artifact(out_dir, keep, self.model.state_dict())

    def __repr__(self) -> str:
        return (f"MacroGenerator({self.model!r}, clusters={self.vocab.num_clusters}, "
                f"cell_artifact={str(self.cell_artifact)!r})")


class CellPools(Mapping):
    """Cells of each cluster, drawn from the cell generator on first use (seeded per cluster,
    so the draws do not depend on the order clusters are asked for)."""

    def __init__(self, cells, seed: int, size: int = POOL_SIZE) -> None:
        self.cells, self.seed, self.size = cells, seed, size
        self._pools: dict[int, list[CellGenotype]] = {}

    def __getitem__(self, cluster: int) -> list[CellGenotype]:
        if cluster not in self._pools:
            from hgnas_ray.generator.cells.cell_generator import GenerationWarning

            with warnings.catch_warnings():  # a concentrated cluster: fewer distinct cells
                warnings.simplefilter("ignore", GenerationWarning)
                drawn = self.cells.sample(self.size, cluster=cluster,
                                          seed=_mix(self.seed, cluster))
            if not drawn:
                raise BudgetError(f"the cell generator drew no cell for cluster {cluster}")
            self._pools[cluster] = drawn
        return self._pools[cluster]

    def __iter__(self):
        return iter(self._pools)

    def __len__(self) -> int:
        return len(self._pools)


def _share_floor(value: float, budget: Budget) -> float:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"the minimum budget share must be in [0, 1); got {value}")
    if value and not budget.is_limited:
        raise ConfigError("a minimum budget share needs a budget (max params and/or MACs)")
    return float(value)


def fill_cells(layout: MacroLayout, pools: Mapping[int, list[CellGenotype]], task,
               budget: Budget, rng: np.random.Generator) -> MacroGenotype | None:
    """The layout with a cell of its cluster in each stage, within the budget: up to
    CELL_REDRAWS random picks from the pools, then each stage's cheapest pool cell; None when
    even those do not fit."""
    for _ in range(CELL_REDRAWS):
        cells = [pools[c][int(rng.integers(len(pools[c])))] for c in layout.clusters]
        genotype = layout.with_cells(cells)
        if budget.allows(macro_cost(genotype, task)):
            return genotype
    genotype = layout.with_cells(_cheapest_cells(layout, pools, task, budget))
    return genotype if budget.allows(macro_cost(genotype, task)) else None


def _cheapest_cells(layout: MacroLayout, pools: Mapping[int, list[CellGenotype]], task,
                    budget: Budget) -> list[CellGenotype]:
    """Per stage, the pool cell of the lowest stage cost relative to the budget's limits."""
    _, side = stem_cost(task, layout.stem_channels)
    width, chosen = layout.stem_channels, []
    for s in layout.stages:
        costs = [(_relative(stage_cost(Stage(cell, s.channels, s.stride, s.repeats), width,
                                       side)[0], budget), i)
                 for i, cell in enumerate(pools[s.cluster])]
        chosen.append(pools[s.cluster][min(costs)[1]])
        side, width = -(-side // s.stride), s.channels
    return chosen


def _relative(cost, budget: Budget) -> float:
    """Cost as a fraction of the limits (summed over the limits the budget has)."""
    return ((cost.params / budget.max_params if budget.max_params else 0.0)
            + (cost.macs / budget.max_macs if budget.max_macs else 0.0))


def as_task(task):
    """A `TaskShape` from a TaskShape or a mapping of its fields (unknown fields refused)."""
    return task_from_dict(task) if isinstance(task, Mapping) else task_from_dict(
        {"num_classes": task.num_classes, "input_size": task.input_size,
         "in_channels": task.in_channels})


def as_budget(budget) -> Budget:
    if budget is None:
        return Budget()
    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, Mapping):
        unknown = sorted(set(budget) - {"max_params", "max_macs"})
        if unknown:
            raise ConfigError(f"unknown budget field(s) {unknown}; valid: max_params (count), "
                              "max_macs (MACs per sample; FLOPs = 2 x MACs)")
        return Budget.from_floats(budget.get("max_params"), budget.get("max_macs"))
    raise ConfigError(f"a budget is a Budget, a mapping of max_params/max_macs or None; got "
                      f"{type(budget).__name__}")


def _count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"n must be an integer >= 0; got {n!r}")
    return int(n)


def _mix(seed: int, cluster: int) -> int:
    """A seed per (sample seed, cluster), stable across runs."""
    return int(np.random.SeedSequence([int(seed), int(cluster)]).generate_state(1)[0])
