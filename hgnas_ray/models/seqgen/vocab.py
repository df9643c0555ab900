"""The sequence generator's structured vocabulary (DESIGN 4) and the macro *layout* it writes.

A layout is a macro network without its cells: stem width, stages of (cell cluster id, stride,
channels, repeats), final width. A sequence is a fixed 6-token prompt (task and budget) followed
by the layout::

    <bos> classes:<=10 size:<=32 in:3 params:1e5.75 macs:none      prompt (conditioning)
    w:16                                                          stem width
    c:3 s:1 w:32 r:2   c:0 s:2 w:64 r:4   ...                     one group per stage
    <head> w:256 <end>                                            final width

Task and budget tokens are buckets (classes and input size by fixed edges, budgets by quarter
decades, or `none` for no limit): they condition the model; the exact budget is enforced by the
decoder's masks (`hgnas_ray.models.seqgen.decoding`). Widths are exact (every multiple of 8 in
[8, 1024] is a token). The vocabulary depends only on the number of cell clusters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hgnas_ray.errors import ConfigError, GenotypeError
from hgnas_ray.space.macro import (
    CHANNEL_STEP,
    MAX_CELLS,
    MAX_CHANNELS,
    MAX_REPEATS,
    MIN_CHANNELS,
    MacroGenotype,
    Stage,
)

MAX_DOWNSAMPLES = 3  # stride-2 stages per network (as the macro samplers and mutations allow)
PAD, BOS, HEAD, END = "<pad>", "<bos>", "<head>", "<end>"
SPECIAL = (PAD, BOS, HEAD, END)
CLASS_EDGES = (2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SIZE_EDGES = (8, 16, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 512)
MAX_IN_CHANNELS_TOKEN = 4  # in:1 .. in:4, then in:>4
# Budget buckets: quarter decades; token k covers [10^(k/4), 10^((k+1)/4)), clamped at the ends.
PARAM_QUARTERS = (12, 36)  # 1e3 .. 1e9 parameters
MAC_QUARTERS = (16, 48)  # 1e4 .. 1e12 MACs per sample
PROMPT_LENGTH = 6  # <bos>, classes, size, in, params, macs
TASK_FIELDS = ("num_classes", "input_size", "in_channels")
WIDTHS = tuple(range(MIN_CHANNELS, MAX_CHANNELS + 1, CHANNEL_STEP))
# prompt, stem, 4 tokens per stage (at most MAX_CELLS stages), <head>, final width, <end>
MAX_SEQUENCE_LENGTH = PROMPT_LENGTH + 1 + 4 * MAX_CELLS + 3


@dataclass(frozen=True)
class StageLayout:
    cluster: int
    stride: int
    channels: int
    repeats: int

    def to_dict(self) -> dict[str, int]:
        return {"cluster": self.cluster, "stride": self.stride, "channels": self.channels,
                "repeats": self.repeats}


@dataclass(frozen=True)
class MacroLayout:
    """A macro network with a cell cluster id in place of each stage's cell."""

    stem_channels: int
    stages: tuple[StageLayout, ...]
    final_channels: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))

    @property
    def num_cells(self) -> int:
        return sum(s.repeats for s in self.stages)

    @property
    def num_downsamples(self) -> int:
        return sum(s.stride == 2 for s in self.stages)

    @property
    def clusters(self) -> tuple[int, ...]:
        return tuple(s.cluster for s in self.stages)

    @classmethod
    def from_genotype(cls, genotype: MacroGenotype, clusters: Sequence[int]) -> MacroLayout:
        if len(clusters) != len(genotype.stages):
            raise GenotypeError(f"one cluster id per stage: the network has "
                                f"{len(genotype.stages)} stages, got {len(clusters)} ids")
        stages = tuple(StageLayout(int(c), s.stride, s.channels, s.repeats)
                       for s, c in zip(genotype.stages, clusters, strict=True))
        return cls(genotype.stem_channels, stages, genotype.final_channels)

    def with_cells(self, cells: Sequence[Any]) -> MacroGenotype:
        """The macro genotype with `cells[i]` in stage i (validated)."""
        if len(cells) != len(self.stages):
            raise GenotypeError(f"one cell per stage: {len(self.stages)} stages, "
                                f"{len(cells)} cells")
        stages = tuple(Stage(cell, s.channels, s.stride, s.repeats)
                       for s, cell in zip(self.stages, cells, strict=True))
        return MacroGenotype(self.stem_channels, stages, self.final_channels).validate()

    def validate(self, num_clusters: int) -> MacroLayout:
        """The macro space's rules (DESIGN 2.2), at most MAX_DOWNSAMPLES stride-2 stages, and
        cluster ids in 0..num_clusters - 1."""
        for what, width in (("stem", self.stem_channels), ("final", self.final_channels),
                            *((f"stage {i}", s.channels) for i, s in enumerate(self.stages))):
            if width not in WIDTHS:
                raise GenotypeError(f"{what} width {width}: allowed multiples of "
                                    f"{CHANNEL_STEP} in [{MIN_CHANNELS}, {MAX_CHANNELS}]")
        if not self.stages:
            raise GenotypeError("a macro layout needs at least one stage")
        for i, s in enumerate(self.stages):
            if s.stride not in (1, 2) or not 1 <= s.repeats <= MAX_REPEATS:
                raise GenotypeError(f"stage {i}: stride {s.stride} (1 or 2), repeats "
                                    f"{s.repeats} (1..{MAX_REPEATS})")
            if not 0 <= s.cluster < num_clusters:
                raise GenotypeError(f"stage {i}: cluster {s.cluster} outside 0.."
                                    f"{num_clusters - 1}")
        if self.num_cells > MAX_CELLS or self.num_downsamples > MAX_DOWNSAMPLES:
            raise GenotypeError(f"{self.num_cells} cells (at most {MAX_CELLS}) and "
                                f"{self.num_downsamples} stride-2 stages (at most "
                                f"{MAX_DOWNSAMPLES})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"stem_channels": self.stem_channels,
                "stages": [s.to_dict() for s in self.stages],
                "final_channels": self.final_channels}


def task_from_dict(data: Mapping[str, Any]):
    """A `TaskShape` from {"num_classes", "input_size", "in_channels" (default 3)}; unknown or
    missing fields and non-positive values are refused."""
    from hgnas_ray.nn.builder import TaskShape  # deferred: nn.builder imports torch modules

    if not isinstance(data, Mapping):
        raise ConfigError(f"a task is a mapping of {', '.join(TASK_FIELDS)}; got "
                          f"{type(data).__name__}")
    unknown = sorted(set(data) - set(TASK_FIELDS))
    if unknown:
        raise ConfigError(f"unknown task field(s) {unknown}; valid fields: "
                          f"{', '.join(TASK_FIELDS)}")
    missing = [f for f in TASK_FIELDS[:2] if f not in data]
    if missing:
        raise ConfigError(f"task lacks {missing}; give num_classes and input_size "
                          "(in_channels defaults to 3)")
    values = {f: data.get(f, 3) for f in TASK_FIELDS}
    for field, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"task field {field} must be a positive integer; got {value!r}")
    return TaskShape(**values)


def _edge_token(prefix: str, value: int, edges: Sequence[int]) -> str:
    for edge in edges:
        if value <= edge:
            return f"{prefix}:<={edge}"
    return f"{prefix}:>{edges[-1]}"


def _edge_tokens(prefix: str, edges: Sequence[int]) -> list[str]:
    return [f"{prefix}:<={e}" for e in edges] + [f"{prefix}:>{edges[-1]}"]


def _quarter_token(prefix: str, value: int | None, quarters: tuple[int, int]) -> str:
    if value is None:
        return f"{prefix}:none"
    quarter = min(max(math.floor(4 * math.log10(value)), quarters[0]), quarters[1])
    return f"{prefix}:1e{quarter / 4:.2f}"


def _quarter_tokens(prefix: str, quarters: tuple[int, int]) -> list[str]:
    return [f"{prefix}:none"] + [f"{prefix}:1e{q / 4:.2f}"
                                 for q in range(quarters[0], quarters[1] + 1)]


class SeqVocabulary:
    """Token <-> id for macro layouts with `num_clusters` cell clusters.

    Layout tokens: `w:<width>` (stem, stage and final widths), `c:<cluster>`, `s:<stride>`,
    `r:<repeats>`; specials `<pad>` (id 0), `<bos>`, `<head>`, `<end>`.
    """

    def __init__(self, num_clusters: int) -> None:
        if isinstance(num_clusters, bool) or not isinstance(num_clusters, int) \
                or num_clusters < 1:
            raise ConfigError(f"num_clusters must be an integer >= 1; got {num_clusters!r}")
        self.num_clusters = num_clusters
        self.tokens: tuple[str, ...] = (
            *SPECIAL, *_edge_tokens("classes", CLASS_EDGES), *_edge_tokens("size", SIZE_EDGES),
            *(f"in:{c}" for c in range(1, MAX_IN_CHANNELS_TOKEN + 1)),
            f"in:>{MAX_IN_CHANNELS_TOKEN}", *_quarter_tokens("params", PARAM_QUARTERS),
            *_quarter_tokens("macs", MAC_QUARTERS), *(f"w:{w}" for w in WIDTHS),
            *(f"c:{k}" for k in range(num_clusters)), "s:1", "s:2",
            *(f"r:{r}" for r in range(1, MAX_REPEATS + 1)))
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        self.pad, self.bos, self.head, self.end = (self.ids[t] for t in SPECIAL)
        self.width_ids = tuple(self.ids[f"w:{w}"] for w in WIDTHS)
        self.cluster_ids = tuple(self.ids[f"c:{k}"] for k in range(num_clusters))
        self.stride_ids = (self.ids["s:1"], self.ids["s:2"])
        self.repeat_ids = tuple(self.ids[f"r:{r}"] for r in range(1, MAX_REPEATS + 1))
        self._values = {**{self.ids[f"w:{w}"]: w for w in WIDTHS},
                        **{self.ids[f"c:{k}"]: k for k in range(num_clusters)},
                        self.ids["s:1"]: 1, self.ids["s:2"]: 2,
                        **{self.ids[f"r:{r}"]: r for r in range(1, MAX_REPEATS + 1)}}

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"SeqVocabulary(num_clusters={self.num_clusters}, size={len(self)})"

    def value(self, token_id: int) -> int:
        """The number a layout token stands for (width, cluster, stride or repeats)."""
        return self._values[int(token_id)]

    def width(self, channels: int) -> int:
        return self.ids[f"w:{channels}"]

    # ------------------------------------------------------------------ prompt
    def prompt(self, task, budget) -> list[int]:
        """The 6 conditioning ids of a task (`TaskShape`) and a budget (`Budget`)."""
        in_token = f"in:{task.in_channels}" if task.in_channels <= MAX_IN_CHANNELS_TOKEN \
            else f"in:>{MAX_IN_CHANNELS_TOKEN}"
        tokens = [BOS, _edge_token("classes", task.num_classes, CLASS_EDGES),
                  _edge_token("size", task.input_size, SIZE_EDGES), in_token,
                  _quarter_token("params", budget.max_params, PARAM_QUARTERS),
                  _quarter_token("macs", budget.max_macs, MAC_QUARTERS)]
        return [self.ids[t] for t in tokens]

    # ------------------------------------------------------------------ layouts
    def encode_layout(self, layout: MacroLayout) -> list[int]:
        """The layout's ids after the prompt: stem, stages, <head>, final width, <end>."""
        layout.validate(self.num_clusters)
        ids = [self.width(layout.stem_channels)]
        for s in layout.stages:
            ids += [self.ids[f"c:{s.cluster}"], self.ids[f"s:{s.stride}"], self.width(s.channels),
                    self.ids[f"r:{s.repeats}"]]
        return ids + [self.head, self.width(layout.final_channels), self.end]

    def encode(self, task, budget, layout: MacroLayout) -> list[int]:
        return self.prompt(task, budget) + self.encode_layout(layout)

    def decode_layout(self, ids: Sequence[int]) -> MacroLayout:
        """The layout of a complete sequence (with or without its prompt); a sequence that does
        not follow the grammar raises `GenotypeError`."""
        ids = [int(i) for i in ids if int(i) != self.pad]
        if ids and ids[0] == self.bos:
            ids = ids[PROMPT_LENGTH:]
        try:
            return self._parse(ids).validate(self.num_clusters)
        except (KeyError, IndexError, ValueError) as err:
            if isinstance(err, GenotypeError):
                raise
            raise GenotypeError(f"not a layout sequence: {self.describe(ids)!r} "
                                f"({type(err).__name__}: {err})") from None

    def _parse(self, ids: list[int]) -> MacroLayout:
        kinds = {"c": self.cluster_ids, "s": self.stride_ids, "w": self.width_ids,
                 "r": self.repeat_ids}

        def take(position: int, kind: str) -> int:
            if ids[position] not in kinds[kind]:
                raise ValueError(f"token {position} is {self.tokens[ids[position]]!r}; "
                                 f"expected a {kind}:... token")
            return self.value(ids[position])

        stem, stages, pos = take(0, "w"), [], 1
        while ids[pos] != self.head:
            cluster, stride = take(pos, "c"), take(pos + 1, "s")
            stages.append(StageLayout(cluster, stride, take(pos + 2, "w"), take(pos + 3, "r")))
            pos += 4
        final = take(pos + 1, "w")
        if ids[pos + 2:] != [self.end]:
            raise ValueError(f"expected <end> after the final width, then nothing; got "
                             f"{self.describe(ids[pos + 2:])!r}")
        return MacroLayout(stem, tuple(stages), final)

    def describe(self, ids: Sequence[int]) -> str:
        return " ".join(self.tokens[int(i)] for i in ids)

    def state_dict(self) -> dict[str, Any]:
        return {"num_clusters": self.num_clusters, "tokens": list(self.tokens)}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> SeqVocabulary:
        vocab = cls(int(state["num_clusters"]))
        if list(state["tokens"]) != list(vocab.tokens):
            raise ConfigError("the saved vocabulary differs from this hgnas-ray's vocabulary "
                              f"for {vocab.num_clusters} clusters")
        return vocab
